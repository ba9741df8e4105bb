//! Digest authentication: the project's own verifier (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760).
//!
//! * Algorithms MD5 and SHA-256, `qop=auth` only; the legacy RFC 2069 form (no qop), `-sess`
//!   algorithms, `auth-int` and `userhash` are refused.
//! * HA1 is stored per algorithm as lower-case hex ([`ha1`] computes it at provisioning time); the
//!   verifier never sees a password.
//! * Nonces are HMACs under a key derived from the cluster secret ([`NonceKey`]), so any node
//!   verifies a nonce another node issued; they carry their issue time and live
//!   [`DigestConfig::nonce_lifetime_ms`].
//! * A bounded nonce-count memory refuses replays (an `nc` not greater than the last accepted).
//! * Unknown users cost the same work as known ones (a decoy HA1 derived from the key) and fail
//!   the same way on the wire.
//!
//! # Answering a failure
//!
//! [`AuthFailure`] carries a reason for logs and metrics (`UnknownUser` vs `BadResponse`, …).
//! **The wire answer must depend only on [`AuthFailure::is_stale`]**: a fresh challenge
//! ([`Verifier::challenge`] with `stale` set to `is_stale()`) in a 401 (or 407). Never answer
//! differently for an unknown user: that is how extensions get enumerated.

mod nonce;
mod params;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use md5::Md5;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

pub use nonce::NonceKey;
use nonce::{NcCheck, NonceCounter};
use params::{Param, algorithm, parse_digest_params, quote, take};

#[cfg(test)]
thread_local! {
    static HASH_CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
fn count_hash() {
    HASH_CALLS.with(|c| c.set(c.get() + 1));
}

/// A digest algorithm (RFC 8760 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`, the RFC 2617 default; still what most phones use.
    Md5,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// Both, in the order challenges offer them (strongest first).
    pub const ALL: [Self; 2] = [Self::Sha256, Self::Md5];

    /// The wire token.
    pub fn token(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA-256",
        }
    }

    /// Parses a wire token (case-insensitive). `-sess` variants are not supported.
    pub fn from_token(token: &str) -> Option<Self> {
        if token.eq_ignore_ascii_case("MD5") {
            Some(Self::Md5)
        } else if token.eq_ignore_ascii_case("SHA-256") {
            Some(Self::Sha256)
        } else {
            None
        }
    }

    /// Length of a hash in lower-case hex.
    pub fn hex_len(self) -> usize {
        match self {
            Self::Md5 => 32,
            Self::Sha256 => 64,
        }
    }

    /// `H(data)` in lower-case hex.
    fn hex(self, parts: &[&[u8]]) -> String {
        #[cfg(test)]
        count_hash();
        match self {
            Self::Md5 => {
                let mut h = Md5::new();
                for part in parts {
                    h.update(part);
                }
                hex::encode(h.finalize())
            }
            Self::Sha256 => {
                let mut h = Sha256::new();
                for part in parts {
                    h.update(part);
                }
                hex::encode(h.finalize())
            }
        }
    }
}

/// `HA1 = H(username:realm:password)`, lower-case hex: what storage keeps per algorithm.
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hex(&[
        username.as_bytes(),
        b":",
        realm.as_bytes(),
        b":",
        password.as_bytes(),
    ])
}

/// The `response` for `qop=auth`: `H(HA1:nonce:nc:cnonce:qop:H(method:uri))`, lower-case hex.
#[allow(
    clippy::too_many_arguments,
    reason = "the RFC's inputs, named at every call"
)]
pub fn response(
    algorithm: Algorithm,
    ha1: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: &str,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = algorithm.hex(&[method.as_bytes(), b":", uri.as_bytes()]);
    algorithm.hex(&[
        ha1.as_bytes(),
        b":",
        nonce.as_bytes(),
        b":",
        nc.as_bytes(),
        b":",
        cnonce.as_bytes(),
        b":",
        qop.as_bytes(),
        b":",
        ha2.as_bytes(),
    ])
}

/// Whether the credentials' `uri` is the request's Request-URI. Compared byte for byte with the
/// Request-URI exactly as received ([`crate::codec::Message::raw_uri`]): the response hashes it
/// verbatim, so any normalisation would only let a mismatch through.
pub fn uri_matches(credentials_uri: &str, request_uri: &str) -> bool {
    credentials_uri == request_uri
}

/// Settings of the verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestConfig {
    /// A nonce older than this is stale (default 300 s).
    pub nonce_lifetime_ms: u64,
    /// How far in the future a nonce's issue time may be (another node's clock), default 30 s.
    /// Beyond it the nonce is stale.
    pub max_clock_skew_ms: u64,
    /// The longest `Authorization` value parsed (default 4 KiB).
    pub max_header_len: usize,
    /// How many nonces the replay memory tracks (default 100 000).
    pub nonce_counter_capacity: usize,
}

impl Default for DigestConfig {
    fn default() -> Self {
        Self {
            nonce_lifetime_ms: 300_000,
            max_clock_skew_ms: 30_000,
            max_header_len: 4096,
            nonce_counter_capacity: 100_000,
        }
    }
}

/// Why credentials were not accepted. For logs and metrics only: the wire answer depends only on
/// [`AuthFailure::is_stale`] (see the module documentation).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// The header value is longer than [`DigestConfig::max_header_len`].
    #[error("authorization header too long")]
    HeaderTooLong,
    /// Not the `Digest` scheme.
    #[error("unsupported authentication scheme")]
    UnsupportedScheme,
    /// The header does not parse, or lacks a required parameter (which one).
    #[error("malformed credentials: {0}")]
    Malformed(&'static str),
    /// An algorithm other than MD5 or SHA-256.
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// No qop: the RFC 2069 form, refused.
    #[error("legacy digest without qop")]
    MissingQop,
    /// A qop other than `auth`.
    #[error("unsupported qop")]
    UnsupportedQop,
    /// The realm is not the one challenged.
    #[error("realm mismatch")]
    RealmMismatch,
    /// The `uri` parameter is not the Request-URI.
    #[error("digest uri does not match the Request-URI")]
    UriMismatch,
    /// The opaque value is not ours.
    #[error("opaque mismatch")]
    OpaqueMismatch,
    /// The nonce is garbled, forged, or from another realm or cluster.
    #[error("invalid nonce")]
    BadNonce,
    /// No such user (answered exactly as [`AuthFailure::BadResponse`]).
    #[error("unknown user")]
    UnknownUser,
    /// The stored HA1 is not hex of the algorithm's length (a provisioning fault).
    #[error("stored HA1 is invalid")]
    StoredHa1Invalid,
    /// Wrong password (or otherwise wrong response).
    #[error("wrong response")]
    BadResponse,
    /// A correct response for a nonce that expired (or was forgotten under memory pressure).
    #[error("stale nonce")]
    StaleNonce,
    /// A correct response with an `nc` not greater than one already accepted for that nonce.
    #[error("replayed nonce count")]
    Replay,
}

impl AuthFailure {
    /// Whether to challenge with `stale=true` (the client retries with a fresh nonce and the same
    /// password). The only property of a failure the wire answer may depend on.
    pub fn is_stale(&self) -> bool {
        matches!(self, Self::StaleNonce | Self::Replay)
    }
}

/// Parsed `Authorization` / `Proxy-Authorization` credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `uri` (the digest-uri, to match the Request-URI).
    pub uri: String,
    /// `response`.
    pub response: String,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// `qop`.
    pub qop: Option<String>,
    /// `cnonce`.
    pub cnonce: Option<String>,
    /// `nc`, as sent (8 hex digits).
    pub nc: Option<String>,
    /// `opaque`.
    pub opaque: Option<String>,
}

/// A default bound for [`Credentials::parse`] and [`DigestChallenge::parse`].
pub const MAX_HEADER_LEN: usize = 4096;

impl Credentials {
    /// Parses a header value, bounded by [`MAX_HEADER_LEN`]. Unknown parameters are ignored;
    /// duplicates are refused.
    pub fn parse(value: &str) -> Result<Self, AuthFailure> {
        Self::parse_bounded(value, MAX_HEADER_LEN)
    }

    /// Parses a header value no longer than `max_len`.
    pub fn parse_bounded(value: &str, max_len: usize) -> Result<Self, AuthFailure> {
        let mut params = parse_digest_params(value, max_len)?;
        if params.iter().any(|p| p.name == "username*") {
            return Err(AuthFailure::Malformed("username* not supported"));
        }
        if take(&mut params, "userhash").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err(AuthFailure::Malformed("userhash not supported"));
        }
        let mut required =
            |name: &'static str| take(&mut params, name).ok_or(AuthFailure::Malformed(name));
        let username = required("username")?;
        let realm = required("realm")?;
        let nonce = required("nonce")?;
        let uri = required("uri")?;
        let response = required("response")?;
        let algorithm = algorithm(take(&mut params, "algorithm"))?;
        Ok(Self {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            qop: take(&mut params, "qop"),
            cnonce: take(&mut params, "cnonce"),
            nc: take(&mut params, "nc"),
            opaque: take(&mut params, "opaque"),
        })
    }

    /// Answers a challenge as a client would (for trunks registering upstream, and tests):
    /// `qop=auth`, the challenge's realm, nonce, opaque and algorithm, `nc` as 8 hex digits.
    pub fn answer(
        challenge: &DigestChallenge,
        username: &str,
        ha1: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> Self {
        let nc = format!("{nc:08x}");
        let response = response(
            challenge.algorithm,
            ha1,
            &challenge.nonce,
            &nc,
            cnonce,
            "auth",
            method,
            uri,
        );
        Self {
            username: username.to_owned(),
            realm: challenge.realm.clone(),
            nonce: challenge.nonce.clone(),
            uri: uri.to_owned(),
            response,
            algorithm: challenge.algorithm,
            qop: Some("auth".to_owned()),
            cnonce: Some(cnonce.to_owned()),
            nc: Some(nc),
            opaque: challenge.opaque.clone(),
        }
    }

    /// The header value (`Digest username="…", …`).
    pub fn to_header_value(&self) -> String {
        let mut out = String::from("Digest username=");
        quote(&mut out, &self.username);
        out.push_str(", realm=");
        quote(&mut out, &self.realm);
        out.push_str(", nonce=");
        quote(&mut out, &self.nonce);
        out.push_str(", uri=");
        quote(&mut out, &self.uri);
        out.push_str(", response=");
        quote(&mut out, &self.response);
        out.push_str(", algorithm=");
        out.push_str(self.algorithm.token());
        if let Some(qop) = &self.qop {
            out.push_str(", qop=");
            out.push_str(qop);
        }
        if let Some(cnonce) = &self.cnonce {
            out.push_str(", cnonce=");
            quote(&mut out, cnonce);
        }
        if let Some(nc) = &self.nc {
            out.push_str(", nc=");
            out.push_str(nc);
        }
        if let Some(opaque) = &self.opaque {
            out.push_str(", opaque=");
            quote(&mut out, opaque);
        }
        out
    }
}

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `opaque`.
    pub opaque: Option<String>,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// `qop` as sent (a quoted comma-separated list).
    pub qop: Option<String>,
    /// `stale=true`.
    pub stale: bool,
}

impl DigestChallenge {
    /// Parses a challenge header value, bounded by [`MAX_HEADER_LEN`].
    pub fn parse(value: &str) -> Result<Self, AuthFailure> {
        let mut params: Vec<Param> = parse_digest_params(value, MAX_HEADER_LEN)?;
        let realm = take(&mut params, "realm").ok_or(AuthFailure::Malformed("realm"))?;
        let nonce = take(&mut params, "nonce").ok_or(AuthFailure::Malformed("nonce"))?;
        Ok(Self {
            realm,
            nonce,
            opaque: take(&mut params, "opaque"),
            algorithm: algorithm(take(&mut params, "algorithm"))?,
            qop: take(&mut params, "qop"),
            stale: take(&mut params, "stale").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }
}

/// The challenge to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// 401, or 407 for a proxy challenge.
    pub status_code: u16,
    /// `WWW-Authenticate`, or `Proxy-Authenticate` for a proxy challenge.
    pub header_name: &'static str,
    /// One header value per algorithm, SHA-256 first, then MD5 (RFC 8760 §2.4).
    pub values: Vec<String>,
}

/// What the request being authenticated says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthRequest<'a> {
    /// The realm this request must authenticate in.
    pub realm: &'a str,
    /// The request method (`REGISTER`, `INVITE`, …).
    pub method: &'a str,
    /// The Request-URI exactly as received ([`crate::codec::Message::raw_uri`]).
    pub request_uri: &'a str,
}

/// Accepted credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The authenticated user.
    pub username: String,
    /// The algorithm used.
    pub algorithm: Algorithm,
    /// The accepted nonce count.
    pub nc: u32,
    /// When the nonce was issued.
    pub nonce_issued_at_ms: u64,
}

/// The verifier: issues challenges and checks credentials. One per node, shared by every task that
/// authenticates: the hashing runs without a lock, and only the replay memory's check-and-record at
/// the end takes one. Time comes in as wall-clock milliseconds (`now_ms`), the same clock on every
/// node.
///
/// The replay memory knows only the nonces this verifier saw, so every nonce it issues carries its
/// `epoch` (a random value per verifier, made afresh whenever a node starts serving the VIP), and a
/// correct response on a nonce of any other epoch is [`AuthFailure::StaleNonce`]: the phone is simply
/// challenged again, and a request captured before a failover, or sent to another node, cannot be
/// replayed where the memory does not know it.
#[derive(Debug)]
pub struct Verifier {
    key: NonceKey,
    config: DigestConfig,
    epoch: [u8; 4],
    counter: Mutex<NonceCounter>,
    /// The latest `now_ms` seen: a clock stepping back must not revive an expired nonce.
    latest_now_ms: AtomicU64,
    /// The opaque value of the first realm challenged (a node serves one realm): an HMAC that
    /// would otherwise be computed on every challenge and every verification.
    opaque: OnceLock<(String, String)>,
}

impl Verifier {
    /// A verifier with the key derived from the cluster secret; `epoch` must be unpredictable and
    /// differ from every other verifier's (the core has no RNG).
    pub fn new(key: NonceKey, config: DigestConfig, epoch: u32) -> Self {
        let counter = Mutex::new(NonceCounter::new(config.nonce_counter_capacity));
        Self {
            key,
            config,
            epoch: epoch.to_be_bytes(),
            counter,
            latest_now_ms: AtomicU64::new(0),
            opaque: OnceLock::new(),
        }
    }

    /// The replay memory. A panic elsewhere while it was held leaves it consistent (every update
    /// is a single insert or removal), so a poisoned lock is still used.
    fn counter(&self) -> std::sync::MutexGuard<'_, NonceCounter> {
        self.counter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The opaque value for `realm`, from the cache when it is the realm cached.
    fn opaque_for(&self, realm: &str) -> std::borrow::Cow<'_, str> {
        let (cached_realm, opaque) = self
            .opaque
            .get_or_init(|| (realm.to_owned(), self.key.opaque(realm)));
        if cached_realm == realm {
            std::borrow::Cow::Borrowed(opaque)
        } else {
            std::borrow::Cow::Owned(self.key.opaque(realm))
        }
    }

    /// The settings.
    pub fn config(&self) -> &DigestConfig {
        &self.config
    }

    /// How many nonces the replay memory holds.
    pub fn tracked_nonces(&self) -> usize {
        self.counter().len()
    }

    /// Parses credentials with the configured length bound.
    pub fn parse_credentials(&self, value: &str) -> Result<Credentials, AuthFailure> {
        Credentials::parse_bounded(value, self.config.max_header_len)
    }

    /// A challenge for `realm`: two values, SHA-256 first then MD5, each
    /// `Digest realm="…", nonce="…", opaque="…", algorithm=…, qop="auth"` (and `, stale=true`
    /// when `stale`). `rand` are 8 unpredictable bytes from the caller (the core has no RNG); the
    /// first four are replaced by the verifier's epoch. The opaque value is fixed per realm, so known
    /// and unknown users see the same challenge.
    pub fn challenge(
        &self,
        now_ms: u64,
        rand: [u8; 8],
        realm: &str,
        proxy: bool,
        stale: bool,
    ) -> Challenge {
        let mut rand = rand;
        rand[..4].copy_from_slice(&self.epoch);
        let nonce = self.key.issue(now_ms, rand, realm);
        let opaque = self.opaque_for(realm);
        let values = Algorithm::ALL
            .iter()
            .map(|algorithm| {
                let mut value = String::from("Digest realm=");
                quote(&mut value, realm);
                value.push_str(", nonce=\"");
                value.push_str(&nonce);
                value.push_str("\", opaque=\"");
                value.push_str(&opaque);
                value.push_str("\", algorithm=");
                value.push_str(algorithm.token());
                value.push_str(", qop=\"auth\"");
                if stale {
                    value.push_str(", stale=true");
                }
                value
            })
            .collect();
        let (status_code, header_name) = if proxy {
            (407, "Proxy-Authenticate")
        } else {
            (401, "WWW-Authenticate")
        };
        Challenge {
            status_code,
            header_name,
            values,
        }
    }

    /// Verifies credentials for a request.
    ///
    /// Checks, in order: qop is `auth` (with `cnonce` and `nc`), the realm, the `uri` against the
    /// Request-URI, the opaque value (when sent), the nonce's MAC; then looks the user's HA1 up
    /// with `ha1_for(username, algorithm)` and compares the response in constant time. An unknown
    /// user (`None`) is checked against a decoy HA1 derived from the key, with the same work
    /// (the decoy is computed on every call). Only a correct response is then checked for age
    /// ([`AuthFailure::StaleNonce`]) and replay ([`AuthFailure::Replay`]), as RFC 2617 §3.2.1
    /// wants `stale` only for a client that knows the password.
    pub fn verify<F>(
        &self,
        now_ms: u64,
        request: &AuthRequest<'_>,
        credentials: &Credentials,
        ha1_for: F,
    ) -> Result<Verified, AuthFailure>
    where
        F: FnOnce(&str, Algorithm) -> Option<String>,
    {
        let now_ms = self
            .latest_now_ms
            .fetch_max(now_ms, Ordering::Relaxed)
            .max(now_ms);
        let algorithm = credentials.algorithm;

        // Checks that depend on nothing secret and on no user.
        let qop = credentials.qop.as_deref().ok_or(AuthFailure::MissingQop)?;
        if !qop.eq_ignore_ascii_case("auth") {
            return Err(AuthFailure::UnsupportedQop);
        }
        let cnonce = credentials
            .cnonce
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or(AuthFailure::Malformed("cnonce"))?;
        let nc_text = credentials
            .nc
            .as_deref()
            .ok_or(AuthFailure::Malformed("nc"))?;
        let nc = parse_nc(nc_text).ok_or(AuthFailure::Malformed("nc"))?;
        if credentials.realm != request.realm {
            return Err(AuthFailure::RealmMismatch);
        }
        if !uri_matches(&credentials.uri, request.request_uri) {
            return Err(AuthFailure::UriMismatch);
        }
        if let Some(opaque) = &credentials.opaque
            && !bool::from(
                opaque
                    .as_bytes()
                    .ct_eq(self.opaque_for(request.realm).as_bytes()),
            )
        {
            return Err(AuthFailure::OpaqueMismatch);
        }
        let (nonce_raw, issued_at_ms) = self
            .key
            .check(&credentials.nonce, request.realm)
            .ok_or(AuthFailure::BadNonce)?;
        let presented = credentials.response.to_ascii_lowercase();
        if presented.len() != algorithm.hex_len()
            || !presented.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(AuthFailure::Malformed("response"));
        }

        // The same work whether or not the user exists.
        let decoy = algorithm.hex(&[&self.key.decoy(algorithm.token(), &credentials.username)]);
        let stored = ha1_for(&credentials.username, algorithm);
        let (ha1, miss) = match stored {
            Some(ha1)
                if ha1.len() == algorithm.hex_len()
                    && ha1.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                (ha1.to_ascii_lowercase(), None)
            }
            Some(_) => (decoy, Some(AuthFailure::StoredHa1Invalid)),
            None => (decoy, Some(AuthFailure::UnknownUser)),
        };
        let expected = response(
            algorithm,
            &ha1,
            &credentials.nonce,
            nc_text,
            cnonce,
            qop,
            request.method,
            &credentials.uri,
        );
        let matches = bool::from(expected.as_bytes().ct_eq(presented.as_bytes()));
        if let Some(miss) = miss {
            return Err(miss);
        }
        if !matches {
            return Err(AuthFailure::BadResponse);
        }

        // A correct response: now age and replay.
        let too_old = now_ms.saturating_sub(issued_at_ms) > self.config.nonce_lifetime_ms;
        let from_future = issued_at_ms > now_ms.saturating_add(self.config.max_clock_skew_ms);
        // Issued by another verifier (before a failover, or by another node): this memory cannot
        // tell a replay from a first use.
        let foreign = nonce_raw[8..12] != self.epoch;
        if too_old || from_future || foreign {
            return Err(AuthFailure::StaleNonce);
        }
        // Check and record under one lock: two copies of one request verified at once must not
        // both find the count fresh.
        let mut counter = self.counter();
        match counter.check(&nonce_raw, issued_at_ms, nc) {
            NcCheck::Replay => return Err(AuthFailure::Replay),
            NcCheck::Forgotten => return Err(AuthFailure::StaleNonce),
            NcCheck::Fresh => {}
        }
        let expired_before = now_ms.saturating_sub(self.config.nonce_lifetime_ms);
        counter.record(nonce_raw, issued_at_ms, nc, expired_before);
        drop(counter);
        Ok(Verified {
            username: credentials.username.clone(),
            algorithm,
            nc,
            nonce_issued_at_ms: issued_at_ms,
        })
    }
}

/// `nc`: exactly 8 hex digits, not zero.
fn parse_nc(nc: &str) -> Option<u32> {
    if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(nc, 16).ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests;
