//! `/api/v1/trunks`: the SIP trunks to providers, and each trunk's state as the VIP owner last saw it.
//!
//! A trunk's password is write-only: accepted on create and replace (a replace without one keeps the
//! stored one), never returned; answers say `password_set` instead.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use storage::model::{Transport, UnixMillis};
use storage::routing::{RoutingKind, RoutingRecord, Trunk, TrunkKind, TrunkState, TrunkStatus};

use super::AppState;
use super::access::Principal;
use super::crud::{self, Resource};
use super::error::ApiError;
use super::routes::{MAX_ENTRIES, is_number, validate_caller_number, validate_len};
use crate::security::net::Net;

/// Longest host name (RFC 1035) and label.
const MAX_HOST: usize = 253;
const MAX_LABEL: usize = 63;
/// Longest user name, password and realm.
const MAX_USERNAME: usize = 64;
const MAX_PASSWORD: usize = 128;
const MAX_REALM: usize = 128;
/// Largest call limit a trunk may set.
const MAX_CALL_LIMIT: u32 = 100_000;
/// Registration lifetimes accepted, in seconds, and the default.
const REGISTER_EXPIRES: std::ops::RangeInclusive<u32> = 60..=86_400;
const DEFAULT_REGISTER_EXPIRES: u32 = 600;
/// Qualify intervals accepted (or 0: off), in seconds.
const QUALIFY_SECS: std::ops::RangeInclusive<u32> = 10..=3600;
/// A peer trunk is qualified by default (its state is otherwise only learnt from calls); a register
/// trunk's registration already tells.
const DEFAULT_PEER_QUALIFY: u32 = 60;

/// A trunk as the API shows it: every field but the password.
#[derive(Debug, Serialize)]
pub(crate) struct TrunkView {
    name: String,
    kind: TrunkKind,
    enabled: bool,
    host: String,
    port: Option<u16>,
    transport: Option<Transport>,
    outbound_proxy: Option<String>,
    username: String,
    password_set: bool,
    realm: String,
    from_user: String,
    from_domain: String,
    caller_id: String,
    send_pai: bool,
    dids: Vec<String>,
    max_calls: u32,
    calls_per_minute: u32,
    qualify_secs: u32,
    register_expires: u32,
    allow_anonymous: bool,
    peer_networks: Vec<String>,
    peer_hosts: Vec<String>,
    created_at: UnixMillis,
    updated_at: UnixMillis,
}

impl From<Trunk> for TrunkView {
    fn from(t: Trunk) -> Self {
        Self {
            password_set: !t.password.is_empty(),
            name: t.name,
            kind: t.kind,
            enabled: t.enabled,
            host: t.host,
            port: t.port,
            transport: t.transport,
            outbound_proxy: t.outbound_proxy,
            username: t.username,
            realm: t.realm,
            from_user: t.from_user,
            from_domain: t.from_domain,
            caller_id: t.caller_id,
            send_pai: t.send_pai,
            dids: t.dids,
            max_calls: t.max_calls,
            calls_per_minute: t.calls_per_minute,
            qualify_secs: t.qualify_secs,
            register_expires: t.register_expires,
            allow_anonymous: t.allow_anonymous,
            peer_networks: t.peer_networks,
            peer_hosts: t.peer_hosts,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// A trunk as POST and PUT take it; omitted optional fields take their defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrunkBody {
    /// Read-only fields of a GET answer, accepted and ignored: a record read, edited and written
    /// back is a valid body.
    #[serde(default, rename = "created_at")]
    _created_at: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "password_set")]
    _password_set: Option<serde::de::IgnoredAny>,
    /// Required on POST; on PUT the URL's.
    #[serde(default)]
    name: Option<String>,
    kind: TrunkKind,
    #[serde(default)]
    enabled: Option<bool>,
    host: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    transport: Option<Transport>,
    #[serde(default)]
    outbound_proxy: Option<String>,
    #[serde(default)]
    username: String,
    /// Write-only; on PUT, absent keeps the stored password.
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    realm: String,
    #[serde(default)]
    from_user: String,
    #[serde(default)]
    from_domain: String,
    #[serde(default)]
    caller_id: String,
    #[serde(default)]
    send_pai: bool,
    #[serde(default)]
    dids: Vec<String>,
    #[serde(default)]
    max_calls: u32,
    #[serde(default)]
    calls_per_minute: u32,
    #[serde(default)]
    qualify_secs: Option<u32>,
    #[serde(default)]
    register_expires: Option<u32>,
    #[serde(default)]
    allow_anonymous: bool,
    #[serde(default)]
    peer_networks: Vec<String>,
    #[serde(default)]
    peer_hosts: Vec<String>,
}

/// Whether `s` is a DNS name (labels of letters, digits and `-`, not at a label's ends) or an IP
/// address.
fn is_host(s: &str) -> bool {
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    (1..=MAX_HOST).contains(&s.len())
        && s.split('.').all(|label| {
            (1..=MAX_LABEL).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn validate_host(field: &str, s: &str) -> Result<(), ApiError> {
    if is_host(s) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!(
                "a DNS name (labels of letters, digits and '-', at most {MAX_HOST} characters) or an IP address"
            ),
        ))
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn is_host_port(s: &str) -> bool {
    let port_ok = |p: &str| p.parse::<u16>().is_ok_and(|p| p > 0);
    if let Some(rest) = s.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        let addr_ok = addr.parse::<std::net::Ipv6Addr>().is_ok();
        return addr_ok && (after.is_empty() || after.strip_prefix(':').is_some_and(port_ok));
    }
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => is_host(host) && port_ok(port),
        None => is_host(s),
    }
}

/// A DID the trunk carries: a number, or `first-last` of equal length and form with first ≤ last.
fn validate_did(field: &str, s: &str) -> Result<(), ApiError> {
    let reason =
        "digits with an optional leading '+' (at most 32), or a range first-last of equal length";
    let Some((first, last)) = s.split_once('-') else {
        return if is_number(s) {
            Ok(())
        } else {
            Err(ApiError::invalid(field, reason))
        };
    };
    if !is_number(first) || !is_number(last) {
        return Err(ApiError::invalid(field, reason));
    }
    if first.len() != last.len() || first.starts_with('+') != last.starts_with('+') {
        return Err(ApiError::invalid(
            field,
            "a range's ends must have the same length and form",
        ));
    }
    // Same length, digits only past the same prefix: text order is number order.
    if first > last {
        return Err(ApiError::invalid(
            field,
            "a range's first number must not be above its last",
        ));
    }
    Ok(())
}

/// Printable, at most `max` characters.
fn validate_text(field: &str, s: &str, max: usize) -> Result<(), ApiError> {
    if s.chars().count() > max || s.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            format!("at most {max} printable characters"),
        ));
    }
    Ok(())
}

impl TrunkBody {
    /// The trunk this body describes, checked, as trunk `name`; `stored_password` is kept when the
    /// body has none.
    fn into_trunk(
        self,
        name: String,
        stored_password: String,
        created_at: UnixMillis,
        now: UnixMillis,
    ) -> Result<Trunk, ApiError> {
        validate_host("host", &self.host)?;
        if self.port == Some(0) {
            return Err(ApiError::invalid("port", "1 to 65535"));
        }
        let outbound_proxy = self.outbound_proxy.filter(|p| !p.is_empty());
        if let Some(p) = &outbound_proxy
            && !is_host_port(p)
        {
            return Err(ApiError::invalid(
                "outbound_proxy",
                "host or host:port (an IPv6 address in brackets)",
            ));
        }
        validate_text("username", &self.username, MAX_USERNAME)?;
        if self.username.contains(':') {
            return Err(ApiError::invalid("username", "no ':'"));
        }
        let password = self.password.unwrap_or(stored_password);
        validate_text("password", &password, MAX_PASSWORD)?;
        if self.kind == TrunkKind::Register {
            if self.username.is_empty() {
                return Err(ApiError::invalid(
                    "username",
                    "required for a register trunk",
                ));
            }
            if password.is_empty() {
                return Err(ApiError::invalid(
                    "password",
                    "required for a register trunk",
                ));
            }
        }
        validate_text("realm", &self.realm, MAX_REALM)?;
        validate_caller_number("from_user", &self.from_user)?;
        if !self.from_domain.is_empty() {
            validate_host("from_domain", &self.from_domain)?;
        }
        validate_caller_number("caller_id", &self.caller_id)?;
        validate_len("dids", &self.dids, MAX_ENTRIES)?;
        for (i, did) in self.dids.iter().enumerate() {
            validate_did(&format!("dids[{i}]"), did)?;
        }
        for (field, value) in [
            ("max_calls", self.max_calls),
            ("calls_per_minute", self.calls_per_minute),
        ] {
            if value > MAX_CALL_LIMIT {
                return Err(ApiError::invalid(
                    field,
                    format!("0 (no limit) to {MAX_CALL_LIMIT}"),
                ));
            }
        }
        let qualify_secs = self.qualify_secs.unwrap_or(match self.kind {
            TrunkKind::Peer => DEFAULT_PEER_QUALIFY,
            TrunkKind::Register => 0,
        });
        if qualify_secs != 0 && !QUALIFY_SECS.contains(&qualify_secs) {
            return Err(ApiError::invalid(
                "qualify_secs",
                format!(
                    "0 (off) or {} to {}",
                    QUALIFY_SECS.start(),
                    QUALIFY_SECS.end()
                ),
            ));
        }
        let register_expires = self.register_expires.unwrap_or(DEFAULT_REGISTER_EXPIRES);
        if !REGISTER_EXPIRES.contains(&register_expires) {
            return Err(ApiError::invalid(
                "register_expires",
                format!("{} to {}", REGISTER_EXPIRES.start(), REGISTER_EXPIRES.end()),
            ));
        }
        validate_len("peer_networks", &self.peer_networks, MAX_ENTRIES)?;
        let mut peer_networks = Vec::with_capacity(self.peer_networks.len());
        for (i, n) in self.peer_networks.iter().enumerate() {
            let net: Net = n
                .parse()
                .map_err(|e| ApiError::invalid(format!("peer_networks[{i}]"), e))?;
            peer_networks.push(net.to_string());
        }
        validate_len("peer_hosts", &self.peer_hosts, MAX_ENTRIES)?;
        for (i, h) in self.peer_hosts.iter().enumerate() {
            validate_host(&format!("peer_hosts[{i}]"), h)?;
        }
        Ok(Trunk {
            name,
            kind: self.kind,
            enabled: self.enabled.unwrap_or(true),
            host: self.host,
            port: self.port,
            transport: self.transport,
            outbound_proxy,
            username: self.username,
            password,
            realm: self.realm,
            from_user: self.from_user,
            from_domain: self.from_domain,
            caller_id: self.caller_id,
            send_pai: self.send_pai,
            dids: self.dids,
            max_calls: self.max_calls,
            calls_per_minute: self.calls_per_minute,
            qualify_secs,
            register_expires,
            allow_anonymous: self.allow_anonymous,
            peer_networks,
            peer_hosts: self.peer_hosts,
            created_at,
            updated_at: now,
        })
    }
}

impl Resource for Trunk {
    const NOUN: &'static str = "trunk";
    const KIND: RoutingKind = RoutingKind::Trunk;
    const LIST_KEY: &'static str = "trunks";
    type Body = TrunkBody;
    type View = TrunkView;

    fn body_name(body: &TrunkBody) -> Option<&str> {
        body.name.as_deref()
    }

    /// A replace keeps the stored password when the body has none.
    fn from_body(
        body: TrunkBody,
        name: String,
        stored: Option<Self>,
        now: UnixMillis,
    ) -> Result<Self, ApiError> {
        let (password, created_at) =
            stored.map_or((String::new(), now), |t| (t.password, t.created_at));
        body.into_trunk(name, password, created_at, now)
    }

    fn into_routing(self) -> RoutingRecord {
        RoutingRecord::Trunk(Box::new(self))
    }
}

// Trunks list by name. A replace sets every field, except that a body without `password` keeps the
// stored one; a delete is refused (409, naming the route) while a route refers to the trunk.
crud::handlers! { Trunk: list, create, get, update, delete }

/// A trunk's state; `unknown` with nothing else until the VIP owner has checked it.
#[derive(Debug, Serialize)]
pub(crate) struct StatusView {
    name: String,
    state: TrunkState,
    last_status: Option<u16>,
    detail: String,
    registered_until: Option<UnixMillis>,
    server: String,
    since: Option<UnixMillis>,
    node_id: Option<u64>,
}

impl From<TrunkStatus> for StatusView {
    fn from(s: TrunkStatus) -> Self {
        Self {
            name: s.name,
            state: s.state,
            last_status: s.last_status,
            detail: s.detail,
            registered_until: s.registered_until,
            server: s.server,
            since: Some(s.since),
            node_id: Some(s.node_id),
        }
    }
}

pub(crate) async fn status(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> Result<Json<StatusView>, ApiError> {
    who.require(who.grants.routing || who.grants.monitor)?;
    let _: Trunk = crud::read(&state, &name).await?;
    let view = match state.cluster.reader().get::<TrunkStatus>(&name)? {
        Some(s) => s.into(),
        None => StatusView {
            name,
            state: TrunkState::Unknown,
            last_status: None,
            detail: String::new(),
            registered_until: None,
            server: String::new(),
            since: None,
            node_id: None,
        },
    };
    Ok(Json(view))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(kind: TrunkKind) -> TrunkBody {
        serde_json::from_value(serde_json::json!({
            "kind": kind,
            "host": "sip.carrier.example",
        }))
        .unwrap()
    }

    fn check(b: TrunkBody) -> Result<Trunk, String> {
        b.into_trunk("t".into(), String::new(), 1, 2)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_fill_omitted_fields() {
        let t = check(body(TrunkKind::Peer)).unwrap();
        assert!(t.enabled);
        assert_eq!((t.register_expires, t.qualify_secs), (600, 60));
        assert_eq!(t.port, None);
        assert!(t.dids.is_empty());
    }

    #[test]
    fn a_register_trunk_needs_credentials_and_keeps_the_stored_password() {
        let mut b = body(TrunkKind::Register);
        b.username = "acct".into();
        assert!(check(b).unwrap_err().starts_with("password:"));
        let mut b = body(TrunkKind::Register);
        b.username = "acct".into();
        let t = b.into_trunk("t".into(), "stored".into(), 1, 2).unwrap();
        assert_eq!(t.password, "stored");
        assert!(
            check(body(TrunkKind::Register))
                .unwrap_err()
                .starts_with("username:")
        );
    }

    #[test]
    fn hosts_and_proxies() {
        for ok in ["carrier.example", "10.0.0.1", "2001:db8::1", "a-b.c9"] {
            assert!(is_host(ok), "{ok}");
        }
        for bad in [
            "",
            "-a.example",
            "a..b",
            "a_b.example",
            "a b",
            &"a".repeat(64),
        ] {
            assert!(!is_host(bad), "{bad}");
        }
        for ok in [
            "proxy.example",
            "proxy.example:5060",
            "10.0.0.1:5061",
            "[2001:db8::1]:5060",
            "[::1]",
        ] {
            assert!(is_host_port(ok), "{ok}");
        }
        for bad in [
            "proxy.example:0",
            "proxy.example:99999",
            "[::1",
            "[::1]x",
            "a:b:c",
        ] {
            assert!(!is_host_port(bad), "{bad}");
        }
    }

    #[test]
    fn dids_are_numbers_or_ordered_ranges_of_equal_length() {
        for ok in ["15550100", "+4420", "15550100-15550199", "+4420-+4429"] {
            assert!(validate_did("dids[0]", ok).is_ok(), "{ok}");
        }
        for bad in ["", "abc", "100-20", "199-100", "+100-200", "1-2-3", "-1"] {
            assert!(validate_did("dids[0]", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounded_fields_name_themselves() {
        let mut b = body(TrunkKind::Peer);
        b.peer_networks = vec!["10.0.0.0/8".into(), "10.0.0.0/33".into()];
        assert!(check(b).unwrap_err().starts_with("peer_networks[1]:"));
        let mut b = body(TrunkKind::Peer);
        b.qualify_secs = Some(5);
        assert!(check(b).unwrap_err().starts_with("qualify_secs:"));
        let mut b = body(TrunkKind::Peer);
        b.register_expires = Some(30);
        assert!(check(b).unwrap_err().starts_with("register_expires:"));
        let mut b = body(TrunkKind::Peer);
        b.caller_id = "12a".into();
        assert!(check(b).unwrap_err().starts_with("caller_id:"));
        let mut b = body(TrunkKind::Peer);
        b.dids = vec!["1".into(); 101];
        assert!(check(b).unwrap_err().starts_with("dids:"));
        let mut b = body(TrunkKind::Peer);
        b.port = Some(0);
        assert!(check(b).unwrap_err().starts_with("port:"));
    }
}
