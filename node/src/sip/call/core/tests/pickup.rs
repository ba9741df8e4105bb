//! Call pickup in virtual time: 1001 calls 1002, whose desk phone rings; 1003's phone dials the
//! pickup code and its INVITE joins the call in the desk's place.

use super::*;
use crate::sip::call::core::Picker;

const PICKER: &str = "198.18.0.33:5072";
const PICKER_TX: u64 = 11;

/// 1003's INVITE (to the pickup code) with `body`.
fn picker_invite(body: &str) -> Picker {
    let invite = request(with_body(
        format!(
            "INVITE sip:*8@pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP {PICKER};branch=z9hG4bKp1\r\nMax-Forwards: 70\r\nFrom: <sip:1003@pbx.test>;tag=picker-tag\r\nTo: <sip:*8@pbx.test>\r\nCall-ID: picker-call\r\nCSeq: 1 INVITE\r\nContact: <sip:1003@{PICKER}>\r\n"
        ),
        body,
    ));
    Picker {
        tx: tx(PICKER_TX),
        invite,
        peer: udp(PICKER),
        extension: "1003".into(),
    }
}

fn picker_offer() -> String {
    // PCMA first, then PCMU, with telephone-event on the caller's number.
    "v=0\r\no=picker 7 7 IN IP4 198.18.0.33\r\ns=-\r\nc=IN IP4 198.18.0.33\r\nt=0 0\r\nm=audio 7100 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n".to_owned()
}

#[test]
fn a_picking_phone_answers_the_ringing_call_in_the_desks_place() {
    let mut h = Harness::ringing(&[DESK]);
    h.out.clear();
    h.feed(Input::PickUp(Box::new(picker_invite(&picker_offer()))));
    let out = h.take();
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::CancelBranch { branch: 0 })),
        "the desk stops ringing: {out:?}"
    );
    assert!(out.iter().any(
        |a| matches!(a, Action::Adopt { call_id, tx } if call_id == "picker-call" && tx_raw(*tx) == PICKER_TX)
    ));
    assert!(
        responses(&out).is_empty(),
        "nobody hears 200 before the record"
    );
    let (purpose, record) = committed(&out).pop().expect("the record first");
    assert_eq!(purpose, Purpose::Answer);
    assert_eq!(record.callee.extension, "1003");
    assert_eq!(record.callee.call_id, "picker-call");
    assert_eq!(record.callee.peer, PICKER);

    h.feed(Input::Committed {
        purpose: Purpose::Answer,
        ok: true,
    });
    let out = h.take();
    assert_eq!(responses(&out), [(INVITE_TX, 200), (PICKER_TX, 200)]);
    // Each hears an answer to its own offer on its own relay port, in the codecs both have.
    let to_caller = response_to(&out, INVITE_TX);
    assert_eq!(media_port(&to_caller.body), (PBX.to_owned(), PORTS[0]));
    let caller_body = String::from_utf8_lossy(&to_caller.body).into_owned();
    assert!(
        caller_body.contains("m=audio 10000 RTP/AVP 0 101"),
        "{caller_body}"
    );
    let to_picker = response_to(&out, PICKER_TX);
    assert_eq!(media_port(&to_picker.body), (PBX.to_owned(), PORTS[1]));
    let picker_body = String::from_utf8_lossy(&to_picker.body).into_owned();
    // PCMA is the picker's alone: left out.
    assert!(
        picker_body.contains("m=audio 10002 RTP/AVP 0 101"),
        "{picker_body}"
    );
    assert!(header(&to_picker.headers, "To").contains("tag="));
    assert_eq!(h.core.parties(), Some(["1001", "1003"]));

    // The picker hangs up: the caller gets BYE, and the call was answered.
    let bye = request(with_body(
        format!(
            "BYE sip:1001@198.18.0.100:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PICKER};branch=z9hG4bKp2\r\nMax-Forwards: 70\r\nFrom: <sip:1003@pbx.test>;tag=picker-tag\r\nTo: <sip:*8@pbx.test>;tag={}\r\nCall-ID: picker-call\r\nCSeq: 2 BYE\r\n",
            h.core.legs[CALLEE].local_tag
        ),
        "",
    ));
    h.feed(Input::Request {
        tx: tx(12),
        req: bye,
    });
    let out = h.take();
    assert_eq!(responses(&out), [(12, 200)]);
    let byes: Vec<_> = requests(&out)
        .into_iter()
        .filter(|(_, r, _)| r.method == rsip::Method::Bye)
        .collect();
    assert_eq!(byes.len(), 1);
    assert_eq!(byes[0].2.addr, addr(CALLER_ADDR));
    assert_eq!(ended(&out).disposition, Disposition::Answered);
}

#[test]
fn a_pickup_that_cannot_be_made_is_refused_and_the_call_rings_on() {
    let mut h = Harness::ringing(&[DESK]);
    h.out.clear();
    // Without an offer, or without a codec in common: 488, and the desk still rings.
    h.feed(Input::PickUp(Box::new(picker_invite(""))));
    let no_codec = picker_offer().replace("RTP/AVP 8 0 101", "RTP/AVP 9");
    h.feed(Input::PickUp(Box::new(picker_invite(&no_codec))));
    let out = h.take();
    assert_eq!(responses(&out), [(PICKER_TX, 488), (PICKER_TX, 488)]);
    assert!(!out.iter().any(|a| matches!(a, Action::CancelBranch { .. })));
    assert!(h.core.ringing_extensions().contains(&"1002".to_owned()));

    // An answered call is not picked up.
    let mut h = Harness::talking();
    h.feed(Input::PickUp(Box::new(picker_invite(&picker_offer()))));
    assert_eq!(responses(&h.take()), [(PICKER_TX, 480)]);

    // A record that cannot be stored refuses the picker instead of hanging it up.
    let mut h = Harness::ringing(&[DESK]);
    h.feed(Input::PickUp(Box::new(picker_invite(&picker_offer()))));
    h.out.clear();
    h.feed(Input::Committed {
        purpose: Purpose::Answer,
        ok: false,
    });
    let out = h.take();
    let codes = responses(&out);
    assert!(codes.contains(&(PICKER_TX, 503)), "{codes:?}");
    assert!(codes.contains(&(INVITE_TX, 503)), "{codes:?}");
    assert!(
        requests(&out).is_empty(),
        "no BYE to a phone never answered: {out:?}"
    );
}
