//! Auto-provisioning: the registry of desk phones that set themselves up, keyed by MAC address.
//!
//! A [`Device`] is a phone (brand, model, MAC) given to an extension. The cluster keeps only the
//! HA1 of an extension's SIP secret, so it cannot hand a phone the secret the extension already
//! had: adding an extension's first device gives the extension a new generated secret, whose
//! plaintext the device record keeps (needed in clear to write the phone's configuration, like a
//! trunk's password; never returned by the API). An extension's devices share that one secret
//! ([`SecretChange`]). The phone proves itself with a per-device token of which only the SHA-256
//! is stored.
//!
//! Tables: [`Table::Devices`] (`{mac}`), [`Table::DevicesByExtension`] (`{extension}/{mac}`, written
//! in the same command as the device), [`Table::ProvisioningSettings`] (one record) and
//! [`Table::Firmware`] (`{brand}/{model}`).

use serde::{Deserialize, Serialize};

use crate::codec::CodecError;
use crate::command::{Response, Txn, get, put, table_name};
use crate::model::{Extension, SipCredentials, UnixMillis};
use crate::routing::PutMode;
use crate::routing_apply::invalid;
use crate::tables::{Record, Table};

/// Hex digits of a MAC address as stored.
pub const MAC_LEN: usize = 12;
/// Longest MAC address as written (separators included).
pub const MAX_MAC_INPUT: usize = 32;
/// Longest model name, in bytes.
pub const MAX_MODEL_LEN: usize = 32;
/// Longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 64;
/// Line (BLF) keys a device has at most.
pub const MAX_LINE_KEYS: usize = 32;
/// Devices one command puts at most (an import is proposed in chunks of this size).
pub const MAX_PER_COMMAND: usize = 500;
/// Devices the cluster holds at most.
pub const MAX_DEVICES: usize = 20_000;
/// Devices one extension has at most.
pub const MAX_PER_EXTENSION: usize = 8;
/// Longest file name and source address kept with a fetch.
pub const MAX_FETCH_FIELD: usize = 128;
/// Longest SIP secret a device carries.
pub const MAX_SECRET_LEN: usize = 128;
/// Allowed source networks at most, and the longest one as written.
pub const MAX_NETWORKS: usize = 64;
pub const MAX_NETWORK_LEN: usize = 64;
/// Longest NTP server name.
pub const MAX_HOST_LEN: usize = 253;

/// The phone makers whose provisioning files the PBX writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Brand {
    Yealink,
    Grandstream,
    Snom,
    Fanvil,
    Polycom,
}

impl Brand {
    pub const ALL: [Self; 5] = [
        Self::Yealink,
        Self::Grandstream,
        Self::Snom,
        Self::Fanvil,
        Self::Polycom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Yealink => "yealink",
            Self::Grandstream => "grandstream",
            Self::Snom => "snom",
            Self::Fanvil => "fanvil",
            Self::Polycom => "polycom",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

/// A MAC address as stored: 12 lowercase hex digits, from `00:15:65:AA:BB:CC`, `00-15-65-aa-bb-cc`,
/// `0015.65aa.bbcc` or `001565aabbcc`. A group (multicast or broadcast) address or all zeros is no
/// phone's.
pub fn normalize_mac(raw: &str) -> Result<String, String> {
    let reason = || "12 hex digits, such as 00:15:65:aa:bb:cc".to_owned();
    let raw = raw.trim();
    if raw.len() > MAX_MAC_INPUT {
        return Err(reason());
    }
    let mut out = String::with_capacity(MAC_LEN);
    for c in raw.chars() {
        match c {
            '0'..='9' | 'a'..='f' => out.push(c),
            'A'..='F' => out.push(c.to_ascii_lowercase()),
            ':' | '-' | '.' | ' ' => {}
            _ => return Err(reason()),
        }
    }
    if out.len() != MAC_LEN {
        return Err(reason());
    }
    let first = u8::from_str_radix(&out[..2], 16).map_err(|_| reason())?;
    if first & 1 == 1 {
        return Err("a group (multicast) address is no phone's".into());
    }
    if out.bytes().all(|b| b == b'0') {
        return Err(reason());
    }
    Ok(out)
}

/// Whether `mac` is a MAC address as stored.
pub fn valid_mac(mac: &str) -> bool {
    normalize_mac(mac).as_deref() == Ok(mac)
}

/// A model name: 1 to [`MAX_MODEL_LEN`] letters, digits, `-`, `_` or `.` (it names a firmware file).
pub fn check_model(model: &str) -> Result<(), String> {
    let ok = (1..=MAX_MODEL_LEN).contains(&model.len())
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "1 to {MAX_MODEL_LEN} letters, digits, '-', '_' or '.'"
        ))
    }
}

/// A label shown on the phone: at most [`MAX_LABEL_CHARS`] characters, no control characters
/// (a line break would start a new key in a line-based file).
pub fn check_label(label: &str) -> Result<(), String> {
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(format!("at most {MAX_LABEL_CHARS} characters"));
    }
    if label.chars().any(char::is_control) {
        return Err("no control characters".into());
    }
    Ok(())
}

/// An extension number: 2 to 15 digits.
fn is_number(s: &str) -> bool {
    (2..=15).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// A SIP secret as a device carries it: printable ASCII without quotes, backslashes or spaces, so
/// that it is one token in every file format.
fn check_secret(secret: &str) -> Result<(), String> {
    let ok = (1..=MAX_SECRET_LEN).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "1 to {MAX_SECRET_LEN} printable characters without quotes"
        ))
    }
}

/// One download of a device's configuration or firmware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetch {
    pub file: String,
    pub at: UnixMillis,
    /// The source address.
    pub from: String,
}

/// What a device fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchKind {
    Config,
    Firmware,
}

/// A desk phone that provisions itself, keyed by its MAC address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// [`MAC_LEN`] lowercase hex digits ([`normalize_mac`]).
    pub mac: String,
    pub brand: Brand,
    pub model: String,
    /// The extension it registers as.
    pub extension: String,
    /// Empty when none.
    pub label: String,
    /// Extensions whose busy lamps the phone's line keys show, in key order.
    pub line_keys: Vec<String>,
    /// SHA-256 of the device's provisioning token, lowercase hex.
    pub token_sha256: String,
    /// The extension's SIP secret in clear: the phone's configuration carries it.
    pub sip_secret: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub last_config: Option<Fetch>,
    pub last_firmware: Option<Fetch>,
}

impl Device {
    /// The first problem with the device, as (field, reason).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if !valid_mac(&self.mac) {
            return Some(("mac", "12 lowercase hex digits".into()));
        }
        if let Err(reason) = check_model(&self.model) {
            return Some(("model", reason));
        }
        if !is_number(&self.extension) {
            return Some(("extension", "2 to 15 digits".into()));
        }
        if let Err(reason) = check_label(&self.label) {
            return Some(("label", reason));
        }
        if self.line_keys.len() > MAX_LINE_KEYS {
            return Some(("line_keys", format!("at most {MAX_LINE_KEYS} keys")));
        }
        for (i, key) in self.line_keys.iter().enumerate() {
            if !is_number(key) {
                return Some(("line_keys", format!("[{i}]: 2 to 15 digits")));
            }
            if self.line_keys[..i].contains(key) {
                return Some(("line_keys", format!("[{i}]: {key} is given twice")));
            }
        }
        let hex64 = self.token_sha256.len() == 64
            && self
                .token_sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !hex64 {
            return Some(("token_sha256", "64 lowercase hex digits".into()));
        }
        if let Err(reason) = check_secret(&self.sip_secret) {
            return Some(("sip_secret", reason));
        }
        None
    }
}

impl Record for Device {
    const TABLE: Table = Table::Devices;
    fn key(&self) -> String {
        self.mac.clone()
    }
}

/// The index of devices by extension, `{extension}/{mac}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionDevice {
    pub extension: String,
    pub mac: String,
}

impl ExtensionDevice {
    pub fn prefix(extension: &str) -> String {
        format!("{extension}/")
    }
}

impl Record for ExtensionDevice {
    const TABLE: Table = Table::DevicesByExtension;
    fn key(&self) -> String {
        format!("{}{}", Self::prefix(&self.extension), self.mac)
    }
}

/// What a device put does to its extension's SIP secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretChange {
    /// The device stays on its extension and keeps its secret (the stored one wins).
    Keep,
    /// The device joins its extension: it takes the secret of the extension's other devices when
    /// it has some; otherwise the extension's credentials become these (made from the device's
    /// secret).
    Join(SipCredentials),
    /// The extension's credentials become these, and every device of the extension gets the
    /// device's secret (a reprovision).
    Rotate(SipCredentials),
}

/// One device to create or replace, with what it does to its extension's secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePut {
    pub device: Device,
    pub mode: PutMode,
    pub secret: SecretChange,
}

/// How phones reach the PBX: the policy every provisioning file carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SipTransport {
    /// What every phone can do (and the default).
    #[default]
    Udp,
    Tcp,
    /// SIP over TLS, with SDES-SRTP offered (the PBX accepts SRTP only over TLS).
    Tls,
}

impl SipTransport {
    pub const ALL: [Self; 3] = [Self::Udp, Self::Tcp, Self::Tls];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// The cluster's provisioning policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisioningSettings {
    pub transport: SipTransport,
    /// The NTP server phones use; none: the VIP (or the serving node without one).
    pub ntp_server: Option<String>,
    /// Source networks (CIDR) allowed to fetch provisioning files; empty: any.
    pub allowed_networks: Vec<String>,
    pub updated_at: UnixMillis,
}

impl ProvisioningSettings {
    pub const KEY: &'static str = "settings";

    /// The first problem, as (field, reason); the networks' syntax is the node's to check.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if let Some(ntp) = &self.ntp_server {
            let ok = (1..=MAX_HOST_LEN).contains(&ntp.len())
                && ntp
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
            if !ok {
                return Some((
                    "ntp_server",
                    "a host name or address of at most 253 characters".into(),
                ));
            }
        }
        if self.allowed_networks.len() > MAX_NETWORKS {
            return Some((
                "allowed_networks",
                format!("at most {MAX_NETWORKS} networks"),
            ));
        }
        if self
            .allowed_networks
            .iter()
            .any(|n| n.is_empty() || n.len() > MAX_NETWORK_LEN)
        {
            return Some((
                "allowed_networks",
                format!("each 1 to {MAX_NETWORK_LEN} characters"),
            ));
        }
        None
    }
}

impl Record for ProvisioningSettings {
    const TABLE: Table = Table::ProvisioningSettings;
    fn key(&self) -> String {
        Self::KEY.to_owned()
    }
}

/// A firmware image served to a brand's model, kept in the audio store's index (kind
/// `firmware`) as file `audio_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firmware {
    pub brand: Brand,
    /// As [`check_model`]; keyed in lowercase.
    pub model: String,
    /// The name the phone asks for (the uploaded name), as [`check_model`] with a longer limit.
    pub file_name: String,
    pub audio_id: String,
    pub size: u64,
    pub sha256: String,
    pub uploaded_at: UnixMillis,
}

impl Firmware {
    pub fn key_for(brand: Brand, model: &str) -> String {
        format!("{}/{}", brand.as_str(), model.to_ascii_lowercase())
    }
}

impl Record for Firmware {
    const TABLE: Table = Table::Firmware;
    fn key(&self) -> String {
        Self::key_for(self.brand, &self.model)
    }
}

fn not_found(table: Table, key: &str) -> Response {
    Response::NotFound {
        table: table_name(table),
        key: key.to_owned(),
    }
}

/// The other devices of `extension` than `mac`.
fn siblings(txn: &dyn Txn, extension: &str, mac: &str) -> Vec<String> {
    let prefix = ExtensionDevice::prefix(extension);
    txn.keys_with_prefix(Table::DevicesByExtension, &prefix)
        .into_iter()
        .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
        .filter(|m| m != mac)
        .collect()
}

/// Why `put` cannot be applied to the tables as they are, with `total` devices and
/// `joining_earlier` devices the batch's earlier puts bring to its extension: the refusal, or
/// `None`.
fn refusal(
    txn: &dyn Txn,
    put: &DevicePut,
    total: usize,
    joining_earlier: usize,
) -> Result<Option<Response>, CodecError> {
    let d = &put.device;
    if let Some((field, reason)) = d.problem() {
        return Ok(Some(invalid(
            Table::Devices,
            &d.mac,
            format!("{field}: {reason}"),
        )));
    }
    if txn.get(Table::Extensions, &d.extension).is_none() {
        return Ok(Some(not_found(Table::Extensions, &d.extension)));
    }
    for (i, key) in d.line_keys.iter().enumerate() {
        if txn.get(Table::Extensions, key).is_none() {
            let reason = format!("line_keys[{i}]: extension {key} does not exist");
            return Ok(Some(invalid(Table::Devices, &d.mac, reason)));
        }
    }
    let old = get::<Device>(txn, &d.mac)?;
    match (put.mode, &old) {
        (PutMode::Create, Some(_)) => {
            return Ok(Some(Response::Conflict {
                table: table_name(Table::Devices),
                key: d.mac.clone(),
            }));
        }
        (PutMode::Update, None) => return Ok(Some(not_found(Table::Devices, &d.mac))),
        _ => {}
    }
    if old.is_none() && total >= MAX_DEVICES {
        let reason = format!("mac: the cluster holds at most {MAX_DEVICES} devices");
        return Ok(Some(invalid(Table::Devices, &d.mac, reason)));
    }
    let moved = old.as_ref().is_none_or(|o| o.extension != d.extension);
    match &put.secret {
        SecretChange::Keep if moved => {
            let reason = "sip_secret: a device new to its extension needs a secret".to_owned();
            return Ok(Some(invalid(Table::Devices, &d.mac, reason)));
        }
        SecretChange::Join(c) | SecretChange::Rotate(c) if c.username != d.extension => {
            let reason = "sip_secret: credentials of another extension".to_owned();
            return Ok(Some(invalid(Table::Devices, &d.mac, reason)));
        }
        _ => {}
    }
    if moved && siblings(txn, &d.extension, &d.mac).len() + joining_earlier + 1 > MAX_PER_EXTENSION
    {
        let reason = format!(
            "extension: extension {} has {MAX_PER_EXTENSION} devices already",
            d.extension
        );
        return Ok(Some(invalid(Table::Devices, &d.mac, reason)));
    }
    Ok(None)
}

/// Gives extension `number` these credentials.
fn set_credentials(
    txn: &mut dyn Txn,
    number: &str,
    creds: &SipCredentials,
) -> Result<(), CodecError> {
    if let Some(mut ext) = get::<Extension>(txn, number)? {
        ext.credentials = creds.clone();
        ext.updated_at = ext.updated_at.max(creds.changed_at);
        put(txn, &ext)?;
    }
    Ok(())
}

/// Applies one checked put.
fn apply_put(txn: &mut dyn Txn, p: &DevicePut) -> Result<(), CodecError> {
    let mut d = p.device.clone();
    let old = get::<Device>(txn, &d.mac)?;
    let others = siblings(txn, &d.extension, &d.mac);
    match &p.secret {
        SecretChange::Keep => {
            if let Some(o) = &old {
                d.sip_secret = o.sip_secret.clone();
            }
        }
        SecretChange::Join(creds) => match others.first() {
            Some(mac) => {
                if let Some(sibling) = get::<Device>(txn, mac)? {
                    d.sip_secret = sibling.sip_secret;
                }
            }
            None => set_credentials(txn, &d.extension, creds)?,
        },
        SecretChange::Rotate(creds) => {
            set_credentials(txn, &d.extension, creds)?;
            for mac in &others {
                if let Some(mut sibling) = get::<Device>(txn, mac)? {
                    sibling.sip_secret = d.sip_secret.clone();
                    put(txn, &sibling)?;
                }
            }
        }
    }
    if let Some(o) = &old
        && o.extension != d.extension
    {
        let entry = ExtensionDevice {
            extension: o.extension.clone(),
            mac: o.mac.clone(),
        };
        txn.delete(Table::DevicesByExtension, &entry.key());
    }
    put(
        txn,
        &ExtensionDevice {
            extension: d.extension.clone(),
            mac: d.mac.clone(),
        },
    )?;
    put(txn, &d)?;
    Ok(())
}

/// Creates or replaces each device, all or nothing: `Invalid` (naming the device's MAC and the
/// field) when one is malformed, names a missing line-key extension, would pass a limit, or the
/// same MAC twice; `NotFound` without its extension (or, replacing, without the device);
/// `Conflict` when a created MAC exists.
pub(crate) fn put_devices(txn: &mut dyn Txn, puts: &[DevicePut]) -> Result<Response, CodecError> {
    if puts.len() > MAX_PER_COMMAND {
        let reason = format!("devices: at most {MAX_PER_COMMAND} per command");
        return Ok(invalid(Table::Devices, "", reason));
    }
    // Every put is checked before the first write (the txn cannot roll back): the MACs differ,
    // so each put's checks see the tables as they are, plus the counts the earlier ones add.
    let mut total = txn.keys_with_prefix(Table::Devices, "").len();
    let mut joining: Vec<(&str, usize)> = Vec::new();
    for (i, p) in puts.iter().enumerate() {
        let d = &p.device;
        if puts[..i].iter().any(|q| q.device.mac == d.mac) {
            let reason = format!("mac: {} is given twice", d.mac);
            return Ok(invalid(Table::Devices, &d.mac, reason));
        }
        let earlier = joining
            .iter()
            .find(|(e, _)| *e == d.extension)
            .map_or(0, |(_, n)| *n);
        if let Some(refused) = refusal(txn, p, total, earlier)? {
            return Ok(refused);
        }
        let old = get::<Device>(txn, &d.mac)?;
        total += usize::from(old.is_none());
        if old.is_none_or(|o| o.extension != d.extension) {
            match joining.iter_mut().find(|(e, _)| *e == d.extension) {
                Some((_, n)) => *n += 1,
                None => joining.push((&d.extension, 1)),
            }
        }
    }
    for p in puts {
        apply_put(txn, p)?;
    }
    Ok(Response::Ok)
}

/// Removes device `mac` and its index entry; whether there was one.
fn remove(txn: &mut dyn Txn, mac: &str) -> Result<bool, CodecError> {
    let Some(old) = get::<Device>(txn, mac)? else {
        return Ok(false);
    };
    let entry = ExtensionDevice {
        extension: old.extension,
        mac: old.mac,
    };
    txn.delete(Table::DevicesByExtension, &entry.key());
    txn.delete(Table::Devices, mac);
    Ok(true)
}

/// Deletes device `mac`; `NotFound` without it.
pub(crate) fn delete_device(txn: &mut dyn Txn, mac: &str) -> Result<Response, CodecError> {
    if remove(txn, mac)? {
        Ok(Response::Ok)
    } else {
        Ok(not_found(Table::Devices, mac))
    }
}

/// Deletes the devices of an extension being deleted.
pub(crate) fn forget_extension(txn: &mut dyn Txn, number: &str) -> Result<(), CodecError> {
    let prefix = ExtensionDevice::prefix(number);
    for key in txn.keys_with_prefix(Table::DevicesByExtension, &prefix) {
        if let Some(mac) = key.strip_prefix(&prefix) {
            txn.delete(Table::Devices, mac);
        }
        txn.delete(Table::DevicesByExtension, &key);
    }
    Ok(())
}

/// Records a download; `NotFound` when the device is gone. Bounded fields: a longer file name or
/// address is cut.
pub(crate) fn record_fetch(
    txn: &mut dyn Txn,
    mac: &str,
    kind: FetchKind,
    fetch: &Fetch,
) -> Result<Response, CodecError> {
    let Some(mut d) = get::<Device>(txn, mac)? else {
        return Ok(not_found(Table::Devices, mac));
    };
    let cut = |s: &str| s.chars().take(MAX_FETCH_FIELD).collect::<String>();
    let fetch = Fetch {
        file: cut(&fetch.file),
        at: fetch.at,
        from: cut(&fetch.from),
    };
    match kind {
        FetchKind::Config => d.last_config = Some(fetch),
        FetchKind::Firmware => d.last_firmware = Some(fetch),
    }
    put(txn, &d)
}

/// Replaces the provisioning settings; `Invalid` when malformed.
pub(crate) fn put_settings(
    txn: &mut dyn Txn,
    s: &ProvisioningSettings,
) -> Result<Response, CodecError> {
    if let Some((field, reason)) = s.problem() {
        return Ok(invalid(
            Table::ProvisioningSettings,
            ProvisioningSettings::KEY,
            format!("{field}: {reason}"),
        ));
    }
    put(txn, s)
}

/// Sets a model's firmware; `NotFound` without its audio-store file, `Invalid` when malformed.
pub(crate) fn put_firmware(txn: &mut dyn Txn, f: &Firmware) -> Result<Response, CodecError> {
    if let Err(reason) = check_model(&f.model) {
        return Ok(invalid(
            Table::Firmware,
            &f.key(),
            format!("model: {reason}"),
        ));
    }
    let name_ok = (1..=MAX_FETCH_FIELD).contains(&f.file_name.len())
        && f.file_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !f.file_name.starts_with('.');
    if !name_ok {
        let reason = "file_name: letters, digits, '-', '_' or '.'".to_owned();
        return Ok(invalid(Table::Firmware, &f.key(), reason));
    }
    if txn.get(Table::AudioFiles, &f.audio_id).is_none() {
        return Ok(not_found(Table::AudioFiles, &f.audio_id));
    }
    put(txn, f)
}

/// Forgets the firmware entries whose file `audio_id` is being deleted.
pub(crate) fn forget_firmware_file(txn: &mut dyn Txn, audio_id: &str) -> Result<(), CodecError> {
    for key in txn.keys_with_prefix(Table::Firmware, "") {
        if get::<Firmware>(txn, &key)?.is_some_and(|f| f.audio_id == audio_id) {
            txn.delete(Table::Firmware, &key);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
