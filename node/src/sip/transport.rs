//! SIP transports: UDP sockets, TCP and TLS listeners. Bytes in become parsed messages for the endpoint;
//! transmits from the endpoint go out on the socket or on the connection the peer opened (RFC 3261
//! §18.2.2: responses and requests to a phone reuse its own TCP/TLS connection).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use pbx_sip::codec::{self, Frame, Message, StreamFramer};
use pbx_sip::transaction::{Peer, Transmit, Transport};
use storage::model::{Service, Transport as GateTransport};

use crate::security::{Security, sip_transport};
use crate::vip::Fence;

/// Connections kept open at once (phones on TCP/TLS keep one each).
const MAX_CONNECTIONS: usize = 20_000;
/// A connection that sends nothing for this long is closed (phones send keep-alives far more often).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Queued outbound messages per connection before we give up on a stuck peer.
const CONN_QUEUE: usize = 256;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

    /// Sends without waiting: UDP with `try_send_to`, streams through their writer's queue.
    pub(crate) fn send(&self, t: &Transmit) -> Result<(), SendError> {
        if self.fenced("out") {
            return Ok(());
        }
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
                let streams = self
                    .streams
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let tx = streams
                    .get(&(transport, t.peer.addr))
                    .ok_or(SendError::NoConnection(t.peer.addr))?;
                tx.try_send(t.bytes.clone())
                    .map_err(|_| SendError::Stuck(t.peer.addr))
            }
        }
    }
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
    pub(crate) fn outbound(&self, fence: Option<Fence>) -> Outbound {
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
    ) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(sock) = self.udp {
            tasks.push(tokio::spawn(udp_loop(
                sock,
                out.clone(),
                inbound.clone(),
                Arc::clone(security),
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
        if !security.admit(from.ip(), Service::Sip, GateTransport::Udp) {
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
    let mut connections = tokio::task::JoinSet::new();
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
                None => serve_stream(stream, peer, out, inbound, security).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(s)) => serve_stream(s, peer, out, inbound, security).await,
                        _ => tracing::debug!(%addr, "sip tls handshake failed"),
                    }
                }
            }
        });
    }
}

async fn serve_stream<S>(
    stream: S,
    peer: Peer,
    out: Outbound,
    inbound: mpsc::Sender<Inbound>,
    security: Arc<Security>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CONN_QUEUE);
    let key = (peer.transport, peer.addr);
    out.streams
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key, tx.clone());
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
    out.streams
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&key);
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
        Some(a) => Some(Arc::new(UdpSocket::bind(a).await?)),
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
