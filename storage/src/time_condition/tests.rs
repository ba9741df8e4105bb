use super::*;
use crate::command::Command;
use crate::command::tests::{MemTxn, ext};
use crate::features::{RingGroup, RingStrategy};
use crate::routing::{DidKind, PutMode, RoutingRecord};

fn apply(txn: &mut MemTxn, cmd: Command) -> Response {
    cmd.apply(txn).unwrap()
}

const WEEKDAYS: u8 = 0b001_1111;

/// Open Monday to Friday 09:00–17:30, closed on the holidays.
fn office(holidays: &[(&str, &str)]) -> TimeCondition {
    TimeCondition {
        name: "office".into(),
        hours: vec![OpenHours {
            days: WEEKDAYS,
            from: 9 * 60,
            to: 17 * 60 + 30,
        }],
        holidays: holidays
            .iter()
            .map(|(from, to)| Holiday {
                name: "closed".into(),
                from: (*from).into(),
                to: (*to).into(),
            })
            .collect(),
        open: Destination::Extension("1001".into()),
        closed: Destination::RingGroup("600".into()),
        created_at: 1,
        updated_at: 1,
    }
}

fn at(date: &str, weekday: u8, hh: u16, mm: u16) -> LocalTime {
    LocalTime {
        date: date.into(),
        weekday,
        minute: hh * 60 + mm,
    }
}

#[test]
fn open_within_the_weekly_hours_and_closed_outside_them_and_on_holidays() {
    let c = office(&[("2026-12-24", "2026-12-26")]);
    // Monday 2026-11-30.
    assert!(c.is_open(&at("2026-11-30", 0, 9, 0)), "from is included");
    assert!(c.is_open(&at("2026-11-30", 0, 17, 29)));
    assert!(!c.is_open(&at("2026-11-30", 0, 17, 30)), "to is not");
    assert!(!c.is_open(&at("2026-11-30", 0, 8, 59)));
    assert!(!c.is_open(&at("2026-12-05", 5, 10, 0)), "Saturday");
    assert!(
        !c.is_open(&at("2026-12-24", 3, 10, 0)),
        "a holiday's first day"
    );
    assert!(!c.is_open(&at("2026-12-25", 4, 10, 0)));
    assert!(c.is_open(&at("2026-12-28", 0, 10, 0)), "after the holidays");
    assert_eq!(
        c.destination(&at("2026-12-25", 4, 10, 0)),
        &Destination::RingGroup("600".into())
    );
    assert_eq!(
        c.destination(&at("2026-11-30", 0, 10, 0)),
        &Destination::Extension("1001".into())
    );
    let all_day = OpenHours {
        days: 0x7f,
        from: 0,
        to: DAY_MINUTES,
    };
    assert!(all_day.valid() && all_day.covers(&at("2026-11-29", 6, 23, 59)));
}

#[test]
fn bad_hours_holidays_and_names_are_named() {
    let mut c = office(&[]);
    assert_eq!(c.problem(), None);
    c.hours[0].to = c.hours[0].from;
    assert!(c.problem().unwrap().starts_with("hours[0]"));
    c = office(&[("2026-02-29", "2026-03-01")]);
    assert!(
        c.problem().unwrap().starts_with("holidays[0]"),
        "2026 is no leap year"
    );
    c = office(&[("2028-02-29", "2028-02-29")]);
    assert_eq!(c.problem(), None, "2028 is");
    c = office(&[("2026-12-26", "2026-12-24")]);
    assert!(c.problem().is_some(), "from after to");
    for bad in ["", "a b", "x/y", &"a".repeat(33)] {
        c = office(&[]);
        c.name = bad.into();
        assert!(c.problem().unwrap().starts_with("name"), "{bad:?}");
    }
    for bad in [
        "2026-1-01",
        "2026-13-01",
        "2026-00-10",
        "2026-04-31",
        "20261201xx",
        "２０２６-01-01",
    ] {
        assert!(!valid_date(bad), "{bad}");
    }
}

fn lab() -> MemTxn {
    let mut txn = MemTxn::default();
    assert_eq!(
        apply(&mut txn, Command::CreateExtension(ext("1001"))),
        Response::Ok
    );
    let group = RingGroup {
        number: "600".into(),
        name: "Night".into(),
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
    txn
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

#[test]
fn references_are_checked_both_ways() {
    let mut txn = lab();
    let mut c = office(&[]);
    c.closed = Destination::RingGroup("601".into());
    assert!(matches!(
        apply(&mut txn, Command::PutTimeCondition(c)),
        Response::NotFound { key, .. } if key == "601"
    ));
    c = office(&[]);
    c.open = Destination::TimeCondition("office".into());
    assert!(
        matches!(
            apply(&mut txn, Command::PutTimeCondition(c)),
            Response::NotFound { .. }
        ),
        "a condition leads to no condition"
    );
    assert!(matches!(
        apply(&mut txn, route(Destination::TimeCondition("office".into()))),
        Response::NotFound { key, .. } if key == "office"
    ));
    assert_eq!(
        apply(&mut txn, Command::PutTimeCondition(office(&[]))),
        Response::Ok
    );
    assert_eq!(
        apply(&mut txn, route(Destination::TimeCondition("office".into()))),
        Response::Ok
    );
    assert!(matches!(
        apply(&mut txn, Command::DeleteTimeCondition { name: "office".into() }),
        Response::Conflict { key, .. } if key == "main"
    ));
    assert!(matches!(
        apply(&mut txn, Command::DeleteRingGroup { number: "600".into() }),
        Response::Conflict { key, .. } if key == "office"
    ));
    assert_eq!(
        apply(
            &mut txn,
            Command::DeleteRouting {
                kind: crate::routing::RoutingKind::InboundRoute,
                name: "main".into()
            }
        ),
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
    assert!(matches!(
        apply(
            &mut txn,
            Command::DeleteTimeCondition {
                name: "office".into()
            }
        ),
        Response::NotFound { .. }
    ));
}
