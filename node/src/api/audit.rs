//! The audit log of configuration changes: who changed what, from where, and the old and new values
//! (secrets never shown). Each entry is committed in the same Raft entry as its change, before the
//! admin gets the answer ([`storage::Command::Audited`]).
//!
//! The guard ([`super::guard`]) runs every changing request inside an [`AuditContext`]; every change a
//! handler proposes through `AppState::propose_checked` picks the context up here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde_json::Value;

use storage::conference::ConferenceRoom;
use storage::contacts::Contact;
use storage::features::{CallHandling, FeatureCodes, PickupCodes, PickupGroup, RingGroup};
use storage::ivr::Ivr;
use storage::model::{AuditEntry, Ban, Extension, FirewallRule, MemberRecord, Recipient, Setting};
use storage::provisioning::{Device, ProvisioningSettings, SecretChange};
use storage::recording::RecordingPolicy;
use storage::recording_routes::RouteRecordingPolicy;
use storage::time_condition::TimeCondition;
use storage::voicemail::Mailbox;
use storage::{Command, Record, StateReader};

use super::guard::AuditActor;
use crate::time::now_millis;

/// Longest `action` stored (the request line and what changed).
const MAX_ACTION: usize = 2048;
/// Longest value shown for one field.
const MAX_VALUE: usize = 120;
/// Fields whose values never appear in the log, only that they changed.
const SECRET_FIELDS: [&str; 8] = [
    "credentials",
    "password_hash",
    "pin_hash",
    "secret",
    "ha1_md5",
    "ha1_sha256",
    "sip_secret",
    "token_sha256",
];
/// Fields that change with every write and say nothing.
const NOISE_FIELDS: [&str; 2] = ["updated_at", "created_at"];

tokio::task_local! {
    static CONTEXT: Arc<AuditContext>;
}

/// One changing API request, as the audit log will name it.
#[derive(Debug)]
pub(crate) struct AuditContext {
    pub(crate) actor: AuditActor,
    pub(crate) source: String,
    /// `METHOD /path`.
    pub(crate) action: String,
    pub(crate) node_id: u64,
    /// Set once a change was committed with its entry.
    recorded: AtomicBool,
}

impl AuditContext {
    pub(crate) fn new(actor: AuditActor, source: String, action: String, node_id: u64) -> Self {
        Self {
            actor,
            source,
            action,
            node_id,
            recorded: AtomicBool::new(false),
        }
    }

    pub(crate) fn recorded(&self) -> bool {
        self.recorded.load(Ordering::Relaxed)
    }

    /// An entry for this request, saying `what` changed.
    pub(crate) fn entry(&self, actor: String, what: Option<&str>, status: u16) -> AuditEntry {
        let action = match what {
            Some(w) if !w.is_empty() => format!("{}: {w}", self.action),
            _ => self.action.clone(),
        };
        AuditEntry {
            at: now_millis(),
            seq: format!("{:08x}", rand::random::<u32>()),
            actor,
            source: self.source.clone(),
            action: action.chars().take(MAX_ACTION).collect(),
            status,
            node_id: self.node_id,
        }
    }
}

/// Runs `fut` (a handler) with `ctx` as its audit context.
pub(crate) async fn scope<F: Future>(ctx: Arc<AuditContext>, fut: F) -> F::Output {
    CONTEXT.scope(ctx, fut).await
}

/// `cmd` with its audit entry attached, when an authenticated admin's request is making it; `cmd`
/// unchanged otherwise (the PBX's own writes, logins).
pub(crate) fn attach(cmd: Command, reader: &StateReader) -> Command {
    let ctx = CONTEXT.try_with(Arc::clone).ok();
    let Some((ctx, actor)) = ctx.and_then(|c| c.actor.get().map(|a| (c, a))) else {
        return cmd;
    };
    let what = describe(&cmd, reader);
    // The answer's status is not known yet: 200 says the change was committed.
    let entry = ctx.entry(actor, Some(&what), 200);
    ctx.recorded.store(true, Ordering::Relaxed);
    Command::Audited {
        change: Box::new(cmd),
        entry,
    }
}

/// What a command changes, with old and new values.
fn describe(cmd: &Command, reader: &StateReader) -> String {
    fn old<T: Record>(reader: &StateReader, key: &str) -> Option<T> {
        reader.get::<T>(key).ok().flatten()
    }
    match cmd {
        Command::CreateExtension(e) => changes(None, Some(e)),
        Command::UpdateExtension(e) => {
            changes(old::<Extension>(reader, &e.number).as_ref(), Some(e))
        }
        Command::DeleteExtension { number } => {
            changes::<Extension>(old(reader, number).as_ref(), None)
        }
        Command::PutFirewallRule(r) => {
            changes(old::<FirewallRule>(reader, &r.id).as_ref(), Some(r))
        }
        Command::DeleteFirewallRule { id } => {
            changes::<FirewallRule>(old(reader, id).as_ref(), None)
        }
        Command::PutSetting(s) => changes(old::<Setting>(reader, &s.key).as_ref(), Some(s)),
        Command::PutBan(b) => changes(old::<Ban>(reader, &b.ip).as_ref(), Some(b)),
        Command::LiftBan { ip, forget, .. } => {
            format!(
                "ban on {ip} lifted{}",
                if *forget { " and forgotten" } else { "" }
            )
        }
        Command::PutRecipient(r) => changes(old::<Recipient>(reader, &r.id).as_ref(), Some(r)),
        Command::DeleteRecipient { id } => changes::<Recipient>(old(reader, id).as_ref(), None),
        Command::PutMember(m) => changes(old::<MemberRecord>(reader, &m.key()).as_ref(), Some(m)),
        Command::RemoveMember { node_id } => format!("node {node_id} removed"),
        // An extension that never set its handling had the defaults: a change shows from them.
        Command::PutCallHandling(h) => {
            let before = old::<CallHandling>(reader, &h.extension)
                .unwrap_or_else(|| CallHandling::none(&h.extension));
            changes(Some(&before), Some(h))
        }
        Command::PutRingGroup { group, .. } => changes(
            old::<RingGroup>(reader, &group.number).as_ref(),
            Some(group),
        ),
        Command::DeleteRingGroup { number } => {
            changes::<RingGroup>(old(reader, number).as_ref(), None)
        }
        Command::PutFeatureCodes(c) => {
            let before = old::<FeatureCodes>(reader, FeatureCodes::KEY).unwrap_or_default();
            changes(Some(&before), Some(c))
        }
        Command::PutPickupGroup(g) => {
            changes(old::<PickupGroup>(reader, &g.name).as_ref(), Some(g))
        }
        Command::DeletePickupGroup { name } => {
            changes::<PickupGroup>(old(reader, name).as_ref(), None)
        }
        Command::PutTimeCondition(c) => {
            changes(old::<TimeCondition>(reader, &c.name).as_ref(), Some(c))
        }
        Command::DeleteTimeCondition { name } => {
            changes::<TimeCondition>(old(reader, name).as_ref(), None)
        }
        Command::PutConferenceRoom { room, .. } => changes(
            old::<ConferenceRoom>(reader, &room.number).as_ref(),
            Some(room),
        ),
        Command::DeleteConferenceRoom { number } => {
            changes::<ConferenceRoom>(old(reader, number).as_ref(), None)
        }
        Command::SetParticipantMuted { room, id, muted } => format!(
            "participant {id} of conference room {room} {}",
            if *muted { "muted" } else { "unmuted" }
        ),
        Command::KickParticipant { room, id } => {
            format!("participant {id} of conference room {room} kicked")
        }
        Command::PutIvr { ivr, .. } => changes(old::<Ivr>(reader, &ivr.number).as_ref(), Some(ivr)),
        Command::DeleteIvr { number } => changes::<Ivr>(old(reader, number).as_ref(), None),
        Command::PutPickupCodes(c) => {
            let before = old::<PickupCodes>(reader, PickupCodes::KEY).unwrap_or_default();
            changes(Some(&before), Some(c))
        }
        // An extension that never set a policy was not recorded: a change shows from `never`.
        Command::PutRecordingPolicy(p) => {
            let before = old::<RecordingPolicy>(reader, &p.extension)
                .unwrap_or_else(|| RecordingPolicy::none(&p.extension));
            changes(Some(&before), Some(p))
        }
        // Likewise a trunk or route: the target is the request's, only the mode shows.
        Command::PutRouteRecordingPolicy(p) => {
            let before = old::<RouteRecordingPolicy>(reader, &p.target.key())
                .unwrap_or_else(|| RouteRecordingPolicy::none(p.target.clone()));
            changes(Some(&before), Some(p))
        }
        Command::PutMailbox(m) => changes(old::<Mailbox>(reader, &m.extension).as_ref(), Some(m)),
        Command::DeleteMailbox { extension } => {
            changes::<Mailbox>(old(reader, extension).as_ref(), None)
        }
        Command::SetVoicemailHeard {
            mailbox,
            audio_id,
            heard,
        } => format!(
            "voicemail message {audio_id} of mailbox {mailbox} marked {}",
            if *heard { "heard" } else { "new" }
        ),
        Command::DeleteVoicemailMessage { mailbox, audio_id } => {
            format!("voicemail message {audio_id} of mailbox {mailbox} deleted")
        }
        Command::SetMailboxName {
            extension,
            greeting,
        } => match greeting {
            Some(id) => format!("name greeting of mailbox {extension} set to {id}"),
            None => format!("name greeting of mailbox {extension} removed"),
        },
        Command::PutContacts(list) => match list.as_slice() {
            [one] => changes(old::<Contact>(reader, &one.key()).as_ref(), Some(one)),
            many => format!("{} contacts imported", many.len()),
        },
        Command::DeleteContact { key } => changes::<Contact>(old(reader, key).as_ref(), None),
        Command::PutDevices(list) => match list.as_slice() {
            [one] => {
                let d = &one.device;
                let text = changes(old::<Device>(reader, &d.mac).as_ref(), Some(d));
                match one.secret {
                    SecretChange::Rotate(_) => {
                        format!("{text}; SIP secret of extension {} replaced", d.extension)
                    }
                    _ => text,
                }
            }
            many => format!("{} devices imported", many.len()),
        },
        Command::DeleteDevice { mac } => changes::<Device>(old(reader, mac).as_ref(), None),
        Command::PutProvisioningSettings(s) => {
            let before =
                old::<ProvisioningSettings>(reader, ProvisioningSettings::KEY).unwrap_or_default();
            changes(Some(&before), Some(s))
        }
        other => other.kind().to_owned(),
    }
}

/// `field: old → new` for every field that differs (created: the new values; deleted: the old).
fn changes<T: Serialize>(old: Option<&T>, new: Option<&T>) -> String {
    let fields = |v: Option<&T>| match v.map(serde_json::to_value) {
        Some(Ok(Value::Object(map))) => map,
        _ => serde_json::Map::new(),
    };
    let (before, after) = (fields(old), fields(new));
    let verb = match (old.is_some(), new.is_some()) {
        (false, true) => "created",
        (true, false) => "deleted",
        _ => "changed",
    };
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut parts = Vec::new();
    for key in keys {
        if NOISE_FIELDS.contains(&key.as_str()) {
            continue;
        }
        let (b, a) = (before.get(key), after.get(key));
        if b == a {
            continue;
        }
        let secret = SECRET_FIELDS.contains(&key.as_str());
        parts.push(match (secret, verb) {
            (true, _) => format!("{key} (secret) {verb}"),
            (false, "created") => format!("{key}={}", shown(a)),
            (false, "deleted") => format!("{key}={}", shown(b)),
            (false, _) => format!("{key}: {} → {}", shown(b), shown(a)),
        });
    }
    if parts.is_empty() {
        return format!("{verb}, nothing different");
    }
    format!("{verb} {}", parts.join(", "))
}

fn shown(v: Option<&Value>) -> String {
    let text = v.map_or_else(|| "none".to_owned(), Value::to_string);
    if text.chars().count() > MAX_VALUE {
        let cut: String = text.chars().take(MAX_VALUE).collect();
        format!("{cut}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::model::SipCredentials;

    fn ext(name: &str, ha1: &str) -> Extension {
        Extension {
            number: "1001".into(),
            display_name: name.into(),
            credentials: SipCredentials {
                username: "1001".into(),
                realm: "pbx".into(),
                ha1_md5: ha1.into(),
                ha1_sha256: ha1.into(),
                changed_at: 1,
            },
            permission_group: "internal".into(),
            enabled: true,
            created_at: 1,
            updated_at: 2,
        }
    }

    #[test]
    fn a_change_shows_old_and_new_values_but_never_a_secret() {
        let mut after = ext("Reception", "bbbb");
        after.updated_at = 99;
        let text = changes(Some(&ext("Front desk", "aaaa")), Some(&after));
        assert_eq!(
            text,
            "changed credentials (secret) changed, display_name: \"Front desk\" → \"Reception\""
        );
        assert!(!text.contains("aaaa") && !text.contains("bbbb"));
    }

    #[test]
    fn created_and_deleted_records_list_their_values() {
        let created = changes(None, Some(&ext("Reception", "aaaa")));
        assert!(created.starts_with("created "), "{created}");
        assert!(created.contains("display_name=\"Reception\""));
        assert!(created.contains("credentials (secret) created"));
        assert!(!created.contains("aaaa"));
        let deleted = changes(Some(&ext("Reception", "aaaa")), None);
        assert!(deleted.starts_with("deleted "), "{deleted}");
        assert!(deleted.contains("number=\"1001\""));
        assert_eq!(
            changes(Some(&ext("A", "x")), Some(&ext("A", "x"))),
            "changed, nothing different"
        );
    }

    #[test]
    fn a_mailbox_change_never_shows_the_pin_hash() {
        let before = Mailbox::new("1001", 1);
        let mut after = before.clone();
        after.pin_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
        after.ring_secs = 30;
        let text = changes(Some(&before), Some(&after));
        assert_eq!(
            text,
            "changed pin_hash (secret) changed, ring_secs: 20 → 30"
        );
        let created = changes(None, Some(&after));
        assert!(created.contains("pin_hash (secret) created"), "{created}");
        assert!(!created.contains("argon2"), "{created}");
    }

    #[test]
    fn long_values_are_cut() {
        let long = "x".repeat(500);
        let text = changes(Some(&ext("A", "x")), Some(&ext(&long, "x")));
        assert!(text.chars().count() < 300, "{text}");
        assert!(text.ends_with('…') || text.contains("…"));
    }

    #[test]
    fn an_entry_is_bounded_and_names_the_request() {
        let ctx = AuditContext::new(
            AuditActor::default(),
            "198.18.0.21".into(),
            "PUT /api/v1/extensions/1001".into(),
            2,
        );
        let e = ctx.entry("admin".into(), Some(&"y".repeat(5000)), 200);
        assert!(e.action.starts_with("PUT /api/v1/extensions/1001: yyy"));
        assert_eq!(e.action.chars().count(), MAX_ACTION);
        assert_eq!((e.actor.as_str(), e.node_id), ("admin", 2));
        assert_eq!(
            ctx.entry("a".into(), None, 204).action,
            "PUT /api/v1/extensions/1001"
        );
    }
}
