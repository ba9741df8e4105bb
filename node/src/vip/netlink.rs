//! The VIP's kernel state over netlink, without a subprocess per change: the kernel fence's nftables
//! set element (replaced ten times a second while this node owns the VIP) and the address on the
//! interface. The messages are built here, pure and unit-tested; [`Netlink`] sends them and reads the
//! kernel's acknowledgements within a bound.
//!
//! The ruleset itself is still installed once at start by `nft -f` (the table, sets and chains): that
//! is not on the hot path, and nft's own parser keeps it readable.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use netlink_sys::{AsyncSocket as _, AsyncSocketExt as _, SocketAddr, TokioSocket, protocols};

use super::driver::{VipAddr, VipError};

/// Longest wait for the kernel's answer (it answers in microseconds).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

// Netlink (linux/netlink.h).
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
const NLMSG_HDRLEN: usize = 16;

// nfnetlink and nf_tables (linux/netfilter/nfnetlink.h, nf_tables.h).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_DATA_VALUE: u16 = 1;

/// nftables table families the fence lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// `table inet`: IPv4 and IPv6 packets.
    Inet = 1,
    /// `table arp`.
    Arp = 3,
}

// rtnetlink (linux/rtnetlink.h, if_addr.h, if_link.h).
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_NODAD: u32 = 0x02;
const IFLA_IFNAME: u16 = 3;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

const EEXIST: i32 = 17;
const EADDRNOTAVAIL: i32 = 99;

/// One netlink message being built: header first, its length filled in by [`Msg::finish`].
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(kind: u16, flags: u16, seq: u32) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        Self { buf }
    }

    /// The nfnetlink header every nftables message starts with.
    fn nfgen(mut self, family: u8, res_id: u16) -> Self {
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        self
    }

    fn bytes(&mut self, payload: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(payload);
        self
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    /// A NUL-terminated string attribute.
    fn strz(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v)
    }

    /// A nested attribute whose content `inner` writes.
    fn nest(&mut self, kind: u16, inner: impl FnOnce(&mut Self)) -> &mut Self {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        inner(self);
        let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.pad();
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// One nftables transaction that empties the `lease` set of table `table` in every family and, with
/// `timeout_ms`, puts the VIP back in with that timeout: the kernel applies all of it or none. The
/// messages that want an acknowledgement use sequence numbers `seq + 1 ..`; returns the batch and how
/// many acknowledgements to wait for.
pub(crate) fn fence_batch(
    seq: u32,
    table: &str,
    families: &[Family],
    ip: IpAddr,
    timeout_ms: Option<u64>,
) -> (Vec<u8>, u32) {
    let mut out = Msg::new(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq)
        .nfgen(0, NFNL_SUBSYS_NFTABLES)
        .finish();
    let mut n = 0;
    let kind = |msg: u16| (NFNL_SUBSYS_NFTABLES << 8) | msg;
    for &family in families {
        n += 1;
        // Without elements, a DELSETELEM empties the set ("flush set").
        let mut flush = Msg::new(kind(NFT_MSG_DELSETELEM), NLM_F_REQUEST | NLM_F_ACK, seq + n)
            .nfgen(family as u8, 0);
        flush
            .strz(NFTA_SET_ELEM_LIST_TABLE, table)
            .strz(NFTA_SET_ELEM_LIST_SET, "lease");
        out.extend(flush.finish());
        let Some(ms) = timeout_ms else {
            continue;
        };
        n += 1;
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE;
        let mut add = Msg::new(kind(NFT_MSG_NEWSETELEM), flags, seq + n).nfgen(family as u8, 0);
        add.strz(NFTA_SET_ELEM_LIST_TABLE, table)
            .strz(NFTA_SET_ELEM_LIST_SET, "lease")
            .nest(NFTA_SET_ELEM_LIST_ELEMENTS, |m| {
                m.nest(NFTA_LIST_ELEM, |m| {
                    m.nest(NFTA_SET_ELEM_KEY, |m| {
                        m.attr(NFTA_DATA_VALUE, &ip_bytes(ip));
                    })
                    .attr(NFTA_SET_ELEM_TIMEOUT, &ms.to_be_bytes());
                });
            });
        out.extend(add.finish());
    }
    out.extend(
        Msg::new(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + n + 1)
            .nfgen(0, NFNL_SUBSYS_NFTABLES)
            .finish(),
    );
    (out, n)
}

/// Adds (or removes) `addr` on interface number `index`.
pub(crate) fn address_msg(seq: u32, add: bool, index: u32, addr: VipAddr) -> Vec<u8> {
    let (kind, flags) = if add {
        (
            RTM_NEWADDR,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
    } else {
        (RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK)
    };
    let family = if addr.ip.is_ipv4() { AF_INET } else { AF_INET6 };
    let mut m = Msg::new(kind, flags, seq);
    // struct ifaddrmsg: family, prefix length, flags, scope (universe), interface index.
    m.bytes(&[family, addr.prefix, 0, 0])
        .bytes(&index.to_ne_bytes());
    let ip = ip_bytes(addr.ip);
    m.attr(IFA_LOCAL, &ip).attr(IFA_ADDRESS, &ip);
    if add && addr.ip.is_ipv6() {
        // Duplicate address detection would hold the address back for a second or more.
        m.attr(IFA_FLAGS, &IFA_F_NODAD.to_ne_bytes());
    }
    m.finish()
}

/// Asks for the link named `name` (its reply carries the interface index).
pub(crate) fn link_request(seq: u32, name: &str) -> Vec<u8> {
    let mut m = Msg::new(RTM_GETLINK, NLM_F_REQUEST, seq);
    // struct ifinfomsg: family, pad, type, index, flags, change.
    m.bytes(&[0u8; 16]).strz(IFLA_IFNAME, name);
    m.finish()
}

/// What the kernel said to one of our messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// An acknowledgement (error 0) or an error (a positive errno), for message `seq`.
    Ack {
        seq: u32,
        errno: i32,
    },
    /// A link's description, with its index.
    Link {
        seq: u32,
        index: u32,
    },
    Other,
}

/// Splits a datagram from the kernel into answers. Malformed input ends the list, never panics.
pub(crate) fn answers(buf: &[u8]) -> Vec<Answer> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() >= at + NLMSG_HDRLEN {
        let word = |o: usize| {
            buf.get(o..o + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_ne_bytes)
        };
        let len = word(at) as usize;
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        let seq = word(at + 8);
        let body = at + NLMSG_HDRLEN;
        out.push(match kind {
            NLMSG_ERROR if len >= NLMSG_HDRLEN + 4 => Answer::Ack {
                seq,
                errno: (word(body) as i32).saturating_neg(),
            },
            RTM_NEWLINK if len >= NLMSG_HDRLEN + 8 => Answer::Link {
                seq,
                index: word(body + 4),
            },
            _ => Answer::Other,
        });
        at += len.div_ceil(4) * 4;
    }
    out
}

/// A netlink socket for one protocol, with sequence numbers of its own.
pub(crate) struct Netlink {
    seq: AtomicU32,
}

impl Default for Netlink {
    fn default() -> Self {
        Self::new()
    }
}

impl Netlink {
    pub(crate) fn new() -> Self {
        Self {
            seq: AtomicU32::new(rand::random::<u32>() >> 1),
        }
    }

    /// Sequence numbers for a request of `n` messages.
    pub(crate) fn next_seq(&self, n: u32) -> u32 {
        self.seq.fetch_add(n + 2, Ordering::Relaxed)
    }

    /// Sends `request` on a fresh socket of `protocol` and waits until every message from `seq + 1`
    /// to `seq + acks` (or `seq` alone when `acks` is 0) is answered. `tolerated` errnos count as
    /// success (already there, already gone). Returns the link index a `RTM_GETLINK` answered with.
    async fn exchange(
        protocol: isize,
        request: &[u8],
        first: u32,
        acks: u32,
        tolerated: &[i32],
    ) -> Result<Option<u32>, VipError> {
        let fail = |what: String| VipError::Failed {
            tool: "netlink".into(),
            status: String::new(),
            stderr: what,
        };
        let mut socket = TokioSocket::new(protocol).map_err(|e| fail(e.to_string()))?;
        socket
            .socket_mut()
            .bind_auto()
            .map_err(|e| fail(e.to_string()))?;
        let kernel = SocketAddr::new(0, 0);
        socket
            .send_to(request, &kernel)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut pending: Vec<u32> = (first..first + acks.max(1)).collect();
        let mut link = None;
        let wait = async {
            while !pending.is_empty() {
                let (data, _) = socket
                    .recv_from_full()
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                for answer in answers(&data) {
                    match answer {
                        Answer::Ack { seq, errno } if pending.contains(&seq) => {
                            if errno != 0 && !tolerated.contains(&errno) {
                                let err = std::io::Error::from_raw_os_error(errno);
                                return Err(fail(format!("message {seq}: {err}")));
                            }
                            pending.retain(|s| *s != seq);
                        }
                        Answer::Link { seq, index } if pending.contains(&seq) => {
                            link = Some(index);
                            pending.retain(|s| *s != seq);
                        }
                        _ => {}
                    }
                }
            }
            Ok(())
        };
        tokio::time::timeout(ANSWER_TIMEOUT, wait)
            .await
            .map_err(|_| VipError::Timeout {
                tool: "netlink".into(),
                timeout: ANSWER_TIMEOUT,
            })??;
        Ok(link)
    }

    /// Sends a fence transaction built by [`fence_batch`].
    pub(crate) async fn fence(&self, batch: &[u8], seq: u32, acks: u32) -> Result<(), VipError> {
        Self::exchange(protocols::NETLINK_NETFILTER, batch, seq + 1, acks, &[]).await?;
        Ok(())
    }

    /// The index of the interface `name`.
    pub(crate) async fn link_index(&self, name: &str) -> Result<u32, VipError> {
        let seq = self.next_seq(1);
        let req = link_request(seq, name);
        Self::exchange(protocols::NETLINK_ROUTE, &req, seq, 1, &[])
            .await?
            .ok_or_else(|| VipError::Failed {
                tool: "netlink".into(),
                status: String::new(),
                stderr: format!("no interface {name:?}"),
            })
    }

    /// Puts `addr` on (or takes it off) interface `index`; already there (or already gone) is fine.
    pub(crate) async fn address(
        &self,
        add: bool,
        index: u32,
        addr: VipAddr,
    ) -> Result<(), VipError> {
        let seq = self.next_seq(1);
        let msg = address_msg(seq, add, index, addr);
        let tolerated = if add { EEXIST } else { EADDRNOTAVAIL };
        Self::exchange(protocols::NETLINK_ROUTE, &msg, seq, 1, &[tolerated]).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([b[at], b[at + 1]])
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// Walks the messages of a buffer: (type, flags, seq, length).
    fn messages(b: &[u8]) -> Vec<(u16, u16, u32, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < b.len() {
            let len = u32_at(b, at) as usize;
            out.push((u16_at(b, at + 4), u16_at(b, at + 6), u32_at(b, at + 8), len));
            assert_eq!(len % 4, 0, "messages are padded");
            at += len;
        }
        assert_eq!(at, b.len());
        out
    }

    #[test]
    fn a_fence_renewal_is_one_transaction_per_family() {
        let ip: IpAddr = "198.18.0.100".parse().unwrap();
        let (batch, acks) =
            fence_batch(100, "pbx_vip", &[Family::Inet, Family::Arp], ip, Some(300));
        assert_eq!(acks, 4);
        let msgs = messages(&batch);
        let kinds: Vec<u16> = msgs.iter().map(|m| m.0).collect();
        let nft = |m: u16| (10 << 8) | m;
        assert_eq!(
            kinds,
            vec![0x10, nft(14), nft(12), nft(14), nft(12), 0x11],
            "begin, flush + add per family, end"
        );
        let seqs: Vec<u32> = msgs.iter().map(|m| m.2).collect();
        assert_eq!(seqs, vec![100, 101, 102, 103, 104, 105]);
        // Only the set changes want an acknowledgement; the element is created.
        assert_eq!(msgs[1].1, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(msgs[2].1, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE);
        assert_eq!(msgs[0].1, NLM_F_REQUEST);
        // The families, the key and the timeout (big-endian milliseconds) are where the kernel reads them.
        assert_eq!(batch[msgs[0].3 + 16], Family::Inet as u8);
        let add = &batch[msgs[0].3 + msgs[1].3..][..msgs[2].3];
        let find = |needle: &[u8]| add.windows(needle.len()).any(|w| w == needle);
        assert!(find(&[198, 18, 0, 100]));
        assert!(find(&300u64.to_be_bytes()));
        assert!(find(b"pbx_vip\0"));
        assert!(find(b"lease\0"));
    }

    #[test]
    fn closing_the_fence_only_empties_the_sets() {
        let ip: IpAddr = "fd00::100".parse().unwrap();
        let (batch, acks) = fence_batch(7, "pbx_vip", &[Family::Inet], ip, None);
        assert_eq!(acks, 1);
        let kinds: Vec<u16> = messages(&batch).iter().map(|m| m.0).collect();
        assert_eq!(kinds, vec![0x10, (10 << 8) | 14, 0x11]);
    }

    #[test]
    fn addresses_carry_prefix_index_and_nodad_for_ipv6() {
        let v4: VipAddr = "198.18.0.100/24".parse().unwrap();
        let m = address_msg(9, true, 3, v4);
        let msgs = messages(&m);
        assert_eq!(msgs[0].0, RTM_NEWADDR);
        assert_eq!(msgs[0].1 & NLM_F_CREATE, NLM_F_CREATE);
        assert_eq!(&m[16..20], &[AF_INET, 24, 0, 0]);
        assert_eq!(u32_at(&m, 20), 3);
        assert!(m.windows(4).any(|w| w == [198, 18, 0, 100]));
        let v6: VipAddr = "fd00::100/64".parse().unwrap();
        let add = address_msg(9, true, 3, v6);
        assert!(add.windows(4).any(|w| w == IFA_F_NODAD.to_ne_bytes()));
        let del = address_msg(9, false, 3, v6);
        assert_eq!(messages(&del)[0].0, RTM_DELADDR);
        assert!(del.len() < add.len());
    }

    #[test]
    fn answers_are_read_without_trusting_lengths() {
        let mut ack = Msg::new(NLMSG_ERROR, 0, 5);
        ack.bytes(&0i32.to_ne_bytes());
        let mut err = Msg::new(NLMSG_ERROR, 0, 6);
        err.bytes(&(-17i32).to_ne_bytes());
        let mut link = Msg::new(RTM_NEWLINK, 0, 7);
        link.bytes(&[0, 0, 0, 0]).bytes(&42u32.to_ne_bytes());
        let mut all = ack.finish();
        all.extend(err.finish());
        all.extend(link.finish());
        assert_eq!(
            answers(&all),
            vec![
                Answer::Ack { seq: 5, errno: 0 },
                Answer::Ack { seq: 6, errno: 17 },
                Answer::Link { seq: 7, index: 42 },
            ]
        );
        // A length past the end, or too short, stops the walk.
        let mut bad = all.clone();
        bad[0] = 0xff;
        assert!(answers(&bad).is_empty());
        assert!(answers(&all[..10]).is_empty());
        let mut short = all.clone();
        short[..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(answers(&short).is_empty());
    }
}
