//! Finding a provider's servers (RFC 3263) with hickory-resolver: the pure decisions are
//! `pbx_sip::rfc3263`'s, the queries are here. Answers are cached by hickory for their TTL, and every
//! lookup is awaited in the task that needs it (a registration, a call), never in the SIP loop.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use rand::Rng as _;

use pbx_sip::rfc3263::{self, Destination, Naptr, Plan, SipTransport, Srv, TargetError};
use pbx_sip::transaction::{Peer, Transport};

/// The transports the PBX reaches servers over.
const SUPPORTED: &[SipTransport] = &SipTransport::ALL;

/// Most servers tried for one destination.
pub(crate) const MAX_TARGETS: usize = 16;

/// Why a destination has no server to send to.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DnsError {
    #[error("{0}")]
    BadHost(#[from] TargetError),
    #[error("{name} does not resolve: {reason}")]
    Unresolved { name: String, reason: String },
    #[error("reading the system's DNS configuration: {0}")]
    System(String),
}

/// The resolver of one node.
pub(crate) struct Dns {
    resolver: TokioResolver,
}

fn transport_of(t: SipTransport) -> Transport {
    match t {
        SipTransport::Udp => Transport::Udp,
        SipTransport::Tcp => Transport::Tcp,
        SipTransport::Tls => Transport::Tls,
    }
}

/// A name as a query takes it: fully qualified, so no search domain is appended.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

fn text(name: &hickory_resolver::Name) -> String {
    name.to_ascii().trim_end_matches('.').to_owned()
}

impl Dns {
    /// A resolver asking `servers` (UDP, then TCP for truncated answers), or the system's when empty.
    pub(crate) fn new(servers: &[SocketAddr]) -> Result<Self, DnsError> {
        let provider = TokioConnectionProvider::default();
        let mut builder = if servers.is_empty() {
            TokioResolver::builder(provider).map_err(|e| DnsError::System(e.to_string()))?
        } else {
            let group: Vec<NameServerConfig> = servers
                .iter()
                .flat_map(|s| {
                    [
                        NameServerConfig::new(*s, Protocol::Udp),
                        NameServerConfig::new(*s, Protocol::Tcp),
                    ]
                })
                .collect();
            let config = ResolverConfig::from_parts(None, Vec::new(), group);
            TokioResolver::builder_with_config(config, provider)
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        Ok(Self {
            resolver: builder.build(),
        })
    }

    /// The servers for `dest`, in the order to try them (RFC 3263 §4: NAPTR, SRV by priority and
    /// weight, then A/AAAA). At most [`MAX_TARGETS`].
    pub(crate) async fn targets(&self, dest: &Destination) -> Result<Vec<Peer>, DnsError> {
        let mut out = Vec::new();
        match rfc3263::plan(dest)? {
            Plan::Ip {
                addr,
                port,
                transport,
            } => out.push(peer(addr, port, transport)),
            Plan::HostPort {
                host,
                port,
                transport,
            } => self.hosts(&host, port, transport, &mut out).await?,
            Plan::Naptr { domain } => {
                let naptr = self.naptr(&domain).await;
                let mut names = rfc3263::srv_names_from_naptr(&naptr, dest.secure, SUPPORTED);
                if names.is_empty() {
                    names = rfc3263::default_srv_names(&domain, dest.secure);
                    names.retain(|(_, t)| SUPPORTED.contains(t));
                }
                self.srv(&names, &mut out).await;
            }
            Plan::Srv { names } => self.srv(&names, &mut out).await,
        }
        if out.is_empty() {
            // No usable SRV record: the host's own addresses (§4.2).
            if let Plan::HostPort {
                host,
                port,
                transport,
            } = rfc3263::fallback(dest)?
            {
                self.hosts(&host, port, transport, &mut out).await?;
            }
        }
        out.truncate(MAX_TARGETS);
        Ok(out)
    }

    /// The addresses of `host` (an IP literal is itself), for matching inbound sources.
    pub(crate) async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let found = self
            .resolver
            .lookup_ip(fqdn(host))
            .await
            .map_err(|e| unresolved(host, &e))?;
        Ok(found.iter().take(MAX_TARGETS).collect())
    }

    async fn hosts(
        &self,
        host: &str,
        port: u16,
        transport: SipTransport,
        out: &mut Vec<Peer>,
    ) -> Result<(), DnsError> {
        for ip in self.addresses(host).await? {
            out.push(peer(ip, port, transport));
        }
        Ok(())
    }

    async fn naptr(&self, domain: &str) -> Vec<Naptr> {
        let Ok(found) = self.resolver.lookup(fqdn(domain), RecordType::NAPTR).await else {
            return Vec::new();
        };
        found
            .iter()
            .filter_map(|r| match r {
                RData::NAPTR(n) => Some(Naptr {
                    order: n.order(),
                    preference: n.preference(),
                    flags: String::from_utf8_lossy(n.flags()).into_owned(),
                    services: String::from_utf8_lossy(n.services()).into_owned(),
                    replacement: text(n.replacement()),
                }),
                _ => None,
            })
            .take(rfc3263::MAX_NAPTR)
            .collect()
    }

    /// Every server of the SRV `names`, in order; a name without records is skipped.
    async fn srv(&self, names: &[(String, SipTransport)], out: &mut Vec<Peer>) {
        for (name, transport) in names {
            let Ok(found) = self.resolver.srv_lookup(fqdn(name)).await else {
                continue;
            };
            let records: Vec<Srv> = found
                .iter()
                .take(rfc3263::MAX_SRV)
                .map(|s| Srv {
                    priority: s.priority(),
                    weight: s.weight(),
                    port: s.port(),
                    target: text(s.target()),
                })
                .collect();
            let ordered = {
                let mut rng = rand::thread_rng();
                rfc3263::order_srv(&records, &mut |total| rng.gen_range(0..=total))
            };
            for srv in ordered {
                if out.len() >= MAX_TARGETS {
                    return;
                }
                // A target that does not resolve is skipped: the next one may.
                if let Ok(ips) = self.addresses(&srv.target).await {
                    out.extend(ips.into_iter().map(|ip| peer(ip, srv.port, *transport)));
                }
            }
            if !out.is_empty() {
                // The first name that gives servers decides the transport (§4.1).
                return;
            }
        }
    }
}

fn peer(ip: IpAddr, port: u16, transport: SipTransport) -> Peer {
    Peer {
        transport: transport_of(transport),
        addr: SocketAddr::new(ip, port),
    }
}

fn unresolved(name: &str, e: &ResolveError) -> DnsError {
    DnsError::Unresolved {
        name: name.to_owned(),
        reason: e.to_string(),
    }
}
