//! RFC 4733 telephone-events for DTMF: the 4-byte payload, a receiver that turns a packet
//! stream into each digit exactly once, and a sender that lays out the packets for one digit.
//!
//! A sender repeats itself on purpose (updates while the key is held, three end packets), and
//! networks lose and reorder packets, so the receiver keys every event on its RTP timestamp: all
//! packets of one key press carry the timestamp of its start.

use std::collections::VecDeque;

use thiserror::Error;

/// Size of one event block in the payload.
pub const EVENT_LEN: usize = 4;
/// Highest volume value (the field is -dBm0, 6 bits).
pub const MAX_VOLUME: u8 = 63;

/// Why a telephone-event payload or a send request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DtmfError {
    /// The payload is shorter than one 4-byte event block.
    #[error("telephone-event payload of {0} bytes is shorter than 4")]
    Truncated(usize),
    /// The character is not one of 0-9, *, #, A-D.
    #[error("{0:?} is not a DTMF digit")]
    NotADigit(char),
    /// The duration is zero or does not fit the 16-bit duration field at the clock rate.
    #[error("DTMF duration of {0} ms cannot be sent")]
    Duration(u32),
}

/// The DTMF digit for event codes 0-15 (RFC 4733 §3.2); other codes are not DTMF.
pub const fn event_to_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some((b'0' + event) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + event - 12) as char),
        _ => None,
    }
}

/// The event code for a DTMF digit; `a`-`d` are accepted as `A`-`D`.
pub const fn digit_to_event(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

/// One telephone-event block (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TelephoneEvent {
    /// Event code; 0-15 are the DTMF digits.
    pub event: u8,
    /// The E bit: this is (a copy of) the final packet of the event.
    pub end: bool,
    /// Power level as -dBm0, 0..=63; larger values are sent as 63.
    pub volume: u8,
    /// Duration so far, in units of the RTP clock, counted from the event's timestamp.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Reads the first event block of a payload. Further blocks (RFC 4733 §2.5.1.5 packs
    /// several only for long events and segments) are not read.
    pub fn parse(payload: &[u8]) -> Result<Self, DtmfError> {
        let Some(block) = payload.first_chunk::<EVENT_LEN>() else {
            return Err(DtmfError::Truncated(payload.len()));
        };
        Ok(Self {
            event: block[0],
            end: block[1] & 0x80 != 0,
            // The R bit (0x40) is reserved and ignored on receipt.
            volume: block[1] & 0x3F,
            duration: u16::from_be_bytes([block[2], block[3]]),
        })
    }

    /// The 4-byte block.
    pub fn encode(&self) -> [u8; EVENT_LEN] {
        let end = if self.end { 0x80 } else { 0 };
        let [d0, d1] = self.duration.to_be_bytes();
        [self.event, end | self.volume.min(MAX_VOLUME), d0, d1]
    }

    /// The DTMF digit this event carries, if it is one.
    pub const fn digit(&self) -> Option<char> {
        event_to_digit(self.event)
    }
}

/// Settings for [`DtmfReceiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfReceiverConfig {
    /// A digit whose duration reaches this many clock units is reported even though no end
    /// packet has arrived (a sender that never sends one, or lost every one mid-update).
    pub max_duration: u16,
}

impl Default for DtmfReceiverConfig {
    fn default() -> Self {
        // Two seconds at the usual 8 kHz event clock: far longer than any real key press.
        Self {
            max_duration: 16_000,
        }
    }
}

/// A digit the receiver recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfEvent {
    /// '0'-'9', '*', '#', 'A'-'D'.
    pub digit: char,
    /// RTP timestamp of the event (its start).
    pub timestamp: u32,
    /// Longest duration seen for the event, in clock units.
    pub duration: u16,
    /// Whether an end packet was seen; false when reported because a new event started, the
    /// duration limit was reached, or the stream finished.
    pub ended: bool,
}

/// Timestamps of recently reported events, so their late or repeated packets are ignored.
/// Eight covers any plausible reordering depth between key presses.
const REPORTED_HISTORY: usize = 8;

#[derive(Debug, Clone, Copy)]
struct PendingDigit {
    digit: char,
    timestamp: u32,
    duration: u16,
}

/// Turns received telephone-event packets into digits, each exactly once.
///
/// Feed every packet of the negotiated telephone-event payload type to
/// [`handle_packet`](Self::handle_packet), then drain [`poll_event`](Self::poll_event).
#[derive(Debug, Clone)]
pub struct DtmfReceiver {
    config: DtmfReceiverConfig,
    pending: Option<PendingDigit>,
    reported: VecDeque<u32>,
    events: VecDeque<DtmfEvent>,
}

impl DtmfReceiver {
    /// A receiver with no event in progress.
    pub fn new(config: DtmfReceiverConfig) -> Self {
        Self {
            config,
            pending: None,
            reported: VecDeque::with_capacity(REPORTED_HISTORY),
            events: VecDeque::new(),
        }
    }

    /// Takes one packet's RTP timestamp and payload. Events outside 0-15 are ignored; a payload
    /// too short to hold an event is refused and changes nothing.
    pub fn handle_packet(&mut self, timestamp: u32, payload: &[u8]) -> Result<(), DtmfError> {
        let event = TelephoneEvent::parse(payload)?;
        let Some(digit) = event.digit() else {
            return Ok(());
        };
        if self.reported.contains(&timestamp) {
            // A redundant end packet, or a late update or retransmitted start.
            return Ok(());
        }
        let pending = match self.pending.take() {
            Some(mut same) if same.timestamp == timestamp => {
                same.duration = same.duration.max(event.duration);
                same
            }
            other => {
                // A new timestamp means the previous event is over even if we never saw its end.
                if let Some(previous) = other {
                    self.report(previous, false);
                }
                PendingDigit {
                    digit,
                    timestamp,
                    duration: event.duration,
                }
            }
        };
        if event.end || pending.duration >= self.config.max_duration {
            self.report(pending, event.end);
        } else {
            self.pending = Some(pending);
        }
        Ok(())
    }

    /// The stream has ended (call hung up, payload renegotiated): reports a digit still waiting
    /// for its end packet.
    pub fn finish(&mut self) {
        if let Some(pending) = self.pending.take() {
            self.report(pending, false);
        }
    }

    /// The next recognised digit, in the order the events started.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<DtmfEvent> {
        self.events.pop_front()
    }

    fn report(&mut self, digit: PendingDigit, ended: bool) {
        if self.reported.len() == REPORTED_HISTORY {
            self.reported.pop_front();
        }
        self.reported.push_back(digit.timestamp);
        self.events.push_back(DtmfEvent {
            digit: digit.digit,
            timestamp: digit.timestamp,
            duration: digit.duration,
            ended,
        });
    }
}

impl Default for DtmfReceiver {
    fn default() -> Self {
        Self::new(DtmfReceiverConfig::default())
    }
}

/// Settings for [`DtmfSender`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfSenderConfig {
    /// RTP clock rate of the telephone-event payload type (8000 unless negotiated otherwise).
    pub clock_rate: u32,
    /// Volume field, -dBm0.
    pub volume: u8,
    /// How often an update packet is sent while the digit lasts.
    pub update_interval_ms: u32,
}

impl Default for DtmfSenderConfig {
    fn default() -> Self {
        Self {
            clock_rate: 8_000,
            volume: 10,
            update_interval_ms: 50,
        }
    }
}

/// One packet of a digit, ready to be put behind an RTP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// When to send it, in clock units after the event's start.
    pub send_at: u32,
    /// The RTP marker bit (set on the first packet of the event only).
    pub marker: bool,
    /// The RTP timestamp: the event's start, the same on every packet.
    pub timestamp: u32,
    /// The payload.
    pub event: TelephoneEvent,
}

/// Number of copies of the end packet; RFC 4733 §2.5.1.4 recommends three.
pub const END_PACKET_COPIES: usize = 3;

/// Lays out the packets for one digit; the caller sends each at its `send_at` and rate-limits.
#[derive(Debug, Clone, Copy, Default)]
pub struct DtmfSender {
    config: DtmfSenderConfig,
}

impl DtmfSender {
    /// A sender with these settings.
    pub fn new(config: DtmfSenderConfig) -> Self {
        Self { config }
    }

    /// The packets for `digit` held for `duration_ms`, starting at RTP timestamp
    /// `start_timestamp`: a start packet with the marker, an update every update interval, then
    /// three identical end packets carrying the full duration.
    pub fn packets(
        &self,
        digit: char,
        start_timestamp: u32,
        duration_ms: u32,
    ) -> Result<Vec<DtmfPacket>, DtmfError> {
        let code = digit_to_event(digit).ok_or(DtmfError::NotADigit(digit))?;
        let clock = u64::from(self.config.clock_rate);
        let total = u16::try_from(u64::from(duration_ms) * clock / 1000)
            .ok()
            .filter(|&t| t > 0)
            .ok_or(DtmfError::Duration(duration_ms))?;
        // At least one clock unit, so a zero interval in the settings cannot loop forever.
        let interval = (u64::from(self.config.update_interval_ms) * clock / 1000).max(1);

        let block = |duration: u16, end: bool| TelephoneEvent {
            event: code,
            end,
            volume: self.config.volume.min(MAX_VOLUME),
            duration,
        };
        let mut packets = Vec::new();
        let mut elapsed = interval;
        while elapsed < u64::from(total) {
            // `elapsed < total <= u16::MAX` here.
            let duration = u16::try_from(elapsed).unwrap_or(total);
            packets.push(DtmfPacket {
                send_at: u32::from(duration),
                marker: packets.is_empty(),
                timestamp: start_timestamp,
                event: block(duration, false),
            });
            elapsed += interval;
        }
        if packets.is_empty() {
            // Shorter than one update interval: the start packet goes out when the digit ends.
            packets.push(DtmfPacket {
                send_at: u32::from(total),
                marker: true,
                timestamp: start_timestamp,
                event: block(total, false),
            });
        }
        for _ in 0..END_PACKET_COPIES {
            packets.push(DtmfPacket {
                send_at: u32::from(total),
                marker: false,
                timestamp: start_timestamp,
                event: block(total, true),
            });
        }
        Ok(packets)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

    use super::*;

    fn payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
        TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        }
        .encode()
    }

    fn drain(rx: &mut DtmfReceiver) -> Vec<DtmfEvent> {
        std::iter::from_fn(|| rx.poll_event()).collect()
    }

    fn digits(rx: &mut DtmfReceiver) -> String {
        drain(rx).into_iter().map(|e| e.digit).collect()
    }

    #[test]
    fn digit_mapping_covers_all_sixteen_events() {
        let expected = "0123456789*#ABCD";
        for (code, digit) in expected.chars().enumerate() {
            let code = code as u8;
            assert_eq!(event_to_digit(code), Some(digit));
            assert_eq!(digit_to_event(digit), Some(code));
        }
        assert_eq!(digit_to_event('b'), Some(13));
        for code in 16..=255u8 {
            assert_eq!(event_to_digit(code), None);
        }
        for c in ['E', 'e', ' ', 'x', '+', '\0', 'é'] {
            assert_eq!(digit_to_event(c), None);
        }
    }

    #[test]
    fn payload_round_trips_and_matches_the_rfc_layout() {
        let event = TelephoneEvent {
            event: 11,
            end: true,
            volume: 63,
            duration: 0x1234,
        };
        assert_eq!(event.encode(), [11, 0x80 | 63, 0x12, 0x34]);
        assert_eq!(TelephoneEvent::parse(&event.encode()).unwrap(), event);
        assert_eq!(event.digit(), Some('#'));
    }

    #[test]
    fn parse_ignores_reserved_bit_and_trailing_blocks() {
        let parsed = TelephoneEvent::parse(&[5, 0x40 | 7, 0, 160, 9, 9, 9, 9]).unwrap();
        assert_eq!(
            parsed,
            TelephoneEvent {
                event: 5,
                end: false,
                volume: 7,
                duration: 160
            }
        );
    }

    #[test]
    fn encode_clamps_the_volume_to_six_bits() {
        let loud = TelephoneEvent {
            event: 1,
            end: false,
            volume: 200,
            duration: 0,
        };
        assert_eq!(loud.encode()[1], 63, "never spills into the E or R bit");
    }

    #[test]
    fn short_payloads_are_refused() {
        for len in 0..4 {
            assert_eq!(
                TelephoneEvent::parse(&[1, 2, 3][..len.min(3)]),
                Err(DtmfError::Truncated(len.min(3)))
            );
        }
        let mut rx = DtmfReceiver::default();
        assert_eq!(rx.handle_packet(0, &[1]), Err(DtmfError::Truncated(1)));
        assert_eq!(rx.poll_event(), None);
    }

    #[test]
    fn a_clean_digit_is_reported_once_at_its_end() {
        let mut rx = DtmfReceiver::default();
        rx.handle_packet(1000, &payload(5, false, 400)).unwrap();
        rx.handle_packet(1000, &payload(5, false, 800)).unwrap();
        assert_eq!(rx.poll_event(), None, "not before the end");
        for _ in 0..3 {
            rx.handle_packet(1000, &payload(5, true, 960)).unwrap();
        }
        assert_eq!(
            drain(&mut rx),
            vec![DtmfEvent {
                digit: '5',
                timestamp: 1000,
                duration: 960,
                ended: true
            }]
        );
    }

    #[test]
    fn retransmitted_starts_and_late_updates_do_not_repeat() {
        let mut rx = DtmfReceiver::default();
        rx.handle_packet(1000, &payload(1, false, 400)).unwrap();
        rx.handle_packet(1000, &payload(1, true, 800)).unwrap();
        rx.handle_packet(1000, &payload(1, false, 400)).unwrap();
        rx.handle_packet(1000, &payload(1, true, 800)).unwrap();
        assert_eq!(digits(&mut rx), "1");
        rx.finish();
        assert_eq!(digits(&mut rx), "", "nothing pending after the end");
    }

    #[test]
    fn the_same_digit_twice_is_two_events() {
        let mut rx = DtmfReceiver::default();
        for ts in [1000, 3000] {
            rx.handle_packet(ts, &payload(7, false, 400)).unwrap();
            rx.handle_packet(ts, &payload(7, true, 800)).unwrap();
            rx.handle_packet(ts, &payload(7, true, 800)).unwrap();
        }
        assert_eq!(digits(&mut rx), "77");
    }

    #[test]
    fn lost_end_packets_are_covered_by_the_next_event() {
        let mut rx = DtmfReceiver::default();
        rx.handle_packet(1000, &payload(2, false, 400)).unwrap();
        // All end packets of '2' lost; '3' starts.
        rx.handle_packet(2000, &payload(3, false, 400)).unwrap();
        let events = drain(&mut rx);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].digit, '2');
        assert!(!events[0].ended);
        // A straggling end of '2' arrives after all.
        rx.handle_packet(1000, &payload(2, true, 800)).unwrap();
        assert_eq!(rx.poll_event(), None);
        rx.handle_packet(2000, &payload(3, true, 800)).unwrap();
        assert_eq!(digits(&mut rx), "3");
    }

    #[test]
    fn lost_start_and_updates_still_report_on_end() {
        let mut rx = DtmfReceiver::default();
        rx.handle_packet(500, &payload(9, true, 800)).unwrap();
        rx.handle_packet(500, &payload(9, true, 800)).unwrap();
        assert_eq!(digits(&mut rx), "9");
    }

    #[test]
    fn a_short_event_that_arrives_as_only_end_packets_after_a_lost_end() {
        let mut rx = DtmfReceiver::default();
        rx.handle_packet(100, &payload(4, false, 400)).unwrap();
        // Next packet is already the end of the following digit: both come out, in order.
        rx.handle_packet(900, &payload(6, true, 320)).unwrap();
        assert_eq!(digits(&mut rx), "46");
    }

    #[test]
    fn a_digit_without_end_is_reported_at_the_duration_limit() {
        let mut rx = DtmfReceiver::new(DtmfReceiverConfig { max_duration: 1600 });
        let mut duration = 0;
        while duration < 4000 {
            duration += 400;
            rx.handle_packet(0, &payload(0, false, duration)).unwrap();
        }
        rx.handle_packet(0, &payload(0, true, 4400)).unwrap();
        let events = drain(&mut rx);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].digit, '0');
        assert_eq!(events[0].duration, 1600);
        assert!(!events[0].ended);
    }

    #[test]
    fn finish_reports_a_pending_digit_once() {
        let mut rx = DtmfReceiver::default();
        rx.handle_packet(77, &payload(15, false, 400)).unwrap();
        rx.finish();
        rx.finish();
        assert_eq!(digits(&mut rx), "D");
        rx.handle_packet(77, &payload(15, true, 800)).unwrap();
        assert_eq!(digits(&mut rx), "", "its end after finish is a repeat");
    }

    #[test]
    fn non_dtmf_events_are_ignored() {
        let mut rx = DtmfReceiver::default();
        rx.handle_packet(10, &payload(3, false, 400)).unwrap();
        // Flash (16) and a tone event (e.g. 32, modem) with new timestamps change nothing.
        rx.handle_packet(20, &payload(16, true, 400)).unwrap();
        rx.handle_packet(30, &payload(32, false, 400)).unwrap();
        rx.handle_packet(30, &payload(255, true, 400)).unwrap();
        assert_eq!(rx.poll_event(), None);
        rx.handle_packet(10, &payload(3, true, 800)).unwrap();
        let events = drain(&mut rx);
        assert_eq!(events.len(), 1);
        assert!(events[0].ended);
    }

    #[test]
    fn history_is_bounded_but_covers_recent_events() {
        let mut rx = DtmfReceiver::default();
        for ts in 0..20u32 {
            rx.handle_packet(ts * 1000, &payload(1, true, 400)).unwrap();
        }
        assert_eq!(digits(&mut rx).len(), 20);
        assert!(rx.reported.len() <= REPORTED_HISTORY);
        // The most recent ones are still recognised as repeats.
        rx.handle_packet(19_000, &payload(1, true, 400)).unwrap();
        rx.handle_packet(12_000, &payload(1, true, 400)).unwrap();
        assert_eq!(rx.poll_event(), None);
    }

    #[test]
    fn timestamps_wrapping_around_are_just_new_events() {
        let mut rx = DtmfReceiver::default();
        rx.handle_packet(u32::MAX - 100, &payload(1, true, 400))
            .unwrap();
        rx.handle_packet(500, &payload(2, true, 400)).unwrap();
        assert_eq!(digits(&mut rx), "12");
    }

    #[test]
    fn sender_lays_out_start_updates_and_three_ends() {
        let tx = DtmfSender::default();
        let packets = tx.packets('5', 4242, 120).unwrap();
        // 120 ms at 8 kHz = 960 units; updates every 400.
        let layout: Vec<_> = packets
            .iter()
            .map(|p| (p.send_at, p.marker, p.event.end, p.event.duration))
            .collect();
        assert_eq!(
            layout,
            vec![
                (400, true, false, 400),
                (800, false, false, 800),
                (960, false, true, 960),
                (960, false, true, 960),
                (960, false, true, 960),
            ]
        );
        for p in &packets {
            assert_eq!(p.timestamp, 4242);
            assert_eq!(p.event.event, 5);
            assert_eq!(p.event.volume, 10);
        }
        let ends: Vec<_> = packets.iter().filter(|p| p.event.end).collect();
        assert!(
            ends.windows(2).all(|w| w[0] == w[1]),
            "identical end packets"
        );
    }

    #[test]
    fn sender_exact_multiple_of_the_interval_has_no_update_at_the_end() {
        let packets = DtmfSender::default().packets('#', 0, 100).unwrap();
        let durations: Vec<_> = packets
            .iter()
            .map(|p| (p.event.duration, p.event.end))
            .collect();
        assert_eq!(
            durations,
            vec![(400, false), (800, true), (800, true), (800, true)]
        );
    }

    #[test]
    fn sender_short_digit_still_has_a_marked_start() {
        let packets = DtmfSender::default().packets('a', 0, 40).unwrap();
        assert_eq!(packets.len(), 4);
        assert!(packets[0].marker && !packets[0].event.end);
        assert_eq!(packets[0].event.duration, 320);
        assert_eq!(packets[0].event.event, 12);
        assert!(packets[1..].iter().all(|p| p.event.end && !p.marker));
    }

    #[test]
    fn sender_refuses_bad_requests() {
        let tx = DtmfSender::default();
        assert_eq!(tx.packets('x', 0, 100), Err(DtmfError::NotADigit('x')));
        assert_eq!(tx.packets('1', 0, 0), Err(DtmfError::Duration(0)));
        // 8192 ms at 8 kHz is 65536 units: one too many for the field.
        assert_eq!(tx.packets('1', 0, 8192), Err(DtmfError::Duration(8192)));
        assert!(tx.packets('1', 0, 8191).is_ok());
        assert_eq!(
            tx.packets('1', 0, u32::MAX),
            Err(DtmfError::Duration(u32::MAX))
        );
    }

    #[test]
    fn sender_survives_odd_settings() {
        let tx = DtmfSender::new(DtmfSenderConfig {
            clock_rate: 8_000,
            volume: 99,
            update_interval_ms: 0,
        });
        let packets = tx.packets('1', 0, 1).unwrap();
        // 1 ms = 8 units, updates every unit: 7 updates, then the ends.
        assert_eq!(packets.len(), 7 + 3);
        assert!(packets.iter().all(|p| p.event.volume == MAX_VOLUME));
    }

    #[test]
    fn sender_and_receiver_agree_even_with_loss_and_duplication() {
        let tx = DtmfSender::default();
        let mut rx = DtmfReceiver::default();
        let mut timestamp = 0u32;
        for digit in "1234567890*#ABCD".chars() {
            let packets = tx.packets(digit, timestamp, 160).unwrap();
            for (i, p) in packets.iter().enumerate() {
                // Every packet twice, except that the first end packet is lost.
                if p.event.end && i == packets.len() - 3 {
                    continue;
                }
                for _ in 0..2 {
                    rx.handle_packet(p.timestamp, &p.event.encode()).unwrap();
                }
            }
            timestamp = timestamp.wrapping_add(8_000);
        }
        let events = drain(&mut rx);
        assert_eq!(
            events.iter().map(|e| e.digit).collect::<String>(),
            "1234567890*#ABCD"
        );
        assert!(events.iter().all(|e| e.ended && e.duration == 1280));
    }
}
