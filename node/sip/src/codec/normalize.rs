//! The pre-pass before parsing: line endings, folding, compact names, whitespace around the colon,
//! and the size bounds. It works on bytes and never interprets header values.

use super::headers::{expand_compact, is_token_byte};
use super::{CodecError, MAX_HEADER_LEN, MAX_HEADERS, MAX_MESSAGE_LEN};

/// A message split into its normalised parts, borrowed from the input where it can be.
#[derive(Debug)]
pub(crate) struct Normalized<'a> {
    /// The start line with runs of SP/HT collapsed to one SP, trimmed.
    pub(crate) start_line: Vec<u8>,
    /// Header lines: expanded name and unfolded, trimmed value.
    pub(crate) headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Everything after the empty line, untouched.
    pub(crate) body: &'a [u8],
}

impl Normalized<'_> {
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let head_len: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum();
        let mut out = Vec::with_capacity(self.start_line.len() + head_len + 4 + self.body.len());
        out.extend_from_slice(&self.start_line);
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body);
        out
    }
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ws(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ws(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ws(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// Refuses NUL and other control bytes in a head line (HT is allowed).
fn check_line_bytes(line: &[u8]) -> Result<(), CodecError> {
    for &b in line {
        if b == 0 {
            return Err(CodecError::NulByte);
        }
        if (b < 0x20 && b != b'\t') || b == 0x7f {
            return Err(CodecError::InvalidByte);
        }
    }
    Ok(())
}

/// Splits `raw` into normalised parts; see [`super::normalize`].
pub(crate) fn split(raw: &[u8]) -> Result<Normalized<'_>, CodecError> {
    if raw.len() > MAX_MESSAGE_LEN {
        return Err(CodecError::TooLarge);
    }
    // RFC 3261 §7.5: CRLFs before the start line are ignored (keep-alives, stream leftovers).
    let skip = raw
        .iter()
        .position(|&b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
        .ok_or(CodecError::Empty)?;
    let mut rest = &raw[skip..];

    let mut start_line: Option<Vec<u8>> = None;
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    loop {
        // One line, without its LF and an optional CR before it. A head that stops at the end
        // of the datagram after a complete line (no empty line) is accepted with an empty body;
        // a head cut inside a line is truncated.
        let (line, after) = match rest.iter().position(|&b| b == b'\n') {
            Some(lf) => (&rest[..lf], &rest[lf + 1..]),
            None if rest.is_empty() => (rest, rest),
            None => return Err(CodecError::Truncated),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            rest = after;
            break;
        }
        if line.len() > MAX_HEADER_LEN {
            return Err(CodecError::HeaderTooLong);
        }
        check_line_bytes(line)?;
        rest = after;

        if start_line.is_none() {
            let mut collapsed = Vec::with_capacity(line.len());
            for word in line.split(|&b| is_ws(b)).filter(|w| !w.is_empty()) {
                if !collapsed.is_empty() {
                    collapsed.push(b' ');
                }
                collapsed.extend_from_slice(word);
            }
            start_line = Some(collapsed);
            continue;
        }

        if is_ws(line[0]) {
            // Folded continuation of the previous header (RFC 3261 §7.3.1).
            let Some((_, value)) = headers.last_mut() else {
                return Err(CodecError::BadHeaderLine);
            };
            let more = trim_ws(line);
            if !more.is_empty() {
                if !value.is_empty() {
                    value.push(b' ');
                }
                value.extend_from_slice(more);
            }
            if value.len() > MAX_HEADER_LEN {
                return Err(CodecError::HeaderTooLong);
            }
            continue;
        }

        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(CodecError::BadHeaderLine)?;
        let name = trim_ws(&line[..colon]);
        if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
            return Err(CodecError::BadHeaderLine);
        }
        if headers.len() >= MAX_HEADERS {
            return Err(CodecError::TooManyHeaders);
        }
        let name = std::str::from_utf8(name)
            .ok()
            .and_then(expand_compact)
            .map_or_else(|| name.to_vec(), |full| full.as_bytes().to_vec());
        headers.push((name, trim_ws(&line[colon + 1..]).to_vec()));
    }

    let start_line = start_line.ok_or(CodecError::Empty)?;
    Ok(Normalized {
        start_line,
        headers,
        body: rest,
    })
}
