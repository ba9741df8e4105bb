//! Which side of an established call hears music on hold: a side that wants to receive (its SDP
//! `sendrecv` or `recvonly`) while the other holds it (`sendonly`, `inactive`, or `c=0.0.0.0`), in
//! the first G.711 payload type its own SDP lists. Derived from the two sides' last SDP after every
//! input, so a call carried on after a failover plays the same from its record.

use pbx_sip::sdp::{Direction, MediaInfo, Sdp};

use super::{Action, CALLEE, CALLER, CallCore, Phase, side_of};
use crate::media::music::{PCMA, PCMU};

/// Whether `m` holds the other side: it sends at most, or gives no address.
fn holds(m: &MediaInfo) -> bool {
    m.port != 0
        && (matches!(m.direction, Direction::SendOnly | Direction::Inactive) || m.address.is_none())
}

/// The G.711 payload type `m` receives in, if it wants to receive at all.
fn listens_in(m: &MediaInfo) -> Option<u8> {
    let receives = m.port != 0
        && m.address.is_some()
        && matches!(m.direction, Direction::SendRecv | Direction::RecvOnly);
    if !receives || m.kind != "audio" {
        return None;
    }
    m.formats.iter().find_map(|f| match f.as_str() {
        "0" => Some(PCMU),
        "8" => Some(PCMA),
        _ => None,
    })
}

/// Per stream, `[caller, callee]`: the payload type each side hears music in, if any.
pub(super) fn music_for(sdp: &[Sdp; 2], streams: usize) -> Vec<[Option<u8>; 2]> {
    (0..streams)
        .map(|i| {
            [CALLER, CALLEE].map(|side| {
                let mine = sdp[side].media().get(i)?;
                let theirs = sdp[1 - side].media().get(i)?;
                holds(theirs).then(|| listens_in(mine)).flatten()
            })
        })
        .collect()
}

impl CallCore {
    /// The G.711 payload type each side of the first stream receives in, `[caller, callee]`
    /// (`None`: another codec, or it receives nothing now): what a notice is played to it in.
    pub(crate) fn g711_heard(&self) -> [Option<u8>; 2] {
        [CALLER, CALLEE].map(|side| self.sdp[side].media().first().and_then(listens_in))
    }

    /// Starts or stops music on hold where the call's SDP now says so.
    pub(super) fn update_music(&mut self) {
        let now = if self.env.config.hold_music && matches!(self.phase, Phase::Talking) {
            music_for(&self.sdp, self.ports.len())
        } else {
            vec![[None, None]; self.ports.len()]
        };
        self.music.resize(now.len(), [None, None]);
        for (stream, sides) in now.into_iter().enumerate() {
            for side in [CALLER, CALLEE] {
                if self.music[stream][side] != sides[side] {
                    self.music[stream][side] = sides[side];
                    if sides[side].is_some() {
                        tracing::info!(call = %self.id, stream, side = ?side_of(side), "music on hold");
                    }
                    self.push(Action::HoldMusic {
                        stream,
                        side: side_of(side),
                        pt: sides[side],
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp(port: u16, addr: &str, formats: &str, direction: &str) -> Sdp {
        let text = format!(
            "v=0\r\no=- 1 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\na={direction}\r\n"
        );
        Sdp::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn the_held_side_hears_music_in_its_own_g711() {
        let talking = [
            sdp(4000, "198.18.0.21", "0 101", "sendrecv"),
            sdp(6000, "198.18.0.31", "8 0", "sendrecv"),
        ];
        assert_eq!(music_for(&talking, 1), [[None, None]]);
        // The caller holds (sendonly); the callee answers recvonly and hears A-law, its first.
        let held = [
            sdp(4000, "198.18.0.21", "0 101", "sendonly"),
            sdp(6000, "198.18.0.31", "8 0", "recvonly"),
        ];
        assert_eq!(music_for(&held, 1), [[None, Some(PCMA)]]);
        // RFC 2543 hold: the caller's address is 0.0.0.0.
        let old_style = [
            sdp(4000, "0.0.0.0", "0", "sendrecv"),
            sdp(6000, "198.18.0.31", "0", "sendrecv"),
        ];
        assert_eq!(music_for(&old_style, 1), [[None, Some(PCMU)]]);
        // Held with `inactive`: the answer is inactive too, and nobody wants to receive.
        let inactive = [
            sdp(4000, "198.18.0.21", "0", "inactive"),
            sdp(6000, "198.18.0.31", "0", "inactive"),
        ];
        assert_eq!(music_for(&inactive, 1), [[None, None]]);
        // No G.711 on the held side: no music.
        let g722 = [
            sdp(4000, "198.18.0.21", "9", "sendonly"),
            sdp(6000, "198.18.0.31", "9", "recvonly"),
        ];
        assert_eq!(music_for(&g722, 1), [[None, None]]);
    }
}
