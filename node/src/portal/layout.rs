//! The frame every page shares (head, left navigation, header with the account and sign-out), the
//! error pages, and small pieces the pages repeat: badges, times, form fields, pagers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use storage::web::Scope;

use super::Problem;
use crate::api::Principal;

/// The version the serving node runs, shown in the header and on the dashboard.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// An entry of the left navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Dashboard,
    Extensions,
    Devices,
    RingGroups,
    Trunks,
    Routes,
    Cdrs,
    Audio,
    Contacts,
    Events,
    Security,
    Audit,
    Cluster,
    Accounts,
    WebPolicy,
    Backups,
    Setup,
    Me,
}

impl Nav {
    pub(crate) const ALL: [Self; 18] = [
        Self::Dashboard,
        Self::Extensions,
        Self::Devices,
        Self::RingGroups,
        Self::Trunks,
        Self::Routes,
        Self::Cdrs,
        Self::Audio,
        Self::Contacts,
        Self::Events,
        Self::Security,
        Self::Audit,
        Self::Cluster,
        Self::Accounts,
        Self::WebPolicy,
        Self::Backups,
        Self::Setup,
        Self::Me,
    ];

    pub(crate) fn href(self) -> &'static str {
        match self {
            Self::Dashboard => "/",
            Self::Extensions => "/extensions",
            Self::Devices => "/devices",
            Self::RingGroups => "/ring-groups",
            Self::Trunks => "/trunks",
            Self::Routes => "/routes",
            Self::Cdrs => "/cdrs",
            Self::Audio => "/audio",
            Self::Contacts => "/contacts",
            Self::Events => "/events",
            Self::Security => "/security",
            Self::Audit => "/audit",
            Self::Cluster => "/cluster",
            Self::Accounts => "/accounts",
            Self::WebPolicy => "/settings/web",
            Self::Backups => "/backups",
            Self::Setup => "/setup",
            Self::Me => "/me",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Dashboard => "Dashboard",
            Self::Extensions => "Extensions",
            Self::Devices => "Devices",
            Self::RingGroups => "Ring groups",
            Self::Trunks => "Trunks",
            Self::Routes => "Routes",
            Self::Cdrs => "Call records",
            Self::Audio => "Audio",
            Self::Contacts => "Phonebook",
            Self::Events => "Events",
            Self::Security => "Firewall & bans",
            Self::Audit => "Audit log",
            Self::Cluster => "Cluster",
            Self::Accounts => "Web accounts",
            Self::WebPolicy => "Portal policy",
            Self::Backups => "Backups",
            Self::Setup => "Setup",
            Self::Me => "My account",
        }
    }

    /// The element id of the link: `nav-` and a stable word.
    pub(crate) fn id(self) -> &'static str {
        match self {
            Self::Dashboard => "nav-dashboard",
            Self::Extensions => "nav-extensions",
            Self::Devices => "nav-devices",
            Self::RingGroups => "nav-ring-groups",
            Self::Trunks => "nav-trunks",
            Self::Routes => "nav-routes",
            Self::Cdrs => "nav-cdrs",
            Self::Audio => "nav-audio",
            Self::Contacts => "nav-contacts",
            Self::Events => "nav-events",
            Self::Security => "nav-security",
            Self::Audit => "nav-audit",
            Self::Cluster => "nav-cluster",
            Self::Accounts => "nav-accounts",
            Self::WebPolicy => "nav-policy",
            Self::Backups => "nav-backups",
            Self::Setup => "nav-setup",
            Self::Me => "nav-me",
        }
    }

    fn section(self) -> &'static str {
        match self {
            Self::Dashboard
            | Self::Extensions
            | Self::Devices
            | Self::RingGroups
            | Self::Trunks
            | Self::Routes
            | Self::Cdrs
            | Self::Audio
            | Self::Contacts => "PBX",
            Self::Events | Self::Security | Self::Audit => "Security",
            Self::Cluster | Self::Accounts | Self::WebPolicy | Self::Backups | Self::Setup => {
                "System"
            }
            Self::Me => "Account",
        }
    }

    /// Whether the account's grants open the page (the API decides; this only hides links).
    pub(crate) fn visible(self, who: &Principal) -> bool {
        let g = &who.grants;
        match self {
            Self::Dashboard => g.monitor,
            Self::Extensions => g.extensions || g.monitor,
            Self::RingGroups => g.extensions,
            Self::Trunks | Self::Routes => g.routing,
            Self::Cdrs => g.cdrs != Scope::None,
            // Cluster files need the extensions grant; an extension's, the recordings scope.
            Self::Audio => g.extensions || g.recordings != Scope::None,
            Self::Events => g.monitor || g.security,
            Self::Security | Self::Audit => g.security,
            Self::Cluster => g.monitor || who.is_admin(),
            Self::Accounts | Self::WebPolicy | Self::Backups | Self::Setup => who.is_admin(),
            // Provisioning hands out tokens and SIP secrets: the page is the admin's (the API also
            // takes the extensions grant, for scripts).
            Self::Devices => who.is_admin(),
            // Every account reads the company phonebook; admins change it.
            Self::Contacts | Self::Me => true,
        }
    }
}

/// The navigation entries `who` sees, in order.
pub(crate) fn nav_items(who: &Principal) -> Vec<Nav> {
    Nav::ALL.into_iter().filter(|n| n.visible(who)).collect()
}

fn head(title: &str, csrf: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="csrf-token" content=(csrf);
            title { (title) " · PBX" }
            link rel="stylesheet" href="/assets/portal.css";
            script src="/assets/portal.js" defer {}
        }
    }
}

/// A page of the portal: navigation, header with the account, and `content`.
pub(crate) fn page(who: &Principal, active: Nav, title: &str, content: Markup) -> Markup {
    frame(who, Some(active), title, content)
}

fn frame(who: &Principal, active: Option<Nav>, title: &str, content: Markup) -> Markup {
    let csrf = who.session.as_ref().map_or("", |s| s.csrf.as_str());
    let items = nav_items(who);
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, csrf))
            body {
                div.shell {
                    nav.sidebar #nav aria-label="Main" {
                        a.brand href="/" { span.brand-mark { "PBX" } span.brand-text { "Cluster PBX" } }
                        @for (i, n) in items.iter().enumerate() {
                            @if i == 0 || items[i - 1].section() != n.section() {
                                p.nav-section { (n.section()) }
                            }
                            a.nav-link.active[Some(*n) == active] id=(n.id()) href=(n.href()) { (n.label()) }
                        }
                    }
                    div.main {
                        header.topbar {
                            h1.page-title #page-title { (title) }
                            div.user {
                                span.user-name #user-name { (who.username) }
                                span.badge.badge-info #user-role { (who.role) }
                                button.btn.btn-small #logout type="button"
                                    data-api="DELETE /api/v1/session" data-then="redirect:/login" {
                                    "Sign out"
                                }
                            }
                        }
                        main.content #content {
                            div.flash #flash role="alert" hidden {}
                            (content)
                        }
                        footer.footer { "Cluster PBX · version " (VERSION) }
                    }
                }
                (shown_once())
            }
        }
    }
}

/// The panel a generated secret or password is shown in, once.
fn shown_once() -> Markup {
    html! {
        div.overlay #shown-once hidden {
            div.dialog role="dialog" aria-modal="true" aria-labelledby="shown-once-title" {
                h2 #shown-once-title { "Shown once" }
                p.hint { "Copy it now: it is not stored in readable form and cannot be shown again." }
                p.shown-once-label #shown-once-label {}
                code.secret-value #shown-once-value {}
                p.shown-once-extra #shown-once-extra hidden {}
                div.actions {
                    button.btn type="button" #shown-once-copy data-copy="#shown-once-value" { "Copy" }
                    button.btn.btn-primary type="button" #shown-once-done data-reload { "Done" }
                }
            }
        }
    }
}

/// A page without navigation: sign-in and error pages.
pub(crate) fn bare(title: &str, csrf: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, csrf))
            body.bare {
                main.bare-card {
                    div.brand-large { span.brand-mark { "PBX" } " Cluster PBX" }
                    (content)
                }
            }
        }
    }
}

/// The page for an API refusal or failure.
pub(crate) fn problem_page(p: &Problem) -> Response {
    let (title, text) = match p.status {
        StatusCode::FORBIDDEN => (
            "Not allowed",
            "Your account's role does not allow this page or action.",
        ),
        StatusCode::NOT_FOUND => ("Not found", "There is nothing here."),
        StatusCode::SERVICE_UNAVAILABLE => (
            "Cluster unavailable",
            "The cluster could not answer just now; try again in a moment.",
        ),
        StatusCode::BAD_REQUEST => ("Bad request", "The request was not understood."),
        _ => ("Something went wrong", "The page could not be shown."),
    };
    let body = bare(
        title,
        "",
        html! {
            h1.error-title #error-title { (p.status.as_u16()) " · " (title) }
            p { (text) }
            @if !p.message.is_empty() {
                p.error-detail #error-detail { (p.message) }
            }
            p { a.btn.btn-primary href="/" { "Back to the portal" } }
        },
    );
    (p.status, body).into_response()
}

/// The 404 page for a path the portal does not have.
pub(crate) fn not_found(who: Option<&Principal>) -> Response {
    let content = html! {
        div.card {
            h2 #error-title { "404 · Not found" }
            p { "There is no page at this address." }
            p { a.btn.btn-primary href="/" { "Back to the portal" } }
        }
    };
    let body = match who {
        Some(w) => frame(w, None, "Not found", content),
        None => bare("Not found", "", content),
    };
    (StatusCode::NOT_FOUND, body).into_response()
}

/// A status badge: `ok` green, `warn` amber, `bad` red, `info` blue, `muted` grey.
pub(crate) fn badge(kind: &str, text: &str) -> Markup {
    html! { span class={ "badge badge-" (kind) } { (text) } }
}

/// A time (Unix milliseconds) in UTC; `portal.js` shows it in the browser's time zone.
pub(crate) fn when(ms: u64) -> Markup {
    if ms == 0 {
        return html! { span.muted { "—" } };
    }
    html! { time datetime=(iso(ms)) data-ms=(ms) title=(utc(ms)) { (utc(ms)) } }
}

/// `2026-11-28T10:00:00Z`.
pub(crate) fn iso(ms: u64) -> String {
    civil(ms).map_or_else(String::new, |(y, mo, d, h, mi, s)| {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    })
}

/// `2026-11-28 10:00:00 UTC`.
pub(crate) fn utc(ms: u64) -> String {
    civil(ms).map_or_else(String::new, |(y, mo, d, h, mi, s)| {
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
    })
}

fn civil(ms: u64) -> Option<(i32, u8, u8, u8, u8, u8)> {
    let secs = i64::try_from(ms / 1000).ok()?;
    let t = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    Some((
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    ))
}

/// Talk time as `h:mm:ss` or `m:ss`.
pub(crate) fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// A size as `512 B`, `1.5 KiB`, `12.0 MiB`, `3.2 GiB` (binary units, one decimal).
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    // 1023.96 would show as 1024.0: the next unit shows it as 1.0.
    while v >= 1023.95 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A labelled form field with the place its error is shown.
pub(crate) fn field(label: &str, name: &str, input: Markup) -> Markup {
    html! {
        div.field {
            label { span.label-text { (label) } (input) }
            p.field-error data-for=(name) hidden {}
        }
    }
}

/// Where a form shows an error that names none of its fields.
pub(crate) fn form_error() -> Markup {
    html! { p.form-error role="alert" hidden {} }
}

/// Links to the first and next page of a cursor-paged list. `base` is the page's path with the
/// filters (`/cdrs?disposition=busy`, or `/cdrs`), `next` the cursor of the following page.
pub(crate) fn pager(base: &str, next: Option<&str>, first_page: bool) -> Markup {
    let sep = if base.contains('?') { '&' } else { '?' };
    html! {
        nav.pager aria-label="Pages" {
            @if first_page {
                span.pager-link.disabled { "« First" }
                span.pager-link.disabled { "‹ Previous" }
            } @else {
                a.pager-link #page-first href=(base) { "« First" }
                a.pager-link #page-prev href=(base) data-back { "‹ Previous" }
            }
            @if let Some(n) = next {
                a.pager-link #page-next href={ (base) (sep) "after=" (super::enc(n)) } { "Next ›" }
            } @else {
                span.pager-link.disabled { "Next ›" }
            }
        }
    }
}

/// An empty-table row spanning `cols` columns.
pub(crate) fn empty_row(cols: usize, text: &str) -> Markup {
    html! { tr.empty { td colspan=(cols) { (text) } } }
}
