use super::*;
use crate::codec;
use crate::command::Command;
use crate::command::tests::{MemTxn, ext};
use crate::features::{RingGroup, RingStrategy};
use crate::routing::{DidKind, RoutingKind, RoutingRecord};
use crate::time_condition::OpenHours;

fn apply(txn: &mut MemTxn, cmd: Command) -> Response {
    cmd.apply(txn).unwrap()
}

fn put_ivr(txn: &mut MemTxn, ivr: Ivr, mode: PutMode) -> Response {
    apply(txn, Command::PutIvr { ivr, mode })
}

fn create(txn: &mut MemTxn, ivr: Ivr) -> Response {
    put_ivr(txn, ivr, PutMode::Create)
}

fn delete_ivr(txn: &mut MemTxn, number: &str) -> Response {
    apply(
        txn,
        Command::DeleteIvr {
            number: number.into(),
        },
    )
}

fn stored(txn: &MemTxn, number: &str) -> Option<Ivr> {
    get::<Ivr>(txn, number).unwrap()
}

fn audio_id(n: u8) -> String {
    format!("{n:032x}")
}

fn audio(n: u8, kind: AudioKind) -> AudioFile {
    AudioFile {
        id: audio_id(n),
        kind,
        owner: String::new(),
        name: "Welcome".into(),
        call_id: None,
        size: 100,
        sha256: "00".repeat(32),
        created_at: 1,
        retain_until: None,
        holders: vec![1],
    }
}

fn option(digit: char, destination: Destination) -> IvrOption {
    IvrOption { digit, destination }
}

/// The main menu: 1 for reception, 2 for sales, 9 back to the menu; the office hours after three
/// tries; the prompt of [`lab`].
fn main_menu() -> Ivr {
    Ivr {
        number: "500".into(),
        name: "Main menu".into(),
        greeting: Some(audio_id(1)),
        options: vec![
            option('1', Destination::Extension("1001".into())),
            option('2', Destination::RingGroup("600".into())),
            option('9', Destination::Ivr("500".into())),
        ],
        direct_dial: true,
        timeout_secs: 5,
        attempts: 3,
        fallback: Some(Destination::TimeCondition("office".into())),
        created_at: 1,
        updated_at: 1,
    }
}

/// Extension 1001, ring group 600, time condition `office` and prompt 1 (a recording 2).
fn lab() -> MemTxn {
    let mut txn = MemTxn::default();
    assert_eq!(
        apply(&mut txn, Command::CreateExtension(ext("1001"))),
        Response::Ok
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
    let put = Command::PutRingGroup {
        group,
        mode: PutMode::Create,
    };
    assert_eq!(apply(&mut txn, put), Response::Ok);
    assert_eq!(
        apply(&mut txn, Command::PutTimeCondition(office())),
        Response::Ok
    );
    for f in [audio(1, AudioKind::Prompt), audio(2, AudioKind::Recording)] {
        assert_eq!(apply(&mut txn, Command::PutAudioFile(f)), Response::Ok);
    }
    txn
}

fn office() -> TimeCondition {
    TimeCondition {
        name: "office".into(),
        hours: vec![OpenHours {
            days: 0b1_1111,
            from: 9 * 60,
            to: 17 * 60,
        }],
        holidays: vec![],
        open: Destination::Extension("1001".into()),
        closed: Destination::RingGroup("600".into()),
        created_at: 1,
        updated_at: 1,
    }
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

fn is_invalid(r: &Response, field: &str) -> bool {
    matches!(r, Response::Invalid { table, key, reason }
        if table == "ivrs" && key == "500" && reason.starts_with(field))
}

#[test]
fn an_ivr_is_created_read_back_and_replaced_in_place() {
    let mut txn = lab();
    assert_eq!(create(&mut txn, main_menu()), Response::Ok);
    assert_eq!(stored(&txn, "500"), Some(main_menu()));
    assert_eq!(
        create(&mut txn, main_menu()),
        conflict(Table::Ivrs, "500"),
        "a create of an existing IVR"
    );
    let mut other = main_menu();
    other.number = "501".into();
    assert_eq!(
        put_ivr(&mut txn, other, PutMode::Update),
        not_found(Table::Ivrs, "501"),
        "a replace of none"
    );
    let mut quieter = main_menu();
    quieter.greeting = None;
    quieter.options.truncate(1);
    quieter.fallback = None;
    quieter.updated_at = 2;
    assert_eq!(
        put_ivr(&mut txn, quieter.clone(), PutMode::Update),
        Response::Ok
    );
    assert_eq!(stored(&txn, "500"), Some(quieter));
    assert_eq!(txn.keys_with_prefix(Table::Ivrs, ""), ["500"]);
    let menu = stored(&txn, "500").unwrap();
    assert_eq!(
        menu.choice('1'),
        Some(&Destination::Extension("1001".into()))
    );
    assert_eq!(menu.choice('2'), None);
}

#[test]
fn the_encoding_of_earlier_variants_is_unchanged() {
    // Version byte, then the variant's index as a little-endian u32: the IVR's are appended.
    let index = |bytes: Vec<u8>| u32::from_le_bytes(bytes[1..5].try_into().unwrap());
    let d = |d: Destination| index(codec::encode(&d).unwrap());
    assert_eq!(d(Destination::Extension("1".into())), 0);
    assert_eq!(d(Destination::TimeCondition("a".into())), 2);
    assert_eq!(d(Destination::Ivr("5".into())), 3);
    let c = |c: Command| index(codec::encode(&c).unwrap());
    let tc = c(Command::DeleteTimeCondition { name: "a".into() });
    let put = Command::PutIvr {
        ivr: main_menu(),
        mode: PutMode::Create,
    };
    assert_eq!(c(put), tc + 1);
    assert_eq!(
        c(Command::DeleteIvr {
            number: "500".into()
        }),
        tc + 2
    );
    let ivr: Ivr = codec::decode(&codec::encode(&main_menu()).unwrap()).unwrap();
    assert_eq!(ivr, main_menu());
}

#[test]
fn a_malformed_ivr_is_refused_naming_its_field_and_nothing_is_stored() {
    let mut txn = lab();
    let with = |f: &dyn Fn(&mut Ivr)| {
        let mut ivr = main_menu();
        f(&mut ivr);
        ivr
    };
    let keys = |n: usize| {
        IVR_KEYS
            .iter()
            .chain(['1'].iter())
            .take(n)
            .map(|k| option(*k, Destination::Extension("1001".into())))
            .collect::<Vec<_>>()
    };
    let cases: Vec<(Ivr, &str)> = vec![
        (with(&|i| i.name = String::new()), "name:"),
        (with(&|i| i.name = "   ".into()), "name:"),
        (with(&|i| i.name = "x".repeat(MAX_IVR_NAME + 1)), "name:"),
        (with(&|i| i.name = "Main\nmenu".into()), "name:"),
        (
            with(&|i| i.greeting = Some("../prompt".into())),
            "greeting:",
        ),
        (with(&|i| i.options = keys(MAX_IVR_OPTIONS + 1)), "options:"),
        (
            with(&|i| i.options[1].digit = 'a'),
            "options[1].digit: one of",
        ),
        (
            with(&|i| i.options[2].digit = '1'),
            "options[2].digit: key 1 is listed twice",
        ),
        (with(&|i| i.timeout_secs = 0), "timeout_secs:"),
        (with(&|i| i.timeout_secs = 61), "timeout_secs:"),
        (with(&|i| i.attempts = 0), "attempts:"),
        (with(&|i| i.attempts = 6), "attempts:"),
    ];
    for (ivr, field) in cases {
        let r = create(&mut txn, ivr.clone());
        assert!(is_invalid(&r, field), "{field}: {r:?}");
        assert_eq!(
            ivr.problem().as_deref().map(|p| p.starts_with(field)),
            Some(true)
        );
    }
    // Every key once is fine; a number that is not 1 to 32 digits is refused under its own key.
    assert_eq!(with(&|i| i.options = keys(MAX_IVR_OPTIONS)).problem(), None);
    for bad in ["", "50a", "+500", &"5".repeat(MAX_IVR_NUMBER + 1)] {
        let ivr = with(&|i| i.number = bad.into());
        assert!(
            matches!(create(&mut txn, ivr), Response::Invalid { reason, .. } if reason.starts_with("number:")),
            "{bad:?}"
        );
    }
    assert!(Ivr::valid_number("0") && Ivr::valid_number(&"9".repeat(MAX_IVR_NUMBER)));
    assert!(txn.keys_with_prefix(Table::Ivrs, "").is_empty());
}

#[test]
fn the_greeting_must_be_a_prompt_of_the_audio_index() {
    let mut txn = lab();
    let mut ivr = main_menu();
    ivr.greeting = Some(audio_id(9));
    assert_eq!(
        create(&mut txn, ivr.clone()),
        not_found(Table::AudioFiles, &audio_id(9))
    );
    ivr.greeting = Some(audio_id(2));
    let r = create(&mut txn, ivr.clone());
    assert!(is_invalid(&r, "greeting:"), "{r:?}");
    assert!(
        matches!(&r, Response::Invalid { reason, .. } if reason.contains("recording, not a prompt")),
        "{r:?}"
    );
    assert!(txn.keys_with_prefix(Table::Ivrs, "").is_empty());
    ivr.greeting = None;
    assert_eq!(create(&mut txn, ivr), Response::Ok, "no greeting is fine");
}

#[test]
fn every_destination_must_exist_but_a_key_may_lead_back_to_the_menu() {
    let mut txn = lab();
    let missing = [
        (Destination::Extension("1999".into()), Table::Extensions),
        (Destination::RingGroup("699".into()), Table::RingGroups),
        (
            Destination::TimeCondition("night".into()),
            Table::TimeConditions,
        ),
        (Destination::Ivr("501".into()), Table::Ivrs),
        (
            Destination::Conference("800".into()),
            Table::ConferenceRooms,
        ),
    ];
    for (d, table) in missing {
        let key = match &d {
            Destination::Extension(k)
            | Destination::RingGroup(k)
            | Destination::TimeCondition(k)
            | Destination::Ivr(k)
            | Destination::Conference(k) => k.clone(),
        };
        let mut ivr = main_menu();
        ivr.options[1].destination = d.clone();
        assert_eq!(create(&mut txn, ivr), not_found(table, &key), "{d:?}");
        let mut ivr = main_menu();
        ivr.fallback = Some(d.clone());
        assert_eq!(
            create(&mut txn, ivr),
            not_found(table, &key),
            "fallback {d:?}"
        );
    }
    assert!(txn.keys_with_prefix(Table::Ivrs, "").is_empty());
    // Itself (key 9) on creation; and another IVR once it exists.
    assert_eq!(create(&mut txn, main_menu()), Response::Ok);
    let mut sub = main_menu();
    sub.number = "501".into();
    sub.options = vec![option('0', Destination::Ivr("500".into()))];
    sub.fallback = Some(Destination::Ivr("501".into()));
    assert_eq!(create(&mut txn, sub), Response::Ok);
}

#[test]
fn an_ivr_shares_no_number_with_an_extension_or_a_ring_group_either_way() {
    let mut txn = lab();
    for (number, table) in [("1001", Table::Extensions), ("600", Table::RingGroups)] {
        let mut ivr = main_menu();
        ivr.number = number.into();
        ivr.options.clear();
        assert_eq!(create(&mut txn, ivr), conflict(table, number));
    }
    assert_eq!(create(&mut txn, main_menu()), Response::Ok);
    assert_eq!(
        apply(&mut txn, Command::CreateExtension(ext("500"))),
        conflict(Table::Ivrs, "500"),
        "an extension cannot take an IVR's number"
    );
    let group = RingGroup {
        number: "500".into(),
        name: "Clash".into(),
        strategy: RingStrategy::All,
        members: vec!["1001".into()],
        ring_secs: 20,
        no_answer: None,
        created_at: 1,
        updated_at: 1,
    };
    assert_eq!(
        apply(
            &mut txn,
            Command::PutRingGroup {
                group,
                mode: PutMode::Create
            }
        ),
        conflict(Table::Ivrs, "500"),
        "nor a ring group"
    );
    assert!(txn.get(Table::Extensions, "500").is_none());
    assert!(txn.get(Table::RingGroups, "500").is_none());
}

#[test]
fn routes_and_time_conditions_may_send_calls_to_an_existing_ivr() {
    let mut txn = lab();
    assert_eq!(
        apply(&mut txn, route(Destination::Ivr("500".into()))),
        not_found(Table::Ivrs, "500")
    );
    let mut night = office();
    night.name = "night".into();
    night.closed = Destination::Ivr("500".into());
    assert_eq!(
        apply(&mut txn, Command::PutTimeCondition(night.clone())),
        not_found(Table::Ivrs, "500")
    );
    assert_eq!(create(&mut txn, main_menu()), Response::Ok);
    assert_eq!(
        apply(&mut txn, route(Destination::Ivr("500".into()))),
        Response::Ok
    );
    assert_eq!(
        apply(&mut txn, Command::PutTimeCondition(night)),
        Response::Ok
    );
}

#[test]
fn an_ivr_is_not_deleted_while_something_sends_calls_to_it() {
    let mut txn = lab();
    assert_eq!(create(&mut txn, main_menu()), Response::Ok);
    let mut sub = main_menu();
    sub.number = "501".into();
    sub.options = vec![option('0', Destination::Ivr("500".into()))];
    sub.fallback = None;
    assert_eq!(create(&mut txn, sub.clone()), Response::Ok);
    assert_eq!(
        apply(&mut txn, route(Destination::Ivr("500".into()))),
        Response::Ok
    );
    let mut night = office();
    night.name = "night".into();
    night.open = Destination::Ivr("500".into());
    assert_eq!(
        apply(&mut txn, Command::PutTimeCondition(night)),
        Response::Ok
    );

    // The route first, then the condition, then the other IVR: each named until it is gone.
    assert_eq!(
        delete_ivr(&mut txn, "500"),
        conflict(Table::InboundRoutes, "main")
    );
    let drop_route = Command::DeleteRouting {
        kind: RoutingKind::InboundRoute,
        name: "main".into(),
    };
    assert_eq!(apply(&mut txn, drop_route), Response::Ok);
    assert_eq!(
        delete_ivr(&mut txn, "500"),
        conflict(Table::TimeConditions, "night")
    );
    let drop_night = Command::DeleteTimeCondition {
        name: "night".into(),
    };
    assert_eq!(apply(&mut txn, drop_night), Response::Ok);
    assert_eq!(delete_ivr(&mut txn, "500"), conflict(Table::Ivrs, "501"));
    sub.options.clear();
    sub.fallback = Some(Destination::Ivr("500".into()));
    assert_eq!(
        put_ivr(&mut txn, sub, PutMode::Update),
        Response::Ok,
        "a fallback counts as a key does"
    );
    assert_eq!(delete_ivr(&mut txn, "500"), conflict(Table::Ivrs, "501"));
    assert_eq!(delete_ivr(&mut txn, "501"), Response::Ok);
    // Its own key 9 back to the menu does not keep it.
    assert_eq!(delete_ivr(&mut txn, "500"), Response::Ok);
    assert!(stored(&txn, "500").is_none());
    assert_eq!(delete_ivr(&mut txn, "500"), not_found(Table::Ivrs, "500"));
}

#[test]
fn a_ring_group_or_time_condition_an_ivr_sends_calls_to_is_not_deleted() {
    let mut txn = lab();
    // The main menu sends key 2 to ring group 600 and its fallback to `office`; `office`
    // itself sends calls to 600 when closed, so the condition goes first.
    assert_eq!(create(&mut txn, main_menu()), Response::Ok);
    assert_eq!(
        apply(
            &mut txn,
            Command::DeleteTimeCondition {
                name: "office".into()
            }
        ),
        conflict(Table::Ivrs, "500")
    );
    let mut menu = main_menu();
    menu.fallback = None;
    assert_eq!(
        put_ivr(&mut txn, menu.clone(), PutMode::Update),
        Response::Ok
    );
    assert_eq!(
        apply(
            &mut txn,
            Command::DeleteTimeCondition {
                name: "office".into()
            }
        ),
        Response::Ok
    );
    assert_eq!(
        apply(
            &mut txn,
            Command::DeleteRingGroup {
                number: "600".into()
            }
        ),
        conflict(Table::Ivrs, "500")
    );
    menu.options.retain(|o| o.digit != '2');
    assert_eq!(put_ivr(&mut txn, menu, PutMode::Update), Response::Ok);
    assert_eq!(
        apply(
            &mut txn,
            Command::DeleteRingGroup {
                number: "600".into()
            }
        ),
        Response::Ok
    );
}
