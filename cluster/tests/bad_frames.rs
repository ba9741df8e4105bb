//! Malformed frames on a Raft stream (garbage, truncated, oversized length) close that connection with
//! the bad-frame error code; the node keeps serving Raft and clients.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::time::Duration;

use common::{cluster_of, put_setting, raw_call, raw_connect, setting};
use pbx_cluster::rpc::{self, RpcBody, RpcRequest, RpcResponse};
use pbx_cluster::tls;

/// Opens a stream, sends `bytes`, and returns how the connection ended.
async fn send_raw(conn: &quinn::Connection, bytes: &[u8]) -> quinn::ConnectionError {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    send.finish().unwrap();
    // No answer comes back: the read fails once the server closes the connection.
    let read = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1024))
        .await
        .unwrap();
    assert!(read.is_err(), "a bad frame got an answer: {read:?}");
    tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_frames_drop_the_connection_and_the_node_keeps_serving() {
    let ca = tls::generate_ca("frames").unwrap();
    let nodes = cluster_of(&ca, 3, |_| {}).await;
    let leader = &nodes[0];
    assert_eq!(leader.cluster.current_leader(), Some(1));
    let addr = leader.cluster.local_raft_addr().unwrap();
    // A member's certificate: bad frames are dropped before any identity check.
    let peer = &nodes[1].tls;

    let mut garbage = 24u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(b"\x01this is not bincode!!!!");
    let mut truncated = 1000u32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&[1; 10]);
    let oversized = (rpc::MAX_FRAME_LEN + 1).to_be_bytes().to_vec();
    let http = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let half_length = vec![0u8, 0];

    for (name, bytes) in [
        ("garbage", garbage),
        ("truncated", truncated),
        ("oversized", oversized),
        ("http", http),
        ("half", half_length),
    ] {
        let conn = raw_connect(peer, 1, addr).await.unwrap();
        let closed = send_raw(&conn, &bytes).await;
        match closed {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(close.error_code, rpc::ERR_BAD_FRAME.into(), "{name}");
            }
            other => panic!("{name}: unexpected close {other}"),
        }
        // The node still answers well-formed calls on a new connection ...
        let conn = raw_connect(peer, 1, addr).await.unwrap();
        let resp = raw_call(
            &conn,
            &RpcRequest {
                from: 2,
                body: RpcBody::Status,
            },
        )
        .await
        .unwrap();
        assert!(
            matches!(resp, RpcResponse::Status(Ok(_))),
            "{name}: {resp:?}"
        );
        // ... and still leads and replicates.
        leader
            .cluster
            .propose(put_setting(name, "ok"))
            .await
            .unwrap();
    }

    assert_eq!(leader.cluster.current_leader(), Some(1));
    for node in &nodes {
        node.cluster.linearizable_barrier().await.unwrap();
        for name in ["garbage", "truncated", "oversized", "http", "half"] {
            assert_eq!(
                setting(&node.cluster, name).as_deref(),
                Some("ok"),
                "node {} {name}",
                node.id
            );
        }
    }
    for node in &nodes {
        node.cluster.shutdown().await.unwrap();
    }
}
