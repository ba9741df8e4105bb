//! `/api/v1/time-conditions`: business hours and holidays that choose where an inbound route's
//! calls go (grant `routing`).
//!
//! A condition's hours are wall-clock times in the cluster's time zone (`system.time_zone`, UTC when
//! unset); answers say whether it is open now, by the same clock the call engine uses. That its
//! destinations exist, and that no inbound route still sends calls to a condition being deleted,
//! the state machine checks in log order; the handlers here check the shape of a request and word
//! the state machine's refusals.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use storage::model::UnixMillis;
use storage::routing::Destination;
use storage::time_condition::{
    DAY_MINUTES, Holiday, LocalTime, MAX_HOLIDAYS, MAX_HOURS, MAX_NAME, OpenHours, TimeCondition,
    valid_date,
};
use storage::{Command, StateReader, StorageError};

use super::AppState;
use super::access::Principal;
use super::crud::propose_answer;
use super::error::ApiError;
use super::json::JsonBody;
use super::routes::DestinationJson;
use crate::sip::{cluster_zone, local_time};
use crate::time::now_millis;

/// The days of the week as the API names them, Monday first (bit 0 of [`OpenHours::days`]).
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
/// Longest holiday name, in bytes (the store's limit).
const MAX_HOLIDAY_NAME: usize = 64;

/// One weekly range: `{"days": ["mon", "fri"], "from": "09:00", "to": "17:30"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HoursJson {
    pub(crate) days: Vec<String>,
    pub(crate) from: String,
    pub(crate) to: String,
}

/// A holiday: `{"name": "Christmas", "from": "2026-12-24", "to": "2026-12-26"}`; an omitted `to`
/// is the one day `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HolidayJson {
    #[serde(default)]
    pub(crate) name: String,
    pub(crate) from: String,
    #[serde(default)]
    pub(crate) to: Option<String>,
}

/// A time condition as PUT takes it. Every field is replaced: omitted `hours` or `holidays` are
/// none (a condition without hours is always closed).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TimeConditionBody {
    /// Read-only fields of a GET answer, accepted and ignored: a record read, edited and written
    /// back is a valid body.
    #[serde(default, rename = "created_at")]
    _created_at: Option<IgnoredAny>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<IgnoredAny>,
    #[serde(default, rename = "open_now")]
    _open_now: Option<IgnoredAny>,
    #[serde(default, rename = "zone")]
    _zone: Option<IgnoredAny>,
    /// The URL's, if given.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    hours: Vec<HoursJson>,
    #[serde(default)]
    holidays: Vec<HolidayJson>,
    open: DestinationJson,
    closed: DestinationJson,
}

/// A time condition as answers show it: the body's shape, with whether it is open now in `zone`.
#[derive(Debug, Serialize)]
pub(crate) struct TimeConditionView {
    name: String,
    hours: Vec<HoursJson>,
    holidays: Vec<HolidayJson>,
    open: DestinationJson,
    closed: DestinationJson,
    open_now: bool,
    zone: String,
    created_at: UnixMillis,
    updated_at: UnixMillis,
}

#[derive(Debug, Serialize)]
pub(crate) struct TimeConditionList {
    time_conditions: Vec<TimeConditionView>,
}

/// `m` minutes after midnight as `HH:MM` (`24:00` for the end of the day).
fn clock(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// Condition `c` as answers show it, `now` being the wall-clock time in `zone`.
pub(crate) fn view(c: TimeCondition, zone: &str, now: &LocalTime) -> TimeConditionView {
    let open_now = c.is_open(now);
    let hours = c
        .hours
        .iter()
        .map(|h| HoursJson {
            days: DAYS
                .iter()
                .enumerate()
                .filter(|(i, _)| h.days & (1 << i) != 0)
                .map(|(_, d)| (*d).to_owned())
                .collect(),
            from: clock(h.from),
            to: clock(h.to),
        })
        .collect();
    let holidays = c
        .holidays
        .into_iter()
        .map(|h| HolidayJson {
            name: h.name,
            from: h.from,
            to: Some(h.to),
        })
        .collect();
    TimeConditionView {
        name: c.name,
        hours,
        holidays,
        open: c.open.into(),
        closed: c.closed.into(),
        open_now,
        zone: zone.to_owned(),
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

/// The cluster's zone as the call engine reads the hours in it: UTC when unset, or for a zone the
/// tz rules bundled with the binary do not know.
pub(crate) fn effective_zone(reader: &StateReader) -> String {
    Some(cluster_zone(reader))
        .filter(|z| jiff::tz::TimeZone::get(z).is_ok())
        .unwrap_or_else(|| "UTC".to_owned())
}

/// The cluster's zone, and the wall-clock time there at `at`.
fn clock_at(reader: &StateReader, at: UnixMillis) -> (String, LocalTime) {
    let zone = effective_zone(reader);
    let now = local_time(&zone, at);
    (zone, now)
}

/// Every condition, by name, as answers show them at `at` in the cluster's zone.
pub(crate) fn list_views(
    reader: &StateReader,
    at: UnixMillis,
) -> Result<TimeConditionList, StorageError> {
    let (zone, now) = clock_at(reader, at);
    let time_conditions = reader
        .list::<TimeCondition>()?
        .into_iter()
        .map(|c| view(c, &zone, &now))
        .collect();
    Ok(TimeConditionList { time_conditions })
}

/// 400 unless `name` can name a condition.
fn validate_name(name: &str) -> Result<(), ApiError> {
    if TimeCondition::valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "name",
            format!("1 to {MAX_NAME} letters, digits, '-' or '_'"),
        ))
    }
}

/// The days of a range as the bitmask the store keeps: at least one, each once.
fn days_mask(field: &str, days: &[String]) -> Result<u8, ApiError> {
    if days.is_empty() {
        return Err(ApiError::invalid(
            field,
            "at least one of mon, tue, wed, thu, fri, sat, sun",
        ));
    }
    let mut mask = 0u8;
    for d in days {
        let Some(i) = DAYS.iter().position(|n| n == d) else {
            return Err(ApiError::invalid(
                field,
                format!("{d:?} is not a day: mon, tue, wed, thu, fri, sat or sun"),
            ));
        };
        let bit = 1u8 << i;
        if mask & bit != 0 {
            return Err(ApiError::invalid(field, format!("{d} is listed twice")));
        }
        mask |= bit;
    }
    Ok(mask)
}

/// `HH:MM` (24-hour) as minutes after midnight; `24:00` only where `end` (the end of a range).
fn minutes(field: &str, s: &str, end: bool) -> Result<u16, ApiError> {
    let b = s.as_bytes();
    let two = |i: usize| {
        let (hi, lo) = (b[i], b[i + 1]);
        (hi.is_ascii_digit() && lo.is_ascii_digit())
            .then(|| u16::from(hi - b'0') * 10 + u16::from(lo - b'0'))
    };
    let parsed = (b.len() == 5 && b[2] == b':')
        .then(|| two(0).zip(two(3)))
        .flatten();
    match parsed {
        Some((24, 0)) if end => Ok(DAY_MINUTES),
        Some((h, m)) if h < 24 && m < 60 => Ok(h * 60 + m),
        _ if end => Err(ApiError::invalid(
            field,
            format!("{s:?} is not a time HH:MM from 00:01 to 24:00"),
        )),
        _ => Err(ApiError::invalid(
            field,
            format!("{s:?} is not a time HH:MM from 00:00 to 23:59"),
        )),
    }
}

fn hours_from_json(i: usize, h: &HoursJson) -> Result<OpenHours, ApiError> {
    let days = days_mask(&format!("hours[{i}].days"), &h.days)?;
    let from = minutes(&format!("hours[{i}].from"), &h.from, false)?;
    let to = minutes(&format!("hours[{i}].to"), &h.to, true)?;
    if from >= to {
        return Err(ApiError::invalid(
            format!("hours[{i}].to"),
            format!(
                "{} is not after from ({}); a range ends the day it starts (24:00 at the latest)",
                h.to, h.from
            ),
        ));
    }
    Ok(OpenHours { days, from, to })
}

fn holiday_from_json(i: usize, h: HolidayJson) -> Result<Holiday, ApiError> {
    let name = h.name.trim().to_owned();
    if name.len() > MAX_HOLIDAY_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            format!("holidays[{i}].name"),
            format!("at most {MAX_HOLIDAY_NAME} bytes, no control characters"),
        ));
    }
    let date = |field: &str, d: &str| {
        if valid_date(d) {
            Ok(())
        } else {
            Err(ApiError::invalid(
                format!("holidays[{i}].{field}"),
                format!("{d:?} is not a date YYYY-MM-DD"),
            ))
        }
    };
    date("from", &h.from)?;
    let to = h.to.unwrap_or_else(|| h.from.clone());
    date("to", &to)?;
    // ISO dates order as strings.
    if to < h.from {
        return Err(ApiError::invalid(
            format!("holidays[{i}].to"),
            format!("{to} is before from ({})", h.from),
        ));
    }
    Ok(Holiday {
        name,
        from: h.from,
        to,
    })
}

/// Condition `name` as `body` describes it, checked. `stored` is the condition a PUT replaces.
fn condition_from_body(
    name: String,
    body: TimeConditionBody,
    stored: Option<&TimeCondition>,
    now: UnixMillis,
) -> Result<TimeCondition, ApiError> {
    validate_name(&name)?;
    if let Some(b) = body.name.as_deref().filter(|b| *b != name) {
        return Err(ApiError::invalid(
            "name",
            format!("{b} differs from the name in the URL ({name}); a condition cannot be renamed"),
        ));
    }
    if body.hours.len() > MAX_HOURS {
        return Err(ApiError::invalid(
            "hours",
            format!("at most {MAX_HOURS} ranges"),
        ));
    }
    if body.holidays.len() > MAX_HOLIDAYS {
        return Err(ApiError::invalid(
            "holidays",
            format!("at most {MAX_HOLIDAYS}"),
        ));
    }
    let hours = body
        .hours
        .iter()
        .enumerate()
        .map(|(i, h)| hours_from_json(i, h))
        .collect::<Result<Vec<_>, _>>()?;
    let holidays = body
        .holidays
        .into_iter()
        .enumerate()
        .map(|(i, h)| holiday_from_json(i, h))
        .collect::<Result<Vec<_>, _>>()?;
    let cond = TimeCondition {
        open: body.open.checked("open", false)?,
        closed: body.closed.checked("closed", false)?,
        hours,
        holidays,
        created_at: stored.map_or(now, |c| c.created_at),
        updated_at: now,
        name,
    };
    // The store's own rule decides; the checks above only name the field at fault.
    if let Some(problem) = cond.problem() {
        return Err(ApiError::BadRequest(problem));
    }
    Ok(cond)
}

/// The state machine's refusal of a put of `cond`, in words: a destination that does not exist
/// is a 404 naming its field, as a ring group's missing member is.
fn put_refused(r: storage::Response, cond: &TimeCondition) -> ApiError {
    let missing = |table: &str, key: &str| {
        let (noun, d) = match table {
            "extensions" => ("extension", Destination::Extension(key.to_owned())),
            "ring_groups" => ("ring group", Destination::RingGroup(key.to_owned())),
            "time_conditions" => ("time condition", Destination::TimeCondition(key.to_owned())),
            "ivrs" => ("IVR", Destination::Ivr(key.to_owned())),
            "conference_rooms" => ("conference room", Destination::Conference(key.to_owned())),
            _ => return None,
        };
        let field = if cond.open == d { "open" } else { "closed" };
        Some(ApiError::NotFound(format!(
            "{field}.target: {noun} {key} does not exist"
        )))
    };
    match r {
        storage::Response::NotFound { table, key } => match missing(&table, &key) {
            Some(e) => e,
            None => storage::Response::NotFound { table, key }.into(),
        },
        other => other.into(),
    }
}

/// The state machine's refusal of deleting condition `name`, in words.
fn delete_refused(r: storage::Response, name: &str) -> ApiError {
    match r {
        storage::Response::NotFound { .. } => no_condition(name),
        storage::Response::Conflict { table, key } if table == "inbound_routes" => {
            ApiError::Conflict(format!(
                "inbound route {key} still sends calls to time condition {name}"
            ))
        }
        storage::Response::Conflict { table, key } if table == "ivrs" => ApiError::Conflict(
            format!("IVR {key} still sends calls to time condition {name}"),
        ),
        storage::Response::Conflict { table, key } => ApiError::Conflict(format!(
            "time condition {name} is used by {} {key}",
            table.trim_end_matches('s').replace('_', " ")
        )),
        other => other.into(),
    }
}

fn no_condition(name: &str) -> ApiError {
    ApiError::NotFound(format!("time condition {name} does not exist"))
}

/// Condition `name` after a linearizable barrier; 400 for a name no condition can have, `None`
/// when there is none.
async fn read_condition(state: &AppState, name: &str) -> Result<Option<TimeCondition>, ApiError> {
    validate_name(name)?;
    state.cluster.linearizable_barrier().await?;
    Ok(state.cluster.reader().get::<TimeCondition>(name)?)
}

/// `c` as answers show it now.
fn view_now(reader: &StateReader, c: TimeCondition) -> TimeConditionView {
    let (zone, now) = clock_at(reader, now_millis());
    view(c, &zone, &now)
}

/// Every time condition, by name.
pub(crate) async fn list(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<TimeConditionList>, ApiError> {
    who.require(who.grants.routing)?;
    state.cluster.linearizable_barrier().await?;
    Ok(Json(list_views(state.cluster.reader(), now_millis())?))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Json<TimeConditionView>, ApiError> {
    who.require(who.grants.routing)?;
    let cond = read_condition(&state, &name)
        .await?
        .ok_or_else(|| no_condition(&name))?;
    Ok(Json(view_now(state.cluster.reader(), cond)))
}

/// Creates (201) or replaces (200) condition `name`; 404 naming `open.target` or `closed.target`
/// when that extension, ring group or IVR does not exist.
pub(crate) async fn put(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<TimeConditionBody>,
) -> Result<(StatusCode, Json<TimeConditionView>), ApiError> {
    who.require(who.grants.routing)?;
    let stored = read_condition(&state, &name).await?;
    let cond = condition_from_body(name, body, stored.as_ref(), now_millis())?;
    match propose_answer(&state, Command::PutTimeCondition(cond.clone())).await? {
        storage::Response::Ok => {}
        refused => return Err(put_refused(refused, &cond)),
    }
    let status = if stored.is_some() {
        tracing::info!(name = %cond.name, "time condition replaced");
        StatusCode::OK
    } else {
        tracing::info!(name = %cond.name, "time condition created");
        StatusCode::CREATED
    };
    Ok((status, Json(view_now(state.cluster.reader(), cond))))
}

/// Deletes condition `name`; 409 naming the inbound route or IVR that still sends calls to it.
pub(crate) async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    who.require(who.grants.routing)?;
    validate_name(&name)?;
    let cmd = Command::DeleteTimeCondition { name: name.clone() };
    match propose_answer(&state, cmd).await? {
        storage::Response::Ok => {}
        refused => return Err(delete_refused(refused, &name)),
    }
    tracing::info!(name = %name, "time condition deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn office() -> serde_json::Value {
        serde_json::json!({
            "name": "office",
            "hours": [{"days": ["mon", "tue", "wed", "thu", "fri"], "from": "09:00", "to": "17:30"}],
            "holidays": [{"name": "Christmas", "from": "2026-12-24", "to": "2026-12-26"}],
            "open": {"type": "extension", "target": "1001"},
            "closed": {"type": "ring_group", "target": "600"}
        })
    }

    fn cond(json: serde_json::Value) -> Result<TimeCondition, String> {
        let body: TimeConditionBody = serde_json::from_value(json).map_err(|e| e.to_string())?;
        condition_from_body("office".into(), body, None, 7).map_err(|e| e.to_string())
    }

    fn at(date: &str, weekday: u8, hh: u16, mm: u16) -> LocalTime {
        LocalTime {
            date: date.into(),
            weekday,
            minute: hh * 60 + mm,
        }
    }

    #[test]
    fn a_condition_reads_and_writes_in_the_apis_shape() {
        let c = cond(office()).unwrap();
        assert_eq!(
            c.hours,
            [OpenHours {
                days: 0b1_1111,
                from: 9 * 60,
                to: 17 * 60 + 30
            }]
        );
        assert_eq!(c.holidays[0].to, "2026-12-26");
        assert_eq!(c.open, Destination::Extension("1001".into()));
        assert_eq!(c.closed, Destination::RingGroup("600".into()));
        assert_eq!((c.created_at, c.updated_at), (7, 7));

        // Monday 2026-11-30 10:00: open; the answer is the body plus the read-only fields.
        let v = view(c.clone(), "UTC", &at("2026-11-30", 0, 10, 0));
        let json = serde_json::to_value(&v).unwrap();
        for key in ["name", "hours", "holidays", "open", "closed"] {
            assert_eq!(json[key], office()[key], "{key}");
        }
        assert_eq!(json["open_now"], true);
        assert_eq!(json["zone"], "UTC");
        // Closed at 17:30, on Saturday, and on a holiday.
        assert!(!view(c.clone(), "UTC", &at("2026-11-30", 0, 17, 30)).open_now);
        assert!(!view(c.clone(), "UTC", &at("2026-12-05", 5, 10, 0)).open_now);
        assert!(!view(c.clone(), "UTC", &at("2026-12-24", 3, 10, 0)).open_now);

        // The GET answer written back is a valid body and the same condition.
        let body: TimeConditionBody = serde_json::from_value(json).unwrap();
        let again = condition_from_body("office".into(), body, Some(&c), 99).unwrap();
        assert_eq!(again.hours, c.hours);
        assert_eq!(again.holidays, c.holidays);
        assert_eq!((again.created_at, again.updated_at), (7, 99));
    }

    #[test]
    fn days_are_any_order_and_times_may_end_at_midnight() {
        let mut j = office();
        j["hours"] = serde_json::json!([
            {"days": ["sun", "sat"], "from": "00:00", "to": "24:00"},
        ]);
        j["holidays"] = serde_json::json!([{"from": "2026-01-01"}]);
        let c = cond(j).unwrap();
        assert_eq!(c.hours[0].days, 0b110_0000);
        assert_eq!((c.hours[0].from, c.hours[0].to), (0, DAY_MINUTES));
        assert_eq!(c.holidays[0].to, "2026-01-01", "one day when to is omitted");
        assert_eq!(c.holidays[0].name, "");
        let v = serde_json::to_value(view(c, "UTC", &at("2026-01-03", 5, 23, 59))).unwrap();
        assert_eq!(v["hours"][0]["days"], serde_json::json!(["sat", "sun"]));
        assert_eq!(v["hours"][0]["to"], "24:00");
        assert_eq!(v["open_now"], true, "Saturday 23:59 is before 24:00");
    }

    #[test]
    fn a_bad_condition_names_its_field() {
        let with = |path: &[&str], value: serde_json::Value| {
            let mut j = office();
            let mut at = &mut j;
            for p in path {
                at = match p.parse::<usize>() {
                    Ok(i) => &mut at[i],
                    Err(_) => &mut at[*p],
                };
            }
            *at = value;
            j
        };
        let cases = [
            (
                with(&["hours", "0", "days"], serde_json::json!(["mon", "xyz"])),
                "hours[0].days:",
            ),
            (
                with(&["hours", "0", "days"], serde_json::json!(["Mon"])),
                "hours[0].days:",
            ),
            (
                with(&["hours", "0", "days"], serde_json::json!(["mon", "mon"])),
                "hours[0].days:",
            ),
            (
                with(&["hours", "0", "days"], serde_json::json!([])),
                "hours[0].days:",
            ),
            (
                with(&["hours", "0", "from"], serde_json::json!("25:00")),
                "hours[0].from:",
            ),
            (
                with(&["hours", "0", "from"], serde_json::json!("24:00")),
                "hours[0].from:",
            ),
            (
                with(&["hours", "0", "from"], serde_json::json!("9:00")),
                "hours[0].from:",
            ),
            (
                with(&["hours", "0", "to"], serde_json::json!("17:60")),
                "hours[0].to:",
            ),
            (
                with(&["hours", "0", "to"], serde_json::json!("09:00")),
                "hours[0].to:",
            ),
            (
                with(&["hours", "0", "to"], serde_json::json!("08:00")),
                "hours[0].to:",
            ),
            (
                with(&["holidays", "0", "from"], serde_json::json!("2026-02-30")),
                "holidays[0].from:",
            ),
            (
                with(&["holidays", "0", "to"], serde_json::json!("2026-12-23")),
                "holidays[0].to:",
            ),
            (
                with(
                    &["holidays", "0", "name"],
                    serde_json::json!("x".repeat(65)),
                ),
                "holidays[0].name:",
            ),
            (
                with(&["open", "type"], serde_json::json!("time_condition")),
                "open.type:",
            ),
            (
                with(&["closed", "target"], serde_json::json!("x1")),
                "closed.target:",
            ),
            (with(&["name"], serde_json::json!("other")), "name:"),
        ];
        for (json, field) in cases {
            let err = cond(json.clone()).unwrap_err();
            assert!(err.starts_with(field), "{json}: {err}");
        }
        let err = cond(with(&["open", "type"], serde_json::json!("queue"))).unwrap_err();
        assert!(err.contains("queue"), "{err}");
        let err = cond(with(&["hours", "0", "every"], serde_json::json!(1))).unwrap_err();
        assert!(err.contains("every"), "{err}");
        let many: Vec<_> = (0..=MAX_HOURS)
            .map(|_| office()["hours"][0].clone())
            .collect();
        let err = cond(with(&["hours"], serde_json::json!(many))).unwrap_err();
        assert!(err.starts_with("hours:"), "{err}");
        let body: TimeConditionBody = serde_json::from_value(office()).unwrap();
        let err = condition_from_body("a b".into(), body, None, 1).unwrap_err();
        assert!(err.to_string().starts_with("name:"), "{err}");
    }

    #[test]
    fn refusals_name_the_destination_or_the_route() {
        let c = cond(office()).unwrap();
        let nf = |table: &str, key: &str| storage::Response::NotFound {
            table: table.into(),
            key: key.into(),
        };
        let e = put_refused(nf("extensions", "1001"), &c);
        assert!(matches!(e, ApiError::NotFound(_)));
        assert_eq!(e.to_string(), "open.target: extension 1001 does not exist");
        let e = put_refused(nf("ring_groups", "600"), &c);
        assert_eq!(
            e.to_string(),
            "closed.target: ring group 600 does not exist"
        );
        let used = storage::Response::Conflict {
            table: "inbound_routes".into(),
            key: "main".into(),
        };
        let e = delete_refused(used, "office");
        assert!(matches!(e, ApiError::Conflict(_)));
        assert_eq!(
            e.to_string(),
            "inbound route main still sends calls to time condition office"
        );
        let e = delete_refused(nf("time_conditions", "office"), "office");
        assert!(matches!(e, ApiError::NotFound(_)));
        let menu = storage::Response::Conflict {
            table: "ivrs".into(),
            key: "500".into(),
        };
        assert_eq!(
            delete_refused(menu, "office").to_string(),
            "IVR 500 still sends calls to time condition office"
        );
        let mut to_menu = c;
        to_menu.closed = Destination::Ivr("500".into());
        assert_eq!(
            put_refused(nf("ivrs", "500"), &to_menu).to_string(),
            "closed.target: IVR 500 does not exist"
        );
    }
}
