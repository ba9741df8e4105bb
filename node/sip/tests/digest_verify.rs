//! The digest verifier: RFC vectors, full round trips for both algorithms, and every way
//! credentials can be wrong.

use pbx_sip::digest::{
    Algorithm, AuthFailure, AuthRequest, Credentials, DigestChallenge, DigestConfig, NonceKey,
    Verifier, ha1, response, uri_matches,
};

const REALM: &str = "pbx.example.com";
const URI: &str = "sip:pbx.example.com;transport=tcp";
const T0: u64 = 1_760_000_000_000;
const RAND: [u8; 8] = [0x5a, 0x17, 0x99, 0x03, 0xee, 0x42, 0x00, 0x7f];

fn request() -> AuthRequest<'static> {
    AuthRequest {
        realm: REALM,
        method: "REGISTER",
        request_uri: URI,
    }
}

const EPOCH: u32 = 0x0b0b_0001;

fn verifier() -> Verifier {
    verifier_of(EPOCH)
}

fn verifier_of(epoch: u32) -> Verifier {
    Verifier::new(
        NonceKey::new(b"a 32-byte cluster secret........"),
        DigestConfig::default(),
        epoch,
    )
}

/// The phone's side: take our challenge for `algorithm`, answer with `password`.
fn answer(
    v: &Verifier,
    now: u64,
    algorithm: Algorithm,
    user: &str,
    password: &str,
    nc: u32,
) -> Credentials {
    let challenge = v.challenge(now, RAND, REALM, false, false);
    let value = challenge
        .values
        .iter()
        .find(|value| value.contains(&format!("algorithm={},", algorithm.token())))
        .expect("one challenge per algorithm");
    let parsed = DigestChallenge::parse(value).expect("our challenge parses");
    assert_eq!(parsed.algorithm, algorithm);
    let header = Credentials::answer(
        &parsed,
        user,
        &ha1(algorithm, user, REALM, password),
        "REGISTER",
        URI,
        "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        nc,
    )
    .to_header_value();
    // What goes over the wire is what the verifier parses.
    v.parse_credentials(&header).expect("our credentials parse")
}

fn store(user: &str, algorithm: Algorithm) -> Option<String> {
    (user == "1001").then(|| ha1(algorithm, "1001", REALM, "correct horse"))
}

#[test]
fn rfc_7616_examples() {
    // RFC 7616 §3.9.1: the same request answered with MD5 and with SHA-256.
    let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    let realm = "http-auth@example.org";
    for (algorithm, expected) in [
        (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
        (
            Algorithm::Sha256,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        ),
    ] {
        let ha1 = ha1(algorithm, "Mufasa", realm, "Circle of Life");
        let got = response(
            algorithm,
            &ha1,
            nonce,
            "00000001",
            cnonce,
            "auth",
            "GET",
            "/dir/index.html",
        );
        assert_eq!(got, expected, "{algorithm:?}");
    }
    // And the header as the RFC writes it parses into those values.
    let header = r#"Digest username="Mufasa",
       realm="http-auth@example.org",
       uri="/dir/index.html",
       algorithm=SHA-256,
       nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
       nc=00000001,
       cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
       qop=auth,
       response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
       opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#
        .replace('\n', "");
    let creds = Credentials::parse(&header).unwrap();
    assert_eq!(creds.username, "Mufasa");
    assert_eq!(creds.algorithm, Algorithm::Sha256);
    assert_eq!(creds.nc.as_deref(), Some("00000001"));
    assert_eq!(creds.qop.as_deref(), Some("auth"));
    assert_eq!(
        creds.opaque.as_deref(),
        Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
    );
}

#[test]
fn rfc_2617_example() {
    // RFC 2617 §3.5.
    let ha1 = ha1(
        Algorithm::Md5,
        "Mufasa",
        "testrealm@host.com",
        "Circle Of Life",
    );
    let got = response(
        Algorithm::Md5,
        &ha1,
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "00000001",
        "0a4f113b",
        "auth",
        "GET",
        "/dir/index.html",
    );
    assert_eq!(got, "6629fae49393a05397450978507c4ef1");
}

#[test]
fn challenge_shape() {
    let v = verifier();
    let c = v.challenge(T0, RAND, REALM, false, false);
    assert_eq!((c.status_code, c.header_name), (401, "WWW-Authenticate"));
    assert_eq!(c.values.len(), 2);
    assert!(c.values[0].contains("algorithm=SHA-256"));
    assert!(c.values[1].contains("algorithm=MD5"));
    for value in &c.values {
        assert!(
            value.starts_with("Digest realm=\"pbx.example.com\", nonce=\""),
            "{value}"
        );
        assert!(value.ends_with(", qop=\"auth\""), "{value}");
        let parsed = DigestChallenge::parse(value).unwrap();
        assert_eq!(parsed.realm, REALM);
        assert!(!parsed.stale);
        assert!(parsed.opaque.is_some());
    }
    let p = v.challenge(T0, RAND, REALM, true, true);
    assert_eq!((p.status_code, p.header_name), (407, "Proxy-Authenticate"));
    assert!(p.values.iter().all(|v| v.ends_with(", stale=true")));
    assert!(DigestChallenge::parse(&p.values[0]).unwrap().stale);
    // Opaque is fixed per realm; nonces change with time and randomness.
    let other = v.challenge(T0 + 1, [9; 8], REALM, false, false);
    let a = DigestChallenge::parse(&c.values[0]).unwrap();
    let b = DigestChallenge::parse(&other.values[0]).unwrap();
    assert_eq!(a.opaque, b.opaque);
    assert_ne!(a.nonce, b.nonce);
    // A realm with a quote is escaped.
    let q = v.challenge(T0, RAND, "we \"quote\"", false, false);
    assert_eq!(
        DigestChallenge::parse(&q.values[0]).unwrap().realm,
        "we \"quote\""
    );
}

#[test]
fn round_trip_both_algorithms() {
    for algorithm in [Algorithm::Md5, Algorithm::Sha256] {
        let v = verifier();
        let creds = answer(&v, T0, algorithm, "1001", "correct horse", 1);
        let ok = v.verify(T0 + 5_000, &request(), &creds, store).unwrap();
        assert_eq!(ok.username, "1001");
        assert_eq!(ok.algorithm, algorithm);
        assert_eq!(ok.nc, 1);
        assert_eq!(ok.nonce_issued_at_ms, T0);
        // The next request on the same nonce with nc=2 is fine.
        let creds = answer(&v, T0, algorithm, "1001", "correct horse", 2);
        assert!(v.verify(T0 + 6_000, &request(), &creds, store).is_ok());
        assert_eq!(v.tracked_nonces(), 1);
    }
}

#[test]
fn a_request_captured_before_a_failover_cannot_be_replayed_to_the_new_owner() {
    // The old owner challenged and accepted the phone's request.
    let old_owner = verifier_of(1);
    let creds = answer(
        &old_owner,
        T0,
        Algorithm::Sha256,
        "1001",
        "correct horse",
        1,
    );
    assert!(old_owner.verify(T0, &request(), &creds, store).is_ok());
    assert_eq!(
        old_owner.verify(T0 + 10, &request(), &creds, store),
        Err(AuthFailure::Replay)
    );
    // The new owner's memory is empty, but the nonce is of another epoch: stale, so the phone is
    // challenged again (never counted as a failure) and the captured copy gets nowhere.
    let new_owner = verifier_of(2);
    let replayed = new_owner.verify(T0 + 1_000, &request(), &creds, store);
    assert_eq!(replayed, Err(AuthFailure::StaleNonce));
    assert!(replayed.unwrap_err().is_stale());
    // The phone answers the new owner's challenge and is in.
    let fresh = answer(
        &new_owner,
        T0 + 1_000,
        Algorithm::Sha256,
        "1001",
        "correct horse",
        1,
    );
    assert!(
        new_owner
            .verify(T0 + 1_000, &request(), &fresh, store)
            .is_ok()
    );
    // A wrong password on a foreign nonce is still a plain failure, not stale.
    let wrong = answer(&old_owner, T0, Algorithm::Sha256, "1001", "nope", 2);
    assert_eq!(
        new_owner.verify(T0 + 1_000, &request(), &wrong, store),
        Err(AuthFailure::BadResponse)
    );
}

#[test]
fn another_cluster_secret_is_refused() {
    let issuer = verifier();
    let stranger = Verifier::new(
        NonceKey::new(b"another cluster"),
        DigestConfig::default(),
        EPOCH,
    );
    let creds = answer(&issuer, T0, Algorithm::Sha256, "1001", "correct horse", 1);
    let failure = stranger.verify(T0, &request(), &creds, store).unwrap_err();
    // Its opaque differs too, which is checked first.
    assert!(matches!(
        failure,
        AuthFailure::OpaqueMismatch | AuthFailure::BadNonce
    ));
    assert!(!failure.is_stale());
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    for algorithm in [Algorithm::Md5, Algorithm::Sha256] {
        let v = verifier();
        let wrong = answer(&v, T0, algorithm, "1001", "wrong", 1);
        let wrong = v.verify(T0, &request(), &wrong, store).unwrap_err();
        let ghost = answer(&v, T0, algorithm, "9999", "correct horse", 1);
        let ghost = v.verify(T0, &request(), &ghost, store).unwrap_err();
        assert_eq!(wrong, AuthFailure::BadResponse);
        assert_eq!(ghost, AuthFailure::UnknownUser);
        assert_eq!(wrong.is_stale(), ghost.is_stale());
        assert!(!wrong.is_stale());
        // The caller answers both with the same challenge.
        assert_eq!(
            v.challenge(T0, RAND, REALM, false, wrong.is_stale()),
            v.challenge(T0, RAND, REALM, false, ghost.is_stale())
        );
    }
}

#[test]
fn stale_only_for_a_correct_response() {
    let v = verifier();
    let creds = answer(&v, T0, Algorithm::Md5, "1001", "correct horse", 1);
    let late = T0 + DigestConfig::default().nonce_lifetime_ms + 1;
    let failure = v.verify(late, &request(), &creds, store).unwrap_err();
    assert_eq!(failure, AuthFailure::StaleNonce);
    assert!(failure.is_stale());
    // Exactly at the lifetime it is still fresh.
    let v2 = verifier();
    assert!(v2.verify(late - 1, &request(), &creds, store).is_ok());
    // A wrong password on a stale nonce is a plain failure.
    let wrong = answer(&v, T0, Algorithm::Md5, "1001", "nope", 1);
    assert_eq!(
        v.verify(late, &request(), &wrong, store),
        Err(AuthFailure::BadResponse)
    );
    // A nonce from too far in the future (a skewed clock) is stale too.
    let v3 = verifier();
    let future = answer(&v3, T0 + 60_000, Algorithm::Md5, "1001", "correct horse", 1);
    assert_eq!(
        v3.verify(T0, &request(), &future, store),
        Err(AuthFailure::StaleNonce)
    );
    let near = answer(&v3, T0 + 10_000, Algorithm::Md5, "1001", "correct horse", 1);
    assert!(v3.verify(T0, &request(), &near, store).is_ok());
}

#[test]
fn a_clock_stepping_back_does_not_revive_a_nonce() {
    let v = verifier();
    let late = T0 + DigestConfig::default().nonce_lifetime_ms + 1;
    let fresh = answer(&v, late, Algorithm::Md5, "1001", "correct horse", 1);
    assert!(v.verify(late, &request(), &fresh, store).is_ok());
    let old = answer(&v, T0, Algorithm::Md5, "1001", "correct horse", 1);
    assert_eq!(
        v.verify(T0, &request(), &old, store),
        Err(AuthFailure::StaleNonce)
    );
}

#[test]
fn forged_and_garbled_nonces() {
    let v = verifier();
    let mut creds = answer(&v, T0, Algorithm::Sha256, "1001", "correct horse", 1);
    let genuine = creds.nonce.clone();
    for nonce in [
        String::new(),
        "garbage".to_owned(),
        "A".repeat(43),
        format!(
            "{}{}",
            &genuine[..42],
            if genuine.ends_with('A') { 'Q' } else { 'A' }
        ),
        genuine.replace(&genuine[..2], "zz"),
        format!("{genuine}="),
        "é".repeat(22),
    ] {
        creds.nonce = nonce.clone();
        assert_eq!(
            v.verify(T0, &request(), &creds, store),
            Err(AuthFailure::BadNonce),
            "{nonce}"
        );
    }
    // A nonce issued for another realm does not verify in this one.
    let other_realm = v.challenge(T0, RAND, "other.example.com", false, false);
    let parsed = DigestChallenge::parse(&other_realm.values[0]).unwrap();
    creds.nonce = parsed.nonce;
    creds.opaque = None;
    assert_eq!(
        v.verify(T0, &request(), &creds, store),
        Err(AuthFailure::BadNonce)
    );
}

#[test]
fn tampered_response_realm_uri_opaque() {
    let v = verifier();
    let good = answer(&v, T0, Algorithm::Sha256, "1001", "correct horse", 1);

    let mut c = good.clone();
    let flipped = if c.response.starts_with('0') {
        "1"
    } else {
        "0"
    };
    c.response.replace_range(..1, flipped);
    assert_eq!(
        v.verify(T0, &request(), &c, store),
        Err(AuthFailure::BadResponse)
    );

    let mut c = good.clone();
    c.response = c.response.to_ascii_uppercase();
    // Upper-case hex is the same response.
    assert!(verifier().verify(T0, &request(), &c, store).is_ok());

    let mut c = good.clone();
    c.response.truncate(32);
    assert_eq!(
        v.verify(T0, &request(), &c, store),
        Err(AuthFailure::Malformed("response"))
    );

    let mut c = good.clone();
    c.realm = "other.example.com".into();
    assert_eq!(
        v.verify(T0, &request(), &c, store),
        Err(AuthFailure::RealmMismatch)
    );

    let mut c = good.clone();
    c.uri = "sip:pbx.example.com".into();
    assert_eq!(
        v.verify(T0, &request(), &c, store),
        Err(AuthFailure::UriMismatch)
    );
    assert!(!uri_matches("sip:pbx.example.com", URI));
    assert!(uri_matches(URI, URI));

    let mut c = good.clone();
    c.opaque = Some("not-ours".into());
    assert_eq!(
        v.verify(T0, &request(), &c, store),
        Err(AuthFailure::OpaqueMismatch)
    );

    // The method is part of the hash.
    let invite = AuthRequest {
        method: "INVITE",
        ..request()
    };
    assert_eq!(
        v.verify(T0, &invite, &good, store),
        Err(AuthFailure::BadResponse)
    );

    // An opaque left out is tolerated.
    let mut c = good;
    c.opaque = None;
    assert!(v.verify(T0, &request(), &c, store).is_ok());
}

#[test]
fn replayed_and_backwards_nc() {
    let v = verifier();
    let one = answer(&v, T0, Algorithm::Md5, "1001", "correct horse", 1);
    assert!(v.verify(T0, &request(), &one, store).is_ok());
    let replay = v.verify(T0 + 1, &request(), &one, store).unwrap_err();
    assert_eq!(replay, AuthFailure::Replay);
    assert!(replay.is_stale());

    let five = answer(&v, T0, Algorithm::Md5, "1001", "correct horse", 5);
    assert!(v.verify(T0 + 2, &request(), &five, store).is_ok());
    let three = answer(&v, T0, Algorithm::Md5, "1001", "correct horse", 3);
    assert_eq!(
        v.verify(T0 + 3, &request(), &three, store),
        Err(AuthFailure::Replay)
    );
    let six = answer(&v, T0, Algorithm::Md5, "1001", "correct horse", 6);
    assert!(v.verify(T0 + 4, &request(), &six, store).is_ok());
    // A replayed nc with a wrong response is a plain failure, not stale.
    let mut forged = six;
    forged.response = "0".repeat(32);
    assert_eq!(
        v.verify(T0 + 5, &request(), &forged, store),
        Err(AuthFailure::BadResponse)
    );
}

#[test]
fn one_request_sent_many_times_at_once_is_accepted_once() {
    // Tasks on several threads share one verifier: copies of a request (a retransmission, or an
    // attacker's replay) racing each other must not all find the nonce count fresh.
    let v = verifier();
    let creds = answer(&v, T0, Algorithm::Md5, "1001", "correct horse", 1);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| v.verify(T0 + 1, &request(), &creds, store)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| *e == AuthFailure::Replay)
    );
}

#[test]
fn replay_memory_is_bounded_and_stays_safe() {
    let config = DigestConfig {
        nonce_counter_capacity: 4,
        ..DigestConfig::default()
    };
    let v = Verifier::new(NonceKey::new(b"secret"), config, EPOCH);
    let mut used = Vec::new();
    for i in 0..10u64 {
        let challenge = v.challenge(T0 + i, [i as u8; 8], REALM, false, false);
        let parsed = DigestChallenge::parse(&challenge.values[1]).unwrap();
        let creds = Credentials::answer(
            &parsed,
            "1001",
            &ha1(Algorithm::Md5, "1001", REALM, "correct horse"),
            "REGISTER",
            URI,
            "cn",
            1,
        );
        assert!(v.verify(T0 + 10, &request(), &creds, store).is_ok());
        used.push(creds);
        assert!(v.tracked_nonces() <= 4);
    }
    // Every earlier nonce is refused on replay: tracked ones as replays, evicted ones as stale.
    for creds in &used {
        let failure = v.verify(T0 + 11, &request(), creds, store).unwrap_err();
        assert!(failure.is_stale(), "{failure:?}");
    }
}

#[test]
fn refused_forms() {
    let v = verifier();
    let good = answer(&v, T0, Algorithm::Md5, "1001", "correct horse", 1).to_header_value();

    // Missing required parameters.
    for name in ["username", "realm", "nonce", "uri", "response"] {
        let params: Vec<&str> = good
            .trim_start_matches("Digest ")
            .split(", ")
            .filter(|p| !p.starts_with(&format!("{name}=")))
            .collect();
        let header = format!("Digest {}", params.join(", "));
        assert_eq!(
            Credentials::parse(&header),
            Err(AuthFailure::Malformed(name)),
            "{name}"
        );
    }

    let v = verifier();
    let strip = |name: &str| -> Credentials {
        let params: Vec<&str> = good
            .trim_start_matches("Digest ")
            .split(", ")
            .filter(|p| !p.starts_with(&format!("{name}=")))
            .collect();
        Credentials::parse(&format!("Digest {}", params.join(", "))).unwrap()
    };
    // RFC 2069 (no qop) is refused, as are a missing cnonce or nc.
    assert_eq!(
        v.verify(T0, &request(), &strip("qop"), store),
        Err(AuthFailure::MissingQop)
    );
    assert_eq!(
        v.verify(T0, &request(), &strip("cnonce"), store),
        Err(AuthFailure::Malformed("cnonce"))
    );
    assert_eq!(
        v.verify(T0, &request(), &strip("nc"), store),
        Err(AuthFailure::Malformed("nc"))
    );

    let swap = |from: &str, to: &str| Credentials::parse(&good.replace(from, to));
    let auth_int = swap("qop=auth", "qop=auth-int").unwrap();
    assert_eq!(
        v.verify(T0, &request(), &auth_int, store),
        Err(AuthFailure::UnsupportedQop)
    );
    let bad_nc = swap("nc=00000001", "nc=1").unwrap();
    assert_eq!(
        v.verify(T0, &request(), &bad_nc, store),
        Err(AuthFailure::Malformed("nc"))
    );
    let zero_nc = swap("nc=00000001", "nc=00000000").unwrap();
    assert_eq!(
        v.verify(T0, &request(), &zero_nc, store),
        Err(AuthFailure::Malformed("nc"))
    );
    assert_eq!(
        swap("algorithm=MD5", "algorithm=MD5-sess"),
        Err(AuthFailure::UnsupportedAlgorithm)
    );
    assert_eq!(
        swap("algorithm=MD5", "algorithm=SHA-512-256"),
        Err(AuthFailure::UnsupportedAlgorithm)
    );
    assert_eq!(
        swap("Digest ", "Basic "),
        Err(AuthFailure::UnsupportedScheme)
    );
    assert_eq!(
        swap("algorithm=MD5", "algorithm=MD5, userhash=true"),
        Err(AuthFailure::Malformed("userhash not supported"))
    );
    assert_eq!(
        swap("algorithm=MD5", "algorithm=MD5, Username=\"1002\""),
        Err(AuthFailure::Malformed("duplicate parameter"))
    );
    // Unknown parameters are ignored; names are case-insensitive; no algorithm means MD5.
    let lenient = swap("algorithm=MD5", "X-Extra=\"1\", ALGORITHM=md5").unwrap();
    assert_eq!(lenient.algorithm, Algorithm::Md5);
    let default = swap(", algorithm=MD5", "").unwrap();
    assert_eq!(default.algorithm, Algorithm::Md5);
    assert!(v.verify(T0, &request(), &default, store).is_ok());

    // Huge headers are refused before parsing; the configured bound applies.
    let huge = format!("{good}, x=\"{}\"", "a".repeat(5000));
    assert_eq!(Credentials::parse(&huge), Err(AuthFailure::HeaderTooLong));
    assert_eq!(v.parse_credentials(&huge), Err(AuthFailure::HeaderTooLong));

    // A stored HA1 that is not hex of the right length is a provisioning fault, answered as a
    // wrong password.
    let creds = answer(&v, T0, Algorithm::Md5, "1001", "correct horse", 2);
    let broken = v
        .verify(T0, &request(), &creds, |_, _| Some("xyz".into()))
        .unwrap_err();
    assert_eq!(broken, AuthFailure::StoredHa1Invalid);
    assert!(!broken.is_stale());
}

#[test]
fn garbage_never_panics() {
    let v = verifier();
    let good = answer(&v, T0, Algorithm::Sha256, "1001", "correct horse", 1).to_header_value();
    let mut state: u64 = 0x1234_5678_9abc_def1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let special = b"\",=\\ \t\r\n\0\x7fDigest";
    let v = verifier();
    for _ in 0..5000 {
        let mut bytes = good.clone().into_bytes();
        for _ in 0..=(next() % 4) {
            let len = bytes.len();
            match next() % 4 {
                0 if len > 0 => {
                    let i = (next() as usize) % len;
                    bytes[i] = special[(next() as usize) % special.len()];
                }
                1 if len > 0 => {
                    bytes.truncate((next() as usize) % len);
                }
                2 => {
                    let at = (next() as usize) % (len + 1);
                    bytes.insert(at, (next() % 128) as u8);
                }
                _ if len > 1 => {
                    let i = (next() as usize) % len;
                    bytes.remove(i);
                }
                _ => {}
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(creds) = v.parse_credentials(&text) {
            let _ = v.verify(T0, &request(), &creds, store);
        }
        let _ = DigestChallenge::parse(&text);
    }
}
