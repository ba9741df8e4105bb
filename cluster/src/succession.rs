//! Fast succession: when the leader goes silent, the most up-to-date surviving voter campaigns as soon
//! as every other voter's leader lease has run out.
//!
//! openraft 0.9 makes a follower wait the leader's lease (`election_max`) *plus* a random election
//! timeout before it campaigns, and a candidate that finds a longer log elsewhere backs off another
//! `2 × election_max`: 0.7 to 2.3 s with the default timings. Here each follower notes when the leader
//! last reached it; once it has heard nothing for `election_max`, it asks the other voters
//! (except the silent leader) how far their logs go and how long they have not heard the leader. When
//! every one of them is also past its lease (so it will grant a vote) and none has a longer log (ties
//! go to the lowest id), it calls the election itself: one candidate, which wins at once. While no
//! leader emerges it tries again every few heartbeats, each time at a higher term. Anything unusual (a
//! peer still hears a leader, too few answers) leaves the decision to openraft's timers.

use std::sync::{Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use openraft::ServerState;
use serde::{Deserialize, Serialize};
use storage::NodeId;

use futures::StreamExt as _;

use crate::handle::Inner;
use crate::rpc::{RpcBody, RpcResponse};

/// When the leader last reached this node (an append or a snapshot chunk it accepted as leader's).
#[derive(Debug)]
pub(crate) struct LeaderContact {
    last: Mutex<Instant>,
}

impl LeaderContact {
    pub(crate) fn new() -> Self {
        // Until a leader speaks, the silence counts from the start.
        Self {
            last: Mutex::new(Instant::now()),
        }
    }

    pub(crate) fn touch(&self) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// Whether a leader reached this node after `t`.
    pub(crate) fn heard_since(&self, t: Instant) -> bool {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) > t
    }

    pub(crate) fn silent_for(&self) -> Duration {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
    }
}

/// A voter's answer to "how far is your log, whom do you follow, and when did you last hear from
/// them?". Followers answer it for fast succession, and for the leader's lease ([`Inner::lease_start`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LogState {
    pub last_log_index: Option<u64>,
    pub silent_ms: u64,
    pub leader: Option<NodeId>,
    pub term: u64,
}

impl Inner {
    pub(crate) fn log_state(&self) -> LogState {
        let (last_log_index, leader, term, quorum_ack_ms) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let quorum_ack_ms = if m.state == ServerState::Leader {
                m.millis_since_quorum_ack
            } else {
                None
            };
            (
                m.last_log_index,
                m.current_leader,
                m.current_term,
                quorum_ack_ms,
            )
        };
        // A leader's contact clock only moves on appends from another leader, so it would look
        // silent to a restarted voter asking whether every lease is out, and that voter would
        // campaign against a healthy leader. A leader reports how long ago a quorum acknowledged
        // it instead; one that never was (a node restarted as leader of a term long gone) keeps
        // its contact clock, so it does not hold up the succession of the real leader.
        let silent_ms =
            quorum_ack_ms.unwrap_or_else(|| self.leader_contact.silent_for().as_millis() as u64);
        LogState {
            last_log_index,
            silent_ms,
            leader,
            term,
        }
    }

    /// Proof of leadership for a lease: asks every other voter whom it follows and how long ago it
    /// last heard from its leader. When a quorum (with this node) follows this node in this term,
    /// returns the instant from which their votes are pledged: each of them accepted an append from
    /// this node no earlier than it, and openraft makes a voter refuse any candidate until
    /// `election_max` after its last accepted append. `None` when this node cannot prove it leads.
    ///
    /// The instant is taken on this node's clock before asking, minus what each follower reports,
    /// so it only errs early: a process frozen while asking wakes up with a proof already too old.
    pub(crate) async fn lease_start(&self, timeout: Duration) -> Option<Instant> {
        let start = Instant::now();
        let (term, voters) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            if m.state != ServerState::Leader {
                return None;
            }
            let voters: Vec<(NodeId, String)> = m
                .membership_config
                .membership()
                .voter_ids()
                .filter(|id| *id != self.id)
                .filter_map(|id| {
                    let node = m.membership_config.membership().get_node(&id)?;
                    Some((id, node.raft_addr.clone()))
                })
                .collect();
            (m.current_term, voters)
        };
        // This node counts for itself.
        let needed = voters.len().div_ceil(2);
        if needed == 0 {
            return Some(start);
        }
        let deadline = start + timeout;
        let mut asks: futures::stream::FuturesUnordered<_> = voters
            .iter()
            .map(|(id, addr)| {
                let transport = std::sync::Arc::clone(&self.transport);
                async move {
                    // A voter that does not follow this node yet (just elected: its first append is
                    // on the way) is asked again shortly, not given up on: the answer of the other,
                    // dead, voter would otherwise be awaited until the deadline, and the proof (and
                    // the VIP with it) would come a whole attempt later.
                    loop {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return None;
                        }
                        match transport.call(*id, addr, RpcBody::LogState, left).await {
                            Ok(RpcResponse::LogState(s))
                                if s.leader == Some(self.id) && s.term == term =>
                            {
                                return Some(s);
                            }
                            Ok(RpcResponse::LogState(s)) if s.term <= term => {
                                tokio::time::sleep(PLEDGE_ASK_AGAIN).await;
                            }
                            _ => return None,
                        }
                    }
                }
            })
            .collect();
        // The first quorum to answer is enough (a dead voter's timeout must not age the proof); the
        // weakest pledge of that quorum bounds the lease.
        let mut weakest: Option<Instant> = None;
        let mut pledges = 0;
        while let Some(answer) = asks.next().await {
            let Some(s) = answer else {
                continue;
            };
            let pledge = start.checked_sub(Duration::from_millis(s.silent_ms))?;
            weakest = Some(weakest.map_or(pledge, |w| w.min(pledge)));
            pledges += 1;
            if pledges >= needed {
                return weakest;
            }
        }
        None
    }
}

/// How soon a voter that does not follow this node yet is asked again for its pledge. Right after an
/// election the proof waits for the other voter to accept the first append; asked every 10 ms, the
/// proof came 15.6 ms (p50) after the election, every 2 ms 5.6–8.0 ms (BENCHMARKS, issue 18, seventh
/// pass). The asks are small and last only that long.
const PLEDGE_ASK_AGAIN: Duration = Duration::from_millis(2);

/// Whether this node should be the one to campaign: its log is at least as long as every peer's,
/// and it has the lowest id among equals.
pub(crate) fn should_campaign(me: NodeId, mine: Option<u64>, peers: &[(NodeId, LogState)]) -> bool {
    peers
        .iter()
        .all(|(id, s)| mine > s.last_log_index || (mine == s.last_log_index && me < *id))
}

/// Heartbeats between two tries of the same node.
const RETRY_HEARTBEATS: u32 = 4;

/// Runs while the node does.
pub(crate) async fn watch(inner: Weak<Inner>) {
    let Some(first) = inner.upgrade() else {
        return;
    };
    let heartbeat = Duration::from_millis(first.config.heartbeat_ms);
    let lease = Duration::from_millis(first.config.election_max_ms);
    drop(first);
    // The check is a clock read until the leader has been silent past the lease; a fine tick
    // starts the campaign within a few milliseconds of it (a takeover waits for this).
    let mut tick = tokio::time::interval((heartbeat / 10).max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_try: Option<Instant> = None;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        // Asking before every peer is past its lease only costs an RPC: their answers decide. A
        // try that did not make a leader is repeated after a few heartbeats, not left to openraft's
        // timers: a node that campaigned on its own timer meanwhile (typically one just restarted)
        // has taken the next term and refuses it, and only a later term gets its vote.
        if inner.leader_contact.silent_for() < lease
            || last_try.is_some_and(|t| t.elapsed() < heartbeat * RETRY_HEARTBEATS)
        {
            continue;
        }
        let (state, leader, mine, voters) = {
            let m = inner.raft.metrics();
            let m = m.borrow();
            let voters: Vec<(NodeId, String)> = m
                .membership_config
                .membership()
                .voter_ids()
                .filter_map(|id| {
                    let node = m.membership_config.membership().get_node(&id)?;
                    Some((id, node.raft_addr.clone()))
                })
                .collect();
            (m.state, m.current_leader, m.last_log_index, voters)
        };
        let stuck = matches!(state, ServerState::Follower | ServerState::Candidate);
        if !stuck || !voters.iter().any(|(id, _)| *id == inner.id) {
            continue;
        }
        let quorum = voters.len() / 2 + 1;
        let asks = voters
            .iter()
            .filter(|(id, _)| *id != inner.id && Some(*id) != leader)
            .map(|(id, addr)| {
                let (transport, id, addr) =
                    (std::sync::Arc::clone(&inner.transport), *id, addr.clone());
                async move {
                    match transport
                        .call(id, &addr, RpcBody::LogState, heartbeat * 2)
                        .await
                    {
                        Ok(RpcResponse::LogState(s)) => Some((id, s)),
                        _ => None,
                    }
                }
            });
        let peers: Vec<(NodeId, LogState)> = futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
        // Enough voters to win, all of them past their lease (they grant), none ahead of us.
        let lease_ms = lease.as_millis() as u64;
        if peers.len() + 1 < quorum || peers.iter().any(|(_, s)| s.silent_ms <= lease_ms) {
            continue;
        }
        if !should_campaign(inner.id, mine, &peers) {
            continue;
        }
        // The answers took a moment: a leader that reached this node meanwhile (one just
        // elected) must not be deposed by a campaign decided before it spoke.
        if inner.leader_contact.silent_for() < lease {
            continue;
        }
        last_try = Some(Instant::now());
        tracing::info!(node = inner.id, silent_leader = ?leader, silent_ms = inner.leader_contact.silent_for().as_millis() as u64, "leader silent past every lease; campaigning now");
        metrics::counter!("pbx_raft_fast_elections_total").increment(1);
        if let Err(e) = inner.raft.trigger().elect().await {
            tracing::warn!(node = inner.id, error = %e, "could not start an election");
        }
    }
}

/// openraft's own election timer stays off after a start (the node is created with elections
/// disabled) until a leader reaches this node, this node leads, it is the only voter, or `grace`
/// has passed. A restarted voter does not hear the leader at once: the leader's replication to it
/// sits in a backoff and a connect attempt. Campaigning on its own timer meanwhile (openraft 0.9
/// has no pre-vote) it would take a higher term and depose a healthy leader when the leader's next
/// append sees it: a rejoin then cost 1 to 228 elections. Fast succession still runs, so a leader
/// that is really gone (every voter past its lease) is replaced as quickly as before.
pub(crate) async fn hold_elections_after_start(inner: Weak<Inner>, grace: Duration) {
    let started = Instant::now();
    let Some(first) = inner.upgrade() else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_millis(first.config.heartbeat_ms / 2 + 1));
    drop(first);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let (leading, voters) = {
            let m = inner.raft.metrics();
            let m = m.borrow();
            (
                m.state == ServerState::Leader,
                m.membership_config.membership().voter_ids().count(),
            )
        };
        let heard = inner.leader_contact.heard_since(started);
        if leading || heard || voters <= 1 || started.elapsed() >= grace {
            tracing::debug!(
                node = inner.id,
                heard,
                waited_ms = started.elapsed().as_millis() as u64,
                "openraft's election timer on"
            );
            inner.raft.runtime_config().elect(true);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(index: Option<u64>) -> LogState {
        LogState {
            last_log_index: index,
            silent_ms: 1000,
            leader: None,
            term: 3,
        }
    }

    #[test]
    fn the_longest_log_campaigns_and_ties_go_to_the_lowest_id() {
        assert!(should_campaign(2, Some(10), &[(3, s(Some(9)))]));
        assert!(!should_campaign(2, Some(9), &[(3, s(Some(10)))]));
        assert!(should_campaign(2, Some(10), &[(3, s(Some(10)))]));
        assert!(!should_campaign(3, Some(10), &[(2, s(Some(10)))]));
        assert!(should_campaign(4, Some(5), &[]));
        assert!(!should_campaign(1, None, &[(2, s(Some(0)))]));
    }
}
