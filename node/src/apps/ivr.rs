//! An auto attendant's menu as a pure state machine: the greeting plays, the caller presses a key
//! (or dials an extension's number, where allowed), and the call is handed on; silence and wrong
//! keys replay the greeting a set number of times before the fallback (or goodbye).
//!
//! Keys interrupt the greeting (the caller need not hear it out). With direct dialling on, a key
//! that is also the first digit of an extension's number waits for more digits until a pause
//! ([`INTER_DIGIT`]) or `#`; without it, one key decides at once.

use std::time::{Duration, Instant};

/// The pause after which the digits dialled so far are taken as complete.
pub(crate) const INTER_DIGIT: Duration = Duration::from_millis(2500);
/// Digits collected at most (longer input is taken as invalid).
pub(crate) const MAX_DIGITS: usize = 32;

/// What a menu is, with its destinations already resolved to the numbers the call engine rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MenuConfig {
    pub(crate) options: Vec<(char, String)>,
    pub(crate) direct_dial: bool,
    pub(crate) timeout: Duration,
    pub(crate) attempts: u8,
    pub(crate) fallback: Option<String>,
}

/// What the menu asks extensions about when direct dialling is on.
pub(crate) trait Numbers {
    /// `number` is an extension's that can be dialled.
    fn is_extension(&self, number: &str) -> bool;
    /// Some extension's number starts with `prefix` and is longer.
    fn extends(&self, prefix: &str) -> bool;
}

/// Which recording plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Clip {
    Greeting,
    /// That key leads nowhere (or the choice could not be reached); the greeting follows.
    Invalid,
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Play(Clip),
    /// Stop what plays (a key was pressed) and listen.
    Silence,
    /// Hand the call on to this number.
    Transfer(String),
    Hangup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Playing(Clip),
    /// Waiting for keys until the deadline.
    Listening,
    /// Handed on or hung up: nothing more happens unless the transfer fails.
    Done,
}

#[derive(Debug)]
pub(crate) struct Menu {
    cfg: MenuConfig,
    state: State,
    /// How many times the greeting started.
    plays: u8,
    digits: String,
    deadline: Option<Instant>,
}

impl Menu {
    /// A menu whose greeting starts now.
    pub(crate) fn start(cfg: MenuConfig) -> (Self, Step) {
        let menu = Self {
            cfg,
            state: State::Playing(Clip::Greeting),
            plays: 1,
            digits: String::new(),
            deadline: None,
        };
        (menu, Step::Play(Clip::Greeting))
    }

    /// When [`Menu::tick`] must run next.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The clip that was playing has ended.
    pub(crate) fn played(&mut self, now: Instant) -> Option<Step> {
        match self.state {
            State::Playing(Clip::Greeting) => {
                self.state = State::Listening;
                self.deadline = Some(now + self.cfg.timeout);
                None
            }
            State::Playing(Clip::Invalid) => Some(self.replay_or_give_up()),
            State::Listening | State::Done => None,
        }
    }

    /// A key the caller pressed.
    pub(crate) fn digit(&mut self, d: char, now: Instant, numbers: &dyn Numbers) -> Option<Step> {
        if self.state == State::Done {
            return None;
        }
        let was_playing = matches!(self.state, State::Playing(_));
        self.state = State::Listening;
        if d == '#' && self.cfg.direct_dial && !self.digits.is_empty() {
            let dialled = std::mem::take(&mut self.digits);
            return Some(self.decide(&dialled, numbers));
        }
        self.digits.push(d);
        if self.digits.len() > MAX_DIGITS {
            return Some(self.invalid());
        }
        let waits = self.cfg.direct_dial && numbers.extends(&self.digits);
        if !waits {
            let dialled = std::mem::take(&mut self.digits);
            return Some(self.decide(&dialled, numbers));
        }
        self.deadline = Some(now + INTER_DIGIT);
        was_playing.then_some(Step::Silence)
    }

    /// Time passed: the pause after digits, or the wait for any.
    pub(crate) fn tick(&mut self, now: Instant, numbers: &dyn Numbers) -> Option<Step> {
        if self.deadline.is_none_or(|d| now < d) || self.state == State::Done {
            return None;
        }
        self.deadline = None;
        if !self.digits.is_empty() {
            let dialled = std::mem::take(&mut self.digits);
            return Some(self.decide(&dialled, numbers));
        }
        if self.state == State::Listening {
            return Some(self.replay_or_give_up());
        }
        None
    }

    /// The transfer asked for did not go through (busy, no answer): the caller is back here.
    pub(crate) fn transfer_failed(&mut self) -> Step {
        self.invalid()
    }

    fn decide(&mut self, dialled: &str, numbers: &dyn Numbers) -> Step {
        let mut chars = dialled.chars();
        let option = match (chars.next(), chars.next()) {
            (Some(key), None) => self
                .cfg
                .options
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, to)| to.clone()),
            _ => None,
        };
        let to = option.or_else(|| {
            (self.cfg.direct_dial && numbers.is_extension(dialled)).then(|| dialled.to_owned())
        });
        match to {
            Some(number) => self.transfer(number),
            None => self.invalid(),
        }
    }

    fn transfer(&mut self, number: String) -> Step {
        self.state = State::Done;
        self.deadline = None;
        Step::Transfer(number)
    }

    fn invalid(&mut self) -> Step {
        self.digits.clear();
        self.deadline = None;
        if self.plays >= self.cfg.attempts {
            return self.give_up();
        }
        self.state = State::Playing(Clip::Invalid);
        Step::Play(Clip::Invalid)
    }

    fn replay_or_give_up(&mut self) -> Step {
        self.deadline = None;
        if self.plays >= self.cfg.attempts {
            return self.give_up();
        }
        self.plays += 1;
        self.state = State::Playing(Clip::Greeting);
        Step::Play(Clip::Greeting)
    }

    fn give_up(&mut self) -> Step {
        match self.cfg.fallback.clone() {
            Some(number) => self.transfer(number),
            None => {
                self.state = State::Done;
                Step::Hangup
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Office;
    impl Numbers for Office {
        fn is_extension(&self, n: &str) -> bool {
            matches!(n, "1001" | "1002" | "2")
        }
        fn extends(&self, p: &str) -> bool {
            ["1001", "1002"]
                .iter()
                .any(|e| e.len() > p.len() && e.starts_with(p))
        }
    }

    fn cfg(direct_dial: bool, fallback: Option<&str>) -> MenuConfig {
        MenuConfig {
            options: vec![('1', "600".into()), ('2', "1002".into())],
            direct_dial,
            timeout: Duration::from_secs(5),
            attempts: 3,
            fallback: fallback.map(str::to_owned),
        }
    }

    #[test]
    fn a_key_during_the_greeting_hands_the_call_on_at_once() {
        let t = Instant::now();
        let (mut m, first) = Menu::start(cfg(false, None));
        assert_eq!(first, Step::Play(Clip::Greeting));
        assert_eq!(
            m.digit('2', t, &Office),
            Some(Step::Transfer("1002".into()))
        );
        // Nothing more happens, whatever the time or the keys.
        assert_eq!(m.digit('1', t, &Office), None);
        assert_eq!(m.tick(t + Duration::from_secs(60), &Office), None);
    }

    #[test]
    fn silence_replays_the_greeting_then_the_fallback_takes_the_call() {
        let t = Instant::now();
        let (mut m, _) = Menu::start(cfg(false, Some("1001")));
        assert_eq!(m.played(t), None);
        assert_eq!(m.tick(t + Duration::from_secs(4), &Office), None);
        let t = t + Duration::from_secs(5);
        assert_eq!(m.tick(t, &Office), Some(Step::Play(Clip::Greeting)));
        m.played(t);
        let t = t + Duration::from_secs(5);
        assert_eq!(m.tick(t, &Office), Some(Step::Play(Clip::Greeting)));
        m.played(t);
        let t = t + Duration::from_secs(5);
        assert_eq!(m.tick(t, &Office), Some(Step::Transfer("1001".into())));
    }

    #[test]
    fn without_a_fallback_the_menu_hangs_up() {
        let t = Instant::now();
        let mut c = cfg(false, None);
        c.attempts = 1;
        let (mut m, _) = Menu::start(c);
        m.played(t);
        assert_eq!(
            m.tick(t + Duration::from_secs(5), &Office),
            Some(Step::Hangup)
        );
    }

    #[test]
    fn a_wrong_key_plays_the_invalid_notice_then_the_greeting_again() {
        let t = Instant::now();
        let (mut m, _) = Menu::start(cfg(false, None));
        m.played(t);
        assert_eq!(m.digit('9', t, &Office), Some(Step::Play(Clip::Invalid)));
        assert_eq!(m.played(t), Some(Step::Play(Clip::Greeting)));
        m.played(t);
        assert_eq!(m.digit('7', t, &Office), Some(Step::Play(Clip::Invalid)));
        assert_eq!(m.played(t), Some(Step::Play(Clip::Greeting)));
        // Third greeting: one more wrong key and the caller is hung up.
        assert_eq!(m.digit('#', t, &Office), Some(Step::Hangup));
    }

    #[test]
    fn direct_dial_waits_for_the_whole_number() {
        let t = Instant::now();
        let (mut m, _) = Menu::start(cfg(true, None));
        // '1' is an option and the start of 1001: the menu waits, and the greeting stops.
        assert_eq!(m.digit('1', t, &Office), Some(Step::Silence));
        assert_eq!(m.digit('0', t, &Office), None);
        assert_eq!(m.digit('0', t, &Office), None);
        assert_eq!(
            m.digit('2', t, &Office),
            Some(Step::Transfer("1002".into()))
        );
    }

    #[test]
    fn direct_dial_a_pause_after_an_option_key_takes_the_option() {
        let t = Instant::now();
        let (mut m, _) = Menu::start(cfg(true, None));
        m.played(t);
        assert_eq!(m.digit('1', t, &Office), None);
        assert_eq!(m.tick(t + Duration::from_secs(1), &Office), None);
        assert_eq!(
            m.tick(t + INTER_DIGIT, &Office),
            Some(Step::Transfer("600".into()))
        );
    }

    #[test]
    fn direct_dial_hash_ends_the_number_and_unknown_numbers_are_invalid() {
        let t = Instant::now();
        let (mut m, _) = Menu::start(cfg(true, None));
        m.played(t);
        m.digit('1', t, &Office);
        m.digit('0', t, &Office);
        assert_eq!(m.digit('#', t, &Office), Some(Step::Play(Clip::Invalid)));
        // A key that is no option and starts no extension is decided at once.
        m.played(t);
        m.played(t);
        assert_eq!(
            m.digit('2', t, &Office),
            Some(Step::Transfer("1002".into()))
        );
    }

    #[test]
    fn a_failed_transfer_brings_the_caller_back_to_the_menu() {
        let t = Instant::now();
        let (mut m, _) = Menu::start(cfg(false, None));
        assert_eq!(m.digit('1', t, &Office), Some(Step::Transfer("600".into())));
        assert_eq!(m.transfer_failed(), Step::Play(Clip::Invalid));
        assert_eq!(m.played(t), Some(Step::Play(Clip::Greeting)));
        m.played(t);
        assert_eq!(
            m.digit('2', t, &Office),
            Some(Step::Transfer("1002".into()))
        );
    }

    #[test]
    fn a_digit_flood_changes_nothing_but_one_invalid_choice() {
        let t = Instant::now();
        let (mut m, _) = Menu::start(cfg(true, None));
        m.played(t);
        // Forty keys that keep extending nothing: decided at the first.
        assert_eq!(m.digit('5', t, &Office), Some(Step::Play(Clip::Invalid)));
        for _ in 0..40 {
            let _ = m.digit('1', t, &Office);
            assert!(m.digits.len() <= MAX_DIGITS);
        }
    }
}
