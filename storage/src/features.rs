//! Call features an office configures: how each extension's incoming calls are handled
//! (do-not-disturb, forwarding), ring groups, pickup groups, and the codes phones dial to change
//! their handling or to pick up a call ringing elsewhere.
//! Replicated like the rest of the configuration, so whichever node owns the VIP handles a call the
//! same way, before and after a failover.

use serde::{Deserialize, Serialize};

use crate::model::{DialogLeg, UnixMillis};
use crate::tables::{Record, Table};

/// The longest a number a call may be forwarded to may be (`+` and digits).
pub const MAX_TARGET_LEN: usize = 32;
/// The most members a ring group or a pickup group may have.
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

    /// The fields, in the order of [`Self::all`].
    pub const FIELDS: [&'static str; 4] = ["dnd_on", "dnd_off", "forward_on", "forward_off"];

    /// Whether every code is well formed ([`valid_code`]) and none is a prefix of another (a phone
    /// dialling one would never reach the other).
    pub fn valid(&self) -> bool {
        codes_valid(&self.all())
    }
}

/// Whether `code` has the shape of a feature or pickup code: `*` or `#`, then 1–7 digits, `*` or
/// `#`.
pub fn valid_code(code: &str) -> bool {
    (2..=8).contains(&code.len())
        && code.starts_with(['*', '#'])
        && code
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
}

/// Whether every code of a set is well formed and none is the start of another.
fn codes_valid(all: &[&str]) -> bool {
    all.iter().all(|c| valid_code(c))
        && all.iter().enumerate().all(|(i, a)| {
            all.iter()
                .enumerate()
                .all(|(j, b)| i == j || !b.starts_with(*a))
        })
}

impl Record for FeatureCodes {
    const TABLE: Table = Table::Cluster;
    fn key(&self) -> String {
        Self::KEY.to_owned()
    }
}

/// The longest a pickup group's name may be, in characters.
pub const MAX_PICKUP_NAME: usize = 32;

/// Extensions whose phones may answer each other's ringing calls (by the pickup codes); keyed by
/// its name. An extension may be in several groups; deleting an extension takes it out of all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickupGroup {
    pub name: String,
    /// Extension numbers, at most [`MAX_MEMBERS`].
    pub members: Vec<String>,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

impl PickupGroup {
    /// Whether `name` may name a pickup group: 1 to [`MAX_PICKUP_NAME`] ASCII letters, digits,
    /// spaces, `-` and `_`, not starting or ending with a space.
    pub fn valid_name(name: &str) -> bool {
        (1..=MAX_PICKUP_NAME).contains(&name.len())
            && !name.starts_with(' ')
            && !name.ends_with(' ')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b' ' | b'-' | b'_'))
    }

    /// Whether extension `number` is a member.
    pub fn has(&self, number: &str) -> bool {
        self.members.iter().any(|m| m == number)
    }
}

impl Record for PickupGroup {
    const TABLE: Table = Table::PickupGroups;
    fn key(&self) -> String {
        self.name.clone()
    }
}

/// Whether extensions `a` and `b` are both members of one of `groups`.
pub fn share_pickup_group<'a>(
    groups: impl IntoIterator<Item = &'a PickupGroup>,
    a: &str,
    b: &str,
) -> bool {
    groups.into_iter().any(|g| g.has(a) && g.has(b))
}

/// The codes a phone dials to answer a call ringing another extension of its pickup groups. Kept
/// in the cluster table beside the feature codes, under [`PickupCodes::KEY`]; no code of either
/// set may be the start of a code of the other ([`code_clash`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickupCodes {
    /// Answers a call ringing any extension that shares a pickup group with the caller's.
    pub group: String,
    /// Followed by an extension number (`**` `1002`): answers the call ringing that extension,
    /// when it shares a pickup group with the caller's.
    pub directed: String,
}

impl Default for PickupCodes {
    fn default() -> Self {
        Self {
            group: "*8".into(),
            directed: "**".into(),
        }
    }
}

impl PickupCodes {
    pub const KEY: &'static str = "pickup_codes";
    /// The fields, in the order of [`Self::all`].
    pub const FIELDS: [&'static str; 2] = ["group", "directed"];

    pub fn all(&self) -> [&str; 2] {
        [&self.group, &self.directed]
    }

    /// Whether both codes are well formed ([`valid_code`]) and neither is the start of the other.
    pub fn valid(&self) -> bool {
        codes_valid(&self.all())
    }
}

impl Record for PickupCodes {
    const TABLE: Table = Table::Cluster;
    fn key(&self) -> String {
        Self::KEY.to_owned()
    }
}

/// A feature code and a pickup code of which one is the start of the other (or both are the
/// same): a phone dialling the longer one would reach the shorter first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeClash<'a> {
    /// The feature code's field (`dnd_on`, …) and code.
    pub feature: (&'static str, &'a str),
    /// The pickup code's field (`group` or `directed`) and code.
    pub pickup: (&'static str, &'a str),
}

/// The first clash between the feature codes `f` and the pickup codes `p`, if any.
pub fn code_clash<'a>(f: &'a FeatureCodes, p: &'a PickupCodes) -> Option<CodeClash<'a>> {
    FeatureCodes::FIELDS
        .into_iter()
        .zip(f.all())
        .find_map(|feature| {
            PickupCodes::FIELDS
                .into_iter()
                .zip(p.all())
                .find(|pickup| feature.1.starts_with(pickup.1) || pickup.1.starts_with(feature.1))
                .map(|pickup| CodeClash { feature, pickup })
        })
}

/// Whether a code of `f` and a code of `p` shadow each other ([`code_clash`]).
pub fn codes_clash(f: &FeatureCodes, p: &PickupCodes) -> bool {
    code_clash(f, p).is_some()
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
    /// RFC 3842 message waiting: the watcher's own voicemail counts (its target is itself).
    /// Variants are encoded by their index: new ones go last.
    MessageSummary,
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

    #[test]
    fn pickup_group_names_are_bounded_words() {
        for ok in [
            "Sales",
            "front desk",
            "a",
            "Team_2-b",
            &"x".repeat(MAX_PICKUP_NAME),
        ] {
            assert!(PickupGroup::valid_name(ok), "{ok:?}");
        }
        for bad in [
            "",
            " Sales",
            "Sales ",
            "a/b",
            "a.b",
            "Kühe",
            "tab\there",
            &"x".repeat(MAX_PICKUP_NAME + 1),
        ] {
            assert!(!PickupGroup::valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn pickup_codes_are_shaped_and_never_shadow_a_feature_code() {
        let p = PickupCodes::default();
        assert!(p.valid());
        assert!(!codes_clash(&FeatureCodes::default(), &p));
        let pickup = |group: &str, directed: &str| PickupCodes {
            group: group.into(),
            directed: directed.into(),
        };
        assert!(!pickup("*8", "*8").valid(), "one code for two features");
        assert!(!pickup("*8", "*81").valid(), "*8 starts *81");
        assert!(!pickup("8", "**").valid(), "a code starts with * or #");
        assert!(pickup("#5", "#6").valid());
        let f = FeatureCodes::default();
        let p = pickup("*7", "**");
        let clash = code_clash(&f, &p).unwrap();
        assert_eq!(clash.feature, ("dnd_on", "*78"));
        assert_eq!(clash.pickup, ("group", "*7"));
        let p = pickup("*8", "*729");
        let clash = code_clash(&f, &p).unwrap();
        assert_eq!(
            (clash.feature, clash.pickup),
            (("forward_on", "*72"), ("directed", "*729")),
            "the longer one starting with a feature code clashes too"
        );
        assert!(
            code_clash(&f, &pickup("*78", "**")).is_some(),
            "the same code"
        );
        let mut taken = FeatureCodes {
            dnd_on: "*80".into(),
            ..FeatureCodes::default()
        };
        assert!(codes_clash(&taken, &PickupCodes::default()));
        taken.dnd_on = "**1".into();
        assert!(codes_clash(&taken, &PickupCodes::default()));
    }

    #[test]
    fn event_packages_keep_their_encoded_index() {
        // Subscription records are replicated and stored: a variant's index is its encoding.
        for (package, index) in [
            (EventPackage::Dialog, 0u32),
            (EventPackage::Presence, 1),
            (EventPackage::MessageSummary, 2),
        ] {
            let bytes = crate::codec::encode(&package).unwrap();
            assert_eq!(bytes[1..], index.to_le_bytes(), "{package:?}");
            assert_eq!(
                crate::codec::decode::<EventPackage>(&bytes).unwrap(),
                package
            );
        }
    }

    #[test]
    fn extensions_share_a_pickup_group_only_as_members_of_one() {
        let g = |name: &str, members: &[&str]| PickupGroup {
            name: name.into(),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            created_at: 1,
            updated_at: 1,
        };
        let groups = [g("a", &["1001", "1002"]), g("b", &["1002", "1003"])];
        assert!(share_pickup_group(&groups, "1001", "1002"));
        assert!(share_pickup_group(&groups, "1003", "1002"));
        assert!(!share_pickup_group(&groups, "1001", "1003"));
        assert!(!share_pickup_group(&groups, "1001", "1004"));
        assert!(groups[0].has("1001") && !groups[0].has("100"));
    }
}
