//! Media: the RTP port range and the per-call relay.

pub(crate) mod music;
mod ports;
mod relay;
mod socket;

use std::net::SocketAddr;

pub(crate) use ports::PortRange;
pub(crate) use relay::{KEY_QUEUE, Latch, MediaGuard, MediaSession, PeerMedia, Side, Tapped};

#[derive(Debug, thiserror::Error)]
pub(crate) enum MediaError {
    #[error("no free media ports")]
    PortsExhausted,
    #[error("binding media port {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}
