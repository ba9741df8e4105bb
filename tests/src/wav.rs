//! WAV files for upload tests.

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
