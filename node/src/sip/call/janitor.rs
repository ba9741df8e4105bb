//! Housekeeping of the call tables: CDRs past their retention are deleted (by the leader), CDRs
//! stored before the index of CDRs by extension existed are indexed (by the leader, once), and calls a
//! node was carrying when it stopped are hung up from their records when it starts again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::Cluster;
use storage::model::{ActiveCall, CdrIndexProgress, Disposition, HangupSide};
use storage::{Command, Response};

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

/// CDRs per `IndexCdrs` entry while backfilling the index of CDRs by extension: about a megabyte
/// of CDRs read and 10,000 small writes in one apply.
const INDEX_BATCH: u32 = 5_000;
/// How often a node looks again whether the index still needs its backfill (until it is complete).
const INDEX_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Indexes the CDRs a cluster stored before the index of CDRs by extension existed, so that the CDR
/// API can answer extension filters from it: while the index is incomplete and this node leads, it
/// proposes `IndexCdrs` batches, each starting where the last stopped. Runs on every node, whether
/// or not it carries calls (the leader may change mid-way), and ends once the index is complete — at
/// once on a cluster created with the index, whose `InitCluster` marks it complete.
pub(crate) async fn index_cdrs(cluster: Cluster) {
    loop {
        match backfill(&cluster).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "indexing CDRs by extension failed; will retry"),
        }
        tokio::time::sleep(INDEX_CHECK_EVERY).await;
    }
}

/// One attempt: `Ok(true)` once the index is complete, `Ok(false)` to look again later (this node
/// does not lead, or another proposer moved the progress on).
async fn backfill(cluster: &Cluster) -> anyhow::Result<bool> {
    let progress = || -> anyhow::Result<CdrIndexProgress> {
        let found = cluster
            .reader()
            .get::<CdrIndexProgress>(CdrIndexProgress::KEY)?;
        Ok(found.unwrap_or_default())
    };
    let leads = || cluster.current_leader() == Some(cluster.node_id());
    if progress()?.complete {
        return Ok(true);
    }
    if !leads() {
        return Ok(false);
    }
    // The local replica shows every batch committed so far (a new leader may trail its own log).
    cluster.linearizable_barrier().await?;
    let started = Instant::now();
    let mut batches = 0_u32;
    loop {
        let at = progress()?;
        if at.complete {
            if batches > 0 {
                tracing::info!(
                    batches,
                    secs = started.elapsed().as_secs_f64(),
                    "CDRs indexed by extension"
                );
            }
            return Ok(true);
        }
        if !leads() {
            return Ok(false);
        }
        if batches == 0 {
            tracing::info!(after = ?at.indexed_through, "indexing CDRs by extension");
        }
        // Applied on this node before the answer comes back: the next read sees its progress.
        let cmd = Command::IndexCdrs {
            after: at.indexed_through,
            limit: INDEX_BATCH,
        };
        match cluster.propose(cmd).await? {
            Response::Ok => batches += 1,
            other => {
                tracing::debug!(response = ?other, "CDR index batch not applied");
                return Ok(false);
            }
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
    let mut members = Vec::new();
    for mut call in all {
        let id = call.id.clone();
        if crate::apps::is_app_leg(&call.callee) {
            match adopt_app_leg(calls, &mut call).await {
                Ok(member) => members.extend(member),
                Err(why) => {
                    tracing::warn!(call = %id, to = %call.callee.extension, why = %why, "caller was with an application of the lost node that cannot go on here; hanging up");
                    hang_up(calls, &call, "application-lost-in-failover").await;
                    continue;
                }
            }
        }
        match super::driver::adopt(calls, call.clone()) {
            Ok(()) => carried += 1,
            Err(why) => {
                tracing::warn!(call = %id, why = %why, "call cannot be carried on; hanging it up");
                hang_up(calls, &call, "not-carried-on").await;
            }
        }
    }
    calls.apps.forget_lost(members).await;
    carried
}

/// Gives a call's application leg to this node's agent, and rewrites the leg in the record to
/// point at it: its contact, its address, its new media. A conference member's record key.
async fn adopt_app_leg(calls: &Calls, call: &mut ActiveCall) -> Result<Option<String>, String> {
    use pbx_sip::transaction::Transport;
    let engine = calls
        .local(Transport::Udp)
        .ok_or("no UDP signalling here")?;
    let media_ip: std::net::IpAddr = call
        .media_addr
        .parse()
        .map_err(|_| format!("media address {:?}", call.media_addr))?;
    let stream = call.streams.first_mut().ok_or("no media stream")?;
    let media_to = std::net::SocketAddr::new(media_ip, stream.callee_port);
    let leg = calls.apps.adopt(&call.callee, media_to, engine).await?;
    // The agent's media comes from its new socket: latched afresh.
    stream.callee_latched = None;
    call.callee.remote_target = leg.contact;
    call.callee.peer = leg.addr.to_string();
    call.callee.transport = "udp".to_owned();
    call.callee.remote_sdp = leg.sdp;
    tracing::info!(call = %call.id, to = %call.callee.extension, service = %call.callee.remote_target, "application call carried on by this node's agent");
    Ok(leg.participant)
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

#[cfg(test)]
mod tests {
    use cluster::{ClusterConfig, NodeTlsFiles, generate_ca, issue_node_cert};
    use storage::Record as _;
    use storage::model::{CallDetail, CdrIndexEntry, NodeAddr};

    use super::*;

    async fn one_node(dir: &std::path::Path) -> Cluster {
        let ca = generate_ca("test").unwrap();
        let cert = issue_node_cert(&ca, 1, &[]).unwrap();
        let advertise = NodeAddr {
            raft_addr: "127.0.0.1:1".into(),
            api_addr: "127.0.0.1:1".into(),
        };
        let tls = NodeTlsFiles::new(&ca.cert_pem, &cert);
        let cfg = ClusterConfig::new(1, "127.0.0.1:0".parse().unwrap(), advertise, tls);
        let node = Cluster::start(cfg, dir).await.unwrap();
        node.initialize().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.current_leader() != Some(1) {
            assert!(Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        node
    }

    fn cdr(i: u64) -> CallDetail {
        let now = 1_795_860_000_000;
        CallDetail {
            id: format!("c{i}"),
            caller: format!("{}", 1000 + i % 7),
            callee: "2000".into(),
            started_at: now + i,
            answered_at: None,
            ended_at: now + i + 1,
            duration_secs: 0,
            disposition: Disposition::Busy,
            hangup_side: HangupSide::Callee,
            cause: "486".into(),
            sip_status: 486,
            node_id: 1,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_leader_backfills_the_index_of_a_cluster_without_its_progress() {
        let dir = tempfile::tempdir().unwrap();
        let node = one_node(dir.path()).await;
        // No `InitCluster`, so no progress record: what a cluster created before the index looks like.
        let n = u64::from(INDEX_BATCH) * 2 + 345;
        let ended: Vec<Command> = (0..n)
            .map(|i| Command::EndCall {
                call_id: format!("c{i}"),
                cdr: Box::new(cdr(i)),
            })
            .collect();
        for batch in ended.chunks(1000) {
            node.propose(Command::Batch(batch.to_vec())).await.unwrap();
        }
        let reader = node.reader();
        assert!(
            reader
                .get::<CdrIndexProgress>(CdrIndexProgress::KEY)
                .unwrap()
                .is_none()
        );
        assert!(backfill(&node).await.unwrap(), "done in one attempt");
        let progress = reader
            .get::<CdrIndexProgress>(CdrIndexProgress::KEY)
            .unwrap()
            .unwrap();
        assert!(progress.complete);
        assert_eq!(progress.indexed_through, Some(cdr(n - 1).key()));
        assert_eq!(reader.count::<CdrIndexEntry>().unwrap(), 2 * n);
        // Complete: the task ends at once.
        tokio::time::timeout(Duration::from_secs(5), index_cdrs(node.clone()))
            .await
            .unwrap();
        node.shutdown().await.unwrap();
    }
}
