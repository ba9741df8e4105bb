//! `/api/v1/ivrs`: IVR menus, or auto attendants: a greeting, then the key the caller presses
//! chooses where the call goes (grant `routing`).
//!
//! An IVR is known by its number, which callers inside can dial and inbound routes, time
//! conditions and other IVRs send calls to (`{"type": "ivr", "target": "500"}`). That the number is
//! no extension's or ring group's, that the greeting is a prompt of the audio store, that every
//! destination exists, and that nothing still sends calls to an IVR being deleted, the state
//! machine checks in log order; the handlers here check the shape of a request field by field and
//! word the state machine's refusals.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use storage::audio::AudioFile;
use storage::ivr::{
    IVR_ATTEMPTS, IVR_KEYS, IVR_TIMEOUT_SECS, Ivr, IvrOption, MAX_IVR_NAME, MAX_IVR_NUMBER,
    MAX_IVR_OPTIONS,
};
use storage::model::UnixMillis;
use storage::routing::{Destination, PutMode};
use storage::{Command, StateReader, StorageError};

use super::AppState;
use super::access::Principal;
use super::crud::propose_answer;
use super::error::{ApiError, noun};
use super::json::JsonBody;
use super::routes::DestinationJson;
use crate::time::now_millis;

/// Seconds waited for a key after the greeting, unless the request says otherwise.
const DEFAULT_TIMEOUT_SECS: u8 = 5;
/// Times the greeting is played before the fallback, unless the request says otherwise.
const DEFAULT_ATTEMPTS: u8 = 3;

/// One key of a menu: `{"digit": "1", "destination": {"type": "extension", "target": "1001"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OptionJson {
    digit: String,
    destination: DestinationJson,
}

/// An IVR as PUT takes it. Every field is replaced: omitted `options` are none, an omitted,
/// `null` or empty `greeting` none, `direct_dial` false, `timeout_secs` 5, `attempts` 3, and an
/// omitted or `null` `fallback` hangs up.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IvrBody {
    /// Read-only fields of a GET answer, accepted and ignored: a record read, edited and written
    /// back is a valid body.
    #[serde(default, rename = "created_at")]
    _created_at: Option<IgnoredAny>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<IgnoredAny>,
    /// The URL's, if given.
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    greeting: Option<String>,
    #[serde(default)]
    options: Vec<OptionJson>,
    #[serde(default)]
    direct_dial: Option<bool>,
    /// Wider than the store's `u8`, so that 300 is refused naming the range, not the type.
    #[serde(default)]
    timeout_secs: Option<u64>,
    #[serde(default)]
    attempts: Option<u64>,
    #[serde(default)]
    fallback: Option<DestinationJson>,
}

/// An IVR as answers show it: the body's shape, with every field.
#[derive(Debug, Serialize)]
pub(crate) struct IvrView {
    number: String,
    name: String,
    greeting: Option<String>,
    options: Vec<OptionJson>,
    direct_dial: bool,
    timeout_secs: u8,
    attempts: u8,
    fallback: Option<DestinationJson>,
    created_at: UnixMillis,
    updated_at: UnixMillis,
}

impl From<Ivr> for IvrView {
    fn from(ivr: Ivr) -> Self {
        Self {
            options: ivr
                .options
                .into_iter()
                .map(|o| OptionJson {
                    digit: o.digit.to_string(),
                    destination: o.destination.into(),
                })
                .collect(),
            fallback: ivr.fallback.map(Into::into),
            number: ivr.number,
            name: ivr.name,
            greeting: ivr.greeting,
            direct_dial: ivr.direct_dial,
            timeout_secs: ivr.timeout_secs,
            attempts: ivr.attempts,
            created_at: ivr.created_at,
            updated_at: ivr.updated_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct IvrList {
    ivrs: Vec<IvrView>,
}

/// Every IVR, by number, as answers show them.
pub(crate) fn list_views(reader: &StateReader) -> Result<IvrList, StorageError> {
    let ivrs = reader.list::<Ivr>()?.into_iter().map(Into::into).collect();
    Ok(IvrList { ivrs })
}

/// 400 unless `number` can be an IVR's.
fn validate_number(number: &str) -> Result<(), ApiError> {
    if Ivr::valid_number(number) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "number",
            format!("1 to {MAX_IVR_NUMBER} digits"),
        ))
    }
}

/// The key an option's `digit` names: exactly one of 0-9, `*` or `#`.
fn key(field: &str, digit: &str) -> Result<char, ApiError> {
    let mut chars = digit.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if IVR_KEYS.contains(&c) => Ok(c),
        _ => Err(ApiError::invalid(
            field,
            format!("{digit:?} is not a key: one of 0-9, * or #"),
        )),
    }
}

/// A count the body gives (or its default), within `range`.
fn bounded(
    field: &str,
    given: Option<u64>,
    default: u8,
    range: std::ops::RangeInclusive<u8>,
    unit: &str,
) -> Result<u8, ApiError> {
    let value = given.unwrap_or(u64::from(default));
    u8::try_from(value)
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| {
            ApiError::invalid(field, format!("{} to {}{unit}", range.start(), range.end()))
        })
}

/// IVR `number` as `body` describes it, checked. `stored` is the IVR a PUT replaces.
fn ivr_from_body(
    number: String,
    body: IvrBody,
    stored: Option<&Ivr>,
    now: UnixMillis,
) -> Result<Ivr, ApiError> {
    validate_number(&number)?;
    if let Some(b) = body.number.as_deref().filter(|b| *b != number) {
        return Err(ApiError::invalid(
            "number",
            format!(
                "{b} differs from the number in the URL ({number}); an IVR cannot be renumbered"
            ),
        ));
    }
    let name = body.name.unwrap_or_default().trim().to_owned();
    if !Ivr::valid_name(&name) {
        return Err(ApiError::invalid(
            "name",
            format!("1 to {MAX_IVR_NAME} bytes of text, no control characters"),
        ));
    }
    let greeting = super::features::given(body.greeting);
    if let Some(g) = &greeting
        && !AudioFile::valid_id(g)
    {
        return Err(ApiError::invalid(
            "greeting",
            format!("{g:?} is not an audio file's id (32 lowercase hex digits, a prompt's)"),
        ));
    }
    if body.options.len() > MAX_IVR_OPTIONS {
        return Err(ApiError::invalid(
            "options",
            format!("at most {MAX_IVR_OPTIONS}, one per key 0-9, * and #"),
        ));
    }
    let mut options: Vec<IvrOption> = Vec::with_capacity(body.options.len());
    for (i, o) in body.options.into_iter().enumerate() {
        let digit = key(&format!("options[{i}].digit"), &o.digit)?;
        if options.iter().any(|p| p.digit == digit) {
            return Err(ApiError::invalid(
                format!("options[{i}].digit"),
                format!("key {digit} is listed twice"),
            ));
        }
        let destination = o
            .destination
            .checked(&format!("options[{i}].destination"), true)?;
        options.push(IvrOption { digit, destination });
    }
    let timeout_secs = bounded(
        "timeout_secs",
        body.timeout_secs,
        DEFAULT_TIMEOUT_SECS,
        IVR_TIMEOUT_SECS,
        " seconds",
    )?;
    let attempts = bounded(
        "attempts",
        body.attempts,
        DEFAULT_ATTEMPTS,
        IVR_ATTEMPTS,
        "",
    )?;
    let fallback = body
        .fallback
        .map(|f| f.checked("fallback", true))
        .transpose()?;
    let ivr = Ivr {
        number,
        name,
        greeting,
        options,
        direct_dial: body.direct_dial.unwrap_or(false),
        timeout_secs,
        attempts,
        fallback,
        created_at: stored.map_or(now, |s| s.created_at),
        updated_at: now,
    };
    // The store's own rule decides; the checks above only name the field at fault.
    if let Some(problem) = ivr.problem() {
        return Err(ApiError::BadRequest(problem));
    }
    Ok(ivr)
}

/// The request field that sends calls to `d`, and a note naming the key when it is an option's:
/// the first option that does, or the fallback.
fn field_of(ivr: &Ivr, d: &Destination) -> (String, String) {
    match ivr.options.iter().position(|o| o.destination == *d) {
        Some(i) => (
            format!("options[{i}].destination.target"),
            format!(" (key {})", ivr.options[i].digit),
        ),
        None => ("fallback.target".to_owned(), String::new()),
    }
}

/// The state machine's refusal of a put of `ivr`, in words: a number taken by an extension or a
/// ring group is a 409; a greeting or destination that does not exist a 404 naming its field, as
/// a time condition's is.
fn put_refused(r: storage::Response, ivr: &Ivr) -> ApiError {
    let number = &ivr.number;
    match r {
        storage::Response::Conflict { table, key } if table == "extensions" => {
            ApiError::Conflict(format!("{key} is an extension's number"))
        }
        storage::Response::Conflict { table, key } if table == "ring_groups" => {
            ApiError::Conflict(format!("{key} is a ring group's number"))
        }
        storage::Response::Conflict { table, key } if table == "conference_rooms" => {
            ApiError::Conflict(format!("{key} is a conference room's number"))
        }
        storage::Response::NotFound { table, key } if table == "ivrs" && key == *number => {
            no_ivr(number)
        }
        storage::Response::NotFound { table, key } if table == "audio_files" => ApiError::NotFound(
            format!("greeting: audio file {key} does not exist (upload the prompt first)"),
        ),
        storage::Response::NotFound { table, key } => {
            let d = match table.as_str() {
                "extensions" => Destination::Extension(key.clone()),
                "ring_groups" => Destination::RingGroup(key.clone()),
                "time_conditions" => Destination::TimeCondition(key.clone()),
                "ivrs" => Destination::Ivr(key.clone()),
                "conference_rooms" => Destination::Conference(key.clone()),
                _ => return storage::Response::NotFound { table, key }.into(),
            };
            // The field first, as every message naming one starts (the portal places it by that).
            let (field, note) = field_of(ivr, &d);
            ApiError::NotFound(format!(
                "{field}: {} {key} does not exist{note}",
                noun(&table)
            ))
        }
        other => other.into(),
    }
}

/// The state machine's refusal of deleting IVR `number`, in words.
fn delete_refused(r: storage::Response, number: &str) -> ApiError {
    match r {
        storage::Response::NotFound { .. } => no_ivr(number),
        storage::Response::Conflict { table, key } => ApiError::Conflict(format!(
            "{} {key} still sends calls to IVR {number}",
            noun(&table)
        )),
        other => other.into(),
    }
}

fn no_ivr(number: &str) -> ApiError {
    ApiError::NotFound(format!("IVR {number} does not exist"))
}

/// IVR `number` after a linearizable barrier; 400 for a number no IVR can have, `None` when there
/// is none.
async fn read_ivr(state: &AppState, number: &str) -> Result<Option<Ivr>, ApiError> {
    validate_number(number)?;
    state.cluster.linearizable_barrier().await?;
    Ok(state.cluster.reader().get::<Ivr>(number)?)
}

/// Every IVR, by number.
pub(crate) async fn list(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<IvrList>, ApiError> {
    who.require(who.grants.routing)?;
    state.cluster.linearizable_barrier().await?;
    Ok(Json(list_views(state.cluster.reader())?))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
) -> Result<Json<IvrView>, ApiError> {
    who.require(who.grants.routing)?;
    let ivr = read_ivr(&state, &number)
        .await?
        .ok_or_else(|| no_ivr(&number))?;
    Ok(Json(ivr.into()))
}

/// Creates (201) or replaces (200) IVR `number`; 409 when the number is an extension's or a ring
/// group's, 404 naming the greeting or destination that does not exist.
pub(crate) async fn put(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
    JsonBody(body): JsonBody<IvrBody>,
) -> Result<(StatusCode, Json<IvrView>), ApiError> {
    who.require(who.grants.routing)?;
    let stored = read_ivr(&state, &number).await?;
    let ivr = ivr_from_body(number, body, stored.as_ref(), now_millis())?;
    let mode = if stored.is_some() {
        PutMode::Update
    } else {
        PutMode::Create
    };
    let cmd = Command::PutIvr {
        ivr: ivr.clone(),
        mode,
    };
    match propose_answer(&state, cmd).await? {
        storage::Response::Ok => {}
        refused => return Err(put_refused(refused, &ivr)),
    }
    let status = if stored.is_some() {
        tracing::info!(number = %ivr.number, "IVR replaced");
        StatusCode::OK
    } else {
        tracing::info!(number = %ivr.number, "IVR created");
        StatusCode::CREATED
    };
    Ok((status, Json(ivr.into())))
}

/// Deletes IVR `number`; 409 naming the inbound route, time condition or IVR that still sends
/// calls to it.
pub(crate) async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
) -> Result<StatusCode, ApiError> {
    who.require(who.grants.routing)?;
    validate_number(&number)?;
    let cmd = Command::DeleteIvr {
        number: number.clone(),
    };
    match propose_answer(&state, cmd).await? {
        storage::Response::Ok => {}
        refused => return Err(delete_refused(refused, &number)),
    }
    tracing::info!(number = %number, "IVR deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn menu() -> serde_json::Value {
        serde_json::json!({
            "number": "500",
            "name": "Main menu",
            "greeting": "0123456789abcdef0123456789abcdef",
            "options": [
                {"digit": "1", "destination": {"type": "extension", "target": "1001"}},
                {"digit": "2", "destination": {"type": "ring_group", "target": "600"}},
                {"digit": "*", "destination": {"type": "ivr", "target": "500"}},
                {"digit": "#", "destination": {"type": "time_condition", "target": "office"}}
            ],
            "direct_dial": true,
            "timeout_secs": 7,
            "attempts": 2,
            "fallback": {"type": "extension", "target": "1001"}
        })
    }

    fn ivr(json: serde_json::Value) -> Result<Ivr, String> {
        let body: IvrBody = serde_json::from_value(json).map_err(|e| e.to_string())?;
        ivr_from_body("500".into(), body, None, 7).map_err(|e| e.to_string())
    }

    /// `menu()` with the value at `path` (object keys, or array indexes) replaced by `value`.
    fn with(path: &[&str], value: serde_json::Value) -> serde_json::Value {
        let mut j = menu();
        let mut at = &mut j;
        for p in path {
            at = match p.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*p],
            };
        }
        *at = value;
        j
    }

    #[test]
    fn an_ivr_reads_and_writes_in_the_apis_shape() {
        let i = ivr(menu()).unwrap();
        assert_eq!(i.options.len(), 4);
        assert_eq!(i.options[2].digit, '*');
        assert_eq!(i.options[2].destination, Destination::Ivr("500".into()));
        assert_eq!(
            i.options[3].destination,
            Destination::TimeCondition("office".into())
        );
        assert_eq!((i.timeout_secs, i.attempts, i.direct_dial), (7, 2, true));
        assert_eq!((i.created_at, i.updated_at), (7, 7));
        let json = serde_json::to_value(IvrView::from(i.clone())).unwrap();
        for key in [
            "number",
            "name",
            "greeting",
            "options",
            "direct_dial",
            "timeout_secs",
            "attempts",
            "fallback",
        ] {
            assert_eq!(json[key], menu()[key], "{key}");
        }
        // The GET answer written back is a valid body and the same IVR.
        let body: IvrBody = serde_json::from_value(json).unwrap();
        let again = ivr_from_body("500".into(), body, Some(&i), 99).unwrap();
        assert_eq!(again.options, i.options);
        assert_eq!((again.created_at, again.updated_at), (7, 99));
    }

    #[test]
    fn omitted_fields_take_their_defaults() {
        let i = ivr(serde_json::json!({"name": "Night"})).unwrap();
        assert_eq!(i.greeting, None);
        assert!(i.options.is_empty());
        assert!(!i.direct_dial);
        assert_eq!((i.timeout_secs, i.attempts), (5, 3));
        assert_eq!(i.fallback, None);
        let json = serde_json::to_value(IvrView::from(i)).unwrap();
        assert!(json["greeting"].is_null() && json["fallback"].is_null());
        let i =
            ivr(serde_json::json!({"name": "Night", "greeting": "", "fallback": null})).unwrap();
        assert_eq!((i.greeting, i.fallback), (None, None));
    }

    #[test]
    fn a_bad_ivr_names_its_field() {
        let options = |n: usize| -> serde_json::Value {
            (0..n)
                .map(|i| serde_json::json!({"digit": i.to_string(), "destination": {"type": "extension", "target": "1001"}}))
                .collect()
        };
        let cases = [
            (with(&["name"], serde_json::json!("")), "name:"),
            (with(&["name"], serde_json::json!("a\u{7}b")), "name:"),
            (
                with(&["name"], serde_json::json!("x".repeat(MAX_IVR_NAME + 1))),
                "name:",
            ),
            (
                with(&["greeting"], serde_json::json!("welcome.wav")),
                "greeting:",
            ),
            (with(&["options"], options(MAX_IVR_OPTIONS + 1)), "options:"),
            (
                with(&["options", "1", "digit"], serde_json::json!("a")),
                "options[1].digit:",
            ),
            (
                with(&["options", "1", "digit"], serde_json::json!("12")),
                "options[1].digit:",
            ),
            (
                with(&["options", "1", "digit"], serde_json::json!("")),
                "options[1].digit:",
            ),
            (
                with(&["options", "1", "digit"], serde_json::json!("1")),
                "options[1].digit: key 1 is listed twice",
            ),
            (
                with(
                    &["options", "0", "destination", "target"],
                    serde_json::json!("1x"),
                ),
                "options[0].destination.target:",
            ),
            (
                with(
                    &["options", "2", "destination", "target"],
                    serde_json::json!(""),
                ),
                "options[2].destination.target:",
            ),
            (
                with(&["timeout_secs"], serde_json::json!(0)),
                "timeout_secs:",
            ),
            (
                with(&["timeout_secs"], serde_json::json!(61)),
                "timeout_secs:",
            ),
            (
                with(&["timeout_secs"], serde_json::json!(300)),
                "timeout_secs:",
            ),
            (with(&["attempts"], serde_json::json!(0)), "attempts:"),
            (with(&["attempts"], serde_json::json!(6)), "attempts:"),
            (
                with(
                    &["fallback"],
                    serde_json::json!({"type": "ring_group", "target": "6"}),
                ),
                "fallback.target:",
            ),
            (with(&["number"], serde_json::json!("501")), "number:"),
        ];
        for (json, field) in cases {
            let err = ivr(json.clone()).unwrap_err();
            assert!(err.starts_with(field), "{json}: {err}");
        }
        for (json, word) in [
            (with(&["colour"], serde_json::json!("blue")), "colour"),
            (
                with(&["fallback", "type"], serde_json::json!("queue")),
                "queue",
            ),
            (
                with(&["options", "0", "key"], serde_json::json!("1")),
                "key",
            ),
        ] {
            let err = ivr(json).unwrap_err();
            assert!(err.contains(word), "{err}");
        }
        assert_eq!(
            ivr(with(&["options"], options(MAX_IVR_OPTIONS - 2))).map(|i| i.options.len()),
            Ok(MAX_IVR_OPTIONS - 2)
        );
        let body: IvrBody = serde_json::from_value(menu()).unwrap();
        let err = ivr_from_body("5a".into(), body, None, 1).unwrap_err();
        assert!(err.to_string().starts_with("number:"), "{err}");
    }

    #[test]
    fn refusals_name_the_field_or_the_referrer() {
        let i = ivr(menu()).unwrap();
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
        let e = put_refused(r("conflict", "extensions", "500"), &i);
        assert!(matches!(e, ApiError::Conflict(_)));
        assert_eq!(e.to_string(), "500 is an extension's number");
        let e = put_refused(r("conflict", "ring_groups", "500"), &i);
        assert_eq!(e.to_string(), "500 is a ring group's number");
        let e = put_refused(r("conflict", "ivrs", "500"), &i);
        assert_eq!(e.to_string(), "IVR 500 already exists");
        let e = put_refused(r("missing", "ring_groups", "600"), &i);
        assert!(matches!(e, ApiError::NotFound(_)));
        assert_eq!(
            e.to_string(),
            "options[1].destination.target: ring group 600 does not exist (key 2)"
        );
        let e = put_refused(r("missing", "time_conditions", "office"), &i);
        assert_eq!(
            e.to_string(),
            "options[3].destination.target: time condition office does not exist (key #)"
        );
        let mut to_other = i.clone();
        to_other.fallback = Some(Destination::Ivr("501".into()));
        let e = put_refused(r("missing", "ivrs", "501"), &to_other);
        assert_eq!(e.to_string(), "fallback.target: IVR 501 does not exist");
        let e = put_refused(r("missing", "ivrs", "500"), &i);
        assert_eq!(e.to_string(), "IVR 500 does not exist");
        let e = put_refused(r("missing", "audio_files", "ab"), &i);
        assert!(e.to_string().starts_with("greeting: audio file ab"), "{e}");
        let invalid = storage::Response::Invalid {
            table: "ivrs".into(),
            key: "500".into(),
            reason: "greeting: audio file ab is a recording, not a prompt".into(),
        };
        let e = put_refused(invalid, &i);
        assert!(matches!(e, ApiError::BadRequest(_)));
        assert!(e.to_string().starts_with("greeting:"), "{e}");

        let e = delete_refused(r("conflict", "inbound_routes", "main"), "500");
        assert!(matches!(e, ApiError::Conflict(_)));
        assert_eq!(
            e.to_string(),
            "inbound route main still sends calls to IVR 500"
        );
        let e = delete_refused(r("conflict", "time_conditions", "night"), "500");
        assert_eq!(
            e.to_string(),
            "time condition night still sends calls to IVR 500"
        );
        let e = delete_refused(r("conflict", "ivrs", "501"), "500");
        assert_eq!(e.to_string(), "IVR 501 still sends calls to IVR 500");
        let e = delete_refused(r("missing", "ivrs", "500"), "500");
        assert!(matches!(e, ApiError::NotFound(_)));
    }
}
