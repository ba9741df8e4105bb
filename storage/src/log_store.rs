//! The Raft log and vote, in the `raft_log` and `raft_meta` column families.
//!
//! openraft drives this store from one task and awaits each call, so writes are already serialised.
//! Besides the database the store keeps only [`LogTail`], a copy of the newest entries that clones
//! (the log readers used by replication) share; see that module for how it stays behind the disk.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, PoisonError};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, Vote};
use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{RaftError, raft};
use crate::log_tail::{LogTail, TAIL_BYTES};
use crate::tables::{CF_RAFT_LOG, CF_RAFT_META, blocking, cf, synced};
use crate::{NodeId, StorageError, TypeConfig, codec};

const KEY_VOTE: &[u8] = b"vote";
const KEY_LAST_PURGED: &[u8] = b"last_purged_log_id";
const KEY_COMMITTED: &[u8] = b"committed";

/// Sorts after every 8-byte index key: the exclusive end of "everything from here on".
const PAST_LAST_KEY: [u8; 9] = [0xff; 9];

/// How much of the log (as stored, encoded) one AppendEntries carries at most. openraft gives each
/// AppendEntries the heartbeat interval (50 ms by default) to be answered, and otherwise up to 300
/// entries: a follower catching up on an import's entries (~92 KB each, 500 extensions) was sent
/// ~27 MB at a time, which it could never write and acknowledge in time, so the same batch timed out
/// over and over. A quarter of a megabyte takes a few milliseconds on loopback or a LAN.
pub const REPLICATION_BATCH_BYTES: usize = 256 * 1024;

type RaftResult<T> = Result<T, RaftError>;

/// The Raft log store. Cheap to clone: clones share the database and the tail.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    tail: Arc<Mutex<LogTail>>,
}

fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn parse_log_key(key: &[u8]) -> Result<u64, StorageError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StorageError::corrupt(format!("raft log key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

impl LogStore {
    pub(crate) fn open(db: Arc<DB>) -> Result<Self, StorageError> {
        // Fail at startup, not at the first Raft call, if the database lacks our column families.
        cf(&db, CF_RAFT_LOG)?;
        cf(&db, CF_RAFT_META)?;
        Ok(Self {
            db,
            tail: Arc::new(Mutex::new(LogTail::new(TAIL_BYTES))),
        })
    }

    /// The tail, under its lock. Nothing panics while holding it, and every change leaves it
    /// consistent, so a poisoned lock still holds a usable tail.
    fn tail(&self) -> std::sync::MutexGuard<'_, LogTail> {
        self.tail.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        let cf = cf(&self.db, CF_RAFT_META)?;
        match self.db.get_pinned_cf(cf, key)? {
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    async fn write_meta<T: Serialize>(
        &self,
        key: &'static [u8],
        value: &T,
        sync: bool,
    ) -> Result<(), StorageError> {
        let bytes = codec::encode(value)?;
        let db = Arc::clone(&self.db);
        blocking(move || {
            let mut batch = WriteBatch::default();
            batch.put_cf(cf(&db, CF_RAFT_META)?, key, bytes);
            let opts = if sync {
                synced()
            } else {
                WriteOptions::default()
            };
            Ok(db.write_opt(batch, &opts)?)
        })
        .await
    }

    /// Entries from `start` up to `end` (exclusive), stopping before the entry that would take the
    /// bytes read (as stored) past `budget`; always at least one entry when the range holds any.
    fn read_range(
        &self,
        start: u64,
        end: Option<u64>,
        budget: usize,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        if let Some(entries) = end.and_then(|end| self.tail().read(start, end, budget)) {
            metrics::counter!("pbx_raft_log_reads_total", "from" => "memory").increment(1);
            return Ok(entries);
        }
        metrics::counter!("pbx_raft_log_reads_total", "from" => "disk").increment(1);
        let cf = cf(&self.db, CF_RAFT_LOG)?;
        let start_key = log_key(start);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&start_key, Direction::Forward))
        {
            let (key, value) = item?;
            let index = parse_log_key(&key)?;
            bytes = bytes.saturating_add(value.len());
            if end.is_some_and(|end| index >= end) || (bytes > budget && !out.is_empty()) {
                break;
            }
            let entry: Entry<TypeConfig> = codec::decode(&value)?;
            if entry.log_id.index != index {
                return Err(StorageError::corrupt(format!(
                    "raft log key {index} holds entry {}",
                    entry.log_id.index
                )));
            }
            out.push(entry);
        }
        Ok(out)
    }

    fn last_log_id(&self) -> Result<Option<LogId<NodeId>>, StorageError> {
        let cf = cf(&self.db, CF_RAFT_LOG)?;
        match self.db.iterator_cf(cf, IteratorMode::End).next() {
            Some(item) => {
                let (_, value) = item?;
                let entry: Entry<TypeConfig> = codec::decode(&value)?;
                Ok(Some(entry.log_id))
            }
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> RaftResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => match s.checked_add(1) {
                Some(s) => s,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => None,
        };
        self.read_range(start, end, usize::MAX)
            .map_err(raft::read_logs)
    }

    /// What replication sends: at most [`REPLICATION_BATCH_BYTES`] (and at least one entry).
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> RaftResult<Vec<Entry<TypeConfig>>> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.read_range(start, Some(end), REPLICATION_BATCH_BYTES)
            .map_err(raft::read_logs)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> RaftResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> =
            self.read_meta(KEY_LAST_PURGED).map_err(raft::read_logs)?;
        let last_log_id = self
            .last_log_id()
            .map_err(raft::read_logs)?
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> RaftResult<()> {
        // The vote must be on disk before we answer a vote request: synced.
        self.write_meta(KEY_VOTE, vote, true)
            .await
            .map_err(raft::write_vote)
    }

    async fn read_vote(&mut self) -> RaftResult<Option<Vote<NodeId>>> {
        self.read_meta(KEY_VOTE).map_err(raft::read_vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> RaftResult<()> {
        // Only a hint for re-applying at startup (the applied state is itself durable), so no fsync:
        // the next synced write carries it.
        self.write_meta(KEY_COMMITTED, &committed, false)
            .await
            .map_err(raft::write_committed)
    }

    async fn read_committed(&mut self) -> RaftResult<Option<LogId<NodeId>>> {
        let committed: Option<Option<LogId<NodeId>>> = self
            .read_meta(KEY_COMMITTED)
            .map_err(raft::read_committed)?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> RaftResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        let mut kept = Vec::new();
        for entry in entries {
            let bytes = codec::encode(&entry).map_err(raft::write_logs)?;
            let size = bytes.len();
            encoded.push((log_key(entry.log_id.index), bytes));
            kept.push((entry, size));
        }
        if encoded.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        let db = Arc::clone(&self.db);
        // One batch and one fsync for the whole call: openraft hands us every entry that queued up while
        // the previous fsync ran, which is what makes the write rate independent of the fsync latency.
        let written = blocking(move || {
            let mut batch = WriteBatch::default();
            let cf = cf(&db, CF_RAFT_LOG)?;
            for (key, value) in encoded {
                batch.put_cf(cf, key, value);
            }
            Ok(db.write_opt(batch, &synced())?)
        })
        .await;
        match written {
            Ok(()) => {
                // On disk now, so readers may have them from memory.
                self.tail().appended(kept);
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "appending to the raft log failed");
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(raft::write_logs(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> RaftResult<()> {
        tracing::debug!(%log_id, "truncating raft log");
        // Out of memory before off the disk: a reader never gets from the tail what the disk lost.
        self.tail().truncate_from(log_id.index);
        let db = Arc::clone(&self.db);
        blocking(move || {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(
                cf(&db, CF_RAFT_LOG)?,
                log_key(log_id.index).as_slice(),
                PAST_LAST_KEY.as_slice(),
            );
            // Synced so that conflicting entries cannot come back after a crash.
            Ok(db.write_opt(batch, &synced())?)
        })
        .await
        .map_err(raft::write_logs)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> RaftResult<()> {
        tracing::debug!(%log_id, "purging raft log");
        let last_purged = codec::encode(&log_id).map_err(raft::write_logs)?;
        self.tail().purge_through(log_id.index);
        let db = Arc::clone(&self.db);
        blocking(move || {
            // The purge mark and the deletion in one batch: `get_log_state` never sees one without the other.
            let mut batch = WriteBatch::default();
            batch.put_cf(cf(&db, CF_RAFT_META)?, KEY_LAST_PURGED, last_purged);
            let log_cf = cf(&db, CF_RAFT_LOG)?;
            match log_id.index.checked_add(1) {
                Some(end) => {
                    batch.delete_range_cf(log_cf, log_key(0).as_slice(), log_key(end).as_slice())
                }
                None => {
                    batch.delete_range_cf(log_cf, log_key(0).as_slice(), PAST_LAST_KEY.as_slice())
                }
            }
            Ok(db.write_opt(batch, &synced())?)
        })
        .await
        .map_err(raft::write_logs)
    }
}
