//! Pure SIP cores for the PBX: the codec (bytes to messages and back, normalised and size-bounded),
//! RFC 3261 §17 transactions, and digest authentication. No sockets, no tokio, no clock: every function
//! that depends on time takes `now`, and every output is a value the caller acts on.
#![forbid(unsafe_code)]

pub mod codec;
pub mod digest;
pub mod transaction;

pub use rsip;
