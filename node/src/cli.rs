//! The `pbx` command line.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::client::AdminClient;
use crate::config::NodeConfig;

#[derive(Debug, Parser)]
#[command(name = "pbx", version, about = "High-availability clustered PBX")]
pub struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run a node until SIGINT/SIGTERM.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Create, join, leave or inspect a cluster.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Create the cluster CA and node certificates.
    #[command(subcommand)]
    Cert(CertCmd),
    /// Make or list backups of a running cluster (restore one with `cluster restore`).
    #[command(subcommand)]
    Backup(BackupCmd),
    /// Call any admin API endpoint and print its JSON answer, e.g.
    /// `pbx api GET /api/v1/trunks` or `pbx api POST /api/v1/routes/outbound --data @route.json`.
    Api {
        /// GET, POST, PUT, PATCH or DELETE.
        method: String,
        /// The path, from `/api/v1/…`.
        path: String,
        /// A JSON body, or `@file` to read it from a file.
        #[arg(long)]
        data: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Every trunk and its state (registered, failed with the provider's last answer, unreachable,
    /// unresolved), as an operator checks them during an outage.
    Trunks {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Run a three-node cluster on this machine (loopback), creating it on first use.
    Demo {
        /// Where certificates, configs, data and logs live.
        #[arg(long, default_value = "data/demo")]
        dir: PathBuf,
    },
}

/// Options for commands that call a running node's API.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// API of any running member, e.g. https://127.0.0.1:18001
    #[arg(long)]
    pub via: String,
    /// Cluster CA certificate (PEM) to trust.
    #[arg(long)]
    pub ca: PathBuf,
    #[arg(long, default_value = "admin")]
    pub user: String,
    /// Admin password; read from the environment so it stays out of the process list.
    #[arg(long, env = "PBX_PASSWORD", hide_env_values = true)]
    pub password: String,
}

impl ApiArgs {
    fn client(&self) -> anyhow::Result<AdminClient> {
        AdminClient::new(&self.via, &self.ca, &self.user, &self.password)
    }
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Make this stopped node the first member of a new cluster; prints the admin credentials once.
    Init {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Ask the cluster to add this running node (learner, then voter).
    Join {
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Remove a node from the cluster.
    Leave {
        #[arg(long)]
        node_id: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show members, leader, term, applied index and replication lag.
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Make this stopped, fresh node the first member of a cluster restored from a backup archive
    /// (then start it and join the others with `cluster join`). The archive is checked whole
    /// first: a wrong passphrase, a damaged file or one from a newer pbx writes nothing.
    Restore {
        #[arg(long, short)]
        config: PathBuf,
        /// The archive (`.pbxbak`).
        #[arg(long)]
        from: PathBuf,
        /// The backup passphrase; read from the environment so it stays out of the process list.
        #[arg(long, env = "PBX_BACKUP_PASSPHRASE", hide_env_values = true)]
        passphrase: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Make a backup now, on the node `--via` names; prints its record once it is written.
    Create {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List the cluster's backups.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCmd {
    /// Create a cluster CA (ca.pem, ca-key.pem) in DIR.
    Ca {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "pbx")]
        name: String,
    },
    /// Issue a node certificate (node.pem, node-key.pem, and a copy of ca.pem) into OUT.
    Node {
        /// Directory holding ca.pem and ca-key.pem.
        #[arg(long)]
        ca_dir: PathBuf,
        #[arg(long)]
        id: u64,
        #[arg(long)]
        out: PathBuf,
        /// Extra names or IP addresses the node's API answers on (repeatable).
        #[arg(long = "san")]
        sans: Vec<String>,
    },
}

impl Cmd {
    pub async fn execute(self) -> anyhow::Result<()> {
        match self {
            Self::Run { config } => crate::run::run(NodeConfig::load(&config)?).await,
            Self::Cluster(c) => c.execute().await,
            Self::Cert(c) => c.execute(),
            Self::Backup(BackupCmd::Create { api }) => {
                let record: serde_json::Value = api
                    .client()?
                    .post("/api/v1/backups", &serde_json::json!({}))
                    .await?;
                println!("{}", serde_json::to_string_pretty(&record)?);
                Ok(())
            }
            Self::Backup(BackupCmd::List { api }) => {
                let list: serde_json::Value = api.client()?.get("/api/v1/backups").await?;
                println!("{}", serde_json::to_string_pretty(&list)?);
                Ok(())
            }
            Self::Demo { dir } => crate::demo::run(&dir).await,
            Self::Api {
                method,
                path,
                data,
                api,
            } => {
                let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                    .context("METHOD: GET, POST, PUT, PATCH or DELETE")?;
                anyhow::ensure!(
                    path.starts_with('/'),
                    "PATH starts with /, e.g. /api/v1/trunks"
                );
                let body = match data {
                    None => None,
                    Some(d) => {
                        let text = match d.strip_prefix('@') {
                            Some(file) => std::fs::read_to_string(file)
                                .with_context(|| format!("reading {file}"))?,
                            None => d,
                        };
                        Some(serde_json::from_str(&text).context("--data is not JSON")?)
                    }
                };
                let answer = api.client()?.call(method, &path, body.as_ref()).await?;
                if !answer.is_null() {
                    println!("{}", serde_json::to_string_pretty(&answer)?);
                }
                Ok(())
            }
            Self::Trunks { api } => print_trunks(&api.client()?).await,
        }
    }
}

/// One line per trunk: name, kind, host, state, the provider's last answer, since when, where.
async fn print_trunks(client: &AdminClient) -> anyhow::Result<()> {
    let list: serde_json::Value = client.get("/api/v1/trunks").await?;
    let trunks = list["trunks"].as_array().cloned().unwrap_or_default();
    println!(
        "{:<20} {:<9} {:<28} {:<12} {:<6} {:<8} detail",
        "trunk", "kind", "host", "state", "last", "node"
    );
    for t in trunks {
        let name = t["name"].as_str().unwrap_or_default();
        let s: serde_json::Value = client.get(&format!("/api/v1/trunks/{name}/status")).await?;
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "-".to_owned(),
            other => other.to_string(),
        };
        println!(
            "{:<20} {:<9} {:<28} {:<12} {:<6} {:<8} {}",
            name,
            text(&t["kind"]),
            text(&t["host"]),
            text(&s["state"]),
            text(&s["last_status"]),
            text(&s["node_id"]),
            text(&s["detail"]),
        );
    }
    Ok(())
}

impl ClusterCmd {
    async fn execute(self) -> anyhow::Result<()> {
        match self {
            Self::Init { config } => {
                let cfg = NodeConfig::load(&config)?;
                let b = crate::run::init_cluster(&cfg).await?;
                println!(
                    "cluster {} initialised with node {}",
                    b.cluster_id, cfg.node_id
                );
                println!("admin user: {}", b.username);
                println!(
                    "admin password: {}   (shown once; store it now)",
                    b.password
                );
                Ok(())
            }
            Self::Join { config, api } => {
                let cfg = NodeConfig::load(&config)?;
                join(&api.client()?, &cfg).await?;
                println!("node {} joined", cfg.node_id);
                Ok(())
            }
            Self::Leave { node_id, api } => {
                api.client()?
                    .delete(&format!("/api/v1/cluster/members/{node_id}"))
                    .await?;
                println!("node {node_id} removed");
                Ok(())
            }
            Self::Status { api } => {
                let status: serde_json::Value = api.client()?.get("/api/v1/cluster/status").await?;
                println!("{}", serde_json::to_string_pretty(&status)?);
                Ok(())
            }
            Self::Restore {
                config,
                from,
                passphrase,
            } => {
                let cfg = NodeConfig::load(&config)?;
                let r = crate::backup::restore::restore(&cfg, &from, &passphrase).await?;
                println!(
                    "cluster {} restored onto node {} from {} (written by pbx {} on node {}, state as of log index {})",
                    r.cluster_id,
                    cfg.node_id,
                    from.display(),
                    r.header.pbx_version,
                    r.header.node_id,
                    r.header.log_index
                );
                println!(
                    "{} rows restored ({} extensions), {} audio files; left out: {} rows of the old cluster's running state, {} audio entries without their file",
                    r.rows, r.extensions, r.audio_files, r.skipped_rows, r.dropped_audio
                );
                println!(
                    "start it with `pbx run`, then add the other new nodes with `pbx cluster join`; accounts and passwords are the backup's"
                );
                Ok(())
            }
        }
    }
}

pub(crate) async fn join(client: &AdminClient, cfg: &NodeConfig) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "node_id": cfg.node_id,
        "raft_addr": cfg.raft_advertise(),
        "api_addr": cfg.api_advertise(),
        "name": cfg.display_name(),
    });
    let _: serde_json::Value = client.post("/api/v1/cluster/members", &body).await?;
    Ok(())
}

impl CertCmd {
    fn execute(self) -> anyhow::Result<()> {
        match self {
            Self::Ca { dir, name } => {
                make_ca(&dir, &name)?;
                println!("cluster CA written to {}", dir.display());
                Ok(())
            }
            Self::Node {
                ca_dir,
                id,
                out,
                sans,
            } => {
                make_node_cert(&ca_dir, id, &out, &sans)?;
                println!("certificate for node {id} written to {}", out.display());
                Ok(())
            }
        }
    }
}

pub(crate) fn make_ca(dir: &Path, name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !dir.join("ca-key.pem").exists(),
        "{} already holds a CA",
        dir.display()
    );
    let ca = cluster::generate_ca(name).context("generating the CA")?;
    cluster::tls::write_ca(dir, &ca).with_context(|| format!("writing the CA to {}", dir.display()))
}

pub(crate) fn make_node_cert(
    ca_dir: &Path,
    id: u64,
    out: &Path,
    sans: &[String],
) -> anyhow::Result<()> {
    let ca = cluster::tls::read_ca(ca_dir)
        .with_context(|| format!("reading the CA in {}", ca_dir.display()))?;
    let cert = cluster::issue_node_cert(&ca, id, sans).context("issuing the node certificate")?;
    cluster::NodeTlsFiles::new(&ca.cert_pem, &cert)
        .write(out)
        .with_context(|| format!("writing the certificate to {}", out.display()))
}
