//! Calls from an extension to the outside: the route (internal numbers are looked up first, by the
//! caller of this module), the caller's permission for it, the toll-fraud counters, and the servers
//! of the route's trunks to try, in order.

use pbx_sip::routing::{Permission, RouteClass as SipClass, Selection};
use storage::Response;
use storage::model::{Disposition, Extension, Severity};
use storage::routing::{CallRoute, Direction, Limit, Limits, Reservation, Trunk, TrunkStatus};

use super::Calls;
use super::admission::{OutboundTrunk, Refusal, TrunkCredentials, TrunkTarget};
use super::privacy::ANONYMOUS_FROM;
use crate::sip::trunk::Tables;

/// How a trunk call was routed, for its CDR.
#[derive(Debug, Clone)]
pub(crate) struct RouteFacts {
    pub(crate) direction: Direction,
    pub(crate) trunk: String,
    pub(crate) did: String,
    pub(crate) route: String,
    pub(crate) dialled: String,
    pub(crate) sent: String,
    /// Its record is stored already (with the toll reservation).
    pub(crate) stored: bool,
}

impl RouteFacts {
    pub(crate) fn record(&self, cdr_key: String) -> CallRoute {
        CallRoute {
            cdr_key,
            direction: self.direction,
            trunk: self.trunk.clone(),
            did: self.did.clone(),
            route: self.route.clone(),
            dialled: self.dialled.clone(),
            sent: self.sent.clone(),
        }
    }
}

/// A refused outbound call: what the caller hears, and how far routing got (for the CDR).
pub(crate) type Refused = (Refusal, Option<RouteFacts>);

/// An outbound call that may go: its servers and its routing facts.
pub(crate) struct Routed {
    pub(crate) trunk: OutboundTrunk,
    pub(crate) facts: RouteFacts,
}

/// What `caller`'s permission group lets it dial.
fn permission_of(tables: &Tables, caller: &Extension) -> Permission {
    let group = tables.groups.get(&caller.permission_group);
    group.map_or_else(Permission::default, |g| Permission {
        routes: g.routes.clone(),
        international_prefixes: g.international_prefixes.clone(),
    })
}

impl Calls {
    /// Whether `caller` may dial `dialled` outside, without counting a call: `403` when its group
    /// does not permit the route, `404` without a route.
    pub(crate) fn may_dial_outside(
        &self,
        caller: &Extension,
        dialled: &str,
    ) -> Result<(), Refusal> {
        let tables = self.trunks.tables();
        match tables
            .outbound
            .select(dialled, &permission_of(&tables, caller))
        {
            Selection::NoRoute => Err(Refusal::new(404, "Not Found", Some(Disposition::NotFound))),
            Selection::Denied(_) => Err(Refusal::new(
                403,
                "Route Not Permitted",
                Some(Disposition::Denied),
            )),
            Selection::Route { .. } => Ok(()),
        }
    }

    /// Routes `dialled` for `caller` (not an extension number), counts it, and finds the servers.
    /// `call_id` names the call in the toll counters (the id its CDR will carry).
    pub(crate) async fn route_outbound(
        &self,
        call_id: &str,
        caller: &Extension,
        dialled: &str,
        anonymous: bool,
        started_at: u64,
        cdr_key: String,
    ) -> Result<Routed, Refused> {
        let tables = self.trunks.tables();
        let permission = permission_of(&tables, caller);
        let mut facts = RouteFacts {
            direction: Direction::Outbound,
            trunk: String::new(),
            did: String::new(),
            route: String::new(),
            dialled: dialled.to_owned(),
            sent: String::new(),
            stored: false,
        };
        let selected = tables.outbound.select(dialled, &permission);
        let (name, sent, trunks, emergency, route_cid, class) = match selected {
            Selection::NoRoute => {
                return Err((
                    Refusal::new(404, "Not Found", Some(Disposition::NotFound)),
                    None,
                ));
            }
            Selection::Denied(denial) => {
                facts.route = denial.route().to_owned();
                let why = denial.to_string();
                tracing::warn!(extension = %caller.number, dialled, reason = %why, "outbound call denied");
                self.trunks.events.raise(
                    "outbound_denied",
                    Severity::Warning,
                    None,
                    format!("extension {} may not call {dialled}: {why}", caller.number),
                );
                let mut r = Refusal::new(403, "Route Not Permitted", Some(Disposition::Denied));
                if let Some(o) = r.outcome.as_mut() {
                    o.cause = why;
                }
                return Err((r, Some(facts)));
            }
            Selection::Route {
                name,
                sent,
                trunks,
                emergency,
                caller_id,
                class,
            } => (name, sent, trunks.to_vec(), emergency, caller_id, class),
        };
        facts.route = name.to_owned();
        facts.sent = sent.clone();
        let usable = self.usable_trunks(&tables, &trunks);
        if usable.is_empty() {
            return Err((no_trunk(), Some(facts)));
        }
        facts.stored = true;
        let first = if emergency {
            facts.trunk = usable[0].name.clone();
            self.record_route(&facts, cdr_key).await;
            0
        } else {
            let group = tables.groups.get(&caller.permission_group);
            let limits = group.map(|g| (g.limits, g.suspend_on_limit));
            let reservation = Reservation {
                call_id: call_id.to_owned(),
                extension: caller.number.clone(),
                limits: limits.map_or_else(Limits::default, |l| l.0),
                international: class == SipClass::International,
                suspend_on_limit: limits.is_some_and(|l| l.1),
                trunks: usable
                    .iter()
                    .map(|t| {
                        let l = Limits {
                            per_minute: t.calls_per_minute,
                            simultaneous: t.max_calls,
                            ..Limits::default()
                        };
                        (t.name.clone(), l)
                    })
                    .collect(),
                at: started_at,
                ringing_ms: self.trunks.ringing.as_millis() as u64,
                route: Some(facts.record(cdr_key)),
            };
            self.reserve(reservation, &facts, &caller.number).await?
        };
        let usable = &usable[first..];
        facts.trunk = usable.first().map(|t| t.name.clone()).unwrap_or_default();
        let mut targets = Vec::new();
        for t in usable {
            let cid = route_cid
                .filter(|c| !c.is_empty())
                .or_else(|| Some(t.caller_id.as_str()).filter(|c| !c.is_empty()))
                .unwrap_or(&caller.number);
            self.targets_of(t, &sent, cid, &caller.display_name, anonymous, &mut targets)
                .await;
        }
        Ok(Routed {
            trunk: OutboundTrunk {
                targets,
                silence: self.trunks.silence,
            },
            facts,
        })
    }

    /// Enabled trunks of `names` whose state lets calls through, in order.
    fn usable_trunks(&self, tables: &Tables, names: &[String]) -> Vec<Trunk> {
        let reader = self.cluster.reader();
        names
            .iter()
            .filter_map(|n| tables.trunks.get(n))
            .filter(|t| t.enabled)
            .filter(|t| {
                reader
                    .get::<TrunkStatus>(&t.name)
                    .ok()
                    .flatten()
                    .is_none_or(|s| s.state.is_up())
            })
            .cloned()
            .collect()
    }

    /// Counts the call against its limits and records its route (with the trunk it was counted
    /// on), in one Raft entry; the index of the first trunk with room.
    async fn reserve(
        &self,
        reservation: Reservation,
        facts: &RouteFacts,
        extension: &str,
    ) -> Result<usize, Refused> {
        let cmd = storage::Command::ReserveOutbound(Box::new(reservation));
        let answer = match self.cluster.propose(cmd).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(error = %e, "outbound reservation failed");
                return Err((Refusal::new(503, "Cluster Not Ready", None), None));
            }
        };
        match answer {
            Response::Reserved { trunk } => Ok(trunk as usize),
            Response::LimitReached {
                limit: Limit::TrunksFull,
                ..
            } => Err((
                Refusal::new(503, "All Trunks Busy", Some(Disposition::Failed)),
                Some(facts.clone()),
            )),
            Response::LimitReached {
                counter,
                limit,
                suspended,
            } => {
                let message = format!(
                    "extension {extension} crossed its {} outbound limit calling {}{}",
                    limit.as_str(),
                    facts.dialled,
                    if suspended {
                        "; its outbound calls are suspended until an admin clears them"
                    } else {
                        ""
                    }
                );
                tracing::warn!(extension, counter = %counter, limit = limit.as_str(), suspended, "toll-fraud limit reached");
                metrics::counter!("pbx_toll_limit_refusals_total", "limit" => limit.as_str())
                    .increment(1);
                self.trunks
                    .events
                    .raise("toll_fraud_suspected", Severity::Critical, None, message);
                let reason = if limit == Limit::Suspended {
                    "Outbound Calls Suspended"
                } else {
                    "Outbound Call Limit Reached"
                };
                let mut r = Refusal::new(403, reason, Some(Disposition::Denied));
                if let Some(o) = r.outcome.as_mut() {
                    o.cause = format!("limit-{}", limit.as_str());
                }
                Err((r, Some(facts.clone())))
            }
            other => {
                tracing::warn!(?other, "unexpected answer to an outbound reservation");
                Err((Refusal::internal(), Some(facts.clone())))
            }
        }
    }

    /// Records the route of a call that is not counted (an emergency call).
    async fn record_route(&self, facts: &RouteFacts, cdr_key: String) {
        let cmd = storage::Command::PutCallRoute(facts.record(cdr_key));
        if let Err(e) = self.cluster.propose(cmd).await {
            tracing::warn!(error = %e, "call route not stored");
        }
    }

    /// The servers of trunk `t` for a call to `sent` presenting `cid`.
    async fn targets_of(
        &self,
        t: &Trunk,
        sent: &str,
        cid: &str,
        name: &str,
        anonymous: bool,
        out: &mut Vec<TrunkTarget>,
    ) {
        let dest = crate::sip::trunk::destination::next_hop(t);
        let peers = match self.trunks.dns.targets(&dest).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(trunk = %t.name, error = %e, "trunk servers not found");
                return;
            }
        };
        let host = match t.port {
            Some(p) => format!("{}:{p}", t.host),
            None => t.host.clone(),
        };
        let domain = if t.from_domain.is_empty() {
            t.host.as_str()
        } else {
            t.from_domain.as_str()
        };
        let from_user = if t.from_user.is_empty() {
            cid
        } else {
            &t.from_user
        };
        let mut headers = Vec::new();
        if t.send_pai || anonymous {
            headers.push((
                "P-Asserted-Identity".to_owned(),
                format!("<sip:{cid}@{domain}>"),
            ));
        }
        let from = if anonymous {
            headers.push(("Privacy".to_owned(), "id".to_owned()));
            ANONYMOUS_FROM.to_owned()
        } else {
            let name = name.replace(['"', '\\'], "");
            format!("\"{name}\" <sip:{from_user}@{domain}>")
        };
        let credentials =
            (!t.username.is_empty() && !t.password.is_empty()).then(|| TrunkCredentials {
                username: t.username.clone(),
                password: t.password.clone(),
                realm: t.realm.clone(),
            });
        let contact_user = if t.username.is_empty() {
            from_user.to_owned()
        } else {
            t.username.clone()
        };
        for peer in peers {
            if peer.transport == pbx_sip::transaction::Transport::Tls {
                // RFC 5922 §4.1: the server proves the domain it was looked up for.
                self.out.expect_tls_name(peer.addr, &dest.host);
            }
            out.push(TrunkTarget {
                trunk: t.name.clone(),
                peer,
                request_uri: format!("sip:{sent}@{host}"),
                from: from.clone(),
                to: format!("<sip:{sent}@{host}>"),
                contact_user: contact_user.clone(),
                headers: headers.clone(),
                credentials: credentials.clone(),
            });
        }
    }
}

fn no_trunk() -> Refusal {
    Refusal::new(503, "No Trunk Available", Some(Disposition::Failed))
}
