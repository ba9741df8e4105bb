//! openraft's storage contract, run against the RocksDB store.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use pbx_storage::{LogStore, NodeId, StateMachineStore, TypeConfig};
use tempfile::TempDir;

struct TempStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = TempDir::new().map_err(|e| openraft::StorageIOError::write(&e))?;
        let (log, sm, _reader) =
            pbx_storage::open(dir.path()).map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(TempStoreBuilder).unwrap();
}

mod common;

/// Replication reads at most `REPLICATION_BATCH_BYTES` of the log at a time (at least one entry),
/// so a follower far behind on big entries gets them in AppendEntries it can answer in time.
#[tokio::test]
async fn replication_reads_the_log_in_batches_of_bounded_size() {
    use common::{normal, setting};
    use openraft::storage::{RaftLogReader, RaftLogStorageExt};
    use pbx_storage::{Command, REPLICATION_BATCH_BYTES};

    let (_dir, mut store) = common::fresh();
    // Entries of ~100 KB (an import's size), then small ones.
    let big = "x".repeat(100 * 1024);
    let mut entries: Vec<_> = (1..=6)
        .map(|i| normal(1, i, Command::PutSetting(setting("big", &big))))
        .collect();
    entries.extend((7..=40).map(|i| normal(1, i, Command::PutSetting(setting("k", "v")))));
    // One entry larger than the whole budget.
    let huge = "y".repeat(REPLICATION_BATCH_BYTES + 1);
    entries.push(normal(1, 41, Command::PutSetting(setting("huge", &huge))));
    store.log.blocking_append(entries.clone()).await.unwrap();

    let indexes = |e: &[openraft::Entry<_>]| e.iter().map(|e| e.log_id.index).collect::<Vec<_>>();
    let batch = store.log.limited_get_log_entries(1, 42).await.unwrap();
    assert_eq!(
        indexes(&batch),
        [1, 2],
        "two 100 KB entries fit, a third would not"
    );
    let batch = store.log.limited_get_log_entries(5, 42).await.unwrap();
    assert_eq!(
        indexes(&batch),
        [5, 6].into_iter().chain(7..=40).collect::<Vec<_>>()
    );
    let batch = store.log.limited_get_log_entries(41, 42).await.unwrap();
    assert_eq!(
        indexes(&batch),
        [41],
        "an entry over the budget still goes, alone"
    );
    assert_eq!(batch[0], entries[40]);
    assert!(
        store
            .log
            .limited_get_log_entries(9, 9)
            .await
            .unwrap()
            .is_empty()
    );
    // Reads that are not replication's still get the whole range.
    assert_eq!(
        store.log.try_get_log_entries(1..=41).await.unwrap(),
        entries
    );
}
