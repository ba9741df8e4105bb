//! The call core in virtual time: every test feeds SIP messages and timers, and asserts the exact
//! messages, media instructions, records and CDRs that come out.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pbx_sip::sdp::Sdp;
use pbx_sip::transaction::{Peer, ServerTxId, Timer, Transport};
use storage::model::{ActiveCall, Binding, CallDetail, Disposition, HangupSide};

use super::*;
use crate::media::Latch;
use crate::sip::call::admission::Admitted;

const PBX: &str = "198.18.0.100";
const CALLER_ADDR: &str = "198.18.0.21:5062";
const DESK: &str = "198.18.0.31:5064";
const MOBILE: &str = "198.18.0.32:5066";
/// Ports the driver allocated: `[caller-facing, callee-facing]`.
const PORTS: [u16; 2] = [10000, 10002];

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn udp(s: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: addr(s),
    }
}

fn config() -> CallConfig {
    CallConfig {
        ring_timeout: Duration::from_secs(30),
        max_duration: Some(Duration::from_secs(3600)),
        media_timeout: Some(Duration::from_secs(60)),
        latch_window: Duration::from_secs(10),
        max_per_extension: 4,
        reject_anonymous: false,
        transfer_ring_back: true,
        hold_music: true,
        realm: "pbx.test".into(),
    }
}

fn env() -> Env {
    Env {
        node_id: 1,
        media_addr: PBX.parse().unwrap(),
        locals: Locals {
            udp: Some(addr("198.18.0.100:5060")),
            tcp: Some(addr("198.18.0.100:5060")),
            tls: None,
        },
        config: config(),
    }
}

fn sdp(ip: &str, port: u16, direction: &str) -> String {
    format!(
        "v=0\r\no=phone 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    )
}

fn parse(text: &str) -> rsip::SipMessage {
    pbx_sip::codec::parse(text.as_bytes()).unwrap().sip
}

fn with_body(head: String, body: &str) -> String {
    if body.is_empty() {
        format!("{head}Content-Length: 0\r\n\r\n")
    } else {
        format!(
            "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }
}

fn request(text: String) -> rsip::Request {
    match parse(&text) {
        rsip::SipMessage::Request(r) => r,
        rsip::SipMessage::Response(_) => panic!("not a request"),
    }
}

fn response(text: String) -> rsip::Response {
    match parse(&text) {
        rsip::SipMessage::Response(r) => r,
        rsip::SipMessage::Request(_) => panic!("not a response"),
    }
}

fn header<'a>(headers: &'a rsip::Headers, name: &str) -> &'a str {
    dialog::first(headers, name).unwrap_or_else(|| panic!("no {name}"))
}

fn body_sdp(body: &[u8]) -> Sdp {
    Sdp::parse(body).unwrap()
}

/// The caller's INVITE to 1002.
fn caller_invite(body: &str) -> rsip::Request {
    request(with_body(
        format!(
            "INVITE sip:1002@pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER_ADDR};branch=z9hG4bKa1\r\nMax-Forwards: 70\r\nFrom: <sip:1001@pbx.test>;tag=caller-tag\r\nTo: <sip:1002@pbx.test>\r\nCall-ID: caller-call\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@{CALLER_ADDR}>\r\nSupported: timer, 100rel\r\n"
        ),
        body,
    ))
}

fn binding(source: &str) -> Binding {
    Binding {
        aor: "1002".into(),
        contact: format!("sip:1002@{source}"),
        expires_at: u64::MAX,
        q: None,
        call_id: "reg".into(),
        cseq: 1,
        source: source.into(),
        transport: "udp".into(),
        user_agent: "desk".into(),
        node_id: 1,
        registered_at: 0,
        instance: None,
        reachable: Some(true),
    }
}

/// A call in virtual time, with every action it produced kept in order.
struct Harness {
    core: CallCore,
    now: Now,
    out: Vec<Action>,
}

const INVITE_TX: u64 = 1;

fn tx(n: u64) -> ServerTxId {
    ServerTxId::from_raw(n)
}

impl Harness {
    /// 1001 calls 1002, whose phones are registered at `devices`.
    fn ringing(devices: &[&str]) -> Self {
        Self::ringing_with(devices, Some(sdp("198.18.0.21", 4000, "sendrecv")))
    }

    /// 1001 calls 1002 with `offer` in its INVITE (`None`: a delayed offer).
    fn ringing_with(devices: &[&str], offer: Option<String>) -> Self {
        Self::ringing_plan(devices, offer, None, Vec::new())
    }

    /// 1001 calls 1002, whose devices ring for `ring_for`, then `then`.
    fn ringing_plan(
        devices: &[&str],
        offer: Option<String>,
        ring_for: Option<Duration>,
        then: Vec<Stage>,
    ) -> Self {
        let now = Now {
            at: Instant::now(),
            wall: 1_700_000_000_000,
        };
        let body = offer.clone().unwrap_or_default();
        let invite = caller_invite(&body);
        let call = NewCall {
            id: "call-1".into(),
            tx: tx(INVITE_TX),
            invite,
            peer: udp(CALLER_ADDR),
            caller: "1001".into(),
            caller_name: "Reception".into(),
            callee: "1002".into(),
            admitted: Admitted {
                offer: offer.map(|o| body_sdp(o.as_bytes())),
                bindings: devices.iter().map(|d| binding(d)).collect(),
                max_forwards: 69,
                anonymous: false,
                trunk: None,
                ring_for,
                then,
            },
            ports: if body.is_empty() { vec![] } else { vec![PORTS] },
        };
        let core = CallCore::start(env(), now, call).unwrap();
        let mut h = Self {
            core,
            now,
            out: Vec::new(),
        };
        h.drain();
        h
    }

    /// A call answered by the desk phone and established.
    fn talking() -> Self {
        Self::answered_by_desk(Self::ringing(&[DESK]))
    }

    /// `h`'s first branch (the desk phone) answers, and the record is stored.
    fn answered_by_desk(mut h: Self) -> Self {
        let ok = h.answer_from(0, DESK, "desk-tag");
        h.feed(Input::Branch {
            index: 0,
            event: LegEvent::Response(ok),
        });
        h.feed(Input::Committed {
            purpose: Purpose::Answer,
            ok: true,
        });
        h.out.clear();
        h
    }

    fn drain(&mut self) {
        while let Some(a) = self.core.poll_action() {
            self.out.push(a);
        }
    }

    fn feed(&mut self, input: Input) {
        self.core.handle(self.now, input);
        self.drain();
    }

    fn advance(&mut self, by: Duration, media: MediaStatus) {
        self.now.at += by;
        self.now.wall += by.as_millis() as u64;
        self.core.handle_timeout(self.now, media);
        self.drain();
    }

    fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.out)
    }

    /// The INVITE sent to branch `i`.
    fn branch_invite(&self, i: usize) -> rsip::Request {
        self.out
            .iter()
            .find_map(|a| match a {
                Action::Invite { branch, req, .. } if *branch == i => Some(req.clone()),
                _ => None,
            })
            .unwrap()
    }

    /// A response from device `device` to branch `i`'s INVITE.
    fn branch_response(
        &self,
        i: usize,
        code: u16,
        reason: &str,
        device: &str,
        tag: &str,
        body: &str,
    ) -> rsip::Response {
        let inv = &self.core.branches[i].leg;
        response(with_body(
            format!(
                "SIP/2.0 {code} {reason}\r\nVia: SIP/2.0/UDP 198.18.0.100:5060;branch=z9hG4bKx\r\nFrom: {};tag={}\r\nTo: {};tag={tag}\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\nContact: <sip:1002@{device}>\r\n",
                inv.local_uri, inv.local_tag, inv.remote_uri, inv.call_id
            ),
            body,
        ))
    }

    fn answer_from(&self, i: usize, device: &str, tag: &str) -> rsip::Response {
        let body = sdp(&addr(device).ip().to_string(), 6000, "sendrecv");
        self.branch_response(i, 200, "OK", device, tag, &body)
    }

    /// A request from the caller's phone inside its dialog.
    fn caller_sends(&self, method: &str, cseq: u32, body: &str) -> rsip::Request {
        let leg = &self.core.legs[CALLER];
        request(with_body(
            format!(
                "{method} sip:1002@198.18.0.100:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER_ADDR};branch=z9hG4bKc{cseq}\r\nMax-Forwards: 70\r\nFrom: <sip:1001@pbx.test>;tag=caller-tag\r\nTo: <sip:1002@pbx.test>;tag={}\r\nCall-ID: caller-call\r\nCSeq: {cseq} {method}\r\nContact: <sip:1001@{CALLER_ADDR}>\r\n",
                leg.local_tag
            ),
            body,
        ))
    }

    /// A request from the callee's phone inside its dialog.
    fn callee_sends(&self, method: &str, cseq: u32, body: &str) -> rsip::Request {
        let leg = &self.core.legs[CALLEE];
        request(with_body(
            format!(
                "{method} sip:1001@198.18.0.100:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {DESK};branch=z9hG4bKd{cseq}\r\nMax-Forwards: 70\r\nFrom: <sip:1002@pbx.test>;tag={}\r\nTo: {};tag={}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <sip:1002@{DESK}>\r\n",
                leg.remote_tag, leg.local_uri, leg.local_tag, leg.call_id
            ),
            body,
        ))
    }

    /// The phone's final response to a request the PBX sent.
    fn reply_to(req: &rsip::Request, code: u16, body: &str) -> rsip::Response {
        let h = &req.headers;
        let to = header(h, "To");
        let to = if to.contains("tag=") {
            to.to_owned()
        } else {
            format!("{to};tag=far")
        };
        response(with_body(
            format!(
                "SIP/2.0 {code} {}\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
                crate::sip::reply::phrase(code),
                header(h, "Via"),
                header(h, "From"),
                header(h, "Call-ID"),
                header(h, "CSeq"),
            ),
            body,
        ))
    }
}

fn responses(out: &[Action]) -> Vec<(u64, u16)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Respond { tx, resp } => Some((tx_raw(*tx), resp.status_code.code())),
            _ => None,
        })
        .collect()
}

fn tx_raw(t: ServerTxId) -> u64 {
    (0..64).find(|n| tx(*n) == t).unwrap_or(u64::MAX)
}

fn response_to(out: &[Action], t: u64) -> rsip::Response {
    out.iter()
        .find_map(|a| match a {
            Action::Respond { tx, resp } if tx_raw(*tx) == t => Some(resp.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no response on transaction {t}"))
}

/// Requests sent in client transactions: `(id, method, cseq, to)`.
fn requests(out: &[Action]) -> Vec<(u64, rsip::Request, Peer)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Request { id, req, peer } => Some((*id, req.clone(), *peer)),
            _ => None,
        })
        .collect()
}

fn acks(out: &[Action]) -> Vec<(rsip::Request, Peer)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Ack { req, peer } => Some((req.clone(), *peer)),
            _ => None,
        })
        .collect()
}

fn cseq(req: &rsip::Request) -> String {
    header(&req.headers, "CSeq").to_owned()
}

fn ended(out: &[Action]) -> CallDetail {
    match out.last() {
        Some(Action::End { cdr }) => (**cdr).clone(),
        other => panic!("the call did not end last: {other:?}"),
    }
}

fn committed(out: &[Action]) -> Vec<(Purpose, ActiveCall)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Commit { record, purpose } => Some((*purpose, (**record).clone())),
            _ => None,
        })
        .collect()
}

fn media_port(body: &[u8]) -> (String, u16) {
    let s = body_sdp(body);
    let m = &s.media()[0];
    (m.address.map(|a| a.to_string()).unwrap_or_default(), m.port)
}

#[test]
fn forks_to_every_device_with_the_offer_on_the_pbx_ports() {
    let h = Harness::ringing(&[DESK, MOBILE]);
    let invites: Vec<_> = h
        .out
        .iter()
        .filter_map(|a| match a {
            Action::Invite { branch, req, peer } => Some((*branch, req.clone(), *peer)),
            _ => None,
        })
        .collect();
    assert_eq!(invites.len(), 2);
    for (i, (branch, req, peer)) in invites.iter().enumerate() {
        assert_eq!(*branch, i);
        assert_eq!(peer.addr, addr([DESK, MOBILE][i]));
        assert_eq!(
            req.uri.to_string(),
            format!("sip:1002@{}", [DESK, MOBILE][i])
        );
        assert_eq!(cseq(req), "1 INVITE");
        assert_eq!(header(&req.headers, "Max-Forwards"), "69");
        assert!(header(&req.headers, "From").starts_with("\"Reception\" <sip:1001@pbx.test>"));
        // Each branch is its own dialog; nothing of the caller's leaks.
        assert_ne!(header(&req.headers, "Call-ID"), "caller-call");
        assert_eq!(media_port(&req.body), (PBX.to_owned(), PORTS[1]));
        // The caller's 100rel never crosses (the PBX offers its own, and PRACKs itself); the
        // session-timer option does.
        assert_eq!(header(&req.headers, "Supported"), "timer, 100rel");
    }
    assert_ne!(
        header(&invites[0].1.headers, "Call-ID"),
        header(&invites[1].1.headers, "Call-ID")
    );
    // The caller's media is expected from its SDP; the callee's from any ringing device.
    let peers: Vec<_> = h
        .out
        .iter()
        .filter_map(|a| match a {
            Action::SetPeer { stream, side, peer } => Some((*stream, *side, peer.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(peers[0].1, Side::Caller);
    assert_eq!(peers[0].2.rtp, Some(addr("198.18.0.21:4000")));
    assert_eq!(peers[1].1, Side::Callee);
    assert_eq!(peers[1].2.trusted, vec![addr(DESK).ip(), addr(MOBILE).ip()]);
    assert_eq!(
        h.core.poll_timeout(),
        Some(h.now.at + config().ring_timeout)
    );
}

#[test]
fn first_answer_wins_the_other_is_cancelled_and_200_waits_for_the_record() {
    let mut h = Harness::ringing(&[DESK, MOBILE]);
    h.out.clear();
    let ringing = h.branch_response(1, 180, "Ringing", MOBILE, "mob", "");
    h.feed(Input::Branch {
        index: 1,
        event: LegEvent::Response(ringing),
    });
    assert_eq!(responses(&h.take()), vec![(INVITE_TX, 180)]);

    let ok = h.answer_from(0, DESK, "desk-tag");
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(ok),
    });
    let out = h.take();
    let acked = acks(&out);
    assert_eq!(acked.len(), 1);
    assert_eq!(acked[0].1.addr, addr(DESK));
    assert_eq!(cseq(&acked[0].0), "1 ACK");
    assert!(header(&acked[0].0.headers, "To").ends_with("tag=desk-tag"));
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::CancelBranch { branch: 1 }))
    );
    // Nothing reaches the caller before the record is committed.
    assert!(responses(&out).is_empty());
    let records = committed(&out);
    assert_eq!(records.len(), 1);
    let (purpose, record) = &records[0];
    assert_eq!(*purpose, Purpose::Answer);
    assert_eq!(record.caller.call_id, "caller-call");
    assert_eq!(record.callee.remote_tag, "desk-tag");
    assert_eq!(record.callee.peer, DESK);
    assert_eq!(record.streams[0].caller_port, PORTS[0]);
    assert_eq!(record.answered_at, h.now.wall);

    h.feed(Input::Committed {
        purpose: Purpose::Answer,
        ok: true,
    });
    let out = h.take();
    let ok = response_to(&out, INVITE_TX);
    assert_eq!(ok.status_code.code(), 200);
    assert_eq!(media_port(&ok.body), (PBX.to_owned(), PORTS[0]));
    assert!(header(&ok.headers, "Contact").contains("198.18.0.100:5060"));
    // The media check and the maximum duration are armed.
    assert_eq!(h.core.poll_timeout(), Some(h.now.at + MEDIA_CHECK));
}

#[test]
fn an_answer_from_the_cancelled_device_is_acked_and_hung_up() {
    let mut h = Harness::answered_by_desk(Harness::ringing(&[DESK, MOBILE]));
    // The mobile answered as the CANCEL crossed it.
    let late = h.answer_from(1, MOBILE, "mob-tag");
    h.feed(Input::Branch {
        index: 1,
        event: LegEvent::Response(late),
    });
    let out = h.take();
    let acked = acks(&out);
    assert_eq!(acked.len(), 1);
    assert_eq!(acked[0].1.addr, addr(MOBILE));
    let sent = requests(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.method, rsip::Method::Bye);
    assert_eq!(sent[0].2.addr, addr(MOBILE));
    assert_eq!(cseq(&sent[0].1), "2 BYE");
    // The established call is untouched.
    assert!(!h.core.is_over());
}

#[test]
fn no_answer_in_time_cancels_every_device_and_the_caller_hears_480() {
    let mut h = Harness::ringing(&[DESK, MOBILE]);
    h.out.clear();
    h.advance(Duration::from_secs(29), MediaStatus::default());
    assert!(h.out.is_empty());
    h.advance(Duration::from_secs(1), MediaStatus::default());
    let out = h.take();
    let cancels = out
        .iter()
        .filter(|a| matches!(a, Action::CancelBranch { .. }))
        .count();
    assert_eq!(cancels, 2);
    let resp = response_to(&out, INVITE_TX);
    assert_eq!(resp.status_code.code(), 480);
    assert!(header(&resp.headers, "To").contains("tag="));
    let cdr = ended(&out);
    assert_eq!(cdr.disposition, Disposition::NoAnswer);
    assert_eq!(cdr.sip_status, 480);
    assert_eq!(cdr.answered_at, None);
    assert!(h.core.is_over());
}

#[test]
fn caller_cancel_ends_the_attempt_with_487() {
    let mut h = Harness::ringing(&[DESK]);
    h.out.clear();
    h.feed(Input::Cancelled);
    let out = h.take();
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::CancelBranch { branch: 0 }))
    );
    assert_eq!(responses(&out), vec![(INVITE_TX, 487)]);
    let cdr = ended(&out);
    assert_eq!(
        (cdr.disposition, cdr.hangup_side),
        (Disposition::Cancelled, HangupSide::Caller)
    );
}

#[test]
fn busy_and_declining_devices_win_over_silence() {
    for (finals, expect, disposition) in [
        (vec![486, 408], 486, Disposition::Busy),
        (vec![603, 486], 603, Disposition::Busy),
        (vec![408, 503], 480, Disposition::Unavailable),
    ] {
        let mut h = Harness::ringing(&[DESK, MOBILE]);
        h.out.clear();
        for (i, code) in finals.iter().enumerate() {
            let event = match code {
                408 => LegEvent::Timeout,
                503 => LegEvent::Failed,
                _ => LegEvent::Response(h.branch_response(i, *code, "No", DESK, "t", "")),
            };
            h.feed(Input::Branch { index: i, event });
        }
        let out = h.take();
        assert_eq!(responses(&out), vec![(INVITE_TX, expect)], "{finals:?}");
        assert_eq!(ended(&out).disposition, disposition);
        // Nothing was cancelled: every branch had ended by itself.
        assert!(!out.iter().any(|a| matches!(a, Action::CancelBranch { .. })));
    }
}

#[test]
fn early_media_reaches_the_caller_on_the_pbx_ports() {
    let mut h = Harness::ringing(&[DESK]);
    h.out.clear();
    let early = sdp("198.18.0.31", 7000, "sendrecv");
    let progress = h.branch_response(0, 183, "Session Progress", DESK, "desk-tag", &early);
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(progress),
    });
    let out = h.take();
    let resp = response_to(&out, INVITE_TX);
    assert_eq!(resp.status_code.code(), 183);
    assert_eq!(media_port(&resp.body), (PBX.to_owned(), PORTS[0]));
    assert!(out.iter().any(|a| matches!(a,
        Action::SetPeer { side: Side::Callee, peer, .. } if peer.rtp == Some(addr("198.18.0.31:7000")))));
}

#[test]
fn a_record_that_cannot_be_stored_refuses_the_call_on_both_sides() {
    let mut h = Harness::ringing(&[DESK]);
    let ok = h.answer_from(0, DESK, "desk-tag");
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(ok),
    });
    h.out.clear();
    h.feed(Input::Committed {
        purpose: Purpose::Answer,
        ok: false,
    });
    let out = h.take();
    let bye = &requests(&out)[0];
    assert_eq!((bye.1.method, bye.2.addr), (rsip::Method::Bye, addr(DESK)));
    assert_eq!(responses(&out), vec![(INVITE_TX, 503)]);
    let cdr = ended(&out);
    assert_eq!(
        (cdr.disposition, cdr.cause.as_str()),
        (Disposition::Failed, "not-stored")
    );
    assert_eq!(cdr.answered_at, None);
}

#[test]
fn an_answer_without_media_is_hung_up_and_the_caller_hears_488() {
    let mut h = Harness::ringing(&[DESK]);
    h.out.clear();
    let ok = h.branch_response(0, 200, "OK", DESK, "desk-tag", "");
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(ok),
    });
    let out = h.take();
    assert_eq!(acks(&out).len(), 1);
    assert_eq!(requests(&out)[0].1.method, rsip::Method::Bye);
    assert_eq!(responses(&out), vec![(INVITE_TX, 488)]);
    assert!(committed(&out).is_empty());
    assert_eq!(ended(&out).cause, "bad-answer-sdp");
}

#[test]
fn bye_while_ringing_ends_the_attempt() {
    let mut h = Harness::ringing(&[DESK]);
    h.out.clear();
    let bye = h.caller_sends("BYE", 2, "");
    h.feed(Input::Request {
        tx: tx(2),
        req: bye,
    });
    let out = h.take();
    assert_eq!(responses(&out), vec![(2, 200), (INVITE_TX, 487)]);
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::CancelBranch { branch: 0 }))
    );
    assert_eq!(ended(&out).disposition, Disposition::Cancelled);
}

/// A re-INVITE from `who` with `body`, answered by the other phone with `answer`: returns the
/// forwarded request and every action.
fn reinvite(
    h: &mut Harness,
    from_caller: bool,
    cseq: u32,
    body: &str,
    answer: &str,
) -> (rsip::Request, Vec<Action>) {
    let req = if from_caller {
        h.caller_sends("INVITE", cseq, body)
    } else {
        h.callee_sends("INVITE", cseq, body)
    };
    h.feed(Input::Request { tx: tx(10), req });
    let (id, fwd, _) = requests(&h.take()).remove(0);
    let resp = Harness::reply_to(&fwd, 200, answer);
    h.feed(Input::Answer {
        id,
        outcome: ClientOutcome::Final(resp),
    });
    (fwd, h.take())
}

#[test]
fn hold_from_the_caller_is_passed_on_acked_and_recorded() {
    let mut h = Harness::talking();
    let hold = sdp("198.18.0.21", 4000, "sendonly");
    let answer = sdp("198.18.0.31", 6000, "recvonly");
    let (fwd, out) = reinvite(&mut h, true, 2, &hold, &answer);
    assert_eq!(fwd.method, rsip::Method::Invite);
    assert_eq!(cseq(&fwd), "2 INVITE");
    assert_eq!(fwd.uri.to_string(), format!("sip:1002@{DESK}"));
    assert_eq!(media_port(&fwd.body), (PBX.to_owned(), PORTS[1]));
    assert!(String::from_utf8_lossy(&fwd.body).contains("a=sendonly"));
    let acked = acks(&out);
    assert_eq!(acked.len(), 1);
    assert_eq!(cseq(&acked[0].0), "2 ACK");
    let resp = response_to(&out, 10);
    assert_eq!(resp.status_code.code(), 200);
    assert_eq!(media_port(&resp.body), (PBX.to_owned(), PORTS[0]));
    assert!(String::from_utf8_lossy(&resp.body).contains("a=recvonly"));
    let records = committed(&out);
    assert_eq!(records[0].0, Purpose::Update);
    assert!(records[0].1.caller.remote_sdp.contains("a=sendonly"));
    assert_eq!(records[0].1.callee.local_cseq, 2);
}

/// The session id and version of an SDP body's origin line, and its user name.
fn origin(body: &[u8]) -> (String, String, u64) {
    let text = String::from_utf8_lossy(body);
    let line = text
        .lines()
        .find(|l| l.starts_with("o="))
        .unwrap()
        .to_owned();
    let mut f = line[2..].split(' ');
    let user = f.next().unwrap().to_owned();
    let session = f.next().unwrap().to_owned();
    let version = f.next().unwrap().parse().unwrap();
    (user, session, version)
}

#[test]
fn each_leg_keeps_one_origin_whose_version_rises() {
    let mut h = Harness::ringing(&[DESK]);
    let (user, to_desk, v1) = origin(&h.branch_invite(0).body);
    assert_eq!(user, "-", "the caller's origin does not reach the callee");
    let ok = h.answer_from(0, DESK, "desk-tag");
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(ok),
    });
    h.feed(Input::Committed {
        purpose: Purpose::Answer,
        ok: true,
    });
    let (_, to_caller, c1) = origin(&response_to(&h.take(), INVITE_TX).body);
    assert_ne!(to_caller, to_desk, "one session per leg");
    // Hold: both legs see their own session again, each with a higher version.
    h.now.wall += 1;
    let hold = sdp("198.18.0.21", 4000, "sendonly");
    let answer = sdp("198.18.0.31", 6000, "recvonly");
    let (fwd, out) = reinvite(&mut h, true, 2, &hold, &answer);
    let (_, s, v2) = origin(&fwd.body);
    assert_eq!(s, to_desk);
    assert!(v2 > v1, "{v2} after {v1}");
    let (_, s, c2) = origin(&response_to(&out, 10).body);
    assert_eq!(s, to_caller);
    assert!(c2 > c1, "{c2} after {c1}");
    // The same description sent again in the same millisecond still counts up.
    let (fwd, _) = reinvite(&mut h, true, 3, &hold, &answer);
    assert_eq!(origin(&fwd.body).2, v2 + 1);
}

fn hold_music(out: &[Action]) -> Vec<(Side, Option<u8>)> {
    out.iter()
        .filter_map(|a| match a {
            Action::HoldMusic { side, pt, .. } => Some((*side, *pt)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_held_callee_hears_music_until_the_caller_resumes() {
    let mut h = Harness::talking();
    let hold = sdp("198.18.0.21", 4000, "sendonly");
    let answer = sdp("198.18.0.31", 6000, "recvonly");
    let (_, out) = reinvite(&mut h, true, 2, &hold, &answer);
    // The callee listens in µ-law (its SDP lists 0 first); the holding caller hears nothing.
    assert_eq!(hold_music(&out), [(Side::Callee, Some(0))]);
    let resume = sdp("198.18.0.21", 4000, "sendrecv");
    let answer = sdp("198.18.0.31", 6000, "sendrecv");
    let (_, out) = reinvite(&mut h, true, 3, &resume, &answer);
    assert_eq!(hold_music(&out), [(Side::Callee, None)]);
}

#[test]
fn a_reinvite_from_the_callee_goes_out_on_the_caller_leg() {
    let mut h = Harness::talking();
    let offer = sdp("198.18.0.31", 6002, "sendrecv");
    let (fwd, out) = reinvite(
        &mut h,
        false,
        2,
        &offer,
        &sdp("198.18.0.21", 4000, "sendrecv"),
    );
    assert_eq!(cseq(&fwd), "1 INVITE");
    assert_eq!(header(&fwd.headers, "Call-ID"), "caller-call");
    assert_eq!(fwd.uri.to_string(), format!("sip:1001@{CALLER_ADDR}"));
    assert_eq!(media_port(&fwd.body), (PBX.to_owned(), PORTS[0]));
    assert_eq!(cseq(&acks(&out)[0].0), "1 ACK");
    assert_eq!(response_to(&out, 10).status_code.code(), 200);
}

#[test]
fn crossing_offers_get_491_and_the_retry_goes_through() {
    let mut h = Harness::talking();
    let first = h.caller_sends("INVITE", 2, &sdp("198.18.0.21", 4000, "sendonly"));
    h.feed(Input::Request {
        tx: tx(10),
        req: first,
    });
    let (id, fwd, _) = requests(&h.take()).remove(0);
    let crossing = h.callee_sends("INVITE", 2, &sdp("198.18.0.31", 6000, "sendonly"));
    h.feed(Input::Request {
        tx: tx(11),
        req: crossing,
    });
    assert_eq!(responses(&h.take()), vec![(11, 491)]);
    let resp = Harness::reply_to(&fwd, 200, &sdp("198.18.0.31", 6000, "recvonly"));
    h.feed(Input::Answer {
        id,
        outcome: ClientOutcome::Final(resp),
    });
    h.out.clear();
    // The callee retries after its random wait.
    let retry = h.callee_sends("INVITE", 3, &sdp("198.18.0.31", 6000, "sendonly"));
    h.feed(Input::Request {
        tx: tx(12),
        req: retry,
    });
    let sent = requests(&h.take());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.method, rsip::Method::Invite);
}

#[test]
fn a_lost_ack_is_sent_again_for_every_retransmitted_2xx_with_its_own_cseq() {
    let mut h = Harness::talking();
    let (fwd, out) = reinvite(
        &mut h,
        true,
        2,
        &sdp("198.18.0.21", 4000, "sendonly"),
        &sdp("198.18.0.31", 6000, "recvonly"),
    );
    let first_ack = acks(&out).remove(0).0;
    // The callee never got our ACK: its 2xx comes again, inside and after Timer M.
    for _ in 0..3 {
        let again = Harness::reply_to(&fwd, 200, &sdp("198.18.0.31", 6000, "recvonly"));
        h.feed(Input::Stray {
            resp: again,
            peer: Some(udp(DESK)),
        });
        let out = h.take();
        let acked = acks(&out);
        assert_eq!(acked.len(), 1);
        assert_eq!(acked[0].0, first_ack);
        assert_eq!(acked[0].1.addr, addr(DESK));
        // Never a BYE, never a new answer to the caller: the call goes on.
        assert!(requests(&out).is_empty());
        assert!(responses(&out).is_empty());
    }
    // The initial answer's retransmission still gets the initial ACK.
    let initial = h.answer_from(0, DESK, "desk-tag");
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(initial),
    });
    let acked = acks(&h.take());
    assert_eq!(acked.len(), 1);
    assert_eq!(cseq(&acked[0].0), "1 ACK");
    assert!(!h.core.is_over());
}

#[test]
fn the_initial_ack_is_sent_again_while_no_reinvite_happened() {
    let mut h = Harness::talking();
    for _ in 0..2 {
        let again = h.answer_from(0, DESK, "desk-tag");
        h.feed(Input::Stray {
            resp: again,
            peer: None,
        });
        let acked = acks(&h.take());
        assert_eq!(acked.len(), 1);
        assert_eq!(cseq(&acked[0].0), "1 ACK");
    }
}

#[test]
fn a_reinvite_that_cannot_be_passed_on_is_answered_and_does_not_block_the_next() {
    let mut h = Harness::talking();
    // The transport towards the callee is gone.
    h.core.env.locals.udp = None;
    let req = h.caller_sends("INVITE", 2, &sdp("198.18.0.21", 4000, "sendonly"));
    h.feed(Input::Request { tx: tx(10), req });
    assert_eq!(responses(&h.take()), vec![(10, 500)]);
    h.core.env.locals.udp = Some(addr("198.18.0.100:5060"));
    let req = h.caller_sends("INVITE", 3, &sdp("198.18.0.21", 4000, "sendonly"));
    h.feed(Input::Request { tx: tx(11), req });
    let out = h.take();
    assert!(responses(&out).is_empty(), "not 491: {:?}", responses(&out));
    assert_eq!(requests(&out).len(), 1);
}

#[test]
fn a_reoffer_adding_a_stream_waits_for_ports_and_gets_503_without_them() {
    let mut h = Harness::talking();
    let two = format!(
        "{}m=video 4002 RTP/AVP 96\r\n",
        sdp("198.18.0.21", 4000, "sendrecv")
    );
    let req = h.caller_sends("INVITE", 2, &two);
    h.feed(Input::Request { tx: tx(10), req });
    let out = h.take();
    assert!(matches!(out[..], [Action::AddStreams { count: 1 }]));
    h.feed(Input::StreamsAdded(None));
    assert_eq!(responses(&h.take()), vec![(10, 503)]);
    // With ports, the next offer goes through on both streams.
    let req = h.caller_sends("INVITE", 3, &two);
    h.feed(Input::Request { tx: tx(11), req });
    h.take();
    h.feed(Input::StreamsAdded(Some(vec![[10004, 10006]])));
    let sent = requests(&h.take());
    let ports: Vec<u16> = body_sdp(&sent[0].1.body)
        .media()
        .iter()
        .map(|m| m.port)
        .collect();
    assert_eq!(ports, vec![PORTS[1], 10006]);
}

#[test]
fn bye_from_either_side_ends_the_call_on_the_other() {
    for from_caller in [true, false] {
        let mut h = Harness::talking();
        let bye = if from_caller {
            h.caller_sends("BYE", 2, "")
        } else {
            h.callee_sends("BYE", 1, "")
        };
        h.feed(Input::Request {
            tx: tx(20),
            req: bye,
        });
        let out = h.take();
        assert_eq!(responses(&out), vec![(20, 200)]);
        let sent = requests(&out);
        assert_eq!(sent.len(), 1);
        let (expect_peer, expect_cseq) = if from_caller {
            (DESK, "2 BYE")
        } else {
            (CALLER_ADDR, "1 BYE")
        };
        assert_eq!(sent[0].2.addr, addr(expect_peer));
        assert_eq!(cseq(&sent[0].1), expect_cseq);
        let cdr = ended(&out);
        let side = if from_caller {
            HangupSide::Caller
        } else {
            HangupSide::Callee
        };
        assert_eq!(
            (cdr.disposition, cdr.hangup_side),
            (Disposition::Answered, side)
        );
        assert!(cdr.answered_at.is_some());
    }
}

#[test]
fn requests_out_of_order_or_outside_the_call_are_refused() {
    let mut h = Harness::talking();
    let stale = h.caller_sends("INFO", 1, "");
    h.feed(Input::Request {
        tx: tx(30),
        req: stale,
    });
    assert_eq!(responses(&h.take()), vec![(30, 500)]);
    let mut stranger = h.caller_sends("INFO", 5, "");
    stranger
        .headers
        .retain(|h| !matches!(h, rsip::Header::CallId(_)));
    stranger
        .headers
        .push(rsip::Header::CallId("someone-else".into()));
    h.feed(Input::Request {
        tx: tx(31),
        req: stranger,
    });
    assert_eq!(responses(&h.take()), vec![(31, 481)]);
}

#[test]
fn info_is_passed_across_and_its_answer_comes_back() {
    let mut h = Harness::talking();
    let mut info = h.caller_sends("INFO", 2, "");
    info.body = b"Signal=5\r\n".to_vec();
    info.headers
        .retain(|h| !matches!(h, rsip::Header::ContentLength(_)));
    info.headers
        .push(rsip::Header::ContentType("application/dtmf-relay".into()));
    info.headers.push(rsip::Header::ContentLength("10".into()));
    h.feed(Input::Request {
        tx: tx(40),
        req: info,
    });
    let (id, fwd, peer) = requests(&h.take()).remove(0);
    assert_eq!((fwd.method, peer.addr), (rsip::Method::Info, addr(DESK)));
    assert_eq!(fwd.body, b"Signal=5\r\n");
    assert_eq!(
        header(&fwd.headers, "Content-Type"),
        "application/dtmf-relay"
    );
    h.feed(Input::Answer {
        id,
        outcome: ClientOutcome::Final(Harness::reply_to(&fwd, 200, "")),
    });
    assert_eq!(responses(&h.take()), vec![(40, 200)]);
}

#[test]
fn a_lost_peer_on_a_reinvite_ends_the_call() {
    let mut h = Harness::talking();
    let req = h.caller_sends("INVITE", 2, &sdp("198.18.0.21", 4000, "sendonly"));
    h.feed(Input::Request { tx: tx(10), req });
    let (id, _, _) = requests(&h.take()).remove(0);
    h.feed(Input::Answer {
        id,
        outcome: ClientOutcome::Timeout,
    });
    let out = h.take();
    assert_eq!(responses(&out), vec![(10, 408)]);
    assert_eq!(requests(&out)[0].2.addr, addr(CALLER_ADDR));
    assert_eq!(ended(&out).cause, "peer-lost");
}

/// RTP sources latched (RTCP on the next port once `rtcp` says so).
fn latched(a: Option<&str>, b: Option<&str>, rtcp: bool) -> MediaStatus {
    let side = |s: Option<&str>| {
        let rtp = s.map(addr);
        Latch {
            rtp,
            rtcp: rtp
                .filter(|_| rtcp)
                .map(|r| SocketAddr::new(r.ip(), r.port() + 1)),
        }
    };
    MediaStatus {
        idle_for: Duration::ZERO,
        latched: vec![[side(a), side(b)]],
    }
}

#[test]
fn latched_sources_are_recorded_once_both_sides_are_known_and_again_with_rtcp() {
    let mut h = Harness::talking();
    let (a, b) = (Some("198.18.0.21:4000"), Some("198.18.0.31:6000"));
    h.advance(MEDIA_CHECK, latched(a, None, false));
    assert!(committed(&h.take()).is_empty());
    h.advance(MEDIA_CHECK, latched(a, b, false));
    let records = committed(&h.take());
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].1.streams[0].callee_latched.as_deref(),
        Some("198.18.0.31:6000")
    );
    h.advance(MEDIA_CHECK, latched(a, b, false));
    assert!(committed(&h.take()).is_empty());
    // RTCP latched a few seconds later: recorded too, once.
    h.advance(MEDIA_CHECK, latched(a, b, true));
    let records = committed(&h.take());
    assert_eq!(
        records[0].1.streams[0].caller_latched.as_deref(),
        Some("198.18.0.21:4000 198.18.0.21:4001")
    );
    h.advance(MEDIA_CHECK, latched(a, b, true));
    assert!(committed(&h.take()).is_empty());
}

#[test]
fn silent_media_hangs_up_but_a_call_on_hold_stays() {
    let mut h = Harness::talking();
    let idle = |secs| MediaStatus {
        idle_for: Duration::from_secs(secs),
        latched: vec![],
    };
    h.advance(MEDIA_CHECK, idle(58));
    assert!(!h.core.is_over());
    h.advance(MEDIA_CHECK, idle(60));
    let out = h.take();
    let byes: Vec<_> = requests(&out).into_iter().map(|r| r.2.addr).collect();
    assert_eq!(byes, vec![addr(CALLER_ADDR), addr(DESK)]);
    assert_eq!(ended(&out).cause, "media-timeout");

    let mut held = Harness::talking();
    reinvite(
        &mut held,
        true,
        2,
        &sdp("198.18.0.21", 4000, "sendonly"),
        &sdp("198.18.0.31", 6000, "recvonly"),
    );
    held.advance(MEDIA_CHECK, idle(600));
    assert!(!held.core.is_over());
}

#[test]
fn the_maximum_duration_hangs_up_both_phones() {
    let mut h = Harness::talking();
    let end = h.core.max_end.unwrap();
    assert_eq!(end, h.now.at + Duration::from_secs(3600));
    h.now.at = end - MEDIA_CHECK;
    h.advance(MEDIA_CHECK, MediaStatus::default());
    let out = h.take();
    assert_eq!(requests(&out).len(), 2);
    let cdr = ended(&out);
    assert_eq!(
        (cdr.cause.as_str(), cdr.hangup_side),
        ("max-duration", HangupSide::Pbx)
    );
}

#[test]
fn a_caller_that_never_acks_is_hung_up() {
    let mut h = Harness::talking();
    h.feed(Input::NoAck { timer: Timer::H });
    let out = h.take();
    assert_eq!(requests(&out).len(), 2);
    assert_eq!(ended(&out).cause, "no-ack");
}

fn record_of(h: &mut Harness) -> ActiveCall {
    let ok = h.answer_from(0, DESK, "desk-tag");
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(ok),
    });
    committed(&h.take()).remove(0).1
}

#[test]
fn a_call_carried_on_while_on_hold_plays_the_music_again() {
    let mut h = Harness::ringing(&[DESK]);
    let mut rec = record_of(&mut h);
    // Recorded on hold: the caller sendonly, the desk recvonly.
    rec.caller.remote_sdp = sdp("198.18.0.21", 4000, "sendonly");
    rec.callee.remote_sdp = sdp("198.18.0.31", 6000, "recvonly");
    let mut core = CallCore::adopt(env(), h.now, rec).unwrap();
    let mut out = Vec::new();
    while let Some(a) = core.poll_action() {
        out.push(a);
    }
    assert_eq!(hold_music(&out), [(Side::Callee, Some(0))]);
}

#[test]
fn a_carried_on_call_keeps_its_dialogs_media_and_answer_time() {
    let mut h = Harness::ringing(&[DESK]);
    let mut rec = record_of(&mut h);
    // The caller's RTCP was latched too; the callee's record predates RTCP (RTP alone).
    rec.streams[0].caller_latched = Some("198.18.0.21:4000 198.18.0.21:4001".into());
    rec.streams[0].callee_latched = Some("198.18.0.31:6000".into());
    // The call was answered 50 minutes before the takeover; it may last an hour.
    let now = Now {
        at: Instant::now(),
        wall: rec.answered_at + 50 * 60 * 1000,
    };
    let mut core = CallCore::adopt(env(), now, rec.clone()).unwrap();
    assert_eq!(core.ports(), &[PORTS]);
    let mut out = Vec::new();
    while let Some(a) = core.poll_action() {
        out.push(a);
    }
    let restored: Vec<_> = out
        .iter()
        .filter_map(|a| match a {
            Action::RestoreLatch { side, latch, .. } => Some((*side, *latch)),
            _ => None,
        })
        .collect();
    assert_eq!(
        restored,
        vec![
            (
                Side::Caller,
                Latch {
                    rtp: Some(addr("198.18.0.21:4000")),
                    rtcp: Some(addr("198.18.0.21:4001"))
                }
            ),
            (
                Side::Callee,
                Latch {
                    rtp: Some(addr("198.18.0.31:6000")),
                    rtcp: None
                }
            )
        ]
    );
    let claims = committed(&out);
    assert_eq!(claims[0].0, Purpose::Claim);
    assert_eq!(claims[0].1.callee.local_cseq, 1 + CSEQ_HEADROOM);
    assert_eq!(claims[0].1.answered_at, rec.answered_at);
    assert_eq!(core.max_end, Some(now.at + Duration::from_secs(600)));

    let mut h = Harness {
        core,
        now,
        out: Vec::new(),
    };
    let bye = h.caller_sends("BYE", 5, "");
    h.feed(Input::Request {
        tx: tx(50),
        req: bye,
    });
    let out = h.take();
    let sent = requests(&out);
    assert_eq!(cseq(&sent[0].1), format!("{} BYE", 2 + CSEQ_HEADROOM));
    assert_eq!(ended(&out).answered_at, Some(rec.answered_at));
}

#[test]
fn a_record_from_another_media_address_is_not_carried_on() {
    let mut h = Harness::ringing(&[DESK]);
    let mut rec = record_of(&mut h);
    rec.media_addr = "198.18.0.200".into();
    assert!(CallCore::adopt(env(), h.now, rec).is_err());
    let mut h = Harness::ringing(&[DESK]);
    let mut rec = record_of(&mut h);
    rec.callee.peer = "not an address".into();
    assert!(CallCore::adopt(env(), h.now, rec).is_err());
}

#[test]
fn a_delayed_offer_is_answered_in_the_acks() {
    let mut h = Harness::ringing_with(&[DESK], None);
    let invite = h.branch_invite(0);
    assert!(invite.body.is_empty(), "no offer to pass on");
    h.out.clear();
    // Early media has nothing to answer yet: the 183 goes on without a body.
    let early = sdp("198.18.0.31", 7000, "sendrecv");
    let progress = h.branch_response(0, 183, "Session Progress", DESK, "desk-tag", &early);
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(progress),
    });
    let out = h.take();
    assert!(response_to(&out, INVITE_TX).body.is_empty());
    assert!(!out.iter().any(|a| matches!(a, Action::SetPeer { .. })));

    // The callee offers in its 2xx: ports first, no ACK yet (it must carry the answer).
    let ok = h.answer_from(0, DESK, "desk-tag");
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(ok),
    });
    let out = h.take();
    assert!(acks(&out).is_empty());
    assert!(matches!(out[..], [Action::AddStreams { count: 1 }]));
    h.feed(Input::StreamsAdded(Some(vec![PORTS])));
    let out = h.take();
    assert_eq!(committed(&out)[0].0, Purpose::Answer);
    assert!(responses(&out).is_empty());
    h.feed(Input::Committed {
        purpose: Purpose::Answer,
        ok: true,
    });
    let ok = response_to(&h.take(), INVITE_TX);
    assert_eq!(ok.status_code.code(), 200);
    assert_eq!(media_port(&ok.body), (PBX.to_owned(), PORTS[0]));

    // The caller answers in its ACK; the callee gets it in ours, on the PBX's callee-facing port.
    let ack = h.caller_sends("ACK", 1, &sdp("198.18.0.21", 4000, "sendrecv"));
    h.feed(Input::Ack(ack));
    let out = h.take();
    let acked = acks(&out);
    assert_eq!(acked.len(), 1);
    assert_eq!(
        (cseq(&acked[0].0), acked[0].1.addr),
        ("1 ACK".to_owned(), addr(DESK))
    );
    assert_eq!(media_port(&acked[0].0.body), (PBX.to_owned(), PORTS[1]));
    assert!(out.iter().any(|a| matches!(a,
        Action::SetPeer { side: Side::Caller, peer, .. } if peer.rtp == Some(addr("198.18.0.21:4000")))));
    let records = committed(&out);
    assert!(records[0].1.caller.remote_sdp.contains("m=audio 4000"));
    // The record can now carry the call on.
    assert!(CallCore::adopt(env(), h.now, records[0].1.clone()).is_ok());
    // A retransmitted 2xx gets the same ACK, answer included.
    let again = h.answer_from(0, DESK, "desk-tag");
    h.feed(Input::Stray {
        resp: again,
        peer: None,
    });
    assert_eq!(acks(&h.take())[0].0, acked[0].0);
}

#[test]
fn a_delayed_offer_answered_without_sdp_in_the_ack_is_hung_up() {
    let mut h = Harness::ringing_with(&[DESK], None);
    let ok = h.answer_from(0, DESK, "desk-tag");
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(ok),
    });
    h.feed(Input::StreamsAdded(Some(vec![PORTS])));
    h.feed(Input::Committed {
        purpose: Purpose::Answer,
        ok: true,
    });
    h.out.clear();
    let ack = h.caller_sends("ACK", 1, "");
    h.feed(Input::Ack(ack));
    let out = h.take();
    // The callee's 2xx is ACKed (so it stops retransmitting), then both phones get BYE.
    assert_eq!(acks(&out).len(), 1);
    assert!(acks(&out)[0].0.body.is_empty());
    let byes: Vec<_> = requests(&out).into_iter().map(|r| r.2.addr).collect();
    assert_eq!(byes, vec![addr(CALLER_ADDR), addr(DESK)]);
    assert_eq!(ended(&out).cause, "bad-ack-sdp");
}

#[test]
fn a_delayed_offer_without_free_ports_is_refused_on_both_sides() {
    let mut h = Harness::ringing_with(&[DESK], None);
    let ok = h.answer_from(0, DESK, "desk-tag");
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(ok),
    });
    h.out.clear();
    h.feed(Input::StreamsAdded(None));
    let out = h.take();
    assert_eq!(acks(&out).len(), 1);
    assert_eq!(requests(&out)[0].1.method, rsip::Method::Bye);
    assert_eq!(responses(&out), vec![(INVITE_TX, 503)]);
    assert_eq!(ended(&out).cause, "no-ports");
}

#[test]
fn reliable_provisionals_from_the_callee_are_pracked_by_the_pbx() {
    let mut h = Harness::ringing(&[DESK]);
    // The callee is offered 100rel (the caller's own 100rel never crosses).
    let invite = h.branch_invite(0);
    assert_eq!(header(&invite.headers, "Supported"), "timer, 100rel");
    h.out.clear();
    let reliable = |h: &Harness, rseq: u32| {
        let mut r = h.branch_response(0, 180, "Ringing", DESK, "desk-tag", "");
        r.headers
            .push(rsip::Header::Other("Require".into(), "100rel".into()));
        r.headers
            .push(rsip::Header::Other("RSeq".into(), rseq.to_string()));
        r
    };
    let ringing = reliable(&h, 7);
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(ringing),
    });
    let out = h.take();
    let sent = requests(&out);
    assert_eq!(sent.len(), 1);
    let prack = &sent[0].1;
    assert_eq!(prack.method, rsip::Method::PRack);
    assert_eq!(prack.uri.to_string(), format!("sip:1002@{DESK}"));
    assert_eq!(cseq(prack), "2 PRACK");
    assert_eq!(header(&prack.headers, "RAck"), "7 1 INVITE");
    assert!(header(&prack.headers, "To").ends_with("tag=desk-tag"));
    // The caller hears it ringing, unreliably.
    let resp = response_to(&out, INVITE_TX);
    assert_eq!(resp.status_code.code(), 180);
    assert!(dialog::first(&resp.headers, "RSeq").is_none());
    // Our PRACK was lost: the same 180 again is PRACKed again, not passed on twice.
    let again = reliable(&h, 7);
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(again),
    });
    let out = h.take();
    assert!(responses(&out).is_empty());
    assert_eq!(cseq(&requests(&out)[0].1), "3 PRACK");
    // An older one is ignored; the answer is ACKed with the INVITE's CSeq, the BYE goes on from 3.
    let old = reliable(&h, 6);
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(old),
    });
    assert!(h.take().is_empty());
    let ok = h.answer_from(0, DESK, "desk-tag");
    h.feed(Input::Branch {
        index: 0,
        event: LegEvent::Response(ok),
    });
    assert_eq!(cseq(&acks(&h.take())[0].0), "1 ACK");
    h.feed(Input::Committed {
        purpose: Purpose::Answer,
        ok: true,
    });
    h.out.clear();
    let bye = h.caller_sends("BYE", 2, "");
    h.feed(Input::Request {
        tx: tx(60),
        req: bye,
    });
    assert_eq!(cseq(&requests(&h.take())[0].1), "4 BYE");
}

mod attended;
mod hang_up;
mod hunt;
mod pickup;
mod stages;
mod transfer;
