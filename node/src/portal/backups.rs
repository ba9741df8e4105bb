//! `/backups`: the cluster's backups (the admin's). Every backup, newest first (node, trigger,
//! status, times, size, the log index its state is as of, audio files, the remote copy), each with
//! a download link (the node holding it serves it; another answers `307` to that node) and delete;
//! **Back up now** (the API answers once the archive is written); and the settings.
//!
//! The passphrase and the SFTP private key are never in the page: the API never returns them (it
//! says `passphrase_set`), and their inputs are never filled in. The settings form leaves `sftp`
//! out (kept as it is), so the private key need not be typed again to change the schedule; the
//! remote destination has its own form, which sends all of it, key included, and a button that
//! removes it (`"sftp": null`). An empty passphrase field is left out too: the one set is kept.

use axum::extract::State;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::layout::{self, Nav, badge, bytes, empty_row, field, form_error, when};
use super::{Ctx, Problem, api, enc};
use crate::api::AppState;

/// The weekdays as the API names them, Monday first.
const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
/// A new schedule's time.
const DEFAULT_TIME: &str = "02:00";

/// A backup as `GET /api/v1/backups` shows it.
#[derive(Debug, Deserialize)]
pub(super) struct Backup {
    id: String,
    node_id: u64,
    trigger: String,
    status: String,
    started_at: u64,
    #[serde(default)]
    finished_at: Option<u64>,
    #[serde(default)]
    log_index: u64,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    audio_files: u64,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    remote: Option<String>,
    #[serde(default)]
    remote_error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Schedule {
    time: String,
    #[serde(default)]
    weekday: Option<String>,
}

/// The remote destination as the API shows it: everything but the private key.
#[derive(Debug, Deserialize)]
pub(super) struct Sftp {
    host: String,
    port: u16,
    user: String,
    path: String,
    host_key: String,
}

/// The settings as the API shows them: whether a passphrase is set, never the passphrase.
#[derive(Debug, Deserialize)]
pub(super) struct Settings {
    passphrase_set: bool,
    keep: u32,
    #[serde(default)]
    schedule: Option<Schedule>,
    #[serde(default)]
    sftp: Option<Sftp>,
}

#[derive(Debug, Deserialize)]
pub(super) struct BackupList {
    backups: Vec<Backup>,
    settings: Settings,
}

/// `/backups`.
pub(super) async fn page(State(state): State<AppState>, ctx: Ctx) -> Result<Markup, Problem> {
    ctx.require(ctx.who.is_admin())?;
    let list: BackupList =
        api::answer(crate::api::backups_list(State(state.clone()), ctx.who.clone()).await).await?;
    let here = state.cluster.node_id();
    Ok(layout::page(
        &ctx.who,
        Nav::Backups,
        "Backups",
        render(&list, here),
    ))
}

/// The page's content; `here` is the serving node.
pub(super) fn render(list: &BackupList, here: u64) -> Markup {
    let s = &list.settings;
    html! {
        div.card {
            div.card-head {
                h2 { "Backups" }
                button.btn.btn-primary #backup-create type="button" data-api="POST /api/v1/backups"
                    data-then="reload" { "Back up now" }
            }
            @if !s.passphrase_set {
                p.banner.banner-warn #backup-no-passphrase {
                    "No backup passphrase is set: set one below before the first backup."
                }
            }
            p.hint {
                "“Back up now” writes the archive on node " (here) " and answers when it is written. "
                "An archive is downloaded from the node that made it: a link to another node's "
                "leads there, where you may have to sign in again."
            }
            div.table-wrap {
                table.data #backups-table {
                    thead { tr {
                        th { "Backup" } th { "Status" } th { "Started" } th { "Finished" } th.num { "Size" }
                        th.num { "Log index" } th.num { "Audio files" } th { "Remote copy" }
                        th.actions { "Actions" }
                    } }
                    tbody {
                        @for b in &list.backups { (row(b, here)) }
                        @if list.backups.is_empty() { (empty_row(9, "No backups yet.")) }
                    }
                }
            }
        }
        div.grid-2 {
            div.card {
                h2 { "Settings" }
                (settings_form(s))
            }
            div.card {
                h2 { "Remote copy (SFTP)" }
                (sftp_form(s.sftp.as_ref()))
            }
        }
    }
}

fn status_badge(status: &str) -> Markup {
    let kind = match status {
        "ok" => "ok",
        "running" => "info",
        "failed" => "bad",
        _ => "muted",
    };
    badge(kind, status)
}

fn row(b: &Backup, here: u64) -> Markup {
    let url = format!("/api/v1/backups/{}", enc(&b.id));
    html! {
        tr id={ "backup-" (b.id) } data-backup=(b.id) {
            td {
                span.mono { (b.id) } br;
                span.muted {
                    (b.trigger) " · node " (b.node_id)
                    @if b.node_id == here { " (this one)" }
                }
            }
            td {
                (status_badge(&b.status))
                @if let Some(e) = &b.error { br; span.backup-error { (e) } }
            }
            td { (when(b.started_at)) }
            td { (when(b.finished_at.unwrap_or(0))) }
            td.num { @if b.size > 0 { (bytes(b.size)) } @else { span.muted { "—" } } }
            td.num { (b.log_index) }
            td.num { (b.audio_files) }
            td {
                @if let Some(r) = &b.remote { span.mono { (r) } }
                @else if let Some(e) = &b.remote_error { (badge("bad", "failed")) " " (e) }
                @else { span.muted { "—" } }
            }
            td.actions {
                @if b.status == "ok" {
                    a.btn.btn-small.backup-download href={ (url) "/download" } download { "Download" }
                }
                button.btn.btn-small.btn-danger.backup-delete type="button"
                    data-api={ "DELETE " (url) }
                    data-confirm={ "Delete backup " (b.id) " and its archive?" }
                    data-then="reload" { "Delete" }
            }
        }
    }
}

/// `#backup-settings`: the passphrase (sent only when typed), how many are kept, the schedule
/// (`null` when off). The remote destination is left out, so it is kept.
fn settings_form(s: &Settings) -> Markup {
    let time = s
        .schedule
        .as_ref()
        .map_or(DEFAULT_TIME, |x| x.time.as_str());
    let weekday = s.schedule.as_ref().and_then(|x| x.weekday.as_deref());
    html! {
        form.form-stacked #backup-settings data-api="PUT /api/v1/backups/settings"
            data-then="reload" {
            (form_error())
            p #backup-passphrase-state {
                "Passphrase: "
                @if s.passphrase_set { (badge("ok", "set")) } @else { (badge("warn", "not set")) }
            }
            (field(
                if s.passphrase_set { "New passphrase (empty: unchanged)" } else { "Passphrase" },
                "passphrase",
                html! {
                    input #backup-passphrase type="password" name="passphrase" maxlength="1024"
                        autocomplete="new-password" required[!s.passphrase_set];
                },
            ))
            (field("Repeat the passphrase", "repeat_passphrase", html! {
                input #backup-passphrase-repeat type="password" name="repeat_passphrase"
                    autocomplete="new-password" maxlength="1024" data-skip data-match="passphrase";
            }))
            p.hint {
                "Archives are encrypted with it; a restore needs it. It is never shown again, and "
                "a lost passphrase cannot be recovered: keep it somewhere safe."
            }
            (field("Backups kept (1 to 100; older ones are deleted)", "keep", html! {
                input #backup-keep type="number" name="keep" data-type="number" min="1" max="100"
                    value=(s.keep) required;
            }))
            label.check {
                input #backup-scheduled type="checkbox" data-skip data-null-unless="schedule"
                    checked[s.schedule.is_some()];
                "Make a backup on a schedule"
            }
            (field("At (the cluster's time zone)", "schedule.time", html! {
                input #backup-time type="time" name="schedule.time" value=(time);
            }))
            (field("On", "schedule.weekday", html! {
                select #backup-weekday name="schedule.weekday" {
                    option value="" selected[weekday.is_none()] { "every day" }
                    @for d in WEEKDAYS {
                        option value=(d) selected[weekday == Some(d)] { "every " (d) }
                    }
                }
            }))
            div.form-actions {
                button.btn.btn-primary #backup-settings-submit type="submit" { "Save settings" }
            }
        }
    }
}

/// `#backup-sftp`: the whole destination, the private key typed each time (it is never shown),
/// and `#backup-sftp-remove`.
fn sftp_form(current: Option<&Sftp>) -> Markup {
    html! {
        @if let Some(t) = current {
            dl.kv #backup-sftp-current {
                dt { "Server" } dd.mono { (t.user) "@" (t.host) ":" (t.port) }
                dt { "Directory" } dd.mono { (t.path) }
                dt { "Host key" } dd.mono.break-all { (t.host_key) }
                dt { "Private key" } dd { (badge("ok", "set")) " never shown" }
            }
            p {
                button.btn.btn-small.btn-danger #backup-sftp-remove type="button"
                    data-api="PUT /api/v1/backups/settings" data-body=(json!({"sftp": null}).to_string())
                    data-confirm="Stop copying backups to the SFTP server?" data-then="reload" {
                    "Stop remote copies"
                }
            }
        } @else {
            p.muted #backup-sftp-none { "Backups stay on the node that made them." }
        }
        form.form-stacked #backup-sftp data-api="PUT /api/v1/backups/settings" data-then="reload" {
            (form_error())
            (field("Host", "sftp.host", html! {
                input #backup-sftp-host type="text" name="sftp.host" maxlength="253" required
                    value=(current.map_or("", |t| t.host.as_str()));
            }))
            (field("Port", "sftp.port", html! {
                input #backup-sftp-port type="number" name="sftp.port" data-type="number" min="1"
                    max="65535" required value=(current.map_or(22, |t| t.port));
            }))
            (field("User", "sftp.user", html! {
                input #backup-sftp-user type="text" name="sftp.user" maxlength="32" required
                    autocomplete="off" value=(current.map_or("", |t| t.user.as_str()));
            }))
            (field("Directory (absolute; it must exist)", "sftp.path", html! {
                input #backup-sftp-path type="text" name="sftp.path" maxlength="1024" required
                    placeholder="/srv/backups" value=(current.map_or("", |t| t.path.as_str()));
            }))
            (field("Private key (OpenSSH format; typed again on each change, never shown)", "sftp.private_key", html! {
                textarea #backup-sftp-key name="sftp.private_key" required autocomplete="off"
                    spellcheck="false" placeholder="-----BEGIN OPENSSH PRIVATE KEY-----" {}
            }))
            (field("Server's host key", "sftp.host_key", html! {
                input #backup-sftp-host-key type="text" name="sftp.host_key" required
                    placeholder="ssh-ed25519 AAAA…" value=(current.map_or("", |t| t.host_key.as_str()));
            }))
            p.hint { "The upload refuses a server with any other host key." }
            div.form-actions {
                button.btn.btn-primary #backup-sftp-submit type="submit" {
                    @if current.is_some() { "Replace the remote copy" } @else { "Copy backups there" }
                }
            }
        }
    }
}
