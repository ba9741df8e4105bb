use super::*;
use crate::command::tests::{MemTxn, ext};
use crate::command::{Command, get};
use crate::routing::{
    Destination, DidKind, InboundRoute, OutboundRoute, PutMode, RouteClass, RoutingRecord,
};
use crate::routing_apply::tests::trunk;

fn apply(txn: &mut MemTxn, cmd: Command) -> Response {
    cmd.apply(txn).unwrap()
}

fn outbound(name: &str, trunk: &str) -> OutboundRoute {
    OutboundRoute {
        name: name.into(),
        position: 0,
        patterns: vec!["9.".into()],
        strip: 1,
        prepend: String::new(),
        class: RouteClass::Local,
        trunks: vec![trunk.into()],
        caller_id: None,
        created_at: 1,
        updated_at: 1,
    }
}

fn inbound(name: &str, trunk: &str) -> InboundRoute {
    InboundRoute {
        name: name.into(),
        did_kind: DidKind::Exact,
        did: "15550100".into(),
        caller_id: None,
        trunk: Some(trunk.into()),
        destination: Destination::Extension("1001".into()),
        created_at: 1,
        updated_at: 1,
    }
}

/// Trunk `a`, outbound route `out` and inbound route `in` through it.
fn routing(txn: &mut MemTxn) {
    apply(txn, Command::CreateExtension(ext("1001")));
    for record in [
        RoutingRecord::Trunk(Box::new(trunk("a"))),
        RoutingRecord::OutboundRoute(outbound("out", "a")),
        RoutingRecord::InboundRoute(inbound("in", "a")),
    ] {
        let put = Command::PutRouting {
            record,
            mode: PutMode::Create,
        };
        assert_eq!(apply(txn, put), Response::Ok);
    }
}

fn targets() -> [RecordingTarget; 3] {
    [
        RecordingTarget::Trunk("a".into()),
        RecordingTarget::OutboundRoute("out".into()),
        RecordingTarget::InboundRoute("in".into()),
    ]
}

fn policy(target: RecordingTarget, mode: RecordingMode) -> RouteRecordingPolicy {
    RouteRecordingPolicy {
        target,
        mode,
        updated_at: 7,
    }
}

fn put_cmd(target: RecordingTarget, mode: RecordingMode) -> Command {
    Command::PutRouteRecordingPolicy(policy(target, mode))
}

fn stored(txn: &MemTxn, target: &RecordingTarget) -> Option<RouteRecordingPolicy> {
    get::<RouteRecordingPolicy>(txn, &target.key()).unwrap()
}

#[test]
fn keys_name_the_kind_and_the_name_and_parse_back() {
    let keys: Vec<String> = targets().iter().map(RecordingTarget::key).collect();
    assert_eq!(keys, ["trunk/a", "outbound/out", "inbound/in"]);
    for target in targets() {
        assert_eq!(RecordingTarget::parse_key(&target.key()), Some(target));
    }
    for bad in ["", "trunk", "trunk/", "route/a", "Trunk/a"] {
        assert_eq!(RecordingTarget::parse_key(bad), None, "{bad:?}");
    }
    assert_eq!(
        RecordingTarget::InboundRoute("in".into()).to_string(),
        "inbound route in"
    );
    assert_eq!(RecordingTarget::of(RoutingKind::PermissionGroup, "g"), None);
    assert_eq!(
        RecordingTarget::of(RoutingKind::OutboundRoute, "out"),
        Some(RecordingTarget::OutboundRoute("out".into()))
    );
}

#[test]
fn a_policy_survives_the_codec() {
    for target in targets() {
        let p = policy(target, RecordingMode::Always);
        let bytes = crate::codec::encode(&p).unwrap();
        assert_eq!(
            crate::codec::decode::<RouteRecordingPolicy>(&bytes).unwrap(),
            p
        );
    }
}

#[test]
fn a_policy_for_a_missing_trunk_or_route_is_not_found_and_not_stored() {
    let mut txn = MemTxn::default();
    let want = [
        ("trunks", "a"),
        ("outbound_routes", "out"),
        ("inbound_routes", "in"),
    ];
    for (target, (table, key)) in targets().into_iter().zip(want) {
        assert_eq!(
            apply(&mut txn, put_cmd(target, RecordingMode::Always)),
            Response::NotFound {
                table: table.into(),
                key: key.into()
            }
        );
    }
    assert!(txn.0.is_empty());
}

#[test]
fn a_policy_is_stored_and_replaced() {
    let mut txn = MemTxn::default();
    routing(&mut txn);
    for target in targets() {
        assert_eq!(stored(&txn, &target), None, "no record: never recorded");
        for mode in [RecordingMode::Always, RecordingMode::Never] {
            assert_eq!(apply(&mut txn, put_cmd(target.clone(), mode)), Response::Ok);
            assert_eq!(stored(&txn, &target), Some(policy(target.clone(), mode)));
        }
    }
    assert_eq!(
        put_cmd(targets()[0].clone(), RecordingMode::Always).kind(),
        "put_route_recording_policy"
    );
}

#[test]
fn deleting_a_trunk_or_route_deletes_its_policy_and_nothing_else() {
    let mut txn = MemTxn::default();
    routing(&mut txn);
    for target in targets() {
        apply(&mut txn, put_cmd(target, RecordingMode::Always));
    }
    // A trunk a route uses is not deleted, and keeps its policy.
    let delete = |kind, name: &str| Command::DeleteRouting {
        kind,
        name: name.into(),
    };
    assert!(matches!(
        apply(&mut txn, delete(RoutingKind::Trunk, "a")),
        Response::Conflict { .. }
    ));
    assert!(stored(&txn, &targets()[0]).is_some());
    // A missing route's delete touches nothing.
    assert!(matches!(
        apply(&mut txn, delete(RoutingKind::OutboundRoute, "other")),
        Response::NotFound { .. }
    ));

    assert_eq!(
        apply(&mut txn, delete(RoutingKind::OutboundRoute, "out")),
        Response::Ok
    );
    assert_eq!(stored(&txn, &targets()[1]), None);
    assert!(stored(&txn, &targets()[0]).is_some());
    assert!(stored(&txn, &targets()[2]).is_some());

    assert_eq!(
        apply(&mut txn, delete(RoutingKind::InboundRoute, "in")),
        Response::Ok
    );
    assert_eq!(stored(&txn, &targets()[2]), None);

    assert_eq!(
        apply(&mut txn, delete(RoutingKind::Trunk, "a")),
        Response::Ok
    );
    assert_eq!(stored(&txn, &targets()[0]), None);

    // A new trunk with the name starts unrecorded.
    apply(
        &mut txn,
        Command::PutRouting {
            record: RoutingRecord::Trunk(Box::new(trunk("a"))),
            mode: PutMode::Create,
        },
    );
    assert_eq!(stored(&txn, &targets()[0]), None);
}

#[tokio::test]
async fn route_recording_reads_the_applied_policy_and_never_without_one() {
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    let dir = tempfile::TempDir::new().unwrap();
    let (_log, mut sm, reader) = crate::open(dir.path()).unwrap();
    let mut commands = vec![
        Command::CreateExtension(ext("1001")),
        Command::PutRouting {
            record: RoutingRecord::Trunk(Box::new(trunk("a"))),
            mode: PutMode::Create,
        },
        Command::PutRouting {
            record: RoutingRecord::OutboundRoute(outbound("out", "a")),
            mode: PutMode::Create,
        },
    ];
    commands.push(put_cmd(targets()[0].clone(), RecordingMode::Always));
    commands.push(put_cmd(targets()[1].clone(), RecordingMode::Never));
    let entries = commands.into_iter().zip(1..).map(|(cmd, index)| Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(cmd),
    });
    let responses = sm.apply(entries).await.unwrap();
    assert!(
        responses.iter().all(|r| *r == Response::Ok),
        "{responses:?}"
    );

    assert_eq!(
        route_recording(&reader, &targets()[0]),
        RecordingMode::Always
    );
    assert_eq!(
        route_recording(&reader, &targets()[1]),
        RecordingMode::Never
    );
    // No policy, and no such route: never.
    assert_eq!(
        route_recording(&reader, &targets()[2]),
        RecordingMode::Never
    );

    let listed = |kind| route_recordings(&reader, kind).unwrap();
    assert_eq!(
        listed(RoutingKind::Trunk),
        [policy(targets()[0].clone(), RecordingMode::Always)]
    );
    assert_eq!(
        listed(RoutingKind::OutboundRoute),
        [policy(targets()[1].clone(), RecordingMode::Never)]
    );
    assert!(listed(RoutingKind::InboundRoute).is_empty());
    assert!(listed(RoutingKind::PermissionGroup).is_empty());
}
