//! The replicated state as a backup holds it, and loading it back into a fresh cluster.
//!
//! An export is a snapshot file (the format of `snapshot_file`, with its row count and checksum)
//! written from one RocksDB snapshot: every table as of one applied log index, whatever is applied
//! meanwhile. A restore reads one back ([`StateImport`]) and proposes its rows through Raft
//! ([`crate::Command::RestoreRows`]), so that they are in the log, and in the snapshots, that every
//! node joining the new cluster replicates.
//!
//! What a restore leaves out is the state of the old cluster's running machinery, which means
//! nothing to new hosts: its members, the phones' current registrations (they register again),
//! calls, subscriptions, conference participants, trunk registration status, web sign-in sessions,
//! pending hang-ups and the versions the old nodes reported.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::command::{Response, Txn, table_name};
use crate::model::UnixMillis;
use crate::snapshot_file::SnapshotReader;
use crate::{NodeId, Record, StateReader, StorageError, Table};

/// Whether a backup is being made, was made, or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    Running,
    Ok,
    Failed,
}

/// One backup of the cluster, listed by the API; its archive is a file on the node that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// `YYYYMMDDTHHMMSSZ-{node}` for one made on demand, `scheduled-{slot}` for a scheduled one
    /// (the slot's time: claiming it is how one node, not each, makes it).
    pub id: String,
    pub node_id: NodeId,
    /// `manual` or `scheduled`.
    pub trigger: String,
    pub status: BackupStatus,
    pub started_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
    /// The log index the state in it is as of.
    pub log_index: u64,
    /// Archive size in bytes and its SHA-256 (hex), once written.
    pub size: u64,
    pub sha256: String,
    pub audio_files: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// Where the archive was uploaded (`sftp://user@host:port/path/file`), when a remote
    /// destination is configured and the upload succeeded.
    pub remote: Option<String>,
    /// Why the upload failed (the local archive is kept).
    pub remote_error: Option<String>,
}

impl BackupRecord {
    /// Longest id accepted.
    pub const MAX_ID: usize = 64;

    /// Ids are file names: letters, digits, `-` and `_` only.
    pub fn valid_id(id: &str) -> bool {
        !id.is_empty()
            && id.len() <= Self::MAX_ID
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
}

impl Record for BackupRecord {
    const TABLE: Table = Table::Backups;
    fn key(&self) -> String {
        self.id.clone()
    }
}

/// When scheduled backups are made, in the cluster's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSchedule {
    /// `None`: every day; `Some(0..=6)`: that weekday only, Monday = 0.
    pub weekday: Option<u8>,
    pub hour: u8,
    pub minute: u8,
}

/// How the cluster makes backups: one record, set by an admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSettings {
    /// Archives are encrypted with a key derived from it. Needed in clear by whichever node makes
    /// a scheduled backup; never returned by the API.
    pub passphrase: String,
    /// Successful backups kept; older ones are deleted with their files.
    pub keep: u32,
    pub schedule: Option<BackupSchedule>,
    /// Where each archive is copied after it is written.
    pub sftp: Option<SftpTarget>,
    pub updated_at: UnixMillis,
}

/// A remote directory on an SSH server that archives are uploaded to over SFTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SftpTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The remote directory (absolute), which must exist.
    pub path: String,
    /// The client's private key (OpenSSH format); never returned by the API.
    pub private_key: String,
    /// The server's public host key (`ssh-ed25519 AAAA…`): the upload refuses any other server.
    pub host_key: String,
}

impl BackupSettings {
    pub const KEY: &'static str = "backup_settings";
}

impl Record for BackupSettings {
    const TABLE: Table = Table::Cluster;
    fn key(&self) -> String {
        Self::KEY.to_owned()
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exported {
    /// The log index the state is as of (0 for a cluster with nothing applied).
    pub last_index: u64,
    pub rows: u64,
}

impl StateReader {
    /// Writes every table as of one applied log index to `out`, in the snapshot file format.
    pub fn export<W: Write>(&self, out: W) -> Result<(Exported, W), StorageError> {
        let (meta, rows, out) = crate::state_machine::export(self.db(), out)?;
        let last_index = meta.last_log_id.map_or(0, |id| id.index);
        Ok((Exported { last_index, rows }, out))
    }
}

/// Whether a row of `table` under `key` is carried into a restored cluster (see the module docs).
pub fn restorable(table: Table, key: &str) -> bool {
    match table {
        Table::Members
        | Table::Bindings
        | Table::Calls
        | Table::TrunkStatus
        | Table::OutboundActive
        | Table::WebSessions
        | Table::HangupRequests
        | Table::Subscriptions
        | Table::ConferenceParticipants
        // The old cluster's archives are files on its nodes.
        | Table::Backups => false,
        // `node.{id}.version` and `.wire`: what each old node reported running.
        Table::Settings => {
            !(key.starts_with("node.") && (key.ends_with(".version") || key.ends_with(".wire")))
        }
        _ => true,
    }
}

/// Reads an exported state back, row by row, checking it as a snapshot install does (framing,
/// bounds, row count, checksum); a damaged export fails at the row where it stops making sense,
/// and at the end for a wrong count or checksum.
pub struct StateImport<R: Read> {
    reader: SnapshotReader<R>,
    last_index: u64,
}

/// One row of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRow {
    pub table: Table,
    pub key: String,
    pub value: Vec<u8>,
}

impl<R: Read> StateImport<R> {
    pub fn new(input: R) -> Result<Self, StorageError> {
        let (reader, meta) = SnapshotReader::new(input)?;
        Ok(Self {
            reader,
            last_index: meta.last_log_id.map_or(0, |id| id.index),
        })
    }

    /// The log index the exported state is as of.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// The next row; `None` once the end record has been read and checked.
    pub fn next_row(&mut self) -> Result<Option<ImportedRow>, StorageError> {
        let Some(row) = self.reader.next_row()? else {
            return Ok(None);
        };
        let key = String::from_utf8(row.key)
            .map_err(|_| StorageError::corrupt("exported row with a key that is not UTF-8"))?;
        Ok(Some(ImportedRow {
            table: row.table,
            key,
            value: row.value,
        }))
    }
}

/// Applies [`crate::Command::RestoreRows`]: all rows or none.
pub(crate) fn restore_rows(txn: &mut dyn Txn, tag: u8, rows: &[(String, Vec<u8>)]) -> Response {
    let Some(table) = Table::from_tag(tag) else {
        return Response::Invalid {
            table: format!("tag {tag}"),
            key: String::new(),
            reason: "table: unknown table".to_owned(),
        };
    };
    if let Some((key, _)) = rows.iter().find(|(key, _)| !restorable(table, key)) {
        return Response::Invalid {
            table: table_name(table),
            key: key.clone(),
            reason: "table: not carried into a restored cluster".to_owned(),
        };
    }
    for (key, value) in rows {
        txn.put(table, key, value.clone());
    }
    Response::Ok
}
