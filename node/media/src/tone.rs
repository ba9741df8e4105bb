//! Sine tones and their detection.
//!
//! The generator keeps its phase between calls, so a tone built from 20 ms frames has no click
//! at the frame edges (ringback, busy, beeps for the voicemail prompt). The Goertzel detector
//! measures how much of a block's energy sits at one frequency; [`dominant`] picks which of a
//! few candidate frequencies a block carries, which is how the tests check the mixer and codecs
//! and how an application checks for a tone.

use std::f64::consts::TAU;

use thiserror::Error;

/// Why a tone cannot be generated.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
#[non_exhaustive]
pub enum ToneError {
    /// The frequency is not finite, not positive, or not below half the sample rate.
    #[error("tone frequency {frequency_hz} Hz is not between 0 and half of {sample_rate} Hz")]
    Frequency {
        /// The requested frequency.
        frequency_hz: f32,
        /// The sample rate it was requested at.
        sample_rate: u32,
    },
}

/// A sine generator with continuous phase across calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneGenerator {
    /// Phase in cycles, in `[0, 1)`.
    phase: f64,
    /// Cycles advanced per sample.
    step: f64,
    amplitude: f64,
}

impl ToneGenerator {
    /// A tone of `frequency_hz` with peak `amplitude` at `sample_rate`. The amplitude's sign is
    /// ignored.
    pub fn new(frequency_hz: f32, amplitude: i16, sample_rate: u32) -> Result<Self, ToneError> {
        let nyquist = f64::from(sample_rate) / 2.0;
        let frequency = f64::from(frequency_hz);
        if !frequency.is_finite() || frequency <= 0.0 || frequency >= nyquist {
            return Err(ToneError::Frequency {
                frequency_hz,
                sample_rate,
            });
        }
        Ok(Self {
            phase: 0.0,
            step: frequency / f64::from(sample_rate),
            amplitude: f64::from(amplitude).abs(),
        })
    }

    /// Overwrites `out` with the next samples of the tone.
    pub fn fill(&mut self, out: &mut [i16]) {
        for sample in out {
            *sample = self.next_sample();
        }
    }

    /// Adds the next samples of the tone to `out`, saturating; two generators mixed into the
    /// same frame make a dual tone (ringback is 440 Hz + 480 Hz).
    pub fn mix_into(&mut self, out: &mut [i16]) {
        for sample in out {
            *sample = sample.saturating_add(self.next_sample());
        }
    }

    fn next_sample(&mut self) -> i16 {
        let value = (self.amplitude * (TAU * self.phase).sin()).round();
        self.phase = (self.phase + self.step).fract();
        // |value| <= 32767 because the amplitude came from an i16; the clamp documents it.
        value.clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
    }
}

/// The fraction of a block's energy at `frequency_hz` (Goertzel algorithm): about 1.0 for a
/// pure tone at that frequency, about 0.5 for each of two equal tones, near 0 for a frequency
/// that is absent. Silence, an empty block or a zero sample rate give 0.
///
/// The frequency resolution is about `sample_rate / samples.len()`: use 160 samples (20 ms at
/// 8 kHz) or more to tell tones 200 Hz apart.
pub fn goertzel(samples: &[i16], frequency_hz: f32, sample_rate: u32) -> f32 {
    if samples.is_empty() || sample_rate == 0 || !frequency_hz.is_finite() {
        return 0.0;
    }
    let omega = TAU * f64::from(frequency_hz) / f64::from(sample_rate);
    let coefficient = 2.0 * omega.cos();
    let (mut s1, mut s2) = (0.0_f64, 0.0_f64);
    let mut energy = 0.0_f64;
    for &sample in samples {
        let x = f64::from(sample);
        energy += x * x;
        let s0 = x + coefficient * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    if energy == 0.0 {
        return 0.0;
    }
    // |X(f)|^2; a full-block sine of amplitude A gives (A N / 2)^2 against an energy of
    // N A^2 / 2, so this ratio is 1 for a pure tone.
    let power = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
    let n = samples.len() as f64;
    (2.0 * power / (n * energy)) as f32
}

/// Below this share of the block's energy no candidate counts as present.
pub const DOMINANT_MIN_SHARE: f32 = 0.25;

/// The candidate frequency carrying the largest share of the block's energy, if that share is
/// at least [`DOMINANT_MIN_SHARE`].
pub fn dominant(samples: &[i16], sample_rate: u32, candidates: &[f32]) -> Option<f32> {
    candidates
        .iter()
        .map(|&f| (f, goertzel(samples, f, sample_rate)))
        .filter(|&(_, share)| share >= DOMINANT_MIN_SHARE)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(f, _)| f)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

    use super::*;

    fn tone(frequency: f32, amplitude: i16, rate: u32, len: usize) -> Vec<i16> {
        let mut out = vec![0; len];
        ToneGenerator::new(frequency, amplitude, rate)
            .unwrap()
            .fill(&mut out);
        out
    }

    #[test]
    fn generator_has_the_requested_amplitude() {
        let samples = tone(1000.0, 8000, 8000, 8000);
        let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert_eq!(peak, 8000, "1 kHz at 8 kHz hits the peak exactly");
        let mean: f64 = samples.iter().map(|&s| f64::from(s)).sum::<f64>() / 8000.0;
        assert!(mean.abs() < 1.0, "no DC");
        assert_eq!(samples[0], 0, "starts at zero phase");
    }

    #[test]
    fn phase_is_continuous_across_frames() {
        let whole = tone(440.0, 10_000, 8000, 1600);
        let mut generator = ToneGenerator::new(440.0, 10_000, 8000).unwrap();
        let mut pieces = Vec::new();
        for len in [160, 1, 159, 7, 1273] {
            let mut frame = vec![0; len];
            generator.fill(&mut frame);
            pieces.extend(frame);
        }
        assert_eq!(pieces, whole);
    }

    #[test]
    fn full_scale_tones_do_not_overflow() {
        for amplitude in [i16::MAX, i16::MIN] {
            let samples = tone(1234.5, amplitude, 8000, 8000);
            let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
            assert!(peak >= 32_700, "{peak}");
        }
    }

    #[test]
    fn mix_into_builds_a_dual_tone_and_saturates() {
        let mut frame = vec![0i16; 1600];
        let mut a = ToneGenerator::new(440.0, 5000, 8000).unwrap();
        let mut b = ToneGenerator::new(480.0, 5000, 8000).unwrap();
        a.mix_into(&mut frame);
        b.mix_into(&mut frame);
        assert!(goertzel(&frame, 440.0, 8000) > 0.4);
        assert!(goertzel(&frame, 480.0, 8000) > 0.4);

        let mut loud = vec![i16::MAX; 160];
        ToneGenerator::new(1000.0, i16::MAX, 8000)
            .unwrap()
            .mix_into(&mut loud);
        assert!(loud.iter().all(|&s| s >= 0), "saturated, never wrapped");
    }

    #[test]
    fn invalid_frequencies_are_refused() {
        for f in [0.0, -1.0, 4000.0, 4000.1, f32::NAN, f32::INFINITY] {
            assert!(ToneGenerator::new(f, 1000, 8000).is_err(), "{f}");
        }
        assert!(ToneGenerator::new(1.0, 1000, 0).is_err());
        assert!(ToneGenerator::new(3999.0, 1000, 8000).is_ok());
        let message = ToneGenerator::new(5000.0, 1, 8000).unwrap_err().to_string();
        assert!(message.contains("5000"), "{message}");
    }

    #[test]
    fn goertzel_measures_the_share_of_energy() {
        let pure = tone(1000.0, 10_000, 8000, 160);
        let share = goertzel(&pure, 1000.0, 8000);
        assert!((share - 1.0).abs() < 0.02, "{share}");
        // 1 kHz is 20 bins from 2 kHz in a 160-sample block: nothing leaks.
        assert!(goertzel(&pure, 2000.0, 8000) < 0.01);
        // Independent of level.
        let quiet = tone(1000.0, 10, 8000, 160);
        assert!((goertzel(&quiet, 1000.0, 8000) - 1.0).abs() < 0.05);
    }

    #[test]
    fn goertzel_of_two_equal_tones_splits_the_energy() {
        let mut both = tone(697.0, 6000, 8000, 800);
        ToneGenerator::new(1209.0, 6000, 8000)
            .unwrap()
            .mix_into(&mut both);
        for f in [697.0, 1209.0] {
            let share = goertzel(&both, f, 8000);
            assert!((share - 0.5).abs() < 0.05, "{f}: {share}");
        }
        assert!(goertzel(&both, 941.0, 8000) < 0.05);
    }

    #[test]
    fn goertzel_degenerate_inputs_are_zero() {
        assert_eq!(goertzel(&[], 1000.0, 8000), 0.0);
        assert_eq!(goertzel(&[0; 160], 1000.0, 8000), 0.0);
        assert_eq!(goertzel(&[100; 160], 1000.0, 0), 0.0);
        assert_eq!(goertzel(&[100; 160], f32::NAN, 8000), 0.0);
    }

    #[test]
    fn goertzel_does_not_mistake_dc_or_noise_for_a_tone() {
        assert!(goertzel(&[1000; 160], 1000.0, 8000) < 0.01);
        let mut state = 12_345u32;
        let noise: Vec<i16> = (0..1600)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (state >> 16) as i16
            })
            .collect();
        assert!(goertzel(&noise, 1000.0, 8000) < 0.05);
    }

    #[test]
    fn dominant_picks_the_strongest_candidate() {
        let candidates = [440.0, 660.0, 880.0];
        let mut mix = tone(660.0, 8000, 8000, 160);
        ToneGenerator::new(880.0, 3000, 8000)
            .unwrap()
            .mix_into(&mut mix);
        assert_eq!(dominant(&mix, 8000, &candidates), Some(660.0));
        assert_eq!(dominant(&[0; 160], 8000, &candidates), None);
        assert_eq!(dominant(&mix, 8000, &[]), None);
        // A tone that is none of the candidates.
        let other = tone(1500.0, 8000, 8000, 160);
        assert_eq!(dominant(&other, 8000, &candidates), None);
    }

    #[test]
    fn works_at_16_khz() {
        let wide = tone(6000.0, 8000, 16_000, 320);
        assert_eq!(
            dominant(&wide, 16_000, &[1000.0, 2000.0, 6000.0]),
            Some(6000.0)
        );
    }
}
