//! The PBX's media engine for its own voice applications: conferences, call recording,
//! voicemail and IVR.
//!
//! It is sans-IO. Nothing here opens a socket, spawns a task or reads a clock: the relay's tokio
//! tasks receive datagrams and hand in the bytes, tick a 20 ms timer and call the mixer and the
//! jitter buffers on each tick, and send or store whatever comes back. Time enters only as RTP
//! timestamps and sequence numbers carried in the packets, or as a tick the caller counts, so
//! every behaviour here is tested with synthetic audio and no waiting.
//!
//! - [`g711`]: µ-law and A-law companding (PCMU/PCMA).
//! - [`g722`]: the G.722 wideband codec (16 kHz PCM at 64 kbit/s).
//! - [`rtp`]: RFC 3550 packet parsing and writing.
//! - [`dtmf`]: RFC 4733 telephone-events: the payload, a receiver and a sender.
//! - [`jitter`]: a fixed-depth jitter buffer feeding the mixer and recorder.
//! - [`mixer`]: an N-party conference mixer.
//! - [`recorder`]: a two-party call recorder (stereo, one party per channel) in segments.
//! - [`wav`]: recording writer and validating prompt reader.
//! - [`tone`]: tone generation and Goertzel detection.
//!
//! Audio inside the engine is 16-bit linear PCM at 8 kHz in 20 ms frames; G.722 works on 16 kHz
//! samples and converts at the edge.
#![forbid(unsafe_code)]

pub mod dtmf;
pub mod g711;
pub mod g722;
pub mod jitter;
pub mod mixer;
pub mod recorder;
pub mod resample;
pub mod rtp;
pub mod tone;
pub mod wav;

/// Sample rate of the engine's narrowband audio.
pub const SAMPLE_RATE_HZ: u32 = 8_000;
/// Samples in one 20 ms frame at [`SAMPLE_RATE_HZ`].
pub const FRAME_SAMPLES: usize = 160;
/// One 20 ms frame of narrowband audio.
pub type Frame = [i16; FRAME_SAMPLES];
