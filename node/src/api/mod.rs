//! The HTTPS admin API: cluster status and membership, extensions, sessions, and `/metrics`.

mod audit;
mod auth;
mod calls;
mod cdrs;
mod cluster;
mod crud;
mod error;
mod events;
mod extensions;
mod groups;
mod guard;
mod json;
mod paging;
mod registrations;
mod routes;
mod security;
mod serve;
mod session;
mod trunks;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;

pub use error::ApiError;
pub use guard::ClientAddr;
pub use routes::{RoutingSettings, read_routing_settings};
pub use serve::{ServeError, serve_https};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub cluster: ::cluster::Cluster,
    pub prometheus: PrometheusHandle,
    pub security: std::sync::Arc<crate::security::Security>,
    pub events: std::sync::Arc<crate::events::Events>,
    /// This node's VIP lease, when a VIP is configured.
    pub vip: Option<crate::vip::Fence>,
}

impl AppState {
    /// Proposes `cmd` and turns a refusal by the state machine (conflict, not found) into an API error.
    /// Returns once the command is committed: what the caller is told has happened, has.
    /// An admin's change carries its audit entry into the same Raft entry ([`audit::attach`]).
    async fn propose_checked(&self, cmd: storage::Command) -> Result<(), ApiError> {
        let cmd = audit::attach(cmd, self.cluster.reader());
        match self.cluster.propose(cmd).await? {
            storage::Response::Ok => Ok(()),
            refused => Err(refused.into()),
        }
    }
}

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/health", get(cluster::health))
        .route("/session", post(session::login))
        .route("/cluster/status", get(cluster::status))
        .route(
            "/cluster/members",
            get(cluster::members).post(cluster::add_member),
        )
        .route(
            "/cluster/members/{node_id}",
            axum::routing::delete(cluster::remove_member),
        )
        .route(
            "/extensions",
            get(extensions::list).post(extensions::create),
        )
        .route("/registrations", get(registrations::list))
        .route(
            "/firewall/rules",
            get(security::list_rules).post(security::create_rule),
        )
        .route(
            "/firewall/rules/{id}",
            axum::routing::delete(security::delete_rule),
        )
        .route(
            "/firewall/policy",
            get(security::get_policy).put(security::put_policy),
        )
        .route("/bans", get(security::list_bans).post(security::create_ban))
        .route("/bans/{ip}", axum::routing::delete(security::lift_ban))
        .route("/audit", get(security::audit))
        .route("/events", get(events::list))
        .route(
            "/notifications/recipients",
            get(events::list_recipients).post(events::create_recipient),
        )
        .route(
            "/notifications/recipients/{id}",
            axum::routing::delete(events::delete_recipient),
        )
        .route("/calls", get(calls::list))
        .route("/calls/{id}", get(calls::get))
        .route("/cdrs", get(cdrs::list))
        .route(
            "/extensions/{number}/registrations",
            get(registrations::for_extension),
        )
        .route(
            "/extensions/{number}",
            get(extensions::get)
                .patch(extensions::update)
                .delete(extensions::delete),
        )
        .route("/trunks", get(trunks::list).post(trunks::create))
        .route(
            "/trunks/{name}",
            get(trunks::get).put(trunks::update).delete(trunks::delete),
        )
        .route("/trunks/{name}/status", get(trunks::status))
        .route(
            "/routes/outbound",
            get(routes::list_outbound).post(routes::create_outbound),
        )
        .route(
            "/routes/outbound/{name}",
            get(routes::get_outbound)
                .put(routes::update_outbound)
                .delete(routes::delete_outbound),
        )
        .route(
            "/routes/inbound",
            get(routes::list_inbound).post(routes::create_inbound),
        )
        .route(
            "/routes/inbound/{name}",
            get(routes::get_inbound)
                .put(routes::update_inbound)
                .delete(routes::delete_inbound),
        )
        .route(
            "/routing/settings",
            get(routes::get_settings).put(routes::put_settings),
        )
        .route("/permission-groups", get(groups::list).post(groups::create))
        .route(
            "/permission-groups/{name}",
            get(groups::get).put(groups::update).delete(groups::delete),
        )
        .route("/toll-fraud", get(groups::list_counters))
        .route(
            "/toll-fraud/suspensions/{extension}",
            axum::routing::delete(groups::clear_suspension),
        );
    Router::new()
        .nest("/api/v1", v1)
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard::guard))
        .layer(middleware::from_fn(track))
        .layer(DefaultBodyLimit::max(json::MAX_BODY_BYTES))
        .with_state(state)
}

async fn metrics_text(State(state): State<AppState>) -> String {
    state.prometheus.render()
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

/// Request counts and latency per route, for `/metrics`.
async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await.into_response();
    let status = resp.status().as_u16().to_string();
    metrics::counter!("pbx_api_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("pbx_api_request_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}
