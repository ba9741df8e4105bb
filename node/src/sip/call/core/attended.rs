//! Attended transfer (RFC 5589 §7): a phone with two calls, a held one and the consultation it
//! made, sends REFER in one of them naming the other with `Replaces` (RFC 3891). The PBX, a B2BUA,
//! does what the REFER asks itself: the call that received the REFER takes the other call's far
//! party in the referrer's place, and the other call ends.
//!
//! The far party is already in a call with the PBX, so it is not rung: its own call hands its leg
//! over ([`CallCore::hand_over`]), it gets a re-INVITE without an offer in that dialog, and its
//! offer then follows the blind transfer's path (a re-INVITE to the party that stays, the answer
//! back in the ACK, the record committed before the referrer is told and hung up).

use pbx_sip::sdp::Sdp;
use pbx_sip::transaction::{Peer, ServerTxId};
use storage::model::{DialogLeg, Disposition, HangupSide};

use super::super::dialog::{self, body_of, is_sdp};
use super::super::record::Outcome;
use super::transfer::{State, Transfer};
use super::{Action, CallCore, Now, Phase};
use crate::sip::endpoint::ClientOutcome;

/// Longest Call-ID or tag accepted in a Replaces.
const MAX_ID: usize = 256;

/// The dialog a `Replaces` names (RFC 3891 §6.1). Which tag is which depends on who wrote it, so a
/// dialog matches when its two tags are these two, in either order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replaces {
    pub(crate) call_id: String,
    pub(crate) to_tag: String,
    pub(crate) from_tag: String,
}

impl Replaces {
    /// Reads a Replaces value (`call-id;to-tag=a;from-tag=b`, with `early-only` ignored).
    pub(crate) fn parse(value: &str) -> Result<Self, &'static str> {
        let mut parts = value.split(';').map(str::trim);
        let call_id = parts.next().unwrap_or("");
        let (mut to_tag, mut from_tag) = (None, None);
        for p in parts {
            match p.split_once('=') {
                Some((k, v)) if k.trim().eq_ignore_ascii_case("to-tag") => to_tag = Some(v.trim()),
                Some((k, v)) if k.trim().eq_ignore_ascii_case("from-tag") => {
                    from_tag = Some(v.trim());
                }
                _ => {}
            }
        }
        let ok = |s: &str| !s.is_empty() && s.len() <= MAX_ID && s.bytes().all(|b| b > b' ');
        match (to_tag, from_tag) {
            (Some(t), Some(f)) if ok(call_id) && ok(t) && ok(f) => Ok(Self {
                call_id: call_id.to_owned(),
                to_tag: t.to_owned(),
                from_tag: f.to_owned(),
            }),
            _ => Err("Bad Replaces"),
        }
    }

    /// Whether `leg` is the dialog this names.
    pub(crate) fn names(&self, leg: &DialogLeg) -> bool {
        leg.call_id == self.call_id
            && ((leg.local_tag == self.to_tag && leg.remote_tag == self.from_tag)
                || (leg.local_tag == self.from_tag && leg.remote_tag == self.to_tag))
    }
}

/// The `Replaces` a Refer-To URI carries as a header (`<sip:1003@pbx?Replaces=id%3Bto-tag%3Da…>`),
/// if any.
pub(crate) fn replaces_in(refer_to: &str) -> Result<Option<Replaces>, &'static str> {
    let uri = dialog::uri_of(refer_to);
    let Some((_, headers)) = uri.split_once('?') else {
        return Ok(None);
    };
    let value = headers.split('&').find_map(|h| {
        let (name, value) = h.split_once('=')?;
        name.eq_ignore_ascii_case("replaces").then_some(value)
    });
    match value {
        Some(v) => Replaces::parse(&percent_decode(v)?).map(Some),
        None => Ok(None),
    }
}

fn percent_decode(s: &str) -> Result<String, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("Bad Replaces")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "Bad Replaces")
}

/// A leg one call gives another: its dialog and where its phone is. Its session is asked for
/// anew.
#[derive(Debug, Clone)]
pub(crate) struct Handover {
    pub(crate) leg: DialogLeg,
    pub(crate) peer: Peer,
}

/// Why a call would not hand a leg over: the REFER's answer.
pub(crate) type NoHandover = (u16, &'static str);

/// Where the answer to a hand-over request goes (the asking call's driver waits on it).
#[derive(Debug)]
pub(crate) struct HandoverReply(
    pub(crate) tokio::sync::oneshot::Sender<Result<Box<Handover>, NoHandover>>,
);

impl CallCore {
    /// A REFER with Replaces on leg `from`: the named call's other party is to take `from`'s place.
    pub(super) fn on_attended_refer(
        &mut self,
        tx: ServerTxId,
        from: usize,
        req: rsip::Request,
        replaces: Replaces,
    ) {
        if self.call_ids().contains(&replaces.call_id) {
            return self.reply_in_leg(from, tx, &req, 400, Some("Cannot Replace This Call"));
        }
        let referrer = self.legs[from].extension.clone();
        tracing::info!(call = %self.id, extension = %referrer, replaced = %replaces.call_id, "attended transfer asked");
        let referred_by = dialog::first(&req.headers, "Referred-By")
            .filter(|v| v.len() <= super::transfer::MAX_REFER_VALUE)
            .map(str::to_owned);
        self.transfer = Some(Transfer::new(
            from,
            (tx, req),
            referred_by,
            String::new(),
            State::Joining,
        ));
        self.push(Action::TakeOver { replaces, referrer });
    }

    /// The other call's answer: its leg to join, or why not.
    pub(super) fn taken_over(&mut self, now: Now, result: Result<Box<Handover>, NoHandover>) {
        let Some(t) = self.transfer.as_ref() else {
            // The call ended meanwhile: the leg it was given would be left alone.
            if let Ok(h) = result {
                let mut leg = h.leg;
                self.bye_on(&mut leg, h.peer);
            }
            return;
        };
        if !matches!(t.state, State::Joining) {
            return;
        }
        let h = match result {
            Ok(h) => h,
            Err((code, reason)) => {
                tracing::info!(call = %self.id, code, reason, "attended transfer refused");
                self.answer_refer(code, Some(reason));
                self.transfer = None;
                return;
            }
        };
        let gone = t.referrer_gone;
        self.answer_refer(202, None);
        if !gone {
            self.notify_referrer(100, false);
        }
        let mut leg = h.leg;
        let peer = h.peer;
        // Asked for an offer (RFC 3725 flow IV): whatever it offers, the party that stays answers.
        leg.local_cseq += 1;
        let cseq = leg.local_cseq;
        let reinvite = self.env.locals.get(peer.transport).and_then(|local| {
            dialog::request("INVITE", &leg, local, peer.transport, cseq, 70, &[], None)
        });
        let Some(reinvite) = reinvite else {
            self.bye_on(&mut leg, peer);
            return self.transfer_failed(now, 500);
        };
        let id = self.send_request(reinvite, peer);
        if let Some(t) = self.transfer.as_mut() {
            t.target = leg.extension.clone();
            t.state = State::Fetching {
                id,
                cseq,
                leg,
                peer,
            };
        }
    }

    /// The joining party's answer to the re-INVITE without an offer: `true` when it was that.
    pub(super) fn fetched(&mut self, now: Now, id: u64, outcome: &ClientOutcome) -> bool {
        let Some(t) = self.transfer.as_mut() else {
            return false;
        };
        if !matches!(t.state, State::Fetching { id: mine, .. } if mine == id) {
            return false;
        }
        let State::Fetching {
            cseq,
            mut leg,
            peer,
            ..
        } = std::mem::replace(&mut t.state, State::Resolving)
        else {
            return false;
        };
        let offer = match outcome {
            ClientOutcome::Final(resp) if (200..300).contains(&resp.status_code.code()) => {
                if let Some(target) = dialog::contact_of(&resp.headers) {
                    leg.remote_target = target;
                }
                leg.remote_sdp = String::from_utf8_lossy(&resp.body).into_owned();
                match body_of(&resp.headers, &resp.body) {
                    Some((ctype, bytes)) if is_sdp(ctype) => Sdp::parse(bytes).ok(),
                    _ => None,
                }
            }
            _ => {
                // It refused the re-INVITE: it stays where it was, alone, so it is hung up.
                tracing::warn!(call = %self.id, "the joining party refused the re-INVITE");
                self.bye_on(&mut leg, peer);
                self.transfer_failed(now, 488);
                return true;
            }
        };
        self.offer_to_staying(now, leg, peer, offer, cseq);
        true
    }

    /// Another call asks for the leg `replaces` does not name, for the referrer (whose leg it
    /// names) transferred this call: the leg goes, the referrer is hung up and this call ends.
    pub(super) fn hand_over(
        &mut self,
        now: Now,
        replaces: &Replaces,
        referrer: &str,
        reply: HandoverReply,
    ) {
        let gone = match self.handover_check(replaces, referrer) {
            Ok(gone) => gone,
            Err(refused) => {
                return self.push(Action::HandOver {
                    reply,
                    result: Err(refused),
                });
            }
        };
        let keep = 1 - gone;
        let handover = Handover {
            leg: self.legs[keep].clone(),
            peer: self.peers[keep],
        };
        tracing::info!(call = %self.id, extension = %self.legs[keep].extension, "handing a leg over to an attended transfer");
        self.handed_over = Some(self.legs[keep].call_id.clone());
        self.push(Action::HandOver {
            reply,
            result: Ok(Box::new(handover)),
        });
        self.send_bye(gone);
        let outcome = Outcome::new(Disposition::Answered, HangupSide::Pbx, "transferred", 200);
        self.finish(now, outcome);
    }

    /// Which leg `replaces` names, if this call may give up its other one.
    fn handover_check(&self, replaces: &Replaces, referrer: &str) -> Result<usize, NoHandover> {
        let gone = (0..2)
            .find(|&i| replaces.names(&self.legs[i]))
            .ok_or((481, "Call/Transaction Does Not Exist"))?;
        // Only a party to a call can have it replaced (dialog identifiers can leak, in dialog-info).
        if self.legs[gone].extension != referrer {
            return Err((403, "Not A Party To That Call"));
        }
        let busy = !matches!(self.phase, Phase::Talking)
            || self.transfer.is_some()
            || self.offer_pending
            || !matches!(self.delayed, super::Delayed::No);
        if busy {
            return Err((491, "Replaced Call Busy"));
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refer_to_with_replaces() {
        let r = replaces_in(
            "<sip:1003@pbx.test?Replaces=abc%40host%3Bto-tag%3D12%3Bfrom-tag%3D34&Require=replaces>",
        )
        .unwrap();
        assert_eq!(
            r,
            Some(Replaces {
                call_id: "abc@host".into(),
                to_tag: "12".into(),
                from_tag: "34".into(),
            })
        );
        assert_eq!(replaces_in("<sip:1003@pbx.test>"), Ok(None));
        assert!(replaces_in("<sip:1003@pbx?Replaces=abc%3Bto-tag%3D12>").is_err());
        assert!(replaces_in("<sip:1003@pbx?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D%ZZ>").is_err());
        assert!(replaces_in("<sip:1003@pbx?Replaces=%3Bto-tag%3D1%3Bfrom-tag%3D2>").is_err());
    }

    #[test]
    fn tags_match_in_either_order() {
        let r = Replaces::parse("id;from-tag=a;to-tag=b;early-only").unwrap();
        let leg = DialogLeg {
            call_id: "id".into(),
            local_tag: "a".into(),
            remote_tag: "b".into(),
            ..DialogLeg::default()
        };
        assert!(r.names(&leg));
        let swapped = DialogLeg {
            local_tag: "b".into(),
            remote_tag: "a".into(),
            ..leg.clone()
        };
        assert!(r.names(&swapped));
        let other = DialogLeg {
            remote_tag: "c".into(),
            ..leg
        };
        assert!(!r.names(&other));
    }
}
