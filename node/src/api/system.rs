//! What the setup wizard and the extensions page need beyond plain records: the realm and time zone
//! (`/system`), a network check (`/system/network`), bulk import of extensions from CSV
//! (`/extensions/import`), and the e-mail that gives an extension's user their portal login
//! (`/extensions/{number}/welcome`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use storage::Command;
use storage::model::{ClusterRecord, Extension, MemberRecord, Setting, VipConfig};
use storage::routing::PutMode;
use storage::web::WebAccount;

use super::AppState;
use super::access::Principal;
use super::error::ApiError;
use super::extensions;
use super::json::JsonBody;
use crate::time::now_millis;
use crate::{accounts, credentials};

const TIME_ZONE: &str = "system.time_zone";
const SETUP_DONE: &str = "system.setup_done";
/// Largest CSV import body, and rows in it.
pub(crate) const MAX_IMPORT_BYTES: usize = 2 * 1024 * 1024;
const MAX_IMPORT_ROWS: usize = 10_000;
/// Extensions created per Raft entry during an import.
const IMPORT_BATCH: usize = 500;

#[derive(Debug, Serialize)]
pub(crate) struct SystemView {
    pub realm: String,
    pub time_zone: String,
    pub setup_done: bool,
    pub version: &'static str,
    pub node_id: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SystemUpdate {
    #[serde(default)]
    pub realm: Option<String>,
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub setup_done: Option<bool>,
}

fn setting(state: &AppState, key: &str) -> Result<Option<String>, ApiError> {
    Ok(state.cluster.reader().get::<Setting>(key)?.map(|s| s.value))
}

pub(crate) fn view(state: &AppState) -> Result<SystemView, ApiError> {
    let realm = state
        .cluster
        .reader()
        .get::<ClusterRecord>(ClusterRecord::KEY)?
        .ok_or_else(|| ApiError::Unavailable("cluster not initialised".into()))?
        .realm;
    Ok(SystemView {
        realm,
        time_zone: setting(state, TIME_ZONE)?.unwrap_or_else(|| "UTC".to_owned()),
        setup_done: setting(state, SETUP_DONE)?.is_some_and(|v| v == "true"),
        version: env!("CARGO_PKG_VERSION"),
        node_id: state.cluster.node_id(),
    })
}

pub(crate) async fn get(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<SystemView>, ApiError> {
    who.require(who.grants.monitor)?;
    Ok(Json(view(&state)?))
}

/// An IANA zone name as `Area/City` (or `UTC`): the shape is checked, not the tz database, which
/// the nodes need not have.
fn valid_time_zone(tz: &str) -> bool {
    tz == "UTC"
        || (tz.len() <= 64
            && tz.contains('/')
            && tz.split('/').all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-+".contains(&b))
            }))
}

fn valid_realm(realm: &str) -> bool {
    !realm.is_empty()
        && realm.len() <= 253
        && realm
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

pub(crate) async fn put(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(req): JsonBody<SystemUpdate>,
) -> Result<Json<SystemView>, ApiError> {
    who.require_admin()?;
    if let Some(tz) = &req.time_zone
        && !valid_time_zone(tz)
    {
        return Err(ApiError::invalid(
            "time_zone",
            "must be UTC or an IANA name like Europe/Paris",
        ));
    }
    if let Some(realm) = &req.realm
        && !valid_realm(realm)
    {
        return Err(ApiError::invalid("realm", "must be a domain name"));
    }
    state.cluster.linearizable_barrier().await?;
    let current = view(&state)?;
    if let Some(realm) = req.realm.filter(|r| *r != current.realm) {
        let cmd = super::audit::attach(
            Command::SetRealm {
                realm: realm.clone(),
            },
            state.cluster.reader(),
        );
        match state.cluster.propose(cmd).await? {
            storage::Response::Ok => {}
            storage::Response::Conflict { .. } => {
                return Err(ApiError::Conflict(
                    "realm: cannot change once extensions exist (their secrets are bound to it)"
                        .into(),
                ));
            }
            r => return Err(r.into()),
        }
    }
    let now = now_millis();
    for (key, value) in [
        (TIME_ZONE, req.time_zone),
        (SETUP_DONE, req.setup_done.map(|d| d.to_string())),
    ] {
        if let Some(value) = value {
            state
                .propose_checked(Command::PutSetting(Setting {
                    key: key.to_owned(),
                    value,
                    updated_at: now,
                }))
                .await?;
        }
    }
    Ok(Json(view(&state)?))
}

#[derive(Debug, Serialize)]
pub(crate) struct NetworkCheck {
    pub vip: Option<VipView>,
    pub nodes: Vec<NodeCheck>,
    /// What needs the admin's attention, in words; empty when all is well.
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct VipView {
    pub address: String,
    pub interface: String,
    pub driver: String,
    /// The node holding it, as this node's lease view knows it.
    pub owner: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct NodeCheck {
    pub node_id: u64,
    pub name: String,
    pub api_addr: String,
    pub healthy: bool,
    pub lag: Option<u64>,
}

/// The VIP and each member as the Raft leader sees them, and what is wrong: no VIP, a node not
/// replicating, fewer than three nodes (no failover).
pub(crate) async fn network(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<NetworkCheck>, ApiError> {
    who.require(who.grants.monitor)?;
    let status = state.cluster.status().await;
    let reader = state.cluster.reader();
    let names: std::collections::HashMap<u64, String> = reader
        .list::<MemberRecord>()?
        .into_iter()
        .map(|m| (m.node_id, m.name))
        .collect();
    let vip = reader.get::<VipConfig>(VipConfig::KEY)?.map(|v| VipView {
        address: v.address,
        interface: v.interface,
        driver: v.driver,
        owner: super::live::vip_owner(&state),
    });
    let nodes: Vec<NodeCheck> = status
        .members
        .iter()
        .map(|m| NodeCheck {
            node_id: m.node_id,
            name: names.get(&m.node_id).cloned().unwrap_or_default(),
            api_addr: m.api_addr.clone(),
            healthy: m.healthy,
            lag: m.lag,
        })
        .collect();
    let mut problems = Vec::new();
    if vip.is_none() {
        problems.push("no VIP is configured: phones must be pointed at one node, and lose service when it fails".to_owned());
    } else if vip.as_ref().is_some_and(|v| v.owner.is_none()) {
        problems.push("no node holds the VIP right now".to_owned());
    }
    if nodes.len() < 3 {
        problems.push(format!(
            "{} node(s): three or more are needed to survive the loss of one",
            nodes.len()
        ));
    }
    for n in nodes.iter().filter(|n| !n.healthy) {
        problems.push(format!("node {} is not replicating", n.node_id));
    }
    Ok(Json(NetworkCheck {
        vip,
        nodes,
        problems,
    }))
}

#[derive(Debug, Serialize)]
pub(crate) struct ImportReport {
    pub created: usize,
    /// Secrets the PBX generated, shown once.
    pub extensions: Vec<ImportedExtension>,
    pub errors: Vec<RowError>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ImportedExtension {
    pub number: String,
    pub generated_secret: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct RowError {
    /// 1-based line of the file (the header is line 1).
    pub line: u64,
    pub number: String,
    pub message: String,
}

/// One row checked and turned into an extension, or why not.
fn import_row(
    record: &csv::StringRecord,
    header: &csv::StringRecord,
    realm: &str,
    now: u64,
) -> Result<(Extension, Option<String>), String> {
    let field = |name: &str| {
        header
            .iter()
            .position(|h| h.trim() == name)
            .and_then(|i| record.get(i))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let number = field("number").ok_or("number: missing")?.to_owned();
    extensions::validate_number(&number).map_err(|e| e.to_string())?;
    let display_name = field("display_name").unwrap_or_default().to_owned();
    extensions::validate_display_name(&display_name).map_err(|e| e.to_string())?;
    let group = field("permission_group").unwrap_or("internal").to_owned();
    extensions::validate_group(&group).map_err(|e| e.to_string())?;
    let (secret, generated) = extensions::choose_secret(
        &number,
        &display_name,
        realm,
        field("secret").map(str::to_owned),
        false,
    )
    .map_err(|e| e.to_string())?;
    let ext = Extension {
        credentials: credentials::sip_credentials(&number, realm, &secret, now),
        number,
        display_name,
        permission_group: group,
        enabled: true,
        created_at: now,
        updated_at: now,
    };
    Ok((ext, generated.then_some(secret)))
}

/// Creates the extensions a CSV file lists (header row naming `number`, `display_name`,
/// `permission_group` and optionally `secret`, in any order). Good rows are created, in batches;
/// each bad row (invalid, duplicate in the file, number taken, unknown group) is reported with its
/// line and reason and creates nothing.
pub(crate) async fn import(
    State(state): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<ImportReport>, ApiError> {
    who.require(who.grants.extensions)?;
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("text/csv") {
        return Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: text/csv".into(),
        ));
    }
    let realm = view(&state)?.realm;
    let now = now_millis();
    let (rows, mut errors) = tokio::task::spawn_blocking(move || parse_import(&body, &realm, now))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let mut report = ImportReport {
        created: 0,
        extensions: Vec::new(),
        errors: Vec::new(),
    };
    for chunk in rows.chunks(IMPORT_BATCH) {
        let cmds = chunk
            .iter()
            .map(|(_, ext, _)| Command::CreateExtension(ext.clone()))
            .collect();
        let storage::Response::Batch(answers) = state.cluster.propose(Command::Batch(cmds)).await?
        else {
            return Err(ApiError::Internal("a batch was not answered as one".into()));
        };
        for ((line, ext, secret), answer) in chunk.iter().zip(answers) {
            match answer {
                storage::Response::Ok => {
                    report.created += 1;
                    report.extensions.push(ImportedExtension {
                        number: ext.number.clone(),
                        generated_secret: secret.clone(),
                    });
                }
                refused => errors.push(RowError {
                    line: *line,
                    number: ext.number.clone(),
                    message: extensions::create_refused(refused).to_string(),
                }),
            }
        }
    }
    errors.sort_by_key(|e| e.line);
    report.errors = errors;
    tracing::info!(
        created = report.created,
        refused = report.errors.len(),
        "extensions imported"
    );
    Ok(Json(report))
}

type ImportRows = (Vec<(u64, Extension, Option<String>)>, Vec<RowError>);

fn parse_import(body: &[u8], realm: &str, now: u64) -> Result<ImportRows, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let header = reader
        .headers()
        .map_err(|e| ApiError::BadRequest(format!("CSV header: {e}")))?
        .clone();
    if !header.iter().any(|h| h == "number") {
        return Err(ApiError::BadRequest(
            "CSV header must name the columns, with at least `number`".into(),
        ));
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, record) in reader.records().enumerate() {
        if i >= MAX_IMPORT_ROWS {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_IMPORT_ROWS} rows per import"
            )));
        }
        let line = i as u64 + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(RowError {
                    line,
                    number: String::new(),
                    message: format!("unreadable row: {e}"),
                });
                continue;
            }
        };
        match import_row(&record, &header, realm, now) {
            Ok((ext, _)) if !seen.insert(ext.number.clone()) => errors.push(RowError {
                line,
                number: ext.number,
                message: "number: listed twice in the file".into(),
            }),
            Ok((ext, secret)) => rows.push((line, ext, secret)),
            Err(message) => errors.push(RowError {
                line,
                number: record.get(0).unwrap_or_default().chars().take(32).collect(),
                message,
            }),
        }
    }
    Ok((rows, errors))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Welcome {
    pub email: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct WelcomeSent {
    pub username: String,
    pub emailed_to: String,
}

/// Gives extension `number`'s user a portal account (user role, their extension, a generated
/// password to change at first sign-in) and e-mails them how to sign in and set up their phone. An
/// existing account of that name must be that extension's user account; its password is reset.
pub(crate) async fn welcome(
    State(state): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path(number): Path<String>,
    JsonBody(req): JsonBody<Welcome>,
) -> Result<(StatusCode, Json<WelcomeSent>), ApiError> {
    who.require(who.grants.extensions)?;
    extensions::validate_number(&number)?;
    if !crate::events::valid_address(&req.email) {
        return Err(ApiError::invalid("email", "is not an e-mail address"));
    }
    if !state.events.can_mail() {
        return Err(ApiError::Conflict(
            "e-mail is not set up: configure [events] smtp_server on the nodes".into(),
        ));
    }
    state.cluster.linearizable_barrier().await?;
    let reader = state.cluster.reader();
    let ext = reader
        .get::<Extension>(&number)?
        .ok_or_else(|| ApiError::NotFound(format!("extension {number} does not exist")))?;
    let existing = accounts::find(reader, &number)?;
    if let Some(a) = &existing
        && (a.role != "user" || a.extension.as_deref() != Some(number.as_str()))
    {
        return Err(ApiError::Conflict(format!(
            "web account {number} exists and is not extension {number}'s user account"
        )));
    }
    let (password, _) =
        super::accounts::choose_password("password", None, vec![number.clone()]).await?;
    let hash = super::accounts::hash(password.clone()).await?;
    let now = now_millis();
    let mode = if existing.is_some() {
        PutMode::Update
    } else {
        PutMode::Create
    };
    let account = WebAccount {
        username: number.clone(),
        password_hash: hash,
        role: "user".to_owned(),
        extension: Some(number.clone()),
        email: Some(req.email.clone()),
        disabled: false,
        must_change_password: true,
        totp: None,
        password_changed_at: now,
        created_at: existing.as_ref().map_or(now, |a| a.created_at),
        updated_at: now,
    };
    state
        .propose_checked(Command::PutWebAccount {
            account: Box::new(account),
            mode,
        })
        .await?;
    state
        .propose_checked(Command::CloseWebSessionsOf {
            username: number.clone(),
            except: None,
        })
        .await?;
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.len() <= 255 && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("the PBX");
    let vip = reader
        .get::<VipConfig>(VipConfig::KEY)?
        .map(|v| v.address.split('/').next().unwrap_or_default().to_owned());
    let sip_server = vip.unwrap_or_else(|| host.split(':').next().unwrap_or(host).to_owned());
    let body = format!(
        "Hello {name},\n\n\
         You have a phone extension, {number}, and an account on the phone system's portal, where \
         you can see your calls and change your settings.\n\n\
         Portal: https://{host}/\n\
         User name: {number}\n\
         Temporary password: {password}\n\
         You will be asked to choose your own password when you first sign in.\n\n\
         Setting up a phone or softphone:\n\
         SIP server (registrar and proxy): {sip_server}\n\
         SIP user name: {sip_user}\n\
         SIP password: given to you by your administrator (it is not sent by e-mail).\n",
        name = if ext.display_name.is_empty() {
            &number
        } else {
            &ext.display_name
        },
        sip_user = ext.credentials.username,
    );
    match state
        .events
        .send_mail(&req.email, "Your phone and portal login", &body)
        .await
    {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            return Err(ApiError::Unavailable(format!(
                "the account is ready but the e-mail was not sent ({e}); send it again"
            )));
        }
        None => return Err(ApiError::Conflict("e-mail is not set up".into())),
    }
    tracing::info!(extension = %number, "portal login e-mailed");
    Ok((
        StatusCode::OK,
        Json(WelcomeSent {
            username: number,
            emailed_to: req.email,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zones() {
        for ok in [
            "UTC",
            "Europe/Paris",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+3",
        ] {
            assert!(valid_time_zone(ok), "{ok}");
        }
        for bad in [
            "",
            "Paris",
            "Europe//Paris",
            "Europe/Par is",
            "../etc/passwd",
            "a/<b>",
        ] {
            assert!(!valid_time_zone(bad), "{bad}");
        }
    }

    #[test]
    fn import_reports_each_bad_row_with_its_line() {
        let csv = "number,display_name,permission_group\n\
                   1001,Ann,internal\n\
                   10a2,Bob,internal\n\
                   1003,<script>alert(1)</script>,internal\n\
                   1001,Again,internal\n\
                   1004,Dee,bad group!\n\
                   ,NoNumber,internal\n";
        let (rows, errors) = parse_import(csv.as_bytes(), "pbx.test", 1).unwrap();
        let created: Vec<&str> = rows.iter().map(|(_, e, _)| e.number.as_str()).collect();
        assert_eq!(
            created,
            ["1001", "1003"],
            "a hostile name is text, not an error"
        );
        let lines: Vec<(u64, &str)> = errors.iter().map(|e| (e.line, e.number.as_str())).collect();
        assert_eq!(lines, [(3, "10a2"), (5, "1001"), (6, "1004"), (7, "")]);
        assert!(errors[1].message.contains("twice"));
        assert!(
            rows.iter().all(|(_, _, s)| s.is_some()),
            "secrets generated"
        );
    }

    #[test]
    fn import_needs_a_header_naming_number() {
        assert!(parse_import(b"1001,Ann\n", "r", 1).is_err());
    }
}
