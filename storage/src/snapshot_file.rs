//! The snapshot file format: a point-in-time copy of every table, streamed record by record so that
//! neither writing nor reading one holds the whole state in memory.
//!
//! ```text
//! magic "PBXSNAP" (7 bytes) | format version (u8)
//! frame: codec(SnapshotMeta)                       the header
//! frame: codec(SnapshotRecord::Row { table tag, key, value })   zero or more, tables in Table::ALL order
//! frame: codec(SnapshotRecord::End { rows, checksum })          then end of file
//! frame = length (u32, little endian) | that many bytes
//! ```
//!
//! The end record carries the row count and an FNV-1a checksum of every frame before it, so that a
//! file cut at a record boundary or with flipped bytes is refused rather than half-installed.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::tables::Table;
use crate::{NodeAddr, NodeId, StorageError};

/// Identifies a snapshot file; a file that does not start with it is not ours.
const MAGIC: &[u8; 7] = b"PBXSNAP";
/// Bumped when the framing changes; the records inside carry the codec's own version byte.
pub(crate) const SNAPSHOT_FORMAT_VERSION: u8 = 1;
/// Upper bound of one frame, checked before reading it: a row is at most one encoded value plus its key.
const MAX_FRAME_LEN: u64 = codec::MAX_ENCODED_LEN + 64 * 1024;

pub(crate) type Meta = openraft::SnapshotMeta<NodeId, NodeAddr>;

#[derive(Debug, Serialize, Deserialize)]
enum SnapshotRecord {
    Row {
        table: u8,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    End {
        rows: u64,
        checksum: u64,
    },
}

/// 64-bit FNV-1a: enough to catch a damaged file (not an attacker; the transport authenticates peers).
#[derive(Clone, Copy)]
struct Checksum(u64);

impl Checksum {
    const fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Writes a snapshot file; call [`SnapshotWriter::finish`] or the file is incomplete (and refused on read).
pub(crate) struct SnapshotWriter<W: Write> {
    out: W,
    rows: u64,
    checksum: Checksum,
}

impl<W: Write> SnapshotWriter<W> {
    pub(crate) fn new(mut out: W, meta: &Meta) -> Result<Self, StorageError> {
        out.write_all(MAGIC)?;
        out.write_all(&[SNAPSHOT_FORMAT_VERSION])?;
        let mut this = Self {
            out,
            rows: 0,
            checksum: Checksum::new(),
        };
        this.frame(&codec::encode(meta)?)?;
        Ok(this)
    }

    pub(crate) fn row(
        &mut self,
        table: Table,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StorageError> {
        let record = SnapshotRecord::Row {
            table: table.tag(),
            key: key.to_vec(),
            value: value.to_vec(),
        };
        self.frame(&codec::encode(&record)?)?;
        self.rows += 1;
        Ok(())
    }

    /// Writes the end record and returns the underlying writer (flush and sync it yourself).
    pub(crate) fn finish(mut self) -> Result<W, StorageError> {
        let end = SnapshotRecord::End {
            rows: self.rows,
            checksum: self.checksum.0,
        };
        let body = codec::encode(&end)?;
        write_frame(&mut self.out, &body)?;
        Ok(self.out)
    }

    fn frame(&mut self, body: &[u8]) -> Result<(), StorageError> {
        write_frame(&mut self.out, body)?;
        self.checksum.update(body);
        Ok(())
    }
}

fn write_frame(out: &mut impl Write, body: &[u8]) -> Result<(), StorageError> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&l| u64::from(l) <= MAX_FRAME_LEN)
        .ok_or_else(|| {
            StorageError::corrupt(format!(
                "snapshot record of {} bytes is too large",
                body.len()
            ))
        })?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(body)?;
    Ok(())
}

/// One table row read back from a snapshot.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) table: Table,
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
}

/// Reads a snapshot file, checking framing, bounds, row count and checksum.
pub(crate) struct SnapshotReader<R: Read> {
    input: R,
    rows: u64,
    checksum: Checksum,
    done: bool,
}

impl<R: Read> SnapshotReader<R> {
    /// Reads the header and returns the reader with the snapshot's meta.
    pub(crate) fn new(mut input: R) -> Result<(Self, Meta), StorageError> {
        let mut magic = [0u8; 8];
        input
            .read_exact(&mut magic)
            .map_err(|e| truncated(e, "header"))?;
        if &magic[..7] != MAGIC {
            return Err(StorageError::corrupt("not a snapshot file (bad magic)"));
        }
        if magic[7] != SNAPSHOT_FORMAT_VERSION {
            return Err(StorageError::corrupt(format!(
                "unsupported snapshot format version {} (this build reads {SNAPSHOT_FORMAT_VERSION})",
                magic[7]
            )));
        }
        let mut this = Self {
            input,
            rows: 0,
            checksum: Checksum::new(),
            done: false,
        };
        let body = this
            .frame()?
            .ok_or_else(|| StorageError::corrupt("snapshot has no header"))?;
        this.checksum.update(&body);
        let meta = codec::decode_limited(&body, MAX_FRAME_LEN)?;
        Ok((this, meta))
    }

    /// The next row, or `None` after a valid end record followed by the end of the file.
    pub(crate) fn next_row(&mut self) -> Result<Option<Row>, StorageError> {
        if self.done {
            return Ok(None);
        }
        let body = self
            .frame()?
            .ok_or_else(|| StorageError::corrupt("snapshot ends without an end record"))?;
        match codec::decode_limited::<SnapshotRecord>(&body, MAX_FRAME_LEN)? {
            SnapshotRecord::Row { table, key, value } => {
                let table = Table::from_tag(table).ok_or_else(|| {
                    StorageError::corrupt(format!("snapshot row names unknown table tag {table}"))
                })?;
                self.checksum.update(&body);
                self.rows += 1;
                Ok(Some(Row { table, key, value }))
            }
            SnapshotRecord::End { rows, checksum } => {
                if rows != self.rows {
                    return Err(StorageError::corrupt(format!(
                        "snapshot end record counts {rows} rows, file holds {}",
                        self.rows
                    )));
                }
                if checksum != self.checksum.0 {
                    return Err(StorageError::corrupt("snapshot checksum mismatch"));
                }
                let mut extra = [0u8; 1];
                if self.input.read(&mut extra)? != 0 {
                    return Err(StorageError::corrupt(
                        "bytes after the snapshot's end record",
                    ));
                }
                self.done = true;
                Ok(None)
            }
        }
    }

    /// Reads one frame; `None` at a clean end of file.
    fn frame(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < len.len() {
            match self.input.read(&mut len[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => {
                    return Err(StorageError::corrupt(
                        "snapshot truncated inside a length prefix",
                    ));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let len = u64::from(u32::from_le_bytes(len));
        if len > MAX_FRAME_LEN {
            return Err(StorageError::corrupt(format!(
                "snapshot record of {len} bytes exceeds the limit"
            )));
        }
        // `take` + `read_to_end` grows the buffer as bytes arrive, so a lying length on a short file
        // does not allocate the whole claimed size up front.
        let mut body = Vec::new();
        (&mut self.input).take(len).read_to_end(&mut body)?;
        if body.len() as u64 != len {
            return Err(StorageError::corrupt("snapshot truncated inside a record"));
        }
        Ok(Some(body))
    }
}

fn truncated(e: io::Error, what: &str) -> StorageError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        StorageError::corrupt(format!("snapshot truncated in its {what}"))
    } else {
        e.into()
    }
}

/// Copies everything read through it into `copy`: validating a received snapshot and saving it are one
/// pass over the bytes.
pub(crate) struct TeeReader<R, W> {
    pub(crate) input: R,
    pub(crate) copy: W,
}

impl<R: Read, W: Write> Read for TeeReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.input.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use openraft::{LogId, StoredMembership};

    use super::*;

    fn meta() -> Meta {
        Meta {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 42)),
            last_membership: StoredMembership::default(),
            snapshot_id: "3-42-1000".into(),
        }
    }

    fn sample(rows: u32) -> Vec<u8> {
        let mut w = SnapshotWriter::new(Vec::new(), &meta()).unwrap();
        for i in 0..rows {
            w.row(Table::Extensions, format!("{i:04}").as_bytes(), &[1, 2, 3])
                .unwrap();
        }
        w.finish().unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<(Meta, Vec<Row>), StorageError> {
        let (mut r, meta) = SnapshotReader::new(bytes)?;
        let mut rows = Vec::new();
        while let Some(row) = r.next_row()? {
            rows.push(row);
        }
        Ok((meta, rows))
    }

    #[test]
    fn round_trip_keeps_meta_and_rows_in_order() {
        let (m, rows) = read_all(&sample(3)).unwrap();
        assert_eq!(m, meta());
        let keys: Vec<_> = rows.iter().map(|r| r.key.clone()).collect();
        assert_eq!(
            keys,
            vec![b"0000".to_vec(), b"0001".to_vec(), b"0002".to_vec()]
        );
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = sample(3);
        for cut in 0..bytes.len() {
            assert!(
                read_all(&bytes[..cut]).is_err(),
                "a file cut at {cut} bytes was accepted"
            );
        }
    }

    #[test]
    fn a_flipped_byte_is_refused() {
        let bytes = sample(3);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(
                read_all(&bad).is_err(),
                "a flipped byte at {i} was accepted"
            );
        }
    }

    #[test]
    fn a_huge_length_prefix_is_refused_before_reading() {
        let mut bytes = sample(0);
        let header_end = 8 + 4 + u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        bytes.truncate(header_end);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(read_all(&bytes), Err(StorageError::Corrupt(_))));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = sample(1);
        bytes.push(0);
        assert!(read_all(&bytes).is_err());
    }
}
