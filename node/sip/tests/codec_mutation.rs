//! Property-style robustness: thousands of deterministically mutated messages through every
//! entry point of the codec. Nothing may panic, and what parses must survive serialize → parse.

use pbx_sip::codec::{
    Frame, StreamFramer, bad_request, can_answer, normalize, parse, reject, serialize,
};
use pbx_sip::rsip::{Header, SipMessage};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const SPECIAL: &[u8] = b"\r\n\r\n:;,\"<>@ \t\0\xff\x80=\\/[]?0123456789";

const SEEDS: &[&str] = &[
    "REGISTER sip:pbx.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK1449733357;rport\r\nFrom: \"Alice Smith\" <sip:1001@pbx.example.com>;tag=2087186486\r\nTo: \"Alice Smith\" <sip:1001@pbx.example.com>\r\nCall-ID: 1826535823@192.168.1.50\r\nCSeq: 2 REGISTER\r\nContact: <sip:1001@192.168.1.50:5060>;expires=3600\r\nAuthorization: Digest username=\"1001\", realm=\"pbx\", nonce=\"abc\", uri=\"sip:pbx.example.com\", response=\"0ee8ec9a1bc6a8ec1d5a2b35d08f3a4f\", qop=auth, nc=00000001, cnonce=\"x\"\r\nMax-Forwards: 70\r\nUser-Agent: Yealink SIP-T46S 66.86.0.15\r\nContent-Length: 0\r\n\r\n",
    "INVITE sip:1002@[2001:db8::10]:5060;user=phone SIP/2.0\r\nVia: SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bKa, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb\r\nf: \"Doe, John\" <sip:1003@pbx.example.com>;tag=8C3A\r\nt: <sip:1002@pbx.example.com>\r\ni: 3b3d3ff3@10.0.0.21\r\nCSeq: 1 INVITE\r\nm: <sip:1003@10.0.0.21>\r\nc: application/sdp\r\nl: 52\r\n\r\nv=0\r\no=- 1 1 IN IP4 10.0.0.21\r\ns=-\r\nc=IN IP4 10.0.0.21\r\n",
    "OPTIONS sip:pbx.example.com SIP/2.0\nVia : SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK8a4f\nFrom: <sip:1005@pbx.example.com>;tag=4a1c\nTo: <sip:pbx.example.com>\nCall-ID: 1c9a\nCSeq: 7 OPTIONS\nSubject: folded\n  line\n\n",
    "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK1;received=203.0.113.50\r\nFrom: <sip:1001@pbx.example.com>;tag=2087186486\r\nTo: <sip:1001@pbx.example.com>;tag=as5e\r\nCall-ID: 1826535823@192.168.1.50\r\nCSeq: 1 REGISTER\r\nWWW-Authenticate: Digest realm=\"pbx\", nonce=\"abc\", qop=\"auth\"\r\nContent-Length: 0\r\n\r\n",
    "BYE sip:1003@10.0.0.21 SIP/2.0\r\nVia: SIP/2.0/TLS edge.example.net:5061;branch=z9hG4bKedge1\r\nMax-Forwards: 68\r\nFrom: <sip:1002@pbx.example.com>;tag=b2b-77\r\nTo: sip:1003@pbx.example.com;tag=8C3A\r\nCall-ID: 3b3d3ff3@10.0.0.21\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n\r\n\r\nACK sip:x SIP/2.0\r\n\r\n",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next() as u8;
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = SPECIAL[rng.below(SPECIAL.len())];
            }
            2 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(16)).min(len);
                out.drain(start..end);
            }
            3 => {
                let at = rng.below(len + 1);
                let count = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..count)
                    .map(|_| {
                        if rng.below(2) == 0 {
                            SPECIAL[rng.below(SPECIAL.len())]
                        } else {
                            rng.next() as u8
                        }
                    })
                    .collect();
                out.splice(at..at, bytes);
            }
            4 => out.truncate(rng.below(len + 1)),
            5 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(64)).min(len);
                let slice = out[start..end].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, slice);
            }
            _ => {
                // Swap the case of a byte (header names, methods, schemes).
                if len > 0 {
                    let i = rng.below(len);
                    out[i] ^= 0x20;
                }
            }
        }
    }
    out
}

fn without_content_length(sip: &SipMessage) -> SipMessage {
    let mut sip = sip.clone();
    let headers = match &mut sip {
        SipMessage::Request(r) => &mut r.headers,
        SipMessage::Response(r) => &mut r.headers,
    };
    headers.retain(|h| !matches!(h, Header::ContentLength(_)));
    sip
}

fn exercise(rng: &mut Rng, bytes: &[u8], stats: &mut [usize; 3]) {
    let parsed = parse(bytes);
    let normalized = normalize(bytes);
    match &parsed {
        Ok(msg) => {
            stats[0] += 1;
            // Parsing the normalised form gives the same message.
            let normalized = normalized.as_ref().expect("parse implies normalize");
            let again = parse(normalized).expect("normalised form parses");
            assert_eq!(again.sip, msg.sip);
            // serialize → parse keeps the message.
            let wire = serialize(&msg.sip);
            let round = parse(&wire).unwrap_or_else(|e| {
                panic!(
                    "{e:?}\n{}\n---\n{}",
                    String::from_utf8_lossy(bytes),
                    String::from_utf8_lossy(&wire)
                )
            });
            assert_eq!(
                without_content_length(&round.sip),
                without_content_length(&msg.sip)
            );
            assert_eq!(round.call_id(), msg.call_id());
            assert_eq!(round.cseq(), msg.cseq());
            assert_eq!(round.top_via_branch(), msg.top_via_branch());
            assert_eq!(round.from_tag(), msg.from_tag());
            assert_eq!(round.to_tag(), msg.to_tag());
        }
        Err(error) => {
            stats[1] += 1;
            let answer = reject(bytes, error);
            if answer.is_some() {
                stats[2] += 1;
            }
            assert_eq!(
                answer.is_some(),
                error.status_code().is_some() && can_answer(bytes)
            );
            if let Some(reply) = answer {
                assert!(reply.starts_with(b"SIP/2.0 "));
                assert!(reply.ends_with(b"Content-Length: 0\r\n\r\n"));
                assert!(!reply.contains(&0));
                // A reply's head is one line per header: never more lines than it should have.
                let text = String::from_utf8(reply).expect("replies are UTF-8");
                assert!(text.matches("\r\n").count() >= 7);
            }
        }
    }
    let _ = bad_request(bytes, "Bad Request");

    // The same bytes as a stream, cut at random places.
    let mut framer = StreamFramer::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = 1 + rng.below(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        if framer.push(chunk).is_err() {
            break;
        }
        while let Some(frame) = framer.next_message() {
            if let Ok(Frame::Message(message)) = frame {
                let _ = parse(&message);
            }
        }
    }
}

#[test]
fn mutated_messages_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut stats = [0usize; 3];
    for seed in SEEDS {
        exercise(&mut rng, seed.as_bytes(), &mut stats);
        for _ in 0..4000 {
            let mutated = mutate(&mut rng, seed.as_bytes());
            exercise(&mut rng, &mutated, &mut stats);
        }
    }
    // The mutations reach both sides: plenty parse, plenty fail, some get answered.
    let [ok, failed, answered] = stats;
    assert!(ok > 1000 && failed > 1000 && answered > 100, "{stats:?}");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(42);
    let mut stats = [0usize; 3];
    for _ in 0..3000 {
        let len = rng.below(600);
        let bytes: Vec<u8> = (0..len)
            .map(|_| SPECIAL[rng.below(SPECIAL.len())].wrapping_add((rng.below(3) as u8) * 32))
            .collect();
        exercise(&mut rng, &bytes, &mut stats);
    }
}
