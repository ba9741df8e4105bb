//! Qualifying registered contacts (like Asterisk's `qualify`): the node that accepted a registration
//! sends it OPTIONS now and then, over the phone's own transport and NAT binding, and records in the
//! replicated binding whether the phone answers. Only changes are written.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use rand::Rng as _;

use cluster::Cluster;
use pbx_sip::transaction::{Peer, Transport};
use storage::BindingOp;
use storage::model::Binding;

use super::endpoint::{ClientOutcome, EndpointHandle};
use super::transport::Outbound;
use super::writer::BindingWriter;
use crate::time::now_millis;

/// A phone that has not answered within this time counts as unreachable for this round.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// Pings in flight at once.
const CONCURRENCY: usize = 64;

pub(crate) struct Qualifier {
    pub(crate) cluster: Cluster,
    pub(crate) endpoint: EndpointHandle,
    pub(crate) out: Outbound,
    pub(crate) writer: BindingWriter,
    pub(crate) interval: Duration,
    pub(crate) realm: String,
}

impl Qualifier {
    pub(crate) async fn run(self) {
        let this = Arc::new(self);
        let mut tick = tokio::time::interval(this.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = now_millis();
            let me = this.cluster.node_id();
            let mine: Vec<Binding> = match this.cluster.reader().list::<Binding>() {
                Ok(all) => all
                    .into_iter()
                    .filter(|b| b.node_id == me && b.expires_at > now)
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "reading bindings to qualify failed");
                    continue;
                }
            };
            let changes: Vec<BindingOp> = futures::stream::iter(mine)
                .map(|b| {
                    let this = Arc::clone(&this);
                    async move {
                        let reachable = this.ping(&b).await?;
                        (b.reachable != Some(reachable)).then(|| {
                            tracing::info!(extension = %b.aor, contact = %b.contact, reachable, "contact reachability changed");
                            BindingOp::SetReachable { aor: b.aor, contact: b.contact, reachable }
                        })
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .filter_map(|c| async move { c })
                .collect()
                .await;
            if !changes.is_empty()
                && let Err(e) = this.writer.commit(changes).await
            {
                tracing::warn!(error = %e, "recording reachability failed");
            }
        }
    }

    /// True when the contact answered OPTIONS with any final response; `None` when this node
    /// stopped serving SIP before it could tell (no verdict on the phone).
    async fn ping(&self, b: &Binding) -> Option<bool> {
        let Some(req) = self.options_for(b) else {
            return Some(false);
        };
        let Some(peer) = peer_of(b) else {
            return Some(false);
        };
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(ANSWER_WITHIN, self.endpoint.request(req, peer)).await;
        let ok = match outcome {
            Ok(ClientOutcome::Final(resp)) => {
                // Any final answer proves the phone is there, even 404 or 405 from a picky one.
                tracing::trace!(extension = %b.aor, status = resp.status_code.code(), "contact answered OPTIONS");
                true
            }
            Ok(ClientOutcome::Abandoned) => return None,
            _ => false,
        };
        if ok {
            metrics::histogram!("pbx_sip_qualify_rtt_seconds")
                .record(started.elapsed().as_secs_f64());
        }
        metrics::counter!("pbx_sip_qualify_total", "result" => if ok { "answered" } else { "silent" }).increment(1);
        Some(ok)
    }

    fn options_for(&self, b: &Binding) -> Option<rsip::Request> {
        let transport = transport_of(&b.transport)?;
        let local = self.out.local(transport)?;
        let mut rng = rand::thread_rng();
        let (branch, tag, call): (u64, u32, u64) = (rng.r#gen(), rng.r#gen(), rng.r#gen());
        let proto = match transport {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        };
        let text = format!(
            "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/{proto} {local};branch=z9hG4bK{branch:016x};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:pbx@{realm}>;tag={tag:08x}\r\nTo: <{uri}>\r\n\
             Call-ID: {call:016x}@pbx\r\nCSeq: 1 OPTIONS\r\nUser-Agent: pbx\r\nContent-Length: 0\r\n\r\n",
            uri = b.contact,
            realm = self.realm,
        );
        rsip::Request::try_from(text.as_str()).ok()
    }
}

fn transport_of(name: &str) -> Option<Transport> {
    match name {
        "udp" => Some(Transport::Udp),
        "tcp" => Some(Transport::Tcp),
        "tls" => Some(Transport::Tls),
        _ => None,
    }
}

/// Where the phone's REGISTER came from: through NAT, that is where it can be reached.
fn peer_of(b: &Binding) -> Option<Peer> {
    let addr: SocketAddr = b.source.parse().ok()?;
    Some(Peer {
        transport: transport_of(&b.transport)?,
        addr,
    })
}
