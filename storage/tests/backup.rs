//! A backup's copy of the state: exported at one log index, read back with its checks, and loaded
//! into a fresh store without the old cluster's running state.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{append_and_apply, ext, fresh, member, normal, setting};
use pbx_storage::backup::{StateImport, restorable};
use pbx_storage::model::{Extension, MemberRecord, Setting};
use pbx_storage::{Command, Response, Table};

/// Exports a store holding three extensions, a member, a plain setting and a node's version.
async fn exported() -> (Vec<u8>, u64) {
    let (_dir, mut store) = fresh();
    let commands = [
        Command::CreateExtension(ext("1001")),
        Command::CreateExtension(ext("1002")),
        Command::CreateExtension(ext("1003")),
        Command::PutMember(member(1)),
        Command::PutSetting(setting("timezone", "Europe/Berlin")),
        Command::PutSetting(setting("node.1.version", "0.1.0")),
    ];
    let entries = commands
        .into_iter()
        .enumerate()
        .map(|(i, c)| normal(1, i as u64 + 1, c))
        .collect();
    append_and_apply(&mut store, entries).await;
    let (summary, bytes) = store.reader.export(Vec::new()).unwrap();
    assert_eq!(summary.last_index, 6);
    (bytes, summary.rows)
}

/// The rows of an export grouped into the commands a restore proposes.
fn restore_commands(bytes: &[u8]) -> (Vec<Command>, u64) {
    let mut import = StateImport::new(bytes).unwrap();
    let mut commands = Vec::new();
    let mut read = 0;
    while let Some(row) = import.next_row().unwrap() {
        read += 1;
        if restorable(row.table, &row.key) {
            commands.push(Command::RestoreRows {
                table: row.table.tag(),
                rows: vec![(row.key, row.value)],
            });
        }
    }
    (commands, read)
}

#[tokio::test]
async fn an_export_restores_the_configuration_without_the_old_members() {
    let (bytes, rows) = exported().await;
    let (commands, read) = restore_commands(&bytes);
    assert_eq!(read, rows);

    let (_dir, mut fresh_store) = fresh();
    let entries = commands
        .into_iter()
        .enumerate()
        .map(|(i, c)| normal(1, i as u64 + 1, c))
        .collect();
    let responses = append_and_apply(&mut fresh_store, entries).await;
    assert!(
        responses.iter().all(|r| *r == Response::Ok),
        "{responses:?}"
    );
    let numbers: Vec<String> = fresh_store
        .reader
        .list::<Extension>()
        .unwrap()
        .into_iter()
        .map(|e| e.number)
        .collect();
    assert_eq!(numbers, ["1001", "1002", "1003"]);
    assert_eq!(
        fresh_store.reader.get::<Extension>("1002").unwrap(),
        Some(ext("1002"))
    );
    assert_eq!(
        fresh_store
            .reader
            .get::<Setting>("timezone")
            .unwrap()
            .map(|s| s.value),
        Some("Europe/Berlin".to_owned())
    );
    assert!(
        fresh_store
            .reader
            .list::<MemberRecord>()
            .unwrap()
            .is_empty()
    );
    assert!(
        fresh_store
            .reader
            .get::<Setting>("node.1.version")
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_state_machine_refuses_rows_a_restore_leaves_out() {
    let (_dir, mut store) = fresh();
    let refused = [
        Command::RestoreRows {
            table: Table::Members.tag(),
            rows: vec![("1".into(), vec![1, 2, 3])],
        },
        Command::RestoreRows {
            table: 200,
            rows: vec![("x".into(), vec![])],
        },
        // All or nothing: the good row before the bad one is not written either.
        Command::RestoreRows {
            table: Table::Settings.tag(),
            rows: vec![("a".into(), vec![1]), ("node.2.version".into(), vec![2])],
        },
    ];
    let entries = refused
        .into_iter()
        .enumerate()
        .map(|(i, c)| normal(1, i as u64 + 1, c))
        .collect();
    for response in append_and_apply(&mut store, entries).await {
        assert!(matches!(response, Response::Invalid { .. }), "{response:?}");
    }
    let (summary, _) = store.reader.export(Vec::new()).unwrap();
    assert_eq!(summary.rows, 0);
}

#[tokio::test]
async fn a_damaged_or_cut_export_is_refused() {
    let (bytes, _) = exported().await;
    let read_all = |b: &[u8]| -> Result<u64, String> {
        let mut import = StateImport::new(b).map_err(|e| e.to_string())?;
        let mut n = 0;
        while import.next_row().map_err(|e| e.to_string())?.is_some() {
            n += 1;
        }
        Ok(n)
    };
    assert!(read_all(&bytes).is_ok());
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x20;
    assert!(read_all(&flipped).is_err());
    assert!(read_all(&bytes[..bytes.len() - 3]).is_err());
    assert!(read_all(&bytes[..bytes.len() / 3]).is_err());
    assert!(read_all(b"not an export").is_err());
}
