//! `/api/v1/extensions/{number}/voicemail`: an extension's mailbox (settings, PIN, greetings) and
//! the messages left in it.
//!
//! Who may do what:
//! - the settings (`GET`, `PUT` of an existing mailbox): the `extensions` grant, or the account
//!   whose own extension it is (its user: their e-mail, ring time, greetings and PIN). The limits
//!   (`max_message_secs`, `max_messages`) are the administrator's: without the grant they are kept
//!   as stored. Creating and deleting a mailbox takes the `extensions` grant;
//! - the messages (list, mark heard, delete): a role whose `recordings` scope is `all`, or the
//!   account whose own extension it is.
//!
//! Anyone else gets a 403, as for an extension's call handling. The PIN is stored only as an argon2id
//! hash (the web passwords' function) and never shown: answers say `has_pin`. A message's audio is
//! the audio store's file (`GET /audio/{audio_id}/content`); a greeting is uploaded there too
//! (`POST /audio?kind=greeting&owner={number}`). The name greeting (`greeting_name`: the owner
//! saying their name, which the default greeting plays) is kept beside the mailbox
//! ([`MailboxName`]) and written after it; an omitted `greeting_name` keeps it, `null` removes it.
//! The state machine checks, in log order, that the extension and the greeting files exist and are
//! the extension's; the handlers check the shape of a request and word the refusals.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use storage::Command;
use storage::audio::{AudioFile, AudioKind};
use storage::model::UnixMillis;
use storage::voicemail::{
    LeftBecause, MAILBOX_MESSAGE_SECS, MAILBOX_MESSAGES, MAILBOX_RING_SECS, Mailbox, MailboxName,
    VoicemailMessage, counts,
};
use storage::web::Scope;

use super::AppState;
use super::access::Principal;
use super::crud::propose_answer;
use super::error::ApiError;
use super::extensions::validate_number;
use super::features::{existing_extension, given};
use super::json::JsonBody;
use crate::time::now_millis;

/// Digits a PIN has at least and at most.
pub(crate) const PIN_DIGITS: std::ops::RangeInclusive<usize> = 6..=12;
/// Longest e-mail address kept (RFC 5321's path limit).
const MAX_EMAIL: usize = 254;

/// Whether `who` may read and change extension `number`'s mailbox settings.
fn may_configure(who: &Principal, number: &str) -> bool {
    who.grants.extensions || who.extension.as_deref() == Some(number)
}

/// Whether `who` may read, mark and delete extension `number`'s messages.
fn may_read_messages(who: &Principal, number: &str) -> bool {
    who.grants.recordings == Scope::All || who.extension.as_deref() == Some(number)
}

// ---------------------------------------------------------------------------------------------
// The PIN policy.

/// The first rule `pin` breaks, worded for the answer (`pin: …`); `None` for a strong PIN.
///
/// A PIN is 6 to 12 digits; not one digit repeated (`111111`); not a run up or down, wrapping
/// past 9 and 0 (`123456`, `987654`, `890123`); not the extension's number; not a block of 2 or 3
/// digits repeated (`121212`, `123123`).
pub(crate) fn pin_problem(pin: &str, extension: &str) -> Option<String> {
    pin_rule(pin, extension, "the extension's number")
}

/// The PIN policy of [`pin_problem`], for a PIN guarding `own` (a mailbox's extension, a conference
/// room's number), which the PIN must not be: `whose` words it (`the room's number`).
pub(crate) fn pin_rule(pin: &str, own: &str, whose: &str) -> Option<String> {
    let digits = pin.as_bytes();
    if !PIN_DIGITS.contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return Some(format!(
            "must be {} to {} digits",
            PIN_DIGITS.start(),
            PIN_DIGITS.end()
        ));
    }
    if digits.iter().all(|&d| d == digits[0]) {
        return Some("must not be one digit repeated".into());
    }
    let steps = |step: u8| {
        digits
            .windows(2)
            .all(|w| (w[0] - b'0' + step) % 10 == w[1] - b'0')
    };
    if steps(1) || steps(9) {
        return Some("must not be a run of digits up or down (such as 123456)".into());
    }
    if pin == own {
        return Some(format!("must not be {whose}"));
    }
    let repeats = |block: usize| {
        digits.len().is_multiple_of(block) && digits.chunks(block).all(|c| c == &digits[..block])
    };
    if repeats(2) || repeats(3) {
        return Some("must not be a block of 2 or 3 digits repeated (such as 121212)".into());
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The mailbox.

/// A mailbox as the API shows it: never the PIN's hash, only whether there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MailboxView {
    pub extension: String,
    pub enabled: bool,
    pub has_pin: bool,
    pub email: Option<String>,
    pub ring_secs: u16,
    pub greeting_unavailable: Option<String>,
    pub greeting_busy: Option<String>,
    /// The owner saying their name (a greeting of the extension), which the default greeting
    /// plays in place of the extension's number.
    #[serde(default)]
    pub greeting_name: Option<String>,
    pub max_message_secs: u16,
    pub max_messages: u16,
    pub messages_total: usize,
    pub messages_new: usize,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl MailboxView {
    fn of(m: Mailbox, name: Option<String>, messages: &[VoicemailMessage]) -> Self {
        let (total, new) = counts(messages);
        Self {
            extension: m.extension,
            enabled: m.enabled,
            has_pin: m.pin_hash.is_some(),
            email: m.email,
            ring_secs: m.ring_secs,
            greeting_unavailable: m.greeting_unavailable,
            greeting_busy: m.greeting_busy,
            greeting_name: name,
            max_message_secs: m.max_message_secs,
            max_messages: m.max_messages,
            messages_total: total,
            messages_new: new,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// `Some(None)` for an explicit `null`, `None` for an absent field.
pub(super) mod double_option {
    use serde::{Deserialize, Deserializer};

    pub(in crate::api) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

/// A mailbox as `PUT` takes it. Every field is replaced: an omitted one takes the default of a new
/// mailbox (enabled, no e-mail, 20 s of ringing, no greetings, 180 s messages, 100 of them) —
/// except `pin` and `greeting_name`, which an omitted field keeps and `null` removes (the name
/// lives beside the mailbox, and forms written before it existed leave it out). The read-only fields of a GET
/// answer are accepted and ignored, so an answer read, edited and written back is a valid body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MailboxBody {
    /// Must be the URL's when given.
    #[serde(default)]
    extension: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default, with = "double_option")]
    pin: Option<Option<String>>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    ring_secs: Option<u64>,
    #[serde(default)]
    greeting_unavailable: Option<String>,
    #[serde(default)]
    greeting_busy: Option<String>,
    #[serde(default, with = "double_option")]
    greeting_name: Option<Option<String>>,
    #[serde(default)]
    max_message_secs: Option<u64>,
    #[serde(default)]
    max_messages: Option<u64>,
    #[serde(default, rename = "has_pin")]
    _has_pin: Option<IgnoredAny>,
    #[serde(default, rename = "messages_total")]
    _messages_total: Option<IgnoredAny>,
    #[serde(default, rename = "messages_new")]
    _messages_new: Option<IgnoredAny>,
    #[serde(default, rename = "created_at")]
    _created_at: Option<IgnoredAny>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<IgnoredAny>,
}

/// What to do with the stored PIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PinChange {
    Keep,
    Remove,
    /// A new PIN, checked against the policy, to hash.
    Set(String),
}

/// What to do with the stored name greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameChange {
    Keep,
    /// Set it (`Some`) or remove it (`None`).
    Set(Option<String>),
}

/// The body's `greeting_name`: absent keeps, `null` or empty removes, otherwise an audio id.
fn name_change(v: Option<Option<String>>) -> Result<NameChange, ApiError> {
    match v {
        None => Ok(NameChange::Keep),
        Some(v) => Ok(NameChange::Set(greeting("greeting_name", v)?)),
    }
}

/// Why greeting `id` cannot be extension `number`'s name (a 400 naming `greeting_name`), checked
/// before anything is written so that a refused name changes nothing; the state machine checks
/// again in log order.
fn name_problem(state: &AppState, number: &str, id: &str) -> Result<(), ApiError> {
    match state.cluster.reader().get::<AudioFile>(id)? {
        None => Err(ApiError::invalid(
            "greeting_name",
            format!("audio file {id} does not exist"),
        )),
        Some(f) if f.kind != AudioKind::Greeting || f.owner != number => Err(ApiError::invalid(
            "greeting_name",
            format!("{id} is not a greeting of extension {number}"),
        )),
        Some(_) => Ok(()),
    }
}

/// Extension `number`'s name greeting.
fn name_of(state: &AppState, number: &str) -> Result<Option<String>, ApiError> {
    Ok(state
        .cluster
        .reader()
        .get::<MailboxName>(number)?
        .map(|n| n.greeting))
}

/// `value` as a `u16` within `range`, or a 400 naming `field`.
fn bounded(
    field: &str,
    value: Option<u64>,
    default: u16,
    range: &std::ops::RangeInclusive<u16>,
) -> Result<u16, ApiError> {
    let Some(v) = value else {
        return Ok(default);
    };
    u16::try_from(v)
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| ApiError::invalid(field, format!("{} to {}", range.start(), range.end())))
}

/// A greeting field: absent, `null` or empty is none; otherwise an audio file's id.
fn greeting(field: &str, v: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(id) = given(v) else {
        return Ok(None);
    };
    if !AudioFile::valid_id(&id) {
        return Err(ApiError::invalid(
            field,
            "an audio file's id, 32 lowercase hex digits",
        ));
    }
    Ok(Some(id))
}

/// Extension `number`'s mailbox as `body` describes it, checked, with what to do with the PIN.
/// `stored` is the mailbox a PUT replaces; `limits` says whether the account may set the limits
/// (without, they are kept as stored, and a different value is refused).
pub(crate) fn mailbox_from_body(
    number: &str,
    body: MailboxBody,
    stored: Option<&Mailbox>,
    limits: bool,
    now: UnixMillis,
) -> Result<(Mailbox, PinChange), ApiError> {
    if let Some(e) = body.extension.as_deref().filter(|e| *e != number) {
        return Err(ApiError::invalid(
            "extension",
            format!("{e} differs from the number in the URL ({number})"),
        ));
    }
    let defaults = Mailbox::new(number, now);
    let pin = match body.pin {
        None => PinChange::Keep,
        Some(None) => PinChange::Remove,
        Some(Some(p)) => {
            if let Some(rule) = pin_problem(&p, number) {
                return Err(ApiError::invalid("pin", rule));
            }
            PinChange::Set(p)
        }
    };
    let email = given(body.email);
    if let Some(e) = &email
        && (e.len() > MAX_EMAIL || !crate::events::valid_address(e))
    {
        return Err(ApiError::invalid(
            "email",
            format!("is not an e-mail address (one @, no spaces, at most {MAX_EMAIL} bytes)"),
        ));
    }
    let ring_secs = bounded(
        "ring_secs",
        body.ring_secs,
        defaults.ring_secs,
        &MAILBOX_RING_SECS,
    )?;
    let (mut max_message_secs, mut max_messages) = (
        bounded(
            "max_message_secs",
            body.max_message_secs,
            defaults.max_message_secs,
            &MAILBOX_MESSAGE_SECS,
        )?,
        bounded(
            "max_messages",
            body.max_messages,
            defaults.max_messages,
            &MAILBOX_MESSAGES,
        )?,
    );
    if !limits && let Some(s) = stored {
        for (field, given, kept) in [
            (
                "max_message_secs",
                body.max_message_secs,
                s.max_message_secs,
            ),
            ("max_messages", body.max_messages, s.max_messages),
        ] {
            if given.is_some_and(|g| g != u64::from(kept)) {
                return Err(ApiError::invalid(
                    field,
                    "set by an administrator (an account with the extensions grant)",
                ));
            }
        }
        (max_message_secs, max_messages) = (s.max_message_secs, s.max_messages);
    }
    let mailbox = Mailbox {
        extension: number.to_owned(),
        enabled: body.enabled.unwrap_or(defaults.enabled),
        pin_hash: match &pin {
            PinChange::Keep => stored.and_then(|s| s.pin_hash.clone()),
            // Hashed by the caller; the state machine never sees the PIN.
            PinChange::Remove | PinChange::Set(_) => None,
        },
        email,
        ring_secs,
        greeting_unavailable: greeting("greeting_unavailable", body.greeting_unavailable)?,
        greeting_busy: greeting("greeting_busy", body.greeting_busy)?,
        max_message_secs,
        max_messages,
        created_at: stored.map_or(now, |s| s.created_at),
        updated_at: now,
    };
    if let Some(reason) = mailbox.problem() {
        return Err(ApiError::BadRequest(reason));
    }
    Ok((mailbox, pin))
}

/// 404 for an extension without a mailbox.
fn no_mailbox(number: &str) -> ApiError {
    ApiError::NotFound(format!("extension {number} has no mailbox"))
}

/// Extension `number`'s mailbox and messages (after the extension was found, so after a barrier).
fn read_mailbox(
    state: &AppState,
    number: &str,
) -> Result<Option<(Mailbox, Vec<VoicemailMessage>)>, ApiError> {
    let reader = state.cluster.reader();
    let Some(mailbox) = reader.get::<Mailbox>(number)? else {
        return Ok(None);
    };
    let messages = reader.scan_prefix::<VoicemailMessage>(&VoicemailMessage::prefix(number))?;
    Ok(Some((mailbox, messages)))
}

/// The state machine's refusal of a mailbox change, in words: a missing extension is the URL's
/// (404), a missing greeting file the field's (400).
fn mailbox_refused(r: storage::Response, mailbox: &Mailbox) -> ApiError {
    let number = &mailbox.extension;
    match r {
        storage::Response::NotFound { table, key } if table == "audio_files" => {
            let field = if mailbox.greeting_unavailable.as_deref() == Some(key.as_str()) {
                "greeting_unavailable"
            } else {
                "greeting_busy"
            };
            ApiError::invalid(field, format!("audio file {key} does not exist"))
        }
        storage::Response::NotFound { table, .. } if table == "mailboxes" => no_mailbox(number),
        storage::Response::NotFound { .. } => {
            ApiError::NotFound(format!("extension {number} does not exist"))
        }
        other => other.into(),
    }
}

/// `GET /extensions/{number}/voicemail`.
pub(crate) async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
) -> Result<Json<MailboxView>, ApiError> {
    who.require(may_configure(&who, &number))?;
    validate_number(&number)?;
    existing_extension(&state, &number).await?;
    let (mailbox, messages) = read_mailbox(&state, &number)?.ok_or_else(|| no_mailbox(&number))?;
    let name = name_of(&state, &number)?;
    Ok(Json(MailboxView::of(mailbox, name, &messages)))
}

/// `PUT /extensions/{number}/voicemail`: creates (201, the `extensions` grant) or replaces (200).
pub(crate) async fn put(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
    JsonBody(mut body): JsonBody<MailboxBody>,
) -> Result<(StatusCode, Json<MailboxView>), ApiError> {
    who.require(may_configure(&who, &number))?;
    validate_number(&number)?;
    existing_extension(&state, &number).await?;
    let stored = read_mailbox(&state, &number)?;
    // Whether an extension has voicemail is the administrator's choice; its user changes it.
    who.require(stored.is_some() || who.grants.extensions)?;
    let name = name_change(body.greeting_name.take())?;
    let (mut mailbox, pin) = mailbox_from_body(
        &number,
        body,
        stored.as_ref().map(|(m, _)| m),
        who.grants.extensions,
        now_millis(),
    )?;
    if let NameChange::Set(Some(id)) = &name {
        name_problem(&state, &number, id)?;
    }
    if let PinChange::Set(p) = &pin {
        mailbox.pin_hash = Some(super::accounts::hash(p.clone()).await?);
    }
    match propose_answer(&state, Command::PutMailbox(mailbox.clone())).await? {
        storage::Response::Ok => {}
        refused => return Err(mailbox_refused(refused, &mailbox)),
    }
    let stored_name = name_of(&state, &number)?;
    let name = match name {
        NameChange::Set(to) if to != stored_name => {
            let cmd = Command::SetMailboxName {
                extension: number.clone(),
                greeting: to.clone(),
            };
            match propose_answer(&state, cmd).await? {
                storage::Response::Ok => to,
                // The file went, or changed hands, since it was checked.
                storage::Response::NotFound { table, key } if table == "audio_files" => {
                    return Err(ApiError::invalid(
                        "greeting_name",
                        format!("audio file {key} does not exist"),
                    ));
                }
                other => return Err(other.into()),
            }
        }
        NameChange::Set(_) | NameChange::Keep => stored_name,
    };
    tracing::info!(
        extension = %number,
        by = %who.username,
        enabled = mailbox.enabled,
        pin = pin_word(&pin),
        "mailbox {}",
        if stored.is_some() { "changed" } else { "created" }
    );
    let (status, messages) = match stored {
        Some((_, messages)) => (StatusCode::OK, messages),
        None => (StatusCode::CREATED, Vec::new()),
    };
    Ok((status, Json(MailboxView::of(mailbox, name, &messages))))
}

/// What a change did to the PIN, for the log (never the PIN).
fn pin_word(pin: &PinChange) -> &'static str {
    match pin {
        PinChange::Keep => "kept",
        PinChange::Remove => "removed",
        PinChange::Set(_) => "set",
    }
}

/// `DELETE /extensions/{number}/voicemail`: the mailbox, its messages and their audio (grant
/// `extensions`).
pub(crate) async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
) -> Result<StatusCode, ApiError> {
    who.require(who.grants.extensions)?;
    validate_number(&number)?;
    existing_extension(&state, &number).await?;
    let cmd = Command::DeleteMailbox {
        extension: number.clone(),
    };
    match propose_answer(&state, cmd).await? {
        storage::Response::Ok => {}
        storage::Response::NotFound { .. } => return Err(no_mailbox(&number)),
        other => return Err(other.into()),
    }
    tracing::info!(extension = %number, by = %who.username, "mailbox deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Messages.

/// A message as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MessageView {
    pub audio_id: String,
    pub caller: String,
    pub caller_name: String,
    pub because: LeftBecause,
    pub call_id: String,
    pub received_at: UnixMillis,
    pub duration_ms: u32,
    pub heard: bool,
}

impl From<VoicemailMessage> for MessageView {
    fn from(m: VoicemailMessage) -> Self {
        Self {
            audio_id: m.audio_id,
            caller: m.caller,
            caller_name: m.caller_name,
            because: m.because,
            call_id: m.call_id,
            received_at: m.received_at,
            duration_ms: m.duration_ms,
            heard: m.heard,
        }
    }
}

/// A mailbox's messages, newest first, with how many there are and how many are new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MessageList {
    pub messages: Vec<MessageView>,
    pub total: usize,
    pub new: usize,
}

impl MessageList {
    fn of(mut messages: Vec<VoicemailMessage>) -> Self {
        let (total, new) = counts(&messages);
        messages.sort_by(|a, b| {
            b.received_at
                .cmp(&a.received_at)
                .then_with(|| b.audio_id.cmp(&a.audio_id))
        });
        Self {
            messages: messages.into_iter().map(Into::into).collect(),
            total,
            new,
        }
    }
}

/// `GET /extensions/{number}/voicemail/messages`.
pub(crate) async fn list_messages(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
) -> Result<Json<MessageList>, ApiError> {
    who.require(may_read_messages(&who, &number))?;
    validate_number(&number)?;
    existing_extension(&state, &number).await?;
    let (_, messages) = read_mailbox(&state, &number)?.ok_or_else(|| no_mailbox(&number))?;
    Ok(Json(MessageList::of(messages)))
}

/// A message as `PUT` takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessageBody {
    heard: bool,
}

fn no_message(number: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "voicemail message {id} does not exist in the mailbox of extension {number}"
    ))
}

/// Message `id` of extension `number`'s mailbox, after a barrier; 404 without the extension, the
/// mailbox or the message (a malformed id is no message's).
async fn existing_message(
    state: &AppState,
    number: &str,
    id: &str,
) -> Result<VoicemailMessage, ApiError> {
    existing_extension(state, number).await?;
    let reader = state.cluster.reader();
    if reader.get::<Mailbox>(number)?.is_none() {
        return Err(no_mailbox(number));
    }
    if !AudioFile::valid_id(id) {
        return Err(no_message(number, id));
    }
    reader
        .get::<VoicemailMessage>(&VoicemailMessage::key_for(number, id))?
        .ok_or_else(|| no_message(number, id))
}

/// `PUT /extensions/{number}/voicemail/messages/{id}` with `{heard}`.
pub(crate) async fn mark(
    State(state): State<AppState>,
    who: Principal,
    Path((number, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<MessageBody>,
) -> Result<Json<MessageView>, ApiError> {
    who.require(may_read_messages(&who, &number))?;
    validate_number(&number)?;
    let mut message = existing_message(&state, &number, &id).await?;
    let cmd = Command::SetVoicemailHeard {
        mailbox: number.clone(),
        audio_id: id.clone(),
        heard: body.heard,
    };
    match propose_answer(&state, cmd).await? {
        storage::Response::Ok => {}
        // Deleted since it was read.
        storage::Response::NotFound { .. } => return Err(no_message(&number, &id)),
        other => return Err(other.into()),
    }
    message.heard = body.heard;
    Ok(Json(message.into()))
}

/// `DELETE /extensions/{number}/voicemail/messages/{id}`: the message and its audio.
pub(crate) async fn delete_message(
    State(state): State<AppState>,
    who: Principal,
    Path((number, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    who.require(may_read_messages(&who, &number))?;
    validate_number(&number)?;
    existing_message(&state, &number, &id).await?;
    let cmd = Command::DeleteVoicemailMessage {
        mailbox: number.clone(),
        audio_id: id.clone(),
    };
    match propose_answer(&state, cmd).await? {
        storage::Response::Ok => {}
        storage::Response::NotFound { .. } => return Err(no_message(&number, &id)),
        other => return Err(other.into()),
    }
    tracing::info!(extension = %number, by = %who.username, message = %id, "voicemail message deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use storage::web::Grants;

    const GREETING: &str = "0123456789abcdef0123456789abcdef";

    fn body(v: serde_json::Value) -> MailboxBody {
        serde_json::from_value(v).unwrap()
    }

    fn refused(v: serde_json::Value) -> String {
        mailbox_from_body("1001", body(v), None, true, 5)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn strong_pins_pass() {
        for pin in [
            "402913",
            "8675309",
            "135792",
            "112358",
            "120120121",
            "246802",
            "100200",
            "314159265358",
        ] {
            assert_eq!(pin_problem(pin, "1001"), None, "{pin}");
        }
    }

    #[test]
    fn each_weak_pin_is_refused_with_its_rule() {
        for (pin, rule) in [
            ("", "6 to 12 digits"),
            ("12345", "6 to 12 digits"),
            ("1234567890123", "6 to 12 digits"),
            ("12a456", "6 to 12 digits"),
            ("１２３４５６", "6 to 12 digits"),
            (" 402913", "6 to 12 digits"),
            ("000000", "one digit repeated"),
            ("999999999999", "one digit repeated"),
            ("123456", "run of digits"),
            ("987654", "run of digits"),
            ("890123", "run of digits"),
            ("3210987", "run of digits"),
            ("100100", "extension's number"),
            ("121212", "block of 2 or 3 digits"),
            ("123123", "block of 2 or 3 digits"),
            ("907907907", "block of 2 or 3 digits"),
            ("454545454545", "block of 2 or 3 digits"),
        ] {
            let got = pin_problem(pin, "100100");
            assert!(
                got.as_deref().is_some_and(|g| g.contains(rule)),
                "{pin:?}: {got:?} should say {rule:?}"
            );
        }
        // The number is only refused for its own extension.
        assert_eq!(pin_problem("402913", "1001"), None);
        assert!(pin_problem("402913", "402913").is_some_and(|p| p.contains("extension's number")));
    }

    #[test]
    fn a_new_mailbox_takes_the_defaults_and_the_urls_number() {
        let (m, pin) = mailbox_from_body("1001", body(json!({})), None, true, 5).unwrap();
        assert_eq!(m, Mailbox::new("1001", 5));
        assert_eq!(pin, PinChange::Keep);
        let (m, pin) = mailbox_from_body(
            "1001",
            body(
                json!({"enabled": false, "pin": "402913", "email": " a@example.com ",
                        "ring_secs": 30, "greeting_busy": GREETING, "max_message_secs": 60,
                        "max_messages": 5}),
            ),
            None,
            true,
            5,
        )
        .unwrap();
        assert_eq!(pin, PinChange::Set("402913".into()));
        assert_eq!(m.pin_hash, None, "the handler hashes");
        assert!(!m.enabled);
        assert_eq!(m.email.as_deref(), Some("a@example.com"));
        assert_eq!(
            (m.ring_secs, m.max_message_secs, m.max_messages),
            (30, 60, 5)
        );
        assert_eq!(m.greeting_busy.as_deref(), Some(GREETING));
        assert_eq!(m.greeting_unavailable, None);
    }

    #[test]
    fn a_replace_keeps_the_pin_unless_told_and_the_creation_time() {
        let mut stored = Mailbox::new("1001", 1);
        stored.pin_hash = Some("$argon2id$v=19$stored".into());
        let put = |v| mailbox_from_body("1001", body(v), Some(&stored), true, 9).unwrap();
        let (m, pin) = put(json!({"ring_secs": 40}));
        assert_eq!(pin, PinChange::Keep);
        assert_eq!(m.pin_hash, stored.pin_hash);
        assert_eq!((m.created_at, m.updated_at, m.ring_secs), (1, 9, 40));
        let (m, pin) = put(json!({"pin": null}));
        assert_eq!((pin, m.pin_hash), (PinChange::Remove, None));
        // A GET answer written back is a valid body and changes nothing but the time.
        let view = MailboxView::of(stored.clone(), Some(GREETING.into()), &[]);
        let (m, pin) = put(serde_json::to_value(&view).unwrap());
        assert_eq!(pin, PinChange::Keep);
        assert_eq!(
            m,
            Mailbox {
                updated_at: 9,
                ..stored.clone()
            }
        );
    }

    #[test]
    fn without_the_grant_the_limits_are_kept() {
        let mut stored = Mailbox::new("1001", 1);
        stored.max_messages = 7;
        stored.max_message_secs = 30;
        let put = |v| mailbox_from_body("1001", body(v), Some(&stored), false, 9);
        let (m, _) = put(json!({"ring_secs": 40})).unwrap();
        assert_eq!((m.max_message_secs, m.max_messages), (30, 7));
        let (m, _) = put(json!({"max_messages": 7, "max_message_secs": 30})).unwrap();
        assert_eq!((m.max_message_secs, m.max_messages), (30, 7));
        let err = put(json!({"max_messages": 1000})).unwrap_err().to_string();
        assert!(
            err.starts_with("max_messages: set by an administrator"),
            "{err}"
        );
        let err = put(json!({"max_message_secs": 600}))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("max_message_secs: "), "{err}");
    }

    #[test]
    fn a_bad_body_names_its_field() {
        for (v, start) in [
            (json!({"pin": "123456"}), "pin: must not be a run"),
            (json!({"pin": "1001"}), "pin: must be 6 to 12 digits"),
            (json!({"email": "not an address"}), "email: "),
            (json!({"email": "a@b@c"}), "email: "),
            (
                json!({"email": format!("{}@example.com", "a".repeat(250))}),
                "email: ",
            ),
            (json!({"ring_secs": 4}), "ring_secs: 5 to 120"),
            (json!({"ring_secs": 70000}), "ring_secs: 5 to 120"),
            (
                json!({"max_message_secs": 601}),
                "max_message_secs: 10 to 600",
            ),
            (json!({"max_messages": 0}), "max_messages: 1 to 1000"),
            (json!({"greeting_busy": "nope"}), "greeting_busy: "),
            (
                json!({"greeting_unavailable": "A".repeat(32)}),
                "greeting_unavailable: ",
            ),
            (json!({"extension": "1002"}), "extension: 1002 differs"),
        ] {
            let got = refused(v.clone());
            assert!(got.starts_with(start), "{v}: {got}");
        }
        assert!(serde_json::from_value::<MailboxBody>(json!({"pin_hash": "x"})).is_err());
        assert!(serde_json::from_value::<MailboxBody>(json!({"ring_secs": -1})).is_err());
        // Empty text is unset.
        let (m, _) = mailbox_from_body(
            "1001",
            body(json!({"email": "", "greeting_busy": ""})),
            None,
            true,
            5,
        )
        .unwrap();
        assert_eq!((m.email, m.greeting_busy), (None, None));
    }

    #[test]
    fn an_omitted_name_greeting_is_kept_and_null_or_empty_removes_it() {
        let name = |v: serde_json::Value| name_change(body(v).greeting_name);
        assert_eq!(name(json!({})).unwrap(), NameChange::Keep);
        assert_eq!(
            name(json!({"greeting_name": null})).unwrap(),
            NameChange::Set(None)
        );
        assert_eq!(
            name(json!({"greeting_name": ""})).unwrap(),
            NameChange::Set(None)
        );
        assert_eq!(
            name(json!({"greeting_name": GREETING})).unwrap(),
            NameChange::Set(Some(GREETING.into()))
        );
        let err = name(json!({"greeting_name": "me.wav"}))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("greeting_name: "), "{err}");
        // The mailbox itself is what it was without the field.
        let mut b = body(json!({"ring_secs": 30, "greeting_name": GREETING}));
        b.greeting_name = None;
        let (m, _) = mailbox_from_body("1001", b, None, true, 5).unwrap();
        assert_eq!(m.ring_secs, 30);
    }

    #[test]
    fn the_answer_shows_whether_there_is_a_pin_never_its_hash() {
        let mut m = Mailbox::new("1001", 1);
        m.pin_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
        let message = |id: &str, at, heard| VoicemailMessage {
            mailbox: "1001".into(),
            audio_id: id.into(),
            caller: "1002".into(),
            caller_name: "Bob".into(),
            because: LeftBecause::NoAnswer,
            call_id: "c1".into(),
            received_at: at,
            duration_ms: 4200,
            heard,
        };
        let messages = [message("a", 1, true), message("b", 2, false)];
        let v = serde_json::to_value(MailboxView::of(m, None, &messages)).unwrap();
        assert_eq!(
            v,
            json!({"extension": "1001", "enabled": true, "has_pin": true, "email": null,
                   "ring_secs": 20, "greeting_unavailable": null, "greeting_busy": null,
                   "greeting_name": null, "max_message_secs": 180, "max_messages": 100, "messages_total": 2,
                   "messages_new": 1, "created_at": 1, "updated_at": 1})
        );
        assert!(!v.to_string().contains("argon2"));

        let list = serde_json::to_value(MessageList::of(messages.to_vec())).unwrap();
        assert_eq!(
            list,
            json!({"messages": [
                {"audio_id": "b", "caller": "1002", "caller_name": "Bob", "because": "no_answer",
                 "call_id": "c1", "received_at": 2, "duration_ms": 4200, "heard": false},
                {"audio_id": "a", "caller": "1002", "caller_name": "Bob", "because": "no_answer",
                 "call_id": "c1", "received_at": 1, "duration_ms": 4200, "heard": true}
            ], "total": 2, "new": 1})
        );
        assert_eq!(
            serde_json::to_value(MessageList::of(Vec::new())).unwrap(),
            json!({"messages": [], "total": 0, "new": 0})
        );
    }

    #[test]
    fn who_may_reach_a_mailbox() {
        let who = |grants, ext: Option<&str>| Principal {
            username: "u".into(),
            role: "r".into(),
            extension: ext.map(Into::into),
            grants,
            session: None,
            must_change_password: false,
            needs_totp: false,
        };
        let own = who(Grants::USER, Some("1001"));
        assert!(may_configure(&own, "1001") && may_read_messages(&own, "1001"));
        assert!(!may_configure(&own, "1002") && !may_read_messages(&own, "1002"));
        let nobody = who(Grants::USER, None);
        assert!(!may_configure(&nobody, "1001") && !may_read_messages(&nobody, "1001"));
        let admin = who(Grants::ADMIN, None);
        assert!(may_configure(&admin, "1002") && may_read_messages(&admin, "1002"));
        let operator = who(Grants::OPERATOR, None);
        assert!(!may_configure(&operator, "1002") && may_read_messages(&operator, "1002"));
    }
}
