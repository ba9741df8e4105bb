//! Calls to and from the outside: trunks, routes, permission groups, and the toll-fraud counters.
//!
//! The counters are decided in the state machine, in log order: a reservation is checked and counted
//! by one command, so two nodes cannot both admit the call that crosses a limit, and a new VIP owner
//! reads the same counts as the old one.

use serde::{Deserialize, Serialize};

use crate::model::{Transport, UnixMillis};
use crate::tables::{Record, Table};

/// How the PBX and a provider know each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrunkKind {
    /// The PBX registers to the provider with digest credentials.
    Register,
    /// The provider is known by its addresses; nobody registers.
    Peer,
}

/// A SIP trunk to a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trunk {
    pub name: String,
    pub kind: TrunkKind,
    pub enabled: bool,
    /// The provider's domain or host (RFC 3263 finds its servers), or an IP address.
    pub host: String,
    /// An explicit port (no NAPTR/SRV lookup then).
    pub port: Option<u16>,
    /// An explicit transport (no NAPTR lookup then).
    pub transport: Option<Transport>,
    /// Where requests are sent instead of the host's servers (`host[:port]`).
    pub outbound_proxy: Option<String>,
    /// Digest user name (and the user registered, for a register trunk).
    pub username: String,
    /// Digest password: needed in clear to answer challenges; never returned by the API.
    pub password: String,
    /// The realm the credentials are for; any realm when empty.
    pub realm: String,
    /// User and domain of the From of calls sent (the caller's number and the host when empty).
    pub from_user: String,
    pub from_domain: String,
    /// The number presented when neither the route nor the extension sets one.
    pub caller_id: String,
    /// Send `P-Asserted-Identity` with the presented number.
    pub send_pai: bool,
    /// The numbers the trunk carries: digits, or `first-last` ranges of equal length.
    pub dids: Vec<String>,
    /// Simultaneous calls through the trunk (0: no limit).
    pub max_calls: u32,
    /// Outbound calls per minute through the trunk (0: no limit).
    pub calls_per_minute: u32,
    /// OPTIONS qualify interval in seconds (0: off).
    pub qualify_secs: u32,
    /// Registration lifetime asked for, in seconds.
    pub register_expires: u32,
    /// Whether inbound calls without a caller ID are accepted.
    pub allow_anonymous: bool,
    /// Networks (CIDR) inbound calls may come from, besides the addresses of `host` and `peer_hosts`.
    pub peer_networks: Vec<String>,
    /// More host names whose addresses may send inbound calls.
    pub peer_hosts: Vec<String>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl Record for Trunk {
    const TABLE: Table = Table::Trunks;
    fn key(&self) -> String {
        self.name.clone()
    }
}

/// Where a trunk stands, as the VIP owner last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrunkState {
    /// Not checked yet (or disabled).
    Unknown,
    /// Registered, until `until`.
    Registered,
    /// The provider answers (a peer trunk's OPTIONS, or its calls).
    Reachable,
    /// The provider refused the registration (`last_status`).
    Failed,
    /// No answer from any of the provider's servers.
    Unreachable,
    /// The provider's name does not resolve.
    Unresolved,
}

impl TrunkState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Registered => "registered",
            Self::Reachable => "reachable",
            Self::Failed => "failed",
            Self::Unreachable => "unreachable",
            Self::Unresolved => "unresolved",
        }
    }

    /// Whether calls may be sent through the trunk.
    pub fn is_up(self) -> bool {
        matches!(self, Self::Unknown | Self::Registered | Self::Reachable)
    }
}

/// A trunk's state, replicated when it changes so that every node shows it and a new VIP owner
/// starts from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrunkStatus {
    pub name: String,
    pub state: TrunkState,
    /// The last final status of a REGISTER or OPTIONS, if any.
    pub last_status: Option<u16>,
    /// What the state means in words (the server tried, the error).
    pub detail: String,
    /// The registration's end, for a registered trunk.
    pub registered_until: Option<UnixMillis>,
    /// The server (`transport:ip:port`) last used.
    pub server: String,
    pub since: UnixMillis,
    pub node_id: crate::NodeId,
}

impl Record for TrunkStatus {
    const TABLE: Table = Table::TrunkStatus;
    fn key(&self) -> String {
        self.name.clone()
    }
}

/// Which calls a group's members may make, and how many. The limits apply to each member extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionGroup {
    pub name: String,
    /// Names of the outbound routes members may use.
    pub routes: Vec<String>,
    /// E.164 country-code prefixes international calls may go to.
    pub international_prefixes: Vec<String>,
    pub limits: Limits,
    /// Suspend a member's outbound calls when it crosses a limit, until an admin clears it.
    pub suspend_on_limit: bool,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl Record for PermissionGroup {
    const TABLE: Table = Table::PermissionGroups;
    fn key(&self) -> String {
        self.name.clone()
    }
}

/// Toll-fraud limits; zero means none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub per_minute: u32,
    pub per_hour: u32,
    pub per_day: u32,
    pub simultaneous: u32,
    pub international_per_day: u32,
}

/// How an inbound route matches the number dialled from the outside (the DID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DidKind {
    Exact,
    Prefix,
    Pattern,
}

/// Where an inbound call goes. Later features add variants (appended, so stored routes still read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    Extension(String),
    /// A ring group's number. (Appended: the encoding of earlier variants is unchanged.)
    RingGroup(String),
    /// A time condition's name: its open or closed destination, by the cluster's clock. (Appended.)
    TimeCondition(String),
    /// An IVR's number: its menu, where the caller chooses by key. (Appended.)
    Ivr(String),
    /// A conference room's number. (Appended.)
    Conference(String),
}

/// A rule for calls arriving on trunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundRoute {
    pub name: String,
    pub did_kind: DidKind,
    pub did: String,
    /// A dial pattern the caller's number must match, when set.
    pub caller_id: Option<String>,
    /// Only calls arriving on this trunk, when set.
    pub trunk: Option<String>,
    pub destination: Destination,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl Record for InboundRoute {
    const TABLE: Table = Table::InboundRoutes;
    fn key(&self) -> String {
        self.name.clone()
    }
}

/// What kind of call a route makes, for permissions and the international allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteClass {
    Local,
    LongDistance,
    International,
}

/// A rule for calls leaving through trunks. Routes are tried by `position`, then name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundRoute {
    pub name: String,
    pub position: u32,
    pub patterns: Vec<String>,
    pub strip: u32,
    pub prepend: String,
    pub class: RouteClass,
    /// Trunks tried in order.
    pub trunks: Vec<String>,
    /// The number presented on calls through this route, when set.
    pub caller_id: Option<String>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl Record for OutboundRoute {
    const TABLE: Table = Table::OutboundRoutes;
    fn key(&self) -> String {
        self.name.clone()
    }
}

/// A configuration record of this module, for the generic put and delete commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoutingRecord {
    Trunk(Box<Trunk>),
    PermissionGroup(PermissionGroup),
    InboundRoute(InboundRoute),
    OutboundRoute(OutboundRoute),
}

/// Which kind of routing record a delete names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoutingKind {
    Trunk,
    PermissionGroup,
    InboundRoute,
    OutboundRoute,
}

impl RoutingKind {
    pub fn table(self) -> Table {
        match self {
            Self::Trunk => Table::Trunks,
            Self::PermissionGroup => Table::PermissionGroups,
            Self::InboundRoute => Table::InboundRoutes,
            Self::OutboundRoute => Table::OutboundRoutes,
        }
    }
}

/// Whether a put creates (refused if the name exists) or replaces (refused if it does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PutMode {
    Create,
    Update,
}

/// A count of calls in a fixed window (a calendar minute, hour or day of the proposer's clock).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start: UnixMillis,
    pub count: u32,
}

impl Window {
    /// The count at `now`, for windows `len` long.
    pub fn at(&self, now: UnixMillis, len: u64) -> u32 {
        if now / len == self.start / len {
            self.count
        } else {
            0
        }
    }

    fn add(&mut self, now: UnixMillis, len: u64) {
        let count = self.at(now, len);
        *self = Self {
            start: now - now % len,
            count: count.saturating_add(1),
        };
    }
}

pub const MINUTE_MS: u64 = 60_000;
pub const HOUR_MS: u64 = 3_600_000;
pub const DAY_MS: u64 = 86_400_000;

/// The outbound calls of one extension (`ext:<number>`) or trunk (`trunk:<name>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TollCounter {
    pub key: String,
    pub minute: Window,
    pub hour: Window,
    pub day: Window,
    pub international_day: Window,
    /// Calls in progress: call id and when it was reserved.
    pub active: Vec<(String, UnixMillis)>,
    /// Outbound calls suspended since, and why.
    pub suspended: Option<(UnixMillis, String)>,
}

impl Record for TollCounter {
    const TABLE: Table = Table::TollCounters;
    fn key(&self) -> String {
        self.key.clone()
    }
}

impl TollCounter {
    pub fn extension_key(number: &str) -> String {
        format!("ext:{number}")
    }

    pub fn trunk_key(name: &str) -> String {
        format!("trunk:{name}")
    }

    /// The first limit `limits` would cross with one more call at `now`, if any.
    pub fn over(&self, limits: &Limits, now: UnixMillis, international: bool) -> Option<Limit> {
        let full = |limit: u32, count: u32| limit > 0 && count >= limit;
        if full(limits.simultaneous, self.active.len() as u32) {
            Some(Limit::Simultaneous)
        } else if full(limits.per_minute, self.minute.at(now, MINUTE_MS)) {
            Some(Limit::PerMinute)
        } else if full(limits.per_hour, self.hour.at(now, HOUR_MS)) {
            Some(Limit::PerHour)
        } else if full(limits.per_day, self.day.at(now, DAY_MS)) {
            Some(Limit::PerDay)
        } else if international
            && full(
                limits.international_per_day,
                self.international_day.at(now, DAY_MS),
            )
        {
            Some(Limit::InternationalPerDay)
        } else {
            None
        }
    }

    /// Counts one more call.
    pub fn count(&mut self, call_id: &str, now: UnixMillis, international: bool) {
        self.minute.add(now, MINUTE_MS);
        self.hour.add(now, HOUR_MS);
        self.day.add(now, DAY_MS);
        if international {
            self.international_day.add(now, DAY_MS);
        }
        self.active.push((call_id.to_owned(), now));
    }
}

/// Which limit a call would cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Simultaneous,
    PerMinute,
    PerHour,
    PerDay,
    InternationalPerDay,
    /// The extension's outbound calls are suspended.
    Suspended,
    /// Every trunk of the route is at its limit.
    TrunksFull,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Simultaneous => "simultaneous",
            Self::PerMinute => "per_minute",
            Self::PerHour => "per_hour",
            Self::PerDay => "per_day",
            Self::InternationalPerDay => "international_per_day",
            Self::Suspended => "suspended",
            Self::TrunksFull => "trunks_full",
        }
    }
}

/// An outbound call asking to be counted: the extension against its group's limits, and the first
/// trunk of `trunks` that has room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub call_id: String,
    pub extension: String,
    pub limits: Limits,
    pub international: bool,
    pub suspend_on_limit: bool,
    /// Trunk names and their limits (`per_minute`, `simultaneous`), in the route's order.
    pub trunks: Vec<(String, Limits)>,
    pub at: UnixMillis,
    /// A reserved call with no active-call record after this long is gone (its node died while it
    /// rang): it no longer counts as simultaneous.
    pub ringing_ms: u64,
    /// The call's route record, stored whatever the answer, with the trunk the call was counted
    /// on filled in.
    pub route: Option<CallRoute>,
}

/// Which counters an outbound call holds, so that its end releases them whatever ends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundHold {
    pub call_id: String,
    pub counters: Vec<String>,
}

impl Record for OutboundHold {
    const TABLE: Table = Table::OutboundActive;
    fn key(&self) -> String {
        self.call_id.clone()
    }
}

/// Whether a call went in, out, or stayed inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Internal,
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Internal => "internal",
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// How a trunk call was routed, stored beside its CDR under the same key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRoute {
    /// The key of the CDR this belongs to.
    pub cdr_key: String,
    pub direction: Direction,
    pub trunk: String,
    pub did: String,
    pub route: String,
    /// The number as dialled, and as sent to the trunk.
    pub dialled: String,
    pub sent: String,
}

impl Record for CallRoute {
    const TABLE: Table = Table::CdrRoutes;
    fn key(&self) -> String {
        self.cdr_key.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_reset_at_their_boundary() {
        let mut w = Window::default();
        w.add(61_000, MINUTE_MS);
        w.add(119_999, MINUTE_MS);
        assert_eq!(w.at(119_999, MINUTE_MS), 2);
        assert_eq!(w.at(120_000, MINUTE_MS), 0);
        w.add(120_000, MINUTE_MS);
        assert_eq!(
            w,
            Window {
                start: 120_000,
                count: 1
            }
        );
    }

    #[test]
    fn limits_are_checked_simultaneous_first_and_zero_means_none() {
        let mut c = TollCounter::default();
        let limits = Limits {
            per_minute: 2,
            simultaneous: 3,
            international_per_day: 1,
            ..Limits::default()
        };
        c.count("a", 1_000, true);
        assert_eq!(
            c.over(&limits, 1_000, true),
            Some(Limit::InternationalPerDay)
        );
        assert_eq!(c.over(&limits, 1_000, false), None);
        c.count("b", 1_000, false);
        assert_eq!(c.over(&limits, 1_000, false), Some(Limit::PerMinute));
        assert_eq!(c.over(&limits, 61_000, false), None);
        c.count("c", 61_000, false);
        assert_eq!(c.over(&limits, 61_000, false), Some(Limit::Simultaneous));
        assert_eq!(c.over(&Limits::default(), 61_000, true), None);
    }
}
