//! Prometheus figures about Raft, fed from openraft's metrics channel. The node installs the recorder;
//! without one these calls do nothing.

use openraft::{RaftMetrics, ServerState};
use storage::{NodeAddr, NodeId};
use tokio::sync::watch;

/// Who leads, as this node's Raft sees it: all the rest of the node needs of Raft's state, without
/// openraft's types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leadership {
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    pub term: u64,
    /// This node is the leader (by its own Raft state, not only by the last leader it heard of).
    pub leads: bool,
}

/// Follows `metrics` until Raft stops, keeping the gauges and `leadership` current.
pub(crate) async fn watch_raft(
    mut metrics: watch::Receiver<RaftMetrics<NodeId, NodeAddr>>,
    leadership: watch::Sender<Leadership>,
) {
    let mut last_leader = None;
    loop {
        {
            let m = metrics.borrow_and_update();
            let now = Leadership {
                leader: m.current_leader,
                term: m.current_term,
                leads: m.state == ServerState::Leader && m.current_leader == Some(m.id),
            };
            leadership.send_if_modified(|l| std::mem::replace(l, now) != now);
            metrics::gauge!("pbx_raft_term").set(m.current_term as f64);
            metrics::gauge!("pbx_raft_last_log_index").set(m.last_log_index.unwrap_or(0) as f64);
            metrics::gauge!("pbx_raft_applied_index")
                .set(m.last_applied.as_ref().map_or(0, |l| l.index) as f64);
            metrics::gauge!("pbx_raft_is_leader").set(if m.state == ServerState::Leader {
                1.0
            } else {
                0.0
            });
            let members = m.membership_config.membership().nodes().count();
            metrics::gauge!("pbx_raft_members").set(members as f64);
            if m.current_leader != last_leader {
                if let Some(leader) = m.current_leader {
                    metrics::counter!("pbx_raft_leader_changes_total").increment(1);
                    tracing::info!(
                        node = m.id,
                        leader,
                        term = m.current_term,
                        "raft leader changed"
                    );
                }
                last_leader = m.current_leader;
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
