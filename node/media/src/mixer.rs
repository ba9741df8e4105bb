//! An N-party conference mixer on 20 ms frames of 8 kHz linear PCM.
//!
//! Each participant hears everyone but themselves. Rather than sum N-1 frames for each of N
//! participants (quadratic), the mixer sums every contribution once in 32 bits, then subtracts
//! each participant's own frame from the total and clamps to 16 bits. A muted participant is
//! left out of the total (nobody hears them) but still receives the mix.
//!
//! Per tick: [`Mixer::put_frame`] for each participant that has audio, then [`Mixer::mix`],
//! which consumes the inputs. A participant without a frame this tick contributes silence.

use crate::{FRAME_SAMPLES, Frame};

#[derive(Debug, Clone)]
struct Participant<Id> {
    id: Id,
    muted: bool,
    /// This tick's audio, valid when `has_input`; the buffers are reused every tick.
    input: Box<Frame>,
    has_input: bool,
    output: Box<Frame>,
}

impl<Id> Participant<Id> {
    /// The frame that went into the total this tick, if any.
    fn contribution(&self) -> Option<&Frame> {
        (self.has_input && !self.muted).then_some(&*self.input)
    }
}

/// The mixer; `Id` is whatever the caller keys participants by (a leg or channel id).
///
/// Participants live in a vector and are found by linear search: a conference has tens of
/// members, where a scan beats hashing.
#[derive(Debug, Clone)]
pub struct Mixer<Id> {
    participants: Vec<Participant<Id>>,
    total: Box<[i32; FRAME_SAMPLES]>,
}

impl<Id: Copy + Eq> Mixer<Id> {
    /// An empty conference.
    pub fn new() -> Self {
        Self {
            participants: Vec::new(),
            total: Box::new([0; FRAME_SAMPLES]),
        }
    }

    /// Adds a participant, unmuted. Returns false (and changes nothing) if `id` is already in.
    pub fn add(&mut self, id: Id) -> bool {
        if self.contains(id) {
            return false;
        }
        self.participants.push(Participant {
            id,
            muted: false,
            input: Box::new([0; FRAME_SAMPLES]),
            has_input: false,
            output: Box::new([0; FRAME_SAMPLES]),
        });
        true
    }

    /// Removes a participant. Returns false if `id` was not in.
    pub fn remove(&mut self, id: Id) -> bool {
        let before = self.participants.len();
        self.participants.retain(|p| p.id != id);
        self.participants.len() != before
    }

    /// Mutes or unmutes a participant. Returns false if `id` is not in.
    pub fn set_muted(&mut self, id: Id, muted: bool) -> bool {
        self.find_mut(id).map(|p| p.muted = muted).is_some()
    }

    /// Whether a participant is muted, or `None` if `id` is not in.
    pub fn is_muted(&self, id: Id) -> Option<bool> {
        self.participants
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.muted)
    }

    /// Whether `id` is a participant.
    pub fn contains(&self, id: Id) -> bool {
        self.participants.iter().any(|p| p.id == id)
    }

    /// Number of participants.
    pub fn len(&self) -> usize {
        self.participants.len()
    }

    /// Whether there are no participants.
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    /// Gives a participant's audio for this tick (replacing any given earlier in the tick).
    /// Returns false if `id` is not in.
    pub fn put_frame(&mut self, id: Id, frame: &Frame) -> bool {
        match self.find_mut(id) {
            Some(participant) => {
                *participant.input = *frame;
                participant.has_input = true;
                true
            }
            None => false,
        }
    }

    /// Mixes this tick: each participant's output is the sum of all other unmuted participants'
    /// frames, saturated to 16 bits. The inputs are consumed; the next tick starts silent.
    pub fn mix(&mut self) -> impl ExactSizeIterator<Item = (Id, &Frame)> + '_ {
        self.total.fill(0);
        for participant in &self.participants {
            if let Some(input) = participant.contribution() {
                for (sum, &sample) in self.total.iter_mut().zip(input) {
                    *sum += i32::from(sample);
                }
            }
        }
        for participant in &mut self.participants {
            let Participant {
                muted,
                input,
                has_input,
                output,
                ..
            } = participant;
            // Only what went into the total comes back out of it.
            if *has_input && !*muted {
                for ((out, &sum), &mine) in output.iter_mut().zip(&*self.total).zip(&**input) {
                    *out = saturate(sum - i32::from(mine));
                }
            } else {
                for (out, &sum) in output.iter_mut().zip(&*self.total) {
                    *out = saturate(sum);
                }
            }
            *has_input = false;
        }
        self.participants.iter().map(|p| (p.id, &*p.output))
    }

    fn find_mut(&mut self, id: Id) -> Option<&mut Participant<Id>> {
        self.participants.iter_mut().find(|p| p.id == id)
    }
}

fn saturate(sum: i32) -> i16 {
    sum.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

impl<Id: Copy + Eq> Default for Mixer<Id> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

    use std::collections::HashMap;

    use super::*;
    use crate::SAMPLE_RATE_HZ;
    use crate::tone::{ToneGenerator, goertzel};

    fn mix(mixer: &mut Mixer<u32>) -> HashMap<u32, Frame> {
        mixer.mix().map(|(id, frame)| (id, *frame)).collect()
    }

    fn constant(value: i16) -> Frame {
        [value; FRAME_SAMPLES]
    }

    #[test]
    fn membership_is_by_id() {
        let mut mixer = Mixer::new();
        assert!(mixer.is_empty());
        assert!(mixer.add(1));
        assert!(!mixer.add(1), "already in");
        assert!(mixer.add(2));
        assert_eq!(mixer.len(), 2);
        assert!(mixer.contains(2));
        assert!(mixer.remove(1));
        assert!(!mixer.remove(1));
        assert!(!mixer.contains(1));
        assert!(!mixer.put_frame(1, &constant(5)), "not a participant");
        assert!(!mixer.set_muted(1, true));
        assert_eq!(mixer.is_muted(1), None);
        assert_eq!(mixer.is_muted(2), Some(false));
    }

    #[test]
    fn nobody_hears_themselves() {
        let mut mixer = Mixer::new();
        for id in 1..=3 {
            mixer.add(id);
        }
        mixer.put_frame(1, &constant(100));
        mixer.put_frame(2, &constant(20));
        mixer.put_frame(3, &constant(3));
        let out = mix(&mut mixer);
        assert_eq!(out[&1], constant(23));
        assert_eq!(out[&2], constant(103));
        assert_eq!(out[&3], constant(120));
    }

    #[test]
    fn alone_in_a_conference_is_silence() {
        let mut mixer = Mixer::new();
        mixer.add(7);
        mixer.put_frame(7, &constant(12_345));
        assert_eq!(mix(&mut mixer)[&7], constant(0));
    }

    #[test]
    fn missing_frames_are_silence_and_inputs_do_not_carry_over() {
        let mut mixer = Mixer::new();
        mixer.add(1);
        mixer.add(2);
        mixer.put_frame(1, &constant(50));
        let out = mix(&mut mixer);
        assert_eq!(out[&2], constant(50));
        assert_eq!(out[&1], constant(0));
        // Next tick nobody speaks.
        let out = mix(&mut mixer);
        assert_eq!(out[&2], constant(0));
    }

    #[test]
    fn a_later_frame_in_the_same_tick_replaces_the_earlier() {
        let mut mixer = Mixer::new();
        mixer.add(1);
        mixer.add(2);
        mixer.put_frame(1, &constant(50));
        mixer.put_frame(1, &constant(-7));
        assert_eq!(mix(&mut mixer)[&2], constant(-7));
    }

    #[test]
    fn muted_participants_are_not_heard_but_still_hear() {
        let mut mixer = Mixer::new();
        for id in 1..=3 {
            mixer.add(id);
        }
        assert!(mixer.set_muted(2, true));
        assert_eq!(mixer.is_muted(2), Some(true));
        mixer.put_frame(1, &constant(100));
        mixer.put_frame(2, &constant(20));
        mixer.put_frame(3, &constant(3));
        let out = mix(&mut mixer);
        assert_eq!(out[&1], constant(3));
        assert_eq!(out[&2], constant(103));
        assert_eq!(out[&3], constant(100));

        mixer.set_muted(2, false);
        mixer.put_frame(2, &constant(20));
        assert_eq!(mix(&mut mixer)[&1], constant(20));
    }

    #[test]
    fn sums_saturate_instead_of_wrapping() {
        let mut mixer = Mixer::new();
        for id in 0..5 {
            mixer.add(id);
            mixer.put_frame(id, &constant(i16::MAX));
        }
        mixer.add(99);
        let out = mix(&mut mixer);
        assert_eq!(out[&99], constant(i16::MAX));
        assert_eq!(out[&0], constant(i16::MAX));

        for id in 0..5 {
            mixer.put_frame(id, &constant(i16::MIN));
        }
        let out = mix(&mut mixer);
        assert_eq!(out[&99], constant(i16::MIN));
        // The total is kept in 32 bits, so taking your own frame back out is exact.
        mixer.put_frame(0, &constant(i16::MAX));
        mixer.put_frame(1, &constant(i16::MIN));
        let out = mix(&mut mixer);
        assert_eq!(out[&0], constant(i16::MIN));
        assert_eq!(out[&1], constant(i16::MAX));
        assert_eq!(out[&99], constant(-1));
    }

    #[test]
    fn removing_a_participant_removes_their_output_and_audio() {
        let mut mixer = Mixer::new();
        for id in 1..=3 {
            mixer.add(id);
            mixer.put_frame(id, &constant(10));
        }
        mixer.remove(2);
        let out = mix(&mut mixer);
        assert_eq!(out.len(), 2);
        assert_eq!(out[&1], constant(10));
    }

    #[test]
    fn three_tones_each_participant_hears_the_other_two() {
        let tones = [(1u32, 440.0f32), (2, 660.0), (3, 880.0)];
        let mut generators: Vec<_> = tones
            .iter()
            .map(|&(_, f)| ToneGenerator::new(f, 8000, SAMPLE_RATE_HZ).unwrap())
            .collect();
        let mut mixer = Mixer::new();
        for &(id, _) in &tones {
            mixer.add(id);
        }
        // Several ticks, so phase continuity and input clearing are exercised too.
        for _ in 0..5 {
            for (generator, &(id, _)) in generators.iter_mut().zip(&tones) {
                let mut frame = [0; FRAME_SAMPLES];
                generator.fill(&mut frame);
                assert!(mixer.put_frame(id, &frame));
            }
            let out = mix(&mut mixer);
            for &(id, own) in &tones {
                let heard = &out[&id];
                for &(_, other) in tones.iter().filter(|&&(other_id, _)| other_id != id) {
                    let share = goertzel(heard, other, SAMPLE_RATE_HZ);
                    assert!(share > 0.4, "{id} should hear {other} Hz: {share}");
                }
                let echo = goertzel(heard, own, SAMPLE_RATE_HZ);
                assert!(echo < 0.02, "{id} hears itself at {own} Hz: {echo}");
            }
        }
    }

    #[test]
    fn works_with_non_integer_ids() {
        let mut mixer: Mixer<(u8, char)> = Mixer::default();
        mixer.add((1, 'a'));
        mixer.add((1, 'b'));
        mixer.put_frame((1, 'a'), &constant(9));
        let out: Vec<_> = mixer.mix().map(|(id, f)| (id, f[0])).collect();
        assert_eq!(out, vec![((1, 'a'), 0), ((1, 'b'), 9)]);
    }
}
