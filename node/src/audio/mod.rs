//! The replicated audio store: recordings, voicemail, greetings, prompts and music, kept on every
//! node and indexed through Raft.
//!
//! Saving a file writes it here, pushes it to the other members over the cluster's QUIC transport
//! and enters it in the index (with the nodes that confirmed a verified copy) once a majority of
//! the voters holds it: only then is it called saved. Copies still on their way are confirmed to
//! the index as they land. Every node then runs [`sync`]: it fetches what the index lists and it
//! lacks (a node that was down, a new member), confirms what it has, and drops what the index no
//! longer lists.

pub(crate) mod music;
pub(crate) mod recording;
pub(crate) mod speech;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use cluster::{BlobError, Cluster, ClusterError, TransferError};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use storage::audio::{AudioFile, AudioKind, AudioQuotas, AudioUsage, QuotaScope};
use storage::model::{Severity, UnixMillis};
use storage::{Command, NodeId, Response};

use crate::events::Events;
use crate::time::now_millis;

pub(crate) use sync::run as run_sync;

/// Why audio could not be saved or read.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("no such audio file")]
    NotFound,
    #[error("{} quota of {limit} bytes would be exceeded ({used} bytes used)", scope_name(*scope))]
    Quota {
        scope: QuotaScope,
        limit: u64,
        used: u64,
    },
    #[error("the audio store is full on node {node}: {reason}")]
    DiskFull { node: NodeId, reason: String },
    #[error("only {held} of the {needed} nodes needed confirmed a copy")]
    NoQuorum { held: usize, needed: usize },
    #[error("no node holding the file could send it")]
    Unavailable,
    #[error("cluster: {0}")]
    Cluster(#[from] ClusterError),
    #[error("audio directory: {0}")]
    Store(BlobError),
    #[error("reading the index: {0}")]
    Index(String),
}

fn scope_name(scope: QuotaScope) -> &'static str {
    match scope {
        QuotaScope::Owner => "the owner's",
        QuotaScope::Cluster => "the cluster's",
    }
}

impl AudioError {
    /// The HTTP status an API answers with.
    pub(crate) fn http_status(&self) -> u16 {
        match self {
            Self::NotFound => 404,
            Self::Quota { .. } | Self::DiskFull { .. } => 507,
            Self::NoQuorum { .. } | Self::Unavailable => 503,
            Self::Cluster(e) => e.http_status(),
            Self::Store(_) | Self::Index(_) => 500,
        }
    }
}

/// A file to save.
#[derive(Debug, Clone)]
pub(crate) struct NewAudio {
    pub(crate) kind: AudioKind,
    pub(crate) owner: String,
    pub(crate) name: String,
    pub(crate) call_id: Option<String>,
    pub(crate) retain_until: Option<UnixMillis>,
}

/// How often an audio store full event may be raised by one node.
const FULL_EVENT_EVERY: Duration = Duration::from_secs(600);

/// Saves and opens audio files. Cheap to share.
pub struct AudioStore {
    cluster: Cluster,
    events: Arc<Events>,
    last_full_event: std::sync::Mutex<Option<std::time::Instant>>,
}

impl AudioStore {
    pub fn new(cluster: Cluster, events: Arc<Events>) -> Arc<Self> {
        Arc::new(Self {
            cluster,
            events,
            last_full_event: std::sync::Mutex::new(None),
        })
    }

    /// The event center (its mail relay sends voicemail).
    pub(crate) fn events(&self) -> &Arc<Events> {
        &self.events
    }

    /// Saves `bytes`: stored here, copied to a majority of the voters, then entered in the index.
    pub(crate) async fn save(&self, new: NewAudio, bytes: &[u8]) -> Result<AudioFile, AudioError> {
        let cluster = &self.cluster;
        let me = cluster.node_id();
        let size = bytes.len() as u64;
        self.precheck_quota(&new.owner, size)?;
        let id = hex::encode(rand::random::<[u8; 16]>());
        let sha256 = cluster::blob_dir::sha256_hex(bytes);
        let dir = cluster.audio_dir();
        if let Err(e) = dir.write(&id, &sha256, size, &mut &bytes[..]).await {
            return Err(self.store_failed(e));
        }

        let members = cluster.members();
        let voters = members.iter().filter(|m| m.2).count().max(1);
        let needed = voters / 2 + 1;
        let mut holders = vec![me];
        let mut pushes: FuturesUnordered<_> = members
            .iter()
            .filter(|m| m.0 != me)
            .map(|&(node, _, _)| {
                let (cluster, id, sha256) = (cluster.clone(), id.clone(), sha256.clone());
                async move { (node, cluster.push_audio(node, &id, &sha256).await) }
            })
            .collect();
        while holders.len() < needed {
            match pushes.next().await {
                Some((node, Ok(()))) => holders.push(node),
                Some((node, Err(e))) => {
                    tracing::warn!(node = me, peer = node, audio = %id, error = %e, "audio copy failed")
                }
                None => break,
            }
        }
        if holders.len() < needed {
            let _ = dir.remove(&id);
            metrics::counter!("pbx_audio_saves_total", "result" => "no_quorum").increment(1);
            return Err(AudioError::NoQuorum {
                held: holders.len(),
                needed,
            });
        }

        let file = AudioFile {
            id: id.clone(),
            kind: new.kind,
            owner: new.owner,
            name: new.name,
            call_id: new.call_id,
            size,
            sha256,
            created_at: now_millis(),
            retain_until: new.retain_until,
            holders,
        };
        match cluster.propose(Command::PutAudioFile(file.clone())).await {
            Ok(Response::Ok) => {}
            Ok(Response::QuotaExceeded { scope, limit, used }) => {
                let _ = dir.remove(&id);
                metrics::counter!("pbx_audio_saves_total", "result" => "quota").increment(1);
                return Err(AudioError::Quota { scope, limit, used });
            }
            Ok(other) => {
                let _ = dir.remove(&id);
                return Err(AudioError::Index(format!("unexpected answer {other:?}")));
            }
            // The entry may still commit: the copies stay, and sync drops them if it did not.
            Err(e) => return Err(e.into()),
        }
        metrics::counter!("pbx_audio_saves_total", "result" => "ok").increment(1);
        tracing::info!(node = me, audio = %file.id, kind = file.kind.as_str(), owner = %file.owner, size, holders = ?file.holders, "audio saved");

        // The copies still on their way are confirmed as they land.
        let (cluster, id) = (cluster.clone(), file.id.clone());
        tokio::spawn(async move {
            while let Some((node, result)) = pushes.next().await {
                match result {
                    Ok(()) => {
                        let held = Command::AudioHeld {
                            id: id.clone(),
                            node,
                        };
                        if let Err(e) = cluster.propose(held).await {
                            tracing::debug!(audio = %id, peer = node, error = %e, "copy not confirmed; sync will");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(audio = %id, peer = node, error = %e, "audio copy failed; that node fetches it later")
                    }
                }
            }
        });
        Ok(file)
    }

    /// Refuses early what the index would refuse (the state machine decides, in log order).
    fn precheck_quota(&self, owner: &str, size: u64) -> Result<(), AudioError> {
        let reader = self.cluster.reader();
        let index = |e: storage::StorageError| AudioError::Index(e.to_string());
        let quotas = reader
            .get::<AudioQuotas>(AudioQuotas::KEY)
            .map_err(index)?
            .unwrap_or_default();
        let used = |o: &str| -> Result<u64, AudioError> {
            Ok(reader
                .get::<AudioUsage>(&AudioUsage::key_for(o))
                .map_err(index)?
                .map_or(0, |u| u.bytes))
        };
        if !owner.is_empty() {
            let used = used(owner)?;
            if used.saturating_add(size) > quotas.per_owner_bytes {
                return Err(AudioError::Quota {
                    scope: QuotaScope::Owner,
                    limit: quotas.per_owner_bytes,
                    used,
                });
            }
        }
        let used = used(AudioUsage::TOTAL)?;
        if used.saturating_add(size) > quotas.total_bytes {
            return Err(AudioError::Quota {
                scope: QuotaScope::Cluster,
                limit: quotas.total_bytes,
                used,
            });
        }
        Ok(())
    }

    fn store_failed(&self, e: BlobError) -> AudioError {
        let node = self.cluster.node_id();
        if let BlobError::DiskFull { .. } = e {
            metrics::counter!("pbx_audio_saves_total", "result" => "disk_full").increment(1);
            self.full_event(&e.to_string());
            return AudioError::DiskFull {
                node,
                reason: e.to_string(),
            };
        }
        AudioError::Store(e)
    }

    /// Raises `audio_store_full`, at most once per [`FULL_EVENT_EVERY`] per node.
    pub(crate) fn full_event(&self, reason: &str) {
        let mut last = self
            .last_full_event
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|t| t.elapsed() < FULL_EVENT_EVERY) {
            return;
        }
        *last = Some(std::time::Instant::now());
        self.events.raise(
            "audio_store_full",
            Severity::Critical,
            None,
            format!(
                "node {} refused new audio: {reason}",
                self.cluster.node_id()
            ),
        );
    }

    /// The file's index entry and an open local copy, fetched from a holder first when this node
    /// has none yet.
    pub(crate) async fn open(&self, id: &str) -> Result<(AudioFile, tokio::fs::File), AudioError> {
        let file = self.entry(id)?;
        let dir = self.cluster.audio_dir();
        if !dir.has(id) {
            self.fetch(&file).await?;
        }
        match dir.open_file(id).await {
            Ok((f, _)) => Ok((file, f)),
            Err(BlobError::Missing) => Err(AudioError::Unavailable),
            Err(e) => Err(AudioError::Store(e)),
        }
    }

    /// The index entry of file `id`.
    pub(crate) fn entry(&self, id: &str) -> Result<AudioFile, AudioError> {
        if !AudioFile::valid_id(id) {
            return Err(AudioError::NotFound);
        }
        self.cluster
            .reader()
            .get::<AudioFile>(id)
            .map_err(|e| AudioError::Index(e.to_string()))?
            .ok_or(AudioError::NotFound)
    }

    /// Fetches `file` from the first holder that sends it whole, and confirms the copy.
    async fn fetch(&self, file: &AudioFile) -> Result<(), AudioError> {
        fetch_from_holders(&self.cluster, file).await?;
        confirm(&self.cluster, &file.id).await;
        Ok(())
    }
}

/// Fetches `file` from its holders in turn until one sends it whole.
pub(crate) async fn fetch_from_holders(
    cluster: &Cluster,
    file: &AudioFile,
) -> Result<(), AudioError> {
    let me = cluster.node_id();
    for &holder in file.holders.iter().filter(|&&h| h != me) {
        match cluster
            .fetch_audio(holder, &file.id, &file.sha256, file.size)
            .await
        {
            Ok(()) => return Ok(()),
            Err(TransferError::Store(e @ BlobError::DiskFull { .. })) => {
                return Err(AudioError::DiskFull {
                    node: me,
                    reason: e.to_string(),
                });
            }
            Err(e) => {
                tracing::debug!(node = me, peer = holder, audio = %file.id, error = %e, "fetch failed; trying the next holder")
            }
        }
    }
    Err(AudioError::Unavailable)
}

/// Tells the index this node holds a verified copy of file `id`; whether that was committed.
pub(crate) async fn confirm(cluster: &Cluster, id: &str) -> bool {
    let held = Command::AudioHeld {
        id: id.to_owned(),
        node: cluster.node_id(),
    };
    match cluster.propose(held).await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(audio = %id, error = %e, "copy not confirmed yet");
            false
        }
    }
}
