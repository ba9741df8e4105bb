//! One call as a pure state machine: the caller's INVITE forked to the callee's devices, the first
//! answer winning, the dialog record committed before the caller hears `200 OK`, in-dialog requests
//! mapped between the legs, timers, and the CDR at the end.
//!
//! No sockets, tasks or clocks in here. The driver ([`super::driver`]) feeds [`Input`]s and the time,
//! and executes the [`Action`]s the core queues, as `quinn` drives `quinn-proto`. Actions that have an
//! answer the core waits for (a commit, added media ports, a request's final response) are answered
//! with an input naming them.

mod attended;
mod hunt;
mod music;
mod pickup;
mod prack;
mod ringing;
mod stages;
mod talk;
#[cfg(test)]
mod tests;
mod transfer;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use pbx_sip::sdp::Sdp;
use pbx_sip::transaction::{Peer, ServerTxId, Timer, Transport};
use storage::model::{ActiveCall, CallDetail, DialogLeg, MediaStream, UnixMillis};

pub(crate) use self::attended::{Handover, HandoverReply, NoHandover, Replaces};
pub(crate) use self::pickup::Picker;
use super::CallConfig;
use super::admission::{Admitted, Refusal, TrunkCredentials, TrunkTarget};
use super::dialog;
use super::plan::Stage;
use super::record::{self, CdrFacts, Outcome};
use crate::media::{Latch, PeerMedia, Side};
use crate::sip::endpoint::ClientOutcome;

pub(crate) const CALLER: usize = 0;
pub(crate) const CALLEE: usize = 1;

/// How often an established call looks at its media (idle time, latched sources).
pub(crate) const MEDIA_CHECK: Duration = Duration::from_secs(2);

/// Added to every CSeq the PBX sends on a call carried on from its record: the process that set the
/// call up may have sent requests after the record was last written.
pub(crate) const CSEQ_HEADROOM: u32 = 1000;

/// How many ACKs per leg are kept for retransmitted answers.
const ACKS_KEPT: usize = 4;

/// The time, as the driver read it: monotonic for timers, wall-clock for records and CDRs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub(crate) at: Instant,
    pub(crate) wall: UnixMillis,
}

/// The addresses the PBX announces for signalling, per transport.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Locals {
    pub(crate) udp: Option<SocketAddr>,
    pub(crate) tcp: Option<SocketAddr>,
    pub(crate) tls: Option<SocketAddr>,
}

impl Locals {
    pub(crate) fn get(&self, t: Transport) -> Option<SocketAddr> {
        match t {
            Transport::Udp => self.udp,
            Transport::Tcp => self.tcp,
            Transport::Tls => self.tls,
        }
    }
}

/// What a call needs to know about the node it runs on.
#[derive(Debug, Clone)]
pub(crate) struct Env {
    pub(crate) node_id: u64,
    pub(crate) media_addr: IpAddr,
    pub(crate) locals: Locals,
    pub(crate) config: CallConfig,
}

/// An event of one forked branch's INVITE client transaction.
#[derive(Debug)]
pub(crate) enum LegEvent {
    Response(rsip::Response),
    /// No final answer in time (Timer B).
    Timeout,
    /// The transport to the phone failed, or the INVITE could not be sent.
    Failed,
    /// The transaction is over.
    Terminated,
}

/// Why the core asked for a dialog record to be committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The callee answered: the caller hears `200 OK` only once the record is stored.
    Answer,
    /// The session changed (re-INVITE, latched sources): best effort.
    Update,
    /// A call carried on from its record now names this node.
    Claim,
    /// A transfer's new party took the referrer's place: the referrer is told once it is stored.
    Transfer,
}

/// What reaches a call.
#[derive(Debug)]
pub(crate) enum Input {
    /// A request inside one of the call's dialogs.
    Request { tx: ServerTxId, req: rsip::Request },
    /// An ACK for a 2xx the PBX sent on one of the legs.
    Ack(rsip::Request),
    /// The caller sent CANCEL (the transaction layer answered it).
    Cancelled,
    /// The caller's INVITE transaction timed out after our 2xx (Timer L: no ACK).
    NoAck { timer: Timer },
    /// A 2xx outside any pending transaction: a retransmission (our ACK was lost) or a late answer.
    /// `peer` is where it came from, when the transaction layer knows.
    Stray {
        resp: rsip::Response,
        peer: Option<Peer>,
    },
    /// An event of a forked branch's INVITE.
    Branch { index: usize, event: LegEvent },
    /// The final outcome of a request sent with [`Action::Request`].
    Answer { id: u64, outcome: ClientOutcome },
    /// The outcome of [`Action::Commit`].
    Committed { purpose: Purpose, ok: bool },
    /// The ports of the streams [`Action::AddStreams`] asked for (`None`: none free).
    StreamsAdded(Option<Vec<[u16; 2]>>),
    /// An admin asked for the call to be hung up (`by`: who, for the log). An established call
    /// ends on both phones; before the answer it is ignored (only established calls can be asked).
    HangUp { by: String },
    /// What the stage [`Action::Resolve`] asked for rings, or why it cannot ring.
    Reached(Result<Reached, Refusal>),
    /// Another call's attended transfer names one of this call's legs (`referrer`'s): the other
    /// leg is asked for, through `reply`.
    HandOver {
        replaces: Replaces,
        referrer: String,
        reply: HandoverReply,
    },
    /// The answer to [`Action::TakeOver`].
    TakenOver(Result<Box<Handover>, NoHandover>),
    /// A phone dialled a pickup code and this call rings an extension it may pick up for.
    PickUp(Box<Picker>),
}

/// A later stage of a call, resolved by the driver against the cluster's configuration.
#[derive(Debug)]
pub(crate) enum Reached {
    /// Phones (of one or several extensions: each binding's `aor` is its extension).
    Devices {
        devices: Vec<storage::model::Binding>,
        ring_for: Option<Duration>,
        then: Vec<Stage>,
    },
    /// Out through a trunk (an outside forward, routed and counted as its forwarder's call).
    Trunk(super::admission::OutboundTrunk),
}

/// What the driver must do for the call.
#[derive(Debug)]
pub(crate) enum Action {
    /// Answer a request the call received.
    Respond {
        tx: ServerTxId,
        resp: rsip::Response,
    },
    /// Start branch `branch`'s INVITE client transaction; its events come back as [`Input::Branch`].
    Invite {
        branch: usize,
        req: rsip::Request,
        peer: Peer,
    },
    /// Cancel branch `branch`'s INVITE.
    CancelBranch { branch: usize },
    /// Send an ACK (outside any transaction).
    Ack { req: rsip::Request, peer: Peer },
    /// Send a request in a client transaction; its outcome comes back as [`Input::Answer`].
    Request {
        id: u64,
        req: rsip::Request,
        peer: Peer,
    },
    /// New signalling for one side of a media stream.
    SetPeer {
        stream: usize,
        side: Side,
        peer: PeerMedia,
    },
    /// Restore the sources a side had latched (a call carried on from its record).
    RestoreLatch {
        stream: usize,
        side: Side,
        latch: Latch,
    },
    /// Add media streams; answered by [`Input::StreamsAdded`].
    AddStreams { count: usize },
    /// Commit the dialog record; answered by [`Input::Committed`].
    Commit {
        record: Box<ActiveCall>,
        purpose: Purpose,
    },
    /// The call is over: forget its routes, free its media, remove its record and store the CDR.
    End { cdr: Box<CallDetail> },
    /// Music on hold to `side` of stream `stream` in payload type `pt`, or no more (`None`).
    HoldMusic {
        stream: usize,
        side: Side,
        pt: Option<u8>,
    },
    /// Ask the call `replaces` names for its leg that `referrer` is not on; answered by
    /// [`Input::TakenOver`] (the driver routes that leg's requests here once it has it).
    TakeOver {
        replaces: Replaces,
        referrer: String,
    },
    /// Requests with Call-ID `call_id`, and the server transaction `tx` (its CANCEL, a missing
    /// ACK), belong to this call from now on: a picking phone's INVITE.
    Adopt { call_id: String, tx: ServerTxId },
    /// Answer another call's [`Input::HandOver`].
    HandOver {
        reply: HandoverReply,
        result: Result<Box<Handover>, NoHandover>,
    },
    /// Find what `stage` rings now; answered by [`Input::Reached`]. `srtp`: the caller's offer
    /// carries keys (only phones on TLS may get it).
    Resolve {
        stage: Stage,
        srtp: bool,
        anonymous: bool,
        started_at: UnixMillis,
        /// A transfer's target: an outside number is refused, not routed.
        transfer: bool,
    },
}

/// Where the call is.
#[derive(Debug)]
enum Phase {
    /// Forked to the callee's devices, waiting for an answer.
    Ringing,
    /// A device answered; waiting for the record to be committed before the caller hears 200.
    Committing {
        answer_sdp: String,
        extra: Vec<(String, String)>,
    },
    /// Both phones are in the call.
    Talking,
    /// Over; the end was queued.
    Over,
}

/// A call whose caller made no offer (RFC 3261 §13.2.1's delayed offer): the callee offers in its
/// 2xx, the caller answers in its ACK.
#[derive(Debug, Default)]
enum Delayed {
    /// The caller offered in its INVITE (or the exchange is over).
    #[default]
    No,
    /// Ringing without an offer.
    Ringing,
    /// The callee offered in its 2xx; waiting for the media ports of its streams.
    Ports {
        offer: Sdp,
        extra: Vec<(String, String)>,
    },
    /// The caller has the offer in our 200; its ACK brings the answer.
    AwaitingAck,
}

/// One forked branch: an INVITE to one registered device of the callee.
#[derive(Debug)]
struct Branch {
    leg: DialogLeg,
    peer: Peer,
    /// The final status this branch ended with, when it has.
    final_code: Option<u16>,
    /// The `RSeq` of the last reliable provisional response it sent.
    rseq: Option<u32>,
    /// A trunk server that has not answered at all by then is given up on.
    silent_until: Option<Instant>,
    /// Headers only this branch's INVITE carries (a trunk's identity headers, credentials).
    headers: Vec<(String, String)>,
    /// A trunk's credentials, and whether a challenge was answered with them already.
    credentials: Option<TrunkCredentials>,
    auth_tried: bool,
}

impl Branch {
    fn new(leg: DialogLeg, peer: Peer) -> Self {
        Self {
            leg,
            peer,
            final_code: None,
            rseq: None,
            silent_until: None,
            headers: Vec::new(),
            credentials: None,
            auth_tried: false,
        }
    }
}

/// An in-dialog request passed from one leg to the other, waiting for the other phone's answer.
#[derive(Debug)]
struct Forward {
    from: usize,
    tx: ServerTxId,
    req: rsip::Request,
    sent_cseq: u32,
    offer: Option<Sdp>,
}

/// A re-offer waiting for the media ports of the streams it adds.
#[derive(Debug)]
struct AwaitingPorts {
    from: usize,
    tx: ServerTxId,
    req: rsip::Request,
    offer: Sdp,
}

/// What the driver reads from the relay when a media check is due.
#[derive(Debug, Clone, Default)]
pub(crate) struct MediaStatus {
    /// Since the last packet from either side.
    pub(crate) idle_for: Duration,
    /// `[caller, callee]` RTP and RTCP sources latched, per stream.
    pub(crate) latched: Vec<[Latch; 2]>,
}

/// A call from the caller's INVITE on, as admitted.
#[derive(Debug)]
pub(crate) struct NewCall {
    pub(crate) id: String,
    pub(crate) tx: ServerTxId,
    pub(crate) invite: rsip::Request,
    pub(crate) peer: Peer,
    pub(crate) caller: String,
    /// How the caller is named to the callee (its extension's display name).
    pub(crate) caller_name: String,
    pub(crate) callee: String,
    pub(crate) admitted: Admitted,
    /// `[caller-facing, callee-facing]` RTP ports of each stream of the offer.
    pub(crate) ports: Vec<[u16; 2]>,
}

/// One call's state.
#[derive(Debug)]
pub(crate) struct CallCore {
    env: Env,
    id: String,
    caller: String,
    callee: String,
    /// The caller's INVITE transaction (`None` for a call carried on from its record).
    invite_tx: Option<ServerTxId>,
    /// The caller's INVITE, which responses on its transaction are built from.
    invite: rsip::Request,
    /// Whether the caller's INVITE has had its final response.
    invite_answered: bool,
    /// The caller asked to stay anonymous: the callee's leg never names it.
    anonymous: bool,
    /// `[caller's leg, callee's leg]`; the callee's is the winning branch's once answered.
    legs: [DialogLeg; 2],
    peers: [Peer; 2],
    /// The last session description each side sent.
    sdp: [Sdp; 2],
    ports: Vec<[u16; 2]>,
    latched: Vec<[Latch; 2]>,
    /// The latches last written to the record.
    recorded_latches: Option<Vec<[Latch; 2]>>,
    branches: Vec<Branch>,
    winner: Option<usize>,
    /// Trunk servers not tried yet, in order (an outbound call tries one at a time).
    hunt: VecDeque<TrunkTarget>,
    /// How long a trunk server may stay silent (`None` for calls to extensions).
    silence: Option<Duration>,
    /// How the callee's phones name the caller (its extension's display name).
    caller_name: String,
    /// What rings next when the current stage ends unanswered (forwards, ring group members).
    plan: VecDeque<Stage>,
    /// The first branch of the stage ringing now.
    stage_start: usize,
    /// Stages started so far (bounded by [`super::plan::MAX_STAGES`]).
    stages: usize,
    /// Waiting for [`Input::Reached`].
    resolving: bool,
    /// Why the last stage that could not ring could not (the caller hears it if nothing follows).
    stage_refusal: Option<Refusal>,
    /// A blind transfer in progress.
    transfer: Option<transfer::Transfer>,
    /// Call-IDs of legs a transfer replaced: a late BYE on one is still answered.
    retired_call_ids: Vec<String>,
    /// The Call-ID of the leg this call gave to another call's attended transfer: that call
    /// routes it now.
    handed_over: Option<String>,
    /// The callee's side is a phone that picked the call up (its INVITE was answered by the PBX).
    picked: bool,
    /// A pickup waiting for the record.
    pickup: Option<pickup::PendingPickup>,
    /// Per stream, `[caller, callee]`: the payload type of the music on hold each side hears.
    music: Vec<[Option<u8>; 2]>,
    /// The version of the last SDP origin sent on each leg ([`CallCore::own_origin`]).
    origin_versions: [std::sync::atomic::AtomicU64; 2],
    /// The wall clock as of the input being handled, in milliseconds.
    wall: std::sync::atomic::AtomicU64,
    /// The offer the callee's side gets, and its Max-Forwards, for INVITEs sent later.
    b_offer: Option<String>,
    max_forwards: u32,
    phase: Phase,
    started_at: UnixMillis,
    answered_at: Option<UnixMillis>,
    ring_deadline: Option<Instant>,
    max_end: Option<Instant>,
    next_check: Option<Instant>,
    /// A re-INVITE or UPDATE with an offer is in progress (a second one gets `491`).
    offer_pending: bool,
    awaiting_ports: Option<AwaitingPorts>,
    delayed: Delayed,
    pending: HashMap<u64, Forward>,
    next_request: u64,
    /// The last ACKs sent on each leg for 2xx answers to INVITEs, with their CSeqs: sent again
    /// whenever that 2xx is retransmitted (our ACK was lost), however late.
    acks: [Vec<(u32, rsip::Request)>; 2],
    actions: VecDeque<Action>,
}

pub(crate) fn side_of(leg: usize) -> Side {
    if leg == CALLER {
        Side::Caller
    } else {
        Side::Callee
    }
}

impl CallCore {
    /// The next thing to do.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`CallCore::handle_timeout`] is next due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Ringing if self.winner.is_none() => {
                let silent = self.branches.iter().filter(|b| b.final_code.is_none());
                let silent = silent.filter_map(|b| b.silent_until);
                silent.chain(self.ring_deadline).min()
            }
            Phase::Ringing => None,
            Phase::Talking => [self.max_end, self.next_check, self.transfer_deadline()]
                .into_iter()
                .flatten()
                .min(),
            Phase::Committing { .. } | Phase::Over => None,
        }
    }

    /// Whether the call is over (its end is queued as the last action).
    pub(crate) fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Over)
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// `[caller-facing, callee-facing]` RTP ports of every stream.
    pub(crate) fn ports(&self) -> &[[u16; 2]] {
        &self.ports
    }

    /// Every Call-ID a message of this call may carry: the caller's, and each branch's.
    pub(crate) fn call_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .branches
            .iter()
            .map(|b| b.leg.call_id.clone())
            .collect();
        ids.push(self.legs[CALLER].call_id.clone());
        if !self.legs[CALLEE].call_id.is_empty() && !ids.contains(&self.legs[CALLEE].call_id) {
            ids.push(self.legs[CALLEE].call_id.clone());
        }
        ids.extend(self.retired_call_ids.iter().cloned());
        if let Some(gone) = &self.handed_over {
            ids.retain(|id| id != gone);
        }
        ids
    }

    /// Extensions whose phones this call rings now (a transfer's target too), sorted.
    pub(crate) fn ringing_extensions(&self) -> Vec<String> {
        let ringing = match self.phase {
            Phase::Ringing => self.winner.is_none(),
            Phase::Talking => self.transfer.is_some(),
            Phase::Committing { .. } | Phase::Over => false,
        };
        if !ringing {
            return Vec::new();
        }
        let first = if matches!(self.phase, Phase::Ringing) {
            0
        } else {
            self.winner.map_or(0, |w| w + 1)
        };
        let mut out: Vec<String> = self.branches[first.min(self.branches.len())..]
            .iter()
            .filter(|b| b.final_code.is_none() && self.silence.is_none())
            .map(|b| b.leg.extension.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The extensions in the established call (`None` before the answer).
    pub(crate) fn parties(&self) -> Option<[&str; 2]> {
        matches!(self.phase, Phase::Talking)
            .then(|| [&*self.legs[CALLER].extension, &*self.legs[CALLEE].extension])
    }

    /// The key of the call's CDR (and of its route, for a trunk call).
    pub(crate) fn cdr_key(&self) -> String {
        CallDetail::key_for(self.started_at, &self.id)
    }

    /// The session descriptions the two legs' phones last sent, `[caller, callee]`.
    pub(crate) fn remote_sdps(&self) -> [&str; 2] {
        [&self.legs[CALLER].remote_sdp, &self.legs[CALLEE].remote_sdp]
    }

    pub(crate) fn extensions(&self) -> [&str; 2] {
        [&self.caller, &self.callee]
    }

    pub(crate) fn invite_tx(&self) -> Option<ServerTxId> {
        self.invite_tx
    }

    /// Handles one input.
    pub(crate) fn handle(&mut self, now: Now, input: Input) {
        self.wall.store(now.wall, Relaxed);
        let input = match input {
            Input::HandOver {
                replaces,
                referrer,
                reply,
            } => return self.hand_over(now, &replaces, &referrer, reply),
            input => input,
        };
        match self.phase {
            Phase::Ringing => self.ringing_input(now, input),
            Phase::Committing { .. } => self.committing_input(now, input),
            Phase::Talking => self.talking_input(now, input),
            Phase::Over => {}
        }
        if !self.is_over() {
            self.update_music();
        }
    }

    /// A timer is due; `media` is the relay's state as of now.
    pub(crate) fn handle_timeout(&mut self, now: Now, media: MediaStatus) {
        self.wall.store(now.wall, Relaxed);
        match self.phase {
            Phase::Ringing => {
                if self.winner.is_none() && self.ring_deadline.is_some_and(|d| now.at >= d) {
                    self.ring_timeout(now);
                } else if self.winner.is_none() {
                    self.silent_servers(now);
                }
            }
            Phase::Talking => {
                self.transfer_timeout(now);
                if matches!(self.phase, Phase::Talking) {
                    self.talking_timeout(now, media);
                }
            }
            Phase::Committing { .. } | Phase::Over => {}
        }
    }

    fn push(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    fn respond(&mut self, tx: ServerTxId, resp: rsip::Response) {
        self.push(Action::Respond { tx, resp });
    }

    /// A response on the caller's INVITE transaction.
    fn caller_response(
        &self,
        code: u16,
        reason: Option<&str>,
        extra: &[(String, String)],
        body: Option<(&str, &[u8])>,
    ) -> rsip::Response {
        let contact = (code < 300).then_some(self.legs[CALLER].local_contact.as_str());
        dialog::response(
            &self.invite,
            code,
            reason,
            &self.legs[CALLER].local_tag,
            contact,
            extra,
            body,
        )
    }

    /// Answers the caller's INVITE (a call carried on from its record has none left).
    fn respond_invite(&mut self, resp: rsip::Response) {
        if resp.status_code.code() >= 200 {
            if self.invite_answered {
                return;
            }
            self.invite_answered = true;
        }
        if let Some(tx) = self.invite_tx {
            self.respond(tx, resp);
        }
    }

    /// A response to a request received on `leg`.
    fn leg_response(
        &self,
        leg: usize,
        req: &rsip::Request,
        code: u16,
        reason: Option<&str>,
        extra: &[(String, String)],
        body: Option<(&str, &[u8])>,
    ) -> rsip::Response {
        let l = &self.legs[leg];
        let contact =
            (req.method == rsip::Method::Invite && code < 300).then_some(l.local_contact.as_str());
        dialog::response(req, code, reason, &l.local_tag, contact, extra, body)
    }

    fn reply_in_leg(
        &mut self,
        leg: usize,
        tx: ServerTxId,
        req: &rsip::Request,
        code: u16,
        reason: Option<&str>,
    ) {
        let resp = self.leg_response(leg, req, code, reason, &[], None);
        self.respond(tx, resp);
    }

    /// Sends a request in its own client transaction; `None` when it cannot be built.
    fn send_request(&mut self, req: rsip::Request, peer: Peer) -> u64 {
        self.next_request += 1;
        let id = self.next_request;
        self.push(Action::Request { id, req, peer });
        id
    }

    /// Sends BYE on a leg without waiting for the answer.
    fn send_bye(&mut self, leg: usize) {
        let peer = self.peers[leg];
        let Some(local) = self.env.locals.get(peer.transport) else {
            return;
        };
        self.legs[leg].local_cseq += 1;
        let l = &self.legs[leg];
        if let Some(bye) =
            dialog::request("BYE", l, local, peer.transport, l.local_cseq, 70, &[], None)
        {
            self.send_request(bye, peer);
        }
    }

    /// ACK and BYE for a 2xx nobody wants (a fork that answered after another won, or after the
    /// call ended): the phone must stop ringing and not think a call is up (RFC 3261 §13.2.2.4).
    fn refuse_late_answer(&mut self, resp: &rsip::Response, peer: Peer) {
        let Some(local) = self.env.locals.get(peer.transport) else {
            return;
        };
        if let Some((ack, bye)) = dialog::refuse_late_answer(resp, local, peer.transport) {
            tracing::debug!(call = %self.id, peer = %peer.addr, "hanging up an unwanted answer");
            self.push(Action::Ack { req: ack, peer });
            self.send_request(bye, peer);
        }
    }

    /// Sets one side's media from its session description.
    fn set_media_peers(&mut self, leg: usize, sdp: &Sdp) {
        let signalling = self.peers[leg].addr.ip();
        for (i, m) in sdp.media().iter().enumerate() {
            let peer = super::session::peer_media(m, signalling);
            self.push(Action::SetPeer {
                stream: i,
                side: side_of(leg),
                peer,
            });
        }
    }

    /// `sdp` rewritten for the phone on `leg`: the PBX's media address and its ports facing that
    /// leg, and the PBX's own origin line for that leg.
    fn rewrite_for(&self, leg: usize, sdp: &Sdp) -> Option<String> {
        let ports = super::session::stream_ports(sdp, &self.ports, side_of(leg));
        let text = sdp.rewrite(self.env.media_addr, &ports).ok()?;
        Some(self.own_origin(leg, &text))
    }

    /// `text` with the PBX's origin for `leg` (RFC 3264 §8): one session id per side of the call,
    /// whoever is on it (a transfer's new party continues the session the phone that stays has
    /// seen), and a version that rises with every description sent on it: the wall clock's
    /// milliseconds, or the last version plus one. The last version is this node's memory: a node
    /// carrying the call on after a failover starts from its own clock, above the old owner's last
    /// version as long as the nodes' clocks agree to within the time between the two descriptions
    /// (NTP keeps them to milliseconds; the record does not keep the version). The user name is `-`: nothing names the other phone (RFC 3323
    /// for an anonymous caller, and simply less to leak otherwise).
    fn own_origin(&self, leg: usize, text: &str) -> String {
        // Atomics only to keep the core `Sync` behind `&self`; one task handles a call.
        let version = self.origin_versions[leg]
            .load(Relaxed)
            .saturating_add(1)
            .max(self.wall.load(Relaxed));
        self.origin_versions[leg].store(version, Relaxed);
        let session = origin_session(&self.id, leg);
        let kind = if self.env.media_addr.is_ipv4() {
            "IP4"
        } else {
            "IP6"
        };
        let origin = format!("o=- {session} {version} IN {kind} {}", self.env.media_addr);
        let mut out = String::with_capacity(text.len() + 16);
        for line in text.split_inclusive('\n') {
            if line.starts_with("o=") {
                out.push_str(&origin);
                out.push_str("\r\n");
            } else {
                out.push_str(line);
            }
        }
        out
    }

    /// The dialog record as of now.
    fn active_call(&self, now: Now) -> ActiveCall {
        let streams = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, &[caller_port, callee_port])| {
                let [a, b] = self.latched.get(i).copied().unwrap_or_default();
                MediaStream {
                    caller_port,
                    callee_port,
                    caller_latched: latch_text(a),
                    callee_latched: latch_text(b),
                }
            })
            .collect();
        ActiveCall {
            id: self.id.clone(),
            node_id: self.env.node_id,
            caller: self.legs[CALLER].clone(),
            callee: self.legs[CALLEE].clone(),
            media_addr: self.env.media_addr.to_string(),
            streams,
            started_at: self.started_at,
            answered_at: self.answered_at.unwrap_or(now.wall),
            updated_at: now.wall,
        }
    }

    fn commit(&mut self, now: Now, purpose: Purpose) {
        let record = Box::new(self.active_call(now));
        self.push(Action::Commit { record, purpose });
    }

    /// The call is over: the caller's INVITE gets its final answer if it still has none, then the
    /// CDR.
    fn finish(&mut self, now: Now, outcome: Outcome) {
        self.abandon_transfer();
        self.cancel_branches(self.winner);
        if !self.invite_answered {
            let code = if outcome.sip_status >= 300 {
                outcome.sip_status
            } else {
                487
            };
            let resp = self.caller_response(code, None, &[], None);
            self.respond_invite(resp);
        }
        self.phase = Phase::Over;
        let answered = self.answered_at.is_some();
        if answered {
            metrics::gauge!("pbx_calls_active").decrement(1.0);
        }
        tracing::info!(call = %self.id, extension = %self.caller, callee = %self.callee, disposition = outcome.disposition.as_str(), cause = %outcome.cause, "call ended");
        record::count_end(&outcome, answered);
        let facts = CdrFacts {
            id: &self.id,
            caller: &self.caller,
            callee: &self.callee,
            started_at: self.started_at,
            answered_at: self.answered_at,
            node_id: self.env.node_id,
        };
        let cdr = Box::new(record::cdr(&facts, &outcome, now.wall));
        self.push(Action::End { cdr });
    }

    /// Keeps an ACK for the retransmissions of the 2xx it acknowledges (the last few per leg).
    fn remember_ack(&mut self, leg: usize, cseq: u32, ack: rsip::Request) {
        let kept = &mut self.acks[leg];
        if kept.len() == ACKS_KEPT {
            kept.remove(0);
        }
        kept.push((cseq, ack));
    }

    /// Which leg a message belongs to, by its Call-ID.
    fn leg_of(&self, headers: &rsip::Headers) -> Option<usize> {
        let call_id = dialog::first(headers, "Call-ID")?;
        self.legs
            .iter()
            .position(|l| !l.call_id.is_empty() && l.call_id == call_id)
    }

    /// A 2xx outside its transaction. Ours again (our ACK was lost): the same ACK again, for as long
    /// as the phone retransmits. A losing fork's, or one nobody knows: ACK and BYE.
    fn on_2xx_again(&mut self, resp: &rsip::Response, peer: Option<Peer>) {
        let call_id = dialog::first(&resp.headers, "Call-ID");
        if call_id.is_some() && call_id == self.joining_call_id() {
            return;
        }
        if let Some(leg) = self.leg_of(&resp.headers) {
            let cseq = dialog::cseq_of(&resp.headers);
            let ack = self.acks[leg]
                .iter()
                .find(|(seq, _)| Some(*seq) == cseq)
                .map(|(_, ack)| ack.clone());
            match ack {
                Some(req) => {
                    let peer = self.peers[leg];
                    self.push(Action::Ack { req, peer });
                }
                None => {
                    tracing::debug!(call = %self.id, ?cseq, "ignoring a 2xx for no INVITE of ours");
                }
            }
            return;
        }
        let call_id = dialog::first(&resp.headers, "Call-ID");
        let branch_peer = self
            .branches
            .iter()
            .find(|b| Some(b.leg.call_id.as_str()) == call_id)
            .map(|b| b.peer);
        if let Some(peer) = branch_peer.or(peer) {
            self.refuse_late_answer(resp, peer);
        }
    }
}

impl CallCore {
    /// Carries on an established call from its record (after a failover, or a restart of the VIP
    /// owner): each leg's dialog as recorded with CSeq headroom, media on the recorded ports with the
    /// latched sources, the maximum duration counted from the original answer.
    pub(crate) fn adopt(env: Env, now: Now, rec: ActiveCall) -> Result<Self, String> {
        if rec.media_addr != env.media_addr.to_string() {
            return Err(format!(
                "its media is on {}, not on this node's media address",
                rec.media_addr
            ));
        }
        let parse =
            |leg: &DialogLeg| Sdp::parse(leg.remote_sdp.as_bytes()).map_err(|e| e.to_string());
        let sdp = [parse(&rec.caller)?, parse(&rec.callee)?];
        let peers = [dialog::peer_of(&rec.caller)?, dialog::peer_of(&rec.callee)?];
        let mut legs = [rec.caller, rec.callee];
        for leg in &mut legs {
            leg.local_cseq = leg.local_cseq.saturating_add(CSEQ_HEADROOM);
        }
        let latched: Vec<[Latch; 2]> = rec
            .streams
            .iter()
            .map(|s| {
                [
                    parse_latch(&s.caller_latched),
                    parse_latch(&s.callee_latched),
                ]
            })
            .collect();
        let ports = rec
            .streams
            .iter()
            .map(|s| [s.caller_port, s.callee_port])
            .collect();
        // The remaining time of a maximum call length counts from the original answer.
        let max_end = env.config.max_duration.map(|max| {
            let deadline = rec.answered_at.saturating_add(max.as_millis() as u64);
            now.at + Duration::from_millis(deadline.saturating_sub(now.wall))
        });
        let anonymous = legs[CALLEE].local_uri.contains("anonymous.invalid");
        let mut branch = Branch::new(legs[CALLEE].clone(), peers[CALLEE]);
        branch.final_code = Some(200);
        let mut core = Self {
            id: rec.id,
            caller: legs[CALLER].extension.clone(),
            callee: legs[CALLEE].extension.clone(),
            invite_tx: None,
            invite: synthetic_invite(),
            invite_answered: true,
            anonymous,
            legs,
            peers,
            sdp,
            ports,
            recorded_latches: all_rtp_latched(&latched).then(|| latched.clone()),
            latched,
            branches: vec![branch],
            winner: Some(0),
            hunt: VecDeque::new(),
            silence: None,
            caller_name: String::new(),
            plan: VecDeque::new(),
            stage_start: 0,
            stages: 1,
            resolving: false,
            stage_refusal: None,
            transfer: None,
            retired_call_ids: Vec::new(),
            handed_over: None,
            picked: false,
            pickup: None,
            music: Vec::new(),
            origin_versions: Default::default(),
            wall: std::sync::atomic::AtomicU64::new(now.wall),
            b_offer: None,
            max_forwards: 70,
            phase: Phase::Talking,
            started_at: rec.started_at,
            answered_at: Some(rec.answered_at),
            ring_deadline: None,
            max_end,
            next_check: Some(now.at + MEDIA_CHECK),
            offer_pending: false,
            awaiting_ports: None,
            delayed: Delayed::No,
            pending: HashMap::new(),
            next_request: 0,
            acks: [Vec::new(), Vec::new()],
            actions: VecDeque::new(),
            env,
        };
        core.restore_media();
        core.update_music();
        // Claimed: the record now names this node and the CSeqs it will use.
        core.commit(now, Purpose::Claim);
        metrics::gauge!("pbx_calls_active").increment(1.0);
        tracing::info!(call = %core.id, extension = %core.caller, callee = %core.callee, streams = core.ports.len(), "carrying on a call from its record");
        Ok(core)
    }

    fn restore_media(&mut self) {
        for leg in [CALLER, CALLEE] {
            let sdp = self.sdp[leg].clone();
            self.set_media_peers(leg, &sdp);
        }
        let restores: Vec<Action> = self
            .latched
            .iter()
            .enumerate()
            .flat_map(|(stream, sides)| {
                [(sides[0], Side::Caller), (sides[1], Side::Callee)]
                    .into_iter()
                    .filter(|(latch, _)| latch.rtp.is_some() || latch.rtcp.is_some())
                    .map(move |(latch, side)| Action::RestoreLatch {
                        stream,
                        side,
                        latch,
                    })
            })
            .collect();
        self.actions.extend(restores);
    }
}

/// The SDP session id of side `leg` of call `id`: stable for the call's life and across nodes (FNV-1a
/// of the id), below 2^62 as RFC 8866 asks of an NTP-like number.
fn origin_session(id: &str, leg: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes().chain([leg as u8]) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h >> 2
}

/// Whether every side of every stream has its RTP source latched (RTCP may never come: rtcp-mux, or a
/// phone that sends none).
pub(crate) fn all_rtp_latched(latched: &[[Latch; 2]]) -> bool {
    !latched.is_empty() && latched.iter().all(|l| l.iter().all(|s| s.rtp.is_some()))
}

/// A side's latches as the record keeps them: the RTP source, and after a space the RTCP source when
/// it is latched too (a record written before RTCP was kept has the RTP source alone, and reads the
/// same way).
fn latch_text(latch: Latch) -> Option<String> {
    let rtp = latch.rtp?;
    Some(match latch.rtcp {
        Some(rtcp) => format!("{rtp} {rtcp}"),
        None => rtp.to_string(),
    })
}

fn parse_latch(text: &Option<String>) -> Latch {
    let mut parts = text.as_deref().unwrap_or("").split_whitespace();
    let mut next = || parts.next().and_then(|p| p.parse::<SocketAddr>().ok());
    let rtp = next();
    let rtcp = next();
    Latch { rtp, rtcp }
}

/// The original INVITE is gone with the node that received it; a carried-on call never answers it.
fn synthetic_invite() -> rsip::Request {
    rsip::Request {
        method: rsip::Method::Invite,
        uri: rsip::Uri::default(),
        version: rsip::Version::V2,
        headers: rsip::Headers::default(),
        body: Vec::new(),
    }
}
