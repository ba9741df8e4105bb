//! Admin authentication: HTTP Basic with argon2id-verified passwords, or a bearer session token.
//!
//! Tokens are `base64url(user).expiry_ms.hex(hmac)` keyed by the replicated cluster secret, so a token
//! issued by one node is accepted by every node without shared session storage.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use storage::model::{ClusterRecord, Role, UserAccount};

use super::AppState;
use super::error::ApiError;
use crate::accounts;

/// Session tokens live this long.
pub(crate) const TOKEN_TTL_MS: u64 = 8 * 3600 * 1000;
/// Longest Authorization header we look at.
const MAX_AUTH_HEADER: usize = 4096;

/// An authenticated administrator.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    pub username: String,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized)?
            .to_str()
            .map_err(|_| ApiError::Unauthorized)?;
        if header.len() > MAX_AUTH_HEADER {
            return Err(ApiError::Unauthorized);
        }
        let account = if let Some(b64) = header.strip_prefix("Basic ") {
            let decoded = STANDARD
                .decode(b64.trim())
                .map_err(|_| ApiError::Unauthorized)?;
            let text = String::from_utf8(decoded).map_err(|_| ApiError::Unauthorized)?;
            let (user, password) = text.split_once(':').ok_or(ApiError::Unauthorized)?;
            let client = parts.extensions.get::<super::ClientAddr>().map(|c| c.0);
            check_login(state, user, password, client).await?
        } else if let Some(token) = header.strip_prefix("Bearer ") {
            let user = verify_token(
                &cluster_secret(state)?,
                token.trim(),
                crate::time::now_millis(),
            )
            .ok_or(ApiError::Unauthorized)?;
            state
                .cluster
                .reader()
                .get::<UserAccount>(&user)?
                .ok_or(ApiError::Unauthorized)?
        } else {
            return Err(ApiError::Unauthorized);
        };
        if account.role != Role::Admin {
            return Err(ApiError::Forbidden);
        }
        if let Some(actor) = parts.extensions.get::<super::guard::AuditActor>() {
            actor.set(&account.username);
        }
        Ok(Self {
            username: account.username,
        })
    }
}

/// Verifies a user name and password. Unknown users cost the same argon2 work as known ones.
pub(crate) async fn check_login(
    state: &AppState,
    user: &str,
    password: &str,
    client: Option<std::net::IpAddr>,
) -> Result<UserAccount, ApiError> {
    if user.len() > 64 || password.len() > 1024 {
        return Err(ApiError::Unauthorized);
    }
    let account = state.cluster.reader().get::<UserAccount>(user)?;
    let phc = account.as_ref().map_or_else(
        || accounts::decoy_hash().to_owned(),
        |a| a.password_hash.clone(),
    );
    let password = password.to_owned();
    // argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let ok = tokio::task::spawn_blocking(move || accounts::verify_password(&password, &phc))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match account {
        Some(a) if ok => Ok(a),
        _ => {
            metrics::counter!("pbx_api_login_failures_total").increment(1);
            tracing::info!(user, client = ?client, "admin login failed");
            // The source is locked out after repeated failures, never the account: an attacker
            // elsewhere cannot lock a real admin out.
            if let Some(ip) = client {
                state.security.auth_failed(
                    ip,
                    storage::model::Service::Api,
                    storage::model::Transport::Tls,
                );
            }
            state.events.raise(
                "login_failed",
                storage::model::Severity::Info,
                client,
                format!(
                    "failed admin login for {:?}",
                    user.chars().take(64).collect::<String>()
                ),
            );
            Err(ApiError::Unauthorized)
        }
    }
}

pub(crate) fn cluster_secret(state: &AppState) -> Result<Vec<u8>, ApiError> {
    let rec = state
        .cluster
        .reader()
        .get::<ClusterRecord>(ClusterRecord::KEY)?
        .ok_or_else(|| ApiError::Unavailable("cluster not initialised".into()))?;
    Ok(rec.secret)
}

fn mac(secret: &[u8], user_b64: &str, expires: u64) -> Vec<u8> {
    // HMAC accepts keys of any length; the error case cannot happen.
    let mut m = <Hmac<Sha256>>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    m.update(b"pbx-api-session-v1|");
    m.update(user_b64.as_bytes());
    m.update(b"|");
    m.update(expires.to_string().as_bytes());
    m.finalize().into_bytes().to_vec()
}

pub(crate) fn issue_token(secret: &[u8], user: &str, now: u64) -> (String, u64) {
    let expires = now + TOKEN_TTL_MS;
    let user_b64 = URL_SAFE_NO_PAD.encode(user);
    let sig = hex::encode(mac(secret, &user_b64, expires));
    (format!("{user_b64}.{expires}.{sig}"), expires)
}

/// Returns the user a valid, unexpired token names.
pub(crate) fn verify_token(secret: &[u8], token: &str, now: u64) -> Option<String> {
    let mut parts = token.splitn(3, '.');
    let (user_b64, expires, sig) = (parts.next()?, parts.next()?, parts.next()?);
    let expires: u64 = expires.parse().ok()?;
    let sig = hex::decode(sig).ok()?;
    let expected = mac(secret, user_b64, expires);
    if !bool::from(expected.ct_eq(&sig)) || now >= expires {
        return None;
    }
    String::from_utf8(URL_SAFE_NO_PAD.decode(user_b64).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_and_expiry() {
        let (t, exp) = issue_token(b"k1", "admin", 1000);
        assert_eq!(verify_token(b"k1", &t, 1001).as_deref(), Some("admin"));
        assert_eq!(verify_token(b"k1", &t, exp), None, "expired");
        assert_eq!(
            verify_token(b"k2", &t, 1001),
            None,
            "other cluster's secret"
        );
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let (t, _) = issue_token(b"k1", "admin", 1000);
        let forged_user = format!(
            "{}{}",
            URL_SAFE_NO_PAD.encode("root"),
            &t[t.find('.').unwrap()..]
        );
        assert_eq!(verify_token(b"k1", &forged_user, 1001), None);
        let (u, rest) = t.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let extended = format!("{u}.{}.{sig}", u64::MAX);
        assert_eq!(verify_token(b"k1", &extended, 1001), None);
        for junk in ["", "a.b", "a.b.c", "...", "YWRtaW4.1.zz"] {
            assert_eq!(verify_token(b"k1", junk, 0), None, "{junk}");
        }
    }
}
