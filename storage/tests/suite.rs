//! openraft's storage contract, run against the RocksDB store.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use pbx_storage::{LogStore, NodeId, StateMachineStore, TypeConfig};
use tempfile::TempDir;

struct TempStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = TempDir::new().map_err(|e| openraft::StorageIOError::write(&e))?;
        let (log, sm, _reader) =
            pbx_storage::open(dir.path()).map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(TempStoreBuilder).unwrap();
}
