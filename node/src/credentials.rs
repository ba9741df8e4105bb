//! SIP digest credentials: HA1 per algorithm (RFC 2617 / RFC 8760) and generated secrets.
//!
//! The plaintext secret exists only while an extension is created or its secret changed; the cluster stores
//! H(username:realm:secret) for MD5 and SHA-256 so a digest verifier never needs the password.

use md5::{Digest as _, Md5};
use rand::Rng as _;
use rand::distributions::Alphanumeric;
use sha2::Sha256;

use storage::model::{SipCredentials, UnixMillis};

/// HA1 for both algorithms we offer.
pub fn sip_credentials(
    username: &str,
    realm: &str,
    secret: &str,
    now: UnixMillis,
) -> SipCredentials {
    let a1 = format!("{username}:{realm}:{secret}");
    SipCredentials {
        username: username.to_owned(),
        realm: realm.to_owned(),
        ha1_md5: hex::encode(Md5::digest(a1.as_bytes())),
        ha1_sha256: hex::encode(Sha256::digest(a1.as_bytes())),
        changed_at: now,
    }
}

/// A random secret that always passes the password policy: 20 alphanumerics with every class forced in.
pub fn generate_secret() -> String {
    let mut rng = rand::thread_rng();
    loop {
        let s: String = (&mut rng)
            .sample_iter(&Alphanumeric)
            .take(20)
            .map(char::from)
            .collect();
        if crate::policy::check_password(&s, &[]).is_ok() {
            return s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha1_matches_rfc_examples() {
        // RFC 2617 §3.5: Mufasa / testrealm@host.com / Circle Of Life
        let c = sip_credentials("Mufasa", "testrealm@host.com", "Circle Of Life", 0);
        assert_eq!(c.ha1_md5, "939e7578ed9e3c518a452acee763bce9");
        // RFC 7616 §3.9.1 SHA-256 example, realm http-auth@example.org
        let c = sip_credentials("Mufasa", "http-auth@example.org", "Circle of Life", 0);
        assert_eq!(
            c.ha1_sha256,
            "7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232"
        );
    }

    #[test]
    fn generated_secrets_are_strong_and_distinct() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert_eq!(a.len(), 20);
        assert!(crate::policy::check_password(&a, &["1001"]).is_ok());
    }
}
