//! Listening to one's voicemail from one's own phone (the voicemail feature code, `*97`): the PIN
//! first, then each message, new ones first, with keys to act on it; and a new greeting recorded
//! from the phone.
//!
//! There are no spoken prompts (no text-to-speech here), so the menu speaks in tones: two short
//! beeps ask for the PIN (digits, then `#`); the three rising tones say "wrong"; one short beep per
//! new message (up to nine) greets the owner; each message then plays. During or after a message:
//! `1` plays it again, `7` deletes it, `9` or `#` keeps it and goes on, `5` records a new greeting
//! for no answer (after a long beep, until `#`). After the last message, three falling tones and
//! the call ends.
//!
//! A wrong PIN counts against the phone's address like a failed SIP password (the automatic
//! defence bans it); three wrong PINs end the call.
//!
//! [`Menu`] is pure; [`Session`] drives it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use storage::audio::AudioKind;
use storage::voicemail::{Mailbox, VoicemailMessage};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::media::{Agreed, CallMedia, Heard};
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

/// What plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sound {
    /// Enter the PIN.
    AskPin,
    Wrong,
    /// `n` beeps: new messages waiting.
    Count(usize),
    /// Message `i` of the list.
    Message(usize),
    /// Record the greeting now.
    RecordBeep,
    /// The greeting was kept.
    Saved,
    Goodbye,
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
    /// Start recording the greeting (the caller's audio from now on).
    StartGreeting,
    /// Stop recording and keep what was recorded as the greeting.
    KeepGreeting,
    Hangup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pin,
    Checking,
    Intro,
    /// Message `i` plays.
    Playing(usize),
    /// Message `i` played; waiting for a key.
    After(usize),
    Recording,
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
    /// Where to go on after the greeting is recorded.
    resume: usize,
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
            resume: 0,
        };
        (menu, vec![Step::Play(Sound::AskPin)])
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
            State::Playing(i) | State::After(i) => self.on_message_key(i, d, now),
            State::Recording if d == '#' => {
                self.state = State::Intro;
                self.deadline = None;
                vec![Step::KeepGreeting, Step::Play(Sound::Saved)]
            }
            State::Intro if d == '5' => self.record(0),
            State::Checking | State::Intro | State::Recording | State::Closing | State::Done => {
                Vec::new()
            }
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
                return vec![Step::Play(Sound::Wrong)];
            }
            self.state = State::Pin;
            return vec![Step::Play(Sound::Wrong), Step::Play(Sound::AskPin)];
        }
        self.messages = messages;
        self.deleted = vec![false; messages];
        self.state = State::Intro;
        vec![Step::Play(Sound::Count(new.min(9)))]
    }

    /// What was playing ended.
    pub(crate) fn played(&mut self, now: Instant) -> Vec<Step> {
        match self.state {
            State::Pin => {
                self.deadline = Some(now + PIN_WAIT);
                Vec::new()
            }
            State::Intro => {
                if self.resume >= self.messages && self.messages > 0 {
                    return self.close();
                }
                self.next_from(self.resume)
            }
            State::Playing(i) => {
                self.state = State::After(i);
                self.deadline = Some(now + AFTER_MESSAGE);
                vec![Step::Heard(i)]
            }
            State::Closing => {
                self.state = State::Done;
                vec![Step::Hangup]
            }
            State::Checking | State::After(_) | State::Recording | State::Done => Vec::new(),
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
            State::Pin => {
                self.state = State::Closing;
                vec![Step::Play(Sound::Goodbye)]
            }
            State::After(i) => self.next_from(i + 1),
            _ => Vec::new(),
        }
    }

    fn on_message_key(&mut self, i: usize, d: char, _now: Instant) -> Vec<Step> {
        match d {
            '1' => {
                self.state = State::Playing(i);
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
            '5' => self.record(i + 1),
            _ => Vec::new(),
        }
    }

    fn record(&mut self, resume: usize) -> Vec<Step> {
        self.resume = resume;
        self.state = State::Recording;
        self.deadline = None;
        vec![Step::Play(Sound::RecordBeep), Step::StartGreeting]
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
        vec![Step::Play(Sound::Goodbye)]
    }
}

/// The feature code an extension dials to reach its own mailbox.
pub(crate) const LISTEN_CODE: &str = "*97";

/// The longest greeting recorded from the phone.
const MAX_GREETING: Duration = Duration::from_secs(60);

/// The menu's tones, synthesised once.
fn sound(s: Sound) -> Arc<[i16]> {
    use std::sync::OnceLock;
    let tones = |parts: &[(f32, usize)]| super::clips::tones(6000, parts);
    static ASK: OnceLock<Arc<[i16]>> = OnceLock::new();
    static RECORD: OnceLock<Arc<[i16]>> = OnceLock::new();
    static SAVED: OnceLock<Arc<[i16]>> = OnceLock::new();
    static BYE: OnceLock<Arc<[i16]>> = OnceLock::new();
    let get = |cell: &'static OnceLock<Arc<[i16]>>, parts: &[(f32, usize)]| {
        Arc::clone(cell.get_or_init(|| tones(parts)))
    };
    match s {
        Sound::AskPin => get(&ASK, &[(800.0, 150), (0.0, 100), (800.0, 150), (0.0, 200)]),
        Sound::Wrong => super::clips::invalid(),
        Sound::Count(n) => {
            let mut parts = vec![(0.0, 300)];
            parts.extend(std::iter::repeat_n([(600.0, 150), (0.0, 150)], n).flatten());
            tones(&parts)
        }
        Sound::RecordBeep => get(&RECORD, &[(1000.0, 600), (0.0, 100)]),
        Sound::Saved => get(&SAVED, &[(600.0, 150), (900.0, 250), (0.0, 300)]),
        Sound::Goodbye => get(
            &BYE,
            &[(900.0, 200), (700.0, 200), (500.0, 300), (0.0, 200)],
        ),
        // Messages come from the store.
        Sound::Message(_) => tones(&[(0.0, 20)]),
    }
}

/// Two short beeps: enter the PIN (the conference rooms ask the same way).
pub(super) fn ask_pin_sound() -> Arc<[i16]> {
    sound(Sound::AskPin)
}

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
        let mut greeting: Option<Take> = None;
        let (mut menu, first) = Menu::start(Instant::now());
        let mut pending: std::collections::VecDeque<Step> = first.into();
        let mut queue: std::collections::VecDeque<Arc<[i16]>> = std::collections::VecDeque::new();
        let mut playing = false;
        let mut hung_up = false;
        loop {
            while let Some(step) = pending.pop_front() {
                match step {
                    Step::Play(s) => {
                        let clip = match s {
                            Sound::Message(i) => match messages.get(i) {
                                Some(m) => ctx.read(&m.audio_id).await.unwrap_or_else(|e| {
                                    tracing::warn!(audio = %m.audio_id, error = %e, "voicemail menu: message not readable");
                                    sound(Sound::Wrong)
                                }),
                                None => sound(Sound::Wrong),
                            },
                            other => sound(other),
                        };
                        // A message or a replay cuts what plays; tones queue behind each other.
                        if matches!(s, Sound::Message(_)) {
                            queue.clear();
                            media.playout.play(clip);
                            playing = true;
                        } else if playing {
                            queue.push_back(clip);
                        } else {
                            media.playout.play(clip);
                            playing = true;
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
                    Step::StartGreeting => {
                        greeting = Some(Take::new(agreed.law, agreed.pt, MAX_GREETING));
                    }
                    Step::KeepGreeting => {
                        if let Some(take) = greeting.take() {
                            keep_greeting(&ctx, &call, &ext, &take).await;
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
            let deadline = menu
                .deadline()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(SessionEvent::Key(k)) => pending.extend(menu.digit(k, Instant::now())),
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
                        if let Some(take) = greeting.as_mut() {
                            take.packet(media.datagram());
                            if take.full() {
                                // The longest greeting: kept as if `#` ended it.
                                pending.extend(menu.digit('#', Instant::now()));
                            }
                        }
                        for k in keys {
                            pending.extend(menu.digit(k, Instant::now()));
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

/// Saves a greeting recorded from the phone and makes it the mailbox's greeting for no answer.
async fn keep_greeting(ctx: &Context, call: &str, ext: &str, take: &Take) {
    if take.length() < Duration::from_secs(1) {
        tracing::info!(call = %call, extension = %ext, "voicemail menu: greeting too short; not kept");
        return;
    }
    let Ok(bytes) = take.wav() else {
        return;
    };
    let new = NewAudio {
        kind: AudioKind::Greeting,
        owner: ext.to_owned(),
        name: "greeting recorded from the phone".into(),
        call_id: None,
        retain_until: None,
    };
    let file = match ctx.store.save(new, &bytes).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(call = %call, extension = %ext, error = %e, "voicemail menu: greeting not saved");
            return;
        }
    };
    let Some(mut mailbox) = ctx.cluster.reader().get::<Mailbox>(ext).ok().flatten() else {
        return;
    };
    let old = mailbox.greeting_unavailable.replace(file.id.clone());
    mailbox.updated_at = crate::time::now_millis();
    let set = ctx
        .cluster
        .propose(storage::Command::PutMailbox(mailbox))
        .await;
    tracing::info!(call = %call, extension = %ext, audio = %file.id, outcome = ?set, "voicemail menu: new greeting");
    if let Some(old) = old
        && matches!(set, Ok(storage::Response::Ok))
    {
        // The greeting it replaces is not played any more.
        let _ = ctx
            .cluster
            .propose(storage::Command::DeleteAudioFile { id: old })
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

    #[test]
    fn the_pin_then_each_message_new_first_then_goodbye() {
        let t = Instant::now();
        let (mut m, first) = Menu::start(t);
        assert_eq!(first, [Step::Play(Sound::AskPin)]);
        assert_eq!(pin(&mut m, "739154#", t), [Step::CheckPin("739154".into())]);
        assert_eq!(m.pin_checked(true, 2, 1), [Step::Play(Sound::Count(1))]);
        assert_eq!(m.played(t), [Step::Play(Sound::Message(0))]);
        assert_eq!(m.played(t), [Step::Heard(0)]);
        // No key: the next message after the pause.
        assert!(m.tick(t + Duration::from_secs(1)).is_empty());
        assert_eq!(m.tick(t + AFTER_MESSAGE), [Step::Play(Sound::Message(1))]);
        // 7 deletes it; that was the last: goodbye, then the call ends.
        assert_eq!(
            m.digit('7', t),
            [Step::Delete(1), Step::Play(Sound::Goodbye)]
        );
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
                assert_eq!(steps, [Step::Play(Sound::Wrong), Step::Play(Sound::AskPin)]);
                m.played(t);
            } else {
                assert_eq!(steps, [Step::Play(Sound::Wrong)]);
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
        assert_eq!(m.tick(t + PIN_WAIT), [Step::Play(Sound::Goodbye)]);
    }

    #[test]
    fn replay_keep_and_a_new_greeting_between_messages() {
        let t = Instant::now();
        let (mut m, _) = Menu::start(t);
        pin(&mut m, "739154#", t);
        m.pin_checked(true, 2, 2);
        assert_eq!(m.played(t), [Step::Play(Sound::Message(0))]);
        // 1 during the message: from its start.
        assert_eq!(m.digit('1', t), [Step::Play(Sound::Message(0))]);
        // 9 keeps it (heard) and goes on.
        assert_eq!(
            m.digit('9', t),
            [Step::Heard(0), Step::Play(Sound::Message(1))]
        );
        // 5: a new greeting, recorded until #, then the menu goes on after message 1.
        assert_eq!(
            m.digit('5', t),
            [Step::Play(Sound::RecordBeep), Step::StartGreeting]
        );
        assert_eq!(
            m.digit('#', t),
            [Step::KeepGreeting, Step::Play(Sound::Saved)]
        );
        assert_eq!(m.played(t), [Step::Play(Sound::Goodbye)]);
    }

    #[test]
    fn an_empty_mailbox_says_goodbye_unless_the_owner_records_a_greeting() {
        let t = Instant::now();
        let (mut m, _) = Menu::start(t);
        pin(&mut m, "739154#", t);
        assert_eq!(m.pin_checked(true, 0, 0), [Step::Play(Sound::Count(0))]);
        assert_eq!(
            m.digit('5', t),
            [Step::Play(Sound::RecordBeep), Step::StartGreeting]
        );
        m.digit('#', t);
        assert_eq!(m.played(t), [Step::Play(Sound::Goodbye)]);
    }
}
