//! The node's lifecycle: build, serve, wait for a signal, drain. Also the offline `cluster init`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rand::RngCore as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use cluster::{Cluster, ClusterConfig, NodeTlsFiles};
use storage::Command;
use storage::model::{ClusterRecord, MemberRecord, NodeAddr, VipConfig};
use storage::web::WebAccount;

use crate::api::{self, AppState};
use crate::config::NodeConfig;
use crate::time::now_millis;
use crate::{accounts, credentials, telemetry};

/// The admin account created at `cluster init`.
pub const BOOTSTRAP_ADMIN: &str = "admin";

pub fn cluster_config(cfg: &NodeConfig) -> anyhow::Result<ClusterConfig> {
    let tls = NodeTlsFiles::load(&cfg.tls.dir).with_context(|| {
        format!(
            "loading the node certificate from {}",
            cfg.tls.dir.display()
        )
    })?;
    tls.check_identity(cfg.node_id).with_context(|| {
        format!(
            "the certificate in {} is not for node {}",
            cfg.tls.dir.display(),
            cfg.node_id
        )
    })?;
    let mut c = ClusterConfig::new(
        cfg.node_id,
        cfg.cluster.listen,
        NodeAddr {
            raft_addr: cfg.raft_advertise(),
            api_addr: cfg.api_advertise(),
        },
        tls,
    );
    c.heartbeat_ms = cfg.cluster.heartbeat_ms;
    c.election_min_ms = cfg.cluster.election_min_ms;
    c.election_max_ms = cfg.cluster.election_max_ms;
    c.commit_linger_ms = cfg.cluster.commit_linger_ms;
    c.snapshot_after_logs = cfg.cluster.snapshot_after_logs;
    c.keep_logs_after_snapshot = cfg.cluster.keep_logs_after_snapshot;
    c.audio_reserve_bytes = cfg.cluster.audio_reserve_mib.saturating_mul(1024 * 1024);
    if let Some(max) = cfg.cluster.max_protocol {
        c.max_wire_version = max;
    }
    Ok(c)
}

/// Runs the node until SIGINT or SIGTERM.
pub async fn run(cfg: NodeConfig) -> anyhow::Result<()> {
    let prometheus = telemetry::prometheus();
    let config = cluster_config(&cfg)?;
    let tls =
        cluster::api_server_config(&config.tls).context("building the API's TLS configuration")?;
    let cluster = Cluster::start(config, &cfg.data_dir)
        .await
        .with_context(|| format!("starting cluster node {}", cfg.node_id))?;
    let events = crate::events::Events::start(&cfg.events, cluster.clone())
        .context("starting the event center")?;
    tokio::spawn(announce_leadership(cluster.clone(), Arc::clone(&events)));
    // Every node keeps a copy of every audio file; expired ones leave the index hourly.
    let audio = crate::audio::AudioStore::new(cluster.clone(), Arc::clone(&events));
    tokio::spawn(crate::audio::run_sync(Arc::clone(&audio)));
    crate::apps::speak_prompts();
    tokio::spawn(crate::events::prune_every_hour(
        cluster.clone(),
        Duration::ZERO,
        |now| Command::PruneAudio { now },
    ));
    let security =
        crate::security::Security::start(&cfg.security, cluster.clone(), Arc::clone(&events));
    // SIP capture for troubleshooting: off until an admin enables a target; the targets follow
    // the replicated table on every node, so the next VIP owner captures the same ones.
    let capture = Arc::new(crate::capture::Capture::new(
        cfg.node_id,
        crate::capture::CaptureConfig::default(),
    ));
    tokio::spawn(crate::capture::follow_targets(
        Arc::clone(&capture),
        cluster.clone(),
    ));
    // Other members ask this node's ring over the cluster RPC (the cluster-wide capture query).
    cluster.set_app_handler(crate::capture::remote::app_handler(Arc::clone(&capture)));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Without a VIP, SIP runs on this node's own listeners from the start; with one, only while this
    // node owns the VIP, started and stopped by the owner loop.
    let (sip, vip_task, fence) = match &cfg.vip {
        None => {
            let sip = crate::sip::SipService::start(
                &cfg.sip,
                &cfg.media,
                &cfg.calls,
                &cfg.trunks,
                cluster.clone(),
                Arc::clone(&tls),
                Arc::clone(&security),
                Arc::clone(&audio),
                Arc::clone(&capture),
                None,
            )
            .await
            .context("starting SIP")?;
            (sip, None, None)
        }
        Some(vip) => {
            let (task, fence) = start_vip(
                &cfg, vip, &cluster, &tls, &security, &events, &audio, &capture, &stop_rx,
            )?;
            (None, Some(task), Some(fence))
        }
    };
    tokio::spawn(api::record_version(cluster.clone()));
    tokio::spawn(api::watch_versions(cluster.clone(), Arc::clone(&events)));
    // Expired web sessions are dropped by the leader; until then they are refused at each use.
    tokio::spawn(crate::events::prune_every_hour(
        cluster.clone(),
        Duration::ZERO,
        |now| Command::PruneWebSessions { now },
    ));
    // CDRs stored before the index of CDRs by extension existed are indexed by the leader, whichever
    // node that is (with a VIP, SIP runs on its owner only); a no-op once the index is complete.
    tokio::spawn(crate::sip::index_cdrs(cluster.clone()));
    let listener = TcpListener::bind(cfg.api.listen)
        .await
        .with_context(|| format!("binding the API on {}", cfg.api.listen))?;
    let backups = crate::backup::Backups::new(
        cluster.clone(),
        Arc::clone(&audio),
        Arc::clone(&events),
        &cfg.data_dir,
    )
    .context("opening the backups directory")?;
    tokio::spawn(crate::backup::run_schedule(Arc::clone(&backups)));
    let router = api::router(AppState {
        cluster: cluster.clone(),
        prometheus,
        security: Arc::clone(&security),
        events,
        vip: fence,
        audio,
        capture,
        backups,
        sip: crate::provisioning::SipListeners::of(&cfg.sip),
    });
    let api_task = tokio::spawn(api::serve_https(listener, tls, router, stop_rx, security));
    tracing::info!(node = cfg.node_id, api = %format!("https://{}", cfg.api_advertise()), raft = %cfg.raft_advertise(), "node running");

    wait_for_signal().await;
    tracing::info!(node = cfg.node_id, "shutting down");
    drop(sip);
    let _ = stop_tx.send(true);
    if let Some(task) = vip_task {
        // The VIP goes down before the process does, so the next owner need not wait for the lease.
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "vip driver ended with error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "vip task failed"),
            Err(_) => tracing::warn!("vip release did not finish within 5 s"),
            Ok(Ok(Ok(()))) => {}
        }
    }
    // Raft stops at once, beside the API's drain: while a stopping leader still sends heartbeats,
    // no other node can be elected and take the VIP.
    let (api, stopped) = tokio::join!(api_task, cluster.shutdown());
    match api {
        Ok(Err(e)) => tracing::warn!(error = %e, "api server ended with error"),
        Err(e) => tracing::warn!(error = %e, "api server task failed"),
        Ok(Ok(())) => {}
    }
    stopped.context("stopping the cluster node")?;
    Ok(())
}

/// Starts the VIP owner loop: SIP and media come up on the VIP whenever this node takes it.
#[expect(
    clippy::too_many_arguments,
    reason = "what the node built, handed to the owner loop once"
)]
fn start_vip(
    cfg: &NodeConfig,
    vip: &crate::config::VipSection,
    cluster: &Cluster,
    tls: &Arc<rustls::ServerConfig>,
    security: &Arc<crate::security::Security>,
    events: &Arc<crate::events::Events>,
    audio: &Arc<crate::audio::AudioStore>,
    capture: &Arc<crate::capture::Capture>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<(
    tokio::task::JoinHandle<Result<(), crate::vip::VipError>>,
    crate::vip::Fence,
)> {
    let address = crate::vip::check(vip).context("[vip]")?;
    let lease = vip.lease(&cfg.cluster).map_err(anyhow::Error::msg)?;
    let fence = crate::vip::Fence::new();
    let on_vip = crate::sip::OnVip {
        ip: address.ip,
        fence: fence.clone(),
    };
    let (sip_cfg, media_cfg, calls_cfg) = (cfg.sip.clone(), cfg.media.clone(), cfg.calls.clone());
    let trunks_cfg = cfg.trunks.clone();
    let (cluster2, tls, security) = (cluster.clone(), Arc::clone(tls), Arc::clone(security));
    let audio = Arc::clone(audio);
    let capture = Arc::clone(capture);
    let start: crate::vip::StartServices = Arc::new(move || {
        let (sip_cfg, media_cfg, calls_cfg, trunks_cfg) = (
            sip_cfg.clone(),
            media_cfg.clone(),
            calls_cfg.clone(),
            trunks_cfg.clone(),
        );
        let (cluster, tls, security, on_vip, audio) = (
            cluster2.clone(),
            Arc::clone(&tls),
            Arc::clone(&security),
            on_vip.clone(),
            Arc::clone(&audio),
        );
        let capture = Arc::clone(&capture);
        Box::pin(async move {
            crate::sip::SipService::start(
                &sip_cfg,
                &media_cfg,
                &calls_cfg,
                &trunks_cfg,
                cluster,
                tls,
                security,
                audio,
                capture,
                Some(on_vip),
            )
            .await
        })
    });
    let owner = crate::vip::Owner {
        cluster: cluster.clone(),
        events: Arc::clone(events),
        fence: fence.clone(),
        lease,
        arp_refresh: Duration::from_secs(vip.arp_refresh_secs),
        start,
        address,
    };
    let (vip, stop) = (vip.clone(), stop.clone());
    let task = tokio::spawn(async move { crate::vip::run(&vip, owner, stop).await });
    Ok((task, fence))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub(crate) async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Credentials created at init, shown once.
pub struct Bootstrap {
    pub username: String,
    pub password: String,
    pub cluster_id: String,
}

/// Creates a new cluster whose only member is this (stopped) node, with its identity, secrets and the
/// bootstrap admin. Refuses if the node already belongs to a cluster.
pub async fn init_cluster(cfg: &NodeConfig) -> anyhow::Result<Bootstrap> {
    let cluster = Cluster::start(cluster_config(cfg)?, &cfg.data_dir)
        .await
        .context("opening the node's store")?;
    let result = init_on(&cluster, cfg).await;
    cluster
        .shutdown()
        .await
        .context("closing the node's store")?;
    result
}

async fn init_on(cluster: &Cluster, cfg: &NodeConfig) -> anyhow::Result<Bootstrap> {
    if cluster.is_initialized() {
        anyhow::bail!(
            "node {} already belongs to a cluster (data in {})",
            cfg.node_id,
            cfg.data_dir.display()
        );
    }
    cluster
        .initialize()
        .await
        .context("initialising Raft membership")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cluster.current_leader() != Some(cfg.node_id) {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no leader elected within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let now = now_millis();
    let mut secret = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let mut id = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut id);
    let cluster_id = hex::encode(id);
    let password = credentials::generate_secret();
    let hash = accounts::hash_password(&password)
        .map_err(|e| anyhow::anyhow!("hashing the admin password: {e}"))?;
    let mut commands = vec![
        Command::InitCluster(ClusterRecord {
            cluster_id: cluster_id.clone(),
            realm: cfg.sip.realm.clone(),
            secret,
            created_at: now,
        }),
        Command::PutWebAccount {
            // Printed once at init: the admin must replace it at the first sign-in.
            account: Box::new(WebAccount {
                username: BOOTSTRAP_ADMIN.to_owned(),
                password_hash: hash,
                role: "admin".to_owned(),
                extension: None,
                email: None,
                disabled: false,
                must_change_password: true,
                totp: None,
                password_changed_at: now,
                created_at: now,
                updated_at: now,
            }),
            mode: storage::routing::PutMode::Create,
        },
    ];
    commands.extend(first_member(cfg, now));
    for cmd in commands {
        let kind = cmd.kind();
        let resp = cluster
            .propose(cmd)
            .await
            .with_context(|| format!("writing {kind}"))?;
        anyhow::ensure!(resp == storage::Response::Ok, "{kind} refused: {resp:?}");
    }
    Ok(Bootstrap {
        username: BOOTSTRAP_ADMIN.to_owned(),
        password,
        cluster_id,
    })
}

/// This node as the first member of a new (or restored) cluster, and the VIP of its config.
pub(crate) fn first_member(cfg: &NodeConfig, now: u64) -> Vec<Command> {
    let mut commands = vec![Command::PutMember(MemberRecord {
        node_id: cfg.node_id,
        name: cfg.display_name(),
        addr: NodeAddr {
            raft_addr: cfg.raft_advertise(),
            api_addr: cfg.api_advertise(),
        },
        joined_at: now,
    })];
    if let Some(vip) = &cfg.vip {
        commands.push(Command::SetVip(VipConfig {
            address: vip.address.clone(),
            interface: vip.interface.clone(),
            driver: vip.driver.clone(),
            updated_at: now,
        }));
    }
    commands
}

/// A node that becomes the Raft leader says so in the event center (a failover, when it was not the
/// first election).
async fn announce_leadership(cluster: Cluster, events: Arc<crate::events::Events>) {
    let mut metrics = cluster.leadership();
    let me = cluster.node_id();
    let mut was_leader = false;
    let mut seen_other = false;
    loop {
        let (leader, term) = {
            let m = metrics.borrow_and_update();
            (m.leader, m.term)
        };
        let leads = leader == Some(me);
        if leads && !was_leader && seen_other {
            events.raise(
                "leader_changed",
                storage::model::Severity::Warning,
                None,
                format!("node {me} took over as leader (term {term})"),
            );
        }
        seen_other |= leader.is_some_and(|l| l != me);
        was_leader = leads;
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
