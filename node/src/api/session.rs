//! `/api/v1/session`: trade a user name and password for a bearer token.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth;
use super::error::ApiError;
use super::json::JsonBody;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    pub username: String,
    pub password: String,
}

#[derive(Serialize)]
pub(crate) struct Session {
    pub token: String,
    pub expires_at: u64,
}

pub(crate) async fn login(
    State(state): State<AppState>,
    client: super::ClientAddr,
    JsonBody(req): JsonBody<Login>,
) -> Result<Json<Session>, ApiError> {
    let account = auth::check_login(&state, &req.username, &req.password, Some(client.0)).await?;
    let secret = auth::cluster_secret(&state)?;
    let (token, expires_at) =
        auth::issue_token(&secret, &account.username, crate::time::now_millis());
    Ok(Json(Session { token, expires_at }))
}
