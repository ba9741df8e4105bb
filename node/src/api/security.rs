//! `/api/v1/firewall`, `/api/v1/bans` and `/api/v1/audit`: the replicated firewall rules and default
//! policy, the automatic defence's bans (listed, added, lifted), and the audit log of changes.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use storage::Command;
use storage::model::{
    AuditEntry, Ban, FirewallAction, FirewallRule, Service, Setting, Severity, Transport,
};

use super::AppState;
use super::access::Principal;
use super::error::ApiError;
use super::json::JsonBody;
use super::paging::{self, LIMITS, ListQuery, Page, PageRequest};
use crate::security::DEFAULT_POLICY_KEY;
use crate::security::net::Net;
use crate::time::now_millis;

/// Rules at most: the gate checks each against every packet of an unknown source.
const MAX_RULES: usize = 1000;
const MAX_COMMENT: usize = 200;

#[derive(Debug, Serialize)]
pub(crate) struct Rules {
    rules: Vec<FirewallRule>,
}

pub(crate) async fn list_rules(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Rules>, ApiError> {
    who.require(who.grants.security)?;
    state.cluster.linearizable_barrier().await?;
    Ok(Json(Rules {
        rules: state.cluster.reader().list::<FirewallRule>()?,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewRule {
    action: FirewallAction,
    network: String,
    #[serde(default)]
    services: Vec<Service>,
    #[serde(default)]
    transports: Vec<Transport>,
    #[serde(default)]
    comment: String,
}

pub(crate) async fn create_rule(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(req): JsonBody<NewRule>,
) -> Result<(StatusCode, Json<FirewallRule>), ApiError> {
    who.require(who.grants.security)?;
    let net: Net = req
        .network
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("network: {e}")))?;
    if req.comment.chars().count() > MAX_COMMENT || req.comment.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "comment: at most {MAX_COMMENT} printable characters"
        )));
    }
    if state.cluster.reader().count::<FirewallRule>()? as usize >= MAX_RULES {
        return Err(ApiError::Conflict(format!(
            "at most {MAX_RULES} firewall rules"
        )));
    }
    let mut services = req.services;
    services.sort_by_key(|s| s.as_str());
    services.dedup();
    let mut transports = req.transports;
    transports.sort_by_key(|t| t.as_str());
    transports.dedup();
    let now = now_millis();
    let rule = FirewallRule {
        id: format!("{now:x}-{:06x}", rand::random::<u32>() & 0xff_ffff),
        action: req.action,
        network: net.to_string(),
        services,
        transports,
        comment: req.comment,
        created_by: who.username,
        created_at: now,
    };
    state
        .propose_checked(Command::PutFirewallRule(rule.clone()))
        .await?;
    tracing::warn!(rule = %rule.id, action = ?rule.action, network = %rule.network, by = %rule.created_by, "security: firewall changed");
    state.events.raise(
        "firewall_changed",
        Severity::Warning,
        None,
        format!(
            "{} added a {:?} rule for {}",
            rule.created_by, rule.action, rule.network
        ),
    );
    Ok((StatusCode::CREATED, Json(rule)))
}

pub(crate) async fn delete_rule(
    State(state): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    who.require(who.grants.security)?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ApiError::BadRequest(
            "rule id: letters, digits and '-'".into(),
        ));
    }
    state
        .propose_checked(Command::DeleteFirewallRule { id: id.clone() })
        .await?;
    tracing::warn!(rule = %id, by = %who.username, "security: firewall rule removed");
    state.events.raise(
        "firewall_changed",
        Severity::Warning,
        None,
        format!("{} removed firewall rule {id}", who.username),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Policy {
    /// `allow` or `block`: what happens to a source no rule names.
    default: String,
}

/// The automatic defence and password rules as this node runs them: thresholds and trusted networks
/// come from each node's `pbx.toml` (`[security]`), so they are shown per node, read-only.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Defence {
    pub node_id: u64,
    pub trusted_networks: Vec<String>,
    pub sip_packets: Rate,
    pub api_requests: Rate,
    pub auth_failures: Rate,
    pub ban_secs: u64,
    pub max_ban_secs: u64,
    pub password_min_len: usize,
    pub password_max_age_days: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Rate {
    pub limit: u32,
    pub window_secs: u64,
}

pub(crate) async fn defence(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Defence>, ApiError> {
    who.require(who.grants.security)?;
    let c = state.security.settings();
    Ok(Json(Defence {
        node_id: state.cluster.node_id(),
        trusted_networks: c.trusted_networks.clone(),
        sip_packets: Rate {
            limit: c.sip_packets_limit,
            window_secs: c.sip_packets_window_secs,
        },
        api_requests: Rate {
            limit: c.api_requests_limit,
            window_secs: c.api_requests_window_secs,
        },
        auth_failures: Rate {
            limit: c.auth_failures_limit,
            window_secs: c.auth_failures_window_secs,
        },
        ban_secs: c.ban_secs,
        max_ban_secs: c.max_ban_secs,
        password_min_len: crate::policy::MIN_LEN,
        password_max_age_days: c.password_max_age_days,
    }))
}

pub(crate) async fn get_policy(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Policy>, ApiError> {
    who.require(who.grants.security)?;
    state.cluster.linearizable_barrier().await?;
    let block = state
        .cluster
        .reader()
        .get::<Setting>(DEFAULT_POLICY_KEY)?
        .is_some_and(|s| s.value == "block");
    Ok(Json(Policy {
        default: if block { "block" } else { "allow" }.into(),
    }))
}

pub(crate) async fn put_policy(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(req): JsonBody<Policy>,
) -> Result<Json<Policy>, ApiError> {
    who.require(who.grants.security)?;
    if req.default != "allow" && req.default != "block" {
        return Err(ApiError::BadRequest(
            "default must be \"allow\" or \"block\"".into(),
        ));
    }
    if req.default == "block" {
        // Refuse to lock the admin out: their own address must be allowed by a rule first.
        let rules = state.cluster.reader().list::<FirewallRule>()?;
        if !rules.iter().any(|r| {
            r.action == FirewallAction::Allow
                && (r.services.is_empty() || r.services.contains(&Service::Api))
        }) {
            return Err(ApiError::Conflict(
                "add an allow rule covering the API for your own network before blocking by default"
                    .into(),
            ));
        }
    }
    let setting = Setting {
        key: DEFAULT_POLICY_KEY.into(),
        value: req.default.clone(),
        updated_at: now_millis(),
    };
    state.propose_checked(Command::PutSetting(setting)).await?;
    tracing::warn!(policy = %req.default, by = %who.username, "security: firewall default policy changed");
    state.events.raise(
        "firewall_changed",
        Severity::Warning,
        None,
        format!("{} set the default policy to {}", who.username, req.default),
    );
    Ok(Json(req))
}

#[derive(Debug, Serialize)]
pub(crate) struct BanView {
    ip: String,
    active: bool,
    until: u64,
    reason: String,
    strikes: u32,
    created_at: u64,
    node_id: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Bans {
    bans: Vec<BanView>,
}

pub(crate) async fn list_bans(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Bans>, ApiError> {
    who.require(who.grants.security)?;
    state.cluster.linearizable_barrier().await?;
    let now = now_millis();
    let bans = state
        .cluster
        .reader()
        .list::<Ban>()?
        .into_iter()
        .map(|b| BanView {
            active: b.until > now,
            ip: b.ip,
            until: b.until,
            reason: b.reason,
            strikes: b.strikes,
            created_at: b.created_at,
            node_id: b.node_id,
        })
        .collect();
    Ok(Json(Bans { bans }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewBan {
    ip: String,
    /// Default 60 minutes; at most 30 days.
    #[serde(default)]
    minutes: Option<u64>,
}

pub(crate) async fn create_ban(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(req): JsonBody<NewBan>,
) -> Result<StatusCode, ApiError> {
    who.require(who.grants.security)?;
    let ip: IpAddr = req
        .ip
        .parse()
        .map_err(|_| ApiError::BadRequest("ip: not an IPv4 or IPv6 address".into()))?;
    let minutes = req.minutes.unwrap_or(60);
    if !(1..=30 * 24 * 60).contains(&minutes) {
        return Err(ApiError::BadRequest("minutes must be 1 to 43200".into()));
    }
    let now = now_millis();
    let ban = Ban {
        ip: ip.to_canonical().to_string(),
        until: now + minutes * 60_000,
        reason: "manual".into(),
        strikes: 1,
        created_at: now,
        node_id: state.cluster.node_id(),
    };
    state.propose_checked(Command::PutBan(ban)).await?;
    tracing::warn!(source = %ip, minutes, by = %who.username, "security: source banned by an admin");
    Ok(StatusCode::CREATED)
}

pub(crate) async fn lift_ban(
    State(state): State<AppState>,
    who: Principal,
    Path(ip): Path<String>,
) -> Result<StatusCode, ApiError> {
    who.require(who.grants.security)?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| ApiError::BadRequest("not an IPv4 or IPv6 address".into()))?;
    let ip = ip.to_canonical();
    state
        .propose_checked(Command::LiftBan {
            ip: ip.to_string(),
            now: now_millis(),
            forget: true,
        })
        .await?;
    state.security.forgive(ip);
    tracing::warn!(source = %ip, by = %who.username, "security: ban lifted");
    state.events.raise(
        "ban_lifted",
        Severity::Info,
        Some(ip),
        format!("{} lifted the ban on {ip}", who.username),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    after: Option<String>,
    /// Text, so that a bad one gets the paging's own message.
    #[serde(default)]
    limit: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct AuditPage {
    entries: Vec<AuditEntry>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// The audit log, oldest first, paged by [`paging`].
pub(crate) async fn audit(
    State(state): State<AppState>,
    who: Principal,
    ListQuery(q): ListQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    who.require(who.grants.security)?;
    let page = PageRequest::parse(q.after, q.limit.as_deref(), LIMITS, paging::is_time_key)?;
    state.cluster.linearizable_barrier().await?;
    let rows = state
        .cluster
        .reader()
        .list_page::<AuditEntry>(page.after.as_deref(), page.limit + 1)?;
    let found = Page::from_overfetch(rows, page.limit, storage::Record::key);
    Ok(Json(AuditPage {
        entries: found.items,
        next: found.next,
    }))
}
