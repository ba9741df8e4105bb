//! The RTP port range: pairs of UDP sockets (RTP on an even port, RTCP on the next) bound on the media
//! address. The kernel is the record of which ports are taken: a port is free when it binds.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::MediaError;
use super::socket::RelaySocket;

/// An RTP/RTCP socket pair. Dropping it frees both ports.
#[derive(Debug)]
pub(crate) struct PortPair {
    pub(crate) rtp: Arc<RelaySocket>,
    pub(crate) rtcp: Arc<RelaySocket>,
    pub(crate) port: u16,
    _lease: Lease,
}

/// Counts a pair as in use for as long as it lives.
#[derive(Debug)]
struct Lease(Arc<AtomicUsize>);

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("pbx_media_port_pairs_in_use").decrement(1.0);
    }
}

/// Hands out port pairs from `[min, max]`, round-robin so that a port just released is not reused at
/// once (late packets of the old call would land in the new one).
#[derive(Debug)]
pub(crate) struct PortRange {
    addr: IpAddr,
    first: u16,
    pairs: u16,
    cursor: Mutex<u16>,
    in_use: Arc<AtomicUsize>,
}

impl PortRange {
    pub(crate) fn new(addr: IpAddr, min: u16, max: u16) -> Self {
        let first = min + (min % 2);
        let pairs = max.saturating_sub(first).saturating_add(1) / 2;
        Self {
            addr,
            first,
            pairs,
            cursor: Mutex::new(0),
            in_use: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub(crate) fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Pairs currently held by calls.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    /// The next free pair, trying each pair of the range at most once.
    pub(crate) fn allocate(&self) -> Result<PortPair, MediaError> {
        let start = {
            let mut cursor = self
                .cursor
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let start = *cursor;
            *cursor = (start + 1) % self.pairs.max(1);
            start
        };
        for i in 0..self.pairs {
            let index = (start + i) % self.pairs;
            let port = self.first + index * 2;
            if let Ok(pair) = self.bind(port) {
                if i > 0 {
                    let mut cursor = self
                        .cursor
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    *cursor = (index + 1) % self.pairs;
                }
                return Ok(pair);
            }
        }
        Err(MediaError::PortsExhausted)
    }

    /// Binds a given pair (taking over a call's media on the same ports after a failover).
    pub(crate) fn bind(&self, port: u16) -> Result<PortPair, MediaError> {
        let rtp = Arc::new(bind_udp(SocketAddr::new(self.addr, port))?);
        let rtcp = Arc::new(bind_udp(SocketAddr::new(self.addr, port + 1))?);
        self.in_use.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("pbx_media_port_pairs_in_use").increment(1.0);
        Ok(PortPair {
            rtp,
            rtcp,
            port,
            _lease: Lease(Arc::clone(&self.in_use)),
        })
    }
}

fn bind_udp(addr: SocketAddr) -> Result<RelaySocket, MediaError> {
    RelaySocket::bind(addr).map_err(|e| MediaError::Bind { addr, source: e })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pairs_are_even_distinct_and_run_out() {
        let range = PortRange::new([127, 0, 0, 1].into(), 41_001, 41_008);
        let a = range.allocate().unwrap();
        let b = range.allocate().unwrap();
        assert_eq!(a.port % 2, 0);
        assert_ne!(a.port, b.port);
        assert!((41_002..=41_007).contains(&a.port));
        // [41002, 41007] holds three pairs.
        let c = range.allocate().unwrap();
        assert!(matches!(range.allocate(), Err(MediaError::PortsExhausted)));
        assert_eq!(range.in_use(), 3);
        drop(b);
        assert_eq!(range.in_use(), 2);
        assert!(range.allocate().is_ok());
        drop((a, c));
    }
}
