//! Grandstream: `cfg{mac}.xml`, `<gs_provision>` with the P-values of GXP/GRP firmware.

use std::fmt::Write as _;

use storage::provisioning::SipTransport;

use super::{Profile, xml};

/// Multi-purpose keys with the classic P-value layout (mode P323.., account/name/value P301..):
/// the first seven.
const MAX_KEYS: usize = 7;

/// The POSIX `TZ` string for a fixed offset: POSIX counts west of Greenwich, so UTC+1 is `UTC-1`.
fn posix_tz(offset_secs: i32) -> String {
    let west = -offset_secs;
    let sign = if west < 0 { '-' } else { '+' };
    let abs = west.unsigned_abs();
    let (h, m) = (abs / 3600, abs % 3600 / 60);
    if m == 0 {
        format!("UTC{sign}{h}")
    } else {
        format!("UTC{sign}{h}:{m:02}")
    }
}

pub(super) fn render(p: &Profile) -> String {
    let mut o = String::with_capacity(2048);
    // Writing to a String cannot fail.
    let mut pv = |n: u32, value: &str| {
        let _ = writeln!(o, "    <P{n}>{}</P{n}>", xml(value));
    };
    let transport = match p.transport {
        SipTransport::Udp => "0",
        SipTransport::Tcp => "1",
        SipTransport::Tls => "2",
    };
    let server = format!("{}:{}", p.server, p.port);
    pv(271, "1"); // account active
    pv(270, p.line_name()); // account name
    pv(47, &server); // SIP server
    pv(35, &p.extension); // SIP user id
    pv(36, &p.extension); // authenticate id
    pv(34, &p.secret); // authenticate password
    pv(3, &p.display_name); // display name
    pv(130, transport); // SIP transport
    pv(183, if p.srtp() { "1" } else { "0" }); // SRTP: enabled but not forced
    pv(30, &p.ntp_server); // NTP server
    pv(64, "customize"); // time zone: the one below
    pv(246, &posix_tz(p.utc_offset_secs));
    pv(330, "1"); // phonebook XML download over HTTP(S)
    pv(331, &p.phonebook_url);
    for (i, key) in p.line_keys.iter().take(MAX_KEYS).enumerate() {
        let i = i as u32;
        pv(323 + i, "1"); // mode: busy lamp field
        pv(301 + 3 * i, "0"); // account 1
        pv(302 + 3 * i, &key.name);
        pv(303 + 3 * i, &key.number);
    }
    if let Some((_, url)) = &p.firmware {
        // The firmware directory, without the scheme; upgrade over HTTPS.
        let dir = url
            .rsplit_once('/')
            .map_or(url.as_str(), |(d, _)| d)
            .trim_start_matches("https://");
        pv(192, dir);
        pv(212, "2");
    }
    pv(237, p.provision_base.trim_start_matches("https://")); // config server path
    pv(194, "1"); // check for new configuration every day
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<gs_provision version=\"1\">\n  <mac>{}</mac>\n  <config version=\"1\">\n{o}  </config>\n</gs_provision>\n",
        xml(&p.mac)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn posix_offsets_count_west() {
        assert_eq!(super::posix_tz(3600), "UTC-1");
        assert_eq!(super::posix_tz(-5 * 3600), "UTC+5");
        assert_eq!(super::posix_tz(19_800), "UTC-5:30");
        assert_eq!(super::posix_tz(0), "UTC+0");
    }
}
