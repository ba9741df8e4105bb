//! CPU cost of the media engine's per-call work, single-threaded: recording a two-party G.711 call
//! (two packets in, one stereo tick out, per 20 ms; segment encoding included) and mixing a
//! conference (one 20 ms tick for N participants), alone and as a room does it (each member's packet
//! through its jitter buffer and G.711 decoder, the mix, each member's mix encoded into an RTP
//! packet; the sockets left out). Turned into calls (or participants) one core can carry in real
//! time: 20 ms divided by the cost per tick.
//! Run: `cargo bench --workspace --bench engine [-- SECONDS_OF_AUDIO]`; figures go in BENCHMARKS.md.

use std::time::Instant;

use pbx_media::g711::Law;
use pbx_media::jitter::{JitterBuffer, JitterConfig};
use pbx_media::mixer::Mixer;
use pbx_media::recorder::{CALLEE, CALLER, CallRecorder};
use pbx_media::rtp::{RtpHeader, RtpPacket};
use pbx_media::tone::ToneGenerator;
use pbx_media::{FRAME_SAMPLES, Frame};

fn packets(freq: f32, ticks: usize, ssrc: u32) -> Vec<Vec<u8>> {
    let mut tone = ToneGenerator::new(freq, 8000, 8000).expect("tone");
    (0..ticks)
        .map(|n| {
            let mut pcm = [0i16; FRAME_SAMPLES];
            tone.fill(&mut pcm);
            let mut payload = Vec::new();
            Law::Ulaw.encode_into(&pcm, &mut payload);
            let header = RtpHeader {
                marker: false,
                payload_type: 0,
                sequence: n as u16,
                timestamp: (n * FRAME_SAMPLES) as u32,
                ssrc,
            };
            let mut out = Vec::new();
            header.write(&payload, &mut out).expect("packet");
            out
        })
        .collect()
}

fn main() {
    let secs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(600);
    let ticks = secs * 50;

    // Recording: a call of `secs` seconds in 60 s segments.
    let (a, b) = (packets(440.0, ticks, 1), packets(660.0, ticks, 2));
    let started = Instant::now();
    let mut rec = CallRecorder::new();
    let mut bytes = 0;
    for n in 0..ticks {
        rec.push(CALLER, &a[n]);
        rec.push(CALLEE, &b[n]);
        rec.tick();
        if rec.ticks() == 3000 {
            bytes += rec.take_segment().expect("segment").len();
        }
    }
    bytes += rec.take_segment().expect("segment").len();
    let per_tick = started.elapsed().as_secs_f64() / ticks as f64;
    println!(
        "recording: {secs} s of a G.711 call in {:.3} s: {:.2} µs per 20 ms tick, {:.0} recorded calls per core ({} MiB written)",
        started.elapsed().as_secs_f64(),
        per_tick * 1e6,
        0.020 / per_tick,
        bytes / (1024 * 1024)
    );

    // Mixing: one tick of N participants, each talking.
    for n in [3usize, 10, 50] {
        let mut mixer = Mixer::new();
        // Each participant's frame is made once: what is timed is the mixer alone.
        let frames: Vec<Frame> = (0..n)
            .map(|i| {
                let mut frame: Frame = [0; FRAME_SAMPLES];
                ToneGenerator::new(300.0 + 20.0 * i as f32, 6000, 8000)
                    .expect("tone")
                    .fill(&mut frame);
                frame
            })
            .collect();
        for id in 0..n {
            mixer.add(id);
        }
        let rounds = 20_000 / n.max(1) * 10;
        let started = Instant::now();
        let mut sink = 0i64;
        for _ in 0..rounds {
            for (id, frame) in frames.iter().enumerate() {
                mixer.put_frame(id, frame);
            }
            for (_, out) in mixer.mix() {
                sink += i64::from(out[0]);
            }
        }
        let per_tick = started.elapsed().as_secs_f64() / rounds as f64;
        let per_participant = per_tick / n as f64;
        println!(
            "mixing: {n} participants: {:.2} µs per 20 ms tick ({:.3} µs per participant), {:.0} participants per core [{}]",
            per_tick * 1e6,
            per_participant * 1e6,
            0.020 / per_participant,
            sink % 2
        );
    }

    // A room's tick as `node/src/apps/conference.rs` does it, sockets aside: per member, its
    // packet into its jitter buffer, one frame out and decoded; the mix; per member, its mix
    // encoded and written as an RTP packet.
    for n in [3usize, 10, 50] {
        let ticks = 3000;
        let streams: Vec<Vec<Vec<u8>>> = (0..n)
            .map(|i| packets(300.0 + 20.0 * i as f32, ticks, i as u32 + 1))
            .collect();
        // By tick: every member's packet of that tick.
        let by_tick: Vec<Vec<&[u8]>> = (0..ticks)
            .map(|t| streams.iter().map(|s| s[t].as_slice()).collect())
            .collect();
        let mut mixer = Mixer::new();
        let mut jitters: Vec<JitterBuffer> = (0..n)
            .map(|id| {
                mixer.add(id);
                JitterBuffer::new(JitterConfig::default())
            })
            .collect();
        let mut pcm = Vec::with_capacity(FRAME_SAMPLES);
        let mut payload = Vec::with_capacity(FRAME_SAMPLES);
        let mut out = Vec::with_capacity(12 + FRAME_SAMPLES);
        let mut sent = 0usize;
        let started = Instant::now();
        for (t, tick) in by_tick.iter().enumerate() {
            for (id, (jitter, packet)) in jitters.iter_mut().zip(tick).enumerate() {
                let p = RtpPacket::parse(packet).expect("packet");
                let h = p.header;
                let _ = jitter.push(h.ssrc, h.sequence, h.timestamp, p.payload);
                if let Some(f) = jitter.pop() {
                    pcm.clear();
                    Law::Ulaw.decode_into(&f.payload, &mut pcm);
                    let mut frame: Frame = [0; FRAME_SAMPLES];
                    frame.copy_from_slice(&pcm[..FRAME_SAMPLES]);
                    mixer.put_frame(id, &frame);
                }
            }
            for (id, mixed) in mixer.mix() {
                payload.clear();
                Law::Ulaw.encode_into(mixed, &mut payload);
                let header = RtpHeader {
                    marker: false,
                    payload_type: 0,
                    sequence: t as u16,
                    timestamp: (t * FRAME_SAMPLES) as u32,
                    ssrc: id as u32,
                };
                out.clear();
                header.write(&payload, &mut out).expect("packet");
                sent += out.len();
            }
        }
        let per_tick = started.elapsed().as_secs_f64() / ticks as f64;
        let per_participant = per_tick / n as f64;
        println!(
            "room: {n} participants: {:.2} µs per 20 ms tick ({:.3} µs per participant: jitter, decode, mix, encode, RTP), {:.0} participants per core before sockets [{}]",
            per_tick * 1e6,
            per_participant * 1e6,
            0.020 / per_participant,
            sent % 2
        );
    }
}
