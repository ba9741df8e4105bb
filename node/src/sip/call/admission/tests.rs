//! Admission decisions, one refusal at a time, each with what the caller hears and the CDR it leaves.

use storage::model::{Extension, SipCredentials};

use super::*;

const OFFER: &str = "v=0\r\no=a 1 1 IN IP4 198.18.0.21\r\ns=-\r\nc=IN IP4 198.18.0.21\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

fn invite(extra: &str, body: &str, ctype: &str) -> rsip::Request {
    invite_with_hops(70, extra, body, ctype)
}

fn invite_with_hops(hops: u32, extra: &str, body: &str, ctype: &str) -> rsip::Request {
    let text = format!(
        "INVITE sip:1002@pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.21:5062;branch=z9hG4bKa\r\nMax-Forwards: {hops}\r\nFrom: <sip:1001@pbx.test>;tag=a\r\nTo: <sip:1002@pbx.test>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@198.18.0.21:5062>\r\n{extra}Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    match pbx_sip::codec::parse(text.as_bytes()).unwrap().sip {
        rsip::SipMessage::Request(r) => r,
        rsip::SipMessage::Response(_) => unreachable!(),
    }
}

fn extension(enabled: bool) -> Extension {
    Extension {
        number: "1002".into(),
        display_name: String::new(),
        credentials: SipCredentials {
            username: "1002".into(),
            realm: "pbx.test".into(),
            ha1_md5: String::new(),
            ha1_sha256: String::new(),
            changed_at: 0,
        },
        permission_group: String::new(),
        enabled,
        created_at: 0,
        updated_at: 0,
    }
}

fn binding(transport: &str, expires_at: u64, reachable: Option<bool>) -> Binding {
    Binding {
        aor: "1002".into(),
        contact: "<sip:1002@198.18.0.31:5064>".into(),
        expires_at,
        q: None,
        call_id: "r".into(),
        cseq: 1,
        source: "198.18.0.31:5064".into(),
        transport: transport.into(),
        user_agent: String::new(),
        node_id: 1,
        registered_at: 0,
        instance: None,
        reachable,
    }
}

const NOW: u64 = 1_000;

fn decide(
    req: &rsip::Request,
    callee: Option<Extension>,
    bindings: Vec<Binding>,
    reject_anonymous: bool,
) -> Result<Admitted, Refusal> {
    admit(
        req,
        Transport::Udp,
        callee.as_ref(),
        bindings,
        NOW,
        reject_anonymous,
    )
}

/// The driver's order for a call to one extension: headers and offer, then the callee (which the
/// plan finds missing or disabled), then the bindings that can take the call.
fn admit(
    req: &rsip::Request,
    transport: Transport,
    callee: Option<&Extension>,
    bindings: Vec<Binding>,
    now: u64,
    reject_anonymous: bool,
) -> Result<Admitted, Refusal> {
    let o = offered(req, transport, reject_anonymous)?;
    if !callee.is_some_and(|e| e.enabled) {
        return Err(Refusal::new(404, "Not Found", Some(Disposition::NotFound)));
    }
    let bindings = usable(bindings, now, o.srtp);
    if bindings.is_empty() {
        return Err(Refusal::new(
            480,
            "Temporarily Unavailable",
            Some(Disposition::Unavailable),
        ));
    }
    Ok(Admitted::ringing(o, bindings, None, Vec::new()))
}

fn refused(r: Result<Admitted, Refusal>) -> (u16, Option<Disposition>) {
    let r = r.expect_err("admitted");
    (r.code, r.outcome.map(|o| o.disposition))
}

#[test]
fn a_good_call_keeps_only_live_reachable_bindings() {
    let bindings = vec![
        binding("udp", NOW + 60_000, Some(true)),
        binding("udp", NOW - 1, Some(true)),
        binding("udp", NOW + 60_000, Some(false)),
        binding("tcp", NOW + 60_000, None),
    ];
    let ok = decide(
        &invite("", OFFER, "application/sdp"),
        Some(extension(true)),
        bindings,
        false,
    )
    .unwrap();
    assert_eq!(ok.bindings.len(), 2);
    assert_eq!(ok.max_forwards, 69);
    assert!(!ok.anonymous);
    assert_eq!(ok.offer.map(|o| o.media().len()), Some(1));
}

#[test]
fn each_refusal_has_its_answer_and_cdr() {
    let live = || vec![binding("udp", NOW + 60_000, Some(true))];
    let good = invite("", OFFER, "application/sdp");
    assert_eq!(
        refused(decide(&good, None, live(), false)),
        (404, Some(Disposition::NotFound))
    );
    assert_eq!(
        refused(decide(&good, Some(extension(false)), live(), false)),
        (404, Some(Disposition::NotFound))
    );
    assert_eq!(
        refused(decide(&good, Some(extension(true)), vec![], false)),
        (480, Some(Disposition::Unavailable))
    );
    let hops = invite_with_hops(0, "", OFFER, "application/sdp");
    assert_eq!(
        refused(decide(&hops, Some(extension(true)), live(), false)),
        (483, None)
    );
    // No body at all is a delayed offer, and welcome.
    let no_offer = invite("", "", "application/sdp");
    assert!(
        decide(&no_offer, Some(extension(true)), live(), false)
            .unwrap()
            .offer
            .is_none()
    );
    let text = invite("", "hello", "text/plain");
    assert_eq!(
        refused(decide(&text, Some(extension(true)), live(), false)),
        (415, None)
    );
    let broken = invite("", "v=0\r\nm=audio x\r\n", "application/sdp");
    assert_eq!(
        refused(decide(&broken, Some(extension(true)), live(), false)).0,
        400
    );
    let rejected = invite("", &OFFER.replace("4000", "0"), "application/sdp");
    assert_eq!(
        refused(decide(&rejected, Some(extension(true)), live(), false)),
        (488, None)
    );
}

#[test]
fn anonymous_callers_are_marked_or_refused_by_policy() {
    let live = || vec![binding("udp", NOW + 60_000, Some(true))];
    let private = invite("Privacy: id\r\n", OFFER, "application/sdp");
    assert!(
        decide(&private, Some(extension(true)), live(), false)
            .unwrap()
            .anonymous
    );
    assert_eq!(
        refused(decide(&private, Some(extension(true)), live(), true)),
        (433, Some(Disposition::Failed))
    );
}

#[test]
fn srtp_keys_need_tls_on_both_legs() {
    let keyed = format!(
        "{OFFER}a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
    );
    let req = invite("", &keyed, "application/sdp");
    let both = vec![
        binding("udp", NOW + 60_000, Some(true)),
        binding("tls", NOW + 60_000, Some(true)),
    ];
    assert_eq!(
        refused(decide(&req, Some(extension(true)), both.clone(), false)).0,
        488
    );
    let over_tls = admit(
        &req,
        Transport::Tls,
        Some(&extension(true)),
        both,
        NOW,
        false,
    )
    .unwrap();
    assert_eq!(over_tls.bindings.len(), 1);
    assert_eq!(over_tls.bindings[0].transport, "tls");
}

#[test]
fn a_caller_requiring_reliable_provisionals_is_told_they_are_unsupported() {
    let req = invite("Require: 100rel\r\n", OFFER, "application/sdp");
    let r = decide(
        &req,
        Some(extension(true)),
        vec![binding("udp", NOW + 60_000, Some(true))],
        false,
    )
    .unwrap_err();
    assert_eq!(r.code, 420);
    assert_eq!(
        r.headers,
        vec![("Unsupported".to_owned(), "100rel".to_owned())]
    );
    // Merely supporting it is fine.
    let req = invite("Supported: 100rel, timer\r\n", OFFER, "application/sdp");
    assert!(
        decide(
            &req,
            Some(extension(true)),
            vec![binding("udp", NOW + 60_000, Some(true))],
            false
        )
        .is_ok()
    );
}

#[test]
fn only_digits_are_dialled_numbers() {
    let mut req = invite("", OFFER, "application/sdp");
    assert_eq!(dialled_number(&req).as_deref(), Some("1002"));
    req.uri = rsip::Uri::try_from("sip:+442071234567@pbx.test").unwrap();
    assert_eq!(dialled_number(&req).as_deref(), Some("+442071234567"));
    for bad in ["sip:+@pbx.test", "sip:1+2@pbx.test", "sip:++1@pbx.test"] {
        req.uri = rsip::Uri::try_from(bad).unwrap();
        assert_eq!(dialled_number(&req), None, "{bad}");
    }
    req.uri = rsip::Uri::try_from("sip:alice@pbx.test").unwrap();
    assert_eq!(dialled_number(&req), None);
    req.uri = rsip::Uri::try_from(format!("sip:{}@pbx.test", "1".repeat(33)).as_str()).unwrap();
    assert_eq!(dialled_number(&req), None);
}
