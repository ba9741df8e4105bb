//! Yealink: `{mac}.cfg`, a `#!version:1.0.0.1` header and `key = value` lines (T4x/T5x firmware).

use std::fmt::Write as _;

use storage::provisioning::SipTransport;

use super::{Profile, line_value as v};

pub(super) fn render(p: &Profile) -> String {
    let mut o = String::with_capacity(2048);
    // Writing to a String cannot fail.
    let mut kv = |key: &str, value: &str| {
        let _ = writeln!(o, "{key} = {}", v(value));
    };
    let transport = match p.transport {
        SipTransport::Udp => "0",
        SipTransport::Tcp => "1",
        SipTransport::Tls => "2",
    };
    let port = p.port.to_string();
    kv("account.1.enable", "1");
    kv("account.1.label", p.line_name());
    kv("account.1.display_name", &p.display_name);
    kv("account.1.user_name", &p.extension);
    kv("account.1.auth_name", &p.extension);
    kv("account.1.password", &p.secret);
    kv("account.1.sip_server.1.address", &p.server);
    kv("account.1.sip_server.1.port", &port);
    kv("account.1.sip_server.1.transport_type", transport);
    kv(
        "account.1.srtp_encryption",
        if p.srtp() { "1" } else { "0" },
    );
    kv("local_time.time_zone", &p.offset_hours());
    kv("local_time.time_zone_name", &p.time_zone);
    kv("local_time.summer_time", "0");
    kv("local_time.ntp_server1", &p.ntp_server);
    kv("local_time.interval", "3600");
    kv("remote_phonebook.data.1.name", "Company");
    kv("remote_phonebook.data.1.url", &p.phonebook_url);
    // Line key 1 is the account; busy lamps follow from key 2.
    for (i, key) in p.line_keys.iter().enumerate() {
        let n = i + 2;
        kv(&format!("linekey.{n}.type"), "16");
        kv(&format!("linekey.{n}.line"), "1");
        kv(&format!("linekey.{n}.value"), &key.number);
        kv(&format!("linekey.{n}.label"), &key.name);
    }
    // Fetched again every day, so a reprovisioned secret reaches the phone.
    kv("auto_provision.repeat.enable", "1");
    kv("auto_provision.repeat.minutes", "1440");
    kv("auto_provision.server.url", &p.provision_base);
    if let Some((_, url)) = &p.firmware {
        kv("static.firmware.url", url);
    }
    format!(
        "#!version:1.0.0.1\n## {} {} for extension {}\n{o}",
        v(&p.model),
        p.mac,
        v(&p.extension)
    )
}
