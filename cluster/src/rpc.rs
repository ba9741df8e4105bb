//! The Raft RPC wire protocol.
//!
//! One bidirectional QUIC stream per call. Each direction carries exactly one frame:
//! `u32` big-endian length, then that many bytes of `storage::codec` (version byte + bincode). The
//! length is checked against [`MAX_FRAME_LEN`] before anything is allocated. A stream whose frame is
//! empty, truncated, oversized or undecodable ends the connection with [`ERR_BAD_FRAME`].

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use storage::codec::{self, CodecError};
use storage::{Command, NodeAddr, NodeId, Response, TypeConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{ClusterError, ClusterStatus};

/// Largest frame accepted or sent (append-entries batches and snapshot chunks stay far below it).
pub const MAX_FRAME_LEN: u32 = 64 * 1024 * 1024;

/// QUIC application error code: the peer sent a frame we cannot read.
pub const ERR_BAD_FRAME: u32 = 0x10;
/// QUIC application error code: the request did not arrive in time.
pub const ERR_REQUEST_TIMEOUT: u32 = 0x11;
/// QUIC application error code: the node is shutting down.
pub const ERR_SHUTDOWN: u32 = 0x12;

/// One call: who is asking (checked against the caller's certificate) and what.
#[derive(Debug, Serialize, Deserialize)]
pub struct RpcRequest {
    pub from: NodeId,
    pub body: RpcBody,
}

/// What is asked. Raft messages go straight to openraft; the others are operations a follower forwards
/// to the leader.
#[derive(Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RpcBody {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Propose a command on the leader; answered once it is committed and applied there.
    ClientWrite(Command),
    AddMember {
        id: NodeId,
        addr: NodeAddr,
    },
    RemoveMember {
        id: NodeId,
    },
    /// Ask the leader for a read index: the leader confirms its leadership with a quorum and answers the
    /// log index the asker must have applied before serving a linearizable read.
    ReadIndex,
    /// The leader's view of the cluster.
    Status,
    /// A voter's log length and leader silence, for fast succession.
    LogState,
    /// An application request (appended: earlier variants encode as before), answered by the
    /// handler the node registered ([`crate::Cluster::set_app_handler`]). `body` is at most
    /// [`MAX_APP_REQUEST`] bytes.
    App {
        kind: String,
        body: Vec<u8>,
    },
}

/// Largest application request body.
pub const MAX_APP_REQUEST: usize = 64 * 1024;
/// Largest application answer body.
pub const MAX_APP_RESPONSE: usize = 16 * 1024 * 1024;

impl RpcBody {
    /// Short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AppendEntries(_) => "append_entries",
            Self::Vote(_) => "vote",
            Self::InstallSnapshot(_) => "install_snapshot",
            Self::ClientWrite(_) => "client_write",
            Self::AddMember { .. } => "add_member",
            Self::RemoveMember { .. } => "remove_member",
            Self::ReadIndex => "read_index",
            Self::Status => "status",
            Self::LogState => "log_state",
            Self::App { .. } => "app",
        }
    }
}

/// The answer to an [`RpcBody`] of the same name, or `Refused` when the caller failed the identity or
/// membership check.
#[derive(Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RpcResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    ClientWrite(Result<Response, ClusterError>),
    AddMember(Result<(), ClusterError>),
    RemoveMember(Result<(), ClusterError>),
    ReadIndex(Result<u64, ClusterError>),
    Status(Result<ClusterStatus, ClusterError>),
    LogState(crate::succession::LogState),
    Refused(String),
    /// The application handler's answer, or why there is none. (Appended.)
    App(Result<Vec<u8>, String>),
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("stream i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    TooLarge(u64),
    #[error("empty frame")]
    Empty,
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
}

/// Encodes `value` as one frame (length prefix included).
pub fn encode_frame<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let body = codec::encode(value)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&len| len <= MAX_FRAME_LEN)
        .ok_or(FrameError::TooLarge(body.len() as u64))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Writes one frame holding `value`.
pub async fn write_frame<W, T>(writer: &mut W, value: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let frame = encode_frame(value)?;
    writer.write_all(&frame).await?;
    Ok(())
}

/// Reads one frame and decodes it. The length is checked before the buffer is allocated.
pub async fn read_frame<R, T>(reader: &mut R) -> Result<T, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0u8; 4];
    reader.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(u64::from(len)));
    }
    let mut body = vec![0u8; len as usize];
    reader.read_exact(&mut body).await?;
    Ok(codec::decode_limited(&body, u64::from(MAX_FRAME_LEN))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RpcRequest {
        RpcRequest {
            from: 3,
            body: RpcBody::RemoveMember { id: 2 },
        }
    }

    #[tokio::test]
    async fn a_frame_round_trips() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_frame(&mut a, &sample()).await.unwrap();
        let got: RpcRequest = read_frame(&mut b).await.unwrap();
        assert_eq!(got.from, 3);
        assert!(matches!(got.body, RpcBody::RemoveMember { id: 2 }));
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_allocating() {
        let bytes = u32::MAX.to_be_bytes();
        let err = read_frame::<_, RpcRequest>(&mut &bytes[..])
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(_)), "{err}");
    }

    #[tokio::test]
    async fn truncated_empty_and_garbage_frames_are_errors() {
        let frame = encode_frame(&sample()).unwrap();
        let truncated = &frame[..frame.len() - 1];
        assert!(matches!(
            read_frame::<_, RpcRequest>(&mut &truncated[..]).await,
            Err(FrameError::Io(_))
        ));
        assert!(matches!(
            read_frame::<_, RpcRequest>(&mut &frame[..2]).await,
            Err(FrameError::Io(_))
        ));
        let empty = 0u32.to_be_bytes();
        assert!(matches!(
            read_frame::<_, RpcRequest>(&mut &empty[..]).await,
            Err(FrameError::Empty)
        ));
        let mut garbage = 16u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(&[
            codec::FORMAT_VERSION,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
        ]);
        garbage.extend_from_slice(&[0xff; 8]);
        assert!(matches!(
            read_frame::<_, RpcRequest>(&mut &garbage[..]).await,
            Err(FrameError::Codec(_))
        ));
    }
}
