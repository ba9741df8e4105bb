//! Durable state of the PBX cluster: the Raft log and vote, the replicated state machine, snapshots, and
//! the data model they carry, all in one RocksDB database.
//!
//! Nothing outside this crate touches RocksDB. The cluster crate hands [`LogStore`] and
//! [`StateMachineStore`] to openraft; the node reads applied state through a cloneable [`StateReader`].
//!
//! On disk, under the directory given to [`open`]: `db/` is the RocksDB database (column families
//! `raft_meta`, `raft_log`, `sm_meta` and one per [`Table`]), `snapshots/` holds the current snapshot
//! file, `{term}-{index}-{unix_millis}.snap`, in the format of `snapshot_file`.
#![forbid(unsafe_code)]

pub mod audio;
pub mod backup;
pub mod capture;
pub mod codec;
pub mod command;
pub mod conference;
pub mod contacts;
mod error;
pub mod features;
mod features_apply;
pub mod ivr;
mod log_store;
mod log_tail;
pub mod model;
pub mod provisioning;
mod reader;
pub mod recording;
pub mod recording_routes;
pub mod routing;
mod routing_apply;
mod snapshot_file;
mod state_machine;
pub mod tables;
pub mod time_condition;
pub mod voicemail;
pub mod web;
mod web_apply;

use std::path::Path;
use std::sync::Arc;

pub use command::{BindingOp, Command, Response};
pub use error::StorageError;
pub use log_store::{LogStore, REPLICATION_BATCH_BYTES};
pub use model::NodeAddr;
pub use reader::StateReader;
pub use state_machine::StateMachineStore;
pub use tables::{Record, Table};

/// Raft node identifier. Stable for the life of a node; bound to its TLS certificate.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The Raft type configuration of the PBX cluster.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = NodeAddr,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Opens (or creates) the store in `dir` and returns its three faces, all backed by one database.
/// Data written by a newer build is refused ([`StorageError::NewerSchema`]); older data is brought
/// to [`tables::SCHEMA_VERSION`] first.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore, StateReader), StorageError> {
    let db = Arc::new(tables::open_db(dir)?);
    tables::check_schema(&db)?;
    let reader = StateReader::new(Arc::clone(&db));
    let sm = StateMachineStore::open(Arc::clone(&db), dir.join("snapshots"), reader.clone())?;
    let log = LogStore::open(db)?;
    Ok((log, sm, reader))
}
