//! What a watcher is told: an extension's line state, or its own mailbox's counts, and the
//! documents that carry them (RFC 4235 dialog-info for busy lamps, RFC 3863 PIDF for presence,
//! RFC 3842 simple-message-summary for message waiting). Pure.

use std::fmt::Write as _;

use storage::features::EventPackage;
use storage::voicemail::{self, VoicemailMessage};

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

/// A mailbox's voice messages: `new` not heard yet, `old` heard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Messages {
    pub(crate) new: usize,
    pub(crate) old: usize,
}

impl Messages {
    /// The counts of a mailbox's messages (none: no mailbox, or an empty one).
    pub(crate) fn of(messages: &[VoicemailMessage]) -> Self {
        let (total, new) = voicemail::counts(messages);
        Self {
            new,
            old: total.saturating_sub(new),
        }
    }
}

/// What one subscription's NOTIFY reports, by package: what a pass compares with what it last
/// sent, and what [`render`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Dialog(Line),
    Presence(Line),
    MessageSummary(Messages),
}

impl State {
    pub(crate) fn package(self) -> EventPackage {
        match self {
            Self::Dialog(_) => EventPackage::Dialog,
            Self::Presence(_) => EventPackage::Presence,
            Self::MessageSummary(_) => EventPackage::MessageSummary,
        }
    }
}

/// The `Content-Type` of a package's documents.
pub(crate) fn content_type(package: EventPackage) -> &'static str {
    match package {
        EventPackage::Dialog => "application/dialog-info+xml",
        EventPackage::Presence => "application/pidf+xml",
        EventPackage::MessageSummary => "application/simple-message-summary",
    }
}

/// The body of a NOTIFY: the full state of `entity` (`sip:1002@realm`: the extension watched, or
/// the mailbox's account) as of `version` (only dialog-info documents carry it).
pub(crate) fn render(entity: &str, state: State, version: u32) -> String {
    match state {
        State::Dialog(line) => dialog_info(entity, line, version),
        State::Presence(line) => pidf(entity, line),
        State::MessageSummary(messages) => message_summary(entity, messages),
    }
}

/// RFC 3842 §5.2: waiting when a message is not heard yet; no urgent messages are told apart.
fn message_summary(account: &str, m: Messages) -> String {
    let waiting = if m.new > 0 { "yes" } else { "no" };
    format!(
        "Messages-Waiting: {waiting}\r\nMessage-Account: {account}\r\nVoice-Message: {}/{} (0/0)\r\n",
        m.new, m.old
    )
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
        let idle = render("sip:1002@pbx", State::Dialog(Line::Idle), 3);
        assert!(idle.contains("version=\"3\""));
        assert!(idle.contains("entity=\"sip:1002@pbx\""));
        assert!(!idle.contains("<dialog "), "idle: no dialog");
        let ringing = render("sip:1002@pbx", State::Dialog(Line::Ringing), 4);
        assert!(ringing.contains("<state>early</state>"));
        assert!(ringing.contains("direction=\"recipient\""));
        let busy = render(
            "sip:1002@pbx",
            State::Dialog(Line::InCall { initiator: true }),
            5,
        );
        assert!(busy.contains("<state>confirmed</state>"));
        assert!(busy.contains("direction=\"initiator\""));
    }

    #[test]
    fn pidf_is_open_unless_offline_and_escapes_the_entity() {
        let p = render("sip:1002@a&b", State::Presence(Line::Offline), 1);
        assert!(p.contains("<basic>closed</basic>"));
        assert!(p.contains("entity=\"sip:1002@a&amp;b\""));
        let p = render("sip:1002@pbx", State::Presence(Line::Ringing), 1);
        assert!(p.contains("<basic>open</basic>") && p.contains("Ringing"));
    }

    fn message(audio_id: &str, heard: bool) -> VoicemailMessage {
        VoicemailMessage {
            mailbox: "1002".into(),
            audio_id: audio_id.into(),
            caller: "1001".into(),
            caller_name: String::new(),
            because: voicemail::LeftBecause::NoAnswer,
            call_id: "c".into(),
            received_at: 1,
            duration_ms: 1000,
            heard,
        }
    }

    #[test]
    fn messages_count_new_as_not_heard_and_old_as_heard() {
        assert_eq!(Messages::of(&[]), Messages { new: 0, old: 0 });
        let held = [message("a", false), message("b", true), message("c", false)];
        assert_eq!(Messages::of(&held), Messages { new: 2, old: 1 });
    }

    #[test]
    fn message_summary_says_waiting_only_with_new_messages() {
        let account = "sip:1002@pbx.test";
        let none = render(account, State::MessageSummary(Messages::default()), 7);
        assert_eq!(
            none,
            "Messages-Waiting: no\r\nMessage-Account: sip:1002@pbx.test\r\nVoice-Message: 0/0 (0/0)\r\n"
        );
        let waiting = render(
            account,
            State::MessageSummary(Messages { new: 2, old: 5 }),
            0,
        );
        assert!(
            waiting.starts_with("Messages-Waiting: yes\r\n"),
            "{waiting}"
        );
        assert!(
            waiting.contains("\r\nVoice-Message: 2/5 (0/0)\r\n"),
            "{waiting}"
        );
        let heard = render(
            account,
            State::MessageSummary(Messages { new: 0, old: 3 }),
            0,
        );
        assert!(heard.starts_with("Messages-Waiting: no\r\n"), "{heard}");
        assert!(heard.contains("Voice-Message: 0/3 (0/0)"), "{heard}");
    }

    #[test]
    fn each_state_is_its_package_document() {
        for (state, ctype) in [
            (State::Dialog(Line::Idle), "application/dialog-info+xml"),
            (State::Presence(Line::Idle), "application/pidf+xml"),
            (
                State::MessageSummary(Messages::default()),
                "application/simple-message-summary",
            ),
        ] {
            assert_eq!(content_type(state.package()), ctype);
        }
    }
}
