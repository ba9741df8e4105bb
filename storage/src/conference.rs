//! Conference rooms: a number callers inside dial (or inbound routes, time conditions and IVRs send
//! calls to, as [`Destination::Conference`]) to talk together, behind an optional PIN.
//!
//! A room's number is in the one number space of extensions, ring groups and IVRs. Who is in a room
//! now is replicated too ([`Participant`]), written by the node whose application agent holds the
//! call, so that any node's API lists, mutes and kicks them.
//!
//! What only the whole state can tell is checked here in log order: the number free, the room not
//! full, and no room deleted while something still sends calls to it. The record's own shape is
//! checked here too ([`ConferenceRoom::problem`]).

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::codec::CodecError;
use crate::command::{Response, Txn, delete, get, put};
use crate::model::UnixMillis;
use crate::routing::{Destination, InboundRoute, PutMode};
use crate::routing_apply::{conflict, invalid, not_found};
use crate::tables::{Record, Table};
use crate::time_condition::TimeCondition;

/// Longest room name in bytes.
pub const MAX_ROOM_NAME: usize = 64;
/// Longest room number, in digits (as an IVR's).
pub const MAX_ROOM_NUMBER: usize = 32;
/// How many may be in a room at most, as a room's limit.
pub const ROOM_PARTICIPANTS: RangeInclusive<u16> = 2..=50;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConferenceRoom {
    /// Dialable internally, and the key: 1..=32 digits, unique among extensions, ring groups, IVRs
    /// and rooms.
    pub number: String,
    pub name: String,
    /// argon2id PHC hash of the PIN callers must enter; None = no PIN.
    pub pin_hash: Option<String>,
    pub max_participants: u16,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl Record for ConferenceRoom {
    const TABLE: Table = Table::ConferenceRooms;
    fn key(&self) -> String {
        self.number.clone()
    }
}

impl ConferenceRoom {
    /// Whether `number` can be a room's: 1 to [`MAX_ROOM_NUMBER`] ASCII digits.
    pub fn valid_number(number: &str) -> bool {
        (1..=MAX_ROOM_NUMBER).contains(&number.len()) && number.bytes().all(|b| b.is_ascii_digit())
    }

    /// Whether `name` can name a room: not blank, at most [`MAX_ROOM_NAME`] bytes, no control
    /// characters.
    pub fn valid_name(name: &str) -> bool {
        !name.trim().is_empty()
            && name.len() <= MAX_ROOM_NAME
            && !name.chars().any(char::is_control)
    }

    /// The first problem with the room's own fields, as `field: reason`.
    pub fn problem(&self) -> Option<String> {
        if !Self::valid_number(&self.number) {
            return Some(format!("number: 1 to {MAX_ROOM_NUMBER} digits"));
        }
        if !Self::valid_name(&self.name) {
            return Some(format!(
                "name: 1 to {MAX_ROOM_NAME} bytes, not blank, no control characters"
            ));
        }
        if !ROOM_PARTICIPANTS.contains(&self.max_participants) {
            return Some(format!(
                "max_participants: {} to {}",
                ROOM_PARTICIPANTS.start(),
                ROOM_PARTICIPANTS.end()
            ));
        }
        if let Some(h) = &self.pin_hash
            && !h.starts_with("$argon2")
        {
            return Some("pin_hash: an argon2 PHC string".into());
        }
        None
    }
}

/// Someone in a room now, written by the node whose application agent holds the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub room: String,
    /// Random id, 16 lowercase hex.
    pub id: String,
    /// The caller's number and name.
    pub caller: String,
    pub caller_name: String,
    pub joined_at: UnixMillis,
    pub muted: bool,
    /// A moderator removed them: the agent hangs the call up and deletes the record.
    pub kicked: bool,
    /// The node carrying the call.
    pub node_id: u64,
}

impl Participant {
    pub fn key_for(room: &str, id: &str) -> String {
        format!("{room}/{id}")
    }

    /// The keys of every participant of `room` start with this.
    pub fn prefix(room: &str) -> String {
        format!("{room}/")
    }

    /// Whether `id` can be a participant's: 16 lowercase hex digits.
    pub fn valid_id(id: &str) -> bool {
        id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
}

impl Record for Participant {
    const TABLE: Table = Table::ConferenceParticipants;
    fn key(&self) -> String {
        Self::key_for(&self.room, &self.id)
    }
}

/// Creates (`Conflict` if the number is a room's already) or replaces (`NotFound` if it is none) a
/// room. Refused: `Invalid` for a malformed room; `Conflict` naming the extension, ring group or
/// IVR that has the number.
pub(crate) fn put_room(
    txn: &mut dyn Txn,
    room: &ConferenceRoom,
    mode: PutMode,
) -> Result<Response, CodecError> {
    if let Some(reason) = room.problem() {
        return Ok(invalid(Table::ConferenceRooms, &room.number, reason));
    }
    let exists = txn.get(Table::ConferenceRooms, &room.number).is_some();
    match (mode, exists) {
        (PutMode::Create, true) => return Ok(conflict(Table::ConferenceRooms, &room.number)),
        (PutMode::Update, false) => return Ok(not_found(Table::ConferenceRooms, &room.number)),
        _ => {}
    }
    // One number, one thing to call.
    for table in [Table::Extensions, Table::RingGroups, Table::Ivrs] {
        if txn.get(table, &room.number).is_some() {
            return Ok(conflict(table, &room.number));
        }
    }
    put(txn, room)
}

/// Deletes a room and everyone in it: `Conflict` naming an inbound route, a time condition or an
/// IVR that still sends calls to it.
pub(crate) fn delete_room(txn: &mut dyn Txn, number: &str) -> Result<Response, CodecError> {
    if txn.get(Table::ConferenceRooms, number).is_none() {
        return Ok(not_found(Table::ConferenceRooms, number));
    }
    let target = Destination::Conference(number.to_owned());
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
    if let Some(ivr) = crate::ivr::sending_to(txn, &target)? {
        return Ok(conflict(Table::Ivrs, &ivr));
    }
    for key in txn.keys_with_prefix(Table::ConferenceParticipants, &Participant::prefix(number)) {
        txn.delete(Table::ConferenceParticipants, &key);
    }
    Ok(delete(txn, Table::ConferenceRooms, number, true))
}

/// Enters or refreshes a participant: `NotFound` without the room, `Invalid` when a new one would
/// take the room over its limit.
pub(crate) fn put_participant(txn: &mut dyn Txn, p: &Participant) -> Result<Response, CodecError> {
    let Some(room) = get::<ConferenceRoom>(txn, &p.room)? else {
        return Ok(not_found(Table::ConferenceRooms, &p.room));
    };
    let key = p.key();
    if txn.get(Table::ConferenceParticipants, &key).is_none() {
        let present = txn
            .keys_with_prefix(Table::ConferenceParticipants, &Participant::prefix(&p.room))
            .len();
        if present >= usize::from(room.max_participants) {
            return Ok(invalid(
                Table::ConferenceParticipants,
                &key,
                format!(
                    "room: conference room {} is full ({} participants)",
                    room.number, room.max_participants
                ),
            ));
        }
    }
    put(txn, p)
}

/// Changes a participant that is in the room (`NotFound` otherwise).
pub(crate) fn change_participant(
    txn: &mut dyn Txn,
    room: &str,
    id: &str,
    change: impl FnOnce(&mut Participant),
) -> Result<Response, CodecError> {
    let key = Participant::key_for(room, id);
    let Some(mut p) = get::<Participant>(txn, &key)? else {
        return Ok(not_found(Table::ConferenceParticipants, &key));
    };
    change(&mut p);
    put(txn, &p)
}

/// Forgets a participant; `Ok` when there is none (the agent's cleanup may run twice).
pub(crate) fn remove_participant(txn: &mut dyn Txn, room: &str, id: &str) -> Response {
    delete(
        txn,
        Table::ConferenceParticipants,
        &Participant::key_for(room, id),
        false,
    )
}

#[cfg(test)]
mod tests;
