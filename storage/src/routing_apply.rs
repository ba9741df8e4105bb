//! Applying the routing commands: references checked in log order, and toll-fraud reservations
//! decided and counted in one step.

use crate::codec::CodecError;
use crate::command::{Response, Txn, create, delete, get, put, table_name, update};
use crate::model::{ActiveCall, Extension};
use crate::routing::{
    Destination, InboundRoute, Limit, OutboundHold, OutboundRoute, PermissionGroup, PutMode,
    Reservation, RoutingKind, RoutingRecord, TollCounter,
};
use crate::tables::{Record, Table};

pub(crate) fn not_found(table: Table, key: &str) -> Response {
    Response::NotFound {
        table: table_name(table),
        key: key.to_owned(),
    }
}

pub(crate) fn conflict(table: Table, key: &str) -> Response {
    Response::Conflict {
        table: table_name(table),
        key: key.to_owned(),
    }
}

/// Record `key` of `table` refused for its own content: `reason` as `field: reason`.
pub(crate) fn invalid(table: Table, key: &str, reason: String) -> Response {
    Response::Invalid {
        table: table_name(table),
        key: key.to_owned(),
        reason,
    }
}

fn write<R: Record>(txn: &mut dyn Txn, rec: &R, mode: PutMode) -> Result<Response, CodecError> {
    match mode {
        PutMode::Create => create(txn, rec),
        PutMode::Update => update(txn, rec),
    }
}

/// The first of `keys` missing from `table`.
fn first_missing<'a>(
    txn: &dyn Txn,
    table: Table,
    mut keys: impl Iterator<Item = &'a String>,
) -> Option<Response> {
    keys.find(|k| txn.get(table, k).is_none())
        .map(|k| not_found(table, k))
}

pub(crate) fn put_routing(
    txn: &mut dyn Txn,
    record: &RoutingRecord,
    mode: PutMode,
) -> Result<Response, CodecError> {
    match record {
        RoutingRecord::Trunk(t) => write(txn, t.as_ref(), mode),
        RoutingRecord::PermissionGroup(g) => {
            if let Some(missing) = first_missing(txn, Table::OutboundRoutes, g.routes.iter()) {
                return Ok(missing);
            }
            write(txn, g, mode)
        }
        RoutingRecord::OutboundRoute(r) => {
            if let Some(missing) = first_missing(txn, Table::Trunks, r.trunks.iter()) {
                return Ok(missing);
            }
            write(txn, r, mode)
        }
        RoutingRecord::InboundRoute(r) => {
            if let Some(missing) = first_missing(txn, Table::Trunks, r.trunk.iter()) {
                return Ok(missing);
            }
            let missing = match &r.destination {
                Destination::Extension(n) => txn
                    .get(Extension::TABLE, n)
                    .is_none()
                    .then_some((Extension::TABLE, n)),
                Destination::RingGroup(n) => txn
                    .get(Table::RingGroups, n)
                    .is_none()
                    .then_some((Table::RingGroups, n)),
                Destination::TimeCondition(n) => txn
                    .get(Table::TimeConditions, n)
                    .is_none()
                    .then_some((Table::TimeConditions, n)),
                Destination::Ivr(n) => txn
                    .get(Table::Ivrs, n)
                    .is_none()
                    .then_some((Table::Ivrs, n)),
                Destination::Conference(n) => txn
                    .get(Table::ConferenceRooms, n)
                    .is_none()
                    .then_some((Table::ConferenceRooms, n)),
            };
            if let Some((table, number)) = missing {
                return Ok(not_found(table, number));
            }
            write(txn, r, mode)
        }
    }
}

/// The first record of `R` that `refers` says refers to the name being deleted.
fn referrer<R: Record>(
    txn: &dyn Txn,
    refers: impl Fn(&R) -> bool,
) -> Result<Option<Response>, CodecError> {
    for key in txn.keys_with_prefix(R::TABLE, "") {
        if get::<R>(txn, &key)?.is_some_and(|r| refers(&r)) {
            return Ok(Some(conflict(R::TABLE, &key)));
        }
    }
    Ok(None)
}

pub(crate) fn delete_routing(
    txn: &mut dyn Txn,
    kind: RoutingKind,
    name: &str,
) -> Result<Response, CodecError> {
    let name_s = name.to_owned();
    let in_use = match kind {
        RoutingKind::Trunk => match referrer::<OutboundRoute>(txn, |r| r.trunks.contains(&name_s))?
        {
            Some(c) => Some(c),
            None => referrer::<InboundRoute>(txn, |r| r.trunk.as_deref() == Some(name))?,
        },
        RoutingKind::OutboundRoute => {
            referrer::<PermissionGroup>(txn, |g| g.routes.contains(&name_s))?
        }
        RoutingKind::PermissionGroup | RoutingKind::InboundRoute => None,
    };
    if let Some(conflict) = in_use {
        return Ok(conflict);
    }
    if kind == RoutingKind::Trunk {
        txn.delete(Table::TrunkStatus, name);
    }
    let response = delete(txn, kind.table(), name, true);
    if response == Response::Ok {
        crate::recording_routes::forget(txn, kind, name);
    }
    Ok(response)
}

/// Drops the calls a counter holds that are gone: reserved longer ago than a call can ring and with
/// no active-call record (the node that placed them died before an answer).
fn drop_vanished(txn: &mut dyn Txn, counter: &mut TollCounter, now: u64, ringing_ms: u64) {
    counter.active.retain(|(id, at)| {
        now.saturating_sub(*at) <= ringing_ms || txn.get(ActiveCall::TABLE, id).is_some()
    });
}

fn counter(txn: &dyn Txn, key: &str) -> Result<TollCounter, CodecError> {
    Ok(
        get::<TollCounter>(txn, key)?.unwrap_or_else(|| TollCounter {
            key: key.to_owned(),
            ..TollCounter::default()
        }),
    )
}

pub(crate) fn reserve(txn: &mut dyn Txn, r: &Reservation) -> Result<Response, CodecError> {
    let response = decide(txn, r)?;
    if let Some(route) = &r.route {
        let mut route = route.clone();
        if let Response::Reserved { trunk } = response {
            route.trunk = r
                .trunks
                .get(trunk as usize)
                .map(|t| t.0.clone())
                .unwrap_or_default();
        }
        put(txn, &route)?;
    }
    Ok(response)
}

fn decide(txn: &mut dyn Txn, r: &Reservation) -> Result<Response, CodecError> {
    let now = r.at;
    let ext_key = TollCounter::extension_key(&r.extension);
    let mut ext = counter(txn, &ext_key)?;
    drop_vanished(txn, &mut ext, now, r.ringing_ms);
    let reached = |counter: &str, limit: Limit, suspended: bool| Response::LimitReached {
        counter: counter.to_owned(),
        limit,
        suspended,
    };
    if ext.suspended.is_some() {
        return Ok(reached(&ext_key, Limit::Suspended, true));
    }
    if let Some(limit) = ext.over(&r.limits, now, r.international) {
        if r.suspend_on_limit {
            ext.suspended = Some((now, limit.as_str().to_owned()));
            put(txn, &ext)?;
        }
        return Ok(reached(&ext_key, limit, r.suspend_on_limit));
    }
    let mut chosen = None;
    for (index, (name, limits)) in r.trunks.iter().enumerate() {
        let key = TollCounter::trunk_key(name);
        let mut trunk = counter(txn, &key)?;
        drop_vanished(txn, &mut trunk, now, r.ringing_ms);
        if trunk.over(limits, now, false).is_none() {
            chosen = Some((index, trunk));
            break;
        }
    }
    let Some((index, mut trunk)) = chosen else {
        return Ok(reached("trunk", Limit::TrunksFull, false));
    };
    ext.count(&r.call_id, now, r.international);
    trunk.count(&r.call_id, now, false);
    put(txn, &ext)?;
    put(txn, &trunk)?;
    let hold = OutboundHold {
        call_id: r.call_id.clone(),
        counters: vec![ext.key, trunk.key],
    };
    put(txn, &hold)?;
    Ok(Response::Reserved {
        trunk: index as u32,
    })
}

pub(crate) fn clear_suspension(txn: &mut dyn Txn, extension: &str) -> Result<Response, CodecError> {
    let key = TollCounter::extension_key(extension);
    match get::<TollCounter>(txn, &key)? {
        Some(mut c) if c.suspended.is_some() => {
            c.suspended = None;
            put(txn, &c)
        }
        _ => Ok(not_found(Table::TollCounters, &key)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::command::Command;
    use crate::command::tests::{MemTxn, cdr, ext};
    use crate::routing::{CallRoute, DidKind, Direction, Limits, RouteClass, Trunk, TrunkKind};

    /// A peer trunk to `carrier.example`, for the tests of what refers to trunks.
    pub(crate) fn trunk(name: &str) -> Trunk {
        Trunk {
            name: name.into(),
            kind: TrunkKind::Peer,
            enabled: true,
            host: "carrier.example".into(),
            port: None,
            transport: None,
            outbound_proxy: None,
            username: String::new(),
            password: String::new(),
            realm: String::new(),
            from_user: String::new(),
            from_domain: String::new(),
            caller_id: String::new(),
            send_pai: false,
            dids: vec![],
            max_calls: 0,
            calls_per_minute: 0,
            qualify_secs: 0,
            register_expires: 600,
            allow_anonymous: false,
            peer_networks: vec![],
            peer_hosts: vec![],
            created_at: 1,
            updated_at: 1,
        }
    }

    fn route(name: &str, trunks: &[&str]) -> OutboundRoute {
        OutboundRoute {
            name: name.into(),
            position: 0,
            patterns: vec!["9.".into()],
            strip: 1,
            prepend: String::new(),
            class: RouteClass::Local,
            trunks: trunks.iter().map(|t| (*t).to_owned()).collect(),
            caller_id: None,
            created_at: 1,
            updated_at: 1,
        }
    }

    fn apply(txn: &mut MemTxn, cmd: Command) -> Response {
        cmd.apply(txn).unwrap()
    }

    fn put_cmd(record: RoutingRecord, mode: PutMode) -> Command {
        Command::PutRouting { record, mode }
    }

    #[test]
    fn references_must_exist_and_block_deletes() {
        let mut txn = MemTxn::default();
        let r = apply(
            &mut txn,
            put_cmd(
                RoutingRecord::OutboundRoute(route("local", &["a"])),
                PutMode::Create,
            ),
        );
        assert_eq!(r, not_found(Table::Trunks, "a"));
        let t = RoutingRecord::Trunk(Box::new(trunk("a")));
        assert_eq!(
            apply(&mut txn, put_cmd(t.clone(), PutMode::Create)),
            Response::Ok
        );
        assert_eq!(
            apply(&mut txn, put_cmd(t, PutMode::Create)),
            conflict(Table::Trunks, "a")
        );
        let r = RoutingRecord::OutboundRoute(route("local", &["a"]));
        assert_eq!(apply(&mut txn, put_cmd(r, PutMode::Create)), Response::Ok);
        let del = |kind, name: &str| Command::DeleteRouting {
            kind,
            name: name.into(),
        };
        assert_eq!(
            apply(&mut txn, del(RoutingKind::Trunk, "a")),
            conflict(Table::OutboundRoutes, "local")
        );
        // An inbound route needs its extension.
        let inbound = InboundRoute {
            name: "main".into(),
            did_kind: DidKind::Exact,
            did: "15550100".into(),
            caller_id: None,
            trunk: Some("a".into()),
            destination: Destination::Extension("1001".into()),
            created_at: 1,
            updated_at: 1,
        };
        let put_inbound = || {
            put_cmd(
                RoutingRecord::InboundRoute(inbound.clone()),
                PutMode::Create,
            )
        };
        assert_eq!(
            apply(&mut txn, put_inbound()),
            not_found(Table::Extensions, "1001")
        );
        apply(&mut txn, Command::CreateExtension(ext("1001")));
        assert_eq!(apply(&mut txn, put_inbound()), Response::Ok);
        assert_eq!(
            apply(&mut txn, del(RoutingKind::OutboundRoute, "local")),
            Response::Ok
        );
        assert_eq!(
            apply(&mut txn, del(RoutingKind::Trunk, "a")),
            conflict(Table::InboundRoutes, "main")
        );
        assert_eq!(
            apply(&mut txn, del(RoutingKind::InboundRoute, "main")),
            Response::Ok
        );
        assert_eq!(apply(&mut txn, del(RoutingKind::Trunk, "a")), Response::Ok);
        assert_eq!(
            apply(&mut txn, del(RoutingKind::Trunk, "a")),
            not_found(Table::Trunks, "a")
        );
    }

    fn reservation(call_id: &str, at: u64, limits: Limits, suspend: bool) -> Command {
        Command::ReserveOutbound(Box::new(Reservation {
            call_id: call_id.into(),
            extension: "1001".into(),
            limits,
            international: false,
            suspend_on_limit: suspend,
            trunks: vec![
                (
                    "a".into(),
                    Limits {
                        simultaneous: 1,
                        ..Limits::default()
                    },
                ),
                ("b".into(), Limits::default()),
            ],
            at,
            ringing_ms: 120_000,
            route: Some(CallRoute {
                cdr_key: format!("{at:020}-{call_id}"),
                direction: Direction::Outbound,
                trunk: String::new(),
                did: String::new(),
                route: "national".into(),
                dialled: "95550100".into(),
                sent: "5550100".into(),
            }),
        }))
    }

    fn end(txn: &mut MemTxn, call_id: &str) {
        let cmd = Command::EndCall {
            call_id: call_id.into(),
            cdr: Box::new(cdr(1, call_id)),
        };
        assert_eq!(apply(txn, cmd), Response::Ok);
    }

    #[test]
    fn reservations_fill_trunks_in_order_and_ending_releases_them() {
        let mut txn = MemTxn::default();
        let none = Limits::default();
        assert_eq!(
            apply(&mut txn, reservation("c1", 1_000, none, false)),
            Response::Reserved { trunk: 0 }
        );
        // Trunk a holds one call at a time: the next goes to b.
        assert_eq!(
            apply(&mut txn, reservation("c2", 2_000, none, false)),
            Response::Reserved { trunk: 1 }
        );
        end(&mut txn, "c1");
        assert_eq!(
            apply(&mut txn, reservation("c3", 3_000, none, false)),
            Response::Reserved { trunk: 0 }
        );
        let ext: TollCounter = get(&txn, "ext:1001").unwrap().unwrap();
        assert_eq!(ext.minute.count, 3);
        assert_eq!(ext.active.len(), 2);
        assert!(get::<OutboundHold>(&txn, "c1").unwrap().is_none());
        // Each call's route names the trunk it was counted on.
        let trunk_of = |key: &str| get::<CallRoute>(&txn, key).unwrap().unwrap().trunk;
        assert_eq!(trunk_of(&format!("{:020}-c2", 2_000)), "b");
        assert_eq!(trunk_of(&format!("{:020}-c3", 3_000)), "a");
    }

    #[test]
    fn a_limit_refuses_without_counting_and_can_suspend_until_cleared() {
        let mut txn = MemTxn::default();
        let limits = Limits {
            per_minute: 2,
            ..Limits::default()
        };
        for (id, at) in [("c1", 60_000), ("c2", 61_000)] {
            assert!(matches!(
                apply(&mut txn, reservation(id, at, limits, true)),
                Response::Reserved { .. }
            ));
        }
        let refused = apply(&mut txn, reservation("c3", 62_000, limits, true));
        assert_eq!(
            refused,
            Response::LimitReached {
                counter: "ext:1001".into(),
                limit: Limit::PerMinute,
                suspended: true
            }
        );
        // Suspended: even in the next minute.
        let next = apply(&mut txn, reservation("c4", 125_000, limits, true));
        assert!(matches!(
            next,
            Response::LimitReached {
                limit: Limit::Suspended,
                ..
            }
        ));
        let clear = || Command::ClearSuspension {
            extension: "1001".into(),
        };
        assert_eq!(apply(&mut txn, clear()), Response::Ok);
        assert!(matches!(
            apply(&mut txn, clear()),
            Response::NotFound { .. }
        ));
        assert!(matches!(
            apply(&mut txn, reservation("c5", 125_000, limits, true)),
            Response::Reserved { .. }
        ));
    }

    #[test]
    fn a_call_whose_node_died_while_ringing_stops_counting_as_simultaneous() {
        let mut txn = MemTxn::default();
        let one = Limits {
            simultaneous: 1,
            ..Limits::default()
        };
        assert!(matches!(
            apply(&mut txn, reservation("c1", 1_000, one, false)),
            Response::Reserved { .. }
        ));
        assert!(matches!(
            apply(&mut txn, reservation("c2", 60_000, one, false)),
            Response::LimitReached {
                limit: Limit::Simultaneous,
                ..
            }
        ));
        // Past the ringing window with no active-call record, c1 is gone.
        assert!(matches!(
            apply(&mut txn, reservation("c2", 122_000, one, false)),
            Response::Reserved { .. }
        ));
    }

    #[test]
    fn every_trunk_full_is_its_own_refusal() {
        let mut txn = MemTxn::default();
        let cmd = |id: &str| {
            Command::ReserveOutbound(Box::new(Reservation {
                call_id: id.into(),
                extension: "1001".into(),
                limits: Limits::default(),
                international: false,
                suspend_on_limit: true,
                trunks: vec![(
                    "a".into(),
                    Limits {
                        per_minute: 1,
                        ..Limits::default()
                    },
                )],
                at: 5_000,
                ringing_ms: 1,
                route: None,
            }))
        };
        assert_eq!(apply(&mut txn, cmd("c1")), Response::Reserved { trunk: 0 });
        assert_eq!(
            apply(&mut txn, cmd("c2")),
            Response::LimitReached {
                counter: "trunk".into(),
                limit: Limit::TrunksFull,
                suspended: false
            }
        );
        let ext: TollCounter = get(&txn, "ext:1001").unwrap().unwrap();
        assert!(ext.suspended.is_none());
    }
}
