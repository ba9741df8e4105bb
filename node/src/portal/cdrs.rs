//! `/cdrs`: call detail records, filtered and paged by the API's own CDR query, with a CSV export
//! of the same selection.

use axum::extract::State;
use maud::{Markup, html};
use serde::Deserialize;
use storage::model::Disposition;
use storage::web::Scope;

use super::layout::{self, Nav, badge, duration, empty_row, field, when};
use super::{Ctx, Params, Problem, api, given, query};
use crate::api::{AppState, ListQuery, Principal, RawCdrQuery};

/// Rows per page.
pub(super) const PAGE: usize = 50;

/// A CDR as `GET /api/v1/cdrs` shows it.
#[derive(Debug, Deserialize)]
pub(super) struct Cdr {
    pub id: String,
    pub caller: String,
    pub callee: String,
    pub started_at: u64,
    #[serde(default)]
    pub answered_at: Option<u64>,
    pub duration_secs: u64,
    pub disposition: String,
    #[serde(default)]
    pub hangup_side: String,
    #[serde(default)]
    pub cause: String,
    pub node_id: u64,
    #[serde(default)]
    pub direction: String,
    #[serde(default)]
    pub trunk: String,
    /// The call's recording segments the account may hear.
    #[serde(default)]
    pub recordings: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CdrList {
    pub cdrs: Vec<Cdr>,
    #[serde(default)]
    pub next: Option<String>,
}

/// A page of CDRs as the API answers `raw` for `who`.
pub(super) async fn fetch(
    state: &AppState,
    who: &Principal,
    raw: RawCdrQuery,
) -> Result<CdrList, Problem> {
    api::answer(crate::api::list_cdrs(State(state.clone()), who.clone(), ListQuery(raw)).await)
        .await
}

fn disposition_badge(d: &str) -> Markup {
    let kind = match d {
        "answered" => "ok",
        "busy" | "no_answer" | "cancelled" => "warn",
        "denied" | "failed" => "bad",
        _ => "muted",
    };
    badge(kind, d)
}

/// The CDR table (`#cdr-table`).
pub(super) fn table(rows: &[Cdr]) -> Markup {
    html! {
        div.table-wrap {
            table.data #cdr-table {
                thead { tr {
                    th { "Started" } th { "Caller" } th { "Callee" } th { "Direction" } th { "Trunk" }
                    th { "Result" } th.num { "Talk time" } th { "Ended by" } th.num { "Node" }
                    th { "Recording" }
                } }
                tbody {
                    @for c in rows {
                        tr data-cdr=(c.id) {
                            td { (when(c.started_at)) }
                            td { (c.caller) }
                            td { (c.callee) }
                            td { (c.direction) }
                            td { (c.trunk) }
                            td { (disposition_badge(&c.disposition)) }
                            td.num {
                                @if c.answered_at.is_some() { (duration(c.duration_secs)) } @else { "—" }
                            }
                            td { (c.hangup_side) @if !c.cause.is_empty() { " · " span.muted { (c.cause) } } }
                            td.num { (c.node_id) }
                            td {
                                // Each segment plays in the browser (a download: it is audited).
                                @for (n, id) in c.recordings.iter().enumerate() {
                                    a.recording href={ "/api/v1/audio/" (id) "/content" }
                                        title={ "Segment " (n + 1) } { "▶ " (n + 1) }
                                    " "
                                }
                            }
                        }
                    }
                    @if rows.is_empty() { (empty_row(10, "No call records match.")) }
                }
            }
        }
    }
}

/// The page's filters, as the form sends them.
#[derive(Debug, Default, Deserialize)]
pub(super) struct CdrFilters {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    extension: Option<String>,
    #[serde(default)]
    disposition: Option<String>,
    #[serde(default)]
    direction: Option<String>,
    #[serde(default)]
    trunk: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

/// A `datetime-local` value (`2026-11-28T10:00`, taken as UTC) as the RFC 3339 time the API reads;
/// anything else is passed on for the API to judge.
pub(super) fn api_time(s: &str) -> String {
    let b = s.as_bytes();
    let local = |n: usize| b.len() == n && b.get(10) == Some(&b'T') && !s.contains(['Z', '+']);
    if local(16) {
        format!("{s}:00Z")
    } else if local(19) {
        format!("{s}Z")
    } else {
        s.to_owned()
    }
}

/// `/cdrs`.
pub(super) async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    Params(f): Params<CdrFilters>,
) -> Result<Markup, Problem> {
    let g = ctx.who.grants;
    ctx.require(g.cdrs != Scope::None)?;
    let own = g.cdrs == Scope::Own;
    let from = given(f.from);
    let to = given(f.to);
    // An account that sees only its own calls asks for its own extension; the API enforces it.
    let extension = if own {
        ctx.who.extension.clone()
    } else {
        given(f.extension)
    };
    let disposition = given(f.disposition);
    let direction = given(f.direction);
    let trunk = given(f.trunk);
    let after = given(f.after);
    let api_from = from.as_deref().map(api_time);
    let api_to = to.as_deref().map(api_time);
    let raw = RawCdrQuery {
        from: api_from.clone(),
        to: api_to.clone(),
        extension: extension.clone(),
        disposition: disposition.clone(),
        direction: direction.clone(),
        trunk: trunk.clone(),
        after: after.clone(),
        limit: Some(PAGE.to_string()),
        ..Default::default()
    };
    let found = if own && extension.is_none() {
        Ok(CdrList {
            cdrs: Vec::new(),
            next: None,
        })
    } else {
        match fetch(&state, &ctx.who, raw).await {
            Ok(list) => Ok(list),
            // A filter the API refuses is shown above the table, with the filters to correct it.
            Err(p) if p.status == axum::http::StatusCode::BAD_REQUEST => Err(p.message),
            Err(p) => return Err(p),
        }
    };
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    let filters = [
        ("from", s(&from)),
        ("to", s(&to)),
        ("extension", if own { String::new() } else { s(&extension) }),
        ("disposition", s(&disposition)),
        ("direction", s(&direction)),
        ("trunk", s(&trunk)),
    ];
    let pairs: Vec<(&str, &str)> = filters.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let base = format!("/cdrs{}", query(&pairs));
    let export_pairs = [
        ("format", "csv"),
        ("from", api_from.as_deref().unwrap_or("")),
        ("to", api_to.as_deref().unwrap_or("")),
        ("extension", extension.as_deref().unwrap_or("")),
        ("disposition", disposition.as_deref().unwrap_or("")),
        ("direction", direction.as_deref().unwrap_or("")),
        ("trunk", trunk.as_deref().unwrap_or("")),
    ];
    let export = format!("/api/v1/cdrs{}", query(&export_pairs));
    let content = html! {
        div.card {
            form.filters #cdr-filter method="get" action="/cdrs" {
                (field("From (UTC)", "from", html! {
                    input #cdr-from type="datetime-local" name="from" step="1" value=(s(&from));
                }))
                (field("To (UTC)", "to", html! {
                    input #cdr-to type="datetime-local" name="to" step="1" value=(s(&to));
                }))
                (field("Extension", "extension", html! {
                    @if own {
                        input #cdr-extension type="text" value=(s(&extension)) disabled;
                    } @else {
                        input #cdr-extension type="text" name="extension" inputmode="numeric"
                            value=(s(&extension));
                    }
                }))
                (field("Result", "disposition", html! {
                    select #cdr-disposition name="disposition" {
                        option value="" { "Any" }
                        @for d in Disposition::ALL {
                            option value=(d.as_str()) selected[disposition.as_deref() == Some(d.as_str())] {
                                (d.as_str())
                            }
                        }
                    }
                }))
                (field("Direction", "direction", html! {
                    select #cdr-direction name="direction" {
                        option value="" { "Any" }
                        @for d in ["internal", "inbound", "outbound"] {
                            option value=(d) selected[direction.as_deref() == Some(d)] { (d) }
                        }
                    }
                }))
                (field("Trunk", "trunk", html! {
                    input #cdr-trunk type="text" name="trunk" value=(s(&trunk));
                }))
                div.form-actions {
                    button.btn.btn-primary #cdr-apply type="submit" { "Apply" }
                    a.btn #cdr-clear href="/cdrs" { "Clear" }
                    a.btn #cdr-export href=(export) download { "Export CSV" }
                }
            }
        }
        div.card {
            @match &found {
                Ok(list) => {
                    (table(&list.cdrs))
                    (layout::pager(&base, list.next.as_deref(), after.is_none()))
                }
                Err(message) => {
                    p.banner.banner-bad #cdr-error { (message) }
                    (table(&[]))
                }
            }
        }
    };
    Ok(layout::page(&ctx.who, Nav::Cdrs, "Call records", content))
}
