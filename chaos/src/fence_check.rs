//! A frozen owner without its kernel fence: the VIP owner's nftables fence is removed, the owner is
//! frozen, and SIP
//! requests reach its sockets while it sleeps (over UDP, and over a TCP connection it accepted
//! before). Another node takes the VIP; the old owner is woken. It must answer none of what it finds
//! queued, since its lease ran out while it slept. What stops it is the process's own guards: the
//! in-process fence on every read and send, and its release closing the sockets. In the runs so far
//! the release came first (`fenced_in` 0), so this checks the two together, not the fence alone.
//!
//! Runs from the phones' namespace of the namespace lab (`deploy/lab-netns.sh fence`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

use crate::failover::{OwnerWatch, ms_since, wait_single_owner};
use crate::lab::{Lab, LabOptions, topology};

/// How long the woken node is given to answer what it found queued (it must not).
const AFTER_WAKE: Duration = Duration::from_secs(2);
/// Requests queued over each transport while the owner is frozen.
const QUEUED: usize = 200;

#[derive(Debug, Default, Serialize)]
pub struct FenceReport {
    /// Requests queued over each transport while the owner was frozen.
    pub queued: usize,
    /// Answers the woken old owner sent to requests queued while it was frozen (must be 0).
    pub stale_answers_udp: usize,
    pub stale_answers_tcp: usize,
    /// The old owner's `pbx_vip_fenced_total{direction="in"}` gained this much after waking: the
    /// queued requests it read and dropped. (0 is also right: its release may close the sockets
    /// before it reads them; either way nothing is answered.)
    pub fenced_in: f64,
    /// From the freeze until another node claimed the VIP.
    pub new_owner_ms: u64,
    /// The TCP connection answered before the freeze (the check is meaningless otherwise).
    pub tcp_served_before: bool,
    pub violations: Vec<String>,
}

fn options(call_id: &str, local: SocketAddr, transport: &str, vip: SocketAddr) -> String {
    format!(
        "OPTIONS sip:{vip} SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:fence@{local}>;tag=f1\r\nTo: <sip:{vip}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Answers carrying `call_id` that arrive on `udp` within `within`.
async fn udp_answers(udp: &UdpSocket, call_id: &str, within: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    while let Ok(Ok((len, _))) = tokio::time::timeout_at(deadline, udp.recv_from(&mut buf)).await {
        n += answers_in(&buf[..len], call_id);
    }
    n
}

/// Answers carrying `call_id` that arrive on `tcp` within `within` (or until it closes).
async fn tcp_answers(tcp: &mut TcpStream, call_id: &str, within: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    while let Ok(Ok(len)) = tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
        if len == 0 {
            break;
        }
        n += answers_in(&buf[..len], call_id);
    }
    n
}

fn answers_in(bytes: &[u8], call_id: &str) -> usize {
    String::from_utf8_lossy(bytes)
        .matches(&format!("Call-ID: {call_id}"))
        .count()
}

pub async fn run() -> anyhow::Result<FenceReport> {
    let options_lab = LabOptions {
        netns: true,
        ..LabOptions::default()
    };
    let (lab, client) = Lab::with_extensions(3, options_lab, &[], "Tr7!kq-Vw9zP").await?;
    let client = client.with_timeout(Duration::from_millis(1500));
    let epoch = Instant::now();
    let owners = OwnerWatch::start(&client, lab.nodes.len(), epoch);
    let owner = wait_single_owner(&owners, Duration::from_secs(20)).await?;
    let vip = SocketAddr::new(topology::VIP.into(), topology::SIP_PORT);
    let mut report = FenceReport {
        queued: QUEUED,
        ..FenceReport::default()
    };

    // A phone's TCP connection, served by the owner before anything happens.
    let mut tcp = TcpStream::connect(vip).await.context("tcp to the VIP")?;
    let tcp_local = tcp.local_addr()?;
    tcp.write_all(options("before", tcp_local, "TCP", vip).as_bytes())
        .await?;
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    report.tcp_served_before = String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200");
    let udp = UdpSocket::bind(SocketAddr::new(topology::PHONES_A.into(), 0)).await?;
    let udp_local = udp.local_addr()?;

    let fenced_before = client
        .metric(owner, "pbx_vip_fenced_total{direction=\"in\"}")
        .await
        .unwrap_or(0.0);
    lab.remove_kernel_fence(owner)?;
    lab.signal(owner, "STOP")?;
    let frozen_at = ms_since(epoch);
    // Queued in the frozen owner's sockets: nothing stops them in its kernel any more.
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Many of them, so that the woken process is still reading its queue when its owner loop
    // notices the lease is gone: the requests it reads meanwhile meet the in-process fence.
    for k in 0..QUEUED {
        let id = format!("queued-udp-{k}");
        udp.send_to(options(&id, udp_local, "UDP", vip).as_bytes(), vip)
            .await?;
        let id = format!("queued-tcp-{k}");
        tcp.write_all(options(&id, tcp_local, "TCP", vip).as_bytes())
            .await?;
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    let taken = loop {
        if let Some(at) = owners.first_claim_since(frozen_at, |i| i != owner) {
            break at;
        }
        ensure!(Instant::now() < deadline, "no node took the VIP");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    report.new_owner_ms = taken.saturating_sub(frozen_at);
    lab.signal(owner, "CONT")?;

    let (udp_n, tcp_n) = tokio::join!(
        udp_answers(&udp, "queued-udp", AFTER_WAKE),
        tcp_answers(&mut tcp, "queued-tcp", AFTER_WAKE),
    );
    report.stale_answers_udp = udp_n;
    report.stale_answers_tcp = tcp_n;
    let fenced_after = client
        .metric(owner, "pbx_vip_fenced_total{direction=\"in\"}")
        .await
        .unwrap_or(0.0);
    report.fenced_in = fenced_after - fenced_before;
    let _ = owners.stop().await;
    judge(&mut report);
    Ok(report)
}

fn judge(r: &mut FenceReport) {
    if !r.tcp_served_before {
        r.violations
            .push("the VIP did not answer over TCP before the freeze".into());
    }
    if r.stale_answers_udp + r.stale_answers_tcp > 0 {
        r.violations.push(format!(
            "the woken old owner answered {} queued UDP and {} queued TCP requests",
            r.stale_answers_udp, r.stale_answers_tcp
        ));
    }
}
