//! Password strength policy, applied to SIP secrets and web passwords on every create and change.

/// Why a password was refused; the message is shown to the admin as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WeakPassword {
    #[error("must be at least {MIN_LEN} characters")]
    TooShort,
    #[error("must be at most {MAX_LEN} characters")]
    TooLong,
    #[error("must mix at least three of: lower case, upper case, digits, symbols")]
    TooFewClasses,
    #[error("must not contain a run of 4 or more repeated or sequential characters")]
    Sequence,
    #[error("must not contain the user name or extension number")]
    ContainsIdentity,
    #[error("is a commonly used password")]
    Common,
    #[error("must contain printable ASCII only (no spaces, quotes or backslashes)")]
    BadCharacter,
}

pub const MIN_LEN: usize = 10;
pub const MAX_LEN: usize = 128;

/// A small list of passwords attackers try first (svcrack and friends ship these).
const COMMON: &[&str] = &[
    "password", "passw0rd", "123456", "12345678", "qwerty", "letmein", "welcome", "admin",
    "secret", "changeme", "iloveyou", "monkey", "dragon", "abc123", "trustno1", "sunshine",
    "princess", "football",
];

/// Checks `password` against the policy. `identities` are names it must not contain (user, extension).
pub fn check_password(password: &str, identities: &[&str]) -> Result<(), WeakPassword> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(WeakPassword::TooShort);
    }
    if len > MAX_LEN {
        return Err(WeakPassword::TooLong);
    }
    // Quotes and backslashes break digest header quoting on some phones.
    if !password
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        return Err(WeakPassword::BadCharacter);
    }
    let classes = [
        password.bytes().any(|b| b.is_ascii_lowercase()),
        password.bytes().any(|b| b.is_ascii_uppercase()),
        password.bytes().any(|b| b.is_ascii_digit()),
        password.bytes().any(|b| b.is_ascii_punctuation()),
    ];
    if classes.iter().filter(|&&c| c).count() < 3 {
        return Err(WeakPassword::TooFewClasses);
    }
    if has_run(password.as_bytes(), 4) {
        return Err(WeakPassword::Sequence);
    }
    let lower = password.to_ascii_lowercase();
    if identities
        .iter()
        .any(|id| id.len() >= 3 && lower.contains(&id.to_ascii_lowercase()))
    {
        return Err(WeakPassword::ContainsIdentity);
    }
    if COMMON.iter().any(|c| lower.contains(c)) {
        return Err(WeakPassword::Common);
    }
    Ok(())
}

/// True if `bytes` holds `n` equal characters in a row, or `n` ascending or descending by one.
fn has_run(bytes: &[u8], n: usize) -> bool {
    bytes.windows(n).any(|w| {
        let same = w.windows(2).all(|p| p[0] == p[1]);
        let up = w.windows(2).all(|p| p[1] == p[0].wrapping_add(1));
        let down = w.windows(2).all(|p| p[0] == p[1].wrapping_add(1));
        same || up || down
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_strong_password() {
        assert_eq!(check_password("Tr7!kq-Vw9zP", &["1001", "alice"]), Ok(()));
    }

    #[test]
    fn names_the_reason() {
        assert_eq!(check_password("Ab1!", &[]), Err(WeakPassword::TooShort));
        assert_eq!(
            check_password("alllowercaseletters", &[]),
            Err(WeakPassword::TooFewClasses)
        );
        assert_eq!(
            check_password("Xy1234zz!Q", &[]),
            Err(WeakPassword::Sequence)
        );
        assert_eq!(
            check_password("Xaaaaz1!Qw", &[]),
            Err(WeakPassword::Sequence)
        );
        assert_eq!(
            check_password("Qw-1001-Zx!", &["1001"]),
            Err(WeakPassword::ContainsIdentity)
        );
        assert_eq!(
            check_password("MyPassw0rd!!", &[]),
            Err(WeakPassword::Common)
        );
        assert_eq!(
            check_password("Has space 1A!", &[]),
            Err(WeakPassword::BadCharacter)
        );
        assert_eq!(
            check_password(&"aB3!".repeat(40), &[]),
            Err(WeakPassword::TooLong)
        );
    }
}
