//! Transaction timers: the `Timer` enum, a per-transaction `TimerTable`, and the layer-wide
//! `TimerQueue` ordered by deadline (what `poll_timeout` reads).

use std::collections::BTreeSet;
use std::time::Instant;

use super::TxId;

/// The timers of RFC 3261 §17 (A–K), RFC 6026 (L, M) and two of the layer's own.
///
/// | timer | transaction | meaning |
/// |---|---|---|
/// | `A` | client INVITE | request retransmission (unreliable only), T1 doubling |
/// | `B` | client INVITE | 64·T1 without a response in Calling (or without a final after CANCEL) → timeout |
/// | `C` | INVITE (both) | guard on Proceeding (`TimerConfig::timer_c`): client sends CANCEL, server answers 408 |
/// | `D` | client INVITE | Completed wait for final retransmissions (32 s unreliable, 0 reliable) |
/// | `E` | client non-INVITE | request retransmission (unreliable only), T1 doubling to T2 |
/// | `F` | non-INVITE (both) | 64·T1 → timeout (server side: the TU never answered) |
/// | `G` | server INVITE | final response retransmission (unreliable only), T1 doubling to T2; also the optional 2xx retransmission in Accepted |
/// | `H` | server INVITE | 64·T1 waiting for the ACK of a non-2xx → timeout |
/// | `I` | server INVITE | Confirmed wait for ACK retransmissions (T4 unreliable, 0 reliable) |
/// | `J` | server non-INVITE | Completed wait for request retransmissions (64·T1 unreliable, 0 reliable) |
/// | `K` | client non-INVITE | Completed wait for response retransmissions (T4 unreliable, 0 reliable) |
/// | `L` | server INVITE | Accepted (RFC 6026): 64·T1 absorbing INVITE retransmissions, passing ACKs |
/// | `M` | client INVITE | Accepted (RFC 6026): 64·T1 passing 2xx retransmissions and forked 2xx |
/// | `Trying` | server INVITE | automatic `100 Trying` when the TU stays silent (§17.2.1) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Timer {
    A,
    B,
    C,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
    L,
    M,
    Trying,
}

impl Timer {
    const COUNT: usize = 14;

    fn index(self) -> usize {
        self as usize
    }
}

/// Every armed timer of every transaction, ordered by deadline.
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    entries: BTreeSet<(Instant, TxId, Timer)>,
}

impl TimerQueue {
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.entries.first().map(|entry| entry.0)
    }

    /// Removes and returns the earliest timer due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(TxId, Timer)> {
        let &(at, owner, timer) = self.entries.first()?;
        if at > now {
            return None;
        }
        self.entries.pop_first();
        Some((owner, timer))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The armed timers of one transaction (at most one deadline per timer).
#[derive(Debug)]
pub(crate) struct TimerTable {
    owner: TxId,
    deadlines: [Option<Instant>; Timer::COUNT],
}

impl TimerTable {
    pub(crate) fn new(owner: TxId) -> Self {
        Self {
            owner,
            deadlines: [None; Timer::COUNT],
        }
    }

    /// Arms (or re-arms) `timer` to fire at `at`.
    pub(crate) fn set(&mut self, queue: &mut TimerQueue, timer: Timer, at: Instant) {
        self.stop(queue, timer);
        self.deadlines[timer.index()] = Some(at);
        queue.entries.insert((at, self.owner, timer));
    }

    pub(crate) fn stop(&mut self, queue: &mut TimerQueue, timer: Timer) {
        if let Some(at) = self.deadlines[timer.index()].take() {
            queue.entries.remove(&(at, self.owner, timer));
        }
    }

    /// Stops every timer (the transaction is going away).
    pub(crate) fn clear(&mut self, queue: &mut TimerQueue) {
        for (index, slot) in self.deadlines.iter_mut().enumerate() {
            if let Some(at) = slot.take() {
                let timer = TIMERS[index];
                queue.entries.remove(&(at, self.owner, timer));
            }
        }
    }

    /// The queue popped `timer`: forget its deadline. Returns false if the table did not hold it.
    pub(crate) fn fired(&mut self, timer: Timer) -> bool {
        self.deadlines[timer.index()].take().is_some()
    }
}

const TIMERS: [Timer; Timer::COUNT] = [
    Timer::A,
    Timer::B,
    Timer::C,
    Timer::D,
    Timer::E,
    Timer::F,
    Timer::G,
    Timer::H,
    Timer::I,
    Timer::J,
    Timer::K,
    Timer::L,
    Timer::M,
    Timer::Trying,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::{ClientTxId, ServerTxId};
    use std::time::Duration;

    #[test]
    fn table_and_queue_stay_in_step() {
        let base = Instant::now();
        let mut queue = TimerQueue::default();
        let mut a = TimerTable::new(TxId::Client(ClientTxId(1)));
        let mut b = TimerTable::new(TxId::Server(ServerTxId(2)));
        a.set(&mut queue, Timer::E, base + Duration::from_millis(500));
        a.set(&mut queue, Timer::F, base + Duration::from_secs(32));
        b.set(&mut queue, Timer::J, base + Duration::from_millis(100));
        a.set(&mut queue, Timer::E, base + Duration::from_millis(400));
        assert_eq!(queue.len(), 3);
        assert_eq!(
            queue.next_deadline(),
            Some(base + Duration::from_millis(100))
        );
        assert_eq!(queue.pop_due(base), None);
        let due = base + Duration::from_secs(1);
        assert_eq!(
            queue.pop_due(due),
            Some((TxId::Server(ServerTxId(2)), Timer::J))
        );
        assert!(b.fired(Timer::J));
        assert_eq!(
            queue.pop_due(due),
            Some((TxId::Client(ClientTxId(1)), Timer::E))
        );
        assert!(a.fired(Timer::E));
        assert_eq!(queue.pop_due(due), None);
        a.clear(&mut queue);
        assert_eq!(queue.len(), 0);
        assert_eq!(queue.next_deadline(), None);
    }
}
