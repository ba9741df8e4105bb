//! Keys pressed the way phones press them in a call: RFC 4733 telephone-events (payload type 101,
//! as the lab's phones offer it) in the call's RTP.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use pbx_media::rtp::RtpHeader;
use tokio::net::UdpSocket;

/// The telephone-event payload type the lab's phones offer.
pub const EVENT_PT: u8 = 101;

/// Presses `keys` (`0`–`9`, `*`, `#`) from `sock` towards `to`, each as an event of its own (with a
/// timestamp never used before: receivers take a repeated one for the same press), 20 ms a packet
/// and a short pause between keys.
pub async fn press(sock: &UdpSocket, to: SocketAddr, keys: &str) -> anyhow::Result<()> {
    static NEXT_TIMESTAMP: AtomicU32 = AtomicU32::new(80_000);
    static NEXT_SEQUENCE: AtomicU32 = AtomicU32::new(1000);
    for key in keys.chars() {
        let event = match key {
            '0'..='9' => key as u8 - b'0',
            '*' => 10,
            '#' => 11,
            other => anyhow::bail!("{other:?} is not a phone key"),
        };
        let timestamp = NEXT_TIMESTAMP.fetch_add(4000, Ordering::Relaxed);
        // Two updates, then the end three times (RFC 4733 §2.5.1.4).
        let packets = [
            (false, 160u16),
            (false, 320),
            (false, 480),
            (true, 640),
            (true, 640),
            (true, 640),
        ];
        for (n, (end, duration)) in packets.into_iter().enumerate() {
            let header = RtpHeader {
                marker: n == 0,
                payload_type: EVENT_PT,
                sequence: NEXT_SEQUENCE.fetch_add(1, Ordering::Relaxed) as u16,
                timestamp,
                ssrc: 0x5eed_d7f0,
            };
            let flags = if end { 0x8a } else { 0x0a };
            let payload = [event, flags, (duration >> 8) as u8, duration as u8];
            let mut packet = Vec::new();
            header
                .write(&payload, &mut packet)
                .context("writing a key's RTP packet")?;
            sock.send_to(&packet, to)
                .await
                .with_context(|| format!("sending key {key:?} to {to}"))?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    Ok(())
}
