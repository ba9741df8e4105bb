use std::collections::BTreeMap;

use super::*;

/// A value that tries to break out of every format: a line break with a key after it, markup,
/// entities and quotes.
const NASTY: &str = "Front\ndesk\r\naccount.1.password = stolen <b>&amp;\"'</b>";

fn profile(brand: Brand) -> Profile {
    Profile {
        mac: "001565aabbcc".into(),
        brand,
        model: "T54W".into(),
        server: "198.18.0.100".into(),
        port: 5060,
        transport: SipTransport::Udp,
        realm: "pbx.example".into(),
        extension: "1001".into(),
        secret: "Gq7RkT2mZp9XvW4sLb8N".into(),
        display_name: "Ann <\"Boss\"> & Co".into(),
        label: NASTY.into(),
        time_zone: "Europe/Berlin".into(),
        utc_offset_secs: 3600,
        ntp_server: "198.18.0.100".into(),
        line_keys: vec![
            LineKey {
                number: "1002".into(),
                name: NASTY.into(),
            },
            LineKey {
                number: "1003".into(),
                name: "Bob".into(),
            },
        ],
        phonebook_url: "https://1001:Gq7RkT2mZp9XvW4sLb8N@198.18.0.100:8443/phonebook/x.xml".into(),
        provision_base: "https://198.18.0.100:8443/provision/tok/".into(),
        firmware: None,
    }
}

/// One element of a parsed document: its path from the root, attributes and text (unescaped).
#[derive(Debug, Clone, Default)]
struct Element {
    path: String,
    attrs: BTreeMap<String, String>,
    text: String,
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let entity_end = rest[i..].find(';').expect("an entity ends with ;") + i;
        out.push(match &rest[i..=entity_end] {
            "&amp;" => '&',
            "&lt;" => '<',
            "&gt;" => '>',
            "&quot;" => '"',
            "&apos;" => '\'',
            other => panic!("unknown entity {other}"),
        });
        rest = &rest[entity_end + 1..];
    }
    out.push_str(rest);
    out
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// Parses `doc` strictly enough to catch what escaping must prevent (a stray `<`, `&` or quote,
/// an unclosed or misnested element, two roots, text outside the root): every element in
/// document order.
fn parse_xml(doc: &str) -> Vec<Element> {
    let body = doc.strip_prefix("<?xml ").expect("an XML declaration");
    let body = &body[body.find("?>").expect("declaration closed") + 2..];
    let mut stack: Vec<usize> = Vec::new();
    let mut out: Vec<Element> = Vec::new();
    let mut rest = body;
    let mut roots = 0;
    loop {
        let open = rest.find('<');
        let text = &rest[..open.unwrap_or(rest.len())];
        assert!(!text.contains('>'), "stray > in {text:?}");
        let text = unescape(text);
        match stack.last() {
            Some(&i) => out[i].text.push_str(&text),
            None => assert_eq!(text.trim(), "", "text outside the root"),
        }
        let Some(open) = open else { break };
        rest = &rest[open + 1..];
        if let Some(after) = rest.strip_prefix('/') {
            let close = after.find('>').expect("end tag closed");
            let name = &after[..close];
            let top = stack.pop().expect("an open element");
            assert!(
                out[top].path.ends_with(&format!("/{name}")),
                "closing {name}"
            );
            rest = &after[close + 1..];
            continue;
        }
        // A start tag: name, then attributes `name="value"`, then `>` or `/>`.
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .expect("a tag name");
        let name = &rest[..name_end];
        assert!(name_ok(name), "tag name {name:?}");
        let parent = stack.last().map_or(String::new(), |&i| out[i].path.clone());
        if stack.is_empty() {
            roots += 1;
            assert_eq!(roots, 1, "one root element");
        }
        let mut el = Element {
            path: format!("{parent}/{name}"),
            ..Element::default()
        };
        rest = &rest[name_end..];
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix("/>") {
                rest = r;
                out.push(el);
                break;
            }
            if let Some(r) = rest.strip_prefix('>') {
                rest = r;
                out.push(el);
                stack.push(out.len() - 1);
                break;
            }
            let eq = rest.find('=').expect("an attribute");
            let attr = rest[..eq].trim();
            assert!(name_ok(attr), "attribute name {attr:?}");
            let value = rest[eq + 1..].strip_prefix('"').expect("a quoted value");
            let end = value.find('"').expect("a closing quote");
            assert!(!value[..end].contains('<'), "< in an attribute");
            let fresh = el.attrs.insert(attr.to_owned(), unescape(&value[..end]));
            assert!(fresh.is_none(), "attribute {attr} twice");
            rest = &value[end + 1..];
        }
    }
    assert!(stack.is_empty(), "unclosed elements");
    assert_eq!(roots, 1, "a root element");
    out
}

fn text_of<'a>(els: &'a [Element], path: &str) -> Vec<&'a str> {
    els.iter()
        .filter(|e| e.path == path)
        .map(|e| e.text.as_str())
        .collect()
}

/// `key = value` (Yealink) or `Key :value` (Fanvil) lines: every line must be blank, a comment,
/// a section header, or one key with its value.
fn parse_lines(doc: &str, sep: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in doc.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with('<') {
            continue;
        }
        let (k, v) = line
            .split_once(sep)
            .unwrap_or_else(|| panic!("not a key line: {line:?}"));
        let k = k.trim().to_owned();
        assert!(
            k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" .-_".contains(&b)),
            "key {k:?}"
        );
        assert!(
            map.insert(k.clone(), v.trim().to_owned()).is_none(),
            "{k} twice"
        );
    }
    map
}

fn flat(s: &str) -> String {
    line_value(s)
}

#[test]
fn yealink_parses_back_with_credentials_server_and_keys() {
    let p = profile(Brand::Yealink);
    let doc = render(Part::Main, &p);
    assert!(doc.starts_with("#!version:1.0.0.1\n"), "{doc}");
    let kv = parse_lines(&doc, " = ");
    assert_eq!(kv["account.1.user_name"], "1001");
    assert_eq!(kv["account.1.auth_name"], "1001");
    assert_eq!(kv["account.1.password"], p.secret);
    assert_eq!(kv["account.1.sip_server.1.address"], "198.18.0.100");
    assert_eq!(kv["account.1.sip_server.1.port"], "5060");
    assert_eq!(kv["account.1.sip_server.1.transport_type"], "0");
    assert_eq!(kv["account.1.srtp_encryption"], "0");
    assert_eq!(kv["account.1.display_name"], p.display_name);
    assert_eq!(kv["account.1.label"], flat(NASTY));
    assert_eq!(kv["local_time.time_zone"], "+1");
    assert_eq!(kv["local_time.ntp_server1"], "198.18.0.100");
    assert_eq!(kv["remote_phonebook.data.1.url"], p.phonebook_url);
    assert_eq!(kv["linekey.2.type"], "16");
    assert_eq!(kv["linekey.2.value"], "1002");
    assert_eq!(kv["linekey.3.value"], "1003");
    assert_eq!(kv["linekey.3.label"], "Bob");
    assert!(!kv.contains_key("static.firmware.url"));
    // The label's line break added no key: the password is the one the PBX wrote, once.
    let starts = |k: &str| doc.lines().filter(|l| l.starts_with(k)).count();
    assert_eq!(starts("account.1.password"), 1, "{doc}");
    assert!(!doc.contains("stolen\n"));
    let keys_with_stolen: Vec<&String> = kv
        .iter()
        .filter(|(_, v)| v.contains("stolen"))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys_with_stolen,
        ["account.1.label", "linekey.2.label"],
        "only the label values hold it"
    );
}

#[test]
fn fanvil_parses_back_with_credentials_and_server() {
    let mut p = profile(Brand::Fanvil);
    p.transport = SipTransport::Tls;
    p.port = 5061;
    p.firmware = Some((
        "x4u.z".into(),
        "https://h/provision/t/firmware/x4u.z".into(),
    ));
    let doc = render(Part::Main, &p);
    assert!(doc.starts_with("<<VOIP CONFIG FILE>>"));
    assert!(doc.ends_with("<<END OF FILE>>\n"));
    let kv = parse_lines(&doc, ":");
    assert_eq!(kv["SIP1 Register User"], "1001");
    assert_eq!(kv["SIP1 Register Pswd"], p.secret);
    assert_eq!(kv["SIP1 Register Addr"], "198.18.0.100");
    assert_eq!(kv["SIP1 Register Port"], "5061");
    assert_eq!(kv["SIP1 Transport"], "3");
    assert_eq!(kv["SIP1 Enable Srtp"], "1");
    assert_eq!(kv["SIP1 Sip Name"], flat(NASTY));
    assert_eq!(kv["Fkey1 Value"], "1002@1/b");
    assert_eq!(kv["Auto Image Url"], "https://h/provision/t/firmware/x4u.z");
    let starts = |k: &str| doc.lines().filter(|l| l.starts_with(k)).count();
    assert_eq!(starts("SIP1 Register Pswd"), 1, "{doc}");
}

#[test]
fn grandstream_is_well_formed_with_p_values() {
    let p = profile(Brand::Grandstream);
    let doc = render(Part::Main, &p);
    let els = parse_xml(&doc);
    assert_eq!(els[0].path, "/gs_provision");
    assert_eq!(text_of(&els, "/gs_provision/mac"), ["001565aabbcc"]);
    let p_value = |n: u32| text_of(&els, &format!("/gs_provision/config/P{n}"));
    assert_eq!(p_value(47), ["198.18.0.100:5060"]);
    assert_eq!(p_value(35), ["1001"]);
    assert_eq!(p_value(36), ["1001"]);
    assert_eq!(p_value(34), [p.secret.as_str()]);
    assert_eq!(p_value(3), [p.display_name.as_str()]);
    assert_eq!(p_value(270), [flat(NASTY).as_str()]);
    assert_eq!(p_value(246), ["UTC-1"]);
    assert_eq!(p_value(331), [p.phonebook_url.as_str()]);
    assert_eq!(p_value(323), ["1"]);
    assert_eq!(p_value(303), ["1002"]);
    assert_eq!(p_value(306), ["1003"]);
    assert!(p_value(192).is_empty());
    // Each P-value once.
    let mut names: Vec<&str> = els.iter().map(|e| e.path.as_str()).collect();
    let n = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), n);
}

#[test]
fn snom_is_well_formed_with_credentials_and_keys() {
    let mut p = profile(Brand::Snom);
    p.transport = SipTransport::Tcp;
    let doc = render(Part::Main, &p);
    let els = parse_xml(&doc);
    let setting = |name: &str| text_of(&els, &format!("/settings/phone-settings/{name}"));
    assert_eq!(setting("user_name"), ["1001"]);
    assert_eq!(setting("user_pass"), [p.secret.as_str()]);
    assert_eq!(setting("user_host"), ["198.18.0.100:5060;transport=tcp"]);
    assert_eq!(setting("user_realname"), [p.display_name.as_str()]);
    assert_eq!(setting("user_srtp"), ["off"]);
    assert_eq!(setting("utc_offset"), ["3600"]);
    assert_eq!(setting("tbook_url"), [p.phonebook_url.as_str()]);
    assert_eq!(
        setting("setting_server"),
        ["https://198.18.0.100:8443/provision/tok/{mac}.xml"]
    );
    let keys: Vec<&Element> = els
        .iter()
        .filter(|e| e.path == "/settings/functionKeys/fkey")
        .collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].text, "blf <sip:1002@198.18.0.100>");
    assert_eq!(keys[0].attrs["label"], flat(NASTY));
    assert_eq!(keys[1].attrs["idx"], "1");
}

#[test]
fn polycom_master_names_the_settings_which_carry_reg_1() {
    let mut p = profile(Brand::Polycom);
    p.firmware = Some((
        "firmware/001565aabbcc/3111-48300-001.sip.ld".into(),
        "unused".into(),
    ));
    let master = parse_xml(&render(Part::Main, &p));
    assert_eq!(master[0].path, "/APPLICATION");
    assert_eq!(master[0].attrs["CONFIG_FILES"], "001565aabbcc-pbx.cfg");
    assert_eq!(
        master[0].attrs["APP_FILE_PATH"],
        "firmware/001565aabbcc/3111-48300-001.sip.ld"
    );
    assert_eq!(
        part_of(Brand::Polycom, &p.mac, &master[0].attrs["CONFIG_FILES"]),
        Some(Part::PolycomSettings)
    );
    let els = parse_xml(&render(Part::PolycomSettings, &p));
    let all = els
        .iter()
        .find(|e| e.path == "/PHONE_CONFIG/ALL")
        .expect("the settings element");
    assert_eq!(all.attrs["reg.1.address"], "1001");
    assert_eq!(all.attrs["reg.1.auth.userId"], "1001");
    assert_eq!(all.attrs["reg.1.auth.password"], p.secret);
    assert_eq!(all.attrs["reg.1.server.1.address"], "198.18.0.100");
    assert_eq!(all.attrs["reg.1.server.1.port"], "5060");
    assert_eq!(all.attrs["reg.1.server.1.transport"], "UDPOnly");
    assert_eq!(all.attrs["reg.1.displayName"], p.display_name);
    assert_eq!(all.attrs["reg.1.label"], flat(NASTY));
    assert_eq!(all.attrs["tcpIpApp.sntp.gmtOffset"], "3600");
    assert_eq!(all.attrs["attendant.resourceList.2.address"], "1003");
    assert_eq!(all.attrs["dir.corp.address"], p.phonebook_url);
}

#[test]
fn tls_turns_srtp_on_everywhere() {
    for brand in Brand::ALL {
        let mut p = profile(brand);
        p.transport = SipTransport::Tls;
        let part = if brand == Brand::Polycom {
            Part::PolycomSettings
        } else {
            Part::Main
        };
        let doc = render(part, &p);
        let on = [
            "account.1.srtp_encryption = 1",
            "<P183>1</P183>",
            "<user_srtp idx=\"1\" perm=\"R\">on</user_srtp>",
            "SIP1 Enable Srtp        :1",
            "sec.srtp.enable=\"1\"",
        ];
        assert!(on.iter().any(|s| doc.contains(s)), "{brand:?}: {doc}");
    }
}

#[test]
fn file_names_carry_the_mac_and_belong_to_one_brand() {
    let mac = "001565aabbcc";
    assert_eq!(
        file_name(Brand::Yealink, Part::Main, mac),
        "001565aabbcc.cfg"
    );
    assert_eq!(
        file_name(Brand::Grandstream, Part::Main, mac),
        "cfg001565aabbcc.xml"
    );
    assert_eq!(file_name(Brand::Snom, Part::Main, mac), "001565aabbcc.xml");
    for name in [
        "001565aabbcc.cfg",
        "cfg001565aabbcc.xml",
        "001565AABBCC.xml",
        "001565aabbcc-pbx.cfg",
        "001565aabbcc-phone.cfg",
        "cfg001565aabbcc",
    ] {
        assert_eq!(mac_of_file(name).as_deref(), Some(mac), "{name}");
    }
    for name in [
        "y000000000044.cfg",
        "001565aabbc.cfg",
        "001565aabbccd.cfg",
        "cfg.xml",
        "",
        "é001565aabbcc.cfg",
        "010000000000.cfg",
        "000000000000.cfg",
    ] {
        assert_eq!(mac_of_file(name), None, "{name}");
    }
    assert_eq!(
        part_of(Brand::Yealink, mac, "001565aabbcc.cfg"),
        Some(Part::Main)
    );
    assert_eq!(
        part_of(Brand::Snom, mac, "001565AABBCC.xml"),
        Some(Part::Main)
    );
    assert_eq!(part_of(Brand::Yealink, mac, "cfg001565aabbcc.xml"), None);
    assert_eq!(part_of(Brand::Grandstream, mac, "001565aabbcc.xml"), None);
    assert_eq!(part_of(Brand::Yealink, mac, "001565aabbcc-pbx.cfg"), None);
    assert_eq!(part_of(Brand::Polycom, mac, "001565aabbcc-phone.cfg"), None);
    assert_eq!(part_of(Brand::Grandstream, mac, "cfg001565aabbcc"), None);
    assert_eq!(part_of(Brand::Yealink, mac, "001565aabbcd.cfg"), None);
    for common in [
        "y000000000044.cfg",
        "000000000000.cfg",
        "000000000000-directory.xml",
        "snomD785.htm",
        "f0X4U.cfg",
        "cfg.xml",
    ] {
        assert!(is_common_file(common), "{common}");
    }
    for not in ["y0000000000.cfg", "001565aabbcc.cfg", "snom.htm", "passwd"] {
        assert!(!is_common_file(not), "{not}");
    }
}

#[test]
fn offsets_and_userinfo_are_written_as_phones_read_them() {
    let mut p = profile(Brand::Yealink);
    assert_eq!(p.offset_hours(), "+1");
    p.utc_offset_secs = -(3 * 3600 + 1800);
    assert_eq!(p.offset_hours(), "-3:30");
    p.utc_offset_secs = 0;
    assert_eq!(p.offset_hours(), "+0");
    assert_eq!(userinfo("a b:c@d/é"), "a%20b%3Ac%40d%2F%C3%A9");
    assert_eq!(userinfo("Gq7-_.~"), "Gq7-_.~");
    assert_eq!(xml("a\n<&>\"'\u{1}b"), "a&lt;&amp;&gt;&quot;&apos;b");
    assert_eq!(content_type(Brand::Yealink), "text/plain; charset=utf-8");
}
