//! Recording on demand: in a call of an extension whose policy is `on_demand`, its user presses
//! the feature code (`*1`, RFC 4733 telephone-events in the call's media) to start recording, and
//! again to stop. The keys still reach the other party, as any key does.
//!
//! Whether the recording is on is replicated (a setting named by [`on_demand_key`]), so the node
//! that carries the call on after a failover goes on recording in a new segment.
//!
//! [`on_demand_key`]: storage::recording::on_demand_key

use std::sync::Arc;
use std::time::{Duration, Instant};

use pbx_media::tone::ToneGenerator;

use crate::apps::Keys;
use crate::media::Tapped;

/// What the user presses, `*` then `1`, to start or stop the recording.
pub(crate) const TOGGLE_CODE: &str = "*1";

/// The longest pause between the code's two keys.
const BETWEEN_KEYS: Duration = Duration::from_secs(3);

/// The payload types a session description gives telephone-events (`a=rtpmap:N
/// telephone-event/8000`), in any of its streams.
pub(crate) fn event_payload_types(sdp: &str) -> Vec<u8> {
    sdp.lines()
        .filter_map(|line| line.trim_end().strip_prefix("a=rtpmap:"))
        .filter_map(|map| map.split_once(' '))
        .filter(|(_, codec)| {
            codec
                .to_ascii_lowercase()
                .starts_with("telephone-event/8000")
        })
        .filter_map(|(pt, _)| pt.parse::<u8>().ok())
        .filter(|pt| (96..128).contains(pt))
        .collect()
}

/// The parties hear a notice when recording starts (one beep) and stops (two): 1,400 Hz, softer
/// than the prompts, as it plays over the conversation.
pub(crate) fn notice(started: bool) -> Arc<[i16]> {
    let beep = |ms: usize| {
        let mut out = vec![0i16; ms * 8];
        if let Ok(mut tone) = ToneGenerator::new(1_400.0, 6_000, 8_000) {
            tone.fill(&mut out);
        }
        out
    };
    let mut clip = beep(if started { 300 } else { 150 });
    if !started {
        clip.extend(std::iter::repeat_n(0, 100 * 8));
        clip.extend(beep(150));
    }
    clip.into()
}

/// Recognises the code in one side's keys.
#[derive(Debug, Default)]
pub(crate) struct ToggleCode {
    /// When `*` was pressed, if it was the last key.
    star_at: Option<Instant>,
}

impl ToggleCode {
    /// A key pressed at `at`: whether it completed the code.
    pub(crate) fn key(&mut self, key: char, at: Instant) -> bool {
        let after_star = self
            .star_at
            .take()
            .is_some_and(|star| at.saturating_duration_since(star) <= BETWEEN_KEYS);
        if key == '*' {
            self.star_at = Some(at);
            return false;
        }
        after_star && key == '1'
    }
}

/// The extension allowed to press the code on one side of the call, and its keys so far.
pub(crate) struct Presser {
    pub(crate) extension: String,
    keys: Option<(u8, Keys)>,
    code: ToggleCode,
}

impl Presser {
    pub(crate) fn new(extension: String) -> Self {
        Self {
            extension,
            keys: None,
            code: ToggleCode::default(),
        }
    }

    /// A telephone-event packet this side sent, at `at`: whether it completed the code.
    pub(crate) fn packet(&mut self, packet: &[u8], at: Instant) -> bool {
        let Some(pt) = packet.get(1).map(|b| b & 0x7f) else {
            return false;
        };
        // A phone sends with one payload type; should it change, its presses start afresh.
        if self.keys.as_ref().is_none_or(|(p, _)| *p != pt) {
            self.keys = Some((pt, Keys::new(Some(pt))));
        }
        let Some((_, keys)) = self.keys.as_mut() else {
            return false;
        };
        let mut toggled = false;
        for key in keys.packet(packet) {
            toggled |= self.code.key(key, at);
        }
        toggled
    }
}

/// The call's listener: the packets of the sides whose extension may press the code.
pub(crate) struct OnDemand {
    pub(crate) packets: tokio::sync::mpsc::Receiver<Tapped>,
    pub(crate) sides: [Option<Presser>; 2],
}

impl OnDemand {
    /// A packet from the relay: the extension that completed the code with it, if one did.
    pub(crate) fn packet(&mut self, tapped: &Tapped, at: Instant) -> Option<String> {
        let presser = self.sides.get_mut(tapped.side)?.as_mut()?;
        presser
            .packet(&tapped.packet, at)
            .then(|| presser.extension.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notices_are_one_beep_to_start_and_two_to_stop() {
        let loud = |clip: &[i16]| clip.iter().filter(|s| s.unsigned_abs() > 1000).count();
        let start = notice(true);
        assert_eq!(start.len(), 2400);
        assert!(loud(&start) > 1000);
        let stop = notice(false);
        assert_eq!(stop.len(), 3200);
        assert_eq!(loud(&stop[1200..2000]), 0, "a pause between the two beeps");
        assert!(loud(&stop[..1200]) > 500 && loud(&stop[2000..]) > 500);
    }

    #[test]
    fn star_then_one_within_the_pause_is_the_code() {
        let t0 = Instant::now();
        let mut code = ToggleCode::default();
        assert!(!code.key('*', t0));
        assert!(code.key('1', t0 + Duration::from_secs(1)));
        // Each completion needs its own star.
        assert!(!code.key('1', t0 + Duration::from_secs(2)));
        // Too slow, other keys between, the other order: no.
        assert!(!code.key('*', t0));
        assert!(!code.key('1', t0 + Duration::from_secs(4)));
        assert!(!code.key('*', t0));
        assert!(!code.key('2', t0));
        assert!(!code.key('1', t0));
        assert!(!code.key('1', t0));
        assert!(!code.key('*', t0));
        // A second star restarts the pause.
        assert!(!code.key('*', t0 + Duration::from_secs(2)));
        assert!(code.key('1', t0 + Duration::from_secs(4)));
    }

    /// RFC 4733 packets of one press of `key` (event code), with timestamp `ts`.
    fn press(event: u8, ts: u32, pt: u8) -> Vec<Vec<u8>> {
        [(false, 160u16), (true, 480), (true, 480)]
            .into_iter()
            .enumerate()
            .map(|(n, (end, duration))| {
                let mut p = vec![0x80, pt, 0, n as u8];
                p.extend_from_slice(&ts.to_be_bytes());
                p.extend_from_slice(&[0, 0, 0, 7]);
                let flags = if end { 0x8a } else { 0x0a };
                p.extend_from_slice(&[event, flags, (duration >> 8) as u8, duration as u8]);
                p
            })
            .collect()
    }

    #[test]
    fn the_code_pressed_on_a_watched_side_names_its_extension() {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        drop(tx);
        let mut on_demand = OnDemand {
            packets: rx,
            sides: [Some(Presser::new("1001".into())), None],
        };
        let at = Instant::now();
        let mut completed = Vec::new();
        for (side, event, ts) in [(0, 10, 1000), (0, 1, 5000), (1, 10, 1000), (1, 1, 5000)] {
            for packet in press(event, ts, 101) {
                let tapped = Tapped { side, packet };
                completed.extend(on_demand.packet(&tapped, at));
            }
        }
        assert_eq!(completed, ["1001"], "once, on the watched side only");
        // Garbage and an empty packet complete nothing.
        for packet in [vec![], vec![0x80], vec![0x80, 101, 1, 2, 3]] {
            assert_eq!(on_demand.packet(&Tapped { side: 0, packet }, at), None);
        }
    }

    #[test]
    fn telephone_event_types_are_read_from_every_stream() {
        let sdp = "v=0\r\nm=audio 4000 RTP/AVP 9 0 101\r\na=rtpmap:9 G722/8000\r\n\
                   a=rtpmap:101 telephone-event/8000\r\nm=audio 4002 RTP/AVP 8 96\r\n\
                   a=rtpmap:96 TELEPHONE-EVENT/8000\r\na=rtpmap:18 telephone-event/8000\r\n\
                   a=rtpmap:97 telephone-event/48000\r\n";
        assert_eq!(event_payload_types(sdp), [101, 96]);
        assert!(event_payload_types("").is_empty());
    }
}
