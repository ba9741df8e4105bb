//! Pure SIP cores for the PBX: the codec (bytes to messages and back, normalised and size-bounded),
//! RFC 3261 §17 transactions, digest authentication, SDP reading/rewriting for the RTP relay, dial
//! patterns, outbound/inbound route selection (`routing`), and RFC 3263 server location order
//! (`rfc3263`: what to query in DNS and which answer to try first).
//! No sockets, no tokio, no clock: every function that depends on time takes `now`, and every
//! output is a value the caller acts on.
#![forbid(unsafe_code)]

pub mod codec;
pub mod dialplan;
pub mod digest;
pub mod rfc3263;
pub mod routing;
pub mod sdp;
pub mod transaction;

pub use rsip;
