//! What the PBX says in its own voice: the voicemail menu, the PIN prompts, the default voicemail
//! greeting, an invalid choice. Each prompt is a sequence of phrases from a fixed set, spoken once
//! per node by espeak-ng ([`crate::audio::speech`]) and kept in memory; a node where espeak-ng is
//! missing or fails plays the tones the PBX used before it had words, and calls go on.
//!
//! [`Prompt::parts`] (what a prompt says, phrase by phrase), [`Prompt::tones`] (what stands in for
//! it) and [`Voice::assemble`] are pure; [`load`] renders the phrases through any speaker (espeak-ng
//! in the node, a stand-in in tests); [`Prompts`] is the node's set, rendered once in the
//! background.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::OnceCell;

use super::clips;
use crate::audio::speech::{self, SpeechError};

const RATE: usize = 8000;
/// The voice the prompts are spoken in.
const VOICE: &str = "en";
/// Phrases rendered at once (each is a short espeak-ng process).
const RENDERERS: usize = 4;
/// All phrases rendered within this, or the node speaks in tones.
const RENDER_WITHIN: Duration = Duration::from_secs(30);
/// A call waits this long for phrases still being rendered (the node just started), then hears
/// the tones for that prompt.
const WAIT_FOR_VOICE: Duration = Duration::from_secs(3);
/// Quieter than this is silence, trimmed off a phrase's ends.
const SILENCE: u16 = 300;
/// Kept before and after a phrase's first and last sound, so no consonant is clipped (10 ms).
const MARGIN: usize = RATE / 100;
/// Phrases are brought to this peak, so that they sound equally loud.
const PEAK: i32 = 14_000;
/// Silence between words, and after a sentence (at 8 kHz).
const WORD_GAP: usize = RATE * 80 / 1000;
const SENTENCE_GAP: usize = RATE * 400 / 1000;
/// Counts are said up to this; more is said as this many.
const MAX_COUNT: usize = 9999;

/// One phrase the PBX can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Phrase {
    EnterPin,
    IncorrectPin,
    YouHave,
    No,
    Messages,
    NewMessage,
    NewMessages,
    And,
    SavedMessage,
    SavedMessages,
    /// The keys after a message (as [`super::listen::Menu`] takes them).
    MessageOptions,
    /// The key of an empty mailbox.
    MailboxOptions,
    GreetingChoice,
    RecordAfterTone,
    Saved,
    Goodbye,
    InvalidChoice,
    PersonAtExtension,
    NotAvailable,
    IsBusy,
    LeaveMessage,
    ConferenceFull,
    /// Zero to nine.
    Digit(u8),
    /// Ten to nineteen.
    Teen(u8),
    /// Twenty to ninety: the tens digit, 2 to 9.
    Tens(u8),
    Hundred,
    Thousand,
}

impl Phrase {
    /// Every phrase, in the order they are rendered.
    pub(crate) fn all() -> Vec<Self> {
        let mut all = vec![
            Self::EnterPin,
            Self::IncorrectPin,
            Self::YouHave,
            Self::No,
            Self::Messages,
            Self::NewMessage,
            Self::NewMessages,
            Self::And,
            Self::SavedMessage,
            Self::SavedMessages,
            Self::MessageOptions,
            Self::MailboxOptions,
            Self::GreetingChoice,
            Self::RecordAfterTone,
            Self::Saved,
            Self::Goodbye,
            Self::InvalidChoice,
            Self::PersonAtExtension,
            Self::NotAvailable,
            Self::IsBusy,
            Self::LeaveMessage,
            Self::ConferenceFull,
            Self::Hundred,
            Self::Thousand,
        ];
        all.extend((0..=9).map(Self::Digit));
        all.extend((10..=19).map(Self::Teen));
        all.extend((2..=9).map(Self::Tens));
        all
    }

    /// What is said. "pin" in lower case: espeak-ng spells "PIN" out letter by letter.
    pub(crate) fn text(self) -> &'static str {
        const DIGITS: [&str; 10] = [
            "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
        ];
        const TEENS: [&str; 10] = [
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
        ];
        const TENS: [&str; 8] = [
            "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
        ];
        match self {
            Self::EnterPin => "Please enter your pin, then press pound.",
            Self::IncorrectPin => "Incorrect pin.",
            Self::YouHave => "You have",
            Self::No => "no",
            Self::Messages => "messages",
            Self::NewMessage => "new message",
            Self::NewMessages => "new messages",
            Self::And => "and",
            Self::SavedMessage => "saved message",
            Self::SavedMessages => "saved messages",
            Self::MessageOptions => {
                "Press 1 to play it again, 7 to delete it, 9 to save it and go on, \
                 or 5 to change your greetings."
            }
            Self::MailboxOptions => "To change your greetings, press 5.",
            Self::GreetingChoice => {
                "Press 1 to record your greeting for when you do not answer, \
                 2 for when you are busy, or 3 to record your name."
            }
            Self::RecordAfterTone => "Record after the tone, then press pound.",
            Self::Saved => "Saved.",
            Self::Goodbye => "Goodbye.",
            Self::InvalidChoice => "That choice is not valid.",
            Self::PersonAtExtension => "The person at extension",
            Self::NotAvailable => "is not available.",
            Self::IsBusy => "is busy.",
            Self::LeaveMessage => "Please leave a message after the tone.",
            Self::ConferenceFull => "This conference is full.",
            Self::Hundred => "hundred",
            Self::Thousand => "thousand",
            Self::Digit(d) => DIGITS.get(usize::from(d)).copied().unwrap_or("zero"),
            Self::Teen(n) => TEENS
                .get(usize::from(n.saturating_sub(10)))
                .copied()
                .unwrap_or("ten"),
            Self::Tens(t) => TENS
                .get(usize::from(t.saturating_sub(2)))
                .copied()
                .unwrap_or("twenty"),
        }
    }
}

/// A piece of a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Say(Phrase),
    /// A recording of the mailbox's owner (their name).
    Recording(Arc<[i16]>),
    /// The end of a sentence: a longer pause.
    Stop,
}

/// What the PBX says at one point of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Prompt {
    /// Enter the PIN, then `#`.
    AskPin,
    WrongPin,
    /// How many new and saved (heard) messages the mailbox holds.
    Messages {
        new: usize,
        saved: usize,
    },
    /// After a message: what the keys do.
    MessageOptions,
    /// An empty mailbox: the key that changes the greetings.
    MailboxOptions,
    /// Which greeting to record.
    GreetingChoice,
    RecordAfterTone,
    Saved,
    Goodbye,
    InvalidChoice,
    /// The default voicemail greeting: the person at the extension (its number digit by digit, or
    /// the owner's recorded name) is not available, or busy; leave a message after the tone.
    Absent {
        extension: String,
        busy: bool,
        name: Option<Arc<[i16]>>,
    },
    ConferenceFull,
}

impl Prompt {
    /// The prompt, phrase by phrase.
    pub(crate) fn parts(&self) -> Vec<Part> {
        let say = |p: &[Phrase]| p.iter().copied().map(Part::Say).collect::<Vec<_>>();
        match self {
            Self::AskPin => say(&[Phrase::EnterPin]),
            Self::WrongPin => say(&[Phrase::IncorrectPin]),
            Self::Messages { new, saved } => {
                let mut parts = say(&[Phrase::YouHave]);
                if *new == 0 && *saved == 0 {
                    parts.extend(say(&[Phrase::No, Phrase::Messages]));
                } else {
                    parts.extend(count(*new, Phrase::NewMessage, Phrase::NewMessages));
                    if *saved > 0 {
                        parts.push(Part::Say(Phrase::And));
                        parts.extend(count(*saved, Phrase::SavedMessage, Phrase::SavedMessages));
                    }
                }
                parts.push(Part::Stop);
                parts
            }
            Self::MessageOptions => say(&[Phrase::MessageOptions]),
            Self::MailboxOptions => say(&[Phrase::MailboxOptions]),
            Self::GreetingChoice => say(&[Phrase::GreetingChoice]),
            Self::RecordAfterTone => say(&[Phrase::RecordAfterTone]),
            Self::Saved => say(&[Phrase::Saved]),
            Self::Goodbye => say(&[Phrase::Goodbye]),
            Self::InvalidChoice => say(&[Phrase::InvalidChoice]),
            Self::Absent {
                extension,
                busy,
                name,
            } => {
                let mut parts = say(&[Phrase::PersonAtExtension]);
                match name {
                    Some(n) => parts.push(Part::Recording(Arc::clone(n))),
                    None => parts.extend(say(&digits(extension))),
                }
                let state = if *busy {
                    Phrase::IsBusy
                } else {
                    Phrase::NotAvailable
                };
                parts.extend(say(&[state]));
                parts.push(Part::Stop);
                parts.extend(say(&[Phrase::LeaveMessage]));
                parts
            }
            Self::ConferenceFull => say(&[Phrase::ConferenceFull]),
        }
    }

    /// What plays instead on a node that cannot speak: the tones of before (nothing where there
    /// was nothing: the beep then follows at once).
    pub(crate) fn tones(&self) -> Arc<[i16]> {
        match self {
            Self::AskPin | Self::GreetingChoice => clips::ask(),
            Self::WrongPin | Self::InvalidChoice | Self::ConferenceFull => clips::invalid(),
            Self::Messages { new, .. } => clips::count(*new),
            Self::Saved => clips::saved(),
            Self::Goodbye => clips::goodbye(),
            // The owner's own voice still says whose mailbox it is.
            Self::Absent { name: Some(n), .. } => Arc::clone(n),
            Self::Absent { name: None, .. }
            | Self::MessageOptions
            | Self::MailboxOptions
            | Self::RecordAfterTone => Arc::from(Vec::new()),
        }
    }
}

/// `n` (at most [`MAX_COUNT`]; none as "no") said as words, then `one` or `many` after it.
fn count(n: usize, one: Phrase, many: Phrase) -> Vec<Part> {
    let words = if n == 0 { vec![Phrase::No] } else { number(n) };
    let mut parts: Vec<Part> = words.into_iter().map(Part::Say).collect();
    parts.push(Part::Say(if n == 1 { one } else { many }));
    parts
}

/// `n` in words ("three thousand forty two"); more than [`MAX_COUNT`] is said as that.
pub(crate) fn number(n: usize) -> Vec<Phrase> {
    let n = n.min(MAX_COUNT);
    if n == 0 {
        return vec![Phrase::Digit(0)];
    }
    // Each is below ten or a hundred here, so the casts keep the value.
    let (thousands, hundreds, rest) = ((n / 1000) as u8, (n / 100 % 10) as u8, (n % 100) as u8);
    let mut out = Vec::new();
    if thousands > 0 {
        out.extend([Phrase::Digit(thousands), Phrase::Thousand]);
    }
    if hundreds > 0 {
        out.extend([Phrase::Digit(hundreds), Phrase::Hundred]);
    }
    match rest {
        0 => {}
        1..=9 => out.push(Phrase::Digit(rest)),
        10..=19 => out.push(Phrase::Teen(rest)),
        _ => {
            out.push(Phrase::Tens(rest / 10));
            if rest % 10 > 0 {
                out.push(Phrase::Digit(rest % 10));
            }
        }
    }
    out
}

/// A number said digit by digit ("one zero zero two"), as extensions are; anything but digits is
/// left out.
pub(crate) fn digits(number: &str) -> Vec<Phrase> {
    number
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| Phrase::Digit(b - b'0'))
        .collect()
}

/// The phrases as spoken, each trimmed of its silences and brought to the same peak.
#[derive(Debug)]
pub(crate) struct Voice {
    phrases: HashMap<Phrase, Arc<[i16]>>,
}

impl Voice {
    /// `parts` as one clip, with a short pause between words and a longer one after a sentence.
    /// `None` when a phrase is missing.
    pub(crate) fn assemble(&self, parts: &[Part]) -> Option<Arc<[i16]>> {
        let mut out: Vec<i16> = Vec::new();
        for part in parts {
            match part {
                Part::Say(p) => {
                    out.extend_from_slice(self.phrases.get(p)?);
                    let gap = if p.text().ends_with('.') {
                        SENTENCE_GAP
                    } else {
                        WORD_GAP
                    };
                    out.resize(out.len() + gap, 0);
                }
                Part::Recording(pcm) => {
                    out.extend_from_slice(&trim(pcm));
                    out.resize(out.len() + WORD_GAP, 0);
                }
                Part::Stop => {
                    // A sentence's last word already left a word's gap.
                    out.resize(out.len() + SENTENCE_GAP - WORD_GAP, 0);
                }
            }
        }
        Some(out.into())
    }
}

/// `pcm` without the silence before its first sound and after its last (less a small margin).
fn trim(pcm: &[i16]) -> Vec<i16> {
    let loud = |s: &i16| s.unsigned_abs() > SILENCE;
    let (Some(first), Some(last)) = (pcm.iter().position(loud), pcm.iter().rposition(loud)) else {
        return Vec::new();
    };
    let start = first.saturating_sub(MARGIN);
    let end = (last + 1 + MARGIN).min(pcm.len());
    pcm[start..end].to_vec()
}

/// `pcm` scaled so that its loudest sample is [`PEAK`].
fn level(pcm: &mut [i16]) {
    let peak = pcm
        .iter()
        .map(|s| i32::from(s.unsigned_abs()))
        .max()
        .unwrap_or(0);
    if peak == 0 {
        return;
    }
    for s in pcm {
        // Within ±PEAK, so the cast keeps the value.
        *s = (i32::from(*s) * PEAK / peak) as i16;
    }
}

/// Why the phrases were not rendered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RenderError {
    #[error("{phrase:?}: {error}")]
    Phrase { phrase: Phrase, error: SpeechError },
    #[error("{0:?}: the synthesiser gave only silence")]
    Silent(Phrase),
    #[error("not all phrases were spoken within {RENDER_WITHIN:?}")]
    TooSlow,
}

/// Renders every phrase through `speak` (text in, 8 kHz samples out). All or nothing: a prompt
/// never mixes words and tones.
pub(crate) async fn render<F, Fut>(speak: F) -> Result<Voice, RenderError>
where
    F: Fn(&'static str) -> Fut,
    Fut: Future<Output = Result<Vec<i16>, SpeechError>>,
{
    let speak = &speak;
    let spoken = futures::stream::iter(Phrase::all())
        .map(|phrase| async move { (phrase, speak(phrase.text()).await) })
        .buffer_unordered(RENDERERS)
        .collect::<Vec<_>>();
    let spoken = tokio::time::timeout(RENDER_WITHIN, spoken)
        .await
        .map_err(|_| RenderError::TooSlow)?;
    let mut phrases = HashMap::new();
    for (phrase, got) in spoken {
        let pcm = got.map_err(|error| RenderError::Phrase { phrase, error })?;
        let mut pcm = trim(&pcm);
        if pcm.is_empty() {
            return Err(RenderError::Silent(phrase));
        }
        level(&mut pcm);
        phrases.insert(phrase, pcm.into());
    }
    Ok(Voice { phrases })
}

/// Renders the phrases through `speak`, saying how it went: `None` (one warning, and the metrics
/// say so) when the node must speak in tones.
pub(crate) async fn load<F, Fut>(speak: F) -> Option<Voice>
where
    F: Fn(&'static str) -> Fut,
    Fut: Future<Output = Result<Vec<i16>, SpeechError>>,
{
    let started = std::time::Instant::now();
    match render(speak).await {
        Ok(voice) => {
            let samples: usize = voice.phrases.values().map(|p| p.len()).sum();
            tracing::info!(
                phrases = voice.phrases.len(),
                seconds = samples / RATE,
                took_ms = started.elapsed().as_millis() as u64,
                "spoken prompts ready"
            );
            metrics::gauge!("pbx_prompts_spoken").set(1.0);
            Some(voice)
        }
        Err(e) => {
            tracing::warn!(error = %e, "spoken prompts unavailable: the PBX's prompts are tones (install espeak-ng: deploy/prereqs.sh --sip-tools)");
            metrics::gauge!("pbx_prompts_spoken").set(0.0);
            metrics::counter!("pbx_prompts_render_failures_total").increment(1);
            None
        }
    }
}

/// The node's prompts: the phrases rendered once, then kept.
#[derive(Debug, Default)]
pub(crate) struct Prompts {
    voice: OnceCell<Option<Voice>>,
}

impl Prompts {
    /// Prompts whose phrases are rendered (`Some`) or not to be (`None`: tones).
    #[cfg(test)]
    pub(crate) fn ready(voice: Option<Voice>) -> Self {
        Self {
            voice: OnceCell::new_with(Some(voice)),
        }
    }

    /// This node's prompts: one set per process, however often the SIP service (and its
    /// application agent) starts.
    pub(crate) fn node() -> Arc<Self> {
        static NODE: std::sync::OnceLock<Arc<Prompts>> = std::sync::OnceLock::new();
        Arc::clone(NODE.get_or_init(|| Arc::new(Self::default())))
    }

    /// Starts rendering the phrases in the background with espeak-ng (once: later calls find
    /// them rendered; a call that needs a prompt before they are ready waits a little, then hears
    /// tones).
    pub(crate) fn start(self: &Arc<Self>) {
        if self.voice.initialized() {
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            me.voice().await;
        });
    }

    async fn voice(&self) -> Option<&Voice> {
        self.voice
            .get_or_init(|| load(|text| speech::speak_pcm(text, VOICE)))
            .await
            .as_ref()
    }

    /// `prompt` as it plays: spoken, or its tones.
    pub(crate) async fn clip(&self, prompt: &Prompt) -> Arc<[i16]> {
        let voice = match self.voice.get() {
            Some(ready) => ready.as_ref(),
            None => tokio::time::timeout(WAIT_FOR_VOICE, self.voice())
                .await
                .ok()
                .flatten(),
        };
        voice
            .and_then(|v| v.assemble(&prompt.parts()))
            .unwrap_or_else(|| prompt.tones())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbx_media::tone::goertzel;

    /// A stand-in synthesiser: each phrase is 100 ms of silence, then one sample per character
    /// at 1000, then 100 ms of silence.
    async fn fake(text: &'static str) -> Result<Vec<i16>, SpeechError> {
        let mut pcm = vec![0i16; 800];
        pcm.extend(std::iter::repeat_n(1000i16, text.len()));
        pcm.extend(std::iter::repeat_n(0i16, 800));
        Ok(pcm)
    }

    #[test]
    fn you_have_three_new_messages() {
        use Phrase::*;
        let said = |new, saved| Prompt::Messages { new, saved }.parts();
        assert_eq!(
            said(3, 0),
            [
                Part::Say(YouHave),
                Part::Say(Digit(3)),
                Part::Say(NewMessages),
                Part::Stop
            ]
        );
        assert_eq!(
            said(1, 12),
            [
                Part::Say(YouHave),
                Part::Say(Digit(1)),
                Part::Say(NewMessage),
                Part::Say(And),
                Part::Say(Teen(12)),
                Part::Say(SavedMessages),
                Part::Stop
            ]
        );
        assert_eq!(
            said(0, 0),
            [
                Part::Say(YouHave),
                Part::Say(No),
                Part::Say(Messages),
                Part::Stop
            ]
        );
        assert_eq!(
            said(0, 1)[..4],
            [
                Part::Say(YouHave),
                Part::Say(No),
                Part::Say(NewMessages),
                Part::Say(And)
            ]
        );
    }

    #[test]
    fn numbers_are_said_as_words_and_extensions_digit_by_digit() {
        use Phrase::*;
        assert_eq!(number(0), [Digit(0)]);
        assert_eq!(number(7), [Digit(7)]);
        assert_eq!(number(10), [Teen(10)]);
        assert_eq!(number(40), [Tens(4)]);
        assert_eq!(number(42), [Tens(4), Digit(2)]);
        assert_eq!(number(100), [Digit(1), Hundred]);
        assert_eq!(number(1000), [Digit(1), Thousand]);
        assert_eq!(
            number(3_517),
            [Digit(3), Thousand, Digit(5), Hundred, Teen(17)]
        );
        assert_eq!(number(1_000_000), number(MAX_COUNT));
        assert_eq!(digits("1002"), [Digit(1), Digit(0), Digit(0), Digit(2)]);
        assert_eq!(digits("+4*9"), [Digit(4), Digit(9)]);
        for p in Phrase::all() {
            assert!(!p.text().is_empty(), "{p:?}");
        }
        assert_eq!(Tens(9).text(), "ninety");
        assert_eq!(Teen(19).text(), "nineteen");
    }

    #[test]
    fn the_default_greeting_says_the_number_or_plays_the_name() {
        use Phrase::*;
        let absent = |busy, name| Prompt::Absent {
            extension: "1002".into(),
            busy,
            name,
        };
        assert_eq!(
            absent(false, None).parts(),
            [
                Part::Say(PersonAtExtension),
                Part::Say(Digit(1)),
                Part::Say(Digit(0)),
                Part::Say(Digit(0)),
                Part::Say(Digit(2)),
                Part::Say(NotAvailable),
                Part::Stop,
                Part::Say(LeaveMessage)
            ]
        );
        let name: Arc<[i16]> = vec![5000i16; 4000].into();
        assert_eq!(
            absent(true, Some(Arc::clone(&name))).parts(),
            [
                Part::Say(PersonAtExtension),
                Part::Recording(Arc::clone(&name)),
                Part::Say(IsBusy),
                Part::Stop,
                Part::Say(LeaveMessage)
            ]
        );
        // Without a voice: nothing (the beep follows), or the owner's name.
        assert!(absent(false, None).tones().is_empty());
        assert_eq!(absent(false, Some(Arc::clone(&name))).tones(), name);
    }

    #[tokio::test]
    async fn phrases_are_trimmed_levelled_and_joined_with_pauses() {
        let voice = render(fake).await.unwrap();
        let goodbye = &voice.phrases[&Phrase::Goodbye];
        // The silences are trimmed to the margin; the peak is the same for all.
        assert_eq!(goodbye.len(), "Goodbye.".len() + 2 * MARGIN);
        assert_eq!(goodbye.iter().copied().max(), Some(PEAK as i16));
        let parts = Prompt::Messages { new: 3, saved: 0 }.parts();
        let clip = voice.assemble(&parts).unwrap();
        let words: usize = ["You have", "three", "new messages"]
            .iter()
            .map(|t| t.len() + 2 * MARGIN)
            .sum();
        assert_eq!(clip.len(), words + 3 * WORD_GAP + (SENTENCE_GAP - WORD_GAP));
        // A recording goes in as it is, trimmed of its silences.
        let mut name = vec![0i16; 2000];
        name.extend([3000i16; 500]);
        let named = Prompt::Absent {
            extension: "7".into(),
            busy: false,
            name: Some(name.into()),
        };
        let clip = voice.assemble(&named.parts()).unwrap();
        assert_eq!(clip.iter().filter(|s| **s == 3000).count(), 500);
    }

    #[tokio::test]
    async fn without_the_synthesiser_the_prompts_are_the_tones_of_before() {
        let missing = |_: &'static str| async { Err(SpeechError::NotInstalled) };
        let voice = load(missing).await;
        assert!(voice.is_none());
        let prompts = Prompts::ready(voice);
        assert_eq!(prompts.clip(&Prompt::AskPin).await, clips::ask());
        assert_eq!(prompts.clip(&Prompt::WrongPin).await, clips::invalid());
        assert_eq!(prompts.clip(&Prompt::InvalidChoice).await, clips::invalid());
        assert_eq!(
            prompts.clip(&Prompt::Messages { new: 2, saved: 5 }).await,
            clips::count(2)
        );
        assert_eq!(prompts.clip(&Prompt::Goodbye).await, clips::goodbye());
        assert!(prompts.clip(&Prompt::MessageOptions).await.is_empty());
        // One phrase failing, or coming out silent, is the same: no words at all.
        let one_fails = |text: &'static str| async move {
            if text == Phrase::Saved.text() {
                Err(SpeechError::Failed("crashed".into()))
            } else {
                fake(text).await
            }
        };
        assert!(matches!(
            render(one_fails).await,
            Err(RenderError::Phrase {
                phrase: Phrase::Saved,
                ..
            })
        ));
        let silent = |_: &'static str| async { Ok(vec![0i16; 8000]) };
        assert!(matches!(render(silent).await, Err(RenderError::Silent(_))));
        // With a voice, the words.
        let prompts = Prompts::ready(load(fake).await);
        let spoken = prompts.clip(&Prompt::AskPin).await;
        assert_ne!(spoken, clips::ask());
        assert_eq!(
            spoken.len(),
            Phrase::EnterPin.text().len() + 2 * MARGIN + SENTENCE_GAP
        );
    }

    /// The loudest of a grid of frequencies in a 20 ms frame.
    fn peak_frequency(frame: &[i16]) -> u32 {
        (3..=34)
            .map(|k| k * 100)
            .max_by(|a, b| {
                goertzel(frame, *a as f32, RATE as u32).total_cmp(&goertzel(
                    frame,
                    *b as f32,
                    RATE as u32,
                ))
            })
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn espeak_speaks_a_prompt_as_speech_at_8_khz() {
        if std::process::Command::new("espeak-ng")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("espeak-ng is not installed here: nothing to check");
            return;
        }
        let voice = load(|text| speech::speak_pcm(text, VOICE))
            .await
            .expect("espeak-ng renders every phrase");
        let clip = voice
            .assemble(&Prompt::Messages { new: 3, saved: 0 }.parts())
            .unwrap();
        // "You have three new messages" takes one to four seconds at 8 kHz (at espeak-ng's own
        // 22 050 Hz it would be almost three times as many samples).
        let secs = clip.len() as f64 / RATE as f64;
        assert!((1.0..4.0).contains(&secs), "{secs} s");
        let rms =
            (clip.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / clip.len() as f64).sqrt();
        assert!(rms > 500.0, "not silent: rms {rms}");
        // Not a tone: the loudest frequency moves from frame to frame.
        let mut peaks: Vec<u32> = clip
            .chunks_exact(160)
            .filter(|f| f.iter().any(|s| s.unsigned_abs() > 2000))
            .map(peak_frequency)
            .collect();
        peaks.sort_unstable();
        peaks.dedup();
        assert!(peaks.len() >= 5, "speech, not a tone: {peaks:?}");
        let tone = clips::tones(6000, &[(800.0, 1000)]);
        let mut tone_peaks: Vec<u32> = tone.chunks_exact(160).map(peak_frequency).collect();
        tone_peaks.dedup();
        assert_eq!(tone_peaks, [800], "the check tells a tone");
    }
}
