//! What a SUBSCRIBE asks for: the event package, how long, and whom (for message waiting: only the
//! subscriber's own mailbox). Pure.

use storage::features::EventPackage;

/// Subscriptions last at most this long (and this long when the phone does not say).
pub(crate) const MAX_EXPIRES: u32 = 3600;
/// A shorter subscription would have phones refreshing constantly.
pub(crate) const MIN_EXPIRES: u32 = 60;

/// A SUBSCRIBE's package and duration (`0`: end it, or fetch the state once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Asked {
    pub(crate) package: EventPackage,
    pub(crate) expires: u32,
}

/// Why a SUBSCRIBE is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
    pub(crate) headers: Vec<(String, String)>,
}

impl Refused {
    fn new(code: u16, reason: &'static str) -> Self {
        Self {
            code,
            reason,
            headers: Vec::new(),
        }
    }
}

/// Every package served, in the order `Allow-Events` lists them.
const PACKAGES: [EventPackage; 3] = [
    EventPackage::Dialog,
    EventPackage::Presence,
    EventPackage::MessageSummary,
];

/// A package's name in `Event` and `Allow-Events`.
pub(crate) fn event_name(package: EventPackage) -> &'static str {
    match package {
        EventPackage::Dialog => "dialog",
        EventPackage::Presence => "presence",
        EventPackage::MessageSummary => "message-summary",
    }
}

pub(crate) fn allow_events() -> (String, String) {
    let names: Vec<&str> = PACKAGES.into_iter().map(event_name).collect();
    ("Allow-Events".to_owned(), names.join(", "))
}

fn header<'a>(req: &'a rsip::Request, name: &str) -> Option<&'a str> {
    pbx_sip::codec::header_values(&req.headers, name).next()
}

/// The package and duration asked for, or the RFC 6665 answer.
pub(crate) fn read(req: &rsip::Request) -> Result<Asked, Refused> {
    let event = header(req, "Event").unwrap_or("");
    let name = event.split(';').next().unwrap_or("").trim();
    let Some(package) = PACKAGES
        .into_iter()
        .find(|p| name.eq_ignore_ascii_case(event_name(*p)))
    else {
        let mut r = Refused::new(489, "Bad Event");
        r.headers.push(allow_events());
        return Err(r);
    };
    if let Some(accept) = header(req, "Accept") {
        let wanted = super::document::content_type(package);
        let ok = accept
            .split(',')
            .map(|t| t.split(';').next().unwrap_or("").trim())
            .any(|t| {
                t.eq_ignore_ascii_case(wanted)
                    || t == "*/*"
                    || t.eq_ignore_ascii_case("application/*")
            });
        if !ok {
            return Err(Refused::new(406, "Not Acceptable"));
        }
    }
    let expires = match header(req, "Expires") {
        None => MAX_EXPIRES,
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) => u32::try_from(n).unwrap_or(u32::MAX),
            Err(_) => return Err(Refused::new(400, "Malformed Expires")),
        },
    };
    if expires != 0 && expires < MIN_EXPIRES {
        let mut r = Refused::new(423, "Interval Too Brief");
        r.headers
            .push(("Min-Expires".to_owned(), MIN_EXPIRES.to_string()));
        return Err(r);
    }
    Ok(Asked {
        package,
        expires: expires.min(MAX_EXPIRES),
    })
}

/// The extension a new SUBSCRIBE watches: the Request-URI's user, when it is a number.
pub(crate) fn target(req: &rsip::Request) -> Option<String> {
    let user = req.uri.auth.as_ref().map(|a| a.user.as_str())?;
    let ok = !user.is_empty()
        && user.len() <= super::super::call::MAX_NUMBER_LEN
        && user.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| user.to_owned())
}

/// The mailbox a new `message-summary` SUBSCRIBE authenticated as `watcher` may watch: its own,
/// when the Request-URI's user or the To URI's user is its number (a phone may send it to a
/// voicemail access number or service name with its own address in To). Anything else is `403`,
/// whether or not that other mailbox or extension exists, so nothing is learned about it.
pub(crate) fn own_mailbox(req: &rsip::Request, watcher: &str) -> Result<String, Refused> {
    let uri_user = req.uri.auth.as_ref().map(|a| a.user.as_str());
    let to_user = header(req, "To").and_then(|to| user_of(super::super::call::dialog::uri_of(to)));
    if uri_user == Some(watcher) || to_user == Some(watcher) {
        Ok(watcher.to_owned())
    } else {
        Err(Refused::new(403, "Forbidden"))
    }
}

/// The user part of a `sip:`/`sips:` URI (without user parameters).
fn user_of(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    user.split(';').next().filter(|u| !u.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribe(user: &str, extra: &str) -> rsip::Request {
        let text = format!(
            "SUBSCRIBE sip:{user}@pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.21:5062;branch=z9hG4bKa\r\nMax-Forwards: 70\r\nFrom: <sip:1001@pbx.test>;tag=a\r\nTo: <sip:{user}@pbx.test>\r\nCall-ID: s\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:1001@198.18.0.21:5062>\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match pbx_sip::codec::parse(text.as_bytes()).unwrap().sip {
            rsip::SipMessage::Request(r) => r,
            rsip::SipMessage::Response(_) => unreachable!(),
        }
    }

    #[test]
    fn dialog_and_presence_are_the_packages() {
        let a = read(&subscribe("1002", "Event: dialog\r\nExpires: 1800\r\n")).unwrap();
        assert_eq!(
            a,
            Asked {
                package: EventPackage::Dialog,
                expires: 1800
            }
        );
        let a = read(&subscribe("1002", "Event: presence\r\n")).unwrap();
        assert_eq!(
            a,
            Asked {
                package: EventPackage::Presence,
                expires: MAX_EXPIRES
            }
        );
        let bad = read(&subscribe("1002", "Event: conference\r\n")).unwrap_err();
        assert_eq!(bad.code, 489);
        assert_eq!(bad.headers, [allow_events()]);
        assert_eq!(
            allow_events().1,
            "dialog, presence, message-summary",
            "every package served is announced"
        );
        assert_eq!(read(&subscribe("1002", "")).unwrap_err().code, 489);
    }

    #[test]
    fn durations_are_bounded() {
        let a = read(&subscribe("1002", "Event: dialog\r\nExpires: 999999\r\n")).unwrap();
        assert_eq!(a.expires, MAX_EXPIRES);
        let short = read(&subscribe("1002", "Event: dialog\r\nExpires: 5\r\n")).unwrap_err();
        assert_eq!((short.code, short.headers[0].1.as_str()), (423, "60"));
        let end = read(&subscribe("1002", "Event: dialog\r\nExpires: 0\r\n")).unwrap();
        assert_eq!(end.expires, 0);
        assert_eq!(
            read(&subscribe("1002", "Event: dialog\r\nExpires: x\r\n"))
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn accept_must_allow_the_package_document() {
        let ok = "Event: dialog\r\nAccept: application/dialog-info+xml\r\n";
        assert!(read(&subscribe("1002", ok)).is_ok());
        let wrong = "Event: dialog\r\nAccept: application/pidf+xml\r\n";
        assert_eq!(read(&subscribe("1002", wrong)).unwrap_err().code, 406);
    }

    #[test]
    fn the_target_is_a_number() {
        assert_eq!(target(&subscribe("1002", "")).as_deref(), Some("1002"));
        assert_eq!(target(&subscribe("alice", "")), None);
    }

    /// A SUBSCRIBE to `uri_user`'s address with `to` as its To header.
    fn subscribe_to(uri_user: &str, to: &str, extra: &str) -> rsip::Request {
        let text = format!(
            "SUBSCRIBE sip:{uri_user}@pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.21:5062;branch=z9hG4bKa\r\nMax-Forwards: 70\r\nFrom: <sip:1002@pbx.test>;tag=a\r\nTo: {to}\r\nCall-ID: s\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:1002@198.18.0.21:5062>\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match pbx_sip::codec::parse(text.as_bytes()).unwrap().sip {
            rsip::SipMessage::Request(r) => r,
            rsip::SipMessage::Response(_) => unreachable!(),
        }
    }

    #[test]
    fn message_summary_is_a_package_with_its_own_document() {
        let a = read(&subscribe(
            "1002",
            "Event: message-summary\r\nExpires: 3600\r\n",
        ))
        .unwrap();
        assert_eq!(
            a,
            Asked {
                package: EventPackage::MessageSummary,
                expires: 3600
            }
        );
        let accepts = [
            "application/simple-message-summary",
            "Application/Simple-Message-Summary",
            "application/pidf+xml, application/simple-message-summary;q=0.5",
            "*/*",
        ];
        for accept in accepts {
            let extra = format!("Event: message-summary\r\nAccept: {accept}\r\n");
            assert!(read(&subscribe("1002", &extra)).is_ok(), "{accept}");
        }
        let wrong = "Event: message-summary\r\nAccept: application/dialog-info+xml\r\n";
        assert_eq!(read(&subscribe("1002", wrong)).unwrap_err().code, 406);
        let event_params = "Event: Message-Summary;id=1\r\n";
        assert_eq!(
            read(&subscribe("1002", event_params)).unwrap().package,
            EventPackage::MessageSummary
        );
    }

    #[test]
    fn a_phone_watches_only_its_own_mailbox() {
        let own = subscribe_to("1002", "<sip:1002@pbx.test>", "");
        assert_eq!(own_mailbox(&own, "1002").as_deref(), Ok("1002"));
        // Sent to a voicemail service address, its own account in To.
        let service = subscribe_to("voicemail", "\"Me\" <sip:1002@pbx.test>", "");
        assert_eq!(own_mailbox(&service, "1002").as_deref(), Ok("1002"));
        let bare_to = subscribe_to("*97", "sip:1002@pbx.test", "");
        assert_eq!(own_mailbox(&bare_to, "1002").as_deref(), Ok("1002"));
        // Another extension's mailbox, by either address, existing or not: the same 403.
        for (uri, to) in [
            ("1003", "<sip:1003@pbx.test>"),
            ("1999", "<sip:1999@pbx.test>"),
            ("voicemail", "<sip:1003@pbx.test>"),
            ("100", "<sip:10021@pbx.test>"),
        ] {
            let other = subscribe_to(uri, to, "");
            let refused = own_mailbox(&other, "1002").unwrap_err();
            assert_eq!(
                (refused.code, refused.reason),
                (403, "Forbidden"),
                "{uri} {to}"
            );
            assert!(refused.headers.is_empty());
        }
    }

    #[test]
    fn the_user_of_a_uri() {
        assert_eq!(user_of("sip:1002@pbx.test"), Some("1002"));
        assert_eq!(user_of("sips:1002;x=y@pbx.test:5061"), Some("1002"));
        assert_eq!(user_of("sip:pbx.test"), None);
        assert_eq!(user_of("sip:@pbx.test"), None);
        assert_eq!(user_of("tel:1002"), None);
    }
}
