//! WAV files: made for upload tests, and read to tell which tones a recording holds.

use pbx_media::tone::goertzel;

/// A WAV file of PCM at `rate` Hz (`channels`, 8 or 16 `bits`), `secs` seconds of a 440 Hz tone.
pub fn tone(rate: u32, channels: u16, bits: u16, secs: u32) -> Vec<u8> {
    let frames = rate * secs;
    let bytes_per_sample = u32::from(bits / 8);
    let data_len = frames * u32::from(channels) * bytes_per_sample;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * u32::from(channels) * bytes_per_sample).to_le_bytes());
    out.extend_from_slice(&(channels * bits / 8).to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for n in 0..frames {
        let t = f64::from(n) / f64::from(rate);
        let s = (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
        for _ in 0..channels {
            if bits == 16 {
                out.extend_from_slice(&s.to_le_bytes());
            } else {
                out.push((s >> 8) as u8 ^ 0x80);
            }
        }
    }
    out
}

/// A 16-bit PCM WAV as read: its sample rate and each channel's samples.
#[derive(Debug, Clone)]
pub struct Pcm {
    /// Samples a second, per channel.
    pub rate: u32,
    /// The samples of each channel, de-interleaved.
    pub channels: Vec<Vec<i16>>,
}

/// Reads a 16-bit PCM WAV; `None` for anything else. A recording whose writer has not yet written
/// the data's length (it is still recording) is read to the end of the file.
pub fn read(wav: &[u8]) -> Option<Pcm> {
    if wav.get(..4)? != b"RIFF" || wav.get(8..12)? != b"WAVE" {
        return None;
    }
    let (mut at, mut format) = (12, None);
    while at + 8 <= wav.len() {
        let size = u32::from_le_bytes(wav[at + 4..at + 8].try_into().ok()?) as usize;
        let body = at + 8;
        match &wav[at..at + 4] {
            b"fmt " => {
                let f = wav.get(body..body + 16)?;
                let channels = usize::from(u16::from_le_bytes([f[2], f[3]]));
                let rate = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
                let bits = u16::from_le_bytes([f[14], f[15]]);
                if bits != 16 || channels == 0 || rate == 0 {
                    return None;
                }
                format = Some((rate, channels));
            }
            b"data" => {
                let (rate, n) = format?;
                let end = body.saturating_add(size);
                let end = if size == 0 || end > wav.len() {
                    wav.len()
                } else {
                    end
                };
                let mut channels = vec![Vec::new(); n];
                for (i, s) in wav[body..end].chunks_exact(2).enumerate() {
                    channels[i % n].push(i16::from_le_bytes([s[0], s[1]]));
                }
                return Some(Pcm { rate, channels });
            }
            _ => {}
        }
        at = body.saturating_add(size + size % 2);
    }
    None
}

impl Pcm {
    /// For each 20 ms frame of `channel` that sounds (a sample above 500), the share of its energy
    /// at each of `freqs` (Goertzel: about 1 for a pure tone, about 0.5 for each of two equal ones,
    /// near 0 for an absent one).
    pub fn shares(&self, channel: usize, freqs: &[f32]) -> Vec<Vec<f32>> {
        let frame = (self.rate / 50) as usize;
        let Some(samples) = self.channels.get(channel).filter(|_| frame > 0) else {
            return Vec::new();
        };
        samples
            .chunks_exact(frame)
            .filter(|f| f.iter().any(|s| s.unsigned_abs() > 500))
            .map(|f| freqs.iter().map(|&hz| goertzel(f, hz, self.rate)).collect())
            .collect()
    }

    /// Seconds of `channel` in which `freq` carries at least `share` of a sounding 20 ms frame's
    /// energy.
    pub fn seconds_of(&self, channel: usize, freq: f32, share: f32) -> f64 {
        let frames = self.shares(channel, &[freq]);
        frames.iter().filter(|s| s[0] >= share).count() as f64 * 0.02
    }

    /// Seconds of sound (20 ms frames with a sample above 500) in `channel`.
    pub fn sounding_seconds(&self, channel: usize) -> f64 {
        self.shares(channel, &[]).len() as f64 * 0.02
    }
}
