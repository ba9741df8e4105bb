//! A two-party call recorder: each side's RTP in, a stereo WAV out (the caller on the left
//! channel, the callee on the right), so either party can be heard alone.
//!
//! Each side has its own jitter buffer and decoder. On every 20 ms tick the recorder takes one
//! frame of each side: decoded packets while they last, silence for a lost packet or a side that
//! sends nothing (on hold, silence suppression), so the two channels stay aligned with the call's
//! time. A side's packets are popped only as its samples are used, so any packetisation (10, 20,
//! 30 ms) keeps its real rate. Only audio it can decode is kept: G.711 (PT 0, 8) and G.722 (PT 9,
//! brought down to 8 kHz); telephone-events, comfort noise and other codecs count as silence.

use std::collections::VecDeque;
use std::io::Cursor;

use crate::g711::Law;
use crate::g722::{self, G722Decoder};
use crate::jitter::{JitterBuffer, JitterConfig};
use crate::rtp::RtpPacket;
use crate::wav::{Channels, WavError, WavWriter};
use crate::{FRAME_SAMPLES, SAMPLE_RATE_HZ};

/// The left channel (index 0) and the right (index 1).
pub const CALLER: usize = 0;
pub const CALLEE: usize = 1;

/// Longest packet payload decoded: 60 ms of G.711, or of G.722.
const MAX_PAYLOAD: usize = 480;

/// What became of a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued for its tick.
    Queued,
    /// Not audio the recorder decodes (another payload type, a telephone-event, comfort noise).
    Ignored,
    /// Not an RTP packet, or a payload too long.
    Malformed,
}

/// Counters since the recorder was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Packets queued, per side.
    pub packets: [u64; 2],
    /// Packets not decoded (ignored or malformed), per side.
    pub skipped: [u64; 2],
    /// Ticks a side had nothing to play (silence written), per side.
    pub silent_ticks: [u64; 2],
}

#[derive(Debug)]
struct Track {
    jitter: JitterBuffer,
    g722: Option<G722Decoder>,
    /// Decoded samples not yet written (a packet longer than a tick leaves some over).
    pcm: VecDeque<i16>,
    scratch: Vec<i16>,
}

impl Track {
    fn new() -> Self {
        Self {
            jitter: JitterBuffer::new(JitterConfig::default()),
            g722: None,
            pcm: VecDeque::with_capacity(2 * MAX_PAYLOAD),
            scratch: Vec::with_capacity(2 * MAX_PAYLOAD),
        }
    }

    /// Decodes `payload` of payload type `pt` onto the end of `pcm`.
    fn decode(&mut self, pt: u8, payload: &[u8]) {
        self.scratch.clear();
        if let Some(law) = Law::from_payload_type(pt) {
            law.decode_into(payload, &mut self.scratch);
            self.pcm.extend(self.scratch.iter().copied());
        } else if pt == g722::PAYLOAD_TYPE {
            let decoder = self.g722.get_or_insert_with(G722Decoder::new);
            decoder.decode(payload, &mut self.scratch);
            // 16 kHz to 8 kHz: the mean of each pair is a crude low-pass, enough for a
            // recording of speech (G.722's upper band is above the telephone band anyway).
            self.pcm.extend(
                self.scratch.chunks(2).map(|p| {
                    ((i32::from(p[0]) + i32::from(*p.get(1).unwrap_or(&p[0]))) / 2) as i16
                }),
            );
        }
    }

    /// One tick's worth of samples: decoded audio while it lasts, then silence.
    fn frame(&mut self, out: &mut [i16; FRAME_SAMPLES]) -> bool {
        let mut sounded = !self.pcm.is_empty();
        while self.pcm.len() < FRAME_SAMPLES {
            let Some(frame) = self.jitter.pop() else {
                break;
            };
            // The payload type travels in the first byte the recorder stored (see `push`).
            if let Some((&pt, payload)) = frame.payload.split_first() {
                self.decode(pt, payload);
                sounded = true;
            }
        }
        for sample in out.iter_mut() {
            *sample = self.pcm.pop_front().unwrap_or(0);
        }
        sounded
    }
}

/// Records one call in segments: [`push`](Self::push) packets as they arrive,
/// [`tick`](Self::tick) every 20 ms, [`take_segment`](Self::take_segment) for the WAV so far.
#[derive(Debug)]
pub struct CallRecorder {
    tracks: [Track; 2],
    /// Interleaved stereo samples of the current segment.
    samples: Vec<i16>,
    stats: RecorderStats,
}

impl Default for CallRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl CallRecorder {
    pub fn new() -> Self {
        Self {
            tracks: [Track::new(), Track::new()],
            samples: Vec::new(),
            stats: RecorderStats::default(),
        }
    }

    /// A packet from `side` ([`CALLER`] or [`CALLEE`]; anything else is ignored).
    pub fn push(&mut self, side: usize, packet: &[u8]) -> Pushed {
        let Some(track) = self.tracks.get_mut(side) else {
            return Pushed::Ignored;
        };
        let pushed = match RtpPacket::parse(packet) {
            Err(_) => Pushed::Malformed,
            Ok(p) if p.payload.len() > MAX_PAYLOAD => Pushed::Malformed,
            Ok(p) => {
                let pt = p.header.payload_type;
                if Law::from_payload_type(pt).is_some() || pt == g722::PAYLOAD_TYPE {
                    // The jitter buffer keeps payloads only; the type goes in front.
                    let mut payload = Vec::with_capacity(1 + p.payload.len());
                    payload.push(pt);
                    payload.extend_from_slice(p.payload);
                    track.jitter.push(
                        p.header.ssrc,
                        p.header.sequence,
                        p.header.timestamp,
                        &payload,
                    );
                    Pushed::Queued
                } else {
                    Pushed::Ignored
                }
            }
        };
        if pushed == Pushed::Queued {
            self.stats.packets[side] += 1;
        } else {
            self.stats.skipped[side] += 1;
        }
        pushed
    }

    /// Writes one 20 ms frame of each side.
    pub fn tick(&mut self) {
        let mut left = [0i16; FRAME_SAMPLES];
        let mut right = [0i16; FRAME_SAMPLES];
        for (side, out) in [(CALLER, &mut left), (CALLEE, &mut right)] {
            if !self.tracks[side].frame(out) {
                self.stats.silent_ticks[side] += 1;
            }
        }
        self.samples.reserve(2 * FRAME_SAMPLES);
        for (l, r) in left.iter().zip(&right) {
            self.samples.push(*l);
            self.samples.push(*r);
        }
    }

    /// Ticks written into the current segment.
    pub fn ticks(&self) -> usize {
        self.samples.len() / (2 * FRAME_SAMPLES)
    }

    /// Seconds of audio in the current segment.
    pub fn seconds(&self) -> f64 {
        (self.samples.len() / 2) as f64 / f64::from(SAMPLE_RATE_HZ)
    }

    pub fn stats(&self) -> RecorderStats {
        self.stats
    }

    /// The current segment as a stereo WAV file; the next segment starts empty, with the jitter
    /// buffers and decoders carrying on.
    pub fn take_segment(&mut self) -> Result<Vec<u8>, WavError> {
        let samples = std::mem::take(&mut self.samples);
        let mut out = Cursor::new(Vec::with_capacity(44 + 2 * samples.len()));
        let mut wav = WavWriter::new(&mut out, Channels::Stereo)?;
        for pair in samples.chunks_exact(2) {
            wav.write_stereo(&pair[..1], &pair[1..])?;
        }
        wav.finish()?;
        Ok(out.into_inner())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::rtp::RtpHeader;
    use crate::tone::{ToneGenerator, dominant};

    /// A 20 ms packet of `freq` Hz in payload type `pt` (0, 8 or 9).
    struct Sender {
        tone: ToneGenerator,
        seq: u16,
        ts: u32,
        ssrc: u32,
        pt: u8,
        g722: g722::G722Encoder,
    }

    impl Sender {
        fn new(freq: f32, pt: u8) -> Self {
            let rate = if pt == 9 { 16_000 } else { SAMPLE_RATE_HZ };
            Self {
                tone: ToneGenerator::new(freq, 8000, rate).unwrap(),
                seq: 1000,
                ts: 0,
                ssrc: 0x1234 + u32::from(pt),
                pt,
                g722: g722::G722Encoder::new(),
            }
        }

        fn packet(&mut self) -> Vec<u8> {
            let mut payload = Vec::new();
            if self.pt == 9 {
                let mut pcm = [0i16; 320];
                self.tone.fill(&mut pcm);
                self.g722.encode(&pcm, &mut payload);
            } else {
                let mut pcm = [0i16; FRAME_SAMPLES];
                self.tone.fill(&mut pcm);
                Law::from_payload_type(self.pt)
                    .unwrap()
                    .encode_into(&pcm, &mut payload);
            }
            let header = RtpHeader {
                marker: false,
                payload_type: self.pt,
                sequence: self.seq,
                timestamp: self.ts,
                ssrc: self.ssrc,
            };
            self.seq = self.seq.wrapping_add(1);
            self.ts = self.ts.wrapping_add(160);
            let mut out = Vec::new();
            header.write(&payload, &mut out).unwrap();
            out
        }
    }

    /// The left and right channels of a stereo 16-bit WAV written by the recorder.
    fn channels(wav: &[u8]) -> (Vec<i16>, Vec<i16>) {
        let mut reader = hound::WavReader::new(Cursor::new(wav)).unwrap();
        let spec = reader.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (2, 8000, 16)
        );
        let all: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        (
            all.iter().step_by(2).copied().collect(),
            all.iter().skip(1).step_by(2).copied().collect(),
        )
    }

    fn tone_of(samples: &[i16]) -> Option<f32> {
        dominant(samples, SAMPLE_RATE_HZ, &[440.0, 660.0, 880.0, 1000.0])
    }

    #[test]
    fn each_party_is_recorded_on_its_own_channel_in_its_own_codec() {
        for (caller_pt, callee_pt) in [(0, 0), (8, 0), (0, 9)] {
            let mut rec = CallRecorder::new();
            let mut alice = Sender::new(440.0, caller_pt);
            let mut bob = Sender::new(660.0, callee_pt);
            for _ in 0..100 {
                assert_eq!(rec.push(CALLER, &alice.packet()), Pushed::Queued);
                assert_eq!(rec.push(CALLEE, &bob.packet()), Pushed::Queued);
                rec.tick();
            }
            assert_eq!(rec.ticks(), 100);
            let (left, right) = channels(&rec.take_segment().unwrap());
            assert_eq!(left.len(), 100 * FRAME_SAMPLES);
            // Past the jitter buffer's depth, each channel holds its party's tone only.
            assert_eq!(
                tone_of(&left[800..]),
                Some(440.0),
                "{caller_pt}/{callee_pt}"
            );
            assert_eq!(
                tone_of(&right[800..]),
                Some(660.0),
                "{caller_pt}/{callee_pt}"
            );
        }
    }

    #[test]
    fn a_silent_side_is_silence_and_the_channels_stay_aligned() {
        let mut rec = CallRecorder::new();
        let mut alice = Sender::new(440.0, 0);
        for n in 0..50 {
            // The caller talks for the first half only.
            if n < 25 {
                rec.push(CALLER, &alice.packet());
            }
            rec.tick();
        }
        let (left, right) = channels(&rec.take_segment().unwrap());
        assert_eq!(left.len(), right.len());
        assert!(right.iter().all(|&s| s == 0));
        assert_eq!(tone_of(&left[800..3200]), Some(440.0));
        assert!(
            left[4800..].iter().all(|&s| s == 0),
            "after the caller stopped"
        );
        assert!(rec.stats().silent_ticks[CALLEE] == 50);
    }

    #[test]
    fn segments_follow_each_other_and_what_is_not_audio_is_skipped() {
        let mut rec = CallRecorder::new();
        let mut alice = Sender::new(880.0, 0);
        for _ in 0..10 {
            rec.push(CALLER, &alice.packet());
            rec.tick();
        }
        let first = rec.take_segment().unwrap();
        assert_eq!(rec.ticks(), 0);
        for _ in 0..10 {
            rec.push(CALLER, &alice.packet());
            rec.tick();
        }
        let (left, _) = channels(&rec.take_segment().unwrap());
        assert_eq!(channels(&first).0.len(), 10 * FRAME_SAMPLES);
        assert_eq!(
            tone_of(&left),
            Some(880.0),
            "the second segment goes on without a gap"
        );

        let event = {
            let header = RtpHeader {
                marker: true,
                payload_type: 101,
                sequence: 7,
                timestamp: 0,
                ssrc: 1,
            };
            let mut out = Vec::new();
            header.write(&[1, 0x0a, 0, 160], &mut out).unwrap();
            out
        };
        assert_eq!(rec.push(CALLER, &event), Pushed::Ignored);
        assert_eq!(rec.push(CALLER, b"\x80"), Pushed::Malformed);
        assert_eq!(rec.push(CALLER, &[0x80; 1500]), Pushed::Malformed);
        assert_eq!(rec.push(7, &alice.packet()), Pushed::Ignored);
        assert_eq!(rec.stats().skipped[CALLER], 3);
    }

    #[test]
    fn thirty_millisecond_packets_keep_their_real_rate() {
        let mut rec = CallRecorder::new();
        let mut tone = ToneGenerator::new(440.0, 8000, SAMPLE_RATE_HZ).unwrap();
        let (mut seq, mut ts) = (0u16, 0u32);
        // 3 s of call: 100 packets of 30 ms arrive while 150 ticks of 20 ms pass.
        for tick in 0..150 {
            if tick % 3 != 2 {
                let mut pcm = [0i16; 240];
                tone.fill(&mut pcm);
                let mut payload = Vec::new();
                Law::Ulaw.encode_into(&pcm, &mut payload);
                let header = RtpHeader {
                    marker: false,
                    payload_type: 0,
                    sequence: seq,
                    timestamp: ts,
                    ssrc: 9,
                };
                let mut out = Vec::new();
                header.write(&payload, &mut out).unwrap();
                rec.push(CALLER, &out);
                seq += 1;
                ts += 240;
            }
            rec.tick();
        }
        let (left, _) = channels(&rec.take_segment().unwrap());
        let sounding = left.iter().filter(|&&s| s != 0).count();
        // Everything sent is written once: 100 × 240 samples, less what the buffer still holds.
        assert!(
            (100 * 240 - 4 * 240..=100 * 240).contains(&sounding),
            "{sounding} samples of tone"
        );
    }
}
