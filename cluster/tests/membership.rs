//! Membership changes: a member is removed while writes continue, and the last voter cannot be removed.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{cluster_of, eventually, put_setting, setting};
use pbx_cluster::tls;
use pbx_cluster::{Cluster, ClusterError};
use storage::model::Setting;

fn voters(c: &Cluster) -> BTreeSet<u64> {
    c.raft_metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_is_removed_while_writes_continue() {
    let ca = tls::generate_ca("membership").unwrap();
    let nodes = cluster_of(&ca, 3, |_| {}).await;
    let leader = nodes[0].cluster.clone();
    assert_eq!(voters(&leader), BTreeSet::from([1, 2, 3]));

    let writer = tokio::spawn({
        let leader = leader.clone();
        async move {
            for i in 0..200 {
                leader
                    .propose(put_setting(&format!("w-{i:03}"), "v"))
                    .await
                    .unwrap();
            }
        }
    });
    // Removal asked through a follower, so it is forwarded to the leader.
    eventually(Duration::from_secs(10), "50 writes applied", || {
        let n = leader.reader().count::<Setting>().unwrap();
        async move { n >= 50 }
    })
    .await;
    nodes[1].cluster.remove_member(3).await.unwrap();
    writer.await.unwrap();

    assert_eq!(voters(&leader), BTreeSet::from([1, 2]));
    assert_eq!(
        nodes[1].cluster.remove_member(3).await,
        Err(ClusterError::UnknownMember(3))
    );
    let status = leader.status().await;
    assert_eq!(
        status.members.iter().map(|m| m.node_id).collect::<Vec<_>>(),
        vec![1, 2]
    );

    // The two remaining nodes keep committing, and have every write.
    leader.propose(put_setting("after", "v")).await.unwrap();
    for node in &nodes[..2] {
        node.cluster.linearizable_barrier().await.unwrap();
        assert_eq!(
            node.cluster.reader().count::<Setting>().unwrap(),
            201,
            "node {}",
            node.id
        );
        assert_eq!(setting(&node.cluster, "after").as_deref(), Some("v"));
    }
    // The removed node is no longer part of the cluster: its calls are refused.
    let err = nodes[2]
        .cluster
        .propose(put_setting("from-removed", "v"))
        .await
        .unwrap_err();
    assert!(!matches!(err, ClusterError::NotInitialized), "{err}");
    assert_eq!(setting(&leader, "from-removed"), None);

    for node in &nodes {
        node.cluster.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_voter_cannot_be_removed() {
    let ca = tls::generate_ca("last-voter").unwrap();
    let nodes = cluster_of(&ca, 1, |_| {}).await;
    let only = &nodes[0].cluster;
    assert!(matches!(
        only.remove_member(1).await,
        Err(ClusterError::InvalidMembership(_))
    ));
    assert_eq!(
        only.remove_member(9).await,
        Err(ClusterError::UnknownMember(9))
    );
    only.propose(put_setting("still", "here")).await.unwrap();
    only.shutdown().await.unwrap();
}
