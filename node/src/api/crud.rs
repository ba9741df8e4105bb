//! What the routing-record endpoints (trunks, outbound and inbound routes, permission groups)
//! share: listing, reading one by name, and creating, replacing or deleting one through the
//! replicated log, with the state machine's refusals worded for the admin.
//!
//! Each record is a [`Resource`]: its module keeps its JSON shape and checks, and [`handlers!`]
//! names the generic handlers here for it, so that every record answers, fails and is audited
//! alike. A reference to a missing trunk, route or extension is checked by the state machine, in
//! log order, so two admins cannot race past it; [`propose`] words that refusal.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::ser::{Serialize, SerializeMap, Serializer};

use storage::model::UnixMillis;
use storage::routing::{PutMode, RoutingKind, RoutingRecord};
use storage::{Command, Record, Table};

use super::AppState;
use super::access::Principal;
use super::error::ApiError;
use super::json::JsonBody;
use super::routes::validate_name;
use crate::time::now_millis;

/// A routing record the API lists, creates, reads, replaces and deletes by name.
pub(super) trait Resource: Record + Clone {
    /// The record in messages and logs: `trunk`, `outbound route`.
    const NOUN: &'static str;
    const KIND: RoutingKind;
    /// The key of a list answer: `{"trunks": [...]}`.
    const LIST_KEY: &'static str;
    /// The tables the record refers to, each with the request field that names it.
    const REFS: &'static [(Table, &'static str)] = &[];
    /// The record as POST and PUT take it.
    type Body;
    /// The record as answers show it.
    type View: Serialize + From<Self>;

    /// The name the body gives: required on POST, and on PUT the URL's if given.
    fn body_name(body: &Self::Body) -> Option<&str>;
    /// The record `body` describes, checked, as record `name`. `stored` is the record a PUT
    /// replaces (`None` on POST), for what a replace keeps: its creation time, a write-only secret.
    fn from_body(
        body: Self::Body,
        name: String,
        stored: Option<Self>,
        now: UnixMillis,
    ) -> Result<Self, ApiError>;
    fn into_routing(self) -> RoutingRecord;
    /// Whether the record may stand beside `other`, another stored record of its kind (a 409
    /// otherwise): what makes sense only among all of them, such as two routes for one DID.
    fn conflicts_with(&self, _other: &Self) -> Option<String> {
        None
    }
    /// Puts a list answer in its order; left alone, it is by name, as the store keeps it.
    fn order(_records: &mut [Self]) {}
}

/// A list answer, `{"<LIST_KEY>": [...]}`: the key is each record's own, the shape is shared.
pub(super) struct Listing<V> {
    key: &'static str,
    items: Vec<V>,
}

impl<V: Serialize> Serialize for Listing<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(self.key, &self.items)?;
        map.end()
    }
}

/// What the handlers of `R` take and answer.
pub(super) type Body<R> = JsonBody<<R as Resource>::Body>;
pub(super) type View<R> = <R as Resource>::View;
pub(super) type Answer<T> = Result<T, ApiError>;

/// Every record of `R`, after a linearizable barrier (an admin sees what was just committed).
pub(super) async fn list<R: Resource>(
    State(state): State<AppState>,
    who: Principal,
) -> Answer<Json<Listing<View<R>>>> {
    who.require(who.grants.routing)?;
    state.cluster.linearizable_barrier().await?;
    let mut records = state.cluster.reader().list::<R>()?;
    R::order(&mut records);
    let items = records.into_iter().map(Into::into).collect();
    Ok(Json(Listing {
        key: R::LIST_KEY,
        items,
    }))
}

/// Creates the record the body describes; 409 if its name is taken.
pub(super) async fn create<R: Resource>(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(body): Body<R>,
) -> Answer<(StatusCode, Json<View<R>>)> {
    who.require(who.grants.routing)?;
    let name = post_name(R::body_name(&body))?;
    let record = R::from_body(body, name, None, now_millis())?;
    check_others(&state, &record)?;
    put(&state, &record, PutMode::Create).await?;
    tracing::info!(name = %record.key(), "{} created", R::NOUN);
    Ok((StatusCode::CREATED, Json(record.into())))
}

pub(super) async fn get<R: Resource>(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> Answer<Json<View<R>>> {
    who.require(who.grants.routing)?;
    Ok(Json(read::<R>(&state, &name).await?.into()))
}

/// Replaces record `name` with what the body describes; 404 if there is none. The stored record
/// is read first, so a missing one is reported before anything wrong in the body.
pub(super) async fn replace<R: Resource>(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    JsonBody(body): Body<R>,
) -> Answer<Json<View<R>>> {
    who.require(who.grants.routing)?;
    put_name(&name, R::body_name(&body))?;
    let stored = read::<R>(&state, &name).await?;
    let record = R::from_body(body, name, Some(stored), now_millis())?;
    check_others(&state, &record)?;
    put(&state, &record, PutMode::Update).await?;
    tracing::info!(name = %record.key(), "{} updated", R::NOUN);
    Ok(Json(record.into()))
}

/// Deletes record `name`; 409 naming the record that still refers to it.
pub(super) async fn delete<R: Resource>(
    State(state): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> Answer<StatusCode> {
    who.require(who.grants.routing)?;
    validate_name("name", &name)?;
    let cmd = Command::DeleteRouting {
        kind: R::KIND,
        name: name.clone(),
    };
    // A delete refers to nothing: a missing record is the URL's, a 404.
    propose::<R>(&state, cmd, &name, &[]).await?;
    tracing::info!(name = %name, "{} deleted", R::NOUN);
    Ok(StatusCode::NO_CONTENT)
}

/// A 409 when `record` conflicts with another stored record of its kind. Read, not decided in the
/// log: two admins racing could both pass, and the call engine then leaves the later route out
/// (logged), so nothing breaks beyond that route.
fn check_others<R: Resource>(state: &AppState, record: &R) -> Answer<()> {
    let key = record.key();
    for other in state.cluster.reader().list::<R>()? {
        if other.key() != key
            && let Some(why) = record.conflicts_with(&other)
        {
            return Err(ApiError::Conflict(why));
        }
    }
    Ok(())
}

/// Record `name` after a linearizable barrier; 400 for a name no record can have, 404 when it
/// does not exist.
pub(super) async fn read<R: Resource>(state: &AppState, name: &str) -> Answer<R> {
    validate_name("name", name)?;
    state.cluster.linearizable_barrier().await?;
    state
        .cluster
        .reader()
        .get::<R>(name)?
        .ok_or_else(|| ApiError::NotFound(format!("{} {name} does not exist", R::NOUN)))
}

/// Defines the five handlers of a [`Resource`] under the names the router in `mod.rs` gives them:
/// `handlers!(Trunk: list, create, get, update, delete)`. A macro because the router needs a named
/// function per resource and route, and written out they would be the same five wrappers each time.
macro_rules! handlers {
    ($r:ty: $list:ident, $create:ident, $get:ident, $replace:ident, $delete:ident) => {
        pub(crate) async fn $list(
            state: axum::extract::State<$crate::api::AppState>,
            who: $crate::api::access::Principal,
        ) -> impl axum::response::IntoResponse {
            $crate::api::crud::list::<$r>(state, who).await
        }

        pub(crate) async fn $create(
            state: axum::extract::State<$crate::api::AppState>,
            who: $crate::api::access::Principal,
            body: $crate::api::crud::Body<$r>,
        ) -> impl axum::response::IntoResponse {
            $crate::api::crud::create::<$r>(state, who, body).await
        }

        pub(crate) async fn $get(
            state: axum::extract::State<$crate::api::AppState>,
            who: $crate::api::access::Principal,
            name: axum::extract::Path<String>,
        ) -> impl axum::response::IntoResponse {
            $crate::api::crud::get::<$r>(state, who, name).await
        }

        pub(crate) async fn $replace(
            state: axum::extract::State<$crate::api::AppState>,
            who: $crate::api::access::Principal,
            name: axum::extract::Path<String>,
            body: $crate::api::crud::Body<$r>,
        ) -> impl axum::response::IntoResponse {
            $crate::api::crud::replace::<$r>(state, who, name, body).await
        }

        pub(crate) async fn $delete(
            state: axum::extract::State<$crate::api::AppState>,
            who: $crate::api::access::Principal,
            name: axum::extract::Path<String>,
        ) -> impl axum::response::IntoResponse {
            $crate::api::crud::delete::<$r>(state, who, name).await
        }
    };
}
pub(super) use handlers;

/// The record name of a POST: required.
fn post_name(body: Option<&str>) -> Result<String, ApiError> {
    let name = body.ok_or_else(|| ApiError::invalid("name", "required"))?;
    validate_name("name", name)?;
    Ok(name.to_owned())
}

/// The record name of a PUT: the path's, which the body may repeat but not contradict.
fn put_name(path: &str, body: Option<&str>) -> Result<(), ApiError> {
    validate_name("name", path)?;
    match body {
        Some(b) if b != path => Err(ApiError::invalid(
            "name",
            format!("{b} differs from the name in the URL ({path}); a record cannot be renamed"),
        )),
        _ => Ok(()),
    }
}

async fn put<R: Resource>(state: &AppState, record: &R, mode: PutMode) -> Result<(), ApiError> {
    let cmd = Command::PutRouting {
        record: record.clone().into_routing(),
        mode,
    };
    propose::<R>(state, cmd, &record.key(), R::REFS).await
}

/// Proposes `cmd` with its audit entry, as `AppState::propose_checked` does, but hands back the
/// state machine's answer as it is, for a refusal worded after what the request was.
pub(super) async fn propose_answer(
    state: &AppState,
    cmd: Command,
) -> Result<storage::Response, ApiError> {
    let cmd = super::audit::attach(cmd, state.cluster.reader());
    Ok(state.cluster.propose(cmd).await?)
}

/// Proposes a put or delete of record `name` of `R`, and words a refusal with
/// [`ApiError::refused`]: `refs` names the request field behind each table the record refers to.
///
/// A name the record refers to that does not exist is a 400 naming the field, not a 404: the URL
/// names the record being written, which is there (or being created); what is wrong is in the body,
/// and a 404 would tell the admin the wrong thing.
async fn propose<R: Resource>(
    state: &AppState,
    cmd: Command,
    name: &str,
    refs: &[(Table, &str)],
) -> Result<(), ApiError> {
    match propose_answer(state, cmd).await? {
        storage::Response::Ok => Ok(()),
        refused => {
            let fields: Vec<(&str, &str)> =
                refs.iter().map(|(t, f)| (table_name(*t), *f)).collect();
            Err(ApiError::refused(
                refused,
                table_name(R::TABLE),
                name,
                &fields,
            ))
        }
    }
}

/// A table's name as the state machine reports it.
fn table_name(table: Table) -> &'static str {
    table.cf_name().trim_start_matches("t_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_is_one_named_list() {
        let l = Listing {
            key: "trunks",
            items: vec![1, 2],
        };
        assert_eq!(serde_json::to_string(&l).unwrap(), r#"{"trunks":[1,2]}"#);
    }

    #[test]
    fn a_post_needs_a_name_and_a_put_may_not_rename() {
        assert_eq!(post_name(None).unwrap_err().to_string(), "name: required");
        assert!(post_name(Some("a b")).is_err());
        assert!(put_name("a", Some("a")).is_ok() && put_name("a", None).is_ok());
        let err = put_name("a", Some("b")).unwrap_err().to_string();
        assert!(err.contains("cannot be renamed"), "{err}");
    }
}
