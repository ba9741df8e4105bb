//! Outbound calls through trunks in virtual time: one server at a time, the next on silence or
//! `503`, a challenge answered once, and the provider's refusal passed on.

use super::*;
use crate::sip::call::admission::{OutboundTrunk, TrunkCredentials, TrunkTarget};

const CARRIER_A: &str = "198.18.0.51:5060";
const CARRIER_B: &str = "198.18.0.52:5060";

fn target(server: &str, credentials: bool) -> TrunkTarget {
    TrunkTarget {
        trunk: "carrier".into(),
        peer: udp(server),
        request_uri: "sip:5550100@carrier.test".into(),
        from: "\"Reception\" <sip:15550199@carrier.test>".into(),
        to: "<sip:5550100@carrier.test>".into(),
        contact_user: "pbxuser".into(),
        headers: vec![(
            "P-Asserted-Identity".into(),
            "<sip:15550199@carrier.test>".into(),
        )],
        credentials: credentials.then(|| TrunkCredentials {
            username: "pbxuser".into(),
            password: "S3cret-pass".into(),
            realm: String::new(),
        }),
    }
}

/// 1001 dials 95550100, routed to the carrier's `servers` in order.
fn outbound(servers: &[&str], credentials: bool) -> Harness {
    let now = Now {
        at: Instant::now(),
        wall: 1_700_000_000_000,
    };
    let body = sdp("198.18.0.21", 4000, "sendrecv");
    let call = NewCall {
        id: "call-1".into(),
        tx: tx(INVITE_TX),
        invite: caller_invite(&body),
        peer: udp(CALLER_ADDR),
        caller: "1001".into(),
        caller_name: "Reception".into(),
        callee: "95550100".into(),
        admitted: Admitted {
            offer: Some(body_sdp(body.as_bytes())),
            bindings: Vec::new(),
            max_forwards: 69,
            anonymous: false,
            trunk: Some(OutboundTrunk {
                targets: servers.iter().map(|s| target(s, credentials)).collect(),
                silence: Duration::from_secs(4),
            }),
            ring_for: None,
            then: Vec::new(),
        },
        ports: vec![PORTS],
    };
    let core = CallCore::start(env(), now, call).unwrap();
    let mut h = Harness {
        core,
        now,
        out: Vec::new(),
    };
    h.drain();
    h
}

fn invites(out: &[Action]) -> Vec<(usize, rsip::Request, Peer)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Invite { branch, req, peer } => Some((*branch, req.clone(), *peer)),
            _ => None,
        })
        .collect()
}

/// A final response from the server of branch `i`, with extra header lines.
fn final_from(h: &Harness, i: usize, code: u16, extra: &str) -> rsip::Response {
    let leg = &h.core.branches[i].leg;
    response(with_body(
        format!(
            "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP 198.18.0.100:5060;branch=z9hG4bKx\r\nFrom: {};tag={}\r\nTo: {};tag=prov\r\nCall-ID: {}\r\nCSeq: {} INVITE\r\n{extra}",
            leg.local_uri, leg.local_tag, leg.remote_uri, leg.call_id, leg.local_cseq
        ),
        "",
    ))
}

#[test]
fn the_invite_goes_to_the_first_server_with_the_trunks_addressing() {
    let h = outbound(&[CARRIER_A, CARRIER_B], false);
    let sent = invites(&h.out);
    assert_eq!(sent.len(), 1, "one server at a time");
    let (branch, req, peer) = &sent[0];
    assert_eq!(*branch, 0);
    assert_eq!(peer.addr, addr(CARRIER_A));
    assert_eq!(req.uri.to_string(), "sip:5550100@carrier.test");
    assert!(header(&req.headers, "From").starts_with("\"Reception\" <sip:15550199@carrier.test>"));
    assert_eq!(
        header(&req.headers, "P-Asserted-Identity"),
        "<sip:15550199@carrier.test>"
    );
    assert!(header(&req.headers, "Contact").contains("sip:pbxuser@198.18.0.100:5060"));
    assert_eq!(cseq(req), "1 INVITE");
}

#[test]
fn a_silent_server_is_given_up_and_the_next_gets_the_same_dialog() {
    let mut h = outbound(&[CARRIER_A, CARRIER_B], false);
    let first = invites(&h.take())[0].1.clone();
    // Nothing yet at 3 s; at 4 s the first server is given up on.
    h.advance(Duration::from_secs(3), MediaStatus::default());
    assert!(invites(&h.out).is_empty());
    h.advance(Duration::from_secs(1), MediaStatus::default());
    let out = h.take();
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::CancelBranch { branch: 0 }))
    );
    let sent = invites(&out);
    assert_eq!(sent.len(), 1);
    let (branch, req, peer) = &sent[0];
    assert_eq!((*branch, peer.addr), (1, addr(CARRIER_B)));
    assert_eq!(
        header(&req.headers, "Call-ID"),
        header(&first.headers, "Call-ID")
    );
    assert_eq!(
        dialog::tag_of(&req.headers, "From"),
        dialog::tag_of(&first.headers, "From")
    );
    assert_eq!(cseq(req), "2 INVITE");
    // A provisional answer from the second server: it may ring as long as the call may.
    let ringing = final_from(&h, 1, 180, "");
    h.feed(Input::Branch {
        index: 1,
        event: LegEvent::Response(ringing),
    });
    h.advance(Duration::from_secs(10), MediaStatus::default());
    assert!(invites(&h.out).is_empty());
    assert!(!h.core.is_over());
}

#[test]
fn a_503_moves_on_and_when_every_server_failed_the_caller_hears_503() {
    let mut h = outbound(&[CARRIER_A, CARRIER_B], false);
    h.take();
    let busy = final_from(&h, 0, 503, "");
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(busy),
    });
    assert_eq!(invites(&h.take()).len(), 1);
    h.feed(Input::Branch {
        index: 1,
        event: LegEvent::Timeout,
    });
    let out = h.take();
    assert_eq!(responses(&out), [(INVITE_TX, 503)]);
    let cdr = ended(&out);
    assert_eq!(cdr.disposition, Disposition::Failed);
    assert_eq!(cdr.cause, "trunk-408");
}

#[test]
fn a_challenge_is_answered_once_with_the_trunks_credentials() {
    let mut h = outbound(&[CARRIER_A], true);
    h.take();
    let challenge = final_from(
        &h,
        0,
        407,
        "Proxy-Authenticate: Digest realm=\"carrier.test\", nonce=\"abc123\", qop=\"auth\", algorithm=MD5\r\n",
    );
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(challenge),
    });
    let sent = invites(&h.take());
    assert_eq!(sent.len(), 1);
    let (branch, req, peer) = &sent[0];
    assert_eq!((*branch, peer.addr), (1, addr(CARRIER_A)));
    assert_eq!(cseq(req), "2 INVITE");
    let auth = header(&req.headers, "Proxy-Authorization");
    let creds = pbx_sip::digest::Credentials::parse(auth).unwrap();
    assert_eq!(creds.username, "pbxuser");
    assert_eq!(creds.realm, "carrier.test");
    assert_eq!(creds.uri, "sip:5550100@carrier.test");
    let ha1 = pbx_sip::digest::ha1(creds.algorithm, "pbxuser", "carrier.test", "S3cret-pass");
    let expected = pbx_sip::digest::Credentials::answer(
        &pbx_sip::digest::DigestChallenge::parse(
            "Digest realm=\"carrier.test\", nonce=\"abc123\", qop=\"auth\", algorithm=MD5",
        )
        .unwrap(),
        "pbxuser",
        &ha1,
        "INVITE",
        "sip:5550100@carrier.test",
        creds.cnonce.as_deref().unwrap(),
        1,
    );
    assert_eq!(creds.response, expected.response);
    // Challenged again: the credentials are wrong; no third INVITE, the caller hears 503.
    let again = final_from(
        &h,
        1,
        407,
        "Proxy-Authenticate: Digest realm=\"carrier.test\", nonce=\"def456\", qop=\"auth\"\r\n",
    );
    h.feed(Input::Branch {
        index: 1,
        event: LegEvent::Response(again),
    });
    let out = h.take();
    assert!(invites(&out).is_empty());
    assert_eq!(responses(&out), [(INVITE_TX, 503)]);
    assert_eq!(ended(&out).cause, "trunk-407");
}

#[test]
fn the_providers_refusal_reaches_the_caller() {
    let mut h = outbound(&[CARRIER_A, CARRIER_B], false);
    h.take();
    let busy = final_from(&h, 0, 486, "");
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(busy),
    });
    let out = h.take();
    assert!(
        invites(&out).is_empty(),
        "busy is the callee's answer, not the server's failure"
    );
    assert_eq!(responses(&out), [(INVITE_TX, 486)]);
    assert_eq!(ended(&out).disposition, Disposition::Busy);
}
