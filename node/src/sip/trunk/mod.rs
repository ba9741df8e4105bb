//! SIP trunks: finding providers (RFC 3263), registering to them from the VIP owner, recognising
//! the addresses their calls come from, and choosing routes for calls in and out.
//!
//! The configuration is read from the replicated tables and compiled into [`Tables`], rebuilt only
//! when the state machine says routing configuration changed (`routing_version`), so a call pays a
//! lookup in compiled tables, not a scan of RocksDB.

pub(crate) mod destination;
pub(crate) mod dns;
mod inbound;
pub(crate) mod register;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::Cluster;
use pbx_sip::routing::{
    DidMatch, InboundSpec, InboundTable, OutboundSpec, OutboundTable, RouteClass as SipClass,
};
use storage::StateReader;
use storage::routing::{DidKind, InboundRoute, OutboundRoute, PermissionGroup, RouteClass, Trunk};

use crate::api::{RoutingSettings, read_routing_settings};
use crate::events::Events;

pub(crate) use inbound::{Sources, refresh as refresh_sources};
pub(crate) use register::run as run_registrations;

/// The routing configuration, compiled.
pub(crate) struct Tables {
    version: u64,
    pub(crate) outbound: OutboundTable,
    pub(crate) inbound: InboundTable<InboundRoute>,
    pub(crate) groups: HashMap<String, PermissionGroup>,
    pub(crate) trunks: HashMap<String, Trunk>,
    pub(crate) settings: RoutingSettings,
}

/// Trunk services of one node.
pub(crate) struct Trunks {
    cluster: Cluster,
    pub(crate) dns: dns::Dns,
    /// How long one provider server may stay silent before the next is tried.
    pub(crate) silence: Duration,
    /// How long a reserved outbound call may ring (for the toll counters' clean-up).
    pub(crate) ringing: Duration,
    pub(crate) events: Arc<Events>,
    security: Arc<crate::security::Security>,
    pub(crate) sources: Sources,
    tables: Mutex<Option<Arc<Tables>>>,
}

fn class(c: RouteClass) -> SipClass {
    match c {
        RouteClass::Local => SipClass::Local,
        RouteClass::LongDistance => SipClass::LongDistance,
        RouteClass::International => SipClass::International,
    }
}

impl Trunks {
    pub(crate) fn new(
        cluster: Cluster,
        dns: dns::Dns,
        silence: Duration,
        ringing: Duration,
        security: Arc<crate::security::Security>,
    ) -> Self {
        Self {
            cluster,
            dns,
            silence,
            ringing,
            events: Arc::clone(security.events()),
            security,
            sources: Sources::default(),
            tables: Mutex::new(None),
        }
    }

    /// The compiled configuration as of now.
    pub(crate) fn tables(&self) -> Arc<Tables> {
        let reader = self.cluster.reader();
        let version = reader.routing_version();
        let mut cached = self
            .tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = cached.as_ref().filter(|t| t.version == version) {
            return Arc::clone(t);
        }
        let started = std::time::Instant::now();
        let tables = Arc::new(compile(reader, version));
        metrics::histogram!("pbx_routing_compile_seconds").record(started.elapsed().as_secs_f64());
        *cached = Some(Arc::clone(&tables));
        tables
    }
}

/// Reads and compiles the routing tables. A table that does not compile (which the API prevents)
/// is logged and left empty: calls are refused rather than routed by half a configuration.
fn compile(reader: &StateReader, version: u64) -> Tables {
    let mut routes: Vec<OutboundRoute> = listed(reader, "outbound routes");
    routes.sort_by(|a, b| (a.position, &a.name).cmp(&(b.position, &b.name)));
    let inbound: Vec<InboundRoute> = listed(reader, "inbound routes");
    let groups: Vec<PermissionGroup> = listed(reader, "permission groups");
    let trunks: Vec<Trunk> = listed(reader, "trunks");
    let settings = read_routing_settings(reader);
    let specs: Vec<OutboundSpec> = routes
        .iter()
        .map(|r| OutboundSpec {
            name: r.name.clone(),
            patterns: r.patterns.clone(),
            strip: r.strip as usize,
            prepend: r.prepend.clone(),
            class: class(r.class),
            trunks: r.trunks.clone(),
            caller_id: r.caller_id.clone(),
        })
        .collect();
    // Emergency numbers are checked on their own, so a bad one cannot take the routes with it.
    let emergency = match OutboundTable::build(&[], &settings.emergency_numbers) {
        Ok(_) => settings.emergency_numbers.clone(),
        Err(e) => {
            tracing::error!(error = %e, "emergency numbers do not compile; none are special");
            Vec::new()
        }
    };
    let outbound = build_skipping(specs, |specs| OutboundTable::build(specs, &emergency));
    let specs: Vec<InboundSpec<InboundRoute>> = inbound
        .into_iter()
        .map(|r| InboundSpec {
            name: r.name.clone(),
            did: match r.did_kind {
                DidKind::Exact => DidMatch::Exact(r.did.clone()),
                DidKind::Prefix => DidMatch::Prefix(r.did.clone()),
                DidKind::Pattern => DidMatch::Pattern(r.did.clone()),
            },
            caller_id: r.caller_id.clone(),
            destination: r,
        })
        .collect();
    let inbound = build_skipping(specs, |specs| InboundTable::build(specs.to_vec()));
    Tables {
        version,
        outbound,
        inbound,
        groups: groups.into_iter().map(|g| (g.name.clone(), g)).collect(),
        trunks: trunks.into_iter().map(|t| (t.name.clone(), t)).collect(),
        settings,
    }
}

/// Builds a table from `specs`, leaving out each route the builder refuses (logged): one bad
/// record (which the API prevents, but an older version may have stored) costs its own calls,
/// never everyone's. An error that names no route leaves the table empty.
fn build_skipping<S, T: Default>(
    mut specs: Vec<S>,
    build: impl Fn(&[S]) -> Result<T, pbx_sip::routing::RouteError>,
) -> T {
    loop {
        match build(&specs) {
            Ok(table) => return table,
            Err(e) => {
                metrics::counter!("pbx_routing_routes_skipped_total").increment(1);
                match e.route().filter(|&i| i < specs.len()) {
                    Some(i) => {
                        tracing::error!(error = %e, "a route does not compile; it is left out");
                        specs.remove(i);
                    }
                    None => {
                        tracing::error!(error = %e, "routes do not compile; calls are refused");
                        return T::default();
                    }
                }
            }
        }
    }
}

/// Every record of a table; a read failure is logged and reads as none.
fn listed<R: storage::Record>(reader: &StateReader, what: &str) -> Vec<R> {
    reader.list().unwrap_or_else(|e| {
        tracing::warn!(error = %e, table = what, "reading routing configuration failed");
        Vec::new()
    })
}

#[cfg(test)]
mod tests {
    use pbx_sip::routing::{Permission, Selection};

    use super::*;

    fn route(name: &str, pattern: &str) -> OutboundSpec {
        OutboundSpec {
            name: name.into(),
            patterns: vec![pattern.into()],
            strip: 0,
            prepend: String::new(),
            class: SipClass::Local,
            trunks: vec!["carrier".into()],
            caller_id: None,
        }
    }

    #[test]
    fn a_route_that_does_not_compile_costs_only_its_own_calls() {
        let specs = vec![route("bad", "9[2-"), route("good", "9X.")];
        let table = build_skipping(specs, |s| OutboundTable::build(s, &[]));
        let permission = Permission {
            routes: vec!["bad".into(), "good".into()],
            international_prefixes: Vec::new(),
        };
        assert!(matches!(
            table.select("9123", &permission),
            Selection::Route { name: "good", .. }
        ));
        let did = |name: &str| InboundSpec {
            name: name.into(),
            did: DidMatch::Exact("15550100".into()),
            caller_id: None,
            destination: name.to_owned(),
        };
        let inbound = build_skipping(vec![did("first"), did("second")], |s| {
            InboundTable::build(s.to_vec())
        });
        let chosen = inbound.select("15550100", None).map(|s| s.name.as_str());
        assert_eq!(chosen, Some("first"));
    }
}
