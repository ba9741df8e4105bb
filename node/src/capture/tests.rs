use std::net::{IpAddr, SocketAddr};

use super::pcap::{self, checksum};
use super::*;

const PHONE: &str = "192.0.2.10:5062";
const PBX: &str = "198.51.100.1:5060";

fn register(user: &str, call_id: &str, response: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:pbx.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1\r\n\
         From: <sip:{user}@pbx.example>;tag=1\r\n\
         To: <sip:{user}@pbx.example>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 2 REGISTER\r\n\
         Authorization: Digest username=\"{user}\", realm=\"pbx\", nonce=\"abc\", \
         uri=\"sip:pbx.example\", response=\"{response}\", algorithm=MD5\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn captured(at_us: u64, user: &str, call_id: &str, remote: &str) -> Captured {
    let bytes = register(user, call_id, "0123456789abcdef0123456789abcdef");
    Captured {
        node: 1,
        at_us,
        direction: Direction::In,
        transport: CaptureTransport::Udp,
        local: PBX.parse().unwrap(),
        remote: remote.parse().unwrap(),
        summary: summarize(&bytes),
        bytes: mask_credentials(&bytes),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_ring_drops_the_oldest_past_its_message_bound() {
    let mut ring = Ring::new(CaptureConfig {
        max_bytes: usize::MAX,
        max_messages: 3,
    });
    for i in 0..5 {
        ring.push(captured(i, "1001", &format!("c{i}"), PHONE));
    }
    assert_eq!(ring.len(), 3);
    assert_eq!(ring.dropped(), 2);
    let held: Vec<u64> = ring
        .query(&Query {
            limit: 10,
            ..Query::default()
        })
        .iter()
        .map(|m| m.at_us)
        .collect();
    assert_eq!(held, [2, 3, 4]);
}

#[test]
fn the_ring_drops_the_oldest_past_its_byte_bound() {
    let one = captured(0, "1001", "c", PHONE).cost();
    let mut ring = Ring::new(CaptureConfig {
        max_bytes: one * 2 + one / 2,
        max_messages: 100,
    });
    for i in 0..4 {
        let pushed = ring.push(captured(i, "1001", "c", PHONE));
        assert!(pushed.held_bytes <= one * 2 + one / 2);
    }
    assert_eq!(ring.len(), 2);
    assert_eq!(ring.dropped(), 2);
    assert_eq!(ring.held_bytes(), one * 2);
    // One message larger than the whole bound is not held at all.
    let mut small = Ring::new(CaptureConfig {
        max_bytes: 10,
        max_messages: 100,
    });
    assert_eq!(small.push(captured(0, "1001", "c", PHONE)).dropped, 1);
    assert!(small.is_empty());
}

#[test]
fn a_digest_response_never_reaches_the_ring() {
    let response = "6629fae49393a05397450978507c4ef1";
    let bytes = register("1001", "c1", response);
    let masked = mask_credentials(&bytes);
    assert!(!contains(&masked, response.as_bytes()));
    let text = String::from_utf8(masked).unwrap();
    assert!(text.contains("response=\"********\""), "{text}");
    // The rest of the header and message is as it was.
    assert!(text.contains("nonce=\"abc\""));
    assert!(text.contains("algorithm=MD5\r\nContent-Length: 0\r\n\r\n"));
    assert_eq!(
        text.replace("\"********\"", &format!("\"{response}\"")),
        String::from_utf8(bytes).unwrap()
    );
}

#[test]
fn every_credentials_header_form_is_masked() {
    let cases: [(&str, &str); 5] = [
        (
            "Proxy-Authorization: Digest username=\"t\",response=secret1,nonce=\"n\"\r\n",
            "secret1",
        ),
        (
            "authorization: digest response = \"secret2\" , username=\"u\"\r\n",
            "secret2",
        ),
        // A folded header: the response on the continuation line.
        (
            "Authorization: Digest username=\"u\",\r\n  response=\"secret3\"\r\n",
            "secret3",
        ),
        // Basic carries the password itself: everything after the scheme goes.
        (
            "Authorization: Basic dXNlcjpzZWNyZXQ0\r\n",
            "dXNlcjpzZWNyZXQ0",
        ),
        // Bare LF line ends.
        ("Authorization: Digest response=\"secret5\"\n", "secret5"),
    ];
    for (header, secret) in cases {
        let msg = format!("INVITE sip:1002@pbx SIP/2.0\r\n{header}Content-Length: 4\r\n\r\nbody");
        let masked = mask_credentials(msg.as_bytes());
        assert!(
            !contains(&masked, secret.as_bytes()),
            "{}",
            String::from_utf8_lossy(&masked)
        );
        assert!(masked.ends_with(b"\r\n\r\nbody"));
    }
    // `response` in a body or another header is left alone.
    let msg =
        b"MESSAGE sip:1002@pbx SIP/2.0\r\nSubject: response=\"keep\"\r\n\r\nresponse=\"keep\"";
    assert_eq!(mask_credentials(msg), msg.to_vec());
}

#[test]
fn a_summary_reads_users_hosts_and_call_id() {
    let s = summarize(
        b"INVITE sip:1002;phone-context=x@PBX.example:5060;transport=tcp SIP/2.0\r\n\
          f: \"Alice\" <sips:1001:pw@[2001:db8::1]:5061>;tag=a\r\n\
          t: tel:+15551234;ext=2\r\n\
          i: abc@host\r\n\
          CSeq: 1 INVITE\r\n\r\n",
    );
    assert_eq!(s.uri_user, "1002");
    assert_eq!(s.uri_host, "pbx.example");
    assert_eq!(s.from_user, "1001");
    assert_eq!(s.from_host, "[2001:db8::1]");
    assert_eq!(s.to_user, "+15551234");
    assert_eq!(s.call_id, "abc@host");
    assert_eq!(s.cseq, "1 INVITE");
    assert!(s.concerns_user("1001") && s.concerns_user("1002") && !s.concerns_user("100"));
    let r = summarize(b"SIP/2.0 401 Unauthorized\r\nTo: sip:1001@pbx;tag=x\r\n\r\n");
    assert_eq!(r.first_line, "SIP/2.0 401 Unauthorized");
    assert_eq!((r.uri_user.as_str(), r.to_user.as_str()), ("", "1001"));
    // Garbage summarizes to nothing rather than failing.
    assert_eq!(
        summarize(b"\xff\xfe:"),
        Summary {
            first_line: "\u{fffd}\u{fffd}:".into(),
            ..Summary::default()
        }
    );
}

#[test]
fn a_query_applies_every_filter_and_its_limit() {
    let mut ring = Ring::new(CaptureConfig::default());
    ring.push(captured(100, "1001", "a", PHONE));
    ring.push(captured(200, "1002", "b", "192.0.2.11:5060"));
    ring.push(captured(300, "1001", "c", "[::ffff:192.0.2.10]:5062"));
    let ids = |q: Query| -> Vec<String> {
        ring.query(&Query { limit: 10, ..q })
            .into_iter()
            .map(|m| m.summary.call_id)
            .collect()
    };
    assert_eq!(ids(Query::default()), ["a", "b", "c"]);
    let q = |f: fn(&mut Query)| {
        let mut q = Query::default();
        f(&mut q);
        q
    };
    assert_eq!(ids(q(|q| q.call_id = Some("b".into()))), ["b"]);
    assert_eq!(ids(q(|q| q.extension = Some("1001".into()))), ["a", "c"]);
    assert_eq!(
        ids(q(|q| q.remote = Some("192.0.2.10".parse().unwrap()))),
        ["a", "c"]
    );
    assert_eq!(ids(q(|q| q.since_us = Some(200))), ["b", "c"]);
    assert_eq!(ids(q(|q| q.until_us = Some(200))), ["a", "b"]);
    // The limit keeps the most recent, oldest first.
    let last2: Vec<String> = ring
        .query(&Query {
            limit: 2,
            ..Query::default()
        })
        .into_iter()
        .map(|m| m.summary.call_id)
        .collect();
    assert_eq!(last2, ["b", "c"]);
}

fn ext(name: &str, until: u64) -> Target {
    Target {
        kind: TargetKind::Extension,
        name: name.into(),
        expires_at_ms: until,
        hosts: vec![],
    }
}

#[test]
fn targets_match_extensions_and_trunks_until_they_expire() {
    let trunk = Target {
        kind: TargetKind::Trunk,
        name: "carrier".into(),
        expires_at_ms: 5_000,
        hosts: vec!["SIP.Carrier.example".into(), "203.0.113.5".into()],
    };
    let t = Targets::new([ext("1001", 10_000), ext("1009", 10), trunk], 1_000);
    let phone: IpAddr = "192.0.2.10".parse().unwrap();
    let of = |s: &str| summarize(s.as_bytes());
    let reg1001 =
        of("REGISTER sip:pbx SIP/2.0\r\nFrom: <sip:1001@pbx>\r\nTo: <sip:1001@pbx>\r\n\r\n");
    let reg1002 =
        of("REGISTER sip:pbx SIP/2.0\r\nFrom: <sip:1002@pbx>\r\nTo: <sip:1002@pbx>\r\n\r\n");
    let to1001 =
        of("INVITE sip:1001@pbx SIP/2.0\r\nFrom: <sip:1002@pbx>\r\nTo: <sip:100@pbx>\r\n\r\n");
    assert!(t.concerns(&reg1001, phone, 2_000));
    assert!(!t.concerns(&reg1002, phone, 2_000));
    assert!(t.concerns(&to1001, phone, 2_000));
    // 1009 had expired when the targets were built; 1001 runs out at its expiry.
    let reg1009 = of("REGISTER sip:pbx SIP/2.0\r\nFrom: <sip:1009@pbx>\r\n\r\n");
    assert!(!t.concerns(&reg1009, phone, 2_000));
    assert!(!t.concerns(&reg1001, phone, 10_000));
    // A trunk by its address, or by its host in a URI.
    let carrier: IpAddr = "203.0.113.5".parse().unwrap();
    let options = of("OPTIONS sip:ping@sip.carrier.example SIP/2.0\r\n\r\n");
    assert!(t.concerns(&reg1002, carrier, 2_000));
    assert!(t.concerns(&reg1002, "::ffff:203.0.113.5".parse().unwrap(), 2_000));
    assert!(t.concerns(&options, phone, 2_000));
    assert!(!t.concerns(&options, phone, 5_000));
    assert!(Targets::new([ext("1", 10)], 10).is_empty());
}

fn passage(remote: &str) -> Passage {
    Passage {
        direction: Direction::In,
        transport: CaptureTransport::Tcp,
        local: PBX.parse().unwrap(),
        remote: remote.parse().unwrap(),
    }
}

#[test]
fn capture_takes_only_what_concerns_a_target_and_nothing_when_off() {
    let capture = Capture::new(7, CaptureConfig::default());
    let secret = "ffffffffeeeeeeeeddddddddcccccccc";
    assert!(!capture.is_active());
    assert!(!capture.observe(1, passage(PHONE), &register("1001", "a", secret)));
    capture.set_targets(Targets::new([ext("1001", u64::MAX)], 0));
    assert!(capture.is_active());
    assert!(capture.observe(2_000, passage(PHONE), &register("1001", "b", secret)));
    assert!(!capture.observe(3_000, passage(PHONE), &register("1002", "c", secret)));
    let held = capture.query(&Query {
        limit: 10,
        ..Query::default()
    });
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].node, 7);
    assert_eq!(held[0].transport, CaptureTransport::Tcp);
    assert_eq!(held[0].summary.call_id, "b");
    assert!(!contains(&held[0].bytes, secret.as_bytes()));
    capture.set_targets(Targets::default());
    assert!(!capture.is_active());
    assert!(!capture.observe(4_000, passage(PHONE), &register("1001", "d", secret)));
}

/// One record of a pcap file: (seconds, microseconds, original length, packet).
type Record<'a> = (u32, u32, u32, &'a [u8]);

fn parse_pcap(file: &[u8]) -> Vec<Record<'_>> {
    let u32le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    assert_eq!(u32le(&file[0..4]), pcap::MAGIC);
    assert_eq!(&file[4..8], &[2, 0, 4, 0]);
    assert_eq!(u32le(&file[16..20]), pcap::SNAPLEN);
    assert_eq!(u32le(&file[20..24]), pcap::LINKTYPE_RAW);
    let mut records = Vec::new();
    let mut rest = &file[24..];
    while !rest.is_empty() {
        let incl = u32le(&rest[8..12]) as usize;
        records.push((
            u32le(&rest[0..4]),
            u32le(&rest[4..8]),
            u32le(&rest[12..16]),
            &rest[16..16 + incl],
        ));
        rest = &rest[16 + incl..];
    }
    records
}

/// Checks a packet's IP and UDP headers and answers (source, destination, payload).
fn parse_packet(p: &[u8]) -> (SocketAddr, SocketAddr, &[u8]) {
    let be16 = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let (src, dst, udp, pseudo): (IpAddr, IpAddr, &[u8], Vec<u8>) = match p[0] >> 4 {
        4 => {
            assert_eq!(p[0], 0x45);
            assert_eq!(usize::from(be16(&p[2..4])), p.len());
            assert_eq!(p[9], 17);
            assert_eq!(checksum(&[&p[..20]]), 0, "IPv4 header checksum");
            let udp = &p[20..];
            let mut pseudo = p[12..20].to_vec();
            pseudo.extend_from_slice(&[0, 17]);
            pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
            let s: [u8; 4] = p[12..16].try_into().unwrap();
            let d: [u8; 4] = p[16..20].try_into().unwrap();
            (s.into(), d.into(), udp, pseudo)
        }
        6 => {
            assert_eq!(usize::from(be16(&p[4..6])), p.len() - 40);
            assert_eq!(p[6], 17);
            let udp = &p[40..];
            let mut pseudo = p[8..40].to_vec();
            pseudo.extend_from_slice(&(udp.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 17]);
            let s: [u8; 16] = p[8..24].try_into().unwrap();
            let d: [u8; 16] = p[24..40].try_into().unwrap();
            (s.into(), d.into(), udp, pseudo)
        }
        v => panic!("IP version {v}"),
    };
    assert_eq!(usize::from(be16(&udp[4..6])), udp.len());
    assert_eq!(checksum(&[&pseudo, udp]), 0, "UDP checksum");
    (
        SocketAddr::new(src, be16(&udp[0..2])),
        SocketAddr::new(dst, be16(&udp[2..4])),
        &udp[8..],
    )
}

#[test]
fn a_pcap_file_parses_back_with_valid_headers() {
    let mut inbound = captured(1_700_000_000_123_456, "1001", "a", PHONE);
    // An odd length exercises the checksum's padding.
    inbound.bytes.push(b'x');
    let mut outbound = captured(1_700_000_001_000_001, "1001", "a", PHONE);
    outbound.direction = Direction::Out;
    let mut v6 = captured(1_700_000_002_000_000, "1001", "b", "[2001:db8::7]:5070");
    v6.local = "[::ffff:198.51.100.1]:5060".parse().unwrap();
    let messages = [inbound.clone(), outbound.clone(), v6.clone()];
    let file = pcap::write(&messages);
    assert_eq!(
        file.len(),
        24 + messages.iter().map(pcap::record_len).sum::<usize>()
    );
    let records = parse_pcap(&file);
    assert_eq!(records.len(), 3);

    let (secs, usecs, orig, packet) = records[0];
    assert_eq!((secs, usecs), (1_700_000_000, 123_456));
    assert_eq!(orig as usize, packet.len());
    let (src, dst, payload) = parse_packet(packet);
    assert_eq!((src, dst), (PHONE.parse().unwrap(), PBX.parse().unwrap()));
    assert_eq!(payload, inbound.bytes.as_slice());

    let (src, dst, payload) = parse_packet(records[1].3);
    assert_eq!((src, dst), (PBX.parse().unwrap(), PHONE.parse().unwrap()));
    assert_eq!(payload, outbound.bytes.as_slice());

    // A v4 local with a v6 remote: both written as IPv6 (the v4 one mapped).
    let (src, dst, payload) = parse_packet(records[2].3);
    assert_eq!(src, "[2001:db8::7]:5070".parse().unwrap());
    assert_eq!(dst, "[::ffff:198.51.100.1]:5060".parse().unwrap());
    assert_eq!(payload, v6.bytes.as_slice());
}

#[test]
fn an_oversized_message_is_truncated_with_its_original_length() {
    let mut big = captured(0, "1001", "a", PHONE);
    big.bytes.resize(65_535, b'a');
    let file = pcap::write(std::slice::from_ref(&big));
    let records = parse_pcap(&file);
    let (_, _, orig, packet) = records[0];
    assert_eq!(packet.len(), 65_535);
    assert_eq!(orig as usize, 65_535 + 28);
    let (_, _, payload) = parse_packet(packet);
    assert_eq!(payload, &big.bytes[..65_507]);
}

#[test]
fn an_answer_keeps_the_most_recent_messages_within_its_bytes() {
    let all: Vec<Captured> = (0..5).map(|i| captured(i, "1001", "a", PHONE)).collect();
    let one = all[0].bytes.len();
    let kept = remote::keep_recent_within(all.clone(), one * 2 + 1);
    assert_eq!(kept.iter().map(|m| m.at_us).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(remote::keep_recent_within(all.clone(), usize::MAX), all);
    assert!(remote::keep_recent_within(all, 0).is_empty());
}
