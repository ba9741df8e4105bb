//! SDP (RFC 8866) for a B2BUA with an RTP relay: read where each phone wants media, and write the
//! description the other phone sees, with every address and port pointing at the PBX.
//!
//! * [`Sdp::parse`] keeps every line, so [`Sdp::rewrite`] changes only what the relay must own
//!   (`o=` address, `c=`, `m=` ports, `a=rtcp`) and drops ICE; codecs, crypto, direction and
//!   unknown attributes pass through byte for byte and in order.
//! * Input is bounded ([`MAX_SDP_BYTES`], [`MAX_LINE_BYTES`], [`MAX_MEDIA`]) and every refusal is
//!   an [`SdpError`] that says which SIP status to answer with. Error reasons never echo input.
//! * Hold is preserved: a stream at `0.0.0.0` / `::` stays at the unspecified address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[cfg(test)]
mod tests;

/// Largest body [`Sdp::parse`] accepts.
pub const MAX_SDP_BYTES: usize = 16 * 1024;
/// Most `m=` lines [`Sdp::parse`] accepts; each costs the relay a port pair.
pub const MAX_MEDIA: usize = 8;
/// Longest line (without its terminator) [`Sdp::parse`] accepts.
pub const MAX_LINE_BYTES: usize = 1024;

/// Why a session description was refused. `Display` is a short reason that never contains
/// input bytes; [`SdpError::sip_status`] says which answer to send.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// Not parseable SDP: answer 400.
    #[error("malformed SDP: {0}")]
    Malformed(&'static str),
    /// Valid SDP the PBX cannot relay: answer 488.
    #[error("unacceptable SDP: {0}")]
    Unacceptable(&'static str),
}

impl SdpError {
    /// The SIP status to answer the request carrying this SDP with.
    pub fn sip_status(&self) -> u16 {
        match self {
            Self::Malformed(_) => 400,
            Self::Unacceptable(_) => 488,
        }
    }
}

/// A stream's direction attribute (RFC 3264 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_attribute(name: &str) -> Option<Self> {
        [
            ("sendrecv", Self::SendRecv),
            ("sendonly", Self::SendOnly),
            ("recvonly", Self::RecvOnly),
            ("inactive", Self::Inactive),
        ]
        .into_iter()
        .find_map(|(token, direction)| name.eq_ignore_ascii_case(token).then_some(direction))
    }

    fn attribute(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    fn sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }

    /// The answer's direction (RFC 3264 §6.1) when the answerer relays `from`: it may send only
    /// what the offerer receives and `from` sends, and receive only what the offerer sends and
    /// `from` receives.
    fn answering(offer: Self, from: Self) -> Self {
        match (
            offer.receives() && from.sends(),
            offer.sends() && from.receives(),
        ) {
            (true, true) => Self::SendRecv,
            (true, false) => Self::SendOnly,
            (false, true) => Self::RecvOnly,
            (false, false) => Self::Inactive,
        }
    }
}

/// What one m= line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    /// `audio`, `video`, …
    pub kind: String,
    /// 0 = stream rejected/disabled.
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`, …
    pub protocol: String,
    /// Payload types as text, in the phone's order of preference.
    pub formats: Vec<String>,
    /// Where the phone wants RTP: media-level c= else session-level c=. None when 0.0.0.0 / ::
    /// (RFC 2543 hold) or absent.
    pub address: Option<IpAddr>,
    /// Port of a=rtcp if present, else None (RTCP then defaults to port+1).
    pub rtcp_port: Option<u16>,
    pub rtcp_mux: bool,
    /// Media-level direction attribute, else session-level, else SendRecv.
    pub direction: Direction,
    /// a=crypto present (SDES-SRTP keys).
    pub has_crypto: bool,
}

/// A parsed session description, keeping every line so it can be written back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    lines: Vec<Line>,
    media: Vec<MediaInfo>,
    /// Per stream: whether it has its own c= line (rewrite may need to add one).
    media_has_connection: Vec<bool>,
    session_has_connection: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    letter: char,
    value: String,
    role: Role,
}

/// What [`Sdp::rewrite`] does with a line, decided once at parse time.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Keep,
    Drop,
    /// `o=`: the first three fields, kept as they were.
    Origin {
        user_id_version: String,
    },
    Connection {
        unspecified: bool,
    },
    /// `m=`: the text around the port, kept as it was.
    Media {
        index: usize,
        kind: String,
        after_port: String,
    },
    Rtcp {
        index: usize,
        address: Option<bool>,
    },
}

impl Sdp {
    /// Parses and validates a body. Never panics; every bound has its own error.
    pub fn parse(body: &[u8]) -> Result<Self, SdpError> {
        if body.len() > MAX_SDP_BYTES {
            return Err(SdpError::Malformed("body too large"));
        }
        let text = std::str::from_utf8(body).map_err(|_| SdpError::Malformed("not UTF-8"))?;
        let mut parser = Parser::default();
        for raw in split_lines(text)? {
            parser.line(raw)?;
        }
        parser.finish()
    }

    /// No description at all: a side that has not offered yet (an INVITE with a delayed offer). It
    /// has no streams, and [`Sdp::rewrite`] writes it as an empty body.
    pub fn none() -> Self {
        Self {
            lines: Vec::new(),
            media: Vec::new(),
            media_has_connection: Vec::new(),
            session_has_connection: false,
        }
    }

    /// The streams, in m= line order.
    pub fn media(&self) -> &[MediaInfo] {
        &self.media
    }

    /// The SDP to send to the other phone: every c= (session and media level) becomes `addr`
    /// (IN IP4 / IN IP6 matching addr), the o= line's unicast address becomes `addr` (keep
    /// username/session id/version), m= line i gets port `ports[i]` (ports.len() must equal the
    /// number of m= lines; a `0` port keeps the line as rejected), a=rtcp:<p> [IN IP4 x] becomes
    /// a=rtcp:<ports[i]+1> (with `addr` when an address was present), and ICE is removed
    /// (a=candidate, a=ice-*, a=end-of-candidates, a=remote-candidates) because the PBX relays
    /// media itself.
    ///
    /// A line whose original connection address is the unspecified address keeps the
    /// unspecified address (of `addr`'s family), so hold still means hold. A stream given a
    /// nonzero port that had no connection address at all (it was rejected) gets a c= line, so
    /// the output stays valid. For a stream given port 0, a=rtcp is dropped: RTCP to port 1
    /// would be nonsense. Everything else is kept untouched and in order. Lines end with CRLF.
    pub fn rewrite(&self, addr: IpAddr, ports: &[u16]) -> Result<String, SdpError> {
        if ports.len() != self.media.len() {
            return Err(SdpError::Unacceptable("port count does not match m= lines"));
        }
        let (addr_type, unspecified) = match addr {
            IpAddr::V4(_) => ("IP4", IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            IpAddr::V6(_) => ("IP6", IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        };
        let connection = |was_unspecified: bool| {
            let ip = if was_unspecified { unspecified } else { addr };
            format!("IN {addr_type} {ip}")
        };

        let mut out = String::with_capacity(self.lines.iter().map(|l| l.value.len() + 8).sum());
        // Set after an m= line whose stream needs a c= line added: it goes after any i= line.
        let mut missing_connection = false;
        for line in &self.lines {
            if missing_connection && line.letter != 'i' {
                push_line(&mut out, 'c', &connection(false));
                missing_connection = false;
            }
            match &line.role {
                Role::Keep => push_line(&mut out, line.letter, &line.value),
                Role::Drop => {}
                Role::Origin { user_id_version } => {
                    push_line(
                        &mut out,
                        'o',
                        &format!("{user_id_version} IN {addr_type} {addr}"),
                    );
                }
                Role::Connection { unspecified } => {
                    push_line(&mut out, 'c', &connection(*unspecified));
                }
                Role::Media {
                    index,
                    kind,
                    after_port,
                } => {
                    let port = ports[*index];
                    push_line(&mut out, 'm', &format!("{kind} {port}{after_port}"));
                    missing_connection = port != 0
                        && !self.media_has_connection[*index]
                        && !self.session_has_connection;
                }
                Role::Rtcp { index, address } => {
                    let port = ports[*index];
                    if port == 0 {
                        continue;
                    }
                    let rtcp = port
                        .checked_add(1)
                        .ok_or(SdpError::Unacceptable("no port above RTP port for RTCP"))?;
                    let value = match address {
                        Some(was_unspecified) => {
                            format!("rtcp:{rtcp} {}", connection(*was_unspecified))
                        }
                        None => format!("rtcp:{rtcp}"),
                    };
                    push_line(&mut out, 'a', &value);
                }
            }
        }
        if missing_connection {
            push_line(&mut out, 'c', &connection(false));
        }
        Ok(out)
    }
}

/// The answer to `offer` (RFC 3264 §6) that the PBX makes from `from`, another phone's offer: how
/// a B2BUA connects a party that offered to a call whose other side offered too. In call pickup the
/// ringing caller's offer and the picking-up phone's own INVITE offer each get an answer made from
/// the other, `answer(&caller, &picker)` and `answer(&picker, &caller)`; the two agree on formats,
/// `a=rtcp-mux` and direction. The result is a parsed [`Sdp`] with one `m=` line per `m=` line of
/// `offer`, in order, still carrying `from`'s addresses and ports: pass it through
/// [`Sdp::rewrite`] to put the relay's in.
///
/// * Session level: `v=0`, `from`'s `o=` and `s=` lines, `from`'s session-level `c=` if it has
///   one, `t=0 0`.
/// * Stream `i` is accepted when `offer`'s stream `i` has a nonzero port, `from`'s stream `i` has
///   the same kind and a nonzero port, both use plain RTP (`RTP/AVP` or `RTP/AVPF`), and some of
///   `offer`'s formats match: a static payload type (0–95) by number, a dynamic one (96–127) only
///   when both sides' `a=rtpmap` give that number the same encoding name (in any case), clock rate
///   and channels (1 when omitted), because the relay passes payload type numbers through.
///   The answer's stream has `from`'s port, `offer`'s protocol, the matching formats in `offer`'s
///   order with `offer`'s `a=rtpmap`/`a=fmtp` lines for them, `from`'s media-level `c=` and
///   `a=ptime`/`a=maxptime` (media level, else session level), `a=rtcp-mux` when both have it,
///   and always a direction attribute: it sends only if `offer` receives and `from` sends, and
///   receives only if `offer` sends and `from` receives.
/// * Any other stream is rejected: port 0, `offer`'s kind, protocol and first format, and
///   `a=inactive`.
/// * Hold survives: `from`'s `c=` lines are copied as they are, so `0.0.0.0` stays.
///
/// Every error is [`SdpError::Unacceptable`] (488): either side carries SDES keys (`a=crypto`) or
/// uses an SRTP or DTLS protocol on any stream (the PBX does not negotiate keys); `offer` has no
/// streams; every stream is rejected (`"no common codec"`); or the answer would break a bound of
/// [`Sdp::parse`] (only contrived input gets there). Never panics.
pub fn answer(offer: &Sdp, from: &Sdp) -> Result<Sdp, SdpError> {
    let keyed = |sdp: &Sdp| {
        sdp.media.iter().any(|m| {
            let protocol = m.protocol.to_ascii_uppercase();
            m.has_crypto || protocol.contains("SAVP") || protocol.contains("DTLS")
        })
    };
    if keyed(offer) || keyed(from) {
        return Err(SdpError::Unacceptable(
            "the PBX does not negotiate SRTP keys",
        ));
    }
    if offer.media.is_empty() {
        return Err(SdpError::Unacceptable("no media"));
    }
    let (_, offer_streams) = offer.sections();
    let (from_session, from_streams) = from.sections();
    let session_line = |letter: char| {
        from_session
            .iter()
            .find(|line| line.letter == letter)
            .map(|line| line.value.as_str())
    };

    let mut streams = String::new();
    let mut accepted = false;
    for (index, (offered, offered_lines)) in offer
        .media
        .iter()
        .zip(offer_streams.iter().copied())
        .enumerate()
    {
        let theirs = from.media.get(index).zip(from_streams.get(index).copied());
        let formats = theirs
            .filter(|(theirs, _)| {
                offered.port != 0
                    && theirs.port != 0
                    && offered.kind.eq_ignore_ascii_case(&theirs.kind)
                    && is_plain_rtp(&offered.protocol)
                    && is_plain_rtp(&theirs.protocol)
            })
            .map(|(theirs, their_lines)| {
                common_formats(offered, offered_lines, theirs, their_lines)
            })
            .unwrap_or_default();
        let Some((theirs, their_lines)) = theirs.filter(|_| !formats.is_empty()) else {
            let first = offered.formats.first().map_or("0", String::as_str);
            let m = format!("{} 0 {} {first}", offered.kind, offered.protocol);
            push_line(&mut streams, 'm', &m);
            push_line(&mut streams, 'a', Direction::Inactive.attribute());
            continue;
        };
        accepted = true;
        let numbers: Vec<u8> = formats.iter().map(|&(_, number)| number).collect();
        let names: Vec<&str> = formats.iter().map(|&(name, _)| name).collect();
        let m = format!(
            "{} {} {} {}",
            offered.kind,
            theirs.port,
            offered.protocol,
            names.join(" ")
        );
        push_line(&mut streams, 'm', &m);
        if let Some(connection) = their_lines.iter().find(|line| line.letter == 'c') {
            push_line(&mut streams, 'c', &connection.value);
        }
        for line in offered_lines {
            let Some(value) = ["rtpmap", "fmtp"]
                .iter()
                .find_map(|name| attribute_value(line, name))
            else {
                continue;
            };
            let number = value.split_ascii_whitespace().next().and_then(payload_type);
            if number.is_some_and(|number| numbers.contains(&number)) {
                push_line(&mut streams, 'a', &line.value);
            }
        }
        for name in ["ptime", "maxptime"] {
            let found = [their_lines, from_session]
                .into_iter()
                .flatten()
                .find(|line| attribute_value(line, name).is_some());
            if let Some(line) = found {
                push_line(&mut streams, 'a', &line.value);
            }
        }
        if offered.rtcp_mux && theirs.rtcp_mux {
            push_line(&mut streams, 'a', "rtcp-mux");
        }
        let direction = Direction::answering(offered.direction, theirs.direction);
        push_line(&mut streams, 'a', direction.attribute());
    }
    if !accepted {
        return Err(SdpError::Unacceptable("no common codec"));
    }

    let origin = session_line('o').ok_or(SdpError::Unacceptable("no origin to answer from"))?;
    let mut text = String::with_capacity(streams.len() + 256);
    push_line(&mut text, 'v', "0");
    push_line(&mut text, 'o', origin);
    push_line(&mut text, 's', session_line('s').unwrap_or("-"));
    if let Some(connection) = session_line('c') {
        push_line(&mut text, 'c', connection);
    }
    push_line(&mut text, 't', "0 0");
    text.push_str(&streams);
    // Built from lines that parsed once, so only a bound can fail here; that is no fault of the
    // request, so it must not come back as a 400.
    Sdp::parse(text.as_bytes()).map_err(|error| match error {
        SdpError::Malformed(_) => SdpError::Unacceptable("answer would not be valid SDP"),
        other => other,
    })
}

impl Sdp {
    /// The session-level lines, and each stream's lines from its `m=` line on.
    fn sections(&self) -> (&[Line], Vec<&[Line]>) {
        let starts: Vec<usize> = self
            .lines
            .iter()
            .enumerate()
            .filter(|(_, line)| matches!(line.role, Role::Media { .. }))
            .map(|(at, _)| at)
            .collect();
        let session_end = starts.first().copied().unwrap_or(self.lines.len());
        let session = self.lines.get(..session_end).unwrap_or_default();
        let streams = starts
            .iter()
            .enumerate()
            .map(|(k, &start)| {
                let end = starts.get(k + 1).copied().unwrap_or(self.lines.len());
                self.lines.get(start..end).unwrap_or_default()
            })
            .collect();
        (session, streams)
    }
}

/// `RTP/AVP` or `RTP/AVPF`: the profiles whose formats are payload type numbers the relay can
/// pass through (the secure ones are refused before this is asked).
fn is_plain_rtp(protocol: &str) -> bool {
    protocol.eq_ignore_ascii_case("RTP/AVP") || protocol.eq_ignore_ascii_case("RTP/AVPF")
}

/// An RTP payload type number (0–127), as written in `m=`, `a=rtpmap` and `a=fmtp`.
fn payload_type(text: &str) -> Option<u8> {
    parse_u16(text)
        .and_then(|number| u8::try_from(number).ok())
        .filter(|&number| number <= 127)
}

/// The value of `a=<name>:<value>` (name in any case), if `line` is that attribute.
fn attribute_value<'a>(line: &'a Line, name: &str) -> Option<&'a str> {
    let (found, value) = line.value.split_once(':')?;
    (line.letter == 'a' && found.eq_ignore_ascii_case(name)).then_some(value)
}

/// `offer`'s formats that `from`'s stream also has, in `offer`'s order, each once, with its
/// payload type number.
fn common_formats<'a>(
    offer: &'a MediaInfo,
    offer_lines: &[Line],
    from: &MediaInfo,
    from_lines: &[Line],
) -> Vec<(&'a str, u8)> {
    let mut kept: Vec<(&str, u8)> = Vec::new();
    for format in &offer.formats {
        let Some(number) = payload_type(format) else {
            continue;
        };
        let shared = from
            .formats
            .iter()
            .any(|theirs| payload_type(theirs) == Some(number));
        let same_meaning = number < 96
            || rtpmap(offer_lines, number)
                .zip(rtpmap(from_lines, number))
                .is_some_and(|(ours, theirs)| {
                    ours.0.eq_ignore_ascii_case(theirs.0) && ours.1 == theirs.1
                });
        if shared && same_meaning && !kept.iter().any(|&(_, seen)| seen == number) {
            kept.push((format, number));
        }
    }
    kept
}

/// What the first `a=rtpmap` for `number` says: encoding name, and clock rate with channels (1
/// when omitted). None when there is none or it does not parse.
fn rtpmap(lines: &[Line], number: u8) -> Option<(&str, (u32, u16))> {
    let value = lines.iter().find_map(|line| {
        let value = attribute_value(line, "rtpmap")?;
        let mut fields = value.split_ascii_whitespace();
        (fields.next().and_then(payload_type) == Some(number)).then(|| fields.next())
    })??;
    let mut parts = value.split('/');
    let name = parts.next().filter(|name| !name.is_empty())?;
    let rate = parts
        .next()
        .filter(|rate| !rate.is_empty() && rate.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()?;
    let channels = match parts.next() {
        Some(channels) => parse_u16(channels)?,
        None => 1,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((name, (rate, channels)))
}

fn push_line(out: &mut String, letter: char, value: &str) {
    out.push(letter);
    out.push('=');
    out.push_str(value);
    out.push_str("\r\n");
}

/// Splits on LF (with an optional CR before it), allowing one final blank line, and checks
/// each line's length and characters.
fn split_lines(text: &str) -> Result<Vec<&str>, SdpError> {
    let mut lines: Vec<&str> = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .collect();
    // The terminator of the last line leaves one empty piece; a sender's extra CRLF, another.
    for _ in 0..2 {
        if lines.len() > 1 && lines.last().is_some_and(|line| line.is_empty()) {
            lines.pop();
        }
    }
    for line in &lines {
        if line.is_empty() {
            return Err(SdpError::Malformed(if text.is_empty() {
                "empty body"
            } else {
                "empty line"
            }));
        }
        if line.len() > MAX_LINE_BYTES {
            return Err(SdpError::Malformed("line too long"));
        }
        // A stray CR or NUL copied through by rewrite could split a line at the far end,
        // smuggling lines (ICE, c=) past the rewrite.
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(SdpError::Malformed("control character in line"));
        }
    }
    Ok(lines)
}

/// Accumulates lines in order; [`Parser::finish`] checks what must be present.
#[derive(Default)]
struct Parser {
    lines: Vec<Line>,
    media: Vec<MediaInfo>,
    media_has_connection: Vec<bool>,
    session_connection: Option<Option<IpAddr>>,
    session_direction: Option<Direction>,
    /// Per stream: its own c= address and direction, if it has them.
    media_connection: Vec<Option<Option<IpAddr>>>,
    media_direction: Vec<Option<Direction>>,
    seen_origin: bool,
    seen_name: bool,
}

impl Parser {
    fn line(&mut self, raw: &str) -> Result<(), SdpError> {
        let mut chars = raw.chars();
        let (Some(letter), Some('=')) = (chars.next(), chars.next()) else {
            return Err(SdpError::Malformed("line is not <letter>=<value>"));
        };
        if !letter.is_ascii_lowercase() {
            return Err(SdpError::Malformed("line is not <letter>=<value>"));
        }
        let value = chars.as_str();
        if self.lines.is_empty() && (letter, value) != ('v', "0") {
            return Err(SdpError::Malformed("does not start with v=0"));
        }
        let current = self.media.len().checked_sub(1);
        let role = match (letter, current) {
            ('v', None) if self.lines.is_empty() => Role::Keep,
            ('v', _) => return Err(SdpError::Malformed("v= not first")),
            ('o', None) if !self.seen_origin => {
                self.seen_origin = true;
                parse_origin(value)?
            }
            ('o', None) => return Err(SdpError::Malformed("more than one o= line")),
            ('s', None) if !self.seen_name => {
                self.seen_name = true;
                Role::Keep
            }
            ('s', None) => return Err(SdpError::Malformed("more than one s= line")),
            ('u' | 'e' | 'p' | 't' | 'r' | 'z', None) => Role::Keep,
            ('i' | 'b' | 'k', _) => Role::Keep,
            ('c', None) => {
                if self.session_connection.is_some() {
                    return Err(SdpError::Unacceptable("more than one connection address"));
                }
                let address = parse_connection(value)?;
                self.session_connection = Some(address);
                Role::Connection {
                    unspecified: address.is_none(),
                }
            }
            ('c', Some(index)) => {
                if self.media_connection[index].is_some() {
                    return Err(SdpError::Unacceptable("more than one connection address"));
                }
                let address = parse_connection(value)?;
                self.media_connection[index] = Some(address);
                Role::Connection {
                    unspecified: address.is_none(),
                }
            }
            ('m', _) => self.media_line(value)?,
            ('a', current) => self.attribute(value, current)?,
            ('o' | 's' | 'u' | 'e' | 'p' | 't' | 'r' | 'z', Some(_)) => {
                return Err(SdpError::Malformed("session-level line after m="));
            }
            _ => return Err(SdpError::Malformed("unknown line type")),
        };
        self.lines.push(Line {
            letter,
            value: value.to_owned(),
            role,
        });
        Ok(())
    }

    fn media_line(&mut self, value: &str) -> Result<Role, SdpError> {
        if self.media.len() == MAX_MEDIA {
            return Err(SdpError::Unacceptable("too many media streams"));
        }
        const BAD: SdpError = SdpError::Malformed("bad m= line");
        let mut fields = value.splitn(3, ' ');
        let (Some(kind), Some(port_field), Some(rest)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(BAD);
        };
        let (port_text, count) = match port_field.split_once('/') {
            Some((port, count)) => (port, Some(count)),
            None => (port_field, None),
        };
        let port = parse_u16(port_text).ok_or(SdpError::Malformed("bad m= port"))?;
        if let Some(count) = count {
            match parse_u16(count) {
                Some(1) => {}
                Some(_) => return Err(SdpError::Unacceptable("m= port count other than 1")),
                None => return Err(SdpError::Malformed("bad m= port count")),
            }
        }
        let mut tokens = rest.split_ascii_whitespace();
        let protocol = tokens.next().ok_or(BAD)?;
        let formats: Vec<String> = tokens.map(str::to_owned).collect();
        if kind.is_empty() || !kind.is_ascii() {
            return Err(BAD);
        }
        if formats.is_empty() {
            return Err(SdpError::Malformed("m= line without formats"));
        }
        let index = self.media.len();
        self.media.push(MediaInfo {
            kind: kind.to_owned(),
            port,
            protocol: protocol.to_owned(),
            formats,
            address: None,
            rtcp_port: None,
            rtcp_mux: false,
            direction: Direction::SendRecv,
            has_crypto: false,
        });
        self.media_connection.push(None);
        self.media_direction.push(None);
        let after_port = &port_field[port_text.len()..];
        Ok(Role::Media {
            index,
            kind: kind.to_owned(),
            after_port: format!("{after_port} {rest}"),
        })
    }

    fn attribute(&mut self, value: &str, current: Option<usize>) -> Result<Role, SdpError> {
        let (name, attr_value) = match value.split_once(':') {
            Some((name, attr_value)) => (name, Some(attr_value)),
            None => (value, None),
        };
        // The relay terminates media at the PBX, so the phone's candidates mean nothing to
        // the far end (RFC 8839 attributes).
        let is_ice = ["candidate", "end-of-candidates", "remote-candidates"]
            .iter()
            .any(|ice| name.eq_ignore_ascii_case(ice))
            || name
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case("ice-"));
        if is_ice {
            return Ok(Role::Drop);
        }
        if let Some(direction) = Direction::from_attribute(name) {
            let slot = match current {
                Some(index) => &mut self.media_direction[index],
                None => &mut self.session_direction,
            };
            if slot.is_some_and(|seen| seen != direction) {
                return Err(SdpError::Malformed("conflicting direction attributes"));
            }
            *slot = Some(direction);
            return Ok(Role::Keep);
        }
        let Some(index) = current else {
            if name.eq_ignore_ascii_case("rtcp") {
                // RFC 3605 defines it per stream; kept here it would leak the phone's address.
                return Err(SdpError::Malformed("a=rtcp at session level"));
            }
            return Ok(Role::Keep);
        };
        let media = &mut self.media[index];
        if name.eq_ignore_ascii_case("rtcp") {
            if media.rtcp_port.is_some() {
                return Err(SdpError::Malformed("more than one a=rtcp"));
            }
            let (port, address) = parse_rtcp(attr_value.unwrap_or(""))?;
            media.rtcp_port = Some(port);
            return Ok(Role::Rtcp {
                index,
                address: address.map(|a| a.is_none()),
            });
        }
        if name.eq_ignore_ascii_case("rtcp-mux") {
            media.rtcp_mux = true;
        } else if name.eq_ignore_ascii_case("crypto") {
            media.has_crypto = true;
        }
        Ok(Role::Keep)
    }

    fn finish(mut self) -> Result<Sdp, SdpError> {
        if !self.seen_origin {
            return Err(SdpError::Malformed("missing o= line"));
        }
        if !self.seen_name {
            return Err(SdpError::Malformed("missing s= line"));
        }
        if self.media.is_empty() {
            return Err(SdpError::Unacceptable("no media"));
        }
        for (index, media) in self.media.iter_mut().enumerate() {
            let connection = self.media_connection[index].or(self.session_connection);
            if media.port != 0 && connection.is_none() {
                return Err(SdpError::Malformed("media without connection address"));
            }
            media.address = connection.flatten();
            media.direction = self.media_direction[index]
                .or(self.session_direction)
                .unwrap_or(Direction::SendRecv);
            self.media_has_connection
                .push(self.media_connection[index].is_some());
        }
        Ok(Sdp {
            lines: self.lines,
            media: self.media,
            media_has_connection: self.media_has_connection,
            session_has_connection: self.session_connection.is_some(),
        })
    }
}

/// Digits only: `u16::from_str` would also take `+5`.
fn parse_u16(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`.
fn parse_origin(value: &str) -> Result<Role, SdpError> {
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let [user, id, version, _, _, _] = fields[..] else {
        return Err(SdpError::Malformed("o= line needs 6 fields"));
    };
    Ok(Role::Origin {
        user_id_version: format!("{user} {id} {version}"),
    })
}

/// `IN IP4 <addr>` or `IN IP6 <addr>`: `None` for the unspecified address (hold).
fn parse_connection(value: &str) -> Result<Option<IpAddr>, SdpError> {
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let [net_type, addr_type, address] = fields[..] else {
        return Err(SdpError::Malformed("c= line needs 3 fields"));
    };
    parse_address(net_type, addr_type, address)
}

fn parse_address(
    net_type: &str,
    addr_type: &str,
    address: &str,
) -> Result<Option<IpAddr>, SdpError> {
    if net_type != "IN" {
        return Err(SdpError::Unacceptable("network type must be IN"));
    }
    let v6 = match addr_type {
        "IP4" => false,
        "IP6" => true,
        _ => return Err(SdpError::Unacceptable("address type must be IP4 or IP6")),
    };
    // Multicast may carry /ttl (IP4) and /count; parse it so the refusal is the right one.
    let mut parts = address.split('/');
    let host = parts.next().unwrap_or("");
    let suffixes: Vec<&str> = parts.collect();
    let ip: IpAddr = match host.parse() {
        Ok(ip) => ip,
        Err(_) if looks_like_hostname(host) => {
            return Err(SdpError::Unacceptable("connection address must be an IP"));
        }
        Err(_) => return Err(SdpError::Malformed("bad connection address")),
    };
    if ip.is_ipv6() != v6 {
        return Err(SdpError::Malformed("address does not match address type"));
    }
    if suffixes.len() > 2 || suffixes.iter().any(|s| parse_u16(s).is_none()) {
        return Err(SdpError::Malformed("bad connection address"));
    }
    if ip.is_multicast() {
        return Err(SdpError::Unacceptable("multicast is not supported"));
    }
    if !suffixes.is_empty() {
        return Err(SdpError::Malformed("TTL or count on a unicast address"));
    }
    Ok((!ip.is_unspecified()).then_some(ip))
}

fn looks_like_hostname(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && text.bytes().any(|b| b.is_ascii_alphabetic())
}

/// `a=rtcp:<port> [IN IP4 <addr>]` (RFC 3605). The address is `Some(None)` when unspecified.
fn parse_rtcp(value: &str) -> Result<(u16, Option<Option<IpAddr>>), SdpError> {
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let (port, address) = match fields[..] {
        [port] => (port, None),
        [port, net_type, addr_type, address] => {
            (port, Some(parse_address(net_type, addr_type, address)?))
        }
        _ => return Err(SdpError::Malformed("bad a=rtcp")),
    };
    match parse_u16(port) {
        Some(port) if port != 0 => Ok((port, address)),
        _ => Err(SdpError::Malformed("bad a=rtcp port")),
    }
}
