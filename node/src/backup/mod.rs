//! Backups: an encrypted archive of the replicated state (as of one log index) and every audio
//! file, made on demand or on the cluster's schedule by one node into its `backups/` directory,
//! listed cluster-wide in the replicated table of backups; and `pbx cluster restore`, which builds
//! a fresh cluster from one.
//!
//! Which node makes a scheduled backup: the leader, after claiming the slot with a create-only
//! record (a node that takes over the leadership in the same minute finds it taken). A node whose
//! backup record was deleted (retention, an admin) deletes its file; so does a node that finds a
//! file no record names.

pub mod archive;
pub mod restore;
mod schedule;
pub(crate) mod sftp;

use std::io::{BufReader, BufWriter, Read as _, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cluster::Cluster;
use sha2::{Digest as _, Sha256};
use storage::audio::AudioFile;
use storage::backup::{BackupRecord, BackupSettings, BackupStatus, StateImport};
use storage::model::{ClusterRecord, Severity};
use storage::{Command, Response, Table};

use self::archive::{ArchiveError, ArchiveWriter, EntryKind, KdfCost, Origin};
use crate::audio::AudioStore;
use crate::events::Events;
use crate::time::now_millis;

pub(crate) use schedule::run_schedule;

/// Archive files end with it.
pub const EXTENSION: &str = "pbxbak";
const TEMP_EXTENSION: &str = "part";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no backup passphrase is set: set one with PUT /api/v1/backups/settings first")]
    NotConfigured,
    #[error("a backup is already being made on this node")]
    Busy,
    #[error("backup {0} was already claimed")]
    Claimed(String),
    #[error("the cluster is not initialised")]
    NoCluster,
    #[error("replicating the backup record: {0}")]
    Cluster(String),
    #[error("audio file {id}: {reason}")]
    Audio { id: String, reason: String },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How a backup was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Manual,
    Scheduled { slot_millis: u64 },
}

/// This node's backups: makes them and keeps its directory in line with the table.
pub struct Backups {
    cluster: Cluster,
    audio: Arc<AudioStore>,
    events: Arc<Events>,
    dir: PathBuf,
    busy: tokio::sync::Mutex<()>,
    cost: KdfCost,
}

impl Backups {
    pub fn new(
        cluster: Cluster,
        audio: Arc<AudioStore>,
        events: Arc<Events>,
        data_dir: &Path,
    ) -> std::io::Result<Arc<Self>> {
        let dir = data_dir.join("backups");
        std::fs::create_dir_all(&dir)?;
        remove_partial_files(&dir);
        Ok(Arc::new(Self {
            cluster,
            audio,
            events,
            dir,
            busy: tokio::sync::Mutex::new(()),
            cost: KdfCost::DEFAULT,
        }))
    }

    /// Where backup `id`'s archive is, when this node made it.
    pub fn path(&self, id: &str) -> Option<PathBuf> {
        BackupRecord::valid_id(id).then(|| self.dir.join(format!("{id}.{EXTENSION}")))
    }

    /// Makes a backup now on this node and waits until it is written (or failed).
    pub async fn create(&self, trigger: Trigger) -> Result<BackupRecord, BackupError> {
        let settings = self
            .cluster
            .reader()
            .get::<BackupSettings>(BackupSettings::KEY)?
            .ok_or(BackupError::NotConfigured)?;
        let Ok(_busy) = self.busy.try_lock() else {
            return Err(BackupError::Busy);
        };
        let me = self.cluster.node_id();
        let started_at = now_millis();
        let (id, trigger_name) = match trigger {
            Trigger::Manual => (format!("{}-{me}", stamp(started_at)), "manual"),
            Trigger::Scheduled { slot_millis } => {
                (format!("scheduled-{}", stamp(slot_millis)), "scheduled")
            }
        };
        let mut record = BackupRecord {
            id: id.clone(),
            node_id: me,
            trigger: trigger_name.to_owned(),
            status: BackupStatus::Running,
            started_at,
            finished_at: None,
            log_index: 0,
            size: 0,
            sha256: String::new(),
            audio_files: 0,
            error: None,
            remote: None,
            remote_error: None,
        };
        match self.put(&record, true).await? {
            Response::Ok => {}
            Response::Conflict { .. } => return Err(BackupError::Claimed(id)),
            other => return Err(BackupError::Cluster(format!("{other:?}"))),
        }
        tracing::info!(node = me, backup = %id, trigger = trigger_name, "backup started");
        let result = self.write(&id, &settings.passphrase).await;
        record.finished_at = Some(now_millis());
        match result {
            Ok(written) => {
                record.status = BackupStatus::Ok;
                record.log_index = written.log_index;
                record.size = written.size;
                record.sha256 = written.sha256;
                record.audio_files = written.audio_files;
                self.put(&record, false).await?;
                let elapsed = record.finished_at.unwrap_or(started_at) - started_at;
                metrics::counter!("pbx_backups_total", "result" => "ok").increment(1);
                metrics::gauge!("pbx_backup_last_ok_timestamp_seconds")
                    .set(started_at as f64 / 1000.0);
                tracing::info!(node = me, backup = %id, bytes = record.size, audio_files = record.audio_files, log_index = record.log_index, elapsed_ms = elapsed, "backup written");
                self.events.raise(
                    "backup_ok",
                    Severity::Info,
                    None,
                    format!(
                        "backup {id} written on node {me}: {} bytes, {} audio files, state as of log index {}",
                        record.size, record.audio_files, record.log_index
                    ),
                );
                let drop = self.past_retention(settings.keep);
                if let Some(target) = &settings.sftp {
                    self.upload(target, &mut record, &drop).await;
                }
                self.delete_backups(drop).await;
                Ok(record)
            }
            Err(e) => {
                record.status = BackupStatus::Failed;
                record.error = Some(e.to_string().chars().take(500).collect());
                if let Err(put) = self.put(&record, false).await {
                    tracing::warn!(backup = %id, error = %put, "could not record the failed backup");
                }
                metrics::counter!("pbx_backups_total", "result" => "failed").increment(1);
                tracing::warn!(node = me, backup = %id, error = %e, "backup failed");
                self.events.raise(
                    "backup_failed",
                    Severity::Critical,
                    None,
                    format!("backup {id} on node {me} failed: {e}"),
                );
                Err(e)
            }
        }
    }

    async fn put(&self, record: &BackupRecord, create: bool) -> Result<Response, BackupError> {
        self.cluster
            .propose(Command::PutBackup {
                record: Box::new(record.clone()),
                create,
            })
            .await
            .map_err(|e| BackupError::Cluster(e.to_string()))
    }

    /// Exports the state, gathers the audio files it lists, and writes the archive.
    async fn write(&self, id: &str, passphrase: &str) -> Result<Written, BackupError> {
        let cluster_record = self
            .cluster
            .reader()
            .get::<ClusterRecord>(ClusterRecord::KEY)?
            .ok_or(BackupError::NoCluster)?;
        let state_path = self.dir.join(format!("{id}.state.{TEMP_EXTENSION}"));
        let _state_guard = RemoveOnDrop(state_path.clone());
        let reader = self.cluster.reader().clone();
        let path = state_path.clone();
        let (exported, audio) = tokio::task::spawn_blocking(move || export_state(&reader, &path))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;

        // Every file the exported index lists, fetched from a holder when this node has no copy.
        let blobs = Arc::clone(self.cluster.audio_dir());
        let mut files = Vec::with_capacity(audio.len());
        for file in audio {
            if !blobs.has(&file.id) {
                match self.audio.open(&file.id).await {
                    Ok(_) => {}
                    // Deleted since the export: the restore drops its index entry.
                    Err(crate::audio::AudioError::NotFound) => continue,
                    Err(e) => {
                        return Err(BackupError::Audio {
                            id: file.id,
                            reason: e.to_string(),
                        });
                    }
                }
            }
            let path = blobs.path(&file.id).map_err(|e| BackupError::Audio {
                id: file.id.clone(),
                reason: e.to_string(),
            })?;
            files.push((file, path));
        }

        let origin = Origin {
            cluster_id: cluster_record.cluster_id,
            node_id: self.cluster.node_id(),
            created_at: now_millis(),
            log_index: exported.last_index,
        };
        let final_path = self.dir.join(format!("{id}.{EXTENSION}"));
        let temp_path = self.dir.join(format!("{id}.{TEMP_EXTENSION}"));
        let passphrase = passphrase.to_owned();
        let cost = self.cost;
        tokio::task::spawn_blocking(move || {
            write_archive(
                &origin,
                &passphrase,
                cost,
                &state_path,
                &files,
                &temp_path,
                &final_path,
            )
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
    }

    /// Successful backups beyond the newest `keep`, and failed ones older than those.
    fn past_retention(&self, keep: u32) -> Vec<BackupRecord> {
        let Ok(mut all) = self.cluster.reader().list::<BackupRecord>() else {
            return Vec::new();
        };
        all.sort_by_key(|b| std::cmp::Reverse(b.started_at));
        let mut ok_seen = 0u32;
        let mut oldest_kept = None;
        let mut drop = Vec::new();
        for b in all {
            match b.status {
                BackupStatus::Ok if ok_seen < keep => {
                    ok_seen += 1;
                    oldest_kept = Some(b.started_at);
                }
                BackupStatus::Ok => drop.push(b),
                BackupStatus::Failed
                    if ok_seen >= keep && oldest_kept.is_some_and(|t| b.started_at < t) =>
                {
                    drop.push(b);
                }
                _ => {}
            }
        }
        drop
    }

    /// Copies the archive of `record` to the remote directory (deleting there the archives
    /// `drop` had uploaded), and records how that went.
    async fn upload(
        &self,
        target: &storage::backup::SftpTarget,
        record: &mut BackupRecord,
        drop: &[BackupRecord],
    ) {
        let name = format!("{}.{EXTENSION}", record.id);
        let old: Vec<String> = drop
            .iter()
            .filter(|b| b.remote.is_some())
            .map(|b| format!("{}.{EXTENSION}", b.id))
            .collect();
        let work = self.dir.join(format!("sftp-{}.work", record.id));
        let local = self.dir.join(&name);
        match sftp::upload(target, &work, &local, &name, &old).await {
            Ok(url) => {
                tracing::info!(backup = %record.id, %url, "backup uploaded");
                metrics::counter!("pbx_backup_uploads_total", "result" => "ok").increment(1);
                record.remote = Some(url);
            }
            Err(e) => {
                tracing::warn!(backup = %record.id, error = %e, "backup upload failed");
                metrics::counter!("pbx_backup_uploads_total", "result" => "failed").increment(1);
                self.events.raise(
                    "backup_failed",
                    Severity::Critical,
                    None,
                    format!(
                        "backup {} was written on node {} but not uploaded to {}: {e}",
                        record.id,
                        record.node_id,
                        sftp::url(target, &name)
                    ),
                );
                record.remote_error = Some(e.to_string().chars().take(500).collect());
            }
        }
        if let Err(e) = self.put(record, false).await {
            tracing::warn!(backup = %record.id, error = %e, "could not record the upload");
        }
    }

    async fn delete_backups(&self, drop: Vec<BackupRecord>) {
        for b in drop {
            match self
                .cluster
                .propose(Command::DeleteBackup { id: b.id.clone() })
                .await
            {
                Ok(_) => tracing::info!(backup = %b.id, "backup past retention deleted"),
                Err(e) => {
                    tracing::warn!(backup = %b.id, error = %e, "could not delete a backup past retention")
                }
            }
        }
        self.sweep();
    }

    /// Deletes this node's archives that no record names any more.
    pub(crate) fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
                continue;
            }
            let Some(id) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let named = self
                .cluster
                .reader()
                .get::<BackupRecord>(id)
                .ok()
                .flatten()
                .is_some_and(|b| b.node_id == self.cluster.node_id());
            if !named {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(backup = %id, "deleted an archive no backup record names")
                    }
                    Err(e) => {
                        tracing::warn!(backup = %id, error = %e, "could not delete an old archive")
                    }
                }
            }
        }
    }

    pub(crate) fn cluster(&self) -> &Cluster {
        &self.cluster
    }
}

/// What writing an archive produced.
struct Written {
    log_index: u64,
    size: u64,
    sha256: String,
    audio_files: u64,
}

/// `YYYYMMDDTHHMMSSZ` of a time in milliseconds (UTC).
fn stamp(millis: u64) -> String {
    let secs = i64::try_from(millis / 1000).unwrap_or(0);
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|_| format!("{secs}"))
}

/// Writes the state export to `path`; returns what it is as of and the audio files it lists.
fn export_state(
    reader: &storage::StateReader,
    path: &Path,
) -> Result<(storage::backup::Exported, Vec<AudioFile>), BackupError> {
    let file = std::fs::File::create(path)?;
    let (exported, out) = reader.export(BufWriter::new(file))?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    // The audio index as of the same log index, from the export itself.
    let mut import = StateImport::new(BufReader::new(std::fs::File::open(path)?))?;
    let mut audio = Vec::new();
    while let Some(row) = import.next_row()? {
        if row.table == Table::AudioFiles {
            audio.push(
                storage::codec::decode::<AudioFile>(&row.value)
                    .map_err(storage::StorageError::from)?,
            );
        }
    }
    Ok((exported, audio))
}

fn sha256_file(path: &Path) -> std::io::Result<(u64, [u8; 32])> {
    let mut file = BufReader::new(std::fs::File::open(path)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hasher.finalize().into()))
}

/// Counts and hashes what goes through it: the archive's own checksum, without reading it again.
struct Hashing<W: Write> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_archive(
    origin: &Origin,
    passphrase: &str,
    cost: KdfCost,
    state: &Path,
    audio: &[(AudioFile, PathBuf)],
    temp: &Path,
    final_path: &Path,
) -> Result<Written, BackupError> {
    let guard = RemoveOnDrop(temp.to_owned());
    let out = Hashing {
        inner: BufWriter::new(std::fs::File::create(temp)?),
        hasher: Sha256::new(),
        len: 0,
    };
    let mut w = ArchiveWriter::new(out, origin, passphrase, cost)?;
    let (size, sha) = sha256_file(state)?;
    w.entry(
        EntryKind::State,
        "state",
        size,
        sha,
        BufReader::new(std::fs::File::open(state)?),
    )?;
    for (file, path) in audio {
        let mut sha = [0u8; 32];
        hex::decode_to_slice(&file.sha256, &mut sha).map_err(|_| BackupError::Audio {
            id: file.id.clone(),
            reason: "its index entry has no valid SHA-256".into(),
        })?;
        let data = BufReader::new(std::fs::File::open(path)?);
        w.entry(EntryKind::Audio, &file.id, file.size, sha, data)?;
    }
    let out = w.finish()?;
    let Hashing { inner, hasher, len } = out;
    inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(temp, final_path)?;
    guard.disarm();
    if let Some(dir) = final_path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(Written {
        log_index: origin.log_index,
        size: len,
        sha256: hex::encode(hasher.finalize()),
        audio_files: audio.len() as u64,
    })
}

/// Leftovers of a backup interrupted by a crash.
fn remove_partial_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) == Some(TEMP_EXTENSION) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Removes a file when dropped, unless disarmed.
struct RemoveOnDrop(PathBuf);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = PathBuf::new();
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}
