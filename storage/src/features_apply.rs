//! Applying the call-feature commands: references checked in log order, so that a ring group never
//! names an extension that does not exist and never shares a number with one or with an IVR, a
//! pickup group names only extensions that exist, and no feature code and pickup code shadow each
//! other.

use crate::codec::{self, CodecError};
use crate::command::{Response, Txn, delete, get, put};
use crate::features::{
    CallHandling, FeatureCodes, MAX_SUBSCRIPTIONS_PER_WATCHER, PickupCodes, PickupGroup, RingGroup,
    Subscription, codes_clash,
};
use crate::routing::{Destination, InboundRoute, PutMode};
use crate::routing_apply::{conflict, not_found};
use crate::tables::{Record, Table};

pub(crate) fn put_call_handling(
    txn: &mut dyn Txn,
    handling: &CallHandling,
) -> Result<Response, CodecError> {
    if txn.get(Table::Extensions, &handling.extension).is_none() {
        return Ok(not_found(Table::Extensions, &handling.extension));
    }
    put(txn, handling)
}

pub(crate) fn put_ring_group(
    txn: &mut dyn Txn,
    group: &RingGroup,
    mode: PutMode,
) -> Result<Response, CodecError> {
    let exists = txn.get(Table::RingGroups, &group.number).is_some();
    match (mode, exists) {
        (PutMode::Create, true) => return Ok(conflict(Table::RingGroups, &group.number)),
        (PutMode::Update, false) => return Ok(not_found(Table::RingGroups, &group.number)),
        _ => {}
    }
    // One number, one thing to ring.
    for table in [Table::Extensions, Table::Ivrs, Table::ConferenceRooms] {
        if txn.get(table, &group.number).is_some() {
            return Ok(conflict(table, &group.number));
        }
    }
    if let Some(m) = group
        .members
        .iter()
        .find(|m| txn.get(Table::Extensions, m).is_none())
    {
        return Ok(not_found(Table::Extensions, m));
    }
    if let Some(target) = &group.no_answer {
        let known = txn.get(Table::Extensions, target).is_some()
            || (target != &group.number && txn.get(Table::RingGroups, target).is_some());
        if !known {
            return Ok(not_found(Table::RingGroups, target));
        }
    }
    put(txn, group)
}

/// Deletes a ring group; `Conflict` names an inbound route, another group, a time condition or an
/// IVR that still sends calls to it.
pub(crate) fn delete_ring_group(txn: &mut dyn Txn, number: &str) -> Result<Response, CodecError> {
    if txn.get(Table::RingGroups, number).is_none() {
        return Ok(not_found(Table::RingGroups, number));
    }
    for key in txn.keys_with_prefix(Table::InboundRoutes, "") {
        let Some(bytes) = txn.get(Table::InboundRoutes, &key) else {
            continue;
        };
        let route: InboundRoute = codec::decode(&bytes)?;
        if route.destination == Destination::RingGroup(number.to_owned()) {
            return Ok(conflict(InboundRoute::TABLE, &route.name));
        }
    }
    for key in txn.keys_with_prefix(Table::RingGroups, "") {
        let Some(bytes) = txn.get(Table::RingGroups, &key) else {
            continue;
        };
        let other: RingGroup = codec::decode(&bytes)?;
        if other.number != number && other.no_answer.as_deref() == Some(number) {
            return Ok(conflict(Table::RingGroups, &other.number));
        }
    }
    if let Some(cond) = crate::time_condition::sending_to_ring_group(txn, number)? {
        return Ok(conflict(Table::TimeConditions, &cond));
    }
    if let Some(ivr) = crate::ivr::sending_to(txn, &Destination::RingGroup(number.to_owned()))? {
        return Ok(conflict(Table::Ivrs, &ivr));
    }
    Ok(delete(txn, Table::RingGroups, number, true))
}

/// Creating an extension: refused when a ring group, an IVR or a conference room has its number.
pub(crate) fn number_free(txn: &dyn Txn, number: &str) -> Option<Response> {
    [Table::RingGroups, Table::Ivrs, Table::ConferenceRooms]
        .into_iter()
        .find(|t| txn.get(*t, number).is_some())
        .map(|t| conflict(t, number))
}

/// Creates or replaces a pickup group; `NotFound` names a member that is no extension.
pub(crate) fn put_pickup_group(
    txn: &mut dyn Txn,
    group: &PickupGroup,
) -> Result<Response, CodecError> {
    if let Some(m) = group
        .members
        .iter()
        .find(|m| txn.get(Table::Extensions, m).is_none())
    {
        return Ok(not_found(Table::Extensions, m));
    }
    put(txn, group)
}

/// Extension `number` was deleted: it leaves every pickup group it was in (a group left empty
/// stays, for its admin to fill again).
pub(crate) fn leave_pickup_groups(txn: &mut dyn Txn, number: &str) -> Result<(), CodecError> {
    for key in txn.keys_with_prefix(Table::PickupGroups, "") {
        let Some(mut group) = get::<PickupGroup>(txn, &key)? else {
            continue;
        };
        if group.has(number) {
            group.members.retain(|m| m != number);
            put(txn, &group)?;
        }
    }
    Ok(())
}

/// Sets the feature codes unless one shadows a pickup code (the stored ones, or the defaults):
/// `Conflict` on [`PickupCodes::KEY`].
pub(crate) fn put_feature_codes(
    txn: &mut dyn Txn,
    codes: &FeatureCodes,
) -> Result<Response, CodecError> {
    let pickup = get::<PickupCodes>(txn, PickupCodes::KEY)?.unwrap_or_default();
    if codes_clash(codes, &pickup) {
        return Ok(conflict(Table::Cluster, PickupCodes::KEY));
    }
    put(txn, codes)
}

/// Sets the pickup codes unless one shadows a feature code (the stored ones, or the defaults):
/// `Conflict` on [`FeatureCodes::KEY`].
pub(crate) fn put_pickup_codes(
    txn: &mut dyn Txn,
    codes: &PickupCodes,
) -> Result<Response, CodecError> {
    let features = get::<FeatureCodes>(txn, FeatureCodes::KEY)?.unwrap_or_default();
    if codes_clash(&features, codes) {
        return Ok(conflict(Table::Cluster, FeatureCodes::KEY));
    }
    put(txn, codes)
}

pub(crate) fn put_subscription(
    txn: &mut dyn Txn,
    sub: &Subscription,
) -> Result<Response, CodecError> {
    for ext in [&sub.watcher, &sub.target] {
        if txn.get(Table::Extensions, ext).is_none() {
            return Ok(not_found(Table::Extensions, ext));
        }
    }
    let key = sub.key();
    if txn.get(Table::Subscriptions, &key).is_none() {
        let held = txn
            .keys_with_prefix(Table::Subscriptions, &format!("{}/", sub.watcher))
            .len();
        if held >= MAX_SUBSCRIPTIONS_PER_WATCHER {
            return Ok(conflict(Table::Subscriptions, &sub.watcher));
        }
    }
    put(txn, sub)
}

pub(crate) fn prune_subscriptions(txn: &mut dyn Txn, now: u64) -> Result<Response, CodecError> {
    for key in txn.keys_with_prefix(Table::Subscriptions, "") {
        let Some(bytes) = txn.get(Table::Subscriptions, &key) else {
            continue;
        };
        let sub: Subscription = codec::decode(&bytes)?;
        if sub.expires_at <= now {
            txn.delete(Table::Subscriptions, &key);
        }
    }
    Ok(Response::Ok)
}

#[cfg(test)]
mod tests;
