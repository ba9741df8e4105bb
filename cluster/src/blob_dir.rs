//! One node's copy of the cluster's audio files: a flat directory of files named by their id.
//!
//! A file appears under its final name only whole and verified: bytes go to `tmp/` first, are hashed
//! on the way, synced, checked against the expected size and SHA-256, and renamed into place. So a
//! full disk, a peer that stops mid-transfer or one that sends other bytes leaves nothing behind but
//! a temporary file, removed at once (and at the next start, should the process die meanwhile).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Largest audio file a node stores (an hour of 8 kHz 16-bit stereo is 110 MiB).
pub const MAX_BLOB_SIZE: u64 = 256 * 1024 * 1024;

const TMP: &str = "tmp";

/// Why a file could not be stored or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    #[error("not an audio file id: {0:?}")]
    BadId(String),
    #[error("{size} bytes exceed the {MAX_BLOB_SIZE}-byte limit")]
    TooLarge { size: u64 },
    #[error("expected {expected} bytes, got {got}")]
    WrongSize { expected: u64, got: u64 },
    #[error("checksum mismatch: expected {expected}, got {got}")]
    WrongChecksum { expected: String, got: String },
    #[error("not enough disk space: {free} bytes free, {needed} needed")]
    DiskFull { free: u64, needed: u64 },
    #[error("no such file")]
    Missing,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// A file in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub id: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// Whether `id` is an audio file's id: the only names the directory stores, so no id can name a
/// path outside it.
pub fn valid_id(id: &str) -> bool {
    storage::audio::AudioFile::valid_id(id)
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The audio directory of one node.
#[derive(Debug)]
pub struct BlobDir {
    dir: PathBuf,
    /// Space kept free for the database and logs: a write that would leave less is refused.
    reserve: u64,
}

impl BlobDir {
    /// Opens (or creates) the directory, dropping temporary files a previous run left.
    pub fn open(dir: &Path, reserve: u64) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir.join(TMP))?;
        for entry in std::fs::read_dir(dir.join(TMP))? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(Self {
            dir: dir.to_owned(),
            reserve,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of file `id` (whether or not it exists).
    pub fn path(&self, id: &str) -> Result<PathBuf, BlobError> {
        if !valid_id(id) {
            return Err(BlobError::BadId(id.chars().take(64).collect()));
        }
        Ok(self.dir.join(id))
    }

    pub fn has(&self, id: &str) -> bool {
        self.path(id).is_ok_and(|p| p.is_file())
    }

    /// Bytes free on the directory's file system for unprivileged writers.
    pub fn free_bytes(&self) -> Result<u64, BlobError> {
        let stat = rustix::fs::statvfs(&self.dir).map_err(std::io::Error::from)?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Refuses a file of `size` bytes that would leave less than the reserve free.
    pub fn check_space(&self, size: u64) -> Result<(), BlobError> {
        let free = self.free_bytes()?;
        let needed = size.saturating_add(self.reserve);
        if free < needed {
            return Err(BlobError::DiskFull { free, needed });
        }
        Ok(())
    }

    /// Stores file `id` from `reader`, which must yield exactly `size` bytes hashing to `sha256`.
    /// A file already stored under `id` is kept (it was verified when it was stored).
    pub async fn write<R: AsyncRead + Unpin>(
        &self,
        id: &str,
        sha256: &str,
        size: u64,
        reader: &mut R,
    ) -> Result<(), BlobError> {
        let path = self.path(id)?;
        if size > MAX_BLOB_SIZE {
            return Err(BlobError::TooLarge { size });
        }
        if path.is_file() {
            return Ok(());
        }
        self.check_space(size)?;
        let tmp = self.dir.join(TMP).join(format!("{id}.{:x}", rand_suffix()));
        let result = self.copy_verified(&tmp, sha256, size, reader).await;
        match result {
            Ok(()) => {
                tokio::fs::rename(&tmp, &path).await?;
                // The rename itself must survive a crash before the file is called stored.
                sync_dir(&self.dir).await?;
                Ok(())
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    async fn copy_verified<R: AsyncRead + Unpin>(
        &self,
        tmp: &Path,
        sha256: &str,
        size: u64,
        reader: &mut R,
    ) -> Result<(), BlobError> {
        let mut file = tokio::fs::File::create(tmp).await?;
        let mut hasher = Sha256::new();
        let mut got = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got += n as u64;
            if got > size {
                return Err(BlobError::WrongSize {
                    expected: size,
                    got,
                });
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).await?;
        }
        if got != size {
            return Err(BlobError::WrongSize {
                expected: size,
                got,
            });
        }
        let digest = hex(&hasher.finalize());
        if digest != sha256 {
            return Err(BlobError::WrongChecksum {
                expected: sha256.chars().take(64).collect(),
                got: digest,
            });
        }
        file.sync_all().await?;
        Ok(())
    }

    /// Opens file `id` for reading.
    pub async fn open_file(&self, id: &str) -> Result<(tokio::fs::File, u64), BlobError> {
        let path = self.path(id)?;
        match tokio::fs::File::open(&path).await {
            Ok(file) => {
                let size = file.metadata().await?.len();
                Ok((file, size))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::Missing),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes file `id`; a file that is not there is no error.
    pub fn remove(&self, id: &str) -> Result<(), BlobError> {
        match std::fs::remove_file(self.path(id)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every stored file (names that are no id are not the store's and are left alone).
    pub fn list(&self) -> Result<Vec<StoredBlob>, BlobError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !valid_id(&id) {
                continue;
            }
            let meta = entry.metadata()?;
            if meta.is_file() {
                out.push(StoredBlob {
                    id,
                    size: meta.len(),
                    modified: meta.modified()?,
                });
            }
        }
        Ok(out)
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::Instant::now())
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(n: u8) -> String {
        format!("{n:032x}")
    }

    #[tokio::test]
    async fn a_verified_file_is_stored_and_listed_and_a_bad_one_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = BlobDir::open(tmp.path(), 0).unwrap();
        let bytes = b"RIFF....WAVEfmt audio".to_vec();
        let sha = sha256_hex(&bytes);
        dir.write(&id(1), &sha, bytes.len() as u64, &mut &bytes[..])
            .await
            .unwrap();
        assert!(dir.has(&id(1)));
        assert_eq!(std::fs::read(dir.path(&id(1)).unwrap()).unwrap(), bytes);

        let wrong = dir
            .write(
                &id(2),
                &sha,
                bytes.len() as u64,
                &mut &b"other bytes of len21"[..],
            )
            .await;
        assert!(
            matches!(wrong, Err(BlobError::WrongSize { .. })),
            "{wrong:?}"
        );
        let mut same_len = bytes.clone();
        same_len[0] = b'X';
        let corrupt = dir
            .write(&id(2), &sha, bytes.len() as u64, &mut &same_len[..])
            .await;
        assert!(
            matches!(corrupt, Err(BlobError::WrongChecksum { .. })),
            "{corrupt:?}"
        );
        let long = dir.write(&id(2), &sha, 3, &mut &bytes[..]).await;
        assert!(matches!(long, Err(BlobError::WrongSize { .. })), "{long:?}");
        assert!(!dir.has(&id(2)));
        let listed: Vec<_> = dir.list().unwrap().into_iter().map(|b| b.id).collect();
        assert_eq!(listed, vec![id(1)]);
        assert_eq!(
            std::fs::read_dir(tmp.path().join(TMP)).unwrap().count(),
            0,
            "no temporary file is left behind"
        );
    }

    #[tokio::test]
    async fn ids_that_could_name_a_path_are_refused_before_any_file_is_touched() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = BlobDir::open(tmp.path(), 0).unwrap();
        for bad in ["../x", "", &"A".repeat(32), "tmp"] {
            let r = dir.write(bad, "", 0, &mut &b""[..]).await;
            assert!(matches!(r, Err(BlobError::BadId(_))), "{bad:?}: {r:?}");
            assert!(matches!(dir.remove(bad), Err(BlobError::BadId(_))));
        }
        assert!(matches!(
            dir.write(&id(3), "", MAX_BLOB_SIZE + 1, &mut &b""[..])
                .await,
            Err(BlobError::TooLarge { .. })
        ));
        assert!(matches!(
            dir.open_file(&id(3)).await,
            Err(BlobError::Missing)
        ));
    }

    #[tokio::test]
    async fn a_write_that_would_eat_the_reserve_is_refused_as_disk_full() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = BlobDir::open(tmp.path(), u64::MAX / 2).unwrap();
        let r = dir.write(&id(4), "", 10, &mut &b"0123456789"[..]).await;
        assert!(matches!(r, Err(BlobError::DiskFull { .. })), "{r:?}");
        assert!(!dir.has(&id(4)));
    }

    #[test]
    fn leftover_temporary_files_are_removed_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join(TMP)).unwrap();
        std::fs::write(tmp.path().join(TMP).join("half"), b"x").unwrap();
        BlobDir::open(tmp.path(), 0).unwrap();
        assert_eq!(std::fs::read_dir(tmp.path().join(TMP)).unwrap().count(), 0);
    }
}
