//! Parse and rewrite real-world offers; refuse bad ones with the right status; never panic.

use super::*;

const PBX4: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5));
const PBX6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));

/// Joins lines with CRLF, the way phones send SDP.
fn crlf(lines: &[&str]) -> String {
    lines.iter().map(|line| format!("{line}\r\n")).collect()
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

fn parse(text: &str) -> Result<Sdp, SdpError> {
    Sdp::parse(text.as_bytes())
}

fn malformed(reason: &'static str) -> Result<Sdp, SdpError> {
    Err(SdpError::Malformed(reason))
}

fn unacceptable(reason: &'static str) -> Result<Sdp, SdpError> {
    Err(SdpError::Unacceptable(reason))
}

/// Rewrites, checks the result against `expected` line for line, and checks it parses again
/// with the PBX's address and the given ports.
fn assert_rewrite(sdp: &Sdp, addr: IpAddr, ports: &[u16], expected: &[&str]) {
    let out = sdp.rewrite(addr, ports).unwrap();
    assert_eq!(
        out.split("\r\n").collect::<Vec<_>>(),
        [expected, &[""]].concat()
    );
    assert_eq!(out, crlf(expected));
    let again = parse(&out).unwrap();
    assert_eq!(again.media().len(), sdp.media().len());
    for (before, after) in sdp.media().iter().zip(again.media()) {
        assert_eq!(
            (&after.kind, &after.protocol),
            (&before.kind, &before.protocol)
        );
        assert_eq!(after.formats, before.formats);
        assert_eq!(after.direction, before.direction);
        assert_eq!(after.has_crypto, before.has_crypto);
        assert_eq!(after.rtcp_mux, before.rtcp_mux);
    }
    for (media, &port) in again.media().iter().zip(ports) {
        assert_eq!(media.port, port);
    }
}

const BARESIP: &[&str] = &[
    "v=0",
    "o=- 1311128013 2006566427 IN IP4 192.168.1.20",
    "s=-",
    "c=IN IP4 192.168.1.20",
    "t=0 0",
    "a=tool:baresip 3.10.1",
    "m=audio 10000 RTP/AVP 96 9 0 8 101",
    "b=AS:128",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 stereo=1;sprop-stereo=1",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=rtcp-mux",
    "a=sendrecv",
    "a=label:1",
    "a=ssrc:3482902738 cname:5d1b7b2e-4b7c-4d2a",
    "a=ptime:20",
];

#[test]
fn baresip_offer() {
    let sdp = parse(&crlf(BARESIP)).unwrap();
    assert_eq!(
        sdp.media(),
        [MediaInfo {
            kind: "audio".into(),
            port: 10000,
            protocol: "RTP/AVP".into(),
            formats: vec![
                "96".into(),
                "9".into(),
                "0".into(),
                "8".into(),
                "101".into()
            ],
            address: ip("192.168.1.20"),
            rtcp_port: None,
            rtcp_mux: true,
            direction: Direction::SendRecv,
            has_crypto: false,
        }]
    );
    let mut expected = BARESIP.to_vec();
    expected[1] = "o=- 1311128013 2006566427 IN IP4 203.0.113.5";
    expected[3] = "c=IN IP4 203.0.113.5";
    expected[6] = "m=audio 40000 RTP/AVP 96 9 0 8 101";
    assert_rewrite(&sdp, PBX4, &[40000], &expected);
}

/// sipp's uac scenario, with bare LF line endings.
const SIPP: &[&str] = &[
    "v=0",
    "o=user1 53655765 2353687637 IN IP4 10.0.0.5",
    "s=-",
    "c=IN IP4 10.0.0.5",
    "t=0 0",
    "m=audio 6000 RTP/AVP 0 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-11,16",
];

fn lf(lines: &[&str]) -> String {
    lines.iter().map(|line| format!("{line}\n")).collect()
}

#[test]
fn sipp_offer_with_bare_lf() {
    let sdp = parse(&lf(SIPP)).unwrap();
    let media = &sdp.media()[0];
    assert_eq!(media.formats, ["0", "101"]);
    assert_eq!((media.port, media.address), (6000, ip("10.0.0.5")));
    assert_eq!((media.rtcp_port, media.rtcp_mux), (None, false));
    assert_eq!(sdp, parse(&crlf(SIPP)).unwrap());
    assert_rewrite(
        &sdp,
        PBX4,
        &[30000],
        &[
            "v=0",
            "o=user1 53655765 2353687637 IN IP4 203.0.113.5",
            "s=-",
            "c=IN IP4 203.0.113.5",
            "t=0 0",
            "m=audio 30000 RTP/AVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-11,16",
        ],
    );
}

/// Linphone with ICE: session-level credentials, candidates and a=rtcp with an address.
const LINPHONE_ICE: &[&str] = &[
    "v=0",
    "o=1001 3265 1477 IN IP4 192.168.1.33",
    "s=Talk",
    "c=IN IP4 198.51.100.7",
    "t=0 0",
    "a=ice-pwd:a8d4b6e5c0f1d2e3b4a59687",
    "a=ice-ufrag:4f8a2c1e",
    "a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics",
    "a=record:off",
    "m=audio 7078 RTP/AVP 96 0 8 101",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 useinbandfec=1",
    "a=rtpmap:101 telephone-event/8000",
    "a=rtcp:7079 IN IP4 198.51.100.7",
    "a=candidate:1 1 UDP 2130706303 192.168.1.33 7078 typ host",
    "a=candidate:1 2 UDP 2130706302 192.168.1.33 7079 typ host",
    "a=candidate:2 1 UDP 1694498687 198.51.100.7 7078 typ srflx raddr 192.168.1.33 rport 7078",
    "a=candidate:2 2 UDP 1694498686 198.51.100.7 7079 typ srflx raddr 192.168.1.33 rport 7079",
    "a=end-of-candidates",
    "a=ice-options:trickle",
    "a=rtcp-fb:* trr-int 1000",
    "a=rtcp-fb:* ccm tmmbr",
];

#[test]
fn linphone_offer_with_ice() {
    let sdp = parse(&crlf(LINPHONE_ICE)).unwrap();
    let media = &sdp.media()[0];
    assert_eq!((media.port, media.address), (7078, ip("198.51.100.7")));
    assert_eq!((media.rtcp_port, media.rtcp_mux), (Some(7079), false));
    assert_rewrite(
        &sdp,
        PBX4,
        &[40010],
        &[
            "v=0",
            "o=1001 3265 1477 IN IP4 203.0.113.5",
            "s=Talk",
            "c=IN IP4 203.0.113.5",
            "t=0 0",
            "a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics",
            "a=record:off",
            "m=audio 40010 RTP/AVP 96 0 8 101",
            "a=rtpmap:96 opus/48000/2",
            "a=fmtp:96 useinbandfec=1",
            "a=rtpmap:101 telephone-event/8000",
            "a=rtcp:40011 IN IP4 203.0.113.5",
            "a=rtcp-fb:* trr-int 1000",
            "a=rtcp-fb:* ccm tmmbr",
        ],
    );
}

/// Chrome-style: media-level c=, a=rtcp with an address, rtcp-mux, ICE lite and remote
/// candidates.
const CHROME_LIKE: &[&str] = &[
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0",
    "a=ice-lite",
    "a=msid-semantic: WMS",
    "m=audio 54400 UDP/TLS/RTP/SAVPF 111 0 126",
    "c=IN IP4 198.51.100.9",
    "a=rtcp:54400 IN IP4 198.51.100.9",
    "a=candidate:3442447574 1 udp 2122260223 198.51.100.9 54400 typ host generation 0",
    "a=remote-candidates:1 192.0.2.3 45664",
    "a=ice-ufrag:Oyef7uvBlwafI3hT",
    "a=ice-pwd:T0teqPLNQQOf+5W+ls+P2p16",
    "a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2",
    "a=setup:actpass",
    "a=mid:0",
    "a=sendrecv",
    "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:126 telephone-event/8000",
];

#[test]
fn chrome_like_offer_with_rtcp_mux() {
    let sdp = parse(&crlf(CHROME_LIKE)).unwrap();
    let media = &sdp.media()[0];
    assert_eq!(media.protocol, "UDP/TLS/RTP/SAVPF");
    assert_eq!(media.address, ip("198.51.100.9"));
    assert_eq!((media.rtcp_port, media.rtcp_mux), (Some(54400), true));
    assert_rewrite(
        &sdp,
        PBX6,
        &[50000],
        &[
            "v=0",
            "o=- 4611731400430051336 2 IN IP6 2001:db8::1",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0",
            "a=msid-semantic: WMS",
            "m=audio 50000 UDP/TLS/RTP/SAVPF 111 0 126",
            "c=IN IP6 2001:db8::1",
            "a=rtcp:50001 IN IP6 2001:db8::1",
            "a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2",
            "a=setup:actpass",
            "a=mid:0",
            "a=sendrecv",
            "a=rtcp-mux",
            "a=rtpmap:111 opus/48000/2",
            "a=rtcp-fb:111 transport-cc",
            "a=fmtp:111 minptime=10;useinbandfec=1",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:126 telephone-event/8000",
        ],
    );
}

const IPV6: &[&str] = &[
    "v=0",
    "o=alice 2890844526 2890844526 IN IP6 2001:db8::10",
    "s=Call",
    "c=IN IP6 2001:DB8::10",
    "t=0 0",
    "m=audio 49170 RTP/AVP 8 0 101",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=ptime:20",
];

#[test]
fn ipv6_offer_rewritten_to_either_family() {
    let sdp = parse(&crlf(IPV6)).unwrap();
    assert_eq!(sdp.media()[0].address, ip("2001:db8::10"));
    let mut expected = IPV6.to_vec();
    expected[1] = "o=alice 2890844526 2890844526 IN IP6 2001:db8::1";
    expected[3] = "c=IN IP6 2001:db8::1";
    expected[5] = "m=audio 40000 RTP/AVP 8 0 101";
    assert_rewrite(&sdp, PBX6, &[40000], &expected);
    expected[1] = "o=alice 2890844526 2890844526 IN IP4 203.0.113.5";
    expected[3] = "c=IN IP4 203.0.113.5";
    assert_rewrite(&sdp, PBX4, &[40000], &expected);
}

#[test]
fn hold_with_sendonly() {
    let mut lines = SIPP.to_vec();
    lines[1] = "o=user1 53655765 2353687638 IN IP4 10.0.0.5";
    lines.push("a=sendonly");
    let sdp = parse(&crlf(&lines)).unwrap();
    assert_eq!(sdp.media()[0].direction, Direction::SendOnly);
    assert_eq!(sdp.media()[0].address, ip("10.0.0.5"));
    let mut expected = lines.clone();
    expected[1] = "o=user1 53655765 2353687638 IN IP4 203.0.113.5";
    expected[3] = "c=IN IP4 203.0.113.5";
    expected[5] = "m=audio 30000 RTP/AVP 0 101";
    assert_rewrite(&sdp, PBX4, &[30000], &expected);
}

#[test]
fn hold_with_unspecified_address_stays_hold() {
    let mut lines = SIPP.to_vec();
    lines[3] = "c=IN IP4 0.0.0.0";
    let sdp = parse(&crlf(&lines)).unwrap();
    assert_eq!(sdp.media()[0].address, None);
    assert_eq!(sdp.media()[0].direction, Direction::SendRecv);
    let mut expected = lines.clone();
    expected[1] = "o=user1 53655765 2353687637 IN IP4 203.0.113.5";
    expected[5] = "m=audio 30000 RTP/AVP 0 101";
    assert_rewrite(&sdp, PBX4, &[30000], &expected);
    expected[1] = "o=user1 53655765 2353687637 IN IP6 2001:db8::1";
    expected[3] = "c=IN IP6 ::";
    assert_rewrite(&sdp, PBX6, &[30000], &expected);

    // RFC 2543 hold in IPv6 maps to 0.0.0.0 toward an IPv4 phone.
    let mut lines = IPV6.to_vec();
    lines[3] = "c=IN IP6 ::";
    let sdp = parse(&crlf(&lines)).unwrap();
    assert_eq!(sdp.media()[0].address, None);
    let out = sdp.rewrite(PBX4, &[30000]).unwrap();
    assert!(out.contains("\r\nc=IN IP4 0.0.0.0\r\n"), "{out}");
}

#[test]
fn direction_media_level_overrides_session_level() {
    let mut lines = SIPP.to_vec();
    lines.insert(5, "a=inactive");
    assert_eq!(
        parse(&crlf(&lines)).unwrap().media()[0].direction,
        Direction::Inactive
    );
    lines.push("a=recvonly");
    assert_eq!(
        parse(&crlf(&lines)).unwrap().media()[0].direction,
        Direction::RecvOnly
    );
    lines.push("a=recvonly");
    assert_eq!(
        parse(&crlf(&lines)).unwrap().media()[0].direction,
        Direction::RecvOnly
    );
    lines.push("a=sendrecv");
    assert_eq!(
        parse(&crlf(&lines)),
        malformed("conflicting direction attributes")
    );
}

const AUDIO_VIDEO: &[&str] = &[
    "v=0",
    "o=bob 2808844564 2808844564 IN IP4 192.0.2.20",
    "s=-",
    "c=IN IP4 192.0.2.20",
    "t=0 0",
    "b=AS:2000",
    "m=audio 49172 RTP/AVP 0 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "m=video 51372/1 RTP/AVP 96",
    "c=IN IP4 192.0.2.21",
    "b=AS:1500",
    "a=rtpmap:96 H264/90000",
    "a=fmtp:96 profile-level-id=42e01f;packetization-mode=1",
    "a=rtcp:51380",
    "a=recvonly",
];

#[test]
fn audio_and_video() {
    let sdp = parse(&crlf(AUDIO_VIDEO)).unwrap();
    let [audio, video] = sdp.media() else {
        panic!("two streams expected: {:?}", sdp.media());
    };
    assert_eq!((audio.kind.as_str(), audio.port), ("audio", 49172));
    assert_eq!(audio.address, ip("192.0.2.20"));
    assert_eq!(
        (audio.rtcp_port, audio.direction),
        (None, Direction::SendRecv)
    );
    assert_eq!((video.kind.as_str(), video.port), ("video", 51372));
    assert_eq!(video.formats, ["96"]);
    assert_eq!(video.address, ip("192.0.2.21"));
    assert_eq!(
        (video.rtcp_port, video.direction),
        (Some(51380), Direction::RecvOnly)
    );

    let mut expected = AUDIO_VIDEO.to_vec();
    expected[1] = "o=bob 2808844564 2808844564 IN IP4 203.0.113.5";
    expected[3] = "c=IN IP4 203.0.113.5";
    expected[6] = "m=audio 40000 RTP/AVP 0 101";
    expected[10] = "m=video 40002/1 RTP/AVP 96";
    expected[11] = "c=IN IP4 203.0.113.5";
    expected[15] = "a=rtcp:40003";
    assert_rewrite(&sdp, PBX4, &[40000, 40002], &expected);

    // Rejecting video: port 0, and no RTCP port derived from it.
    expected[10] = "m=video 0/1 RTP/AVP 96";
    expected.remove(15);
    assert_rewrite(&sdp, PBX4, &[40000, 0], &expected);
}

#[test]
fn rejected_stream_without_address_gets_one_when_given_a_port() {
    let lines = [
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.20",
        "s=-",
        "t=0 0",
        "m=audio 49172 RTP/AVP 0",
        "c=IN IP4 192.0.2.20",
        "m=video 0 RTP/AVP 96",
        "i=camera",
        "a=rtpmap:96 H264/90000",
        "m=text 0 RTP/AVP 98",
    ];
    let sdp = parse(&crlf(&lines)).unwrap();
    assert_eq!(sdp.media()[1].port, 0);
    assert_eq!(sdp.media()[1].address, None);
    assert_rewrite(
        &sdp,
        PBX4,
        &[40000, 40002, 40004],
        &[
            "v=0",
            "o=- 1 1 IN IP4 203.0.113.5",
            "s=-",
            "t=0 0",
            "m=audio 40000 RTP/AVP 0",
            "c=IN IP4 203.0.113.5",
            "m=video 40002 RTP/AVP 96",
            "i=camera",
            "c=IN IP4 203.0.113.5",
            "a=rtpmap:96 H264/90000",
            "m=text 40004 RTP/AVP 98",
            "c=IN IP4 203.0.113.5",
        ],
    );
    let out = sdp.rewrite(PBX4, &[40000, 0, 0]).unwrap();
    assert_eq!(out.matches("c=").count(), 1, "{out}");
}

#[test]
fn all_streams_rejected_still_parses() {
    let mut lines = SIPP.to_vec();
    lines[5] = "m=audio 0 RTP/AVP 0 101";
    lines.remove(3);
    let sdp = parse(&crlf(&lines)).unwrap();
    assert_eq!((sdp.media()[0].port, sdp.media()[0].address), (0, None));
}

/// pjsip with SDES-SRTP.
const SRTP: &[&str] = &[
    "v=0",
    "o=- 3760571389 3760571390 IN IP4 172.16.0.8",
    "s=pjmedia",
    "b=AS:84",
    "t=0 0",
    "a=X-nat:0",
    "m=audio 4000 RTP/SAVP 0 8 101",
    "c=IN IP4 172.16.0.8",
    "b=TIAS:64000",
    "a=rtcp:4001 IN IP4 172.16.0.8",
    "a=sendrecv",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4",
    "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
];

#[test]
fn srtp_offer_keeps_keys() {
    let sdp = parse(&crlf(SRTP)).unwrap();
    let media = &sdp.media()[0];
    assert_eq!(media.protocol, "RTP/SAVP");
    assert!(media.has_crypto);
    assert_eq!(media.rtcp_port, Some(4001));
    let mut expected = SRTP.to_vec();
    expected[1] = "o=- 3760571389 3760571390 IN IP4 203.0.113.5";
    expected[6] = "m=audio 40000 RTP/SAVP 0 8 101";
    expected[7] = "c=IN IP4 203.0.113.5";
    expected[9] = "a=rtcp:40001 IN IP4 203.0.113.5";
    assert_rewrite(&sdp, PBX4, &[40000], &expected);
}

#[test]
fn one_trailing_blank_line_and_a_missing_final_newline_are_accepted() {
    let expected = parse(&crlf(SIPP)).unwrap();
    assert_eq!(parse(&format!("{}\r\n", crlf(SIPP))), Ok(expected.clone()));
    assert_eq!(parse(&format!("{}\n", lf(SIPP))), Ok(expected.clone()));
    assert_eq!(parse(SIPP.join("\r\n").as_str()), Ok(expected));
    assert_eq!(
        parse(&format!("{}\r\n\r\n", crlf(SIPP))),
        malformed("empty line")
    );
}

#[test]
fn rewrite_refuses_wrong_port_count_and_rtcp_overflow() {
    let sdp = parse(&crlf(AUDIO_VIDEO)).unwrap();
    let count = Err(SdpError::Unacceptable("port count does not match m= lines"));
    assert_eq!(sdp.rewrite(PBX4, &[40000]), count);
    assert_eq!(sdp.rewrite(PBX4, &[40000, 40002, 40004]), count);
    assert_eq!(sdp.rewrite(PBX4, &[]), count);
    assert_eq!(
        sdp.rewrite(PBX4, &[40000, 65535]),
        Err(SdpError::Unacceptable("no port above RTP port for RTCP"))
    );
    // Without a=rtcp, the top port is the caller's business.
    assert!(sdp.rewrite(PBX4, &[65535, 40002]).is_ok());
}

#[test]
fn status_codes() {
    assert_eq!(SdpError::Malformed("x").sip_status(), 400);
    assert_eq!(SdpError::Unacceptable("x").sip_status(), 488);
    assert_eq!(
        SdpError::Unacceptable("no media").to_string(),
        "unacceptable SDP: no media"
    );
}

/// SIPP with line `index` replaced (or removed when `with` is None).
fn sipp_with(index: usize, with: Option<&str>) -> String {
    let mut lines = SIPP.to_vec();
    match with {
        Some(line) => lines[index] = line,
        None => {
            lines.remove(index);
        }
    }
    crlf(&lines)
}

#[test]
fn refuses_oversized_and_binary_bodies() {
    let mut big = crlf(SIPP);
    while big.len() <= MAX_SDP_BYTES {
        big.push_str("a=x-padding:0123456789abcdef0123456789abcdef\r\n");
    }
    assert_eq!(parse(&big), malformed("body too large"));
    big.truncate(MAX_SDP_BYTES - 1);
    big.truncate(big.rfind('\n').unwrap() + 1);
    assert!(parse(&big).is_ok());

    let mut binary = crlf(SIPP).into_bytes();
    binary.extend_from_slice(&[0xff, 0xfe, 0x00, 0x80]);
    assert_eq!(Sdp::parse(&binary), malformed("not UTF-8"));
    assert_eq!(
        Sdp::parse(b"v=0\r\n\x00\x01\x02"),
        malformed("control character in line")
    );
    assert_eq!(Sdp::parse(b""), malformed("empty body"));
    assert_eq!(
        parse(&sipp_with(6, Some(&format!("a={}", "x".repeat(1023))))),
        malformed("line too long")
    );
    assert!(parse(&sipp_with(6, Some(&format!("a={}", "x".repeat(1022))))).is_ok());
}

#[test]
fn refuses_bad_structure() {
    assert_eq!(
        parse(&sipp_with(0, None)),
        malformed("does not start with v=0")
    );
    assert_eq!(
        parse(&sipp_with(0, Some("v=1"))),
        malformed("does not start with v=0")
    );
    assert_eq!(parse(&sipp_with(1, None)), malformed("missing o= line"));
    assert_eq!(parse(&sipp_with(2, None)), malformed("missing s= line"));
    assert_eq!(
        parse(&sipp_with(2, Some("o=- 1 1 IN IP4 10.0.0.5"))),
        malformed("more than one o= line")
    );
    assert_eq!(
        parse(&sipp_with(2, Some("s=x\r\ns=y"))),
        malformed("more than one s= line")
    );
    assert_eq!(parse(&sipp_with(4, Some("v=0"))), malformed("v= not first"));
    assert_eq!(
        parse(&sipp_with(1, Some("o=- 1 IN IP4 10.0.0.5"))),
        malformed("o= line needs 6 fields")
    );
    assert_eq!(
        parse(&sipp_with(4, Some("t=0 0\r\n\r\nx=1"))),
        malformed("empty line")
    );
    assert_eq!(
        parse(&sipp_with(4, Some("t=0 0\n\na=x"))),
        malformed("empty line")
    );
    assert_eq!(
        parse(&sipp_with(4, Some("x=1"))),
        malformed("unknown line type")
    );
    assert_eq!(
        parse(&sipp_with(4, Some("T=0 0"))),
        malformed("line is not <letter>=<value>")
    );
    assert_eq!(
        parse(&sipp_with(4, Some("t 0 0"))),
        malformed("line is not <letter>=<value>")
    );
    assert_eq!(
        parse(&sipp_with(4, Some(" t=0 0"))),
        malformed("line is not <letter>=<value>")
    );
    assert_eq!(
        parse(&sipp_with(8, Some("t=0 0"))),
        malformed("session-level line after m=")
    );
    assert_eq!(
        parse(&sipp_with(8, Some("o=- 1 1 IN IP4 10.0.0.5"))),
        malformed("session-level line after m=")
    );
    // A bare CR inside a line would split it at the far end: refused, not copied through.
    assert_eq!(
        parse(&sipp_with(8, Some("a=fmtp:101 0-15\rc=IN IP4 192.0.2.66"))),
        malformed("control character in line")
    );
}

#[test]
fn refuses_bad_connection_lines() {
    let hostname = unacceptable("connection address must be an IP");
    assert_eq!(
        parse(&sipp_with(3, Some("c=IN IP4 phone.example.com"))),
        hostname
    );
    assert_eq!(
        parse(&sipp_with(3, Some("c=IN IP6 phone.example.com"))),
        hostname
    );
    for garbage in [
        "c=",
        "c=IN",
        "c=IN IP4",
        "c=IN IP4 10.0.0.5 extra",
        "c=IN IP4 10.0.0",
        "c=IN IP4 10.0.0.5.6",
        "c=IN IP4 $$$",
        "c=IN IP4 ::1",
        "c=IN IP6 10.0.0.5",
        "c=IN IP6 fe80::1%eth0",
        "c=IN IP4 10.0.0.5/127",
        "c=IN IP4 224.2.1.1/ttl",
    ] {
        assert_eq!(
            parse(&sipp_with(3, Some(garbage)))
                .map(|_| ())
                .unwrap_err()
                .sip_status(),
            400,
            "{garbage}"
        );
    }
    assert_eq!(
        parse(&sipp_with(3, Some("c=IN IP4 10.0.0"))),
        malformed("bad connection address")
    );
    assert_eq!(
        parse(&sipp_with(3, Some("c=IN IP4 ::1"))),
        malformed("address does not match address type")
    );
    let multicast = unacceptable("multicast is not supported");
    assert_eq!(
        parse(&sipp_with(3, Some("c=IN IP4 224.2.1.1/127"))),
        multicast
    );
    assert_eq!(
        parse(&sipp_with(3, Some("c=IN IP4 224.2.1.1/127/3"))),
        multicast
    );
    assert_eq!(
        parse(&sipp_with(3, Some("c=IN IP6 ff15::101/3"))),
        multicast
    );
    assert_eq!(
        parse(&sipp_with(3, Some("c=ATM NSAP 47.0091.8100"))),
        unacceptable("network type must be IN")
    );
    assert_eq!(
        parse(&sipp_with(3, Some("c=IN IPX 10.0.0.5"))),
        unacceptable("address type must be IP4 or IP6")
    );
    assert_eq!(
        parse(&sipp_with(
            3,
            Some("c=IN IP4 10.0.0.5\r\nc=IN IP4 10.0.0.6")
        )),
        unacceptable("more than one connection address")
    );
}

#[test]
fn refuses_bad_media_lines() {
    for (line, expected) in [
        ("m=audio 70000 RTP/AVP 0", malformed("bad m= port")),
        ("m=audio abc RTP/AVP 0", malformed("bad m= port")),
        ("m=audio +6000 RTP/AVP 0", malformed("bad m= port")),
        ("m=audio -1 RTP/AVP 0", malformed("bad m= port")),
        ("m=audio  6000 RTP/AVP 0", malformed("bad m= port")),
        ("m=audio 6000/x RTP/AVP 0", malformed("bad m= port count")),
        (
            "m=audio 6000/2 RTP/AVP 0",
            unacceptable("m= port count other than 1"),
        ),
        ("m=audio 6000 RTP/AVP", malformed("m= line without formats")),
        (
            "m=audio 6000 RTP/AVP ",
            malformed("m= line without formats"),
        ),
        ("m=audio 6000", malformed("bad m= line")),
        ("m=", malformed("bad m= line")),
    ] {
        assert_eq!(parse(&sipp_with(5, Some(line))), expected, "{line}");
    }
}

#[test]
fn refuses_media_counts_and_missing_addresses() {
    let mut lines = SIPP.to_vec();
    lines.truncate(5);
    assert_eq!(parse(&crlf(&lines)), unacceptable("no media"));
    let many: Vec<&str> = [&lines[..], &["m=audio 6000 RTP/AVP 0"; MAX_MEDIA]].concat();
    assert_eq!(parse(&crlf(&many)).unwrap().media().len(), MAX_MEDIA);
    let too_many: Vec<&str> = [&many[..], &["m=audio 6000 RTP/AVP 0"]].concat();
    assert_eq!(
        parse(&crlf(&too_many)),
        unacceptable("too many media streams")
    );

    assert_eq!(
        parse(&sipp_with(3, None)),
        malformed("media without connection address")
    );
    // The second stream lacks c= while only the first has one.
    let lines = [
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.20",
        "s=-",
        "t=0 0",
        "m=audio 49172 RTP/AVP 0",
        "c=IN IP4 192.0.2.20",
        "m=video 49174 RTP/AVP 96",
    ];
    assert_eq!(
        parse(&crlf(&lines)),
        malformed("media without connection address")
    );
}

#[test]
fn refuses_bad_rtcp_attributes() {
    for (line, expected) in [
        ("a=rtcp:", malformed("bad a=rtcp")),
        ("a=rtcp", malformed("bad a=rtcp")),
        ("a=rtcp:abc", malformed("bad a=rtcp port")),
        ("a=rtcp:0", malformed("bad a=rtcp port")),
        ("a=rtcp:65536", malformed("bad a=rtcp port")),
        ("a=rtcp:6001 IN IP4", malformed("bad a=rtcp")),
        ("a=rtcp:6001 IN IP4 10.0.0.5 x", malformed("bad a=rtcp")),
        (
            "a=rtcp:6001 IN IP4 garbage!",
            malformed("bad connection address"),
        ),
        (
            "a=rtcp:6001 IN IP4 rtcp.example.com",
            unacceptable("connection address must be an IP"),
        ),
        (
            "a=rtcp:6001\r\na=rtcp:6003",
            malformed("more than one a=rtcp"),
        ),
    ] {
        assert_eq!(parse(&sipp_with(8, Some(line))), expected, "{line}");
    }
    assert_eq!(
        parse(&sipp_with(4, Some("a=rtcp:6001"))),
        malformed("a=rtcp at session level")
    );
    // Its unspecified address survives the rewrite as such.
    let sdp = parse(&sipp_with(8, Some("a=rtcp:9 IN IP4 0.0.0.0"))).unwrap();
    assert_eq!(sdp.media()[0].rtcp_port, Some(9));
    let out = sdp.rewrite(PBX4, &[30000]).unwrap();
    assert!(
        out.ends_with("\r\na=rtcp:30001 IN IP4 0.0.0.0\r\n"),
        "{out}"
    );
}

const SAMPLES: &[&[&str]] = &[
    BARESIP,
    SIPP,
    LINPHONE_ICE,
    CHROME_LIKE,
    IPV6,
    AUDIO_VIDEO,
    SRTP,
];

/// Parses, and when that works, rewrites and parses the result: none of it may panic.
fn exercise(body: &[u8]) {
    let Ok(sdp) = Sdp::parse(body) else {
        return;
    };
    assert!((1..=MAX_MEDIA).contains(&sdp.media().len()));
    let ports: Vec<u16> = (0..sdp.media().len())
        .map(|i| 40000 + 2 * i as u16)
        .collect();
    for addr in [PBX4, PBX6] {
        if let Ok(out) = sdp.rewrite(addr, &ports) {
            let _ = Sdp::parse(out.as_bytes());
        }
    }
}

#[test]
fn never_panics_on_truncation() {
    for sample in SAMPLES {
        let body = crlf(sample).into_bytes();
        for end in 0..=body.len() {
            exercise(&body[..end]);
            exercise(&body[end..]);
        }
    }
}

#[test]
fn never_panics_on_mutation() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // Bytes that hit the parser's decisions more often than uniform noise would.
    const INTERESTING: &[u8] = b"\r\n =:/0123456789.amcvo\x00\xff";
    let samples: Vec<Vec<u8>> = SAMPLES.iter().map(|s| crlf(s).into_bytes()).collect();
    let mut parsed = 0;
    for _ in 0..5000 {
        let mut body = samples[next() as usize % samples.len()].clone();
        for _ in 0..1 + next() % 6 {
            let at = next() as usize % body.len().max(1);
            let byte = if next() % 2 == 0 {
                INTERESTING[next() as usize % INTERESTING.len()]
            } else {
                next() as u8
            };
            match next() % 4 {
                0 if !body.is_empty() => body[at] = byte,
                1 if !body.is_empty() => {
                    body.remove(at);
                }
                2 => body.insert(at.min(body.len()), byte),
                _ => {
                    let end = (at + next() as usize % 64).min(body.len());
                    let chunk = body[at.min(end)..end].to_vec();
                    body.splice(at.min(body.len())..at.min(body.len()), chunk);
                }
            }
        }
        parsed += usize::from(Sdp::parse(&body).is_ok());
        exercise(&body);
    }
    // Mutations must leave some bodies valid, or the rewrite path went unexercised.
    assert!(parsed > 100, "only {parsed} mutated bodies parsed");
}

// `answer`: an answer to one phone's offer made from another phone's offer (call pickup).

/// A G.711 caller, µ-law first, as it rings the pickup group.
const CALLER: &[&str] = &[
    "v=0",
    "o=caller 1000 1 IN IP4 192.0.2.10",
    "s=-",
    "c=IN IP4 192.0.2.10",
    "t=0 0",
    "m=audio 20000 RTP/AVP 0 8 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=sendrecv",
];

/// The phone picking the call up, A-law first, in its own INVITE.
const PICKER: &[&str] = &[
    "v=0",
    "o=picker 2000 7 IN IP4 192.0.2.20",
    "s=Picker",
    "c=IN IP4 192.0.2.20",
    "t=0 0",
    "m=audio 30000 RTP/AVP 8 0 101",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=ptime:30",
];

fn answer_of(offer: &[&str], from: &[&str]) -> Result<Sdp, SdpError> {
    answer(&parse(&crlf(offer)).unwrap(), &parse(&crlf(from)).unwrap())
}

/// Checks the answer is exactly `expected` (as parsed), and that it goes through `rewrite` with
/// the relay's address to a body that parses again with the same streams.
fn assert_answer(offer: &[&str], from: &[&str], expected: &[&str]) -> Sdp {
    let answered = answer_of(offer, from).unwrap();
    assert_eq!(answered, parse(&crlf(expected)).unwrap());
    assert_eq!(
        answered.media().len(),
        parse(&crlf(offer)).unwrap().media().len()
    );
    let ports: Vec<u16> = answered
        .media()
        .iter()
        .enumerate()
        .map(|(i, m)| if m.port == 0 { 0 } else { 40000 + 2 * i as u16 })
        .collect();
    let out = answered.rewrite(PBX4, &ports).unwrap();
    let again = parse(&out).unwrap();
    for (before, after) in answered.media().iter().zip(again.media()) {
        assert_eq!(after.formats, before.formats);
        assert_eq!(after.direction, before.direction);
    }
    answered
}

/// A one-stream description at 192.0.2.30 with this m= line and these attributes after it.
fn offer_with(m: &str, attributes: &[&str]) -> Vec<String> {
    [
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.30",
        "s=-",
        "c=IN IP4 192.0.2.30",
        "t=0 0",
        m,
    ]
    .iter()
    .chain(attributes)
    .map(|line| (*line).to_owned())
    .collect()
}

fn strs(lines: &[String]) -> Vec<&str> {
    lines.iter().map(String::as_str).collect()
}

fn formats_answered(offer: &[String], from: &[String]) -> Result<Vec<String>, SdpError> {
    answer_of(&strs(offer), &strs(from)).map(|sdp| sdp.media()[0].formats.clone())
}

#[test]
fn answer_keeps_offers_order_and_telephone_event() {
    assert_answer(
        CALLER,
        PICKER,
        &[
            "v=0",
            "o=picker 2000 7 IN IP4 192.0.2.20",
            "s=Picker",
            "c=IN IP4 192.0.2.20",
            "t=0 0",
            "m=audio 30000 RTP/AVP 0 8 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
            "a=ptime:30",
            "a=sendrecv",
        ],
    );
    // The other way round, the picker hears the same codecs in its own order.
    assert_answer(
        PICKER,
        CALLER,
        &[
            "v=0",
            "o=caller 1000 1 IN IP4 192.0.2.10",
            "s=-",
            "c=IN IP4 192.0.2.10",
            "t=0 0",
            "m=audio 20000 RTP/AVP 8 0 101",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-15",
            "a=ptime:20",
            "a=sendrecv",
        ],
    );
}

#[test]
fn answer_has_froms_origin_and_the_rewrite_puts_the_relay_in() {
    let answered = answer_of(CALLER, PICKER).unwrap();
    let out = answered.rewrite(PBX4, &[40000]).unwrap();
    assert!(
        out.starts_with("v=0\r\no=picker 2000 7 IN IP4 203.0.113.5\r\ns=Picker\r\n"),
        "{out}"
    );
    assert!(out.contains("\r\nc=IN IP4 203.0.113.5\r\n"), "{out}");
    assert!(
        out.contains("\r\nm=audio 40000 RTP/AVP 0 8 101\r\n"),
        "{out}"
    );
    assert!(!out.contains("192.0.2."), "{out}");
    let out = answered.rewrite(PBX6, &[40000]).unwrap();
    assert!(out.contains("\r\nc=IN IP6 2001:db8::1\r\n"), "{out}");
    assert_eq!(
        answered.rewrite(PBX4, &[40000, 40002]),
        Err(SdpError::Unacceptable("port count does not match m= lines"))
    );
}

#[test]
fn answer_matches_dynamic_types_only_by_the_same_number_and_meaning() {
    let offer = offer_with(
        "m=audio 20000 RTP/AVP 0 8 101",
        &["a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16"],
    );
    let answered = |m: &str, attributes: &[&str]| {
        formats_answered(&offer, &offer_with(m, attributes)).unwrap()
    };
    // The same event, numbered differently: the relay cannot renumber, so it is left out.
    let from = ["a=rtpmap:96 telephone-event/8000", "a=fmtp:96 0-15"];
    assert_eq!(answered("m=audio 30000 RTP/AVP 8 0 96", &from), ["0", "8"]);
    let answered_text = answer_of(
        &strs(&offer),
        &strs(&offer_with("m=audio 30000 RTP/AVP 8 0 96", &from)),
    )
    .unwrap();
    assert!(
        answered_text
            .lines
            .iter()
            .all(|line| !line.value.contains("101"))
    );
    // The same number meaning something else, or nothing known.
    for attributes in [
        &["a=rtpmap:101 telephone-event/16000"][..],
        &["a=rtpmap:101 CN/8000"],
        &["a=rtpmap:101 telephone-event/8000/2"],
        &["a=rtpmap:101 telephone-event"],
        &["a=rtpmap:101 telephone-event/x"],
        &["a=rtpmap:101"],
        &[],
    ] {
        assert_eq!(
            answered("m=audio 30000 RTP/AVP 0 101", attributes),
            ["0"],
            "{attributes:?}"
        );
    }
    // The same meaning, in any case, with the channel count written out.
    for attributes in [
        &["a=rtpmap:101 TELEPHONE-EVENT/8000"][..],
        &["a=RTPMAP:101 telephone-event/8000/1"],
        &["a=rtpmap:96 PCMU/8000", "a=rtpmap:101 telephone-event/8000"],
    ] {
        assert_eq!(
            answered("m=audio 30000 RTP/AVP 96 0 101", attributes),
            ["0", "101"],
            "{attributes:?}"
        );
    }
    // The offer's own map must say it too.
    let bare = offer_with("m=audio 20000 RTP/AVP 0 101", &[]);
    assert_eq!(
        formats_answered(
            &bare,
            &offer_with(
                "m=audio 30000 RTP/AVP 0 101",
                &["a=rtpmap:101 telephone-event/8000"]
            )
        ),
        Ok(vec!["0".to_owned()])
    );
    // Static types match by number alone; repeats count once; the offer's text is kept.
    assert_eq!(
        formats_answered(
            &offer_with("m=audio 20000 RTP/AVP 18 0 18 009", &[]),
            &offer_with("m=audio 30000 RTP/AVP 9 0 18", &[]),
        ),
        Ok(vec!["18".to_owned(), "0".to_owned(), "009".to_owned()])
    );
}

#[test]
fn answer_without_a_common_codec_is_refused() {
    let none = unacceptable("no common codec");
    assert_eq!(
        answer_of(
            &strs(&offer_with("m=audio 20000 RTP/AVP 0 101", &[])),
            &strs(&offer_with("m=audio 30000 RTP/AVP 8 9", &[]))
        ),
        none
    );
    assert_eq!(
        answer_of(
            &strs(&offer_with("m=audio 20000 RTP/AVP 0", &[])),
            &strs(&offer_with("m=audio 0 RTP/AVP 0", &[]))
        ),
        none
    );
    assert_eq!(
        answer_of(
            &strs(&offer_with("m=audio 20000 RTP/AVP 0", &[])),
            &strs(&offer_with("m=video 30000 RTP/AVP 0", &[]))
        ),
        none
    );
    assert_eq!(
        answer_of(
            &strs(&offer_with("m=image 20000 udptl t38", &[])),
            &strs(&offer_with("m=image 30000 udptl t38", &[]))
        ),
        none
    );
    assert_eq!(
        answer_of(
            &strs(&offer_with("m=audio 20000 TCP/RTP/AVP 0", &[])),
            &strs(&offer_with("m=audio 30000 TCP/RTP/AVP 0", &[]))
        ),
        none
    );
    let sipp = parse(&crlf(SIPP)).unwrap();
    assert_eq!(answer(&sipp, &Sdp::none()), none);
    assert_eq!(answer(&Sdp::none(), &sipp), unacceptable("no media"));
}

#[test]
fn answer_rejects_streams_from_cannot_take_with_one_format() {
    let answered = assert_answer(
        AUDIO_VIDEO,
        SIPP,
        &[
            "v=0",
            "o=user1 53655765 2353687637 IN IP4 10.0.0.5",
            "s=-",
            "c=IN IP4 10.0.0.5",
            "t=0 0",
            "m=audio 6000 RTP/AVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-15",
            "a=sendrecv",
            "m=video 0 RTP/AVP 96",
            "a=inactive",
        ],
    );
    let out = answered.rewrite(PBX4, &[40000, 0]).unwrap();
    assert!(
        out.ends_with("\r\nm=video 0 RTP/AVP 96\r\na=inactive\r\n"),
        "{out}"
    );
    assert_eq!(out.matches("c=").count(), 1, "{out}");

    // From rejected video itself, or has text where the offer has video.
    for video in ["m=video 0 RTP/AVP 96", "m=text 5000 RTP/AVP 96"] {
        let mut from = AUDIO_VIDEO.to_vec();
        from[10] = video;
        let answered = answer_of(AUDIO_VIDEO, &from).unwrap();
        assert_eq!(answered.media()[0].formats, ["0", "101"]);
        assert_eq!(
            (answered.media()[1].port, &answered.media()[1].formats[..]),
            (0, &["96".to_owned()][..]),
            "{video}"
        );
    }

    // An offered stream at port 0 stays rejected, and keeps its first format only.
    let mut offer = AUDIO_VIDEO.to_vec();
    offer[10] = "m=video 0 RTP/AVP 96 97";
    let mut from = AUDIO_VIDEO.to_vec();
    from[10] = "m=video 51372 RTP/AVP 96 97";
    let answered = answer_of(&offer, &from).unwrap();
    assert_eq!(
        (answered.media()[1].port, &answered.media()[1].formats[..]),
        (0, &["96".to_owned()][..])
    );

    // Both sides with video: accepted, with from's media-level c= and the offer's fmtp.
    let answered = answer_of(AUDIO_VIDEO, AUDIO_VIDEO).unwrap();
    let video = &answered.media()[1];
    assert_eq!((video.port, video.address), (51372, ip("192.0.2.21")));
    assert_eq!(video.formats, ["96"]);
    // Both only receive video, so nobody sends it.
    assert_eq!(video.direction, Direction::Inactive);
}

#[test]
fn answer_direction_follows_rfc_3264() {
    use Direction::*;
    // (offer, from) -> answer
    let table = [
        (SendRecv, SendRecv, SendRecv),
        (SendRecv, SendOnly, SendOnly),
        (SendRecv, RecvOnly, RecvOnly),
        (SendRecv, Inactive, Inactive),
        (SendOnly, SendRecv, RecvOnly),
        (SendOnly, SendOnly, Inactive),
        (SendOnly, RecvOnly, RecvOnly),
        (SendOnly, Inactive, Inactive),
        (RecvOnly, SendRecv, SendOnly),
        (RecvOnly, SendOnly, SendOnly),
        (RecvOnly, RecvOnly, Inactive),
        (RecvOnly, Inactive, Inactive),
        (Inactive, SendRecv, Inactive),
        (Inactive, SendOnly, Inactive),
        (Inactive, RecvOnly, Inactive),
        (Inactive, Inactive, Inactive),
    ];
    for (offered, from, expected) in table {
        let offer = offer_with(
            "m=audio 20000 RTP/AVP 0",
            &[format!("a={}", offered.attribute()).as_str()],
        );
        let from_lines = offer_with(
            "m=audio 30000 RTP/AVP 0",
            &[format!("a={}", from.attribute()).as_str()],
        );
        let answered = answer_of(&strs(&offer), &strs(&from_lines)).unwrap();
        assert_eq!(
            answered.media()[0].direction,
            expected,
            "{offered:?} {from:?}"
        );
        // Written out even when it is the default.
        let attribute = format!("a={}", expected.attribute());
        assert!(
            answered
                .lines
                .iter()
                .any(|line| format!("{}={}", line.letter, line.value) == attribute)
        );
    }
    // A session-level direction counts as the stream's.
    let mut offer = SIPP.to_vec();
    offer.insert(5, "a=sendonly");
    let answered = answer_of(&offer, PICKER).unwrap();
    assert_eq!(answered.media()[0].direction, RecvOnly);
}

#[test]
fn answer_refuses_keys() {
    let keys = unacceptable("the PBX does not negotiate SRTP keys");
    assert_eq!(answer_of(SRTP, SIPP), keys);
    assert_eq!(answer_of(SIPP, SRTP), keys);
    assert_eq!(answer_of(CHROME_LIKE, BARESIP), keys);
    assert_eq!(answer_of(BARESIP, CHROME_LIKE), keys);
    // SDES keys offered over plain RTP, or a secure profile without keys, even on a second stream.
    let mut keyed = SIPP.to_vec();
    keyed
        .push("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz");
    assert_eq!(answer_of(&keyed, SIPP), keys);
    assert_eq!(answer_of(SIPP, &keyed), keys);
    let mut secure = SIPP.to_vec();
    secure.push("m=video 6002 rtp/savpf 96");
    assert_eq!(answer_of(SIPP, &secure), keys);
    secure[9] = "m=application 9 UDP/DTLS/SCTP webrtc-datachannel";
    assert_eq!(answer_of(&secure, SIPP), keys);
}

#[test]
fn answer_keeps_hold_and_rtcp_mux_only_when_both_have_it() {
    let mut held = PICKER.to_vec();
    held[3] = "c=IN IP4 0.0.0.0";
    let answered = answer_of(CALLER, &held).unwrap();
    assert_eq!(answered.media()[0].address, None);
    let out = answered.rewrite(PBX4, &[40000]).unwrap();
    assert!(out.contains("\r\nc=IN IP4 0.0.0.0\r\n"), "{out}");
    assert!(
        out.contains("\r\no=picker 2000 7 IN IP4 203.0.113.5\r\n"),
        "{out}"
    );

    // Media-level hold too.
    let held = offer_with(
        "m=audio 30000 RTP/AVP 0",
        &["c=IN IP4 0.0.0.0", "a=sendonly"],
    );
    let answered = answer_of(CALLER, &strs(&held)).unwrap();
    assert_eq!(answered.media()[0].address, None);
    assert_eq!(answered.media()[0].direction, Direction::SendOnly);

    assert!(answer_of(BARESIP, BARESIP).unwrap().media()[0].rtcp_mux);
    assert!(!answer_of(BARESIP, SIPP).unwrap().media()[0].rtcp_mux);
    assert!(!answer_of(SIPP, BARESIP).unwrap().media()[0].rtcp_mux);
}

#[test]
fn answer_between_baresip_and_sipp() {
    assert_answer(
        BARESIP,
        SIPP,
        &[
            "v=0",
            "o=user1 53655765 2353687637 IN IP4 10.0.0.5",
            "s=-",
            "c=IN IP4 10.0.0.5",
            "t=0 0",
            "m=audio 6000 RTP/AVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-15",
            "a=sendrecv",
        ],
    );
    assert_answer(
        SIPP,
        BARESIP,
        &[
            "v=0",
            "o=- 1311128013 2006566427 IN IP4 192.168.1.20",
            "s=-",
            "c=IN IP4 192.168.1.20",
            "t=0 0",
            "m=audio 10000 RTP/AVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-11,16",
            "a=ptime:20",
            "a=sendrecv",
        ],
    );
    // Opus survives where both map 96 to it; Linphone's ICE, a=rtcp and extras do not carry over.
    assert_answer(
        LINPHONE_ICE,
        BARESIP,
        &[
            "v=0",
            "o=- 1311128013 2006566427 IN IP4 192.168.1.20",
            "s=-",
            "c=IN IP4 192.168.1.20",
            "t=0 0",
            "m=audio 10000 RTP/AVP 96 0 8 101",
            "a=rtpmap:96 opus/48000/2",
            "a=fmtp:96 useinbandfec=1",
            "a=rtpmap:101 telephone-event/8000",
            "a=ptime:20",
            "a=sendrecv",
        ],
    );
}

#[test]
fn answer_that_would_break_a_bound_is_unacceptable() {
    // A kind so long that from's five-digit port with the offer's longer protocol pushes the m=
    // line past MAX_LINE_BYTES, while both offers are within it.
    let kind = "x".repeat(MAX_LINE_BYTES - "m= 65535 RTP/AVP 0".len());
    let offer = offer_with(&format!("m={kind} 1 RTP/AVPF 0"), &[]);
    let from = offer_with(&format!("m={kind} 65535 RTP/AVP 0"), &[]);
    assert_eq!(
        answer_of(&strs(&offer), &strs(&from)).map(|_| ()),
        Err(SdpError::Unacceptable("answer would not be valid SDP"))
    );
}

#[test]
fn answer_never_panics_on_mutation() {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const INTERESTING: &[u8] = b"\r\n =:/0123456789amcv";
    let mut samples: Vec<&[&str]> = SAMPLES.to_vec();
    samples.extend([CALLER, PICKER]);
    let parsed: Vec<Sdp> = samples.iter().map(|s| parse(&crlf(s)).unwrap()).collect();
    let mut answered = 0;
    for _ in 0..3000 {
        let mut body = crlf(samples[next() as usize % samples.len()]).into_bytes();
        for _ in 0..1 + next() % 4 {
            let at = next() as usize % body.len();
            let byte = INTERESTING[next() as usize % INTERESTING.len()];
            match next() % 3 {
                0 => body[at] = byte,
                1 => {
                    body.remove(at);
                }
                _ => body.insert(at, byte),
            }
        }
        let Ok(mutated) = Sdp::parse(&body) else {
            continue;
        };
        for other in &parsed {
            for (offer, from) in [(&mutated, other), (other, &mutated)] {
                let Ok(sdp) = answer(offer, from) else {
                    continue;
                };
                answered += 1;
                assert_eq!(sdp.media().len(), offer.media().len());
                let ports: Vec<u16> = sdp.media().iter().map(|m| m.port).collect();
                let out = sdp.rewrite(PBX4, &ports).unwrap();
                assert!(parse(&out).is_ok(), "{out}");
            }
        }
    }
    assert!(answered > 1000, "only {answered} answers made");
}
