//! The one place where replicated data becomes bytes: Raft entries, snapshots' records, table values and
//! Raft RPC frames all go through here.
//!
//! Format: one format-version byte, then bincode 1.3.3 (fixed-width integers, little endian). Every decode
//! has a size limit, so a corrupt or hostile length prefix cannot make us allocate gigabytes.

use bincode::Options;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bumped when an encoded type changes incompatibly; decoders refuse versions they do not know.
pub const FORMAT_VERSION: u8 = 1;

/// Upper bound for one encoded value (a log entry, an RPC frame, a table row).
pub const MAX_ENCODED_LEN: u64 = 64 * 1024 * 1024;

/// Why bytes could not be turned into a value, or the reverse.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("empty input")]
    Empty,
    #[error("unsupported format version {found} (this build reads version {FORMAT_VERSION})")]
    Version { found: u8 },
    #[error("encoded value exceeds the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("malformed encoding: {0}")]
    Malformed(String),
}

fn options(limit: u64) -> impl Options + Copy {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
        .with_limit(limit)
}

/// Encodes `value` with the version byte in front.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let opts = options(MAX_ENCODED_LEN);
    let len = opts
        .serialized_size(value)
        .map_err(map_err(MAX_ENCODED_LEN))?;
    let mut out = Vec::with_capacity(1 + len as usize);
    out.push(FORMAT_VERSION);
    opts.serialize_into(&mut out, value)
        .map_err(map_err(MAX_ENCODED_LEN))?;
    Ok(out)
}

/// Decodes a value written by [`encode`], refusing anything longer than `limit` bytes.
pub fn decode_limited<T: DeserializeOwned>(bytes: &[u8], limit: u64) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(CodecError::Version { found: version });
    }
    if body.len() as u64 > limit {
        return Err(CodecError::TooLarge { limit });
    }
    options(limit).deserialize(body).map_err(map_err(limit))
}

/// Decodes with the default limit, [`MAX_ENCODED_LEN`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_limited(bytes, MAX_ENCODED_LEN)
}

fn map_err(limit: u64) -> impl Fn(bincode::Error) -> CodecError {
    move |e| match *e {
        bincode::ErrorKind::SizeLimit => CodecError::TooLarge { limit },
        other => CodecError::Malformed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        name: String,
        values: Vec<u32>,
    }

    #[test]
    fn round_trip_keeps_the_value() {
        let v = Sample {
            name: "1001".into(),
            values: vec![1, 2, 3],
        };
        let bytes = encode(&v).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), v);
    }

    #[test]
    fn refuses_unknown_version_empty_and_truncated_input() {
        let mut bytes = encode(&Sample {
            name: "x".into(),
            values: vec![],
        })
        .unwrap();
        assert!(matches!(decode::<Sample>(&[]), Err(CodecError::Empty)));
        let truncated = &bytes[..bytes.len() - 1];
        assert!(matches!(
            decode::<Sample>(truncated),
            Err(CodecError::Malformed(_))
        ));
        bytes[0] = 99;
        assert!(matches!(
            decode::<Sample>(&bytes),
            Err(CodecError::Version { found: 99 })
        ));
    }

    #[test]
    fn a_hostile_length_prefix_does_not_allocate() {
        // Version byte, then a string length of 2^60 bytes. bincode reads slices through a reader that
        // checks the remaining input before allocating (it swaps our limit for the slice's length), so
        // the claim fails as truncated input; the `limit` bounds the input itself.
        let mut bytes = vec![FORMAT_VERSION];
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(matches!(
            decode_limited::<Sample>(&bytes, 1024),
            Err(CodecError::Malformed(_))
        ));
        let mut long = vec![0u8; 2048];
        long[0] = FORMAT_VERSION;
        assert!(matches!(
            decode_limited::<Sample>(&long, 1024),
            Err(CodecError::TooLarge { limit: 1024 })
        ));
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let mut bytes = encode(&Sample {
            name: "x".into(),
            values: vec![],
        })
        .unwrap();
        bytes.push(0);
        assert!(decode::<Sample>(&bytes).is_err());
    }
}
