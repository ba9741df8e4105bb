//! Feature codes: a phone dials `*78` and its extension is on do-not-disturb, `*72` and a number and
//! its calls are forwarded there. The change is the same replicated record the API and the portal
//! write, audited with the extension as its author.
//!
//! There is no media engine to play a confirmation tone yet: the call is answered with a final
//! `480` whose reason phrase says what is now set ("Do Not Disturb On"), which phones show on their
//! display, and a code that cannot be applied gets `404` (unknown code) or `484` (a bad number).

use pbx_sip::transaction::{Peer, ServerTxId};
use storage::Command;
use storage::features::{self, CallHandling, FeatureCodes};
use storage::model::AuditEntry;

use super::{Calls, dialog};

/// The longest dialled string looked at as a feature code (a code and a number).
const MAX_DIALLED: usize = 48;

/// What a dialled feature code asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Feature {
    DndOn,
    DndOff,
    ForwardOn(String),
    ForwardOff,
}

/// The user part of the Request-URI when it is a feature code's shape (`*` or `#` first, then digits,
/// `*` and `#`; a `#` may arrive escaped as `%23`).
pub(crate) fn dialled_code(req: &rsip::Request) -> Option<String> {
    let user = req.uri.auth.as_ref().map(|a| a.user.as_str())?;
    if user.len() > MAX_DIALLED * 3 {
        return None;
    }
    let user = user.replace("%23", "#");
    let ok = user.len() <= MAX_DIALLED
        && user.starts_with(['*', '#'])
        && user
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#');
    ok.then_some(user)
}

/// The feature `dialled` asks for; `Err(code)` for the answer when it names none or a bad number.
pub(crate) fn parse(codes: &FeatureCodes, dialled: &str) -> Result<Feature, u16> {
    if dialled == codes.dnd_on {
        return Ok(Feature::DndOn);
    }
    if dialled == codes.dnd_off {
        return Ok(Feature::DndOff);
    }
    if dialled == codes.forward_off {
        return Ok(Feature::ForwardOff);
    }
    if let Some(number) = dialled.strip_prefix(codes.forward_on.as_str()) {
        // Phones often end a dialled string with `#`.
        let number = number.strip_suffix('#').unwrap_or(number);
        return if features::valid_target(number) {
            Ok(Feature::ForwardOn(number.to_owned()))
        } else {
            Err(484)
        };
    }
    Err(404)
}

/// `handling` with `feature` applied; the reason phrase the phone shows.
pub(crate) fn apply(handling: &mut CallHandling, feature: &Feature) -> String {
    match feature {
        Feature::DndOn => {
            handling.dnd = true;
            "Do Not Disturb On".to_owned()
        }
        Feature::DndOff => {
            handling.dnd = false;
            "Do Not Disturb Off".to_owned()
        }
        Feature::ForwardOn(to) => {
            handling.forward_always = Some(to.clone());
            format!("Forwarding To {to}")
        }
        Feature::ForwardOff => {
            handling.forward_always = None;
            "Forwarding Off".to_owned()
        }
    }
}

impl Calls {
    /// Extension `caller` dialled `dialled`, a feature code.
    pub(super) async fn feature_code(
        &self,
        tx: ServerTxId,
        req: &rsip::Request,
        peer: Peer,
        caller: &str,
        dialled: &str,
    ) {
        let (code, reason) = match self.change_handling(peer, caller, dialled).await {
            Ok(reason) => (480, reason),
            Err((code, reason)) => (code, reason.to_owned()),
        };
        let resp = dialog::response(
            req,
            code,
            Some(&reason),
            &dialog::token()[..16],
            None,
            &[],
            None,
        );
        self.endpoint.respond(tx, resp).await;
        self.forget(Some(tx), &[]);
    }

    async fn change_handling(
        &self,
        peer: Peer,
        caller: &str,
        dialled: &str,
    ) -> Result<String, (u16, &'static str)> {
        let internal = |e: storage::StorageError| {
            tracing::warn!(error = %e, "reading for a feature code failed");
            (500, "Server Internal Error")
        };
        let reader = self.cluster.reader();
        let codes = reader
            .get::<FeatureCodes>(FeatureCodes::KEY)
            .map_err(internal)?
            .unwrap_or_default();
        let feature = parse(&codes, dialled).map_err(|code| match code {
            484 => (484, "Address Incomplete"),
            _ => (404, "No Such Feature Code"),
        })?;
        if matches!(&feature, Feature::ForwardOn(to) if to == caller) {
            return Err((484, "Cannot Forward To Itself"));
        }
        let mut handling = reader
            .get::<CallHandling>(caller)
            .map_err(internal)?
            .unwrap_or_else(|| CallHandling::none(caller));
        let reason = apply(&mut handling, &feature);
        let now = crate::time::now_millis();
        handling.updated_at = now;
        let entry = AuditEntry {
            at: now,
            seq: dialog::token()[..8].to_owned(),
            actor: format!("extension {caller}"),
            source: peer.addr.ip().to_string(),
            action: format!("feature code {dialled}: {reason}"),
            status: 200,
            node_id: self.cluster.node_id(),
        };
        let cmd = Command::Audited {
            change: Box::new(Command::PutCallHandling(handling)),
            entry,
        };
        match self.cluster.propose(cmd).await {
            Ok(storage::Response::Ok) => {
                tracing::info!(extension = %caller, feature = ?feature, "feature code applied");
                Ok(reason)
            }
            Ok(other) => {
                tracing::warn!(extension = %caller, response = ?other, "feature code refused");
                Err((404, "Not Found"))
            }
            Err(e) => {
                tracing::warn!(extension = %caller, error = %e, "feature code not stored");
                Err((503, "Cluster Not Ready"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(user: &str) -> rsip::Request {
        let text = format!(
            "INVITE sip:{user}@pbx.test SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.21:5062;branch=z9hG4bKa\r\nMax-Forwards: 70\r\nFrom: <sip:1001@pbx.test>;tag=a\r\nTo: <sip:{user}@pbx.test>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@198.18.0.21:5062>\r\nContent-Length: 0\r\n\r\n"
        );
        match pbx_sip::codec::parse(text.as_bytes()).unwrap().sip {
            rsip::SipMessage::Request(r) => r,
            rsip::SipMessage::Response(_) => unreachable!(),
        }
    }

    #[test]
    fn only_star_and_hash_strings_are_feature_codes() {
        assert_eq!(dialled_code(&invite("*78")).as_deref(), Some("*78"));
        assert_eq!(
            dialled_code(&invite("*722002%23")).as_deref(),
            Some("*722002#")
        );
        assert_eq!(dialled_code(&invite("1002")), None);
        assert_eq!(dialled_code(&invite("*7a")), None);
        assert_eq!(dialled_code(&invite(&format!("*{}", "1".repeat(60)))), None);
    }

    #[test]
    fn codes_map_to_features_and_bad_numbers_are_refused() {
        let c = FeatureCodes::default();
        assert_eq!(parse(&c, "*78"), Ok(Feature::DndOn));
        assert_eq!(parse(&c, "*79"), Ok(Feature::DndOff));
        assert_eq!(parse(&c, "*73"), Ok(Feature::ForwardOff));
        assert_eq!(parse(&c, "*722002"), Ok(Feature::ForwardOn("2002".into())));
        assert_eq!(parse(&c, "*722002#"), Ok(Feature::ForwardOn("2002".into())));
        assert_eq!(parse(&c, "*72"), Err(484));
        assert_eq!(parse(&c, "*72*5"), Err(484));
        assert_eq!(parse(&c, "*99"), Err(404));
    }

    #[test]
    fn applying_changes_only_what_the_code_names() {
        let mut h = CallHandling::none("1002");
        h.forward_busy = Some("1003".into());
        assert_eq!(apply(&mut h, &Feature::DndOn), "Do Not Disturb On");
        assert!(h.dnd);
        assert_eq!(
            apply(&mut h, &Feature::ForwardOn("+15550100".into())),
            "Forwarding To +15550100"
        );
        assert_eq!(h.forward_always.as_deref(), Some("+15550100"));
        apply(&mut h, &Feature::ForwardOff);
        apply(&mut h, &Feature::DndOff);
        assert_eq!(h.forward_always, None);
        assert!(!h.dnd);
        assert_eq!(h.forward_busy.as_deref(), Some("1003"), "other rules stay");
    }
}
