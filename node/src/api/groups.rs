//! `/api/v1/permission-groups` and `/api/v1/toll-fraud`: which outbound routes and countries each
//! group's extensions may call and how many calls they may make, and the counters that enforce it
//! (with the suspensions an admin clears).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use storage::model::UnixMillis;
use storage::routing::{
    DAY_MS, HOUR_MS, Limits, MINUTE_MS, PermissionGroup, RoutingKind, RoutingRecord, TollCounter,
};
use storage::{Command, Table};

use super::AppState;
use super::access::Principal;
use super::crud::{self, Resource, propose_answer};
use super::error::ApiError;
use super::extensions::validate_number;
use super::paging::{LIMITS, ListQuery, Page, PageRequest};
use super::routes::{MAX_ENTRIES, validate_len, validate_names};
use crate::time::now_millis;

/// Largest value of any limit.
const MAX_LIMIT: u32 = 100_000;
/// Longest country-code prefix (a country code and, for shared codes, an area).
const MAX_PREFIX: usize = 4;
/// Longest toll-counter key (`trunk:` and a trunk name, `ext:` and a number).
const MAX_COUNTER_KEY: usize = 64;

/// Limits as a request gives them: each omitted one is 0 (none).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct LimitsBody {
    per_minute: u32,
    per_hour: u32,
    per_day: u32,
    simultaneous: u32,
    international_per_day: u32,
}

impl LimitsBody {
    fn check(self) -> Result<Limits, ApiError> {
        let named = [
            ("per_minute", self.per_minute),
            ("per_hour", self.per_hour),
            ("per_day", self.per_day),
            ("simultaneous", self.simultaneous),
            ("international_per_day", self.international_per_day),
        ];
        for (field, value) in named {
            if value > MAX_LIMIT {
                return Err(ApiError::invalid(
                    format!("limits.{field}"),
                    format!("0 (none) to {MAX_LIMIT}"),
                ));
            }
        }
        Ok(Limits {
            per_minute: self.per_minute,
            per_hour: self.per_hour,
            per_day: self.per_day,
            simultaneous: self.simultaneous,
            international_per_day: self.international_per_day,
        })
    }
}

/// A permission group as POST and PUT take it; omitted fields are empty, zero or false.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupBody {
    /// Read-only fields of a GET answer, accepted and ignored: a record read, edited and written
    /// back is a valid body.
    #[serde(default, rename = "created_at")]
    _created_at: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<serde::de::IgnoredAny>,
    /// Required on POST; on PUT the URL's.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    routes: Vec<String>,
    #[serde(default)]
    international_prefixes: Vec<String>,
    #[serde(default)]
    limits: LimitsBody,
    #[serde(default)]
    suspend_on_limit: bool,
}

impl Resource for PermissionGroup {
    const NOUN: &'static str = "permission group";
    const KIND: RoutingKind = RoutingKind::PermissionGroup;
    const LIST_KEY: &'static str = "groups";
    const REFS: &'static [(Table, &'static str)] = &[(Table::OutboundRoutes, "routes")];
    type Body = GroupBody;
    type View = Self;

    fn body_name(body: &GroupBody) -> Option<&str> {
        body.name.as_deref()
    }

    fn from_body(
        body: GroupBody,
        name: String,
        stored: Option<Self>,
        now: UnixMillis,
    ) -> Result<Self, ApiError> {
        validate_names("routes", &body.routes, MAX_ENTRIES)?;
        validate_len(
            "international_prefixes",
            &body.international_prefixes,
            MAX_ENTRIES,
        )?;
        let mut prefixes: Vec<String> = Vec::with_capacity(body.international_prefixes.len());
        for (i, p) in body.international_prefixes.iter().enumerate() {
            let field = format!("international_prefixes[{i}]");
            // Written with or without the `+` of E.164; stored without, as calls are matched.
            let digits = p.strip_prefix('+').unwrap_or(p);
            let ok = (1..=MAX_PREFIX).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit())
                && !digits.starts_with('0');
            if !ok {
                return Err(ApiError::invalid(
                    field,
                    format!("a country code: 1 to {MAX_PREFIX} digits, not starting with 0"),
                ));
            }
            if prefixes.iter().any(|q| q == digits) {
                return Err(ApiError::invalid(
                    field,
                    format!("{digits} is listed twice"),
                ));
            }
            prefixes.push(digits.to_owned());
        }
        Ok(Self {
            name,
            routes: body.routes,
            international_prefixes: prefixes,
            limits: body.limits.check()?,
            suspend_on_limit: body.suspend_on_limit,
            created_at: stored.map_or(now, |g| g.created_at),
            updated_at: now,
        })
    }

    fn into_routing(self) -> RoutingRecord {
        RoutingRecord::PermissionGroup(self)
    }
}

// Permission groups list by name. A replace sets every field (omitted ones are empty, zero or
// false).
crud::handlers! { PermissionGroup: list, create, get, update, delete }

// ---------------------------------------------------------------------------------------------
// Toll-fraud counters.

/// One counter as of now: calls in the current calendar minute, hour and day, calls in progress,
/// and the suspension, if any.
#[derive(Debug, Serialize)]
pub(crate) struct CounterView {
    /// `ext:<number>` or `trunk:<name>`.
    key: String,
    /// `extension` or `trunk`.
    kind: &'static str,
    /// The extension's number or the trunk's name.
    name: String,
    minute: u32,
    hour: u32,
    day: u32,
    international_day: u32,
    active_calls: usize,
    suspended: bool,
    suspended_since: Option<u64>,
    suspended_reason: Option<String>,
}

impl CounterView {
    fn new(c: TollCounter, now: u64) -> Self {
        let (kind, name) = match c.key.split_once(':') {
            Some(("ext", n)) => ("extension", n.to_owned()),
            Some(("trunk", n)) => ("trunk", n.to_owned()),
            _ => ("other", c.key.clone()),
        };
        let (suspended_since, suspended_reason) = c.suspended.clone().unzip();
        Self {
            kind,
            name,
            minute: c.minute.at(now, MINUTE_MS),
            hour: c.hour.at(now, HOUR_MS),
            day: c.day.at(now, DAY_MS),
            international_day: c.international_day.at(now, DAY_MS),
            active_calls: c.active.len(),
            suspended: suspended_since.is_some(),
            suspended_since,
            suspended_reason,
            key: c.key,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CounterQuery {
    #[serde(default)]
    after: Option<String>,
    /// Text, so that a bad one gets the paging's own message.
    #[serde(default)]
    limit: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct CounterPage {
    counters: Vec<CounterView>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// Whether `s` can be a counter's key, and so the list's cursor.
fn is_counter_key(s: &str) -> bool {
    s.len() <= MAX_COUNTER_KEY
        && (s.starts_with("ext:") || s.starts_with("trunk:"))
        && !s.chars().any(char::is_control)
}

/// The toll-fraud counters in key order (extensions, then trunks), paged by [`super::paging`]: one
/// per extension that ever called out, so the list grows with the extensions.
pub(crate) async fn list_counters(
    State(state): State<AppState>,
    who: Principal,
    ListQuery(q): ListQuery<CounterQuery>,
) -> Result<Json<CounterPage>, ApiError> {
    who.require(who.grants.routing)?;
    let page = PageRequest::parse(q.after, q.limit.as_deref(), LIMITS, is_counter_key)?;
    state.cluster.linearizable_barrier().await?;
    let rows = state
        .cluster
        .reader()
        .list_page::<TollCounter>(page.after.as_deref(), page.limit + 1)?;
    let found = Page::from_overfetch(rows, page.limit, |c| c.key.clone());
    let now = now_millis();
    Ok(Json(CounterPage {
        counters: found
            .items
            .into_iter()
            .map(|c| CounterView::new(c, now))
            .collect(),
        next: found.next,
    }))
}

/// Lets a suspended extension call out again (its counts stay as they are).
pub(crate) async fn clear_suspension(
    State(state): State<AppState>,
    who: Principal,
    Path(extension): Path<String>,
) -> Result<StatusCode, ApiError> {
    who.require(who.grants.routing)?;
    validate_number(&extension)?;
    let cmd = Command::ClearSuspension {
        extension: extension.clone(),
    };
    match propose_answer(&state, cmd).await? {
        storage::Response::Ok => {}
        storage::Response::NotFound { .. } => {
            return Err(ApiError::NotFound(format!(
                "extension {extension} is not suspended"
            )));
        }
        other => return Err(other.into()),
    }
    tracing::warn!(extension = %extension, "toll fraud: suspension cleared");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::routing::Window;

    fn group(json: serde_json::Value) -> Result<PermissionGroup, String> {
        let body: GroupBody = serde_json::from_value(json).map_err(|e| e.to_string())?;
        PermissionGroup::from_body(body, "g".into(), None, 2).map_err(|e| e.to_string())
    }

    #[test]
    fn omitted_fields_are_empty_and_prefixes_lose_their_plus() {
        let g = group(serde_json::json!({
            "international_prefixes": ["+44", "33"],
            "limits": {"per_day": 50}
        }))
        .unwrap();
        assert_eq!(g.international_prefixes, ["44", "33"]);
        assert_eq!(g.limits.per_day, 50);
        assert_eq!(g.limits.per_minute, 0);
        assert!(g.routes.is_empty() && !g.suspend_on_limit);
    }

    #[test]
    fn bad_values_name_their_field() {
        let err = group(serde_json::json!({"international_prefixes": ["12345"]})).unwrap_err();
        assert!(err.starts_with("international_prefixes[0]:"), "{err}");
        let err = group(serde_json::json!({"international_prefixes": ["044"]})).unwrap_err();
        assert!(err.starts_with("international_prefixes[0]:"), "{err}");
        let err = group(serde_json::json!({"limits": {"per_hour": 100_001}})).unwrap_err();
        assert!(err.starts_with("limits.per_hour:"), "{err}");
        let err = group(serde_json::json!({"routes": ["a", "bad name"]})).unwrap_err();
        assert!(err.starts_with("routes[1]:"), "{err}");
        let err = group(serde_json::json!({"limits": {"per_week": 1}})).unwrap_err();
        assert!(err.contains("per_week"), "{err}");
    }

    #[test]
    fn a_counter_shows_the_counts_of_the_current_windows() {
        let c = TollCounter {
            key: "ext:1001".into(),
            minute: Window {
                start: 60_000,
                count: 3,
            },
            day: Window { start: 0, count: 7 },
            active: vec![("c1".into(), 60_000)],
            suspended: Some((61_000, "per_minute".into())),
            ..TollCounter::default()
        };
        let v = CounterView::new(c, 125_000);
        assert_eq!((v.kind, v.name.as_str()), ("extension", "1001"));
        assert_eq!((v.minute, v.day, v.active_calls), (0, 7, 1));
        assert!(v.suspended);
        assert_eq!(v.suspended_reason.as_deref(), Some("per_minute"));
        assert!(is_counter_key("trunk:a") && !is_counter_key("x"));
    }
}
