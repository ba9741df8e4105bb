//! A damaged snapshot is refused with an error, and the store it was meant for is left as it was.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{append_and_apply, ext, fresh, normal, open};
use openraft::RaftSnapshotBuilder;
use openraft::storage::RaftStateMachine;
use pbx_storage::Command;
use pbx_storage::model::Extension;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn snapshot_bytes() -> (openraft::SnapshotMeta<u64, pbx_storage::NodeAddr>, Vec<u8>) {
    let (_dir, mut leader) = fresh();
    let entries = (1..=200)
        .map(|i| {
            normal(
                1,
                i,
                Command::CreateExtension(ext(&format!("{}", 1000 + i))),
            )
        })
        .collect();
    append_and_apply(&mut leader, entries).await;
    let mut snapshot = leader
        .sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let mut bytes = Vec::new();
    snapshot.snapshot.read_to_end(&mut bytes).await.unwrap();
    (snapshot.meta, bytes)
}

#[tokio::test]
async fn damaged_snapshots_are_refused_and_leave_the_store_unchanged() {
    let (meta, good) = snapshot_bytes().await;
    let mut garbage_record = good.clone();
    let middle = good.len() / 2;
    garbage_record[middle..middle + 16].copy_from_slice(&[0xA5; 16]);
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"junk");
    let mut huge_length = good[..40].to_vec();
    huge_length.extend_from_slice(&u32::MAX.to_le_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated in half", good[..good.len() / 2].to_vec()),
        ("missing the end record", good[..good.len() - 30].to_vec()),
        ("garbage record", garbage_record),
        ("trailing bytes", trailing),
        (
            "not a snapshot",
            b"hello, this is not a snapshot file at all".to_vec(),
        ),
        ("huge length prefix", huge_length),
    ];

    let dir = tempfile::TempDir::new().unwrap();
    let mut store = open(dir.path());
    append_and_apply(
        &mut store,
        vec![normal(1, 1, Command::CreateExtension(ext("5555")))],
    )
    .await;
    let before = store.sm.applied_state().await.unwrap();

    for (name, bytes) in cases {
        let mut receiving = store.sm.begin_receiving_snapshot().await.unwrap();
        receiving.write_all(&bytes).await.unwrap();
        let result = store.sm.install_snapshot(&meta, receiving).await;
        assert!(result.is_err(), "{name}: a damaged snapshot was installed");
        assert_eq!(store.sm.applied_state().await.unwrap(), before, "{name}");
        let numbers: Vec<String> = store
            .reader
            .list::<Extension>()
            .unwrap()
            .into_iter()
            .map(|e| e.number)
            .collect();
        assert_eq!(numbers, ["5555"], "{name}: the tables were touched");
        assert!(
            store.sm.get_current_snapshot().await.unwrap().is_none(),
            "{name}"
        );
    }

    // The same meta with the intact file installs: the failures above were about the bytes.
    let mut receiving = store.sm.begin_receiving_snapshot().await.unwrap();
    receiving.write_all(&good).await.unwrap();
    store.sm.install_snapshot(&meta, receiving).await.unwrap();
    assert_eq!(store.reader.count::<Extension>().unwrap(), 200);

    // Nothing was left behind in the snapshot directory but the installed file.
    let files: Vec<_> = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, [format!("{}.snap", meta.snapshot_id)]);
}

#[tokio::test]
async fn a_snapshot_whose_meta_does_not_match_is_refused() {
    let (meta, good) = snapshot_bytes().await;
    let (_dir, mut store) = fresh();
    let mut other = meta.clone();
    other.last_log_id = Some(common::log_id(9, 9999));
    let mut receiving = store.sm.begin_receiving_snapshot().await.unwrap();
    receiving.write_all(&good).await.unwrap();
    assert!(store.sm.install_snapshot(&other, receiving).await.is_err());
    assert_eq!(store.reader.count::<Extension>().unwrap(), 0);
}
