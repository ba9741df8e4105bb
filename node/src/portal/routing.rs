//! `/trunks` and `/routes`: the trunks with their state, the outbound and inbound routes, and the
//! time conditions inbound routes may send calls to; each with a create form and delete buttons
//! (grant `routing`).

use axum::extract::State;
use maud::{Markup, html};
use serde::Deserialize;
use storage::routing::{OutboundRoute, RouteClass, TrunkStatus};

use super::layout::{self, Nav, badge, empty_row, field, form_error, when};
use super::{Ctx, Problem, api, enc};
use crate::api::AppState;

/// A trunk as `GET /api/v1/trunks` shows it.
#[derive(Debug, Deserialize)]
struct Trunk {
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
    let content = html! {
        div.card {
            div.table-wrap {
                table.data #trunks-table {
                    thead { tr {
                        th { "Name" } th { "Kind" } th { "Host" } th { "User" } th { "State" } th { "Detail" }
                        th { "DIDs" } th.num { "Max calls" } th.actions { "" }
                    } }
                    tbody {
                        @for (t, s) in &rows {
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
                                td.actions {
                                    button.btn.btn-small.btn-danger.trunk-delete type="button"
                                        data-api={ "DELETE /api/v1/trunks/" (enc(&t.name)) }
                                        data-confirm={ "Delete trunk " (t.name) "?" } data-then="reload" { "Delete" }
                                }
                            }
                        }
                        @if rows.is_empty() { (empty_row(9, "No trunks.")) }
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
    };
    Ok(layout::page(&ctx.who, Nav::Trunks, "Trunks", content))
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
}

#[derive(Debug, Deserialize)]
struct Destination {
    #[serde(rename = "type")]
    kind: String,
    target: String,
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
    html! { (d.kind.replace('_', " ")) " " span.mono { (d.target) } }
}

/// A destination's type and target fields, named `{name}.type` and `{name}.target`; `when` is
/// `open` or `closed`, as the labels say it.
fn destination_fields(when: &str, name: &str) -> Markup {
    html! {
        (field(&format!("When {when}, send calls to"), &format!("{name}.type"), html! {
            select id={ "time-condition-" (name) "-type" } name={ (name) ".type" } {
                option value="extension" { "extension" }
                option value="ring_group" { "ring group" }
            }
        }))
        (field(&format!("Number (when {when})"), &format!("{name}.target"), html! {
            input id={ "time-condition-" (name) "-target" } type="text" name={ (name) ".target" }
                inputmode="numeric" required;
        }))
    }
}

/// `/routes`.
pub(super) async fn routes(State(state): State<AppState>, ctx: Ctx) -> Result<Markup, Problem> {
    ctx.require(ctx.who.grants.routing)?;
    let s = || State(state.clone());
    let out: Outbound = api::answer(crate::api::outbound_list(s(), ctx.who.clone()).await).await?;
    let inb: Inbound = api::answer(crate::api::inbound_list(s(), ctx.who.clone()).await).await?;
    let conds: TimeConditions =
        api::answer(crate::api::time_conditions_list(s(), ctx.who.clone()).await).await?;
    let zone = crate::api::time_condition_zone(state.cluster.reader());
    let content = render(&out, &inb, &conds, &zone);
    Ok(layout::page(&ctx.who, Nav::Routes, "Routes", content))
}

/// The routes page's content; `zone` is the cluster's time zone.
pub(super) fn render(out: &Outbound, inb: &Inbound, conds: &TimeConditions, zone: &str) -> Markup {
    html! {
        div.card {
            h2 { "Outbound routes" }
            p.hint { "Tried in order of position, then name." }
            div.table-wrap {
                table.data #outbound-table {
                    thead { tr {
                        th.num { "Position" } th { "Name" } th { "Patterns" } th.num { "Strip" } th { "Prepend" }
                        th { "Class" } th { "Trunks" } th { "Caller ID" } th.actions { "" }
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
                                td.actions {
                                    button.btn.btn-small.btn-danger.route-delete type="button"
                                        data-api={ "DELETE /api/v1/routes/outbound/" (enc(&r.name)) }
                                        data-confirm={ "Delete outbound route " (r.name) "?" } data-then="reload" { "Delete" }
                                }
                            }
                        }
                        @if out.routes.is_empty() { (empty_row(9, "No outbound routes.")) }
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
                        th { "Name" } th { "DID" } th { "Caller ID" } th { "Trunk" } th { "Destination" } th.actions { "" }
                    } }
                    tbody {
                        @for r in &inb.routes {
                            tr data-route=(r.name) {
                                td { strong { (r.name) } }
                                td.mono { (r.did) " " span.muted { "(" (r.did_kind) ")" } }
                                td.mono { (r.caller_id.as_deref().unwrap_or("")) }
                                td { (r.trunk.as_deref().unwrap_or("any")) }
                                td { (r.destination.kind.replace('_', " ")) " " span.mono { (r.destination.target) } }
                                td.actions {
                                    button.btn.btn-small.btn-danger.route-delete type="button"
                                        data-api={ "DELETE /api/v1/routes/inbound/" (enc(&r.name)) }
                                        data-confirm={ "Delete inbound route " (r.name) "?" } data-then="reload" { "Delete" }
                                }
                            }
                        }
                        @if inb.routes.is_empty() { (empty_row(6, "No inbound routes.")) }
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
                (field("Destination", "destination.type", html! {
                    select #inbound-target-type name="destination.type" {
                        option value="extension" { "extension" }
                        option value="ring_group" { "ring group" }
                        option value="time_condition" { "time condition" }
                    }
                }))
                (field("Extension or ring group number, or time condition name", "destination.target", html! {
                    input #inbound-target type="text" name="destination.target" required;
                }))
                div.form-actions { button.btn.btn-primary #inbound-submit type="submit" { "Add route" } }
            }
        }
        (time_conditions(conds, zone))
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
