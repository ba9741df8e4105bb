//! A real SMTP server (aiosmtpd) for the tests that mail, and the mail it received.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::KillOnDrop;

/// A plain SMTP server (aiosmtpd) on 127.0.0.1:`port` that keeps every message in the maildir
/// `maildir`.
pub fn mailbox_smtp(port: u16, maildir: &Path) -> KillOnDrop {
    KillOnDrop(
        Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd is installed (Debian python3-aiosmtpd)"),
    )
}

/// The first message in `maildir` that contains `needle`, waiting up to `within` for one.
pub async fn wait_mail(maildir: &Path, needle: &str, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        let found = std::fs::read_dir(maildir.join("new")).ok().and_then(|new| {
            new.flatten()
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .find(|m| m.contains(needle))
        });
        if found.is_some() || Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
