//! An admin hangs up a call in progress: BYE to both phones, a CDR naming the PBX, and nothing before
//! the answer.

use super::*;

fn hang_up() -> Input {
    Input::HangUp { by: "admin".into() }
}

/// The BYEs sent, as `(request id, Call-ID, CSeq, phone)`.
fn byes(out: &[Action]) -> Vec<(u64, String, String, SocketAddr)> {
    requests(out)
        .into_iter()
        .filter(|(_, req, _)| req.method == rsip::Method::Bye)
        .map(|(id, req, peer)| {
            let call_id = header(&req.headers, "Call-ID").to_owned();
            (id, call_id, cseq(&req), peer.addr)
        })
        .collect()
}

#[test]
fn an_admin_hang_up_byes_both_phones_and_ends_the_call_as_the_pbx() {
    let mut h = Harness::talking();
    let callee_call_id = h.core.legs[CALLEE].call_id.clone();
    h.now.wall += 42_000;
    h.feed(hang_up());
    let out = h.take();
    assert!(
        responses(&out).is_empty(),
        "the caller's INVITE was answered"
    );
    let sent = byes(&out);
    let sent: Vec<_> = sent
        .iter()
        .map(|(_, c, s, a)| (c.as_str(), s.as_str(), *a))
        .collect();
    assert_eq!(
        sent,
        vec![
            ("caller-call", "1 BYE", addr(CALLER_ADDR)),
            (callee_call_id.as_str(), "2 BYE", addr(DESK)),
        ]
    );
    let cdr = ended(&out);
    assert_eq!(
        (
            cdr.disposition,
            cdr.hangup_side,
            cdr.cause.as_str(),
            cdr.sip_status
        ),
        (
            Disposition::Answered,
            HangupSide::Pbx,
            "hung-up-by-admin",
            200
        )
    );
    assert_eq!((cdr.caller.as_str(), cdr.callee.as_str()), ("1001", "1002"));
    assert_eq!(cdr.duration_secs, 42);
    assert!(h.core.is_over());
    assert_eq!(h.core.poll_timeout(), None);
}

#[test]
fn byes_that_get_no_answer_do_not_keep_the_call_up() {
    let mut h = Harness::talking();
    h.feed(hang_up());
    let sent = byes(&h.take());
    assert_eq!(sent.len(), 2);
    // The call ended with the BYEs sent, not with their answers: a phone that never answers, or
    // answers late, changes nothing, and neither does a second request.
    assert!(h.core.is_over());
    for (id, ..) in &sent {
        h.feed(Input::Answer {
            id: *id,
            outcome: ClientOutcome::Timeout,
        });
    }
    h.feed(hang_up());
    let bye = h.caller_sends("BYE", 2, "");
    h.feed(Input::Request {
        tx: tx(20),
        req: bye,
    });
    assert!(h.take().is_empty());
    assert_eq!(h.core.poll_timeout(), None);
}

#[test]
fn an_admin_hang_up_before_the_answer_is_ignored() {
    let mut h = Harness::ringing(&[DESK]);
    h.out.clear();
    h.feed(hang_up());
    assert!(h.take().is_empty());
    assert!(!h.core.is_over());
    // Answered, the record not stored yet: still nothing (a request needs the record).
    let ok = h.answer_from(0, DESK, "desk-tag");
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(ok),
    });
    h.out.clear();
    h.feed(hang_up());
    assert!(h.take().is_empty());
    h.feed(Input::Committed {
        purpose: Purpose::Answer,
        ok: true,
    });
    assert_eq!(responses(&h.take()), vec![(INVITE_TX, 200)]);
    // Established: now it ends.
    h.feed(hang_up());
    assert_eq!(ended(&h.take()).cause, "hung-up-by-admin");
}

#[test]
fn a_carried_on_call_is_hung_up_in_its_recorded_dialogs() {
    let mut h = Harness::ringing(&[DESK]);
    let rec = record_of(&mut h);
    let core = CallCore::adopt(env(), h.now, rec.clone()).unwrap();
    let mut h = Harness {
        core,
        now: h.now,
        out: Vec::new(),
    };
    h.drain();
    h.out.clear();
    h.feed(hang_up());
    let out = h.take();
    let sent: Vec<_> = byes(&out)
        .into_iter()
        .map(|(_, c, s, a)| (c, s, a))
        .collect();
    assert_eq!(
        sent,
        vec![
            (
                rec.caller.call_id.clone(),
                format!("{} BYE", 1 + CSEQ_HEADROOM),
                addr(CALLER_ADDR)
            ),
            (
                rec.callee.call_id.clone(),
                format!("{} BYE", 2 + CSEQ_HEADROOM),
                addr(DESK)
            ),
        ]
    );
    let cdr = ended(&out);
    assert_eq!(
        (cdr.hangup_side, cdr.answered_at),
        (HangupSide::Pbx, Some(rec.answered_at))
    );
}
