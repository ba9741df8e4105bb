//! `/trunks` and `/routes`: the trunks with their state, the outbound and inbound routes; each
//! with a create form and delete buttons (grant `routing`).

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
struct Outbound {
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
struct Inbound {
    routes: Vec<InboundRoute>,
}

/// `/routes`.
pub(super) async fn routes(State(state): State<AppState>, ctx: Ctx) -> Result<Markup, Problem> {
    ctx.require(ctx.who.grants.routing)?;
    let s = || State(state.clone());
    let out: Outbound = api::answer(crate::api::outbound_list(s(), ctx.who.clone()).await).await?;
    let inb: Inbound = api::answer(crate::api::inbound_list(s(), ctx.who.clone()).await).await?;
    let content = html! {
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
                    }
                }))
                (field("Extension or ring group number", "destination.target", html! {
                    input #inbound-target type="text" name="destination.target" inputmode="numeric" required;
                }))
                div.form-actions { button.btn.btn-primary #inbound-submit type="submit" { "Add route" } }
            }
        }
    };
    Ok(layout::page(&ctx.who, Nav::Routes, "Routes", content))
}
