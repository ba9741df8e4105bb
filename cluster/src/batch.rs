//! Group commit: concurrent proposals on the leader share one Raft entry, hence one fsync per node.
//!
//! openraft 0.9 appends (and syncs) each client write on its own, so with a ~0.5 ms fsync a leader
//! tops out near 2,000 writes/s however many clients wait. The batcher queues proposals while earlier
//! batches are in flight and submits everything queued as one [`Command::Batch`]; each caller still
//! gets its own response, and only after the entry is committed and applied.
//!
//! Under sustained load the next entry may also wait a little after the previous one committed (the
//! linger, [`crate::ClusterConfig::commit_linger_ms`]), so that it carries more commands: every entry
//! costs each node a fixed share however many commands it holds. It waits only after a full entry
//! (8 commands or more) and only when writes kept arriving while that entry was in flight.

use std::sync::Arc;
use std::time::Duration;

use openraft::Raft;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc, oneshot};

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
/// The linger applies only after an entry of at least this many commands: writes are arriving faster
/// than one commit, so waiting fills the next entry. A lone write (an idle cluster, an admin's
/// change) is never held back.
const LINGER_FROM: usize = 8;

type Reply = oneshot::Sender<Result<Response, ClusterError>>;

#[derive(Clone)]
pub(crate) struct Batcher {
    tx: mpsc::Sender<(Command, Reply)>,
}

impl Batcher {
    pub(crate) fn start(raft: Raft<TypeConfig>, linger: Duration) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, rx, linger));
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

async fn run(raft: Raft<TypeConfig>, mut rx: mpsc::Receiver<(Command, Reply)>, linger: Duration) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut previous = 0;
    while let Some(first) = rx.recv().await {
        // A write that came while an entry was in flight shows writes arriving whatever the commits
        // do (many phones): worth waiting for more. One that finds the slot free may be a client
        // answering the last commit, with every other writer already queued: waiting would only
        // delay them (a few writers, each waiting for its previous write).
        let (permit, linger) = match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => (permit, Duration::ZERO),
            Err(TryAcquireError::Closed) => return,
            Err(TryAcquireError::NoPermits) => match Arc::clone(&slots).acquire_owned().await {
                Ok(permit) => (permit, linger),
                Err(_) => return,
            },
        };
        let batch = gather(&mut rx, first, previous, linger).await;
        previous = batch.len();
        let raft = raft.clone();
        tokio::spawn(commit(raft, batch, permit));
    }
}

/// The next entry's commands: `first`, whatever queued while the previous entry committed, and, when
/// that entry held [`LINGER_FROM`] commands or more, what arrives within `linger` after that.
async fn gather<T>(
    rx: &mut mpsc::Receiver<T>,
    first: T,
    previous: usize,
    linger: Duration,
) -> Vec<T> {
    let mut batch = vec![first];
    take_queued(rx, &mut batch);
    if previous < LINGER_FROM || linger.is_zero() {
        return batch;
    }
    let until = tokio::time::Instant::now() + linger;
    while batch.len() < MAX_BATCH {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Some(item)) => {
                batch.push(item);
                take_queued(rx, &mut batch);
            }
            Ok(None) | Err(_) => break,
        }
    }
    batch
}

/// Moves what is queued now into `batch`, up to [`MAX_BATCH`] in all.
fn take_queued<T>(rx: &mut mpsc::Receiver<T>, batch: &mut Vec<T>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
}

/// Commits `batch` as one entry and answers each caller. The slot is freed before the answers go
/// out, so a caller that writes again at once finds it free (see the linger in [`run`]).
async fn commit(
    raft: Raft<TypeConfig>,
    mut batch: Vec<(Command, Reply)>,
    slot: OwnedSemaphorePermit,
) {
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
        drop(slot);
        let _ = reply.send(result);
        return;
    }
    let (cmds, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
    let result = raft.client_write(Command::Batch(cmds)).await;
    drop(slot);
    match result {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    /// Fails instead of hanging when `gather` waits where it must not.
    async fn bounded<F: Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(5), f)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn after_a_small_entry_the_next_takes_what_is_queued_and_does_not_wait() {
        let (tx, mut rx) = mpsc::channel(16);
        for i in 1..=3 {
            tx.send(i).await.unwrap();
        }
        // A linger far longer than the bound: waiting would fail the test.
        let batch = bounded(gather(&mut rx, 0, LINGER_FROM - 1, Duration::from_secs(60))).await;
        assert_eq!(batch, vec![0, 1, 2, 3]);
    }

    #[tokio::test]
    async fn after_a_full_entry_the_next_waits_for_writes_still_arriving() {
        let (tx, mut rx) = mpsc::channel(16);
        tx.send(1).await.unwrap();
        let late = tokio::spawn(async move {
            tokio::task::yield_now().await;
            tx.send(2).await.unwrap();
            tx.send(3).await.unwrap();
            // Dropping the sender ends the wait early, as a shutdown does.
        });
        let batch = bounded(gather(&mut rx, 0, LINGER_FROM, Duration::from_secs(60))).await;
        late.await.unwrap();
        assert_eq!(batch, vec![0, 1, 2, 3]);
    }

    #[tokio::test]
    async fn a_linger_ends_when_its_time_is_up_and_later_writes_wait_for_the_next_entry() {
        let (tx, mut rx) = mpsc::channel(16);
        let batch = bounded(gather(&mut rx, 0, LINGER_FROM, Duration::from_millis(20))).await;
        assert_eq!(batch, vec![0]);
        tx.send(1).await.unwrap();
        assert_eq!(rx.recv().await, Some(1));
    }

    #[tokio::test]
    async fn no_entry_holds_more_than_the_cap_and_a_full_one_does_not_wait() {
        let (tx, mut rx) = mpsc::channel(MAX_BATCH + 10);
        for i in 1..MAX_BATCH + 10 {
            tx.send(i).await.unwrap();
        }
        let batch = bounded(gather(&mut rx, 0, LINGER_FROM, Duration::from_secs(60))).await;
        assert_eq!(batch.len(), MAX_BATCH);
        assert_eq!(batch.last(), Some(&(MAX_BATCH - 1)));
        assert_eq!(rx.recv().await, Some(MAX_BATCH));
    }

    #[tokio::test]
    async fn no_linger_configured_means_no_wait() {
        let (_tx, mut rx) = mpsc::channel::<usize>(4);
        let batch = bounded(gather(&mut rx, 0, 100, Duration::ZERO)).await;
        assert_eq!(batch, vec![0]);
    }
}
