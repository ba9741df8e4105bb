//! A fixed-depth jitter buffer for mixing and recording.
//!
//! Packets are pushed as they arrive; the mixer pops once per 20 ms tick. The buffer holds
//! `depth` packets back before it starts playing so that late packets still make their tick,
//! then plays one sequence number per pop. A missing packet gives `None` and the caller conceals
//! it (silence). When it runs dry it holds back `depth` packets again, which also absorbs
//! silence suppression without treating the first packet after a pause as late.
//!
//! Sequence numbers are 16 bits and wrap; internally each is extended to a 64-bit counter
//! relative to the highest one seen, so ordering is correct across 65535 → 0.

use std::collections::BTreeMap;

/// Settings for a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Packets held back before playout starts (and again after running dry).
    pub depth: usize,
    /// Span of sequence numbers the buffer holds ahead of playout; anything beyond pushes the
    /// oldest out (so latency stays bounded when the sender's clock runs fast).
    pub capacity: usize,
    /// A sequence number further than this from the expected one (either way) means the stream
    /// restarted: the buffer is cleared and starts again.
    pub max_jump: u16,
    /// This many late packets in a row also means the stream restarted (with a small backward
    /// jump, below `max_jump`): everything arriving is behind playout and would be dropped.
    pub late_run_resync: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            depth: 3,
            capacity: 50,
            max_jump: 100,
            late_run_resync: 10,
        }
    }
}

/// What happened to a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued for playout.
    Queued,
    /// Queued after clearing the buffer: new SSRC, a large sequence jump or a run of late
    /// packets.
    Resynced,
    /// Already queued; dropped.
    Duplicate,
    /// Its tick has already been played; dropped.
    Late,
}

/// Counters since the buffer was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets played.
    pub played: u64,
    /// Ticks while playing whose packet was missing (lost or too late).
    pub missing: u64,
    /// Times the buffer ran dry and went back to holding `depth` packets.
    pub underruns: u64,
    /// Packets dropped because the same sequence number was already queued.
    pub duplicates: u64,
    /// Packets dropped because their tick had already been played.
    pub late: u64,
    /// Queued packets pushed out unplayed to keep within `capacity`.
    pub overflow: u64,
    /// Times the buffer was cleared and restarted.
    pub resyncs: u64,
}

/// A packet handed back for playout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitterFrame {
    /// RTP sequence number.
    pub sequence: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// The payload as pushed.
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Anchor {
    ssrc: u32,
    /// Extended sequence number of the highest packet seen in this stream.
    highest: i64,
}

/// The buffer; see the module documentation.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    config: JitterConfig,
    anchor: Option<Anchor>,
    queue: BTreeMap<i64, JitterFrame>,
    /// The extended sequence number the next pop plays; anything below it is late. `None`
    /// before the first playout of a stream.
    next: Option<i64>,
    playing: bool,
    late_run: u32,
    stats: JitterStats,
}

/// Extended numbers of a stream start here (plus its first sequence number): far from zero so
/// that reordered predecessors stay positive, far from `i64` limits so arithmetic never overflows.
const EXTENDED_ORIGIN: i64 = 1 << 32;

impl JitterBuffer {
    /// An empty buffer. A `depth` of zero is treated as one and a `capacity` below `depth` as
    /// `depth`, so every configuration can play.
    pub fn new(config: JitterConfig) -> Self {
        let depth = config.depth.max(1);
        let config = JitterConfig {
            depth,
            capacity: config.capacity.max(depth),
            ..config
        };
        Self {
            config,
            anchor: None,
            queue: BTreeMap::new(),
            next: None,
            playing: false,
            late_run: 0,
            stats: JitterStats::default(),
        }
    }

    /// Queues one packet of the stream identified by `ssrc`.
    pub fn push(
        &mut self,
        ssrc: u32,
        sequence: u16,
        timestamp: u32,
        payload: &[u8],
    ) -> PushOutcome {
        let frame = JitterFrame {
            sequence,
            timestamp,
            payload: payload.to_vec(),
        };
        let Some(anchor) = self.anchor.filter(|a| a.ssrc == ssrc) else {
            let first_stream = self.anchor.is_none();
            self.restart(ssrc, frame);
            return if first_stream {
                PushOutcome::Queued
            } else {
                PushOutcome::Resynced
            };
        };

        // The signed 16-bit distance from the highest seen picks the nearest interpretation.
        let delta = i64::from(sequence.wrapping_sub(anchor.highest as u16) as i16);
        let extended = anchor.highest + delta;
        let reference = self.next.unwrap_or(anchor.highest);
        if (extended - reference).abs() > i64::from(self.config.max_jump) {
            self.restart(ssrc, frame);
            return PushOutcome::Resynced;
        }

        if self.next.is_some_and(|next| extended < next) {
            self.stats.late += 1;
            self.late_run += 1;
            if self.late_run >= self.config.late_run_resync {
                self.restart(ssrc, frame);
                return PushOutcome::Resynced;
            }
            return PushOutcome::Late;
        }
        self.late_run = 0;

        if self.queue.contains_key(&extended) {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        self.queue.insert(extended, frame);
        if extended > anchor.highest {
            self.anchor = Some(Anchor {
                ssrc,
                highest: extended,
            });
        }
        self.enforce_capacity();
        PushOutcome::Queued
    }

    /// The frame for this tick: `Some` when its packet is here, `None` while holding back
    /// packets or when the packet is missing.
    pub fn pop(&mut self) -> Option<JitterFrame> {
        if !self.playing {
            if self.queue.len() < self.config.depth {
                return None;
            }
            self.playing = true;
            // Start at the oldest queued packet; it is never below `next` (those were late).
            self.next = self.queue.keys().next().copied().or(self.next);
        }
        if self.queue.is_empty() {
            // Ran dry: hold back again rather than march on through a pause in the stream.
            self.playing = false;
            self.stats.underruns += 1;
            return None;
        }
        let next = self.next.unwrap_or(EXTENDED_ORIGIN);
        self.next = Some(next + 1);
        match self.queue.remove(&next) {
            Some(frame) => {
                self.stats.played += 1;
                Some(frame)
            }
            None => {
                self.stats.missing += 1;
                None
            }
        }
    }

    /// Counters since creation.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Packets queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether the buffer is playing (as opposed to holding back packets).
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    fn restart(&mut self, ssrc: u32, frame: JitterFrame) {
        if self.anchor.is_some() {
            self.stats.resyncs += 1;
        }
        // The extended number keeps the sequence number in its low 16 bits.
        let extended = EXTENDED_ORIGIN + i64::from(frame.sequence);
        self.queue.clear();
        self.queue.insert(extended, frame);
        self.anchor = Some(Anchor {
            ssrc,
            highest: extended,
        });
        self.next = None;
        self.playing = false;
        self.late_run = 0;
    }

    /// Pushes out the oldest packets until the queued span fits `capacity`.
    fn enforce_capacity(&mut self) {
        let Some(&newest) = self.queue.keys().next_back() else {
            return;
        };
        let capacity = i64::try_from(self.config.capacity).unwrap_or(i64::MAX);
        let oldest_allowed = newest - capacity + 1;
        while let Some((&oldest, _)) = self.queue.first_key_value() {
            if oldest >= oldest_allowed {
                break;
            }
            self.queue.remove(&oldest);
            self.stats.overflow += 1;
        }
        // Playout skips what was pushed out rather than reporting it as missing.
        if let Some(next) = self.next.filter(|&n| n < oldest_allowed) {
            self.next = Some(next.max(oldest_allowed));
        }
    }
}

impl Default for JitterBuffer {
    fn default() -> Self {
        Self::new(JitterConfig::default())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

    use super::*;

    const SSRC: u32 = 0xCAFE;

    fn push(jb: &mut JitterBuffer, seq: u16) -> PushOutcome {
        jb.push(SSRC, seq, u32::from(seq) * 160, &seq.to_be_bytes())
    }

    /// The sequence numbers (or `None`) that `ticks` pops return.
    fn play(jb: &mut JitterBuffer, ticks: usize) -> Vec<Option<u16>> {
        (0..ticks).map(|_| jb.pop().map(|f| f.sequence)).collect()
    }

    #[test]
    fn holds_back_depth_packets_then_plays_in_order() {
        let mut jb = JitterBuffer::default();
        assert_eq!(jb.pop(), None, "empty");
        push(&mut jb, 10);
        push(&mut jb, 11);
        assert_eq!(jb.pop(), None, "two of three");
        assert!(!jb.is_playing());
        push(&mut jb, 12);
        let frame = jb.pop().unwrap();
        assert_eq!(frame.sequence, 10);
        assert_eq!(frame.timestamp, 1600);
        assert_eq!(frame.payload, 10u16.to_be_bytes());
        assert!(jb.is_playing());
        assert_eq!(play(&mut jb, 2), vec![Some(11), Some(12)]);
    }

    #[test]
    fn steady_stream_keeps_its_depth() {
        let mut jb = JitterBuffer::default();
        for seq in 0..3 {
            push(&mut jb, seq);
        }
        for seq in 3..100 {
            let popped = jb.pop().unwrap();
            assert_eq!(popped.sequence, seq - 3);
            push(&mut jb, seq);
            assert_eq!(jb.len(), 3);
        }
        assert_eq!(jb.stats().played, 97);
        assert_eq!(jb.stats().missing, 0);
    }

    #[test]
    fn reordered_packets_come_out_in_order() {
        let mut jb = JitterBuffer::default();
        for seq in [3, 1, 2, 0, 5, 4] {
            assert_eq!(push(&mut jb, seq), PushOutcome::Queued);
        }
        assert_eq!(
            play(&mut jb, 6),
            vec![Some(0), Some(1), Some(2), Some(3), Some(4), Some(5)]
        );
    }

    #[test]
    fn a_lost_packet_is_a_none_in_its_place() {
        let mut jb = JitterBuffer::default();
        for seq in [0, 1, 3, 4] {
            push(&mut jb, seq);
        }
        assert_eq!(play(&mut jb, 4), vec![Some(0), Some(1), None, Some(3)]);
        assert_eq!(jb.stats().missing, 1);
        // And a packet arriving after its tick is late.
        assert_eq!(push(&mut jb, 2), PushOutcome::Late);
        assert_eq!(jb.stats().late, 1);
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let mut jb = JitterBuffer::default();
        push(&mut jb, 0);
        assert_eq!(push(&mut jb, 0), PushOutcome::Duplicate);
        push(&mut jb, 1);
        push(&mut jb, 2);
        assert_eq!(push(&mut jb, 1), PushOutcome::Duplicate);
        assert_eq!(play(&mut jb, 3), vec![Some(0), Some(1), Some(2)]);
        // Once played, a copy is late rather than duplicate.
        assert_eq!(push(&mut jb, 2), PushOutcome::Late);
        let stats = jb.stats();
        assert_eq!((stats.duplicates, stats.late), (2, 1));
    }

    #[test]
    fn wraps_around_at_65535() {
        let mut jb = JitterBuffer::default();
        for seq in [65_534, 0, 65_535, 1, 2] {
            assert_eq!(push(&mut jb, seq), PushOutcome::Queued);
        }
        assert_eq!(
            play(&mut jb, 5),
            vec![Some(65_534), Some(65_535), Some(0), Some(1), Some(2)]
        );
        // 65535 is now behind playout, not 65535 packets ahead.
        assert_eq!(push(&mut jb, 65_535), PushOutcome::Late);
    }

    #[test]
    fn runs_for_several_wraps_without_drift() {
        let mut jb = JitterBuffer::default();
        let mut seq = 60_000u16;
        for _ in 0..3 {
            push(&mut jb, seq);
            seq = seq.wrapping_add(1);
        }
        let mut expected = 60_000u16;
        for _ in 0..200_000 {
            assert_eq!(jb.pop().unwrap().sequence, expected);
            expected = expected.wrapping_add(1);
            push(&mut jb, seq);
            seq = seq.wrapping_add(1);
        }
        assert_eq!(jb.stats().resyncs, 0);
    }

    #[test]
    fn a_large_jump_resynchronises() {
        let mut jb = JitterBuffer::default();
        for seq in 0..3 {
            push(&mut jb, seq);
        }
        assert_eq!(play(&mut jb, 1), vec![Some(0)]);
        assert_eq!(push(&mut jb, 30_000), PushOutcome::Resynced);
        assert_eq!(jb.len(), 1, "old packets cleared");
        push(&mut jb, 30_001);
        push(&mut jb, 30_002);
        assert_eq!(
            play(&mut jb, 3),
            vec![Some(30_000), Some(30_001), Some(30_002)]
        );
        assert_eq!(jb.stats().resyncs, 1);
    }

    #[test]
    fn a_large_backward_jump_resynchronises() {
        let mut jb = JitterBuffer::default();
        for seq in 1000..1003 {
            push(&mut jb, seq);
        }
        assert_eq!(push(&mut jb, 500), PushOutcome::Resynced);
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn a_small_backward_restart_resynchronises_after_a_run_of_late_packets() {
        let config = JitterConfig {
            late_run_resync: 4,
            ..JitterConfig::default()
        };
        let mut jb = JitterBuffer::new(config);
        for seq in 100..103 {
            push(&mut jb, seq);
        }
        assert_eq!(play(&mut jb, 3).len(), 3);
        // The sender restarted 20 behind, same SSRC.
        for seq in 80..83 {
            assert_eq!(push(&mut jb, seq), PushOutcome::Late);
        }
        assert_eq!(push(&mut jb, 83), PushOutcome::Resynced);
        push(&mut jb, 84);
        push(&mut jb, 85);
        assert_eq!(play(&mut jb, 3), vec![Some(83), Some(84), Some(85)]);
    }

    #[test]
    fn a_late_burst_interleaved_with_good_packets_does_not_resync() {
        let config = JitterConfig {
            late_run_resync: 3,
            ..JitterConfig::default()
        };
        let mut jb = JitterBuffer::new(config);
        for seq in 0..10 {
            push(&mut jb, seq);
        }
        play(&mut jb, 5);
        for seq in 0..5 {
            assert_eq!(push(&mut jb, seq), PushOutcome::Late);
            push(&mut jb, 10 + seq);
        }
        assert_eq!(jb.stats().resyncs, 0);
    }

    #[test]
    fn an_ssrc_change_resynchronises() {
        let mut jb = JitterBuffer::default();
        for seq in 0..3 {
            push(&mut jb, seq);
        }
        // Same sequence numbers from a new source are not duplicates.
        assert_eq!(jb.push(SSRC + 1, 1, 0, b"new"), PushOutcome::Resynced);
        assert_eq!(jb.push(SSRC + 1, 2, 160, b"new"), PushOutcome::Queued);
        assert_eq!(jb.push(SSRC + 1, 3, 320, b"new"), PushOutcome::Queued);
        let frame = jb.pop().unwrap();
        assert_eq!((frame.sequence, frame.payload.as_slice()), (1, &b"new"[..]));
        // The old source's stragglers now count as another restart, not as ours.
        assert_eq!(jb.push(SSRC, 4, 0, b"old"), PushOutcome::Resynced);
    }

    #[test]
    fn capacity_bounds_the_queue_and_pushes_out_the_oldest() {
        let config = JitterConfig {
            depth: 2,
            capacity: 5,
            ..JitterConfig::default()
        };
        let mut jb = JitterBuffer::new(config);
        for seq in 0..8 {
            assert_eq!(push(&mut jb, seq), PushOutcome::Queued);
            assert!(jb.len() <= 5);
        }
        assert_eq!(jb.stats().overflow, 3);
        assert_eq!(
            play(&mut jb, 5),
            vec![Some(3), Some(4), Some(5), Some(6), Some(7)]
        );
        assert_eq!(jb.stats().missing, 0);
    }

    #[test]
    fn capacity_also_bounds_a_sparse_span_while_playing() {
        let config = JitterConfig {
            depth: 2,
            capacity: 5,
            ..JitterConfig::default()
        };
        let mut jb = JitterBuffer::new(config);
        push(&mut jb, 0);
        push(&mut jb, 1);
        assert_eq!(play(&mut jb, 1), vec![Some(0)]);
        // 1 is queued; 9 is eight ahead of playout: playout skips to keep within five.
        push(&mut jb, 9);
        assert_eq!(jb.len(), 1);
        // Playout resumes at 5: the span 5..=8 was never received.
        assert_eq!(play(&mut jb, 5), vec![None, None, None, None, Some(9)]);
        assert_eq!(jb.stats().overflow, 1);
        // Packets pushed out of the span are late if they arrive now.
        assert_eq!(push(&mut jb, 2), PushOutcome::Late);
    }

    #[test]
    fn running_dry_holds_back_again_and_absorbs_a_pause() {
        let mut jb = JitterBuffer::default();
        for seq in 0..3 {
            push(&mut jb, seq);
        }
        assert_eq!(play(&mut jb, 3), vec![Some(0), Some(1), Some(2)]);
        // Silence suppression: nothing for a while.
        assert_eq!(play(&mut jb, 50), vec![None; 50]);
        assert_eq!(jb.stats().underruns, 1, "one underrun, then holding back");
        assert_eq!(jb.stats().missing, 0);
        // Talk resumes with the next sequence number; nothing is late.
        for seq in 3..6 {
            assert_eq!(push(&mut jb, seq), PushOutcome::Queued);
        }
        assert_eq!(play(&mut jb, 3), vec![Some(3), Some(4), Some(5)]);
        // Old packets are still recognised as late after the pause.
        assert_eq!(push(&mut jb, 1), PushOutcome::Late);
    }

    #[test]
    fn degenerate_settings_still_play() {
        let mut jb = JitterBuffer::new(JitterConfig {
            depth: 0,
            capacity: 0,
            max_jump: 0,
            late_run_resync: 0,
        });
        push(&mut jb, 7);
        assert_eq!(jb.pop().map(|f| f.sequence), Some(7));
        push(&mut jb, 8);
        assert_eq!(jb.pop().map(|f| f.sequence), Some(8));
    }
}
