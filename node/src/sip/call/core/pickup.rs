//! Call pickup: a phone dials the pickup code while a colleague's phone rings, and answers that
//! call itself. The picking phone's INVITE joins the ringing call in place of the phones it rang
//! (they are cancelled): both parties offered, so each gets an answer the PBX makes from the other's
//! offer ([`pbx_sip::sdp::answer`]), on the call's relay ports. The record is committed before either
//! hears `200 OK`, as for any answer.

use pbx_sip::sdp::{self, Sdp};
use pbx_sip::transaction::{Peer, ServerTxId};
use storage::model::DialogLeg;

use super::super::dialog::{self, body_of, is_sdp};
use super::{Action, Branch, CALLEE, CALLER, CallCore, Delayed, Now, Phase, Purpose};
use crate::sip::transport::transport_name;

/// The phone picking a call up: its INVITE, on its server transaction.
#[derive(Debug)]
pub(crate) struct Picker {
    pub(crate) tx: ServerTxId,
    pub(crate) invite: rsip::Request,
    pub(crate) peer: Peer,
    /// Its extension (it authenticated the INVITE).
    pub(crate) extension: String,
}

/// Why a pickup was refused: the picking phone's answer.
type Refused = (u16, &'static str);

/// What joining the picking phone to the call takes.
struct Joined {
    /// Its dialog, the PBX as its server.
    leg: DialogLeg,
    /// Its offer, and the answer made from it for the caller.
    offer: Sdp,
    to_caller: Sdp,
    /// The answers as sent: the caller's, the picking phone's.
    for_caller: String,
    for_picker: String,
}

impl CallCore {
    /// A phone asks to answer this call instead of the phones it rings.
    pub(super) fn on_pickup(&mut self, now: Now, picker: Picker) {
        match self.pickup_session(&picker) {
            Ok(joined) => self.picked_up(now, picker, joined),
            Err((code, reason)) => {
                tracing::info!(call = %self.id, extension = %picker.extension, code, reason, "pickup refused");
                metrics::counter!("pbx_call_pickups_total", "result" => "refused").increment(1);
                let resp = dialog::response(
                    &picker.invite,
                    code,
                    Some(reason),
                    &dialog::token()[..16],
                    None,
                    &[],
                    None,
                );
                self.respond(picker.tx, resp);
            }
        }
    }

    /// How the picking phone joins, if it can.
    fn pickup_session(&self, picker: &Picker) -> Result<Joined, Refused> {
        let ringing = matches!(self.phase, Phase::Ringing)
            && self.winner.is_none()
            && self.silence.is_none()
            && self.transfer.is_none();
        if !ringing {
            return Err((480, "No Call To Pick Up"));
        }
        if !matches!(self.delayed, Delayed::No) {
            // The caller made no offer: nothing to answer the picking phone's offer with.
            return Err((488, "Caller Made No Offer"));
        }
        let offer = match body_of(&picker.invite.headers, &picker.invite.body) {
            Some((ctype, bytes)) if is_sdp(ctype) => Sdp::parse(bytes).ok(),
            _ => None,
        };
        let offer = offer
            .filter(|o| o.media().len() == self.sdp[CALLER].media().len())
            .ok_or((488, "Offer Does Not Match The Call"))?;
        let to_caller = sdp::answer(&self.sdp[CALLER], &offer)
            .map_err(|_| (488, "No Common Codec With The Caller"))?;
        let to_picker = sdp::answer(&offer, &self.sdp[CALLER])
            .map_err(|_| (488, "No Common Codec With The Caller"))?;
        let bad = (488, "Not Acceptable Here");
        let for_caller = self.rewrite_for(CALLER, &to_caller).ok_or(bad)?;
        let for_picker = self.rewrite_for(CALLEE, &to_picker).ok_or(bad)?;
        let leg = self
            .picker_leg(picker)
            .ok_or((400, "Malformed Dialog Headers"))?;
        Ok(Joined {
            leg,
            offer,
            to_caller,
            for_caller,
            for_picker,
        })
    }

    /// The picking phone's dialog, the PBX as its server.
    fn picker_leg(&self, picker: &Picker) -> Option<DialogLeg> {
        let headers = &picker.invite.headers;
        let local = self.env.locals.get(picker.peer.transport)?;
        Some(DialogLeg {
            extension: picker.extension.clone(),
            call_id: dialog::first(headers, "Call-ID")?.to_owned(),
            local_tag: dialog::token()[..16].to_owned(),
            remote_tag: dialog::tag_of(headers, "From")?,
            local_cseq: 0,
            remote_cseq: dialog::cseq_of(headers)?,
            local_uri: dialog::without_tag(dialog::first(headers, "To")?),
            remote_uri: dialog::without_tag(dialog::first(headers, "From")?),
            remote_target: dialog::contact_of(headers)?,
            route_set: dialog::record_routes(headers),
            local_contact: dialog::contact_uri(&self.caller, local, picker.peer.transport),
            peer: picker.peer.addr.to_string(),
            transport: transport_name(picker.peer.transport).to_owned(),
            remote_sdp: String::from_utf8_lossy(&picker.invite.body).into_owned(),
        })
    }

    /// The picking phone takes the call: the ringing phones are cancelled and the record is
    /// committed; both hear 200 once it is stored.
    fn picked_up(&mut self, now: Now, picker: Picker, joined: Joined) {
        let Joined {
            leg,
            offer,
            to_caller,
            for_caller,
            for_picker,
        } = joined;
        tracing::info!(call = %self.id, extension = %picker.extension, callee = %self.callee, "call picked up");
        metrics::counter!("pbx_call_pickups_total", "result" => "picked_up").increment(1);
        self.cancel_branches(None);
        let ok = dialog::response(
            &picker.invite,
            200,
            None,
            &leg.local_tag,
            Some(&leg.local_contact),
            &[],
            Some(("application/sdp", for_picker.as_bytes())),
        );
        self.push(Action::Adopt {
            call_id: leg.call_id.clone(),
            tx: picker.tx,
        });
        let mut branch = Branch::new(leg.clone(), picker.peer);
        branch.final_code = Some(200);
        self.branches.push(branch);
        self.winner = Some(self.branches.len() - 1);
        self.legs[CALLEE] = leg;
        self.peers[CALLEE] = picker.peer;
        self.set_media_peers(CALLEE, &offer);
        self.sdp[CALLEE] = to_caller;
        self.picked = true;
        self.pickup = Some(PendingPickup {
            tx: picker.tx,
            invite: picker.invite,
            ok,
        });
        self.answered_at = Some(now.wall);
        self.phase = Phase::Committing {
            answer_sdp: for_caller,
            extra: Vec::new(),
        };
        self.commit(now, Purpose::Answer);
    }

    /// The picking phone's 200, once the record is stored.
    pub(super) fn answer_picker(&mut self) {
        if let Some(p) = self.pickup.take() {
            self.respond(p.tx, p.ok);
        }
    }

    /// The call could not be stored: the picking phone is refused rather than hung up.
    /// `false` when no phone picked the call up.
    pub(super) fn refuse_picker(&mut self, code: u16, reason: &str) -> bool {
        let Some(p) = self.pickup.take() else {
            return false;
        };
        let tag = &self.legs[CALLEE].local_tag;
        let resp = dialog::response(&p.invite, code, Some(reason), tag, None, &[], None);
        self.respond(p.tx, resp);
        true
    }
}

/// A pickup whose record is being committed: the picking phone's 200 waits for it.
#[derive(Debug)]
pub(super) struct PendingPickup {
    tx: ServerTxId,
    invite: rsip::Request,
    ok: rsip::Response,
}
