//! ITU-T G.711 companding: µ-law (PCMU, North America/Japan) and A-law (PCMA, elsewhere).
//!
//! Encoding is computed per sample (a handful of integer operations); decoding is a lookup in a
//! 256-entry table built at compile time, since every decoded frame touches it 160 times.

/// Which G.711 law a stream uses; the two static RTP payload types of RFC 3551.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// µ-law, RTP payload type 0 (PCMU).
    Ulaw,
    /// A-law, RTP payload type 8 (PCMA).
    Alaw,
}

impl Law {
    /// The static RTP payload type (RFC 3551 table 4).
    pub const fn payload_type(self) -> u8 {
        match self {
            Self::Ulaw => 0,
            Self::Alaw => 8,
        }
    }

    /// The law carried by a static payload type, if it is one of the two.
    pub const fn from_payload_type(payload_type: u8) -> Option<Self> {
        match payload_type {
            0 => Some(Self::Ulaw),
            8 => Some(Self::Alaw),
            _ => None,
        }
    }

    /// Encodes one linear sample.
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Self::Ulaw => ulaw_encode(sample),
            Self::Alaw => alaw_encode(sample),
        }
    }

    /// Decodes one companded byte.
    pub fn decode(self, byte: u8) -> i16 {
        match self {
            Self::Ulaw => ulaw_decode(byte),
            Self::Alaw => alaw_decode(byte),
        }
    }

    /// Appends the encoding of `pcm` to `out` (one byte per sample).
    pub fn encode_into(self, pcm: &[i16], out: &mut Vec<u8>) {
        out.extend(pcm.iter().map(|&s| self.encode(s)));
    }

    /// Appends the decoding of `bytes` to `out` (one sample per byte).
    pub fn decode_into(self, bytes: &[u8], out: &mut Vec<i16>) {
        out.extend(bytes.iter().map(|&b| self.decode(b)));
    }
}

/// µ-law adds this bias before finding the segment so that the segments line up on powers of two.
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude µ-law can represent once the bias is added (keeps the sum within 15 bits).
const ULAW_CLIP: i32 = 32_635;

/// Encodes a 16-bit linear sample to µ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    let value = i32::from(sample);
    let (sign, magnitude) = if value < 0 {
        (0x80, -value)
    } else {
        (0x00, value)
    };
    let biased = magnitude.min(ULAW_CLIP) + ULAW_BIAS;
    // `biased >> 7` lies in 1..=255, so its highest set bit (0..=7) is the segment.
    let exponent = ((biased >> 7) as u32).checked_ilog2().unwrap_or(0);
    let mantissa = (biased >> (exponent + 3)) & 0x0F;
    // Every bit is inverted on the wire so that silence is not a long run of zeros.
    !((sign | (exponent << 4) as i32 | mantissa) as u8)
}

/// Decodes a µ-law byte to a 16-bit linear sample.
pub fn ulaw_decode(byte: u8) -> i16 {
    ULAW_TABLE[usize::from(byte)]
}

const fn ulaw_decode_computed(byte: u8) -> i16 {
    let inverted = !byte;
    let exponent = (inverted >> 4) & 0x07;
    let mantissa = (inverted & 0x0F) as i32;
    // The decoded value is the middle of the quantisation interval the encoder chose.
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if inverted & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const ULAW_TABLE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_decode_computed(i as u8);
        i += 1;
    }
    table
};

/// Encodes a 16-bit linear sample to A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    // A-law quantises 13 bits; the low three bits of the input never matter.
    let value = i32::from(sample) >> 3;
    // Even bits are inverted on the wire (0x55); the sign bit is set for positive values.
    let (mask, magnitude) = if value >= 0 {
        (0xD5, value)
    } else {
        (0x55, -value - 1)
    };
    // Segment 0 and 1 share a step size; from segment 1 up each doubles the range.
    let segment = if magnitude < 0x20 {
        0
    } else {
        (magnitude as u32 >> 4).checked_ilog2().unwrap_or(0)
    };
    let mantissa = if segment < 2 {
        (magnitude >> 1) & 0x0F
    } else {
        (magnitude >> segment) & 0x0F
    };
    ((segment << 4) as i32 | mantissa) as u8 ^ mask
}

/// Decodes an A-law byte to a 16-bit linear sample.
pub fn alaw_decode(byte: u8) -> i16 {
    ALAW_TABLE[usize::from(byte)]
}

const fn alaw_decode_computed(byte: u8) -> i16 {
    let value = byte ^ 0x55;
    let mantissa = ((value & 0x0F) as i32) << 4;
    let segment = (value >> 4) & 0x07;
    // Adding half a step (8, or 0x108 with the implicit leading bit) puts the result mid-interval.
    let magnitude = match segment {
        0 => mantissa + 8,
        1 => mantissa + 0x108,
        _ => (mantissa + 0x108) << (segment - 1),
    };
    if value & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const ALAW_TABLE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_decode_computed(i as u8);
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    fn all_samples() -> impl Iterator<Item = i16> {
        i16::MIN..=i16::MAX
    }

    #[test]
    fn ulaw_zero_has_two_codes_that_both_decode_to_zero() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(-1), 0x7F);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
    }

    #[test]
    fn alaw_near_zero_codes() {
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
    }

    #[test]
    fn ulaw_extremes_match_the_reference_tables() {
        // Values from the classic Sun/CCITT reference decode table.
        assert_eq!(ulaw_decode(0x00), -32_124);
        assert_eq!(ulaw_decode(0x80), 32_124);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_decode(0x0F), -16_764);
    }

    #[test]
    fn alaw_extremes_match_the_reference_tables() {
        assert_eq!(alaw_decode(0xAA), 32_256);
        assert_eq!(alaw_decode(0x2A), -32_256);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    #[test]
    fn ulaw_round_trip_stays_within_half_a_step() {
        for x in all_samples() {
            let magnitude = i32::from(x).abs();
            let err = (i32::from(ulaw_decode(ulaw_encode(x))) - i32::from(x)).abs();
            let bound = if magnitude > ULAW_CLIP {
                // Clipped: the largest code is 32124.
                magnitude - 32_124 + 1
            } else {
                (magnitude + ULAW_BIAS) / 32 + 1
            };
            assert!(err <= bound, "x={x} err={err} bound={bound}");
        }
    }

    #[test]
    fn alaw_round_trip_stays_within_half_a_step() {
        for x in all_samples() {
            let magnitude = i32::from(x).abs();
            let err = (i32::from(alaw_decode(alaw_encode(x))) - i32::from(x)).abs();
            let bound = if magnitude >= 32_256 {
                // The top interval's midpoint is 32256; its upper edge is the i16 limit.
                magnitude - 32_256 + 1
            } else {
                magnitude / 32 + 16
            };
            assert!(err <= bound, "x={x} err={err} bound={bound}");
        }
    }

    #[test]
    fn codes_are_stable_under_re_encoding() {
        for byte in 0..=255u8 {
            let u = ulaw_decode(byte);
            let a = alaw_decode(byte);
            // 0x7F and 0xFF both mean zero in µ-law; zero re-encodes as 0xFF.
            let expected_u = if byte == 0x7F { 0xFF } else { byte };
            assert_eq!(ulaw_encode(u), expected_u, "µ-law byte {byte:#04x}");
            assert_eq!(alaw_encode(a), byte, "A-law byte {byte:#04x}");
        }
    }

    #[test]
    fn round_trips_are_monotonic() {
        for law in [Law::Ulaw, Law::Alaw] {
            let mut previous = i16::MIN;
            for x in all_samples() {
                let y = law.decode(law.encode(x));
                assert!(y >= previous, "{law:?}: x={x} gave {y} after {previous}");
                previous = y;
            }
        }
    }

    #[test]
    fn round_trips_are_odd_symmetric() {
        for x in 0..=i16::MAX {
            assert_eq!(
                ulaw_decode(ulaw_encode(x)),
                -ulaw_decode(ulaw_encode(-x)),
                "{x}"
            );
            // A-law's negative side is shifted by one: -1 shares a code magnitude with 0.
            assert_eq!(
                alaw_decode(alaw_encode(x)),
                -alaw_decode(alaw_encode(!x)),
                "{x}"
            );
        }
    }

    #[test]
    fn decode_tables_match_the_computed_form() {
        for byte in 0..=255u8 {
            assert_eq!(ulaw_decode(byte), ulaw_decode_computed(byte));
            assert_eq!(alaw_decode(byte), alaw_decode_computed(byte));
        }
    }

    #[test]
    fn law_maps_payload_types_and_frames() {
        assert_eq!(Law::from_payload_type(0), Some(Law::Ulaw));
        assert_eq!(Law::from_payload_type(8), Some(Law::Alaw));
        assert_eq!(Law::from_payload_type(9), None);
        assert_eq!(Law::from_payload_type(255), None);
        assert_eq!(Law::Ulaw.payload_type(), 0);
        assert_eq!(Law::Alaw.payload_type(), 8);

        let pcm: Vec<i16> = (0..160).map(|i| (i * 200 - 16_000) as i16).collect();
        for law in [Law::Ulaw, Law::Alaw] {
            let mut bytes = vec![0xAB];
            law.encode_into(&pcm, &mut bytes);
            assert_eq!(bytes.len(), 161, "appends, keeps what was there");
            assert_eq!(bytes[0], 0xAB);
            let mut back = Vec::new();
            law.decode_into(&bytes[1..], &mut back);
            assert_eq!(back.len(), 160);
            for (x, y) in pcm.iter().zip(&back) {
                assert!((i32::from(*x) - i32::from(*y)).abs() <= 16_000 / 32 + 16);
            }
        }
    }
}
