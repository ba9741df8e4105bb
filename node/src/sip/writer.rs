//! Commits registration changes. Many REGISTERs at once share Raft entries through the cluster layer's
//! group commit, so thousands of phones re-registering cost few fsyncs.

use cluster::{Cluster, ClusterError};
use storage::{BindingOp, Command, Response};

#[derive(Clone)]
pub(crate) struct BindingWriter {
    cluster: Cluster,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error("cluster: {0}")]
    Cluster(#[from] ClusterError),
    #[error("bindings refused: {0:?}")]
    Refused(Response),
}

impl BindingWriter {
    pub(crate) fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }

    /// Commits `ops` through Raft; returns once they are applied on the leader.
    pub(crate) async fn commit(&self, ops: Vec<BindingOp>) -> Result<(), WriteError> {
        if ops.is_empty() {
            return Ok(());
        }
        match self.cluster.propose(Command::UpdateBindings(ops)).await? {
            Response::Ok => Ok(()),
            other => Err(WriteError::Refused(other)),
        }
    }
}
