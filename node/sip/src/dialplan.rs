//! Dial patterns in the syntax PBX admins know, for outbound routes: `X` is any digit, `Z` 1–9, `N`
//! 2–9, `[1-5]` or `[0378]` a digit from a set, `.` one or more of anything left; any other digit, `*`,
//! `#` or `+` stands for itself. A leading `_` (as other PBXs write patterns) is accepted and ignored.
//! A pattern that cannot be read is refused with the position of the fault, counted from 1 as an admin
//! counts the characters they typed.
//!
//! Pure and bounded: a pattern is at most [`MAX_PATTERN_LEN`] characters, a number at most
//! [`MAX_NUMBER_LEN`], and matching is one pass.

/// Longest pattern accepted.
pub const MAX_PATTERN_LEN: usize = 64;
/// Longest number a pattern is matched against.
pub const MAX_NUMBER_LEN: usize = 32;

/// One position of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    /// A digit, `*`, `#` or `+` that must be there as it is.
    Literal(u8),
    /// A digit from the set (bit `d` for digit `d`).
    Digits(u16),
    /// One or more characters of anything (only last).
    Rest,
}

const ANY: u16 = 0b11_1111_1111;
const Z: u16 = ANY & !0b1;
const N: u16 = ANY & !0b11;

/// Why a pattern was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} at position {position}")]
pub struct PatternError {
    /// 1-based character position of the fault.
    pub position: usize,
    pub reason: &'static str,
}

/// A parsed dial pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    elems: Vec<Elem>,
}

fn digit_bit(c: u8) -> Option<u16> {
    c.is_ascii_digit().then(|| 1 << (c - b'0'))
}

fn fault(position: usize, reason: &'static str) -> PatternError {
    PatternError { position, reason }
}

/// Reads a `[...]` set whose `[` is at byte `open`; returns the set and the index after `]`.
fn digit_set(bytes: &[u8], open: usize) -> Result<(u16, usize), PatternError> {
    let mut set = 0u16;
    let mut i = open + 1;
    loop {
        let Some(&c) = bytes.get(i) else {
            return Err(fault(open + 1, "unclosed '['"));
        };
        if c == b']' {
            if set == 0 {
                return Err(fault(i + 1, "empty digit set"));
            }
            return Ok((set, i + 1));
        }
        let low = digit_bit(c).ok_or(fault(i + 1, "only digits and ranges go inside [ ]"))?;
        if bytes.get(i + 1) == Some(&b'-') {
            let &hi = bytes.get(i + 2).ok_or(fault(i + 2, "unfinished range"))?;
            let high = digit_bit(hi).ok_or(fault(i + 3, "a range ends with a digit"))?;
            if high < low {
                return Err(fault(i + 1, "a range must go upwards"));
            }
            // Every bit from low to high.
            set |= (high << 1).wrapping_sub(low);
            i += 3;
        } else {
            set |= low;
            i += 1;
        }
    }
}

impl Pattern {
    /// Reads a pattern, or says where it is wrong.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.len() > MAX_PATTERN_LEN {
            return Err(fault(MAX_PATTERN_LEN + 1, "pattern too long"));
        }
        let bytes = text.as_bytes();
        let mut i = usize::from(bytes.first() == Some(&b'_'));
        let mut elems = Vec::new();
        while i < bytes.len() {
            let c = bytes[i];
            let (elem, next) = match c.to_ascii_uppercase() {
                b'X' => (Elem::Digits(ANY), i + 1),
                b'Z' => (Elem::Digits(Z), i + 1),
                b'N' => (Elem::Digits(N), i + 1),
                b'[' => {
                    let (set, next) = digit_set(bytes, i)?;
                    (Elem::Digits(set), next)
                }
                b'.' if i + 1 == bytes.len() => (Elem::Rest, i + 1),
                b'.' => return Err(fault(i + 1, "'.' may only end a pattern")),
                b'0'..=b'9' | b'*' | b'#' | b'+' => (Elem::Literal(c), i + 1),
                _ => return Err(fault(i + 1, "unexpected character")),
            };
            elems.push(elem);
            i = next;
        }
        if elems.is_empty() {
            return Err(fault(1, "empty pattern"));
        }
        Ok(Self { elems })
    }

    /// Whether `number` (digits, `*`, `#`, `+`) matches the whole pattern.
    pub fn matches(&self, number: &str) -> bool {
        let n = number.as_bytes();
        let dialable = |c: &u8| c.is_ascii_digit() || matches!(c, b'*' | b'#' | b'+');
        if n.is_empty() || n.len() > MAX_NUMBER_LEN || !n.iter().all(dialable) {
            return false;
        }
        let mut at = 0;
        for elem in &self.elems {
            match *elem {
                Elem::Rest => return at < n.len(),
                Elem::Literal(c) if n.get(at) == Some(&c) => {}
                Elem::Digits(set)
                    if n.get(at)
                        .and_then(|&c| digit_bit(c))
                        .is_some_and(|b| set & b != 0) => {}
                _ => return false,
            }
            at += 1;
        }
        at == n.len()
    }

    /// How many positions are fixed digits or sets before any `.`: with several matching routes of the
    /// same priority, the more specific pattern is the better guess of what the admin meant.
    pub fn fixed_len(&self) -> usize {
        self.elems
            .iter()
            .filter(|e| !matches!(e, Elem::Rest))
            .count()
    }
}

/// The digits a route strips from the front of a matched number, then what it prepends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rewrite {
    pub strip: usize,
    pub prepend: String,
}

impl Rewrite {
    /// The number to send: `number` without its first `strip` characters, after `prepend`. `None` when
    /// the number is not longer than what is stripped (nothing would be left to dial).
    pub fn apply(&self, number: &str) -> Option<String> {
        let rest = number.get(self.strip..).filter(|r| !r.is_empty())?;
        Some(format!("{}{rest}", self.prepend))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn the_classic_patterns_match_what_admins_expect() {
        let cases = [
            ("_NXXNXXXXXX", "2125551234", true),
            ("NXXNXXXXXX", "1125551234", false),
            ("9NXXXXXX", "95551234", true),
            ("9NXXXXXX", "9555123", false),
            ("011.", "01144207946", true),
            ("011.", "011", false),
            ("00Z.", "0049301234", true),
            ("00Z.", "0009301234", false),
            ("[2-4]XXX", "3999", true),
            ("[2-4]XXX", "5999", false),
            ("[0378]X", "71", true),
            ("[0378]X", "51", false),
            ("112", "112", true),
            ("112", "1120", false),
            ("*7X", "*71", true),
            ("+.", "+4930", true),
            ("x", "7", true),
        ];
        for (pattern, number, expect) in cases {
            assert_eq!(p(pattern).matches(number), expect, "{pattern} vs {number}");
        }
    }

    #[test]
    fn bad_patterns_say_where() {
        let cases = [
            ("", 1, "empty pattern"),
            ("_", 1, "empty pattern"),
            ("9N.X", 3, "'.' may only end a pattern"),
            ("9[2-", 4, "unfinished range"),
            ("9[2-a]", 5, "a range ends with a digit"),
            ("9[5-2]", 3, "a range must go upwards"),
            ("9[]", 3, "empty digit set"),
            ("9[12", 2, "unclosed '['"),
            ("9[1a]", 4, "only digits and ranges go inside [ ]"),
            ("9 X", 2, "unexpected character"),
            ("9é", 2, "unexpected character"),
        ];
        for (pattern, position, reason) in cases {
            let e = Pattern::parse(pattern).unwrap_err();
            assert_eq!((e.position, e.reason), (position, reason), "{pattern:?}");
        }
        let long = "X".repeat(MAX_PATTERN_LEN + 1);
        assert_eq!(
            Pattern::parse(&long).unwrap_err().reason,
            "pattern too long"
        );
        assert_eq!(
            Pattern::parse("9N.X").unwrap_err().to_string(),
            "'.' may only end a pattern at position 3"
        );
    }

    #[test]
    fn numbers_are_bounded_and_only_dialable_characters_match() {
        assert!(!p("X.").matches(&"1".repeat(MAX_NUMBER_LEN + 1)));
        assert!(p("X.").matches(&"1".repeat(MAX_NUMBER_LEN)));
        assert!(!p("X.").matches("12a"));
        assert!(!p("X.").matches(""));
        assert_eq!(p("9NXX.").fixed_len(), 4);
    }

    #[test]
    fn strip_and_prepend() {
        let r = Rewrite {
            strip: 1,
            prepend: "+1".into(),
        };
        assert_eq!(r.apply("92125551234").as_deref(), Some("+12125551234"));
        assert_eq!(r.apply("9"), None);
        assert_eq!(Rewrite::default().apply("112").as_deref(), Some("112"));
        let too_much = Rewrite {
            strip: 5,
            prepend: String::new(),
        };
        assert_eq!(too_much.apply("123"), None);
    }
}
