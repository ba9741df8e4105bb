//! Leaving a voicemail: the mailbox's greeting (for no answer or busy; without one, the spoken
//! default: "The person at extension 1 0 0 2 (or the owner's recorded name) is not available.
//! Please leave a message after the tone."), a beep, then the caller's audio until they hang up,
//! press `#`, or reach the mailbox's longest message. The message is
//! saved to the audio store (a majority of the nodes hold it before it counts), entered in the
//! mailbox, and e-mailed with the WAV attached when the mailbox names an address.
//!
//! [`Take`] (the caller's audio, placed by RTP timestamp) is pure; [`Session::run`] drives it.

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pbx_media::g711::Law;
use pbx_media::rtp::RtpPacket;
use pbx_media::wav::{Channels, WavWriter};
use storage::audio::AudioKind;
use storage::voicemail::{LeftBecause, Mailbox, MailboxName, VoicemailMessage};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::media::{Agreed, CallMedia, Heard};
use super::prompts::Prompt;
use super::{AppCommand, Context, SessionEvent};
use crate::audio::NewAudio;

const RATE: usize = 8000;
/// A take shorter than this is no message (a caller who hung up at the beep).
const SHORTEST: Duration = Duration::from_millis(1000);
/// A packet further than this ahead of the audio so far is taken as a new stream (SSRC or
/// timestamp jump), placed right after what is there.
const MAX_JUMP: usize = 2 * RATE;
/// Nobody hears a greeting longer than this before the beep.
const MAX_GREETING: Duration = Duration::from_secs(120);

/// The caller's audio, each packet placed by its RTP timestamp: reordered packets land where they
/// belong, lost ones leave silence, and the length is capped.
#[derive(Debug)]
pub(crate) struct Take {
    law: Law,
    pt: u8,
    max: usize,
    pcm: Vec<i16>,
    /// The timestamp of sample 0, and the SSRC, once the first packet came.
    origin: Option<(u32, u32)>,
}

impl Take {
    pub(crate) fn new(law: Law, pt: u8, max: Duration) -> Self {
        Self {
            law,
            pt,
            max: (max.as_millis() as usize).saturating_mul(RATE / 1000),
            pcm: Vec::new(),
            origin: None,
        }
    }

    /// A datagram from the caller; anything but audio in the agreed format is ignored.
    pub(crate) fn packet(&mut self, datagram: &[u8]) {
        let Ok(p) = RtpPacket::parse(datagram) else {
            return;
        };
        if p.header.payload_type != self.pt || p.payload.is_empty() {
            return;
        }
        let (ts, ssrc) = (p.header.timestamp, p.header.ssrc);
        let (origin, known) = *self.origin.get_or_insert((ts, ssrc));
        let mut at = ts.wrapping_sub(origin) as usize;
        if known != ssrc || at > self.pcm.len() + MAX_JUMP {
            // A new stream: it goes on from the end, with a new origin.
            at = self.pcm.len();
            self.origin = Some((ts.wrapping_sub(at as u32), ssrc));
        }
        let end = (at + p.payload.len()).min(self.max);
        if at >= end {
            return;
        }
        if self.pcm.len() < end {
            self.pcm.resize(end, 0);
        }
        for (slot, byte) in self.pcm[at..end].iter_mut().zip(p.payload) {
            *slot = self.law.decode(*byte);
        }
    }

    pub(crate) fn full(&self) -> bool {
        self.pcm.len() >= self.max
    }

    pub(crate) fn length(&self) -> Duration {
        Duration::from_millis((self.pcm.len() * 1000 / RATE) as u64)
    }

    /// The take as a mono 8 kHz WAV file.
    pub(crate) fn wav(&self) -> Result<Vec<u8>, pbx_media::wav::WavError> {
        let mut out = Cursor::new(Vec::with_capacity(44 + self.pcm.len() * 2));
        let mut w = WavWriter::new(&mut out, Channels::Mono)?;
        w.write_mono(&self.pcm)?;
        w.finish()?;
        Ok(out.into_inner())
    }
}

/// Who called, from the INVITE's From (`"Alice" <sip:1001@pbx>;tag=…`): number and name.
pub(crate) fn caller_of(from: &str) -> (String, String) {
    let name = from
        .split_once('"')
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(n, _)| n)
        .unwrap_or_default();
    let uri = super::ua::uri_in(from);
    let user = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .and_then(|r| r.split_once('@'))
        .map(|(u, _)| u)
        .unwrap_or_default();
    let clean = |s: &str, max: usize| -> String {
        s.chars().filter(|c| !c.is_control()).take(max).collect()
    };
    (clean(user, 32), clean(name, 48))
}

/// A 1 kHz beep: speak now.
fn beep() -> Arc<[i16]> {
    static BEEP: std::sync::OnceLock<Arc<[i16]>> = std::sync::OnceLock::new();
    Arc::clone(BEEP.get_or_init(|| super::clips::tones(7000, &[(1000.0, 400)])))
}

/// One caller leaving a message.
pub(super) struct Session {
    pub(super) call: String,
    pub(super) mailbox: Mailbox,
    pub(super) because: LeftBecause,
    pub(super) from: String,
    pub(super) agreed: Agreed,
    pub(super) sock: UdpSocket,
    pub(super) peer: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Greeting,
    Beep,
    Recording,
}

impl Session {
    pub(super) async fn run(
        self,
        ctx: Arc<Context>,
        mut events: mpsc::Receiver<SessionEvent>,
        commands: mpsc::Sender<(String, AppCommand)>,
    ) {
        let Self {
            call,
            mailbox,
            because,
            from,
            agreed,
            sock,
            peer,
        } = self;
        let ext = mailbox.extension.clone();
        let greeting_id = match because {
            LeftBecause::Busy => mailbox.greeting_busy.as_deref(),
            LeftBecause::NoAnswer | LeftBecause::Unavailable => {
                mailbox.greeting_unavailable.as_deref()
            }
        };
        let greeting = match greeting_id {
            Some(id) => ctx.greeting(Some(id)).await,
            None => {
                // The owner's recorded name, when there is one, says whose mailbox it is.
                let name_id = ctx
                    .cluster
                    .reader()
                    .get::<MailboxName>(&ext)
                    .ok()
                    .flatten()
                    .map(|n| n.greeting);
                let name = match name_id {
                    Some(id) => ctx.recording(&id).await,
                    None => None,
                };
                let absent = Prompt::Absent {
                    extension: ext.clone(),
                    busy: because == LeftBecause::Busy,
                    name,
                };
                ctx.prompts.clip(&absent).await
            }
        };
        tracing::info!(call = %call, extension = %ext, because = because.as_str(), "voicemail answered");
        metrics::counter!("pbx_voicemail_calls_total").increment(1);
        let mut media = CallMedia::new(&agreed, Arc::new(sock), peer);
        let max = Duration::from_secs(u64::from(mailbox.max_message_secs));
        let mut take = Take::new(agreed.law, agreed.pt, max);
        // Nothing to say (no greeting, and this node cannot speak): the beep at once.
        let mut phase = if greeting.is_empty() {
            media.playout.play(beep());
            Phase::Beep
        } else {
            media.playout.play(greeting);
            Phase::Greeting
        };
        let started = Instant::now();
        let mut hung_up = false;
        loop {
            if phase == Phase::Greeting && started.elapsed() > MAX_GREETING {
                media.playout.play(beep());
                phase = Phase::Beep;
            }
            if phase == Phase::Recording && take.full() && !hung_up {
                tracing::info!(call = %call, extension = %ext, "voicemail: longest message reached");
                hung_up = true;
                let _ = commands.send((call.clone(), AppCommand::Hangup)).await;
            }
            let pressed = tokio::select! {
                ev = events.recv() => match ev {
                    Some(SessionEvent::Key(k)) => vec![k],
                    Some(SessionEvent::Transferred(_)) => Vec::new(),
                    Some(SessionEvent::Ended) | None => break,
                },
                heard = media.next() => match heard {
                    Heard::Tick { ended } => {
                        if ended {
                            phase = match phase {
                                Phase::Greeting => {
                                    media.playout.play(beep());
                                    Phase::Beep
                                }
                                Phase::Beep | Phase::Recording => Phase::Recording,
                            };
                        }
                        Vec::new()
                    }
                    Heard::Packet { keys } => {
                        if phase == Phase::Recording && !hung_up && keys.is_empty() {
                            take.packet(media.datagram());
                        }
                        keys
                    }
                },
            };
            if pressed.contains(&'#') && !hung_up {
                match phase {
                    Phase::Recording => {
                        hung_up = true;
                        let _ = commands.send((call.clone(), AppCommand::Hangup)).await;
                    }
                    // `#` skips the greeting.
                    Phase::Greeting => {
                        media.playout.play(beep());
                        phase = Phase::Beep;
                    }
                    Phase::Beep => {}
                }
            }
        }
        drop(media);
        if take.length() < SHORTEST {
            tracing::info!(call = %call, extension = %ext, "voicemail: no message left");
            return;
        }
        save(&ctx, &call, &mailbox, because, &from, &take).await;
    }
}

/// Stores the take as a message of `mailbox`, then e-mails it when the mailbox says so.
async fn save(
    ctx: &Context,
    call: &str,
    mailbox: &Mailbox,
    because: LeftBecause,
    from: &str,
    take: &Take,
) {
    let ext = &mailbox.extension;
    let bytes = match take.wav() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(call = %call, error = %e, "voicemail: WAV not written");
            return;
        }
    };
    let (caller, caller_name) = caller_of(from);
    let new = NewAudio {
        kind: AudioKind::Voicemail,
        owner: ext.clone(),
        name: format!("from {caller}"),
        call_id: None,
        retain_until: None,
    };
    let file = match ctx.store.save(new, &bytes).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(call = %call, extension = %ext, error = %e, "voicemail: message lost");
            metrics::counter!("pbx_voicemail_lost_total").increment(1);
            return;
        }
    };
    let message = VoicemailMessage {
        mailbox: ext.clone(),
        audio_id: file.id.clone(),
        caller: caller.clone(),
        caller_name: caller_name.clone(),
        because,
        call_id: call.to_owned(),
        received_at: crate::time::now_millis(),
        duration_ms: take.length().as_millis() as u32,
        heard: false,
    };
    let entered = ctx
        .cluster
        .propose(storage::Command::PutVoicemailMessage(message))
        .await;
    if !matches!(entered, Ok(storage::Response::Ok)) {
        tracing::warn!(call = %call, extension = %ext, outcome = ?entered, "voicemail: message not entered; its audio is dropped");
        metrics::counter!("pbx_voicemail_lost_total").increment(1);
        let _ = ctx
            .cluster
            .propose(storage::Command::DeleteAudioFile { id: file.id })
            .await;
        return;
    }
    tracing::info!(call = %call, extension = %ext, audio = %file.id, seconds = take.length().as_secs(), caller = %caller, "voicemail left");
    metrics::counter!("pbx_voicemail_messages_total").increment(1);
    let Some(to) = mailbox.email.as_deref() else {
        return;
    };
    let events = ctx.store.events();
    let who = if caller_name.is_empty() {
        caller.clone()
    } else {
        format!("{caller_name} ({caller})")
    };
    let subject = format!("New voicemail for {ext} from {who}");
    let body = format!(
        "{who} left a message of {} s in mailbox {ext}.\r\nThe recording is attached.\r\n",
        take.length().as_secs()
    );
    let name = format!("voicemail-{ext}-{}.wav", &file.id[..8]);
    let attached = crate::events::Attached {
        name: &name,
        content_type: "audio/wav",
        bytes: &bytes,
    };
    match events.send_mail_with(to, &subject, &body, &attached).await {
        Some(Ok(())) => tracing::info!(extension = %ext, "voicemail e-mailed"),
        Some(Err(e)) => tracing::warn!(extension = %ext, error = %e, "voicemail not e-mailed"),
        None => {
            tracing::info!(extension = %ext, "voicemail not e-mailed: no SMTP relay configured")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbx_media::rtp::RtpHeader;

    fn rtp(ts: u32, ssrc: u32, sample: i16, n: usize) -> Vec<u8> {
        let header = RtpHeader {
            marker: false,
            payload_type: 8,
            sequence: 0,
            timestamp: ts,
            ssrc,
        };
        let payload = vec![Law::Alaw.encode(sample); n];
        let mut out = Vec::new();
        header.write(&payload, &mut out).unwrap();
        out
    }

    #[test]
    fn packets_land_by_timestamp_with_silence_for_the_lost_ones() {
        let mut t = Take::new(Law::Alaw, 8, Duration::from_secs(10));
        t.packet(&rtp(1000, 7, 4000, 160));
        // One packet lost, the next two swapped.
        t.packet(&rtp(1480, 7, 4000, 160));
        t.packet(&rtp(1320, 7, 4000, 160));
        assert_eq!(t.pcm.len(), 640);
        assert!(t.pcm[160..320].iter().all(|s| *s == 0));
        assert!(t.pcm[320..].iter().all(|s| (*s - 4000).abs() < 200));
        // Telephone-events and garbage are not audio.
        let mut dtmf = rtp(1640, 7, 0, 4);
        dtmf[1] = 101;
        t.packet(&dtmf);
        t.packet(&[1, 2, 3]);
        assert_eq!(t.length(), Duration::from_millis(80));
    }

    #[test]
    fn a_new_stream_goes_on_from_the_end_and_the_length_is_capped() {
        let mut t = Take::new(Law::Alaw, 8, Duration::from_millis(100));
        t.packet(&rtp(0, 1, 100, 160));
        t.packet(&rtp(9_000_000, 2, 100, 160));
        assert_eq!(t.pcm.len(), 320);
        for i in 0..10 {
            t.packet(&rtp(9_000_160 + i * 160, 2, 100, 160));
        }
        assert!(t.full());
        assert_eq!(t.pcm.len(), 800);
        let wav = t.wav().unwrap();
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(wav.len(), 44 + 1600);
    }

    #[test]
    fn the_caller_is_read_from_the_from_header() {
        assert_eq!(
            caller_of("\"Alice Smith\" <sip:1001@pbx.lab>;tag=abc"),
            ("1001".into(), "Alice Smith".into())
        );
        assert_eq!(
            caller_of("<sip:+15550100@pbx>;tag=x"),
            ("+15550100".into(), String::new())
        );
        assert_eq!(caller_of("garbage"), (String::new(), String::new()));
    }
}
