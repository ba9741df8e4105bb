use openraft::{ErrorSubject, ErrorVerb, LogId, SnapshotMeta, StorageIOError};

use crate::codec::CodecError;
use crate::{NodeAddr, NodeId};

/// Failures of the durable store. openraft sees them as `StorageIOError`s; the node as 5xx.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("missing column family {0}")]
    MissingColumnFamily(&'static str),
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The data directory was written by a newer build.
    #[error(
        "this data was written by a newer pbx (storage schema {found}; this build reads up to {supported}): run that version or newer, or restore a backup into a fresh node"
    )]
    NewerSchema { found: u32, supported: u32 },
}

impl StorageError {
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        Self::Corrupt(what.into())
    }

    /// A blocking task died (panicked or was cancelled at shutdown).
    pub(crate) fn join(e: tokio::task::JoinError) -> Self {
        Self::Io(std::io::Error::other(e))
    }
}

/// The error type openraft's storage traits return.
pub(crate) type RaftError = openraft::StorageError<NodeId>;

/// Constructors that turn our errors into openraft's, naming what was being done so that openraft's
/// fatal-error report says which part of the store failed.
pub(crate) mod raft {
    use super::*;

    fn io(e: StorageIOError<NodeId>) -> RaftError {
        RaftError::IO { source: e }
    }

    pub(crate) fn read_logs(e: impl Into<StorageError>) -> RaftError {
        io(StorageIOError::read_logs(&e.into()))
    }

    pub(crate) fn write_logs(e: impl Into<StorageError>) -> RaftError {
        io(StorageIOError::write_logs(&e.into()))
    }

    pub(crate) fn read_vote(e: impl Into<StorageError>) -> RaftError {
        io(StorageIOError::read_vote(&e.into()))
    }

    pub(crate) fn write_vote(e: impl Into<StorageError>) -> RaftError {
        io(StorageIOError::write_vote(&e.into()))
    }

    pub(crate) fn read_committed(e: impl Into<StorageError>) -> RaftError {
        io(StorageIOError::new(
            ErrorSubject::Store,
            ErrorVerb::Read,
            &e.into(),
        ))
    }

    pub(crate) fn write_committed(e: impl Into<StorageError>) -> RaftError {
        io(StorageIOError::new(
            ErrorSubject::Store,
            ErrorVerb::Write,
            &e.into(),
        ))
    }

    pub(crate) fn apply(log_id: LogId<NodeId>, e: impl Into<StorageError>) -> RaftError {
        io(StorageIOError::apply(log_id, &e.into()))
    }

    pub(crate) fn read_snapshot(
        meta: Option<&SnapshotMeta<NodeId, NodeAddr>>,
        e: impl Into<StorageError>,
    ) -> RaftError {
        io(StorageIOError::read_snapshot(
            meta.map(SnapshotMeta::signature),
            &e.into(),
        ))
    }

    pub(crate) fn write_snapshot(
        meta: Option<&SnapshotMeta<NodeId, NodeAddr>>,
        e: impl Into<StorageError>,
    ) -> RaftError {
        io(StorageIOError::write_snapshot(
            meta.map(SnapshotMeta::signature),
            &e.into(),
        ))
    }
}
