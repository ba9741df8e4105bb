//! Provisioning files for desk phones, one writer per brand: pure functions of a [`Profile`] (what
//! the phone must know) to the text of the brand's own file.
//!
//! | brand | files (`{mac}` = 12 lowercase hex digits) | format |
//! |---|---|---|
//! | Yealink | `{mac}.cfg` | `#!version:1.0.0.1`, then `key = value` lines |
//! | Grandstream | `cfg{mac}.xml` | `<gs_provision>` with P-values |
//! | Snom | `{mac}.xml` | `<settings>` XML |
//! | Fanvil | `{mac}.cfg` | `<<VOIP CONFIG FILE>>` sections of `Key :value` lines |
//! | Polycom | `{mac}.cfg` (master), `{mac}-pbx.cfg` (settings) | XML, settings as `reg.1.*` attributes |
//!
//! Every value is escaped for its format: XML text and attributes through [`xml`], and line-based
//! files lose control characters ([`line_value`]), so a label with a line break cannot add a key.
//! The shapes follow the makers' published templates; they were not tried on real phones.

mod fanvil;
mod grandstream;
mod polycom;
mod snom;
mod yealink;

use std::net::SocketAddr;

use storage::provisioning::{Brand, SipTransport, normalize_mac};

/// Where this node's SIP listens, from its `[sip]` section: the ports phones are told.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SipListeners {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
}

impl SipListeners {
    pub fn of(sip: &crate::config::SipSection) -> Self {
        Self {
            udp: sip.udp,
            tcp: sip.tcp,
            tls: sip.tls,
        }
    }

    /// The port for `transport`: the listener's, or the protocol's default.
    pub(crate) fn port(&self, transport: SipTransport) -> u16 {
        let (addr, default) = match transport {
            SipTransport::Udp => (self.udp, 5060),
            SipTransport::Tcp => (self.tcp, 5060),
            SipTransport::Tls => (self.tls, 5061),
        };
        addr.map_or(default, |a| a.port())
    }
}

/// A busy-lamp key: the extension it watches, and the name shown beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineKey {
    pub number: String,
    pub name: String,
}

/// What a phone's configuration says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Profile {
    /// 12 lowercase hex digits.
    pub mac: String,
    pub brand: Brand,
    pub model: String,
    /// The SIP server: the VIP (or, without one, the node's own SIP address).
    pub server: String,
    pub port: u16,
    pub transport: SipTransport,
    pub realm: String,
    /// The extension's number, also its SIP and auth user.
    pub extension: String,
    pub secret: String,
    pub display_name: String,
    /// The device's label (the line's name on the screen); the display name when empty.
    pub label: String,
    /// The cluster's time zone (IANA name) and its offset from UTC now, in seconds.
    pub time_zone: String,
    pub utc_offset_secs: i32,
    pub ntp_server: String,
    pub line_keys: Vec<LineKey>,
    /// The remote phonebook, credentials included.
    pub phonebook_url: String,
    /// Where the phone fetches its files again (a directory URL ending in `/`).
    pub provision_base: String,
    /// The firmware for this model, when one was uploaded: its file name and URL.
    pub firmware: Option<(String, String)>,
}

impl Profile {
    /// The name on the phone's line: the label, or else the display name.
    pub(crate) fn line_name(&self) -> &str {
        if self.label.is_empty() {
            &self.display_name
        } else {
            &self.label
        }
    }

    /// SDES-SRTP: offered only over TLS, the only transport the PBX takes it on.
    pub(crate) fn srtp(&self) -> bool {
        self.transport == SipTransport::Tls
    }

    /// The offset from UTC as `+H` or `+H:MM` (Yealink's and Fanvil's notation).
    pub(crate) fn offset_hours(&self) -> String {
        let sign = if self.utc_offset_secs < 0 { '-' } else { '+' };
        let abs = self.utc_offset_secs.unsigned_abs();
        let (h, m) = (abs / 3600, abs % 3600 / 60);
        if m == 0 {
            format!("{sign}{h}")
        } else {
            format!("{sign}{h}:{m:02}")
        }
    }
}

/// Which of a brand's files a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The file the phone asks for first (for Polycom, the master configuration).
    Main,
    /// Polycom's settings file, which its master configuration names.
    PolycomSettings,
}

/// The name of `brand`'s file `part` for the phone with MAC `mac`.
pub(crate) fn file_name(brand: Brand, part: Part, mac: &str) -> String {
    match (brand, part) {
        (Brand::Grandstream, _) => format!("cfg{mac}.xml"),
        (Brand::Snom, _) => format!("{mac}.xml"),
        (Brand::Polycom, Part::PolycomSettings) => format!("{mac}-pbx.cfg"),
        (Brand::Yealink | Brand::Fanvil | Brand::Polycom, _) => format!("{mac}.cfg"),
    }
}

/// The parts each brand serves.
fn parts(brand: Brand) -> &'static [Part] {
    match brand {
        Brand::Polycom => &[Part::Main, Part::PolycomSettings],
        _ => &[Part::Main],
    }
}

/// The MAC a file name is for, whatever the brand (`{mac}.cfg`, `cfg{mac}.xml`, `{mac}.xml`,
/// `{mac}-….cfg`, and Grandstream's older binary `cfg{mac}`): its first 12 hex digits after an
/// optional `cfg`, in either case (Snom asks in capitals). `None` for a name with no MAC where
/// one belongs.
pub(crate) fn mac_of_file(file: &str) -> Option<String> {
    let rest = file.strip_prefix("cfg").unwrap_or(file);
    let head = rest.get(..12)?;
    let tail = &rest[12..];
    let ends = tail.is_empty() || tail.starts_with(['.', '-']);
    if !head.bytes().all(|b| b.is_ascii_hexdigit()) || !ends {
        return None;
    }
    normalize_mac(head).ok()
}

/// The part of `brand`'s files that `file` is for the phone `mac`, if it is one.
pub(crate) fn part_of(brand: Brand, mac: &str, file: &str) -> Option<Part> {
    let lower = file.to_ascii_lowercase();
    parts(brand)
        .iter()
        .copied()
        .find(|p| file_name(brand, *p, mac) == lower)
}

/// Whether `file` is a brand's common file, which phones ask for at every boot and which names
/// no phone: Yealink's `y000000000044.cfg`, Polycom's `000000000000.cfg`, Snom's
/// `snomD785.htm`, Fanvil's `f0X4U.cfg`, Grandstream's `cfg.xml`. Not served; not a guess.
pub(crate) fn is_common_file(file: &str) -> bool {
    let f = file.to_ascii_lowercase();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let word = |s: &str| {
        (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    f.strip_prefix('y')
        .and_then(|r| r.strip_suffix(".cfg"))
        .is_some_and(|r| r.len() == 12 && digits(r))
        || f.strip_prefix("000000000000")
            .is_some_and(|r| r == ".cfg" || r.starts_with('-'))
        || f.strip_prefix("snom")
            .and_then(|r| r.strip_suffix(".htm").or_else(|| r.strip_suffix(".xml")))
            .is_some_and(word)
        || f.strip_prefix("f0")
            .and_then(|r| r.strip_suffix(".cfg"))
            .is_some_and(word)
        || f == "cfg.xml"
}

/// The text of `brand`'s file `part` for `p`.
pub(crate) fn render(part: Part, p: &Profile) -> String {
    match (p.brand, part) {
        (Brand::Yealink, _) => yealink::render(p),
        (Brand::Grandstream, _) => grandstream::render(p),
        (Brand::Snom, _) => snom::render(p),
        (Brand::Fanvil, _) => fanvil::render(p),
        (Brand::Polycom, Part::Main) => polycom::master(p),
        (Brand::Polycom, Part::PolycomSettings) => polycom::settings(p),
    }
}

/// The `Content-Type` of a brand's files.
pub(crate) fn content_type(brand: Brand) -> &'static str {
    match brand {
        Brand::Grandstream | Brand::Snom | Brand::Polycom => "text/xml; charset=utf-8",
        Brand::Yealink | Brand::Fanvil => "text/plain; charset=utf-8",
    }
}

/// XML text or attribute value: `&`, `<`, `>`, `"` and `'` escaped; characters XML 1.0 cannot
/// hold dropped, and line breaks, which no value here needs.
pub(crate) fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A value in a line-based file: control characters (line breaks above all) dropped, so that a
/// value can never start a line of its own.
pub(crate) fn line_value(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// A URL's userinfo part: everything but unreserved characters percent-encoded.
pub(crate) fn userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
