//! The backup archive: the replicated state and the audio files in one file, encrypted with a
//! key derived from the admin's passphrase, every byte authenticated.
//!
//! ```text
//! "PBXBAK\r\n"       8 bytes; a file that does not start with it is no backup
//! format             u16 LE, ARCHIVE_FORMAT; a larger one was written by a newer pbx
//! header length      u32 LE, at most MAX_HEADER
//! header             JSON (ArchiveHeader): who wrote it, when, as of which log index, the KDF
//! chunk*             u32 LE length | ChaCha20-Poly1305 ciphertext of at most CHUNK plaintext bytes
//! ```
//!
//! The key is Argon2id(passphrase, salt), the salt random per archive, so a counter is a safe
//! nonce: chunk n is sealed with nonce n and additional data SHA-256(everything before the first
//! chunk) followed by a last-chunk flag. A changed header, a reordered, dropped or altered chunk,
//! and an archive cut after any chunk all fail to open. The header also carries a check value of
//! the derived key, so that a wrong passphrase is told apart from a damaged file.
//!
//! The plaintext is a sequence of entries, `kind u8 | name length u8 | name | size u64 LE |
//! SHA-256 (32 bytes) | size bytes`, ended by an [`EntryKind::End`] entry whose size is the number
//! of entries before it. A reader checks each entry's size and checksum as it copies it.

use std::io::{self, Read, Write};

use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore as _;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

const MAGIC: &[u8; 8] = b"PBXBAK\r\n";
/// The archive layout this build writes and the newest it reads.
pub const ARCHIVE_FORMAT: u16 = 1;
const MAX_HEADER: u32 = 64 * 1024;
/// Plaintext bytes per sealed chunk.
const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
/// The longest entry name (an audio file's id is 32).
const MAX_NAME: usize = 64;

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// The replicated state, exported (`storage::backup`).
    State,
    /// One audio file, named by its id.
    Audio,
    End,
}

impl EntryKind {
    const fn byte(self) -> u8 {
        match self {
            Self::End => 0,
            Self::State => 1,
            Self::Audio => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        [Self::End, Self::State, Self::Audio]
            .into_iter()
            .find(|k| k.byte() == b)
    }
}

/// Argon2id cost of deriving the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub lanes: u32,
}

impl KdfCost {
    /// What archives are written with: about a second of a core and 64 MiB per guess.
    pub const DEFAULT: Self = Self {
        memory_kib: 64 * 1024,
        iterations: 3,
        lanes: 1,
    };

    /// Bounds on what a reader accepts, so that a crafted header cannot make it allocate or spin
    /// without limit.
    fn acceptable(self) -> bool {
        (8..=1024 * 1024).contains(&self.memory_kib)
            && (1..=16).contains(&self.iterations)
            && (1..=8).contains(&self.lanes)
    }
}

/// The archive's header, readable without the passphrase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveHeader {
    /// The pbx version that wrote it.
    pub pbx_version: String,
    pub cluster_id: String,
    /// The node that wrote it.
    pub node_id: u64,
    pub created_at: u64,
    /// The log index the state is as of.
    pub log_index: u64,
    pub kdf: KdfCost,
    /// The Argon2id salt, hex.
    pub salt: String,
    /// SHA-256 of the key-check half of the derived bytes, hex.
    pub key_check: String,
}

/// Who wrote an archive and as of when, given to [`ArchiveWriter::new`].
#[derive(Debug, Clone)]
pub struct Origin {
    pub cluster_id: String,
    pub node_id: u64,
    pub created_at: u64,
    pub log_index: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a pbx backup archive")]
    NotAnArchive,
    #[error(
        "the archive is format {found}, written by pbx {version}; this pbx ({}) reads format \
         {ARCHIVE_FORMAT} and older: restore with pbx {version} or newer",
        env!("CARGO_PKG_VERSION")
    )]
    TooNew { found: u16, version: String },
    #[error("wrong passphrase for this archive")]
    WrongPassphrase,
    #[error("the archive is damaged: {0}")]
    Damaged(String),
    #[error("the archive is cut short: {0}")]
    Truncated(String),
    #[error("the data for entry {name} does not match it: {reason}")]
    BadSource { name: String, reason: String },
    #[error("passphrase: {0}")]
    Passphrase(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Derives the sealing key and the key check from the passphrase.
fn derive(
    passphrase: &str,
    salt: &[u8],
    cost: KdfCost,
) -> Result<(LessSafeKey, String), ArchiveError> {
    let params = Params::new(cost.memory_kib, cost.iterations, cost.lanes, Some(64))
        .map_err(|e| ArchiveError::Passphrase(e.to_string()))?;
    let mut out = [0u8; 64];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut out)
        .map_err(|e| ArchiveError::Passphrase(e.to_string()))?;
    let key = UnboundKey::new(&CHACHA20_POLY1305, &out[..32])
        .map_err(|_| ArchiveError::Passphrase("key setup failed".into()))?;
    let check = hex::encode(Sha256::digest(&out[32..]));
    Ok((LessSafeKey::new(key), check))
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn chunk_aad(header_hash: &[u8; 32], last: bool) -> [u8; 33] {
    let mut aad = [0u8; 33];
    aad[..32].copy_from_slice(header_hash);
    aad[32] = u8::from(last);
    aad
}

/// Writes an archive; call [`ArchiveWriter::finish`] or it is incomplete (and refused on read).
pub struct ArchiveWriter<W: Write> {
    out: W,
    key: LessSafeKey,
    header_hash: [u8; 32],
    counter: u64,
    plain: Vec<u8>,
    entries: u64,
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(
        mut out: W,
        origin: &Origin,
        passphrase: &str,
        cost: KdfCost,
    ) -> Result<Self, ArchiveError> {
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        let (key, key_check) = derive(passphrase, &salt, cost)?;
        let header = ArchiveHeader {
            pbx_version: env!("CARGO_PKG_VERSION").to_owned(),
            cluster_id: origin.cluster_id.clone(),
            node_id: origin.node_id,
            created_at: origin.created_at,
            log_index: origin.log_index,
            kdf: cost,
            salt: hex::encode(salt),
            key_check,
        };
        let json = serde_json::to_vec(&header).map_err(io::Error::other)?;
        let mut prefix = Vec::with_capacity(14 + json.len());
        prefix.extend_from_slice(MAGIC);
        prefix.extend_from_slice(&ARCHIVE_FORMAT.to_le_bytes());
        let len = u32::try_from(json.len())
            .ok()
            .filter(|&l| l <= MAX_HEADER)
            .ok_or_else(|| ArchiveError::Damaged("header too large".into()))?;
        prefix.extend_from_slice(&len.to_le_bytes());
        prefix.extend_from_slice(&json);
        out.write_all(&prefix)?;
        Ok(Self {
            out,
            key,
            header_hash: Sha256::digest(&prefix).into(),
            counter: 0,
            plain: Vec::with_capacity(CHUNK + TAG),
            entries: 0,
        })
    }

    /// Adds an entry of `size` bytes read from `data`, which must hash to `sha256`: the copy is
    /// checked as it is written, so a damaged source never makes a good-looking archive.
    pub fn entry(
        &mut self,
        kind: EntryKind,
        name: &str,
        size: u64,
        sha256: [u8; 32],
        mut data: impl Read,
    ) -> Result<(), ArchiveError> {
        let bad = |reason: String| ArchiveError::BadSource {
            name: name.to_owned(),
            reason,
        };
        if kind == EntryKind::End || name.is_empty() || name.len() > MAX_NAME {
            return Err(bad("not a valid entry name or kind".into()));
        }
        self.entry_header(kind, name, size, &sha256)?;
        let mut hasher = Sha256::new();
        let mut left = size;
        let mut buf = vec![0u8; CHUNK];
        while left > 0 {
            let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
            let n = data.read(&mut buf[..want])?;
            if n == 0 {
                return Err(bad(format!("{} bytes short", left)));
            }
            hasher.update(&buf[..n]);
            self.put(&buf[..n])?;
            left -= n as u64;
        }
        if data.read(&mut [0u8; 1])? != 0 {
            return Err(bad(format!("longer than {size} bytes")));
        }
        if <[u8; 32]>::from(hasher.finalize()) != sha256 {
            return Err(bad("checksum mismatch".into()));
        }
        self.entries += 1;
        Ok(())
    }

    /// Writes the end entry and the last chunk; returns the output (sync it yourself).
    pub fn finish(mut self) -> Result<W, ArchiveError> {
        let entries = self.entries;
        self.entry_header(EntryKind::End, "", entries, &[0u8; 32])?;
        self.seal(true)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry_header(
        &mut self,
        kind: EntryKind,
        name: &str,
        size: u64,
        sha256: &[u8; 32],
    ) -> Result<(), ArchiveError> {
        let name_len = u8::try_from(name.len())
            .map_err(|_| ArchiveError::Damaged("entry name too long".into()))?;
        self.put(&[kind.byte(), name_len])?;
        self.put(name.as_bytes())?;
        self.put(&size.to_le_bytes())?;
        self.put(sha256)
    }

    fn put(&mut self, mut bytes: &[u8]) -> Result<(), ArchiveError> {
        while !bytes.is_empty() {
            let room = CHUNK - self.plain.len();
            let take = room.min(bytes.len());
            self.plain.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.plain.len() == CHUNK {
                self.seal(false)?;
            }
        }
        Ok(())
    }

    fn seal(&mut self, last: bool) -> Result<(), ArchiveError> {
        let aad = chunk_aad(&self.header_hash, last);
        self.key
            .seal_in_place_append_tag(nonce(self.counter), Aad::from(aad), &mut self.plain)
            .map_err(|_| ArchiveError::Damaged("sealing failed".into()))?;
        self.counter += 1;
        let len = u32::try_from(self.plain.len()).unwrap_or(u32::MAX);
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&self.plain)?;
        self.plain.clear();
        Ok(())
    }
}

/// What an entry is, read before its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub name: String,
    pub size: u64,
    pub sha256: [u8; 32],
}

/// Reads the header of an archive without opening it (listing, refusing a newer one early).
pub fn read_header(mut input: impl Read) -> Result<(ArchiveHeader, [u8; 32]), ArchiveError> {
    let mut start = [0u8; 14];
    input
        .read_exact(&mut start)
        .map_err(|e| eof(e, "the header"))?;
    if &start[..8] != MAGIC {
        return Err(ArchiveError::NotAnArchive);
    }
    let format = u16::from_le_bytes([start[8], start[9]]);
    let len = u32::from_le_bytes([start[10], start[11], start[12], start[13]]);
    if len > MAX_HEADER {
        return Err(ArchiveError::Damaged(format!("header of {len} bytes")));
    }
    let mut json = vec![0u8; len as usize];
    input
        .read_exact(&mut json)
        .map_err(|e| eof(e, "the header"))?;
    if format > ARCHIVE_FORMAT {
        // A newer header may not parse as ours; its version is still worth naming.
        let version = serde_json::from_slice::<serde_json::Value>(&json)
            .ok()
            .and_then(|v| {
                v.get("pbx_version")?
                    .as_str()
                    .map(|s| s.chars().take(32).collect())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        return Err(ArchiveError::TooNew {
            found: format,
            version,
        });
    }
    if format == 0 {
        return Err(ArchiveError::Damaged("format 0".into()));
    }
    let header: ArchiveHeader =
        serde_json::from_slice(&json).map_err(|e| ArchiveError::Damaged(format!("header: {e}")))?;
    let mut hasher = Sha256::new();
    hasher.update(start);
    hasher.update(&json);
    Ok((header, hasher.finalize().into()))
}

fn eof(e: io::Error, what: &str) -> ArchiveError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        ArchiveError::Truncated(format!("inside {what}"))
    } else {
        ArchiveError::Io(e)
    }
}

/// Reads an archive's entries, checking everything it reads.
pub struct ArchiveReader<R: Read> {
    input: R,
    header: ArchiveHeader,
    key: LessSafeKey,
    header_hash: [u8; 32],
    counter: u64,
    plain: Vec<u8>,
    pos: usize,
    last_read: bool,
    entries: u64,
}

impl<R: Read> ArchiveReader<R> {
    /// Reads the header and checks the passphrase against it.
    pub fn open(mut input: R, passphrase: &str) -> Result<Self, ArchiveError> {
        let (header, header_hash) = read_header(&mut input)?;
        if !header.kdf.acceptable() {
            return Err(ArchiveError::Damaged(format!(
                "unacceptable key derivation cost {:?}",
                header.kdf
            )));
        }
        let salt = hex::decode(&header.salt)
            .ok()
            .filter(|s| (8..=64).contains(&s.len()))
            .ok_or_else(|| ArchiveError::Damaged("salt".into()))?;
        let (key, check) = derive(passphrase, &salt, header.kdf)?;
        if check != header.key_check {
            return Err(ArchiveError::WrongPassphrase);
        }
        Ok(Self {
            input,
            header,
            key,
            header_hash,
            counter: 0,
            plain: Vec::with_capacity(CHUNK + TAG),
            pos: 0,
            last_read: false,
            entries: 0,
        })
    }

    pub fn header(&self) -> &ArchiveHeader {
        &self.header
    }

    /// The next entry, or `None` after the end entry, once the entry count and the end of the
    /// file are checked.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, ArchiveError> {
        let mut fixed = [0u8; 2];
        self.read_plain(&mut fixed)?;
        let kind = EntryKind::from_byte(fixed[0])
            .ok_or_else(|| ArchiveError::Damaged(format!("entry kind {}", fixed[0])))?;
        let mut name = vec![0u8; usize::from(fixed[1])];
        self.read_plain(&mut name)?;
        let mut size = [0u8; 8];
        self.read_plain(&mut size)?;
        let mut sha256 = [0u8; 32];
        self.read_plain(&mut sha256)?;
        let size = u64::from_le_bytes(size);
        if kind == EntryKind::End {
            if size != self.entries {
                return Err(ArchiveError::Damaged(format!(
                    "the end counts {size} entries, the archive holds {}",
                    self.entries
                )));
            }
            if self.pos != self.plain.len() || !self.last_read {
                return Err(ArchiveError::Damaged("data after the end entry".into()));
            }
            if self.input.read(&mut [0u8; 1])? != 0 {
                return Err(ArchiveError::Damaged("bytes after the last chunk".into()));
            }
            return Ok(None);
        }
        let name = String::from_utf8(name)
            .ok()
            .filter(|n| !n.is_empty() && n.len() <= MAX_NAME)
            .ok_or_else(|| ArchiveError::Damaged("entry name".into()))?;
        Ok(Some(Entry {
            kind,
            name,
            size,
            sha256,
        }))
    }

    /// Copies the bytes of `entry` (the one [`Self::next_entry`] returned) to `out`, checking
    /// its checksum; returns `out`.
    pub fn copy_entry<W: Write>(&mut self, entry: &Entry, mut out: W) -> Result<W, ArchiveError> {
        let mut hasher = Sha256::new();
        let mut left = entry.size;
        while left > 0 {
            if self.pos == self.plain.len() {
                self.next_chunk()?;
            }
            let avail = self.plain.len() - self.pos;
            let take = usize::try_from(left).map_or(avail, |l| l.min(avail));
            let bytes = &self.plain[self.pos..self.pos + take];
            hasher.update(bytes);
            out.write_all(bytes)?;
            self.pos += take;
            left -= take as u64;
        }
        if <[u8; 32]>::from(hasher.finalize()) != entry.sha256 {
            return Err(ArchiveError::Damaged(format!(
                "entry {} does not match its checksum",
                entry.name
            )));
        }
        self.entries += 1;
        Ok(out)
    }

    /// Skips the bytes of `entry`, still checking them.
    pub fn skip_entry(&mut self, entry: &Entry) -> Result<(), ArchiveError> {
        self.copy_entry(entry, io::sink()).map(drop)
    }

    fn read_plain(&mut self, buf: &mut [u8]) -> Result<(), ArchiveError> {
        let mut got = 0;
        while got < buf.len() {
            if self.pos == self.plain.len() {
                self.next_chunk()?;
            }
            let take = (self.plain.len() - self.pos).min(buf.len() - got);
            buf[got..got + take].copy_from_slice(&self.plain[self.pos..self.pos + take]);
            self.pos += take;
            got += take;
        }
        Ok(())
    }

    fn next_chunk(&mut self) -> Result<(), ArchiveError> {
        if self.last_read {
            return Err(ArchiveError::Damaged(
                "entries go on past the last chunk".into(),
            ));
        }
        let mut len = [0u8; 4];
        self.input.read_exact(&mut len).map_err(|e| {
            eof(
                e,
                "a chunk's length: the archive ends before its last chunk",
            )
        })?;
        let len = u32::from_le_bytes(len) as usize;
        if !(TAG..=CHUNK + TAG).contains(&len) {
            return Err(ArchiveError::Damaged(format!("chunk of {len} bytes")));
        }
        self.plain.resize(len, 0);
        self.input
            .read_exact(&mut self.plain)
            .map_err(|e| eof(e, "a chunk"))?;
        // The last chunk is known only by which additional data opens it.
        let opened = [false, true].into_iter().find_map(|last| {
            let mut copy = self.plain.clone();
            let aad = chunk_aad(&self.header_hash, last);
            let n = self
                .key
                .open_in_place(nonce(self.counter), Aad::from(aad), &mut copy)
                .ok()?
                .len();
            copy.truncate(n);
            Some((copy, last))
        });
        let Some((plain, last)) = opened else {
            return Err(ArchiveError::Damaged(format!(
                "chunk {} fails authentication",
                self.counter
            )));
        };
        self.plain = plain;
        self.pos = 0;
        self.last_read = last;
        self.counter += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
