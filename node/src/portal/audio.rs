//! `/audio`: the audio store's files the account may see, newest first and one page at a time,
//! each with a player, a download link and a delete button; with the `extensions` grant, the
//! upload of prompts and music on hold, and the quotas.
//!
//! The index is read from the replicated reader in one pass that keeps only the page's rows (and
//! counts the rest), so a store of 100 000 recordings costs one scan and 200 rows of memory, not a
//! list of 100 000 in the page. Which files show is the API's own rule
//! ([`Principal::may_access_audio`]): cluster files need the `extensions` grant, an extension's
//! files follow the role's `recordings` scope.

use axum::extract::State;
use maud::{Markup, html};
use serde::Deserialize;
use storage::audio::{AudioFile, AudioKind, AudioQuotas, AudioUsage, MAX_AUDIO_NAME};
use storage::web::Scope;
use storage::{StateReader, StorageError};

use super::layout::{self, Nav, badge, bytes, empty_row, field, form_error, when};
use super::{Ctx, Params, Problem, enc, given, query};
use crate::api::{AppState, Principal};

/// Rows per page.
pub(super) const PAGE: usize = 200;
/// Sorts after every audio file id (lowercase hex).
const END: &str = "\u{7f}";
const MIB: u64 = 1024 * 1024;

/// A file's place in the newest-first order: by creation time, then by id (ids are unique).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Position {
    created_at: u64,
    id: String,
}

impl Position {
    fn of(f: &AudioFile) -> Self {
        Self {
            created_at: f.created_at,
            id: f.id.clone(),
        }
    }

    /// The page cursor: `{created_at}-{id}`.
    pub(super) fn cursor(&self) -> String {
        format!("{}-{}", self.created_at, self.id)
    }

    /// A cursor as [`Position::cursor`] writes it; anything else is no cursor (the first page).
    pub(super) fn parse(s: &str) -> Option<Self> {
        let (at, id) = s.split_once('-')?;
        let created_at = at.parse().ok()?;
        AudioFile::valid_id(id).then(|| Self {
            created_at,
            id: id.to_owned(),
        })
    }
}

/// One page of files.
#[derive(Debug)]
pub(super) struct Listing {
    /// Newest first.
    pub files: Vec<AudioFile>,
    /// Files the account may see that match the filter, on every page.
    pub total: u64,
    /// Files after this page.
    pub more: u64,
    /// The cursor of the next page (`after`), if there is more.
    pub next: Option<String>,
}

/// Picks one page of the newest files from the index, visited once in any order, keeping at most
/// twice a page of rows in memory.
pub(super) struct Newest<'a> {
    who: &'a Principal,
    kind: Option<AudioKind>,
    /// Only files older than this (the previous page's last).
    after: Option<Position>,
    limit: usize,
    kept: Vec<(Position, AudioFile)>,
    total: u64,
    candidates: u64,
}

impl<'a> Newest<'a> {
    pub(super) fn new(
        who: &'a Principal,
        kind: Option<AudioKind>,
        after: Option<Position>,
        limit: usize,
    ) -> Self {
        Self {
            who,
            kind,
            after,
            limit,
            kept: Vec::new(),
            total: 0,
            candidates: 0,
        }
    }

    /// Looks at one file of the index.
    pub(super) fn offer(&mut self, f: &AudioFile) {
        if self.kind.is_some_and(|k| f.kind != k) || !self.who.may_access_audio(f) {
            return;
        }
        self.total += 1;
        let pos = Position::of(f);
        if self.after.as_ref().is_some_and(|a| pos >= *a) {
            return;
        }
        self.candidates += 1;
        self.kept.push((pos, f.clone()));
        if self.kept.len() >= 2 * self.limit.max(1) {
            self.trim();
        }
    }

    /// Keeps the newest `limit`, and one more to tell there is a next page.
    fn trim(&mut self) {
        self.kept.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        self.kept.truncate(self.limit + 1);
    }

    pub(super) fn finish(mut self) -> Listing {
        self.trim();
        let next = if self.kept.len() > self.limit {
            self.kept.truncate(self.limit);
            self.kept.last().map(|(p, _)| p.cursor())
        } else {
            None
        };
        let shown = self.kept.len() as u64;
        Listing {
            files: self.kept.into_iter().map(|(_, f)| f).collect(),
            total: self.total,
            more: self.candidates - shown,
            next,
        }
    }
}

/// The cluster's audio storage: the limits and what is used.
#[derive(Debug, Clone, Default)]
pub(super) struct Storage {
    pub quotas: AudioQuotas,
    pub used_bytes: u64,
    pub files: u64,
}

/// What the page shows.
#[derive(Debug)]
pub(super) struct Loaded {
    pub listing: Listing,
    /// With the `extensions` grant.
    pub storage: Option<Storage>,
}

/// Reads one page of the files `who` may see (of `kind`, older than `after`) and, for the
/// `extensions` grant, the quotas.
pub(super) fn load(
    reader: &StateReader,
    who: &Principal,
    kind: Option<AudioKind>,
    after: Option<Position>,
) -> Result<Loaded, StorageError> {
    let mut newest = Newest::new(who, kind, after, PAGE);
    // Every row is looked at and none is collected: `Newest` keeps the page.
    reader.scan_range::<AudioFile>("", END, usize::MAX, |f| {
        newest.offer(f);
        false
    })?;
    let storage = if who.grants.extensions {
        let quotas = reader
            .get::<AudioQuotas>(AudioQuotas::KEY)?
            .unwrap_or_default();
        let usage = reader
            .get::<AudioUsage>(&AudioUsage::key_for(AudioUsage::TOTAL))?
            .unwrap_or_default();
        Some(Storage {
            quotas,
            used_bytes: usage.bytes,
            files: usage.files,
        })
    } else {
        None
    };
    Ok(Loaded {
        listing: newest.finish(),
        storage,
    })
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct AudioFilters {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

/// `/audio`.
pub(super) async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    Params(f): Params<AudioFilters>,
) -> Result<Markup, Problem> {
    let g = ctx.who.grants;
    ctx.require(g.extensions || g.recordings != Scope::None)?;
    // An unknown kind or a malformed cursor is ignored, like any hand-edited parameter.
    let kind = given(f.kind).and_then(|k| AudioKind::parse(&k));
    let after = given(f.after).and_then(|a| Position::parse(&a));
    let first_page = after.is_none();
    let reader = state.cluster.reader().clone();
    let who = ctx.who.clone();
    let loaded = tokio::task::spawn_blocking(move || load(&reader, &who, kind, after))
        .await
        .map_err(|e| Problem::internal(e.to_string()))??;
    let content = render(&ctx.who, kind, first_page, &loaded);
    Ok(layout::page(&ctx.who, Nav::Audio, "Audio", content))
}

fn kind_label(k: AudioKind) -> &'static str {
    match k {
        AudioKind::Prompt => "prompt",
        AudioKind::MusicOnHold => "music on hold",
        AudioKind::Recording => "recording",
        AudioKind::Voicemail => "voicemail",
        AudioKind::Greeting => "greeting",
        AudioKind::Firmware => "phone firmware",
    }
}

fn kind_badge(k: AudioKind) -> Markup {
    let style = match k {
        AudioKind::Prompt | AudioKind::MusicOnHold => "info",
        AudioKind::Recording => "warn",
        AudioKind::Voicemail | AudioKind::Greeting | AudioKind::Firmware => "muted",
    };
    badge(style, kind_label(k))
}

/// What the account sees, in words.
fn scope_hint(who: &Principal) -> &'static str {
    let g = &who.grants;
    match (g.extensions, g.recordings) {
        (true, Scope::All) => {
            "Prompts and music on hold, and every extension's recordings, voicemail and greetings."
        }
        (true, Scope::Own) => {
            "Prompts and music on hold, and your extension's recordings, voicemail and greetings."
        }
        (true, Scope::None) => "Prompts and music on hold.",
        (false, Scope::All) => "Every extension's recordings, voicemail and greetings.",
        (false, _) => "Your extension's recordings, voicemail and greetings.",
    }
}

/// The page's content.
pub(super) fn render(
    who: &Principal,
    kind: Option<AudioKind>,
    first_page: bool,
    loaded: &Loaded,
) -> Markup {
    let list = &loaded.listing;
    let kind_str = kind.map_or("", AudioKind::as_str);
    let base = format!("/audio{}", query(&[("kind", kind_str)]));
    html! {
        @if who.grants.extensions {
            div.grid-2 {
                div.card {
                    h2 { "Upload a prompt or music" }
                    (upload_form())
                }
                @if let Some(s) = &loaded.storage {
                    div.card #audio-storage { h2 { "Storage" } (storage_section(s)) }
                }
            }
        }
        div.card {
            div.card-head {
                h2 { "Audio files " span.badge.badge-muted #audio-count { (list.total) } }
                form.toolbar #audio-filter method="get" action="/audio" {
                    select #audio-filter-kind name="kind" aria-label="Kind" {
                        option value="" { "Every kind" }
                        @for k in AudioKind::ALL {
                            option value=(k.as_str()) selected[kind == Some(k)] { (kind_label(k)) }
                        }
                    }
                    button.btn #audio-filter-apply type="submit" { "Show" }
                    @if kind.is_some() { a.btn #audio-filter-clear href="/audio" { "Clear" } }
                }
            }
            p.hint {
                (scope_hint(who)) " Playing or downloading an extension's file is written to the "
                "audit log."
            }
            (table(&list.files))
            @if list.more > 0 {
                p.hint #audio-more {
                    (list.more) " older " (if list.more == 1 { "file is" } else { "files are" })
                    " not on this page."
                }
            }
            (layout::pager(&base, list.next.as_deref(), first_page))
        }
    }
}

/// `#audio-table`: one row per file, with its player, download link and delete button.
pub(super) fn table(files: &[AudioFile]) -> Markup {
    html! {
        div.table-wrap {
            table.data #audio-table {
                thead { tr {
                    th { "Kind" } th { "Owner" } th { "Name" } th { "Call" } th.num { "Size" }
                    th { "Created" } th { "Kept until" } th.num { "Nodes" } th { "Listen" }
                    th.actions { "Actions" }
                } }
                tbody {
                    @for f in files { (row(f)) }
                    @if files.is_empty() { (empty_row(10, "No audio files.")) }
                }
            }
        }
    }
}

fn row(f: &AudioFile) -> Markup {
    // Ids are 32 hex digits; encoded all the same, as everything put in a URL.
    let url = format!("/api/v1/audio/{}", enc(&f.id));
    let content = format!("{url}/content");
    let holders: Vec<String> = f.holders.iter().map(ToString::to_string).collect();
    html! {
        tr id={ "audio-row-" (f.id) } data-audio=(f.id) {
            td { (kind_badge(f.kind)) }
            td.mono {
                @if f.owner.is_empty() { span.muted { "cluster" } } @else { (f.owner) }
            }
            td.audio-name { (f.name) }
            td.mono {
                @if let Some(call) = &f.call_id { (call) } @else { span.muted { "—" } }
            }
            td.num { (bytes(f.size)) }
            td { (when(f.created_at)) }
            td {
                @if let Some(t) = f.retain_until { (when(t)) } @else { span.muted { "until deleted" } }
            }
            td.num title={ "nodes " (holders.join(", ")) } { (f.holders.len()) }
            td {
                audio.player controls preload="none" src=(content) {
                    a href=(content) { "Download" }
                }
            }
            td.actions {
                a.btn.btn-small.audio-download href=(content) download { "Download" }
                button.btn.btn-small.btn-danger.audio-delete type="button"
                    data-api={ "DELETE " (url) }
                    data-confirm={ "Delete the " (kind_label(f.kind)) " \"" (f.name) "\" from every node?" }
                    data-then="reload" { "Delete" }
            }
        }
    }
}

/// `#audio-upload`: a WAV file sent as the body of `POST /api/v1/audio?kind=…&name=…`.
fn upload_form() -> Markup {
    html! {
        form.form #audio-upload data-upload="/api/v1/audio" data-then="reload" {
            (form_error())
            (field("Kind", "kind", html! {
                select #audio-upload-kind name="kind" {
                    option value=(AudioKind::Prompt.as_str()) { "prompt" }
                    option value=(AudioKind::MusicOnHold.as_str()) { "music on hold" }
                }
            }))
            (field("Name", "name", html! {
                input #audio-upload-name type="text" name="name" maxlength=(MAX_AUDIO_NAME)
                    placeholder="Empty: the file's name";
            }))
            div.wide {
                (field("WAV file", "body", html! {
                    input #audio-upload-file type="file" name="file" accept=".wav,audio/wav,audio/x-wav"
                        required;
                }))
            }
            p.hint.wide {
                "16-bit PCM, mono, 8 or 16 kHz, at most ten minutes. It is stored on every node; the "
                "upload succeeds once a majority of them holds it."
            }
            div.form-actions {
                button.btn.btn-primary #audio-upload-submit type="submit" { "Upload" }
            }
        }
    }
}

/// A quota in MiB as the form shows it: whole when it is, else to three places.
fn mib(n: u64) -> String {
    if n.is_multiple_of(MIB) {
        (n / MIB).to_string()
    } else {
        format!("{:.3}", n as f64 / MIB as f64)
    }
}

/// What is stored against the limits, and `#audio-quotas-form` to change them.
fn storage_section(s: &Storage) -> Markup {
    let q = &s.quotas;
    html! {
        dl.kv {
            dt { "Stored" }
            dd #audio-used { (bytes(s.used_bytes)) " in " (s.files) (if s.files == 1 { " file" } else { " files" }) }
            dt { "Cluster limit" } dd #audio-total-limit { (bytes(q.total_bytes)) }
            dt { "Per extension" } dd #audio-owner-limit { (bytes(q.per_owner_bytes)) }
        }
        p.hint {
            "Every node keeps a copy of every file. Lowering a limit deletes nothing: new files are "
            "refused until enough is deleted or expires."
        }
        form.form #audio-quotas-form data-api="PUT /api/v1/audio-quotas" data-then="reload" {
            (form_error())
            (field("Cluster limit (MiB)", "total_bytes", html! {
                input #audio-quota-total type="number" name="total_bytes" data-type="mib" min="1"
                    step="any" required value=(mib(q.total_bytes));
            }))
            (field("Per extension (MiB)", "per_owner_bytes", html! {
                input #audio-quota-owner type="number" name="per_owner_bytes" data-type="mib" min="1"
                    step="any" required value=(mib(q.per_owner_bytes));
            }))
            div.form-actions {
                button.btn.btn-primary #audio-quotas-submit type="submit" { "Save limits" }
            }
        }
    }
}
