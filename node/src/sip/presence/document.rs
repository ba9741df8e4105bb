//! What a watcher is told about an extension: its line state, and the documents that carry it
//! (RFC 4235 dialog-info for busy lamps, RFC 3863 PIDF for presence). Pure.

use std::fmt::Write as _;

use storage::features::EventPackage;

/// An extension's line, as a busy lamp shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line {
    /// No call, and at least one phone registered.
    Idle,
    /// A call to it rings its phones.
    Ringing,
    /// In an established call; `initiator`: it placed the call.
    InCall { initiator: bool },
    /// No phone registered.
    Offline,
}

impl Line {
    /// The state from what the node knows: established calls it is in (`true`: as the caller),
    /// whether its phones ring, and whether any is registered. A call outranks ringing (a busy
    /// lamp stays lit while a second call rings), ringing outranks idle.
    pub(crate) fn of(in_calls: &[bool], ringing: bool, registered: bool) -> Self {
        match in_calls.first() {
            Some(&initiator) => Self::InCall { initiator },
            None if ringing => Self::Ringing,
            None if registered => Self::Idle,
            None => Self::Offline,
        }
    }
}

/// The `Content-Type` of a package's documents.
pub(crate) fn content_type(package: EventPackage) -> &'static str {
    match package {
        EventPackage::Dialog => "application/dialog-info+xml",
        EventPackage::Presence => "application/pidf+xml",
    }
}

/// The body of a NOTIFY: the full state of `entity` (`sip:1002@realm`) as of `version`.
pub(crate) fn render(package: EventPackage, entity: &str, line: Line, version: u32) -> String {
    match package {
        EventPackage::Dialog => dialog_info(entity, line, version),
        EventPackage::Presence => pidf(entity, line),
    }
}

fn dialog_info(entity: &str, line: Line, version: u32) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"{version}\" state=\"full\" entity=\"{}\">\r\n",
        escape(entity)
    );
    let dialog = match line {
        Line::Idle | Line::Offline => None,
        Line::Ringing => Some(("recipient", "early")),
        Line::InCall { initiator: true } => Some(("initiator", "confirmed")),
        Line::InCall { initiator: false } => Some(("recipient", "confirmed")),
    };
    if let Some((direction, state)) = dialog {
        let _ = write!(
            out,
            "<dialog id=\"line\" direction=\"{direction}\"><state>{state}</state></dialog>\r\n"
        );
    }
    out.push_str("</dialog-info>\r\n");
    out
}

fn pidf(entity: &str, line: Line) -> String {
    let (basic, note) = match line {
        Line::Idle => ("open", "Available"),
        Line::Ringing => ("open", "Ringing"),
        Line::InCall { .. } => ("open", "On the phone"),
        Line::Offline => ("closed", "Offline"),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{}\">\r\n<tuple id=\"line\"><status><basic>{basic}</basic></status><note>{note}</note></tuple>\r\n</presence>\r\n",
        escape(entity)
    )
}

/// XML attribute text: the entity is built from an extension number and the realm, but the realm
/// is configuration.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_outranks_ringing_and_ringing_outranks_idle() {
        assert_eq!(Line::of(&[], false, true), Line::Idle);
        assert_eq!(Line::of(&[], false, false), Line::Offline);
        assert_eq!(Line::of(&[], true, true), Line::Ringing);
        assert_eq!(
            Line::of(&[false], true, true),
            Line::InCall { initiator: false }
        );
    }

    #[test]
    fn dialog_info_says_early_confirmed_or_nothing() {
        let idle = render(EventPackage::Dialog, "sip:1002@pbx", Line::Idle, 3);
        assert!(idle.contains("version=\"3\""));
        assert!(idle.contains("entity=\"sip:1002@pbx\""));
        assert!(!idle.contains("<dialog "), "idle: no dialog");
        let ringing = render(EventPackage::Dialog, "sip:1002@pbx", Line::Ringing, 4);
        assert!(ringing.contains("<state>early</state>"));
        assert!(ringing.contains("direction=\"recipient\""));
        let busy = render(
            EventPackage::Dialog,
            "sip:1002@pbx",
            Line::InCall { initiator: true },
            5,
        );
        assert!(busy.contains("<state>confirmed</state>"));
        assert!(busy.contains("direction=\"initiator\""));
    }

    #[test]
    fn pidf_is_open_unless_offline_and_escapes_the_entity() {
        let p = render(EventPackage::Presence, "sip:1002@a&b", Line::Offline, 1);
        assert!(p.contains("<basic>closed</basic>"));
        assert!(p.contains("entity=\"sip:1002@a&amp;b\""));
        let p = render(EventPackage::Presence, "sip:1002@pbx", Line::Ringing, 1);
        assert!(p.contains("<basic>open</basic>") && p.contains("Ringing"));
    }
}
