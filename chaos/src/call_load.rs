//! Load: many concurrent calls through a lab cluster with G.711 RTP flowing both ways, measuring what a
//! media relay is judged by: loss, added one-way latency, and the PBX's CPU time per relayed packet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use futures::StreamExt as _;
use serde::Serialize;

use crate::lab::{Lab, LabOptions};
use crate::phone::{Answer, Dialog, Phone, rtp_packet};

pub(crate) const SECRET: &str = "Tr7!kq-Vw9zP";
const PACKET_EVERY: Duration = Duration::from_millis(20);

#[derive(Debug, Serialize)]
pub struct CallLoadReport {
    pub calls: usize,
    pub calls_up: usize,
    pub seconds: f64,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub loss_percent: f64,
    pub relayed_per_second: f64,
    pub latency_p50_us: u32,
    pub latency_p99_us: u32,
    /// CPU time of every relay process (the PBX's, or rtpengine's) over the media phase, per packet
    /// the relay forwarded.
    pub cpu_us_per_packet: f64,
    pub setup_seconds: f64,
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the state.
    (ticks(11) + ticks(12)) / 100.0
}

/// Creates `count` extensions (10000, 10001, …) with the scenarios' secret; their numbers.
pub(crate) async fn create_extensions(
    client: &crate::lab::LabClient,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let numbers: Vec<String> = (0..count).map(|i| (10_000 + i).to_string()).collect();
    let created = futures::stream::iter(numbers.clone())
        .map(|n| {
            let client = client.clone();
            async move { client.create_extension_with_secret(0, &n, SECRET).await }
        })
        .buffer_unordered(32)
        .filter(|r| {
            std::future::ready(r.as_ref().is_ok_and(|s| *s == reqwest::StatusCode::CREATED))
        })
        .count()
        .await;
    ensure!(created == count, "only {created} extensions created");
    Ok(numbers)
}

/// Sends a G.711 packet every 20 ms from each socket to its address for `seconds`, spread over a
/// few tasks; how many were sent.
pub(crate) async fn stream_g711(
    streams: &[(Arc<tokio::net::UdpSocket>, std::net::SocketAddr)],
    seconds: u64,
) -> anyhow::Result<u64> {
    let until = Instant::now() + Duration::from_secs(seconds);
    let senders = 4.min(streams.len().max(1));
    let chunk = streams.len().div_ceil(senders).max(1);
    let mut tasks = Vec::new();
    for group in streams.chunks(chunk) {
        let group = group.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(PACKET_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let (mut sent, mut seq) = (0u64, 0u16);
            while Instant::now() < until {
                tick.tick().await;
                for (i, (sock, to)) in group.iter().enumerate() {
                    if sock.send_to(&rtp_packet(seq, i as u32), *to).await.is_ok() {
                        sent += 1;
                    }
                }
                seq = seq.wrapping_add(1);
            }
            sent
        }));
    }
    let mut sent = 0;
    for t in tasks {
        sent += t.await?;
    }
    Ok(sent)
}

/// Pins every PBX process of `lab` (all its threads) to CPU `cpu`.
pub(crate) fn pin_processes(lab: &Lab, cpu: u32) -> anyhow::Result<()> {
    for pid in lab.nodes.iter().filter_map(|n| n.pid()) {
        let status = std::process::Command::new("taskset")
            .args(["-a", "-pc", &cpu.to_string(), &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .status()?;
        ensure!(status.success(), "taskset failed for pid {pid}");
    }
    Ok(())
}

/// Sets up `calls` calls (one caller and one callee phone each) on a fresh `nodes`-node lab, streams
/// RTP both ways for `seconds`, hangs every call up and reports. With `pbx_cpu`, every PBX process is
/// pinned to that CPU (run the generator itself on another, e.g. under `taskset -c 1`), as the
/// rtpengine anchor was measured. With `record`, every callee's policy records its calls, in
/// segments of 10 s (so the media phase includes saving them).
pub async fn call_load(
    calls: usize,
    seconds: u64,
    nodes: u64,
    pbx_cpu: Option<u32>,
    record: bool,
) -> anyhow::Result<CallLoadReport> {
    let ports_per_node = u16::try_from((calls * 4 + 64).max(400)).context("too many calls")?;
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 0\nmax_transactions = 500000".into(),
        media_ports_per_node: ports_per_node,
        calls_extra: if record {
            "recording_segment_secs = 10".into()
        } else {
            String::new()
        },
        ..LabOptions::default()
    };
    let lab = Lab::start_with(nodes, options).await?;
    let client = lab.client().with_session().await?;
    let numbers = create_extensions(&client, calls * 2).await?;
    if record {
        for callee in numbers.iter().skip(1).step_by(2) {
            let status = client
                .req(
                    0,
                    reqwest::Method::PUT,
                    &format!("/api/v1/extensions/{callee}/recording"),
                )
                .json(&serde_json::json!({"mode": "always"}))
                .send()
                .await?
                .status();
            ensure!(
                status.is_success(),
                "recording policy of {callee}: {status}"
            );
        }
    }
    let server = std::net::SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port));
    if let Some(cpu) = pbx_cpu {
        pin_processes(&lab, cpu)?;
    }

    let setup_started = Instant::now();
    let mut pairs: Vec<(Phone, Dialog, Phone, Dialog)> = Vec::with_capacity(calls);
    for i in 0..calls {
        let mut caller = Phone::new(server, &numbers[2 * i], SECRET).await?;
        let mut callee = Phone::new(server, &numbers[2 * i + 1], SECRET).await?;
        let ctx = |step: &str| format!("call {i}: {step}");
        ensure!(
            caller
                .register(3600)
                .await
                .context(ctx("caller registering"))?
                == 200,
            "caller registration failed"
        );
        ensure!(
            callee
                .register(3600)
                .await
                .context(ctx("callee registering"))?
                == 200,
            "callee registration failed"
        );
        let out = caller
            .dial(&numbers[2 * i + 1], None)
            .await
            .context(ctx("dialling"))?;
        let (answered, placed) = tokio::join!(
            callee.answer(Answer::Accept, Duration::from_secs(10)),
            caller.outcome(&out, Duration::from_secs(10))
        );
        let callee_dialog = answered
            .with_context(|| format!("call {i}: answering\n{}", lab.log_tail(0)))?
            .1
            .context("callee did not answer")?;
        let Ok(caller_dialog) = placed.context(ctx("waiting for the answer"))? else {
            anyhow::bail!("call {i} failed");
        };
        pairs.push((caller, caller_dialog, callee, callee_dialog));
    }
    let setup_seconds = setup_started.elapsed().as_secs_f64();

    // Media: every phone sends 50 packets/s to its PBX port, spread over a few sender tasks.
    let pids: Vec<u32> = lab.nodes.iter().filter_map(|n| n.pid()).collect();
    let cpu_before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let relayed_before = client
        .metric(0, "pbx_media_packets_relayed_total{kind=\"rtp\"}")
        .await?;
    let streams: Vec<(Arc<tokio::net::UdpSocket>, std::net::SocketAddr)> = pairs
        .iter()
        .flat_map(|(caller, cd, callee, ed)| {
            [
                (caller.rtp_socket(), cd.media),
                (callee.rtp_socket(), ed.media),
            ]
        })
        .collect();
    let (packets_sent, elapsed) = run_media(&streams, seconds).await?;
    let cpu_after: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let relayed = client
        .metric(0, "pbx_media_packets_relayed_total{kind=\"rtp\"}")
        .await?
        - relayed_before;

    let calls_up = client.get_json(0, "/api/v1/calls").await?["count"]
        .as_u64()
        .unwrap_or(0) as usize;
    let phase = MediaPhase {
        packets_sent,
        seconds: elapsed,
        relayed,
        cpu_seconds: cpu_after - cpu_before,
    };
    let report = CallLoadReport::from_phase(
        calls,
        calls_up,
        setup_seconds,
        &phase,
        pairs
            .iter()
            .flat_map(|(caller, _, callee, _)| [caller, callee]),
    )?;
    for (caller, mut cd, _, _) in pairs {
        let mut caller = caller;
        let _ = caller.hang_up(&mut cd).await;
    }
    Ok(report)
}

/// Streams from every socket to its address for `seconds` ([`stream_g711`]), then lets the last
/// packets land for 0.5 s: the packets sent and the seconds streamed.
pub(crate) async fn run_media(
    streams: &[(Arc<tokio::net::UdpSocket>, std::net::SocketAddr)],
    seconds: u64,
) -> anyhow::Result<(u64, f64)> {
    let started = Instant::now();
    let packets_sent = stream_g711(streams, seconds).await?;
    // Let the last packets land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok((packets_sent, started.elapsed().as_secs_f64() - 0.5))
}

/// What a media phase measured of the relay, whichever relay it was.
pub(crate) struct MediaPhase {
    pub(crate) packets_sent: u64,
    pub(crate) seconds: f64,
    /// Packets the relay forwarded over the phase, by its own count.
    pub(crate) relayed: f64,
    /// CPU seconds (user + system) the relay's processes used over the phase.
    pub(crate) cpu_seconds: f64,
}

impl CallLoadReport {
    /// The report of a media phase, with what `phones` received (packets, and the stamps' delays).
    pub(crate) fn from_phase<'a>(
        calls: usize,
        calls_up: usize,
        setup_seconds: f64,
        phase: &MediaPhase,
        phones: impl IntoIterator<Item = &'a Phone>,
    ) -> anyhow::Result<Self> {
        let mut received = 0;
        let mut delays = Vec::new();
        for p in phones {
            received += p.rtp_stats.count();
            delays.extend(
                p.rtp_stats
                    .delays_us
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .iter()
                    .copied(),
            );
        }
        delays.sort_unstable();
        let pct = |q: f64| -> u32 {
            if delays.is_empty() {
                return 0;
            }
            let i = ((delays.len() as f64 - 1.0) * q).round() as usize;
            delays[i.min(delays.len() - 1)]
        };
        let packets_sent = phase.packets_sent;
        Ok(Self {
            calls,
            calls_up,
            seconds: phase.seconds,
            packets_sent,
            packets_received: received,
            loss_percent: if packets_sent == 0 {
                0.0
            } else {
                100.0 * (packets_sent.saturating_sub(received)) as f64 / packets_sent as f64
            },
            relayed_per_second: phase.relayed / phase.seconds,
            latency_p50_us: pct(0.5),
            latency_p99_us: pct(0.99),
            cpu_us_per_packet: if phase.relayed > 0.0 {
                phase.cpu_seconds * 1e6 / phase.relayed
            } else {
                0.0
            },
            setup_seconds,
        })
    }
}
