//! Virtual-time harness for the transaction layer tests: message builders, a single layer driven by a
//! scripted peer ([`Single`]), and two layers wired back to back ([`Pair`]) with deterministic loss,
//! jitter (reordering) and a TU callback per side. Time only moves when the harness jumps to the next
//! `poll_timeout` or delivery.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    reason = "shared test helpers; each test binary uses a different subset"
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pbx_sip::rsip::{self, Request, Response, SipMessage};
use pbx_sip::transaction::{
    Peer, TimerConfig, TransactionConfig, TransactionLayer, Transport, TxEvent,
};

pub const UAC_ADDR: &str = "198.18.0.1:5060";
pub const UAS_ADDR: &str = "198.18.0.2:5060";

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn peer(transport: Transport, addr: &str) -> Peer {
    Peer {
        transport,
        addr: addr.parse::<SocketAddr>().unwrap(),
    }
}

pub fn uac_peer(transport: Transport) -> Peer {
    peer(transport, UAC_ADDR)
}

pub fn uas_peer(transport: Transport) -> Peer {
    peer(transport, UAS_ADDR)
}

fn via_proto(transport: Transport) -> &'static str {
    match transport {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
        Transport::Tls => "TLS",
    }
}

/// A request from the UAC (198.18.0.1) to the UAS, with the given top Via branch.
pub fn request(method: &str, branch: &str, call_id: &str, cseq: u32) -> Request {
    request_over(Transport::Udp, method, branch, call_id, cseq)
}

pub fn request_over(
    transport: Transport,
    method: &str,
    branch: &str,
    call_id: &str,
    cseq: u32,
) -> Request {
    let text = format!(
        "{method} sip:bob@198.18.0.2 SIP/2.0\r\n\
         Via: SIP/2.0/{proto} {UAC_ADDR};branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=alice1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:alice@198.18.0.1:5060>\r\n\
         Content-Length: 0\r\n\r\n",
        proto = via_proto(transport),
    );
    Request::try_from(text.as_str()).unwrap()
}

/// An INVITE carrying a Route set, to check what the ACK and CANCEL copy.
pub fn invite_with_routes(branch: &str, call_id: &str) -> Request {
    let text = format!(
        "INVITE sip:bob@198.18.0.2:5060;transport=udp SIP/2.0\r\n\
         Via: SIP/2.0/UDP {UAC_ADDR};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         Route: <sip:edge1.example.com;lr>\r\n\
         Route: <sip:edge2.example.com;lr>\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=alice1\r\n\
         To: \"Bob\" <sip:bob@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 314159 INVITE\r\n\
         Contact: <sip:alice@198.18.0.1:5060>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Request::try_from(text.as_str()).unwrap()
}

/// A response to `req` as a TU would build it: Vias, From, To (tagged unless 100), Call-ID, CSeq.
pub fn response(req: &Request, code: u16, to_tag: Option<&str>) -> Response {
    use rsip::Header;
    use rsip::prelude::UntypedHeader;
    let mut headers = rsip::Headers::default();
    for header in req.headers.iter() {
        match header {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                headers.push(header.clone());
            }
            Header::To(to) => {
                let value = match to_tag {
                    Some(tag) if !to.value().contains(";tag=") => {
                        format!("{};tag={tag}", to.value())
                    }
                    _ => to.value().to_owned(),
                };
                headers.push(Header::To(rsip::headers::To::new(value)));
            }
            _ => {}
        }
    }
    headers.push(Header::ContentLength(Default::default()));
    Response {
        status_code: rsip::StatusCode::from(code),
        version: rsip::Version::V2,
        headers,
        body: Vec::new(),
    }
}

/// The ACK for a 2xx, as the UAC's dialog layer builds it: a new branch, To from the response.
pub fn ack_for_2xx(invite: &Request, ok: &Response, branch: &str) -> Request {
    let to = header(&SipMessage::Response(ok.clone()), "To").unwrap();
    let call_id = header(&SipMessage::Request(invite.clone()), "Call-ID").unwrap();
    let seq = cseq(&SipMessage::Request(invite.clone())).0;
    let text = format!(
        "ACK sip:bob@198.18.0.2 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {UAC_ADDR};branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@example.com>;tag=alice1\r\n\
         To: {to}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {seq} ACK\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Request::try_from(text.as_str()).unwrap()
}

/// Values of every header named `name` (case-insensitive), in order, from the serialised message.
pub fn headers(msg: &SipMessage, name: &str) -> Vec<String> {
    msg.to_string()
        .split("\r\n")
        .skip(1)
        .take_while(|line| !line.is_empty())
        .filter_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
        .collect()
}

pub fn header(msg: &SipMessage, name: &str) -> Option<String> {
    headers(msg, name).into_iter().next()
}

pub fn cseq(msg: &SipMessage) -> (u32, String) {
    let value = header(msg, "CSeq").unwrap();
    let (seq, method) = value.split_once(' ').unwrap();
    (seq.parse().unwrap(), method.trim().to_owned())
}

pub fn status(msg: &SipMessage) -> Option<u16> {
    match msg {
        SipMessage::Response(r) => Some(r.status_code.code()),
        SipMessage::Request(_) => None,
    }
}

pub fn method(msg: &SipMessage) -> Option<rsip::Method> {
    match msg {
        SipMessage::Request(r) => Some(r.method),
        SipMessage::Response(_) => None,
    }
}

pub fn parse(bytes: &[u8]) -> SipMessage {
    SipMessage::try_from(bytes).unwrap_or_else(|e| {
        panic!(
            "layer sent unparsable bytes ({e}): {:?}",
            String::from_utf8_lossy(bytes)
        )
    })
}

pub fn config() -> TransactionConfig {
    TransactionConfig::default()
}

pub fn config_with(f: impl FnOnce(&mut TransactionConfig)) -> TransactionConfig {
    let mut c = TransactionConfig::default();
    f(&mut c);
    c
}

pub fn timers() -> TimerConfig {
    TimerConfig::default()
}

/// One layer, a scripted peer, virtual time.
pub struct Single {
    pub base: Instant,
    pub now: Instant,
    pub layer: TransactionLayer,
    /// Everything the layer transmitted: (time since base, destination, message).
    pub sent: Vec<(Duration, Peer, SipMessage)>,
    pub events: Vec<(Duration, TxEvent)>,
}

impl Single {
    pub fn new(config: TransactionConfig) -> Self {
        let base = Instant::now();
        Self {
            base,
            now: base,
            layer: TransactionLayer::new(config),
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// Drains both output queues into the logs.
    pub fn drain(&mut self) {
        let at = self.elapsed();
        loop {
            let mut progress = false;
            while let Some(t) = self.layer.poll_transmit() {
                self.sent.push((at, t.peer, parse(&t.bytes)));
                progress = true;
            }
            while let Some(e) = self.layer.poll_event() {
                self.events.push((at, e));
                progress = true;
            }
            if !progress {
                break;
            }
        }
    }

    /// Advances virtual time to `base + t`, firing every timer on the way at its exact deadline.
    pub fn run_until(&mut self, t: Duration) {
        let end = self.base + t;
        self.drain();
        while let Some(next) = self.layer.poll_timeout() {
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            self.layer.handle_timeout(self.now);
            self.drain();
        }
        self.now = self.now.max(end);
    }

    /// Runs until no timer is left (bounded, so a leak fails instead of hanging).
    pub fn run_to_idle(&mut self) {
        for _ in 0..1_000_000 {
            let Some(next) = self.layer.poll_timeout() else {
                break;
            };
            self.now = self.now.max(next);
            self.layer.handle_timeout(self.now);
            self.drain();
        }
        assert_eq!(self.layer.poll_timeout(), None, "timers never ran out");
    }

    pub fn request(&mut self, req: Request, from: Peer) {
        self.layer.handle_request(self.now, req, from);
        self.drain();
    }

    pub fn response(&mut self, resp: Response, from: Peer) {
        self.layer.handle_response(self.now, resp, from);
        self.drain();
    }

    pub fn take_sent(&mut self) -> Vec<(Duration, Peer, SipMessage)> {
        std::mem::take(&mut self.sent)
    }

    pub fn take_events(&mut self) -> Vec<(Duration, TxEvent)> {
        std::mem::take(&mut self.events)
    }

    /// Times (ms since base) of what was sent, draining the log.
    pub fn sent_times(&mut self) -> Vec<u128> {
        self.take_sent()
            .into_iter()
            .map(|(t, _, _)| t.as_millis())
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Uac,
    Uas,
}

impl Side {
    fn other(self) -> Self {
        match self {
            Self::Uac => Self::Uas,
            Self::Uas => Self::Uac,
        }
    }
}

/// A record of one transmitted message.
#[derive(Debug, Clone)]
pub struct Wire {
    pub at: Duration,
    pub from: Side,
    pub msg: SipMessage,
    pub lost: bool,
}

struct InFlight {
    at: Instant,
    seq: u64,
    to: Side,
    bytes: Vec<u8>,
}

/// Deterministic xorshift64* generator for loss and jitter.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

pub type Tu<'a> = dyn FnMut(Side, Instant, &mut TransactionLayer, &TxEvent) + 'a;

/// Two layers (UAC at 198.18.0.1, UAS at 198.18.0.2) joined by a virtual network.
pub struct Pair {
    pub base: Instant,
    pub now: Instant,
    pub uac: TransactionLayer,
    pub uas: TransactionLayer,
    pub transport: Transport,
    pub wire: Vec<Wire>,
    pub uac_events: Vec<(Duration, TxEvent)>,
    pub uas_events: Vec<(Duration, TxEvent)>,
    /// Percentage of messages lost, each way.
    pub loss_percent: u64,
    /// Extra random delay per message in [latency, latency + jitter]: reorders when non-zero.
    pub latency: Duration,
    pub jitter: Duration,
    rng: Rng,
    in_flight: Vec<InFlight>,
    seq: u64,
}

impl Pair {
    pub fn new(transport: Transport, uac: TransactionConfig, uas: TransactionConfig) -> Self {
        let base = Instant::now();
        Self {
            base,
            now: base,
            uac: TransactionLayer::new(uac),
            uas: TransactionLayer::new(uas),
            transport,
            wire: Vec::new(),
            uac_events: Vec::new(),
            uas_events: Vec::new(),
            loss_percent: 0,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            rng: Rng::new(1),
            in_flight: Vec::new(),
            seq: 0,
        }
    }

    pub fn lossy(mut self, percent: u64, seed: u64) -> Self {
        self.loss_percent = percent;
        self.rng = Rng::new(seed);
        self
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    fn layer(&mut self, side: Side) -> &mut TransactionLayer {
        match side {
            Side::Uac => &mut self.uac,
            Side::Uas => &mut self.uas,
        }
    }

    fn address(&self, side: Side) -> Peer {
        match side {
            Side::Uac => uac_peer(self.transport),
            Side::Uas => uas_peer(self.transport),
        }
    }

    fn send(&mut self, from: Side, bytes: Vec<u8>) {
        let lost = self.rng.chance(self.loss_percent);
        let jitter_ns = u64::try_from(self.jitter.as_nanos()).unwrap();
        let extra = if jitter_ns == 0 {
            0
        } else {
            self.rng.next_u64() % (jitter_ns + 1)
        };
        self.wire.push(Wire {
            at: self.elapsed(),
            from,
            msg: parse(&bytes),
            lost,
        });
        if !lost {
            self.seq += 1;
            self.in_flight.push(InFlight {
                at: self.now + self.latency + Duration::from_nanos(extra),
                seq: self.seq,
                to: from.other(),
                bytes,
            });
        }
    }

    /// Drains outputs, runs the TU callbacks and delivers due messages until nothing moves.
    fn settle(&mut self, tu: &mut Tu<'_>) {
        loop {
            let mut progress = false;
            for side in [Side::Uac, Side::Uas] {
                while let Some(t) = self.layer(side).poll_transmit() {
                    self.send(side, t.bytes);
                    progress = true;
                }
                while let Some(e) = self.layer(side).poll_event() {
                    let at = self.elapsed();
                    match side {
                        Side::Uac => self.uac_events.push((at, e.clone())),
                        Side::Uas => self.uas_events.push((at, e.clone())),
                    }
                    let now = self.now;
                    tu(side, now, self.layer(side), &e);
                    progress = true;
                }
            }
            let due = self
                .in_flight
                .iter()
                .enumerate()
                .filter(|(_, f)| f.at <= self.now)
                .min_by_key(|(_, f)| (f.at, f.seq))
                .map(|(i, _)| i);
            if let Some(i) = due {
                let f = self.in_flight.swap_remove(i);
                let from = self.address(f.to.other());
                let now = self.now;
                match parse(&f.bytes) {
                    SipMessage::Request(r) => self.layer(f.to).handle_request(now, r, from),
                    SipMessage::Response(r) => self.layer(f.to).handle_response(now, r, from),
                }
                progress = true;
            }
            if !progress {
                break;
            }
        }
    }

    /// Runs the network and both layers until `base + t`.
    pub fn run_until(&mut self, t: Duration, tu: &mut Tu<'_>) {
        let end = self.base + t;
        self.settle(tu);
        loop {
            let next = [
                self.uac.poll_timeout(),
                self.uas.poll_timeout(),
                self.in_flight.iter().map(|f| f.at).min(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(next) if next <= end => {
                    self.now = self.now.max(next);
                    let now = self.now;
                    self.uac.handle_timeout(now);
                    self.uas.handle_timeout(now);
                    self.settle(tu);
                }
                _ => break,
            }
        }
        self.now = self.now.max(end);
    }

    /// Lets the UAC start a request, then settles.
    pub fn uac_send(&mut self, req: Request, tu: &mut Tu<'_>) -> pbx_sip::transaction::ClientTxId {
        let peer = uas_peer(self.transport);
        let id = self.uac.send_request(self.now, req, peer).unwrap();
        self.settle(tu);
        id
    }

    pub fn sent_by(&self, side: Side) -> Vec<&Wire> {
        self.wire.iter().filter(|w| w.from == side).collect()
    }
}

/// A TU that does nothing.
pub fn silent_tu() -> impl FnMut(Side, Instant, &mut TransactionLayer, &TxEvent) {
    |_, _, _, _| {}
}
