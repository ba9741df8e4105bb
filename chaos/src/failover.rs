//! VIP failover under fault, with calls up: the lab runs in network namespaces (`deploy/lab-netns.sh
//! up`), this process lives in the phones' namespace, and every phone talks only to the VIP.
//!
//! Per round it finds the VIP owner, injects the fault, and measures what a user would notice: how
//! long the VIP did not answer SIP, the longest silence in each call's audio (RTP arrivals at each
//! phone), whether every call still has media both ways, whether every registration is still there.
//! Throughout, it watches for two owners at once: two nodes claiming the lease in their health
//! answers, and two MAC addresses answering ARP for the VIP (probed from a second phone host).
//! Writers create extensions all along; at the end no acknowledged write may be missing.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde::Serialize;
use tokio::net::UdpSocket;

use crate::lab::{Lab, LabClient, LabOptions, topology};
use crate::phone::{Answer, Dialog, Phone, longest_gap, rtp_packet};
use crate::scenarios::{Writers, lost_writes, percentile};

const SECRET: &str = "Tr7!kq-Vw9zP";
const RTP_EVERY: Duration = Duration::from_millis(20);
/// How often the VIP is asked `OPTIONS`, each node its health, and the network for the VIP's MAC.
const PROBE_EVERY: Duration = Duration::from_millis(20);
const ARP_PROBERS: usize = 5;
/// A round gives up waiting for recovery after this long.
const RECOVERY_LIMIT: Duration = Duration::from_secs(20);

/// The fault injected each round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// SIGKILL the VIP owner; restart it after the takeover.
    KillOwner,
    /// SIGSTOP the owner past its lease, then SIGCONT: it must not come back as owner.
    StopOwner,
    /// Cut the owner off from its peers but not from the phones (split brain).
    PartitionOwner,
    /// SIGKILL a follower: the VIP must not move.
    KillFollower,
    /// SIGTERM the owner (a clean restart, as an upgrade does) and start it again.
    RestartOwner,
    /// Restart every node in turn, followers first, waiting for each to rejoin.
    RollingRestart,
    /// Form the lab with an older build (`--from-binary`), then restart every node in turn onto
    /// this build, followers first, waiting for each to rejoin.
    RollingUpgrade,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KillOwner => "kill-owner",
            Self::StopOwner => "stop-owner",
            Self::PartitionOwner => "partition-owner",
            Self::KillFollower => "kill-follower",
            Self::RestartOwner => "restart-owner",
            Self::RollingRestart => "rolling-restart",
            Self::RollingUpgrade => "rolling-upgrade",
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct FailoverReport {
    pub scenario: String,
    pub rounds: usize,
    pub calls: usize,
    /// Per round: the longest the VIP went without answering SIP (OPTIONS every 20 ms), from the fault
    /// until the round recovered.
    pub sip_gap_ms: Vec<u64>,
    /// Per call, direction and round: the longest silence in the audio a phone received.
    pub audio_gap_ms: Vec<u64>,
    pub audio_gap_p50_ms: u64,
    pub audio_gap_p99_ms: u64,
    pub audio_gap_max_ms: u64,
    /// Per round (partition): from the fault until the cut-off old owner stopped claiming the VIP.
    pub old_owner_released_ms: Vec<u64>,
    /// Per round: from the fault until another node claimed the VIP.
    pub new_owner_ms: Vec<u64>,
    pub calls_survived: usize,
    pub calls_dropped: usize,
    pub registrations_expected: usize,
    /// The most registrations found missing after any round.
    pub registrations_missing: usize,
    /// ARP probes answered by two MAC addresses.
    pub duplicate_vip_observations: usize,
    pub arp_probes: usize,
    /// Health answers of two nodes both claiming the VIP within one probe interval.
    pub two_owner_observations: usize,
    pub acknowledged_writes: usize,
    pub lost_writes: usize,
    pub violations: Vec<String>,
}

/// One phone-to-phone call as the two phones hold it.
struct Call {
    caller: Phone,
    caller_dialog: Dialog,
    callee: Phone,
    callee_dialog: Dialog,
    dropped: bool,
}

/// Runs `rounds` of `fault` against a fresh 3-node namespace lab with `calls` calls up; the lab
/// runs `from_binary` until a rolling upgrade replaces it, with `cluster_extra` in every node's
/// `[cluster]` section.
pub async fn run(
    fault: Fault,
    rounds: usize,
    calls: usize,
    from_binary: Option<std::path::PathBuf>,
    cluster_extra: String,
) -> anyhow::Result<FailoverReport> {
    if fault == Fault::RollingUpgrade && from_binary.is_none() {
        bail!("rolling-upgrade needs --from-binary: the older pbx build to upgrade from");
    }
    let options = LabOptions {
        netns: true,
        media_ports_per_node: u16::try_from(calls * 4 + 64)
            .context("too many calls")?
            .max(400),
        binary: from_binary,
        cluster_extra,
        ..LabOptions::default()
    };
    // Two phones per call, and two more for the new call at the end.
    let mut numbers: Vec<String> = (0..calls * 2 + 2).map(|i| (1000 + i).to_string()).collect();
    let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let (mut lab, client) = Lab::with_extensions(3, options, &refs, SECRET).await?;
    let fresh = numbers.split_off(calls * 2);
    let client = client
        .with_session()
        .await?
        .with_timeout(Duration::from_millis(1500));
    let epoch = Instant::now();
    let owners = OwnerWatch::start(&client, lab.nodes.len(), epoch);
    wait_single_owner(&owners, Duration::from_secs(20)).await?;
    let vip = SocketAddr::new(topology::VIP.into(), topology::SIP_PORT);
    let probe = SipProbe::start(vip, epoch).await?;
    let arp = ArpWatch::start(epoch);

    let mut active = setup_calls(vip, &numbers).await?;
    let media = MediaPump::start(&active);
    let writers = Writers::start(&client, lab.nodes.len(), 2);
    let mut report = FailoverReport {
        scenario: fault.as_str().into(),
        rounds,
        calls,
        registrations_expected: numbers.len(),
        ..FailoverReport::default()
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    for round in 0..rounds {
        let owner = wait_single_owner(&owners, Duration::from_secs(20))
            .await
            .with_context(|| format!("round {round}: before the fault"))?;
        let fault_at = ms_since(epoch);
        match fault {
            Fault::KillOwner => lab.kill(owner),
            Fault::StopOwner => lab.signal(owner, "STOP")?,
            Fault::PartitionOwner => lab.partition(owner)?,
            Fault::KillFollower => lab.kill((owner + 1) % lab.nodes.len()),
            Fault::RestartOwner => lab.stop(owner)?,
            Fault::RollingRestart | Fault::RollingUpgrade => {}
        }
        if matches!(fault, Fault::RollingRestart | Fault::RollingUpgrade) {
            // Followers first, the owner last: one VIP move per pass, as an upgrade would do it.
            let order: Vec<usize> = (1..=lab.nodes.len())
                .map(|k| (owner + k) % lab.nodes.len())
                .collect();
            for i in order {
                lab.stop(i)?;
                // An upgrade: the node comes back on this build, with its data as it was.
                if fault == Fault::RollingUpgrade {
                    lab.nodes[i].binary = None;
                }
                lab.restart(i).await?;
                wait_caught_up(&lab, &client, i).await?;
            }
        }
        // Recovered: the VIP is owned (by another node when it had to move) and every phone hears
        // its peer again.
        let moved = !matches!(
            fault,
            Fault::KillFollower | Fault::RollingRestart | Fault::RollingUpgrade
        );
        let deadline = Instant::now() + RECOVERY_LIMIT;
        let new_owner_at = loop {
            let claim = match fault {
                Fault::RollingRestart | Fault::RollingUpgrade => {
                    owners.current().map(|_| ms_since(epoch))
                }
                Fault::KillFollower => owners.first_claim_since(fault_at, |i| i == owner),
                _ => owners.first_claim_since(fault_at, |i| i != owner),
            };
            if let Some(at) = claim {
                break at;
            }
            if Instant::now() > deadline {
                bail!(
                    "round {round}: no node took the VIP within {RECOVERY_LIMIT:?}\n{}",
                    lab.log_tail((owner + 1) % lab.nodes.len())
                );
            }
            tokio::time::sleep(PROBE_EVERY).await;
        };
        if moved {
            report
                .new_owner_ms
                .push(new_owner_at.saturating_sub(fault_at));
        }
        let heard_after = new_owner_at.max(fault_at);
        loop {
            let all = active.iter().all(|c| {
                c.dropped
                    || (hears_since(&c.caller, epoch, heard_after)
                        && hears_since(&c.callee, epoch, heard_after))
            });
            if all || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
        // Let the media settle, then measure the round.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let measured_to = ms_since(epoch);
        report
            .sip_gap_ms
            .push(probe.max_gap_between(fault_at, measured_to));
        for c in &active {
            if c.dropped {
                continue;
            }
            for phone in [&c.caller, &c.callee] {
                report.audio_gap_ms.push(phone.rtp_stats.max_gap_between(
                    phone_ms(phone, epoch, fault_at),
                    phone_ms(phone, epoch, measured_to),
                ));
            }
        }
        // Undo the fault.
        match fault {
            Fault::KillOwner | Fault::RestartOwner => lab.restart(owner).await?,
            Fault::KillFollower => lab.restart((owner + 1) % lab.nodes.len()).await?,
            Fault::StopOwner => {
                // A frozen node cannot answer for itself: its kernel fence stops it (ARP watch).
                lab.signal(owner, "CONT")?;
                // Awake, it must see its lease is long gone and never answer as owner again.
                tokio::time::sleep(Duration::from_secs(2)).await;
                if let Some(at) = owners.claimed_by_since(owner, measured_to) {
                    report.violations.push(format!(
                        "round {round}: node {} claimed the VIP again {} ms after SIGCONT",
                        lab.nodes[owner].id,
                        at.saturating_sub(measured_to)
                    ));
                }
            }
            Fault::PartitionOwner => {
                report
                    .old_owner_released_ms
                    .push(owners.released_after(owner, fault_at).unwrap_or(u64::MAX));
                lab.heal(owner)?;
            }
            Fault::RollingRestart | Fault::RollingUpgrade => {}
        }
        for i in 0..lab.nodes.len() {
            wait_caught_up(&lab, &client, i).await?;
        }
        // Every call must still carry media both ways.
        let check_from = ms_since(epoch);
        tokio::time::sleep(Duration::from_millis(600)).await;
        for (k, c) in active.iter_mut().enumerate() {
            let both_ways = hears_since(&c.caller, epoch, check_from)
                && hears_since(&c.callee, epoch, check_from);
            if !c.dropped && !both_ways {
                c.dropped = true;
                report
                    .violations
                    .push(format!("round {round}: call {k} lost its media"));
            }
        }
        let registered = registrations(&client, lab.nodes.len()).await?;
        let missing = numbers.len().saturating_sub(registered);
        report.registrations_missing = report.registrations_missing.max(missing);
        eprintln!(
            "round {round}: {} node {}; new owner after {} ms; SIP gap {} ms; audio gap max {} ms; calls with media {}/{}; registrations {registered}/{}",
            fault.as_str(),
            lab.nodes[owner].id,
            report.new_owner_ms.last().copied().unwrap_or(0),
            report.sip_gap_ms.last().copied().unwrap_or(0),
            active
                .iter()
                .filter(|c| !c.dropped)
                .flat_map(|c| [&c.caller, &c.callee])
                .map(|p| p.rtp_stats.max_gap_between(
                    phone_ms(p, epoch, fault_at),
                    phone_ms(p, epoch, measured_to)
                ))
                .max()
                .unwrap_or(0),
            active.iter().filter(|c| !c.dropped).count(),
            active.len(),
            numbers.len(),
        );
    }

    media.stop().await;
    // In-dialog requests work on calls carried on by another node: a re-INVITE (hold) crosses to the
    // other phone and is answered.
    if let Some(c) = active.iter_mut().find(|c| !c.dropped) {
        let (held, forwarded) = tokio::join!(
            c.caller.reinvite(&mut c.caller_dialog, "sendonly"),
            c.callee.expect_request("INVITE", Duration::from_secs(5))
        );
        let status = held.ok().and_then(|m| m.status());
        if status != Some(200) || forwarded.is_err() {
            report.violations.push(format!(
                "re-INVITE after the faults: answered {status:?}, reached the other phone: {}",
                forwarded.is_ok()
            ));
        }
    }
    // A new call goes through the VIP's current owner.
    if let Err(e) = new_call(vip, &fresh[0], &fresh[1]).await {
        report
            .violations
            .push(format!("a new call after the faults failed: {e:#}"));
    }
    // Every surviving call ends normally: BYE answered 200, and the other phone gets its BYE.
    for (k, c) in active.iter_mut().enumerate() {
        if c.dropped {
            continue;
        }
        let status = c.caller.hang_up(&mut c.caller_dialog).await.ok();
        let far_end = c.callee.expect_request("BYE", Duration::from_secs(5)).await;
        if status != Some(200) || far_end.is_err() {
            c.dropped = true;
            report.violations.push(format!(
                "call {k} did not end normally (BYE answered {status:?}, callee got BYE: {})",
                far_end.is_ok()
            ));
        }
    }
    report.calls_dropped = active.iter().filter(|c| c.dropped).count();
    report.calls_survived = active.len() - report.calls_dropped;

    let (acked, _failed) = writers.finish().await;
    report.acknowledged_writes = acked.len();
    let patient = client.clone().with_timeout(Duration::from_secs(30));
    report.lost_writes = lost_writes(&lab, &patient, &acked).await?;

    let (duplicates, probes) = arp.stop().await;
    report.duplicate_vip_observations = duplicates;
    report.arp_probes = probes;
    report.two_owner_observations = owners.stop().await;
    probe.stop();
    report.audio_gap_p50_ms = percentile(&report.audio_gap_ms, 0.5);
    report.audio_gap_p99_ms = percentile(&report.audio_gap_ms, 0.99);
    report.audio_gap_max_ms = report.audio_gap_ms.iter().copied().max().unwrap_or(0);
    if report.registrations_missing > 0 {
        report.violations.push(format!(
            "{} registrations missing after a round",
            report.registrations_missing
        ));
    }
    if report.duplicate_vip_observations > 0 {
        report.violations.push(format!(
            "{} ARP probes answered by two MACs",
            report.duplicate_vip_observations
        ));
    }
    if report.two_owner_observations > 0 {
        report.violations.push(format!(
            "{} observations of two nodes claiming the VIP",
            report.two_owner_observations
        ));
    }
    if report.lost_writes > 0 {
        report
            .violations
            .push(format!("{} acknowledged writes lost", report.lost_writes));
    }
    if !report.violations.is_empty() {
        // The lab's directory goes with it: what the nodes said is the operator's only clue.
        for i in 0..lab.nodes.len() {
            eprintln!(
                "--- node {} log (tail) ---\n{}",
                lab.nodes[i].id,
                lab.log_tail(i)
            );
        }
    }
    Ok(report)
}

pub(crate) fn ms_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

/// `at` (ms since the scenario's epoch) on the phone's own clock (ms since the phone started).
fn phone_ms(phone: &Phone, epoch: Instant, at: u64) -> u64 {
    let offset = phone.started.saturating_duration_since(epoch).as_millis() as u64;
    at.saturating_sub(offset)
}

fn hears_since(phone: &Phone, epoch: Instant, at: u64) -> bool {
    phone.rtp_stats.count_since(phone_ms(phone, epoch, at)) > 0
}

async fn setup_calls(vip: SocketAddr, numbers: &[String]) -> anyhow::Result<Vec<Call>> {
    let mut calls = Vec::new();
    for pair in numbers.chunks(2) {
        if let [a, b] = pair {
            calls.push(place_call(vip, a, b).await?);
        }
    }
    Ok(calls)
}

/// Two phones register through the VIP (caller on one phone address, callee on the other) and `a`
/// calls `b`, who answers.
async fn place_call(vip: SocketAddr, a: &str, b: &str) -> anyhow::Result<Call> {
    let mut caller = Phone::bound(topology::PHONES_A.into(), vip, a, SECRET).await?;
    let mut callee = Phone::bound(topology::PHONES_B.into(), vip, b, SECRET).await?;
    ensure!(caller.register(3600).await? == 200, "{a} did not register");
    ensure!(callee.register(3600).await? == 200, "{b} did not register");
    let out = caller.dial(b, None).await?;
    let (answered, placed) = tokio::join!(
        callee.answer(Answer::Accept, Duration::from_secs(10)),
        caller.outcome(&out, Duration::from_secs(10))
    );
    let callee_dialog = answered?.1.context("callee did not answer")?;
    let Ok(caller_dialog) = placed? else {
        bail!("call {a} → {b} failed");
    };
    Ok(Call {
        caller,
        caller_dialog,
        callee,
        callee_dialog,
        dropped: false,
    })
}

/// A call placed after the faults, through whichever node owns the VIP now, with media and a BYE.
async fn new_call(vip: SocketAddr, a: &str, b: &str) -> anyhow::Result<()> {
    let mut c = place_call(vip, a, b).await?;
    c.callee
        .rtp_socket()
        .send_to(&rtp_packet(0, 7), c.callee_dialog.media)
        .await?;
    let status = c.caller.hang_up(&mut c.caller_dialog).await?;
    ensure!(status == 200, "BYE answered {status}");
    Ok(())
}

/// Waits until node `i` answers with a leader and has applied what the leader had.
async fn wait_caught_up(lab: &Lab, client: &LabClient, i: usize) -> anyhow::Result<()> {
    lab.wait_node(i, Duration::from_secs(30)).await?;
    // A read through it must see the latest extension list (linearizable on that node).
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get_json(i, "/api/v1/extensions?limit=1")
        .await
        .is_err()
    {
        ensure!(
            Instant::now() < deadline,
            "node {} never caught up",
            lab.nodes[i].id
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Live registrations, as any node that answers sees them.
async fn registrations(client: &LabClient, nodes: usize) -> anyhow::Result<usize> {
    for i in 0..nodes {
        if let Ok(v) = client
            .get_json(i, "/api/v1/registrations?limit=10000")
            .await
        {
            let users: HashSet<String> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|b| b["extension"].as_str().map(str::to_owned))
                .collect();
            return Ok(users.len());
        }
    }
    bail!("no node answered for registrations")
}

/// Waits until exactly one node claims the VIP; returns its index.
pub(crate) async fn wait_single_owner(
    owners: &OwnerWatch,
    within: Duration,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(i) = owners.current() {
            return Ok(i);
        }
        ensure!(
            Instant::now() < deadline,
            "no single VIP owner within {within:?}"
        );
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// Every phone sends G.711-sized RTP every 20 ms to the PBX port it was given.
struct MediaPump {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl MediaPump {
    fn start(calls: &[Call]) -> Self {
        let streams: Vec<(Arc<UdpSocket>, SocketAddr)> = calls
            .iter()
            .flat_map(|c| {
                [
                    (c.caller.rtp_socket(), c.caller_dialog.media),
                    (c.callee.rtp_socket(), c.callee_dialog.media),
                ]
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(RTP_EVERY);
            let mut seq = 0u16;
            while !flag.load(Ordering::Relaxed) {
                tick.tick().await;
                for (i, (sock, to)) in streams.iter().enumerate() {
                    // A send may fail while no node holds the VIP (no ARP answer): the next goes.
                    let _ = sock.send_to(&rtp_packet(seq, i as u32), *to).await;
                }
                seq = seq.wrapping_add(1);
            }
        });
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
    }
}

/// OPTIONS to the VIP every 20 ms; when the answers came.
struct SipProbe {
    answers: Arc<Mutex<Vec<u64>>>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl SipProbe {
    async fn start(vip: SocketAddr, epoch: Instant) -> anyhow::Result<Self> {
        let sock = Arc::new(UdpSocket::bind((topology::PHONES_A, 0)).await?);
        let local = sock.local_addr()?;
        let answers = Arc::new(Mutex::new(Vec::new()));
        let sender = {
            let sock = Arc::clone(&sock);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(PROBE_EVERY);
                let mut n = 0u64;
                loop {
                    tick.tick().await;
                    n += 1;
                    let text = format!(
                        "OPTIONS sip:{vip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKprobe{n}\r\n\
                         Max-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag=probe\r\nTo: <sip:{vip}>\r\n\
                         Call-ID: probe-{n}@chaos\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                    );
                    let _ = sock.send_to(text.as_bytes(), vip).await;
                }
            })
        };
        let receiver = {
            let answers = Arc::clone(&answers);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok((n, _)) = sock.recv_from(&mut buf).await {
                    if buf[..n].starts_with(b"SIP/2.0 200") {
                        lock(&answers).push(ms_since(epoch));
                    }
                }
            })
        };
        Ok(Self {
            answers,
            tasks: [sender, receiver],
        })
    }

    /// The longest stretch without an answer inside `[from, to]`.
    fn max_gap_between(&self, from: u64, to: u64) -> u64 {
        longest_gap(&lock(&self.answers), from, to)
    }

    fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Each node's health answer, polled every 20 ms: which node claims the VIP, and when.
pub(crate) struct OwnerWatch {
    /// `(ms since epoch, node index, claims the VIP)`.
    seen: Arc<Mutex<Vec<(u64, usize, bool)>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    nodes: usize,
}

impl OwnerWatch {
    pub(crate) fn start(client: &LabClient, nodes: usize, epoch: Instant) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let client = client.clone().with_timeout(Duration::from_millis(300));
        let tasks = (0..nodes)
            .map(|i| {
                let (client, seen, stop) = (client.clone(), Arc::clone(&seen), Arc::clone(&stop));
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(h) = client.health(i).await
                            && let Some(owner) = h["vip_owner"].as_bool()
                        {
                            lock(&seen).push((ms_since(epoch), i, owner));
                        }
                        tokio::time::sleep(PROBE_EVERY).await;
                    }
                })
            })
            .collect();
        Self {
            seen,
            stop,
            tasks,
            nodes,
        }
    }

    /// The node whose latest answer claims the VIP, when exactly one does (answers from the last
    /// second only: a node that stopped answering claims nothing).
    fn current(&self) -> Option<usize> {
        let seen = lock(&self.seen);
        let now = seen.last().map_or(0, |s| s.0);
        let mut latest = vec![None; self.nodes];
        for &(t, i, owner) in seen.iter().rev() {
            if now.saturating_sub(t) > 1000 {
                break;
            }
            if latest[i].is_none() {
                latest[i] = Some(owner);
            }
        }
        let owners: Vec<usize> = (0..self.nodes)
            .filter(|&i| latest[i] == Some(true))
            .collect();
        (owners.len() == 1).then(|| owners[0])
    }

    /// When a node `which` accepts first claimed the VIP after `since`.
    pub(crate) fn first_claim_since(
        &self,
        since: u64,
        which: impl Fn(usize) -> bool,
    ) -> Option<u64> {
        lock(&self.seen)
            .iter()
            .find(|&&(t, i, owner)| owner && t > since && which(i))
            .map(|&(t, _, _)| t)
    }

    fn claimed_by_since(&self, node: usize, since: u64) -> Option<u64> {
        lock(&self.seen)
            .iter()
            .find(|&&(t, i, owner)| owner && i == node && t > since)
            .map(|&(t, _, _)| t)
    }

    /// When `node` first answered that it does not own the VIP after `since`, in ms after `since`.
    fn released_after(&self, node: usize, since: u64) -> Option<u64> {
        lock(&self.seen)
            .iter()
            .find(|&&(t, i, owner)| !owner && i == node && t > since)
            .map(|&(t, _, _)| t - since)
    }

    /// Stops polling; returns how often two nodes claimed the VIP within one probe interval.
    pub(crate) async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let seen = lock(&self.seen);
        let claims: Vec<(u64, usize)> = seen
            .iter()
            .filter(|s| s.2)
            .map(|&(t, i, _)| (t, i))
            .collect();
        let window = PROBE_EVERY.as_millis() as u64;
        let mut overlaps = 0;
        for (k, &(t, i)) in claims.iter().enumerate() {
            if claims[k + 1..]
                .iter()
                .take_while(|&&(t2, _)| t2 <= t + window)
                .any(|&(_, j)| j != i)
            {
                overlaps += 1;
            }
        }
        overlaps
    }
}

/// ARP requests for the VIP from the second phone host, several probers staggered: a probe answered
/// by two MAC addresses means two hosts answer for the VIP.
///
/// Each prober asks from its own address of that host. arping reads every ARP reply on the interface
/// and keeps those sent to its source address, so with one shared address a prober also counted the
/// answers to the others' requests, up to a second apart: the old owner's answer before a takeover and
/// the new owner's after it looked like two owners at once.
struct ArpWatch {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(usize, usize)>>,
}

impl ArpWatch {
    fn start(epoch: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..ARP_PROBERS)
            .map(|k| {
                let stop = Arc::clone(&stop);
                tokio::spawn(async move {
                    let source = topology::observer_ip(k).to_string();
                    let added = tokio::process::Command::new("ip")
                        .args(["-n", topology::OBSERVER_NS, "addr", "replace"])
                        .arg(format!("{source}/24"))
                        .args(["dev", "eth0"])
                        .output()
                        .await;
                    if !added.is_ok_and(|out| out.status.success()) {
                        eprintln!(
                            "ARP prober {k}: could not add {source} to the observer; not probing"
                        );
                        return (0, 0);
                    }
                    tokio::time::sleep(Duration::from_millis(200 * k as u64)).await;
                    let (mut duplicates, mut probes) = (0, 0);
                    while !stop.load(Ordering::Relaxed) {
                        let vip = topology::VIP.to_string();
                        // One probe; it waits up to 1 s for a second answer to its own requests.
                        let out = tokio::process::Command::new("ip")
                            .args(["netns", "exec", topology::OBSERVER_NS, "arping"])
                            .args(["-c", "2", "-w", "1", "-I", "eth0", "-s", source.as_str()])
                            .arg(vip.as_str())
                            .output()
                            .await;
                        let Ok(out) = out else {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        };
                        probes += 1;
                        let macs: HashSet<String> = String::from_utf8_lossy(&out.stdout)
                            .lines()
                            .filter_map(|l| {
                                let (_, rest) = l.split_once('[')?;
                                Some(rest.split_once(']')?.0.to_owned())
                            })
                            .collect();
                        if macs.len() > 1 {
                            duplicates += 1;
                            eprintln!("duplicate VIP at {} ms: {macs:?}", ms_since(epoch));
                        }
                    }
                    (duplicates, probes)
                })
            })
            .collect();
        Self { stop, tasks }
    }

    async fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut d, mut p) = (0, 0);
        for t in self.tasks {
            if let Ok((dd, pp)) = t.await {
                d += dd;
                p += pp;
            }
        }
        (d, p)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
