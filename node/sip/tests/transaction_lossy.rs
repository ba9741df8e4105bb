//! Two layers back to back over a lossy, reordering virtual network: the retransmission machinery
//! must still complete every exchange, and both layers must end empty.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap is a failed test"
)]

mod transaction_harness;

use std::collections::HashMap;
use std::time::Instant;

use pbx_sip::rsip::Method;
use pbx_sip::transaction::{Timer, TransactionLayer, Transport, TxEvent, TxId};
use transaction_harness::*;

/// A UAS that answers every new request at once with `code` (INVITE) or 200 (anything else).
fn answering_uas(code: u16) -> impl FnMut(Side, Instant, &mut TransactionLayer, &TxEvent) {
    move |side, now, layer, event| {
        if let (Side::Uas, TxEvent::Request { tx, req, .. }) = (side, event) {
            let code = if req.method == Method::Invite {
                code
            } else {
                200
            };
            layer
                .respond(now, *tx, response(req, code, Some("uas")))
                .unwrap();
        }
    }
}

fn finals(events: &[(std::time::Duration, TxEvent)]) -> Vec<u16> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            TxEvent::Response { resp, .. } if resp.status_code.code() >= 200 => {
                Some(resp.status_code.code())
            }
            _ => None,
        })
        .collect()
}

fn timeouts(events: &[(std::time::Duration, TxEvent)]) -> Vec<Timer> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            TxEvent::Timeout { timer, .. } => Some(*timer),
            _ => None,
        })
        .collect()
}

#[test]
fn non_invite_exchange_completes_with_30_percent_loss() {
    let mut lost = 0;
    for seed in 1..=25 {
        let mut h = Pair::new(Transport::Udp, config(), config()).lossy(30, seed);
        let mut tu = answering_uas(200);
        let id = h.uac_send(
            request("OPTIONS", &format!("z9hG4bKl{seed}"), "lossy", 1),
            &mut tu,
        );
        h.run_until(ms(80_000), &mut tu);
        assert_eq!(
            finals(&h.uac_events),
            [200],
            "seed {seed}: {:?}",
            h.uac_events
        );
        assert!(timeouts(&h.uac_events).is_empty(), "seed {seed}");
        assert!(h.uac_events.iter().any(|(_, e)| *e
            == TxEvent::Terminated {
                tx: TxId::Client(id)
            }));
        assert_eq!((h.uac.len(), h.uas.len()), (0, 0), "seed {seed}");
        lost += h.wire.iter().filter(|w| w.lost).count();
    }
    assert!(lost > 20, "the network did lose messages ({lost})");
}

#[test]
fn invite_with_non_2xx_ends_with_the_ack_absorbed_despite_loss() {
    for seed in 1..=25 {
        let mut h = Pair::new(Transport::Udp, config(), config()).lossy(30, seed);
        let mut tu = answering_uas(486);
        h.uac_send(
            request("INVITE", &format!("z9hG4bKi{seed}"), "lossy-inv", 1),
            &mut tu,
        );
        h.run_until(ms(120_000), &mut tu);
        assert_eq!(finals(&h.uac_events), [486], "seed {seed}");
        // The UAS saw one request, then its transaction ended through Confirmed (the ACK came,
        // was absorbed) rather than by Timer H.
        let uas: Vec<&TxEvent> = h.uas_events.iter().map(|(_, e)| e).collect();
        assert!(
            matches!(
                uas.as_slice(),
                [TxEvent::Request { .. }, TxEvent::Terminated { .. }]
            ),
            "seed {seed}: {uas:?}"
        );
        assert!(
            h.sent_by(Side::Uac)
                .iter()
                .any(|w| !w.lost && method(&w.msg) == Some(Method::Ack)),
            "seed {seed}"
        );
        assert_eq!((h.uac.len(), h.uas.len()), (0, 0), "seed {seed}");
    }
}

#[test]
fn invite_with_2xx_is_acknowledged_through_the_retransmission_helper_despite_loss() {
    for seed in 1..=25 {
        let mut h = Pair::new(Transport::Udp, config(), config()).lossy(30, seed);
        let invite = request("INVITE", &format!("z9hG4bKo{seed}"), "lossy-ok", 1);
        let ack_branch = format!("z9hG4bKack{seed}");
        let sent_invite = invite.clone();
        let mut answer = answering_uas(200);
        // The UAC's dialog layer ACKs every 2xx statelessly, the UAS answers 200.
        let mut tu = move |side: Side, now: Instant, layer: &mut TransactionLayer, e: &TxEvent| {
            if let (Side::Uac, TxEvent::Response { resp, .. }) = (side, e)
                && resp.status_code.code() == 200
            {
                let ack = ack_for_2xx(&sent_invite, resp, &ack_branch);
                layer.send_stateless(uas_peer(Transport::Udp), ack.into());
            }
            answer(side, now, layer, e);
        };
        h.uac_send(invite, &mut tu);
        h.run_until(ms(120_000), &mut tu);
        assert!(!finals(&h.uac_events).is_empty(), "seed {seed}");
        assert!(finals(&h.uac_events).iter().all(|c| *c == 200));
        assert!(
            h.uas_events
                .iter()
                .any(|(_, e)| matches!(e, TxEvent::Ack { tx: Some(_), .. })),
            "seed {seed}: the ACK reached the UAS TU with its transaction"
        );
        assert!(timeouts(&h.uas_events).is_empty(), "seed {seed}");
        assert_eq!((h.uac.len(), h.uas.len()), (0, 0), "seed {seed}");
    }
}

#[test]
fn reordered_provisional_and_final_still_complete() {
    for seed in 1..=25 {
        let mut h = Pair::new(Transport::Udp, config(), config()).lossy(20, seed);
        h.jitter = ms(900);
        // The UAS answers 100 and 200 together; with jitter the 200 often overtakes the 100.
        let mut tu = |side: Side, now: Instant, layer: &mut TransactionLayer, e: &TxEvent| {
            if let (Side::Uas, TxEvent::Request { tx, req, .. }) = (side, e) {
                layer.respond(now, *tx, response(req, 100, None)).unwrap();
                layer
                    .respond(now, *tx, response(req, 200, Some("u")))
                    .unwrap();
            }
        };
        h.uac_send(
            request("MESSAGE", &format!("z9hG4bKr{seed}"), "reorder", 1),
            &mut tu,
        );
        h.run_until(ms(80_000), &mut tu);
        assert_eq!(finals(&h.uac_events), [200], "seed {seed}");
        assert_eq!((h.uac.len(), h.uas.len()), (0, 0), "seed {seed}");
    }
}

#[test]
fn invite_cancelled_end_to_end_despite_loss() {
    for seed in 1..=25 {
        let mut h = Pair::new(Transport::Udp, config(), config()).lossy(30, seed);
        let mut invites = HashMap::new();
        // UAS: rings, and answers 487 when told of the CANCEL. UAC: cancels on the first 180.
        let mut tu =
            |side: Side, now: Instant, layer: &mut TransactionLayer, e: &TxEvent| match (side, e) {
                (Side::Uas, TxEvent::Request { tx, req, .. }) => {
                    layer
                        .respond(now, *tx, response(req, 180, Some("ring")))
                        .unwrap();
                    invites.insert(*tx, req.clone());
                }
                (Side::Uas, TxEvent::Cancelled { tx }) => {
                    layer
                        .respond(now, *tx, response(&invites[tx], 487, Some("ring")))
                        .unwrap();
                }
                (Side::Uac, TxEvent::Response { tx, resp }) if resp.status_code.code() == 180 => {
                    layer.cancel(now, *tx).unwrap();
                }
                _ => {}
            };
        h.uac_send(
            request("INVITE", &format!("z9hG4bKx{seed}"), "cancel", 1),
            &mut tu,
        );
        h.run_until(ms(120_000), &mut tu);
        assert_eq!(finals(&h.uac_events), [487], "seed {seed}");
        assert_eq!(
            h.uas_events
                .iter()
                .filter(|(_, e)| matches!(e, TxEvent::Cancelled { .. }))
                .count(),
            1,
            "seed {seed}"
        );
        assert!(timeouts(&h.uac_events).is_empty(), "seed {seed}");
        assert!(timeouts(&h.uas_events).is_empty(), "seed {seed}");
        assert_eq!((h.uac.len(), h.uas.len()), (0, 0), "seed {seed}");
    }
}
