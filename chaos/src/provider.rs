//! A SIP trunk provider for tests and chaos scenarios: Kamailio (`chaos/kamailio/provider.cfg`) as
//! the provider's registrar (it challenges the PBX's REGISTER), its proxy (it challenges the PBX's
//! INVITEs and relays them to the carrier's phone), and the way in for the carrier's calls (to the
//! PBX's registered contact, the DID kept in To). Stopped when dropped.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

const TEMPLATE: &str = include_str!("../kamailio/provider.cfg");

/// What the provider is told.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Where Kamailio listens (UDP).
    pub listen: SocketAddr,
    /// The provider's domain and digest realm.
    pub domain: String,
    /// The account the PBX registers and calls with.
    pub user: String,
    pub password: String,
    /// Calls from this address are the carrier's, to the PBX; all others are the PBX's, out.
    pub carrier_ip: IpAddr,
    /// The carrier's phone that answers the PBX's outbound calls.
    pub carrier_uas: SocketAddr,
    /// Also listen on TCP at the same address.
    pub tcp: bool,
    /// Also listen on TLS at the next port up, with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A running Kamailio.
pub struct Provider {
    child: Child,
    log: PathBuf,
}

impl Provider {
    /// Writes the configuration into `dir`, starts Kamailio and waits until it listens.
    pub fn start(dir: &Path, cfg: &ProviderConfig) -> anyhow::Result<Self> {
        let mut listens = format!("listen=udp:{}", cfg.listen);
        if cfg.tcp {
            listens.push_str(&format!("\nlisten=tcp:{}", cfg.listen));
        }
        let mut tls = String::new();
        if let Some((cert, key)) = &cfg.tls {
            let tls_cfg = dir.join("tls.cfg");
            std::fs::write(
                &tls_cfg,
                format!(
                    "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n\
                     require_certificate = no\ncertificate = {}\nprivate_key = {}\n",
                    cert.display(),
                    key.display()
                ),
            )?;
            let tls_addr = SocketAddr::new(cfg.listen.ip(), cfg.listen.port() + 1);
            listens.push_str(&format!("\nlisten=tls:{tls_addr}\nenable_tls=yes"));
            tls = format!(
                "loadmodule \"tls.so\"\nmodparam(\"tls\", \"config\", \"{}\")",
                tls_cfg.display()
            );
        }
        let text = TEMPLATE
            .replace("@LISTENS@", &listens)
            .replace("@TLS@", &tls)
            .replace("@DOMAIN@", &cfg.domain)
            .replace("@PASSWORD@", &cfg.password)
            .replace("@USER@", &cfg.user)
            .replace("@CARRIER_IP@", &cfg.carrier_ip.to_string())
            .replace("@CARRIER_UAS@", &cfg.carrier_uas.to_string());
        let path = dir.join("provider.cfg");
        std::fs::write(&path, text)?;
        let log = dir.join("kamailio.log");
        // Its own process group: Kamailio forks workers, which outlive a kill of the main process.
        let child = Command::new("kamailio")
            .process_group(0)
            .args(["-DD", "-E", "-f"])
            .arg(&path)
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .arg("-Y")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting kamailio (Debian package kamailio)")?;
        let mut provider = Self { child, log };
        // Listening once its address can no longer be bound by anyone else.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::UdpSocket::bind(cfg.listen).is_ok() {
            if let Ok(Some(status)) = provider.child.try_wait() {
                anyhow::bail!("kamailio exited ({status}):\n{}", provider.log());
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "kamailio did not listen on {} within 10 s:\n{}",
                cfg.listen,
                provider.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(provider)
    }

    /// What Kamailio logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        // The whole group: the main process and every worker it forked.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
