//! Building responses to requests the PBX answers itself.

use rsip::Header;
use rsip::headers::UntypedHeader as _;
use sha2::{Digest as _, Sha256};

/// What the PBX calls itself in `Server` and `User-Agent`: no version, nothing to fingerprint.
pub(crate) const AGENT: &str = "pbx";
pub(crate) const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, REFER, NOTIFY, SUBSCRIBE";

/// A response to `req` with its Via, From, To (with our tag), Call-ID and CSeq.
pub(crate) fn reply(req: &rsip::Request, code: u16, reason: Option<&str>) -> rsip::Response {
    let mut headers = rsip::Headers::default();
    let mut to_seen = false;
    for h in req.headers.iter() {
        match h {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                headers.push(h.clone())
            }
            Header::To(to) if !to_seen => {
                to_seen = true;
                let value = to.value();
                let tagged = if has_tag(value) || code == 100 {
                    value.to_owned()
                } else {
                    format!("{value};tag={}", to_tag(req))
                };
                headers.push(Header::To(rsip::headers::To::from(tagged)));
            }
            _ => {}
        }
    }
    headers.push(Header::Server(rsip::headers::Server::from(AGENT)));
    // rsip prints known codes by their variant name ("BusyHere"): always give the phrase.
    let status_code =
        rsip::StatusCode::Other(code, reason.unwrap_or_else(|| phrase(code)).to_owned());
    rsip::Response {
        status_code,
        version: rsip::Version::V2,
        headers,
        body: Vec::new(),
    }
}

/// Appends `Content-Length: 0` (after any headers the caller adds).
pub(crate) fn finish(mut resp: rsip::Response) -> rsip::Response {
    resp.headers
        .push(Header::ContentLength(rsip::headers::ContentLength::from(
            "0",
        )));
    resp
}

/// RFC 3261 §21 reason phrases for the codes the PBX sends.
pub(crate) fn phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        433 => "Anonymity Disallowed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        603 => "Decline",
        504 => "Server Time-out",
        _ => "Unknown",
    }
}

fn has_tag(value: &str) -> bool {
    value
        .rsplit_once('>')
        .map_or(value, |(_, params)| params)
        .split(';')
        .any(|p| p.trim().to_ascii_lowercase().starts_with("tag="))
}

/// A To-tag derived from the request, so every answer to one transaction carries the same tag and
/// nothing about it depends on whether the target exists.
fn to_tag(req: &rsip::Request) -> String {
    let mut h = Sha256::new();
    for header in req.headers.iter() {
        if let Header::CallId(c) = header {
            h.update(c.value().as_bytes());
        }
        if let Header::From(f) = header {
            h.update(f.value().as_bytes());
        }
    }
    hex::encode(&h.finalize()[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_a_stable_to_tag_and_copies_the_dialog_headers() {
        let raw = "REGISTER sip:pbx SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.20:5062;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP 198.18.0.9;branch=z9hG4bK0\r\nFrom: <sip:1001@pbx>;tag=a\r\nTo: <sip:1001@pbx>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let req = rsip::Request::try_from(raw).unwrap();
        let a = finish(reply(&req, 401, None)).to_string();
        let b = finish(reply(&req, 200, None)).to_string();
        assert!(a.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{a}");
        assert_eq!(a.matches("Via:").count(), 2);
        let tag = |s: &str| s.lines().find(|l| l.starts_with("To:")).unwrap().to_owned();
        assert_eq!(tag(&a), tag(&b));
        assert!(tag(&a).contains(";tag="));
        assert!(a.contains("Content-Length: 0"));
    }
}
