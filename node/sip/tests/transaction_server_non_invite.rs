//! Server non-INVITE transactions (RFC 3261 §17.2.2): retransmission absorption, Timer J.

mod transaction_harness;

use pbx_sip::rsip::Method;
use pbx_sip::transaction::{ServerTxId, Timer, Transport, TxError, TxEvent, TxId};
use transaction_harness::*;

fn new_request(h: &mut Single, transport: Transport, branch: &str) -> ServerTxId {
    let req = request_over(transport, "REGISTER", branch, "reg-call", 1);
    h.request(req, uac_peer(transport));
    let events = h.take_events();
    match events.as_slice() {
        [(_, TxEvent::Request { tx, req, peer })] => {
            assert_eq!(req.method, Method::Register);
            assert_eq!(*peer, uac_peer(transport));
            *tx
        }
        other => panic!("expected one request event, got {other:?}"),
    }
}

#[test]
fn retransmitted_request_is_absorbed_and_responses_retransmitted() {
    let mut h = Single::new(config());
    let req = request("REGISTER", "z9hG4bKr1", "reg-call", 1);
    let tx = new_request(&mut h, Transport::Udp, "z9hG4bKr1");

    // Trying: a retransmission is absorbed silently.
    h.request(req.clone(), uac_peer(Transport::Udp));
    assert!(h.take_events().is_empty());
    assert!(h.take_sent().is_empty());

    // Proceeding: the last provisional is re-sent.
    h.layer
        .respond(h.now, tx, response(&req, 100, None))
        .unwrap();
    h.drain();
    h.request(req.clone(), uac_peer(Transport::Udp));
    let sent = h.take_sent();
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter()
            .all(|(_, p, m)| status(m) == Some(100) && *p == uac_peer(Transport::Udp))
    );

    // Completed: the final response is re-sent for every retransmission, the TU sees nothing.
    h.layer
        .respond(h.now, tx, response(&req, 200, Some("t1")))
        .unwrap();
    h.drain();
    h.request(req.clone(), uac_peer(Transport::Udp));
    h.request(req, uac_peer(Transport::Udp));
    let sent = h.take_sent();
    assert_eq!(sent.len(), 3);
    assert!(
        sent.iter().all(
            |(_, _, m)| status(m) == Some(200) && header(m, "To").unwrap().ends_with(";tag=t1")
        )
    );
    assert!(h.take_events().is_empty());
    assert_eq!(h.layer.len(), 1);
}

#[test]
fn timer_j_removes_the_transaction_after_64_t1_on_udp() {
    let mut h = Single::new(config());
    let req = request("REGISTER", "z9hG4bKj1", "reg-call", 1);
    let tx = new_request(&mut h, Transport::Udp, "z9hG4bKj1");
    h.run_until(ms(1_000));
    h.layer
        .respond(h.now, tx, response(&req, 200, Some("t")))
        .unwrap();
    h.run_until(ms(32_999));
    assert_eq!(h.layer.len(), 1);
    h.run_until(ms(33_000));
    assert_eq!(h.layer.len(), 0);
    assert_eq!(
        h.take_events(),
        [(
            ms(33_000),
            TxEvent::Terminated {
                tx: TxId::Server(tx)
            }
        )]
    );
    assert_eq!(h.layer.poll_timeout(), None);
    // After Timer J a copy of the request is a new request.
    h.request(req, uac_peer(Transport::Udp));
    assert!(matches!(
        h.take_events().as_slice(),
        [(_, TxEvent::Request { tx: new, .. })] if *new != tx
    ));
}

#[test]
fn timer_j_is_zero_on_tcp() {
    let mut h = Single::new(config());
    let req = request_over(Transport::Tcp, "REGISTER", "z9hG4bKj2", "reg-call", 1);
    let tx = new_request(&mut h, Transport::Tcp, "z9hG4bKj2");
    h.layer
        .respond(h.now, tx, response(&req, 200, Some("t")))
        .unwrap();
    h.drain();
    assert_eq!(h.layer.len(), 0);
    assert_eq!(
        h.take_events(),
        [(
            ms(0),
            TxEvent::Terminated {
                tx: TxId::Server(tx)
            }
        )]
    );
    assert_eq!(h.take_sent().len(), 1);
    assert_eq!(h.layer.poll_timeout(), None);
    assert_eq!(
        h.layer.respond(h.now, tx, response(&req, 200, Some("t"))),
        Err(TxError::UnknownTransaction)
    );
}

#[test]
fn silent_tu_is_timed_out_so_nothing_leaks() {
    let mut h = Single::new(config());
    let tx = new_request(&mut h, Transport::Udp, "z9hG4bKs1");
    h.run_until(ms(40_000));
    assert_eq!(
        h.take_events(),
        [
            (
                ms(32_000),
                TxEvent::Timeout {
                    tx: TxId::Server(tx),
                    timer: Timer::F
                }
            ),
            (
                ms(32_000),
                TxEvent::Terminated {
                    tx: TxId::Server(tx)
                }
            ),
        ]
    );
    assert!(
        h.take_sent().is_empty(),
        "a non-INVITE gets no automatic 100"
    );
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn responding_twice_with_a_final_is_refused() {
    let mut h = Single::new(config());
    let req = request("OPTIONS", "z9hG4bKd1", "c", 1);
    h.request(req.clone(), uac_peer(Transport::Udp));
    let events = h.take_events();
    let [(_, TxEvent::Request { tx, .. })] = events.as_slice() else {
        panic!("expected a request, got {events:?}");
    };
    let tx = *tx;
    assert_eq!(
        h.layer.respond(h.now, tx, response(&req, 99, None)),
        Err(TxError::InvalidStatus(99))
    );
    h.layer
        .respond(h.now, tx, response(&req, 200, Some("a")))
        .unwrap();
    // Finished: only the retransmission memory is left, the TU cannot answer again.
    assert_eq!(
        h.layer.respond(h.now, tx, response(&req, 500, Some("a"))),
        Err(TxError::UnknownTransaction)
    );
    h.drain();
    assert_eq!(h.take_sent().len(), 1);
}

#[test]
fn a_challenge_is_not_kept_so_a_retransmission_is_challenged_again() {
    let mut h = Single::new(config());
    let req = request("REGISTER", "z9hG4bKc1", "reg-call", 1);
    let tx = new_request(&mut h, Transport::Udp, "z9hG4bKc1");
    h.layer
        .respond(h.now, tx, response(&req, 401, Some("c1")))
        .unwrap();
    h.drain();
    assert_eq!(h.layer.len(), 0);
    assert_eq!(
        h.take_events(),
        [(
            ms(0),
            TxEvent::Terminated {
                tx: TxId::Server(tx)
            }
        )]
    );
    assert_eq!(h.take_sent().len(), 1);
    // The phone did not get the 401 and retransmits: the TU sees it as a new request and answers
    // it (a fresh challenge), where a kept transaction would have re-sent the old one.
    h.request(req, uac_peer(Transport::Udp));
    assert!(matches!(
        h.take_events().as_slice(),
        [(_, TxEvent::Request { tx: again, .. })] if *again != tx
    ));
}

#[test]
fn a_final_response_goes_out_as_the_codec_writes_it() {
    let mut h = Single::new(config());
    let req = request("REGISTER", "z9hG4bKw1", "reg-call", 1);
    let tx = new_request(&mut h, Transport::Udp, "z9hG4bKw1");
    let mut busy = response(&req, 486, Some("t1"));
    // Two stale lengths, and a value that tries to smuggle in a header line of its own.
    busy.headers.push(rsip::Header::ContentLength(
        rsip::headers::ContentLength::from(99),
    ));
    busy.headers.push(rsip::Header::Other(
        "X-Note".into(),
        "a\r\nContact: <sip:evil@198.18.0.66>".into(),
    ));
    busy.body = b"v=0\r\n".to_vec();
    h.layer.respond(h.now, tx, busy).unwrap();
    let sent = h.layer.poll_transmit().expect("the 486 was sent");
    let text = String::from_utf8(sent.bytes).unwrap();
    // rsip's Display would write `486 BusyHere`, both lengths, and the injected line.
    assert!(text.starts_with("SIP/2.0 486 Busy Here\r\n"), "{text}");
    assert_eq!(text.matches("Content-Length:").count(), 1, "{text}");
    assert!(text.contains("Content-Length: 5\r\n"), "{text}");
    assert!(!text.contains("\r\nContact:"), "{text}");
    assert!(text.ends_with("\r\n\r\nv=0\r\n"), "{text}");
}
