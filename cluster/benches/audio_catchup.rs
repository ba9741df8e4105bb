//! How fast a rejoining node catches up on audio: one node holds `MIB` MiB of audio files; another
//! fetches every one through the path the node's catch-up uses (`Cluster::fetch_audio`: QUIC with
//! mutual TLS on loopback, SHA-256 checked, fsynced, renamed into place), one file after another as
//! the catch-up does. Nodes run in this process with real RocksDB in temp dirs.
//! Run: `cargo bench --workspace --bench audio_catchup [-- MIB [FILE_MIB]]` (defaults 1024 and 4);
//! figures go in BENCHMARKS.md.

use std::time::{Duration, Instant};

use pbx_cluster::blob_dir::sha256_hex;
use pbx_cluster::{Cluster, ClusterConfig, NodeTlsFiles, generate_ca, issue_node_cert};
use storage::model::NodeAddr;

async fn start_pair(dir: &std::path::Path) -> (Cluster, Cluster) {
    let ca = generate_ca("bench").expect("ca");
    let mut nodes = Vec::new();
    for id in 1..=2 {
        let cert = issue_node_cert(&ca, id, &[]).expect("cert");
        let tls = NodeTlsFiles::new(&ca.cert_pem, &cert);
        let advertise = NodeAddr {
            raft_addr: String::new(),
            api_addr: "127.0.0.1:1".into(),
        };
        let mut cfg = ClusterConfig::new(id, "127.0.0.1:0".parse().expect("addr"), advertise, tls);
        cfg.audio_reserve_bytes = 0;
        nodes.push(
            Cluster::start(cfg, &dir.join(format!("n{id}")))
                .await
                .expect("start"),
        );
    }
    nodes[0].initialize().await.expect("init");
    let deadline = Instant::now() + Duration::from_secs(10);
    while nodes[0].current_leader() != Some(1) {
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let addr = NodeAddr {
        raft_addr: nodes[1].local_raft_addr().expect("bound").to_string(),
        api_addr: "127.0.0.1:1".into(),
    };
    nodes[0].add_member(2, addr).await.expect("add member");
    let second = nodes.pop().expect("two nodes");
    let first = nodes.pop().expect("two nodes");
    (first, second)
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let total_mib = args.first().copied().unwrap_or(1024);
    let file_mib = args.get(1).copied().unwrap_or(4).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let (holder, joiner) = start_pair(dir.path()).await;
        let files = total_mib.div_ceil(file_mib);
        let size = (file_mib * 1024 * 1024) as usize;
        let mut index = Vec::new();
        for n in 0..files {
            // Distinct, incompressible-looking content per file.
            let bytes: Vec<u8> = (0..size)
                .map(|i| ((i as u64).wrapping_mul(2_654_435_761) ^ n) as u8)
                .collect();
            let id = format!("{:032x}", n + 1);
            let sha = sha256_hex(&bytes);
            holder
                .audio_dir()
                .write(&id, &sha, size as u64, &mut &bytes[..])
                .await
                .expect("write");
            index.push((id, sha));
        }
        let started = Instant::now();
        for (id, sha) in &index {
            joiner
                .fetch_audio(1, id, sha, size as u64)
                .await
                .expect("fetch");
        }
        let elapsed = started.elapsed();
        let mib = (files * file_mib) as f64;
        println!(
            "audio catch-up: {files} files of {file_mib} MiB ({mib:.0} MiB) in {:.2} s = {:.0} MiB/s ({:.1} files/s)",
            elapsed.as_secs_f64(),
            mib / elapsed.as_secs_f64(),
            files as f64 / elapsed.as_secs_f64()
        );
        joiner.shutdown().await.expect("shutdown");
        holder.shutdown().await.expect("shutdown");
    });
}
