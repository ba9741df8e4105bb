//! Replicated write throughput and commit latency, with durability on (every append fsynced).
//!
//! Nodes run in this process with real RocksDB in temp dirs and real QUIC (mutual TLS) on loopback.
//! Each client proposes `PutSetting` commands back to back through the leader and waits for the commit.
//! Run: `cargo bench -p pbx-cluster --bench replication [-- SECONDS]`; figures go in BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pbx_cluster::{Cluster, ClusterConfig, NodeTlsFiles, generate_ca, issue_node_cert};
use storage::model::{NodeAddr, Setting};
use storage::{Command, Response};

async fn start_cluster(n: u64, dir: &std::path::Path) -> Vec<Cluster> {
    let ca = generate_ca("bench").expect("ca");
    let mut nodes = Vec::new();
    for id in 1..=n {
        let cert = issue_node_cert(&ca, id, &[]).expect("cert");
        let tls = NodeTlsFiles::new(&ca.cert_pem, &cert);
        let advertise = NodeAddr {
            raft_addr: String::new(),
            api_addr: "127.0.0.1:1".into(),
        };
        let cfg = ClusterConfig::new(id, "127.0.0.1:0".parse().expect("addr"), advertise, tls);
        let node = Cluster::start(cfg, &dir.join(format!("n{id}")))
            .await
            .expect("start");
        nodes.push(node);
    }
    nodes[0].initialize().await.expect("init");
    wait_leader(&nodes[0]).await;
    for node in &nodes[1..] {
        let addr = NodeAddr {
            raft_addr: node.local_raft_addr().expect("bound").to_string(),
            api_addr: "127.0.0.1:1".into(),
        };
        nodes[0]
            .add_member(node.node_id(), addr)
            .await
            .expect("add member");
    }
    nodes
}

async fn wait_leader(node: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.current_leader() != Some(node.node_id()) {
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Run {
    writes: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

async fn run_clients(leader: &Cluster, clients: usize, secs: u64) -> Run {
    let until = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let leader = leader.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while Instant::now() < until {
                let cmd = Command::PutSetting(Setting {
                    key: format!("bench/{clients}/{c}/{i}"),
                    value: "x".repeat(64),
                    updated_at: i,
                });
                let t = Instant::now();
                let resp = leader.propose(cmd).await.expect("propose");
                assert_eq!(resp, Response::Ok);
                lat.push(t.elapsed());
                i += 1;
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("client"));
    }
    latencies.sort_unstable();
    Run {
        writes: latencies.len(),
        elapsed: start.elapsed(),
        latencies,
    }
}

fn pct(v: &[Duration], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let idx = ((v.len() - 1) as f64 * p).round() as usize;
    v[idx].as_secs_f64() * 1000.0
}

fn main() {
    let secs: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!("| nodes | clients | writes/s | p50 ms | p99 ms | writes |");
        println!("|---|---|---|---|---|---|");
        for n in [1u64, 3] {
            let dir = tempfile::tempdir().expect("tempdir");
            let nodes = start_cluster(n, dir.path()).await;
            let leader = Arc::new(nodes[0].clone());
            for clients in [1usize, 16, 256] {
                let r = run_clients(&leader, clients, secs).await;
                println!(
                    "| {n} | {clients} | {:.0} | {:.2} | {:.2} | {} |",
                    r.writes as f64 / r.elapsed.as_secs_f64(),
                    pct(&r.latencies, 0.5),
                    pct(&r.latencies, 0.99),
                    r.writes
                );
            }
            for node in &nodes {
                let _ = node.shutdown().await;
            }
        }
    });
}
