//! From the caller's INVITE to the answer: forking to every device of the callee, provisional
//! responses and early media, the first 2xx winning, and the record committed before the caller hears
//! `200 OK`.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use pbx_sip::sdp::Sdp;
use pbx_sip::transaction::{Peer, Transport};
use storage::model::{DialogLeg, Disposition, HangupSide};

use super::super::admission::Refusal;
use super::super::dialog::{self, body_of, is_sdp};
use super::super::privacy::ANONYMOUS_FROM;
use super::super::record::Outcome;
use super::super::session::carries_keys;
use super::super::session::peer_media;
use super::prack::Reliability;
use super::{
    Action, Branch, CALLEE, CALLER, CallCore, Delayed, Env, Input, LegEvent, NewCall, Now, Phase,
    Purpose, TrunkTarget,
};
use crate::media::{PeerMedia, Side};
use crate::sip::transport::transport_name;

impl CallCore {
    /// A call that passed admission, with its media ports: forks the INVITE to every device. A
    /// refusal means nothing was sent: the driver answers the caller with it.
    pub(crate) fn start(env: Env, now: Now, call: NewCall) -> Result<Self, Refusal> {
        let caller_leg = caller_leg(&env, &call)?;
        let delayed = call.admitted.offer.is_none();
        let offer = call.admitted.offer.clone().unwrap_or_else(Sdp::none);
        let (branches, hunt, silence) = match &call.admitted.trunk {
            Some(trunk) => {
                let mut hunt: VecDeque<_> = trunk.targets.iter().cloned().collect();
                let first = hunt
                    .pop_front()
                    .and_then(|t| trunk_branch(&env, &call.callee, &t));
                (first.into_iter().collect(), hunt, Some(trunk.silence))
            }
            None => (branches(&env, &call), VecDeque::new(), None),
        };
        if branches.is_empty() {
            return Err(Refusal::new(
                480,
                "Temporarily Unavailable",
                Some(Disposition::Unavailable),
            ));
        }
        let streams = offer.media().len();
        let mut core = Self {
            id: call.id,
            caller: call.caller,
            callee: call.callee,
            invite_tx: Some(call.tx),
            invite: call.invite,
            invite_answered: false,
            anonymous: call.admitted.anonymous,
            legs: [caller_leg, DialogLeg::default()],
            peers: [call.peer, call.peer],
            sdp: [offer.clone(), offer.clone()],
            latched: vec![Default::default(); streams],
            ports: call.ports,
            recorded_latches: None,
            branches,
            winner: None,
            hunt,
            silence,
            caller_name: call.caller_name.clone(),
            plan: call.admitted.then.into_iter().collect(),
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
            max_forwards: call.admitted.max_forwards,
            phase: Phase::Ringing,
            started_at: now.wall,
            answered_at: None,
            ring_deadline: Some(now.at + call.admitted.ring_for.unwrap_or(env.config.ring_timeout)),
            max_end: None,
            next_check: None,
            offer_pending: false,
            awaiting_ports: None,
            delayed: if delayed {
                Delayed::Ringing
            } else {
                Delayed::No
            },
            pending: HashMap::new(),
            next_request: 0,
            acks: [Vec::new(), Vec::new()],
            actions: VecDeque::new(),
            env,
        };
        let b_offer = match delayed {
            true => None,
            false => Some(
                core.rewrite_for(CALLEE, &offer)
                    .ok_or_else(|| Refusal::new(488, "Not Acceptable Here", None))?,
            ),
        };
        core.b_offer = b_offer;
        core.set_media_peers(CALLER, &offer);
        core.trust_ringing_devices(streams);
        for index in 0..core.branches.len() {
            core.send_invite(now, index);
        }
        metrics::counter!("pbx_call_attempts_total").increment(1);
        tracing::info!(call = %core.id, extension = %core.caller, callee = %core.callee, branches = core.branches.len(), "call ringing");
        Ok(core)
    }

    /// Early media may come from any device that rings, but only from those.
    pub(super) fn trust_ringing_devices(&mut self, streams: usize) {
        let trusted: Vec<IpAddr> = self.branches.iter().map(|b| b.peer.addr.ip()).collect();
        for stream in 0..streams {
            let peer = PeerMedia {
                trusted: trusted.clone(),
                ..PeerMedia::default()
            };
            self.push(Action::SetPeer {
                stream,
                side: Side::Callee,
                peer,
            });
        }
    }

    /// The INVITE of branch `index`, with the callee side's offer (none for a delayed offer).
    pub(super) fn send_invite(&mut self, now: Now, index: usize) {
        let mut extra = dialog::passed_headers(&self.invite.headers);
        super::prack::offer_100rel(&mut extra);
        let silence = self.silence;
        let Some(b) = self.branches.get_mut(index) else {
            return;
        };
        extra.extend(b.headers.iter().cloned());
        let body = self.b_offer.as_deref();
        let invite = self.env.locals.get(b.peer.transport).and_then(|local| {
            dialog::request(
                "INVITE",
                &b.leg,
                local,
                b.peer.transport,
                b.leg.local_cseq,
                self.max_forwards,
                &extra,
                body.map(|o| ("application/sdp", o.as_bytes())),
            )
        });
        match invite {
            Some(req) => {
                b.silent_until = silence.map(|d| now.at + d);
                let peer = b.peer;
                self.push(Action::Invite {
                    branch: index,
                    req,
                    peer,
                });
            }
            None => b.final_code = Some(503),
        }
    }

    pub(super) fn ringing_input(&mut self, now: Now, input: Input) {
        match input {
            Input::Branch { index, event } => self.branch_event(now, index, event),
            Input::Cancelled => {
                self.cancel_branches(None);
                let resp = self.caller_response(487, None, &[], None);
                self.respond_invite(resp);
                let outcome =
                    Outcome::new(Disposition::Cancelled, HangupSide::Caller, "cancel", 487);
                return self.finish(now, outcome);
            }
            Input::Request { tx, req } => {
                // Before the answer only BYE (on an early dialog) makes sense: it ends the attempt.
                if req.method == rsip::Method::Bye {
                    self.reply_in_leg(CALLER, tx, &req, 200, None);
                    self.cancel_branches(None);
                    let resp = self.caller_response(487, None, &[], None);
                    self.respond_invite(resp);
                    let outcome =
                        Outcome::new(Disposition::Cancelled, HangupSide::Caller, "bye", 487);
                    return self.finish(now, outcome);
                }
                self.reply_in_leg(CALLER, tx, &req, 491, Some("Call Not Answered Yet"));
            }
            Input::Stray { resp, peer } => self.on_2xx_again(&resp, peer),
            Input::StreamsAdded(ports) => self.delayed_ports(now, ports),
            Input::Ack(_)
            | Input::NoAck { .. }
            | Input::Answer { .. }
            | Input::Committed { .. }
            | Input::HangUp { .. }
            | Input::HandOver { .. }
            | Input::TakenOver(_) => {}
            Input::Reached(reached) => self.reached(now, reached),
            Input::PickUp(picker) => self.on_pickup(now, *picker),
        }
        if matches!(self.phase, Phase::Ringing) && self.winner.is_none() && self.all_failed() {
            self.stage_over(now);
        }
    }

    fn branch_event(&mut self, now: Now, index: usize, event: LegEvent) {
        match event {
            LegEvent::Response(resp) => {
                let code = resp.status_code.code();
                if (200..300).contains(&code) {
                    self.answered(now, index, resp);
                } else if (101..200).contains(&code) {
                    self.provisional(index, &resp);
                } else if code >= 300 {
                    self.branch_failed(now, index, code, Some(&resp));
                }
            }
            LegEvent::Timeout => self.branch_failed(now, index, 408, None),
            LegEvent::Failed => self.branch_failed(now, index, 503, None),
            LegEvent::Terminated => {
                if let Some(b) = self.branches.get_mut(index) {
                    b.final_code.get_or_insert(408);
                }
            }
        }
    }

    pub(super) fn ring_timeout(&mut self, now: Now) {
        if self.next_stage(super::super::plan::Ended::NoAnswer) {
            return;
        }
        self.cancel_branches(None);
        let resp = self.caller_response(480, Some("No Answer"), &[], None);
        self.respond_invite(resp);
        let outcome = Outcome::new(Disposition::NoAnswer, HangupSide::Pbx, "no-answer", 480);
        self.finish(now, outcome);
    }

    pub(super) fn branch_failed(
        &mut self,
        now: Now,
        index: usize,
        code: u16,
        resp: Option<&rsip::Response>,
    ) {
        match self.branches.get_mut(index) {
            Some(b) if b.final_code.is_none() => b.final_code = Some(code),
            _ => return,
        }
        if self.silence.is_some() && self.winner.is_none() {
            self.after_trunk_failure(now, index, code, resp);
        }
    }

    pub(super) fn all_failed(&self) -> bool {
        !self.resolving
            && self.hunt.is_empty()
            && self.branches.iter().all(|b| b.final_code.is_some())
    }

    /// The answer the caller gets when no branch answered (RFC 3261 §16.7's choice, simplified for
    /// phones: a busy or declining device wins over silence).
    pub(super) fn fail_unanswered(&mut self, now: Now) {
        if self.silence.is_some() {
            return self.fail_outbound(now);
        }
        if self.branches.len() == self.stage_start
            && let Some(r) = self.stage_refusal.take()
        {
            // The last stage could not ring at all: the caller hears why.
            let resp = self.caller_response(r.code, Some(r.reason), &r.headers, None);
            self.respond_invite(resp);
            let outcome = r.outcome.unwrap_or_else(|| {
                Outcome::new(
                    Disposition::Failed,
                    HangupSide::Pbx,
                    r.code.to_string(),
                    r.code,
                )
            });
            return self.finish(now, outcome);
        }
        let codes: Vec<u16> = self.branches[self.stage_start..]
            .iter()
            .filter_map(|b| b.final_code)
            .collect();
        let (code, disposition) = if let Some(c) = codes.iter().find(|c| matches!(c, 600 | 603)) {
            (*c, Disposition::Busy)
        } else if codes.contains(&486) {
            (486, Disposition::Busy)
        } else {
            (480, Disposition::Unavailable)
        };
        let resp = self.caller_response(code, None, &[], None);
        self.respond_invite(resp);
        let outcome = Outcome::new(disposition, HangupSide::Callee, code.to_string(), code);
        self.finish(now, outcome);
    }

    fn provisional(&mut self, index: usize, resp: &rsip::Response) {
        let Some(branch) = self.branches.get_mut(index) else {
            return;
        };
        // The server is there: it may ring as long as the call may.
        branch.silent_until = None;
        if let Some(tag) = dialog::tag_of(&resp.headers, "To") {
            branch.leg.remote_tag = tag;
        }
        // The early dialog's target and route set, for a PRACK in it.
        if let Some(target) = dialog::contact_of(&resp.headers) {
            branch.leg.remote_target = target;
        }
        branch.leg.route_set = dialog::record_routes(&resp.headers)
            .into_iter()
            .rev()
            .collect();
        match self.reliability(index, resp) {
            Reliability::Unreliable => {}
            Reliability::New(rseq) => self.prack(index, rseq),
            Reliability::Again(rseq) => return self.prack(index, rseq),
            Reliability::Stale => return,
        }
        let Some(branch) = self.branches.get(index) else {
            return;
        };
        let peer_ip = branch.peer.addr.ip();
        // Early media (183 with SDP): the caller hears the ringing device's media through the relay.
        // Without an offer from the caller there is nothing to answer yet, so no early media.
        let mut body = None;
        if matches!(self.delayed, Delayed::No)
            && let Some((ctype, bytes)) = body_of(&resp.headers, &resp.body)
            && is_sdp(ctype)
            && let Ok(answer) = Sdp::parse(bytes)
        {
            for (i, m) in answer.media().iter().enumerate() {
                let peer = peer_media(m, peer_ip);
                self.push(Action::SetPeer {
                    stream: i,
                    side: Side::Callee,
                    peer,
                });
            }
            body = self.rewrite_for(CALLER, &answer);
        }
        let code = resp.status_code.code();
        let reason = reason_of(resp);
        let out = self.caller_response(
            code,
            Some(&reason),
            &[],
            body.as_deref().map(|b| ("application/sdp", b.as_bytes())),
        );
        self.respond_invite(out);
    }

    /// Cancels every branch still ringing except `keep`.
    pub(super) fn cancel_branches(&mut self, keep: Option<usize>) {
        for i in 0..self.branches.len() {
            if Some(i) == keep || self.branches[i].final_code.is_some() {
                continue;
            }
            self.push(Action::CancelBranch { branch: i });
            self.branches[i].final_code = Some(487);
        }
    }

    /// The first 2xx: ACK it, cancel the other branches, commit the dialog record; the caller hears
    /// 200 once it is stored.
    fn answered(&mut self, now: Now, index: usize, resp: rsip::Response) {
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
        self.peers[CALLEE] = branch.peer;
        self.legs[CALLEE] = leg;
        self.winner = Some(index);
        self.branches[index].final_code = Some(resp.status_code.code());
        self.cancel_branches(Some(index));
        tracing::info!(call = %self.id, extension = %self.caller, callee = %self.callee, "call answered");
        if matches!(self.delayed, Delayed::Ringing) {
            // The 2xx carries the callee's offer; the ACK waits for the caller's answer.
            return self.delayed_offer(now, &resp);
        }
        self.ack_initial(None);
        let answer = match body_of(headers, &resp.body) {
            Some((ctype, bytes)) if is_sdp(ctype) => Sdp::parse(bytes).ok(),
            _ => None,
        };
        let Some(answer) = answer.filter(|a| a.media().len() == self.sdp[CALLER].media().len())
        else {
            tracing::warn!(call = %self.id, "answer without a usable SDP");
            return self.answer_failed(now, 488, "Callee Answered Without Media", "bad-answer-sdp");
        };
        let Some(a_answer) = self.rewrite_for(CALLER, &answer) else {
            return self.answer_failed(now, 488, "Not Acceptable Here", "bad-answer-sdp");
        };
        self.set_media_peers(CALLEE, &answer);
        self.sdp[CALLEE] = answer;
        self.answered_at = Some(now.wall);
        self.phase = Phase::Committing {
            answer_sdp: a_answer,
            extra: dialog::passed_headers(&resp.headers),
        };
        // The record goes first: if this node dies after the caller hears 200, another carries on.
        self.commit(now, Purpose::Answer);
    }

    /// ACKs the winning branch's 2xx (with the caller's answer to a delayed offer), and keeps the
    /// ACK for its retransmissions.
    pub(super) fn ack_initial(&mut self, answer: Option<&str>) {
        let peer = self.peers[CALLEE];
        let Some(local) = self.env.locals.get(peer.transport) else {
            return;
        };
        let body = answer.map(|a| ("application/sdp", a.as_bytes()));
        if let Some(ack) = dialog::request(
            "ACK",
            &self.legs[CALLEE],
            local,
            peer.transport,
            1,
            70,
            &[],
            body,
        ) {
            self.remember_ack(CALLEE, 1, ack.clone());
            self.push(Action::Ack { req: ack, peer });
        }
    }

    /// The winner's 2xx, if it has not been ACKed yet (a delayed offer ended before its answer): the
    /// callee must stop retransmitting it before it hears BYE.
    pub(super) fn settle_callee_ack(&mut self) {
        if self.winner.is_some() && self.acks[CALLEE].is_empty() && !self.picked {
            self.ack_initial(None);
        }
    }

    /// The callee answered but the call cannot go on: BYE to the callee, `code` to the caller.
    fn answer_failed(&mut self, now: Now, code: u16, reason: &str, cause: &str) {
        self.answered_at = None;
        self.delayed = Delayed::No;
        if !self.refuse_picker(code, reason) {
            self.settle_callee_ack();
            self.send_bye(CALLEE);
        }
        let resp = self.caller_response(code, Some(reason), &[], None);
        self.respond_invite(resp);
        let outcome = Outcome::new(Disposition::Failed, HangupSide::Pbx, cause, code);
        self.finish(now, outcome);
    }

    /// The callee's offer in its 2xx to an INVITE without one: ports for its streams first.
    fn delayed_offer(&mut self, now: Now, resp: &rsip::Response) {
        let offer = match body_of(&resp.headers, &resp.body) {
            Some((ctype, bytes)) if is_sdp(ctype) => Sdp::parse(bytes).ok(),
            _ => None,
        };
        let Some(offer) = offer.filter(|o| o.media().iter().any(|m| m.port != 0)) else {
            tracing::warn!(call = %self.id, "answer to a delayed offer without an offer");
            return self.answer_failed(now, 488, "Callee Offered No Media", "bad-offer-sdp");
        };
        let clear = self.peers.iter().any(|p| p.transport != Transport::Tls);
        if carries_keys(&offer) && clear {
            return self.answer_failed(now, 488, "SRTP Keys Need SIP over TLS", "bad-offer-sdp");
        }
        let count = offer.media().len();
        let extra = dialog::passed_headers(&resp.headers);
        self.delayed = Delayed::Ports { offer, extra };
        self.push(Action::AddStreams { count });
    }

    /// The ports for a delayed offer's streams: the callee's offer goes to the caller in our 200,
    /// once the record is stored.
    fn delayed_ports(&mut self, now: Now, ports: Option<Vec<[u16; 2]>>) {
        let Delayed::Ports { offer, extra } = std::mem::take(&mut self.delayed) else {
            return;
        };
        let Some(ports) = ports else {
            return self.answer_failed(now, 503, "No Media Ports Available", "no-ports");
        };
        self.latched = vec![Default::default(); ports.len()];
        self.ports = ports;
        let Some(a_offer) = self.rewrite_for(CALLER, &offer) else {
            return self.answer_failed(now, 488, "Not Acceptable Here", "bad-offer-sdp");
        };
        self.set_media_peers(CALLEE, &offer);
        self.sdp[CALLEE] = offer;
        self.answered_at = Some(now.wall);
        self.delayed = Delayed::AwaitingAck;
        self.phase = Phase::Committing {
            answer_sdp: a_offer,
            extra,
        };
        self.commit(now, Purpose::Answer);
    }

    /// Waiting for the record: only its outcome moves the call on; a BYE or a retransmission is
    /// handled as in an established call.
    pub(super) fn committing_input(&mut self, now: Now, input: Input) {
        match input {
            Input::Committed {
                purpose: Purpose::Answer,
                ok,
            } => {
                if ok {
                    self.established(now);
                } else {
                    tracing::warn!(call = %self.id, "call record not stored; refusing the call");
                    self.answer_failed(now, 503, "Call Not Stored", "not-stored");
                }
            }
            // A request to hang up needs the record, which is stored only once this phase is over;
            // the driver feeds no input while the commit is outstanding, so none can be lost here.
            Input::Cancelled | Input::HangUp { .. } => {}
            other => self.talking_input(now, other),
        }
    }

    /// The record is stored: the caller hears 200 with the callee's answer.
    fn established(&mut self, now: Now) {
        let Phase::Committing { answer_sdp, extra } =
            std::mem::replace(&mut self.phase, Phase::Talking)
        else {
            return;
        };
        let ok = self.caller_response(
            200,
            None,
            &extra,
            Some(("application/sdp", answer_sdp.as_bytes())),
        );
        self.respond_invite(ok);
        self.answer_picker();
        metrics::counter!("pbx_call_answers_total").increment(1);
        metrics::gauge!("pbx_calls_active").increment(1.0);
        self.max_end = self.env.config.max_duration.map(|d| now.at + d);
        self.next_check = Some(now.at + super::MEDIA_CHECK);
    }
}

/// The reason phrase of a response.
pub(super) fn reason_of(resp: &rsip::Response) -> String {
    resp.status_code
        .to_string()
        .split_once(' ')
        .map_or_else(String::new, |(_, r)| r.to_owned())
}

/// The caller's leg, from its INVITE.
fn caller_leg(env: &Env, call: &NewCall) -> Result<DialogLeg, Refusal> {
    let bad = || Refusal::new(400, "Malformed Dialog Headers", None);
    let headers = &call.invite.headers;
    let local = env
        .locals
        .get(call.peer.transport)
        .ok_or_else(Refusal::internal)?;
    Ok(DialogLeg {
        extension: call.caller.clone(),
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
        local_contact: dialog::contact_uri(&call.callee, local, call.peer.transport),
        peer: call.peer.addr.to_string(),
        transport: transport_name(call.peer.transport).to_owned(),
        remote_sdp: String::from_utf8_lossy(&call.invite.body).into_owned(),
    })
}

/// One branch per binding of the callee that the PBX can reach.
fn branches(env: &Env, call: &NewCall) -> Vec<Branch> {
    device_branches(
        env,
        &call.caller,
        &call.caller_name,
        call.admitted.anonymous,
        &call.admitted.bindings,
    )
}

/// One branch per binding the PBX can reach; each leg names the binding's extension.
pub(super) fn device_branches(
    env: &Env,
    caller: &str,
    caller_name: &str,
    anonymous: bool,
    bindings: &[storage::model::Binding],
) -> Vec<Branch> {
    let realm = &env.config.realm;
    let caller_uri = if anonymous {
        ANONYMOUS_FROM.to_owned()
    } else if caller_name.is_empty() {
        format!("<sip:{caller}@{realm}>")
    } else {
        format!("\"{caller_name}\" <sip:{caller}@{realm}>")
    };
    let contact_user = if anonymous { "anonymous" } else { caller };
    let mut out = Vec::new();
    for b in bindings {
        let (Some(transport), Ok(addr)) = (
            dialog::transport_from(&b.transport),
            b.source.parse::<SocketAddr>(),
        ) else {
            continue;
        };
        let Some(local) = env.locals.get(transport) else {
            continue;
        };
        let leg = DialogLeg {
            extension: b.aor.clone(),
            call_id: format!("{}@pbx", dialog::token()),
            local_tag: dialog::token()[..16].to_owned(),
            remote_tag: String::new(),
            local_cseq: 1,
            remote_cseq: 0,
            local_uri: caller_uri.clone(),
            remote_uri: format!("<sip:{}@{realm}>", b.aor),
            remote_target: b.contact.clone(),
            route_set: Vec::new(),
            local_contact: dialog::contact_uri(contact_user, local, transport),
            peer: addr.to_string(),
            transport: b.transport.clone(),
            remote_sdp: String::new(),
        };
        out.push(Branch::new(leg, Peer { transport, addr }));
    }
    out
}

/// The branch for one trunk server: the call's single Call-ID and From tag, whichever server ends
/// up answering.
pub(super) fn trunk_branch(env: &Env, callee: &str, t: &TrunkTarget) -> Option<Branch> {
    let local = env.locals.get(t.peer.transport)?;
    let leg = DialogLeg {
        extension: callee.to_owned(),
        call_id: format!("{}@pbx", dialog::token()),
        local_tag: dialog::token()[..16].to_owned(),
        remote_tag: String::new(),
        local_cseq: 1,
        remote_cseq: 0,
        local_uri: t.from.clone(),
        remote_uri: t.to.clone(),
        remote_target: t.request_uri.clone(),
        route_set: Vec::new(),
        local_contact: dialog::contact_uri(&t.contact_user, local, t.peer.transport),
        peer: t.peer.addr.to_string(),
        transport: transport_name(t.peer.transport).to_owned(),
        remote_sdp: String::new(),
    };
    let mut b = Branch::new(leg, t.peer);
    b.headers = t.headers.clone();
    b.credentials = t.credentials.clone();
    Some(b)
}
