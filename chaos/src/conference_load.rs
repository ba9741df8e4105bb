//! Load: conference rooms full of phones sending G.711 at once through a lab cluster, measuring
//! what a conference bridge is judged by: whether every member gets its mix every 20 ms, and the
//! PBX's CPU per member (relay both ways, the room's jitter buffers, mix and encode).

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use serde::Serialize;

use crate::call_load::{SECRET, cpu_seconds, create_extensions, pin_processes, stream_g711};
use crate::lab::{Lab, LabOptions};
use crate::phone::{Dialog, Phone};

/// The rooms' numbers start here.
const FIRST_ROOM: u32 = 8000;

#[derive(Debug, Serialize)]
pub struct ConferenceLoadReport {
    pub rooms: usize,
    pub members_per_room: usize,
    pub members_up: usize,
    pub seconds: f64,
    pub packets_sent: u64,
    /// Mixes the members received (one packet per member per 20 ms when nothing is lost).
    pub mixes_received: u64,
    pub mixes_expected: u64,
    pub mix_loss_percent: f64,
    /// CPU time of every PBX process over the media phase, per member per second, in
    /// milliseconds; and the members one core would carry at that rate.
    pub cpu_ms_per_member_second: f64,
    pub members_per_core: f64,
    pub setup_seconds: f64,
}

/// Fills `rooms` rooms with `members` phones each on a fresh `nodes`-node lab, has every phone send
/// 50 packets/s for `seconds`, and reports what came back and what it cost. With `pbx_cpu`, every
/// PBX process is pinned to that CPU (run the generator on another, e.g. under `taskset -c 1`).
pub async fn conference_load(
    rooms: usize,
    members: usize,
    seconds: u64,
    nodes: u64,
    pbx_cpu: Option<u32>,
) -> anyhow::Result<ConferenceLoadReport> {
    ensure!((2..=50).contains(&members), "2 to 50 members a room");
    let total = rooms * members;
    // Each member's call: RTP and RTCP on both sides of the relay.
    let ports_per_node = u16::try_from((total * 4 + 64).max(400)).context("too many members")?;
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 0\nmax_transactions = 500000".into(),
        media_ports_per_node: ports_per_node,
        ..LabOptions::default()
    };
    let lab = Lab::start_with(nodes, options).await?;
    let client = lab.client().with_session().await?;
    let numbers = create_extensions(&client, total).await?;
    for r in 0..rooms {
        let number = FIRST_ROOM + r as u32;
        let status = client
            .req(
                0,
                reqwest::Method::PUT,
                &format!("/api/v1/conferences/{number}"),
            )
            .json(&serde_json::json!({"name": format!("Load {r}"), "max_participants": members}))
            .send()
            .await?
            .status();
        ensure!(status.is_success(), "room {number}: {status}");
    }
    if let Some(cpu) = pbx_cpu {
        pin_processes(&lab, cpu)?;
    }
    let server = std::net::SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port));

    let setup_started = Instant::now();
    let mut phones: Vec<(Phone, Dialog)> = Vec::with_capacity(total);
    for (i, number) in numbers.iter().enumerate() {
        let room = FIRST_ROOM + (i / members) as u32;
        let mut phone = Phone::new(server, number, SECRET).await?;
        let out = phone
            .dial(&room.to_string(), None)
            .await
            .with_context(|| format!("{number} dialling room {room}"))?;
        let dialog = match phone.outcome(&out, Duration::from_secs(10)).await? {
            Ok(dialog) => dialog,
            Err(code) => anyhow::bail!("{number}: room {room} answered {code}"),
        };
        phones.push((phone, dialog));
    }
    let setup_seconds = setup_started.elapsed().as_secs_f64();
    // Everyone in: the join tones are over before the measured phase.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let pids: Vec<u32> = lab.nodes.iter().filter_map(|n| n.pid()).collect();
    let cpu_before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let received_before: u64 = phones.iter().map(|(p, _)| p.rtp_stats.count()).sum();
    let streams: Vec<_> = phones
        .iter()
        .map(|(p, d)| (p.rtp_socket(), d.media))
        .collect();
    let started = Instant::now();
    let packets_sent = stream_g711(&streams, seconds).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let mixes_received =
        phones.iter().map(|(p, _)| p.rtp_stats.count()).sum::<u64>() - received_before;
    let members_up = client.get_json(0, "/api/v1/conferences").await?["rooms"]
        .as_array()
        .map_or(0, |r| {
            r.iter()
                .map(|room| room["participants"].as_u64().unwrap_or(0) as usize)
                .sum()
        });
    for (mut phone, mut dialog) in phones {
        let _ = phone.hang_up(&mut dialog).await;
    }
    let mixes_expected = (total as f64 * elapsed * 50.0) as u64;
    let cpu_ms_per_member_second = (cpu_after - cpu_before) * 1e3 / (total as f64 * elapsed);
    Ok(ConferenceLoadReport {
        rooms,
        members_per_room: members,
        members_up,
        seconds: elapsed,
        packets_sent,
        mixes_received,
        mixes_expected,
        mix_loss_percent: 100.0 * mixes_expected.saturating_sub(mixes_received) as f64
            / mixes_expected.max(1) as f64,
        cpu_ms_per_member_second,
        members_per_core: if cpu_ms_per_member_second > 0.0 {
            1000.0 / cpu_ms_per_member_second
        } else {
            0.0
        },
        setup_seconds,
    })
}
