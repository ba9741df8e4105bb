//! `/api/v1/cluster`: status and membership; `/api/v1/health` for load balancers and scripts.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use storage::model::{MemberRecord, NodeAddr};
use storage::{Command, NodeId};

use super::AppState;
use super::access::Principal;
use super::error::ApiError;
use super::json::JsonBody;
use crate::time::now_millis;

#[derive(Debug, Serialize)]
pub(crate) struct Health {
    pub node_id: NodeId,
    pub initialized: bool,
    pub leader: Option<NodeId>,
    /// Whether this node owns the VIP now (absent when no VIP is configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vip_owner: Option<bool>,
}

/// Unauthenticated liveness: says nothing an outsider could use beyond "a node is here".
pub(crate) async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        node_id: state.cluster.node_id(),
        initialized: state.cluster.is_initialized(),
        leader: state.cluster.confirmed_leader(),
        vip_owner: state.vip.as_ref().map(crate::vip::Fence::holds),
    })
}

/// The cluster's status with the version and cluster protocol each node recorded.
#[derive(Debug, Serialize)]
pub(crate) struct StatusView {
    #[serde(flatten)]
    status: cluster::ClusterStatus,
    /// `0.1.0 (protocol 2)` by node id (see `live::node_versions`).
    versions: std::collections::BTreeMap<u64, String>,
}

pub(crate) async fn status(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<StatusView>, ApiError> {
    who.require(who.grants.monitor)?;
    let versions = super::live::node_versions(state.cluster.reader())?;
    Ok(Json(StatusView {
        status: state.cluster.status().await,
        versions,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddMember {
    pub node_id: NodeId,
    pub raft_addr: String,
    pub api_addr: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct MemberView {
    pub node_id: NodeId,
    pub name: String,
    pub raft_addr: String,
    pub api_addr: String,
}

fn validate_addr(what: &str, addr: &str) -> Result<(), ApiError> {
    // host:port, where host may be a name; a full parse happens when the node dials it.
    let ok = addr.len() <= 255
        && addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
    if !ok {
        return Err(ApiError::BadRequest(format!("{what} must be host:port")));
    }
    Ok(())
}

/// Adds a node: it joins as a learner, catches up, then becomes a voter. Takes as long as the catch-up.
pub(crate) async fn add_member(
    State(state): State<AppState>,
    who: Principal,
    JsonBody(req): JsonBody<AddMember>,
) -> Result<(StatusCode, Json<MemberView>), ApiError> {
    who.require_admin()?;
    if req.node_id == 0 {
        return Err(ApiError::BadRequest("node_id must be 1 or more".into()));
    }
    validate_addr("raft_addr", &req.raft_addr)?;
    validate_addr("api_addr", &req.api_addr)?;
    let name = req.name.unwrap_or_else(|| format!("node-{}", req.node_id));
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "name must be 1 to 64 printable characters".into(),
        ));
    }
    let addr = NodeAddr {
        raft_addr: req.raft_addr,
        api_addr: req.api_addr,
    };
    tracing::info!(node = req.node_id, %addr, by = %who.username, "adding cluster member");
    state.cluster.add_member(req.node_id, addr.clone()).await?;
    let rec = MemberRecord {
        node_id: req.node_id,
        name: name.clone(),
        addr: addr.clone(),
        joined_at: now_millis(),
    };
    state.propose_checked(Command::PutMember(rec)).await?;
    Ok((
        StatusCode::CREATED,
        Json(MemberView {
            node_id: req.node_id,
            name,
            raft_addr: addr.raft_addr,
            api_addr: addr.api_addr,
        }),
    ))
}

pub(crate) async fn remove_member(
    State(state): State<AppState>,
    who: Principal,
    Path(node_id): Path<NodeId>,
) -> Result<StatusCode, ApiError> {
    who.require_admin()?;
    tracing::info!(node = node_id, by = %who.username, "removing cluster member");
    state.cluster.remove_member(node_id).await?;
    state
        .propose_checked(Command::RemoveMember { node_id })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn members(
    State(state): State<AppState>,
    who: Principal,
) -> Result<Json<Vec<MemberView>>, ApiError> {
    who.require(who.grants.monitor)?;
    state.cluster.linearizable_barrier().await?;
    let rows = state.cluster.reader().list::<MemberRecord>()?;
    Ok(Json(
        rows.into_iter()
            .map(|m| MemberView {
                node_id: m.node_id,
                name: m.name,
                raft_addr: m.addr.raft_addr,
                api_addr: m.addr.api_addr,
            })
            .collect(),
    ))
}
