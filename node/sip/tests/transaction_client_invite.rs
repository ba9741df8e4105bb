//! Client INVITE transactions (RFC 3261 §17.1.1, RFC 6026): Timer A/B, the ACK for non-2xx finals,
//! Accepted and Timer M, CANCEL.

mod transaction_harness;

use pbx_sip::rsip::{Method, SipMessage};
use pbx_sip::transaction::{Timer, Transport, TxError, TxEvent, TxId};
use transaction_harness::*;

const UDP: Transport = Transport::Udp;

#[test]
fn timer_a_schedule_then_timer_b_timeout() {
    let mut h = Single::new(config());
    let id = h
        .layer
        .send_request(
            h.now,
            request("INVITE", "z9hG4bKa1", "ca1", 1),
            uas_peer(UDP),
        )
        .unwrap();
    h.run_until(ms(40_000));
    // A doubles without the T2 cap: 0.5, 1, 2, 4, 8, 16 s.
    assert_eq!(
        h.sent_times(),
        [0, 500, 1_500, 3_500, 7_500, 15_500, 31_500]
    );
    assert_eq!(
        h.take_events(),
        [
            (
                ms(32_000),
                TxEvent::Timeout {
                    tx: TxId::Client(id),
                    timer: Timer::B
                }
            ),
            (
                ms(32_000),
                TxEvent::Terminated {
                    tx: TxId::Client(id)
                }
            ),
        ]
    );
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn invite_over_tcp_is_not_retransmitted() {
    let mut h = Single::new(config());
    h.layer
        .send_request(
            h.now,
            request_over(Transport::Tcp, "INVITE", "z9hG4bKa2", "ca2", 1),
            uas_peer(Transport::Tcp),
        )
        .unwrap();
    h.run_until(ms(40_000));
    assert_eq!(h.sent_times(), [0]);
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn ack_for_486_is_built_by_the_layer_with_the_right_headers() {
    let mut h = Single::new(config());
    let invite = invite_with_routes("z9hG4bKack486", "call-486@198.18.0.1");
    let id = h
        .layer
        .send_request(h.now, invite.clone(), uas_peer(UDP))
        .unwrap();
    h.run_until(ms(600));
    h.take_sent();
    h.response(response(&invite, 486, Some("busy7")), uas_peer(UDP));

    let events = h.take_events();
    assert!(
        matches!(events.as_slice(), [(_, TxEvent::Response { tx, resp })] if *tx == id && resp.status_code.code() == 486)
    );
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    let (_, to, ack) = &sent[0];
    assert_eq!(*to, uas_peer(UDP));
    let SipMessage::Request(ack_req) = ack else {
        panic!("expected the ACK, got {ack}");
    };
    assert_eq!(ack_req.method, Method::Ack);
    assert_eq!(ack_req.uri, invite.uri, "same Request-URI as the INVITE");
    assert_eq!(
        headers(ack, "Via"),
        ["SIP/2.0/UDP 198.18.0.1:5060;branch=z9hG4bKack486;rport"]
    );
    assert_eq!(
        headers(ack, "Route"),
        ["<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"]
    );
    assert_eq!(
        headers(ack, "From"),
        ["\"Alice\" <sip:alice@example.com>;tag=alice1"]
    );
    assert_eq!(
        headers(ack, "To"),
        ["\"Bob\" <sip:bob@example.com>;tag=busy7"]
    );
    assert_eq!(headers(ack, "Call-ID"), ["call-486@198.18.0.1"]);
    assert_eq!(headers(ack, "CSeq"), ["314159 ACK"]);
    assert_eq!(headers(ack, "Max-Forwards"), ["70"]);
    assert_eq!(headers(ack, "Content-Length"), ["0"]);
    assert!(headers(ack, "Contact").is_empty());
    assert!(headers(ack, "Content-Type").is_empty());

    // A retransmitted 486 is answered with the same ACK and not passed up again.
    h.run_until(ms(2_000));
    h.response(response(&invite, 486, Some("busy7")), uas_peer(UDP));
    assert!(h.take_events().is_empty());
    let again = h.take_sent();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].2.to_string(), ack.to_string());

    // No more INVITE retransmissions; Timer D = 32 s after the final.
    h.run_until(ms(32_599));
    assert!(h.take_sent().is_empty());
    assert_eq!(h.layer.len(), 1);
    h.run_until(ms(32_600));
    assert_eq!(
        h.take_events(),
        [(
            ms(32_600),
            TxEvent::Terminated {
                tx: TxId::Client(id)
            }
        )]
    );
}

#[test]
fn tcp_non_2xx_is_acked_and_ends_at_once() {
    let mut h = Single::new(config());
    let invite = request_over(Transport::Tcp, "INVITE", "z9hG4bKtd", "ctd", 5);
    let id = h
        .layer
        .send_request(h.now, invite.clone(), uas_peer(Transport::Tcp))
        .unwrap();
    h.response(response(&invite, 503, Some("x")), uas_peer(Transport::Tcp));
    let sent = h.take_sent();
    assert_eq!(method(&sent[1].2), Some(Method::Ack));
    assert_eq!(cseq(&sent[1].2), (5, "ACK".to_owned()));
    assert_eq!(h.layer.len(), 0, "Timer D is zero on TCP");
    assert!(h.take_events().iter().any(|(_, e)| *e
        == TxEvent::Terminated {
            tx: TxId::Client(id)
        }));
}

#[test]
fn every_2xx_reaches_the_tu_while_accepted_then_timer_m() {
    let mut h = Single::new(config());
    let invite = request("INVITE", "z9hG4bKm1", "cm1", 1);
    let id = h
        .layer
        .send_request(h.now, invite.clone(), uas_peer(UDP))
        .unwrap();
    h.run_until(ms(100));
    h.response(response(&invite, 180, Some("fork1")), uas_peer(UDP));
    h.run_until(ms(1_000));
    h.response(response(&invite, 200, Some("fork1")), uas_peer(UDP));
    h.run_until(ms(1_500));
    h.response(response(&invite, 200, Some("fork1")), uas_peer(UDP));
    h.response(response(&invite, 200, Some("fork2")), uas_peer(UDP));
    // Non-2xx in Accepted are ignored.
    h.response(response(&invite, 486, Some("fork3")), uas_peer(UDP));
    let codes: Vec<(u128, u16, String)> = h
        .take_events()
        .into_iter()
        .map(|(t, e)| match e {
            TxEvent::Response { tx, resp } => {
                assert_eq!(tx, id);
                let to = header(&SipMessage::Response(resp.clone()), "To").unwrap();
                (t.as_millis(), resp.status_code.code(), to)
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        codes,
        [
            (100, 180, "<sip:bob@example.com>;tag=fork1".to_owned()),
            (1_000, 200, "<sip:bob@example.com>;tag=fork1".to_owned()),
            (1_500, 200, "<sip:bob@example.com>;tag=fork1".to_owned()),
            (1_500, 200, "<sip:bob@example.com>;tag=fork2".to_owned()),
        ]
    );
    // No ACK from the layer for a 2xx, and no more retransmissions of the INVITE after the 180.
    assert_eq!(h.sent_times(), [0]);
    h.run_until(ms(33_000));
    assert_eq!(
        h.take_events(),
        [(
            ms(33_000),
            TxEvent::Terminated {
                tx: TxId::Client(id)
            }
        )],
        "Timer M = 64·T1 after the first 2xx"
    );
    // A 2xx after Timer M is stray: reported so the TU can ACK and BYE it.
    h.response(response(&invite, 200, Some("fork4")), uas_peer(UDP));
    assert!(matches!(
        h.take_events().as_slice(),
        [(_, TxEvent::StrayResponse { resp, peer })]
            if resp.status_code.code() == 200 && *peer == uas_peer(UDP)
    ));
}

#[test]
fn cancel_waits_for_a_provisional_then_runs_its_own_transaction() {
    let mut h = Single::new(config());
    let invite = invite_with_routes("z9hG4bKcan1", "call-cancel");
    let id = h
        .layer
        .send_request(h.now, invite.clone(), uas_peer(UDP))
        .unwrap();
    h.run_until(ms(100));
    // Cancelling in Calling only queues it (§9.1).
    h.layer.cancel(h.now, id).unwrap();
    h.drain();
    assert_eq!(h.sent_times(), [0]);

    h.run_until(ms(700));
    h.take_sent();
    h.response(response(&invite, 180, Some("r1")), uas_peer(UDP));
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1, "the queued CANCEL goes out with the 180");
    let (_, to, cancel) = &sent[0];
    assert_eq!(*to, uas_peer(UDP));
    let SipMessage::Request(cancel_req) = cancel else {
        panic!("expected CANCEL");
    };
    assert_eq!(cancel_req.method, Method::Cancel);
    assert_eq!(cancel_req.uri, invite.uri);
    assert_eq!(
        headers(cancel, "Via"),
        ["SIP/2.0/UDP 198.18.0.1:5060;branch=z9hG4bKcan1;rport"]
    );
    assert_eq!(
        headers(cancel, "Route"),
        ["<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"]
    );
    assert_eq!(headers(cancel, "To"), ["\"Bob\" <sip:bob@example.com>"]);
    assert_eq!(headers(cancel, "CSeq"), ["314159 CANCEL"]);
    assert_eq!(headers(cancel, "Call-ID"), ["call-cancel"]);
    // The 180 reached the TU.
    assert_eq!(h.take_events().len(), 1);

    // The CANCEL is retransmitted per Timer E until answered; its 200 is not reported.
    h.run_until(ms(1_200));
    assert_eq!(h.sent_times(), [1_200]);
    h.response(response(cancel_req, 200, Some("r1")), uas_peer(UDP));
    assert!(h.take_events().is_empty());

    // The 487 for the INVITE reaches the TU and is ACKed.
    h.response(response(&invite, 487, Some("r1")), uas_peer(UDP));
    let events = h.take_events();
    assert!(
        matches!(events.as_slice(), [(_, TxEvent::Response { tx, resp })] if *tx == id && resp.status_code.code() == 487)
    );
    let sent = h.take_sent();
    assert_eq!(method(&sent[0].2), Some(Method::Ack));
    assert_eq!(headers(&sent[0].2, "CSeq"), ["314159 ACK"]);

    // Cancelling again after the final is refused.
    assert!(matches!(
        h.layer.cancel(h.now, id),
        Err(TxError::InvalidState { .. })
    ));
    h.run_until(ms(60_000));
    assert_eq!(h.layer.len(), 0);
    assert!(h.take_sent().is_empty());
}

#[test]
fn cancel_without_a_final_answer_gives_up_after_64_t1() {
    let mut h = Single::new(config());
    let invite = request("INVITE", "z9hG4bKcan2", "cc2", 1);
    let id = h
        .layer
        .send_request(h.now, invite.clone(), uas_peer(UDP))
        .unwrap();
    h.response(response(&invite, 183, Some("e")), uas_peer(UDP));
    h.run_until(ms(10_000));
    h.layer.cancel(h.now, id).unwrap();
    h.layer.cancel(h.now, id).unwrap();
    h.drain();
    let sent = h.take_sent();
    assert_eq!(
        sent.iter()
            .filter(|(_, _, m)| method(m) == Some(Method::Cancel))
            .count(),
        1,
        "cancelling twice sends one CANCEL"
    );
    h.run_until(ms(60_000));
    let events: Vec<_> = h.take_events().into_iter().skip(1).collect();
    assert_eq!(
        events,
        [
            (
                ms(42_000),
                TxEvent::Timeout {
                    tx: TxId::Client(id),
                    timer: Timer::B
                }
            ),
            (
                ms(42_000),
                TxEvent::Terminated {
                    tx: TxId::Client(id)
                }
            ),
        ]
    );
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn timer_c_cancels_an_invite_stuck_in_proceeding() {
    let mut h = Single::new(config_with(|c| c.timers.timer_c = ms(90_000)));
    let invite = request("INVITE", "z9hG4bKcc", "ccc", 1);
    h.layer
        .send_request(h.now, invite.clone(), uas_peer(UDP))
        .unwrap();
    h.run_until(ms(1_000));
    h.response(response(&invite, 180, Some("r")), uas_peer(UDP));
    h.run_until(ms(50_000));
    h.response(response(&invite, 180, Some("r")), uas_peer(UDP));
    h.take_sent();
    h.run_until(ms(139_999));
    assert!(
        h.take_sent().is_empty(),
        "each provisional restarts Timer C"
    );
    h.run_until(ms(140_000));
    let sent = h.take_sent();
    assert_eq!(sent[0].0, ms(140_000));
    assert_eq!(method(&sent[0].2), Some(Method::Cancel));
    h.run_until(ms(300_000));
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn cancel_of_a_non_invite_or_unknown_is_refused() {
    let mut h = Single::new(config());
    let id = h
        .layer
        .send_request(
            h.now,
            request("OPTIONS", "z9hG4bKo", "co", 1),
            uas_peer(UDP),
        )
        .unwrap();
    assert_eq!(h.layer.cancel(h.now, id), Err(TxError::NotInvite));
    h.run_until(ms(40_000));
    assert_eq!(h.layer.cancel(h.now, id), Err(TxError::UnknownTransaction));
}

/// After its final response an INVITE client transaction lives on (Timer M, 32 s; Timer D) without
/// the request: there is nothing left to retransmit or cancel. A Completed one keeps its ACK only.
#[test]
fn a_finished_invite_keeps_only_its_ack() {
    let mut h = Single::new(config());
    let invite = request("INVITE", "z9hG4bKk1", "ck1", 1);
    h.layer
        .send_request(h.now, invite.clone(), uas_peer(UDP))
        .unwrap();
    let calling = h.layer.held_bytes();
    assert!(calling > invite.to_string().len(), "encoded and parsed");
    h.response(response(&invite, 200, Some("k1")), uas_peer(UDP));
    assert_eq!(h.layer.live(), 1);
    assert_eq!(h.layer.held_bytes(), 0);
    h.response(response(&invite, 200, Some("k1")), uas_peer(UDP));
    assert_eq!(h.take_events().len(), 2, "both 2xx reach the TU");

    let busy = request("INVITE", "z9hG4bKk2", "ck2", 1);
    h.layer
        .send_request(h.now, busy.clone(), uas_peer(UDP))
        .unwrap();
    h.response(response(&busy, 486, Some("k2")), uas_peer(UDP));
    let held = h.layer.held_bytes();
    assert!(
        held > 0 && held < busy.to_string().len(),
        "the ACK only: {held}"
    );
    h.take_sent();
    h.response(response(&busy, 486, Some("k2")), uas_peer(UDP));
    let again = h.take_sent();
    assert_eq!(method(&again[0].2), Some(Method::Ack));
}
