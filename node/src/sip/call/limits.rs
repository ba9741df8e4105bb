//! How many calls each extension is in, against the per-extension limit.
//!
//! Counted in the memory of the node that carries the calls, which with a VIP is its owner: every
//! call passes through it. The count is rebuilt from the replicated dialog records when a node takes
//! the VIP over (each carried-on call is counted, even past the limit), and dropped with the calls
//! when it hands them over. Calls still ringing at a failover have no record and are lost with the
//! node anyway. Without a VIP, each node counts the calls it carries.

use std::collections::HashMap;

#[derive(Debug, Default)]
pub(crate) struct CallLimits {
    counts: HashMap<String, usize>,
}

/// Which extension of a call is at its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AtLimit {
    Caller,
    Callee,
}

impl CallLimits {
    pub(crate) fn count(&self, extension: &str) -> usize {
        if extension.is_empty() {
            return 0;
        }
        self.counts.get(extension).copied().unwrap_or(0)
    }

    /// Counts a new call of `[caller, callee]`, unless either is already in `max` calls.
    pub(crate) fn reserve(&mut self, extensions: [&str; 2], max: usize) -> Result<(), AtLimit> {
        if self.count(extensions[0]) >= max {
            return Err(AtLimit::Caller);
        }
        if self.count(extensions[1]) >= max {
            return Err(AtLimit::Callee);
        }
        self.adopt(extensions);
        Ok(())
    }

    /// Counts a call that exists already (carried on from its record): never refused.
    pub(crate) fn adopt(&mut self, extensions: [&str; 2]) {
        // An empty name is no extension (a ring group's number is not counted).
        for ext in extensions.into_iter().filter(|e| !e.is_empty()) {
            *self.counts.entry(ext.to_owned()).or_default() += 1;
        }
    }

    /// The call is over (or refused after its reservation).
    pub(crate) fn release(&mut self, extensions: [&str; 2]) {
        for ext in extensions {
            if let Some(n) = self.counts.get_mut(ext) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.counts.remove(ext);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_extension_is_refused_on_the_right_side() {
        let mut l = CallLimits::default();
        assert_eq!(l.reserve(["1001", "1002"], 1), Ok(()));
        assert_eq!(l.reserve(["1001", "1003"], 1), Err(AtLimit::Caller));
        assert_eq!(l.reserve(["1003", "1002"], 1), Err(AtLimit::Callee));
        // A refused call counted nothing.
        assert_eq!(l.count("1003"), 0);
        l.release(["1001", "1002"]);
        assert_eq!(l.reserve(["1001", "1003"], 1), Ok(()));
    }

    #[test]
    fn carried_on_calls_count_past_the_limit_and_release_without_drift() {
        let mut l = CallLimits::default();
        // A takeover finds three calls of 1001 in the records while the limit is two.
        for callee in ["2001", "2002", "2003"] {
            l.adopt(["1001", callee]);
        }
        assert_eq!(l.count("1001"), 3);
        assert_eq!(l.reserve(["1001", "2004"], 2), Err(AtLimit::Caller));
        l.release(["1001", "2001"]);
        assert_eq!(l.reserve(["1001", "2004"], 2), Err(AtLimit::Caller));
        l.release(["1001", "2002"]);
        assert_eq!(l.reserve(["1001", "2004"], 2), Ok(()));
        assert_eq!(l.count("1001"), 2);
        for callee in ["2003", "2004"] {
            l.release(["1001", callee]);
        }
        assert_eq!(l.count("1001"), 0);
        // More releases than calls never go below zero nor leave entries behind.
        l.release(["1001", "2004"]);
        assert_eq!(l.count("1001"), 0);
        assert!(l.counts.is_empty());
    }
}
