//! `/api/v1/registrations` and `/api/v1/extensions/{number}/registrations`: where each phone is
//! registered, from which address and transport, with which user agent, until when, through which node.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};

use storage::NodeId;
use storage::model::{Binding, Extension, UnixMillis};

use super::AppState;
use super::access::Principal;
use super::error::ApiError;
use super::extensions::validate_number;
use crate::time::now_millis;

#[derive(Debug, Serialize)]
pub(crate) struct RegistrationView {
    pub extension: String,
    pub contact: String,
    pub source: String,
    pub transport: String,
    pub user_agent: String,
    pub expires_at: UnixMillis,
    /// Seconds left at the time of the answer.
    pub expires_in: u64,
    pub q: Option<f32>,
    pub registered_at: UnixMillis,
    pub node_id: NodeId,
    /// Whether the contact answers OPTIONS; `null` until first checked.
    pub reachable: Option<bool>,
}

impl RegistrationView {
    fn new(b: Binding, now: UnixMillis) -> Self {
        Self {
            expires_in: b.expires_at.saturating_sub(now) / 1000,
            extension: b.aor,
            contact: b.contact,
            source: b.source,
            transport: b.transport,
            user_agent: b.user_agent,
            expires_at: b.expires_at,
            q: b.q.map(|q| f32::from(q) / 1000.0),
            registered_at: b.registered_at,
            node_id: b.node_id,
            reachable: b.reachable,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct ExtensionRegistrations {
    pub extension: String,
    /// `unregistered`; `reachable` when a contact answers OPTIONS; `unreachable` when every contact
    /// was checked and none answers; `registered` while none has been checked yet.
    pub status: &'static str,
    pub registrations: Vec<RegistrationView>,
}

pub(crate) async fn for_extension(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
) -> Result<Json<ExtensionRegistrations>, ApiError> {
    who.require(who.grants.monitor || who.grants.extensions)?;
    validate_number(&number)?;
    state.cluster.linearizable_barrier().await?;
    let reader = state.cluster.reader();
    if reader.get::<Extension>(&number)?.is_none() {
        return Err(ApiError::NotFound(format!(
            "extension {number} does not exist"
        )));
    }
    let now = now_millis();
    let registrations: Vec<RegistrationView> = reader
        .scan_prefix::<Binding>(&Binding::aor_prefix(&number))?
        .into_iter()
        .filter(|b| b.expires_at > now)
        .map(|b| RegistrationView::new(b, now))
        .collect();
    let status = if registrations.is_empty() {
        "unregistered"
    } else if registrations.iter().any(|r| r.reachable == Some(true)) {
        "reachable"
    } else if registrations.iter().all(|r| r.reachable == Some(false)) {
        "unreachable"
    } else {
        "registered"
    };
    Ok(Json(ExtensionRegistrations {
        extension: number,
        status,
        registrations,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    #[serde(default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize)]
pub(crate) struct RegistrationList {
    pub total: usize,
    pub items: Vec<RegistrationView>,
}

/// Every live registration in the cluster (up to `limit`, default 1000, at most 10 000).
pub(crate) async fn list(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Json<RegistrationList>, ApiError> {
    who.require(who.grants.monitor || who.grants.extensions)?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be 1 to 10000".into()));
    }
    state.cluster.linearizable_barrier().await?;
    let now = now_millis();
    let live: Vec<Binding> = state
        .cluster
        .reader()
        .list::<Binding>()?
        .into_iter()
        .filter(|b| b.expires_at > now)
        .collect();
    let total = live.len();
    let items = live
        .into_iter()
        .take(limit)
        .map(|b| RegistrationView::new(b, now))
        .collect();
    Ok(Json(RegistrationList { total, items }))
}
