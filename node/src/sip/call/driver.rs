//! The task that runs one call: it authenticates and admits the caller's INVITE (reading what
//! admission needs from the cluster), allocates the media, then feeds the call's [`CallCore`] its
//! inputs and timers and carries out its actions: SIP through the endpoint, media on the relay,
//! records through Raft.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use pbx_sip::transaction::{ClientTxId, Peer, ServerTxId};
use storage::model::{ActiveCall, Extension, Setting};
use storage::recording::{RecordingMode, RecordingPolicy};
use storage::recording_routes::{RecordingTarget, route_recording};
use storage::routing::{CallRoute, Direction};

use super::admission::{self, Refusal};
use super::core::{
    Action, CallCore, Env, Handover, HandoverReply, Input, LegEvent, Locals, MediaStatus, NewCall,
    NoHandover, Now, Replaces, side_of,
};
use super::limits::AtLimit;
use super::on_demand::{self, OnDemand};
use super::outbound::RouteFacts;
use super::plan::{self, Ring};
use super::privacy::display_name;
use super::reach::{Internal, ReplicaDirectory};
use super::record::{self, CdrFacts};
use super::{Calls, dialog};
use crate::media::MediaSession;
use crate::sip::auth::{AuthOutcome, SipAuth};
use crate::time::now_millis;

/// How long an attended transfer waits for the call it replaces to hand its leg over.
const HANDOVER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn now() -> Now {
    Now {
        at: std::time::Instant::now(),
        wall: now_millis(),
    }
}

impl Calls {
    /// What a call needs to know about this node, as of now.
    pub(super) fn env(&self) -> Env {
        use pbx_sip::transaction::Transport;
        Env {
            node_id: self.cluster.node_id(),
            media_addr: self.media_addr(),
            locals: Locals {
                udp: self.local(Transport::Udp),
                tcp: self.local(Transport::Tcp),
                tls: self.local(Transport::Tls),
            },
            config: self.config.clone(),
        }
    }
}

/// One call attempt as far as admission got: who, to what, and how it was routed.
pub(super) struct Attempt {
    /// The call's id (its CDR's, and its toll reservation's).
    pub(super) id: String,
    pub(super) started: Now,
    /// The calling extension, or the caller's number for a call from a trunk.
    pub(super) caller: String,
    pub(super) caller_name: String,
    pub(super) callee: String,
    /// Refuse callers hiding their identity.
    pub(super) reject_anonymous: bool,
    /// The call came in on a trunk (no digest authentication; its route is known).
    pub(super) from_trunk: bool,
    pub(super) facts: Option<RouteFacts>,
    /// The number dialled is a ring group's: its calls are not an extension's to count.
    pub(super) ring_group: bool,
    /// The call goes to one of the PBX's applications rather than by the call plan.
    pub(super) app: Option<crate::apps::Service>,
}

impl Attempt {
    pub(super) fn cdr_key(&self) -> String {
        storage::model::CallDetail::key_for(self.started.wall, &self.id)
    }
}

/// A new call: the caller's INVITE on server transaction `tx`.
#[expect(
    clippy::too_many_arguments,
    reason = "the task's whole context, handed over once"
)]
pub(super) async fn run(
    calls: Arc<Calls>,
    tx: ServerTxId,
    req: rsip::Request,
    raw_uri: String,
    peer: Peer,
    auth: Arc<SipAuth>,
    input: mpsc::UnboundedSender<Input>,
    inputs: mpsc::UnboundedReceiver<Input>,
) {
    let started = now();
    let mut attempt = if let Some(trunk) = calls.trunks.sources.trunk_for(peer.addr.ip()) {
        match calls.inbound_attempt(&trunk, &req, started).await {
            Ok(a) => a,
            Err((attempt, refusal)) => return refuse(&calls, tx, &req, &attempt, refusal).await,
        }
    } else {
        let caller = match auth.check(&req, &raw_uri, now_millis(), true, peer) {
            AuthOutcome::Authenticated { username } => username,
            AuthOutcome::Challenge(headers) => {
                let mut resp =
                    dialog::response(&req, 407, None, &dialog::token()[..16], None, &[], None);
                insert_before_length(&mut resp, headers);
                calls.endpoint.respond(tx, resp).await;
                calls.forget(Some(tx), &[]);
                return;
            }
            AuthOutcome::Unavailable => {
                let refusal = Refusal::new(503, "Cluster Not Ready", None);
                let attempt = Attempt::new(String::new(), String::new(), started);
                return refuse(&calls, tx, &req, &attempt, refusal).await;
            }
        };
        let code = super::features::dialled_code(&req);
        if let Some(code) = code.as_deref().filter(|c| *c == crate::apps::LISTEN_CODE) {
            // The caller's own mailbox, behind its PIN; wrong PINs count against this address.
            tracing::info!(extension = %caller, code, "voicemail menu dialled");
            let mut a = Attempt::new(caller.clone(), caller, started);
            a.app = Some(crate::apps::Service::Listen(peer.addr.ip()));
            a.ring_group = true;
            a
        } else if let Some(code) = code {
            if calls.pickup(tx, &req, peer, &caller, &code).await {
                return;
            }
            return calls.feature_code(tx, &req, peer, &caller, &code).await;
        } else {
            if let Some(replaces) = dialog::first(&req.headers, "Replaces") {
                // RFC 3891: a dialog this PBX does not have is 481; one it has cannot be replaced by a
                // phone's own INVITE yet (transfers go through REFER).
                let call_id = replaces.split(';').next().unwrap_or("").trim();
                let known = !call_id.is_empty() && calls.routes().by_call_id.contains_key(call_id);
                let refusal = if known {
                    Refusal::new(501, "Replaces Not Supported", None)
                } else {
                    Refusal::new(481, "Call/Transaction Does Not Exist", None)
                };
                let attempt = Attempt::new(caller, String::new(), started);
                return refuse(&calls, tx, &req, &attempt, refusal).await;
            }
            let callee = admission::dialled_number(&req).unwrap_or_default();
            let mut a = Attempt::new(caller, callee, started);
            a.reject_anonymous = calls.config.reject_anonymous;
            a
        }
    };
    let (core, media) = match admit(&calls, tx, &req, peer, &mut attempt).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refuse(&calls, tx, &req, &attempt, refusal).await,
    };
    for id in core.call_ids() {
        calls.add_call_id(&id, &input);
    }
    let counted = [
        attempt.caller.clone(),
        if attempt.ring_group {
            String::new()
        } else {
            attempt.callee.clone()
        },
    ];
    let driver = Driver {
        calls,
        core,
        media,
        branch_txs: HashMap::new(),
        input,
        inputs,
        ringing: Vec::new(),
        counted,
        adopted_txs: Vec::new(),
        policies_of: None,
        recording: false,
        recorded_on_demand_by: None,
        on_demand: None,
    };
    driver.drive().await;
}

impl Attempt {
    pub(super) fn new(caller: String, callee: String, started: Now) -> Self {
        Self {
            id: dialog::token(),
            started,
            caller_name: String::new(),
            caller,
            callee,
            reject_anonymous: false,
            from_trunk: false,
            facts: None,
            ring_group: false,
            app: None,
        }
    }
}

/// What the INVITE is admitted as: a call to an extension or ring group (its plan: whom it rings
/// first, what follows), or out through a trunk when the number is neither and an outbound route
/// exists.
async fn admitted(
    calls: &Arc<Calls>,
    req: &rsip::Request,
    peer: Peer,
    a: &mut Attempt,
) -> Result<admission::Admitted, Refusal> {
    if let Some(service) = a.app {
        let offered = admission::offered(req, peer.transport, a.reject_anonymous)?;
        let agent = calls.apps.binding(&service, &a.callee, a.started.wall);
        return Ok(admission::Admitted::ringing(
            offered,
            vec![agent],
            None,
            Vec::new(),
        ));
    }
    let internal = match a.callee.as_str() {
        "" => Internal::No,
        number => calls.internal(number)?,
    };
    // A group's or a menu's call counts against no extension's limit.
    a.ring_group = matches!(internal, Internal::RingGroup | Internal::App);
    let outbound = internal == Internal::No
        && !a.callee.is_empty()
        && !a.from_trunk
        && !calls.trunks.tables().outbound.is_empty();
    if outbound {
        admission::precheck(req)?;
        let caller = calls
            .cluster
            .reader()
            .get::<Extension>(&a.caller)
            .map_err(|e| {
                tracing::warn!(error = %e, "reading the caller failed");
                Refusal::internal()
            })?
            .ok_or_else(Refusal::internal)?;
        let anonymous = super::privacy::wants_privacy(&req.headers);
        let routed = calls
            .route_outbound(
                &a.id,
                &caller,
                &a.callee,
                anonymous,
                a.started.wall,
                a.cdr_key(),
            )
            .await;
        return admit_routed(req, peer, a, routed);
    }
    let offered = admission::offered(req, peer.transport, a.reject_anonymous)?;
    let ring = {
        let mut dir = ReplicaDirectory::new(calls, a.started.wall, offered.srtp);
        dir.source = (!a.from_trunk).then_some(peer.addr.ip());
        plan::number_plan(&dir, &a.callee, None, 0)?
    };
    match ring {
        Ring::Devices {
            devices,
            ring_for,
            then,
        } => Ok(admission::Admitted::ringing(
            offered, devices, ring_for, then,
        )),
        Ring::Outside { number, forwarder } => {
            // Forwarded outside before ringing anything: an outbound call of the forwarder's.
            let routed = calls
                .route_forward(
                    &a.id,
                    &forwarder,
                    &number,
                    offered.anonymous,
                    a.started.wall,
                )
                .await;
            admit_routed(req, peer, a, routed)
        }
    }
}

/// An outbound call (dialled, or forwarded outside) as routed: its facts kept for the CDR either way.
fn admit_routed(
    req: &rsip::Request,
    peer: Peer,
    a: &mut Attempt,
    routed: Result<super::outbound::Routed, super::outbound::Refused>,
) -> Result<admission::Admitted, Refusal> {
    match routed {
        Ok(r) => {
            a.facts = Some(r.facts);
            admission::admit_outbound(req, peer.transport, r.trunk)
        }
        Err((refusal, facts)) => {
            a.facts = facts;
            Err(refusal)
        }
    }
}

/// Admission, limits, media and the core, in that order; whatever was taken is given back on a
/// refusal.
async fn admit(
    calls: &Arc<Calls>,
    tx: ServerTxId,
    req: &rsip::Request,
    peer: Peer,
    a: &mut Attempt,
) -> Result<(CallCore, MediaSession), Refusal> {
    let admitted = admitted(calls, req, peer, a).await?;
    let config = &calls.config;
    let (caller, callee) = (a.caller.clone(), a.callee.clone());
    let counted = if a.ring_group { "" } else { callee.as_str() };
    let extensions = [caller.as_str(), counted];
    calls
        .limits()
        .reserve(extensions, config.max_per_extension)
        .map_err(|at| Refusal::over_limit(at == AtLimit::Caller))?;
    let streams = admitted.offer.as_ref().map_or(0, |o| o.media().len());
    let media = MediaSession::allocate(
        &calls.ports,
        streams,
        config.latch_window,
        calls.media_guard(),
    );
    let media = match media {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "no media for a call");
            calls.limits().release(extensions);
            return Err(Refusal::no_ports());
        }
    };
    let caller_name = if a.from_trunk {
        a.caller_name.clone()
    } else {
        calls
            .cluster
            .reader()
            .get::<Extension>(&caller)
            .ok()
            .flatten()
            .map(|e| e.display_name)
            .unwrap_or_default()
    };
    let call = NewCall {
        id: a.id.clone(),
        tx,
        invite: req.clone(),
        peer,
        caller: caller.clone(),
        caller_name: display_name(&caller_name, &caller),
        callee: callee.clone(),
        admitted,
        ports: media.ports(),
    };
    match CallCore::start(calls.env(), a.started, call) {
        Ok(core) => Ok((core, media)),
        Err(refusal) => {
            calls.limits().release(extensions);
            Err(refusal)
        }
    }
}

/// Answers a refused INVITE, with a CDR when it was a call attempt (always, once it was routed to a
/// trunk: the CDR's end releases its toll reservation).
async fn refuse(calls: &Calls, tx: ServerTxId, req: &rsip::Request, a: &Attempt, refusal: Refusal) {
    let extra = refusal.headers.clone();
    let resp = dialog::response(
        req,
        refusal.code,
        Some(refusal.reason),
        &dialog::token()[..16],
        None,
        &extra,
        None,
    );
    calls.endpoint.respond(tx, resp).await;
    calls.forget(Some(tx), &[]);
    let outcome = match (refusal.outcome, &a.facts) {
        (Some(o), _) => o,
        (None, Some(_)) => record::Outcome::new(
            storage::model::Disposition::Failed,
            storage::model::HangupSide::Pbx,
            refusal.code.to_string(),
            refusal.code,
        ),
        (None, None) => return,
    };
    tracing::info!(call = %a.id, extension = %a.caller, callee = %a.callee, status = refusal.code, "call refused");
    let facts = CdrFacts {
        id: &a.id,
        caller: &a.caller,
        callee: &a.callee,
        started_at: a.started.wall,
        answered_at: None,
        node_id: calls.cluster.node_id(),
    };
    record::count_end(&outcome, false);
    let route = a
        .facts
        .as_ref()
        .filter(|f| !f.stored)
        .map(|f| f.record(a.cdr_key()));
    let cdr = record::cdr(&facts, &outcome, now_millis());
    if let Err(e) = record::end_with(&calls.cluster, cdr, route).await {
        tracing::warn!(error = %e, "CDR not stored");
    }
}

/// Puts headers before the Content-Length that `dialog::response` ends with.
pub(crate) fn insert_before_length(resp: &mut rsip::Response, headers: Vec<rsip::Header>) {
    let mut all: Vec<rsip::Header> = resp.headers.iter().cloned().collect();
    let at = all
        .iter()
        .position(|h| matches!(h, rsip::Header::ContentLength(_)))
        .unwrap_or(all.len());
    all.splice(at..at, headers);
    resp.headers = rsip::Headers::from(all);
}

/// Carries on an established call from its record (after a failover, or a restart of the VIP owner).
pub(super) fn adopt(calls: &Arc<Calls>, rec: ActiveCall) -> Result<(), String> {
    let core = CallCore::adopt(calls.env(), now(), rec)?;
    let media = MediaSession::bind(
        &calls.ports,
        core.ports(),
        calls.config.latch_window,
        calls.media_guard(),
    )
    .map_err(|e| e.to_string())?;
    let counted = core.extensions().map(str::to_owned);
    calls.limits().adopt(core.extensions());
    let (input, inputs) = mpsc::unbounded_channel();
    for id in core.call_ids() {
        calls.add_call_id(&id, &input);
    }
    let driver = Driver {
        calls: Arc::clone(calls),
        core,
        media,
        branch_txs: HashMap::new(),
        input,
        inputs,
        ringing: Vec::new(),
        counted,
        adopted_txs: Vec::new(),
        policies_of: None,
        recording: false,
        recorded_on_demand_by: None,
        on_demand: None,
    };
    calls.spawn_call(driver.drive());
    Ok(())
}

/// Runs one call's core against the world.
struct Driver {
    calls: Arc<Calls>,
    core: CallCore,
    media: MediaSession,
    /// The INVITE client transaction of each forked branch.
    branch_txs: HashMap<usize, ClientTxId>,
    /// The call's own input, for answers to the requests it sends.
    input: mpsc::UnboundedSender<Input>,
    inputs: mpsc::UnboundedReceiver<Input>,
    /// The extensions this call was last seen ringing (for busy lamps).
    ringing: Vec<String>,
    /// The extensions the call is counted against (`[caller, callee]`; empty: none): the number
    /// dialled until the call is answered, then whoever is in it (after a forward, a ring group, a
    /// transfer).
    counted: [String; 2],
    /// Server transactions of other INVITEs routed to this call (a picking phone's).
    adopted_txs: Vec<ServerTxId>,
    /// The parties whose recording policies were last looked at (`None`: not since the answer).
    policies_of: Option<[String; 2]>,
    /// The call is being recorded (until its media goes away, or the user who turned recording on
    /// turns it off).
    recording: bool,
    /// Who turned the recording on with the feature code, while it is on.
    recorded_on_demand_by: Option<String>,
    /// The keys of parties whose policy is `on_demand`, listened to for the feature code.
    on_demand: Option<OnDemand>,
}

impl Driver {
    async fn drive(mut self) {
        loop {
            self.execute().await;
            let ringing = self.core.ringing_extensions();
            self.calls.set_ringing(&self.input, &self.ringing, &ringing);
            self.ringing = ringing;
            // Compared in place: this runs for every message of the call.
            if let Some(parties) = self.core.parties()
                && parties != [&*self.counted[0], &*self.counted[1]]
            {
                let mut limits = self.calls.limits();
                limits.release([&self.counted[0], &self.counted[1]]);
                limits.adopt(parties);
                drop(limits);
                self.counted = parties.map(str::to_owned);
            }
            if !self.recording
                && let Some(parties) = self.core.parties()
                && self
                    .policies_of
                    .as_ref()
                    .is_none_or(|p| *p != [&*parties[0], &*parties[1]])
            {
                self.policies_of = Some(parties.map(str::to_owned));
                self.record_if_wanted();
            }
            if self.core.is_over() {
                break;
            }
            let wake = self.core.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                input = self.inputs.recv() => match input {
                    Some(input) => self.core.handle(now(), input),
                    None => break,
                },
                tapped = next_key_packet(self.on_demand.as_mut()) => match tapped {
                    Some(tapped) => self.key_packet(&tapped).await,
                    None => self.on_demand = None,
                },
                () = sleep_until(wake) => {
                    let status = self.media_status();
                    self.core.handle_timeout(now(), status);
                }
            }
        }
        self.calls.set_ringing(&self.input, &self.ringing, &[]);
        // What came after the end: a phone that dialled a pickup code for this call is told there
        // is nothing to pick up (another call's hand-over request fails as its reply is dropped).
        self.inputs.close();
        while let Ok(input) = self.inputs.try_recv() {
            if let Input::PickUp(p) = input {
                let resp = dialog::response(
                    &p.invite,
                    480,
                    Some("No Call To Pick Up"),
                    &dialog::token()[..16],
                    None,
                    &[],
                    None,
                );
                self.calls.endpoint.respond(p.tx, resp).await;
                self.calls.forget(Some(p.tx), &[]);
            }
        }
    }

    /// Starts recording when a party's policy asks for it: the first such party owns the files. A
    /// call carried on after a failover starts again here, in a new segment. Parties whose policy
    /// is `on_demand` have their keys listened to for the feature code; if one of them had turned
    /// the recording on before a failover, it goes on.
    fn record_if_wanted(&mut self) {
        let Some(parties) = self.core.parties() else {
            return;
        };
        let parties = parties.map(str::to_owned);
        let reader = self.calls.cluster.reader();
        let modes = parties.clone().map(|ext| {
            if ext.is_empty() {
                return RecordingMode::Never;
            }
            reader
                .get::<RecordingPolicy>(&ext)
                .ok()
                .flatten()
                .map_or(RecordingMode::Never, |p| p.mode)
        });
        if let Some(i) = modes.iter().position(|m| *m == RecordingMode::Always) {
            self.start_recording(parties[i].clone());
            return;
        }
        if let Some(by) = self.recorded_by_route(reader) {
            // The files count against the extension in the call, when there is one (a trunk's
            // leg names the outside number).
            let owner = parties
                .iter()
                .find(|p| !p.is_empty() && matches!(reader.get::<Extension>(p), Ok(Some(_))))
                .cloned();
            self.start_recording(owner.unwrap_or(by));
            return;
        }
        let key = storage::recording::on_demand_key(self.core.id());
        let was_on = reader.get::<Setting>(&key).ok().flatten().map(|s| s.value);
        self.listen_for_the_code(&parties, modes);
        if let Some(by) = was_on
            && parties
                .iter()
                .zip(modes)
                .any(|(p, m)| *p == by && m == RecordingMode::OnDemand)
            && self.start_recording(by.clone())
        {
            tracing::info!(call = %self.core.id(), extension = %by, "on-demand recording goes on after the failover");
            self.recorded_on_demand_by = Some(by);
        }
    }

    /// The trunk or route (as `trunk/NAME`, `inbound/NAME`, `outbound/NAME`) whose policy records
    /// this call, if it came or went through one: its route is stored under the CDR's key while
    /// the call is up, so a call carried on after a failover finds it too.
    fn recorded_by_route(&self, reader: &storage::StateReader) -> Option<String> {
        let route = reader
            .get::<CallRoute>(&self.core.cdr_key())
            .ok()
            .flatten()?;
        let by_route = match route.direction {
            Direction::Inbound => Some(RecordingTarget::InboundRoute(route.route)),
            Direction::Outbound => Some(RecordingTarget::OutboundRoute(route.route)),
            Direction::Internal => None,
        };
        [Some(RecordingTarget::Trunk(route.trunk)), by_route]
            .into_iter()
            .flatten()
            .filter(|t| !t.name().is_empty())
            .find(|t| route_recording(reader, t) == RecordingMode::Always)
            .map(|t| t.key())
    }

    /// Listens to the keys of the parties whose policy is `on_demand` (none: stops listening).
    fn listen_for_the_code(&mut self, parties: &[String; 2], modes: [RecordingMode; 2]) {
        self.media.unwatch_keys();
        self.on_demand = None;
        if !modes.contains(&RecordingMode::OnDemand) {
            return;
        }
        let sdps = self.core.remote_sdps();
        let mut types: Vec<u8> = sdps
            .iter()
            .flat_map(|sdp| on_demand::event_payload_types(sdp))
            .collect();
        types.sort_unstable();
        types.dedup();
        if types.is_empty() {
            tracing::debug!(call = %self.core.id(), "no telephone-events negotiated: the recording code cannot be heard");
            return;
        }
        let (to, packets) = mpsc::channel(crate::media::KEY_QUEUE);
        let mut sides = [None, None];
        for (i, (party, mode)) in parties.iter().zip(modes).enumerate() {
            if mode == RecordingMode::OnDemand
                && self.media.watch_keys(side_of(i), types.clone(), to.clone())
            {
                sides[i] = Some(on_demand::Presser::new(party.clone()));
            }
        }
        self.on_demand = Some(OnDemand { packets, sides });
    }

    /// A telephone-event packet of a party that may record on demand.
    async fn key_packet(&mut self, tapped: &crate::media::Tapped) {
        let Some(by) = self
            .on_demand
            .as_mut()
            .and_then(|o| o.packet(tapped, std::time::Instant::now()))
        else {
            return;
        };
        let key = storage::recording::on_demand_key(self.core.id());
        let cmd = match self.recorded_on_demand_by.take() {
            Some(was) => {
                self.media.stop_recording();
                self.recording = false;
                tracing::info!(call = %self.core.id(), extension = %by, started_by = %was, code = on_demand::TOGGLE_CODE, "on-demand recording stopped");
                storage::Command::DeleteSetting { key }
            }
            // A call recorded by policy cannot be stopped by the code.
            None if self.recording => return,
            None => {
                if !self.start_recording(by.clone()) {
                    return;
                }
                tracing::info!(call = %self.core.id(), extension = %by, code = on_demand::TOGGLE_CODE, "on-demand recording started");
                self.recorded_on_demand_by = Some(by.clone());
                storage::Command::PutSetting(Setting {
                    key,
                    value: by,
                    updated_at: now_millis(),
                })
            }
        };
        // Both parties are told, by a beep (started) or two (stopped).
        let started = self.recorded_on_demand_by.is_some();
        for (i, pt) in self.core.g711_heard().into_iter().enumerate() {
            if let Some(pt) = pt {
                self.media
                    .play_notice(side_of(i), pt, on_demand::notice(started));
            }
        }
        if let Err(e) = self.calls.cluster.propose(cmd).await {
            tracing::warn!(call = %self.core.id(), error = %e, "on-demand recording state not replicated");
        }
    }

    /// Starts recording, the files owned by `owner`; false when the call has no media to record.
    fn start_recording(&mut self, owner: String) -> bool {
        let Some(packets) = self.media.record() else {
            return false;
        };
        self.recording = true;
        let setup = &self.calls.recording;
        let what = crate::audio::recording::Recording {
            call_id: self.core.id().to_owned(),
            owner,
            parties: self.core.extensions().map(str::to_owned),
            segment: setup.segment,
            retention: setup.retention,
        };
        tokio::spawn(crate::audio::recording::run(
            Arc::clone(&setup.store),
            packets,
            what,
        ));
        true
    }

    fn media_status(&self) -> MediaStatus {
        MediaStatus {
            idle_for: self.media.idle_for(),
            latched: (0..self.media.stream_count())
                .map(|i| self.media.latched(i))
                .collect(),
        }
    }

    /// Carries out every queued action; answers that come at once are fed straight back.
    async fn execute(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Respond { tx, resp } => self.calls.endpoint.respond(tx, resp).await,
                Action::Invite { branch, req, peer } => self.invite(branch, req, peer).await,
                Action::CancelBranch { branch } => {
                    if let Some(tx) = self.branch_txs.remove(&branch) {
                        self.calls.endpoint.cancel(tx).await;
                    }
                }
                Action::Ack { req, peer } => {
                    let msg = rsip::SipMessage::Request(req);
                    self.calls.endpoint.send_stateless(msg, peer).await;
                }
                Action::Request { id, req, peer } => {
                    let (endpoint, input) = (self.calls.endpoint.clone(), self.input.clone());
                    tokio::spawn(async move {
                        let outcome = endpoint.request(req, peer).await;
                        let _ = input.send(Input::Answer { id, outcome });
                    });
                }
                Action::SetPeer { stream, side, peer } => self.media.set_peer(stream, side, peer),
                Action::HoldMusic { stream, side, pt } => {
                    let music = self.calls.music.current();
                    self.media.hold_music(stream, side, pt, music);
                }
                Action::RestoreLatch {
                    stream,
                    side,
                    latch,
                } => self.media.restore_latch(stream, side, latch),
                Action::AddStreams { count } => self.add_streams(count),
                Action::Commit { record, purpose } => {
                    let ok = match record::put(&self.calls.cluster, *record).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(call = %self.core.id(), ?purpose, error = %e, "call record not stored");
                            false
                        }
                    };
                    self.core.handle(now(), Input::Committed { purpose, ok });
                }
                Action::End { cdr } => self.end(*cdr).await,
                Action::TakeOver { replaces, referrer } => {
                    let result = self.take_over(replaces, referrer).await;
                    if let Ok(h) = &result {
                        self.calls.add_call_id(&h.leg.call_id, &self.input);
                    }
                    self.core.handle(now(), Input::TakenOver(result));
                }
                Action::Adopt { call_id, tx } => {
                    self.calls.add_call_id(&call_id, &self.input);
                    self.calls.add_tx(tx, &self.input);
                    self.adopted_txs.push(tx);
                }
                Action::HandOver { reply, result } => {
                    let _ = reply.0.send(result);
                }
                Action::Resolve {
                    stage,
                    srtp,
                    anonymous,
                    started_at,
                    transfer,
                } => {
                    let id = self.core.id().to_owned();
                    let reached = if transfer {
                        self.calls.reach_transfer(&stage, srtp)
                    } else {
                        self.calls
                            .reach(&id, &stage, srtp, anonymous, started_at)
                            .await
                    };
                    self.core.handle(now(), Input::Reached(reached));
                }
            }
        }
    }

    /// Asks the call `replaces` names (on this node: the VIP owner carries every call) for the leg
    /// an attended transfer joins to this call.
    async fn take_over(
        &self,
        replaces: Replaces,
        referrer: String,
    ) -> Result<Box<Handover>, NoHandover> {
        const GONE: NoHandover = (481, "Call/Transaction Does Not Exist");
        let Some(other) = self
            .calls
            .routes()
            .by_call_id
            .get(&replaces.call_id)
            .cloned()
        else {
            return Err(GONE);
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let asked = Input::HandOver {
            replaces,
            referrer,
            reply: HandoverReply(tx),
        };
        if other.send(asked).is_err() {
            return Err(GONE);
        }
        // The other call answers at once unless it is stuck behind a commit; a call that ended
        // meanwhile drops the question.
        match tokio::time::timeout(HANDOVER_WAIT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(GONE),
            Err(_) => Err((500, "Replaced Call Not Answering")),
        }
    }

    async fn invite(&mut self, branch: usize, req: rsip::Request, peer: Peer) {
        // A later stage's branches have Call-IDs of their own: requests in them reach this call.
        if let Some(call_id) = dialog::first(&req.headers, "Call-ID") {
            self.calls.add_call_id(call_id, &self.input);
        }
        let input = self.input.clone();
        match self.calls.endpoint.invite(req, peer, branch, input).await {
            Some(tx) => {
                self.branch_txs.insert(branch, tx);
            }
            None => {
                let event = LegEvent::Failed;
                self.core.handle(
                    now(),
                    Input::Branch {
                        index: branch,
                        event,
                    },
                );
            }
        }
    }

    fn add_streams(&mut self, count: usize) {
        let have = self.media.stream_count();
        let added = match self.media.add_streams(&self.calls.ports, count) {
            Ok(()) => Some(self.media.ports().split_off(have)),
            Err(e) => {
                tracing::warn!(call = %self.core.id(), error = %e, "no media ports for added streams");
                None
            }
        };
        self.core.handle(now(), Input::StreamsAdded(added));
    }

    async fn end(&mut self, cdr: storage::model::CallDetail) {
        self.calls
            .forget(self.core.invite_tx(), &self.core.call_ids());
        for tx in self.adopted_txs.drain(..) {
            self.calls.forget(Some(tx), &[]);
        }
        self.calls
            .limits()
            .release([&self.counted[0], &self.counted[1]]);
        let stats = self.media.stats();
        tracing::debug!(call = %self.core.id(), relayed = stats.relayed, dropped = stats.dropped, "media of the call");
        if let Err(e) = record::end(&self.calls.cluster, cdr).await {
            tracing::warn!(call = %self.core.id(), error = %e, "CDR not stored");
        }
    }
}

/// The next key packet of the call's on-demand listener; never, without one.
async fn next_key_packet(on_demand: Option<&mut OnDemand>) -> Option<crate::media::Tapped> {
    match on_demand {
        Some(o) => o.packets.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
