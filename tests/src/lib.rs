//! Integration tests live in `tests/`; the process lab and the SIP probe they drive are shared with the
//! chaos tool.
#![forbid(unsafe_code)]

pub use pbx_chaos::lab::*;
pub use pbx_chaos::phone;
pub use pbx_chaos::provider;
pub use pbx_chaos::sip_probe;
