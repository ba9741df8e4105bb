//! The RFC 3261 §17 transaction layer, sans-IO.
//!
//! One [`TransactionLayer`] per SIP endpoint holds every client and server transaction. It does no I/O
//! and reads no clock: inputs are `handle_*` calls carrying `now`, outputs are drained with
//! [`TransactionLayer::poll_transmit`], [`TransactionLayer::poll_event`] and
//! [`TransactionLayer::poll_timeout`].
//!
//! # Driving it
//!
//! After **every** input (`handle_request`, `handle_response`, `handle_timeout`,
//! `handle_transport_error`, `respond`, `send_request`, `cancel`, `send_stateless`), drain
//! `poll_transmit` and `poll_event` until both return `None`, then sleep until `poll_timeout` (or the
//! next packet) and call `handle_timeout(now)`. Waking early is harmless; waking late only delays
//! retransmissions.
//!
//! # What the layer does on its own
//!
//! * Retransmissions (Timers A, E, G) over UDP, none over TCP/TLS; wait timers D, I, J, K are zero on
//!   reliable transports, so those transactions end at once.
//! * Request retransmissions are absorbed; the last response is re-sent.
//! * A `100 Trying` for an INVITE the TU has not answered within `trying_delay` (§17.2.1), or at once
//!   when the UAC retransmits before that.
//! * The ACK for a non-2xx final response to an INVITE it sent (§17.1.1.3). The ACK for a 2xx is the
//!   TU's (dialog) job: build it and pass it to [`TransactionLayer::send_stateless`].
//! * Incoming CANCEL: answered `200` (or `481` when no INVITE transaction matches) inside the layer,
//!   statelessly (a retransmitted CANCEL gets the same answer, with the same To tag), with one
//!   [`TxEvent::Cancelled`] for the INVITE, while it awaits its final response, so the TU answers it
//!   `487`. A CANCEL takes no room in the transaction table.
//! * Outgoing CANCEL ([`TransactionLayer::cancel`]): built per §9.1 and run as a client non-INVITE
//!   transaction of its own, deferred until a provisional response arrived; its responses are not
//!   reported (the INVITE's `487` is what matters).
//! * With `retransmit_2xx` (default on), the 2xx to an INVITE is re-sent (T1 doubling to T2, UDP
//!   only) until the ACK arrives or Timer L fires (§13.3.1.4). Either way, a 2xx whose ACK never came
//!   ends with `Timeout { timer: Timer::L }`: the TU should send BYE.
//! * Overload: beyond `max_transactions` live transactions, new requests get a stateless `503` (or are
//!   dropped, see [`OverloadAction`]) and `send_request` fails with [`TxError::Overloaded`]; ACK and
//!   CANCEL are still processed. The CANCEL the layer sends for [`TransactionLayer::cancel`] is allowed
//!   past the bound (at most one per INVITE client transaction).
//! * Every transaction ends by a timer or at once: none waits on the TU forever. A server non-INVITE
//!   the TU never answers times out after 64·T1 (Timer F, reported), an INVITE after Timer C.
//! * Timer C guards INVITEs stuck in Proceeding: an outgoing INVITE is cancelled, an incoming one is
//!   answered `408` (with a `Timeout` event naming Timer C).
//!
//! # Matching
//!
//! Server transactions match on the top Via branch (RFC 3261 magic cookie `z9hG4bK` required), the
//! sent-by and the method (ACK matching INVITE); client transactions on the branch and the CSeq method.
//! RFC 2543 matching is not implemented: a request whose top Via has no cookie branch creates a new,
//! unmatchable transaction each time it arrives (its retransmissions reach the TU as new requests), a
//! CANCEL without one gets `481`, an ACK without one can only match a 2xx as below, else it reaches the
//! TU as `Ack { tx: None }` (so does the ACK for a stateless `400`/`503` from the layer).
//! An ACK for a 2xx (a new branch) is matched to the INVITE transaction that sent the 2xx by Call-ID,
//! CSeq number and From tag.
//!
//! # Bad input
//!
//! Nothing panics. A request without a parsable top Via is dropped (it cannot be answered); one
//! without valid CSeq, Call-ID, From or To, or whose CSeq method differs from its method, gets a
//! stateless `400` (an ACK is dropped). A response that matches no transaction is dropped, except a 2xx
//! to an INVITE, which is reported as [`TxEvent::StrayResponse`] (a late or forked 2xx that the TU must
//! ACK and BYE). A response with more than one Via is dropped (§18.1.2).

mod client;
mod finished;
mod key;
mod message;
mod server;
mod timer;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rsip::{Method, Request, Response, SipMessage};
use tracing::debug;

use self::client::ClientTx;
use self::finished::Finished;
use self::key::{
    AckKey, ClientKey, MethodCode, ServerKey, TopVia, call_id, cseq, from_value, tag_param,
    to_value, top_via, via_count,
};
use self::message::{TagGen, build_response, encode_response, reason, response_skeleton};
use self::server::{ServerTx, Step};
pub use self::timer::Timer;
use self::timer::TimerQueue;

/// The transport a message travels on. TCP and TLS are reliable: no retransmissions, zero wait timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn is_reliable(self) -> bool {
        !matches!(self, Self::Udp)
    }
}

/// The remote end of a transaction: where its messages go and come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// Bytes to send to a peer (a whole SIP message, ready for the socket or the stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub peer: Peer,
    pub bytes: Vec<u8>,
}

/// A client transaction: a request this endpoint sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTxId(u64);

/// A server transaction: a request this endpoint received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTxId(u64);

impl ServerTxId {
    /// An identifier made outside a transaction layer: for harnesses that drive a transaction user
    /// (a call's logic) in virtual time. A layer never hands out an identifier made this way.
    pub fn from_raw(n: u64) -> Self {
        Self(n | 1 << 63)
    }
}

/// Either kind of transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxId {
    Client(ClientTxId),
    Server(ServerTxId),
}

/// What the layer tells the transaction user (the PBX logic).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxEvent {
    /// A new request; answer it with [`TransactionLayer::respond`].
    Request {
        tx: ServerTxId,
        req: Request,
        peer: Peer,
    },
    /// A response to a request we sent (provisional, final, and in RFC 6026 Accepted state every
    /// further 2xx: retransmissions and forks).
    Response { tx: ClientTxId, resp: Response },
    /// An ACK for a 2xx (its own transaction, §17.1.1.3), or any ACK that matches no transaction.
    /// `tx` is the INVITE server transaction that sent the 2xx, when it is still there.
    Ack {
        tx: Option<ServerTxId>,
        req: Request,
        peer: Peer,
    },
    /// A response that matches no transaction: a 2xx to an INVITE whose transaction has ended.
    StrayResponse { resp: Response, peer: Peer },
    /// A CANCEL for this INVITE arrived (the layer answered it `200`); answer the INVITE `487`.
    Cancelled { tx: ServerTxId },
    /// A timer expired (B, F, H: no answer; L: no ACK for our 2xx; C: the layer answered `408` or sent
    /// CANCEL for the TU). The TU can no longer respond on a server transaction after this.
    Timeout { tx: TxId, timer: Timer },
    /// The transport failed for this transaction's peer (§17.1.4, §17.2.4); the transaction is gone.
    TransportError { tx: TxId },
    /// The transaction is gone; its id will not appear again.
    Terminated { tx: TxId },
}

/// Why the layer refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    #[error("unknown or terminated transaction")]
    UnknownTransaction,
    #[error("cannot {action} in state {state}")]
    InvalidState {
        action: &'static str,
        state: &'static str,
    },
    #[error("the request has no parsable Via header")]
    MissingVia,
    #[error("the top Via has no RFC 3261 branch (z9hG4bK…)")]
    MissingBranch,
    #[error("missing or invalid {0} header")]
    InvalidHeader(&'static str),
    #[error("the CSeq method does not match the request method")]
    CSeqMismatch,
    #[error("ACK is not a transaction: send it with send_stateless")]
    AckIsNotATransaction,
    #[error("a transaction with this branch and method already exists")]
    DuplicateTransaction,
    #[error("too many live transactions")]
    Overloaded,
    #[error("invalid status code {0}")]
    InvalidStatus(u16),
    #[error("only an INVITE can be cancelled")]
    NotInvite,
}

impl TxError {
    /// The SIP status that best describes the error on the wire, were it reported to a peer.
    pub fn sip_status(&self) -> u16 {
        match self {
            Self::UnknownTransaction => 481,
            Self::Overloaded => 503,
            Self::InvalidState { .. } | Self::DuplicateTransaction => 500,
            _ => 400,
        }
    }
}

/// RFC 3261 timer values (§17.1.1.1, table 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; retransmission base. Default 500 ms (at least 1 ms is used).
    pub t1: Duration,
    /// Longest retransmission interval for non-INVITE requests and INVITE responses. Default 4 s.
    pub t2: Duration,
    /// Longest time a message stays in the network. Default 5 s.
    pub t4: Duration,
    /// Timer D on unreliable transports (client INVITE Completed). Default 32 s.
    pub timer_d: Duration,
    /// Longest Proceeding of an INVITE (Timer C): outgoing ones are cancelled, incoming ones answered
    /// `408`. Default 180 s.
    pub timer_c: Duration,
    /// Automatic `100 Trying` to an INVITE the TU has not answered; `None` disables. Default 200 ms.
    pub trying_delay: Option<Duration>,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
            timer_c: Duration::from_secs(180),
            trying_delay: Some(Duration::from_millis(200)),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, J, L, M.
    pub fn t64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// What happens to a new request when `max_transactions` are live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverloadAction {
    /// Answer a stateless `503 Service Unavailable`.
    #[default]
    Reject,
    /// Drop silently (no reflection towards spoofed sources).
    Drop,
}

/// Settings of a [`TransactionLayer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionConfig {
    pub timers: TimerConfig,
    /// Bound on live transactions (client + server). Default 100 000. Finished non-INVITE server
    /// transactions over UDP (waiting out Timer J only to answer retransmissions) are not live: they
    /// are bounded by `max_finished`.
    pub max_transactions: usize,
    /// Bound on finished non-INVITE server transactions kept for retransmissions (about 0.6 KB each:
    /// a key digest, the peer and the encoded final response). Past it the oldest is forgotten before
    /// its Timer J; a retransmission of it is then a new request. Default 200 000.
    pub max_finished: usize,
    pub overload: OverloadAction,
    /// Retransmit the 2xx to an INVITE until its ACK (§13.3.1.4) on behalf of the TU. Default true.
    pub retransmit_2xx: bool,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        Self {
            timers: TimerConfig::default(),
            max_transactions: 100_000,
            max_finished: 200_000,
            overload: OverloadAction::Reject,
            retransmit_2xx: true,
        }
    }
}

impl From<TimerConfig> for TransactionConfig {
    fn from(timers: TimerConfig) -> Self {
        Self {
            timers,
            ..Self::default()
        }
    }
}

/// Output queues and timers shared by all transactions.
#[derive(Debug)]
pub(crate) struct Io {
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
    timers: TimerQueue,
    tags: TagGen,
}

impl Io {
    fn transmit(&mut self, peer: Peer, bytes: Vec<u8>) {
        self.transmits.push_back(Transmit { peer, bytes });
    }
}

/// `now + delay`, or `None` when it does not fit in an `Instant` (the timer never fires).
fn after(now: Instant, delay: Duration) -> Option<Instant> {
    now.checked_add(delay)
}

fn double(interval: Duration) -> Duration {
    interval.saturating_mul(2)
}

/// Header fields of an incoming request, validated.
struct RequestInfo {
    via: TopVia,
    seq: u32,
    call_id: String,
    from_tag: Option<String>,
}

fn inspect_request(req: &Request) -> Result<RequestInfo, TxError> {
    let via = top_via(&req.headers).ok_or(TxError::MissingVia)?;
    let (seq, method) = cseq(&req.headers).ok_or(TxError::InvalidHeader("CSeq"))?;
    if method != req.method {
        return Err(TxError::CSeqMismatch);
    }
    let call_id = call_id(&req.headers).ok_or(TxError::InvalidHeader("Call-ID"))?;
    let from = from_value(&req.headers).ok_or(TxError::InvalidHeader("From"))?;
    to_value(&req.headers).ok_or(TxError::InvalidHeader("To"))?;
    Ok(RequestInfo {
        from_tag: tag_param(from).map(str::to_owned),
        call_id: call_id.to_owned(),
        via,
        seq,
    })
}

/// The §17 transaction layer of one SIP endpoint. See the [module documentation](self).
#[derive(Debug)]
pub struct TransactionLayer {
    config: TransactionConfig,
    next_id: u64,
    clients: HashMap<ClientTxId, ClientTx>,
    client_keys: HashMap<ClientKey, ClientTxId>,
    servers: HashMap<ServerTxId, ServerTx>,
    server_keys: HashMap<ServerKey, ServerTxId>,
    acks: HashMap<AckKey, ServerTxId>,
    by_peer: HashMap<Peer, HashSet<TxId>>,
    finished: Finished,
    io: Io,
}

impl TransactionLayer {
    pub fn new(config: TransactionConfig) -> Self {
        let mut config = config;
        let timers = &mut config.timers;
        timers.t1 = timers.t1.max(Duration::from_millis(1));
        timers.t2 = timers.t2.max(timers.t1);
        Self {
            finished: Finished::new(config.max_finished),
            config,
            next_id: 0,
            clients: HashMap::new(),
            client_keys: HashMap::new(),
            servers: HashMap::new(),
            server_keys: HashMap::new(),
            acks: HashMap::new(),
            by_peer: HashMap::new(),
            io: Io {
                transmits: VecDeque::new(),
                events: VecDeque::new(),
                timers: TimerQueue::default(),
                tags: TagGen::new(),
            },
        }
    }

    pub fn config(&self) -> &TransactionConfig {
        &self.config
    }

    /// Transactions, client and server, including finished ones waiting out Timer J.
    pub fn len(&self) -> usize {
        self.live() + self.finished.len()
    }

    /// Transactions in progress: what `max_transactions` bounds.
    pub fn live(&self) -> usize {
        self.clients.len() + self.servers.len()
    }

    /// Bytes of messages the live transactions keep (requests, responses, ACKs), counted by
    /// encoding them: O(live transactions), for tests and diagnostics, not for every message.
    pub fn held_bytes(&self) -> usize {
        let clients: usize = self.clients.values().map(ClientTx::held_bytes).sum();
        let servers: usize = self.servers.values().map(ServerTx::held_bytes).sum();
        clients + servers
    }

    /// Finished non-INVITE server transactions kept to answer retransmissions.
    pub fn finished(&self) -> usize {
        self.finished.len()
    }

    /// Finished transactions forgotten before their Timer J because `max_finished` were kept.
    pub fn finished_forgotten_early(&self) -> u64 {
        self.finished.forgotten_early()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Next message to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.io.transmits.pop_front()
    }

    /// Next event for the TU.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.io.events.pop_front()
    }

    /// When to call [`Self::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (
            self.io.timers.next_deadline(),
            self.finished.next_deadline(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn stateless_reply(&mut self, req: &Request, peer: Peer, code: u16, reason_phrase: &str) {
        let tag = self.io.tags.next();
        let resp = build_response(
            &response_skeleton(&req.headers),
            code,
            reason_phrase,
            Some(&tag),
        );
        self.io.transmit(peer, encode_response(&resp));
    }

    /// A request arrived from `peer`.
    pub fn handle_request(&mut self, now: Instant, req: Request, peer: Peer) {
        let info = match inspect_request(&req) {
            Ok(info) => info,
            Err(TxError::MissingVia) => {
                debug!(method = %req.method, "request without a parsable Via dropped");
                return;
            }
            Err(error) => {
                debug!(method = %req.method, %error, "malformed request");
                if req.method != Method::Ack {
                    let phrase = match error {
                        TxError::CSeqMismatch => "CSeq Method Mismatch".to_owned(),
                        TxError::InvalidHeader(name) => format!("Missing or Invalid {name}"),
                        _ => reason(400).to_owned(),
                    };
                    self.stateless_reply(&req, peer, 400, &phrase);
                }
                return;
            }
        };
        let key = info.via.rfc3261_branch().map(|branch| ServerKey {
            branch: branch.to_owned(),
            sent_by: info.via.sent_by.clone(),
            method: MethodCode::of(match req.method {
                Method::Ack => Method::Invite,
                method => method,
            }),
        });
        match req.method {
            Method::Ack => self.handle_ack(now, req, peer, key, info),
            Method::Cancel => self.handle_cancel(req, peer, key),
            _ => {
                if let Some(id) = key.as_ref().and_then(|k| self.server_keys.get(k)) {
                    if let Some(tx) = self.servers.get_mut(id) {
                        tx.on_retransmission(&mut self.io);
                    }
                    return;
                }
                if let Some((to, response)) = key.as_ref().and_then(|k| self.finished.lookup(k)) {
                    let bytes = response.to_vec();
                    self.io.transmit(to, bytes);
                    return;
                }
                if self.live() >= self.config.max_transactions {
                    debug!(method = %req.method, "transaction table full");
                    if self.config.overload == OverloadAction::Reject {
                        self.stateless_reply(&req, peer, 503, reason(503));
                    }
                    return;
                }
                let id = ServerTxId(self.next_id());
                let tx = ServerTx::start(now, id, key, &req, peer, &self.config, &mut self.io);
                self.insert_server(tx);
                self.io
                    .events
                    .push_back(TxEvent::Request { tx: id, req, peer });
            }
        }
    }

    fn handle_ack(
        &mut self,
        now: Instant,
        req: Request,
        peer: Peer,
        key: Option<ServerKey>,
        info: RequestInfo,
    ) {
        let by_key = key.as_ref().and_then(|k| self.server_keys.get(k)).copied();
        let id = by_key.or_else(|| {
            self.acks
                .get(&AckKey {
                    call_id: info.call_id,
                    cseq: info.seq,
                    from_tag: info.from_tag,
                })
                .copied()
        });
        match id.and_then(|id| self.servers.get_mut(&id)) {
            Some(tx) => {
                let id = tx.id;
                if tx.on_ack(now, req, peer, &self.config, &mut self.io) {
                    self.remove_server(id);
                }
            }
            None => self.io.events.push_back(TxEvent::Ack {
                tx: None,
                req,
                peer,
            }),
        }
    }

    /// CANCEL (§9.2) is answered statelessly: `200` when it matches an INVITE server transaction,
    /// `481` otherwise. A retransmitted CANCEL gets the same answer again, so it needs no transaction
    /// of its own (and a CANCEL flood takes no room in the table).
    fn handle_cancel(&mut self, req: Request, peer: Peer, key: Option<ServerKey>) {
        let invite = key.and_then(|k| {
            let invite_key = ServerKey {
                method: MethodCode::of(Method::Invite),
                ..k
            };
            self.server_keys.get(&invite_key).copied()
        });
        let (code, tag) = match invite.and_then(|id| self.servers.get_mut(&id)) {
            Some(tx) => {
                if tx.on_cancel() {
                    self.io.events.push_back(TxEvent::Cancelled { tx: tx.id });
                }
                (200, tx.cancel_tag(&mut self.io.tags))
            }
            None => (481, self.io.tags.next()),
        };
        let resp = build_response(
            &response_skeleton(&req.headers),
            code,
            reason(code),
            Some(&tag),
        );
        self.io.transmit(peer, encode_response(&resp));
    }

    /// A response arrived from `peer`.
    pub fn handle_response(&mut self, now: Instant, resp: Response, peer: Peer) {
        let key = match (top_via(&resp.headers), cseq(&resp.headers)) {
            (Some(via), Some((_, method))) => via.rfc3261_branch().map(|branch| ClientKey {
                branch: branch.to_owned(),
                method: MethodCode::of(method),
            }),
            _ => None,
        };
        if via_count(&resp.headers) != 1 {
            debug!(
                status = resp.status_code.code(),
                "response without exactly one Via dropped"
            );
            return;
        }
        let Some(id) = key.and_then(|k| self.client_keys.get(&k).copied()) else {
            let code = resp.status_code.code();
            let to_invite = matches!(cseq(&resp.headers), Some((_, Method::Invite)));
            if (200..300).contains(&code) && to_invite {
                self.io
                    .events
                    .push_back(TxEvent::StrayResponse { resp, peer });
            } else {
                debug!(status = code, "response matching no transaction dropped");
            }
            return;
        };
        let Some(tx) = self.clients.get_mut(&id) else {
            return;
        };
        let step = tx.on_response(now, resp, &self.config.timers, &mut self.io);
        self.after_client_step(now, id, step);
    }

    fn after_client_step(&mut self, now: Instant, id: ClientTxId, step: client::ClientStep) {
        if step.send_cancel {
            self.start_cancel(now, id);
        }
        if step.terminate {
            self.remove_client(id);
        }
    }

    fn start_cancel(&mut self, now: Instant, invite: ClientTxId) {
        let Some(tx) = self.clients.get(&invite) else {
            return;
        };
        let Some(cancel) = tx.cancel_request() else {
            return;
        };
        let peer = tx.peer;
        let key = ClientKey {
            method: MethodCode::of(Method::Cancel),
            ..tx.key.clone()
        };
        if self.client_keys.contains_key(&key) {
            return;
        }
        let id = ClientTxId(self.next_id());
        let mut tx = ClientTx::start(
            now,
            id,
            key,
            cancel,
            peer,
            &self.config.timers,
            &mut self.io,
        );
        tx.silent = true;
        self.insert_client(tx);
    }

    /// Answers the request of a server transaction. Provisional responses keep it open; a final one
    /// completes it (a 2xx to an INVITE moves it to Accepted, RFC 6026). Status 100–699 only.
    pub fn respond(&mut self, now: Instant, tx: ServerTxId, resp: Response) -> Result<(), TxError> {
        let server = self
            .servers
            .get_mut(&tx)
            .ok_or(TxError::UnknownTransaction)?;
        let step = server.respond(now, &resp, &self.config, &mut self.io)?;
        let code = resp.status_code.code();
        if server.is_invite()
            && (200..300).contains(&code)
            && server.ack_key.is_none()
            && let (Some((seq, _)), Some(call_id)) = (cseq(&resp.headers), call_id(&resp.headers))
        {
            let key = AckKey {
                call_id: call_id.to_owned(),
                cseq: seq,
                from_tag: from_value(&resp.headers)
                    .and_then(tag_param)
                    .map(str::to_owned),
            };
            server.ack_key = Some(key.clone());
            self.acks.insert(key, tx);
        }
        match step {
            Step::Open => {}
            Step::Over => self.remove_server(tx),
            Step::Finished => self.finish_server(now, tx),
        }
        Ok(())
    }

    /// Moves a non-INVITE server transaction that sent its final over UDP to the finished table for
    /// Timer J. One without an RFC 3261 branch cannot be matched again, so it ends at once.
    fn finish_server(&mut self, now: Instant, id: ServerTxId) {
        let Some(mut tx) = self.servers.remove(&id) else {
            return;
        };
        tx.clear_timers(&mut self.io);
        let peer = tx.peer;
        if let Some(key) = &tx.key
            && self.server_keys.get(key) == Some(&id)
        {
            self.server_keys.remove(key);
        }
        self.forget_peer(peer, TxId::Server(id));
        let until = after(now, self.config.timers.t64());
        let gone = match (tx.into_finished(), until) {
            ((Some(key), Some(response)), Some(until)) => {
                self.finished.insert(&key, id, peer, response, until)
            }
            _ => Some(id),
        };
        if let Some(gone) = gone {
            self.io.events.push_back(TxEvent::Terminated {
                tx: TxId::Server(gone),
            });
        }
    }

    /// Starts a client transaction and sends `req` to `peer`. The TU builds the request, including a
    /// top Via with a unique `z9hG4bK` branch. ACK is not a transaction (see
    /// [`Self::send_stateless`]).
    pub fn send_request(
        &mut self,
        now: Instant,
        req: Request,
        peer: Peer,
    ) -> Result<ClientTxId, TxError> {
        if req.method == Method::Ack {
            return Err(TxError::AckIsNotATransaction);
        }
        let via = top_via(&req.headers).ok_or(TxError::MissingVia)?;
        let branch = via.rfc3261_branch().ok_or(TxError::MissingBranch)?;
        let (_, method) = cseq(&req.headers).ok_or(TxError::InvalidHeader("CSeq"))?;
        if method != req.method {
            return Err(TxError::CSeqMismatch);
        }
        call_id(&req.headers).ok_or(TxError::InvalidHeader("Call-ID"))?;
        let key = ClientKey {
            branch: branch.to_owned(),
            method: MethodCode::of(method),
        };
        if self.client_keys.contains_key(&key) {
            return Err(TxError::DuplicateTransaction);
        }
        if self.len() >= self.config.max_transactions {
            return Err(TxError::Overloaded);
        }
        let id = ClientTxId(self.next_id());
        let tx = ClientTx::start(now, id, key, req, peer, &self.config.timers, &mut self.io);
        self.insert_client(tx);
        Ok(id)
    }

    /// Cancels an INVITE client transaction (§9.1). The CANCEL is sent at once if a provisional
    /// response has arrived, otherwise as soon as one does. Cancelling twice is a no-op; cancelling
    /// after a final response is an error.
    pub fn cancel(&mut self, now: Instant, tx: ClientTxId) -> Result<(), TxError> {
        let client = self
            .clients
            .get_mut(&tx)
            .ok_or(TxError::UnknownTransaction)?;
        if client.silent {
            return Err(TxError::NotInvite);
        }
        if client.request_cancel(now, &self.config.timers, &mut self.io)? {
            self.start_cancel(now, tx);
        }
        Ok(())
    }

    /// Sends a message outside any transaction (the ACK for a 2xx, a stateless response).
    pub fn send_stateless(&mut self, peer: Peer, msg: SipMessage) {
        self.io.transmit(peer, crate::codec::serialize(&msg));
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(id) = self.finished.pop_due(now) {
            // Timer J.
            self.io.events.push_back(TxEvent::Terminated {
                tx: TxId::Server(id),
            });
        }
        while let Some((owner, timer)) = self.io.timers.pop_due(now) {
            match owner {
                TxId::Client(id) => {
                    let Some(tx) = self.clients.get_mut(&id) else {
                        continue;
                    };
                    let step = tx.on_timer(now, timer, &self.config.timers, &mut self.io);
                    self.after_client_step(now, id, step);
                }
                TxId::Server(id) => {
                    let Some(tx) = self.servers.get_mut(&id) else {
                        continue;
                    };
                    if tx.on_timer(now, timer, &self.config, &mut self.io) {
                        self.remove_server(id);
                    }
                }
            }
        }
    }

    /// Sending to `peer` failed (ICMP error, connection refused or closed): every transaction with that
    /// peer reports [`TxEvent::TransportError`] and ends (§17.1.4, §17.2.4).
    pub fn handle_transport_error(&mut self, _now: Instant, peer: Peer) {
        let Some(ids) = self.by_peer.get(&peer) else {
            return;
        };
        let mut ids: Vec<TxId> = ids.iter().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let silent = match id {
                TxId::Client(c) => self.clients.get(&c).is_none_or(|tx| tx.silent),
                TxId::Server(s) => !self.servers.contains_key(&s),
            };
            if !silent {
                self.io.events.push_back(TxEvent::TransportError { tx: id });
            }
            match id {
                TxId::Client(c) => self.remove_client(c),
                TxId::Server(s) => self.remove_server(s),
            }
        }
    }

    fn insert_client(&mut self, tx: ClientTx) {
        self.client_keys.insert(tx.key.clone(), tx.id);
        self.by_peer
            .entry(tx.peer)
            .or_default()
            .insert(TxId::Client(tx.id));
        self.clients.insert(tx.id, tx);
    }

    fn insert_server(&mut self, tx: ServerTx) {
        if let Some(key) = &tx.key {
            self.server_keys.insert(key.clone(), tx.id);
        }
        self.by_peer
            .entry(tx.peer)
            .or_default()
            .insert(TxId::Server(tx.id));
        self.servers.insert(tx.id, tx);
    }

    fn forget_peer(&mut self, peer: Peer, id: TxId) {
        if let Some(set) = self.by_peer.get_mut(&peer) {
            set.remove(&id);
            if set.is_empty() {
                self.by_peer.remove(&peer);
            }
        }
    }

    fn remove_client(&mut self, id: ClientTxId) {
        let Some(mut tx) = self.clients.remove(&id) else {
            return;
        };
        tx.clear_timers(&mut self.io);
        if self.client_keys.get(&tx.key) == Some(&id) {
            self.client_keys.remove(&tx.key);
        }
        self.forget_peer(tx.peer, TxId::Client(id));
        if !tx.silent {
            self.io.events.push_back(TxEvent::Terminated {
                tx: TxId::Client(id),
            });
        }
    }

    fn remove_server(&mut self, id: ServerTxId) {
        let Some(mut tx) = self.servers.remove(&id) else {
            return;
        };
        tx.clear_timers(&mut self.io);
        if let Some(key) = &tx.key
            && self.server_keys.get(key) == Some(&id)
        {
            self.server_keys.remove(key);
        }
        if let Some(key) = &tx.ack_key
            && self.acks.get(key) == Some(&id)
        {
            self.acks.remove(key);
        }
        self.forget_peer(tx.peer, TxId::Server(id));
        self.io.events.push_back(TxEvent::Terminated {
            tx: TxId::Server(id),
        });
    }
}

#[cfg(test)]
mod tests;
