//! `/api/v1/trunks/{name}/recording`, `/api/v1/routes/inbound/{name}/recording` and
//! `/api/v1/routes/outbound/{name}/recording`: whether the calls crossing a trunk or taking a route
//! are recorded (grant `routing`, like the trunks and routes themselves).
//!
//! A trunk or route without a policy is never recorded; deleting it deletes its policy. Only
//! `never` and `always` apply here: recording on demand is an extension user's choice. The state
//! machine checks, in log order, that the trunk or route exists; the handlers here check the shape
//! of a request and word the refusal.

use axum::Json;
use axum::extract::{Path, State};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use storage::Command;
use storage::model::UnixMillis;
use storage::recording::RecordingMode;
use storage::recording_routes::{RecordingTarget, RouteRecordingPolicy};
use storage::routing::{InboundRoute, OutboundRoute, Trunk};

use super::AppState;
use super::access::Principal;
use super::crud::{self, Resource, propose_answer};
use super::error::ApiError;
use super::json::JsonBody;
use crate::time::now_millis;

/// The modes a trunk or route may have.
pub(crate) const ROUTE_MODES: [RecordingMode; 2] = [RecordingMode::Never, RecordingMode::Always];

/// A policy as the API shows it: `updated_at` only once one was set.
#[derive(Debug, Serialize)]
pub(crate) struct RouteRecordingView {
    mode: RecordingMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<UnixMillis>,
}

impl From<Option<RouteRecordingPolicy>> for RouteRecordingView {
    fn from(policy: Option<RouteRecordingPolicy>) -> Self {
        match policy {
            Some(p) => Self {
                mode: p.mode,
                updated_at: Some(p.updated_at),
            },
            None => Self {
                mode: RecordingMode::Never,
                updated_at: None,
            },
        }
    }
}

/// A policy as `PUT` takes it: the GET answer is a valid body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteRecordingBody {
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<IgnoredAny>,
    /// Text rather than [`RecordingMode`], so that an unknown mode is refused naming the modes.
    #[serde(default)]
    mode: Option<String>,
}

/// A mode a trunk or route may have; 400 naming the allowed ones otherwise.
fn parse_mode(mode: &str) -> Result<RecordingMode, ApiError> {
    RecordingMode::parse(mode)
        .filter(|m| ROUTE_MODES.contains(m))
        .ok_or_else(|| {
            let names: Vec<_> = ROUTE_MODES.iter().map(|m| m.as_str()).collect();
            ApiError::invalid("mode", format!("must be one of {}", names.join(", ")))
        })
}

/// `target`'s policy as `body` describes it, checked.
fn policy_from_body(
    target: RecordingTarget,
    body: RouteRecordingBody,
    now: UnixMillis,
) -> Result<RouteRecordingPolicy, ApiError> {
    let mode = body
        .mode
        .as_deref()
        .ok_or_else(|| ApiError::invalid("mode", "required"))
        .and_then(parse_mode)?;
    Ok(RouteRecordingPolicy {
        target,
        mode,
        updated_at: now,
    })
}

/// The policy of `R` `name` (`never` when it never set one); 404 without the trunk or route.
async fn get_for<R: Resource>(
    state: &AppState,
    who: &Principal,
    target: RecordingTarget,
) -> Result<Json<RouteRecordingView>, ApiError> {
    who.require(who.grants.routing)?;
    let _: R = crud::read(state, target.name()).await?;
    let policy = state
        .cluster
        .reader()
        .get::<RouteRecordingPolicy>(&target.key())?;
    Ok(Json(policy.into()))
}

/// Sets the policy of `R` `name`; 404 without the trunk or route, 400 for a bad body.
async fn put_for<R: Resource>(
    state: &AppState,
    who: &Principal,
    target: RecordingTarget,
    body: RouteRecordingBody,
) -> Result<Json<RouteRecordingView>, ApiError> {
    who.require(who.grants.routing)?;
    let _: R = crud::read(state, target.name()).await?;
    let policy = policy_from_body(target, body, now_millis())?;
    let cmd = Command::PutRouteRecordingPolicy(policy.clone());
    match propose_answer(state, cmd).await? {
        storage::Response::Ok => {}
        // Deleted since it was read.
        storage::Response::NotFound { .. } => {
            return Err(ApiError::NotFound(format!(
                "{} does not exist",
                policy.target
            )));
        }
        other => return Err(other.into()),
    }
    tracing::info!(target = %policy.target, by = %who.username, mode = policy.mode.as_str(), "recording policy changed");
    Ok(Json(Some(policy).into()))
}

pub(crate) async fn get_trunk(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Json<RouteRecordingView>, ApiError> {
    get_for::<Trunk>(&state, &who, RecordingTarget::Trunk(name)).await
}

pub(crate) async fn put_trunk(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<RouteRecordingBody>,
) -> Result<Json<RouteRecordingView>, ApiError> {
    put_for::<Trunk>(&state, &who, RecordingTarget::Trunk(name), body).await
}

pub(crate) async fn get_inbound(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Json<RouteRecordingView>, ApiError> {
    get_for::<InboundRoute>(&state, &who, RecordingTarget::InboundRoute(name)).await
}

pub(crate) async fn put_inbound(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<RouteRecordingBody>,
) -> Result<Json<RouteRecordingView>, ApiError> {
    put_for::<InboundRoute>(&state, &who, RecordingTarget::InboundRoute(name), body).await
}

pub(crate) async fn get_outbound(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Json<RouteRecordingView>, ApiError> {
    get_for::<OutboundRoute>(&state, &who, RecordingTarget::OutboundRoute(name)).await
}

pub(crate) async fn put_outbound(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<RouteRecordingBody>,
) -> Result<Json<RouteRecordingView>, ApiError> {
    put_for::<OutboundRoute>(&state, &who, RecordingTarget::OutboundRoute(name), body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: serde_json::Value) -> Result<RouteRecordingBody, serde_json::Error> {
        serde_json::from_value(v)
    }

    fn trunk() -> RecordingTarget {
        RecordingTarget::Trunk("a".into())
    }

    #[test]
    fn a_body_gives_a_mode_for_the_urls_target() {
        let p = policy_from_body(
            trunk(),
            body(serde_json::json!({"mode": "always"})).unwrap(),
            5,
        )
        .unwrap();
        assert_eq!(
            p,
            RouteRecordingPolicy {
                target: trunk(),
                mode: RecordingMode::Always,
                updated_at: 5
            }
        );
        // A GET answer written back.
        let answer = serde_json::json!({"mode": "never", "updated_at": 3});
        let p = policy_from_body(trunk(), body(answer).unwrap(), 5).unwrap();
        assert_eq!(p.mode, RecordingMode::Never);
    }

    #[test]
    fn only_never_and_always_are_modes_of_a_trunk_or_route() {
        let refused = |v: serde_json::Value| {
            policy_from_body(trunk(), body(v).unwrap(), 5)
                .unwrap_err()
                .to_string()
        };
        for bad in ["on_demand", "Always", "", "sometimes"] {
            assert_eq!(
                refused(serde_json::json!({ "mode": bad })),
                "mode: must be one of never, always",
                "{bad:?}"
            );
        }
        assert_eq!(refused(serde_json::json!({})), "mode: required");
        assert!(body(serde_json::json!({"mode": "always", "trunk": "a"})).is_err());
    }

    #[test]
    fn a_target_without_a_policy_shows_never_without_a_time() {
        let v = serde_json::to_value(RouteRecordingView::from(None)).unwrap();
        assert_eq!(v, serde_json::json!({"mode": "never"}));
        let set = RouteRecordingPolicy {
            target: trunk(),
            mode: RecordingMode::Always,
            updated_at: 9,
        };
        let v = serde_json::to_value(RouteRecordingView::from(Some(set))).unwrap();
        assert_eq!(v, serde_json::json!({"mode": "always", "updated_at": 9}));
    }
}
