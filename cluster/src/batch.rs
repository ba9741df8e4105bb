//! Group commit: concurrent proposals on the leader share one Raft entry, hence one fsync per node.
//!
//! openraft 0.9 appends (and syncs) each client write on its own, so with a ~0.5 ms fsync a leader
//! tops out near 2,000 writes/s however many clients wait. The batcher queues proposals while earlier
//! batches are in flight and submits everything queued as one [`Command::Batch`]; each caller still
//! gets its own response, and only after the entry is committed and applied.

use std::sync::Arc;

use openraft::Raft;
use tokio::sync::{Semaphore, mpsc, oneshot};

use storage::{Command, Response, TypeConfig};

use crate::ClusterError;
use crate::handle::client_write_error;

/// Commands per entry at most (bounds the entry's size and the apply batch).
const MAX_BATCH: usize = 512;
/// Entries in flight at once: one being committed while the next one fills. Two in flight made the
/// entries a third smaller under REGISTER load (19 commands each instead of 29 at 8,000–9,000/s),
/// and every entry costs each node a fixed share (an AppendEntries over QUIC, a log write and fsync,
/// an apply): a follower spent 29–33 µs of CPU per registration instead of 22–27 (BENCHMARKS.md,
/// issue 18 fifth pass). An idle cluster commits a lone write at once either way.
const IN_FLIGHT: usize = 1;
/// Proposals waiting beyond this are refused as overload rather than queued without bound.
const QUEUE: usize = 16 * 1024;

type Reply = oneshot::Sender<Result<Response, ClusterError>>;

#[derive(Clone)]
pub(crate) struct Batcher {
    tx: mpsc::Sender<(Command, Reply)>,
}

impl Batcher {
    pub(crate) fn start(raft: Raft<TypeConfig>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, rx));
        Self { tx }
    }

    /// Proposes `cmd` on this node (which should lead); returns its response once applied.
    pub(crate) async fn submit(&self, cmd: Command) -> Result<Response, ClusterError> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .try_send((cmd, reply))
            .map_err(|_| ClusterError::Unavailable("too many writes queued".into()))?;
        wait.await
            .map_err(|_| ClusterError::Unavailable("the cluster layer is shut down".into()))?
    }
}

async fn run(raft: Raft<TypeConfig>, mut rx: mpsc::Receiver<(Command, Reply)>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        // Take whatever queued while we waited for a slot.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            commit(&raft, batch).await;
            drop(permit);
        });
    }
}

async fn commit(raft: &Raft<TypeConfig>, mut batch: Vec<(Command, Reply)>) {
    metrics::histogram!("pbx_raft_batch_commands").record(batch.len() as f64);
    if batch.len() == 1 {
        let Some((cmd, reply)) = batch.pop() else {
            return;
        };
        let result = raft
            .client_write(cmd)
            .await
            .map(|r| r.data)
            .map_err(client_write_error);
        let _ = reply.send(result);
        return;
    }
    let (cmds, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
    match raft.client_write(Command::Batch(cmds)).await {
        Ok(resp) => match resp.data {
            Response::Batch(each) if each.len() == replies.len() => {
                for (reply, r) in replies.into_iter().zip(each) {
                    let _ = reply.send(Ok(r));
                }
            }
            other => {
                let e = ClusterError::Internal(format!("batch answered with {other:?}"));
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        },
        Err(e) => {
            let e = client_write_error(e);
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
