//! Bounded state: beyond `max_transactions` new requests are refused without state, and once the
//! timers have run every transaction is gone (no leak).

mod transaction_harness;

use pbx_sip::transaction::{OverloadAction, Transport, TxError, TxEvent};
use transaction_harness::*;

const UDP: Transport = Transport::Udp;

fn small() -> pbx_sip::transaction::TransactionConfig {
    config_with(|c| c.max_transactions = 100)
}

fn requests_seen(h: &mut Single) -> usize {
    h.take_events()
        .iter()
        .filter(|(_, e)| matches!(e, TxEvent::Request { .. }))
        .count()
}

#[test]
fn a_flood_beyond_the_bound_gets_503_and_drains_to_zero() {
    let mut h = Single::new(small());
    for i in 0..250 {
        let method = if i % 2 == 0 { "REGISTER" } else { "INVITE" };
        h.request(
            request(method, &format!("z9hG4bKf{i}"), &format!("flood{i}"), 1),
            uac_peer(UDP),
        );
        assert!(h.layer.len() <= 100);
    }
    assert_eq!(h.layer.len(), 100);
    assert_eq!(requests_seen(&mut h), 100);
    let sent = h.take_sent();
    let refused: Vec<_> = sent
        .iter()
        .filter(|(_, _, m)| status(m) == Some(503))
        .collect();
    assert_eq!(refused.len(), 150);
    assert!(header(&refused[0].2, "To").unwrap().contains(";tag="));
    assert_eq!(cseq(&refused[0].2).0, 1);

    // A retransmission of an admitted request is still absorbed, not refused.
    h.request(request("REGISTER", "z9hG4bKf0", "flood0", 1), uac_peer(UDP));
    assert!(h.take_sent().is_empty());
    // The TU cannot start client transactions either.
    assert_eq!(
        h.layer
            .send_request(
                h.now,
                request("OPTIONS", "z9hG4bKout", "o", 1),
                uas_peer(UDP)
            )
            .unwrap_err(),
        TxError::Overloaded
    );

    // The TU never answers: the non-INVITEs time out (64·T1), the INVITEs are answered 408 by Timer C
    // and end by Timer H. Nothing is left, and no timer either.
    h.run_to_idle();
    assert_eq!(h.layer.len(), 0);
    assert!(h.layer.is_empty());
    assert_eq!(h.layer.poll_timeout(), None);
    let terminated = h
        .take_events()
        .iter()
        .filter(|(_, e)| matches!(e, TxEvent::Terminated { .. }))
        .count();
    assert_eq!(terminated, 100);

    // Room again.
    h.request(
        request("REGISTER", "z9hG4bKafter", "after", 1),
        uac_peer(UDP),
    );
    assert_eq!(requests_seen(&mut h), 1);
}

#[test]
fn answered_non_invites_leave_the_bound_and_the_oldest_finished_are_forgotten_first() {
    let mut h = Single::new(config_with(|c| {
        c.max_transactions = 100;
        c.max_finished = 500;
    }));
    let mut admitted = 0;
    // 20 requests per virtual second for 100 s, each answered at once. Timer J would keep each one
    // 32 s (640 at this rate): they no longer hold the in-progress bound, and the finished table
    // keeps the newest 500.
    for i in 0..2_000_u64 {
        h.run_until(ms(i * 50));
        let req = request("OPTIONS", &format!("z9hG4bKq{i}"), &format!("q{i}"), 1);
        h.request(req.clone(), uac_peer(UDP));
        for (_, e) in h.take_events() {
            if let TxEvent::Request { tx, .. } = e {
                admitted += 1;
                h.layer
                    .respond(h.now, tx, response(&req, 200, Some(&format!("t{i}"))))
                    .unwrap();
            }
        }
        assert_eq!(h.layer.live(), 0);
        assert!(h.layer.finished() <= 500, "{} at {i}", h.layer.finished());
    }
    assert_eq!(admitted, 2_000);
    assert_eq!(h.layer.finished(), 500);
    assert_eq!(h.layer.finished_forgotten_early(), 1_500);
    h.drain();
    h.take_sent();

    // The newest ones still answer a retransmission with their own response, not as a new request.
    let newest = request("OPTIONS", "z9hG4bKq1999", "q1999", 1);
    h.request(newest, uac_peer(UDP));
    assert_eq!(requests_seen(&mut h), 0);
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    assert!(header(&sent[0].2, "To").unwrap().ends_with(";tag=t1999"));
    // A forgotten one is a new request again (the TU answers it again).
    h.request(request("OPTIONS", "z9hG4bKq0", "q0", 1), uac_peer(UDP));
    assert_eq!(requests_seen(&mut h), 1);

    h.run_to_idle();
    assert_eq!(h.layer.len(), 0);
}

#[test]
fn drop_policy_sends_nothing() {
    let mut h = Single::new(config_with(|c| {
        c.max_transactions = 3;
        c.overload = OverloadAction::Drop;
        c.timers.trying_delay = None;
    }));
    for i in 0..10 {
        h.request(
            request("INVITE", &format!("z9hG4bKd{i}"), "d", 1),
            uac_peer(UDP),
        );
    }
    assert_eq!(h.layer.len(), 3);
    assert!(h.take_sent().is_empty());
}

#[test]
fn acks_cancels_and_stray_responses_create_no_state() {
    let mut h = Single::new(small());
    for i in 0..500 {
        h.request(
            request("ACK", &format!("z9hG4bKack{i}"), "a", 1),
            uac_peer(UDP),
        );
        h.request(
            request("CANCEL", &format!("z9hG4bKcan{i}"), "c", 1),
            uac_peer(UDP),
        );
        let invite = request("INVITE", &format!("z9hG4bKresp{i}"), "r", 1);
        h.response(response(&invite, 486, Some("x")), uas_peer(UDP));
    }
    assert_eq!(h.layer.len(), 0);
    assert_eq!(h.layer.poll_timeout(), None);
    let sent = h.take_sent();
    assert_eq!(sent.len(), 500);
    assert!(sent.iter().all(|(_, _, m)| status(m) == Some(481)));
    // ACKs without a transaction go to the TU (the dialog layer decides); nothing else does.
    let events = h.take_events();
    assert_eq!(events.len(), 500);
    assert!(
        events
            .iter()
            .all(|(_, e)| matches!(e, TxEvent::Ack { tx: None, .. }))
    );
}
