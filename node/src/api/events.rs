//! `/api/v1/events` and `/api/v1/notifications/recipients`: the event center and who it notifies.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use storage::Command;
use storage::model::{Channel, Event, Recipient, Severity};

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;
use super::json::JsonBody;
use crate::time::now_millis;

const MAX_PAGE: usize = 1000;
/// Rows looked at per request at most, whatever the filters.
const MAX_SCAN: usize = 20_000;
const MAX_RECIPIENTS: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventQuery {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
pub(crate) struct EventPage {
    events: Vec<Event>,
    next: Option<String>,
}

fn is_cursor(s: &str) -> bool {
    s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn is_kind(s: &str) -> bool {
    !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Events, oldest first, filtered by kind and severity; `next` continues.
pub(crate) async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    Query(q): Query<EventQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1 to {MAX_PAGE}"
        )));
    }
    if q.after.as_deref().is_some_and(|a| !is_cursor(a)) {
        return Err(ApiError::BadRequest(
            "after: not a cursor from this API".into(),
        ));
    }
    if q.kind.as_deref().is_some_and(|k| !is_kind(k)) {
        return Err(ApiError::BadRequest(
            "kind: lower-case letters and '_'".into(),
        ));
    }
    state.cluster.linearizable_barrier().await?;
    let from = q
        .after
        .as_ref()
        .map_or_else(String::new, |a| format!("{a}\u{0}"));
    let (rows, resume) =
        state
            .cluster
            .reader()
            .scan_range::<Event>(&from, "\u{7f}", MAX_SCAN, |e| {
                q.kind.as_deref().is_none_or(|k| e.kind == k)
                    && q.severity.is_none_or(|s| e.severity == s)
            })?;
    let more = rows.len() > limit;
    let events: Vec<Event> = rows.into_iter().take(limit).collect();
    let next = if more {
        events.last().map(storage::Record::key)
    } else {
        resume
    };
    Ok(Json(EventPage { events, next }))
}

#[derive(Debug, Serialize)]
pub(crate) struct RecipientView {
    id: String,
    channel: Channel,
    address: String,
    kinds: Vec<String>,
    created_at: u64,
    /// The webhook's signing key: only in the answer that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl From<Recipient> for RecipientView {
    fn from(r: Recipient) -> Self {
        Self {
            id: r.id,
            channel: r.channel,
            address: r.address,
            kinds: r.kinds,
            created_at: r.created_at,
            secret: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Recipients {
    recipients: Vec<RecipientView>,
}

pub(crate) async fn list_recipients(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Recipients>, ApiError> {
    state.cluster.linearizable_barrier().await?;
    let recipients = state
        .cluster
        .reader()
        .list::<Recipient>()?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(Recipients { recipients }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRecipient {
    channel: Channel,
    address: String,
    #[serde(default)]
    kinds: Vec<String>,
}

pub(crate) async fn create_recipient(
    State(state): State<AppState>,
    _admin: Admin,
    JsonBody(req): JsonBody<NewRecipient>,
) -> Result<(StatusCode, Json<RecipientView>), ApiError> {
    let address = req.address.trim().to_owned();
    match req.channel {
        Channel::Webhook => {
            let ok = address.len() <= 512
                && address.starts_with("https://")
                && reqwest::Url::parse(&address).is_ok_and(|u| u.host().is_some());
            if !ok {
                return Err(ApiError::BadRequest(
                    "address: an https:// URL (webhooks are sent over TLS only)".into(),
                ));
            }
        }
        Channel::Email => {
            let ok = address.len() <= 254
                && address.matches('@').count() == 1
                && !address.starts_with('@')
                && !address.ends_with('@')
                && address.bytes().all(|b| {
                    b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'\\' | b',')
                });
            if !ok {
                return Err(ApiError::BadRequest("address: an e-mail address".into()));
            }
        }
    }
    if req.kinds.len() > 32 || !req.kinds.iter().all(|k| is_kind(k)) {
        return Err(ApiError::BadRequest(
            "kinds: up to 32 event kinds (lower-case letters and '_')".into(),
        ));
    }
    if state.cluster.reader().count::<Recipient>()? as usize >= MAX_RECIPIENTS {
        return Err(ApiError::Conflict(format!(
            "at most {MAX_RECIPIENTS} recipients"
        )));
    }
    let secret = match req.channel {
        Channel::Webhook => hex::encode(rand::random::<[u8; 32]>()),
        Channel::Email => String::new(),
    };
    let now = now_millis();
    let recipient = Recipient {
        id: format!("{now:x}-{:06x}", rand::random::<u32>() & 0xff_ffff),
        channel: req.channel,
        address,
        kinds: req.kinds,
        secret: secret.clone(),
        created_at: now,
    };
    state
        .propose_checked(Command::PutRecipient(recipient.clone()))
        .await?;
    let mut view = RecipientView::from(recipient);
    view.secret = (!secret.is_empty()).then_some(secret);
    Ok((StatusCode::CREATED, Json(view)))
}

pub(crate) async fn delete_recipient(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !is_cursor(&id) || id.is_empty() {
        return Err(ApiError::BadRequest(
            "recipient id: letters, digits and '-'".into(),
        ));
    }
    state
        .propose_checked(Command::DeleteRecipient { id })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
