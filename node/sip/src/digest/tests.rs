//! Unit tests that need the hash-call counter (integration tests live in `tests/digest_*.rs`).

use super::*;

const REALM: &str = "pbx.example.com";
const URI: &str = "sip:pbx.example.com";

fn verifier() -> Verifier {
    Verifier::new(NonceKey::new(b"cluster secret"), DigestConfig::default(), 7)
}

fn creds(v: &Verifier, now: u64, algorithm: Algorithm, password: &str) -> Credentials {
    let challenge = v.challenge(now, [1, 2, 3, 4, 5, 6, 7, 8], REALM, false, false);
    let value = challenge
        .values
        .iter()
        .find(|value| value.contains(algorithm.token()))
        .unwrap();
    let parsed = DigestChallenge::parse(value).unwrap();
    let ha1 = ha1(algorithm, "1001", REALM, password);
    Credentials::answer(&parsed, "1001", &ha1, "REGISTER", URI, "c0ffee", 1)
}

fn hashes_during(f: impl FnOnce()) -> u64 {
    let before = HASH_CALLS.with(|c| c.get());
    f();
    HASH_CALLS.with(|c| c.get()) - before
}

const REQUEST: AuthRequest<'static> = AuthRequest {
    realm: REALM,
    method: "REGISTER",
    request_uri: URI,
};

#[test]
fn unknown_user_costs_the_same_hashing_as_a_wrong_password() {
    for algorithm in Algorithm::ALL {
        let v = verifier();
        let wrong = creds(&v, 1_000, algorithm, "wrong");
        let stored = ha1(algorithm, "1001", REALM, "right");
        let mut known = None;
        let known_hashes = hashes_during(|| {
            known = Some(v.verify(1_000, &REQUEST, &wrong, |_, _| Some(stored.clone())));
        });
        let mut unknown = None;
        let unknown_hashes = hashes_during(|| {
            unknown = Some(v.verify(1_000, &REQUEST, &wrong, |_, _| None));
        });
        let mut right = None;
        let good = creds(&v, 1_000, algorithm, "right");
        let right_hashes = hashes_during(|| {
            right = Some(v.verify(1_000, &REQUEST, &good, |_, _| Some(stored.clone())));
        });
        assert_eq!(known, Some(Err(AuthFailure::BadResponse)));
        assert_eq!(unknown, Some(Err(AuthFailure::UnknownUser)));
        assert!(matches!(right, Some(Ok(_))));
        assert_eq!(known_hashes, unknown_hashes, "{algorithm:?}");
        assert_eq!(known_hashes, right_hashes, "{algorithm:?}");
        let (Some(Err(a)), Some(Err(b))) = (known, unknown) else {
            unreachable!()
        };
        assert_eq!(a.is_stale(), b.is_stale());
    }
}

#[test]
fn nc_zero_and_bad_nc_are_malformed() {
    assert_eq!(parse_nc("00000000"), None);
    assert_eq!(parse_nc("0000001"), None);
    assert_eq!(parse_nc("0000000g"), None);
    assert_eq!(parse_nc("0000000A"), Some(10));
    assert_eq!(parse_nc("ffffffff"), Some(u32::MAX));
}
