//! WAV files: a writer for call recordings and voicemail, and a validating reader for prompts
//! that administrators upload.
//!
//! Recordings are 16-bit PCM at 8 kHz, mono or stereo (one party per channel, so either side
//! can be listened to alone). Uploaded prompts are untrusted bytes: the reader checks the size
//! before parsing, the declared duration before reading the samples, and answers every problem
//! with an error whose message can be shown to the administrator as is.

use std::io::{Cursor, Seek, Write};

use hound::{SampleFormat, WavSpec};
use thiserror::Error;

use crate::SAMPLE_RATE_HZ;

/// Why a WAV file was refused or could not be written. The messages are meant for the person
/// who uploaded the file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WavError {
    /// Larger than the caller's byte limit (checked before anything is parsed).
    #[error("larger than the {max_bytes}-byte limit")]
    TooLarge {
        /// The limit.
        max_bytes: usize,
    },
    /// Not RIFF/WAVE, or a header that cannot be read.
    #[error("not a WAV file")]
    NotWav,
    /// Compressed, floating point, or not 16 bits per sample.
    #[error("must be 16-bit PCM")]
    NotPcm16,
    /// More than one channel.
    #[error("must be mono")]
    NotMono,
    /// A sample rate the reader does not take (prompts: 8000 or 16000 Hz).
    #[error("sample rate {0} Hz not supported")]
    SampleRate(u32),
    /// Longer than the caller's duration limit.
    #[error("longer than the {max_seconds}-second limit")]
    TooLong {
        /// The limit.
        max_seconds: u32,
    },
    /// No samples at all.
    #[error("empty")]
    Empty,
    /// The data stops before the length its header declares.
    #[error("truncated: shorter than its header says")]
    Truncated,
    /// Samples for the wrong number of channels were given to the writer.
    #[error("{given}-channel audio written to a {expected}-channel file")]
    ChannelMismatch {
        /// Channels the file was created with.
        expected: u16,
        /// Channels the call supplied.
        given: u16,
    },
    /// The underlying writer failed.
    #[error("writing the WAV file failed: {0}")]
    Write(String),
}

impl From<hound::Error> for WavError {
    fn from(error: hound::Error) -> Self {
        Self::Write(error.to_string())
    }
}

/// Channel layout of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    /// One channel (voicemail, a single party).
    Mono,
    /// Two channels: left is one party, right the other.
    Stereo,
}

impl Channels {
    const fn count(self) -> u16 {
        match self {
            Self::Mono => 1,
            Self::Stereo => 2,
        }
    }
}

/// Writes 16-bit PCM at 8 kHz to any seekable sink (the header's lengths are patched on
/// [`finish`](Self::finish)).
pub struct WavWriter<W: Write + Seek> {
    inner: hound::WavWriter<W>,
    channels: Channels,
}

impl<W: Write + Seek> std::fmt::Debug for WavWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavWriter")
            .field("channels", &self.channels)
            .field("frames", &self.inner.duration())
            .finish_non_exhaustive()
    }
}

impl<W: Write + Seek> WavWriter<W> {
    /// Starts a file; the header is written at once.
    pub fn new(out: W, channels: Channels) -> Result<Self, WavError> {
        let spec = WavSpec {
            channels: channels.count(),
            sample_rate: SAMPLE_RATE_HZ,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        Ok(Self {
            inner: hound::WavWriter::new(out, spec)?,
            channels,
        })
    }

    /// Appends samples to a mono file.
    pub fn write_mono(&mut self, samples: &[i16]) -> Result<(), WavError> {
        if self.channels != Channels::Mono {
            return Err(self.mismatch(1));
        }
        for &sample in samples {
            self.inner.write_sample(sample)?;
        }
        Ok(())
    }

    /// Appends one frame per channel to a stereo file. If one side is shorter (its party sent
    /// nothing this tick) it is padded with silence, so the channels stay aligned in time.
    pub fn write_stereo(&mut self, left: &[i16], right: &[i16]) -> Result<(), WavError> {
        if self.channels != Channels::Stereo {
            return Err(self.mismatch(2));
        }
        for i in 0..left.len().max(right.len()) {
            self.inner.write_sample(left.get(i).copied().unwrap_or(0))?;
            self.inner
                .write_sample(right.get(i).copied().unwrap_or(0))?;
        }
        Ok(())
    }

    /// Frames (samples per channel) written so far.
    pub fn frames(&self) -> u32 {
        self.inner.duration()
    }

    /// Fixes up the header and flushes. Dropping the writer without this also tries to, but
    /// cannot report a failure.
    pub fn finish(self) -> Result<(), WavError> {
        Ok(self.inner.finalize()?)
    }

    fn mismatch(&self, given: u16) -> WavError {
        WavError::ChannelMismatch {
            expected: self.channels.count(),
            given,
        }
    }
}

/// Limits on an uploaded prompt, set by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptLimits {
    /// Largest file accepted, in bytes.
    pub max_bytes: usize,
    /// Longest audio accepted, in seconds.
    pub max_seconds: u32,
}

/// Sample rates accepted for prompts; 16 kHz is brought down to 8 kHz.
const PROMPT_RATES: [u32; 2] = [8_000, 16_000];

/// Validates an uploaded prompt and returns its audio as 8 kHz mono samples. Accepts 16-bit PCM
/// mono at 8000 or 16000 Hz; refuses anything else with a [`WavError`] whose message explains
/// why. Never panics, whatever the bytes.
pub fn read_prompt(bytes: &[u8], limits: PromptLimits) -> Result<Vec<i16>, WavError> {
    let (samples, rate) = read_mono(bytes, limits, |rate| PROMPT_RATES.contains(&rate))?;
    Ok(if rate == SAMPLE_RATE_HZ {
        samples
    } else {
        decimate_by_two(&samples)
    })
}

/// Reads 16-bit PCM mono at any rate from 8 to 48 kHz as 8 kHz samples, resampled
/// ([`crate::resample`]): for audio the PBX makes itself, such as synthesised speech.
pub fn read_any_rate(bytes: &[u8], limits: PromptLimits) -> Result<Vec<i16>, WavError> {
    let (samples, rate) = read_mono(bytes, limits, |rate| (8_000..=48_000).contains(&rate))?;
    Ok(crate::resample::to_telephone_rate(&samples, rate))
}

/// The samples and rate of a 16-bit PCM mono WAV whose rate `rate_ok` accepts, within `limits`.
fn read_mono(
    bytes: &[u8],
    limits: PromptLimits,
    rate_ok: impl Fn(u32) -> bool,
) -> Result<(Vec<i16>, u32), WavError> {
    if bytes.len() > limits.max_bytes {
        return Err(WavError::TooLarge {
            max_bytes: limits.max_bytes,
        });
    }
    let mut reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|error| match error {
        hound::Error::Unsupported | hound::Error::TooWide | hound::Error::InvalidSampleFormat => {
            WavError::NotPcm16
        }
        _ => WavError::NotWav,
    })?;
    let spec = reader.spec();
    if spec.sample_format != SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(WavError::NotPcm16);
    }
    if spec.channels != 1 {
        return Err(WavError::NotMono);
    }
    if !rate_ok(spec.sample_rate) {
        return Err(WavError::SampleRate(spec.sample_rate));
    }
    let frames = reader.duration();
    if frames == 0 {
        return Err(WavError::Empty);
    }
    // Checked against the header before reading, so a lying header cannot make us allocate.
    if u64::from(frames) > u64::from(limits.max_seconds) * u64::from(spec.sample_rate) {
        return Err(WavError::TooLong {
            max_seconds: limits.max_seconds,
        });
    }
    let samples = reader
        .samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| match error {
            hound::Error::IoError(_) => WavError::Truncated,
            _ => WavError::NotPcm16,
        })?;
    Ok((samples, spec.sample_rate))
}

/// Halves the sample rate: a 7-tap half-band low-pass, `[-1, 0, 9, 16, 9, 0, -1] / 32`, evaluated
/// at every other sample. It is flat to within 2.5 dB up to 3 kHz (the telephone band) and
/// attenuates what would fold back into that band by 13 dB at 5 kHz to over 40 dB at 7 kHz. The
/// edges repeat the first and last sample.
fn decimate_by_two(input: &[i16]) -> Vec<i16> {
    let last = input.len().saturating_sub(1);
    let at = |i: isize| -> i32 {
        let index = usize::try_from(i).unwrap_or(0).min(last);
        input.get(index).map_or(0, |&s| i32::from(s))
    };
    (0..input.len())
        .step_by(2)
        .map(|centre| {
            let c = centre as isize;
            let acc = 16 * at(c) + 9 * (at(c - 1) + at(c + 1)) - (at(c - 3) + at(c + 3));
            // Round half away from zero, then clamp: an overshoot on a full-scale edge is real.
            let rounded = (acc + if acc >= 0 { 16 } else { -16 }) / 32;
            rounded.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

    use super::*;
    use crate::tone::{ToneGenerator, goertzel};

    const LIMITS: PromptLimits = PromptLimits {
        max_bytes: 1 << 20,
        max_seconds: 30,
    };

    /// A WAV file with an arbitrary spec and the given (already interleaved) samples.
    fn wav_bytes(channels: u16, rate: u32, bits: u16, format: SampleFormat, n: usize) -> Vec<u8> {
        let spec = WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: format,
        };
        let mut cursor = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for i in 0..n * usize::from(channels) {
            match (format, bits) {
                (SampleFormat::Float, _) => writer.write_sample(i as f32 / 100.0).unwrap(),
                (_, 8) => writer.write_sample((i % 100) as i8).unwrap(),
                _ => writer.write_sample((i % 1000) as i32).unwrap(),
            }
        }
        writer.finalize().unwrap();
        cursor.into_inner()
    }

    fn mono_8k(samples: &[i16]) -> Vec<u8> {
        let mut cursor = Cursor::new(Vec::new());
        let mut writer = WavWriter::new(&mut cursor, Channels::Mono).unwrap();
        writer.write_mono(samples).unwrap();
        writer.finish().unwrap();
        cursor.into_inner()
    }

    fn tone(frequency: f32, rate: u32, len: usize) -> Vec<i16> {
        let mut out = vec![0; len];
        ToneGenerator::new(frequency, 10_000, rate)
            .unwrap()
            .fill(&mut out);
        out
    }

    #[test]
    fn mono_recording_round_trips() {
        let samples: Vec<i16> = (0..1600)
            .map(|i| ((i * 37) % 65_536 - 32_768) as i16)
            .collect();
        let bytes = mono_8k(&samples);
        assert_eq!(&bytes[..4], b"RIFF");
        assert_eq!(bytes.len(), 44 + 2 * 1600);
        assert_eq!(read_prompt(&bytes, LIMITS).unwrap(), samples);
    }

    #[test]
    fn stereo_recording_keeps_one_party_per_channel() {
        let mut cursor = Cursor::new(Vec::new());
        let mut writer = WavWriter::new(&mut cursor, Channels::Stereo).unwrap();
        writer.write_stereo(&[1, 2, 3], &[-1, -2, -3]).unwrap();
        // The right party sent nothing this tick; the left is still in step.
        writer.write_stereo(&[4, 5], &[]).unwrap();
        assert_eq!(writer.frames(), 5);
        writer.finish().unwrap();
        let bytes = cursor.into_inner();

        let mut reader = hound::WavReader::new(Cursor::new(&bytes)).unwrap();
        let spec = reader.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (2, 8000, 16)
        );
        let samples: Vec<i16> = reader.samples().map(Result::unwrap).collect();
        assert_eq!(samples, vec![1, -1, 2, -2, 3, -3, 4, 0, 5, 0]);
        // A stereo recording is not a valid prompt.
        assert_eq!(read_prompt(&bytes, LIMITS), Err(WavError::NotMono));
    }

    #[test]
    fn writer_refuses_the_wrong_channel_count() {
        let mut mono = WavWriter::new(Cursor::new(Vec::new()), Channels::Mono).unwrap();
        assert_eq!(
            mono.write_stereo(&[1], &[2]),
            Err(WavError::ChannelMismatch {
                expected: 1,
                given: 2
            })
        );
        let mut stereo = WavWriter::new(Cursor::new(Vec::new()), Channels::Stereo).unwrap();
        assert!(stereo.write_mono(&[1]).is_err());
        assert_eq!(stereo.frames(), 0);
        assert!(format!("{stereo:?}").contains("Stereo"));
    }

    #[test]
    fn writer_reports_a_failing_sink() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl Seek for Full {
            fn seek(&mut self, _: std::io::SeekFrom) -> std::io::Result<u64> {
                Ok(0)
            }
        }
        let error = WavWriter::new(Full, Channels::Mono).unwrap_err();
        assert!(
            matches!(&error, WavError::Write(m) if m.contains("disk full")),
            "{error}"
        );
    }

    #[test]
    fn sixteen_khz_prompts_are_brought_to_eight() {
        let wide = tone(1000.0, 16_000, 16_000);
        let mut cursor = Cursor::new(Vec::new());
        let spec = WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for &s in &wide {
            writer.write_sample(s).unwrap();
        }
        writer.finalize().unwrap();

        let narrow = read_prompt(&cursor.into_inner(), LIMITS).unwrap();
        assert_eq!(narrow.len(), 8000);
        assert!(goertzel(&narrow[100..], 1000.0, 8000) > 0.95);
        let peak = narrow.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(
            (9_000..=10_500).contains(&peak),
            "1 kHz passes nearly unchanged: {peak}"
        );
    }

    #[test]
    fn audio_at_any_rate_from_8_to_48_khz_is_read_at_8_khz() {
        let spec = WavSpec {
            channels: 1,
            sample_rate: 22_050,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let mut cursor = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for &s in &tone(1000.0, 22_050, 22_050) {
            writer.write_sample(s).unwrap();
        }
        writer.finalize().unwrap();
        let bytes = cursor.into_inner();
        let read = read_any_rate(&bytes, LIMITS).unwrap();
        assert!((7_990..=8_000).contains(&read.len()), "{}", read.len());
        assert!(goertzel(&read[100..], 1000.0, 8000) > 0.9);
        // Prompts stay strict; other rates and formats are refused as for prompts.
        assert_eq!(
            read_prompt(&bytes, LIMITS),
            Err(WavError::SampleRate(22_050))
        );
        assert_eq!(
            read_any_rate(&wav_bytes(1, 96_000, 16, SampleFormat::Int, 100), LIMITS),
            Err(WavError::SampleRate(96_000))
        );
        assert_eq!(
            read_any_rate(&wav_bytes(2, 22_050, 16, SampleFormat::Int, 100), LIMITS),
            Err(WavError::NotMono)
        );
    }

    #[test]
    fn decimation_suppresses_what_would_alias() {
        // 7 kHz at 16 kHz would fold to 1 kHz at 8 kHz.
        let high = tone(7000.0, 16_000, 1600);
        let out = decimate_by_two(&high);
        let peak = out[4..out.len() - 4]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        assert!(peak < 100, "aliased 7 kHz should be > 40 dB down: {peak}");
        // Odd lengths keep the last sample's slot; the edges do not blow up.
        assert_eq!(decimate_by_two(&[100, 100, 100]), vec![100, 100]);
        assert_eq!(decimate_by_two(&[5]), vec![5]);
        assert!(decimate_by_two(&[]).is_empty());
        // Full scale with the edge overshoot clamps instead of wrapping.
        let square: Vec<i16> = (0..64)
            .map(|i| if i % 8 < 4 { i16::MAX } else { i16::MIN })
            .collect();
        let out = decimate_by_two(&square);
        assert_eq!(out.len(), 32);
    }

    #[test]
    fn refuses_other_formats_with_clear_messages() {
        let cases = [
            (
                wav_bytes(1, 8000, 8, SampleFormat::Int, 100),
                WavError::NotPcm16,
            ),
            (
                wav_bytes(1, 8000, 24, SampleFormat::Int, 100),
                WavError::NotPcm16,
            ),
            (
                wav_bytes(1, 8000, 32, SampleFormat::Int, 100),
                WavError::NotPcm16,
            ),
            (
                wav_bytes(1, 8000, 32, SampleFormat::Float, 100),
                WavError::NotPcm16,
            ),
            (
                wav_bytes(2, 8000, 16, SampleFormat::Int, 100),
                WavError::NotMono,
            ),
            (
                wav_bytes(6, 16_000, 16, SampleFormat::Int, 100),
                WavError::NotMono,
            ),
            (
                wav_bytes(1, 44_100, 16, SampleFormat::Int, 100),
                WavError::SampleRate(44_100),
            ),
            (
                wav_bytes(1, 11_025, 16, SampleFormat::Int, 100),
                WavError::SampleRate(11_025),
            ),
            (
                wav_bytes(1, 8000, 16, SampleFormat::Int, 0),
                WavError::Empty,
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(read_prompt(&bytes, LIMITS), Err(expected));
        }
    }

    #[test]
    fn messages_read_well() {
        let messages = [
            (WavError::NotWav, "not a WAV file"),
            (WavError::NotPcm16, "must be 16-bit PCM"),
            (WavError::NotMono, "must be mono"),
            (
                WavError::SampleRate(44_100),
                "sample rate 44100 Hz not supported",
            ),
            (
                WavError::TooLong { max_seconds: 30 },
                "longer than the 30-second limit",
            ),
            (
                WavError::TooLarge { max_bytes: 1000 },
                "larger than the 1000-byte limit",
            ),
            (WavError::Empty, "empty"),
        ];
        for (error, message) in messages {
            assert_eq!(error.to_string(), message);
        }
    }

    #[test]
    fn enforces_the_byte_limit_before_parsing() {
        let bytes = mono_8k(&[0; 1000]);
        let limits = PromptLimits {
            max_bytes: bytes.len() - 1,
            max_seconds: 30,
        };
        assert_eq!(
            read_prompt(&bytes, limits),
            Err(WavError::TooLarge {
                max_bytes: bytes.len() - 1
            })
        );
        // Even garbage over the limit is "too large", not "not a WAV file".
        assert!(matches!(
            read_prompt(
                &[0xFF; 100],
                PromptLimits {
                    max_bytes: 10,
                    max_seconds: 1
                }
            ),
            Err(WavError::TooLarge { .. })
        ));
        let exact = PromptLimits {
            max_bytes: bytes.len(),
            max_seconds: 30,
        };
        assert!(read_prompt(&bytes, exact).is_ok());
    }

    #[test]
    fn enforces_the_duration_limit_at_both_rates() {
        let limits = PromptLimits {
            max_bytes: usize::MAX,
            max_seconds: 1,
        };
        assert!(read_prompt(&mono_8k(&[1; 8000]), limits).is_ok());
        assert_eq!(
            read_prompt(&mono_8k(&[1; 8001]), limits),
            Err(WavError::TooLong { max_seconds: 1 })
        );
        let wide_ok = wav_bytes(1, 16_000, 16, SampleFormat::Int, 16_000);
        let wide_long = wav_bytes(1, 16_000, 16, SampleFormat::Int, 16_001);
        assert_eq!(read_prompt(&wide_ok, limits).map(|s| s.len()), Ok(8000));
        assert_eq!(
            read_prompt(&wide_long, limits),
            Err(WavError::TooLong { max_seconds: 1 })
        );
        let zero = PromptLimits {
            max_bytes: usize::MAX,
            max_seconds: 0,
        };
        assert!(matches!(
            read_prompt(&mono_8k(&[1]), zero),
            Err(WavError::TooLong { .. })
        ));
    }

    #[test]
    fn a_header_claiming_more_than_the_file_holds_is_truncated_or_too_long() {
        let mut bytes = mono_8k(&[7; 100]);
        // Claim 1000 samples in the data chunk (bytes 40..44), keep 100.
        bytes[40..44].copy_from_slice(&2000u32.to_le_bytes());
        assert_eq!(read_prompt(&bytes, LIMITS), Err(WavError::Truncated));
        // A huge claim is refused by the duration check, without allocating for it.
        bytes[40..44].copy_from_slice(&0xFFFF_FFFEu32.to_le_bytes());
        assert_eq!(
            read_prompt(&bytes, LIMITS),
            Err(WavError::TooLong { max_seconds: 30 })
        );
    }

    #[test]
    fn garbage_is_not_a_wav_file() {
        let inputs: [&[u8]; 6] = [
            b"",
            b"RIFF",
            b"hello world, this is definitely not audio",
            b"RIFF\x24\x00\x00\x00WAVEfmt ",
            b"RIFX\x24\x00\x00\x00WAVE",
            &[0u8; 64],
        ];
        for input in inputs {
            assert_eq!(
                read_prompt(input, LIMITS),
                Err(WavError::NotWav),
                "{input:?}"
            );
        }
        // An MP3 renamed .wav.
        assert_eq!(
            read_prompt(b"ID3\x04\x00\x00\x00\x00\x00\x00\xFF\xFB\x90\x00", LIMITS),
            Err(WavError::NotWav)
        );
    }

    #[test]
    fn every_truncation_of_a_valid_file_is_refused_without_panic() {
        let bytes = mono_8k(&[1000; 50]);
        for len in 0..bytes.len() {
            let result = read_prompt(&bytes[..len], LIMITS);
            assert!(
                matches!(result, Err(WavError::NotWav | WavError::Truncated)),
                "{len}: {result:?}"
            );
        }
    }

    #[test]
    fn arbitrary_mutations_never_panic() {
        let original = mono_8k(&[1000; 50]);
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut bytes = original.clone();
            // Mostly header bytes, where the parsing is.
            for _ in 0..1 + next() % 4 {
                let index = (next() % 48) as usize;
                bytes[index] = next() as u8;
            }
            let cut = (next() as usize) % (bytes.len() + 1);
            let _ = read_prompt(&bytes[..cut], LIMITS);
            let _ = read_prompt(&bytes, LIMITS);
        }
        for _ in 0..2_000 {
            let len = (next() % 200) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len >= 12 && next() % 2 == 0 {
                bytes[..4].copy_from_slice(b"RIFF");
                bytes[8..12].copy_from_slice(b"WAVE");
            }
            let _ = read_prompt(&bytes, LIMITS);
        }
    }
}
