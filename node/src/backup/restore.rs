//! `pbx cluster restore`: a fresh node becomes the first member of a cluster holding everything a
//! backup archive holds.
//!
//! The archive is read and checked whole before anything is written to the node (a staging
//! directory beside its data directory holds it meanwhile, removed either way): a wrong
//! passphrase, a damaged or cut file, or one from a newer pbx leaves the node as it was. Then the
//! node starts a single-member cluster, puts the audio files in its own store, and proposes the
//! state's rows through Raft, so the nodes that join next replicate them like any entry. The old
//! cluster's members, registrations, calls and sessions are left out (`storage::backup`); its
//! identity, SIP realm, secrets, accounts and their passwords are kept, so phones register with
//! their old secrets and admins sign in with their old passwords.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use cluster::Cluster;
use storage::audio::AudioFile;
use storage::backup::{StateImport, restorable};
use storage::model::ClusterRecord;
use storage::{Command, Response, Table};

use super::archive::{ArchiveHeader, ArchiveReader, EntryKind, read_header};
use crate::config::NodeConfig;
use crate::run::cluster_config;
use crate::time::now_millis;

/// Bytes of rows per Raft entry: far below the frame limit, big enough to restore quickly.
const BATCH_BYTES: usize = 256 * 1024;

/// An audio file unpacked into the staging directory: id, SHA-256 (hex), size.
type StagedAudio = (String, String, u64);

/// Rows of one table waiting to be proposed together, and their size in bytes.
type Batch = (Table, Vec<(String, Vec<u8>)>, usize);

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub header: ArchiveHeader,
    pub cluster_id: String,
    pub rows: u64,
    pub skipped_rows: u64,
    pub audio_files: u64,
    /// Audio index entries left out because the archive has no bytes for them (the file was
    /// deleted while the backup was made).
    pub dropped_audio: u64,
    pub extensions: u64,
}

/// Restores `archive` onto the fresh node of `cfg`.
pub async fn restore(
    cfg: &NodeConfig,
    archive: &Path,
    passphrase: &str,
) -> anyhow::Result<Restored> {
    let data_dir = &cfg.data_dir;
    if data_dir.exists()
        && std::fs::read_dir(data_dir)
            .with_context(|| format!("reading {}", data_dir.display()))?
            .next()
            .is_some()
    {
        anyhow::bail!(
            "{} already holds data: a restore needs a fresh node (new data directory)",
            data_dir.display()
        );
    }
    let staging = Staging::new(data_dir)?;
    let (header, audio) = {
        let archive = archive.to_owned();
        let dir = staging.0.clone();
        let passphrase = passphrase.to_owned();
        tokio::task::spawn_blocking(move || unpack(&archive, &passphrase, &dir))
            .await
            .context("unpacking the archive")??
    };

    let cluster = Cluster::start(cluster_config(cfg)?, data_dir)
        .await
        .context("opening the node's store")?;
    let result = load(&cluster, cfg, &staging.0, header, &audio).await;
    let closed = cluster.shutdown().await;
    if result.is_err() {
        // The directory was fresh: a half-restored node is worth less than none.
        if let Err(e) = std::fs::remove_dir_all(data_dir) {
            tracing::warn!(dir = %data_dir.display(), error = %e, "could not remove the half-restored data");
        }
    }
    closed.context("closing the node's store")?;
    result
}

/// Reads the whole archive into `dir` (`state` and `audio/{id}`), checking everything.
fn unpack(
    archive: &Path,
    passphrase: &str,
    dir: &Path,
) -> anyhow::Result<(ArchiveHeader, Vec<StagedAudio>)> {
    let open = || -> anyhow::Result<BufReader<std::fs::File>> {
        Ok(BufReader::new(std::fs::File::open(archive).with_context(
            || format!("opening {}", archive.display()),
        )?))
    };
    // The header alone first: a newer archive is refused before the passphrase is worked on.
    read_header(open()?)?;
    let mut reader = ArchiveReader::open(open()?, passphrase)?;
    let header = reader.header().clone();
    std::fs::create_dir_all(dir.join("audio"))?;
    let mut state = false;
    let mut audio = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        match entry.kind {
            EntryKind::State if !state => {
                let out = std::fs::File::create(dir.join("state"))?;
                reader.copy_entry(&entry, std::io::BufWriter::new(out))?;
                state = true;
            }
            EntryKind::Audio if cluster::blob_dir::valid_id(&entry.name) => {
                let out = std::fs::File::create(dir.join("audio").join(&entry.name))?;
                reader.copy_entry(&entry, std::io::BufWriter::new(out))?;
                audio.push((entry.name.clone(), hex::encode(entry.sha256), entry.size));
            }
            kind => anyhow::bail!(
                "the archive is damaged: unexpected {kind:?} entry {:?}",
                entry.name
            ),
        }
    }
    anyhow::ensure!(state, "the archive is damaged: it holds no state");
    // The state is checked whole too (framing, count, checksum) before the node is touched.
    let mut import = StateImport::new(BufReader::new(std::fs::File::open(dir.join("state"))?))?;
    while import.next_row()?.is_some() {}
    Ok((header, audio))
}

async fn load(
    cluster: &Cluster,
    cfg: &NodeConfig,
    staging: &Path,
    header: ArchiveHeader,
    audio: &[StagedAudio],
) -> anyhow::Result<Restored> {
    anyhow::ensure!(
        !cluster.is_initialized(),
        "node {} already belongs to a cluster",
        cfg.node_id
    );
    cluster
        .initialize()
        .await
        .context("initialising Raft membership")?;
    let me = cfg.node_id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cluster.current_leader() != Some(me) {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no leader elected within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let blobs = cluster.audio_dir();
    for (id, sha256, size) in audio {
        let mut file = tokio::fs::File::open(staging.join("audio").join(id)).await?;
        blobs
            .write(id, sha256, *size, &mut file)
            .await
            .with_context(|| format!("storing audio file {id}"))?;
    }

    let mut import = StateImport::new(BufReader::new(std::fs::File::open(staging.join("state"))?))?;
    let mut restored = Restored {
        header,
        cluster_id: String::new(),
        rows: 0,
        skipped_rows: 0,
        audio_files: audio.len() as u64,
        dropped_audio: 0,
        extensions: 0,
    };
    let mut batch: Option<Batch> = None;
    while let Some(row) = import.next_row()? {
        if !restorable(row.table, &row.key) {
            restored.skipped_rows += 1;
            continue;
        }
        let mut value = row.value;
        match row.table {
            Table::AudioFiles => {
                let mut file: AudioFile = storage::codec::decode(&value)?;
                if !audio.iter().any(|(id, _, _)| *id == file.id) {
                    restored.dropped_audio += 1;
                    continue;
                }
                // This node holds every file now; the others fetch them once they join.
                file.holders = vec![me];
                value = storage::codec::encode(&file)?;
            }
            Table::Extensions => restored.extensions += 1,
            Table::Cluster if row.key == ClusterRecord::KEY => {
                let record: ClusterRecord = storage::codec::decode(&value)?;
                restored.cluster_id = record.cluster_id;
            }
            _ => {}
        }
        let size = row.key.len() + value.len();
        if let Some((table, rows, bytes)) = &mut batch
            && *table == row.table
            && *bytes + size <= BATCH_BYTES
        {
            rows.push((row.key, value));
            *bytes += size;
            restored.rows += 1;
            continue;
        }
        if let Some((table, rows, _)) = batch.take() {
            propose_rows(cluster, table, rows).await?;
        }
        batch = Some((row.table, vec![(row.key, value)], size));
        restored.rows += 1;
    }
    if let Some((table, rows, _)) = batch.take() {
        propose_rows(cluster, table, rows).await?;
    }
    anyhow::ensure!(
        !restored.cluster_id.is_empty(),
        "the archive's state has no cluster record"
    );

    // This node as the first member; the VIP of this node's config, when it has one, as `init`.
    let commands = crate::run::first_member(cfg, now_millis());
    for cmd in commands {
        let kind = cmd.kind();
        let resp = cluster
            .propose(cmd)
            .await
            .with_context(|| format!("writing {kind}"))?;
        anyhow::ensure!(resp == Response::Ok, "{kind} refused: {resp:?}");
    }
    cluster
        .snapshot_and_purge(Duration::from_secs(60))
        .await
        .context("snapshotting the restored state")?;
    Ok(restored)
}

async fn propose_rows(
    cluster: &Cluster,
    table: Table,
    rows: Vec<(String, Vec<u8>)>,
) -> anyhow::Result<()> {
    let cmd = Command::RestoreRows {
        table: table.tag(),
        rows,
    };
    let resp = cluster
        .propose(cmd)
        .await
        .with_context(|| format!("restoring rows of {}", table.cf_name()))?;
    anyhow::ensure!(
        resp == Response::Ok,
        "rows of {} refused: {resp:?}",
        table.cf_name()
    );
    Ok(())
}

/// A directory beside the data directory for the unpacked archive, removed when dropped.
struct Staging(PathBuf);

impl Staging {
    fn new(data_dir: &Path) -> anyhow::Result<Self> {
        let name = data_dir
            .file_name()
            .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
        let parent = data_dir.parent().unwrap_or(Path::new("."));
        let path = parent.join(format!(".{name}.restore-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "could not remove the restore's staging directory");
        }
    }
}
