//! Fault scenarios against a cluster of real `pbx` processes.
#![forbid(unsafe_code)]

pub mod ban_gate;
pub mod bindings;
pub mod call_load;
pub mod conference_load;
pub mod failover;
pub mod fence_check;
pub mod lab;
pub mod phone;
pub mod provider;
pub mod rtpengine_load;
pub mod scenarios;
pub mod sip_probe;
pub mod trunk_failover;
