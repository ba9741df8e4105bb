use std::time::Duration;

use clap::{Parser, Subcommand};
use futures::StreamExt as _;

use pbx_chaos::lab::{Lab, LabOptions};
use pbx_chaos::scenarios;

/// Fault scenarios against a lab cluster of real `pbx` processes on loopback.
#[derive(Parser)]
#[command(name = "chaos")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Kill -9 the Raft leader repeatedly while clients write; measure time to accept writes again.
    LeaderKill {
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        #[arg(long, default_value_t = 3)]
        nodes: u64,
    },
    /// Start a lab cluster with extensions FIRST..=LAST (all with SECRET), print its addresses as one
    /// JSON line, and keep it up for SECONDS (for load tests such as deploy/bench/register.sh).
    /// A REGISTER flood from one source during a call: ban propagation, gate drop rate, call media.
    BanGate {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// VIP failover with calls up, in the namespace lab (run inside pbx-ph1 after
    /// `deploy/lab-netns.sh up`; `deploy/lab-netns.sh chaos …` does both): inject FAULT each round,
    /// measure SIP and audio gaps, check that no call, registration or write is lost and that the
    /// VIP never has two owners. Exits non-zero when an invariant breaks.
    Failover {
        #[arg(long, value_enum)]
        fault: pbx_chaos::failover::Fault,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[arg(long, default_value_t = 20)]
        calls: usize,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        report: Option<std::path::PathBuf>,
        /// For `rolling-upgrade`: the older `pbx` build the lab starts on.
        #[arg(long)]
        from_binary: Option<std::path::PathBuf>,
        /// Extra lines for every node's `[cluster]` section, e.g. other Raft timings:
        /// 'heartbeat_ms = 40' (newline-separated).
        #[arg(long, default_value = "")]
        cluster_extra: String,
    },
    /// Concurrent calls with RTP both ways through a fresh lab: loss, latency, CPU per packet.
    CallLoad {
        #[arg(long, default_value_t = 100)]
        calls: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Pin every PBX process to this CPU.
        #[arg(long)]
        pbx_cpu: Option<u32>,
        /// Record every call (the callees' policy), in 10 s segments.
        #[arg(long)]
        record: bool,
    },
    /// The media-relay anchor: rtpengine (userspace, `--table=-1`, Debian `rtpengine-daemon`, not
    /// installed by this) relaying CALLS calls set up over its ng protocol, with call-load's phones
    /// and media phase; the same report, with rtpengine's CPU per packet it relayed.
    RtpengineLoad {
        #[arg(long, default_value_t = 100)]
        calls: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Pin rtpengine (all its threads) to this CPU.
        #[arg(long)]
        cpu: Option<u32>,
    },
    /// Conference rooms full of phones sending G.711 through a fresh lab: mixes lost, CPU per member.
    ConferenceLoad {
        #[arg(long, default_value_t = 10)]
        rooms: usize,
        #[arg(long, default_value_t = 10)]
        members: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Pin every PBX process to this CPU.
        #[arg(long)]
        pbx_cpu: Option<u32>,
    },
    /// A frozen owner without its kernel fence: nftables fence removed, owner frozen with SIP queued over UDP
    /// and TCP, then woken after another node took over: it must answer none of it. Netns lab.
    FenceCheck {
        /// Also write the report (JSON) to this file.
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
    /// A register trunk (Kamailio as the provider) across a kill of the VIP owner during an
    /// outbound call: the call goes on, the new owner registers again, the toll counter holds.
    /// Netns lab.
    TrunkFailover {
        /// Also write the report (JSON) to this file.
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
    /// Registered phones held by a 3-node lab: memory and disk per binding (RSS and data directory
    /// before and after PHONES registrations through sipp), and a follower that was down while they
    /// registered catching up (bindings per second, log replay or snapshot).
    Bindings {
        #[arg(long, default_value_t = 100_000)]
        phones: u32,
        /// The first extension number (PHONES consecutive numbers from it).
        #[arg(long, default_value_t = 100_000)]
        first: u32,
        /// sipp's outstanding registrations at most.
        #[arg(long, default_value_t = 200)]
        concurrency: u32,
        #[arg(long, default_value = "../shared/bench/register-auth.xml")]
        sipp_scenario: std::path::PathBuf,
        /// The lab's `snapshot_after_logs`.
        #[arg(long, default_value_t = 5000)]
        snapshot_after_logs: u64,
        /// Seconds after the last REGISTER before the settled sample (SIP transactions live 32 s).
        #[arg(long, default_value_t = 40)]
        settle_secs: u64,
        /// The whole run gives up after this many seconds.
        #[arg(long, default_value_t = 1800)]
        max_secs: u64,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
    Lab {
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        #[arg(long, default_value_t = 1000)]
        first: u32,
        #[arg(long, default_value_t = 1999)]
        last: u32,
        #[arg(long)]
        secret: String,
        /// Extra lines for every node's [sip] section, e.g. 'digest_algorithms = ["MD5"]'.
        #[arg(long, default_value = "")]
        sip_extra: String,
        /// Extra lines for each node's `[calls]` section.
        #[arg(long, default_value = "")]
        calls_extra: String,
        /// Extra lines for every node's `[cluster]` section, e.g. 'commit_linger_ms = 0'.
        #[arg(long, default_value = "")]
        cluster_extra: String,
        /// RTP ports per node.
        #[arg(long, default_value_t = 400)]
        media_ports: u16,
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// Run the nodes in the namespace lab (`deploy/lab-netns.sh up`), SIP and media on the VIP.
        #[arg(long)]
        netns: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let report = match Cli::parse().scenario {
        Scenario::LeaderKill { rounds, nodes } => scenarios::leader_kill(rounds, nodes).await?,
        Scenario::TrunkFailover { report: file } => {
            let report = pbx_chaos::trunk_failover::run().await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if let Some(path) = file {
                std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
            }
            anyhow::ensure!(
                report.violations.is_empty(),
                "invariants broken: {}",
                report.violations.join("; ")
            );
            return Ok(());
        }
        Scenario::FenceCheck { report: file } => {
            let report = pbx_chaos::fence_check::run().await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if let Some(path) = file {
                std::fs::write(&path, serde_json::to_vec(&report)?)?;
            }
            anyhow::ensure!(
                report.violations.is_empty(),
                "invariant broken: {:?}",
                report.violations
            );
            return Ok(());
        }
        Scenario::Bindings {
            phones,
            first,
            concurrency,
            sipp_scenario,
            snapshot_after_logs,
            settle_secs,
            max_secs,
            report: file,
        } => {
            let cfg = pbx_chaos::bindings::BindingsConfig {
                phones,
                first,
                concurrency,
                sipp_scenario,
                snapshot_after_logs,
                settle_secs,
            };
            let report =
                tokio::time::timeout(Duration::from_secs(max_secs), pbx_chaos::bindings::run(cfg))
                    .await
                    .map_err(|_| anyhow::anyhow!("the run took longer than {max_secs} s"))??;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if let Some(path) = file {
                std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
            }
            for p in report
                .per_binding
                .iter()
                .chain(std::iter::once(&report.mean_per_binding))
            {
                println!(
                    "{}: RSS/binding after={:.0} B settled={:.0} B flushed={:.0} B; disk/binding after={:.0} B settled={:.0} B flushed={:.0} B",
                    if p.node_id == 0 {
                        "mean of the nodes".to_owned()
                    } else {
                        format!("node {}", p.node_id)
                    },
                    p.rss_after,
                    p.rss_settled,
                    p.rss_flushed,
                    p.disk_after,
                    p.disk_settled,
                    p.disk_flushed
                );
            }
            println!(
                "bindings: {} phones registered at {:.0}/s ({} failed); node {} rejoined in {} ms: {:.0} bindings/s, {} snapshot(s) installed",
                report.phones,
                report.registration.per_sec,
                report.registration.failed,
                report.rejoin.node_id,
                report.rejoin.caught_up_ms,
                report.rejoin.bindings_per_sec,
                report.rejoin.snapshots_installed
            );
            anyhow::ensure!(
                report.violations.is_empty(),
                "invariants broken: {}",
                report.violations.join("; ")
            );
            return Ok(());
        }
        Scenario::BanGate { seconds } => {
            let report = pbx_chaos::ban_gate::ban_gate(seconds).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            anyhow::ensure!(
                report.banned_on_node_ms.iter().all(Option::is_some),
                "invariant broken: the source was not banned on every node"
            );
            return Ok(());
        }
        Scenario::Failover {
            fault,
            rounds,
            calls,
            report: report_file,
            from_binary,
            cluster_extra,
        } => {
            let report =
                pbx_chaos::failover::run(fault, rounds, calls, from_binary, cluster_extra).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if let Some(path) = report_file {
                std::fs::write(&path, serde_json::to_vec(&report)?)?;
            }
            println!(
                "{}: {} rounds, {} calls; new owner p50={} ms max={} ms; SIP gap p50={} ms max={} ms; audio gap p50={} ms p99={} ms max={} ms; calls survived {}/{}; registrations missing {}; duplicate-VIP {} of {} ARP probes; two owners {}; writes acknowledged {} lost {}",
                report.scenario,
                report.rounds,
                report.calls,
                scenarios::percentile(&report.new_owner_ms, 0.5),
                report.new_owner_ms.iter().max().copied().unwrap_or(0),
                scenarios::percentile(&report.sip_gap_ms, 0.5),
                report.sip_gap_ms.iter().max().copied().unwrap_or(0),
                report.audio_gap_p50_ms,
                report.audio_gap_p99_ms,
                report.audio_gap_max_ms,
                report.calls_survived,
                report.calls,
                report.registrations_missing,
                report.duplicate_vip_observations,
                report.arp_probes,
                report.two_owner_observations,
                report.acknowledged_writes,
                report.lost_writes,
            );
            anyhow::ensure!(
                report.violations.is_empty(),
                "invariants broken: {}",
                report.violations.join("; ")
            );
            return Ok(());
        }
        Scenario::CallLoad {
            calls,
            seconds,
            nodes,
            pbx_cpu,
            record,
        } => {
            let report =
                pbx_chaos::call_load::call_load(calls, seconds, nodes, pbx_cpu, record).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            anyhow::ensure!(
                report.calls_up == calls,
                "only {} of {calls} calls up",
                report.calls_up
            );
            return Ok(());
        }
        Scenario::RtpengineLoad {
            calls,
            seconds,
            cpu,
        } => {
            let report = pbx_chaos::rtpengine_load::rtpengine_load(calls, seconds, cpu).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            anyhow::ensure!(
                report.calls_up == calls,
                "only {} of {calls} calls up",
                report.calls_up
            );
            return Ok(());
        }
        Scenario::ConferenceLoad {
            rooms,
            members,
            seconds,
            nodes,
            pbx_cpu,
        } => {
            let report = pbx_chaos::conference_load::conference_load(
                rooms, members, seconds, nodes, pbx_cpu,
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            anyhow::ensure!(
                report.members_up == rooms * members,
                "only {} of {} members in their rooms",
                report.members_up,
                rooms * members
            );
            return Ok(());
        }
        Scenario::Lab {
            nodes,
            first,
            last,
            secret,
            sip_extra,
            calls_extra,
            cluster_extra,
            media_ports,
            seconds,
            netns,
        } => {
            let options = LabOptions {
                sip_extra,
                calls_extra,
                cluster_extra,
                media_ports_per_node: media_ports,
                netns,
                ..LabOptions::default()
            };
            return run_lab(nodes, first..=last, &secret, options, seconds).await;
        }
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!(
        "{}: {} rounds, new leader p50={} ms max={} ms; writes accepted again p50={} ms p99={} ms max={} ms; acknowledged={} lost={}",
        report.scenario,
        report.rounds,
        scenarios::percentile(&report.election_ms, 0.5),
        report.election_ms.iter().max().copied().unwrap_or(0),
        report.percentile(0.5),
        report.percentile(0.99),
        report.failover_ms.iter().max().copied().unwrap_or(0),
        report.acknowledged_writes,
        report.lost_writes
    );
    anyhow::ensure!(
        report.lost_writes == 0,
        "invariant broken: {} acknowledged writes lost",
        report.lost_writes
    );
    Ok(())
}

async fn run_lab(
    nodes: u64,
    extensions: std::ops::RangeInclusive<u32>,
    secret: &str,
    options: LabOptions,
    seconds: u64,
) -> anyhow::Result<()> {
    let lab = Lab::start_with(nodes, options).await?;
    let client = lab.client().with_session().await?;
    let ok = futures::stream::iter(extensions)
        .map(|n| {
            let client = client.clone();
            let secret = secret.to_owned();
            async move {
                client
                    .create_extension_with_secret(0, &n.to_string(), &secret)
                    .await
            }
        })
        .buffer_unordered(32)
        .filter(|r| {
            std::future::ready(r.as_ref().is_ok_and(|s| *s == reqwest::StatusCode::CREATED))
        })
        .count()
        .await;
    let sip: Vec<String> = if lab.options.netns {
        vec![format!(
            "{}:{}",
            pbx_chaos::lab::topology::VIP,
            pbx_chaos::lab::topology::SIP_PORT
        )]
    } else {
        lab.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.sip_port))
            .collect()
    };
    let api: Vec<String> = lab.nodes.iter().map(|n| n.api_url()).collect();
    println!(
        "{}",
        serde_json::json!({ "ready": true, "extensions": ok, "sip": sip, "api": api, "dir": lab.dir.path() })
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        () = tokio::time::sleep(Duration::from_secs(seconds)) => {}
    }
    // Dropping the lab kills its nodes.
    drop(lab);
    Ok(())
}
