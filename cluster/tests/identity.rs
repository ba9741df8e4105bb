//! Only cluster-CA nodes talk Raft, and each only as itself: a node with a certificate from another CA
//! cannot connect or join, a certificate for node X cannot speak for node Y, and a cluster-CA node that
//! is not a member is refused.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::time::Duration;

use common::{
    agreed_leader, cluster_of, node_tls, put_setting, raw_call, raw_connect, setting,
    start_node_with,
};
use pbx_cluster::rpc::{RpcBody, RpcRequest, RpcResponse};
use pbx_cluster::tls;
use pbx_cluster::{Cluster, ClusterError, NodeTlsFiles};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_from_another_ca_cannot_connect_or_join() {
    let ca = tls::generate_ca("home").unwrap();
    let nodes = cluster_of(&ca, 2, |c| c.join_timeout_ms = 3_000).await;
    let leader = &nodes[0].cluster;
    let leader_addr = leader.local_raft_addr().unwrap();

    let foreign_ca = tls::generate_ca("elsewhere").unwrap();
    // Its own files are consistent, so it starts; but it shares no trust with the cluster.
    let intruder = start_node_with(&foreign_ca, 3, |_| {}).await;

    // It does not trust the cluster's certificates ...
    assert!(raw_connect(&intruder.tls, 1, leader_addr).await.is_err());
    // ... and even trusting them, the cluster refuses its certificate: during the handshake, or right
    // after it when the server's verdict arrives later than the client's last flight.
    let trusting = NodeTlsFiles {
        ca_pem: ca.cert_pem.clone(),
        ..intruder.tls.clone()
    };
    let outcome = match raw_connect(&trusting, 1, leader_addr).await {
        Err(e) => Err(e),
        Ok(conn) => raw_call(
            &conn,
            &RpcRequest {
                from: 3,
                body: RpcBody::Status,
            },
        )
        .await
        .map(|_| ()),
    };
    assert!(
        outcome.is_err(),
        "a foreign-CA client must not get an answer"
    );

    // Server side: the leader cannot replicate to it, so it never catches up and is not promoted.
    let err = leader.add_member(3, intruder.addr()).await.unwrap_err();
    assert!(matches!(err, ClusterError::Timeout(_)), "{err}");
    let status = leader.status().await;
    let member = status.members.iter().find(|m| m.node_id == 3).unwrap();
    assert!(!member.voter && !member.healthy, "{member:?}");

    // The cluster keeps working, and the intruder has none of its data.
    leader.propose(put_setting("k", "v")).await.unwrap();
    nodes[1].cluster.linearizable_barrier().await.unwrap();
    assert_eq!(setting(&nodes[1].cluster, "k").as_deref(), Some("v"));
    assert_eq!(setting(&intruder.cluster, "k"), None);
    assert!(!intruder.cluster.is_initialized());
    assert_eq!(
        intruder.cluster.propose(put_setting("x", "y")).await,
        Err(ClusterError::NotInitialized)
    );

    // The stuck learner can be removed again.
    leader.remove_member(3).await.unwrap();
    assert!(leader.status().await.members.iter().all(|m| m.node_id != 3));

    intruder.cluster.shutdown().await.unwrap();
    for node in &nodes {
        node.cluster.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_certificate_speaks_only_for_its_own_member_node() {
    let ca = tls::generate_ca("identity").unwrap();
    let nodes = cluster_of(&ca, 2, |_| {}).await;
    let clusters: Vec<&Cluster> = nodes.iter().map(|n| &n.cluster).collect();
    let leader = agreed_leader(&clusters).await;
    let target = nodes.iter().find(|n| n.id == leader).unwrap();
    let member = nodes.iter().find(|n| n.id != leader).unwrap();
    let target_addr = target.cluster.local_raft_addr().unwrap();

    // Positive control: the member's own certificate, claiming its own id, gets an answer.
    let conn = raw_connect(&member.tls, target.id, target_addr)
        .await
        .unwrap();
    let resp = raw_call(
        &conn,
        &RpcRequest {
            from: member.id,
            body: RpcBody::Status,
        },
    )
    .await
    .unwrap();
    assert!(matches!(resp, RpcResponse::Status(Ok(_))), "{resp:?}");

    // A valid cluster certificate for node 7 claiming to be the member: refused.
    let seven = node_tls(&ca, 7);
    let conn = raw_connect(&seven, target.id, target_addr).await.unwrap();
    let resp = raw_call(
        &conn,
        &RpcRequest {
            from: member.id,
            body: RpcBody::Status,
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(&resp, RpcResponse::Refused(r) if r.contains("certificate")),
        "{resp:?}"
    );
    // ... and a forged write is refused without being applied.
    let resp = raw_call(
        &conn,
        &RpcRequest {
            from: member.id,
            body: RpcBody::ClientWrite(put_setting("forged", "1")),
        },
    )
    .await
    .unwrap();
    assert!(matches!(resp, RpcResponse::Refused(_)), "{resp:?}");

    // Node 7 as itself: a cluster-CA node, but not a member.
    let resp = raw_call(
        &conn,
        &RpcRequest {
            from: 7,
            body: RpcBody::Status,
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(&resp, RpcResponse::Refused(r) if r.contains("not a member")),
        "{resp:?}"
    );

    // The server name binds the other direction: dialling the leader while expecting node 7 fails.
    assert!(raw_connect(&member.tls, 7, target_addr).await.is_err());

    target.cluster.linearizable_barrier().await.unwrap();
    assert_eq!(setting(&target.cluster, "forged"), None);
    // Nothing above disturbed the cluster.
    tokio::time::timeout(
        Duration::from_secs(5),
        member.cluster.propose(put_setting("ok", "1")),
    )
    .await
    .unwrap()
    .unwrap();
    for node in &nodes {
        node.cluster.shutdown().await.unwrap();
    }
}
