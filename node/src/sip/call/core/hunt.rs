//! An outbound call's INVITE through trunks: one server at a time, the next one when a server is
//! silent, times out or answers `503`/`500`/`408` (RFC 3263 §4.3, and the route's trunk sequence), and
//! a provider's digest challenge answered once with the trunk's credentials. Every INVITE of the call
//! shares one Call-ID and From tag, so whichever server answers, the call is one dialog.

use pbx_sip::digest::{self, Credentials, DigestChallenge};
use storage::model::{Disposition, HangupSide};

use super::super::dialog;
use super::super::record::Outcome;
use super::ringing::trunk_branch;
use super::{Action, Branch, CallCore, Now};

/// Most challenge values of one answer looked at.
const MAX_CHALLENGES: usize = 8;

impl CallCore {
    /// Trunk server `index` failed with `code`: answer its challenge, or go on to the next server.
    pub(super) fn after_trunk_failure(
        &mut self,
        now: Now,
        index: usize,
        code: u16,
        resp: Option<&rsip::Response>,
    ) {
        match (code, resp) {
            (401 | 407, Some(resp)) if self.answer_challenge(now, index, code, resp) => {}
            (408 | 500 | 503, _) => self.next_server(now),
            // The provider's answer about the call itself (busy, not found, refused credentials):
            // another server of it would say the same.
            _ => self.hunt.clear(),
        }
    }

    /// The same INVITE again with credentials, once per branch; `false` when it cannot be answered
    /// (no credentials, no digest challenge for their realm, or already answered once).
    fn answer_challenge(
        &mut self,
        now: Now,
        index: usize,
        code: u16,
        resp: &rsip::Response,
    ) -> bool {
        let Some(b) = self.branches.get(index) else {
            return false;
        };
        let Some(creds) = b.credentials.clone().filter(|_| !b.auth_tried) else {
            return false;
        };
        let (ask, answer_header) = if code == 407 {
            ("Proxy-Authenticate", "Proxy-Authorization")
        } else {
            ("WWW-Authenticate", "Authorization")
        };
        let challenge = pbx_sip::codec::header_values(&resp.headers, ask)
            .take(MAX_CHALLENGES)
            .filter_map(|v| DigestChallenge::parse(v).ok())
            .find(|c| creds.realm.is_empty() || c.realm == creds.realm);
        let Some(challenge) = challenge else {
            tracing::warn!(call = %self.id, code, "trunk challenge not answerable with its credentials");
            return false;
        };
        let ha1 = digest::ha1(
            challenge.algorithm,
            &creds.username,
            &challenge.realm,
            &creds.password,
        );
        let cnonce = &dialog::token()[..16];
        let uri = b.leg.remote_target.clone();
        let answer =
            Credentials::answer(&challenge, &creds.username, &ha1, "INVITE", &uri, cnonce, 1);
        let mut leg = b.leg.clone();
        leg.local_cseq = self.last_cseq() + 1;
        leg.remote_tag.clear();
        let mut next = Branch::new(leg, b.peer);
        next.headers = b.headers.clone();
        next.headers
            .push((answer_header.to_owned(), answer.to_header_value()));
        next.credentials = Some(creds);
        next.auth_tried = true;
        self.branches.push(next);
        self.send_invite(now, self.branches.len() - 1);
        true
    }

    /// The next server of the call's trunks, if any is left.
    fn next_server(&mut self, now: Now) {
        while let Some(target) = self.hunt.pop_front() {
            let Some(mut b) = trunk_branch(&self.env, &self.callee, &target) else {
                continue;
            };
            if let Some(first) = self.branches.first() {
                b.leg.call_id = first.leg.call_id.clone();
                b.leg.local_tag = first.leg.local_tag.clone();
            }
            b.leg.local_cseq = self.last_cseq() + 1;
            tracing::info!(call = %self.id, trunk = %target.trunk, server = %target.peer.addr, "trying the next trunk server");
            self.branches.push(b);
            self.send_invite(now, self.branches.len() - 1);
            return;
        }
    }

    fn last_cseq(&self) -> u32 {
        self.branches
            .iter()
            .map(|b| b.leg.local_cseq)
            .max()
            .unwrap_or(0)
    }

    /// Servers that have not answered anything in time are given up on (a `408` of our own).
    pub(super) fn silent_servers(&mut self, now: Now) {
        for index in 0..self.branches.len() {
            let b = &mut self.branches[index];
            if b.final_code.is_none() && b.silent_until.is_some_and(|d| now.at >= d) {
                b.silent_until = None;
                tracing::info!(call = %self.id, server = %b.peer.addr, "trunk server silent; giving up on it");
                self.push(Action::CancelBranch { branch: index });
                self.branch_failed(now, index, 408, None);
            }
        }
        if self.winner.is_none() && self.all_failed() {
            self.stage_over(now);
        }
    }

    /// No server took the call: the caller hears the provider's answer (busy, not found, …), or
    /// `503` when no server answered or the trunk's credentials were refused.
    pub(super) fn fail_outbound(&mut self, now: Now) {
        let stage = &self.branches[self.stage_start.min(self.branches.len())..];
        let last = stage.iter().rev().find_map(|b| b.final_code);
        let (code, reason) = match last {
            None | Some(401 | 407 | 408 | 500 | 503) => (503, Some("No Trunk Answered")),
            Some(code) => (code, None),
        };
        let disposition = match code {
            486 | 600 | 603 => Disposition::Busy,
            404 | 484 | 604 => Disposition::NotFound,
            480 => Disposition::Unavailable,
            _ => Disposition::Failed,
        };
        let cause = last.map_or_else(|| "no-server".to_owned(), |c| format!("trunk-{c}"));
        let resp = self.caller_response(code, reason, &[], None);
        self.respond_invite(resp);
        let outcome = Outcome::new(disposition, HangupSide::Callee, cause, code);
        self.finish(now, outcome);
    }
}
