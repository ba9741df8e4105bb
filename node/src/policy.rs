//! Password strength policy, applied to SIP secrets on every create and change, and to every generated secret
//! (SIP secrets and the bootstrap admin's web password).
//!
//! Fixed rules come first: length, printable ASCII, three character classes, no runs, not the owner's user
//! name or extension number. A password that passes them is then scored by zxcvbn (frequency lists of common
//! passwords, names, English words and TV/film words; keyboard patterns, repeats, sequences, dates, l33t and
//! reversed spellings), with the owner's names, display name and realm and a few service words added as a
//! dictionary of its own, so a password built from them scores weak. A score below [`MIN_SCORE`] (fewer than
//! about 10^8 guesses) is refused with zxcvbn's reason.
//!
//! zxcvbn's cost grows with the square of the input times the number of l33t readings it tries: a crafted
//! 100-character password holding every l33t symbol costs it about 0.7 s (release build), 64 characters about
//! 0.3 s. So it never sees more than [`SCORED_LEN`] = 64 characters: [`MAX_LEN`] refuses anything longer
//! than 128 before scoring, and of a longer password only the first 64 characters are scored (zxcvbn itself
//! would stop at 100). The rest only adds strength, so the first 64 must be strong on their own. The API
//! checks a chosen secret on the blocking pool.

use zxcvbn::Score;
use zxcvbn::feedback::Feedback;

/// Why a password was refused; the message is shown to the admin as is and never contains the password.
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
    /// zxcvbn scored it below [`MIN_SCORE`]; `reason` is one of zxcvbn's fixed feedback texts or ours, at
    /// most [`MAX_REASON_LEN`] characters.
    #[error("is too easy to guess: {reason}")]
    Guessable { reason: String },
    #[error("must contain printable ASCII only (no spaces, quotes or backslashes)")]
    BadCharacter,
}

pub const MIN_LEN: usize = 10;
pub const MAX_LEN: usize = 128;
/// zxcvbn scores at most this many leading characters (see the module notes).
pub const SCORED_LEN: usize = 64;
/// The lowest zxcvbn score accepted: 3 means about 10^8 guesses or more.
pub const MIN_SCORE: Score = Score::Three;
/// The longest reason a [`WeakPassword::Guessable`] carries.
pub const MAX_REASON_LEN: usize = 160;

/// Words every password here is guessed with, whoever owns it.
const SERVICE_WORDS: &[&str] = &["pbx", "sip", "voip"];

const BUILT_FROM_OWNER: &str = concat!(
    "It is built from the user name, extension number, display name, realm ",
    "or a word like pbx or sip."
);
const NO_WARNING: &str = "Add another word or two. Uncommon words are better.";

/// Whose password it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Owner<'a> {
    /// Refused anywhere in the password when 3 characters or longer, and scored as guessable words: the user
    /// name and the extension number.
    pub names: &'a [&'a str],
    /// Only scored as guessable words, whole and word by word: the display name, the realm.
    pub hints: &'a [&'a str],
}

/// Checks `password` against the policy. `names` are the user name and extension number; see [`Owner`].
pub fn check_password(password: &str, names: &[&str]) -> Result<(), WeakPassword> {
    check_password_for(password, &Owner { names, hints: &[] })
}

/// Checks `password`, owned by `owner`, against the policy.
pub fn check_password_for(password: &str, owner: &Owner<'_>) -> Result<(), WeakPassword> {
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
    if owner
        .names
        .iter()
        .any(|id| id.len() >= 3 && lower.contains(&id.to_ascii_lowercase()))
    {
        return Err(WeakPassword::ContainsIdentity);
    }
    // ASCII only from here on, so a byte index is a character index.
    let scored = &password[..password.len().min(SCORED_LEN)];
    let words = owner_words(owner);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let entropy = zxcvbn::zxcvbn(scored, &words);
    if entropy.score() >= MIN_SCORE {
        return Ok(());
    }
    let reason = match entropy.feedback().and_then(Feedback::warning) {
        Some(warning) => warning.to_string(),
        // zxcvbn names no reason for a match in the owner's words: say so when they made the difference.
        None if zxcvbn::zxcvbn(scored, &[]).score() >= MIN_SCORE => BUILT_FROM_OWNER.to_owned(),
        None => NO_WARNING.to_owned(),
    };
    Err(WeakPassword::Guessable {
        reason: bounded(reason, MAX_REASON_LEN),
    })
}

/// zxcvbn's user inputs: the service words, then each name and hint whole, with its separators dropped
/// ("Alice Smith" → "alicesmith") and split into words of 3 or more letters and digits; each cut to
/// [`SCORED_LEN`] characters (a longer one cannot match anyway) and lower-cased.
fn owner_words(owner: &Owner<'_>) -> Vec<String> {
    let mut words: Vec<String> = SERVICE_WORDS.iter().map(|&w| w.to_owned()).collect();
    for whole in owner.names.iter().chain(owner.hints) {
        let joined: String = whole.chars().filter(|c| c.is_alphanumeric()).collect();
        let parts = whole
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() >= 3);
        for w in [*whole, joined.as_str()].into_iter().chain(parts) {
            let w: String = w
                .chars()
                .take(SCORED_LEN)
                .collect::<String>()
                .to_lowercase();
            if !w.is_empty() && !words.contains(&w) {
                words.push(w);
            }
        }
    }
    words
}

/// `s` cut to at most `max` characters, at a space when there is one.
fn bounded(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let cut: String = s.chars().take(max).collect();
    match cut.rfind(' ') {
        Some(i) if i > 0 => cut[..i].to_owned(),
        _ => cut,
    }
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

    /// Extension 204871, "Alice Smith", in the default realm.
    const ALICE: Owner<'static> = Owner {
        names: &["204871"],
        hints: &["Alice Smith", "pbx"],
    };

    fn reason(password: &str, owner: &Owner<'_>) -> String {
        match check_password_for(password, owner) {
            Err(WeakPassword::Guessable { reason }) => reason,
            other => panic!("{password}: expected Guessable, got {other:?}"),
        }
    }

    #[test]
    fn accepts_strong_passwords() {
        for p in [
            "Tr7!kq-Vw9zP",
            "Xk#9mQ2-vL7p",
            "correct-Horse-battery-staple-9",
            "Ring-Tone-Gravel-42",
        ] {
            assert_eq!(check_password_for(p, &ALICE), Ok(()), "{p}");
        }
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
            check_password("Has space 1A!", &[]),
            Err(WeakPassword::BadCharacter)
        );
        assert_eq!(
            check_password(&"aB3!".repeat(40), &[]),
            Err(WeakPassword::TooLong)
        );
        // Refused by the fixed rules before any scoring.
        assert_eq!(
            check_password("Qwerty12345!", &[]),
            Err(WeakPassword::Sequence)
        );
    }

    /// `Guessable` is only reached once every fixed rule has passed.
    #[test]
    fn refuses_guessable_passwords_the_fixed_rules_let_through() {
        let common = "This is similar to a commonly used password.";
        let names = "Common names and surnames are easy to guess.";
        // None of these holds a word of the 18-entry list the policy used to have: all were accepted.
        let new = [
            ("P@ssw0rd2024", common),
            ("Liverpool1!9", common),
            ("Michael!1985", names),
            ("Jennifer#1990", names),
        ];
        // The old list refused these too; they stay refused.
        let old = [
            ("Password123!", common),
            ("MyPassw0rd!!", common),
            ("Monkey12!!", common),
        ];
        for (p, why) in new.into_iter().chain(old) {
            assert_eq!(reason(p, &Owner::default()), why, "{p}");
            assert_eq!(reason(p, &ALICE), why, "{p}");
        }
    }

    #[test]
    fn refuses_passwords_built_from_the_owner() {
        // The reversed extension number, the display name run together, both reversed: fine for someone
        // else, guessable for Alice.
        for p in ["178402Ab!x", "Ab!x178402", "AliceSmith#7", "HtimsEcila7!"] {
            assert_eq!(check_password_for(p, &Owner::default()), Ok(()), "{p}");
            assert_eq!(reason(p, &ALICE), BUILT_FROM_OWNER, "{p}");
        }
    }

    #[test]
    fn the_error_says_why_and_never_echoes_the_password() {
        let e = check_password("P@ssw0rd2024", &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "is too easy to guess: This is similar to a commonly used password."
        );
        let e = check_password_for("AliceSmith#7", &ALICE).unwrap_err();
        assert_eq!(
            e.to_string(),
            "is too easy to guess: It is built from the user name, extension number, display name, \
             realm or a word like pbx or sip."
        );
        for p in ["P@ssw0rd2024", "AliceSmith#7", "Smith.1704", "Michael!1985"] {
            let text = check_password_for(p, &ALICE).unwrap_err().to_string();
            assert!(!text.to_ascii_lowercase().contains(&p.to_ascii_lowercase()));
            assert!(text.len() <= "is too easy to guess: ".len() + MAX_REASON_LEN);
        }
    }

    #[test]
    fn reasons_are_bounded() {
        assert_eq!(bounded("short".into(), 10), "short");
        assert_eq!(bounded("one two three".into(), 10), "one two");
        assert_eq!(bounded("abcdefghijkl".into(), 10), "abcdefghij");
    }

    /// Only the first [`SCORED_LEN`] characters are scored: a weak head is not saved by a strong tail.
    #[test]
    fn scores_only_the_first_64_characters() {
        let head = "P@ssw0rd!".repeat(8);
        let weak = format!("{head}{}", "Xk#9mQ2-vL7pTr7!kq-Vw9zPq8");
        assert!(weak.len() > SCORED_LEN && weak.len() <= MAX_LEN);
        assert!(matches!(
            check_password(&weak, &[]),
            Err(WeakPassword::Guessable { .. })
        ));
        let strong = format!("{}{head}", "Xk#9mQ2-vL7pTr7!kq-Vw9zPq8");
        assert!(strong.len() <= MAX_LEN);
        assert_eq!(check_password(&strong, &[]), Ok(()));
    }

    /// What the API hands out when no secret is given must pass for the extension it is made for.
    #[test]
    fn generated_secrets_always_pass() {
        let owner = Owner {
            names: &["204871"],
            hints: &["Ext 204871", "pbx"],
        };
        for _ in 0..2000 {
            let s = crate::credentials::generate_secret();
            assert_eq!(check_password_for(&s, &owner), Ok(()), "{s}");
        }
    }
}
