//! `/api/v1/events` and `/api/v1/notifications/recipients`: the event center and who it notifies.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use storage::Command;
use storage::model::{Channel, Event, Recipient, Severity};

use super::AppState;
use super::access::Principal;
use super::error::ApiError;
use super::json::JsonBody;
use super::paging::{self, LIMITS, ListQuery, PageRequest, Scan};
use crate::time::now_millis;

/// Rows looked at per request at most, whatever the filters.
const MAX_SCAN: usize = 20_000;
const MAX_RECIPIENTS: usize = 100;
/// Sorts after every event key (they start with digits): the end of the table.
const END_OF_TABLE: &str = "\u{7f}";

/// The query string as sent; `limit` is text so that a bad one gets the paging's own message.
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
    limit: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct EventPage {
    events: Vec<Event>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// A recipient id: what `create_recipient` makes (hex, `-`), bounded.
fn is_recipient_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn is_kind(s: &str) -> bool {
    !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Events, oldest first, filtered by kind and severity, paged by [`paging`]. A page may hold fewer
/// than `limit` events and still carry `next`: a request looks at [`MAX_SCAN`] rows at most.
pub(crate) async fn list(
    State(state): State<AppState>,
    who: Principal,
    ListQuery(q): ListQuery<EventQuery>,
) -> Result<Json<EventPage>, ApiError> {
    who.require(who.grants.monitor || who.grants.security)?;
    let page = PageRequest::parse(q.after, q.limit.as_deref(), LIMITS, paging::is_time_key)?;
    if q.kind.as_deref().is_some_and(|k| !is_kind(k)) {
        return Err(ApiError::BadRequest(
            "kind: lower-case letters and '_'".into(),
        ));
    }
    state.cluster.linearizable_barrier().await?;
    let reader = state.cluster.reader().clone();
    let (kind, severity) = (q.kind, q.severity);
    let found = tokio::task::spawn_blocking(move || {
        let wanted = |e: &Event| {
            kind.as_deref().is_none_or(|k| e.kind == k) && severity.is_none_or(|s| e.severity == s)
        };
        let filtered = kind.is_some() || severity.is_some();
        paging::scan_page(
            &reader,
            Scan {
                from: paging::start_key(None, page.after.as_deref()),
                to: END_OF_TABLE,
                limit: page.limit,
                budget: MAX_SCAN,
                filter: filtered.then_some(&wanted as &dyn Fn(&Event) -> bool),
            },
        )
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(EventPage {
        events: found.items,
        next: found.next,
    }))
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
    who: Principal,
) -> Result<Json<Recipients>, ApiError> {
    who.require(who.grants.security)?;
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
    who: Principal,
    JsonBody(req): JsonBody<NewRecipient>,
) -> Result<(StatusCode, Json<RecipientView>), ApiError> {
    who.require(who.grants.security)?;
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
    who: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    who.require(who.grants.security)?;
    if !is_recipient_id(&id) {
        return Err(ApiError::BadRequest(
            "recipient id: letters, digits and '-'".into(),
        ));
    }
    state
        .propose_checked(Command::DeleteRecipient { id })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
