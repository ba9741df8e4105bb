//! `/extensions`: search and page through the extensions, create, edit, delete and import them,
//! set whether their calls are recorded and their voicemail, and e-mail a phone's user their
//! portal login.
//!
//! The table is read one page at a time from the replicated extensions table, by number: a number
//! search is a key range, a name search a filtered scan whose work per request is bounded (and
//! which carries on from where it stopped, like the API's paging).

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use maud::{Markup, html};
use serde::Deserialize;
use storage::features::CallHandling;
use storage::model::Extension;
use storage::recording::{RecordingMode, RecordingPolicy};
use storage::routing::PermissionGroup;
use storage::voicemail::{Mailbox, MailboxName};
use storage::{StateReader, StorageError};

use super::features::{handling_badges, handling_form};
use super::layout::{self, Nav, badge, empty_row, field, form_error};
use super::{Ctx, Params, Problem, given, query, voicemail};
use crate::api::{AppState, Principal};

/// Rows per page.
pub(super) const PAGE: usize = 50;
/// Rows a name search looks at per request at most.
pub(super) const NAME_BUDGET: usize = 20_000;
/// Rows read per scan call while filtering.
const CHUNK: usize = 1024;
/// Sorts after every extension number (digits).
const END: &str = "\u{7f}";

/// The call handling of the extensions on a page that set one, by number.
pub(super) type Handling = HashMap<String, CallHandling>;

/// What the extensions on a page have set, by number: call handling, and the recording policy
/// (an extension without one is never recorded).
#[derive(Debug, Default)]
pub(super) struct RowSettings {
    pub handling: Handling,
    pub recording: HashMap<String, RecordingMode>,
    /// The mailboxes of the extensions that have one.
    pub mailboxes: HashMap<String, Mailbox>,
    /// The name greetings (audio ids) of the mailboxes that have one.
    pub names: HashMap<String, String>,
}

impl RowSettings {
    fn recording(&self, number: &str) -> RecordingMode {
        self.recording.get(number).copied().unwrap_or_default()
    }
}

/// Where extensions are read from: the replicated table, or a map in tests.
pub(super) trait ExtensionSource {
    /// Extensions with `from <= number < to` in number order, visiting at most `max_rows`, kept
    /// when `keep` says so, and where to resume when the visit stopped early.
    fn scan(
        &self,
        from: &str,
        to: &str,
        max_rows: usize,
        keep: &mut dyn FnMut(&Extension) -> bool,
    ) -> Result<(Vec<Extension>, Option<String>), StorageError>;
}

impl ExtensionSource for StateReader {
    fn scan(
        &self,
        from: &str,
        to: &str,
        max_rows: usize,
        keep: &mut dyn FnMut(&Extension) -> bool,
    ) -> Result<(Vec<Extension>, Option<String>), StorageError> {
        self.scan_range::<Extension>(from, to, max_rows, keep)
    }
}

/// One page of extensions.
#[derive(Debug)]
pub(super) struct Found {
    pub items: Vec<Extension>,
    /// The cursor of the next page (`after`), if there is more.
    pub next: Option<String>,
}

/// What a search matches: digits are a number prefix, anything else a prefix of the display
/// name or of a word in it, ignoring case.
fn name_matches(name: &str, q: &str) -> bool {
    let name = name.to_lowercase();
    name.starts_with(q) || name.split_whitespace().any(|w| w.starts_with(q))
}

/// Up to `limit` extensions matching `q` after `after`, in number order.
pub(super) fn find(
    src: &dyn ExtensionSource,
    q: &str,
    after: Option<&str>,
    limit: usize,
    budget: usize,
) -> Result<Found, StorageError> {
    let q = q.trim();
    let by_name = !q.is_empty() && !q.bytes().all(|b| b.is_ascii_digit());
    let (lo, hi) = if by_name || q.is_empty() {
        (String::new(), END.to_owned())
    } else {
        (q.to_owned(), format!("{q}{END}"))
    };
    let needle = q.to_lowercase();
    let mut from = match after {
        // NUL is the least byte: `{after}\0` is the first key after `after`.
        Some(a) => lo.max(format!("{a}\u{0}")),
        None => lo,
    };
    let want = limit.saturating_add(1);
    let mut rows: Vec<Extension> = Vec::new();
    let mut left = budget;
    let mut last_visited: Option<String> = None;
    let mut exhausted = false;
    while rows.len() < want && left > 0 {
        let need = want - rows.len();
        let chunk = if by_name { need.max(CHUNK) } else { need }.min(left);
        let mut keep = |e: &Extension| {
            last_visited = Some(e.number.clone());
            !by_name || name_matches(&e.display_name, &needle)
        };
        let (found, resume) = src.scan(&from, &hi, chunk, &mut keep)?;
        rows.extend(found);
        match resume {
            Some(key) => {
                from = key;
                left -= chunk;
            }
            None => {
                exhausted = true;
                break;
            }
        }
    }
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|e| e.number.clone())
    } else if exhausted {
        None
    } else {
        // The budget ran out: the next request goes on after the last row looked at.
        last_visited
    };
    Ok(Found { items: rows, next })
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ExtensionFilters {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

/// What the page shows.
#[derive(Debug)]
pub(super) struct Loaded {
    pub found: Found,
    pub total: u64,
    pub groups: Vec<String>,
    pub settings: RowSettings,
}

/// Reads one page of extensions matching `q` after `after`, what they have set, the count and the
/// permission groups.
pub(super) fn load(
    reader: &StateReader,
    q: &str,
    after: Option<&str>,
) -> Result<Loaded, StorageError> {
    let found = find(reader, q, after, PAGE, NAME_BUDGET)?;
    let mut settings = RowSettings::default();
    for e in &found.items {
        if let Some(h) = reader.get::<CallHandling>(&e.number)? {
            settings.handling.insert(e.number.clone(), h);
        }
    }
    settings.recording = recording_policies(reader, &found.items)?;
    settings.mailboxes = mailboxes(reader, &found.items)?;
    settings.names = names(reader, &found.items)?;
    let total = reader.count::<Extension>()?;
    let groups: Vec<String> = reader
        .list::<PermissionGroup>()?
        .into_iter()
        .map(|g| g.name)
        .collect();
    Ok(Loaded {
        found,
        total,
        groups,
        settings,
    })
}

/// The recording policies of `rows` (in number order), read in one pass over the range of numbers
/// the page covers. A policy exists only for an existing extension, so the pass visits no more
/// rows than `find` did to fill the page, however many extensions the cluster has.
fn recording_policies(
    reader: &StateReader,
    rows: &[Extension],
) -> Result<HashMap<String, RecordingMode>, StorageError> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(HashMap::new());
    };
    let on_page: HashSet<&str> = rows.iter().map(|e| e.number.as_str()).collect();
    // NUL is the least byte: `{last}\0` is the first key after `last`.
    let to = format!("{}\u{0}", last.number);
    let (policies, _) =
        reader.scan_range::<RecordingPolicy>(&first.number, &to, usize::MAX, |p| {
            on_page.contains(p.extension.as_str())
        })?;
    Ok(policies
        .into_iter()
        .map(|p| (p.extension, p.mode))
        .collect())
}

/// The mailboxes of `rows` (in number order), read like [`recording_policies`]: one pass over the
/// range of numbers the page covers.
fn mailboxes(
    reader: &StateReader,
    rows: &[Extension],
) -> Result<HashMap<String, Mailbox>, StorageError> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(HashMap::new());
    };
    let on_page: HashSet<&str> = rows.iter().map(|e| e.number.as_str()).collect();
    let to = format!("{}\u{0}", last.number);
    let (found, _) = reader.scan_range::<Mailbox>(&first.number, &to, usize::MAX, |m| {
        on_page.contains(m.extension.as_str())
    })?;
    Ok(found
        .into_iter()
        .map(|m| (m.extension.clone(), m))
        .collect())
}

/// The name greetings of `rows`' mailboxes, read like [`mailboxes`].
fn names(
    reader: &StateReader,
    rows: &[Extension],
) -> Result<HashMap<String, String>, StorageError> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(HashMap::new());
    };
    let on_page: HashSet<&str> = rows.iter().map(|e| e.number.as_str()).collect();
    let to = format!("{}\u{0}", last.number);
    let (found, _) = reader.scan_range::<MailboxName>(&first.number, &to, usize::MAX, |n| {
        on_page.contains(n.extension.as_str())
    })?;
    Ok(found
        .into_iter()
        .map(|n| (n.extension, n.greeting))
        .collect())
}

/// `/extensions`.
pub(super) async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    Params(f): Params<ExtensionFilters>,
) -> Result<Markup, Problem> {
    let g = ctx.who.grants;
    ctx.require(g.extensions || g.monitor)?;
    let q = given(f.q).unwrap_or_default();
    let after = given(f.after);
    let reader = state.cluster.reader().clone();
    let loaded = {
        let q = q.clone();
        let after = after.clone();
        tokio::task::spawn_blocking(move || load(&reader, &q, after.as_deref()))
            .await
            .map_err(|e| Problem::internal(e.to_string()))??
    };
    let content = render(
        &ctx.who,
        &q,
        after.is_none(),
        &loaded.found,
        loaded.total,
        &loaded.groups,
        &loaded.settings,
    );
    Ok(layout::page(
        &ctx.who,
        Nav::Extensions,
        "Extensions",
        content,
    ))
}

/// The page's content: search, table of one page, and (with the extensions grant) the forms.
pub(super) fn render(
    who: &Principal,
    q: &str,
    first_page: bool,
    found: &Found,
    total: u64,
    groups: &[String],
    settings: &RowSettings,
) -> Markup {
    let edit = who.grants.extensions;
    let base = format!("/extensions{}", query(&[("q", q)]));
    html! {
        @if edit {
            div.grid-2 {
                div.card {
                    h2 { "New extension" }
                    (create_form(groups))
                }
                div.card {
                    h2 { "Import from CSV" }
                    (import_form())
                }
            }
        }
        div.card {
            div.card-head {
                h2 { "Extensions " span.badge.badge-muted #ext-count { (total) } }
                form.toolbar #ext-search method="get" action="/extensions" role="search" {
                    input #ext-q type="search" name="q" value=(q)
                        placeholder="Number or name" aria-label="Search extensions";
                    button.btn #ext-search-submit type="submit" { "Search" }
                    @if !q.is_empty() { a.btn #ext-search-clear href="/extensions" { "Clear" } }
                }
            }
            (table(who, &found.items, settings))
            (layout::pager(&base, found.next.as_deref(), first_page))
        }
    }
}

/// `#ext-create`: number, display name, permission group; the generated SIP secret is shown once.
pub(super) fn create_form(groups: &[String]) -> Markup {
    html! {
        form.form #ext-create data-api="POST /api/v1/extensions" data-then="show-secret"
            data-secret-label="SIP secret of extension {number} (user {sip_username})" {
            (form_error())
            (field("Number", "number", html! {
                input #ext-number type="text" name="number" inputmode="numeric" required
                    placeholder="1001";
            }))
            (field("Display name", "display_name", html! {
                input #ext-display-name type="text" name="display_name" maxlength="64" required;
            }))
            (field("Permission group", "permission_group", html! {
                input #ext-group type="text" name="permission_group" list="ext-groups"
                    placeholder="internal";
                (group_list(groups))
            }))
            div.form-actions {
                button.btn.btn-primary #ext-create-submit type="submit" { "Create extension" }
                span.hint { "A SIP secret is generated and shown once." }
            }
        }
    }
}

fn group_list(groups: &[String]) -> Markup {
    html! {
        datalist #ext-groups {
            @for g in groups { option value=(g) {} }
        }
    }
}

/// `#ext-import`: a CSV file with the header `number,display_name,permission_group` (and `secret`).
fn import_form() -> Markup {
    html! {
        form.form-stacked #ext-import data-import="/api/v1/extensions/import"
            data-report="#ext-import-report" {
            (form_error())
            (field("CSV file", "file", html! {
                input #ext-import-file type="file" name="file" accept=".csv,text/csv" required;
            }))
            p.hint {
                "One extension per line, with the header "
                code { "number,display_name,permission_group" }
                " (optionally a " code { "secret" } " column; otherwise one is generated and shown once)."
            }
            div.form-actions {
                button.btn.btn-primary #ext-import-submit type="submit" { "Import" }
            }
        }
        div.import-report #ext-import-report hidden {}
    }
}

/// `#ext-table`: one page of extensions (with DND and forwarding shown in their status, and
/// whether their calls are recorded), with the row actions the grant allows.
pub(super) fn table(who: &Principal, rows: &[Extension], settings: &RowSettings) -> Markup {
    let edit = who.grants.extensions;
    let cols = if edit { 7 } else { 6 };
    html! {
        div.table-wrap {
            table.data #ext-table {
                thead { tr {
                    th { "Number" } th { "Display name" } th { "Permission group" } th { "SIP user" }
                    th { "Status" } th { "Recording" }
                    @if edit { th.actions { "Actions" } }
                } }
                tbody {
                    @for e in rows {
                        tr id={ "ext-row-" (e.number) } data-extension=(e.number) {
                            td.mono { (e.number) }
                            td.ext-name { (e.display_name) }
                            td { (e.permission_group) }
                            td.mono { (e.credentials.username) }
                            td {
                                @if e.enabled { (badge("ok", "enabled")) } @else { (badge("muted", "disabled")) }
                                (handling_badges(settings.handling.get(&e.number)))
                                @if settings.mailboxes.get(&e.number).is_some_and(|m| m.enabled) {
                                    " " (badge("info", "voicemail"))
                                }
                            }
                            td.ext-recording { (recording_cell(e, settings.recording(&e.number), edit)) }
                            @if edit { td.actions { (row_actions(e, settings)) } }
                        }
                    }
                    @if rows.is_empty() { (empty_row(cols, "No extensions found.")) }
                }
            }
        }
    }
}

/// Whether an extension's calls are recorded; with the `extensions` grant, a select that sets it
/// (`PUT …/recording` as soon as it changes).
fn recording_cell(e: &Extension, mode: RecordingMode, edit: bool) -> Markup {
    let label = |m: RecordingMode| match m {
        RecordingMode::Never => "not recorded",
        RecordingMode::Always => "always recorded",
        RecordingMode::OnDemand => "recorded on *1",
    };
    if !edit {
        let kind = match mode {
            RecordingMode::Never => "muted",
            RecordingMode::Always | RecordingMode::OnDemand => "warn",
        };
        return badge(kind, label(mode));
    }
    let url = format!("/api/v1/extensions/{}/recording", super::enc(&e.number));
    html! {
        form.recording-form data-api={ "PUT " (url) } data-then="notice"
            data-notice="Extension {extension}: recording {mode}." {
            select.recording-mode name="mode" data-autosubmit
                aria-label={ "Recording of extension " (e.number) } {
                @for m in RecordingMode::ALL {
                    option value=(m.as_str()) selected[m == mode] { (label(m)) }
                }
            }
            (form_error())
        }
    }
}

fn row_actions(e: &Extension, settings: &RowSettings) -> Markup {
    let url = format!("/api/v1/extensions/{}", super::enc(&e.number));
    let handling = settings
        .handling
        .get(&e.number)
        .cloned()
        .unwrap_or_else(|| CallHandling::none(&e.number));
    html! {
        details.row-edit {
            summary.btn.btn-small.ext-edit-open { "Edit" }
            div.popover {
                form.form-stacked.ext-edit data-api={ "PATCH " (url) } data-then="show-secret"
                    data-secret-label="New SIP secret of extension {number}" {
                    (form_error())
                    (field("Display name", "display_name", html! {
                        input type="text" name="display_name" value=(e.display_name) maxlength="64" required;
                    }))
                    (field("Permission group", "permission_group", html! {
                        input type="text" name="permission_group" value=(e.permission_group)
                            list="ext-groups";
                    }))
                    label.check { input type="checkbox" name="enabled" checked[e.enabled]; "Enabled" }
                    label.check {
                        input type="checkbox" name="regenerate_secret";
                        "Generate a new SIP secret (the phone must be set up again)"
                    }
                    div.form-actions { button.btn.btn-primary type="submit" { "Save" } }
                }
            }
        }
        details.row-edit {
            summary.btn.btn-small.ext-handling-open { "Call handling" }
            div.popover { (handling_form(&handling, None)) }
        }
        details.row-edit {
            summary.btn.btn-small.ext-voicemail-open { "Voicemail" }
            div.popover {
                (voicemail::admin_form(
                    &e.number,
                    settings.mailboxes.get(&e.number),
                    settings.names.get(&e.number).map(String::as_str),
                ))
            }
        }
        details.row-edit {
            summary.btn.btn-small.ext-welcome-open { "Send login" }
            div.popover {
                form.form-stacked.ext-welcome data-api={ "POST " (url) "/welcome" } data-then="notice"
                    data-notice="Portal login {username} sent to {emailed_to}." data-reset-after {
                    (form_error())
                    (field("E-mail address", "email", html! {
                        input type="email" name="email" required autocomplete="off";
                    }))
                    p.hint { "Sends the portal address and a sign-in for this extension's user." }
                    div.form-actions { button.btn.btn-primary type="submit" { "Send portal login by e-mail" } }
                }
            }
        }
        button.btn.btn-small.btn-danger.ext-delete type="button" data-api={ "DELETE " (url) }
            data-confirm={ "Delete extension " (e.number) "?" } data-then="reload" { "Delete" }
    }
}

#[cfg(test)]
pub(super) mod testing {
    use std::cell::Cell;
    use std::collections::BTreeMap;

    use storage::StorageError;
    use storage::model::{Extension, SipCredentials};

    use super::ExtensionSource;

    pub(crate) fn extension(number: &str, name: &str) -> Extension {
        Extension {
            number: number.into(),
            display_name: name.into(),
            credentials: SipCredentials {
                username: number.into(),
                realm: "pbx.test".into(),
                ha1_md5: String::new(),
                ha1_sha256: String::new(),
                changed_at: 0,
            },
            permission_group: "internal".into(),
            enabled: true,
            created_at: 0,
            updated_at: 0,
        }
    }

    /// Extensions in a map, counting the rows visited.
    pub(crate) struct Map {
        pub rows: BTreeMap<String, Extension>,
        pub visited: Cell<usize>,
    }

    impl Map {
        pub(crate) fn new(rows: impl IntoIterator<Item = Extension>) -> Self {
            Self {
                rows: rows.into_iter().map(|e| (e.number.clone(), e)).collect(),
                visited: Cell::new(0),
            }
        }
    }

    impl ExtensionSource for Map {
        fn scan(
            &self,
            from: &str,
            to: &str,
            max_rows: usize,
            keep: &mut dyn FnMut(&Extension) -> bool,
        ) -> Result<(Vec<Extension>, Option<String>), StorageError> {
            let mut out = Vec::new();
            for (n, (key, e)) in self.rows.range(from.to_owned()..to.to_owned()).enumerate() {
                if n >= max_rows {
                    return Ok((out, Some(key.clone())));
                }
                self.visited.set(self.visited.get() + 1);
                if keep(e) {
                    out.push(e.clone());
                }
            }
            Ok((out, None))
        }
    }
}
