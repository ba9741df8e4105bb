//! The enabled capture targets as the transports match them, and how a node keeps them current.
//!
//! Each node rebuilds its [`Targets`] from the replicated `CaptureTargets` table (and the trunks it
//! names) whenever it applies new entries, and at least every second so that a target stops at
//! its expiry with no new entry. The table is replicated, so a node that restarts, or takes the VIP
//! over after a failover, builds the same targets from its own copy before it serves SIP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use cluster::Cluster;
use storage::capture::{CaptureKind, CaptureTarget};
use storage::routing::Trunk;

use super::{Capture, Summary};

/// How often targets are rebuilt with no new entry (so that expiries take effect).
const REFRESH: Duration = Duration::from_secs(1);
/// Wait after an applied entry before rebuilding (bursts of entries rebuild once).
const DEBOUNCE: Duration = Duration::from_millis(50);

/// What a target is: an extension or a trunk.
pub use storage::capture::CaptureKind as TargetKind;

/// One enabled target: an extension's number, or a trunk's name with the hosts it is matched by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: TargetKind,
    pub name: String,
    pub expires_at_ms: u64,
    /// For a trunk: its host and peer hosts, lower case (matched against the From, To and
    /// Request-URI hosts, and, when they are IP addresses, against the remote address).
    pub hosts: Vec<String>,
}

/// The targets enabled now.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// Extension number → expiry (ms).
    extensions: HashMap<String, u64>,
    /// Trunk hosts → expiry (ms).
    hosts: HashMap<String, u64>,
    /// Trunk IP addresses → expiry (ms).
    ips: HashMap<IpAddr, u64>,
}

impl Targets {
    /// The targets of `list` still running at `now_ms`.
    pub fn new(list: impl IntoIterator<Item = Target>, now_ms: u64) -> Self {
        let mut t = Self::default();
        for target in list.into_iter().filter(|t| t.expires_at_ms > now_ms) {
            let until = target.expires_at_ms;
            match target.kind {
                TargetKind::Extension => {
                    t.extensions.insert(target.name, until);
                }
                TargetKind::Trunk => {
                    for host in target.hosts {
                        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
                        if host.is_empty() {
                            continue;
                        }
                        if let Ok(ip) = host.parse::<IpAddr>() {
                            t.ips.insert(ip.to_canonical(), until);
                        }
                        t.hosts.insert(host, until);
                    }
                }
            }
        }
        t
    }

    pub fn is_empty(&self) -> bool {
        self.extensions.is_empty() && self.hosts.is_empty()
    }

    /// Whether a message with `summary`, exchanged with `remote`, concerns a target running at
    /// `now_ms`.
    pub fn concerns(&self, summary: &Summary, remote: IpAddr, now_ms: u64) -> bool {
        let users = [&summary.from_user, &summary.to_user, &summary.uri_user].map(|s| s.as_bytes());
        let hosts = [&summary.from_host, &summary.to_host, &summary.uri_host].map(|s| s.as_bytes());
        self.concerns_parts(users, hosts, remote, now_ms)
    }

    /// [`Self::concerns`] on the From, To and Request-URI user and host parts, as read from the
    /// message (no allocation unless a trunk target makes hosts worth comparing).
    pub(crate) fn concerns_parts(
        &self,
        users: [&[u8]; 3],
        hosts: [&[u8]; 3],
        remote: IpAddr,
        now_ms: u64,
    ) -> bool {
        let live = |until: Option<&u64>| until.is_some_and(|&u| u > now_ms);
        if !self.extensions.is_empty()
            && users.iter().any(|u| {
                !u.is_empty() && std::str::from_utf8(u).is_ok_and(|u| live(self.extensions.get(u)))
            })
        {
            return true;
        }
        if self.hosts.is_empty() {
            return false;
        }
        live(self.ips.get(&remote.to_canonical()))
            || hosts.iter().any(|h| {
                let h = h.trim_ascii();
                let h = h.strip_prefix(b"[").unwrap_or(h);
                let h = h.strip_suffix(b"]").unwrap_or(h);
                !h.is_empty()
                    && std::str::from_utf8(h)
                        .is_ok_and(|h| live(self.hosts.get(&h.to_ascii_lowercase())))
            })
    }
}

/// The hosts a trunk is matched by.
fn trunk_hosts(trunk: &Trunk) -> Vec<String> {
    let mut hosts = vec![trunk.host.clone()];
    hosts.extend(trunk.peer_hosts.iter().cloned());
    if let Some(proxy) = &trunk.outbound_proxy {
        // `host[:port]`, `[v6]:port`.
        let host = match proxy.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or_default(),
            None => proxy.split(':').next().unwrap_or_default(),
        };
        hosts.push(host.to_owned());
    }
    hosts
}

/// Reads the enabled targets from the replicated tables.
pub(crate) fn load(cluster: &Cluster, now_ms: u64) -> Result<Targets, storage::StorageError> {
    let reader = cluster.reader();
    let mut list = Vec::new();
    for t in reader.list::<CaptureTarget>()? {
        if !t.active_at(now_ms) {
            continue;
        }
        let hosts = match t.kind {
            CaptureKind::Extension => Vec::new(),
            CaptureKind::Trunk => reader
                .get::<Trunk>(&t.name)?
                .map(|trunk| trunk_hosts(&trunk))
                .unwrap_or_default(),
        };
        list.push(Target {
            kind: t.kind,
            name: t.name,
            expires_at_ms: t.expires_at,
            hosts,
        });
    }
    Ok(Targets::new(list, now_ms))
}

/// Keeps `capture`'s targets current for the life of the process.
pub(crate) async fn follow(capture: Arc<Capture>, cluster: Cluster) {
    let mut applied = cluster.reader().watch_applied();
    loop {
        match load(&cluster, crate::time::now_millis()) {
            Ok(targets) => capture.set_targets(targets),
            Err(e) => tracing::warn!(error = %e, "reloading SIP capture targets failed"),
        }
        let _ = tokio::time::timeout(REFRESH, applied.changed()).await;
        tokio::time::sleep(DEBOUNCE).await;
    }
}
