//! Unit tests of the message builders; the state machines are tested through the public API in
//! `node/sip/tests/transaction_*.rs`.

use rsip::Request;

use super::key::{cseq, top_via};
use super::message::{build_ack, build_cancel, build_response, response_skeleton};

fn invite() -> Request {
    Request::try_from(
        "INVITE sip:bob@198.18.0.2 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.18.0.1:5060;branch=z9hG4bKabc;rport\r\n\
         Via: SIP/2.0/UDP 198.18.0.9:5060;branch=z9hG4bKold\r\n\
         Max-Forwards: 69\r\n\
         Route: <sip:p1.example.com;lr>\r\n\
         Route: <sip:p2.example.com;lr>\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: c1@198.18.0.1\r\n\
         CSeq: 7 INVITE\r\n\
         Timestamp: 54\r\n\
         Content-Length: 0\r\n\r\n",
    )
    .unwrap()
}

#[test]
fn ack_and_cancel_copy_the_right_headers() {
    let invite = invite();
    let via = top_via(&invite.headers).unwrap();
    let busy = build_response(
        &response_skeleton(&invite.headers),
        486,
        "Busy Here",
        Some("b9"),
    );
    let ack = build_ack(&invite, &via.raw, 7, &busy).to_string();
    assert_eq!(
        ack,
        "ACK sip:bob@198.18.0.2 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.18.0.1:5060;branch=z9hG4bKabc;rport\r\n\
         Max-Forwards: 70\r\n\
         Route: <sip:p1.example.com;lr>\r\n\
         Route: <sip:p2.example.com;lr>\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>;tag=b9\r\n\
         Call-ID: c1@198.18.0.1\r\n\
         CSeq: 7 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let cancel = build_cancel(&invite, &via.raw, 7);
    assert_eq!(cseq(&cancel.headers), Some((7, rsip::Method::Cancel)));
    assert!(
        cancel
            .to_string()
            .contains("\r\nTo: <sip:bob@example.com>\r\n")
    );
}

#[test]
fn responses_copy_vias_and_tag_the_to() {
    let invite = invite();
    let skeleton = response_skeleton(&invite.headers);
    let trying = build_response(&skeleton, 100, "Trying", None).to_string();
    assert!(trying.starts_with("SIP/2.0 100 Trying\r\nVia: SIP/2.0/UDP 198.18.0.1:5060;"));
    assert!(trying.contains("Via: SIP/2.0/UDP 198.18.0.9:5060;branch=z9hG4bKold\r\n"));
    assert!(trying.contains("To: <sip:bob@example.com>\r\n"));
    assert!(trying.contains("Timestamp: 54\r\n"));
    let ok = build_response(&skeleton, 200, "OK", Some("t1")).to_string();
    assert!(ok.contains("To: <sip:bob@example.com>;tag=t1\r\n"));
    assert!(!ok.contains("Timestamp"));
    assert!(ok.ends_with("Content-Length: 0\r\n\r\n"));
}
