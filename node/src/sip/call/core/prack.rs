//! Reliable provisional responses (RFC 3262) on the callee's leg: the PBX offers `100rel` to the
//! callee's devices and PRACKs each reliable provisional response itself, so a device or gateway that
//! insists on them rings as any other. The caller's leg gets provisional responses unreliably; a caller
//! that requires `100rel` is refused with `420` at admission.

use super::super::dialog;
use super::CallCore;

/// What a provisional response asks of its receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reliability {
    /// An ordinary provisional response.
    Unreliable,
    /// A reliable one, new: PRACK it and pass it on.
    New(u32),
    /// A reliable one seen already (our PRACK was lost): PRACK it again, pass nothing on.
    Again(u32),
    /// A reliable one older than the last: ignore it.
    Stale,
}

/// Whether `resp` is a reliable provisional response, and its `RSeq`.
fn rseq_of(resp: &rsip::Response) -> Option<u32> {
    let required = pbx_sip::codec::header_values(&resp.headers, "Require")
        .flat_map(|v| v.split(','))
        .any(|o| o.trim().eq_ignore_ascii_case("100rel"));
    let rseq = dialog::first(&resp.headers, "RSeq")?.trim().parse().ok()?;
    required.then_some(rseq)
}

/// The INVITE's `Supported` with `100rel` added, for the callee's leg.
pub(super) fn offer_100rel(extra: &mut Vec<(String, String)>) {
    match extra.iter_mut().find(|(name, _)| name == "Supported") {
        Some((_, value)) => value.push_str(", 100rel"),
        None => extra.push(("Supported".into(), "100rel".into())),
    }
}

impl CallCore {
    /// Classifies a provisional response of branch `index`, remembering a new `RSeq`.
    pub(super) fn reliability(&mut self, index: usize, resp: &rsip::Response) -> Reliability {
        let Some(rseq) = rseq_of(resp) else {
            return Reliability::Unreliable;
        };
        let Some(branch) = self.branches.get_mut(index) else {
            return Reliability::Stale;
        };
        match branch.rseq {
            Some(last) if rseq < last => Reliability::Stale,
            Some(last) if rseq == last => Reliability::Again(rseq),
            _ => {
                branch.rseq = Some(rseq);
                Reliability::New(rseq)
            }
        }
    }

    /// PRACKs branch `index`'s reliable provisional response `rseq`, in the early dialog it created
    /// (its To tag, Contact and Record-Route are already in the branch's leg).
    pub(super) fn prack(&mut self, index: usize, rseq: u32) {
        let Some(branch) = self.branches.get_mut(index) else {
            return;
        };
        let Some(local) = self.env.locals.get(branch.peer.transport) else {
            return;
        };
        branch.leg.local_cseq += 1;
        let rack = [("RAck".to_owned(), format!("{rseq} 1 INVITE"))];
        let (leg, peer) = (&branch.leg, branch.peer);
        let req = dialog::request(
            "PRACK",
            leg,
            local,
            peer.transport,
            leg.local_cseq,
            70,
            &rack,
            None,
        );
        if let Some(req) = req {
            self.send_request(req, peer);
        }
    }
}
