//! Batches registration changes into few Raft entries.
//!
//! Each REGISTER hands its ops to the writer and waits; the writer proposes everything that queued up
//! while the previous proposal was in flight as one `UpdateBindings` command. Under load, hundreds of
//! registrations share one entry and one fsync; when idle, a lone REGISTER is proposed at once.

use tokio::sync::{mpsc, oneshot};

use cluster::{Cluster, ClusterError};
use storage::{BindingOp, Command, Response};

/// Ops per Raft entry at most, which bounds the entry's size (a binding is a few hundred bytes).
const MAX_OPS_PER_ENTRY: usize = 1024;
/// REGISTERs waiting for a slot in the queue beyond this get `503`.
const QUEUE: usize = 8192;

struct Job {
    ops: Vec<BindingOp>,
    done: oneshot::Sender<Result<(), ClusterError>>,
}

#[derive(Clone)]
pub(crate) struct BindingWriter {
    tx: mpsc::Sender<Job>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error("registration queue full")]
    Overloaded,
    #[error("cluster: {0}")]
    Cluster(#[from] ClusterError),
    #[error("writer stopped")]
    Stopped,
}

impl BindingWriter {
    pub(crate) fn start(cluster: Cluster) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(cluster, rx));
        Self { tx }
    }

    /// Commits `ops` through Raft; returns once they are applied on the leader.
    pub(crate) async fn commit(&self, ops: Vec<BindingOp>) -> Result<(), WriteError> {
        if ops.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .try_send(Job { ops, done })
            .map_err(|_| WriteError::Overloaded)?;
        wait.await
            .map_err(|_| WriteError::Stopped)?
            .map_err(WriteError::from)
    }
}

async fn run(cluster: Cluster, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut count = jobs[0].ops.len();
        while count < MAX_OPS_PER_ENTRY {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.ops.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let ops: Vec<BindingOp> = jobs.iter().flat_map(|j| j.ops.iter().cloned()).collect();
        metrics::histogram!("pbx_registrar_batch_ops").record(ops.len() as f64);
        let result = match cluster.propose(Command::UpdateBindings(ops)).await {
            Ok(Response::Ok) => Ok(()),
            Ok(other) => Err(ClusterError::Internal(format!(
                "bindings refused: {other:?}"
            ))),
            Err(e) => Err(e),
        };
        for job in jobs {
            let _ = job.done.send(result.clone());
        }
    }
}
