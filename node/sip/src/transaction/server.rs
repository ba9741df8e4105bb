//! Server transactions (RFC 3261 §17.2, RFC 6026 §8.5–8.7): INVITE (Proceeding → Completed →
//! Confirmed → Terminated, or Proceeding → Accepted → Terminated for a 2xx) and non-INVITE (Trying →
//! Proceeding → Completed → Terminated).

use std::time::{Duration, Instant};

use rsip::{Header, Request, Response};

use super::key::{AckKey, ServerKey, tag_param, to_value};
use super::message::{TagGen, build_response, encode_response, reason, response_skeleton};
use super::timer::{Timer, TimerTable};
use super::{Io, Peer, ServerTxId, TransactionConfig, TxError, TxEvent, TxId, after, double};

/// States of a server INVITE transaction.
#[derive(Debug, Clone, Copy)]
enum InviteState {
    Proceeding,
    /// A non-2xx final was sent; waiting for its ACK.
    Completed,
    /// The ACK arrived; absorbing ACK retransmissions.
    Confirmed,
    /// RFC 6026: a 2xx was sent; INVITE retransmissions are absorbed, ACKs go to the TU.
    Accepted {
        acked: bool,
    },
}

/// States of a server non-INVITE transaction.
#[derive(Debug, Clone, Copy)]
enum NonInviteState {
    Trying,
    Proceeding,
    Completed,
}

#[derive(Debug, Clone, Copy)]
enum Machine {
    Invite(InviteState),
    NonInvite(NonInviteState),
}

/// What a response left of a server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Open,
    /// Over at once (a final on a reliable transport).
    Over,
    /// A non-INVITE's final (not a challenge) over UDP: only retransmissions are left to answer
    /// (Timer J).
    Finished,
}

#[derive(Debug)]
pub(crate) struct ServerTx {
    pub(crate) id: ServerTxId,
    /// `None` for a request without an RFC 3261 branch: it cannot be matched again.
    pub(crate) key: Option<ServerKey>,
    pub(crate) peer: Peer,
    /// Set once a 2xx was sent, so the ACK for it (its own branch) finds this transaction.
    pub(crate) ack_key: Option<AckKey>,
    machine: Machine,
    /// Request headers for the responses the layer builds itself (INVITE only: 100 and 408, both
    /// before the final response; emptied with it).
    skeleton: Vec<Header>,
    /// The last response sent, serialised, for retransmission; dropped once nothing can ask for it
    /// again (an INVITE's final was ACKed), since an INVITE transaction lives on 32 s after its 2xx.
    last_response: Option<Vec<u8>>,
    /// The To tag of the first tagged response the TU sent (or the layer's own 408).
    to_tag: Option<String>,
    /// The tag the layer gave its `200` to a CANCEL before the TU sent a tagged response.
    cancel_tag: Option<String>,
    /// A CANCEL was reported to the TU already.
    cancelled: bool,
    interval: Duration,
    timers: TimerTable,
}

impl ServerTx {
    pub(crate) fn start(
        now: Instant,
        id: ServerTxId,
        key: Option<ServerKey>,
        request: &Request,
        peer: Peer,
        config: &TransactionConfig,
        io: &mut Io,
    ) -> Self {
        let invite = request.method == rsip::Method::Invite;
        let mut tx = Self {
            id,
            key,
            peer,
            ack_key: None,
            machine: if invite {
                Machine::Invite(InviteState::Proceeding)
            } else {
                Machine::NonInvite(NonInviteState::Trying)
            },
            skeleton: if invite {
                response_skeleton(&request.headers)
            } else {
                Vec::new()
            },
            last_response: None,
            to_tag: None,
            cancel_tag: None,
            cancelled: false,
            interval: config.timers.t1,
            timers: TimerTable::new(TxId::Server(id)),
        };
        if invite {
            tx.arm(io, Timer::C, now, config.timers.timer_c);
            match config.timers.trying_delay {
                Some(delay) if delay.is_zero() => tx.send_trying(io),
                Some(delay) => tx.arm(io, Timer::Trying, now, delay),
                None => {}
            }
        } else {
            // Not an RFC timer: a TU that never answers must not keep the transaction forever.
            tx.arm(io, Timer::F, now, config.timers.t64());
        }
        tx
    }

    /// Bytes of messages this transaction keeps: its final response and the request headers it
    /// builds responses from.
    pub(crate) fn held_bytes(&self) -> usize {
        let skeleton: usize = self.skeleton.iter().map(|h| h.to_string().len() + 2).sum();
        skeleton + self.last_response.as_ref().map_or(0, Vec::len)
    }

    pub(crate) fn is_invite(&self) -> bool {
        matches!(self.machine, Machine::Invite(_))
    }

    /// A CANCEL matched this INVITE: true the first time while it still awaits its final response
    /// (the TU must be told), false for a retransmitted CANCEL or a CANCEL after the final.
    pub(crate) fn on_cancel(&mut self) -> bool {
        let first =
            matches!(self.machine, Machine::Invite(InviteState::Proceeding)) && !self.cancelled;
        self.cancelled |= first;
        first
    }

    /// The To tag for the `200` to a CANCEL: the one of the INVITE's responses if any (§9.2), else one
    /// of the layer's own, the same for every retransmitted CANCEL.
    pub(crate) fn cancel_tag(&mut self, tags: &mut TagGen) -> String {
        if let Some(tag) = &self.to_tag {
            return tag.clone();
        }
        self.cancel_tag.get_or_insert_with(|| tags.next()).clone()
    }

    fn arm(&mut self, io: &mut Io, timer: Timer, now: Instant, delay: Duration) {
        match after(now, delay) {
            Some(at) => self.timers.set(&mut io.timers, timer, at),
            None => self.timers.stop(&mut io.timers, timer),
        }
    }

    fn stop(&mut self, io: &mut Io, which: &[Timer]) {
        for &timer in which {
            self.timers.stop(&mut io.timers, timer);
        }
    }

    fn emit(&self, io: &mut Io, event: TxEvent) {
        io.events.push_back(event);
    }

    fn send(&mut self, io: &mut Io, bytes: Vec<u8>) {
        io.transmit(self.peer, bytes.clone());
        self.last_response = Some(bytes);
    }

    fn send_trying(&mut self, io: &mut Io) {
        let trying = build_response(&self.skeleton, 100, reason(100), None);
        self.send(io, encode_response(&trying));
    }

    fn resend_last(&self, io: &mut Io) {
        if let Some(bytes) = &self.last_response {
            io.transmit(self.peer, bytes.clone());
        }
    }

    /// Stops every timer; the layer is removing the transaction.
    pub(crate) fn clear_timers(&mut self, io: &mut Io) {
        self.timers.clear(&mut io.timers);
    }

    /// A retransmission of the request that created the transaction.
    pub(crate) fn on_retransmission(&mut self, io: &mut Io) {
        match self.machine {
            Machine::Invite(InviteState::Proceeding) if self.last_response.is_none() => {
                // The UAC is retransmitting and the TU has said nothing yet: stop it now.
                self.timers.stop(&mut io.timers, Timer::Trying);
                self.send_trying(io);
            }
            Machine::Invite(InviteState::Proceeding | InviteState::Completed)
            | Machine::NonInvite(NonInviteState::Proceeding | NonInviteState::Completed) => {
                self.resend_last(io);
            }
            // Accepted: RFC 6026 §8.7, absorbed (2xx retransmission is the TU's or Timer G's job).
            Machine::Invite(InviteState::Confirmed | InviteState::Accepted { .. })
            | Machine::NonInvite(NonInviteState::Trying) => {}
        }
    }

    /// An ACK matched this INVITE transaction (by its key, or by the dialog of the 2xx we sent).
    /// Returns true when the transaction is over.
    pub(crate) fn on_ack(
        &mut self,
        now: Instant,
        ack: Request,
        from: Peer,
        config: &TransactionConfig,
        io: &mut Io,
    ) -> bool {
        match self.machine {
            Machine::Invite(InviteState::Completed) => {
                self.machine = Machine::Invite(InviteState::Confirmed);
                self.last_response = None;
                self.stop(io, &[Timer::G, Timer::H]);
                if self.peer.transport.is_reliable() {
                    return true;
                }
                self.arm(io, Timer::I, now, config.timers.t4);
            }
            Machine::Invite(InviteState::Accepted { .. }) => {
                self.machine = Machine::Invite(InviteState::Accepted { acked: true });
                self.last_response = None;
                self.stop(io, &[Timer::G]);
                self.emit(
                    io,
                    TxEvent::Ack {
                        tx: Some(self.id),
                        req: ack,
                        peer: from,
                    },
                );
            }
            // Confirmed: a retransmitted ACK, absorbed. Proceeding: an ACK before any final, dropped.
            _ => {}
        }
        false
    }

    /// The TU's response, and what becomes of the transaction.
    pub(crate) fn respond(
        &mut self,
        now: Instant,
        resp: &Response,
        config: &TransactionConfig,
        io: &mut Io,
    ) -> Result<Step, TxError> {
        let code = resp.status_code.code();
        if !(100..=699).contains(&code) {
            return Err(TxError::InvalidStatus(code));
        }
        let state_error = |state: &'static str| TxError::InvalidState {
            action: "respond",
            state,
        };
        match self.machine {
            Machine::Invite(InviteState::Completed) => return Err(state_error("Completed")),
            Machine::Invite(InviteState::Confirmed) => return Err(state_error("Confirmed")),
            Machine::Invite(InviteState::Accepted { .. }) if !(200..300).contains(&code) => {
                return Err(state_error("Accepted"));
            }
            Machine::NonInvite(NonInviteState::Completed) => return Err(state_error("Completed")),
            _ => {}
        }
        if self.to_tag.is_none() && code > 100 {
            self.to_tag = to_value(&resp.headers)
                .and_then(tag_param)
                .map(str::to_owned);
        }
        self.stop(io, &[Timer::Trying]);
        let bytes = encode_response(resp);
        let reliable = self.peer.transport.is_reliable();
        let timers = &config.timers;
        match (self.machine, code) {
            (Machine::Invite(InviteState::Proceeding), 100..=199)
            | (Machine::Invite(InviteState::Accepted { acked: false }), _) => self.send(io, bytes),
            // The TU re-sends its 2xx after the ACK: sent, not kept (Timer G is over).
            (Machine::Invite(InviteState::Accepted { acked: true }), _) => {
                io.transmit(self.peer, bytes);
            }
            (Machine::Invite(_), 200..=299) => {
                self.send(io, bytes);
                self.skeleton = Vec::new();
                self.machine = Machine::Invite(InviteState::Accepted { acked: false });
                self.stop(io, &[Timer::C]);
                self.arm(io, Timer::L, now, timers.t64());
                if config.retransmit_2xx && !reliable {
                    // §13.3.1.4: the UAS core's 2xx retransmission, T1 doubling to T2, until the ACK.
                    self.interval = timers.t1;
                    self.arm(io, Timer::G, now, timers.t1);
                }
            }
            (Machine::Invite(_), _) => {
                self.complete_invite(now, bytes, config, io);
            }
            (Machine::NonInvite(_), 100..=199) => {
                self.machine = Machine::NonInvite(NonInviteState::Proceeding);
                self.send(io, bytes);
            }
            (Machine::NonInvite(_), _) => {
                self.machine = Machine::NonInvite(NonInviteState::Completed);
                self.send(io, bytes);
                self.stop(io, &[Timer::F]);
                // Timer J (64·T1 on UDP, zero on reliable transports) is the finished table's. A
                // challenge is not kept at all: it is the bulk of a registration storm's
                // transactions, and a retransmitted request is simply challenged again (with a
                // fresh nonce), as a stateless registrar does.
                let stateless = reliable || matches!(code, 401 | 407);
                return Ok(if stateless {
                    Step::Over
                } else {
                    Step::Finished
                });
            }
        }
        Ok(Step::Open)
    }

    /// What a finished non-INVITE leaves for the finished table: its key and its final response.
    pub(crate) fn into_finished(self) -> (Option<ServerKey>, Option<Vec<u8>>) {
        (self.key, self.last_response)
    }

    /// Sends a non-2xx final on an INVITE and enters Completed (§17.2.1).
    fn complete_invite(
        &mut self,
        now: Instant,
        bytes: Vec<u8>,
        config: &TransactionConfig,
        io: &mut Io,
    ) {
        self.send(io, bytes);
        self.skeleton = Vec::new();
        self.machine = Machine::Invite(InviteState::Completed);
        self.stop(io, &[Timer::C]);
        if !self.peer.transport.is_reliable() {
            self.interval = config.timers.t1;
            self.arm(io, Timer::G, now, config.timers.t1);
        }
        self.arm(io, Timer::H, now, config.timers.t64());
    }

    /// A timer fired. Returns true when the transaction is over.
    pub(crate) fn on_timer(
        &mut self,
        now: Instant,
        timer: Timer,
        config: &TransactionConfig,
        io: &mut Io,
    ) -> bool {
        if !self.timers.fired(timer) {
            return false;
        }
        let timeout = TxEvent::Timeout {
            tx: TxId::Server(self.id),
            timer,
        };
        match (self.machine, timer) {
            (Machine::Invite(InviteState::Proceeding), Timer::Trying)
                if self.last_response.is_none() =>
            {
                self.send_trying(io);
            }
            (Machine::Invite(InviteState::Proceeding), Timer::C) => {
                // The TU never answered: answer 408 for it (like a proxy's Timer C) and tell it.
                self.emit(io, timeout);
                let tag = match &self.to_tag {
                    Some(tag) => tag.clone(),
                    None => io.tags.next(),
                };
                let resp = build_response(&self.skeleton, 408, reason(408), Some(&tag));
                self.to_tag = Some(tag);
                self.complete_invite(now, encode_response(&resp), config, io);
            }
            (
                Machine::Invite(InviteState::Completed | InviteState::Accepted { acked: false }),
                Timer::G,
            ) => {
                self.resend_last(io);
                self.interval = double(self.interval).min(config.timers.t2);
                self.arm(io, Timer::G, now, self.interval);
            }
            (Machine::Invite(InviteState::Completed), Timer::H) => {
                self.emit(io, timeout);
                return true;
            }
            (Machine::Invite(InviteState::Accepted { acked }), Timer::L) => {
                if !acked {
                    // §13.3.1.4: no ACK for the 2xx; the TU should end the dialog (BYE).
                    self.emit(io, timeout);
                }
                return true;
            }
            (Machine::Invite(InviteState::Confirmed), Timer::I) => return true,
            (Machine::NonInvite(NonInviteState::Trying | NonInviteState::Proceeding), Timer::F) => {
                self.emit(io, timeout);
                return true;
            }
            _ => {}
        }
        false
    }
}
