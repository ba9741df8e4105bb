//! API errors: every failure is a status code and a JSON body `{"error": code, "message": text}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use cluster::ClusterError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("this account may not do that")]
    Forbidden,
    /// A state-changing request with a session cookie but without its CSRF token.
    #[error("missing or wrong CSRF token")]
    Csrf,
    /// The session may only change its password until it has.
    #[error("the password must be changed first")]
    PasswordChangeRequired,
    /// Policy asks this admin for a second factor: the session may only enrol one until it has.
    #[error("a second factor (TOTP) must be set up first")]
    TotpEnrolmentRequired,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// The audio store is out of quota or disk space.
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: String,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            Self::Csrf => (StatusCode::FORBIDDEN, "csrf"),
            Self::PasswordChangeRequired => (StatusCode::FORBIDDEN, "password_change_required"),
            Self::TotpEnrolmentRequired => (StatusCode::FORBIDDEN, "totp_enrolment_required"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::InsufficientStorage(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
            }
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(error = %self, "api request failed");
        }
        let mut resp = (
            status,
            Json(Body {
                error: code,
                message: self.to_string(),
            }),
        )
            .into_response();
        if matches!(self, Self::Unauthorized) {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"pbx\", charset=\"UTF-8\""),
            );
        }
        resp
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        match e.http_status() {
            400 => Self::BadRequest(e.to_string()),
            404 => Self::NotFound(e.to_string()),
            409 => Self::Conflict(e.to_string()),
            500 => Self::Internal(e.to_string()),
            _ => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<storage::StorageError> for ApiError {
    fn from(e: storage::StorageError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<storage::Response> for ApiError {
    fn from(r: storage::Response) -> Self {
        match r {
            storage::Response::Conflict { table, key } => {
                Self::Conflict(format!("{} {key} already exists", noun(&table)))
            }
            storage::Response::NotFound { table, key } => {
                Self::NotFound(format!("{} {key} does not exist", noun(&table)))
            }
            // The state machine's own guard: the reason names the field, as a handler's check does.
            storage::Response::Invalid { reason, .. } => Self::BadRequest(reason),
            other => Self::Internal(format!("unexpected answer {other:?}")),
        }
    }
}

fn singular(table: &str) -> &str {
    table.strip_suffix('s').unwrap_or(table)
}

impl ApiError {
    /// A field of the request at fault, and why: `field: reason`, as the other validations word it.
    pub(crate) fn invalid(field: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        Self::BadRequest(format!("{field}: {reason}"))
    }

    /// The state machine's refusal of a put or delete of record `name` of table `own`, in words.
    ///
    /// A conflict in `own` is a duplicate (409 "… already exists"); a conflict elsewhere names the
    /// record that still refers to `name` (409 "trunk a is used by outbound route local"). A
    /// missing record of `own` is a 404; a missing record of a table in `fields` is a name the request
    /// refers to, so a 400 naming the field (`trunks: trunk x does not exist`).
    pub(crate) fn refused(
        r: storage::Response,
        own: &str,
        name: &str,
        fields: &[(&str, &str)],
    ) -> Self {
        match r {
            storage::Response::Conflict { table, key } if table == own => {
                Self::Conflict(format!("{} {key} already exists", noun(&table)))
            }
            storage::Response::Conflict { table, key } => Self::Conflict(format!(
                "{} {name} is used by {} {key}",
                noun(own),
                noun(&table)
            )),
            storage::Response::NotFound { table, key } => {
                match fields.iter().find(|(t, _)| *t == table) {
                    Some((_, field)) => {
                        Self::invalid(field, format!("{} {key} does not exist", noun(&table)))
                    }
                    None => Self::NotFound(format!("{} {key} does not exist", noun(&table))),
                }
            }
            other => other.into(),
        }
    }
}

/// A table's name as a noun in a message: `outbound_routes` → `outbound route`, `ivrs` → `IVR`.
pub(crate) fn noun(table: &str) -> String {
    match table {
        "ivrs" => "IVR".to_owned(),
        _ => singular(table).replace('_', " "),
    }
}
