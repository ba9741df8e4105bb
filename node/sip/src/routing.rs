//! Route decisions: which outbound route and trunks carry a dialled number, and which inbound route
//! answers a call to one of our DIDs. Pure: tables are compiled once from admin config (every
//! pattern parsed, every field checked) and then queried with no I/O and no clock.
//!
//! # Outbound ([`OutboundTable::select`])
//!
//! 1. A dialled number longer than [`MAX_NUMBER_LEN`] has no route.
//! 2. Routes are tried in list order. A route matches when any of its patterns matches the whole
//!    dialled number, something is left after its `strip` (a route that would send nothing cannot
//!    carry the call), and it has at least one trunk (a route whose trunks were all removed is
//!    passed over, so a later route can still carry the call).
//! 3. An emergency number (exact text in the table's emergency list) goes out through the first
//!    matching route whatever the caller's permission, marked `emergency: true`; if no route
//!    matches it, there is no route.
//! 4. Otherwise the first matching route the [`Permission`] allows wins. A matching route whose name
//!    the permission does not list is skipped, and remembered as a [`Denial::NotPermitted`].
//! 5. For an [`RouteClass::International`] route the *international number* is the dialled number
//!    after the route's `strip` (before `prepend`), without a leading `+`. It must start with one of
//!    the permission's country-code prefixes (compared without a leading `+` too; an empty prefix
//!    allows nothing, so a blank entry never opens every country). If it does not, the route is
//!    skipped and remembered as a [`Denial::CountryNotAllowed`].
//! 6. If a route was skipped and nothing later is allowed, the first denial seen is the answer
//!    (it tells the caller why); if nothing matched at all, there is no route.
//!
//! `select` is one pass over the routes and allocates only the number it returns (or the denial).
//!
//! # Inbound ([`InboundTable::select`])
//!
//! The most specific DID match wins: exact DIDs first, then prefixes (longest first; each prefix
//! length is its own tier), then DID patterns in list order as one tier. Within a tier, a route
//! whose caller-ID pattern matches the caller beats one without a caller-ID condition; a route with
//! a caller-ID condition never matches an anonymous caller. A tier where nothing fits falls through
//! to the next.
//!
//! # Errors
//!
//! [`RouteError`] names the field at fault as an API path (`routes[3].patterns[1]`, indices from 0
//! as in the list sent) and, inside a pattern or number, the 1-based character position.

use std::collections::HashMap;

use crate::dialplan::{MAX_NUMBER_LEN, Pattern, PatternError, Rewrite};

#[cfg(test)]
mod tests;

/// Longest route name: names end up in reason phrases and event text.
pub const MAX_NAME_LEN: usize = 64;

/// Which kind of call a route carries; permissions check the country only for international ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    Local,
    LongDistance,
    International,
}

impl RouteClass {
    pub const ALL: [Self; 3] = [Self::Local, Self::LongDistance, Self::International];

    /// The name used in config and the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::LongDistance => "long_distance",
            Self::International => "international",
        }
    }

    /// Reads [`RouteClass::as_str`]'s names (exactly, as the API writes them).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

impl std::fmt::Display for RouteClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a route table was refused: which route (index from 0 and name) and which field.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A name that is empty, too long or holds a control character (names go into reason phrases).
    #[error("routes[{route}].name: {reason}")]
    Name { route: usize, reason: &'static str },
    /// Two outbound routes with one name: permissions refer to routes by name.
    #[error("routes[{route}].name: '{name}' is already the name of routes[{first}]")]
    DuplicateName {
        route: usize,
        name: String,
        first: usize,
    },
    /// An outbound route without patterns would never match.
    #[error("routes[{route}] ('{name}').patterns: a route needs at least one pattern")]
    NoPatterns { route: usize, name: String },
    /// An outbound pattern that does not parse.
    #[error("routes[{route}] ('{name}').patterns[{pattern}]: {error}")]
    Pattern {
        route: usize,
        name: String,
        pattern: usize,
        error: PatternError,
    },
    /// A strip of [`MAX_NUMBER_LEN`] or more leaves nothing of any number.
    #[error("routes[{route}] ('{name}').strip: must be less than {MAX_NUMBER_LEN}")]
    Strip { route: usize, name: String },
    /// A prepend that is not dialable (digits, `*`, `#`, `+`) or too long.
    #[error("routes[{route}] ('{name}').prepend: {error}")]
    Prepend {
        route: usize,
        name: String,
        error: PatternError,
    },
    /// An outbound caller ID that is not a number (digits, an optional leading `+`).
    #[error("routes[{route}] ('{name}').caller_id: {error}")]
    CallerIdNumber {
        route: usize,
        name: String,
        error: PatternError,
    },
    /// An emergency number that is not dialable.
    #[error("emergency[{index}]: {error}")]
    Emergency { index: usize, error: PatternError },
    /// An inbound DID (exact, prefix or pattern) that cannot be read.
    #[error("routes[{route}] ('{name}').did: {error}")]
    Did {
        route: usize,
        name: String,
        error: PatternError,
    },
    /// An inbound caller-ID pattern that does not parse.
    #[error("routes[{route}] ('{name}').caller_id: {error}")]
    CallerIdPattern {
        route: usize,
        name: String,
        error: PatternError,
    },
    /// Two inbound routes with the same DID and caller-ID condition: the second could never match.
    #[error("routes[{route}] ('{name}'): same DID and caller ID condition as routes[{first}]")]
    DuplicateDid {
        route: usize,
        name: String,
        first: usize,
    },
}

impl RouteError {
    /// The index of the route at fault; `None` for an emergency number.
    pub fn route(&self) -> Option<usize> {
        match self {
            Self::Name { route, .. }
            | Self::DuplicateName { route, .. }
            | Self::NoPatterns { route, .. }
            | Self::Pattern { route, .. }
            | Self::Strip { route, .. }
            | Self::Prepend { route, .. }
            | Self::CallerIdNumber { route, .. }
            | Self::Did { route, .. }
            | Self::CallerIdPattern { route, .. }
            | Self::DuplicateDid { route, .. } => Some(*route),
            Self::Emergency { .. } => None,
        }
    }
}

fn fault(position: usize, reason: &'static str) -> PatternError {
    PatternError { position, reason }
}

fn check_name(route: usize, name: &str) -> Result<(), RouteError> {
    let reason = if name.is_empty() {
        "empty name"
    } else if name.len() > MAX_NAME_LEN {
        "name too long"
    } else if name.chars().any(char::is_control) {
        "control character in name"
    } else {
        return Ok(());
    };
    Err(RouteError::Name { route, reason })
}

/// Characters that may be dialled: what [`Pattern::matches`] accepts in a number.
fn dialable(c: u8) -> bool {
    c.is_ascii_digit() || matches!(c, b'*' | b'#' | b'+')
}

/// A prepend or emergency number: dialable characters only, at most [`MAX_NUMBER_LEN`].
fn check_dialable(text: &str, allow_empty: bool) -> Result<(), PatternError> {
    if text.is_empty() && !allow_empty {
        return Err(fault(1, "empty number"));
    }
    if text.len() > MAX_NUMBER_LEN {
        return Err(fault(MAX_NUMBER_LEN + 1, "number too long"));
    }
    match text.bytes().position(|c| !dialable(c)) {
        Some(i) => Err(fault(i + 1, "only digits, '*', '#' and '+'")),
        None => Ok(()),
    }
}

/// A DID or caller ID as a literal: digits with an optional leading `+`, at most [`MAX_NUMBER_LEN`].
fn check_e164ish(text: &str) -> Result<(), PatternError> {
    if text.is_empty() {
        return Err(fault(1, "empty number"));
    }
    if text.len() > MAX_NUMBER_LEN {
        return Err(fault(MAX_NUMBER_LEN + 1, "number too long"));
    }
    let bad = text
        .bytes()
        .enumerate()
        .find(|&(i, c)| !(c.is_ascii_digit() || (c == b'+' && i == 0)));
    match bad {
        Some((i, b'+')) => Err(fault(i + 1, "'+' only at the start")),
        Some((i, _)) => Err(fault(i + 1, "only digits and '+'")),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Outbound
// ---------------------------------------------------------------------------------------------

/// One outbound route as the admin configures it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundSpec {
    /// Unique; permissions list the routes a group may use by name.
    pub name: String,
    /// Dial patterns ([`crate::dialplan`]); any one matching is enough.
    pub patterns: Vec<String>,
    /// Characters removed from the front of the dialled number.
    pub strip: usize,
    /// Added in front of what is left after `strip`.
    pub prepend: String,
    pub class: RouteClass,
    /// Trunk names, in the order to try them. A route with none is passed over.
    pub trunks: Vec<String>,
    /// The number to present on calls this route carries, if not the caller's own.
    pub caller_id: Option<String>,
}

/// A route with its patterns parsed.
#[derive(Debug, Clone)]
struct CompiledRoute {
    name: String,
    patterns: Vec<Pattern>,
    rewrite: Rewrite,
    class: RouteClass,
    trunks: Vec<String>,
    caller_id: Option<String>,
}

impl CompiledRoute {
    fn compile(route: usize, spec: &OutboundSpec) -> Result<Self, RouteError> {
        check_name(route, &spec.name)?;
        let name = || spec.name.clone();
        if spec.patterns.is_empty() {
            return Err(RouteError::NoPatterns {
                route,
                name: name(),
            });
        }
        let patterns = spec
            .patterns
            .iter()
            .enumerate()
            .map(|(pattern, text)| {
                Pattern::parse(text).map_err(|error| RouteError::Pattern {
                    route,
                    name: name(),
                    pattern,
                    error,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if spec.strip >= MAX_NUMBER_LEN {
            return Err(RouteError::Strip {
                route,
                name: name(),
            });
        }
        check_dialable(&spec.prepend, true).map_err(|error| RouteError::Prepend {
            route,
            name: name(),
            error,
        })?;
        if let Some(caller_id) = &spec.caller_id {
            check_e164ish(caller_id).map_err(|error| RouteError::CallerIdNumber {
                route,
                name: name(),
                error,
            })?;
        }
        Ok(Self {
            name: spec.name.clone(),
            patterns,
            rewrite: Rewrite {
                strip: spec.strip,
                prepend: spec.prepend.clone(),
            },
            class: spec.class,
            trunks: spec.trunks.clone(),
            caller_id: spec.caller_id.clone(),
        })
    }

    /// Rule 2 of the module documentation: a pattern matches, something is left to send, and
    /// there is a trunk to send it on.
    fn carries(&self, dialled: &str) -> bool {
        !self.trunks.is_empty()
            && dialled.len() > self.rewrite.strip
            && self.patterns.iter().any(|p| p.matches(dialled))
    }

    /// The international number of rule 5. `dialled` has matched, so it is ASCII and longer than
    /// `strip`.
    fn international_number<'d>(&self, dialled: &'d str) -> &'d str {
        let rest = dialled.get(self.rewrite.strip..).unwrap_or_default();
        rest.strip_prefix('+').unwrap_or(rest)
    }
}

/// What a caller's group may dial.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permission {
    /// Names of the outbound routes the group may use.
    pub routes: Vec<String>,
    /// E.164 country-code prefixes allowed on international routes, e.g. `"44"`, `"1"`.
    pub international_prefixes: Vec<String>,
}

impl Permission {
    fn allows_route(&self, name: &str) -> bool {
        self.routes.iter().any(|r| r == name)
    }

    /// Rule 5: `number` has no leading `+`; prefixes are compared without one either.
    fn allows_country(&self, number: &str) -> bool {
        self.international_prefixes.iter().any(|prefix| {
            let prefix = prefix.strip_prefix('+').unwrap_or(prefix);
            !prefix.is_empty() && number.starts_with(prefix)
        })
    }
}

/// Why a number that some route matched may not be dialled. `Display` is the reason phrase or
/// event text; route names hold no control characters (checked at build) and numbers are
/// dialable characters only.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The caller's permission does not list the route.
    #[error("route '{route}' not permitted")]
    NotPermitted { route: String },
    /// An international route the caller may use, but not to this country. `number` is the
    /// international number (after strip, without a leading `+`).
    #[error("country code of {}... not allowed", country_hint(.number))]
    CountryNotAllowed { route: String, number: String },
}

/// The first digits of an international number: a country code has at most three, and the rest
/// (the subscriber) does not belong in a reason phrase.
fn country_hint(number: &str) -> &str {
    number.get(..3).unwrap_or(number)
}

impl Denial {
    /// The route that would have matched.
    pub fn route(&self) -> &str {
        match self {
            Self::NotPermitted { route } | Self::CountryNotAllowed { route, .. } => route,
        }
    }

    /// The SIP status to answer the INVITE with.
    pub fn sip_status(&self) -> u16 {
        403
    }
}

/// The outcome of [`OutboundTable::select`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection<'a> {
    /// Send `sent` through `trunks`, in order.
    Route {
        name: &'a str,
        /// The number after strip and prepend.
        sent: String,
        /// Never empty.
        trunks: &'a [String],
        class: RouteClass,
        /// The number is an emergency number: permission was not checked.
        emergency: bool,
        caller_id: Option<&'a str>,
    },
    /// Some route matched but the caller may not use it; the first denial seen.
    Denied(Denial),
    /// No route matches.
    NoRoute,
}

/// The first route skipped by rule 4 or 5, kept as an index so skipping allocates nothing.
#[derive(Debug, Clone, Copy)]
enum Skipped {
    NotPermitted(usize),
    Country(usize),
}

/// Outbound routes compiled for [`OutboundTable::select`]. The default is empty: nothing routes.
#[derive(Debug, Clone, Default)]
pub struct OutboundTable {
    routes: Vec<CompiledRoute>,
    emergency: Vec<String>,
}

impl OutboundTable {
    /// Compiles routes (in the order to try them) and the emergency numbers, or says which field of
    /// which route is wrong.
    pub fn build(routes: &[OutboundSpec], emergency: &[String]) -> Result<Self, RouteError> {
        let mut names: HashMap<&str, usize> = HashMap::with_capacity(routes.len());
        let mut compiled = Vec::with_capacity(routes.len());
        for (route, spec) in routes.iter().enumerate() {
            compiled.push(CompiledRoute::compile(route, spec)?);
            if let Some(&first) = names.get(spec.name.as_str()) {
                return Err(RouteError::DuplicateName {
                    route,
                    name: spec.name.clone(),
                    first,
                });
            }
            names.insert(&spec.name, route);
        }
        for (index, number) in emergency.iter().enumerate() {
            check_dialable(number, false)
                .map_err(|error| RouteError::Emergency { index, error })?;
        }
        Ok(Self {
            routes: compiled,
            emergency: emergency.to_vec(),
        })
    }

    /// The route for `dialled` under `permission`, following the rules in the module documentation.
    pub fn select(&self, dialled: &str, permission: &Permission) -> Selection<'_> {
        if dialled.len() > MAX_NUMBER_LEN {
            return Selection::NoRoute;
        }
        let emergency = self.emergency.iter().any(|e| e == dialled);
        let mut skipped = None;
        for (index, route) in self.routes.iter().enumerate() {
            if !route.carries(dialled) {
                continue;
            }
            if !emergency && let Err(why) = Self::admit(index, route, dialled, permission) {
                skipped.get_or_insert(why);
                continue;
            }
            if let Some(sent) = route.rewrite.apply(dialled) {
                return Selection::Route {
                    name: &route.name,
                    sent,
                    trunks: &route.trunks,
                    class: route.class,
                    emergency,
                    caller_id: route.caller_id.as_deref(),
                };
            }
        }
        match skipped {
            Some(why) => Selection::Denied(self.denial(why, dialled)),
            None => Selection::NoRoute,
        }
    }

    /// How many routes the table holds.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Rules 4 and 5 for a route that carries the number.
    fn admit(
        index: usize,
        route: &CompiledRoute,
        dialled: &str,
        permission: &Permission,
    ) -> Result<(), Skipped> {
        if !permission.allows_route(&route.name) {
            return Err(Skipped::NotPermitted(index));
        }
        if route.class == RouteClass::International
            && !permission.allows_country(route.international_number(dialled))
        {
            return Err(Skipped::Country(index));
        }
        Ok(())
    }

    fn denial(&self, skipped: Skipped, dialled: &str) -> Denial {
        match skipped {
            Skipped::NotPermitted(index) => Denial::NotPermitted {
                route: self.routes[index].name.clone(),
            },
            Skipped::Country(index) => {
                let route = &self.routes[index];
                Denial::CountryNotAllowed {
                    route: route.name.clone(),
                    number: route.international_number(dialled).to_owned(),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Inbound
// ---------------------------------------------------------------------------------------------

/// How an inbound route matches the called number (the DID).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DidMatch {
    /// Exactly this DID (digits, an optional leading `+`).
    Exact(String),
    /// Any DID starting with this (digits, an optional leading `+`).
    Prefix(String),
    /// A dial pattern ([`crate::dialplan`]).
    Pattern(String),
}

/// One inbound route as the admin configures it; `D` is where matching calls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundSpec<D> {
    pub name: String,
    pub did: DidMatch,
    /// A dial pattern the caller's number must match; `None` takes any caller, anonymous included.
    pub caller_id: Option<String>,
    pub destination: D,
}

/// Route indices sharing one exact DID or one prefix, in list order.
type Bucket = Vec<usize>;

/// Inbound routes compiled for [`InboundTable::select`].
#[derive(Debug, Clone)]
pub struct InboundTable<D> {
    routes: Vec<InboundSpec<D>>,
    /// Parallel to `routes`: each route's parsed caller-ID condition.
    callers: Vec<Option<Pattern>>,
    exact: HashMap<String, Bucket>,
    prefixes: HashMap<String, Bucket>,
    /// The distinct prefix lengths, longest first.
    prefix_lens: Vec<usize>,
    /// DID patterns with their route index, in list order.
    patterns: Vec<(Pattern, usize)>,
}

impl<D> Default for InboundTable<D> {
    /// No routes: nothing matches.
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            callers: Vec::new(),
            exact: HashMap::new(),
            prefixes: HashMap::new(),
            prefix_lens: Vec::new(),
            patterns: Vec::new(),
        }
    }
}

impl<D> InboundTable<D> {
    /// Compiles inbound routes, or says which field of which route is wrong.
    pub fn build(routes: Vec<InboundSpec<D>>) -> Result<Self, RouteError> {
        let mut table = Self {
            callers: Vec::with_capacity(routes.len()),
            routes: Vec::new(),
            exact: HashMap::new(),
            prefixes: HashMap::new(),
            prefix_lens: Vec::new(),
            patterns: Vec::new(),
        };
        let mut seen: HashMap<(&DidMatch, Option<&str>), usize> = HashMap::new();
        for (route, spec) in routes.iter().enumerate() {
            table.add(route, spec)?;
            let key = (&spec.did, spec.caller_id.as_deref());
            if let Some(&first) = seen.get(&key) {
                return Err(RouteError::DuplicateDid {
                    route,
                    name: spec.name.clone(),
                    first,
                });
            }
            seen.insert(key, route);
        }
        table.prefix_lens.sort_unstable_by(|a, b| b.cmp(a));
        table.prefix_lens.dedup();
        table.routes = routes;
        Ok(table)
    }

    /// Checks one route and files it in its tier.
    fn add(&mut self, route: usize, spec: &InboundSpec<D>) -> Result<(), RouteError> {
        check_name(route, &spec.name)?;
        let did_error = |error| RouteError::Did {
            route,
            name: spec.name.clone(),
            error,
        };
        let caller = match &spec.caller_id {
            None => None,
            Some(text) => {
                Some(
                    Pattern::parse(text).map_err(|error| RouteError::CallerIdPattern {
                        route,
                        name: spec.name.clone(),
                        error,
                    })?,
                )
            }
        };
        match &spec.did {
            DidMatch::Exact(did) => {
                check_e164ish(did).map_err(did_error)?;
                self.exact.entry(did.clone()).or_default().push(route);
            }
            DidMatch::Prefix(prefix) => {
                check_e164ish(prefix).map_err(did_error)?;
                self.prefixes.entry(prefix.clone()).or_default().push(route);
                self.prefix_lens.push(prefix.len());
            }
            DidMatch::Pattern(text) => {
                let pattern = Pattern::parse(text).map_err(did_error)?;
                self.patterns.push((pattern, route));
            }
        }
        self.callers.push(caller);
        Ok(())
    }

    /// The route for a call to `did` from `caller` (`None`: anonymous), by the rules in the module
    /// documentation.
    pub fn select(&self, did: &str, caller: Option<&str>) -> Option<&InboundSpec<D>> {
        if did.is_empty() || did.len() > MAX_NUMBER_LEN {
            return None;
        }
        let in_bucket = |map: &HashMap<String, Bucket>, key: &str| {
            map.get(key)
                .and_then(|bucket| self.best(bucket.iter().copied(), caller))
        };
        let chosen = in_bucket(&self.exact, did)
            .or_else(|| {
                self.prefix_lens
                    .iter()
                    .filter_map(|&len| did.get(..len))
                    .find_map(|head| in_bucket(&self.prefixes, head))
            })
            .or_else(|| {
                let matching = self
                    .patterns
                    .iter()
                    .filter(|(pattern, _)| pattern.matches(did))
                    .map(|&(_, route)| route);
                self.best(matching, caller)
            })?;
        self.routes.get(chosen)
    }

    /// Within one tier: the first route whose caller-ID condition the caller meets, else the first
    /// route without a condition.
    fn best(&self, candidates: impl Iterator<Item = usize>, caller: Option<&str>) -> Option<usize> {
        let mut unconditional = None;
        for route in candidates {
            match self.callers.get(route) {
                Some(Some(pattern)) if caller.is_some_and(|c| pattern.matches(c)) => {
                    return Some(route);
                }
                Some(None) => {
                    unconditional.get_or_insert(route);
                }
                _ => {}
            }
        }
        unconditional
    }

    /// How many routes the table holds.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}
