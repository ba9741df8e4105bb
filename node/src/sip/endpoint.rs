//! The driver of the transaction layer: one task owns it, feeds it what the transports received and
//! what the PBX logic answered, sends what it asks to send, and sleeps until its next timer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use pbx_sip::transaction::{
    ClientTxId, Peer, ServerTxId, TransactionConfig, TransactionLayer, TxEvent, TxId,
};

use super::call::{CallInput, LegEvent};
use super::handler::Handler;
use super::transport::{Inbound, Outbound};

/// Inbound messages handled per wake-up at most, beyond the one that woke the endpoint.
const BATCH: usize = 32;

/// Commands from the PBX logic to the endpoint.
#[derive(Debug)]
pub(crate) enum Command {
    Respond {
        tx: ServerTxId,
        resp: rsip::Response,
    },
    /// Send a request as a client transaction; `done` gets its final outcome.
    Request {
        req: rsip::Request,
        peer: Peer,
        done: oneshot::Sender<ClientOutcome>,
    },
    /// Send an INVITE for a call's branch; every event of its transaction goes to the call.
    Invite {
        req: rsip::Request,
        peer: Peer,
        branch: usize,
        call: mpsc::UnboundedSender<CallInput>,
        started: oneshot::Sender<Option<ClientTxId>>,
    },
    Cancel {
        tx: ClientTxId,
    },
    /// A message outside any transaction (the ACK for a 2xx).
    Stateless {
        msg: rsip::SipMessage,
        peer: Peer,
    },
}

/// How a request we sent ended.
#[derive(Debug)]
pub(crate) enum ClientOutcome {
    Final(rsip::Response),
    Timeout,
    /// Not sent, or the transport failed under it.
    Failed,
    /// This node's SIP service stopped before the request ended (the VIP lease was lost, or the
    /// node is shutting down): says nothing about the peer.
    Abandoned,
}

/// A handle the PBX logic uses to answer and to send. Cheap to clone.
#[derive(Clone)]
pub(crate) struct EndpointHandle {
    tx: mpsc::Sender<Command>,
}

impl EndpointHandle {
    pub(crate) async fn respond(&self, tx: ServerTxId, resp: rsip::Response) {
        let _ = self.tx.send(Command::Respond { tx, resp }).await;
    }

    pub(crate) async fn request(&self, req: rsip::Request, peer: Peer) -> ClientOutcome {
        let (done, wait) = oneshot::channel();
        if self
            .tx
            .send(Command::Request { req, peer, done })
            .await
            .is_err()
        {
            return ClientOutcome::Abandoned;
        }
        wait.await.unwrap_or(ClientOutcome::Abandoned)
    }

    /// Starts an INVITE client transaction for branch `branch` of a call. `None` when it could not
    /// be sent (overload, malformed).
    pub(crate) async fn invite(
        &self,
        req: rsip::Request,
        peer: Peer,
        branch: usize,
        call: mpsc::UnboundedSender<CallInput>,
    ) -> Option<ClientTxId> {
        let (started, wait) = oneshot::channel();
        let cmd = Command::Invite {
            req,
            peer,
            branch,
            call,
            started,
        };
        self.tx.send(cmd).await.ok()?;
        wait.await.ok().flatten()
    }

    pub(crate) async fn cancel(&self, tx: ClientTxId) {
        let _ = self.tx.send(Command::Cancel { tx }).await;
    }

    pub(crate) async fn send_stateless(&self, msg: rsip::SipMessage, peer: Peer) {
        let _ = self.tx.send(Command::Stateless { msg, peer }).await;
    }
}

/// Where a call branch's INVITE transaction reports.
struct BranchRoute {
    branch: usize,
    call: mpsc::UnboundedSender<CallInput>,
    peer: Peer,
}

pub(crate) struct Endpoint {
    layer: TransactionLayer,
    out: Outbound,
    handler: Arc<Handler>,
    pending: HashMap<ClientTxId, oneshot::Sender<ClientOutcome>>,
    invites: HashMap<ClientTxId, BranchRoute>,
    /// The raw Request-URI of the request just handed to the layer: a new request's event comes out in
    /// the same turn, so one slot is enough.
    raw_uri: Option<String>,
}

impl Endpoint {
    pub(crate) fn channel() -> (EndpointHandle, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(16 * 1024);
        (EndpointHandle { tx }, rx)
    }

    pub(crate) fn new(config: TransactionConfig, out: Outbound, handler: Arc<Handler>) -> Self {
        Self {
            layer: TransactionLayer::new(config),
            out,
            handler,
            pending: HashMap::new(),
            invites: HashMap::new(),
            raw_uri: None,
        }
    }

    pub(crate) async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let live = metrics::gauge!("pbx_sip_transactions", "state" => "live");
        let finished = metrics::gauge!("pbx_sip_transactions", "state" => "finished");
        let forgotten = metrics::counter!("pbx_sip_finished_transactions_forgotten_total");
        let mut forgotten_seen = 0;
        loop {
            let wake = self
                .layer
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.handle_command(Instant::now(), cmd),
                    None => return,
                },
                msg = inbound.recv() => match msg {
                    Some(msg) => self.handle_inbound(Instant::now(), msg),
                    None => return,
                },
                () = sleep_until(wake) => self.layer.handle_timeout(Instant::now()),
            }
            self.drain();
            self.raw_uri = None;
            // Under load more is queued: take a batch before the next wake-up and gauge update.
            for _ in 0..BATCH {
                match inbound.try_recv() {
                    Ok(msg) => self.handle_inbound(Instant::now(), msg),
                    Err(_) => break,
                }
                self.drain();
                self.raw_uri = None;
            }
            live.set(self.layer.live() as f64);
            finished.set(self.layer.finished() as f64);
            let now_forgotten = self.layer.finished_forgotten_early();
            forgotten.increment(now_forgotten - forgotten_seen);
            forgotten_seen = now_forgotten;
        }
    }

    fn handle_inbound(&mut self, now: Instant, msg: Inbound) {
        match msg {
            Inbound::Message { msg, peer } => match msg.sip {
                rsip::SipMessage::Request(req) => {
                    self.raw_uri = msg.raw_uri;
                    self.layer.handle_request(now, req, peer);
                }
                rsip::SipMessage::Response(resp) => self.layer.handle_response(now, resp, peer),
            },
            Inbound::Closed(peer) => self.layer.handle_transport_error(now, peer),
        }
    }

    fn handle_command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Respond { tx, resp } => {
                if let Err(e) = self.layer.respond(now, tx, resp) {
                    // The transaction timed out or its transport failed while we were deciding.
                    tracing::debug!(error = %e, "response not sent");
                }
            }
            Command::Request { req, peer, done } => match self.layer.send_request(now, req, peer) {
                Ok(tx) => {
                    self.pending.insert(tx, done);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "request not sent");
                    let _ = done.send(ClientOutcome::Failed);
                }
            },
            Command::Invite {
                req,
                peer,
                branch,
                call,
                started,
            } => match self.layer.send_request(now, req, peer) {
                Ok(tx) => {
                    self.invites.insert(tx, BranchRoute { branch, call, peer });
                    let _ = started.send(Some(tx));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "INVITE not sent");
                    let _ = started.send(None);
                }
            },
            Command::Cancel { tx } => {
                if let Err(e) = self.layer.cancel(now, tx) {
                    tracing::debug!(error = %e, "CANCEL not sent");
                }
            }
            Command::Stateless { msg, peer } => self.layer.send_stateless(peer, msg),
        }
    }

    /// After every input: send everything, then hand every event to the PBX logic, until both are
    /// empty (answering an event makes more to send).
    fn drain(&mut self) {
        loop {
            while let Some(t) = self.layer.poll_transmit() {
                if let Err(e) = self.out.send(&t) {
                    tracing::debug!(peer = %t.peer.addr, error = %e, "send failed");
                    self.layer.handle_transport_error(Instant::now(), t.peer);
                }
            }
            let Some(ev) = self.layer.poll_event() else {
                return;
            };
            self.handle_event(ev);
        }
    }

    fn handle_event(&mut self, ev: TxEvent) {
        match ev {
            TxEvent::Request { tx, req, peer } => {
                let raw_uri = self.raw_uri.take().unwrap_or_else(|| req.uri.to_string());
                if let Some(resp) = self.handler.on_request(tx, req, raw_uri, peer)
                    && let Err(e) = self.layer.respond(Instant::now(), tx, resp)
                {
                    tracing::debug!(error = %e, "response not sent");
                }
            }
            TxEvent::Response { tx, resp } if self.invites.contains_key(&tx) => {
                let Some(route) = self.invites.get(&tx) else {
                    return;
                };
                let is_2xx = (200..300).contains(&resp.status_code.code());
                let event = CallInput::Branch {
                    index: route.branch,
                    event: LegEvent::Response(resp),
                };
                if let Err(mpsc::error::SendError(CallInput::Branch {
                    event: LegEvent::Response(resp),
                    ..
                })) = route.call.send(event)
                    && is_2xx
                {
                    // The call is over: nobody wants this answer.
                    self.handler.calls.refuse_late_answer(&resp, route.peer);
                }
            }
            TxEvent::Response { tx, resp } if resp.status_code.code() >= 200 => {
                if let Some(done) = self.pending.remove(&tx) {
                    let _ = done.send(ClientOutcome::Final(resp));
                } else if (200..300).contains(&resp.status_code.code()) {
                    // A 2xx retransmitted while a re-INVITE's transaction waits out Timer M: our ACK
                    // was lost, and the call must send it again.
                    self.handler.calls.route_stray(resp, None);
                }
            }
            TxEvent::Ack { req, .. } => self.handler.calls.route_ack(req),
            TxEvent::Cancelled { tx } => self.handler.calls.route_cancel(tx),
            TxEvent::StrayResponse { resp, peer } => {
                self.handler.calls.route_stray(resp, Some(peer))
            }
            TxEvent::Timeout {
                tx: TxId::Server(tx),
                timer,
            } => self.handler.calls.route_server_timeout(tx, timer),
            TxEvent::Timeout {
                tx: TxId::Client(tx),
                ..
            } if self.invites.contains_key(&tx) => self.branch_ended(tx, LegEvent::Timeout),
            TxEvent::TransportError {
                tx: TxId::Client(tx),
            } if self.invites.contains_key(&tx) => self.branch_ended(tx, LegEvent::Failed),
            TxEvent::Terminated {
                tx: TxId::Client(tx),
            } if self.invites.contains_key(&tx) => self.branch_ended(tx, LegEvent::Terminated),
            TxEvent::Timeout {
                tx: TxId::Client(tx),
                ..
            } => {
                if let Some(done) = self.pending.remove(&tx) {
                    let _ = done.send(ClientOutcome::Timeout);
                }
            }
            TxEvent::TransportError {
                tx: TxId::Client(tx),
            }
            | TxEvent::Terminated {
                tx: TxId::Client(tx),
            } => {
                if let Some(done) = self.pending.remove(&tx) {
                    let _ = done.send(ClientOutcome::Failed);
                }
            }
            _ => {}
        }
    }
}

impl Endpoint {
    fn branch_ended(&mut self, tx: ClientTxId, event: LegEvent) {
        if let Some(route) = self.invites.remove(&tx) {
            let _ = route.call.send(CallInput::Branch {
                index: route.branch,
                event,
            });
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]
    use super::*;
    use pbx_sip::transaction::Transport;

    fn options() -> (rsip::Request, Peer) {
        let raw = "OPTIONS sip:1001@198.18.0.21:5063 SIP/2.0\r\n\
                   Via: SIP/2.0/UDP 198.18.0.100:5060;branch=z9hG4bK-1\r\n\
                   From: <sip:pbx@198.18.0.100>;tag=1\r\nTo: <sip:1001@198.18.0.21>\r\n\
                   Call-ID: q-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let peer = Peer {
            transport: Transport::Udp,
            addr: "198.18.0.21:5063".parse().unwrap(),
        };
        (rsip::Request::try_from(raw).unwrap(), peer)
    }

    #[tokio::test]
    async fn a_request_outlived_by_its_endpoint_is_abandoned_not_failed() {
        // The endpoint took the request, then stopped (the VIP lease ended mid-transaction).
        let (tx, mut rx) = mpsc::channel(1);
        let handle = EndpointHandle { tx };
        let stopping = tokio::spawn(async move {
            let taken = rx.recv().await;
            drop(taken);
        });
        let (req, peer) = options();
        assert!(matches!(
            handle.request(req, peer).await,
            ClientOutcome::Abandoned
        ));
        stopping.await.unwrap();
        // Already stopped: nothing takes it.
        let (req, peer) = options();
        assert!(matches!(
            handle.request(req, peer).await,
            ClientOutcome::Abandoned
        ));
    }
}
