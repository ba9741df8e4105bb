//! `/api/v1/conferences`: conference rooms, where callers talk together behind an optional PIN
//! (grant `routing`; the `monitor` grant reads them and who is in them).
//!
//! A room is known by its number, which callers inside can dial and inbound routes, time
//! conditions and IVRs send calls to (`{"type": "conference", "target": "800"}`). The PIN follows
//! the voicemail PIN policy ([`super::voicemail::pin_rule`]), is stored as an argon2id hash and is
//! never shown: answers say `has_pin`. Who is in a room is written by the node carrying each call;
//! muting and kicking here change the replicated record, and that node acts on it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use storage::conference::{
    ConferenceRoom, MAX_ROOM_NAME, MAX_ROOM_NUMBER, Participant, ROOM_PARTICIPANTS,
};
use storage::model::UnixMillis;
use storage::routing::PutMode;
use storage::{Command, StateReader, StorageError};

use super::AppState;
use super::access::Principal;
use super::crud::propose_answer;
use super::error::{ApiError, noun};
use super::json::JsonBody;
use super::voicemail::{PinChange, pin_rule};
use crate::time::now_millis;

/// How many may be in a room, unless the request says otherwise.
pub(crate) const DEFAULT_MAX_PARTICIPANTS: u16 = 10;

/// A room as PUT takes it. Every field is replaced (an omitted `max_participants` is 10) except
/// `pin`, which an omitted field keeps and `null` removes. The read-only fields of a GET answer are
/// accepted and ignored, so an answer read, edited and written back is a valid body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoomBody {
    /// The URL's, if given.
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, with = "super::voicemail::double_option")]
    pin: Option<Option<String>>,
    /// Wider than the store's `u16`, so that 70000 is refused naming the range, not the type.
    #[serde(default)]
    max_participants: Option<u64>,
    #[serde(default, rename = "has_pin")]
    _has_pin: Option<IgnoredAny>,
    #[serde(default, rename = "participants")]
    _participants: Option<IgnoredAny>,
    #[serde(default, rename = "running_since")]
    _running_since: Option<IgnoredAny>,
    #[serde(default, rename = "created_at")]
    _created_at: Option<IgnoredAny>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<IgnoredAny>,
}

/// A room as answers show it: never the PIN's hash; how many are in it and since when it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RoomView {
    pub number: String,
    pub name: String,
    pub has_pin: bool,
    pub max_participants: u16,
    pub participants: usize,
    /// When the earliest of those in it joined; `None` when it is empty.
    pub running_since: Option<UnixMillis>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl RoomView {
    /// `room` with `present`, the participants of the store (kicked ones do not count).
    fn of(room: ConferenceRoom, present: &[Participant]) -> Self {
        let present: Vec<&Participant> = present.iter().filter(|p| !p.kicked).collect();
        Self {
            has_pin: room.pin_hash.is_some(),
            participants: present.len(),
            running_since: present.iter().map(|p| p.joined_at).min(),
            number: room.number,
            name: room.name,
            max_participants: room.max_participants,
            created_at: room.created_at,
            updated_at: room.updated_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RoomList {
    pub rooms: Vec<RoomView>,
}

/// One participant as answers show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ParticipantView {
    pub id: String,
    pub caller: String,
    pub caller_name: String,
    pub joined_at: UnixMillis,
    /// Whole seconds in the room so far.
    pub duration_secs: u64,
    pub muted: bool,
    /// The node carrying the member's call (and mixing the room).
    pub node_id: u64,
}

impl ParticipantView {
    fn of(p: Participant, now: UnixMillis) -> Self {
        Self {
            duration_secs: now.saturating_sub(p.joined_at) / 1000,
            id: p.id,
            caller: p.caller,
            caller_name: p.caller_name,
            joined_at: p.joined_at,
            muted: p.muted,
            node_id: p.node_id,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ParticipantList {
    pub participants: Vec<ParticipantView>,
}

/// Whether `who` may read rooms and who is in them.
fn may_read(who: &Principal) -> bool {
    who.grants.routing || who.grants.monitor
}

/// Whether `who` may mute and kick participants: as an admin hangs up calls.
fn may_moderate(who: &Principal) -> bool {
    who.grants.routing || who.grants.hang_up
}

/// The participants of `room` in the store, kicked ones included, by key.
fn present(reader: &StateReader, room: &str) -> Result<Vec<Participant>, StorageError> {
    reader.scan_prefix::<Participant>(&Participant::prefix(room))
}

/// Every room, by number, as answers show them.
pub(crate) fn list_views(reader: &StateReader) -> Result<RoomList, StorageError> {
    let participants = reader.list::<Participant>()?;
    let rooms = reader
        .list::<ConferenceRoom>()?
        .into_iter()
        .map(|r| {
            let inside: Vec<Participant> = participants
                .iter()
                .filter(|p| p.room == r.number)
                .cloned()
                .collect();
            RoomView::of(r, &inside)
        })
        .collect();
    Ok(RoomList { rooms })
}

/// 400 unless `number` can be a room's.
fn validate_number(number: &str) -> Result<(), ApiError> {
    if ConferenceRoom::valid_number(number) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "number",
            format!("1 to {MAX_ROOM_NUMBER} digits"),
        ))
    }
}

/// 404 unless `id` can be a participant's (no one has a malformed id).
fn validate_id(number: &str, id: &str) -> Result<(), ApiError> {
    if Participant::valid_id(id) {
        Ok(())
    } else {
        Err(no_participant(number, id))
    }
}

/// Room `number` as `body` describes it, checked, and what to do with its PIN (the handler
/// hashes a new one). `stored` is the room a PUT replaces.
pub(crate) fn room_from_body(
    number: &str,
    body: RoomBody,
    stored: Option<&ConferenceRoom>,
    now: UnixMillis,
) -> Result<(ConferenceRoom, PinChange), ApiError> {
    validate_number(number)?;
    if let Some(b) = body.number.as_deref().filter(|b| *b != number) {
        return Err(ApiError::invalid(
            "number",
            format!(
                "{b} differs from the number in the URL ({number}); a room cannot be renumbered"
            ),
        ));
    }
    let name = body.name.unwrap_or_default().trim().to_owned();
    if !ConferenceRoom::valid_name(&name) {
        return Err(ApiError::invalid(
            "name",
            format!("1 to {MAX_ROOM_NAME} bytes of text, no control characters"),
        ));
    }
    let max_participants = body
        .max_participants
        .unwrap_or(u64::from(DEFAULT_MAX_PARTICIPANTS));
    let max_participants = u16::try_from(max_participants)
        .ok()
        .filter(|m| ROOM_PARTICIPANTS.contains(m))
        .ok_or_else(|| {
            ApiError::invalid(
                "max_participants",
                format!(
                    "{} to {}",
                    ROOM_PARTICIPANTS.start(),
                    ROOM_PARTICIPANTS.end()
                ),
            )
        })?;
    let pin = match body.pin {
        None => PinChange::Keep,
        Some(None) => PinChange::Remove,
        Some(Some(p)) => {
            if let Some(rule) = pin_rule(&p, number, "the room's number") {
                return Err(ApiError::invalid("pin", rule));
            }
            PinChange::Set(p)
        }
    };
    let room = ConferenceRoom {
        number: number.to_owned(),
        name,
        pin_hash: match &pin {
            PinChange::Keep => stored.and_then(|s| s.pin_hash.clone()),
            PinChange::Remove | PinChange::Set(_) => None,
        },
        max_participants,
        created_at: stored.map_or(now, |s| s.created_at),
        updated_at: now,
    };
    Ok((room, pin))
}

/// The state machine's refusal of a put of room `number`, in words: a number taken by an
/// extension, a ring group or an IVR is a 409.
fn put_refused(r: storage::Response, number: &str) -> ApiError {
    match r {
        storage::Response::Conflict { table, key } if table == "extensions" => {
            ApiError::Conflict(format!("{key} is an extension's number"))
        }
        storage::Response::Conflict { table, key } if table == "ring_groups" => {
            ApiError::Conflict(format!("{key} is a ring group's number"))
        }
        storage::Response::Conflict { table, key } if table == "ivrs" => {
            ApiError::Conflict(format!("{key} is an IVR's number"))
        }
        storage::Response::NotFound { table, .. } if table == "conference_rooms" => no_room(number),
        other => other.into(),
    }
}

/// The state machine's refusal of deleting room `number`, in words.
fn delete_refused(r: storage::Response, number: &str) -> ApiError {
    match r {
        storage::Response::NotFound { .. } => no_room(number),
        storage::Response::Conflict { table, key } => ApiError::Conflict(format!(
            "{} {key} still sends calls to conference room {number}",
            noun(&table)
        )),
        other => other.into(),
    }
}

fn no_room(number: &str) -> ApiError {
    ApiError::NotFound(format!("conference room {number} does not exist"))
}

fn no_participant(number: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "participant {id} is not in conference room {number}"
    ))
}

/// Room `number` after a linearizable barrier; 400 for a number no room can have, `None` when
/// there is none.
async fn read_room(state: &AppState, number: &str) -> Result<Option<ConferenceRoom>, ApiError> {
    validate_number(number)?;
    state.cluster.linearizable_barrier().await?;
    Ok(state.cluster.reader().get::<ConferenceRoom>(number)?)
}

/// Every room, by number.
pub(crate) async fn list(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<RoomList>, ApiError> {
    who.require(may_read(&who))?;
    state.cluster.linearizable_barrier().await?;
    Ok(Json(list_views(state.cluster.reader())?))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
) -> Result<Json<RoomView>, ApiError> {
    who.require(may_read(&who))?;
    let room = read_room(&state, &number)
        .await?
        .ok_or_else(|| no_room(&number))?;
    let inside = present(state.cluster.reader(), &number)?;
    Ok(Json(RoomView::of(room, &inside)))
}

/// Creates (201) or replaces (200) room `number`; 409 when the number is an extension's, a ring
/// group's or an IVR's.
pub(crate) async fn put(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
    JsonBody(body): JsonBody<RoomBody>,
) -> Result<(StatusCode, Json<RoomView>), ApiError> {
    who.require(who.grants.routing)?;
    let stored = read_room(&state, &number).await?;
    let (mut room, pin) = room_from_body(&number, body, stored.as_ref(), now_millis())?;
    if let PinChange::Set(p) = &pin {
        room.pin_hash = Some(super::accounts::hash(p.clone()).await?);
    }
    let mode = if stored.is_some() {
        PutMode::Update
    } else {
        PutMode::Create
    };
    let cmd = Command::PutConferenceRoom {
        room: room.clone(),
        mode,
    };
    match propose_answer(&state, cmd).await? {
        storage::Response::Ok => {}
        refused => return Err(put_refused(refused, &number)),
    }
    tracing::info!(
        number = %room.number,
        by = %who.username,
        pin = match pin {
            PinChange::Keep => "kept",
            PinChange::Remove => "removed",
            PinChange::Set(_) => "set",
        },
        "conference room {}",
        if stored.is_some() { "changed" } else { "created" }
    );
    let inside = present(state.cluster.reader(), &number)?;
    let status = if stored.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(RoomView::of(room, &inside))))
}

/// Deletes room `number` and forgets who is in it; 409 naming the inbound route, time condition
/// or IVR that still sends calls to it.
pub(crate) async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
) -> Result<StatusCode, ApiError> {
    who.require(who.grants.routing)?;
    validate_number(&number)?;
    let cmd = Command::DeleteConferenceRoom {
        number: number.clone(),
    };
    match propose_answer(&state, cmd).await? {
        storage::Response::Ok => {}
        refused => return Err(delete_refused(refused, &number)),
    }
    tracing::info!(number = %number, by = %who.username, "conference room deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Who is in room `number` now, earliest first (kicked ones, on their way out, are not).
pub(crate) async fn participants(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
) -> Result<Json<ParticipantList>, ApiError> {
    who.require(may_read(&who))?;
    read_room(&state, &number)
        .await?
        .ok_or_else(|| no_room(&number))?;
    let now = now_millis();
    let mut inside: Vec<Participant> = present(state.cluster.reader(), &number)?
        .into_iter()
        .filter(|p| !p.kicked)
        .collect();
    inside.sort_by(|a, b| (a.joined_at, &a.id).cmp(&(b.joined_at, &b.id)));
    let participants = inside
        .into_iter()
        .map(|p| ParticipantView::of(p, now))
        .collect();
    Ok(Json(ParticipantList { participants }))
}

/// What `PUT /conferences/{number}/participants/{id}` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ParticipantBody {
    muted: bool,
}

/// Mutes or unmutes a participant (204); 404 when they are not in the room.
pub(crate) async fn set_muted(
    State(state): State<AppState>,
    who: Principal,
    Path((number, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<ParticipantBody>,
) -> Result<StatusCode, ApiError> {
    who.require(may_moderate(&who))?;
    validate_number(&number)?;
    validate_id(&number, &id)?;
    let cmd = Command::SetParticipantMuted {
        room: number.clone(),
        id: id.clone(),
        muted: body.muted,
    };
    match propose_answer(&state, cmd).await? {
        storage::Response::Ok => {}
        storage::Response::NotFound { .. } => return Err(no_participant(&number, &id)),
        other => return Err(other.into()),
    }
    tracing::info!(room = %number, participant = %id, muted = body.muted, by = %who.username, "conference participant muted");
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a participant from the room: 202, for the node carrying the call ends it; 404 when
/// they are not in the room.
pub(crate) async fn kick(
    State(state): State<AppState>,
    who: Principal,
    Path((number, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    who.require(may_moderate(&who))?;
    validate_number(&number)?;
    validate_id(&number, &id)?;
    let cmd = Command::KickParticipant {
        room: number.clone(),
        id: id.clone(),
    };
    match propose_answer(&state, cmd).await? {
        storage::Response::Ok => {}
        storage::Response::NotFound { .. } => return Err(no_participant(&number, &id)),
        other => return Err(other.into()),
    }
    tracing::info!(room = %number, participant = %id, by = %who.username, "conference participant kicked");
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "status": "requested" })),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: serde_json::Value) -> RoomBody {
        serde_json::from_value(v).unwrap()
    }

    fn refused(v: serde_json::Value) -> String {
        room_from_body("800", body(v), None, 5)
            .unwrap_err()
            .to_string()
    }

    fn participant(n: u8, joined_at: UnixMillis, kicked: bool) -> Participant {
        Participant {
            room: "800".into(),
            id: format!("{n:016x}"),
            caller: "1001".into(),
            caller_name: "Reception".into(),
            joined_at,
            muted: false,
            kicked,
            node_id: 1,
        }
    }

    #[test]
    fn a_new_room_takes_the_defaults_and_the_urls_number() {
        let (r, pin) = room_from_body("800", body(json!({"name": " Weekly "})), None, 5).unwrap();
        assert_eq!(pin, PinChange::Keep);
        assert_eq!(
            r,
            ConferenceRoom {
                number: "800".into(),
                name: "Weekly".into(),
                pin_hash: None,
                max_participants: DEFAULT_MAX_PARTICIPANTS,
                created_at: 5,
                updated_at: 5,
            }
        );
        let (r, pin) = room_from_body(
            "800",
            body(json!({"name": "Board", "pin": "402913", "max_participants": 50})),
            None,
            5,
        )
        .unwrap();
        assert_eq!(pin, PinChange::Set("402913".into()));
        assert_eq!((r.max_participants, r.pin_hash), (50, None));
    }

    #[test]
    fn a_replace_keeps_the_pin_unless_told_and_the_creation_time() {
        let mut stored = room_from_body("800", body(json!({"name": "x"})), None, 1)
            .unwrap()
            .0;
        stored.pin_hash = Some("$argon2id$v=19$stored".into());
        let put = |v| room_from_body("800", body(v), Some(&stored), 9).unwrap();
        let (r, pin) = put(json!({"name": "y"}));
        assert_eq!(
            (pin, r.pin_hash.as_deref()),
            (PinChange::Keep, Some("$argon2id$v=19$stored"))
        );
        assert_eq!((r.created_at, r.updated_at), (1, 9));
        let (r, pin) = put(json!({"name": "y", "pin": null}));
        assert_eq!((pin, r.pin_hash), (PinChange::Remove, None));
        // A GET answer written back is a valid body.
        let view = RoomView::of(stored.clone(), &[]);
        let (_, pin) = put(serde_json::to_value(&view).unwrap());
        assert_eq!(pin, PinChange::Keep);
    }

    #[test]
    fn a_bad_body_names_its_field() {
        for (v, want) in [
            (json!({"name": ""}), "name:"),
            (json!({"name": "a", "number": "801"}), "number: 801 differs"),
            (
                json!({"name": "a", "max_participants": 1}),
                "max_participants: 2 to 50",
            ),
            (
                json!({"name": "a", "max_participants": 70000}),
                "max_participants:",
            ),
            (
                json!({"name": "a", "pin": "123456"}),
                "pin: must not be a run",
            ),
            (
                json!({"name": "a", "pin": "12"}),
                "pin: must be 6 to 12 digits",
            ),
        ] {
            let got = refused(v.clone());
            assert!(got.starts_with(want), "{v}: {got}");
        }
        let own = room_from_body(
            "402913",
            body(json!({"name": "a", "pin": "402913"})),
            None,
            1,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(own, "pin: must not be the room's number");
        assert!(serde_json::from_value::<RoomBody>(json!({"pin_hash": "x"})).is_err());
    }

    #[test]
    fn a_view_counts_those_present_and_hides_the_pin() {
        let mut room = room_from_body("800", body(json!({"name": "a"})), None, 1)
            .unwrap()
            .0;
        room.pin_hash = Some("$argon2id$secret".into());
        let v = RoomView::of(
            room,
            &[
                participant(1, 300, false),
                participant(2, 200, false),
                participant(3, 100, true),
            ],
        );
        assert!(v.has_pin);
        assert_eq!((v.participants, v.running_since), (2, Some(200)));
        assert!(!serde_json::to_string(&v).unwrap().contains("argon2"));
        let p = ParticipantView::of(participant(1, 1_000, false), 62_500);
        assert_eq!(p.duration_secs, 61);
    }
}
