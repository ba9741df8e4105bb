//! What a call leaves in the replicated state: its dialog record while it is up, and its CDR at the end.

use cluster::Cluster;
use storage::model::{ActiveCall, CallDetail, Disposition, HangupSide, UnixMillis};
use storage::{Command, Response};

/// How a call ended.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) disposition: Disposition,
    pub(crate) side: HangupSide,
    pub(crate) cause: String,
    pub(crate) sip_status: u16,
}

impl Outcome {
    pub(crate) fn new(
        disposition: Disposition,
        side: HangupSide,
        cause: impl Into<String>,
        sip_status: u16,
    ) -> Self {
        Self {
            disposition,
            side,
            cause: cause.into(),
            sip_status,
        }
    }
}

/// The parts of a CDR known before the end.
pub(crate) struct CdrFacts<'a> {
    pub(crate) id: &'a str,
    pub(crate) caller: &'a str,
    pub(crate) callee: &'a str,
    pub(crate) started_at: UnixMillis,
    pub(crate) answered_at: Option<UnixMillis>,
    pub(crate) node_id: u64,
}

pub(crate) fn cdr(facts: &CdrFacts<'_>, outcome: &Outcome, ended_at: UnixMillis) -> CallDetail {
    CallDetail {
        id: facts.id.to_owned(),
        caller: facts.caller.to_owned(),
        callee: facts.callee.to_owned(),
        started_at: facts.started_at,
        answered_at: facts.answered_at,
        ended_at,
        duration_secs: facts
            .answered_at
            .map_or(0, |a| ended_at.saturating_sub(a) / 1000),
        disposition: outcome.disposition,
        hangup_side: outcome.side,
        cause: outcome.cause.clone(),
        sip_status: outcome.sip_status,
        node_id: facts.node_id,
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("cluster: {0}")]
    Cluster(#[from] cluster::ClusterError),
    #[error("refused: {0:?}")]
    Refused(Response),
}

async fn propose(cluster: &Cluster, cmd: Command) -> Result<(), RecordError> {
    match cluster.propose(cmd).await? {
        Response::Ok => Ok(()),
        other => Err(RecordError::Refused(other)),
    }
}

/// Commits the dialog record (the call is up, or changed).
pub(crate) async fn put(cluster: &Cluster, call: ActiveCall) -> Result<(), RecordError> {
    propose(cluster, Command::PutCall(Box::new(call))).await
}

/// Removes the dialog record and stores the CDR, in one entry.
pub(crate) async fn end(cluster: &Cluster, cdr: CallDetail) -> Result<(), RecordError> {
    end_with(cluster, cdr, None).await
}

/// Stores the CDR (ending the call), with the call's route beside it when that is not stored yet.
pub(crate) async fn end_with(
    cluster: &Cluster,
    cdr: CallDetail,
    route: Option<storage::routing::CallRoute>,
) -> Result<(), RecordError> {
    let call_id = cdr.id.clone();
    let end = Command::EndCall {
        call_id,
        cdr: Box::new(cdr),
    };
    match route {
        None => propose(cluster, end).await,
        Some(route) => {
            let batch = Command::Batch(vec![end, Command::PutCallRoute(route)]);
            match cluster.propose(batch).await {
                Ok(_) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Call counters for Prometheus.
pub(crate) fn count_end(outcome: &Outcome, answered: bool) {
    metrics::counter!("pbx_calls_ended_total", "disposition" => outcome.disposition.as_str())
        .increment(1);
    if !answered {
        metrics::counter!("pbx_call_failures_total", "cause" => failure_label(&outcome.cause))
            .increment(1);
    }
}

/// A bounded label set: numeric SIP causes and the PBX's own names only.
fn failure_label(cause: &str) -> String {
    if cause.len() <= 24
        && cause
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        cause.to_owned()
    } else {
        "other".to_owned()
    }
}
