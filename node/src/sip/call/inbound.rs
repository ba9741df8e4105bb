//! Calls from a provider: the INVITE came from a trunk's address, so it is not challenged; the
//! number dialled (the DID) picks an inbound route, whose destination is the callee. Anonymous
//! callers are refused with `433` when the trunk or the site says so.

use storage::model::{Disposition, Severity};
use storage::routing::Direction;

use super::Calls;
use super::admission::Refusal;
use super::core::Now;
use super::dialog;
use super::driver::Attempt;
use super::outbound::RouteFacts;
use super::privacy::wants_privacy;

/// Longest caller number or DID read from a provider's request.
const MAX_NUMBER: usize = 32;

/// The user part of a SIP URI in a header value (`"Name" <sip:user@host>;tag=…`), if it is a
/// number-like token of at most [`MAX_NUMBER`] characters.
fn user_of(value: &str) -> Option<(&str, &str)> {
    let start = value
        .find("sip:")
        .map(|i| i + 4)
        .or_else(|| value.find("sips:").map(|i| i + 5))?;
    let rest = &value[start..];
    let (user, host) = rest.split_once('@')?;
    let user = user.split(';').next().unwrap_or(user);
    let ok = !user.is_empty()
        && user.len() <= MAX_NUMBER
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.' | b'_'));
    let host = host.split(['>', ';', ':']).next().unwrap_or(host);
    ok.then_some((user, host))
}

/// The display name in a header value, without quotes, bounded.
fn display_of(value: &str) -> String {
    let name = match value.split_once('<') {
        Some((name, _)) => name.trim().trim_matches('"'),
        None => "",
    };
    name.chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .take(64)
        .collect()
}

/// Whether `did` is one of the trunk's numbers (none listed: it carries any).
fn carries(dids: &[String], did: &str) -> bool {
    dids.is_empty()
        || dids.iter().any(|d| match d.split_once('-') {
            Some((first, last)) => did.len() == first.len() && first <= did && did <= last,
            None => d == did,
        })
}

impl Calls {
    /// Admits a call from trunk `trunk` as far as its route: the attempt to ring its destination.
    pub(super) async fn inbound_attempt(
        &self,
        trunk: &str,
        req: &rsip::Request,
        started: Now,
    ) -> Result<Attempt, (Attempt, Refusal)> {
        let tables = self.trunks.tables();
        let from = dialog::first(&req.headers, "From").unwrap_or_default();
        let (caller, caller_host) = user_of(from).unwrap_or(("", ""));
        let anonymous = wants_privacy(&req.headers)
            || caller.is_empty()
            || caller.eq_ignore_ascii_case("anonymous")
            || caller_host.eq_ignore_ascii_case("anonymous.invalid");
        let mut a = Attempt::new(
            if anonymous { "anonymous" } else { caller }.to_owned(),
            String::new(),
            started,
        );
        a.from_trunk = true;
        // A caller in the company phonebook shows under the book's name, whatever the provider
        // sent (often only the number, or a carrier's generic name): one index seek per form of
        // the number.
        a.caller_name = if anonymous {
            "Anonymous".to_owned()
        } else {
            storage::contacts::company_name_for(self.cluster.reader(), caller)
                .inspect_err(|e| tracing::warn!(error = %e, "phonebook lookup failed"))
                .ok()
                .flatten()
                .unwrap_or_else(|| display_of(from))
        };
        let ruri = req
            .uri
            .auth
            .as_ref()
            .map(|a| a.user.clone())
            .unwrap_or_default();
        let to = dialog::first(&req.headers, "To")
            .and_then(user_of)
            .map(|(u, _)| u.to_owned());
        let mut facts = RouteFacts {
            direction: Direction::Inbound,
            trunk: trunk.to_owned(),
            did: ruri.clone(),
            route: String::new(),
            dialled: ruri.clone(),
            sent: String::new(),
            stored: false,
        };
        let Some(t) = tables.trunks.get(trunk) else {
            return Err((a, Refusal::new(404, "Not Found", None)));
        };
        if anonymous && (!t.allow_anonymous || tables.settings.reject_anonymous_inbound) {
            a.facts = Some(facts);
            tracing::info!(trunk, "anonymous inbound call refused");
            self.trunks.events.raise(
                "anonymous_call_refused",
                Severity::Info,
                None,
                format!("an anonymous call on trunk {trunk} was refused"),
            );
            let r = Refusal::new(433, "Anonymity Disallowed", Some(Disposition::Failed));
            return Err((a, r));
        }
        let caller_id = (!anonymous).then_some(caller);
        let found = [Some(ruri.as_str()), to.as_deref()]
            .into_iter()
            .flatten()
            .filter(|did| carries(&t.dids, did))
            .find_map(|did| {
                let spec = tables.inbound.select(did, caller_id)?;
                let on_trunk = spec.destination.trunk.as_deref().is_none_or(|r| r == trunk);
                on_trunk.then(|| (did.to_owned(), spec))
            });
        let Some((did, spec)) = found else {
            tracing::info!(trunk, did = %ruri, "no inbound route");
            a.facts = Some(facts);
            let r = Refusal::new(404, "Not Found", Some(Disposition::NotFound));
            return Err((a, r));
        };
        // An extension or a ring group: one number space, the call's plan tells them apart. A
        // time condition chooses one of its two by the cluster's clock, now.
        let dest = &spec.destination.destination;
        let Some(number) =
            crate::apps::destination_number(self.cluster.reader(), dest, a.started.wall)
        else {
            a.facts = Some(facts);
            let r = Refusal::new(404, "Not Found", Some(Disposition::NotFound));
            return Err((a, r));
        };
        a.callee = number;
        facts.did = did;
        facts.route = spec.name.clone();
        let cmd = storage::Command::PutCallRoute(facts.record(a.cdr_key()));
        facts.stored = self.cluster.propose(cmd).await.is_ok();
        a.facts = Some(facts);
        tracing::info!(call = %a.id, trunk, did = %a.callee, "inbound call routed");
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_are_read_bounded() {
        let from = "\"Carrier \\\"X\\\"\" <sip:+15550100@carrier.example;user=phone>;tag=9";
        assert_eq!(user_of(from), Some(("+15550100", "carrier.example")));
        assert_eq!(display_of(from), "Carrier X");
        assert_eq!(
            user_of("<sip:anonymous@anonymous.invalid>"),
            Some(("anonymous", "anonymous.invalid"))
        );
        let long = format!("<sip:{}@h>", "1".repeat(33));
        assert_eq!(user_of(&long), None);
        assert_eq!(user_of("<sip:12'3@h>"), None);
        assert_eq!(user_of("<sip:h>"), None);
    }

    #[test]
    fn a_trunk_carries_its_listed_numbers_and_ranges() {
        let dids = vec!["15550100".to_owned(), "15550200-15550299".to_owned()];
        assert!(carries(&dids, "15550100"));
        assert!(carries(&dids, "15550250"));
        assert!(!carries(&dids, "15550300"));
        assert!(!carries(&dids, "1555025"));
        assert!(carries(&[], "1"));
    }
}
