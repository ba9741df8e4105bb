//! Client non-INVITE transactions (RFC 3261 §17.1.2): Timer E schedule, Timer F, Timer K, TCP.

mod transaction_harness;

use pbx_sip::rsip::Method;
use pbx_sip::transaction::{Timer, Transport, TxEvent, TxId};
use transaction_harness::*;

#[test]
fn timer_e_schedule_over_udp_then_timer_f_timeout() {
    let mut h = Single::new(config());
    let id = h
        .layer
        .send_request(
            h.now,
            request("OPTIONS", "z9hG4bKe1", "ce1", 1),
            uas_peer(Transport::Udp),
        )
        .unwrap();
    h.run_until(ms(40_000));
    // 500 ms, 1 s, 2 s, 4 s, then 4 s (T2) until Timer F at 64·T1 = 32 s.
    let sent = h.take_sent();
    let times: Vec<u128> = sent.iter().map(|(t, _, _)| t.as_millis()).collect();
    assert_eq!(
        times,
        [
            0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    assert!(
        sent.iter()
            .all(|(_, p, m)| *p == uas_peer(Transport::Udp) && method(m) == Some(Method::Options))
    );
    let events = h.take_events();
    assert_eq!(
        events,
        [
            (
                ms(32_000),
                TxEvent::Timeout {
                    tx: TxId::Client(id),
                    timer: Timer::F
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
    assert_eq!(h.layer.poll_timeout(), None);
}

#[test]
fn no_retransmissions_over_tcp() {
    let mut h = Single::new(config());
    let id = h
        .layer
        .send_request(
            h.now,
            request_over(Transport::Tcp, "OPTIONS", "z9hG4bKt1", "ct1", 1),
            uas_peer(Transport::Tcp),
        )
        .unwrap();
    h.run_until(ms(40_000));
    assert_eq!(h.sent_times(), [0]);
    assert_eq!(
        h.take_events()[0],
        (
            ms(32_000),
            TxEvent::Timeout {
                tx: TxId::Client(id),
                timer: Timer::F
            }
        )
    );
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn final_response_stops_retransmissions_then_timer_k() {
    let mut h = Single::new(config());
    let req = request("REGISTER", "z9hG4bKk1", "ck1", 7);
    let id = h
        .layer
        .send_request(h.now, req.clone(), uas_peer(Transport::Udp))
        .unwrap();
    h.run_until(ms(1_000));
    assert_eq!(h.sent_times(), [0, 500]);

    h.response(response(&req, 200, Some("reg")), uas_peer(Transport::Udp));
    let events = h.take_events();
    assert_eq!(events.len(), 1);
    let (at, TxEvent::Response { tx, resp }) = &events[0] else {
        panic!("expected a response event, got {events:?}");
    };
    assert_eq!((*at, *tx, resp.status_code.code()), (ms(1_000), id, 200));

    // A retransmitted final in Completed is absorbed.
    h.run_until(ms(3_000));
    h.response(response(&req, 200, Some("reg")), uas_peer(Transport::Udp));
    assert!(h.take_events().is_empty());
    assert_eq!(h.layer.len(), 1);

    // Timer K = T4 = 5 s after the final response; nothing retransmitted meanwhile.
    h.run_until(ms(5_999));
    assert_eq!(h.layer.len(), 1);
    h.run_until(ms(6_000));
    assert_eq!(h.layer.len(), 0);
    assert_eq!(h.sent_times(), Vec::<u128>::new());
    assert_eq!(
        h.take_events(),
        [(
            ms(6_000),
            TxEvent::Terminated {
                tx: TxId::Client(id)
            }
        )]
    );
}

#[test]
fn provisional_response_switches_timer_e_to_t2() {
    let mut h = Single::new(config());
    let req = request("OPTIONS", "z9hG4bKp1", "cp1", 1);
    h.layer
        .send_request(h.now, req.clone(), uas_peer(Transport::Udp))
        .unwrap();
    h.run_until(ms(700));
    h.response(response(&req, 100, None), uas_peer(Transport::Udp));
    assert_eq!(h.take_events().len(), 1, "the provisional reaches the TU");
    h.run_until(ms(14_000));
    // E was armed for 1.5 s before the 100; from then on in Proceeding it is always T2 = 4 s.
    assert_eq!(h.sent_times(), [0, 500, 1_500, 5_500, 9_500, 13_500]);
    h.response(response(&req, 100, None), uas_peer(Transport::Udp));
    assert_eq!(
        h.take_events().len(),
        1,
        "further provisionals reach the TU too"
    );
}

#[test]
fn tcp_final_response_ends_the_transaction_at_once() {
    let mut h = Single::new(config());
    let req = request_over(Transport::Tcp, "MESSAGE", "z9hG4bKtk", "ctk", 2);
    let id = h
        .layer
        .send_request(h.now, req.clone(), uas_peer(Transport::Tcp))
        .unwrap();
    h.run_until(ms(100));
    h.response(response(&req, 202, Some("m")), uas_peer(Transport::Tcp));
    let events: Vec<TxEvent> = h.take_events().into_iter().map(|(_, e)| e).collect();
    assert!(matches!(&events[0], TxEvent::Response { tx, .. } if *tx == id));
    assert_eq!(
        events[1],
        TxEvent::Terminated {
            tx: TxId::Client(id)
        }
    );
    assert_eq!(h.layer.len(), 0);
    assert_eq!(h.layer.poll_timeout(), None);
}

#[test]
fn transport_error_fails_the_transactions_of_that_peer() {
    let mut h = Single::new(config());
    let tcp = uas_peer(Transport::Tcp);
    let a = h
        .layer
        .send_request(
            h.now,
            request_over(Transport::Tcp, "OPTIONS", "z9hG4bKx1", "x1", 1),
            tcp,
        )
        .unwrap();
    let b = h
        .layer
        .send_request(
            h.now,
            request_over(Transport::Tcp, "INVITE", "z9hG4bKx2", "x2", 1),
            tcp,
        )
        .unwrap();
    let other = h
        .layer
        .send_request(
            h.now,
            request("OPTIONS", "z9hG4bKx3", "x3", 1),
            peer(Transport::Udp, "198.18.0.3:5060"),
        )
        .unwrap();
    h.drain();
    h.take_events();
    h.layer.handle_transport_error(h.now, tcp);
    h.drain();
    let events: Vec<TxEvent> = h.take_events().into_iter().map(|(_, e)| e).collect();
    assert_eq!(
        events,
        [
            TxEvent::TransportError {
                tx: TxId::Client(a)
            },
            TxEvent::Terminated {
                tx: TxId::Client(a)
            },
            TxEvent::TransportError {
                tx: TxId::Client(b)
            },
            TxEvent::Terminated {
                tx: TxId::Client(b)
            },
        ]
    );
    assert_eq!(h.layer.len(), 1);
    h.run_until(ms(40_000));
    assert!(h.take_events().iter().any(|(_, e)| *e
        == TxEvent::Terminated {
            tx: TxId::Client(other)
        }));
    assert_eq!(h.layer.len(), 0);
}
