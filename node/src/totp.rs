//! Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP): HMAC-SHA-1, 30-second steps, six
//! digits, the parameters every authenticator app assumes. Pure: the clock is an argument.

use hmac::{Hmac, Mac as _};
use sha1::Sha1;
use subtle::ConstantTimeEq as _;

/// Seconds per time step.
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Bytes of a generated secret: 160 bits, as RFC 4226 recommends.
pub const SECRET_LEN: usize = 20;
/// Steps of clock drift accepted either side of now.
const SKEW_STEPS: u64 = 1;

/// HOTP value for `counter` (RFC 4226 §5.3, dynamic truncation).
pub fn hotp(secret: &[u8], counter: u64) -> u32 {
    // HMAC accepts keys of any length; the error case cannot happen.
    let mut mac = <Hmac<Sha1>>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let bin = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    bin % 10u32.pow(DIGITS)
}

/// The code for `unix_secs`, zero-padded.
pub fn code_at(secret: &[u8], unix_secs: u64) -> String {
    format!(
        "{:0width$}",
        hotp(secret, unix_secs / STEP_SECS),
        width = DIGITS as usize
    )
}

/// The time step `code` is valid for at `unix_secs`, allowing one step of drift either way; `None` if
/// it is valid for none. The caller refuses a step it has already accepted (RFC 6238 §5.2).
pub fn verify(secret: &[u8], code: &str, unix_secs: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = unix_secs / STEP_SECS;
    let mut found = None;
    // Every candidate is computed so the time taken does not say which one matched.
    for step in now.saturating_sub(SKEW_STEPS)..=now + SKEW_STEPS {
        let expected = format!("{:0width$}", hotp(secret, step), width = DIGITS as usize);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            found = Some(step);
        }
    }
    found
}

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding: how authenticator apps take a secret.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buf >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buf << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The `otpauth://` URI an authenticator app imports (Key Uri Format).
pub fn uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        base32(secret),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B's SHA-1 key.
    const KEY: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_vectors() {
        // The RFC's 8-digit values, last six digits.
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(KEY, t), code, "t={t}");
        }
    }

    #[test]
    fn rfc4226_hotp_vectors() {
        let expected = [755_224, 287_082, 359_152, 969_429, 338_314];
        for (i, v) in expected.into_iter().enumerate() {
            assert_eq!(hotp(KEY, i as u64), v);
        }
    }

    #[test]
    fn verify_accepts_one_step_of_drift_and_no_more() {
        let t = 1_111_111_111;
        let code = code_at(KEY, t);
        let step = t / STEP_SECS;
        assert_eq!(verify(KEY, &code, t), Some(step));
        assert_eq!(verify(KEY, &code, t + STEP_SECS), Some(step));
        assert_eq!(verify(KEY, &code, t - STEP_SECS), Some(step));
        assert_eq!(verify(KEY, &code, t + 2 * STEP_SECS), None);
        assert_eq!(verify(KEY, &code, t - 2 * STEP_SECS), None);
    }

    #[test]
    fn verify_refuses_malformed_codes() {
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６", " 12 34 "] {
            assert_eq!(verify(KEY, bad, 59), None, "{bad:?}");
        }
        assert_eq!(verify(b"other key", &code_at(KEY, 59), 59), None);
    }

    #[test]
    fn base32_matches_rfc4648() {
        for (input, out) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), out);
        }
    }

    #[test]
    fn uri_escapes_names() {
        let u = uri("Acme PBX", "ann@example.com", b"12345");
        assert!(u.starts_with("otpauth://totp/Acme%20PBX:ann%40example.com?secret=GEZDGNBV&"));
        assert!(u.contains("issuer=Acme%20PBX"));
    }
}
