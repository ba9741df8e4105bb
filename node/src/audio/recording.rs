//! Recording a call: the relay's copy of each side's RTP goes through a [`CallRecorder`] on a 20 ms
//! tick, and every `segment` of call time becomes one file of the audio store (kind `recording`,
//! linked to the call by its id), saved in the background while the next segment fills.
//!
//! Segments bound what a failover can lose: the node that dies takes with it only the segment it
//! was filling. The node that carries the call on starts a new recording, so the call's segments,
//! in order of their start, cover it except that gap.

use std::sync::Arc;
use std::time::Duration;

use pbx_media::recorder::CallRecorder;
use storage::audio::AudioKind;
use tokio::sync::mpsc;

use super::{AudioStore, NewAudio};
use crate::media::Tapped;
use crate::time::now_millis;

/// What a recording is of.
#[derive(Debug, Clone)]
pub(crate) struct Recording {
    pub(crate) call_id: String,
    /// The extension whose policy asked for it: the files count against its quota.
    pub(crate) owner: String,
    /// `[caller, callee]`, for the files' names.
    pub(crate) parties: [String; 2],
    pub(crate) segment: Duration,
    pub(crate) retention: Option<Duration>,
}

/// Records until `packets` ends (the recording stopped, or the call's media went away), then
/// saves what is left.
pub(crate) async fn run(
    store: Arc<AudioStore>,
    mut packets: mpsc::Receiver<Tapped>,
    what: Recording,
) {
    let mut recorder = CallRecorder::new();
    let ticks_per_segment = (what.segment.as_millis() / 20).max(1) as usize;
    // The first segment ends somewhere in the second half of its length: calls answered together
    // (a busy hour, a load test) then save their segments spread out rather than all at once.
    let mut segment_ticks = ticks_per_segment / 2
        + rand::Rng::gen_range(&mut rand::thread_rng(), 0..ticks_per_segment.div_ceil(2));
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    // A late wake-up writes the ticks it missed: the recording keeps the call's time.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut started = now_millis();
    tracing::info!(call = %what.call_id, extension = %what.owner, "recording started");
    loop {
        tokio::select! {
            biased;
            packet = packets.recv() => match packet {
                Some(t) => {
                    recorder.push(t.side, &t.packet);
                }
                None => break,
            },
            _ = tick.tick() => {
                recorder.tick();
                if recorder.ticks() >= segment_ticks {
                    save(&store, &mut recorder, &what, started);
                    started = now_millis();
                    segment_ticks = ticks_per_segment;
                }
            }
        }
    }
    if recorder.ticks() > 0 {
        save(&store, &mut recorder, &what, started);
    }
    let stats = recorder.stats();
    tracing::info!(call = %what.call_id, packets = ?stats.packets, skipped = ?stats.skipped, "recording ended");
}

/// Saves the segment recorded so far (which started at wall-clock `started`), in the background.
fn save(store: &Arc<AudioStore>, recorder: &mut CallRecorder, what: &Recording, started: u64) {
    let seconds = recorder.seconds();
    let bytes = match recorder.take_segment() {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(call = %what.call_id, error = %e, "recording segment not written");
            metrics::counter!("pbx_recording_segments_total", "result" => "failed").increment(1);
            return;
        }
    };
    let new = NewAudio {
        kind: AudioKind::Recording,
        owner: what.owner.clone(),
        name: format!(
            "{} to {}, from {started} for {seconds:.1} s",
            what.parties[0], what.parties[1]
        ),
        call_id: Some(what.call_id.clone()),
        retain_until: what
            .retention
            .map(|r| now_millis().saturating_add(r.as_millis() as u64)),
    };
    let (store, call_id) = (Arc::clone(store), what.call_id.clone());
    tokio::spawn(async move {
        match store.save(new, &bytes).await {
            Ok(file) => {
                metrics::counter!("pbx_recording_segments_total", "result" => "saved").increment(1);
                tracing::info!(call = %call_id, audio = %file.id, seconds, "recording segment saved");
            }
            Err(e) => {
                metrics::counter!("pbx_recording_segments_total", "result" => "failed")
                    .increment(1);
                tracing::warn!(call = %call_id, error = %e, "recording segment not saved");
            }
        }
    });
}
