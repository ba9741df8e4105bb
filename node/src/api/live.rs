//! `/api/v1/live`: the PBX monitor as a stream of server-sent events, one snapshot a second from the
//! node the browser is connected to (any node: every figure comes from the replicated state or from
//! Raft's own view).
//!
//! The cluster-wide part of a snapshot (members, calls, counts, trunks) is computed at most once per
//! [`SHARED_FOR`] and shared by every open stream on the node; each stream adds its own window of
//! extension states (search and paging), so ten admins watching cost about one.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};

use storage::model::{ActiveCall, Binding, Extension, UnixMillis, VipConfig};
use storage::routing::TrunkStatus;

use super::AppState;
use super::access::Principal;
use super::calls::CallView;
use super::error::ApiError;
use super::paging::ListQuery;
use crate::time::now_millis;

/// How often a stream sends a snapshot.
const EVERY: Duration = Duration::from_secs(1);
/// How long the shared part of a snapshot is reused.
const SHARED_FOR: Duration = Duration::from_millis(900);
/// Extension states per window, at most.
const MAX_WINDOW: usize = 200;
/// Extensions a name search visits per snapshot, at most.
const SEARCH_VISITS: usize = 20_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LiveQuery {
    /// A number prefix (digits) or a part of a display name.
    #[serde(default)]
    pub q: Option<String>,
    /// Show extensions after this number.
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub limit: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct VipOwner {
    pub address: String,
    pub owner: Option<u64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct ExtensionCounts {
    pub total: u64,
    pub registered: u64,
    pub in_call: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TrunkView {
    pub name: String,
    pub state: storage::routing::TrunkState,
    pub detail: String,
}

/// What every stream of the node shares.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Shared {
    pub at: UnixMillis,
    pub node_id: u64,
    pub version: &'static str,
    pub cluster: cluster::ClusterStatus,
    pub vip: Option<VipOwner>,
    pub calls: Vec<CallView>,
    pub extensions: ExtensionCounts,
    pub trunks: Vec<TrunkView>,
    /// The version each node last started with (`node.{id}.version` settings), by node id.
    pub versions: std::collections::BTreeMap<u64, String>,
    #[serde(skip)]
    registered: Arc<HashSet<String>>,
    #[serde(skip)]
    busy: Arc<HashSet<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ExtState {
    Idle,
    InCall,
    /// Not registered.
    Unavailable,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct StateView {
    pub extension: String,
    pub display_name: String,
    pub state: ExtState,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Snapshot {
    #[serde(flatten)]
    pub shared: Shared,
    pub states: Vec<StateView>,
    /// Pass as `after` for the next window; absent at the end.
    pub next: Option<String>,
}

/// The node holding the VIP: the lease follows Raft leadership, so it is this node when its fence
/// holds, else the leader (which takes it within a lease period).
pub(crate) fn vip_owner(state: &AppState) -> Option<u64> {
    if state.vip.as_ref().is_some_and(crate::vip::Fence::holds) {
        return Some(state.cluster.node_id());
    }
    state.cluster.confirmed_leader()
}

type Cache = Mutex<Option<(Instant, Arc<Shared>)>>;

fn cache() -> &'static Cache {
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(None))
}

async fn shared(state: &AppState) -> Result<Arc<Shared>, ApiError> {
    if let Some((at, s)) = cache()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        && at.elapsed() < SHARED_FOR
    {
        return Ok(Arc::clone(s));
    }
    let cluster = state.cluster.status().await;
    let reader = state.cluster.reader().clone();
    let vip_addr = reader.get::<VipConfig>(VipConfig::KEY)?.map(|v| v.address);
    let owner = vip_owner(state);
    let node_id = state.cluster.node_id();
    let s = tokio::task::spawn_blocking(move || -> Result<Shared, ApiError> {
        let now = now_millis();
        let mut calls = reader.list::<ActiveCall>()?;
        calls.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        let busy: HashSet<String> = calls
            .iter()
            .flat_map(|c| [c.caller.extension.clone(), c.callee.extension.clone()])
            .collect();
        let registered: HashSet<String> = reader
            .list::<Binding>()?
            .into_iter()
            .filter(|b| b.expires_at > now)
            .map(|b| b.aor)
            .collect();
        let total = reader.count::<Extension>()?;
        let trunks = reader
            .list::<TrunkStatus>()?
            .into_iter()
            .map(|t| TrunkView {
                name: t.name,
                state: t.state,
                detail: t.detail,
            })
            .collect();
        let versions = node_versions(&reader)?;
        Ok(Shared {
            versions,
            at: now,
            node_id,
            version: env!("CARGO_PKG_VERSION"),
            cluster,
            vip: vip_addr.map(|address| VipOwner { address, owner }),
            extensions: ExtensionCounts {
                total,
                registered: registered.len() as u64,
                in_call: busy.len() as u64,
            },
            calls: calls.into_iter().map(|c| CallView::new(c, now)).collect(),
            trunks,
            registered: Arc::new(registered),
            busy: Arc::new(busy),
        })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let s = Arc::new(s);
    *cache()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) =
        Some((Instant::now(), Arc::clone(&s)));
    Ok(s)
}

/// The setting under which node `id` records the version it runs.
pub(crate) fn version_key(id: u64) -> String {
    format!("node.{id}.version")
}

/// Every node's recorded version and the cluster protocol it speaks (`0.1.0 (protocol 2)`), by
/// node id; a node that recorded no protocol predates versioning and speaks protocol 1.
pub(crate) fn node_versions(
    reader: &storage::StateReader,
) -> Result<std::collections::BTreeMap<u64, String>, ApiError> {
    let settings = reader.scan_prefix::<storage::model::Setting>("node.")?;
    let wire = |id: u64| {
        let key = ::cluster::version::wire_key(id);
        settings
            .iter()
            .find(|s| s.key == key)
            .map_or("1", |s| s.value.as_str())
            .to_owned()
    };
    Ok(settings
        .iter()
        .filter_map(|s| {
            let id: u64 = s
                .key
                .strip_prefix("node.")?
                .strip_suffix(".version")?
                .parse()
                .ok()?;
            Some((id, format!("{} (protocol {})", s.value, wire(id))))
        })
        .collect())
}

/// On the leader, every 10 s: members running different versions or protocols (a rolling upgrade
/// under way, or one left half done) raise a `versions_mixed` event, once per distinct mix.
pub(crate) async fn watch_versions(
    cluster: ::cluster::Cluster,
    events: Arc<crate::events::Events>,
) {
    let mut reported: Option<String> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        if cluster.current_leader() != Some(cluster.node_id()) {
            continue;
        }
        let Ok(versions) = node_versions(cluster.reader()) else {
            continue;
        };
        let members: Vec<u64> = cluster.members().into_iter().map(|(id, _, _)| id).collect();
        let mix: Vec<String> = versions
            .iter()
            .filter(|(id, _)| members.contains(id))
            .map(|(id, v)| format!("node {id}: {v}"))
            .collect();
        let distinct: std::collections::BTreeSet<&str> = versions
            .iter()
            .filter(|(id, _)| members.contains(id))
            .map(|(_, v)| v.as_str())
            .collect();
        if distinct.len() < 2 {
            reported = None;
            continue;
        }
        let text = mix.join(", ");
        if reported.as_deref() != Some(text.as_str()) {
            events.raise(
                "versions_mixed",
                storage::model::Severity::Warning,
                None,
                format!("the cluster's nodes run different versions ({text}); finish the upgrade"),
            );
            reported = Some(text);
        }
    }
}

/// Records this node's version and the cluster protocol it speaks in the replicated settings (when
/// they differ), so every node's monitor shows what each member runs and the leader knows what a
/// member that is down can read; retried until the cluster takes them.
pub(crate) async fn record_version(cluster: ::cluster::Cluster) {
    let id = cluster.node_id();
    let wire = cluster.wire_version().to_string();
    record_setting(&cluster, ::cluster::version::wire_key(id), &wire).await;
    record_setting(&cluster, version_key(id), env!("CARGO_PKG_VERSION")).await;
}

async fn record_setting(cluster: &::cluster::Cluster, key: String, version: &str) {
    let mut delay = Duration::from_secs(1);
    loop {
        let current = cluster
            .reader()
            .get::<storage::model::Setting>(&key)
            .ok()
            .flatten();
        if current.is_some_and(|s| s.value == version)
            && cluster.linearizable_barrier().await.is_ok()
        {
            return;
        }
        let cmd = storage::Command::PutSetting(storage::model::Setting {
            key: key.clone(),
            value: version.to_owned(),
            updated_at: now_millis(),
        });
        match cluster.propose(cmd).await {
            Ok(_) => return,
            Err(e) => tracing::debug!(error = %e, "recording this node's version; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// A checked window request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Window {
    q: Option<String>,
    after: Option<String>,
    limit: usize,
}

impl Window {
    pub(crate) fn parse(q: LiveQuery) -> Result<Self, ApiError> {
        let limit = match q.limit.as_deref() {
            None | Some("") => 100,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_WINDOW).contains(n))
                .ok_or_else(|| ApiError::invalid("limit", format!("must be 1 to {MAX_WINDOW}")))?,
        };
        let q_text =
            q.q.filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().to_owned());
        if q_text
            .as_ref()
            .is_some_and(|s| s.chars().count() > 64 || s.chars().any(char::is_control))
        {
            return Err(ApiError::invalid("q", "must be at most 64 characters"));
        }
        let after = q.after.filter(|a| !a.is_empty());
        if after
            .as_ref()
            .is_some_and(|a| a.len() > 15 || !a.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ApiError::invalid("after", "must be an extension number"));
        }
        Ok(Self {
            q: q_text,
            after,
            limit,
        })
    }
}

/// The window's extensions and the cursor after them.
fn window(
    reader: &storage::StateReader,
    w: &Window,
) -> Result<(Vec<Extension>, Option<String>), ApiError> {
    let start = w
        .after
        .as_ref()
        .map_or_else(String::new, |a| format!("{a}\u{0}"));
    let (mut found, _) = match w.q.as_deref() {
        Some(q) if q.bytes().all(|b| b.is_ascii_digit()) => {
            // A number prefix: the range of keys that start with it.
            let from = start.as_str().max(q).to_owned();
            let to = format!("{q}\u{7f}");
            reader.scan_range::<Extension>(&from, &to, w.limit + 1, |_| true)?
        }
        Some(q) => {
            let needle = q.to_lowercase();
            let mut kept = 0;
            reader.scan_range::<Extension>(&start, "\u{7f}", SEARCH_VISITS, |e| {
                let hit = kept <= w.limit && e.display_name.to_lowercase().contains(&needle);
                kept += usize::from(hit);
                hit
            })?
        }
        None => (
            reader.list_page::<Extension>(w.after.as_deref(), w.limit + 1)?,
            None,
        ),
    };
    let next = if found.len() > w.limit {
        found.truncate(w.limit);
        found.last().map(|e| e.number.clone())
    } else {
        None
    };
    Ok((found, next))
}

/// One snapshot: the shared part and this window's extension states.
pub(crate) async fn snapshot(state: &AppState, w: &Window) -> Result<Snapshot, ApiError> {
    let shared = shared(state).await?;
    let reader = state.cluster.reader().clone();
    let w = w.clone();
    let (exts, next) = tokio::task::spawn_blocking(move || window(&reader, &w))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let states = exts
        .into_iter()
        .map(|e| StateView {
            state: if shared.busy.contains(&e.number) {
                ExtState::InCall
            } else if shared.registered.contains(&e.number) {
                ExtState::Idle
            } else {
                ExtState::Unavailable
            },
            extension: e.number,
            display_name: e.display_name,
        })
        .collect();
    Ok(Snapshot {
        shared: (*shared).clone(),
        states,
        next,
    })
}

/// `GET /api/v1/live?q=&after=&limit=`: `event: monitor` with a [`Snapshot`] every second.
pub(crate) async fn stream(
    State(state): State<AppState>,
    who: Principal,
    ListQuery(q): ListQuery<LiveQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    who.require(who.grants.monitor)?;
    let w = Window::parse(q)?;
    let session = who.session.map(|s| s.id);
    let stream = futures::stream::unfold(
        (state, w, session, true),
        |(state, w, session, first)| async move {
            if !first {
                tokio::time::sleep(EVERY).await;
            }
            // A session signed out (anywhere) or expired stops its streams.
            if let Some(id) = &session
                && state
                    .cluster
                    .reader()
                    .get::<storage::web::WebSession>(id)
                    .ok()
                    .flatten()
                    .is_none_or(|s| s.expires_at <= now_millis())
            {
                return None;
            }
            let event = match snapshot(&state, &w).await {
                Ok(s) => Event::default()
                    .event("monitor")
                    .json_data(&s)
                    .unwrap_or_else(|_| Event::default().event("error").data("encoding")),
                Err(e) => Event::default().event("error").data(e.to_string()),
            };
            Some((Ok(event), (state, w, session, false)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
