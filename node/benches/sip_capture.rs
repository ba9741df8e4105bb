//! The cost of SIP capture per message, as the transports pay it: `Capture::observe` on every
//! message sent and received.
//!
//! - off: no target enabled (the default) — one atomic load;
//! - on, not concerned: a target is enabled but the message is another extension's (its From,
//!   To and Request-URI are read to decide);
//! - on, captured: the message is the target's — read, credentials masked, copied into the ring
//!   (full, so each push also drops the oldest).
//!
//! Messages: a REGISTER with digest credentials (~520 bytes) and an INVITE with SDP (~1 KB).
//! Wall-clock time is read per captured message, as the transport does.
//!
//! Run: `cargo bench --workspace --bench sip_capture [-- ITERATIONS]`; figures go in BENCHMARKS.md
//! ("SIP capture cost per message").

use std::hint::black_box;
use std::time::Instant;

use pbx::capture::{
    Capture, CaptureConfig, CaptureTransport, Direction, Passage, Target, TargetKind, Targets,
    now_micros,
};

fn register(user: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:pbx.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK776asdhds;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@pbx.example.com>;tag=1928301774\r\n\
         To: <sip:{user}@pbx.example.com>\r\n\
         Call-ID: a84b4c76e66710@192.0.2.10\r\n\
         CSeq: 2 REGISTER\r\n\
         Contact: <sip:{user}@192.0.2.10:5062>\r\n\
         Authorization: Digest username=\"{user}\", realm=\"pbx\", nonce=\"3a1f9c0e5b7d\", \
         uri=\"sip:pbx.example.com\", response=\"6629fae49393a05397450978507c4ef1\", \
         algorithm=MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\"\r\n\
         Expires: 3600\r\n\
         User-Agent: bench\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn invite(from: &str, to: &str) -> Vec<u8> {
    let sdp = "v=0\r\no=- 20518 0 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 0 8 9 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
               a=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n\
               a=ptime:20\r\na=sendrecv\r\n";
    format!(
        "INVITE sip:{to}@pbx.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK74bf9;rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:{from}@pbx.example.com>;tag=9fxced76sl\r\n\
         To: <sip:{to}@pbx.example.com>\r\n\
         Call-ID: 3848276298220188511@192.0.2.10\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:{from}@192.0.2.10:5062>\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, INFO\r\n\
         Supported: replaces, timer\r\n\
         Proxy-Authorization: Digest username=\"{from}\", realm=\"pbx\", nonce=\"3a1f9c0e5b7d\", \
         uri=\"sip:{to}@pbx.example.com\", response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5\r\n\
         User-Agent: bench\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

fn passage() -> Passage {
    Passage {
        direction: Direction::In,
        transport: CaptureTransport::Udp,
        local: "198.51.100.1:5060".parse().expect("address"),
        remote: "192.0.2.10:5062".parse().expect("address"),
    }
}

/// Nanoseconds per `observe` of `msg` on `capture`, over `n` calls.
fn per_message(capture: &Capture, msg: &[u8], n: u64, stamp: bool) -> f64 {
    let p = passage();
    // Warm-up: fills the ring so that measured pushes also drop.
    for _ in 0..n.min(20_000) {
        black_box(capture.observe(1, p, msg));
    }
    let start = Instant::now();
    let mut captured = 0u64;
    for i in 0..n {
        let now = if stamp { now_micros() } else { i };
        captured += u64::from(capture.observe(black_box(now), p, black_box(msg)));
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    black_box(captured);
    ns
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let cfg = CaptureConfig {
        max_bytes: 8 * 1024 * 1024,
        max_messages: 10_000,
    };
    let off = Capture::new(1, cfg);
    let on = Capture::new(1, cfg);
    on.set_targets(Targets::new(
        [Target {
            kind: TargetKind::Extension,
            name: "1001".into(),
            expires_at_ms: u64::MAX,
            hosts: vec![],
        }],
        0,
    ));
    let messages = [
        ("REGISTER", register("1001"), register("1002")),
        ("INVITE+SDP", invite("1001", "1003"), invite("1002", "1003")),
    ];
    println!("SIP capture cost per message ({n} messages each; ns per message)");
    println!(
        "{:<12} {:>6} {:>10} {:>18} {:>14}",
        "message", "bytes", "off", "on, not concerned", "on, captured"
    );
    for (name, target, other) in &messages {
        let off_ns = per_message(&off, target, n, false);
        let skip_ns = per_message(&on, other, n / 4, true);
        let take_ns = per_message(&on, target, n / 4, true);
        println!(
            "{name:<12} {:>6} {off_ns:>10.1} {skip_ns:>18.0} {take_ns:>14.0}",
            target.len()
        );
    }
    let (held, bytes) = on.held();
    println!("ring at the end: {held} messages, {bytes} bytes");
}
