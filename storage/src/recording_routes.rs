//! Call recording policy per trunk, inbound route and outbound route: the admin's choice to record
//! every call that crosses a trunk or takes a route, whatever the extensions' own policies say.
//!
//! Replicated like the rest of the configuration. A trunk or route without a policy is never
//! recorded; deleting the trunk or route deletes its policy in the same entry, so a new one with
//! the name starts unrecorded. Only [`RecordingMode::Never`] and [`RecordingMode::Always`] make
//! sense here (other modes are an extension user's choice); the proposer refuses the rest.

use serde::{Deserialize, Serialize};

use crate::codec::CodecError;
use crate::command::{Response, Txn, put, table_name};
use crate::model::UnixMillis;
use crate::recording::RecordingMode;
use crate::routing::RoutingKind;
use crate::tables::{Record, Table};
use crate::{StateReader, StorageError};

/// What a policy is for: a trunk, an inbound route or an outbound route, by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingTarget {
    Trunk(String),
    InboundRoute(String),
    OutboundRoute(String),
}

impl RecordingTarget {
    /// The target of routing record `name` of `kind`; `None` for a permission group.
    pub fn of(kind: RoutingKind, name: &str) -> Option<Self> {
        let name = name.to_owned();
        match kind {
            RoutingKind::Trunk => Some(Self::Trunk(name)),
            RoutingKind::InboundRoute => Some(Self::InboundRoute(name)),
            RoutingKind::OutboundRoute => Some(Self::OutboundRoute(name)),
            RoutingKind::PermissionGroup => None,
        }
    }

    /// `trunk`, `inbound` or `outbound`: the first part of the key.
    pub fn prefix(&self) -> &'static str {
        match self {
            Self::Trunk(_) => "trunk",
            Self::InboundRoute(_) => "inbound",
            Self::OutboundRoute(_) => "outbound",
        }
    }

    /// The trunk's or route's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Trunk(n) | Self::InboundRoute(n) | Self::OutboundRoute(n) => n,
        }
    }

    /// The table of the trunk or route.
    pub fn table(&self) -> Table {
        match self {
            Self::Trunk(_) => Table::Trunks,
            Self::InboundRoute(_) => Table::InboundRoutes,
            Self::OutboundRoute(_) => Table::OutboundRoutes,
        }
    }

    /// The policy's key: `trunk/{name}`, `inbound/{name}` or `outbound/{name}` (names have no `/`).
    pub fn key(&self) -> String {
        format!("{}/{}", self.prefix(), self.name())
    }

    /// The target a [`key`](Self::key) names.
    pub fn parse_key(key: &str) -> Option<Self> {
        let (prefix, name) = key.split_once('/')?;
        if name.is_empty() {
            return None;
        }
        let name = name.to_owned();
        match prefix {
            "trunk" => Some(Self::Trunk(name)),
            "inbound" => Some(Self::InboundRoute(name)),
            "outbound" => Some(Self::OutboundRoute(name)),
            _ => None,
        }
    }
}

impl std::fmt::Display for RecordingTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let noun = match self {
            Self::Trunk(_) => "trunk",
            Self::InboundRoute(_) => "inbound route",
            Self::OutboundRoute(_) => "outbound route",
        };
        write!(f, "{noun} {}", self.name())
    }
}

/// A trunk's or route's recording policy. A missing record means [`RecordingMode::Never`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRecordingPolicy {
    pub target: RecordingTarget,
    pub mode: RecordingMode,
    pub updated_at: UnixMillis,
}

impl RouteRecordingPolicy {
    /// The policy of a trunk or route that never set one.
    pub fn none(target: RecordingTarget) -> Self {
        Self {
            target,
            mode: RecordingMode::Never,
            updated_at: 0,
        }
    }
}

impl Record for RouteRecordingPolicy {
    const TABLE: Table = Table::RouteRecordingPolicies;
    fn key(&self) -> String {
        self.target.key()
    }
}

/// How `target`'s calls are recorded: [`RecordingMode::Never`] without a policy, or when it cannot
/// be read (a call is never refused for its recording).
pub fn route_recording(reader: &StateReader, target: &RecordingTarget) -> RecordingMode {
    reader
        .get::<RouteRecordingPolicy>(&target.key())
        .ok()
        .flatten()
        .map_or(RecordingMode::Never, |p| p.mode)
}

/// The policies of every trunk (`kind` [`RoutingKind::Trunk`]) or every inbound or outbound route,
/// in name order; none for permission groups.
pub fn route_recordings(
    reader: &StateReader,
    kind: RoutingKind,
) -> Result<Vec<RouteRecordingPolicy>, StorageError> {
    match RecordingTarget::of(kind, "") {
        // The key of the empty name is the prefix of every key of the kind.
        Some(prefix) => reader.scan_prefix(&prefix.key()),
        None => Ok(Vec::new()),
    }
}

/// Sets a policy; `NotFound` (in the trunks or routes table) without the trunk or route.
pub(crate) fn put_policy(
    txn: &mut dyn Txn,
    policy: &RouteRecordingPolicy,
) -> Result<Response, CodecError> {
    let table = policy.target.table();
    if txn.get(table, policy.target.name()).is_none() {
        return Ok(Response::NotFound {
            table: table_name(table),
            key: policy.target.name().to_owned(),
        });
    }
    put(txn, policy)
}

/// Routing record `name` of `kind` was deleted: its policy goes with it.
pub(crate) fn forget(txn: &mut dyn Txn, kind: RoutingKind, name: &str) {
    if let Some(target) = RecordingTarget::of(kind, name) {
        txn.delete(Table::RouteRecordingPolicies, &target.key());
    }
}

#[cfg(test)]
mod tests;
