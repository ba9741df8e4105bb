//! [`Message`] and [`parse`].

use rsip::prelude::UntypedHeader as _;
use rsip::{Header, Headers, Method, Request, Response, SipMessage, StatusCode, Version};

use super::CodecError;
use super::headers::{
    canonical_name, element_params, find_param, parts, split_list, starts_with_ignore_case, to_rsip,
};
use super::normalize::split;
use super::serialize::write_uri;
use super::uri::parse_request_uri;

/// Normalises raw bytes before parsing: bare-LF line endings become CRLF, folded header lines are
/// joined with one SP, compact header names are expanded (case-insensitively), whitespace around
/// the header colon becomes `Name: value`, the start line's whitespace is collapsed, and CRLFs
/// before the start line are dropped. The body is left untouched.
///
/// Refuses NUL and control bytes in the head, messages over [`super::MAX_MESSAGE_LEN`], more than
/// [`super::MAX_HEADERS`] headers and lines over [`super::MAX_HEADER_LEN`]. A head that ends
/// with the datagram after a complete line (no empty line) is accepted with an empty body.
pub fn normalize(raw: &[u8]) -> Result<Vec<u8>, CodecError> {
    split(raw).map(|n| n.to_bytes())
}

/// The top Via as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopVia {
    raw: String,
    transport: String,
    sent_by: String,
    branch: Option<String>,
}

/// A parsed, checked SIP message: rsip's model plus what the codec learned on the way.
///
/// The accessors (`call_id`, `cseq`, `top_via_branch`, tags, …) are read once by [`parse`] or
/// [`Message::from_sip`] and reflect the message as checked then: after changing `sip`, build a
/// new `Message` with [`Message::from_sip`] if you need them to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The message in rsip's model. Header values are as received (after normalisation); values
    /// that were not UTF-8 hold U+FFFD in place of the bad bytes.
    pub sip: SipMessage,
    /// Request-URI exactly as sent (digest hashes it verbatim); `None` for a response.
    pub raw_uri: Option<String>,
    /// Bytes the message occupied on the wire (0 for a message built with `from_sip`).
    pub wire_len: usize,
    call_id: String,
    cseq: (u32, Method),
    top_via: TopVia,
    from_tag: Option<String>,
    to_tag: Option<String>,
    max_forwards: Option<u32>,
    reason: Option<String>,
}

impl Message {
    /// Checks a message built in code (or changed after parsing) the way [`parse`] checks one from
    /// the wire, except for the Content-Length, which [`super::serialize`] always rewrites.
    pub fn from_sip(sip: SipMessage) -> Result<Self, CodecError> {
        let raw_uri = match &sip {
            SipMessage::Request(request) => {
                let mut uri = String::new();
                write_uri(&mut uri, &request.uri);
                Some(uri)
            }
            SipMessage::Response(_) => None,
        };
        let reason = match &sip {
            SipMessage::Response(response) => {
                Some(super::serialize::reason_phrase(&response.status_code))
            }
            SipMessage::Request(_) => None,
        };
        build(sip, raw_uri, 0, reason)
    }

    /// True for a request.
    pub fn is_request(&self) -> bool {
        self.sip.is_request()
    }

    /// The request method; for a response, the method of its CSeq.
    pub fn method(&self) -> Method {
        match &self.sip {
            SipMessage::Request(request) => request.method,
            SipMessage::Response(_) => self.cseq.1,
        }
    }

    /// The status code of a response.
    pub fn status_code(&self) -> Option<u16> {
        match &self.sip {
            SipMessage::Response(response) => Some(response.status_code.code()),
            SipMessage::Request(_) => None,
        }
    }

    /// The reason phrase of a response as received (rsip keeps it only for unknown codes).
    pub fn reason_phrase(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The Request-URI exactly as sent.
    pub fn request_uri(&self) -> Option<&str> {
        self.raw_uri.as_deref()
    }

    /// The Call-ID.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The CSeq number and method.
    pub fn cseq(&self) -> (u32, Method) {
        self.cseq
    }

    /// The first Via value (one element of a comma-separated list), as received.
    pub fn top_via(&self) -> &str {
        &self.top_via.raw
    }

    /// The top Via's transport, upper case as received (`UDP`, `TCP`, `TLS`, `WS`, …).
    pub fn top_via_transport(&self) -> &str {
        &self.top_via.transport
    }

    /// The top Via's sent-by (`host[:port]`, an IPv6 host in brackets).
    pub fn top_via_sent_by(&self) -> &str {
        &self.top_via.sent_by
    }

    /// The top Via's branch parameter (absent from RFC 2543 peers).
    pub fn top_via_branch(&self) -> Option<&str> {
        self.top_via.branch.as_deref()
    }

    /// A parameter of the top Via: `Some(None)` for a flag such as `rport`.
    pub fn top_via_param(&self, name: &str) -> Option<Option<&str>> {
        find_param(element_params(&self.top_via.raw), name)
    }

    /// Records where a request really came from in its top Via (RFC 3261 §18.2.1, RFC 3581):
    /// sets `received=<source ip>` (replacing any) and, when the Via has a valueless `rport`,
    /// `rport=<source port>`. Other Vias, including others on the same header line, are left
    /// alone, and the accessors follow the change. Does nothing to a response.
    pub fn stamp_received(&mut self, from: std::net::SocketAddr) {
        let SipMessage::Request(request) = &mut self.sip else {
            return;
        };
        let Some(via) = request.headers.iter_mut().find_map(|header| match header {
            Header::Via(via) => Some(via),
            _ => None,
        }) else {
            return;
        };
        let value = via.value();
        let Some(element) = split_list(value).next() else {
            return;
        };
        // `element` is a subslice of `value`: find its place to splice the new one in.
        let start = (element.as_ptr() as usize).saturating_sub(value.as_ptr() as usize);
        let end = start + element.len();
        let (base, params) = match element.split_once(';') {
            Some((base, params)) => (base.trim_end(), Some(params)),
            None => (element, None),
        };
        let mut stamped = base.to_owned();
        for param in params.into_iter().flat_map(|p| p.split(';')) {
            let name = param.split('=').next().unwrap_or("").trim();
            if name.eq_ignore_ascii_case("received") || name.is_empty() {
                continue;
            }
            stamped.push(';');
            if name.eq_ignore_ascii_case("rport") && !param.contains('=') {
                stamped.push_str(&format!("rport={}", from.port()));
            } else {
                stamped.push_str(param.trim());
            }
        }
        stamped.push_str(&format!(";received={}", from.ip()));
        let Some(top_via) = parse_via(&stamped) else {
            return;
        };
        let new_value = format!(
            "{}{}{}",
            value.get(..start).unwrap_or(""),
            stamped,
            value.get(end..).unwrap_or("")
        );
        *via = rsip::headers::Via::new(new_value);
        self.top_via = top_via;
    }

    /// The From tag.
    pub fn from_tag(&self) -> Option<&str> {
        self.from_tag.as_deref()
    }

    /// The To tag.
    pub fn to_tag(&self) -> Option<&str> {
        self.to_tag.as_deref()
    }

    /// Max-Forwards, when present (it is tolerated missing; see [`parse`]).
    pub fn max_forwards(&self) -> Option<u32> {
        self.max_forwards
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        self.sip.body()
    }

    /// The value of the first header with this name (case-insensitive; a compact name such as `i`
    /// finds `Call-ID`), as one line: a header repeated in one line by commas is not split.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.header_values(name).next()
    }

    /// The values of every header with this name, in order.
    pub fn header_values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + use<'a> {
        let name = canonical_name(name).to_owned();
        headers_of(&self.sip).iter().filter_map(move |header| {
            let (header_name, value) = parts(header);
            header_name.eq_ignore_ascii_case(&name).then_some(value)
        })
    }
}

fn headers_of(sip: &SipMessage) -> &Headers {
    match sip {
        SipMessage::Request(request) => &request.headers,
        SipMessage::Response(response) => &response.headers,
    }
}

/// A method from its (case-sensitive) wire token.
pub(crate) fn method_from_token(token: &str) -> Option<Method> {
    Some(match token {
        "ACK" => Method::Ack,
        "BYE" => Method::Bye,
        "CANCEL" => Method::Cancel,
        "INFO" => Method::Info,
        "INVITE" => Method::Invite,
        "MESSAGE" => Method::Message,
        "NOTIFY" => Method::Notify,
        "OPTIONS" => Method::Options,
        "PRACK" => Method::PRack,
        "PUBLISH" => Method::Publish,
        "REFER" => Method::Refer,
        "REGISTER" => Method::Register,
        "SUBSCRIBE" => Method::Subscribe,
        "UPDATE" => Method::Update,
        _ => return None,
    })
}

/// Whether a token is `SIP/<digits>.<digits>` (any version), case-insensitively.
fn is_sip_version(token: &str) -> bool {
    if !starts_with_ignore_case(token, "SIP/") {
        return false;
    }
    match token[4..].split_once('.') {
        Some((major, minor)) => {
            !major.is_empty()
                && !minor.is_empty()
                && major.bytes().all(|b| b.is_ascii_digit())
                && minor.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

fn is_sip_2(token: &str) -> bool {
    token.eq_ignore_ascii_case("SIP/2.0")
}

/// What the start line says.
enum StartLine<'a> {
    Request { method: Method, uri: &'a str },
    Response { code: u16, reason: &'a str },
}

fn parse_start_line(line: &str) -> Result<StartLine<'_>, CodecError> {
    // `normalize` collapsed whitespace to single SPs.
    let mut words = line.splitn(3, ' ');
    let first = words.next().unwrap_or("");
    if starts_with_ignore_case(first, "SIP/") {
        let code = words.next().unwrap_or("");
        let reason = words.next().unwrap_or("");
        if !is_sip_2(first) || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CodecError::BadStatusLine);
        }
        let code: u16 = code.parse().map_err(|_| CodecError::BadStatusLine)?;
        if !(100..=699).contains(&code) {
            return Err(CodecError::BadStatusLine);
        }
        return Ok(StartLine::Response { code, reason });
    }
    let (Some(uri), Some(version)) = (words.next(), words.next()) else {
        return Err(CodecError::BadStartLine);
    };
    if version.contains(' ') || !super::headers::is_token(first) {
        return Err(CodecError::BadStartLine);
    }
    if !is_sip_2(version) {
        return Err(if is_sip_version(version) {
            CodecError::UnsupportedVersion
        } else {
            CodecError::BadStartLine
        });
    }
    let method = method_from_token(first).ok_or(CodecError::UnsupportedMethod)?;
    Ok(StartLine::Request { method, uri })
}

/// Parses one datagram (or one message cut by [`super::StreamFramer`]).
///
/// After [`normalize`], checks:
/// * the start line (SIP/2.0 only; methods rsip models, case-sensitive; `sip:`/`sips:` URIs);
/// * for requests, the mandatory headers of RFC 3261 §8.1.1: Via, From, To, Call-ID, CSeq
///   (From, To, Call-ID and CSeq exactly once), and that the CSeq method is the request method;
///   for responses Via, From, To, Call-ID and CSeq;
/// * Max-Forwards is **tolerated when missing** (RFC 3261 says a UAC MUST send it, but it only
///   matters to loop detection, and a B2BUA sets its own on the leg it originates; Kamailio and
///   Asterisk accept requests without it). When present it must be a number and appear once;
///   answering 483 when it is 0 is the caller's job;
/// * Content-Length, when present, against the body: a longer body is cut to Content-Length
///   (RFC 3261 §18.3), a shorter one is [`CodecError::BodyTooShort`]. Without it the body is the
///   rest of the datagram.
pub fn parse(datagram: &[u8]) -> Result<Message, CodecError> {
    let normalized = split(datagram)?;
    let start_line =
        std::str::from_utf8(&normalized.start_line).map_err(|_| CodecError::BadStartLine)?;
    let start = parse_start_line(start_line)?;

    let mut headers = Vec::with_capacity(normalized.headers.len());
    let mut content_length: Option<usize> = None;
    for (name, value) in &normalized.headers {
        // Names are tokens (ASCII); values that are not UTF-8 are kept lossily.
        let name = String::from_utf8_lossy(name);
        let value = String::from_utf8_lossy(value);
        if name.eq_ignore_ascii_case("Content-Length") {
            let length = parse_number(&value)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or(CodecError::BadHeaderValue("Content-Length"))?;
            if content_length.is_some_and(|previous| previous != length) {
                return Err(CodecError::DuplicateHeader("Content-Length"));
            }
            content_length = Some(length);
        }
        headers.push(to_rsip(&name, &value));
    }

    let body = match content_length {
        Some(length) => normalized
            .body
            .get(..length)
            .ok_or(CodecError::BodyTooShort)?,
        None => normalized.body,
    };

    let headers = Headers::from(headers);
    let (sip, raw_uri, reason) = match start {
        StartLine::Request { method, uri } => {
            let parsed_uri = parse_request_uri(uri)?;
            let request = Request {
                method,
                uri: parsed_uri,
                version: Version::V2,
                headers,
                body: body.to_vec(),
            };
            (SipMessage::Request(request), Some(uri.to_owned()), None)
        }
        StartLine::Response { code, reason } => {
            let status_code = match StatusCode::from(code) {
                StatusCode::Other(code, _) => StatusCode::Other(code, reason.to_owned()),
                known => known,
            };
            let response = Response {
                status_code,
                version: Version::V2,
                headers,
                body: body.to_vec(),
            };
            (
                SipMessage::Response(response),
                None,
                Some(reason.to_owned()),
            )
        }
    };
    build(sip, raw_uri, datagram.len(), reason)
}

/// A non-negative decimal number of at most 10 digits.
fn parse_number(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `SIP / 2.0 / UDP host:port` (whitespace allowed around the slashes).
pub(crate) fn parse_via(element: &str) -> Option<TopVia> {
    let before_params = match element.find(';') {
        Some(i) => &element[..i],
        None => element,
    };
    let rest = before_params.trim_start();
    if !starts_with_ignore_case(rest, "SIP") {
        return None;
    }
    let rest = rest[3..].trim_start().strip_prefix('/')?.trim_start();
    let rest = rest
        .strip_prefix("2.0")?
        .trim_start()
        .strip_prefix('/')?
        .trim_start();
    let transport_len = rest
        .bytes()
        .position(|b| !super::headers::is_token_byte(b))
        .unwrap_or(rest.len());
    let transport = &rest[..transport_len];
    let sent_by = rest[transport_len..].trim();
    // sent-by is host[:port]: a hostname, an IPv4 address or a bracketed IPv6 address.
    if transport.is_empty()
        || sent_by.is_empty()
        || !rest[transport_len..].starts_with([' ', '\t'])
        || !sent_by
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_[]:".contains(&b))
    {
        return None;
    }
    let branch = find_param(element_params(element), "branch")
        .flatten()
        .filter(|b| !b.is_empty())
        .map(str::to_owned);
    Some(TopVia {
        raw: element.to_owned(),
        transport: transport.to_ascii_uppercase(),
        sent_by: sent_by.to_owned(),
        branch,
    })
}

/// A light check of a From/To value: something with a URI scheme in it.
fn check_name_addr(value: &str) -> bool {
    !value.trim().is_empty() && value.contains(':')
}

pub(crate) fn tag_of(value: &str) -> Option<String> {
    find_param(element_params(value), "tag")
        .flatten()
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// The single value of a header that must appear exactly once.
fn single<'a>(
    found: &mut Option<&'a str>,
    value: &'a str,
    name: &'static str,
) -> Result<(), CodecError> {
    if found.replace(value).is_some() {
        return Err(CodecError::DuplicateHeader(name));
    }
    Ok(())
}

fn build(
    sip: SipMessage,
    raw_uri: Option<String>,
    wire_len: usize,
    reason: Option<String>,
) -> Result<Message, CodecError> {
    let mut via: Option<&str> = None;
    let mut from: Option<&str> = None;
    let mut to: Option<&str> = None;
    let mut call_id: Option<&str> = None;
    let mut cseq: Option<&str> = None;
    let mut max_forwards: Option<&str> = None;
    for header in headers_of(&sip).iter() {
        let (_, value) = parts(header);
        match header {
            Header::Via(_) if via.is_none() => via = Some(value),
            Header::From(_) => single(&mut from, value, "From")?,
            Header::To(_) => single(&mut to, value, "To")?,
            Header::CallId(_) => single(&mut call_id, value, "Call-ID")?,
            Header::CSeq(_) => single(&mut cseq, value, "CSeq")?,
            Header::MaxForwards(_) => single(&mut max_forwards, value, "Max-Forwards")?,
            _ => {}
        }
    }

    let via = via.ok_or(CodecError::MissingHeader("Via"))?;
    let from = from.ok_or(CodecError::MissingHeader("From"))?;
    let to = to.ok_or(CodecError::MissingHeader("To"))?;
    let call_id = call_id.ok_or(CodecError::MissingHeader("Call-ID"))?;
    let cseq = cseq.ok_or(CodecError::MissingHeader("CSeq"))?;

    let top_via = split_list(via)
        .next()
        .and_then(parse_via)
        .ok_or(CodecError::BadHeaderValue("Via"))?;
    if !check_name_addr(from) {
        return Err(CodecError::BadHeaderValue("From"));
    }
    if !check_name_addr(to) {
        return Err(CodecError::BadHeaderValue("To"));
    }
    let call_id = call_id.trim();
    if call_id.is_empty() || call_id.contains([' ', '\t']) {
        return Err(CodecError::BadHeaderValue("Call-ID"));
    }

    let (seq, cseq_method) = cseq
        .trim()
        .split_once([' ', '\t'])
        .ok_or(CodecError::BadHeaderValue("CSeq"))?;
    let seq = parse_number(seq)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(CodecError::BadHeaderValue("CSeq"))?;
    let cseq_method = cseq_method.trim();
    let cseq_method = match (&sip, method_from_token(cseq_method)) {
        (SipMessage::Request(request), Some(m)) if m == request.method => m,
        (SipMessage::Request(_), _) if super::headers::is_token(cseq_method) => {
            return Err(CodecError::CSeqMismatch);
        }
        (SipMessage::Response(_), Some(m)) => m,
        _ => return Err(CodecError::BadHeaderValue("CSeq")),
    };

    let max_forwards = match max_forwards {
        Some(value) => Some(
            parse_number(value)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or(CodecError::BadHeaderValue("Max-Forwards"))?,
        ),
        None => None,
    };

    let summary = (call_id.to_owned(), tag_of(from), tag_of(to));
    Ok(Message {
        raw_uri,
        wire_len,
        call_id: summary.0,
        cseq: (seq, cseq_method),
        top_via,
        from_tag: summary.1,
        to_tag: summary.2,
        max_forwards,
        reason,
        sip,
    })
}
