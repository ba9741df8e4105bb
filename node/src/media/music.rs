//! Music on hold: while one phone holds the call (its SDP says `sendonly`, `inactive` or
//! `c=0.0.0.0`), the other hears a tune from the PBX instead of silence.
//!
//! The tune is the PBX's own: a soft arpeggio synthesised at start (no file to license or ship),
//! encoded as G.711 µ-law or A-law (whichever the listening phone accepts) and sent as RTP every
//! 20 ms from the relay's socket facing that phone, with an SSRC of its own. The sans-IO part here
//! (the encoders, the tune, the packetiser) is tested on its own; [`super::relay`] drives it.

use std::sync::OnceLock;

/// Samples per RTP packet: 20 ms at 8 kHz.
pub(crate) const FRAME: usize = 160;
/// The payload types the music can be sent in (RFC 3551 static types).
pub(crate) const PCMU: u8 = 0;
pub(crate) const PCMA: u8 = 8;

const RATE: f32 = 8000.0;
/// Each note's length, and the notes of one loop (Hz: a C major pentatonic arpeggio).
const NOTE_SAMPLES: usize = 2400;
const NOTES: [f32; 16] = [
    261.63, 329.63, 392.00, 523.25, 440.00, 392.00, 329.63, 293.66, 261.63, 329.63, 392.00, 440.00,
    392.00, 329.63, 293.66, 196.00,
];
/// Peak amplitude: loud enough to hear, well below clipping once two partials add up.
const PEAK: f32 = 7000.0;

/// G.711 µ-law (ITU-T G.711 §3.2) of a 16-bit sample.
pub(crate) fn ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let exponent = (7 - (s as u32).leading_zeros().saturating_sub(17).min(7)) as i32;
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 as i32 | mantissa) as u8
}

/// G.711 A-law (ITU-T G.711 §3.1) of a 16-bit sample.
pub(crate) fn alaw(sample: i16) -> u8 {
    let mut s = i32::from(sample) >> 3;
    let sign = if s < 0 {
        s = -s - 1;
        0x00
    } else {
        0x80
    };
    let s = s.min(0x0FFF);
    let byte = if s < 32 {
        (s >> 1) as u8
    } else {
        // Segment 1 holds 32..63, 2 holds 64..127, …: the highest bit's position less 4.
        let segment = (31 - (s as u32).leading_zeros()) as i32 - 4;
        let mantissa = (s >> segment) & 0x0F;
        ((segment << 4) | mantissa) as u8
    };
    (byte | sign) ^ 0x55
}

/// One loop of the tune, as 8 kHz 16-bit samples.
pub(crate) fn tune() -> &'static [i16] {
    static TUNE: OnceLock<Vec<i16>> = OnceLock::new();
    TUNE.get_or_init(|| {
        let mut pcm = Vec::with_capacity(NOTES.len() * NOTE_SAMPLES);
        for freq in NOTES {
            for n in 0..NOTE_SAMPLES {
                let t = n as f32 / RATE;
                // A quick attack and a long decay: a soft bell rather than a beep.
                let attack = (n as f32 / 80.0).min(1.0);
                let decay = (-3.0 * n as f32 / NOTE_SAMPLES as f32).exp();
                let phase = std::f32::consts::TAU * freq * t;
                let wave = phase.sin() + 0.3 * (2.0 * phase).sin();
                pcm.push((PEAK * attack * decay * wave / 1.3) as i16);
            }
        }
        pcm
    })
}

/// The music's RTP stream towards one phone: sequence numbers, timestamps and an SSRC of its own,
/// the tune looping.
#[derive(Debug)]
pub(crate) struct Player {
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    at: usize,
}

impl Player {
    /// A stream in `payload_type`: [`PCMA`] is A-law, anything else µ-law (callers pass [`PCMU`]).
    pub(crate) fn new(payload_type: u8, ssrc: u32, seq: u16) -> Self {
        Self {
            payload_type,
            seq,
            timestamp: ssrc.rotate_left(16),
            ssrc,
            at: 0,
        }
    }

    /// The next packet: a 12-byte RTP header (RFC 3550 §5.1) and 20 ms of the tune.
    pub(crate) fn next_packet(&mut self, out: &mut Vec<u8>) {
        out.clear();
        out.push(0x80);
        out.push(self.payload_type & 0x7F);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        let pcm = tune();
        let encode = if self.payload_type == PCMA {
            alaw
        } else {
            ulaw
        };
        for i in 0..FRAME {
            out.push(encode(pcm[(self.at + i) % pcm.len()]));
        }
        self.at = (self.at + FRAME) % pcm.len();
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference decoders (ITU-T G.711), to check the encoders against.
    fn ulaw_decode(byte: u8) -> i16 {
        let b = !byte;
        let exponent = (b >> 4) & 0x07;
        let mantissa = i32::from(b & 0x0F);
        let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
        if b & 0x80 != 0 {
            -magnitude as i16
        } else {
            magnitude as i16
        }
    }

    fn alaw_decode(byte: u8) -> i16 {
        let b = byte ^ 0x55;
        let exponent = (b >> 4) & 0x07;
        let mantissa = i32::from(b & 0x0F);
        let magnitude = match exponent {
            0 => (mantissa << 4) + 8,
            e => ((mantissa << 4) + 0x108) << (e - 1),
        };
        if b & 0x80 != 0 {
            magnitude as i16
        } else {
            -magnitude as i16
        }
    }

    #[test]
    fn g711_encodes_silence_and_extremes_as_the_standard_says() {
        assert_eq!(ulaw(0), 0xFF);
        assert_eq!(ulaw(i16::MAX), 0x80);
        assert_eq!(ulaw(i16::MIN), 0x00);
        assert_eq!(alaw(0), 0xD5);
        assert_eq!(alaw(i16::MAX), 0xAA);
        assert_eq!(alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn g711_round_trips_within_its_quantisation() {
        for s in (-32000..32000).step_by(37) {
            let s = s as i16;
            // The step grows with the level: about 1/16 of it, plus the smallest step.
            let tolerance = i32::from(s).abs() / 16 + 16;
            let u = ulaw_decode(ulaw(s));
            assert!(
                (i32::from(u) - i32::from(s)).abs() <= tolerance,
                "µ-law {s} → {u}"
            );
            let a = alaw_decode(alaw(s));
            assert!(
                (i32::from(a) - i32::from(s)).abs() <= tolerance,
                "A-law {s} → {a}"
            );
        }
    }

    #[test]
    fn the_tune_is_audible_and_loops_without_a_click() {
        let pcm = tune();
        assert_eq!(pcm.len(), NOTES.len() * NOTE_SAMPLES);
        let loud = pcm.iter().filter(|s| s.unsigned_abs() > 1000).count();
        assert!(loud > pcm.len() / 4, "{loud} loud samples of {}", pcm.len());
        assert!(pcm.iter().all(|s| s.unsigned_abs() < 12_000));
        // Each note starts from silence, so the loop's seam is quiet.
        assert!(pcm[0].unsigned_abs() < 100 && pcm[pcm.len() - 1].unsigned_abs() < 500);
    }

    #[test]
    fn packets_are_rtp_with_their_own_counting() {
        let mut p = Player::new(PCMA, 0x1234_5678, 65535);
        let mut first = Vec::new();
        let mut second = Vec::new();
        p.next_packet(&mut first);
        p.next_packet(&mut second);
        assert_eq!(first.len(), 12 + FRAME);
        assert_eq!(first[0], 0x80);
        assert_eq!(first[1], PCMA);
        assert_eq!(u16::from_be_bytes([first[2], first[3]]), 65535);
        assert_eq!(
            u16::from_be_bytes([second[2], second[3]]),
            0,
            "the sequence wraps"
        );
        let ts = |p: &[u8]| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        assert_eq!(ts(&second).wrapping_sub(ts(&first)), FRAME as u32);
        assert_eq!(&first[8..12], &0x1234_5678u32.to_be_bytes());
        // The payload decodes back to the tune.
        let decoded: Vec<i16> = first[12..].iter().map(|&b| alaw_decode(b)).collect();
        let peak = decoded.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(
            peak > 500,
            "the first frame carries the note's attack: peak {peak}"
        );
    }
}
