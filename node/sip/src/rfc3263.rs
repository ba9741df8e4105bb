//! Which server to send a request to (RFC 3263 §4, with RFC 2782 for SRV), as pure decisions: the
//! node does the DNS queries and feeds the records in; this module says what to query and in which
//! order to try the answers.
//!
//! The steps, for a target [`Destination`] (the host, port, `transport` parameter and scheme of
//! the URI to send to):
//!
//! 1. [`plan`] says what to look up (§4.1, §4.2):
//!    * an IP literal needs no DNS: [`Plan::Ip`] (port: the URI's, else the transport's default);
//!    * a host name with an explicit port: A/AAAA only, [`Plan::HostPort`];
//!    * a transport parameter but no port: SRV for that transport, [`Plan::Srv`];
//!    * neither: NAPTR first, [`Plan::Naptr`].
//!
//!    Without a transport parameter the transport is UDP for `sip:` and TLS (over TCP) for `sips:`.
//!    `sips:` always means TLS: a `transport` parameter naming UDP or TCP is overridden (RFC 5630
//!    §3.1.3 rules out SIPS over UDP; `transport=tcp` on a SIPS URI means TLS over TCP).
//! 2. NAPTR answers go through [`srv_names_from_naptr`]; if that gives nothing (no records, or
//!    none usable), [`default_srv_names`] says which SRV names to query instead.
//! 3. Each SRV answer goes through [`order_srv`] (priority, then weighted random order).
//! 4. If no SRV name gives a usable record, [`fallback`] is the A/AAAA lookup at the default port.
//!
//! Input is bounded: at most [`MAX_NAPTR`] NAPTR and [`MAX_SRV`] SRV records of one answer are
//! considered (the first ones, in the order given); DNS names longer than [`MAX_NAME_LEN`] or
//! holding characters other than letters, digits, `-`, `_` and `.` are dropped (in records) or
//! refused (as the target host).

use std::net::IpAddr;

#[cfg(test)]
mod tests;

/// Most NAPTR records of one answer considered.
pub const MAX_NAPTR: usize = 32;
/// Most SRV records of one answer considered.
pub const MAX_SRV: usize = 32;
/// Longest DNS name in text form (RFC 1035 §2.3.4: 255 octets on the wire).
pub const MAX_NAME_LEN: usize = 253;

/// The transports SIP is sent over here. `Tls` is TLS over TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SipTransport {
    Udp,
    Tcp,
    Tls,
}

impl SipTransport {
    pub const ALL: [Self; 3] = [Self::Udp, Self::Tcp, Self::Tls];

    /// The name as a Via header writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
        }
    }

    /// Reads a URI's `transport` parameter (case-insensitive); `None` for transports not
    /// supported here (SCTP, WS, ...).
    pub fn from_param(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(value))
    }

    /// The NAPTR service field for this transport (RFC 3263 §4.1).
    const fn naptr_service(self) -> &'static str {
        match self {
            Self::Udp => "SIP+D2U",
            Self::Tcp => "SIP+D2T",
            Self::Tls => "SIPS+D2T",
        }
    }

    /// The SRV service and protocol labels (RFC 3263 §4.2): TLS is `_sips._tcp`.
    const fn srv_labels(self) -> &'static str {
        match self {
            Self::Udp => "_sip._udp.",
            Self::Tcp => "_sip._tcp.",
            Self::Tls => "_sips._tcp.",
        }
    }
}

impl std::fmt::Display for SipTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The port to use when neither the URI nor SRV gives one (RFC 3261 §19.1.2).
pub const fn default_port(transport: SipTransport) -> u16 {
    match transport {
        SipTransport::Udp | SipTransport::Tcp => 5060,
        SipTransport::Tls => 5061,
    }
}

/// One NAPTR record (RFC 3403) as the resolver returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub services: String,
    pub replacement: String,
}

/// One SRV record (RFC 2782) as the resolver returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// Where a request goes, as its URI says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// A host name or an IP literal (IPv6 with or without brackets).
    pub host: String,
    pub port: Option<u16>,
    /// The URI's `transport` parameter, if any.
    pub transport: Option<SipTransport>,
    /// A `sips:` URI.
    pub secure: bool,
}

/// What to look up first for a [`Destination`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The host is an IP literal: send there, no DNS.
    Ip {
        addr: IpAddr,
        port: u16,
        transport: SipTransport,
    },
    /// Look up A/AAAA records of `host` and send to `port`.
    HostPort {
        host: String,
        port: u16,
        transport: SipTransport,
    },
    /// Query NAPTR records of `domain`, then see [`srv_names_from_naptr`].
    Naptr { domain: String },
    /// Query SRV records of these names, in order, each for its transport.
    Srv { names: Vec<(String, SipTransport)> },
}

/// Why a [`Destination`] cannot be resolved.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("empty host")]
    EmptyHost,
    /// The host, or the SRV name made from it, is over [`MAX_NAME_LEN`].
    #[error("host name too long")]
    NameTooLong,
    /// A character not allowed in a DNS name, at this 1-based position of the host.
    #[error("invalid character in host name at position {position}")]
    BadHost { position: usize },
    #[error("port 0")]
    PortZero,
}

/// The transport when DNS does not choose one (§4.1): the parameter's, but always TLS for `sips:`.
fn transport_of(dest: &Destination) -> SipTransport {
    if dest.secure {
        SipTransport::Tls
    } else {
        dest.transport.unwrap_or(SipTransport::Udp)
    }
}

/// An IP literal host, bracketed IPv6 included.
fn ip_literal(host: &str) -> Option<IpAddr> {
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    inner.parse().ok()
}

/// A DNS name we are willing to query: bounded, and only characters that cannot confuse a
/// resolver or a log line.
fn check_name(name: &str) -> Result<(), TargetError> {
    if name.is_empty() {
        return Err(TargetError::EmptyHost);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(TargetError::NameTooLong);
    }
    let ok = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    match name.bytes().position(|c| !ok(c)) {
        Some(i) => Err(TargetError::BadHost { position: i + 1 }),
        None => Ok(()),
    }
}

/// `name` is a usable target or replacement in a record: valid, and not the root `.`.
fn usable_name(name: &str) -> bool {
    name != "." && check_name(name).is_ok()
}

/// The SRV name for `transport` at `domain`, if within [`MAX_NAME_LEN`].
fn srv_name(transport: SipTransport, domain: &str) -> Option<(String, SipTransport)> {
    let name = format!("{}{domain}", transport.srv_labels());
    (name.len() <= MAX_NAME_LEN).then_some((name, transport))
}

fn check_port(dest: &Destination) -> Result<(), TargetError> {
    match dest.port {
        Some(0) => Err(TargetError::PortZero),
        _ => Ok(()),
    }
}

/// What to look up first for `dest` (see the module documentation, step 1).
pub fn plan(dest: &Destination) -> Result<Plan, TargetError> {
    check_port(dest)?;
    let transport = transport_of(dest);
    if let Some(addr) = ip_literal(&dest.host) {
        let port = dest.port.unwrap_or(default_port(transport));
        return Ok(Plan::Ip {
            addr,
            port,
            transport,
        });
    }
    check_name(&dest.host)?;
    let host = dest.host.clone();
    Ok(match (dest.port, dest.transport) {
        (Some(port), _) => Plan::HostPort {
            host,
            port,
            transport,
        },
        (None, Some(_)) => {
            let name = srv_name(transport, &host).ok_or(TargetError::NameTooLong)?;
            Plan::Srv { names: vec![name] }
        }
        (None, None) => Plan::Naptr { domain: host },
    })
}

/// Where to send when DNS gave no usable NAPTR or SRV record (§4.2): the A/AAAA records of the
/// host at the URI's port, else the transport's default port. For an IP literal, the same as
/// [`plan`].
pub fn fallback(dest: &Destination) -> Result<Plan, TargetError> {
    match plan(dest)? {
        ip @ Plan::Ip { .. } => Ok(ip),
        _ => {
            let transport = transport_of(dest);
            Ok(Plan::HostPort {
                host: dest.host.clone(),
                port: dest.port.unwrap_or(default_port(transport)),
                transport,
            })
        }
    }
}

/// The transport a NAPTR record offers, if we may use it.
fn naptr_transport(
    record: &Naptr,
    secure: bool,
    supported: &[SipTransport],
) -> Option<SipTransport> {
    if !record.flags.eq_ignore_ascii_case("s") || !usable_name(&record.replacement) {
        return None;
    }
    let transport = SipTransport::ALL
        .into_iter()
        .find(|t| t.naptr_service().eq_ignore_ascii_case(&record.services))?;
    let allowed = supported.contains(&transport) && (!secure || transport == SipTransport::Tls);
    allowed.then_some(transport)
}

/// The SRV names to query, in order, from a NAPTR answer (§4.1): only records with flag `s` and
/// service `SIP+D2U`, `SIP+D2T` or `SIPS+D2T` for a transport in `supported`; for a `sips:` URI
/// only `SIPS+D2T`. Sorted by order, then preference, ties in the order given; a name offered
/// twice for one transport is kept once. A `sip:` URI keeps `SIPS+D2T` records when TLS is
/// supported, as §4.1 allows. Empty: use [`default_srv_names`].
pub fn srv_names_from_naptr(
    records: &[Naptr],
    secure: bool,
    supported: &[SipTransport],
) -> Vec<(String, SipTransport)> {
    let mut usable: Vec<(u16, u16, &str, SipTransport)> = records
        .iter()
        .take(MAX_NAPTR)
        .filter_map(|r| {
            let transport = naptr_transport(r, secure, supported)?;
            Some((r.order, r.preference, r.replacement.as_str(), transport))
        })
        .collect();
    usable.sort_by_key(|&(order, preference, ..)| (order, preference));
    let mut names: Vec<(String, SipTransport)> = Vec::with_capacity(usable.len());
    for (_, _, name, transport) in usable {
        if !names.iter().any(|(n, t)| n == name && *t == transport) {
            names.push((name.to_owned(), transport));
        }
    }
    names
}

/// The SRV names to query when NAPTR gave nothing (§4.1), in order of preference: for `sips:`
/// only `_sips._tcp`; for `sip:` `_sips._tcp`, `_sip._tcp`, `_sip._udp`. TLS first because a
/// server that publishes it should get encrypted signalling, TCP before UDP because it carries
/// messages of any size (RFC 3261 §18.1.1). The caller drops transports it does not support.
/// Empty if `domain` is not a usable DNS name.
pub fn default_srv_names(domain: &str, secure: bool) -> Vec<(String, SipTransport)> {
    if check_name(domain).is_err() {
        return Vec::new();
    }
    let transports: &[SipTransport] = if secure {
        &[SipTransport::Tls]
    } else {
        &[SipTransport::Tls, SipTransport::Tcp, SipTransport::Udp]
    };
    transports
        .iter()
        .filter_map(|&t| srv_name(t, domain))
        .collect()
}

/// The order to try the servers of one SRV answer (RFC 2782): by priority, lowest first; within a
/// priority, repeated weighted random selection, weight-0 records placed first before each draw so
/// they are chosen only when the draw is 0. `pick(total)` must return a number in `0..=total`
/// (larger answers are taken as `total`). A lone `.` target means the service is not available
/// here (empty result); `.` among other records, invalid targets and port 0 are dropped.
pub fn order_srv(records: &[Srv], pick: &mut impl FnMut(u32) -> u32) -> Vec<Srv> {
    let considered = &records[..records.len().min(MAX_SRV)];
    let mut usable: Vec<&Srv> = considered
        .iter()
        .filter(|r| r.port != 0 && usable_name(&r.target))
        .collect();
    // Stable: within a priority the records keep the order given.
    usable.sort_by_key(|r| r.priority);
    let mut ordered = Vec::with_capacity(usable.len());
    for group in usable.chunk_by(|a, b| a.priority == b.priority) {
        weighted_order(group, pick, &mut ordered);
    }
    ordered
}

/// RFC 2782's selection within one priority: zero weights first, draw `0..=sum`, take the first
/// record whose running sum reaches the draw, repeat with the rest.
fn weighted_order(group: &[&Srv], pick: &mut impl FnMut(u32) -> u32, out: &mut Vec<Srv>) {
    let mut left: Vec<&Srv> = group
        .iter()
        .filter(|r| r.weight == 0)
        .chain(group.iter().filter(|r| r.weight != 0))
        .copied()
        .collect();
    while !left.is_empty() {
        // At most MAX_SRV weights of at most u16::MAX: no overflow in u32.
        let total: u32 = left.iter().map(|r| u32::from(r.weight)).sum();
        let draw = pick(total).min(total);
        let mut running = 0u32;
        let chosen = left
            .iter()
            .position(|r| {
                running += u32::from(r.weight);
                running >= draw
            })
            .unwrap_or(0);
        out.push(left.remove(chosen).clone());
    }
}
