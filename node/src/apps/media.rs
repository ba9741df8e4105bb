//! An application's side of a call's media: the offer taken (G.711 and RFC 4733 telephone-events),
//! clips played as RTP every 20 ms (silence between them, so the stream never stops), and keys
//! read from telephone-event packets.
//!
//! Pure: [`super::session`] drives them on a loopback socket.

use std::net::SocketAddr;
use std::sync::Arc;

use pbx_media::dtmf::DtmfReceiver;
use pbx_media::g711::Law;
use pbx_media::rtp::{RtpHeader, RtpPacket};

/// Samples per packet: 20 ms at 8 kHz.
pub(crate) const FRAME: usize = 160;

/// What the offer and our answer agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Agreed {
    pub(crate) law: Law,
    pub(crate) pt: u8,
    /// The telephone-event payload type, when the offer has one.
    pub(crate) events: Option<u8>,
    /// Which of the offer's m-lines is the audio we take.
    pub(crate) stream: usize,
    streams: Vec<String>,
}

/// Why an offer cannot be taken (the call is refused with `488`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OfferError {
    #[error("no offer")]
    Empty,
    #[error("no plain RTP audio stream with G.711")]
    NoG711,
}

/// Picks the first G.711 format of the first plain-RTP audio stream, and its telephone-events.
pub(crate) fn negotiate(offer: &[u8]) -> Result<Agreed, OfferError> {
    let text = std::str::from_utf8(offer).map_err(|_| OfferError::Empty)?;
    let mut streams = Vec::new();
    let mut chosen: Option<(usize, Law, u8)> = None;
    let mut events = None;
    let mut current = None;
    for line in text.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut f = m.split_ascii_whitespace();
            let (kind, port, proto) = (f.next(), f.next(), f.next());
            let formats: Vec<&str> = f.collect();
            let i = streams.len();
            streams.push(format!(
                "{} 0 {} {}",
                kind.unwrap_or("audio"),
                proto.unwrap_or("RTP/AVP"),
                formats.first().copied().unwrap_or("0")
            ));
            current = Some(i);
            let usable = chosen.is_none()
                && kind == Some("audio")
                && proto == Some("RTP/AVP")
                && port.is_some_and(|p| p != "0");
            if usable {
                chosen = formats.iter().find_map(|f| match *f {
                    "0" => Some((i, Law::Ulaw, 0)),
                    "8" => Some((i, Law::Alaw, 8)),
                    _ => None,
                });
            }
        } else if let Some(map) = line.strip_prefix("a=rtpmap:")
            && current.is_some()
            && chosen.is_some_and(|(i, _, _)| Some(i) == current)
        {
            let (pt, codec) = map.split_once(' ').unwrap_or((map, ""));
            if codec
                .to_ascii_lowercase()
                .starts_with("telephone-event/8000")
            {
                events = pt.parse().ok().filter(|p: &u8| *p >= 96 && *p < 128);
            }
        }
    }
    if streams.is_empty() {
        return Err(OfferError::Empty);
    }
    let (stream, law, pt) = chosen.ok_or(OfferError::NoG711)?;
    Ok(Agreed {
        law,
        pt,
        events,
        stream,
        streams,
    })
}

impl Agreed {
    /// Our answer: audio at `local` in the agreed format, every other stream refused (port 0).
    pub(crate) fn answer(&self, local: SocketAddr, session: u64) -> Vec<u8> {
        let ip = local.ip();
        let mut s =
            format!("v=0\r\no=pbx {session} 1 IN IP4 {ip}\r\ns=pbx\r\nc=IN IP4 {ip}\r\nt=0 0\r\n");
        for (i, refused) in self.streams.iter().enumerate() {
            if i != self.stream {
                s.push_str(&format!("m={refused}\r\n"));
                continue;
            }
            let name = if self.law == Law::Ulaw {
                "PCMU"
            } else {
                "PCMA"
            };
            match self.events {
                Some(te) => s.push_str(&format!(
                    "m=audio {} RTP/AVP {} {te}\r\na=rtpmap:{} {name}/8000\r\n\
                     a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n",
                    local.port(),
                    self.pt,
                    self.pt
                )),
                None => s.push_str(&format!(
                    "m=audio {} RTP/AVP {}\r\na=rtpmap:{} {name}/8000\r\n",
                    local.port(),
                    self.pt,
                    self.pt
                )),
            }
            s.push_str("a=ptime:20\r\na=sendrecv\r\n");
        }
        s.into_bytes()
    }
}

/// The outgoing stream: the clip playing now, else silence.
#[derive(Debug)]
pub(crate) struct Playout {
    law: Law,
    pt: u8,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    clip: Option<(Arc<[i16]>, usize)>,
    marker: bool,
}

impl Playout {
    pub(crate) fn new(law: Law, pt: u8, ssrc: u32) -> Self {
        Self {
            law,
            pt,
            seq: (ssrc >> 16) as u16,
            timestamp: ssrc.rotate_left(7),
            ssrc,
            clip: None,
            marker: true,
        }
    }

    /// Plays `clip` from its start, instead of whatever played.
    pub(crate) fn play(&mut self, clip: Arc<[i16]>) {
        self.clip = Some((clip, 0));
        self.marker = true;
    }

    pub(crate) fn stop(&mut self) {
        self.clip = None;
    }

    /// The stream's SSRC, and the sequence number and timestamp of its next packet: whoever sends
    /// on the call after this playout goes on from there, so the phone hears one stream.
    pub(crate) fn next_position(&self) -> (u32, u16, u32) {
        (self.ssrc, self.seq, self.timestamp)
    }

    /// The next 20 ms packet, and whether the clip ended with it.
    pub(crate) fn next_packet(&mut self, out: &mut Vec<u8>) -> bool {
        let mut pcm = [0i16; FRAME];
        let mut ended = false;
        if let Some((clip, at)) = self.clip.as_mut() {
            let n = FRAME.min(clip.len().saturating_sub(*at));
            pcm[..n].copy_from_slice(&clip[*at..*at + n]);
            *at += n;
            if *at >= clip.len() {
                ended = true;
                self.clip = None;
            }
        }
        let header = RtpHeader {
            marker: std::mem::take(&mut self.marker),
            payload_type: self.pt,
            sequence: self.seq,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
        };
        let mut payload = Vec::with_capacity(FRAME);
        self.law.encode_into(&pcm, &mut payload);
        out.clear();
        // A fixed header with a 160-byte payload always fits.
        let _ = header.write(&payload, out);
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME as u32);
        ended
    }
}

/// Keys pressed, from the incoming stream's telephone-events.
#[derive(Debug)]
pub(crate) struct Keys {
    events: Option<u8>,
    receiver: DtmfReceiver,
}

impl Keys {
    pub(crate) fn new(events: Option<u8>) -> Self {
        Self {
            events,
            receiver: DtmfReceiver::default(),
        }
    }

    /// A datagram from the call; the keys it completed. Audio and anything malformed give none.
    pub(crate) fn packet(&mut self, datagram: &[u8]) -> Vec<char> {
        let Ok(p) = RtpPacket::parse(datagram) else {
            return Vec::new();
        };
        if Some(p.header.payload_type) != self.events {
            return Vec::new();
        }
        if self
            .receiver
            .handle_packet(p.header.timestamp, p.payload)
            .is_err()
        {
            return Vec::new();
        }
        std::iter::from_fn(|| self.receiver.poll_event())
            .map(|e| e.digit)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 198.18.0.1\r\ns=-\r\nc=IN IP4 198.18.0.1\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 9 8 0 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n\
        m=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";

    #[test]
    fn the_first_g711_of_the_offer_is_taken_with_its_events_and_video_refused() {
        let a = negotiate(OFFER.as_bytes()).unwrap();
        assert_eq!((a.law, a.pt, a.events), (Law::Alaw, 8, Some(101)));
        let answer = String::from_utf8(a.answer("127.0.0.1:7000".parse().unwrap(), 9)).unwrap();
        let sdp = pbx_sip::sdp::Sdp::parse(answer.as_bytes()).unwrap();
        let m = sdp.media();
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].port, m[0].formats.clone()),
            (7000, vec!["8".into(), "101".into()])
        );
        assert_eq!(m[1].port, 0);
    }

    #[test]
    fn offers_without_g711_or_with_srtp_are_refused() {
        let g722 = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 9\r\n";
        assert_eq!(negotiate(g722.as_bytes()), Err(OfferError::NoG711));
        let srtp = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/SAVP 0\r\n";
        assert_eq!(negotiate(srtp.as_bytes()), Err(OfferError::NoG711));
        assert_eq!(negotiate(b""), Err(OfferError::Empty));
        assert_eq!(negotiate(&[0xff, 0xfe]), Err(OfferError::Empty));
    }

    #[test]
    fn a_clip_plays_once_then_silence_and_the_stream_stays_continuous() {
        let mut p = Playout::new(Law::Ulaw, 0, 0x1234_5678);
        let clip: Arc<[i16]> = vec![8000i16; 400].into();
        p.play(clip);
        let mut out = Vec::new();
        let mut seqs = Vec::new();
        let mut ends = Vec::new();
        for _ in 0..5 {
            ends.push(p.next_packet(&mut out));
            let pkt = RtpPacket::parse(&out).unwrap();
            seqs.push(pkt.header.sequence);
            assert_eq!(pkt.payload.len(), FRAME);
        }
        // 400 samples: two whole frames and a part; the third packet ends the clip.
        assert_eq!(ends, [false, false, true, false, false]);
        assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
        let silence = RtpPacket::parse(&out).unwrap().payload[0];
        assert_eq!(Law::Ulaw.decode(silence), 0);
    }

    #[test]
    fn the_next_position_is_the_next_packets() {
        let mut p = Playout::new(Law::Ulaw, 0, 0x1234_5678);
        let mut out = Vec::new();
        p.next_packet(&mut out);
        let (ssrc, seq, timestamp) = p.next_position();
        p.next_packet(&mut out);
        let h = RtpPacket::parse(&out).unwrap().header;
        assert_eq!((h.ssrc, h.sequence, h.timestamp), (ssrc, seq, timestamp));
    }

    fn event(ts: u32, digit: u8, end: bool, duration: u16) -> Vec<u8> {
        let header = RtpHeader {
            marker: false,
            payload_type: 101,
            sequence: 1,
            timestamp: ts,
            ssrc: 7,
        };
        let payload = [
            digit,
            if end { 0x8a } else { 0x0a },
            (duration >> 8) as u8,
            duration as u8,
        ];
        let mut out = Vec::new();
        header.write(&payload, &mut out).unwrap();
        out
    }

    #[test]
    fn keys_come_from_telephone_events_once_each() {
        let mut k = Keys::new(Some(101));
        assert!(k.packet(&event(100, 2, false, 160)).is_empty());
        assert_eq!(k.packet(&event(100, 2, true, 800)), ['2']);
        // The end packet repeated (RFC 4733 sends it three times): nothing more.
        assert!(k.packet(&event(100, 2, true, 800)).is_empty());
        assert_eq!(k.packet(&event(900, 11, true, 800)), ['#']);
        // Garbage and another payload type change nothing.
        assert!(k.packet(&[0x80, 0x65]).is_empty());
        let mut other = event(1000, 5, true, 800);
        other[1] = 0;
        assert!(k.packet(&other).is_empty());
        // Without negotiated events no key is read.
        assert!(Keys::new(None).packet(&event(100, 2, true, 800)).is_empty());
    }
}

/// One call's media as a session drives it: the loopback socket, the playout sent every 20 ms
/// to the relay (only to the address the offer named, or when it named none the first sender),
/// and the keys read from what comes back.
pub(crate) struct CallMedia {
    pub(crate) sock: Arc<tokio::net::UdpSocket>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) playout: Playout,
    keys: Keys,
    tick: tokio::time::Interval,
    buf: Vec<u8>,
    len: usize,
    packet: Vec<u8>,
}

/// What [`CallMedia::next`] saw.
#[derive(Debug)]
pub(crate) enum Heard {
    /// A 20 ms packet went out; `ended` when the clip playing ended with it.
    Tick { ended: bool },
    /// A datagram from the call ([`CallMedia::datagram`]), with the keys it completed.
    Packet { keys: Vec<char> },
}

/// Longest RTP datagram read.
const MAX_RTP: usize = 1500;

impl CallMedia {
    pub(crate) fn new(
        agreed: &Agreed,
        sock: Arc<tokio::net::UdpSocket>,
        peer: Option<SocketAddr>,
    ) -> Self {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            sock,
            peer,
            playout: Playout::new(agreed.law, agreed.pt, rand::random()),
            keys: Keys::new(agreed.events),
            tick,
            buf: vec![0; MAX_RTP],
            len: 0,
            packet: Vec::with_capacity(12 + FRAME),
        }
    }

    /// Waits for the next tick (and sends its packet) or the next datagram from the call.
    /// Cancel-safe: usable as a branch of `select!`.
    pub(crate) async fn next(&mut self) -> Heard {
        loop {
            tokio::select! {
                _ = self.tick.tick() => {
                    let ended = self.playout.next_packet(&mut self.packet);
                    if let Some(to) = self.peer {
                        let _ = self.sock.try_send_to(&self.packet, to);
                    }
                    return Heard::Tick { ended };
                }
                got = self.sock.recv_from(&mut self.buf) => {
                    let Ok((n, from)) = got else { continue };
                    if self.peer.is_some_and(|p| p != from) {
                        continue;
                    }
                    self.peer = Some(from);
                    self.len = n;
                    let keys = self.keys.packet(&self.buf[..n]);
                    return Heard::Packet { keys };
                }
            }
        }
    }

    /// The datagram the last [`Heard::Packet`] was.
    pub(crate) fn datagram(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}
