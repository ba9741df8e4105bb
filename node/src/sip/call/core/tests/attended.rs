//! Attended transfer in virtual time, across two calls: in both, 1002's desk phone talks with a
//! caller. The desk refers the first call's caller with Replaces naming its leg of the second call:
//! the second call hands its other party over and ends, the party joins the first call with a
//! re-INVITE without an offer, and its offer reaches the party that stays.

use super::*;
use crate::sip::call::core::attended::{Handover, HandoverReply, NoHandover, Replaces};
use crate::sip::endpoint::ClientOutcome;

const JOINING: &str = "198.18.0.23:5068";
const REFER_TX: u64 = 7;

fn sent(out: &[Action], method: &str) -> Vec<(u64, rsip::Request, Peer)> {
    requests(out)
        .into_iter()
        .filter(|(_, r, _)| r.method.to_string() == method)
        .collect()
}

/// The second call: 1003 (at [`JOINING`]) talking with the desk.
fn consultation() -> Harness {
    let mut h = Harness::talking();
    h.core.legs[CALLER].call_id = "consult-call".into();
    h.core.legs[CALLER].extension = "1003".into();
    h.core.peers[CALLER] = udp(JOINING);
    h
}

/// The Replaces naming the desk's leg of `h`, as the desk writes it.
fn replaces_of(h: &Harness) -> String {
    let leg = &h.core.legs[CALLEE];
    format!(
        "{}%3Bto-tag%3D{}%3Bfrom-tag%3D{}",
        leg.call_id, leg.remote_tag, leg.local_tag
    )
}

/// The desk refers the first call's caller to the consultation's other party.
fn refer_with_replaces(h: &mut Harness, replaces: &str) -> Option<(Replaces, String)> {
    let mut req = h.callee_sends("REFER", 5, "");
    req.headers.push(rsip::Header::Other(
        "Refer-To".into(),
        format!("<sip:1003@pbx.test?Replaces={replaces}>"),
    ));
    h.feed(Input::Request {
        tx: tx(REFER_TX),
        req,
    });
    h.take().into_iter().find_map(|a| match a {
        Action::TakeOver { replaces, referrer } => Some((replaces, referrer)),
        _ => None,
    })
}

/// `other` answers a hand-over request; its outcome, and what else it did.
fn ask(
    other: &mut Harness,
    replaces: Replaces,
    referrer: &str,
) -> (Result<Box<Handover>, NoHandover>, Vec<Action>) {
    let (reply, _rx) = tokio::sync::oneshot::channel();
    other.feed(Input::HandOver {
        replaces,
        referrer: referrer.into(),
        reply: HandoverReply(reply),
    });
    let mut out = other.take();
    let at = out
        .iter()
        .position(|a| matches!(a, Action::HandOver { .. }))
        .expect("the question is answered");
    let Action::HandOver { result, .. } = out.remove(at) else {
        unreachable!()
    };
    (result, out)
}

#[test]
fn the_consulted_party_takes_the_referrers_place() {
    let mut first = Harness::talking();
    let mut second = consultation();
    let (replaces, referrer) =
        refer_with_replaces(&mut first, &replaces_of(&second)).expect("the other call is asked");
    assert_eq!(referrer, "1002");

    // The consultation gives its caller's leg away, hangs the desk up and ends as transferred.
    let (result, out) = ask(&mut second, replaces, &referrer);
    let handover = result.expect("handed over");
    assert_eq!(handover.leg.call_id, "consult-call");
    assert_eq!(handover.peer.addr, addr(JOINING));
    let byes = sent(&out, "BYE");
    assert_eq!(byes.len(), 1);
    assert_eq!(byes[0].2.addr, addr(DESK));
    assert_eq!(ended(&out).cause, "transferred");
    assert!(
        !second.core.call_ids().contains(&"consult-call".to_owned()),
        "the given leg is routed to the first call now"
    );
    let given_cseq = handover.leg.local_cseq;

    // The first call accepts the REFER and asks the joining party for an offer.
    first.feed(Input::TakenOver(Ok(handover)));
    let out = first.take();
    assert_eq!(responses(&out), [(REFER_TX, 202)]);
    assert_eq!(sent(&out, "NOTIFY").len(), 1);
    let reinvites = sent(&out, "INVITE");
    assert_eq!(reinvites.len(), 1);
    let (id, reinvite, peer) = &reinvites[0];
    assert_eq!(peer.addr, addr(JOINING));
    assert!(reinvite.body.is_empty(), "asked for an offer");
    assert_eq!(cseq(reinvite), format!("{} INVITE", given_cseq + 1));

    // Its offer goes to the caller that stays.
    let offer = sdp("198.18.0.23", 4100, "sendrecv");
    first.feed(Input::Answer {
        id: *id,
        outcome: ClientOutcome::Final(Harness::reply_to(reinvite, 200, &offer)),
    });
    let out = first.take();
    assert!(acks(&out).is_empty(), "the ACK waits for the answer");
    let to_caller = sent(&out, "INVITE");
    assert_eq!(to_caller.len(), 1);
    let (id2, reinvite2, peer2) = &to_caller[0];
    assert_eq!(peer2.addr, addr(CALLER_ADDR));
    assert_eq!(media_port(&reinvite2.body), (PBX.to_owned(), PORTS[0]));

    // A retransmitted 2xx meanwhile is not a stray to hang up.
    first.feed(Input::Stray {
        resp: Harness::reply_to(reinvite, 200, &offer),
        peer: Some(udp(JOINING)),
    });
    assert!(first.take().is_empty());

    let answer = sdp("198.18.0.21", 4000, "sendrecv");
    first.feed(Input::Answer {
        id: *id2,
        outcome: ClientOutcome::Final(Harness::reply_to(reinvite2, 200, &answer)),
    });
    let out = first.take();
    let joined_ack = acks(&out)
        .into_iter()
        .find(|(_, p)| p.addr == addr(JOINING))
        .expect("the joining party's 200 is acknowledged");
    assert_eq!(cseq(&joined_ack.0), format!("{} ACK", given_cseq + 1));
    assert_eq!(media_port(&joined_ack.0.body), (PBX.to_owned(), PORTS[1]));
    let (purpose, record) = committed(&out).pop().expect("the record is updated");
    assert_eq!(purpose, Purpose::Transfer);
    assert_eq!(record.callee.extension, "1003");
    assert_eq!(record.callee.call_id, "consult-call");

    // Then, as in a blind transfer: the desk is told, then hung up on the first call too.
    first.feed(Input::Committed {
        purpose: Purpose::Transfer,
        ok: true,
    });
    let notify = sent(&first.take(), "NOTIFY").pop().expect("told");
    first.feed(Input::Answer {
        id: notify.0,
        outcome: ClientOutcome::Final(Harness::reply_to(&notify.1, 200, "")),
    });
    let bye = sent(&first.take(), "BYE").pop().expect("hung up");
    assert_eq!(bye.2.addr, addr(DESK));
    assert_eq!(first.core.parties(), Some(["1001", "1003"]));
}

#[test]
fn a_replaces_naming_no_call_of_the_referrer_is_refused() {
    // Another phone's dialog: not the referrer's to give away.
    let mut first = Harness::talking();
    let mut second = consultation();
    let (replaces, _) = refer_with_replaces(&mut first, &replaces_of(&second)).unwrap();
    let (result, out) = ask(&mut second, replaces.clone(), "1009");
    assert_eq!(result.unwrap_err().0, 403);
    assert!(out.is_empty(), "the consultation goes on");
    assert!(second.core.parties().is_some());

    // Tags that do not match: no such dialog.
    let bad = Replaces {
        to_tag: "nope".into(),
        ..replaces
    };
    let (result, _) = ask(&mut second, bad, "1002");
    assert_eq!(result.unwrap_err().0, 481);

    // The REFER gets the refusal and the call goes on as before.
    first.feed(Input::TakenOver(Err((
        481,
        "Call/Transaction Does Not Exist",
    ))));
    let out = first.take();
    assert_eq!(responses(&out), [(REFER_TX, 481)]);
    assert!(sent(&out, "INVITE").is_empty());

    // Replacing the very call the REFER came in: 400 at once.
    let mut h = Harness::talking();
    let own = replaces_of(&h);
    assert!(refer_with_replaces(&mut h, &own).is_none());
}
