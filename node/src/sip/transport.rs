//! SIP transports: UDP sockets, TCP and TLS listeners. Bytes in become parsed messages for the endpoint;
//! transmits from the endpoint go out on the socket or on the connection the peer opened (RFC 3261
//! §18.2.2: responses and requests to a phone reuse its own TCP/TLS connection). To a server nobody
//! is connected from (a trunk provider), the [`Dialer`] opens the connection, from the listeners'
//! address (the VIP), checking a TLS server's certificate against the provider's domain (RFC 5922).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use pbx_sip::codec::{self, Frame, Message, StreamFramer};
use pbx_sip::transaction::{Peer, Transmit, Transport};
use storage::model::{Service, Transport as GateTransport};

use crate::capture::{Capture, CaptureTransport, Direction, Passage};
use crate::security::{Security, sip_transport};
use crate::vip::Fence;

/// Connections kept open at once (phones on TCP/TLS keep one each).
const MAX_CONNECTIONS: usize = 20_000;
/// A connection that sends nothing for this long is closed (phones send keep-alives far more often).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Queued outbound messages per connection before we give up on a stuck peer.
const CONN_QUEUE: usize = 256;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A server that does not accept a connection within this is treated as down (its transactions
/// fail, and a trunk call moves on to the next server).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What transports hand to the endpoint.
#[derive(Debug)]
pub(crate) enum Inbound {
    Message {
        /// Boxed: a parsed message is large, a close notice tiny.
        msg: Box<Message>,
        peer: Peer,
    },
    /// A stream to this peer closed or failed: its transactions fail.
    Closed(Peer),
}

/// Where outbound bytes go. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Outbound {
    udp: Option<Arc<UdpSocket>>,
    /// Our own address per transport, for the Via of requests we send.
    locals: HashMap<Transport, SocketAddr>,
    streams: Arc<Mutex<StreamTable>>,
    /// On the VIP: nothing is sent unless this node holds the lease.
    fence: Option<Fence>,
    /// Opens connections to servers (set once the endpoint's channel exists).
    dialer: Arc<OnceLock<Arc<Dialer>>>,
    /// SIP capture: every message sent and received passes it (one atomic load when it is off).
    capture: Option<Arc<Capture>>,
}

/// The writer queue of every open TCP/TLS connection, by transport and peer address.
type StreamTable = HashMap<(Transport, SocketAddr), mpsc::Sender<Vec<u8>>>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error("no UDP socket")]
    NoUdp,
    #[error("no open connection to {0}")]
    NoConnection(SocketAddr),
    #[error("connection to {0} is not draining")]
    Stuck(SocketAddr),
    #[error("the TLS connection to {0} proved another name than the one expected now")]
    NotProven(SocketAddr),
    #[error("udp send: {0}")]
    Io(#[from] std::io::Error),
}

impl Outbound {
    /// The address we listen on for `transport`.
    pub(crate) fn local(&self, transport: Transport) -> Option<SocketAddr> {
        self.locals.get(&transport).copied()
    }

    /// The VIP's in-process fence, when these transports serve the VIP.
    pub(crate) fn fence(&self) -> Option<Fence> {
        self.fence.clone()
    }

    /// Whether this node must stay silent on the VIP now (its lease does not hold); counts what was
    /// fenced, by `direction`.
    fn fenced(&self, direction: &'static str) -> bool {
        let fenced = self.fence.as_ref().is_some_and(|f| !f.holds());
        if fenced {
            metrics::counter!("pbx_vip_fenced_total", "direction" => direction).increment(1);
        }
        fenced
    }

    /// Hands a message sent or received to the capture, which keeps it if it concerns an enabled
    /// target. TCP/TLS messages are seen whole (framed), TLS ones decrypted.
    fn observe(&self, direction: Direction, peer: Peer, bytes: &[u8]) {
        let Some(capture) = self.capture.as_ref().filter(|c| c.is_active()) else {
            return;
        };
        let local = self
            .locals
            .get(&peer.transport)
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let transport = match peer.transport {
            Transport::Udp => CaptureTransport::Udp,
            Transport::Tcp => CaptureTransport::Tcp,
            Transport::Tls => CaptureTransport::Tls,
        };
        let passage = Passage {
            direction,
            transport,
            local,
            remote: peer.addr,
        };
        capture.observe(crate::capture::now_micros(), passage, bytes);
    }

    /// Sends without waiting: UDP with `try_send_to`, streams through their writer's queue.
    pub(crate) fn send(&self, t: &Transmit) -> Result<(), SendError> {
        if self.fenced("out") {
            return Ok(());
        }
        self.observe(Direction::Out, t.peer, &t.bytes);
        metrics::counter!("pbx_sip_messages_sent_total", "transport" => transport_name(t.peer.transport)).increment(1);
        match t.peer.transport {
            Transport::Udp => {
                let sock = self.udp.as_ref().ok_or(SendError::NoUdp)?;
                match sock.try_send_to(&t.bytes, t.peer.addr) {
                    Ok(_) => Ok(()),
                    // A full socket buffer drops the datagram, as the network would; timers retransmit.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            transport => {
                let mut streams = self
                    .streams
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(tx) = streams.get(&(transport, t.peer.addr)) {
                    if transport == Transport::Tls && !self.proven(t.peer.addr) {
                        let e = SendError::NotProven(t.peer.addr);
                        tracing::info!(error = %e, "not sent");
                        return Err(e);
                    }
                    return tx
                        .try_send(t.bytes.clone())
                        .map_err(|_| SendError::Stuck(t.peer.addr));
                }
                let dialer = self
                    .dialer
                    .get()
                    .filter(|_| streams.len() < MAX_CONNECTIONS)
                    .ok_or(SendError::NoConnection(t.peer.addr))?;
                // The message waits in the new connection's queue while it is opened.
                let (tx, rx) = mpsc::channel(CONN_QUEUE);
                let _ = tx.try_send(t.bytes.clone());
                streams.insert((transport, t.peer.addr), tx.clone());
                drop(streams);
                dialer.dial(self.clone(), t.peer, (tx, rx));
                Ok(())
            }
        }
    }

    /// Lets this node open TCP and TLS connections to servers it sends to first.
    pub(crate) fn enable_dialing(&self, dialer: Dialer) {
        let _ = self.dialer.set(Arc::new(dialer));
    }

    /// Closes every connection this node opened (it stops serving: the VIP moved away).
    pub(crate) fn close_dialed(&self) {
        if let Some(d) = self.dialer.get() {
            lock(&d.tasks).abort_all();
        }
    }

    /// The name the TLS server at `addr` must prove: the domain of the URI it was found for.
    pub(crate) fn expect_tls_name(&self, addr: SocketAddr, name: &str) {
        if let Some(d) = self.dialer.get() {
            lock(&d.names).insert(addr, name.to_owned());
        }
    }

    /// Whether a TLS connection this node opened to `addr` proved the name expected there now (RFC
    /// 5922 §4.1: a connection is reused only for the domain its certificate was checked for).
    /// Connections the peer opened (phones) carry no expectation.
    fn proven(&self, addr: SocketAddr) -> bool {
        let Some(d) = self.dialer.get() else {
            return true;
        };
        let expected = lock(&d.names).get(&addr).cloned();
        match (expected, lock(&d.verified).get(&addr)) {
            (Some(expected), Some(verified)) => expected == *verified,
            _ => true,
        }
    }

    /// Forgets the writer of `key` if it is still `tx` (a newer connection may have replaced it).
    fn forget_stream(&self, key: (Transport, SocketAddr), tx: &mpsc::Sender<Vec<u8>>) {
        let mut streams = lock(&self.streams);
        if streams.get(&key).is_some_and(|t| t.same_channel(tx)) {
            streams.remove(&key);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A connection's writer queue, both ends.
type Queue = (mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>);

/// Opens connections to servers: TCP, or TLS verified against the public roots and a site's CA.
pub(crate) struct Dialer {
    inbound: mpsc::Sender<Inbound>,
    security: Arc<Security>,
    tls: TlsConnector,
    /// The name each TLS server must prove, by address.
    names: Mutex<HashMap<SocketAddr, String>>,
    /// The name each open TLS connection this node made was checked for.
    verified: Mutex<HashMap<SocketAddr, String>>,
    /// The connections it opened: they close when the transports stop.
    tasks: Mutex<JoinSet<()>>,
}

impl Dialer {
    pub(crate) fn new(
        inbound: mpsc::Sender<Inbound>,
        security: Arc<Security>,
        tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        Self {
            inbound,
            security,
            tls: TlsConnector::from(tls),
            names: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
            tasks: Mutex::new(JoinSet::new()),
        }
    }

    fn dial(self: &Arc<Self>, out: Outbound, peer: Peer, queue: Queue) {
        let this = Arc::clone(self);
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let tx = queue.0.clone();
            let from = out.locals.get(&peer.transport).map(SocketAddr::ip);
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect(from, peer.addr)).await;
            let served = match stream {
                Ok(Ok(stream)) => this.serve(stream, peer, out.clone(), queue).await,
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer".to_owned()),
            };
            if let Err(why) = served {
                tracing::info!(peer = %peer.addr, transport = transport_name(peer.transport), %why, "sip connection not opened");
                metrics::counter!("pbx_sip_connect_failures_total", "transport" => transport_name(peer.transport)).increment(1);
                out.forget_stream((peer.transport, peer.addr), &tx);
                // Its transactions fail now rather than at their timeout.
                let _ = this.inbound.send(Inbound::Closed(peer)).await;
            }
        });
    }

    async fn serve(
        &self,
        stream: TcpStream,
        peer: Peer,
        out: Outbound,
        queue: Queue,
    ) -> Result<(), String> {
        let _ = stream.set_nodelay(true);
        let (inbound, security) = (self.inbound.clone(), Arc::clone(&self.security));
        if peer.transport != Transport::Tls {
            serve_stream(stream, peer, out, inbound, security, Some(queue)).await;
            return Ok(());
        }
        let name = lock(&self.names)
            .get(&peer.addr)
            .cloned()
            .unwrap_or_else(|| peer.addr.ip().to_string());
        let server = rustls::pki_types::ServerName::try_from(name.clone())
            .map_err(|e| format!("{name}: {e}"))?;
        let tls = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, self.tls.connect(server, stream))
            .await
            .map_err(|_| "TLS handshake timed out".to_owned())?
            .map_err(|e| format!("TLS handshake with {name}: {e}"))?;
        lock(&self.verified).insert(peer.addr, name);
        serve_stream(tls, peer, out, inbound, security, Some(queue)).await;
        lock(&self.verified).remove(&peer.addr);
        Ok(())
    }
}

/// A TCP connection to `to`, from `from`'s address when it is a specific one of the same family.
async fn connect(from: Option<IpAddr>, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if to.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = from.filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == to.is_ipv4()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(to).await
}

pub(crate) fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
    }
}

/// The bound sockets, ready to run.
pub(crate) struct Transports {
    pub(crate) udp: Option<Arc<UdpSocket>>,
    pub(crate) tcp: Option<TcpListener>,
    pub(crate) tls: Option<(TcpListener, TlsAcceptor)>,
}

impl Transports {
    pub(crate) fn outbound(&self, fence: Option<Fence>, capture: Option<Arc<Capture>>) -> Outbound {
        let mut locals = HashMap::new();
        if let Some(a) = self.udp.as_ref().and_then(|s| s.local_addr().ok()) {
            locals.insert(Transport::Udp, a);
        }
        if let Some(a) = self.tcp.as_ref().and_then(|s| s.local_addr().ok()) {
            locals.insert(Transport::Tcp, a);
        }
        if let Some(a) = self.tls.as_ref().and_then(|(s, _)| s.local_addr().ok()) {
            locals.insert(Transport::Tls, a);
        }
        Outbound {
            udp: self.udp.clone(),
            locals,
            streams: Arc::new(Mutex::new(HashMap::new())),
            fence,
            dialer: Arc::new(OnceLock::new()),
            capture,
        }
    }

    /// Spawns the receive loops; they run until the endpoint's channel closes or their handles are
    /// aborted (which closes the sockets and every connection accepted on them).
    /// Every packet and connection passes `security`'s gate first, before any parsing.
    pub(crate) fn spawn(
        self,
        out: &Outbound,
        inbound: mpsc::Sender<Inbound>,
        security: &Arc<Security>,
        apps: Option<&Arc<crate::apps::Apps>>,
    ) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(sock) = self.udp {
            tasks.push(tokio::spawn(udp_loop(
                sock,
                out.clone(),
                inbound.clone(),
                Arc::clone(security),
                apps.cloned(),
            )));
        }
        if let Some(listener) = self.tcp {
            let security = Arc::clone(security);
            tasks.push(tokio::spawn(accept_loop(
                listener,
                None,
                out.clone(),
                inbound.clone(),
                security,
            )));
        }
        if let Some((listener, acceptor)) = self.tls {
            let security = Arc::clone(security);
            tasks.push(tokio::spawn(accept_loop(
                listener,
                Some(acceptor),
                out.clone(),
                inbound,
                security,
            )));
        }
        tasks
    }
}

async fn udp_loop(
    sock: Arc<UdpSocket>,
    out: Outbound,
    inbound: mpsc::Sender<Inbound>,
    security: Arc<Security>,
    apps: Option<Arc<crate::apps::Apps>>,
) {
    let mut buf = vec![0u8; codec::MAX_MESSAGE_LEN + 1];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors surface here on Linux; they concern one peer, not the socket.
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        if out.fenced("in") {
            continue;
        }
        // The PBX's own application agent is not a source the gate judges.
        let own = apps.as_ref().is_some_and(|a| a.owns(from));
        if !own && !security.admit(from.ip(), Service::Sip, GateTransport::Udp) {
            continue;
        }
        let peer = Peer {
            transport: Transport::Udp,
            addr: from,
        };
        if n > codec::MAX_MESSAGE_LEN {
            metrics::counter!("pbx_sip_malformed_total", "reason" => "oversized").increment(1);
            continue;
        }
        if let Some(msg) = decode(&buf[..n], peer, &out)
            && inbound
                .send(Inbound::Message {
                    msg: Box::new(msg),
                    peer,
                })
                .await
                .is_err()
        {
            return;
        }
    }
}

/// Parses one message; malformed requests that can be answered get a `400` on the spot.
fn decode(bytes: &[u8], peer: Peer, out: &Outbound) -> Option<Message> {
    metrics::counter!("pbx_sip_messages_received_total", "transport" => transport_name(peer.transport)).increment(1);
    out.observe(Direction::In, peer, bytes);
    match codec::parse(bytes) {
        Ok(mut msg) => {
            // RFC 3261 §18.2.1 `received`, RFC 3581 `rport`: where the request really came from,
            // so responses and the registrar see the phone's public address behind NAT.
            msg.stamp_received(peer.addr);
            Some(msg)
        }
        Err(e) => {
            metrics::counter!("pbx_sip_malformed_total", "reason" => "parse").increment(1);
            tracing::debug!(peer = %peer.addr, error = %e, "malformed SIP message");
            if let Some(reply) = codec::reject(bytes, &e) {
                let _ = out.send(&Transmit { peer, bytes: reply });
            }
            None
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    out: Outbound,
    inbound: mpsc::Sender<Inbound>,
    security: Arc<Security>,
) {
    let transport = if tls.is_some() {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    // Owned here so that stopping the accept loop closes every connection it accepted.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, addr) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "sip accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // A connection accepted while the lease does not hold is closed unread.
        if out.fenced("in") || !security.admit(addr.ip(), Service::Sip, sip_transport(transport)) {
            continue;
        }
        let open = out.streams.lock().map(|s| s.len()).unwrap_or(0);
        if open >= MAX_CONNECTIONS {
            metrics::counter!("pbx_sip_connections_refused_total").increment(1);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (out, inbound, tls) = (out.clone(), inbound.clone(), tls.clone());
        let security = Arc::clone(&security);
        connections.spawn(async move {
            let peer = Peer { transport, addr };
            match tls {
                None => serve_stream(stream, peer, out, inbound, security, None).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(s)) => serve_stream(s, peer, out, inbound, security, None).await,
                        _ => tracing::debug!(%addr, "sip tls handshake failed"),
                    }
                }
            }
        });
    }
}

/// Runs one connection: frames in, the writer queue out. `queue` is the queue of a connection this
/// node opened (already registered, with what waits to be sent); an accepted one gets a new one.
async fn serve_stream<S>(
    stream: S,
    peer: Peer,
    out: Outbound,
    inbound: mpsc::Sender<Inbound>,
    security: Arc<Security>,
    queue: Option<Queue>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = queue.unwrap_or_else(|| mpsc::channel::<Vec<u8>>(CONN_QUEUE));
    let key = (peer.transport, peer.addr);
    lock(&out.streams).insert(key, tx.clone());
    metrics::gauge!("pbx_sip_connections", "transport" => transport_name(peer.transport))
        .increment(1.0);
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    'read: loop {
        let n = match tokio::time::timeout(IDLE_TIMEOUT, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        if framer.push(&buf[..n]).is_err() {
            break;
        }
        while let Some(frame) = framer.next_message() {
            match frame {
                // Read while the lease does not hold (a frozen owner woke with data queued):
                // dropped unanswered, as on UDP.
                Ok(Frame::Message(_) | Frame::Ping) if out.fenced("in") => {}
                Ok(Frame::Message(bytes)) => {
                    // A source banned while connected is cut off.
                    if !security.admit(peer.addr.ip(), Service::Sip, sip_transport(peer.transport))
                    {
                        break 'read;
                    }
                    if let Some(msg) = decode(&bytes, peer, &out)
                        && inbound
                            .send(Inbound::Message {
                                msg: Box::new(msg),
                                peer,
                            })
                            .await
                            .is_err()
                    {
                        break 'read;
                    }
                }
                // RFC 5626 §4.4.1: answer a double-CRLF ping with a single CRLF pong.
                Ok(Frame::Ping) => {
                    let _ = tx.try_send(b"\r\n".to_vec());
                }
                Err(e) => {
                    metrics::counter!("pbx_sip_malformed_total", "reason" => "framing")
                        .increment(1);
                    tracing::debug!(peer = %peer.addr, error = %e, "closing stream after a framing error");
                    break 'read;
                }
            }
        }
    }
    out.forget_stream(key, &tx);
    metrics::gauge!("pbx_sip_connections", "transport" => transport_name(peer.transport))
        .decrement(1.0);
    drop(tx);
    let _ = writer.await;
    let _ = inbound.send(Inbound::Closed(peer)).await;
}

/// Binds the configured listeners.
pub(crate) async fn bind(
    udp: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    tls: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
) -> std::io::Result<Transports> {
    let udp = match udp {
        Some(a) => {
            let sock = UdpSocket::bind(a).await?;
            widen_receive_buffer(&sock);
            Some(Arc::new(sock))
        }
        None => None,
    };
    let tcp = match tcp {
        Some(a) => Some(TcpListener::bind(a).await?),
        None => None,
    };
    let tls = match tls {
        Some((a, cfg)) => Some((TcpListener::bind(a).await?, TlsAcceptor::from(cfg))),
        None => None,
    };
    Ok(Transports { udp, tcp, tls })
}

/// Receive buffer asked for the SIP UDP socket. A burst (every phone re-registering after an outage,
/// a call storm) arrives faster than one task reads; the kernel's default (about 200 KiB, some 500
/// requests) overflows and the lost requests wait for their senders' retransmission timers (500 ms
/// and up), which is how a loaded proxy collapses. The kernel caps it at `net.core.rmem_max`.
const UDP_RECEIVE_BUFFER: usize = 4 << 20;

fn widen_receive_buffer(sock: &UdpSocket) {
    let sock = socket2::SockRef::from(sock);
    if let Err(e) = sock.set_recv_buffer_size(UDP_RECEIVE_BUFFER) {
        tracing::warn!(error = %e, "could not set the SIP socket's receive buffer");
        return;
    }
    // Linux reports twice what it grants (the other half is its bookkeeping).
    let granted = sock.recv_buffer_size().unwrap_or(0) / 2;
    metrics::gauge!("pbx_sip_udp_receive_buffer_bytes").set(granted as f64);
    if granted < UDP_RECEIVE_BUFFER {
        tracing::warn!(
            granted,
            wanted = UDP_RECEIVE_BUFFER,
            "SIP UDP receive buffer capped by net.core.rmem_max: raise it (sysctl) to absorb bursts"
        );
    } else {
        tracing::debug!(granted, "SIP UDP receive buffer");
    }
}
