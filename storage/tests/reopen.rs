//! What was written before a close is there after reopening: vote, log, purge mark, applied state, rows.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{append_and_apply, blank, ext, log_id, membership, normal, open, setting};
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, Vote};
use pbx_storage::Command;
use pbx_storage::model::{Extension, Setting};

#[tokio::test]
async fn reopening_shows_the_same_vote_log_applied_state_and_rows() {
    let dir = tempfile::TempDir::new().unwrap();
    let vote = Vote::new_committed(3, 1);
    let entries = vec![
        blank(1, 1),
        membership(1, 2, &[1, 2, 3]),
        normal(1, 3, Command::CreateExtension(ext("1001"))),
        normal(1, 4, Command::PutSetting(setting("moh", "jazz"))),
        normal(1, 5, Command::CreateExtension(ext("1002"))),
    ];
    {
        let mut store = open(dir.path());
        store.log.save_vote(&vote).await.unwrap();
        append_and_apply(&mut store, entries.clone()).await;
        // One more entry appended but not applied: the log may run ahead of the state machine.
        let extra = vec![normal(
            1,
            6,
            Command::DeleteExtension {
                number: "1001".into(),
            },
        )];
        store.log.save_committed(Some(log_id(1, 5))).await.unwrap();
        common_append(&mut store, extra).await;
    }

    let mut store = open(dir.path());
    assert_eq!(store.log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(
        store.log.read_committed().await.unwrap(),
        Some(log_id(1, 5))
    );
    let state = store.log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, None);
    assert_eq!(state.last_log_id, Some(log_id(1, 6)));
    let log = store.log.try_get_log_entries(1..=5).await.unwrap();
    assert_eq!(log, entries);

    let (applied, members) = store.sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 5)));
    assert_eq!(members.log_id(), &Some(log_id(1, 2)));
    assert_eq!(store.reader.last_applied(), Some(log_id(1, 5)));
    assert_eq!(store.reader.applied_index(), 5);
    assert_eq!(*store.reader.watch_applied().borrow(), 5);
    let numbers: Vec<String> = store
        .reader
        .list::<Extension>()
        .unwrap()
        .into_iter()
        .map(|e| e.number)
        .collect();
    assert_eq!(numbers, ["1001", "1002"], "entry 6 was never applied");
    assert_eq!(
        store.reader.get::<Setting>("moh").unwrap().unwrap().value,
        "jazz"
    );
}

#[tokio::test]
async fn purge_and_truncate_survive_a_reopen() {
    let dir = tempfile::TempDir::new().unwrap();
    {
        let mut store = open(dir.path());
        let entries = (1..=10).map(|i| blank(2, i)).collect();
        common_append(&mut store, entries).await;
        store.log.purge(log_id(2, 4)).await.unwrap();
        store.log.truncate(log_id(2, 8)).await.unwrap();
    }
    let mut store = open(dir.path());
    let state = store.log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 4)));
    assert_eq!(state.last_log_id, Some(log_id(2, 7)));
    let indexes: Vec<u64> = store
        .log
        .try_get_log_entries(..)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect();
    assert_eq!(indexes, [5, 6, 7]);

    // Purging everything leaves the purge mark as the last log id.
    store.log.purge(log_id(2, 7)).await.unwrap();
    drop(store);
    let mut store = open(dir.path());
    let state = store.log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 7)));
    assert_eq!(state.last_log_id, Some(log_id(2, 7)));
    assert!(store.log.try_get_log_entries(..).await.unwrap().is_empty());
    assert_eq!(
        state.last_log_id.map(|id| id.leader_id),
        Some(CommittedLeaderId::new(2, 1)),
    );
}

/// Replication reads the newest entries from memory. After a follower's log is truncated and
/// rewritten by a new leader, and after a purge, those reads give exactly what the disk gives once the
/// store is reopened with nothing in memory.
#[tokio::test]
async fn log_reads_from_memory_match_the_disk_after_truncate_and_purge() {
    let dir = tempfile::TempDir::new().unwrap();
    let ranges = [(1, 4), (3, 9), (5, 12), (6, 9), (8, 12), (11, 12), (11, 13)];
    let read_all = async |store: &mut common::Store| {
        let mut out = Vec::new();
        for (start, end) in ranges {
            let got = store.log.limited_get_log_entries(start, end).await.unwrap();
            out.push(got.iter().map(|e| e.log_id).collect::<Vec<_>>());
        }
        out
    };
    let from_memory = {
        let mut store = open(dir.path());
        common_append(&mut store, (1..=10).map(|i| blank(1, i)).collect()).await;
        // A new leader in term 2 replaces entries 6.. with its own.
        store.log.truncate(log_id(1, 6)).await.unwrap();
        let left = store.log.limited_get_log_entries(3, 9).await.unwrap();
        assert_eq!(
            left.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        common_append(&mut store, (6..=11).map(|i| blank(2, i)).collect()).await;
        store.log.purge(log_id(1, 2)).await.unwrap();
        read_all(&mut store).await
    };
    assert_eq!(
        from_memory[3],
        (6..9).map(|i| log_id(2, i)).collect::<Vec<_>>()
    );
    assert!(
        from_memory[0].iter().all(|id| id.index >= 3),
        "purged entries are gone"
    );
    let mut store = open(dir.path());
    assert_eq!(read_all(&mut store).await, from_memory);
}

async fn common_append(
    store: &mut common::Store,
    entries: Vec<openraft::Entry<pbx_storage::TypeConfig>>,
) {
    use openraft::storage::RaftLogStorageExt;
    store.log.blocking_append(entries).await.unwrap();
}
