//! Messages the layer builds itself: the ACK for a non-2xx final (§17.1.1.3), CANCEL (§9.1), and the
//! responses it sends on its own (`100 Trying`, `200`/`481` to CANCEL, `400`, `408`, `503`).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use rsip::headers::{CSeq, CallId, ContentLength, MaxForwards, To, Via};
use rsip::prelude::UntypedHeader;
use rsip::{Header, Headers, Method, Request, Response, StatusCode};

use super::key::{is_via, tag_param};

/// The wire form, through the codec's writer: RFC reason phrases, one correct Content-Length, the
/// body byte for byte, and no header injection (rsip's `Display` gets each of these wrong).
pub(crate) fn encode_request(req: &Request) -> Vec<u8> {
    crate::codec::serialize_request(req)
}

pub(crate) fn encode_response(resp: &Response) -> Vec<u8> {
    crate::codec::serialize_response(resp)
}

/// Unique To tags for the responses the layer builds. Seeded from std's per-process random hasher keys,
/// so the crate reads no clock and needs no RNG dependency.
#[derive(Debug)]
pub(crate) struct TagGen {
    hasher: RandomState,
    counter: u64,
}

impl TagGen {
    pub(crate) fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            counter: 0,
        }
    }

    pub(crate) fn next(&mut self) -> String {
        self.counter = self.counter.wrapping_add(1);
        format!("{:016x}", self.hasher.hash_one(self.counter))
    }
}

/// The request headers a response copies (§8.2.6.2): every Via in order, From, To, Call-ID, CSeq, and
/// Timestamp (echoed in a `100 Trying`, §8.2.6.1).
pub(crate) fn response_skeleton(headers: &Headers) -> Vec<Header> {
    headers
        .iter()
        .filter(|h| {
            is_via(h)
                || matches!(
                    h,
                    Header::From(_)
                        | Header::To(_)
                        | Header::CallId(_)
                        | Header::CSeq(_)
                        | Header::Timestamp(_)
                )
                || matches!(h, Header::Other(name, _)
                    if ["f", "t", "i"].iter().any(|c| name.eq_ignore_ascii_case(c)))
        })
        .cloned()
        .collect()
}

/// The standard reason phrase (rsip would print its variant name, e.g. `BusyHere`).
pub(crate) fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        200 => "OK",
        400 => "Bad Request",
        408 => "Request Timeout",
        481 => "Call/Transaction Does Not Exist",
        487 => "Request Terminated",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A response built from a skeleton. The To tag is added (unless present) for everything but `100`.
pub(crate) fn build_response(
    skeleton: &[Header],
    code: u16,
    reason_phrase: &str,
    to_tag: Option<&str>,
) -> Response {
    let mut headers = Headers::default();
    for header in skeleton {
        match header {
            Header::Timestamp(_) if code != 100 => {}
            Header::To(to) => headers.push(Header::To(To::new(with_tag(to.value(), to_tag)))),
            Header::Other(name, value) if name.eq_ignore_ascii_case("t") => {
                headers.push(Header::To(To::new(with_tag(value, to_tag))));
            }
            Header::Other(name, value) if name.eq_ignore_ascii_case("f") => {
                headers.push(Header::From(rsip::headers::From::new(value.clone())));
            }
            Header::Other(name, value) if name.eq_ignore_ascii_case("i") => {
                headers.push(Header::CallId(CallId::new(value.clone())));
            }
            Header::Other(name, value) if name.eq_ignore_ascii_case("v") => {
                headers.push(Header::Via(Via::new(value.clone())));
            }
            other => headers.push(other.clone()),
        }
    }
    headers.push(Header::ContentLength(ContentLength::default()));
    Response {
        status_code: StatusCode::Other(code, reason_phrase.to_owned()),
        version: rsip::Version::V2,
        headers,
        body: Vec::new(),
    }
}

fn with_tag(to: &str, tag: Option<&str>) -> String {
    match tag {
        Some(tag) if tag_param(to).is_none() => format!("{to};tag={tag}"),
        _ => to.to_owned(),
    }
}

/// The request headers a CANCEL or a non-2xx ACK copies from its INVITE.
struct Copied<'a> {
    from: Option<&'a Header>,
    to: Option<&'a Header>,
    call_id: Option<&'a Header>,
    routes: Vec<&'a Header>,
}

fn copied(invite: &Request) -> Copied<'_> {
    let mut copied = Copied {
        from: None,
        to: None,
        call_id: None,
        routes: Vec::new(),
    };
    for header in invite.headers.iter() {
        match header {
            Header::From(_) => copied.from = copied.from.or(Some(header)),
            Header::To(_) => copied.to = copied.to.or(Some(header)),
            Header::CallId(_) => copied.call_id = copied.call_id.or(Some(header)),
            Header::Route(_) => copied.routes.push(header),
            _ => {}
        }
    }
    copied
}

fn in_dialog_request(
    method: Method,
    invite: &Request,
    top_via: &str,
    to: Option<Header>,
    seq: u32,
) -> Request {
    let copied = copied(invite);
    let mut headers = Headers::default();
    headers.push(Header::Via(Via::new(top_via)));
    headers.push(Header::MaxForwards(MaxForwards::from(70_u32)));
    for route in copied.routes {
        headers.push(route.clone());
    }
    if let Some(from) = copied.from {
        headers.push(from.clone());
    }
    if let Some(to) = to.or_else(|| copied.to.cloned()) {
        headers.push(to);
    }
    if let Some(call_id) = copied.call_id {
        headers.push(call_id.clone());
    }
    headers.push(Header::CSeq(CSeq::new(format!("{seq} {method}"))));
    headers.push(Header::ContentLength(ContentLength::default()));
    Request {
        method,
        uri: invite.uri.clone(),
        version: rsip::Version::V2,
        headers,
        body: Vec::new(),
    }
}

/// The ACK for a non-2xx final response (§17.1.1.3): the INVITE's Request-URI, top Via, From, Call-ID,
/// CSeq number and Route set; the To of the response.
pub(crate) fn build_ack(invite: &Request, top_via: &str, seq: u32, response: &Response) -> Request {
    let to = response.headers.iter().find_map(|h| match h {
        Header::To(to) => Some(Header::To(to.clone())),
        Header::Other(name, value) if name.eq_ignore_ascii_case("t") => {
            Some(Header::To(To::new(value.clone())))
        }
        _ => None,
    });
    in_dialog_request(Method::Ack, invite, top_via, to, seq)
}

/// The CANCEL for an INVITE (§9.1): same Request-URI, top Via, From, To, Call-ID, CSeq number and
/// Route set as the INVITE, method CANCEL.
pub(crate) fn build_cancel(invite: &Request, top_via: &str, seq: u32) -> Request {
    in_dialog_request(Method::Cancel, invite, top_via, None, seq)
}
