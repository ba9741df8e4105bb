//! `/api/v1/extensions/{number}/handling`, `/api/v1/ring-groups`, `/api/v1/feature-codes`,
//! `/api/v1/pickup-groups` and `/api/v1/pickup-codes`: the call features an office configures —
//! each extension's do-not-disturb and forwarding (which the extension's own user may set too), the
//! numbers that ring a team, the extensions whose phones may answer each other's calls, and the
//! codes phones dial to change their own handling or to pick up a call.
//!
//! References (a ring group's members and fallback, a number already an extension's, a group an
//! inbound route still sends calls to, a pickup group's members, a feature code and a pickup code
//! that would shadow each other) are checked by the state machine in log order; the handlers here
//! only check the shape of a request, and word the state machine's refusals.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use storage::Command;
use storage::features::{
    CallHandling, FeatureCodes, MAX_MEMBERS, MAX_PICKUP_NAME, MAX_TARGET_LEN, PickupCodes,
    PickupGroup, RING_SECS, RingGroup, RingStrategy, code_clash, valid_code, valid_target,
};
use storage::model::{Extension, UnixMillis};
use storage::routing::PutMode;

use super::AppState;
use super::access::Principal;
use super::crud::propose_answer;
use super::error::ApiError;
use super::extensions::validate_number;
use super::json::JsonBody;
use crate::time::now_millis;

/// Seconds a ring group rings (each member, when hunting) unless the request says otherwise.
const DEFAULT_RING_SECS: u32 = 20;
/// Longest ring group name, in characters.
const MAX_GROUP_NAME: usize = 64;

/// Whether `s` can be an extension's or a ring group's number: 2 to 15 digits.
fn is_local_number(s: &str) -> bool {
    (2..=15).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// An optional text field: absent, `null` or blank is unset.
pub(super) fn given(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// `Forbidden` unless `who` manages extensions or `number` is the account's own extension.
fn require_own_or_grant(who: &Principal, number: &str) -> Result<(), ApiError> {
    who.require(who.grants.extensions || who.extension.as_deref() == Some(number))
}

// ---------------------------------------------------------------------------------------------
// Call handling.

/// An extension's call handling as `PUT` takes it. Every field is replaced: an omitted, `null` or
/// empty forward target is unset, an omitted `dnd` is off, an omitted `no_answer_secs` is 20.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HandlingBody {
    /// The GET answer's; accepted (a record read, edited and written back is a valid body) but it
    /// must be the URL's.
    #[serde(default)]
    extension: Option<String>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<IgnoredAny>,
    #[serde(default)]
    dnd: bool,
    #[serde(default)]
    forward_always: Option<String>,
    #[serde(default)]
    forward_busy: Option<String>,
    #[serde(default)]
    forward_no_answer: Option<String>,
    #[serde(default)]
    no_answer_secs: Option<u32>,
    #[serde(default)]
    forward_unregistered: Option<String>,
}

/// Extension `number`'s handling as `body` describes it, checked.
fn handling_from_body(
    number: &str,
    body: HandlingBody,
    now: UnixMillis,
) -> Result<CallHandling, ApiError> {
    if let Some(e) = body.extension.as_deref().filter(|e| *e != number) {
        return Err(ApiError::invalid(
            "extension",
            format!("{e} differs from the number in the URL ({number})"),
        ));
    }
    let target = |field: &str, v: Option<String>| -> Result<Option<String>, ApiError> {
        let Some(t) = given(v) else {
            return Ok(None);
        };
        if !valid_target(&t) {
            return Err(ApiError::invalid(
                field,
                format!("digits with an optional leading '+', at most {MAX_TARGET_LEN}"),
            ));
        }
        if t == number {
            return Err(ApiError::invalid(
                field,
                format!("extension {number} cannot forward its calls to itself"),
            ));
        }
        Ok(Some(t))
    };
    let no_answer_secs = body
        .no_answer_secs
        .unwrap_or(CallHandling::DEFAULT_NO_ANSWER_SECS);
    if !RING_SECS.contains(&no_answer_secs) {
        return Err(ApiError::invalid(
            "no_answer_secs",
            format!("{} to {} seconds", RING_SECS.start(), RING_SECS.end()),
        ));
    }
    Ok(CallHandling {
        extension: number.to_owned(),
        dnd: body.dnd,
        forward_always: target("forward_always", body.forward_always)?,
        forward_busy: target("forward_busy", body.forward_busy)?,
        forward_no_answer: target("forward_no_answer", body.forward_no_answer)?,
        no_answer_secs,
        forward_unregistered: target("forward_unregistered", body.forward_unregistered)?,
        updated_at: now,
    })
}

/// 404 unless extension `number` exists (after a linearizable barrier).
pub(super) async fn existing_extension(state: &AppState, number: &str) -> Result<(), ApiError> {
    state.cluster.linearizable_barrier().await?;
    match state.cluster.reader().get::<Extension>(number)? {
        Some(_) => Ok(()),
        None => Err(ApiError::NotFound(format!(
            "extension {number} does not exist"
        ))),
    }
}

/// Extension `number`'s do-not-disturb and forwarding (the defaults when it never set any): for
/// accounts that manage extensions and for the extension's own user.
pub(crate) async fn get_handling(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
) -> Result<Json<CallHandling>, ApiError> {
    require_own_or_grant(&who, &number)?;
    validate_number(&number)?;
    existing_extension(&state, &number).await?;
    let handling = state
        .cluster
        .reader()
        .get::<CallHandling>(&number)?
        .unwrap_or_else(|| CallHandling::none(&number));
    Ok(Json(handling))
}

/// Replaces extension `number`'s do-not-disturb and forwarding.
pub(crate) async fn put_handling(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
    JsonBody(body): JsonBody<HandlingBody>,
) -> Result<Json<CallHandling>, ApiError> {
    require_own_or_grant(&who, &number)?;
    validate_number(&number)?;
    existing_extension(&state, &number).await?;
    let handling = handling_from_body(&number, body, now_millis())?;
    match propose_answer(&state, Command::PutCallHandling(handling.clone())).await? {
        storage::Response::Ok => {}
        // The extension was deleted since it was read.
        storage::Response::NotFound { .. } => {
            return Err(ApiError::NotFound(format!(
                "extension {number} does not exist"
            )));
        }
        other => return Err(other.into()),
    }
    tracing::info!(extension = %number, by = %who.username, dnd = handling.dnd, "call handling changed");
    Ok(Json(handling))
}

// ---------------------------------------------------------------------------------------------
// Ring groups.

/// A ring group as POST and PUT take it. A PUT replaces every field: an omitted `strategy` is
/// `all`, an omitted `ring_secs` 20, an omitted, `null` or empty `no_answer` none.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RingGroupBody {
    /// Read-only fields of a GET answer, accepted and ignored.
    #[serde(default, rename = "created_at")]
    _created_at: Option<IgnoredAny>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<IgnoredAny>,
    /// Required on POST; on PUT the URL's.
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    strategy: Option<RingStrategy>,
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    ring_secs: Option<u32>,
    #[serde(default)]
    no_answer: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct RingGroupList {
    ring_groups: Vec<RingGroup>,
}

/// Ring group `number` as `body` describes it, checked. `stored` is the group a PUT replaces.
fn group_from_body(
    number: String,
    body: RingGroupBody,
    stored: Option<&RingGroup>,
    now: UnixMillis,
) -> Result<RingGroup, ApiError> {
    let name = body.name.unwrap_or_default();
    if name.trim().is_empty()
        || name.chars().count() > MAX_GROUP_NAME
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(
            "name",
            format!("1 to {MAX_GROUP_NAME} printable characters"),
        ));
    }
    if body.members.is_empty() {
        return Err(ApiError::invalid("members", "at least one extension"));
    }
    if body.members.len() > MAX_MEMBERS {
        return Err(ApiError::invalid(
            "members",
            format!("at most {MAX_MEMBERS} extensions"),
        ));
    }
    for (i, m) in body.members.iter().enumerate() {
        let field = format!("members[{i}]");
        if !is_local_number(m) {
            return Err(ApiError::invalid(
                field,
                "an extension number, 2 to 15 digits",
            ));
        }
        if body.members[..i].contains(m) {
            return Err(ApiError::invalid(field, format!("{m} is listed twice")));
        }
    }
    let ring_secs = body.ring_secs.unwrap_or(DEFAULT_RING_SECS);
    if !RING_SECS.contains(&ring_secs) {
        return Err(ApiError::invalid(
            "ring_secs",
            format!("{} to {} seconds", RING_SECS.start(), RING_SECS.end()),
        ));
    }
    let no_answer = given(body.no_answer);
    if let Some(n) = &no_answer {
        if !is_local_number(n) {
            return Err(ApiError::invalid(
                "no_answer",
                "an extension or ring group number, 2 to 15 digits",
            ));
        }
        if *n == number {
            return Err(ApiError::invalid(
                "no_answer",
                "a ring group cannot fall back to itself",
            ));
        }
    }
    Ok(RingGroup {
        name: name.trim().to_owned(),
        strategy: body.strategy.unwrap_or(RingStrategy::All),
        members: body.members,
        ring_secs,
        no_answer,
        created_at: stored.map_or(now, |g| g.created_at),
        updated_at: now,
        number,
    })
}

/// The state machine's refusal of a put of ring group `group`, in words.
fn put_refused(r: storage::Response, group: &RingGroup) -> ApiError {
    let number = &group.number;
    match r {
        storage::Response::Conflict { table, key } if table == "extensions" => {
            ApiError::Conflict(format!("{key} is an extension's number"))
        }
        storage::Response::Conflict { table, key } if table == "ivrs" => {
            ApiError::Conflict(format!("{key} is an IVR's number"))
        }
        storage::Response::Conflict { table, key } if table == "conference_rooms" => {
            ApiError::Conflict(format!("{key} is a conference room's number"))
        }
        storage::Response::Conflict { table, key } if table == "ring_groups" => {
            ApiError::Conflict(format!("ring group {key} already exists"))
        }
        storage::Response::NotFound { table, key } if table == "extensions" => {
            ApiError::NotFound(format!("members: extension {key} does not exist"))
        }
        storage::Response::NotFound { table, key } if table == "ring_groups" && key == *number => {
            ApiError::NotFound(format!("ring group {number} does not exist"))
        }
        storage::Response::NotFound { table, key } if table == "ring_groups" => ApiError::NotFound(
            format!("no_answer: there is no extension or ring group {key}"),
        ),
        other => other.into(),
    }
}

/// The state machine's refusal of deleting ring group `number`, in words.
fn delete_refused(r: storage::Response, number: &str) -> ApiError {
    match r {
        storage::Response::NotFound { .. } => {
            ApiError::NotFound(format!("ring group {number} does not exist"))
        }
        storage::Response::Conflict { table, key } if table == "inbound_routes" => {
            ApiError::Conflict(format!(
                "inbound route {key} still sends calls to ring group {number}"
            ))
        }
        storage::Response::Conflict { table, key } if table == "ring_groups" => ApiError::Conflict(
            format!("ring group {key} still sends its unanswered calls to ring group {number}"),
        ),
        storage::Response::Conflict { table, key } if table == "ivrs" => ApiError::Conflict(
            format!("IVR {key} still sends calls to ring group {number}"),
        ),
        storage::Response::Conflict { table, key } => ApiError::Conflict(format!(
            "ring group {number} is used by {} {key}",
            table.trim_end_matches('s').replace('_', " ")
        )),
        other => other.into(),
    }
}

/// Ring group `number` after a linearizable barrier; 400 for a number no group can have, 404
/// when it does not exist.
async fn read_group(state: &AppState, number: &str) -> Result<RingGroup, ApiError> {
    validate_number(number)?;
    state.cluster.linearizable_barrier().await?;
    state
        .cluster
        .reader()
        .get::<RingGroup>(number)?
        .ok_or_else(|| ApiError::NotFound(format!("ring group {number} does not exist")))
}

async fn put_group(state: &AppState, group: &RingGroup, mode: PutMode) -> Result<(), ApiError> {
    let cmd = Command::PutRingGroup {
        group: group.clone(),
        mode,
    };
    match propose_answer(state, cmd).await? {
        storage::Response::Ok => Ok(()),
        refused => Err(put_refused(refused, group)),
    }
}

/// Every ring group, by number.
pub(crate) async fn list_ring_groups(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<RingGroupList>, ApiError> {
    who.require(who.grants.extensions)?;
    state.cluster.linearizable_barrier().await?;
    let ring_groups = state.cluster.reader().list::<RingGroup>()?;
    Ok(Json(RingGroupList { ring_groups }))
}

/// Creates a ring group; 409 when the number is taken (by a group or an extension), 404 naming a
/// member or fallback that does not exist.
pub(crate) async fn create_ring_group(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(mut body): JsonBody<RingGroupBody>,
) -> Result<(StatusCode, Json<RingGroup>), ApiError> {
    who.require(who.grants.extensions)?;
    let number =
        given(body.number.take()).ok_or_else(|| ApiError::invalid("number", "required"))?;
    validate_number(&number)?;
    let group = group_from_body(number, body, None, now_millis())?;
    put_group(&state, &group, PutMode::Create).await?;
    tracing::info!(number = %group.number, "ring group created");
    Ok((StatusCode::CREATED, Json(group)))
}

pub(crate) async fn get_ring_group(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
) -> Result<Json<RingGroup>, ApiError> {
    who.require(who.grants.extensions)?;
    Ok(Json(read_group(&state, &number).await?))
}

/// Replaces ring group `number`; 404 if there is none (reported before anything wrong in the body).
pub(crate) async fn update_ring_group(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
    JsonBody(mut body): JsonBody<RingGroupBody>,
) -> Result<Json<RingGroup>, ApiError> {
    who.require(who.grants.extensions)?;
    let stored = read_group(&state, &number).await?;
    if let Some(b) = given(body.number.take()).filter(|b| *b != number) {
        return Err(ApiError::invalid(
            "number",
            format!(
                "{b} differs from the number in the URL ({number}); a group cannot be renumbered"
            ),
        ));
    }
    let group = group_from_body(number, body, Some(&stored), now_millis())?;
    put_group(&state, &group, PutMode::Update).await?;
    tracing::info!(number = %group.number, "ring group updated");
    Ok(Json(group))
}

/// Deletes ring group `number`; 409 naming the inbound route or group that still sends calls to it.
pub(crate) async fn delete_ring_group(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
) -> Result<StatusCode, ApiError> {
    who.require(who.grants.extensions)?;
    validate_number(&number)?;
    let cmd = Command::DeleteRingGroup {
        number: number.clone(),
    };
    match propose_answer(&state, cmd).await? {
        storage::Response::Ok => {}
        refused => return Err(delete_refused(refused, &number)),
    }
    tracing::info!(number = %number, "ring group deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Feature codes.

/// The feature codes as `PUT` takes them: all four.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FeatureCodesBody {
    dnd_on: String,
    dnd_off: String,
    forward_on: String,
    forward_off: String,
}

/// The codes `body` gives, checked, with a message naming the code at fault.
fn codes_from_body(body: FeatureCodesBody) -> Result<FeatureCodes, ApiError> {
    let codes = FeatureCodes {
        dnd_on: body.dnd_on.trim().to_owned(),
        dnd_off: body.dnd_off.trim().to_owned(),
        forward_on: body.forward_on.trim().to_owned(),
        forward_off: body.forward_off.trim().to_owned(),
    };
    check_code_set(&FeatureCodes::FIELDS, &codes.all())?;
    // The store's rule decides; the checks above only name the code at fault.
    if !codes.valid() {
        return Err(ApiError::BadRequest(
            "feature codes must be '*' or '#' then digits, and none the start of another".into(),
        ));
    }
    Ok(codes)
}

/// Checks the codes of one set (`fields[i]` is the field of `all[i]`): each of the shape
/// [`valid_code`] asks, and none the start of another, with a message naming the code at fault.
fn check_code_set(fields: &[&str], all: &[&str]) -> Result<(), ApiError> {
    for (field, code) in fields.iter().zip(all) {
        if !valid_code(code) {
            return Err(ApiError::invalid(
                field,
                "'*' or '#', then digits, '*' or '#': 2 to 8 characters",
            ));
        }
    }
    for (i, a) in all.iter().enumerate() {
        for (j, b) in all.iter().enumerate() {
            if i == j || !b.starts_with(a) {
                continue;
            }
            // Two features, one code: the later one is at fault. A prefix: the shorter code is,
            // for a phone dialling the longer one would reach it first.
            return Err(if a == b {
                ApiError::invalid(fields[j], format!("{b} is also the code of {}", fields[i]))
            } else {
                ApiError::invalid(
                    fields[i],
                    format!(
                        "{a} is the start of {} ({b}), which phones could then never dial",
                        fields[j]
                    ),
                )
            });
        }
    }
    Ok(())
}

/// The feature codes phones dial (the defaults until an admin changes them); any signed-in
/// account may read them, to know what to dial.
pub(crate) async fn get_feature_codes(
    State(state): State<AppState>,
    _who: Principal,
) -> Result<Json<FeatureCodes>, ApiError> {
    state.cluster.linearizable_barrier().await?;
    Ok(Json(read_feature_codes(state.cluster.reader())?))
}

/// The stored feature codes, or the defaults.
pub(crate) fn read_feature_codes(
    reader: &storage::StateReader,
) -> Result<FeatureCodes, storage::StorageError> {
    Ok(reader
        .get::<FeatureCodes>(FeatureCodes::KEY)?
        .unwrap_or_default())
}

/// Replaces the feature codes; 400 naming a malformed code or one that starts another, 409 when one
/// would shadow a pickup code or be shadowed by one.
pub(crate) async fn put_feature_codes(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<FeatureCodesBody>,
) -> Result<Json<FeatureCodes>, ApiError> {
    who.require(who.grants.extensions)?;
    let codes = codes_from_body(body)?;
    match propose_answer(&state, Command::PutFeatureCodes(codes.clone())).await? {
        storage::Response::Ok => {}
        storage::Response::Conflict { table, key } if table == "cluster" => {
            // The pickup codes the state machine held them against, read after its answer.
            let pickup = read_pickup_codes(state.cluster.reader())?;
            return Err(clash_refused(&key, &codes, &pickup));
        }
        other => return Err(other.into()),
    }
    tracing::info!(codes = ?codes.all(), "feature codes changed");
    Ok(Json(codes))
}

/// The state machine's refusal of feature codes `f` or pickup codes `p` (whichever was written;
/// `key` is the other set's), as a 409 naming the written code at fault and the code it clashes
/// with.
fn clash_refused(key: &str, f: &FeatureCodes, p: &PickupCodes) -> ApiError {
    let pickup_written = key == FeatureCodes::KEY;
    let Some(clash) = code_clash(f, p) else {
        // The other set changed since: nothing to name.
        return ApiError::Conflict(
            if pickup_written {
                "the pickup codes clash with the feature codes: no code may be the start of another"
            } else {
                "the feature codes clash with the pickup codes: no code may be the start of another"
            }
            .into(),
        );
    };
    let (feature_field, feature_code) = clash.feature;
    let (pickup_field, pickup_code) = clash.pickup;
    let how = if feature_code == pickup_code {
        "it is the same code"
    } else {
        "one is the start of the other"
    };
    ApiError::Conflict(if pickup_written {
        format!(
            "{pickup_field}: {pickup_code} clashes with the feature code {feature_field} \
             ({feature_code}): {how}"
        )
    } else {
        format!(
            "{feature_field}: {feature_code} clashes with the {pickup_field} pickup code \
             ({pickup_code}): {how}"
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Pickup groups and codes.

/// A pickup group as `PUT` takes it: its members replace the stored ones (omitted: none).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PickupGroupBody {
    /// Read-only fields of a GET answer, accepted and ignored.
    #[serde(default, rename = "created_at")]
    _created_at: Option<IgnoredAny>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<IgnoredAny>,
    /// The GET answer's; accepted (a record read, edited and written back is a valid body) but it
    /// must be the URL's.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    members: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PickupGroupList {
    pickup_groups: Vec<PickupGroup>,
}

/// 400 unless `name` can name a pickup group.
fn validate_pickup_name(name: &str) -> Result<(), ApiError> {
    if PickupGroup::valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "name",
            format!(
                "1 to {MAX_PICKUP_NAME} letters, digits, spaces, '-' or '_', \
                 not starting or ending with a space"
            ),
        ))
    }
}

/// Pickup group `name` as `body` describes it, checked. `stored` is the group a PUT replaces.
fn pickup_group_from_body(
    name: String,
    body: PickupGroupBody,
    stored: Option<&PickupGroup>,
    now: UnixMillis,
) -> Result<PickupGroup, ApiError> {
    if let Some(b) = given(body.name).filter(|b| *b != name) {
        return Err(ApiError::invalid(
            "name",
            format!("{b} differs from the name in the URL ({name}); a group cannot be renamed"),
        ));
    }
    if body.members.len() > MAX_MEMBERS {
        return Err(ApiError::invalid(
            "members",
            format!("at most {MAX_MEMBERS} extensions"),
        ));
    }
    for (i, m) in body.members.iter().enumerate() {
        let field = format!("members[{i}]");
        if !is_local_number(m) {
            return Err(ApiError::invalid(
                field,
                "an extension number, 2 to 15 digits",
            ));
        }
        if body.members[..i].contains(m) {
            return Err(ApiError::invalid(field, format!("{m} is listed twice")));
        }
    }
    Ok(PickupGroup {
        members: body.members,
        created_at: stored.map_or(now, |g| g.created_at),
        updated_at: now,
        name,
    })
}

/// Every pickup group, by name.
pub(crate) async fn list_pickup_groups(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<PickupGroupList>, ApiError> {
    who.require(who.grants.extensions)?;
    state.cluster.linearizable_barrier().await?;
    let pickup_groups = state.cluster.reader().list::<PickupGroup>()?;
    Ok(Json(PickupGroupList { pickup_groups }))
}

/// Pickup group `name` after a linearizable barrier; 400 for a name no group can have, `None`
/// when there is none.
async fn read_pickup_group(state: &AppState, name: &str) -> Result<Option<PickupGroup>, ApiError> {
    validate_pickup_name(name)?;
    state.cluster.linearizable_barrier().await?;
    Ok(state.cluster.reader().get::<PickupGroup>(name)?)
}

fn no_pickup_group(name: &str) -> ApiError {
    ApiError::NotFound(format!("pickup group {name} does not exist"))
}

pub(crate) async fn get_pickup_group(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Json<PickupGroup>, ApiError> {
    who.require(who.grants.extensions)?;
    let group = read_pickup_group(&state, &name).await?;
    Ok(Json(group.ok_or_else(|| no_pickup_group(&name))?))
}

/// Creates (201) or replaces (200) pickup group `name`; 404 naming a member that is no extension.
pub(crate) async fn put_pickup_group(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<PickupGroupBody>,
) -> Result<(StatusCode, Json<PickupGroup>), ApiError> {
    who.require(who.grants.extensions)?;
    let stored = read_pickup_group(&state, &name).await?;
    let group = pickup_group_from_body(name, body, stored.as_ref(), now_millis())?;
    match propose_answer(&state, Command::PutPickupGroup(group.clone())).await? {
        storage::Response::Ok => {}
        storage::Response::NotFound { table, key } if table == "extensions" => {
            return Err(ApiError::NotFound(format!(
                "members: extension {key} does not exist"
            )));
        }
        other => return Err(other.into()),
    }
    let status = if stored.is_some() {
        tracing::info!(name = %group.name, "pickup group replaced");
        StatusCode::OK
    } else {
        tracing::info!(name = %group.name, "pickup group created");
        StatusCode::CREATED
    };
    Ok((status, Json(group)))
}

/// Deletes pickup group `name`.
pub(crate) async fn delete_pickup_group(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    who.require(who.grants.extensions)?;
    validate_pickup_name(&name)?;
    let cmd = Command::DeletePickupGroup { name: name.clone() };
    match propose_answer(&state, cmd).await? {
        storage::Response::Ok => {}
        storage::Response::NotFound { .. } => return Err(no_pickup_group(&name)),
        other => return Err(other.into()),
    }
    tracing::info!(name = %name, "pickup group deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The pickup codes as `PUT` takes them: both.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PickupCodesBody {
    group: String,
    directed: String,
}

/// The pickup codes `body` gives, checked on their own (against the feature codes, the state
/// machine checks), with a message naming the code at fault.
fn pickup_codes_from_body(body: PickupCodesBody) -> Result<PickupCodes, ApiError> {
    let codes = PickupCodes {
        group: body.group.trim().to_owned(),
        directed: body.directed.trim().to_owned(),
    };
    check_code_set(&PickupCodes::FIELDS, &codes.all())?;
    if !codes.valid() {
        return Err(ApiError::BadRequest(
            "pickup codes must be '*' or '#' then digits, and neither the start of the other"
                .into(),
        ));
    }
    Ok(codes)
}

/// The pickup codes phones dial (the defaults until an admin changes them); any signed-in account
/// may read them, to know what to dial.
pub(crate) async fn get_pickup_codes(
    State(state): State<AppState>,
    _who: Principal,
) -> Result<Json<PickupCodes>, ApiError> {
    state.cluster.linearizable_barrier().await?;
    Ok(Json(read_pickup_codes(state.cluster.reader())?))
}

/// The stored pickup codes, or the defaults.
pub(crate) fn read_pickup_codes(
    reader: &storage::StateReader,
) -> Result<PickupCodes, storage::StorageError> {
    Ok(reader
        .get::<PickupCodes>(PickupCodes::KEY)?
        .unwrap_or_default())
}

/// Replaces the pickup codes; 400 naming a malformed code or one that starts the other, 409 when
/// one would shadow a feature code or be shadowed by one.
pub(crate) async fn put_pickup_codes(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<PickupCodesBody>,
) -> Result<Json<PickupCodes>, ApiError> {
    who.require(who.grants.extensions)?;
    let codes = pickup_codes_from_body(body)?;
    match propose_answer(&state, Command::PutPickupCodes(codes.clone())).await? {
        storage::Response::Ok => {}
        storage::Response::Conflict { table, key } if table == "cluster" => {
            let features = read_feature_codes(state.cluster.reader())?;
            return Err(clash_refused(&key, &features, &codes));
        }
        other => return Err(other.into()),
    }
    tracing::info!(codes = ?codes.all(), "pickup codes changed");
    Ok(Json(codes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handling(json: serde_json::Value) -> Result<CallHandling, String> {
        let body: HandlingBody = serde_json::from_value(json).map_err(|e| e.to_string())?;
        handling_from_body("1001", body, 7).map_err(|e| e.to_string())
    }

    fn group(json: serde_json::Value) -> Result<RingGroup, String> {
        let body: RingGroupBody = serde_json::from_value(json).map_err(|e| e.to_string())?;
        group_from_body("600".into(), body, None, 7).map_err(|e| e.to_string())
    }

    fn codes(
        dnd_on: &str,
        dnd_off: &str,
        forward_on: &str,
        forward_off: &str,
    ) -> Result<FeatureCodes, String> {
        codes_from_body(FeatureCodesBody {
            dnd_on: dnd_on.into(),
            dnd_off: dnd_off.into(),
            forward_on: forward_on.into(),
            forward_off: forward_off.into(),
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn empty_or_null_targets_are_unset_and_omitted_fields_take_their_defaults() {
        let h = handling(serde_json::json!({
            "dnd": true,
            "forward_always": "",
            "forward_busy": null,
            "forward_no_answer": " +4930123456 ",
        }))
        .unwrap();
        assert!(h.dnd);
        assert_eq!(h.forward_always, None);
        assert_eq!(h.forward_busy, None);
        assert_eq!(h.forward_no_answer.as_deref(), Some("+4930123456"));
        assert_eq!(h.forward_unregistered, None);
        assert_eq!(h.no_answer_secs, CallHandling::DEFAULT_NO_ANSWER_SECS);
        assert_eq!((h.extension.as_str(), h.updated_at), ("1001", 7));
        assert_eq!(handling(serde_json::json!({})).unwrap(), {
            let mut none = CallHandling::none("1001");
            none.updated_at = 7;
            none
        });
    }

    #[test]
    fn a_bad_handling_names_its_field() {
        let err = handling(serde_json::json!({"forward_busy": "20a2"})).unwrap_err();
        assert!(err.starts_with("forward_busy:"), "{err}");
        let err = handling(serde_json::json!({"forward_always": "1001"})).unwrap_err();
        assert!(
            err.starts_with("forward_always:") && err.contains("itself"),
            "{err}"
        );
        let long = "1".repeat(MAX_TARGET_LEN + 1);
        let err = handling(serde_json::json!({"forward_unregistered": long})).unwrap_err();
        assert!(err.starts_with("forward_unregistered:"), "{err}");
        for secs in [4, 121, 0] {
            let err = handling(serde_json::json!({"no_answer_secs": secs})).unwrap_err();
            assert_eq!(err, "no_answer_secs: 5 to 120 seconds");
        }
        assert!(handling(serde_json::json!({"no_answer_secs": 5})).is_ok());
        let err = handling(serde_json::json!({"extension": "1002"})).unwrap_err();
        assert!(err.starts_with("extension:"), "{err}");
        let err = handling(serde_json::json!({"forward": "2002"})).unwrap_err();
        assert!(err.contains("forward"), "{err}");
        // A GET answer written back is a valid body.
        let read = serde_json::to_value(CallHandling::none("1001")).unwrap();
        assert!(handling(read).is_ok());
    }

    #[test]
    fn a_ring_group_takes_defaults_and_keeps_its_members_in_order() {
        let g = group(serde_json::json!({"name": " Sales ", "members": ["1002", "1001"]})).unwrap();
        assert_eq!(g.name, "Sales");
        assert_eq!(g.members, ["1002", "1001"]);
        assert_eq!(g.strategy, RingStrategy::All);
        assert_eq!((g.ring_secs, g.no_answer, g.created_at), (20, None, 7));
        let g = group(serde_json::json!({
            "name": "Support", "strategy": "hunt", "members": ["1001"], "ring_secs": 10,
            "no_answer": "601", "created_at": 1, "updated_at": 2
        }))
        .unwrap();
        assert_eq!(g.strategy, RingStrategy::Hunt);
        assert_eq!((g.ring_secs, g.no_answer.as_deref()), (10, Some("601")));
        let stored = g;
        let body: RingGroupBody =
            serde_json::from_value(serde_json::json!({"name": "S", "members": ["1001"]})).unwrap();
        let replaced = group_from_body("600".into(), body, Some(&stored), 99).unwrap();
        assert_eq!((replaced.created_at, replaced.updated_at), (7, 99));
    }

    #[test]
    fn a_bad_ring_group_names_its_field() {
        let cases = [
            (serde_json::json!({"members": ["1001"]}), "name:"),
            (
                serde_json::json!({"name": "a\u{7}b", "members": ["1001"]}),
                "name:",
            ),
            (
                serde_json::json!({"name": "x".repeat(65), "members": ["1001"]}),
                "name:",
            ),
            (serde_json::json!({"name": "S"}), "members:"),
            (
                serde_json::json!({"name": "S", "members": ["1001", "1"]}),
                "members[1]:",
            ),
            (
                serde_json::json!({"name": "S", "members": ["1001", "1001"]}),
                "members[1]:",
            ),
            (
                serde_json::json!({"name": "S", "members": ["1001"], "ring_secs": 121}),
                "ring_secs:",
            ),
            (
                serde_json::json!({"name": "S", "members": ["1001"], "no_answer": "600"}),
                "no_answer:",
            ),
            (
                serde_json::json!({"name": "S", "members": ["1001"], "no_answer": "x"}),
                "no_answer:",
            ),
        ];
        for (json, field) in cases {
            let err = group(json.clone()).unwrap_err();
            assert!(err.starts_with(field), "{json}: {err}");
        }
        let many: Vec<String> = (0..=MAX_MEMBERS).map(|i| format!("{}", 1000 + i)).collect();
        let err = group(serde_json::json!({"name": "S", "members": many})).unwrap_err();
        assert!(err.starts_with("members:"), "{err}");
        let err =
            group(serde_json::json!({"name": "S", "members": ["1001"], "strategy": "random"}))
                .unwrap_err();
        assert!(err.contains("random"), "{err}");
    }

    #[test]
    fn refusals_are_worded_for_the_admin() {
        let g = group(serde_json::json!({"name": "S", "members": ["1001"]})).unwrap();
        let r = |kind: &str, table: &str, key: &str| match kind {
            "conflict" => storage::Response::Conflict {
                table: table.into(),
                key: key.into(),
            },
            _ => storage::Response::NotFound {
                table: table.into(),
                key: key.into(),
            },
        };
        let e = put_refused(r("conflict", "extensions", "600"), &g);
        assert!(matches!(e, ApiError::Conflict(_)));
        assert_eq!(e.to_string(), "600 is an extension's number");
        let e = put_refused(r("conflict", "ring_groups", "600"), &g);
        assert_eq!(e.to_string(), "ring group 600 already exists");
        let e = put_refused(r("conflict", "ivrs", "600"), &g);
        assert!(matches!(e, ApiError::Conflict(_)));
        assert_eq!(e.to_string(), "600 is an IVR's number");
        let e = put_refused(r("missing", "extensions", "1999"), &g);
        assert!(matches!(e, ApiError::NotFound(_)));
        assert_eq!(e.to_string(), "members: extension 1999 does not exist");
        let e = put_refused(r("missing", "ring_groups", "601"), &g);
        assert!(e.to_string().starts_with("no_answer:"), "{e}");
        let e = put_refused(r("missing", "ring_groups", "600"), &g);
        assert_eq!(e.to_string(), "ring group 600 does not exist");

        let e = delete_refused(r("conflict", "inbound_routes", "main"), "600");
        assert!(matches!(e, ApiError::Conflict(_)));
        assert_eq!(
            e.to_string(),
            "inbound route main still sends calls to ring group 600"
        );
        let e = delete_refused(r("conflict", "ring_groups", "601"), "600");
        assert!(
            e.to_string().starts_with("ring group 601 still sends"),
            "{e}"
        );
        let e = delete_refused(r("missing", "ring_groups", "600"), "600");
        assert!(matches!(e, ApiError::NotFound(_)));
        let e = delete_refused(r("conflict", "ivrs", "500"), "600");
        assert_eq!(e.to_string(), "IVR 500 still sends calls to ring group 600");
    }

    #[test]
    fn feature_codes_are_checked_one_by_one_then_against_each_other() {
        assert_eq!(
            codes("*78", "*79", "*72", "*73").unwrap(),
            FeatureCodes::default()
        );
        assert!(codes("#1", "#2", "*72", "**9").is_ok());
        let err = codes("78", "*79", "*72", "*73").unwrap_err();
        assert!(err.starts_with("dnd_on:"), "{err}");
        let err = codes("*78", "*79", "*72", "*7a").unwrap_err();
        assert!(err.starts_with("forward_off:"), "{err}");
        let err = codes("*78", "*79", "*72", "*123456789").unwrap_err();
        assert!(err.starts_with("forward_off:"), "{err}");
        let err = codes("*78", "*79", "*72", "*7").unwrap_err();
        assert!(
            err.starts_with("forward_off: *7 is the start of dnd_on (*78)"),
            "{err}"
        );
        let err = codes("*78", "*78", "*72", "*73").unwrap_err();
        assert!(
            err.starts_with("dnd_off:") && err.contains("dnd_on"),
            "{err}"
        );
        let err = codes("#", "*79", "*72", "*73").unwrap_err();
        assert!(err.starts_with("dnd_on:"), "{err}");
    }

    fn pickup(json: serde_json::Value) -> Result<PickupGroup, String> {
        let body: PickupGroupBody = serde_json::from_value(json).map_err(|e| e.to_string())?;
        pickup_group_from_body("Front desk".into(), body, None, 7).map_err(|e| e.to_string())
    }

    #[test]
    fn a_pickup_group_keeps_its_members_and_a_get_answer_is_a_valid_body() {
        let g = pickup(serde_json::json!({"members": ["1002", "1001"]})).unwrap();
        assert_eq!(g.name, "Front desk");
        assert_eq!(g.members, ["1002", "1001"]);
        assert_eq!((g.created_at, g.updated_at), (7, 7));
        assert!(pickup(serde_json::json!({})).unwrap().members.is_empty());
        let read = serde_json::to_value(&g).unwrap();
        let body: PickupGroupBody = serde_json::from_value(read).unwrap();
        let again = pickup_group_from_body("Front desk".into(), body, Some(&g), 99).unwrap();
        assert_eq!((again.created_at, again.updated_at), (7, 99));
        assert_eq!(again.members, g.members);
    }

    #[test]
    fn a_bad_pickup_group_names_its_field() {
        let cases = [
            (serde_json::json!({"members": ["1001", "1"]}), "members[1]:"),
            (
                serde_json::json!({"members": ["1001", "1001"]}),
                "members[1]:",
            ),
            (
                serde_json::json!({"name": "Back office", "members": []}),
                "name:",
            ),
        ];
        for (json, field) in cases {
            let err = pickup(json.clone()).unwrap_err();
            assert!(err.starts_with(field), "{json}: {err}");
        }
        let many: Vec<String> = (0..=MAX_MEMBERS).map(|i| format!("{}", 1000 + i)).collect();
        let err = pickup(serde_json::json!({"members": many})).unwrap_err();
        assert!(err.starts_with("members:"), "{err}");
        let err = pickup(serde_json::json!({"members": ["1001"], "ring_secs": 5})).unwrap_err();
        assert!(err.contains("ring_secs"), "{err}");
        for bad in ["", " a", "a/b", "x".repeat(MAX_PICKUP_NAME + 1).as_str()] {
            let err = validate_pickup_name(bad).unwrap_err().to_string();
            assert!(err.starts_with("name:"), "{bad:?}: {err}");
        }
        assert!(validate_pickup_name("Front desk").is_ok());
    }

    fn pickup_codes(group: &str, directed: &str) -> Result<PickupCodes, String> {
        pickup_codes_from_body(PickupCodesBody {
            group: group.into(),
            directed: directed.into(),
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn pickup_codes_are_checked_one_by_one_then_against_each_other() {
        assert_eq!(pickup_codes(" *8 ", "**").unwrap(), PickupCodes::default());
        let err = pickup_codes("8", "**").unwrap_err();
        assert!(err.starts_with("group:"), "{err}");
        let err = pickup_codes("*8", "*").unwrap_err();
        assert!(err.starts_with("directed:"), "{err}");
        let err = pickup_codes("*8", "*8").unwrap_err();
        assert!(
            err.starts_with("directed: *8 is also the code of group"),
            "{err}"
        );
        let err = pickup_codes("*80", "*8").unwrap_err();
        assert!(
            err.starts_with("directed: *8 is the start of group (*80)"),
            "{err}"
        );
    }

    #[test]
    fn a_clash_between_the_two_sets_names_the_written_code() {
        let features = FeatureCodes::default();
        let pickup = PickupCodes {
            group: "*7".into(),
            directed: "**".into(),
        };
        let e = clash_refused(FeatureCodes::KEY, &features, &pickup);
        assert!(matches!(e, ApiError::Conflict(_)));
        assert_eq!(
            e.to_string(),
            "group: *7 clashes with the feature code dnd_on (*78): one is the start of the other"
        );
        let taken = FeatureCodes {
            forward_off: "*8".into(),
            ..FeatureCodes::default()
        };
        let e = clash_refused(PickupCodes::KEY, &taken, &PickupCodes::default());
        assert_eq!(
            e.to_string(),
            "forward_off: *8 clashes with the group pickup code (*8): it is the same code"
        );
        // The other set changed since the refusal: no pair to name, still a 409.
        let e = clash_refused(PickupCodes::KEY, &features, &PickupCodes::default());
        assert!(matches!(e, ApiError::Conflict(_)));
        assert!(e.to_string().contains("clash"), "{e}");
    }
}
