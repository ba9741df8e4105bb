//! A lab of real `pbx` processes on loopback, for chaos scenarios and the integration tests: certificates from `pbx cert`,
//! a config file per node, `pbx cluster init`, `pbx run`, `pbx cluster join` — what an operator runs.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

/// The nodes' log filter in a lab: openraft's elections and membership changes at info (what a
/// failed test's post-mortem needs), but not its replication lines, which log every failed call to a
/// killed peer and would fill the log's tail (`pbx_cluster` logs those runs of failures instead).
const LAB_LOG_FILTER: &str = "info,openraft=info,openraft::replication=off,\
                              openraft::engine::handler::replication_handler=error";

/// The `pbx` binary: `$PBX_BIN`, or the one cargo built beside this executable (`target/<profile>/pbx`,
/// found from a test binary in `deps/` or from the `chaos` binary itself).
pub fn pbx_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PBX_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("pbx"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("pbx"))
}

/// The `chaos` binary beside `pbx` (`$CHAOS_BIN` overrides).
pub fn chaos_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CHAOS_BIN") {
        return p.into();
    }
    pbx_bin().with_file_name("chaos")
}

/// Lab ports come from here: above the media ranges labs give their nodes (10000 and up), below the
/// kernel's ephemeral range (32768 and up). The kernel never hands a port in it to a socket bound to
/// port 0 or to an outgoing connection, so a port found free here stays free until the node the lab
/// starts binds it. (Ports asked of the kernel, in the ephemeral range, were sometimes taken by a
/// client socket between the check and the node's bind, and a lab then had no leader.)
const LAB_PORTS: std::ops::Range<u16> = 27_000..32_700;

/// The next candidate lab port: each process starts at its own offset and walks the range.
fn next_lab_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(LAB_PORTS.end - LAB_PORTS.start);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % span;
    LAB_PORTS.start + u16::try_from(n).unwrap_or(0)
}

/// A port free on loopback for UDP, TCP, or both, from [`LAB_PORTS`].
fn free_lab_port(udp: bool, tcp: bool) -> u16 {
    for _ in 0..LAB_PORTS.len() {
        let port = next_lab_port();
        let udp_free = !udp || UdpSocket::bind(("127.0.0.1", port)).is_ok();
        let tcp_free = !tcp || TcpListener::bind(("127.0.0.1", port)).is_ok();
        if udp_free && tcp_free {
            return port;
        }
    }
    0
}

/// A port free on loopback right now, for TCP or UDP, that no other socket will be given by the
/// kernel before the lab binds it.
pub fn free_port(udp: bool) -> u16 {
    free_lab_port(udp, !udp)
}

/// A port free for both UDP and TCP on loopback, as [`free_port`].
pub fn free_sip_port() -> u16 {
    free_lab_port(true, true)
}

/// Options for a lab node.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub snapshot_after_logs: u64,
    pub keep_logs_after_snapshot: u64,
    /// Extra lines for each node's `[cluster]` section.
    pub cluster_extra: String,
    /// Extra lines for each node's `[sip]` section.
    pub sip_extra: String,
    /// RTP ports per node (node `id` gets the `id`-th slice of this size above 10000).
    pub media_ports_per_node: u16,
    /// Extra lines for each node's `[media]` section.
    pub media_extra: String,
    /// Extra lines for each node's `[calls]` section.
    pub calls_extra: String,
    /// Extra lines for each node's `[security]` section. 127.0.0.1 (the tests' and tools' own
    /// address) is trusted; tests that play attackers use other loopback addresses.
    pub security_extra: String,
    /// Lines for each node's `[events]` section.
    pub events_extra: String,
    /// Lines for each node's `[trunks]` section (DNS servers for RFC 3263, failover time).
    pub trunks_extra: String,
    /// Run each node in its own network namespace of the lab topology (`deploy/lab-netns.sh up`),
    /// with the VIP on the node subnet and the Linux driver; the caller runs inside a phone namespace.
    pub netns: bool,
    /// Another `pbx` build to form the lab with (an older release, for upgrade runs); each node
    /// runs it until [`LabNode::binary`] is cleared and the node restarted.
    pub binary: Option<PathBuf>,
}

/// The lab topology of `deploy/lab-netns.sh`: node `id` is `198.18.0.(10+id)` in namespace
/// `pbx-n{id}`; phones live in `pbx-ph1` (198.18.0.21 and .22); the VIP is 198.18.0.100/24.
pub mod topology {
    use std::net::{IpAddr, Ipv4Addr};

    pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
    pub const VIP_CIDR: &str = "198.18.0.100/24";
    pub const PHONES_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 21);
    pub const PHONES_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 22);
    pub const OBSERVER_NS: &str = "pbx-ph2";
    pub const SIP_PORT: u16 = 5060;

    pub fn node_ip(id: u64) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10 + (id.min(200) as u8)))
    }

    pub fn node_ns(id: u64) -> String {
        format!("pbx-n{id}")
    }

    /// The `k`th address of the second phone host (`OBSERVER_NS`): 198.18.0.31 and up.
    pub fn observer_ip(k: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, 31 + (k.min(8) as u8))
    }
}

impl Default for LabOptions {
    fn default() -> Self {
        Self {
            snapshot_after_logs: 5000,
            keep_logs_after_snapshot: 1000,
            cluster_extra: String::new(),
            sip_extra: String::new(),
            media_ports_per_node: 400,
            media_extra: String::new(),
            calls_extra: String::new(),
            trunks_extra: String::new(),
            security_extra: String::new(),
            events_extra: String::new(),
            netns: false,
            binary: None,
        }
    }
}

pub struct LabNode {
    pub id: u64,
    /// The address its API, Raft and SIP listen on (127.0.0.1, or its lab namespace's address).
    pub host: std::net::IpAddr,
    /// Its network namespace, in a netns lab.
    pub netns: Option<String>,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub raft_port: u16,
    pub api_port: u16,
    /// SIP over UDP and TCP listen on this port of 127.0.0.1.
    pub sip_port: u16,
    /// SIP over TLS.
    pub sip_tls_port: u16,
    pub log: PathBuf,
    child: Option<Child>,
    /// The build this node runs when not the current one (see [`LabOptions::binary`]).
    pub binary: Option<PathBuf>,
}

impl LabNode {
    pub fn api_url(&self) -> String {
        format!(
            "https://{}",
            std::net::SocketAddr::new(self.host, self.api_port)
        )
    }
    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

/// A cluster of `pbx` processes in a temporary directory. Dropping it kills every process.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<LabNode>,
    pub admin_password: String,
    pub options: LabOptions,
    http: reqwest::Client,
}

impl Lab {
    /// Starts `n` nodes and forms a cluster of all of them.
    pub async fn start(n: u64) -> anyhow::Result<Self> {
        Self::start_with(n, LabOptions::default()).await
    }

    pub async fn start_with(n: u64, options: LabOptions) -> anyhow::Result<Self> {
        let mut lab = Self::prepared(n, options)?;
        // `init` opens the node's store and binds its Raft address: in the node's own namespace.
        let out = run_bin_in(
            lab.nodes[0].binary.clone().unwrap_or_else(pbx_bin),
            lab.nodes[0].netns.as_deref(),
            &[
                "cluster",
                "init",
                "--config",
                &path_str(&lab.nodes[0].config),
            ],
        )?;
        lab.admin_password = out
            .lines()
            .find_map(|l| l.strip_prefix("admin password: "))
            .and_then(|l| l.split_whitespace().next())
            .context("init printed no admin password")?
            .to_owned();
        lab.form().await?;
        lab.change_bootstrap_password().await?;
        lab.wait_password_everywhere().await?;
        Ok(lab)
    }

    /// Waits until every node accepts the admin's current password: a node that applies entries
    /// a little behind the others (it just joined, or became leader before applying the change)
    /// would otherwise answer a test's first request with `401`.
    async fn wait_password_everywhere(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        for i in 0..self.nodes.len() {
            loop {
                let resp = self
                    .req(i, reqwest::Method::GET, "/api/v1/extensions?limit=1")
                    .send()
                    .await;
                if resp.is_ok_and(|r| r.status().is_success()) {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "node {} does not accept the admin's new password",
                    self.nodes[i].id
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// A lab of `n` nodes with certificates and configs, none started (a restore test restores
    /// the first before [`Lab::form`]).
    pub fn prepared(n: u64, options: LabOptions) -> anyhow::Result<Self> {
        ensure!(
            pbx_bin().exists(),
            "{} not built (run cargo build -p pbx)",
            pbx_bin().display()
        );
        let dir = tempfile::tempdir()?;
        run_pbx(&["cert", "ca", "--dir", &path_str(&dir.path().join("ca"))])?;
        let ca_pem = std::fs::read(dir.path().join("ca/ca.pem"))?;
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem)?)
            .timeout(Duration::from_secs(60))
            .build()?;
        let mut lab = Self {
            dir,
            nodes: Vec::new(),
            admin_password: String::new(),
            options,
            http,
        };
        for id in 1..=n {
            lab.prepare_node(id)?;
        }
        Ok(lab)
    }

    /// Starts every node of a lab whose first node was initialised (or restored), and joins the
    /// others to it.
    pub async fn form(&mut self) -> anyhow::Result<()> {
        for i in 0..self.nodes.len() {
            self.spawn(i)?;
        }
        self.wait_leader(Duration::from_secs(30)).await?;
        for i in 1..self.nodes.len() {
            self.join(i)?;
        }
        Ok(())
    }

    /// What an admin does at first sign-in: the generated bootstrap password is replaced (sessions are
    /// refused anything else until it is). The new one extends the old, so it passes the policy too.
    async fn change_bootstrap_password(&mut self) -> anyhow::Result<()> {
        let new = format!("{}+Lab7", self.admin_password);
        let body = serde_json::json!({
            "current_password": self.admin_password,
            "new_password": new,
        });
        self.req(0, reqwest::Method::POST, "/api/v1/account/password")
            .json(&body)
            .send()
            .await?
            .error_for_status()
            .context("changing the bootstrap admin's password")?;
        self.admin_password = new;
        Ok(())
    }

    /// Certificates and config for node `id` (not started).
    pub fn prepare_node(&mut self, id: u64) -> anyhow::Result<usize> {
        let root = self.dir.path();
        let tls = root.join(format!("tls-{id}"));
        let netns = self.options.netns;
        let host: std::net::IpAddr = if netns {
            topology::node_ip(id)
        } else {
            [127, 0, 0, 1].into()
        };
        let host_s = host.to_string();
        run_pbx(&[
            "cert",
            "node",
            "--ca-dir",
            &path_str(&root.join("ca")),
            "--id",
            &id.to_string(),
            "--out",
            &path_str(&tls),
            "--san",
            &host_s,
            "--san",
            "localhost",
        ])?;
        // In namespaces every node has its own addresses: fixed ports, as on real servers.
        let (raft_port, api_port, sip_port, sip_tls_port) = if netns {
            (7001, 8443, topology::SIP_PORT, topology::SIP_PORT + 1)
        } else {
            (
                free_port(true),
                free_port(false),
                free_sip_port(),
                free_port(false),
            )
        };
        let data_dir = root.join(format!("node-{id}"));
        let config = root.join(format!("node-{id}.toml"));
        let per_node = u64::from(self.options.media_ports_per_node.max(8));
        // Below the kernel's ephemeral range (32768+), where clients' own sockets would take ports.
        // On loopback the nodes share one address, so each gets its own slice; on the VIP every node
        // needs the same range, for the next owner binds the ports the phones were told.
        let rtp_min = if netns {
            10_000
        } else {
            10_000 + (id - 1) * per_node
        };
        // In namespaces the phones' subnet is the office LAN, trusted like the tests' own address.
        let (media_addr, trusted, vip) = if netns {
            (
                topology::VIP.to_string(),
                "198.18.0.0/24",
                format!(
                    "[vip]\naddress = \"{}\"\ninterface = \"eth0\"\ndriver = \"linux\"\n",
                    topology::VIP_CIDR
                ),
            )
        } else {
            ("127.0.0.1".to_owned(), "127.0.0.1/32", String::new())
        };
        let media = format!(
            "[media]\naddress = \"{media_addr}\"\nrtp_port_min = {rtp_min}\nrtp_port_max = {}\n{}\n[calls]\n{}\n\
             [trunks]\n{}\n[security]\ntrusted_networks = [\"{trusted}\"]\n{}\n[events]\n{}\n{vip}",
            rtp_min + per_node - 1,
            self.options.media_extra,
            self.options.calls_extra,
            self.options.trunks_extra,
            self.options.security_extra,
            self.options.events_extra,
        );
        // In namespaces, as deploy/pbx.toml.example: every address of the node's host, so the VIP
        // owner serves the API and portal on the VIP too; on loopback, the node's own port.
        let api = if netns {
            format!("listen = \"0.0.0.0:{api_port}\"\nadvertise = \"{host_s}:{api_port}\"\n")
        } else {
            format!("listen = \"{host_s}:{api_port}\"\n")
        };
        std::fs::write(
            &config,
            format!(
                "node_id = {id}\ndata_dir = \"{}\"\n{media}[cluster]\nlisten = \"{host_s}:{raft_port}\"\nsnapshot_after_logs = {}\nkeep_logs_after_snapshot = {}\n{}\n\
                 [api]\n{api}[tls]\ndir = \"{}\"\n\
                 [sip]\nudp = \"{host_s}:{sip_port}\"\ntcp = \"{host_s}:{sip_port}\"\ntls = \"{host_s}:{sip_tls_port}\"\n{}\n",
                path_str(&data_dir),
                self.options.snapshot_after_logs,
                self.options.keep_logs_after_snapshot,
                self.options.cluster_extra,
                path_str(&tls),
                self.options.sip_extra,
            ),
        )?;
        let log = root.join(format!("node-{id}.log"));
        self.nodes.push(LabNode {
            id,
            host,
            netns: netns.then(|| topology::node_ns(id)),
            config,
            data_dir,
            raft_port,
            api_port,
            sip_port,
            sip_tls_port,
            log,
            child: None,
            binary: self.options.binary.clone(),
        });
        Ok(self.nodes.len() - 1)
    }

    /// Starts (or restarts) node at index `i`.
    pub fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        // `ip netns exec` execs the node in place: the child's pid is the node's.
        let bin = node.binary.clone().unwrap_or_else(pbx_bin);
        let mut cmd = match &node.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.as_str()]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let child = cmd
            .args(["run", "--config", &path_str(&node.config)])
            // PBX_LAB_LOG overrides the nodes' filter for a post-mortem (with PBX_LAB_KEEP).
            .env(
                "RUST_LOG",
                std::env::var("PBX_LAB_LOG").unwrap_or_else(|_| LAB_LOG_FILTER.into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        node.child = Some(child);
        Ok(())
    }

    /// `pbx cluster join` for node at index `i`, through node 0's API.
    pub fn join(&self, i: usize) -> anyhow::Result<()> {
        let via = self
            .alive_api()
            .context("no running node to join through")?;
        let out = Command::new(pbx_bin())
            .args([
                "cluster",
                "join",
                "--config",
                &path_str(&self.nodes[i].config),
                "--via",
                &via,
            ])
            .args(["--ca", &path_str(&self.dir.path().join("ca/ca.pem"))])
            .env("PBX_PASSWORD", &self.admin_password)
            .output()?;
        ensure!(
            out.status.success(),
            "join failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn alive_api(&self) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| n.child.is_some())
            .map(LabNode::api_url)
    }

    /// A lab whose extensions `numbers` exist (with SIP secret `secret`) and are applied on every
    /// node, so any node's SIP side knows them.
    pub async fn with_extensions(
        n: u64,
        options: LabOptions,
        numbers: &[&str],
        secret: &str,
    ) -> anyhow::Result<(Self, LabClient)> {
        let lab = Self::start_with(n, options).await?;
        let client = lab.client();
        for number in numbers {
            let status = client
                .create_extension_with_secret(0, number, secret)
                .await?;
            ensure!(
                status == reqwest::StatusCode::CREATED,
                "creating extension {number}: {status}"
            );
        }
        for i in 0..lab.nodes.len() {
            client.sync(i).await?;
        }
        Ok((lab, client))
    }

    /// SIGKILL: the process gets no chance to flush or say goodbye.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal (`STOP`, `CONT`, …) to node `i`'s process.
    pub fn signal(&self, i: usize, signal: &str) -> anyhow::Result<()> {
        let pid = self.nodes[i].pid().context("node not running")?;
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()?;
        ensure!(status.success(), "kill -{signal} {pid} failed");
        Ok(())
    }

    /// Cuts node `i` off from every other node (both directions) but not from the phones: the
    /// split-brain case. Netns labs only.
    pub fn partition(&self, i: usize) -> anyhow::Result<()> {
        let ns = self.nodes[i]
            .netns
            .as_deref()
            .context("partition needs a netns lab")?;
        let peers: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.id != self.nodes[i].id)
            .map(|n| n.host.to_string())
            .collect();
        let peers = peers.join(", ");
        let rules = format!(
            "table inet pbx_chaos {{\n  chain input {{ type filter hook input priority -50; policy accept;\n    ip saddr {{ {peers} }} drop;\n  }}\n\
             \x20 chain output {{ type filter hook output priority -50; policy accept;\n    ip daddr {{ {peers} }} drop;\n  }}\n}}\n"
        );
        nft_in(ns, &rules)
    }

    /// Removes node `i`'s kernel fence for the VIP (its nftables tables), so that only the process's
    /// own fence stands between a frozen owner and the phones. Netns labs only.
    pub fn remove_kernel_fence(&self, i: usize) -> anyhow::Result<()> {
        let ns = self.nodes[i]
            .netns
            .as_deref()
            .context("the kernel fence lives in a netns lab")?;
        nft_in(ns, "delete table inet pbx_vip\ndelete table arp pbx_vip\n")
    }

    /// Undoes [`Self::partition`].
    pub fn heal(&self, i: usize) -> anyhow::Result<()> {
        let ns = self.nodes[i]
            .netns
            .as_deref()
            .context("heal needs a netns lab")?;
        nft_in(
            ns,
            "add table inet pbx_chaos\ndelete table inet pbx_chaos\n",
        )
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut c) = self.nodes[i].child.take() {
            Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()?;
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Some(status) = c.try_wait()? {
                    ensure!(
                        status.success(),
                        "node {} exited with {status}",
                        self.nodes[i].id
                    );
                    return Ok(());
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    bail!("node {} did not stop within 15 s", self.nodes[i].id);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca/ca.pem")
    }

    /// A cloneable client for the nodes as they are now (call again after adding a node).
    pub fn client(&self) -> LabClient {
        LabClient {
            http: self.http.clone(),
            urls: self.nodes.iter().map(LabNode::api_url).collect(),
            password: self.admin_password.clone(),
            token: None,
            timeout: Duration::from_secs(60),
        }
    }

    pub fn req(&self, i: usize, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client().req(i, method, path)
    }

    pub fn anon(&self, i: usize, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client().anon(i, method, path)
    }

    pub async fn health(&self, i: usize) -> anyhow::Result<Value> {
        self.client().health(i).await
    }

    pub async fn create_extension(
        &self,
        i: usize,
        number: &str,
    ) -> anyhow::Result<reqwest::StatusCode> {
        self.client().create_extension(i, number).await
    }

    pub async fn extension_numbers(&self, i: usize) -> anyhow::Result<Vec<String>> {
        self.client().extension_numbers(i).await
    }

    /// Waits until node `i` answers on its API and knows a leader.
    pub async fn wait_node(&self, i: usize, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if self
                .health(i)
                .await
                .is_ok_and(|h| h["leader"].as_u64().is_some())
            {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "node {} not ready within {within:?}",
                self.nodes[i].id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts node `i` again and waits until it serves.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)?;
        self.wait_node(i, Duration::from_secs(30)).await
    }

    /// Waits until some running node names a leader that is itself running; returns its index.
    pub async fn wait_leader(&mut self, within: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + within;
        loop {
            // A majority of the nodes that name a leader must name the same living one: a node
            // restarted from a term it led comes back naming itself until the real leader reaches
            // it. (Nodes that name none, such as joiners not yet in the cluster, do not count.)
            let mut named: Vec<u64> = Vec::new();
            for i in 0..self.nodes.len() {
                if !self.nodes[i].is_running() {
                    continue;
                }
                if let Ok(h) = self.health(i).await
                    && let Some(leader) = h["leader"].as_u64()
                {
                    named.push(leader);
                }
            }
            let majority = named.len() / 2 + 1;
            let agreed = named
                .iter()
                .copied()
                .find(|l| named.iter().filter(|m| *m == l).count() >= majority);
            if let Some(li) =
                agreed.and_then(|leader| self.nodes.iter().position(|n| n.id == leader))
                && self.nodes[li].is_running()
            {
                return Ok(li);
            }
            ensure!(Instant::now() < deadline, "no leader within {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The tail of node `i`'s log, for failure messages.
    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        // PBX_LAB_KEEP=1 keeps configs, data and node logs for a post-mortem.
        if std::env::var_os("PBX_LAB_KEEP").is_some()
            && let Ok(empty) = tempfile::tempdir()
        {
            let dir = std::mem::replace(&mut self.dir, empty);
            eprintln!("lab kept in {}", dir.keep().display());
        }
    }
}

/// Talks to the lab's APIs; cheap to clone into concurrent tasks.
#[derive(Clone)]
pub struct LabClient {
    http: reqwest::Client,
    urls: Vec<String>,
    password: String,
    /// A session token, once [`LabClient::with_session`] logged in: saves an argon2 check per request.
    token: Option<String>,
    /// Per request (a frozen node never answers: chaos clients give up quickly).
    timeout: Duration,
}

impl LabClient {
    /// An admin request to node `i`'s API.
    pub fn req(&self, i: usize, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.anon(i, method, path);
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder.basic_auth("admin", Some(&self.password)),
        }
    }

    /// The same client, authenticating with a session token from node 0 instead of the password.
    pub async fn with_session(mut self) -> anyhow::Result<Self> {
        let body = serde_json::json!({ "username": "admin", "password": self.password });
        let resp: Value = self
            .anon(0, reqwest::Method::POST, "/api/v1/session")
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        self.token = Some(resp["token"].as_str().context("no token")?.to_owned());
        Ok(self)
    }

    /// The same request without credentials.
    pub fn anon(&self, i: usize, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.urls[i]))
            .timeout(self.timeout)
    }

    /// The same client, giving up on each request after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub async fn health(&self, i: usize) -> anyhow::Result<Value> {
        let r = self
            .anon(i, reqwest::Method::GET, "/api/v1/health")
            .timeout(Duration::from_secs(2))
            .send()
            .await?;
        Ok(r.error_for_status()?.json().await?)
    }

    /// Creates extension `number` through node `i`; returns the HTTP status.
    pub async fn create_extension(
        &self,
        i: usize,
        number: &str,
    ) -> anyhow::Result<reqwest::StatusCode> {
        let body = serde_json::json!({ "number": number, "display_name": format!("Ext {number}") });
        Ok(self
            .req(i, reqwest::Method::POST, "/api/v1/extensions")
            .json(&body)
            .send()
            .await?
            .status())
    }

    /// Creates extension `number` with a chosen SIP secret through node `i`; returns the HTTP status.
    pub async fn create_extension_with_secret(
        &self,
        i: usize,
        number: &str,
        secret: &str,
    ) -> anyhow::Result<reqwest::StatusCode> {
        let body = serde_json::json!({ "number": number, "display_name": format!("Ext {number}"), "secret": secret });
        Ok(self
            .req(i, reqwest::Method::POST, "/api/v1/extensions")
            .json(&body)
            .send()
            .await?
            .status())
    }

    /// GET `path` on node `i` as admin; the JSON answer of a 2xx.
    pub async fn get_json(&self, i: usize, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .req(i, reqwest::Method::GET, path)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// The value of counter or gauge `name` (without labels) in node `i`'s `/metrics`; 0 when absent.
    pub async fn metric(&self, i: usize, name: &str) -> anyhow::Result<f64> {
        let text = self
            .anon(i, reqwest::Method::GET, "/metrics")
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0))
    }

    /// Returns once node `i` has applied every write committed before the call (a linearizable read),
    /// so that its SIP side sees extensions created through another node.
    pub async fn sync(&self, i: usize) -> anyhow::Result<()> {
        let path = "/api/v1/extensions?limit=1";
        self.req(i, reqwest::Method::GET, path)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Node `i`'s view of extension `number`'s registrations (`status`, `registrations`).
    pub async fn registrations(&self, i: usize, number: &str) -> anyhow::Result<Value> {
        let path = format!("/api/v1/extensions/{number}/registrations");
        Ok(self
            .req(i, reqwest::Method::GET, &path)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Every extension number node `i` has (linearizable read), following pages.
    pub async fn extension_numbers(&self, i: usize) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = "/api/v1/extensions?limit=1000".to_owned();
            if let Some(a) = &after {
                path.push_str(&format!("&after={a}"));
            }
            let page: Value = self
                .req(i, reqwest::Method::GET, &path)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            for item in page["items"].as_array().context("items")? {
                out.push(item["number"].as_str().context("number")?.to_owned());
            }
            match page["next"].as_str() {
                Some(a) => after = Some(a.to_owned()),
                None => return Ok(out),
            }
        }
    }
}

/// Applies an nftables script inside a namespace.
fn nft_in(ns: &str, script: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "nft in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Runs `pbx ARGS`, returning stdout; fails with stderr if the command fails.
pub fn run_pbx(args: &[&str]) -> anyhow::Result<String> {
    run_pbx_in(None, args)
}

/// `pbx` with `args`, inside network namespace `ns` when given.
pub fn run_pbx_in(ns: Option<&str>, args: &[&str]) -> anyhow::Result<String> {
    run_bin_in(pbx_bin(), ns, args)
}

/// Build `bin` with `args`, inside network namespace `ns` when given.
fn run_bin_in(bin: PathBuf, ns: Option<&str>, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    let out = cmd
        .args(args)
        .output()
        .with_context(|| format!("running pbx {args:?}"))?;
    ensure!(
        out.status.success(),
        "pbx {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
