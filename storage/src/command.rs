//! Typed Raft commands and what applying each one does to the tables.
//!
//! `apply` is deterministic: it reads only the tables (through [`Txn`]) and the command itself, so every
//! node reaches the same state from the same log.

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::audio::{self, AudioFile, AudioQuotas, QuotaScope};
use crate::backup::{BackupRecord, BackupSettings};
use crate::capture::{self, CaptureTarget};
use crate::codec::{self, CodecError};
use crate::conference::{self, ConferenceRoom, Participant};
use crate::contacts::{self, Contact};
use crate::features::{
    CallHandling, FeatureCodes, PickupCodes, PickupGroup, RingGroup, Subscription,
};
use crate::features_apply;
use crate::ivr::{self, Ivr};
use crate::model::{
    ActiveCall, AuditEntry, Ban, Binding, CallDetail, CdrIndexEntry, CdrIndexProgress,
    ClusterRecord, Event, Extension, FirewallRule, MemberRecord, Recipient, Setting, UnixMillis,
    UserAccount, VipConfig,
};
use crate::provisioning::{self, DevicePut, Fetch, FetchKind, Firmware, ProvisioningSettings};
use crate::recording::{self, RecordingPolicy};
use crate::recording_routes::{self, RouteRecordingPolicy};
use crate::routing::{
    CallRoute, Limit, OutboundHold, PutMode, Reservation, RoutingKind, RoutingRecord, TollCounter,
    TrunkStatus,
};
use crate::tables::{Record, Table};
use crate::time_condition::{self, TimeCondition};
use crate::voicemail::{self, Mailbox, VoicemailMessage};
use crate::web::{HangupRequest, WebAccount, WebRole, WebSession};
use crate::web_apply;

/// A change to the replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Command {
    /// Write the cluster identity; refused if one exists (a cluster is initialised once). A cluster
    /// without CDRs starts with its index of CDRs by extension complete.
    InitCluster(ClusterRecord),
    SetVip(VipConfig),
    PutMember(MemberRecord),
    RemoveMember {
        node_id: NodeId,
    },
    /// Create an extension; `Conflict` if the number is taken (by an extension, a ring group or an
    /// IVR).
    CreateExtension(Extension),
    /// Replace an existing extension; `NotFound` if there is none.
    UpdateExtension(Extension),
    DeleteExtension {
        number: String,
    },
    /// Create a web account; `Conflict` if the name is taken.
    CreateUser(UserAccount),
    /// Replace an existing web account; `NotFound` if there is none.
    UpdateUser(UserAccount),
    DeleteUser {
        username: String,
    },
    PutSetting(Setting),
    DeleteSetting {
        key: String,
    },
    /// A batch of registration changes, applied in order. Registrars batch refreshes into one entry so
    /// that thousands of phones re-registering cost a handful of Raft entries.
    UpdateBindings(Vec<BindingOp>),
    /// Record an established call, or its new state after a re-INVITE.
    PutCall(Box<ActiveCall>),
    /// A call ended: its record (if any) is removed and its CDR stored with its entries in the index
    /// of CDRs by extension, in one entry.
    EndCall {
        call_id: String,
        cdr: Box<CallDetail>,
    },
    /// Forget an active-call record without a CDR (a call its node could not carry on).
    DeleteCall {
        call_id: String,
    },
    /// Drop CDRs that started before `before` (retention), with their routes and index entries.
    PruneCdrs {
        before: UnixMillis,
    },
    /// Add or replace a firewall rule.
    PutFirewallRule(FirewallRule),
    DeleteFirewallRule {
        id: String,
    },
    /// Ban a source (or extend its ban).
    PutBan(Ban),
    /// Lift a ban now; the record stays as history unless `forget`.
    LiftBan {
        ip: String,
        now: UnixMillis,
        forget: bool,
    },
    /// Drop ban records whose ban ended before `before` (their history no longer escalates).
    ForgetBans {
        before: UnixMillis,
    },
    /// Record a configuration change.
    Audit(AuditEntry),
    /// Drop audit entries older than `before`.
    PruneAudit {
        before: UnixMillis,
    },
    /// Keep an event for the event center.
    RecordEvent(Event),
    /// Drop events older than `before`.
    PruneEvents {
        before: UnixMillis,
    },
    PutRecipient(Recipient),
    DeleteRecipient {
        id: String,
    },
    /// Several commands in one log entry, applied in order, each with its own response. The cluster
    /// layer batches concurrent proposals this way so that one fsync commits many writes.
    Batch(Vec<Self>),
    /// A configuration change and its audit entry, in one log entry: the entry is stored only when
    /// the change is (its response is `Ok`); the response is the change's. (Appended last: the
    /// encoding of every earlier variant is unchanged.)
    Audited {
        change: Box<Self>,
        entry: AuditEntry,
    },
    /// Create or replace a trunk, route or permission group; names it refers to must exist.
    PutRouting {
        record: RoutingRecord,
        mode: PutMode,
    },
    /// Delete a trunk, route or group; `Conflict` names what still refers to it.
    DeleteRouting {
        kind: RoutingKind,
        name: String,
    },
    /// A trunk's state changed.
    PutTrunkStatus(TrunkStatus),
    /// Check an outbound call against its extension's and trunks' limits and count it: answered by
    /// `Reserved` or `LimitReached`.
    ReserveOutbound(Box<Reservation>),
    /// An admin lifts an extension's outbound suspension.
    ClearSuspension {
        extension: String,
    },
    /// How a trunk call was routed, beside its CDR.
    PutCallRoute(CallRoute),
    /// Create or replace a web account (an account of the legacy `Users` table moves here); the role
    /// and extension must exist, and the last enabled admin stays one.
    PutWebAccount {
        account: Box<WebAccount>,
        mode: PutMode,
    },
    /// Delete a web account and end its sessions; never the last enabled admin.
    DeleteWebAccount {
        username: String,
    },
    PutWebRole {
        role: WebRole,
        mode: PutMode,
    },
    /// Delete a custom role; `Conflict` names an account that still has it.
    DeleteWebRole {
        name: String,
    },
    /// Open a session for an enabled account; `totp_step` is recorded so the code is not accepted
    /// again (`Conflict` on `totp_code` if it was).
    OpenWebSession {
        session: WebSession,
        totp_step: Option<u64>,
    },
    /// Sign a session out, on every node.
    CloseWebSession {
        id: String,
    },
    /// Sign out every session of an account but `except` (a password change keeps its own session).
    CloseWebSessionsOf {
        username: String,
        except: Option<String>,
    },
    /// Drop sessions that expired by `now`.
    PruneWebSessions {
        now: UnixMillis,
    },
    /// Ask the node carrying a call to hang it up; `NotFound` if the call is not in progress.
    RequestHangup(HangupRequest),
    /// Change the SIP realm; refused (`Conflict` naming an extension) once extensions exist, for
    /// their stored digests are bound to the realm.
    SetRealm {
        realm: String,
    },
    /// Index CDRs stored before the index of CDRs by extension existed: up to `limit` CDRs after
    /// `after`, which must be where the previous batch stopped ([`CdrIndexProgress`]; `Conflict`
    /// otherwise, and nothing is done), so that the batches cover the table in order. The batch that
    /// reaches the end of the table marks the index complete; once it is, this does nothing.
    IndexCdrs {
        after: Option<String>,
        limit: u32,
    },
    /// Set an extension's do-not-disturb and forwarding; `NotFound` without the extension.
    PutCallHandling(CallHandling),
    /// Create or replace a ring group: its number must be no extension's or IVR's, its members and
    /// fallback must exist.
    PutRingGroup {
        group: RingGroup,
        mode: PutMode,
    },
    /// Delete a ring group; `Conflict` names what still sends calls to it (a route, a group, a
    /// time condition, an IVR).
    DeleteRingGroup {
        number: String,
    },
    /// Set the feature codes; `Conflict` on the pickup codes' key ([`PickupCodes::KEY`]) when one of
    /// them would shadow a pickup code, stored or default, or be shadowed by one.
    PutFeatureCodes(FeatureCodes),
    /// Create or refresh a subscription: `NotFound` when the watcher or the target is no
    /// extension, `Conflict` (on the watcher) when a new one would exceed
    /// [`MAX_SUBSCRIPTIONS_PER_WATCHER`](crate::features::MAX_SUBSCRIPTIONS_PER_WATCHER).
    PutSubscription(Box<Subscription>),
    DeleteSubscription {
        key: String,
    },
    /// Drop subscriptions that expired by `now`.
    PruneSubscriptions {
        now: UnixMillis,
    },
    // Pickup groups: appended, so that the encoding of every earlier variant is unchanged.
    /// Create or replace a pickup group; `NotFound` names a member that is no extension.
    PutPickupGroup(PickupGroup),
    DeletePickupGroup {
        name: String,
    },
    /// Set the pickup codes; `Conflict` on the feature codes' key ([`FeatureCodes::KEY`]) when one of
    /// them would shadow a feature code, stored or default, or be shadowed by one.
    PutPickupCodes(PickupCodes),
    // The audio index: appended, so that the encoding of every earlier variant is unchanged.
    /// Enter a new audio file; `Conflict` when its id exists, `QuotaExceeded` when it would take
    /// its owner or the cluster over their quota.
    PutAudioFile(AudioFile),
    /// A node confirmed a verified copy of a file; `NotFound` when the file left the index.
    AudioHeld {
        id: String,
        node: NodeId,
    },
    DeleteAudioFile {
        id: String,
    },
    PutAudioQuotas(AudioQuotas),
    /// Drop the audio files whose retention ended by `now`.
    PruneAudio {
        now: UnixMillis,
    },
    // Call recording: appended, so that the encoding of every earlier variant is unchanged.
    /// Set an extension's recording policy; `NotFound` without the extension.
    PutRecordingPolicy(RecordingPolicy),
    // Time conditions: appended.
    /// Create or replace a time condition: `NotFound` naming an open or closed destination that
    /// does not exist.
    PutTimeCondition(TimeCondition),
    /// Delete a time condition: `Conflict` naming an inbound route or an IVR that still sends
    /// calls to it.
    DeleteTimeCondition {
        name: String,
    },
    // IVR menus: appended.
    /// Create (`Conflict` if the number is an IVR's) or replace (`NotFound` if it is none) an IVR:
    /// `Invalid` when malformed or its greeting is no prompt, `Conflict` naming the extension or
    /// ring group with its number, `NotFound` naming a greeting or destination that does not exist.
    PutIvr {
        ivr: Ivr,
        mode: PutMode,
    },
    /// Delete an IVR: `Conflict` naming an inbound route, time condition or other IVR that still
    /// sends calls to it.
    DeleteIvr {
        number: String,
    },
    // Voicemail: appended.
    /// Create or replace a mailbox: `NotFound` without the extension or a greeting file,
    /// `Invalid` when malformed or a greeting is not the extension's.
    PutMailbox(Mailbox),
    /// Delete a mailbox with its messages and their audio.
    DeleteMailbox {
        extension: String,
    },
    /// Enter a message whose audio file is in the index: `Invalid` when the mailbox is full.
    PutVoicemailMessage(VoicemailMessage),
    SetVoicemailHeard {
        mailbox: String,
        audio_id: String,
        heard: bool,
    },
    /// Delete a message and its audio file.
    DeleteVoicemailMessage {
        mailbox: String,
        audio_id: String,
    },
    // Conference rooms: appended.
    /// Create (`Conflict` if the number is a room's) or replace (`NotFound` if it is none) a room:
    /// `Invalid` when malformed, `Conflict` naming the extension, ring group or IVR with its number.
    PutConferenceRoom {
        room: ConferenceRoom,
        mode: PutMode,
    },
    /// Delete a room and its participants: `Conflict` naming an inbound route, time condition or
    /// IVR that still sends calls to it.
    DeleteConferenceRoom {
        number: String,
    },
    /// Enter or refresh a participant: `NotFound` without the room, `Invalid` when a new one would
    /// exceed the room's limit.
    PutParticipant(Participant),
    /// Mute or unmute a participant; `NotFound` when not in the room.
    SetParticipantMuted {
        room: String,
        id: String,
        muted: bool,
    },
    /// A moderator removes a participant: the node carrying the call hangs it up and removes the
    /// record. `NotFound` when not in the room.
    KickParticipant {
        room: String,
        id: String,
    },
    /// A participant left; `Ok` when already gone.
    RemoveParticipant {
        room: String,
        id: String,
    },
    // Recording per trunk and route: appended.
    /// Set a trunk's or route's recording policy; `NotFound` without the trunk or route.
    PutRouteRecordingPolicy(RouteRecordingPolicy),
    // SIP capture: appended.
    /// Enable (or extend) SIP capture for an extension or trunk: `Invalid` when malformed (empty
    /// name, expiry not within 24 h), `NotFound` without the extension or trunk.
    PutCaptureTarget(CaptureTarget),
    /// Disable a capture (`ext/{number}` or `trunk/{name}`); `Ok` when there is none.
    DeleteCaptureTarget {
        key: String,
    },
    // Contacts: appended.
    /// Create or replace phonebook contacts (at most 1,000), with their numbers' index entries;
    /// all or nothing. `Invalid` when one is malformed or a book would overflow, `NotFound`
    /// without a personal book's extension.
    PutContacts(Vec<Contact>),
    /// Delete a contact (`company/{id}` or `personal/{extension}/{id}`); `NotFound` without it.
    DeleteContact {
        key: String,
    },
    // Mailbox name greetings: appended.
    /// Set (`Some`) or clear (`None`) a mailbox's name greeting: `NotFound` without the mailbox or
    /// the file, `Invalid` when the file is not a greeting of the extension.
    SetMailboxName {
        extension: String,
        greeting: Option<String>,
    },
    // Backups: appended.
    /// Load rows of an exported state into `table` (its tag) as they are, for `pbx cluster
    /// restore` into a fresh cluster (see [`crate::backup`]); only restorable rows of known tables,
    /// else `Invalid` and nothing written. Never proposed by the API.
    RestoreRows {
        table: u8,
        rows: Vec<(String, Vec<u8>)>,
    },
    /// Enter or update a backup's record; with `create`, `Conflict` when one has its id (how a
    /// scheduled slot is claimed by one node).
    PutBackup {
        record: Box<BackupRecord>,
        create: bool,
    },
    /// Forget a backup (its node deletes the file); `NotFound` without it.
    DeleteBackup {
        id: String,
    },
    PutBackupSettings(BackupSettings),
    // Provisioning: appended.
    /// Create or replace devices (at most 500), all or nothing, with their index entries and what
    /// each does to its extension's SIP secret ([`provisioning::SecretChange`]). `Invalid` naming
    /// the field, `NotFound` without the extension (or the device, replacing), `Conflict` when a
    /// created MAC exists.
    PutDevices(Vec<DevicePut>),
    /// Delete a device; `NotFound` without it.
    DeleteDevice {
        mac: String,
    },
    /// A device downloaded its configuration or firmware; `NotFound` when it is gone.
    RecordDeviceFetch {
        mac: String,
        kind: FetchKind,
        fetch: Fetch,
    },
    /// Replace the provisioning policy; `Invalid` when malformed.
    PutProvisioningSettings(ProvisioningSettings),
    /// Set a brand's model's firmware: `NotFound` without its audio-store file; the firmware it
    /// replaces keeps its file (the proposer deletes it in the same batch).
    PutFirmware(Firmware),
    /// Delete a model's firmware entry (`{brand}/{model}`); `NotFound` without it.
    DeleteFirmware {
        key: String,
    },
}

/// One change to the registration table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BindingOp {
    /// Add or replace a binding (new registration or refresh).
    Put(Binding),
    Remove {
        aor: String,
        contact: String,
    },
    /// `Contact: *` with `Expires: 0`: every binding of the extension.
    RemoveAll {
        aor: String,
    },
    /// Record the outcome of OPTIONS pings, if the binding still exists (nothing else changes).
    SetReachable {
        aor: String,
        contact: String,
        reachable: bool,
    },
    /// Remove the binding only if it is still expired at `now` (a refresh may have raced the sweep).
    Expire {
        aor: String,
        contact: String,
        now: UnixMillis,
    },
}

/// The state machine's answer to one command, returned to the proposer once it is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Applied (also the answer to membership and blank entries).
    Ok,
    /// Refused because the key already exists.
    Conflict { table: String, key: String },
    /// Refused because the key does not exist.
    NotFound { table: String, key: String },
    /// The responses to a [`Command::Batch`], in order.
    Batch(Vec<Self>),
    /// An outbound call was counted; it goes through trunk `trunk` of the reservation's list.
    Reserved { trunk: u32 },
    /// An outbound call would cross `limit` of `counter` (`ext:…` or `trunk:…`); nothing was
    /// counted. `suspended`: the extension's outbound calls are now suspended.
    LimitReached {
        counter: String,
        limit: Limit,
        suspended: bool,
    },
    /// An audio file would take its owner or the cluster over `limit` bytes (`used` already).
    /// (Appended last: earlier variants encode as before.)
    QuotaExceeded {
        scope: QuotaScope,
        limit: u64,
        used: u64,
    },
    /// Refused because record `key` of `table` is malformed, or refers to something of the wrong
    /// kind: `reason` says which field and why, as `field: reason`. The proposer checks the same
    /// rule first; this is the state machine's own guard. (Appended last.)
    Invalid {
        table: String,
        key: String,
        reason: String,
    },
}

/// The view of the tables `apply` works on: reads see the writes made earlier in the same batch.
pub trait Txn {
    fn get(&self, table: Table, key: &str) -> Option<Vec<u8>>;
    /// Keys starting with `prefix`, in order, as the batch so far left them.
    fn keys_with_prefix(&self, table: Table, prefix: &str) -> Vec<String>;
    /// Up to `limit` keys after `after` (from the first when `None`), in order, as the batch so far
    /// left them.
    fn keys_after(&self, table: Table, after: Option<&str>, limit: usize) -> Vec<String>;
    fn put(&mut self, table: Table, key: &str, value: Vec<u8>);
    fn delete(&mut self, table: Table, key: &str);
}

impl Command {
    /// Applies the command to `txn`. A codec failure here means a value could not be encoded, which is a
    /// bug, not bad input: input was decoded and bounded before it became a command.
    pub fn apply(&self, txn: &mut dyn Txn) -> Result<Response, CodecError> {
        match self {
            Self::InitCluster(rec) => {
                let response = create(txn, rec)?;
                // Nothing to backfill: every CDR from now on is indexed as it is stored.
                if response == Response::Ok && txn.keys_after(Table::Cdrs, None, 1).is_empty() {
                    let done = CdrIndexProgress {
                        indexed_through: None,
                        complete: true,
                    };
                    put(txn, &done)?;
                }
                Ok(response)
            }
            Self::SetVip(rec) => put(txn, rec),
            Self::PutMember(rec) => put(txn, rec),
            Self::RemoveMember { node_id } => {
                audio::forget_holder(txn, *node_id)?;
                Ok(delete(
                    txn,
                    Table::Members,
                    &format!("{node_id:020}"),
                    false,
                ))
            }
            Self::CreateExtension(rec) => match features_apply::number_free(txn, &rec.number) {
                Some(taken) => Ok(taken),
                None => create(txn, rec),
            },
            Self::UpdateExtension(rec) => update(txn, rec),
            Self::DeleteExtension { number } => {
                let response = delete(txn, Table::Extensions, number, true);
                if response == Response::Ok {
                    txn.delete(Table::CallHandling, number);
                    features_apply::leave_pickup_groups(txn, number)?;
                    let book = contacts::Book::Personal {
                        extension: number.clone(),
                    };
                    contacts::delete_book(txn, &book)?;
                    provisioning::forget_extension(txn, number)?;
                    recording::forget_extension(txn, number);
                    if txn.get(Table::Mailboxes, number).is_some() {
                        voicemail::delete_mailbox(txn, number)?;
                    }
                    for key in txn.keys_with_prefix(Table::Subscriptions, &format!("{number}/")) {
                        txn.delete(Table::Subscriptions, &key);
                    }
                }
                Ok(response)
            }
            Self::CreateUser(rec) => create(txn, rec),
            Self::UpdateUser(rec) => update(txn, rec),
            Self::DeleteUser { username } => Ok(delete(txn, Table::Users, username, true)),
            Self::PutSetting(rec) => put(txn, rec),
            Self::DeleteSetting { key } => Ok(delete(txn, Table::Settings, key, false)),
            Self::Batch(cmds) => {
                let mut out = Vec::with_capacity(cmds.len());
                for cmd in cmds {
                    out.push(cmd.apply(txn)?);
                }
                Ok(Response::Batch(out))
            }
            Self::Audited { change, entry } => {
                let response = change.apply(txn)?;
                if response == Response::Ok {
                    put(txn, entry)?;
                }
                Ok(response)
            }
            Self::PutCall(rec) => put(txn, rec.as_ref()),
            Self::EndCall { call_id, cdr } => {
                delete(txn, Table::Calls, call_id, false);
                txn.delete(Table::HangupRequests, call_id);
                txn.delete(Table::Settings, &recording::on_demand_key(call_id));
                release_outbound(txn, call_id)?;
                index_cdr(txn, cdr)?;
                put(txn, cdr.as_ref())
            }
            Self::DeleteCall { call_id } => {
                release_outbound(txn, call_id)?;
                txn.delete(Table::HangupRequests, call_id);
                txn.delete(Table::Settings, &recording::on_demand_key(call_id));
                Ok(delete(txn, Table::Calls, call_id, false))
            }
            Self::PutRouting { record, mode } => {
                crate::routing_apply::put_routing(txn, record, *mode)
            }
            Self::DeleteRouting { kind, name } => {
                crate::routing_apply::delete_routing(txn, *kind, name)
            }
            Self::PutTrunkStatus(status) => put(txn, status),
            Self::ReserveOutbound(r) => crate::routing_apply::reserve(txn, r),
            Self::ClearSuspension { extension } => {
                crate::routing_apply::clear_suspension(txn, extension)
            }
            Self::PutCallRoute(route) => put(txn, route),
            Self::PutWebAccount { account, mode } => web_apply::put_account(txn, account, *mode),
            Self::DeleteWebAccount { username } => web_apply::delete_account(txn, username),
            Self::PutWebRole { role, mode } => web_apply::put_role(txn, role, *mode),
            Self::DeleteWebRole { name } => web_apply::delete_role(txn, name),
            Self::OpenWebSession { session, totp_step } => {
                web_apply::open_session(txn, session, *totp_step)
            }
            Self::CloseWebSession { id } => Ok(delete(txn, Table::WebSessions, id, false)),
            Self::CloseWebSessionsOf { username, except } => {
                web_apply::close_sessions_of(txn, username, except.as_deref())
            }
            Self::PruneWebSessions { now } => web_apply::prune_sessions(txn, *now),
            Self::RequestHangup(r) => web_apply::request_hangup(txn, r),
            Self::SetRealm { realm } => web_apply::set_realm(txn, realm),
            Self::PutFirewallRule(rule) => put(txn, rule),
            Self::DeleteFirewallRule { id } => Ok(delete(txn, Table::Firewall, id, true)),
            Self::PutBan(ban) => put(txn, ban),
            Self::LiftBan { ip, now, forget } => {
                let current = txn
                    .get(Table::Bans, ip)
                    .map(|bytes| codec::decode::<Ban>(&bytes))
                    .transpose()?;
                match current {
                    None => Ok(Response::NotFound {
                        table: table_name(Table::Bans),
                        key: ip.clone(),
                    }),
                    Some(_) if *forget => Ok(delete(txn, Table::Bans, ip, false)),
                    Some(mut ban) => {
                        ban.until = ban.until.min(*now);
                        put(txn, &ban)
                    }
                }
            }
            Self::ForgetBans { before } => {
                for key in txn.keys_with_prefix(Table::Bans, "") {
                    let ended = txn
                        .get(Table::Bans, &key)
                        .map(|bytes| codec::decode::<Ban>(&bytes))
                        .transpose()?
                        .is_some_and(|b| b.until < *before);
                    if ended {
                        txn.delete(Table::Bans, &key);
                    }
                }
                Ok(Response::Ok)
            }
            Self::Audit(entry) => put(txn, entry),
            Self::PruneAudit { before } => {
                prune_before(txn, Table::Audit, &AuditEntry::key_for(*before, ""));
                Ok(Response::Ok)
            }
            Self::RecordEvent(event) => put(txn, event),
            Self::PruneEvents { before } => {
                prune_before(txn, Table::Events, &Event::key_for(*before, ""));
                Ok(Response::Ok)
            }
            Self::PutRecipient(r) => put(txn, r),
            Self::DeleteRecipient { id } => Ok(delete(txn, Table::Recipients, id, true)),
            Self::PruneCdrs { before } => {
                let bound = CallDetail::key_for(*before, "");
                prune_before(txn, Table::Cdrs, &bound);
                prune_before(txn, Table::CdrRoutes, &bound);
                // Keyed by extension first: every entry is looked at (pruning runs hourly).
                for key in txn.keys_with_prefix(Table::CdrsByExtension, "") {
                    if CdrIndexEntry::cdr_key_of(&key).is_some_and(|k| k < bound.as_str()) {
                        txn.delete(Table::CdrsByExtension, &key);
                    }
                }
                Ok(Response::Ok)
            }
            Self::IndexCdrs { after, limit } => index_cdrs(txn, after.as_deref(), *limit),
            Self::PutCallHandling(h) => features_apply::put_call_handling(txn, h),
            Self::PutRingGroup { group, mode } => features_apply::put_ring_group(txn, group, *mode),
            Self::DeleteRingGroup { number } => features_apply::delete_ring_group(txn, number),
            Self::PutFeatureCodes(codes) => features_apply::put_feature_codes(txn, codes),
            Self::PutSubscription(sub) => features_apply::put_subscription(txn, sub),
            Self::DeleteSubscription { key } => Ok(delete(txn, Table::Subscriptions, key, false)),
            Self::PruneSubscriptions { now } => features_apply::prune_subscriptions(txn, *now),
            Self::PutPickupGroup(group) => features_apply::put_pickup_group(txn, group),
            Self::DeletePickupGroup { name } => Ok(delete(txn, Table::PickupGroups, name, true)),
            Self::PutPickupCodes(codes) => features_apply::put_pickup_codes(txn, codes),
            Self::PutAudioFile(file) => audio::put_audio_file(txn, file),
            Self::AudioHeld { id, node } => audio::audio_held(txn, id, *node),
            Self::DeleteAudioFile { id } => audio::delete_audio_file(txn, id),
            Self::PutAudioQuotas(q) => put(txn, q),
            Self::PruneAudio { now } => audio::prune_audio(txn, *now),
            Self::PutTimeCondition(c) => time_condition::put_time_condition(txn, c),
            Self::DeleteTimeCondition { name } => time_condition::delete_time_condition(txn, name),
            Self::PutIvr { ivr, mode } => ivr::put_ivr(txn, ivr, *mode),
            Self::DeleteIvr { number } => ivr::delete_ivr(txn, number),
            Self::PutMailbox(m) => voicemail::put_mailbox(txn, m),
            Self::DeleteMailbox { extension } => voicemail::delete_mailbox(txn, extension),
            Self::PutVoicemailMessage(m) => voicemail::put_message(txn, m),
            Self::SetVoicemailHeard {
                mailbox,
                audio_id,
                heard,
            } => voicemail::set_heard(txn, mailbox, audio_id, *heard),
            Self::DeleteVoicemailMessage { mailbox, audio_id } => {
                voicemail::delete_message(txn, mailbox, audio_id)
            }
            Self::PutRecordingPolicy(p) => recording::put_recording_policy(txn, p),
            Self::PutConferenceRoom { room, mode } => conference::put_room(txn, room, *mode),
            Self::DeleteConferenceRoom { number } => conference::delete_room(txn, number),
            Self::PutParticipant(p) => conference::put_participant(txn, p),
            Self::SetParticipantMuted { room, id, muted } => {
                conference::change_participant(txn, room, id, |p| p.muted = *muted)
            }
            Self::KickParticipant { room, id } => {
                conference::change_participant(txn, room, id, |p| p.kicked = true)
            }
            Self::RemoveParticipant { room, id } => {
                Ok(conference::remove_participant(txn, room, id))
            }
            Self::PutRouteRecordingPolicy(p) => recording_routes::put_policy(txn, p),
            Self::PutCaptureTarget(t) => capture::put_capture_target(txn, t),
            Self::DeleteCaptureTarget { key } => Ok(delete(txn, Table::CaptureTargets, key, false)),
            Self::PutContacts(list) => contacts::put_contacts(txn, list),
            Self::DeleteContact { key } => contacts::delete_contact(txn, key),
            Self::SetMailboxName {
                extension,
                greeting,
            } => voicemail::set_name(txn, extension, greeting.as_deref()),
            Self::RestoreRows { table, rows } => Ok(crate::backup::restore_rows(txn, *table, rows)),
            Self::PutBackup {
                record,
                create: true,
            } => create(txn, record.as_ref()),
            Self::PutBackup {
                record,
                create: false,
            } => put(txn, record.as_ref()),
            Self::DeleteBackup { id } => Ok(delete(txn, Table::Backups, id, true)),
            Self::PutBackupSettings(s) => put(txn, s),
            Self::PutDevices(puts) => provisioning::put_devices(txn, puts),
            Self::DeleteDevice { mac } => provisioning::delete_device(txn, mac),
            Self::RecordDeviceFetch { mac, kind, fetch } => {
                provisioning::record_fetch(txn, mac, *kind, fetch)
            }
            Self::PutProvisioningSettings(s) => provisioning::put_settings(txn, s),
            Self::PutFirmware(f) => provisioning::put_firmware(txn, f),
            Self::DeleteFirmware { key } => Ok(delete(txn, Table::Firmware, key, true)),
            Self::UpdateBindings(ops) => {
                for op in ops {
                    apply_binding(txn, op)?;
                }
                Ok(Response::Ok)
            }
        }
    }

    /// Whether applying it may change the routing tables nodes compile: trunks, routes, groups and
    /// settings (an extension's group is read with the extension, per call).
    pub fn changes_routing(&self) -> bool {
        match self {
            Self::PutRouting { .. }
            | Self::DeleteRouting { .. }
            | Self::PutSetting(_)
            | Self::DeleteSetting { .. }
            | Self::SetRealm { .. }
            | Self::RestoreRows { .. } => true,
            Self::Batch(cmds) => cmds.iter().any(Self::changes_routing),
            Self::Audited { change, .. } => change.changes_routing(),
            _ => false,
        }
    }

    /// The oldest Raft wire protocol version whose nodes decode this command (the `cluster`
    /// crate's ALPN `pbx-raft/N`): 1 for every command of the first protocol, 2 for the ones
    /// appended since (and an audio file of a kind appended since). The leader proposes a command
    /// only once every member speaks its version, so an older node is never sent one it cannot
    /// read.
    pub fn wire_version(&self) -> u32 {
        match self {
            Self::SetMailboxName { .. }
            | Self::RestoreRows { .. }
            | Self::PutBackup { .. }
            | Self::DeleteBackup { .. }
            | Self::PutBackupSettings(_)
            | Self::PutDevices(_)
            | Self::DeleteDevice { .. }
            | Self::RecordDeviceFetch { .. }
            | Self::PutProvisioningSettings(_)
            | Self::PutFirmware(_)
            | Self::DeleteFirmware { .. } => 2,
            Self::PutAudioFile(file) if file.kind == audio::AudioKind::Firmware => 2,
            Self::Batch(cmds) => cmds.iter().map(Self::wire_version).max().unwrap_or(1),
            Self::Audited { change, .. } => change.wire_version(),
            _ => 1,
        }
    }

    /// Whether applying it may change the audio index (files, their holders).
    pub fn changes_audio(&self) -> bool {
        match self {
            Self::PutAudioFile(_)
            | Self::AudioHeld { .. }
            | Self::DeleteAudioFile { .. }
            | Self::PruneAudio { .. }
            | Self::DeleteMailbox { .. }
            | Self::DeleteVoicemailMessage { .. }
            | Self::DeleteExtension { .. }
            | Self::RemoveMember { .. }
            | Self::RestoreRows { .. } => true,
            Self::Batch(cmds) => cmds.iter().any(Self::changes_audio),
            Self::Audited { change, .. } => change.changes_audio(),
            _ => false,
        }
    }

    /// Short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InitCluster(_) => "init_cluster",
            Self::SetVip(_) => "set_vip",
            Self::PutMember(_) => "put_member",
            Self::RemoveMember { .. } => "remove_member",
            Self::CreateExtension(_) => "create_extension",
            Self::UpdateExtension(_) => "update_extension",
            Self::DeleteExtension { .. } => "delete_extension",
            Self::CreateUser(_) => "create_user",
            Self::UpdateUser(_) => "update_user",
            Self::DeleteUser { .. } => "delete_user",
            Self::PutSetting(_) => "put_setting",
            Self::DeleteSetting { .. } => "delete_setting",
            Self::UpdateBindings(_) => "update_bindings",
            Self::PutCall(_) => "put_call",
            Self::EndCall { .. } => "end_call",
            Self::DeleteCall { .. } => "delete_call",
            Self::PruneCdrs { .. } => "prune_cdrs",
            Self::PutFirewallRule(_) => "put_firewall_rule",
            Self::DeleteFirewallRule { .. } => "delete_firewall_rule",
            Self::PutBan(_) => "put_ban",
            Self::LiftBan { .. } => "lift_ban",
            Self::ForgetBans { .. } => "forget_bans",
            Self::Audit(_) => "audit",
            Self::PruneAudit { .. } => "prune_audit",
            Self::RecordEvent(_) => "record_event",
            Self::PruneEvents { .. } => "prune_events",
            Self::PutRecipient(_) => "put_recipient",
            Self::DeleteRecipient { .. } => "delete_recipient",
            Self::Batch(_) => "batch",
            Self::Audited { .. } => "audited",
            Self::PutRouting { .. } => "put_routing",
            Self::DeleteRouting { .. } => "delete_routing",
            Self::PutTrunkStatus(_) => "put_trunk_status",
            Self::ReserveOutbound(_) => "reserve_outbound",
            Self::ClearSuspension { .. } => "clear_suspension",
            Self::PutCallRoute(_) => "put_call_route",
            Self::PutWebAccount { .. } => "put_web_account",
            Self::DeleteWebAccount { .. } => "delete_web_account",
            Self::PutWebRole { .. } => "put_web_role",
            Self::DeleteWebRole { .. } => "delete_web_role",
            Self::OpenWebSession { .. } => "open_web_session",
            Self::CloseWebSession { .. } => "close_web_session",
            Self::CloseWebSessionsOf { .. } => "close_web_sessions_of",
            Self::PruneWebSessions { .. } => "prune_web_sessions",
            Self::RequestHangup(_) => "request_hangup",
            Self::SetRealm { .. } => "set_realm",
            Self::IndexCdrs { .. } => "index_cdrs",
            Self::PutCallHandling(_) => "put_call_handling",
            Self::PutRingGroup { .. } => "put_ring_group",
            Self::DeleteRingGroup { .. } => "delete_ring_group",
            Self::PutFeatureCodes(_) => "put_feature_codes",
            Self::PutSubscription(_) => "put_subscription",
            Self::DeleteSubscription { .. } => "delete_subscription",
            Self::PruneSubscriptions { .. } => "prune_subscriptions",
            Self::PutPickupGroup(_) => "put_pickup_group",
            Self::DeletePickupGroup { .. } => "delete_pickup_group",
            Self::PutPickupCodes(_) => "put_pickup_codes",
            Self::PutAudioFile(_) => "put_audio_file",
            Self::AudioHeld { .. } => "audio_held",
            Self::DeleteAudioFile { .. } => "delete_audio_file",
            Self::PutAudioQuotas(_) => "put_audio_quotas",
            Self::PruneAudio { .. } => "prune_audio",
            Self::PutRecordingPolicy(_) => "put_recording_policy",
            Self::PutTimeCondition(_) => "put_time_condition",
            Self::DeleteTimeCondition { .. } => "delete_time_condition",
            Self::PutIvr { .. } => "put_ivr",
            Self::DeleteIvr { .. } => "delete_ivr",
            Self::PutMailbox(_) => "put_mailbox",
            Self::DeleteMailbox { .. } => "delete_mailbox",
            Self::PutVoicemailMessage(_) => "put_voicemail_message",
            Self::SetVoicemailHeard { .. } => "set_voicemail_heard",
            Self::DeleteVoicemailMessage { .. } => "delete_voicemail_message",
            Self::PutConferenceRoom { .. } => "put_conference_room",
            Self::DeleteConferenceRoom { .. } => "delete_conference_room",
            Self::PutParticipant(_) => "put_participant",
            Self::SetParticipantMuted { .. } => "set_participant_muted",
            Self::KickParticipant { .. } => "kick_participant",
            Self::RemoveParticipant { .. } => "remove_participant",
            Self::PutRouteRecordingPolicy(_) => "put_route_recording_policy",
            Self::PutCaptureTarget(_) => "put_capture_target",
            Self::DeleteCaptureTarget { .. } => "delete_capture_target",
            Self::PutContacts(_) => "put_contacts",
            Self::DeleteContact { .. } => "delete_contact",
            Self::PutDevices(_) => "put_devices",
            Self::DeleteDevice { .. } => "delete_device",
            Self::RecordDeviceFetch { .. } => "record_device_fetch",
            Self::PutProvisioningSettings(_) => "put_provisioning_settings",
            Self::PutFirmware(_) => "put_firmware",
            Self::DeleteFirmware { .. } => "delete_firmware",
            Self::SetMailboxName { .. } => "set_mailbox_name",
            Self::RestoreRows { .. } => "restore_rows",
            Self::PutBackup { .. } => "put_backup",
            Self::DeleteBackup { .. } => "delete_backup",
            Self::PutBackupSettings(_) => "put_backup_settings",
        }
    }
}

fn apply_binding(txn: &mut dyn Txn, op: &BindingOp) -> Result<(), CodecError> {
    match op {
        BindingOp::Put(b) => {
            put(txn, b)?;
        }
        BindingOp::Remove { aor, contact } => {
            delete(txn, Table::Bindings, &Binding::key_for(aor, contact), false);
        }
        BindingOp::RemoveAll { aor } => {
            for key in txn.keys_with_prefix(Table::Bindings, &Binding::aor_prefix(aor)) {
                txn.delete(Table::Bindings, &key);
            }
        }
        BindingOp::SetReachable {
            aor,
            contact,
            reachable,
        } => {
            let key = Binding::key_for(aor, contact);
            let current = txn
                .get(Table::Bindings, &key)
                .map(|bytes| codec::decode::<Binding>(&bytes))
                .transpose()?;
            if let Some(mut b) = current {
                b.reachable = Some(*reachable);
                put(txn, &b)?;
            }
        }
        BindingOp::Expire { aor, contact, now } => {
            let key = Binding::key_for(aor, contact);
            let current = txn
                .get(Table::Bindings, &key)
                .map(|bytes| codec::decode::<Binding>(&bytes))
                .transpose()?;
            if current.is_some_and(|b| b.expires_at <= *now) {
                txn.delete(Table::Bindings, &key);
            }
        }
    }
    Ok(())
}

/// A call ended: the toll counters it held stop counting it as simultaneous.
fn release_outbound(txn: &mut dyn Txn, call_id: &str) -> Result<(), CodecError> {
    let Some(hold) = get::<OutboundHold>(txn, call_id)? else {
        return Ok(());
    };
    for key in &hold.counters {
        if let Some(mut counter) = get::<TollCounter>(txn, key)? {
            counter.active.retain(|(id, _)| id != call_id);
            put(txn, &counter)?;
        }
    }
    txn.delete(Table::OutboundActive, call_id);
    Ok(())
}

/// Puts the entries of `cdr` in the index of CDRs by extension.
fn index_cdr(txn: &mut dyn Txn, cdr: &CallDetail) -> Result<(), CodecError> {
    for entry in CdrIndexEntry::of(cdr) {
        put(txn, &entry)?;
    }
    Ok(())
}

/// [`Command::IndexCdrs`].
fn index_cdrs(txn: &mut dyn Txn, after: Option<&str>, limit: u32) -> Result<Response, CodecError> {
    let mut progress = get::<CdrIndexProgress>(txn, CdrIndexProgress::KEY)?.unwrap_or_default();
    if progress.complete {
        return Ok(Response::Ok);
    }
    if progress.indexed_through.as_deref() != after {
        return Ok(Response::Conflict {
            table: table_name(Table::Cluster),
            key: CdrIndexProgress::KEY.to_owned(),
        });
    }
    let limit = limit as usize;
    let mut keys = txn.keys_after(Table::Cdrs, after, limit);
    for key in &keys {
        if let Some(cdr) = get::<CallDetail>(txn, key)? {
            index_cdr(txn, &cdr)?;
        }
    }
    // A short batch reached the end of the table: every CDR stored before the index existed is
    // indexed now, and every later one was indexed as it was stored.
    progress.complete = keys.len() < limit;
    if let Some(last) = keys.pop() {
        progress.indexed_through = Some(last);
    }
    put(txn, &progress)
}

/// Reads one record.
pub(crate) fn get<R: Record>(txn: &dyn Txn, key: &str) -> Result<Option<R>, CodecError> {
    txn.get(R::TABLE, key)
        .map(|bytes| codec::decode::<R>(&bytes))
        .transpose()
}

/// Deletes every key that sorts before `bound` (tables keyed by a zero-padded time first).
fn prune_before(txn: &mut dyn Txn, table: Table, bound: &str) {
    for key in txn.keys_with_prefix(table, "") {
        if key.as_str() >= bound {
            break;
        }
        txn.delete(table, &key);
    }
}

pub(crate) fn table_name(table: Table) -> String {
    table.cf_name().trim_start_matches("t_").to_owned()
}

pub(crate) fn put<R: Record>(txn: &mut dyn Txn, rec: &R) -> Result<Response, CodecError> {
    txn.put(R::TABLE, &rec.key(), codec::encode(rec)?);
    Ok(Response::Ok)
}

pub(crate) fn create<R: Record>(txn: &mut dyn Txn, rec: &R) -> Result<Response, CodecError> {
    let key = rec.key();
    if txn.get(R::TABLE, &key).is_some() {
        return Ok(Response::Conflict {
            table: table_name(R::TABLE),
            key,
        });
    }
    put(txn, rec)
}

pub(crate) fn update<R: Record>(txn: &mut dyn Txn, rec: &R) -> Result<Response, CodecError> {
    let key = rec.key();
    if txn.get(R::TABLE, &key).is_none() {
        return Ok(Response::NotFound {
            table: table_name(R::TABLE),
            key,
        });
    }
    put(txn, rec)
}

pub(crate) fn delete(txn: &mut dyn Txn, table: Table, key: &str, must_exist: bool) -> Response {
    if txn.get(table, key).is_none() {
        return if must_exist {
            Response::NotFound {
                table: table_name(table),
                key: key.to_owned(),
            }
        } else {
            Response::Ok
        };
    }
    txn.delete(table, key);
    Response::Ok
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::SipCredentials;

    #[derive(Default)]
    pub(crate) struct MemTxn(pub(crate) BTreeMap<(Table, String), Vec<u8>>);

    impl Txn for MemTxn {
        fn get(&self, table: Table, key: &str) -> Option<Vec<u8>> {
            self.0.get(&(table, key.to_owned())).cloned()
        }
        fn keys_with_prefix(&self, table: Table, prefix: &str) -> Vec<String> {
            self.0
                .keys()
                .filter(|(t, k)| *t == table && k.starts_with(prefix))
                .map(|(_, k)| k.clone())
                .collect()
        }
        fn keys_after(&self, table: Table, after: Option<&str>, limit: usize) -> Vec<String> {
            self.0
                .keys()
                .filter(|(t, k)| *t == table && after.is_none_or(|a| k.as_str() > a))
                .take(limit)
                .map(|(_, k)| k.clone())
                .collect()
        }
        fn put(&mut self, table: Table, key: &str, value: Vec<u8>) {
            self.0.insert((table, key.to_owned()), value);
        }
        fn delete(&mut self, table: Table, key: &str) {
            self.0.remove(&(table, key.to_owned()));
        }
    }

    pub(crate) fn ext(number: &str) -> Extension {
        Extension {
            number: number.into(),
            display_name: "Reception".into(),
            credentials: SipCredentials {
                username: number.into(),
                realm: "pbx".into(),
                ha1_md5: "00".into(),
                ha1_sha256: "11".into(),
                changed_at: 1,
            },
            permission_group: "internal".into(),
            enabled: true,
            created_at: 1,
            updated_at: 1,
        }
    }

    pub(crate) fn cdr(started_at: UnixMillis, id: &str) -> CallDetail {
        CallDetail {
            id: id.into(),
            caller: "1001".into(),
            callee: "1002".into(),
            started_at,
            answered_at: None,
            ended_at: started_at + 1,
            duration_secs: 0,
            disposition: crate::model::Disposition::Busy,
            hangup_side: crate::model::HangupSide::Callee,
            cause: "486".into(),
            sip_status: 486,
            node_id: 1,
        }
    }

    fn audit(at: UnixMillis, action: &str) -> AuditEntry {
        AuditEntry {
            at,
            seq: "0001".into(),
            actor: "admin".into(),
            source: "198.18.0.21".into(),
            action: action.into(),
            status: 200,
            node_id: 1,
        }
    }

    #[test]
    fn an_audited_change_stores_its_entry_only_when_it_is_made() {
        let mut txn = MemTxn::default();
        let create = |a| Command::Audited {
            change: Box::new(Command::CreateExtension(ext("1001"))),
            entry: audit(a, "POST /api/v1/extensions"),
        };
        assert_eq!(create(10).apply(&mut txn).unwrap(), Response::Ok);
        assert_eq!(txn.keys_with_prefix(Table::Extensions, "").len(), 1);
        assert_eq!(txn.keys_with_prefix(Table::Audit, "").len(), 1);
        // The same create again is refused: no change, so no entry.
        let refused = create(20).apply(&mut txn).unwrap();
        assert!(matches!(refused, Response::Conflict { .. }), "{refused:?}");
        assert_eq!(txn.keys_with_prefix(Table::Audit, "").len(), 1);
        // Entries are pruned by age.
        Command::PruneAudit { before: 11 }.apply(&mut txn).unwrap();
        assert!(txn.keys_with_prefix(Table::Audit, "").is_empty());
    }

    #[test]
    fn ending_a_call_stores_its_cdr_and_pruning_drops_only_older_ones() {
        let mut txn = MemTxn::default();
        for (t, id) in [(100, "a"), (200, "b"), (300, "c")] {
            let cmd = Command::EndCall {
                call_id: id.into(),
                cdr: Box::new(cdr(t, id)),
            };
            assert_eq!(cmd.apply(&mut txn).unwrap(), Response::Ok);
        }
        assert_eq!(txn.keys_with_prefix(Table::Cdrs, "").len(), 3);
        Command::PruneCdrs { before: 200 }.apply(&mut txn).unwrap();
        let left = txn.keys_with_prefix(Table::Cdrs, "");
        assert_eq!(
            left,
            [CallDetail::key_for(200, "b"), CallDetail::key_for(300, "c")]
        );
    }

    fn end_call(cdr: CallDetail) -> Command {
        Command::EndCall {
            call_id: cdr.id.clone(),
            cdr: Box::new(cdr),
        }
    }

    /// The index's keys, in order.
    fn index(txn: &MemTxn) -> Vec<String> {
        txn.keys_with_prefix(Table::CdrsByExtension, "")
    }

    fn entry(extension: &str, started_at: UnixMillis, id: &str) -> String {
        format!("{extension}/{}", CallDetail::key_for(started_at, id))
    }

    fn progress(txn: &MemTxn) -> Option<CdrIndexProgress> {
        get::<CdrIndexProgress>(txn, CdrIndexProgress::KEY).unwrap()
    }

    #[test]
    fn a_cdr_is_indexed_under_its_caller_and_its_callee_and_pruned_with_them() {
        let mut txn = MemTxn::default();
        let mut to_self = cdr(200, "b");
        to_self.callee = "1001".into();
        let mut no_caller = cdr(300, "c");
        no_caller.caller = String::new();
        no_caller.callee = "*97".into();
        for c in [cdr(100, "a"), to_self, no_caller] {
            assert_eq!(end_call(c).apply(&mut txn).unwrap(), Response::Ok);
        }
        assert_eq!(
            index(&txn),
            [
                entry("1001", 100, "a"),
                entry("1001", 200, "b"),
                entry("1002", 100, "a"),
            ],
            "both sides; one entry when they are the same; none for an empty or non-digit number"
        );
        let stored: CdrIndexEntry = codec::decode(
            &txn.get(Table::CdrsByExtension, &entry("1002", 100, "a"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(stored.cdr_key, CallDetail::key_for(100, "a"));
        assert_eq!(stored.key(), entry("1002", 100, "a"));

        Command::PruneCdrs { before: 200 }.apply(&mut txn).unwrap();
        assert_eq!(index(&txn), [entry("1001", 200, "b")]);
        Command::PruneCdrs { before: 201 }.apply(&mut txn).unwrap();
        assert!(index(&txn).is_empty());
        assert_eq!(
            txn.keys_with_prefix(Table::Cdrs, ""),
            [CallDetail::key_for(300, "c")]
        );
    }

    #[test]
    fn a_new_cluster_starts_with_a_complete_index_but_one_with_cdrs_does_not() {
        let init = || {
            Command::InitCluster(ClusterRecord {
                cluster_id: "c".into(),
                realm: "pbx".into(),
                secret: vec![1; 32],
                created_at: 1,
            })
        };
        let mut fresh = MemTxn::default();
        assert_eq!(init().apply(&mut fresh).unwrap(), Response::Ok);
        assert_eq!(
            progress(&fresh),
            Some(CdrIndexProgress {
                indexed_through: None,
                complete: true
            })
        );
        // CDRs some other way first (as a build without the index stored them): the backfill has work.
        let mut old = MemTxn::default();
        put(&mut old, &cdr(100, "a")).unwrap();
        init().apply(&mut old).unwrap();
        assert_eq!(progress(&old), None);
        // A second InitCluster is refused and changes nothing.
        let refused = init().apply(&mut old).unwrap();
        assert!(matches!(refused, Response::Conflict { .. }), "{refused:?}");
        assert_eq!(progress(&old), None);
    }

    #[test]
    fn index_cdrs_backfills_old_cdrs_in_batches_in_order_and_marks_completion() {
        let mut txn = MemTxn::default();
        // Five CDRs stored as a build without the index stored them: no entries.
        for (t, id) in [(10, "a"), (20, "b"), (30, "c"), (40, "d"), (50, "e")] {
            put(&mut txn, &cdr(t, id)).unwrap();
        }
        assert!(index(&txn).is_empty());
        let batch = |after: Option<String>| Command::IndexCdrs { after, limit: 2 };
        assert_eq!(batch(None).apply(&mut txn).unwrap(), Response::Ok);
        let through_b = Some(CallDetail::key_for(20, "b"));
        assert_eq!(
            progress(&txn),
            Some(CdrIndexProgress {
                indexed_through: through_b.clone(),
                complete: false
            })
        );
        assert_eq!(index(&txn).len(), 4, "a and b, caller and callee");
        // A call ending meanwhile is indexed as it is stored, wherever its key falls.
        end_call(cdr(15, "new")).apply(&mut txn).unwrap();
        // A batch that does not start where the last one stopped (a stale leader's) does nothing.
        for stale in [None, Some(CallDetail::key_for(40, "d"))] {
            let resp = batch(stale).apply(&mut txn).unwrap();
            assert_eq!(
                resp,
                Response::Conflict {
                    table: "cluster".into(),
                    key: CdrIndexProgress::KEY.into()
                }
            );
        }
        assert_eq!(progress(&txn).unwrap().indexed_through, through_b);
        batch(through_b).apply(&mut txn).unwrap();
        let through_d = Some(CallDetail::key_for(40, "d"));
        assert_eq!(progress(&txn).unwrap().indexed_through, through_d);
        assert!(
            !progress(&txn).unwrap().complete,
            "a full batch: maybe more"
        );
        batch(through_d).apply(&mut txn).unwrap();
        assert_eq!(
            progress(&txn),
            Some(CdrIndexProgress {
                indexed_through: Some(CallDetail::key_for(50, "e")),
                complete: true
            }),
            "a short batch reached the end"
        );
        let want: Vec<String> = ["1001", "1002"]
            .into_iter()
            .flat_map(|e| {
                [
                    (10, "a"),
                    (15, "new"),
                    (20, "b"),
                    (30, "c"),
                    (40, "d"),
                    (50, "e"),
                ]
                .map(|(t, id)| entry(e, t, id))
            })
            .collect();
        assert_eq!(index(&txn), want, "every old CDR has its entries");
        // Complete: further batches do nothing, whatever they say.
        let before = txn.0.clone();
        assert_eq!(batch(None).apply(&mut txn).unwrap(), Response::Ok);
        assert_eq!(txn.0, before);
    }

    #[test]
    fn index_cdrs_on_an_empty_table_completes_at_once() {
        let mut txn = MemTxn::default();
        Command::IndexCdrs {
            after: None,
            limit: 5_000,
        }
        .apply(&mut txn)
        .unwrap();
        assert_eq!(
            progress(&txn),
            Some(CdrIndexProgress {
                indexed_through: None,
                complete: true
            })
        );
    }

    #[test]
    fn create_refuses_a_duplicate_and_leaves_the_first() {
        let mut txn = MemTxn::default();
        assert_eq!(
            Command::CreateExtension(ext("1001"))
                .apply(&mut txn)
                .unwrap(),
            Response::Ok
        );
        let mut other = ext("1001");
        other.display_name = "Intruder".into();
        let resp = Command::CreateExtension(other).apply(&mut txn).unwrap();
        assert_eq!(
            resp,
            Response::Conflict {
                table: "extensions".into(),
                key: "1001".into()
            }
        );
        let stored: Extension =
            codec::decode(&txn.get(Table::Extensions, "1001").unwrap()).unwrap();
        assert_eq!(stored.display_name, "Reception");
    }

    #[test]
    fn update_and_delete_of_a_missing_key_are_not_found() {
        let mut txn = MemTxn::default();
        let resp = Command::UpdateExtension(ext("2000"))
            .apply(&mut txn)
            .unwrap();
        assert!(matches!(resp, Response::NotFound { .. }));
        let resp = Command::DeleteExtension {
            number: "2000".into(),
        }
        .apply(&mut txn)
        .unwrap();
        assert!(matches!(resp, Response::NotFound { .. }));
        assert!(txn.0.is_empty());
    }

    fn binding(aor: &str, contact: &str, expires_at: u64) -> Binding {
        Binding {
            aor: aor.into(),
            contact: contact.into(),
            expires_at,
            q: None,
            call_id: "c".into(),
            cseq: 1,
            source: "198.18.0.10:5060".into(),
            transport: "udp".into(),
            user_agent: "ua".into(),
            node_id: 1,
            registered_at: 0,
            instance: None,
            reachable: None,
        }
    }

    #[test]
    fn binding_batch_puts_removes_and_expires_in_order() {
        let mut txn = MemTxn::default();
        let ops = vec![
            BindingOp::Put(binding("1001", "sip:a@x", 100)),
            BindingOp::Put(binding("1001", "sip:b@x", 100)),
            BindingOp::Put(binding("10011", "sip:c@x", 100)),
            BindingOp::Put(binding("1002", "sip:d@x", 500)),
        ];
        Command::UpdateBindings(ops).apply(&mut txn).unwrap();
        assert_eq!(txn.0.len(), 4);
        // RemoveAll takes 1001's bindings only, not those of 10011 whose number merely starts alike.
        Command::UpdateBindings(vec![BindingOp::RemoveAll { aor: "1001".into() }])
            .apply(&mut txn)
            .unwrap();
        assert!(
            txn.get(Table::Bindings, &Binding::key_for("10011", "sip:c@x"))
                .is_some()
        );
        assert_eq!(txn.0.len(), 2);
        // Expire removes only what is still expired at `now`.
        let expire = |aor: &str, contact: &str| BindingOp::Expire {
            aor: aor.into(),
            contact: contact.into(),
            now: 200,
        };
        Command::UpdateBindings(vec![expire("10011", "sip:c@x"), expire("1002", "sip:d@x")])
            .apply(&mut txn)
            .unwrap();
        assert_eq!(txn.0.len(), 1);
        assert!(
            txn.get(Table::Bindings, &Binding::key_for("1002", "sip:d@x"))
                .is_some()
        );
    }

    #[test]
    fn delete_removes_the_row() {
        let mut txn = MemTxn::default();
        Command::CreateExtension(ext("1001"))
            .apply(&mut txn)
            .unwrap();
        let resp = Command::DeleteExtension {
            number: "1001".into(),
        }
        .apply(&mut txn)
        .unwrap();
        assert_eq!(resp, Response::Ok);
        assert!(txn.get(Table::Extensions, "1001").is_none());
    }
}
