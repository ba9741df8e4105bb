//! The HTTPS admin API: cluster status and membership, extensions, sessions, and `/metrics`.

mod access;
mod accounts;
mod audio;
mod audit;
mod auth;
mod backups;
mod calls;
mod capture;
mod cdrs;
mod cluster;
mod conferences;
mod contacts;
mod crud;
mod devices;
mod error;
mod events;
mod extensions;
mod features;
mod firmware;
mod groups;
mod guard;
mod ivrs;
mod json;
mod live;
mod paging;
mod provision;
mod recording;
mod registrations;
mod route_recording;
mod routes;
mod security;
mod serve;
mod session;
mod system;
mod time_conditions;
mod trunks;
mod voicemail;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;

pub(crate) use self::{
    access::Principal,
    accounts::{
        get_policy as web_policy, list as list_accounts, list_roles as roles_list, me as my_account,
    },
    backups::list as backups_list,
    cdrs::{RawCdrQuery, list as list_cdrs},
    conferences::{
        DEFAULT_MAX_PARTICIPANTS, list as conferences_list, participants as conference_participants,
    },
    devices::{DeviceQuery, get_settings as provisioning_settings, list as devices_list},
    events::{EventQuery, list as list_events, list_recipients as recipients_list},
    features::{
        get_feature_codes as feature_codes, get_handling as call_handling,
        get_pickup_codes as pickup_codes, list_pickup_groups as pickup_groups_list,
        list_ring_groups as ring_groups_list,
    },
    firmware::list as firmware_list,
    ivrs::list as ivrs_list,
    live::{LiveQuery, Window as LiveWindow, snapshot as live_snapshot},
    paging::ListQuery,
    route_recording::ROUTE_MODES as ROUTE_RECORDING_MODES,
    routes::{list_inbound as inbound_list, list_outbound as outbound_list},
    security::{
        AuditQuery, Defence, Rate, audit as list_audit, defence as security_defence,
        get_policy as firewall_policy, list_bans as bans_list, list_rules as rules_list,
    },
    time_conditions::{effective_zone as time_condition_zone, list as time_conditions_list},
    trunks::list as list_trunks,
    voicemail::{MailboxView, MessageList, get as mailbox, list_messages as voicemail_messages},
};
/// Adding a device as the API does (its answer carries the token once), for the portal's tests.
#[cfg(test)]
pub(crate) use self::{devices::create as device_create, json::JsonBody};
/// The conference rooms as the list answer shows them, for the portal's tests.
#[cfg(test)]
pub(crate) use conferences::list_views as conference_views;
/// Contacts as the list answer shows them, for the portal's tests.
#[cfg(test)]
pub(crate) use contacts::testing as contacts_testing;
pub(crate) use contacts::{
    ContactList, ContactQuery, ContactView, list as contacts_list,
    list_personal as personal_contacts_list,
};
pub use error::ApiError;
pub use guard::ClientAddr;
/// The IVRs as the list answer shows them, for the portal's tests.
#[cfg(test)]
pub(crate) use ivrs::list_views as ivr_views;
pub(crate) use live::{record_version, watch_versions};
pub use routes::{RoutingSettings, read_routing_settings};
pub use serve::{ServeError, serve_https};
/// The time conditions as the list answer shows them at a given instant, for the portal's tests.
#[cfg(test)]
pub(crate) use time_conditions::list_views as time_condition_views;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub cluster: ::cluster::Cluster,
    pub prometheus: PrometheusHandle,
    pub security: std::sync::Arc<crate::security::Security>,
    pub events: std::sync::Arc<crate::events::Events>,
    /// This node's VIP lease, when a VIP is configured.
    pub vip: Option<crate::vip::Fence>,
    pub audio: std::sync::Arc<crate::audio::AudioStore>,
    /// This node's SIP capture (the targets follow the replicated table).
    pub capture: std::sync::Arc<crate::capture::Capture>,
    /// This node's SIP listeners: the ports provisioning files give phones.
    pub sip: crate::provisioning::SipListeners,
    /// This node's backups (the table lists every node's).
    pub backups: std::sync::Arc<crate::backup::Backups>,
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
        .route(
            "/session",
            get(session::whoami)
                .post(session::login)
                .delete(session::logout),
        )
        .route("/account", get(accounts::me))
        .route("/account/password", post(accounts::change_password))
        .route("/account/totp", post(accounts::start_totp))
        .route("/account/totp/confirm", post(accounts::confirm_totp))
        .route("/accounts", get(accounts::list).post(accounts::create))
        .route(
            "/accounts/{name}",
            get(accounts::get)
                .patch(accounts::update)
                .delete(accounts::delete),
        )
        .route("/accounts/{name}/password", post(accounts::reset_password))
        .route(
            "/roles",
            get(accounts::list_roles).post(accounts::create_role),
        )
        .route(
            "/roles/{name}",
            get(accounts::get_role)
                .put(accounts::update_role)
                .delete(accounts::delete_role),
        )
        .route(
            "/web/policy",
            get(accounts::get_policy).put(accounts::put_policy),
        )
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
        .route("/live", get(live::stream))
        .route("/system", get(system::get).put(system::put))
        .route("/system/network", get(system::network))
        .route(
            "/extensions/import",
            post(system::import).layer(DefaultBodyLimit::max(system::MAX_IMPORT_BYTES)),
        )
        .route("/extensions/{number}/welcome", post(system::welcome))
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
        .route("/security/defence", get(security::defence))
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
        .route("/calls/{id}", get(calls::get).delete(calls::hang_up))
        .route("/cdrs", get(cdrs::list))
        .route(
            "/extensions/{number}/registrations",
            get(registrations::for_extension),
        )
        .route(
            "/extensions/{number}/handling",
            get(features::get_handling).put(features::put_handling),
        )
        .route(
            "/extensions/{number}/recording",
            get(recording::get_policy).put(recording::put_policy),
        )
        .route(
            "/extensions/{number}/voicemail",
            get(voicemail::get)
                .put(voicemail::put)
                .delete(voicemail::delete),
        )
        .route(
            "/extensions/{number}/voicemail/messages",
            get(voicemail::list_messages),
        )
        .route(
            "/extensions/{number}/voicemail/messages/{audio_id}",
            axum::routing::put(voicemail::mark).delete(voicemail::delete_message),
        )
        .route(
            "/ring-groups",
            get(features::list_ring_groups).post(features::create_ring_group),
        )
        .route(
            "/ring-groups/{number}",
            get(features::get_ring_group)
                .put(features::update_ring_group)
                .delete(features::delete_ring_group),
        )
        .route("/time-conditions", get(time_conditions::list))
        .route(
            "/time-conditions/{name}",
            get(time_conditions::get)
                .put(time_conditions::put)
                .delete(time_conditions::delete),
        )
        .route("/ivrs", get(ivrs::list))
        .route(
            "/ivrs/{number}",
            get(ivrs::get).put(ivrs::put).delete(ivrs::delete),
        )
        .route("/conferences", get(conferences::list))
        .route(
            "/conferences/{number}",
            get(conferences::get)
                .put(conferences::put)
                .delete(conferences::delete),
        )
        .route(
            "/conferences/{number}/participants",
            get(conferences::participants),
        )
        .route(
            "/conferences/{number}/participants/{id}",
            axum::routing::put(conferences::set_muted).delete(conferences::kick),
        )
        .route(
            "/feature-codes",
            get(features::get_feature_codes).put(features::put_feature_codes),
        )
        .route("/pickup-groups", get(features::list_pickup_groups))
        .route(
            "/pickup-groups/{name}",
            get(features::get_pickup_group)
                .put(features::put_pickup_group)
                .delete(features::delete_pickup_group),
        )
        .route(
            "/pickup-codes",
            get(features::get_pickup_codes).put(features::put_pickup_codes),
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
            "/trunks/{name}/recording",
            get(route_recording::get_trunk).put(route_recording::put_trunk),
        )
        .route(
            "/routes/outbound/{name}/recording",
            get(route_recording::get_outbound).put(route_recording::put_outbound),
        )
        .route(
            "/routes/inbound/{name}/recording",
            get(route_recording::get_inbound).put(route_recording::put_inbound),
        )
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
        .route(
            "/audio",
            get(audio::list)
                .post(audio::upload)
                .layer(DefaultBodyLimit::max(audio::MAX_UPLOAD_BYTES)),
        )
        .route("/audio/speech", post(audio::speech))
        .route("/audio/{id}", get(audio::get).delete(audio::delete))
        .route("/audio/{id}/content", get(audio::content))
        .route(
            "/audio-quotas",
            get(audio::get_quotas).put(audio::put_quotas),
        )
        .route("/backups", get(backups::list).post(backups::create))
        .route(
            "/backups/settings",
            axum::routing::put(backups::put_settings),
        )
        .route("/backups/{id}", get(backups::get).delete(backups::delete))
        .route("/backups/{id}/download", get(backups::download))
        .route("/capture", get(capture::list))
        .route("/capture.pcap", get(capture::download))
        .route("/capture/targets", get(capture::list_targets))
        .route(
            "/capture/targets/{kind}/{name}",
            axum::routing::put(capture::put_target).delete(capture::delete_target),
        )
        .route("/toll-fraud", get(groups::list_counters))
        .route(
            "/toll-fraud/suspensions/{extension}",
            axum::routing::delete(groups::clear_suspension),
        )
        .route("/devices", get(devices::list).post(devices::create))
        .route(
            "/devices/import",
            post(devices::import).layer(DefaultBodyLimit::max(devices::MAX_IMPORT_BYTES)),
        )
        .route(
            "/devices/{mac}",
            get(devices::get)
                .patch(devices::update)
                .delete(devices::delete),
        )
        .route("/devices/{mac}/reprovision", post(devices::reprovision))
        .route("/firmware", get(firmware::list))
        .route(
            "/firmware/{brand}/{model}",
            axum::routing::put(firmware::put)
                .delete(firmware::delete)
                .layer(DefaultBodyLimit::max(firmware::MAX_FIRMWARE_BYTES)),
        )
        .route(
            "/provisioning/settings",
            get(devices::get_settings).put(devices::put_settings),
        )
        .route("/contacts", get(contacts::list).post(contacts::create))
        .route(
            "/contacts/import",
            post(contacts::import).layer(DefaultBodyLimit::max(contacts::MAX_IMPORT_BYTES)),
        )
        .route("/contacts/export", get(contacts::export))
        .route(
            "/contacts/{id}",
            get(contacts::get)
                .put(contacts::update)
                .delete(contacts::delete),
        )
        .route(
            "/extensions/{number}/contacts",
            get(contacts::list_personal).post(contacts::create_personal),
        )
        .route(
            "/extensions/{number}/contacts/import",
            post(contacts::import_personal)
                .layer(DefaultBodyLimit::max(contacts::MAX_IMPORT_BYTES)),
        )
        .route(
            "/extensions/{number}/contacts/export",
            get(contacts::export_personal),
        )
        .route(
            "/extensions/{number}/contacts/{id}",
            get(contacts::get_personal)
                .put(contacts::update_personal)
                .delete(contacts::delete_personal),
        );
    Router::new()
        .nest("/api/v1", v1)
        .route("/metrics", get(metrics_text))
        .route("/phonebook/{file}", get(contacts::phonebook))
        .route("/provision/{file}", get(provision::with_basic))
        .route("/provision/{token}/{file}", get(provision::with_token))
        .route(
            "/provision/firmware/{mac}/{name}",
            get(provision::firmware_with_basic),
        )
        .route(
            "/provision/{token}/firmware/{mac}/{name}",
            get(provision::firmware_with_token),
        )
        .merge(crate::portal::router())
        .fallback(crate::portal::fallback(not_found))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            access::sessions,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), guard::guard))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(track))
        .layer(DefaultBodyLimit::max(json::MAX_BODY_BYTES))
        .with_state(state)
}

/// Headers every answer carries: no framing (clickjacking), no scripts or styles but the portal's
/// own files (no inline code), no MIME sniffing, no referrer leaving the portal.
async fn security_headers(req: Request, next: Next) -> Response {
    use axum::http::HeaderValue;
    use axum::http::header;
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; media-src 'self'; object-src 'none'; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
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
