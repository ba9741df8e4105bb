//! `/api/v1/extensions`: create, read, update and delete phone extensions.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use storage::Command;
use storage::model::{ClusterRecord, Extension, UnixMillis};

use super::AppState;
use super::access::Principal;
use super::crud::propose_answer;
use super::error::ApiError;
use super::json::JsonBody;
use super::paging::{LIMITS, ListQuery, Page, PageRequest};
use crate::credentials;
use crate::policy;
use crate::time::now_millis;

const DEFAULT_GROUP: &str = "internal";

/// An extension as the API shows it: never the secret, except once when the PBX generated it.
#[derive(Debug, Serialize)]
pub(crate) struct ExtensionView {
    pub number: String,
    pub display_name: String,
    pub sip_username: String,
    pub permission_group: String,
    pub enabled: bool,
    pub secret_changed_at: UnixMillis,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    /// Present only in the answer that generated it; it is not stored and cannot be shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_secret: Option<String>,
}

impl From<Extension> for ExtensionView {
    fn from(e: Extension) -> Self {
        Self {
            number: e.number,
            display_name: e.display_name,
            sip_username: e.credentials.username,
            permission_group: e.permission_group,
            enabled: e.enabled,
            secret_changed_at: e.credentials.changed_at,
            created_at: e.created_at,
            updated_at: e.updated_at,
            generated_secret: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateExtension {
    pub number: String,
    pub display_name: String,
    /// SIP secret; generated when absent.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub permission_group: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateExtension {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
    /// Replace the secret with a generated one, returned once in the answer.
    #[serde(default)]
    pub regenerate_secret: bool,
    #[serde(default)]
    pub permission_group: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExtensionQuery {
    #[serde(default)]
    pub after: Option<String>,
    /// Text, so that a bad one gets the paging's own message.
    #[serde(default)]
    pub limit: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ExtensionPage {
    pub items: Vec<ExtensionView>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// An extension number, which is also the extension's key and so the list's cursor.
fn is_number(s: &str) -> bool {
    (2..=15).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

pub(crate) fn validate_number(number: &str) -> Result<(), ApiError> {
    if !is_number(number) {
        return Err(ApiError::BadRequest("number must be 2 to 15 digits".into()));
    }
    Ok(())
}

pub(crate) fn validate_display_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "display_name must be 1 to 64 printable characters".into(),
        ));
    }
    Ok(())
}

pub(crate) fn validate_group(group: &str) -> Result<(), ApiError> {
    let ok = (1..=32).contains(&group.len())
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(ApiError::BadRequest(
            "permission_group must be 1 to 32 letters, digits, '-' or '_'".into(),
        ));
    }
    Ok(())
}

/// Checks a chosen secret against the password policy for this extension, or generates one that passes it;
/// returns (secret, generated?).
pub(crate) fn choose_secret(
    number: &str,
    display_name: &str,
    realm: &str,
    given: Option<String>,
    force_generate: bool,
) -> Result<(String, bool), ApiError> {
    let names = [number];
    let hints = [display_name, realm];
    let owner = policy::Owner {
        names: &names,
        hints: &hints,
    };
    match given {
        Some(_) if force_generate => Err(ApiError::BadRequest(
            "give either secret or regenerate_secret, not both".into(),
        )),
        Some(s) => {
            policy::check_password_for(&s, &owner)
                .map_err(|e| ApiError::BadRequest(format!("secret {e}")))?;
            Ok((s, false))
        }
        // A generated secret passes the policy for anyone; the rare draw (about one in a million) that holds
        // this extension's number is drawn again.
        None => std::iter::repeat_with(credentials::generate_secret)
            .take(100)
            .find(|s| policy::check_password_for(s, &owner).is_ok())
            .map(|s| (s, true))
            .ok_or_else(|| {
                ApiError::Internal("no generated secret passed the password policy".into())
            }),
    }
}

/// [`choose_secret`] on the blocking pool: zxcvbn may spend a few hundred milliseconds on a crafted secret.
async fn choose_secret_blocking(
    number: String,
    display_name: String,
    realm: String,
    given: Option<String>,
    force_generate: bool,
) -> Result<(String, bool), ApiError> {
    tokio::task::spawn_blocking(move || {
        choose_secret(&number, &display_name, &realm, given, force_generate)
    })
    .await
    .map_err(|_| ApiError::Internal("the password check did not finish".into()))?
}

fn realm(state: &AppState) -> Result<String, ApiError> {
    let rec = state
        .cluster
        .reader()
        .get::<ClusterRecord>(ClusterRecord::KEY)?
        .ok_or_else(|| ApiError::Unavailable("cluster not initialised".into()))?;
    Ok(rec.realm)
}

/// The state machine's refusal of creating an extension, in words: its number may be a ring
/// group's or an IVR's (one number, one thing to call).
pub(super) fn create_refused(r: storage::Response) -> ApiError {
    match r {
        storage::Response::Conflict { table, key } if table == "ring_groups" => {
            ApiError::Conflict(format!("{key} is a ring group's number"))
        }
        storage::Response::Conflict { table, key } if table == "ivrs" => {
            ApiError::Conflict(format!("{key} is an IVR's number"))
        }
        storage::Response::Conflict { table, key } if table == "conference_rooms" => {
            ApiError::Conflict(format!("{key} is a conference room's number"))
        }
        other => other.into(),
    }
}

pub(crate) async fn create(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(req): JsonBody<CreateExtension>,
) -> Result<(StatusCode, Json<ExtensionView>), ApiError> {
    who.require(who.grants.extensions)?;
    validate_number(&req.number)?;
    validate_display_name(&req.display_name)?;
    let group = req
        .permission_group
        .unwrap_or_else(|| DEFAULT_GROUP.to_owned());
    validate_group(&group)?;
    let realm = realm(&state)?;
    let (secret, generated) = choose_secret_blocking(
        req.number.clone(),
        req.display_name.clone(),
        realm.clone(),
        req.secret,
        false,
    )
    .await?;
    let now = now_millis();
    let ext = Extension {
        credentials: credentials::sip_credentials(&req.number, &realm, &secret, now),
        number: req.number,
        display_name: req.display_name,
        permission_group: group,
        enabled: req.enabled.unwrap_or(true),
        created_at: now,
        updated_at: now,
    };
    match propose_answer(&state, Command::CreateExtension(ext.clone())).await? {
        storage::Response::Ok => {}
        refused => return Err(create_refused(refused)),
    }
    tracing::info!(extension = %ext.number, "extension created");
    let mut view = ExtensionView::from(ext);
    view.generated_secret = generated.then_some(secret);
    Ok((StatusCode::CREATED, Json(view)))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
) -> Result<Json<ExtensionView>, ApiError> {
    who.require(who.grants.extensions || who.grants.monitor)?;
    validate_number(&number)?;
    state.cluster.linearizable_barrier().await?;
    let ext = state
        .cluster
        .reader()
        .get::<Extension>(&number)?
        .ok_or_else(|| ApiError::NotFound(format!("extension {number} does not exist")))?;
    Ok(Json(ext.into()))
}

/// Extensions in number order, paged by [`super::paging`] (`after` is a number).
pub(crate) async fn list(
    State(state): State<AppState>,
    who: Principal,
    ListQuery(q): ListQuery<ExtensionQuery>,
) -> Result<Json<ExtensionPage>, ApiError> {
    who.require(who.grants.extensions || who.grants.monitor)?;
    let page = PageRequest::parse(q.after, q.limit.as_deref(), LIMITS, is_number)?;
    state.cluster.linearizable_barrier().await?;
    let rows = state
        .cluster
        .reader()
        .list_page::<Extension>(page.after.as_deref(), page.limit + 1)?;
    let found = Page::from_overfetch(rows, page.limit, |e| e.number.clone());
    Ok(Json(ExtensionPage {
        items: found.items.into_iter().map(Into::into).collect(),
        next: found.next,
    }))
}

pub(crate) async fn update(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
    JsonBody(req): JsonBody<UpdateExtension>,
) -> Result<Json<ExtensionView>, ApiError> {
    who.require(who.grants.extensions)?;
    validate_number(&number)?;
    state.cluster.linearizable_barrier().await?;
    let mut ext = state
        .cluster
        .reader()
        .get::<Extension>(&number)?
        .ok_or_else(|| ApiError::NotFound(format!("extension {number} does not exist")))?;
    if let Some(name) = req.display_name {
        validate_display_name(&name)?;
        ext.display_name = name;
    }
    if let Some(group) = req.permission_group {
        validate_group(&group)?;
        ext.permission_group = group;
    }
    if let Some(enabled) = req.enabled {
        ext.enabled = enabled;
    }
    let now = now_millis();
    let mut generated_secret = None;
    if req.secret.is_some() || req.regenerate_secret {
        let realm = realm(&state)?;
        let (secret, generated) = choose_secret_blocking(
            number.clone(),
            ext.display_name.clone(),
            realm.clone(),
            req.secret,
            req.regenerate_secret,
        )
        .await?;
        ext.credentials = credentials::sip_credentials(&number, &realm, &secret, now);
        generated_secret = generated.then_some(secret);
    }
    ext.updated_at = now;
    state
        .propose_checked(Command::UpdateExtension(ext.clone()))
        .await?;
    tracing::info!(extension = %number, "extension updated");
    let mut view = ExtensionView::from(ext);
    view.generated_secret = generated_secret;
    Ok(Json(view))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
) -> Result<StatusCode, ApiError> {
    who.require(who.grants.extensions)?;
    validate_number(&number)?;
    state
        .propose_checked(Command::DeleteExtension {
            number: number.clone(),
        })
        .await?;
    tracing::info!(extension = %number, "extension deleted");
    Ok(StatusCode::NO_CONTENT)
}
