//! `/api/v1/extensions/{number}/recording`: whether an extension's calls are recorded.
//!
//! An extension without a policy is never recorded; deleting the extension deletes its policy. The
//! state machine checks, in log order, that the extension exists; the handlers here check the shape
//! of a request and word the refusal.

use axum::Json;
use axum::extract::{Path, State};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use storage::Command;
use storage::model::UnixMillis;
use storage::recording::{RecordingMode, RecordingPolicy};

use super::AppState;
use super::access::Principal;
use super::crud::propose_answer;
use super::error::ApiError;
use super::extensions::validate_number;
use super::features::existing_extension;
use super::json::JsonBody;
use crate::time::now_millis;

/// An extension's policy as the API shows it: `updated_at` only once one was set.
#[derive(Debug, Serialize)]
pub(crate) struct PolicyView {
    extension: String,
    mode: RecordingMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<UnixMillis>,
}

impl PolicyView {
    fn of(policy: Option<RecordingPolicy>, number: &str) -> Self {
        match policy {
            Some(p) => Self {
                extension: p.extension,
                mode: p.mode,
                updated_at: Some(p.updated_at),
            },
            None => Self {
                extension: number.to_owned(),
                mode: RecordingMode::Never,
                updated_at: None,
            },
        }
    }
}

/// A policy as `PUT` takes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyBody {
    /// The GET answer's; accepted (an answer read, edited and written back is a valid body) but it
    /// must be the URL's.
    #[serde(default)]
    extension: Option<String>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<IgnoredAny>,
    /// Text rather than [`RecordingMode`], so that an unknown mode is refused naming the modes.
    #[serde(default)]
    mode: Option<String>,
}

fn parse_mode(mode: &str) -> Result<RecordingMode, ApiError> {
    RecordingMode::parse(mode).ok_or_else(|| {
        let names: Vec<_> = RecordingMode::ALL.iter().map(|m| m.as_str()).collect();
        ApiError::invalid("mode", format!("must be one of {}", names.join(", ")))
    })
}

/// Extension `number`'s policy as `body` describes it, checked.
fn policy_from_body(
    number: &str,
    body: PolicyBody,
    now: UnixMillis,
) -> Result<RecordingPolicy, ApiError> {
    if let Some(e) = body.extension.as_deref().filter(|e| *e != number) {
        return Err(ApiError::invalid(
            "extension",
            format!("{e} differs from the number in the URL ({number})"),
        ));
    }
    let mode = body
        .mode
        .as_deref()
        .ok_or_else(|| ApiError::invalid("mode", "required"))
        .and_then(parse_mode)?;
    Ok(RecordingPolicy {
        extension: number.to_owned(),
        mode,
        updated_at: now,
    })
}

/// Extension `number`'s recording policy (`never` when it never set one).
pub(crate) async fn get_policy(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
) -> Result<Json<PolicyView>, ApiError> {
    who.require(who.grants.extensions)?;
    validate_number(&number)?;
    existing_extension(&state, &number).await?;
    let policy = state.cluster.reader().get::<RecordingPolicy>(&number)?;
    Ok(Json(PolicyView::of(policy, &number)))
}

/// Sets extension `number`'s recording policy.
pub(crate) async fn put_policy(
    State(state): State<AppState>,
    who: Principal,
    Path(number): Path<String>,
    JsonBody(body): JsonBody<PolicyBody>,
) -> Result<Json<PolicyView>, ApiError> {
    who.require(who.grants.extensions)?;
    validate_number(&number)?;
    existing_extension(&state, &number).await?;
    let policy = policy_from_body(&number, body, now_millis())?;
    match propose_answer(&state, Command::PutRecordingPolicy(policy.clone())).await? {
        storage::Response::Ok => {}
        // The extension was deleted since it was read.
        storage::Response::NotFound { .. } => {
            return Err(ApiError::NotFound(format!(
                "extension {number} does not exist"
            )));
        }
        other => return Err(other.into()),
    }
    tracing::info!(extension = %number, by = %who.username, mode = policy.mode.as_str(), "recording policy changed");
    Ok(Json(PolicyView::of(Some(policy), &number)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: serde_json::Value) -> Result<PolicyBody, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn a_body_gives_a_mode_and_the_urls_number() {
        let p = policy_from_body(
            "1001",
            body(serde_json::json!({"mode": "always"})).unwrap(),
            5,
        )
        .unwrap();
        assert_eq!(
            p,
            RecordingPolicy {
                extension: "1001".into(),
                mode: RecordingMode::Always,
                updated_at: 5
            }
        );
        // A GET answer written back.
        let answer = serde_json::json!({"extension": "1001", "mode": "never", "updated_at": 3});
        let p = policy_from_body("1001", body(answer).unwrap(), 5).unwrap();
        assert_eq!(p.mode, RecordingMode::Never);
    }

    #[test]
    fn a_bad_body_names_its_field_and_an_unknown_mode_lists_the_modes() {
        let refused = |v: serde_json::Value| {
            policy_from_body("1001", body(v).unwrap(), 5)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused(serde_json::json!({"mode": "sometimes"})),
            "mode: must be one of never, always, on_demand"
        );
        assert_eq!(refused(serde_json::json!({})), "mode: required");
        assert!(
            refused(serde_json::json!({"extension": "1002", "mode": "always"}))
                .starts_with("extension: ")
        );
        assert!(body(serde_json::json!({"mode": "always", "record": true})).is_err());
    }

    #[test]
    fn an_extension_without_a_policy_shows_never_without_a_time() {
        let v = serde_json::to_value(PolicyView::of(None, "1001")).unwrap();
        assert_eq!(v, serde_json::json!({"extension": "1001", "mode": "never"}));
    }
}
