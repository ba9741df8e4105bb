//! `/api/v1/devices`: the registry of desk phones that provision themselves, and
//! `/api/v1/provisioning/settings`, the policy their files carry. Grant `extensions` for all of it.
//!
//! Creating a device (or `POST /devices/{mac}/reprovision`) generates its provisioning token (256
//! random bits, URL-safe base64) and returns it once with the URLs to set in the phone; only its
//! SHA-256 is stored. The extension's first device also gets it a new generated SIP secret (the
//! cluster keeps only HA1s, so it cannot hand out the old one); later devices share it; a
//! reprovision replaces it for every device of the extension. The secret is never returned: the
//! phone gets it in its file.
//!
//! Import (`POST /devices/import`, `text/csv`, at most 2 MiB and 10,000 rows): a header naming
//! `mac,brand,model,extension,label` (any order, all but `label` required); each good row is
//! created and its token returned, each bad row reported as `{row, field, message}` (the header is
//! row 1) and creates nothing.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use storage::Command;
use storage::model::{ClusterRecord, Extension, UnixMillis, VipConfig};
use storage::provisioning::{
    Brand, Device, DevicePut, Fetch, MAX_LINE_KEYS, MAX_PER_COMMAND, ProvisioningSettings,
    SecretChange, SipTransport, check_label, check_model, normalize_mac, valid_mac,
};
use storage::routing::PutMode;

use super::AppState;
use super::access::Principal;
use super::crud::propose_answer;
use super::error::ApiError;
use super::extensions::choose_secret;
use super::json::JsonBody;
use super::paging::{LIMITS, ListQuery, Page, PageRequest};
use crate::credentials;
use crate::provisioning::{Part, file_name};
use crate::security::net::Net;
use crate::time::now_millis;

/// Largest CSV import body, and rows in it.
pub(crate) const MAX_IMPORT_BYTES: usize = 2 * 1024 * 1024;
const MAX_IMPORT_ROWS: usize = 10_000;
/// The CSV columns.
const CSV_COLUMNS: [&str; 5] = ["mac", "brand", "model", "extension", "label"];
/// Random bytes in a provisioning token.
const TOKEN_BYTES: usize = 32;

/// A device as answers show it: never its secret or token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeviceView {
    pub mac: String,
    pub brand: Brand,
    pub model: String,
    pub extension: String,
    pub label: String,
    pub line_keys: Vec<String>,
    /// The files the phone fetches.
    pub files: Vec<String>,
    /// Whether the secret the phone is given is still the extension's (an admin may have set
    /// another through the extensions API since: reprovision then).
    pub secret_current: bool,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub last_config: Option<Fetch>,
    pub last_firmware: Option<Fetch>,
}

/// The answer that made a token: shown once.
#[derive(Debug, Serialize)]
pub(crate) struct Provisioned {
    #[serde(flatten)]
    pub device: DeviceView,
    pub token: String,
    pub urls: Urls,
}

/// Where the phone finds its files.
#[derive(Debug, Serialize)]
pub(crate) struct Urls {
    /// The token in the path: a per-phone DHCP option 66 or setup URL.
    pub with_token: String,
    /// The same file with HTTP Basic (user: the MAC, password: the token).
    pub basic: String,
    pub basic_user: String,
    /// The provisioning directory with the token, for phones that add their own file name.
    pub directory: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateDevice {
    pub mac: String,
    pub brand: String,
    pub model: String,
    pub extension: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub line_keys: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateDevice {
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub extension: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub line_keys: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceQuery {
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub limit: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct DevicePage {
    pub items: Vec<DeviceView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The provisioning policy as the API shows and takes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsBody {
    #[serde(default)]
    pub transport: Option<String>,
    #[serde(default)]
    pub ntp_server: Option<String>,
    #[serde(default)]
    pub allowed_networks: Option<Vec<String>>,
}

/// What an import did.
#[derive(Debug, Serialize)]
pub(crate) struct ImportReport {
    pub created: usize,
    pub devices: Vec<Provisioned>,
    pub errors: Vec<RowError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RowError {
    pub row: u64,
    pub field: Option<String>,
    pub message: String,
}

/// A new token: 256 random bits, URL-safe.
pub(crate) fn new_token() -> String {
    let bytes: [u8; TOKEN_BYTES] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a token, lowercase hex: what is stored and compared.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn is_number(s: &str) -> bool {
    (2..=15).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_brand(s: &str) -> Result<Brand, String> {
    Brand::parse(&s.trim().to_ascii_lowercase())
        .ok_or_else(|| format!("one of {}", Brand::ALL.map(Brand::as_str).join(", ")))
}

fn check_extension(number: &str) -> Result<(), String> {
    if is_number(number) {
        Ok(())
    } else {
        Err("2 to 15 digits".into())
    }
}

fn check_line_keys(keys: &[String], own: &str) -> Result<(), ApiError> {
    if keys.len() > MAX_LINE_KEYS {
        return Err(ApiError::invalid(
            "line_keys",
            format!("at most {MAX_LINE_KEYS} keys"),
        ));
    }
    for (i, k) in keys.iter().enumerate() {
        let field = format!("line_keys[{i}]");
        if !is_number(k) {
            return Err(ApiError::invalid(field, "2 to 15 digits"));
        }
        if k == own {
            return Err(ApiError::invalid(field, "the device's own extension"));
        }
        if keys[..i].contains(k) {
            return Err(ApiError::invalid(field, format!("{k} is given twice")));
        }
    }
    Ok(())
}

/// Whether `secret` is the one extension `ext` answers challenges with.
fn secret_current(ext: Option<&Extension>, secret: &str) -> bool {
    ext.is_some_and(|e| {
        let c = &e.credentials;
        credentials::sip_credentials(&c.username, &c.realm, secret, 0).ha1_md5 == c.ha1_md5
    })
}

fn view(state: &AppState, d: Device) -> Result<DeviceView, ApiError> {
    let ext = state.cluster.reader().get::<Extension>(&d.extension)?;
    let parts: &[Part] = match d.brand {
        Brand::Polycom => &[Part::Main, Part::PolycomSettings],
        _ => &[Part::Main],
    };
    Ok(DeviceView {
        files: parts
            .iter()
            .map(|p| file_name(d.brand, *p, &d.mac))
            .collect(),
        secret_current: secret_current(ext.as_ref(), &d.sip_secret),
        mac: d.mac,
        brand: d.brand,
        model: d.model,
        extension: d.extension,
        label: d.label,
        line_keys: d.line_keys,
        created_at: d.created_at,
        updated_at: d.updated_at,
        last_config: d.last_config,
        last_firmware: d.last_firmware,
    })
}

/// The address phones reach the API at: the VIP with the port the admin used, or the host the
/// admin used.
pub(crate) fn public_host(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| valid_host(h))
        .unwrap_or("localhost");
    let vip = state
        .cluster
        .reader()
        .get::<VipConfig>(VipConfig::KEY)?
        .and_then(|v| v.address.split('/').next().map(str::to_owned))
        .filter(|v| !v.is_empty());
    Ok(match vip {
        Some(vip) => {
            let port = host
                .rsplit_once(':')
                .filter(|(h, _)| !h.ends_with(':'))
                .map(|(_, p)| p);
            let vip = if vip.contains(':') {
                format!("[{vip}]")
            } else {
                vip
            };
            match port {
                Some(p) => format!("{vip}:{p}"),
                None => vip,
            }
        }
        None => host.to_owned(),
    })
}

/// A `Host` header fit to write into a URL: a name or address and a port, nothing else.
pub(crate) fn valid_host(h: &str) -> bool {
    (1..=255).contains(&h.len())
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

fn urls(host: &str, d: &Device, token: &str) -> Urls {
    let file = file_name(d.brand, Part::Main, &d.mac);
    Urls {
        with_token: format!("https://{host}/provision/{token}/{file}"),
        basic: format!("https://{host}/provision/{file}"),
        basic_user: d.mac.clone(),
        directory: format!("https://{host}/provision/{token}/"),
    }
}

fn realm(state: &AppState) -> Result<String, ApiError> {
    Ok(state
        .cluster
        .reader()
        .get::<ClusterRecord>(ClusterRecord::KEY)?
        .ok_or_else(|| ApiError::Unavailable("cluster not initialised".into()))?
        .realm)
}

/// A new SIP secret for extension `ext` (passing the password policy for it) and its
/// credentials, generated on the blocking pool (the policy's zxcvbn check).
async fn new_secrets(
    exts: Vec<Extension>,
    realm: String,
) -> Result<Vec<(String, storage::model::SipCredentials)>, ApiError> {
    tokio::task::spawn_blocking(move || {
        let now = now_millis();
        exts.iter()
            .map(|e| {
                let (secret, _) = choose_secret(&e.number, &e.display_name, &realm, None, false)?;
                let creds = credentials::sip_credentials(&e.number, &realm, &secret, now);
                Ok((secret, creds))
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await
    .map_err(|_| ApiError::Internal("generating secrets did not finish".into()))?
}

/// The state machine's refusal of a device put, in words naming the field.
fn refused(r: storage::Response, mac: &str) -> ApiError {
    match r {
        storage::Response::Conflict { table, .. } if table == "devices" => {
            ApiError::Conflict(format!("mac: device {mac} already exists"))
        }
        other => ApiError::refused(other, "devices", mac, &[("extensions", "extension")]),
    }
}

fn existing_extension(state: &AppState, number: &str) -> Result<Extension, ApiError> {
    state
        .cluster
        .reader()
        .get::<Extension>(number)?
        .ok_or_else(|| ApiError::invalid("extension", format!("extension {number} does not exist")))
}

fn check_mac_path(mac: &str) -> Result<String, ApiError> {
    let mac = normalize_mac(mac).map_err(|_| ApiError::NotFound("no such device".into()))?;
    Ok(mac)
}

fn read_device(state: &AppState, mac: &str) -> Result<Device, ApiError> {
    state
        .cluster
        .reader()
        .get::<Device>(mac)?
        .ok_or_else(|| ApiError::NotFound(format!("device {mac} does not exist")))
}

/// A device as a create body or import row describes it, checked (without its token and
/// secret); the error names the field.
fn from_fields(
    mac: &str,
    brand: &str,
    model: &str,
    extension: &str,
    label: Option<&str>,
    line_keys: Vec<String>,
    now: UnixMillis,
) -> Result<Device, (&'static str, String)> {
    let mac = normalize_mac(mac).map_err(|r| ("mac", r))?;
    let brand = parse_brand(brand).map_err(|r| ("brand", r))?;
    let model = model.trim();
    check_model(model).map_err(|r| ("model", r))?;
    let extension = extension.trim();
    check_extension(extension).map_err(|r| ("extension", r))?;
    let label = label.map(str::trim).unwrap_or_default();
    check_label(label).map_err(|r| ("label", r))?;
    Ok(Device {
        mac,
        brand,
        model: model.to_owned(),
        extension: extension.to_owned(),
        label: label.to_owned(),
        line_keys,
        token_sha256: String::new(),
        sip_secret: String::new(),
        created_at: now,
        updated_at: now,
        last_config: None,
        last_firmware: None,
    })
}

pub(crate) async fn create(
    State(state): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    JsonBody(req): JsonBody<CreateDevice>,
) -> Result<(StatusCode, Json<Provisioned>), ApiError> {
    who.require(who.grants.extensions)?;
    let keys = req.line_keys.unwrap_or_default();
    let mut device = from_fields(
        &req.mac,
        &req.brand,
        &req.model,
        &req.extension,
        req.label.as_deref(),
        Vec::new(),
        now_millis(),
    )
    .map_err(|(f, r)| ApiError::invalid(f, r))?;
    check_line_keys(&keys, &device.extension)?;
    device.line_keys = keys;
    state.cluster.linearizable_barrier().await?;
    if state.cluster.reader().get::<Device>(&device.mac)?.is_some() {
        return Err(ApiError::Conflict(format!(
            "mac: device {} already exists",
            device.mac
        )));
    }
    let ext = existing_extension(&state, &device.extension)?;
    let realm = realm(&state)?;
    let mut secrets = new_secrets(vec![ext], realm).await?;
    let (secret, creds) = secrets
        .pop()
        .ok_or_else(|| ApiError::Internal("no secret generated".into()))?;
    let token = new_token();
    device.token_sha256 = token_hash(&token);
    device.sip_secret = secret;
    let put = DevicePut {
        device: device.clone(),
        mode: PutMode::Create,
        secret: SecretChange::Join(creds),
    };
    match propose_answer(&state, Command::PutDevices(vec![put])).await? {
        storage::Response::Ok => {}
        r => return Err(refused(r, &device.mac)),
    }
    // Read back as this node applied it (a later device of the extension shares another's secret).
    state.cluster.linearizable_barrier().await?;
    metrics::counter!("pbx_devices_created_total").increment(1);
    tracing::info!(mac = %device.mac, extension = %device.extension, brand = device.brand.as_str(), "device created");
    let host = public_host(&state, &headers)?;
    let stored = read_device(&state, &device.mac).unwrap_or(device);
    let urls = urls(&host, &stored, &token);
    Ok((
        StatusCode::CREATED,
        Json(Provisioned {
            device: view(&state, stored)?,
            token,
            urls,
        }),
    ))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    who: Principal,
    ListQuery(q): ListQuery<DeviceQuery>,
) -> Result<Json<DevicePage>, ApiError> {
    who.require(who.grants.extensions)?;
    let page = PageRequest::parse(q.after, q.limit.as_deref(), LIMITS, valid_mac)?;
    state.cluster.linearizable_barrier().await?;
    let rows = state
        .cluster
        .reader()
        .list_page::<Device>(page.after.as_deref(), page.limit + 1)?;
    let found = Page::from_overfetch(rows, page.limit, |d| d.mac.clone());
    let items = found
        .items
        .into_iter()
        .map(|d| view(&state, d))
        .collect::<Result<_, _>>()?;
    Ok(Json(DevicePage {
        items,
        next: found.next,
    }))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    who: Principal,
    Path(mac): Path<String>,
) -> Result<Json<DeviceView>, ApiError> {
    who.require(who.grants.extensions)?;
    let mac = check_mac_path(&mac)?;
    state.cluster.linearizable_barrier().await?;
    Ok(Json(view(&state, read_device(&state, &mac)?)?))
}

pub(crate) async fn update(
    State(state): State<AppState>,
    who: Principal,
    Path(mac): Path<String>,
    JsonBody(req): JsonBody<UpdateDevice>,
) -> Result<Json<DeviceView>, ApiError> {
    who.require(who.grants.extensions)?;
    let mac = check_mac_path(&mac)?;
    state.cluster.linearizable_barrier().await?;
    let mut d = read_device(&state, &mac)?;
    if let Some(b) = &req.brand {
        d.brand = parse_brand(b).map_err(|r| ApiError::invalid("brand", r))?;
    }
    if let Some(m) = &req.model {
        check_model(m.trim()).map_err(|r| ApiError::invalid("model", r))?;
        d.model = m.trim().to_owned();
    }
    if let Some(l) = &req.label {
        check_label(l.trim()).map_err(|r| ApiError::invalid("label", r))?;
        d.label = l.trim().to_owned();
    }
    let moved_to = match req.extension {
        Some(e) if e.trim() != d.extension => {
            check_extension(e.trim()).map_err(|r| ApiError::invalid("extension", r))?;
            Some(e.trim().to_owned())
        }
        _ => None,
    };
    if let Some(e) = &moved_to {
        d.extension = e.clone();
    }
    if let Some(keys) = req.line_keys {
        d.line_keys = keys;
    }
    check_line_keys(&d.line_keys, &d.extension)?;
    d.updated_at = now_millis();
    let secret = match &moved_to {
        None => SecretChange::Keep,
        Some(number) => {
            let ext = existing_extension(&state, number)?;
            let mut secrets = new_secrets(vec![ext], realm(&state)?).await?;
            let (secret, creds) = secrets
                .pop()
                .ok_or_else(|| ApiError::Internal("no secret generated".into()))?;
            d.sip_secret = secret;
            SecretChange::Join(creds)
        }
    };
    let put = DevicePut {
        device: d.clone(),
        mode: PutMode::Update,
        secret,
    };
    match propose_answer(&state, Command::PutDevices(vec![put])).await? {
        storage::Response::Ok => {}
        r => return Err(refused(r, &mac)),
    }
    state.cluster.linearizable_barrier().await?;
    tracing::info!(mac = %mac, extension = %d.extension, "device updated");
    Ok(Json(view(&state, read_device(&state, &mac)?)?))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    who: Principal,
    Path(mac): Path<String>,
) -> Result<StatusCode, ApiError> {
    who.require(who.grants.extensions)?;
    let mac = check_mac_path(&mac)?;
    match propose_answer(&state, Command::DeleteDevice { mac: mac.clone() }).await? {
        storage::Response::Ok => {}
        storage::Response::NotFound { .. } => {
            return Err(ApiError::NotFound(format!("device {mac} does not exist")));
        }
        other => return Err(other.into()),
    }
    tracing::info!(mac = %mac, "device deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A new token for the device, and a new SIP secret for its extension (every device of it gets
/// the new one at its next fetch): for a phone that was replaced, reset, or whose token leaked.
pub(crate) async fn reprovision(
    State(state): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Path(mac): Path<String>,
) -> Result<Json<Provisioned>, ApiError> {
    who.require(who.grants.extensions)?;
    let mac = check_mac_path(&mac)?;
    state.cluster.linearizable_barrier().await?;
    let mut d = read_device(&state, &mac)?;
    let ext = existing_extension(&state, &d.extension)?;
    let mut secrets = new_secrets(vec![ext], realm(&state)?).await?;
    let (secret, creds) = secrets
        .pop()
        .ok_or_else(|| ApiError::Internal("no secret generated".into()))?;
    let token = new_token();
    d.token_sha256 = token_hash(&token);
    d.sip_secret = secret;
    d.updated_at = now_millis();
    let put = DevicePut {
        device: d.clone(),
        mode: PutMode::Update,
        secret: SecretChange::Rotate(creds),
    };
    match propose_answer(&state, Command::PutDevices(vec![put])).await? {
        storage::Response::Ok => {}
        r => return Err(refused(r, &mac)),
    }
    state.cluster.linearizable_barrier().await?;
    metrics::counter!("pbx_devices_reprovisioned_total").increment(1);
    tracing::info!(mac = %mac, extension = %d.extension, "device reprovisioned: new token and SIP secret");
    let host = public_host(&state, &headers)?;
    let stored = read_device(&state, &mac)?;
    let urls = urls(&host, &stored, &token);
    Ok(Json(Provisioned {
        device: view(&state, stored)?,
        token,
        urls,
    }))
}

/// The good rows of an import (each with its row number) and the errors of the bad ones.
type ImportRows = (Vec<(u64, Device)>, Vec<RowError>);

fn parse_import(body: &[u8], now: UnixMillis) -> Result<ImportRows, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let header = reader
        .headers()
        .map_err(|e| ApiError::BadRequest(format!("CSV header: {e}")))?
        .clone();
    let mut columns: Vec<&str> = Vec::with_capacity(header.len());
    for h in &header {
        let h = h.trim_start_matches('\u{feff}');
        let Some(&known) = CSV_COLUMNS.iter().find(|c| c.eq_ignore_ascii_case(h)) else {
            return Err(ApiError::BadRequest(format!(
                "CSV header: unknown column {:?}; the columns are {}",
                h.chars().take(40).collect::<String>(),
                CSV_COLUMNS.join(",")
            )));
        };
        if columns.contains(&known) {
            return Err(ApiError::BadRequest(format!(
                "CSV header: column {known} given twice"
            )));
        }
        columns.push(known);
    }
    for required in ["mac", "brand", "model", "extension"] {
        if !columns.contains(&required) {
            return Err(ApiError::BadRequest(format!(
                "CSV header must name the columns mac,brand,model,extension (and label): {required} is missing"
            )));
        }
    }
    let mut good: Vec<(u64, Device)> = Vec::new();
    let mut bad = Vec::new();
    for (i, record) in reader.records().enumerate() {
        if i >= MAX_IMPORT_ROWS {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_IMPORT_ROWS} rows per import"
            )));
        }
        let row = i as u64 + 2;
        let fail = |field: Option<&str>, message: String| RowError {
            row,
            field: field.map(str::to_owned),
            message,
        };
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                bad.push(fail(None, format!("unreadable row: {e}")));
                continue;
            }
        };
        if record.len() > columns.len() {
            bad.push(fail(
                None,
                format!("{} columns, the header has {}", record.len(), columns.len()),
            ));
            continue;
        }
        let cell = |name: &str| {
            columns
                .iter()
                .position(|c| *c == name)
                .and_then(|i| record.get(i))
                .unwrap_or_default()
        };
        let label = cell("label");
        match from_fields(
            cell("mac"),
            cell("brand"),
            cell("model"),
            cell("extension"),
            Some(label),
            Vec::new(),
            now,
        ) {
            Ok(d) => {
                if let Some((first, _)) = good.iter().find(|(_, g)| g.mac == d.mac) {
                    bad.push(fail(
                        Some("mac"),
                        format!("{} is on row {first} already", d.mac),
                    ));
                } else {
                    good.push((row, d));
                }
            }
            Err((field, message)) => bad.push(fail(Some(field), message)),
        }
    }
    Ok((good, bad))
}

pub(crate) async fn import(
    State(state): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Json<ImportReport>, ApiError> {
    who.require(who.grants.extensions)?;
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("text/csv") {
        return Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: text/csv".into(),
        ));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: MAX_IMPORT_BYTES,
            }
        } else {
            ApiError::BadRequest(e.body_text())
        }
    })?;
    let now = now_millis();
    let (rows, mut errors) = tokio::task::spawn_blocking(move || parse_import(&body, now))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    state.cluster.linearizable_barrier().await?;
    let realm = realm(&state)?;
    let host = public_host(&state, &headers)?;
    // Rows whose MAC is taken or whose extension does not exist are reported here, by row.
    let mut ready: Vec<(u64, Device)> = Vec::with_capacity(rows.len());
    let mut exts: Vec<Extension> = Vec::with_capacity(rows.len());
    {
        let reader = state.cluster.reader();
        for (row, d) in rows {
            if reader.get::<Device>(&d.mac)?.is_some() {
                errors.push(RowError {
                    row,
                    field: Some("mac".into()),
                    message: format!("device {} already exists", d.mac),
                });
                continue;
            }
            match reader.get::<Extension>(&d.extension)? {
                Some(e) => {
                    exts.push(e);
                    ready.push((row, d));
                }
                None => errors.push(RowError {
                    row,
                    field: Some("extension".into()),
                    message: format!("extension {} does not exist", d.extension),
                }),
            }
        }
    }
    let secrets = new_secrets(exts, realm).await?;
    let mut devices = Vec::new();
    let mut created = 0;
    let mut prepared: Vec<(u64, Device, String, DevicePut)> = Vec::with_capacity(ready.len());
    for ((row, mut d), (secret, creds)) in ready.into_iter().zip(secrets) {
        let token = new_token();
        d.token_sha256 = token_hash(&token);
        d.sip_secret = secret;
        let put = DevicePut {
            device: d.clone(),
            mode: PutMode::Create,
            secret: SecretChange::Join(creds),
        };
        prepared.push((row, d, token, put));
    }
    for chunk in prepared.chunks(MAX_PER_COMMAND) {
        let cmd = Command::PutDevices(chunk.iter().map(|(_, _, _, p)| p.clone()).collect());
        match propose_answer(&state, cmd).await? {
            storage::Response::Ok => {
                state.cluster.linearizable_barrier().await?;
                created += chunk.len();
                for (_, d, token, _) in chunk {
                    let urls = urls(&host, d, token);
                    let stored = read_device(&state, &d.mac).unwrap_or_else(|_| d.clone());
                    devices.push(Provisioned {
                        device: view(&state, stored)?,
                        token: token.clone(),
                        urls,
                    });
                }
            }
            // A refusal (a MAC taken meanwhile) is reported on each of the chunk's rows.
            refusal => {
                let message = refused(refusal, "").to_string();
                errors.extend(chunk.iter().map(|(row, _, _, _)| RowError {
                    row: *row,
                    field: None,
                    message: message.clone(),
                }));
            }
        }
    }
    errors.sort_by_key(|e| e.row);
    metrics::counter!("pbx_devices_created_total").increment(created as u64);
    tracing::info!(created, refused = errors.len(), "devices imported");
    Ok(Json(ImportReport {
        created,
        devices,
        errors,
    }))
}

fn settings_view(s: &ProvisioningSettings) -> SettingsBody {
    SettingsBody {
        transport: Some(s.transport.as_str().to_owned()),
        ntp_server: s.ntp_server.clone(),
        allowed_networks: Some(s.allowed_networks.clone()),
    }
}

pub(crate) fn read_settings(state: &AppState) -> Result<ProvisioningSettings, ApiError> {
    Ok(state
        .cluster
        .reader()
        .get::<ProvisioningSettings>(ProvisioningSettings::KEY)?
        .unwrap_or_default())
}

pub(crate) async fn get_settings(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<SettingsBody>, ApiError> {
    who.require(who.grants.extensions)?;
    Ok(Json(settings_view(&read_settings(&state)?)))
}

/// Replaces the policy: an omitted field takes its default (UDP, the VIP as NTP server, any
/// source network).
pub(crate) async fn put_settings(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(req): JsonBody<SettingsBody>,
) -> Result<Json<SettingsBody>, ApiError> {
    who.require(who.grants.extensions)?;
    let transport = match req.transport.as_deref() {
        None => SipTransport::default(),
        Some(t) => SipTransport::parse(t)
            .ok_or_else(|| ApiError::invalid("transport", "one of udp, tcp, tls"))?,
    };
    let networks = req.allowed_networks.unwrap_or_default();
    if networks.len() > storage::provisioning::MAX_NETWORKS {
        return Err(ApiError::invalid(
            "allowed_networks",
            format!("at most {} networks", storage::provisioning::MAX_NETWORKS),
        ));
    }
    let mut checked = Vec::with_capacity(networks.len());
    for (i, n) in networks.iter().enumerate() {
        let net: Net = n
            .parse()
            .map_err(|e| ApiError::invalid(format!("allowed_networks[{i}]"), e))?;
        checked.push(net.to_string());
    }
    let s = ProvisioningSettings {
        transport,
        ntp_server: req
            .ntp_server
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty()),
        allowed_networks: checked,
        updated_at: now_millis(),
    };
    if let Some((field, reason)) = s.problem() {
        return Err(ApiError::invalid(field, reason));
    }
    state
        .propose_checked(Command::PutProvisioningSettings(s.clone()))
        .await?;
    tracing::info!(
        transport = s.transport.as_str(),
        networks = s.allowed_networks.len(),
        "provisioning settings changed"
    );
    Ok(Json(settings_view(&s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let a = new_token();
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(a, new_token());
        assert_eq!(token_hash("abc").len(), 64);
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn an_import_reports_each_bad_row_by_field() {
        let csv = "mac,brand,model,extension,label\n\
                   00:15:65:aa:bb:01,yealink,T54W,1001,Front desk\n\
                   00:15:65:aa:bb:02,cisco,7960,1002,\n\
                   nope,snom,D785,1003,\n\
                   0015.65aa.bb01,snom,D785,1004,\n\
                   00-15-65-AA-BB-05,Polycom,VVX450,10x,\n\
                   00:15:65:aa:bb:06,fanvil,X4U,1006,a,b\n\
                   00:15:65:aa:bb:07,grandstream,GXP 2170,1007,\n";
        let (good, bad) = parse_import(csv.as_bytes(), 1).unwrap();
        assert_eq!(good.len(), 1);
        assert_eq!(good[0].0, 2);
        assert_eq!(good[0].1.mac, "001565aabb01");
        assert_eq!(good[0].1.label, "Front desk");
        let fields: Vec<(u64, Option<&str>)> =
            bad.iter().map(|e| (e.row, e.field.as_deref())).collect();
        assert_eq!(
            fields,
            [
                (3, Some("brand")),
                (4, Some("mac")),
                (5, Some("mac")),
                (6, Some("extension")),
                (7, None),
                (8, Some("model")),
            ]
        );
        assert!(bad[2].message.contains("row 2"), "{:?}", bad[2]);
        assert!(parse_import(b"mac,brand,model\n", 1).is_err());
        assert!(parse_import(b"mac,brand,model,extension,fax\n", 1).is_err());
    }

    #[test]
    fn line_keys_are_bounded_numbers_once_each() {
        assert!(check_line_keys(&["1002".into(), "1003".into()], "1001").is_ok());
        let err = |keys: &[&str]| {
            let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
            check_line_keys(&keys, "1001").unwrap_err().to_string()
        };
        assert!(err(&["1002", "1002"]).starts_with("line_keys[1]:"));
        assert!(err(&["1001"]).starts_with("line_keys[0]:"));
        assert!(err(&["x"]).starts_with("line_keys[0]:"));
        let many: Vec<String> = (0..33).map(|i| format!("2{i:03}")).collect();
        assert!(
            check_line_keys(&many, "1001")
                .unwrap_err()
                .to_string()
                .starts_with("line_keys:")
        );
        assert!(valid_host("198.18.0.100:8443") && valid_host("[::1]:8443"));
        assert!(!valid_host("a/b") && !valid_host("a b") && !valid_host(""));
    }
}
