//! The index of the cluster's audio files (recordings, voicemail, greetings, prompts, music on hold).
//!
//! The bytes are too big for the Raft log: they live in each node's audio directory and travel
//! between nodes over the cluster's QUIC transport. What is replicated here is what a node needs to
//! know about each file: its checksum (a copy that does not match it is no copy), the nodes that
//! confirmed a verified copy, who it counts against, and how long it is kept.
//!
//! Quotas are enforced when a file enters the index, in log order, against usage totals kept
//! beside the files (per owner and for the cluster), so that checking one costs no table scan.

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::codec::CodecError;
use crate::command::{Response, Txn, delete, get, put, table_name};
use crate::model::UnixMillis;
use crate::tables::{Record, Table};

/// What an audio file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioKind {
    /// An IVR or system prompt, uploaded by an admin.
    Prompt,
    /// Music played to held callers, uploaded by an admin.
    MusicOnHold,
    /// A recorded call (or one segment of it).
    Recording,
    /// A message left in a mailbox.
    Voicemail,
    /// A mailbox's greeting.
    Greeting,
    /// A desk phone's firmware image (not audio: the store's replication serves it too), named by
    /// an entry of [`crate::provisioning::Firmware`]. Appended last: earlier kinds encode as before.
    Firmware,
}

impl AudioKind {
    pub const ALL: [Self; 6] = [
        Self::Prompt,
        Self::MusicOnHold,
        Self::Recording,
        Self::Voicemail,
        Self::Greeting,
        Self::Firmware,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prompt => "prompt",
            Self::MusicOnHold => "music_on_hold",
            Self::Recording => "recording",
            Self::Voicemail => "voicemail",
            Self::Greeting => "greeting",
            Self::Firmware => "firmware",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The longest an audio file's display name may be, in bytes.
pub const MAX_AUDIO_NAME: usize = 128;

/// One audio file of the cluster, keyed by its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioFile {
    /// 32 lowercase hex digits, random: also the file's name in each node's audio directory.
    pub id: String,
    pub kind: AudioKind,
    /// The extension it counts against (a mailbox, a recorded extension), or empty for the
    /// cluster's own files (prompts, music).
    pub owner: String,
    pub name: String,
    /// The call it was recorded from (the CDR's call id), when it was.
    pub call_id: Option<String>,
    pub size: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    pub created_at: UnixMillis,
    /// Dropped from the index (and then from every disk) after this time; `None`: kept until
    /// deleted.
    pub retain_until: Option<UnixMillis>,
    /// The nodes that confirmed a verified copy, in the order they did.
    pub holders: Vec<NodeId>,
}

impl AudioFile {
    /// Whether `id` has the form of an audio file's id (and so is safe as a file name).
    pub fn valid_id(id: &str) -> bool {
        id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    pub fn held_by(&self, node: NodeId) -> bool {
        self.holders.contains(&node)
    }
}

impl Record for AudioFile {
    const TABLE: Table = Table::AudioFiles;
    fn key(&self) -> String {
        self.id.clone()
    }
}

/// An entry of the index of recordings by call: file `audio_id`, owned by `owner`, was recorded
/// from call `call_id` (a CDR's `id`). Keyed `{call_id}/{audio_id}`, so a call's recordings are one
/// prefix; written and deleted with the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecording {
    pub call_id: String,
    pub audio_id: String,
    pub owner: String,
    pub created_at: UnixMillis,
}

impl CallRecording {
    pub fn prefix(call_id: &str) -> String {
        format!("{call_id}/")
    }

    fn of(file: &AudioFile) -> Option<Self> {
        file.call_id.as_ref().map(|call_id| Self {
            call_id: call_id.clone(),
            audio_id: file.id.clone(),
            owner: file.owner.clone(),
            created_at: file.created_at,
        })
    }
}

impl Record for CallRecording {
    const TABLE: Table = Table::RecordingsByCall;
    fn key(&self) -> String {
        format!("{}{}", Self::prefix(&self.call_id), self.audio_id)
    }
}

/// The limits on stored audio. Kept in the cluster table under [`AudioQuotas::KEY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioQuotas {
    /// Bytes one owner (an extension) may hold: its recordings, messages and greetings.
    pub per_owner_bytes: u64,
    /// Bytes the whole cluster may hold (each node keeps a copy of everything).
    pub total_bytes: u64,
}

impl Default for AudioQuotas {
    fn default() -> Self {
        Self {
            per_owner_bytes: 256 * 1024 * 1024,
            total_bytes: 16 * 1024 * 1024 * 1024,
        }
    }
}

impl AudioQuotas {
    pub const KEY: &'static str = "audio_quotas";
}

impl Record for AudioQuotas {
    const TABLE: Table = Table::Cluster;
    fn key(&self) -> String {
        Self::KEY.to_owned()
    }
}

/// Bytes and files held by one owner (or, under [`AudioUsage::TOTAL`], by the cluster). Kept in
/// the cluster table, maintained by the commands that add and remove files.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AudioUsage {
    /// The owner, or [`AudioUsage::TOTAL`].
    pub owner: String,
    pub bytes: u64,
    pub files: u64,
}

impl AudioUsage {
    /// The owner name of the cluster-wide total (no extension has this number).
    pub const TOTAL: &'static str = "*";
    const PREFIX: &'static str = "audio_usage/";

    pub fn key_for(owner: &str) -> String {
        format!("{}{owner}", Self::PREFIX)
    }
}

impl Record for AudioUsage {
    const TABLE: Table = Table::Cluster;
    fn key(&self) -> String {
        Self::key_for(&self.owner)
    }
}

/// Which limit an audio file would cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaScope {
    Owner,
    Cluster,
}

fn usage(txn: &dyn Txn, owner: &str) -> Result<AudioUsage, CodecError> {
    Ok(
        get::<AudioUsage>(txn, &AudioUsage::key_for(owner))?.unwrap_or_else(|| AudioUsage {
            owner: owner.to_owned(),
            ..AudioUsage::default()
        }),
    )
}

/// Adds `bytes` (one file) to, or with `add == false` takes them from, the owner's and the
/// cluster's usage.
fn account(txn: &mut dyn Txn, owner: &str, bytes: u64, add: bool) -> Result<(), CodecError> {
    let owners: &[&str] = if owner.is_empty() {
        &[AudioUsage::TOTAL]
    } else {
        &[owner, AudioUsage::TOTAL]
    };
    for o in owners {
        let mut u = usage(txn, o)?;
        if add {
            u.bytes = u.bytes.saturating_add(bytes);
            u.files = u.files.saturating_add(1);
        } else {
            u.bytes = u.bytes.saturating_sub(bytes);
            u.files = u.files.saturating_sub(1);
        }
        if u.files == 0 {
            txn.delete(Table::Cluster, &u.key());
        } else {
            put(txn, &u)?;
        }
    }
    Ok(())
}

/// Enters a new file in the index: `Conflict` when the id exists, `QuotaExceeded` when the file
/// would take its owner or the cluster over their quota.
pub(crate) fn put_audio_file(txn: &mut dyn Txn, file: &AudioFile) -> Result<Response, CodecError> {
    if txn.get(Table::AudioFiles, &file.id).is_some() {
        return Ok(Response::Conflict {
            table: table_name(Table::AudioFiles),
            key: file.id.clone(),
        });
    }
    let quotas = get::<AudioQuotas>(txn, AudioQuotas::KEY)?.unwrap_or_default();
    if !file.owner.is_empty() {
        let used = usage(txn, &file.owner)?.bytes;
        if used.saturating_add(file.size) > quotas.per_owner_bytes {
            return Ok(Response::QuotaExceeded {
                scope: QuotaScope::Owner,
                limit: quotas.per_owner_bytes,
                used,
            });
        }
    }
    let used = usage(txn, AudioUsage::TOTAL)?.bytes;
    if used.saturating_add(file.size) > quotas.total_bytes {
        return Ok(Response::QuotaExceeded {
            scope: QuotaScope::Cluster,
            limit: quotas.total_bytes,
            used,
        });
    }
    account(txn, &file.owner, file.size, true)?;
    if let Some(entry) = CallRecording::of(file) {
        put(txn, &entry)?;
    }
    put(txn, file)
}

/// Node `node` confirmed a verified copy of file `id`: `NotFound` when the file left the index
/// meanwhile (the node then drops its copy).
pub(crate) fn audio_held(
    txn: &mut dyn Txn,
    id: &str,
    node: NodeId,
) -> Result<Response, CodecError> {
    let Some(mut file) = get::<AudioFile>(txn, id)? else {
        return Ok(Response::NotFound {
            table: table_name(Table::AudioFiles),
            key: id.to_owned(),
        });
    };
    if !file.held_by(node) {
        file.holders.push(node);
        put(txn, &file)?;
    }
    Ok(Response::Ok)
}

pub(crate) fn delete_audio_file(txn: &mut dyn Txn, id: &str) -> Result<Response, CodecError> {
    let Some(file) = get::<AudioFile>(txn, id)? else {
        return Ok(Response::NotFound {
            table: table_name(Table::AudioFiles),
            key: id.to_owned(),
        });
    };
    account(txn, &file.owner, file.size, false)?;
    if let Some(entry) = CallRecording::of(&file) {
        txn.delete(Table::RecordingsByCall, &entry.key());
    }
    match file.kind {
        AudioKind::Voicemail => {
            // A message goes with its audio, however the audio goes (API, retention, mailbox).
            let message = crate::voicemail::VoicemailMessage::key_for(&file.owner, &file.id);
            txn.delete(Table::VoicemailMessages, &message);
        }
        AudioKind::Greeting => crate::voicemail::forget_greeting(txn, &file.owner, id)?,
        AudioKind::Firmware => crate::provisioning::forget_firmware_file(txn, id)?,
        AudioKind::Prompt | AudioKind::MusicOnHold | AudioKind::Recording => {}
    }
    Ok(delete(txn, Table::AudioFiles, id, true))
}

/// Drops every file whose retention ended by `now`.
pub(crate) fn prune_audio(txn: &mut dyn Txn, now: UnixMillis) -> Result<Response, CodecError> {
    for key in txn.keys_with_prefix(Table::AudioFiles, "") {
        let expired = get::<AudioFile>(txn, &key)?
            .is_some_and(|f| f.retain_until.is_some_and(|until| until <= now));
        if expired {
            delete_audio_file(txn, &key)?;
        }
    }
    Ok(Response::Ok)
}

/// Node `node` left the cluster: it holds nothing any more.
pub(crate) fn forget_holder(txn: &mut dyn Txn, node: NodeId) -> Result<(), CodecError> {
    for key in txn.keys_with_prefix(Table::AudioFiles, "") {
        let Some(mut file) = get::<AudioFile>(txn, &key)? else {
            continue;
        };
        if file.held_by(node) {
            file.holders.retain(|&h| h != node);
            put(txn, &file)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
