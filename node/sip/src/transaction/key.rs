//! Transaction keys (RFC 3261 §17.1.3, §17.2.3) and the few header fields the layer reads.
//!
//! Header values are read from rsip's untyped headers with small, total parsers: a header that does not
//! parse makes the message malformed (a `400` for a request, a drop for a response), never a panic.

use rsip::prelude::UntypedHeader;
use rsip::{Header, Headers, Method};

/// The RFC 3261 magic cookie that marks a branch as globally unique (§8.1.1.7).
pub(crate) const MAGIC_COOKIE: &str = "z9hG4bK";

/// rsip's `Method` is not `Hash`; transaction keys carry this code instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct MethodCode(u8);

impl MethodCode {
    pub(crate) fn of(method: Method) -> Self {
        Self(match method {
            Method::Ack => 0,
            Method::Bye => 1,
            Method::Cancel => 2,
            Method::Info => 3,
            Method::Invite => 4,
            Method::Message => 5,
            Method::Notify => 6,
            Method::Options => 7,
            Method::PRack => 8,
            Method::Publish => 9,
            Method::Refer => 10,
            Method::Register => 11,
            Method::Subscribe => 12,
            Method::Update => 13,
        })
    }
}

/// Client transaction key (§17.1.3): the branch we generated plus the CSeq method, so that the CANCEL
/// sharing its INVITE's branch is a transaction of its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey {
    pub(crate) branch: String,
    pub(crate) method: MethodCode,
}

/// Server transaction key (§17.2.3): branch, sent-by and method, with ACK folded onto INVITE so that the
/// ACK for a non-2xx final response finds its INVITE transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ServerKey {
    pub(crate) branch: String,
    pub(crate) sent_by: String,
    pub(crate) method: MethodCode,
}

/// How the ACK for a 2xx (a new transaction with its own branch) finds the INVITE server transaction
/// that sent the 2xx: Call-ID, CSeq number and From tag (§13.2.2.4, §17.2.3 do not apply to it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct AckKey {
    pub(crate) call_id: String,
    pub(crate) cseq: u32,
    pub(crate) from_tag: Option<String>,
}

/// The parts of the top Via the layer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopVia {
    /// The first via-parm only (a Via header may carry several, comma-separated).
    pub(crate) raw: String,
    /// `host:port`, host lower-cased, default port filled in.
    pub(crate) sent_by: String,
    pub(crate) branch: Option<String>,
}

impl TopVia {
    /// The branch, if it carries the RFC 3261 magic cookie.
    pub(crate) fn rfc3261_branch(&self) -> Option<&str> {
        self.branch
            .as_deref()
            .filter(|b| b.starts_with(MAGIC_COOKIE) && b.len() > MAGIC_COOKIE.len())
    }
}

/// True for a Via header, including the compact form `v` if the codec left it as an unknown header.
pub(crate) fn is_via(header: &Header) -> bool {
    match header {
        Header::Via(_) => true,
        Header::Other(name, _) => name.eq_ignore_ascii_case("v"),
        _ => false,
    }
}

fn header_value(header: &Header) -> Option<&str> {
    match header {
        Header::Via(h) => Some(h.value()),
        Header::Other(_, value) => Some(value),
        _ => None,
    }
}

/// Parses the first via-parm of the first Via header.
pub(crate) fn top_via(headers: &Headers) -> Option<TopVia> {
    let value = headers.iter().find(|h| is_via(h)).and_then(header_value)?;
    parse_via(value)
}

/// Number of via-parms across all Via headers (a response must carry exactly one, §18.1.2).
pub(crate) fn via_count(headers: &Headers) -> usize {
    headers
        .iter()
        .filter(|h| is_via(h))
        .filter_map(header_value)
        .map(|v| v.split(',').filter(|p| !p.trim().is_empty()).count())
        .sum()
}

fn parse_via(value: &str) -> Option<TopVia> {
    let first = value.split(',').next()?.trim();
    let mut parts = first.split(';');
    let head = parts.next()?.trim();
    let (protocol, sent_by) = head.split_once(|c: char| c.is_ascii_whitespace())?;
    let transport = protocol.rsplit('/').next()?.trim();
    let sent_by: String = sent_by
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if transport.is_empty() || sent_by.is_empty() {
        return None;
    }
    let branch = parts.find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("branch")
            .then(|| value.trim().to_owned())
    });
    Some(TopVia {
        raw: first.to_owned(),
        sent_by: normalise_sent_by(&sent_by, transport),
        branch: branch.filter(|b| !b.is_empty()),
    })
}

fn normalise_sent_by(sent_by: &str, transport: &str) -> String {
    let lower = sent_by.to_ascii_lowercase();
    let has_port = match lower.rfind(']') {
        Some(close) => lower[close..].contains(':'),
        None => lower.contains(':'),
    };
    if has_port {
        lower
    } else {
        let port = if transport.eq_ignore_ascii_case("tls") {
            5061
        } else {
            5060
        };
        format!("{lower}:{port}")
    }
}

/// The CSeq number and method, or `None` when missing or unparsable.
pub(crate) fn cseq(headers: &Headers) -> Option<(u32, Method)> {
    let value = headers.iter().find_map(|h| match h {
        Header::CSeq(c) => Some(c.value()),
        _ => None,
    })?;
    let mut it = value.split_ascii_whitespace();
    let seq = it.next()?.parse::<u32>().ok()?;
    let method = it.next()?.parse::<Method>().ok()?;
    it.next().is_none().then_some((seq, method))
}

pub(crate) fn call_id(headers: &Headers) -> Option<&str> {
    headers
        .iter()
        .find_map(|h| match h {
            Header::CallId(c) => Some(c.value().trim()),
            Header::Other(name, value) if name.eq_ignore_ascii_case("i") => Some(value.trim()),
            _ => None,
        })
        .filter(|v| !v.is_empty())
}

pub(crate) fn from_value(headers: &Headers) -> Option<&str> {
    headers.iter().find_map(|h| match h {
        Header::From(f) => Some(f.value()),
        Header::Other(name, value) if name.eq_ignore_ascii_case("f") => Some(value),
        _ => None,
    })
}

pub(crate) fn to_value(headers: &Headers) -> Option<&str> {
    headers.iter().find_map(|h| match h {
        Header::To(t) => Some(t.value()),
        Header::Other(name, value) if name.eq_ignore_ascii_case("t") => Some(value),
        _ => None,
    })
}

/// The `tag` parameter of a From or To value (a header parameter: after the `>` of a name-addr).
pub(crate) fn tag_param(value: &str) -> Option<&str> {
    let params = match value.rfind('>') {
        Some(close) => &value[close + 1..],
        None => value,
    };
    params.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        let value = value.trim();
        (name.trim().eq_ignore_ascii_case("tag") && !value.is_empty()).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_parsing() {
        let v = parse_via("SIP/2.0/UDP PC33.Example.com;rport;branch=z9hG4bK776, SIP/2.0/TCP b")
            .unwrap();
        assert_eq!(v.sent_by, "pc33.example.com:5060");
        assert_eq!(v.branch.as_deref(), Some("z9hG4bK776"));
        assert_eq!(
            v.raw,
            "SIP/2.0/UDP PC33.Example.com;rport;branch=z9hG4bK776"
        );
        assert_eq!(v.rfc3261_branch(), Some("z9hG4bK776"));

        let v = parse_via("SIP/2.0/TLS [2001:db8::1] ; branch = abc").unwrap();
        assert_eq!(v.sent_by, "[2001:db8::1]:5061");
        assert_eq!(v.rfc3261_branch(), None);

        let v = parse_via("SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK").unwrap();
        assert_eq!(v.sent_by, "[2001:db8::1]:5070");
        assert_eq!(v.rfc3261_branch(), None, "a bare cookie is not a branch");

        assert!(parse_via("").is_none());
        assert!(parse_via("SIP/2.0/UDP").is_none());
        assert!(parse_via(";;;,,,").is_none());
    }

    #[test]
    fn tag_parsing() {
        assert_eq!(
            tag_param("\"A;tag=x\" <sip:a@b;tag=no>;tag=yes"),
            Some("yes")
        );
        assert_eq!(tag_param("sip:a@b;tag=1"), Some("1"));
        assert_eq!(tag_param("<sip:a@b>"), None);
        assert_eq!(tag_param("<sip:a@b>;tag="), None);
    }
}
