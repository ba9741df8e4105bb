//! The PBX's answers to SIP requests (the transaction user): REGISTER goes to the registrar, OPTIONS is
//! answered at once, everything else gets an answer that reveals nothing about which extensions exist.

use std::sync::Arc;

use rsip::Header;
use rsip::headers::UntypedHeader as _;

use cluster::Cluster;
use pbx_sip::transaction::{Peer, ServerTxId};
use storage::model::{Binding, UnixMillis};

use super::auth::{AuthOutcome, SipAuth};
use super::contact::parse_contacts;
use super::endpoint::EndpointHandle;
use super::registrar::{self, Decision, RegisterInfo, RegistrarConfig};
use super::reply::{ALLOW, finish, reply};
use super::transport::transport_name;
use super::writer::BindingWriter;
use crate::time::now_millis;

pub(crate) struct Handler {
    pub(crate) cluster: Cluster,
    pub(crate) auth: Arc<SipAuth>,
    pub(crate) calls: Arc<super::call::Calls>,
    pub(crate) registrar: RegistrarConfig,
    pub(crate) writer: BindingWriter,
    pub(crate) endpoint: EndpointHandle,
    pub(crate) presence: Arc<super::presence::Presence>,
}

impl Handler {
    /// Answers at once when it can; otherwise spawns the work and answers through the endpoint later.
    /// `raw_uri` is the Request-URI exactly as received, which digest authentication compares.
    pub(crate) fn on_request(
        self: &Arc<Self>,
        tx: ServerTxId,
        req: rsip::Request,
        raw_uri: String,
        peer: Peer,
    ) -> Option<rsip::Response> {
        let method = req.method.to_string();
        metrics::counter!("pbx_sip_requests_total", "method" => method).increment(1);
        match req.method {
            rsip::Method::Register => {
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    let resp = this.register(&req, &raw_uri, peer).await;
                    this.endpoint.respond(tx, resp).await;
                });
                None
            }
            rsip::Method::Options => {
                if has_to_tag(&req) && self.calls.route_request(tx, req.clone()) {
                    return None;
                }
                Some(options(&req))
            }
            rsip::Method::Invite if !has_to_tag(&req) => {
                self.calls
                    .start(tx, req, raw_uri, peer, Arc::clone(&self.auth));
                None
            }
            rsip::Method::Subscribe
                if has_to_tag(&req) && self.calls.route_request(tx, req.clone()) =>
            {
                // The implicit subscription of a REFER, in the call's dialog.
                None
            }
            rsip::Method::Subscribe => {
                let presence = Arc::clone(&self.presence);
                tokio::spawn(async move { presence.subscribe(tx, req, raw_uri, peer).await });
                None
            }
            rsip::Method::Ack => None,
            rsip::Method::Invite
            | rsip::Method::Bye
            | rsip::Method::Update
            | rsip::Method::Info
            | rsip::Method::Notify
            | rsip::Method::Message
            | rsip::Method::Refer
            | rsip::Method::PRack => {
                let answer = finish(reply(&req, 481, None));
                if self.calls.route_request(tx, req) {
                    None
                } else {
                    Some(answer)
                }
            }
            _ => {
                let mut resp = reply(&req, 405, None);
                resp.headers
                    .push(Header::Allow(rsip::headers::Allow::from(ALLOW)));
                Some(finish(resp))
            }
        }
    }

    async fn register(&self, req: &rsip::Request, raw_uri: &str, peer: Peer) -> rsip::Response {
        let started = std::time::Instant::now();
        let now = now_millis();
        let resp = self.register_inner(req, raw_uri, peer, now).await;
        let code = resp.status_code.code().to_string();
        metrics::counter!("pbx_sip_register_total", "status" => code).increment(1);
        metrics::histogram!("pbx_sip_register_seconds").record(started.elapsed().as_secs_f64());
        resp
    }

    async fn register_inner(
        &self,
        req: &rsip::Request,
        raw_uri: &str,
        peer: Peer,
        now: UnixMillis,
    ) -> rsip::Response {
        let Some(aor) = to_user(req) else {
            return finish(reply(req, 400, Some("To header without a user")));
        };
        let user = match self.auth.check(req, raw_uri, now, false, peer) {
            AuthOutcome::Authenticated { username } => username,
            AuthOutcome::Challenge(headers) => {
                let mut resp = reply(req, 401, None);
                resp.headers.extend(headers);
                return finish(resp);
            }
            AuthOutcome::Unavailable => return finish(reply(req, 503, Some("Cluster not ready"))),
        };
        if user != aor {
            // Authenticated as someone else: this says nothing about whether `aor` exists.
            return finish(reply(
                req,
                403,
                Some("Not allowed to register this address"),
            ));
        }
        let contacts = match parse_contacts(header_values(req, "contact")) {
            Ok(c) => c,
            Err(e) => return finish(reply(req, 400, Some(e.0))),
        };
        let expires_header = match header_values(req, "expires").next() {
            None => None,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(secs) => Some(u32::try_from(secs).unwrap_or(u32::MAX)),
                Err(_) => return finish(reply(req, 400, Some("Malformed Expires"))),
            },
        };
        let Some((call_id, cseq)) = call_id_and_cseq(req) else {
            return finish(reply(req, 400, Some("Malformed Call-ID or CSeq")));
        };
        let existing = match self
            .cluster
            .reader()
            .scan_prefix::<Binding>(&Binding::aor_prefix(&aor))
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, extension = %aor, "reading bindings failed");
                return finish(reply(req, 500, None));
            }
        };
        let info = RegisterInfo {
            aor: aor.clone(),
            contacts,
            expires_header,
            call_id,
            cseq,
            source: peer.addr.to_string(),
            transport: transport_name(peer.transport).to_owned(),
            user_agent: header_values(req, "user-agent")
                .next()
                .unwrap_or("")
                .chars()
                .take(128)
                .collect(),
            node_id: self.cluster.node_id(),
            now,
        };
        match registrar::decide(&self.registrar, existing, info) {
            Decision::Accept { ops, bindings } => {
                let changed = !ops.is_empty();
                if let Err(e) = self.writer.commit(ops).await {
                    tracing::warn!(error = %e, extension = %aor, "registration not committed");
                    let mut resp = reply(req, 503, Some("Registration not stored, retry"));
                    resp.headers
                        .push(Header::RetryAfter(rsip::headers::RetryAfter::from("5")));
                    return finish(resp);
                }
                if changed {
                    tracing::debug!(extension = %aor, contacts = bindings.len(), peer = %peer.addr, "registration stored");
                }
                let mut resp = reply(req, 200, None);
                for b in &bindings {
                    let value = format!(
                        "<{}>;expires={}",
                        b.contact,
                        registrar::remaining_secs(b, now)
                    );
                    resp.headers
                        .push(Header::Contact(rsip::headers::Contact::from(value)));
                }
                resp.headers
                    .push(Header::Date(rsip::headers::Date::from(http_date(now))));
                finish(resp)
            }
            Decision::IntervalTooBrief { min_expires } => {
                let mut resp = reply(req, 423, None);
                resp.headers
                    .push(Header::MinExpires(rsip::headers::MinExpires::from(
                        min_expires.to_string(),
                    )));
                finish(resp)
            }
            Decision::Reject { code, reason } => finish(reply(req, code, Some(reason))),
        }
    }
}

/// Whether the request is inside a dialog (its To has a tag).
fn has_to_tag(req: &rsip::Request) -> bool {
    header_values(req, "to")
        .next()
        .is_some_and(|to| pbx_sip::codec::element_param(to, "tag").is_some())
}

/// OPTIONS gets the same answer whatever user it names.
fn options(req: &rsip::Request) -> rsip::Response {
    let mut resp = reply(req, 200, None);
    resp.headers
        .push(Header::Allow(rsip::headers::Allow::from(ALLOW)));
    resp.headers
        .push(Header::Accept(rsip::headers::Accept::from(
            "application/sdp",
        )));
    resp.headers
        .push(Header::Supported(rsip::headers::Supported::from(
            "path, outbound",
        )));
    finish(resp)
}

/// Every value of the header `name` (case-insensitive), as text.
pub(crate) fn header_values<'a>(
    req: &'a rsip::Request,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    req.headers.iter().filter_map(move |h| {
        let (n, v) = header_name_value(h)?;
        n.eq_ignore_ascii_case(name).then_some(v)
    })
}

fn header_name_value(h: &Header) -> Option<(&str, &str)> {
    Some(match h {
        Header::Contact(v) => ("contact", v.value()),
        Header::Expires(v) => ("expires", v.value()),
        Header::UserAgent(v) => ("user-agent", v.value()),
        Header::Authorization(v) => ("authorization", v.value()),
        Header::ProxyAuthorization(v) => ("proxy-authorization", v.value()),
        Header::To(v) => ("to", v.value()),
        Header::CallId(v) => ("call-id", v.value()),
        Header::CSeq(v) => ("cseq", v.value()),
        Header::Other(n, v) => (n.as_str(), v.as_str()),
        _ => return None,
    })
}

/// The user part of the To URI: the extension a REGISTER is for.
fn to_user(req: &rsip::Request) -> Option<String> {
    let to = header_values(req, "to").next()?;
    let uri = match to.find('<') {
        Some(open) => &to[open + 1..open + to[open..].find('>')?],
        None => to.split(';').next()?,
    };
    let rest = uri
        .trim()
        .strip_prefix("sip:")
        .or_else(|| uri.trim().strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    let user = user.split(';').next()?;
    (!user.is_empty() && user.len() <= 64).then(|| user.to_owned())
}

fn call_id_and_cseq(req: &rsip::Request) -> Option<(String, u32)> {
    let call_id = header_values(req, "call-id").next()?.trim().to_owned();
    let cseq = header_values(req, "cseq")
        .next()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((call_id, cseq))
}

/// RFC 7231 IMF-fixdate, which RFC 3261 §20.17 asks for in `Date`.
fn http_date(now: UnixMillis) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = now / 1000;
    let days = secs / 86_400;
    let (h, m, s) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = DAYS[(days % 7) as usize];
    let mon = MONTHS[(month - 1) as usize];
    format!("{weekday}, {d:02} {mon} {year} {h:02}:{m:02}:{s:02} GMT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_date_formats_known_instants() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(1_795_853_137_000),
            "Sat, 28 Nov 2026 08:05:37 GMT"
        );
        assert_eq!(http_date(951_782_400_000), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn to_user_is_the_extension() {
        let raw = "REGISTER sip:pbx SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.20;branch=z9hG4bK1\r\nFrom: <sip:1001@pbx>;tag=a\r\nTo: \"Desk\" <sip:1001@pbx;transport=udp>\r\nCall-ID: c1\r\nCSeq: 7 REGISTER\r\nContent-Length: 0\r\n\r\n";
        let req = rsip::Request::try_from(raw).unwrap();
        assert_eq!(to_user(&req).as_deref(), Some("1001"));
        assert_eq!(call_id_and_cseq(&req), Some(("c1".into(), 7)));
    }
}
