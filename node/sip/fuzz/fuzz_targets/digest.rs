//! The digest header parsers and the verifier on arbitrary header values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbx_sip::digest::{
    AuthRequest, Credentials, DigestChallenge, DigestConfig, NonceKey, Verifier,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = DigestChallenge::parse(text);
    if let Ok(credentials) = Credentials::parse(text) {
        let verifier = Verifier::new(NonceKey::new(b"fuzz"), DigestConfig::default(), 1);
        let request = AuthRequest {
            realm: &credentials.realm,
            method: "REGISTER",
            request_uri: &credentials.uri,
        };
        let _ = verifier.verify(
            1_700_000_000_000,
            &request,
            &credentials,
            |user, algorithm| {
                (user.len() % 2 == 0).then(|| pbx_sip::digest::ha1(algorithm, user, "r", "p"))
            },
        );
        let _ = Credentials::parse(&credentials.to_header_value());
    }
});
