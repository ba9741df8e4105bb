//! Reading through the API: a page calls the API's own handler function in-process (same grants,
//! same validation, same paging) and reads its answer as the JSON a script would get, into the
//! page's own types. The answer is one page of data, so the round trip through JSON costs little,
//! and the page depends on the API's documented answer rather than on its internal types.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::FutureExt as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::Problem;

/// Largest answer read. A page's answer is one page of a table; this only bounds memory.
const MAX_ANSWER: usize = 32 * 1024 * 1024;

/// The API's error answer: `{"error": code, "message": text}`.
#[derive(Debug, Deserialize)]
pub(super) struct ErrorBody {
    pub error: String,
    #[serde(default)]
    pub message: String,
}

/// The answer of a handler (`Result<Json<_>, ApiError>` or a response) as `T`; an error answer as
/// the [`Problem`] it describes.
pub(super) async fn answer<T: DeserializeOwned>(out: impl IntoResponse) -> Result<T, Problem> {
    let resp = out.into_response();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), MAX_ANSWER)
        .await
        .map_err(|e| Problem::internal(format!("reading the API's answer: {e}")))?;
    if !status.is_success() {
        return Err(problem(status, &body));
    }
    serde_json::from_slice(&body)
        .map_err(|e| Problem::internal(format!("unexpected answer from the API: {e}")))
}

/// The body of a response built in memory (an error answer), without waiting.
pub(super) fn body_now(resp: Response) -> Option<Bytes> {
    axum::body::to_bytes(resp.into_body(), MAX_ANSWER)
        .now_or_never()?
        .ok()
}

/// The problem an error answer describes.
pub(super) fn problem(status: StatusCode, body: &[u8]) -> Problem {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => Problem {
            status,
            code: b.error,
            message: b.message,
        },
        Err(_) => Problem {
            status,
            code: match status {
                StatusCode::UNAUTHORIZED => "unauthorized",
                StatusCode::FORBIDDEN => "forbidden",
                StatusCode::NOT_FOUND => "not_found",
                _ => "error",
            }
            .to_owned(),
            message: status.canonical_reason().unwrap_or("error").to_owned(),
        },
    }
}
