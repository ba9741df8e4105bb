//! Voicemail: each extension's mailbox settings, and the messages left in it.
//!
//! A message's audio is an ordinary file of the audio index (kind `voicemail`, owned by the
//! mailbox's extension), so it is replicated, counted against the mailbox's audio quota and pruned
//! like any other; the message record ([`VoicemailMessage`], keyed `{mailbox}/{audio id}`) adds
//! who left it, when, why and whether it was heard. A message is entered only once its file is in
//! the index, and deleting the file (here, through the audio API, or by retention) deletes the
//! message with it, in the same entry.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::audio::{self, AudioFile, AudioKind};
use crate::codec::CodecError;
use crate::command::{Response, Txn, get, put, table_name};
use crate::model::{Extension, UnixMillis};
use crate::routing_apply::invalid;
use crate::tables::{Record, Table};

/// Seconds an extension's phones ring before voicemail answers.
pub const MAILBOX_RING_SECS: RangeInclusive<u16> = 5..=120;
/// The longest message a caller may leave, in seconds.
pub const MAILBOX_MESSAGE_SECS: RangeInclusive<u16> = 10..=600;
/// Messages one mailbox holds at most.
pub const MAILBOX_MESSAGES: RangeInclusive<u16> = 1..=1000;
/// Longest caller name kept with a message, in bytes.
pub const MAX_CALLER_NAME: usize = 64;

/// An extension's mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    /// The extension, and the key.
    pub extension: String,
    /// Callers reach the mailbox (on no answer, busy, or no phone registered).
    pub enabled: bool,
    /// The PIN's argon2id hash (PHC string); the PIN itself is never stored.
    pub pin_hash: Option<String>,
    /// Where each new message is e-mailed, with its WAV attached.
    pub email: Option<String>,
    /// Seconds the phones ring before voicemail answers.
    pub ring_secs: u16,
    /// Greetings (audio files of kind `greeting` owned by the extension): played when the
    /// extension did not answer or has no phone, and when it is busy. `None`: a beep only.
    pub greeting_unavailable: Option<String>,
    pub greeting_busy: Option<String>,
    pub max_message_secs: u16,
    pub max_messages: u16,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl Mailbox {
    /// A mailbox with the defaults, enabled, without PIN or e-mail.
    pub fn new(extension: &str, now: UnixMillis) -> Self {
        Self {
            extension: extension.to_owned(),
            enabled: true,
            pin_hash: None,
            email: None,
            ring_secs: 20,
            greeting_unavailable: None,
            greeting_busy: None,
            max_message_secs: 180,
            max_messages: 100,
            created_at: now,
            updated_at: now,
        }
    }

    /// The first problem with the mailbox's own fields, as `field: reason`.
    pub fn problem(&self) -> Option<String> {
        let range =
            |name: &str, r: &RangeInclusive<u16>| format!("{name}: {} to {}", r.start(), r.end());
        if !MAILBOX_RING_SECS.contains(&self.ring_secs) {
            return Some(range("ring_secs", &MAILBOX_RING_SECS));
        }
        if !MAILBOX_MESSAGE_SECS.contains(&self.max_message_secs) {
            return Some(range("max_message_secs", &MAILBOX_MESSAGE_SECS));
        }
        if !MAILBOX_MESSAGES.contains(&self.max_messages) {
            return Some(range("max_messages", &MAILBOX_MESSAGES));
        }
        for (field, id) in [
            ("greeting_unavailable", &self.greeting_unavailable),
            ("greeting_busy", &self.greeting_busy),
        ] {
            if id.as_deref().is_some_and(|g| !AudioFile::valid_id(g)) {
                return Some(format!(
                    "{field}: an audio file's id, 32 lowercase hex digits"
                ));
            }
        }
        if self
            .pin_hash
            .as_deref()
            .is_some_and(|h| !h.starts_with("$argon2"))
        {
            return Some("pin_hash: an argon2 PHC string".into());
        }
        None
    }
}

impl Record for Mailbox {
    const TABLE: Table = Table::Mailboxes;
    fn key(&self) -> String {
        self.extension.clone()
    }
}

/// A mailbox's name greeting: the owner saying their name, which the mailbox's default greeting
/// plays in place of the extension's number. Kept beside the mailbox, in a table of its own,
/// because a field added to [`Mailbox`] would change the encoding of the mailboxes already stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxName {
    /// The mailbox's extension, and the key.
    pub extension: String,
    /// An audio file of kind `greeting` owned by the extension.
    pub greeting: String,
}

impl Record for MailboxName {
    const TABLE: Table = Table::MailboxNames;
    fn key(&self) -> String {
        self.extension.clone()
    }
}

/// Why the caller reached the mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftBecause {
    NoAnswer,
    Busy,
    Unavailable,
}

impl LeftBecause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoAnswer => "no_answer",
            Self::Busy => "busy",
            Self::Unavailable => "unavailable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::NoAnswer, Self::Busy, Self::Unavailable]
            .into_iter()
            .find(|b| b.as_str() == s)
    }
}

/// A message left in a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoicemailMessage {
    pub mailbox: String,
    /// The audio file holding it.
    pub audio_id: String,
    /// The caller's number, and name as the call showed it.
    pub caller: String,
    pub caller_name: String,
    pub because: LeftBecause,
    /// The call it was left in (the CDR's id).
    pub call_id: String,
    pub received_at: UnixMillis,
    pub duration_ms: u32,
    pub heard: bool,
}

impl VoicemailMessage {
    pub fn key_for(mailbox: &str, audio_id: &str) -> String {
        format!("{}{audio_id}", Self::prefix(mailbox))
    }

    /// Every message of `mailbox` has this key prefix.
    pub fn prefix(mailbox: &str) -> String {
        format!("{mailbox}/")
    }
}

impl Record for VoicemailMessage {
    const TABLE: Table = Table::VoicemailMessages;
    fn key(&self) -> String {
        Self::key_for(&self.mailbox, &self.audio_id)
    }
}

/// How many messages `mailbox` holds, and how many of them are not heard yet.
pub fn counts(messages: &[VoicemailMessage]) -> (usize, usize) {
    (messages.len(), messages.iter().filter(|m| !m.heard).count())
}

fn not_found(table: Table, key: &str) -> Response {
    Response::NotFound {
        table: table_name(table),
        key: key.to_owned(),
    }
}

/// A greeting must be a file of kind `greeting` owned by the mailbox's extension.
fn greeting_problem(
    txn: &mut dyn Txn,
    extension: &str,
    field: &str,
    id: Option<&str>,
) -> Result<Option<Response>, CodecError> {
    let Some(id) = id else {
        return Ok(None);
    };
    let Some(file) = get::<AudioFile>(txn, id)? else {
        return Ok(Some(not_found(Table::AudioFiles, id)));
    };
    if file.kind != AudioKind::Greeting || file.owner != extension {
        let reason = format!("{field}: {id} is not a greeting of extension {extension}");
        return Ok(Some(invalid(Table::Mailboxes, extension, reason)));
    }
    Ok(None)
}

pub(crate) fn put_mailbox(txn: &mut dyn Txn, mailbox: &Mailbox) -> Result<Response, CodecError> {
    let key = &mailbox.extension;
    if let Some(reason) = mailbox.problem() {
        return Ok(invalid(Table::Mailboxes, key, reason));
    }
    if get::<Extension>(txn, key)?.is_none() {
        return Ok(not_found(Table::Extensions, key));
    }
    for (field, id) in [
        (
            "greeting_unavailable",
            mailbox.greeting_unavailable.as_deref(),
        ),
        ("greeting_busy", mailbox.greeting_busy.as_deref()),
    ] {
        if let Some(refused) = greeting_problem(txn, key, field, id)? {
            return Ok(refused);
        }
    }
    put(txn, mailbox)
}

/// Sets (`Some`) or clears (`None`) the name greeting of `extension`'s mailbox: `NotFound`
/// without the mailbox or the file, `Invalid` when the file is not a greeting of the extension or
/// the id is malformed. Clearing a name that is not set is `Ok`.
pub(crate) fn set_name(
    txn: &mut dyn Txn,
    extension: &str,
    greeting: Option<&str>,
) -> Result<Response, CodecError> {
    if get::<Mailbox>(txn, extension)?.is_none() {
        return Ok(not_found(Table::Mailboxes, extension));
    }
    let Some(id) = greeting else {
        txn.delete(Table::MailboxNames, extension);
        return Ok(Response::Ok);
    };
    if !AudioFile::valid_id(id) {
        let reason = "greeting_name: an audio file's id, 32 lowercase hex digits";
        return Ok(invalid(Table::MailboxNames, extension, reason.to_owned()));
    }
    if let Some(refused) = greeting_problem(txn, extension, "greeting_name", Some(id))? {
        return Ok(refused);
    }
    put(
        txn,
        &MailboxName {
            extension: extension.to_owned(),
            greeting: id.to_owned(),
        },
    )
}

/// Greeting `id` of `extension` is gone: its mailbox plays the beep instead (or, for its name,
/// says the extension's number).
pub(crate) fn forget_greeting(
    txn: &mut dyn Txn,
    extension: &str,
    id: &str,
) -> Result<(), CodecError> {
    if get::<MailboxName>(txn, extension)?.is_some_and(|n| n.greeting == id) {
        txn.delete(Table::MailboxNames, extension);
    }
    let Some(mut m) = get::<Mailbox>(txn, extension)? else {
        return Ok(());
    };
    let before = (m.greeting_unavailable.clone(), m.greeting_busy.clone());
    for g in [&mut m.greeting_unavailable, &mut m.greeting_busy] {
        if g.as_deref() == Some(id) {
            *g = None;
        }
    }
    if before != (m.greeting_unavailable.clone(), m.greeting_busy.clone()) {
        put(txn, &m)?;
    }
    Ok(())
}

/// Deletes a mailbox with every message in it and the greetings it plays (and their audio).
pub(crate) fn delete_mailbox(txn: &mut dyn Txn, extension: &str) -> Result<Response, CodecError> {
    let Some(mailbox) = get::<Mailbox>(txn, extension)? else {
        return Ok(not_found(Table::Mailboxes, extension));
    };
    let name = get::<MailboxName>(txn, extension)?.map(|n| n.greeting);
    for id in [&mailbox.greeting_unavailable, &mailbox.greeting_busy, &name]
        .into_iter()
        .flatten()
    {
        if txn.get(Table::AudioFiles, id).is_some() {
            audio::delete_audio_file(txn, id)?;
        }
    }
    txn.delete(Table::MailboxNames, extension);
    for key in txn.keys_with_prefix(
        Table::VoicemailMessages,
        &VoicemailMessage::prefix(extension),
    ) {
        if let Some(m) = get::<VoicemailMessage>(txn, &key)? {
            audio::delete_audio_file(txn, &m.audio_id)?;
        }
        txn.delete(Table::VoicemailMessages, &key);
    }
    txn.delete(Table::Mailboxes, extension);
    Ok(Response::Ok)
}

/// Enters a message whose file is in the index: `NotFound` without the mailbox or the file,
/// `Invalid` when the file is not this mailbox's voicemail or the mailbox is full.
pub(crate) fn put_message(txn: &mut dyn Txn, m: &VoicemailMessage) -> Result<Response, CodecError> {
    let Some(mailbox) = get::<Mailbox>(txn, &m.mailbox)? else {
        return Ok(not_found(Table::Mailboxes, &m.mailbox));
    };
    let Some(file) = get::<AudioFile>(txn, &m.audio_id)? else {
        return Ok(not_found(Table::AudioFiles, &m.audio_id));
    };
    if file.kind != AudioKind::Voicemail || file.owner != m.mailbox {
        let reason = format!(
            "audio_id: {} is not a voicemail of {}",
            m.audio_id, m.mailbox
        );
        return Ok(invalid(Table::VoicemailMessages, &m.key(), reason));
    }
    let held = txn
        .keys_with_prefix(
            Table::VoicemailMessages,
            &VoicemailMessage::prefix(&m.mailbox),
        )
        .len();
    if held >= usize::from(mailbox.max_messages)
        && txn.get(Table::VoicemailMessages, &m.key()).is_none()
    {
        let reason = format!("mailbox full: {held} messages");
        return Ok(invalid(Table::VoicemailMessages, &m.key(), reason));
    }
    if m.caller_name.len() > MAX_CALLER_NAME {
        let reason = format!("caller_name: at most {MAX_CALLER_NAME} bytes");
        return Ok(invalid(Table::VoicemailMessages, &m.key(), reason));
    }
    put(txn, m)
}

pub(crate) fn set_heard(
    txn: &mut dyn Txn,
    mailbox: &str,
    audio_id: &str,
    heard: bool,
) -> Result<Response, CodecError> {
    let key = VoicemailMessage::key_for(mailbox, audio_id);
    let Some(mut m) = get::<VoicemailMessage>(txn, &key)? else {
        return Ok(not_found(Table::VoicemailMessages, &key));
    };
    m.heard = heard;
    put(txn, &m)
}

/// Deletes a message and its audio file.
pub(crate) fn delete_message(
    txn: &mut dyn Txn,
    mailbox: &str,
    audio_id: &str,
) -> Result<Response, CodecError> {
    let key = VoicemailMessage::key_for(mailbox, audio_id);
    if txn.get(Table::VoicemailMessages, &key).is_none() {
        return Ok(not_found(Table::VoicemailMessages, &key));
    }
    txn.delete(Table::VoicemailMessages, &key);
    audio::delete_audio_file(txn, audio_id)?;
    Ok(Response::Ok)
}

#[cfg(test)]
mod tests;
