//! The cluster protocol is negotiated per connection: the newest version both sides speak, whichever
//! side is held back.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use common::{cluster_of, node_tls, raw_connect_speaking};
use pbx_cluster::tls;
use pbx_cluster::version::WIRE_VERSION;

fn alpn(conn: &quinn::Connection) -> String {
    let data = conn
        .handshake_data()
        .unwrap()
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .unwrap();
    String::from_utf8(data.protocol.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_speak_the_newest_version_they_share() {
    let ca = tls::generate_ca("versions").unwrap();
    let current = cluster_of(&ca, 1, |_| {}).await;
    let held_back = cluster_of(&ca, 1, |c| c.max_wire_version = 1).await;
    let client = node_tls(&ca, 9);
    let at = |n: &common::TestNode| n.cluster.local_raft_addr().unwrap();

    let conn = raw_connect_speaking(&client, 1, at(&current[0]), WIRE_VERSION)
        .await
        .unwrap();
    assert_eq!(alpn(&conn), format!("pbx-raft/{WIRE_VERSION}"));
    // An older client gets its own version from a newer server …
    let conn = raw_connect_speaking(&client, 1, at(&current[0]), 1)
        .await
        .unwrap();
    assert_eq!(alpn(&conn), "pbx-raft/1");
    // … and a newer client gets the older server's.
    let conn = raw_connect_speaking(&client, 1, at(&held_back[0]), WIRE_VERSION)
        .await
        .unwrap();
    assert_eq!(alpn(&conn), "pbx-raft/1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_an_older_protocol_is_refused_at_join_and_removed() {
    let ca = tls::generate_ca("join").unwrap();
    let nodes = cluster_of(&ca, 1, |_| {}).await;
    let leader = &nodes[0].cluster;
    let old = common::start_node_with(&ca, 2, |c| c.max_wire_version = 1).await;
    let err = leader.add_member(2, old.addr()).await.unwrap_err();
    assert_eq!(
        err,
        pbx_cluster::ClusterError::JoinTooOld {
            node: 2,
            speaks: 1,
            members: WIRE_VERSION
        },
        "{err}"
    );
    assert!(
        err.to_string().contains("install this pbx version"),
        "{err}"
    );
    assert!(
        leader.members().iter().all(|(id, _, _)| *id != 2),
        "the refused learner is removed again"
    );
    // A node of this protocol joins.
    let current = common::start_node_with(&ca, 3, |_| {}).await;
    leader.add_member(3, current.addr()).await.unwrap();
}
