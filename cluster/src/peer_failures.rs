//! What the log says about a peer that replication cannot reach: openraft logs a warning and an
//! error for every failed call (about five lines a second per dead peer with our backoff), so its
//! replication module is filtered out by default and this says it once: when the calls start
//! failing, every [`REMIND_EVERY`] while they go on (with how many failed), and when one works again.

use std::time::Duration;

use tokio::time::Instant;

/// How often a peer that keeps failing is mentioned again.
pub(crate) const REMIND_EVERY: Duration = Duration::from_secs(10);

/// A line worth logging about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    /// The first failure after calls worked (or since the client was made).
    Failing,
    /// Still failing: `failures` calls failed over `for_ms` since the first one.
    StillFailing { failures: u64, for_ms: u64 },
    /// A call worked after `failures` failed ones over `for_ms`.
    Recovered { failures: u64, for_ms: u64 },
}

/// The failure history of the calls to one peer.
#[derive(Debug, Default)]
pub(crate) struct PeerFailures {
    /// When the current run of failures began, and when it was last reported.
    run: Option<(Instant, Instant)>,
    failures: u64,
}

impl PeerFailures {
    /// A call failed at `now`.
    pub(crate) fn failed(&mut self, now: Instant) -> Option<Report> {
        self.failures += 1;
        match &mut self.run {
            None => {
                self.run = Some((now, now));
                Some(Report::Failing)
            }
            Some((since, reported)) if now.duration_since(*reported) >= REMIND_EVERY => {
                *reported = now;
                Some(Report::StillFailing {
                    failures: self.failures,
                    for_ms: millis(now.duration_since(*since)),
                })
            }
            Some(_) => None,
        }
    }

    /// A call worked at `now`.
    pub(crate) fn worked(&mut self, now: Instant) -> Option<Report> {
        let (since, _) = self.run.take()?;
        let failures = std::mem::take(&mut self.failures);
        Some(Report::Recovered {
            failures,
            for_ms: millis(now.duration_since(since)),
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_peer_is_reported_once_then_every_ten_seconds_then_on_recovery() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut peer = PeerFailures::default();
        assert_eq!(peer.worked(at(0)), None, "calls that work say nothing");
        assert_eq!(peer.failed(at(100)), Some(Report::Failing));
        // Five failures a second for ten seconds: one more line, not fifty.
        let mut lines = Vec::new();
        for i in 1..=50 {
            lines.extend(peer.failed(at(100 + i * 200)));
        }
        assert_eq!(
            lines,
            vec![Report::StillFailing {
                failures: 51,
                for_ms: 10_000
            }]
        );
        assert_eq!(
            peer.worked(at(10_300)),
            Some(Report::Recovered {
                failures: 51,
                for_ms: 10_200
            })
        );
        // A later failure starts a new run, counted from one.
        assert_eq!(peer.worked(at(10_400)), None);
        assert_eq!(peer.failed(at(20_000)), Some(Report::Failing));
        assert_eq!(
            peer.worked(at(20_050)),
            Some(Report::Recovered {
                failures: 1,
                for_ms: 50
            })
        );
    }
}
