//! Writing messages. rsip's `Display` gets several things wrong, fixed here:
//! * the body goes through `String::from_utf8_lossy` (binary bodies are corrupted);
//! * a known status code's reason phrase is its Rust variant name (`486 BusyHere`);
//! * `Host::IpAddr(V6)` is written without brackets, and `Scheme::Other("tel")` as `tel://`;
//! * Content-Length is whatever header the caller left (or none).
//!
//! [`serialize`] writes the RFC reason phrases, brackets IPv6 hosts, copies the body byte for
//! byte, and writes one correct Content-Length (in place of the first one, or last). CR, LF and other control
//! characters inside a header value or reason phrase become spaces, so a value copied from the
//! network cannot inject header lines.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;

use rsip::{Header, Headers, Host, Request, Response, Scheme, SipMessage, StatusCode, Uri};

use super::headers::parts;

/// The RFC reason phrase of a status code rsip knows.
fn standard_reason(code: u16) -> Option<&'static str> {
    Some(match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        424 => "Bad Location Information",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        433 => "Anonymity Disallowed",
        436 => "Bad Identity-Info",
        437 => "Unsupported Certificate",
        438 => "Invalid Identity Header",
        439 => "First Hop Lacks Outbound Support",
        440 => "Max-Breadth Exceeded",
        469 => "Bad Info Package",
        470 => "Consent Needed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        _ => return None,
    })
}

fn is_bad(c: char) -> bool {
    c.is_ascii_control() && c != '\t'
}

/// Replaces ASCII control characters (CR, LF, NUL, DEL, …; not HT) with spaces: those are what
/// could break the framing. Non-ASCII text (C1 controls included) is UTF-8 that parsing accepts,
/// so it is kept, and what parses survives serialize → parse unchanged.
pub(crate) fn sanitize(text: &str) -> Cow<'_, str> {
    if text.chars().any(is_bad) {
        Cow::Owned(
            text.chars()
                .map(|c| if is_bad(c) { ' ' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

/// The reason phrase to write: `StatusCode::Other(code, reason)` keeps its reason (that is how to
/// send a custom one, e.g. `Other(400, "Missing Call-ID")`); a known code gets the RFC phrase.
pub(crate) fn reason_phrase(status: &StatusCode) -> String {
    match status {
        StatusCode::Other(_, reason) => sanitize(reason).into_owned(),
        known => standard_reason(known.code()).unwrap_or("").to_owned(),
    }
}

/// Writes a URI the way it should look on the wire.
pub(crate) fn write_uri(out: &mut String, uri: &Uri) {
    match &uri.scheme {
        Some(Scheme::Sip) => out.push_str("sip:"),
        Some(Scheme::Sips) => out.push_str("sips:"),
        Some(Scheme::Other(other)) => {
            out.push_str(other);
            out.push(':');
        }
        None => {}
    }
    if let Some(auth) = &uri.auth {
        out.push_str(&auth.user);
        if let Some(password) = &auth.password {
            out.push(':');
            out.push_str(password);
        }
        out.push('@');
    }
    match &uri.host_with_port.host {
        Host::IpAddr(IpAddr::V6(v6)) => {
            let _ = write!(out, "[{v6}]");
        }
        host => {
            let _ = write!(out, "{host}");
        }
    }
    if let Some(port) = &uri.host_with_port.port {
        let _ = write!(out, ":{port}");
    }
    for param in &uri.params {
        let _ = write!(out, "{param}");
    }
}

/// Writes a message for the wire. See the module documentation for what differs from rsip's
/// `Display`.
pub fn serialize(msg: &SipMessage) -> Vec<u8> {
    match msg {
        SipMessage::Request(request) => serialize_request(request),
        SipMessage::Response(response) => serialize_response(response),
    }
}

/// [`serialize`] for a request, without wrapping it in a [`SipMessage`].
pub fn serialize_request(request: &Request) -> Vec<u8> {
    let mut head = String::with_capacity(512);
    let _ = write!(head, "{} ", request.method);
    write_uri(&mut head, &request.uri);
    head.push_str(" SIP/2.0\r\n");
    finish(head, &request.headers, &request.body)
}

/// [`serialize`] for a response, without wrapping it in a [`SipMessage`].
pub fn serialize_response(response: &Response) -> Vec<u8> {
    let mut head = String::with_capacity(512);
    let _ = write!(
        head,
        "SIP/2.0 {} {}\r\n",
        response.status_code.code(),
        reason_phrase(&response.status_code)
    );
    finish(head, &response.headers, &response.body)
}

/// The header lines, one correct Content-Length, the blank line and the body.
fn finish(mut head: String, headers: &Headers, body: &[u8]) -> Vec<u8> {
    let mut wrote_length = false;
    for header in headers.iter() {
        if matches!(header, Header::ContentLength(_)) {
            // The first one, in its place, with the right value; any other is dropped.
            if !wrote_length {
                let _ = write!(head, "Content-Length: {}\r\n", body.len());
                wrote_length = true;
            }
            continue;
        }
        let (name, value) = parts(header);
        head.push_str(&sanitize(name));
        head.push_str(": ");
        head.push_str(&sanitize(value));
        head.push_str("\r\n");
    }
    if !wrote_length {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}
