//! Housekeeping of the call tables: CDRs past their retention are deleted (by the leader), and calls a
//! node was carrying when it stopped are hung up from their records when it starts again.

use std::sync::Arc;
use std::time::Duration;

use storage::Command;
use storage::model::{ActiveCall, Disposition, HangupSide};

use super::record::{self, CdrFacts, Outcome};
use super::{Calls, dialog};
use crate::time::now_millis;

const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Deletes CDRs older than `retention`, once an hour, on the leader only.
pub(crate) async fn retention(calls: Arc<Calls>, retention: Duration) {
    let mut tick = tokio::time::interval(RETENTION_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let cluster = &calls.cluster;
        if cluster.current_leader() != Some(cluster.node_id()) {
            continue;
        }
        let before = now_millis().saturating_sub(retention.as_millis() as u64);
        match cluster.propose(Command::PruneCdrs { before }).await {
            Ok(_) => tracing::debug!(before, "old CDRs pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning CDRs failed"),
        }
    }
}

/// The call records as of now: waits until the local replica has caught up with the cluster, so
/// that it shows every record written before (`None` when the cluster does not answer in `within`).
async fn records(calls: &Calls, within: Option<Duration>) -> Option<Vec<ActiveCall>> {
    let deadline = within.map(|w| tokio::time::Instant::now() + w);
    let mut delay = Duration::from_millis(50);
    while let Err(e) = calls.cluster.linearizable_barrier().await {
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            tracing::warn!(error = %e, "cluster not ready; using the local copy of the call records");
            break;
        }
        tracing::debug!(error = %e, "waiting for the cluster before reading call records");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    match calls.cluster.reader().list::<ActiveCall>() {
        Ok(all) => Some(all),
        Err(e) => {
            tracing::warn!(error = %e, "reading call records failed");
            None
        }
    }
}

/// At start without a VIP: calls this node carried before it stopped lost their media with the
/// process. Each is hung up on both phones from its record (so no phone sits in a dead call) and ends
/// with a CDR.
pub(crate) async fn end_orphans(calls: Arc<Calls>) {
    let me = calls.cluster.node_id();
    let Some(all) = records(&calls, None).await else {
        return;
    };
    for call in all.into_iter().filter(|c| c.node_id == me) {
        tracing::warn!(call = %call.id, extension = %call.caller.extension, callee = %call.callee.extension, "ending a call this node lost when it stopped");
        hang_up(&calls, &call, "node-restart").await;
    }
}

/// On taking the VIP: every established call in the records is carried on here, whichever node set
/// it up. One that cannot be (its ports are taken, its record is unusable) is hung up on both phones.
/// Returns how many were carried on.
pub(crate) async fn carry_on(calls: &Arc<Calls>, within: Duration) -> usize {
    let Some(all) = records(calls, Some(within)).await else {
        return 0;
    };
    let mut carried = 0;
    for call in all {
        let id = call.id.clone();
        match super::driver::adopt(calls, call.clone()) {
            Ok(()) => carried += 1,
            Err(why) => {
                tracing::warn!(call = %id, why = %why, "call cannot be carried on; hanging it up");
                hang_up(calls, &call, "not-carried-on").await;
            }
        }
    }
    carried
}

/// BYE to both phones in their own dialogs, and the CDR.
async fn hang_up(calls: &Calls, call: &ActiveCall, cause: &str) {
    let me = calls.cluster.node_id();
    for leg in [&call.caller, &call.callee] {
        let Ok(peer) = dialog::peer_of(leg) else {
            continue;
        };
        let transport = peer.transport;
        let Some(local) = calls.local(transport) else {
            continue;
        };
        // Well above any CSeq the lost process may have used since the record was written.
        let cseq = leg.local_cseq.saturating_add(super::core::CSEQ_HEADROOM);
        if let Some(bye) = dialog::request("BYE", leg, local, transport, cseq, 70, &[], None) {
            let endpoint = calls.endpoint.clone();
            tokio::spawn(async move {
                let _ = endpoint.request(bye, peer).await;
            });
        }
    }
    let facts = CdrFacts {
        id: &call.id,
        caller: &call.caller.extension,
        callee: &call.callee.extension,
        started_at: call.started_at,
        answered_at: Some(call.answered_at),
        node_id: me,
    };
    let outcome = Outcome::new(Disposition::Answered, HangupSide::Pbx, cause, 200);
    record::count_end(&outcome, true);
    if let Err(e) = record::end(&calls.cluster, record::cdr(&facts, &outcome, now_millis())).await {
        tracing::warn!(call = %call.id, error = %e, "lost call not ended");
    }
}
