//! Client transactions (RFC 3261 §17.1, RFC 6026 §8.4): INVITE (Calling → Proceeding → Completed or
//! Accepted → Terminated) and non-INVITE (Trying → Proceeding → Completed → Terminated).

use std::time::{Duration, Instant};

use rsip::{Request, Response};

use super::key::{ClientKey, cseq, top_via};
use super::message::{build_ack, build_cancel, encode_request};
use super::timer::{Timer, TimerTable};
use super::{ClientTxId, Io, Peer, TimerConfig, TxError, TxEvent, TxId, after, double};

/// States of a client INVITE transaction.
#[derive(Debug)]
enum InviteState {
    Calling,
    Proceeding,
    /// A non-2xx final was received and ACKed; the ACK is re-sent for each retransmitted final.
    Completed {
        ack: Vec<u8>,
    },
    /// RFC 6026: a 2xx was received; further 2xx (retransmissions, forks) go to the TU.
    Accepted,
}

/// States of a client non-INVITE transaction.
#[derive(Debug, Clone, Copy)]
enum NonInviteState {
    Trying,
    Proceeding,
    Completed,
}

/// Where a CANCEL for this INVITE stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelState {
    None,
    /// Asked for in Calling: sent when the first provisional arrives (§9.1).
    Pending,
    Sent,
}

#[derive(Debug)]
enum Machine {
    Invite {
        state: InviteState,
        /// Kept to build the ACK and the CANCEL; dropped with the final response, after which
        /// neither can be needed (a Completed transaction keeps its encoded ACK).
        request: Option<Box<Request>>,
        top_via: String,
        seq: u32,
        cancel: CancelState,
    },
    NonInvite {
        state: NonInviteState,
    },
}

/// What the layer must do after a client transaction handled an input.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ClientStep {
    pub(crate) terminate: bool,
    /// Send the CANCEL for this INVITE now (see [`ClientTx::cancel_request`]).
    pub(crate) send_cancel: bool,
}

impl ClientStep {
    const TERMINATE: Self = Self {
        terminate: true,
        send_cancel: false,
    };
}

#[derive(Debug)]
pub(crate) struct ClientTx {
    pub(crate) id: ClientTxId,
    pub(crate) key: ClientKey,
    pub(crate) peer: Peer,
    /// Transactions the layer started for itself (CANCEL) report nothing to the TU.
    pub(crate) silent: bool,
    machine: Machine,
    /// The serialised request, kept for retransmission over unreliable transports until a final
    /// response stops the retransmissions (then emptied: an INVITE's Accepted lasts 32 s).
    bytes: Vec<u8>,
    interval: Duration,
    timers: TimerTable,
}

impl ClientTx {
    /// Creates the transaction and sends the request (§17.1.1.2, §17.1.2.2). The caller has checked
    /// the top Via and CSeq.
    pub(crate) fn start(
        now: Instant,
        id: ClientTxId,
        key: ClientKey,
        request: Request,
        peer: Peer,
        config: &TimerConfig,
        io: &mut Io,
    ) -> Self {
        let top_via = top_via(&request.headers)
            .map(|via| via.raw)
            .unwrap_or_default();
        let seq = cseq(&request.headers).map_or(0, |(seq, _)| seq);
        let bytes = encode_request(&request);
        io.transmit(peer, bytes.clone());
        let reliable = peer.transport.is_reliable();
        let machine = if request.method == rsip::Method::Invite {
            Machine::Invite {
                state: InviteState::Calling,
                request: Some(Box::new(request)),
                top_via,
                seq,
                cancel: CancelState::None,
            }
        } else {
            Machine::NonInvite {
                state: NonInviteState::Trying,
            }
        };
        let mut tx = Self {
            id,
            key,
            peer,
            silent: false,
            machine,
            bytes: if reliable { Vec::new() } else { bytes },
            interval: config.t1,
            timers: TimerTable::new(TxId::Client(id)),
        };
        let (retransmit, timeout) = match tx.machine {
            Machine::Invite { .. } => (Timer::A, Timer::B),
            Machine::NonInvite { .. } => (Timer::E, Timer::F),
        };
        if !reliable {
            arm(&mut tx.timers, io, retransmit, now, config.t1);
        }
        arm(&mut tx.timers, io, timeout, now, config.t64());
        tx
    }

    /// Bytes of messages this transaction keeps: the request (encoded, and parsed for an INVITE's
    /// ACK and CANCEL) and a Completed INVITE's ACK.
    pub(crate) fn held_bytes(&self) -> usize {
        let kept = match &self.machine {
            Machine::Invite { request, state, .. } => {
                let ack = match state {
                    InviteState::Completed { ack } => ack.len(),
                    _ => 0,
                };
                ack + request.as_ref().map_or(0, |r| r.to_string().len())
            }
            Machine::NonInvite { .. } => 0,
        };
        kept + self.bytes.len()
    }

    /// Stops every timer; the layer is removing the transaction.
    pub(crate) fn clear_timers(&mut self, io: &mut Io) {
        self.timers.clear(&mut io.timers);
    }

    /// A response matched this transaction.
    pub(crate) fn on_response(
        &mut self,
        now: Instant,
        resp: Response,
        config: &TimerConfig,
        io: &mut Io,
    ) -> ClientStep {
        let code = resp.status_code.code();
        let reliable = self.peer.transport.is_reliable();
        let Self {
            id,
            peer,
            silent,
            machine,
            bytes,
            timers,
            ..
        } = self;
        let (id, peer, silent) = (*id, *peer, *silent);
        if code >= 200 {
            // No retransmission of the request after a final response.
            *bytes = Vec::new();
        }
        let mut step = ClientStep::default();
        match machine {
            Machine::Invite {
                state,
                request,
                top_via,
                seq,
                cancel,
            } => match state {
                InviteState::Calling | InviteState::Proceeding => match code {
                    100..=199 => {
                        *state = InviteState::Proceeding;
                        stop(timers, io, &[Timer::A]);
                        match *cancel {
                            CancelState::Pending => {
                                *cancel = CancelState::Sent;
                                arm(timers, io, Timer::B, now, config.t64());
                                step.send_cancel = true;
                            }
                            CancelState::None => {
                                // §17.1.1.2: Timer B only guards Calling; Timer C guards
                                // Proceeding and restarts with every provisional (§16.6).
                                stop(timers, io, &[Timer::B]);
                                arm(timers, io, Timer::C, now, config.timer_c);
                            }
                            CancelState::Sent => {}
                        }
                        emit(silent, io, TxEvent::Response { tx: id, resp });
                    }
                    200..=299 => {
                        *state = InviteState::Accepted;
                        *request = None;
                        stop(timers, io, &[Timer::A, Timer::B, Timer::C]);
                        arm(timers, io, Timer::M, now, config.t64());
                        emit(silent, io, TxEvent::Response { tx: id, resp });
                    }
                    _ => {
                        // `request` is there until a final response, and this is the first.
                        let ack = request
                            .take()
                            .map(|request| {
                                encode_request(&build_ack(&request, top_via, *seq, &resp))
                            })
                            .unwrap_or_default();
                        if !ack.is_empty() {
                            io.transmit(peer, ack.clone());
                        }
                        *state = InviteState::Completed { ack };
                        stop(timers, io, &[Timer::A, Timer::B, Timer::C]);
                        emit(silent, io, TxEvent::Response { tx: id, resp });
                        if reliable {
                            return ClientStep::TERMINATE;
                        }
                        arm(timers, io, Timer::D, now, config.timer_d);
                    }
                },
                InviteState::Completed { ack } => {
                    if code >= 300 && !ack.is_empty() {
                        // A retransmitted final: our ACK was lost (§17.1.1.2).
                        io.transmit(peer, ack.clone());
                    }
                }
                InviteState::Accepted => {
                    if (200..300).contains(&code) {
                        emit(silent, io, TxEvent::Response { tx: id, resp });
                    }
                }
            },
            Machine::NonInvite { state } => match (*state, code) {
                (NonInviteState::Trying | NonInviteState::Proceeding, 100..=199) => {
                    *state = NonInviteState::Proceeding;
                    emit(silent, io, TxEvent::Response { tx: id, resp });
                }
                (NonInviteState::Trying | NonInviteState::Proceeding, _) => {
                    *state = NonInviteState::Completed;
                    stop(timers, io, &[Timer::E, Timer::F]);
                    emit(silent, io, TxEvent::Response { tx: id, resp });
                    if reliable {
                        return ClientStep::TERMINATE;
                    }
                    arm(timers, io, Timer::K, now, config.t4);
                }
                (NonInviteState::Completed, _) => {}
            },
        }
        step
    }

    /// A timer of this transaction fired.
    pub(crate) fn on_timer(
        &mut self,
        now: Instant,
        timer: Timer,
        config: &TimerConfig,
        io: &mut Io,
    ) -> ClientStep {
        let Self {
            id,
            peer,
            silent,
            machine,
            bytes,
            interval,
            timers,
            ..
        } = self;
        if !timers.fired(timer) {
            return ClientStep::default();
        }
        let timeout = TxEvent::Timeout {
            tx: TxId::Client(*id),
            timer,
        };
        match machine {
            Machine::Invite { state, cancel, .. } => match (state, timer) {
                (InviteState::Calling, Timer::A) => {
                    // INVITE retransmissions double without the T2 cap (§17.1.1.2).
                    io.transmit(*peer, bytes.clone());
                    *interval = double(*interval);
                    arm(timers, io, Timer::A, now, *interval);
                }
                (InviteState::Calling | InviteState::Proceeding, Timer::B) => {
                    emit(*silent, io, timeout);
                    return ClientStep::TERMINATE;
                }
                (InviteState::Proceeding, Timer::C) if *cancel == CancelState::None => {
                    *cancel = CancelState::Sent;
                    arm(timers, io, Timer::B, now, config.t64());
                    return ClientStep {
                        terminate: false,
                        send_cancel: true,
                    };
                }
                (InviteState::Completed { .. }, Timer::D) | (InviteState::Accepted, Timer::M) => {
                    return ClientStep::TERMINATE;
                }
                _ => {}
            },
            Machine::NonInvite { state } => match (*state, timer) {
                (NonInviteState::Trying | NonInviteState::Proceeding, Timer::E) => {
                    let next = if matches!(state, NonInviteState::Trying) {
                        double(*interval).min(config.t2)
                    } else {
                        config.t2
                    };
                    io.transmit(*peer, bytes.clone());
                    *interval = next;
                    arm(timers, io, Timer::E, now, next);
                }
                (NonInviteState::Trying | NonInviteState::Proceeding, Timer::F) => {
                    emit(*silent, io, timeout);
                    return ClientStep::TERMINATE;
                }
                (NonInviteState::Completed, Timer::K) => return ClientStep::TERMINATE,
                _ => {}
            },
        }
        ClientStep::default()
    }

    /// The TU asked to cancel this INVITE. `Ok(true)`: send the CANCEL now.
    pub(crate) fn request_cancel(
        &mut self,
        now: Instant,
        config: &TimerConfig,
        io: &mut Io,
    ) -> Result<bool, TxError> {
        let Machine::Invite { state, cancel, .. } = &mut self.machine else {
            return Err(TxError::NotInvite);
        };
        match (state, *cancel) {
            (InviteState::Completed { .. } | InviteState::Accepted, _) => {
                Err(TxError::InvalidState {
                    action: "cancel",
                    state: "final response received",
                })
            }
            (_, CancelState::Pending | CancelState::Sent) => Ok(false),
            (InviteState::Calling, CancelState::None) => {
                *cancel = CancelState::Pending;
                Ok(false)
            }
            (InviteState::Proceeding, CancelState::None) => {
                *cancel = CancelState::Sent;
                stop(&mut self.timers, io, &[Timer::C]);
                // §9.1: without a final response 64·T1 after the CANCEL, give the INVITE up.
                arm(&mut self.timers, io, Timer::B, now, config.t64());
                Ok(true)
            }
        }
    }

    /// The CANCEL for this INVITE, with the branch it shares with the INVITE.
    pub(crate) fn cancel_request(&self) -> Option<Request> {
        match &self.machine {
            Machine::Invite {
                request,
                top_via,
                seq,
                ..
            } => request
                .as_deref()
                .map(|request| build_cancel(request, top_via, *seq)),
            Machine::NonInvite { .. } => None,
        }
    }
}

fn arm(timers: &mut TimerTable, io: &mut Io, timer: Timer, now: Instant, delay: Duration) {
    match after(now, delay) {
        Some(at) => timers.set(&mut io.timers, timer, at),
        None => timers.stop(&mut io.timers, timer),
    }
}

fn stop(timers: &mut TimerTable, io: &mut Io, which: &[Timer]) {
    for &timer in which {
        timers.stop(&mut io.timers, timer);
    }
}

fn emit(silent: bool, io: &mut Io, event: TxEvent) {
    if !silent {
        io.events.push_back(event);
    }
}
