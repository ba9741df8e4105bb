//! Header names (full and compact forms), the mapping between header lines and rsip's typed
//! `Header` enum, and small helpers that read parameters out of header values without rsip's
//! typed parsers (which refuse much of what phones send).

use rsip::Header;
use rsip::headers as h;
use rsip::prelude::UntypedHeader;

/// Compact header forms: RFC 3261 §7.3.3 and the IANA SIP header registry.
const COMPACT: &[(u8, &str)] = &[
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'c', "Content-Type"),
    (b'd', "Request-Disposition"),
    (b'e', "Content-Encoding"),
    (b'f', "From"),
    (b'i', "Call-ID"),
    (b'j', "Reject-Contact"),
    (b'k', "Supported"),
    (b'l', "Content-Length"),
    (b'm', "Contact"),
    (b'n', "Identity-Info"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b's', "Subject"),
    (b't', "To"),
    (b'u', "Allow-Events"),
    (b'v', "Via"),
    (b'x', "Session-Expires"),
    (b'y', "Identity"),
];

/// The full name for a compact (one-letter) header name, matched case-insensitively.
pub(crate) fn expand_compact(name: &str) -> Option<&'static str> {
    let [letter] = name.as_bytes() else {
        return None;
    };
    let letter = letter.to_ascii_lowercase();
    COMPACT
        .iter()
        .find_map(|(c, full)| (*c == letter).then_some(*full))
}

/// `name` with a compact form expanded; other names unchanged.
pub(crate) fn canonical_name(name: &str) -> &str {
    expand_compact(name).unwrap_or(name)
}

/// RFC 3261 `token` characters.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// ASCII case-insensitive `starts_with`, safe on any UTF-8.
pub(crate) fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

macro_rules! known_headers {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// Builds rsip's typed header for a (canonical, expanded) name and value.
        pub(crate) fn to_rsip(name: &str, value: &str) -> Header {
            $(
                if name.eq_ignore_ascii_case($name) {
                    return Header::$variant(h::$variant::new(value));
                }
            )*
            Header::Other(name.to_owned(), value.to_owned())
        }

        /// The wire name and the value of an rsip header.
        pub(crate) fn parts(header: &Header) -> (&str, &str) {
            match header {
                $( Header::$variant(inner) => ($name, inner.value()), )*
                Header::Other(name, value) => (name.as_str(), value.as_str()),
            }
        }
    };
}

known_headers! {
    Accept => "Accept",
    AcceptEncoding => "Accept-Encoding",
    AcceptLanguage => "Accept-Language",
    AlertInfo => "Alert-Info",
    Allow => "Allow",
    AuthenticationInfo => "Authentication-Info",
    Authorization => "Authorization",
    CSeq => "CSeq",
    CallId => "Call-ID",
    CallInfo => "Call-Info",
    Contact => "Contact",
    ContentDisposition => "Content-Disposition",
    ContentEncoding => "Content-Encoding",
    ContentLanguage => "Content-Language",
    ContentLength => "Content-Length",
    ContentType => "Content-Type",
    Date => "Date",
    ErrorInfo => "Error-Info",
    Event => "Event",
    Expires => "Expires",
    From => "From",
    InReplyTo => "In-Reply-To",
    MaxForwards => "Max-Forwards",
    MimeVersion => "MIME-Version",
    MinExpires => "Min-Expires",
    Organization => "Organization",
    Priority => "Priority",
    ProxyAuthenticate => "Proxy-Authenticate",
    ProxyAuthorization => "Proxy-Authorization",
    ProxyRequire => "Proxy-Require",
    RecordRoute => "Record-Route",
    ReplyTo => "Reply-To",
    Require => "Require",
    RetryAfter => "Retry-After",
    Route => "Route",
    Server => "Server",
    Subject => "Subject",
    SubscriptionState => "Subscription-State",
    Supported => "Supported",
    Timestamp => "Timestamp",
    To => "To",
    Unsupported => "Unsupported",
    UserAgent => "User-Agent",
    Via => "Via",
    Warning => "Warning",
    WwwAuthenticate => "WWW-Authenticate",
}

/// Splits a header value into its comma-separated elements (e.g. several Via or Contact values on
/// one line), ignoring commas inside quoted strings and inside `<…>`. Elements are trimmed; empty
/// elements are skipped.
pub(crate) fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let bytes = value.as_bytes();
    let mut start = 0;
    let mut pos = 0;
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut done = false;
    std::iter::from_fn(move || {
        while !done {
            if pos >= bytes.len() {
                done = true;
                let element = value.get(start..).unwrap_or("").trim();
                if !element.is_empty() {
                    return Some(element);
                }
                break;
            }
            let b = bytes[pos];
            pos += 1;
            match b {
                b'\\' if in_quotes => pos += 1,
                b'"' => in_quotes = !in_quotes,
                b'<' if !in_quotes => in_angle = true,
                b'>' if !in_quotes => in_angle = false,
                b',' if !in_quotes && !in_angle => {
                    let element = value.get(start..pos - 1).unwrap_or("").trim();
                    start = pos;
                    if !element.is_empty() {
                        return Some(element);
                    }
                }
                _ => {}
            }
        }
        None
    })
}

/// The parameter part of one header element (after the `>` of a name-addr, or after the first
/// `;` of an addr-spec or a Via), without the leading `;`. Empty when there are none.
pub(crate) fn element_params(element: &str) -> &str {
    let bytes = element.as_bytes();
    let mut in_quotes = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b'<' if !in_quotes => {
                // name-addr: params follow the closing bracket.
                return match element[i..].find('>') {
                    Some(end) => {
                        let rest = &element[i + end + 1..];
                        rest.trim_start().strip_prefix(';').unwrap_or("")
                    }
                    None => "",
                };
            }
            b';' if !in_quotes => return &element[i + 1..],
            _ => {}
        }
        i += 1;
    }
    ""
}

/// Looks a parameter up in a `;`-separated parameter list. `Some(None)` for a flag parameter
/// (`;lr`, `;rport`), `Some(Some(value))` otherwise; a quoted value is returned without quotes.
pub(crate) fn find_param<'a>(params: &'a str, name: &str) -> Option<Option<&'a str>> {
    params.split(';').find_map(|param| {
        let (key, value) = match param.split_once('=') {
            Some((key, value)) => (key.trim(), Some(value.trim())),
            None => (param.trim(), None),
        };
        if !key.eq_ignore_ascii_case(name) {
            return None;
        }
        let value = value.map(|v| {
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
        });
        Some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms_expand_case_insensitively() {
        assert_eq!(expand_compact("i"), Some("Call-ID"));
        assert_eq!(expand_compact("V"), Some("Via"));
        assert_eq!(expand_compact("q"), None);
        assert_eq!(expand_compact("via"), None);
    }

    #[test]
    fn list_split_respects_quotes_and_brackets() {
        let v = r#""Doe, John" <sip:j@x;a=b,c>;tag=1, <sip:k@y>"#;
        let items: Vec<_> = split_list(v).collect();
        assert_eq!(
            items,
            vec![r#""Doe, John" <sip:j@x;a=b,c>;tag=1"#, "<sip:k@y>"]
        );
        assert_eq!(split_list(" , a ,, b,").collect::<Vec<_>>(), vec!["a", "b"]);
    }

    #[test]
    fn params_of_name_addr_and_addr_spec() {
        assert_eq!(
            element_params(r#""A;b>" <sip:a@b;transport=tcp>;tag=x"#),
            "tag=x"
        );
        assert_eq!(element_params("sip:a@b;tag=y"), "tag=y");
        assert_eq!(
            element_params("SIP/2.0/UDP h:5060;branch=z;rport"),
            "branch=z;rport"
        );
        assert_eq!(find_param("branch=z;rport", "RPORT"), Some(None));
        assert_eq!(find_param("branch=z;rport", "branch"), Some(Some("z")));
        assert_eq!(find_param("a=\"q\"", "a"), Some(Some("q")));
        assert_eq!(find_param("", "tag"), None);
    }
}
