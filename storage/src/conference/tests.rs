use super::*;
use crate::command::Command;
use crate::command::tests::{MemTxn, ext};
use crate::features::{RingGroup, RingStrategy};
use crate::ivr::Ivr;
use crate::routing::{DidKind, RoutingKind, RoutingRecord};
use crate::time_condition::OpenHours;

fn apply(txn: &mut MemTxn, cmd: Command) -> Response {
    cmd.apply(txn).unwrap()
}

fn room(number: &str) -> ConferenceRoom {
    ConferenceRoom {
        number: number.into(),
        name: "Weekly call".into(),
        pin_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        max_participants: 3,
        created_at: 1,
        updated_at: 1,
    }
}

fn put_room(txn: &mut MemTxn, room: ConferenceRoom, mode: PutMode) -> Response {
    apply(txn, Command::PutConferenceRoom { room, mode })
}

fn create(txn: &mut MemTxn, r: ConferenceRoom) -> Response {
    put_room(txn, r, PutMode::Create)
}

fn delete_room(txn: &mut MemTxn, number: &str) -> Response {
    apply(
        txn,
        Command::DeleteConferenceRoom {
            number: number.into(),
        },
    )
}

fn stored(txn: &MemTxn, number: &str) -> Option<ConferenceRoom> {
    get::<ConferenceRoom>(txn, number).unwrap()
}

fn participant(room: &str, n: u8) -> Participant {
    Participant {
        room: room.into(),
        id: format!("{n:016x}"),
        caller: "1001".into(),
        caller_name: "Reception".into(),
        joined_at: 100 + u64::from(n),
        muted: false,
        kicked: false,
        node_id: 1,
    }
}

fn participant_of(txn: &MemTxn, room: &str, n: u8) -> Option<Participant> {
    get::<Participant>(txn, &Participant::key_for(room, &format!("{n:016x}"))).unwrap()
}

fn route(destination: Destination) -> Command {
    Command::PutRouting {
        record: RoutingRecord::InboundRoute(InboundRoute {
            name: "main".into(),
            did_kind: DidKind::Exact,
            did: "15550100".into(),
            caller_id: None,
            trunk: None,
            destination,
            created_at: 1,
            updated_at: 1,
        }),
        mode: PutMode::Create,
    }
}

fn invalid_reason(r: &Response) -> &str {
    match r {
        Response::Invalid { reason, .. } => reason,
        other => panic!("not Invalid: {other:?}"),
    }
}

#[test]
fn a_room_round_trips_and_is_replaced_only_when_it_exists() {
    let mut txn = MemTxn::default();
    assert_eq!(create(&mut txn, room("800")), Response::Ok);
    assert_eq!(stored(&txn, "800"), Some(room("800")));
    assert_eq!(
        create(&mut txn, room("800")),
        conflict(Table::ConferenceRooms, "800")
    );
    let mut changed = room("800");
    changed.name = "Board".into();
    changed.pin_hash = None;
    assert_eq!(
        put_room(&mut txn, changed.clone(), PutMode::Update),
        Response::Ok
    );
    assert_eq!(stored(&txn, "800"), Some(changed));
    assert_eq!(
        put_room(&mut txn, room("801"), PutMode::Update),
        not_found(Table::ConferenceRooms, "801")
    );
    let bytes = crate::codec::encode(&room("800")).unwrap();
    assert_eq!(
        crate::codec::decode::<ConferenceRoom>(&bytes).unwrap(),
        room("800")
    );
}

#[test]
fn a_malformed_room_is_refused_naming_its_field() {
    type Spoil = fn(&mut ConferenceRoom);
    let cases: [(Spoil, &str); 6] = [
        (|r| r.number = String::new(), "number:"),
        (|r| r.number = "80a".into(), "number:"),
        (|r| r.name = "  ".into(), "name:"),
        (|r| r.name = "x".repeat(MAX_ROOM_NAME + 1), "name:"),
        (|r| r.max_participants = 1, "max_participants:"),
        (|r| r.pin_hash = Some("1234".into()), "pin_hash:"),
    ];
    for (spoil, field) in cases {
        let mut txn = MemTxn::default();
        let mut r = room("800");
        spoil(&mut r);
        let resp = create(&mut txn, r);
        assert!(invalid_reason(&resp).starts_with(field), "{resp:?}");
        assert!(txn.0.is_empty());
    }
    let mut big = room("800");
    big.max_participants = 51;
    assert!(big.problem().is_some());
    big.max_participants = 50;
    assert!(big.problem().is_none());
}

#[test]
fn a_number_is_one_things_both_ways() {
    let mut txn = MemTxn::default();
    apply(&mut txn, Command::CreateExtension(ext("1001")));
    assert_eq!(
        create(&mut txn, room("1001")),
        conflict(Table::Extensions, "1001")
    );
    let group = RingGroup {
        number: "600".into(),
        name: "Sales".into(),
        strategy: RingStrategy::All,
        members: vec!["1001".into()],
        ring_secs: 20,
        no_answer: None,
        created_at: 1,
        updated_at: 1,
    };
    let put_group = |g: RingGroup| Command::PutRingGroup {
        group: g,
        mode: PutMode::Create,
    };
    assert_eq!(apply(&mut txn, put_group(group.clone())), Response::Ok);
    assert_eq!(
        create(&mut txn, room("600")),
        conflict(Table::RingGroups, "600")
    );
    let menu = Ivr {
        number: "500".into(),
        name: "Main".into(),
        greeting: None,
        options: vec![],
        direct_dial: false,
        timeout_secs: 5,
        attempts: 3,
        fallback: None,
        created_at: 1,
        updated_at: 1,
    };
    let put_ivr = |i: Ivr| Command::PutIvr {
        ivr: i,
        mode: PutMode::Create,
    };
    assert_eq!(apply(&mut txn, put_ivr(menu.clone())), Response::Ok);
    assert_eq!(create(&mut txn, room("500")), conflict(Table::Ivrs, "500"));

    // The other way: a room's number is no extension's, ring group's or IVR's.
    assert_eq!(create(&mut txn, room("800")), Response::Ok);
    assert_eq!(
        apply(&mut txn, Command::CreateExtension(ext("800"))),
        conflict(Table::ConferenceRooms, "800")
    );
    let mut g = group;
    g.number = "800".into();
    assert_eq!(
        apply(&mut txn, put_group(g)),
        conflict(Table::ConferenceRooms, "800")
    );
    let mut i = menu;
    i.number = "800".into();
    assert_eq!(
        apply(&mut txn, put_ivr(i)),
        conflict(Table::ConferenceRooms, "800")
    );
}

#[test]
fn destinations_may_name_an_existing_room_which_is_then_not_deleted() {
    let mut txn = MemTxn::default();
    let to_room = Destination::Conference("800".into());
    assert_eq!(
        apply(&mut txn, route(to_room.clone())),
        not_found(Table::ConferenceRooms, "800")
    );
    create(&mut txn, room("800"));
    assert_eq!(apply(&mut txn, route(to_room.clone())), Response::Ok);
    assert_eq!(
        delete_room(&mut txn, "800"),
        conflict(Table::InboundRoutes, "main")
    );
    apply(
        &mut txn,
        Command::DeleteRouting {
            kind: RoutingKind::InboundRoute,
            name: "main".into(),
        },
    );

    // A time condition.
    apply(&mut txn, Command::CreateExtension(ext("1001")));
    let cond = TimeCondition {
        name: "office".into(),
        hours: vec![OpenHours {
            days: 0b1_1111,
            from: 9 * 60,
            to: 17 * 60,
        }],
        holidays: vec![],
        open: to_room.clone(),
        closed: Destination::Extension("1001".into()),
        created_at: 1,
        updated_at: 1,
    };
    assert_eq!(
        apply(&mut txn, Command::PutTimeCondition(cond)),
        Response::Ok
    );
    assert_eq!(
        delete_room(&mut txn, "800"),
        conflict(Table::TimeConditions, "office")
    );
    apply(
        &mut txn,
        Command::DeleteTimeCondition {
            name: "office".into(),
        },
    );

    // An IVR's key.
    let menu = Ivr {
        number: "500".into(),
        name: "Main".into(),
        greeting: None,
        options: vec![crate::ivr::IvrOption {
            digit: '3',
            destination: to_room,
        }],
        direct_dial: false,
        timeout_secs: 5,
        attempts: 3,
        fallback: None,
        created_at: 1,
        updated_at: 1,
    };
    let put_ivr = Command::PutIvr {
        ivr: menu,
        mode: PutMode::Create,
    };
    assert_eq!(apply(&mut txn, put_ivr), Response::Ok);
    assert_eq!(delete_room(&mut txn, "800"), conflict(Table::Ivrs, "500"));
    apply(
        &mut txn,
        Command::DeleteIvr {
            number: "500".into(),
        },
    );
    assert_eq!(delete_room(&mut txn, "800"), Response::Ok);
    assert_eq!(
        delete_room(&mut txn, "800"),
        not_found(Table::ConferenceRooms, "800")
    );
}

#[test]
fn participants_need_the_room_and_stop_at_its_limit() {
    let mut txn = MemTxn::default();
    assert_eq!(
        apply(&mut txn, Command::PutParticipant(participant("800", 1))),
        not_found(Table::ConferenceRooms, "800")
    );
    create(&mut txn, room("800"));
    for n in 1..=3 {
        assert_eq!(
            apply(&mut txn, Command::PutParticipant(participant("800", n))),
            Response::Ok
        );
    }
    let full = apply(&mut txn, Command::PutParticipant(participant("800", 4)));
    assert!(invalid_reason(&full).contains("full"), "{full:?}");
    // Someone already in is refreshed, full or not.
    let mut again = participant("800", 2);
    again.caller_name = "Renamed".into();
    assert_eq!(
        apply(&mut txn, Command::PutParticipant(again.clone())),
        Response::Ok
    );
    assert_eq!(participant_of(&txn, "800", 2), Some(again));
}

#[test]
fn participants_are_muted_kicked_and_removed() {
    let mut txn = MemTxn::default();
    create(&mut txn, room("800"));
    apply(&mut txn, Command::PutParticipant(participant("800", 1)));
    let id = format!("{:016x}", 1);
    let mute = |muted| Command::SetParticipantMuted {
        room: "800".into(),
        id: id.clone(),
        muted,
    };
    assert_eq!(apply(&mut txn, mute(true)), Response::Ok);
    assert!(participant_of(&txn, "800", 1).unwrap().muted);
    assert_eq!(apply(&mut txn, mute(false)), Response::Ok);
    assert!(!participant_of(&txn, "800", 1).unwrap().muted);
    let kick = |id: &str| Command::KickParticipant {
        room: "800".into(),
        id: id.into(),
    };
    assert_eq!(apply(&mut txn, kick(&id)), Response::Ok);
    assert!(participant_of(&txn, "800", 1).unwrap().kicked);
    let unknown = format!("{:016x}", 9);
    assert_eq!(
        apply(&mut txn, kick(&unknown)),
        not_found(
            Table::ConferenceParticipants,
            &Participant::key_for("800", &unknown)
        )
    );
    assert!(matches!(
        apply(
            &mut txn,
            Command::SetParticipantMuted {
                room: "800".into(),
                id: unknown,
                muted: true
            }
        ),
        Response::NotFound { .. }
    ));
    let remove = || Command::RemoveParticipant {
        room: "800".into(),
        id: id.clone(),
    };
    assert_eq!(apply(&mut txn, remove()), Response::Ok);
    assert_eq!(participant_of(&txn, "800", 1), None);
    assert_eq!(apply(&mut txn, remove()), Response::Ok, "idempotent");
}

#[test]
fn deleting_a_room_removes_its_participants_only() {
    let mut txn = MemTxn::default();
    create(&mut txn, room("800"));
    create(&mut txn, room("8000"));
    for p in [
        participant("800", 1),
        participant("800", 2),
        participant("8000", 3),
    ] {
        assert_eq!(apply(&mut txn, Command::PutParticipant(p)), Response::Ok);
    }
    assert_eq!(delete_room(&mut txn, "800"), Response::Ok);
    assert!(
        txn.keys_with_prefix(Table::ConferenceParticipants, &Participant::prefix("800"))
            .is_empty()
    );
    assert!(participant_of(&txn, "8000", 3).is_some());
    assert_eq!(stored(&txn, "800"), None);
}

#[test]
fn a_participant_id_is_16_lowercase_hex() {
    assert!(Participant::valid_id("0123456789abcdef"));
    assert!(!Participant::valid_id("0123456789ABCDEF"));
    assert!(!Participant::valid_id("0123"));
}
