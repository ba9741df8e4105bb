//! Helpers shared by the integration tests: a store on a temporary directory and sample commands.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a different subset"
)]

use std::collections::BTreeSet;
use std::path::Path;

use openraft::storage::{RaftLogStorageExt, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership};
use pbx_storage::model::{
    Extension, MemberRecord, NodeAddr, Role, Setting, SipCredentials, UserAccount,
};
use pbx_storage::{Command, LogStore, Response, StateMachineStore, StateReader, TypeConfig};
use tempfile::TempDir;

pub struct Store {
    pub log: LogStore,
    pub sm: StateMachineStore,
    pub reader: StateReader,
}

pub fn open(dir: &Path) -> Store {
    let (log, sm, reader) = pbx_storage::open(dir).unwrap();
    Store { log, sm, reader }
}

pub fn fresh() -> (TempDir, Store) {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path());
    (dir, store)
}

pub fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

pub fn normal(term: u64, index: u64, command: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(command),
    }
}

pub fn blank(term: u64, index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Blank,
    }
}

pub fn membership(term: u64, index: u64, voters: &[u64]) -> Entry<TypeConfig> {
    let voters: BTreeSet<u64> = voters.iter().copied().collect();
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Membership(Membership::new(vec![voters], None)),
    }
}

pub fn ext(number: &str) -> Extension {
    Extension {
        number: number.into(),
        display_name: format!("Extension {number}"),
        credentials: SipCredentials {
            username: number.into(),
            realm: "pbx.test".into(),
            ha1_md5: "0".repeat(32),
            ha1_sha256: "1".repeat(64),
            changed_at: 1_700_000_000_000,
        },
        permission_group: "internal".into(),
        enabled: true,
        created_at: 1_700_000_000_000,
        updated_at: 1_700_000_000_000,
    }
}

pub fn user(name: &str) -> UserAccount {
    UserAccount {
        username: name.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role: Role::User,
        extension: None,
        password_changed_at: 1,
        created_at: 1,
    }
}

pub fn setting(key: &str, value: &str) -> Setting {
    Setting {
        key: key.into(),
        value: value.into(),
        updated_at: 1,
    }
}

pub fn member(node_id: u64) -> MemberRecord {
    MemberRecord {
        node_id,
        name: format!("node{node_id}"),
        addr: NodeAddr {
            raft_addr: format!("198.18.0.{node_id}:7000"),
            api_addr: format!("198.18.0.{node_id}:8443"),
        },
        joined_at: 1,
    }
}

/// Appends `entries` to the log (waiting for the flush) and applies them.
pub async fn append_and_apply(store: &mut Store, entries: Vec<Entry<TypeConfig>>) -> Vec<Response> {
    store.log.blocking_append(entries.clone()).await.unwrap();
    store.sm.apply(entries).await.unwrap()
}
