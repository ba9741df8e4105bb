//! SIP message capture for troubleshooting: a bounded ring buffer of the SIP messages that concern
//! the extensions and trunks an admin enabled capture for, queried by Call-ID, extension, remote
//! address or time window, and written out as a pcap file ([`pcap`]) that Wireshark opens.
//!
//! The core is sans-IO: [`Ring`] takes captured messages with their wall-clock time and answers
//! queries; [`Targets`] decides from the raw bytes whether a message concerns an enabled target;
//! [`mask_credentials`] removes digest responses (and any non-digest credentials) from
//! `Authorization` and `Proxy-Authorization` headers. [`Capture`] is the handle the SIP transports
//! and the API share: an atomic "any target enabled" flag checked first (capture off costs one
//! relaxed load per message), then the targets, then the ring behind a mutex.
//!
//! Masking happens when a message is captured, before it is stored: a secret never sits in the
//! ring, in a query answer or in a pcap file.
//!
//! What the transports hand over: every message received (after the security gate and the VIP
//! fence, before parsing, so malformed ones too) and every message sent (after the fence), whole
//! (TCP/TLS framed, TLS decrypted). The local address recorded is the listener's for the transport
//! (for a connection this node dialled, not its ephemeral port). A message concerns an extension
//! when its number is the user part of the From, To or Request-URI; a trunk when the remote
//! address is the trunk's host or a peer host given as an IP address, or when a From, To or
//! Request-URI host is its host, a peer host or its outbound proxy (names are not resolved here).

pub mod pcap;
pub(crate) mod remote;
mod sip;
pub(crate) mod targets;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

pub use self::sip::{Summary, mask_credentials, summarize};
pub(crate) use self::targets::follow as follow_targets;
pub use self::targets::{Target, TargetKind, Targets};

/// Default bound of the bytes a node holds (message bytes plus a fixed overhead per message).
pub const DEFAULT_MAX_BYTES: usize = 32 * 1024 * 1024;
/// Default bound of the messages a node holds.
pub const DEFAULT_MAX_MESSAGES: usize = 50_000;
/// What each held message is counted as besides its bytes (its record and strings).
const OVERHEAD_PER_MESSAGE: usize = 192;
/// Most messages one query answers.
pub const MAX_LIMIT: usize = 10_000;

/// How much a ring holds before the oldest messages are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureConfig {
    pub max_bytes: usize,
    pub max_messages: usize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            max_messages: DEFAULT_MAX_MESSAGES,
        }
    }
}

/// Whether the node received or sent the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    In,
    Out,
}

/// The transport a message travelled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureTransport {
    Udp,
    Tcp,
    Tls,
}

impl CaptureTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }
}

/// One message as it passed a transport: where, when, and its bytes with credentials masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    /// The node that saw it.
    pub node: u64,
    /// Wall-clock time, microseconds since the Unix epoch.
    pub at_us: u64,
    pub direction: Direction,
    pub transport: CaptureTransport,
    /// This node's listening address for the transport (the VIP when serving it).
    pub local: SocketAddr,
    /// The phone's or server's address.
    pub remote: SocketAddr,
    /// The first line, the Call-ID and the user parts, read when it was captured.
    pub summary: Summary,
    /// The message, with `Authorization`/`Proxy-Authorization` credentials masked.
    pub bytes: Vec<u8>,
}

impl Captured {
    /// What the message counts for against the ring's byte bound.
    pub fn cost(&self) -> usize {
        self.bytes.len() + self.summary.text_len() + OVERHEAD_PER_MESSAGE
    }

    /// The source address: the remote one for a received message, ours for a sent one.
    pub fn source(&self) -> SocketAddr {
        match self.direction {
            Direction::In => self.remote,
            Direction::Out => self.local,
        }
    }

    /// The destination address.
    pub fn destination(&self) -> SocketAddr {
        match self.direction {
            Direction::In => self.local,
            Direction::Out => self.remote,
        }
    }
}

/// Which messages a query wants: every filter given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    pub call_id: Option<String>,
    /// The user part of the From, To or Request-URI.
    pub extension: Option<String>,
    /// The remote party's IP address (the phone's or the server's).
    pub remote: Option<IpAddr>,
    /// Inclusive bounds, microseconds since the Unix epoch.
    pub since_us: Option<u64>,
    pub until_us: Option<u64>,
    /// At most this many messages (the most recent matching ones), at most [`MAX_LIMIT`].
    pub limit: usize,
}

impl Query {
    pub fn matches(&self, m: &Captured) -> bool {
        self.call_id
            .as_deref()
            .is_none_or(|c| m.summary.call_id == c)
            && self
                .extension
                .as_deref()
                .is_none_or(|e| m.summary.concerns_user(e))
            && self
                .remote
                .is_none_or(|ip| m.remote.ip().to_canonical() == ip.to_canonical())
            && self.since_us.is_none_or(|t| m.at_us >= t)
            && self.until_us.is_none_or(|t| m.at_us <= t)
    }

    fn bounded_limit(&self) -> usize {
        self.limit.clamp(1, MAX_LIMIT)
    }
}

/// What pushing a message into the ring did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pushed {
    /// Older messages dropped to make room.
    pub dropped: usize,
    /// Bytes the ring holds now.
    pub held_bytes: usize,
}

/// The bounded buffer: oldest dropped first when either bound would be passed.
#[derive(Debug)]
pub struct Ring {
    cfg: CaptureConfig,
    messages: VecDeque<Captured>,
    bytes: usize,
    dropped: u64,
}

impl Ring {
    pub fn new(cfg: CaptureConfig) -> Self {
        Self {
            cfg,
            messages: VecDeque::new(),
            bytes: 0,
            dropped: 0,
        }
    }

    /// Holds `m`, dropping the oldest messages until both bounds hold. A message larger than the
    /// byte bound on its own is not held (it counts as dropped).
    pub fn push(&mut self, m: Captured) -> Pushed {
        let cost = m.cost();
        if cost > self.cfg.max_bytes || self.cfg.max_messages == 0 {
            self.dropped += 1;
            return Pushed {
                dropped: 1,
                held_bytes: self.bytes,
            };
        }
        let mut dropped = 0;
        while self.messages.len() >= self.cfg.max_messages || self.bytes + cost > self.cfg.max_bytes
        {
            let Some(old) = self.messages.pop_front() else {
                break;
            };
            self.bytes -= old.cost();
            dropped += 1;
        }
        self.dropped += dropped as u64;
        self.bytes += cost;
        self.messages.push_back(m);
        Pushed {
            dropped,
            held_bytes: self.bytes,
        }
    }

    /// The most recent `q.limit` messages matching `q`, oldest first.
    pub fn query(&self, q: &Query) -> Vec<Captured> {
        let limit = q.bounded_limit();
        let mut found: Vec<Captured> = self
            .messages
            .iter()
            .rev()
            .filter(|m| q.matches(m))
            .take(limit)
            .cloned()
            .collect();
        found.reverse();
        found
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Bytes held, as counted against the bound.
    pub fn held_bytes(&self) -> usize {
        self.bytes
    }

    /// Messages dropped since the ring was made (pushed out, or too large to hold).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Where a message passed: the transport, this node's address and the peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passage {
    pub direction: Direction,
    pub transport: CaptureTransport,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// The node's capture: the enabled targets and the ring, shared by the transports and the API.
#[derive(Debug)]
pub struct Capture {
    node: u64,
    /// Whether any target is enabled: the only thing looked at per message when capture is off.
    active: AtomicBool,
    targets: RwLock<Arc<Targets>>,
    ring: Mutex<Ring>,
}

impl Capture {
    pub fn new(node: u64, cfg: CaptureConfig) -> Self {
        Self {
            node,
            active: AtomicBool::new(false),
            targets: RwLock::new(Arc::new(Targets::default())),
            ring: Mutex::new(Ring::new(cfg)),
        }
    }

    /// Replaces the enabled targets (rebuilt from the replicated table).
    pub fn set_targets(&self, targets: Targets) {
        let any = !targets.is_empty();
        *self
            .targets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(targets);
        self.active.store(any, Ordering::Relaxed);
    }

    /// The enabled targets, as last set.
    pub fn targets(&self) -> Arc<Targets> {
        Arc::clone(
            &self
                .targets
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Whether any target is enabled.
    #[inline]
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Captures `bytes` if it concerns an enabled target at `now_us` (wall clock, µs). Returns
    /// whether it was captured.
    #[inline]
    pub fn observe(&self, now_us: u64, passage: Passage, bytes: &[u8]) -> bool {
        if !self.is_active() {
            return false;
        }
        self.observe_active(now_us, passage, bytes)
    }

    #[cold]
    fn observe_active(&self, now_us: u64, passage: Passage, bytes: &[u8]) -> bool {
        let fields = sip::scan(bytes);
        let targets = self.targets();
        if !targets.concerns_parts(
            fields.users,
            fields.hosts,
            passage.remote.ip(),
            now_us / 1000,
        ) {
            return false;
        }
        let summary = fields.to_summary();
        let m = Captured {
            node: self.node,
            at_us: now_us,
            direction: passage.direction,
            transport: passage.transport,
            local: passage.local,
            remote: passage.remote,
            summary,
            bytes: mask_credentials(bytes),
        };
        let pushed = self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(m);
        metrics::counter!("pbx_sip_capture_messages_total").increment(1);
        metrics::gauge!("pbx_sip_capture_bytes").set(pushed.held_bytes as f64);
        if pushed.dropped > 0 {
            metrics::counter!("pbx_sip_capture_dropped_total").increment(pushed.dropped as u64);
        }
        true
    }

    /// The most recent messages matching `q`, oldest first.
    pub fn query(&self, q: &Query) -> Vec<Captured> {
        self.ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .query(q)
    }

    /// Messages and bytes held.
    pub fn held(&self) -> (usize, usize) {
        let ring = self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (ring.len(), ring.held_bytes())
    }
}

/// Wall-clock time for [`Capture::observe`], microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
