//! Register trunks: the node serving phones (the VIP owner, or the Raft leader without a VIP)
//! registers each enabled register trunk to its provider, refreshes before expiry, retries with
//! backoff, and qualifies peer trunks with OPTIONS. Each trunk's state is replicated when it changes
//! and raises `trunk_up` / `trunk_down`. A new owner starts at once: the provider sees the same
//! VIP registering again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pbx_sip::digest::{self, Credentials, DigestChallenge};
use pbx_sip::rfc3263::Destination;
use pbx_sip::transaction::{Peer, Transport};
use storage::model::{DialogLeg, Severity};
use storage::routing::{Trunk, TrunkKind, TrunkState, TrunkStatus};

use super::Trunks;
use crate::sip::call::dialog;
use crate::sip::endpoint::{ClientOutcome, EndpointHandle};
use crate::sip::transport::{Outbound, transport_name};
use crate::time::now_millis;

/// The first retry after a failure; each next one doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A REGISTER or OPTIONS without a final answer by then counts as no answer from that server.
const ANSWER_WITHIN: Duration = Duration::from_secs(8);

/// When to refresh a registration granted for `granted`: at 80 % of it, at least 5 s on.
pub(crate) fn refresh_after(granted: Duration) -> Duration {
    (granted * 4 / 5).max(Duration::from_secs(5))
}

/// The wait before retry number `attempt` (0 for the first).
pub(crate) fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF)
}

/// The addresses the PBX sends from, per transport.
pub(crate) type LocalOf = Arc<dyn Fn(Transport) -> Option<SocketAddr> + Send + Sync>;

/// Keeps one task per enabled register trunk (and per peer trunk with qualify) while `serving`
/// says this node serves phones; restarts a trunk's task when its record changes.
pub(crate) async fn run(
    trunks: Arc<Trunks>,
    endpoint: EndpointHandle,
    out: Outbound,
    local: LocalOf,
    serving: impl Fn() -> bool + Send + 'static,
) {
    let mut tasks: HashMap<String, (Trunk, tokio::task::JoinHandle<()>)> = HashMap::new();
    let session = |t: &Trunk| Session {
        trunks: Arc::clone(&trunks),
        endpoint: endpoint.clone(),
        out: out.clone(),
        local: Arc::clone(&local),
        trunk: t.clone(),
        call_id: format!("{}@pbx", dialog::token()),
        tag: dialog::token()[..16].to_owned(),
        cseq: 0,
        written: None,
    };
    loop {
        let serves = serving();
        let tables = trunks.tables();
        let wanted: Vec<Trunk> = if serves {
            let active =
                |t: &&Trunk| t.enabled && (t.kind == TrunkKind::Register || t.qualify_secs > 0);
            tables.trunks.values().filter(active).cloned().collect()
        } else {
            Vec::new()
        };
        let mut disabled = Vec::new();
        tasks.retain(|name, (record, task)| {
            let keep = wanted.iter().any(|t| t == record) && !task.is_finished();
            if !keep {
                task.abort();
                tracing::debug!(trunk = %name, "trunk task stopped");
                // Turned off by an admin (not this node losing the VIP): the provider is told.
                if serves && tables.trunks.get(name).is_some_and(|t| !t.enabled) {
                    disabled.push(record.clone());
                }
            }
            keep
        });
        for t in disabled {
            tokio::spawn(session(&t).unregister());
        }
        for t in wanted {
            if tasks.contains_key(&t.name) {
                continue;
            }
            let task = tokio::spawn(session(&t).run());
            tasks.insert(t.name.clone(), (t, task));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How one attempt with one server ended.
enum Attempt {
    /// Registered for this long (or, for OPTIONS, answered).
    Ok(Duration),
    /// A final refusal that another server would repeat (wrong credentials, forbidden).
    Refused(u16),
    /// No answer, a transport failure, or `503`/`500`: the next server may do better.
    NoAnswer(Option<u16>),
}

/// One trunk's registration (or qualify) dialog with its provider.
struct Session {
    trunks: Arc<Trunks>,
    endpoint: EndpointHandle,
    out: Outbound,
    local: LocalOf,
    trunk: Trunk,
    call_id: String,
    tag: String,
    cseq: u32,
    /// The state last replicated, to write only changes.
    written: Option<(TrunkState, Option<u16>)>,
}

impl Session {
    async fn run(mut self) {
        let mut attempt = 0u32;
        loop {
            let wait = match self.round().await {
                Some(granted) => {
                    attempt = 0;
                    refresh_after(granted)
                }
                None => {
                    attempt = attempt.saturating_add(1);
                    backoff(attempt - 1)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn destination(&self) -> Destination {
        super::destination::next_hop(&self.trunk)
    }

    /// One round over the provider's servers; the granted time on success.
    async fn round(&mut self) -> Option<Duration> {
        let peers = match self.trunks.dns.targets(&self.destination()).await {
            Ok(p) if !p.is_empty() => p,
            Ok(_) => {
                self.status(
                    TrunkState::Unresolved,
                    None,
                    "no servers found".into(),
                    None,
                    "",
                )
                .await;
                return None;
            }
            Err(e) => {
                self.status(TrunkState::Unresolved, None, e.to_string(), None, "")
                    .await;
                return None;
            }
        };
        let mut last = None;
        let domain = self.destination().host;
        for peer in peers {
            if peer.transport == Transport::Tls {
                self.out.expect_tls_name(peer.addr, &domain);
            }
            let server = format!("{}:{}", transport_name(peer.transport), peer.addr);
            let attempt = if self.trunk.kind == TrunkKind::Register {
                self.register(peer).await
            } else {
                self.options(peer).await
            };
            match attempt {
                Attempt::Ok(granted) => {
                    let (state, until) = if self.trunk.kind == TrunkKind::Register {
                        let until = now_millis() + granted.as_millis() as u64;
                        (TrunkState::Registered, Some(until))
                    } else {
                        (TrunkState::Reachable, None)
                    };
                    let detail = format!("answered by {server}");
                    self.status(state, Some(200), detail, until, &server).await;
                    return Some(granted);
                }
                Attempt::Refused(code) => {
                    let detail = format!("{server} refused with {code}");
                    self.status(TrunkState::Failed, Some(code), detail, None, &server)
                        .await;
                    return None;
                }
                Attempt::NoAnswer(code) => last = code.or(last),
            }
        }
        let detail = "no server answered".to_owned();
        self.status(TrunkState::Unreachable, last, detail, None, "")
            .await;
        None
    }

    /// The leg REGISTER and OPTIONS are sent on: To and From are the trunk's address of record.
    fn leg(&self, local: SocketAddr, transport: Transport) -> DialogLeg {
        let t = &self.trunk;
        let host = match t.port {
            Some(p) => format!("{}:{p}", t.host),
            None => t.host.clone(),
        };
        let aor = format!("<sip:{}@{host}>", t.username);
        DialogLeg {
            call_id: self.call_id.clone(),
            local_tag: self.tag.clone(),
            local_uri: aor.clone(),
            remote_uri: aor,
            remote_target: format!("sip:{host}"),
            local_contact: dialog::contact_uri(&t.username, local, transport),
            ..DialogLeg::default()
        }
    }

    async fn send(
        &mut self,
        method: &str,
        peer: Peer,
        extra: &[(String, String)],
    ) -> Option<ClientOutcome> {
        let local = (self.local)(peer.transport)?;
        self.cseq += 1;
        let leg = self.leg(local, peer.transport);
        let req = dialog::request(
            method,
            &leg,
            local,
            peer.transport,
            self.cseq,
            70,
            extra,
            None,
        )?;
        let sent = self.endpoint.request(req, peer);
        tokio::time::timeout(ANSWER_WITHIN, sent).await.ok()
    }

    /// A trunk an admin disabled: its registration is removed at the provider (`Expires: 0`, on
    /// the first server that answers) and its state shown as `unknown`.
    async fn unregister(mut self) {
        if self.trunk.kind == TrunkKind::Register
            && let Ok(peers) = self.trunks.dns.targets(&self.destination()).await
        {
            for peer in peers {
                if !matches!(self.register_for(peer, 0).await, Attempt::NoAnswer(_)) {
                    break;
                }
            }
        }
        // Written as a change, without a `trunk_down` event: an admin's choice is not an outage.
        self.written = Some((TrunkState::Unknown, Some(0)));
        self.status(TrunkState::Unknown, None, "disabled".into(), None, "")
            .await;
    }

    async fn register(&mut self, peer: Peer) -> Attempt {
        let expires = self.trunk.register_expires.max(60);
        self.register_for(peer, expires).await
    }

    /// One REGISTER asking for `expires` seconds (0 removes the binding), answering one challenge.
    async fn register_for(&mut self, peer: Peer, expires: u32) -> Attempt {
        let mut extra = vec![("Expires".to_owned(), expires.to_string())];
        let mut answered_challenge = false;
        loop {
            let Some(ClientOutcome::Final(resp)) = self.send("REGISTER", peer, &extra).await else {
                return Attempt::NoAnswer(None);
            };
            let code = resp.status_code.code();
            match code {
                200..=299 => {
                    let granted = granted_expires(&resp).unwrap_or(expires);
                    return Attempt::Ok(Duration::from_secs(u64::from(granted.max(1))));
                }
                401 | 407 if !answered_challenge => {
                    let Some(header) = self.answer(&resp, code, "REGISTER") else {
                        return Attempt::Refused(code);
                    };
                    extra.push(header);
                    answered_challenge = true;
                }
                500 | 503 => return Attempt::NoAnswer(Some(code)),
                _ => return Attempt::Refused(code),
            }
        }
    }

    async fn options(&mut self, peer: Peer) -> Attempt {
        match self.send("OPTIONS", peer, &[]).await {
            // Any final answer shows the provider is there.
            Some(ClientOutcome::Final(_)) => Attempt::Ok(Duration::from_secs(u64::from(
                self.trunk.qualify_secs.max(10),
            ))),
            _ => Attempt::NoAnswer(None),
        }
    }

    /// The `Authorization`/`Proxy-Authorization` header answering `resp`'s challenge.
    fn answer(&self, resp: &rsip::Response, code: u16, method: &str) -> Option<(String, String)> {
        let t = &self.trunk;
        let (ask, header) = if code == 407 {
            ("Proxy-Authenticate", "Proxy-Authorization")
        } else {
            ("WWW-Authenticate", "Authorization")
        };
        let challenge = pbx_sip::codec::header_values(&resp.headers, ask)
            .take(8)
            .filter_map(|v| DigestChallenge::parse(v).ok())
            .find(|c| t.realm.is_empty() || c.realm == t.realm)?;
        let ha1 = digest::ha1(
            challenge.algorithm,
            &t.username,
            &challenge.realm,
            &t.password,
        );
        let host = match t.port {
            Some(p) => format!("{}:{p}", t.host),
            None => t.host.clone(),
        };
        let uri = format!("sip:{host}");
        let cnonce = &dialog::token()[..16];
        let creds = Credentials::answer(&challenge, &t.username, &ha1, method, &uri, cnonce, 1);
        Some((header.to_owned(), creds.to_header_value()))
    }

    /// Replicates the trunk's state when it changed, with its event.
    async fn status(
        &mut self,
        state: TrunkState,
        last_status: Option<u16>,
        detail: String,
        registered_until: Option<u64>,
        server: &str,
    ) {
        let name = self.trunk.name.clone();
        metrics::gauge!("pbx_trunk_up", "trunk" => name.clone()).set(
            if matches!(state, TrunkState::Registered | TrunkState::Reachable) {
                1.0
            } else {
                0.0
            },
        );
        let was = self.written;
        let changed = was != Some((state, last_status));
        if !changed && state != TrunkState::Registered {
            return;
        }
        let record = TrunkStatus {
            name: name.clone(),
            state,
            last_status,
            detail: detail.clone(),
            registered_until,
            server: server.to_owned(),
            since: now_millis(),
            node_id: self.trunks.cluster.node_id(),
        };
        if let Err(e) = self
            .trunks
            .cluster
            .propose(storage::Command::PutTrunkStatus(record))
            .await
        {
            tracing::warn!(trunk = %name, error = %e, "trunk state not stored");
            return;
        }
        self.written = Some((state, last_status));
        if !changed {
            return;
        }
        let up = matches!(state, TrunkState::Registered | TrunkState::Reachable);
        let was_up =
            was.is_some_and(|(s, _)| matches!(s, TrunkState::Registered | TrunkState::Reachable));
        tracing::info!(trunk = %name, state = state.as_str(), ?last_status, %detail, "trunk state changed");
        if up && !was_up {
            let msg = format!("trunk {name} is {}: {detail}", state.as_str());
            self.trunks
                .events
                .raise("trunk_up", Severity::Info, None, msg);
        } else if !up && (was_up || was.is_none()) {
            let msg = format!("trunk {name} is {}: {detail}", state.as_str());
            self.trunks
                .events
                .raise("trunk_down", Severity::Warning, None, msg);
        }
    }
}

/// The registration time the registrar granted: the `expires` of a Contact, else `Expires`.
fn granted_expires(resp: &rsip::Response) -> Option<u32> {
    let from_contact = pbx_sip::codec::header_values(&resp.headers, "Contact")
        .flat_map(|v| v.split(';'))
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("expires")
                .then(|| v.trim().parse().ok())
                .flatten()
        });
    from_contact
        .or_else(|| dialog::first(&resp.headers, "Expires").and_then(|v| v.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_come_before_expiry_and_never_in_a_burst() {
        assert_eq!(
            refresh_after(Duration::from_secs(600)),
            Duration::from_secs(480)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(60)),
            Duration::from_secs(48)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(1)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn backoff_doubles_to_a_ceiling() {
        let secs: Vec<u64> = (0..9).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn the_granted_time_is_read_from_the_contact_first() {
        let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.18.0.1;branch=z9hG4bKx\r\n\
            From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 2 REGISTER\r\n\
            Contact: <sip:a@198.18.0.1:5060>;expires=120\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n";
        let resp = rsip::Response::try_from(text).unwrap();
        assert_eq!(granted_expires(&resp), Some(120));
    }
}
