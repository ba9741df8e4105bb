//! Captured messages as a classic libpcap file (the format `tcpdump -w` writes, which Wireshark
//! opens): a 24-byte global header, then per message a 16-byte record header and a synthesized
//! IPv4 or IPv6 packet carrying a UDP datagram with the message.
//!
//! Link type `LINKTYPE_RAW` (101): each packet starts at its IP header, whose version says v4 or
//! v6. Both IP and UDP checksums are computed, so Wireshark shows no checksum errors.
//!
//! Messages that travelled over TCP or TLS are written as UDP datagrams between the same addresses
//! and ports: the capture holds SIP messages, not the stream segments that carried them (and for
//! TLS, the decrypted message). Wireshark decodes them as SIP by port (5060) or by its SIP-over-UDP
//! heuristic. The transport each message really used is in its summary from the JSON query.
//! A message larger than a UDP datagram can hold (65,507 bytes over IPv4) is truncated in the
//! packet; its record's original length says how long it was.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::Captured;

/// `LINKTYPE_RAW`: raw IPv4 or IPv6.
pub const LINKTYPE_RAW: u32 = 101;
/// The classic pcap magic with microsecond timestamps.
pub const MAGIC: u32 = 0xa1b2_c3d4;
/// The snapshot length declared in the header.
pub const SNAPLEN: u32 = 65_535;
const GLOBAL_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;
const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const UDP_HEADER_LEN: usize = 8;
const UDP: u8 = 17;
const TTL: u8 = 64;

/// The bytes a message takes in the file, for bounding a download before writing it.
pub fn record_len(m: &Captured) -> usize {
    let (src, dst) = addresses(m);
    let ip = if src.is_ipv4() && dst.is_ipv4() {
        IPV4_HEADER_LEN
    } else {
        IPV6_HEADER_LEN
    };
    RECORD_HEADER_LEN + ip + UDP_HEADER_LEN + payload_len(m.bytes.len(), ip)
}

/// The file holding `messages` (in the order given).
pub fn write(messages: &[Captured]) -> Vec<u8> {
    let total = GLOBAL_HEADER_LEN + messages.iter().map(record_len).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone: UTC
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&SNAPLEN.to_le_bytes());
    out.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
    for (i, m) in messages.iter().enumerate() {
        write_record(&mut out, m, i as u16);
    }
    out
}

/// How much of a `len`-byte message fits a UDP datagram behind an IP header of `ip` bytes.
fn payload_len(len: usize, ip: usize) -> usize {
    len.min(usize::from(u16::MAX) - ip - UDP_HEADER_LEN)
}

/// Source and destination, both of one family: IPv4 when both are (or map to) IPv4.
fn addresses(m: &Captured) -> (SocketAddr, SocketAddr) {
    let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (src, dst) = (canon(m.source()), canon(m.destination()));
    if src.is_ipv4() == dst.is_ipv4() {
        return (src, dst);
    }
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    (v6(src), v6(dst))
}

fn write_record(out: &mut Vec<u8>, m: &Captured, id: u16) {
    let (src, dst) = addresses(m);
    let ip_len = if src.is_ipv4() {
        IPV4_HEADER_LEN
    } else {
        IPV6_HEADER_LEN
    };
    let payload = &m.bytes[..payload_len(m.bytes.len(), ip_len)];
    let udp_len = UDP_HEADER_LEN + payload.len();
    let packet_len = ip_len + udp_len;
    let orig_len = ip_len + UDP_HEADER_LEN + m.bytes.len();
    let secs = u32::try_from(m.at_us / 1_000_000).unwrap_or(u32::MAX);
    out.extend_from_slice(&secs.to_le_bytes());
    out.extend_from_slice(&((m.at_us % 1_000_000) as u32).to_le_bytes());
    out.extend_from_slice(&(packet_len as u32).to_le_bytes());
    out.extend_from_slice(&(orig_len as u32).to_le_bytes());

    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut pseudo = Vec::with_capacity(12);
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, UDP]);
            pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
            set_udp_checksum(&mut udp, &pseudo);
            let mut ip = [0u8; IPV4_HEADER_LEN];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&(packet_len as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&id.to_be_bytes());
            ip[6] = 0x40; // don't fragment
            ip[8] = TTL;
            ip[9] = UDP;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let sum = checksum(&[&ip]);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            out.extend_from_slice(&ip);
        }
        (s, d) => {
            let (s, d) = (v6_of(s), v6_of(d));
            let mut pseudo = Vec::with_capacity(40);
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&(udp_len as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, UDP]);
            set_udp_checksum(&mut udp, &pseudo);
            let mut ip = [0u8; IPV6_HEADER_LEN];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            ip[6] = UDP;
            ip[7] = TTL;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            out.extend_from_slice(&ip);
        }
    }
    out.extend_from_slice(&udp);
}

fn v6_of(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Fills in a UDP checksum (0 is sent as 0xffff, RFC 768).
fn set_udp_checksum(udp: &mut [u8], pseudo: &[u8]) {
    let sum = match checksum(&[pseudo, udp]) {
        0 => 0xffff,
        s => s,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
}

/// The Internet checksum (RFC 1071) of the concatenation of `parts` (each but the last of even
/// length).
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(u16::from_be_bytes([*last, 0]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
    }
    !(sum as u16)
}
