//! Framing SIP over a byte stream (TCP, TLS): RFC 3261 §18.3 (Content-Length is mandatory) and
//! RFC 5626 §4.4.1 keep-alives (a double CRLF "ping", answered by a single CRLF "pong").

use super::headers::canonical_name;
use super::{CodecError, MAX_MESSAGE_LEN};

/// The most bytes a [`StreamFramer`] holds: push what one socket read returns, then drain
/// [`StreamFramer::next_message`] until it returns `None`.
pub const MAX_STREAM_BUFFER: usize = 4 * MAX_MESSAGE_LEN;

/// One unit cut from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One whole message (head and exactly Content-Length bytes of body), for [`super::parse`].
    Message(Vec<u8>),
    /// An RFC 5626 keep-alive ping (CRLFCRLF): answer with a single CRLF.
    Ping,
}

/// Cuts a byte stream into messages.
///
/// Errors are final: after `next_message` returns `Some(Err(_))` once, it returns `None` and
/// `push` returns [`CodecError::StreamClosed`]; the caller closes the connection.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    /// Where to resume the search for the end of the head.
    scanned: usize,
    /// Length of the message at the front once its head has been read.
    pending: Option<usize>,
    failed: bool,
}

impl StreamFramer {
    /// An empty framer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), CodecError> {
        if self.failed {
            return Err(CodecError::StreamClosed);
        }
        if self.buf.len().saturating_add(bytes.len()) > MAX_STREAM_BUFFER {
            self.failed = true;
            self.buf = Vec::new();
            return Err(CodecError::StreamOverflow);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn fail(&mut self, error: CodecError) -> Option<Result<Frame, CodecError>> {
        self.failed = true;
        self.buf = Vec::new();
        self.pending = None;
        Some(Err(error))
    }

    /// The next whole message or ping; `None` when more bytes are needed (or after an error).
    pub fn next_message(&mut self) -> Option<Result<Frame, CodecError>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(total) = self.pending {
                if self.buf.len() < total {
                    return None;
                }
                let message: Vec<u8> = self.buf.drain(..total).collect();
                self.pending = None;
                self.scanned = 0;
                return Some(Ok(Frame::Message(message)));
            }

            // Between messages: pings and stray line ends (RFC 3261 §7.5 ignores CRLFs here).
            match self.buf.as_slice() {
                [] | [b'\r'] | [b'\r', b'\n'] | [b'\r', b'\n', b'\r'] => return None,
                [b'\r', b'\n', b'\r', b'\n', ..] => {
                    self.buf.drain(..4);
                    return Some(Ok(Frame::Ping));
                }
                [b'\r', b'\n', ..] => {
                    self.buf.drain(..2);
                    continue;
                }
                [b'\n' | b'\r', ..] => {
                    self.buf.drain(..1);
                    continue;
                }
                _ => {}
            }

            let limit = self.buf.len().min(MAX_MESSAGE_LEN);
            let Some(head_len) = find_head_end(&self.buf[..limit], self.scanned) else {
                if self.buf.len() >= MAX_MESSAGE_LEN {
                    return self.fail(CodecError::TooLarge);
                }
                self.scanned = self.buf.len().saturating_sub(2);
                return None;
            };
            let body_len = match content_length(&self.buf[..head_len]) {
                Ok(length) => length,
                Err(error) => return self.fail(error),
            };
            match head_len.checked_add(body_len) {
                Some(total) if total <= MAX_MESSAGE_LEN => self.pending = Some(total),
                _ => return self.fail(CodecError::TooLarge),
            }
        }
    }
}

/// The length of the head including its empty line (CRLFCRLF, LFLF or a mix), searching from
/// `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            match (buf.get(i + 1), buf.get(i + 2)) {
                (Some(b'\n'), _) => return Some(i + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// The Content-Length of a head (full or compact name), mandatory on streams.
fn content_length(head: &[u8]) -> Result<usize, CodecError> {
    let mut found: Option<usize> = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_none_or(|&b| b == b' ' || b == b'\t') {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(&line[..colon]) else {
            continue;
        };
        if !canonical_name(name.trim()).eq_ignore_ascii_case("Content-Length") {
            continue;
        }
        let value = std::str::from_utf8(&line[colon + 1..])
            .map(str::trim)
            .map_err(|_| CodecError::BadHeaderValue("Content-Length"))?;
        if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CodecError::BadHeaderValue("Content-Length"));
        }
        let length: usize = value
            .parse()
            .map_err(|_| CodecError::BadHeaderValue("Content-Length"))?;
        if found.is_some_and(|previous| previous != length) {
            return Err(CodecError::DuplicateHeader("Content-Length"));
        }
        found = Some(length);
    }
    found.ok_or(CodecError::MissingContentLength)
}
