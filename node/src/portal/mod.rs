//! The web portal: server-rendered pages on every node's HTTPS API listener, beside `/api/v1`.
//!
//! # How it is built, and why
//!
//! - **Pages are rendered on the server with [maud]**: templates are Rust, checked by the compiler,
//!   with no template files to ship or load, and every `(value)` interpolation is HTML-escaped unless
//!   wrapped in `PreEscaped` — which the portal never does with anything a user typed. A display
//!   name `<script>alert(1)</script>` shows as that text. A page is one function from data to
//!   [`maud::Markup`], so it is unit-tested without a server.
//! - **The portal never writes state itself.** Every change is a `fetch` from `portal.js` to the JSON
//!   API (`/api/v1/...`), with the session's CSRF token, so what the portal can do, a script can do,
//!   and the API's checks (grants, validation, audit) are the only ones. Pages *read* through the
//!   API's own handler functions called in-process ([`api`]) or through the replicated reader, always
//!   one page of a table at a time ([`extensions`], [`cdrs`], [`audio`]): 10 000 extensions or 100 000 CDRs
//!   cost the same as ten.
//! - **One small plain-JavaScript file and one CSS file**, compiled into the binary with
//!   `include_str!` and served from `/assets/` with a short public cache lifetime. No framework, no
//!   build step, no third-party code. The API's `Content-Security-Policy` (`script-src 'self';
//!   style-src 'self'`) therefore holds for every page: there is no inline script, no `style`
//!   attribute, no `on…=` handler anywhere; behaviour hangs off `data-*` attributes that
//!   `portal.js` picks up, and all styling is CSS classes. An injected `<script>` would not run even
//!   if escaping failed.
//! - **Sessions are the API's**: the cookie the API sets at sign-in, checked by its session layer. A
//!   page answers an expired session with a redirect to `/login?next=…`, a session that must change
//!   its password or enrol a second factor with a redirect to that page, and a grant the account
//!   lacks with a 403 page. The navigation shows only what the account's grants allow, but that is
//!   cosmetic: the API enforces.

mod account;
mod admin;
mod api;
mod audio;
mod backups;
mod cdrs;
mod contacts;
mod devices;
mod extensions;
mod features;
mod layout;
mod monitor;
mod routing;
mod security;
mod setup;
mod voicemail;

use std::future::Future;
use std::pin::Pin;

use axum::Router;
use axum::extract::{FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::de::DeserializeOwned;

use crate::api::{ApiError, AppState, Principal};

/// The portal's routes (merged into the API router, which adds the session and security layers).
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/assets/portal.js", get(script))
        .route("/assets/portal.css", get(stylesheet))
        .route("/login", get(account::login))
        .route("/account/password", get(account::password))
        .route("/account/totp", get(account::totp))
        .route("/me", get(account::me))
        .route("/me/contacts", get(contacts::mine))
        .route("/contacts", get(contacts::page))
        .route("/", get(monitor::dashboard))
        .route("/cluster", get(monitor::cluster))
        .route("/extensions", get(extensions::page))
        .route("/devices", get(devices::page))
        .route("/ring-groups", get(features::page))
        .route("/cdrs", get(cdrs::page))
        .route("/audio", get(audio::page))
        .route("/security", get(security::page))
        .route("/audit", get(security::audit))
        .route("/events", get(security::events))
        .route("/trunks", get(routing::trunks))
        .route("/routes", get(routing::routes))
        .route("/accounts", get(admin::accounts))
        .route("/settings/web", get(admin::web_settings))
        .route("/backups", get(backups::page))
        .route("/setup", get(setup::page))
}

/// The router's fallback: `api` (the API's JSON 404) under `/api/`, the portal's 404 page elsewhere.
pub(crate) fn fallback<F, Fut, R>(
    api: F,
) -> impl Fn(Request) -> Pin<Box<dyn Future<Output = Response> + Send>> + Clone + Send + Sync + 'static
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoResponse,
{
    move |req: Request| {
        let api = api.clone();
        Box::pin(async move {
            let path = req.uri().path();
            if path == "/api" || path.starts_with("/api/") || path == "/metrics" {
                return api().await.into_response();
            }
            let who = req.extensions().get::<Principal>().cloned();
            layout::not_found(who.as_ref())
        })
    }
}

const SCRIPT: &str = include_str!("assets/portal.js");
const STYLESHEET: &str = include_str!("assets/portal.css");
/// Assets change only with the binary; a short lifetime lets an upgrade show within minutes.
const ASSET_CACHE: &str = "public, max-age=300";

async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

async fn stylesheet() -> Response {
    asset(STYLESHEET, "text/css; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(ASSET_CACHE));
    resp
}

/// A signed-in page request: the account (checked by the API's own extractor, so the same rules
/// apply) and the path it asked for.
pub(crate) struct Ctx {
    pub who: Principal,
}

impl Ctx {
    /// A 403 page unless `allowed`.
    pub(crate) fn require(&self, allowed: bool) -> Result<(), Problem> {
        if allowed {
            Ok(())
        } else {
            Err(ApiError::Forbidden.into())
        }
    }
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let here = here(parts);
        match Principal::from_request_parts(parts, state).await {
            Ok(who) => Ok(Self { who }),
            Err(e) => Err(deny(e, &here)),
        }
    }
}

/// The session's account even while it must change its password or enrol a second factor: what
/// the account pages (`/account/password`, `/account/totp`) run with.
pub(crate) struct Restricted {
    pub who: Principal,
}

impl FromRequestParts<AppState> for Restricted {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Response> {
        match parts.extensions.get::<Principal>() {
            Some(p) if p.session.is_some() => Ok(Self { who: p.clone() }),
            _ => Err(deny(ApiError::Unauthorized, &here(parts))),
        }
    }
}

/// A page's query string as `T`; anything it cannot read (an unknown or malformed parameter) is
/// ignored and the defaults apply, as a page should not fail on a hand-edited address.
pub(crate) struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequestParts<S> for Params<T> {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            Query::<T>::try_from_uri(&parts.uri)
                .map(|Query(q)| q)
                .unwrap_or_default(),
        ))
    }
}

/// An empty parameter as absent.
pub(crate) fn given(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn here(parts: &Parts) -> String {
    parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned())
}

/// What a page answers when the API refuses the account.
fn deny(e: ApiError, here: &str) -> Response {
    match e {
        ApiError::Unauthorized => see_other(&format!("/login?next={}", enc(here))),
        ApiError::PasswordChangeRequired => see_other("/account/password"),
        ApiError::TotpEnrolmentRequired => see_other("/account/totp"),
        other => Problem::from(other).into_response(),
    }
}

pub(crate) fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Why a page could not be shown, as the API said it: its status, code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl From<ApiError> for Problem {
    fn from(e: ApiError) -> Self {
        // The API's error answer is built in memory, so its body is ready without waiting.
        let resp = e.into_response();
        let status = resp.status();
        api::problem(status, &api::body_now(resp).unwrap_or_default())
    }
}

impl Problem {
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal".into(),
            message: message.into(),
        }
    }
}

impl From<storage::StorageError> for Problem {
    fn from(e: storage::StorageError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        match self.code.as_str() {
            "unauthorized" => see_other("/login"),
            "password_change_required" => see_other("/account/password"),
            "totp_enrolment_required" => see_other("/account/totp"),
            _ => layout::problem_page(&self),
        }
    }
}

/// Where to go after signing in: `next` when it is a path on this site, `/` otherwise.
///
/// Only an absolute path is kept: not `//host` or `/\host` (which browsers read as another site),
/// nothing with a scheme, no control characters, and not the sign-in page itself.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    const MAX: usize = 1024;
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.len() <= MAX
                && !n.chars().any(|c| c.is_control() || c == '\\')
                && !(n == "/login" || n.starts_with("/login?") || n.starts_with("/login/")) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// Percent-encodes `s` for a URL query value or path segment: everything but the RFC 3986
/// unreserved characters.
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string from the pairs whose value is not empty: `?a=1&b=x%20y`, or empty.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests;
