//! Password checks for sign-in and HTTP Basic: argon2id, the same cost for unknown users, failures
//! counted toward the source's ban. Sessions and roles are in [`super::access`].

use storage::model::ClusterRecord;
use storage::web::WebAccount;

use super::AppState;
use super::error::ApiError;
use crate::accounts;

/// Verifies a user name and password. Unknown users cost the same argon2 work as known ones.
pub(crate) async fn check_login(
    state: &AppState,
    user: &str,
    password: &str,
    client: Option<std::net::IpAddr>,
) -> Result<WebAccount, ApiError> {
    if user.len() > 64 || password.len() > 1024 {
        return Err(ApiError::Unauthorized);
    }
    let account = accounts::find(state.cluster.reader(), user)?;
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
        Some(a) if ok && !a.disabled => Ok(a),
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
