//! What phones fetch, on every node's API listener:
//!
//! - `GET /provision/{token}/{file}`: the token in the path (a per-phone DHCP option 66 URL);
//! - `GET /provision/{file}` with HTTP Basic, user the MAC, password the token (a phone set up at
//!   first boot); without credentials the answer is a `401` challenge, the same for every file;
//! - `GET /provision/{token}/firmware/{mac}/{name}` and `GET /provision/firmware/{mac}/{name}`
//!   (Basic): the firmware uploaded for the device's brand and model.
//!
//! The MAC comes from the file name (or the Basic user); the device must exist and the SHA-256 of
//! the token presented must equal the stored one (compared in constant time, and computed for an
//! unknown MAC too). An unknown MAC, a wrong token and a token for a file with no MAC get the same
//! `404` with the same body, and each counts toward the source's ban in the automatic defence, so
//! a MAC-guessing loop ends banned. Not counted, with the same `404`: a source outside the allowed
//! networks, the brands' common files that name no phone (`y000000000044.cfg`,
//! `000000000000.cfg`, …), and a file an authenticated phone asks for that the PBX does not write
//! (Polycom's `{mac}-phone.cfg`): real phones ask for those at every boot.
//!
//! Every download served is recorded on the device (file, time, source: a replicated command),
//! logged and counted (`pbx_provisioning_requests_total{result}`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq as _;

use cluster::ClusterError;
use storage::Command;
use storage::model::{Extension, Service, Transport, VipConfig};
use storage::provisioning::{
    Device, Fetch, FetchKind, Firmware, ProvisioningSettings, normalize_mac,
};

use super::AppState;
use super::devices::{public_host, read_settings, token_hash, valid_host};
use super::error::ApiError;
use super::guard::ClientAddr;
use crate::provisioning::{
    LineKey, Profile, content_type, is_common_file, mac_of_file, part_of, render, userinfo,
};
use crate::security::net::Net;
use crate::time::now_millis;

/// Longest token and Basic header looked at.
const MAX_TOKEN: usize = 128;
const MAX_AUTH_HEADER: usize = 512;

/// How the request proves itself.
enum Credential {
    Path(String),
    Basic { user: String, token: String },
    Missing,
}

/// What it asks for.
enum Target {
    Config(String),
    Firmware { mac: String, name: String },
}

/// Why a request got the `404` (for the log and metrics; never in the answer).
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// Counted toward the source's ban.
    Unauthenticated,
    Network,
    CommonFile,
    NotServed,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::Network => "network",
            Self::CommonFile => "common_file",
            Self::NotServed => "not_served",
        }
    }
}

/// The one answer every refusal gets.
fn not_found() -> Response {
    ApiError::NotFound("no such file".into()).into_response()
}

fn refuse(state: &AppState, ip: IpAddr, why: Refusal, file: &str) -> Response {
    metrics::counter!("pbx_provisioning_requests_total", "result" => why.as_str()).increment(1);
    let file: String = file.chars().take(64).collect();
    tracing::info!(source = %ip, reason = why.as_str(), file = %file.escape_debug(), "provisioning: refused");
    if matches!(why, Refusal::Unauthenticated) {
        state.security.auth_failed(ip, Service::Api, Transport::Tls);
    }
    not_found()
}

fn basic(headers: &HeaderMap) -> Credential {
    let Some(h) = headers.get(AUTHORIZATION) else {
        return Credential::Missing;
    };
    // A header that is there but unreadable is a wrong credential, not a missing one.
    let wrong = Credential::Basic {
        user: String::new(),
        token: String::new(),
    };
    let Some(h) = h.to_str().ok().filter(|h| h.len() <= MAX_AUTH_HEADER) else {
        return wrong;
    };
    let decoded = h
        .strip_prefix("Basic ")
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok());
    match decoded.as_deref().and_then(|t| t.split_once(':')) {
        Some((user, token)) => Credential::Basic {
            user: user.to_owned(),
            token: token.to_owned(),
        },
        None => wrong,
    }
}

fn allowed(settings: &ProvisioningSettings, ip: IpAddr) -> bool {
    settings.allowed_networks.is_empty()
        || settings
            .allowed_networks
            .iter()
            .filter_map(|n| n.parse::<Net>().ok())
            .any(|n| n.contains(ip))
}

/// The device whose token this is, if the MAC names one and the token is its own: the hash is
/// computed and compared (in constant time) whether or not the device exists.
fn authenticate(
    state: &AppState,
    mac: Option<&str>,
    token: &str,
) -> Result<Option<Device>, ApiError> {
    let device = match mac {
        Some(m) => state.cluster.reader().get::<Device>(m)?,
        None => None,
    };
    let presented = token_hash(if token.len() <= MAX_TOKEN { token } else { "" });
    let expected = device
        .as_ref()
        .map_or_else(|| "0".repeat(64), |d| d.token_sha256.clone());
    let same = bool::from(presented.as_bytes().ct_eq(expected.as_bytes()));
    let shaped = !token.is_empty() && token.len() <= MAX_TOKEN;
    Ok(device.filter(|_| same && shaped))
}

/// The cluster's time zone and its offset from UTC now.
fn zone_now(state: &AppState) -> (String, i32) {
    let zone = super::time_condition_zone(state.cluster.reader());
    let offset = jiff::tz::TimeZone::get(&zone)
        .map(|tz| tz.to_offset(jiff::Timestamp::now()).seconds())
        .unwrap_or(0);
    (zone, offset)
}

/// The SIP server phones are given: the VIP, or without one this node's own SIP address (or the
/// host the phone reached).
fn sip_server(state: &AppState, host: &str) -> Result<String, ApiError> {
    let vip = state
        .cluster
        .reader()
        .get::<VipConfig>(VipConfig::KEY)?
        .and_then(|v| v.address.split('/').next().map(str::to_owned))
        .filter(|v| !v.is_empty());
    if let Some(vip) = vip {
        return Ok(vip);
    }
    let own = [state.sip.udp, state.sip.tcp, state.sip.tls]
        .into_iter()
        .flatten()
        .map(|a| a.ip())
        .find(|ip| !ip.is_unspecified());
    Ok(match own {
        Some(ip) => ip.to_string(),
        None => host
            .rsplit_once(':')
            .map_or(host, |(h, _)| h)
            .trim_matches(['[', ']'])
            .to_owned(),
    })
}

/// What the phone's file says, or `None` when its extension is gone.
fn profile(
    state: &AppState,
    d: &Device,
    host: &str,
    base: &str,
) -> Result<Option<Profile>, ApiError> {
    let reader = state.cluster.reader();
    let Some(ext) = reader.get::<Extension>(&d.extension)? else {
        return Ok(None);
    };
    let settings = read_settings(state)?;
    let server = sip_server(state, host)?;
    let (time_zone, utc_offset_secs) = zone_now(state);
    let mut line_keys = Vec::with_capacity(d.line_keys.len());
    for number in &d.line_keys {
        // A watched extension deleted since is left out.
        if let Some(e) = reader.get::<Extension>(number)? {
            line_keys.push(LineKey {
                number: e.number,
                name: e.display_name,
            });
        }
    }
    let firmware = reader
        .get::<Firmware>(&Firmware::key_for(d.brand, &d.model))?
        .map(|f| {
            let path = format!("firmware/{}/{}", d.mac, f.file_name);
            let url = format!("{base}{path}");
            (path, url)
        });
    let phonebook_url = format!(
        "https://{}:{}@{host}/phonebook/{}.xml",
        userinfo(&ext.credentials.username),
        userinfo(&d.sip_secret),
        d.brand.as_str()
    );
    Ok(Some(Profile {
        mac: d.mac.clone(),
        brand: d.brand,
        model: d.model.clone(),
        ntp_server: settings.ntp_server.unwrap_or_else(|| server.clone()),
        port: state.sip.port(settings.transport),
        transport: settings.transport,
        realm: ext.credentials.realm,
        phonebook_url,
        server,
        extension: ext.number,
        secret: d.sip_secret.clone(),
        display_name: ext.display_name,
        label: d.label.clone(),
        time_zone,
        utc_offset_secs,
        line_keys,
        provision_base: base.to_owned(),
        firmware,
    }))
}

async fn record(state: &AppState, d: &Device, kind: FetchKind, file: &str, ip: IpAddr) {
    let cmd = Command::RecordDeviceFetch {
        mac: d.mac.clone(),
        kind,
        fetch: Fetch {
            file: file.to_owned(),
            at: now_millis(),
            from: ip.to_string(),
        },
    };
    // The file is served even when the record cannot be made, but a leader election (a few hundred
    // milliseconds) is waited out: recording a fetch again is harmless, so an outcome left unknown
    // by a change of leader is simply tried once more, within a bound.
    let deadline = Instant::now() + RECORD_WITHIN;
    loop {
        match state.cluster.propose(cmd.clone()).await {
            Ok(_) => return,
            Err(
                e @ (ClusterError::NoLeader
                | ClusterError::NotLeader { .. }
                | ClusterError::Unavailable(_)
                | ClusterError::Timeout(_)
                | ClusterError::Network(_)),
            ) if Instant::now() < deadline => {
                tracing::debug!(mac = %d.mac, error = %e, "provisioning: recording the download again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                tracing::warn!(mac = %d.mac, error = %e, "provisioning: download not recorded");
                return;
            }
        }
    }
}

/// How long a download's record is retried through a change of leader.
const RECORD_WITHIN: Duration = Duration::from_secs(3);

async fn serve(
    state: AppState,
    ip: IpAddr,
    headers: &HeaderMap,
    cred: Credential,
    target: Target,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let shown = match &target {
        Target::Config(f) => f.clone(),
        Target::Firmware { name, .. } => format!("firmware/{name}"),
    };
    if !allowed(&read_settings(&state)?, ip) {
        return Ok(refuse(&state, ip, Refusal::Network, &shown));
    }
    let (mac, token, path_token) = match cred {
        Credential::Missing => {
            metrics::counter!("pbx_provisioning_requests_total", "result" => "challenge")
                .increment(1);
            let mut resp = (StatusCode::UNAUTHORIZED, "authentication required").into_response();
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"provisioning\", charset=\"UTF-8\""),
            );
            return Ok(resp);
        }
        Credential::Basic { user, token } => (normalize_mac(&user).ok(), token, None),
        Credential::Path(token) => {
            let mac = match &target {
                Target::Config(file) => mac_of_file(file),
                Target::Firmware { mac, .. } => normalize_mac(mac).ok(),
            };
            (mac, token.clone(), Some(token))
        }
    };
    let device = authenticate(&state, mac.as_deref(), &token)?;
    let Some(device) = device else {
        if mac.is_none()
            && path_token.is_some()
            && matches!(&target, Target::Config(f) if is_common_file(f))
        {
            return Ok(refuse(&state, ip, Refusal::CommonFile, &shown));
        }
        return Ok(refuse(&state, ip, Refusal::Unauthenticated, &shown));
    };
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| valid_host(h))
        .map_or_else(|| public_host(&state, headers), |h| Ok(h.to_owned()))?;
    let base = match &path_token {
        Some(t) => format!("https://{host}/provision/{t}/"),
        None => format!("https://{host}/provision/"),
    };
    match target {
        Target::Config(file) => {
            let Some(part) = part_of(device.brand, &device.mac, &file) else {
                return Ok(refuse(&state, ip, Refusal::NotServed, &shown));
            };
            let Some(p) = profile(&state, &device, &host, &base)? else {
                return Ok(refuse(&state, ip, Refusal::NotServed, &shown));
            };
            let body = render(part, &p);
            record(&state, &device, FetchKind::Config, &file, ip).await;
            metrics::counter!("pbx_provisioning_requests_total", "result" => "config").increment(1);
            tracing::info!(
                mac = %device.mac,
                extension = %device.extension,
                brand = device.brand.as_str(),
                file = %file,
                source = %ip,
                elapsed_us = started.elapsed().as_micros() as u64,
                "provisioning: configuration served"
            );
            let mut resp = body.into_response();
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(content_type(device.brand)),
            );
            Ok(resp)
        }
        Target::Firmware { name, .. } => {
            let fw = state
                .cluster
                .reader()
                .get::<Firmware>(&Firmware::key_for(device.brand, &device.model))?
                .filter(|f| f.file_name == name);
            let Some(fw) = fw else {
                return Ok(refuse(&state, ip, Refusal::NotServed, &shown));
            };
            let (file, data) = state.audio.open(&fw.audio_id).await?;
            record(&state, &device, FetchKind::Firmware, &name, ip).await;
            metrics::counter!("pbx_provisioning_requests_total", "result" => "firmware")
                .increment(1);
            tracing::info!(
                mac = %device.mac,
                extension = %device.extension,
                brand = device.brand.as_str(),
                file = %name,
                source = %ip,
                bytes = file.size,
                "provisioning: firmware served"
            );
            Ok((
                [
                    (CONTENT_TYPE, "application/octet-stream".to_owned()),
                    (CONTENT_LENGTH, file.size.to_string()),
                ],
                Body::from_stream(super::audio::read_stream(data)),
            )
                .into_response())
        }
    }
}

/// `GET /provision/{token}/{file}`.
pub(crate) async fn with_token(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path((token, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    serve(
        state,
        ip,
        &headers,
        Credential::Path(token),
        Target::Config(file),
    )
    .await
}

/// `GET /provision/{file}` with HTTP Basic (MAC, token).
pub(crate) async fn with_basic(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let cred = basic(&headers);
    serve(state, ip, &headers, cred, Target::Config(file)).await
}

/// `GET /provision/{token}/firmware/{mac}/{name}`.
pub(crate) async fn firmware_with_token(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path((token, mac, name)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let target = Target::Firmware { mac, name };
    serve(state, ip, &headers, Credential::Path(token), target).await
}

/// `GET /provision/firmware/{mac}/{name}` with HTTP Basic.
pub(crate) async fn firmware_with_basic(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path((mac, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let cred = basic(&headers);
    serve(state, ip, &headers, cred, Target::Firmware { mac, name }).await
}
