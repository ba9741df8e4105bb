use std::collections::{HashMap, HashSet};

use super::*;

#[derive(Default)]
struct Office {
    extensions: HashMap<String, Extension>,
    handling: HashMap<String, CallHandling>,
    groups: HashMap<String, RingGroup>,
    /// Extensions with a phone registered.
    online: HashSet<String>,
    full: HashSet<String>,
    mailboxes: HashMap<String, Mailbox>,
}

impl Directory for Office {
    fn extension(&self, n: &str) -> Result<Option<Extension>, Refusal> {
        Ok(self.extensions.get(n).cloned())
    }
    fn handling(&self, n: &str) -> Result<Option<CallHandling>, Refusal> {
        Ok(self.handling.get(n).cloned())
    }
    fn ring_group(&self, n: &str) -> Result<Option<RingGroup>, Refusal> {
        Ok(self.groups.get(n).cloned())
    }
    fn devices(&self, n: &str) -> Result<Vec<Binding>, Refusal> {
        Ok(if self.online.contains(n) {
            vec![phone(n)]
        } else {
            Vec::new()
        })
    }
    fn at_limit(&self, n: &str) -> bool {
        self.full.contains(n)
    }
    fn mailbox(&self, n: &str) -> Result<Option<Mailbox>, Refusal> {
        Ok(self.mailboxes.get(n).cloned())
    }
    fn voicemail(&self, n: &str, because: LeftBecause) -> Option<Binding> {
        let mut b = phone(n);
        b.contact = format!("sip:vm.{}.{n}@127.0.0.1:9", because.as_str());
        Some(b)
    }
}

fn phone(n: &str) -> Binding {
    Binding {
        aor: n.into(),
        contact: format!("sip:{n}@198.18.0.40:5060"),
        expires_at: u64::MAX,
        q: None,
        call_id: "reg".into(),
        cseq: 1,
        source: "198.18.0.40:5060".into(),
        transport: "udp".into(),
        user_agent: "desk".into(),
        node_id: 1,
        registered_at: 0,
        instance: None,
        reachable: Some(true),
    }
}

fn office() -> Office {
    let mut o = Office::default();
    for n in ["1001", "1002", "1003", "1004"] {
        let e = Extension {
            number: n.into(),
            display_name: String::new(),
            credentials: storage::model::SipCredentials {
                username: n.into(),
                realm: "pbx.test".into(),
                ha1_md5: String::new(),
                ha1_sha256: String::new(),
                changed_at: 0,
            },
            permission_group: String::new(),
            enabled: true,
            created_at: 0,
            updated_at: 0,
        };
        o.extensions.insert(n.into(), e);
        o.online.insert(n.into());
    }
    o
}

fn handling(o: &mut Office, n: &str, f: impl FnOnce(&mut CallHandling)) {
    let mut h = CallHandling::none(n);
    f(&mut h);
    o.handling.insert(n.into(), h);
}

fn group(o: &mut Office, strategy: RingStrategy, members: &[&str], no_answer: Option<&str>) {
    o.groups.insert(
        "600".into(),
        RingGroup {
            number: "600".into(),
            name: "Sales".into(),
            strategy,
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            ring_secs: 15,
            no_answer: no_answer.map(str::to_owned),
            created_at: 1,
            updated_at: 1,
        },
    );
}

fn rung(r: &Ring) -> Vec<&str> {
    match r {
        Ring::Devices { devices, .. } => devices.iter().map(|b| b.aor.as_str()).collect(),
        Ring::Outside { .. } => Vec::new(),
    }
}

fn dial(o: &Office, n: &str) -> Result<Ring, Refusal> {
    number_plan(o, n, None, 0)
}

fn then_of(r: &Ring) -> &[Stage] {
    match r {
        Ring::Devices { then, .. } => then,
        Ring::Outside { .. } => &[],
    }
}

#[test]
fn an_extension_without_rules_rings_its_phones_until_the_call_times_out() {
    let o = office();
    let r = dial(&o, "1002").unwrap();
    assert_eq!(rung(&r), ["1002"]);
    assert!(matches!(r, Ring::Devices { ring_for: None, .. }));
    assert_eq!(dial(&o, "1999").unwrap_err().code, 404);
}

#[test]
fn do_not_disturb_is_busy_or_the_busy_forward() {
    let mut o = office();
    handling(&mut o, "1002", |h| h.dnd = true);
    assert_eq!(dial(&o, "1002").unwrap_err().code, 486);
    handling(&mut o, "1002", |h| {
        h.dnd = true;
        h.forward_busy = Some("1003".into());
    });
    assert_eq!(rung(&dial(&o, "1002").unwrap()), ["1003"]);
}

#[test]
fn forward_always_wins_and_an_unknown_number_goes_outside_as_the_forwarder() {
    let mut o = office();
    handling(&mut o, "1002", |h| {
        h.forward_always = Some("+15550100".into())
    });
    match dial(&o, "1002").unwrap() {
        Ring::Outside { number, forwarder } => {
            assert_eq!(number, "+15550100");
            assert_eq!(forwarder, "1002", "dialled with 1002's permissions");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unregistered_forward_applies_only_without_phones() {
    let mut o = office();
    handling(&mut o, "1002", |h| {
        h.forward_unregistered = Some("1003".into())
    });
    assert_eq!(rung(&dial(&o, "1002").unwrap()), ["1002"]);
    o.online.remove("1002");
    assert_eq!(rung(&dial(&o, "1002").unwrap()), ["1003"]);
    o.handling.clear();
    assert_eq!(dial(&o, "1002").unwrap_err().code, 480);
}

#[test]
fn no_answer_and_busy_forwards_are_later_stages() {
    let mut o = office();
    handling(&mut o, "1002", |h| {
        h.forward_no_answer = Some("1003".into());
        h.no_answer_secs = 12;
        h.forward_busy = Some("1004".into());
    });
    let r = dial(&o, "1002").unwrap();
    assert!(matches!(r, Ring::Devices { ring_for: Some(d), .. } if d == Duration::from_secs(12)));
    let then = then_of(&r);
    assert_eq!(then.len(), 2);
    assert!(then[0].after.follows(Ended::NoAnswer));
    assert!(then[0].after.follows(Ended::Unavailable));
    assert!(!then[0].after.follows(Ended::Busy));
    assert!(then[1].after.follows(Ended::Busy));
    assert_eq!(rung(&resolve(&o, &then[0]).unwrap()), ["1003"]);
    assert_eq!(rung(&resolve(&o, &then[1]).unwrap()), ["1004"]);
}

#[test]
fn a_forwarding_loop_ends() {
    let mut o = office();
    handling(&mut o, "1002", |h| h.forward_always = Some("1003".into()));
    handling(&mut o, "1003", |h| h.forward_always = Some("1002".into()));
    assert_eq!(dial(&o, "1002").unwrap_err().code, 482);
}

#[test]
fn ring_all_skips_members_on_dnd_offline_or_full() {
    let mut o = office();
    group(
        &mut o,
        RingStrategy::All,
        &["1001", "1002", "1003", "1004"],
        None,
    );
    handling(&mut o, "1001", |h| h.dnd = true);
    o.online.remove("1002");
    o.full.insert("1003".into());
    let r = dial(&o, "600").unwrap();
    assert_eq!(rung(&r), ["1004"]);
    assert!(matches!(r, Ring::Devices { ring_for: Some(d), .. } if d == Duration::from_secs(15)));
}

#[test]
fn hunt_rings_members_in_order_then_the_fallback() {
    let mut o = office();
    group(
        &mut o,
        RingStrategy::Hunt,
        &["1001", "1002", "1003"],
        Some("1004"),
    );
    // A member's forwarding does not take a group's call away.
    handling(&mut o, "1002", |h| {
        h.forward_always = Some("+15550100".into())
    });
    o.online.remove("1001");
    let r = dial(&o, "600").unwrap();
    assert_eq!(rung(&r), ["1002"], "1001 has no phone: skipped at once");
    let then = then_of(&r).to_vec();
    assert_eq!(then.len(), 2, "1003, then the fallback");
    assert_eq!(rung(&resolve(&o, &then[0]).unwrap()), ["1003"]);
    assert_eq!(rung(&resolve(&o, &then[1]).unwrap()), ["1004"]);
}

#[test]
fn a_group_nobody_can_answer_goes_straight_to_its_fallback() {
    let mut o = office();
    group(&mut o, RingStrategy::Hunt, &["1001", "1002"], Some("1004"));
    o.online.remove("1001");
    o.online.remove("1002");
    assert_eq!(rung(&dial(&o, "600").unwrap()), ["1004"]);
    group(&mut o, RingStrategy::All, &["1001", "1002"], None);
    assert_eq!(dial(&o, "600").unwrap_err().code, 480);
}

fn rings_mailbox(ring: &Ring, because: LeftBecause) -> bool {
    matches!(ring, Ring::Devices { devices, .. }
        if devices.len() == 1 && devices[0].contact.starts_with(&format!("sip:vm.{}.", because.as_str())))
}

#[test]
fn a_mailbox_takes_the_calls_no_forward_takes() {
    let mut o = office();
    o.mailboxes.insert("1002".into(), Mailbox::new("1002", 0));
    // Ringing: for the mailbox's ring time, then voicemail on no answer or busy.
    let Ok(Ring::Devices { ring_for, then, .. }) = number_plan(&o, "1002", None, 0) else {
        panic!("1002 rings");
    };
    assert_eq!(ring_for, Some(Duration::from_secs(20)));
    let nexts: Vec<_> = then.iter().map(|s| (s.next.clone(), s.after)).collect();
    assert_eq!(
        nexts,
        [
            (
                Next::Voicemail {
                    extension: "1002".into(),
                    because: LeftBecause::NoAnswer
                },
                After::NoAnswer
            ),
            (
                Next::Voicemail {
                    extension: "1002".into(),
                    because: LeftBecause::Busy
                },
                After::Busy
            ),
        ]
    );
    let reached = resolve(&o, &then[0]).unwrap();
    assert!(rings_mailbox(&reached, LeftBecause::NoAnswer));
    // No phone: straight to the mailbox; on do-not-disturb, as busy.
    o.online.remove("1002");
    let ring = number_plan(&o, "1002", None, 0).unwrap();
    assert!(rings_mailbox(&ring, LeftBecause::Unavailable));
    o.online.insert("1002".into());
    handling(&mut o, "1002", |h| h.dnd = true);
    let ring = number_plan(&o, "1002", None, 0).unwrap();
    assert!(rings_mailbox(&ring, LeftBecause::Busy));
}

#[test]
fn forwards_come_before_the_mailbox_and_a_disabled_mailbox_takes_nothing() {
    let mut o = office();
    o.mailboxes.insert("1002".into(), Mailbox::new("1002", 0));
    handling(&mut o, "1002", |h| {
        h.forward_no_answer = Some("1003".into());
        h.no_answer_secs = 15;
    });
    let Ok(Ring::Devices { ring_for, then, .. }) = number_plan(&o, "1002", None, 0) else {
        panic!("1002 rings");
    };
    assert_eq!(ring_for, Some(Duration::from_secs(15)));
    assert!(matches!(&then[0].next, Next::Number { number, .. } if number == "1003"));
    // Busy has no forward: the mailbox.
    assert!(matches!(
        &then[1].next,
        Next::Voicemail {
            because: LeftBecause::Busy,
            ..
        }
    ));
    let mut off = Mailbox::new("1004", 0);
    off.enabled = false;
    o.mailboxes.insert("1004".into(), off);
    o.online.remove("1004");
    assert_eq!(number_plan(&o, "1004", None, 0).unwrap_err().code, 480);
}
