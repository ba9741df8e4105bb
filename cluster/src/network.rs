//! The client side of the Raft transport: one cached QUIC connection per peer, one stream per call, and
//! the `RaftNetwork` openraft drives replication and elections through.
//!
//! Error mapping for openraft: a peer we cannot connect to, or that has stopped answering, is
//! `Unreachable` (openraft backs off); a slow answer from a live peer, or a stream or codec failure, is
//! a `NetworkError` (openraft retries); an error raised by the peer's Raft is a `RemoteError`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use openraft::AnyError;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use storage::{NodeAddr, NodeId, TypeConfig};
use tokio::time::Instant;

use crate::peer_failures::{PeerFailures, Report};
use crate::rpc::{self, FrameError, RpcBody, RpcRequest, RpcResponse};
use crate::tls::node_server_name;

/// Why a call failed, from the caller's point of view.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum CallError {
    /// No connection could be made: the request was not sent, so it is safe to retry.
    #[error("cannot connect to node {target}: {reason}")]
    Connect { target: NodeId, reason: String },
    /// The request was (or may have been) sent but no answer came in time.
    #[error("no answer from node {target} within {timeout:?}")]
    Timeout { target: NodeId, timeout: Duration },
    /// The stream or connection broke during the call.
    #[error("stream to node {target} failed: {reason}")]
    Stream { target: NodeId, reason: String },
    /// The request could not be encoded, or the answer decoded.
    #[error("codec error talking to node {target}: {reason}")]
    Codec { target: NodeId, reason: String },
}

/// A connection on which calls time out and nothing was answered for this long is treated as dead.
const SILENT_CONNECTION: Duration = Duration::from_secs(1);

/// A peer that called us this recently is up: replication to it backs off only briefly.
const HEARD_RECENTLY: Duration = Duration::from_millis(500);

type ConnectAttempt = Shared<BoxFuture<'static, Result<quinn::Connection, String>>>;

struct PoolEntry {
    addr: String,
    attempt: ConnectAttempt,
}

/// Connections to peers and the per-call plumbing. Shared by every `RaftNetwork` client and by the
/// forwarding of client operations to the leader.
pub(crate) struct Transport {
    node_id: NodeId,
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    connect_timeout: Duration,
    rpc_timeout: Duration,
    pool: Mutex<HashMap<NodeId, PoolEntry>>,
    last_ok: Mutex<HashMap<NodeId, Instant>>,
    /// When each peer last sent us a request (it is up, whatever our calls to it say).
    heard: Mutex<HashMap<NodeId, Instant>>,
}

impl Transport {
    pub(crate) fn new(
        node_id: NodeId,
        endpoint: quinn::Endpoint,
        client_config: quinn::ClientConfig,
        connect_timeout: Duration,
        rpc_timeout: Duration,
    ) -> Self {
        Self {
            node_id,
            endpoint,
            client_config,
            connect_timeout,
            rpc_timeout,
            pool: Mutex::new(HashMap::new()),
            last_ok: Mutex::new(HashMap::new()),
            heard: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn rpc_timeout(&self) -> Duration {
        self.rpc_timeout
    }

    /// `peer` sent us a request that passed the membership check.
    pub(crate) fn heard_from(&self, peer: NodeId) {
        self.heard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer, Instant::now());
    }

    /// Whether `peer` sent us a request within `within`.
    pub(crate) fn heard_within(&self, peer: NodeId, within: Duration) -> bool {
        self.heard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&peer)
            .is_some_and(|t| t.elapsed() < within)
    }

    /// When `target` last answered a call of ours.
    pub(crate) fn last_ok(&self, target: NodeId) -> Option<Instant> {
        self.last_ok
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&target)
            .copied()
    }

    /// Sends `body` to `target` at `addr` (its Raft address) and waits for the answer, at most `timeout`
    /// in all (connecting included).
    pub(crate) async fn call(
        &self,
        target: NodeId,
        addr: &str,
        body: RpcBody,
        timeout: Duration,
    ) -> Result<RpcResponse, CallError> {
        let kind = body.kind();
        let deadline = Instant::now() + timeout;
        let frame = rpc::encode_frame(&RpcRequest {
            from: self.node_id,
            body,
        })
        .map_err(|e| CallError::Codec {
            target,
            reason: e.to_string(),
        })?;

        // A cached connection can die between calls; opening a stream on it then fails before anything
        // was sent, so one retry on a fresh connection is safe.
        let mut attempt = 0;
        let (conn, mut send, mut recv) = loop {
            attempt += 1;
            let conn = self.connection(target, addr, deadline).await?;
            match tokio::time::timeout_at(deadline, conn.open_bi()).await {
                Err(_) => return Err(CallError::Timeout { target, timeout }),
                Ok(Ok((send, recv))) => break (conn, send, recv),
                Ok(Err(e)) => {
                    self.forget(target, &conn);
                    if attempt >= 2 {
                        return Err(CallError::Connect {
                            target,
                            reason: e.to_string(),
                        });
                    }
                }
            }
        };

        let exchange = async {
            send.write_all(&frame)
                .await
                .map_err(|e| FrameError::Io(e.into()))?;
            send.finish()
                .map_err(|e| FrameError::Io(std::io::Error::other(e)))?;
            rpc::read_frame::<_, RpcResponse>(&mut recv).await
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Err(_) => {
                tracing::debug!(peer = target, rpc = kind, "rpc timed out");
                metrics::counter!("pbx_cluster_rpc_failures_total", "reason" => "timeout")
                    .increment(1);
                // A peer that restarted does not know our connection and stays silent on it until the
                // idle timeout. If it has not answered anything for a while, stop waiting for that and
                // let the next call dial afresh.
                if self
                    .last_ok(target)
                    .is_none_or(|t| t.elapsed() > SILENT_CONNECTION)
                {
                    self.forget(target, &conn);
                }
                Err(CallError::Timeout { target, timeout })
            }
            Ok(Err(FrameError::Codec(e))) => {
                metrics::counter!("pbx_cluster_rpc_failures_total", "reason" => "codec")
                    .increment(1);
                self.forget(target, &conn);
                Err(CallError::Codec {
                    target,
                    reason: e.to_string(),
                })
            }
            Ok(Err(e)) => {
                metrics::counter!("pbx_cluster_rpc_failures_total", "reason" => "stream")
                    .increment(1);
                self.forget(target, &conn);
                Err(CallError::Stream {
                    target,
                    reason: e.to_string(),
                })
            }
            Ok(Ok(resp)) => {
                self.last_ok
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(target, Instant::now());
                Ok(resp)
            }
        }
    }

    /// The cached connection to `target`, or a new one. A connection attempt outlives the call that
    /// started it (it is shared through the pool), so a short Raft deadline does not abort a handshake
    /// that the next call can use.
    async fn connection(
        &self,
        target: NodeId,
        addr: &str,
        deadline: Instant,
    ) -> Result<quinn::Connection, CallError> {
        let attempt = {
            let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
            match pool.get(&target) {
                Some(entry) if entry.addr == addr && attempt_usable(&entry.attempt) => {
                    entry.attempt.clone()
                }
                _ => {
                    let attempt = self.start_connect(target, addr.to_owned());
                    pool.insert(
                        target,
                        PoolEntry {
                            addr: addr.to_owned(),
                            attempt: attempt.clone(),
                        },
                    );
                    attempt
                }
            }
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Err(_) => Err(CallError::Connect {
                target,
                reason: "connect timed out".into(),
            }),
            Ok(Err(reason)) => {
                metrics::counter!("pbx_cluster_rpc_failures_total", "reason" => "connect")
                    .increment(1);
                Err(CallError::Connect { target, reason })
            }
            Ok(Ok(conn)) => Ok(conn),
        }
    }

    fn start_connect(&self, target: NodeId, addr: String) -> ConnectAttempt {
        let endpoint = self.endpoint.clone();
        let config = self.client_config.clone();
        let timeout = self.connect_timeout;
        async move {
            let connect = async {
                let sock = resolve(&addr).await?;
                let connecting = endpoint
                    .connect_with(config, sock, &node_server_name(target))
                    .map_err(|e| e.to_string())?;
                let conn = connecting.await.map_err(|e| e.to_string())?;
                tracing::debug!(peer = target, %addr, "connected");
                Ok(conn)
            };
            match tokio::time::timeout(timeout, connect).await {
                Ok(res) => res,
                Err(_) => Err(format!("no handshake with {addr} within {timeout:?}")),
            }
        }
        .boxed()
        .shared()
    }

    /// The wire version negotiated on the live connection to `target`, if there is one.
    pub(crate) fn peer_wire_version(&self, target: NodeId) -> Option<u32> {
        let pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = pool.get(&target)?;
        match entry.attempt.peek()? {
            Ok(conn) if conn.close_reason().is_none() => {
                crate::version::of_alpn(&crate::tls::negotiated_alpn(conn)?)
            }
            _ => None,
        }
    }

    /// Drops the cached connection to `target` if it is `conn`, so the next call reconnects.
    fn forget(&self, target: NodeId, conn: &quinn::Connection) {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        let is_this = pool
            .get(&target)
            .and_then(|entry| entry.attempt.peek())
            .is_some_and(|res| {
                res.as_ref()
                    .is_ok_and(|c| c.stable_id() == conn.stable_id())
            });
        if is_this {
            pool.remove(&target);
        }
    }
}

fn attempt_usable(attempt: &ConnectAttempt) -> bool {
    match attempt.peek() {
        None => true,
        Some(Ok(conn)) => conn.close_reason().is_none(),
        Some(Err(_)) => false,
    }
}

pub(crate) async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(sock) = addr.parse::<SocketAddr>() {
        return Ok(sock);
    }
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("resolving {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to no address"))
}

/// Builds a [`PeerClient`] per target for openraft.
pub(crate) struct NetworkFactory {
    pub(crate) transport: Arc<Transport>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> Self::Network {
        PeerClient {
            transport: Arc::clone(&self.transport),
            target,
            node: node.clone(),
            failures: PeerFailures::default(),
        }
    }
}

/// openraft's handle on one peer.
pub(crate) struct PeerClient {
    transport: Arc<Transport>,
    target: NodeId,
    node: NodeAddr,
    /// Replication failures to this peer, logged by run rather than one by one.
    failures: PeerFailures,
}

type RaftRpcError<E = openraft::error::Infallible> =
    RPCError<NodeId, NodeAddr, RaftError<NodeId, E>>;

impl PeerClient {
    async fn call(&self, body: RpcBody, option: &RPCOption) -> Result<RpcResponse, CallError> {
        let timeout = option.hard_ttl().min(self.transport.rpc_timeout());
        self.transport
            .call(self.target, &self.node.raft_addr, body, timeout)
            .await
    }

    fn remote<E: std::error::Error>(&self, e: RaftError<NodeId, E>) -> RaftRpcError<E> {
        RPCError::RemoteError(RemoteError::new_with_node(
            self.target,
            self.node.clone(),
            e,
        ))
    }

    fn unexpected<E: std::error::Error>(&self, resp: &RpcResponse) -> RaftRpcError<E> {
        match resp {
            // The peer does not accept us (we are not, or not yet, a member in its view): back off.
            RpcResponse::Refused(reason) => RPCError::Unreachable(Unreachable::from(
                AnyError::error(format!("node {} refused the call: {reason}", self.target)),
            )),
            other => RPCError::Network(NetworkError::from(AnyError::error(format!(
                "unexpected answer from node {}: {other:?}",
                self.target
            )))),
        }
    }
}

impl PeerClient {
    /// `Unreachable` makes openraft back off before the next try, so it is kept for a peer that is
    /// not there: no connection, or a timeout from a peer that has not answered anything for a
    /// while. A timeout from a peer that answered recently is a slow call (a loaded machine, a big
    /// batch), and the next heartbeat tries again at once.
    fn call_error<E: std::error::Error>(&self, e: CallError) -> RaftRpcError<E> {
        let answering = || {
            self.transport
                .last_ok(self.target)
                .is_some_and(|t| t.elapsed() < SILENT_CONNECTION)
        };
        match e {
            CallError::Timeout { .. } if answering() => RPCError::Network(NetworkError::new(&e)),
            CallError::Connect { .. } | CallError::Timeout { .. } => {
                RPCError::Unreachable(Unreachable::new(&e))
            }
            CallError::Stream { .. } | CallError::Codec { .. } => {
                RPCError::Network(NetworkError::new(&e))
            }
        }
    }
}

impl PeerClient {
    /// Logs the start, the persistence (every few seconds) and the end of a run of failed
    /// replication calls to this peer.
    fn note<T, E: std::error::Error>(&mut self, res: &Result<T, RaftRpcError<E>>) {
        let now = Instant::now();
        let report = match res {
            Ok(_) => self.failures.worked(now),
            // Not a failure: openraft splits the batch and sends again at once.
            Err(RPCError::PayloadTooLarge(_)) => None,
            Err(_) => self.failures.failed(now),
        };
        let (node, peer) = (self.transport.node_id, self.target);
        match (report, res) {
            (None, _) => {}
            (Some(Report::Failing), Err(e)) => {
                tracing::warn!(node, peer, error = %e, "replication to a peer failing");
            }
            (Some(Report::StillFailing { failures, for_ms }), Err(e)) => {
                tracing::warn!(node, peer, failures, for_ms, error = %e, "replication to a peer still failing");
            }
            (Some(Report::Recovered { failures, for_ms }), _) => {
                tracing::info!(
                    node,
                    peer,
                    failures,
                    for_ms,
                    "replication to a peer works again"
                );
            }
            (Some(_), Ok(_)) => {}
        }
    }

    async fn append_entries_once(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RaftRpcError> {
        let entries = rpc.entries.len() as u64;
        match self.call(RpcBody::AppendEntries(rpc), &option).await {
            Ok(RpcResponse::AppendEntries(res)) => res.map_err(|e| self.remote(e)),
            Ok(other) => Err(self.unexpected(&other)),
            // A batch too large for one frame: let openraft split it.
            Err(CallError::Codec { .. }) if entries > 1 => Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(entries / 2),
            )),
            Err(e) => Err(self.call_error(e)),
        }
    }

    async fn install_snapshot_once(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RaftRpcError<InstallSnapshotError>> {
        match self.call(RpcBody::InstallSnapshot(rpc), &option).await {
            Ok(RpcResponse::InstallSnapshot(res)) => res.map_err(|e| self.remote(e)),
            Ok(other) => Err(self.unexpected(&other)),
            Err(e) => Err(self.call_error(e)),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RaftRpcError> {
        let res = self.append_entries_once(rpc, option).await;
        self.note(&res);
        res
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RaftRpcError<InstallSnapshotError>> {
        let res = self.install_snapshot_once(rpc, option).await;
        self.note(&res);
        res
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RaftRpcError> {
        match self.call(RpcBody::Vote(rpc), &option).await {
            Ok(RpcResponse::Vote(res)) => res.map_err(|e| self.remote(e)),
            Ok(other) => Err(self.unexpected(&other)),
            Err(e) => Err(self.call_error(e)),
        }
    }

    fn backoff(&self) -> Backoff {
        // 100, 200, then every 400 ms: a restarted peer is found again well inside its election
        // hold-off (`succession::hold_elections_after_start`), and a dead one costs a connect
        // attempt a few times a second. A peer that has just called us (a restarted node says so
        // at start, `Cluster::greet_members`) is up: the next try comes after 10 ms.
        let (transport, target) = (Arc::clone(&self.transport), self.target);
        Backoff::new((0..).map(move |n: u32| {
            if transport.heard_within(target, HEARD_RECENTLY) {
                Duration::from_millis(10)
            } else {
                Duration::from_millis(100u64 << n.min(2))
            }
        }))
    }
}
