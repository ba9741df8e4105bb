//! ITU-T G.722 at 64 kbit/s: sub-band ADPCM for 16 kHz wideband speech.
//!
//! A 24-tap quadrature mirror filter splits each pair of 16 kHz samples into a low band
//! (0-4 kHz) and a high band (4-8 kHz) sample at 8 kHz. The low band is coded with 6-bit
//! adaptive PCM, the high band with 2 bits, and the two go out as one byte per pair: high band
//! in the top two bits. The decoder mirrors this. Each band keeps a pole-zero predictor and a
//! logarithmic step size that adapt from the coded values alone, which is why encoder and
//! decoder stay in step without side information.
//!
//! The arithmetic follows the fixed-point blocks of the Recommendation (their names are kept in
//! the comments). Encoder and decoder output match libg722 (the spandsp lineage, which passes
//! the ITU test sequences) bit for bit; the golden tests below pin that. Block 4
//! (predictor adaptation) uses only the 4 most significant low-band bits, as the embedded
//! 48/56 kbit/s modes require; the 64 kbit/s decoder reconstructs with all 6.
//!
//! Note for SDP: G.722's RTP clock rate is 8000 although it samples at 16 kHz (RFC 3551 §4.5.2).

/// Static RTP payload type (RFC 3551).
pub const PAYLOAD_TYPE: u8 = 9;
/// Sample rate of the audio on both sides of the codec.
pub const SAMPLE_RATE_HZ: u32 = 16_000;

/// The 24 QMF coefficients are symmetric; these are the even-indexed half (h0, h2, ... h22),
/// the odd-indexed ones being the same read backwards.
const QMF: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

/// Low-band quantiser decision levels (QUANTL), scaled by the step size.
const Q6: [i32; 32] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
    1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919, 0, 0,
];
/// Codes for a negative (ILN) or positive (ILP) low-band difference, by decision interval.
const ILN: [i32; 32] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11,
    10, 9, 8, 7, 6, 5, 4, 0,
];
const ILP: [i32; 32] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39,
    38, 37, 36, 35, 34, 33, 32, 0,
];
/// Low-band inverse quantiser, 6-bit (INVQBL at 64 kbit/s).
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
/// Low-band inverse quantiser, 4-bit (INVQAL), used for prediction in both directions.
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
/// Low-band step-size multipliers (LOGSCL) by magnitude class, and the class of each 4-bit code.
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
const RL42: [usize; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
/// 2^(i/32) scaled by 2048: the antilog table of SCALEL/SCALEH.
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
/// High-band inverse quantiser (INVQAH), codes for negative/positive differences by interval,
/// step-size multipliers (LOGSCH) and the class of each code.
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
const IHN: [usize; 3] = [0, 1, 0];
const IHP: [usize; 3] = [0, 3, 2];
const WH: [i32; 3] = [0, -214, 798];
const RH2: [usize; 4] = [2, 1, 2, 1];

/// Largest log step size in the low and high band (NBL, NBH limits).
const LOW_NB_MAX: i32 = 18_432;
const HIGH_NB_MAX: i32 = 22_528;

fn sat16(value: i32) -> i32 {
    value.clamp(i32::from(i16::MIN), i32::from(i16::MAX))
}

/// The adaptive state of one sub-band: step size and pole-zero predictor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Band {
    /// Predicted signal (SL/SH), and its pole and zero parts.
    s: i32,
    sp: i32,
    sz: i32,
    /// Reconstructed signal, partial reconstruction and pole coefficients, newest first.
    r: [i32; 3],
    p: [i32; 3],
    a: [i32; 3],
    ap: [i32; 3],
    /// Quantised differences and zero coefficients, newest first.
    d: [i32; 7],
    b: [i32; 7],
    bp: [i32; 7],
    /// Log step size and the step size it gives (NBL/DETL, NBH/DETH).
    nb: i32,
    det: i32,
}

impl Band {
    fn new(det: i32) -> Self {
        Self {
            s: 0,
            sp: 0,
            sz: 0,
            r: [0; 3],
            p: [0; 3],
            a: [0; 3],
            ap: [0; 3],
            d: [0; 7],
            b: [0; 7],
            bp: [0; 7],
            nb: 0,
            det,
        }
    }

    /// LOGSCL/LOGSCH then SCALEL/SCALEH: leak the log step size, add the code's multiplier,
    /// limit, and convert back to a linear step through the antilog table.
    fn update_step(&mut self, multiplier: i32, nb_max: i32, exponent_base: i32) {
        self.nb = (((self.nb * 127) >> 7) + multiplier).clamp(0, nb_max);
        let mantissa = ILB[((self.nb >> 6) & 31) as usize];
        let shift = exponent_base - (self.nb >> 11);
        let linear = if shift < 0 {
            mantissa << -shift
        } else {
            mantissa >> shift
        };
        self.det = linear << 2;
    }

    /// Block 4: reconstruct, adapt the predictor coefficients and compute the next prediction
    /// from the quantised difference `d`.
    fn adapt(&mut self, d: i32) {
        // RECONS, PARREC
        self.d[0] = d;
        self.r[0] = sat16(self.s + d);
        self.p[0] = sat16(self.sz + d);

        // UPPOL2: second pole coefficient. The signs are 0 (non-negative) or -1.
        let sg0 = self.p[0] >> 15;
        let sg1 = self.p[1] >> 15;
        let sg2 = self.p[2] >> 15;
        let wd1 = sat16(self.a[1] << 2);
        let wd2 = if sg0 == sg1 { -wd1 } else { wd1 }.min(32_767);
        let wd3 = (wd2 >> 7) + if sg0 == sg2 { 128 } else { -128 } + ((self.a[2] * 32_512) >> 15);
        self.ap[2] = wd3.clamp(-12_288, 12_288);

        // UPPOL1: first pole coefficient, limited so the pole pair stays stable.
        let wd1 = if sg0 == sg1 { 192 } else { -192 };
        let wd2 = (self.a[1] * 32_640) >> 15;
        // 15360 - ap[2] lies in 3072..=27648, so the bounds are ordered.
        let limit = sat16(15_360 - self.ap[2]);
        self.ap[1] = sat16(wd1 + wd2).max(-limit).min(limit);

        // UPZERO: sixth-order zero section, sign-sign adaptation with leakage.
        let step = if d == 0 { 0 } else { 128 };
        let sg_d = d >> 15;
        for i in 1..7 {
            let wd2 = if self.d[i] >> 15 == sg_d { step } else { -step };
            let wd3 = (self.b[i] * 32_640) >> 15;
            self.bp[i] = sat16(wd2 + wd3);
        }

        // DELAYA
        for i in (1..7).rev() {
            self.d[i] = self.d[i - 1];
            self.b[i] = self.bp[i];
        }
        for i in (1..3).rev() {
            self.r[i] = self.r[i - 1];
            self.p[i] = self.p[i - 1];
            self.a[i] = self.ap[i];
        }

        // FILTEP
        let wd1 = (self.a[1] * sat16(self.r[1] + self.r[1])) >> 15;
        let wd2 = (self.a[2] * sat16(self.r[2] + self.r[2])) >> 15;
        self.sp = sat16(wd1 + wd2);

        // FILTEZ
        let mut sz = 0;
        for i in (1..7).rev() {
            sz = sat16(sz + ((self.b[i] * sat16(self.d[i] + self.d[i])) >> 15));
        }
        self.sz = sz;

        // PREDIC
        self.s = sat16(self.sp + self.sz);
    }
}

/// Initial step sizes (DETL, DETH) from the Recommendation's reset state.
const LOW_DET_RESET: i32 = 32;
const HIGH_DET_RESET: i32 = 8;

/// The QMF delay line: 24 samples, the newest at the end.
type QmfLine = [i32; 24];

/// 16 kHz PCM in, one byte per two samples out.
#[derive(Debug, Clone)]
pub struct G722Encoder {
    low: Band,
    high: Band,
    qmf: QmfLine,
    /// A sample left over from an odd-length call, paired with the first of the next.
    pending: Option<i16>,
}

impl G722Encoder {
    /// An encoder in the reset state (start of a stream).
    pub fn new() -> Self {
        Self {
            low: Band::new(LOW_DET_RESET),
            high: Band::new(HIGH_DET_RESET),
            qmf: [0; 24],
            pending: None,
        }
    }

    /// Appends the encoding of `pcm` (16 kHz) to `out`: one byte per two samples. An odd
    /// sample at the end is kept and paired with the first sample of the next call.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) {
        let mut samples = pcm.iter().copied();
        out.reserve(pcm.len().div_ceil(2));
        loop {
            let first = match self.pending.take() {
                Some(first) => first,
                None => match samples.next() {
                    Some(first) => first,
                    None => return,
                },
            };
            match samples.next() {
                Some(second) => out.push(self.encode_pair(first, second)),
                None => {
                    self.pending = Some(first);
                    return;
                }
            }
        }
    }

    fn encode_pair(&mut self, first: i16, second: i16) -> u8 {
        // Transmit QMF: one low-band and one high-band sample per input pair.
        self.qmf.copy_within(2.., 0);
        self.qmf[22] = i32::from(first);
        self.qmf[23] = i32::from(second);
        let (mut odd_taps, mut even_taps) = (0, 0);
        for (i, &h) in QMF.iter().enumerate() {
            odd_taps += self.qmf[2 * i] * h;
            even_taps += self.qmf[2 * i + 1] * QMF[11 - i];
        }
        let x_low = (even_taps + odd_taps) >> 14;
        let x_high = (even_taps - odd_taps) >> 14;

        // Low band. SUBTRA, QUANTL: find the decision interval of the magnitude.
        let el = sat16(x_low - self.low.s);
        let magnitude = if el >= 0 { el } else { -(el + 1) };
        let mut interval = 1;
        while interval < 30 && magnitude >= (Q6[interval] * self.low.det) >> 12 {
            interval += 1;
        }
        let ilow = if el < 0 { ILN[interval] } else { ILP[interval] };
        // INVQAL, LOGSCL, SCALEL, then block 4 with the 4-bit difference.
        let ril = (ilow >> 2) as usize;
        let dlow = (self.low.det * QM4[ril]) >> 15;
        self.low.update_step(WL[RL42[ril]], LOW_NB_MAX, 8);
        self.low.adapt(dlow);

        // High band. SUBTRA, QUANTH (one decision level), INVQAH, LOGSCH, SCALEH, block 4.
        let eh = sat16(x_high - self.high.s);
        let magnitude = if eh >= 0 { eh } else { -(eh + 1) };
        let class = if magnitude >= (564 * self.high.det) >> 12 {
            2
        } else {
            1
        };
        let ihigh = if eh < 0 { IHN[class] } else { IHP[class] };
        let dhigh = (self.high.det * QM2[ihigh]) >> 15;
        self.high.update_step(WH[RH2[ihigh]], HIGH_NB_MAX, 10);
        self.high.adapt(dhigh);

        ((ihigh << 6) as i32 | ilow) as u8
    }
}

impl Default for G722Encoder {
    fn default() -> Self {
        Self::new()
    }
}

/// One byte in, two 16 kHz samples out. Every byte value is a valid code, so any payload
/// decodes.
#[derive(Debug, Clone)]
pub struct G722Decoder {
    low: Band,
    high: Band,
    qmf: QmfLine,
}

impl G722Decoder {
    /// A decoder in the reset state (start of a stream).
    pub fn new() -> Self {
        Self {
            low: Band::new(LOW_DET_RESET),
            high: Band::new(HIGH_DET_RESET),
            qmf: [0; 24],
        }
    }

    /// Appends the decoding of `bytes` to `out`: two 16 kHz samples per byte.
    pub fn decode(&mut self, bytes: &[u8], out: &mut Vec<i16>) {
        out.reserve(bytes.len() * 2);
        for &code in bytes {
            let [a, b] = self.decode_byte(code);
            out.push(a);
            out.push(b);
        }
    }

    fn decode_byte(&mut self, code: u8) -> [i16; 2] {
        let ilow = usize::from(code & 0x3F);
        let ihigh = usize::from(code >> 6);

        // Low band: INVQBL and RECONS with all six bits, LIMIT to 15 bits.
        let wd2 = (self.low.det * QM6[ilow]) >> 15;
        let r_low = (self.low.s + wd2).clamp(-16_384, 16_383);
        // The predictor adapts on the 4-bit difference, exactly as in the encoder.
        let dlow = (self.low.det * QM4[ilow >> 2]) >> 15;
        self.low.update_step(WL[RL42[ilow >> 2]], LOW_NB_MAX, 8);
        self.low.adapt(dlow);

        // High band: INVQAH, RECONS, LIMIT, then adaptation.
        let dhigh = (self.high.det * QM2[ihigh]) >> 15;
        let r_high = (dhigh + self.high.s).clamp(-16_384, 16_383);
        self.high.update_step(WH[RH2[ihigh]], HIGH_NB_MAX, 10);
        self.high.adapt(dhigh);

        // Receive QMF: the sum and difference of the bands feed the two polyphase halves.
        self.qmf.copy_within(2.., 0);
        self.qmf[22] = r_low + r_high;
        self.qmf[23] = r_low - r_high;
        let (mut first, mut second) = (0, 0);
        for (i, &h) in QMF.iter().enumerate() {
            second += self.qmf[2 * i] * h;
            first += self.qmf[2 * i + 1] * QMF[11 - i];
        }
        [sat16(first >> 11) as i16, sat16(second >> 11) as i16]
    }
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

    use super::*;
    use crate::tone::{ToneGenerator, dominant, goertzel};

    /// Integer-only test signal (a triangle wave plus pseudo-random noise), so the golden
    /// values below do not depend on floating point.
    fn golden_input() -> Vec<i16> {
        let mut state = 0x2545_F491_u32;
        (0..16_000i32)
            .map(|n| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let phase = n % 40;
                let triangle = if phase < 20 { phase } else { 40 - phase } * 1200 - 12_000;
                let noise = (state >> 16) as i32 % 4096 - 2048;
                (triangle + noise) as i16
            })
            .collect()
    }

    const CANDIDATES: [f32; 6] = [500.0, 1000.0, 2000.0, 3000.0, 6000.0, 7000.0];

    fn tone(frequency: f32, amplitude: i16, len: usize) -> Vec<i16> {
        let mut out = vec![0; len];
        ToneGenerator::new(frequency, amplitude, SAMPLE_RATE_HZ)
            .unwrap()
            .fill(&mut out);
        out
    }

    fn round_trip(pcm: &[i16]) -> Vec<i16> {
        let mut bytes = Vec::new();
        G722Encoder::new().encode(pcm, &mut bytes);
        assert_eq!(bytes.len(), pcm.len() / 2);
        let mut out = Vec::new();
        G722Decoder::new().decode(&bytes, &mut out);
        assert_eq!(out.len(), pcm.len());
        out
    }

    /// SNR in dB of `output` against `input` delayed by `delay`, skipping the adaptation start.
    fn snr_db(input: &[i16], output: &[i16], delay: usize, skip: usize) -> f64 {
        let (mut signal, mut noise) = (0.0, 0.0);
        for n in skip..output.len() {
            let reference = f64::from(input[n - delay]);
            let error = f64::from(output[n]) - reference;
            signal += reference * reference;
            noise += error * error;
        }
        10.0 * (signal / noise.max(1e-9)).log10()
    }

    /// Analysis plus synthesis QMF: two 24-tap linear-phase filters, as aligned by the
    /// polyphase pairing of samples.
    const CODEC_DELAY: usize = 22;

    /// The delay (in samples) that best aligns output with input.
    fn best_alignment(input: &[i16], output: &[i16]) -> usize {
        (0..64)
            .map(|delay| (delay, snr_db(input, output, delay, 1600)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(delay, _)| delay)
            .unwrap()
    }

    #[test]
    fn tables_are_consistent() {
        // ILB is 2048 * 2^(i/32), rounded.
        for (i, &value) in ILB.iter().enumerate() {
            let exact = 2048.0 * 2f64.powf(i as f64 / 32.0);
            assert!((f64::from(value) - exact).abs() <= 1.0, "ILB[{i}]");
        }
        // Each decision interval's codes reconstruct inside that interval (QM6 is 8x the scale
        // of Q6), symmetrically for either sign; the last interval is open-ended.
        for interval in 1..=30 {
            let positive = QM6[ILP[interval] as usize];
            let negative = QM6[ILN[interval] as usize];
            assert!(positive > 0 && positive == -negative, "{interval}");
            let level = positive / 8;
            assert!(level >= Q6[interval - 1], "{interval}");
            if interval < 30 {
                assert!(level <= Q6[interval], "{interval}");
            }
            // The 4-bit code (top bits) reconstructs with the same sign.
            assert!(QM4[(ILP[interval] >> 2) as usize] >= 0);
            assert!(QM4[(ILN[interval] >> 2) as usize] <= 0);
        }
        // The QMF's DC gain is 2^13 across both halves.
        assert_eq!(QMF.iter().sum::<i32>() * 2, 8192);
    }

    /// FNV-1a, to pin long outputs in a short constant.
    fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
        bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    #[test]
    fn encoder_matches_an_independent_implementation() {
        // Reference values from libg722 (the spandsp lineage, which passes the ITU test
        // sequences) encoding the same input at 64 kbit/s.
        let mut bytes = Vec::new();
        G722Encoder::new().encode(&golden_input(), &mut bytes);
        assert_eq!(bytes.len(), 8000);
        assert_eq!(
            &bytes[..16],
            &[
                42, 132, 32, 132, 32, 132, 132, 141, 149, 24, 159, 177, 176, 43, 171, 40
            ]
        );
        assert_eq!(fnv1a(bytes.iter().copied()), 0x98a5_054b_fd5a_91b4);
    }

    #[test]
    fn decoder_matches_an_independent_implementation() {
        // libg722 decoding every byte value four times over.
        let codes: Vec<u8> = (0..4).flat_map(|_| 0..=255u8).collect();
        let mut pcm = Vec::new();
        G722Decoder::new().decode(&codes, &mut pcm);
        assert_eq!(&pcm[..8], &[0, 0, -1, -1, 0, 0, 0, -1]);
        assert_eq!(
            fnv1a(pcm.iter().flat_map(|s| s.to_le_bytes())),
            0x8e84_8146_51f0_c952
        );
    }

    #[test]
    fn the_codec_delay_is_the_qmf_delay() {
        // Three unrelated tones: no period shorter than the search window to alias the delay.
        let mut input = tone(440.0, 4000, 16_000);
        for frequency in [1330.0, 2710.0] {
            ToneGenerator::new(frequency, 3000, SAMPLE_RATE_HZ)
                .unwrap()
                .mix_into(&mut input);
        }
        let output = round_trip(&input);
        assert_eq!(best_alignment(&input, &output), CODEC_DELAY);
        let snr = snr_db(&input, &output, CODEC_DELAY, 1600);
        assert!(snr > 20.0, "SNR {snr:.1} dB");
    }

    #[test]
    fn a_1khz_tone_survives_with_good_snr() {
        let input = tone(1000.0, 10_000, 16_000);
        let output = round_trip(&input);
        let snr = snr_db(&input, &output, CODEC_DELAY, 1600);
        assert!(snr > 20.0, "SNR {snr:.1} dB");
        assert_eq!(
            dominant(&output[1600..], SAMPLE_RATE_HZ, &CANDIDATES),
            Some(1000.0)
        );
        assert!(goertzel(&output[1600..], 1000.0, SAMPLE_RATE_HZ) > 0.95);
    }

    #[test]
    fn tones_across_the_low_band_survive() {
        for frequency in [300.0, 500.0, 2000.0, 3000.0] {
            let input = tone(frequency, 8000, 16_000);
            let output = round_trip(&input);
            let snr = snr_db(&input, &output, CODEC_DELAY, 1600);
            assert!(snr > 20.0, "{frequency} Hz: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn quiet_tones_survive_too() {
        // The step size adapts down: a -40 dBFS tone is coded as well as a loud one.
        let input = tone(1000.0, 300, 16_000);
        let output = round_trip(&input);
        let snr = snr_db(&input, &output, CODEC_DELAY, 1600);
        assert!(snr > 20.0, "SNR {snr:.1} dB");
    }

    #[test]
    fn a_high_band_tone_stays_in_the_high_band() {
        // If the band split or merge were wrong, 6 kHz would come back folded to 2 kHz.
        let input = tone(6000.0, 8000, 16_000);
        let output = round_trip(&input);
        assert_eq!(
            dominant(&output[1600..], SAMPLE_RATE_HZ, &CANDIDATES),
            Some(6000.0)
        );
        assert!(goertzel(&output[1600..], 2000.0, SAMPLE_RATE_HZ) < 0.05);
    }

    #[test]
    fn silence_stays_near_silence() {
        let output = round_trip(&[0; 16_000]);
        let peak = output.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak <= 16, "peak {peak}");
        // And after speech stops, it decays back to near silence.
        let mut input = tone(1000.0, 20_000, 8000);
        input.extend([0; 8000]);
        let output = round_trip(&input);
        let tail_peak = output[12_000..]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        assert!(tail_peak <= 16, "tail peak {tail_peak}");
    }

    #[test]
    fn odd_length_calls_pair_samples_across_calls() {
        let input = tone(1234.0, 9000, 3200);
        let mut whole = Vec::new();
        G722Encoder::new().encode(&input, &mut whole);
        let mut pieces = Vec::new();
        let mut encoder = G722Encoder::default();
        let mut rest = input.as_slice();
        for len in [1, 0, 3, 159, 161, 7, 1] {
            let (head, tail) = rest.split_at(len);
            encoder.encode(head, &mut pieces);
            rest = tail;
        }
        encoder.encode(rest, &mut pieces);
        assert_eq!(pieces, whole);
    }

    #[test]
    fn decoding_in_pieces_matches_decoding_at_once() {
        let input = tone(800.0, 9000, 3200);
        let mut bytes = Vec::new();
        G722Encoder::new().encode(&input, &mut bytes);
        let mut whole = Vec::new();
        G722Decoder::new().decode(&bytes, &mut whole);
        let mut pieces = Vec::new();
        let mut decoder = G722Decoder::default();
        for chunk in bytes.chunks(37) {
            decoder.decode(chunk, &mut pieces);
        }
        assert_eq!(pieces, whole);
    }

    #[test]
    fn full_scale_input_does_not_overflow() {
        // A full-scale square wave and alternating extremes drive every limiter.
        let square: Vec<i16> = (0..16_000)
            .map(|n| if (n / 8) % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        let alternating: Vec<i16> = (0..16_000)
            .map(|n| if n % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        for input in [
            square,
            alternating,
            vec![i16::MIN; 4000],
            vec![i16::MAX; 4000],
        ] {
            let output = round_trip(&input);
            assert_eq!(output.len(), input.len());
        }
        let loud = tone(1000.0, i16::MAX, 16_000);
        let output = round_trip(&loud);
        assert_eq!(
            dominant(&output[1600..], SAMPLE_RATE_HZ, &CANDIDATES),
            Some(1000.0)
        );
    }

    #[test]
    fn arbitrary_bytes_decode_without_panic() {
        let mut decoder = G722Decoder::new();
        let mut out = Vec::new();
        let all: Vec<u8> = (0..=255).collect();
        for _ in 0..100 {
            decoder.decode(&all, &mut out);
        }
        let mut state = 0x1234_5678_9ABC_DEF0_u64;
        let noise: Vec<u8> = (0..200_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        decoder.decode(&noise, &mut out);
        for byte in [0x00, 0xFF, 0x3F, 0xC0] {
            decoder.decode(&[byte; 10_000], &mut out);
        }
        assert_eq!(out.len(), 2 * (100 * 256 + 200_000 + 40_000));
    }

    #[test]
    fn empty_input_produces_nothing() {
        let mut bytes = Vec::new();
        G722Encoder::new().encode(&[], &mut bytes);
        assert!(bytes.is_empty());
        let mut pcm = Vec::new();
        G722Decoder::new().decode(&[], &mut pcm);
        assert!(pcm.is_empty());
    }
}
