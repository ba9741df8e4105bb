//! `/api/v1/session`: sign in (a portal cookie or a bearer token for scripts), who am I, sign out.
//!
//! Signing in checks the password (argon2; failures count toward the source's ban) and, for an
//! account with a second factor, a TOTP code that is accepted once. The session is a replicated record,
//! so it works through every node and signing out ends it on all of them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Response};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use storage::Command;
use storage::web::{Grants, WebSession};

use super::AppState;
use super::access::{self, Principal};
use super::auth;
use super::error::ApiError;
use super::json::JsonBody;
use crate::time::now_millis;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    pub username: String,
    pub password: String,
    /// The authenticator app's code, for accounts with a second factor.
    #[serde(default)]
    pub totp_code: Option<String>,
    /// Set the portal's session cookie instead of returning a bearer token.
    #[serde(default)]
    pub cookie: bool,
}

#[derive(Serialize)]
pub(crate) struct Session {
    /// The bearer token (absent when the session is in the cookie, where scripts cannot read it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub expires_at: u64,
    pub username: String,
    pub role: String,
    pub extension: Option<String>,
    pub grants: Grants,
    /// Send it as `X-CSRF-Token` with every state-changing request made with the cookie.
    pub csrf_token: String,
    pub must_change_password: bool,
    pub needs_totp: bool,
}

fn failed_second_factor(state: &AppState, client: super::ClientAddr, user: &str) -> ApiError {
    state.security.auth_failed(
        client.0,
        storage::model::Service::Api,
        storage::model::Transport::Tls,
    );
    tracing::info!(user, client = %client.0, "second factor refused");
    ApiError::Unauthorized
}

pub(crate) async fn login(
    State(state): State<AppState>,
    client: super::ClientAddr,
    JsonBody(req): JsonBody<Login>,
) -> Result<Response, ApiError> {
    let account = auth::check_login(&state, &req.username, &req.password, Some(client.0)).await?;
    let now = now_millis();
    let totp_step = match &account.totp {
        Some(t) if t.confirmed => {
            let Some(code) = req.totp_code.as_deref().filter(|c| c.len() <= 16) else {
                // The password was right: the second step asks for the code.
                return Ok((
                    StatusCode::UNAUTHORIZED,
                    Json(serde_json::json!({
                        "error": "totp_required",
                        "message": "enter the code from your authenticator app",
                    })),
                )
                    .into_response());
            };
            let step = crate::totp::verify(&t.secret, code, now / 1000)
                .ok_or_else(|| failed_second_factor(&state, client, &account.username))?;
            Some(step)
        }
        _ => None,
    };
    let mut id = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut id);
    let session = WebSession {
        id: hex::encode(id),
        username: account.username.clone(),
        created_at: now,
        expires_at: now + access::SESSION_MS,
        source: client.0.to_string(),
    };
    let cmd = Command::OpenWebSession {
        session: session.clone(),
        totp_step,
    };
    match state.cluster.propose(cmd).await? {
        storage::Response::Ok => {}
        storage::Response::Conflict { table, .. } if table == "totp_code" => {
            return Err(failed_second_factor(&state, client, &account.username));
        }
        // Disabled or deleted between the password check and the write.
        _ => return Err(ApiError::Unauthorized),
    }
    let secret = auth::cluster_secret(&state)?;
    let policy = super::accounts::read_policy(state.cluster.reader());
    let deadline = if req.cookie {
        now + policy.idle_ms()
    } else {
        now + access::TOKEN_MS
    }
    .min(session.expires_at);
    let token = access::sign(&secret, &session.id, deadline);
    // The grants and policy as every later request will see them.
    let who = access::session_principal(&state, &token, req.cookie, now)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    tracing::info!(user = %who.username, client = %client.0, cookie = req.cookie, "signed in");
    let body = Session {
        token: (!req.cookie).then(|| token.clone()),
        expires_at: deadline,
        username: who.username,
        role: who.role,
        extension: who.extension,
        grants: who.grants,
        csrf_token: access::csrf_token(&secret, &session.id),
        must_change_password: who.must_change_password,
        needs_totp: who.needs_totp,
    };
    let mut resp = Json(body).into_response();
    if req.cookie {
        resp.headers_mut()
            .insert(SET_COOKIE, access::cookie_header(&token));
    }
    Ok(resp)
}

/// The session's account, grants and CSRF token (the portal reads them after a reload).
pub(crate) async fn whoami(who: Principal) -> Result<Json<Session>, ApiError> {
    let s = who.session.ok_or(ApiError::Unauthorized)?;
    Ok(Json(Session {
        token: None,
        expires_at: s.deadline,
        username: who.username,
        role: who.role,
        extension: who.extension,
        grants: who.grants,
        csrf_token: s.csrf,
        must_change_password: who.must_change_password,
        needs_totp: who.needs_totp,
    }))
}

/// Signs the session out on every node and removes the cookie.
pub(crate) async fn logout(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Response, ApiError> {
    let s = who.session.ok_or(ApiError::Unauthorized)?;
    state
        .cluster
        .propose(Command::CloseWebSession { id: s.id })
        .await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(SET_COOKIE, access::cookie_header(""));
    Ok(resp)
}
