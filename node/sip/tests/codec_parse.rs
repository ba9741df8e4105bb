//! The codec against messages as phones send them, and against broken ones: each refusal has a
//! specific error and, where the request can be answered, a correct 400 (or 416/501/505/513).

use pbx_sip::codec::{
    self, CodecError, MAX_HEADERS, MAX_MESSAGE_LEN, Message, bad_request, can_answer, normalize,
    parse, reject, serialize,
};
use pbx_sip::rsip::{self, Method, SipMessage};

/// Sets the Content-Length placeholder `{len}` to the body's length and turns `\n` into CRLF
/// (head and body) unless `lf_only`.
fn wire(text: &str, lf_only: bool) -> Vec<u8> {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let eol = if lf_only { "\n" } else { "\r\n" };
    let body = body.replace('\n', eol);
    let head = head.replace("{len}", &body.len().to_string());
    let mut out = head.replace('\n', eol);
    out.push_str(eol);
    out.push_str(eol);
    out.push_str(&body);
    out.into_bytes()
}

const YEALINK_REGISTER: &str = "REGISTER sip:pbx.example.com SIP/2.0
Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK1449733357;rport
From: \"Alice Smith\" <sip:1001@pbx.example.com>;tag=2087186486
To: \"Alice Smith\" <sip:1001@pbx.example.com>
Call-ID: 1826535823@192.168.1.50
CSeq: 2 REGISTER
Contact: <sip:1001@192.168.1.50:5060>;reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-001565A1B2C3>\"
Authorization: Digest username=\"1001\", realm=\"pbx.example.com\", nonce=\"AAABjWQxKzQBAgMEBQYHCAlM4hJ5C1yKJYxg0bvtDzk\", uri=\"sip:pbx.example.com\", response=\"0ee8ec9a1bc6a8ec1d5a2b35d08f3a4f\", algorithm=MD5, cnonce=\"0a4f113b\", qop=auth, nc=00000001
X-Grandstream-PBX: true
Max-Forwards: 70
User-Agent: Yealink SIP-T46S 66.86.0.15
Expires: 3600
Allow: INVITE, INFO, PRACK, ACK, BYE, CANCEL, OPTIONS, NOTIFY, REGISTER, SUBSCRIBE, REFER, PUBLISH, UPDATE, MESSAGE
Content-Length: {len}";

const POLYCOM_INVITE: &str = "INVITE sip:1002@pbx.example.com;user=phone SIP/2.0
Via: SIP/2.0/UDP 10.0.0.21:5060;branch=z9hG4bK7fe1f4b3BB2C5A63
From: \"Doe, John (Sales)\" <sip:1003@pbx.example.com>;tag=8C3A2C8E-1E7CB2D4
To: <sip:1002@pbx.example.com;user=phone>
CSeq: 1 INVITE
Call-ID: 3b3d3ff3-7b2e4e1c-f8b0ae1d@10.0.0.21
Contact: <sip:1003@10.0.0.21>
Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, MESSAGE, SUBSCRIBE, NOTIFY, PRACK, UPDATE, REFER
User-Agent: PolycomVVX-VVX_411-UA/6.3.1.8427
Accept-Language: en
Supported: 100rel,replaces
Allow-Events: conference,talk,hold
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: {len}

v=0
o=- 1612345678 1612345678 IN IP4 10.0.0.21
s=Polycom IP Phone
c=IN IP4 10.0.0.21
t=0 0
m=audio 2222 RTP/AVP 9 0 8 18 101
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:101 telephone-event/8000
a=sendrecv
";

const LINPHONE_REGISTER_V6: &str = "REGISTER sip:[2001:db8::10] SIP/2.0
Via: SIP/2.0/TCP [2001:db8::1234]:43821;alias;branch=z9hG4bK.Xb3cyS9Bd;rport
From: <sip:1004@[2001:db8::10]>;tag=gy~2yVd~X
To: sip:1004@[2001:db8::10]
CSeq: 20 REGISTER
Call-ID: 5Ha0bxRgD6
Max-Forwards: 70
Supported: replaces, outbound, gruu
Accept: application/sdp
Accept: text/plain
Contact: <sip:1004@[2001:db8::1234]:43821;transport=tcp>;+sip.instance=\"<urn:uuid:4a0a7bd5-0c47-0084-a16b-5b1c4a2b4a26>\";+org.linphone.specs=\"lime\"
Expires: 600
User-Agent: Linphone Desktop/4.4.10 (Ubuntu 22.04) LinphoneCore/5.1.0
Content-Length: 0";

const COMPACT_OPTIONS: &str = "OPTIONS sip:pbx.example.com SIP/2.0
v: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK8a4f;rport
F: <sip:1005@pbx.example.com>;tag=4a1c
t: <sip:pbx.example.com>
i: 1c9a6d4e8bb5a9e1@192.0.2.7
CSeq: 7 OPTIONS
m: <sip:1005@192.0.2.7:5060>
k: path, gruu
l: 0
User-Agent: baresip v3.10.0 (x86_64/linux)";

/// Two Vias in two lines, folded headers, odd spacing around colons, tabs.
const PROXIED_FOLDED_INVITE: &str = "INVITE   sip:1002@pbx.example.com   SIP/2.0
Via  :  SIP/2.0/UDP proxy.example.net:5060;branch=z9hG4bKnashds8
Via:\tSIP / 2.0 / UDP 10.1.1.1:5060;branch=z9hG4bK776asdhds ;received=203.0.113.9
Max-Forwards :69
To: Bob <sip:1002@pbx.example.com>
From: \"Alice \\\"The Boss\\\" <Admin>\" <sip:alice@example.net>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.example.net
CSeq: 314159 INVITE
Subject: a very
  long subject
\tfolded twice
Contact:
 <sip:alice@pc33.example.net>
Content-Type: application/sdp
Content-Length: {len}

v=0
o=alice 2890844526 2890844526 IN IP4 pc33.example.net
s=-
c=IN IP4 192.0.2.101
t=0 0
m=audio 49172 RTP/AVP 0
a=rtpmap:0 PCMU/8000
";

/// Several Vias on one line, as some proxies send them.
const VIA_LIST_BYE: &str = "BYE sip:1003@10.0.0.21 SIP/2.0
Via: SIP/2.0/TLS edge.example.net:5061;branch=z9hG4bKedge1, SIP/2.0/UDP 10.2.2.2;branch=z9hG4bKinner
Max-Forwards: 68
From: <sip:1002@pbx.example.com>;tag=b2b-77
To: \"Doe, John\" <sip:1003@pbx.example.com>;tag=8C3A2C8E-1E7CB2D4
Call-ID: 3b3d3ff3-7b2e4e1c-f8b0ae1d@10.0.0.21
CSeq: 2 BYE
Content-Length: 0";

const GRANDSTREAM_200_OK: &str = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKpbx-1;rport=5060;received=198.51.100.1
From: <sip:pbx.example.com>;tag=pbx-tag
To: <sip:1006@192.168.0.3:5062>;tag=1234567890
Call-ID: pbx-options-1@198.51.100.1
CSeq: 102 OPTIONS
Supported: replaces, path, timer
User-Agent: Grandstream GXP2170 1.0.11.23
Allow: INVITE, ACK, OPTIONS, CANCEL, BYE, SUBSCRIBE, NOTIFY, INFO, REFER, UPDATE, MESSAGE
Content-Length: 0";

const CHALLENGE_401: &str = "SIP/2.0 401 Unauthorized
Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK1449733357;rport=5060;received=203.0.113.50
From: \"Alice Smith\" <sip:1001@pbx.example.com>;tag=2087186486
To: \"Alice Smith\" <sip:1001@pbx.example.com>;tag=as5e1f2c3d
Call-ID: 1826535823@192.168.1.50
CSeq: 1 REGISTER
WWW-Authenticate: Digest realm=\"pbx.example.com\", nonce=\"abc\", algorithm=MD5, qop=\"auth\"
Content-Length: 0";

const NO_REASON_180: &str = "SIP/2.0 180
Via: SIP/2.0/UDP 10.0.0.21:5060;branch=z9hG4bK7fe1f4b3BB2C5A63
From: <sip:1003@pbx.example.com>;tag=8C3A2C8E
To: <sip:1002@pbx.example.com>;tag=xyz
Call-ID: 3b3d3ff3@10.0.0.21
CSeq: 1 INVITE
Content-Length: 0";

fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("yealink register", wire(YEALINK_REGISTER, false)),
        ("polycom invite", wire(POLYCOM_INVITE, false)),
        ("linphone ipv6 register", wire(LINPHONE_REGISTER_V6, false)),
        ("compact options", wire(COMPACT_OPTIONS, false)),
        ("proxied folded invite", wire(PROXIED_FOLDED_INVITE, false)),
        (
            "proxied folded invite lf",
            wire(PROXIED_FOLDED_INVITE, true),
        ),
        ("via list bye", wire(VIA_LIST_BYE, false)),
        ("grandstream 200", wire(GRANDSTREAM_200_OK, false)),
        ("challenge 401", wire(CHALLENGE_401, false)),
        ("polycom invite lf", wire(POLYCOM_INVITE, true)),
        ("no reason 180", wire(NO_REASON_180, false)),
    ]
}

#[test]
fn real_world_corpus_parses_and_round_trips() {
    for (name, bytes) in corpus() {
        let msg = parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(msg.wire_len, bytes.len(), "{name}");
        // serialize → parse gives the same message facts.
        let again = parse(&serialize(&msg.sip)).unwrap_or_else(|e| panic!("{name} again: {e:?}"));
        assert_eq!(again.call_id(), msg.call_id(), "{name}");
        assert_eq!(again.cseq(), msg.cseq(), "{name}");
        assert_eq!(again.top_via_branch(), msg.top_via_branch(), "{name}");
        assert_eq!(again.from_tag(), msg.from_tag(), "{name}");
        assert_eq!(again.to_tag(), msg.to_tag(), "{name}");
        assert_eq!(again.body(), msg.body(), "{name}");
        assert_eq!(again.sip, msg.sip, "{name}");
        // normalize is idempotent.
        let once = normalize(&bytes).unwrap();
        assert_eq!(normalize(&once).unwrap(), once, "{name}");
    }
}

#[test]
fn yealink_register_accessors() {
    let msg = parse(&wire(YEALINK_REGISTER, false)).unwrap();
    assert!(msg.is_request());
    assert_eq!(msg.method(), Method::Register);
    assert_eq!(msg.raw_uri.as_deref(), Some("sip:pbx.example.com"));
    assert_eq!(msg.call_id(), "1826535823@192.168.1.50");
    assert_eq!(msg.cseq(), (2, Method::Register));
    assert_eq!(msg.top_via_branch(), Some("z9hG4bK1449733357"));
    assert_eq!(msg.top_via_transport(), "UDP");
    assert_eq!(msg.top_via_sent_by(), "192.168.1.50:5060");
    assert_eq!(msg.top_via_param("rport"), Some(None));
    assert_eq!(msg.from_tag(), Some("2087186486"));
    assert_eq!(msg.to_tag(), None);
    assert_eq!(msg.max_forwards(), Some(70));
    assert_eq!(msg.header_value("expires"), Some("3600"));
    assert_eq!(
        msg.header_value("USER-AGENT"),
        Some("Yealink SIP-T46S 66.86.0.15")
    );
    assert_eq!(msg.header_value("x-grandstream-pbx"), Some("true"));
    assert!(
        msg.header_value("Authorization")
            .is_some_and(|v| v.starts_with("Digest username=\"1001\""))
    );
    assert!(msg.body().is_empty());
}

#[test]
fn polycom_invite_keeps_body_and_quoted_comma_display_name() {
    let bytes = wire(POLYCOM_INVITE, false);
    let msg = parse(&bytes).unwrap();
    assert_eq!(msg.method(), Method::Invite);
    assert_eq!(
        msg.raw_uri.as_deref(),
        Some("sip:1002@pbx.example.com;user=phone")
    );
    assert_eq!(msg.from_tag(), Some("8C3A2C8E-1E7CB2D4"));
    assert!(msg.body().starts_with(b"v=0\r\n"));
    assert!(msg.body().ends_with(b"a=sendrecv\r\n"));
    assert_eq!(
        msg.header_value("From"),
        Some("\"Doe, John (Sales)\" <sip:1003@pbx.example.com>;tag=8C3A2C8E-1E7CB2D4")
    );
}

#[test]
fn ipv6_request_uri_and_via() {
    let msg = parse(&wire(LINPHONE_REGISTER_V6, false)).unwrap();
    assert_eq!(msg.raw_uri.as_deref(), Some("sip:[2001:db8::10]"));
    assert_eq!(msg.top_via_transport(), "TCP");
    assert_eq!(msg.top_via_sent_by(), "[2001:db8::1234]:43821");
    assert_eq!(msg.top_via_branch(), Some("z9hG4bK.Xb3cyS9Bd"));
    assert_eq!(msg.top_via_param("alias"), Some(None));
    assert_eq!(msg.from_tag(), Some("gy~2yVd~X"));
    assert_eq!(msg.header_values("accept").count(), 2);
    let SipMessage::Request(request) = &msg.sip else {
        panic!("a request")
    };
    assert_eq!(request.uri.to_string(), "sip:[2001:db8::10]");
    assert!(serialize(&msg.sip).starts_with(b"REGISTER sip:[2001:db8::10] SIP/2.0\r\n"));
}

#[test]
fn compact_forms_expand() {
    let bytes = wire(COMPACT_OPTIONS, false);
    let normalized = String::from_utf8(normalize(&bytes).unwrap()).unwrap();
    for line in [
        "Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK8a4f;rport\r\n",
        "From: <sip:1005@pbx.example.com>;tag=4a1c\r\n",
        "To: <sip:pbx.example.com>\r\n",
        "Call-ID: 1c9a6d4e8bb5a9e1@192.0.2.7\r\n",
        "Contact: <sip:1005@192.0.2.7:5060>\r\n",
        "Supported: path, gruu\r\n",
        "Content-Length: 0\r\n",
    ] {
        assert!(normalized.contains(line), "{line:?} in {normalized}");
    }
    let msg = parse(&bytes).unwrap();
    assert_eq!(msg.call_id(), "1c9a6d4e8bb5a9e1@192.0.2.7");
    assert_eq!(msg.header_value("m"), Some("<sip:1005@192.0.2.7:5060>"));
    assert_eq!(msg.header_value("i"), Some("1c9a6d4e8bb5a9e1@192.0.2.7"));
    // Max-Forwards is tolerated missing.
    assert_eq!(msg.max_forwards(), None);
}

#[test]
fn folding_spacing_and_lf_only() {
    for lf_only in [false, true] {
        let bytes = wire(PROXIED_FOLDED_INVITE, lf_only);
        let normalized = String::from_utf8(normalize(&bytes).unwrap()).unwrap();
        assert!(normalized.starts_with("INVITE sip:1002@pbx.example.com SIP/2.0\r\n"));
        assert!(normalized.contains("\r\nSubject: a very long subject folded twice\r\n"));
        assert!(normalized.contains("\r\nContact: <sip:alice@pc33.example.net>\r\n"));
        assert!(normalized.contains("\r\nMax-Forwards: 69\r\n"));
        assert!(!normalized.contains("\r\n\r\n\r\n"));
        let msg = parse(&bytes).unwrap();
        assert_eq!(msg.top_via_branch(), Some("z9hG4bKnashds8"));
        assert_eq!(msg.header_values("via").count(), 2);
        assert_eq!(msg.from_tag(), Some("1928301774"));
        assert_eq!(msg.cseq(), (314159, Method::Invite));
        assert_eq!(msg.max_forwards(), Some(69));
        // The body keeps its own line endings: the LF-only variant keeps LF.
        let eol: &[u8] = if lf_only { b"\n" } else { b"\r\n" };
        assert!(
            msg.body()
                .ends_with(&[b"a=rtpmap:0 PCMU/8000", eol].concat())
        );
    }
}

#[test]
fn via_list_on_one_line() {
    let msg = parse(&wire(VIA_LIST_BYE, false)).unwrap();
    assert_eq!(
        msg.top_via(),
        "SIP/2.0/TLS edge.example.net:5061;branch=z9hG4bKedge1"
    );
    assert_eq!(msg.top_via_branch(), Some("z9hG4bKedge1"));
    assert_eq!(msg.top_via_transport(), "TLS");
    assert_eq!(msg.to_tag(), Some("8C3A2C8E-1E7CB2D4"));
}

#[test]
fn responses() {
    let ok = parse(&wire(GRANDSTREAM_200_OK, false)).unwrap();
    assert!(!ok.is_request());
    assert_eq!(ok.status_code(), Some(200));
    assert_eq!(ok.method(), Method::Options);
    assert_eq!(ok.raw_uri, None);
    assert_eq!(ok.top_via_param("received"), Some(Some("198.51.100.1")));
    let challenge = parse(&wire(CHALLENGE_401, false)).unwrap();
    assert_eq!(challenge.status_code(), Some(401));
    assert_eq!(challenge.reason_phrase(), Some("Unauthorized"));
    assert!(challenge.header_value("www-authenticate").is_some());
    let ringing = parse(&wire(NO_REASON_180, false)).unwrap();
    assert_eq!(ringing.status_code(), Some(180));
    assert_eq!(ringing.reason_phrase(), Some(""));
}

#[test]
fn content_length_longer_body_is_cut_shorter_is_refused() {
    let mut bytes = wire(POLYCOM_INVITE, false);
    let body_len = parse(&bytes).unwrap().body().len();
    bytes.extend_from_slice(b"trailing junk after the body");
    let msg = parse(&bytes).unwrap();
    assert_eq!(msg.body().len(), body_len);

    let short = &wire(POLYCOM_INVITE, false)[..bytes.len() - 60];
    assert_eq!(parse(short).unwrap_err(), CodecError::BodyTooShort);
    let reply = reject(short, &CodecError::BodyTooShort).unwrap();
    assert!(reply.starts_with(b"SIP/2.0 400 Body Shorter Than Content-Length\r\n"));
}

#[test]
fn binary_body_survives_serialize() {
    let text = "MESSAGE sip:1002@pbx.example.com SIP/2.0
Via: SIP/2.0/UDP 10.0.0.21:5060;branch=z9hG4bKbin
From: <sip:1003@pbx.example.com>;tag=a
To: <sip:1002@pbx.example.com>
Call-ID: bin@10.0.0.21
CSeq: 5 MESSAGE
Max-Forwards: 70
Content-Type: application/octet-stream
Content-Length: 6";
    let mut bytes = wire(text, false);
    bytes.extend_from_slice(&[0, 0xff, 0xfe, b'\r', b'\n', 0x80]);
    let msg = parse(&bytes).unwrap();
    assert_eq!(msg.body(), &[0, 0xff, 0xfe, b'\r', b'\n', 0x80]);
    let out = serialize(&msg.sip);
    assert!(
        out.ends_with(
            &[
                b"Content-Length: 6\r\n\r\n".as_slice(),
                &[0, 0xff, 0xfe, b'\r', b'\n', 0x80]
            ]
            .concat()
        )
    );
    assert_eq!(parse(&out).unwrap().body(), msg.body());
}

#[test]
fn non_ascii_text_survives_serialize() {
    // Found by the fuzzer: a C1 control (U+0085, valid UTF-8) was turned into a space by
    // serialize, so the message did not parse the same way again. Also: Latin-1 bytes that are
    // not UTF-8 are kept as U+FFFD.
    let text = "MESSAGE sip:1002@pbx.example.com SIP/2.0
Via: SIP/2.0/UDP 10.0.0.21:5060;branch=z9hG4bKnel
From: \"Jos\u{e9} \u{85}\" <sip:1003@pbx.example.com>;tag=a
To: <sip:1002@pbx.example.com>
Call-ID: nel@10.0.0.21
CSeq: 5 MESSAGE
Subject: caf\u{e9}\u{85}!
Content-Length: 0";
    let mut bytes = wire(text, false);
    let latin1 = bytes.windows(4).position(|w| w == b"caf\xc3").unwrap() + 3;
    bytes.splice(latin1..latin1 + 2, [0xe9]);
    let msg = parse(&bytes).unwrap();
    assert_eq!(msg.header_value("Subject"), Some("caf\u{fffd}\u{85}!"));
    let again = parse(&serialize(&msg.sip)).unwrap();
    assert_eq!(again.sip, msg.sip);
    // A Via whose sent-by is not a host is refused.
    let bad = wire(
        &text.replace("10.0.0.21:5060;", "10.0.0.21\u{85}:5060;"),
        false,
    );
    assert_eq!(parse(&bad).unwrap_err(), CodecError::BadHeaderValue("Via"));
}

#[test]
fn serialize_fixes_rsip_display() {
    let msg = parse(&wire(GRANDSTREAM_200_OK, false)).unwrap();
    let SipMessage::Response(mut response) = msg.sip else {
        panic!("a response")
    };
    response.status_code = rsip::StatusCode::BusyHere;
    // A stale Content-Length is replaced by the right one, written once.
    response.headers.push(rsip::Header::ContentLength(
        rsip::headers::ContentLength::from(99u32),
    ));
    response.body = b"hello".to_vec();
    let out = String::from_utf8(serialize(&SipMessage::Response(response.clone()))).unwrap();
    assert!(out.starts_with("SIP/2.0 486 Busy Here\r\n"), "{out}");
    assert_eq!(out.matches("Content-Length").count(), 1);
    assert!(out.ends_with("Content-Length: 5\r\n\r\nhello"));
    // A custom reason phrase, and header injection neutralised.
    response.status_code = rsip::StatusCode::Other(400, "Missing\r\nCall-ID".into());
    response.headers.push(rsip::Header::Other(
        "X-Evil".into(),
        "a\r\nVia: injected".into(),
    ));
    let out = String::from_utf8(serialize(&SipMessage::Response(response))).unwrap();
    assert!(out.starts_with("SIP/2.0 400 Missing  Call-ID\r\n"), "{out}");
    assert!(out.contains("X-Evil: a  Via: injected\r\n"));
    assert!(!out.contains("\r\nVia: injected"));
}

#[test]
fn from_sip_checks_built_messages() {
    let msg = parse(&wire(VIA_LIST_BYE, false)).unwrap();
    let rebuilt = Message::from_sip(msg.sip.clone()).unwrap();
    assert_eq!(rebuilt.call_id(), msg.call_id());
    assert_eq!(rebuilt.raw_uri, msg.raw_uri);
    let SipMessage::Request(mut request) = msg.sip else {
        panic!("a request")
    };
    request
        .headers
        .retain(|h| !matches!(h, rsip::Header::CallId(_)));
    assert_eq!(
        Message::from_sip(SipMessage::Request(request)).unwrap_err(),
        CodecError::MissingHeader("Call-ID")
    );
}

#[test]
fn stamp_received_updates_the_top_via_only() {
    let mut msg = parse(&wire(VIA_LIST_BYE, false)).unwrap();
    msg.stamp_received("203.0.113.7:40000".parse().unwrap());
    assert_eq!(
        msg.header_value("Via"),
        Some(
            "SIP/2.0/TLS edge.example.net:5061;branch=z9hG4bKedge1;received=203.0.113.7, \
             SIP/2.0/UDP 10.2.2.2;branch=z9hG4bKinner"
        )
    );
    let mut msg = parse(&wire(YEALINK_REGISTER, false)).unwrap();
    msg.stamp_received("[2001:db8::9]:5062".parse().unwrap());
    assert_eq!(msg.top_via_param("rport"), Some(Some("5062")));
    assert_eq!(msg.top_via_param("received"), Some(Some("2001:db8::9")));
    assert_eq!(msg.top_via_branch(), Some("z9hG4bK1449733357"));
    let again = parse(&serialize(&msg.sip)).unwrap();
    assert_eq!(again.top_via(), msg.top_via());
}

// ---- refusals ----------------------------------------------------------------------------

const BASE: &str = "INVITE sip:1002@pbx.example.com SIP/2.0
Via: SIP/2.0/UDP 10.0.0.21:5060;branch=z9hG4bKbase
Via: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKsecond
Max-Forwards: 70
From: \"A\" <sip:1003@pbx.example.com>;tag=from1
To: <sip:1002@pbx.example.com>
Call-ID: base-call@10.0.0.21
CSeq: 11 INVITE
User-Agent: test
Content-Length: 0";

fn base_with(edit: impl FnOnce(String) -> String) -> Vec<u8> {
    wire(&edit(BASE.to_owned()), false)
}

/// Checks a 400-style reply: status line, copied Vias in order, From, To with a tag, Call-ID,
/// CSeq as received (so it may not parse when the CSeq was the problem).
fn check_reply(reply: &[u8], status_line: &str) {
    let text = String::from_utf8(reply.to_vec()).expect("replies are UTF-8");
    assert!(text.starts_with(&format!("{status_line}\r\n")), "{text}");
    let first = text
        .find("\r\nVia: SIP/2.0/UDP 10.0.0.21:5060;branch=z9hG4bKbase\r\n")
        .expect("top Via copied");
    let second = text
        .find("\r\nVia: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKsecond\r\n")
        .expect("second Via copied");
    assert!(first < second);
    assert!(text.contains("\r\nFrom: \"A\" <sip:1003@pbx.example.com>;tag=from1\r\n"));
    assert!(text.contains("\r\nTo: <sip:1002@pbx.example.com>;tag="));
    assert!(text.contains("\r\nCall-ID: base-call@10.0.0.21\r\n"));
    assert!(text.contains("\r\nCSeq: "));
    assert!(text.ends_with("\r\nContent-Length: 0\r\n\r\n"));
    if let Ok(parsed) = parse(reply) {
        assert_eq!(parsed.status_code(), status_line[8..11].parse().ok());
        assert_eq!(parsed.call_id(), "base-call@10.0.0.21");
        assert!(parsed.to_tag().is_some());
    }
}

#[test]
fn each_refusal_has_its_error_and_answer() {
    let cases: Vec<(&str, Vec<u8>, CodecError, Option<&str>)> = vec![
        (
            "cseq mismatch",
            base_with(|s| s.replace("CSeq: 11 INVITE", "CSeq: 11 REGISTER")),
            CodecError::CSeqMismatch,
            Some("SIP/2.0 400 CSeq Method Mismatch"),
        ),
        (
            "cseq not a number",
            base_with(|s| s.replace("CSeq: 11 INVITE", "CSeq: eleven INVITE")),
            CodecError::BadHeaderValue("CSeq"),
            Some("SIP/2.0 400 Malformed CSeq"),
        ),
        (
            "content-length garbage",
            base_with(|s| s.replace("Content-Length: 0", "Content-Length: zero")),
            CodecError::BadHeaderValue("Content-Length"),
            Some("SIP/2.0 400 Malformed Content-Length"),
        ),
        (
            "content-length too long",
            base_with(|s| s.replace("Content-Length: 0", "Content-Length: 10")),
            CodecError::BodyTooShort,
            Some("SIP/2.0 400 Body Shorter Than Content-Length"),
        ),
        (
            "duplicate call-id",
            base_with(|s| s.replace("User-Agent: test", "Call-ID: other")),
            CodecError::DuplicateHeader("Call-ID"),
            Some("SIP/2.0 400 Duplicate Call-ID"),
        ),
        (
            "bad max-forwards",
            base_with(|s| s.replace("Max-Forwards: 70", "Max-Forwards: many")),
            CodecError::BadHeaderValue("Max-Forwards"),
            Some("SIP/2.0 400 Malformed Max-Forwards"),
        ),
        (
            "nul in a header we do not copy",
            base_with(|s| s.replace("User-Agent: test", "User-Agent: te\0st")),
            CodecError::NulByte,
            Some("SIP/2.0 400 NUL Byte In Headers"),
        ),
        (
            "control byte",
            base_with(|s| s.replace("User-Agent: test", "User-Agent: te\x07st")),
            CodecError::InvalidByte,
            Some("SIP/2.0 400 Invalid Character In Headers"),
        ),
        (
            "header line without colon",
            base_with(|s| s.replace("User-Agent: test", "this is not a header")),
            CodecError::BadHeaderLine,
            Some("SIP/2.0 400 Malformed Header Line"),
        ),
        (
            "unknown method",
            base_with(|s| {
                s.replace("INVITE sip:", "FOO sip:")
                    .replace("CSeq: 11 INVITE", "CSeq: 11 FOO")
            }),
            CodecError::UnsupportedMethod,
            Some("SIP/2.0 501 Not Implemented"),
        ),
        (
            "tel uri",
            base_with(|s| s.replace("sip:1002@pbx.example.com SIP/2.0", "tel:+15551234 SIP/2.0")),
            CodecError::UnsupportedUriScheme,
            Some("SIP/2.0 416 Unsupported URI Scheme"),
        ),
        (
            "bad uri",
            base_with(|s| s.replace("sip:1002@pbx.example.com SIP/2.0", "sip:[::1 SIP/2.0")),
            CodecError::BadRequestUri,
            Some("SIP/2.0 400 Malformed Request-URI"),
        ),
        (
            "sip 3.0",
            base_with(|s| s.replace(" SIP/2.0\n", " SIP/3.0\n")),
            CodecError::UnsupportedVersion,
            Some("SIP/2.0 505 Version Not Supported"),
        ),
        (
            "missing via",
            base_with(|s| s.replace("Via: SIP/2.0/UDP", "X-Via: SIP/2.0/UDP")),
            CodecError::MissingHeader("Via"),
            None,
        ),
        (
            "missing call-id",
            base_with(|s| s.replace("Call-ID: base-call@10.0.0.21\n", "")),
            CodecError::MissingHeader("Call-ID"),
            None,
        ),
        (
            "missing from",
            base_with(|s| s.replace("From:", "X-From:")),
            CodecError::MissingHeader("From"),
            None,
        ),
        (
            "missing to",
            base_with(|s| s.replace("To: <sip", "X-To: <sip")),
            CodecError::MissingHeader("To"),
            None,
        ),
        (
            "missing cseq",
            base_with(|s| s.replace("CSeq: 11 INVITE\n", "")),
            CodecError::MissingHeader("CSeq"),
            None,
        ),
        (
            "nul in the call-id",
            base_with(|s| s.replace("Call-ID: base-call", "Call-ID: base\0call")),
            CodecError::NulByte,
            None,
        ),
        (
            "malformed via",
            base_with(|s| {
                s.replace(
                    "Via: SIP/2.0/UDP 10.0.0.21:5060;",
                    "Via: HTTP/1.1 10.0.0.21:5060;",
                )
            }),
            CodecError::BadHeaderValue("Via"),
            None,
        ),
    ];
    for (name, bytes, error, answer) in cases {
        assert_eq!(parse(&bytes).map(|_| ()), Err(error.clone()), "{name}");
        assert_eq!(can_answer(&bytes), answer.is_some(), "{name}");
        match answer {
            Some(status_line) => check_reply(&reject(&bytes, &error).unwrap(), status_line),
            None => assert_eq!(reject(&bytes, &error), None, "{name}"),
        }
    }
}

#[test]
fn truncated_oversized_and_too_many_headers() {
    let full = wire(BASE, false);
    // Cut inside the User-Agent line: the head ends inside a line.
    let cut = full.windows(10).position(|w| w == b"User-Agent").unwrap() + 5;
    assert_eq!(parse(&full[..cut]).unwrap_err(), CodecError::Truncated);
    check_reply(
        &reject(&full[..cut], &CodecError::Truncated).unwrap(),
        "SIP/2.0 400 Truncated Message",
    );
    // Cut inside the start line: nothing to answer.
    assert_eq!(parse(&full[..10]).unwrap_err(), CodecError::Truncated);
    assert!(!can_answer(&full[..10]));

    let mut big = full;
    big.truncate(big.len() - 4);
    big.extend_from_slice(format!("\r\nX-Pad: {}\r\n\r\n", "p".repeat(7000)).as_bytes());
    while big.len() <= MAX_MESSAGE_LEN {
        big.extend_from_slice(&[b'b'; 4096]);
    }
    assert_eq!(parse(&big).unwrap_err(), CodecError::TooLarge);
    check_reply(
        &reject(&big, &CodecError::TooLarge).unwrap(),
        "SIP/2.0 513 Message Too Large",
    );

    let many = base_with(|s| {
        s.replace(
            "User-Agent: test",
            &(0..MAX_HEADERS)
                .map(|i| format!("X-H{i}: v"))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    });
    assert_eq!(parse(&many).unwrap_err(), CodecError::TooManyHeaders);
    check_reply(
        &reject(&many, &CodecError::TooManyHeaders).unwrap(),
        "SIP/2.0 400 Too Many Headers",
    );

    let long = base_with(|s| {
        s.replace(
            "User-Agent: test",
            &format!("User-Agent: {}", "u".repeat(9000)),
        )
    });
    assert_eq!(parse(&long).unwrap_err(), CodecError::HeaderTooLong);
    check_reply(
        &reject(&long, &CodecError::HeaderTooLong).unwrap(),
        "SIP/2.0 400 Header Too Long",
    );
}

#[test]
fn never_answer_responses_acks_or_garbage() {
    let ack = base_with(|s| {
        s.replace("INVITE sip:", "ACK sip:")
            .replace("CSeq: 11 INVITE", "CSeq: 11 FOO")
    });
    assert_eq!(parse(&ack).unwrap_err(), CodecError::CSeqMismatch);
    assert!(!can_answer(&ack));
    assert_eq!(bad_request(&ack, "whatever"), None);

    let response = wire(
        &GRANDSTREAM_200_OK.replace("CSeq: 102 OPTIONS", "CSeq: x"),
        false,
    );
    assert_eq!(
        parse(&response).unwrap_err(),
        CodecError::BadHeaderValue("CSeq")
    );
    assert!(!can_answer(&response));
    assert_eq!(bad_request(&response, "x"), None);

    for garbage in [
        &b""[..],
        b"\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"SIP/2.0 999 Nope\r\n\r\n",
        b"\xff\xfe\xfd",
    ] {
        assert!(parse(garbage).is_err());
        assert!(!can_answer(garbage));
        assert_eq!(bad_request(garbage, "x"), None);
    }
    assert_eq!(parse(b"\r\n\r\n").unwrap_err(), CodecError::Empty);
    assert_eq!(reject(b"\r\n\r\n", &CodecError::Empty), None);
    assert_eq!(
        parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap_err(),
        CodecError::BadStartLine
    );
}

#[test]
fn bad_request_is_deterministic_and_keeps_an_existing_to_tag() {
    let bytes = base_with(|s| s.replace("CSeq: 11 INVITE", "CSeq: 11 BYE"));
    let a = bad_request(&bytes, "Custom\r\nReason").unwrap();
    let b = bad_request(&bytes, "Custom\r\nReason").unwrap();
    assert_eq!(a, b);
    assert!(a.starts_with(b"SIP/2.0 400 Custom  Reason\r\n"));
    let tagged = base_with(|s| {
        s.replace("CSeq: 11 INVITE", "CSeq: 11 BYE").replace(
            "To: <sip:1002@pbx.example.com>",
            "To: <sip:1002@pbx.example.com>;tag=keep",
        )
    });
    let reply = parse(&bad_request(&tagged, "Bad").unwrap()).unwrap();
    assert_eq!(reply.to_tag(), Some("keep"));
    assert_eq!(reply.cseq(), (11, Method::Bye));
    assert_eq!(codec::error_response(&tagged, 200, "OK"), None);
    let long_reason = "é".repeat(200);
    let reply = bad_request(&tagged, &long_reason).unwrap();
    assert!(parse(&reply).is_ok());
}
