//! Replication of the PBX state: openraft over mutual-TLS QUIC, cluster membership, and the small
//! [`Cluster`] handle the node uses (`propose`, `linearizable_barrier`, `reader`, `status`).
//!
//! - `tls`: the cluster CA, node certificates and the rustls/quinn configurations built from them.
//! - `rpc`: the wire protocol (one QUIC stream per call, length-prefixed codec frames).
//! - `network`: the client side (connections per peer, openraft's `RaftNetwork`).
//! - `server`: the accept loop, the identity and membership checks, dispatch.
//! - `config`: [`ClusterConfig`] and the openraft settings derived from it.
//! - `handle`: [`Cluster`].
//! - `blob_dir`, `blobs`: each node's copy of the audio files, and moving them between nodes.
//!
//! openraft types stay inside this crate, except `raft_metrics` for tests and diagnostics.
#![forbid(unsafe_code)]

mod batch;
pub mod blob_dir;
mod blobs;
mod config;
mod error;
mod handle;
mod network;
mod peer_failures;
pub mod rpc;
mod server;
mod status;
mod succession;
mod telemetry;
pub mod tls;
pub mod version;

pub use blob_dir::{BlobDir, BlobError, StoredBlob};
pub use blobs::TransferError;
pub use config::ClusterConfig;
pub use error::ClusterError;
pub use handle::{AppHandler, Cluster};
pub use status::{ClusterStatus, MemberStatus, NodeState};
pub use storage::{NodeAddr, NodeId};
pub use telemetry::Leadership;
pub use tls::{CaBundle, NodeCert, NodeTlsFiles, api_server_config, generate_ca, issue_node_cert};
