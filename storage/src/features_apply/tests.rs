use super::*;
use crate::command::Command;
use crate::command::tests::{MemTxn, ext};
use crate::features::RingStrategy;
use crate::routing::{DidKind, RoutingRecord};

fn apply(txn: &mut MemTxn, cmd: Command) -> Response {
    cmd.apply(txn).unwrap()
}

fn group(number: &str, members: &[&str]) -> RingGroup {
    RingGroup {
        number: number.into(),
        name: "Sales".into(),
        strategy: RingStrategy::All,
        members: members.iter().map(|m| (*m).to_owned()).collect(),
        ring_secs: 20,
        no_answer: None,
        created_at: 1,
        updated_at: 1,
    }
}

fn lab() -> MemTxn {
    let mut txn = MemTxn::default();
    for n in ["1001", "1002", "1003"] {
        assert_eq!(
            apply(&mut txn, Command::CreateExtension(ext(n))),
            Response::Ok
        );
    }
    txn
}

fn put_group(txn: &mut MemTxn, g: RingGroup, mode: PutMode) -> Response {
    apply(txn, Command::PutRingGroup { group: g, mode })
}

#[test]
fn a_ring_group_shares_no_number_with_an_extension_either_way() {
    let mut txn = lab();
    let taken = put_group(&mut txn, group("1001", &["1002"]), PutMode::Create);
    assert_eq!(taken, conflict(Table::Extensions, "1001"));
    assert_eq!(
        put_group(&mut txn, group("600", &["1002"]), PutMode::Create),
        Response::Ok
    );
    assert_eq!(
        apply(&mut txn, Command::CreateExtension(ext("600"))),
        conflict(Table::RingGroups, "600"),
        "an extension cannot take a ring group's number"
    );
    assert_eq!(
        put_group(&mut txn, group("600", &["1002"]), PutMode::Create),
        conflict(Table::RingGroups, "600")
    );
    assert_eq!(
        put_group(&mut txn, group("601", &["1002"]), PutMode::Update),
        not_found(Table::RingGroups, "601")
    );
}

#[test]
fn members_and_the_fallback_must_exist() {
    let mut txn = lab();
    assert_eq!(
        put_group(&mut txn, group("600", &["1002", "1999"]), PutMode::Create),
        not_found(Table::Extensions, "1999")
    );
    let mut g = group("600", &["1002"]);
    g.no_answer = Some("700".into());
    assert_eq!(
        put_group(&mut txn, g.clone(), PutMode::Create),
        not_found(Table::RingGroups, "700")
    );
    g.no_answer = Some("600".into());
    assert_eq!(
        put_group(&mut txn, g.clone(), PutMode::Create),
        not_found(Table::RingGroups, "600"),
        "a group is not its own fallback"
    );
    g.no_answer = Some("1003".into());
    assert_eq!(put_group(&mut txn, g, PutMode::Create), Response::Ok);
}

#[test]
fn a_group_still_sent_calls_is_not_deleted() {
    let mut txn = lab();
    assert_eq!(
        put_group(&mut txn, group("600", &["1002"]), PutMode::Create),
        Response::Ok
    );
    let mut overflow = group("601", &["1003"]);
    overflow.no_answer = Some("600".into());
    assert_eq!(put_group(&mut txn, overflow, PutMode::Create), Response::Ok);
    assert_eq!(
        apply(
            &mut txn,
            Command::DeleteRingGroup {
                number: "600".into()
            }
        ),
        conflict(Table::RingGroups, "601")
    );
    assert_eq!(
        apply(
            &mut txn,
            Command::DeleteRingGroup {
                number: "601".into()
            }
        ),
        Response::Ok
    );
    let route = InboundRoute {
        name: "main".into(),
        did_kind: DidKind::Exact,
        did: "15550100".into(),
        caller_id: None,
        trunk: None,
        destination: Destination::RingGroup("600".into()),
        created_at: 1,
        updated_at: 1,
    };
    let put_route = |txn: &mut MemTxn, r: &InboundRoute| {
        apply(
            txn,
            Command::PutRouting {
                record: RoutingRecord::InboundRoute(r.clone()),
                mode: PutMode::Create,
            },
        )
    };
    let mut to_nowhere = route.clone();
    to_nowhere.destination = Destination::RingGroup("699".into());
    assert_eq!(
        put_route(&mut txn, &to_nowhere),
        not_found(Table::RingGroups, "699")
    );
    assert_eq!(put_route(&mut txn, &route), Response::Ok);
    assert_eq!(
        apply(
            &mut txn,
            Command::DeleteRingGroup {
                number: "600".into()
            }
        ),
        conflict(Table::InboundRoutes, "main")
    );
    assert_eq!(
        apply(
            &mut txn,
            Command::DeleteRingGroup {
                number: "699".into()
            }
        ),
        not_found(Table::RingGroups, "699")
    );
}

#[test]
fn handling_belongs_to_an_extension_and_goes_with_it() {
    let mut txn = lab();
    let mut h = CallHandling::none("1001");
    h.dnd = true;
    h.forward_busy = Some("1002".into());
    assert_eq!(
        apply(&mut txn, Command::PutCallHandling(h.clone())),
        Response::Ok
    );
    let stored: CallHandling =
        codec::decode(&txn.get(Table::CallHandling, "1001").unwrap()).unwrap();
    assert_eq!(stored, h);
    assert_eq!(
        apply(
            &mut txn,
            Command::PutCallHandling(CallHandling::none("1999"))
        ),
        not_found(Table::Extensions, "1999")
    );
    assert_eq!(
        apply(
            &mut txn,
            Command::DeleteExtension {
                number: "1001".into()
            }
        ),
        Response::Ok
    );
    assert!(
        txn.get(Table::CallHandling, "1001").is_none(),
        "a new extension with the number starts without the old forwards"
    );
}

fn subscription(watcher: &str, target: &str, call_id: &str, expires_at: u64) -> Subscription {
    Subscription {
        watcher: watcher.into(),
        target: target.into(),
        package: crate::features::EventPackage::Dialog,
        leg: crate::model::DialogLeg {
            call_id: call_id.into(),
            ..Default::default()
        },
        version: 0,
        expires_at,
        node_id: 1,
        created_at: 1,
    }
}

#[test]
fn subscriptions_are_bounded_per_watcher_and_go_with_it() {
    let mut txn = lab();
    let put = |txn: &mut MemTxn, s: Subscription| apply(txn, Command::PutSubscription(Box::new(s)));
    assert_eq!(
        put(&mut txn, subscription("1001", "1999", "c", 10)),
        not_found(Table::Extensions, "1999")
    );
    for i in 0..MAX_SUBSCRIPTIONS_PER_WATCHER {
        assert_eq!(
            put(&mut txn, subscription("1001", "1002", &format!("c{i}"), 10)),
            Response::Ok
        );
    }
    assert_eq!(
        put(&mut txn, subscription("1001", "1002", "one-more", 10)),
        conflict(Table::Subscriptions, "1001")
    );
    assert_eq!(
        put(&mut txn, subscription("1001", "1003", "c7", 20)),
        Response::Ok,
        "a refresh of a held one is not a new one"
    );
    assert_eq!(
        put(&mut txn, subscription("1002", "1001", "x", 30)),
        Response::Ok
    );
    assert_eq!(
        apply(&mut txn, Command::PruneSubscriptions { now: 10 }),
        Response::Ok
    );
    assert_eq!(
        txn.keys_with_prefix(Table::Subscriptions, "").len(),
        2,
        "c7 and x stay"
    );
    assert_eq!(
        apply(
            &mut txn,
            Command::DeleteExtension {
                number: "1001".into()
            }
        ),
        Response::Ok
    );
    assert_eq!(txn.keys_with_prefix(Table::Subscriptions, "").len(), 1);
}

fn pickup(name: &str, members: &[&str]) -> PickupGroup {
    PickupGroup {
        name: name.into(),
        members: members.iter().map(|m| (*m).to_owned()).collect(),
        created_at: 1,
        updated_at: 1,
    }
}

fn stored_pickup(txn: &MemTxn, name: &str) -> Option<PickupGroup> {
    get::<PickupGroup>(txn, name).unwrap()
}

#[test]
fn pickup_group_members_must_exist_and_a_put_replaces() {
    let mut txn = lab();
    assert_eq!(
        apply(
            &mut txn,
            Command::PutPickupGroup(pickup("Sales", &["1001", "1999"]))
        ),
        not_found(Table::Extensions, "1999")
    );
    assert!(stored_pickup(&txn, "Sales").is_none(), "nothing written");
    assert_eq!(
        apply(
            &mut txn,
            Command::PutPickupGroup(pickup("Sales", &["1001", "1002"]))
        ),
        Response::Ok
    );
    // An extension may be in several groups; a put replaces the members.
    assert_eq!(
        apply(
            &mut txn,
            Command::PutPickupGroup(pickup("Desk", &["1002", "1003"]))
        ),
        Response::Ok
    );
    assert_eq!(
        apply(
            &mut txn,
            Command::PutPickupGroup(pickup("Sales", &["1003"]))
        ),
        Response::Ok
    );
    assert_eq!(
        stored_pickup(&txn, "Sales").unwrap().members,
        ["1003"],
        "replaced"
    );
    assert_eq!(
        apply(
            &mut txn,
            Command::DeletePickupGroup {
                name: "Sales".into()
            }
        ),
        Response::Ok
    );
    assert_eq!(
        apply(
            &mut txn,
            Command::DeletePickupGroup {
                name: "Sales".into()
            }
        ),
        not_found(Table::PickupGroups, "Sales")
    );
    assert!(stored_pickup(&txn, "Desk").is_some());
}

#[test]
fn a_deleted_extension_leaves_every_pickup_group() {
    let mut txn = lab();
    for g in [
        pickup("a", &["1001", "1002"]),
        pickup("b", &["1002", "1003"]),
        pickup("c", &["1002"]),
        pickup("d", &["1003"]),
    ] {
        assert_eq!(apply(&mut txn, Command::PutPickupGroup(g)), Response::Ok);
    }
    assert_eq!(
        apply(
            &mut txn,
            Command::DeleteExtension {
                number: "1002".into()
            }
        ),
        Response::Ok
    );
    assert_eq!(stored_pickup(&txn, "a").unwrap().members, ["1001"]);
    assert_eq!(stored_pickup(&txn, "b").unwrap().members, ["1003"]);
    assert!(
        stored_pickup(&txn, "c").unwrap().members.is_empty(),
        "an emptied group stays"
    );
    assert_eq!(stored_pickup(&txn, "d").unwrap(), pickup("d", &["1003"]));
    // A new extension with the number is in no group.
    assert_eq!(
        apply(&mut txn, Command::CreateExtension(ext("1002"))),
        Response::Ok
    );
    assert!(!stored_pickup(&txn, "a").unwrap().has("1002"));
}

#[test]
fn feature_codes_and_pickup_codes_never_shadow_each_other() {
    let mut txn = lab();
    let codes = |group: &str, directed: &str| PickupCodes {
        group: group.into(),
        directed: directed.into(),
    };
    // Against the default feature codes (*78, *79, *72, *73).
    assert_eq!(
        apply(&mut txn, Command::PutPickupCodes(codes("*7", "**"))),
        conflict(Table::Cluster, FeatureCodes::KEY)
    );
    assert!(txn.get(Table::Cluster, PickupCodes::KEY).is_none());
    // Against the default pickup codes (*8, **).
    let mut features = FeatureCodes {
        dnd_on: "*80".into(),
        ..FeatureCodes::default()
    };
    assert_eq!(
        apply(&mut txn, Command::PutFeatureCodes(features.clone())),
        conflict(Table::Cluster, PickupCodes::KEY)
    );
    assert!(txn.get(Table::Cluster, FeatureCodes::KEY).is_none());
    // Move the pickup codes away: the feature codes may then take *80.
    assert_eq!(
        apply(&mut txn, Command::PutPickupCodes(codes("#5", "#6"))),
        Response::Ok
    );
    assert_eq!(
        apply(&mut txn, Command::PutFeatureCodes(features.clone())),
        Response::Ok
    );
    // Against the stored ones, both ways.
    assert_eq!(
        apply(&mut txn, Command::PutPickupCodes(codes("*8", "**"))),
        conflict(Table::Cluster, FeatureCodes::KEY),
        "*8 is the start of the stored *80"
    );
    features.dnd_on = "#50".into();
    assert_eq!(
        apply(&mut txn, Command::PutFeatureCodes(features)),
        conflict(Table::Cluster, PickupCodes::KEY),
        "#5 is the start of #50"
    );
    let stored: PickupCodes =
        codec::decode(&txn.get(Table::Cluster, PickupCodes::KEY).unwrap()).unwrap();
    assert_eq!(stored, codes("#5", "#6"));
    let stored: FeatureCodes =
        codec::decode(&txn.get(Table::Cluster, FeatureCodes::KEY).unwrap()).unwrap();
    assert_eq!(stored.dnd_on, "*80");
}
