//! Finished non-INVITE server transactions over UDP, kept only for what a retransmitted request needs.
//!
//! RFC 3261 Timer J keeps a non-INVITE server transaction in Completed for 64·T1 (32 s) after its
//! final response, only to answer a retransmission of the request with that response again. At a few
//! thousand REGISTERs a second that is hundreds of thousands of transactions, nearly all of them never
//! asked again; a full state machine each (timer table, headers, tags) made them most of the
//! endpoint's memory. Here each is its key's 128-bit keyed digest, the peer, and the encoded response,
//! expiring in arrival order from one FIFO (every entry lives the same 64·T1, so the FIFO is a time
//! wheel with a single slot per tick). Past `capacity` the oldest is forgotten early: a late
//! retransmission of it becomes a new request, which the TU answers again (a REGISTER or OPTIONS is
//! idempotent), rather than a new request being refused.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::Instant;

use super::key::ServerKey;
use super::{Peer, ServerTxId};

/// A server key reduced to 128 bits by two independently keyed SipHashes: a collision needs both
/// random keys, so a peer cannot craft a branch that answers it with another peer's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Digest(u64, u64);

#[derive(Debug)]
struct Entry {
    id: ServerTxId,
    peer: Peer,
    response: Box<[u8]>,
}

#[derive(Debug)]
pub(crate) struct Finished {
    keys: (RandomState, RandomState),
    entries: HashMap<Digest, Entry>,
    /// Expiry order; an entry's deadline is when it was added plus the fixed lifetime.
    expiry: VecDeque<(Instant, Digest, ServerTxId)>,
    capacity: usize,
    forgotten_early: u64,
}

impl Finished {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            keys: (RandomState::new(), RandomState::new()),
            entries: HashMap::new(),
            expiry: VecDeque::new(),
            capacity,
            forgotten_early: 0,
        }
    }

    fn digest(&self, key: &ServerKey) -> Digest {
        Digest(self.keys.0.hash_one(key), self.keys.1.hash_one(key))
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn forgotten_early(&self) -> u64 {
        self.forgotten_early
    }

    /// Keeps `response` for retransmissions of the request with `key` until `until`. Returns the
    /// transaction forgotten to make room, if the table was full.
    pub(crate) fn insert(
        &mut self,
        key: &ServerKey,
        id: ServerTxId,
        peer: Peer,
        response: Vec<u8>,
        until: Instant,
    ) -> Option<ServerTxId> {
        let mut evicted = None;
        if self.entries.len() >= self.capacity {
            evicted = self.pop_front();
            self.forgotten_early += u64::from(evicted.is_some());
        }
        if self.capacity == 0 {
            return Some(id);
        }
        let digest = self.digest(key);
        let entry = Entry {
            id,
            peer,
            response: response.into_boxed_slice(),
        };
        self.entries.insert(digest, entry);
        self.expiry.push_back((until, digest, id));
        evicted
    }

    /// The response to re-send for a retransmission of the request with `key`, and where.
    pub(crate) fn lookup(&self, key: &ServerKey) -> Option<(Peer, &[u8])> {
        self.entries
            .get(&self.digest(key))
            .map(|e| (e.peer, &e.response[..]))
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.expiry.front().map(|&(at, ..)| at)
    }

    /// Removes and returns the oldest entry due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<ServerTxId> {
        match self.expiry.front() {
            Some(&(at, ..)) if at <= now => self.pop_front(),
            _ => None,
        }
    }

    fn pop_front(&mut self) -> Option<ServerTxId> {
        let (_, digest, id) = self.expiry.pop_front()?;
        if self.entries.get(&digest).is_some_and(|e| e.id == id) {
            self.entries.remove(&digest);
        }
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::Transport;
    use crate::transaction::key::MethodCode;
    use std::time::Duration;

    fn key(branch: &str) -> ServerKey {
        ServerKey {
            branch: branch.to_owned(),
            sent_by: "198.18.0.21:5060".to_owned(),
            method: MethodCode::of(rsip::Method::Register),
        }
    }

    fn peer() -> Peer {
        Peer {
            transport: Transport::Udp,
            addr: "198.18.0.21:5060"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        }
    }

    #[test]
    fn entries_answer_until_they_expire_in_order() {
        let t0 = Instant::now();
        let mut f = Finished::new(10);
        let life = Duration::from_secs(32);
        assert_eq!(
            f.insert(
                &key("z9hG4bKa"),
                ServerTxId(1),
                peer(),
                b"A".to_vec(),
                t0 + life
            ),
            None
        );
        let t1 = t0 + Duration::from_secs(1);
        f.insert(
            &key("z9hG4bKb"),
            ServerTxId(2),
            peer(),
            b"B".to_vec(),
            t1 + life,
        );
        assert_eq!(f.lookup(&key("z9hG4bKa")).map(|(_, r)| r), Some(&b"A"[..]));
        assert_eq!(f.lookup(&key("z9hG4bKb")).map(|(_, r)| r), Some(&b"B"[..]));
        assert!(f.lookup(&key("z9hG4bKc")).is_none());
        assert_eq!(f.next_deadline(), Some(t0 + life));
        assert_eq!(f.pop_due(t0 + life - Duration::from_millis(1)), None);
        assert_eq!(f.pop_due(t0 + life), Some(ServerTxId(1)));
        assert_eq!(f.pop_due(t0 + life), None);
        assert!(f.lookup(&key("z9hG4bKa")).is_none());
        assert_eq!(f.pop_due(t1 + life), Some(ServerTxId(2)));
        assert_eq!(f.len(), 0);
        assert_eq!(f.next_deadline(), None);
    }

    #[test]
    fn a_full_table_forgets_its_oldest_entry() {
        let t0 = Instant::now();
        let mut f = Finished::new(2);
        f.insert(&key("z9hG4bK1"), ServerTxId(1), peer(), b"1".to_vec(), t0);
        f.insert(&key("z9hG4bK2"), ServerTxId(2), peer(), b"2".to_vec(), t0);
        let evicted = f.insert(&key("z9hG4bK3"), ServerTxId(3), peer(), b"3".to_vec(), t0);
        assert_eq!(evicted, Some(ServerTxId(1)));
        assert!(f.lookup(&key("z9hG4bK1")).is_none());
        assert!(f.lookup(&key("z9hG4bK3")).is_some());
        assert_eq!((f.len(), f.forgotten_early()), (2, 1));
        assert_eq!(
            Finished::new(0).insert(&key("x"), ServerTxId(9), peer(), vec![], t0),
            Some(ServerTxId(9))
        );
    }
}
