//! What capture reads from a raw SIP message without parsing it fully: the first line, the Call-ID,
//! the user and host parts of the From, To and Request-URI; and the masking of credentials.
//!
//! Both work on bytes that may be malformed (a message the codec rejects is captured too): nothing
//! here fails, a field that cannot be read is left empty.

use serde::{Deserialize, Serialize};

/// Longest text kept of any one field.
const MAX_FIELD: usize = 256;
/// What a masked credential reads as.
pub(crate) const MASK: &str = "********";

/// The parts of a message a query looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The request or status line.
    pub first_line: String,
    pub call_id: String,
    pub cseq: String,
    /// User parts (`1001` of `sip:1001@pbx`), empty when absent.
    pub from_user: String,
    pub to_user: String,
    pub uri_user: String,
    /// Host parts, lower case.
    pub from_host: String,
    pub to_host: String,
    pub uri_host: String,
}

impl Summary {
    /// Whether `user` is the user part of the From, To or Request-URI.
    pub fn concerns_user(&self, user: &str) -> bool {
        !user.is_empty()
            && (self.from_user == user || self.to_user == user || self.uri_user == user)
    }

    /// Whether `host` (lower case) is the host part of the From, To or Request-URI.
    pub fn concerns_host(&self, host: &str) -> bool {
        !host.is_empty()
            && (self.from_host == host || self.to_host == host || self.uri_host == host)
    }

    /// Bytes of text held.
    pub(crate) fn text_len(&self) -> usize {
        [
            &self.first_line,
            &self.call_id,
            &self.cseq,
            &self.from_user,
            &self.to_user,
            &self.uri_user,
            &self.from_host,
            &self.to_host,
            &self.uri_host,
        ]
        .iter()
        .map(|s| s.len())
        .sum()
    }
}

/// The header section's lines (without line ends), first line included; stops at the blank line.
fn head_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty())
}

fn text(b: &[u8]) -> String {
    let b = &b[..b.len().min(MAX_FIELD)];
    String::from_utf8_lossy(b).trim().to_owned()
}

/// Splits `Name: value` into the name and the value, trimmed.
fn header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    Some((line[..colon].trim_ascii(), line[colon + 1..].trim_ascii()))
}

/// The user and host of a SIP or tel URI, `sip:user:pw@host:port;params` style.
fn uri_parts(uri: &[u8]) -> (&[u8], &[u8]) {
    let uri = uri.trim_ascii();
    let rest = match uri.iter().position(|&b| b == b':') {
        Some(i)
            if uri[..i].eq_ignore_ascii_case(b"sip") || uri[..i].eq_ignore_ascii_case(b"sips") =>
        {
            &uri[i + 1..]
        }
        Some(i) if uri[..i].eq_ignore_ascii_case(b"tel") => {
            let end = uri[i + 1..]
                .iter()
                .position(|&b| b == b';')
                .map_or(uri.len(), |e| i + 1 + e);
            return (&uri[i + 1..end], &[]);
        }
        _ => uri,
    };
    let end = rest
        .iter()
        .position(|&b| b == b'>' || b == b'?' || b == b' ')
        .unwrap_or(rest.len());
    let rest = &rest[..end];
    let (user, host) = match rest.iter().position(|&b| b == b'@') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&rest[..0], rest),
    };
    // `user;params` (RFC 3261 telephone-subscriber) and `user:password`: the user alone.
    let user_end = user
        .iter()
        .position(|&b| b == b':' || b == b';')
        .unwrap_or(user.len());
    let host_end = if host.first() == Some(&b'[') {
        host.iter()
            .position(|&b| b == b']')
            .map_or(host.len(), |i| i + 1)
    } else {
        host.iter()
            .position(|&b| b == b':' || b == b';')
            .unwrap_or(host.len())
    };
    (user[..user_end].trim_ascii(), host[..host_end].trim_ascii())
}

/// The URI of a From/To value: inside `<…>` when there are brackets, else up to the first `;`.
fn name_addr_uri(value: &[u8]) -> &[u8] {
    if let Some(open) = value.iter().position(|&b| b == b'<') {
        let rest = &value[open + 1..];
        let close = rest.iter().position(|&b| b == b'>').unwrap_or(rest.len());
        return &rest[..close];
    }
    let end = value.iter().position(|&b| b == b';').unwrap_or(value.len());
    &value[..end]
}

/// The fields of a [`Summary`], borrowed from the message: what deciding whether to capture it
/// reads, with no allocation.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Fields<'a> {
    first_line: &'a [u8],
    call_id: &'a [u8],
    cseq: &'a [u8],
    pub(crate) users: [&'a [u8]; 3],
    /// From, To and Request-URI hosts, as written (any case).
    pub(crate) hosts: [&'a [u8]; 3],
}

impl Fields<'_> {
    pub(crate) fn to_summary(self) -> Summary {
        let [from_user, to_user, uri_user] = self.users.map(text);
        let [from_host, to_host, uri_host] = self.hosts.map(|h| text(h).to_ascii_lowercase());
        Summary {
            first_line: text(self.first_line),
            call_id: text(self.call_id),
            cseq: text(self.cseq),
            from_user,
            to_user,
            uri_user,
            from_host,
            to_host,
            uri_host,
        }
    }
}

/// Reads the fields of `bytes` (a request or a response, well-formed or not).
pub(crate) fn scan(bytes: &[u8]) -> Fields<'_> {
    const FROM: usize = 0;
    const TO: usize = 1;
    const URI: usize = 2;
    let mut f = Fields::default();
    let mut lines = head_lines(bytes);
    if let Some(first) = lines.next() {
        f.first_line = first;
        // `METHOD SP Request-URI SP SIP/2.0`; a status line starts with `SIP/`.
        if !first.starts_with(b"SIP/") {
            let mut parts = first.split(|&b| b == b' ').filter(|p| !p.is_empty());
            if let Some(uri) = parts.nth(1) {
                (f.users[URI], f.hosts[URI]) = uri_parts(uri);
            }
        }
    }
    let mut seen = 0u8;
    for line in lines {
        // Only Call-ID, CSeq, From and To (and their compact forms) are read.
        if !matches!(
            line.first(),
            Some(b'c' | b'C' | b'f' | b'F' | b't' | b'T' | b'i' | b'I')
        ) {
            continue;
        }
        let Some((name, value)) = header(line) else {
            continue;
        };
        let is = |long: &[u8], short: &[u8]| {
            name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(short)
        };
        if is(b"call-id", b"i") {
            f.call_id = value;
            seen |= 1;
        } else if is(b"from", b"f") {
            (f.users[FROM], f.hosts[FROM]) = uri_parts(name_addr_uri(value));
            seen |= 2;
        } else if is(b"to", b"t") {
            (f.users[TO], f.hosts[TO]) = uri_parts(name_addr_uri(value));
            seen |= 4;
        } else if name.eq_ignore_ascii_case(b"cseq") {
            f.cseq = value;
            seen |= 8;
        }
        if seen == 15 {
            break;
        }
    }
    f
}

/// Reads the summary of `bytes` (a request or a response, well-formed or not).
pub fn summarize(bytes: &[u8]) -> Summary {
    scan(bytes).to_summary()
}

/// `bytes` with the credentials of its `Authorization` and `Proxy-Authorization` headers masked:
/// a digest's `response` parameter, and everything after the scheme of any other scheme (`Basic`
/// carries the password itself). The body and every other header are unchanged.
pub fn mask_credentials(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    // Whether the header the current line continues is a credentials header, and its scheme.
    let mut in_auth: Option<bool> = None; // Some(is_digest)
    loop {
        let (line, ending, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i..=i], &rest[i + 1..]),
            None => (rest, &rest[..0], &rest[..0]),
        };
        let bare = line.strip_suffix(b"\r").unwrap_or(line);
        if bare.is_empty() {
            // End of the header section: the body is copied as it is.
            out.extend_from_slice(rest);
            return out;
        }
        let continuation = matches!(bare.first(), Some(b' ' | b'\t'));
        if !continuation {
            in_auth = None;
            if let Some((name, value)) = header(bare)
                && (name.eq_ignore_ascii_case(b"authorization")
                    || name.eq_ignore_ascii_case(b"proxy-authorization"))
            {
                let digest = value.len() >= 6 && value[..6].eq_ignore_ascii_case(b"digest");
                in_auth = Some(digest);
            }
        }
        match in_auth {
            Some(true) => mask_digest_response(line, &mut out),
            Some(false) if !continuation => mask_after_scheme(line, &mut out),
            Some(false) => mask_whole(line, &mut out),
            None => out.extend_from_slice(line),
        }
        out.extend_from_slice(ending);
        if next.is_empty() {
            return out;
        }
        rest = next;
    }
}

/// Copies a header line, replacing the value of every `response=` parameter with [`MASK`].
fn mask_digest_response(line: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    let mut quoted = false;
    while i < line.len() {
        let b = line[i];
        if b == b'"' {
            quoted = !quoted;
        }
        let at_param = !quoted
            && (i == 0 || matches!(line[i - 1], b' ' | b',' | b'\t'))
            && line.len() >= i + 8
            && line[i..i + 8].eq_ignore_ascii_case(b"response");
        if at_param {
            let mut j = i + 8;
            while j < line.len() && matches!(line[j], b' ' | b'\t') {
                j += 1;
            }
            if line.get(j) == Some(&b'=') {
                j += 1;
                while j < line.len() && matches!(line[j], b' ' | b'\t') {
                    j += 1;
                }
                out.extend_from_slice(&line[i..j]);
                // The value: a quoted string or a token.
                let end = if line.get(j) == Some(&b'"') {
                    line[j + 1..]
                        .iter()
                        .position(|&b| b == b'"')
                        .map_or(line.len(), |e| j + 2 + e)
                } else {
                    line[j..]
                        .iter()
                        .position(|&b| matches!(b, b',' | b' ' | b'\t' | b'\r'))
                        .map_or(line.len(), |e| j + e)
                };
                out.push(b'"');
                out.extend_from_slice(MASK.as_bytes());
                out.push(b'"');
                i = end;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
}

/// Copies `Name: Scheme` and masks what follows.
fn mask_after_scheme(line: &[u8], out: &mut Vec<u8>) {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return mask_whole(line, out);
    };
    let value_start = colon
        + 1
        + line[colon + 1..]
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(line.len() - colon - 1);
    let scheme_end = line[value_start..]
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .map_or(line.len(), |e| value_start + e);
    out.extend_from_slice(&line[..scheme_end]);
    if scheme_end < line.len() {
        out.extend_from_slice(b" ");
        out.extend_from_slice(MASK.as_bytes());
    }
    if line.ends_with(b"\r") {
        out.push(b'\r');
    }
}

/// Replaces a continuation line of a non-digest credential.
fn mask_whole(line: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b" ");
    out.extend_from_slice(MASK.as_bytes());
    if line.ends_with(b"\r") {
        out.push(b'\r');
    }
}
