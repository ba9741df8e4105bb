//! What `Cluster::status` reports: this node's Raft state and the members as the leader sees them.

use serde::{Deserialize, Serialize};
use storage::NodeId;

/// The Raft role of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

impl From<openraft::ServerState> for NodeState {
    fn from(state: openraft::ServerState) -> Self {
        match state {
            openraft::ServerState::Leader => Self::Leader,
            openraft::ServerState::Follower => Self::Follower,
            openraft::ServerState::Candidate => Self::Candidate,
            openraft::ServerState::Learner => Self::Learner,
            openraft::ServerState::Shutdown => Self::Shutdown,
        }
    }
}

/// A snapshot of the cluster as seen from one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node_id: NodeId,
    pub state: NodeState,
    pub term: u64,
    pub leader: Option<NodeId>,
    /// Index of the last log entry this node holds (0: none).
    pub last_log_index: u64,
    /// Index of the last entry applied to this node's state machine (0: none).
    pub applied_index: u64,
    /// The members, voters first. Replication figures are the leader's.
    pub members: Vec<MemberStatus>,
    /// True when `members` comes from the leader (this node is the leader, or the leader answered);
    /// false when the leader could not be asked and `members` is this node's own, less informed, view.
    pub members_from_leader: bool,
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub node_id: NodeId,
    pub raft_addr: String,
    pub api_addr: String,
    /// Voter, or learner (non-voting, catching up).
    pub voter: bool,
    /// Last log index the leader knows this member holds.
    pub matched_index: Option<u64>,
    /// How many entries the member is behind the leader's last log index.
    pub lag: Option<u64>,
    /// The leader heard from this member recently (the leader itself is always healthy).
    pub healthy: bool,
}
