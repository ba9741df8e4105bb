//! A register trunk across a VIP failover, in the namespace lab: Kamailio plays the provider on a
//! phone host (198.18.0.22), the carrier's phone answers there, and an extension on 198.18.0.21
//! calls out through the trunk. The VIP owner is killed during the established outbound call:
//! the call must go on with audio both ways, the new owner must register the trunk again at once,
//! and the toll-fraud counter of the extension must hold (a per-minute limit reached before the
//! kill still refuses after it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use serde::Serialize;
use serde_json::{Value, json};

use crate::failover::{OwnerWatch, ms_since, wait_single_owner};
use crate::lab::{Lab, LabClient, LabOptions, topology};
use crate::phone::{Answer, Dialog, Phone, rtp_packet};
use crate::provider::{Provider, ProviderConfig};

const SECRET: &str = "Tr7!kq-Vw9zP";
const TRUNK_USER: &str = "pbxtrunk";
const TRUNK_PASSWORD: &str = "Pr0vider-Secret!";
const PROVIDER_PORT: u16 = 5070;
/// Calls per minute the extension's group allows.
const PER_MINUTE: u32 = 4;
const NUMBER: &str = "95550100";

/// What the scenario saw.
#[derive(Debug, Default, Serialize)]
pub struct TrunkFailoverReport {
    /// From the kill to another node claiming the VIP.
    pub new_owner_ms: u64,
    /// From the kill, and from the new owner's claim, to the trunk registered by the new owner.
    pub re_registered_ms: u64,
    pub re_registered_after_claim_ms: u64,
    /// Whether the outbound call had audio both ways after the takeover and ended with a BYE
    /// answered 200.
    pub call_survived: bool,
    /// Longest silence either phone heard around the fault.
    pub audio_gap_ms: u64,
    /// Answers to the calls made after the kill, in order (the limit counts those before it).
    pub after_kill: Vec<u16>,
    pub violations: Vec<String>,
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn post(client: &LabClient, path: &str, body: Value) -> anyhow::Result<()> {
    for i in 0..3 {
        if let Ok(resp) = client
            .req(i, reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
        {
            let status = resp.status();
            ensure!(
                status.is_success(),
                "POST {path}: {status} {}",
                resp.text().await?
            );
            return Ok(());
        }
    }
    bail!("no node answered POST {path}")
}

/// The trunk's state as any answering node reports it.
async fn trunk_status(client: &LabClient, nodes: usize) -> Option<Value> {
    for i in 0..nodes {
        if let Ok(v) = client.get_json(i, "/api/v1/trunks/provider/status").await {
            return Some(v);
        }
    }
    None
}

/// The caller dials out; the carrier's phone answers. Both dialogs, or the caller's failure status.
async fn call_out(
    caller: &mut Phone,
    carrier: &mut Phone,
) -> anyhow::Result<Result<(Dialog, Dialog), u16>> {
    let out = caller.dial(NUMBER, None).await.context("dialling out")?;
    // A refused call never reaches the carrier, whose wait then runs out: it is kept short.
    let (answered, placed) = tokio::join!(
        carrier.answer(Answer::Accept, Duration::from_secs(8)),
        caller.outcome(&out, Duration::from_secs(8))
    );
    match placed.context("the caller's outcome")? {
        Err(status) => Ok(Err(status)),
        Ok(caller_dialog) => {
            let carrier_dialog = answered
                .context("the carrier's answer")?
                .1
                .context("the carrier did not answer")?;
            Ok(Ok((caller_dialog, carrier_dialog)))
        }
    }
}

/// Ends a call from the caller's side; the carrier answers the BYE.
async fn hang_up(caller: &mut Phone, carrier: &mut Phone, d: &mut Dialog) -> anyhow::Result<u16> {
    let (status, _) = tokio::join!(
        caller.hang_up(d),
        carrier.expect_request("BYE", Duration::from_secs(10))
    );
    status.context("hanging up")
}

/// Sends RTP both ways every 20 ms until stopped.
fn pump(
    a: (Arc<tokio::net::UdpSocket>, SocketAddr),
    b: (Arc<tokio::net::UdpSocket>, SocketAddr),
) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut seq = 0u16;
        while !flag.load(Ordering::Relaxed) {
            tick.tick().await;
            let _ = a.0.send_to(&rtp_packet(seq, 1), a.1).await;
            let _ = b.0.send_to(&rtp_packet(seq, 2), b.1).await;
            seq = seq.wrapping_add(1);
        }
    });
    stop
}

async fn configure(client: &LabClient) -> anyhow::Result<()> {
    let provider = SocketAddr::new(topology::PHONES_B.into(), PROVIDER_PORT);
    post(
        client,
        "/api/v1/trunks",
        json!({
            "name": "provider", "kind": "register", "host": provider.ip().to_string(),
            "port": provider.port(), "transport": "udp", "username": TRUNK_USER,
            "password": TRUNK_PASSWORD, "realm": "provider.lab", "register_expires": 60,
            "caller_id": "15550199",
        }),
    )
    .await?;
    post(
        client,
        "/api/v1/routes/outbound",
        json!({
            "name": "national", "patterns": ["9NXXXXXX"], "strip": 1, "class": "local",
            "trunks": ["provider"],
        }),
    )
    .await?;
    post(
        client,
        "/api/v1/permission-groups",
        json!({
            "name": "staff", "routes": ["national"],
            "limits": {"per_minute": PER_MINUTE, "per_hour": 0, "per_day": 0, "simultaneous": 0,
                       "international_per_day": 0},
            "suspend_on_limit": false,
        }),
    )
    .await?;
    let resp = client
        .req(0, reqwest::Method::PATCH, "/api/v1/extensions/1001")
        .json(&json!({"permission_group": "staff"}))
        .send()
        .await?;
    ensure!(resp.status().is_success(), "PATCH 1001: {}", resp.status());
    Ok(())
}

/// Runs the scenario once against a fresh 3-node namespace lab.
pub async fn run() -> anyhow::Result<TrunkFailoverReport> {
    let options = LabOptions {
        netns: true,
        sip_extra: "qualify_interval_secs = 0".into(),
        ..LabOptions::default()
    };
    let (mut lab, client) = Lab::with_extensions(3, options, &["1001"], SECRET).await?;
    let client = client
        .with_session()
        .await?
        .with_timeout(Duration::from_millis(1500));
    let nodes = lab.nodes.len();
    let epoch = Instant::now();
    let owners = OwnerWatch::start(&client, nodes, epoch);
    wait_single_owner(&owners, Duration::from_secs(20)).await?;
    let vip = SocketAddr::new(topology::VIP.into(), topology::SIP_PORT);
    let provider_addr = SocketAddr::new(topology::PHONES_B.into(), PROVIDER_PORT);
    let mut carrier =
        Phone::bound(topology::PHONES_B.into(), provider_addr, "carrier", "-").await?;
    let dir = tempfile::tempdir()?;
    let provider = Provider::start(
        dir.path(),
        &ProviderConfig {
            listen: provider_addr,
            domain: "provider.lab".into(),
            user: TRUNK_USER.into(),
            password: TRUNK_PASSWORD.into(),
            carrier_ip: topology::PHONES_B.into(),
            carrier_uas: carrier.sip_addr,
            tcp: false,
            tls: None,
        },
    )?;
    configure(&client).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        match trunk_status(&client, nodes).await {
            Some(s) if s["state"] == "registered" => break s,
            _ if Instant::now() > deadline => bail!(
                "the trunk never registered\n{}\n{}",
                provider.log(),
                lab.log_tail(0)
            ),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let first_node = first["node_id"].as_u64().context("no node_id")?;

    // Every call below falls in one calendar minute of the per-minute counter.
    let second = (now_unix_ms() / 1000) % 60;
    if second > 20 {
        tokio::time::sleep(Duration::from_secs(61 - second)).await;
    }
    let mut caller = Phone::bound(topology::PHONES_A.into(), vip, "1001", SECRET).await?;
    let registered = caller.register(3600).await.context("1001 registering")?;
    ensure!(registered == 200, "1001 did not register");
    for n in 0..2 {
        let placed = call_out(&mut caller, &mut carrier).await;
        let placed = placed
            .with_context(|| format!("short call {n}\n{}\n{}", provider.log(), lab.log_tail(0)))?;
        match placed {
            Ok((mut d, _)) => {
                let status = hang_up(&mut caller, &mut carrier, &mut d).await?;
                ensure!(status == 200, "short call {n}: BYE answered {status}");
            }
            Err(status) => bail!("short call {n} failed with {status}\n{}", provider.log()),
        }
    }
    let (mut caller_d, carrier_d) = match call_out(&mut caller, &mut carrier).await? {
        Ok(d) => d,
        Err(status) => bail!("the long call failed with {status}"),
    };
    let stop = pump(
        (caller.rtp_socket(), caller_d.media),
        (carrier.rtp_socket(), carrier_d.media),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let owner = wait_single_owner(&owners, Duration::from_secs(5)).await?;
    let fault_at = ms_since(epoch);
    let fault_wall = now_unix_ms();
    lab.kill(owner);
    let mut report = TrunkFailoverReport::default();
    let recovery = Instant::now() + Duration::from_secs(20);
    let claim = loop {
        if let Some(at) = owners.first_claim_since(fault_at, |i| i != owner) {
            break at;
        }
        ensure!(Instant::now() < recovery, "no node took the VIP");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    report.new_owner_ms = claim.saturating_sub(fault_at);
    loop {
        let again = trunk_status(&client, nodes).await.filter(|s| {
            s["state"] == "registered"
                && s["node_id"].as_u64() != Some(first_node)
                && s["since"].as_u64().is_some_and(|t| t >= fault_wall)
        });
        if let Some(s) = again {
            let at = s["since"].as_u64().unwrap_or(fault_wall);
            report.re_registered_ms = at.saturating_sub(fault_wall);
            report.re_registered_after_claim_ms =
                report.re_registered_ms.saturating_sub(report.new_owner_ms);
            break;
        }
        if Instant::now() > recovery {
            report
                .violations
                .push("the new owner did not register the trunk within 20 s".into());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Audio both ways again, then a clean end.
    let heard_after = claim.max(fault_at);
    let hears = |p: &Phone| {
        let offset = p.started.saturating_duration_since(epoch).as_millis() as u64;
        p.rtp_stats.count_since(heard_after.saturating_sub(offset)) > 0
    };
    while !(hears(&caller) && hears(&carrier)) && Instant::now() < recovery {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let survived_media = hears(&caller) && hears(&carrier);
    report.audio_gap_ms = [&caller, &carrier]
        .iter()
        .map(|p| p.rtp_stats.max_gap_ms())
        .max()
        .unwrap_or(0);
    let bye = hang_up(&mut caller, &mut carrier, &mut caller_d)
        .await
        .unwrap_or(0);
    report.call_survived = survived_media && bye == 200;
    if !report.call_survived {
        report.violations.push(format!(
            "the outbound call did not survive (audio both ways: {survived_media}, BYE: {bye})"
        ));
    }
    // Three calls counted before the kill; one more is allowed, the next is over the limit.
    for _ in 0..2 {
        let status = match call_out(&mut caller, &mut carrier).await? {
            Ok((mut d, _)) => {
                hang_up(&mut caller, &mut carrier, &mut d).await?;
                200
            }
            Err(status) => status,
        };
        report.after_kill.push(status);
    }
    if report.after_kill != [200, 403] {
        report.violations.push(format!(
            "after the kill the calls were answered {:?}, expected [200, 403]: the per-minute count \
             did not hold",
            report.after_kill
        ));
    }
    if report.re_registered_after_claim_ms > 2000 {
        report.violations.push(format!(
            "the trunk was registered {} ms after the takeover (more than 2 s)",
            report.re_registered_after_claim_ms
        ));
    }
    drop(provider);
    Ok(report)
}
