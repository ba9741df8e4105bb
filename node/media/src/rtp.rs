//! RFC 3550 RTP packets: a bounds-checked borrowed view for parsing, and a header writer.
//!
//! The view never copies the payload: mixing and recording read straight out of the receive
//! buffer. Every length in the header (CSRC count, extension length, padding count) is checked
//! against the buffer before it is used, so arbitrary datagrams are safe to hand in.

use thiserror::Error;

/// The only RTP version in use (RFC 3550 §5.1).
pub const RTP_VERSION: u8 = 2;
/// Size of the fixed header, before CSRCs and extension.
pub const FIXED_HEADER_LEN: usize = 12;

/// Why a datagram is not a usable RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header.
    #[error("RTP packet of {0} bytes is shorter than the 12-byte header")]
    Truncated(usize),
    /// The version field is not 2 (often STUN, DTLS or garbage on the media port).
    #[error("RTP version {0} is not 2")]
    Version(u8),
    /// The CSRC list runs past the end of the packet.
    #[error("RTP CSRC list of {count} entries runs past the end of the packet")]
    CsrcPastEnd {
        /// The CC field.
        count: u8,
    },
    /// The header extension (its 4-byte header or its body) runs past the end of the packet.
    #[error("RTP header extension runs past the end of the packet")]
    ExtensionPastEnd,
    /// The padding bit is set but the count is zero or larger than what follows the header.
    #[error("RTP padding count {0} is invalid")]
    Padding(u8),
    /// A payload type above 127 was given to the writer (the field has 7 bits).
    #[error("RTP payload type {0} does not fit in 7 bits")]
    PayloadType(u8),
    /// More than 15 CSRCs or an extension body that is not a whole number of 32-bit words, or
    /// longer than the 16-bit length field allows, was given to the writer.
    #[error("RTP header field too large to encode")]
    HeaderTooLarge,
}

/// The RTP header fields the media engine acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RtpHeader {
    /// The M bit: start of a talkspurt for audio, start of an event for telephone-event.
    pub marker: bool,
    /// 7-bit payload type.
    pub payload_type: u8,
    /// Sequence number, wraps at 65535.
    pub sequence: u16,
    /// Media timestamp in the payload format's clock.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
}

/// A header extension (RFC 3550 §5.3.1): the profile-defined 16 bits and the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpExtension<'a> {
    /// The "defined by profile" field (0xBEDE for RFC 8285 one-byte headers).
    pub profile: u16,
    /// The extension body; its length is a multiple of four bytes.
    pub data: &'a [u8],
}

/// A parsed RTP packet borrowing the datagram it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// The fixed header fields.
    pub header: RtpHeader,
    csrc: &'a [u8],
    /// The header extension, if the X bit was set.
    pub extension: Option<RtpExtension<'a>>,
    /// The payload, without padding.
    pub payload: &'a [u8],
    /// Number of padding bytes removed from the end (0 if the P bit was clear).
    pub padding: u8,
}

impl<'a> RtpPacket<'a> {
    /// Parses and bounds-checks a datagram.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        let Some((fixed, rest)) = buf.split_first_chunk::<FIXED_HEADER_LEN>() else {
            return Err(RtpError::Truncated(buf.len()));
        };
        let version = fixed[0] >> 6;
        if version != RTP_VERSION {
            return Err(RtpError::Version(version));
        }
        let has_padding = fixed[0] & 0x20 != 0;
        let has_extension = fixed[0] & 0x10 != 0;
        let csrc_count = fixed[0] & 0x0F;
        let header = RtpHeader {
            marker: fixed[1] & 0x80 != 0,
            payload_type: fixed[1] & 0x7F,
            sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
        };

        let csrc_len = usize::from(csrc_count) * 4;
        let (csrc, rest) = rest
            .split_at_checked(csrc_len)
            .ok_or(RtpError::CsrcPastEnd { count: csrc_count })?;

        let (extension, rest) = if has_extension {
            let (ext_header, rest) = rest
                .split_first_chunk::<4>()
                .ok_or(RtpError::ExtensionPastEnd)?;
            let profile = u16::from_be_bytes([ext_header[0], ext_header[1]]);
            let words = usize::from(u16::from_be_bytes([ext_header[2], ext_header[3]]));
            let (data, rest) = rest
                .split_at_checked(words * 4)
                .ok_or(RtpError::ExtensionPastEnd)?;
            (Some(RtpExtension { profile, data }), rest)
        } else {
            (None, rest)
        };

        let (payload, padding) = if has_padding {
            // The count is the last byte and includes itself, so zero is malformed.
            let count = rest.last().copied().ok_or(RtpError::Padding(0))?;
            if count == 0 || usize::from(count) > rest.len() {
                return Err(RtpError::Padding(count));
            }
            (&rest[..rest.len() - usize::from(count)], count)
        } else {
            (rest, 0)
        };

        Ok(Self {
            header,
            csrc,
            extension,
            payload,
            padding,
        })
    }

    /// The contributing sources, in order.
    pub fn csrcs(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.csrc
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

impl RtpHeader {
    /// Appends a packet (this header, no CSRCs, no extension, no padding, then `payload`) to `out`.
    pub fn write(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), RtpError> {
        self.write_with(&[], None, payload, out)
    }

    /// Appends a packet with CSRCs and an optional header extension to `out`.
    ///
    /// The extension body must be a whole number of 32-bit words (RFC 3550 §5.3.1). Nothing is
    /// appended when an error is returned.
    pub fn write_with(
        &self,
        csrcs: &[u32],
        extension: Option<RtpExtension<'_>>,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RtpError> {
        if self.payload_type > 0x7F {
            return Err(RtpError::PayloadType(self.payload_type));
        }
        let csrc_count = u8::try_from(csrcs.len())
            .ok()
            .filter(|&n| n <= 15)
            .ok_or(RtpError::HeaderTooLarge)?;
        let extension_words = match extension {
            Some(ext) if ext.data.len() % 4 != 0 => return Err(RtpError::HeaderTooLarge),
            Some(ext) => {
                Some(u16::try_from(ext.data.len() / 4).map_err(|_| RtpError::HeaderTooLarge)?)
            }
            None => None,
        };

        let extension_len = extension.map_or(0, |ext| 4 + ext.data.len());
        out.reserve(FIXED_HEADER_LEN + csrcs.len() * 4 + extension_len + payload.len());
        let x_bit = if extension.is_some() { 0x10 } else { 0 };
        out.push((RTP_VERSION << 6) | x_bit | csrc_count);
        out.push(if self.marker { 0x80 } else { 0 } | self.payload_type);
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        for csrc in csrcs {
            out.extend_from_slice(&csrc.to_be_bytes());
        }
        if let (Some(ext), Some(words)) = (extension, extension_words) {
            out.extend_from_slice(&ext.profile.to_be_bytes());
            out.extend_from_slice(&words.to_be_bytes());
            out.extend_from_slice(ext.data);
        }
        out.extend_from_slice(payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

    use super::*;

    const HEADER: RtpHeader = RtpHeader {
        marker: true,
        payload_type: 0,
        sequence: 0xBEEF,
        timestamp: 0xDEAD_BEEF,
        ssrc: 0x1234_5678,
    };

    fn packet(header: &RtpHeader, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        header.write(payload, &mut out).unwrap();
        out
    }

    #[test]
    fn round_trips_a_plain_packet() {
        let bytes = packet(&HEADER, &[1, 2, 3, 4, 5]);
        assert_eq!(
            &bytes[..12],
            &[
                0x80, 0x80, 0xBE, 0xEF, 0xDE, 0xAD, 0xBE, 0xEF, 0x12, 0x34, 0x56, 0x78
            ]
        );
        let parsed = RtpPacket::parse(&bytes).unwrap();
        assert_eq!(parsed.header, HEADER);
        assert_eq!(parsed.payload, &[1, 2, 3, 4, 5]);
        assert_eq!(parsed.padding, 0);
        assert_eq!(parsed.csrcs().len(), 0);
        assert_eq!(parsed.extension, None);
    }

    #[test]
    fn header_only_packet_has_empty_payload() {
        let bytes = packet(&HEADER, &[]);
        assert_eq!(bytes.len(), 12);
        assert_eq!(RtpPacket::parse(&bytes).unwrap().payload, &[] as &[u8]);
    }

    #[test]
    fn marker_and_payload_type_share_a_byte() {
        let header = RtpHeader {
            marker: false,
            payload_type: 127,
            ..HEADER
        };
        let bytes = packet(&header, &[]);
        assert_eq!(bytes[1], 0x7F);
        assert_eq!(RtpPacket::parse(&bytes).unwrap().header, header);
    }

    #[test]
    fn writer_appends_to_existing_content() {
        let mut out = vec![9, 9];
        HEADER.write(&[7], &mut out).unwrap();
        assert_eq!(out.len(), 2 + 12 + 1);
        assert_eq!(RtpPacket::parse(&out[2..]).unwrap().payload, &[7]);
    }

    #[test]
    fn round_trips_csrcs_and_extension() {
        let ext = RtpExtension {
            profile: 0xBEDE,
            data: &[0x10, 0xAA, 0, 0, 1, 2, 3, 4],
        };
        let mut bytes = Vec::new();
        HEADER
            .write_with(&[1, 0xFFFF_FFFF], Some(ext), &[42; 160], &mut bytes)
            .unwrap();
        let parsed = RtpPacket::parse(&bytes).unwrap();
        assert_eq!(parsed.header, HEADER);
        assert_eq!(parsed.csrcs().collect::<Vec<_>>(), vec![1, 0xFFFF_FFFF]);
        assert_eq!(parsed.extension, Some(ext));
        assert_eq!(parsed.payload, &[42; 160]);
    }

    #[test]
    fn writer_refuses_what_cannot_be_encoded() {
        let mut out = vec![];
        let bad_pt = RtpHeader {
            payload_type: 128,
            ..HEADER
        };
        assert_eq!(bad_pt.write(&[], &mut out), Err(RtpError::PayloadType(128)));
        assert_eq!(
            HEADER.write_with(&[0; 16], None, &[], &mut out),
            Err(RtpError::HeaderTooLarge)
        );
        let odd = RtpExtension {
            profile: 1,
            data: &[1, 2, 3],
        };
        assert_eq!(
            HEADER.write_with(&[], Some(odd), &[], &mut out),
            Err(RtpError::HeaderTooLarge)
        );
        let huge = vec![0; 4 * 65_536];
        let too_long = RtpExtension {
            profile: 1,
            data: &huge,
        };
        assert_eq!(
            HEADER.write_with(&[], Some(too_long), &[], &mut out),
            Err(RtpError::HeaderTooLarge)
        );
        assert!(out.is_empty(), "nothing written on error");
    }

    #[test]
    fn truncated_headers_are_refused() {
        let bytes = packet(&HEADER, &[]);
        for len in 0..12 {
            assert_eq!(
                RtpPacket::parse(&bytes[..len]),
                Err(RtpError::Truncated(len))
            );
        }
    }

    #[test]
    fn wrong_versions_are_refused() {
        let mut bytes = packet(&HEADER, &[1]);
        for version in [0u8, 1, 3] {
            bytes[0] = (bytes[0] & 0x3F) | (version << 6);
            assert_eq!(RtpPacket::parse(&bytes), Err(RtpError::Version(version)));
        }
        // A STUN binding request starts with 0x00 0x01.
        let stun = [
            0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(RtpPacket::parse(&stun), Err(RtpError::Version(0)));
    }

    #[test]
    fn padding_is_stripped() {
        let mut bytes = packet(&HEADER, &[1, 2, 3, 0, 0, 3]);
        bytes[0] |= 0x20;
        let parsed = RtpPacket::parse(&bytes).unwrap();
        assert_eq!(parsed.payload, &[1, 2, 3]);
        assert_eq!(parsed.padding, 3);

        // Padding may take every byte after the header.
        let mut all_padding = packet(&HEADER, &[0, 0, 0, 4]);
        all_padding[0] |= 0x20;
        let parsed = RtpPacket::parse(&all_padding).unwrap();
        assert!(parsed.payload.is_empty());
        assert_eq!(parsed.padding, 4);
    }

    #[test]
    fn bad_padding_is_refused() {
        // Count zero.
        let mut zero = packet(&HEADER, &[1, 2, 0]);
        zero[0] |= 0x20;
        assert_eq!(RtpPacket::parse(&zero), Err(RtpError::Padding(0)));
        // Count larger than what follows the header.
        let mut long = packet(&HEADER, &[1, 2, 4]);
        long[0] |= 0x20;
        assert_eq!(RtpPacket::parse(&long), Err(RtpError::Padding(4)));
        // Padding bit with nothing after the header.
        let mut empty = packet(&HEADER, &[]);
        empty[0] |= 0x20;
        assert_eq!(RtpPacket::parse(&empty), Err(RtpError::Padding(0)));
        // The count may not reach back into the extension.
        let ext = RtpExtension {
            profile: 1,
            data: &[0; 4],
        };
        let mut bytes = Vec::new();
        HEADER
            .write_with(&[], Some(ext), &[1, 3], &mut bytes)
            .unwrap();
        bytes[0] |= 0x20;
        assert_eq!(RtpPacket::parse(&bytes), Err(RtpError::Padding(3)));
        // ...but may take everything after it.
        let last = bytes.len() - 1;
        bytes[last] = 2;
        let parsed = RtpPacket::parse(&bytes).unwrap();
        assert_eq!(parsed.extension, Some(ext));
        assert!(parsed.payload.is_empty());
    }

    #[test]
    fn csrc_list_past_the_end_is_refused() {
        let mut bytes = packet(&HEADER, &[0; 8]);
        bytes[0] |= 3; // three CSRCs need 12 bytes, 8 follow
        assert_eq!(
            RtpPacket::parse(&bytes),
            Err(RtpError::CsrcPastEnd { count: 3 })
        );
        bytes[0] = (bytes[0] & 0xF0) | 2; // two fit exactly
        let parsed = RtpPacket::parse(&bytes).unwrap();
        assert_eq!(parsed.csrcs().len(), 2);
        assert!(parsed.payload.is_empty());
        // The maximum count with nothing after the header.
        let mut max = packet(&HEADER, &[]);
        max[0] |= 0x0F;
        assert_eq!(
            RtpPacket::parse(&max),
            Err(RtpError::CsrcPastEnd { count: 15 })
        );
    }

    #[test]
    fn extension_past_the_end_is_refused() {
        // X bit with fewer than 4 bytes for the extension header.
        for tail in 0..4 {
            let mut bytes = packet(&HEADER, &vec![0; tail]);
            bytes[0] |= 0x10;
            assert_eq!(RtpPacket::parse(&bytes), Err(RtpError::ExtensionPastEnd));
        }
        // Extension header claims 2 words, 1 word follows.
        let mut bytes = packet(&HEADER, &[0xBE, 0xDE, 0, 2, 1, 2, 3, 4]);
        bytes[0] |= 0x10;
        assert_eq!(RtpPacket::parse(&bytes), Err(RtpError::ExtensionPastEnd));
        // Largest length field.
        let mut bytes = packet(&HEADER, &[0, 0, 0xFF, 0xFF]);
        bytes[0] |= 0x10;
        assert_eq!(RtpPacket::parse(&bytes), Err(RtpError::ExtensionPastEnd));
        // The extension is read after the CSRCs: without one this parses, with one the
        // extension header moves along and its body no longer fits.
        let mut bytes = packet(&HEADER, &[0, 0, 0, 1, 0, 0, 0, 1]);
        bytes[0] |= 0x10;
        assert!(RtpPacket::parse(&bytes).is_ok());
        bytes[0] |= 1;
        assert_eq!(RtpPacket::parse(&bytes), Err(RtpError::ExtensionPastEnd));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A small deterministic generator: every prefix of many pseudo-random datagrams.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        for _ in 0..2_000 {
            let len = (state % 64) as usize;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                buf.push(state as u8);
            }
            // Force version 2 half the time so the deeper paths run.
            if let Some(first) = buf.first_mut()
                && state & 1 == 0
            {
                *first = (*first & 0x3F) | 0x80;
            }
            for end in 0..=buf.len() {
                if let Ok(p) = RtpPacket::parse(&buf[..end]) {
                    let total = 12
                        + p.csrcs().len() * 4
                        + p.extension.map_or(0, |e| 4 + e.data.len())
                        + p.payload.len()
                        + usize::from(p.padding);
                    assert_eq!(total, end);
                }
            }
            state = state.wrapping_add(0x9E37_79B9);
        }
    }
}
