//! `/api/v1/backups`: the cluster's backups, admins only.
//!
//! - `GET /backups`: every backup (newest first) with node, status, size, SHA-256 and the log
//!   index its state is as of; and the settings (whether a passphrase is set, never the
//!   passphrase; how many are kept; the schedule).
//! - `PUT /backups/settings` `{"passphrase"?, "keep"?, "schedule"?, "sftp"?}`: the passphrase must
//!   pass the password policy; `keep` 1–100 (default 7); `schedule` `{"time": "HH:MM", "weekday"?:
//!   "monday"…}` in the cluster's time zone, or `null` for none; `sftp` `{"host", "port", "user",
//!   "path", "private_key", "host_key"}` (the private key is never shown again), or `null`.
//! - `POST /backups`: makes one now, on the node that answers, and returns its record once it is
//!   written (`503` while another is being made there, `409` without a passphrase).
//! - `GET /backups/{id}/download`: the archive, from the node that holds it (another node answers
//!   `307` to that node's API). Each download is in the audit log.
//! - `DELETE /backups/{id}`: forgets it; its node deletes the file.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use storage::Command;
use storage::backup::{BackupRecord, BackupSchedule, BackupSettings, SftpTarget};
use storage::model::AuditEntry;

use super::AppState;
use super::access::Principal;
use super::error::ApiError;
use super::guard::ClientAddr;
use super::json::JsonBody;
use crate::backup::{BackupError, Trigger};
use crate::time::now_millis;

const DEFAULT_KEEP: u32 = 7;
const MAX_KEEP: u32 = 100;
const MAX_PASSPHRASE: usize = 1024;
const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

#[derive(Debug, Serialize)]
pub(crate) struct ScheduleView {
    time: String,
    weekday: Option<&'static str>,
}

impl ScheduleView {
    fn of(s: BackupSchedule) -> Self {
        Self {
            time: format!("{:02}:{:02}", s.hour, s.minute),
            weekday: s
                .weekday
                .and_then(|w| WEEKDAYS.get(usize::from(w)).copied()),
        }
    }
}

/// The remote destination as the API shows it: everything but the private key.
#[derive(Debug, Serialize)]
pub(crate) struct SftpView {
    host: String,
    port: u16,
    user: String,
    path: String,
    host_key: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct SettingsView {
    passphrase_set: bool,
    keep: u32,
    schedule: Option<ScheduleView>,
    sftp: Option<SftpView>,
}

#[derive(Debug, Serialize)]
pub(crate) struct BackupList {
    backups: Vec<BackupRecord>,
    settings: SettingsView,
}

fn settings_view(s: Option<&BackupSettings>) -> SettingsView {
    SettingsView {
        passphrase_set: s.is_some_and(|s| !s.passphrase.is_empty()),
        keep: s.map_or(DEFAULT_KEEP, |s| s.keep),
        schedule: s.and_then(|s| s.schedule).map(ScheduleView::of),
        sftp: s.and_then(|s| s.sftp.as_ref()).map(|t| SftpView {
            host: t.host.clone(),
            port: t.port,
            user: t.user.clone(),
            path: t.path.clone(),
            host_key: t.host_key.clone(),
        }),
    }
}

fn current_settings(state: &AppState) -> Result<Option<BackupSettings>, ApiError> {
    Ok(state
        .cluster
        .reader()
        .get::<BackupSettings>(BackupSettings::KEY)?)
}

pub(crate) async fn list(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<BackupList>, ApiError> {
    who.require_admin()?;
    let mut backups = state.cluster.reader().list::<BackupRecord>()?;
    backups.sort_by_key(|b| std::cmp::Reverse(b.started_at));
    let settings = current_settings(&state)?;
    Ok(Json(BackupList {
        backups,
        settings: settings_view(settings.as_ref()),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleBody {
    time: String,
    #[serde(default)]
    weekday: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsBody {
    #[serde(default)]
    passphrase: Option<String>,
    #[serde(default)]
    keep: Option<u32>,
    /// Absent: unchanged; `null`: no schedule.
    #[serde(default, with = "serde_with_null")]
    schedule: Option<Option<ScheduleBody>>,
    /// Absent: unchanged; `null`: no remote copy.
    #[serde(default, with = "serde_with_null")]
    sftp: Option<Option<SftpTarget>>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
mod serde_with_null {
    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

fn parse_schedule(body: &ScheduleBody) -> Result<BackupSchedule, ApiError> {
    let bad = || ApiError::invalid("schedule.time", "must be HH:MM, 00:00 to 23:59");
    let (h, m) = body.time.split_once(':').ok_or_else(bad)?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return Err(bad());
    }
    let hour: u8 = h.parse().map_err(|_| bad())?;
    let minute: u8 = m.parse().map_err(|_| bad())?;
    if hour > 23 || minute > 59 {
        return Err(bad());
    }
    let weekday = match &body.weekday {
        None => None,
        Some(w) => Some(
            WEEKDAYS
                .iter()
                .position(|d| d.eq_ignore_ascii_case(w))
                .and_then(|i| u8::try_from(i).ok())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "schedule.weekday",
                        "must be monday … sunday, or absent for daily",
                    )
                })?,
        ),
    };
    Ok(BackupSchedule {
        weekday,
        hour,
        minute,
    })
}

pub(crate) async fn put_settings(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<SettingsBody>,
) -> Result<Json<SettingsView>, ApiError> {
    who.require_admin()?;
    state.cluster.linearizable_barrier().await?;
    let current = current_settings(&state)?;
    let passphrase = match body.passphrase {
        Some(p) => {
            if p.len() > MAX_PASSPHRASE {
                return Err(ApiError::invalid(
                    "passphrase",
                    format!("at most {MAX_PASSPHRASE} bytes"),
                ));
            }
            crate::policy::check_password(&p, &["backup", "pbx"])
                .map_err(|e| ApiError::invalid("passphrase", e))?;
            p
        }
        None => match &current {
            Some(c) => c.passphrase.clone(),
            None => {
                return Err(ApiError::invalid(
                    "passphrase",
                    "required: no backup passphrase is set yet",
                ));
            }
        },
    };
    let keep = body
        .keep
        .or(current.as_ref().map(|c| c.keep))
        .unwrap_or(DEFAULT_KEEP);
    if !(1..=MAX_KEEP).contains(&keep) {
        return Err(ApiError::invalid(
            "keep",
            format!("must be 1 to {MAX_KEEP}"),
        ));
    }
    let schedule = match &body.schedule {
        None => current.as_ref().and_then(|c| c.schedule),
        Some(None) => None,
        Some(Some(s)) => Some(parse_schedule(s)?),
    };
    let sftp = match body.sftp {
        None => current.as_ref().and_then(|c| c.sftp.clone()),
        Some(None) => None,
        Some(Some(t)) => {
            if let Some((field, reason)) = crate::backup::sftp::problem(&t) {
                return Err(ApiError::invalid(format!("sftp.{field}"), reason));
            }
            Some(t)
        }
    };
    let settings = BackupSettings {
        passphrase,
        keep,
        schedule,
        sftp,
        updated_at: now_millis(),
    };
    state
        .propose_checked(Command::PutBackupSettings(settings.clone()))
        .await?;
    Ok(Json(settings_view(Some(&settings))))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    who: Principal,
) -> Result<(StatusCode, Json<BackupRecord>), ApiError> {
    who.require_admin()?;
    let record = state
        .backups
        .create(Trigger::Manual)
        .await
        .map_err(|e| match e {
            BackupError::NotConfigured => ApiError::Conflict(e.to_string()),
            BackupError::Busy => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        })?;
    tracing::info!(by = %who.username, backup = %record.id, "backup made through the API");
    Ok((StatusCode::CREATED, Json(record)))
}

fn find(state: &AppState, id: &str) -> Result<BackupRecord, ApiError> {
    let not_found = || {
        ApiError::NotFound(format!(
            "no backup {:?}",
            id.chars().take(64).collect::<String>()
        ))
    };
    if !BackupRecord::valid_id(id) {
        return Err(not_found());
    }
    state
        .cluster
        .reader()
        .get::<BackupRecord>(id)?
        .ok_or_else(not_found)
}

pub(crate) async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<BackupRecord>, ApiError> {
    who.require_admin()?;
    Ok(Json(find(&state, &id)?))
}

pub(crate) async fn download(
    State(state): State<AppState>,
    who: Principal,
    client: ClientAddr,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    who.require_admin()?;
    let record = find(&state, &id)?;
    if record.node_id != state.cluster.node_id() {
        let holder = state
            .cluster
            .members()
            .into_iter()
            .find(|(n, _, _)| *n == record.node_id)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "backup {id} is on node {}, which is no longer a member",
                    record.node_id
                ))
            })?;
        let location = format!("https://{}/api/v1/backups/{id}/download", holder.1.api_addr);
        return Ok((
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response());
    }
    let path = state
        .backups
        .path(&id)
        .ok_or_else(|| ApiError::NotFound(format!("no backup {id}")))?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::NotFound(format!("backup {id} has no archive on this node: {e}")))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .len();
    let entry = AuditEntry {
        at: now_millis(),
        seq: format!("{:08x}", rand::random::<u32>()),
        actor: who.username.clone(),
        source: client.0.to_string(),
        action: format!("GET /api/v1/backups/{id}/download: downloaded backup {id} ({size} bytes)"),
        status: 200,
        node_id: state.cluster.node_id(),
    };
    state.cluster.propose(Command::Audit(entry)).await?;
    metrics::counter!("pbx_backup_downloads_total").increment(1);
    let body = Body::from_stream(super::audio::read_stream(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"pbx-backup-{id}.pbxbak\""),
            ),
        ],
        body,
    )
        .into_response())
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    who.require_admin()?;
    let record = find(&state, &id)?;
    state
        .propose_checked(Command::DeleteBackup { id: record.id })
        .await?;
    // Its node's sweep deletes the file; this one's at once when it is here.
    if record.node_id == state.cluster.node_id() {
        state.backups.sweep();
    }
    Ok(StatusCode::NO_CONTENT)
}
