//! The user agent the PBX's own applications answer calls with, as a pure state machine.
//!
//! The call engine reaches an application as it reaches a phone: it sends an INVITE to the
//! application's loopback address, gets `200 OK` with the application's SDP, and relays media to it.
//! An application hands the call on with a blind transfer (REFER), which the call engine carries out
//! as it does for a phone: the caller stays, the application leaves. So this agent needs only the
//! UAS side of an INVITE dialog and the UAC side of REFER and BYE inside it.
//!
//! No sockets and no clock: [`Ua::datagram`] takes what arrived and [`Ua::tick`] the time; what to
//! send is in [`Ua::poll_transmit`], what happened in [`Ua::poll_event`]. Retransmissions follow RFC
//! 3261 over UDP (T1 doubling up to T2, given up after 64·T1), though on loopback nothing is lost.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pbx_sip::codec::{self, Message};
use pbx_sip::rsip::Method;

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const GIVE_UP: Duration = Duration::from_secs(32);
/// Calls one agent holds at once; more are refused with `486`.
pub(crate) const MAX_DIALOGS: usize = 4096;
/// Longest `message/sipfrag` or `application/dtmf-relay` body looked at.
const MAX_SMALL_BODY: usize = 256;

/// What the agent reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A new call for `user` (the Request-URI's user part). Answer it with [`Ua::answer`] or
    /// [`Ua::refuse`].
    Invited {
        call: String,
        user: String,
        /// The INVITE's From: who calls.
        from: String,
        offer: Vec<u8>,
    },
    /// The answer was acknowledged: the caller is connected, media flows both ways.
    Confirmed { call: String },
    /// A key pressed, sent as SIP INFO (`application/dtmf-relay`) rather than in the media.
    Digit { call: String, digit: char },
    /// The transfer asked for ended with this final status: 2xx the target answered (the call
    /// engine hangs this dialog up next), anything else it did not and the caller is still here.
    Transferred { call: String, code: u16 },
    /// The dialog is over (the caller hung up, or our BYE was answered or gave up).
    Ended { call: String },
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transmit {
    pub(crate) to: SocketAddr,
    pub(crate) bytes: Vec<u8>,
}

/// A message sent until something stops it: the `200 OK` until its ACK, a request until its
/// response.
#[derive(Debug)]
struct Resend {
    bytes: Vec<u8>,
    next: Instant,
    interval: Duration,
    until: Instant,
}

impl Resend {
    fn new(bytes: Vec<u8>, now: Instant) -> Self {
        Self {
            bytes,
            next: now + T1,
            interval: T1,
            until: now + GIVE_UP,
        }
    }
}

#[derive(Debug)]
struct Dialog {
    /// Where the call engine sends from: requests and responses go back there.
    peer: SocketAddr,
    local_tag: String,
    /// The INVITE's From (the engine's URI and tag): our requests' To.
    remote: String,
    /// The INVITE's To with our tag: our requests' From.
    local: String,
    /// Our Contact: the INVITE's Request-URI (which names the service, so a call's record shows
    /// what answered it).
    contact: String,
    /// The engine's Contact: our requests' Request-URI.
    remote_target: String,
    local_cseq: u32,
    /// The last final response to the INVITE (a retransmitted INVITE gets it again).
    answer: Option<Vec<u8>>,
    /// The `200 OK` until ACKed.
    unacked: Option<Resend>,
    /// Our REFER or BYE until answered, with its CSeq and method.
    request: Option<(u32, Method, Resend)>,
    /// Our BYE went out: the dialog ends when it is answered.
    leaving: bool,
    /// The SDP we answered with, sent again for a re-INVITE.
    sdp: Vec<u8>,
    /// The INVITE, until it is answered (the answer copies its headers).
    invite: Option<Box<Message>>,
}

/// A dialog answered by another agent, as the call's record has it, for [`Ua::adopt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Adopted {
    /// Where the call engine now is.
    pub(crate) peer: SocketAddr,
    pub(crate) local_tag: String,
    /// Our URI with our tag (the engine's To), and the engine's with its tag (its From).
    pub(crate) local: String,
    pub(crate) remote: String,
    /// Our Contact (name-addr) and the engine's Contact URI.
    pub(crate) contact: String,
    pub(crate) remote_target: String,
    /// Above any CSeq the lost agent may have used.
    pub(crate) local_cseq: u32,
    pub(crate) sdp: Vec<u8>,
}

/// The agent: every dialog of one application endpoint.
#[derive(Debug)]
pub(crate) struct Ua {
    /// Our own address (Via, Contact).
    local: SocketAddr,
    dialogs: HashMap<String, Dialog>,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    branch: u64,
}

fn tag() -> String {
    let n: u64 = rand::random();
    format!("{n:016x}")
}

/// `name: value` for every header of `msg` with this name, in order.
fn copy_headers(out: &mut String, msg: &Message, name: &str) {
    for v in msg.header_values(name) {
        let _ = write!(out, "{name}: {v}\r\n");
    }
}

/// The URI inside a name-addr (`"A" <sip:a@h>;tag=x` → `sip:a@h`), or the value as it is.
pub(super) fn uri_in(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next().unwrap_or(value).trim(),
    }
}

/// The user part of a SIP URI.
fn user_of(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    Some(user.split(';').next().unwrap_or(user))
}

/// The status line's code of a `message/sipfrag` body (`SIP/2.0 200 OK`).
fn sipfrag_code(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body.get(..body.len().min(MAX_SMALL_BODY))?).ok()?;
    let line = text.lines().next()?;
    let code = line.strip_prefix("SIP/2.0 ")?.get(..3)?;
    code.parse().ok().filter(|c| (100..700).contains(c))
}

/// The key of an `application/dtmf-relay` body (`Signal=5\r\nDuration=160`).
fn dtmf_relay_digit(body: &[u8]) -> Option<char> {
    let text = std::str::from_utf8(body.get(..body.len().min(MAX_SMALL_BODY))?).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("signal") {
            return None;
        }
        let mut chars = v.trim().chars();
        let c = chars.next()?.to_ascii_uppercase();
        let single = chars.next().is_none();
        (single && (c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D'))).then_some(c)
    })
}

impl Ua {
    pub(crate) fn new(local: SocketAddr) -> Self {
        Self {
            local,
            dialogs: HashMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            branch: 0,
        }
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Dialogs open now.
    pub(crate) fn len(&self) -> usize {
        self.dialogs.len()
    }

    /// When [`Ua::tick`] has something to do next.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.dialogs
            .values()
            .flat_map(|d| {
                let a = d.unacked.as_ref().map(|r| r.next);
                let b = d.request.as_ref().map(|(_, _, r)| r.next);
                a.into_iter().chain(b)
            })
            .min()
    }

    /// A datagram from `from`. Anything that does not parse is dropped: only the call engine
    /// talks to this address.
    pub(crate) fn datagram(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) {
        let Ok(msg) = codec::parse(bytes) else {
            return;
        };
        if msg.is_request() {
            self.request(&msg, from, now);
        } else {
            self.response(&msg);
        }
    }

    fn request(&mut self, msg: &Message, from: SocketAddr, now: Instant) {
        let call = msg.call_id().to_owned();
        let method = msg.method();
        if method == Method::Ack {
            if let Some(d) = self.dialogs.get_mut(&call)
                && d.unacked.take().is_some()
            {
                self.events.push_back(Event::Confirmed { call });
            }
            return;
        }
        let Some(d) = self.dialogs.get_mut(&call) else {
            if method == Method::Invite && msg.to_tag().is_none() {
                return self.invite(msg, from, now);
            }
            return self.reply(msg, from, 481, "Call/Transaction Does Not Exist", None, &[]);
        };
        let local_tag = d.local_tag.clone();
        match method {
            Method::Invite if msg.to_tag().is_none() => {
                // The INVITE again: its final answer again.
                if let Some(bytes) = d.answer.clone() {
                    self.out.push_back(Transmit { to: from, bytes });
                }
            }
            Method::Invite => {
                // A re-INVITE (the caller holds, or refreshes): the same session, still here.
                let sdp = d.sdp.clone();
                self.reply(msg, from, 200, "OK", Some(&local_tag), &sdp);
            }
            Method::Bye => {
                self.reply(msg, from, 200, "OK", Some(&local_tag), &[]);
                self.dialogs.remove(&call);
                self.events.push_back(Event::Ended { call });
            }
            Method::Notify => {
                self.reply(msg, from, 200, "OK", Some(&local_tag), &[]);
                let refer = msg
                    .header_value("Event")
                    .is_some_and(|e| e.trim().to_ascii_lowercase().starts_with("refer"));
                if let Some(code) = sipfrag_code(msg.body()).filter(|c| refer && *c >= 200) {
                    self.events.push_back(Event::Transferred { call, code });
                }
            }
            Method::Info => {
                self.reply(msg, from, 200, "OK", Some(&local_tag), &[]);
                if let Some(digit) = dtmf_relay_digit(msg.body()) {
                    self.events.push_back(Event::Digit { call, digit });
                }
            }
            Method::Cancel | Method::Options | Method::Update => {
                // The INVITE was answered at once: nothing left to cancel.
                self.reply(msg, from, 200, "OK", Some(&local_tag), &[]);
            }
            _ => self.reply(msg, from, 501, "Not Implemented", Some(&local_tag), &[]),
        }
    }

    fn invite(&mut self, msg: &Message, from: SocketAddr, now: Instant) {
        let user = msg
            .request_uri()
            .and_then(user_of)
            .map(str::to_owned)
            .unwrap_or_default();
        if self.dialogs.len() >= MAX_DIALOGS {
            return self.reply(msg, from, 486, "Busy Here", Some(&tag()), &[]);
        }
        let (Some(remote), Some(to), Some(contact)) = (
            msg.header_value("From"),
            msg.header_value("To"),
            msg.header_value("Contact"),
        ) else {
            return self.reply(msg, from, 400, "Bad Request", Some(&tag()), &[]);
        };
        let local_tag = tag();
        let call = msg.call_id().to_owned();
        self.dialogs.insert(
            call.clone(),
            Dialog {
                peer: from,
                local: format!("{to};tag={local_tag}"),
                local_tag,
                remote: remote.to_owned(),
                remote_target: uri_in(contact).to_owned(),
                contact: format!(
                    "<{}>",
                    msg.request_uri()
                        .unwrap_or_default()
                        .replace(['<', '>', '\r', '\n'], "")
                ),
                local_cseq: 1,
                answer: None,
                unacked: None,
                request: None,
                leaving: false,
                sdp: Vec::new(),
                invite: Some(Box::new(msg.clone())),
            },
        );
        self.events.push_back(Event::Invited {
            call,
            user,
            from: remote.to_owned(),
            offer: msg.body().to_vec(),
        });
        let _ = now;
    }

    /// Takes over a dialog another node's agent answered (its owner failed and the call is carried
    /// on here): established, as confirmed, with our requests from now on sent to `adopted.peer`.
    /// Requests for it are answered from now on; no event is reported for the adoption itself.
    pub(crate) fn adopt(&mut self, call: &str, adopted: Adopted) -> bool {
        if self.dialogs.len() >= MAX_DIALOGS || self.dialogs.contains_key(call) {
            return false;
        }
        let Adopted {
            peer,
            local_tag,
            local,
            remote,
            contact,
            remote_target,
            local_cseq,
            sdp,
        } = adopted;
        self.dialogs.insert(
            call.to_owned(),
            Dialog {
                peer,
                local_tag,
                remote,
                local,
                contact,
                remote_target,
                local_cseq,
                answer: None,
                unacked: None,
                request: None,
                leaving: false,
                sdp,
                invite: None,
            },
        );
        true
    }

    /// Answers the new call `call` with `200 OK` carrying `sdp`.
    pub(crate) fn answer(&mut self, call: &str, sdp: &[u8], now: Instant) {
        let Some(d) = self.dialogs.get_mut(call) else {
            return;
        };
        let contact = d.contact.clone();
        let Some(invite) = d.invite.take() else {
            return;
        };
        let bytes = response(&invite, 200, "OK", Some(&d.local_tag), Some(&contact), sdp);
        d.sdp = sdp.to_vec();
        d.answer = Some(bytes.clone());
        d.unacked = Some(Resend::new(bytes.clone(), now));
        self.out.push_back(Transmit { to: d.peer, bytes });
    }

    /// Refuses the new call `call` (`488` for an offer it cannot take, `404` for an unknown
    /// number). The engine's ACK for it is not waited for: nothing is lost on loopback, and a
    /// retransmitted INVITE gets the answer again only while it is remembered.
    pub(crate) fn refuse(&mut self, call: &str, code: u16, reason: &str) {
        let Some(mut d) = self.dialogs.remove(call) else {
            return;
        };
        if let Some(invite) = d.invite.take() {
            let bytes = response(&invite, code, reason, Some(&d.local_tag), None, &[]);
            self.out.push_back(Transmit { to: d.peer, bytes });
        }
    }

    /// Hands call `call` on to `target` (a number the engine rings): REFER, answered by NOTIFYs.
    pub(crate) fn refer(&mut self, call: &str, target: &str, now: Instant) {
        let refer_to = format!("Refer-To: <sip:{target}@{}>\r\n", self.local.ip());
        self.send_request(call, Method::Refer, &refer_to, now);
    }

    /// Hangs call `call` up: BYE; [`Event::Ended`] once answered (or given up on).
    pub(crate) fn hangup(&mut self, call: &str, now: Instant) {
        if let Some(d) = self.dialogs.get_mut(call) {
            if d.leaving {
                return;
            }
            d.leaving = true;
            d.unacked = None;
        }
        self.send_request(call, Method::Bye, "", now);
    }

    fn send_request(&mut self, call: &str, method: Method, extra: &str, now: Instant) {
        self.branch += 1;
        let branch = format!("z9hG4bKapp{}{:x}", self.branch, rand::random::<u32>());
        let local = self.local;
        let Some(d) = self.dialogs.get_mut(call) else {
            return;
        };
        d.local_cseq += 1;
        let cseq = d.local_cseq;
        let mut m = String::with_capacity(512);
        let _ = write!(
            m,
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch}\r\nMax-Forwards: 70\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call}\r\nCSeq: {cseq} {method}\r\n\
             Contact: {contact}\r\n{extra}Content-Length: 0\r\n\r\n",
            target = d.remote_target,
            contact = d.contact,
            from = d.local,
            to = d.remote,
        );
        let bytes = m.into_bytes();
        d.request = Some((cseq, method, Resend::new(bytes.clone(), now)));
        self.out.push_back(Transmit { to: d.peer, bytes });
    }

    fn response(&mut self, msg: &Message) {
        let call = msg.call_id().to_owned();
        let Some(code) = msg.status_code() else {
            return;
        };
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        let (cseq, method) = msg.cseq();
        if code < 200
            || !d
                .request
                .as_ref()
                .is_some_and(|(c, m, _)| *c == cseq && *m == method)
        {
            return;
        }
        d.request = None;
        match method {
            Method::Bye => {
                self.dialogs.remove(&call);
                self.events.push_back(Event::Ended { call });
            }
            // Accepted: the NOTIFYs tell how it goes.
            Method::Refer if code < 300 => {}
            Method::Refer => self.events.push_back(Event::Transferred { call, code }),
            _ => {}
        }
    }

    /// Retransmits what is due; gives up on what was sent too long.
    pub(crate) fn tick(&mut self, now: Instant) {
        let mut bye = Vec::new();
        let mut gone = Vec::new();
        for (call, d) in &mut self.dialogs {
            if let Some(r) = d.unacked.as_mut()
                && r.next <= now
            {
                if now >= r.until {
                    // No ACK for the answer: the dialog is ended (RFC 3261 §13.3.1.4).
                    d.unacked = None;
                    bye.push(call.clone());
                } else {
                    self.out.push_back(Transmit {
                        to: d.peer,
                        bytes: r.bytes.clone(),
                    });
                    r.interval = (r.interval * 2).min(T2);
                    r.next = now + r.interval;
                }
            }
            if let Some((_, method, r)) = d.request.as_mut()
                && r.next <= now
            {
                if now >= r.until {
                    let method = *method;
                    d.request = None;
                    if method == Method::Bye {
                        gone.push(call.clone());
                    } else {
                        self.events.push_back(Event::Transferred {
                            call: call.clone(),
                            code: 408,
                        });
                    }
                } else {
                    self.out.push_back(Transmit {
                        to: d.peer,
                        bytes: r.bytes.clone(),
                    });
                    r.interval = (r.interval * 2).min(T2);
                    r.next = now + r.interval;
                }
            }
        }
        for call in gone {
            self.dialogs.remove(&call);
            self.events.push_back(Event::Ended { call });
        }
        for call in bye {
            self.hangup(&call, now);
        }
    }

    fn reply(
        &mut self,
        msg: &Message,
        to: SocketAddr,
        code: u16,
        reason: &str,
        tag: Option<&str>,
        sdp: &[u8],
    ) {
        let bytes = response(msg, code, reason, tag, None, sdp);
        self.out.push_back(Transmit { to, bytes });
    }
}

/// A response to `req`: its Via, From, Call-ID and CSeq, its To with `tag` unless it has one.
fn response(
    req: &Message,
    code: u16,
    reason: &str,
    tag: Option<&str>,
    contact: Option<&str>,
    sdp: &[u8],
) -> Vec<u8> {
    let mut m = String::with_capacity(512 + sdp.len());
    let _ = write!(m, "SIP/2.0 {code} {reason}\r\n");
    copy_headers(&mut m, req, "Via");
    copy_headers(&mut m, req, "From");
    let to = req.header_value("To").unwrap_or_default();
    match tag {
        Some(t) if req.to_tag().is_none() => {
            let _ = write!(m, "To: {to};tag={t}\r\n");
        }
        _ => {
            let _ = write!(m, "To: {to}\r\n");
        }
    }
    copy_headers(&mut m, req, "Call-ID");
    copy_headers(&mut m, req, "CSeq");
    if let Some(c) = contact {
        let _ = write!(m, "Contact: {c}\r\n");
    }
    if !sdp.is_empty() {
        m.push_str("Content-Type: application/sdp\r\n");
    }
    let _ = write!(m, "Content-Length: {}\r\n\r\n", sdp.len());
    let mut bytes = m.into_bytes();
    bytes.extend_from_slice(sdp);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENGINE: &str = "198.18.0.10:5060";

    fn invite(call: &str, cseq: u32) -> Vec<u8> {
        let sdp = "v=0\r\nc=IN IP4 198.18.0.10\r\nm=audio 4000 RTP/AVP 0 101\r\n";
        format!(
            "INVITE sip:700@127.0.0.1:9000 SIP/2.0\r\nVia: SIP/2.0/UDP {ENGINE};branch=z9hG4bKinv{cseq}\r\n\
             From: <sip:1001@pbx>;tag=eng\r\nTo: <sip:700@pbx>\r\nCall-ID: {call}\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:1001@{ENGINE}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
        .into_bytes()
    }

    fn in_dialog(
        method: &str,
        call: &str,
        cseq: u32,
        to_tag: &str,
        extra: &str,
        body: &str,
    ) -> Vec<u8> {
        format!(
            "{method} sip:app@127.0.0.1:9000 SIP/2.0\r\nVia: SIP/2.0/UDP {ENGINE};branch=z9hG4bK{method}{cseq}\r\n\
             From: <sip:1001@pbx>;tag=eng\r\nTo: <sip:700@pbx>;tag={to_tag}\r\nCall-ID: {call}\r\nCSeq: {cseq} {method}\r\n\
             {extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn response_to(req: &[u8], code: u16) -> Vec<u8> {
        let m = codec::parse(req).unwrap();
        response(&m, code, "X", None, None, &[])
    }

    fn sent(ua: &mut Ua) -> Vec<Message> {
        std::iter::from_fn(|| ua.poll_transmit())
            .map(|t| {
                assert_eq!(t.to, ENGINE.parse().unwrap());
                codec::parse(&t.bytes).unwrap()
            })
            .collect()
    }

    fn answered(ua: &mut Ua, t: Instant) -> String {
        ua.datagram(&invite("c1", 1), ENGINE.parse().unwrap(), t);
        let Some(Event::Invited {
            call, user, offer, ..
        }) = ua.poll_event()
        else {
            panic!("no invite event");
        };
        assert_eq!((call.as_str(), user.as_str()), ("c1", "700"));
        assert!(offer.starts_with(b"v=0"));
        ua.answer("c1", b"v=0\r\n", t);
        let ok = sent(ua).remove(0);
        assert_eq!(ok.status_code(), Some(200));
        assert_eq!(ok.body(), b"v=0\r\n");
        ok.to_tag().unwrap().to_owned()
    }

    #[test]
    fn an_adopted_dialog_answers_in_dialog_requests_and_sends_its_own_to_the_new_engine() {
        let t = Instant::now();
        let mut ua = Ua::new("127.0.0.1:9000".parse().unwrap());
        let adopted = Adopted {
            peer: ENGINE.parse().unwrap(),
            local_tag: "app".into(),
            local: "<sip:700@pbx>;tag=app".into(),
            remote: "<sip:1001@pbx>;tag=eng".into(),
            contact: "<sip:conf.-.800@127.0.0.1:9000>".into(),
            remote_target: "sip:pbx@192.0.2.1:5060".into(),
            local_cseq: 1000,
            sdp: b"v=0\r\n".to_vec(),
        };
        assert!(ua.adopt("c9", adopted.clone()));
        assert!(!ua.adopt("c9", adopted), "adopted once");
        assert_eq!(ua.poll_event(), None);
        // A re-INVITE gets our SDP; our BYE goes to the new engine, above the old CSeqs.
        ua.datagram(
            &in_dialog("INVITE", "c9", 7, "app", "", ""),
            ENGINE.parse().unwrap(),
            t,
        );
        let ok = sent(&mut ua).remove(0);
        assert_eq!((ok.status_code(), ok.body()), (Some(200), &b"v=0\r\n"[..]));
        ua.hangup("c9", t);
        let raw = ua.poll_transmit().unwrap();
        assert_eq!(raw.to, ENGINE.parse().unwrap());
        let bye = codec::parse(&raw.bytes).unwrap();
        assert_eq!(bye.method(), Method::Bye);
        assert_eq!(bye.cseq(), (1001, Method::Bye));
        assert_eq!(bye.request_uri(), Some("sip:pbx@192.0.2.1:5060"));
        assert!(bye.header_value("From").unwrap().contains("tag=app"));
        assert!(bye.header_value("To").unwrap().contains("tag=eng"));
        ua.datagram(&response_to(&raw.bytes, 200), ENGINE.parse().unwrap(), t);
        assert_eq!(ua.poll_event(), Some(Event::Ended { call: "c9".into() }));
    }

    #[test]
    fn the_answer_is_resent_until_acknowledged() {
        let t = Instant::now();
        let mut ua = Ua::new("127.0.0.1:9000".parse().unwrap());
        let tag = answered(&mut ua, t);
        ua.tick(t + T1);
        assert_eq!(sent(&mut ua).len(), 1);
        ua.tick(t + T1 + Duration::from_millis(999));
        assert!(sent(&mut ua).is_empty());
        ua.tick(t + T1 * 3);
        assert_eq!(sent(&mut ua).len(), 1);
        // The INVITE again gets the same answer.
        ua.datagram(&invite("c1", 1), ENGINE.parse().unwrap(), t);
        assert_eq!(sent(&mut ua)[0].to_tag(), Some(tag.as_str()));
        ua.datagram(
            &in_dialog("ACK", "c1", 1, &tag, "", ""),
            ENGINE.parse().unwrap(),
            t,
        );
        assert_eq!(
            ua.poll_event(),
            Some(Event::Confirmed { call: "c1".into() })
        );
        // The ACK again (for the 200 again): once is enough.
        ua.datagram(
            &in_dialog("ACK", "c1", 1, &tag, "", ""),
            ENGINE.parse().unwrap(),
            t,
        );
        assert_eq!(ua.poll_event(), None);
        ua.tick(t + Duration::from_secs(10));
        assert!(sent(&mut ua).is_empty());
        assert_eq!(ua.len(), 1);
    }

    #[test]
    fn an_answer_never_acknowledged_ends_the_dialog_with_bye() {
        let t = Instant::now();
        let mut ua = Ua::new("127.0.0.1:9000".parse().unwrap());
        answered(&mut ua, t);
        let mut at = t;
        let mut bye = None;
        while at < t + GIVE_UP + T2 {
            at += Duration::from_millis(100);
            ua.tick(at);
            for m in sent(&mut ua) {
                if m.is_request() {
                    bye = Some(m);
                }
            }
        }
        let bye = bye.expect("a BYE");
        assert_eq!(bye.method(), Method::Bye);
        assert_eq!(
            bye.request_uri(),
            Some(format!("sip:1001@{ENGINE}").as_str())
        );
    }

    #[test]
    fn a_transfer_is_a_refer_whose_notifies_tell_the_outcome() {
        let t = Instant::now();
        let from = ENGINE.parse().unwrap();
        let mut ua = Ua::new("127.0.0.1:9000".parse().unwrap());
        let tag = answered(&mut ua, t);
        ua.datagram(&in_dialog("ACK", "c1", 1, &tag, "", ""), from, t);
        assert_eq!(
            ua.poll_event(),
            Some(Event::Confirmed { call: "c1".into() })
        );
        ua.refer("c1", "1002", t);
        let refer = sent(&mut ua).remove(0);
        assert_eq!(refer.method(), Method::Refer);
        assert_eq!(refer.header_value("Refer-To"), Some("<sip:1002@127.0.0.1>"));
        assert_eq!(refer.from_tag(), Some(tag.as_str()));
        assert_eq!(refer.to_tag(), Some("eng"));
        // Unanswered, it is sent again; the 202 stops that.
        ua.tick(t + T1);
        assert_eq!(sent(&mut ua).len(), 1);
        let mut bytes = Vec::new();
        bytes.extend(response_to(&codec::serialize(&refer.sip), 202));
        ua.datagram(&bytes, from, t);
        ua.tick(t + Duration::from_secs(5));
        assert!(sent(&mut ua).is_empty());
        assert_eq!(ua.poll_event(), None);
        // Progress, then the final outcome.
        let notify = |cseq, frag: &str| {
            in_dialog(
                "NOTIFY",
                "c1",
                cseq,
                &tag,
                "Event: refer\r\nContent-Type: message/sipfrag\r\n",
                frag,
            )
        };
        ua.datagram(&notify(2, "SIP/2.0 180 Ringing"), from, t);
        assert_eq!(sent(&mut ua)[0].status_code(), Some(200));
        assert_eq!(ua.poll_event(), None);
        ua.datagram(&notify(3, "SIP/2.0 486 Busy Here"), from, t);
        assert_eq!(
            ua.poll_event(),
            Some(Event::Transferred {
                call: "c1".into(),
                code: 486
            })
        );
        sent(&mut ua);
        // The caller hangs up.
        ua.datagram(&in_dialog("BYE", "c1", 4, &tag, "", ""), from, t);
        assert_eq!(sent(&mut ua)[0].status_code(), Some(200));
        assert_eq!(ua.poll_event(), Some(Event::Ended { call: "c1".into() }));
        assert_eq!(ua.len(), 0);
    }

    #[test]
    fn keys_by_info_strangers_and_garbage() {
        let t = Instant::now();
        let from = ENGINE.parse().unwrap();
        let mut ua = Ua::new("127.0.0.1:9000".parse().unwrap());
        let tag = answered(&mut ua, t);
        let info = in_dialog(
            "INFO",
            "c1",
            2,
            &tag,
            "Content-Type: application/dtmf-relay\r\n",
            "Signal=5\r\nDuration=160\r\n",
        );
        ua.datagram(&info, from, t);
        assert_eq!(
            ua.poll_event(),
            Some(Event::Digit {
                call: "c1".into(),
                digit: '5'
            })
        );
        let bad = in_dialog("INFO", "c1", 3, &tag, "", "Signal=55\r\n");
        ua.datagram(&bad, from, t);
        assert_eq!(ua.poll_event(), None);
        sent(&mut ua);
        ua.datagram(&in_dialog("BYE", "nope", 2, "x", "", ""), from, t);
        assert_eq!(sent(&mut ua)[0].status_code(), Some(481));
        ua.datagram(b"\x00\x01garbage", from, t);
        ua.datagram(&invite("c1", 1)[..40], from, t);
        assert!(sent(&mut ua).is_empty());
        assert_eq!(ua.poll_event(), None);
    }

    #[test]
    fn our_bye_ends_the_dialog_when_answered() {
        let t = Instant::now();
        let from = ENGINE.parse().unwrap();
        let mut ua = Ua::new("127.0.0.1:9000".parse().unwrap());
        answered(&mut ua, t);
        ua.hangup("c1", t);
        let bye = sent(&mut ua).remove(0);
        assert_eq!(bye.method(), Method::Bye);
        ua.datagram(&response_to(&codec::serialize(&bye.sip), 200), from, t);
        assert_eq!(ua.poll_event(), Some(Event::Ended { call: "c1".into() }));
        assert_eq!(ua.len(), 0);
    }
}
