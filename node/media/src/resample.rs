//! Bringing audio made at another rate (a speech synthesiser's 22,050 Hz, a 44.1 kHz recording)
//! down to the telephone's 8 kHz: a windowed-sinc low-pass below the new Nyquist frequency, then
//! each output sample interpolated between the two filtered samples around its instant.

use std::f64::consts::PI;

/// The telephone rate everything is brought to.
pub const TELEPHONE_RATE_HZ: u32 = 8_000;
/// Half the filter's taps on each side of the centre.
const HALF_TAPS: usize = 32;
/// The low-pass's cut-off: the telephone band ends at 3.4 kHz, and the new rate folds anything
/// above 4 kHz back into it.
const CUTOFF_HZ: f64 = 3_600.0;

/// `samples` at `rate` Hz as 8 kHz samples. At 8 kHz they are returned as they are; below it (or at
/// 0) there is nothing to bring down and nothing is returned.
pub fn to_telephone_rate(samples: &[i16], rate: u32) -> Vec<i16> {
    if rate == TELEPHONE_RATE_HZ {
        return samples.to_vec();
    }
    if rate < TELEPHONE_RATE_HZ || samples.is_empty() {
        return Vec::new();
    }
    let taps = low_pass(CUTOFF_HZ / f64::from(rate));
    let last = samples.len() - 1;
    let filtered_at = |centre: usize| -> f64 {
        taps.iter()
            .enumerate()
            .map(|(k, tap)| {
                // The edges repeat the first and last sample.
                let i = (centre + k).saturating_sub(HALF_TAPS).min(last);
                tap * f64::from(samples[i])
            })
            .sum()
    };
    let step = f64::from(rate) / f64::from(TELEPHONE_RATE_HZ);
    let count = (samples.len() as f64 / step).floor() as usize;
    (0..count)
        .map(|n| {
            let at = n as f64 * step;
            let i = at.floor() as usize;
            let frac = at - i as f64;
            let a = filtered_at(i.min(last));
            let b = filtered_at((i + 1).min(last));
            let v = a + (b - a) * frac;
            v.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
        })
        .collect()
}

/// A Hann-windowed sinc low-pass with cut-off `fc` (a fraction of the sample rate), unity gain.
fn low_pass(fc: f64) -> Vec<f64> {
    let len = 2 * HALF_TAPS + 1;
    let mut taps: Vec<f64> = (0..len)
        .map(|k| {
            let m = k as f64 - HALF_TAPS as f64;
            let sinc = if m == 0.0 {
                2.0 * fc
            } else {
                (2.0 * PI * fc * m).sin() / (PI * m)
            };
            let window = 0.5 - 0.5 * (2.0 * PI * k as f64 / (len - 1) as f64).cos();
            sinc * window
        })
        .collect();
    let sum: f64 = taps.iter().sum();
    for t in &mut taps {
        *t /= sum;
    }
    taps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::{ToneGenerator, goertzel};

    fn tone(freq: f32, rate: u32, secs: f32) -> Vec<i16> {
        let mut out = vec![0i16; (rate as f32 * secs) as usize];
        ToneGenerator::new(freq, 10_000, rate)
            .unwrap()
            .fill(&mut out);
        out
    }

    fn peak(s: &[i16]) -> i16 {
        s.iter().map(|v| v.saturating_abs()).max().unwrap_or(0)
    }

    #[test]
    fn a_tone_in_the_telephone_band_keeps_its_pitch_level_and_length() {
        for rate in [16_000, 22_050, 44_100, 48_000] {
            let out = to_telephone_rate(&tone(1_000.0, rate, 1.0), rate);
            assert!(
                (7_990..=8_000).contains(&out.len()),
                "{rate}: {}",
                out.len()
            );
            let mid = &out[400..7_600];
            let p = peak(mid);
            assert!((9_000..=10_500).contains(&p), "{rate}: peak {p}");
            let at = |f| goertzel(mid, f, TELEPHONE_RATE_HZ);
            assert!(at(1_000.0) > 100.0 * at(2_000.0), "{rate}: 1 kHz dominates");
        }
    }

    #[test]
    fn what_would_fold_into_the_band_is_filtered_out() {
        // 6 kHz at 22,050 Hz would fold to 2 kHz at 8 kHz without the low-pass.
        let out = to_telephone_rate(&tone(6_000.0, 22_050, 1.0), 22_050);
        let p = peak(&out[400..7_600]);
        assert!(p < 300, "peak {p} of 10,000 left (at least 30 dB down)");
    }

    #[test]
    fn odd_inputs_give_nothing_or_themselves() {
        assert!(to_telephone_rate(&[], 22_050).is_empty());
        assert!(to_telephone_rate(&[1, 2, 3], 0).is_empty());
        assert!(to_telephone_rate(&[1, 2, 3], 4_000).is_empty());
        assert_eq!(to_telephone_rate(&[1, 2, 3], 8_000), [1, 2, 3]);
        // Full scale stays within range.
        let loud = vec![i16::MAX; 2_205];
        let out = to_telephone_rate(&loud, 22_050);
        assert_eq!(out.len(), 800);
        assert!(out.iter().all(|&s| s > 32_000));
    }
}
