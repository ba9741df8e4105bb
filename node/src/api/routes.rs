//! `/api/v1/routes/outbound`, `/api/v1/routes/inbound` and `/api/v1/routing/settings`: the rules that
//! send calls out through trunks and bring calls in from them, and the settings every route shares
//! (emergency numbers, anonymous inbound calls).
//!
//! Also the checks the routing configuration endpoints share (names, numbers, list sizes); what
//! their handlers share is in [`super::crud`].

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use pbx_sip::dialplan::Pattern;
use storage::model::{Setting, UnixMillis};
use storage::routing::{
    Destination, DidKind, InboundRoute, OutboundRoute, RouteClass, RoutingKind, RoutingRecord,
};
use storage::{Command, StateReader, StorageError, Table};

use super::AppState;
use super::access::Principal;
use super::crud::{self, Resource};
use super::error::ApiError;
use super::json::JsonBody;
use crate::time::now_millis;

/// Longest name of a trunk, route or group.
const MAX_NAME: usize = 32;
/// Longest number (DID, caller ID, prepend), as the dial plan matches them.
const MAX_NUMBER: usize = 32;
/// Most entries in any list of a routing record.
pub(super) const MAX_ENTRIES: usize = 100;
/// Most trunks a route tries in turn.
const MAX_ROUTE_TRUNKS: usize = 16;
/// Most emergency numbers.
const MAX_EMERGENCY: usize = 16;

/// Setting keys of [`RoutingSettings`].
const EMERGENCY_KEY: &str = "routing.emergency_numbers";
const REJECT_ANONYMOUS_KEY: &str = "routing.reject_anonymous_inbound";
const DEFAULT_EMERGENCY: [&str; 2] = ["911", "112"];

// ---------------------------------------------------------------------------------------------
// Shared checks.

/// `name`: 1 to 32 letters, digits, `-` or `_` (names appear in URLs, keys and log lines).
pub(super) fn validate_name(field: &str, name: &str) -> Result<(), ApiError> {
    let ok = (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!("1 to {MAX_NAME} letters, digits, '-' or '_'"),
        ))
    }
}

/// Digits with an optional leading `+`, at most 32 characters.
pub(super) fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    !digits.is_empty() && s.len() <= MAX_NUMBER && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A presented number: empty (none) or [`is_number`].
pub(super) fn validate_caller_number(field: &str, s: &str) -> Result<(), ApiError> {
    if s.is_empty() || is_number(s) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!("digits with an optional leading '+', at most {MAX_NUMBER}"),
        ))
    }
}

/// At most `max` entries in list `field`.
pub(super) fn validate_len<T>(field: &str, list: &[T], max: usize) -> Result<(), ApiError> {
    if list.len() > max {
        return Err(ApiError::invalid(field, format!("at most {max} entries")));
    }
    Ok(())
}

/// Names in list `field`: each valid and each once.
pub(super) fn validate_names(field: &str, names: &[String], max: usize) -> Result<(), ApiError> {
    validate_len(field, names, max)?;
    for (i, name) in names.iter().enumerate() {
        validate_name(&format!("{field}[{i}]"), name)?;
        if names[..i].contains(name) {
            return Err(ApiError::invalid(
                format!("{field}[{i}]"),
                format!("{name} is listed twice"),
            ));
        }
    }
    Ok(())
}

/// A dial pattern in field `field`; the reason says at which 1-based position it is wrong.
fn validate_pattern(field: &str, text: &str) -> Result<(), ApiError> {
    Pattern::parse(text)
        .map(|_| ())
        .map_err(|e| ApiError::invalid(field, e))
}

// ---------------------------------------------------------------------------------------------
// Outbound routes.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OutboundBody {
    /// Read-only fields of a GET answer, accepted and ignored: a record read, edited and written
    /// back is a valid body.
    #[serde(default, rename = "created_at")]
    _created_at: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<serde::de::IgnoredAny>,
    /// Required on POST; on PUT the URL's.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    position: u32,
    patterns: Vec<String>,
    #[serde(default)]
    strip: u32,
    #[serde(default)]
    prepend: String,
    class: RouteClass,
    trunks: Vec<String>,
    #[serde(default)]
    caller_id: Option<String>,
}

impl Resource for OutboundRoute {
    const NOUN: &'static str = "outbound route";
    const KIND: RoutingKind = RoutingKind::OutboundRoute;
    const LIST_KEY: &'static str = "routes";
    const REFS: &'static [(Table, &'static str)] = &[(Table::Trunks, "trunks")];
    type Body = OutboundBody;
    type View = Self;

    fn body_name(body: &OutboundBody) -> Option<&str> {
        body.name.as_deref()
    }

    fn from_body(
        body: OutboundBody,
        name: String,
        stored: Option<Self>,
        now: UnixMillis,
    ) -> Result<Self, ApiError> {
        if body.patterns.is_empty() {
            return Err(ApiError::invalid("patterns", "at least one pattern"));
        }
        validate_len("patterns", &body.patterns, MAX_ENTRIES)?;
        for (i, p) in body.patterns.iter().enumerate() {
            validate_pattern(&format!("patterns[{i}]"), p)?;
        }
        if body.strip > MAX_NUMBER as u32 {
            return Err(ApiError::invalid("strip", format!("0 to {MAX_NUMBER}")));
        }
        let dialable = |b: u8| b.is_ascii_digit() || matches!(b, b'+' | b'*' | b'#');
        if body.prepend.len() > MAX_NUMBER || !body.prepend.bytes().all(dialable) {
            return Err(ApiError::invalid(
                "prepend",
                format!("digits, '+', '*' or '#', at most {MAX_NUMBER}"),
            ));
        }
        if body.trunks.is_empty() {
            return Err(ApiError::invalid("trunks", "at least one trunk"));
        }
        validate_names("trunks", &body.trunks, MAX_ROUTE_TRUNKS)?;
        let caller_id = body.caller_id.filter(|c| !c.is_empty());
        if let Some(c) = &caller_id {
            validate_caller_number("caller_id", c)?;
        }
        Ok(Self {
            name,
            position: body.position,
            patterns: body.patterns,
            strip: body.strip,
            prepend: body.prepend,
            class: body.class,
            trunks: body.trunks,
            caller_id,
            created_at: stored.map_or(now, |r| r.created_at),
            updated_at: now,
        })
    }

    fn into_routing(self) -> RoutingRecord {
        RoutingRecord::OutboundRoute(self)
    }

    /// The order routes are tried in: by position, then name.
    fn order(routes: &mut [Self]) {
        routes.sort_by(|a, b| (a.position, &a.name).cmp(&(b.position, &b.name)));
    }
}

// Outbound routes list in the order they are tried. A replace sets every field (omitted optional
// ones take their defaults); a delete is refused (409, naming the group) while a group lists the
// route.
crud::handlers! {
    OutboundRoute: list_outbound, create_outbound, get_outbound, update_outbound, delete_outbound
}

// ---------------------------------------------------------------------------------------------
// Inbound routes.

/// Where an inbound call goes, as JSON: `{"type": "extension", "target": "1001"}`; the types are
/// `extension`, `ring_group`, `time_condition`, `ivr` and `conference`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    tag = "type",
    content = "target",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub(crate) enum DestinationJson {
    Extension(String),
    RingGroup(String),
    TimeCondition(String),
    Ivr(String),
    Conference(String),
}

impl From<Destination> for DestinationJson {
    fn from(d: Destination) -> Self {
        match d {
            Destination::Extension(n) => Self::Extension(n),
            Destination::RingGroup(n) => Self::RingGroup(n),
            Destination::TimeCondition(n) => Self::TimeCondition(n),
            Destination::Ivr(n) => Self::Ivr(n),
            Destination::Conference(n) => Self::Conference(n),
        }
    }
}

impl DestinationJson {
    /// The destination, checked on its own: a number of 2 to 15 digits, an IVR's number, or a time
    /// condition's name (and only where `conditions` allows one).
    pub(crate) fn checked(self, field: &str, conditions: bool) -> Result<Destination, ApiError> {
        match self {
            Self::Extension(n) | Self::RingGroup(n)
                if !(2..=15).contains(&n.len()) || !n.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Err(ApiError::invalid(
                    format!("{field}.target"),
                    "an extension or ring group number, 2 to 15 digits",
                ))
            }
            Self::Extension(n) => Ok(Destination::Extension(n)),
            Self::RingGroup(n) => Ok(Destination::RingGroup(n)),
            Self::TimeCondition(_) if !conditions => Err(ApiError::invalid(
                format!("{field}.type"),
                "extension, ring_group, ivr or conference (a time condition leads to no other)",
            )),
            Self::TimeCondition(n) if !storage::time_condition::TimeCondition::valid_name(&n) => {
                Err(ApiError::invalid(
                    format!("{field}.target"),
                    "a time condition's name",
                ))
            }
            Self::TimeCondition(n) => Ok(Destination::TimeCondition(n)),
            Self::Ivr(n) if !storage::ivr::Ivr::valid_number(&n) => Err(ApiError::invalid(
                format!("{field}.target"),
                format!(
                    "an IVR's number, 1 to {} digits",
                    storage::ivr::MAX_IVR_NUMBER
                ),
            )),
            Self::Ivr(n) => Ok(Destination::Ivr(n)),
            Self::Conference(n) if !storage::conference::ConferenceRoom::valid_number(&n) => {
                Err(ApiError::invalid(
                    format!("{field}.target"),
                    format!(
                        "a conference room's number, 1 to {} digits",
                        storage::conference::MAX_ROOM_NUMBER
                    ),
                ))
            }
            Self::Conference(n) => Ok(Destination::Conference(n)),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct InboundView {
    name: String,
    did_kind: DidKind,
    did: String,
    caller_id: Option<String>,
    trunk: Option<String>,
    destination: DestinationJson,
    created_at: u64,
    updated_at: u64,
}

impl From<InboundRoute> for InboundView {
    fn from(r: InboundRoute) -> Self {
        Self {
            name: r.name,
            did_kind: r.did_kind,
            did: r.did,
            caller_id: r.caller_id,
            trunk: r.trunk,
            destination: r.destination.into(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InboundBody {
    /// Read-only fields of a GET answer, accepted and ignored: a record read, edited and written
    /// back is a valid body.
    #[serde(default, rename = "created_at")]
    _created_at: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<serde::de::IgnoredAny>,
    /// Required on POST; on PUT the URL's.
    #[serde(default)]
    name: Option<String>,
    did_kind: DidKind,
    did: String,
    /// A dial pattern the caller's number must match.
    #[serde(default)]
    caller_id: Option<String>,
    /// Only calls arriving on this trunk.
    #[serde(default)]
    trunk: Option<String>,
    destination: DestinationJson,
}

impl Resource for InboundRoute {
    const NOUN: &'static str = "inbound route";
    const KIND: RoutingKind = RoutingKind::InboundRoute;
    const LIST_KEY: &'static str = "routes";
    const REFS: &'static [(Table, &'static str)] = &[
        (Table::Trunks, "trunk"),
        (Table::Extensions, "destination.target"),
        (Table::RingGroups, "destination.target"),
        (Table::TimeConditions, "destination.target"),
        (Table::Ivrs, "destination.target"),
        (Table::ConferenceRooms, "destination.target"),
    ];
    type Body = InboundBody;
    type View = InboundView;

    fn body_name(body: &InboundBody) -> Option<&str> {
        body.name.as_deref()
    }

    fn conflicts_with(&self, other: &Self) -> Option<String> {
        let same = self.did_kind == other.did_kind
            && self.did == other.did
            && self.caller_id == other.caller_id;
        same.then(|| {
            format!(
                "inbound route {} already takes DID {} with the same caller ID condition",
                other.name, other.did
            )
        })
    }

    fn from_body(
        body: InboundBody,
        name: String,
        stored: Option<Self>,
        now: UnixMillis,
    ) -> Result<Self, ApiError> {
        match body.did_kind {
            DidKind::Exact | DidKind::Prefix if !is_number(&body.did) => {
                return Err(ApiError::invalid(
                    "did",
                    format!("digits with an optional leading '+', at most {MAX_NUMBER}"),
                ));
            }
            DidKind::Pattern => validate_pattern("did", &body.did)?,
            DidKind::Exact | DidKind::Prefix => {}
        }
        let caller_id = body.caller_id.filter(|c| !c.is_empty());
        if let Some(c) = &caller_id {
            validate_pattern("caller_id", c)?;
        }
        let trunk = body.trunk.filter(|t| !t.is_empty());
        if let Some(t) = &trunk {
            validate_name("trunk", t)?;
        }
        let destination = body.destination.checked("destination", true)?;
        Ok(Self {
            name,
            did_kind: body.did_kind,
            did: body.did,
            caller_id,
            trunk,
            destination,
            created_at: stored.map_or(now, |r| r.created_at),
            updated_at: now,
        })
    }

    fn into_routing(self) -> RoutingRecord {
        RoutingRecord::InboundRoute(self)
    }
}

// Inbound routes list by name (the SIP side orders them by how specific their DID is). A replace
// sets every field (omitted optional ones are cleared).
crud::handlers! {
    InboundRoute: list_inbound, create_inbound, get_inbound, update_inbound, delete_inbound
}

// ---------------------------------------------------------------------------------------------
// Settings.

/// The routing settings every route shares, stored as [`Setting`] records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSettings {
    /// Numbers that go out through the first matching route whatever the caller's permissions.
    pub emergency_numbers: Vec<String>,
    /// Refuse inbound calls without a caller ID (besides each trunk's `allow_anonymous`).
    pub reject_anonymous_inbound: bool,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            emergency_numbers: DEFAULT_EMERGENCY.map(str::to_owned).to_vec(),
            reject_anonymous_inbound: false,
        }
    }
}

/// The settings as stored; a setting never written has its default.
fn load_settings(reader: &StateReader) -> Result<RoutingSettings, StorageError> {
    let mut out = RoutingSettings::default();
    if let Some(s) = reader.get::<Setting>(EMERGENCY_KEY)? {
        out.emergency_numbers = s
            .value
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
    }
    if let Some(s) = reader.get::<Setting>(REJECT_ANONYMOUS_KEY)? {
        out.reject_anonymous_inbound = s.value == "true";
    }
    Ok(out)
}

/// The routing settings for the SIP side, from this node's applied state. A read that fails leaves
/// the defaults (emergency numbers still go out) and is logged.
pub fn read_routing_settings(reader: &StateReader) -> RoutingSettings {
    load_settings(reader).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "routing settings unreadable; using the defaults");
        RoutingSettings::default()
    })
}

pub(crate) async fn get_settings(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<RoutingSettings>, ApiError> {
    who.require(who.grants.routing)?;
    state.cluster.linearizable_barrier().await?;
    Ok(Json(load_settings(state.cluster.reader())?))
}

/// Replaces both settings. Each changed one is its own audited write; a failure between the two
/// leaves the first applied, and the admin's retry sets both.
pub(crate) async fn put_settings(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(req): JsonBody<RoutingSettings>,
) -> Result<Json<RoutingSettings>, ApiError> {
    who.require(who.grants.routing)?;
    validate_len("emergency_numbers", &req.emergency_numbers, MAX_EMERGENCY)?;
    for (i, n) in req.emergency_numbers.iter().enumerate() {
        let field = format!("emergency_numbers[{i}]");
        if !(1..=15).contains(&n.len()) || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::invalid(field, "1 to 15 digits"));
        }
        if req.emergency_numbers[..i].contains(n) {
            return Err(ApiError::invalid(field, format!("{n} is listed twice")));
        }
    }
    state.cluster.linearizable_barrier().await?;
    let old = load_settings(state.cluster.reader())?;
    let now = now_millis();
    let mut writes = Vec::new();
    if old.emergency_numbers != req.emergency_numbers {
        writes.push((EMERGENCY_KEY, req.emergency_numbers.join(",")));
    }
    if old.reject_anonymous_inbound != req.reject_anonymous_inbound {
        writes.push((
            REJECT_ANONYMOUS_KEY,
            req.reject_anonymous_inbound.to_string(),
        ));
    }
    for (key, value) in writes {
        let setting = Setting {
            key: key.to_owned(),
            value,
            updated_at: now,
        };
        state.propose_checked(Command::PutSetting(setting)).await?;
    }
    tracing::info!(emergency = ?req.emergency_numbers, reject_anonymous = req.reject_anonymous_inbound, "routing settings changed");
    Ok(Json(req))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbound(patterns: &[&str], trunks: &[&str]) -> OutboundBody {
        OutboundBody {
            name: None,
            position: 0,
            patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
            strip: 0,
            prepend: String::new(),
            class: RouteClass::Local,
            trunks: trunks.iter().map(|t| (*t).to_owned()).collect(),
            caller_id: None,
            _created_at: None,
            _updated_at: None,
        }
    }

    fn check(body: OutboundBody) -> Result<OutboundRoute, ApiError> {
        OutboundRoute::from_body(body, "r".into(), None, 1)
    }

    fn message(e: ApiError) -> String {
        e.to_string()
    }

    #[test]
    fn a_bad_pattern_names_its_index_and_position() {
        let err = check(outbound(&["9NXX", "9[5-1]"], &["a"])).unwrap_err();
        assert_eq!(
            message(err),
            "patterns[1]: a range must go upwards at position 3"
        );
    }

    #[test]
    fn route_trunks_are_named_once_each() {
        let err = check(outbound(&["9."], &["a", "a"])).unwrap_err();
        assert_eq!(message(err), "trunks[1]: a is listed twice");
        let err = check(outbound(&["9."], &[])).unwrap_err();
        assert!(message(err).starts_with("trunks:"));
    }

    #[test]
    fn numbers_and_names_are_checked() {
        assert!(is_number("+15550100"));
        assert!(is_number("911"));
        assert!(!is_number("+"));
        assert!(!is_number("1-2"));
        assert!(!is_number(&"1".repeat(33)));
        assert!(validate_name("name", "uk-trunk_1").is_ok());
        assert!(validate_name("name", "").is_err());
        assert!(validate_name("name", "a b").is_err());
        assert!(validate_name("name", &"a".repeat(33)).is_err());
    }

    #[test]
    fn a_refusal_names_the_field_or_the_referrer() {
        let nf = storage::Response::NotFound {
            table: "trunks".into(),
            key: "x".into(),
        };
        let e = ApiError::refused(nf, "outbound_routes", "r", &[("trunks", "trunks")]);
        assert!(matches!(&e, ApiError::BadRequest(_)));
        assert_eq!(message(e), "trunks: trunk x does not exist");
        let own = storage::Response::NotFound {
            table: "outbound_routes".into(),
            key: "r".into(),
        };
        let e = ApiError::refused(own, "outbound_routes", "r", &[("trunks", "trunks")]);
        assert!(matches!(&e, ApiError::NotFound(_)));
        let used = storage::Response::Conflict {
            table: "outbound_routes".into(),
            key: "local".into(),
        };
        let e = ApiError::refused(used, "trunks", "a", &[]);
        assert_eq!(message(e), "trunk a is used by outbound route local");
        let dup = storage::Response::Conflict {
            table: "trunks".into(),
            key: "a".into(),
        };
        assert_eq!(
            message(ApiError::refused(dup, "trunks", "a", &[])),
            "trunk a already exists"
        );
    }

    #[test]
    fn destinations_read_and_write_as_type_and_target() {
        let d: DestinationJson =
            serde_json::from_str(r#"{"type":"extension","target":"1001"}"#).unwrap();
        assert!(matches!(&d, DestinationJson::Extension(n) if n == "1001"));
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"type":"extension","target":"1001"}"#
        );
        assert!(
            serde_json::from_str::<DestinationJson>(r#"{"type":"queue","target":"1"}"#).is_err()
        );
        let g: DestinationJson =
            serde_json::from_str(r#"{"type":"ring_group","target":"600"}"#).unwrap();
        assert!(matches!(&g, DestinationJson::RingGroup(n) if n == "600"));
        let ivr: DestinationJson = serde_json::from_str(r#"{"type":"ivr","target":"5"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&ivr).unwrap(),
            r#"{"type":"ivr","target":"5"}"#
        );
        assert_eq!(
            ivr.checked("destination", false).unwrap(),
            Destination::Ivr("5".into()),
            "an IVR wherever a condition may not be: a caller's key leads on"
        );
        let err = DestinationJson::Ivr("5x".into())
            .checked("open", false)
            .unwrap_err();
        assert!(err.to_string().starts_with("open.target:"), "{err}");
    }
}
