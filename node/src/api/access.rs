//! Who is asking, and what they may do: sessions (cookie for the portal, bearer token for scripts),
//! HTTP Basic, CSRF, and the role grants every handler checks.
//!
//! A session is a replicated [`WebSession`] record; its token is `id.deadline.hmac` signed with the
//! cluster secret, so any node checks it with one local read, and deleting the record (logout, a
//! password change, a disabled account) ends it on every node as soon as the node has applied the
//! deletion. A cookie's deadline is its idle timeout: each request made with it more than a minute
//! after it was issued gets a fresh cookie with a new deadline, so no write is needed to track activity.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use storage::web::{Grants, WebAccount, WebRole, WebSession};

use super::AppState;
use super::error::ApiError;
use crate::accounts;

/// The portal's session cookie.
pub(crate) const COOKIE_NAME: &str = "pbx_session";
/// The header a cookie session's state-changing requests carry their CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// A session ends this long after it was opened, however active.
pub(crate) const SESSION_MS: u64 = 12 * 3600 * 1000;
/// A bearer token (scripts) is good for this long, within its session.
pub(crate) const TOKEN_MS: u64 = 8 * 3600 * 1000;
/// A cookie is reissued with a fresh idle deadline once it is this old.
const REFRESH_AFTER_MS: u64 = 60 * 1000;
/// Longest Authorization or Cookie header looked at.
const MAX_AUTH_HEADER: usize = 4096;

/// A session as the request presented it.
#[derive(Debug, Clone)]
pub(crate) struct SessionRef {
    pub id: String,
    /// The token that must accompany the session's state-changing requests (cookie sessions).
    pub csrf: String,
    /// Presented as the portal's cookie (CSRF applies, the idle deadline slides) or as a bearer token.
    pub cookie: bool,
    pub deadline: u64,
}

/// The account behind a request, with what its role grants.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub username: String,
    pub role: String,
    pub extension: Option<String>,
    pub grants: Grants,
    pub session: Option<SessionRef>,
    pub must_change_password: bool,
    /// Policy asks this account for a second factor it has not set up.
    pub needs_totp: bool,
}

impl Principal {
    pub(crate) fn is_admin(&self) -> bool {
        self.role == "admin"
    }

    /// `Forbidden` unless `allowed`.
    pub(crate) fn require(&self, allowed: bool) -> Result<(), ApiError> {
        if allowed {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    /// Web accounts, roles, cluster membership and portal policy: the admin role's alone.
    pub(crate) fn require_admin(&self) -> Result<(), ApiError> {
        self.require(self.is_admin())
    }

    fn from_account(state: &AppState, a: &WebAccount) -> Result<Self, ApiError> {
        let grants = match Grants::built_in(&a.role) {
            Some(g) => g,
            None => state
                .cluster
                .reader()
                .get::<WebRole>(&a.role)?
                .map_or(NO_GRANTS, |r| r.grants),
        };
        let policy = super::accounts::read_policy(state.cluster.reader());
        Ok(Self {
            username: a.username.clone(),
            role: a.role.clone(),
            extension: a.extension.clone(),
            grants,
            session: None,
            must_change_password: a.must_change_password,
            needs_totp: policy.require_admin_totp && a.role == "admin" && !a.totp_enabled(),
        })
    }
}

/// What an account whose custom role vanished may do: nothing.
const NO_GRANTS: Grants = Grants {
    extensions: false,
    routing: false,
    security: false,
    monitor: false,
    hang_up: false,
    cdrs: storage::web::Scope::None,
    recordings: storage::web::Scope::None,
};

/// Paths a restricted session (password to change, second factor to enrol) may still use.
fn allowed_while_restricted(path: &str) -> bool {
    matches!(
        path,
        "/api/v1/session"
            | "/api/v1/account"
            | "/api/v1/account/password"
            | "/api/v1/account/totp"
            | "/api/v1/account/totp/confirm"
    )
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = match parts.extensions.get::<Self>() {
            Some(p) => p.clone(),
            None => basic(parts, state).await?,
        };
        let changes = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if let Some(s) = principal.session.as_ref().filter(|s| s.cookie && changes) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !bool::from(sent.as_bytes().ct_eq(s.csrf.as_bytes())) {
                return Err(ApiError::Csrf);
            }
        }
        // Basic auth is for scripts: it is not held to the first-login rules (the session ones are).
        // Inside the nested `/api/v1` router the URI has lost its prefix: the original has it.
        let path = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or_else(|| parts.uri.path().to_owned(), |u| u.path().to_owned());
        if principal.session.is_some() && !allowed_while_restricted(&path) {
            if principal.must_change_password {
                return Err(ApiError::PasswordChangeRequired);
            }
            if principal.needs_totp {
                return Err(ApiError::TotpEnrolmentRequired);
            }
        }
        if let Some(actor) = parts.extensions.get::<super::guard::AuditActor>() {
            actor.set(&principal.username);
        }
        Ok(principal)
    }
}

/// HTTP Basic: a password check (argon2) per request. Refused for accounts with a second factor.
async fn basic(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::Unauthorized)?
        .to_str()
        .map_err(|_| ApiError::Unauthorized)?;
    if header.len() > MAX_AUTH_HEADER {
        return Err(ApiError::Unauthorized);
    }
    let b64 = header
        .strip_prefix("Basic ")
        .ok_or(ApiError::Unauthorized)?;
    let decoded = STANDARD
        .decode(b64.trim())
        .map_err(|_| ApiError::Unauthorized)?;
    let text = String::from_utf8(decoded).map_err(|_| ApiError::Unauthorized)?;
    let (user, password) = text.split_once(':').ok_or(ApiError::Unauthorized)?;
    let client = parts.extensions.get::<super::ClientAddr>().map(|c| c.0);
    let account = super::auth::check_login(state, user, password, client).await?;
    if account.totp_enabled() {
        return Err(ApiError::Unauthorized);
    }
    Principal::from_account(state, &account)
}

fn mac(secret: &[u8], label: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length; the error case cannot happen.
    let mut m = <Hmac<Sha256>>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    m.update(label);
    for p in parts {
        m.update(b"|");
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// `id.deadline.hmac`.
pub(crate) fn sign(secret: &[u8], id: &str, deadline: u64) -> String {
    let d = deadline.to_string();
    let sig = hex::encode(mac(
        secret,
        b"pbx-web-session-v2",
        &[id.as_bytes(), d.as_bytes()],
    ));
    format!("{id}.{d}.{sig}")
}

/// The session id and deadline of a well-signed token whose deadline has not passed.
pub(crate) fn verify(secret: &[u8], token: &str, now: u64) -> Option<(String, u64)> {
    let mut it = token.splitn(3, '.');
    let (id, d, sig) = (it.next()?, it.next()?, it.next()?);
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let deadline: u64 = d.parse().ok()?;
    let sig = hex::decode(sig).ok()?;
    let expected = mac(
        secret,
        b"pbx-web-session-v2",
        &[id.as_bytes(), d.as_bytes()],
    );
    (bool::from(expected.ct_eq(&sig)) && now < deadline).then(|| (id.to_owned(), deadline))
}

/// The CSRF token of session `id`: derived, so every node knows it without storing it.
pub(crate) fn csrf_token(secret: &[u8], id: &str) -> String {
    hex::encode(&mac(secret, b"pbx-csrf-v1", &[id.as_bytes()])[..16])
}

/// The `Set-Cookie` value carrying `token` (empty and expired: the cookie is removed).
pub(crate) fn cookie_header(token: &str) -> HeaderValue {
    let value = if token.is_empty() {
        format!("{COOKIE_NAME}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
    } else {
        format!("{COOKIE_NAME}={token}; Path=/; HttpOnly; Secure; SameSite=Strict")
    };
    // Tokens are hex, digits and dots: always a valid header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn cookie_token(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.len() <= MAX_AUTH_HEADER)
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (name, value) = c.trim().split_once('=')?;
            (name == COOKIE_NAME).then(|| value.to_owned())
        })
}

fn bearer_token(parts: &Parts) -> Option<String> {
    let h = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    if h.len() > MAX_AUTH_HEADER {
        return None;
    }
    h.strip_prefix("Bearer ").map(|t| t.trim().to_owned())
}

/// The principal of a session token, if the session is open and its account enabled.
///
/// A well-signed token whose session this replica does not show, or a restricted account, may only
/// mean the replica has not applied a recent change yet (a sign-in or password change through
/// another node a moment ago): the answer is then taken again after a linearizable barrier.
pub(crate) async fn session_principal(
    state: &AppState,
    token: &str,
    cookie: bool,
    now: u64,
) -> Result<Option<Principal>, ApiError> {
    let secret = super::auth::cluster_secret(state)?;
    let Some((id, deadline)) = verify(&secret, token, now) else {
        return Ok(None);
    };
    let mut found = lookup(state, &secret, &id, deadline, cookie, now)?;
    let settled = found
        .as_ref()
        .is_some_and(|p| !p.must_change_password && !p.needs_totp);
    if !settled && state.cluster.linearizable_barrier().await.is_ok() {
        found = lookup(state, &secret, &id, deadline, cookie, now)?;
    }
    Ok(found)
}

fn lookup(
    state: &AppState,
    secret: &[u8],
    id: &str,
    deadline: u64,
    cookie: bool,
    now: u64,
) -> Result<Option<Principal>, ApiError> {
    let reader = state.cluster.reader();
    let Some(session) = reader.get::<WebSession>(id)?.filter(|s| s.expires_at > now) else {
        return Ok(None);
    };
    let Some(account) = accounts::find(reader, &session.username)?.filter(|a| !a.disabled) else {
        return Ok(None);
    };
    let mut p = Principal::from_account(state, &account)?;
    p.session = Some(SessionRef {
        csrf: csrf_token(secret, id),
        id: id.to_owned(),
        cookie,
        deadline: deadline.min(session.expires_at),
    });
    Ok(Some(p))
}

/// Recognises the session a request carries (cookie or bearer token) and, for a cookie, slides its
/// idle deadline on the way out. A request without a valid session goes on unauthenticated: the
/// handler's [`Principal`] extractor then answers 401 (or tries HTTP Basic).
pub(crate) async fn sessions(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let now = crate::time::now_millis();
    let bearer = bearer_token(&parts);
    let cookie = if bearer.is_none() {
        cookie_token(&parts)
    } else {
        None
    };
    let found = match (&bearer, &cookie) {
        (Some(t), _) => session_principal(&state, t, false, now).await,
        (None, Some(t)) => session_principal(&state, t, true, now).await,
        (None, None) => Ok(None),
    };
    let principal = match found {
        Ok(p) => p,
        Err(e) => return axum::response::IntoResponse::into_response(e),
    };
    if let Some(p) = &principal {
        parts.extensions.insert(p.clone());
    }
    // A browser's request (the portal's scripts say so; browsers send `Sec-Fetch-Mode` on every
    // request, a download link included) gets no Basic challenge on a 401: it would open the
    // browser's own password dialog (and a fetch would wait on it) instead of the portal's sign-in.
    let from_portal = parts
        .headers
        .get("x-requested-with")
        .is_some_and(|v| v == "pbx-portal")
        || parts.headers.contains_key("sec-fetch-mode");
    let mut resp = next.run(Request::from_parts(parts, body)).await;
    if from_portal {
        resp.headers_mut()
            .remove(axum::http::header::WWW_AUTHENTICATE);
    }
    if resp.headers().contains_key(SET_COOKIE) {
        // The handler set or cleared the cookie itself (login, logout).
        return resp;
    }
    match principal.as_ref().and_then(|p| p.session.as_ref()) {
        Some(s) if s.cookie => {
            let idle = super::accounts::read_policy(state.cluster.reader()).idle_ms();
            if s.deadline.saturating_sub(now) + REFRESH_AFTER_MS < idle
                && let Ok(secret) = super::auth::cluster_secret(&state)
                && let Ok(Some(session)) = state.cluster.reader().get::<WebSession>(&s.id)
            {
                let deadline = (now + idle).min(session.expires_at);
                resp.headers_mut()
                    .append(SET_COOKIE, cookie_header(&sign(&secret, &s.id, deadline)));
            }
        }
        Some(_) => {}
        // A cookie that no longer opens a session (expired, signed out elsewhere) is removed.
        None if cookie.is_some() => {
            resp.headers_mut().append(SET_COOKIE, cookie_header(""));
        }
        None => {}
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn token_round_trip_and_deadline() {
        let t = sign(b"k1", ID, 2000);
        assert_eq!(verify(b"k1", &t, 1999), Some((ID.to_owned(), 2000)));
        assert_eq!(verify(b"k1", &t, 2000), None, "deadline passed");
        assert_eq!(verify(b"k2", &t, 1000), None, "another cluster's secret");
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let t = sign(b"k1", ID, 2000);
        let (_, rest) = t.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        assert_eq!(verify(b"k1", &format!("{ID}.{}.{sig}", u64::MAX), 0), None);
        let other = "ffeeddccbbaa99887766554433221100";
        assert_eq!(verify(b"k1", &format!("{other}.2000.{sig}"), 0), None);
        for junk in ["", "a.b", "a.b.c", "...", &format!("{ID}.x.{sig}")] {
            assert_eq!(verify(b"k1", junk, 0), None, "{junk}");
        }
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_cluster() {
        let a = csrf_token(b"k1", ID);
        assert_eq!(a.len(), 32);
        assert_eq!(a, csrf_token(b"k1", ID));
        assert_ne!(a, csrf_token(b"k2", ID));
        assert_ne!(a, csrf_token(b"k1", "ffeeddccbbaa99887766554433221100"));
    }

    #[test]
    fn cookie_attributes() {
        let c = cookie_header("abc");
        let c = c.to_str().unwrap();
        for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(c.contains(attr), "{c}");
        }
        assert!(cookie_header("").to_str().unwrap().contains("Max-Age=0"));
    }
}
