//! Which music a held caller hears: the newest `music_on_hold` file of the audio store, decoded
//! once, or the PBX's own tune when there is none (or this node has no copy yet).
//!
//! The choice is refreshed in the background, so starting music on a call never waits for a disk
//! or a scan of the index.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cluster::Cluster;
use pbx_media::wav::{PromptLimits, read_prompt};
use storage::audio::{AudioFile, AudioKind};

/// How often the library looks for newer music.
const REFRESH: Duration = Duration::from_secs(5);
/// What an uploaded file may be (the API checked it already; this guards a corrupt copy).
const LIMITS: PromptLimits = PromptLimits {
    max_bytes: 16 * 1024 * 1024,
    max_seconds: 600,
};

/// The music of one node's calls.
pub(crate) struct MusicLibrary {
    cluster: Cluster,
    /// The file playing (its id) and its samples; empty samples: the built-in tune.
    current: Mutex<(Option<String>, Arc<[i16]>)>,
}

impl MusicLibrary {
    pub(crate) fn new(cluster: Cluster) -> Arc<Self> {
        Arc::new(Self {
            cluster,
            current: Mutex::new((None, Arc::from(Vec::new()))),
        })
    }

    /// The samples to play (empty: the built-in tune).
    pub(crate) fn current(&self) -> Arc<[i16]> {
        Arc::clone(&self.lock().1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Option<String>, Arc<[i16]>)> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Looks for newer music every few seconds until the task is aborted: only when the audio
    /// index changed, or the music to play was not here yet (a scan of the index costs as many
    /// reads as it has files).
    pub(crate) async fn refresh_every(self: Arc<Self>) {
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = None;
        loop {
            tick.tick().await;
            let version = self.cluster.reader().audio_version();
            if seen == Some(version) {
                continue;
            }
            if self.refresh().await {
                seen = Some(version);
            }
        }
    }

    /// Whether the music now playing is the newest (false: its copy is not here yet).
    async fn refresh(&self) -> bool {
        let newest = match self.cluster.reader().list::<AudioFile>() {
            Ok(files) => files
                .into_iter()
                .filter(|f| f.kind == AudioKind::MusicOnHold)
                .max_by_key(|f| f.created_at),
            Err(e) => {
                tracing::debug!(error = %e, "music on hold: index not read");
                return false;
            }
        };
        let wanted = newest.as_ref().map(|f| f.id.clone());
        if self.lock().0 == wanted {
            return true;
        }
        let Some(file) = newest else {
            tracing::info!("music on hold: the built-in tune");
            *self.lock() = (None, Arc::from(Vec::new()));
            return true;
        };
        let Ok(path) = self.cluster.audio_dir().path(&file.id) else {
            return true;
        };
        // Not here yet: the catch-up fetches it, and a later look picks it up.
        let Ok(bytes) = tokio::fs::read(&path).await else {
            return false;
        };
        match read_prompt(&bytes, LIMITS) {
            Ok(pcm) => {
                tracing::info!(audio = %file.id, name = %file.name, seconds = pcm.len() / 8000, "music on hold: uploaded music");
                *self.lock() = (Some(file.id), Arc::from(pcm));
                true
            }
            Err(e) => {
                tracing::warn!(audio = %file.id, error = %e, "music on hold: file not playable; keeping what plays");
                // Not tried again until newer music is uploaded.
                self.lock().0 = Some(file.id);
                true
            }
        }
    }
}
