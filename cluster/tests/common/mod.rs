//! Helpers shared by the cluster integration tests: in-process nodes with real RocksDB stores in
//! temporary directories and real QUIC on loopback.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a different part of the helpers"
)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use pbx_cluster::tls::{self, CaBundle, NodeTlsFiles};
use pbx_cluster::{Cluster, ClusterConfig, NodeAddr, NodeId};
use storage::Command;
use storage::model::Setting;
use tempfile::TempDir;

pub const LOCALHOST: &str = "127.0.0.1:0";

/// A node under test: its handle and the directory holding its store.
pub struct TestNode {
    pub id: NodeId,
    pub cluster: Cluster,
    pub tls: NodeTlsFiles,
    pub dir: TempDir,
}

impl TestNode {
    pub fn addr(&self) -> NodeAddr {
        self.cluster.advertise_addr().clone()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

pub fn node_tls(ca: &CaBundle, id: NodeId) -> NodeTlsFiles {
    let cert = tls::issue_node_cert(ca, id, &["127.0.0.1".into()]).unwrap();
    NodeTlsFiles::new(&ca.cert_pem, &cert)
}

pub fn config(id: NodeId, listen: SocketAddr, tls: NodeTlsFiles) -> ClusterConfig {
    let advertise = NodeAddr {
        raft_addr: String::new(),
        api_addr: format!("127.0.0.1:{}", 8000 + id),
    };
    let mut config = ClusterConfig::new(id, listen, advertise, tls);
    // Bounded so that a test that should fail does so quickly.
    config.join_timeout_ms = 15_000;
    config
}

pub async fn start_node(ca: &CaBundle, id: NodeId) -> TestNode {
    start_node_with(ca, id, |_| {}).await
}

pub async fn start_node_with(
    ca: &CaBundle,
    id: NodeId,
    tweak: impl FnOnce(&mut ClusterConfig),
) -> TestNode {
    let tls = node_tls(ca, id);
    let mut config = config(id, LOCALHOST.parse().unwrap(), tls.clone());
    tweak(&mut config);
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(config, &dir.path().join("data"))
        .await
        .unwrap();
    TestNode {
        id,
        cluster,
        tls,
        dir,
    }
}

/// Starts `n` nodes (ids 1..=n), initialises node 1 and adds the others through it.
pub async fn cluster_of(
    ca: &CaBundle,
    n: u64,
    tweak: impl Fn(&mut ClusterConfig),
) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    for id in 1..=n {
        nodes.push(start_node_with(ca, id, &tweak).await);
    }
    nodes[0].cluster.initialize().await.unwrap();
    for node in &nodes[1..] {
        nodes[0]
            .cluster
            .add_member(node.id, node.addr())
            .await
            .unwrap();
    }
    nodes
}

pub fn put_setting(key: &str, value: &str) -> Command {
    Command::PutSetting(Setting {
        key: key.into(),
        value: value.into(),
        updated_at: 1,
    })
}

pub fn setting(cluster: &Cluster, key: &str) -> Option<String> {
    cluster
        .reader()
        .get::<Setting>(key)
        .unwrap()
        .map(|s| s.value)
}

/// Polls `check` until it holds or `timeout` passes; panics with `what` on timeout.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The leader of `nodes`, once all running nodes agree on one.
pub async fn agreed_leader(nodes: &[&Cluster]) -> NodeId {
    let mut leader = None;
    eventually(
        Duration::from_secs(10),
        "a leader all nodes agree on",
        || {
            let view: Vec<_> = nodes.iter().map(|c| c.current_leader()).collect();
            leader = view[0].filter(|l| view.iter().all(|v| *v == Some(*l)));
            async move { leader.is_some() }
        },
    )
    .await;
    leader.unwrap()
}

/// A raw QUIC connection to `target` presenting `tls`'s certificate, for tests that speak the wire
/// protocol directly.
pub async fn raw_connect(
    tls: &NodeTlsFiles,
    target_id: NodeId,
    target: SocketAddr,
) -> Result<quinn::Connection, String> {
    raw_connect_speaking(tls, target_id, target, pbx_cluster::version::WIRE_VERSION).await
}

/// [`raw_connect`] offering the cluster protocols up to `max_wire_version` only.
pub async fn raw_connect_speaking(
    tls: &NodeTlsFiles,
    target_id: NodeId,
    target: SocketAddr,
    max_wire_version: u32,
) -> Result<quinn::Connection, String> {
    let mut endpoint =
        quinn::Endpoint::client(LOCALHOST.parse().unwrap()).map_err(|e| e.to_string())?;
    let config = tls::quic_client_config(tls, max_wire_version).map_err(|e| e.to_string())?;
    endpoint.set_default_client_config(config);
    let connecting = endpoint
        .connect(target, &tls::node_server_name(target_id))
        .map_err(|e| e.to_string())?;
    let conn = tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    // Keep the endpoint alive as long as the connection.
    tokio::spawn({
        let conn = conn.clone();
        async move {
            conn.closed().await;
            drop(endpoint);
        }
    });
    Ok(conn)
}

/// Sends one request over a fresh stream of `conn` and reads the answer.
pub async fn raw_call(
    conn: &quinn::Connection,
    request: &pbx_cluster::rpc::RpcRequest,
) -> Result<pbx_cluster::rpc::RpcResponse, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    pbx_cluster::rpc::write_frame(&mut send, request)
        .await
        .map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    let read = pbx_cluster::rpc::read_frame(&mut recv);
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())
}
