//! Settings of the cluster layer of one node, and the openraft configuration derived from them.

use std::net::SocketAddr;
use std::time::Duration;

use openraft::SnapshotPolicy;
use storage::{NodeAddr, NodeId};

use crate::ClusterError;
use crate::tls::NodeTlsFiles;

/// Settings of the cluster layer of one node.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's Raft id; its certificate must name `node-{id}.pbx.cluster`.
    pub node_id: NodeId,
    /// UDP address the QUIC endpoint binds (port 0: any free port).
    pub listen: SocketAddr,
    /// Addresses other members use for this node. An empty `raft_addr` means "the bound address".
    pub advertise: NodeAddr,
    /// Cluster CA, node certificate and key.
    pub tls: NodeTlsFiles,
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Election timeout range; a follower that hears no leader for a random time in it campaigns.
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_after_logs: u64,
    /// Log entries kept after a snapshot (lets briefly absent followers catch up without a snapshot).
    pub keep_logs_after_snapshot: u64,
    /// Longest wait for a QUIC handshake with a peer.
    pub connect_timeout_ms: u64,
    /// Longest wait for the answer to one RPC (Raft messages use openraft's shorter deadlines).
    pub rpc_timeout_ms: u64,
    /// Longest `add_member` waits for the new node to catch up before promoting it to voter.
    pub join_timeout_ms: u64,
    /// Longest an operation waits for a leader to be known (elections take well under a second).
    pub leader_wait_ms: u64,
    /// Under load, how long the leader waits after an entry commits before it cuts the next one, so
    /// that the next carries more commands (0: never waits). Only after an entry of 8 commands or
    /// more, and only when the next write arrived while that entry was in flight: a write that
    /// finds no entry in flight is sent at once.
    pub commit_linger_ms: u64,
    /// Disk space the audio store leaves free: a file that would leave less is refused.
    pub audio_reserve_bytes: u64,
    /// The newest cluster protocol this node speaks and records (see [`crate::version`]):
    /// [`crate::version::WIRE_VERSION`] unless an operator holds the node back.
    pub max_wire_version: u32,
}

impl ClusterConfig {
    /// A configuration with the default timings.
    pub fn new(
        node_id: NodeId,
        listen: SocketAddr,
        advertise: NodeAddr,
        tls: NodeTlsFiles,
    ) -> Self {
        Self {
            node_id,
            listen,
            advertise,
            tls,
            heartbeat_ms: 50,
            election_min_ms: 250,
            election_max_ms: 400,
            snapshot_after_logs: 5000,
            keep_logs_after_snapshot: 1000,
            connect_timeout_ms: 500,
            rpc_timeout_ms: 2000,
            join_timeout_ms: 60_000,
            leader_wait_ms: 3000,
            commit_linger_ms: 1,
            audio_reserve_bytes: 512 * 1024 * 1024,
            max_wire_version: crate::version::WIRE_VERSION,
        }
    }

    pub(crate) fn raft_config(&self) -> Result<openraft::Config, ClusterError> {
        if self.snapshot_after_logs == 0 {
            return Err(ClusterError::Config(
                "snapshot_after_logs must be positive".into(),
            ));
        }
        if !(crate::version::MIN_WIRE_VERSION..=crate::version::WIRE_VERSION)
            .contains(&self.max_wire_version)
        {
            return Err(ClusterError::Config(format!(
                "max_protocol {} is not one this build speaks ({} to {})",
                self.max_wire_version,
                crate::version::MIN_WIRE_VERSION,
                crate::version::WIRE_VERSION
            )));
        }
        if self.rpc_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(ClusterError::Config("timeouts must be positive".into()));
        }
        let config = openraft::Config {
            cluster_name: "pbx".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            install_snapshot_timeout: self.rpc_timeout_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_after_logs),
            max_in_snapshot_log_to_keep: self.keep_logs_after_snapshot,
            // Snapshot chunks stay far below the RPC frame limit.
            snapshot_max_chunk_size: 1024 * 1024,
            replication_lag_threshold: self.snapshot_after_logs.max(5000),
            ..openraft::Config::default()
        };
        config
            .validate()
            .map_err(|e| ClusterError::Config(e.to_string()))
    }

    pub(crate) fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.rpc_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ClusterConfig {
        let ca = crate::tls::generate_ca("config").unwrap();
        let cert = crate::tls::issue_node_cert(&ca, 1, &[]).unwrap();
        let tls = NodeTlsFiles::new(&ca.cert_pem, &cert);
        ClusterConfig::new(1, "127.0.0.1:0".parse().unwrap(), NodeAddr::default(), tls)
    }

    #[test]
    fn defaults_give_a_valid_raft_config() {
        let c = config();
        assert_eq!(
            (c.heartbeat_ms, c.election_min_ms, c.election_max_ms),
            (50, 250, 400)
        );
        assert_eq!(
            (c.snapshot_after_logs, c.keep_logs_after_snapshot),
            (5000, 1000)
        );
        assert_eq!((c.connect_timeout_ms, c.rpc_timeout_ms), (500, 2000));
        let raft = c.raft_config().unwrap();
        assert_eq!(raft.heartbeat_interval, 50);
        assert!(matches!(
            raft.snapshot_policy,
            SnapshotPolicy::LogsSinceLast(5000)
        ));
    }

    #[test]
    fn inconsistent_timings_are_refused() {
        let mut c = config();
        c.election_min_ms = 900;
        assert!(matches!(c.raft_config(), Err(ClusterError::Config(_))));
        let mut c = config();
        c.heartbeat_ms = 500;
        assert!(matches!(c.raft_config(), Err(ClusterError::Config(_))));
        let mut c = config();
        c.snapshot_after_logs = 0;
        assert!(matches!(c.raft_config(), Err(ClusterError::Config(_))));
    }
}
