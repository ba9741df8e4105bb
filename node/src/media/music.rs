//! Music on hold: while one phone holds the call (its SDP says `sendonly`, `inactive` or
//! `c=0.0.0.0`), the other hears a tune from the PBX instead of silence.
//!
//! What plays is the newest music an admin uploaded to the audio store (see
//! [`crate::audio::music`]), or else the PBX's own tune: a soft arpeggio synthesised at start (no
//! file to license or ship). It is encoded as G.711 µ-law or A-law (whichever the listening phone
//! accepts) and sent as RTP every 20 ms from the relay's socket facing that phone, with an SSRC of
//! its own. The sans-IO part here (the tune, the packetiser) is tested on its own;
//! [`super::relay`] drives it.

use std::sync::{Arc, OnceLock};

use pbx_media::g711::Law;

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

/// One loop of the PBX's own tune, as 8 kHz 16-bit samples.
pub(crate) fn tune() -> Arc<[i16]> {
    static TUNE: OnceLock<Arc<[i16]>> = OnceLock::new();
    let tune = TUNE.get_or_init(|| {
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
        pcm.into()
    });
    Arc::clone(tune)
}

/// The music's RTP stream towards one phone: sequence numbers, timestamps and an SSRC of its own,
/// the music looping.
#[derive(Debug)]
pub(crate) struct Player {
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    at: usize,
    /// 8 kHz samples, never empty.
    pcm: Arc<[i16]>,
}

impl Player {
    /// A stream of `pcm` (the tune when empty) in `payload_type`: [`PCMA`] is A-law, anything
    /// else µ-law (callers pass [`PCMU`]).
    pub(crate) fn new(payload_type: u8, ssrc: u32, seq: u16, pcm: Arc<[i16]>) -> Self {
        Self {
            payload_type,
            seq,
            timestamp: ssrc.rotate_left(16),
            ssrc,
            at: 0,
            pcm: if pcm.is_empty() { tune() } else { pcm },
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
        let pcm = &self.pcm;
        let law = if self.payload_type == PCMA {
            Law::Alaw
        } else {
            Law::Ulaw
        };
        for i in 0..FRAME {
            out.push(law.encode(pcm[(self.at + i) % pcm.len()]));
        }
        self.at = (self.at + FRAME) % pcm.len();
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut p = Player::new(PCMA, 0x1234_5678, 65535, Arc::from(Vec::new()));
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
        let decoded: Vec<i16> = first[12..].iter().map(|&b| Law::Alaw.decode(b)).collect();
        let peak = decoded.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(
            peak > 500,
            "the first frame carries the note's attack: peak {peak}"
        );
    }

    #[test]
    fn uploaded_music_plays_in_place_of_the_tune_and_loops() {
        let pcm: Arc<[i16]> = (0..200).map(|n| (n * 100) as i16).collect();
        let mut p = Player::new(PCMU, 1, 0, Arc::clone(&pcm));
        let mut packet = Vec::new();
        p.next_packet(&mut packet);
        p.next_packet(&mut packet);
        // The second packet holds samples 160..200, then 0..120 again.
        let heard: Vec<i16> = packet[12..].iter().map(|&b| Law::Ulaw.decode(b)).collect();
        let sent: Vec<i16> = (160..200).chain(0..120).map(|n| pcm[n]).collect();
        for (h, s) in heard.iter().zip(&sent) {
            assert!((i32::from(*h) - i32::from(*s)).abs() <= i32::from(*s).abs() / 16 + 16);
        }
    }
}
