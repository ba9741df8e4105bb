//! Fanvil: `{mac}.cfg`, the `<<VOIP CONFIG FILE>>` text format: sections of `Key :value` lines.

use std::fmt::Write as _;

use storage::provisioning::SipTransport;

use super::{Profile, line_value as v};

pub(super) fn render(p: &Profile) -> String {
    let mut o = String::with_capacity(2048);
    // Writing to a String cannot fail.
    fn line(o: &mut String, key: &str, value: &str) {
        let _ = writeln!(o, "{key:<24}:{}", v(value));
    }
    let transport = match p.transport {
        SipTransport::Udp => "0",
        SipTransport::Tcp => "1",
        SipTransport::Tls => "3",
    };
    let port = p.port.to_string();
    o.push_str("<<VOIP CONFIG FILE>>Version:2.0000000000\n\n<SIP CONFIG MODULE>\n");
    line(&mut o, "--SIP Line List--", "");
    line(&mut o, "SIP1 Phone Number", &p.extension);
    line(&mut o, "SIP1 Display Name", &p.display_name);
    line(&mut o, "SIP1 Sip Name", p.line_name());
    line(&mut o, "SIP1 Register Addr", &p.server);
    line(&mut o, "SIP1 Register Port", &port);
    line(&mut o, "SIP1 Register User", &p.extension);
    line(&mut o, "SIP1 Register Pswd", &p.secret);
    line(&mut o, "SIP1 Register TTL", "3600");
    line(&mut o, "SIP1 Enable Reg", "1");
    line(&mut o, "SIP1 Transport", transport);
    line(&mut o, "SIP1 Enable Srtp", if p.srtp() { "1" } else { "0" });
    o.push_str("\n<TELE CONFIG MODULE>\n");
    line(&mut o, "SNTP Server", &p.ntp_server);
    line(&mut o, "Time Zone", &p.offset_hours());
    line(&mut o, "Time Zone Name", &p.time_zone);
    line(&mut o, "Enable DST", "0");
    o.push_str("\n<PHONE FEATURE MODULE>\n");
    line(&mut o, "Remote Phonebook Name1", "Company");
    line(&mut o, "Remote Phonebook URL1", &p.phonebook_url);
    o.push_str("\n<DSS CONFIG MODULE>\n");
    for (i, key) in p.line_keys.iter().enumerate() {
        let n = i + 1;
        // Type 1 with `/b`: a busy lamp for the number on line 1.
        line(&mut o, &format!("Fkey{n} Type"), "1");
        line(
            &mut o,
            &format!("Fkey{n} Value"),
            &format!("{}@1/b", key.number),
        );
        line(&mut o, &format!("Fkey{n} Title"), &key.name);
    }
    o.push_str("\n<AUTOUPDATE CONFIG MODULE>\n");
    line(&mut o, "Download Protocol", "5");
    line(&mut o, "Download CommonConf", "0");
    line(
        &mut o,
        "Auto Image Url",
        p.firmware.as_ref().map_or("", |(_, url)| url),
    );
    line(&mut o, "Download Mode", "1");
    line(&mut o, "Download Interval", "1");
    o.push_str("<<END OF FILE>>\n");
    o
}
