//! The handle the node holds: start, membership, propose, linearizable reads, status, shutdown.
//!
//! Operations that only the leader can perform are tried locally first; when openraft says another node
//! leads, they are forwarded to it over the Raft transport. While no leader is known they are retried
//! for a short, bounded time, then fail with [`ClusterError::NoLeader`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::metrics::WaitError;
use openraft::{ChangeMembers, Raft, ServerState};
use storage::{Command, NodeAddr, NodeId, Response, StateReader, TypeConfig};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::batch::Batcher;
use crate::blob_dir::BlobDir;
use crate::blobs::{BlobClient, TransferError};
use crate::network::{CallError, NetworkFactory, Transport};
use crate::rpc::{self, RpcBody, RpcResponse};
use crate::status::{ClusterStatus, MemberStatus, NodeState};
use crate::tls;
use crate::{ClusterConfig, ClusterError, server, telemetry};

/// How long `start` waits for openraft to publish the state it loaded from disk.
const STARTUP_METRICS_WAIT: Duration = Duration::from_secs(2);

/// What a `Cluster` handle shares: the Raft instance, its store's reader and the transport.
pub(crate) struct Inner {
    pub(crate) id: NodeId,
    pub(crate) config: ClusterConfig,
    pub(crate) raft: Raft<TypeConfig>,
    batcher: Batcher,
    pub(crate) reader: StateReader,
    pub(crate) transport: Arc<Transport>,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) advertise: NodeAddr,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stopped: AtomicBool,
    pub(crate) leader_contact: crate::succession::LeaderContact,
    leadership: tokio::sync::watch::Receiver<telemetry::Leadership>,
    /// This node's copy of the audio files.
    pub(crate) blobs: Arc<BlobDir>,
    blob_client: BlobClient,
    /// What answers [`RpcBody::App`] requests, once the node registered it.
    app: std::sync::OnceLock<AppHandler>,
}

/// Answers application requests from other members: `(kind, body)` to an answer body or the
/// reason there is none. Requests arrive only from members whose certificate was checked.
pub type AppHandler = Arc<
    dyn Fn(
            String,
            Vec<u8>,
        ) -> std::pin::Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>>
        + Send
        + Sync,
>;

impl Drop for Inner {
    fn drop(&mut self) {
        self.endpoint
            .close(rpc::ERR_SHUTDOWN.into(), b"shutting down");
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

/// The cluster layer of one node. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Opens the store in `data_dir`, starts Raft and the QUIC endpoint. The node serves Raft RPCs from
    /// here on; it joins a cluster through `initialize` (on the first node) or `add_member` (on the leader).
    pub async fn start(config: ClusterConfig, data_dir: &Path) -> Result<Self, ClusterError> {
        let id = config.node_id;
        config.tls.check_identity(id)?;
        let mut raft_config = config.raft_config()?;
        // Turned on by `succession::hold_elections_after_start`.
        raft_config.enable_elect = false;
        let raft_config = Arc::new(raft_config);
        let server_config = tls::quic_server_config(&config.tls, config.max_wire_version)?;
        let client_config = tls::quic_client_config(&config.tls, config.max_wire_version)?;
        let blob_config = tls::quic_blob_client_config(&config.tls)?;
        let blobs = Arc::new(
            BlobDir::open(&data_dir.join("audio"), config.audio_reserve_bytes)
                .map_err(|e| ClusterError::Storage(format!("opening the audio directory: {e}")))?,
        );

        let (log_store, state_machine, reader) = storage::open(data_dir)?;

        let bind_err =
            |e: std::io::Error| ClusterError::Network(format!("binding {}: {e}", config.listen));
        let socket = std::net::UdpSocket::bind(config.listen).map_err(bind_err)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| ClusterError::Network("no async runtime for QUIC".into()))?;
        let endpoint = quinn::Endpoint::new(
            tls::quic_endpoint_config(&config.tls),
            Some(server_config),
            socket,
            runtime,
        )
        .map_err(bind_err)?;
        let local = endpoint
            .local_addr()
            .map_err(|e| ClusterError::Network(e.to_string()))?;
        let mut advertise = config.advertise.clone();
        if advertise.raft_addr.is_empty() {
            advertise.raft_addr = local.to_string();
        }

        let transport = Arc::new(Transport::new(
            id,
            endpoint.clone(),
            client_config,
            Duration::from_millis(config.connect_timeout_ms),
            config.rpc_timeout(),
        ));
        let network = NetworkFactory {
            transport: Arc::clone(&transport),
        };
        let raft = Raft::new(id, raft_config, network, log_store, state_machine)
            .await
            .map_err(|e| ClusterError::Storage(format!("starting raft: {e}")))?;

        // openraft publishes the state it loaded (membership included) asynchronously; wait for it so
        // that `is_initialized` and the server's membership check see it from the first call on.
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Storage(format!("starting raft: {e}")))?;
        if initialized {
            let loaded = raft
                .wait(Some(STARTUP_METRICS_WAIT))
                .metrics(
                    |m| m.membership_config.membership().nodes().next().is_some(),
                    "membership loaded",
                )
                .await;
            if let Err(e) = loaded {
                tracing::warn!(node = id, error = %e, "stored state has a log but no membership");
            }
        }

        let blob_client = BlobClient::new(
            id,
            endpoint.clone(),
            blob_config,
            Duration::from_millis(config.connect_timeout_ms),
        );
        let batcher = Batcher::start(raft.clone(), Duration::from_millis(config.commit_linger_ms));
        let (leadership_tx, leadership) = tokio::sync::watch::channel(Default::default());
        let inner = Arc::new(Inner {
            id,
            config,
            raft,
            batcher,
            reader,
            transport,
            endpoint: endpoint.clone(),
            advertise,
            tasks: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            leader_contact: crate::succession::LeaderContact::new(),
            leadership,
            blobs,
            blob_client,
            app: std::sync::OnceLock::new(),
        });
        let server = tokio::spawn(server::serve(endpoint, Arc::downgrade(&inner)));
        let watcher = tokio::spawn(telemetry::watch_raft(inner.raft.metrics(), leadership_tx));
        let succession = tokio::spawn(crate::succession::watch(Arc::downgrade(&inner)));
        let grace = Duration::from_millis(
            2 * inner.config.election_max_ms + inner.config.connect_timeout_ms,
        );
        let hold = tokio::spawn(crate::succession::hold_elections_after_start(
            Arc::downgrade(&inner),
            grace,
        ));
        let greet = tokio::spawn(greet_members(Arc::downgrade(&inner)));
        inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend([server, watcher, succession, hold, greet]);
        tracing::info!(node = id, listen = %local, advertise = %inner.advertise, "cluster layer started");
        Ok(Self { inner })
    }

    /// Makes this node a single-member cluster (the first node of a new cluster), and waits until it
    /// leads it.
    pub async fn initialize(&self) -> Result<(), ClusterError> {
        let inner = &self.inner;
        if inner
            .raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Unavailable(e.to_string()))?
        {
            return Err(ClusterError::AlreadyInitialized);
        }
        let members = BTreeMap::from([(inner.id, inner.advertise.clone())]);
        inner.raft.initialize(members).await.map_err(|e| match e {
            RaftError::APIError(openraft::error::InitializeError::NotAllowed(_)) => {
                ClusterError::AlreadyInitialized
            }
            other => ClusterError::Internal(other.to_string()),
        })?;
        let timeout = Duration::from_millis(
            inner
                .config
                .leader_wait_ms
                .max(inner.config.election_max_ms * 4),
        );
        inner
            .raft
            .wait(Some(timeout))
            .current_leader(inner.id, "initialized node leads")
            .await
            .map_err(wait_error)?;
        tracing::info!(node = inner.id, "cluster initialised");
        Ok(())
    }

    /// True once this node has a membership (it was initialised, or added to a cluster).
    pub fn is_initialized(&self) -> bool {
        self.inner.has_membership()
    }

    /// Adds node `id` reachable at `addr`: first as a learner, waiting until it has caught up, then as a
    /// voter. Forwarded to the leader when this node does not lead.
    pub async fn add_member(&self, id: NodeId, addr: NodeAddr) -> Result<(), ClusterError> {
        let timeout = Duration::from_millis(self.inner.config.join_timeout_ms)
            + self.inner.config.rpc_timeout();
        self.on_leader(
            || self.inner.add_member_local(id, addr.clone()),
            || RpcBody::AddMember {
                id,
                addr: addr.clone(),
            },
            |resp| match resp {
                RpcResponse::AddMember(res) => Some(res),
                _ => None,
            },
            timeout,
        )
        .await
    }

    /// Removes node `id` from the cluster (voter or learner). Removing the last voter is refused.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), ClusterError> {
        let timeout = self.inner.config.rpc_timeout() * 2;
        self.on_leader(
            || self.inner.remove_member_local(id),
            || RpcBody::RemoveMember { id },
            |resp| match resp {
                RpcResponse::RemoveMember(res) => Some(res),
                _ => None,
            },
            timeout,
        )
        .await
    }

    /// Commits `cmd` and returns the state machine's answer. Returns only once the command is committed
    /// by a quorum and applied on the leader; a follower forwards it to the leader.
    ///
    /// A `Timeout` or `Network` error means the outcome is unknown: the command may still commit.
    pub async fn propose(&self, cmd: Command) -> Result<Response, ClusterError> {
        let started = Instant::now();
        let kind = cmd.kind();
        let res = self
            .on_leader(
                || self.inner.write_local(cmd.clone()),
                || RpcBody::ClientWrite(cmd.clone()),
                |resp| match resp {
                    RpcResponse::ClientWrite(res) => Some(res),
                    _ => None,
                },
                self.inner.config.rpc_timeout(),
            )
            .await;
        metrics::histogram!("pbx_raft_commit_seconds").record(started.elapsed().as_secs_f64());
        if let Err(e) = &res {
            metrics::counter!("pbx_raft_propose_failures_total").increment(1);
            tracing::debug!(node = self.inner.id, command = kind, error = %e, "proposal failed");
        }
        res
    }

    /// Builds a snapshot of everything applied so far and purges the log it covers, waiting for both:
    /// nodes that join later are sent the snapshot in chunks rather than the entries. A restore
    /// calls it, for its entries are large and an append must fit openraft's heartbeat-long deadline.
    pub async fn snapshot_and_purge(&self, timeout: Duration) -> Result<(), ClusterError> {
        let raft = &self.inner.raft;
        let Some(applied) = raft.metrics().borrow().last_applied else {
            return Ok(());
        };
        let fatal = |e: openraft::error::Fatal<NodeId>| ClusterError::Internal(e.to_string());
        raft.trigger().snapshot().await.map_err(fatal)?;
        raft.wait(Some(timeout))
            .metrics(
                |m| m.snapshot >= Some(applied),
                "snapshot of the applied log",
            )
            .await
            .map_err(wait_error)?;
        raft.trigger()
            .purge_log(applied.index)
            .await
            .map_err(fatal)?;
        raft.wait(Some(timeout))
            .metrics(
                |m| m.purged >= Some(applied),
                "log purged up to the snapshot",
            )
            .await
            .map_err(wait_error)?;
        Ok(())
    }

    /// After this returns, this node's [`StateReader`] reflects every write committed before the call
    /// (ReadIndex: the leader confirms it still leads and names its commit index; this node waits until
    /// it has applied that far).
    pub async fn linearizable_barrier(&self) -> Result<(), ClusterError> {
        let index = self
            .on_leader(
                || self.inner.read_index_local(),
                || RpcBody::ReadIndex,
                |resp| match resp {
                    RpcResponse::ReadIndex(res) => Some(res),
                    _ => None,
                },
                self.inner.config.rpc_timeout(),
            )
            .await?;
        if index > 0 {
            self.inner
                .raft
                .wait(Some(self.inner.config.rpc_timeout()))
                .applied_index_at_least(Some(index), "linearizable barrier")
                .await
                .map_err(wait_error)?;
        }
        Ok(())
    }

    /// The cluster protocol version this node speaks (see [`crate::version`]).
    pub fn wire_version(&self) -> u32 {
        self.inner.config.max_wire_version
    }

    /// The applied replicated state of this node.
    pub fn reader(&self) -> &StateReader {
        &self.inner.reader
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.id
    }

    /// The leader this node knows of, if any.
    pub fn current_leader(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow().current_leader
    }

    /// The leader to show an operator: [`Self::current_leader`], except this node while no quorum
    /// has acknowledged it within an election timeout. A node restarted from a term it led believes
    /// it leads until the real leader reaches it, and a leader cut off from the others keeps
    /// believing it; neither is the cluster's leader.
    pub fn confirmed_leader(&self) -> Option<NodeId> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        self.inner.confirmed(&m)
    }

    /// The address this node advertises (with the bound port filled in when it was left empty).
    pub fn advertise_addr(&self) -> &NodeAddr {
        &self.inner.advertise
    }

    /// The UDP address the QUIC endpoint is bound to.
    pub fn local_raft_addr(&self) -> Result<SocketAddr, ClusterError> {
        self.inner
            .endpoint
            .local_addr()
            .map_err(|e| ClusterError::Network(e.to_string()))
    }

    /// When this node leads: the instant from which a quorum has pledged not to elect anyone else for
    /// `election_max_ms` (see the VIP lease). `None` when it does not lead or cannot prove it in
    /// `timeout`.
    pub async fn lease_start(&self, timeout: Duration) -> Option<std::time::Instant> {
        self.inner.lease_start(timeout).await
    }

    /// Who leads, as this node sees it; changes whenever the leader, the term or this node's role
    /// does.
    pub fn leadership(&self) -> tokio::sync::watch::Receiver<telemetry::Leadership> {
        self.inner.leadership.clone()
    }

    /// A watch of openraft's metrics, for the cluster crate's own tests and diagnostics; the rest of
    /// the node uses [`Cluster::leadership`].
    pub fn raft_metrics(
        &self,
    ) -> tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, NodeAddr>> {
        self.inner.raft.metrics()
    }

    /// This node's copy of the cluster's audio files.
    pub fn audio_dir(&self) -> &Arc<BlobDir> {
        &self.inner.blobs
    }

    /// The members of the current membership (voters and learners) and whether each votes.
    pub fn members(&self) -> Vec<(NodeId, NodeAddr, bool)> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, addr)| (*id, addr.clone(), voters.contains(id)))
            .collect()
    }

    /// Sends audio file `id` from this node's directory to member `node`, which stores it only if
    /// it hashes to `sha256`.
    pub async fn push_audio(
        &self,
        node: NodeId,
        id: &str,
        sha256: &str,
    ) -> Result<(), TransferError> {
        let inner = &self.inner;
        let addr = inner.blob_peer(node)?;
        inner
            .blob_client
            .push(&inner.blobs, node, &addr, id, sha256)
            .await
    }

    /// Fetches audio file `id` from member `node` into this node's directory, stored only if it is
    /// `size` bytes hashing to `sha256`.
    pub async fn fetch_audio(
        &self,
        node: NodeId,
        id: &str,
        sha256: &str,
        size: u64,
    ) -> Result<(), TransferError> {
        let inner = &self.inner;
        let addr = inner.blob_peer(node)?;
        inner
            .blob_client
            .fetch(&inner.blobs, node, &addr, id, sha256, size)
            .await
    }

    /// Registers what answers other members' application requests ([`Self::app_call`]); the first
    /// registration stays.
    pub fn set_app_handler(&self, handler: AppHandler) {
        let _ = self.inner.app.set(handler);
    }

    /// Asks member `node` an application request of `kind` (its handler decides what `body`
    /// means). `body` is at most [`rpc::MAX_APP_REQUEST`] bytes, the answer at most
    /// [`rpc::MAX_APP_RESPONSE`].
    pub async fn app_call(
        &self,
        node: NodeId,
        kind: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ClusterError> {
        let inner = &self.inner;
        if body.len() > rpc::MAX_APP_REQUEST {
            return Err(ClusterError::Unavailable(format!(
                "request of {} bytes is too large",
                body.len()
            )));
        }
        let addr = inner
            .member_addr(node)
            .ok_or(ClusterError::UnknownMember(node))?;
        let body = RpcBody::App {
            kind: kind.to_owned(),
            body,
        };
        match inner
            .transport
            .call(node, &addr.raft_addr, body, timeout)
            .await
        {
            Ok(RpcResponse::App(Ok(answer))) if answer.len() <= rpc::MAX_APP_RESPONSE => Ok(answer),
            Ok(RpcResponse::App(Ok(answer))) => Err(ClusterError::Network(format!(
                "answer of {} bytes is too large",
                answer.len()
            ))),
            Ok(RpcResponse::App(Err(why))) => Err(ClusterError::Unavailable(why)),
            Ok(RpcResponse::Refused(why)) => Err(ClusterError::Refused(why)),
            Ok(_) => Err(ClusterError::Network(
                "unexpected answer to an app request".into(),
            )),
            Err(e) => Err(ClusterError::Network(e.to_string())),
        }
    }

    /// This node's state and the members as the leader sees them (asked over RPC when this node does not
    /// lead; this node's own view, flagged, when the leader cannot be asked).
    pub async fn status(&self) -> ClusterStatus {
        let inner = &self.inner;
        let mut status = inner.local_status();
        if status.state == NodeState::Leader {
            return status;
        }
        let Some((leader, addr)) = status
            .leader
            .filter(|l| *l != inner.id)
            .and_then(|l| inner.member_addr(l).map(|a| (l, a)))
        else {
            return status;
        };
        match inner
            .transport
            .call(
                leader,
                &addr.raft_addr,
                RpcBody::Status,
                inner.config.rpc_timeout(),
            )
            .await
        {
            Ok(RpcResponse::Status(Ok(remote))) => {
                status.members = remote.members;
                status.members_from_leader = true;
            }
            Ok(other) => {
                tracing::debug!(node = inner.id, leader, answer = ?other, "leader did not give its status")
            }
            Err(e) => {
                tracing::debug!(node = inner.id, leader, error = %e, "leader unreachable for status")
            }
        }
        status
    }

    /// Stops Raft and the QUIC endpoint. The handle (and its clones) answer `Unavailable` afterwards.
    pub async fn shutdown(&self) -> Result<(), ClusterError> {
        let inner = &self.inner;
        if inner.stopped.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let res = inner
            .raft
            .shutdown()
            .await
            .map_err(|e| ClusterError::Internal(format!("raft shutdown: {e}")));
        inner
            .endpoint
            .close(rpc::ERR_SHUTDOWN.into(), b"shutting down");
        let tasks: Vec<_> = inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), inner.endpoint.wait_idle()).await;
        tracing::info!(node = inner.id, "cluster layer stopped");
        res
    }

    /// Runs a leader-only operation: locally, or on the leader. Retries while no leader is known, or
    /// while the leader moves, until `leader_wait_ms` has passed.
    async fn on_leader<T, L, Fut, B, X>(
        &self,
        local: L,
        body: B,
        extract: X,
        rpc_timeout: Duration,
    ) -> Result<T, ClusterError>
    where
        L: Fn() -> Fut,
        Fut: Future<Output = Result<T, ClusterError>>,
        B: Fn() -> RpcBody,
        X: Fn(RpcResponse) -> Option<Result<T, ClusterError>>,
    {
        let inner = &self.inner;
        if inner.stopped.load(Ordering::SeqCst) {
            return Err(ClusterError::Unavailable(
                "the cluster layer is shut down".into(),
            ));
        }
        if !inner.has_membership() {
            return Err(ClusterError::NotInitialized);
        }
        let deadline = Instant::now() + Duration::from_millis(inner.config.leader_wait_ms);
        loop {
            let hint = match local().await {
                Err(ClusterError::NotLeader { leader }) => leader,
                other => return other,
            };
            if let Some((leader, addr)) = hint
                .filter(|l| *l != inner.id)
                .and_then(|l| inner.member_addr(l).map(|a| (l, a)))
            {
                let call = inner
                    .transport
                    .call(leader, &addr.raft_addr, body(), rpc_timeout);
                // A dead leader answers nothing until the RPC times out; the cluster elects a new one
                // sooner. Stop waiting when it does: the outcome is unknown, so say so and let the
                // client retry against the new leader.
                let outcome = tokio::select! {
                    r = call => r,
                    () = leader_replaced(&inner.raft, leader) => {
                        return Err(ClusterError::Unavailable(format!(
                            "leader {leader} was replaced while the request was in flight; it may or may not have been applied"
                        )));
                    }
                };
                match outcome {
                    Ok(RpcResponse::Refused(reason)) => return Err(ClusterError::Refused(reason)),
                    Ok(resp) => match extract(resp) {
                        // The leader moved on between our look and its answer: look again.
                        Some(Err(ClusterError::NotLeader { .. })) => {}
                        Some(res) => return res,
                        None => {
                            return Err(ClusterError::Network(format!(
                                "unexpected answer from node {leader}"
                            )));
                        }
                    },
                    // Nothing was sent: safe to try again (the leader may be changing).
                    Err(CallError::Connect { .. }) => {}
                    Err(e @ CallError::Timeout { .. }) => {
                        return Err(ClusterError::Timeout(e.to_string()));
                    }
                    Err(e) => return Err(ClusterError::Network(e.to_string())),
                }
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::NoLeader);
            }
            // Wait for news about the leader, briefly.
            let mut metrics = inner.raft.metrics();
            let _ = tokio::time::timeout(Duration::from_millis(50), metrics.changed()).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Calls every other member once at start. A leader whose replication to this node is backing off
/// (the node was down) learns from the call that it is up, and tries again within 10 ms instead of
/// at its next backoff step (up to 400 ms): a restarted node is caught up that much sooner.
async fn greet_members(inner: std::sync::Weak<Inner>) {
    let Some(me) = inner.upgrade() else {
        return;
    };
    let members: Vec<(NodeId, String)> = {
        let m = me.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != me.id)
            .map(|(id, addr)| (*id, addr.raft_addr.clone()))
            .collect()
    };
    let (transport, timeout) = (Arc::clone(&me.transport), me.config.rpc_timeout());
    drop(me);
    let calls = members.iter().map(|(id, addr)| {
        let transport = Arc::clone(&transport);
        async move {
            if let Err(e) = transport.call(*id, addr, RpcBody::LogState, timeout).await {
                tracing::debug!(peer = *id, error = %e, "member not greeted");
            }
        }
    });
    futures::future::join_all(calls).await;
}

/// Resolves once this node knows a leader other than `old`.
async fn leader_replaced(raft: &Raft<TypeConfig>, old: NodeId) {
    let mut metrics = raft.metrics();
    loop {
        let current = metrics.borrow().current_leader;
        if current.is_some_and(|l| l != old) {
            return;
        }
        if metrics.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Inner {
    fn has_membership(&self) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .next()
            .is_some()
    }

    /// The address audio transfers with member `node` dial.
    fn blob_peer(&self, node: NodeId) -> Result<String, TransferError> {
        self.member_addr(node)
            .map(|a| a.raft_addr)
            .ok_or(TransferError::UnknownNode(node))
    }

    fn member_addr(&self, id: NodeId) -> Option<NodeAddr> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
    }

    /// Answers an application request with the registered handler.
    pub(crate) async fn serve_app(&self, kind: String, body: Vec<u8>) -> Result<Vec<u8>, String> {
        if body.len() > rpc::MAX_APP_REQUEST {
            return Err(format!("request of {} bytes is too large", body.len()));
        }
        let handler = self
            .app
            .get()
            .ok_or_else(|| "no application handler".to_owned())?;
        let answer = handler(kind, body).await?;
        if answer.len() > rpc::MAX_APP_RESPONSE {
            return Err(format!("answer of {} bytes is too large", answer.len()));
        }
        Ok(answer)
    }

    /// Proposes on this node, which must lead.
    pub(crate) async fn write_local(&self, cmd: Command) -> Result<Response, ClusterError> {
        // Only the leader judges which protocol the members speak: it has a live connection to
        // each. A follower knows only what they recorded, and a member that has just joined has
        // not recorded anything yet (it read as protocol 1, and a follower refused every newer
        // change until it had). A follower sends the write on to the leader, which checks.
        let (leads, leader) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (m.state == ServerState::Leader, m.current_leader)
        };
        if !leads {
            return Err(ClusterError::NotLeader { leader });
        }
        let needs = cmd.wire_version();
        if needs > crate::version::MIN_WIRE_VERSION
            && let Some((node, speaks)) = self.oldest_member_below(needs)
        {
            tracing::warn!(
                command = cmd.kind(),
                needs,
                node,
                speaks,
                "refusing a change an older member could not read"
            );
            metrics::counter!("pbx_raft_version_refusals_total").increment(1);
            return Err(ClusterError::VersionTooOld {
                needs,
                node,
                speaks,
            });
        }
        self.batcher.submit(cmd).await
    }

    /// Once replication to new learner `id` has connected: when it speaks an older protocol than
    /// every member does, it is removed again and the join refused (it could not decode what the
    /// members may have written). A learner that does not connect within a few seconds is left to
    /// the catch-up wait.
    async fn refuse_older_joiner(&self, id: NodeId) -> Result<(), ClusterError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let speaks = loop {
            if let Some(v) = self.transport.peer_wire_version(id) {
                break v;
            }
            if Instant::now() > deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let others: Vec<NodeId> = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            metrics
                .membership_config
                .membership()
                .voter_ids()
                .filter(|v| *v != self.id && *v != id)
                .collect()
        };
        let members = others
            .into_iter()
            .map(|other| self.member_wire_version(other))
            .fold(self.config.max_wire_version, u32::min);
        if speaks >= members {
            return Ok(());
        }
        tracing::warn!(
            node = self.id,
            new_member = id,
            speaks,
            members,
            "refusing a member of an older protocol"
        );
        if let Err(e) = self
            .raft
            .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await
        {
            tracing::warn!(new_member = id, error = %e, "could not remove the refused learner");
        }
        Err(ClusterError::JoinTooOld {
            node: id,
            speaks,
            members,
        })
    }

    /// The protocol member `id` speaks: its live connection's, else what it recorded, else 1.
    fn member_wire_version(&self, id: NodeId) -> u32 {
        let live = self.transport.peer_wire_version(id);
        let recorded = self
            .reader
            .get::<storage::model::Setting>(&crate::version::wire_key(id))
            .ok()
            .flatten()
            .and_then(|s| s.value.parse().ok());
        crate::version::cluster_version([(live, recorded)])
    }

    /// A member (this node included) that speaks a wire version below `needs`, with its version:
    /// see [`crate::version::cluster_version`].
    fn oldest_member_below(&self, needs: u32) -> Option<(NodeId, u32)> {
        if self.config.max_wire_version < needs {
            return Some((self.id, self.config.max_wire_version));
        }
        let members: Vec<NodeId> = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            metrics
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .filter(|id| *id != self.id)
                .collect()
        };
        members.into_iter().find_map(|id| {
            let speaks = self.member_wire_version(id);
            (speaks < needs).then_some((id, speaks))
        })
    }

    /// Adds a member on this node, which must lead.
    pub(crate) async fn add_member_local(
        &self,
        id: NodeId,
        addr: NodeAddr,
    ) -> Result<(), ClusterError> {
        if addr.raft_addr.is_empty() {
            return Err(ClusterError::InvalidMembership(
                "the new member needs a raft address".into(),
            ));
        }
        {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let membership = metrics.membership_config.membership();
            if membership.voter_ids().any(|v| v == id) && membership.get_node(&id) == Some(&addr) {
                return Ok(());
            }
        }
        let resp = self
            .raft
            .add_learner(id, addr.clone(), false)
            .await
            .map_err(client_write_error)?;
        let membership_index = resp.log_id.index;
        tracing::info!(node = self.id, new_member = id, %addr, "added learner; waiting for it to catch up");
        self.refuse_older_joiner(id).await?;

        let caught_up = self
            .raft
            .wait(Some(Duration::from_millis(self.config.join_timeout_ms)))
            .metrics(
                |m| {
                    m.state != ServerState::Leader
                        || m.replication
                            .as_ref()
                            .and_then(|r| r.get(&id))
                            .and_then(Option::as_ref)
                            .is_some_and(|matched| matched.index >= membership_index)
                },
                "new member caught up",
            )
            .await;
        match caught_up {
            Ok(m) if m.state != ServerState::Leader => {
                return Err(ClusterError::NotLeader {
                    leader: m.current_leader,
                });
            }
            Ok(_) => {}
            Err(WaitError::Timeout(..)) => {
                return Err(ClusterError::Timeout(format!(
                    "node {id} did not catch up; it stays a learner until removed or added again"
                )));
            }
            Err(WaitError::ShuttingDown) => {
                return Err(ClusterError::Unavailable("raft is shutting down".into()));
            }
        }

        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(client_write_error)?;
        tracing::info!(node = self.id, new_member = id, "member promoted to voter");
        Ok(())
    }

    /// Removes a member on this node, which must lead.
    pub(crate) async fn remove_member_local(&self, id: NodeId) -> Result<(), ClusterError> {
        let change = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            if metrics.state != ServerState::Leader {
                return Err(ClusterError::NotLeader {
                    leader: metrics.current_leader,
                });
            }
            let membership = metrics.membership_config.membership();
            if membership.get_node(&id).is_none() {
                return Err(ClusterError::UnknownMember(id));
            }
            let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
            if voters.contains(&id) {
                if voters.len() == 1 {
                    return Err(ClusterError::InvalidMembership(
                        "cannot remove the last voter".into(),
                    ));
                }
                ChangeMembers::RemoveVoters(BTreeSet::from([id]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([id]))
            }
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(client_write_error)?;
        tracing::info!(node = self.id, removed = id, "member removed");
        Ok(())
    }

    /// The read index, on this node, which must lead: confirms leadership with a quorum.
    pub(crate) async fn read_index_local(&self) -> Result<u64, ClusterError> {
        match self.raft.get_read_log_id().await {
            Ok((read, _applied)) => Ok(read.map_or(0, |l| l.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(ClusterError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => {
                Err(ClusterError::Unavailable(q.to_string()))
            }
            Err(RaftError::Fatal(f)) => Err(ClusterError::Unavailable(f.to_string())),
        }
    }

    /// The full status, on this node, which must lead.
    pub(crate) fn leader_status(&self) -> Result<ClusterStatus, ClusterError> {
        let status = self.local_status();
        if status.state == NodeState::Leader {
            Ok(status)
        } else {
            Err(ClusterError::NotLeader {
                leader: status.leader,
            })
        }
    }

    /// See [`Cluster::confirmed_leader`].
    fn confirmed(&self, m: &openraft::RaftMetrics<NodeId, NodeAddr>) -> Option<NodeId> {
        match m.current_leader {
            Some(me) if me == self.id && m.state == ServerState::Leader => m
                .millis_since_quorum_ack
                .is_some_and(|ms| ms <= self.config.election_max_ms)
                .then_some(me),
            other => other,
        }
    }

    fn local_status(&self) -> ClusterStatus {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let state = NodeState::from(m.state);
        let last_log_index = m.last_log_index.unwrap_or(0);
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let healthy_window = Duration::from_millis(self.config.election_max_ms * 3);
        let mut members: Vec<MemberStatus> = membership
            .nodes()
            .map(|(&node_id, addr)| {
                let (matched_index, healthy) = if node_id == self.id {
                    (Some(last_log_index), true)
                } else if let Some(replication) = &m.replication {
                    let matched = replication
                        .get(&node_id)
                        .map(|l| l.as_ref().map_or(0, |l| l.index));
                    let recent = self
                        .transport
                        .last_ok(node_id)
                        .is_some_and(|t| t.elapsed() < healthy_window);
                    (matched, recent)
                } else {
                    (None, false)
                };
                MemberStatus {
                    node_id,
                    raft_addr: addr.raft_addr.clone(),
                    api_addr: addr.api_addr.clone(),
                    voter: voters.contains(&node_id),
                    matched_index,
                    lag: matched_index.map(|i| last_log_index.saturating_sub(i)),
                    healthy,
                }
            })
            .collect();
        members.sort_by_key(|member| (!member.voter, member.node_id));
        ClusterStatus {
            node_id: self.id,
            state,
            term: m.current_term,
            leader: self.confirmed(&m),
            last_log_index,
            applied_index: m.last_applied.as_ref().map_or(0, |l| l.index),
            members,
            members_from_leader: state == NodeState::Leader,
        }
    }
}

pub(crate) fn client_write_error(
    e: RaftError<NodeId, ClientWriteError<NodeId, NodeAddr>>,
) -> ClusterError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ClusterError::NotLeader {
            leader: f.leader_id,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => match c {
            openraft::error::ChangeMembershipError::InProgress(_) => {
                ClusterError::MembershipChangeInProgress
            }
            other => ClusterError::InvalidMembership(other.to_string()),
        },
        RaftError::Fatal(f) => ClusterError::Unavailable(f.to_string()),
    }
}

fn wait_error(e: WaitError) -> ClusterError {
    match e {
        WaitError::Timeout(after, what) => {
            ClusterError::Timeout(format!("{what} (after {after:?})"))
        }
        WaitError::ShuttingDown => ClusterError::Unavailable("raft is shutting down".into()),
    }
}
