//! An established call: in-dialog requests mapped between the legs (re-INVITE and UPDATE with the
//! SDP rewritten, INFO, OPTIONS, NOTIFY, MESSAGE), BYE from either side, an admin's hang-up, and the
//! call's timers.

use pbx_sip::sdp::Sdp;
use pbx_sip::transaction::{ServerTxId, Transport};
use storage::model::{Disposition, HangupSide};

use super::super::dialog::{self, body_of, is_sdp};
use super::super::record::Outcome;
use super::super::session::{carries_keys, is_quiet};
use super::ringing::reason_of;
use super::{
    Action, AwaitingPorts, CALLEE, CALLER, CallCore, Delayed, Forward, Input, LegEvent,
    MEDIA_CHECK, MediaStatus, Now, Purpose,
};
use crate::media::Latch;
use crate::sip::endpoint::ClientOutcome;

impl CallCore {
    pub(super) fn talking_input(&mut self, now: Now, input: Input) {
        match input {
            Input::Request { tx, req } => self.on_request(now, tx, req),
            Input::Answer { id, outcome } => {
                if let Some(fwd) = self.pending.remove(&id) {
                    self.forwarded(now, fwd, outcome);
                } else {
                    self.transfer_answer(now, id, &outcome);
                }
            }
            Input::Branch { index, event } if self.is_transfer_branch(index) => {
                self.transfer_branch(now, index, event);
            }
            Input::Committed {
                purpose: Purpose::Transfer,
                ok,
            } => self.transfer_committed(now, ok),
            Input::Reached(reached) => self.transfer_reached(now, reached),
            Input::TakenOver(result) => self.taken_over(now, result),
            // Answered meanwhile: refused.
            Input::PickUp(picker) => self.on_pickup(now, *picker),
            Input::Branch {
                index,
                event: LegEvent::Response(resp),
            } if (200..300).contains(&resp.status_code.code()) => {
                if Some(index) == self.winner {
                    // Our ACK was lost: the phone retransmits its 2xx.
                    self.on_2xx_again(&resp, None);
                } else if let Some(peer) = self.branches.get(index).map(|b| b.peer) {
                    self.refuse_late_answer(&resp, peer);
                }
            }
            Input::Stray { resp, peer } => self.on_2xx_again(&resp, peer),
            Input::NoAck { timer } => {
                tracing::info!(call = %self.id, ?timer, "caller never acknowledged the answer");
                self.hang_up_both(now, "no-ack");
            }
            Input::StreamsAdded(ports) => self.streams_added(now, ports),
            Input::Ack(ack) => {
                if matches!(self.delayed, Delayed::AwaitingAck) {
                    self.delayed_answer(now, &ack);
                }
            }
            Input::HangUp { by } => {
                tracing::info!(call = %self.id, by = %by, "hung up by an admin");
                self.hang_up_both(now, "hung-up-by-admin");
            }
            Input::Committed { .. }
            | Input::Branch { .. }
            | Input::Cancelled
            | Input::HandOver { .. } => {}
        }
    }

    pub(super) fn talking_timeout(&mut self, now: Now, media: MediaStatus) {
        if self.max_end.is_some_and(|end| now.at >= end) {
            tracing::info!(call = %self.id, "maximum call duration reached");
            return self.hang_up_both(now, "max-duration");
        }
        if self.next_check.is_none_or(|at| now.at < at) {
            return;
        }
        self.next_check = Some(now.at + MEDIA_CHECK);
        if let Some(timeout) = self.env.config.media_timeout
            && !is_quiet(&self.sdp[CALLER])
            && !is_quiet(&self.sdp[CALLEE])
            && media.idle_for >= timeout
        {
            tracing::info!(call = %self.id, idle_secs = media.idle_for.as_secs(), "media stopped; hanging up");
            return self.hang_up_both(now, "media-timeout");
        }
        for (i, sides) in media.latched.into_iter().enumerate() {
            if let Some(known) = self.latched.get_mut(i) {
                *known = sides;
            }
        }
        // Recorded once every RTP source is known, and again whenever a latch changes (RTCP comes
        // seconds after RTP): the next owner restores them all.
        if super::all_rtp_latched(&self.latched)
            && self.recorded_latches.as_ref() != Some(&self.latched)
        {
            self.recorded_latches = Some(self.latched.clone());
            self.commit(now, Purpose::Update);
        }
    }

    /// The caller's ACK to our 200 with the callee's (delayed) offer: its answer goes to the callee
    /// in the callee's ACK, and into the record. An ACK without a usable answer ends the call
    /// (RFC 3261 §13.2.2.4).
    fn delayed_answer(&mut self, now: Now, ack: &rsip::Request) {
        self.delayed = Delayed::No;
        let answer = match body_of(&ack.headers, &ack.body) {
            Some((t, b)) if is_sdp(t) => Sdp::parse(b).ok(),
            _ => None,
        };
        let usable = answer.filter(|a| a.media().len() == self.sdp[CALLEE].media().len());
        let rewritten = usable.as_ref().and_then(|a| self.rewrite_for(CALLEE, a));
        let (Some(answer), Some(rewritten)) = (usable, rewritten) else {
            tracing::warn!(call = %self.id, "the caller's ACK carries no usable answer");
            return self.hang_up_both(now, "bad-ack-sdp");
        };
        self.set_media_peers(CALLER, &answer);
        self.legs[CALLER].remote_sdp = String::from_utf8_lossy(&ack.body).into_owned();
        self.sdp[CALLER] = answer;
        self.ack_initial(Some(&rewritten));
        self.commit(now, Purpose::Update);
    }

    /// The PBX ends the call: BYE to both phones.
    fn hang_up_both(&mut self, now: Now, cause: &str) {
        self.settle_callee_ack();
        self.send_bye(CALLER);
        self.send_bye(CALLEE);
        let outcome = Outcome::new(Disposition::Answered, HangupSide::Pbx, cause, 200);
        self.finish(now, outcome);
    }

    fn on_request(&mut self, now: Now, tx: ServerTxId, req: rsip::Request) {
        let call_id = dialog::first(&req.headers, "Call-ID").unwrap_or_default();
        if self.retired_call_ids.iter().any(|id| id == call_id) {
            // The leg a transfer replaced: its BYE is welcome, nothing else is.
            let code = if req.method == rsip::Method::Bye {
                200
            } else {
                481
            };
            let resp = dialog::response(&req, code, None, &dialog::token()[..16], None, &[], None);
            return self.respond(tx, resp);
        }
        let Some(from) = self.leg_of(&req.headers) else {
            let resp = dialog::response(&req, 481, None, &dialog::token()[..16], None, &[], None);
            return self.respond(tx, resp);
        };
        let to = 1 - from;
        if let Some(seq) = dialog::cseq_of(&req.headers) {
            if seq <= self.legs[from].remote_cseq {
                return self.reply_in_leg(from, tx, &req, 500, Some("CSeq Out of Order"));
            }
            self.legs[from].remote_cseq = seq;
        }
        match req.method {
            rsip::Method::Bye if self.referrer_left(from) => {
                self.reply_in_leg(from, tx, &req, 200, None);
            }
            rsip::Method::Refer => self.on_refer(tx, from, req),
            rsip::Method::Subscribe => self.refer_subscription(from, tx, &req),
            rsip::Method::Bye => {
                self.reply_in_leg(from, tx, &req, 200, None);
                self.send_bye(to);
                let side = if from == CALLER {
                    HangupSide::Caller
                } else {
                    HangupSide::Callee
                };
                tracing::info!(call = %self.id, by = side.as_str(), "call hung up");
                self.finish(now, Outcome::new(Disposition::Answered, side, "bye", 200));
            }
            rsip::Method::Invite | rsip::Method::Update => self.reoffer(from, tx, req),
            rsip::Method::Info
            | rsip::Method::Options
            | rsip::Method::Notify
            | rsip::Method::Message => {
                let body =
                    body_of(&req.headers, &req.body).map(|(t, b)| (t.to_owned(), b.to_vec()));
                let body = body.as_ref().map(|(t, b)| (t.as_str(), b.as_slice()));
                self.forward(from, tx, &req, None, body);
            }
            _ => self.reply_in_leg(from, tx, &req, 501, None),
        }
    }

    /// A SUBSCRIBE in the call's dialog: a referrer refreshing or ending the implicit subscription
    /// of its REFER (RFC 3515 §2.4.4); it ends with the transfer anyway. Other packages: `489`.
    fn refer_subscription(&mut self, from: usize, tx: ServerTxId, req: &rsip::Request) {
        let event = dialog::first(&req.headers, "Event").unwrap_or("");
        let name = event.split(';').next().unwrap_or("").trim();
        if !name.eq_ignore_ascii_case("refer") {
            return self.reply_in_leg(from, tx, req, 489, None);
        }
        let asked =
            dialog::first(&req.headers, "Expires").and_then(|v| v.trim().parse::<u32>().ok());
        let expires = if asked == Some(0) { 0 } else { 60 };
        let extra = [("Expires".to_owned(), expires.to_string())];
        let resp = self.leg_response(from, req, 200, None, &extra, None);
        self.respond(tx, resp);
    }

    /// A re-INVITE or UPDATE: hold, resume, codec change, or a session refresh.
    fn reoffer(&mut self, from: usize, tx: ServerTxId, req: rsip::Request) {
        let to = 1 - from;
        let Some((ctype, bytes)) = body_of(&req.headers, &req.body) else {
            if req.method == rsip::Method::Invite {
                // An offerless re-INVITE (a refresh): offer the session as it stands.
                let sdp = self.sdp[to].clone();
                let sdp = self.rewrite_for(from, &sdp).unwrap_or_default();
                let body = Some(("application/sdp", sdp.as_bytes()));
                let resp = self.leg_response(from, &req, 200, None, &[], body);
                return self.respond(tx, resp);
            }
            return self.forward(from, tx, &req, None, None);
        };
        if self.offer_pending {
            return self.reply_in_leg(from, tx, &req, 491, None);
        }
        if !is_sdp(ctype) {
            return self.reply_in_leg(from, tx, &req, 415, None);
        }
        let offer = match Sdp::parse(bytes) {
            Ok(o) => o,
            Err(e) => return self.reply_in_leg(from, tx, &req, e.sip_status(), None),
        };
        let clear = self.peers.iter().any(|p| p.transport != Transport::Tls);
        if carries_keys(&offer) && clear {
            return self.reply_in_leg(from, tx, &req, 488, Some("SRTP Keys Need SIP over TLS"));
        }
        let have = self.ports.len();
        if offer.media().len() < have {
            return self.reply_in_leg(from, tx, &req, 488, Some("Streams Cannot Be Removed"));
        }
        // Held until its answer comes back, so a crossing offer gets 491 (glare).
        self.offer_pending = true;
        if offer.media().len() > have {
            let count = offer.media().len() - have;
            self.awaiting_ports = Some(AwaitingPorts {
                from,
                tx,
                req,
                offer,
            });
            return self.push(Action::AddStreams { count });
        }
        self.send_offer(from, tx, &req, offer);
    }

    fn streams_added(&mut self, _now: Now, ports: Option<Vec<[u16; 2]>>) {
        let Some(AwaitingPorts {
            from,
            tx,
            req,
            offer,
        }) = self.awaiting_ports.take()
        else {
            return;
        };
        match ports {
            Some(ports) => {
                self.latched
                    .extend(ports.iter().map(|_| <[Latch; 2]>::default()));
                self.ports.extend(ports);
                self.send_offer(from, tx, &req, offer);
            }
            None => {
                self.offer_pending = false;
                self.reply_in_leg(from, tx, &req, 503, Some("No Media Ports Available"));
            }
        }
    }

    /// Passes an offer to the other leg with the SDP rewritten onto the PBX's ports.
    fn send_offer(&mut self, from: usize, tx: ServerTxId, req: &rsip::Request, offer: Sdp) {
        let to = 1 - from;
        let Some(rewritten) = self.rewrite_for(to, &offer) else {
            self.offer_pending = false;
            return self.reply_in_leg(from, tx, req, 488, None);
        };
        let body = Some(("application/sdp", rewritten.as_bytes()));
        self.forward(from, tx, req, Some(offer), body);
    }

    /// Sends `req`'s equivalent on the other leg; its answer comes back as [`Input::Answer`]. Every
    /// path answers `tx`: a request that cannot be passed on gets `500` here.
    fn forward(
        &mut self,
        from: usize,
        tx: ServerTxId,
        req: &rsip::Request,
        offer: Option<Sdp>,
        body: Option<(&str, &[u8])>,
    ) {
        let to = 1 - from;
        let peer = self.peers[to];
        let cseq = self.legs[to].local_cseq + 1;
        let extra = dialog::passed_headers(&req.headers);
        let method = req.method.to_string();
        let out = self.env.locals.get(peer.transport).and_then(|local| {
            dialog::request(
                &method,
                &self.legs[to],
                local,
                peer.transport,
                cseq,
                70,
                &extra,
                body,
            )
        });
        let Some(out) = out else {
            tracing::warn!(call = %self.id, method = %method, "request not passed on");
            if offer.is_some() {
                self.offer_pending = false;
            }
            return self.reply_in_leg(from, tx, req, 500, Some("Cannot Reach the Other Phone"));
        };
        self.legs[to].local_cseq = cseq;
        let id = self.send_request(out, peer);
        let fwd = Forward {
            from,
            tx,
            req: req.clone(),
            sent_cseq: cseq,
            offer,
        };
        self.pending.insert(id, fwd);
    }

    /// The other phone answered a forwarded request: pass the answer back.
    fn forwarded(&mut self, now: Now, fwd: Forward, outcome: ClientOutcome) {
        let (from, to) = (fwd.from, 1 - fwd.from);
        let is_invite = fwd.req.method == rsip::Method::Invite;
        let changes_session = is_invite || fwd.req.method == rsip::Method::Update;
        if fwd.offer.is_some() {
            self.offer_pending = false;
        }
        let ClientOutcome::Final(resp) = outcome else {
            self.reply_in_leg(from, fwd.tx, &fwd.req, 408, None);
            if changes_session {
                // The other phone is gone (RFC 5057): end the call.
                self.peer_lost(now, from);
            }
            return;
        };
        let code = resp.status_code.code();
        if is_invite && (200..300).contains(&code) {
            self.ack_forwarded(to, fwd.sent_cseq);
        }
        let extra = dialog::passed_headers(&resp.headers);
        let reason = reason_of(&resp);
        let mut out_body: Option<(String, Vec<u8>)> =
            body_of(&resp.headers, &resp.body).map(|(t, b)| (t.to_owned(), b.to_vec()));
        if let (Some(offer), true) = (&fwd.offer, (200..300).contains(&code)) {
            out_body = self
                .accept_answer(now, &fwd, offer.clone(), &resp)
                .map(|s| ("application/sdp".to_owned(), s.into_bytes()));
        }
        let body = out_body.as_ref().map(|(t, b)| (t.as_str(), b.as_slice()));
        let out = self.leg_response(from, &fwd.req, code, Some(&reason), &extra, body);
        self.respond(fwd.tx, out);
        if matches!(code, 408 | 481) && changes_session {
            self.peer_lost(now, from);
        }
    }

    /// ACKs a 2xx to a re-INVITE the PBX passed on, and keeps the ACK for its retransmissions.
    pub(super) fn ack_forwarded(&mut self, leg: usize, cseq: u32) {
        let peer = self.peers[leg];
        let Some(local) = self.env.locals.get(peer.transport) else {
            return;
        };
        if let Some(ack) = dialog::request(
            "ACK",
            &self.legs[leg],
            local,
            peer.transport,
            cseq,
            70,
            &[],
            None,
        ) {
            self.remember_ack(leg, cseq, ack.clone());
            self.push(Action::Ack { req: ack, peer });
        }
    }

    /// The answer to a re-offer: both sides' media and SDP are updated, and the record with them.
    /// Returns the answer rewritten for the offering side (`None`: the answer is unusable).
    fn accept_answer(
        &mut self,
        now: Now,
        fwd: &Forward,
        offer: Sdp,
        resp: &rsip::Response,
    ) -> Option<String> {
        let (from, to) = (fwd.from, 1 - fwd.from);
        let answer = match body_of(&resp.headers, &resp.body) {
            Some((t, b)) if is_sdp(t) => Sdp::parse(b).ok()?,
            _ => return None,
        };
        self.set_media_peers(to, &answer);
        self.set_media_peers(from, &offer);
        let rewritten = self.rewrite_for(from, &answer);
        self.legs[from].remote_sdp = String::from_utf8_lossy(&fwd.req.body).into_owned();
        self.legs[to].remote_sdp = String::from_utf8_lossy(&resp.body).into_owned();
        self.sdp[from] = offer;
        self.sdp[to] = answer;
        self.commit(now, Purpose::Update);
        rewritten
    }

    /// The phone on the other side of `from` is gone: BYE to `from`, and the call ends.
    fn peer_lost(&mut self, now: Now, from: usize) {
        self.send_bye(from);
        let outcome = Outcome::new(Disposition::Answered, HangupSide::Pbx, "peer-lost", 200);
        self.finish(now, outcome);
    }
}
