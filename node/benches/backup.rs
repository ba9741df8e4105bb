//! Size and time of a backup, and of restoring it into a fresh node, for a cluster holding 10,000
//! extensions (8,000 registered) and 100,000 CDRs (the office of `common`, seeded through Raft).
//!
//! The backup is `pbx::backup::Backups::create` on the seeded one-node cluster: the state exported
//! at one log index, written into an archive encrypted with a key derived by Argon2id (64 MiB, 3
//! passes, the cost archives are always written with), fsynced. The restore is
//! `pbx::backup::restore::restore` into a new data directory, as `pbx cluster restore` runs it:
//! the archive read and checked whole, a new single-node cluster started, every row proposed
//! through Raft (fsync), then a snapshot taken and the log purged. No audio files: their bytes go
//! through the same copy at disk and ChaCha20-Poly1305 speed, measured on its own below.
//!
//! Run: `cargo bench --workspace --bench backup`; figures go in BENCHMARKS.md ("Backup and
//! restore").

use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::{NodeTlsFiles, generate_ca, issue_node_cert};
use pbx::backup::archive::{ArchiveReader, ArchiveWriter, EntryKind, KdfCost, Origin};
use pbx::backup::{Backups, Trigger};
use pbx::config::{EventsSection, NodeConfig};
use sha2::{Digest as _, Sha256};
use storage::Command;
use storage::backup::BackupSettings;

mod common;

use common::*;

const PASSPHRASE: &str = "granite-otter-harbour-1947";
/// Bytes pushed through the archive format alone.
const STREAM_BYTES: usize = 256 * 1024 * 1024;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
    archive_throughput();
}

async fn run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start_node(dir.path()).await;
    seed(&node).await;
    let events =
        pbx::events::Events::start(&EventsSection::default(), node.clone()).expect("event center");
    let audio = pbx::audio::AudioStore::new(node.clone(), Arc::clone(&events));
    let backups = Backups::new(node.clone(), audio, events, &dir.path().join("n1"))
        .expect("backups directory");
    let settings = BackupSettings {
        passphrase: PASSPHRASE.into(),
        keep: 7,
        schedule: None,
        sftp: None,
        updated_at: now_millis(),
    };
    node.propose(Command::PutBackupSettings(settings))
        .await
        .expect("settings");

    let started = Instant::now();
    let record = backups.create(Trigger::Manual).await.expect("backup");
    let took = started.elapsed();
    println!(
        "backup: {EXTENSIONS} extensions, {CDRS} CDRs (state as of log index {}): {:.1} MiB in {:.2} s",
        record.log_index,
        record.size as f64 / (1024.0 * 1024.0),
        took.as_secs_f64()
    );
    let archive = backups.path(&record.id).expect("archive path");
    node.shutdown().await.expect("shutdown");

    // The restore, into a node with its own certificate and data directory.
    let target = dir.path().join("restored");
    let ca = generate_ca("restore").expect("ca");
    let cert = issue_node_cert(&ca, 1, &[]).expect("node certificate");
    NodeTlsFiles::new(&ca.cert_pem, &cert)
        .write(&target.join("tls"))
        .expect("tls files");
    let config = target.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = 1\ndata_dir = \"{}\"\n[cluster]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n[tls]\ndir = \"{}\"\n",
            target.join("data").display(),
            target.join("tls").display()
        ),
    )
    .expect("config");
    let cfg = NodeConfig::load(&config).expect("node config");
    let started = Instant::now();
    let restored = pbx::backup::restore::restore(&cfg, &archive, PASSPHRASE)
        .await
        .expect("restore");
    let took = started.elapsed();
    println!(
        "restore: {} rows ({} extensions) into a new node, snapshot taken: {:.2} s",
        restored.rows,
        restored.extensions,
        took.as_secs_f64()
    );
}

/// The archive format alone: one entry of [`STREAM_BYTES`] written to memory and read back
/// (ChaCha20-Poly1305 and SHA-256 over every byte), key derivation excluded.
fn archive_throughput() {
    let data: Vec<u8> = (0..STREAM_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    let sha: [u8; 32] = Sha256::digest(&data).into();
    let origin = Origin {
        cluster_id: "bench".into(),
        node_id: 1,
        created_at: 0,
        log_index: 0,
    };
    let mut w =
        ArchiveWriter::new(Vec::new(), &origin, PASSPHRASE, KdfCost::DEFAULT).expect("writer");
    let started = Instant::now();
    w.entry(EntryKind::Audio, "audio", data.len() as u64, sha, &data[..])
        .expect("entry");
    let bytes = w.finish().expect("finish");
    let write = started.elapsed();
    let mut r = ArchiveReader::open(&bytes[..], PASSPHRASE).expect("reader");
    let started = Instant::now();
    let entry = r.next_entry().expect("entry").expect("one entry");
    r.copy_entry(&entry, std::io::sink()).expect("copy");
    assert!(r.next_entry().expect("end").is_none());
    let read = started.elapsed();
    let mib = STREAM_BYTES as f64 / (1024.0 * 1024.0);
    let rate = |d: Duration| mib / d.as_secs_f64();
    println!(
        "archive format: {mib:.0} MiB written at {:.0} MiB/s, read and checked at {:.0} MiB/s (one core)",
        rate(write),
        rate(read)
    );
}
