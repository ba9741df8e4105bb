//! The REGISTER `Contact` header: `*`, or a list of `name-addr`/`addr-spec` entries with parameters.
//!
//! rsip types one contact per header; phones put several in one header separated by commas, and commas
//! also occur inside quoted display names and URIs. This parser splits on commas only outside quotes and
//! angle brackets and keeps the URI text exactly as the phone wrote it.

/// Longest Contact URI we store.
const MAX_URI_LEN: usize = 512;
/// Most contacts one REGISTER may carry.
pub(crate) const MAX_CONTACTS_IN_REQUEST: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ContactList {
    /// `Contact: *` (valid only with `Expires: 0`).
    Star,
    Contacts(Vec<ContactSpec>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContactSpec {
    /// The URI without angle brackets.
    pub uri: String,
    /// `expires` parameter in seconds.
    pub expires: Option<u32>,
    /// `q` in thousandths.
    pub q: Option<u16>,
    /// `+sip.instance`, with its quotes removed.
    pub instance: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ContactError(pub &'static str);

/// Parses every `Contact` header value of a REGISTER (several headers or one with commas).
pub(crate) fn parse_contacts<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<ContactList, ContactError> {
    let mut specs = Vec::new();
    let mut star = false;
    for value in values {
        for item in split_top_level(value)? {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            if item == "*" {
                star = true;
                continue;
            }
            specs.push(parse_one(item)?);
            if specs.len() > MAX_CONTACTS_IN_REQUEST {
                return Err(ContactError("too many contacts in one request"));
            }
        }
    }
    match (star, specs.is_empty()) {
        (true, true) => Ok(ContactList::Star),
        (true, false) => Err(ContactError("Contact * must be the only contact")),
        (false, _) => Ok(ContactList::Contacts(specs)),
    }
}

/// Splits on commas that are outside double quotes and angle brackets.
fn split_top_level(value: &str) -> Result<Vec<&str>, ContactError> {
    let mut out = Vec::new();
    let (mut in_quotes, mut in_angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => in_angle = true,
            '>' if !in_quotes => in_angle = false,
            ',' if !in_quotes && !in_angle => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_quotes || in_angle {
        return Err(ContactError(
            "unbalanced quotes or angle brackets in Contact",
        ));
    }
    out.push(&value[start..]);
    Ok(out)
}

fn parse_one(item: &str) -> Result<ContactSpec, ContactError> {
    // name-addr: [display-name] <uri> *(;param); addr-spec: uri *(;param) where params follow the URI.
    let (uri, params) = if let Some(open) = find_unquoted(item, '<') {
        let close = item[open..]
            .find('>')
            .map(|c| open + c)
            .ok_or(ContactError("missing '>' in Contact"))?;
        (&item[open + 1..close], &item[close + 1..])
    } else {
        // Without brackets, URI parameters are impossible to tell from header parameters; RFC 3261 §20
        // says they are header parameters.
        match item.find(';') {
            Some(semi) => (&item[..semi], &item[semi..]),
            None => (item, ""),
        }
    };
    let uri = uri.trim();
    let lower = uri.to_ascii_lowercase();
    if !(lower.starts_with("sip:") || lower.starts_with("sips:")) {
        return Err(ContactError("Contact URI must be sip: or sips:"));
    }
    if uri.len() > MAX_URI_LEN || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ContactError("malformed Contact URI"));
    }
    let mut spec = ContactSpec {
        uri: uri.to_owned(),
        expires: None,
        q: None,
        instance: None,
    };
    for param in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (param, None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("expires", Some(v)) => {
                // Out-of-range values are clamped by the registrar; garbage is an error.
                let secs: u64 = v
                    .parse()
                    .map_err(|_| ContactError("Contact expires is not a number"))?;
                spec.expires = Some(u32::try_from(secs).unwrap_or(u32::MAX));
            }
            ("q", Some(v)) => spec.q = Some(parse_q(v)?),
            ("+sip.instance", Some(v)) => spec.instance = Some(v.trim_matches('"').to_owned()),
            _ => {}
        }
    }
    Ok(spec)
}

fn find_unquoted(s: &str, needle: char) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c == needle && !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_q(v: &str) -> Result<u16, ContactError> {
    const BAD: ContactError = ContactError("q must be between 0 and 1 with at most 3 decimals");
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD);
    }
    let thousandths: u16 = format!("{frac:0<3}").parse().map_err(|_| BAD)?;
    match int {
        "0" => Ok(thousandths),
        "1" if thousandths == 0 => Ok(1000),
        _ => Err(BAD),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(v: &[&str]) -> Vec<ContactSpec> {
        match parse_contacts(v.iter().copied()).unwrap() {
            ContactList::Contacts(c) => c,
            ContactList::Star => panic!("star"),
        }
    }

    #[test]
    fn parses_name_addr_lists_with_commas_in_quotes() {
        let c = specs(&[
            r#""Smith, John" <sip:1001@198.18.0.20:5062;transport=tcp>;expires=600;q=0.7, <sip:1001@198.18.0.21>;+sip.instance="<urn:uuid:abc>""#,
        ]);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].uri, "sip:1001@198.18.0.20:5062;transport=tcp");
        assert_eq!(c[0].expires, Some(600));
        assert_eq!(c[0].q, Some(700));
        assert_eq!(c[1].instance.as_deref(), Some("<urn:uuid:abc>"));
    }

    #[test]
    fn addr_spec_params_are_header_params() {
        let c = specs(&["sip:1001@198.18.0.20:5060;expires=0"]);
        assert_eq!(c[0].uri, "sip:1001@198.18.0.20:5060");
        assert_eq!(c[0].expires, Some(0));
    }

    #[test]
    fn star_must_stand_alone() {
        assert_eq!(parse_contacts(["*"]).unwrap(), ContactList::Star);
        assert!(parse_contacts(["*, <sip:a@b>"]).is_err());
        assert!(parse_contacts(["*", "<sip:a@b>"]).is_err());
    }

    #[test]
    fn bad_contacts_are_refused() {
        for bad in [
            "<sip:a@b",
            "\"unterminated <sip:a@b>",
            "<http://example.com>",
            "<sip:a@b>;q=1.5",
            "<sip:a@b>;q=0.1234",
            "<sip:a@b>;expires=soon",
        ] {
            assert!(parse_contacts([bad]).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..40).map(|i| format!("<sip:a{i}@b>")).collect();
        assert!(parse_contacts([many.join(",").as_str()]).is_err());
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_q("1").unwrap(), 1000);
        assert_eq!(parse_q("1.000").unwrap(), 1000);
        assert_eq!(parse_q("0.5").unwrap(), 500);
        assert_eq!(parse_q("0").unwrap(), 0);
        assert!(parse_q("1.001").is_err());
        assert!(parse_q("2").is_err());
    }
}
