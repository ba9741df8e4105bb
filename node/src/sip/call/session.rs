//! What a call's session descriptions mean for its media relay: where each side wants its media, the
//! ports the PBX announces to each side, and whether a description holds keys or is quiet on purpose.

use std::net::{IpAddr, SocketAddr};

use pbx_sip::sdp::{Direction, MediaInfo, Sdp};

use crate::media::{PeerMedia, Side};

/// Where one side wants a stream's media, from its SDP; `signalling` is the address its SIP comes
/// from, which media may also come from before latching.
pub(crate) fn peer_media(m: &MediaInfo, signalling: IpAddr) -> PeerMedia {
    let rtp = m
        .address
        .filter(|_| m.port != 0)
        .map(|ip| SocketAddr::new(ip, m.port));
    let rtcp = rtp.map(|a| {
        if m.rtcp_mux {
            a
        } else {
            SocketAddr::new(a.ip(), m.rtcp_port.unwrap_or(m.port.saturating_add(1)))
        }
    });
    let mut trusted = vec![signalling];
    if let Some(ip) = m.address
        && ip != signalling
    {
        trusted.push(ip);
    }
    PeerMedia {
        rtp,
        rtcp,
        trusted,
        known: rtp.is_some(),
    }
}

/// The PBX's ports facing `side` for each `m=` line of `sdp` (0 for a rejected stream), from the
/// `[caller-facing, callee-facing]` port pairs of the call's streams.
pub(crate) fn stream_ports(sdp: &Sdp, ports: &[[u16; 2]], side: Side) -> Vec<u16> {
    let at = match side {
        Side::Caller => 0,
        Side::Callee => 1,
    };
    sdp.media()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if m.port == 0 {
                0
            } else {
                ports.get(i).map_or(0, |p| p[at])
            }
        })
        .collect()
}

/// Whether an SDP carries SDES-SRTP keys (`a=crypto`), which must never cross a leg in clear.
pub(crate) fn carries_keys(sdp: &Sdp) -> bool {
    sdp.media().iter().any(|m| m.has_crypto)
}

/// Whether an SDP puts any stream on hold or makes it silent on purpose.
pub(crate) fn is_quiet(sdp: &Sdp) -> bool {
    sdp.media()
        .iter()
        .any(|m| m.direction != Direction::SendRecv || m.address.is_none())
}
