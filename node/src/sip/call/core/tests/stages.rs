//! Stages of an unanswered call in virtual time: a forward on no answer after its own ring time, a
//! forward on busy, a stage that cannot ring, and an answer from the forward target.

use super::*;
use crate::sip::call::plan::{After, Next, Stage};

const COLLEAGUE: &str = "198.18.0.33:5068";

fn forward_to(number: &str, after: After) -> Stage {
    Stage {
        next: Next::Number {
            number: number.into(),
            forwarder: Some("1002".into()),
        },
        after,
        hops: 1,
    }
}

fn colleague() -> Binding {
    let mut b = binding(COLLEAGUE);
    b.aor = "1003".into();
    b.contact = format!("sip:1003@{COLLEAGUE}");
    b
}

/// The stage the call asked the driver to resolve, if it did.
fn resolve_asked(out: &[Action]) -> Option<Stage> {
    out.iter().find_map(|a| match a {
        Action::Resolve { stage, .. } => Some(stage.clone()),
        _ => None,
    })
}

fn cancelled(out: &[Action]) -> Vec<usize> {
    out.iter()
        .filter_map(|a| match a {
            Action::CancelBranch { branch } => Some(*branch),
            _ => None,
        })
        .collect()
}

fn no_answer_forward() -> Harness {
    Harness::ringing_plan(
        &[DESK],
        Some(sdp("198.18.0.21", 4000, "sendrecv")),
        Some(Duration::from_secs(10)),
        vec![
            forward_to("1003", After::NoAnswer),
            forward_to("1004", After::Busy),
        ],
    )
}

#[test]
fn no_answer_in_its_ring_time_rings_the_forward_target_and_it_answers() {
    let mut h = no_answer_forward();
    h.out.clear();
    // Before the extension's 10 s, nothing moves.
    h.advance(Duration::from_secs(9), MediaStatus::default());
    assert!(h.take().is_empty());
    h.advance(Duration::from_secs(1), MediaStatus::default());
    let out = h.take();
    assert_eq!(cancelled(&out), [0], "the desk phone stops ringing");
    assert!(responses(&out).is_empty(), "the caller keeps ringing");
    let stage = resolve_asked(&out).expect("the forward on no answer is resolved");
    assert_eq!(stage, forward_to("1003", After::NoAnswer));
    // The desk phone's 487 after the CANCEL ends nothing.
    let r = h.branch_response(0, 487, "Request Terminated", DESK, "d", "");
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(r),
    });
    assert!(h.take().is_empty());
    h.feed(Input::Reached(Ok(Reached::Devices {
        devices: vec![colleague()],
        ring_for: None,
        then: Vec::new(),
    })));
    let invite = h.branch_invite(1);
    assert_eq!(invite.uri.to_string(), format!("sip:1003@{COLLEAGUE}"));
    assert!(header(&invite.headers, "From").starts_with("\"Reception\" <sip:1001@pbx.test>"));
    assert_eq!(media_port(&invite.body), (PBX.to_owned(), PORTS[1]));
    h.out.clear();
    let ok = h.answer_from(1, COLLEAGUE, "colleague");
    h.feed(Input::Branch {
        index: 1,
        event: LegEvent::Response(ok),
    });
    let out = h.take();
    let (purpose, record) = committed(&out).pop().expect("the record is committed");
    assert_eq!(purpose, Purpose::Answer);
    assert_eq!(
        record.callee.extension, "1003",
        "the record names who answered"
    );
    assert_eq!(record.callee.peer, COLLEAGUE);
    h.feed(Input::Committed {
        purpose: Purpose::Answer,
        ok: true,
    });
    assert_eq!(responses(&h.take()), [(INVITE_TX, 200)]);
}

#[test]
fn a_busy_phone_goes_to_the_busy_forward_not_the_no_answer_one() {
    let mut h = no_answer_forward();
    h.out.clear();
    let busy = h.branch_response(0, 486, "Busy Here", DESK, "d", "");
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(busy),
    });
    let out = h.take();
    assert_eq!(resolve_asked(&out), Some(forward_to("1004", After::Busy)));
    assert!(responses(&out).is_empty());
}

#[test]
fn a_stage_that_cannot_ring_tells_the_caller_why_when_nothing_follows() {
    let mut h = no_answer_forward();
    h.advance(Duration::from_secs(10), MediaStatus::default());
    h.out.clear();
    // The forward target is an outside number its forwarder may not call.
    let denied = Refusal::new(403, "Route Not Permitted", Some(Disposition::Denied));
    h.feed(Input::Reached(Err(denied)));
    let out = h.take();
    assert_eq!(responses(&out), [(INVITE_TX, 403)]);
    assert_eq!(ended(&out).disposition, Disposition::Denied);
}

#[test]
fn without_a_following_stage_the_call_ring_timeout_still_applies() {
    // No forward on no answer: the stage rings for the call's ring timeout (30 s here).
    let mut h = Harness::ringing_plan(
        &[DESK],
        Some(sdp("198.18.0.21", 4000, "sendrecv")),
        None,
        vec![forward_to("1004", After::Busy)],
    );
    h.out.clear();
    h.advance(Duration::from_secs(30), MediaStatus::default());
    let out = h.take();
    assert!(
        resolve_asked(&out).is_none(),
        "busy forwards do not follow silence"
    );
    assert_eq!(responses(&out), [(INVITE_TX, 480)]);
    assert_eq!(ended(&out).disposition, Disposition::NoAnswer);
}

#[test]
fn a_caller_hanging_up_while_the_next_stage_is_resolved_ends_the_call_once() {
    let mut h = no_answer_forward();
    h.advance(Duration::from_secs(10), MediaStatus::default());
    h.out.clear();
    h.feed(Input::Cancelled);
    let out = h.take();
    assert_eq!(ended(&out).disposition, Disposition::Cancelled);
    h.feed(Input::Reached(Ok(Reached::Devices {
        devices: vec![colleague()],
        ring_for: None,
        then: Vec::new(),
    })));
    assert!(h.take().is_empty(), "nothing rings after the caller left");
}
