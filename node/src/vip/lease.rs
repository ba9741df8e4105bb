//! The VIP ownership lease, as a pure state machine: `tick(now, leader, pledge)` ─▶ what to do.
//!
//! The owner is the Raft leader, and only while a quorum of voters has pledged it their votes. The
//! owner loop reads its own clock, then asks every other voter whom it follows and how long since it
//! last accepted an append from it (`Cluster::lease_start`); when a quorum answers "you", the pledge
//! counts from that clock reading. openraft refuses any candidate until `election_max` after a voter's
//! last accepted append, so with `lease + margin < election_max` an old owner cut off from its peers,
//! or frozen, has dropped the address before any other node can be elected and claim it: never two
//! owners. The pledge is asked afresh every time, never read from metrics a frozen process may have
//! computed before it stopped.

use std::time::{Duration, Instant};

/// What the owner loop must do after a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Not the owner, nothing to do.
    Idle,
    /// Became the owner: bring the address and the services up; the lease holds until `until`.
    Acquire { until: Instant },
    /// Still the owner; the lease now holds until `until`.
    Renew { until: Instant },
    /// The lease ran out or leadership moved: take everything down at once.
    Release(Loss),
}

/// Why a lease was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Another node leads now (or this one stepped down).
    NotLeader,
    /// Still the leader by its own account, but no quorum answered within the lease: cut off.
    NoQuorum,
}

impl Loss {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotLeader => "not_leader",
            Self::NoQuorum => "no_quorum",
        }
    }
}

#[derive(Debug)]
pub struct Lease {
    duration: Duration,
    held: bool,
}

impl Lease {
    pub fn new(duration: Duration) -> Self {
        Self {
            duration,
            held: false,
        }
    }

    pub fn is_held(&self) -> bool {
        self.held
    }

    /// `leader`: this node is the Raft leader now. `quorum_ack`: the clock reading the last quorum
    /// pledge counts from (`None` before the first one).
    pub fn tick(&mut self, now: Instant, leader: bool, quorum_ack: Option<Instant>) -> Step {
        let until = quorum_ack.map(|at| at + self.duration);
        let valid = leader && until.is_some_and(|u| now < u);
        match (self.held, valid, until) {
            (false, true, Some(until)) => {
                self.held = true;
                Step::Acquire { until }
            }
            (true, true, Some(until)) => Step::Renew { until },
            (true, _, _) => {
                self.held = false;
                Step::Release(if leader {
                    Loss::NoQuorum
                } else {
                    Loss::NotLeader
                })
            }
            _ => Step::Idle,
        }
    }

    /// Gives the lease up without a tick (the driver failed to bring the address up, or shutdown).
    pub fn drop_lease(&mut self) {
        self.held = false;
    }
}

/// The longest lease that keeps the fence: below `election_max` by `margin` (time for the release to
/// reach the kernel, and the follower's clock reading the heartbeat a little after it was sent).
pub fn max_lease(election_max: Duration, margin: Duration) -> Duration {
    election_max.saturating_sub(margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Duration = Duration::from_millis(300);

    #[test]
    fn a_leader_with_fresh_quorum_contact_owns_and_renews() {
        let t0 = Instant::now();
        let mut lease = Lease::new(L);
        assert_eq!(lease.tick(t0, false, None), Step::Idle);
        assert_eq!(lease.tick(t0, true, None), Step::Idle, "no quorum yet");
        let ack = t0;
        let now = t0 + Duration::from_millis(20);
        assert_eq!(
            lease.tick(now, true, Some(ack)),
            Step::Acquire { until: ack + L }
        );
        let ack2 = t0 + Duration::from_millis(50);
        assert_eq!(
            lease.tick(ack2 + Duration::from_millis(10), true, Some(ack2)),
            Step::Renew { until: ack2 + L }
        );
        assert!(lease.is_held());
    }

    #[test]
    fn a_cut_off_leader_releases_when_its_lease_runs_out() {
        let t0 = Instant::now();
        let mut lease = Lease::new(L);
        assert!(matches!(
            lease.tick(t0, true, Some(t0)),
            Step::Acquire { .. }
        ));
        // No new acknowledgement: still owner just before the end, released at the end.
        assert!(matches!(
            lease.tick(t0 + L - Duration::from_millis(1), true, Some(t0)),
            Step::Renew { .. }
        ));
        assert_eq!(
            lease.tick(t0 + L, true, Some(t0)),
            Step::Release(Loss::NoQuorum)
        );
        assert_eq!(lease.tick(t0 + L * 2, true, Some(t0)), Step::Idle);
        assert!(!lease.is_held());
    }

    #[test]
    fn losing_leadership_releases_at_once_even_with_a_fresh_ack() {
        let t0 = Instant::now();
        let mut lease = Lease::new(L);
        assert!(matches!(
            lease.tick(t0, true, Some(t0)),
            Step::Acquire { .. }
        ));
        assert_eq!(
            lease.tick(t0 + Duration::from_millis(1), false, Some(t0)),
            Step::Release(Loss::NotLeader)
        );
    }

    #[test]
    fn a_process_frozen_past_its_lease_does_not_resume_as_owner() {
        // SIGSTOP then SIGCONT: the first tick after waking sees an old acknowledgement.
        let t0 = Instant::now();
        let mut lease = Lease::new(L);
        assert!(matches!(
            lease.tick(t0, true, Some(t0)),
            Step::Acquire { .. }
        ));
        let woke = t0 + Duration::from_secs(5);
        assert_eq!(
            lease.tick(woke, true, Some(t0)),
            Step::Release(Loss::NoQuorum)
        );
        // Even if it still believes it leads, a stale acknowledgement never re-acquires.
        assert_eq!(lease.tick(woke, true, Some(t0)), Step::Idle);
    }

    #[test]
    fn the_lease_stays_inside_the_election_timeout() {
        assert_eq!(
            max_lease(Duration::from_millis(450), Duration::from_millis(150)),
            Duration::from_millis(300)
        );
        assert_eq!(
            max_lease(Duration::from_millis(100), Duration::from_millis(150)),
            Duration::ZERO
        );
    }
}
