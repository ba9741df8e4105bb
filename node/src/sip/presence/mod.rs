//! Busy lamps, presence and message waiting: phones SUBSCRIBE to an extension's `dialog` (RFC 4235)
//! or `presence` (PIDF) events and get a NOTIFY whenever its line changes: idle, ringing, in a call,
//! offline; or to their own mailbox's `message-summary` (RFC 3842) and get a NOTIFY whenever its
//! counts of new (not heard) and old (heard) voice messages change. A phone may watch only its own
//! mailbox (`403` for any other, existing or not); it may subscribe without having a mailbox, and is
//! told there are no messages.
//!
//! Each subscription is a replicated record, written when it is accepted, refreshed or ended, so
//! the node that owns the VIP after a failover knows every subscription and goes on notifying. What
//! is not written is each NOTIFY's CSeq and document version: a node that did not send the last
//! ones starts [`HEADROOM`] above the record's and writes that start into the record before its
//! first NOTIFY, so both keep increasing across any number of owners (as long as one owner sends
//! fewer than [`HEADROOM`] NOTIFYs on a subscription between two refreshes). One NOTIFY per
//! subscription is in flight at a time; a change meanwhile goes out once it is answered. The line
//! states come from the replicated call records (established calls) and, for ringing, from this
//! node's call engine (ringing calls live on the node that carries them, and die with it); the
//! mailbox counts from the replicated voicemail messages, so they too survive a failover (each
//! watched mailbox's messages are scanned again once per pass after a new Raft entry: see
//! [`MailboxCache`]).
//!
//! The SUBSCRIBE is authenticated like any request from a phone (digest, counted by the automatic
//! defence when it fails); a watcher holds at most
//! [`MAX_SUBSCRIPTIONS_PER_WATCHER`](storage::features::MAX_SUBSCRIPTIONS_PER_WATCHER).

mod document;
mod request;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::Cluster;
use pbx_sip::transaction::{Peer, ServerTxId};
use storage::features::{EventPackage, Subscription};
use storage::model::{ActiveCall, Binding, DialogLeg, Extension, UnixMillis};
use storage::voicemail::VoicemailMessage;
use storage::{Command, Record as _};

use super::auth::{AuthOutcome, SipAuth};
use super::call::{Calls, dialog, insert_before_length};
use super::endpoint::{ClientOutcome, EndpointHandle};
use super::transport::transport_name;
use crate::time::now_millis;
use document::{Line, Messages, State};

/// Added to a subscription's recorded CSeq and version by a node that did not send its last NOTIFY
/// (and written back before it sends, so the owner after it starts above it in turn).
pub(crate) const HEADROOM: u32 = 100_000;
/// The shortest pause between two looks at every subscription.
const MIN_PASS: Duration = Duration::from_millis(200);
/// The longest: expiries are noticed within it.
const MAX_PASS: Duration = Duration::from_secs(1);

/// What this node last sent on a subscription.
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// The last NOTIFY's CSeq.
    cseq: u32,
    /// The next document's version (the first is 0, RFC 4235 §4.1).
    version: u32,
    /// A NOTIFY (or this node's claim of the subscription) is waiting for its answer: the next one
    /// waits (RFC 6665 §4.2.2: one NOTIFY in flight per subscription).
    busy: bool,
    /// What the last NOTIFY told; `None`: nothing yet (a NOTIFY is due).
    state: Option<State>,
}

/// What a pass does with a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// First sight on this node: claim it (write the CSeq and version it starts from) first.
    Claim,
    /// Nothing: a NOTIFY or the claim is still unanswered, or the state is what was last told.
    Wait,
    /// Send the state.
    Notify,
}

/// The step for a subscription whose state is `now`, given what this node last sent on it.
fn step(known: Option<&Sent>, now: State) -> Step {
    match known {
        None => Step::Claim,
        Some(s) if s.busy || s.state == Some(now) => Step::Wait,
        Some(_) => Step::Notify,
    }
}

/// Mailbox counts read as of an applied Raft index: messages change only through Raft, so while the
/// index stands still the counts do too, and a pass without a new entry reads nothing.
#[derive(Debug, Default)]
struct MailboxCache {
    index: u64,
    counts: HashMap<String, Messages>,
}

/// The presence service of the node serving phones.
pub(crate) struct Presence {
    cluster: Cluster,
    auth: Arc<SipAuth>,
    endpoint: EndpointHandle,
    calls: Arc<Calls>,
    realm: String,
    /// With a VIP, this node serves every subscription; without one, those it accepted.
    on_vip: bool,
    sent: Mutex<HashMap<String, Sent>>,
}

impl Presence {
    pub(crate) fn new(
        cluster: Cluster,
        auth: Arc<SipAuth>,
        endpoint: EndpointHandle,
        calls: Arc<Calls>,
        realm: String,
        on_vip: bool,
    ) -> Self {
        Self {
            cluster,
            auth,
            endpoint,
            calls,
            realm,
            on_vip,
            sent: Mutex::new(HashMap::new()),
        }
    }

    fn sent(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sent>> {
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A SUBSCRIBE, new or inside its dialog (a refresh, or `Expires: 0` to end it).
    pub(crate) async fn subscribe(
        &self,
        tx: ServerTxId,
        req: rsip::Request,
        raw_uri: String,
        peer: Peer,
    ) {
        let (resp, ended) = match self.answer(&req, &raw_uri, peer).await {
            Ok(done) => done,
            Err(refusal) => (refusal, None),
        };
        self.endpoint.respond(tx, resp).await;
        if let Some(sub) = ended {
            self.end(sub, "timeout").await;
        }
        self.calls.line_changed().notify_one();
    }

    /// The answer, and the subscription it ends (its final NOTIFY goes after the answer); `Err`: a
    /// refusal.
    async fn answer(
        &self,
        req: &rsip::Request,
        raw_uri: &str,
        peer: Peer,
    ) -> Result<(rsip::Response, Option<Subscription>), rsip::Response> {
        let now = now_millis();
        let refuse = |code: u16, reason: &str, extra: &[(String, String)]| {
            dialog::response(
                req,
                code,
                Some(reason),
                &dialog::token()[..16],
                None,
                extra,
                None,
            )
        };
        let watcher = match self.auth.check(req, raw_uri, now, false, peer) {
            AuthOutcome::Authenticated { username } => username,
            AuthOutcome::Challenge(headers) => {
                let mut resp = refuse(401, "Unauthorized", &[]);
                insert_before_length(&mut resp, headers);
                return Err(resp);
            }
            AuthOutcome::Unavailable => return Err(refuse(503, "Cluster Not Ready", &[])),
        };
        let asked = match request::read(req) {
            Ok(a) => a,
            Err(r) => return Err(refuse(r.code, r.reason, &r.headers)),
        };
        let call_id = dialog::first(&req.headers, "Call-ID").unwrap_or_default();
        let key = Subscription::key_for(&watcher, call_id);
        let reader = self.cluster.reader();
        let existing = match reader.get::<Subscription>(&key) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "reading a subscription failed");
                return Err(refuse(500, "Server Internal Error", &[]));
            }
        };
        let in_dialog = dialog::tag_of(&req.headers, "To").is_some();
        let mut sub = match (existing, in_dialog) {
            (Some(sub), true) => sub,
            (None, true) | (Some(_), false) => {
                return Err(refuse(481, "Subscription Does Not Exist", &[]));
            }
            (None, false) if asked.package == EventPackage::MessageSummary => {
                // Its own mailbox only; whether it has one is not asked (it is told "no").
                let target = match request::own_mailbox(req, &watcher) {
                    Ok(t) => t,
                    Err(r) => {
                        tracing::info!(extension = %watcher, "message-summary of another mailbox refused");
                        return Err(refuse(r.code, r.reason, &r.headers));
                    }
                };
                match self.new_subscription(req, peer, &watcher, &target, asked.package, now) {
                    Some(s) => s,
                    None => return Err(refuse(400, "Malformed Dialog Headers", &[])),
                }
            }
            (None, false) => {
                let target = request::target(req);
                let known = match target.as_deref().map(|t| reader.get::<Extension>(t)) {
                    Some(Ok(Some(e))) => e.enabled,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "reading a subscription's target failed");
                        return Err(refuse(500, "Server Internal Error", &[]));
                    }
                    _ => false,
                };
                let (Some(target), true) = (target, known) else {
                    return Err(refuse(404, "Not Found", &[]));
                };
                match self.new_subscription(req, peer, &watcher, &target, asked.package, now) {
                    Some(s) => s,
                    None => return Err(refuse(400, "Malformed Dialog Headers", &[])),
                }
            }
        };
        if sub.package != asked.package {
            return Err(refuse(489, "Bad Event", &[request::allow_events()]));
        }
        if let Some(seq) = dialog::cseq_of(&req.headers) {
            if in_dialog && seq <= sub.leg.remote_cseq {
                return Err(refuse(500, "CSeq Out of Order", &[]));
            }
            sub.leg.remote_cseq = seq;
        }
        if let Some(contact) = dialog::contact_of(&req.headers) {
            sub.leg.remote_target = contact;
        }
        let local_tag = sub.leg.local_tag.clone();
        let contact = sub.leg.local_contact.clone();
        let ok = |expires: u32| {
            let extra = [("Expires".to_owned(), expires.to_string())];
            dialog::response(req, 200, None, &local_tag, Some(&contact), &extra, None)
        };
        if asked.expires == 0 {
            // Ended (or a one-time fetch): a last NOTIFY with the state, then nothing.
            return Ok((ok(0), Some(sub)));
        }
        sub.expires_at = now.saturating_add(u64::from(asked.expires) * 1000);
        sub.node_id = self.cluster.node_id();
        if let Some(sent) = self.sent().get(&key) {
            sub.leg.local_cseq = sent.cseq;
            sub.version = sent.version;
        }
        match self
            .cluster
            .propose(Command::PutSubscription(Box::new(sub.clone())))
            .await
        {
            Ok(storage::Response::Ok) => {}
            Ok(storage::Response::Conflict { .. }) => {
                tracing::warn!(extension = %watcher, "too many subscriptions");
                return Err(refuse(403, "Too Many Subscriptions", &[]));
            }
            Ok(storage::Response::NotFound { .. }) => return Err(refuse(404, "Not Found", &[])),
            Ok(other) => {
                tracing::warn!(response = ?other, "subscription not stored");
                return Err(refuse(500, "Server Internal Error", &[]));
            }
            Err(e) => {
                tracing::warn!(error = %e, "subscription not stored");
                return Err(refuse(503, "Cluster Not Ready", &[]));
            }
        }
        // The state goes out at once (RFC 6665 §4.2.1.2): a NOTIFY is due on this subscription.
        let mut sent = self.sent();
        let entry = sent.entry(key).or_insert(Sent {
            cseq: sub.leg.local_cseq,
            version: sub.version,
            busy: false,
            state: None,
        });
        entry.state = None;
        tracing::info!(extension = %watcher, target = %sub.target, package = ?sub.package, expires = asked.expires, "subscription accepted");
        Ok((ok(asked.expires), None))
    }

    /// The subscription's dialog from its first SUBSCRIBE.
    fn new_subscription(
        &self,
        req: &rsip::Request,
        peer: Peer,
        watcher: &str,
        target: &str,
        package: EventPackage,
        now: UnixMillis,
    ) -> Option<Subscription> {
        let headers = &req.headers;
        let local = self.calls.local(peer.transport)?;
        let leg = DialogLeg {
            extension: watcher.to_owned(),
            call_id: dialog::first(headers, "Call-ID")?.to_owned(),
            local_tag: dialog::token()[..16].to_owned(),
            remote_tag: dialog::tag_of(headers, "From")?,
            local_cseq: 0,
            remote_cseq: 0,
            local_uri: dialog::without_tag(dialog::first(headers, "To")?),
            remote_uri: dialog::without_tag(dialog::first(headers, "From")?),
            remote_target: dialog::contact_of(headers)?,
            route_set: dialog::record_routes(headers),
            local_contact: dialog::contact_uri(target, local, peer.transport),
            peer: peer.addr.to_string(),
            transport: transport_name(peer.transport).to_owned(),
            remote_sdp: String::new(),
        };
        Some(Subscription {
            watcher: watcher.to_owned(),
            target: target.to_owned(),
            package,
            leg,
            version: 0,
            expires_at: now,
            node_id: self.cluster.node_id(),
            created_at: now,
        })
    }

    /// Ends a subscription: the final NOTIFY (`reason`), and its record removed.
    async fn end(&self, sub: Subscription, reason: &str) {
        let key = sub.key();
        let state = self.state_now(&sub);
        if let Some((req, peer)) = self.notify_for(&sub, state, Some(reason)) {
            let endpoint = self.endpoint.clone();
            tokio::spawn(async move {
                let _ = endpoint.request(req, peer).await;
            });
        }
        self.sent().remove(&key);
        if let Err(e) = self
            .cluster
            .propose(Command::DeleteSubscription { key })
            .await
        {
            tracing::warn!(error = %e, "ended subscription not removed");
        }
    }

    /// A subscription's state as of now (for a single NOTIFY outside a pass).
    fn state_now(&self, sub: &Subscription) -> State {
        match sub.package {
            EventPackage::Dialog => State::Dialog(self.line_now(&sub.target)),
            EventPackage::Presence => State::Presence(self.line_now(&sub.target)),
            EventPackage::MessageSummary => {
                let counts = messages_of(self.cluster.reader(), &sub.target).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, mailbox = %sub.target, "reading voicemail counts failed");
                    Messages::default()
                });
                State::MessageSummary(counts)
            }
        }
    }

    /// One extension's line as of now.
    fn line_now(&self, target: &str) -> Line {
        let calls = self
            .cluster
            .reader()
            .list::<ActiveCall>()
            .unwrap_or_default();
        let in_calls = in_calls_of(&calls);
        let ringing = self.calls.ringing_extensions();
        let registered = self.registered(target, now_millis());
        Line::of(
            in_calls.get(target).map_or(&[][..], Vec::as_slice),
            ringing.contains(target),
            registered,
        )
    }

    fn registered(&self, target: &str, now: UnixMillis) -> bool {
        self.cluster
            .reader()
            .scan_prefix::<Binding>(&Binding::aor_prefix(target))
            .is_ok_and(|b| b.iter().any(|b| b.expires_at > now))
    }

    /// The next NOTIFY on `sub` with `state` (`terminated`: the reason it ends), counting its CSeq
    /// and version.
    fn notify_for(
        &self,
        sub: &Subscription,
        state: State,
        terminated: Option<&str>,
    ) -> Option<(rsip::Request, Peer)> {
        let peer = dialog::peer_of(&sub.leg).ok()?;
        let local = self.calls.local(peer.transport)?;
        let (cseq, version) = {
            let mut sent = self.sent();
            let entry = sent
                .entry(sub.key())
                .or_insert_with(|| taken_over(sub, false));
            entry.cseq += 1;
            let version = entry.version;
            entry.version += 1;
            entry.state = Some(state);
            // A final NOTIFY holds nothing up: nothing follows it.
            entry.busy = terminated.is_none();
            (entry.cseq, version)
        };
        let remaining = sub.expires_at.saturating_sub(now_millis()) / 1000;
        let subscription_state = match terminated {
            Some(reason) => format!("terminated;reason={reason}"),
            None => format!("active;expires={remaining}"),
        };
        let extra = [
            (
                "Event".to_owned(),
                request::event_name(sub.package).to_owned(),
            ),
            ("Subscription-State".to_owned(), subscription_state),
        ];
        // The extension watched, or the mailbox's account (the watcher's own).
        let entity = format!("sip:{}@{}", sub.target, self.realm);
        let body = document::render(&entity, state, version);
        let ctype = document::content_type(state.package());
        let req = dialog::request(
            "NOTIFY",
            &sub.leg,
            local,
            peer.transport,
            cseq,
            70,
            &extra,
            Some((ctype, body.as_bytes())),
        )?;
        Some((req, peer))
    }

    /// Looks at every subscription this node serves, whenever a line may have changed.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut applied = self.cluster.reader().watch_applied();
        let changed = self.calls.line_changed();
        let mut mailboxes = MailboxCache::default();
        loop {
            tokio::select! {
                () = changed.notified() => {}
                r = applied.changed() => if r.is_err() { return },
                () = tokio::time::sleep(MAX_PASS) => {}
            }
            self.pass(&mut mailboxes).await;
            tokio::time::sleep(MIN_PASS).await;
        }
    }

    async fn pass(self: &Arc<Self>, mailboxes: &mut MailboxCache) {
        let reader = self.cluster.reader();
        // Read before anything else: counts read after it are at least this recent.
        let index = reader.applied_index();
        let me = self.cluster.node_id();
        let subs = match reader.list::<Subscription>() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "reading subscriptions failed");
                return;
            }
        };
        let subs: Vec<Subscription> = subs
            .into_iter()
            .filter(|s| self.on_vip || s.node_id == me)
            .collect();
        {
            let keys: HashSet<String> = subs.iter().map(|s| s.key()).collect();
            self.sent().retain(|k, _| keys.contains(k));
        }
        if subs.is_empty() {
            return;
        }
        let now = now_millis();
        let calls = reader.list::<ActiveCall>().unwrap_or_default();
        let in_calls = in_calls_of(&calls);
        let ringing = self.calls.ringing_extensions();
        let mut registered: HashMap<String, bool> = HashMap::new();
        let mut line = |target: &str| {
            let online = *registered
                .entry(target.to_owned())
                .or_insert_with(|| self.registered(target, now));
            Line::of(
                in_calls.get(target).map_or(&[][..], Vec::as_slice),
                ringing.contains(target),
                online,
            )
        };
        if mailboxes.index != index {
            mailboxes.index = index;
            mailboxes.counts.clear();
        }
        for sub in subs {
            if sub.expires_at <= now {
                tracing::info!(extension = %sub.watcher, target = %sub.target, "subscription expired");
                let this = Arc::clone(self);
                tokio::spawn(async move { this.end(sub, "timeout").await });
                continue;
            }
            let state = match sub.package {
                EventPackage::Dialog => State::Dialog(line(&sub.target)),
                EventPackage::Presence => State::Presence(line(&sub.target)),
                EventPackage::MessageSummary => {
                    // Each mailbox's messages are read (a prefix scan, at most 1000 records) at
                    // most once per applied index, i.e. again after every Raft entry while it has
                    // a subscription. Good enough for now; a replicated per-mailbox count (or a
                    // signal from the voicemail commands) would spare the rescans.
                    let counts = match mailboxes.counts.get(&sub.target) {
                        Some(c) => *c,
                        None => match messages_of(reader, &sub.target) {
                            Ok(c) => *mailboxes.counts.entry(sub.target.clone()).or_insert(c),
                            Err(e) => {
                                tracing::warn!(error = %e, mailbox = %sub.target, "reading voicemail counts failed");
                                continue;
                            }
                        },
                    };
                    State::MessageSummary(counts)
                }
            };
            let key = sub.key();
            let known = self.sent().get(&key).copied();
            match step(known.as_ref(), state) {
                Step::Claim => {
                    // First sight on this node (it took the VIP over, or restarted): the numbers it
                    // will use are written first, so the next owner starts above them.
                    self.sent().insert(key, taken_over(&sub, true));
                    let this = Arc::clone(self);
                    tokio::spawn(async move { this.claim(sub).await });
                    continue;
                }
                Step::Wait => continue,
                Step::Notify => {}
            }
            let Some((req, peer)) = self.notify_for(&sub, state, None) else {
                continue;
            };
            metrics::counter!("pbx_presence_notifies_total").increment(1);
            let this = Arc::clone(self);
            tokio::spawn(async move {
                let outcome = this.endpoint.request(req, peer).await;
                this.after_notify(&sub, outcome).await;
            });
        }
    }

    /// Writes the CSeq and version this node starts from into the subscription's record.
    async fn claim(&self, sub: Subscription) {
        let key = sub.key();
        let Some(start) = self.sent().get(&key).copied() else {
            return;
        };
        let mut rec = sub;
        rec.leg.local_cseq = start.cseq;
        rec.version = start.version;
        rec.node_id = self.cluster.node_id();
        match self
            .cluster
            .propose(Command::PutSubscription(Box::new(rec)))
            .await
        {
            Ok(storage::Response::Ok) => {
                if let Some(s) = self.sent().get_mut(&key) {
                    s.busy = false;
                }
                self.calls.line_changed().notify_one();
            }
            Ok(storage::Response::NotFound { .. }) => {
                // Its target is gone: so is the subscription.
                self.sent().remove(&key);
                let _ = self
                    .cluster
                    .propose(Command::DeleteSubscription { key })
                    .await;
            }
            other => {
                tracing::warn!(outcome = ?other.map(|_| ()), "subscription not claimed; trying again");
                self.sent().remove(&key);
            }
        }
    }

    /// The answer to a NOTIFY: the next may go. A watcher that no longer knows the subscription
    /// (`481`), or is gone, loses it. A NOTIFY abandoned because this node stopped serving (its VIP
    /// lease ended mid-transaction) says nothing about the watcher: the next owner carries on.
    async fn after_notify(&self, sub: &Subscription, outcome: ClientOutcome) {
        let key = sub.key();
        if let Some(s) = self.sent().get_mut(&key) {
            s.busy = false;
        }
        self.calls.line_changed().notify_one();
        let gone = match &outcome {
            ClientOutcome::Final(resp) => matches!(resp.status_code.code(), 404 | 481 | 489),
            ClientOutcome::Timeout | ClientOutcome::Failed => true,
            ClientOutcome::Abandoned => false,
        };
        if !gone {
            return;
        }
        tracing::info!(extension = %sub.watcher, target = %sub.target, "watcher gone; subscription removed");
        self.sent().remove(&key);
        let _ = self
            .cluster
            .propose(Command::DeleteSubscription { key })
            .await;
    }
}

/// Where a node that did not send a subscription's last NOTIFY starts: above anything the record
/// says was sent, by [`HEADROOM`].
fn taken_over(sub: &Subscription, busy: bool) -> Sent {
    Sent {
        cseq: sub.leg.local_cseq.saturating_add(HEADROOM),
        version: sub.version.saturating_add(HEADROOM),
        busy,
        state: None,
    }
}

/// The counts of `mailbox`'s voice messages (none without a mailbox).
fn messages_of(
    reader: &storage::StateReader,
    mailbox: &str,
) -> Result<Messages, storage::StorageError> {
    let held = reader.scan_prefix::<VoicemailMessage>(&VoicemailMessage::prefix(mailbox))?;
    Ok(Messages::of(&held))
}

/// For each extension, the established calls it is in (`true`: as the caller).
fn in_calls_of(calls: &[ActiveCall]) -> HashMap<String, Vec<bool>> {
    let mut out: HashMap<String, Vec<bool>> = HashMap::new();
    for c in calls {
        out.entry(c.caller.extension.clone())
            .or_default()
            .push(true);
        out.entry(c.callee.extension.clone())
            .or_default()
            .push(false);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(busy: bool, state: Option<State>) -> Sent {
        Sent {
            cseq: 1,
            version: 1,
            busy,
            state,
        }
    }

    #[test]
    fn a_notify_goes_when_the_state_changed_and_none_is_in_flight() {
        let none = State::MessageSummary(Messages::default());
        let one = State::MessageSummary(Messages { new: 1, old: 0 });
        let heard = State::MessageSummary(Messages { new: 0, old: 1 });
        // Never seen on this node (a takeover, a restart): claimed before anything is sent.
        assert_eq!(step(None, none), Step::Claim);
        // Just accepted, or claimed: the state goes out at once, whatever it is.
        assert_eq!(step(Some(&sent(false, None)), none), Step::Notify);
        // Counts as last told: nothing; a message left, or heard: a NOTIFY.
        assert_eq!(step(Some(&sent(false, Some(none))), none), Step::Wait);
        assert_eq!(step(Some(&sent(false, Some(none))), one), Step::Notify);
        assert_eq!(step(Some(&sent(false, Some(one))), heard), Step::Notify);
        // One in flight (or the claim unanswered): the change waits for its answer.
        assert_eq!(step(Some(&sent(true, Some(none))), one), Step::Wait);
        assert_eq!(step(Some(&sent(true, None)), one), Step::Wait);
        // Lines compare the same way.
        let idle = State::Dialog(Line::Idle);
        assert_eq!(step(Some(&sent(false, Some(idle))), idle), Step::Wait);
        assert_eq!(
            step(Some(&sent(false, Some(idle))), State::Dialog(Line::Ringing)),
            Step::Notify
        );
    }

    #[test]
    fn a_takeover_starts_above_the_recorded_numbers_with_a_notify_due() {
        let sub = Subscription {
            watcher: "1002".into(),
            target: "1002".into(),
            package: EventPackage::MessageSummary,
            leg: DialogLeg {
                local_cseq: 7,
                ..DialogLeg::default()
            },
            version: 3,
            expires_at: 1,
            node_id: 1,
            created_at: 1,
        };
        let start = taken_over(&sub, true);
        assert_eq!((start.cseq, start.version), (7 + HEADROOM, 3 + HEADROOM));
        assert_eq!(
            step(Some(&start), State::MessageSummary(Messages::default())),
            Step::Wait
        );
        let claimed = Sent {
            busy: false,
            ..start
        };
        assert_eq!(
            step(Some(&claimed), State::MessageSummary(Messages::default())),
            Step::Notify
        );
    }
}
