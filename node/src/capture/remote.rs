//! The cluster-wide query: only the VIP owner sees SIP, but after a failover (or a move back) the
//! earlier messages sit in another node's ring. The node answering the API asks every other member
//! over the cluster's RPC ([`cluster::Cluster::app_call`], QUIC with the nodes' certificates) and
//! merges the answers with its own, by time.
//!
//! Each answer is bounded ([`MAX_ANSWER_BYTES`]) and each member has [`ASK_TIMEOUT`] to answer; a
//! member that cannot be asked is named in the result instead of failing the query.

use std::sync::Arc;
use std::time::Duration;

use cluster::{AppHandler, Cluster};
use serde::Serialize;

use super::{Capture, Captured, Query};

/// The application request kind of a capture query.
pub(crate) const KIND: &str = "sip_capture.query";
/// Most bytes of messages one node answers with (the most recent kept).
pub(crate) const MAX_ANSWER_BYTES: usize = 12 * 1024 * 1024;
/// How long a member has to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// How one member answered.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NodeAnswer {
    pub node: u64,
    /// Messages it contributed.
    pub messages: usize,
    /// Why it could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The most recent of `messages` (oldest first) whose bytes stay within `max_bytes`.
pub(crate) fn keep_recent_within(mut messages: Vec<Captured>, max_bytes: usize) -> Vec<Captured> {
    let mut total = 0usize;
    let mut first = messages.len();
    for (i, m) in messages.iter().enumerate().rev() {
        total = total.saturating_add(m.bytes.len());
        if total > max_bytes {
            break;
        }
        first = i;
    }
    messages.drain(..first);
    messages
}

/// What answers other members' capture queries.
pub(crate) fn app_handler(capture: Arc<Capture>) -> AppHandler {
    Arc::new(move |kind: String, body: Vec<u8>| {
        let capture = Arc::clone(&capture);
        Box::pin(async move {
            if kind != KIND {
                return Err(format!("unknown request kind {kind:?}"));
            }
            let q: Query =
                storage::codec::decode_limited(&body, cluster::rpc::MAX_APP_REQUEST as u64)
                    .map_err(|e| format!("capture query: {e}"))?;
            let found = keep_recent_within(capture.query(&q), MAX_ANSWER_BYTES);
            storage::codec::encode(&found).map_err(|e| format!("capture answer: {e}"))
        })
    })
}

/// The messages matching `q` on every member (this node's without asking), oldest first, the most
/// recent `q.limit` of them; and how each member answered.
pub(crate) async fn gather(
    cluster: &Cluster,
    capture: &Capture,
    q: &Query,
) -> (Vec<Captured>, Vec<NodeAnswer>) {
    let me = cluster.node_id();
    let mut all = keep_recent_within(capture.query(q), MAX_ANSWER_BYTES);
    let mut answers = vec![NodeAnswer {
        node: me,
        messages: all.len(),
        error: None,
    }];
    let body = match storage::codec::encode(q) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "capture query not encoded");
            return (all, answers);
        }
    };
    let others: Vec<u64> = cluster
        .members()
        .into_iter()
        .map(|(id, _, _)| id)
        .filter(|id| *id != me)
        .collect();
    let asks = others.iter().map(|&node| {
        let body = body.clone();
        async move {
            let answer = cluster.app_call(node, KIND, body, ASK_TIMEOUT).await;
            let decoded = answer.map_err(|e| e.to_string()).and_then(|bytes| {
                storage::codec::decode_limited::<Vec<Captured>>(
                    &bytes,
                    cluster::rpc::MAX_APP_RESPONSE as u64,
                )
                .map_err(|e| e.to_string())
            });
            (node, decoded)
        }
    });
    for (node, answer) in futures::future::join_all(asks).await {
        match answer {
            Ok(found) => {
                answers.push(NodeAnswer {
                    node,
                    messages: found.len(),
                    error: None,
                });
                all.extend(found);
            }
            Err(error) => {
                tracing::info!(node, %error, "capture query not answered");
                answers.push(NodeAnswer {
                    node,
                    messages: 0,
                    error: Some(error),
                });
            }
        }
    }
    all.sort_by_key(|m| (m.at_us, m.node));
    let limit = q.limit.clamp(1, super::MAX_LIMIT);
    if all.len() > limit {
        all.drain(..all.len() - limit);
    }
    (all, answers)
}
