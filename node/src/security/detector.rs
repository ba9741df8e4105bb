//! Counting per source, cheaply and in bounded memory: packets (SIP), requests (API) and failed
//! authentications in fixed windows. Crossing a threshold is an offence the caller turns into a ban.
//! Under a flood from more sources than the table holds, new sources go uncounted (and the count of
//! them is exported) rather than growing memory without bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    SipPacket,
    ApiRequest,
    AuthFailure,
}

impl Kind {
    fn index(self) -> usize {
        match self {
            Self::SipPacket => 0,
            Self::ApiRequest => 1,
            Self::AuthFailure => 2,
        }
    }

    /// The ban reason when this count crosses its threshold.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::SipPacket => "sip-flood",
            Self::ApiRequest => "api-flood",
            Self::AuthFailure => "auth-failures",
        }
    }
}

/// A threshold: at most `limit` events per `window`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Threshold {
    pub(crate) limit: u32,
    pub(crate) window: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

#[derive(Debug)]
struct Entry {
    windows: [Option<Window>; 3],
    last_seen: Instant,
}

/// A full table is swept for quiet sources at most this often: sweeping on every packet of a flood
/// from new addresses would make the defence itself the bottleneck.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Table {
    sources: HashMap<IpAddr, Entry>,
    next_sweep: Option<Instant>,
}

pub(crate) struct Detector {
    thresholds: [Threshold; 3],
    max_sources: usize,
    table: Mutex<Table>,
}

impl Detector {
    /// `thresholds` in the order SIP packets, API requests, auth failures.
    pub(crate) fn new(thresholds: [Threshold; 3], max_sources: usize) -> Self {
        Self {
            thresholds,
            max_sources,
            table: Mutex::new(Table::default()),
        }
    }

    /// Counts one event; `true` exactly when this event crosses the threshold.
    pub(crate) fn hit(&self, ip: IpAddr, kind: Kind, now: Instant) -> bool {
        let th = self.thresholds[kind.index()];
        if th.limit == 0 {
            return false;
        }
        let mut table = self
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let table = &mut *table;
        if !table.sources.contains_key(&ip) && table.sources.len() >= self.max_sources {
            // Make room from sources gone quiet; if none, leave this one uncounted.
            if table.next_sweep.is_none_or(|at| now >= at) {
                let longest = self.thresholds.iter().map(|t| t.window).max();
                let longest = longest.unwrap_or_default();
                table
                    .sources
                    .retain(|_, e| now.duration_since(e.last_seen) < longest);
                table.next_sweep = Some(now + SWEEP_EVERY);
                metrics::gauge!("pbx_security_tracked_sources").set(table.sources.len() as f64);
            }
            if table.sources.len() >= self.max_sources {
                metrics::counter!("pbx_security_untracked_total").increment(1);
                return false;
            }
        }
        let entry = table.sources.entry(ip).or_insert(Entry {
            windows: [None; 3],
            last_seen: now,
        });
        entry.last_seen = now;
        let w = &mut entry.windows[kind.index()];
        match w {
            Some(w) if now.duration_since(w.started) < th.window => w.count += 1,
            _ => {
                *w = Some(Window {
                    started: now,
                    count: 1,
                });
            }
        }
        w.is_some_and(|w| w.count == th.limit + 1)
    }

    /// Forgets a source (after it was banned, or unbanned, its counts start over).
    pub(crate) fn forget(&self, ip: IpAddr) {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .sources
            .remove(&ip);
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table.lock().unwrap().sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector(max: usize) -> Detector {
        let t = |limit, secs| Threshold {
            limit,
            window: Duration::from_secs(secs),
        };
        Detector::new([t(40, 2), t(120, 60), t(5, 600)], max)
    }

    #[test]
    fn crossing_a_threshold_is_reported_once_per_window() {
        let d = detector(100);
        let ip: IpAddr = "198.18.0.9".parse().unwrap();
        let t0 = Instant::now();
        let crossed: Vec<bool> = (0..45).map(|_| d.hit(ip, Kind::SipPacket, t0)).collect();
        assert_eq!(crossed.iter().filter(|c| **c).count(), 1);
        assert!(crossed[40], "the 41st packet in the window crosses 40");
        // A new window starts over.
        assert!(!d.hit(ip, Kind::SipPacket, t0 + Duration::from_secs(3)));
        // Kinds are counted apart.
        for i in 0..6 {
            assert_eq!(d.hit(ip, Kind::AuthFailure, t0), i == 5);
        }
    }

    #[test]
    fn a_flood_from_many_sources_stays_within_the_table() {
        let d = detector(10_000);
        let t0 = Instant::now();
        for i in 0..200_000u32 {
            let ip = IpAddr::from(i.wrapping_add(0xC612_0000).to_be_bytes());
            d.hit(ip, Kind::SipPacket, t0);
        }
        assert_eq!(d.tracked(), 10_000);
        // Once those sources go quiet, new ones are counted again.
        let later = t0 + Duration::from_secs(601);
        assert!(!d.hit("203.0.113.1".parse().unwrap(), Kind::SipPacket, later));
        assert_eq!(d.tracked(), 1);
    }
}
