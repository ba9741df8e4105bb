//! The gate every packet and connection passes before any parsing: trusted networks and allow rules
//! let through, block rules and bans drop, and the default policy decides the rest. It reads a
//! snapshot of the replicated rules and bans, refreshed whenever this node applies new entries, so a
//! change made on any node is enforced here within a fraction of a second.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use storage::StateReader;
use storage::model::{Ban, FirewallAction, FirewallRule, Service, Setting, Transport, UnixMillis};

use super::net::Net;
use crate::time::now_millis;

/// The setting holding the default policy (`allow` or `block`).
pub(crate) const DEFAULT_POLICY_KEY: &str = "firewall.default_policy";
/// A refresh waits this long after an applied entry, so a burst of writes costs one reload.
const REFRESH_DEBOUNCE: Duration = Duration::from_millis(100);

/// Why a source was turned away (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Rule,
    Ban,
    Policy,
}

impl Refusal {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Rule => "rule",
            Self::Ban => "ban",
            Self::Policy => "policy",
        }
    }
}

/// What a rule matches besides the network.
#[derive(Debug, Clone, Default)]
struct Scope {
    services: Vec<Service>,
    transports: Vec<Transport>,
}

impl Scope {
    fn applies(&self, service: Service, transport: Transport) -> bool {
        (self.services.is_empty() || self.services.contains(&service))
            && (self.transports.is_empty() || self.transports.contains(&transport))
    }
}

#[derive(Debug, Default)]
struct Snapshot {
    allow: Vec<(Net, Scope)>,
    block: Vec<(Net, Scope)>,
    bans: HashMap<IpAddr, UnixMillis>,
    default_block: bool,
}

pub(crate) struct Gate {
    trusted: Vec<Net>,
    /// The addresses of enabled trunks (kept by the SIP service): let in for SIP and media like an
    /// allow rule, and never banned, so a busy provider is not taken for a flood.
    providers: RwLock<Arc<Vec<Net>>>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Bans this node decided and has not yet seen applied: enforced at once, not a second later.
    local_bans: Mutex<HashMap<IpAddr, UnixMillis>>,
}

impl Gate {
    pub(crate) fn new(trusted: Vec<Net>) -> Self {
        Self {
            trusted,
            providers: RwLock::new(Arc::new(Vec::new())),
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            local_bans: Mutex::new(HashMap::new()),
        }
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(
            &self
                .snapshot
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Replaces the trunks' addresses.
    pub(crate) fn set_providers(&self, nets: Vec<Net>) {
        *self
            .providers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(nets);
    }

    /// Whether `ip` is a trunk's, for a service a trunk uses.
    fn is_provider(&self, ip: IpAddr, service: Service) -> bool {
        matches!(service, Service::Sip | Service::Media)
            && self
                .providers
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .any(|n| n.contains(ip))
    }

    /// Never banned and never blocked: configured trusted networks, allow rules, and trunks' addresses
    /// (for SIP and media).
    pub(crate) fn is_allowlisted(
        &self,
        ip: IpAddr,
        service: Service,
        transport: Transport,
    ) -> bool {
        self.trusted.iter().any(|n| n.contains(ip))
            || self.is_provider(ip, service)
            || self
                .snapshot()
                .allow
                .iter()
                .any(|(n, s)| s.applies(service, transport) && n.contains(ip))
    }

    /// `Ok` to let the source in, or why not.
    pub(crate) fn check(
        &self,
        ip: IpAddr,
        service: Service,
        transport: Transport,
    ) -> Result<(), Refusal> {
        if self.trusted.iter().any(|n| n.contains(ip)) {
            return Ok(());
        }
        let ip = ip.to_canonical();
        let snap = self.snapshot();
        if self.is_provider(ip, service)
            || snap
                .allow
                .iter()
                .any(|(n, s)| s.applies(service, transport) && n.contains(ip))
        {
            return Ok(());
        }
        if snap
            .block
            .iter()
            .any(|(n, s)| s.applies(service, transport) && n.contains(ip))
        {
            return Err(Refusal::Rule);
        }
        let now = now_millis();
        let banned = snap.bans.get(&ip).is_some_and(|until| *until > now)
            || self
                .local_bans
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&ip)
                .is_some_and(|until| *until > now);
        if banned {
            return Err(Refusal::Ban);
        }
        if snap.default_block {
            return Err(Refusal::Policy);
        }
        Ok(())
    }

    /// Enforces a ban here at once, ahead of its replication.
    pub(crate) fn ban_locally(&self, ip: IpAddr, until: UnixMillis) {
        self.local_bans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(ip.to_canonical(), until);
    }

    /// Rebuilds the snapshot from the replicated tables.
    pub(crate) fn reload(&self, reader: &StateReader) -> Result<(), storage::StorageError> {
        let mut snap = Snapshot::default();
        for rule in reader.list::<FirewallRule>()? {
            let Ok(net) = rule.network.parse::<Net>() else {
                continue;
            };
            let scope = Scope {
                services: rule.services,
                transports: rule.transports,
            };
            match rule.action {
                FirewallAction::Allow => snap.allow.push((net, scope)),
                FirewallAction::Block => snap.block.push((net, scope)),
            }
        }
        let now = now_millis();
        for ban in reader.list::<Ban>()? {
            if ban.until > now
                && let Ok(ip) = ban.ip.parse::<IpAddr>()
            {
                snap.bans.insert(ip.to_canonical(), ban.until);
            }
        }
        snap.default_block = reader
            .get::<Setting>(DEFAULT_POLICY_KEY)?
            .is_some_and(|s| s.value == "block");
        let replicated: Vec<IpAddr> = snap.bans.keys().copied().collect();
        *self
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(snap);
        // A local ban that has been applied, lifted or has run out is no longer needed here.
        self.local_bans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|ip, until| *until > now && !replicated.contains(ip));
        metrics::gauge!("pbx_security_bans_active").set(self.snapshot().bans.len() as f64);
        Ok(())
    }

    /// Reloads whenever this node applies new entries (debounced).
    pub(crate) async fn follow(self: Arc<Self>, reader: StateReader) {
        let mut applied = reader.watch_applied();
        loop {
            if let Err(e) = self.reload(&reader) {
                tracing::warn!(error = %e, "reloading firewall rules and bans failed");
            }
            // Bans also run out with no new entry: look again at least every second.
            let _ = tokio::time::timeout(Duration::from_secs(1), applied.changed()).await;
            tokio::time::sleep(REFRESH_DEBOUNCE).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn scope(services: &[Service], transports: &[Transport]) -> Scope {
        Scope {
            services: services.to_vec(),
            transports: transports.to_vec(),
        }
    }

    #[test]
    fn allow_beats_block_beats_ban_beats_policy() {
        let gate = Gate::new(vec!["127.0.0.1/32".parse().unwrap()]);
        let snap = Snapshot {
            allow: vec![("198.18.1.0/24".parse().unwrap(), scope(&[], &[]))],
            block: vec![
                (
                    "198.18.0.0/16".parse().unwrap(),
                    scope(&[Service::Sip], &[]),
                ),
                ("203.0.113.0/24".parse().unwrap(), scope(&[], &[])),
                (
                    "192.0.2.0/24".parse().unwrap(),
                    scope(&[], &[Transport::Udp]),
                ),
            ],
            bans: [(ip("198.19.0.9"), u64::MAX)].into_iter().collect(),
            default_block: false,
        };
        *gate.snapshot.write().unwrap() = Arc::new(snap);
        let (sip, api, udp, tls) = (Service::Sip, Service::Api, Transport::Udp, Transport::Tls);
        assert_eq!(gate.check(ip("127.0.0.1"), sip, udp), Ok(()));
        assert_eq!(gate.check(ip("198.18.1.5"), sip, udp), Ok(()), "allow wins");
        assert_eq!(gate.check(ip("198.18.2.5"), sip, udp), Err(Refusal::Rule));
        assert_eq!(
            gate.check(ip("198.18.2.5"), api, tls),
            Ok(()),
            "a rule for SIP only"
        );
        assert_eq!(gate.check(ip("192.0.2.7"), sip, udp), Err(Refusal::Rule));
        assert_eq!(
            gate.check(ip("192.0.2.7"), sip, tls),
            Ok(()),
            "a rule for UDP only"
        );
        assert_eq!(gate.check(ip("198.19.0.9"), api, tls), Err(Refusal::Ban));
        assert_eq!(
            gate.check(ip("::ffff:203.0.113.7"), api, tls),
            Err(Refusal::Rule)
        );
        gate.ban_locally(ip("192.0.2.1"), now_millis() + 60_000);
        assert_eq!(gate.check(ip("192.0.2.1"), sip, tls), Err(Refusal::Ban));
        assert!(gate.is_allowlisted(ip("198.18.1.5"), sip, udp));
        assert!(!gate.is_allowlisted(ip("198.18.2.5"), sip, udp));
        // A trunk's address is let in for SIP and media despite a block rule or a ban, never for
        // the API.
        gate.set_providers(vec![
            "198.18.2.5/32".parse().unwrap(),
            "198.19.0.9/32".parse().unwrap(),
        ]);
        assert_eq!(gate.check(ip("198.18.2.5"), sip, udp), Ok(()));
        assert_eq!(gate.check(ip("198.19.0.9"), Service::Media, udp), Ok(()));
        assert_eq!(gate.check(ip("198.19.0.9"), api, tls), Err(Refusal::Ban));
        assert!(gate.is_allowlisted(ip("198.18.2.5"), sip, udp));
        assert!(!gate.is_allowlisted(ip("198.18.2.5"), api, tls));
        gate.set_providers(Vec::new());
        assert_eq!(gate.check(ip("198.18.2.5"), sip, udp), Err(Refusal::Rule));
    }
}
