//! A scripted soft-phone over UDP for tests and chaos scenarios: it registers, places and answers calls
//! with digest authentication, sends RTP and counts what it receives, and hangs up. Every message is
//! written by hand, so a test sees exactly what a phone would.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::sip_probe::{Challenge, SipResponse};

/// A SIP message as received.
#[derive(Debug, Clone)]
pub struct Msg {
    pub raw: String,
    pub from: SocketAddr,
}

impl Msg {
    pub fn is_response(&self) -> bool {
        self.raw.starts_with("SIP/2.0 ")
    }

    pub fn status(&self) -> Option<u16> {
        self.is_response()
            .then(|| self.raw.get(8..11)?.parse().ok())
            .flatten()
    }

    /// The method of a request, or the CSeq method of a response.
    pub fn method(&self) -> String {
        if self.is_response() {
            self.header("CSeq")
                .and_then(|c| c.split_whitespace().nth(1).map(str::to_owned))
                .unwrap_or_default()
        } else {
            self.raw.split(' ').next().unwrap_or("").to_owned()
        }
    }

    pub fn headers(&self, name: &str) -> Vec<String> {
        SipResponse {
            status: 0,
            reason: String::new(),
            raw: self.raw.clone(),
        }
        .headers(name)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    pub fn body(&self) -> &str {
        self.raw.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    pub fn cseq(&self) -> u32 {
        self.header("CSeq")
            .and_then(|c| c.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// A parameter of the first header `name` (`tag` of To).
    pub fn param(&self, name: &str, param: &str) -> Option<String> {
        let value = self.header(name)?;
        let after = value.rsplit_once('>').map_or(value.as_str(), |(_, p)| p);
        after.split(';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case(param)
                .then(|| v.trim().to_owned())
        })
    }

    /// The URI in the Contact header.
    pub fn contact_uri(&self) -> Option<String> {
        let c = self.header("Contact")?;
        let start = c.find('<')? + 1;
        let end = c[start..].find('>')? + start;
        Some(c[start..end].to_owned())
    }

    /// Where the SDP body asks for audio (`c=` and the first `m=` port).
    pub fn sdp_media(&self) -> Option<SocketAddr> {
        sdp_media(self.body())
    }
}

/// Where an SDP body asks for audio (`c=` and the first `m=` port).
pub fn sdp_media(body: &str) -> Option<SocketAddr> {
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))?
        .trim()
        .to_owned();
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?
        .to_owned();
    format!("{ip}:{port}").parse().ok()
}

/// What arrived on a phone's RTP socket.
#[derive(Default)]
pub struct RtpStats {
    pub packets: AtomicU64,
    pub sources: Mutex<HashSet<SocketAddr>>,
    /// Milliseconds since the phone started at which each packet arrived (bounded).
    pub arrivals: Mutex<Vec<u64>>,
    /// One-way delay of packets stamped by [`send_rtp_from`], microseconds (bounded).
    pub delays_us: Mutex<Vec<u32>>,
}

impl RtpStats {
    pub fn count(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Packets that carried a phone's send-time stamp ([`send_rtp_from`]): another phone's audio,
    /// not the PBX's own (music on hold, prompts).
    pub fn stamped(&self) -> usize {
        self.delays_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// The longest silence between consecutive packets, in milliseconds.
    pub fn max_gap_ms(&self) -> u64 {
        let a = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        a.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
    }

    /// The longest silence inside `[from, to]` (milliseconds since the phone started), counting the
    /// stretch from `from` to the first packet and from the last packet to `to`.
    pub fn max_gap_between(&self, from: u64, to: u64) -> u64 {
        let a = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        longest_gap(&a, from, to)
    }

    /// Packets that arrived at or after `from` (milliseconds since the phone started).
    pub fn count_since(&self, from: u64) -> usize {
        let a = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        a.len() - a.partition_point(|t| *t < from)
    }
}

/// The longest stretch of `[from, to]` without an event, given event times in ascending order:
/// the edges count (from `from` to the first event, from the last to `to`).
pub fn longest_gap(times: &[u64], from: u64, to: u64) -> u64 {
    let inside = times.iter().copied().filter(|t| (from..=to).contains(t));
    let mut prev = from;
    let mut gap = 0;
    for t in inside.chain(std::iter::once(to)) {
        gap = gap.max(t.saturating_sub(prev));
        prev = t;
    }
    gap
}

/// How a phone answers an incoming INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 180, then 200 with SDP.
    Accept,
    /// 180, then 486.
    Busy,
    /// 180 and nothing more (until CANCEL).
    RingOnly,
    /// 183 with SDP (early media), and nothing more.
    Progress,
    /// A reliable 180 (RFC 3262: `Require: 100rel`, `RSeq`), sent again until PRACKed; then 200.
    Reliable,
}

pub struct Phone {
    pub user: String,
    password: String,
    pub server: SocketAddr,
    sip: Arc<UdpSocket>,
    pub sip_addr: SocketAddr,
    rtp: Arc<UdpSocket>,
    pub rtp_addr: SocketAddr,
    inbox: mpsc::UnboundedReceiver<Msg>,
    pub rtp_stats: Arc<RtpStats>,
    cseq: u32,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Header lines (each ending in CRLF) added to every INVITE this phone sends.
    pub invite_headers: String,
    /// When the phone started: [`RtpStats::arrivals`] count from here.
    pub started: Instant,
}

impl Drop for Phone {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// An established call as one phone sees it.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// Our From/To URI and theirs.
    pub local_uri: String,
    pub remote_uri: String,
    pub remote_target: String,
    pub cseq: u32,
    /// Where the PBX wants our RTP.
    pub media: SocketAddr,
}

fn token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl Phone {
    pub async fn new(server: SocketAddr, user: &str, password: &str) -> anyhow::Result<Self> {
        Self::bound(std::net::Ipv4Addr::LOCALHOST.into(), server, user, password).await
    }

    /// A phone whose sockets are on `local` (another loopback address plays another host).
    pub async fn bound(
        local: std::net::IpAddr,
        server: SocketAddr,
        user: &str,
        password: &str,
    ) -> anyhow::Result<Self> {
        let sip = Arc::new(UdpSocket::bind((local, 0)).await?);
        let rtp = Arc::new(UdpSocket::bind((local, 0)).await?);
        let (sip_addr, rtp_addr) = (sip.local_addr()?, rtp.local_addr()?);
        let (tx, inbox) = mpsc::unbounded_channel();
        let stats = Arc::new(RtpStats::default());
        let started = Instant::now();
        let reader = {
            let sip = Arc::clone(&sip);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok((n, from)) = sip.recv_from(&mut buf).await {
                    let msg = Msg {
                        raw: String::from_utf8_lossy(&buf[..n]).into_owned(),
                        from,
                    };
                    // Qualify pings are answered here, out of the test's way.
                    if !msg.is_response()
                        && msg.method() == "OPTIONS"
                        && msg.param("To", "tag").is_none()
                    {
                        let _ = sip
                            .send_to(reply(&msg, 200, "OK", None, None).as_bytes(), from)
                            .await;
                        continue;
                    }
                    if tx.send(msg).is_err() {
                        return;
                    }
                }
            })
        };
        let counter = {
            let rtp = Arc::clone(&rtp);
            let stats = Arc::clone(&stats);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok((n, from)) = rtp.recv_from(&mut buf).await {
                    if let Some(delay) = delay_us(&buf[..n]) {
                        let mut d = stats.delays_us.lock().unwrap_or_else(|e| e.into_inner());
                        if d.len() < 1_000_000 {
                            d.push(delay);
                        }
                    }
                    stats.packets.fetch_add(1, Ordering::Relaxed);
                    stats
                        .sources
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(from);
                    let mut a = stats.arrivals.lock().unwrap_or_else(|e| e.into_inner());
                    if a.len() < 1_000_000 {
                        a.push(started.elapsed().as_millis() as u64);
                    }
                }
            })
        };
        Ok(Self {
            user: user.to_owned(),
            password: password.to_owned(),
            server,
            sip,
            sip_addr,
            rtp,
            rtp_addr,
            inbox,
            rtp_stats: stats,
            cseq: 0,
            tasks: vec![reader, counter],
            invite_headers: String::new(),
            started,
        })
    }

    fn next_cseq(&mut self) -> u32 {
        self.cseq += 1;
        self.cseq
    }

    pub async fn send(&self, text: &str, to: SocketAddr) -> anyhow::Result<()> {
        self.sip.send_to(text.as_bytes(), to).await?;
        Ok(())
    }

    /// The next message that `keep` accepts, within `within`; others are dropped.
    pub async fn recv_where(
        &mut self,
        within: Duration,
        mut keep: impl FnMut(&Msg) -> bool,
    ) -> anyhow::Result<Msg> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.inbox.recv())
                .await
                .context("nothing arrived in time")?
                .context("phone closed")?;
            if keep(&msg) {
                return Ok(msg);
            }
        }
    }

    /// A final response to (`method`, `cseq`).
    async fn final_response(
        &mut self,
        method: &str,
        cseq: u32,
        within: Duration,
    ) -> anyhow::Result<Msg> {
        self.recv_where(within, |m| {
            m.status().is_some_and(|s| s >= 200) && m.method() == method && m.cseq() == cseq
        })
        .await
    }

    fn contact(&self) -> String {
        format!("<sip:{}@{}>", self.user, self.sip_addr)
    }

    /// REGISTER with digest authentication; returns the final status.
    pub async fn register(&mut self, expires: u32) -> anyhow::Result<u16> {
        let call_id = token();
        let mut auth = String::new();
        for _ in 0..2 {
            let cseq = self.next_cseq();
            let text = format!(
                "REGISTER sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{b};rport\r\nMax-Forwards: 70\r\n\
                 From: <sip:{user}@{server}>;tag={tag}\r\nTo: <sip:{user}@{server}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n\
                 Contact: {contact}\r\nExpires: {expires}\r\n{auth}Content-Length: 0\r\n\r\n",
                server = self.server,
                local = self.sip_addr,
                b = token(),
                user = self.user,
                tag = token(),
                contact = self.contact(),
            );
            self.send(&text, self.server).await?;
            let resp = self
                .final_response("REGISTER", cseq, Duration::from_secs(5))
                .await?;
            match resp.status() {
                Some(401) => {
                    let ch = Challenge::parse(
                        &resp.header("WWW-Authenticate").context("no challenge")?,
                    )?;
                    let uri = format!("sip:{}", self.server);
                    auth = format!(
                        "Authorization: {}\r\n",
                        ch.answer(&self.user, &self.password, "REGISTER", &uri, 1, &token())
                    );
                }
                Some(s) => return Ok(s),
                None => bail!("no status"),
            }
        }
        bail!("challenged twice")
    }

    /// An SDP offer/answer for this phone's RTP socket.
    pub fn sdp(&self, direction: &str) -> String {
        format!(
            "v=0\r\no={user} 1 {v} IN IP4 {ip}\r\ns=call\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na={direction}\r\n",
            user = self.user,
            v = rand::random::<u16>(),
            port = self.rtp_addr.port(),
            ip = self.rtp_addr.ip(),
        )
    }

    fn invite_text(
        &self,
        callee: &str,
        call_id: &str,
        tag: &str,
        cseq: u32,
        auth: &str,
        body: &str,
    ) -> String {
        format!(
            "INVITE sip:{callee}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{b};rport\r\nMax-Forwards: 70\r\n\
             From: \"{user}\" <sip:{user}@{server}>;tag={tag}\r\nTo: <sip:{callee}@{server}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n\
             Contact: {contact}\r\n{auth}{extra}{ctype}Content-Length: {len}\r\n\r\n{body}",
            extra = self.invite_headers,
            ctype = if body.is_empty() {
                ""
            } else {
                "Content-Type: application/sdp\r\n"
            },
            server = self.server,
            local = self.sip_addr,
            b = token(),
            user = self.user,
            contact = self.contact(),
            len = body.len(),
        )
    }

    /// Sends an authenticated INVITE to `callee` with `body` (the phone's own SDP when `None`; an
    /// empty body is a delayed offer, answered in the ACK) and returns once it is past the challenge:
    /// the caller then waits with [`Self::outcome`].
    pub async fn dial(&mut self, callee: &str, body: Option<&str>) -> anyhow::Result<Outgoing> {
        let call_id = token();
        let tag = token();
        let body = body.map_or_else(|| self.sdp("sendrecv"), str::to_owned);
        let cseq = self.next_cseq();
        let text = self.invite_text(callee, &call_id, &tag, cseq, "", &body);
        self.send(&text, self.server).await?;
        let first = self
            .final_response("INVITE", cseq, Duration::from_secs(5))
            .await?;
        self.ack_non2xx(&text, &first).await?;
        if first.status() != Some(407) {
            return Ok(Outgoing {
                call_id,
                tag,
                cseq,
                invite: text,
                early: Some(first),
            });
        }
        let ch = Challenge::parse(&first.header("Proxy-Authenticate").context("no challenge")?)?;
        let uri = format!("sip:{callee}@{}", self.server);
        let auth = format!(
            "Proxy-Authorization: {}\r\n",
            ch.answer(&self.user, &self.password, "INVITE", &uri, 1, &token())
        );
        let cseq = self.next_cseq();
        let text = self.invite_text(callee, &call_id, &tag, cseq, &auth, &body);
        self.send(&text, self.server).await?;
        Ok(Outgoing {
            call_id,
            tag,
            cseq,
            invite: text,
            early: None,
        })
    }

    /// The ACK for a non-2xx final response: the INVITE's top Via, the response's To.
    async fn ack_non2xx(&self, invite: &str, resp: &Msg) -> anyhow::Result<()> {
        let via = invite
            .lines()
            .find(|l| l.starts_with("Via:"))
            .context("no via")?;
        let from = invite
            .lines()
            .find(|l| l.starts_with("From:"))
            .context("no from")?;
        let uri = invite.split(' ').nth(1).context("no uri")?;
        let text = format!(
            "ACK {uri} SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\n{from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
            to = resp.header("To").unwrap_or_default(),
            cid = resp.header("Call-ID").unwrap_or_default(),
            cseq = resp.cseq(),
        );
        self.send(&text, self.server).await
    }

    /// Waits for the final answer to a dialled call. On 2xx it ACKs and returns the dialog; otherwise
    /// the failure status.
    pub async fn outcome(
        &mut self,
        out: &Outgoing,
        within: Duration,
    ) -> anyhow::Result<Result<Dialog, u16>> {
        let resp = match &out.early {
            Some(r) => r.clone(),
            None => self.final_response("INVITE", out.cseq, within).await?,
        };
        let status = resp.status().context("no status")?;
        if status >= 300 {
            if out.early.is_none() {
                self.ack_non2xx(&out.invite, &resp).await?;
            }
            return Ok(Err(status));
        }
        let dialog = Dialog {
            call_id: out.call_id.clone(),
            local_tag: out.tag.clone(),
            remote_tag: resp.param("To", "tag").context("2xx without a To tag")?,
            local_uri: format!("<sip:{}@{}>", self.user, self.server),
            remote_uri: resp
                .header("To")
                .map(|t| t.split(";tag=").next().unwrap_or("").to_owned())
                .unwrap_or_default(),
            remote_target: resp.contact_uri().context("2xx without Contact")?,
            cseq: out.cseq,
            media: resp.sdp_media().context("2xx without SDP")?,
        };
        // A delayed offer: the 2xx carried the offer, the ACK carries our answer.
        let delayed = out.invite.ends_with("\r\n\r\n");
        let answer = if delayed {
            sdp_part(&self.sdp("sendrecv"))
        } else {
            String::new()
        };
        self.send_in_dialog(&dialog, "ACK", out.cseq, &answer)
            .await?;
        Ok(Ok(dialog))
    }

    /// Sends CANCEL for a dialled call still ringing.
    pub async fn cancel(&self, out: &Outgoing) -> anyhow::Result<()> {
        let mut lines: Vec<String> = Vec::new();
        for l in out.invite.split("\r\n") {
            if l.is_empty() {
                break;
            }
            if l.starts_with("INVITE ") {
                lines.push(l.replacen("INVITE", "CANCEL", 1));
            } else if l.starts_with("Via:")
                || l.starts_with("From:")
                || l.starts_with("To:")
                || l.starts_with("Call-ID:")
                || l.starts_with("Max-Forwards:")
            {
                lines.push(l.to_owned());
            } else if l.starts_with("CSeq:") {
                lines.push(format!("CSeq: {} CANCEL", out.cseq));
            }
        }
        let text = format!("{}\r\nContent-Length: 0\r\n\r\n", lines.join("\r\n"));
        self.send(&text, self.server).await
    }

    /// Sends an in-dialog request (`ACK` reuses the INVITE's CSeq).
    pub async fn send_in_dialog(
        &self,
        d: &Dialog,
        method: &str,
        cseq: u32,
        extra: &str,
    ) -> anyhow::Result<()> {
        let text = format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{b};rport\r\nMax-Forwards: 70\r\n\
             From: {luri};tag={ltag}\r\nTo: {ruri};tag={rtag}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContact: {contact}\r\n{extra}",
            target = d.remote_target,
            local = self.sip_addr,
            b = token(),
            luri = d.local_uri,
            ltag = d.local_tag,
            ruri = d.remote_uri,
            rtag = d.remote_tag,
            cid = d.call_id,
            contact = self.contact(),
        );
        let text = if extra.contains("Content-Length") {
            text
        } else {
            format!("{text}Content-Length: 0\r\n\r\n")
        };
        self.send(&text, self.server).await
    }

    /// BYE; returns the status of the answer.
    pub async fn hang_up(&mut self, d: &mut Dialog) -> anyhow::Result<u16> {
        d.cseq += 1;
        self.send_in_dialog(d, "BYE", d.cseq, "").await?;
        let resp = self
            .final_response("BYE", d.cseq, Duration::from_secs(5))
            .await?;
        resp.status().context("no status")
    }

    /// Any other in-dialog request (INFO, OPTIONS, …) with a body; returns the final answer.
    pub async fn request(
        &mut self,
        d: &mut Dialog,
        method: &str,
        content_type: &str,
        body: &str,
    ) -> anyhow::Result<Msg> {
        d.cseq += 1;
        let extra = format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.send_in_dialog(d, method, d.cseq, &extra).await?;
        self.final_response(method, d.cseq, Duration::from_secs(5))
            .await
    }

    /// A re-INVITE with this phone's SDP in `direction` (`sendonly` puts the other side on hold);
    /// returns the answer's status and the answer.
    pub async fn reinvite(&mut self, d: &mut Dialog, direction: &str) -> anyhow::Result<Msg> {
        d.cseq += 1;
        let body = self.sdp(direction);
        let extra = format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.send_in_dialog(d, "INVITE", d.cseq, &extra).await?;
        let resp = self
            .final_response("INVITE", d.cseq, Duration::from_secs(5))
            .await?;
        if resp.status().is_some_and(|s| (200..300).contains(&s)) {
            self.send_in_dialog(d, "ACK", d.cseq, "").await?;
        }
        Ok(resp)
    }

    /// A reliable 180, retransmitted every 500 ms until its PRACK (with the right RAck) comes; the
    /// PRACK is answered 200.
    async fn ring_reliably(&mut self, invite: &Msg, tag: &str) -> anyhow::Result<()> {
        let ringing = reply(invite, 180, "Ringing", Some(tag), Some(&self.contact()));
        let ringing = ringing.replace(
            "Content-Length: 0\r\n",
            "Require: 100rel\r\nRSeq: 1\r\nContent-Length: 0\r\n",
        );
        let rack = format!("1 {} INVITE", invite.cseq());
        for _ in 0..10 {
            self.send(&ringing, invite.from).await?;
            let prack = self
                .recv_where(Duration::from_millis(500), |m| {
                    !m.is_response() && m.method() == "PRACK"
                })
                .await;
            if let Ok(prack) = prack {
                anyhow::ensure!(
                    prack.header("RAck").as_deref() == Some(rack.as_str()),
                    "PRACK with RAck {:?}, expected {rack:?}",
                    prack.header("RAck")
                );
                return self
                    .send(&reply(&prack, 200, "OK", None, None), prack.from)
                    .await;
            }
        }
        anyhow::bail!("no PRACK for the reliable 180")
    }

    /// Waits for an INVITE and answers it as told. With [`Answer::Accept`], returns the dialog once
    /// the ACK arrives.
    pub async fn answer(
        &mut self,
        how: Answer,
        within: Duration,
    ) -> anyhow::Result<(Msg, Option<Dialog>)> {
        let invite = self
            .recv_where(within, |m| !m.is_response() && m.method() == "INVITE")
            .await?;
        let tag = token();
        if how == Answer::Reliable {
            self.ring_reliably(&invite, &tag).await?;
        } else {
            self.send(
                &reply(&invite, 180, "Ringing", Some(&tag), Some(&self.contact())),
                invite.from,
            )
            .await?;
        }
        match how {
            Answer::RingOnly => return Ok((invite, None)),
            Answer::Progress => {
                let body = self.sdp("sendrecv");
                let progress = reply_with_body(
                    &invite,
                    183,
                    "Session Progress",
                    &tag,
                    &self.contact(),
                    &body,
                );
                self.send(&progress, invite.from).await?;
                return Ok((invite, None));
            }
            Answer::Busy => {
                self.send(
                    &reply(&invite, 486, "Busy Here", Some(&tag), None),
                    invite.from,
                )
                .await?;
                return Ok((invite, None));
            }
            Answer::Accept | Answer::Reliable => {}
        }
        let body = self.sdp("sendrecv");
        let ok = reply_with_body(&invite, 200, "OK", &tag, &self.contact(), &body);
        self.send(&ok, invite.from).await?;
        let ack = self
            .recv_where(Duration::from_secs(5), |m| {
                !m.is_response() && m.method() == "ACK"
            })
            .await?;
        let dialog = Dialog {
            call_id: invite.header("Call-ID").context("no Call-ID")?,
            local_tag: tag,
            remote_tag: invite.param("From", "tag").context("no From tag")?,
            local_uri: invite.header("To").context("no To")?,
            remote_uri: invite
                .header("From")
                .map(|f| f.split(";tag=").next().unwrap_or("").to_owned())
                .unwrap_or_default(),
            remote_target: invite.contact_uri().context("no Contact")?,
            cseq: 100,
            // A delayed offer is answered in the ACK.
            media: invite
                .sdp_media()
                .or_else(|| ack.sdp_media())
                .context("neither the INVITE nor the ACK has SDP")?,
        };
        Ok((invite, Some(dialog)))
    }

    /// Waits for a request `method` and answers it `200` (with our SDP for an INVITE).
    pub async fn expect_request(&mut self, method: &str, within: Duration) -> anyhow::Result<Msg> {
        let req = self
            .recv_where(within, |m| !m.is_response() && m.method() == method)
            .await?;
        let text = if method == "INVITE" {
            let body = self.sdp("sendrecv");
            reply_with_body(
                &req,
                200,
                "OK",
                &req.param("To", "tag").unwrap_or_default(),
                &self.contact(),
                &body,
            )
        } else {
            reply(&req, 200, "OK", None, None)
        };
        self.send(&text, req.from).await?;
        Ok(req)
    }

    /// Answers a received request with a bodiless response (`tag` added to To when it has none).
    pub async fn respond(
        &self,
        req: &Msg,
        code: u16,
        reason: &str,
        tag: &str,
    ) -> anyhow::Result<()> {
        self.send(&reply(req, code, reason, Some(tag), None), req.from)
            .await
    }

    /// The phone's RTP socket (a load generator sends from it directly).
    pub fn rtp_socket(&self) -> Arc<UdpSocket> {
        Arc::clone(&self.rtp)
    }

    /// Sends `count` RTP packets (PCMU, 160 bytes) to `to` every `every`.
    pub async fn send_rtp(
        &self,
        to: SocketAddr,
        count: u16,
        every: Duration,
    ) -> anyhow::Result<()> {
        send_rtp_from(&self.rtp, to, count, every).await
    }
}

/// Sends RTP from any socket (an intruder's, in tests).
pub async fn send_rtp_from(
    sock: &UdpSocket,
    to: SocketAddr,
    count: u16,
    every: Duration,
) -> anyhow::Result<()> {
    let ssrc: u32 = rand::random();
    let mut tick = tokio::time::interval(every);
    for seq in 0..count {
        tick.tick().await;
        sock.send_to(&rtp_packet(seq, ssrc), to).await?;
    }
    Ok(())
}

/// A G.711 RTP packet (160 bytes of payload) whose payload starts with a send-time stamp.
pub fn rtp_packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut pkt = Vec::with_capacity(172);
    pkt.extend_from_slice(&[0x80, 0x00]);
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    pkt.extend_from_slice(&ssrc.to_be_bytes());
    pkt.extend_from_slice(&stamp());
    pkt.extend_from_slice(&[0xff; 148]);
    pkt
}

const STAMP_MAGIC: u32 = 0x7062_7800;

/// Magic and wall-clock nanoseconds: the receiver on the same machine computes the one-way delay.
fn stamp() -> [u8; 12] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&STAMP_MAGIC.to_be_bytes());
    out[4..].copy_from_slice(&nanos.to_be_bytes());
    out
}

fn delay_us(pkt: &[u8]) -> Option<u32> {
    let stamp = pkt.get(12..24)?;
    if stamp[..4] != STAMP_MAGIC.to_be_bytes() {
        return None;
    }
    let sent = u64::from_be_bytes(stamp[4..].try_into().ok()?);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Some((now.saturating_sub(sent) / 1000).min(u64::from(u32::MAX)) as u32)
}

/// A call this phone dialled, before its final answer.
pub struct Outgoing {
    pub call_id: String,
    tag: String,
    cseq: u32,
    invite: String,
    /// A final answer that came before any challenge (404, 480, …).
    early: Option<Msg>,
}

/// The headers and body of an SDP body, for the end of a message.
fn sdp_part(body: &str) -> String {
    format!(
        "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A response to a received request (Via, From, To (+tag), Call-ID, CSeq copied, and Record-Route,
/// which a dialog through a proxy needs: RFC 3261 §12.1.1).
pub fn reply(
    req: &Msg,
    code: u16,
    reason: &str,
    tag: Option<&str>,
    contact: Option<&str>,
) -> String {
    let mut text = format!("SIP/2.0 {code} {reason}\r\n");
    for line in req.raw.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "from" | "call-id" | "cseq" | "record-route" => {
                text.push_str(&format!("{line}\r\n"));
            }
            "to" => match tag {
                Some(t) if !line.contains("tag=") => text.push_str(&format!("{line};tag={t}\r\n")),
                _ => text.push_str(&format!("{line}\r\n")),
            },
            _ => {}
        }
    }
    if let Some(c) = contact {
        text.push_str(&format!("Contact: {c}\r\n"));
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    text
}

fn reply_with_body(
    req: &Msg,
    code: u16,
    reason: &str,
    tag: &str,
    contact: &str,
    body: &str,
) -> String {
    let head = reply(req, code, reason, Some(tag), Some(contact));
    let head = head.trim_end_matches("Content-Length: 0\r\n\r\n");
    format!("{head}{}", sdp_part(body))
}
