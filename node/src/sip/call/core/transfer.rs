//! Blind transfer (RFC 3515): a phone in an established call sends REFER naming a number; the PBX
//! rings that number with the other party as the caller, and when it answers, puts it in the
//! referrer's place. The referrer hears the progress as NOTIFYs with `message/sipfrag` bodies and is
//! hung up once the new party is in the call and the call's record says so.
//!
//! The new party is rung without an offer, so its 2xx brings a fresh offer (whatever hold state the
//! referrer left the call in); that offer goes to the party that stays in a re-INVITE, and its answer
//! back to the new party in the ACK (RFC 3725's flow). If the transfer fails before the new party
//! answers, the referrer is still in the call and told so: it takes the call back. If the referrer
//! already hung up, the party that stays is hung up too.

use std::time::Instant;

use pbx_sip::sdp::Sdp;
use pbx_sip::transaction::{Peer, ServerTxId, Transport};
use storage::model::{DialogLeg, Disposition, HangupSide};

use super::super::admission::Refusal;
use super::super::dialog::{self, body_of, is_sdp};
use super::super::plan::{After, Next, Stage};
use super::super::record::Outcome;
use super::super::session::carries_keys;
use super::ringing::device_branches;
use super::{Action, CallCore, Now, Purpose, Reached};
use crate::sip::endpoint::ClientOutcome;

/// Longest Refer-To or Referred-By value looked at.
pub(super) const MAX_REFER_VALUE: usize = 512;

/// A transfer in progress.
#[derive(Debug)]
pub(super) struct Transfer {
    /// The referrer's leg.
    from: usize,
    /// The REFER, answered once the target is known.
    refer: Option<(ServerTxId, rsip::Request)>,
    referred_by: Option<String>,
    pub(super) target: String,
    pub(super) state: State,
    /// The referrer hung up after its REFER was accepted.
    pub(super) referrer_gone: bool,
    /// This is the referrer being rung back after its target did not answer.
    ring_back: bool,
    /// When the target is given up on if it has not answered.
    deadline: Option<Instant>,
}

impl Transfer {
    pub(super) fn new(
        from: usize,
        refer: (ServerTxId, rsip::Request),
        referred_by: Option<String>,
        target: String,
        state: State,
    ) -> Self {
        Self {
            from,
            refer: Some(refer),
            referred_by,
            target,
            state,
            referrer_gone: false,
            ring_back: false,
            deadline: None,
        }
    }
}

#[derive(Debug)]
pub(super) enum State {
    Resolving,
    /// Attended: the call the Replaces names is asked for its other party's leg.
    Joining,
    /// Attended: the joining party got a re-INVITE without an offer; its 2xx brings one.
    Fetching {
        id: u64,
        cseq: u32,
        leg: DialogLeg,
        peer: Peer,
    },
    /// The target's phones ring: branches from `first` on.
    Ringing {
        first: usize,
    },
    /// The target answered with an offer; the party that stays gets it in a re-INVITE. The
    /// target's 2xx is acknowledged (with the answer) at `ack_cseq`.
    Reinviting {
        id: u64,
        cseq: u32,
        leg: DialogLeg,
        peer: Peer,
        offer: Sdp,
        ack_cseq: u32,
    },
    /// The new party is in: the record is being committed before the referrer is told and hung up.
    /// `offer` is the new party's session: its side of the relay opens once the referrer is gone.
    Committing {
        old_leg: DialogLeg,
        old_peer: Peer,
        offer: Sdp,
    },
    /// The referrer is being told (`bye: false`) or hung up (`bye: true`): request `id`'s answer
    /// moves on. Its media may still be in flight, so the new party's side of the relay is not
    /// opened (and cannot latch the referrer's packets) until it is gone, or the deadline passes.
    Leaving {
        id: u64,
        bye: bool,
        old_leg: DialogLeg,
        old_peer: Peer,
        offer: Sdp,
    },
}

/// How long a departing referrer may take to answer its last NOTIFY and BYE before the new party's
/// media flows anyway.
const LEAVING: std::time::Duration = std::time::Duration::from_secs(2);

/// The number a Refer-To names (`<sip:1004@pbx>`, `sip:1004@pbx;user=phone`), if it is one.
pub(crate) fn refer_target(value: &str) -> Result<String, &'static str> {
    if value.len() > MAX_REFER_VALUE {
        return Err("Refer-To Too Long");
    }
    let uri = dialog::uri_of(value);
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .ok_or("Refer-To Is Not a SIP URI")?;
    let user = rest.split(['@', ';', '?']).next().unwrap_or("");
    let digits = user.strip_prefix('+').unwrap_or(user);
    let ok = !digits.is_empty()
        && user.len() <= super::super::admission::MAX_NUMBER_LEN
        && digits.bytes().all(|b| b.is_ascii_digit());
    let host = rest
        .split_once('@')
        .map_or("", |(_, h)| h.split([';', '?', '>']).next().unwrap_or(""));
    if ok && !host.is_empty() {
        Ok(user.to_owned())
    } else {
        Err("Refer-To Names No Number")
    }
}

fn sipfrag(code: u16) -> String {
    format!("SIP/2.0 {code} {}", crate::sip::reply::phrase(code))
}

impl CallCore {
    /// A REFER on leg `from` of the established call.
    pub(super) fn on_refer(&mut self, tx: ServerTxId, from: usize, req: rsip::Request) {
        if self.transfer.is_some() || self.offer_pending {
            return self.reply_in_leg(from, tx, &req, 491, Some("Transfer Already In Progress"));
        }
        let values: Vec<&str> = pbx_sip::codec::header_values(&req.headers, "Refer-To")
            .take(2)
            .collect();
        let [value] = values.as_slice() else {
            return self.reply_in_leg(from, tx, &req, 400, Some("Exactly One Refer-To Required"));
        };
        let target = match super::attended::replaces_in(value) {
            Ok(Some(replaces)) => return self.on_attended_refer(tx, from, req, replaces),
            Ok(None) => refer_target(value),
            Err(reason) => Err(reason),
        };
        let target = match target {
            Ok(t) => t,
            Err(reason) => return self.reply_in_leg(from, tx, &req, 400, Some(reason)),
        };
        let other = 1 - from;
        if target == self.legs[other].extension {
            return self.reply_in_leg(
                from,
                tx,
                &req,
                400,
                Some("Cannot Transfer To The Other Party"),
            );
        }
        let referred_by = dialog::first(&req.headers, "Referred-By")
            .filter(|v| v.len() <= MAX_REFER_VALUE)
            .map(str::to_owned);
        tracing::info!(call = %self.id, extension = %self.legs[from].extension, to = %target, "transfer asked");
        let stage = Stage {
            next: Next::Number {
                number: target.clone(),
                forwarder: Some(self.legs[from].extension.clone()),
            },
            after: After::Any,
            hops: 0,
        };
        self.transfer = Some(Transfer {
            from,
            refer: Some((tx, req)),
            referred_by,
            target,
            state: State::Resolving,
            referrer_gone: false,
            ring_back: false,
            deadline: None,
        });
        let srtp = carries_keys(&self.sdp[other]);
        self.push(Action::Resolve {
            stage,
            srtp,
            anonymous: false,
            started_at: self.started_at,
            transfer: true,
        });
    }

    /// The Call-ID of a new party whose 2xx waits for its ACK until the party that stays answers:
    /// its retransmissions meanwhile are not strays to hang up.
    pub(super) fn joining_call_id(&self) -> Option<&str> {
        match self.transfer.as_ref().map(|t| &t.state) {
            Some(State::Fetching { leg, .. } | State::Reinviting { leg, .. }) => {
                Some(leg.call_id.as_str())
            }
            _ => None,
        }
    }

    /// When the transfer's target is given up on.
    pub(super) fn transfer_deadline(&self) -> Option<Instant> {
        self.transfer.as_ref().and_then(|t| t.deadline)
    }

    /// Answers the REFER (if it still waits for its answer).
    pub(super) fn answer_refer(&mut self, code: u16, reason: Option<&str>) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        let from = t.from;
        if let Some((tx, req)) = t.refer.take() {
            self.reply_in_leg(from, tx, &req, code, reason);
        }
    }

    /// What the target rings, or why it cannot.
    pub(super) fn transfer_reached(&mut self, now: Now, reached: Result<Reached, Refusal>) {
        let Some(t) = self.transfer.as_ref() else {
            return;
        };
        if !matches!(t.state, State::Resolving) {
            return;
        }
        let devices = match reached {
            Ok(Reached::Devices { devices, .. }) => devices,
            Ok(Reached::Trunk(_)) => {
                // Outside targets are refused by the driver before this; never ring a trunk here.
                self.answer_refer(501, Some("Transfer Outside Not Supported"));
                self.transfer = None;
                return;
            }
            Err(r) if t.refer.is_none() => {
                // A ring-back that cannot ring: the transfer is over.
                return self.transfer_failed(now, r.code);
            }
            Err(r) => {
                tracing::info!(call = %self.id, code = r.code, "transfer refused");
                self.answer_refer(r.code, Some(r.reason));
                self.transfer = None;
                return;
            }
        };
        let (from, referred_by, gone) = (t.from, t.referred_by.clone(), t.referrer_gone);
        let other = 1 - from;
        self.answer_refer(202, None);
        if !gone {
            self.notify_referrer(100, false);
        }
        // The target sees the party that stays as its caller (named when it is the original caller).
        let caller = self.legs[other].extension.clone();
        let name = if other == super::CALLER {
            self.caller_name.clone()
        } else {
            String::new()
        };
        let new = device_branches(&self.env, &caller, &name, false, &devices);
        let first = self.branches.len();
        self.branches.extend(new);
        let mut extra = Vec::new();
        if let Some(by) = referred_by {
            extra.push(("Referred-By".to_owned(), by));
        }
        for index in first..self.branches.len() {
            let b = &self.branches[index];
            let invite = self.env.locals.get(b.peer.transport).and_then(|local| {
                dialog::request(
                    "INVITE",
                    &b.leg,
                    local,
                    b.peer.transport,
                    1,
                    70,
                    &extra,
                    None,
                )
            });
            match invite {
                Some(req) => {
                    let peer = b.peer;
                    self.push(Action::Invite {
                        branch: index,
                        req,
                        peer,
                    });
                }
                None => self.branches[index].final_code = Some(503),
            }
        }
        if let Some(t) = self.transfer.as_mut() {
            t.state = State::Ringing { first };
            t.deadline = Some(now.at + self.env.config.ring_timeout);
        }
        self.transfer_branches_over(now);
    }

    /// Whether branch `index` is one the transfer rings.
    pub(super) fn is_transfer_branch(&self, index: usize) -> bool {
        matches!(self.transfer.as_ref().map(|t| &t.state), Some(State::Ringing { first }) if index >= *first)
    }

    /// An event of a branch ringing the target.
    pub(super) fn transfer_branch(&mut self, now: Now, index: usize, event: super::LegEvent) {
        use super::LegEvent;
        match event {
            LegEvent::Response(resp) => {
                let code = resp.status_code.code();
                if (200..300).contains(&code) {
                    return self.transfer_answered(now, index, &resp);
                }
                if code >= 300
                    && let Some(b) = self.branches.get_mut(index)
                {
                    b.final_code.get_or_insert(code);
                }
            }
            LegEvent::Timeout => {
                if let Some(b) = self.branches.get_mut(index) {
                    b.final_code.get_or_insert(408);
                }
            }
            LegEvent::Failed => {
                if let Some(b) = self.branches.get_mut(index) {
                    b.final_code.get_or_insert(503);
                }
            }
            LegEvent::Terminated => {
                if let Some(b) = self.branches.get_mut(index) {
                    b.final_code.get_or_insert(408);
                }
            }
        }
        self.transfer_branches_over(now);
    }

    /// Every phone of the target failed: the transfer fails with the most telling answer.
    fn transfer_branches_over(&mut self, now: Now) {
        let Some(State::Ringing { first }) = self.transfer.as_ref().map(|t| &t.state) else {
            return;
        };
        let codes: Vec<u16> = self.branches[*first..]
            .iter()
            .map(|b| b.final_code)
            .collect::<Option<_>>()
            .unwrap_or_default();
        if codes.is_empty() && self.branches.len() > *first {
            return;
        }
        let code = if codes.contains(&486) {
            486
        } else {
            codes.iter().copied().find(|c| *c != 487).unwrap_or(480)
        };
        self.transfer_failed(now, code);
    }

    /// The target's phone answered with its offer: the party that stays gets it.
    fn transfer_answered(&mut self, now: Now, index: usize, resp: &rsip::Response) {
        let Some(b) = self.branches.get(index) else {
            return;
        };
        let mut leg = b.leg.clone();
        let peer = b.peer;
        leg.remote_tag = dialog::tag_of(&resp.headers, "To").unwrap_or_default();
        if let Some(target) = dialog::contact_of(&resp.headers) {
            leg.remote_target = target;
        }
        leg.route_set = dialog::record_routes(&resp.headers)
            .into_iter()
            .rev()
            .collect();
        leg.remote_sdp = String::from_utf8_lossy(&resp.body).into_owned();
        self.branches[index].final_code = Some(resp.status_code.code());
        self.cancel_branches(Some(index));
        let offer = match body_of(&resp.headers, &resp.body) {
            Some((ctype, bytes)) if is_sdp(ctype) => Sdp::parse(bytes).ok(),
            _ => None,
        };
        // A new dialog's INVITE has CSeq 1.
        self.offer_to_staying(now, leg, peer, offer, 1);
    }

    /// The new party's offer (its 2xx not acknowledged yet, at `ack_cseq`) goes to the party that
    /// stays in a re-INVITE.
    pub(super) fn offer_to_staying(
        &mut self,
        now: Now,
        leg: DialogLeg,
        peer: Peer,
        offer: Option<Sdp>,
        ack_cseq: u32,
    ) {
        let clear = self.peers.iter().any(|p| p.transport != Transport::Tls)
            || peer.transport != Transport::Tls;
        let usable =
            offer.filter(|o| o.media().len() == self.ports.len() && !(carries_keys(o) && clear));
        let Some(offer) = usable else {
            tracing::warn!(call = %self.id, "transfer target answered without a usable offer");
            self.hang_up_target(&leg, peer, ack_cseq);
            return self.transfer_failed(now, 488);
        };
        let from = self.transfer.as_ref().map_or(0, |t| t.from);
        let other = 1 - from;
        let Some(body) = self.rewrite_for(other, &offer) else {
            self.hang_up_target(&leg, peer, ack_cseq);
            return self.transfer_failed(now, 488);
        };
        let stay = self.peers[other];
        let cseq = self.legs[other].local_cseq + 1;
        let reinvite = self.env.locals.get(stay.transport).and_then(|local| {
            dialog::request(
                "INVITE",
                &self.legs[other],
                local,
                stay.transport,
                cseq,
                70,
                &[],
                Some(("application/sdp", body.as_bytes())),
            )
        });
        let Some(reinvite) = reinvite else {
            self.hang_up_target(&leg, peer, ack_cseq);
            return self.transfer_failed(now, 500);
        };
        self.legs[other].local_cseq = cseq;
        self.offer_pending = true;
        let id = self.send_request(reinvite, stay);
        if let Some(t) = self.transfer.as_mut() {
            t.deadline = None;
            t.state = State::Reinviting {
                id,
                cseq,
                leg,
                peer,
                offer,
                ack_cseq,
            };
        }
    }

    /// The answer to a request the call sent: `true` when it was the transfer's.
    pub(super) fn transfer_answer(&mut self, now: Now, id: u64, outcome: &ClientOutcome) -> bool {
        if self.fetched(now, id, outcome) {
            return true;
        }
        match self.transfer.as_ref().map(|t| &t.state) {
            Some(State::Leaving { id: mine, .. }) if *mine == id => {
                self.referrer_answered();
                return true;
            }
            Some(State::Reinviting { id: mine, .. }) if *mine == id => {}
            _ => return false,
        }
        let Some(t) = self.transfer.as_mut() else {
            return false;
        };
        let State::Reinviting {
            cseq,
            leg,
            peer,
            offer,
            ack_cseq,
            ..
        } = std::mem::replace(&mut t.state, State::Resolving)
        else {
            return false;
        };
        let from = t.from;
        let other = 1 - from;
        self.offer_pending = false;
        let answer = match outcome {
            ClientOutcome::Final(resp) if (200..300).contains(&resp.status_code.code()) => {
                self.ack_forwarded(other, cseq);
                match body_of(&resp.headers, &resp.body) {
                    Some((ctype, bytes)) if is_sdp(ctype) => Sdp::parse(bytes)
                        .ok()
                        .filter(|a| a.media().len() == offer.media().len())
                        .map(|a| (a, String::from_utf8_lossy(&resp.body).into_owned())),
                    _ => None,
                }
            }
            _ => None,
        };
        let ack_body = answer.as_ref().and_then(|(a, _)| self.rewrite_for(from, a));
        let (Some((answer, answer_text)), Some(ack_body)) = (answer, ack_body) else {
            tracing::warn!(call = %self.id, "the party staying refused the new session");
            self.hang_up_target(&leg, peer, ack_cseq);
            self.transfer_failed(now, 488);
            return true;
        };
        // The new party takes the referrer's place.
        self.set_media_peers(other, &answer);
        self.legs[other].remote_sdp = answer_text;
        self.sdp[other] = answer;
        let old_leg = std::mem::replace(&mut self.legs[from], leg);
        let old_peer = std::mem::replace(&mut self.peers[from], peer);
        self.retired_call_ids.push(old_leg.call_id.clone());
        self.sdp[from] = offer.clone();
        for sides in &mut self.latched {
            sides[from] = Default::default();
        }
        self.recorded_latches = None;
        self.acks[from].clear();
        if let Some(local) = self.env.locals.get(peer.transport)
            && let Some(ack) = dialog::request(
                "ACK",
                &self.legs[from],
                local,
                peer.transport,
                ack_cseq,
                70,
                &[],
                Some(("application/sdp", ack_body.as_bytes())),
            )
        {
            self.remember_ack(from, ack_cseq, ack.clone());
            self.push(Action::Ack { req: ack, peer });
        }
        if let Some(t) = self.transfer.as_mut() {
            t.state = State::Committing {
                old_leg,
                old_peer,
                offer,
            };
        }
        tracing::info!(call = %self.id, extension = %self.legs[from].extension, "transfer answered; recording it");
        self.commit(now, Purpose::Transfer);
        true
    }

    /// The record names the new party: the referrer hears the transfer worked, then is hung up.
    pub(super) fn transfer_committed(&mut self, now: Now, ok: bool) {
        let Some(t) = self.transfer.take() else {
            return;
        };
        let State::Committing {
            mut old_leg,
            old_peer,
            offer,
        } = t.state
        else {
            self.transfer = Some(t);
            return;
        };
        if !ok {
            // The call goes on with the new party either way; a failover before the next record
            // write would carry on the old one.
            tracing::warn!(call = %self.id, "transferred call's record not stored");
        }
        tracing::info!(call = %self.id, to = %t.target, "call transferred");
        let result = if t.ring_back { "rung_back" } else { "done" };
        metrics::counter!("pbx_call_transfers_total", "result" => result).increment(1);
        if t.referrer_gone {
            self.set_media_peers(t.from, &offer);
            return;
        }
        let id = self.notify_on(&mut old_leg, old_peer, 200, true);
        self.transfer = Some(Transfer {
            state: State::Leaving {
                id: id.unwrap_or(0),
                bye: false,
                old_leg,
                old_peer,
                offer,
            },
            deadline: Some(now.at + LEAVING),
            ..t
        });
        if id.is_none() {
            self.referrer_answered();
        }
    }

    /// The departing referrer answered its NOTIFY (it gets BYE next) or its BYE (the new party's
    /// media flows); also when it takes too long.
    fn referrer_answered(&mut self) {
        let Some(mut t) = self.transfer.take() else {
            return;
        };
        let State::Leaving {
            bye,
            mut old_leg,
            old_peer,
            offer,
            ..
        } = t.state
        else {
            self.transfer = Some(t);
            return;
        };
        if bye {
            self.set_media_peers(t.from, &offer);
            return;
        }
        let id = self.bye_on(&mut old_leg, old_peer);
        t.state = State::Leaving {
            id: id.unwrap_or(0),
            bye: true,
            old_leg,
            old_peer,
            offer,
        };
        self.transfer = Some(t);
        if id.is_none() {
            self.referrer_answered();
        }
    }

    /// The transfer failed with `code`: the referrer is told and keeps the call, or, if it already
    /// hung up, the party that stays is hung up too.
    pub(super) fn transfer_failed(&mut self, now: Now, code: u16) {
        self.cancel_branches(self.winner);
        let Some(t) = self.transfer.as_ref() else {
            return;
        };
        let gone = t.referrer_gone;
        let from = t.from;
        tracing::info!(call = %self.id, code, "transfer failed");
        metrics::counter!("pbx_call_transfers_total", "result" => "failed").increment(1);
        if gone && self.env.config.transfer_ring_back && !t.ring_back {
            return self.ring_back(from);
        }
        if gone {
            self.transfer = None;
            self.send_bye(1 - from);
            let outcome = Outcome::new(
                Disposition::Answered,
                HangupSide::Pbx,
                "transfer-failed",
                200,
            );
            return self.finish(now, outcome);
        }
        self.notify_referrer(code, true);
        self.transfer = None;
    }

    /// The referrer left and its target did not answer: the referrer's own phones ring, for it to
    /// take the call back; it comes back in the referrer's place like a transfer's target.
    fn ring_back(&mut self, from: usize) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        let referrer = self.legs[from].extension.clone();
        tracing::info!(call = %self.id, extension = %referrer, "ringing the referrer back");
        t.ring_back = true;
        t.target = referrer.clone();
        t.state = State::Resolving;
        t.deadline = None;
        let stage = Stage {
            next: Next::Number {
                number: referrer.clone(),
                forwarder: Some(referrer),
            },
            after: After::Any,
            hops: 0,
        };
        let srtp = carries_keys(&self.sdp[1 - from]);
        self.push(Action::Resolve {
            stage,
            srtp,
            anonymous: false,
            started_at: self.started_at,
            transfer: true,
        });
    }

    /// The target was not answered in time.
    pub(super) fn transfer_timeout(&mut self, now: Now) {
        if self.transfer_deadline().is_none_or(|d| now.at < d) {
            return;
        }
        let leaving = matches!(
            self.transfer.as_ref().map(|t| &t.state),
            Some(State::Leaving { .. })
        );
        if !leaving {
            return self.transfer_failed(now, 408);
        }
        // The referrer is slow to go: on without it.
        tracing::info!(call = %self.id, "referrer slow to answer; going on");
        if let Some(t) = self.transfer.as_mut() {
            t.deadline = Some(now.at + LEAVING);
        }
        self.referrer_answered();
    }

    /// A BYE from the referrer during its transfer: the call goes on for the transfer to complete.
    /// `false` when no transfer of this leg is in progress.
    pub(super) fn referrer_left(&mut self, from: usize) -> bool {
        match self.transfer.as_mut() {
            Some(t)
                if t.from == from
                    && t.refer.is_none()
                    && !matches!(t.state, State::Committing { .. } | State::Leaving { .. }) =>
            {
                t.referrer_gone = true;
                tracing::info!(call = %self.id, "referrer hung up; transfer goes on");
                true
            }
            _ => false,
        }
    }

    /// The call ends during a transfer: the target's phones stop ringing, an answered target is
    /// hung up.
    pub(super) fn abandon_transfer(&mut self) {
        let Some(t) = self.transfer.take() else {
            return;
        };
        match t.state {
            State::Reinviting {
                leg,
                peer,
                ack_cseq,
                ..
            } => self.hang_up_target(&leg, peer, ack_cseq),
            State::Fetching { mut leg, peer, .. } => {
                self.bye_on(&mut leg, peer);
            }
            State::Committing {
                mut old_leg,
                old_peer,
                ..
            }
            | State::Leaving {
                bye: false,
                mut old_leg,
                old_peer,
                ..
            } if !t.referrer_gone => {
                self.bye_on(&mut old_leg, old_peer);
            }
            _ => {}
        }
    }

    /// ACK (without an answer) and BYE a target whose answer the call cannot use.
    fn hang_up_target(&mut self, leg: &DialogLeg, peer: Peer, ack_cseq: u32) {
        let Some(local) = self.env.locals.get(peer.transport) else {
            return;
        };
        if let Some(ack) =
            dialog::request("ACK", leg, local, peer.transport, ack_cseq, 70, &[], None)
        {
            self.push(Action::Ack { req: ack, peer });
        }
        let mut leg = leg.clone();
        self.bye_on(&mut leg, peer);
    }

    /// A NOTIFY of the transfer's progress to the referrer (still on its leg).
    pub(super) fn notify_referrer(&mut self, code: u16, last: bool) {
        let Some(from) = self.transfer.as_ref().map(|t| t.from) else {
            return;
        };
        let mut leg = self.legs[from].clone();
        let peer = self.peers[from];
        self.notify_on(&mut leg, peer, code, last);
        self.legs[from].local_cseq = leg.local_cseq;
    }

    fn notify_on(&mut self, leg: &mut DialogLeg, peer: Peer, code: u16, last: bool) -> Option<u64> {
        let local = self.env.locals.get(peer.transport)?;
        let state = if last {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        let extra = [
            ("Event".to_owned(), "refer".to_owned()),
            ("Subscription-State".to_owned(), state.to_owned()),
        ];
        leg.local_cseq += 1;
        let frag = sipfrag(code);
        if let Some(notify) = dialog::request(
            "NOTIFY",
            leg,
            local,
            peer.transport,
            leg.local_cseq,
            70,
            &extra,
            Some(("message/sipfrag;version=2.0", frag.as_bytes())),
        ) {
            return Some(self.send_request(notify, peer));
        }
        None
    }

    pub(super) fn bye_on(&mut self, leg: &mut DialogLeg, peer: Peer) -> Option<u64> {
        let local = self.env.locals.get(peer.transport)?;
        leg.local_cseq += 1;
        let bye = dialog::request(
            "BYE",
            leg,
            local,
            peer.transport,
            leg.local_cseq,
            70,
            &[],
            None,
        )?;
        Some(self.send_request(bye, peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refer_to_names_a_number() {
        assert_eq!(refer_target("<sip:1004@pbx.test>").as_deref(), Ok("1004"));
        assert_eq!(
            refer_target("sip:+15550100@pbx.test;user=phone").as_deref(),
            Ok("+15550100")
        );
        assert!(refer_target("<sip:alice@pbx.test>").is_err());
        assert!(refer_target("<tel:1004>").is_err());
        assert!(refer_target("<sip:1004>").is_err());
        assert!(refer_target("<sip:1004@>").is_err());
        assert!(refer_target(&format!("<sip:{}@pbx>", "1".repeat(600))).is_err());
    }
}
