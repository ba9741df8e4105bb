//! Versions of the Raft wire protocol, so that nodes of two builds work together during a rolling
//! upgrade.
//!
//! Each version is an ALPN protocol, `pbx-raft/{n}`. A node offers every version it speaks, newest
//! first, and the answering side picks the newest both speak (rustls picks by the server's order):
//! an upgraded node talks to an older one in the older one's version. What a version adds is new
//! kinds of commands in the log (`storage::Command::wire_version`); the leader proposes one only
//! once every member speaks its version ([`cluster_version`]), so an older node is never sent an
//! entry it cannot decode. Each node records the version it speaks in the replicated settings
//! ([`wire_key`]) at start, so the leader knows a member's version while it is down; a live
//! connection's negotiated version takes precedence (it is what the peer runs now).
//!
//! Version 1: every command up to the contacts. Version 2: backups, mailbox names, devices and
//! firmware (and audio files of kind `firmware`).

/// The newest version this build speaks.
pub const WIRE_VERSION: u32 = 2;
/// The oldest version this build speaks.
pub const MIN_WIRE_VERSION: u32 = 1;

const ALPN_PREFIX: &str = "pbx-raft/";

/// The ALPN protocols of the versions this node speaks (up to `max`), newest first.
pub(crate) fn raft_alpns(max: u32) -> Vec<Vec<u8>> {
    (MIN_WIRE_VERSION..=max.min(WIRE_VERSION))
        .rev()
        .map(|v| format!("{ALPN_PREFIX}{v}").into_bytes())
        .collect()
}

/// The version an ALPN protocol names, if it is a Raft one.
pub(crate) fn of_alpn(alpn: &[u8]) -> Option<u32> {
    std::str::from_utf8(alpn)
        .ok()?
        .strip_prefix(ALPN_PREFIX)?
        .parse()
        .ok()
}

/// The setting under which node `id` records the wire version it speaks.
pub fn wire_key(id: storage::NodeId) -> String {
    format!("node.{id}.wire")
}

/// The version every member speaks: the lowest of this node's and each other member's (its live
/// connection's, else what it recorded, else 1: a node that never recorded one predates
/// versioning).
pub(crate) fn cluster_version(others: impl IntoIterator<Item = (Option<u32>, Option<u32>)>) -> u32 {
    others
        .into_iter()
        .map(|(live, recorded)| live.or(recorded).unwrap_or(MIN_WIRE_VERSION))
        .fold(WIRE_VERSION, u32::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpns_are_offered_newest_first_and_read_back() {
        let alpns = raft_alpns(WIRE_VERSION);
        assert_eq!(alpns.first().map(Vec::as_slice), Some(&b"pbx-raft/2"[..]));
        assert_eq!(alpns.last().map(Vec::as_slice), Some(&b"pbx-raft/1"[..]));
        assert_eq!(of_alpn(b"pbx-raft/2"), Some(2));
        assert_eq!(of_alpn(b"pbx-blob/1"), None);
        assert_eq!(of_alpn(b"pbx-raft/x"), None);
        // A node held back to protocol 1 offers only that.
        assert_eq!(raft_alpns(1), vec![b"pbx-raft/1".to_vec()]);
    }

    #[test]
    fn the_cluster_speaks_what_its_oldest_member_speaks() {
        assert_eq!(cluster_version([]), WIRE_VERSION);
        assert_eq!(cluster_version([(Some(2), None), (None, Some(2))]), 2);
        // A live connection says what the peer runs now, whatever it recorded before.
        assert_eq!(cluster_version([(Some(1), Some(2))]), 1);
        // A member that never recorded a version predates versioning.
        assert_eq!(cluster_version([(Some(2), None), (None, None)]), 1);
    }
}
