//! The replicated data model: what every node of the cluster agrees on.
//!
//! Values are plain data. Validation of user input happens in the node before a command is proposed;
//! the state machine re-checks only what must be decided in log order (existence, uniqueness).

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::tables::{Record, Table};

/// Milliseconds since the Unix epoch, stamped by the proposer so that applying a command is deterministic.
pub type UnixMillis = u64;

/// Where a cluster member can be reached. Carried in Raft membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// Raft RPC (QUIC) address, `host:port`.
    pub raft_addr: String,
    /// Admin API (HTTPS) address, `host:port`.
    pub api_addr: String,
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "raft={} api={}", self.raft_addr, self.api_addr)
    }
}

/// SIP digest credentials, kept only as HA1 = H(username:realm:password) per algorithm (RFC 8760).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipCredentials {
    pub username: String,
    pub realm: String,
    /// Lower-case hex MD5 HA1.
    pub ha1_md5: String,
    /// Lower-case hex SHA-256 HA1.
    pub ha1_sha256: String,
    /// When the secret was last set, for rotation reminders.
    pub changed_at: UnixMillis,
}

/// A phone extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    /// Dialable number, digits only.
    pub number: String,
    pub display_name: String,
    pub credentials: SipCredentials,
    /// Name of the outbound-permission group the extension dials with.
    pub permission_group: String,
    pub enabled: bool,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl Record for Extension {
    const TABLE: Table = Table::Extensions;
    fn key(&self) -> String {
        self.number.clone()
    }
}

/// What a web account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    User,
}

/// A login for the admin API and portal. The password is an argon2id PHC string, never plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAccount {
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    /// The extension a `User` account belongs to.
    pub extension: Option<String>,
    pub password_changed_at: UnixMillis,
    pub created_at: UnixMillis,
}

impl Record for UserAccount {
    const TABLE: Table = Table::Users;
    fn key(&self) -> String {
        self.username.clone()
    }
}

/// A named setting; values are strings so that adding a setting needs no schema change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub key: String,
    pub value: String,
    pub updated_at: UnixMillis,
}

impl Record for Setting {
    const TABLE: Table = Table::Settings;
    fn key(&self) -> String {
        self.key.clone()
    }
}

/// The cluster's identity and shared secrets, written once at `cluster init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub cluster_id: String,
    /// SIP realm used in digest challenges.
    pub realm: String,
    /// HMAC key for SIP nonces and API session tokens, so any node verifies what another issued.
    pub secret: Vec<u8>,
    pub created_at: UnixMillis,
}

impl ClusterRecord {
    /// The single key under which the record lives.
    pub const KEY: &'static str = "cluster";
}

impl Record for ClusterRecord {
    const TABLE: Table = Table::Cluster;
    fn key(&self) -> String {
        Self::KEY.to_owned()
    }
}

/// The floating address phones use, and how it is moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipConfig {
    /// The address, e.g. `198.18.0.100/24` or `127.0.0.100/32`.
    pub address: String,
    /// Interface the address is put on (`lo` for the one-machine demo).
    pub interface: String,
    /// Driver name: `linux`, `loopback` or `command`.
    pub driver: String,
    pub updated_at: UnixMillis,
}

impl VipConfig {
    pub const KEY: &'static str = "vip";
}

impl Record for VipConfig {
    const TABLE: Table = Table::Cluster;
    fn key(&self) -> String {
        Self::KEY.to_owned()
    }
}

/// A cluster member as the admin sees it: a human name next to the Raft identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub node_id: NodeId,
    pub name: String,
    pub addr: NodeAddr,
    pub joined_at: UnixMillis,
}

impl Record for MemberRecord {
    const TABLE: Table = Table::Members;
    fn key(&self) -> String {
        // Fixed width so that keys sort by node id.
        format!("{:020}", self.node_id)
    }
}

/// A registered contact of an extension (RFC 3261 §10): where calls to the extension are delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The extension number the binding belongs to (the address of record's user part).
    pub aor: String,
    /// The Contact URI exactly as the phone registered it (without header parameters).
    pub contact: String,
    pub expires_at: UnixMillis,
    /// q-value in thousandths (`q=0.5` is 500); absent when the phone sent none.
    pub q: Option<u16>,
    pub call_id: String,
    pub cseq: u32,
    /// Where the REGISTER came from (`ip:port`), which is where requests go back through NAT.
    pub source: String,
    /// `udp`, `tcp` or `tls`.
    pub transport: String,
    pub user_agent: String,
    /// The node that accepted the registration.
    pub node_id: NodeId,
    pub registered_at: UnixMillis,
    /// RFC 5626 `+sip.instance`, when the phone sends one.
    pub instance: Option<String>,
    /// Whether the accepting node's OPTIONS pings get answers; `None` until first checked.
    pub reachable: Option<bool>,
}

impl Binding {
    /// The key of a binding: all of an extension's bindings share the prefix [`Binding::aor_prefix`].
    pub fn key_for(aor: &str, contact: &str) -> String {
        format!("{}{contact}", Self::aor_prefix(aor))
    }

    pub fn aor_prefix(aor: &str) -> String {
        // NUL cannot occur in an extension number, so one AOR's keys never run into another's.
        format!("{aor}\u{0}")
    }
}

impl Record for Binding {
    const TABLE: Table = Table::Bindings;
    fn key(&self) -> String {
        Self::key_for(&self.aor, &self.contact)
    }
}

/// One side of an established call as the PBX sees it: a SIP dialog (RFC 3261 §12) between the PBX and a
/// phone. Everything needed to send or answer an in-dialog request on it, from any node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialogLeg {
    /// The extension at the far end of this leg.
    pub extension: String,
    pub call_id: String,
    /// The PBX's tag on this dialog.
    pub local_tag: String,
    /// The phone's tag.
    pub remote_tag: String,
    /// Last CSeq the PBX sent on this leg (requests it sends use higher numbers).
    pub local_cseq: u32,
    /// Last CSeq received from the phone (lower ones are out of order, RFC 3261 §12.2.2).
    pub remote_cseq: u32,
    /// The PBX's URI in From/To on this leg (name-addr, without tag).
    pub local_uri: String,
    /// The phone's URI in From/To on this leg (name-addr, without tag).
    pub remote_uri: String,
    /// The phone's Contact URI: the Request-URI of requests the PBX sends on this leg.
    pub remote_target: String,
    /// Route set (Record-Route values, in the order the PBX puts them in Route).
    pub route_set: Vec<String>,
    /// The PBX's Contact on this leg.
    pub local_contact: String,
    /// Where the phone's signalling comes from and goes to (`ip:port`), and over what (`udp`/`tcp`/`tls`).
    pub peer: String,
    pub transport: String,
    /// The last session description the phone sent on this leg, as received.
    pub remote_sdp: String,
}

/// One relayed media stream (an SDP `m=` line): the PBX's RTP port towards each side (RTCP is the next
/// port up) and where each side's packets were latched from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaStream {
    /// The PBX's RTP port facing the caller.
    pub caller_port: u16,
    /// The PBX's RTP port facing the callee.
    pub callee_port: u16,
    /// The caller's RTP source the relay latched to (`ip:port`), once known, and after a space its
    /// RTCP source once that is latched too (records written before RTCP was kept have RTP alone).
    pub caller_latched: Option<String>,
    /// The callee's RTP source (and RTCP source), as `caller_latched`.
    pub callee_latched: Option<String>,
}

/// An established call, committed before the caller gets its `200 OK` and removed when the call ends:
/// a node that never saw the call can continue it from this record alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveCall {
    /// The PBX's identifier of the call (also the key of its CDR).
    pub id: String,
    /// The node currently carrying the call's signalling and media.
    pub node_id: NodeId,
    /// The caller's leg.
    pub caller: DialogLeg,
    /// The callee's leg.
    pub callee: DialogLeg,
    /// The address the PBX's media ports are on.
    pub media_addr: String,
    pub streams: Vec<MediaStream>,
    pub started_at: UnixMillis,
    pub answered_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl Record for ActiveCall {
    const TABLE: Table = Table::Calls;
    fn key(&self) -> String {
        self.id.clone()
    }
}

/// How a call ended, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    Answered,
    Busy,
    NoAnswer,
    /// The caller hung up before an answer.
    Cancelled,
    /// The callee has no reachable registration.
    Unavailable,
    /// The number dialled is not an extension.
    NotFound,
    /// Refused or failed for any other reason (limits, media, errors).
    Failed,
    /// An outbound call the caller may not make: no permitted route, a country not allowed, a
    /// toll-fraud limit. (Appended last: earlier variants encode as before.)
    Denied,
}

impl Disposition {
    pub const ALL: [Self; 8] = [
        Self::Answered,
        Self::Busy,
        Self::NoAnswer,
        Self::Cancelled,
        Self::Unavailable,
        Self::NotFound,
        Self::Failed,
        Self::Denied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Busy => "busy",
            Self::NoAnswer => "no_answer",
            Self::Cancelled => "cancelled",
            Self::Unavailable => "unavailable",
            Self::NotFound => "not_found",
            Self::Failed => "failed",
            Self::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// Who ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HangupSide {
    Caller,
    Callee,
    /// The PBX itself: limits, media timeout, failures.
    Pbx,
}

impl HangupSide {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Caller => "caller",
            Self::Callee => "callee",
            Self::Pbx => "pbx",
        }
    }
}

/// A call detail record: one per call attempt, committed when the call ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallDetail {
    pub id: String,
    /// The calling extension.
    pub caller: String,
    /// The number dialled.
    pub callee: String,
    pub started_at: UnixMillis,
    pub answered_at: Option<UnixMillis>,
    pub ended_at: UnixMillis,
    /// Talk time in seconds (answer to end; zero when unanswered).
    pub duration_secs: u64,
    pub disposition: Disposition,
    pub hangup_side: HangupSide,
    /// Why the call ended, e.g. `bye`, `cancel`, `486`, `max-duration`, `media-timeout`.
    pub cause: String,
    /// The final SIP status the caller got for the INVITE (200 for answered calls).
    pub sip_status: u16,
    /// The node that carried the call when it ended.
    pub node_id: NodeId,
}

impl CallDetail {
    /// Keys sort by start time, so a date range is a key range.
    pub fn key_for(started_at: UnixMillis, id: &str) -> String {
        format!("{started_at:020}-{id}")
    }
}

impl Record for CallDetail {
    const TABLE: Table = Table::Cdrs;
    fn key(&self) -> String {
        Self::key_for(self.started_at, &self.id)
    }
}

/// An entry of the index of CDRs by extension: the CDR stored under `cdr_key` has `extension` as its
/// caller or callee. Keyed `{extension}/{cdr_key}`, so one extension's CDRs sort by start time under
/// [`CdrIndexEntry::prefix`]. Written in the same apply as its CDR, and pruned with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdrIndexEntry {
    pub extension: String,
    pub cdr_key: String,
}

impl CdrIndexEntry {
    /// What every key of `extension`'s entries starts with.
    pub fn prefix(extension: &str) -> String {
        format!("{extension}/")
    }

    /// Whether `number` gets entries: the numbers the CDR API can filter by (digits, not empty).
    /// Keeping `/` out of the first half is what makes a key split back into its two halves.
    pub fn indexes(number: &str) -> bool {
        !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
    }

    /// The entries of `cdr`: its caller's and its callee's (one when they are the same number).
    pub fn of(cdr: &CallDetail) -> Vec<Self> {
        let mut numbers = vec![cdr.caller.as_str()];
        if cdr.callee != cdr.caller {
            numbers.push(&cdr.callee);
        }
        let cdr_key = cdr.key();
        numbers
            .into_iter()
            .filter(|n| Self::indexes(n))
            .map(|n| Self {
                extension: n.to_owned(),
                cdr_key: cdr_key.clone(),
            })
            .collect()
    }

    /// The CDR key in an entry's key.
    pub fn cdr_key_of(index_key: &str) -> Option<&str> {
        index_key.split_once('/').map(|(_, cdr_key)| cdr_key)
    }
}

impl Record for CdrIndexEntry {
    const TABLE: Table = Table::CdrsByExtension;
    fn key(&self) -> String {
        format!("{}{}", Self::prefix(&self.extension), self.cdr_key)
    }
}

/// How far the index of CDRs by extension covers the CDRs stored before it existed (each CDR stored
/// since is indexed as it is stored). Absent on a cluster that predates the index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdrIndexProgress {
    /// The last CDR key the backfill (`Command::IndexCdrs`) indexed; `None` before it started.
    pub indexed_through: Option<String>,
    /// Every CDR has its entries: the index answers an extension filter exactly.
    pub complete: bool,
}

impl CdrIndexProgress {
    pub const KEY: &'static str = "cdr_index";
}

impl Record for CdrIndexProgress {
    const TABLE: Table = Table::Cluster;
    fn key(&self) -> String {
        Self::KEY.to_owned()
    }
}

/// What a firewall rule does with the traffic it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirewallAction {
    /// Always let through, and never ban (an allowlisted network).
    Allow,
    Block,
}

/// A service the gate protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    Sip,
    /// RTP/RTCP to the relay: checked when a stream latches to a source.
    Media,
    Api,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sip => "sip",
            Self::Media => "media",
            Self::Api => "api",
        }
    }
}

/// The transport a packet or connection came over (the admin API is always TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }
}

/// An allow or block rule for a network, replicated so that every node enforces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallRule {
    pub id: String,
    pub action: FirewallAction,
    /// An IPv4 or IPv6 network in CIDR notation, validated by the node.
    pub network: String,
    /// The services it applies to; empty means all.
    pub services: Vec<Service>,
    /// The transports it applies to; empty means all.
    #[serde(default)]
    pub transports: Vec<Transport>,
    pub comment: String,
    pub created_by: String,
    pub created_at: UnixMillis,
}

impl Record for FirewallRule {
    const TABLE: Table = Table::Firewall;
    fn key(&self) -> String {
        self.id.clone()
    }
}

/// A source address banned by the automatic defence (or by an admin) until `until`. The record
/// outlives the ban for a while so that a repeat offender's next ban is longer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// The banned address (IPv4 or IPv6, canonical text).
    pub ip: String,
    pub until: UnixMillis,
    /// Why, e.g. `sip-auth-failures`, `sip-flood`, `api-flood`, `manual`.
    pub reason: String,
    /// How many times this address has been banned recently (each ban doubles the duration).
    pub strikes: u32,
    pub created_at: UnixMillis,
    /// The node that saw the offence.
    pub node_id: NodeId,
}

impl Record for Ban {
    const TABLE: Table = Table::Bans;
    fn key(&self) -> String {
        self.ip.clone()
    }
}

/// One configuration change: who made it, when, from where, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: UnixMillis,
    /// A distinguishing suffix so that two changes in one millisecond both keep their entry.
    pub seq: String,
    /// The admin account (or `system` for the PBX itself).
    pub actor: String,
    /// The client address the change came from.
    pub source: String,
    /// What was done, e.g. `POST /api/v1/extensions`.
    pub action: String,
    /// The answer's HTTP status; 200 for a change committed together with its entry (written before
    /// the answer, whose exact status is not known yet).
    pub status: u16,
    /// The node that accepted the change.
    pub node_id: NodeId,
}

impl AuditEntry {
    pub fn key_for(at: UnixMillis, seq: &str) -> String {
        format!("{at:020}-{seq}")
    }
}

impl Record for AuditEntry {
    const TABLE: Table = Table::Audit;
    fn key(&self) -> String {
        Self::key_for(self.at, &self.seq)
    }
}

/// How much an event matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// A security or operational event, kept (replicated) for the event center.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at: UnixMillis,
    pub seq: String,
    /// What happened: `login_failed`, `source_banned`, `ban_lifted`, `firewall_changed`,
    /// `leader_changed`, …
    pub kind: String,
    pub severity: Severity,
    /// The node that saw it.
    pub node_id: NodeId,
    /// The address involved, when there is one.
    pub source: Option<String>,
    pub message: String,
}

impl Event {
    pub fn key_for(at: UnixMillis, seq: &str) -> String {
        format!("{at:020}-{seq}")
    }
}

impl Record for Event {
    const TABLE: Table = Table::Events;
    fn key(&self) -> String {
        Self::key_for(self.at, &self.seq)
    }
}

/// How a recipient is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// An HTTPS POST of the event as JSON, signed with HMAC-SHA256.
    Webhook,
    Email,
}

/// Who hears about which events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub id: String,
    pub channel: Channel,
    /// An `https://` URL or an e-mail address.
    pub address: String,
    /// Event kinds sent; empty means all.
    pub kinds: Vec<String>,
    /// The webhook's HMAC key (hex); never shown again after creation.
    pub secret: String,
    pub created_at: UnixMillis,
}

impl Record for Recipient {
    const TABLE: Table = Table::Recipients;
    fn key(&self) -> String {
        self.id.clone()
    }
}
