//! Copying an archive to a remote directory over SFTP, with the system's OpenSSH `sftp` client
//! (Debian's `openssh-client`): key authentication only, the server's host key pinned by the
//! admin (no trust on first use), batch mode (never a prompt), bounded in time.
//!
//! The file is uploaded under a temporary name and renamed once complete, so the remote directory
//! never holds a partial archive under an archive's name. Archives deleted by retention are
//! deleted remotely in the same session.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use storage::backup::SftpTarget;
use tokio::io::AsyncWriteExt as _;

/// Longest one upload session may take (connect, transfer, rename, deletions).
const SESSION_LIMIT: Duration = Duration::from_secs(30 * 60);
/// What the API accepts, checked before anything reaches a command line or batch file.
pub(crate) const MAX_KEY: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SftpError {
    #[error("{0}")]
    Invalid(String),
    #[error("running sftp: {0}")]
    Spawn(std::io::Error),
    #[error("sftp did not finish within {} minutes", SESSION_LIMIT.as_secs() / 60)]
    Timeout,
    #[error("sftp failed: {0}")]
    Failed(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Why `target` cannot be used, naming the field; `None` when it can.
pub(crate) fn problem(target: &SftpTarget) -> Option<(&'static str, &'static str)> {
    let host_ok = !target.host.is_empty()
        && target.host.len() <= 253
        && target
            .host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
        && !target.host.starts_with('-');
    if !host_ok {
        return Some(("host", "must be a host name or IP address"));
    }
    if target.port == 0 {
        return Some(("port", "must be 1 to 65535"));
    }
    let user_ok = !target.user.is_empty()
        && target.user.len() <= 32
        && !target.user.starts_with('-')
        && target
            .user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !user_ok {
        return Some(("user", "letters, digits, '.', '_' and '-', at most 32"));
    }
    let path_ok = target.path.starts_with('/')
        && target.path.len() <= 1024
        && target
            .path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && !target.path.split('/').any(|part| part == "..");
    if !path_ok {
        return Some((
            "path",
            "an absolute directory of letters, digits, '.', '_', '-' and '/'",
        ));
    }
    let key = target.private_key.trim();
    if key.len() > MAX_KEY
        || !key.starts_with("-----BEGIN ")
        || !key.contains("PRIVATE KEY-----")
        || key.contains("ENCRYPTED")
    {
        return Some((
            "private_key",
            "an unencrypted private key in OpenSSH or PEM format",
        ));
    }
    let mut parts = target.host_key.split_whitespace();
    let kind_ok = parts.next().is_some_and(|k| {
        k.starts_with("ssh-") || k.starts_with("ecdsa-sha2-") || k.starts_with("sk-")
    });
    let blob_ok = parts.next().is_some_and(|b| {
        !b.is_empty()
            && b.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
    });
    if !kind_ok
        || !blob_ok
        || target.host_key.len() > MAX_KEY
        || target.host_key.contains(['\n', '\r'])
    {
        return Some((
            "host_key",
            "the server's public host key, e.g. `ssh-ed25519 AAAA…` (from ssh-keyscan or /etc/ssh/ssh_host_ed25519_key.pub)",
        ));
    }
    None
}

/// The URL an uploaded archive is reported under.
pub(crate) fn url(target: &SftpTarget, name: &str) -> String {
    format!(
        "sftp://{}@{}:{}{}/{name}",
        target.user,
        target.host,
        target.port,
        target.path.trim_end_matches('/')
    )
}

/// Uploads `local` as `name` into the target's directory and deletes `delete` there (names of
/// archives retention removed). `work` is a private directory for the key and known-hosts files,
/// removed before returning.
pub(crate) async fn upload(
    target: &SftpTarget,
    work: &Path,
    local: &Path,
    name: &str,
    delete: &[String],
) -> Result<String, SftpError> {
    if let Some((field, reason)) = problem(target) {
        return Err(SftpError::Invalid(format!("{field}: {reason}")));
    }
    let local_str = local
        .to_str()
        .filter(|s| !s.contains(['"', '\n', '\r']))
        .ok_or_else(|| SftpError::Invalid("the local archive path cannot be quoted".into()))?;
    let safe_name = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    if !safe_name(name) || !delete.iter().all(|n| safe_name(n)) {
        return Err(SftpError::Invalid("archive names must be plain".into()));
    }

    let _cleanup = RemoveDir(work.to_owned());
    std::fs::create_dir_all(work)?;
    let key = work.join("key");
    write_private(&key, format!("{}\n", target.private_key.trim()).as_bytes())?;
    let known_hosts = work.join("known_hosts");
    let host_entry = if target.port == 22 {
        target.host.clone()
    } else {
        format!("[{}]:{}", target.host, target.port)
    };
    write_private(
        &known_hosts,
        format!("{host_entry} {}\n", target.host_key.trim()).as_bytes(),
    )?;

    let dir = target.path.trim_end_matches('/');
    let mut batch = format!(
        "put \"{local_str}\" \"{dir}/{name}.part\"\n-rm \"{dir}/{name}\"\nrename \"{dir}/{name}.part\" \"{dir}/{name}\"\n"
    );
    for old in delete {
        batch.push_str(&format!("-rm \"{dir}/{old}\"\n"));
    }

    let mut child = tokio::process::Command::new("sftp")
        .arg("-b")
        .arg("-")
        .arg("-i")
        .arg(&key)
        .arg("-P")
        .arg(target.port.to_string())
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "PasswordAuthentication=no",
            "-o",
            "ConnectTimeout=15",
            "-o",
            "ServerAliveInterval=15",
        ])
        .arg(format!("{}@{}", target.user, target.host))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(SftpError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(batch.as_bytes()).await?;
    }
    let output = tokio::time::timeout(SESSION_LIMIT, child.wait_with_output())
        .await
        .map_err(|_| SftpError::Timeout)??;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stderr);
        let detail: String = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("sftp>"))
            .collect::<Vec<_>>()
            .join("; ")
            .chars()
            .take(400)
            .collect();
        return Err(SftpError::Failed(format!("{} ({detail})", output.status)));
    }
    Ok(url(target, name))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
