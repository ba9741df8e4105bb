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

/// At start: calls this node carried before it stopped lost their media with the process. Each is
/// hung up on both phones from its record (so no phone sits in a dead call) and ends with a CDR.
pub(crate) async fn end_orphans(calls: Arc<Calls>) {
    // Until the local replica has caught up, it may not show every record this node wrote.
    let mut delay = Duration::from_millis(200);
    while let Err(e) = calls.cluster.linearizable_barrier().await {
        tracing::debug!(error = %e, "waiting for the cluster before checking orphaned calls");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    let me = calls.cluster.node_id();
    let orphans: Vec<ActiveCall> = match calls.cluster.reader().list::<ActiveCall>() {
        Ok(all) => all.into_iter().filter(|c| c.node_id == me).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "reading call records failed");
            return;
        }
    };
    for call in orphans {
        tracing::warn!(call = %call.id, extension = %call.caller.extension, callee = %call.callee.extension, "ending a call this node lost when it stopped");
        for leg in [&call.caller, &call.callee] {
            let (Some(transport), Ok(addr)) = (
                dialog::transport_from(&leg.transport),
                leg.peer.parse::<std::net::SocketAddr>(),
            ) else {
                continue;
            };
            let Some(local) = calls.local(transport) else {
                continue;
            };
            // Well above any CSeq the lost process may have used since the record was written.
            let cseq = leg.local_cseq.saturating_add(1000);
            if let Some(bye) = dialog::request("BYE", leg, local, transport, cseq, 70, &[], None) {
                let endpoint = calls.endpoint.clone();
                let peer = pbx_sip::transaction::Peer { transport, addr };
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
        let outcome = Outcome::new(Disposition::Answered, HangupSide::Pbx, "node-restart", 200);
        record::count_end(&outcome, true);
        if let Err(e) =
            record::end(&calls.cluster, record::cdr(&facts, &outcome, now_millis())).await
        {
            tracing::warn!(call = %call.id, error = %e, "orphaned call not ended");
        }
    }
}
