//! Three nodes replicate: writes made on the leader or proposed through a follower are visible on every
//! node, and the cluster survives the loss of its leader.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::time::Duration;

use common::{agreed_leader, cluster_of, eventually, put_setting, setting};
use pbx_cluster::tls;
use pbx_cluster::{Cluster, ClusterError, NodeState};
use storage::{Command, Response};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_on_leader_and_through_a_follower_reach_every_node() {
    let ca = tls::generate_ca("replication").unwrap();
    let nodes = cluster_of(&ca, 3, |_| {}).await;
    let clusters: Vec<&Cluster> = nodes.iter().map(|n| &n.cluster).collect();
    let leader = agreed_leader(&clusters).await;
    let leader_node = nodes.iter().find(|n| n.id == leader).unwrap();
    let follower = nodes.iter().find(|n| n.id != leader).unwrap();

    assert_eq!(
        leader_node
            .cluster
            .propose(put_setting("a", "from-leader"))
            .await
            .unwrap(),
        Response::Ok
    );
    assert_eq!(
        follower
            .cluster
            .propose(put_setting("b", "from-follower"))
            .await
            .unwrap(),
        Response::Ok
    );
    // The state machine's answer travels back through forwarding too.
    let missing = follower
        .cluster
        .propose(Command::DeleteExtension {
            number: "999".into(),
        })
        .await
        .unwrap();
    assert!(matches!(missing, Response::NotFound { .. }), "{missing:?}");

    for node in &nodes {
        node.cluster.linearizable_barrier().await.unwrap();
        assert_eq!(
            setting(&node.cluster, "a").as_deref(),
            Some("from-leader"),
            "node {}",
            node.id
        );
        assert_eq!(
            setting(&node.cluster, "b").as_deref(),
            Some("from-follower"),
            "node {}",
            node.id
        );
    }

    // A follower reports the leader's view of the members.
    eventually(
        Duration::from_secs(5),
        "status from the leader with three healthy voters",
        || {
            let c = follower.cluster.clone();
            async move {
                let status = c.status().await;
                status.members_from_leader
                    && status.members.len() == 3
                    && status
                        .members
                        .iter()
                        .all(|m| m.voter && m.healthy && m.lag == Some(0))
            }
        },
    )
    .await;
    let status = follower.cluster.status().await;
    assert_eq!(status.node_id, follower.id);
    assert_eq!(status.state, NodeState::Follower);
    assert_eq!(status.leader, Some(leader));
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["state"], "follower");
    assert_eq!(json["members"].as_array().unwrap().len(), 3);
    assert_eq!(json["members_from_leader"], true);

    assert_eq!(
        nodes[0].cluster.initialize().await,
        Err(ClusterError::AlreadyInitialized)
    );
    for node in &nodes {
        node.cluster.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cluster_keeps_writing_after_its_leader_stops() {
    let ca = tls::generate_ca("failover").unwrap();
    let nodes = cluster_of(&ca, 3, |_| {}).await;
    let clusters: Vec<&Cluster> = nodes.iter().map(|n| &n.cluster).collect();
    let old_leader = agreed_leader(&clusters).await;
    nodes
        .iter()
        .find(|n| n.id == old_leader)
        .unwrap()
        .cluster
        .propose(put_setting("before", "1"))
        .await
        .unwrap();

    nodes
        .iter()
        .find(|n| n.id == old_leader)
        .unwrap()
        .cluster
        .shutdown()
        .await
        .unwrap();
    let rest: Vec<&Cluster> = nodes
        .iter()
        .filter(|n| n.id != old_leader)
        .map(|n| &n.cluster)
        .collect();
    let mut new_leader = old_leader;
    eventually(
        Duration::from_secs(10),
        "a new leader among the survivors",
        || {
            let view: Vec<_> = rest.iter().map(|c| c.current_leader()).collect();
            if let Some(l) =
                view[0].filter(|l| *l != old_leader && view.iter().all(|v| *v == Some(*l)))
            {
                new_leader = l;
            }
            async move { new_leader != old_leader }
        },
    )
    .await;

    // Propose through whichever survivor does not lead (forwarding) and on the new leader.
    for c in &rest {
        c.propose(put_setting(&format!("after-{}", c.node_id()), "2"))
            .await
            .unwrap();
    }
    for c in &rest {
        c.linearizable_barrier().await.unwrap();
        assert_eq!(setting(c, "before").as_deref(), Some("1"));
        for other in &rest {
            assert_eq!(
                setting(c, &format!("after-{}", other.node_id())).as_deref(),
                Some("2")
            );
        }
    }
    for c in rest {
        c.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_off_from_its_voters_is_not_shown_as_the_leader() {
    let ca = tls::generate_ca("cut-off").unwrap();
    let nodes = cluster_of(&ca, 3, |_| {}).await;
    let clusters: Vec<&Cluster> = nodes.iter().map(|n| &n.cluster).collect();
    let leader_id = agreed_leader(&clusters).await;
    let leader = &nodes.iter().find(|n| n.id == leader_id).unwrap().cluster;
    eventually(
        Duration::from_secs(5),
        "the leader confirmed by a quorum",
        || async { leader.confirmed_leader() == Some(leader_id) },
    )
    .await;
    assert_eq!(leader.status().await.leader, Some(leader_id));

    for n in nodes.iter().filter(|n| n.id != leader_id) {
        n.cluster.shutdown().await.unwrap();
    }
    // openraft keeps it leader of its term; an operator must not be told it leads the cluster.
    eventually(
        Duration::from_secs(5),
        "the lone leader stops naming itself",
        || async { leader.confirmed_leader().is_none() },
    )
    .await;
    assert_eq!(leader.status().await.leader, None);
    assert_eq!(
        leader.current_leader(),
        Some(leader_id),
        "openraft's own view, which the status used to show"
    );
    leader.shutdown().await.unwrap();
}
