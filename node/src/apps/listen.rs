//! Listening to one's voicemail from one's own phone (the voicemail feature code, `*97`): the PIN
//! first, then each message, new ones first, with keys to act on it; and the greetings (for no
//! answer, for busy, and the owner's name) recorded from the phone.
//!
//! The menu speaks ([`super::prompts`]): "Please enter your pin, then press pound" (digits, then
//! `#`); "Incorrect pin"; "You have three new messages and one saved message"; each message plays,
//! then "Press 1 to play it again, 7 to delete it, 9 to save it and go on, or 5 to change your
//! greetings". `5` asks which greeting: `1` for no answer, `2` for busy, `3` the name; after "Record
//! after the tone" and a long beep the owner speaks until `#`; "Saved", and the menu goes on. An
//! empty mailbox offers `5` for a few seconds. After the last message, "Goodbye" and the call ends.
//! On a node that cannot speak, the same menu plays the tones of before (two beeps ask for the PIN
//! or a choice, one beep per new message, the three rising tones for "wrong").
//!
//! A key the menu answers cuts the prompt playing (digits of the PIN do not: they are typed over
//! it); a message cuts whatever plays.
//!
//! A wrong PIN counts against the phone's address like a failed SIP password (the automatic
//! defence bans it); three wrong PINs end the call.
//!
//! [`Menu`] is pure; [`Session`] drives it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use storage::audio::AudioKind;
use storage::voicemail::{Mailbox, MailboxName, VoicemailMessage};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::media::{Agreed, CallMedia, Heard};
use super::prompts::Prompt;
use super::voicemail::Take;
use super::{AppCommand, Context, SessionEvent};
use crate::audio::NewAudio;

/// Digits of a PIN at most; more is wrong.
pub(crate) const MAX_PIN: usize = 12;
/// PIN attempts per call.
pub(crate) const PIN_ATTEMPTS: u8 = 3;
/// Time to enter the PIN, and to press a key after a message before the next one plays.
pub(crate) const PIN_WAIT: Duration = Duration::from_secs(15);
pub(crate) const AFTER_MESSAGE: Duration = Duration::from_secs(5);
/// Time to choose which greeting to record.
pub(crate) const CHOICE_WAIT: Duration = Duration::from_secs(10);

/// Which greeting the owner records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GreetingKind {
    /// For no answer and no phone.
    Unavailable,
    Busy,
    /// The owner's name, which the default greeting says.
    Name,
}

impl GreetingKind {
    /// The longest recording of this kind.
    fn longest(self) -> Duration {
        match self {
            Self::Unavailable | Self::Busy => Duration::from_secs(60),
            Self::Name => Duration::from_secs(10),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Busy => "busy",
            Self::Name => "name",
        }
    }
}

/// What plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sound {
    Say(Prompt),
    /// Message `i` of the list.
    Message(usize),
    /// Record now.
    RecordBeep,
}

/// What the driver does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Play(Sound),
    /// Check this PIN (the answer comes back through [`Menu::pin_checked`]).
    CheckPin(String),
    /// Message `i` was heard (mark it so).
    Heard(usize),
    Delete(usize),
    /// Start recording this greeting (the caller's audio from now on).
    StartGreeting(GreetingKind),
    /// Stop recording and keep what was recorded.
    KeepGreeting,
    Hangup,
}

fn say(p: Prompt) -> Step {
    Step::Play(Sound::Say(p))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pin,
    Checking,
    /// The counts play (and an empty mailbox's key).
    Intro,
    /// An empty mailbox waits for `5` until the deadline.
    Empty,
    /// Message `i` plays.
    Playing(usize),
    /// Message `i` played; its keys are said.
    Options(usize),
    /// Message `i` played; waiting for a key.
    After(usize),
    /// Which greeting? Then on from message `resume`.
    Choosing {
        resume: usize,
    },
    /// "Record after the tone" plays.
    Announcing {
        kind: GreetingKind,
        resume: usize,
    },
    Recording {
        resume: usize,
    },
    /// "Saved" plays.
    Saving {
        resume: usize,
    },
    Closing,
    Done,
}

#[derive(Debug)]
pub(crate) struct Menu {
    state: State,
    pin: String,
    attempts: u8,
    messages: usize,
    deleted: Vec<bool>,
    deadline: Option<Instant>,
}

impl Menu {
    /// A call from the mailbox's owner: the PIN is asked for.
    pub(crate) fn start(now: Instant) -> (Self, Vec<Step>) {
        let menu = Self {
            state: State::Pin,
            pin: String::new(),
            attempts: 0,
            messages: 0,
            deleted: Vec::new(),
            deadline: Some(now + PIN_WAIT),
        };
        (menu, vec![say(Prompt::AskPin)])
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub(crate) fn digit(&mut self, d: char, now: Instant) -> Vec<Step> {
        match self.state {
            State::Pin if d == '#' => {
                self.state = State::Checking;
                self.deadline = None;
                vec![Step::CheckPin(std::mem::take(&mut self.pin))]
            }
            State::Pin => {
                if self.pin.len() <= MAX_PIN {
                    self.pin.push(d);
                }
                self.deadline = Some(now + PIN_WAIT);
                Vec::new()
            }
            State::Playing(i) | State::Options(i) | State::After(i) => self.on_message_key(i, d),
            State::Intro | State::Empty if d == '5' => self.choose(0),
            State::Choosing { resume } => {
                let kind = match d {
                    '1' => GreetingKind::Unavailable,
                    '2' => GreetingKind::Busy,
                    '3' => GreetingKind::Name,
                    _ => {
                        self.deadline = None;
                        return vec![say(Prompt::InvalidChoice), say(Prompt::GreetingChoice)];
                    }
                };
                self.state = State::Announcing { kind, resume };
                self.deadline = None;
                vec![say(Prompt::RecordAfterTone)]
            }
            State::Recording { resume } if d == '#' => {
                self.state = State::Saving { resume };
                self.deadline = None;
                vec![Step::KeepGreeting, say(Prompt::Saved)]
            }
            State::Checking
            | State::Intro
            | State::Empty
            | State::Announcing { .. }
            | State::Recording { .. }
            | State::Saving { .. }
            | State::Closing
            | State::Done => Vec::new(),
        }
    }

    /// The PIN check's answer; with the mailbox's messages (new first) and how many are new.
    pub(crate) fn pin_checked(&mut self, ok: bool, messages: usize, new: usize) -> Vec<Step> {
        if self.state != State::Checking {
            return Vec::new();
        }
        if !ok {
            self.attempts += 1;
            if self.attempts >= PIN_ATTEMPTS {
                self.state = State::Closing;
                return vec![say(Prompt::WrongPin)];
            }
            self.state = State::Pin;
            return vec![say(Prompt::WrongPin), say(Prompt::AskPin)];
        }
        self.messages = messages;
        self.deleted = vec![false; messages];
        self.state = State::Intro;
        let saved = messages.saturating_sub(new);
        let mut steps = vec![say(Prompt::Messages { new, saved })];
        if messages == 0 {
            steps.push(say(Prompt::MailboxOptions));
        }
        steps
    }

    /// What was playing ended.
    pub(crate) fn played(&mut self, now: Instant) -> Vec<Step> {
        match self.state {
            State::Pin => {
                self.deadline = Some(now + PIN_WAIT);
                Vec::new()
            }
            State::Intro if self.messages == 0 => {
                self.state = State::Empty;
                self.deadline = Some(now + AFTER_MESSAGE);
                Vec::new()
            }
            State::Intro => self.next_from(0),
            State::Playing(i) => {
                self.state = State::Options(i);
                vec![Step::Heard(i), say(Prompt::MessageOptions)]
            }
            State::Options(i) => {
                self.state = State::After(i);
                self.deadline = Some(now + AFTER_MESSAGE);
                Vec::new()
            }
            State::Choosing { .. } => {
                self.deadline = Some(now + CHOICE_WAIT);
                Vec::new()
            }
            State::Announcing { kind, resume } => {
                self.state = State::Recording { resume };
                vec![Step::Play(Sound::RecordBeep), Step::StartGreeting(kind)]
            }
            State::Saving { resume } => self.next_from(resume),
            State::Closing => {
                self.state = State::Done;
                vec![Step::Hangup]
            }
            State::Checking
            | State::Empty
            | State::After(_)
            | State::Recording { .. }
            | State::Done => Vec::new(),
        }
    }

    pub(crate) fn tick(&mut self, now: Instant) -> Vec<Step> {
        if self.deadline.is_none_or(|d| now < d) {
            return Vec::new();
        }
        self.deadline = None;
        match self.state {
            // No `#` in time: what was typed is the PIN.
            State::Pin if !self.pin.is_empty() => {
                self.state = State::Checking;
                vec![Step::CheckPin(std::mem::take(&mut self.pin))]
            }
            State::Pin | State::Empty => self.close(),
            State::After(i) => self.next_from(i + 1),
            // No choice: no greeting recorded, the menu goes on.
            State::Choosing { resume } => self.next_from(resume),
            _ => Vec::new(),
        }
    }

    fn on_message_key(&mut self, i: usize, d: char) -> Vec<Step> {
        match d {
            '1' => {
                self.state = State::Playing(i);
                self.deadline = None;
                vec![Step::Play(Sound::Message(i))]
            }
            '7' => {
                self.deleted[i] = true;
                let mut steps = vec![Step::Delete(i)];
                steps.extend(self.next_from(i + 1));
                steps
            }
            '9' | '#' => {
                let mut steps = vec![Step::Heard(i)];
                steps.extend(self.next_from(i + 1));
                steps
            }
            '5' => self.choose(i + 1),
            _ => Vec::new(),
        }
    }

    /// Asks which greeting to record; the menu goes on from message `resume` afterwards.
    fn choose(&mut self, resume: usize) -> Vec<Step> {
        self.state = State::Choosing { resume };
        self.deadline = None;
        vec![say(Prompt::GreetingChoice)]
    }

    /// The first message from `i` on that is still there, or goodbye.
    fn next_from(&mut self, i: usize) -> Vec<Step> {
        self.deadline = None;
        match (i..self.messages).find(|&j| !self.deleted[j]) {
            Some(j) => {
                self.state = State::Playing(j);
                vec![Step::Play(Sound::Message(j))]
            }
            None => self.close(),
        }
    }

    fn close(&mut self) -> Vec<Step> {
        self.state = State::Closing;
        self.deadline = None;
        vec![say(Prompt::Goodbye)]
    }
}

/// The feature code an extension dials to reach its own mailbox.
pub(crate) const LISTEN_CODE: &str = "*97";

/// The mailbox's messages in the order they are played: new first, each oldest first.
fn in_order(mut all: Vec<VoicemailMessage>) -> Vec<VoicemailMessage> {
    all.sort_by_key(|m| (m.heard, m.received_at));
    all
}

/// One owner listening to their mailbox.
pub(super) struct Session {
    pub(super) call: String,
    pub(super) extension: String,
    /// The phone's address: a wrong PIN counts against it.
    pub(super) source: std::net::IpAddr,
    pub(super) agreed: Agreed,
    pub(super) sock: UdpSocket,
    pub(super) peer: Option<SocketAddr>,
}

impl Session {
    pub(super) async fn run(
        self,
        ctx: Arc<Context>,
        mut events: mpsc::Receiver<SessionEvent>,
        commands: mpsc::Sender<(String, AppCommand)>,
    ) {
        let Self {
            call,
            extension: ext,
            source,
            agreed,
            sock,
            peer,
        } = self;
        tracing::info!(call = %call, extension = %ext, "voicemail menu answered");
        let mut media = CallMedia::new(&agreed, Arc::new(sock), peer);
        let mut messages: Vec<VoicemailMessage> = Vec::new();
        let mut greeting: Option<(Take, GreetingKind)> = None;
        let (mut menu, first) = Menu::start(Instant::now());
        let mut pending: std::collections::VecDeque<Step> = first.into();
        let mut queue: std::collections::VecDeque<Arc<[i16]>> = std::collections::VecDeque::new();
        let mut playing = false;
        let mut hung_up = false;
        // A key the menu answered: the first sound of the answer cuts what plays.
        let mut cut = false;
        loop {
            while let Some(step) = pending.pop_front() {
                match step {
                    Step::Play(s) => {
                        let clip = match &s {
                            Sound::Message(i) => match messages.get(*i) {
                                Some(m) => ctx.read(&m.audio_id).await.unwrap_or_else(|e| {
                                    tracing::warn!(audio = %m.audio_id, error = %e, "voicemail menu: message not readable");
                                    super::clips::invalid()
                                }),
                                None => super::clips::invalid(),
                            },
                            Sound::RecordBeep => super::clips::record_beep(),
                            Sound::Say(p) => ctx.prompts.clip(p).await,
                        };
                        // A message, or the answer to a key, cuts what plays; the rest queue
                        // behind each other.
                        if matches!(s, Sound::Message(_)) || cut || !playing {
                            queue.clear();
                            media.playout.play(clip);
                            playing = true;
                            cut = false;
                        } else {
                            queue.push_back(clip);
                        }
                    }
                    Step::CheckPin(pin) => {
                        let ok = check_pin(&ctx, &ext, pin).await;
                        if ok {
                            let reader = ctx.cluster.reader();
                            let prefix = VoicemailMessage::prefix(&ext);
                            messages = in_order(reader.scan_prefix(&prefix).unwrap_or_default());
                            let new = messages.iter().filter(|m| !m.heard).count();
                            tracing::info!(call = %call, extension = %ext, messages = messages.len(), new, "voicemail menu: PIN accepted");
                            pending.extend(menu.pin_checked(true, messages.len(), new));
                        } else {
                            tracing::warn!(call = %call, extension = %ext, source = %source, "voicemail menu: wrong PIN");
                            metrics::counter!("pbx_voicemail_pin_failures_total").increment(1);
                            ctx.security.auth_failed(
                                source,
                                storage::model::Service::Sip,
                                storage::model::Transport::Udp,
                            );
                            pending.extend(menu.pin_checked(false, 0, 0));
                        }
                    }
                    Step::Heard(i) => {
                        if let Some(m) = messages.get_mut(i)
                            && !m.heard
                        {
                            m.heard = true;
                            let cmd = storage::Command::SetVoicemailHeard {
                                mailbox: ext.clone(),
                                audio_id: m.audio_id.clone(),
                                heard: true,
                            };
                            let _ = ctx.cluster.propose(cmd).await;
                        }
                    }
                    Step::Delete(i) => {
                        if let Some(m) = messages.get(i) {
                            tracing::info!(call = %call, extension = %ext, audio = %m.audio_id, "voicemail menu: message deleted");
                            let cmd = storage::Command::DeleteVoicemailMessage {
                                mailbox: ext.clone(),
                                audio_id: m.audio_id.clone(),
                            };
                            let _ = ctx.cluster.propose(cmd).await;
                        }
                    }
                    Step::StartGreeting(kind) => {
                        greeting = Some((Take::new(agreed.law, agreed.pt, kind.longest()), kind));
                    }
                    Step::KeepGreeting => {
                        if let Some((take, kind)) = greeting.take() {
                            keep_greeting(&ctx, &call, &ext, kind, &take).await;
                        }
                    }
                    Step::Hangup => {
                        if !hung_up {
                            hung_up = true;
                            let _ = commands.send((call.clone(), AppCommand::Hangup)).await;
                        }
                    }
                }
            }
            cut = false;
            let deadline = menu
                .deadline()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(SessionEvent::Key(k)) => {
                        let steps = menu.digit(k, Instant::now());
                        cut = !steps.is_empty();
                        pending.extend(steps);
                    }
                    Some(SessionEvent::Transferred(_)) => {}
                    Some(SessionEvent::Ended) | None => return,
                },
                heard = media.next() => match heard {
                    Heard::Tick { ended: true } => {
                        if let Some(next) = queue.pop_front() {
                            media.playout.play(next);
                        } else {
                            playing = false;
                            pending.extend(menu.played(Instant::now()));
                        }
                    }
                    Heard::Tick { ended: false } => {}
                    Heard::Packet { keys } => {
                        if let Some((take, _)) = greeting.as_mut() {
                            take.packet(media.datagram());
                            if take.full() {
                                // The longest greeting: kept as if `#` ended it.
                                pending.extend(menu.digit('#', Instant::now()));
                            }
                        }
                        for k in keys {
                            let steps = menu.digit(k, Instant::now());
                            cut |= !steps.is_empty();
                            pending.extend(steps);
                        }
                    }
                },
                () = tokio::time::sleep_until(deadline) => {
                    pending.extend(menu.tick(Instant::now()));
                }
            }
        }
    }
}

/// Whether `pin` is the mailbox's PIN (argon2, off the async threads). A mailbox without a PIN
/// cannot be listened to from a phone.
async fn check_pin(ctx: &Context, ext: &str, pin: String) -> bool {
    let hash = ctx
        .cluster
        .reader()
        .get::<Mailbox>(ext)
        .ok()
        .flatten()
        .and_then(|m| m.pin_hash);
    let Some(hash) = hash else {
        tracing::warn!(extension = %ext, "voicemail menu: the mailbox has no PIN");
        return false;
    };
    tokio::task::spawn_blocking(move || crate::accounts::verify_password(&pin, &hash))
        .await
        .unwrap_or(false)
}

/// Saves a greeting recorded from the phone and makes it the mailbox's greeting of `kind`; the
/// one it replaces is deleted.
async fn keep_greeting(ctx: &Context, call: &str, ext: &str, kind: GreetingKind, take: &Take) {
    if take.length() < Duration::from_secs(1) {
        tracing::info!(call = %call, extension = %ext, kind = kind.as_str(), "voicemail menu: greeting too short; not kept");
        return;
    }
    let Ok(bytes) = take.wav() else {
        return;
    };
    let new = NewAudio {
        kind: AudioKind::Greeting,
        owner: ext.to_owned(),
        name: match kind {
            GreetingKind::Name => "name recorded from the phone".into(),
            GreetingKind::Unavailable | GreetingKind::Busy => {
                format!("{} greeting recorded from the phone", kind.as_str())
            }
        },
        call_id: None,
        retain_until: None,
    };
    let file = match ctx.store.save(new, &bytes).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(call = %call, extension = %ext, kind = kind.as_str(), error = %e, "voicemail menu: greeting not saved");
            return;
        }
    };
    let reader = ctx.cluster.reader();
    let (old, cmd) = match kind {
        GreetingKind::Name => {
            let old = reader
                .get::<MailboxName>(ext)
                .ok()
                .flatten()
                .map(|n| n.greeting);
            let cmd = storage::Command::SetMailboxName {
                extension: ext.to_owned(),
                greeting: Some(file.id.clone()),
            };
            (old, cmd)
        }
        GreetingKind::Unavailable | GreetingKind::Busy => {
            let Some(mut mailbox) = reader.get::<Mailbox>(ext).ok().flatten() else {
                return;
            };
            let field = if kind == GreetingKind::Busy {
                &mut mailbox.greeting_busy
            } else {
                &mut mailbox.greeting_unavailable
            };
            let old = field.replace(file.id.clone());
            mailbox.updated_at = crate::time::now_millis();
            (old, storage::Command::PutMailbox(mailbox))
        }
    };
    let set = ctx.cluster.propose(cmd).await;
    tracing::info!(call = %call, extension = %ext, kind = kind.as_str(), audio = %file.id, outcome = ?set, "voicemail menu: new greeting");
    // The file that is not played (the one replaced, or the new one when refused) goes.
    let unused = if matches!(set, Ok(storage::Response::Ok)) {
        old.filter(|o| *o != file.id)
    } else {
        Some(file.id)
    };
    if let Some(id) = unused {
        let _ = ctx
            .cluster
            .propose(storage::Command::DeleteAudioFile { id })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(m: &mut Menu, digits: &str, t: Instant) -> Vec<Step> {
        let mut out = Vec::new();
        for d in digits.chars() {
            out.extend(m.digit(d, t));
        }
        out
    }

    /// A menu past the PIN, with `messages` of which `new` are new (the counts said).
    fn opened(messages: usize, new: usize, t: Instant) -> Menu {
        let (mut m, _) = Menu::start(t);
        pin(&mut m, "739154#", t);
        m.pin_checked(true, messages, new);
        m
    }

    fn message(i: usize) -> Step {
        Step::Play(Sound::Message(i))
    }

    #[test]
    fn the_pin_then_each_message_new_first_then_goodbye() {
        let t = Instant::now();
        let (mut m, first) = Menu::start(t);
        assert_eq!(first, [say(Prompt::AskPin)]);
        assert_eq!(pin(&mut m, "739154#", t), [Step::CheckPin("739154".into())]);
        assert_eq!(
            m.pin_checked(true, 2, 1),
            [say(Prompt::Messages { new: 1, saved: 1 })]
        );
        assert_eq!(m.played(t), [message(0)]);
        // The message ended: heard, and its keys are said; then the menu waits.
        assert_eq!(m.played(t), [Step::Heard(0), say(Prompt::MessageOptions)]);
        assert!(m.tick(t + AFTER_MESSAGE).is_empty(), "no wait yet");
        assert!(m.played(t).is_empty());
        // No key: the next message after the pause.
        assert!(m.tick(t + Duration::from_secs(1)).is_empty());
        assert_eq!(m.tick(t + AFTER_MESSAGE), [message(1)]);
        // 7 deletes it; that was the last: goodbye, then the call ends.
        assert_eq!(m.digit('7', t), [Step::Delete(1), say(Prompt::Goodbye)]);
        assert_eq!(m.played(t), [Step::Hangup]);
    }

    #[test]
    fn wrong_pins_are_counted_and_the_third_ends_the_call() {
        let t = Instant::now();
        let (mut m, _) = Menu::start(t);
        for round in 1..=PIN_ATTEMPTS {
            assert_eq!(pin(&mut m, "000000#", t), [Step::CheckPin("000000".into())]);
            let steps = m.pin_checked(false, 0, 0);
            if round < PIN_ATTEMPTS {
                assert_eq!(steps, [say(Prompt::WrongPin), say(Prompt::AskPin)]);
                m.played(t);
            } else {
                assert_eq!(steps, [say(Prompt::WrongPin)]);
            }
        }
        assert_eq!(m.played(t), [Step::Hangup]);
        // Keys after that change nothing.
        assert!(pin(&mut m, "739154#", t).is_empty());
    }

    #[test]
    fn a_long_pin_is_cut_and_silence_is_taken_as_the_pin_or_goodbye() {
        let t = Instant::now();
        let (mut m, _) = Menu::start(t);
        pin(&mut m, &"1".repeat(40), t);
        assert_eq!(
            m.tick(t + PIN_WAIT),
            [Step::CheckPin("1".repeat(MAX_PIN + 1))]
        );
        let (mut m, _) = Menu::start(t);
        assert_eq!(m.tick(t + PIN_WAIT), [say(Prompt::Goodbye)]);
    }

    #[test]
    fn replay_keep_and_a_new_greeting_between_messages() {
        let t = Instant::now();
        let mut m = opened(2, 2, t);
        assert_eq!(m.played(t), [message(0)]);
        // 1 during the message: from its start.
        assert_eq!(m.digit('1', t), [message(0)]);
        // 9 keeps it (heard) and goes on.
        assert_eq!(m.digit('9', t), [Step::Heard(0), message(1)]);
        // 5: which greeting? 3: the name, recorded after the tone until #; then the menu goes on
        // after message 1.
        assert_eq!(m.digit('5', t), [say(Prompt::GreetingChoice)]);
        assert!(m.played(t).is_empty());
        assert_eq!(m.digit('3', t), [say(Prompt::RecordAfterTone)]);
        // Keys while it is said record nothing.
        assert!(m.digit('#', t).is_empty());
        assert_eq!(
            m.played(t),
            [
                Step::Play(Sound::RecordBeep),
                Step::StartGreeting(GreetingKind::Name)
            ]
        );
        assert_eq!(m.digit('#', t), [Step::KeepGreeting, say(Prompt::Saved)]);
        assert_eq!(m.played(t), [say(Prompt::Goodbye)]);
    }

    #[test]
    fn each_greeting_has_its_key_and_a_wrong_key_asks_again() {
        let t = Instant::now();
        for (key, kind) in [
            ('1', GreetingKind::Unavailable),
            ('2', GreetingKind::Busy),
            ('3', GreetingKind::Name),
        ] {
            let mut m = opened(1, 1, t);
            m.played(t);
            m.played(t);
            // 5 after the message: the choice, then the menu goes on past message 0.
            assert_eq!(m.digit('5', t), [say(Prompt::GreetingChoice)]);
            assert_eq!(
                m.digit('8', t),
                [say(Prompt::InvalidChoice), say(Prompt::GreetingChoice)]
            );
            m.played(t);
            m.digit(key, t);
            assert_eq!(m.played(t)[1], Step::StartGreeting(kind));
        }
        // No choice in time: nothing recorded, the next message plays.
        let mut m = opened(2, 2, t);
        m.played(t);
        m.digit('5', t);
        m.played(t);
        assert!(m.tick(t + Duration::from_secs(1)).is_empty());
        assert_eq!(m.tick(t + CHOICE_WAIT), [message(1)]);
    }

    #[test]
    fn an_empty_mailbox_offers_the_greetings_then_says_goodbye() {
        let t = Instant::now();
        let (mut m, _) = Menu::start(t);
        pin(&mut m, "739154#", t);
        assert_eq!(
            m.pin_checked(true, 0, 0),
            [
                say(Prompt::Messages { new: 0, saved: 0 }),
                say(Prompt::MailboxOptions)
            ]
        );
        assert!(m.played(t).is_empty());
        assert_eq!(m.tick(t + AFTER_MESSAGE), [say(Prompt::Goodbye)]);

        let mut m = opened(0, 0, t);
        assert_eq!(m.digit('5', t), [say(Prompt::GreetingChoice)]);
        m.digit('1', t);
        m.played(t);
        assert_eq!(m.digit('#', t), [Step::KeepGreeting, say(Prompt::Saved)]);
        assert_eq!(m.played(t), [say(Prompt::Goodbye)]);
        assert_eq!(m.played(t), [Step::Hangup]);
    }
}
