//! IVR menus (auto attendants): a greeting, then the key the caller presses chooses where the call
//! goes.
//!
//! An IVR's number is in the one number space of extensions and ring groups (a dialled number names
//! one thing), and inbound routes, time conditions and other IVRs send calls to it as
//! [`Destination::Ivr`]. A key may lead to another IVR, or to the same one (back to the menu): the
//! caller walks such a loop one key at a time, so unlike a chain of time conditions it needs no
//! refusing.
//!
//! What only the whole state can tell is checked here in log order, so two admins cannot race
//! past it: the number free, the greeting a prompt of the audio index, every destination existing,
//! and no IVR deleted while something still sends calls to it. The record's own shape is checked
//! here too ([`Ivr::problem`]), the same rule the API words field by field.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::audio::{AudioFile, AudioKind};
use crate::codec::CodecError;
use crate::command::{Response, Txn, delete, get, put};
use crate::model::UnixMillis;
use crate::routing::{Destination, InboundRoute, PutMode};
use crate::routing_apply::{conflict, invalid, not_found};
use crate::tables::{Record, Table};
use crate::time_condition::TimeCondition;

/// Longest IVR name in bytes.
pub const MAX_IVR_NAME: usize = 64;
/// Options one menu holds at most (one per key 0-9 * #).
pub const MAX_IVR_OPTIONS: usize = 12;
/// Longest IVR number, in digits (as long as a number the dial plan matches).
pub const MAX_IVR_NUMBER: usize = 32;
/// The keys a menu may offer, in the order of a phone's keypad.
pub const IVR_KEYS: [char; MAX_IVR_OPTIONS] =
    ['1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '0', '#'];
/// Seconds waited for a key after the greeting ends.
pub const IVR_TIMEOUT_SECS: RangeInclusive<u8> = 1..=60;
/// Times the greeting is played before the caller goes to the fallback.
pub const IVR_ATTEMPTS: RangeInclusive<u8> = 1..=5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IvrOption {
    /// The key: one of '0'..='9', '*', '#'.
    pub digit: char,
    pub destination: Destination,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ivr {
    /// Dialable internally, and the key. Digits only, 1..=32 chars, unique among extensions, ring
    /// groups and IVRs.
    pub number: String,
    pub name: String,
    /// Audio id (storage::audio, kind Prompt) of the greeting/menu prompt; None = no recorded
    /// greeting.
    pub greeting: Option<String>,
    pub options: Vec<IvrOption>,
    /// The caller may also dial any extension's number directly.
    pub direct_dial: bool,
    /// Seconds waited for a key after the greeting ends (1..=60).
    pub timeout_secs: u8,
    /// How many times the greeting is played before giving up (1..=5).
    pub attempts: u8,
    /// Where the caller goes when the attempts run out without a valid choice; None = hang up.
    pub fallback: Option<Destination>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl Record for Ivr {
    const TABLE: Table = Table::Ivrs;
    fn key(&self) -> String {
        self.number.clone()
    }
}

impl Ivr {
    /// Whether `number` can be an IVR's: 1 to [`MAX_IVR_NUMBER`] ASCII digits.
    pub fn valid_number(number: &str) -> bool {
        (1..=MAX_IVR_NUMBER).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit())
    }

    /// Whether `name` can name an IVR: not blank, at most [`MAX_IVR_NAME`] bytes, no control
    /// characters (it shows in the portal and in logs).
    pub fn valid_name(name: &str) -> bool {
        !name.trim().is_empty() && name.len() <= MAX_IVR_NAME && !name.chars().any(char::is_control)
    }

    /// The first problem with the IVR's own fields, as `field: reason`.
    pub fn problem(&self) -> Option<String> {
        if !Self::valid_number(&self.number) {
            return Some(format!("number: 1 to {MAX_IVR_NUMBER} digits"));
        }
        if !Self::valid_name(&self.name) {
            return Some(format!(
                "name: 1 to {MAX_IVR_NAME} bytes, not blank, no control characters"
            ));
        }
        if let Some(g) = &self.greeting
            && !AudioFile::valid_id(g)
        {
            return Some("greeting: an audio file's id, 32 lowercase hex digits".into());
        }
        if self.options.len() > MAX_IVR_OPTIONS {
            return Some(format!(
                "options: at most {MAX_IVR_OPTIONS}, one per key 0-9, * and #"
            ));
        }
        for (i, o) in self.options.iter().enumerate() {
            if !IVR_KEYS.contains(&o.digit) {
                return Some(format!("options[{i}].digit: one of 0-9, * or #"));
            }
            if self.options[..i].iter().any(|p| p.digit == o.digit) {
                return Some(format!(
                    "options[{i}].digit: key {} is listed twice",
                    o.digit
                ));
            }
        }
        if !IVR_TIMEOUT_SECS.contains(&self.timeout_secs) {
            return Some(format!(
                "timeout_secs: {} to {} seconds",
                IVR_TIMEOUT_SECS.start(),
                IVR_TIMEOUT_SECS.end()
            ));
        }
        if !IVR_ATTEMPTS.contains(&self.attempts) {
            return Some(format!(
                "attempts: {} to {}",
                IVR_ATTEMPTS.start(),
                IVR_ATTEMPTS.end()
            ));
        }
        None
    }

    /// Where key `digit` leads, if the menu offers it.
    pub fn choice(&self, digit: char) -> Option<&Destination> {
        self.options
            .iter()
            .find(|o| o.digit == digit)
            .map(|o| &o.destination)
    }

    /// Every destination the IVR sends calls to: its options', then its fallback.
    pub fn destinations(&self) -> impl Iterator<Item = &Destination> {
        self.options
            .iter()
            .map(|o| &o.destination)
            .chain(self.fallback.as_ref())
    }

    /// Whether the IVR sends calls to `d`, by a key or as its fallback.
    pub fn sends_to(&self, d: &Destination) -> bool {
        self.destinations().any(|x| x == d)
    }
}

/// `NotFound` for what `d` names when that does not exist. The IVR being written (`own`) exists
/// for its own options: a key back to the menu is valid on creation too.
fn missing_destination(txn: &dyn Txn, d: &Destination, own: &str) -> Option<Response> {
    let (table, key) = match d {
        Destination::Extension(n) => (Table::Extensions, n),
        Destination::RingGroup(n) => (Table::RingGroups, n),
        Destination::TimeCondition(n) => (Table::TimeConditions, n),
        Destination::Ivr(n) if n == own => return None,
        Destination::Ivr(n) => (Table::Ivrs, n),
        Destination::Conference(n) => (Table::ConferenceRooms, n),
    };
    txn.get(table, key).is_none().then(|| not_found(table, key))
}

/// Creates (`Conflict` if the number is an IVR's already) or replaces (`NotFound` if it is none)
/// an IVR. Refused: `Invalid` for a malformed IVR or a greeting that is no prompt; `Conflict`
/// naming the extension or ring group that has the number; `NotFound` naming a greeting or a
/// destination that does not exist.
pub(crate) fn put_ivr(txn: &mut dyn Txn, ivr: &Ivr, mode: PutMode) -> Result<Response, CodecError> {
    if let Some(reason) = ivr.problem() {
        return Ok(invalid(Table::Ivrs, &ivr.number, reason));
    }
    let exists = txn.get(Table::Ivrs, &ivr.number).is_some();
    match (mode, exists) {
        (PutMode::Create, true) => return Ok(conflict(Table::Ivrs, &ivr.number)),
        (PutMode::Update, false) => return Ok(not_found(Table::Ivrs, &ivr.number)),
        _ => {}
    }
    // One number, one thing to call.
    for table in [Table::Extensions, Table::RingGroups, Table::ConferenceRooms] {
        if txn.get(table, &ivr.number).is_some() {
            return Ok(conflict(table, &ivr.number));
        }
    }
    if let Some(id) = &ivr.greeting {
        match get::<AudioFile>(txn, id)? {
            None => return Ok(not_found(Table::AudioFiles, id)),
            Some(f) if f.kind != AudioKind::Prompt => {
                let reason = format!(
                    "greeting: audio file {id} is a {}, not a prompt",
                    f.kind.as_str().replace('_', " ")
                );
                return Ok(invalid(Table::Ivrs, &ivr.number, reason));
            }
            Some(_) => {}
        }
    }
    for d in ivr.destinations() {
        if let Some(missing) = missing_destination(txn, d, &ivr.number) {
            return Ok(missing);
        }
    }
    put(txn, ivr)
}

/// Deletes an IVR: `Conflict` naming an inbound route, a time condition or another IVR that still
/// sends calls to it (its own keys back to the menu do not count).
pub(crate) fn delete_ivr(txn: &mut dyn Txn, number: &str) -> Result<Response, CodecError> {
    if txn.get(Table::Ivrs, number).is_none() {
        return Ok(not_found(Table::Ivrs, number));
    }
    let target = Destination::Ivr(number.to_owned());
    for key in txn.keys_with_prefix(Table::InboundRoutes, "") {
        if let Some(route) = get::<InboundRoute>(txn, &key)?
            && route.destination == target
        {
            return Ok(conflict(Table::InboundRoutes, &route.name));
        }
    }
    for key in txn.keys_with_prefix(Table::TimeConditions, "") {
        if let Some(cond) = get::<TimeCondition>(txn, &key)?
            && (cond.open == target || cond.closed == target)
        {
            return Ok(conflict(Table::TimeConditions, &cond.name));
        }
    }
    if let Some(other) = sending_to(txn, &target)? {
        return Ok(conflict(Table::Ivrs, &other));
    }
    Ok(delete(txn, Table::Ivrs, number, true))
}

/// The number of an IVR that sends calls to `d` (by a key or as its fallback), if any: what `d`
/// names cannot be deleted while one does. When `d` is an IVR, its own keys back to the menu do
/// not count.
pub(crate) fn sending_to(txn: &dyn Txn, d: &Destination) -> Result<Option<String>, CodecError> {
    let own = match d {
        Destination::Ivr(n) => Some(n.as_str()),
        _ => None,
    };
    for key in txn.keys_with_prefix(Table::Ivrs, "") {
        if Some(key.as_str()) == own {
            continue;
        }
        if let Some(ivr) = get::<Ivr>(txn, &key)?
            && ivr.sends_to(d)
        {
            return Ok(Some(ivr.number));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
