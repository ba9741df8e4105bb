//! Prompts spoken from text: the admin types what a menu or a greeting says, and espeak-ng (a
//! Debian package, run as a separate process when it is installed) speaks it. The speech is brought
//! to 8 kHz and written as the WAV prompts are, so it is saved and played like an uploaded one.
//!
//! The text goes to the synthesiser on its standard input, never on its command line, and plain
//! (no SSML): nothing in it is an option or markup. The voice is checked against a strict pattern.

use std::process::Stdio;
use std::time::Duration;

use pbx_media::wav::{Channels, PromptLimits, WavError, WavWriter};
use tokio::io::AsyncWriteExt as _;

/// The synthesiser, looked up on `PATH`.
const ESPEAK: &str = "espeak-ng";
/// The longest text spoken (about two minutes of speech).
pub(crate) const MAX_TEXT_CHARS: usize = 1_000;
/// A synthesiser that takes longer than this is stopped.
const TIMEOUT: Duration = Duration::from_secs(20);
/// What its output may be.
const OUTPUT_LIMITS: PromptLimits = PromptLimits {
    max_bytes: 32 * 1024 * 1024,
    max_seconds: 600,
};
/// Words per minute: a little slower than espeak-ng's 175, as phone prompts are spoken.
const SPEED: &str = "150";

/// Why no speech came out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpeechError {
    #[error(
        "text: 1 to {MAX_TEXT_CHARS} characters of text, no control characters but line breaks"
    )]
    Text,
    #[error("voice: a voice name such as en, en-us, de or fr (letters, digits, '-' and '+')")]
    Voice,
    #[error("text-to-speech is not installed on this node (Debian package espeak-ng)")]
    NotInstalled,
    #[error("the synthesiser failed: {0}")]
    Failed(String),
    #[error("the synthesiser's output: {0}")]
    Output(#[from] WavError),
}

/// Checks what is asked before anything runs.
pub(crate) fn check(text: &str, voice: &str) -> Result<(), SpeechError> {
    let chars = text.chars().count();
    let printable = text
        .chars()
        .all(|c| !c.is_control() || c == '\n' || c == '\r' || c == '\t');
    if text.trim().is_empty() || chars > MAX_TEXT_CHARS || !printable {
        return Err(SpeechError::Text);
    }
    let voice_ok = (1..=32).contains(&voice.len())
        && voice
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'+')
        && !voice.starts_with('-');
    if !voice_ok {
        return Err(SpeechError::Voice);
    }
    Ok(())
}

/// `text` spoken in `voice`, as an 8 kHz 16-bit mono WAV.
pub(crate) async fn speak(text: &str, voice: &str) -> Result<Vec<u8>, SpeechError> {
    let pcm = speak_pcm(text, voice).await?;
    let mut cursor = std::io::Cursor::new(Vec::new());
    let mut writer = WavWriter::new(&mut cursor, Channels::Mono)?;
    writer.write_mono(&pcm)?;
    writer.finish()?;
    Ok(cursor.into_inner())
}

/// `text` spoken in `voice`, as 8 kHz samples.
pub(crate) async fn speak_pcm(text: &str, voice: &str) -> Result<Vec<i16>, SpeechError> {
    check(text, voice)?;
    let mut child = tokio::process::Command::new(ESPEAK)
        .args(["-v", voice, "-s", SPEED, "--stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SpeechError::NotInstalled,
            _ => SpeechError::Failed(e.to_string()),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .await
            .map_err(|e| SpeechError::Failed(e.to_string()))?;
        // Dropped: the end of the text.
    }
    let done = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| SpeechError::Failed(format!("no speech within {TIMEOUT:?}")))?
        .map_err(|e| SpeechError::Failed(e.to_string()))?;
    if !done.status.success() {
        let stderr = String::from_utf8_lossy(&done.stderr);
        let why: String = stderr
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        if why_is_voice(&why) {
            return Err(SpeechError::Voice);
        }
        return Err(SpeechError::Failed(why));
    }
    let mut wav = done.stdout;
    if wav.len() > OUTPUT_LIMITS.max_bytes {
        return Err(SpeechError::Failed("too much speech".into()));
    }
    // Resampling 22 kHz speech is a filter over every sample: seconds of CPU for a node's whole
    // prompt set in a debug build, which must not hold an async worker (Raft heartbeats run there).
    tokio::task::spawn_blocking(move || {
        fix_streamed_sizes(&mut wav);
        Ok(pbx_media::wav::read_any_rate(&wav, OUTPUT_LIMITS)?)
    })
    .await
    .map_err(|e| SpeechError::Failed(e.to_string()))?
}

/// A WAV written to a pipe cannot go back to fill its sizes in: espeak-ng leaves placeholders in
/// its 44-byte header. They are set from what arrived, so the file reads as written.
fn fix_streamed_sizes(wav: &mut [u8]) {
    let len = wav.len();
    if len < 44 || &wav[..4] != b"RIFF" || &wav[8..12] != b"WAVE" || &wav[36..40] != b"data" {
        return;
    }
    let riff = u32::try_from(len - 8).unwrap_or(u32::MAX);
    let data = u32::try_from(len - 44).unwrap_or(u32::MAX) & !1;
    wav[4..8].copy_from_slice(&riff.to_le_bytes());
    wav[40..44].copy_from_slice(&data.to_le_bytes());
}

/// Whether espeak-ng's complaint is about the voice (an unknown one).
fn why_is_voice(why: &str) -> bool {
    why.to_ascii_lowercase().contains("voice")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamed_header_gets_the_sizes_of_what_arrived() {
        let mut wav = b"RIFF\xf0\xff\xff\x7fWAVEfmt ".to_vec();
        wav.extend_from_slice(&[
            16, 0, 0, 0, 1, 0, 1, 0, 0x22, 0x56, 0, 0, 0x44, 0xac, 0, 0, 2, 0,
        ]);
        wav.extend_from_slice(b"\x10\x00data\xf0\xff\xff\x7f");
        assert_eq!(wav.len(), 44);
        wav.extend_from_slice(&[1, 0, 2, 0, 3, 0]);
        fix_streamed_sizes(&mut wav);
        assert_eq!(&wav[4..8], &42u32.to_le_bytes());
        assert_eq!(&wav[40..44], &6u32.to_le_bytes());
        // Not a WAV, or too short: left alone.
        let mut other = b"RIFX".to_vec();
        other.resize(50, 0);
        let before = other.clone();
        fix_streamed_sizes(&mut other);
        assert_eq!(other, before);
        fix_streamed_sizes(&mut [0u8; 3]);
    }

    #[test]
    fn text_and_voice_are_checked_before_anything_runs() {
        assert!(check("Thank you for calling.\nPress 1.", "en").is_ok());
        assert!(check("Bonjour", "fr+f3").is_ok());
        for bad in ["", "   ", "bell\u{7}", "esc\u{1b}[31m"] {
            assert!(
                matches!(check(bad, "en"), Err(SpeechError::Text)),
                "{bad:?}"
            );
        }
        assert!(matches!(
            check(&"a".repeat(1001), "en"),
            Err(SpeechError::Text)
        ));
        for bad in ["", "-w", "en us", "en;rm", "../x", &"e".repeat(33)] {
            assert!(
                matches!(check("hi", bad), Err(SpeechError::Voice)),
                "{bad:?}"
            );
        }
    }
}
