//! baresip, a real softphone, as the tests drive it: it plays a sine tone as its microphone, records
//! the audio it decodes from the RTP it receives (`*-dec.wav` in its directory) and logs to `log`
//! there.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::free_sip_port;
use crate::process::KillOnDrop;

/// A running baresip, killed when dropped.
pub struct Baresip {
    process: KillOnDrop,
    dir: tempfile::TempDir,
}

impl Baresip {
    /// A baresip listening for SIP on `listen`, with `config` appended to its configuration and the
    /// one account line `account`, playing a tone of `hz`, recording decoded audio into its
    /// directory, quitting (and hanging up) after `quit_after` seconds; `commands` run at start.
    pub fn start(
        listen: &str,
        config: &str,
        account: &str,
        hz: u32,
        quit_after: u32,
        commands: &[&str],
    ) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(
            dir.path().join("config"),
            format!(
                "module_path /usr/lib/baresip/modules\nsip_listen {listen}\nmodule g711.so\nmodule account.so\n\
                 module ausine.so\nmodule aufile.so\nmodule sndfile.so\nmodule menu.so\n\
                 audio_player aufile,/dev/null\naudio_source ausine,{hz}\nausrc_srate 48000\nausrc_channels 2\nsnd_path {}\nrtp_ports 40000-49999\n{config}",
                dir.path().display()
            ),
        )
        .expect("the configuration is written");
        std::fs::write(dir.path().join("accounts"), format!("{account}\n"))
            .expect("the account is written");
        let mut cmd = Command::new("baresip");
        cmd.args([
            "-f",
            dir.path().to_str().expect("a UTF-8 path"),
            "-t",
            &quit_after.to_string(),
        ]);
        for c in commands {
            cmd.args(["-e", c]);
        }
        let log = std::fs::File::create(dir.path().join("log")).expect("the log is created");
        let child = cmd
            .arg("-s")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log is shared"))
            .stderr(log)
            .spawn()
            .expect("baresip is installed");
        Self {
            process: KillOnDrop(child),
            dir,
        }
    }

    /// As [`Baresip::start`]: extension `user` (SIP secret `secret`) on a free port of 127.0.0.1,
    /// registering at the PBX on 127.0.0.1:`pbx_port`; `extra` ends its account line.
    pub fn extension(
        user: &str,
        secret: &str,
        pbx_port: u16,
        extra: &str,
        hz: u32,
        quit_after: u32,
        commands: &[&str],
    ) -> Self {
        Self::start(
            &format!("127.0.0.1:{}", free_sip_port()),
            "",
            &format!(
                "<sip:{user}@127.0.0.1:{pbx_port};transport=udp>;auth_pass={secret};regint=600{extra}"
            ),
            hz,
            quit_after,
            commands,
        )
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Whether its log holds `needle` within `within`.
    pub async fn logged(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !self.log().contains(needle) {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    }

    /// The decoded-audio recordings it wrote.
    pub fn recordings(&self) -> Vec<PathBuf> {
        recordings(self.dir.path())
    }

    /// Whether it quits by itself within `within` (its `quit_after`).
    pub async fn quits_within(&mut self, within: Duration) -> bool {
        self.process.exited(within).await.is_some()
    }

    /// Kills it now (it writes out its recordings).
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// Sends baresip's TCP control interface (ctrl_tcp, listening on `port`) command `command` with
/// `params`; its answer.
pub async fn control(port: u16, command: &str, params: &str) -> String {
    let body = serde_json::json!({"command": command, "params": params, "token": "t1"}).to_string();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("baresip's ctrl_tcp listens");
    stream
        .write_all(format!("{}:{body},", body.len()).as_bytes())
        .await
        .expect("the command is sent");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&answer).contains("\"response\"") {
                    break;
                }
            }
            Ok(Err(_)) => break,
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// The decoded-audio recordings sndfile wrote in `dir`.
fn recordings(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("the directory is readable")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .collect()
}

/// Samples in a 16-bit PCM WAV recording that are not near silence.
pub fn loud_samples(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes
        .get(44..)
        .unwrap_or(&[])
        .chunks_exact(2)
        .filter(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs() > 1000)
        .count()
}
