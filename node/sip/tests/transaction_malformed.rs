//! Bad input is normal input: malformed requests and responses never panic and never create
//! unbounded state; what can be answered gets a `400`, the rest is dropped.

mod transaction_harness;

use pbx_sip::rsip::headers::{CSeq, CallId, Via};
use pbx_sip::rsip::prelude::UntypedHeader;
use pbx_sip::rsip::{Header, Method, Request, Response, SipMessage};
use pbx_sip::transaction::{Transport, TxError, TxEvent};
use transaction_harness::*;

const UDP: Transport = Transport::Udp;

fn with_header(mut req: Request, keep: impl Fn(&Header) -> bool, add: Option<Header>) -> Request {
    req.headers.retain(|h| keep(h));
    if let Some(h) = add {
        req.headers.push(h);
    }
    req
}

fn without_via(req: Request) -> Request {
    with_header(req, |h| !matches!(h, Header::Via(_)), None)
}

fn with_via(req: Request, via: &str) -> Request {
    with_header(
        req,
        |h| !matches!(h, Header::Via(_)),
        Some(Header::Via(Via::new(via))),
    )
}

fn with_cseq(req: Request, cseq: &str) -> Request {
    with_header(
        req,
        |h| !matches!(h, Header::CSeq(_)),
        Some(Header::CSeq(CSeq::new(cseq))),
    )
}

fn resp_with_via(resp: Response, via: Option<&str>) -> Response {
    let mut resp = resp;
    resp.headers.retain(|h| !matches!(h, Header::Via(_)));
    if let Some(via) = via {
        resp.headers.push(Header::Via(Via::new(via)));
    }
    resp
}

#[test]
fn request_without_a_usable_via_is_dropped() {
    let mut h = Single::new(config());
    h.request(without_via(request("INVITE", "x", "c", 1)), uac_peer(UDP));
    h.request(
        with_via(request("INVITE", "x", "c", 1), "garbage"),
        uac_peer(UDP),
    );
    h.request(with_via(request("OPTIONS", "x", "c", 1), ""), uac_peer(UDP));
    assert!(h.take_sent().is_empty(), "nowhere to send a response");
    assert!(h.take_events().is_empty());
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn request_without_a_cookie_branch_is_a_new_transaction_each_time() {
    let mut h = Single::new(config());
    let old_style = with_via(
        request("OPTIONS", "", "c2543", 1),
        "SIP/2.0/UDP 198.18.0.1:5060",
    );
    let odd_branch = request("OPTIONS", "1234", "c2543b", 1);
    for req in [
        old_style.clone(),
        old_style.clone(),
        odd_branch.clone(),
        odd_branch,
    ] {
        h.request(req, uac_peer(UDP));
    }
    let ids: Vec<_> = h
        .take_events()
        .into_iter()
        .map(|(_, e)| match e {
            TxEvent::Request { tx, .. } => tx,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 4);
    assert!(ids.windows(2).all(|w| w[0] != w[1]));
    // They are still normal transactions for the TU.
    h.layer
        .respond(h.now, ids[0], response(&old_style, 200, Some("a")))
        .unwrap();
    h.drain();
    assert_eq!(status(&h.take_sent()[0].2), Some(200));
    h.run_to_idle();
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn cseq_method_mismatch_gets_400() {
    let mut h = Single::new(config());
    let req = with_cseq(request("INVITE", "z9hG4bKm", "c", 1), "1 BYE");
    h.layer.handle_request(h.now, req, uac_peer(UDP));
    // Read the raw bytes: rsip's parser would replace the reason phrase of a known status.
    let transmit = h.layer.poll_transmit().unwrap();
    assert_eq!(h.layer.poll_transmit(), None);
    assert_eq!(h.layer.poll_event(), None);
    assert_eq!(transmit.peer, uac_peer(UDP));
    let text = String::from_utf8(transmit.bytes).unwrap();
    assert!(
        text.starts_with("SIP/2.0 400 CSeq Method Mismatch\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nCSeq: 1 BYE\r\n"), "{text}");
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn missing_or_broken_mandatory_headers_get_400() {
    let mut h = Single::new(config());
    let cases = [
        with_header(
            request("INVITE", "z9hG4bK1", "c", 1),
            |h| !matches!(h, Header::CSeq(_)),
            None,
        ),
        with_cseq(request("INVITE", "z9hG4bK2", "c", 1), "one INVITE"),
        with_cseq(request("INVITE", "z9hG4bK3", "c", 1), "99999999999 INVITE"),
        with_cseq(request("INVITE", "z9hG4bK4", "c", 1), "1 INVITE extra"),
        with_cseq(request("INVITE", "z9hG4bK5", "c", 1), ""),
        with_header(
            request("INVITE", "z9hG4bK6", "c", 1),
            |h| !matches!(h, Header::CallId(_)),
            None,
        ),
        with_header(
            request("INVITE", "z9hG4bK7", "c", 1),
            |h| !matches!(h, Header::CallId(_)),
            Some(Header::CallId(CallId::new("  "))),
        ),
        with_header(
            request("OPTIONS", "z9hG4bK8", "c", 1),
            |h| !matches!(h, Header::From(_)),
            None,
        ),
        with_header(
            request("OPTIONS", "z9hG4bK9", "c", 1),
            |h| !matches!(h, Header::To(_)),
            None,
        ),
    ];
    let n = cases.len();
    for req in cases {
        h.request(req, uac_peer(UDP));
    }
    let sent = h.take_sent();
    assert_eq!(sent.len(), n);
    assert!(sent.iter().all(|(_, _, m)| status(m) == Some(400)));
    assert!(h.take_events().is_empty());
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn malformed_ack_is_dropped_silently() {
    let mut h = Single::new(config());
    h.request(
        with_cseq(request("ACK", "z9hG4bKa", "c", 1), "1 INVITE"),
        uac_peer(UDP),
    );
    h.request(
        without_via(request("ACK", "z9hG4bKa", "c", 1)),
        uac_peer(UDP),
    );
    assert!(h.take_sent().is_empty());
    assert!(h.take_events().is_empty());
}

#[test]
fn responses_that_match_nothing_are_dropped() {
    let mut h = Single::new(config());
    let invite = request("INVITE", "z9hG4bKr", "c", 1);
    let id = h
        .layer
        .send_request(h.now, invite.clone(), uas_peer(UDP))
        .unwrap();
    h.drain();
    h.take_sent();

    // For nothing at all.
    let other = request("OPTIONS", "z9hG4bKnothing", "c", 1);
    h.response(response(&other, 200, Some("x")), uas_peer(UDP));
    h.response(response(&other, 486, Some("x")), uas_peer(UDP));
    // Right branch, wrong CSeq method: not this transaction (§17.1.3).
    let mut mismatched = response(&invite, 486, Some("x"));
    mismatched.headers.retain(|h| !matches!(h, Header::CSeq(_)));
    mismatched.headers.push(Header::CSeq(CSeq::new("1 BYE")));
    h.response(mismatched, uas_peer(UDP));
    // No Via, two Vias, no branch, no CSeq.
    h.response(
        resp_with_via(response(&invite, 486, Some("x")), None),
        uas_peer(UDP),
    );
    h.response(
        resp_with_via(
            response(&invite, 486, Some("x")),
            Some("SIP/2.0/UDP 198.18.0.1:5060;branch=z9hG4bKr, SIP/2.0/UDP 198.18.0.7;branch=z9hG4bKz"),
        ),
        uas_peer(UDP),
    );
    h.response(
        resp_with_via(
            response(&invite, 486, Some("x")),
            Some("SIP/2.0/UDP 198.18.0.1:5060"),
        ),
        uas_peer(UDP),
    );
    let mut no_cseq = response(&invite, 486, Some("x"));
    no_cseq.headers.retain(|h| !matches!(h, Header::CSeq(_)));
    h.response(no_cseq, uas_peer(UDP));

    assert!(h.take_events().is_empty(), "nothing reached the TU");
    assert!(h.take_sent().is_empty(), "and nothing was ACKed");
    // The INVITE is unaffected: it is still retransmitting, and a proper answer still matches.
    h.run_until(ms(600));
    assert_eq!(h.sent_times(), [500]);
    h.response(response(&invite, 486, Some("x")), uas_peer(UDP));
    assert!(matches!(
        h.take_events().as_slice(),
        [(_, TxEvent::Response { tx, .. })] if *tx == id
    ));
}

#[test]
fn send_request_refuses_what_cannot_be_a_transaction() {
    let mut h = Single::new(config());
    let to = uas_peer(UDP);
    let now = h.now;
    let layer = &mut h.layer;
    assert_eq!(
        layer.send_request(now, request("ACK", "z9hG4bKs1", "c", 1), to),
        Err(TxError::AckIsNotATransaction)
    );
    assert_eq!(
        layer.send_request(
            now,
            without_via(request("OPTIONS", "z9hG4bKs2", "c", 1)),
            to
        ),
        Err(TxError::MissingVia)
    );
    assert_eq!(
        layer.send_request(now, request("OPTIONS", "nocookie", "c", 1), to),
        Err(TxError::MissingBranch)
    );
    assert_eq!(
        layer.send_request(
            now,
            with_cseq(request("OPTIONS", "z9hG4bKs3", "c", 1), "1 BYE"),
            to
        ),
        Err(TxError::CSeqMismatch)
    );
    layer
        .send_request(now, request("OPTIONS", "z9hG4bKs4", "c", 1), to)
        .unwrap();
    assert_eq!(
        layer.send_request(now, request("OPTIONS", "z9hG4bKs4", "c", 1), to),
        Err(TxError::DuplicateTransaction)
    );
    assert_eq!(layer.len(), 1);
    assert_eq!(TxError::Overloaded.sip_status(), 503);
}

#[test]
fn odd_header_values_never_panic() {
    let vias = [
        "SIP/2.0/UDP",
        "SIP/2.0/UDP ;branch=z9hG4bKa",
        ";;;,,,",
        ",",
        "SIP/2.0/UDP [::1",
        "SIP/2.0/UDP [::1]:99999999;branch=z9hG4bKb",
        "SIP/2.0/UDP host;branch=",
        "SIP/2.0/UDP host;branch=z9hG4bK",
        "SIP/2.0/UDP host;branch=z9hG4bKé",
        "SIP/2.0/UDP host;=;branch;branch==;branch=z9hG4bKc",
        "/ host",
        "SIP/2.0/UDP h\u{0}st;branch=z9hG4bKd",
    ];
    let cseqs = [
        "",
        "1",
        "1 INVITE",
        "-1 INVITE",
        "4294967296 INVITE",
        "1  INVITE",
        "1 invite",
        "x y z",
    ];
    let mut h = Single::new(config_with(|c| c.max_transactions = 50));
    for (i, via) in vias.iter().enumerate() {
        for (j, cseq) in cseqs.iter().enumerate() {
            for method in ["INVITE", "ACK", "CANCEL", "OPTIONS"] {
                let req = with_cseq(
                    with_via(request(method, "z9hG4bKq", &format!("c{i}-{j}"), 1), via),
                    cseq,
                );
                h.request(req.clone(), uac_peer(UDP));
                h.request(req.clone(), uac_peer(UDP));
                let resp = resp_with_via(response(&req, 200, Some("t")), Some(via));
                h.response(resp, uas_peer(UDP));
            }
        }
    }
    assert!(h.layer.len() <= 50);
    // Answer whatever reached the TU, with both sane and absurd responses.
    for (_, event) in h.take_events() {
        if let TxEvent::Request { tx, req, .. } = event {
            let _ = h.layer.respond(h.now, tx, response(&req, 700, None));
            let _ = h.layer.respond(h.now, tx, response(&req, 183, Some("p")));
            let _ = h.layer.respond(h.now, tx, response(&req, 200, Some("p")));
        }
    }
    h.run_to_idle();
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn compact_header_forms_still_match_and_answer() {
    let mut h = Single::new(config());
    let text = "INVITE sip:bob@198.18.0.2 SIP/2.0\r\n\
                v: SIP/2.0/UDP 198.18.0.1:5060;branch=z9hG4bKcompact\r\n\
                f: <sip:alice@example.com>;tag=a\r\n\
                t: <sip:bob@example.com>\r\n\
                i: compact-call\r\n\
                CSeq: 3 INVITE\r\n\
                Content-Length: 0\r\n\r\n";
    let req = Request::try_from(text).unwrap();
    h.request(req.clone(), uac_peer(UDP));
    h.request(req, uac_peer(UDP));
    assert_eq!(
        h.take_events().len(),
        1,
        "the retransmission matched the transaction"
    );
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1, "immediate 100 for the retransmission");
    let trying = &sent[0].2;
    assert!(matches!(trying, SipMessage::Response(_)));
    assert_eq!(
        header(trying, "Via").unwrap(),
        "SIP/2.0/UDP 198.18.0.1:5060;branch=z9hG4bKcompact"
    );
    assert_eq!(header(trying, "Call-ID").unwrap(), "compact-call");
    assert_eq!(
        header(trying, "From").unwrap(),
        "<sip:alice@example.com>;tag=a"
    );
    assert_eq!(method(trying), None::<Method>);
}
