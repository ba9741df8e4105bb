//! Blind transfer in virtual time: the callee refers the caller to 1004, whose phone rings without
//! an offer, answers with one, the caller is re-INVITEd with it, the new party takes the callee's
//! place in the record, and only then is the callee told and hung up.

use super::*;
use crate::sip::endpoint::ClientOutcome;

const TARGET: &str = "198.18.0.34:5070";
const REFER_TX: u64 = 7;

fn target_phone() -> Binding {
    let mut b = binding(TARGET);
    b.aor = "1004".into();
    b.contact = format!("sip:1004@{TARGET}");
    b
}

fn refer(h: &Harness, refer_to: &str) -> rsip::Request {
    let mut req = h.callee_sends("REFER", 5, "");
    req.headers
        .push(rsip::Header::Other("Refer-To".into(), refer_to.into()));
    req.headers.push(rsip::Header::Other(
        "Referred-By".into(),
        "<sip:1002@pbx.test>".into(),
    ));
    req
}

fn sent(out: &[Action], method: &str) -> Vec<(u64, rsip::Request, Peer)> {
    requests(out)
        .into_iter()
        .filter(|(_, r, _)| r.method.to_string() == method)
        .collect()
}

/// Where the relay was told to send the callee side's RTP, if it was.
fn target_media(out: &[Action]) -> Option<SocketAddr> {
    out.iter().find_map(|a| match a {
        Action::SetPeer {
            side: Side::Callee,
            peer,
            ..
        } => peer.rtp,
        _ => None,
    })
}

fn sipfrag_of(req: &rsip::Request) -> (String, String) {
    (
        String::from_utf8_lossy(&req.body).into_owned(),
        header(&req.headers, "Subscription-State").to_owned(),
    )
}

/// The callee referred the caller to 1004 and 1004's phone rings.
fn ringing_target() -> Harness {
    let mut h = Harness::talking();
    let req = refer(&h, "<sip:1004@pbx.test>");
    h.feed(Input::Request {
        tx: tx(REFER_TX),
        req,
    });
    let out = h.take();
    let stage = out
        .iter()
        .find_map(|a| match a {
            Action::Resolve {
                stage, transfer, ..
            } => Some((stage.clone(), *transfer)),
            _ => None,
        })
        .expect("the target is looked up");
    assert!(stage.1, "looked up as a transfer");
    assert_eq!(
        stage.0.next,
        crate::sip::call::plan::Next::Number {
            number: "1004".into(),
            forwarder: Some("1002".into())
        }
    );
    assert!(responses(&out).is_empty(), "the REFER waits for the lookup");
    h.feed(Input::Reached(Ok(Reached::Devices {
        devices: vec![target_phone()],
        ring_for: None,
        then: Vec::new(),
    })));
    h
}

#[test]
fn a_blind_transfer_puts_the_target_in_the_referrers_place() {
    let mut h = ringing_target();
    let out = h.take();
    assert_eq!(responses(&out), [(REFER_TX, 202)]);
    let notifies = sent(&out, "NOTIFY");
    assert_eq!(notifies.len(), 1);
    assert_eq!(notifies[0].2.addr, addr(DESK));
    assert_eq!(
        sipfrag_of(&notifies[0].1),
        (
            "SIP/2.0 100 Trying".to_owned(),
            "active;expires=60".to_owned()
        )
    );
    let (index, invite) = out
        .iter()
        .find_map(|a| match a {
            Action::Invite { branch, req, peer } if peer.addr == addr(TARGET) => {
                Some((*branch, req.clone()))
            }
            _ => None,
        })
        .expect("the target's phone is rung");
    assert!(invite.body.is_empty(), "rung without an offer");
    assert!(header(&invite.headers, "From").contains("sip:1001@pbx.test"));
    assert_eq!(
        header(&invite.headers, "Referred-By"),
        "<sip:1002@pbx.test>"
    );

    // The target answers with its offer: the caller gets it in a re-INVITE, on the PBX's ports.
    let offer = sdp("198.18.0.34", 7000, "sendrecv");
    let ok = h.branch_response(index, 200, "OK", TARGET, "target-tag", &offer);
    h.feed(Input::Branch {
        index,
        event: LegEvent::Response(ok),
    });
    let out = h.take();
    let reinvites = sent(&out, "INVITE");
    assert_eq!(reinvites.len(), 1);
    let (id, reinvite, peer) = &reinvites[0];
    assert_eq!(peer.addr, addr(CALLER_ADDR));
    assert_eq!(media_port(&reinvite.body), (PBX.to_owned(), PORTS[0]));
    assert!(
        committed(&out).is_empty(),
        "nothing stored before the caller agrees"
    );

    let answer = sdp("198.18.0.21", 4000, "sendrecv");
    let caller_ok = Harness::reply_to(reinvite, 200, &answer);
    h.feed(Input::Answer {
        id: *id,
        outcome: ClientOutcome::Final(caller_ok),
    });
    let out = h.take();
    let acked: Vec<_> = acks(&out).into_iter().map(|(r, p)| (p.addr, r)).collect();
    assert_eq!(acked.len(), 2, "the caller's 200 and the target's");
    let target_ack = &acked.iter().find(|(a, _)| *a == addr(TARGET)).unwrap().1;
    assert_eq!(
        media_port(&target_ack.body),
        (PBX.to_owned(), PORTS[1]),
        "the caller's answer reaches the target in the ACK"
    );
    let (purpose, record) = committed(&out).pop().expect("the record is updated");
    assert_eq!(purpose, Purpose::Transfer);
    assert_eq!(record.callee.extension, "1004");
    assert_eq!(record.callee.peer, TARGET);
    assert!(
        sent(&out, "BYE").is_empty() && sent(&out, "NOTIFY").is_empty(),
        "the referrer hears nothing before the record is stored"
    );

    let old_call_id = h.core.retired_call_ids[0].clone();
    h.feed(Input::Committed {
        purpose: Purpose::Transfer,
        ok: true,
    });
    let out = h.take();
    let notify = sent(&out, "NOTIFY").pop().expect("the referrer is told");
    assert_eq!(
        sipfrag_of(&notify.1),
        (
            "SIP/2.0 200 OK".to_owned(),
            "terminated;reason=noresource".to_owned()
        )
    );
    assert!(
        sent(&out, "BYE").is_empty(),
        "the BYE waits for the NOTIFY's answer"
    );
    assert!(
        target_media(&out).is_none(),
        "the new party's side opens once the referrer is gone"
    );
    let ok = Harness::reply_to(&notify.1, 200, "");
    h.feed(Input::Answer {
        id: notify.0,
        outcome: ClientOutcome::Final(ok),
    });
    let out = h.take();
    let bye = sent(&out, "BYE")
        .pop()
        .expect("then the referrer is hung up");
    assert_eq!(bye.2.addr, addr(DESK));
    assert_eq!(header(&bye.1.headers, "Call-ID"), old_call_id);
    assert!(target_media(&out).is_none());
    let ok = Harness::reply_to(&bye.1, 200, "");
    h.feed(Input::Answer {
        id: bye.0,
        outcome: ClientOutcome::Final(ok),
    });
    let rtp = target_media(&h.take()).expect("the new party's media flows");
    assert_eq!(rtp, addr("198.18.0.34:7000"));

    // The caller hangs up later: the BYE goes to the new party.
    let bye = h.caller_sends("BYE", 2, "");
    h.feed(Input::Request {
        tx: tx(9),
        req: bye,
    });
    let out = h.take();
    let byes = sent(&out, "BYE");
    assert_eq!(byes.len(), 1);
    assert_eq!(byes[0].2.addr, addr(TARGET));
    assert_eq!(ended(&out).disposition, Disposition::Answered);
}

#[test]
fn a_busy_target_is_reported_and_the_referrer_keeps_the_call() {
    let mut h = ringing_target();
    let out = h.take();
    let index = out
        .iter()
        .find_map(|a| match a {
            Action::Invite { branch, .. } => Some(*branch),
            _ => None,
        })
        .unwrap();
    let busy = h.branch_response(index, 486, "Busy Here", TARGET, "t", "");
    h.feed(Input::Branch {
        index,
        event: LegEvent::Response(busy),
    });
    let out = h.take();
    let notify = &sent(&out, "NOTIFY")[0];
    assert_eq!(sipfrag_of(&notify.1).0, "SIP/2.0 486 Busy Here");
    assert!(sent(&out, "BYE").is_empty());
    assert!(!h.core.is_over());
    // Another REFER may follow.
    let again = refer(&h, "<sip:1003@pbx.test>");
    let mut again = again;
    again
        .headers
        .retain(|hd| !matches!(hd, rsip::Header::CSeq(_)));
    again.headers.push(rsip::Header::CSeq("6 REFER".into()));
    h.feed(Input::Request {
        tx: tx(8),
        req: again,
    });
    assert!(
        h.take()
            .iter()
            .any(|a| matches!(a, Action::Resolve { transfer: true, .. }))
    );
}

/// The referrer hung up after the 202, and the target never answered.
fn referrer_left_target_silent() -> Harness {
    let mut h = ringing_target();
    h.out.clear();
    let bye = h.callee_sends("BYE", 6, "");
    h.feed(Input::Request {
        tx: tx(9),
        req: bye,
    });
    let out = h.take();
    assert_eq!(responses(&out), [(9, 200)]);
    assert!(
        sent(&out, "BYE").is_empty(),
        "the caller stays for the transfer"
    );
    h.advance(Duration::from_secs(30), MediaStatus::default());
    h
}

#[test]
fn when_the_referrer_left_and_the_target_never_answers_the_referrer_is_rung_back() {
    let mut h = referrer_left_target_silent();
    let out = h.take();
    assert!(sent(&out, "NOTIFY").is_empty(), "nobody to notify");
    let stage = out
        .iter()
        .find_map(|a| match a {
            Action::Resolve { stage, .. } => Some(stage.next.clone()),
            _ => None,
        })
        .expect("the referrer is looked up");
    assert_eq!(
        stage,
        crate::sip::call::plan::Next::Number {
            number: "1002".into(),
            forwarder: Some("1002".into())
        }
    );
    h.feed(Input::Reached(Ok(Reached::Devices {
        devices: vec![binding(DESK)],
        ring_for: None,
        then: Vec::new(),
    })));
    let out = h.take();
    let (index, _) = out
        .iter()
        .find_map(|a| match a {
            Action::Invite { branch, req, peer } if peer.addr == addr(DESK) => {
                Some((*branch, req.clone()))
            }
            _ => None,
        })
        .expect("the referrer's desk phone rings again");
    let offer = sdp("198.18.0.31", 7100, "sendrecv");
    let ok = h.branch_response(index, 200, "OK", DESK, "again", &offer);
    h.feed(Input::Branch {
        index,
        event: LegEvent::Response(ok),
    });
    let out = h.take();
    let (id, reinvite, _) = sent(&out, "INVITE")
        .pop()
        .expect("the caller is re-INVITEd");
    let ok = Harness::reply_to(&reinvite, 200, &sdp("198.18.0.21", 4000, "sendrecv"));
    h.feed(Input::Answer {
        id,
        outcome: ClientOutcome::Final(ok),
    });
    let (_, record) = committed(&h.take()).pop().expect("recorded");
    assert_eq!(record.callee.extension, "1002");
    assert_eq!(record.callee.remote_tag, "again");
    h.feed(Input::Committed {
        purpose: Purpose::Transfer,
        ok: true,
    });
    let out = h.take();
    assert!(
        sent(&out, "BYE").is_empty() && !h.core.is_over(),
        "the call goes on"
    );
}

#[test]
fn when_nobody_answers_the_ring_back_either_the_other_party_is_hung_up() {
    let mut h = referrer_left_target_silent();
    h.out.clear();
    h.feed(Input::Reached(Err(Refusal::new(
        480,
        "Temporarily Unavailable",
        Some(Disposition::Unavailable),
    ))));
    let out = h.take();
    let byes = sent(&out, "BYE");
    assert_eq!(byes.len(), 1);
    assert_eq!(byes[0].2.addr, addr(CALLER_ADDR));
    assert_eq!(ended(&out).cause, "transfer-failed");
}

#[test]
fn bad_refers_get_their_rfc_answers() {
    let mut h = Harness::talking();
    let cases = [
        // A Replaces without the tags names no dialog.
        ("<sip:1004@pbx.test?Replaces=x%3Bto-tag%3Da>", 400),
        ("<sip:1001@pbx.test>", 400),
        ("<mailto:a@b>", 400),
    ];
    for (i, (to, code)) in cases.into_iter().enumerate() {
        let mut req = refer(&h, to);
        req.headers
            .retain(|hd| !matches!(hd, rsip::Header::CSeq(_)));
        req.headers
            .push(rsip::Header::CSeq(format!("{} REFER", 10 + i).into()));
        h.feed(Input::Request {
            tx: tx(20 + i as u64),
            req,
        });
        assert_eq!(responses(&h.take()), [(20 + i as u64, code)], "{to}");
    }
    // Refused outright by the lookup (an outside number the referrer may not dial).
    let req = refer(&h, "<sip:900123@pbx.test>");
    let mut req = req;
    req.headers
        .retain(|hd| !matches!(hd, rsip::Header::CSeq(_)));
    req.headers.push(rsip::Header::CSeq("30 REFER".into()));
    h.feed(Input::Request { tx: tx(30), req });
    h.out.clear();
    h.feed(Input::Reached(Err(Refusal::new(
        403,
        "Route Not Permitted",
        Some(Disposition::Denied),
    ))));
    assert_eq!(responses(&h.take()), [(30, 403)]);
    assert!(!h.core.is_over());
}
