//! The SIP codec: bytes to messages and back, normalised and size-bounded.
//!
//! rsip 0.4 is the message model and is re-exported as [`crate::rsip`], but it is unmaintained and
//! misses things phones send, so the bytes never reach rsip's own parser:
//!
//! * [`normalize`] is the pre-pass: bare LF line endings, folded headers, compact header names,
//!   whitespace around the colon, NUL and control bytes, size bounds.
//! * [`parse`] reads the start line and the Request-URI itself (rsip refuses IPv6 hosts and ignores
//!   trailing garbage), builds rsip's typed headers from the normalised lines, checks the mandatory
//!   headers and the Content-Length, and returns a [`Message`] with cheap accessors.
//! * [`can_answer`], [`bad_request`], [`error_response`] and [`reject`] build the `400 Bad Request`
//!   (or 416/501/505/513) for a request that did not parse, from the raw head.
//! * [`StreamFramer`] cuts a TCP/TLS byte stream into messages and RFC 5626 keep-alive pings.
//! * [`serialize`] writes an rsip message, fixing what rsip's `Display` gets wrong.
//!
//! Nothing here panics on any input; every loop and buffer is bounded.

mod framer;
mod headers;
mod message;
mod normalize;
mod reply;
mod serialize;
mod uri;

pub use framer::{Frame, MAX_STREAM_BUFFER, StreamFramer};
pub use message::{Message, normalize, parse};
pub use reply::{bad_request, can_answer, error_response, reject};
pub use serialize::{serialize, serialize_request, serialize_response};

/// The largest message accepted: a UDP datagram's bound, and the bound for one message on a stream.
pub const MAX_MESSAGE_LEN: usize = 65_535;
/// The most header lines a message may carry (after unfolding).
pub const MAX_HEADERS: usize = 128;
/// The longest header line (name, colon and unfolded value), and the longest start line.
pub const MAX_HEADER_LEN: usize = 8_192;

/// Why bytes are not an acceptable SIP message.
///
/// `Display` is a short reason phrase that never contains bytes from the input, so it can go on
/// the wire as the reason of the answer; [`CodecError::status_code`] says which status, if any.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Only CR, LF and whitespace: a keep-alive, to drop silently.
    #[error("Empty message")]
    Empty,
    /// Over [`MAX_MESSAGE_LEN`] (or a Content-Length over it on a stream).
    #[error("Message Too Large")]
    TooLarge,
    /// Over [`MAX_HEADERS`] header lines.
    #[error("Too Many Headers")]
    TooManyHeaders,
    /// A header or start line over [`MAX_HEADER_LEN`].
    #[error("Header Too Long")]
    HeaderTooLong,
    /// A NUL byte in the head.
    #[error("NUL Byte In Headers")]
    NulByte,
    /// Another control byte (other than HT, or CR before LF) in the head.
    #[error("Invalid Character In Headers")]
    InvalidByte,
    /// The head ends inside a line.
    #[error("Truncated Message")]
    Truncated,
    /// The start line is neither a request line nor a status line.
    #[error("Malformed Start Line")]
    BadStartLine,
    /// A malformed status line (responses are never answered).
    #[error("Malformed Status Line")]
    BadStatusLine,
    /// A header line without a colon, with an invalid name, or folded with nothing before it.
    #[error("Malformed Header Line")]
    BadHeaderLine,
    /// A SIP version other than 2.0.
    #[error("Version Not Supported")]
    UnsupportedVersion,
    /// A request method rsip does not model (or not in upper case: methods are case-sensitive).
    #[error("Not Implemented")]
    UnsupportedMethod,
    /// A Request-URI scheme other than `sip` or `sips`.
    #[error("Unsupported URI Scheme")]
    UnsupportedUriScheme,
    /// A malformed Request-URI.
    #[error("Malformed Request-URI")]
    BadRequestUri,
    /// A mandatory header is missing (the header's name).
    #[error("Missing {0}")]
    MissingHeader(&'static str),
    /// A header that must appear once appears more than once (the header's name).
    #[error("Duplicate {0}")]
    DuplicateHeader(&'static str),
    /// A header value does not parse (the header's name).
    #[error("Malformed {0}")]
    BadHeaderValue(&'static str),
    /// The CSeq method is not the request method.
    #[error("CSeq Method Mismatch")]
    CSeqMismatch,
    /// The body is shorter than the Content-Length.
    #[error("Body Shorter Than Content-Length")]
    BodyTooShort,
    /// No Content-Length on a stream transport, where it is mandatory.
    #[error("Missing Content-Length")]
    MissingContentLength,
    /// [`StreamFramer`] already failed; close the connection.
    #[error("Stream Closed")]
    StreamClosed,
    /// More bytes were pushed into a [`StreamFramer`] than it buffers; close the connection.
    #[error("Stream Buffer Overflow")]
    StreamOverflow,
}

impl CodecError {
    /// The status to answer a request that failed this way with, or `None` when nothing should be
    /// sent (keep-alives, responses, stream-level failures where the caller closes the
    /// connection). Whether a given request can be answered at all is [`can_answer`]'s call.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Self::Empty
            | Self::BadStatusLine
            | Self::StreamClosed
            | Self::StreamOverflow
            | Self::MissingContentLength => None,
            Self::TooLarge => Some(513),
            Self::UnsupportedVersion => Some(505),
            Self::UnsupportedMethod => Some(501),
            Self::UnsupportedUriScheme => Some(416),
            _ => Some(400),
        }
    }
}

/// The values of every header named `name` (case-insensitive, compact forms included), in order, as
/// they are on the line: a header repeated with commas on one line is one value (see [`list`]).
pub fn header_values<'a>(
    headers: &'a rsip::Headers,
    name: &str,
) -> impl Iterator<Item = &'a str> + use<'a> {
    let name = headers::canonical_name(name).to_owned();
    headers.iter().filter_map(move |header| {
        let (header_name, value) = headers::parts(header);
        header_name.eq_ignore_ascii_case(&name).then_some(value)
    })
}

/// The comma-separated elements of a header value (commas inside quotes and `<…>` do not split).
pub fn list(value: &str) -> impl Iterator<Item = &str> {
    headers::split_list(value)
}

/// A parameter of one header element (`tag` of a From, `expires` of a Contact): `Some(None)` for a
/// flag, `Some(Some(value))` otherwise.
pub fn element_param<'a>(element: &'a str, name: &str) -> Option<Option<&'a str>> {
    headers::find_param(headers::element_params(element), name)
}
