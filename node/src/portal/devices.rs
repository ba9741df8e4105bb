//! `/devices`: the desk phones that provision themselves (the admin's). The registry one page at a
//! time (MAC, brand and model, extension, label, busy-lamp keys, the last configuration and
//! firmware downloads, whether the SIP secret in its file is still the extension's), with
//! reprovision and delete; adding a device and the CSV import; the provisioning policy; the
//! firmware images per model, with upload and delete.
//!
//! A device's token is never in this page: the API returns it once, in the answer to the create or
//! reprovision request, and `portal.js` shows it with the URLs in the shown-once panel
//! (`data-then="show-provisioned"`); an import's tokens are listed in its report, once.

use axum::extract::State;
use maud::{Markup, html};
use serde::Deserialize;
use storage::provisioning::{
    Brand, MAX_HOST_LEN, MAX_LABEL_CHARS, MAX_LINE_KEYS, MAX_MAC_INPUT, MAX_MODEL_LEN,
    SipTransport, valid_mac,
};

use super::layout::{self, Nav, badge, bytes, empty_row, field, form_error, pager, when};
use super::{Ctx, Params, Problem, api, enc, given};
use crate::api::{AppState, DeviceQuery, ListQuery, Principal};

/// Devices per page.
pub(super) const PAGE: usize = 100;

#[derive(Debug, Default, Deserialize)]
pub(super) struct DevicesQuery {
    #[serde(default)]
    after: Option<String>,
}

/// A download a phone made, as the API shows it.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Fetch {
    file: String,
    at: u64,
    from: String,
}

/// A device as `GET /api/v1/devices` shows it (never its token or secret).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Device {
    mac: String,
    brand: String,
    model: String,
    extension: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    line_keys: Vec<String>,
    #[serde(default)]
    files: Vec<String>,
    secret_current: bool,
    #[serde(default)]
    last_config: Option<Fetch>,
    #[serde(default)]
    last_firmware: Option<Fetch>,
}

/// One page of devices.
#[derive(Debug, Deserialize)]
pub(super) struct DevicePage {
    items: Vec<Device>,
    #[serde(default)]
    next: Option<String>,
}

/// `GET /api/v1/provisioning/settings`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Policy {
    #[serde(default)]
    transport: Option<String>,
    #[serde(default)]
    ntp_server: Option<String>,
    #[serde(default)]
    allowed_networks: Vec<String>,
}

/// A firmware image as `GET /api/v1/firmware` shows it.
#[derive(Debug, Deserialize)]
pub(super) struct Firmware {
    brand: String,
    model: String,
    file_name: String,
    size: u64,
    sha256: String,
    uploaded_at: u64,
}

#[derive(Debug, Deserialize)]
pub(super) struct FirmwareList {
    firmware: Vec<Firmware>,
}

/// What the page shows.
#[derive(Debug)]
pub(super) struct Loaded {
    pub devices: DevicePage,
    pub policy: Policy,
    pub firmware: FirmwareList,
}

/// Reads one page of devices (after `after`), the policy and the firmware through the API, as `who`.
pub(super) async fn load(
    state: &AppState,
    who: &Principal,
    after: Option<String>,
) -> Result<Loaded, Problem> {
    let s = || State(state.clone());
    let q = DeviceQuery {
        after,
        limit: Some(PAGE.to_string()),
    };
    let devices =
        api::answer(crate::api::devices_list(s(), who.clone(), ListQuery(q)).await).await?;
    let policy = api::answer(crate::api::provisioning_settings(s(), who.clone()).await).await?;
    let firmware = api::answer(crate::api::firmware_list(s(), who.clone()).await).await?;
    Ok(Loaded {
        devices,
        policy,
        firmware,
    })
}

/// `/devices`.
pub(super) async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    Params(q): Params<DevicesQuery>,
) -> Result<Markup, Problem> {
    ctx.require(ctx.who.is_admin())?;
    // A hand-edited cursor that is no MAC is the first page.
    let after = given(q.after).filter(|a| valid_mac(a));
    let first_page = after.is_none();
    let loaded = load(&state, &ctx.who, after).await?;
    Ok(layout::page(
        &ctx.who,
        Nav::Devices,
        "Devices",
        render(&loaded, first_page),
    ))
}

/// `001565aabbcc` as `00:15:65:aa:bb:cc`.
pub(super) fn mac_text(mac: &str) -> String {
    if mac.len() != 12 || !mac.is_ascii() {
        return mac.to_owned();
    }
    (0..6)
        .map(|i| &mac[2 * i..2 * i + 2])
        .collect::<Vec<_>>()
        .join(":")
}

/// The page's content.
pub(super) fn render(loaded: &Loaded, first_page: bool) -> Markup {
    let devices = &loaded.devices;
    html! {
        div.card {
            h2 { "Devices" }
            p.hint {
                "Phones fetch their file from any node with their token (in the URL, or as the HTTP "
                "Basic password with the MAC as user). A token is shown once, when the device is "
                "added or reprovisioned; this page never shows it or the SIP secret."
            }
            div.table-wrap {
                table.data #devices-table {
                    thead { tr {
                        th { "MAC" } th { "Phone" } th { "Extension and label" } th { "Line keys" }
                        th { "Last fetched" } th { "SIP secret" } th.actions { "Actions" }
                    } }
                    tbody {
                        @for d in &devices.items { (row(d)) }
                        @if devices.items.is_empty() { (empty_row(7, "No devices.")) }
                    }
                }
            }
            (pager("/devices", devices.next.as_deref(), first_page))
        }
        div.grid-2 {
            div.card {
                h2 { "Add a device" }
                (create_form())
            }
            div.card {
                h2 { "Import from CSV" }
                (import_form())
            }
        }
        div.grid-2 {
            div.card {
                h2 { "Provisioning settings" }
                (policy_form(&loaded.policy))
            }
            div.card {
                h2 { "Firmware" }
                (firmware(&loaded.firmware))
            }
        }
    }
}

/// The last download of one kind: when, which file, from where.
fn fetched(kind: &str, f: Option<&Fetch>) -> Markup {
    html! {
        div.device-fetch {
            span.muted { (kind) ": " }
            @match f {
                Some(f) => {
                    (when(f.at)) br;
                    span.mono { (f.file) } " from " span.mono { (f.from) }
                }
                None => { span.muted { "never" } }
            }
        }
    }
}

fn row(d: &Device) -> Markup {
    let url = format!("/api/v1/devices/{}", enc(&d.mac));
    let mac = mac_text(&d.mac);
    html! {
        tr id={ "device-" (d.mac) } data-device=(d.mac) {
            td.mono { (mac) }
            td { (d.brand) " " (d.model) br; span.muted.mono { (d.files.join(", ")) } }
            td {
                span.mono { (d.extension) }
                @if !d.label.is_empty() { br; (d.label) }
            }
            td.mono { (d.line_keys.join(", ")) }
            td {
                (fetched("configuration", d.last_config.as_ref()))
                (fetched("firmware", d.last_firmware.as_ref()))
            }
            td {
                @if d.secret_current { (badge("ok", "current")) }
                @else { (badge("warn", "changed since: reprovision")) }
            }
            td.actions {
                button.btn.btn-small.device-reprovision type="button"
                    data-api={ "POST " (url) "/reprovision" }
                    data-confirm={
                        "Reprovision " (mac) "? It gets a new token, and extension " (d.extension)
                        " a new SIP secret for all its phones: each must fetch its file again."
                    }
                    data-then="show-provisioned"
                    data-secret-label="New provisioning token of {mac}" { "Reprovision" }
                button.btn.btn-small.btn-danger.device-delete type="button"
                    data-api={ "DELETE " (url) }
                    data-confirm={ "Delete device " (mac) "? Its token stops working." }
                    data-then="reload" { "Delete" }
            }
        }
    }
}

fn brand_options(selected: Option<&str>) -> Markup {
    html! {
        @for b in Brand::ALL {
            option value=(b.as_str()) selected[selected == Some(b.as_str())] { (b.as_str()) }
        }
    }
}

/// `#device-create`: the answer's token and URLs are shown once.
fn create_form() -> Markup {
    html! {
        form.form #device-create data-api="POST /api/v1/devices" data-then="show-provisioned"
            data-secret-label="Provisioning token of {mac}" {
            (form_error())
            (field("MAC address", "mac", html! {
                input #device-mac type="text" name="mac" maxlength=(MAX_MAC_INPUT) required
                    autocomplete="off" placeholder="00:15:65:aa:bb:cc";
            }))
            (field("Brand", "brand", html! {
                select #device-brand name="brand" { (brand_options(None)) }
            }))
            (field("Model", "model", html! {
                input #device-model type="text" name="model" maxlength=(MAX_MODEL_LEN) required
                    placeholder="T54W";
            }))
            (field("Extension", "extension", html! {
                input #device-extension type="text" name="extension" inputmode="numeric" required;
            }))
            (field("Label (the line's name on the phone)", "label", html! {
                input #device-label type="text" name="label" maxlength=(MAX_LABEL_CHARS);
            }))
            (field(&format!("Busy-lamp keys (up to {MAX_LINE_KEYS} extensions)"), "line_keys", html! {
                input #device-line-keys type="text" name="line_keys" data-type="list"
                    placeholder="1002, 1003";
            }))
            p.hint.wide {
                "The extension's first device gives it a new SIP secret (a softphone using the old "
                "one stops registering); its other devices share it. The phone gets it in its file."
            }
            div.form-actions {
                button.btn.btn-primary #device-submit type="submit" { "Add device" }
            }
        }
    }
}

fn import_form() -> Markup {
    html! {
        form.form-stacked #devices-import data-import="/api/v1/devices/import"
            data-report="#devices-import-report" data-columns="Row,Field,Problem"
            data-shown="Show the devices" {
            (form_error())
            (field("CSV file", "file", html! {
                input #devices-import-file type="file" name="file" accept=".csv,text/csv" required;
            }))
            p.hint {
                "One device per row, with the header " code { "mac,brand,model,extension,label" }
                " (any order; " code { "label" } " may be left out). Good rows are added and their "
                "tokens listed once; each bad row is listed with the reason and adds nothing."
            }
            div.form-actions {
                button.btn.btn-primary #devices-import-submit type="submit" { "Import" }
            }
        }
        div.import-report #devices-import-report hidden {}
    }
}

/// `#provisioning-settings`: every field is sent (an omitted one takes its default).
fn policy_form(p: &Policy) -> Markup {
    let transport = p.transport.as_deref().unwrap_or("udp");
    html! {
        form.form-stacked #provisioning-settings data-api="PUT /api/v1/provisioning/settings"
            data-then="notice" data-notice="Provisioning settings saved: phones get them at their next fetch." {
            (form_error())
            (field("SIP transport", "transport", html! {
                select #provisioning-transport name="transport" {
                    @for t in SipTransport::ALL {
                        option value=(t.as_str()) selected[t.as_str() == transport] {
                            (t.as_str().to_uppercase())
                            @if t == SipTransport::Tls { " (and SRTP)" }
                        }
                    }
                }
            }))
            (field("NTP server (empty: the VIP)", "ntp_server", html! {
                input #provisioning-ntp type="text" name="ntp_server" maxlength=(MAX_HOST_LEN)
                    value=(p.ntp_server.as_deref().unwrap_or(""));
            }))
            (field("Networks allowed to fetch files (empty: any)", "allowed_networks", html! {
                textarea #provisioning-networks name="allowed_networks" data-type="list"
                    placeholder="192.0.2.0/24" {
                    (p.allowed_networks.join("\n"))
                }
            }))
            p.hint { "One network (CIDR) per line; a phone elsewhere gets a 404." }
            div.form-actions {
                button.btn.btn-primary #provisioning-submit type="submit" { "Save settings" }
            }
        }
    }
}

/// `#firmware-table` and `#firmware-upload`.
fn firmware(list: &FirmwareList) -> Markup {
    html! {
        div.table-wrap {
            table.data #firmware-table {
                thead { tr {
                    th { "Phone" } th { "File" } th.num { "Size" } th { "Uploaded" } th.actions { "Actions" }
                } }
                tbody {
                    @for f in &list.firmware {
                        @let url = format!("/api/v1/firmware/{}/{}", enc(&f.brand), enc(&f.model));
                        tr.firmware-row data-firmware={ (f.brand) "/" (f.model) } {
                            td { (f.brand) " " (f.model) }
                            td {
                                span.mono { (f.file_name) } br;
                                span.muted.mono title=(f.sha256) { "SHA-256 " (f.sha256.get(..12).unwrap_or(&f.sha256)) "…" }
                            }
                            td.num { (bytes(f.size)) }
                            td { (when(f.uploaded_at)) }
                            td.actions {
                                button.btn.btn-small.btn-danger.firmware-delete type="button"
                                    data-api={ "DELETE " (url) }
                                    data-confirm={ "Delete the firmware for " (f.brand) " " (f.model) "?" }
                                    data-then="reload" { "Delete" }
                            }
                        }
                    }
                    @if list.firmware.is_empty() { (empty_row(5, "No firmware.")) }
                }
            }
        }
        form.form #firmware-upload data-put-file="/api/v1/firmware/{brand}/{model}" data-then="reload" {
            (form_error())
            (field("Brand", "brand", html! {
                select #firmware-brand name="brand" { (brand_options(None)) }
            }))
            (field("Model", "model", html! {
                input #firmware-model type="text" name="model" maxlength=(MAX_MODEL_LEN) required;
            }))
            (field("File name the phone asks for (empty: the file's)", "name", html! {
                input #firmware-name type="text" name="name" maxlength="128";
            }))
            (field("Image", "body", html! {
                input #firmware-file type="file" name="file" required;
            }))
            p.hint.wide {
                "At most 128 MiB, kept on every node. Uploading again for a model replaces its image; "
                "phones of that model are told its URL in their file."
            }
            div.form-actions {
                button.btn.btn-primary #firmware-submit type="submit" { "Upload firmware" }
            }
        }
    }
}
