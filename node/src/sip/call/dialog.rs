//! Building the messages of a call's two dialogs: requests the PBX sends on a leg, and its responses to
//! a phone's requests. The PBX is a back-to-back user agent: each leg has its own Call-ID, tags, CSeq
//! and Contact, so nothing from one phone's dialog leaks into the other's.

use std::net::SocketAddr;

use rand::Rng as _;
use rsip::Header;
use rsip::headers::UntypedHeader as _;

use pbx_sip::codec;
use pbx_sip::transaction::Transport;
use storage::model::DialogLeg;

use crate::sip::reply::{AGENT, ALLOW, phrase};

/// Headers passed from one leg's request or response to the other's: session timers (RFC 4028) and
/// content negotiation. Everything else stays on its own leg.
const PASSED_THROUGH: [&str; 6] = [
    "Session-Expires",
    "Min-SE",
    "Supported",
    "Require",
    "Accept",
    "Subject",
];

/// A random token for tags, Call-IDs and branches.
pub(crate) fn token() -> String {
    let n: u128 = rand::thread_rng().r#gen();
    format!("{n:032x}")
}

pub(crate) fn proto(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
        Transport::Tls => "TLS",
    }
}

pub(crate) fn transport_param(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
    }
}

pub(crate) fn transport_from(name: &str) -> Option<Transport> {
    match name {
        "udp" => Some(Transport::Udp),
        "tcp" => Some(Transport::Tcp),
        "tls" => Some(Transport::Tls),
        _ => None,
    }
}

/// Where a recorded leg's phone is reached, and over what.
pub(crate) fn peer_of(leg: &DialogLeg) -> Result<pbx_sip::transaction::Peer, String> {
    let transport = transport_from(&leg.transport)
        .ok_or_else(|| format!("unknown transport {:?}", leg.transport))?;
    let addr = leg
        .peer
        .parse()
        .map_err(|_| format!("bad peer address {:?}", leg.peer))?;
    Ok(pbx_sip::transaction::Peer { transport, addr })
}

/// The PBX's Contact on a leg: the user part names the extension the phone talks to.
pub(crate) fn contact_uri(user: &str, local: SocketAddr, t: Transport) -> String {
    let scheme = if t == Transport::Tls { "sips" } else { "sip" };
    format!("<{scheme}:{user}@{local};transport={}>", transport_param(t))
}

/// Headers copied from `from` to a message on the other leg. `100rel` is taken out of `Supported`
/// and `Require`: reliable provisional responses are handled per leg (the PBX PRACKs the callee's
/// itself, and sends the caller unreliable ones), so neither phone may be told the other's choice.
pub(crate) fn passed_headers(headers: &rsip::Headers) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in PASSED_THROUGH {
        for v in codec::header_values(headers, name) {
            let v = if matches!(name, "Supported" | "Require") {
                without_option(v, "100rel")
            } else {
                v.trim().to_owned()
            };
            if v.is_empty() {
                continue;
            }
            out.push((name.to_owned(), v));
        }
    }
    out
}

/// An option-tag list without `option`.
fn without_option(list: &str, option: &str) -> String {
    list.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty() && !o.eq_ignore_ascii_case(option))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The body and its type, when a message has one.
pub(crate) fn body_of<'a>(
    headers: &'a rsip::Headers,
    body: &'a [u8],
) -> Option<(&'a str, &'a [u8])> {
    if body.is_empty() {
        return None;
    }
    let ctype = codec::header_values(headers, "Content-Type")
        .next()
        .unwrap_or("");
    Some((ctype, body))
}

/// Whether a message's body is a session description.
pub(crate) fn is_sdp(ctype: &str) -> bool {
    ctype
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
}

/// A request the PBX sends on `leg` (in-dialog, or the initial INVITE when `remote_tag` is empty).
#[expect(
    clippy::too_many_arguments,
    reason = "one place that writes every request"
)]
pub(crate) fn request(
    method: &str,
    leg: &DialogLeg,
    local: SocketAddr,
    transport: Transport,
    cseq: u32,
    max_forwards: u32,
    extra: &[(String, String)],
    body: Option<(&str, &[u8])>,
) -> Option<rsip::Request> {
    let mut text = format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/{proto} {local};branch=z9hG4bK{branch};rport\r\nMax-Forwards: {max_forwards}\r\n",
        target = leg.remote_target,
        proto = proto(transport),
        branch = token(),
    );
    for route in &leg.route_set {
        text.push_str(&format!("Route: {route}\r\n"));
    }
    text.push_str(&format!(
        "From: {};tag={}\r\n",
        leg.local_uri, leg.local_tag
    ));
    if leg.remote_tag.is_empty() {
        text.push_str(&format!("To: {}\r\n", leg.remote_uri));
    } else {
        text.push_str(&format!(
            "To: {};tag={}\r\n",
            leg.remote_uri, leg.remote_tag
        ));
    }
    text.push_str(&format!(
        "Call-ID: {}\r\nCSeq: {cseq} {method}\r\n",
        leg.call_id
    ));
    if method != "ACK" && method != "BYE" {
        text.push_str(&format!(
            "Contact: {}\r\nAllow: {ALLOW}\r\n",
            leg.local_contact
        ));
    }
    text.push_str(&format!("User-Agent: {AGENT}\r\n"));
    for (name, value) in extra {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or(("", b""));
    if !body.1.is_empty() {
        text.push_str(&format!("Content-Type: {}\r\n", body.0));
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n", body.1.len()));
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body.1);
    match codec::parse(&bytes).ok()?.sip {
        rsip::SipMessage::Request(req) => Some(req),
        rsip::SipMessage::Response(_) => None,
    }
}

/// The PBX's response to a phone's request on its leg: the request's Via, From, Call-ID and CSeq, its
/// To with our `tag`, our Contact on 1xx/2xx to INVITE, and the body given.
pub(crate) fn response(
    req: &rsip::Request,
    code: u16,
    reason: Option<&str>,
    tag: &str,
    contact: Option<&str>,
    extra: &[(String, String)],
    body: Option<(&str, &[u8])>,
) -> rsip::Response {
    let mut headers = rsip::Headers::default();
    let mut to_seen = false;
    for h in req.headers.iter() {
        match h {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                headers.push(h.clone());
            }
            Header::RecordRoute(_) if (101..300).contains(&code) => headers.push(h.clone()),
            Header::To(to) if !to_seen => {
                to_seen = true;
                let value = to.value();
                let tagged = if codec::element_param(value, "tag").is_some() || code == 100 {
                    value.to_owned()
                } else {
                    format!("{value};tag={tag}")
                };
                headers.push(Header::To(rsip::headers::To::from(tagged)));
            }
            _ => {}
        }
    }
    if let Some(contact) = contact {
        headers.push(Header::Contact(rsip::headers::Contact::from(contact)));
        headers.push(Header::Allow(rsip::headers::Allow::from(ALLOW)));
    }
    headers.push(Header::Server(rsip::headers::Server::from(AGENT)));
    for (name, value) in extra {
        headers.push(Header::Other(name.clone(), value.clone()));
    }
    let body = match body {
        Some((ctype, bytes)) if !bytes.is_empty() => {
            headers.push(Header::ContentType(rsip::headers::ContentType::from(ctype)));
            bytes.to_vec()
        }
        _ => Vec::new(),
    };
    headers.push(Header::ContentLength(rsip::headers::ContentLength::from(
        body.len().to_string(),
    )));
    rsip::Response {
        status_code: rsip::StatusCode::Other(
            code,
            reason.unwrap_or_else(|| phrase(code)).to_owned(),
        ),
        version: rsip::Version::V2,
        headers,
        body,
    }
}

/// The URI inside a name-addr (`"Bob" <sip:b@h>;tag=x` → `sip:b@h`) or an addr-spec.
pub(crate) fn uri_of(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(open), Some(close)) if close > open => &value[open + 1..close],
        _ => value.split(';').next().unwrap_or(value).trim(),
    }
}

/// A From/To value without its tag parameter, for the dialog's stored URIs.
pub(crate) fn without_tag(value: &str) -> String {
    let value = value.trim();
    match value.rfind('>') {
        Some(close) => value[..=close].to_owned(),
        None => {
            let uri = value.split(';').next().unwrap_or(value).trim();
            format!("<{uri}>")
        }
    }
}

/// The first value of a header.
pub(crate) fn first<'a>(headers: &'a rsip::Headers, name: &str) -> Option<&'a str> {
    codec::header_values(headers, name).next()
}

/// The tag of the first From or To.
pub(crate) fn tag_of(headers: &rsip::Headers, name: &str) -> Option<String> {
    let value = first(headers, name)?;
    codec::element_param(value, "tag")
        .flatten()
        .map(str::to_owned)
}

/// The CSeq number.
pub(crate) fn cseq_of(headers: &rsip::Headers) -> Option<u32> {
    first(headers, "CSeq")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The Contact URI (the remote target).
pub(crate) fn contact_of(headers: &rsip::Headers) -> Option<String> {
    let value = first(headers, "Contact")?;
    let element = codec::list(value).next()?;
    let uri = uri_of(element);
    (!uri.is_empty() && uri.len() <= 512).then(|| uri.to_owned())
}

/// The Record-Route values, each element on its own, in message order.
pub(crate) fn record_routes(headers: &rsip::Headers) -> Vec<String> {
    codec::header_values(headers, "Record-Route")
        .flat_map(codec::list)
        .take(16)
        .map(str::to_owned)
        .collect()
}

/// ACK and BYE for a 2xx nobody wants (a fork that answered after another won, or after the call
/// ended): the phone must stop ringing and not think a call is up (RFC 3261 §13.2.2.4).
pub(crate) fn refuse_late_answer(
    resp: &rsip::Response,
    local: SocketAddr,
    transport: Transport,
) -> Option<(rsip::Request, rsip::Request)> {
    let headers = &resp.headers;
    let leg = DialogLeg {
        extension: String::new(),
        call_id: first(headers, "Call-ID")?.to_owned(),
        local_tag: tag_of(headers, "From")?,
        remote_tag: tag_of(headers, "To")?,
        local_cseq: cseq_of(headers)?,
        remote_cseq: 0,
        local_uri: without_tag(first(headers, "From")?),
        remote_uri: without_tag(first(headers, "To")?),
        remote_target: contact_of(headers)?,
        route_set: record_routes(headers).into_iter().rev().collect(),
        local_contact: String::new(),
        peer: String::new(),
        transport: String::new(),
        remote_sdp: String::new(),
    };
    let ack = request("ACK", &leg, local, transport, leg.local_cseq, 70, &[], None)?;
    let bye = request(
        "BYE",
        &leg,
        local,
        transport,
        leg.local_cseq + 1,
        70,
        &[],
        None,
    )?;
    Some((ack, bye))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg() -> DialogLeg {
        DialogLeg {
            extension: "1002".into(),
            call_id: "b-call".into(),
            local_tag: "ours".into(),
            remote_tag: "theirs".into(),
            local_cseq: 1,
            remote_cseq: 0,
            local_uri: "\"Alice\" <sip:1001@pbx>".into(),
            remote_uri: "<sip:1002@pbx>".into(),
            remote_target: "sip:1002@198.18.0.22:5062;transport=udp".into(),
            route_set: vec![],
            local_contact: "<sip:1001@198.18.0.10:5060;transport=udp>".into(),
            peer: "198.18.0.22:5062".into(),
            transport: "udp".into(),
            remote_sdp: String::new(),
        }
    }

    #[test]
    fn in_dialog_requests_carry_the_legs_identity() {
        let local: SocketAddr = "198.18.0.10:5060".parse().unwrap();
        let body = b"v=0\r\n";
        let req = request(
            "INVITE",
            &leg(),
            local,
            Transport::Udp,
            2,
            70,
            &[("Session-Expires".into(), "1800".into())],
            Some(("application/sdp", body)),
        )
        .unwrap();
        let text = req.to_string();
        // rsip writes URI parameter values its own way (`transport=UDP`): they are case-insensitive.
        assert!(
            text.to_ascii_lowercase()
                .starts_with("invite sip:1002@198.18.0.22:5062;transport=udp sip/2.0\r\n"),
            "{text}"
        );
        assert_eq!(tag_of(&req.headers, "From").as_deref(), Some("ours"));
        assert_eq!(tag_of(&req.headers, "To").as_deref(), Some("theirs"));
        assert_eq!(cseq_of(&req.headers), Some(2));
        assert!(text.contains("Session-Expires: 1800"));
        assert!(text.ends_with("\r\n\r\nv=0\r\n"));
    }

    #[test]
    fn a_late_answer_is_acked_and_hung_up_in_its_own_dialog() {
        let raw = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.18.0.10:5060;branch=z9hG4bKx\r\nFrom: <sip:1001@pbx>;tag=ours\r\nTo: <sip:1002@pbx>;tag=late\r\nCall-ID: fork-2\r\nCSeq: 1 INVITE\r\nContact: <sip:1002@198.18.0.23:5060>\r\nContent-Length: 0\r\n\r\n";
        let rsip::SipMessage::Response(resp) = codec::parse(raw).unwrap().sip else {
            panic!("not a response");
        };
        let (ack, bye) =
            refuse_late_answer(&resp, "198.18.0.10:5060".parse().unwrap(), Transport::Udp).unwrap();
        assert_eq!(ack.method, rsip::Method::Ack);
        assert_eq!(cseq_of(&ack.headers), Some(1));
        assert_eq!(bye.method, rsip::Method::Bye);
        assert_eq!(cseq_of(&bye.headers), Some(2));
        assert_eq!(tag_of(&bye.headers, "To").as_deref(), Some("late"));
        assert_eq!(bye.uri.to_string(), "sip:1002@198.18.0.23:5060");
    }

    #[test]
    fn uris_and_tags_come_out_of_name_addrs() {
        assert_eq!(
            uri_of("\"Bob\" <sip:b@h;transport=tcp>;tag=x"),
            "sip:b@h;transport=tcp"
        );
        assert_eq!(uri_of("sip:b@h;tag=x"), "sip:b@h");
        assert_eq!(without_tag("\"Bob\" <sip:b@h>;tag=x"), "\"Bob\" <sip:b@h>");
        assert_eq!(without_tag("sip:b@h;tag=x"), "<sip:b@h>");
    }
}
