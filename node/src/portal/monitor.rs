//! `/`, the PBX monitor (cluster, VIP, extension states, trunks, calls in progress), kept current
//! by `portal.js` from the API's event stream `/api/v1/live`; and `/cluster`, the members.
//!
//! The first view is rendered here from the data the stream sends ([`Monitor`] is the stream's
//! message), so the page is complete before the stream connects.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use cluster::ClusterStatus;
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use storage::NodeId;
use storage::model::{MemberRecord, Setting};

use super::layout::{self, Nav, badge, duration, empty_row, field, form_error, when};
use super::{Ctx, Params, Problem, given, query, see_other};
use crate::api::{AppState, LiveQuery, LiveWindow, Principal};

/// Extension states per page (what the live stream is asked for too).
pub(super) const STATES_PAGE: usize = 100;

/// One message of the live stream (`event: monitor`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Monitor {
    pub at: u64,
    pub node_id: NodeId,
    pub version: String,
    pub cluster: ClusterStatus,
    pub vip: Option<Vip>,
    pub calls: Vec<Call>,
    pub extensions: Counts,
    pub states: Vec<ExtensionState>,
    pub next: Option<String>,
    pub trunks: Vec<TrunkState>,
    #[serde(default)]
    pub versions: std::collections::BTreeMap<NodeId, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Vip {
    pub address: String,
    pub owner: Option<NodeId>,
}

/// A call in progress as `GET /api/v1/calls` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Call {
    pub id: String,
    pub caller: String,
    pub callee: String,
    pub node_id: NodeId,
    pub started_at: u64,
    pub answered_at: u64,
    pub duration_secs: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Counts {
    pub total: u64,
    pub registered: u64,
    pub in_call: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ExtensionState {
    pub extension: String,
    pub display_name: String,
    /// `idle`, `in_call` or `unavailable` (not registered).
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TrunkState {
    pub name: String,
    pub state: String,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct MonitorQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    after: Option<String>,
    /// `later`: show the dashboard though the setup wizard is not finished.
    #[serde(default)]
    setup: Option<String>,
}

/// Whether an admin finished the setup wizard.
pub(super) fn setup_done(reader: &storage::StateReader) -> bool {
    reader
        .get::<Setting>("system.setup_done")
        .ok()
        .flatten()
        .is_some_and(|s| s.value == "true")
}

/// `/`: the monitor for accounts with the monitor grant; others go to `/me`, and an admin to the
/// setup wizard until it is finished.
pub(super) async fn dashboard(
    State(state): State<AppState>,
    ctx: Ctx,
    Params(q): Params<MonitorQuery>,
) -> Result<Response, Problem> {
    if !ctx.who.grants.monitor {
        return Ok(see_other("/me"));
    }
    if ctx.who.is_admin()
        && q.setup.as_deref() != Some("later")
        && !setup_done(state.cluster.reader())
    {
        return Ok(see_other("/setup"));
    }
    let search = given(q.q).unwrap_or_default();
    let after = given(q.after);
    let (m, refused) = gather(&state, &search, after.as_deref()).await?;
    let rooms = running_rooms(&state, &ctx.who).await?;
    let content = html! {
        @if let Some(message) = refused { p.banner.banner-bad #states-error { (message) } }
        (render(&ctx.who, &m, &search, after.as_deref()))
        (conferences(&ctx.who, &rooms))
    };
    Ok(layout::page(&ctx.who, Nav::Dashboard, "Dashboard", content).into_response())
}

/// The monitor's data: the live stream's own snapshot for this window, read as the stream's JSON.
pub(super) async fn gather(
    state: &AppState,
    search: &str,
    after: Option<&str>,
) -> Result<(Monitor, Option<String>), Problem> {
    let query = |q: &str, after: Option<&str>| LiveQuery {
        q: Some(q.to_owned()).filter(|q| !q.is_empty()),
        after: after.map(str::to_owned),
        limit: Some(STATES_PAGE.to_string()),
    };
    // A search the stream refuses (too long, a cursor that is no number) is shown, not failed on.
    let (window, refused) = match LiveWindow::parse(query(search, after)) {
        Ok(w) => (w, None),
        Err(e) => {
            let p = Problem::from(e);
            let w = LiveWindow::parse(query("", None)).map_err(Problem::from)?;
            (w, Some(p.message))
        }
    };
    let snapshot = crate::api::live_snapshot(state, &window).await?;
    let json = serde_json::to_value(&snapshot).map_err(|e| Problem::internal(e.to_string()))?;
    let m = serde_json::from_value(json)
        .map_err(|e| Problem::internal(format!("unexpected live snapshot: {e}")))?;
    Ok((m, refused))
}

fn trunk_badge(state: &str) -> Markup {
    let kind = match state {
        "registered" | "reachable" => "ok",
        "unknown" | "disabled" => "muted",
        _ => "bad",
    };
    badge(kind, state)
}

fn state_badge(state: &str) -> Markup {
    match state {
        "idle" => badge("ok", "idle"),
        "in_call" => badge("info", "in call"),
        other => badge("muted", other),
    }
}

/// The nodes table (`#nodes-table`).
fn nodes_table(c: &ClusterStatus, versions: &std::collections::BTreeMap<NodeId, String>) -> Markup {
    html! {
        table.data #nodes-table {
            thead { tr { th { "Node" } th { "Role" } th { "Health" } th.num { "Lag" } th { "Version" } th { "API address" } } }
            tbody {
                @for m in &c.members {
                    tr {
                        td { (m.node_id) }
                        td {
                            @if Some(m.node_id) == c.leader { (badge("info", "leader")) }
                            @else if m.voter { "follower" } @else { "learner" }
                        }
                        td { @if m.healthy { (badge("ok", "healthy")) } @else { (badge("bad", "unhealthy")) } }
                        td.num { @match m.lag { Some(l) => (l), None => "—" } }
                        td.mono { (versions.get(&m.node_id).map_or("—", String::as_str)) }
                        td.mono { (m.api_addr) }
                    }
                }
                @if c.members.is_empty() { (empty_row(6, "No members.")) }
            }
        }
    }
}

/// The monitor's content.
pub(super) fn render(who: &Principal, m: &Monitor, search: &str, after: Option<&str>) -> Markup {
    let hang_up = who.grants.hang_up;
    let live = format!(
        "/api/v1/live{}",
        query(&[
            ("q", search),
            ("after", after.unwrap_or("")),
            ("limit", &STATES_PAGE.to_string()),
        ])
    );
    let base = format!("/{}", query(&[("q", search), ("setup", "later")]));
    html! {
        section #monitor data-live=(live) data-hangup=(if hang_up { "true" } else { "false" }) {
            p.live {
                span.badge.badge-muted #live-status { "connecting…" }
                "Served by node " strong #serving-node { (m.node_id) }
                " · version " span #serving-version { (m.version) }
            }
            div.stats {
                div.stat { span.stat-value #ext-total { (m.extensions.total) } span.stat-label { "Extensions" } }
                div.stat { span.stat-value #ext-registered { (m.extensions.registered) } span.stat-label { "Registered" } }
                div.stat { span.stat-value #ext-in-call { (m.extensions.in_call) } span.stat-label { "In a call" } }
                div.stat { span.stat-value #calls-count { (m.calls.len()) } span.stat-label { "Calls in progress" } }
            }
            div.grid-2 {
                div.card {
                    h2 { "Cluster" }
                    dl.kv {
                        dt { "Virtual IP" } dd #vip-address {
                            @match &m.vip { Some(v) => (v.address), None => "not configured" }
                        }
                        dt { "VIP owner" } dd #vip-owner {
                            @match m.vip.as_ref().and_then(|v| v.owner) {
                                Some(o) => { "node " (o) }
                                None => "—",
                            }
                        }
                    }
                    div.table-wrap { (nodes_table(&m.cluster, &m.versions)) }
                }
                div.card {
                    h2 { "Trunks" }
                    table.data #trunks-table {
                        thead { tr { th { "Trunk" } th { "State" } } }
                        tbody {
                            @for t in &m.trunks {
                                tr { td { (t.name) } td { (trunk_badge(&t.state)) } }
                            }
                            @if m.trunks.is_empty() { (empty_row(2, "No trunks.")) }
                        }
                    }
                }
            }
            div.card {
                h2 { "Calls in progress" }
                div.table-wrap {
                    table.data #calls-table {
                        thead { tr {
                            th { "Caller" } th { "Callee" } th.num { "Node" } th { "Answered" } th.num { "Duration" }
                            @if hang_up { th.actions { "" } }
                        } }
                        tbody {
                            @for c in &m.calls {
                                tr data-call=(c.id) {
                                    td { (c.caller) }
                                    td { (c.callee) }
                                    td.num { (c.node_id) }
                                    td { (when(if c.answered_at > 0 { c.answered_at } else { c.started_at })) }
                                    td.num.duration data-secs=(c.duration_secs) { (duration(c.duration_secs)) }
                                    @if hang_up {
                                        td.actions {
                                            button.btn.btn-small.btn-danger.hangup type="button"
                                                data-api={ "DELETE /api/v1/calls/" (super::enc(&c.id)) }
                                                data-confirm={ "Hang up the call " (c.caller) " → " (c.callee) "?" }
                                                data-then="reload" { "Hang up" }
                                        }
                                    }
                                }
                            }
                            @if m.calls.is_empty() {
                                (empty_row(if hang_up { 6 } else { 5 }, "No calls in progress."))
                            }
                        }
                    }
                }
            }
            div.card {
                div.card-head {
                    h2 { "Extension states" }
                    form.toolbar #states-search method="get" action="/" role="search" {
                        input type="hidden" name="setup" value="later";
                        input #states-q type="search" name="q" value=(search)
                            placeholder="Number or name" aria-label="Search extension states";
                        button.btn type="submit" { "Search" }
                    }
                }
                table.data #states-table {
                    thead { tr { th { "Extension" } th { "Name" } th { "State" } } }
                    tbody {
                        @for s in &m.states {
                            tr { td.mono { (s.extension) } td { (s.display_name) } td { (state_badge(&s.state)) } }
                        }
                        @if m.states.is_empty() { (empty_row(3, "No extensions.")) }
                    }
                }
                (layout::pager(&base, m.next.as_deref(), after.is_none()))
            }
        }
    }
}

/// A conference room with people in it, as `GET /api/v1/conferences` and its participants show it.
#[derive(Debug, Deserialize)]
pub(super) struct RunningRoom {
    pub number: String,
    pub name: String,
    pub participants: Vec<Participant>,
}

/// Someone in a conference room, as `GET /api/v1/conferences/{number}/participants` shows it.
#[derive(Debug, Deserialize)]
pub(super) struct Participant {
    pub id: String,
    pub caller: String,
    pub caller_name: String,
    pub duration_secs: u64,
    pub muted: bool,
}

#[derive(Debug, Deserialize)]
struct RoomSummary {
    number: String,
    name: String,
    participants: usize,
}

#[derive(Debug, Deserialize)]
struct RoomSummaries {
    rooms: Vec<RoomSummary>,
}

#[derive(Debug, Deserialize)]
struct Participants {
    participants: Vec<Participant>,
}

/// The conference rooms someone is in, with who, through the API.
async fn running_rooms(state: &AppState, who: &Principal) -> Result<Vec<RunningRoom>, Problem> {
    use axum::extract::Path;
    let s = || State(state.clone());
    let list: RoomSummaries =
        super::api::answer(crate::api::conferences_list(s(), who.clone()).await).await?;
    let mut out = Vec::new();
    for r in list.rooms.into_iter().filter(|r| r.participants > 0) {
        let inside: Participants = super::api::answer(
            crate::api::conference_participants(s(), who.clone(), Path(r.number.clone())).await,
        )
        .await?;
        out.push(RunningRoom {
            number: r.number,
            name: r.name,
            participants: inside.participants,
        });
    }
    Ok(out)
}

/// The monitor's box of running conference rooms: who is in each, for how long, and (with the
/// `routing` or `hang_up` grant) buttons to mute, unmute and remove them.
pub(super) fn conferences(who: &Principal, rooms: &[RunningRoom]) -> Markup {
    let moderate = who.grants.routing || who.grants.hang_up;
    let cols = if moderate { 4 } else { 3 };
    html! {
        div.card #conferences {
            h2 { "Conferences" }
            div.table-wrap {
                table.data #conferences-table {
                    thead { tr {
                        th { "Participant" } th { "Muted" } th.num { "In the room for" }
                        @if moderate { th.actions { "" } }
                    } }
                    @for r in rooms {
                        tbody data-room=(r.number) {
                            tr.group-head {
                                th colspan=(cols) {
                                    "Room " span.mono { (r.number) } " · " (r.name) " · "
                                    (r.participants.len()) " in it, for "
                                    (duration(r.participants.iter().map(|p| p.duration_secs).max().unwrap_or(0)))
                                }
                            }
                            @for p in &r.participants {
                                tr data-participant=(p.id) {
                                    td { span.mono { (p.caller) } " " (p.caller_name) }
                                    td { @if p.muted { "muted" } @else { span.muted { "no" } } }
                                    td.num.duration data-secs=(p.duration_secs) { (duration(p.duration_secs)) }
                                    @if moderate {
                                        @let url = format!("/api/v1/conferences/{}/participants/{}", super::enc(&r.number), super::enc(&p.id));
                                        td.actions {
                                            button.btn.btn-small.participant-mute type="button"
                                                data-api={ "PUT " (url) }
                                                data-body=(serde_json::json!({ "muted": !p.muted }))
                                                data-then="reload" { @if p.muted { "Unmute" } @else { "Mute" } }
                                            " "
                                            button.btn.btn-small.btn-danger.participant-kick type="button"
                                                data-api={ "DELETE " (url) }
                                                data-confirm={ "Remove " (p.caller) " from room " (r.number) "?" }
                                                data-then="reload" { "Remove" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if rooms.is_empty() {
                        tbody { (empty_row(cols, "No conference is running.")) }
                    }
                }
            }
        }
    }
}

/// A member as `GET /api/v1/cluster/members` shows it.
#[derive(Debug, Deserialize)]
struct Member {
    node_id: NodeId,
    name: String,
}

/// `/cluster`: members with health and lag (monitor), and for admins the forms to add and remove.
pub(super) async fn cluster(State(state): State<AppState>, ctx: Ctx) -> Result<Markup, Problem> {
    let admin = ctx.who.is_admin();
    ctx.require(ctx.who.grants.monitor || admin)?;
    let status = state.cluster.status().await;
    let names = state.cluster.reader().list::<MemberRecord>()?;
    let members: Vec<Member> = names
        .into_iter()
        .map(|m| Member {
            node_id: m.node_id,
            name: m.name,
        })
        .collect();
    let name_of = |id: NodeId| {
        members
            .iter()
            .find(|m| m.node_id == id)
            .map_or("", |m| m.name.as_str())
    };
    let content = html! {
        div.card {
            h2 { "Members" }
            dl.kv {
                dt { "Served by" } dd { "node " (status.node_id) " (" (format!("{:?}", status.state).to_lowercase()) ")" }
                dt { "Leader" } dd { @match status.leader { Some(l) => { "node " (l) }, None => "none" } }
                dt { "Term" } dd { (status.term) }
                dt { "Applied index" } dd { (status.applied_index) }
            }
            @if !status.members_from_leader {
                p.banner.banner-warn { "The leader could not be asked: health and lag are this node's own view." }
            }
            div.table-wrap {
                table.data #members-table {
                    thead { tr {
                        th { "Node" } th { "Name" } th { "Role" } th { "Health" } th.num { "Lag" }
                        th { "Raft address" } th { "API address" }
                        @if admin { th.actions { "" } }
                    } }
                    tbody {
                        @for m in &status.members {
                            tr data-node=(m.node_id) {
                                td { (m.node_id) }
                                td { (name_of(m.node_id)) }
                                td {
                                    @if Some(m.node_id) == status.leader { (badge("info", "leader")) }
                                    @else if m.voter { "follower" } @else { "learner" }
                                }
                                td { @if m.healthy { (badge("ok", "healthy")) } @else { (badge("bad", "unhealthy")) } }
                                td.num { @match m.lag { Some(l) => (l), None => "—" } }
                                td.mono { (m.raft_addr) }
                                td.mono { (m.api_addr) }
                                @if admin {
                                    td.actions {
                                        button.btn.btn-small.btn-danger.member-remove type="button"
                                            data-api={ "DELETE /api/v1/cluster/members/" (m.node_id) }
                                            data-confirm={ "Remove node " (m.node_id) " from the cluster?" }
                                            data-then="reload" { "Remove" }
                                    }
                                }
                            }
                        }
                        @if status.members.is_empty() { (empty_row(if admin { 8 } else { 7 }, "No members.")) }
                    }
                }
            }
        }
        @if admin {
            div.card {
                h2 { "Add a member" }
                form.form #member-add data-api="POST /api/v1/cluster/members" data-then="reload" {
                    (form_error())
                    (field("Node id", "node_id", html! {
                        input #member-node-id type="number" name="node_id" min="1" data-type="number" required;
                    }))
                    (field("Raft address", "raft_addr", html! {
                        input #member-raft-addr type="text" name="raft_addr" placeholder="10.0.0.4:7000" required;
                    }))
                    (field("API address", "api_addr", html! {
                        input #member-api-addr type="text" name="api_addr" placeholder="10.0.0.4:8443" required;
                    }))
                    (field("Name", "name", html! {
                        input #member-name type="text" name="name" maxlength="64";
                    }))
                    div.form-actions {
                        button.btn.btn-primary #member-add-submit type="submit" { "Add member" }
                        span.hint { "The node joins as a learner and becomes a voter once caught up." }
                    }
                }
            }
        }
    };
    Ok(layout::page(&ctx.who, Nav::Cluster, "Cluster", content))
}
