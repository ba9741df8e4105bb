//! The one error type of the cluster crate. Every variant carries plain data, so a leader can send the
//! error of a forwarded operation back to the node that asked, and the node's API can map it to an HTTP
//! status with [`ClusterError::http_status`].

use serde::{Deserialize, Serialize};
use storage::NodeId;

/// Why a cluster operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ClusterError {
    /// No leader is known right now (election in progress, or no quorum). Retry later.
    #[error("no leader is known; the cluster may be electing one")]
    NoLeader,
    /// This node is not the leader. Internal: [`crate::Cluster`] forwards such operations itself, so
    /// callers only see it when forwarding gave up.
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// The cluster cannot serve the request now (no quorum, shutting down).
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// This node has no membership yet: it was neither initialised nor added to a cluster.
    #[error("this node is not part of an initialised cluster")]
    NotInitialized,
    /// `initialize` on a node that already has a membership.
    #[error("this node already belongs to a cluster")]
    AlreadyInitialized,
    /// A membership change that cannot be made (removing the last voter, unknown learner ...).
    #[error("invalid membership change: {0}")]
    InvalidMembership(String),
    /// Another membership change has not finished yet.
    #[error("a membership change is already in progress")]
    MembershipChangeInProgress,
    /// The node id is not in the membership.
    #[error("node {0} is not a member of the cluster")]
    UnknownMember(NodeId),
    /// The durable store failed.
    #[error("storage: {0}")]
    Storage(String),
    /// A peer could not be reached or the exchange with it broke off.
    #[error("network: {0}")]
    Network(String),
    /// A peer refused our request (identity or membership check).
    #[error("refused by peer: {0}")]
    Refused(String),
    /// Certificates or keys could not be made, read or used.
    #[error("tls: {0}")]
    Tls(String),
    /// The operation did not finish in time; a write that timed out may still commit.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The configuration is not usable.
    #[error("configuration: {0}")]
    Config(String),
    /// A bug or an unexpected state.
    #[error("internal: {0}")]
    Internal(String),
    /// The change needs a newer wire protocol than some member speaks: upgrade every node first.
    /// (Appended last: earlier variants encode as before.)
    #[error(
        "this change needs every node to speak cluster protocol {needs}, and node {node} speaks {speaks}: finish upgrading the cluster first"
    )]
    VersionTooOld {
        needs: u32,
        node: NodeId,
        speaks: u32,
    },
    /// A node asked to join speaks an older protocol than the members: it could not read what they
    /// may have written. (Appended last.)
    #[error(
        "node {node} speaks cluster protocol {speaks} and the members speak {members}: install this pbx version on it before it joins"
    )]
    JoinTooOld {
        node: NodeId,
        speaks: u32,
        members: u32,
    },
}

impl ClusterError {
    /// The HTTP status an API should answer with when an operation fails with this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NoLeader
            | Self::NotLeader { .. }
            | Self::Unavailable(_)
            | Self::NotInitialized
            | Self::Network(_) => 503,
            Self::Timeout(_) => 504,
            Self::AlreadyInitialized
            | Self::MembershipChangeInProgress
            | Self::VersionTooOld { .. }
            | Self::JoinTooOld { .. } => 409,
            Self::InvalidMembership(_) => 400,
            Self::UnknownMember(_) => 404,
            Self::Refused(_) => 502,
            Self::Storage(_) | Self::Tls(_) | Self::Config(_) | Self::Internal(_) => 500,
        }
    }

    /// True when retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::NoLeader
                | Self::NotLeader { .. }
                | Self::Unavailable(_)
                | Self::Network(_)
                | Self::Timeout(_)
                | Self::MembershipChangeInProgress
        )
    }
}

impl From<storage::StorageError> for ClusterError {
    fn from(e: storage::StorageError) -> Self {
        Self::Storage(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_http_statuses() {
        assert_eq!(ClusterError::NoLeader.http_status(), 503);
        assert_eq!(ClusterError::AlreadyInitialized.http_status(), 409);
        assert_eq!(
            ClusterError::InvalidMembership("x".into()).http_status(),
            400
        );
        assert_eq!(ClusterError::UnknownMember(3).http_status(), 404);
        assert!(ClusterError::NoLeader.is_transient());
        assert!(!ClusterError::AlreadyInitialized.is_transient());
    }

    #[test]
    fn errors_survive_the_wire_codec() {
        let e = ClusterError::NotLeader { leader: Some(2) };
        let bytes = storage::codec::encode(&e).unwrap();
        assert_eq!(storage::codec::decode::<ClusterError>(&bytes).unwrap(), e);
    }
}
