//! The replicated state machine: applies committed entries to the tables, builds and installs snapshots.
//!
//! The tables are durable (RocksDB), so a snapshot is only needed to bring a lagging or new node up to
//! date and to let the log be purged. Snapshot files live in `snapshot_dir`, laid out as described in
//! [`crate::snapshot_file`]; `sm_meta` names the current one.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, StoredMembership};
use rocksdb::{DB, Direction, IteratorMode, WriteBatch};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::command::Txn;
use crate::error::{RaftError, raft};
use crate::snapshot_file::{Meta, SnapshotReader, SnapshotWriter, TeeReader};
use crate::tables::{CF_SM_META, Table, blocking, cf, prefix_bounds, synced};
use crate::{NodeAddr, NodeId, Response, StateReader, StorageError, TypeConfig, codec};

const KEY_LAST_APPLIED: &[u8] = b"last_applied";
const KEY_LAST_MEMBERSHIP: &[u8] = b"last_membership";
const KEY_CURRENT_SNAPSHOT: &[u8] = b"current_snapshot";
/// Present only while a snapshot install is under way; names the file to finish it from after a crash.
const KEY_INSTALLING: &[u8] = b"installing";

/// Rows loaded per write while installing a snapshot: bounds memory, whatever the snapshot's size.
const INSTALL_BATCH_BYTES: usize = 4 << 20;
/// Longest snapshot id we accept from a peer (it becomes a file name).
const MAX_SNAPSHOT_ID_LEN: usize = 128;

const SNAPSHOT_EXT: &str = "snap";
const TEMP_EXT: &str = "tmp";

type RaftResult<T> = Result<T, RaftError>;
type Membership = StoredMembership<NodeId, NodeAddr>;

/// A snapshot file and what it holds; stored as the current snapshot and as the install marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SnapshotFile {
    meta: Meta,
    file_name: String,
}

/// The snapshot directory, shared by the state machine and its snapshot builders.
struct SnapshotDir {
    path: PathBuf,
    /// Serialises publishing a built snapshot, installing one and reading the current one, so that a
    /// build that finishes during an install cannot replace the newer installed snapshot.
    lock: tokio::sync::Mutex<()>,
}

/// The state machine store handed to openraft.
pub struct StateMachineStore {
    db: Arc<DB>,
    snapshots: Arc<SnapshotDir>,
    reader: StateReader,
    last_applied: Option<LogId<NodeId>>,
    last_membership: Membership,
}

impl StateMachineStore {
    pub(crate) fn open(
        db: Arc<DB>,
        snapshot_dir: PathBuf,
        reader: StateReader,
    ) -> Result<Self, StorageError> {
        std::fs::create_dir_all(&snapshot_dir)?;
        remove_temp_files(&snapshot_dir);

        if let Some(marker) = read_meta::<SnapshotFile>(&db, KEY_INSTALLING)? {
            tracing::warn!(
                snapshot = %marker.meta.snapshot_id,
                "finishing a snapshot install that was interrupted"
            );
            load_snapshot(&db, &snapshot_dir, &marker)?;
        }

        let mut current = read_meta::<SnapshotFile>(&db, KEY_CURRENT_SNAPSHOT)?;
        if let Some(cur) = &current
            && !snapshot_dir.join(&cur.file_name).is_file()
        {
            // Forget it rather than fail every `get_current_snapshot`: openraft builds a new one.
            tracing::warn!(file = %cur.file_name, "current snapshot file is missing; forgetting it");
            db.delete_cf_opt(cf(&db, CF_SM_META)?, KEY_CURRENT_SNAPSHOT, &synced())?;
            current = None;
        }
        remove_other_snapshots(
            &snapshot_dir,
            current.as_ref().map(|c| c.file_name.as_str()),
        );

        let last_applied = read_meta::<Option<LogId<NodeId>>>(&db, KEY_LAST_APPLIED)?.flatten();
        let last_membership =
            read_meta::<Membership>(&db, KEY_LAST_MEMBERSHIP)?.unwrap_or_default();
        reader.publish(last_applied);
        tracing::info!(?last_applied, "state machine opened");

        let snapshots = Arc::new(SnapshotDir {
            path: snapshot_dir,
            lock: tokio::sync::Mutex::new(()),
        });
        Ok(Self {
            db,
            snapshots,
            reader,
            last_applied,
            last_membership,
        })
    }
}

fn read_meta<T: DeserializeOwned>(db: &DB, key: &[u8]) -> Result<Option<T>, StorageError> {
    match db.get_pinned_cf(cf(db, CF_SM_META)?, key)? {
        Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
        None => Ok(None),
    }
}

/// The tables as `Command::apply` sees them during one `apply` call: the batch's own writes first, then
/// the database.
struct BatchTxn<'a> {
    db: &'a DB,
    batch: WriteBatch,
    overlay: HashMap<(Table, String), Option<Vec<u8>>>,
    /// The first database failure. `Txn` has no error channel (commands are pure), so it is kept here
    /// and the whole batch is refused once the command returns.
    error: RefCell<Option<StorageError>>,
}

impl<'a> BatchTxn<'a> {
    fn new(db: &'a DB) -> Self {
        Self {
            db,
            batch: WriteBatch::default(),
            overlay: HashMap::new(),
            error: RefCell::new(None),
        }
    }

    fn fail(&self, e: StorageError) {
        self.error.borrow_mut().get_or_insert(e);
    }

    fn take_error(&self) -> Option<StorageError> {
        self.error.borrow_mut().take()
    }
}

impl Txn for BatchTxn<'_> {
    fn get(&self, table: Table, key: &str) -> Option<Vec<u8>> {
        if let Some(value) = self.overlay.get(&(table, key.to_owned())) {
            return value.clone();
        }
        let read = cf(self.db, table.cf_name()).and_then(|cf| Ok(self.db.get_cf(cf, key)?));
        read.unwrap_or_else(|e| {
            self.fail(e);
            None
        })
    }

    fn keys_with_prefix(&self, table: Table, prefix: &str) -> Vec<String> {
        let mut keys = std::collections::BTreeSet::new();
        match cf(self.db, table.cf_name()) {
            Ok(handle) => {
                let mode = IteratorMode::From(prefix.as_bytes(), Direction::Forward);
                let bounds = prefix_bounds(prefix.as_bytes());
                for item in self.db.iterator_cf_opt(handle, bounds, mode) {
                    match item {
                        Ok((key, _)) if key.starts_with(prefix.as_bytes()) => {
                            keys.insert(String::from_utf8_lossy(&key).into_owned());
                        }
                        Ok(_) => break,
                        Err(e) => {
                            self.fail(e.into());
                            break;
                        }
                    }
                }
            }
            Err(e) => self.fail(e),
        }
        // The batch's own writes win over what the database holds.
        for ((t, key), value) in &self.overlay {
            if *t == table && key.starts_with(prefix) {
                if value.is_some() {
                    keys.insert(key.clone());
                } else {
                    keys.remove(key);
                }
            }
        }
        keys.into_iter().collect()
    }

    fn keys_after(&self, table: Table, after: Option<&str>, limit: usize) -> Vec<String> {
        let deleted = |key: &str| matches!(self.overlay.get(&(table, key.to_owned())), Some(None));
        let mut keys = Vec::new();
        match cf(self.db, table.cf_name()) {
            Ok(handle) => {
                let mode = after.map_or(IteratorMode::Start, |a| {
                    IteratorMode::From(a.as_bytes(), Direction::Forward)
                });
                for item in self.db.iterator_cf(handle, mode) {
                    if keys.len() >= limit {
                        break;
                    }
                    match item {
                        Ok((key, _)) if after.is_some_and(|a| *key == *a.as_bytes()) => {}
                        Ok((key, _)) => {
                            let key = String::from_utf8_lossy(&key).into_owned();
                            if !deleted(&key) {
                                keys.push(key);
                            }
                        }
                        Err(e) => {
                            self.fail(e.into());
                            break;
                        }
                    }
                }
            }
            Err(e) => self.fail(e),
        }
        // The first `limit` keys are among the first `limit` the database still holds and the keys
        // the batch put.
        for ((t, key), value) in &self.overlay {
            if *t == table && value.is_some() && after.is_none_or(|a| key.as_str() > a) {
                keys.push(key.clone());
            }
        }
        keys.sort();
        keys.dedup();
        keys.truncate(limit);
        keys
    }

    fn put(&mut self, table: Table, key: &str, value: Vec<u8>) {
        match cf(self.db, table.cf_name()) {
            Ok(cf) => self.batch.put_cf(cf, key, &value),
            Err(e) => self.fail(e),
        }
        self.overlay.insert((table, key.to_owned()), Some(value));
    }

    fn delete(&mut self, table: Table, key: &str) {
        match cf(self.db, table.cf_name()) {
            Ok(cf) => self.batch.delete_cf(cf, key),
            Err(e) => self.fail(e),
        }
        self.overlay.insert((table, key.to_owned()), None);
    }
}

/// What one `apply` call did.
struct Applied {
    /// Some entry changed routing configuration.
    routing: bool,
    /// Some entry changed the audio index.
    audio: bool,
    responses: Vec<Response>,
    last_applied: Option<LogId<NodeId>>,
    last_membership: Membership,
}

/// Applies `entries` to the tables as one atomic write. A failure names the entry it happened at.
fn apply_entries(
    db: &DB,
    entries: impl Iterator<Item = Entry<TypeConfig>>,
    mut last_membership: Membership,
) -> Result<Applied, (LogId<NodeId>, StorageError)> {
    let mut txn = BatchTxn::new(db);
    let mut responses = Vec::new();
    let mut last_applied = None;
    let mut routing = false;
    let mut audio = false;
    for entry in entries {
        let log_id = entry.log_id;
        last_applied = Some(log_id);
        let response = match entry.payload {
            EntryPayload::Blank => Response::Ok,
            EntryPayload::Membership(membership) => {
                last_membership = StoredMembership::new(Some(log_id), membership);
                Response::Ok
            }
            EntryPayload::Normal(command) => {
                routing |= command.changes_routing();
                audio |= command.changes_audio();
                let response = command.apply(&mut txn).map_err(|e| (log_id, e.into()))?;
                if let Some(e) = txn.take_error() {
                    return Err((log_id, e));
                }
                tracing::trace!(%log_id, kind = command.kind(), ?response, "applied");
                response
            }
        };
        responses.push(response);
    }
    let Some(last) = last_applied else {
        return Ok(Applied {
            routing,
            audio,
            responses,
            last_applied,
            last_membership,
        });
    };

    let write = || -> Result<(), StorageError> {
        let mut batch = txn.batch;
        let sm_meta = cf(db, CF_SM_META)?;
        batch.put_cf(sm_meta, KEY_LAST_APPLIED, codec::encode(&last_applied)?);
        batch.put_cf(
            sm_meta,
            KEY_LAST_MEMBERSHIP,
            codec::encode(&last_membership)?,
        );
        // Not synced: these entries are already durable in the log (appended with fsync), so a crash
        // that loses this write only means re-applying them at startup. The database has one WAL, so
        // this write is ordered before, and made durable by, the next synced write (vote or append).
        Ok(db.write(batch)?)
    };
    write().map_err(|e| (last, e))?;
    Ok(Applied {
        routing,
        audio,
        responses,
        last_applied,
        last_membership,
    })
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> RaftResult<(Option<LogId<NodeId>>, Membership)> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> RaftResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let applied = apply_entries(&self.db, entries.into_iter(), self.last_membership.clone())
            .map_err(|(log_id, e)| raft::apply(log_id, e))?;
        if applied.last_applied.is_some() {
            self.last_applied = applied.last_applied;
            self.last_membership = applied.last_membership;
            if applied.routing {
                self.reader.routing_changed();
            }
            if applied.audio {
                self.reader.audio_changed();
            }
            self.reader.publish(applied.last_applied);
        }
        Ok(applied.responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: Arc::clone(&self.db),
            snapshots: Arc::clone(&self.snapshots),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> RaftResult<Box<tokio::fs::File>> {
        let path = self.snapshots.path.join(temp_name("receive"));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| raft::write_snapshot(None, e))?;
        // Unlinked at once: the handle keeps the data while openraft writes into it, and an abandoned
        // transfer leaves nothing behind. `install_snapshot` copies what it validates into a named file.
        if let Err(e) = tokio::fs::remove_file(&path).await {
            tracing::warn!(path = %path.display(), error = %e, "could not unlink snapshot receive file");
        }
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<tokio::fs::File>,
    ) -> RaftResult<()> {
        let _guard = self.snapshots.lock.lock().await;
        tracing::info!(snapshot = %meta.snapshot_id, last_log_id = ?meta.last_log_id, "installing snapshot");
        // `into_std` waits for writes still in flight from the transfer.
        let input = snapshot.into_std().await;
        let db = Arc::clone(&self.db);
        let dir = self.snapshots.path.clone();
        let owned_meta = meta.clone();
        blocking(move || install(&db, &dir, input, &owned_meta))
            .await
            .map_err(|e| raft::write_snapshot(Some(meta), e))?;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        self.reader.routing_changed();
        self.reader.audio_changed();
        self.reader.publish(meta.last_log_id);
        tracing::info!(snapshot = %meta.snapshot_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> RaftResult<Option<Snapshot<TypeConfig>>> {
        let _guard = self.snapshots.lock.lock().await;
        let Some(current) = read_meta::<SnapshotFile>(&self.db, KEY_CURRENT_SNAPSHOT)
            .map_err(|e| raft::read_snapshot(None, e))?
        else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(self.snapshots.path.join(&current.file_name))
            .await
            .map_err(|e| raft::read_snapshot(Some(&current.meta), e))?;
        Ok(Some(Snapshot {
            meta: current.meta,
            snapshot: Box::new(file),
        }))
    }
}

/// Builds a snapshot from a point-in-time view of the database, concurrently with `apply`.
pub struct SnapshotBuilder {
    db: Arc<DB>,
    snapshots: Arc<SnapshotDir>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> RaftResult<Snapshot<TypeConfig>> {
        let db = Arc::clone(&self.db);
        let dir = self.snapshots.path.clone();
        let (meta, temp) = blocking(move || write_snapshot(&db, &dir))
            .await
            .map_err(|e| raft::write_snapshot(None, e))?;

        let _guard = self.snapshots.lock.lock().await;
        let db = Arc::clone(&self.db);
        let dir = self.snapshots.path.clone();
        let published = meta.clone();
        let file = blocking(move || publish_snapshot(&db, &dir, &published, &temp))
            .await
            .map_err(|e| raft::write_snapshot(Some(&meta), e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }
}

/// A file name in the snapshot directory that no other call uses; removed at open if left behind.
fn temp_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}.{}-{n}.{TEMP_EXT}", std::process::id())
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Removes a temporary file if the operation that made it fails.
struct TempGuard(Option<PathBuf>);

impl TempGuard {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take()
            && let Err(e) = std::fs::remove_file(&path)
        {
            tracing::warn!(path = %path.display(), error = %e, "could not remove temporary snapshot file");
        }
    }
}

/// Streams every table, as of one RocksDB snapshot, into a synced temporary file.
fn write_snapshot(db: &DB, dir: &Path) -> Result<(Meta, PathBuf), StorageError> {
    let view = db.snapshot();
    let meta = view_meta(db, &view)?;
    let temp = dir.join(temp_name(&meta.snapshot_id));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)?;
    let guard = TempGuard(Some(temp.clone()));
    let (out, rows) = write_view(db, &view, &meta, BufWriter::new(file))?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    guard.keep();
    tracing::info!(snapshot = %meta.snapshot_id, rows, "snapshot built");
    Ok((meta, temp))
}

/// Writes every table, as of one RocksDB snapshot, in the snapshot file format to `out` (a
/// backup's copy of the state); returns the snapshot's meta and its row count.
pub(crate) fn export<W: Write>(db: &DB, out: W) -> Result<(Meta, u64, W), StorageError> {
    let view = db.snapshot();
    let meta = view_meta(db, &view)?;
    let (out, rows) = write_view(db, &view, &meta, out)?;
    Ok((meta, rows, out))
}

/// The meta of a snapshot of `view`: its last applied log id and membership.
fn view_meta(db: &DB, view: &rocksdb::Snapshot<'_>) -> Result<Meta, StorageError> {
    let sm_meta = cf(db, CF_SM_META)?;
    let raw_meta =
        |key: &[u8]| -> Result<Option<Vec<u8>>, StorageError> { Ok(view.get_cf(sm_meta, key)?) };
    let last_log_id: Option<LogId<NodeId>> = raw_meta(KEY_LAST_APPLIED)?
        .map(|b| codec::decode(&b))
        .transpose()?
        .flatten();
    let last_membership: Membership = raw_meta(KEY_LAST_MEMBERSHIP)?
        .map(|b| codec::decode(&b))
        .transpose()?
        .unwrap_or_default();
    let (term, index) = last_log_id.map_or((0, 0), |id| (id.leader_id.term, id.index));
    Ok(Meta {
        last_log_id,
        last_membership,
        snapshot_id: format!("{term}-{index}-{}", unix_millis()),
    })
}

fn write_view<W: Write>(
    db: &DB,
    view: &rocksdb::Snapshot<'_>,
    meta: &Meta,
    out: W,
) -> Result<(W, u64), StorageError> {
    let mut writer = SnapshotWriter::new(out, meta)?;
    let mut rows = 0u64;
    for table in Table::ALL {
        for item in view.iterator_cf(cf(db, table.cf_name())?, IteratorMode::Start) {
            let (key, value) = item?;
            writer.row(table, &key, &value)?;
            rows += 1;
        }
    }
    Ok((writer.finish()?, rows))
}

/// Makes a built snapshot the current one, unless a newer one was installed while it was being built,
/// and returns it opened for reading.
fn publish_snapshot(db: &DB, dir: &Path, meta: &Meta, temp: &Path) -> Result<File, StorageError> {
    let current = read_meta::<SnapshotFile>(db, KEY_CURRENT_SNAPSHOT)?;
    if current
        .as_ref()
        .is_some_and(|c| c.meta.last_log_id > meta.last_log_id)
    {
        tracing::info!(snapshot = %meta.snapshot_id, "a newer snapshot was installed meanwhile; not keeping this one");
        // The open handle outlives the unlinked file, so the caller can still stream it.
        let file = File::open(temp)?;
        std::fs::remove_file(temp)?;
        return Ok(file);
    }
    let file_name = format!("{}.{SNAPSHOT_EXT}", meta.snapshot_id);
    let path = dir.join(&file_name);
    std::fs::rename(temp, &path)?;
    sync_dir(dir)?;
    let record = SnapshotFile {
        meta: meta.clone(),
        file_name,
    };
    db.put_cf_opt(
        cf(db, CF_SM_META)?,
        KEY_CURRENT_SNAPSHOT,
        codec::encode(&record)?,
        &synced(),
    )?;
    remove_other_snapshots(dir, Some(&record.file_name));
    Ok(File::open(&path)?)
}

/// Validates a received snapshot while saving a copy of it, then replaces the tables with its contents.
fn install(db: &DB, dir: &Path, mut input: File, meta: &Meta) -> Result<(), StorageError> {
    let id = &meta.snapshot_id;
    if id.is_empty()
        || id.len() > MAX_SNAPSHOT_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(StorageError::corrupt(format!(
            "unacceptable snapshot id {id:?}"
        )));
    }
    input.seek(SeekFrom::Start(0))?;

    // 1. Validate every record (framing, bounds, count, checksum) while copying into our own file, so
    //    that a bad snapshot is refused before the tables are touched.
    let temp = dir.join(temp_name(id));
    let copy = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)?;
    let guard = TempGuard(Some(temp.clone()));
    let mut tee = TeeReader {
        input: BufReader::new(input),
        copy: BufWriter::new(copy),
    };
    let (mut reader, file_meta) = SnapshotReader::new(&mut tee)?;
    if file_meta != *meta {
        return Err(StorageError::corrupt(format!(
            "snapshot file holds {file_meta:?}, openraft installs {meta:?}"
        )));
    }
    while reader.next_row()?.is_some() {}
    let copy = tee.copy.into_inner().map_err(|e| e.into_error())?;
    copy.sync_all()?;
    let file_name = format!("{id}.{SNAPSHOT_EXT}");
    std::fs::rename(&temp, dir.join(&file_name))?;
    guard.keep();
    sync_dir(dir)?;

    // 2. From here a crash is finished at the next open, from the saved file.
    let marker = SnapshotFile {
        meta: meta.clone(),
        file_name,
    };
    db.put_cf_opt(
        cf(db, CF_SM_META)?,
        KEY_INSTALLING,
        codec::encode(&marker)?,
        &synced(),
    )?;
    load_snapshot(db, dir, &marker)?;
    remove_other_snapshots(dir, Some(&marker.file_name));
    Ok(())
}

/// Replaces every table with the contents of the marker's file, in bounded batches, then records the
/// snapshot as applied and current and clears the marker in one synced write. Safe to re-run.
fn load_snapshot(db: &DB, dir: &Path, marker: &SnapshotFile) -> Result<(), StorageError> {
    let file = File::open(dir.join(&marker.file_name))?;
    let (mut reader, file_meta) = SnapshotReader::new(BufReader::new(file))?;
    if file_meta != marker.meta {
        return Err(StorageError::corrupt(format!(
            "snapshot file {} does not match its marker",
            marker.file_name
        )));
    }

    let mut batch = WriteBatch::default();
    for table in Table::ALL {
        let cf = cf(db, table.cf_name())?;
        if let Some(item) = db.iterator_cf(cf, IteratorMode::End).next() {
            let (last, _) = item?;
            batch.delete_range_cf(cf, &[] as &[u8], &last[..]);
            batch.delete_cf(cf, &last);
        }
    }
    // Unsynced, like the loads below: until the final synced write clears the marker, a crash just
    // means starting over from the file.
    db.write(batch)?;

    let mut batch = WriteBatch::default();
    let mut rows = 0u64;
    while let Some(row) = reader.next_row()? {
        batch.put_cf(cf(db, row.table.cf_name())?, row.key, row.value);
        rows += 1;
        if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
            db.write(std::mem::take(&mut batch))?;
        }
    }

    let sm_meta = cf(db, CF_SM_META)?;
    batch.put_cf(
        sm_meta,
        KEY_LAST_APPLIED,
        codec::encode(&marker.meta.last_log_id)?,
    );
    batch.put_cf(
        sm_meta,
        KEY_LAST_MEMBERSHIP,
        codec::encode(&marker.meta.last_membership)?,
    );
    batch.put_cf(sm_meta, KEY_CURRENT_SNAPSHOT, codec::encode(marker)?);
    batch.delete_cf(sm_meta, KEY_INSTALLING);
    db.write_opt(batch, &synced())?;
    tracing::debug!(snapshot = %marker.meta.snapshot_id, rows, "snapshot loaded into the tables");
    Ok(())
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Removes snapshot files other than `keep`. Failures are logged: a stale file wastes space, nothing more.
fn remove_other_snapshots(dir: &Path, keep: Option<&str>) {
    remove_files(dir, |name| {
        name.ends_with(&format!(".{SNAPSHOT_EXT}")) && Some(name) != keep
    });
}

/// Removes temporary files left by a crash; only called at open, when nothing else uses the directory.
fn remove_temp_files(dir: &Path) {
    remove_files(dir, |name| name.ends_with(&format!(".{TEMP_EXT}")));
}

fn remove_files(dir: &Path, matches: impl Fn(&str) -> bool) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "could not list snapshot directory");
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if matches(name) {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(file = name, error = %e, "could not remove old snapshot file");
            } else {
                tracing::debug!(file = name, "removed old snapshot file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};

    use super::*;
    use crate::model::{Extension, SipCredentials};
    use crate::{Command, StateReader};

    fn ext(number: &str) -> Extension {
        Extension {
            number: number.into(),
            display_name: String::new(),
            credentials: SipCredentials {
                username: number.into(),
                realm: "pbx".into(),
                ha1_md5: String::new(),
                ha1_sha256: String::new(),
                changed_at: 0,
            },
            permission_group: "internal".into(),
            enabled: true,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn create(index: u64, number: &str) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Command::CreateExtension(ext(number))),
        }
    }

    fn numbers(reader: &StateReader) -> Vec<String> {
        reader
            .list::<Extension>()
            .unwrap()
            .into_iter()
            .map(|e| e.number)
            .collect()
    }

    /// A store with `n` extensions and a snapshot of them.
    async fn leader(dir: &Path, n: u64) -> (StateMachineStore, StateReader, Snapshot<TypeConfig>) {
        let (_log, mut sm, reader) = crate::open(dir).unwrap();
        sm.apply((1..=n).map(|i| create(i, &format!("{}", 1000 + i))))
            .await
            .unwrap();
        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        (sm, reader, snapshot)
    }

    #[tokio::test]
    async fn cdrs_stored_before_the_index_are_indexed_in_batches_across_one_apply() {
        use crate::command::tests::cdr;
        use crate::model::{CallDetail, CdrIndexEntry, CdrIndexProgress};
        use crate::{Record as _, Response};

        let dir = tempfile::TempDir::new().unwrap();
        let (_log, mut sm, reader) = crate::open(dir.path()).unwrap();
        // Five CDRs as a build without the index stored them: no entries.
        let table = cf(&sm.db, Table::Cdrs.cf_name()).unwrap();
        for t in [0, 10, 20, 30, 40] {
            let c = cdr(t, &format!("old{t}"));
            sm.db
                .put_cf(table, c.key(), codec::encode(&c).unwrap())
                .unwrap();
        }
        let key = |t: u64| Some(CallDetail::key_for(t, &format!("old{t}")));
        let entry = |index: u64, command: Command| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(command),
        };
        let batch = |after| Command::IndexCdrs { after, limit: 2 };
        let ended = cdr(15, "new");
        let entries = [
            entry(1, batch(None)),
            // A call ends between two batches, in the same apply: the next batch reads past it from
            // the batch's own writes and the database together.
            entry(
                2,
                Command::EndCall {
                    call_id: "new".into(),
                    cdr: Box::new(ended.clone()),
                },
            ),
            entry(3, batch(key(10))),
            entry(4, batch(None)),
            entry(5, batch(key(20))),
        ];
        let responses = sm.apply(entries).await.unwrap();
        assert!(matches!(responses[3], Response::Conflict { .. }), "stale");
        assert_eq!(responses.iter().filter(|r| **r == Response::Ok).count(), 4);
        let progress = reader
            .get::<CdrIndexProgress>(CdrIndexProgress::KEY)
            .unwrap()
            .unwrap();
        assert_eq!(progress.indexed_through, key(40));
        assert!(!progress.complete, "the last batch was full");
        sm.apply([entry(6, batch(key(40)))]).await.unwrap();
        let progress = reader
            .get::<CdrIndexProgress>(CdrIndexProgress::KEY)
            .unwrap()
            .unwrap();
        assert!(progress.complete);
        let indexed: Vec<String> = reader
            .scan_prefix::<CdrIndexEntry>(&CdrIndexEntry::prefix("1002"))
            .unwrap()
            .into_iter()
            .map(|e| e.cdr_key)
            .collect();
        let mut want: Vec<String> = [0, 10, 20, 30, 40].map(|t| key(t).unwrap()).into();
        want.insert(2, ended.key());
        assert_eq!(indexed, want);
        assert_eq!(reader.count::<CdrIndexEntry>().unwrap(), 12);
    }

    #[tokio::test]
    async fn a_crash_mid_install_is_finished_on_open() {
        let leader_dir = tempfile::TempDir::new().unwrap();
        let (_sm, leader_reader, snapshot) = leader(leader_dir.path(), 300).await;
        let meta = snapshot.meta.clone();
        let file_name = format!("{}.{SNAPSHOT_EXT}", meta.snapshot_id);

        let dir = tempfile::TempDir::new().unwrap();
        {
            let (_log, mut sm, reader) = crate::open(dir.path()).unwrap();
            sm.apply([create(1, "5555"), create(2, "1001")])
                .await
                .unwrap();
            // What `install` leaves behind if the process dies while loading rows: the saved file, the
            // marker, a half-cleared table and only some of the snapshot's rows.
            let snapshots = dir.path().join("snapshots");
            std::fs::copy(
                leader_dir.path().join("snapshots").join(&file_name),
                snapshots.join(&file_name),
            )
            .unwrap();
            let marker = SnapshotFile {
                meta: meta.clone(),
                file_name: file_name.clone(),
            };
            let db = &sm.db;
            db.put_cf_opt(
                cf(db, CF_SM_META).unwrap(),
                KEY_INSTALLING,
                codec::encode(&marker).unwrap(),
                &synced(),
            )
            .unwrap();
            let table = cf(db, Table::Extensions.cf_name()).unwrap();
            db.delete_cf(table, "1001").unwrap();
            db.put_cf(table, "1002", codec::encode(&ext("1002")).unwrap())
                .unwrap();
            assert_eq!(numbers(&reader), ["1002", "5555"]);
        }

        let (_log, mut sm, reader) = crate::open(dir.path()).unwrap();
        assert_eq!(numbers(&reader), numbers(&leader_reader));
        assert_eq!(reader.count::<Extension>().unwrap(), 300);
        assert_eq!(
            sm.applied_state().await.unwrap(),
            (meta.last_log_id, meta.last_membership.clone())
        );
        assert_eq!(reader.last_applied(), meta.last_log_id);
        assert_eq!(reader.applied_index(), 300);
        assert!(
            read_meta::<SnapshotFile>(&sm.db, KEY_INSTALLING)
                .unwrap()
                .is_none(),
            "marker cleared"
        );
        assert_eq!(sm.get_current_snapshot().await.unwrap().unwrap().meta, meta);
    }

    #[tokio::test]
    async fn a_marker_naming_a_missing_file_fails_open_without_panicking() {
        let dir = tempfile::TempDir::new().unwrap();
        {
            let (sm, _reader, snapshot) = leader(dir.path(), 3).await;
            let marker = SnapshotFile {
                meta: snapshot.meta,
                file_name: "gone.snap".into(),
            };
            let db = &sm.db;
            db.put_cf(
                cf(db, CF_SM_META).unwrap(),
                KEY_INSTALLING,
                codec::encode(&marker).unwrap(),
            )
            .unwrap();
        }
        assert!(matches!(crate::open(dir.path()), Err(StorageError::Io(_))));
    }

    #[tokio::test]
    async fn a_snapshot_id_that_is_not_a_plain_name_is_refused() {
        let dir = tempfile::TempDir::new().unwrap();
        let (sm, _reader, snapshot) = leader(dir.path(), 3).await;
        let mut meta = snapshot.meta;
        meta.snapshot_id = "../escaped".into();
        // A well-formed file claiming that id, so that only the id check can refuse it.
        let path = dir.path().join("crafted");
        let writer = SnapshotWriter::new(File::create(&path).unwrap(), &meta).unwrap();
        writer.finish().unwrap().sync_all().unwrap();

        let snapshots = dir.path().join("snapshots");
        let result = install(&sm.db, &snapshots, File::open(&path).unwrap(), &meta);
        assert!(
            matches!(result, Err(StorageError::Corrupt(_))),
            "{result:?}"
        );
        assert!(!dir.path().join("escaped.snap").exists());
    }
}
