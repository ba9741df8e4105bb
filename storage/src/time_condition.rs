//! Time conditions: business hours and holidays choosing where an inbound call goes.
//!
//! A condition is open during any of its weekly hours, unless the day is one of its holidays; an
//! inbound route whose destination is the condition sends the call to `open` or `closed`
//! accordingly. The times are wall-clock times in the cluster's time zone: the caller of
//! [`TimeCondition::is_open`] converts the instant (the tz rules are not this crate's concern).

use serde::{Deserialize, Serialize};

use crate::codec::CodecError;
use crate::command::{Response, Txn, delete, put, table_name};
use crate::model::{Extension, UnixMillis};
use crate::routing::{Destination, InboundRoute};
use crate::tables::{Record, Table};

/// The longest a time condition's name may be, in bytes.
pub const MAX_NAME: usize = 32;
/// Weekly ranges and holidays one condition holds at most.
pub const MAX_HOURS: usize = 32;
pub const MAX_HOLIDAYS: usize = 128;
/// Minutes in a day: the end of a range that runs to midnight.
pub const DAY_MINUTES: u16 = 24 * 60;

/// Open on the days of `days` (bit 0 Monday … bit 6 Sunday) from minute `from` to just before
/// minute `to` of the day (`to` may be [`DAY_MINUTES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenHours {
    pub days: u8,
    pub from: u16,
    pub to: u16,
}

/// Closed all day from `from` to `to`, both included (`YYYY-MM-DD`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holiday {
    pub name: String,
    pub from: String,
    pub to: String,
}

/// A local wall-clock time: what [`TimeCondition::is_open`] decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTime {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// 0 Monday … 6 Sunday.
    pub weekday: u8,
    /// Minutes since midnight.
    pub minute: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeCondition {
    pub name: String,
    pub hours: Vec<OpenHours>,
    pub holidays: Vec<Holiday>,
    /// Where calls go while open, and while closed: an extension, a ring group or an IVR.
    pub open: Destination,
    pub closed: Destination,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl Record for TimeCondition {
    const TABLE: Table = Table::TimeConditions;
    fn key(&self) -> String {
        self.name.clone()
    }
}

/// Whether `s` is a date `YYYY-MM-DD` with a real month and a day the month can have.
pub fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

impl OpenHours {
    pub fn valid(&self) -> bool {
        self.days != 0 && self.days < 0x80 && self.from < self.to && self.to <= DAY_MINUTES
    }

    fn covers(&self, t: &LocalTime) -> bool {
        self.days & (1 << t.weekday) != 0 && (self.from..self.to).contains(&t.minute)
    }
}

impl Holiday {
    pub fn valid(&self) -> bool {
        valid_date(&self.from)
            && valid_date(&self.to)
            && self.from <= self.to
            && self.name.len() <= 64
            && !self.name.chars().any(char::is_control)
    }

    fn covers(&self, date: &str) -> bool {
        // ISO dates order as strings.
        self.from.as_str() <= date && date <= self.to.as_str()
    }
}

impl TimeCondition {
    /// Whether `name` may name a condition: 1 to [`MAX_NAME`] ASCII letters, digits, `-` and `_`.
    pub fn valid_name(name: &str) -> bool {
        (1..=MAX_NAME).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    /// The first problem with the condition's own fields, as `field: reason`.
    pub fn problem(&self) -> Option<String> {
        if !Self::valid_name(&self.name) {
            return Some(format!("name: 1 to {MAX_NAME} letters, digits, - or _"));
        }
        if self.hours.len() > MAX_HOURS {
            return Some(format!("hours: at most {MAX_HOURS} ranges"));
        }
        if let Some(i) = self.hours.iter().position(|h| !h.valid()) {
            return Some(format!(
                "hours[{i}]: at least one day, and from before to, within 00:00–24:00"
            ));
        }
        if self.holidays.len() > MAX_HOLIDAYS {
            return Some(format!("holidays: at most {MAX_HOLIDAYS}"));
        }
        if let Some(i) = self.holidays.iter().position(|h| !h.valid()) {
            return Some(format!(
                "holidays[{i}]: from and to as YYYY-MM-DD, from not after to, a name of at most 64 characters"
            ));
        }
        None
    }

    /// Open at `t`: within some weekly hours and on no holiday.
    pub fn is_open(&self, t: &LocalTime) -> bool {
        !self.holidays.iter().any(|h| h.covers(&t.date)) && self.hours.iter().any(|h| h.covers(t))
    }

    /// Where a call at `t` goes.
    pub fn destination(&self, t: &LocalTime) -> &Destination {
        if self.is_open(t) {
            &self.open
        } else {
            &self.closed
        }
    }
}

/// `NotFound` for what `d` names when that does not exist. A condition's destinations are
/// extensions, ring groups and IVRs only (the API refuses a condition first): a condition never
/// leads to another, so no chain can loop without a caller choosing in an IVR.
fn missing_target(txn: &dyn Txn, d: &Destination) -> Option<Response> {
    let not_found = |table: Table, key: &str| Response::NotFound {
        table: table_name(table),
        key: key.to_owned(),
    };
    let (table, key) = match d {
        Destination::Extension(n) => (Extension::TABLE, n),
        Destination::RingGroup(n) => (Table::RingGroups, n),
        Destination::TimeCondition(n) => return Some(not_found(Table::TimeConditions, n)),
        Destination::Ivr(n) => (Table::Ivrs, n),
        Destination::Conference(n) => (Table::ConferenceRooms, n),
    };
    txn.get(table, key).is_none().then(|| not_found(table, key))
}

/// Creates or replaces a condition: `NotFound` naming a destination that does not exist (a
/// condition as a destination is refused the same way).
pub(crate) fn put_time_condition(
    txn: &mut dyn Txn,
    cond: &TimeCondition,
) -> Result<Response, CodecError> {
    for d in [&cond.open, &cond.closed] {
        if let Some(missing) = missing_target(txn, d) {
            return Ok(missing);
        }
    }
    put(txn, cond)
}

/// Deletes a condition: `Conflict` naming an inbound route or an IVR that still sends calls to it.
pub(crate) fn delete_time_condition(txn: &mut dyn Txn, name: &str) -> Result<Response, CodecError> {
    if txn.get(Table::TimeConditions, name).is_none() {
        return Ok(Response::NotFound {
            table: table_name(Table::TimeConditions),
            key: name.to_owned(),
        });
    }
    let target = Destination::TimeCondition(name.to_owned());
    for key in txn.keys_with_prefix(Table::InboundRoutes, "") {
        let Some(bytes) = txn.get(Table::InboundRoutes, &key) else {
            continue;
        };
        let route: InboundRoute = crate::codec::decode(&bytes)?;
        if route.destination == target {
            return Ok(Response::Conflict {
                table: table_name(InboundRoute::TABLE),
                key: route.name,
            });
        }
    }
    if let Some(ivr) = crate::ivr::sending_to(txn, &target)? {
        return Ok(Response::Conflict {
            table: table_name(Table::Ivrs),
            key: ivr,
        });
    }
    Ok(delete(txn, Table::TimeConditions, name, true))
}

/// The name of a condition that sends calls to ring group `number`, if any (the group cannot be
/// deleted while one does).
pub(crate) fn sending_to_ring_group(
    txn: &dyn Txn,
    number: &str,
) -> Result<Option<String>, CodecError> {
    let target = Destination::RingGroup(number.to_owned());
    for key in txn.keys_with_prefix(Table::TimeConditions, "") {
        let Some(bytes) = txn.get(Table::TimeConditions, &key) else {
            continue;
        };
        let cond: TimeCondition = crate::codec::decode(&bytes)?;
        if cond.open == target || cond.closed == target {
            return Ok(Some(cond.name));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
