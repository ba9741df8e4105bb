//! Catch-up through snapshots: with snapshots every 50 entries and few logs kept, a node added after
//! hundreds of writes, and a node that was stopped while hundreds more were written, both end up with
//! every row.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::time::Duration;

use common::{cluster_of, put_setting, start_node_with};
use pbx_cluster::tls;
use pbx_cluster::{Cluster, ClusterConfig};
use storage::model::Setting;

fn small_snapshots(c: &mut ClusterConfig) {
    c.snapshot_after_logs = 50;
    c.keep_logs_after_snapshot = 10;
}

async fn write_many(leader: &Cluster, prefix: &str, n: usize) {
    for i in 0..n {
        leader
            .propose(put_setting(&format!("{prefix}-{i:04}"), "v"))
            .await
            .unwrap();
    }
}

fn count(c: &Cluster) -> u64 {
    c.reader().count::<Setting>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_added_late_catches_up_from_a_snapshot() {
    let ca = tls::generate_ca("snapshot-join").unwrap();
    let nodes = cluster_of(&ca, 1, small_snapshots).await;
    let leader = &nodes[0].cluster;
    write_many(leader, "early", 300).await;
    // The leader has snapshotted and purged the early log, so only a snapshot can bring a node up.
    let m = leader.raft_metrics().borrow().clone();
    assert!(
        m.purged.is_some_and(|p| p.index > 100),
        "log not purged: {:?}",
        m.purged
    );

    let late = start_node_with(&ca, 2, small_snapshots).await;
    leader.add_member(2, late.addr()).await.unwrap();
    late.cluster.linearizable_barrier().await.unwrap();
    assert_eq!(count(&late.cluster), 300);
    assert!(
        late.cluster.raft_metrics().borrow().snapshot.is_some(),
        "node 2 did not install a snapshot"
    );

    // It keeps replicating after the snapshot.
    write_many(leader, "later", 20).await;
    late.cluster.linearizable_barrier().await.unwrap();
    assert_eq!(count(&late.cluster), 320);

    late.cluster.shutdown().await.unwrap();
    leader.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_catches_up_on_what_it_missed() {
    let ca = tls::generate_ca("snapshot-restart").unwrap();
    let mut nodes = cluster_of(&ca, 3, small_snapshots).await;
    let leader = nodes[0].cluster.clone();
    write_many(&leader, "before", 30).await;

    // Stop node 3 and let go of every handle on its store.
    let stopped = nodes.pop().unwrap();
    let listen = stopped.cluster.local_raft_addr().unwrap();
    stopped.cluster.shutdown().await.unwrap();
    let (id, tls_files, dir) = (stopped.id, stopped.tls.clone(), stopped.dir);
    drop(stopped.cluster);

    write_many(&leader, "missed", 250).await;
    // What node 3 missed is no longer in the leader's log: it must come as a snapshot.
    let purged = leader.raft_metrics().borrow().purged;
    assert!(
        purged.is_some_and(|p| p.index > 100),
        "log not purged: {purged:?}"
    );

    // Restart on the same address and data directory (the store may take a moment to be released).
    let mut config = common::config(id, listen, tls_files);
    small_snapshots(&mut config);
    let data = dir.path().join("data");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let restarted = loop {
        match Cluster::start(config.clone(), &data).await {
            Ok(c) => break c,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "node 3 cannot restart: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        restarted.is_initialized(),
        "node 3 lost its membership across the restart"
    );

    restarted.linearizable_barrier().await.unwrap();
    assert_eq!(count(&restarted), 280);
    for node in &nodes {
        node.cluster.linearizable_barrier().await.unwrap();
        assert_eq!(count(&node.cluster), 280);
    }

    restarted.shutdown().await.unwrap();
    for node in &nodes {
        node.cluster.shutdown().await.unwrap();
    }
}
