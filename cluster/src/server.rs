//! The server side of the Raft transport: accept QUIC connections from cluster-CA peers, check each
//! request's claimed node id against the peer certificate and the membership, and dispatch it.
//!
//! The TLS handshake already refused peers without a certificate from the cluster CA. What remains is
//! binding: a request saying `from: 3` must come from a certificate naming `node-3.pbx.cluster`, and node
//! 3 must be a voter or learner of the current membership (a node with no membership yet, about to be
//! added, accepts any cluster peer). Bad frames close the connection; nothing a peer sends can panic us.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use storage::NodeId;

use crate::handle::Inner;
use crate::rpc::{self, FrameError, RpcBody, RpcRequest, RpcResponse};
use crate::tls;

/// Longest a peer may take to send one request once it opened the stream (a snapshot chunk is a few
/// megabytes; on a LAN that is milliseconds).
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest we keep a finished stream around for the peer to read the answer.
const ANSWER_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the accept loop until the endpoint closes.
pub(crate) async fn serve(endpoint: quinn::Endpoint, inner: Weak<Inner>) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(serve_connection(incoming, inner.clone()));
    }
}

async fn serve_connection(incoming: quinn::Incoming, inner: Weak<Inner>) {
    let peer = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            // Typically a certificate from another CA, or none at all.
            tracing::warn!(%peer, error = %e, "raft connection refused during handshake");
            refused("handshake");
            return;
        }
    };
    let Some(der) = peer_certificate(&conn) else {
        tracing::warn!(%peer, "raft connection without a peer certificate");
        refused("no_certificate");
        conn.close(rpc::ERR_BAD_FRAME.into(), b"no certificate");
        return;
    };
    let cert = Arc::new(PeerCert::new(der));
    if tls::negotiated_alpn(&conn).as_deref() == Some(tls::BLOB_ALPN) {
        serve_blobs(conn, peer, cert, inner).await;
        return;
    }
    tracing::debug!(%peer, "raft connection accepted");
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                tokio::spawn(serve_stream(
                    conn.clone(),
                    peer,
                    Arc::clone(&cert),
                    send,
                    recv,
                    inner.clone(),
                ));
            }
            Err(e) => {
                tracing::debug!(%peer, reason = %e, "raft connection closed");
                return;
            }
        }
    }
}

async fn serve_stream(
    conn: quinn::Connection,
    peer: SocketAddr,
    cert: Arc<PeerCert>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    inner: Weak<Inner>,
) {
    let request: RpcRequest = match tokio::time::timeout(
        REQUEST_READ_TIMEOUT,
        rpc::read_frame(&mut recv),
    )
    .await
    {
        Ok(Ok(request)) => request,
        Ok(Err(e)) => {
            let reason = match e {
                FrameError::TooLarge(_) => "oversized_frame",
                FrameError::Io(_) => "truncated_frame",
                FrameError::Empty | FrameError::Codec(_) => "bad_frame",
            };
            tracing::warn!(%peer, error = %e, "unreadable raft request; closing the connection");
            refused(reason);
            conn.close(rpc::ERR_BAD_FRAME.into(), b"bad frame");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "raft request not received in time");
            refused("request_timeout");
            let _ = send.reset(rpc::ERR_REQUEST_TIMEOUT.into());
            return;
        }
    };
    let kind = request.body.kind();
    let response = match inner.upgrade() {
        None => {
            conn.close(rpc::ERR_SHUTDOWN.into(), b"shutting down");
            return;
        }
        Some(inner) => match authorize(&inner, &cert, request.from) {
            Err(reason) => {
                tracing::warn!(%peer, claimed_id = request.from, rpc = kind, reason = reason.message(), "raft request refused");
                refused(reason.label());
                RpcResponse::Refused(reason.message())
            }
            Ok(()) => {
                inner.transport.heard_from(request.from);
                dispatch(&inner, request.body).await
            }
        },
    };
    if let Err(e) = rpc::write_frame(&mut send, &response).await {
        tracing::debug!(%peer, rpc = kind, error = %e, "could not send the answer");
        return;
    }
    let _ = send.finish();
    // Wait until the peer has the whole answer (or the connection ends), so that dropping the stream
    // cannot cut it short.
    let _ = tokio::time::timeout(ANSWER_DRAIN_TIMEOUT, send.stopped()).await;
}

/// Audio file transfers: one stream per file ([`crate::blobs`]).
async fn serve_blobs(
    conn: quinn::Connection,
    peer: SocketAddr,
    cert: Arc<PeerCert>,
    inner: Weak<Inner>,
) {
    tracing::debug!(%peer, "blob connection accepted");
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(streams) => streams,
            Err(e) => {
                tracing::debug!(%peer, reason = %e, "blob connection closed");
                return;
            }
        };
        let Some(inner) = inner.upgrade() else {
            conn.close(rpc::ERR_SHUTDOWN.into(), b"shutting down");
            return;
        };
        tokio::spawn(crate::blobs::serve_stream(
            inner,
            Arc::clone(&cert),
            send,
            recv,
        ));
    }
}

/// Why a request was refused.
pub(crate) enum Refusal {
    CertificateMismatch(String),
    NotAMember(NodeId),
}

impl Refusal {
    fn label(&self) -> &'static str {
        match self {
            Self::CertificateMismatch(_) => "identity",
            Self::NotAMember(_) => "not_member",
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            Self::CertificateMismatch(e) => {
                format!("certificate does not match the claimed node id: {e}")
            }
            Self::NotAMember(id) => format!("node {id} is not a member of this cluster"),
        }
    }
}

/// A connection's peer certificate, and the node it was last found to name. The certificate cannot
/// change within a connection, so it is parsed again only when a message claims another node id than
/// the last one that passed, not for every Raft message (that parse was 1.7 % of a follower's CPU
/// under REGISTER load).
pub(crate) struct PeerCert {
    der: CertificateDer<'static>,
    /// 0 until a check passes (node ids start at 1).
    named: AtomicU64,
}

impl PeerCert {
    pub(crate) fn new(der: CertificateDer<'static>) -> Self {
        Self {
            der,
            named: AtomicU64::new(0),
        }
    }

    fn check_names(&self, from: NodeId) -> Result<(), Refusal> {
        if from != 0 && self.named.load(Ordering::Relaxed) == from {
            return Ok(());
        }
        tls::cert_names_node(&self.der, from)
            .map_err(|e| Refusal::CertificateMismatch(e.to_string()))?;
        self.named.store(from, Ordering::Relaxed);
        Ok(())
    }
}

pub(crate) fn authorize(inner: &Inner, cert: &PeerCert, from: NodeId) -> Result<(), Refusal> {
    cert.check_names(from)?;
    let metrics = inner.raft.metrics();
    let metrics = metrics.borrow();
    let membership = metrics.membership_config.membership();
    let fresh = membership.nodes().next().is_none();
    if fresh || membership.get_node(&from).is_some() {
        Ok(())
    } else {
        Err(Refusal::NotAMember(from))
    }
}

async fn dispatch(inner: &Inner, body: RpcBody) -> RpcResponse {
    match body {
        RpcBody::AppendEntries(req) => {
            let result = inner.raft.append_entries(req).await;
            // Anything but "your vote is stale" came from the leader this node follows.
            if matches!(&result, Ok(r) if !matches!(r, openraft::raft::AppendEntriesResponse::HigherVote(_)))
            {
                inner.leader_contact.touch();
            }
            RpcResponse::AppendEntries(result)
        }
        RpcBody::Vote(req) => RpcResponse::Vote(inner.raft.vote(req).await),
        RpcBody::InstallSnapshot(req) => {
            let last_chunk = req.done;
            let result = inner.raft.install_snapshot(req).await;
            if result.is_ok() {
                inner.leader_contact.touch();
            }
            if last_chunk && result.is_ok() {
                // A follower too far behind for the leader's log: worth seeing on a dashboard.
                metrics::counter!("pbx_raft_snapshots_installed_total").increment(1);
                tracing::info!(node = inner.id, "installed a snapshot from the leader");
            }
            RpcResponse::InstallSnapshot(result)
        }
        RpcBody::ClientWrite(cmd) => RpcResponse::ClientWrite(inner.write_local(cmd).await),
        RpcBody::AddMember { id, addr } => {
            RpcResponse::AddMember(inner.add_member_local(id, addr).await)
        }
        RpcBody::RemoveMember { id } => {
            RpcResponse::RemoveMember(inner.remove_member_local(id).await)
        }
        RpcBody::ReadIndex => RpcResponse::ReadIndex(inner.read_index_local().await),
        RpcBody::Status => RpcResponse::Status(inner.leader_status()),
        RpcBody::LogState => RpcResponse::LogState(inner.log_state()),
        RpcBody::App { kind, body } => RpcResponse::App(inner.serve_app(kind, body).await),
    }
}

fn peer_certificate(conn: &quinn::Connection) -> Option<CertificateDer<'static>> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    chain.into_iter().next()
}

fn refused(reason: &'static str) {
    metrics::counter!("pbx_cluster_rpc_refused_total", "reason" => reason).increment(1);
}
