//! The `Digest` auth-param syntax (RFC 7235 §2.1, RFC 7616 §3.3–3.4): `Digest` then
//! comma-separated `name=value` pairs, values tokens or quoted strings with `\` escapes. Names
//! are case-insensitive; a name given twice is refused; length and count are bounded.

use super::{Algorithm, AuthFailure};

/// The most parameters one header may carry.
const MAX_PARAMS: usize = 32;

/// One `name=value`, the name lower-cased and the value unquoted and unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Param {
    pub(crate) name: String,
    pub(crate) value: String,
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && (s[i] == b' ' || s[i] == b'\t') {
        i += 1;
    }
    i
}

/// Parses a `Digest` header value into its parameters.
pub(crate) fn parse_digest_params(value: &str, max_len: usize) -> Result<Vec<Param>, AuthFailure> {
    if value.len() > max_len {
        return Err(AuthFailure::HeaderTooLong);
    }
    let s = value.as_bytes();
    let mut i = skip_ws(s, 0);
    let scheme_start = i;
    while i < s.len() && is_token_byte(s[i]) {
        i += 1;
    }
    let scheme = &value[scheme_start..i];
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(AuthFailure::UnsupportedScheme);
    }
    if i < s.len() && s[i] != b' ' && s[i] != b'\t' {
        return Err(AuthFailure::UnsupportedScheme);
    }

    let mut params: Vec<Param> = Vec::new();
    loop {
        // Empty list elements are allowed (RFC 7230 §7).
        while i < s.len() && matches!(s[i], b' ' | b'\t' | b',') {
            i += 1;
        }
        if i >= s.len() {
            break;
        }
        let name_start = i;
        while i < s.len() && is_token_byte(s[i]) {
            i += 1;
        }
        if i == name_start {
            return Err(AuthFailure::Malformed("parameter name"));
        }
        let name = value[name_start..i].to_ascii_lowercase();
        i = skip_ws(s, i);
        if s.get(i) != Some(&b'=') {
            return Err(AuthFailure::Malformed("parameter without value"));
        }
        i = skip_ws(s, i + 1);
        let mut param_value = Vec::new();
        if s.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match s.get(i) {
                    None => return Err(AuthFailure::Malformed("unterminated quoted string")),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let escaped = *s
                            .get(i + 1)
                            .ok_or(AuthFailure::Malformed("unterminated quoted string"))?;
                        if escaped < 0x20 || escaped == 0x7f {
                            return Err(AuthFailure::Malformed("control character"));
                        }
                        param_value.push(escaped);
                        i += 2;
                    }
                    Some(&b) if (b < 0x20 && b != b'\t') || b == 0x7f => {
                        return Err(AuthFailure::Malformed("control character"));
                    }
                    Some(&b) => {
                        param_value.push(b);
                        i += 1;
                    }
                }
            }
        } else {
            // Unquoted: a token, leniently anything up to a comma or whitespace.
            let start = i;
            while i < s.len() && !matches!(s[i], b',' | b' ' | b'\t' | b'"') {
                if s[i] < 0x20 || s[i] == 0x7f {
                    return Err(AuthFailure::Malformed("control character"));
                }
                i += 1;
            }
            if i == start {
                return Err(AuthFailure::Malformed("empty parameter value"));
            }
            param_value.extend_from_slice(&s[start..i]);
        }
        i = skip_ws(s, i);
        if i < s.len() && s[i] != b',' {
            return Err(AuthFailure::Malformed("missing comma"));
        }
        if params.iter().any(|p| p.name == name) {
            return Err(AuthFailure::Malformed("duplicate parameter"));
        }
        if params.len() >= MAX_PARAMS {
            return Err(AuthFailure::Malformed("too many parameters"));
        }
        let param_value = String::from_utf8(param_value)
            .map_err(|_| AuthFailure::Malformed("parameter not UTF-8"))?;
        params.push(Param {
            name,
            value: param_value,
        });
    }
    Ok(params)
}

/// Writes a quoted string, escaping `"` and `\`.
pub(crate) fn quote(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        // Control characters cannot be represented; a space keeps the header on one line.
        out.push(if c.is_control() { ' ' } else { c });
    }
    out.push('"');
}

/// Takes a parameter out of the list.
pub(crate) fn take(params: &mut Vec<Param>, name: &str) -> Option<String> {
    let index = params.iter().position(|p| p.name == name)?;
    Some(params.swap_remove(index).value)
}

/// The algorithm parameter, MD5 when absent (RFC 7616 §3.3).
pub(crate) fn algorithm(value: Option<String>) -> Result<Algorithm, AuthFailure> {
    match value {
        None => Ok(Algorithm::Md5),
        Some(token) => Algorithm::from_token(&token).ok_or(AuthFailure::UnsupportedAlgorithm),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &str) -> Vec<(String, String)> {
        parse_digest_params(v, 4096)
            .unwrap()
            .into_iter()
            .map(|p| (p.name, p.value))
            .collect()
    }

    #[test]
    fn quoted_escaped_and_tokens() {
        let got = names(r#"Digest USERNAME="a\"b\\c", realm="x, y",nc=00000001 ,, qop=auth"#);
        assert_eq!(
            got,
            vec![
                ("username".into(), "a\"b\\c".into()),
                ("realm".into(), "x, y".into()),
                ("nc".into(), "00000001".into()),
                ("qop".into(), "auth".into()),
            ]
        );
    }

    #[test]
    fn refusals() {
        for (value, expected) in [
            ("Basic abc", AuthFailure::UnsupportedScheme),
            ("Digestx a=b", AuthFailure::UnsupportedScheme),
            (
                "Digest a=b, A=c",
                AuthFailure::Malformed("duplicate parameter"),
            ),
            (
                "Digest a",
                AuthFailure::Malformed("parameter without value"),
            ),
            (
                "Digest a=\"b",
                AuthFailure::Malformed("unterminated quoted string"),
            ),
            (
                "Digest a=\"b\\",
                AuthFailure::Malformed("unterminated quoted string"),
            ),
            ("Digest a=b c=d", AuthFailure::Malformed("missing comma")),
            ("Digest =b", AuthFailure::Malformed("parameter name")),
            (
                "Digest a=\"\u{1}\"",
                AuthFailure::Malformed("control character"),
            ),
            ("Digest a=", AuthFailure::Malformed("empty parameter value")),
        ] {
            assert_eq!(parse_digest_params(value, 4096), Err(expected), "{value}");
        }
        let long = format!("Digest a=\"{}\"", "x".repeat(5000));
        assert_eq!(
            parse_digest_params(&long, 4096),
            Err(AuthFailure::HeaderTooLong)
        );
    }

    #[test]
    fn quote_round_trips() {
        let mut out = String::from("Digest a=");
        quote(&mut out, "q\"u\\o");
        assert_eq!(names(&out), vec![("a".into(), "q\"u\\o".into())]);
    }
}
