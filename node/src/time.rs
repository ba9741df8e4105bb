use std::time::{SystemTime, UNIX_EPOCH};

use storage::model::UnixMillis;

/// Wall-clock time stamped into commands by the proposer (applying them stays deterministic).
pub(crate) fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
