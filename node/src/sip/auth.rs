//! Digest authentication of SIP requests against the replicated extensions, with the cluster's shared
//! nonce key so any node verifies what another challenged.
//!
//! Every failure, whatever its cause (unknown user, wrong password, disabled extension, garbage), gets
//! the same fresh challenge; only a stale nonce from a client that knew the password adds `stale=true`.

use std::sync::{Arc, Mutex};

use rand::RngCore as _;
use rsip::Header;

use cluster::Cluster;
use pbx_sip::digest::{Algorithm, AuthFailure, AuthRequest, DigestConfig, NonceKey, Verifier};
use pbx_sip::transaction::Peer;
use storage::model::{ClusterRecord, Extension, Service, UnixMillis};

use crate::security::{Security, sip_transport};

use super::handler::header_values;

pub(crate) enum AuthOutcome {
    Authenticated {
        username: String,
    },
    /// Answer 401/407 with these headers.
    Challenge(Vec<Header>),
    /// The cluster record (realm, secret) is not replicated here yet.
    Unavailable,
}

struct Keyed {
    realm: String,
    /// Shared by every realm this service has had: its replay memory outlives a realm change.
    verifier: Arc<Verifier>,
    /// The configuration version the realm was read at: the setup wizard may change the realm
    /// (before any extension exists).
    version: u64,
}

pub(crate) struct SipAuth {
    cluster: Cluster,
    security: Arc<Security>,
    /// Algorithms offered, in the order offered.
    algorithms: Vec<Algorithm>,
    /// Held only to read or replace the `Arc`: verification, with its credential read from the
    /// store, runs with no lock held (the verifier locks its replay memory itself, briefly).
    state: Mutex<Option<Arc<Keyed>>>,
}

impl SipAuth {
    /// `algorithms` are the tokens `SHA-256` / `MD5`, in the order to offer them.
    pub(crate) fn new(cluster: Cluster, security: Arc<Security>, algorithms: &[String]) -> Self {
        let algorithms = algorithms
            .iter()
            .filter_map(|a| Algorithm::from_token(a))
            .collect();
        Self {
            cluster,
            security,
            algorithms,
            state: Mutex::new(None),
        }
    }

    /// The verifier and realm to use now, set up on first use and re-read when configuration changed.
    fn keyed(&self) -> Option<Arc<Keyed>> {
        let mut guard = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The cluster record is written at `cluster init` and its realm changes only before extensions
        // exist: read it from the store when configuration changed, not on every SIP request.
        let version = self.cluster.reader().routing_version();
        if let Some(keyed) = guard.as_ref()
            && keyed.version == version
        {
            return Some(Arc::clone(keyed));
        }
        let record = self
            .cluster
            .reader()
            .get::<ClusterRecord>(ClusterRecord::KEY)
            .ok()
            .flatten();
        let next = match (guard.take(), record) {
            (Some(keyed), Some(record)) => Keyed {
                realm: record.realm,
                verifier: Arc::clone(&keyed.verifier),
                version,
            },
            // Unreadable for now: keep what we had, and look again next time.
            (Some(keyed), None) => {
                *guard = Some(Arc::clone(&keyed));
                return Some(keyed);
            }
            (None, Some(record)) => Keyed {
                // A new epoch per verifier: this one serves from now on (one per SIP service, so
                // one per VIP ownership), and its replay memory starts empty.
                verifier: Arc::new(Verifier::new(
                    NonceKey::new(&record.secret),
                    DigestConfig::default(),
                    rand::random(),
                )),
                realm: record.realm,
                version,
            },
            (None, None) => return None,
        };
        let next = Arc::new(next);
        *guard = Some(Arc::clone(&next));
        Some(next)
    }

    /// Authenticates `req` (`proxy`: INVITE-style 407 with Proxy-Authorization).
    pub(crate) fn check(
        &self,
        req: &rsip::Request,
        raw_uri: &str,
        now: UnixMillis,
        proxy: bool,
        source: Peer,
    ) -> AuthOutcome {
        let Some(keyed) = self.keyed() else {
            return AuthOutcome::Unavailable;
        };
        let header = if proxy {
            "proxy-authorization"
        } else {
            "authorization"
        };
        let method = req.method.to_string();
        let request = AuthRequest {
            realm: &keyed.realm,
            method: &method,
            request_uri: raw_uri,
        };
        let mut stale = false;
        let mut failure = None;
        for value in header_values(req, header) {
            let Ok(creds) = keyed.verifier.parse_credentials(value) else {
                continue;
            };
            if creds.realm != keyed.realm || !self.algorithms.contains(&creds.algorithm) {
                continue;
            }
            let reader = self.cluster.reader();
            let result = keyed
                .verifier
                .verify(now, &request, &creds, |user, algorithm| {
                    let ext = reader
                        .get::<Extension>(user)
                        .ok()
                        .flatten()
                        .filter(|e| e.enabled)?;
                    Some(match algorithm {
                        Algorithm::Md5 => ext.credentials.ha1_md5,
                        Algorithm::Sha256 => ext.credentials.ha1_sha256,
                    })
                });
            match result {
                Ok(v) => {
                    return AuthOutcome::Authenticated {
                        username: v.username,
                    };
                }
                Err(e) => {
                    stale |= e.is_stale();
                    failure = Some(e);
                }
            }
        }
        if let Some(e) = failure {
            metrics::counter!("pbx_sip_auth_failures_total", "reason" => reason(e)).increment(1);
            // A stale nonce is a phone that knew the password; anything else counts towards a ban.
            if !e.is_stale() {
                self.security.auth_failed(
                    source.addr.ip(),
                    Service::Sip,
                    sip_transport(source.transport),
                );
            }
            tracing::debug!(method = %method, reason = %e, "sip authentication failed");
        }
        let mut rand = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut rand);
        let challenge = keyed
            .verifier
            .challenge(now, rand, &keyed.realm, proxy, stale);
        // The verifier offers every algorithm, SHA-256 first; keep the configured ones in their order.
        let offered = self.algorithms.iter().filter_map(|a| {
            let token = format!("algorithm={}", a.token());
            challenge
                .values
                .iter()
                .find(|v| v.contains(&token))
                .cloned()
        });
        let headers = offered
            .map(|v| {
                if proxy {
                    Header::ProxyAuthenticate(rsip::headers::ProxyAuthenticate::from(v))
                } else {
                    Header::WwwAuthenticate(rsip::headers::WwwAuthenticate::from(v))
                }
            })
            .collect();
        AuthOutcome::Challenge(headers)
    }
}

/// A short label for metrics; never sent to the client.
fn reason(e: AuthFailure) -> &'static str {
    match e {
        AuthFailure::StaleNonce => "stale_nonce",
        AuthFailure::Replay => "replay",
        AuthFailure::BadNonce => "bad_nonce",
        AuthFailure::BadResponse | AuthFailure::UnknownUser => "bad_credentials",
        AuthFailure::RealmMismatch | AuthFailure::UriMismatch | AuthFailure::OpaqueMismatch => {
            "mismatch"
        }
        _ => "malformed",
    }
}
