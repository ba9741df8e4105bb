//! The PBX's own applications: calls the PBX answers itself: the auto attendant (IVR menus,
//! [`storage::ivr`]), voicemail, and conference rooms.
//!
//! An application is reached the way a phone is: the call plan resolves an IVR's number to one
//! device, this node's application agent on a loopback address, and the call engine sends it the
//! INVITE and relays media to it like any callee ([`crate::sip::call`]'s plan). The agent answers,
//! plays the menu and reads the caller's keys; a choice is a blind transfer (REFER), which the call
//! engine carries out as for a phone: the caller stays in the call, recorded and billed as before,
//! and the application leaves. So nothing in the call engine is special to applications, and a call
//! handed on is an ordinary call from then on.
//!
//! The agent lives as long as this node's SIP service (the VIP's owner). When the owner fails,
//! the new owner carries each call on from its record: a conference member's call is taken over
//! by the new owner's agent ([`Apps::adopt`]: the same dialog, new media, back in its room without
//! the PIN, its mute kept) and the room's mix is rebuilt from the members that come back. A caller
//! still in a menu, leaving a message or listening to one is not carried on (the session's place
//! in the menu or the recording died with the agent): the new owner ends that call. Calls already
//! handed on are carried on as usual.

mod clips;
mod conference;
mod ivr;
mod listen;
mod media;
mod prompts;
mod session;
mod ua;
mod voicemail;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::Cluster;
use pbx_media::wav::{PromptLimits, read_prompt};
use storage::ivr::Ivr;
use storage::model::{Binding, UnixMillis};
use storage::routing::Destination;
use storage::voicemail::LeftBecause;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use self::ivr::MenuConfig;
use self::ua::{Event, Ua};
use crate::audio::AudioStore;

/// Longest SIP datagram the agent reads.
const MAX_SIP: usize = 8192;
/// Keys and reports queued for one session before the agent drops them.
const SESSION_QUEUE: usize = 64;
/// Decoded greetings kept in memory.
const CACHED_GREETINGS: usize = 64;
/// Prompts are checked on upload; these bound what is read back.
const GREETING_LIMITS: PromptLimits = PromptLimits {
    max_bytes: 16 * 1024 * 1024,
    max_seconds: 600,
};
/// Destinations followed through time conditions and menus to reach a number.
const MAX_DESTINATION_HOPS: usize = 4;

pub(crate) use listen::LISTEN_CODE;
pub(crate) use media::Keys;

/// What answers a call the agent gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Ivr,
    Voicemail(LeftBecause),
    /// The owner listening to their mailbox, from a phone at this address.
    Listen(IpAddr),
    /// A conference room, from a phone at this address when known (a wrong PIN counts against
    /// it; never a trunk's).
    Conference(Option<IpAddr>),
}

const IVR_PREFIX: &str = "ivr.";
const VOICEMAIL_PREFIX: &str = "vm.";
const LISTEN_PREFIX: &str = "listen.";
const CONFERENCE_PREFIX: &str = "conf.";

fn ip_hex(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => hex::encode(a.octets()),
        IpAddr::V6(a) => hex::encode(a.octets()),
    }
}

fn ip_of_hex(s: &str) -> Option<IpAddr> {
    let bytes = hex::decode(s).ok()?;
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

impl Service {
    /// The Request-URI user the agent is sent for `number`.
    fn user(&self, number: &str) -> String {
        match self {
            Self::Ivr => format!("{IVR_PREFIX}{number}"),
            Self::Voicemail(b) => format!("{VOICEMAIL_PREFIX}{}.{number}", b.as_str()),
            Self::Listen(ip) => format!("{LISTEN_PREFIX}{}.{number}", ip_hex(ip)),
            Self::Conference(Some(ip)) => format!("{CONFERENCE_PREFIX}{}.{number}", ip_hex(ip)),
            Self::Conference(None) => format!("{CONFERENCE_PREFIX}-.{number}"),
        }
    }

    /// The service and number a Request-URI user names.
    fn parse(user: &str) -> Option<(Self, &str)> {
        if let Some(number) = user.strip_prefix(IVR_PREFIX) {
            return Some((Self::Ivr, number));
        }
        if let Some(rest) = user.strip_prefix(LISTEN_PREFIX) {
            let (ip, number) = rest.split_once('.')?;
            return Some((Self::Listen(ip_of_hex(ip)?), number));
        }
        if let Some(rest) = user.strip_prefix(CONFERENCE_PREFIX) {
            let (ip, number) = rest.split_once('.')?;
            let source = if ip == "-" {
                None
            } else {
                Some(ip_of_hex(ip)?)
            };
            return Some((Self::Conference(source), number));
        }
        let (because, number) = user.strip_prefix(VOICEMAIL_PREFIX)?.split_once('.')?;
        Some((Self::Voicemail(LeftBecause::parse(because)?), number))
    }
}

/// Starts speaking this node's prompts in the background (every node, at start: a node that takes
/// the VIP over has them ready).
pub(crate) fn speak_prompts() {
    prompts::Prompts::node().start();
}

/// Whether a call's callee leg (as its record has it) was answered by an application agent: its
/// target is an agent's contact on loopback. Such a call cannot be carried on by another node or
/// process (the agent's session died with its owner).
pub(crate) fn is_app_leg(leg: &storage::model::DialogLeg) -> bool {
    let target = leg.remote_target.as_str();
    let Some(rest) = target.strip_prefix("sip:") else {
        return false;
    };
    let Some((user, host)) = rest.split_once('@') else {
        return false;
    };
    let ours = Service::parse(user).is_some();
    let loopback = host
        .split([';', '>'])
        .next()
        .and_then(|h| h.parse::<SocketAddr>().ok())
        .is_some_and(|a| a.ip().is_loopback());
    ours && loopback
}

/// What a session asks of the agent.
#[derive(Debug)]
pub(crate) enum AppCommand {
    Refer(String),
    Hangup,
}

/// What the agent tells a session.
#[derive(Debug)]
pub(crate) enum SessionEvent {
    Key(char),
    Transferred(u16),
    Ended,
}

/// What sessions share.
pub(crate) struct Context {
    cluster: Cluster,
    store: Arc<AudioStore>,
    security: Arc<crate::security::Security>,
    greetings: Mutex<HashMap<String, Arc<[i16]>>>,
    /// The PBX's own spoken prompts.
    prompts: Arc<prompts::Prompts>,
    /// The rooms running on this agent.
    rooms: Mutex<HashMap<String, mpsc::Sender<conference::RoomInput>>>,
}

impl Context {
    /// Puts `input` (a join) into room `number`, starting the room when it is not running.
    /// `None` when the room cannot take it now (its queue is full).
    fn enter_room(
        self: &Arc<Self>,
        number: &str,
        input: conference::RoomInput,
    ) -> Option<mpsc::Sender<conference::RoomInput>> {
        let mut rooms = self
            .rooms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = match rooms.get(number).filter(|tx| !tx.is_closed()) {
            Some(tx) => tx.clone(),
            None => {
                let (tx, rx) = mpsc::channel(conference::ROOM_QUEUE);
                rooms.insert(number.to_owned(), tx.clone());
                tokio::spawn(conference::run_room(
                    Arc::clone(self),
                    number.to_owned(),
                    rx,
                ));
                tx
            }
        };
        // Sent under the lock: a room closing checks its queue under the same lock.
        tx.try_send(input).ok()?;
        Some(tx)
    }

    /// A room without members closes unless a join is queued; `true` when it closed.
    fn close_room_if_idle(
        &self,
        number: &str,
        inputs: &mut mpsc::Receiver<conference::RoomInput>,
    ) -> bool {
        let mut rooms = self
            .rooms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !inputs.is_empty() {
            return false;
        }
        rooms.remove(number);
        inputs.close();
        true
    }

    /// A menu's greeting: the uploaded prompt (fetched from a holder if this node has no copy yet),
    /// or the chime when there is none or it cannot be read.
    async fn greeting(&self, id: Option<&str>) -> Arc<[i16]> {
        let Some(id) = id else {
            return clips::chime();
        };
        match self.recording(id).await {
            Some(pcm) => pcm,
            None => clips::chime(),
        }
    }

    /// A greeting's audio (fetched from a holder if this node has no copy yet, then kept in
    /// memory); `None` when it cannot be read.
    async fn recording(&self, id: &str) -> Option<Arc<[i16]>> {
        if let Some(pcm) = self.lock().get(id) {
            return Some(Arc::clone(pcm));
        }
        let pcm = match self.read(id).await {
            Ok(pcm) => pcm,
            Err(e) => {
                tracing::warn!(audio = %id, error = %e, "greeting not readable");
                return None;
            }
        };
        let mut cache = self.lock();
        if cache.len() >= CACHED_GREETINGS {
            cache.clear();
        }
        cache.insert(id.to_owned(), Arc::clone(&pcm));
        Some(pcm)
    }

    async fn read(&self, id: &str) -> Result<Arc<[i16]>, String> {
        use tokio::io::AsyncReadExt as _;
        let (_, mut file) = self.store.open(id).await.map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        (&mut file)
            .take(GREETING_LIMITS.max_bytes as u64 + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| e.to_string())?;
        let pcm = read_prompt(&bytes, GREETING_LIMITS).map_err(|e| e.to_string())?;
        Ok(pcm.into())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<[i16]>>> {
        self.greetings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// This node's application agent.
pub(crate) struct Apps {
    addr: SocketAddr,
    node_id: u64,
    ctx: Arc<Context>,
    adoptions: mpsc::Sender<Adoption>,
}

/// A call with an application carried on from another node's agent: its dialog and its session.
struct Adoption {
    call: String,
    dialog: ua::Adopted,
    session: Started,
}

/// What the call's record must say of its callee leg once this agent has it.
#[derive(Debug, Clone)]
pub(crate) struct AdoptedLeg {
    /// The agent's contact URI (the leg's remote target) and address (its peer).
    pub(crate) contact: String,
    pub(crate) addr: SocketAddr,
    /// The agent's new session description (its media socket is new).
    pub(crate) sdp: String,
    /// A conference member's record key, kept when the lost agent's members are forgotten.
    pub(crate) participant: Option<String>,
}

impl Apps {
    /// Binds the agent on loopback and starts it; it stops when the handle is aborted.
    pub(crate) async fn start(
        cluster: Cluster,
        store: Arc<AudioStore>,
        security: Arc<crate::security::Security>,
        on_vip: bool,
    ) -> std::io::Result<(Arc<Self>, JoinHandle<()>)> {
        let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).await?;
        let addr = sock.local_addr()?;
        let prompts = prompts::Prompts::node();
        // Normally started with the node already; started here for an agent started otherwise.
        prompts.start();
        let ctx = Arc::new(Context {
            cluster,
            store,
            security,
            greetings: Mutex::new(HashMap::new()),
            prompts,
            rooms: Mutex::new(HashMap::new()),
        });
        let (adoptions, adopted) = mpsc::channel(SESSION_QUEUE);
        let apps = Arc::new(Self {
            addr,
            node_id: ctx.cluster.node_id(),
            ctx: Arc::clone(&ctx),
            adoptions,
        });
        tracing::info!(%addr, "application agent listening");
        if !on_vip {
            // On the VIP, the calls carried on say which members stay ([`Apps::forget_lost`]).
            let me = ctx.cluster.node_id();
            tokio::spawn(forget_participants(ctx.cluster.clone(), move |p| {
                p.node_id == me
            }));
        }
        let task = tokio::spawn(agent(sock, ctx, adopted));
        Ok((apps, task))
    }

    /// Takes over a call another node's agent answered (the call is being carried on here after
    /// a failover): opens its media towards `media_to` (the relay's port facing this leg), puts a
    /// conference member back in its room without asking the PIN again (any other session starts
    /// again), and answers the engine (now at `engine`) in the dialog from now on. What the call's
    /// record must then say of the leg, or why it cannot be taken over (a member kicked, a menu
    /// or a mailbox deleted meanwhile).
    pub(crate) async fn adopt(
        &self,
        leg: &storage::model::DialogLeg,
        media_to: SocketAddr,
        engine: SocketAddr,
    ) -> Result<AdoptedLeg, String> {
        let target = leg.remote_target.as_str();
        let user = target
            .strip_prefix("sip:")
            .and_then(|r| r.split_once('@'))
            .map(|(u, _)| u)
            .ok_or("no agent in the leg's target")?;
        let (service, number) = Service::parse(user).ok_or("not an application's leg")?;
        // A conference member is put back in its room as it was; any other session starts again
        // from its beginning (the menu's greeting, the mailbox's greeting, the PIN prompt): where
        // it was died with the lost agent.
        let mut member = None;
        if let Service::Conference(_) = service {
            let pid = conference::participant_id(&leg.call_id);
            let key = storage::conference::Participant::key_for(number, &format!("{pid:016x}"));
            let found = self
                .ctx
                .cluster
                .reader()
                .get::<storage::conference::Participant>(&key);
            match found.ok().flatten() {
                Some(p) if p.kicked => return Err("the member was removed from the room".into()),
                Some(p) => member = Some((key, p)),
                None => {}
            }
        }
        let agreed = media::negotiate(leg.remote_sdp.as_bytes()).map_err(|e| e.to_string())?;
        let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
            .await
            .map_err(|e| e.to_string())?;
        let local = sock.local_addr().map_err(|e| e.to_string())?;
        let sdp = agreed.answer(local, rand::random::<u32>().into());
        let contact = format!("sip:{user}@{}", self.addr);
        let dialog = ua::Adopted {
            peer: engine,
            local_tag: leg.remote_tag.clone(),
            local: format!("{};tag={}", leg.remote_uri, leg.remote_tag),
            remote: format!("{};tag={}", leg.local_uri, leg.local_tag),
            contact: format!("<{contact}>"),
            remote_target: ua::uri_in(&leg.local_contact).to_owned(),
            // The lost agent sent few requests (a BYE, a REFER): far below this.
            local_cseq: leg.remote_cseq.saturating_add(1000),
            sdp: sdp.clone(),
        };
        let talk = Talk {
            call: &leg.call_id,
            // What the engine's INVITE said of the caller: its From.
            from: &leg.local_uri,
            agreed,
            sock,
            peer: Some(media_to),
        };
        let (participant, rejoin) = member.unzip();
        let session = session_for(&self.ctx, service, number, talk, rejoin)
            .map_err(|(code, reason)| format!("{user}: {code} {reason}"))?;
        let adoption = Adoption {
            call: leg.call_id.clone(),
            dialog,
            session,
        };
        self.adoptions
            .send(adoption)
            .await
            .map_err(|_| "the agent is not running")?;
        Ok(AdoptedLeg {
            contact,
            addr: self.addr,
            sdp: String::from_utf8_lossy(&sdp).into_owned(),
            participant,
        })
    }

    /// On taking the VIP, after the calls were carried on: conference members whose calls were
    /// not (`kept` lists the record keys of those that were) are forgotten.
    pub(crate) async fn forget_lost(&self, kept: Vec<String>) {
        let kept: std::collections::HashSet<String> = kept.into_iter().collect();
        let lost = move |p: &storage::conference::Participant| {
            !kept.contains(&storage::conference::Participant::key_for(&p.room, &p.id))
        };
        forget_participants(self.ctx.cluster.clone(), lost).await;
    }

    /// Whether a datagram from `from` is the agent's own (the SIP gate lets it through: it is this
    /// process, and an allow list written for phones must not cut the PBX off from itself).
    pub(crate) fn owns(&self, from: SocketAddr) -> bool {
        from == self.addr
    }

    /// The one "device" a call to `number` rings when `service` answers it: this agent, with the
    /// service and the number in the contact's user part (`ivr.700`, `vm.busy.1002`).
    pub(crate) fn binding(&self, service: &Service, number: &str, now: UnixMillis) -> Binding {
        Binding {
            aor: number.to_owned(),
            contact: format!("sip:{}@{}", service.user(number), self.addr),
            expires_at: now + 3_600_000,
            q: None,
            call_id: String::new(),
            cseq: 0,
            source: self.addr.to_string(),
            transport: "udp".to_owned(),
            user_agent: "pbx-apps".to_owned(),
            node_id: self.node_id,
            registered_at: now,
            instance: None,
            reachable: Some(true),
        }
    }
}

/// Conference members whose calls no agent has: without a VIP, those of this node's earlier agent
/// (a restart); on the VIP, every member whose call was not carried on.
async fn forget_participants(
    cluster: Cluster,
    lost: impl Fn(&storage::conference::Participant) -> bool,
) {
    use storage::conference::Participant;
    let Ok(all) = cluster.reader().list::<Participant>() else {
        return;
    };
    for p in all.into_iter().filter(|p| lost(p)) {
        tracing::info!(room = %p.room, participant = %p.id, node = p.node_id, "conference member of a lost agent removed");
        let _ = cluster
            .propose(storage::Command::RemoveParticipant {
                room: p.room,
                id: p.id,
            })
            .await;
    }
}

/// The number a destination rings, following time conditions (by the cluster's clock now).
/// `None` when it names nothing that exists.
pub(crate) fn destination_number(
    reader: &storage::StateReader,
    dest: &Destination,
    at: UnixMillis,
) -> Option<String> {
    let mut dest = dest.clone();
    for _ in 0..MAX_DESTINATION_HOPS {
        match dest {
            Destination::Extension(n)
            | Destination::RingGroup(n)
            | Destination::Ivr(n)
            | Destination::Conference(n) => {
                return Some(n);
            }
            Destination::TimeCondition(name) => {
                let cond = reader
                    .get::<storage::time_condition::TimeCondition>(&name)
                    .ok()
                    .flatten()?;
                let zone = crate::sip::call::cluster_zone(reader);
                let local = crate::sip::call::local_time(&zone, at);
                tracing::info!(condition = %name, zone = %zone, date = %local.date, minute = local.minute, open = cond.is_open(&local), "time condition");
                dest = cond.destination(&local).clone();
            }
        }
    }
    None
}

/// The menu as this call sees it: its destinations resolved to numbers now.
fn menu_of(reader: &storage::StateReader, ivr: &Ivr, at: UnixMillis) -> MenuConfig {
    MenuConfig {
        options: ivr
            .options
            .iter()
            .filter_map(|o| Some((o.digit, destination_number(reader, &o.destination, at)?)))
            .collect(),
        direct_dial: ivr.direct_dial,
        timeout: Duration::from_secs(u64::from(ivr.timeout_secs.max(1))),
        attempts: ivr.attempts.max(1),
        fallback: ivr
            .fallback
            .as_ref()
            .and_then(|d| destination_number(reader, d, at)),
    }
}

/// The agent's loop: SIP in and out, sessions started and told what concerns them.
async fn agent(sock: UdpSocket, ctx: Arc<Context>, mut adoptions: mpsc::Receiver<Adoption>) {
    let Ok(local) = sock.local_addr() else {
        return;
    };
    let mut ua = Ua::new(local);
    let mut sessions: HashMap<String, mpsc::Sender<SessionEvent>> = HashMap::new();
    // Answered, not yet acknowledged: a session starts once the caller is connected, so the
    // first words of a greeting are not played into a call still being set up.
    let mut answered: HashMap<String, (Started, mpsc::Receiver<SessionEvent>)> = HashMap::new();
    let (commands_tx, mut commands) = mpsc::channel::<(String, AppCommand)>(1024);
    let mut buf = vec![0u8; MAX_SIP];
    loop {
        let wake = ua
            .next_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(1));
        tokio::select! {
            got = sock.recv_from(&mut buf) => {
                if let Ok((n, from)) = got {
                    ua.datagram(&buf[..n], from, std::time::Instant::now());
                }
            }
            Some((call, cmd)) = commands.recv() => match cmd {
                AppCommand::Refer(to) => ua.refer(&call, &to, std::time::Instant::now()),
                AppCommand::Hangup => ua.hangup(&call, std::time::Instant::now()),
            },
            Some(a) = adoptions.recv() => {
                if ua.adopt(&a.call, a.dialog) {
                    let (tx, rx) = mpsc::channel(SESSION_QUEUE);
                    sessions.insert(a.call, tx);
                    spawn_session(a.session, Arc::clone(&ctx), rx, commands_tx.clone());
                }
            }
            () = tokio::time::sleep_until(wake) => {}
        }
        ua.tick(std::time::Instant::now());
        while let Some(event) = ua.poll_event() {
            match event {
                Event::Invited {
                    call,
                    user,
                    from,
                    offer,
                } => match start_session(&ctx, &call, &user, &from, &offer).await {
                    Ok((session, sdp)) => {
                        ua.answer(&call, &sdp, std::time::Instant::now());
                        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
                        sessions.insert(call.clone(), tx);
                        answered.insert(call, (session, rx));
                    }
                    Err((code, reason)) => {
                        tracing::info!(call = %call, user = %user, code, reason, "application refused the call");
                        ua.refuse(&call, code, reason);
                    }
                },
                Event::Confirmed { call } => {
                    if let Some((session, rx)) = answered.remove(&call) {
                        spawn_session(session, Arc::clone(&ctx), rx, commands_tx.clone());
                    }
                }
                Event::Digit { call, digit } => tell(&sessions, &call, SessionEvent::Key(digit)),
                Event::Transferred { call, code } => {
                    tell(&sessions, &call, SessionEvent::Transferred(code));
                }
                Event::Ended { call } => {
                    tell(&sessions, &call, SessionEvent::Ended);
                    sessions.remove(&call);
                    answered.remove(&call);
                }
            }
        }
        metrics::gauge!("pbx_ivr_sessions").set(ua.len() as f64);
        while let Some(t) = ua.poll_transmit() {
            let _ = sock.try_send_to(&t.bytes, t.to);
        }
    }
}

fn spawn_session(
    session: Started,
    ctx: Arc<Context>,
    events: mpsc::Receiver<SessionEvent>,
    commands: mpsc::Sender<(String, AppCommand)>,
) {
    match session {
        Started::Ivr(s) => tokio::spawn(s.run(ctx, events, commands)),
        Started::Voicemail(s) => tokio::spawn(s.run(ctx, events, commands)),
        Started::Listen(s) => tokio::spawn(s.run(ctx, events, commands)),
        Started::Conference(s) => tokio::spawn(s.run(ctx, events, commands)),
    };
}

fn tell(sessions: &HashMap<String, mpsc::Sender<SessionEvent>>, call: &str, ev: SessionEvent) {
    if let Some(tx) = sessions.get(call) {
        // A session that cannot keep up loses keys, never the agent's loop.
        let _ = tx.try_send(ev);
    }
}

/// A session set up, of either kind.
enum Started {
    Ivr(session::Session),
    Voicemail(voicemail::Session),
    Listen(listen::Session),
    Conference(conference::Session),
}

/// Sets up the session for a new call to `user` (the service and number), and the SDP to answer
/// with.
async fn start_session(
    ctx: &Context,
    call: &str,
    user: &str,
    from: &str,
    offer: &[u8],
) -> Result<(Started, Vec<u8>), (u16, &'static str)> {
    let (service, number) = Service::parse(user).ok_or((404, "Not Found"))?;
    let agreed = media::negotiate(offer).map_err(|_| (488, "Not Acceptable Here"))?;
    let (sock, peer, sdp) = open_media(offer, &agreed).await?;
    let talk = Talk {
        call,
        from,
        agreed,
        sock,
        peer,
    };
    let started = session_for(ctx, service, number, talk, None)?;
    Ok((started, sdp))
}

/// A call's side of the talking: its Call-ID, who calls, the media agreed and its socket.
struct Talk<'a> {
    call: &'a str,
    from: &'a str,
    agreed: media::Agreed,
    sock: UdpSocket,
    peer: Option<SocketAddr>,
}

/// The session of `service` for `number` (a conference member carried on after a failover
/// when `rejoin`).
fn session_for(
    ctx: &Context,
    service: Service,
    number: &str,
    talk: Talk<'_>,
    rejoin: Option<storage::conference::Participant>,
) -> Result<Started, (u16, &'static str)> {
    let reader = ctx.cluster.reader();
    let Talk {
        call,
        from,
        agreed,
        sock,
        peer,
    } = talk;
    let started = match service {
        Service::Ivr => {
            let ivr = reader
                .get::<Ivr>(number)
                .ok()
                .flatten()
                .ok_or((404, "Not Found"))?;
            let menu = menu_of(reader, &ivr, crate::time::now_millis());
            Started::Ivr(session::Session {
                call: call.to_owned(),
                ivr,
                menu,
                agreed,
                sock,
                peer,
            })
        }
        Service::Voicemail(because) => {
            let mailbox = reader
                .get::<storage::voicemail::Mailbox>(number)
                .ok()
                .flatten()
                .filter(|m| m.enabled)
                .ok_or((404, "Not Found"))?;
            Started::Voicemail(voicemail::Session {
                call: call.to_owned(),
                mailbox,
                because,
                from: from.to_owned(),
                agreed,
                sock,
                peer,
            })
        }
        Service::Conference(source) => {
            let room = reader
                .get::<storage::conference::ConferenceRoom>(number)
                .ok()
                .flatten()
                .ok_or((404, "Not Found"))?;
            Started::Conference(conference::Session {
                call: call.to_owned(),
                room,
                from: from.to_owned(),
                source,
                agreed,
                sock,
                peer,
                rejoin,
            })
        }
        Service::Listen(source) => {
            reader
                .get::<storage::voicemail::Mailbox>(number)
                .ok()
                .flatten()
                .ok_or((404, "Not Found"))?;
            Started::Listen(listen::Session {
                call: call.to_owned(),
                extension: number.to_owned(),
                source,
                agreed,
                sock,
                peer,
            })
        }
    };
    Ok(started)
}

/// The call's media socket on loopback, where the relay sends from (the offer's address), and
/// the SDP answer.
async fn open_media(
    offer: &[u8],
    agreed: &media::Agreed,
) -> Result<(UdpSocket, Option<SocketAddr>, Vec<u8>), (u16, &'static str)> {
    let peer = pbx_sip::sdp::Sdp::parse(offer).ok().and_then(|sdp| {
        let m = sdp.media().get(agreed.stream)?;
        Some(SocketAddr::new(m.address?, m.port))
    });
    let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
        .await
        .map_err(|_| (503, "Service Unavailable"))?;
    let local = sock
        .local_addr()
        .map_err(|_| (503, "Service Unavailable"))?;
    let sdp = agreed.answer(local, rand::random::<u32>().into());
    Ok((sock, peer, sdp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(target: &str) -> storage::model::DialogLeg {
        storage::model::DialogLeg {
            extension: "1002".into(),
            call_id: "c".into(),
            local_tag: "a".into(),
            remote_tag: "b".into(),
            local_cseq: 1,
            remote_cseq: 1,
            local_uri: String::new(),
            remote_uri: String::new(),
            remote_target: target.into(),
            route_set: Vec::new(),
            local_contact: String::new(),
            peer: String::new(),
            transport: "udp".into(),
            remote_sdp: String::new(),
        }
    }

    #[test]
    fn the_service_and_number_travel_in_the_request_uri_user() {
        for s in [
            Service::Ivr,
            Service::Voicemail(LeftBecause::Busy),
            Service::Voicemail(LeftBecause::NoAnswer),
            Service::Voicemail(LeftBecause::Unavailable),
            Service::Listen("198.18.0.21".parse().unwrap()),
            Service::Listen("2001:db8::7".parse().unwrap()),
            Service::Conference(None),
            Service::Conference(Some("198.18.0.21".parse().unwrap())),
        ] {
            let user = s.user("1002");
            assert_eq!(Service::parse(&user), Some((s, "1002")), "{user}");
        }
        assert_eq!(Service::parse("1002"), None);
        assert_eq!(Service::parse("vm.later.1002"), None);
        assert_eq!(Service::parse("listen.c612.1002"), None);
        assert_eq!(Service::parse("listen.zz.1002"), None);
    }

    #[test]
    fn an_application_leg_is_an_agent_contact_on_loopback() {
        assert!(is_app_leg(&leg("sip:vm.busy.1002@127.0.0.1:40000")));
        assert!(is_app_leg(&leg(
            "sip:ivr.700@127.0.0.1:40000;transport=udp"
        )));
        // A phone on loopback (the demo), or an agent's user elsewhere, is not.
        assert!(!is_app_leg(&leg("sip:1002@127.0.0.1:5062")));
        assert!(!is_app_leg(&leg("sip:ivr.700@198.18.0.5:5060")));
        assert!(!is_app_leg(&leg("garbage")));
    }
}
