//! A snapshot built on one store and installed on a fresh one reproduces its tables and meta.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{
    append_and_apply, ext, fresh, log_id, member, membership, normal, open, setting, user,
};
use openraft::RaftSnapshotBuilder;
use openraft::storage::RaftStateMachine;
use pbx_storage::model::{ClusterRecord, Extension, MemberRecord, Setting, UserAccount, VipConfig};
use pbx_storage::{Command, StateReader};

#[derive(Debug, PartialEq)]
struct Contents {
    extensions: Vec<Extension>,
    users: Vec<UserAccount>,
    settings: Vec<Setting>,
    members: Vec<MemberRecord>,
    cluster: Option<ClusterRecord>,
    vip: Option<VipConfig>,
}

fn contents(reader: &StateReader) -> Contents {
    Contents {
        extensions: reader.list().unwrap(),
        users: reader.list().unwrap(),
        settings: reader.list().unwrap(),
        members: reader.list().unwrap(),
        cluster: reader.get(ClusterRecord::KEY).unwrap(),
        vip: reader.get(VipConfig::KEY).unwrap(),
    }
}

/// A few thousand rows across every table, in several apply batches.
fn workload() -> Vec<Vec<openraft::Entry<pbx_storage::TypeConfig>>> {
    let mut commands = vec![
        Command::InitCluster(ClusterRecord {
            cluster_id: "c".into(),
            realm: "pbx".into(),
            secret: vec![9; 32],
            created_at: 1,
        }),
        Command::SetVip(VipConfig {
            address: "198.18.0.100/24".into(),
            interface: "eth0".into(),
            driver: "linux".into(),
            updated_at: 1,
        }),
    ];
    commands.extend((1..=3).map(|n| Command::PutMember(member(n))));
    commands.extend((0..2500).map(|i| Command::CreateExtension(ext(&format!("{}", 10_000 + i)))));
    commands.extend((0..400).map(|i| Command::CreateUser(user(&format!("user{i:04}")))));
    commands
        .extend((0..100).map(|i| Command::PutSetting(setting(&format!("s{i}"), &"v".repeat(i)))));
    commands.extend((0..50).map(|i| Command::DeleteExtension {
        number: format!("{}", 10_000 + i * 7),
    }));

    let mut entries = vec![membership(1, 1, &[1, 2, 3])];
    entries.extend(
        commands
            .into_iter()
            .enumerate()
            .map(|(i, c)| normal(1, i as u64 + 2, c)),
    );
    entries.chunks(500).map(<[_]>::to_vec).collect()
}

#[tokio::test]
async fn a_snapshot_installed_on_a_fresh_store_reproduces_tables_and_meta() {
    let (_leader_dir, mut leader) = fresh();
    for batch in workload() {
        append_and_apply(&mut leader, batch).await;
    }
    let expected = contents(&leader.reader);
    assert_eq!(expected.extensions.len(), 2450);
    let last = leader.reader.last_applied().unwrap();

    let built = leader
        .sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(built.meta.last_log_id, Some(last));
    assert_eq!(built.meta.last_membership.log_id(), &Some(log_id(1, 1)));
    assert!(
        built
            .meta
            .snapshot_id
            .starts_with(&format!("1-{}-", last.index))
    );
    let current = leader.sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, built.meta);

    // Changes after the snapshot do not leak into it.
    append_and_apply(
        &mut leader,
        vec![normal(
            1,
            last.index + 1,
            Command::CreateExtension(ext("99999")),
        )],
    )
    .await;

    let follower_dir = tempfile::TempDir::new().unwrap();
    {
        let mut follower = open(follower_dir.path());
        // The follower had state of its own, which the snapshot replaces.
        append_and_apply(
            &mut follower,
            vec![normal(1, 1, Command::CreateExtension(ext("5555")))],
        )
        .await;
        let mut watch = follower.reader.watch_applied();

        let mut receiving = follower.sm.begin_receiving_snapshot().await.unwrap();
        let mut source = current.snapshot;
        tokio::io::copy(&mut source, &mut *receiving).await.unwrap();
        follower
            .sm
            .install_snapshot(&current.meta, receiving)
            .await
            .unwrap();

        assert_eq!(contents(&follower.reader), expected);
        assert_eq!(
            follower.sm.applied_state().await.unwrap(),
            (Some(last), current.meta.last_membership.clone())
        );
        assert_eq!(follower.reader.last_applied(), Some(last));
        assert!(watch.has_changed().unwrap());
        assert_eq!(*watch.borrow_and_update(), last.index);
        let installed = follower.sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(installed.meta, current.meta);

        // The follower carries on applying after the snapshot.
        append_and_apply(
            &mut follower,
            vec![normal(
                1,
                last.index + 1,
                Command::CreateExtension(ext("99999")),
            )],
        )
        .await;
        assert_eq!(contents(&follower.reader), contents(&leader.reader));
    }

    // The install is durable, and the kept snapshot file is the one the follower would serve.
    let mut follower = open(follower_dir.path());
    assert_eq!(contents(&follower.reader), contents(&leader.reader));
    let kept = follower.sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(kept.meta, current.meta);
    let snapshot_files: Vec<_> = std::fs::read_dir(follower_dir.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        snapshot_files,
        [format!("{}.snap", current.meta.snapshot_id)]
    );
}

#[tokio::test]
async fn building_again_replaces_the_previous_snapshot_file() {
    let (dir, mut store) = fresh();
    append_and_apply(
        &mut store,
        vec![normal(1, 1, Command::CreateExtension(ext("1001")))],
    )
    .await;
    let first = store
        .sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    append_and_apply(
        &mut store,
        vec![normal(1, 2, Command::CreateExtension(ext("1002")))],
    )
    .await;
    let second = store
        .sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_ne!(first.meta.snapshot_id, second.meta.snapshot_id);
    assert_eq!(
        store.sm.get_current_snapshot().await.unwrap().unwrap().meta,
        second.meta
    );
    let files: Vec<_> = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, [format!("{}.snap", second.meta.snapshot_id)]);
}
