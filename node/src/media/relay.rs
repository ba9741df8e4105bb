//! The RTP relay of one call: for each media stream, a socket pair facing the caller and one facing the
//! callee; what arrives on one side goes out of the other, untouched (codecs, RFC 4733 DTMF, SRTP).
//!
//! Latching (symmetric RTP through NAT): a side's real source is learned from its first packet, but only
//! from an address the signalling vouches for (the SDP's connection address or the address the phone's
//! SIP comes from) and only within a short window after the side's media was (re)negotiated or the
//! other side's became known (the call was answered: a phone may send nothing before). Once
//! latched, packets from anywhere else are dropped, so nobody can take the stream over (RTP bleed).

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::MediaError;
use super::ports::{PortPair, PortRange};
use super::socket::{BATCH, Batch, Ready, RelaySocket};
use crate::vip::Fence;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Caller,
    Callee,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Self::Caller => 0,
            Self::Callee => 1,
        }
    }
}

/// What the signalling says about one side of one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PeerMedia {
    /// Where the side wants RTP; `None` while on hold (`c=0.0.0.0`) or not yet known.
    pub(crate) rtp: Option<SocketAddr>,
    /// Where it wants RTCP (the RTP port + 1 unless `a=rtcp` says otherwise).
    pub(crate) rtcp: Option<SocketAddr>,
    /// Sources its media may come from before latching: its SDP address and its SIP source.
    pub(crate) trusted: Vec<IpAddr>,
    /// Whether the SDP said where to send media at all (false: hold, or not answered yet).
    pub(crate) known: bool,
}

/// Packets a side sends to one of our sockets (its RTP or its RTCP).
#[derive(Debug, Default)]
struct Flow {
    signalled: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    latch_until: Option<Instant>,
}

impl Flow {
    /// Whether a packet from `src` is the side's own, latching to it when allowed. A source the
    /// firewall refuses (`may_latch`) is never latched.
    fn admit(
        &mut self,
        src: SocketAddr,
        trusted: &[IpAddr],
        now: Instant,
        may_latch: &LatchGate,
    ) -> bool {
        let in_window = self.latch_until.is_none_or(|until| now <= until);
        if let Some(latched) = self.latched {
            // While the window is open, the signalled address itself takes over a latch made on
            // the looser trusted-address match: packets still in flight from a phone that left
            // (a transfer's referrer, behind the same address) latched first.
            let exact = in_window && latched != src && self.signalled == Some(src);
            if exact && may_latch(src.ip()) {
                self.latched = Some(src);
                return true;
            }
            return latched == src;
        }
        if !may_latch(src.ip()) {
            return false;
        }
        if self.signalled == Some(src) {
            self.latched = Some(src);
            return true;
        }
        if in_window && trusted.contains(&src.ip()) {
            self.latched = Some(src);
            return true;
        }
        false
    }

    fn destination(&self, known: bool) -> Option<SocketAddr> {
        if !known {
            return None;
        }
        self.latched.or(self.signalled)
    }
}

#[derive(Debug, Default)]
struct SideState {
    peer: PeerMedia,
    rtp: Flow,
    rtcp: Flow,
    /// The PBX plays music on hold to this side: the other side's RTP is not passed on meanwhile
    /// (a holding phone may still send silence, which would fight the music for the jitter buffer).
    music: bool,
    /// The call is recorded: a copy of each RTP packet this side sends goes here.
    tap: Option<mpsc::Sender<Tapped>>,
    /// Someone listens for this side's keys: a copy of each of its telephone-event packets.
    keys: Option<KeyTap>,
    /// The PBX plays a short sound to this side (a notice): the other side's RTP is held meanwhile,
    /// as for music.
    notice: bool,
}

/// Where a side's telephone-event packets (of the payload types listed) are copied.
#[derive(Debug)]
struct KeyTap {
    payload_types: Vec<u8>,
    tx: mpsc::Sender<Tapped>,
}

/// Key packets queued for their listener: a few seconds of presses.
pub(crate) const KEY_QUEUE: usize = 64;

/// An RTP packet one side of a recorded call sent (0: the caller, 1: the callee).
#[derive(Debug)]
pub(crate) struct Tapped {
    pub(crate) side: usize,
    pub(crate) packet: Vec<u8>,
}

/// Packets queued for a call's recorder: about two seconds of both sides at 20 ms. A recorder
/// that falls further behind loses packets (counted), never the relay's time.
const TAP_QUEUE: usize = 200;

/// The sources one side's RTP and RTCP were latched to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Latch {
    pub(crate) rtp: Option<SocketAddr>,
    pub(crate) rtcp: Option<SocketAddr>,
}

/// Asks the security gate whether media from an address may be accepted at all.
pub(crate) type LatchGate = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// What a session asks before it relays anything: the firewall's word on sources it would latch,
/// and, on the VIP, the in-process fence (a frozen owner that wakes relays nothing once its lease is
/// gone, even before the kernel's fence or its own release catches up).
#[derive(Clone)]
pub(crate) struct MediaGuard {
    pub(crate) may_latch: LatchGate,
    pub(crate) fence: Option<Fence>,
}

/// One stream's sockets and latching state.
struct Stream {
    /// `[caller-facing, callee-facing]` RTP and RTCP sockets.
    rtp: [Arc<RelaySocket>; 2],
    rtcp: [Arc<RelaySocket>; 2],
    ports: [u16; 2],
    state: Mutex<[SideState; 2]>,
    _pairs: [PortPair; 2],
}

/// What a call's relay did, for the CDR, the API and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RelayStats {
    pub(crate) relayed: u64,
    pub(crate) dropped: u64,
}

#[derive(Default)]
struct Counters {
    relayed: AtomicU64,
    dropped: AtomicU64,
    /// Milliseconds after the session's start at which the last packet arrived from either side.
    last_packet_ms: AtomicU64,
}

/// A call's media relay. Dropping it stops the relay and frees every port.
pub(crate) struct MediaSession {
    streams: Vec<Arc<Stream>>,
    tasks: Vec<JoinHandle<()>>,
    /// The music on hold playing, by `(stream, side)`.
    music: std::collections::HashMap<(usize, usize), JoinHandle<()>>,
    counters: Arc<Counters>,
    started: Instant,
    latch_window: Duration,
    guard: MediaGuard,
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        for task in self.tasks.iter().chain(self.music.values()) {
            task.abort();
        }
    }
}

impl MediaSession {
    /// A session with `streams` streams on newly allocated ports.
    pub(crate) fn allocate(
        range: &PortRange,
        streams: usize,
        latch_window: Duration,
        guard: MediaGuard,
    ) -> Result<Self, MediaError> {
        let mut session = Self::empty(latch_window, guard);
        session.add_streams(range, streams)?;
        Ok(session)
    }

    /// A session on given ports: a call carried on after a failover keeps the ports its phones
    /// were told.
    pub(crate) fn bind(
        range: &PortRange,
        ports: &[[u16; 2]],
        latch_window: Duration,
        guard: MediaGuard,
    ) -> Result<Self, MediaError> {
        let mut session = Self::empty(latch_window, guard);
        for &[caller, callee] in ports {
            let pairs = [range.bind(caller)?, range.bind(callee)?];
            session.push(pairs);
        }
        Ok(session)
    }

    /// Restores the RTP and RTCP sources a side had latched (from the call's record): packets from
    /// anywhere else stay refused after a failover, as before it. A source not known stays open to
    /// latching within the window, as at the call's start.
    pub(crate) fn restore_latch(&self, i: usize, side: Side, latch: Latch) {
        let Some(stream) = self.streams.get(i) else {
            return;
        };
        let mut state = lock(&stream.state);
        let s = &mut state[side.index()];
        if latch.rtp.is_some() {
            s.rtp.latched = latch.rtp;
        }
        if latch.rtcp.is_some() {
            s.rtcp.latched = latch.rtcp;
        }
    }

    fn empty(latch_window: Duration, guard: MediaGuard) -> Self {
        Self {
            streams: Vec::new(),
            tasks: Vec::new(),
            music: std::collections::HashMap::new(),
            counters: Arc::new(Counters::default()),
            started: Instant::now(),
            latch_window,
            guard,
        }
    }

    /// Adds streams (a re-INVITE added `m=` lines): all of them, or none when the range runs out.
    pub(crate) fn add_streams(&mut self, range: &PortRange, n: usize) -> Result<(), MediaError> {
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            pairs.push([range.allocate()?, range.allocate()?]);
        }
        for p in pairs {
            self.push(p);
        }
        Ok(())
    }

    fn push(&mut self, pairs: [PortPair; 2]) {
        let [a, b] = pairs;
        let rtp = [Arc::clone(&a.rtp), Arc::clone(&b.rtp)];
        let rtcp = [Arc::clone(&a.rtcp), Arc::clone(&b.rtcp)];
        let stream = Arc::new(Stream {
            ports: [a.port, b.port],
            rtp,
            rtcp,
            state: Mutex::new(Default::default()),
            _pairs: [a, b],
        });
        for side in [Side::Caller, Side::Callee] {
            for is_rtcp in [false, true] {
                let relay = Relay {
                    stream: Arc::clone(&stream),
                    from: side,
                    is_rtcp,
                    counters: Arc::clone(&self.counters),
                    started: self.started,
                    guard: self.guard.clone(),
                };
                self.tasks.push(tokio::spawn(relay.run()));
            }
        }
        self.streams.push(stream);
    }

    pub(crate) fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Our RTP port facing `side` in stream `i`.
    #[cfg(test)]
    pub(crate) fn port(&self, i: usize, side: Side) -> Option<u16> {
        self.streams.get(i).map(|s| s.ports[side.index()])
    }

    /// `[caller-facing, callee-facing]` RTP ports of every stream.
    pub(crate) fn ports(&self) -> Vec<[u16; 2]> {
        self.streams.iter().map(|s| s.ports).collect()
    }

    /// New signalling for one side of stream `i`. A changed address opens a new latching window.
    /// Once the side's media is known (it answered), the other side's flows that have not latched
    /// get a new window too: a phone may send nothing until its call is answered, which can be
    /// long after its offer opened its window.
    pub(crate) fn set_peer(&self, i: usize, side: Side, peer: PeerMedia) {
        let Some(stream) = self.streams.get(i) else {
            return;
        };
        let mut state = lock(&stream.state);
        let until = Instant::now() + self.latch_window;
        if peer.known {
            let other = &mut state[1 - side.index()];
            for flow in [&mut other.rtp, &mut other.rtcp] {
                if flow.latched.is_none() && flow.latch_until.is_some() {
                    flow.latch_until = Some(until);
                }
            }
        }
        let s = &mut state[side.index()];
        if s.rtp.signalled != peer.rtp || s.peer.trusted != peer.trusted {
            s.rtp = Flow {
                signalled: peer.rtp,
                latched: None,
                latch_until: Some(until),
            };
        }
        if s.rtcp.signalled != peer.rtcp || s.peer.trusted != peer.trusted {
            s.rtcp = Flow {
                signalled: peer.rtcp,
                latched: None,
                latch_until: Some(until),
            };
        }
        s.peer = peer;
    }

    /// Music on hold (`music`: 8 kHz samples, the built-in tune when empty) to `side` of stream
    /// `i` in payload type `pt` (`None`: none, the other side's RTP flows again).
    pub(crate) fn hold_music(&mut self, i: usize, side: Side, pt: Option<u8>, music: Arc<[i16]>) {
        let Some(stream) = self.streams.get(i) else {
            return;
        };
        if let Some(task) = self.music.remove(&(i, side.index())) {
            task.abort();
        }
        lock(&stream.state)[side.index()].music = pt.is_some();
        if let Some(pt) = pt {
            let task = tokio::spawn(play_music(
                Arc::clone(stream),
                side.index(),
                pt,
                music,
                self.guard.clone(),
            ));
            self.music.insert((i, side.index()), task);
        }
    }

    /// Plays `clip` (8 kHz) once to `side` of the first stream in G.711 payload type `pt`, the
    /// other side's audio held back meanwhile. Nothing while that side hears music on hold (the
    /// music goes on) or another notice.
    pub(crate) fn play_notice(&self, side: Side, pt: u8, clip: Arc<[i16]>) {
        let Some(stream) = self.streams.first() else {
            return;
        };
        {
            let mut state = lock(&stream.state);
            let s = &mut state[side.index()];
            if s.music || s.notice || clip.is_empty() {
                return;
            }
            s.notice = true;
        }
        let (stream, guard) = (Arc::clone(stream), self.guard.clone());
        tokio::spawn(play_notice(stream, side.index(), pt, clip, guard));
    }

    /// Starts copying the first stream's RTP, as each side sends it, to the receiver returned (it
    /// ends when the recording is stopped or the session dropped).
    pub(crate) fn record(&self) -> Option<mpsc::Receiver<Tapped>> {
        let stream = self.streams.first()?;
        let (tx, rx) = mpsc::channel(TAP_QUEUE);
        let mut state = lock(&stream.state);
        for side in state.iter_mut() {
            side.tap = Some(tx.clone());
        }
        Some(rx)
    }

    /// Stops the recording [`Self::record`] started: the recorder's input ends, and it saves what it
    /// holds.
    pub(crate) fn stop_recording(&self) {
        if let Some(stream) = self.streams.first() {
            for side in lock(&stream.state).iter_mut() {
                side.tap = None;
            }
        }
    }

    /// Starts copying the RTP packets `side` sends in the first stream with one of the
    /// `payload_types` (its telephone-events) to `to`; replaces any earlier listener of that side.
    /// False without a stream.
    pub(crate) fn watch_keys(
        &self,
        side: Side,
        payload_types: Vec<u8>,
        to: mpsc::Sender<Tapped>,
    ) -> bool {
        let Some(stream) = self.streams.first() else {
            return false;
        };
        let tap = KeyTap {
            payload_types,
            tx: to,
        };
        lock(&stream.state)[side.index()].keys = Some(tap);
        true
    }

    /// Stops every listener [`Self::watch_keys`] started.
    pub(crate) fn unwatch_keys(&self) {
        if let Some(stream) = self.streams.first() {
            for side in lock(&stream.state).iter_mut() {
                side.keys = None;
            }
        }
    }

    /// The sources latched for each side's RTP and RTCP in stream `i`, `[caller, callee]`.
    pub(crate) fn latched(&self, i: usize) -> [Latch; 2] {
        self.streams.get(i).map_or_else(Default::default, |s| {
            let state = lock(&s.state);
            state.each_ref().map(|side| Latch {
                rtp: side.rtp.latched,
                rtcp: side.rtcp.latched,
            })
        })
    }

    /// How long since any packet arrived from either side (since the start when none has).
    pub(crate) fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.counters.last_packet_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    pub(crate) fn stats(&self) -> RelayStats {
        RelayStats {
            relayed: self.counters.relayed.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }
}

/// What becomes of a packet that arrived.
enum Route {
    /// Not from the side's own source: dropped.
    Foreign,
    /// The other side hears music on hold: not passed on.
    Held,
    /// Passed on there (`None`: the other side's address is not known).
    To(Option<SocketAddr>),
}

/// Music on hold to `side` of `stream`, every 20 ms, until the task is aborted. Sent from the
/// relay's own socket facing that side, to where its RTP goes; nothing while the fence is down or
/// the side's address is not known.
async fn play_music(
    stream: Arc<Stream>,
    side: usize,
    pt: u8,
    music: Arc<[i16]>,
    guard: MediaGuard,
) {
    let sent = metrics::counter!("pbx_media_hold_music_packets_total");
    let mut player = super::music::Player::new(pt, rand::random(), rand::random(), music);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut packet = Vec::with_capacity(12 + super::music::FRAME);
    loop {
        tick.tick().await;
        if guard.fence.as_ref().is_some_and(|f| !f.holds()) {
            continue;
        }
        let dest = {
            let state = lock(&stream.state);
            state[side].rtp.destination(state[side].peer.known)
        };
        let Some(dest) = dest else {
            continue;
        };
        player.next_packet(&mut packet);
        if stream.rtp[side].send_to(&packet, dest).is_ok() {
            sent.increment(1);
        }
    }
}

/// Sends `clip` once to `side`, 20 ms a packet, then lets the other side be heard again. The task
/// owns its stream: a call that ends meanwhile stops it at the next packet (its sockets' peers
/// are gone), and it never runs longer than the clip.
async fn play_notice(
    stream: Arc<Stream>,
    side: usize,
    pt: u8,
    clip: Arc<[i16]>,
    guard: MediaGuard,
) {
    let frames = clip.len().div_ceil(super::music::FRAME);
    let mut player = super::music::Player::new(pt, rand::random(), rand::random(), clip);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut packet = Vec::with_capacity(12 + super::music::FRAME);
    for _ in 0..frames {
        tick.tick().await;
        if guard.fence.as_ref().is_some_and(|f| !f.holds()) {
            continue;
        }
        let dest = {
            let state = lock(&stream.state);
            state[side].rtp.destination(state[side].peer.known)
        };
        player.next_packet(&mut packet);
        if let Some(dest) = dest {
            let _ = stream.rtp[side].send_to(&packet, dest);
        }
    }
    lock(&stream.state)[side].notice = false;
}

/// One direction of one socket kind: packets from `from` on its RTP (or RTCP) socket go out of the
/// other side's socket of the same kind.
struct Relay {
    stream: Arc<Stream>,
    from: Side,
    is_rtcp: bool,
    counters: Arc<Counters>,
    started: Instant,
    guard: MediaGuard,
}

/// The relay's counters in `/metrics`, for one socket kind.
struct RelayMetrics {
    relayed: metrics::Counter,
    foreign: metrics::Counter,
    no_dest: metrics::Counter,
    send_failed: metrics::Counter,
    fenced: metrics::Counter,
    untapped: metrics::Counter,
}

impl RelayMetrics {
    fn new(is_rtcp: bool) -> Self {
        let kind = if is_rtcp { "rtcp" } else { "rtp" };
        fn dropped(reason: &'static str) -> metrics::Counter {
            metrics::counter!("pbx_media_packets_dropped_total", "reason" => reason)
        }
        Self {
            relayed: metrics::counter!("pbx_media_packets_relayed_total", "kind" => kind),
            foreign: dropped("foreign_source"),
            no_dest: dropped("no_destination"),
            send_failed: dropped("send_failed"),
            fenced: metrics::counter!("pbx_vip_fenced_total", "direction" => "media"),
            untapped: metrics::counter!(
                "pbx_recording_packets_dropped_total",
                "reason" => "recorder_behind"
            ),
        }
    }
}

/// What a relay task reads into, decides with and counts in. A read, the decisions and the sends
/// it leads to run without awaiting, so one set per thread serves every relay task the thread runs
/// (and stays in cache) instead of a set per socket.
struct Scratch {
    batch: Batch,
    /// What becomes of each datagram of the batch, in order.
    routes: Vec<Route>,
    /// `[rtp, rtcp]`. Made on a thread's first batch, long after the process installed its
    /// metrics recorder.
    metrics: [RelayMetrics; 2],
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        batch: Batch::new(),
        routes: Vec::with_capacity(BATCH),
        metrics: [false, true].map(RelayMetrics::new),
    });
}

impl Relay {
    /// Where an admitted packet goes: to the other side `o`, unless it hears music on hold.
    fn route(&self, state: &[SideState; 2], o: usize) -> Route {
        if !self.is_rtcp && (state[o].music || state[o].notice) {
            return Route::Held;
        }
        let out = &state[o];
        let flow = if self.is_rtcp { &out.rtcp } else { &out.rtp };
        Route::To(flow.destination(out.peer.known))
    }

    /// Whether a packet from `src` is the side's own (latching as allowed), copied to whoever
    /// listens, and where it goes.
    fn decide(
        &self,
        state: &mut [SideState; 2],
        src: SocketAddr,
        packet: &[u8],
        now: Instant,
        untapped: &metrics::Counter,
    ) -> Route {
        let (i, o) = (self.from.index(), 1 - self.from.index());
        let side = &mut state[i];
        let flow = if self.is_rtcp {
            &mut side.rtcp
        } else {
            &mut side.rtp
        };
        if !flow.admit(src, &side.peer.trusted, now, &self.guard.may_latch) {
            return Route::Foreign;
        }
        if !self.is_rtcp {
            copy_out(&state[i], i, packet, untapped);
        }
        self.route(state, o)
    }

    async fn run(self) {
        let (i, o) = (self.from.index(), 1 - self.from.index());
        let sockets = if self.is_rtcp {
            &self.stream.rtcp
        } else {
            &self.stream.rtp
        };
        let (inbound, outbound) = (Arc::clone(&sockets[i]), Arc::clone(&sockets[o]));
        loop {
            let Ok(mut ready) = inbound.ready().await else {
                // The runtime is shutting down.
                return;
            };
            let read = SCRATCH
                .with_borrow_mut(|scratch| self.relay_waiting(&mut ready, scratch, &outbound));
            if read.is_err() {
                // ICMP errors surface as recv errors on some kernels; the socket is still usable.
                tokio::task::yield_now().await;
            }
        }
    }

    /// Reads what waits on the inbound socket and relays it, in the order it came. The stream's
    /// state is locked once for the whole batch, and not while sending.
    fn relay_waiting(
        &self,
        ready: &mut Ready<'_>,
        scratch: &mut Scratch,
        outbound: &RelaySocket,
    ) -> std::io::Result<()> {
        let Scratch {
            batch,
            routes,
            metrics,
        } = scratch;
        let metrics = &metrics[usize::from(self.is_rtcp)];
        match ready.recv(batch) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
        if self.guard.fence.as_ref().is_some_and(|f| !f.holds()) {
            metrics.fenced.increment(batch.datagrams().count() as u64);
            return Ok(());
        }
        let now = Instant::now();
        routes.clear();
        {
            let mut state = lock(&self.stream.state);
            for (packet, src) in batch.datagrams() {
                routes.push(self.decide(&mut state, src, packet, now, &metrics.untapped));
            }
        }
        let (mut alive, mut relayed, mut foreign, mut no_dest, mut failed) = (false, 0, 0, 0, 0);
        for ((packet, _), route) in batch.datagrams().zip(routes.iter()) {
            match route {
                Route::Foreign => foreign += 1,
                // The other side hears music on hold instead; the call is not idle.
                Route::Held => alive = true,
                Route::To(None) => {
                    alive = true;
                    no_dest += 1;
                }
                Route::To(Some(dest)) => {
                    alive = true;
                    match outbound.send_to(packet, *dest) {
                        Ok(_) => relayed += 1,
                        Err(_) => failed += 1,
                    }
                }
            }
        }
        if alive {
            self.counters.last_packet_ms.store(
                now.duration_since(self.started).as_millis() as u64,
                Ordering::Relaxed,
            );
        }
        for (counter, n) in [
            (&metrics.relayed, relayed),
            (&metrics.foreign, foreign),
            (&metrics.no_dest, no_dest),
            (&metrics.send_failed, failed),
        ] {
            if n > 0 {
                counter.increment(n);
            }
        }
        if relayed > 0 {
            self.counters.relayed.fetch_add(relayed, Ordering::Relaxed);
        }
        if foreign + no_dest + failed > 0 {
            self.counters
                .dropped
                .fetch_add(foreign + no_dest + failed, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Gives an admitted RTP packet of side `i` to whoever copies it: the recorder, the key listener.
/// Neither may hold the relay up: a full queue loses the copy (a recorder's loss is counted).
fn copy_out(side: &SideState, i: usize, packet: &[u8], untapped: &metrics::Counter) {
    if let Some(tap) = &side.tap {
        let copy = Tapped {
            side: i,
            packet: packet.to_vec(),
        };
        if tap.try_send(copy).is_err() && !tap.is_closed() {
            untapped.increment(1);
        }
    }
    if let Some(keys) = &side.keys
        && let Some(&second) = packet.get(1)
        && keys.payload_types.contains(&(second & 0x7f))
    {
        let copy = Tapped {
            side: i,
            packet: packet.to_vec(),
        };
        let _ = keys.tx.try_send(copy);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use tokio::net::UdpSocket;

    use super::*;

    fn open() -> MediaGuard {
        MediaGuard {
            may_latch: Arc::new(|_| true),
            fence: None,
        }
    }

    async fn phone() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    fn peer_of(sock: &UdpSocket) -> PeerMedia {
        let addr = sock.local_addr().unwrap();
        PeerMedia {
            rtp: Some(addr),
            rtcp: Some(SocketAddr::new(addr.ip(), addr.port() + 1)),
            trusted: vec![addr.ip()],
            known: true,
        }
    }

    async fn recv(sock: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = [0u8; 64];
        let got = tokio::time::timeout(Duration::from_millis(300), sock.recv_from(&mut buf)).await;
        got.ok().map(|r| {
            let (n, from) = r.unwrap();
            (buf[..n].to_vec(), from)
        })
    }

    #[tokio::test]
    async fn nothing_is_relayed_while_the_vip_fence_is_down() {
        let range = PortRange::new([127, 0, 0, 1].into(), 42_300, 42_307);
        let fence = Fence::new();
        let guard = MediaGuard {
            may_latch: Arc::new(|_| true),
            fence: Some(fence.clone()),
        };
        let session = MediaSession::allocate(&range, 1, Duration::from_secs(5), guard).unwrap();
        let (caller, callee) = (phone().await, phone().await);
        session.set_peer(0, Side::Caller, peer_of(&caller));
        session.set_peer(0, Side::Callee, peer_of(&callee));
        let caller_side =
            SocketAddr::from(([127, 0, 0, 1], session.port(0, Side::Caller).unwrap()));
        // The lease is held: media flows.
        fence.hold_until(Instant::now() + Duration::from_secs(60));
        caller.send_to(b"held", caller_side).await.unwrap();
        assert_eq!(recv(&callee).await.unwrap().0, b"held");
        // The lease ran out (a frozen owner woke): nothing is relayed, nothing latches, and the
        // media does not even count as alive.
        fence.revoke();
        let idle_before = session.idle_for();
        caller.send_to(b"stale", caller_side).await.unwrap();
        assert!(recv(&callee).await.is_none());
        assert!(session.idle_for() >= idle_before);
        assert_eq!(session.stats().relayed, 1);
        // Held again (this node took the VIP back): flowing again.
        fence.hold_until(Instant::now() + Duration::from_secs(60));
        caller.send_to(b"again", caller_side).await.unwrap();
        assert_eq!(recv(&callee).await.unwrap().0, b"again");
    }

    #[tokio::test]
    async fn relays_both_ways_and_refuses_a_foreign_source() {
        let range = PortRange::new([127, 0, 0, 1].into(), 42_000, 42_099);
        let session = MediaSession::allocate(&range, 1, Duration::from_secs(5), open()).unwrap();
        let (caller, callee, intruder) = (phone().await, phone().await, phone().await);
        session.set_peer(0, Side::Caller, peer_of(&caller));
        session.set_peer(0, Side::Callee, peer_of(&callee));
        let to_caller_side =
            SocketAddr::from(([127, 0, 0, 1], session.port(0, Side::Caller).unwrap()));
        let to_callee_side =
            SocketAddr::from(([127, 0, 0, 1], session.port(0, Side::Callee).unwrap()));

        caller.send_to(b"hello", to_caller_side).await.unwrap();
        let (data, from) = recv(&callee)
            .await
            .expect("callee gets the caller's packet");
        assert_eq!(data, b"hello");
        assert_eq!(
            from, to_callee_side,
            "it comes from the PBX's callee-facing port"
        );
        callee.send_to(b"back", to_callee_side).await.unwrap();
        assert_eq!(recv(&caller).await.unwrap().0, b"back");

        // Another source, even on a trusted IP, cannot take over a latched stream.
        intruder.send_to(b"bleed", to_caller_side).await.unwrap();
        assert!(recv(&callee).await.is_none());
        assert_eq!(
            session.latched(0)[0].rtp,
            Some(caller.local_addr().unwrap())
        );
        assert_eq!(session.stats().relayed, 2);
        assert_eq!(session.stats().dropped, 1);
    }

    #[tokio::test]
    async fn a_burst_queued_at_once_is_relayed_whole_and_in_order_without_the_intruders_share() {
        let range = PortRange::new([127, 0, 0, 1].into(), 42_700, 42_707);
        let session = MediaSession::allocate(&range, 1, Duration::from_secs(5), open()).unwrap();
        let (caller, callee, intruder) = (phone().await, phone().await, phone().await);
        session.set_peer(0, Side::Caller, peer_of(&caller));
        session.set_peer(0, Side::Callee, peer_of(&callee));
        let caller_side =
            SocketAddr::from(([127, 0, 0, 1], session.port(0, Side::Caller).unwrap()));
        // Latch the caller first, so the intruder (same address, another port) is foreign.
        caller.send_to(b"first", caller_side).await.unwrap();
        assert_eq!(recv(&callee).await.unwrap().0, b"first");
        // Far more than one read takes, all queued before the relay runs again (`try_send_to`
        // does not yield to it), an intruder's packet after every tenth.
        let burst = BATCH * 6 + 5;
        for n in 0..burst {
            caller
                .try_send_to(&(n as u16).to_be_bytes(), caller_side)
                .unwrap();
            if n % 10 == 0 {
                intruder.try_send_to(b"bleed", caller_side).unwrap();
            }
        }
        let mut got = Vec::new();
        while let Some((data, _)) = recv(&callee).await {
            got.push(data);
        }
        let sent: Vec<Vec<u8>> = (0..burst)
            .map(|n| (n as u16).to_be_bytes().to_vec())
            .collect();
        assert_eq!(
            got, sent,
            "every packet once, in order, and none of the intruder's"
        );
        let stats = session.stats();
        assert_eq!(stats.relayed, 1 + burst as u64);
        assert_eq!(stats.dropped, burst.div_ceil(10) as u64);
    }

    #[tokio::test]
    async fn the_signalled_address_takes_over_a_loose_latch_inside_the_window() {
        let range = PortRange::new([127, 0, 0, 1].into(), 42_400, 42_499);
        let session = MediaSession::allocate(&range, 1, Duration::from_secs(5), open()).unwrap();
        let (leaving, arriving, callee) = (phone().await, phone().await, phone().await);
        // The side now belongs to `arriving`; `leaving` (same address, another port) still sends.
        session.set_peer(0, Side::Caller, peer_of(&arriving));
        session.set_peer(0, Side::Callee, peer_of(&callee));
        let caller_side =
            SocketAddr::from(([127, 0, 0, 1], session.port(0, Side::Caller).unwrap()));
        leaving.send_to(b"stray", caller_side).await.unwrap();
        assert_eq!(recv(&callee).await.unwrap().0, b"stray", "latched loosely");
        arriving.send_to(b"mine", caller_side).await.unwrap();
        assert_eq!(recv(&callee).await.unwrap().0, b"mine");
        assert_eq!(
            session.latched(0)[0].rtp,
            Some(arriving.local_addr().unwrap()),
            "the signalled address took the latch over"
        );
        leaving.send_to(b"stray again", caller_side).await.unwrap();
        assert!(
            recv(&callee).await.is_none(),
            "the one that left is foreign now"
        );
    }

    #[tokio::test]
    async fn latches_a_natted_source_only_inside_the_window() {
        let range = PortRange::new([127, 0, 0, 1].into(), 42_100, 42_199);
        let session =
            MediaSession::allocate(&range, 1, Duration::from_millis(200), open()).unwrap();
        let (caller, callee, late) = (phone().await, phone().await, phone().await);
        // The caller's SDP names a port it does not send from (NAT rewrote it).
        let mut signalled = peer_of(&caller);
        signalled.rtp = Some("127.0.0.1:9".parse().unwrap());
        session.set_peer(0, Side::Caller, signalled);
        session.set_peer(0, Side::Callee, peer_of(&callee));
        let caller_side =
            SocketAddr::from(([127, 0, 0, 1], session.port(0, Side::Caller).unwrap()));
        let callee_side =
            SocketAddr::from(([127, 0, 0, 1], session.port(0, Side::Callee).unwrap()));
        caller.send_to(b"natted", caller_side).await.unwrap();
        assert_eq!(recv(&callee).await.unwrap().0, b"natted");
        // Replies go to the latched source, not the signalled port.
        callee.send_to(b"reply", callee_side).await.unwrap();
        assert_eq!(recv(&caller).await.unwrap().0, b"reply");

        // After the window a new, unsignalled source is not learned.
        let session = MediaSession::allocate(&range, 1, Duration::from_millis(50), open()).unwrap();
        let mut signalled = peer_of(&late);
        signalled.rtp = Some("127.0.0.1:9".parse().unwrap());
        session.set_peer(0, Side::Caller, signalled);
        session.set_peer(0, Side::Callee, peer_of(&callee));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let caller_side =
            SocketAddr::from(([127, 0, 0, 1], session.port(0, Side::Caller).unwrap()));
        late.send_to(b"too late", caller_side).await.unwrap();
        assert!(recv(&callee).await.is_none());
    }

    #[tokio::test]
    async fn a_caller_silent_until_answered_latches_after_its_offers_window() {
        let range = PortRange::new([127, 0, 0, 1].into(), 42_600, 42_699);
        let session = MediaSession::allocate(&range, 1, Duration::from_millis(50), open()).unwrap();
        let (caller, callee) = (phone().await, phone().await);
        // The caller's SDP names a port it does not send from (NAT rewrote it); the callee rings
        // longer than the window, and the caller sends nothing until it answers.
        let mut signalled = peer_of(&caller);
        signalled.rtp = Some("127.0.0.1:9".parse().unwrap());
        session.set_peer(0, Side::Caller, signalled);
        tokio::time::sleep(Duration::from_millis(100)).await;
        session.set_peer(0, Side::Callee, peer_of(&callee));
        let caller_side =
            SocketAddr::from(([127, 0, 0, 1], session.port(0, Side::Caller).unwrap()));
        caller.send_to(b"hello", caller_side).await.unwrap();
        assert_eq!(recv(&callee).await.unwrap().0, b"hello");
        assert_eq!(
            session.latched(0)[0].rtp,
            Some(caller.local_addr().unwrap())
        );
    }

    #[tokio::test]
    async fn a_source_the_firewall_refuses_is_never_latched() {
        let range = PortRange::new([127, 0, 0, 1].into(), 42_300, 42_399);
        let refused: IpAddr = "127.0.0.1".parse().unwrap();
        let gate = MediaGuard {
            may_latch: Arc::new(move |ip| ip != refused),
            fence: None,
        };
        let session = MediaSession::allocate(&range, 1, Duration::from_secs(5), gate).unwrap();
        let (caller, callee) = (phone().await, phone().await);
        session.set_peer(0, Side::Caller, peer_of(&caller));
        session.set_peer(0, Side::Callee, peer_of(&callee));
        let caller_side =
            SocketAddr::from(([127, 0, 0, 1], session.port(0, Side::Caller).unwrap()));
        caller.send_to(b"blocked", caller_side).await.unwrap();
        assert!(recv(&callee).await.is_none());
        assert_eq!(session.latched(0)[0].rtp, None);
    }

    #[tokio::test]
    async fn hold_stops_media_towards_the_held_side_and_drop_frees_ports() {
        let range = PortRange::new([127, 0, 0, 1].into(), 42_200, 42_207);
        let session = MediaSession::allocate(&range, 1, Duration::from_secs(5), open()).unwrap();
        assert_eq!(range.in_use(), 2);
        let (caller, callee) = (phone().await, phone().await);
        session.set_peer(0, Side::Caller, peer_of(&caller));
        let mut held = peer_of(&callee);
        held.known = false;
        session.set_peer(0, Side::Callee, held);
        let caller_side =
            SocketAddr::from(([127, 0, 0, 1], session.port(0, Side::Caller).unwrap()));
        caller.send_to(b"music", caller_side).await.unwrap();
        assert!(recv(&callee).await.is_none());
        assert!(session.idle_for() < Duration::from_secs(1));
        drop(session);
        tokio::task::yield_now().await;
        assert_eq!(range.in_use(), 0);
        assert!(MediaSession::allocate(&range, 2, Duration::from_secs(1), open()).is_ok());
    }

    #[tokio::test]
    async fn a_sides_key_packets_are_copied_as_relayed_and_a_stopped_recording_ends() {
        let range = PortRange::new([127, 0, 0, 1].into(), 42_500, 42_507);
        let session = MediaSession::allocate(&range, 1, Duration::from_secs(5), open()).unwrap();
        let (caller, callee) = (phone().await, phone().await);
        session.set_peer(0, Side::Caller, peer_of(&caller));
        session.set_peer(0, Side::Callee, peer_of(&callee));
        let port = |side| SocketAddr::from(([127, 0, 0, 1], session.port(0, side).unwrap()));
        let (to, mut keys) = mpsc::channel(KEY_QUEUE);
        assert!(session.watch_keys(Side::Caller, vec![101], to));
        let mut recorded = session.record().unwrap();
        // RTP version 2; payload type 101 (with and without the marker bit), then 0 (audio).
        let event = [0x80, 101, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 10, 0x0a, 0, 160];
        let marked = [
            0x80,
            0x80 | 101,
            0,
            2,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            9,
            10,
            0x8a,
            1,
            64,
        ];
        let audio = [0x80, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 9, 0xff, 0xff];
        for p in [&event[..], &marked, &audio] {
            caller.send_to(p, port(Side::Caller)).await.unwrap();
            assert_eq!(recv(&callee).await.unwrap().0, p, "relayed as it came");
        }
        // The callee's key is relayed and recorded, not given to the caller's listener.
        callee.send_to(&event, port(Side::Callee)).await.unwrap();
        assert_eq!(recv(&caller).await.unwrap().0, event);
        let first = tokio::time::timeout(Duration::from_secs(1), keys.recv()).await;
        assert_eq!(first.unwrap().unwrap().packet, event);
        let second = tokio::time::timeout(Duration::from_secs(1), keys.recv()).await;
        assert_eq!(second.unwrap().unwrap().packet, marked);
        assert!(
            keys.try_recv().is_err(),
            "audio and the other side are not keys"
        );
        for _ in 0..4 {
            let t = tokio::time::timeout(Duration::from_secs(1), recorded.recv()).await;
            assert!(
                t.unwrap().is_some(),
                "every packet of both sides is recorded"
            );
        }
        session.stop_recording();
        session.unwatch_keys();
        assert!(recorded.recv().await.is_none(), "the recorder's input ends");
        assert!(keys.recv().await.is_none(), "the listener's input ends");
    }

    #[tokio::test]
    async fn a_notice_is_played_once_to_one_side_with_the_other_held_back_meanwhile() {
        let range = PortRange::new([127, 0, 0, 1].into(), 42_600, 42_607);
        let session = MediaSession::allocate(&range, 1, Duration::from_secs(5), open()).unwrap();
        let (caller, callee) = (phone().await, phone().await);
        session.set_peer(0, Side::Caller, peer_of(&caller));
        session.set_peer(0, Side::Callee, peer_of(&callee));
        let port = |side| SocketAddr::from(([127, 0, 0, 1], session.port(0, side).unwrap()));
        // Latch the caller's side, then play three frames of a loud square wave to it.
        callee.send_to(b"first", port(Side::Callee)).await.unwrap();
        assert_eq!(recv(&caller).await.unwrap().0, b"first");
        let clip: Arc<[i16]> = (0..480)
            .map(|i| if i % 8 < 4 { 8000 } else { -8000 })
            .collect();
        session.play_notice(Side::Caller, 0, Arc::clone(&clip));
        // Meanwhile the callee is not heard, and a second notice is refused.
        session.play_notice(Side::Caller, 0, clip);
        callee.send_to(b"held", port(Side::Callee)).await.unwrap();
        let mut notice = 0;
        let mut buf = [0u8; 256];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(300), caller.recv(&mut buf)).await
        {
            assert_eq!(
                n,
                172,
                "RTP header and 160 µ-law samples: {:?}",
                &buf[..n.min(16)]
            );
            assert_eq!(buf[1] & 0x7f, 0);
            notice += 1;
        }
        assert_eq!(notice, 3, "once, 20 ms a packet");
        callee.send_to(b"after", port(Side::Callee)).await.unwrap();
        assert_eq!(recv(&caller).await.unwrap().0, b"after", "heard again");
    }
}
