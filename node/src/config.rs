//! The node's TOML configuration file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Upper bound on the configuration file: it is small; anything bigger is a mistake.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Everything one node needs to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Raft node id, unique in the cluster and bound to the node's certificate.
    pub node_id: u64,
    /// Human name shown in the API.
    #[serde(default)]
    pub name: Option<String>,
    /// Where RocksDB and snapshots live.
    pub data_dir: PathBuf,
    pub cluster: ClusterSection,
    pub api: ApiSection,
    pub tls: TlsSection,
    #[serde(default)]
    pub sip: SipSection,
    #[serde(default)]
    pub media: MediaSection,
    #[serde(default)]
    pub calls: CallsSection,
    #[serde(default)]
    pub trunks: TrunksSection,
    #[serde(default)]
    pub security: SecuritySection,
    #[serde(default)]
    pub events: EventsSection,
    #[serde(default)]
    pub vip: Option<VipSection>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// QUIC address Raft RPC listens on.
    pub listen: SocketAddr,
    /// Address other nodes dial (defaults to `listen`).
    #[serde(default)]
    pub advertise: Option<String>,
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    #[serde(default = "default_election_min_ms")]
    pub election_min_ms: u64,
    #[serde(default = "default_election_max_ms")]
    pub election_max_ms: u64,
    /// Under load, how long the leader waits after an entry commits before it cuts the next one, so
    /// that each entry carries more writes (0: never waits; at most 20). Only while writes keep
    /// arriving during commits: a lone write never waits.
    #[serde(default = "default_commit_linger_ms")]
    pub commit_linger_ms: u64,
    /// Build a snapshot after this many applied entries.
    #[serde(default = "default_snapshot_after_logs")]
    pub snapshot_after_logs: u64,
    /// Log entries kept behind a snapshot, so a briefly absent node catches up without one.
    #[serde(default = "default_keep_logs_after_snapshot")]
    pub keep_logs_after_snapshot: u64,
    /// Disk space (MiB) the audio store leaves free on this node: a file that would eat into it is
    /// refused.
    #[serde(default = "default_audio_reserve_mib")]
    pub audio_reserve_mib: u64,
    /// Speak at most this cluster protocol (`cluster status` shows each node's): holds an upgraded
    /// node back so the changes only it could read are not made yet. Unset: the newest this build
    /// speaks.
    #[serde(default)]
    pub max_protocol: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// HTTPS admin API address.
    pub listen: SocketAddr,
    #[serde(default)]
    pub advertise: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Directory holding `ca.pem`, `node.pem` and `node-key.pem` (see `pbx cert`).
    pub dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipSection {
    /// Digest realm, written into the cluster record at `cluster init`.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Address for SIP over UDP; SIP over UDP is off when absent.
    #[serde(default)]
    pub udp: Option<SocketAddr>,
    /// Address for SIP over TCP.
    #[serde(default)]
    pub tcp: Option<SocketAddr>,
    /// Address for SIP over TLS (the node certificate is presented).
    #[serde(default)]
    pub tls: Option<SocketAddr>,
    /// Shortest registration accepted, seconds (`423` below).
    #[serde(default = "default_min_expires")]
    pub min_expires: u32,
    /// Longest registration granted, seconds.
    #[serde(default = "default_max_expires")]
    pub max_expires: u32,
    /// Contacts one extension may register at once.
    #[serde(default = "default_max_contacts")]
    pub max_contacts: usize,
    /// Digest algorithms offered, in this order. The default is MD5 alone: many clients read only the
    /// first challenge and know only MD5 (sipp), and some refuse a 401 that offers SHA-256 at all,
    /// whatever else it offers (baresip 1.0, older desk-phone firmware). A site whose phones all do
    /// SHA-256 sets `["SHA-256"]` (refusing MD5), or `["SHA-256", "MD5"]` for RFC 8760's order.
    #[serde(default = "default_digest_algorithms")]
    pub digest_algorithms: Vec<String>,
    /// SIP transactions in progress at most (about 1 KiB each); beyond it new requests get `503`.
    /// INVITE transactions count until their timers end (up to 32 s after the final response).
    #[serde(default = "default_max_transactions")]
    pub max_transactions: usize,
    /// Finished non-INVITE transactions over UDP kept to answer retransmissions for 32 s (RFC 3261
    /// Timer J), about 0.6 KB each. Past it the oldest is forgotten early: a late retransmission of
    /// it is handled as a new request. At N requests per second, 32·N keeps all of them.
    #[serde(default = "default_max_finished_transactions")]
    pub max_finished_transactions: usize,
    /// Seconds between OPTIONS pings to registered contacts; 0 turns qualifying off.
    #[serde(default = "default_qualify_interval_secs")]
    pub qualify_interval_secs: u64,
}

impl Default for SipSection {
    fn default() -> Self {
        Self {
            realm: default_realm(),
            udp: None,
            tcp: None,
            tls: None,
            min_expires: default_min_expires(),
            max_expires: default_max_expires(),
            max_contacts: default_max_contacts(),
            digest_algorithms: default_digest_algorithms(),
            qualify_interval_secs: default_qualify_interval_secs(),
            max_transactions: default_max_transactions(),
            max_finished_transactions: default_max_finished_transactions(),
        }
    }
}

/// The RTP relay: where the PBX's media ports are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSection {
    /// The address media sockets bind to and the SDP announces (the VIP in production). Defaults to
    /// the SIP UDP listener's address.
    #[serde(default)]
    pub address: Option<std::net::IpAddr>,
    /// First port of the RTP range (even; RTCP uses the port above each RTP port).
    #[serde(default = "default_rtp_port_min")]
    pub rtp_port_min: u16,
    /// Last port of the RTP range.
    #[serde(default = "default_rtp_port_max")]
    pub rtp_port_max: u16,
    /// A call whose media stops in both directions for this long is torn down; 0 disables.
    #[serde(default = "default_media_timeout_secs")]
    pub media_timeout_secs: u64,
    /// Latching: a side's RTP source may be learned only within this many seconds of its media
    /// being negotiated, or of the other side's answer.
    #[serde(default = "default_latch_window_secs")]
    pub latch_window_secs: u64,
}

impl Default for MediaSection {
    fn default() -> Self {
        Self {
            address: None,
            rtp_port_min: default_rtp_port_min(),
            rtp_port_max: default_rtp_port_max(),
            media_timeout_secs: default_media_timeout_secs(),
            latch_window_secs: default_latch_window_secs(),
        }
    }
}

/// Calls between extensions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsSection {
    /// Seconds a call rings before the caller gets `480`.
    #[serde(default = "default_ring_timeout_secs")]
    pub ring_timeout_secs: u64,
    /// Longest call, seconds; the PBX then hangs up both sides. 0 disables.
    #[serde(default = "default_max_call_secs")]
    pub max_call_secs: u64,
    /// Calls one extension may be in at once (as caller or callee).
    #[serde(default = "default_max_calls_per_extension")]
    pub max_calls_per_extension: usize,
    /// Call detail records older than this are deleted; 0 keeps them forever.
    #[serde(default = "default_cdr_retention_days")]
    pub cdr_retention_days: u64,
    /// Refuse calls whose caller hides its identity (`433 Anonymity Disallowed`); when off, such a
    /// caller is shown to the callee as anonymous.
    #[serde(default)]
    pub reject_anonymous: bool,
    /// A blind transfer whose target does not answer (or is busy) after the referrer hung up rings
    /// the referrer back; when off, the party left waiting is hung up.
    #[serde(default = "default_true")]
    pub transfer_ring_back: bool,
    /// While one phone holds the call, the other hears the PBX's music on hold (in G.711) instead
    /// of silence.
    #[serde(default = "default_true")]
    pub hold_music: bool,
    /// A recorded call is saved in files of this many seconds each: a failover loses at most the
    /// one being filled.
    #[serde(default = "default_recording_segment_secs")]
    pub recording_segment_secs: u64,
    /// Recordings are deleted after this many days; 0 keeps them until deleted.
    #[serde(default = "default_recording_retention_days")]
    pub recording_retention_days: u64,
}

fn default_recording_segment_secs() -> u64 {
    60
}

fn default_recording_retention_days() -> u64 {
    90
}

fn default_true() -> bool {
    true
}

impl Default for CallsSection {
    fn default() -> Self {
        Self {
            ring_timeout_secs: default_ring_timeout_secs(),
            max_call_secs: default_max_call_secs(),
            max_calls_per_extension: default_max_calls_per_extension(),
            cdr_retention_days: default_cdr_retention_days(),
            reject_anonymous: false,
            transfer_ring_back: true,
            hold_music: true,
            recording_segment_secs: default_recording_segment_secs(),
            recording_retention_days: default_recording_retention_days(),
        }
    }
}

/// Calls through SIP trunks: how providers are found and given up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunksSection {
    /// DNS servers for finding providers (RFC 3263), `ip:port`; empty uses `/etc/resolv.conf`.
    #[serde(default)]
    pub dns_servers: Vec<SocketAddr>,
    /// Seconds an outbound INVITE waits for any answer from one of a provider's servers before the
    /// next server (or trunk) is tried (RFC 3263 §4.3 says on a timeout; 32 s of Timer B is too long
    /// for a caller listening to silence).
    #[serde(default = "default_trunk_failover_secs")]
    pub failover_secs: u64,
    /// Seconds between refreshes of the addresses that inbound trunk calls may come from.
    #[serde(default = "default_trunk_refresh_secs")]
    pub address_refresh_secs: u64,
    /// PEM file of CAs a provider's TLS certificate may chain to, besides the public roots.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
}

fn default_trunk_failover_secs() -> u64 {
    4
}

fn default_trunk_refresh_secs() -> u64 {
    60
}

impl Default for TrunksSection {
    fn default() -> Self {
        Self {
            dns_servers: Vec::new(),
            failover_secs: default_trunk_failover_secs(),
            address_refresh_secs: default_trunk_refresh_secs(),
            tls_ca_file: None,
        }
    }
}

/// The event center: where notifications go out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    /// The mail relay for e-mail notifications: `host:port`, where host is a name, an IPv4 address or
    /// a bracketed IPv6 address. With TLS, its certificate must name that host.
    #[serde(default)]
    pub smtp_server: Option<String>,
    #[serde(default = "default_mail_from")]
    pub mail_from: String,
    /// STARTTLS to the relay: `off` (plain SMTP, as to a local MTA), `opportunistic` (when offered;
    /// a man in the middle can strip the offer) or `required`.
    #[serde(default)]
    pub starttls: Starttls,
    /// SMTP AUTH (PLAIN or LOGIN, whichever the relay offers); needs `starttls = "required"`.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// An extra CA (PEM) trusted for the relay's certificate, beside the public roots.
    #[serde(default)]
    pub smtp_extra_ca_file: Option<PathBuf>,
    /// An extra CA (PEM) trusted for webhook receivers, e.g. a private CA.
    #[serde(default)]
    pub extra_ca_file: Option<PathBuf>,
    /// Events older than this are deleted; 0 keeps them forever.
    #[serde(default = "default_event_retention_days")]
    pub retention_days: u64,
}

impl Default for EventsSection {
    fn default() -> Self {
        Self {
            smtp_server: None,
            mail_from: default_mail_from(),
            starttls: Starttls::default(),
            username: None,
            password: None,
            smtp_extra_ca_file: None,
            extra_ca_file: None,
            retention_days: default_event_retention_days(),
        }
    }
}

/// How the mail relay's connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Starttls {
    /// Plain SMTP. The default: a local MTA often offers STARTTLS with a self-signed certificate,
    /// which `opportunistic` would then refuse.
    #[default]
    Off,
    Opportunistic,
    Required,
}

/// A secret from the configuration file: written back by `to_toml`, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl EventsSection {
    /// The relay's host and port, if one is configured and well formed.
    pub fn smtp_host_port(&self) -> Option<(&str, u16)> {
        split_host_port(self.smtp_server.as_deref()?)
    }

    /// The `[events]` rules `NodeConfig::load` enforces; the mail relay checks them again when built.
    pub fn check(&self) -> Result<(), String> {
        let Some(server) = &self.smtp_server else {
            if self.username.is_some()
                || self.password.is_some()
                || self.smtp_extra_ca_file.is_some()
                || self.starttls != Starttls::Off
            {
                return Err(
                    "events.starttls, username, password and smtp_extra_ca_file need \
                            events.smtp_server"
                        .into(),
                );
            }
            return Ok(());
        };
        if split_host_port(server).is_none() {
            return Err(format!(
                "events.smtp_server {server:?} must be host:port (a name, an IPv4 address or \
                 [an IPv6 address], then a port from 1 to 65535)"
            ));
        }
        if !crate::events::valid_address(&self.mail_from) {
            return Err(format!(
                "events.mail_from {:?} must be a plain address such as pbx@example.com",
                self.mail_from
            ));
        }
        match (&self.username, &self.password) {
            (None, None) => {}
            (Some(user), Some(password)) => {
                // PLAIN and LOGIN carry the password readably: only over a TLS the relay cannot skip.
                if self.starttls != Starttls::Required {
                    return Err(
                        "events.username and events.password need events.starttls = \"required\" \
                         (the password is never sent in clear)"
                            .into(),
                    );
                }
                let printable =
                    |s: &str| !s.is_empty() && s.len() <= 256 && !s.contains(char::is_control);
                if !printable(user) {
                    return Err(
                        "events.username must be 1 to 256 bytes without control characters".into(),
                    );
                }
                if !printable(password.expose()) {
                    return Err(
                        "events.password must be 1 to 256 bytes without control characters".into(),
                    );
                }
            }
            _ => return Err("events.username and events.password go together".into()),
        }
        if self.smtp_extra_ca_file.is_some() && self.starttls == Starttls::Off {
            return Err(
                "events.smtp_extra_ca_file needs events.starttls = \"opportunistic\" or \
                        \"required\""
                    .into(),
            );
        }
        Ok(())
    }
}

/// `host:port`, `a.b.c.d:port` or `[v6]:port` into its parts (the IPv6 host without brackets).
fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
            .then_some((v6, port));
    }
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    name_ok.then_some((host, port))
}

fn default_mail_from() -> String {
    "pbx@localhost".to_owned()
}
fn default_event_retention_days() -> u64 {
    90
}

/// The gate and the automatic defence (defaults after a commercial PBX's: SIP 40 packets per 2 s,
/// HTTP 120 requests per 60 s, 5 failed logins per 10 minutes; a ban lasts 10 minutes and doubles for
/// each repeat within a day).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySection {
    /// Networks never blocked nor banned (CIDR), e.g. the office LAN or a monitoring host.
    #[serde(default)]
    pub trusted_networks: Vec<String>,
    #[serde(default = "default_sip_packets_limit")]
    pub sip_packets_limit: u32,
    #[serde(default = "default_sip_packets_window_secs")]
    pub sip_packets_window_secs: u64,
    #[serde(default = "default_api_requests_limit")]
    pub api_requests_limit: u32,
    #[serde(default = "default_api_requests_window_secs")]
    pub api_requests_window_secs: u64,
    #[serde(default = "default_auth_failures_limit")]
    pub auth_failures_limit: u32,
    #[serde(default = "default_auth_failures_window_secs")]
    pub auth_failures_window_secs: u64,
    #[serde(default = "default_ban_secs")]
    pub ban_secs: u64,
    #[serde(default = "default_max_ban_secs")]
    pub max_ban_secs: u64,
    /// Sources counted at once; under a flood from more, new ones go uncounted.
    #[serde(default = "default_max_tracked_sources")]
    pub max_tracked_sources: usize,
    /// A daily event lists SIP secrets and web passwords older than this; 0 turns it off.
    #[serde(default = "default_password_max_age_days")]
    pub password_max_age_days: u64,
    /// Audit log entries older than this are deleted (by the leader, hourly); 0 keeps them forever.
    #[serde(default = "default_audit_retention_days")]
    pub audit_retention_days: u64,
}

impl Default for SecuritySection {
    fn default() -> Self {
        Self {
            trusted_networks: Vec::new(),
            sip_packets_limit: default_sip_packets_limit(),
            sip_packets_window_secs: default_sip_packets_window_secs(),
            api_requests_limit: default_api_requests_limit(),
            api_requests_window_secs: default_api_requests_window_secs(),
            auth_failures_limit: default_auth_failures_limit(),
            auth_failures_window_secs: default_auth_failures_window_secs(),
            ban_secs: default_ban_secs(),
            max_ban_secs: default_max_ban_secs(),
            max_tracked_sources: default_max_tracked_sources(),
            password_max_age_days: default_password_max_age_days(),
            audit_retention_days: default_audit_retention_days(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipSection {
    /// The floating address with its prefix length, e.g. `198.18.0.100/24`. SIP listens on it (on
    /// the `[sip]` ports) and media binds it, on the owner only.
    pub address: String,
    pub interface: String,
    /// `linux`, `loopback` or `command`.
    pub driver: String,
    /// How long the owner keeps the VIP after the last heartbeat a quorum acknowledged. Must stay
    /// below `cluster.election_max_ms` (default: 100 ms below it) so that an owner cut off from its
    /// peers has dropped the address before anyone else can be elected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// Gratuitous ARP is repeated this often while owning (after three in the first 1.5 s).
    #[serde(default = "default_arp_refresh_secs")]
    pub arp_refresh_secs: u64,
    /// The `command` driver's script: called as `<command> acquire|release <address> <interface>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<PathBuf>,
    #[serde(default = "default_command_timeout_secs")]
    pub command_timeout_secs: u64,
}

impl VipSection {
    /// The lease to run with, checked against the election timeout.
    pub fn lease(&self, cluster: &ClusterSection) -> Result<std::time::Duration, String> {
        let max = cluster.election_max_ms.saturating_sub(50);
        let default = crate::vip::lease::max_lease(
            std::time::Duration::from_millis(cluster.election_max_ms),
            std::time::Duration::from_millis(VIP_LEASE_MARGIN_MS),
        );
        let ms = self.lease_ms.unwrap_or(default.as_millis() as u64);
        if ms < cluster.heartbeat_ms * 2 || ms > max {
            return Err(format!(
                "vip.lease_ms ({ms}) must be at least twice cluster.heartbeat_ms and at most \
                 cluster.election_max_ms - 50 ({max}): a longer lease could outlive an election"
            ));
        }
        Ok(std::time::Duration::from_millis(ms))
    }
}

/// Default distance between the VIP lease and the election timeout: time for a release to take effect
/// and for a heartbeat to travel. The kernel fence drops the VIP's traffic at the lease's own
/// deadline and the pledge only errs early, so this is slack, not a race: 100 ms keeps the owner's
/// lease at 300 ms (six confirmations) under the 400 ms election timeout.
const VIP_LEASE_MARGIN_MS: u64 = 100;

fn default_arp_refresh_secs() -> u64 {
    10
}
fn default_command_timeout_secs() -> u64 {
    10
}

// The survivors' vote lease (election_max) bounds a takeover: fast succession campaigns as soon as it
// has run out everywhere, and the new owner served the VIP 18–32 ms (p50) after that (BENCHMARKS,
// issue 18, seventh pass). 400 ms is eight heartbeats. When fast succession cannot act, openraft's own
// timer adds a random 250..400 ms.
fn default_heartbeat_ms() -> u64 {
    50
}
fn default_election_min_ms() -> u64 {
    250
}
fn default_election_max_ms() -> u64 {
    400
}
// Fewer, fuller entries under load: BENCHMARKS, issue 18, eighth pass.
fn default_commit_linger_ms() -> u64 {
    1
}
fn default_snapshot_after_logs() -> u64 {
    5000
}
fn default_keep_logs_after_snapshot() -> u64 {
    1000
}
fn default_audio_reserve_mib() -> u64 {
    512
}
fn default_min_expires() -> u32 {
    60
}
fn default_max_expires() -> u32 {
    3600
}
fn default_max_contacts() -> usize {
    10
}
fn default_max_transactions() -> usize {
    200_000
}
fn default_max_finished_transactions() -> usize {
    200_000
}
fn default_qualify_interval_secs() -> u64 {
    30
}
fn default_digest_algorithms() -> Vec<String> {
    vec!["MD5".to_owned()]
}
fn default_rtp_port_min() -> u16 {
    20_000
}
fn default_rtp_port_max() -> u16 {
    29_999
}
fn default_media_timeout_secs() -> u64 {
    60
}
fn default_latch_window_secs() -> u64 {
    5
}
fn default_ring_timeout_secs() -> u64 {
    30
}
fn default_max_call_secs() -> u64 {
    4 * 3600
}
fn default_max_calls_per_extension() -> usize {
    4
}
fn default_cdr_retention_days() -> u64 {
    365
}
fn default_sip_packets_limit() -> u32 {
    40
}
fn default_sip_packets_window_secs() -> u64 {
    2
}
fn default_api_requests_limit() -> u32 {
    120
}
fn default_api_requests_window_secs() -> u64 {
    60
}
fn default_auth_failures_limit() -> u32 {
    5
}
fn default_auth_failures_window_secs() -> u64 {
    600
}
fn default_ban_secs() -> u64 {
    600
}
fn default_max_ban_secs() -> u64 {
    86_400
}
fn default_password_max_age_days() -> u64 {
    90
}
fn default_audit_retention_days() -> u64 {
    365
}
fn default_max_tracked_sources() -> usize {
    100_000
}
fn default_realm() -> String {
    "pbx".to_owned()
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let read_err = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read_err)?.len();
        if len > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        let cfg: Self = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        cfg.validate().map_err(|reason| ConfigError::Invalid {
            path: path.to_owned(),
            reason,
        })?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if self.node_id == 0 {
            return Err("node_id must be 1 or more".into());
        }
        let c = &self.cluster;
        if c.heartbeat_ms == 0 || c.election_min_ms <= c.heartbeat_ms * 2 {
            return Err("cluster.election_min_ms must exceed twice cluster.heartbeat_ms".into());
        }
        if c.election_max_ms <= c.election_min_ms {
            return Err("cluster.election_max_ms must exceed cluster.election_min_ms".into());
        }
        if c.commit_linger_ms > 20 {
            return Err("cluster.commit_linger_ms must be at most 20".into());
        }
        let sip = &self.sip;
        if sip.realm.is_empty()
            || sip.realm.len() > 128
            || !sip.realm.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
        {
            return Err("sip.realm must be 1 to 128 printable characters without quotes".into());
        }
        if sip.min_expires == 0 || sip.max_expires < sip.min_expires {
            return Err("sip.min_expires must be positive and no more than sip.max_expires".into());
        }
        let known = |a: &String| a == "SHA-256" || a == "MD5";
        if sip.digest_algorithms.is_empty() || !sip.digest_algorithms.iter().all(known) {
            return Err("sip.digest_algorithms must list \"SHA-256\" and/or \"MD5\"".into());
        }
        if !(1..=100).contains(&sip.max_contacts) {
            return Err("sip.max_contacts must be 1 to 100".into());
        }
        let media = &self.media;
        if media.rtp_port_min < 1024 || media.rtp_port_max <= media.rtp_port_min {
            return Err(
                "media.rtp_port_min must be 1024 or more and below media.rtp_port_max".into(),
            );
        }
        if media.rtp_port_max - media.rtp_port_min < 7 {
            return Err("media port range must hold at least one call (8 ports)".into());
        }
        for net in &self.security.trusted_networks {
            if let Err(e) = net.parse::<crate::security::net::Net>() {
                return Err(format!("security.trusted_networks: {net:?}: {e}"));
            }
        }
        if !(1_000..=10_000_000).contains(&self.security.max_tracked_sources) {
            return Err("security.max_tracked_sources must be 1000 to 10000000".into());
        }
        if !(1..=10_000).contains(&self.calls.max_calls_per_extension) {
            return Err("calls.max_calls_per_extension must be 1 to 10000".into());
        }
        if self.calls.ring_timeout_secs == 0 || self.calls.ring_timeout_secs > 600 {
            return Err("calls.ring_timeout_secs must be 1 to 600".into());
        }
        self.events.check()?;
        if let Some(vip) = &self.vip {
            crate::vip::check(vip).map_err(|e| e.to_string())?;
            vip.lease(&self.cluster)?;
            if vip.arp_refresh_secs == 0 || vip.command_timeout_secs == 0 {
                return Err(
                    "vip.arp_refresh_secs and vip.command_timeout_secs must be positive".into(),
                );
            }
        }
        Ok(())
    }

    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("node-{}", self.node_id))
    }

    pub fn raft_advertise(&self) -> String {
        self.cluster
            .advertise
            .clone()
            .unwrap_or_else(|| self.cluster.listen.to_string())
    }

    pub fn api_advertise(&self) -> String {
        self.api
            .advertise
            .clone()
            .unwrap_or_else(|| self.api.listen.to_string())
    }

    pub fn to_toml(&self) -> String {
        // Serialising our own plain structs cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
node_id = 2
data_dir = "/var/lib/pbx"
[cluster]
listen = "127.0.0.1:7002"
[api]
listen = "127.0.0.1:8002"
[tls]
dir = "/etc/pbx/tls"
"#;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pbx.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let (_d, path) = write(SAMPLE);
        let cfg = NodeConfig::load(&path).unwrap();
        assert_eq!(cfg.cluster.heartbeat_ms, 50);
        assert_eq!(cfg.raft_advertise(), "127.0.0.1:7002");
        assert_eq!(cfg.display_name(), "node-2");
        assert_eq!(cfg.sip.realm, "pbx");
        // What we write we can read back.
        let (_d2, again) = write(&cfg.to_toml());
        assert_eq!(NodeConfig::load(&again).unwrap(), cfg);
    }

    #[test]
    fn the_production_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/pbx.toml.example");
        let cfg = NodeConfig::load(&path).unwrap();
        assert_eq!(cfg.sip.digest_algorithms, vec!["MD5".to_owned()]);
        assert_eq!(cfg.security.audit_retention_days, 365);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let (_d, path) = write(&format!("{SAMPLE}\nbogus = 1\n"));
        let err = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
        let (_d, path) = write(&SAMPLE.replace("node_id = 2", "node_id = 0"));
        assert!(
            NodeConfig::load(&path)
                .unwrap_err()
                .to_string()
                .contains("node_id")
        );
        let (_d, path) =
            write(&SAMPLE.replace("listen = \"127.0.0.1:7002\"", "listen = \"nowhere\""));
        assert!(matches!(
            NodeConfig::load(&path),
            Err(ConfigError::Parse { .. })
        ));
    }

    fn with_events(events: &str) -> Result<NodeConfig, ConfigError> {
        let (_d, path) = write(&format!("{SAMPLE}\n[events]\n{events}\n"));
        NodeConfig::load(&path)
    }

    #[test]
    fn mail_relay_settings_are_checked() {
        // Defaults: no relay, plain SMTP once one is named.
        let cfg = with_events("smtp_server = \"127.0.0.1:25\"").unwrap();
        assert_eq!(cfg.events.starttls, Starttls::Off);
        assert_eq!(cfg.events.smtp_host_port(), Some(("127.0.0.1", 25)));
        let good = [
            "smtp_server = \"mail.example.com:587\"\nstarttls = \"opportunistic\"",
            "smtp_server = \"[::1]:25\"\nmail_from = \"pbx@example.com\"",
            "smtp_server = \"mail.example.com:587\"\nstarttls = \"required\"\n\
             username = \"pbx\"\npassword = \"s3cret pass\"\nsmtp_extra_ca_file = \"/etc/pbx/relay-ca.pem\"",
        ];
        for g in good {
            let cfg = with_events(g).unwrap_or_else(|e| panic!("{g}: {e}"));
            // What we write we can read back, the password included.
            let (_d, again) = write(&cfg.to_toml());
            assert_eq!(NodeConfig::load(&again).unwrap(), cfg, "{g}");
        }
        let cfg = with_events(good[2]).unwrap();
        assert_eq!(cfg.events.smtp_host_port(), Some(("mail.example.com", 587)));
        assert_eq!(
            cfg.events.password.as_ref().map(Secret::expose),
            Some("s3cret pass")
        );
        assert!(!format!("{cfg:?}").contains("s3cret"));

        let bad = [
            ("smtp_server = \"mail.example.com\"", "host:port"),
            ("smtp_server = \"mail.example.com:0\"", "host:port"),
            ("smtp_server = \"::1:25\"", "host:port"),
            ("smtp_server = \"mail example.com:25\"", "host:port"),
            (
                "smtp_server = \"127.0.0.1:25\"\nmail_from = \"<pbx@x>\"",
                "mail_from",
            ),
            (
                "smtp_server = \"127.0.0.1:25\"\nmail_from = \"pbx\"",
                "mail_from",
            ),
            ("starttls = \"required\"", "need events.smtp_server"),
            (
                "username = \"pbx\"\npassword = \"p\"",
                "need events.smtp_server",
            ),
            (
                "smtp_server = \"127.0.0.1:25\"\nusername = \"pbx\"\npassword = \"p\"",
                "starttls = \"required\"",
            ),
            (
                "smtp_server = \"127.0.0.1:25\"\nstarttls = \"opportunistic\"\n\
                 username = \"pbx\"\npassword = \"p\"",
                "never sent in clear",
            ),
            (
                "smtp_server = \"127.0.0.1:25\"\nstarttls = \"required\"\nusername = \"pbx\"",
                "go together",
            ),
            (
                "smtp_server = \"127.0.0.1:25\"\nstarttls = \"required\"\n\
                 username = \"pbx\"\npassword = \"\"",
                "events.password",
            ),
            (
                "smtp_server = \"127.0.0.1:25\"\nstarttls = \"required\"\n\
                 username = \"p\\nbx\"\npassword = \"p\"",
                "events.username",
            ),
            (
                "smtp_server = \"127.0.0.1:25\"\nsmtp_extra_ca_file = \"/etc/pbx/ca.pem\"",
                "smtp_extra_ca_file",
            ),
        ];
        for (b, why) in bad {
            let err = with_events(b).unwrap_err().to_string();
            assert!(err.contains(why), "{b}: {err}");
        }
        // The password never appears in an error.
        let err = with_events(
            "smtp_server = \"127.0.0.1:25\"\nusername = \"pbx\"\npassword = \"hunter22\"",
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("hunter22"), "{err}");
        // An unknown mode is a parse error naming the choices.
        let err = with_events("smtp_server = \"127.0.0.1:25\"\nstarttls = \"yes\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("opportunistic"), "{err}");
    }

    fn with_vip(vip: &str) -> Result<NodeConfig, ConfigError> {
        let (_d, path) = write(&format!("{SAMPLE}\n[vip]\n{vip}\n"));
        NodeConfig::load(&path)
    }

    #[test]
    fn vip_settings_are_checked_against_the_election_timeout() {
        let base = "address = \"198.18.0.100/24\"\ninterface = \"eth0\"\ndriver = \"linux\"";
        let cfg = with_vip(base).unwrap();
        let vip = cfg.vip.as_ref().unwrap();
        // Default: 100 ms inside the default 400 ms election timeout.
        assert_eq!(vip.lease(&cfg.cluster).unwrap().as_millis(), 300);
        assert!(with_vip(&format!("{base}\nlease_ms = 350")).is_ok());
        let err = with_vip(&format!("{base}\nlease_ms = 360"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("could outlive an election"), "{err}");
        let bad = [
            "address = \"198.18.0.100\"\ninterface = \"eth0\"\ndriver = \"linux\"",
            "address = \"198.18.0.100/24\"\ninterface = \"eth0\"\ndriver = \"vrrp\"",
            "address = \"198.18.0.100/24\"\ninterface = \"lo\"\ndriver = \"loopback\"",
            "address = \"198.18.0.100/24\"\ninterface = \"eth0\"\ndriver = \"command\"",
        ];
        for b in bad {
            assert!(with_vip(b).is_err(), "{b}");
        }
    }
}
