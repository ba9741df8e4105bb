//! Snom: `{mac}.xml`, a `<settings>` document of `<phone-settings>` and `<functionKeys>`.

use std::fmt::Write as _;

use storage::provisioning::SipTransport;

use super::{Profile, xml};

pub(super) fn render(p: &Profile) -> String {
    let mut o = String::with_capacity(2048);
    // Writing to a String cannot fail.
    let mut set = |name: &str, idx: Option<u32>, value: &str| {
        let idx = idx.map(|i| format!(" idx=\"{i}\"")).unwrap_or_default();
        let _ = writeln!(o, "    <{name}{idx} perm=\"R\">{}</{name}>", xml(value));
    };
    let transport = match p.transport {
        SipTransport::Udp => "udp",
        SipTransport::Tcp => "tcp",
        SipTransport::Tls => "tls",
    };
    let registrar = format!("{}:{};transport={transport}", p.server, p.port);
    set("user_active", Some(1), "on");
    set("user_realname", Some(1), &p.display_name);
    set("user_idle_text", Some(1), p.line_name());
    set("user_name", Some(1), &p.extension);
    set("user_pname", Some(1), &p.extension);
    set("user_pass", Some(1), &p.secret);
    set("user_host", Some(1), &registrar);
    set("user_srtp", Some(1), if p.srtp() { "on" } else { "off" });
    set("ntp_server", None, &p.ntp_server);
    set("utc_offset", None, &p.utc_offset_secs.to_string());
    set("tone_scheme", None, "USA");
    set("tbook_url", None, &p.phonebook_url);
    set(
        "setting_server",
        None,
        &format!("{}{{mac}}.xml", p.provision_base),
    );
    set("update_policy", None, "auto_update");
    set("update_interval", None, "1440");
    if let Some((_, url)) = &p.firmware {
        set("firmware", None, url);
    }
    let mut keys = String::new();
    for (i, key) in p.line_keys.iter().enumerate() {
        let target = format!("blf <sip:{}@{}>", key.number, p.server);
        let _ = writeln!(
            keys,
            "    <fkey idx=\"{i}\" context=\"1\" label=\"{}\" perm=\"R\">{}</fkey>",
            xml(&key.name),
            xml(&target)
        );
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<settings>\n  <phone-settings e=\"2\">\n{o}  </phone-settings>\n  <functionKeys e=\"2\">\n{keys}  </functionKeys>\n</settings>\n"
    )
}
