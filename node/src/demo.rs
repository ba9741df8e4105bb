//! `pbx demo`: a three-node cluster on loopback, created on first use and resumed afterwards.
//!
//! Each node is a separate `pbx run` process, so killing one shows what a real failure looks like.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};

use crate::client::AdminClient;
use crate::config::{
    ApiSection, CallsSection, ClusterSection, MediaSection, NodeConfig, SecuritySection,
    SipSection, TlsSection, VipSection,
};

const NODES: u64 = 3;
const RAFT_PORT_BASE: u16 = 17000;
const API_PORT_BASE: u16 = 18000;
const SIP_PORT: u16 = 15060;
const SIP_TLS_PORT: u16 = 15061;
/// Where the VIP will live in the one-machine demo (loopback driver).
const DEMO_VIP: &str = "127.0.0.100/32";

fn node_config(dir: &Path, id: u64) -> NodeConfig {
    let id16 = u16::try_from(id).unwrap_or(u16::MAX);
    NodeConfig {
        node_id: id,
        name: Some(format!("demo-{id}")),
        data_dir: dir.join(format!("node-{id}")),
        cluster: ClusterSection {
            listen: ([127, 0, 0, 1], RAFT_PORT_BASE + id16).into(),
            advertise: None,
            heartbeat_ms: 50,
            election_min_ms: 250,
            election_max_ms: 400,
            commit_linger_ms: 1,
            snapshot_after_logs: 5000,
            keep_logs_after_snapshot: 1000,
            audio_reserve_mib: 512,
            max_protocol: None,
        },
        api: ApiSection {
            listen: ([127, 0, 0, 1], API_PORT_BASE + id16).into(),
            advertise: None,
        },
        tls: TlsSection {
            dir: dir.join(format!("tls/node-{id}")),
        },
        // SIP and media live on the VIP, served by whichever node owns it: the same ports on every
        // node, bound only by the owner.
        sip: SipSection {
            udp: Some(([127, 0, 0, 100], SIP_PORT).into()),
            tcp: Some(([127, 0, 0, 100], SIP_PORT).into()),
            tls: Some(([127, 0, 0, 100], SIP_TLS_PORT).into()),
            ..SipSection::default()
        },
        media: MediaSection {
            address: Some([127, 0, 0, 100].into()),
            ..MediaSection::default()
        },
        calls: CallsSection::default(),
        trunks: crate::config::TrunksSection::default(),
        // Everything in the demo comes from this machine.
        events: crate::config::EventsSection::default(),
        security: SecuritySection {
            trusted_networks: vec!["127.0.0.1/32".into()],
            ..SecuritySection::default()
        },
        vip: Some(VipSection {
            address: DEMO_VIP.into(),
            interface: "lo".into(),
            driver: "loopback".into(),
            lease_ms: None,
            arp_refresh_secs: 10,
            command: None,
            command_timeout_secs: 10,
        }),
    }
}

fn config_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("node-{id}.toml"))
}

pub async fn run(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let ca_dir = dir.join("tls/ca");
    if !ca_dir.join("ca-key.pem").exists() {
        crate::cli::make_ca(&ca_dir, "pbx-demo")?;
    }
    let sans = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    for id in 1..=NODES {
        let cfg = node_config(&dir, id);
        if !cfg.tls.dir.join("node.pem").exists() {
            crate::cli::make_node_cert(&ca_dir, id, &cfg.tls.dir, &sans)?;
        }
        let path = config_path(&dir, id);
        if !path.exists() {
            std::fs::write(&path, cfg.to_toml())
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let creds_path = dir.join("admin-credentials.txt");
    let first = node_config(&dir, 1);
    let fresh = !creds_path.exists();
    if fresh {
        let b = crate::run::init_cluster(&NodeConfig::load(&config_path(&dir, 1))?).await?;
        write_private(&creds_path, &format!("{}\n{}\n", b.username, b.password))?;
        println!("New cluster {} created.", b.cluster_id);
    }
    let creds = std::fs::read_to_string(&creds_path)?;
    let mut lines = creds.lines();
    let (user, password) = (
        lines.next().unwrap_or("admin").to_owned(),
        lines.next().unwrap_or_default().to_owned(),
    );

    let exe = std::env::current_exe().context("locating the pbx binary")?;
    let mut children = Vec::new();
    for id in 1..=NODES {
        children.push(spawn_node(&exe, &dir, id)?);
    }
    let api = format!("https://{}", first.api_advertise());
    let client = AdminClient::new(&api, &ca_dir.join("ca.pem"), &user, &password)?;
    wait_ready(&client).await?;
    for id in 2..=NODES {
        let marker = dir.join(format!("node-{id}/.joined"));
        if !marker.exists() {
            crate::cli::join(&client, &NodeConfig::load(&config_path(&dir, id))?).await?;
            std::fs::write(&marker, b"")?;
        }
    }
    println!();
    println!(
        "PBX demo cluster is running: {NODES} nodes on loopback, data in {}",
        dir.display()
    );
    println!(
        "  phones: SIP on the VIP, udp/tcp {} tls {} (served by the node that owns it: the leader)",
        first.sip.udp.map(|a| a.to_string()).unwrap_or_default(),
        first.sip.tls.map(|a| a.to_string()).unwrap_or_default(),
    );
    for id in 1..=NODES {
        let c = node_config(&dir, id);
        println!(
            "  node {id}: web portal and admin API https://{}/  (log: {})",
            c.api_advertise(),
            dir.join(format!("node-{id}.log")).display()
        );
    }
    println!("  CA certificate: {}", ca_dir.join("ca.pem").display());
    if fresh {
        println!("  admin user: {user}   password: {password}");
        println!(
            "  (also saved, mode 0600, in {}; delete it once noted)",
            creds_path.display()
        );
    } else {
        println!(
            "  admin credentials: see {} (the bootstrap password: once it was changed at the \
             portal's first sign-in, the new one)",
            creds_path.display()
        );
    }
    println!(
        "  portal: open a node's address in a browser (accept the demo CA's certificate); \
         the first sign-in asks for a new admin password"
    );
    println!(
        "  try: curl --cacert {} -u {user}:<password> {api}/api/v1/cluster/status",
        ca_dir.join("ca.pem").display()
    );
    println!("Press Ctrl-C to stop.");

    supervise(&mut children).await;
    println!("stopping nodes...");
    for child in &mut children {
        terminate(child).await;
    }
    println!("stopped; run the same command again to resume.");
    Ok(())
}

fn spawn_node(exe: &Path, dir: &Path, id: u64) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("node-{id}.log")))?;
    Command::new(exe)
        .arg("run")
        .arg("--config")
        .arg(config_path(dir, id))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting node {id}"))
}

async fn wait_ready(client: &AdminClient) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match client.get::<serde_json::Value>("/api/v1/health").await {
            Ok(h) if h.get("leader").is_some_and(|l| !l.is_null()) => return Ok(()),
            _ if tokio::time::Instant::now() > deadline => {
                anyhow::bail!("node 1 did not become ready within 30 s")
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Waits for Ctrl-C or SIGTERM; reports nodes that exit meanwhile (the others keep serving).
async fn supervise(children: &mut [Child]) {
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let mut reported = vec![false; children.len()];
    let signal = crate::run::wait_for_signal();
    let mut signal = std::pin::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => return,
            _ = ticker.tick() => {
                for (i, child) in children.iter_mut().enumerate() {
                    if let Ok(Some(status)) = child.try_wait() && !reported[i] {
                        println!("node {} exited ({status}); the others keep serving", i + 1);
                        reported[i] = true;
                    }
                }
            }
        }
    }
}

/// SIGTERM, then SIGKILL if the node has not drained in time.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await;
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
