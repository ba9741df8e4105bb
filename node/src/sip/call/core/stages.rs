//! Stages of a call that nobody answered yet: when the phones rung now time out, are all busy or
//! all fail, the next stage of the plan that follows such an ending rings instead (a forward on no
//! answer or on busy, a ring group's next member, its fallback). Each stage is resolved by the
//! driver when reached ([`Action::Resolve`]), with the caller still hearing it ring.

use std::time::Duration;

use super::super::admission::{OutboundTrunk, Refusal};
use super::super::plan::{Ended, MAX_STAGES};
use super::ringing::{device_branches, trunk_branch};
use super::{Action, CallCore, Now, Reached};

impl CallCore {
    /// Every branch of the stage ringing now failed: the next stage, or the caller's answer.
    pub(super) fn stage_over(&mut self, now: Now) {
        if !self.next_stage(self.how_it_ended()) {
            self.fail_unanswered(now);
        }
    }

    /// Busy when any phone of the stage said so (or declined), else unavailable.
    fn how_it_ended(&self) -> Ended {
        let busy = self.branches[self.stage_start.min(self.branches.len())..]
            .iter()
            .any(|b| matches!(b.final_code, Some(486 | 600 | 603)));
        if busy {
            Ended::Busy
        } else {
            Ended::Unavailable
        }
    }

    /// Asks for the first later stage that follows `ended`; `false` when there is none (or the call
    /// went through as many stages as it may).
    pub(super) fn next_stage(&mut self, ended: Ended) -> bool {
        if self.silence.is_some() {
            // An outside number's servers are a stage of their own, the last.
            return false;
        }
        while let Some(stage) = self.plan.pop_front() {
            if !stage.after.follows(ended) {
                continue;
            }
            if self.stages >= MAX_STAGES {
                tracing::warn!(call = %self.id, "too many stages; giving up");
                self.plan.clear();
                return false;
            }
            self.stages += 1;
            self.cancel_branches(None);
            self.resolving = true;
            self.ring_deadline = None;
            tracing::info!(call = %self.id, ?ended, next = ?stage.next, "ringing the next stage");
            let started_at = self.started_at;
            let srtp = super::super::session::carries_keys(&self.sdp[super::CALLER]);
            self.push(Action::Resolve {
                stage,
                srtp,
                anonymous: self.anonymous,
                started_at,
                transfer: false,
            });
            return true;
        }
        false
    }

    /// The stage asked for rings this, or cannot ring.
    pub(super) fn reached(&mut self, now: Now, reached: Result<Reached, Refusal>) {
        if !self.resolving || self.winner.is_some() {
            return;
        }
        self.resolving = false;
        self.stage_start = self.branches.len();
        match reached {
            Ok(Reached::Devices {
                devices,
                ring_for,
                then,
            }) => {
                for stage in then.into_iter().rev() {
                    self.plan.push_front(stage);
                }
                let new = device_branches(
                    &self.env,
                    &self.caller,
                    &self.caller_name,
                    self.anonymous,
                    &devices,
                );
                self.ring(now, new, ring_for);
            }
            Ok(Reached::Trunk(trunk)) => self.ring_outside(now, trunk),
            Err(refusal) => {
                let ended = if refusal.code == 486 {
                    Ended::Busy
                } else {
                    Ended::Unavailable
                };
                tracing::info!(call = %self.id, code = refusal.code, "the next stage cannot ring");
                self.stage_refusal = Some(refusal);
                if !self.next_stage(ended) {
                    self.fail_unanswered(now);
                }
            }
        }
    }

    fn ring(&mut self, now: Now, new: Vec<super::Branch>, ring_for: Option<Duration>) {
        let first = self.branches.len();
        self.branches.extend(new);
        self.ring_deadline = Some(now.at + ring_for.unwrap_or(self.env.config.ring_timeout));
        self.trust_ringing_devices(self.sdp[super::CALLER].media().len());
        for index in first..self.branches.len() {
            self.send_invite(now, index);
        }
        tracing::info!(call = %self.id, branches = self.branches.len() - first, "stage ringing");
        if self.all_failed() {
            self.stage_over(now);
        }
    }

    /// An outside forward: its trunk's servers one after the other, as an outbound call.
    fn ring_outside(&mut self, now: Now, trunk: OutboundTrunk) {
        self.plan.clear();
        self.silence = Some(trunk.silence);
        self.hunt = trunk.targets.into_iter().collect();
        let first = self
            .hunt
            .pop_front()
            .and_then(|t| trunk_branch(&self.env, &self.callee, &t));
        self.ring(now, first.into_iter().collect(), None);
    }
}
