//! One call, from the caller's INVITE to the last BYE: authentication and routing, forking to every
//! registered contact of the callee, relaying provisional responses and early media, the first answer
//! winning, the dialog record committed before the caller hears `200 OK`, in-dialog requests mapped
//! between the legs, limits and timers, and the CDR at the end.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use pbx_sip::sdp::{Direction, MediaInfo, Sdp};
use pbx_sip::transaction::{ClientTxId, Peer, ServerTxId, Timer, Transport};
use storage::model::{
    ActiveCall, Binding, DialogLeg, Disposition, Extension, HangupSide, MediaStream, UnixMillis,
};

use super::dialog::{self, body_of, is_sdp};
use super::record::{self, CdrFacts, Outcome};
use super::{Calls, LegEvent};
use crate::media::{MediaSession, PeerMedia, Side};
use crate::sip::auth::{AuthOutcome, SipAuth};
use crate::sip::endpoint::ClientOutcome;
use crate::sip::transport::transport_name;
use crate::time::now_millis;

/// What reaches a call's task.
#[derive(Debug)]
pub(crate) enum CallInput {
    /// A request inside one of the call's dialogs.
    Request { tx: ServerTxId, req: rsip::Request },
    /// An ACK for a 2xx the PBX sent on one of the legs (nothing to do: delayed offers in ACK are
    /// not supported).
    Ack,
    /// The caller sent CANCEL (the transaction layer answered it).
    Cancelled,
    /// The caller's INVITE transaction timed out after our 2xx (Timer L: no ACK).
    NoAck { timer: Timer },
    /// A 2xx whose transaction is over.
    Stray { resp: rsip::Response, peer: Peer },
    /// An event of a forked branch's INVITE.
    Branch { index: usize, event: LegEvent },
    /// The other phone answered a request passed to it.
    Forwarded(Box<Forward>, ClientOutcome),
}

/// The longest an extension number may be.
const MAX_NUMBER_LEN: usize = 32;
/// How often an established call checks its media and latches.
const MEDIA_CHECK: Duration = Duration::from_secs(2);

#[expect(
    clippy::too_many_arguments,
    reason = "the task's whole context, handed over once"
)]
pub(super) async fn run(
    calls: Arc<Calls>,
    tx: ServerTxId,
    req: rsip::Request,
    raw_uri: String,
    peer: Peer,
    auth: Arc<SipAuth>,
    input: mpsc::UnboundedSender<CallInput>,
    inputs: mpsc::UnboundedReceiver<CallInput>,
) {
    let reply = |code: u16, reason: Option<&str>| {
        dialog::response(&req, code, reason, &dialog::token()[..16], None, &[], None)
    };
    let caller = match auth.check(&req, &raw_uri, now_millis(), true, peer) {
        AuthOutcome::Authenticated { username } => username,
        AuthOutcome::Challenge(headers) => {
            let mut resp = reply(407, None);
            insert_before_length(&mut resp, headers);
            calls.endpoint.respond(tx, resp).await;
            calls.forget(Some(tx), &[]);
            return;
        }
        AuthOutcome::Unavailable => {
            calls
                .endpoint
                .respond(tx, reply(503, Some("Cluster not ready")))
                .await;
            calls.forget(Some(tx), &[]);
            return;
        }
    };
    metrics::counter!("pbx_call_attempts_total").increment(1);
    let started_at = now_millis();
    let callee = req
        .uri
        .auth
        .as_ref()
        .map(|a| a.user.clone())
        .unwrap_or_default();
    let setup = Setup {
        calls: &calls,
        req: &req,
        peer,
        caller: &caller,
        callee: &callee,
        input: &input,
    };
    match setup.prepare().await {
        Ok(call) => {
            let mut call = call
                .send_invites()
                .await
                .into_task(tx, req, started_at, inputs);
            call.ring().await;
        }
        Err(refusal) => {
            let Refusal {
                code,
                reason,
                outcome,
            } = refusal;
            let mut resp = reply(code, Some(reason));
            if code == 503 {
                insert_before_length(
                    &mut resp,
                    vec![rsip::Header::RetryAfter(rsip::headers::RetryAfter::from(
                        "5",
                    ))],
                );
            }
            calls.endpoint.respond(tx, resp).await;
            calls.forget(Some(tx), &[]);
            if let Some(outcome) = outcome {
                tracing::info!(extension = %caller, callee = %callee, status = code, "call refused");
                let facts = CdrFacts {
                    id: &dialog::token(),
                    caller: &caller,
                    callee: &callee,
                    started_at,
                    answered_at: None,
                    node_id: calls.cluster.node_id(),
                };
                record::count_end(&outcome, false);
                let cdr = record::cdr(&facts, &outcome, now_millis());
                if let Err(e) = record::end(&calls.cluster, cdr).await {
                    tracing::warn!(error = %e, "CDR not stored");
                }
            }
        }
    }
}

/// Puts headers before the Content-Length that `dialog::response` ends with.
fn insert_before_length(resp: &mut rsip::Response, headers: Vec<rsip::Header>) {
    let mut all: Vec<rsip::Header> = resp.headers.iter().cloned().collect();
    let at = all
        .iter()
        .position(|h| matches!(h, rsip::Header::ContentLength(_)))
        .unwrap_or(all.len());
    all.splice(at..at, headers);
    resp.headers = rsip::Headers::from(all);
}

struct Refusal {
    code: u16,
    reason: &'static str,
    /// `None`: not a call attempt worth a CDR (malformed).
    outcome: Option<Outcome>,
}

fn refuse(code: u16, reason: &'static str, disposition: Option<Disposition>) -> Refusal {
    Refusal {
        code,
        reason,
        outcome: disposition.map(|d| Outcome::new(d, HangupSide::Pbx, code.to_string(), code)),
    }
}

struct Setup<'a> {
    calls: &'a Arc<Calls>,
    req: &'a rsip::Request,
    peer: Peer,
    caller: &'a str,
    callee: &'a str,
    input: &'a mpsc::UnboundedSender<CallInput>,
}

/// A call that passed every check, with its media and branches ready.
struct Prepared {
    calls: Arc<Calls>,
    input: mpsc::UnboundedSender<CallInput>,
    caller: String,
    callee: String,
    id: String,
    caller_leg: DialogLeg,
    caller_peer: Peer,
    offer: Sdp,
    media: MediaSession,
    branches: Vec<Branch>,
    b_offer: String,
    extra: Vec<(String, String)>,
    max_forwards: u32,
}

struct Branch {
    leg: DialogLeg,
    peer: Peer,
    tx: Option<ClientTxId>,
    /// The final status this branch ended with, when it has.
    final_code: Option<u16>,
}

impl Setup<'_> {
    async fn prepare(&self) -> Result<Prepared, Refusal> {
        let calls = self.calls;
        let headers = &self.req.headers;
        let max_forwards = dialog::first(headers, "Max-Forwards")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(70);
        if max_forwards == 0 {
            return Err(refuse(483, "Too Many Hops", None));
        }
        let valid_number = !self.callee.is_empty()
            && self.callee.len() <= MAX_NUMBER_LEN
            && self.callee.bytes().all(|b| b.is_ascii_digit());
        let reader = calls.cluster.reader();
        let extension = if valid_number {
            reader.get::<Extension>(self.callee).map_err(|e| {
                tracing::warn!(error = %e, "reading extension failed");
                refuse(500, "Server Internal Error", None)
            })?
        } else {
            None
        };
        let Some(extension) = extension.filter(|e| e.enabled) else {
            return Err(refuse(404, "Not Found", Some(Disposition::NotFound)));
        };
        let Some((ctype, body)) = body_of(headers, &self.req.body) else {
            return Err(refuse(488, "SDP Offer Required", Some(Disposition::Failed)));
        };
        if !is_sdp(ctype) {
            return Err(refuse(415, "Unsupported Media Type", None));
        }
        let offer = Sdp::parse(body).map_err(|e| {
            let reason = if e.sip_status() == 400 {
                "Malformed SDP"
            } else {
                "Not Acceptable Here"
            };
            refuse(e.sip_status(), reason, None)
        })?;
        if offer.media().iter().all(|m| m.port == 0) {
            return Err(refuse(488, "No Media Offered", None));
        }
        if calls.config.reject_anonymous && wants_privacy(headers) {
            return Err(refuse(
                433,
                "Anonymity Disallowed",
                Some(Disposition::Failed),
            ));
        }
        // SDES-SRTP keys travel in the SDP: only over SIP over TLS, in and out.
        let srtp = carries_keys(&offer);
        if srtp && self.peer.transport != Transport::Tls {
            return Err(refuse(488, "SRTP Keys Need SIP over TLS", None));
        }
        let now = now_millis();
        let bindings: Vec<Binding> = reader
            .scan_prefix::<Binding>(&Binding::aor_prefix(self.callee))
            .map_err(|e| {
                tracing::warn!(error = %e, "reading bindings failed");
                refuse(500, "Server Internal Error", None)
            })?
            .into_iter()
            .filter(|b| b.expires_at > now && b.reachable != Some(false))
            .filter(|b| !srtp || b.transport == "tls")
            .collect();
        if bindings.is_empty() {
            return Err(refuse(
                480,
                "Temporarily Unavailable",
                Some(Disposition::Unavailable),
            ));
        }
        if let Err(ext) = calls.reserve([self.caller, self.callee]) {
            return Err(if ext == self.caller {
                refuse(403, "Too Many Calls", Some(Disposition::Failed))
            } else {
                refuse(486, "Busy Here", Some(Disposition::Busy))
            });
        }
        let prepared = self.build(offer, bindings, &extension, max_forwards - 1);
        if prepared.is_err() {
            calls.unreserve([self.caller, self.callee]);
        }
        prepared
    }

    fn build(
        &self,
        offer: Sdp,
        bindings: Vec<Binding>,
        callee_ext: &Extension,
        max_forwards: u32,
    ) -> Result<Prepared, Refusal> {
        let calls = self.calls;
        let headers = &self.req.headers;
        let media = MediaSession::allocate(
            &calls.ports,
            offer.media().len(),
            calls.config.latch_window,
            calls.latch_gate(),
        )
        .map_err(|e| {
            tracing::warn!(error = %e, "no media for a call");
            refuse(503, "No Media Ports Available", Some(Disposition::Failed))
        })?;
        let bad = || refuse(400, "Malformed Dialog Headers", None);
        let a_local = calls
            .local(self.peer.transport)
            .ok_or_else(|| refuse(500, "Server Internal Error", None))?;
        let caller_leg = DialogLeg {
            extension: self.caller.to_owned(),
            call_id: dialog::first(headers, "Call-ID")
                .ok_or_else(bad)?
                .to_owned(),
            local_tag: dialog::token()[..16].to_owned(),
            remote_tag: dialog::tag_of(headers, "From").ok_or_else(bad)?,
            local_cseq: 0,
            remote_cseq: dialog::cseq_of(headers).ok_or_else(bad)?,
            local_uri: dialog::without_tag(dialog::first(headers, "To").ok_or_else(bad)?),
            remote_uri: dialog::without_tag(dialog::first(headers, "From").ok_or_else(bad)?),
            remote_target: dialog::contact_of(headers).ok_or_else(bad)?,
            route_set: dialog::record_routes(headers),
            local_contact: dialog::contact_uri(self.callee, a_local, self.peer.transport),
            peer: self.peer.addr.to_string(),
            transport: transport_name(self.peer.transport).to_owned(),
            remote_sdp: String::from_utf8_lossy(&self.req.body).into_owned(),
        };
        for (i, m) in offer.media().iter().enumerate() {
            media.set_peer(i, Side::Caller, peer_media(m, self.peer.addr.ip()));
        }
        let realm = &calls.config.realm;
        // A caller that asks for privacy (RFC 3323) is presented as anonymous, unless the PBX
        // refuses anonymous calls (RFC 5079 `433`), checked before anything was allocated.
        let caller_uri = if wants_privacy(headers) {
            "\"Anonymous\" <sip:anonymous@anonymous.invalid>".to_owned()
        } else {
            let caller_name = display_name(self.calls, self.caller);
            format!("\"{caller_name}\" <sip:{}@{realm}>", self.caller)
        };
        let extra = dialog::passed_headers(headers);
        let ports = stream_ports(&offer, &media, Side::Callee);
        let anonymous = wants_privacy(headers);
        let b_offer = offer
            .rewrite(calls.media_addr(), &ports)
            .map_err(|_| refuse(488, "Not Acceptable Here", None))?;
        let b_offer = if anonymous {
            anonymize_origin(&b_offer)
        } else {
            b_offer
        };
        let contact_user = if anonymous { "anonymous" } else { self.caller };
        let mut branches = Vec::new();
        for b in bindings {
            let (Some(transport), Ok(addr)) = (
                dialog::transport_from(&b.transport),
                b.source.parse::<SocketAddr>(),
            ) else {
                continue;
            };
            let Some(local) = calls.local(transport) else {
                continue;
            };
            let leg = DialogLeg {
                extension: self.callee.to_owned(),
                call_id: format!("{}@pbx", dialog::token()),
                local_tag: dialog::token()[..16].to_owned(),
                remote_tag: String::new(),
                local_cseq: 1,
                remote_cseq: 0,
                local_uri: caller_uri.clone(),
                remote_uri: format!("<sip:{}@{realm}>", callee_ext.number),
                remote_target: b.contact.clone(),
                route_set: Vec::new(),
                local_contact: dialog::contact_uri(contact_user, local, transport),
                peer: addr.to_string(),
                transport: b.transport.clone(),
                remote_sdp: String::new(),
            };
            branches.push(Branch {
                leg,
                peer: Peer { transport, addr },
                tx: None,
                final_code: None,
            });
        }
        if branches.is_empty() {
            return Err(refuse(
                480,
                "Temporarily Unavailable",
                Some(Disposition::Unavailable),
            ));
        }
        // Early media may come from any device that rings, but only from those.
        let trusted: Vec<IpAddr> = branches.iter().map(|b| b.peer.addr.ip()).collect();
        for i in 0..offer.media().len() {
            media.set_peer(
                i,
                Side::Callee,
                PeerMedia {
                    trusted: trusted.clone(),
                    ..PeerMedia::default()
                },
            );
        }
        let prepared = Prepared {
            calls: Arc::clone(calls),
            input: self.input.clone(),
            caller: self.caller.to_owned(),
            callee: self.callee.to_owned(),
            id: dialog::token(),
            caller_leg,
            caller_peer: self.peer,
            offer,
            media,
            branches,
            b_offer: String::new(),
            extra: Vec::new(),
            max_forwards: 0,
        };
        Ok(Prepared {
            b_offer,
            extra,
            max_forwards,
            ..prepared
        })
    }
}

impl Prepared {
    async fn send_invites(mut self) -> Self {
        let (b_offer, extra, max_forwards) = (
            std::mem::take(&mut self.b_offer),
            std::mem::take(&mut self.extra),
            self.max_forwards,
        );
        for (index, branch) in self.branches.iter_mut().enumerate() {
            let Some(local) = self.calls.local(branch.peer.transport) else {
                continue;
            };
            let Some(invite) = dialog::request(
                "INVITE",
                &branch.leg,
                local,
                branch.peer.transport,
                1,
                max_forwards,
                &extra,
                Some(("application/sdp", b_offer.as_bytes())),
            ) else {
                continue;
            };
            self.calls.add_call_id(&branch.leg.call_id, &self.input);
            branch.tx = self
                .calls
                .endpoint
                .invite(invite, branch.peer, index, self.input.clone())
                .await;
            if branch.tx.is_none() {
                branch.final_code = Some(503);
            }
        }
        self.calls
            .add_call_id(&self.caller_leg.call_id, &self.input);
        self
    }

    fn into_task(
        self,
        tx: ServerTxId,
        req: rsip::Request,
        started_at: UnixMillis,
        inputs: mpsc::UnboundedReceiver<CallInput>,
    ) -> CallTask {
        tracing::info!(call = %self.id, extension = %self.caller, callee = %self.callee, branches = self.branches.len(), "call ringing");
        CallTask {
            calls: self.calls,
            id: self.id,
            caller: self.caller,
            callee: self.callee,
            invite_tx: Some(tx),
            invite: req,
            // The callee's leg and SDP are the winner's, set before anything reads them.
            legs: [self.caller_leg, DialogLeg::default()],
            peers: [self.caller_peer, self.caller_peer],
            sdp: [self.offer.clone(), self.offer],
            media: self.media,
            branches: self.branches,
            winner: None,
            started_at,
            answered_at: None,
            established: None,
            inputs,
            input: self.input,
            offer_pending: false,
            latches_recorded: false,
        }
    }
}

fn display_name(calls: &Calls, number: &str) -> String {
    let name = calls
        .cluster
        .reader()
        .get::<Extension>(number)
        .ok()
        .flatten()
        .map(|e| e.display_name)
        .unwrap_or_default();
    let clean: String = name
        .chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .take(64)
        .collect();
    if clean.is_empty() {
        number.to_owned()
    } else {
        clean
    }
}

/// Where one side wants a stream's media, from its SDP.
fn peer_media(m: &MediaInfo, signalling: IpAddr) -> PeerMedia {
    let rtp = m
        .address
        .filter(|_| m.port != 0)
        .map(|ip| SocketAddr::new(ip, m.port));
    let rtcp = rtp.map(|a| {
        if m.rtcp_mux {
            a
        } else {
            SocketAddr::new(a.ip(), m.rtcp_port.unwrap_or(m.port.saturating_add(1)))
        }
    });
    let mut trusted = vec![signalling];
    if let Some(ip) = m.address
        && ip != signalling
    {
        trusted.push(ip);
    }
    PeerMedia {
        rtp,
        rtcp,
        trusted,
        known: rtp.is_some(),
    }
}

/// The PBX's ports facing `side` for each m= line of `sdp` (0 for a rejected stream).
fn stream_ports(sdp: &Sdp, media: &MediaSession, side: Side) -> Vec<u16> {
    sdp.media()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if m.port == 0 {
                0
            } else {
                media.port(i, side).unwrap_or(0)
            }
        })
        .collect()
}

/// Whether the caller asks to hide its identity: `Privacy: id` or `user` (RFC 3323, 3325), or an
/// anonymous From (RFC 3261 §8.1.1.3).
fn wants_privacy(headers: &rsip::Headers) -> bool {
    let privacy = pbx_sip::codec::header_values(headers, "Privacy")
        .flat_map(|v| v.split(';'))
        .any(|p| matches!(p.trim().to_ascii_lowercase().as_str(), "id" | "user"));
    let from = dialog::first(headers, "From").unwrap_or("");
    let uri = dialog::uri_of(from).to_ascii_lowercase();
    privacy || uri.starts_with("sip:anonymous@") || uri.starts_with("sips:anonymous@")
}

/// The SDP with its `o=` user name replaced by `-` (RFC 3323: nothing names the hidden caller).
fn anonymize_origin(sdp: &str) -> String {
    sdp.split_inclusive('\n')
        .map(|line| match line.strip_prefix("o=") {
            Some(rest) => match rest.split_once(' ') {
                Some((_, tail)) => format!("o=- {tail}"),
                None => line.to_owned(),
            },
            None => line.to_owned(),
        })
        .collect()
}

/// Whether an SDP carries SDES-SRTP keys (`a=crypto`), which must never cross a leg in clear.
fn carries_keys(sdp: &Sdp) -> bool {
    sdp.media().iter().any(|m| m.has_crypto)
}

/// Whether an SDP puts any stream on hold or makes it silent on purpose.
fn is_quiet(sdp: &Sdp) -> bool {
    sdp.media()
        .iter()
        .any(|m| m.direction != Direction::SendRecv || m.address.is_none())
}

/// An in-dialog request passed from one leg to the other, waiting for the other phone's answer.
#[derive(Debug)]
pub(crate) struct Forward {
    from: usize,
    tx: ServerTxId,
    req: rsip::Request,
    sent_cseq: u32,
    offer: Option<Sdp>,
}

struct CallTask {
    calls: Arc<Calls>,
    id: String,
    caller: String,
    callee: String,
    /// The caller's INVITE transaction (`None` for a call carried on from its record).
    invite_tx: Option<ServerTxId>,
    invite: rsip::Request,
    /// `[caller's leg, callee's leg]`.
    legs: [DialogLeg; 2],
    peers: [Peer; 2],
    /// The last session description each side sent.
    sdp: [Sdp; 2],
    media: MediaSession,
    branches: Vec<Branch>,
    winner: Option<usize>,
    started_at: UnixMillis,
    answered_at: Option<UnixMillis>,
    established: Option<Instant>,
    inputs: mpsc::UnboundedReceiver<CallInput>,
    /// The task's own input, for answers to requests it forwarded.
    input: mpsc::UnboundedSender<CallInput>,
    /// A re-INVITE or UPDATE with an offer is in progress (a second one gets `491`).
    offer_pending: bool,
    latches_recorded: bool,
}

const CALLER: usize = 0;
const CALLEE: usize = 1;

fn side_of(leg: usize) -> Side {
    if leg == CALLER {
        Side::Caller
    } else {
        Side::Callee
    }
}

impl CallTask {
    fn facts(&self) -> CdrFacts<'_> {
        CdrFacts {
            id: &self.id,
            caller: &self.caller,
            callee: &self.callee,
            started_at: self.started_at,
            answered_at: self.answered_at,
            node_id: self.calls.cluster.node_id(),
        }
    }

    fn respond_to_caller(
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

    /// Answers the caller's INVITE transaction (a call carried on from its record has none left).
    async fn respond_invite(&self, resp: rsip::Response) {
        if let Some(tx) = self.invite_tx {
            self.calls.endpoint.respond(tx, resp).await;
        }
    }

    /// Ringing: until a branch answers, all fail, the caller cancels or the ring timer fires.
    async fn ring(&mut self) {
        let deadline = Instant::now() + self.calls.config.ring_timeout;
        if self.all_failed() {
            return self.fail_unanswered().await;
        }
        loop {
            let input = tokio::select! {
                input = self.inputs.recv() => input,
                () = tokio::time::sleep_until(deadline) => {
                    self.cancel_branches(None).await;
                    let resp = self.respond_to_caller(480, Some("No Answer"), &[], None);
                    self.respond_invite(resp).await;
                    let outcome = Outcome::new(Disposition::NoAnswer, HangupSide::Pbx, "no-answer", 480);
                    return self.finish(outcome).await;
                }
            };
            let Some(input) = input else { return };
            match input {
                CallInput::Branch { index, event } => match event {
                    LegEvent::Response(resp) => {
                        let code = resp.status_code.code();
                        if (200..300).contains(&code) {
                            return self.answered(index, resp).await;
                        }
                        if (101..200).contains(&code) {
                            self.provisional(index, &resp).await;
                        } else if code >= 300 {
                            self.branch_failed(index, code);
                        }
                    }
                    LegEvent::Timeout => self.branch_failed(index, 408),
                    LegEvent::Failed => self.branch_failed(index, 503),
                    LegEvent::Terminated => {
                        if let Some(b) = self.branches.get_mut(index) {
                            b.tx = None;
                            b.final_code.get_or_insert(408);
                        }
                    }
                },
                CallInput::Cancelled => {
                    self.cancel_branches(None).await;
                    let resp = self.respond_to_caller(487, None, &[], None);
                    self.respond_invite(resp).await;
                    let outcome =
                        Outcome::new(Disposition::Cancelled, HangupSide::Caller, "cancel", 487);
                    return self.finish(outcome).await;
                }
                CallInput::Request { tx, req, .. } => {
                    // Before the answer only BYE (on an early dialog) makes sense: it ends the attempt.
                    if req.method == rsip::Method::Bye {
                        let resp = self.respond_in_leg(CALLER, &req, 200, None, &[], None);
                        self.calls.endpoint.respond(tx, resp).await;
                        self.cancel_branches(None).await;
                        let resp = self.respond_to_caller(487, None, &[], None);
                        self.respond_invite(resp).await;
                        let outcome =
                            Outcome::new(Disposition::Cancelled, HangupSide::Caller, "bye", 487);
                        return self.finish(outcome).await;
                    }
                    let resp = dialog::response(
                        &req,
                        491,
                        Some("Call Not Answered Yet"),
                        &self.legs[CALLER].local_tag,
                        None,
                        &[],
                        None,
                    );
                    self.calls.endpoint.respond(tx, resp).await;
                }
                CallInput::Stray { resp, peer } => self.calls.refuse_late_answer(&resp, peer),
                CallInput::Ack | CallInput::NoAck { .. } | CallInput::Forwarded(..) => {}
            }
            if self.all_failed() {
                return self.fail_unanswered().await;
            }
        }
    }

    fn branch_failed(&mut self, index: usize, code: u16) {
        if let Some(b) = self.branches.get_mut(index) {
            b.final_code = Some(code);
            b.tx = None;
        }
    }

    fn all_failed(&self) -> bool {
        self.branches.iter().all(|b| b.final_code.is_some())
    }

    /// The answer the caller gets when no branch answered (RFC 3261 §16.7's choice, simplified for
    /// phones: a busy or declining device wins over silence).
    async fn fail_unanswered(&mut self) {
        let codes: Vec<u16> = self.branches.iter().filter_map(|b| b.final_code).collect();
        let (code, disposition) = if let Some(c) = codes.iter().find(|c| matches!(c, 600 | 603)) {
            (*c, Disposition::Busy)
        } else if codes.contains(&486) {
            (486, Disposition::Busy)
        } else {
            (480, Disposition::Unavailable)
        };
        let resp = self.respond_to_caller(code, None, &[], None);
        self.respond_invite(resp).await;
        let outcome = Outcome::new(disposition, HangupSide::Callee, code.to_string(), code);
        self.finish(outcome).await;
    }

    async fn provisional(&mut self, index: usize, resp: &rsip::Response) {
        let code = resp.status_code.code();
        let Some(branch) = self.branches.get_mut(index) else {
            return;
        };
        if let Some(tag) = dialog::tag_of(&resp.headers, "To") {
            branch.leg.remote_tag = tag;
        }
        let peer_ip = branch.peer.addr.ip();
        // Early media (183 with SDP): the caller hears the ringing device's media through the relay.
        let mut body = None;
        if let Some((ctype, bytes)) = body_of(&resp.headers, &resp.body)
            && is_sdp(ctype)
            && let Ok(answer) = Sdp::parse(bytes)
        {
            for (i, m) in answer.media().iter().enumerate() {
                self.media.set_peer(i, Side::Callee, peer_media(m, peer_ip));
            }
            let ports = stream_ports(&answer, &self.media, Side::Caller);
            body = answer.rewrite(self.calls.media_addr(), &ports).ok();
        }
        let resp = self.respond_to_caller(
            code,
            Some(
                resp.status_code
                    .to_string()
                    .split_once(' ')
                    .map_or("", |(_, r)| r),
            ),
            &[],
            body.as_deref().map(|b| ("application/sdp", b.as_bytes())),
        );
        self.respond_invite(resp).await;
    }

    /// Cancels every branch still ringing except `keep`.
    async fn cancel_branches(&mut self, keep: Option<usize>) {
        for (i, b) in self.branches.iter_mut().enumerate() {
            if Some(i) == keep || b.final_code.is_some() {
                continue;
            }
            if let Some(tx) = b.tx.take() {
                self.calls.endpoint.cancel(tx).await;
            }
            b.final_code = Some(487);
        }
    }

    async fn ack_branch(&self, index: usize) {
        let Some(b) = self.branches.get(index) else {
            return;
        };
        let leg = if self.winner == Some(index) {
            &self.legs[CALLEE]
        } else {
            &b.leg
        };
        let Some(local) = self.calls.local(b.peer.transport) else {
            return;
        };
        if let Some(ack) = dialog::request("ACK", leg, local, b.peer.transport, 1, 70, &[], None) {
            self.calls
                .endpoint
                .send_stateless(rsip::SipMessage::Request(ack), b.peer)
                .await;
        }
    }

    /// The first 2xx: ACK it, cancel the other branches, commit the dialog record, answer the caller.
    async fn answered(&mut self, index: usize, resp: rsip::Response) {
        let Some(branch) = self.branches.get(index) else {
            return;
        };
        let headers = &resp.headers;
        let mut leg = branch.leg.clone();
        leg.remote_tag = dialog::tag_of(headers, "To").unwrap_or_default();
        if let Some(target) = dialog::contact_of(headers) {
            leg.remote_target = target;
        }
        leg.route_set = dialog::record_routes(headers).into_iter().rev().collect();
        leg.remote_sdp = String::from_utf8_lossy(&resp.body).into_owned();
        let peer = branch.peer;
        self.legs[CALLEE] = leg;
        self.peers[CALLEE] = peer;
        self.winner = Some(index);
        self.ack_branch(index).await;
        self.cancel_branches(Some(index)).await;
        tracing::info!(call = %self.id, extension = %self.caller, callee = %self.callee, "call answered");

        let answer = match body_of(headers, &resp.body) {
            Some((ctype, bytes)) if is_sdp(ctype) => Sdp::parse(bytes).ok(),
            _ => None,
        };
        let Some(answer) = answer.filter(|a| a.media().len() == self.sdp[CALLER].media().len())
        else {
            tracing::warn!(call = %self.id, "answer without a usable SDP");
            self.send_bye(CALLEE);
            let resp =
                self.respond_to_caller(488, Some("Callee Answered Without Media"), &[], None);
            self.respond_invite(resp).await;
            let outcome = Outcome::new(Disposition::Failed, HangupSide::Pbx, "bad-answer-sdp", 488);
            return self.finish(outcome).await;
        };
        for (i, m) in answer.media().iter().enumerate() {
            self.media
                .set_peer(i, Side::Callee, peer_media(m, peer.addr.ip()));
        }
        let ports = stream_ports(&answer, &self.media, Side::Caller);
        let Ok(a_answer) = answer.rewrite(self.calls.media_addr(), &ports) else {
            self.send_bye(CALLEE);
            let resp = self.respond_to_caller(488, None, &[], None);
            self.respond_invite(resp).await;
            let outcome = Outcome::new(Disposition::Failed, HangupSide::Pbx, "bad-answer-sdp", 488);
            return self.finish(outcome).await;
        };
        self.sdp[CALLEE] = answer;
        let now = now_millis();
        self.answered_at = Some(now);
        // The record goes first: if this node dies after the caller hears 200, another carries on.
        if let Err(e) = record::put(&self.calls.cluster, self.active_call(now)).await {
            tracing::warn!(call = %self.id, error = %e, "call record not stored; refusing the call");
            self.answered_at = None;
            self.send_bye(CALLEE);
            let resp = self.respond_to_caller(503, Some("Call Not Stored"), &[], None);
            self.respond_invite(resp).await;
            let outcome = Outcome::new(Disposition::Failed, HangupSide::Pbx, "not-stored", 503);
            return self.finish(outcome).await;
        }
        let extra = dialog::passed_headers(&resp.headers);
        let ok = self.respond_to_caller(
            200,
            None,
            &extra,
            Some(("application/sdp", a_answer.as_bytes())),
        );
        self.respond_invite(ok).await;
        metrics::counter!("pbx_call_answers_total").increment(1);
        metrics::gauge!("pbx_calls_active").increment(1.0);
        self.established = Some(Instant::now());
        self.talk().await;
    }

    fn active_call(&self, now: UnixMillis) -> ActiveCall {
        let streams = self
            .media
            .ports()
            .into_iter()
            .enumerate()
            .map(|(i, [caller_port, callee_port])| {
                let [a, b] = self.media.latched(i);
                MediaStream {
                    caller_port,
                    callee_port,
                    caller_latched: a.map(|a| a.to_string()),
                    callee_latched: b.map(|b| b.to_string()),
                }
            })
            .collect();
        ActiveCall {
            id: self.id.clone(),
            node_id: self.calls.cluster.node_id(),
            caller: self.legs[CALLER].clone(),
            callee: self.legs[CALLEE].clone(),
            media_addr: self.calls.media_addr().to_string(),
            streams,
            started_at: self.started_at,
            answered_at: self.answered_at.unwrap_or(now),
            updated_at: now,
        }
    }

    /// Established: map in-dialog requests between the legs until someone hangs up.
    async fn talk(&mut self) {
        let max_end = self.calls.config.max_duration.map(|d| Instant::now() + d);
        let mut check = tokio::time::interval(MEDIA_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = self.inputs.recv() => {
                    let Some(input) = input else { return };
                    if let Some(outcome) = self.on_input(input).await {
                        return self.finish(outcome).await;
                    }
                }
                () = sleep_until_opt(max_end) => {
                    tracing::info!(call = %self.id, "maximum call duration reached");
                    self.send_bye(CALLER);
                    self.send_bye(CALLEE);
                    return self.finish(Outcome::new(Disposition::Answered, HangupSide::Pbx, "max-duration", 200)).await;
                }
                _ = check.tick() => {
                    if let Some(outcome) = self.check_media().await {
                        return self.finish(outcome).await;
                    }
                }
            }
        }
    }

    async fn check_media(&mut self) -> Option<Outcome> {
        if let Some(timeout) = self.calls.config.media_timeout
            && !is_quiet(&self.sdp[CALLER])
            && !is_quiet(&self.sdp[CALLEE])
            && self.media.idle_for() >= timeout
        {
            tracing::info!(call = %self.id, idle_secs = self.media.idle_for().as_secs(), "media stopped; hanging up");
            self.send_bye(CALLER);
            self.send_bye(CALLEE);
            return Some(Outcome::new(
                Disposition::Answered,
                HangupSide::Pbx,
                "media-timeout",
                200,
            ));
        }
        if !self.latches_recorded {
            let all = (0..self.media.stream_count())
                .all(|i| self.media.latched(i).iter().all(Option::is_some));
            if all {
                self.latches_recorded = true;
                if let Err(e) =
                    record::put(&self.calls.cluster, self.active_call(now_millis())).await
                {
                    tracing::warn!(call = %self.id, error = %e, "latched media addresses not recorded");
                }
            }
        }
        None
    }

    /// Which leg a message belongs to, by its Call-ID.
    fn leg_of(&self, headers: &rsip::Headers) -> Option<usize> {
        let call_id = dialog::first(headers, "Call-ID")?;
        self.legs.iter().position(|l| l.call_id == call_id)
    }

    async fn on_input(&mut self, input: CallInput) -> Option<Outcome> {
        match input {
            CallInput::Request { tx, req, .. } => self.on_request(tx, req).await,
            CallInput::Forwarded(fwd, outcome) => self.forwarded(*fwd, outcome).await,
            CallInput::Branch {
                index,
                event: LegEvent::Response(resp),
            } if (200..300).contains(&resp.status_code.code()) => {
                if Some(index) == self.winner {
                    // Our ACK was lost: the phone retransmits its 2xx.
                    self.ack_branch(index).await;
                } else if let Some(b) = self.branches.get(index) {
                    self.calls.refuse_late_answer(&resp, b.peer);
                }
                None
            }
            CallInput::Stray { resp, peer } => {
                let ours = dialog::first(&resp.headers, "Call-ID")
                    == Some(self.legs[CALLEE].call_id.as_str());
                if ours {
                    if let Some(w) = self.winner {
                        self.ack_branch(w).await;
                    }
                } else {
                    self.calls.refuse_late_answer(&resp, peer);
                }
                None
            }
            CallInput::NoAck { timer } => {
                tracing::info!(call = %self.id, ?timer, "caller never acknowledged the answer");
                self.send_bye(CALLER);
                self.send_bye(CALLEE);
                Some(Outcome::new(
                    Disposition::Answered,
                    HangupSide::Pbx,
                    "no-ack",
                    200,
                ))
            }
            CallInput::Branch { .. } | CallInput::Ack | CallInput::Cancelled => None,
        }
    }

    fn respond_in_leg(
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

    async fn on_request(&mut self, tx: ServerTxId, req: rsip::Request) -> Option<Outcome> {
        let Some(from) = self.leg_of(&req.headers) else {
            let resp = dialog::response(&req, 481, None, &dialog::token()[..16], None, &[], None);
            self.calls.endpoint.respond(tx, resp).await;
            return None;
        };
        let to = 1 - from;
        if let Some(seq) = dialog::cseq_of(&req.headers) {
            let leg = &mut self.legs[from];
            if seq <= leg.remote_cseq && req.method != rsip::Method::Ack {
                let resp =
                    self.respond_in_leg(from, &req, 500, Some("CSeq Out of Order"), &[], None);
                self.calls.endpoint.respond(tx, resp).await;
                return None;
            }
            leg.remote_cseq = leg.remote_cseq.max(seq);
        }
        match req.method {
            rsip::Method::Bye => {
                let resp = self.respond_in_leg(from, &req, 200, None, &[], None);
                self.calls.endpoint.respond(tx, resp).await;
                self.send_bye(to);
                let side = if from == CALLER {
                    HangupSide::Caller
                } else {
                    HangupSide::Callee
                };
                tracing::info!(call = %self.id, by = side.as_str(), "call hung up");
                Some(Outcome::new(Disposition::Answered, side, "bye", 200))
            }
            rsip::Method::Invite | rsip::Method::Update => {
                self.reoffer(from, tx, req).await;
                None
            }
            rsip::Method::Info
            | rsip::Method::Options
            | rsip::Method::Notify
            | rsip::Method::Message => {
                let body =
                    body_of(&req.headers, &req.body).map(|(t, b)| (t.to_owned(), b.to_vec()));
                self.forward(
                    from,
                    tx,
                    req,
                    None,
                    body.as_ref().map(|(t, b)| (t.as_str(), b.as_slice())),
                );
                None
            }
            _ => {
                let resp = self.respond_in_leg(from, &req, 501, None, &[], None);
                self.calls.endpoint.respond(tx, resp).await;
                None
            }
        }
    }

    /// A re-INVITE or UPDATE: hold, resume, codec change, or a session refresh.
    async fn reoffer(&mut self, from: usize, tx: ServerTxId, req: rsip::Request) {
        let to = 1 - from;
        let is_invite = req.method == rsip::Method::Invite;
        let body = body_of(&req.headers, &req.body);
        let Some((ctype, bytes)) = body else {
            if is_invite {
                // An offerless re-INVITE (a refresh): offer the session as it stands.
                let ports = stream_ports(&self.sdp[to], &self.media, side_of(from));
                let sdp = self.sdp[to]
                    .rewrite(self.calls.media_addr(), &ports)
                    .unwrap_or_default();
                let resp = self.respond_in_leg(
                    from,
                    &req,
                    200,
                    None,
                    &[],
                    Some(("application/sdp", sdp.as_bytes())),
                );
                self.calls.endpoint.respond(tx, resp).await;
            } else {
                self.forward(from, tx, req, None, None);
            }
            return;
        };
        if self.offer_pending {
            let resp = self.respond_in_leg(from, &req, 491, None, &[], None);
            self.calls.endpoint.respond(tx, resp).await;
            return;
        }
        if !is_sdp(ctype) {
            let resp = self.respond_in_leg(from, &req, 415, None, &[], None);
            self.calls.endpoint.respond(tx, resp).await;
            return;
        }
        let offer = match Sdp::parse(bytes) {
            Ok(o) => o,
            Err(e) => {
                let resp = self.respond_in_leg(from, &req, e.sip_status(), None, &[], None);
                self.calls.endpoint.respond(tx, resp).await;
                return;
            }
        };
        let clear = [from, to]
            .iter()
            .any(|leg| self.peers[*leg].transport != Transport::Tls);
        if carries_keys(&offer) && clear {
            let resp = self.respond_in_leg(
                from,
                &req,
                488,
                Some("SRTP Keys Need SIP over TLS"),
                &[],
                None,
            );
            self.calls.endpoint.respond(tx, resp).await;
            return;
        }
        let have = self.media.stream_count();
        if offer.media().len() < have {
            let resp = self.respond_in_leg(
                from,
                &req,
                488,
                Some("Streams Cannot Be Removed"),
                &[],
                None,
            );
            self.calls.endpoint.respond(tx, resp).await;
            return;
        }
        if offer.media().len() > have
            && self
                .media
                .add_streams(&self.calls.ports, offer.media().len() - have)
                .is_err()
        {
            let resp =
                self.respond_in_leg(from, &req, 503, Some("No Media Ports Available"), &[], None);
            self.calls.endpoint.respond(tx, resp).await;
            return;
        }
        let ports = stream_ports(&offer, &self.media, side_of(to));
        let Ok(rewritten) = offer.rewrite(self.calls.media_addr(), &ports) else {
            let resp = self.respond_in_leg(from, &req, 488, None, &[], None);
            self.calls.endpoint.respond(tx, resp).await;
            return;
        };
        let rewritten = if to == CALLEE && wants_privacy(&self.invite.headers) {
            anonymize_origin(&rewritten)
        } else {
            rewritten
        };
        self.offer_pending = true;
        self.forward(
            from,
            tx,
            req,
            Some(offer),
            Some(("application/sdp", rewritten.as_bytes())),
        );
    }

    /// Sends `req`'s equivalent on the other leg; its answer comes back through `pending`.
    fn forward(
        &mut self,
        from: usize,
        tx: ServerTxId,
        req: rsip::Request,
        offer: Option<Sdp>,
        body: Option<(&str, &[u8])>,
    ) {
        let to = 1 - from;
        let peer = self.peers[to];
        let Some(local) = self.calls.local(peer.transport) else {
            return;
        };
        let method = req.method.to_string();
        self.legs[to].local_cseq += 1;
        let cseq = self.legs[to].local_cseq;
        let extra = dialog::passed_headers(&req.headers);
        let Some(out) = dialog::request(
            &method,
            &self.legs[to],
            local,
            peer.transport,
            cseq,
            70,
            &extra,
            body,
        ) else {
            return;
        };
        let endpoint = self.calls.endpoint.clone();
        let fwd = Box::new(Forward {
            from,
            tx,
            req,
            sent_cseq: cseq,
            offer,
        });
        let input = self.input.clone();
        tokio::spawn(async move {
            let outcome = endpoint.request(out, peer).await;
            let _ = input.send(CallInput::Forwarded(fwd, outcome));
        });
    }

    /// The other phone answered a forwarded request: pass the answer back.
    async fn forwarded(&mut self, fwd: Forward, outcome: ClientOutcome) -> Option<Outcome> {
        let (from, to) = (fwd.from, 1 - fwd.from);
        let is_invite = fwd.req.method == rsip::Method::Invite;
        if fwd.offer.is_some() {
            self.offer_pending = false;
        }
        let resp = match outcome {
            ClientOutcome::Final(resp) => resp,
            ClientOutcome::Timeout | ClientOutcome::Failed => {
                let resp = self.respond_in_leg(from, &fwd.req, 408, None, &[], None);
                self.calls.endpoint.respond(fwd.tx, resp).await;
                if is_invite || fwd.req.method == rsip::Method::Update {
                    // The other phone is gone (RFC 5057): end the call.
                    self.send_bye(from);
                    return Some(Outcome::new(
                        Disposition::Answered,
                        HangupSide::Pbx,
                        "peer-lost",
                        200,
                    ));
                }
                return None;
            }
        };
        let code = resp.status_code.code();
        if is_invite && (200..300).contains(&code) {
            let peer = self.peers[to];
            if let Some(local) = self.calls.local(peer.transport)
                && let Some(ack) = dialog::request(
                    "ACK",
                    &self.legs[to],
                    local,
                    peer.transport,
                    fwd.sent_cseq,
                    70,
                    &[],
                    None,
                )
            {
                self.calls
                    .endpoint
                    .send_stateless(rsip::SipMessage::Request(ack), peer)
                    .await;
            }
        }
        let extra = dialog::passed_headers(&resp.headers);
        let reason = resp
            .status_code
            .to_string()
            .split_once(' ')
            .map(|(_, r)| r.to_owned());
        let mut out_body: Option<(String, Vec<u8>)> =
            body_of(&resp.headers, &resp.body).map(|(t, b)| (t.to_owned(), b.to_vec()));
        if let (Some(offer), true) = (fwd.offer, (200..300).contains(&code)) {
            let answer = match body_of(&resp.headers, &resp.body) {
                Some((t, b)) if is_sdp(t) => Sdp::parse(b).ok(),
                _ => None,
            };
            match answer {
                Some(answer) => {
                    let to_ip = self.peers[to].addr.ip();
                    let from_ip = self.peers[from].addr.ip();
                    for (i, m) in answer.media().iter().enumerate() {
                        self.media.set_peer(i, side_of(to), peer_media(m, to_ip));
                    }
                    for (i, m) in offer.media().iter().enumerate() {
                        self.media
                            .set_peer(i, side_of(from), peer_media(m, from_ip));
                    }
                    let ports = stream_ports(&answer, &self.media, side_of(from));
                    out_body = answer
                        .rewrite(self.calls.media_addr(), &ports)
                        .ok()
                        .map(|s| ("application/sdp".to_owned(), s.into_bytes()));
                    self.legs[from].remote_sdp =
                        String::from_utf8_lossy(&fwd.req.body).into_owned();
                    self.legs[to].remote_sdp = String::from_utf8_lossy(&resp.body).into_owned();
                    self.sdp[from] = offer;
                    self.sdp[to] = answer;
                    if let Err(e) =
                        record::put(&self.calls.cluster, self.active_call(now_millis())).await
                    {
                        tracing::warn!(call = %self.id, error = %e, "call record not updated");
                    }
                }
                None => out_body = None,
            }
        }
        let resp = self.respond_in_leg(
            from,
            &fwd.req,
            code,
            reason.as_deref(),
            &extra,
            out_body.as_ref().map(|(t, b)| (t.as_str(), b.as_slice())),
        );
        self.calls.endpoint.respond(fwd.tx, resp).await;
        if matches!(code, 408 | 481) && (is_invite || fwd.req.method == rsip::Method::Update) {
            self.send_bye(from);
            return Some(Outcome::new(
                Disposition::Answered,
                HangupSide::Pbx,
                "peer-lost",
                200,
            ));
        }
        None
    }

    /// Sends BYE on a leg without waiting for the answer.
    fn send_bye(&mut self, leg: usize) {
        let peer = self.peers[leg];
        let Some(local) = self.calls.local(peer.transport) else {
            return;
        };
        self.legs[leg].local_cseq += 1;
        let Some(bye) = dialog::request(
            "BYE",
            &self.legs[leg],
            local,
            peer.transport,
            self.legs[leg].local_cseq,
            70,
            &[],
            None,
        ) else {
            return;
        };
        let endpoint = self.calls.endpoint.clone();
        tokio::spawn(async move {
            let _ = endpoint.request(bye, peer).await;
        });
    }

    /// The call is over: free everything and store the CDR.
    async fn finish(&mut self, outcome: Outcome) {
        let mut call_ids: Vec<String> = self
            .branches
            .iter()
            .map(|b| b.leg.call_id.clone())
            .collect();
        call_ids.push(self.legs[CALLER].call_id.clone());
        self.calls.forget(self.invite_tx, &call_ids);
        self.calls.unreserve([&self.caller, &self.callee]);
        let answered = self.answered_at.is_some();
        if answered {
            metrics::gauge!("pbx_calls_active").decrement(1.0);
        }
        let stats = self.media.stats();
        tracing::info!(call = %self.id, extension = %self.caller, callee = %self.callee, disposition = outcome.disposition.as_str(), cause = %outcome.cause, relayed = stats.relayed, dropped = stats.dropped, "call ended");
        record::count_end(&outcome, answered);
        let cdr = record::cdr(&self.facts(), &outcome, now_millis());
        if let Err(e) = record::end(&self.calls.cluster, cdr).await {
            tracing::warn!(call = %self.id, error = %e, "CDR not stored");
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Added to every CSeq the PBX sends on a call carried on from its record: the process that set the
/// call up may have sent requests after the record was last written.
const CSEQ_HEADROOM: u32 = 1000;

/// Carries on an established call from its record (after a failover, or a restart of the VIP owner):
/// media on the recorded ports with the latched sources, each leg's dialog as recorded with CSeq
/// headroom, and in-dialog requests handled as if this node had set the call up.
pub(super) fn adopt(calls: &Arc<Calls>, rec: ActiveCall) -> Result<(), String> {
    if rec.media_addr != calls.media_addr().to_string() {
        return Err(format!(
            "its media is on {}, not on this node's media address",
            rec.media_addr
        ));
    }
    let parse = |leg: &DialogLeg| Sdp::parse(leg.remote_sdp.as_bytes()).map_err(|e| e.to_string());
    let sdp = [parse(&rec.caller)?, parse(&rec.callee)?];
    let peer_of = |leg: &DialogLeg| -> Result<Peer, String> {
        let transport = dialog::transport_from(&leg.transport)
            .ok_or_else(|| format!("unknown transport {:?}", leg.transport))?;
        let addr = leg
            .peer
            .parse()
            .map_err(|_| format!("bad peer address {:?}", leg.peer))?;
        Ok(Peer { transport, addr })
    };
    let peers = [peer_of(&rec.caller)?, peer_of(&rec.callee)?];
    let ports: Vec<[u16; 2]> = rec
        .streams
        .iter()
        .map(|s| [s.caller_port, s.callee_port])
        .collect();
    let media = MediaSession::bind(
        &calls.ports,
        &ports,
        calls.config.latch_window,
        calls.latch_gate(),
    )
    .map_err(|e| e.to_string())?;
    for (leg, side) in [(CALLER, Side::Caller), (CALLEE, Side::Callee)] {
        for (i, m) in sdp[leg].media().iter().enumerate() {
            media.set_peer(i, side, peer_media(m, peers[leg].addr.ip()));
        }
    }
    let mut all_latched = true;
    for (i, s) in rec.streams.iter().enumerate() {
        for (latched, side) in [
            (&s.caller_latched, Side::Caller),
            (&s.callee_latched, Side::Callee),
        ] {
            match latched.as_deref().map(str::parse::<SocketAddr>) {
                Some(Ok(source)) => media.restore_latch(i, side, source),
                _ => all_latched = false,
            }
        }
    }
    let mut legs = [rec.caller, rec.callee];
    for leg in &mut legs {
        leg.local_cseq = leg.local_cseq.saturating_add(CSEQ_HEADROOM);
    }
    let (caller, callee) = (
        legs[CALLER].extension.clone(),
        legs[CALLEE].extension.clone(),
    );
    // Counted against the limits like any call here; a carried-on call is never refused for them.
    let _ = calls.reserve([&caller, &callee]);
    let (input, inputs) = mpsc::unbounded_channel();
    calls.add_call_id(&legs[CALLER].call_id, &input);
    calls.add_call_id(&legs[CALLEE].call_id, &input);
    // The original INVITE is gone with the node that received it; what the task still reads from it
    // is whether the callee was shown an anonymous caller.
    let mut invite = rsip::Request {
        method: rsip::Method::Invite,
        uri: rsip::Uri::default(),
        version: rsip::Version::V2,
        headers: rsip::Headers::default(),
        body: Vec::new(),
    };
    invite.headers.push(rsip::Header::Other(
        "From".into(),
        format!("<{}>", legs[CALLEE].local_uri),
    ));
    let branch = Branch {
        leg: legs[CALLEE].clone(),
        peer: peers[CALLEE],
        tx: None,
        final_code: Some(200),
    };
    let mut task = CallTask {
        calls: Arc::clone(calls),
        id: rec.id,
        caller,
        callee,
        invite_tx: None,
        invite,
        legs,
        peers,
        sdp,
        media,
        branches: vec![branch],
        winner: Some(0),
        started_at: rec.started_at,
        answered_at: Some(rec.answered_at),
        established: Some(Instant::now()),
        inputs,
        input,
        offer_pending: false,
        latches_recorded: all_latched,
    };
    tracing::info!(call = %task.id, extension = %task.caller, callee = %task.callee, streams = ports.len(), "carrying on a call from its record");
    metrics::gauge!("pbx_calls_active").increment(1.0);
    calls.spawn_call(async move {
        // Claimed: the record now names this node and the CSeqs it will use.
        if let Err(e) = record::put(&task.calls.cluster, task.active_call(now_millis())).await {
            tracing::warn!(call = %task.id, error = %e, "carried-on call record not updated");
        }
        task.talk().await;
    });
    Ok(())
}
