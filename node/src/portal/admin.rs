//! `/accounts` (web accounts and roles) and `/settings/web` (the portal's sign-in policy): the admin
//! role's alone.

use axum::extract::State;
use maud::{Markup, html};
use serde::Deserialize;
use storage::web::{Grants, Scope};

use super::layout::{self, Nav, badge, empty_row, field, form_error, when};
use super::{Ctx, Problem, api, enc};
use crate::api::AppState;

/// An account as `GET /api/v1/accounts` shows it.
#[derive(Debug, Deserialize)]
struct Account {
    username: String,
    role: String,
    #[serde(default)]
    extension: Option<String>,
    #[serde(default)]
    email: Option<String>,
    disabled: bool,
    must_change_password: bool,
    totp_enabled: bool,
    #[serde(default)]
    created_at: u64,
}

#[derive(Debug, Deserialize)]
struct Accounts {
    accounts: Vec<Account>,
}

#[derive(Debug, Deserialize)]
struct Role {
    name: String,
    #[serde(default)]
    description: String,
    grants: Grants,
    #[serde(default)]
    built_in: bool,
}

#[derive(Debug, Deserialize)]
struct Roles {
    roles: Vec<Role>,
}

fn scope_name(s: Scope) -> &'static str {
    match s {
        Scope::None => "none",
        Scope::Own => "own",
        Scope::All => "all",
    }
}

fn grant_badges(g: &Grants) -> Markup {
    let flags = [
        (g.extensions, "extensions"),
        (g.routing, "routing"),
        (g.security, "security"),
        (g.monitor, "monitor"),
        (g.hang_up, "hang up"),
    ];
    html! {
        span.badges {
            @for (on, name) in flags { @if on { (badge("info", name)) } }
            @if g.cdrs != Scope::None { (badge("info", &format!("CDRs: {}", scope_name(g.cdrs)))) }
            @if g.recordings != Scope::None {
                (badge("info", &format!("recordings: {}", scope_name(g.recordings))))
            }
        }
    }
}

fn role_options(roles: &[Role], selected: &str) -> Markup {
    html! {
        @for r in roles { option value=(r.name) selected[r.name == selected] { (r.name) } }
    }
}

/// `/accounts`.
pub(super) async fn accounts(State(state): State<AppState>, ctx: Ctx) -> Result<Markup, Problem> {
    ctx.require(ctx.who.is_admin())?;
    let s = || State(state.clone());
    let list: Accounts = api::answer(crate::api::list_accounts(s(), ctx.who.clone()).await).await?;
    let roles: Roles = api::answer(crate::api::roles_list(s(), ctx.who.clone()).await).await?;
    let content = html! {
        div.card {
            h2 { "Web accounts" }
            div.table-wrap {
                table.data #accounts-table {
                    thead { tr {
                        th { "User name" } th { "Role" } th { "Extension" } th { "E-mail" } th { "Status" }
                        th { "Created" } th.actions { "Actions" }
                    } }
                    tbody {
                        @for a in &list.accounts {
                            (account_row(a, &roles.roles, a.username == ctx.who.username))
                        }
                        @if list.accounts.is_empty() { (empty_row(7, "No accounts.")) }
                    }
                }
            }
        }
        div.card {
            h2 { "New account" }
            form.form #account-create data-api="POST /api/v1/accounts" data-then="show-secret"
                data-secret-label="Password of {username} (to be changed at the first sign-in)" {
                (form_error())
                (field("User name", "username", html! {
                    input #account-username type="text" name="username" required autocomplete="off";
                }))
                (field("Role", "role", html! {
                    select #account-role name="role" { (role_options(&roles.roles, "user")) }
                }))
                (field("Extension", "extension", html! {
                    input #account-extension type="text" name="extension" inputmode="numeric";
                }))
                (field("E-mail", "email", html! {
                    input #account-email type="email" name="email" autocomplete="off";
                }))
                div.form-actions {
                    button.btn.btn-primary #account-submit type="submit" { "Create account" }
                    span.hint { "A password is generated and shown once." }
                }
            }
        }
        div.card {
            h2 { "Roles" }
            div.table-wrap {
                table.data #roles-table {
                    thead { tr { th { "Role" } th { "Description" } th { "Grants" } th.actions { "" } } }
                    tbody {
                        @for r in &roles.roles {
                            tr data-role=(r.name) {
                                td { strong { (r.name) } @if r.built_in { " " (badge("muted", "built-in")) } }
                                td { (r.description) }
                                td { (grant_badges(&r.grants)) }
                                td.actions {
                                    @if !r.built_in {
                                        button.btn.btn-small.btn-danger.role-delete type="button"
                                            data-api={ "DELETE /api/v1/roles/" (enc(&r.name)) }
                                            data-confirm={ "Delete role " (r.name) "?" } data-then="reload" { "Delete" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "New role" }
            form.form #role-create data-api="POST /api/v1/roles" data-then="reload" {
                (form_error())
                (field("Name", "name", html! { input #role-name type="text" name="name" required; }))
                (field("Description", "description", html! {
                    input #role-description type="text" name="description" maxlength="200";
                }))
                fieldset.wide {
                    legend { "May" }
                    div.checks {
                        @for (name, label) in [
                            ("grants.extensions", "manage extensions"),
                            ("grants.routing", "manage trunks and routes"),
                            ("grants.security", "manage security"),
                            ("grants.monitor", "monitor"),
                            ("grants.hang_up", "hang up calls"),
                        ] {
                            label.check { input type="checkbox" name=(name); (label) }
                        }
                    }
                }
                (field("Call records", "grants.cdrs", html! {
                    select #role-cdrs name="grants.cdrs" {
                        option value="none" { "none" } option value="own" { "own" } option value="all" { "all" }
                    }
                }))
                (field("Recordings", "grants.recordings", html! {
                    select #role-recordings name="grants.recordings" {
                        option value="none" { "none" } option value="own" { "own" } option value="all" { "all" }
                    }
                }))
                div.form-actions { button.btn.btn-primary #role-submit type="submit" { "Create role" } }
            }
        }
    };
    Ok(layout::page(
        &ctx.who,
        Nav::Accounts,
        "Web accounts",
        content,
    ))
}

fn account_row(a: &Account, roles: &[Role], me: bool) -> Markup {
    let url = format!("/api/v1/accounts/{}", enc(&a.username));
    html! {
        tr data-account=(a.username) {
            td { strong { (a.username) } @if me { " " (badge("muted", "you")) } }
            td { (a.role) }
            td.mono { (a.extension.as_deref().unwrap_or("")) }
            td { (a.email.as_deref().unwrap_or("")) }
            td {
                span.badges {
                    @if a.disabled { (badge("bad", "disabled")) } @else { (badge("ok", "active")) }
                    @if a.must_change_password { (badge("warn", "must change password")) }
                    @if a.totp_enabled { (badge("info", "2FA")) }
                }
            }
            td { (when(a.created_at)) }
            td.actions {
                details.row-edit {
                    summary.btn.btn-small.account-edit-open { "Edit" }
                    div.popover {
                        form.form-stacked.account-edit data-api={ "PATCH " (url) } data-then="reload" {
                            (form_error())
                            (field("Role", "role", html! { select name="role" { (role_options(roles, &a.role)) } }))
                            (field("Extension", "extension", html! {
                                input type="text" name="extension" inputmode="numeric" data-empty="null"
                                    value=(a.extension.as_deref().unwrap_or(""));
                            }))
                            (field("E-mail", "email", html! {
                                input type="email" name="email" data-empty="null"
                                    value=(a.email.as_deref().unwrap_or(""));
                            }))
                            div.form-actions { button.btn.btn-primary type="submit" { "Save" } }
                        }
                    }
                }
                @if a.disabled {
                    button.btn.btn-small.account-toggle type="button" data-api={ "PATCH " (url) }
                        data-body=r#"{"disabled":false}"# data-then="reload" { "Enable" }
                } @else {
                    button.btn.btn-small.account-toggle type="button" data-api={ "PATCH " (url) }
                        data-body=r#"{"disabled":true}"# data-confirm={ "Disable " (a.username) "? Their sessions end." }
                        data-then="reload" { "Disable" }
                }
                button.btn.btn-small.account-reset-password type="button" data-api={ "POST " (url) "/password" }
                    data-body="{}" data-confirm={ "Reset the password of " (a.username) "?" }
                    data-then="show-secret" data-secret-label="New password of {username}" { "Reset password" }
                @if a.totp_enabled {
                    button.btn.btn-small.account-reset-totp type="button" data-api={ "PATCH " (url) }
                        data-body=r#"{"reset_totp":true}"# data-confirm={ "Remove the second factor of " (a.username) "?" }
                        data-then="reload" { "Reset 2FA" }
                }
                button.btn.btn-small.btn-danger.account-delete type="button" data-api={ "DELETE " (url) }
                    data-confirm={ "Delete the account " (a.username) "?" } data-then="reload" { "Delete" }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct WebPolicy {
    require_admin_totp: bool,
    idle_minutes: u64,
}

/// `/settings/web`: second factor for admins, idle timeout.
pub(super) async fn web_settings(
    State(state): State<AppState>,
    ctx: Ctx,
) -> Result<Markup, Problem> {
    ctx.require(ctx.who.is_admin())?;
    let p: WebPolicy =
        api::answer(crate::api::web_policy(State(state.clone()), ctx.who.clone()).await).await?;
    let content = html! {
        div.card {
            h2 { "Sign-in policy" }
            form.form-stacked #policy-form data-api="PUT /api/v1/web/policy" data-then="notice"
                data-notice="Policy saved." {
                (form_error())
                label.check {
                    input #policy-totp type="checkbox" name="require_admin_totp" checked[p.require_admin_totp];
                    "Admins must use a second factor (TOTP)"
                }
                p.field-error data-for="require_admin_totp" hidden {}
                (field("Sign out after this many idle minutes (5 to 480)", "idle_minutes", html! {
                    input #policy-idle type="number" name="idle_minutes" min="5" max="480"
                        data-type="number" value=(p.idle_minutes) required;
                }))
                div.form-actions { button.btn.btn-primary #policy-submit type="submit" { "Save" } }
            }
        }
    };
    Ok(layout::page(
        &ctx.who,
        Nav::WebPolicy,
        "Portal policy",
        content,
    ))
}
