//! `/api/v1/capture`: SIP message capture for troubleshooting, admins only.
//!
//! - `GET /capture/targets`: the extensions and trunks capture is enabled for, with expiries.
//! - `PUT /capture/targets/{ext|trunk}/{name}` with `{"minutes": N}` (default 60, at most 1440):
//!   enables (or extends) capture; it turns itself off at `expires_at`.
//! - `DELETE /capture/targets/{ext|trunk}/{name}`: disables it.
//! - `GET /capture?call_id=&extension=&source=&since=&until=&limit=`: summaries of the captured
//!   messages, from every member of the cluster (the nodes that served SIP before a failover
//!   included), merged by time; `nodes` says how each member answered.
//! - `GET /capture.pcap?…` (same filters): the messages as a pcap file, each download in the
//!   audit log.
//!
//! `source` is the remote party's IP address (the phone's or the server's), `since`/`until` Unix
//! milliseconds or RFC 3339 times, `limit` at most 10,000 (default 1,000); a download holds at most
//! [`MAX_DOWNLOAD_BYTES`] of messages (the most recent). In the pcap, messages carried over TCP or
//! TLS are written as UDP datagrams between the same addresses (see [`crate::capture::pcap`]); the
//! JSON summary says which transport each used.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use storage::Command;
use storage::capture::{CaptureKind, CaptureTarget, MAX_NAME_LEN};
use storage::model::{AuditEntry, UnixMillis};

use super::AppState;
use super::access::Principal;
use super::error::ApiError;
use super::guard::ClientAddr;
use super::json::JsonBody;
use super::paging::ListQuery;
use crate::capture::remote::{self, NodeAnswer};
use crate::capture::{Captured, Direction, MAX_LIMIT, Query, pcap};
use crate::time::now_millis;

/// Capture time when `PUT` names none.
const DEFAULT_MINUTES: u64 = 60;
/// Longest capture (the state machine's bound too).
const MAX_MINUTES: u64 = 24 * 60;
const DEFAULT_LIMIT: usize = 1_000;
/// Most message bytes in one answer (JSON or pcap); the most recent are kept.
pub(crate) const MAX_DOWNLOAD_BYTES: usize = 16 * 1024 * 1024;
const MAX_CALL_ID: usize = 256;

/// A target as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct TargetView {
    kind: &'static str,
    name: String,
    enabled_at: UnixMillis,
    expires_at: UnixMillis,
    by: String,
    /// Whether it captures now (false once expired).
    active: bool,
}

impl TargetView {
    fn of(t: CaptureTarget, now: UnixMillis) -> Self {
        Self {
            kind: t.kind.as_str(),
            active: t.active_at(now),
            name: t.name,
            enabled_at: t.enabled_at,
            expires_at: t.expires_at,
            by: t.by,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TargetBody {
    #[serde(default)]
    minutes: Option<u64>,
}

fn parse_target(kind: &str, name: &str) -> Result<CaptureKind, ApiError> {
    let kind = CaptureKind::parse(kind)
        .ok_or_else(|| ApiError::NotFound(format!("no capture target kind {kind:?}")))?;
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name.contains('/')
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(
            "name",
            format!("1 to {MAX_NAME_LEN} characters, no '/'"),
        ));
    }
    Ok(kind)
}

/// `GET /capture/targets`.
pub(crate) async fn list_targets(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Vec<TargetView>>, ApiError> {
    who.require_admin()?;
    let now = now_millis();
    let targets = state.cluster.reader().list::<CaptureTarget>()?;
    Ok(Json(
        targets
            .into_iter()
            .map(|t| TargetView::of(t, now))
            .collect(),
    ))
}

/// `PUT /capture/targets/{kind}/{name}`.
pub(crate) async fn put_target(
    State(state): State<AppState>,
    who: Principal,
    Path((kind, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<TargetBody>,
) -> Result<Json<TargetView>, ApiError> {
    who.require_admin()?;
    let kind = parse_target(&kind, &name)?;
    let minutes = body.minutes.unwrap_or(DEFAULT_MINUTES);
    if minutes == 0 || minutes > MAX_MINUTES {
        return Err(ApiError::invalid("minutes", format!("1 to {MAX_MINUTES}")));
    }
    let now = now_millis();
    let target = CaptureTarget {
        kind,
        name: name.clone(),
        enabled_at: now,
        expires_at: now + minutes * 60_000,
        by: who.username.clone(),
    };
    state
        .propose_checked(Command::PutCaptureTarget(target.clone()))
        .await?;
    tracing::info!(kind = kind.as_str(), %name, minutes, by = %who.username, "sip capture enabled");
    Ok(Json(TargetView::of(target, now)))
}

/// `DELETE /capture/targets/{kind}/{name}`.
pub(crate) async fn delete_target(
    State(state): State<AppState>,
    who: Principal,
    Path((kind, name)): Path<(String, String)>,
) -> Result<axum::http::StatusCode, ApiError> {
    who.require_admin()?;
    let kind = parse_target(&kind, &name)?;
    let key = CaptureTarget::key_of(kind, &name);
    state
        .propose_checked(Command::DeleteCaptureTarget { key })
        .await?;
    tracing::info!(kind = kind.as_str(), %name, by = %who.username, "sip capture disabled");
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// The query string of `/capture` and `/capture.pcap`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuery {
    call_id: Option<String>,
    extension: Option<String>,
    source: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
}

/// Unix milliseconds (digits) or an RFC 3339 time, as microseconds.
fn parse_time(name: &str, s: &str) -> Result<u64, ApiError> {
    let ms = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>().ok()
    } else {
        super::cdrs::parse_rfc3339(s)
    };
    ms.and_then(|ms| ms.checked_mul(1000))
        .ok_or_else(|| ApiError::invalid(name, "Unix milliseconds or an RFC 3339 time"))
}

fn parse_query(raw: RawQuery) -> Result<Query, ApiError> {
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let call_id = non_empty(raw.call_id);
    if call_id.as_ref().is_some_and(|c| c.len() > MAX_CALL_ID) {
        return Err(ApiError::invalid(
            "call_id",
            format!("at most {MAX_CALL_ID} bytes"),
        ));
    }
    let extension = non_empty(raw.extension);
    if extension.as_ref().is_some_and(|e| e.len() > MAX_NAME_LEN) {
        return Err(ApiError::invalid(
            "extension",
            format!("at most {MAX_NAME_LEN} bytes"),
        ));
    }
    let remote = non_empty(raw.source)
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|_| ApiError::invalid("source", "an IP address"))
        })
        .transpose()?;
    let since_us = non_empty(raw.since)
        .map(|s| parse_time("since", &s))
        .transpose()?;
    let until_us = non_empty(raw.until)
        .map(|s| parse_time("until", &s))
        .transpose()?;
    let limit = match non_empty(raw.limit) {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| ApiError::invalid("limit", format!("1 to {MAX_LIMIT}")))?,
    };
    Ok(Query {
        call_id,
        extension,
        remote,
        since_us,
        until_us,
        limit,
    })
}

/// One captured message as the JSON answer shows it (its bytes only in the pcap).
#[derive(Debug, Serialize)]
struct MessageView {
    node: u64,
    at_us: u64,
    direction: Direction,
    transport: &'static str,
    local: String,
    remote: String,
    first_line: String,
    call_id: String,
    cseq: String,
    from_user: String,
    to_user: String,
    uri_user: String,
    bytes: usize,
}

impl From<&Captured> for MessageView {
    fn from(m: &Captured) -> Self {
        Self {
            node: m.node,
            at_us: m.at_us,
            direction: m.direction,
            transport: m.transport.as_str(),
            local: m.local.to_string(),
            remote: m.remote.to_string(),
            first_line: m.summary.first_line.clone(),
            call_id: m.summary.call_id.clone(),
            cseq: m.summary.cseq.clone(),
            from_user: m.summary.from_user.clone(),
            to_user: m.summary.to_user.clone(),
            uri_user: m.summary.uri_user.clone(),
            bytes: m.bytes.len(),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct CaptureAnswer {
    messages: Vec<MessageView>,
    nodes: Vec<NodeAnswer>,
}

async fn find(
    state: &AppState,
    raw: RawQuery,
) -> Result<(Vec<Captured>, Vec<NodeAnswer>), ApiError> {
    let q = parse_query(raw)?;
    let (found, nodes) = remote::gather(&state.cluster, &state.capture, &q).await;
    Ok((remote::keep_recent_within(found, MAX_DOWNLOAD_BYTES), nodes))
}

/// `GET /capture`.
pub(crate) async fn list(
    State(state): State<AppState>,
    who: Principal,
    ListQuery(raw): ListQuery<RawQuery>,
) -> Result<Json<CaptureAnswer>, ApiError> {
    who.require_admin()?;
    let (found, nodes) = find(&state, raw).await?;
    Ok(Json(CaptureAnswer {
        messages: found.iter().map(MessageView::from).collect(),
        nodes,
    }))
}

/// `GET /capture.pcap`: written to the audit log before the file is sent.
pub(crate) async fn download(
    State(state): State<AppState>,
    who: Principal,
    client: ClientAddr,
    ListQuery(raw): ListQuery<RawQuery>,
) -> Result<Response, ApiError> {
    who.require_admin()?;
    let filters = describe(&raw);
    let (found, nodes) = find(&state, raw).await?;
    let now = now_millis();
    let unanswered: Vec<String> = nodes
        .iter()
        .filter(|n| n.error.is_some())
        .map(|n| n.node.to_string())
        .collect();
    let entry = AuditEntry {
        at: now,
        seq: format!("{:08x}", rand::random::<u32>()),
        actor: who.username.clone(),
        source: client.0.to_string(),
        action: format!(
            "GET /api/v1/capture.pcap: downloaded {} SIP messages ({filters}){}",
            found.len(),
            if unanswered.is_empty() {
                String::new()
            } else {
                format!("; nodes not answering: {}", unanswered.join(", "))
            }
        ),
        status: 200,
        node_id: state.cluster.node_id(),
    };
    state.cluster.propose(Command::Audit(entry)).await?;
    tracing::info!(by = %who.username, messages = found.len(), %filters, "sip capture downloaded");
    metrics::counter!("pbx_sip_capture_downloads_total").increment(1);
    let file = pcap::write(&found);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/vnd.tcpdump.pcap".to_owned(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"sip-capture-{now}.pcap\""),
            ),
        ],
        file,
    )
        .into_response())
}

/// The filters of a download, for its audit entry.
fn describe(raw: &RawQuery) -> String {
    let fields = [
        ("call_id", &raw.call_id),
        ("extension", &raw.extension),
        ("source", &raw.source),
        ("since", &raw.since),
        ("until", &raw.until),
        ("limit", &raw.limit),
    ];
    let parts: Vec<String> = fields
        .iter()
        .filter_map(|(name, v)| {
            v.as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| format!("{name}={}", v.chars().take(80).collect::<String>()))
        })
        .collect();
    if parts.is_empty() {
        "no filter".to_owned()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawQuery {
        let q: String = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        serde_urlencoded_like(&q)
    }

    fn serde_urlencoded_like(q: &str) -> RawQuery {
        let uri: axum::http::Uri = format!("/x?{q}").parse().unwrap();
        axum::extract::Query::<RawQuery>::try_from_uri(&uri)
            .unwrap()
            .0
    }

    #[test]
    fn a_query_is_parsed_and_bounded() {
        let q = parse_query(raw(&[
            ("call_id", "abc"),
            ("extension", "1001"),
            ("source", "192.0.2.1"),
            ("since", "1000"),
            ("until", "1970-01-01T00:00:02Z"),
            ("limit", "5"),
        ]))
        .unwrap();
        assert_eq!(q.call_id.as_deref(), Some("abc"));
        assert_eq!(q.extension.as_deref(), Some("1001"));
        assert_eq!(q.remote, Some("192.0.2.1".parse().unwrap()));
        assert_eq!((q.since_us, q.until_us), (Some(1_000_000), Some(2_000_000)));
        assert_eq!(q.limit, 5);
        assert_eq!(
            parse_query(RawQuery::default()).unwrap().limit,
            DEFAULT_LIMIT
        );
        for bad in [
            ("limit", "0"),
            ("limit", "10001"),
            ("source", "pbx"),
            ("since", "yesterday"),
        ] {
            assert!(parse_query(raw(&[bad])).is_err(), "{bad:?}");
        }
        let long = "x".repeat(MAX_CALL_ID + 1);
        assert!(parse_query(raw(&[("call_id", &long)])).is_err());
    }

    #[test]
    fn a_target_path_is_checked() {
        assert_eq!(parse_target("ext", "1001").unwrap(), CaptureKind::Extension);
        assert_eq!(
            parse_target("trunk", "carrier").unwrap(),
            CaptureKind::Trunk
        );
        assert!(matches!(
            parse_target("phone", "1"),
            Err(ApiError::NotFound(_))
        ));
        assert!(parse_target("ext", "").is_err());
        assert!(parse_target("ext", &"1".repeat(65)).is_err());
    }
}
