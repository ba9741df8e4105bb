//! The `pbx` node: configuration, command line, admin API and the process lifecycle.
//!
//! SIP, media and security gates arrive as their own modules; the cluster and storage crates hold the
//! replicated state, which this crate reaches only through `cluster::Cluster`.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod api;
mod apps;
pub mod audio;
pub mod backup;
pub mod capture;
pub mod cli;
pub mod client;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod events;
mod media;
pub mod policy;
mod portal;
pub mod provisioning;
pub mod run;
pub mod security;
pub mod sip;
pub mod telemetry;
mod time;
pub mod totp;
pub mod vip;

pub use config::NodeConfig;
