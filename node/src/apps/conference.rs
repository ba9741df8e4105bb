//! Conference rooms: callers to a room's number enter its PIN (when it has one: "Please enter
//! your pin, then press pound", the digits typed over it count) and are mixed together, each
//! hearing everyone but themselves, with a rising tone when someone joins and a falling one when
//! someone leaves.
//!
//! One task per running room ([`run_room`]) owns the mix: every 20 ms it takes a frame from each
//! member's jitter buffer, mixes ([`pbx_media::mixer::Mixer`]) and sends each member its own mix
//! as RTP, from the member's socket. Each member's session ([`Session`]) asks for the PIN, enters
//! the member in the replicated room state (a [`Participant`] record, which the API lists and
//! through which moderators mute and kick), passes the caller's audio packets to the room, and
//! follows its record: muted, unmuted, kicked.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pbx_media::g711::Law;
use pbx_media::jitter::{JitterBuffer, JitterConfig};
use pbx_media::mixer::Mixer;
use pbx_media::rtp::{RtpHeader, RtpPacket};
use pbx_media::{FRAME_SAMPLES, Frame};
use storage::conference::{ConferenceRoom, Participant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::clips::tones;
use super::listen::{PIN_ATTEMPTS, PIN_WAIT};
use super::media::{Agreed, CallMedia, Heard};
use super::prompts::Prompt;
use super::{AppCommand, Context, SessionEvent};

/// Queued packets and changes per room before a member's packets are dropped.
pub(super) const ROOM_QUEUE: usize = 1024;
/// How often a member looks at its record (muted by a moderator, kicked).
const FOLLOW: Duration = Duration::from_millis(500);

/// A member as the room holds it.
pub(super) struct Member {
    sock: Arc<UdpSocket>,
    peer: Option<SocketAddr>,
    law: Law,
    pt: u8,
    jitter: JitterBuffer,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    /// A tone mixed into what this member hears (someone joined or left), and where it is.
    tone: Option<(Arc<[i16]>, usize)>,
}

/// What reaches a room.
pub(super) enum RoomInput {
    /// A member enters; the others hear the join tone when `tell_others`.
    Join {
        id: u64,
        member: Box<Member>,
        tell_others: bool,
        muted: bool,
    },
    Leave {
        id: u64,
    },
    Packet {
        id: u64,
        bytes: Vec<u8>,
    },
    Mute {
        id: u64,
        muted: bool,
    },
}

/// Join and leave tones are softer than the prompts: they play over the conversation.
const TONE_LEVEL: i16 = 4000;

fn join_tone() -> Arc<[i16]> {
    static T: std::sync::OnceLock<Arc<[i16]>> = std::sync::OnceLock::new();
    Arc::clone(T.get_or_init(|| tones(TONE_LEVEL, &[(523.0, 120), (784.0, 160)])))
}

fn leave_tone() -> Arc<[i16]> {
    static T: std::sync::OnceLock<Arc<[i16]>> = std::sync::OnceLock::new();
    Arc::clone(T.get_or_init(|| tones(TONE_LEVEL, &[(784.0, 120), (523.0, 160)])))
}

/// Adds what is left of `tone` (20 ms of it) to `frame`.
fn mix_tone(frame: &mut Frame, tone: &mut Option<(Arc<[i16]>, usize)>) {
    let Some((clip, at)) = tone.as_mut() else {
        return;
    };
    let n = FRAME_SAMPLES.min(clip.len().saturating_sub(*at));
    for (out, &t) in frame.iter_mut().zip(&clip[*at..*at + n]) {
        *out = out.saturating_add(t);
    }
    *at += n;
    if *at >= clip.len() {
        *tone = None;
    }
}

/// The room `number`'s task: runs while it has members (or joins are queued).
pub(super) async fn run_room(
    ctx: Arc<Context>,
    number: String,
    mut inputs: mpsc::Receiver<RoomInput>,
) {
    let mut mixer: Mixer<u64> = Mixer::new();
    let mut members: HashMap<u64, Member> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut packet = Vec::with_capacity(12 + FRAME_SAMPLES);
    let mut payload = Vec::with_capacity(FRAME_SAMPLES);
    tracing::info!(room = %number, "conference started");
    loop {
        tokio::select! {
            input = inputs.recv() => match input {
                Some(RoomInput::Join { id, member, tell_others, muted }) => {
                    if tell_others {
                        for m in members.values_mut() {
                            m.tone = Some((join_tone(), 0));
                        }
                    }
                    mixer.add(id);
                    mixer.set_muted(id, muted);
                    members.insert(id, *member);
                    metrics::gauge!("pbx_conference_participants").increment(1.0);
                }
                Some(RoomInput::Leave { id }) => {
                    if members.remove(&id).is_some() {
                        mixer.remove(id);
                        metrics::gauge!("pbx_conference_participants").decrement(1.0);
                        for m in members.values_mut() {
                            m.tone = Some((leave_tone(), 0));
                        }
                    }
                }
                Some(RoomInput::Packet { id, bytes }) => {
                    if let (Some(m), Ok(p)) = (members.get_mut(&id), RtpPacket::parse(&bytes))
                        && p.header.payload_type == m.pt
                    {
                        let h = p.header;
                        let _ = m.jitter.push(h.ssrc, h.sequence, h.timestamp, p.payload);
                    }
                }
                Some(RoomInput::Mute { id, muted }) => {
                    mixer.set_muted(id, muted);
                }
                None => return,
            },
            _ = tick.tick() => {
                for (id, m) in &mut members {
                    if let Some(f) = m.jitter.pop() {
                        let mut pcm = Vec::with_capacity(FRAME_SAMPLES);
                        m.law.decode_into(&f.payload, &mut pcm);
                        let mut frame = [0i16; FRAME_SAMPLES];
                        let n = pcm.len().min(FRAME_SAMPLES);
                        frame[..n].copy_from_slice(&pcm[..n]);
                        mixer.put_frame(*id, &frame);
                    }
                }
                for (id, mixed) in mixer.mix() {
                    let Some(m) = members.get_mut(&id) else { continue };
                    let mut frame = *mixed;
                    mix_tone(&mut frame, &mut m.tone);
                    payload.clear();
                    m.law.encode_into(&frame, &mut payload);
                    let header = RtpHeader {
                        marker: false,
                        payload_type: m.pt,
                        sequence: m.seq,
                        timestamp: m.timestamp,
                        ssrc: m.ssrc,
                    };
                    packet.clear();
                    if header.write(&payload, &mut packet).is_ok()
                        && let Some(to) = m.peer
                    {
                        let _ = m.sock.try_send_to(&packet, to);
                    }
                    m.seq = m.seq.wrapping_add(1);
                    m.timestamp = m.timestamp.wrapping_add(FRAME_SAMPLES as u32);
                }
                if members.is_empty() && ctx.close_room_if_idle(&number, &mut inputs) {
                    tracing::info!(room = %number, "conference ended");
                    return;
                }
            }
        }
    }
}

/// A member's id in its room, from the Call-ID of its call with the agent: the node that carries
/// the call on after a failover finds the member's record from the call's record alone (FNV-1a).
pub(super) fn participant_id(call: &str) -> u64 {
    call.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// One caller in a room.
pub(super) struct Session {
    pub(super) call: String,
    pub(super) room: ConferenceRoom,
    pub(super) from: String,
    /// The caller's phone's address, when known (a wrong PIN counts against it).
    pub(super) source: Option<std::net::IpAddr>,
    pub(super) agreed: Agreed,
    pub(super) sock: UdpSocket,
    pub(super) peer: Option<SocketAddr>,
    /// The member's record when the call was in the room already (carried on after a failover):
    /// no PIN, no join tone, and its mute stays.
    pub(super) rejoin: Option<Participant>,
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
            room,
            from,
            source,
            agreed,
            sock,
            peer,
            rejoin,
        } = self;
        let mut media = CallMedia::new(&agreed, Arc::new(sock), peer);
        let hang_up = || async {
            let _ = commands.send((call.clone(), AppCommand::Hangup)).await;
        };
        let carried_on = rejoin.is_some();
        if carried_on {
            tracing::info!(call = %call, room = %room.number, "conference: member carried on");
        } else {
            tracing::info!(call = %call, room = %room.number, "conference answered");
        }
        if room.pin_hash.is_some() && !carried_on {
            match ask_pin(&ctx, &room, &mut media, &mut events, source).await {
                PinOutcome::Right => {}
                PinOutcome::Wrong => return hang_up().await,
                PinOutcome::Gone => return,
            }
        }
        let pid = participant_id(&call);
        let record = match rejoin {
            Some(mut was) => {
                was.node_id = ctx.cluster.node_id();
                was
            }
            None => {
                let (caller, caller_name) = super::voicemail::caller_of(&from);
                Participant {
                    room: room.number.clone(),
                    id: format!("{pid:016x}"),
                    caller,
                    caller_name,
                    joined_at: crate::time::now_millis(),
                    muted: false,
                    kicked: false,
                    node_id: ctx.cluster.node_id(),
                }
            }
        };
        let mut muted = record.muted;
        let entered = ctx
            .cluster
            .propose(storage::Command::PutParticipant(record.clone()))
            .await;
        if !matches!(entered, Ok(storage::Response::Ok)) {
            tracing::info!(call = %call, room = %room.number, outcome = ?entered, "conference: not entered (full?)");
            let full = ctx.prompts.clip(&Prompt::ConferenceFull).await;
            play_once(&mut media, &mut events, full).await;
            return hang_up().await;
        }
        // From here the room sends this caller's audio, going on with the stream the caller heard
        // the PIN prompt in: a phone may drop a new SSRC's packets as late when its sequence
        // numbers start lower (baresip 1.0 does, and the caller hears nothing).
        let CallMedia {
            sock,
            mut peer,
            playout,
            ..
        } = media;
        let (ssrc, seq, timestamp) = playout.next_position();
        let member = Member {
            sock: Arc::clone(&sock),
            peer,
            law: agreed.law,
            pt: agreed.pt,
            jitter: JitterBuffer::new(JitterConfig::default()),
            seq,
            timestamp,
            ssrc,
            tone: (!carried_on).then(|| (join_tone(), 0)),
        };
        let join = RoomInput::Join {
            id: pid,
            member: Box::new(member),
            tell_others: !carried_on,
            muted,
        };
        let Some(room_tx) = ctx.enter_room(&room.number, join) else {
            let _ = ctx
                .cluster
                .propose(storage::Command::RemoveParticipant {
                    room: room.number.clone(),
                    id: record.id.clone(),
                })
                .await;
            return hang_up().await;
        };
        tracing::info!(call = %call, room = %room.number, participant = %record.id, caller = %record.caller, "conference: joined");
        metrics::counter!("pbx_conference_joins_total").increment(1);
        let mut buf = vec![0u8; 1500];
        let mut follow = tokio::time::interval(FOLLOW);
        let key = Participant::key_for(&room.number, &record.id);
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(SessionEvent::Ended) | None => break,
                    Some(_) => {}
                },
                got = sock.recv_from(&mut buf) => {
                    let Ok((n, from)) = got else { continue };
                    if peer.is_some_and(|p| p != from) {
                        continue;
                    }
                    peer = Some(from);
                    // A full room queue drops this packet (the jitter buffer fills the gap).
                    let _ = room_tx.try_send(RoomInput::Packet { id: pid, bytes: buf[..n].to_vec() });
                }
                _ = follow.tick() => {
                    let now = ctx.cluster.reader().get::<Participant>(&key).ok().flatten();
                    match now {
                        Some(p) if !p.kicked => {
                            if p.muted != muted {
                                muted = p.muted;
                                tracing::info!(call = %call, room = %room.number, participant = %record.id, muted, "conference: mute changed");
                                let _ = room_tx.send(RoomInput::Mute { id: pid, muted }).await;
                            }
                        }
                        _ => {
                            tracing::info!(call = %call, room = %room.number, participant = %record.id, "conference: removed by a moderator");
                            hang_up().await;
                            // The agent reports the end; until then the loop waits for it.
                            follow = tokio::time::interval(Duration::from_secs(3600));
                            follow.tick().await;
                        }
                    }
                }
            }
        }
        let _ = room_tx.send(RoomInput::Leave { id: pid }).await;
        let _ = ctx
            .cluster
            .propose(storage::Command::RemoveParticipant {
                room: room.number.clone(),
                id: record.id.clone(),
            })
            .await;
        tracing::info!(call = %call, room = %room.number, participant = %record.id, "conference: left");
    }
}

enum PinOutcome {
    Right,
    Wrong,
    Gone,
}

/// Plays `clip` once to the caller (before it is in a room); `false` when the call ended meanwhile.
async fn play_once(
    media: &mut CallMedia,
    events: &mut mpsc::Receiver<SessionEvent>,
    clip: Arc<[i16]>,
) -> bool {
    media.playout.play(clip);
    loop {
        tokio::select! {
            ev = events.recv() => if matches!(ev, Some(SessionEvent::Ended) | None) {
                return false;
            },
            heard = media.next() => if let Heard::Tick { ended: true } = heard {
                return true;
            },
        }
    }
}

/// Asks for the room's PIN (digits then `#`, or a pause of [`PIN_WAIT`] after the prompt), up to
/// [`PIN_ATTEMPTS`] times; a wrong one is said so and counts against the caller's address. Keys
/// typed while the prompt plays count: a caller who knows the PIN need not hear it out.
async fn ask_pin(
    ctx: &Context,
    room: &ConferenceRoom,
    media: &mut CallMedia,
    events: &mut mpsc::Receiver<SessionEvent>,
    source: Option<std::net::IpAddr>,
) -> PinOutcome {
    for _ in 0..PIN_ATTEMPTS {
        media.playout.play(ctx.prompts.clip(&Prompt::AskPin).await);
        let mut pin = String::new();
        // The wait starts once the prompt has ended.
        let mut deadline: Option<Instant> = None;
        let entered = loop {
            let wake = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let pressed = tokio::select! {
                ev = events.recv() => match ev {
                    Some(SessionEvent::Key(k)) => vec![k],
                    Some(SessionEvent::Ended) | None => return PinOutcome::Gone,
                    Some(_) => Vec::new(),
                },
                heard = media.next() => match heard {
                    Heard::Packet { keys } => keys,
                    Heard::Tick { ended: true } => {
                        deadline = Some(Instant::now() + PIN_WAIT);
                        Vec::new()
                    }
                    Heard::Tick { ended: false } => Vec::new(),
                },
                () = tokio::time::sleep_until(wake) => break pin,
            };
            let mut done = false;
            for k in pressed {
                if k == '#' {
                    done = true;
                    break;
                }
                if pin.len() <= super::listen::MAX_PIN {
                    pin.push(k);
                }
            }
            if done {
                break pin;
            }
        };
        let hash = room.pin_hash.clone().unwrap_or_default();
        let ok =
            tokio::task::spawn_blocking(move || crate::accounts::verify_password(&entered, &hash))
                .await
                .unwrap_or(false);
        if ok {
            return PinOutcome::Right;
        }
        tracing::warn!(room = %room.number, source = ?source, "conference: wrong PIN");
        metrics::counter!("pbx_conference_pin_failures_total").increment(1);
        if let Some(ip) = source {
            ctx.security.auth_failed(
                ip,
                storage::model::Service::Sip,
                storage::model::Transport::Udp,
            );
        }
        if !play_once(media, events, ctx.prompts.clip(&Prompt::WrongPin).await).await {
            return PinOutcome::Gone;
        }
    }
    PinOutcome::Wrong
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_members_id_follows_from_its_call() {
        assert_eq!(participant_id("abc"), participant_id("abc"));
        assert_ne!(participant_id("abc"), participant_id("abd"));
        // FNV-1a's published value for "a".
        assert_eq!(participant_id("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn a_tone_is_added_to_what_a_member_hears_until_it_ends() {
        let mut tone = Some((tones(TONE_LEVEL, &[(600.0, 30)]), 0));
        let mut frame = [100i16; FRAME_SAMPLES];
        mix_tone(&mut frame, &mut tone);
        assert!(frame.iter().any(|s| *s != 100));
        assert!(tone.is_some());
        let mut second = [0i16; FRAME_SAMPLES];
        mix_tone(&mut second, &mut tone);
        // 30 ms: 80 samples in the second frame, then the tone is over.
        assert!(second[80..].iter().all(|s| *s == 0));
        assert!(tone.is_none());
        let mut loud = [i16::MAX; FRAME_SAMPLES];
        let mut again = Some((tones(TONE_LEVEL, &[(600.0, 20)]), 0));
        mix_tone(&mut loud, &mut again);
        assert!(loud.iter().all(|s| *s >= i16::MAX - 4000));
    }
}
