//! Which trunk an inbound request comes from, by its source address: a trunk's networks, the
//! addresses its host (and its RFC 3263 servers), outbound proxy and extra peer hosts resolve to.
//! Re-resolved every refresh interval and whenever the trunks change; a name that stops resolving
//! keeps nothing (its calls are then challenged like anyone's).

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use storage::routing::Trunk;

use super::Trunks;
use crate::security::net::Net;

/// The addresses of every enabled trunk.
#[derive(Default)]
pub(crate) struct Sources {
    entries: RwLock<Vec<(Net, String)>>,
}

impl Sources {
    /// The enabled trunk `ip` belongs to, if any.
    pub(crate) fn trunk_for(&self, ip: IpAddr) -> Option<String> {
        let entries = self
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .iter()
            .find(|(net, _)| net.contains(ip))
            .map(|(_, name)| name.clone())
    }

    fn replace(&self, entries: Vec<(Net, String)>) {
        *self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = entries;
    }
}

/// One host's addresses as single-address networks.
fn single(ip: IpAddr) -> Option<Net> {
    ip.to_canonical().to_string().parse().ok()
}

impl Trunks {
    /// The networks trunk `t`'s requests may come from.
    async fn networks_of(&self, t: &Trunk) -> Vec<Net> {
        let mut nets: Vec<Net> = t
            .peer_networks
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        let mut hosts: Vec<&str> = vec![t.host.as_str()];
        hosts.extend(t.peer_hosts.iter().map(String::as_str));
        let proxy = super::destination::proxy(t);
        if let Some((host, _)) = &proxy {
            hosts.push(host);
        }
        for host in hosts {
            match self.dns.addresses(host).await {
                Ok(ips) => nets.extend(ips.into_iter().filter_map(single)),
                Err(e) => tracing::debug!(trunk = %t.name, host, error = %e, "no addresses"),
            }
        }
        // The provider's SIP servers (SRV targets) send its calls too.
        let dest = super::destination::provider(t);
        if let Ok(peers) = self.dns.targets(&dest).await {
            nets.extend(peers.into_iter().filter_map(|p| single(p.addr.ip())));
        }
        nets
    }

    /// Rebuilds the address table now.
    pub(crate) async fn refresh_sources(&self) {
        let tables = self.tables();
        let mut entries = Vec::new();
        for t in tables.trunks.values().filter(|t| t.enabled) {
            for net in self.networks_of(t).await {
                entries.push((net, t.name.clone()));
            }
        }
        // A provider's signalling and media are let through the gate and never banned as a flood.
        self.security
            .gate()
            .set_providers(entries.iter().map(|(net, _)| *net).collect());
        self.sources.replace(entries);
    }
}

/// Keeps the address table fresh for the life of the SIP service.
pub(crate) async fn refresh(trunks: Arc<Trunks>, every: Duration) {
    let mut seen = None;
    let mut last = tokio::time::Instant::now();
    loop {
        let version = trunks.cluster.reader().routing_version();
        if seen != Some(version) || last.elapsed() >= every {
            trunks.refresh_sources().await;
            seen = Some(version);
            last = tokio::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
