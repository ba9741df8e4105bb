//! Read access to the applied state for the rest of the node.
//!
//! Reads go straight to the local database: they see what this node has applied, which may trail the
//! leader. A caller that needs its own write to be visible waits on [`StateReader::watch_applied`] for
//! the index its proposal committed at.

use std::sync::Arc;

use openraft::LogId;
use rocksdb::{DB, Direction, IteratorMode};
use tokio::sync::watch;

use crate::tables::{Record, cf, prefix_bounds};
use crate::{NodeId, StorageError, codec};

/// A cheap, cloneable view of the applied tables.
#[derive(Clone)]
pub struct StateReader {
    db: Arc<DB>,
    applied: Arc<Applied>,
}

/// Progress of the state machine, published after every apply and snapshot install.
struct Applied {
    last: watch::Sender<Option<LogId<NodeId>>>,
    index: watch::Sender<u64>,
    /// Bumped whenever routing configuration (trunks, routes, groups, settings) may have changed.
    routing: std::sync::atomic::AtomicU64,
    /// Bumped whenever the audio index may have changed.
    audio: std::sync::atomic::AtomicU64,
}

impl StateReader {
    pub(crate) fn new(db: Arc<DB>) -> Self {
        let applied = Applied {
            last: watch::Sender::new(None),
            index: watch::Sender::new(0),
            routing: std::sync::atomic::AtomicU64::new(0),
            audio: std::sync::atomic::AtomicU64::new(0),
        };
        Self {
            db,
            applied: Arc::new(applied),
        }
    }

    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    /// Called by the state machine once a change is durable in the database.
    pub(crate) fn publish(&self, last_applied: Option<LogId<NodeId>>) {
        // `last` first, so that whoever wakes on the index sees the matching log id.
        self.applied.last.send_replace(last_applied);
        let index = last_applied.map_or(0, |id| id.index);
        self.applied.index.send_if_modified(|current| {
            let changed = *current != index;
            *current = index;
            changed
        });
    }

    /// Marks routing configuration as changed (before the change is published).
    pub(crate) fn routing_changed(&self) {
        self.applied
            .routing
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// Marks the audio index as changed (before the change is published).
    pub(crate) fn audio_changed(&self) {
        self.applied
            .audio
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// A number that changes whenever the audio index may have: a node need not look at the index
    /// again while it stays the same.
    pub fn audio_version(&self) -> u64 {
        self.applied
            .audio
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// A number that changes whenever trunks, routes, permission groups or settings may have: what
    /// a cache of them built at one version is still good for.
    pub fn routing_version(&self) -> u64 {
        self.applied
            .routing
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The record of type `R` stored under `key`.
    ///
    /// A table may hold more than one record type (the `Cluster` table holds [`ClusterRecord`] and
    /// [`VipConfig`]): a row whose decoded key differs from its stored key is of another type and reads
    /// as absent.
    ///
    /// [`ClusterRecord`]: crate::model::ClusterRecord
    /// [`VipConfig`]: crate::model::VipConfig
    pub fn get<R: Record>(&self, key: &str) -> Result<Option<R>, StorageError> {
        let cf = cf(&self.db, R::TABLE.cf_name())?;
        let Some(bytes) = self.db.get_pinned_cf(cf, key)? else {
            return Ok(None);
        };
        let record: R = codec::decode(&bytes)?;
        Ok((record.key() == key).then_some(record))
    }

    /// Every record of type `R`, in key order.
    pub fn list<R: Record>(&self) -> Result<Vec<R>, StorageError> {
        self.scan(None, usize::MAX)
    }

    /// Calls `f` with every record of type `R`, in key order, one decoded at a time: a periodic pass
    /// over a big table (100,000 bindings) without holding all of it in memory at once.
    pub fn visit<R: Record>(&self, mut f: impl FnMut(R)) -> Result<(), StorageError> {
        let cf = cf(&self.db, R::TABLE.cf_name())?;
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (key, value) = item?;
            let record: R = codec::decode(&value)?;
            if record.key().as_bytes() == &*key {
                f(record);
            }
        }
        Ok(())
    }

    /// Up to `limit` records of type `R` with keys after `after` (from the start when `None`), in key
    /// order. Pass the last key of one page as `after` to get the next.
    pub fn list_page<R: Record>(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<R>, StorageError> {
        self.scan(after, limit)
    }

    /// Every record of type `R` whose key starts with `prefix`, in key order.
    pub fn scan_prefix<R: Record>(&self, prefix: &str) -> Result<Vec<R>, StorageError> {
        let cf = cf(&self.db, R::TABLE.cf_name())?;
        let mode = IteratorMode::From(prefix.as_bytes(), Direction::Forward);
        let mut out = Vec::new();
        let bounds = prefix_bounds(prefix.as_bytes());
        for item in self.db.iterator_cf_opt(cf, bounds, mode) {
            let (key, value) = item?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            let record: R = codec::decode(&value)?;
            if record.key().as_bytes() == &*key {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Records of type `R` with `from <= key < to`, in key order, visiting at most `max_rows` rows and
    /// keeping those `keep` accepts. Returns the kept records and the key to resume from when the visit
    /// stopped early (`None` when the range was exhausted).
    pub fn scan_range<R: Record>(
        &self,
        from: &str,
        to: &str,
        max_rows: usize,
        mut keep: impl FnMut(&R) -> bool,
    ) -> Result<(Vec<R>, Option<String>), StorageError> {
        let cf = cf(&self.db, R::TABLE.cf_name())?;
        let mode = IteratorMode::From(from.as_bytes(), Direction::Forward);
        let mut out = Vec::new();
        for (visited, item) in self.db.iterator_cf(cf, mode).enumerate() {
            let (key, value) = item?;
            if *key >= *to.as_bytes() {
                break;
            }
            if visited >= max_rows {
                return Ok((out, Some(String::from_utf8_lossy(&key).into_owned())));
            }
            let record: R = codec::decode(&value)?;
            if record.key().as_bytes() == &*key && keep(&record) {
                out.push(record);
            }
        }
        Ok((out, None))
    }

    /// The number of rows in `R`'s table (every record type that table holds).
    pub fn count<R: Record>(&self) -> Result<u64, StorageError> {
        let cf = cf(&self.db, R::TABLE.cf_name())?;
        let mut n = 0;
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// The id of the last log entry applied to the tables (through entries or a snapshot).
    pub fn last_applied(&self) -> Option<LogId<NodeId>> {
        *self.applied.last.borrow()
    }

    /// The index of the last applied log entry; 0 when nothing has been applied.
    pub fn applied_index(&self) -> u64 {
        *self.applied.index.borrow()
    }

    /// A receiver of the applied index, updated after every apply and snapshot install.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied.index.subscribe()
    }

    fn scan<R: Record>(&self, after: Option<&str>, limit: usize) -> Result<Vec<R>, StorageError> {
        let cf = cf(&self.db, R::TABLE.cf_name())?;
        let mode = match after {
            Some(after) => IteratorMode::From(after.as_bytes(), Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, mode) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item?;
            if after.is_some_and(|after| *key == *after.as_bytes()) {
                continue;
            }
            let record: R = codec::decode(&value)?;
            if record.key().as_bytes() == &*key {
                out.push(record);
            }
        }
        Ok(out)
    }
}
