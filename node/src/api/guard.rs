//! What every API request passes through: the security gate and rate count for its source, and, for a
//! change that succeeded, an entry in the replicated audit log (who, when, from where, what).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use storage::Command;
use storage::model::{Service, Transport};

use super::audit::{self, AuditContext};
use super::{ApiError, AppState};

/// The client's address, put on each request by the server (absent in in-process tests).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Self>()
            .copied()
            .unwrap_or(Self(IpAddr::from([0, 0, 0, 0]))))
    }
}

/// Where the authentication extractor leaves the admin's name for the audit entry.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditActor(Arc<Mutex<Option<String>>>);

impl AuditActor {
    pub(crate) fn set(&self, name: &str) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(name.to_owned());
    }

    pub(crate) fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

pub(crate) async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let client = req.extensions().get::<ClientAddr>().copied();
    if let Some(ClientAddr(ip)) = client
        && !state.security.admit(ip, Service::Api, Transport::Tls)
    {
        return ApiError::Forbidden.into_response();
    }
    let changes = !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    if !changes {
        return next.run(req).await;
    }
    let actor = AuditActor::default();
    req.extensions_mut().insert(actor.clone());
    let action: String = format!("{} {}", req.method(), req.uri().path())
        .chars()
        .take(256)
        .collect();
    let source = client.map_or_else(|| "local".to_owned(), |c| c.0.to_string());
    let ctx = Arc::new(AuditContext::new(
        actor.clone(),
        source,
        action,
        state.cluster.node_id(),
    ));
    // Every change the handler commits carries its audit entry in the same Raft entry.
    let resp = audit::scope(Arc::clone(&ctx), next.run(req)).await;
    let status = resp.status();
    // Logins are not configuration changes; failed requests changed nothing.
    let Some(actor) = actor.get().filter(|_| status.is_success()) else {
        return resp;
    };
    tracing::info!(actor = %actor, source = %ctx.source, action = %ctx.action, "audit: configuration changed");
    if ctx.recorded() {
        return resp;
    }
    // A change made without `propose_checked`: its entry is committed before the answer.
    let entry = ctx.entry(actor, None, status.as_u16());
    if let Err(e) = state.cluster.propose(Command::Audit(entry)).await {
        tracing::warn!(error = %e, "audit entry not stored");
        return ApiError::from(e).into_response();
    }
    resp
}
