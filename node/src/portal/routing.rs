//! `/trunks` and `/routes`: the trunks with their state, the outbound and inbound routes, and the
//! time conditions and IVR menus inbound routes may send calls to; each with a create form and
//! delete buttons (grant `routing`).

use std::collections::HashMap;

use axum::extract::State;
use maud::{Markup, html};
use serde::Deserialize;
use storage::audio::{AudioFile, AudioKind};
use storage::conference::{MAX_ROOM_NAME, MAX_ROOM_NUMBER, ROOM_PARTICIPANTS};
use storage::ivr::{IVR_KEYS, MAX_IVR_NAME, MAX_IVR_NUMBER};
use storage::recording::RecordingMode;
use storage::recording_routes::route_recordings;
use storage::routing::{OutboundRoute, RouteClass, RoutingKind, TrunkStatus};
use storage::{StateReader, StorageError};

use super::layout::{self, Nav, badge, duration, empty_row, field, form_error, when};
use super::{Ctx, Params, Problem, api, enc, given};
use crate::api::{AppState, DEFAULT_MAX_PARTICIPANTS, Principal};

/// A trunk as `GET /api/v1/trunks` shows it.
#[derive(Debug, Deserialize)]
pub(super) struct Trunk {
    name: String,
    kind: String,
    enabled: bool,
    host: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    transport: Option<String>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    dids: Vec<String>,
    #[serde(default)]
    max_calls: u32,
}

#[derive(Debug, Deserialize)]
struct Trunks {
    trunks: Vec<Trunk>,
}

/// The recording modes of the trunks or routes that set one, by name.
pub(super) type RecordingModes = HashMap<String, RecordingMode>;

/// The recording modes of every trunk, inbound or outbound route (`kind`) that set one.
pub(super) fn recording_modes(
    reader: &StateReader,
    kind: RoutingKind,
) -> Result<RecordingModes, StorageError> {
    Ok(route_recordings(reader, kind)?
        .into_iter()
        .map(|p| (p.target.name().to_owned(), p.mode))
        .collect())
}

/// Whether a trunk's or route's calls are recorded (a badge when they are), with a select and a
/// button that set it: `PUT {url}` (`…/recording`). `what` names it for screen readers.
fn recording_cell(url: &str, what: &str, mode: RecordingMode) -> Markup {
    let label = |m: RecordingMode| {
        if m == RecordingMode::Always {
            "always recorded"
        } else {
            "not recorded"
        }
    };
    html! {
        @if mode == RecordingMode::Always { (badge("warn", label(mode))) }
        form.recording-form data-api={ "PUT " (url) } data-then="reload" {
            select.recording-mode name="mode" aria-label={ "Recording of " (what) } {
                @for m in crate::api::ROUTE_RECORDING_MODES {
                    option value=(m.as_str()) selected[m == mode] { (label(m)) }
                }
            }
            " "
            button.btn.btn-small.recording-set type="submit" { "Set" }
            (form_error())
        }
    }
}

/// The mode of `name` in `modes`: never when it set none.
fn mode_of(modes: &RecordingModes, name: &str) -> RecordingMode {
    modes.get(name).copied().unwrap_or(RecordingMode::Never)
}

fn trunk_state_badge(status: Option<&TrunkStatus>, enabled: bool) -> Markup {
    if !enabled {
        return badge("muted", "disabled");
    }
    match status.map(|s| s.state.as_str()) {
        Some(s @ ("registered" | "reachable")) => badge("ok", s),
        Some("unknown") | None => badge("muted", "unknown"),
        Some(s) => badge("bad", s),
    }
}

/// `/trunks`.
pub(super) async fn trunks(State(state): State<AppState>, ctx: Ctx) -> Result<Markup, Problem> {
    ctx.require(ctx.who.grants.routing)?;
    let list: Trunks =
        api::answer(crate::api::list_trunks(State(state.clone()), ctx.who.clone()).await).await?;
    let reader = state.cluster.reader();
    let mut rows = Vec::with_capacity(list.trunks.len());
    for t in list.trunks {
        let status = reader.get::<TrunkStatus>(&t.name)?;
        rows.push((t, status));
    }
    let recording = recording_modes(reader, RoutingKind::Trunk)?;
    let content = render_trunks(&rows, &recording);
    Ok(layout::page(&ctx.who, Nav::Trunks, "Trunks", content))
}

/// The trunks page's content: each trunk with its state and its recording mode.
pub(super) fn render_trunks(
    rows: &[(Trunk, Option<TrunkStatus>)],
    recording: &RecordingModes,
) -> Markup {
    html! {
        div.card {
            div.table-wrap {
                table.data #trunks-table {
                    thead { tr {
                        th { "Name" } th { "Kind" } th { "Host" } th { "User" } th { "State" } th { "Detail" }
                        th { "DIDs" } th.num { "Max calls" } th { "Recording" } th.actions { "" }
                    } }
                    tbody {
                        @for (t, s) in rows {
                            tr data-trunk=(t.name) {
                                td { strong { (t.name) } }
                                td { (t.kind) }
                                td.mono {
                                    (t.host)
                                    @if let Some(p) = t.port { ":" (p) }
                                    @if let Some(tr) = &t.transport { " (" (tr) ")" }
                                }
                                td { (t.username) }
                                td { (trunk_state_badge(s.as_ref(), t.enabled)) }
                                td {
                                    @if let Some(s) = s {
                                        @if let Some(code) = s.last_status { span.mono { (code) } " " }
                                        (s.detail)
                                        @if s.since > 0 { br; span.muted { "since " (when(s.since)) } }
                                    }
                                }
                                td { (t.dids.join(", ")) }
                                td.num { @if t.max_calls == 0 { "—" } @else { (t.max_calls) } }
                                td.trunk-recording {
                                    (recording_cell(
                                        &format!("/api/v1/trunks/{}/recording", enc(&t.name)),
                                        &format!("trunk {}", t.name),
                                        mode_of(recording, &t.name),
                                    ))
                                }
                                td.actions {
                                    button.btn.btn-small.btn-danger.trunk-delete type="button"
                                        data-api={ "DELETE /api/v1/trunks/" (enc(&t.name)) }
                                        data-confirm={ "Delete trunk " (t.name) "?" } data-then="reload" { "Delete" }
                                }
                            }
                        }
                        @if rows.is_empty() { (empty_row(10, "No trunks.")) }
                    }
                }
            }
        }
        div.card {
            h2 { "New trunk" }
            form.form #trunk-create data-api="POST /api/v1/trunks" data-then="reload" {
                (form_error())
                (field("Name", "name", html! { input #trunk-name type="text" name="name" required; }))
                (field("Kind", "kind", html! {
                    select #trunk-kind name="kind" {
                        option value="register" { "register (the PBX registers)" }
                        option value="peer" { "peer (by address)" }
                    }
                }))
                (field("Host", "host", html! {
                    input #trunk-host type="text" name="host" required placeholder="sip.provider.example";
                }))
                (field("Port", "port", html! {
                    input #trunk-port type="number" name="port" min="1" max="65535" data-type="number";
                }))
                (field("Transport", "transport", html! {
                    select #trunk-transport name="transport" {
                        option value="" { "automatic" }
                        option value="udp" { "udp" }
                        option value="tcp" { "tcp" }
                        option value="tls" { "tls" }
                    }
                }))
                (field("User name", "username", html! {
                    input #trunk-username type="text" name="username" autocomplete="off";
                }))
                (field("Password", "password", html! {
                    input #trunk-password type="password" name="password" autocomplete="new-password";
                }))
                (field("DIDs (comma-separated)", "dids", html! {
                    input #trunk-dids type="text" name="dids" data-type="list";
                }))
                label.check.wide { input type="checkbox" name="enabled" checked; "Enabled" }
                div.form-actions { button.btn.btn-primary #trunk-submit type="submit" { "Add trunk" } }
            }
        }
    }
}

fn class_name(c: RouteClass) -> &'static str {
    match c {
        RouteClass::Local => "local",
        RouteClass::LongDistance => "long distance",
        RouteClass::International => "international",
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Outbound {
    routes: Vec<OutboundRoute>,
    /// Not the API's: the routes' recording modes, read beside the list.
    #[serde(skip)]
    pub(super) recording: RecordingModes,
}

#[derive(Debug, Deserialize)]
struct Destination {
    #[serde(rename = "type")]
    kind: String,
    target: String,
}

/// The kinds of destination as the API names them, with their labels.
const EXTENSION: (&str, &str) = ("extension", "extension");
const RING_GROUP: (&str, &str) = ("ring_group", "ring group");
const TIME_CONDITION: (&str, &str) = ("time_condition", "time condition");
const IVR: (&str, &str) = ("ivr", "IVR");
const CONFERENCE: (&str, &str) = ("conference", "conference room");
/// Where an inbound route or an IVR's key may send calls.
const ANY_DESTINATION: [(&str, &str); 5] = [EXTENSION, RING_GROUP, TIME_CONDITION, IVR, CONFERENCE];
/// Where a time condition may send calls: never to another condition.
const CONDITION_DESTINATION: [(&str, &str); 4] = [EXTENSION, RING_GROUP, IVR, CONFERENCE];

/// A destination kind's label: `ring_group` as `ring group`.
fn kind_label(kind: &str) -> String {
    ANY_DESTINATION
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or_else(|| kind.replace('_', " "), |(_, label)| (*label).to_owned())
}

/// A `select` of destination kinds, `selected` chosen.
fn kind_select(
    id: &str,
    name: &str,
    label: &str,
    kinds: &[(&str, &str)],
    selected: Option<&str>,
) -> Markup {
    html! {
        select id=(id) name=(name) aria-label=(label) {
            @for (value, text) in kinds {
                option value=(value) selected[selected == Some(*value)] { (text) }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct InboundRoute {
    name: String,
    did_kind: String,
    did: String,
    #[serde(default)]
    caller_id: Option<String>,
    #[serde(default)]
    trunk: Option<String>,
    destination: Destination,
}

#[derive(Debug, Deserialize)]
pub(super) struct Inbound {
    routes: Vec<InboundRoute>,
    /// Not the API's: the routes' recording modes, read beside the list.
    #[serde(skip)]
    pub(super) recording: RecordingModes,
}

/// One weekly range of a time condition, as `GET /api/v1/time-conditions` shows it.
#[derive(Debug, Deserialize)]
struct OpenHours {
    days: Vec<String>,
    from: String,
    to: String,
}

#[derive(Debug, Deserialize)]
struct Holiday {
    #[serde(default)]
    name: String,
    from: String,
    to: String,
}

#[derive(Debug, Deserialize)]
struct TimeCondition {
    name: String,
    hours: Vec<OpenHours>,
    holidays: Vec<Holiday>,
    open: Destination,
    closed: Destination,
    open_now: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct TimeConditions {
    time_conditions: Vec<TimeCondition>,
}

/// One key of an IVR, as `GET /api/v1/ivrs` shows it.
#[derive(Debug, Deserialize)]
struct IvrOption {
    digit: String,
    destination: Destination,
}

#[derive(Debug, Deserialize)]
struct Ivr {
    number: String,
    name: String,
    #[serde(default)]
    greeting: Option<String>,
    options: Vec<IvrOption>,
    direct_dial: bool,
    timeout_secs: u8,
    attempts: u8,
    #[serde(default)]
    fallback: Option<Destination>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Ivrs {
    ivrs: Vec<Ivr>,
}

/// A prompt the greeting may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Prompt {
    pub(super) id: String,
    pub(super) name: String,
}

/// Prompts the greeting select offers at most (the audio page has them all).
pub(super) const MAX_PROMPTS: usize = 500;

/// The prompts of the audio store `who` may see, by name: one pass over the index that keeps
/// only prompts, at most [`MAX_PROMPTS`] of them.
pub(super) fn prompts(reader: &StateReader, who: &Principal) -> Result<Vec<Prompt>, StorageError> {
    let mut out = Vec::new();
    reader.scan_range::<AudioFile>("", "\u{7f}", usize::MAX, |f| {
        if f.kind == AudioKind::Prompt && out.len() < MAX_PROMPTS && who.may_access_audio(f) {
            out.push(Prompt {
                id: f.id.clone(),
                name: f.name.clone(),
            });
        }
        false
    })?;
    out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    Ok(out)
}

/// The IVR section of the routes page: the IVRs, the prompts a greeting may be, and the IVR the
/// form edits (`/routes?ivr=500`), if any.
pub(super) struct IvrMenus {
    pub(super) list: Ivrs,
    pub(super) prompts: Vec<Prompt>,
    pub(super) editing: Option<String>,
}

/// The routes page's query: `ivr`, the IVR whose form is filled in; `room`, the conference room's.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RoutesQuery {
    #[serde(default)]
    ivr: Option<String>,
    #[serde(default)]
    room: Option<String>,
}

/// A conference room as `GET /api/v1/conferences` shows it.
#[derive(Debug, Deserialize)]
pub(super) struct Room {
    pub(super) number: String,
    pub(super) name: String,
    pub(super) has_pin: bool,
    pub(super) max_participants: u16,
    pub(super) participants: usize,
    #[serde(default)]
    pub(super) running_since: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RoomList {
    pub(super) rooms: Vec<Room>,
}

/// The conference section of the routes page: the rooms, and the room the form edits
/// (`/routes?room=800`), if any; `now` (Unix ms) times the running rooms.
pub(super) struct Rooms {
    pub(super) list: RoomList,
    pub(super) editing: Option<String>,
    pub(super) now: u64,
}

/// The days of the week as the API names them, Monday first, with their labels.
const DAYS: [(&str, &str); 7] = [
    ("mon", "Mon"),
    ("tue", "Tue"),
    ("wed", "Wed"),
    ("thu", "Thu"),
    ("fri", "Fri"),
    ("sat", "Sat"),
    ("sun", "Sun"),
];

/// `["mon", "tue", "wed", "fri"]` as `Mon–Wed, Fri`: runs of three days or more as a span.
fn days_summary(days: &[String]) -> String {
    let on: Vec<bool> = DAYS
        .iter()
        .map(|(d, _)| days.iter().any(|x| x == d))
        .collect();
    if on.iter().all(|o| *o) {
        return "Every day".into();
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < DAYS.len() {
        if !on[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i + 1 < DAYS.len() && on[i + 1] {
            i += 1;
        }
        match i - start {
            0 => parts.push(DAYS[start].1.to_owned()),
            1 => parts.extend([DAYS[start].1.to_owned(), DAYS[i].1.to_owned()]),
            _ => parts.push(format!("{}–{}", DAYS[start].1, DAYS[i].1)),
        }
        i += 1;
    }
    parts.join(", ")
}

/// A condition's weekly hours in one line: `Mon–Fri 09:00–17:30; Sat 10:00–12:00`.
fn hours_summary(hours: &[OpenHours]) -> String {
    hours
        .iter()
        .map(|h| format!("{} {}–{}", days_summary(&h.days), h.from, h.to))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where a destination leads, in words: `extension 1001`.
fn destination(d: &Destination) -> Markup {
    html! { (kind_label(&d.kind)) " " span.mono { (d.target) } }
}

/// A destination's type and target fields, named `{name}.type` and `{name}.target`; `when` is
/// `open` or `closed`, as the labels say it.
fn destination_fields(when: &str, name: &str) -> Markup {
    let label = format!("When {when}, send calls to");
    html! {
        (field(&label, &format!("{name}.type"), kind_select(
            &format!("time-condition-{name}-type"),
            &format!("{name}.type"),
            &label,
            &CONDITION_DESTINATION,
            None,
        )))
        (field(&format!("Number (when {when})"), &format!("{name}.target"), html! {
            input id={ "time-condition-" (name) "-target" } type="text" name={ (name) ".target" }
                inputmode="numeric" required;
        }))
    }
}

/// `/routes`; `?ivr=500` fills the IVR form in with IVR 500, to change it.
pub(super) async fn routes(
    State(state): State<AppState>,
    ctx: Ctx,
    Params(q): Params<RoutesQuery>,
) -> Result<Markup, Problem> {
    ctx.require(ctx.who.grants.routing)?;
    let s = || State(state.clone());
    let mut out: Outbound =
        api::answer(crate::api::outbound_list(s(), ctx.who.clone()).await).await?;
    let mut inb: Inbound =
        api::answer(crate::api::inbound_list(s(), ctx.who.clone()).await).await?;
    let conds: TimeConditions =
        api::answer(crate::api::time_conditions_list(s(), ctx.who.clone()).await).await?;
    let list: Ivrs = api::answer(crate::api::ivrs_list(s(), ctx.who.clone()).await).await?;
    let reader = state.cluster.reader();
    out.recording = recording_modes(reader, RoutingKind::OutboundRoute)?;
    inb.recording = recording_modes(reader, RoutingKind::InboundRoute)?;
    let zone = crate::api::time_condition_zone(reader);
    let menus = IvrMenus {
        list,
        prompts: prompts(reader, &ctx.who)?,
        editing: given(q.ivr),
    };
    let rooms = Rooms {
        list: api::answer(crate::api::conferences_list(s(), ctx.who.clone()).await).await?,
        editing: given(q.room),
        now: crate::time::now_millis(),
    };
    let content = render(&out, &inb, &conds, &zone, &menus, &rooms);
    Ok(layout::page(&ctx.who, Nav::Routes, "Routes", content))
}

/// The routes page's content; `zone` is the cluster's time zone.
pub(super) fn render(
    out: &Outbound,
    inb: &Inbound,
    conds: &TimeConditions,
    zone: &str,
    menus: &IvrMenus,
    rooms: &Rooms,
) -> Markup {
    html! {
        div.card {
            h2 { "Outbound routes" }
            p.hint { "Tried in order of position, then name." }
            div.table-wrap {
                table.data #outbound-table {
                    thead { tr {
                        th.num { "Position" } th { "Name" } th { "Patterns" } th.num { "Strip" } th { "Prepend" }
                        th { "Class" } th { "Trunks" } th { "Caller ID" } th { "Recording" } th.actions { "" }
                    } }
                    tbody {
                        @for r in &out.routes {
                            tr data-route=(r.name) {
                                td.num { (r.position) }
                                td { strong { (r.name) } }
                                td.mono { (r.patterns.join(", ")) }
                                td.num { (r.strip) }
                                td.mono { (r.prepend) }
                                td { (class_name(r.class)) }
                                td { (r.trunks.join(", ")) }
                                td.mono { (r.caller_id.as_deref().unwrap_or("")) }
                                td.route-recording {
                                    (recording_cell(
                                        &format!("/api/v1/routes/outbound/{}/recording", enc(&r.name)),
                                        &format!("outbound route {}", r.name),
                                        mode_of(&out.recording, &r.name),
                                    ))
                                }
                                td.actions {
                                    button.btn.btn-small.btn-danger.route-delete type="button"
                                        data-api={ "DELETE /api/v1/routes/outbound/" (enc(&r.name)) }
                                        data-confirm={ "Delete outbound route " (r.name) "?" } data-then="reload" { "Delete" }
                                }
                            }
                        }
                        @if out.routes.is_empty() { (empty_row(10, "No outbound routes.")) }
                    }
                }
            }
            h2 { "New outbound route" }
            form.form #outbound-create data-api="POST /api/v1/routes/outbound" data-then="reload" {
                (form_error())
                (field("Name", "name", html! { input #outbound-name type="text" name="name" required; }))
                (field("Position", "position", html! {
                    input #outbound-position type="number" name="position" min="0" data-type="number";
                }))
                (field("Dial patterns (comma-separated)", "patterns", html! {
                    input #outbound-patterns type="text" name="patterns" data-type="list" required placeholder="0XXXXXXXXX";
                }))
                (field("Strip digits", "strip", html! {
                    input #outbound-strip type="number" name="strip" min="0" data-type="number";
                }))
                (field("Prepend", "prepend", html! { input #outbound-prepend type="text" name="prepend"; }))
                (field("Class", "class", html! {
                    select #outbound-class name="class" {
                        option value="local" { "local" }
                        option value="long_distance" { "long distance" }
                        option value="international" { "international" }
                    }
                }))
                (field("Trunks, in order (comma-separated)", "trunks", html! {
                    input #outbound-trunks type="text" name="trunks" data-type="list" required;
                }))
                (field("Caller ID", "caller_id", html! { input #outbound-caller-id type="text" name="caller_id"; }))
                div.form-actions { button.btn.btn-primary #outbound-submit type="submit" { "Add route" } }
            }
        }
        div.card {
            h2 { "Inbound routes" }
            div.table-wrap {
                table.data #inbound-table {
                    thead { tr {
                        th { "Name" } th { "DID" } th { "Caller ID" } th { "Trunk" } th { "Destination" }
                        th { "Recording" } th.actions { "" }
                    } }
                    tbody {
                        @for r in &inb.routes {
                            tr data-route=(r.name) {
                                td { strong { (r.name) } }
                                td.mono { (r.did) " " span.muted { "(" (r.did_kind) ")" } }
                                td.mono { (r.caller_id.as_deref().unwrap_or("")) }
                                td { (r.trunk.as_deref().unwrap_or("any")) }
                                td { (destination(&r.destination)) }
                                td.route-recording {
                                    (recording_cell(
                                        &format!("/api/v1/routes/inbound/{}/recording", enc(&r.name)),
                                        &format!("inbound route {}", r.name),
                                        mode_of(&inb.recording, &r.name),
                                    ))
                                }
                                td.actions {
                                    button.btn.btn-small.btn-danger.route-delete type="button"
                                        data-api={ "DELETE /api/v1/routes/inbound/" (enc(&r.name)) }
                                        data-confirm={ "Delete inbound route " (r.name) "?" } data-then="reload" { "Delete" }
                                }
                            }
                        }
                        @if inb.routes.is_empty() { (empty_row(7, "No inbound routes.")) }
                    }
                }
            }
            h2 { "New inbound route" }
            form.form #inbound-create data-api="POST /api/v1/routes/inbound" data-then="reload" {
                (form_error())
                (field("Name", "name", html! { input #inbound-name type="text" name="name" required; }))
                (field("DID match", "did_kind", html! {
                    select #inbound-did-kind name="did_kind" {
                        option value="exact" { "exact" }
                        option value="prefix" { "prefix" }
                        option value="pattern" { "pattern" }
                    }
                }))
                (field("DID", "did", html! { input #inbound-did type="text" name="did" required; }))
                (field("Caller ID pattern", "caller_id", html! { input #inbound-caller-id type="text" name="caller_id"; }))
                (field("Only from trunk", "trunk", html! { input #inbound-trunk type="text" name="trunk"; }))
                (field("Destination", "destination.type", kind_select(
                    "inbound-target-type", "destination.type", "Destination", &ANY_DESTINATION, None,
                )))
                (field("Extension, ring group or IVR number, or time condition name", "destination.target", html! {
                    input #inbound-target type="text" name="destination.target" required;
                }))
                div.form-actions { button.btn.btn-primary #inbound-submit type="submit" { "Add route" } }
            }
        }
        (time_conditions(conds, zone))
        (ivrs(menus))
        (conference_rooms(rooms))
    }
}

/// The conference rooms with their create-or-change form.
fn conference_rooms(rooms: &Rooms) -> Markup {
    let list = &rooms.list.rooms;
    let editing = rooms
        .editing
        .as_deref()
        .and_then(|n| list.iter().find(|r| r.number == n));
    html! {
        div.card #conference-rooms {
            h2 { "Conference rooms" }
            p.hint {
                "Callers who dial a room's number talk together, after entering its PIN if it has one. "
                "Inbound routes, time conditions and IVR keys can send calls to a room."
            }
            div.table-wrap {
                table.data #conference-rooms-table {
                    thead { tr {
                        th { "Number" } th { "Name" } th { "PIN" } th.num { "Participants" }
                        th.num { "Running for" } th.actions { "" }
                    } }
                    tbody {
                        @for r in list {
                            tr id={ "room-row-" (r.number) } data-room=(r.number) {
                                td.mono { strong { (r.number) } }
                                td { (r.name) }
                                td { @if r.has_pin { "yes" } @else { span.muted { "none" } } }
                                td.num { (r.participants) " / " (r.max_participants) }
                                td.num {
                                    @match r.running_since {
                                        Some(since) => {
                                            @let secs = rooms.now.saturating_sub(since) / 1000;
                                            span.duration data-secs=(secs) { (duration(secs)) }
                                        }
                                        None => { span.muted { "empty" } }
                                    }
                                }
                                td.actions {
                                    a.btn.btn-small.room-edit href={ "/routes?room=" (enc(&r.number)) "#room-form" } { "Edit" }
                                    " "
                                    button.btn.btn-small.btn-danger.room-delete type="button"
                                        data-api={ "DELETE /api/v1/conferences/" (enc(&r.number)) }
                                        data-confirm={ "Delete conference room " (r.number) " (" (r.name) ")?" } data-then="reload" { "Delete" }
                                }
                            }
                        }
                        @if list.is_empty() { (empty_row(6, "No conference rooms.")) }
                    }
                }
            }
            h2 {
                @match editing {
                    Some(r) => { "Change conference room " (r.number) }
                    None => { "New conference room" }
                }
            }
            form.form #room-form data-api="PUT /api/v1/conferences/{number}" data-then="reload" {
                (form_error())
                (field("Number (digits)", "number", html! {
                    input #room-number type="text" name="number" inputmode="numeric" required
                        maxlength=(MAX_ROOM_NUMBER) placeholder="800" value=[editing.map(|r| &r.number)]
                        readonly[editing.is_some()];
                }))
                (field("Name", "name", html! {
                    input #room-name type="text" name="name" required maxlength=(MAX_ROOM_NAME)
                        placeholder="Weekly call" value=[editing.map(|r| &r.name)];
                }))
                (field("PIN (6 to 12 digits; empty: no PIN, or keep the current one)", "pin", html! {
                    input #room-pin type="password" name="pin" inputmode="numeric" autocomplete="new-password"
                        pattern="[0-9]{6,12}";
                }))
                (field("Most participants", "max_participants", html! {
                    input #room-max type="number" name="max_participants"
                        min=(ROOM_PARTICIPANTS.start()) max=(ROOM_PARTICIPANTS.end()) data-type="number"
                        value=(editing.map_or(DEFAULT_MAX_PARTICIPANTS, |r| r.max_participants));
                }))
                div.form-actions {
                    button.btn.btn-primary #room-submit type="submit" { "Save room" }
                    @if editing.is_some_and(|r| r.has_pin) {
                        " "
                        button.btn.room-clear-pin type="button"
                            data-api={ "PUT /api/v1/conferences/" (enc(editing.map_or("", |r| r.number.as_str()))) }
                            data-body=(serde_json::json!({
                                "name": editing.map_or("", |r| r.name.as_str()),
                                "max_participants": editing.map_or(DEFAULT_MAX_PARTICIPANTS, |r| r.max_participants),
                                "pin": null,
                            }))
                            data-confirm="Remove the room's PIN?" data-then="reload" { "Remove PIN" }
                    }
                    @if editing.is_some() { a.btn href="/routes#conference-rooms" { "New room instead" } }
                }
            }
        }
    }
}

/// The time conditions with their create-or-replace form.
fn time_conditions(conds: &TimeConditions, zone: &str) -> Markup {
    let list = &conds.time_conditions;
    html! {
        div.card #time-conditions {
            h2 { "Time conditions" }
            p.hint {
                "Business hours and holidays: an inbound route whose destination is a time condition "
                "sends each call to its open or closed destination, decided when the call arrives. "
                "Hours are in the cluster's time zone, " span #time-conditions-zone { (zone) } "; a holiday is closed all day."
            }
            div.table-wrap {
                table.data #time-conditions-table {
                    thead { tr {
                        th { "Name" } th { "Open hours" } th.num { "Holidays" } th { "Open →" }
                        th { "Closed →" } th { "Now" } th.actions { "" }
                    } }
                    tbody {
                        @for c in list {
                            tr id={ "time-condition-row-" (c.name) } data-time-condition=(c.name) {
                                td { strong { (c.name) } }
                                td {
                                    @if c.hours.is_empty() { span.muted { "never open" } }
                                    @else { (hours_summary(&c.hours)) }
                                }
                                td.num title=(c.holidays.iter()
                                    .map(|h| if h.from == h.to { format!("{} {}", h.from, h.name) } else { format!("{}..{} {}", h.from, h.to, h.name) })
                                    .collect::<Vec<_>>().join("\n")) {
                                    (c.holidays.len())
                                }
                                td { (destination(&c.open)) }
                                td { (destination(&c.closed)) }
                                td {
                                    @if c.open_now { (badge("ok", "open now")) }
                                    @else { (badge("warn", "closed now")) }
                                }
                                td.actions {
                                    button.btn.btn-small.btn-danger.time-condition-delete type="button"
                                        data-api={ "DELETE /api/v1/time-conditions/" (enc(&c.name)) }
                                        data-confirm={ "Delete time condition " (c.name) "?" } data-then="reload" { "Delete" }
                                }
                            }
                        }
                        @if list.is_empty() { (empty_row(7, "No time conditions.")) }
                    }
                }
            }
            h2 { "New or changed time condition" }
            form.form #time-condition-form data-api="PUT /api/v1/time-conditions/{name}" data-then="reload" {
                (form_error())
                (field("Name (letters, digits, '-' or '_')", "name", html! {
                    input #time-condition-name type="text" name="name" maxlength="32" required placeholder="office";
                }))
                fieldset.wide {
                    legend { "Open on" }
                    div.checks {
                        @for (i, (value, label)) in DAYS.iter().enumerate() {
                            label.check {
                                input type="checkbox" name="hours.0.days" value=(value) data-type="list" checked[i < 5];
                                (label)
                            }
                        }
                    }
                    p.field-error data-for="hours.0.days" hidden {}
                }
                (field("From (HH:MM)", "hours.0.from", html! {
                    input #time-condition-from type="text" name="hours.0.from" required
                        placeholder="09:00" maxlength="5" value="09:00";
                }))
                (field("Until (HH:MM, not included; 24:00 for midnight)", "hours.0.to", html! {
                    input #time-condition-to type="text" name="hours.0.to" required
                        placeholder="17:30" maxlength="5" value="17:00";
                }))
                p.hint.wide {
                    "One weekly range here. A condition may have more (up to 32), set through the API "
                    "(PUT /api/v1/time-conditions/{name}); saving this form under the name of an existing "
                    "condition replaces it, with this one range."
                }
                div.wide {
                    (field("Holidays, closed all day, one a line: YYYY-MM-DD[..YYYY-MM-DD] name", "holidays", html! {
                        textarea #time-condition-holidays name="holidays" data-type="holidays" rows="3"
                            placeholder="2026-12-24..2026-12-26 Christmas" {}
                    }))
                }
                (destination_fields("open", "open"))
                (destination_fields("closed", "closed"))
                div.form-actions {
                    button.btn.btn-primary #time-condition-submit type="submit" { "Save time condition" }
                }
            }
        }
    }
}

/// An IVR's keys in words, one a line: `1 → extension 1001`.
fn keys_summary(options: &[IvrOption]) -> Markup {
    html! {
        @for (i, o) in options.iter().enumerate() {
            @if i > 0 { br; }
            span.mono { (o.digit) } " → " (destination(&o.destination))
        }
    }
}

/// The IVR menus with their create-or-change form: one row per key, whose empty target leaves the
/// key out.
fn ivrs(menus: &IvrMenus) -> Markup {
    let list = &menus.list.ivrs;
    let editing = menus
        .editing
        .as_deref()
        .and_then(|n| list.iter().find(|i| i.number == n));
    let prompt_name = |id: &str| {
        menus
            .prompts
            .iter()
            .find(|p| p.id == id)
            .map_or_else(|| id.to_owned(), |p| p.name.clone())
    };
    let greeting = editing.and_then(|i| i.greeting.as_deref());
    let fallback = editing.and_then(|i| i.fallback.as_ref());
    html! {
        div.card #ivrs {
            h2 { "IVR menus" }
            p.hint {
                "An IVR answers with its greeting, then sends the caller where the key pressed leads: "
                "an extension, a ring group, a time condition or an IVR (itself: back to the menu). "
                "Its number can be dialled inside, and inbound routes and time conditions can send calls to it."
            }
            div.table-wrap {
                table.data #ivrs-table {
                    thead { tr {
                        th { "Number" } th { "Name" } th { "Greeting" } th { "Keys" } th { "Direct dial" }
                        th { "Plays × wait" } th { "Then" } th.actions { "" }
                    } }
                    tbody {
                        @for i in list {
                            tr id={ "ivr-row-" (i.number) } data-ivr=(i.number) {
                                td.mono { strong { (i.number) } }
                                td { (i.name) }
                                td {
                                    @match &i.greeting {
                                        Some(g) => { (prompt_name(g)) }
                                        None => { span.muted { "none" } }
                                    }
                                }
                                td {
                                    @if i.options.is_empty() { span.muted { "no keys" } }
                                    @else { (keys_summary(&i.options)) }
                                }
                                td { @if i.direct_dial { "yes" } @else { "no" } }
                                td { (i.attempts) " × " (i.timeout_secs) " s" }
                                td {
                                    @match &i.fallback {
                                        Some(d) => { (destination(d)) }
                                        None => { span.muted { "hang up" } }
                                    }
                                }
                                td.actions {
                                    a.btn.btn-small.ivr-edit href={ "/routes?ivr=" (enc(&i.number)) "#ivr-form" } { "Edit" }
                                    " "
                                    button.btn.btn-small.btn-danger.ivr-delete type="button"
                                        data-api={ "DELETE /api/v1/ivrs/" (enc(&i.number)) }
                                        data-confirm={ "Delete IVR " (i.number) " (" (i.name) ")?" } data-then="reload" { "Delete" }
                                }
                            }
                        }
                        @if list.is_empty() { (empty_row(8, "No IVR menus.")) }
                    }
                }
            }
            h2 {
                @match editing {
                    Some(i) => { "Change IVR " (i.number) }
                    None => { "New IVR" }
                }
            }
            form.form #ivr-form data-api="PUT /api/v1/ivrs/{number}" data-then="reload" {
                (form_error())
                (field("Number (digits)", "number", html! {
                    input #ivr-number type="text" name="number" inputmode="numeric" required
                        maxlength=(MAX_IVR_NUMBER) placeholder="500" value=[editing.map(|i| &i.number)]
                        readonly[editing.is_some()];
                }))
                (field("Name", "name", html! {
                    input #ivr-name type="text" name="name" required maxlength=(MAX_IVR_NAME)
                        placeholder="Main menu" value=[editing.map(|i| &i.name)];
                }))
                (field("Greeting (a prompt of the audio page)", "greeting", html! {
                    select #ivr-greeting name="greeting" data-empty="null" {
                        option value="" { "no greeting" }
                        @for p in &menus.prompts {
                            option value=(p.id) selected[greeting == Some(p.id.as_str())] { (p.name) }
                        }
                        // A greeting the account cannot see, or beyond the list, stays as it is.
                        @if let Some(g) = greeting.filter(|g| !menus.prompts.iter().any(|p| p.id == *g)) {
                            option value=(g) selected { (g) }
                        }
                    }
                }))
                (field("Seconds to wait for a key", "timeout_secs", html! {
                    input #ivr-timeout type="number" name="timeout_secs" min="1" max="60" data-type="number"
                        value=(editing.map_or(5, |i| i.timeout_secs));
                }))
                (field("Times the greeting is played", "attempts", html! {
                    input #ivr-attempts type="number" name="attempts" min="1" max="5" data-type="number"
                        value=(editing.map_or(3, |i| i.attempts));
                }))
                label.check.wide {
                    input #ivr-direct-dial type="checkbox" name="direct_dial" checked[editing.is_some_and(|i| i.direct_dial)];
                    "Callers may also dial an extension's number"
                }
                fieldset.wide {
                    legend { "Keys" }
                    p.hint { "A key whose number or name is empty is no option." }
                    table.data #ivr-options-table {
                        thead { tr { th { "Key" } th { "Sends calls to" } th { "Number or name" } } }
                        tbody {
                            @for (row, key) in IVR_KEYS.iter().enumerate() {
                                @let chosen = editing.and_then(|i| i.options.iter().find(|o| o.digit == key.to_string()));
                                tr id={ "ivr-key-" (row) } data-optional {
                                    td.mono {
                                        strong { (key) }
                                        input type="hidden" name={ "options." (row) ".digit" } value=(key);
                                    }
                                    td { (kind_select(
                                        &format!("ivr-key-{row}-type"),
                                        &format!("options.{row}.destination.type"),
                                        &format!("Key {key} sends calls to"),
                                        &ANY_DESTINATION,
                                        chosen.map(|o| o.destination.kind.as_str()),
                                    )) }
                                    td {
                                        input id={ "ivr-key-" (row) "-target" } type="text"
                                            name={ "options." (row) ".destination.target" } data-row-key
                                            aria-label={ "Key " (key) ": number or name" }
                                            value=[chosen.map(|o| &o.destination.target)];
                                    }
                                }
                            }
                        }
                    }
                    p.field-error data-for="options" hidden {}
                }
                div.wide.ivr-fallback data-optional {
                    (field("When no valid key is pressed, send calls to", "fallback.type", kind_select(
                        "ivr-fallback-type",
                        "fallback.type",
                        "When no valid key is pressed, send calls to",
                        &ANY_DESTINATION,
                        fallback.map(|d| d.kind.as_str()),
                    )))
                    (field("Number or name (empty: hang up)", "fallback.target", html! {
                        input #ivr-fallback-target type="text" name="fallback.target" data-row-key
                            value=[fallback.map(|d| &d.target)];
                    }))
                }
                div.form-actions {
                    button.btn.btn-primary #ivr-submit type="submit" { "Save IVR" }
                    @if editing.is_some() { a.btn href="/routes#ivrs" { "New IVR instead" } }
                }
            }
        }
    }
}
