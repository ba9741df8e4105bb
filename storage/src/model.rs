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
