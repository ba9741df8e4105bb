//! Removes bindings whose time has passed, cluster-wide, and counts the live ones for a gauge (the
//! leader every 2 s as it sweeps, other nodes every 30 s). Only the Raft leader sweeps, so one node
//! proposes each removal; `BindingOp::Expire` re-checks at apply time, so a refresh that races the sweep
//! wins.

use std::time::Duration;

use cluster::Cluster;
use storage::BindingOp;
use storage::model::Binding;

use super::writer::BindingWriter;
use crate::time::now_millis;

const SWEEP_EVERY: Duration = Duration::from_secs(2);
const MAX_PER_SWEEP: usize = 4096;
/// How often a node that does not sweep counts the bindings for `pbx_registrations_active`. The
/// count visits and decodes every binding (100,000 phones: 50,000 decodes a second at the sweep's
/// pace), which a follower would spend only to refresh a gauge.
const COUNT_EVERY: Duration = Duration::from_secs(30);

pub(crate) async fn run(cluster: Cluster, writer: BindingWriter) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_count: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        let now = now_millis();
        let sweeping = cluster.current_leader() == Some(cluster.node_id());
        if !sweeping && last_count.is_some_and(|at| at.elapsed() < COUNT_EVERY) {
            continue;
        }
        last_count = Some(tokio::time::Instant::now());
        // One binding decoded at a time: with 100,000 phones, collecting them all every 2 s cost
        // ~50 MB of heap on every node, which the allocator kept.
        let mut live = 0usize;
        let mut expired: Vec<BindingOp> = Vec::new();
        let visited = cluster.reader().visit::<Binding>(|b| {
            if b.expires_at > now {
                live += 1;
            } else if sweeping && expired.len() < MAX_PER_SWEEP {
                expired.push(BindingOp::Expire {
                    aor: b.aor,
                    contact: b.contact,
                    now,
                });
            }
        });
        if let Err(e) = visited {
            tracing::warn!(error = %e, "reading bindings for the expiry sweep failed");
            continue;
        }
        metrics::gauge!("pbx_registrations_active").set(live as f64);
        if expired.is_empty() {
            continue;
        }
        let n = expired.len();
        match writer.commit(expired).await {
            Ok(()) => {
                metrics::counter!("pbx_registrations_expired_total").increment(n as u64);
                tracing::debug!(count = n, "expired bindings removed");
            }
            Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
        }
    }
}
