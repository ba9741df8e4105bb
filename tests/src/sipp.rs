//! sipp (Debian `sip-tester`) as the tests drive it: the scenarios in `tests/sipp`, a command line put
//! together from the parts a test needs (phones with credentials, a provider calling a DID, a UAS),
//! run to completion or left running in the background, and what it logged.
//!
//! Every run traces its errors, its SIP messages and its scenario's `<log>` actions to files in the
//! directory it runs in, and appends its standard error to `sipp_stderr.log` there.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::process::KillOnDrop;
use crate::{Lab, free_port, free_sip_port};

/// The path of scenario file `name` in `tests/sipp`.
pub fn scenario(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sipp")
        .join(name)
        .to_str()
        .expect("a UTF-8 path")
        .to_owned()
}

/// Writes injection file `name` in `dir` (sipp's `-inf`) with `user`'s digest credentials as
/// `field0` and `field1`; its path.
pub fn credentials(dir: &Path, name: &str, user: &str, password: &str) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("SEQUENTIAL\n{user};[authentication username={user} password={password}]\n"),
    )
    .expect("the injection file is written");
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// A fresh directory `name` under `parent`, so that a sipp run's logs are its own.
pub fn subdir(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).expect("the directory is created");
    dir
}

/// Every `*.log` file in `dir` (sipp's traces, and whatever else logs there), each under a
/// `== name` line.
pub fn logs(dir: &Path) -> String {
    collect(dir, ".log", Some(usize::MAX))
}

/// As [`logs`], only the last `chars` characters of each file.
pub fn log_tails(dir: &Path, chars: usize) -> String {
    collect(dir, ".log", Some(chars))
}

/// The SIP messages sipp exchanged in `dir` (its `-trace_msg` files).
pub fn messages(dir: &Path) -> String {
    collect(dir, "_messages.log", None)
}

/// The files in `dir` whose names end in `suffix`, one after the other: with `tail`, each under
/// a `== name` line and cut to its last `tail` characters.
fn collect(dir: &Path, suffix: &str, tail: Option<usize>) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir)
        .expect("the directory is readable")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(suffix) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        match tail {
            Some(chars) => {
                out.push_str(&format!("== {name}\n"));
                let skip = text.chars().count().saturating_sub(chars);
                out.extend(text.chars().skip(skip));
            }
            None => out.push_str(&text),
        }
    }
    out
}

/// Waits until UDP `addr` is bound (a bind of our own fails), i.e. sipp listens there.
pub async fn wait_bound(addr: SocketAddr) {
    for _ in 0..100 {
        if UdpSocket::bind(addr).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sipp never bound {addr}");
}

/// A sipp command line.
pub struct Sipp {
    /// `host:port` sipp sends to, if any (a UAS only answers).
    target: Option<String>,
    args: Vec<String>,
    /// How long a run to completion may take.
    timeout: Duration,
}

impl Sipp {
    /// sipp running scenario file `name` from `tests/sipp`.
    pub fn new(name: &str) -> Self {
        Self::with_args(["-sf", &scenario(name)])
    }

    /// sipp running its built-in scenario `name` (`uas`, `uac`).
    pub fn builtin(name: &str) -> Self {
        Self::with_args(["-sn", name])
    }

    fn with_args<const N: usize>(args: [&str; N]) -> Self {
        Self {
            target: None,
            args: args.map(str::to_owned).to_vec(),
            timeout: Duration::from_secs(30),
        }
    }

    /// A phone on 127.0.0.1, with the credentials in injection file `csv`, dialling `number` at
    /// `target` with scenario `name`, once.
    pub fn phone_call(target: &str, csv: &str, number: &str, name: &str) -> Self {
        Self::new(name)
            .to(target)
            .args(["-s", number])
            // sipp's digest uri is `sip:host:port` unless told the Request-URI.
            .args(["-auth_uri", &format!("{number}@{target}")])
            .args(["-inf", csv, "-m", "1"])
            .on("127.0.0.1")
    }

    /// A provider on `ip`, without credentials, calling DID `did` at `target` with scenario `name`,
    /// once.
    pub fn provider_call(target: &str, ip: &str, did: &str, name: &str) -> Self {
        Self::new(name)
            .to(target)
            .args(["-s", did, "-m", "1"])
            .on(ip)
    }

    /// A phone on 127.0.0.1 that registers at `target` with the credentials in `csv`
    /// (`uas-register.xml`), then answers one call (`uas-answer.xml`) and holds it `hold_ms`.
    pub fn answering_phone(target: &str, csv: &str, hold_ms: u32) -> Self {
        Self::new("uas-register.xml")
            .to(target)
            .args(["-oocsf", &scenario("uas-answer.xml")])
            .args(["-inf", csv, "-m", "1", "-d", &hold_ms.to_string()])
            .on("127.0.0.1")
    }

    /// Sends to `target` (`host:port`).
    pub fn to(mut self, target: &str) -> Self {
        self.target = Some(target.to_owned());
        self
    }

    /// SIP on a free port of `ip`, media on another.
    pub fn on(self, ip: &str) -> Self {
        self.listen(ip, free_sip_port())
    }

    /// SIP on `ip`:`port`, media on a free port.
    pub fn listen(self, ip: &str, port: u16) -> Self {
        self.args(["-i", ip, "-p", &port.to_string()])
            .args(["-mp", &free_port(true).to_string()])
    }

    /// More options.
    pub fn args<const N: usize>(mut self, args: [&str; N]) -> Self {
        self.args.extend(args.map(str::to_owned));
        self
    }

    /// A run to completion fails after `timeout` (30 s unless told).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn command(&self, dir: &Path) -> Command {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("sipp_stderr.log"))
            .expect("sipp's stderr file opens");
        let mut cmd = Command::new("sipp");
        cmd.args(&self.target)
            .args(&self.args)
            .args(["-nostdin", "-trace_err", "-trace_msg", "-trace_logs"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        cmd
    }

    /// Runs sipp to completion in `dir`; its exit status (success: the scenario went as written).
    pub async fn run(self, dir: &Path) -> ExitStatus {
        let mut cmd = self.command(dir);
        cmd.args(["-timeout", &format!("{}s", self.timeout.as_secs())])
            .arg("-timeout_error");
        tokio::task::spawn_blocking(move || {
            cmd.status().expect("sipp is installed (Debian sip-tester)")
        })
        .await
        .expect("the sipp task ends")
    }

    /// Runs sipp to completion in `dir` and asserts that it succeeded, with `what` went wrong
    /// otherwise (and sipp's logs and node 0's); the SIP messages it exchanged.
    pub async fn run_ok(self, dir: &Path, lab: &Lab, what: &str) -> String {
        let status = self.run(dir).await;
        assert!(
            status.success(),
            "{what}\n{}\n{}",
            logs(dir),
            lab.log_tail(0)
        );
        messages(dir)
    }

    /// Starts sipp in `dir` and leaves it running; killed when dropped.
    pub fn spawn(self, dir: &Path) -> KillOnDrop {
        KillOnDrop(
            self.command(dir)
                .spawn()
                .expect("sipp is installed (Debian sip-tester)"),
        )
    }
}

/// One SIP message of a sipp trace (`-trace_msg`): when sipp traced it, whether it received it, and
/// its text (lines without `\r`).
#[derive(Debug)]
pub struct TraceMsg {
    /// sipp's clock as it prints it (`hh:mm:ss.micros`).
    pub at: String,
    pub received: bool,
    pub text: String,
}

impl TraceMsg {
    /// When sipp traced it, in seconds of its day.
    pub fn secs(&self) -> f64 {
        let mut parts = self.at.split(':').map(|p| p.parse::<f64>().unwrap_or(0.0));
        let (h, m, s) = (parts.next(), parts.next(), parts.next());
        h.unwrap_or(0.0) * 3600.0 + m.unwrap_or(0.0) * 60.0 + s.unwrap_or(0.0)
    }

    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }

    /// The value of header `name` (the first one), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text
            .lines()
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
    }

    /// The CSeq number and method.
    pub fn cseq(&self) -> (u32, &str) {
        let cseq = self.header("CSeq").unwrap_or_default();
        let (n, method) = cseq.split_once(' ').unwrap_or((cseq, ""));
        (n.parse().unwrap_or(0), method.trim())
    }

    pub fn body(&self) -> &str {
        self.text.split_once("\n\n").map_or("", |(_, b)| b.trim())
    }
}

/// The messages of the sipp trace in `dir`, in order.
pub fn trace(dir: &Path) -> Vec<TraceMsg> {
    let mut out: Vec<TraceMsg> = Vec::new();
    let mut at = "";
    let text = messages(dir);
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("-----") {
            at = rest.trim_start_matches('-').trim();
            continue;
        }
        if line.starts_with("UDP message") {
            out.push(TraceMsg {
                at: at.split_whitespace().last().unwrap_or("").to_owned(),
                received: line.contains("received"),
                text: String::new(),
            });
        } else if let Some(m) = out.last_mut() {
            if m.text.is_empty() && line.trim().is_empty() {
                continue;
            }
            m.text.push_str(line);
            m.text.push('\n');
        }
    }
    out
}
