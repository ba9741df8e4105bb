//! The relay's UDP sockets and how they are read.
//!
//! A socket is registered with tokio for reading only: the relay never waits to send (a send that
//! would block loses the packet, as a router would), and a socket registered for writing too gets
//! a writable event from the kernel after nearly every packet it sends, which the reactor would
//! have to fetch and dispatch for nothing.
//!
//! Reads take every datagram waiting, up to [`BATCH`], in one `recvmmsg`. When it returns fewer
//! than asked, the socket was found empty, so its readiness is cleared there and then instead of
//! with one more read that fails (`EAGAIN`): with RTP's one packet per socket every 20 ms, that
//! saves a system call per packet. Clearing is race-free: tokio clears only the readiness it had
//! seen when the read began, and a datagram that arrives later is a new event.

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::LazyLock;

use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::io::Interest;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};

/// Largest datagram relayed; RTP over Ethernet fits well within it (a longer one is cut there).
pub(crate) const MAX_PACKET: usize = 2048;

/// Datagrams read from one socket at once at most.
pub(crate) const BATCH: usize = 16;

/// quinn-udp's batched read. `UdpSocketState::recv` is a plain `recvmmsg` on the socket it is
/// given and reads nothing of the state; the state's constructor, however, turns options on (GRO,
/// don't-fragment, packet info and TOS ancillary data) that the relay does not want on its sockets.
/// So one state is made, once, on a socket of its own that is closed at once. `None` (no loopback
/// address to make it on): sockets are read one datagram at a time.
static BATCHED: LazyLock<Option<UdpSocketState>> = LazyLock::new(|| {
    let probe = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .or_else(|_| std::net::UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)))
        .ok()?;
    UdpSocketState::new((&probe).into()).ok()
});

/// One RTP or RTCP port of the relay.
#[derive(Debug)]
pub(crate) struct RelaySocket {
    fd: AsyncFd<std::net::UdpSocket>,
}

impl RelaySocket {
    /// Binds `addr` (non-blocking, registered with the current runtime for reading).
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = std::net::UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        // tokio now deprecates the safe constructors (tokio#8587) in favour of `unsafe` ones whose
        // contract is that `as_raw_fd` names the same open descriptor for the `AsyncFd`'s whole
        // life: a `std::net::UdpSocket` owns its descriptor and never changes it, so that holds
        // here, and this crate forbids `unsafe`. (`tokio::net::UdpSocket` always registers for
        // writing as well.)
        #[allow(
            deprecated,
            reason = "the socket owns its descriptor, which is what the unsafe replacement asks"
        )]
        let fd = AsyncFd::with_interest(socket, Interest::READABLE)?;
        Ok(Self { fd })
    }

    #[cfg(test)]
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }

    /// Sends at once or not at all (`WouldBlock` when the send buffer is full).
    pub(crate) fn send_to(&self, packet: &[u8], dest: SocketAddr) -> io::Result<usize> {
        self.fd.get_ref().send_to(packet, dest)
    }

    /// Waits until datagrams may be waiting; [`Ready::recv`] reads them.
    pub(crate) async fn ready(&self) -> io::Result<Ready<'_>> {
        Ok(Ready(self.fd.readable().await?))
    }
}

/// A socket tokio saw readable.
pub(crate) struct Ready<'a>(AsyncFdReadyGuard<'a, std::net::UdpSocket>);

impl Ready<'_> {
    /// Reads what is waiting into `batch` (up to [`BATCH`] datagrams); how many. Readiness is
    /// cleared when the socket was found empty, so the next [`RelaySocket::ready`] waits for new
    /// datagrams; otherwise it returns at once and the rest is read then.
    pub(crate) fn recv(&mut self, batch: &mut Batch) -> io::Result<usize> {
        let socket = self.0.get_inner();
        let (result, asked) = match &*BATCHED {
            Some(state) => {
                let mut bufs = batch.bufs.each_mut().map(|b| IoSliceMut::new(&mut b[..]));
                let got = state.recv(socket.into(), &mut bufs, &mut batch.meta);
                (got, BATCH)
            }
            None => {
                let got = socket.recv_from(&mut batch.bufs[0]).map(|(len, addr)| {
                    batch.meta[0] = RecvMeta {
                        addr,
                        len,
                        stride: len,
                        ..RecvMeta::default()
                    };
                    1
                });
                (got, 1)
            }
        };
        match result {
            Ok(n) => {
                if n < asked {
                    self.0.clear_ready();
                }
                batch.len = n;
                Ok(n)
            }
            Err(e) => {
                if e.kind() == io::ErrorKind::WouldBlock {
                    self.0.clear_ready();
                }
                batch.len = 0;
                Err(e)
            }
        }
    }
}

/// Buffers for one read of up to [`BATCH`] datagrams.
pub(crate) struct Batch {
    bufs: Box<[[u8; MAX_PACKET]; BATCH]>,
    meta: [RecvMeta; BATCH],
    len: usize,
}

impl Batch {
    pub(crate) fn new() -> Self {
        Self {
            bufs: Box::new([[0; MAX_PACKET]; BATCH]),
            meta: [RecvMeta::default(); BATCH],
            len: 0,
        }
    }

    /// The datagrams the last read gave, in the order they arrived, with their sources.
    pub(crate) fn datagrams(&self) -> Datagrams<'_> {
        Datagrams {
            batch: self,
            slot: 0,
            offset: 0,
        }
    }
}

/// Iterator over a [`Batch`]'s datagrams.
pub(crate) struct Datagrams<'a> {
    batch: &'a Batch,
    slot: usize,
    /// Where the next datagram starts in the slot's buffer.
    offset: usize,
}

impl<'a> Iterator for Datagrams<'a> {
    type Item = (&'a [u8], SocketAddr);

    fn next(&mut self) -> Option<Self::Item> {
        if self.slot >= self.batch.len {
            return None;
        }
        let meta = &self.batch.meta[self.slot];
        let len = meta.len.min(MAX_PACKET);
        // Several datagrams share one buffer only with GRO, which these sockets never turn on;
        // split by the stride all the same rather than relay them as one.
        let end = if meta.stride > 0 {
            len.min(self.offset + meta.stride)
        } else {
            len
        };
        let datagram = &self.batch.bufs[self.slot][self.offset..end];
        if end < len {
            self.offset = end;
        } else {
            self.slot += 1;
            self.offset = 0;
        }
        Some((datagram, meta.addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesced_datagrams_are_split_by_their_stride_and_an_empty_one_counts() {
        let mut batch = Batch::new();
        let from: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        batch.bufs[0][..10].copy_from_slice(b"aaaabbbbcc");
        batch.meta[0] = RecvMeta {
            addr: from,
            len: 10,
            stride: 4,
            ..RecvMeta::default()
        };
        batch.meta[1] = RecvMeta {
            addr: from,
            len: 0,
            stride: 0,
            ..RecvMeta::default()
        };
        batch.len = 2;
        let got: Vec<&[u8]> = batch.datagrams().map(|(d, _)| d).collect();
        assert_eq!(got, [&b"aaaa"[..], b"bbbb", b"cc", b""]);
    }

    #[tokio::test]
    async fn a_burst_is_read_in_batches_in_order_and_readiness_then_waits() {
        let socket = RelaySocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = socket.local_addr().unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let burst = BATCH * 2 + 3;
        for i in 0..burst {
            sender.send_to(&[i as u8; 20], to).unwrap();
        }
        let mut batch = Batch::new();
        let mut got = Vec::new();
        while got.len() < burst {
            let mut ready = tokio::time::timeout(std::time::Duration::from_secs(1), socket.ready())
                .await
                .expect("readable while datagrams wait")
                .unwrap();
            let n = ready.recv(&mut batch).unwrap();
            assert!((1..=BATCH).contains(&n));
            for (d, from) in batch.datagrams() {
                assert_eq!(from, sender.local_addr().unwrap());
                got.push(d[0]);
            }
        }
        assert_eq!(got, (0..burst).map(|i| i as u8).collect::<Vec<_>>());
        // Drained: the socket is not reported readable until something new arrives.
        let idle =
            tokio::time::timeout(std::time::Duration::from_millis(100), socket.ready()).await;
        assert!(idle.is_err(), "no spurious readiness once drained");
        sender.send_to(b"late", to).unwrap();
        let mut ready = tokio::time::timeout(std::time::Duration::from_secs(1), socket.ready())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ready.recv(&mut batch).unwrap(), 1);
        assert_eq!(batch.datagrams().next().unwrap().0, b"late");
    }
}
