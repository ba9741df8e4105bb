//! The in-process side of the fence: SIP on the VIP is served and sent only while the lease holds. A
//! process that was frozen (SIGSTOP, a stalled disk) and wakes up with packets queued must not answer
//! them as the owner before its lease check runs; every send and receive on the VIP asks this first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Shared deadline; cheap to clone and to check (one atomic load).
#[derive(Debug, Clone)]
pub struct Fence {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base: Instant,
    /// Microseconds after `base` until which the lease holds; 0 when not held.
    until_us: AtomicU64,
}

impl Default for Fence {
    fn default() -> Self {
        Self::new()
    }
}

impl Fence {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                base: Instant::now(),
                until_us: AtomicU64::new(0),
            }),
        }
    }

    /// The lease now holds until `until`.
    pub fn hold_until(&self, until: Instant) {
        let us = until.saturating_duration_since(self.inner.base).as_micros();
        self.inner
            .until_us
            .store(u64::try_from(us).unwrap_or(u64::MAX), Ordering::Release);
    }

    pub fn revoke(&self) {
        self.inner.until_us.store(0, Ordering::Release);
    }

    /// Whether this node may act as the VIP owner right now.
    pub fn holds(&self) -> bool {
        let now = self.inner.base.elapsed().as_micros();
        u128::from(self.inner.until_us.load(Ordering::Acquire)) > now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn holds_only_until_the_deadline_and_not_after_revoke() {
        let f = Fence::new();
        assert!(!f.holds());
        f.hold_until(Instant::now() + Duration::from_secs(60));
        // Clones share the deadline: the transports hold clones of the owner loop's fence.
        let shared = f.clone();
        assert!(shared.holds());
        f.revoke();
        assert!(!shared.holds());
        assert!(!f.holds());
        f.hold_until(Instant::now() - Duration::from_millis(1));
        assert!(!f.holds());
    }
}
