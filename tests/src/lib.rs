//! Integration tests live in `tests/`; the process lab and the SIP probe they drive are shared with the
//! chaos tool. The modules here are the tests' own: the admin API as they use it ([`api`]), sipp
//! ([`sipp`]) and baresip ([`baresip`]) as phones and providers, and child processes that die with
//! the test ([`process`]).
#![forbid(unsafe_code)]

pub mod api;
pub mod baresip;
pub mod browser;
pub mod dtmf;
pub mod netns;
pub mod process;
pub mod sipp;
pub mod smtp;
pub mod sshd;
pub mod wav;

pub use pbx_chaos::lab::*;
pub use pbx_chaos::phone;
pub use pbx_chaos::provider;
pub use pbx_chaos::sip_probe;
