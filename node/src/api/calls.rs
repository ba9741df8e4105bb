//! `/api/v1/calls` and `/api/v1/calls/{id}`: the calls in progress, from the replicated table of
//! active calls, whichever node carries them; `DELETE /api/v1/calls/{id}` hangs one up.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use storage::model::{ActiveCall, UnixMillis};
use storage::web::HangupRequest;
use storage::{Command, NodeId};

use super::AppState;
use super::access::Principal;
use super::error::ApiError;
use crate::time::now_millis;

/// Longest call id the API looks up.
const MAX_ID_LEN: usize = 256;
/// How long a hang-up waits for the call to end before answering `202 Accepted`.
const HANG_UP_WAIT: Duration = Duration::from_secs(5);

/// A call in progress as the API shows it. Times are Unix milliseconds, like every other endpoint
/// (`registered_at`, `expires_at`, `created_at`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CallView {
    pub id: String,
    /// The calling extension.
    pub caller: String,
    /// The called extension.
    pub callee: String,
    /// The node carrying the call's signalling and media.
    pub node_id: NodeId,
    pub started_at: UnixMillis,
    pub answered_at: UnixMillis,
    /// Whole seconds since the answer, at the time of the response.
    pub duration_secs: u64,
    /// Number of relayed media streams (SDP `m=` lines).
    pub media_streams: usize,
}

impl CallView {
    pub(crate) fn new(c: ActiveCall, now: UnixMillis) -> Self {
        Self {
            duration_secs: now.saturating_sub(c.answered_at) / 1000,
            id: c.id,
            caller: c.caller.extension,
            callee: c.callee.extension,
            node_id: c.node_id,
            started_at: c.started_at,
            answered_at: c.answered_at,
            media_streams: c.streams.len(),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct CallList {
    pub calls: Vec<CallView>,
    pub count: usize,
}

/// Every call in progress in the cluster, oldest first:
/// `{"calls": [{id, caller, callee, node_id, started_at, answered_at, duration_secs, media_streams}],
/// "count": n}`. `started_at` and `answered_at` are Unix milliseconds, as everywhere in this API;
/// `duration_secs` is the talk time so far in whole seconds.
pub(crate) async fn list(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<CallList>, ApiError> {
    who.require(who.grants.monitor)?;
    state.cluster.linearizable_barrier().await?;
    let reader = state.cluster.reader().clone();
    // The table holds one row per call in progress: small, but a full scan all the same.
    let mut active = tokio::task::spawn_blocking(move || reader.list::<ActiveCall>())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    active.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
    let now = now_millis();
    let calls: Vec<CallView> = active.into_iter().map(|c| CallView::new(c, now)).collect();
    Ok(Json(CallList {
        count: calls.len(),
        calls,
    }))
}

/// One call in progress, shaped as an element of [`list`]'s `calls`; 404 when no such call is up.
pub(crate) async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<CallView>, ApiError> {
    who.require(who.grants.monitor)?;
    validate_id(&id)?;
    state.cluster.linearizable_barrier().await?;
    let call = state
        .cluster
        .reader()
        .get::<ActiveCall>(&id)?
        .ok_or_else(|| ApiError::NotFound(format!("call {id} does not exist")))?;
    Ok(Json(CallView::new(call, now_millis())))
}

/// Hangs up a call in progress, whichever node carries it: `204 No Content` once it has ended, `202`
/// with `{"status": "requested"}` when it is still up after [`HANG_UP_WAIT`] (the node carrying it
/// ends it when it can), `404` when no such call is up.
pub(crate) async fn hang_up(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    who.require(who.grants.hang_up)?;
    validate_id(&id)?;
    let request = HangupRequest {
        call_id: id.clone(),
        requested_by: who.username,
        requested_at: now_millis(),
    };
    match state.propose_checked(Command::RequestHangup(request)).await {
        Ok(()) => {}
        Err(ApiError::NotFound(_)) => {
            return Err(ApiError::NotFound(format!("call {id} is not in progress")));
        }
        Err(e) => return Err(e),
    }
    if ended_within(&state, &id, HANG_UP_WAIT).await {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        let body = Json(serde_json::json!({ "status": "requested" }));
        Ok((StatusCode::ACCEPTED, body).into_response())
    }
}

/// Whether call `id`'s record is gone from this node's replica within `wait`: woken by every applied
/// entry, after catching up with the request itself (`false` when the cluster does not answer).
async fn ended_within(state: &AppState, id: &str, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    let barrier = state.cluster.linearizable_barrier();
    match tokio::time::timeout_at(deadline, barrier).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(call = %id, error = %e, "not caught up after a hang-up request");
            return false;
        }
        Err(_) => return false,
    }
    let reader = state.cluster.reader();
    let mut applied = reader.watch_applied();
    loop {
        applied.borrow_and_update();
        match reader.get::<ActiveCall>(id) {
            Ok(None) => return true,
            Ok(Some(_)) => {}
            Err(e) => {
                tracing::warn!(call = %id, error = %e, "reading a call record failed");
                return false;
            }
        }
        match tokio::time::timeout_at(deadline, applied.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}

fn validate_id(id: &str) -> Result<(), ApiError> {
    if !(1..=MAX_ID_LEN).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadRequest(format!(
            "call id must be 1 to {MAX_ID_LEN} visible ASCII characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use storage::model::{DialogLeg, MediaStream};

    use super::*;

    fn leg(extension: &str) -> DialogLeg {
        DialogLeg {
            extension: extension.into(),
            call_id: format!("cid-{extension}"),
            local_tag: "lt".into(),
            remote_tag: "rt".into(),
            local_cseq: 1,
            remote_cseq: 1,
            local_uri: "<sip:pbx@example.com>".into(),
            remote_uri: format!("<sip:{extension}@example.com>"),
            remote_target: format!("sip:{extension}@192.0.2.1"),
            route_set: Vec::new(),
            local_contact: "<sip:pbx@192.0.2.100>".into(),
            peer: "192.0.2.1:5060".into(),
            transport: "udp".into(),
            remote_sdp: String::new(),
        }
    }

    #[test]
    fn view_counts_streams_and_whole_seconds_of_talk() {
        let stream = MediaStream {
            caller_port: 20000,
            callee_port: 20002,
            caller_latched: None,
            callee_latched: None,
        };
        let call = ActiveCall {
            id: "c1".into(),
            node_id: 2,
            caller: leg("1001"),
            callee: leg("1002"),
            media_addr: "192.0.2.100".into(),
            streams: vec![stream.clone(), stream],
            started_at: 1_000,
            answered_at: 5_000,
            updated_at: 5_000,
        };
        let v = CallView::new(call.clone(), 17_999);
        assert_eq!(
            (v.caller.as_str(), v.callee.as_str(), v.node_id),
            ("1001", "1002", 2)
        );
        assert_eq!(v.duration_secs, 12, "12.999 s rounds down");
        assert_eq!(v.media_streams, 2);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["started_at"], 1_000);
        assert_eq!(json["answered_at"], 5_000);
        // A clock behind the answering node's gives zero, not a wrap-around.
        assert_eq!(CallView::new(call, 4_000).duration_secs, 0);
    }

    #[test]
    fn call_ids_are_bounded_and_visible() {
        assert!(validate_id("a84f-1@pbx").is_ok());
        for bad in [
            String::new(),
            "a b".into(),
            "x\u{0}".into(),
            "é".into(),
            "x".repeat(257),
        ] {
            assert!(validate_id(&bad).is_err(), "{bad:?}");
        }
    }
}
