//! The state machine's tables. Each table is a RocksDB column family of `key -> codec(value)`.
//!
//! Adding a table: add a variant here (and its column family name), a model type implementing
//! [`Record`], and the commands that write it.

use std::path::Path;

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, Options, ReadOptions, WriteOptions,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StorageError;

/// A table of the replicated state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Extensions,
    Users,
    Settings,
    Cluster,
    Members,
    Bindings,
    Calls,
    Cdrs,
    Firewall,
    Bans,
    Audit,
    Events,
    Recipients,
    Trunks,
    TrunkStatus,
    PermissionGroups,
    InboundRoutes,
    OutboundRoutes,
    TollCounters,
    OutboundActive,
    CdrRoutes,
    WebAccounts,
    WebRoles,
    WebSessions,
    HangupRequests,
    /// CDR keys by extension (`{extension}/{cdr key}`), written with each CDR.
    CdrsByExtension,
    /// Per extension: do-not-disturb and forwarding.
    CallHandling,
    RingGroups,
    /// SUBSCRIBE dialogs for busy lamps and presence.
    Subscriptions,
    /// Call pickup groups, by name.
    PickupGroups,
    /// The index of the cluster's audio files, by id.
    AudioFiles,
    /// Per extension: whether its calls are recorded.
    RecordingPolicies,
    /// Business hours and holidays choosing an inbound call's destination, by name.
    TimeConditions,
    /// Recordings by the call they are of (`{call_id}/{audio id}`), written with each file.
    RecordingsByCall,
    /// IVR menus (auto attendants), by number.
    Ivrs,
    /// Voicemail boxes, by extension.
    Mailboxes,
    /// Messages left in mailboxes (`{mailbox}/{audio id}`).
    VoicemailMessages,
    /// Conference rooms, by number.
    ConferenceRooms,
    /// Who is in a conference room now (`{room}/{participant id}`).
    ConferenceParticipants,
    /// Per trunk, inbound route and outbound route: whether its calls are recorded
    /// (`trunk/{name}`, `inbound/{name}`, `outbound/{name}`).
    RouteRecordingPolicies,
    /// SIP capture targets (`ext/{number}`, `trunk/{name}`), each with its expiry.
    CaptureTargets,
    /// Phonebook contacts: `company/{id}` and `personal/{extension}/{id}`.
    Contacts,
    /// Contacts by normalised number (`{number}/{contact key}`), with the contact's name.
    ContactsByNumber,
    /// Provisioned desk phones, by MAC address.
    Devices,
    /// Devices by extension (`{extension}/{mac}`), written with each device.
    DevicesByExtension,
    /// The provisioning policy (transport, NTP, allowed networks): one record.
    ProvisioningSettings,
    /// Firmware images per brand and model (`{brand}/{model}`), each an audio-store file.
    Firmware,
    /// Mailboxes' name greetings, by extension (beside [`Table::Mailboxes`]: a stored mailbox's
    /// encoding stays as it was).
    MailboxNames,
    /// The cluster's backup archives, by id (each file is on the node that made it).
    Backups,
}

impl Table {
    /// Every table, in a fixed order (snapshots are written in this order).
    pub const ALL: [Self; 49] = [
        Self::Extensions,
        Self::Users,
        Self::Settings,
        Self::Cluster,
        Self::Members,
        Self::Bindings,
        Self::Calls,
        Self::Cdrs,
        Self::Firewall,
        Self::Bans,
        Self::Audit,
        Self::Events,
        Self::Recipients,
        Self::Trunks,
        Self::TrunkStatus,
        Self::PermissionGroups,
        Self::InboundRoutes,
        Self::OutboundRoutes,
        Self::TollCounters,
        Self::OutboundActive,
        Self::CdrRoutes,
        Self::WebAccounts,
        Self::WebRoles,
        Self::WebSessions,
        Self::HangupRequests,
        Self::CdrsByExtension,
        Self::CallHandling,
        Self::RingGroups,
        Self::Subscriptions,
        Self::PickupGroups,
        Self::AudioFiles,
        Self::RecordingPolicies,
        Self::TimeConditions,
        Self::RecordingsByCall,
        Self::Ivrs,
        Self::Mailboxes,
        Self::VoicemailMessages,
        Self::ConferenceRooms,
        Self::ConferenceParticipants,
        Self::RouteRecordingPolicies,
        Self::CaptureTargets,
        Self::Contacts,
        Self::ContactsByNumber,
        Self::Devices,
        Self::DevicesByExtension,
        Self::ProvisioningSettings,
        Self::Firmware,
        Self::MailboxNames,
        Self::Backups,
    ];

    /// Column family holding the table.
    pub const fn cf_name(self) -> &'static str {
        match self {
            Self::Extensions => "t_extensions",
            Self::Users => "t_users",
            Self::Settings => "t_settings",
            Self::Cluster => "t_cluster",
            Self::Members => "t_members",
            Self::Bindings => "t_bindings",
            Self::Calls => "t_calls",
            Self::Cdrs => "t_cdrs",
            Self::Firewall => "t_firewall",
            Self::Bans => "t_bans",
            Self::Audit => "t_audit",
            Self::Events => "t_events",
            Self::Recipients => "t_recipients",
            Self::Trunks => "t_trunks",
            Self::TrunkStatus => "t_trunk_status",
            Self::PermissionGroups => "t_permission_groups",
            Self::InboundRoutes => "t_inbound_routes",
            Self::OutboundRoutes => "t_outbound_routes",
            Self::TollCounters => "t_toll_counters",
            Self::OutboundActive => "t_outbound_active",
            Self::CdrRoutes => "t_cdr_routes",
            Self::WebAccounts => "t_web_accounts",
            Self::WebRoles => "t_web_roles",
            Self::WebSessions => "t_web_sessions",
            Self::HangupRequests => "t_hangup_requests",
            Self::CdrsByExtension => "t_cdrs_by_extension",
            Self::CallHandling => "t_call_handling",
            Self::RingGroups => "t_ring_groups",
            Self::Subscriptions => "t_subscriptions",
            Self::PickupGroups => "t_pickup_groups",
            Self::AudioFiles => "t_audio_files",
            Self::RecordingPolicies => "t_recording_policies",
            Self::TimeConditions => "t_time_conditions",
            Self::RecordingsByCall => "t_recordings_by_call",
            Self::Ivrs => "t_ivrs",
            Self::Mailboxes => "t_mailboxes",
            Self::VoicemailMessages => "t_voicemail_messages",
            Self::ConferenceRooms => "t_conference_rooms",
            Self::ConferenceParticipants => "t_conference_participants",
            Self::RouteRecordingPolicies => "t_route_recording_policies",
            Self::CaptureTargets => "t_capture_targets",
            Self::Contacts => "t_contacts",
            Self::ContactsByNumber => "t_contacts_by_number",
            Self::Devices => "t_devices",
            Self::DevicesByExtension => "t_devices_by_extension",
            Self::ProvisioningSettings => "t_provisioning_settings",
            Self::Firmware => "t_firmware",
            Self::MailboxNames => "t_mailbox_names",
            Self::Backups => "t_backups",
        }
    }

    /// Stable one-byte tag used in snapshot files.
    pub const fn tag(self) -> u8 {
        match self {
            Self::Extensions => 1,
            Self::Users => 2,
            Self::Settings => 3,
            Self::Cluster => 4,
            Self::Members => 5,
            Self::Bindings => 6,
            Self::Calls => 7,
            Self::Cdrs => 8,
            Self::Firewall => 9,
            Self::Bans => 10,
            Self::Audit => 11,
            Self::Events => 12,
            Self::Recipients => 13,
            Self::Trunks => 14,
            Self::TrunkStatus => 15,
            Self::PermissionGroups => 16,
            Self::InboundRoutes => 17,
            Self::OutboundRoutes => 18,
            Self::TollCounters => 19,
            Self::OutboundActive => 20,
            Self::CdrRoutes => 21,
            Self::WebAccounts => 22,
            Self::WebRoles => 23,
            Self::WebSessions => 24,
            Self::HangupRequests => 25,
            Self::CdrsByExtension => 26,
            Self::CallHandling => 27,
            Self::RingGroups => 28,
            Self::Subscriptions => 29,
            Self::PickupGroups => 30,
            Self::AudioFiles => 31,
            Self::RecordingPolicies => 32,
            Self::TimeConditions => 33,
            Self::RecordingsByCall => 34,
            Self::Ivrs => 35,
            Self::Mailboxes => 36,
            Self::VoicemailMessages => 37,
            Self::ConferenceRooms => 38,
            Self::ConferenceParticipants => 39,
            Self::RouteRecordingPolicies => 40,
            Self::CaptureTargets => 41,
            Self::Contacts => 42,
            Self::ContactsByNumber => 43,
            Self::Devices => 44,
            Self::DevicesByExtension => 45,
            Self::ProvisioningSettings => 46,
            Self::Firmware => 47,
            Self::MailboxNames => 48,
            Self::Backups => 50,
        }
    }

    pub fn from_tag(tag: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.tag() == tag)
    }
}

/// A value stored in a table under a string key.
pub trait Record: Serialize + DeserializeOwned {
    const TABLE: Table;
    fn key(&self) -> String;
}

/// Column family of the Raft vote, last purged log id and committed log id.
pub(crate) const CF_RAFT_META: &str = "raft_meta";
/// Column family of the Raft log, keyed by big-endian index so that keys sort by index.
pub(crate) const CF_RAFT_LOG: &str = "raft_log";
/// Column family of the state machine's own metadata (last applied, membership, snapshots).
pub(crate) const CF_SM_META: &str = "sm_meta";

/// Opens (or creates) the database with every column family the store uses.
/// The layout of the stored tables this build reads and writes, kept in `sm_meta`. 1: every store
/// before it was recorded. 2: the tables of backups, devices, firmware and mailbox names (new column
/// families: nothing to convert).
pub const SCHEMA_VERSION: u32 = 2;
const KEY_SCHEMA: &[u8] = b"schema_version";

/// Refuses a store of a newer schema; brings an older one to [`SCHEMA_VERSION`] (running the
/// migrations between, of which there are none yet) and records it.
pub(crate) fn check_schema(db: &DB) -> Result<(), StorageError> {
    let meta = cf(db, CF_SM_META)?;
    let found = match db.get_cf(meta, KEY_SCHEMA)? {
        Some(bytes) => crate::codec::decode::<u32>(&bytes)?,
        None => 1,
    };
    if found > SCHEMA_VERSION {
        return Err(StorageError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < SCHEMA_VERSION || db.get_cf(meta, KEY_SCHEMA)?.is_none() {
        db.put_cf_opt(
            meta,
            KEY_SCHEMA,
            crate::codec::encode(&SCHEMA_VERSION)?,
            &synced(),
        )?;
        tracing::info!(from = found, to = SCHEMA_VERSION, "storage schema recorded");
    }
    Ok(())
}

/// Records `version` as the store's schema, for tests of [`check_schema`].
#[cfg(test)]
pub(crate) fn set_schema(db: &DB, version: u32) -> Result<(), StorageError> {
    db.put_cf_opt(
        cf(db, CF_SM_META)?,
        KEY_SCHEMA,
        crate::codec::encode(&version)?,
        &synced(),
    )?;
    Ok(())
}

pub fn open_db(dir: &Path) -> Result<DB, StorageError> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("db");
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(DBCompressionType::Lz4);

    let mut names: Vec<String> = [CF_RAFT_META, CF_RAFT_LOG, CF_SM_META]
        .into_iter()
        .chain(Table::ALL.into_iter().map(Table::cf_name))
        .map(str::to_owned)
        .collect();
    // RocksDB refuses to open a database without naming all of its column families: keep any that a
    // newer build added, so that a downgrade still opens.
    if let Ok(existing) = DB::list_cf(&opts, &path) {
        for name in existing {
            if name != rocksdb::DEFAULT_COLUMN_FAMILY_NAME && !names.contains(&name) {
                tracing::warn!(column_family = %name, "opening a column family this build does not use");
                names.push(name);
            }
        }
    }
    let descriptors = names.into_iter().map(|name| {
        let mut cf_opts = Options::default();
        cf_opts.set_compression_type(DBCompressionType::Lz4);
        ColumnFamilyDescriptor::new(name, cf_opts)
    });
    Ok(DB::open_cf_descriptors(&opts, &path, descriptors)?)
}

/// The handle of a column family that [`open_db`] created.
pub(crate) fn cf<'a>(db: &'a DB, name: &'static str) -> Result<&'a ColumnFamily, StorageError> {
    db.cf_handle(name)
        .ok_or(StorageError::MissingColumnFamily(name))
}

/// Read options for a scan of the keys that start with `prefix`: the iterator stops at the first key
/// past them instead of stepping into the next record's versions to find out. A key that is rewritten
/// often (a binding on every refresh) keeps each version in the memtable until it is flushed.
pub(crate) fn prefix_bounds(prefix: &[u8]) -> ReadOptions {
    let mut opts = ReadOptions::default();
    if let Some(end) = prefix_end(prefix) {
        opts.set_iterate_upper_bound(end);
    }
    opts
}

/// The smallest key greater than every key that starts with `prefix`; none when there is no such
/// key (an empty prefix, or one of only `0xff` bytes).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Write options that wait for the fsync: what openraft's durability contract needs.
pub(crate) fn synced() -> WriteOptions {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    opts
}

/// Runs a blocking RocksDB call off the async worker threads: a synced write waits for an fsync.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(StorageError::join)?
}

#[cfg(test)]
mod schema_tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    #[test]
    fn a_prefix_ends_before_the_first_key_past_it() {
        assert_eq!(prefix_end(b"ext/1001/"), Some(b"ext/10010".to_vec()));
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn a_bounded_scan_sees_every_key_of_its_prefix_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        let table = cf(&db, Table::Bindings.cf_name()).unwrap();
        for key in ["100", "1001", "1001\u{ff}x", "1002", "101"] {
            db.put_cf(table, key, b"v").unwrap();
        }
        let keys: Vec<String> = db
            .iterator_cf_opt(
                table,
                prefix_bounds(b"1001"),
                rocksdb::IteratorMode::From(b"1001", rocksdb::Direction::Forward),
            )
            .map(|item| String::from_utf8(item.unwrap().0.to_vec()).unwrap())
            .collect();
        assert_eq!(keys, ["1001", "1001\u{ff}x"]);
    }

    fn recorded(db: &DB) -> Option<u32> {
        db.get_cf(cf(db, CF_SM_META).unwrap(), KEY_SCHEMA)
            .unwrap()
            .map(|b| crate::codec::decode(&b).unwrap())
    }

    #[test]
    fn a_store_is_brought_to_this_schema_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        // A store from before the schema was recorded counts as 1 and is brought up.
        assert_eq!(recorded(&db), None);
        check_schema(&db).unwrap();
        assert_eq!(recorded(&db), Some(SCHEMA_VERSION));
        set_schema(&db, 1).unwrap();
        check_schema(&db).unwrap();
        assert_eq!(recorded(&db), Some(SCHEMA_VERSION));
        set_schema(&db, SCHEMA_VERSION + 1).unwrap();
        let err = check_schema(&db).unwrap_err();
        assert!(
            matches!(err, StorageError::NewerSchema { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err}"
        );
        assert!(err.to_string().contains("newer pbx"), "{err}");
        // Nothing was changed by the refusal.
        assert_eq!(recorded(&db), Some(SCHEMA_VERSION + 1));
    }
}
