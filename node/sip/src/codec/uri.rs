//! The Request-URI, parsed here rather than by rsip: rsip 0.4 refuses IPv6 hosts and silently
//! ignores trailing garbage. Only `sip:` and `sips:` are accepted (anything else is 416).

use std::net::{Ipv4Addr, Ipv6Addr};

use rsip::{Auth, Domain, Host, HostWithPort, Param, Port, Scheme, Uri};

use super::CodecError;

const MAX_URI_PARAMS: usize = 32;

fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

/// Characters allowed in the user, password and parameter parts: printable ASCII without the
/// delimiters that cannot appear unescaped in a SIP URI.
fn is_uri_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !b"<>\"{}|\\^`".contains(&b)
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// Parses a SIP or SIPS Request-URI into rsip's `Uri`.
///
/// An IPv6 host is stored as `Host::Domain("[v6]")`, brackets included, because rsip displays
/// `Host::IpAddr(V6)` without brackets (which makes `sip:2001:db8::1:5060`).
pub(crate) fn parse_request_uri(s: &str) -> Result<Uri, CodecError> {
    let (scheme, rest) = s.split_once(':').ok_or(CodecError::BadRequestUri)?;
    let scheme = if scheme.eq_ignore_ascii_case("sip") {
        Scheme::Sip
    } else if scheme.eq_ignore_ascii_case("sips") {
        Scheme::Sips
    } else if is_scheme(scheme) {
        return Err(CodecError::UnsupportedUriScheme);
    } else {
        return Err(CodecError::BadRequestUri);
    };
    if !rest.bytes().all(is_uri_char) {
        return Err(CodecError::BadRequestUri);
    }
    // URI headers (`?h=v`) are not allowed in a Request-URI (RFC 3261 §19.1.1, table 1).
    if rest.contains('?') {
        return Err(CodecError::BadRequestUri);
    }

    let (auth, host_and_params) = match rest.split_once('@') {
        Some((userinfo, after)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password.to_owned())),
                None => (userinfo, None),
            };
            if user.is_empty() {
                return Err(CodecError::BadRequestUri);
            }
            (
                Some(Auth {
                    user: user.to_owned(),
                    password,
                }),
                after,
            )
        }
        None => (None, rest),
    };

    let (hostport, params) = match host_and_params.split_once(';') {
        Some((hostport, params)) => (hostport, Some(params)),
        None => (host_and_params, None),
    };
    let host_with_port = parse_hostport(hostport)?;

    let mut parsed = Vec::new();
    if let Some(params) = params {
        for param in params.split(';') {
            if parsed.len() >= MAX_URI_PARAMS {
                return Err(CodecError::BadRequestUri);
            }
            let (name, value) = match param.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (param, None),
            };
            if name.is_empty() {
                return Err(CodecError::BadRequestUri);
            }
            let typed = Param::try_from((name, value))
                .unwrap_or_else(|_| Param::Other(name.into(), value.map(Into::into)));
            parsed.push(typed);
        }
    }

    Ok(Uri {
        scheme: Some(scheme),
        auth,
        host_with_port,
        params: parsed,
        headers: Vec::new(),
    })
}

fn parse_port(s: &str) -> Result<Port, CodecError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CodecError::BadRequestUri);
    }
    s.parse::<u16>()
        .map(Port::from)
        .map_err(|_| CodecError::BadRequestUri)
}

fn parse_hostport(s: &str) -> Result<HostWithPort, CodecError> {
    if let Some(v6) = s.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or(CodecError::BadRequestUri)?;
        addr.parse::<Ipv6Addr>()
            .map_err(|_| CodecError::BadRequestUri)?;
        let port = match after {
            "" => None,
            _ => Some(parse_port(
                after.strip_prefix(':').ok_or(CodecError::BadRequestUri)?,
            )?),
        };
        return Ok(HostWithPort {
            host: Host::Domain(Domain::new(format!("[{addr}]"))),
            port,
        });
    }
    let (host, port) = match s.split_once(':') {
        Some((host, port)) => (host, Some(parse_port(port)?)),
        None => (s, None),
    };
    let host = match host.parse::<Ipv4Addr>() {
        Ok(v4) => Host::IpAddr(v4.into()),
        Err(_) if is_hostname(host) => Host::Domain(Domain::new(host)),
        Err(_) => return Err(CodecError::BadRequestUri),
    };
    Ok(HostWithPort { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_phones_send() {
        for uri in [
            "sip:alice@example.com",
            "sip:[2001:db8::1]:5060;transport=tcp",
            "sip:[2001:db8::1]",
            "sips:bob@example.com:5061",
            "sip:+15551234@example.com;user=phone",
            "SIP:alice@EXAMPLE.com;maddr=1.2.3.4;foo;lr",
            "sip:%61lice@10.0.0.1:5060",
            "sip:alice:secret@example.com",
            "sip:example.com;transport=ws",
        ] {
            let parsed = parse_request_uri(uri);
            assert!(parsed.is_ok(), "{uri}: {parsed:?}");
        }
    }

    #[test]
    fn ipv6_displays_with_brackets() {
        let uri = parse_request_uri("sip:[2001:db8::1]:5070;transport=tcp").unwrap();
        assert_eq!(uri.to_string(), "sip:[2001:db8::1]:5070;transport=TCP");
    }

    #[test]
    fn refuses_other_schemes_and_garbage() {
        assert_eq!(
            parse_request_uri("tel:+15551234"),
            Err(CodecError::UnsupportedUriScheme)
        );
        for bad in [
            "sip:",
            "sip:@host",
            "sip:host:99999",
            "sip:host:",
            "sip:[::1",
            "sip:[zz]:5060",
            "sip:a@b?subject=x",
            "sip:ho st",
            "sip:a@b;=x",
            "nocolon",
            "1sip:x",
            "sip:a<b@c",
        ] {
            assert_eq!(
                parse_request_uri(bad),
                Err(CodecError::BadRequestUri),
                "{bad}"
            );
        }
    }
}
