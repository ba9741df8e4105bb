//! SIP: transports, the transaction-layer driver, the registrar and the answers the PBX gives itself.
//! The pure cores (codec, transactions, digest) live in the `pbx-sip` crate.

mod auth;
pub(crate) mod call;
mod contact;
mod endpoint;
mod expiry;
mod handler;
mod presence;
mod qualify;
mod registrar;
mod reply;
mod transport;
mod trunk;
mod writer;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use cluster::Cluster;
use pbx_sip::transaction::TransactionConfig;

pub(crate) use call::{cluster_zone, index_cdrs, local_time};
pub use registrar::RegistrarConfig;

use crate::config::{CallsSection, MediaSection, SipSection, TrunksSection};
use crate::media::PortRange;
use crate::security::Security;
use crate::vip::Fence;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SipError {
    #[error("binding SIP listeners: {0}")]
    Bind(#[from] std::io::Error),
    #[error("no media address: set [media] address or bind [sip] udp to an address")]
    NoMediaAddress,
    #[error("[trunks] dns_servers: {0}")]
    Dns(String),
    #[error("[trunks] tls_ca_file: {0}")]
    TrunkCa(String),
    #[error("binding the application agent on loopback: {0}")]
    Apps(std::io::Error),
}

/// The running SIP service; dropping it stops its tasks, closes its sockets and connections, and
/// drops its calls (without ending them: see [`call::Calls::abandon_all`]).
pub struct SipService {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    calls: Arc<call::Calls>,
}

impl Drop for SipService {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.calls.abandon_all();
        self.calls.out.close_dialed();
    }
}

/// SIP served on the floating address, by its owner only.
#[derive(Debug, Clone)]
pub struct OnVip {
    pub ip: IpAddr,
    pub fence: Fence,
}

/// How long a new VIP owner waits for the cluster before carrying calls on from its local copy.
const CARRY_ON_WAIT: Duration = Duration::from_secs(2);

impl SipService {
    /// Binds the configured listeners and starts serving. `None` when no SIP listener is configured.
    ///
    /// With `vip`, the listeners and the media relay bind the VIP (on the configured ports), every
    /// established call in the records is carried on before the first packet is read, and nothing is
    /// sent or received on the VIP while the fence is down.
    #[expect(
        clippy::too_many_arguments,
        reason = "the config sections SIP reads and the node's shared services, each once"
    )]
    pub async fn start(
        cfg: &SipSection,
        media: &MediaSection,
        calls_cfg: &CallsSection,
        trunks_cfg: &TrunksSection,
        cluster: Cluster,
        tls: Arc<rustls::ServerConfig>,
        security: Arc<Security>,
        audio: Arc<crate::audio::AudioStore>,
        capture: Arc<crate::capture::Capture>,
        vip: Option<OnVip>,
    ) -> Result<Option<Self>, SipError> {
        if cfg.udp.is_none() && cfg.tcp.is_none() && cfg.tls.is_none() {
            return Ok(None);
        }
        let on_vip = |a: SocketAddr| match &vip {
            Some(v) => SocketAddr::new(v.ip, a.port()),
            None => a,
        };
        let (udp, tcp, tls_addr) = (
            cfg.udp.map(on_vip),
            cfg.tcp.map(on_vip),
            cfg.tls.map(on_vip),
        );
        // SIP over TLS: the node certificate, without the API's ALPN (phones offer none).
        let mut sip_tls = (*tls).clone();
        sip_tls.alpn_protocols.clear();
        let transports =
            transport::bind(udp, tcp, tls_addr.map(|a| (a, Arc::new(sip_tls)))).await?;
        let out = transports.outbound(vip.as_ref().map(|v| v.fence.clone()), Some(capture));
        let (inbound_tx, inbound_rx) = tokio::sync::mpsc::channel(16 * 1024);
        let client_tls = trunk_tls(trunks_cfg)?;
        out.enable_dialing(transport::Dialer::new(
            inbound_tx.clone(),
            Arc::clone(&security),
            client_tls,
        ));
        let (endpoint_handle, commands) = endpoint::Endpoint::channel();
        let writer = writer::BindingWriter::new(cluster.clone());
        let media_addr = match &vip {
            Some(v) => v.ip,
            None => media
                .address
                .or_else(|| cfg.udp.map(|a| a.ip()).filter(|ip| !ip.is_unspecified()))
                .ok_or(SipError::NoMediaAddress)?,
        };
        let dns = trunk::dns::Dns::new(&trunks_cfg.dns_servers)
            .map_err(|e| SipError::Dns(e.to_string()))?;
        let trunks = Arc::new(trunk::Trunks::new(
            cluster.clone(),
            dns,
            Duration::from_secs(trunks_cfg.failover_secs.max(1)),
            Duration::from_secs(calls_cfg.ring_timeout_secs.saturating_add(60)),
            Arc::clone(&security),
        ));
        let (apps, apps_task) = crate::apps::Apps::start(
            cluster.clone(),
            Arc::clone(&audio),
            Arc::clone(&security),
            vip.is_some(),
        )
        .await
        .map_err(SipError::Apps)?;
        let calls = Arc::new(call::Calls::new(
            cluster.clone(),
            endpoint_handle.clone(),
            out.clone(),
            PortRange::new(media_addr, media.rtp_port_min, media.rtp_port_max),
            call::CallConfig {
                ring_timeout: Duration::from_secs(calls_cfg.ring_timeout_secs),
                max_duration: (calls_cfg.max_call_secs > 0)
                    .then(|| Duration::from_secs(calls_cfg.max_call_secs)),
                media_timeout: (media.media_timeout_secs > 0)
                    .then(|| Duration::from_secs(media.media_timeout_secs)),
                latch_window: Duration::from_secs(media.latch_window_secs),
                max_per_extension: calls_cfg.max_calls_per_extension,
                reject_anonymous: calls_cfg.reject_anonymous,
                transfer_ring_back: calls_cfg.transfer_ring_back,
                hold_music: calls_cfg.hold_music,
                realm: cfg.realm.clone(),
            },
            Arc::clone(&security),
            Arc::clone(&trunks),
            call::RecordingSetup {
                store: audio,
                segment: Duration::from_secs(calls_cfg.recording_segment_secs.max(1)),
                retention: (calls_cfg.recording_retention_days > 0).then(|| {
                    Duration::from_secs(calls_cfg.recording_retention_days.saturating_mul(86_400))
                }),
            },
            Arc::clone(&apps),
        ));
        let mut tasks = vec![apps_task];
        tasks.push(tokio::spawn(Arc::clone(&calls.music).refresh_every()));
        tasks.push(tokio::spawn(trunk::refresh_sources(
            Arc::clone(&trunks),
            Duration::from_secs(trunks_cfg.address_refresh_secs.max(5)),
        )));
        if vip.is_none() {
            tasks.push(tokio::spawn(call::end_orphans(Arc::clone(&calls))));
        }
        if calls_cfg.cdr_retention_days > 0 {
            let keep = Duration::from_secs(calls_cfg.cdr_retention_days.saturating_mul(86_400));
            tasks.push(tokio::spawn(call::retention(Arc::clone(&calls), keep)));
        }
        let auth = Arc::new(auth::SipAuth::new(
            cluster.clone(),
            Arc::clone(&security),
            &cfg.digest_algorithms,
        ));
        let presence = Arc::new(presence::Presence::new(
            cluster.clone(),
            Arc::clone(&auth),
            endpoint_handle.clone(),
            Arc::clone(&calls),
            cfg.realm.clone(),
            vip.is_some(),
        ));
        tasks.push(tokio::spawn(Arc::clone(&presence).run()));
        let handler = Arc::new(handler::Handler {
            calls: Arc::clone(&calls),
            presence,
            auth,
            cluster: cluster.clone(),
            registrar: RegistrarConfig {
                min_expires: cfg.min_expires,
                max_expires: cfg.max_expires,
                default_expires: cfg.max_expires,
                max_contacts: cfg.max_contacts,
            },
            writer: writer.clone(),
            endpoint: endpoint_handle.clone(),
        });
        let trunk_endpoint = endpoint_handle.clone();
        let (qualify_endpoint, qualify_out) = (endpoint_handle, out.clone());
        let tx_config = TransactionConfig {
            max_transactions: cfg.max_transactions,
            max_finished: cfg.max_finished_transactions,
            ..TransactionConfig::default()
        };
        let endpoint = endpoint::Endpoint::new(tx_config, out.clone(), handler);
        tasks.push(tokio::spawn(endpoint.run(inbound_rx, commands)));
        if vip.is_some() {
            // Before the first packet is read: a BYE or re-INVITE already queued finds its call.
            let carried = call::carry_on(&calls, CARRY_ON_WAIT).await;
            tracing::info!(calls = carried, "established calls carried on");
        }
        // After the calls carried on: requests stored before are acted on at once.
        tasks.push(tokio::spawn(call::watch_hangups(Arc::clone(&calls))));
        tasks.extend(transports.spawn(&out, inbound_tx, &security, Some(&apps)));
        // Trunks register from the node serving phones: the VIP owner (this service exists only
        // while it owns the VIP), or without a VIP the Raft leader, so a provider sees one
        // registration.
        let local_calls = Arc::clone(&calls);
        let local: trunk::register::LocalOf = Arc::new(move |t| local_calls.local(t));
        let leadership = cluster.leadership();
        let on_vip = vip.is_some();
        tasks.push(tokio::spawn(trunk::run_registrations(
            Arc::clone(&trunks),
            trunk_endpoint,
            out.clone(),
            local,
            move || on_vip || leadership.borrow().leads,
        )));
        tasks.push(tokio::spawn(expiry::run(cluster.clone(), writer.clone())));
        if cfg.qualify_interval_secs > 0 {
            let qualifier = qualify::Qualifier {
                cluster,
                endpoint: qualify_endpoint,
                out: qualify_out,
                writer,
                interval: Duration::from_secs(cfg.qualify_interval_secs),
                realm: cfg.realm.clone(),
            };
            tasks.push(tokio::spawn(qualifier.run()));
        }
        tracing::info!(udp = ?udp, tcp = ?tcp, tls = ?tls_addr, "sip listening");
        Ok(Some(Self { tasks, calls }))
    }
}

/// The TLS client configuration providers are checked with: the public roots (webpki-roots) and the
/// site's own CAs from `[trunks] tls_ca_file`.
fn trunk_tls(cfg: &TrunksSection) -> Result<Arc<rustls::ClientConfig>, SipError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &cfg.tls_ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| SipError::TrunkCa(format!("{}: {e}", path.display())))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| SipError::TrunkCa(format!("{}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| SipError::TrunkCa(format!("{}: {e}", path.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(SipError::TrunkCa(format!(
                "{}: no certificate",
                path.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SipError::TrunkCa(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(tls))
}
