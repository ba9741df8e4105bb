//! Polycom (UC Software): `{mac}.cfg`, the master configuration naming the files to load, and
//! `{mac}-pbx.cfg`, the settings as attributes (`reg.1.*`) of one element.

use std::fmt::Write as _;

use storage::provisioning::SipTransport;

use super::{Part, Profile, file_name, xml};

/// The master configuration: load the settings file (and the firmware, when there is one).
pub(super) fn master(p: &Profile) -> String {
    let settings = file_name(p.brand, Part::PolycomSettings, &p.mac);
    let firmware = p.firmware.as_ref().map_or("", |(name, _)| name.as_str());
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<APPLICATION APP_FILE_PATH=\"{}\" CONFIG_FILES=\"{}\" MISC_FILES=\"\" LOG_FILE_DIRECTORY=\"\" OVERRIDES_DIRECTORY=\"\" CONTACTS_DIRECTORY=\"\" LICENSE_DIRECTORY=\"\"/>\n",
        xml(firmware),
        xml(&settings)
    )
}

/// The settings file.
pub(super) fn settings(p: &Profile) -> String {
    let mut o = String::with_capacity(2048);
    // Writing to a String cannot fail.
    let mut attr = |name: &str, value: &str| {
        let _ = write!(o, "\n    {name}=\"{}\"", xml(value));
    };
    let transport = match p.transport {
        SipTransport::Udp => "UDPOnly",
        SipTransport::Tcp => "TCPOnly",
        SipTransport::Tls => "TLS",
    };
    attr("reg.1.address", &p.extension);
    attr("reg.1.auth.userId", &p.extension);
    attr("reg.1.auth.password", &p.secret);
    attr("reg.1.displayName", &p.display_name);
    attr("reg.1.label", p.line_name());
    attr("reg.1.server.1.address", &p.server);
    attr("reg.1.server.1.port", &p.port.to_string());
    attr("reg.1.server.1.transport", transport);
    attr("reg.1.server.1.expires", "3600");
    attr("sec.srtp.enable", if p.srtp() { "1" } else { "0" });
    attr("sec.srtp.offer", if p.srtp() { "1" } else { "0" });
    attr("tcpIpApp.sntp.address", &p.ntp_server);
    attr("tcpIpApp.sntp.gmtOffset", &p.utc_offset_secs.to_string());
    attr("tcpIpApp.sntp.daylightSavings.enable", "0");
    attr("dir.corp.address", &p.phonebook_url);
    attr("prov.polling.enabled", "1");
    attr("prov.polling.mode", "abs");
    attr("prov.polling.time", "03:00");
    for (i, key) in p.line_keys.iter().enumerate() {
        let n = i + 1;
        attr(&format!("attendant.resourceList.{n}.address"), &key.number);
        attr(&format!("attendant.resourceList.{n}.label"), &key.name);
        attr(&format!("attendant.resourceList.{n}.type"), "normal");
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<PHONE_CONFIG>\n  <ALL{o}\n  />\n</PHONE_CONFIG>\n"
    )
}
