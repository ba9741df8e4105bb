//! Signing in, the account's own password and second factor, and `/me`, the user's own portal.

use axum::extract::{Extension, Path, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use storage::features::{CallHandling, FeatureCodes, PickupCodes};
use storage::web::{Grants, Scope};

use super::features::{codes_list, handling_form};
use super::layout::{self, Nav, badge, field, form_error, when};
use super::{
    Ctx, Params, Problem, Restricted, api, cdrs, contacts, given, safe_next, see_other, voicemail,
};
use crate::api::{AppState, Principal};

#[derive(Debug, Default, Deserialize)]
pub(super) struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
}

/// `/login`: the sign-in form. A session that is already open goes on to `next`.
pub(super) async fn login(
    who: Option<Extension<Principal>>,
    Params(q): Params<LoginQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if let Some(Extension(who)) = who.filter(|w| w.session.is_some()) {
        if who.must_change_password {
            return see_other("/account/password");
        }
        if who.needs_totp {
            return see_other("/account/totp");
        }
        return see_other(&next);
    }
    login_page(&next).into_response()
}

pub(super) fn login_page(next: &str) -> Markup {
    layout::bare(
        "Sign in",
        "",
        html! {
            h1 { "Sign in" }
            // Without the script the form posts nowhere useful (405) rather than putting the password
            // in the address.
            form.form-stacked #login-form method="post" action="/login" data-login data-next=(next) novalidate {
                p.form-error #login-error role="alert" hidden {}
                (field("User name", "username", html! {
                    input #login-username type="text" name="username" autocomplete="username"
                        required autofocus;
                }))
                (field("Password", "password", html! {
                    input #login-password type="password" name="password"
                        autocomplete="current-password" required;
                }))
                div.field #login-totp-field hidden {
                    label {
                        span.label-text { "Code from your authenticator app" }
                        input #login-totp type="text" name="totp_code" inputmode="numeric"
                            autocomplete="one-time-code" maxlength="8";
                    }
                    p.field-error data-for="totp_code" hidden {}
                }
                button.btn.btn-primary #login-submit type="submit" { "Sign in" }
            }
        },
    )
}

/// The frame of an account page: the full portal, or only the form while the session may do
/// nothing else (a password to change, a second factor to enrol).
fn account_frame(who: &Principal, title: &str, content: Markup) -> Markup {
    if who.must_change_password || who.needs_totp {
        let csrf = who.session.as_ref().map_or("", |s| s.csrf.as_str());
        layout::bare(
            title,
            csrf,
            html! {
                h1 { (title) }
                (content)
                div.bare-footer {
                    span.muted { "Signed in as " strong { (who.username) } }
                    button.btn.btn-small #logout type="button" data-api="DELETE /api/v1/session"
                        data-then="redirect:/login" { "Sign out" }
                }
            },
        )
    } else {
        layout::page(who, Nav::Me, title, html! { div.card { (content) } })
    }
}

/// `/account/password`: current, new and repeated password.
pub(super) async fn password(Restricted { who }: Restricted) -> Markup {
    let then = if who.needs_totp {
        "redirect:/account/totp"
    } else {
        "redirect:/"
    };
    account_frame(&who, "Change password", password_form(&who, then))
}

pub(super) fn password_form(who: &Principal, then: &str) -> Markup {
    html! {
        @if who.must_change_password {
            div.banner.banner-warn #password-required {
                "You must choose a new password before you can use the portal."
            }
        }
        form.form-stacked #password-form data-api="POST /api/v1/account/password" data-then=(then) {
            (form_error())
            (field("Current password", "current_password", html! {
                input #pw-current type="password" name="current_password"
                    autocomplete="current-password" required;
            }))
            (field("New password", "new_password", html! {
                input #pw-new type="password" name="new_password" autocomplete="new-password"
                    required;
            }))
            (field("Repeat the new password", "repeat_password", html! {
                input #pw-repeat type="password" name="repeat_password" autocomplete="new-password"
                    data-skip data-match="new_password" required;
            }))
            p.hint { "At least 10 characters that are hard to guess; not your user name." }
            div.form-actions { button.btn.btn-primary #pw-submit type="submit" { "Change password" } }
        }
    }
}

/// `/account/totp`: enrol a second factor (secret and `otpauth://` URI shown as text), then
/// confirm it with one code.
pub(super) async fn totp(
    State(state): State<AppState>,
    Restricted { who }: Restricted,
) -> Result<Markup, Problem> {
    let enabled = crate::accounts::find(state.cluster.reader(), &who.username)?
        .is_some_and(|a| a.totp_enabled());
    let content = html! {
        @if enabled {
            p #totp-enabled {
                (badge("ok", "enabled")) " A second factor protects this account. "
                "If you lose the device, an administrator can reset it."
            }
        } @else {
            @if who.needs_totp {
                div.banner.banner-warn #totp-required {
                    "Your administrator requires a second factor for this account. Set it up to continue."
                }
            }
            p { "Use an authenticator app (one that shows six-digit codes that change every 30 seconds)." }
            button.btn.btn-primary #totp-start type="button" data-api="POST /api/v1/account/totp"
                data-then="totp" { "Set up a second factor" }
            div #totp-enrol hidden {
                p { "Enter this key in the app, or import the link:" }
                dl.kv {
                    dt { "Key" } dd { code.secret-value #totp-secret {} }
                    dt { "Link" } dd { code.secret-value #totp-uri {} }
                }
                form.form-stacked #totp-confirm data-api="POST /api/v1/account/totp/confirm"
                    data-then="redirect:/" {
                    (form_error())
                    (field("Code shown by the app", "code", html! {
                        input #totp-code type="text" name="code" inputmode="numeric"
                            autocomplete="one-time-code" maxlength="8" required;
                    }))
                    div.form-actions { button.btn.btn-primary #totp-submit type="submit" { "Confirm" } }
                }
            }
        }
    };
    Ok(account_frame(&who, "Second factor", content))
}

/// The account as `GET /api/v1/account` shows it.
#[derive(Debug, Deserialize)]
pub(super) struct Me {
    pub username: String,
    pub role: String,
    pub extension: Option<String>,
    pub email: Option<String>,
    #[serde(default)]
    pub totp_enabled: bool,
    #[serde(default)]
    pub password_changed_at: u64,
    pub grants: Grants,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct MeQuery {
    #[serde(default)]
    after: Option<String>,
}

/// `/me`: the account, its own extension's do-not-disturb and forwarding, its voicemail (messages,
/// settings, PIN, greetings), its own calls, and links to change the password and second factor.
pub(super) async fn me(
    State(state): State<AppState>,
    ctx: Ctx,
    Params(q): Params<MeQuery>,
) -> Result<Markup, Problem> {
    let after = given(q.after);
    let me: Me =
        api::answer(crate::api::my_account(State(state.clone()), ctx.who.clone()).await).await?;
    let calls = match (&me.extension, me.grants.cdrs) {
        (Some(ext), Scope::Own | Scope::All) => {
            let raw = crate::api::RawCdrQuery {
                extension: Some(ext.clone()),
                after: after.clone(),
                limit: Some(cdrs::PAGE.to_string()),
                ..Default::default()
            };
            Some(cdrs::fetch(&state, &ctx.who, raw).await)
        }
        _ => None,
    };
    let handling = match &me.extension {
        Some(ext) => Some(
            api::answer::<CallHandling>(
                crate::api::call_handling(State(state.clone()), ctx.who.clone(), Path(ext.clone()))
                    .await,
            )
            .await,
        ),
        None => None,
    };
    let mailbox = match &me.extension {
        Some(ext) => Some((
            ext.clone(),
            voicemail::load_mine(&state, &ctx.who, ext).await,
        )),
        None => None,
    };
    let contacts = match &me.extension {
        Some(ext) => Some(contacts::load_card(&state, &ctx.who, ext).await),
        None => None,
    };
    let codes: FeatureCodes =
        api::answer(crate::api::feature_codes(State(state.clone()), ctx.who.clone()).await).await?;
    let pickup_codes: PickupCodes =
        api::answer(crate::api::pickup_codes(State(state.clone()), ctx.who.clone()).await).await?;
    let content = html! {
        div.grid-2 {
            div.card #me-account {
                h2 { "Account" }
                dl.kv {
                    dt { "User name" } dd #me-username { (me.username) }
                    dt { "Role" } dd #me-role { (me.role) }
                    dt { "Extension" } dd #me-extension { (me.extension.as_deref().unwrap_or("—")) }
                    dt { "E-mail" } dd #me-email { (me.email.as_deref().unwrap_or("—")) }
                    dt { "Password changed" } dd { (when(me.password_changed_at)) }
                    dt { "Second factor" } dd #me-totp {
                        @if me.totp_enabled { (badge("ok", "enabled")) } @else { (badge("muted", "not set up")) }
                    }
                }
            }
            div.card #me-security {
                h2 { "Sign-in" }
                p { a.btn #me-password href="/account/password" { "Change password" } }
                @if !me.totp_enabled {
                    p { a.btn #me-totp-setup href="/account/totp" { "Set up a second factor" } }
                }
            }
        }
        @if let Some(handling) = handling {
            div.card #me-handling {
                h2 { "Calls to my extension" }
                @match handling {
                    Ok(h) => { (my_handling(&h, &codes, &pickup_codes)) }
                    Err(p) => { p.banner.banner-bad #handling-error { (p.message) } }
                }
            }
        }
        @if let Some((ext, mine)) = &mailbox {
            (voicemail::mine_card(ext, mine))
        }
        @if let Some(list) = &contacts {
            (contacts::card(list))
        }
        @if let Some(calls) = calls {
            div.card #me-calls {
                h2 { "My calls" }
                @match calls {
                    Ok(page) => {
                        (cdrs::table(&page.cdrs))
                        (layout::pager("/me", page.next.as_deref(), after.is_none()))
                    }
                    Err(p) => { p.banner.banner-bad #cdr-error { (p.message) } }
                }
            }
        }
    };
    Ok(layout::page(&ctx.who, Nav::Me, "My account", content))
}

/// The user's own do-not-disturb (a one-click toggle that keeps the forwards) and forwarding, and
/// the codes their phone can dial instead (with the pickup codes).
fn my_handling(h: &CallHandling, codes: &FeatureCodes, pickup_codes: &PickupCodes) -> Markup {
    let url = format!("/api/v1/extensions/{}/handling", super::enc(&h.extension));
    let toggled = CallHandling {
        dnd: !h.dnd,
        ..h.clone()
    };
    let toggle_body = serde_json::to_string(&toggled).unwrap_or_default();
    html! {
        p #me-dnd-state {
            "Do not disturb: "
            @if h.dnd { (badge("warn", "on")) } @else { (badge("ok", "off")) }
            " "
            button.btn.btn-small #me-dnd-toggle type="button" data-api={ "PUT " (url) }
                data-body=(toggle_body) data-then="reload" {
                @if h.dnd { "Turn do-not-disturb off" } @else { "Turn do-not-disturb on" }
            }
        }
        div.grid-2 {
            div { (handling_form(h, Some("me-handling"))) }
            div {
                h3 { "From the phone" }
                p.hint {
                    "Dial these codes on your phone to change the same settings, or to answer a "
                    "call ringing a colleague who shares a pickup group with you."
                }
                (codes_list(codes, pickup_codes))
            }
        }
    }
}
