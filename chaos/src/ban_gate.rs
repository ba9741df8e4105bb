//! The gate under attack: one source floods a node with REGISTERs while two phones on other addresses
//! hold a call with RTP both ways. Measures how fast the ban reaches every node, how many packets per
//! second the gate drops, and whether the call noticed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use serde::Serialize;

use crate::lab::{Lab, LabOptions};
use crate::phone::{Answer, Phone};

const SECRET: &str = "Tr7!kq-Vw9zP";

#[derive(Debug, Serialize)]
pub struct BanGateReport {
    pub flood_seconds: f64,
    pub flood_packets_sent: u64,
    /// Milliseconds from the first flood packet until each node lists the source as banned.
    pub banned_on_node_ms: Vec<Option<u64>>,
    pub dropped_per_second: f64,
    pub call_packets_sent: u64,
    pub call_packets_received: u64,
}

pub async fn ban_gate(seconds: u64) -> anyhow::Result<BanGateReport> {
    let lab = Lab::start_with(3, LabOptions::default()).await?;
    let client = lab.client().with_session().await?;
    for n in ["1001", "1002"] {
        ensure!(
            client.create_extension_with_secret(0, n, SECRET).await?
                == reqwest::StatusCode::CREATED,
            "creating {n}"
        );
    }
    let server = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port));
    let mut alice = Phone::bound([127, 0, 0, 5].into(), server, "1001", SECRET).await?;
    let mut bob = Phone::bound([127, 0, 0, 6].into(), server, "1002", SECRET).await?;
    ensure!(
        alice.register(300).await? == 200 && bob.register(300).await? == 200,
        "registering"
    );
    let out = alice.dial("1002", None).await?;
    let (answered, placed) = tokio::join!(
        bob.answer(Answer::Accept, Duration::from_secs(5)),
        alice.outcome(&out, Duration::from_secs(5))
    );
    let bob_dialog = answered?.1.context("no answer")?;
    let alice_dialog = placed?.map_err(|s| anyhow::anyhow!("call failed: {s}"))?;

    // The call's media runs through the whole flood.
    let packets = u16::try_from(seconds * 50 + 50).unwrap_or(u16::MAX);
    let (a_sock, b_sock) = (alice.rtp_socket(), bob.rtp_socket());
    let (a_to, b_to) = (alice_dialog.media, bob_dialog.media);
    let media = tokio::spawn(async move {
        let every = Duration::from_millis(20);
        let (x, y) = tokio::join!(
            crate::phone::send_rtp_from(&a_sock, a_to, packets, every),
            crate::phone::send_rtp_from(&b_sock, b_to, packets, every)
        );
        x.and(y)
    });

    let dropped_before = client
        .metric(0, "pbx_security_dropped_total{service=\"sip\",why=\"ban\"}")
        .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let flood = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        tokio::spawn(async move {
            let sock = tokio::net::UdpSocket::bind("127.0.0.4:0").await?;
            let msg = format!(
                "REGISTER sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.4;branch=z9hG4bKflood\r\nMax-Forwards: 70\r\n\
                 From: <sip:1001@{server}>;tag=f\r\nTo: <sip:1001@{server}>\r\nCall-ID: flood\r\nCSeq: 1 REGISTER\r\n\
                 Contact: <sip:1001@127.0.0.4>\r\nContent-Length: 0\r\n\r\n"
            );
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    if sock.send_to(msg.as_bytes(), server).await.is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::task::yield_now().await;
            }
            anyhow::Ok(())
        })
    };
    let mut banned: Vec<Option<u64>> = vec![None; lab.nodes.len()];
    let deadline = started + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        for (i, slot) in banned.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let bans = client.get_json(i, "/api/v1/bans").await?;
            let active = bans["bans"].as_array().is_some_and(|b| {
                b.iter()
                    .any(|b| b["ip"] == "127.0.0.4" && b["active"] == true)
            });
            if active {
                *slot = Some(started.elapsed().as_millis() as u64);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    flood.await??;
    let flood_seconds = started.elapsed().as_secs_f64();
    let dropped = client
        .metric(0, "pbx_security_dropped_total{service=\"sip\",why=\"ban\"}")
        .await?
        - dropped_before;
    media.await??;
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(BanGateReport {
        flood_seconds,
        flood_packets_sent: sent.load(Ordering::Relaxed),
        banned_on_node_ms: banned,
        dropped_per_second: dropped / flood_seconds,
        call_packets_sent: 2 * u64::from(packets),
        call_packets_received: alice.rtp_stats.count() + bob.rtp_stats.count(),
    })
}
