//! `/security` (firewall rules and default policy, bans), `/audit` (the audit log) and `/events`
//! (the event center and its notification recipients).

use axum::extract::State;
use axum::http::StatusCode;
use maud::{Markup, html};
use serde::Deserialize;
use storage::model::{AuditEntry, Event, FirewallAction, FirewallRule, Severity};

use super::layout::{self, Nav, badge, empty_row, field, form_error, when};
use super::{Ctx, Params, Problem, api, enc, given, query};
use crate::api::{AppState, Defence, ListQuery};

/// Rows per page of the audit log and the events.
const PAGE: usize = 50;

#[derive(Debug, Deserialize)]
struct Rules {
    rules: Vec<FirewallRule>,
}

#[derive(Debug, Deserialize)]
struct Policy {
    default: String,
}

#[derive(Debug, Deserialize)]
struct Ban {
    ip: String,
    active: bool,
    until: u64,
    reason: String,
    strikes: u32,
    node_id: u64,
}

#[derive(Debug, Deserialize)]
struct Bans {
    bans: Vec<Ban>,
}

fn join<T: AsRef<str>>(items: &[T], all: &str) -> String {
    if items.is_empty() {
        all.to_owned()
    } else {
        items
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `/security`.
pub(super) async fn page(State(state): State<AppState>, ctx: Ctx) -> Result<Markup, Problem> {
    ctx.require(ctx.who.grants.security)?;
    let s = || State(state.clone());
    let w = || ctx.who.clone();
    let policy: Policy = api::answer(crate::api::firewall_policy(s(), w()).await).await?;
    let rules: Rules = api::answer(crate::api::rules_list(s(), w()).await).await?;
    let bans: Bans = api::answer(crate::api::bans_list(s(), w()).await).await?;
    let defence: Defence = api::answer(crate::api::security_defence(s(), w()).await).await?;
    let rate = |r: &crate::api::Rate| format!("{} per {} s", r.limit, r.window_secs);
    let content = html! {
        div.grid-2 {
            div.card {
                h2 { "Default policy" }
                p { "What happens to traffic from a source no rule names: currently "
                    strong #fw-current { (policy.default) } "." }
                form.form-stacked #fw-policy data-api="PUT /api/v1/firewall/policy" data-then="reload" {
                    (form_error())
                    (field("Default", "default", html! {
                        select #fw-default name="default" {
                            option value="allow" selected[policy.default == "allow"] { "allow" }
                            option value="block" selected[policy.default == "block"] { "block" }
                        }
                    }))
                    p.hint { "Blocking by default needs an allow rule covering the API first." }
                    div.form-actions { button.btn.btn-primary #fw-policy-submit type="submit" { "Save policy" } }
                }
            }
            div.card {
                h2 { "Ban a source" }
                form.form-stacked #ban-create data-api="POST /api/v1/bans" data-then="reload" {
                    (form_error())
                    (field("IP address", "ip", html! {
                        input #ban-ip type="text" name="ip" required placeholder="203.0.113.7";
                    }))
                    (field("Minutes", "minutes", html! {
                        input #ban-minutes type="number" name="minutes" min="1" max="43200"
                            data-type="number" placeholder="60";
                    }))
                    div.form-actions { button.btn.btn-danger #ban-submit type="submit" { "Ban" } }
                }
            }
        }
        div.card {
            h2 { "Firewall rules" }
            div.table-wrap {
                table.data #fw-rules-table {
                    thead { tr {
                        th { "Action" } th { "Network" } th { "Services" } th { "Transports" }
                        th { "Comment" } th { "By" } th { "Created" } th.actions { "" }
                    } }
                    tbody {
                        @for r in &rules.rules {
                            tr data-rule=(r.id) {
                                td { @if r.action == FirewallAction::Allow { (badge("ok", "allow")) } @else { (badge("bad", "block")) } }
                                td.mono { (r.network) }
                                td { (join(&r.services.iter().map(|s| s.as_str()).collect::<Vec<_>>(), "all")) }
                                td { (join(&r.transports.iter().map(|t| t.as_str()).collect::<Vec<_>>(), "all")) }
                                td { (r.comment) }
                                td { (r.created_by) }
                                td { (when(r.created_at)) }
                                td.actions {
                                    button.btn.btn-small.btn-danger.fw-delete type="button"
                                        data-api={ "DELETE /api/v1/firewall/rules/" (enc(&r.id)) }
                                        data-confirm={ "Delete the rule for " (r.network) "?" }
                                        data-then="reload" { "Delete" }
                                }
                            }
                        }
                        @if rules.rules.is_empty() { (empty_row(8, "No firewall rules.")) }
                    }
                }
            }
            h2 { "New rule" }
            form.form #fw-create data-api="POST /api/v1/firewall/rules" data-then="reload" {
                (form_error())
                (field("Action", "action", html! {
                    select #fw-action name="action" {
                        option value="allow" { "allow" }
                        option value="block" { "block" }
                    }
                }))
                (field("Network", "network", html! {
                    input #fw-network type="text" name="network" required placeholder="192.0.2.0/24";
                }))
                fieldset {
                    legend { "Services (none: all)" }
                    div.checks {
                        @for s in ["sip", "media", "api"] {
                            label.check { input type="checkbox" name="services" value=(s) data-type="list"; (s) }
                        }
                    }
                    p.field-error data-for="services" hidden {}
                }
                fieldset {
                    legend { "Transports (none: all)" }
                    div.checks {
                        @for t in ["udp", "tcp", "tls"] {
                            label.check { input type="checkbox" name="transports" value=(t) data-type="list"; (t) }
                        }
                    }
                    p.field-error data-for="transports" hidden {}
                }
                (field("Comment", "comment", html! {
                    input #fw-comment type="text" name="comment" maxlength="200";
                }))
                div.form-actions { button.btn.btn-primary #fw-create-submit type="submit" { "Add rule" } }
            }
        }
        div.card {
            h2 { "Bans" }
            p.hint { "Sources the automatic defence (or an admin) banned. Lifting a ban also forgets the source's strikes." }
            div.table-wrap {
                table.data #bans-table {
                    thead { tr {
                        th { "Address" } th { "Status" } th { "Until" } th { "Reason" } th.num { "Strikes" }
                        th.num { "Node" } th.actions { "" }
                    } }
                    tbody {
                        @for b in &bans.bans {
                            tr data-ban=(b.ip) {
                                td.mono { (b.ip) }
                                td { @if b.active { (badge("bad", "banned")) } @else { (badge("muted", "expired")) } }
                                td { (when(b.until)) }
                                td { (b.reason) }
                                td.num { (b.strikes) }
                                td.num { (b.node_id) }
                                td.actions {
                                    button.btn.btn-small.ban-lift type="button"
                                        data-api={ "DELETE /api/v1/bans/" (enc(&b.ip)) }
                                        data-confirm={ "Lift the ban on " (b.ip) "?" }
                                        data-then="reload" { "Lift ban" }
                                }
                            }
                        }
                        @if bans.bans.is_empty() { (empty_row(7, "No bans.")) }
                    }
                }
            }
        }
    };
    let content = html! {
        (content)
        div.card #defence {
            h2 { "Automatic defence and passwords (node " (defence.node_id) ")" }
            p.hint { "Set in each node's pbx.toml, section [security]; shown as this node runs them." }
            table.data #defence-table {
                tbody {
                    tr { th { "SIP packets per source" } td { (rate(&defence.sip_packets)) } }
                    tr { th { "API requests per source" } td { (rate(&defence.api_requests)) } }
                    tr { th { "Failed SIP digests or web sign-ins" } td { (rate(&defence.auth_failures)) } }
                    tr { th { "First ban" } td { (defence.ban_secs / 60) " min, doubling per repeat within a day, at most " (defence.max_ban_secs / 3600) " h" } }
                    tr { th { "Trusted networks (never banned)" } td.mono {
                        @if defence.trusted_networks.is_empty() { "none" }
                        @else { (defence.trusted_networks.join(", ")) }
                    } }
                    tr { th { "Passwords" } td { "at least " (defence.password_min_len) " characters, three character classes, scored by zxcvbn; a reminder after " (defence.password_max_age_days) " days" } }
                }
            }
        }
    };
    Ok(layout::page(
        &ctx.who,
        Nav::Security,
        "Firewall & bans",
        content,
    ))
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct AfterQuery {
    #[serde(default)]
    after: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AuditPage {
    entries: Vec<AuditEntry>,
    #[serde(default)]
    next: Option<String>,
}

/// `/audit`: the audit log, oldest first as the API pages it.
pub(super) async fn audit(
    State(state): State<AppState>,
    ctx: Ctx,
    Params(q): Params<AfterQuery>,
) -> Result<Markup, Problem> {
    ctx.require(ctx.who.grants.security)?;
    let after = given(q.after);
    let raw = serde_json::json!({ "after": after, "limit": PAGE.to_string() });
    let query: crate::api::AuditQuery =
        serde_json::from_value(raw).map_err(|e| Problem::internal(e.to_string()))?;
    let page: AuditPage = api::answer(
        crate::api::list_audit(State(state.clone()), ctx.who.clone(), ListQuery(query)).await,
    )
    .await?;
    let content = html! {
        div.card {
            p.hint { "Every configuration change: who, from where, what. Oldest first." }
            div.table-wrap {
                table.data #audit-table {
                    thead { tr {
                        th { "Time" } th { "Who" } th { "From" } th { "What" } th.num { "Status" } th.num { "Node" }
                    } }
                    tbody {
                        @for e in &page.entries {
                            tr {
                                td { (when(e.at)) }
                                td { (e.actor) }
                                td.mono { (e.source) }
                                td { (e.action) }
                                td.num { (e.status) }
                                td.num { (e.node_id) }
                            }
                        }
                        @if page.entries.is_empty() { (empty_row(6, "No entries.")) }
                    }
                }
            }
            (layout::pager("/audit", page.next.as_deref(), after.is_none()))
        }
    };
    Ok(layout::page(&ctx.who, Nav::Audit, "Audit log", content))
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct EventFilters {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EventPage {
    events: Vec<Event>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Recipient {
    id: String,
    channel: String,
    address: String,
    kinds: Vec<String>,
    created_at: u64,
}

#[derive(Debug, Deserialize)]
struct Recipients {
    recipients: Vec<Recipient>,
}

fn severity_badge(s: Severity) -> Markup {
    match s {
        Severity::Info => badge("info", "info"),
        Severity::Warning => badge("warn", "warning"),
        Severity::Critical => badge("bad", "critical"),
    }
}

/// `/events`: the event center, filtered by kind and severity, and who is notified of what.
pub(super) async fn events(
    State(state): State<AppState>,
    ctx: Ctx,
    Params(f): Params<EventFilters>,
) -> Result<Markup, Problem> {
    let g = ctx.who.grants;
    ctx.require(g.monitor || g.security)?;
    let kind = given(f.kind);
    let severity = given(f.severity);
    let after = given(f.after);
    let raw = serde_json::json!({
        "kind": kind, "severity": severity, "after": after, "limit": PAGE.to_string(),
    });
    let found = match serde_json::from_value::<crate::api::EventQuery>(raw) {
        Err(_) => Err("severity: must be info, warning or critical".to_owned()),
        Ok(q) => {
            let answer =
                crate::api::list_events(State(state.clone()), ctx.who.clone(), ListQuery(q)).await;
            match api::answer::<EventPage>(answer).await {
                Ok(p) => Ok(p),
                Err(p) if p.status == StatusCode::BAD_REQUEST => Err(p.message),
                Err(p) => return Err(p),
            }
        }
    };
    let recipients = if g.security {
        let r: Recipients =
            api::answer(crate::api::recipients_list(State(state.clone()), ctx.who.clone()).await)
                .await?;
        Some(r.recipients)
    } else {
        None
    };
    let sv = severity.clone().unwrap_or_default();
    let base = format!(
        "/events{}",
        query(&[("kind", kind.as_deref().unwrap_or("")), ("severity", &sv)])
    );
    let content = html! {
        div.card {
            form.filters #ev-filter method="get" action="/events" {
                (field("Kind", "kind", html! {
                    input #ev-kind type="text" name="kind" value=(kind.as_deref().unwrap_or(""))
                        placeholder="login_failed";
                }))
                (field("Severity", "severity", html! {
                    select #ev-severity name="severity" {
                        option value="" { "Any" }
                        @for s in ["info", "warning", "critical"] {
                            option value=(s) selected[sv == s] { (s) }
                        }
                    }
                }))
                div.form-actions {
                    button.btn.btn-primary #ev-apply type="submit" { "Apply" }
                    a.btn href="/events" { "Clear" }
                }
            }
        }
        div.card {
            @match &found {
                Ok(page) => {
                    (events_table(&page.events))
                    (layout::pager(&base, page.next.as_deref(), after.is_none()))
                }
                Err(message) => {
                    p.banner.banner-bad #ev-error { (message) }
                    (events_table(&[]))
                }
            }
        }
        @if let Some(recipients) = &recipients {
            div.card {
                h2 { "Notification recipients" }
                div.table-wrap {
                    table.data #recipients-table {
                        thead { tr { th { "Channel" } th { "Address" } th { "Kinds" } th { "Added" } th.actions { "" } } }
                        tbody {
                            @for r in recipients {
                                tr data-recipient=(r.id) {
                                    td { (badge("info", &r.channel)) }
                                    td.mono { (r.address) }
                                    td { (join(&r.kinds, "all")) }
                                    td { (when(r.created_at)) }
                                    td.actions {
                                        button.btn.btn-small.btn-danger.recipient-delete type="button"
                                            data-api={ "DELETE /api/v1/notifications/recipients/" (enc(&r.id)) }
                                            data-confirm={ "Stop notifying " (r.address) "?" }
                                            data-then="reload" { "Delete" }
                                    }
                                }
                            }
                            @if recipients.is_empty() { (empty_row(5, "Nobody is notified.")) }
                        }
                    }
                }
                h2 { "Add a recipient" }
                form.form #recipient-create data-api="POST /api/v1/notifications/recipients"
                    data-then="show-secret" data-secret-label="Signing key of the webhook {address}" {
                    (form_error())
                    (field("Channel", "channel", html! {
                        select #recipient-channel name="channel" {
                            option value="email" { "e-mail" }
                            option value="webhook" { "webhook" }
                        }
                    }))
                    (field("Address", "address", html! {
                        input #recipient-address type="text" name="address" required
                            placeholder="ops@example.com or https://…";
                    }))
                    (field("Event kinds (comma-separated; empty: all)", "kinds", html! {
                        input #recipient-kinds type="text" name="kinds" data-type="list"
                            placeholder="source_banned, leader_changed";
                    }))
                    div.form-actions {
                        button.btn.btn-primary #recipient-submit type="submit" { "Add recipient" }
                        span.hint { "A webhook's signing key is shown once." }
                    }
                }
            }
        }
    };
    Ok(layout::page(&ctx.who, Nav::Events, "Events", content))
}

fn events_table(events: &[Event]) -> Markup {
    html! {
        div.table-wrap {
            table.data #events-table {
                thead { tr {
                    th { "Time" } th { "Severity" } th { "Kind" } th.num { "Node" } th { "Source" } th { "Message" }
                } }
                tbody {
                    @for e in events {
                        tr {
                            td { (when(e.at)) }
                            td { (severity_badge(e.severity)) }
                            td.mono { (e.kind) }
                            td.num { (e.node_id) }
                            td.mono { (e.source.as_deref().unwrap_or("")) }
                            td { (e.message) }
                        }
                    }
                    @if events.is_empty() { (empty_row(6, "No events.")) }
                }
            }
        }
    }
}
