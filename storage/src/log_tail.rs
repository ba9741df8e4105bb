//! The newest Raft log entries, kept decoded in memory so that replication and the apply do not read
//! back and decode from RocksDB what was appended a moment ago.
//!
//! A leader sends every entry it appends to each follower right after appending it, and openraft's
//! state-machine worker on every node reads each committed entry back from the log to apply it:
//! reading them from the database (a new iterator, then a bincode decode per entry) was 4 % of a
//! leader's CPU under a REGISTER load. The tail is only a copy of what is on disk, local to this node's
//! log: it starts empty, and a read it cannot answer whole goes to the database as before.
//!
//! Ordering with the disk, by the one task that writes the log: entries join the tail after their
//! write is on disk, and leave it (truncate, purge) before they leave the disk. So the tail never holds
//! an entry the disk does not, at any point a reader can look.

use std::collections::VecDeque;

use openraft::Entry;

use crate::TypeConfig;

/// How much (as stored, encoded) the tail keeps: many entries of a busy registrar (about 30 bindings
/// each under load), more than replication to followers that keep up and the apply ever read back. Decoded, the
/// entries take more room than this, and an idle node keeps its last tail, which counts against the
/// memory per phone.
pub(crate) const TAIL_BYTES: usize = 1024 * 1024;

/// Consecutive entries, oldest first, each with its stored size.
#[derive(Debug)]
pub(crate) struct LogTail {
    entries: VecDeque<(Entry<TypeConfig>, usize)>,
    bytes: usize,
    max_bytes: usize,
}

impl LogTail {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index)
    }

    /// Entries that are now on disk, in index order with their stored sizes. Entries that do not
    /// continue the tail (after a gap, or going back) replace it.
    pub(crate) fn appended(&mut self, entries: Vec<(Entry<TypeConfig>, usize)>) {
        for (entry, size) in entries {
            let index = entry.log_id.index;
            if self
                .last_index()
                .is_some_and(|last| last.checked_add(1) != Some(index))
            {
                self.entries.clear();
                self.bytes = 0;
            }
            self.bytes = self.bytes.saturating_add(size);
            self.entries.push_back((entry, size));
        }
        // Keep at least the newest entry, however large: it is the one replication reads next.
        while self.bytes > self.max_bytes && self.entries.len() > 1 {
            if let Some((_, size)) = self.entries.pop_front() {
                self.bytes = self.bytes.saturating_sub(size);
            }
        }
    }

    /// Forgets entries at `index` and after (the log is being truncated there).
    pub(crate) fn truncate_from(&mut self, index: u64) {
        while self.last_index().is_some_and(|last| last >= index) {
            if let Some((_, size)) = self.entries.pop_back() {
                self.bytes = self.bytes.saturating_sub(size);
            }
        }
    }

    /// Forgets entries up to and including `index` (the log is being purged through it).
    pub(crate) fn purge_through(&mut self, index: u64) {
        while self.first_index().is_some_and(|first| first <= index) {
            if let Some((_, size)) = self.entries.pop_front() {
                self.bytes = self.bytes.saturating_sub(size);
            }
        }
    }

    /// Entries from `start` up to `end` (exclusive), stopping before the entry that would take the
    /// stored bytes past `budget` (at least one entry): the same answer as the database would give,
    /// or `None` when the tail does not hold the whole of it.
    pub(crate) fn read(
        &self,
        start: u64,
        end: u64,
        budget: usize,
    ) -> Option<Vec<Entry<TypeConfig>>> {
        let first = self.first_index()?;
        let last = self.last_index()?;
        if start < first || start > last || end <= start {
            return None;
        }
        let skip = usize::try_from(start - first).ok()?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (entry, size) in self.entries.iter().skip(skip) {
            if entry.log_id.index >= end {
                return Some(out);
            }
            bytes = bytes.saturating_add(*size);
            if bytes > budget && !out.is_empty() {
                return Some(out);
            }
            out.push(entry.clone());
        }
        // Ran off the tail's end: whole only if nothing was asked past it. A later entry may already
        // be on disk and not yet here.
        (end == last.saturating_add(1)).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    use super::*;

    fn entry(index: u64) -> (Entry<TypeConfig>, usize) {
        let e = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        };
        (e, 100)
    }

    fn tail_of(range: std::ops::RangeInclusive<u64>, max_bytes: usize) -> LogTail {
        let mut t = LogTail::new(max_bytes);
        t.appended(range.map(entry).collect());
        t
    }

    fn indexes(entries: Option<Vec<Entry<TypeConfig>>>) -> Option<Vec<u64>> {
        entries.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn answers_a_range_it_holds_whole_and_nothing_else() {
        let t = tail_of(5..=9, usize::MAX);
        assert_eq!(
            indexes(t.read(5, 10, usize::MAX)),
            Some(vec![5, 6, 7, 8, 9])
        );
        assert_eq!(indexes(t.read(7, 9, usize::MAX)), Some(vec![7, 8]));
        // Before the tail, past its end, or reaching beyond it: the database answers.
        assert_eq!(indexes(t.read(4, 8, usize::MAX)), None);
        assert_eq!(indexes(t.read(10, 12, usize::MAX)), None);
        assert_eq!(indexes(t.read(8, 11, usize::MAX)), None);
        assert_eq!(indexes(LogTail::new(1024).read(0, 1, usize::MAX)), None);
    }

    #[test]
    fn budget_stops_before_the_entry_that_passes_it_but_never_at_zero_entries() {
        let t = tail_of(1..=6, usize::MAX);
        // 100 bytes each: 250 allows two.
        assert_eq!(indexes(t.read(1, 7, 250)), Some(vec![1, 2]));
        assert_eq!(indexes(t.read(3, 7, 10)), Some(vec![3]));
        // A budget that ends the read inside the tail is whole even when `end` lies beyond it.
        assert_eq!(indexes(t.read(5, 100, 150)), Some(vec![5]));
    }

    #[test]
    fn keeps_only_the_newest_entries_within_its_size() {
        let t = tail_of(1..=10, 350);
        assert_eq!(indexes(t.read(8, 11, usize::MAX)), Some(vec![8, 9, 10]));
        assert_eq!(indexes(t.read(7, 11, usize::MAX)), None);
        // One entry larger than the whole allowance is still kept.
        let mut big = LogTail::new(50);
        big.appended(vec![entry(3)]);
        assert_eq!(indexes(big.read(3, 4, usize::MAX)), Some(vec![3]));
    }

    #[test]
    fn truncate_and_purge_drop_what_leaves_the_disk() {
        let mut t = tail_of(1..=10, usize::MAX);
        t.truncate_from(8);
        assert_eq!(indexes(t.read(5, 8, usize::MAX)), Some(vec![5, 6, 7]));
        assert_eq!(indexes(t.read(5, 9, usize::MAX)), None);
        t.purge_through(4);
        assert_eq!(indexes(t.read(4, 6, usize::MAX)), None);
        assert_eq!(indexes(t.read(5, 6, usize::MAX)), Some(vec![5]));
        // The conflicting entries a follower replaces come back with the new leader's content.
        t.appended(vec![entry(8), entry(9)]);
        assert_eq!(
            indexes(t.read(5, 10, usize::MAX)),
            Some(vec![5, 6, 7, 8, 9])
        );
        t.truncate_from(0);
        assert_eq!(indexes(t.read(5, 6, usize::MAX)), None);
    }

    #[test]
    fn an_append_that_does_not_follow_on_starts_the_tail_afresh() {
        let mut t = tail_of(1..=5, usize::MAX);
        t.appended(vec![entry(9), entry(10)]);
        assert_eq!(indexes(t.read(1, 3, usize::MAX)), None);
        assert_eq!(indexes(t.read(9, 11, usize::MAX)), Some(vec![9, 10]));
    }
}
