//! Moving audio files between nodes: their own ALPN protocol (`pbx-blob/1`) on the cluster's
//! mutual-TLS QUIC endpoint, beside Raft's.
//!
//! A separate protocol rather than new Raft RPC kinds: a node of an older version refuses the
//! handshake cleanly instead of failing to decode a frame and closing its Raft connection.
//!
//! One bidirectional stream per file. The asker sends one [`BlobRequest`] frame (the framing of
//! [`crate::rpc`]); for a `Put` the file's bytes follow until the stream ends. The other side
//! answers with one [`BlobReply`] frame; for a `Get` answered `Found`, the bytes follow. Whoever
//! receives bytes stores them through [`BlobDir::write`], which checks size and SHA-256 before the
//! file takes its name: the checksum comes from the Raft index, never from the sender.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use storage::NodeId;
use tokio::io::AsyncWriteExt;

use crate::blob_dir::{BlobDir, BlobError, MAX_BLOB_SIZE};
use crate::handle::Inner;
use crate::network::resolve;
use crate::rpc::{self, FrameError};
use crate::tls::node_server_name;

/// What one stream asks.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BlobRequest {
    pub(crate) from: NodeId,
    pub(crate) op: BlobOp,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum BlobOp {
    /// Store this file; `size` bytes hashing to `sha256` follow.
    Put {
        id: String,
        sha256: String,
        size: u64,
    },
    /// Send this file.
    Get { id: String },
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum BlobReply {
    Stored,
    /// `size` bytes follow.
    Found {
        size: u64,
    },
    Missing,
    Refused(String),
}

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    #[error("node {0} is not a member")]
    UnknownNode(NodeId),
    #[error("cannot connect to node {node}: {reason}")]
    Connect { node: NodeId, reason: String },
    #[error("node {node} refused: {reason}")]
    Refused { node: NodeId, reason: String },
    #[error("node {0} does not have the file")]
    Missing(NodeId),
    #[error("transfer with node {node} broke off: {reason}")]
    Stream { node: NodeId, reason: String },
    #[error("transfer with node {0} took too long")]
    Timeout(NodeId),
    #[error(transparent)]
    Store(#[from] BlobError),
}

/// The time a transfer of `size` bytes may take: generous for a LAN, bounded for a dead peer.
fn transfer_deadline(size: u64) -> Duration {
    Duration::from_secs(30 + size / (1024 * 1024))
}

/// The asking side: one cached connection per peer, on the blob ALPN.
pub(crate) struct BlobClient {
    node_id: NodeId,
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    connect_timeout: Duration,
    conns: Mutex<HashMap<NodeId, quinn::Connection>>,
}

impl BlobClient {
    pub(crate) fn new(
        node_id: NodeId,
        endpoint: quinn::Endpoint,
        config: quinn::ClientConfig,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            node_id,
            endpoint,
            config,
            connect_timeout,
            conns: Mutex::new(HashMap::new()),
        }
    }

    async fn connection(
        &self,
        node: NodeId,
        addr: &str,
    ) -> Result<quinn::Connection, TransferError> {
        let cached = self
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&node)
            .filter(|c| c.close_reason().is_none())
            .cloned();
        if let Some(conn) = cached {
            return Ok(conn);
        }
        let connect_err = |reason: String| TransferError::Connect { node, reason };
        let sock = resolve(addr).await.map_err(connect_err)?;
        let connecting = self
            .endpoint
            .connect_with(self.config.clone(), sock, &node_server_name(node))
            .map_err(|e| connect_err(e.to_string()))?;
        let conn = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| connect_err("handshake timed out".into()))?
            .map_err(|e| connect_err(e.to_string()))?;
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node, conn.clone());
        Ok(conn)
    }

    async fn open(
        &self,
        node: NodeId,
        addr: &str,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), TransferError> {
        // A cached connection may have died since; one retry on a fresh one.
        for attempt in 0..2 {
            let conn = self.connection(node, addr).await?;
            match conn.open_bi().await {
                Ok(streams) => return Ok(streams),
                Err(e) => {
                    self.conns
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&node);
                    if attempt == 1 {
                        return Err(TransferError::Connect {
                            node,
                            reason: e.to_string(),
                        });
                    }
                }
            }
        }
        Err(TransferError::Connect {
            node,
            reason: "no stream".into(),
        })
    }

    /// Sends file `id` from `dir` to `node`, which verifies it against `sha256`.
    pub(crate) async fn push(
        &self,
        dir: &BlobDir,
        node: NodeId,
        addr: &str,
        id: &str,
        sha256: &str,
    ) -> Result<(), TransferError> {
        let (mut file, size) = dir.open_file(id).await?;
        let deadline = transfer_deadline(size);
        let exchange = async {
            let (mut send, mut recv) = self.open(node, addr).await?;
            let stream_err = |reason: String| TransferError::Stream { node, reason };
            let request = BlobRequest {
                from: self.node_id,
                op: BlobOp::Put {
                    id: id.to_owned(),
                    sha256: sha256.to_owned(),
                    size,
                },
            };
            rpc::write_frame(&mut send, &request)
                .await
                .map_err(|e| stream_err(e.to_string()))?;
            tokio::io::copy(&mut file, &mut send)
                .await
                .map_err(|e| stream_err(e.to_string()))?;
            send.finish().map_err(|e| stream_err(e.to_string()))?;
            match read_reply(&mut recv, node).await? {
                BlobReply::Stored => Ok(()),
                BlobReply::Refused(reason) => Err(TransferError::Refused { node, reason }),
                other => Err(stream_err(format!("unexpected answer {other:?}"))),
            }
        };
        let result = tokio::time::timeout(deadline, exchange)
            .await
            .unwrap_or(Err(TransferError::Timeout(node)));
        count("push", &result);
        result
    }

    /// Fetches file `id` from `node` into `dir`, verified against `sha256` and `size`.
    pub(crate) async fn fetch(
        &self,
        dir: &BlobDir,
        node: NodeId,
        addr: &str,
        id: &str,
        sha256: &str,
        size: u64,
    ) -> Result<(), TransferError> {
        let exchange = async {
            let (mut send, mut recv) = self.open(node, addr).await?;
            let stream_err = |reason: String| TransferError::Stream { node, reason };
            let request = BlobRequest {
                from: self.node_id,
                op: BlobOp::Get { id: id.to_owned() },
            };
            rpc::write_frame(&mut send, &request)
                .await
                .map_err(|e| stream_err(e.to_string()))?;
            send.finish().map_err(|e| stream_err(e.to_string()))?;
            match read_reply(&mut recv, node).await? {
                BlobReply::Found { size: found } if found == size => {
                    dir.write(id, sha256, size, &mut recv).await?;
                    Ok(())
                }
                BlobReply::Found { size: found } => {
                    Err(TransferError::Store(BlobError::WrongSize {
                        expected: size,
                        got: found,
                    }))
                }
                BlobReply::Missing => Err(TransferError::Missing(node)),
                BlobReply::Refused(reason) => Err(TransferError::Refused { node, reason }),
                BlobReply::Stored => Err(stream_err("unexpected answer".into())),
            }
        };
        let result = tokio::time::timeout(transfer_deadline(size), exchange)
            .await
            .unwrap_or(Err(TransferError::Timeout(node)));
        count("fetch", &result);
        result
    }
}

async fn read_reply(
    recv: &mut quinn::RecvStream,
    node: NodeId,
) -> Result<BlobReply, TransferError> {
    rpc::read_frame(recv)
        .await
        .map_err(|e: FrameError| TransferError::Stream {
            node,
            reason: e.to_string(),
        })
}

fn count(direction: &'static str, result: &Result<(), TransferError>) {
    let result = match result {
        Ok(()) => "ok",
        Err(TransferError::Store(
            BlobError::WrongChecksum { .. } | BlobError::WrongSize { .. },
        )) => "corrupt",
        Err(TransferError::Refused { .. }) => "refused",
        Err(TransferError::Missing(_)) => "missing",
        Err(_) => "failed",
    };
    metrics::counter!("pbx_audio_transfers_total", "direction" => direction, "result" => result)
        .increment(1);
}

/// Serves one blob stream of an authenticated peer connection.
pub(crate) async fn serve_stream(
    inner: Arc<Inner>,
    cert: Arc<crate::server::PeerCert>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let request: BlobRequest =
        match tokio::time::timeout(Duration::from_secs(10), rpc::read_frame(&mut recv)).await {
            Ok(Ok(request)) => request,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "unreadable blob request");
                let _ = send.reset(rpc::ERR_BAD_FRAME.into());
                return;
            }
            Err(_) => {
                let _ = send.reset(rpc::ERR_REQUEST_TIMEOUT.into());
                return;
            }
        };
    if let Err(refusal) = crate::server::authorize(&inner, &cert, request.from) {
        let reason = refusal.message();
        tracing::warn!(claimed_id = request.from, "blob request refused");
        let _ = rpc::write_frame(&mut send, &BlobReply::Refused(reason)).await;
        let _ = send.finish();
        return;
    }
    let dir = &inner.blobs;
    match request.op {
        BlobOp::Put { id, sha256, size } => {
            let stored = if size > MAX_BLOB_SIZE {
                Err(BlobError::TooLarge { size })
            } else {
                tokio::time::timeout(
                    transfer_deadline(size),
                    dir.write(&id, &sha256, size, &mut recv),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(BlobError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "transfer took too long",
                    )))
                })
            };
            let reply = match stored {
                Ok(()) => BlobReply::Stored,
                Err(e) => {
                    tracing::warn!(from = request.from, id = %id, error = %e, "refused an audio file");
                    if matches!(e, BlobError::DiskFull { .. }) {
                        metrics::counter!("pbx_audio_disk_full_total").increment(1);
                    }
                    let _ = recv.stop(0u32.into());
                    BlobReply::Refused(e.to_string())
                }
            };
            let _ = rpc::write_frame(&mut send, &reply).await;
        }
        BlobOp::Get { id } => match dir.open_file(&id).await {
            Ok((mut file, size)) => {
                if rpc::write_frame(&mut send, &BlobReply::Found { size })
                    .await
                    .is_ok()
                {
                    let _ = tokio::time::timeout(
                        transfer_deadline(size),
                        tokio::io::copy(&mut file, &mut send),
                    )
                    .await;
                }
            }
            Err(BlobError::Missing) => {
                let _ = rpc::write_frame(&mut send, &BlobReply::Missing).await;
            }
            Err(e) => {
                let _ = rpc::write_frame(&mut send, &BlobReply::Refused(e.to_string())).await;
            }
        },
    }
    let _ = send.flush().await;
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(10), send.stopped()).await;
}
