//! Scenarios: each drives a fault into a lab cluster while clients write, measures what a user would
//! notice, and checks the invariants (no acknowledged write lost).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use tokio::sync::Mutex;

use crate::lab::{Lab, LabClient};

/// What one scenario run measured.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub scenario: String,
    pub rounds: usize,
    /// Per round: kill -9 of the leader until a write is acknowledged again, in milliseconds.
    pub failover_ms: Vec<u64>,
    /// Per round: kill -9 of the leader until a surviving node names a new leader, in milliseconds.
    pub election_ms: Vec<u64>,
    pub acknowledged_writes: usize,
    pub lost_writes: usize,
    pub failed_writes: usize,
}

impl Report {
    /// Percentile `p` (0..=1) of the write-failover times.
    pub fn percentile(&self, p: f64) -> u64 {
        percentile(&self.failover_ms, p)
    }
}

/// Percentile `p` (0..=1) of `values`.
pub fn percentile(values: &[u64], p: f64) -> u64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    if v.is_empty() {
        return 0;
    }
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// Writers that keep creating extensions through every node and remember what was acknowledged.
pub(crate) struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    failed: Arc<std::sync::atomic::AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    pub(crate) fn start(client: &LabClient, nodes: usize, count: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks = (0..count)
            .map(|w| {
                let (client, stop, acked, failed) = (
                    client.clone(),
                    Arc::clone(&stop),
                    Arc::clone(&acked),
                    Arc::clone(&failed),
                );
                tokio::spawn(async move {
                    let mut seq = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let number = format!("8{w:02}{seq:06}");
                        match client.create_extension((w + seq) % nodes, &number).await {
                            Ok(s) if s == reqwest::StatusCode::CREATED => {
                                acked.lock().await.push(number)
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                        seq += 1;
                    }
                })
            })
            .collect();
        Self {
            stop,
            acked,
            failed,
            tasks,
        }
    }

    pub(crate) async fn finish(self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let acked = self.acked.lock().await.clone();
        (acked, self.failed.load(Ordering::Relaxed))
    }
}

/// Kill -9 the leader `rounds` times while writers run; restart it each time.
pub async fn leader_kill(rounds: usize, nodes: u64) -> anyhow::Result<Report> {
    let mut lab = Lab::start(nodes).await?;
    // A session token: Basic auth would spend an argon2 check (tens of ms of CPU) on every write.
    let client = lab.client().with_session().await?;
    let writers = Writers::start(&client, lab.nodes.len(), 4);
    let mut report = Report {
        scenario: "leader-kill".into(),
        rounds,
        ..Report::default()
    };
    for round in 0..rounds {
        let leader = lab.wait_leader(Duration::from_secs(15)).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let killed_at = Instant::now();
        lab.kill(leader);
        let survivor = (leader + 1) % lab.nodes.len();
        let killed_id = lab.nodes[leader].id;
        // Watch for the new leader while the probe writes.
        let watcher = {
            let client = client.clone();
            tokio::spawn(async move {
                loop {
                    if let Ok(h) = client.health(survivor).await
                        && h["leader"].as_u64().is_some_and(|l| l != killed_id)
                    {
                        return killed_at.elapsed().as_millis() as u64;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let mut probe = 0;
        loop {
            probe += 1;
            let number = format!("9{round:03}{probe:05}");
            let ok = client.create_extension(survivor, &number).await.ok()
                == Some(reqwest::StatusCode::CREATED);
            if ok {
                report
                    .failover_ms
                    .push(killed_at.elapsed().as_millis() as u64);
                writers.acked.lock().await.push(number);
                break;
            }
            ensure!(
                killed_at.elapsed() < Duration::from_secs(30),
                "no write accepted 30 s after killing the leader"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elected = tokio::time::timeout(Duration::from_secs(30), watcher).await??;
        report.election_ms.push(elected);
        eprintln!(
            "round {round}: killed node {}, new leader after {elected} ms, writes accepted again after {} ms",
            lab.nodes[leader].id, report.failover_ms[round]
        );
        lab.restart(leader).await?;
    }
    lab.wait_leader(Duration::from_secs(15)).await?;
    let (acked, failed) = writers.finish().await;
    report.acknowledged_writes = acked.len();
    report.failed_writes = failed;
    // Every node, including each one that was killed, must hold every acknowledged write.
    report.lost_writes = lost_writes(&lab, &lab.client(), &acked).await?;
    Ok(report)
}

/// The most acknowledged writes missing from any one node (each node read through `client`).
pub(crate) async fn lost_writes(
    lab: &Lab,
    client: &LabClient,
    acked: &[String],
) -> anyhow::Result<usize> {
    let mut most = 0;
    for (i, node) in lab.nodes.iter().enumerate() {
        let have: std::collections::HashSet<String> = client
            .extension_numbers(i)
            .await
            .with_context(|| format!("reading node {}", node.id))?
            .into_iter()
            .collect();
        most = most.max(acked.iter().filter(|n| !have.contains(*n)).count());
    }
    Ok(most)
}
