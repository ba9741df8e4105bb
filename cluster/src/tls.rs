//! The cluster's PKI: a private CA per cluster, one certificate per node, and the rustls/quinn
//! configurations built from them.
//!
//! A node's identity is the DNS name `node-{id}.pbx.cluster` in its certificate. Both ends of a Raft
//! connection prove theirs: the server by the name the client dials, the client by a certificate the
//! server checks against the `from` id of every request (see `server.rs`). Only certificates issued by
//! the cluster CA are accepted, in either direction. The same node certificate (with the API's host names
//! and addresses as extra SANs) serves the HTTPS admin API.

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use storage::NodeId;

use crate::ClusterError;

/// ALPN protocol of audio file transfers between nodes ([`crate::blobs`]).
pub const BLOB_ALPN: &[u8] = b"pbx-blob/1";
/// ALPN protocol of the HTTPS admin API.
pub const API_ALPN: &[u8] = b"http/1.1";
/// DNS suffix of node identities.
pub const CLUSTER_DOMAIN: &str = "pbx.cluster";

/// File names inside a TLS directory.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
pub const NODE_CERT_FILE: &str = "node.pem";
pub const NODE_KEY_FILE: &str = "node-key.pem";

/// Upper bound for a PEM file we read: certificates and keys are a few kilobytes.
const MAX_PEM_LEN: u64 = 1024 * 1024;

/// How long certificates are valid. Rotation is an operator task; the CA outlives the node certificates.
const CA_VALIDITY: time::Duration = time::Duration::days(20 * 365);
const NODE_VALIDITY: time::Duration = time::Duration::days(10 * 365);
/// Tolerated clock skew between the node that issues a certificate and the nodes that check it.
const BACKDATE: time::Duration = time::Duration::hours(1);

/// QUIC keep-alive interval; must stay well below the idle timeout.
pub const QUIC_KEEP_ALIVE: Duration = Duration::from_secs(1);
/// First estimate of a peer's round trip, before any sample (see `transport_config`).
const INITIAL_RTT: Duration = Duration::from_millis(20);
/// A QUIC connection that hears nothing for this long is dead.
pub const QUIC_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The identity a node's certificate must carry: `node-{id}.pbx.cluster`.
pub fn node_server_name(node_id: NodeId) -> String {
    format!("node-{node_id}.{CLUSTER_DOMAIN}")
}

/// The cluster CA: its certificate and private key, PEM encoded.
#[derive(Clone)]
pub struct CaBundle {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A node certificate and its private key, PEM encoded.
#[derive(Clone)]
pub struct NodeCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a node needs to speak TLS: the cluster CA certificate, its own certificate and key (PEM).
#[derive(Clone)]
pub struct NodeTlsFiles {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for NodeTlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeTlsFiles")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl NodeTlsFiles {
    /// Combines the cluster CA certificate with a node certificate.
    pub fn new(ca_cert_pem: &str, node: &NodeCert) -> Self {
        Self {
            ca_pem: ca_cert_pem.to_owned(),
            cert_pem: node.cert_pem.clone(),
            key_pem: node.key_pem.clone(),
        }
    }

    /// Reads `ca.pem`, `node.pem` and `node-key.pem` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, ClusterError> {
        Ok(Self {
            ca_pem: read_pem(&dir.join(CA_CERT_FILE))?,
            cert_pem: read_pem(&dir.join(NODE_CERT_FILE))?,
            key_pem: read_pem(&dir.join(NODE_KEY_FILE))?,
        })
    }

    /// Writes `ca.pem`, `node.pem` (0644) and `node-key.pem` (0600) into `dir`, creating it if needed.
    pub fn write(&self, dir: &Path) -> Result<(), ClusterError> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, &e))?;
        write_file(&dir.join(CA_CERT_FILE), &self.ca_pem, 0o644)?;
        write_file(&dir.join(NODE_CERT_FILE), &self.cert_pem, 0o644)?;
        write_file(&dir.join(NODE_KEY_FILE), &self.key_pem, 0o600)
    }

    /// Checks that the certificate chains to the CA and names `node-{node_id}.pbx.cluster`.
    pub fn check_identity(&self, node_id: NodeId) -> Result<(), ClusterError> {
        let leaf = first_cert(&self.cert_pem)?;
        let ca = first_cert(&self.ca_pem)?;
        let anchor =
            webpki::anchor_from_trusted_cert(&ca).map_err(|e| tls_err("CA certificate", e))?;
        let cert =
            webpki::EndEntityCert::try_from(&leaf).map_err(|e| tls_err("node certificate", e))?;
        let provider = provider();
        let now = rustls::pki_types::UnixTime::now();
        cert.verify_for_usage(
            provider.signature_verification_algorithms.all,
            &[anchor],
            &[],
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| tls_err("node certificate is not issued by the cluster CA", e))?;
        cert_names_node(&leaf, node_id)
    }
}

/// Creates a new cluster CA (ECDSA P-256) named after the cluster.
pub fn generate_ca(cluster_name: &str) -> Result<CaBundle, ClusterError> {
    let key = KeyPair::generate().map_err(|e| tls_err("generating the CA key", e))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{cluster_name} PBX cluster CA"));
    dn.push(DnType::OrganizationName, cluster_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    let cert = params
        .self_signed(&key)
        .map_err(|e| tls_err("signing the CA certificate", e))?;
    Ok(CaBundle {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a certificate for node `node_id`, signed by `ca`.
///
/// The certificate names `node-{id}.pbx.cluster` plus every entry of `extra_sans` (IP addresses become IP
/// SANs, anything else a DNS SAN), and is valid for both TLS server and client authentication.
pub fn issue_node_cert(
    ca: &CaBundle,
    node_id: NodeId,
    extra_sans: &[String],
) -> Result<NodeCert, ClusterError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(|e| tls_err("reading the CA key", e))?;
    let ca_params = CertificateParams::from_ca_cert_pem(&ca.cert_pem)
        .map_err(|e| tls_err("reading the CA certificate", e))?;
    // Re-signing the parsed parameters gives rcgen an issuer with the CA's name and key identifier.
    let issuer = ca_params
        .self_signed(&ca_key)
        .map_err(|e| tls_err("loading the CA", e))?;

    let name = node_server_name(node_id);
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name.clone());
    params.distinguished_name = dn;
    params.subject_alt_names.push(dns_san(&name)?);
    for san in extra_sans {
        let san = san.trim();
        if san.is_empty() || san == name {
            continue;
        }
        match san.parse::<IpAddr>() {
            Ok(ip) => params.subject_alt_names.push(SanType::IpAddress(ip)),
            Err(_) => params.subject_alt_names.push(dns_san(san)?),
        }
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + NODE_VALIDITY;

    let key = KeyPair::generate().map_err(|e| tls_err("generating the node key", e))?;
    let cert = params
        .signed_by(&key, &issuer, &ca_key)
        .map_err(|e| tls_err("signing the node certificate", e))?;
    Ok(NodeCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes `ca.pem` (0644) and `ca-key.pem` (0600) into `dir`, creating it if needed.
pub fn write_ca(dir: &Path, ca: &CaBundle) -> Result<(), ClusterError> {
    fs::create_dir_all(dir).map_err(|e| io_err(dir, &e))?;
    write_file(&dir.join(CA_CERT_FILE), &ca.cert_pem, 0o644)?;
    write_file(&dir.join(CA_KEY_FILE), &ca.key_pem, 0o600)
}

/// Reads `ca.pem` and `ca-key.pem` from `dir`.
pub fn read_ca(dir: &Path) -> Result<CaBundle, ClusterError> {
    Ok(CaBundle {
        cert_pem: read_pem(&dir.join(CA_CERT_FILE))?,
        key_pem: read_pem(&dir.join(CA_KEY_FILE))?,
    })
}

/// Writes `node.pem` (0644) and `node-key.pem` (0600) into `dir`, creating it if needed.
pub fn write_node_cert(dir: &Path, cert: &NodeCert) -> Result<(), ClusterError> {
    fs::create_dir_all(dir).map_err(|e| io_err(dir, &e))?;
    write_file(&dir.join(NODE_CERT_FILE), &cert.cert_pem, 0o644)?;
    write_file(&dir.join(NODE_KEY_FILE), &cert.key_pem, 0o600)
}

/// The QUIC server side of the Raft transport: presents the node certificate and demands a client
/// certificate issued by the cluster CA.
pub fn quic_server_config(
    files: &NodeTlsFiles,
    max_wire_version: u32,
) -> Result<quinn::ServerConfig, ClusterError> {
    let provider = provider();
    let roots = Arc::new(root_store(&files.ca_pem)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&provider))
        .build()
        .map_err(|e| tls_err("building the client verifier", e))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("TLS 1.3", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&files.cert_pem)?, private_key(&files.key_pem)?)
        .map_err(|e| tls_err("node certificate", e))?;
    // Raft's versions newest first, then the blob protocol: see `crate::version`.
    tls.alpn_protocols = crate::version::raft_alpns(max_wire_version);
    tls.alpn_protocols.push(BLOB_ALPN.to_vec());
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| tls_err("QUIC server", e))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config()?);
    Ok(config)
}

/// The QUIC client side of the Raft transport: trusts only the cluster CA, presents the node
/// certificate, offers every Raft wire version this build speaks. Callers dial with the server
/// name [`node_server_name`] of the target.
pub fn quic_client_config(
    files: &NodeTlsFiles,
    max_wire_version: u32,
) -> Result<quinn::ClientConfig, ClusterError> {
    quic_client_config_for(files, crate::version::raft_alpns(max_wire_version))
}

/// The same, for audio file transfers ([`BLOB_ALPN`]).
pub fn quic_blob_client_config(files: &NodeTlsFiles) -> Result<quinn::ClientConfig, ClusterError> {
    quic_client_config_for(files, vec![BLOB_ALPN.to_vec()])
}

/// The ALPN protocol a QUIC connection agreed on.
pub(crate) fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

fn quic_client_config_for(
    files: &NodeTlsFiles,
    alpns: Vec<Vec<u8>>,
) -> Result<quinn::ClientConfig, ClusterError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("TLS 1.3", e))?
        .with_root_certificates(root_store(&files.ca_pem)?)
        .with_client_auth_cert(certs(&files.cert_pem)?, private_key(&files.key_pem)?)
        .map_err(|e| tls_err("node certificate", e))?;
    tls.alpn_protocols = alpns;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| tls_err("QUIC client", e))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config()?);
    Ok(config)
}

/// A rustls server configuration for the HTTPS admin API, with the node certificate, no client
/// certificates and ALPN `http/1.1`.
pub fn api_server_config(files: &NodeTlsFiles) -> Result<Arc<rustls::ServerConfig>, ClusterError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(certs(&files.cert_pem)?, private_key(&files.key_pem)?)
        .map_err(|e| tls_err("node certificate", e))?;
    tls.alpn_protocols = vec![API_ALPN.to_vec()];
    Ok(Arc::new(tls))
}

/// A rustls client configuration that trusts only the cluster CA (for node-to-node HTTPS calls and tests).
pub fn api_client_config(files: &NodeTlsFiles) -> Result<Arc<rustls::ClientConfig>, ClusterError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("protocol versions", e))?
        .with_root_certificates(root_store(&files.ca_pem)?)
        .with_no_client_auth();
    tls.alpn_protocols = vec![API_ALPN.to_vec()];
    Ok(Arc::new(tls))
}

/// Checks that `cert` (DER) is valid for `node-{node_id}.pbx.cluster`. The chain was verified by the TLS
/// handshake; this binds the certificate to the node id a request claims.
pub(crate) fn cert_names_node(
    cert: &CertificateDer<'_>,
    node_id: NodeId,
) -> Result<(), ClusterError> {
    let name = node_server_name(node_id);
    let server_name = ServerName::try_from(name.as_str()).map_err(|e| tls_err("node name", e))?;
    let cert = webpki::EndEntityCert::try_from(cert).map_err(|e| tls_err("peer certificate", e))?;
    cert.verify_is_valid_for_subject_name(&server_name)
        .map_err(|_| ClusterError::Tls(format!("certificate is not valid for {name}")))
}

/// The key this node's QUIC endpoint makes stateless-reset tokens with, derived from its private key
/// so that it is the same after a restart and secret to anyone without that key.
///
/// A peer's cached connection to a node that restarted is unknown to the new process. With a key
/// that changes at every start (quinn's default), the new process's reset does not match the token
/// the peer holds and is ignored: the peer's next call waits out its whole deadline (2 s for a
/// forwarded write) before the connection is given up. With the same key, the reset is accepted at
/// once and the call fails fast and is retried on a new connection.
///
/// quinn only answers a packet whose connection ID its generator recognises, so the generator's
/// key is derived the same way.
pub(crate) fn quic_endpoint_config(tls: &NodeTlsFiles) -> quinn::EndpointConfig {
    let secret = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, tls.key_pem.as_bytes());
    let derived = ring::hmac::sign(&secret, b"pbx cluster: QUIC stateless reset key v1");
    let reset = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref());
    let mut config = quinn::EndpointConfig::new(Arc::new(reset));
    config.cid_generator(|| Box::new(RandomCids(ring::rand::SystemRandom::new())));
    config
}

/// Random connection IDs that are all taken as this endpoint's own: quinn's default generator
/// signs its IDs with a key made at start and ignores a packet whose ID the new key did not sign, so
/// a restarted node would never answer the previous process's connections with the reset above.
/// (A packet for no connection draws at most one reset per 20 ms, smaller than the packet.)
struct RandomCids(ring::rand::SystemRandom);

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        use ring::rand::SecureRandom as _;
        let mut cid = [0u8; CID_LEN];
        if self.0.fill(&mut cid).is_err() {
            // The system's random source failing is not survivable in any useful way; a
            // predictable ID only weakens the unlinkability of connection IDs, not the TLS.
            tracing::error!("the system random source failed; connection ID from the clock");
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            cid = nanos.to_le_bytes();
        }
        quinn::ConnectionId::new(&cid)
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// Length of this node's QUIC connection IDs.
const CID_LEN: usize = 8;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport_config() -> Result<Arc<quinn::TransportConfig>, ClusterError> {
    let mut transport = quinn::TransportConfig::default();
    let idle =
        quinn::IdleTimeout::try_from(QUIC_IDLE_TIMEOUT).map_err(|e| tls_err("idle timeout", e))?;
    transport
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(QUIC_KEEP_ALIVE));
    // Raft uses bidirectional streams only.
    transport.max_concurrent_uni_streams(0u32.into());
    // Nodes share a LAN (the VIP needs one). quinn's default first guess of the round trip, 333 ms,
    // sets when a lost handshake packet is sent again: a restarted peer whose port was closed when
    // the first Initial came was then reached only by the next attempt, hundreds of milliseconds
    // later. The guess is replaced by the first real sample.
    transport.initial_rtt(INITIAL_RTT);
    Ok(Arc::new(transport))
}

fn root_store(ca_pem: &str) -> Result<RootCertStore, ClusterError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(ca_pem)? {
        roots.add(cert).map_err(|e| tls_err("CA certificate", e))?;
    }
    Ok(roots)
}

fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, ClusterError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err("reading certificate PEM", e))?;
    if certs.is_empty() {
        return Err(ClusterError::Tls("no certificate in PEM".into()));
    }
    Ok(certs)
}

fn first_cert(pem: &str) -> Result<CertificateDer<'static>, ClusterError> {
    certs(pem)?
        .into_iter()
        .next()
        .ok_or_else(|| ClusterError::Tls("no certificate in PEM".into()))
}

fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, ClusterError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| tls_err("reading key PEM", e))?
        .ok_or_else(|| ClusterError::Tls("no private key in PEM".into()))
}

fn dns_san(name: &str) -> Result<SanType, ClusterError> {
    let name = rcgen::Ia5String::try_from(name).map_err(|e| tls_err("DNS name", e))?;
    Ok(SanType::DnsName(name))
}

fn read_pem(path: &Path) -> Result<String, ClusterError> {
    let len = fs::metadata(path).map_err(|e| io_err(path, &e))?.len();
    if len > MAX_PEM_LEN {
        return Err(ClusterError::Tls(format!(
            "{}: file too large ({len} bytes)",
            path.display()
        )));
    }
    fs::read_to_string(path).map_err(|e| io_err(path, &e))
}

/// Writes `contents` to `path` atomically (temporary file, then rename) with the given mode, so a key is
/// never readable by others, not even briefly, and a crash leaves either the old or the new file.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), ClusterError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, &e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| io_err(&tmp, &e))?;
    file.sync_all().map_err(|e| io_err(&tmp, &e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| io_err(path, &e))
}

fn io_err(path: &Path, e: &std::io::Error) -> ClusterError {
    ClusterError::Tls(format!("{}: {e}", path.display()))
}

fn tls_err(what: &str, e: impl fmt::Display) -> ClusterError {
    ClusterError::Tls(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A node restarted on the same address resets a peer's connection to its previous process at
    /// once (the peer's next packet draws a stateless reset it accepts), instead of leaving the
    /// peer's calls to wait out their deadline; a process with another key could not.
    #[tokio::test]
    async fn a_restarted_node_resets_connections_to_its_previous_process() {
        let ca = generate_ca("reset").unwrap();
        let files = |id| NodeTlsFiles::new(&ca.cert_pem, &issue_node_cert(&ca, id, &[]).unwrap());
        let (server_files, client_files) = (files(1), files(2));
        let runtime = quinn::default_runtime().unwrap();
        let serve = |config: quinn::EndpointConfig, socket: std::net::UdpSocket| {
            let server = quic_server_config(&server_files, crate::version::WIRE_VERSION).unwrap();
            let endpoint =
                quinn::Endpoint::new(config, Some(server), socket, runtime.clone()).unwrap();
            let accepting = endpoint.clone();
            tokio::spawn(async move {
                while let Some(incoming) = accepting.accept().await {
                    if let Ok(conn) = incoming.await {
                        tokio::spawn(async move { conn.closed().await });
                    }
                }
            });
            endpoint
        };
        let client_config =
            quic_client_config(&client_files, crate::version::WIRE_VERSION).unwrap();
        let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        client.set_default_client_config(client_config);

        for (same_key, reset_expected) in [(true, true), (false, false)] {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let addr = socket.local_addr().unwrap();
            // The first process is a runtime of its own, so that it can end without a word.
            let process = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let first = {
                let _in = process.enter();
                serve(quic_endpoint_config(&server_files), socket)
            };
            let conn = client
                .connect(addr, &node_server_name(1))
                .unwrap()
                .await
                .unwrap();
            // An established connection (its handshake long over, as a node's are).
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            send.write_all(b"ping").await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop((send.finish(), recv.stop(0u32.into())));
            // kill -9: nothing is closed politely; a new process binds the address.
            drop(first);
            process.shutdown_background();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let socket = std::net::UdpSocket::bind(addr).unwrap();
            let config = if same_key {
                quic_endpoint_config(&server_files)
            } else {
                quinn::EndpointConfig::default()
            };
            let second = serve(config, socket);
            let (mut send, _recv) = conn.open_bi().await.unwrap();
            send.write_all(&[0u8; 200]).await.unwrap();
            let closed = tokio::time::timeout(Duration::from_millis(500), conn.closed()).await;
            assert_eq!(
                matches!(closed, Ok(quinn::ConnectionError::Reset)),
                reset_expected,
                "same key: {same_key}, closed: {closed:?}"
            );
            second.close(0u32.into(), b"");
        }
    }

    #[test]
    fn node_certificate_names_the_node_and_extra_sans() {
        let ca = generate_ca("test").unwrap();
        let node =
            issue_node_cert(&ca, 7, &["127.0.0.1".into(), "pbx1.example.net".into()]).unwrap();
        let files = NodeTlsFiles::new(&ca.cert_pem, &node);
        files.check_identity(7).unwrap();
        assert!(files.check_identity(8).is_err());

        let der = first_cert(&node.cert_pem).unwrap();
        let cert = webpki::EndEntityCert::try_from(&der).unwrap();
        for name in ["node-7.pbx.cluster", "pbx1.example.net", "127.0.0.1"] {
            let server_name = ServerName::try_from(name).unwrap();
            assert!(
                cert.verify_is_valid_for_subject_name(&server_name).is_ok(),
                "{name}"
            );
        }
        let other = ServerName::try_from("node-8.pbx.cluster").unwrap();
        assert!(cert.verify_is_valid_for_subject_name(&other).is_err());
    }

    #[test]
    fn a_certificate_from_another_ca_fails_the_identity_check() {
        let ca = generate_ca("a").unwrap();
        let other = generate_ca("b").unwrap();
        let node = issue_node_cert(&other, 1, &[]).unwrap();
        assert!(
            NodeTlsFiles::new(&ca.cert_pem, &node)
                .check_identity(1)
                .is_err()
        );
    }

    #[test]
    fn files_round_trip_with_private_keys_0600() {
        let dir = tempfile::tempdir().unwrap();
        let ca = generate_ca("files").unwrap();
        write_ca(dir.path(), &ca).unwrap();
        let ca2 = read_ca(dir.path()).unwrap();
        let node = issue_node_cert(&ca2, 3, &[]).unwrap();
        let files = NodeTlsFiles::new(&ca2.cert_pem, &node);
        files.write(dir.path()).unwrap();
        let loaded = NodeTlsFiles::load(dir.path()).unwrap();
        loaded.check_identity(3).unwrap();
        for key in [CA_KEY_FILE, NODE_KEY_FILE] {
            let mode = fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        quic_server_config(&loaded, crate::version::WIRE_VERSION).unwrap();
        quic_client_config(&loaded, crate::version::WIRE_VERSION).unwrap();
        api_server_config(&loaded).unwrap();
    }

    #[test]
    fn garbage_pem_is_an_error_not_a_panic() {
        let files = NodeTlsFiles {
            ca_pem: "junk".into(),
            cert_pem: "junk".into(),
            key_pem: "junk".into(),
        };
        assert!(quic_server_config(&files, crate::version::WIRE_VERSION).is_err());
        assert!(quic_client_config(&files, crate::version::WIRE_VERSION).is_err());
        assert!(files.check_identity(1).is_err());
        let ca = CaBundle {
            cert_pem: "junk".into(),
            key_pem: "junk".into(),
        };
        assert!(issue_node_cert(&ca, 1, &[]).is_err());
    }
}
