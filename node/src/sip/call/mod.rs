//! Calls between extensions: the PBX as a back-to-back user agent with an RTP relay.
//!
//! Every call is one task that owns both legs and the media session: a pure state machine
//! ([`core::CallCore`]) run by a thin driver ([`driver`]). The endpoint and the request handler only
//! route messages to it. The routing table below maps every Call-ID the call uses (the caller's and
//! one per forked branch) and the caller's INVITE transaction to the task.

mod admission;
mod core;
pub(crate) mod dialog;
mod driver;
mod features;
mod hangups;
mod inbound;
mod janitor;
mod limits;
mod on_demand;
mod outbound;
mod pickup;
mod plan;
mod privacy;
mod reach;
mod record;
mod schedule;
mod session;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use cluster::Cluster;
use pbx_sip::transaction::{Peer, ServerTxId, Timer, Transport};

use super::endpoint::EndpointHandle;
use super::transport::Outbound;
use storage::model::{ActiveCall, Service, Transport as GateTransport};

use crate::media::{MediaGuard, PortRange};
use crate::security::Security;
use limits::CallLimits;

pub(crate) use self::core::{Input as CallInput, LegEvent};
pub(crate) use admission::MAX_NUMBER_LEN;
pub(crate) use driver::insert_before_length;
pub(crate) use hangups::run as watch_hangups;
pub(crate) use janitor::{carry_on, end_orphans, index_cdrs, retention};
pub(crate) use schedule::{cluster_zone, local_time};

/// Settings of the call engine (from `[calls]` and `[media]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallConfig {
    pub(crate) ring_timeout: Duration,
    pub(crate) max_duration: Option<Duration>,
    pub(crate) media_timeout: Option<Duration>,
    pub(crate) latch_window: Duration,
    pub(crate) max_per_extension: usize,
    pub(crate) reject_anonymous: bool,
    /// Ring a blind transfer's referrer back when its target does not answer after it hung up.
    pub(crate) transfer_ring_back: bool,
    /// Play music on hold to a phone while the other holds the call.
    pub(crate) hold_music: bool,
    pub(crate) realm: String,
}

#[derive(Default)]
struct Routes {
    by_call_id: HashMap<String, mpsc::UnboundedSender<CallInput>>,
    by_tx: HashMap<ServerTxId, mpsc::UnboundedSender<CallInput>>,
    limits: CallLimits,
    /// Extensions whose phones ring for a call on this node, with how many calls ring them.
    /// The calls ringing each extension's phones on this node, oldest first (a group pickup answers
    /// the call that has waited longest).
    /// Each entry numbered in the order it started ringing.
    ringing: HashMap<String, Vec<(u64, mpsc::UnboundedSender<CallInput>)>>,
    ringing_seq: u64,
}

/// The call engine of one node.
pub(crate) struct Calls {
    pub(crate) cluster: Cluster,
    pub(crate) endpoint: EndpointHandle,
    pub(crate) out: Outbound,
    pub(crate) ports: PortRange,
    pub(crate) config: CallConfig,
    security: Arc<Security>,
    pub(crate) trunks: Arc<super::trunk::Trunks>,
    routes: Mutex<Routes>,
    /// Every call's task: aborted together when this node stops serving phones (the VIP moved away),
    /// which closes their media sockets without ending the calls, for the next owner to carry on.
    tasks: Mutex<JoinSet<()>>,
    /// Woken when an extension starts or stops ringing (busy lamps follow).
    line_changed: Arc<tokio::sync::Notify>,
    /// Where recorded calls go, and in what pieces.
    pub(crate) recording: RecordingSetup,
    /// What held callers hear.
    pub(crate) music: Arc<crate::audio::music::MusicLibrary>,
    /// The agent auto attendants answer with.
    pub(crate) apps: Arc<crate::apps::Apps>,
}

/// How calls are recorded.
pub(crate) struct RecordingSetup {
    pub(crate) store: Arc<crate::audio::AudioStore>,
    pub(crate) segment: Duration,
    pub(crate) retention: Option<Duration>,
}

impl Calls {
    #[expect(
        clippy::too_many_arguments,
        reason = "the engine's whole context, handed over once"
    )]
    pub(crate) fn new(
        cluster: Cluster,
        endpoint: EndpointHandle,
        out: Outbound,
        ports: PortRange,
        config: CallConfig,
        security: Arc<Security>,
        trunks: Arc<super::trunk::Trunks>,
        recording: RecordingSetup,
        apps: Arc<crate::apps::Apps>,
    ) -> Self {
        let music = crate::audio::music::MusicLibrary::new(cluster.clone());
        Self {
            music,
            cluster,
            endpoint,
            out,
            ports,
            config,
            security,
            trunks,
            routes: Mutex::new(Routes::default()),
            tasks: Mutex::new(JoinSet::new()),
            line_changed: Arc::new(tokio::sync::Notify::new()),
            recording,
            apps,
        }
    }

    fn spawn_call(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Stops every call on this node at once, without BYE or CDR: their records stay for the node
    /// that carries them on.
    pub(crate) fn abandon_all(&self) {
        let mut tasks = self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = tasks.len();
        tasks.abort_all();
        drop(tasks);
        *self.routes() = Routes::default();
        metrics::gauge!("pbx_calls_active").set(0.0);
        if n > 0 {
            tracing::info!(
                calls = n,
                "calls handed over: this node no longer serves phones"
            );
        }
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The address the PBX announces for signalling on `transport`: the listener's, or the media
    /// address when the listener is bound to every interface.
    pub(crate) fn local(&self, transport: Transport) -> Option<SocketAddr> {
        let local = self.out.local(transport)?;
        Some(if local.ip().is_unspecified() {
            SocketAddr::new(self.ports.addr(), local.port())
        } else {
            local
        })
    }

    /// What the relay asks before relaying: the firewall's word on media sources it would latch, and
    /// the VIP's in-process fence.
    pub(crate) fn media_guard(&self) -> MediaGuard {
        let security = Arc::clone(&self.security);
        MediaGuard {
            // The PBX's own application agent answers from 127.0.0.1 (this host only); any other
            // address, loopback ones included, is the firewall's to judge.
            may_latch: Arc::new(move |ip| {
                ip == IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
                    || security
                        .gate()
                        .check(ip, Service::Media, GateTransport::Udp)
                        .is_ok()
            }),
            fence: self.out.fence(),
        }
    }

    pub(crate) fn media_addr(&self) -> IpAddr {
        self.ports.addr()
    }

    /// A new INVITE (no To tag): from here on, a CANCEL for it reaches the call.
    pub(crate) fn start(
        self: &Arc<Self>,
        tx: ServerTxId,
        req: rsip::Request,
        raw_uri: String,
        peer: Peer,
        auth: Arc<super::auth::SipAuth>,
    ) {
        let (input, inputs) = mpsc::unbounded_channel();
        self.routes().by_tx.insert(tx, input.clone());
        let this = Arc::clone(self);
        self.spawn_call(async move {
            driver::run(this, tx, req, raw_uri, peer, auth, input, inputs).await;
        });
    }

    /// Routes a request inside an existing dialog. `false` when no call has this Call-ID.
    pub(crate) fn route_request(&self, tx: ServerTxId, req: rsip::Request) -> bool {
        let Some(call_id) = dialog::first(&req.headers, "Call-ID") else {
            return false;
        };
        let Some(input) = self.routes().by_call_id.get(call_id).cloned() else {
            return false;
        };
        input.send(CallInput::Request { tx, req }).is_ok()
    }

    /// An ACK for a 2xx the PBX sent.
    pub(crate) fn route_ack(&self, req: rsip::Request) {
        let Some(call_id) = dialog::first(&req.headers, "Call-ID") else {
            return;
        };
        if let Some(input) = self.routes().by_call_id.get(call_id) {
            let _ = input.send(CallInput::Ack(req));
        }
    }

    /// The caller cancelled its INVITE.
    pub(crate) fn route_cancel(&self, tx: ServerTxId) {
        if let Some(input) = self.routes().by_tx.get(&tx) {
            let _ = input.send(CallInput::Cancelled);
        }
    }

    /// Hangs up the established call `call_id` (its record's id) if this node carries it, as asked by
    /// `by` (an admin). `false` when it has no record here or no call on this node has its caller's
    /// Call-ID (another node carries it, or it is ending).
    pub(crate) fn hang_up(&self, call_id: &str, by: &str) -> bool {
        let record = match self.cluster.reader().get::<ActiveCall>(call_id) {
            Ok(Some(r)) => r,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(call = %call_id, error = %e, "reading a call record failed");
                return false;
            }
        };
        let caller_call_id = record.caller.call_id;
        let Some(input) = self.routes().by_call_id.get(&caller_call_id).cloned() else {
            return false;
        };
        input.send(CallInput::HangUp { by: by.to_owned() }).is_ok()
    }

    /// A server transaction timed out: for an answered INVITE, the caller never ACKed (Timer L).
    pub(crate) fn route_server_timeout(&self, tx: ServerTxId, timer: Timer) {
        if let Some(input) = self.routes().by_tx.get(&tx) {
            let _ = input.send(CallInput::NoAck { timer });
        }
    }

    /// A 2xx outside a pending transaction: a retransmission (our ACK was lost) goes to the call;
    /// one nobody wants is ACKed and hung up, when the layer knows where it came from.
    pub(crate) fn route_stray(&self, resp: rsip::Response, peer: Option<Peer>) {
        let input = dialog::first(&resp.headers, "Call-ID")
            .and_then(|id| self.routes().by_call_id.get(id).cloned());
        match (input, peer) {
            (Some(input), peer) => {
                let _ = input.send(CallInput::Stray { resp, peer });
            }
            (None, Some(peer)) => self.refuse_late_answer(&resp, peer),
            (None, None) => {}
        }
    }

    /// ACK and BYE a 2xx that no call wants.
    pub(crate) fn refuse_late_answer(&self, resp: &rsip::Response, peer: Peer) {
        let Some(local) = self.local(peer.transport) else {
            return;
        };
        let Some((ack, bye)) = dialog::refuse_late_answer(resp, local, peer.transport) else {
            return;
        };
        tracing::debug!(peer = %peer.addr, "hanging up an unwanted answer");
        let endpoint = self.endpoint.clone();
        tokio::spawn(async move {
            endpoint
                .send_stateless(rsip::SipMessage::Request(ack), peer)
                .await;
            let _ = endpoint.request(bye, peer).await;
        });
    }

    fn add_tx(&self, tx: ServerTxId, input: &mpsc::UnboundedSender<CallInput>) {
        self.routes().by_tx.insert(tx, input.clone());
    }

    fn add_call_id(&self, call_id: &str, input: &mpsc::UnboundedSender<CallInput>) {
        self.routes()
            .by_call_id
            .insert(call_id.to_owned(), input.clone());
    }

    /// Extensions whose phones ring now for a call on this node.
    pub(crate) fn ringing_extensions(&self) -> std::collections::HashSet<String> {
        self.routes().ringing.keys().cloned().collect()
    }

    pub(crate) fn line_changed(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.line_changed)
    }

    /// A call's ringing extensions went from `before` to `now`.
    fn set_ringing(
        &self,
        call: &mpsc::UnboundedSender<CallInput>,
        before: &[String],
        now: &[String],
    ) {
        if before == now {
            return;
        }
        {
            let mut routes = self.routes();
            for ext in before.iter().filter(|e| !now.contains(e)) {
                if let Some(calls) = routes.ringing.get_mut(ext) {
                    calls.retain(|(_, c)| !c.same_channel(call));
                    if calls.is_empty() {
                        routes.ringing.remove(ext);
                    }
                }
            }
            for ext in now.iter().filter(|e| !before.contains(e)) {
                routes.ringing_seq += 1;
                let seq = routes.ringing_seq;
                routes
                    .ringing
                    .entry(ext.clone())
                    .or_default()
                    .push((seq, call.clone()));
            }
        }
        self.line_changed.notify_one();
    }

    /// The call that has rung longest among those ringing an extension `wanted` accepts.
    fn ringing_call(
        &self,
        wanted: impl Fn(&str) -> bool,
    ) -> Option<mpsc::UnboundedSender<CallInput>> {
        let routes = self.routes();
        routes
            .ringing
            .iter()
            .filter(|(ext, _)| wanted(ext))
            .flat_map(|(_, calls)| calls.iter())
            .min_by_key(|(seq, _)| *seq)
            .map(|(_, c)| c.clone())
    }

    /// The per-extension call counts.
    fn limits(&self) -> LimitsGuard<'_> {
        LimitsGuard(self.routes())
    }

    /// Forgets every route to a call.
    fn forget(&self, tx: Option<ServerTxId>, call_ids: &[String]) {
        let mut routes = self.routes();
        if let Some(tx) = tx {
            routes.by_tx.remove(&tx);
        }
        for id in call_ids {
            routes.by_call_id.remove(id);
        }
    }
}

/// The call counts, under the routing table's lock.
struct LimitsGuard<'a>(std::sync::MutexGuard<'a, Routes>);

impl std::ops::Deref for LimitsGuard<'_> {
    type Target = CallLimits;
    fn deref(&self) -> &CallLimits {
        &self.0.limits
    }
}

impl std::ops::DerefMut for LimitsGuard<'_> {
    fn deref_mut(&mut self) -> &mut CallLimits {
        &mut self.0.limits
    }
}
