//! A minimal SIP client over UDP for tests and chaos scenarios: it writes requests by hand, answers
//! digest challenges (MD5 and SHA-256, qop=auth), and reads responses as plain text, so tests can
//! compare exactly what a phone (or an attacker) would see.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use md5::{Digest as _, Md5};
use sha2::Sha256;
use tokio::net::UdpSocket;

/// A response as received.
#[derive(Debug, Clone)]
pub struct SipResponse {
    pub status: u16,
    pub reason: String,
    pub raw: String,
}

impl SipResponse {
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let first = raw.lines().next().context("empty response")?;
        let mut parts = first.splitn(3, ' ');
        let (version, code, reason) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
        if version != Some("SIP/2.0") {
            bail!("not a SIP response: {first}");
        }
        let status = code.context("no status")?.parse()?;
        Ok(Self {
            status,
            reason: reason.to_owned(),
            raw: raw.to_owned(),
        })
    }

    /// Every value of header `name` (case-insensitive; one value per header line).
    pub fn headers(&self, name: &str) -> Vec<String> {
        let head = self.raw.split("\r\n\r\n").next().unwrap_or("");
        head.lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }
}

/// One UDP socket talking to one SIP server.
pub struct SipProbe {
    sock: UdpSocket,
    pub server: SocketAddr,
    pub local: SocketAddr,
}

impl SipProbe {
    pub async fn new(server: SocketAddr) -> anyhow::Result<Self> {
        let sock = UdpSocket::bind("127.0.0.1:0").await?;
        let local = sock.local_addr()?;
        Ok(Self {
            sock,
            server,
            local,
        })
    }

    /// Sends `text` (retransmitting every 500 ms, as RFC 3261 timer E would) until a final response
    /// arrives or `within` passes.
    pub async fn send(&self, text: &str, within: Duration) -> anyhow::Result<SipResponse> {
        let deadline = tokio::time::Instant::now() + within;
        let mut buf = vec![0u8; 65_536];
        loop {
            self.sock.send_to(text.as_bytes(), self.server).await?;
            let resend = tokio::time::Instant::now() + Duration::from_millis(500);
            loop {
                let until = resend.min(deadline);
                match tokio::time::timeout_at(until, self.sock.recv_from(&mut buf)).await {
                    Ok(Ok((n, _))) => {
                        let resp = SipResponse::parse(&String::from_utf8_lossy(&buf[..n]))?;
                        if resp.status >= 200 {
                            return Ok(resp);
                        }
                    }
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => break,
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("no final response within {within:?}");
            }
        }
    }

    /// The socket, for a test that takes over answering on it.
    pub fn into_socket(self) -> UdpSocket {
        self.sock
    }

    /// Sends raw bytes and waits up to `within` for any datagram back.
    pub async fn send_raw(&self, bytes: &[u8], within: Duration) -> Option<String> {
        self.sock.send_to(bytes, self.server).await.ok()?;
        let mut buf = vec![0u8; 65_536];
        let (n, _) = tokio::time::timeout(within, self.sock.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

/// A REGISTER for `user` from `probe` with a fresh branch.
pub fn register(
    probe: &SipProbe,
    user: &str,
    call_id: &str,
    cseq: u32,
    contact: &str,
    expires: Option<u32>,
    extra: &str,
) -> String {
    let branch = format!("z9hG4bK{:016x}", rand::random::<u64>());
    let server = probe.server;
    let expires = expires
        .map(|e| format!("Expires: {e}\r\n"))
        .unwrap_or_default();
    format!(
        "REGISTER sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:{user}@{server}>;tag=t{cseq}\r\nTo: <sip:{user}@{server}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n\
         Contact: {contact}\r\n{expires}{extra}User-Agent: probe\r\nContent-Length: 0\r\n\r\n",
        local = probe.local
    )
}

/// The parameters of a `Digest` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: String,
    pub qop: Option<String>,
    pub stale: bool,
}

impl Challenge {
    pub fn parse(value: &str) -> anyhow::Result<Self> {
        let rest = value
            .strip_prefix("Digest ")
            .context("not a Digest challenge")?;
        let mut c = Self {
            realm: String::new(),
            nonce: String::new(),
            opaque: None,
            algorithm: "MD5".into(),
            qop: None,
            stale: false,
        };
        for part in split_params(rest) {
            let (k, v) = part.split_once('=').context("bad parameter")?;
            let v = v.trim().trim_matches('"').to_owned();
            match k.trim().to_ascii_lowercase().as_str() {
                "realm" => c.realm = v,
                "nonce" => c.nonce = v,
                "opaque" => c.opaque = Some(v),
                "algorithm" => c.algorithm = v,
                "qop" => c.qop = Some(v),
                "stale" => c.stale = v.eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        Ok(c)
    }

    /// The `Authorization` value answering this challenge.
    pub fn answer(
        &self,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let h = |s: &str| -> String {
            if self.algorithm.eq_ignore_ascii_case("SHA-256") {
                hex::encode(Sha256::digest(s.as_bytes()))
            } else {
                hex::encode(Md5::digest(s.as_bytes()))
            }
        };
        let ha1 = h(&format!("{user}:{}:{password}", self.realm));
        let ha2 = h(&format!("{method}:{uri}"));
        let nc = format!("{nc:08x}");
        let response = h(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce));
        let opaque = self
            .opaque
            .as_ref()
            .map(|o| format!(", opaque=\"{o}\""))
            .unwrap_or_default();
        format!(
            "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", \
             algorithm={}, qop=auth, nc={nc}, cnonce=\"{cnonce}\"{opaque}",
            self.realm, self.nonce, self.algorithm
        )
    }
}

fn split_params(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// Registers `user` with digest authentication: REGISTER, 401, REGISTER with credentials. Returns the
/// final response.
pub async fn register_with_auth(
    probe: &SipProbe,
    user: &str,
    password: &str,
    contact: &str,
    expires: Option<u32>,
    call_id: &str,
    cseq: u32,
) -> anyhow::Result<SipResponse> {
    let first = probe
        .send(
            &register(probe, user, call_id, cseq, contact, expires, ""),
            Duration::from_secs(5),
        )
        .await?;
    if first.status != 401 {
        return Ok(first);
    }
    let challenge = Challenge::parse(
        &first
            .header("WWW-Authenticate")
            .context("401 without a challenge")?,
    )?;
    let uri = format!("sip:{}", probe.server);
    let auth = challenge.answer(
        user,
        password,
        "REGISTER",
        &uri,
        1,
        &format!("{:08x}", rand::random::<u32>()),
    );
    let text = register(
        probe,
        user,
        call_id,
        cseq + 1,
        contact,
        expires,
        &format!("Authorization: {auth}\r\n"),
    );
    probe.send(&text, Duration::from_secs(5)).await
}
