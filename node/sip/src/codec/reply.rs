//! Answering requests that did not parse: the `400 Bad Request` (or 416/501/505/513) built from
//! whatever of the raw head can be trusted.

use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};

use super::headers::{canonical_name, starts_with_ignore_case};
use super::message::{parse_via, tag_of};
use super::serialize::sanitize;
use super::{CodecError, MAX_HEADER_LEN, MAX_HEADERS, MAX_MESSAGE_LEN};

const MAX_REASON_LEN: usize = 128;

/// The parts of a request head a response copies.
struct RawHead {
    vias: Vec<String>,
    from: String,
    to: String,
    call_id: String,
    cseq: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kept {
    Via,
    From,
    To,
    CallId,
    CSeq,
}

fn kept(name: &str) -> Option<Kept> {
    let name = canonical_name(name);
    [
        ("Via", Kept::Via),
        ("From", Kept::From),
        ("To", Kept::To),
        ("Call-ID", Kept::CallId),
        ("CSeq", Kept::CSeq),
    ]
    .into_iter()
    .find_map(|(n, k)| n.eq_ignore_ascii_case(name).then_some(k))
}

/// A value safe to copy into a response: UTF-8 without control characters other than HT.
fn clean(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?;
    (!text.chars().any(|c| c.is_ascii_control() && c != '\t')).then_some(text.trim())
}

/// Whether the start line is a request line for a method other than ACK.
fn answerable_request_line(line: &[u8]) -> bool {
    let Ok(line) = std::str::from_utf8(line) else {
        return false;
    };
    let words: Vec<&str> = line.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
    let (Some(method), Some(version)) = (words.first(), words.last()) else {
        return false;
    };
    words.len() >= 3
        && super::headers::is_token(method)
        && *method != "ACK"
        && starts_with_ignore_case(version, "SIP/")
        && !starts_with_ignore_case(method, "SIP/")
}

/// Reads the head leniently: line endings, folding and compact names as `normalize` does, but
/// every other header may be garbage. `None` unless this is a request other than ACK with a
/// usable top Via, From, To, Call-ID and CSeq.
fn scan(raw: &[u8]) -> Option<RawHead> {
    let raw = &raw[..raw.len().min(MAX_MESSAGE_LEN)];
    let start = raw
        .iter()
        .position(|&b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t'))?;
    let mut lines = raw[start..]
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    if !answerable_request_line(lines.next()?) {
        return None;
    }

    // (kind, raw value) of the kept lines, in order, folded lines joined.
    let mut found: Vec<(Kept, Vec<u8>)> = Vec::new();
    let mut last_kept = false;
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if last_kept && let Some((_, value)) = found.last_mut() {
                value.push(b' ');
                value.extend_from_slice(line);
                if value.len() > MAX_HEADER_LEN {
                    return None;
                }
            }
            continue;
        }
        last_kept = false;
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(&line[..colon]) else {
            continue;
        };
        let Some(kind) = kept(name.trim()) else {
            continue;
        };
        if line.len() > MAX_HEADER_LEN || found.len() >= MAX_HEADERS {
            return None;
        }
        found.push((kind, line[colon + 1..].to_vec()));
        last_kept = true;
    }

    let mut vias = Vec::new();
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    for (kind, value) in &found {
        let value = clean(value)?;
        if value.is_empty() {
            return None;
        }
        let slot = match kind {
            Kept::Via => {
                vias.push(value.to_owned());
                continue;
            }
            Kept::From => &mut from,
            Kept::To => &mut to,
            Kept::CallId => &mut call_id,
            Kept::CSeq => &mut cseq,
        };
        if slot.is_none() {
            *slot = Some(value.to_owned());
        }
    }
    let top = vias.first()?;
    super::headers::split_list(top).next().and_then(parse_via)?;
    Some(RawHead {
        vias,
        from: from?,
        to: to?,
        call_id: call_id?,
        cseq: cseq?,
    })
}

/// Whether enough of a request was read (a request line other than ACK, a usable top Via, From,
/// To, Call-ID and CSeq) to answer it at all. Responses and ACKs are never answered.
pub fn can_answer(raw: &[u8]) -> bool {
    scan(raw).is_some()
}

/// Builds an error response (`code` 300–699) to a request that did not parse, copying the Via
/// headers, From, To (adding a to-tag if absent), Call-ID and CSeq from the raw head, with
/// `Content-Length: 0`. The to-tag is derived from the request, so a retransmission gets the same
/// answer. `None` when [`can_answer`] is false or the code is out of range. The reason is cut to
/// 128 bytes and stripped of control characters.
pub fn error_response(raw: &[u8], code: u16, reason: &str) -> Option<Vec<u8>> {
    if !(300..=699).contains(&code) {
        return None;
    }
    let head = scan(raw)?;
    let mut reason = sanitize(reason).into_owned();
    if reason.len() > MAX_REASON_LEN {
        let mut cut = MAX_REASON_LEN;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }

    let mut out = String::with_capacity(512);
    let _ = write!(out, "SIP/2.0 {code} {}\r\n", reason.trim());
    for via in &head.vias {
        let _ = write!(out, "Via: {via}\r\n");
    }
    let _ = write!(out, "From: {}\r\n", head.from);
    if tag_of(&head.to).is_some() {
        let _ = write!(out, "To: {}\r\n", head.to);
    } else {
        let mut hasher = Sha256::new();
        for part in [&head.call_id, &head.from, &head.cseq, &head.vias[0]] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        let digest = hasher.finalize();
        let _ = write!(out, "To: {};tag={}\r\n", head.to, hex::encode(&digest[..8]));
    }
    let _ = write!(out, "Call-ID: {}\r\n", head.call_id);
    let _ = write!(out, "CSeq: {}\r\n", head.cseq);
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}

/// [`error_response`] with 400.
pub fn bad_request(raw: &[u8], reason: &str) -> Option<Vec<u8>> {
    error_response(raw, 400, reason)
}

/// The answer to a request [`super::parse`] refused with `error`: its status and reason, when
/// the error has one and the request can be answered.
pub fn reject(raw: &[u8], error: &CodecError) -> Option<Vec<u8>> {
    let code = error.status_code()?;
    error_response(raw, code, &error.to_string())
}
