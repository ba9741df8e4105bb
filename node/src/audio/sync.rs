//! Each node's audio directory kept equal to the index: what is listed and missing is fetched, what
//! is here and not yet confirmed is confirmed, what the index no longer lists is dropped.
//!
//! A copy that lands before its index entry is applied here (a save pushes first, then enters the
//! file) must not be mistaken for a deleted one: files the index does not list are only dropped
//! once older than [`ORPHAN_GRACE`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cluster::{Cluster, StoredBlob};
use storage::NodeId;
use storage::audio::AudioFile;

use super::{AudioError, AudioStore, confirm, fetch_from_holders};

/// How often each node looks whether the index changed since its last pass.
const CHECK: Duration = Duration::from_secs(1);
/// A pass that left work (a fetch that failed, a copy not confirmed) is run again this soon.
const RETRY: Duration = Duration::from_secs(5);
/// A pass runs at least this often even when the index did not change (unlisted files age past
/// their grace; the directory may have been touched by hand).
const FULL_PASS: Duration = Duration::from_secs(60);

/// How long an unlisted file is kept: longer than any save takes between its first copy and its
/// index entry.
pub(crate) const ORPHAN_GRACE: Duration = Duration::from_secs(120);

/// What one pass does.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Files held here that the index does not count as held by this node.
    pub(crate) confirm: Vec<String>,
    /// Listed files this node lacks, with a holder to fetch from.
    pub(crate) fetch: Vec<AudioFile>,
    /// Files no longer listed.
    pub(crate) remove: Vec<String>,
}

/// Compares the index with the directory. `members`: the nodes a copy can be fetched from.
pub(crate) fn plan(
    index: Vec<AudioFile>,
    local: &[StoredBlob],
    me: NodeId,
    members: &HashSet<NodeId>,
    now: SystemTime,
) -> Plan {
    let here: HashMap<&str, &StoredBlob> = local.iter().map(|b| (b.id.as_str(), b)).collect();
    let listed: HashSet<String> = index.iter().map(|f| f.id.clone()).collect();
    let mut plan = Plan::default();
    for file in index {
        if here.contains_key(file.id.as_str()) {
            if !file.held_by(me) {
                plan.confirm.push(file.id);
            }
        } else if file.holders.iter().any(|h| *h != me && members.contains(h)) {
            plan.fetch.push(file);
        }
    }
    for blob in local {
        let old = now
            .duration_since(blob.modified)
            .is_ok_and(|age| age >= ORPHAN_GRACE);
        if old && !listed.contains(&blob.id) {
            plan.remove.push(blob.id.clone());
        }
    }
    plan
}

/// Runs passes until the process ends: whenever the index changed, again soon after a pass that
/// left work, and at least every [`FULL_PASS`]. An index that does not change costs nothing but a
/// counter read a second, however many files it lists.
pub(crate) async fn run(store: Arc<AudioStore>) {
    let mut tick = tokio::time::interval(CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = None;
    let mut next_pass = Instant::now();
    loop {
        tick.tick().await;
        let version = store.cluster.reader().audio_version();
        if seen == Some(version) && Instant::now() < next_pass {
            continue;
        }
        seen = Some(version);
        let unfinished = match pass(&store).await {
            Ok(unfinished) => unfinished,
            Err(e) => {
                tracing::warn!(node = store.cluster.node_id(), error = %e, "audio sync pass failed");
                true
            }
        };
        next_pass = Instant::now() + if unfinished { RETRY } else { FULL_PASS };
    }
}

/// One pass; whether it left work for the next.
async fn pass(store: &AudioStore) -> Result<bool, AudioError> {
    let cluster: &Cluster = &store.cluster;
    if !cluster.is_initialized() {
        return Ok(true);
    }
    let me = cluster.node_id();
    let index = cluster
        .reader()
        .list::<AudioFile>()
        .map_err(|e| AudioError::Index(e.to_string()))?;
    let dir = cluster.audio_dir();
    let local = dir.list().map_err(AudioError::Store)?;
    let members: HashSet<NodeId> = cluster.members().into_iter().map(|m| m.0).collect();
    let plan = plan(index, &local, me, &members, SystemTime::now());
    let bytes: u64 = local.iter().map(|b| b.size).sum();
    metrics::gauge!("pbx_audio_local_bytes").set(bytes as f64);
    metrics::gauge!("pbx_audio_local_files").set(local.len() as f64);

    let mut unfinished = false;
    for id in &plan.confirm {
        unfinished |= !confirm(cluster, id).await;
    }
    for file in &plan.fetch {
        match fetch_from_holders(cluster, file).await {
            Ok(()) => {
                metrics::counter!("pbx_audio_caught_up_total").increment(1);
                tracing::info!(node = me, audio = %file.id, size = file.size, "fetched a missing audio file");
                unfinished |= !confirm(cluster, &file.id).await;
            }
            Err(AudioError::DiskFull { reason, .. }) => {
                store.full_event(&reason);
                unfinished = true;
                break;
            }
            Err(e) => {
                unfinished = true;
                tracing::debug!(node = me, audio = %file.id, error = %e, "missing audio file not fetched yet")
            }
        }
    }
    for id in &plan.remove {
        match dir.remove(id) {
            Ok(()) => {
                metrics::counter!("pbx_audio_removed_total").increment(1);
                tracing::info!(node = me, audio = %id, "dropped an audio file the index no longer lists");
            }
            Err(e) => {
                tracing::warn!(node = me, audio = %id, error = %e, "could not drop an audio file")
            }
        }
    }
    Ok(unfinished)
}

#[cfg(test)]
mod tests {
    use storage::audio::AudioKind;

    use super::*;

    fn file(n: u8, holders: &[NodeId]) -> AudioFile {
        AudioFile {
            id: format!("{n:032x}"),
            kind: AudioKind::Recording,
            owner: String::new(),
            name: String::new(),
            call_id: None,
            size: 1,
            sha256: String::new(),
            created_at: 0,
            retain_until: None,
            holders: holders.to_vec(),
        }
    }

    fn blob(n: u8, age: Duration, now: SystemTime) -> StoredBlob {
        StoredBlob {
            id: format!("{n:032x}"),
            size: 1,
            modified: now - age,
        }
    }

    #[test]
    fn a_node_fetches_what_it_lacks_confirms_what_it_has_and_drops_old_unlisted_files() {
        let now = SystemTime::now();
        let members: HashSet<NodeId> = [1, 2, 3].into();
        let index = vec![
            file(1, &[1, 2]), // here and confirmed: nothing to do
            file(2, &[2]),    // here, not confirmed
            file(3, &[2, 3]), // missing: fetch
            file(4, &[9]),    // missing, held only by a node that left: nothing to fetch from
        ];
        let local = [
            blob(1, Duration::ZERO, now),
            blob(2, Duration::ZERO, now),
            blob(5, ORPHAN_GRACE, now), // deleted: drop
            blob(6, ORPHAN_GRACE - Duration::from_secs(1), now), // just pushed: keep
        ];
        let p = plan(index, &local, 1, &members, now);
        assert_eq!(p.confirm, vec![format!("{:032x}", 2)]);
        assert_eq!(
            p.fetch.iter().map(|f| f.id.clone()).collect::<Vec<_>>(),
            vec![format!("{:032x}", 3)]
        );
        assert_eq!(p.remove, vec![format!("{:032x}", 5)]);
    }

    #[test]
    fn a_file_only_this_node_holds_is_not_fetched_from_itself() {
        let now = SystemTime::now();
        let members: HashSet<NodeId> = [1, 2].into();
        let p = plan(vec![file(1, &[1])], &[], 1, &members, now);
        assert_eq!(p, Plan::default());
    }
}
