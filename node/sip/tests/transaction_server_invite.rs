//! Server INVITE transactions (RFC 3261 §17.2.1, RFC 6026): automatic 100, Timers G/H/I, Accepted and
//! Timer L, ACK for 2xx to the TU, incoming CANCEL.

mod transaction_harness;

use pbx_sip::rsip::Request;
use pbx_sip::transaction::{ServerTxId, Timer, Transport, TxEvent, TxId};
use transaction_harness::*;

const UDP: Transport = Transport::Udp;

fn invite(h: &mut Single, branch: &str) -> (Request, ServerTxId) {
    let req = request("INVITE", branch, &format!("call-{branch}"), 1);
    h.request(req.clone(), uac_peer(UDP));
    let events = h.take_events();
    let [(_, TxEvent::Request { tx, .. })] = events.as_slice() else {
        panic!("expected one request event, got {events:?}");
    };
    (req, *tx)
}

#[test]
fn trying_is_sent_after_200_ms_when_the_tu_is_silent() {
    let mut h = Single::new(config());
    let (_, _) = invite(&mut h, "z9hG4bKi1");
    h.run_until(ms(199));
    assert!(h.take_sent().is_empty());
    h.run_until(ms(1_000));
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    let (at, to, trying) = &sent[0];
    assert_eq!(
        (*at, *to, status(trying)),
        (ms(200), uac_peer(UDP), Some(100))
    );
    assert_eq!(cseq(trying), (1, "INVITE".to_owned()));
    assert_eq!(
        header(trying, "To").unwrap(),
        "<sip:bob@example.com>",
        "100 carries no tag"
    );
    assert_eq!(
        header(trying, "Via").unwrap(),
        "SIP/2.0/UDP 198.18.0.1:5060;branch=z9hG4bKi1"
    );
}

#[test]
fn no_automatic_trying_when_the_tu_answers_first_or_when_disabled() {
    let mut h = Single::new(config());
    let (req, tx) = invite(&mut h, "z9hG4bKi2");
    h.run_until(ms(100));
    h.layer
        .respond(h.now, tx, response(&req, 180, Some("b")))
        .unwrap();
    h.run_until(ms(1_000));
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(status(&sent[0].2), Some(180));

    let mut h = Single::new(config_with(|c| c.timers.trying_delay = None));
    invite(&mut h, "z9hG4bKi3");
    h.run_until(ms(5_000));
    assert!(h.take_sent().is_empty());
}

#[test]
fn retransmitted_invite_before_the_tu_answers_gets_an_immediate_trying() {
    let mut h = Single::new(config());
    let (req, _) = invite(&mut h, "z9hG4bKi4");
    h.run_until(ms(50));
    h.request(req.clone(), uac_peer(UDP));
    assert!(
        h.take_events().is_empty(),
        "a retransmission is not a new request"
    );
    h.run_until(ms(1_000));
    assert_eq!(h.sent_times(), [50], "one 100, at once, none at 200 ms");
    h.request(req, uac_peer(UDP));
    let sent = h.take_sent();
    assert_eq!(
        status(&sent[0].2),
        Some(100),
        "the last provisional is re-sent"
    );
}

#[test]
fn non_2xx_final_is_retransmitted_per_timer_g_until_the_ack_then_timer_i() {
    let mut h = Single::new(config());
    let (req, tx) = invite(&mut h, "z9hG4bKg1");
    h.layer
        .respond(h.now, tx, response(&req, 486, Some("busy")))
        .unwrap();
    h.run_until(ms(12_000));
    // G: T1 doubling, capped at T2 = 4 s.
    assert_eq!(h.sent_times(), [0, 500, 1_500, 3_500, 7_500, 11_500]);

    // A retransmitted INVITE in Completed gets the final again.
    h.request(req, uac_peer(UDP));
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(status(&sent[0].2), Some(486));

    // The ACK (same branch) is absorbed: no event, retransmissions stop.
    let ack = request("ACK", "z9hG4bKg1", "call-z9hG4bKg1", 1);
    h.request(ack.clone(), uac_peer(UDP));
    assert!(h.take_events().is_empty());
    h.request(ack, uac_peer(UDP));
    assert!(
        h.take_events().is_empty(),
        "ACK retransmissions absorbed in Confirmed"
    );
    h.run_until(ms(16_999));
    assert!(h.take_sent().is_empty());
    assert_eq!(h.layer.len(), 1);
    // Timer I = T4 = 5 s.
    h.run_until(ms(17_000));
    assert_eq!(h.layer.len(), 0);
    assert_eq!(
        h.take_events(),
        [(
            ms(17_000),
            TxEvent::Terminated {
                tx: TxId::Server(tx)
            }
        )]
    );
}

#[test]
fn timer_h_times_out_without_an_ack() {
    let mut h = Single::new(config());
    let (req, tx) = invite(&mut h, "z9hG4bKh1");
    h.layer
        .respond(h.now, tx, response(&req, 404, Some("nf")))
        .unwrap();
    h.run_until(ms(40_000));
    assert_eq!(
        h.take_events(),
        [
            (
                ms(32_000),
                TxEvent::Timeout {
                    tx: TxId::Server(tx),
                    timer: Timer::H
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
    let times = h.sent_times();
    assert_eq!(
        times,
        [
            0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn tcp_final_gets_no_retransmission_and_ack_ends_it_at_once() {
    let mut h = Single::new(config());
    let req = request_over(Transport::Tcp, "INVITE", "z9hG4bKtc", "call-tc", 1);
    h.request(req.clone(), uac_peer(Transport::Tcp));
    let events = h.take_events();
    let [(_, TxEvent::Request { tx, .. })] = events.as_slice() else {
        panic!("{events:?}");
    };
    let tx = *tx;
    h.layer
        .respond(h.now, tx, response(&req, 603, Some("d")))
        .unwrap();
    h.run_until(ms(10_000));
    assert_eq!(h.sent_times(), [0]);
    h.request(
        request_over(Transport::Tcp, "ACK", "z9hG4bKtc", "call-tc", 1),
        uac_peer(Transport::Tcp),
    );
    assert_eq!(h.layer.len(), 0);
    assert_eq!(
        h.take_events(),
        [(
            ms(10_000),
            TxEvent::Terminated {
                tx: TxId::Server(tx)
            }
        )]
    );
}

#[test]
fn accepted_2xx_ack_reaches_the_tu_and_retransmitted_invite_is_absorbed() {
    let mut h = Single::new(config());
    let (req, tx) = invite(&mut h, "z9hG4bKa1");
    let ok = response(&req, 200, Some("uas1"));
    h.layer.respond(h.now, tx, ok.clone()).unwrap();
    h.run_until(ms(2_000));
    // The optional helper re-sends the 2xx (T1 doubling) until the ACK.
    assert_eq!(h.sent_times(), [0, 500, 1_500]);

    h.request(req.clone(), uac_peer(UDP));
    assert!(
        h.take_sent().is_empty(),
        "INVITE retransmission absorbed in Accepted"
    );
    assert!(h.take_events().is_empty());

    let ack = ack_for_2xx(&req, &ok, "z9hG4bKack1");
    h.request(ack.clone(), uac_peer(UDP));
    let events = h.take_events();
    assert_eq!(
        events,
        [(
            ms(2_000),
            TxEvent::Ack {
                tx: Some(tx),
                req: ack,
                peer: uac_peer(UDP)
            }
        )]
    );
    h.run_until(ms(31_999));
    assert!(
        h.take_sent().is_empty(),
        "the ACK stopped the 2xx retransmissions"
    );
    assert_eq!(h.layer.len(), 1);
    // Timer L = 64·T1 after the 2xx; no Timeout since the ACK came.
    h.run_until(ms(32_000));
    assert_eq!(
        h.take_events(),
        [(
            ms(32_000),
            TxEvent::Terminated {
                tx: TxId::Server(tx)
            }
        )]
    );
    // An ACK after the transaction is gone still reaches the TU, without a transaction.
    h.request(ack_for_2xx(&req, &ok, "z9hG4bKack2"), uac_peer(UDP));
    assert!(matches!(
        h.take_events().as_slice(),
        [(_, TxEvent::Ack { tx: None, .. })]
    ));
}

#[test]
fn unacknowledged_2xx_times_out_with_timer_l() {
    let mut h = Single::new(config());
    let (req, tx) = invite(&mut h, "z9hG4bKa2");
    h.layer
        .respond(h.now, tx, response(&req, 200, Some("u")))
        .unwrap();
    h.run_until(ms(40_000));
    assert_eq!(
        h.sent_times(),
        [
            0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    assert_eq!(
        h.take_events(),
        [
            (
                ms(32_000),
                TxEvent::Timeout {
                    tx: TxId::Server(tx),
                    timer: Timer::L
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
}

#[test]
fn without_the_helper_the_2xx_is_sent_once_and_tu_retransmissions_pass() {
    let mut h = Single::new(config_with(|c| c.retransmit_2xx = false));
    let (req, tx) = invite(&mut h, "z9hG4bKa3");
    let ok = response(&req, 200, Some("u"));
    h.layer.respond(h.now, tx, ok.clone()).unwrap();
    h.run_until(ms(1_000));
    h.layer.respond(h.now, tx, ok).unwrap();
    h.run_until(ms(5_000));
    assert_eq!(h.sent_times(), [0, 1_000]);
    assert!(
        h.layer
            .respond(h.now, tx, response(&req, 486, Some("u")))
            .is_err(),
        "no non-2xx after a 2xx"
    );
}

#[test]
fn cancel_is_answered_200_and_the_tu_told_to_487() {
    let mut h = Single::new(config());
    let (req, tx) = invite(&mut h, "z9hG4bKc1");
    h.layer
        .respond(h.now, tx, response(&req, 180, Some("ring")))
        .unwrap();
    h.run_until(ms(3_000));
    h.take_sent();

    let cancel = request("CANCEL", "z9hG4bKc1", "call-z9hG4bKc1", 1);
    h.request(cancel.clone(), uac_peer(UDP));
    assert_eq!(h.take_events(), [(ms(3_000), TxEvent::Cancelled { tx })]);
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    let ok = &sent[0].2;
    assert_eq!(status(ok), Some(200));
    assert_eq!(cseq(ok), (1, "CANCEL".to_owned()));
    assert_eq!(
        header(ok, "To").unwrap(),
        "<sip:bob@example.com>;tag=ring",
        "same To tag as the INVITE's responses (§9.2)"
    );

    // A retransmitted CANCEL gets the 200 again but no second event.
    h.request(cancel, uac_peer(UDP));
    assert!(h.take_events().is_empty());
    assert_eq!(status(&h.take_sent()[0].2), Some(200));

    // The TU answers the INVITE 487; the ACK confirms it.
    h.layer
        .respond(h.now, tx, response(&req, 487, Some("ring")))
        .unwrap();
    h.request(
        request("ACK", "z9hG4bKc1", "call-z9hG4bKc1", 1),
        uac_peer(UDP),
    );
    h.drain();
    assert_eq!(status(&h.take_sent()[0].2), Some(487));
    h.run_until(ms(60_000));
    assert_eq!(
        h.layer.len(),
        0,
        "INVITE and CANCEL transactions both ended"
    );
    assert_eq!(
        h.take_events(),
        [(
            ms(8_000),
            TxEvent::Terminated {
                tx: TxId::Server(tx)
            }
        )],
        "the CANCEL transaction is the layer's own and reports nothing"
    );
}

#[test]
fn cancel_for_an_unknown_invite_gets_481() {
    let mut h = Single::new(config());
    h.request(request("CANCEL", "z9hG4bKnone", "c", 1), uac_peer(UDP));
    assert!(h.take_events().is_empty());
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(status(&sent[0].2), Some(481));
    assert!(header(&sent[0].2, "To").unwrap().contains(";tag="));

    // A CANCEL after the final response: 200, but nothing for the TU.
    let (req, tx) = invite(&mut h, "z9hG4bKc2");
    h.layer
        .respond(h.now, tx, response(&req, 200, Some("x")))
        .unwrap();
    h.take_sent();
    h.request(
        request("CANCEL", "z9hG4bKc2", "call-z9hG4bKc2", 1),
        uac_peer(UDP),
    );
    assert!(h.take_events().is_empty());
    assert_eq!(status(&h.take_sent()[0].2), Some(200));
}

#[test]
fn silent_tu_gets_408_from_timer_c() {
    let mut h = Single::new(config_with(|c| c.timers.timer_c = ms(60_000)));
    let (_, tx) = invite(&mut h, "z9hG4bKtc1");
    h.run_until(ms(60_000));
    let sent = h.take_sent();
    assert_eq!(status(&sent.last().unwrap().2), Some(408));
    assert_eq!(
        h.take_events(),
        [(
            ms(60_000),
            TxEvent::Timeout {
                tx: TxId::Server(tx),
                timer: Timer::C
            }
        )]
    );
    h.request(
        request("ACK", "z9hG4bKtc1", "call-z9hG4bKtc1", 1),
        uac_peer(UDP),
    );
    h.run_until(ms(70_000));
    assert_eq!(h.layer.len(), 0);
    assert_eq!(status(&sent[0].2), Some(100));
    assert!(
        header(&sent.last().unwrap().2, "To")
            .unwrap()
            .contains(";tag=")
    );
}

/// An INVITE transaction lives 32 s after its 2xx (Timer L), and a busy PBX holds tens of thousands
/// of them: once nothing can ask for its response again, it keeps neither that response nor the
/// request's headers, and it still behaves the same.
#[test]
fn a_finished_invite_keeps_only_what_it_may_still_send() {
    let mut h = Single::new(config());
    let (req, tx) = invite(&mut h, "z9hG4bKh1");
    let proceeding = h.layer.held_bytes();
    assert!(proceeding > 0, "the headers for its own 100 and 408");
    let ok = response(&req, 200, Some("h1"));
    h.layer.respond(h.now, tx, ok.clone()).unwrap();
    let accepted = h.layer.held_bytes();
    assert!(accepted > 0, "the 2xx, re-sent until the ACK");
    h.run_until(ms(600));
    assert_eq!(h.sent_times(), [0, 500]);
    h.request(ack_for_2xx(&req, &ok, "z9hG4bKhack"), uac_peer(UDP));
    assert_eq!(h.layer.live(), 1, "still absorbing retransmitted INVITEs");
    assert_eq!(h.layer.held_bytes(), 0);
    h.request(req, uac_peer(UDP));
    assert!(h.take_sent().is_empty());
    // A TU that re-sends its 2xx after the ACK still gets it out.
    h.layer.respond(h.now, tx, ok).unwrap();
    h.run_until(ms(700));
    assert_eq!(h.take_sent().len(), 1);
    assert_eq!(h.layer.held_bytes(), 0);
    h.take_events();

    let (req, tx) = invite(&mut h, "z9hG4bKh2");
    h.layer
        .respond(h.now, tx, response(&req, 486, Some("h2")))
        .unwrap();
    assert!(h.layer.held_bytes() > 0, "the 486, re-sent until the ACK");
    h.request(
        request("ACK", "z9hG4bKh2", "call-z9hG4bKh2", 1),
        uac_peer(UDP),
    );
    assert_eq!(h.layer.live(), 2, "Confirmed absorbs ACKs for Timer I");
    assert_eq!(h.layer.held_bytes(), 0);
}
