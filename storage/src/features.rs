//! Call features an office configures: how each extension's incoming calls are handled
//! (do-not-disturb, forwarding), ring groups, and the feature codes phones dial to change them.
//! Replicated like the rest of the configuration, so whichever node owns the VIP handles a call the
//! same way, before and after a failover.

use serde::{Deserialize, Serialize};

use crate::model::{DialogLeg, UnixMillis};
use crate::tables::{Record, Table};

/// The longest a number a call may be forwarded to may be (`+` and digits).
pub const MAX_TARGET_LEN: usize = 32;
/// The most members a ring group may have.
pub const MAX_MEMBERS: usize = 32;
/// Bounds of the seconds a phone rings before a no-answer rule takes over.
pub const RING_SECS: std::ops::RangeInclusive<u32> = 5..=120;

/// Whether `number` may be a forwarding or fallback target: digits, with a leading `+` for an E.164
/// number, at most [`MAX_TARGET_LEN`] characters.
pub fn valid_target(number: &str) -> bool {
    let digits = number.strip_prefix('+').unwrap_or(number);
    !digits.is_empty()
        && number.len() <= MAX_TARGET_LEN
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// How an extension's incoming calls are handled; keyed by the extension's number. An extension
/// without one rings its phones until the call's ring timeout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallHandling {
    pub extension: String,
    /// Do not disturb: callers get busy, or the on-busy forward when one is set.
    pub dnd: bool,
    /// Every call goes to this number instead (an extension, a ring group or an outside number).
    pub forward_always: Option<String>,
    /// When every phone of the extension is busy (or do-not-disturb is on).
    pub forward_busy: Option<String>,
    /// When nobody answers within `no_answer_secs`.
    pub forward_no_answer: Option<String>,
    pub no_answer_secs: u32,
    /// When no phone of the extension is registered.
    pub forward_unregistered: Option<String>,
    pub updated_at: UnixMillis,
}

impl CallHandling {
    pub const DEFAULT_NO_ANSWER_SECS: u32 = 20;

    /// The handling of an extension that never set any.
    pub fn none(extension: &str) -> Self {
        Self {
            extension: extension.to_owned(),
            no_answer_secs: Self::DEFAULT_NO_ANSWER_SECS,
            ..Self::default()
        }
    }

    /// Every forwarding target set, for validation.
    pub fn targets(&self) -> impl Iterator<Item = &String> {
        [
            &self.forward_always,
            &self.forward_busy,
            &self.forward_no_answer,
            &self.forward_unregistered,
        ]
        .into_iter()
        .flatten()
    }
}

impl Record for CallHandling {
    const TABLE: Table = Table::CallHandling;
    fn key(&self) -> String {
        self.extension.clone()
    }
}

/// How a ring group rings its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RingStrategy {
    /// Every member's phones at once, for `ring_secs`.
    All,
    /// One member after the other, in order, `ring_secs` each; a busy or unregistered member is
    /// skipped at once.
    Hunt,
}

/// A number that rings a team; keyed by its number, which no extension may have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingGroup {
    pub number: String,
    pub name: String,
    pub strategy: RingStrategy,
    /// Extension numbers, in hunting order.
    pub members: Vec<String>,
    pub ring_secs: u32,
    /// Where the call goes when no member answers (an extension or another group); `None`: the
    /// caller hears that nobody answered.
    pub no_answer: Option<String>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl Record for RingGroup {
    const TABLE: Table = Table::RingGroups;
    fn key(&self) -> String {
        self.number.clone()
    }
}

/// The codes phones dial to change their own extension's handling. A code is `*` or `#` and digits;
/// the forward code is followed by the target number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureCodes {
    pub dnd_on: String,
    pub dnd_off: String,
    /// Followed by the number: `*72` `2002`.
    pub forward_on: String,
    pub forward_off: String,
}

impl Default for FeatureCodes {
    fn default() -> Self {
        Self {
            dnd_on: "*78".into(),
            dnd_off: "*79".into(),
            forward_on: "*72".into(),
            forward_off: "*73".into(),
        }
    }
}

impl FeatureCodes {
    pub const KEY: &'static str = "feature_codes";

    pub fn all(&self) -> [&str; 4] {
        [
            &self.dnd_on,
            &self.dnd_off,
            &self.forward_on,
            &self.forward_off,
        ]
    }

    /// Whether every code is well formed (`*` or `#`, then 1–6 digits, `*` or `#`) and none is a
    /// prefix of another (a phone dialling one would never reach the other).
    pub fn valid(&self) -> bool {
        let shape = |c: &str| {
            (2..=8).contains(&c.len())
                && c.starts_with(['*', '#'])
                && c.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
        };
        let all = self.all();
        all.iter().all(|c| shape(c))
            && all.iter().enumerate().all(|(i, a)| {
                all.iter()
                    .enumerate()
                    .all(|(j, b)| i == j || !b.starts_with(*a))
            })
    }
}

impl Record for FeatureCodes {
    const TABLE: Table = Table::Cluster;
    fn key(&self) -> String {
        Self::KEY.to_owned()
    }
}

/// The most subscriptions one extension may hold (a desk phone with an expansion module watches
/// a few dozen; this bounds a misbehaving or hostile one).
pub const MAX_SUBSCRIPTIONS_PER_WATCHER: usize = 200;

/// What a subscription is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventPackage {
    /// RFC 4235 dialog state: the busy lamp of a desk phone's key.
    Dialog,
    /// RFC 3856 presence, as a PIDF document.
    Presence,
}

/// A phone watching an extension (SUBSCRIBE, RFC 6665); keyed `{watcher}/{Call-ID}`. Replicated so
/// that the node owning the VIP after a failover goes on notifying it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The watching extension (it authenticated the SUBSCRIBE).
    pub watcher: String,
    /// The extension watched.
    pub target: String,
    pub package: EventPackage,
    /// The subscription's dialog, the PBX's side: `local_cseq` is the last NOTIFY's CSeq as of this
    /// write (a node taking over adds headroom, for NOTIFYs sent since are not written).
    pub leg: DialogLeg,
    /// The `version` of the last dialog-info document as of this write (same headroom rule).
    pub version: u32,
    pub expires_at: UnixMillis,
    /// The node that accepted or last refreshed it.
    pub node_id: u64,
    pub created_at: UnixMillis,
}

impl Subscription {
    pub fn key_for(watcher: &str, call_id: &str) -> String {
        format!("{watcher}/{call_id}")
    }
}

impl Record for Subscription {
    const TABLE: Table = Table::Subscriptions;
    fn key(&self) -> String {
        Self::key_for(&self.watcher, &self.leg.call_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_numbers_bounded() {
        assert!(valid_target("2002"));
        assert!(valid_target("+4930123456"));
        assert!(!valid_target("+"));
        assert!(!valid_target(""));
        assert!(!valid_target("20a2"));
        assert!(!valid_target("*72"));
        assert!(!valid_target(&"1".repeat(33)));
    }

    #[test]
    fn feature_codes_must_not_shadow_each_other() {
        assert!(FeatureCodes::default().valid());
        let with = |f: fn(&mut FeatureCodes)| {
            let mut c = FeatureCodes::default();
            f(&mut c);
            c.valid()
        };
        assert!(
            !with(|c| c.forward_off = "*7".into()),
            "*7 is a prefix of the others"
        );
        assert!(
            !with(|c| c.dnd_on = "78".into()),
            "a code starts with * or #"
        );
        assert!(
            !with(|c| c.dnd_off = c.dnd_on.clone()),
            "two features, one code"
        );
    }
}
