//! `/setup`: the first-run wizard an admin is taken to until it is finished — password and second
//! factor, realm and time zone, VIP and network, first extensions, finish.

use axum::extract::State;
use maud::{Markup, html};
use serde::Deserialize;
use storage::model::{ClusterRecord, Extension, Setting, VipConfig};
use storage::routing::PermissionGroup;

use super::layout::{self, Nav, badge, empty_row, field, form_error, when};
use super::monitor::setup_done;
use super::{Ctx, Params, Problem, extensions};
use crate::api::AppState;

/// The setting the time zone is kept in (written by `PUT /api/v1/system`).
const TIME_ZONE_KEY: &str = "system.time_zone";

const STEPS: [&str; 5] = [
    "Admin password",
    "Realm and time zone",
    "VIP and network",
    "First extensions",
    "Finish",
];

#[derive(Debug, Default, Deserialize)]
pub(super) struct SetupQuery {
    #[serde(default)]
    step: Option<String>,
}

/// `/setup?step=1..5`.
pub(super) async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    Params(q): Params<SetupQuery>,
) -> Result<Markup, Problem> {
    ctx.require(ctx.who.is_admin())?;
    let step = q
        .step
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|s| (1..=STEPS.len()).contains(s))
        .unwrap_or(1);
    let reader = state.cluster.reader();
    let done = setup_done(reader);
    let body = match step {
        1 => {
            let account = crate::accounts::find(reader, &ctx.who.username)?;
            let changed = account.as_ref().map_or(0, |a| a.password_changed_at);
            let totp = account.as_ref().is_some_and(|a| a.totp_enabled());
            html! {
                p { "The admin account's password was chosen at its first sign-in; a second factor protects it further." }
                dl.kv {
                    dt { "Password" } dd #setup-password {
                        (badge("ok", "set")) " changed " (when(changed))
                    }
                    dt { "Second factor" } dd #setup-totp {
                        @if totp { (badge("ok", "enabled")) } @else { (badge("warn", "not set up")) }
                    }
                }
                p {
                    a.btn href="/account/password" { "Change password" } " "
                    @if !totp { a.btn href="/account/totp" { "Set up a second factor" } }
                }
            }
        }
        2 => {
            let realm = reader
                .get::<ClusterRecord>(ClusterRecord::KEY)?
                .map(|c| c.realm)
                .unwrap_or_default();
            let tz = reader
                .get::<Setting>(TIME_ZONE_KEY)?
                .map_or_else(|| "UTC".to_owned(), |s| s.value);
            let has_extensions = !reader.list_page::<Extension>(None, 1)?.is_empty();
            html! {
                form.form-stacked #setup-system data-api="PUT /api/v1/system"
                    data-then="redirect:/setup?step=3" {
                    (form_error())
                    (field("SIP realm (the domain phones register to)", "realm", html! {
                        @if has_extensions {
                            input #setup-realm type="text" name="realm" value=(realm) disabled;
                        } @else {
                            input #setup-realm type="text" name="realm" value=(realm) required;
                        }
                    }))
                    @if has_extensions {
                        p.hint #setup-realm-locked { "The realm cannot change once extensions exist: their SIP secrets are tied to it." }
                    }
                    (field("Time zone", "time_zone", html! {
                        input #setup-tz type="text" name="time_zone" value=(tz) list="setup-zones"
                            placeholder="Europe/Berlin" required;
                        datalist #setup-zones {
                            @for z in ["UTC", "Europe/London", "Europe/Berlin", "Europe/Paris", "America/New_York",
                                "America/Chicago", "America/Los_Angeles", "Asia/Tokyo", "Asia/Singapore", "Australia/Sydney"] {
                                option value=(z) {}
                            }
                        }
                    }))
                    div.form-actions { button.btn.btn-primary #setup-system-submit type="submit" { "Save and continue" } }
                }
            }
        }
        3 => {
            let vip = reader.get::<VipConfig>(VipConfig::KEY)?;
            let status = state.cluster.status().await;
            html! {
                dl.kv {
                    dt { "Virtual IP" } dd #setup-vip {
                        @match &vip { Some(v) => { (v.address) " on " (v.interface) }, None => "not configured" }
                    }
                }
                table.data #network-table {
                    thead { tr { th { "Node" } th { "API address" } th { "Health" } } }
                    tbody {
                        @for m in &status.members {
                            tr {
                                td { (m.node_id) }
                                td.mono { (m.api_addr) }
                                td { @if m.healthy { (badge("ok", "healthy")) } @else { (badge("bad", "unhealthy")) } }
                            }
                        }
                        @if status.members.is_empty() { (empty_row(3, "No members.")) }
                    }
                }
                ul.banner.banner-warn #network-problems hidden {}
                p { button.btn #network-check type="button" data-network="/api/v1/system/network" { "Check the network" } }
            }
        }
        4 => {
            let count = reader.count::<Extension>()?;
            let groups: Vec<String> = reader
                .list::<PermissionGroup>()?
                .into_iter()
                .map(|g| g.name)
                .collect();
            html! {
                p { "Extensions so far: " strong #setup-ext-count { (count) } ". "
                    "Create a few here, or import many at once on the " a href="/extensions" { "extensions page" } "." }
                (extensions::create_form(&groups))
            }
        }
        _ => html! {
            @if done {
                p #setup-complete { (badge("ok", "complete")) " Setup is finished." }
                p { a.btn.btn-primary href="/" { "Go to the dashboard" } }
            } @else {
                p { "Everything can be changed later from the portal." }
                button.btn.btn-primary #setup-finish type="button" data-api="PUT /api/v1/system"
                    data-body=r#"{"setup_done":true}"# data-then="redirect:/" { "Finish setup" }
            }
        },
    };
    let content = html! {
        ol.steps #setup-steps {
            @for (i, name) in STEPS.iter().enumerate() {
                @let n = i + 1;
                li.step.current[n == step].done[n < step] {
                    a href={ "/setup?step=" (n) } { (n) ". " (name) }
                }
            }
        }
        div.card #setup-step data-step=(step) {
            h2 { (STEPS[step - 1]) }
            (body)
            @if step < STEPS.len() {
                div.form-actions {
                    a.btn #setup-next href={ "/setup?step=" (step + 1) } { "Next ›" }
                    @if !done { a.btn #setup-later href="/?setup=later" { "Skip for now" } }
                }
            }
        }
    };
    Ok(layout::page(&ctx.who, Nav::Setup, "Setup", content))
}
