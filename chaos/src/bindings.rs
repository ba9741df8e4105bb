//! How many registered phones a 3-node cluster holds, what each binding costs in memory and on disk,
//! and how fast a node that was away catches up (issue 18's "memory and disk per binding" and
//! "rejoining node, bindings per second" rows).
//!
//! The run, on a fresh lab of release `pbx` processes on loopback:
//! 1. `N` extensions are imported through the API (CSV, 500 per Raft entry), then every node is
//!    killed and started again in turn so that RocksDB flushes its memtables into SST files: the
//!    baseline (`before`) is a store at rest holding the extensions and no binding.
//! 2. One follower is stopped (SIGTERM). sipp registers `N` distinct phones, one per extension
//!    (`register-auth.xml`: REGISTER, 401, REGISTER with MD5 digest, 200), against the leader's
//!    SIP port; every binding is committed through Raft before its `200 OK`.
//! 3. `after_registration`: each running node's RSS and data directory, and its count of live
//!    bindings through the API.
//! 4. The stopped follower starts again; `rejoin` is the time from its start until it has applied
//!    the leader's last log index as it stood at the start, and how (log replay or snapshot).
//! 5. `settled`: once `settle_secs` passed since the last REGISTER (finished SIP transactions live
//!    32 s), every node again.
//! 6. Every node is killed (-9) and started again in turn, which makes RocksDB flush what its write-ahead
//!    log held into SST files: `flushed`, and how long each restart with `N` bindings took to catch up.
//!
//! Per binding: (figure − `before`) / `N`, per node.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use serde::Serialize;

use crate::lab::{Lab, LabClient, LabOptions, free_port};

/// The phones' SIP secret (the password policy refuses one containing the extension number).
const SECRET: &str = "Tr7!kq-Vw9zP";
/// Rows per import request (the API takes up to 10,000 rows and 2 MiB of CSV).
const IMPORT_ROWS: usize = 10_000;
/// How often catch-up is polled.
const POLL: Duration = Duration::from_millis(20);
/// Longest a node may take to catch up after it starts.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(300);

/// What the run is asked to do.
#[derive(Debug, Clone)]
pub struct BindingsConfig {
    /// Phones to register, one binding each, on extensions `first..first + phones`.
    pub phones: u32,
    pub first: u32,
    /// sipp's outstanding registrations at most.
    pub concurrency: u32,
    /// The sipp scenario (`../shared/bench/register-auth.xml`).
    pub sipp_scenario: PathBuf,
    /// The lab's `snapshot_after_logs` (production default 5000).
    pub snapshot_after_logs: u64,
    /// Seconds after the last REGISTER before the `settled` sample.
    pub settle_secs: u64,
}

/// One node's resident memory and data directory at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeSample {
    pub node_id: u64,
    /// `VmRSS` of the process, KiB (0: not running).
    pub rss_kib: u64,
    /// `RssAnon` (heap and anonymous mappings, without the mapped binary), KiB.
    pub rss_anon_kib: u64,
    pub disk: DiskUsage,
    pub applied_index: u64,
    pub last_log_index: u64,
    /// Live bindings the node's API lists (a linearizable read), when asked.
    pub bindings: Option<u64>,
}

/// A node's data directory, by kind of file: allocated bytes (what `du` counts) and apparent sizes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiskUsage {
    /// Allocated blocks of every file, bytes (`du -s --block-size=1`).
    pub allocated: u64,
    /// Apparent size of every file, bytes (`du -s -b`).
    pub apparent: u64,
    /// RocksDB table files (`db/*.sst`), apparent bytes.
    pub sst: u64,
    /// RocksDB write-ahead log (`db/*.log`), apparent bytes.
    pub wal: u64,
    /// Raft snapshot files (`snapshots/`), apparent bytes.
    pub snapshots: u64,
    /// Everything else (RocksDB's own LOG and MANIFEST files, options, the audio store), apparent bytes.
    pub other: u64,
}

/// How a node caught up after it was started.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CatchUp {
    pub node_id: u64,
    /// How it had stopped: `sigterm` (clean) or `sigkill`.
    pub stopped_by: String,
    /// The leader's last log index when the node was started: the target.
    pub target_index: u64,
    /// The node's applied index before it stopped.
    pub applied_before: u64,
    /// From the start of the process until its API answered and it knew a leader.
    pub serving_ms: u64,
    /// From the start of the process until its applied index first moved past `applied_before`
    /// (the leader reached it); 0 when it had nothing to catch up.
    pub first_progress_ms: u64,
    /// From the start of the process until it had applied `target_index`.
    pub caught_up_ms: u64,
    /// Elections meanwhile: the Raft term the node reports once caught up, minus the highest term
    /// the running nodes reported when it was started.
    pub elections: u64,
    /// Snapshots the node installed from the leader while catching up (0: log replay only).
    pub snapshots_installed: u64,
    /// Live bindings its API lists once caught up.
    pub bindings: u64,
    /// Bindings held divided by `caught_up_ms`.
    pub bindings_per_sec: f64,
}

/// The registration load.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Registration {
    /// The node whose SIP port sipp sent to (the leader).
    pub sip_node: u64,
    pub concurrency: u32,
    pub successful: u64,
    pub failed: u64,
    pub secs: f64,
    pub per_sec: f64,
    /// Raft entries the registrations took (the leader's last log index, after − before).
    pub raft_entries: u64,
    /// Elections meanwhile (the SIP node's Raft term, after − before).
    pub elections: u64,
    /// Peak RSS of each running node while sipp ran (sampled every 500 ms), KiB.
    pub peak_rss_kib: Vec<(u64, u64)>,
}

/// Per node: (figure − before) / N, bytes per binding.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PerBinding {
    pub node_id: u64,
    /// Right after the registrations (for the rejoining node: right after it caught up).
    pub rss_after: f64,
    pub rss_settled: f64,
    pub rss_flushed: f64,
    /// Allocated bytes (`du`).
    pub disk_after: f64,
    pub disk_settled: f64,
    pub disk_flushed: f64,
    /// RocksDB table files only, once flushed.
    pub sst_flushed: f64,
    /// The snapshot file's growth.
    pub snapshot_flushed: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct BindingsReport {
    pub scenario: String,
    pub phones: u32,
    pub snapshot_after_logs: u64,
    pub extensions_imported: u64,
    pub import_secs: f64,
    /// The restarts that flushed the baseline (no bindings).
    pub baseline_restarts: Vec<CatchUp>,
    pub before: Vec<NodeSample>,
    pub registration: Registration,
    /// The nodes that were up during the registrations, right after.
    pub after_registration: Vec<NodeSample>,
    /// The follower that was down while the phones registered, started again.
    pub rejoin: CatchUp,
    pub rejoined: NodeSample,
    pub settled: Vec<NodeSample>,
    /// Kill -9 and start of every node holding the bindings, followers first.
    pub restarts_with_bindings: Vec<CatchUp>,
    pub flushed: Vec<NodeSample>,
    /// CPU used by each node over 10 s with nothing to do: before, and settled with N bindings (%).
    pub idle_cpu_before: Vec<(u64, f64)>,
    pub idle_cpu_settled: Vec<(u64, f64)>,
    pub per_binding: Vec<PerBinding>,
    /// The mean of `per_binding` over the nodes (`node_id` 0): a single node's RSS carries tens of
    /// MiB of allocator history, the mean much less.
    pub mean_per_binding: PerBinding,
    pub violations: Vec<String>,
}

/// Runs the scenario (see the module documentation).
pub async fn run(cfg: BindingsConfig) -> anyhow::Result<BindingsReport> {
    ensure!(
        cfg.sipp_scenario.is_file(),
        "no sipp scenario at {}",
        cfg.sipp_scenario.display()
    );
    let n = cfg.phones;
    let options = LabOptions {
        snapshot_after_logs: cfg.snapshot_after_logs,
        // sipp answers only the first challenge and knows only MD5; qualifying would ping every
        // phone (sipp never answers); room for the finished transactions of the whole burst.
        sip_extra:
            "digest_algorithms = [\"MD5\"]\nqualify_interval_secs = 0\nmax_transactions = 500000"
                .into(),
        ..LabOptions::default()
    };
    let mut lab = Lab::start_with(3, options).await?;
    let client = lab.client().with_session().await?;
    let mut report = BindingsReport {
        scenario: "bindings".into(),
        phones: n,
        snapshot_after_logs: cfg.snapshot_after_logs,
        ..BindingsReport::default()
    };

    // 1. Extensions, then a store at rest.
    let started = Instant::now();
    report.extensions_imported = import_extensions(&client, cfg.first, n).await?;
    report.import_secs = started.elapsed().as_secs_f64();
    ensure!(
        report.extensions_imported == u64::from(n),
        "only {} of {n} extensions imported",
        report.extensions_imported
    );
    eprintln!("imported {n} extensions in {:.1} s", report.import_secs);
    for i in 0..lab.nodes.len() {
        client.sync(i).await?;
    }
    report.baseline_restarts = rolling_kill_restart(&mut lab, &client).await?;
    report.before = sample_all(&lab, &client, true).await;
    report.idle_cpu_before = idle_cpu(&lab, Duration::from_secs(10)).await;

    // 2. One follower down; the phones register through the leader.
    let leader = lab.wait_leader(Duration::from_secs(15)).await?;
    let away = (leader + 1) % lab.nodes.len();
    let applied_before = client
        .metric(away, "pbx_raft_applied_index")
        .await
        .unwrap_or(0.0) as u64;
    lab.stop(away)?;
    eprintln!(
        "stopped node {} (applied index {applied_before}); registering {n} phones through node {}",
        lab.nodes[away].id, lab.nodes[leader].id
    );
    report.registration = register(&lab, &client, leader, &cfg).await?;
    let registered_at = Instant::now();
    eprintln!(
        "registered {} ok, {} failed in {:.1} s: {:.0}/s, {} Raft entries, {} elections",
        report.registration.successful,
        report.registration.failed,
        report.registration.secs,
        report.registration.per_sec,
        report.registration.raft_entries,
        report.registration.elections
    );

    // 3. The nodes that were up.
    report.after_registration = sample_all(&lab, &client, true)
        .await
        .into_iter()
        .filter(|s| s.rss_kib > 0)
        .collect();
    for s in &report.after_registration {
        if s.bindings != Some(u64::from(n)) {
            report.violations.push(format!(
                "node {} lists {:?} bindings after the registrations, not {n}",
                s.node_id, s.bindings
            ));
        }
    }

    // 4. The follower that was away comes back.
    report.rejoin = start_and_catch_up(&mut lab, &client, away, "sigterm", applied_before).await?;
    report.rejoined = sample(&lab, &client, away, true).await;
    eprintln!(
        "node {} caught up {} entries in {} ms (first progress after {} ms, {} snapshot(s) installed, {} elections): {:.0} bindings/s",
        report.rejoin.node_id,
        report.rejoin.target_index.saturating_sub(applied_before),
        report.rejoin.caught_up_ms,
        report.rejoin.first_progress_ms,
        report.rejoin.snapshots_installed,
        report.rejoin.elections,
        report.rejoin.bindings_per_sec
    );
    if report.rejoin.bindings != u64::from(n) {
        report.violations.push(format!(
            "the rejoined node lists {} bindings, not {n}",
            report.rejoin.bindings
        ));
    }

    // 5. At rest, SIP transactions gone.
    let settle = Duration::from_secs(cfg.settle_secs);
    if let Some(left) = settle.checked_sub(registered_at.elapsed()) {
        eprintln!("settling {} s", left.as_secs());
        tokio::time::sleep(left).await;
    }
    report.settled = sample_all(&lab, &client, true).await;
    report.idle_cpu_settled = idle_cpu(&lab, Duration::from_secs(10)).await;

    // 6. Every node restarted with the bindings on disk: RocksDB flushes its recovered log.
    report.restarts_with_bindings = rolling_kill_restart(&mut lab, &client).await?;
    report.flushed = sample_all(&lab, &client, true).await;
    for c in &report.restarts_with_bindings {
        if c.bindings != u64::from(n) {
            report.violations.push(format!(
                "node {} lists {} bindings after its restart, not {n}",
                c.node_id, c.bindings
            ));
        }
    }

    report.per_binding = per_binding(&report, &lab, away);
    report.mean_per_binding = mean(&report.per_binding);
    Ok(report)
}

/// Imports extensions `first..first + n` with [`SECRET`]; returns how many were created.
async fn import_extensions(client: &LabClient, first: u32, n: u32) -> anyhow::Result<u64> {
    let numbers: Vec<u32> = (first..first + n).collect();
    let mut created = 0;
    for chunk in numbers.chunks(IMPORT_ROWS) {
        let mut csv = String::from("number,display_name,secret\n");
        for number in chunk {
            csv.push_str(&format!("{number},Phone {number},{SECRET}\n"));
        }
        let answer: serde_json::Value = client
            .req(0, reqwest::Method::POST, "/api/v1/extensions/import")
            .header(reqwest::header::CONTENT_TYPE, "text/csv")
            .body(csv)
            .send()
            .await?
            .error_for_status()
            .context("importing extensions")?
            .json()
            .await?;
        created += answer["created"].as_u64().unwrap_or(0);
    }
    Ok(created)
}

/// sipp registers one phone per extension against node `sip`'s SIP port.
async fn register(
    lab: &Lab,
    client: &LabClient,
    sip: usize,
    cfg: &BindingsConfig,
) -> anyhow::Result<Registration> {
    let dir = lab.dir.path();
    let users = dir.join("users.csv");
    let mut csv = String::from("SEQUENTIAL\n");
    for user in cfg.first..cfg.first + cfg.phones {
        csv.push_str(&format!(
            "{user};[authentication username={user} password={SECRET}]\n"
        ));
    }
    std::fs::write(&users, csv)?;
    let stat = dir.join("sipp-stat.csv");
    let last_before = client.metric(sip, "pbx_raft_last_log_index").await? as u64;
    let term_before = client.metric(sip, "pbx_raft_term").await? as u64;
    let target = format!("127.0.0.1:{}", lab.nodes[sip].sip_port);
    let limit = Duration::from_secs(u64::from(cfg.phones) / 500 + 120);
    let mut child = tokio::process::Command::new("sipp")
        .arg(&target)
        .arg("-sf")
        .arg(&cfg.sipp_scenario)
        .arg("-inf")
        .arg(&users)
        .args(["-r", "1000000", "-rp", "1000", "-m"])
        .arg(cfg.phones.to_string())
        .arg("-l")
        .arg(cfg.concurrency.to_string())
        .args(["-i", "127.0.0.1", "-p"])
        .arg(free_port(true).to_string())
        .args(["-trace_stat", "-fd", "1", "-stf"])
        .arg(&stat)
        .arg("-timeout")
        .arg(format!("{}s", limit.as_secs()))
        .arg("-timeout_error")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("sipp.err"))?)
        .kill_on_drop(true)
        .spawn()
        .context("starting sipp (Debian package sip-tester)")?;
    let started = Instant::now();
    let mut peak: Vec<(u64, u64)> = lab.nodes.iter().map(|n| (n.id, 0)).collect();
    let status = loop {
        for (i, node) in lab.nodes.iter().enumerate() {
            let rss = node.pid().map_or(0, |pid| proc_status(pid).0);
            peak[i].1 = peak[i].1.max(rss);
        }
        tokio::select! {
            status = child.wait() => break status?,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        ensure!(
            started.elapsed() < limit + Duration::from_secs(10),
            "sipp did not finish within {limit:?}"
        );
    };
    let secs = started.elapsed().as_secs_f64();
    let (successful, failed) = sipp_counts(&stat)?;
    if !status.success() {
        eprintln!("sipp exited with {status}");
    }
    let last_after = client.metric(sip, "pbx_raft_last_log_index").await? as u64;
    let term_after = client.metric(sip, "pbx_raft_term").await? as u64;
    Ok(Registration {
        sip_node: lab.nodes[sip].id,
        concurrency: cfg.concurrency,
        successful,
        failed,
        secs,
        per_sec: successful as f64 / secs,
        raft_entries: last_after.saturating_sub(last_before),
        elections: term_after.saturating_sub(term_before),
        peak_rss_kib: peak.into_iter().filter(|(_, r)| *r > 0).collect(),
    })
}

/// Successful and failed calls from the last line of sipp's statistics file.
fn sipp_counts(stat: &Path) -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string(stat).context("reading sipp's statistics")?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .context("empty statistics")?
        .split(';')
        .collect();
    let last: Vec<&str> = lines
        .last()
        .context("no statistics line")?
        .split(';')
        .collect();
    let field = |name: &str| -> anyhow::Result<u64> {
        let i = header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("no {name} in sipp's statistics"))?;
        Ok(last.get(i).and_then(|v| v.trim().parse().ok()).unwrap_or(0))
    };
    Ok((field("SuccessfulCall(C)")?, field("FailedCall(C)")?))
}

/// Kills (-9) and starts again every node in turn, followers first, each caught up before the next.
async fn rolling_kill_restart(lab: &mut Lab, client: &LabClient) -> anyhow::Result<Vec<CatchUp>> {
    let leader = lab.wait_leader(Duration::from_secs(15)).await?;
    let order: Vec<usize> = (0..lab.nodes.len())
        .filter(|i| *i != leader)
        .chain([leader])
        .collect();
    let mut out = Vec::new();
    for i in order {
        let applied = client
            .metric(i, "pbx_raft_applied_index")
            .await
            .unwrap_or(0.0) as u64;
        lab.kill(i);
        lab.wait_leader(Duration::from_secs(15)).await?;
        let c = start_and_catch_up(lab, client, i, "sigkill", applied).await?;
        eprintln!(
            "node {} restarted: serving after {} ms, caught up after {} ms ({} elections), {} bindings",
            c.node_id, c.serving_ms, c.caught_up_ms, c.elections, c.bindings
        );
        out.push(c);
    }
    Ok(out)
}

/// Starts node `i` (stopped) and waits until it has applied the leader's last log index as it stands
/// now.
async fn start_and_catch_up(
    lab: &mut Lab,
    client: &LabClient,
    i: usize,
    stopped_by: &str,
    applied_before: u64,
) -> anyhow::Result<CatchUp> {
    let (mut target, mut term_before) = (0, 0);
    for j in 0..lab.nodes.len() {
        if j != i && lab.nodes[j].is_running() {
            target = target.max(client.metric(j, "pbx_raft_last_log_index").await? as u64);
            term_before = term_before.max(client.metric(j, "pbx_raft_term").await? as u64);
        }
    }
    let started = Instant::now();
    lab.spawn(i)?;
    let mut serving_ms = None;
    let mut first_progress_ms = None;
    let caught_up_ms = loop {
        if serving_ms.is_none()
            && client
                .health(i)
                .await
                .is_ok_and(|h| h["leader"].as_u64().is_some())
        {
            serving_ms = Some(started.elapsed().as_millis() as u64);
        }
        if serving_ms.is_some()
            && let Ok(applied) = client.metric(i, "pbx_raft_applied_index").await
        {
            let applied = applied as u64;
            if first_progress_ms.is_none() && applied > applied_before {
                first_progress_ms = Some(started.elapsed().as_millis() as u64);
            }
            if applied >= target {
                break started.elapsed().as_millis() as u64;
            }
        }
        ensure!(
            lab.nodes[i].is_running(),
            "node {} exited while catching up:\n{}",
            lab.nodes[i].id,
            lab.log_tail(i)
        );
        ensure!(
            started.elapsed() < CATCH_UP_LIMIT,
            "node {} did not catch up within {CATCH_UP_LIMIT:?}",
            lab.nodes[i].id
        );
        tokio::time::sleep(POLL).await;
    };
    let snapshots_installed = client
        .metric(i, "pbx_raft_snapshots_installed_total")
        .await? as u64;
    let term_after = client.metric(i, "pbx_raft_term").await? as u64;
    let bindings = live_bindings(client, i).await?;
    Ok(CatchUp {
        node_id: lab.nodes[i].id,
        stopped_by: stopped_by.into(),
        target_index: target,
        applied_before,
        serving_ms: serving_ms.unwrap_or(caught_up_ms),
        first_progress_ms: first_progress_ms.unwrap_or(0),
        caught_up_ms,
        elections: term_after.saturating_sub(term_before),
        snapshots_installed,
        bindings,
        bindings_per_sec: bindings as f64 * 1000.0 / caught_up_ms.max(1) as f64,
    })
}

/// Live bindings node `i` lists (a linearizable read on that node; retried for a while, as a node
/// just started may answer `503` until it has heard from the leader).
async fn live_bindings(client: &LabClient, i: usize) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.get_json(i, "/api/v1/registrations?limit=1").await {
            Ok(list) => return list["total"].as_u64().context("no total"),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn sample_all(lab: &Lab, client: &LabClient, count: bool) -> Vec<NodeSample> {
    let mut out = Vec::new();
    for i in 0..lab.nodes.len() {
        out.push(sample(lab, client, i, count).await);
    }
    out
}

async fn sample(lab: &Lab, client: &LabClient, i: usize, count: bool) -> NodeSample {
    let node = &lab.nodes[i];
    let (rss_kib, rss_anon_kib) = node.pid().map_or((0, 0), proc_status);
    let running = rss_kib > 0;
    let metric = |name: &'static str| async move {
        if running {
            client.metric(i, name).await.unwrap_or(0.0) as u64
        } else {
            0
        }
    };
    NodeSample {
        node_id: node.id,
        rss_kib,
        rss_anon_kib,
        disk: disk_usage(&node.data_dir),
        applied_index: metric("pbx_raft_applied_index").await,
        last_log_index: metric("pbx_raft_last_log_index").await,
        bindings: if running && count {
            live_bindings(client, i).await.ok()
        } else {
            None
        },
    }
}

/// `VmRSS` and `RssAnon` of process `pid`, KiB (zeros when it is gone).
fn proc_status(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

/// CPU ticks (user + system) process `pid` used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name in parentheses: state is field 3, utime 14 and stime 15.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

/// Each running node's CPU use over `window`, percent of one core (100 ticks per second).
async fn idle_cpu(lab: &Lab, window: Duration) -> Vec<(u64, f64)> {
    let pids: Vec<(u64, u32)> = lab
        .nodes
        .iter()
        .filter_map(|n| Some((n.id, n.pid()?)))
        .collect();
    let before: Vec<u64> = pids.iter().map(|(_, p)| cpu_ticks(*p)).collect();
    tokio::time::sleep(window).await;
    pids.iter()
        .zip(before)
        .map(|((id, pid), b)| {
            let ticks = cpu_ticks(*pid).saturating_sub(b);
            (*id, ticks as f64 / window.as_secs_f64())
        })
        .collect()
}

/// Sizes of the files under a node's data directory, by kind.
pub fn disk_usage(dir: &Path) -> DiskUsage {
    use std::os::unix::fs::MetadataExt as _;
    let mut usage = DiskUsage::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let path = entry.path();
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let len = meta.len();
            usage.allocated += meta.blocks() * 512;
            usage.apparent += len;
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if rel.starts_with("snapshots") {
                usage.snapshots += len;
            } else if rel.starts_with("db") && name.ends_with(".sst") {
                usage.sst += len;
            } else if rel.starts_with("db") && name.ends_with(".log") {
                usage.wal += len;
            } else {
                usage.other += len;
            }
        }
    }
    usage
}

fn per_binding(report: &BindingsReport, lab: &Lab, away: usize) -> Vec<PerBinding> {
    let n = f64::from(report.phones.max(1));
    let find = |samples: &[NodeSample], id: u64| samples.iter().find(|s| s.node_id == id).cloned();
    let per = |after: u64, before: u64| (after as f64 - before as f64) / n;
    lab.nodes
        .iter()
        .enumerate()
        .filter_map(|(i, node)| {
            let before = find(&report.before, node.id)?;
            let after = if i == away {
                report.rejoined.clone()
            } else {
                find(&report.after_registration, node.id)?
            };
            let settled = find(&report.settled, node.id)?;
            let flushed = find(&report.flushed, node.id)?;
            Some(PerBinding {
                node_id: node.id,
                rss_after: per(after.rss_kib * 1024, before.rss_kib * 1024),
                rss_settled: per(settled.rss_kib * 1024, before.rss_kib * 1024),
                rss_flushed: per(flushed.rss_kib * 1024, before.rss_kib * 1024),
                disk_after: per(after.disk.allocated, before.disk.allocated),
                disk_settled: per(settled.disk.allocated, before.disk.allocated),
                disk_flushed: per(flushed.disk.allocated, before.disk.allocated),
                sst_flushed: per(flushed.disk.sst, before.disk.sst),
                snapshot_flushed: per(flushed.disk.snapshots, before.disk.snapshots),
            })
        })
        .collect()
}

/// The mean of each figure over the nodes.
fn mean(per: &[PerBinding]) -> PerBinding {
    let n = per.len().max(1) as f64;
    let avg = |f: fn(&PerBinding) -> f64| per.iter().map(f).sum::<f64>() / n;
    PerBinding {
        node_id: 0,
        rss_after: avg(|p| p.rss_after),
        rss_settled: avg(|p| p.rss_settled),
        rss_flushed: avg(|p| p.rss_flushed),
        disk_after: avg(|p| p.disk_after),
        disk_settled: avg(|p| p.disk_settled),
        disk_flushed: avg(|p| p.disk_flushed),
        sst_flushed: avg(|p| p.sst_flushed),
        snapshot_flushed: avg(|p| p.snapshot_flushed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipp_statistics_are_read_by_column_name() {
        let dir = tempfile::tempdir().unwrap();
        let stat = dir.path().join("stat.csv");
        std::fs::write(
            &stat,
            "StartTime;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);\n\
             a;1;2;0;0;\nb;5;99;1;3;\n",
        )
        .unwrap();
        assert_eq!(sipp_counts(&stat).unwrap(), (99, 3));
    }

    #[test]
    fn disk_usage_sorts_files_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("db")).unwrap();
        std::fs::create_dir_all(root.join("snapshots")).unwrap();
        std::fs::write(root.join("db/000010.sst"), [0u8; 100]).unwrap();
        std::fs::write(root.join("db/000011.log"), [0u8; 30]).unwrap();
        std::fs::write(root.join("db/LOG"), [0u8; 7]).unwrap();
        std::fs::write(root.join("snapshots/1-2-3.snap"), [0u8; 50]).unwrap();
        let u = disk_usage(root);
        assert_eq!((u.sst, u.wal, u.snapshots, u.other), (100, 30, 50, 7));
        assert_eq!(u.apparent, 187);
        assert!(u.allocated >= u.apparent);
    }
}
