//! Security by default: the gate in front of every service (firewall rules, bans, default policy) and
//! the automatic defence that bans sources crossing a rate or authentication-failure threshold. Rules
//! and bans are replicated through Raft, so what one node decides every node enforces.

mod detector;
mod gate;
pub mod net;
mod rotation;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use cluster::Cluster;
use storage::Command;
use storage::model::{Ban, Service, Severity, Transport, UnixMillis};

use crate::events::Events;

use crate::config::SecuritySection;
use crate::time::now_millis;
pub(crate) use detector::Kind;
use detector::{Detector, Threshold};
pub(crate) use gate::{DEFAULT_POLICY_KEY, Gate};

/// A ban record is kept this long after its ban ends, so that a repeat offence is punished harder.
const BAN_MEMORY: Duration = Duration::from_secs(24 * 3600);
/// Offences waiting to become bans; beyond it they are dropped (the source is already banned here).
const BAN_QUEUE: usize = 1024;

struct Offence {
    ip: IpAddr,
    reason: &'static str,
}

/// The node's gate and detector. Cheap to share.
pub struct Security {
    /// This node's `[security]` settings, as started with (shown to admins).
    settings: SecuritySection,
    gate: Arc<Gate>,
    detector: Detector,
    offences: mpsc::Sender<Offence>,
    events: Arc<Events>,
}

impl Security {
    /// Starts the gate's refresh, the ban proposer and the leader's clean-up (for the process's life).
    pub fn start(cfg: &SecuritySection, cluster: Cluster, events: Arc<Events>) -> Arc<Self> {
        let trusted = cfg
            .trusted_networks
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        let gate = Arc::new(Gate::new(trusted));
        let t = |limit, secs| Threshold {
            limit,
            window: Duration::from_secs(secs),
        };
        let detector = Detector::new(
            [
                t(cfg.sip_packets_limit, cfg.sip_packets_window_secs),
                t(cfg.api_requests_limit, cfg.api_requests_window_secs),
                t(cfg.auth_failures_limit, cfg.auth_failures_window_secs),
            ],
            cfg.max_tracked_sources,
        );
        let (offences, queue) = mpsc::channel(BAN_QUEUE);
        tokio::spawn(Arc::clone(&gate).follow(cluster.reader().clone()));
        let banner = Banner {
            cluster: cluster.clone(),
            gate: Arc::clone(&gate),
            base: Duration::from_secs(cfg.ban_secs.max(1)),
            max: Duration::from_secs(cfg.max_ban_secs.max(cfg.ban_secs.max(1))),
            events: Arc::clone(&events),
        };
        tokio::spawn(banner.run(queue));
        if cfg.password_max_age_days > 0 {
            let max_age = Duration::from_secs(cfg.password_max_age_days.saturating_mul(86_400));
            tokio::spawn(rotation::run(cluster.clone(), Arc::clone(&events), max_age));
        }
        if cfg.audit_retention_days > 0 {
            let keep = Duration::from_secs(cfg.audit_retention_days.saturating_mul(86_400));
            let prune_audit = |before| Command::PruneAudit { before };
            tokio::spawn(crate::events::prune_every_hour(
                cluster.clone(),
                keep,
                prune_audit,
            ));
        }
        tokio::spawn(forget_old_bans(cluster));
        Arc::new(Self {
            settings: cfg.clone(),
            gate,
            detector,
            offences,
            events,
        })
    }

    /// This node's `[security]` settings.
    pub fn settings(&self) -> &SecuritySection {
        &self.settings
    }

    /// Whether traffic from `ip` to `service` may go on; counts it against the source's rate.
    pub fn admit(&self, ip: IpAddr, service: Service, transport: Transport) -> bool {
        if let Err(why) = self.gate.check(ip, service, transport) {
            metrics::counter!("pbx_security_dropped_total", "service" => service.as_str(), "why" => why.as_str())
                .increment(1);
            return false;
        }
        let kind = match service {
            Service::Sip => Kind::SipPacket,
            Service::Api => Kind::ApiRequest,
            // Media is rate-limited by its own nature (latching); only the gate applies.
            Service::Media => return true,
        };
        if self.detector.hit(ip, kind, Instant::now())
            && !self.gate.is_allowlisted(ip, service, transport)
        {
            self.offend(ip, kind);
            return false;
        }
        true
    }

    /// A failed authentication (SIP digest or web login) from `ip`.
    pub fn auth_failed(&self, ip: IpAddr, service: Service, transport: Transport) {
        if self.detector.hit(ip, Kind::AuthFailure, Instant::now())
            && !self.gate.is_allowlisted(ip, service, transport)
        {
            self.offend(ip, Kind::AuthFailure);
        }
    }

    fn offend(&self, ip: IpAddr, kind: Kind) {
        // Enforced here at once; the replicated ban follows.
        self.gate.ban_locally(ip, now_millis() + 60_000);
        self.detector.forget(ip);
        tracing::warn!(source = %ip, reason = kind.reason(), "security: threshold crossed, banning source");
        let _ = self.offences.try_send(Offence {
            ip,
            reason: kind.reason(),
        });
    }

    /// The event center, for the services the gate protects.
    pub(crate) fn events(&self) -> &Arc<Events> {
        &self.events
    }

    pub(crate) fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Forgets a source's counts (an admin lifted its ban).
    pub(crate) fn forgive(&self, ip: IpAddr) {
        self.detector.forget(ip);
    }
}

/// The gate's name for a SIP transport.
pub(crate) fn sip_transport(t: pbx_sip::transaction::Transport) -> Transport {
    match t {
        pbx_sip::transaction::Transport::Udp => Transport::Udp,
        pbx_sip::transaction::Transport::Tcp => Transport::Tcp,
        pbx_sip::transaction::Transport::Tls => Transport::Tls,
    }
}

/// Turns offences into replicated bans, each longer than the last for a repeat offender.
struct Banner {
    events: Arc<Events>,
    cluster: Cluster,
    gate: Arc<Gate>,
    base: Duration,
    max: Duration,
}

impl Banner {
    async fn run(self, mut queue: mpsc::Receiver<Offence>) {
        while let Some(o) = queue.recv().await {
            let now = now_millis();
            let previous = self
                .cluster
                .reader()
                .get::<Ban>(&o.ip.to_string())
                .ok()
                .flatten();
            if previous.as_ref().is_some_and(|b| b.until > now + 60_000) {
                continue; // already banned cluster-wide
            }
            let strikes = previous
                .filter(|b| b.until + BAN_MEMORY.as_millis() as u64 > now)
                .map_or(1, |b| b.strikes.saturating_add(1));
            let until = now + ban_millis(self.base, self.max, strikes);
            self.gate.ban_locally(o.ip, until);
            let ban = Ban {
                ip: o.ip.to_string(),
                until,
                reason: o.reason.to_owned(),
                strikes,
                created_at: now,
                node_id: self.cluster.node_id(),
            };
            match self.cluster.propose(Command::PutBan(ban)).await {
                Ok(_) => {
                    metrics::counter!("pbx_security_bans_total", "reason" => o.reason).increment(1);
                    let minutes = (until - now) / 60_000;
                    self.events.raise(
                        "source_banned",
                        Severity::Warning,
                        Some(o.ip),
                        format!(
                            "{} banned on every node for {minutes} minutes ({}, strike {strikes})",
                            o.ip, o.reason
                        ),
                    );
                    tracing::warn!(source = %o.ip, reason = o.reason, strikes, until, "security: source banned cluster-wide");
                }
                Err(e) => {
                    tracing::warn!(source = %o.ip, error = %e, "security: ban not replicated")
                }
            }
        }
    }
}

/// `base × 2^(strikes−1)`, at most `max`.
fn ban_millis(base: Duration, max: Duration, strikes: u32) -> UnixMillis {
    let factor = 1u32
        .checked_shl(strikes.saturating_sub(1))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max).as_millis() as UnixMillis
}

/// The leader drops ban records that no longer count towards escalation.
async fn forget_old_bans(cluster: Cluster) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if cluster.current_leader() != Some(cluster.node_id()) {
            continue;
        }
        let before = now_millis().saturating_sub(BAN_MEMORY.as_millis() as u64);
        if let Err(e) = cluster.propose(Command::ForgetBans { before }).await {
            tracing::debug!(error = %e, "forgetting old bans failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_double_for_repeat_offenders_up_to_the_cap() {
        let (base, max) = (Duration::from_secs(600), Duration::from_secs(86_400));
        assert_eq!(ban_millis(base, max, 1), 600_000);
        assert_eq!(ban_millis(base, max, 2), 1_200_000);
        assert_eq!(ban_millis(base, max, 4), 4_800_000);
        assert_eq!(ban_millis(base, max, 40), 86_400_000);
    }
}
