//! A real OpenSSH server on loopback, for the SFTP upload of backups: its own host key, one
//! authorised client key, SFTP only into a directory of its own, stopped when dropped.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};

use crate::process::KillOnDrop;

pub struct Sshd {
    _child: KillOnDrop,
    pub port: u16,
    /// The user the client logs in as (the test's own).
    pub user: String,
    /// `ssh-ed25519 AAAA…`: what the client pins.
    pub host_key: String,
    /// The client's private key (OpenSSH format).
    pub client_key: String,
    /// Where uploads go.
    pub upload_dir: PathBuf,
    _dir: tempfile::TempDir,
}

fn keygen(path: &std::path::Path) -> anyhow::Result<()> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .context("running ssh-keygen")?;
    ensure!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

impl Sshd {
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        keygen(&d.join("host_key"))?;
        keygen(&d.join("client_key"))?;
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys"))?;
        let upload_dir = d.join("uploads");
        std::fs::create_dir_all(&upload_dir)?;
        // sshd's privilege separation directory (the package's service would create it).
        std::fs::create_dir_all("/run/sshd")?;
        let port = crate::free_port(false);
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n\
                 AuthorizedKeysFile {auth}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
                 Subsystem sftp internal-sftp\n",
                host = d.join("host_key").display(),
                pid = d.join("sshd.pid").display(),
                auth = d.join("authorized_keys").display(),
            ),
        )?;
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log"))?)
            .spawn()
            .context("starting /usr/sbin/sshd (package openssh-server)")?;
        let child = KillOnDrop(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(
                Instant::now() < deadline,
                "sshd did not listen: {}",
                std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let host_key = std::fs::read_to_string(d.join("host_key.pub"))?;
        let host_key = host_key
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let user = String::from_utf8(Command::new("id").arg("-un").output()?.stdout)?
            .trim()
            .to_owned();
        Ok(Self {
            _child: child,
            port,
            user,
            host_key,
            client_key: std::fs::read_to_string(d.join("client_key"))?,
            upload_dir,
            _dir: dir,
        })
    }
}
