//! The media-relay anchor, measured in the same run and with the same load generator as
//! [`crate::call_load`]: rtpengine in userspace (`--table=-1`), pinned to one CPU, relays G.711 calls
//! set up over its ng control protocol, and the phones send exactly what they send through the PBX.
//!
//! rtpengine is not installed here: on Debian it is the `rtpengine-daemon` package. It runs as a child
//! on loopback only (RTP on 127.0.0.1, ng on 127.0.0.1), under `timeout`, and is killed when the run
//! ends or fails.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use crate::call_load::{CallLoadReport, MediaPhase, cpu_seconds, run_media};
use crate::phone::{Phone, sdp_media};

use bencode::Value;

/// rtpengine's RTP ports: below the kernel's ephemeral range (32768 and up), where the phones' own
/// sockets are bound, and below the lab's control ports ([`crate::lab::free_port`], 27000 and up).
const RTP_PORT_MIN: u16 = 12_000;
const RTP_PORT_MAX: u16 = 26_999;
/// Ports rtpengine takes per call: RTP and RTCP for each of the two legs.
const PORTS_PER_CALL: usize = 4;
/// How long one ng request waits for its reply before it is sent again (with the same cookie, which
/// rtpengine answers from its cache), and how many times it is sent.
const NG_TIMEOUT: Duration = Duration::from_secs(2);
const NG_TRIES: usize = 3;
/// How long rtpengine may take to answer its first ping.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts rtpengine, sets up `calls` calls through it (an `offer` with the caller's SDP, an `answer`
/// with the callee's), streams G.711 both ways for `seconds` as `call-load` does, and reports in the
/// same shape. With `cpu`, rtpengine (all its threads) is pinned to that CPU; run the generator
/// itself on another, e.g. under `taskset -c 1`.
///
/// `cpu_us_per_packet` is rtpengine's CPU time (user + system, `/proc/<pid>/stat`) over the media
/// phase divided by the packets rtpengine itself counted as relayed in userspace over the phase (the
/// ng `statistics` command's `relayedpackets_user`), as `call-load` divides by the PBX's own
/// `pbx_media_packets_relayed_total`. `calls_up` is rtpengine's count of its sessions after the
/// media phase (`sessionsown`).
pub async fn rtpengine_load(
    calls: usize,
    seconds: u64,
    cpu: Option<u32>,
) -> anyhow::Result<CallLoadReport> {
    let ports = usize::from(RTP_PORT_MAX - RTP_PORT_MIN) + 1;
    ensure!(
        calls > 0 && calls * PORTS_PER_CALL <= ports,
        "{calls} calls: between 1 and {} fit in rtpengine's {ports} ports",
        ports / PORTS_PER_CALL
    );
    let binary = find_rtpengine()?;
    // Bounded even if this process dies without dropping the guard: rtpengine is started under
    // `timeout`, with room for the setup (about a millisecond per call), the media and a margin.
    let lifetime = Duration::from_secs(120 + 2 * seconds + calls as u64 / 10);
    let mut engine = Rtpengine::start(&binary, cpu, lifetime).await?;
    let mut ng = NgClient::connect(engine.ng).await?;

    // The phones never send SIP here: their server address is a placeholder on loopback.
    let no_sip = SocketAddr::from((Ipv4Addr::LOCALHOST, 9));
    let run = format!("{:08x}", rand::random::<u32>());
    let setup_started = Instant::now();
    // Caller and callee, each with the rtpengine address it sends its RTP to.
    let mut pairs: Vec<(Phone, SocketAddr, Phone, SocketAddr)> = Vec::with_capacity(calls);
    for i in 0..calls {
        let caller = Phone::new(no_sip, &format!("a{i}"), "").await?;
        let callee = Phone::new(no_sip, &format!("b{i}"), "").await?;
        let call_id = format!("rtpengine-load-{run}-{i}");
        let (from_tag, to_tag) = (format!("a{i}-{run}"), format!("b{i}-{run}"));
        let offer = ng
            .request(&bencode::dict([
                ("command", "offer".into()),
                ("call-id", call_id.as_str().into()),
                ("from-tag", from_tag.as_str().into()),
                ("sdp", caller.sdp("sendrecv").as_str().into()),
            ]))
            .await
            .with_context(|| format!("call {i}: offer\n{}", engine.log_tail()))?;
        // The offer, rewritten for the callee, names the port the callee sends to.
        let callee_to = rewritten_media(&offer).with_context(|| format!("call {i}: offer"))?;
        let answer = ng
            .request(&bencode::dict([
                ("command", "answer".into()),
                ("call-id", call_id.as_str().into()),
                ("from-tag", from_tag.as_str().into()),
                ("to-tag", to_tag.as_str().into()),
                ("sdp", callee.sdp("sendrecv").as_str().into()),
            ]))
            .await
            .with_context(|| format!("call {i}: answer\n{}", engine.log_tail()))?;
        let caller_to = rewritten_media(&answer).with_context(|| format!("call {i}: answer"))?;
        pairs.push((caller, caller_to, callee, callee_to));
    }
    let setup_seconds = setup_started.elapsed().as_secs_f64();

    // Media: exactly call-load's phase, with rtpengine in the PBX's place.
    let cpu_before = cpu_seconds(engine.pid);
    let relayed_before = ng.statistics().await?.relayed_user;
    let streams: Vec<(Arc<tokio::net::UdpSocket>, SocketAddr)> = pairs
        .iter()
        .flat_map(|(caller, caller_to, callee, callee_to)| {
            [
                (caller.rtp_socket(), *caller_to),
                (callee.rtp_socket(), *callee_to),
            ]
        })
        .collect();
    let (packets_sent, elapsed) = run_media(&streams, seconds).await?;
    let cpu_after = cpu_seconds(engine.pid);
    let after = ng.statistics().await?;
    ensure!(
        engine.is_running(),
        "rtpengine exited during the run\n{}",
        engine.log_tail()
    );
    let phase = MediaPhase {
        packets_sent,
        seconds: elapsed,
        relayed: after.relayed_user.saturating_sub(relayed_before) as f64,
        cpu_seconds: cpu_after - cpu_before,
    };
    let report = CallLoadReport::from_phase(
        calls,
        usize::try_from(after.sessions).unwrap_or(0),
        setup_seconds,
        &phase,
        pairs
            .iter()
            .flat_map(|(caller, _, callee, _)| [caller, callee]),
    )?;
    eprintln!(
        "rtpengine {} (pid {}, cpu {}): relayed {} packets by its count, the phones received {}",
        binary.display(),
        engine.pid,
        cpu.map_or_else(|| "not pinned".to_owned(), |c| c.to_string()),
        phase.relayed,
        report.packets_received,
    );
    Ok(report)
}

/// The `rtpengine` executable on `PATH` (or in `/usr/bin`, `/usr/sbin`), or a clear error: this
/// command installs nothing.
fn find_rtpengine() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("rtpengine"))
        .find(|p| p.is_file())
        .context(
            "rtpengine not found on PATH: install it first (Debian: `apt-get install -y \
             rtpengine-daemon`); rtpengine-load installs nothing itself",
        )
}

/// Where a reply's rewritten SDP asks for audio: an rtpengine port on loopback.
fn rewritten_media(reply: &Value) -> anyhow::Result<SocketAddr> {
    let sdp = reply
        .get("sdp")
        .and_then(Value::as_str)
        .context("reply without an SDP")?;
    let to = sdp_media(sdp).with_context(|| format!("no c=/m=audio in the SDP:\n{sdp}"))?;
    // The phones send only to loopback, whatever the reply says.
    ensure!(
        to.ip().is_loopback(),
        "rtpengine asked for media at {to}, not on loopback"
    );
    Ok(to)
}

/// rtpengine running as a child (under `timeout`, in a process group of its own); killed on drop.
struct Rtpengine {
    /// The `timeout` process; rtpengine is its child.
    child: Child,
    /// rtpengine's own process id, from its pidfile.
    pid: u32,
    /// Its ng control listener.
    ng: SocketAddr,
    /// Its pidfile and stderr log.
    dir: tempfile::TempDir,
}

impl Rtpengine {
    async fn start(binary: &Path, cpu: Option<u32>, lifetime: Duration) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let ng = SocketAddr::from((Ipv4Addr::LOCALHOST, crate::lab::free_port(true)));
        ensure!(ng.port() != 0, "no free port for rtpengine's ng listener");
        let pidfile = dir.path().join("rtpengine.pid");
        let log = std::fs::File::create(dir.path().join("rtpengine.log"))?;
        let mut cmd = Command::new("timeout");
        // `timeout` puts itself and rtpengine in a new process group, which the guard kills.
        cmd.args(["--signal=KILL", &format!("{}s", lifetime.as_secs())]);
        if let Some(cpu) = cpu {
            // taskset execs rtpengine, so every thread it starts inherits the CPU.
            cmd.args(["taskset", "-c", &cpu.to_string()]);
        }
        cmd.arg(binary)
            .args([
                "--config-file=none",
                "--table=-1",
                "--foreground",
                "--log-stderr",
                "--log-level=5",
                "--interface=127.0.0.1",
                &format!("--port-min={RTP_PORT_MIN}"),
                &format!("--port-max={RTP_PORT_MAX}"),
                &format!("--listen-ng={ng}"),
            ])
            .arg(format!("--pidfile={}", pidfile.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd
            .spawn()
            .context("starting rtpengine under `timeout` (coreutils)")?;
        let mut engine = Self {
            child,
            pid: 0,
            ng,
            dir,
        };
        // Ready when it answers a ping; its pid is in the pidfile by then.
        let ping = bencode::dict([("command", "ping".into())]);
        let mut ng_client = NgClient::connect(ng).await?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            ensure!(
                engine.is_running(),
                "rtpengine exited at start\n{}",
                engine.log_tail()
            );
            let reply = ng_client
                .request_once(&ping, Duration::from_millis(200))
                .await;
            if let Ok(reply) = reply
                && reply.get("result").and_then(Value::as_str) == Some("pong")
            {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "rtpengine did not answer on {ng} within {START_TIMEOUT:?}\n{}",
                engine.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let pid_text = std::fs::read_to_string(&pidfile).context("rtpengine's pidfile")?;
        engine.pid = pid_text
            .trim()
            .parse()
            .with_context(|| format!("rtpengine's pidfile says {pid_text:?}"))?;
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", engine.pid))?;
        ensure!(
            comm.trim() == "rtpengine",
            "pid {} is {comm:?}, not rtpengine",
            engine.pid
        );
        Ok(engine)
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines rtpengine logged.
    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("rtpengine.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        // The process group `timeout` made (its own pid): timeout, taskset's exec, rtpengine. The
        // group id stays ours until the child is reaped below.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The figures of rtpengine's ng `statistics` reply that a run needs.
struct Statistics {
    /// Packets relayed in userspace since it started.
    relayed_user: u64,
    /// Calls it holds now.
    sessions: u64,
}

/// A client of rtpengine's ng protocol: a cookie, a space and a bencoded dictionary, over UDP.
struct NgClient {
    sock: tokio::net::UdpSocket,
    /// This run's cookies start with this (the process id and a random number).
    prefix: String,
    buf: Vec<u8>,
}

impl NgClient {
    async fn connect(to: SocketAddr) -> anyhow::Result<Self> {
        ensure!(to.ip().is_loopback(), "ng only on loopback, not {to}");
        let sock = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        sock.connect(to).await?;
        Ok(Self {
            sock,
            prefix: format!("{:x}{:08x}", std::process::id(), rand::random::<u32>()),
            buf: vec![0; bencode::MAX_INPUT + 64],
        })
    }

    /// Sends `body` until a reply with its cookie comes (up to [`NG_TRIES`] times); the reply, which
    /// must say `"result": "ok"`.
    async fn request(&mut self, body: &Value) -> anyhow::Result<Value> {
        let command = body
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let cookie = self.cookie();
        for _ in 0..NG_TRIES {
            if let Some(reply) = self.exchange(&cookie, body, NG_TIMEOUT).await? {
                let result = reply.get("result").and_then(Value::as_str);
                ensure!(
                    result == Some("ok"),
                    "rtpengine refused {command}: {} ({})",
                    result.unwrap_or("no result"),
                    reply
                        .get("error-reason")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason"),
                );
                return Ok(reply);
            }
        }
        bail!("no reply from rtpengine to {command} after {NG_TRIES} tries")
    }

    /// One try of `body`, waiting `within` for its reply (whatever its result).
    async fn request_once(&mut self, body: &Value, within: Duration) -> anyhow::Result<Value> {
        let cookie = self.cookie();
        self.exchange(&cookie, body, within)
            .await?
            .context("no reply")
    }

    /// A cookie no other request of this process used: rtpengine answers a cookie it has seen (from
    /// any source port) from its cache, so two clients counting from 1 would get each other's replies.
    fn cookie(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!("{}_{n}", self.prefix)
    }

    /// Sends once and waits `within` for the reply carrying `cookie` (others are stale: dropped).
    async fn exchange(
        &mut self,
        cookie: &str,
        body: &Value,
        within: Duration,
    ) -> anyhow::Result<Option<Value>> {
        self.sock.send(&ng_message(cookie, body)).await?;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let Ok(received) =
                tokio::time::timeout_at(deadline, self.sock.recv(&mut self.buf)).await
            else {
                return Ok(None);
            };
            let n = received?;
            let Some((got, reply)) = self.buf.get(..n).and_then(split_ng_message) else {
                continue;
            };
            if got == cookie.as_bytes() {
                return Ok(Some(bencode::decode(reply).context("rtpengine's reply")?));
            }
        }
    }

    async fn statistics(&mut self) -> anyhow::Result<Statistics> {
        let reply = self
            .request(&bencode::dict([("command", "statistics".into())]))
            .await?;
        let stats = reply.get("statistics").context("no statistics")?;
        let figure = |section: &str, name: &str| {
            stats
                .get(section)
                .and_then(|s| s.get(name))
                .and_then(Value::as_int)
                .and_then(|n| u64::try_from(n).ok())
                .with_context(|| format!("no {section}.{name} in rtpengine's statistics"))
        };
        Ok(Statistics {
            relayed_user: figure("totalstatistics", "relayedpackets_user")?,
            sessions: figure("currentstatistics", "sessionsown")?,
        })
    }
}

/// An ng message: the cookie, a space, the bencoded body.
fn ng_message(cookie: &str, body: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(cookie.as_bytes());
    out.push(b' ');
    body.encode(&mut out);
    out
}

/// The cookie and the body of an ng message.
fn split_ng_message(datagram: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = datagram.iter().position(|b| *b == b' ')?;
    Some((datagram.get(..space)?, datagram.get(space + 1..)?))
}

/// Bencode, as the ng protocol uses it: integers, byte strings, lists and dictionaries with byte-string
/// keys. The decoder refuses input over [`MAX_INPUT`] bytes or nested over [`MAX_DEPTH`] levels, and
/// returns an error (never panics) on anything malformed.
mod bencode {
    use std::collections::BTreeMap;
    use std::fmt;

    /// The longest input [`decode`] reads: an ng message is one UDP datagram.
    pub(crate) const MAX_INPUT: usize = 65_536;
    /// The deepest nesting [`decode`] follows (it recurses once per level).
    pub(crate) const MAX_DEPTH: usize = 32;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Value {
        Int(i64),
        Bytes(Vec<u8>),
        List(Vec<Self>),
        /// Keys in byte order, as bencode writes them.
        Dict(BTreeMap<Vec<u8>, Self>),
    }

    impl From<&str> for Value {
        fn from(s: &str) -> Self {
            Self::Bytes(s.as_bytes().to_vec())
        }
    }

    /// A dictionary of `pairs`.
    pub(crate) fn dict<const N: usize>(pairs: [(&str, Value); N]) -> Value {
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    impl Value {
        /// Appends the encoding to `out`.
        pub(crate) fn encode(&self, out: &mut Vec<u8>) {
            match self {
                Self::Int(n) => out.extend_from_slice(format!("i{n}e").as_bytes()),
                Self::Bytes(b) => encode_bytes(b, out),
                Self::List(items) => {
                    out.push(b'l');
                    for item in items {
                        item.encode(out);
                    }
                    out.push(b'e');
                }
                Self::Dict(map) => {
                    out.push(b'd');
                    for (k, v) in map {
                        encode_bytes(k, out);
                        v.encode(out);
                    }
                    out.push(b'e');
                }
            }
        }

        /// A dictionary's value for `key`.
        pub(crate) fn get(&self, key: &str) -> Option<&Self> {
            match self {
                Self::Dict(map) => map.get(key.as_bytes()),
                _ => None,
            }
        }

        /// A byte string that is UTF-8.
        pub(crate) fn as_str(&self) -> Option<&str> {
            match self {
                Self::Bytes(b) => std::str::from_utf8(b).ok(),
                _ => None,
            }
        }

        pub(crate) fn as_int(&self) -> Option<i64> {
            match self {
                Self::Int(n) => Some(*n),
                _ => None,
            }
        }
    }

    fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(b.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(b);
    }

    /// Why input is not bencode, and where.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct DecodeError {
        pub(crate) at: usize,
        pub(crate) what: &'static str,
    }

    impl fmt::Display for DecodeError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "bad bencode at byte {}: {}", self.at, self.what)
        }
    }

    impl std::error::Error for DecodeError {}

    /// The one value `input` holds (nothing may follow it).
    pub(crate) fn decode(input: &[u8]) -> Result<Value, DecodeError> {
        if input.len() > MAX_INPUT {
            return Err(DecodeError {
                at: MAX_INPUT,
                what: "input too long",
            });
        }
        let mut d = Decoder { input, pos: 0 };
        let value = d.value(0)?;
        if d.pos != input.len() {
            return Err(d.error("bytes after the value"));
        }
        Ok(value)
    }

    struct Decoder<'a> {
        input: &'a [u8],
        pos: usize,
    }

    impl Decoder<'_> {
        fn error(&self, what: &'static str) -> DecodeError {
            DecodeError { at: self.pos, what }
        }

        fn peek(&self) -> Result<u8, DecodeError> {
            self.input
                .get(self.pos)
                .copied()
                .ok_or_else(|| self.error("unexpected end"))
        }

        fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
            if depth > MAX_DEPTH {
                return Err(self.error("nested too deeply"));
            }
            match self.peek()? {
                b'i' => {
                    self.pos += 1;
                    Ok(Value::Int(self.int_until(b'e')?))
                }
                b'l' => {
                    self.pos += 1;
                    let mut items = Vec::new();
                    while self.peek()? != b'e' {
                        items.push(self.value(depth + 1)?);
                    }
                    self.pos += 1;
                    Ok(Value::List(items))
                }
                b'd' => {
                    self.pos += 1;
                    let mut map = BTreeMap::new();
                    while self.peek()? != b'e' {
                        let at = self.pos;
                        let key = self.bytes()?;
                        let value = self.value(depth + 1)?;
                        if map.insert(key, value).is_some() {
                            return Err(DecodeError {
                                at,
                                what: "key repeated",
                            });
                        }
                    }
                    self.pos += 1;
                    Ok(Value::Dict(map))
                }
                b'0'..=b'9' => Ok(Value::Bytes(self.bytes()?)),
                _ => Err(self.error("not a bencode value")),
            }
        }

        /// A decimal integer (an optional '-', then digits) ending at `end`, which is consumed.
        fn int_until(&mut self, end: u8) -> Result<i64, DecodeError> {
            let rest = self.input.get(self.pos..).unwrap_or_default();
            let len = rest
                .iter()
                .position(|b| *b == end)
                .ok_or_else(|| self.error("unterminated integer"))?;
            let digits = rest.get(..len).unwrap_or_default();
            let unsigned = digits.strip_prefix(b"-").unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.iter().all(u8::is_ascii_digit) {
                return Err(self.error("not an integer"));
            }
            let n = std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| self.error("integer out of range"))?;
            self.pos += len + 1;
            Ok(n)
        }

        /// A byte string: its length, ':', the bytes.
        fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
            if !self.peek()?.is_ascii_digit() {
                return Err(self.error("not a byte string"));
            }
            let len = usize::try_from(self.int_until(b':')?)
                .map_err(|_| self.error("negative length"))?;
            let bytes = self
                .pos
                .checked_add(len)
                .and_then(|end| self.input.get(self.pos..end))
                .ok_or_else(|| self.error("byte string longer than the input"))?;
            self.pos += len;
            Ok(bytes.to_vec())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn encodes_dictionaries_with_sorted_keys() {
            let mut out = Vec::new();
            dict([
                ("sdp", "v=0".into()),
                ("command", "offer".into()),
                ("n", Value::Int(-7)),
                ("l", Value::List(vec!["a".into(), Value::Int(0)])),
            ])
            .encode(&mut out);
            assert_eq!(out, b"d7:command5:offer1:ll1:ai0ee1:ni-7e3:sdp3:v=0e");
        }

        #[test]
        fn decodes_what_it_encodes() {
            let v = dict([
                ("result", "ok".into()),
                ("sdp", "v=0\r\nm=audio 12000 RTP/AVP 0\r\n".into()),
                ("stats", dict([("packets", Value::Int(123_456_789_012))])),
                ("empty", Value::List(vec![])),
            ]);
            let mut out = Vec::new();
            v.encode(&mut out);
            assert_eq!(decode(&out), Ok(v));
        }

        #[test]
        fn decodes_an_rtpengine_reply() {
            let v = decode(b"d6:result4:pong13:relayed_usersi42ee").unwrap();
            assert_eq!(v.get("result").and_then(Value::as_str), Some("pong"));
            assert_eq!(v.get("relayed_users").and_then(Value::as_int), Some(42));
            assert_eq!(v.get("missing"), None);
            assert_eq!(Value::Int(1).get("result"), None);
        }

        #[test]
        fn refuses_malformed_input_without_panicking() {
            let bad: &[&[u8]] = &[
                b"",
                b"i",
                b"ie",
                b"i-e",
                b"i+5e",
                b"i12",
                b"i99999999999999999999e",
                b"5:abc",
                b"99999999999999999999999:a",
                b"-1:a",
                b"l",
                b"li1e",
                b"d",
                b"d1:a",
                b"di1ei2ee",
                b"d1:ai1e1:ai2ee",
                b"x",
                b"i1ei2e",
                b":",
                b"0",
            ];
            for input in bad {
                assert!(
                    decode(input).is_err(),
                    "{:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }

        #[test]
        fn bounds_size_and_depth() {
            let long = vec![b'0'; MAX_INPUT + 1];
            assert_eq!(decode(&long).map_err(|e| e.what), Err("input too long"));
            let deep = [vec![b'l'; MAX_DEPTH + 2], vec![b'e'; MAX_DEPTH + 2]].concat();
            assert_eq!(decode(&deep).map_err(|e| e.what), Err("nested too deeply"));
            let ok = [vec![b'l'; MAX_DEPTH + 1], vec![b'e'; MAX_DEPTH + 1]].concat();
            assert!(decode(&ok).is_ok());
        }

        #[test]
        fn survives_every_prefix_and_byte_flip() {
            let mut good = Vec::new();
            dict([
                ("a", Value::List(vec![Value::Int(-12), "xyz".into()])),
                ("b", dict([("c", "d".into())])),
            ])
            .encode(&mut good);
            for cut in 0..good.len() {
                assert!(decode(&good[..cut]).is_err());
            }
            for i in 0..good.len() {
                for byte in [0u8, b'e', b'i', b'l', b'd', b':', b'9', b'-', 0xff] {
                    let mut flipped = good.clone();
                    flipped[i] = byte;
                    let _ = decode(&flipped);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_ng_messages() {
        let msg = ng_message("5_1", &bencode::dict([("command", "ping".into())]));
        assert_eq!(msg, b"5_1 d7:command4:pinge");
        let (cookie, body) = split_ng_message(b"5_1 d6:result4:ponge").unwrap();
        assert_eq!(cookie, b"5_1");
        assert_eq!(
            bencode::decode(body)
                .unwrap()
                .get("result")
                .and_then(Value::as_str),
            Some("pong")
        );
        assert_eq!(split_ng_message(b"nospace"), None);
    }

    #[test]
    fn reads_the_rewritten_media_address() {
        let reply = bencode::dict([
            ("result", "ok".into()),
            (
                "sdp",
                "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 12044 RTP/AVP 0 101\r\na=rtcp:12045\r\n"
                    .into(),
            ),
        ]);
        assert_eq!(
            rewritten_media(&reply).unwrap(),
            "127.0.0.1:12044".parse::<SocketAddr>().unwrap()
        );
        let elsewhere = bencode::dict([(
            "sdp",
            "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 12044 RTP/AVP 0\r\n".into(),
        )]);
        assert!(rewritten_media(&elsewhere).is_err());
        assert!(rewritten_media(&bencode::dict([("result", "ok".into())])).is_err());
    }
}
