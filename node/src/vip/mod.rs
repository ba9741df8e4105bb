//! The floating virtual IP: which node owns it, and what ownership brings up.
//!
//! The owner is the Raft leader while it holds the lease ([`lease`]); owning means the driver has put
//! the address on this node ([`driver`]) and the phone-facing services (SIP on the VIP, the media relay,
//! every established call carried on from its record) run here. Losing the lease takes them down at
//! once, in the order that stops this node from speaking for the VIP first: the in-process fence
//! ([`fence`]), then the services, then the address.

pub mod driver;
pub mod fence;
pub mod lease;
mod netlink;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use cluster::Cluster;
use storage::model::Severity;

pub use driver::{VipAddr, VipDriver, VipError};
pub use fence::Fence;
use lease::{Lease, Step};

use crate::config::VipSection;
use crate::events::Events;
use crate::sip::{SipError, SipService};

/// How often the owner checks its lease (and how late, at worst, a lost lease is noticed beyond the
/// fence, which acts on its own deadline).
const TICK: Duration = Duration::from_millis(20);
/// How often the owner asks the other voters to confirm its leadership (each answer renews the lease).
const CONFIRM_EVERY: Duration = Duration::from_millis(50);
/// How often the kernel fence is refreshed; its element carries the lease's remaining time.
const FENCE_REFRESH: Duration = Duration::from_millis(100);
/// Pause after a failed takeover before trying again.
const RETRY: Duration = Duration::from_millis(500);

/// Starts the phone-facing services on the VIP (called on every acquisition).
pub type StartServices = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Option<SipService>, SipError>> + Send>>
        + Send
        + Sync,
>;

/// Settings of the owner loop.
pub struct Owner {
    pub cluster: Cluster,
    pub events: Arc<Events>,
    pub fence: Fence,
    pub lease: Duration,
    pub arp_refresh: Duration,
    pub start: StartServices,
    pub address: VipAddr,
}

/// Picks the configured driver and runs the owner loop until `stop` turns true; then releases.
pub async fn run(
    cfg: &VipSection,
    owner: Owner,
    stop: watch::Receiver<bool>,
) -> Result<(), VipError> {
    let addr = owner.address;
    match cfg.driver.as_str() {
        "linux" => {
            owner
                .run(driver::Linux::new(addr, &cfg.interface)?, stop)
                .await
        }
        "loopback" => owner.run(driver::Loopback::new(addr)?, stop).await,
        "command" => {
            let d = driver::Script::new(
                cfg.command.clone(),
                addr,
                &cfg.interface,
                Duration::from_secs(cfg.command_timeout_secs),
            )?;
            owner.run(d, stop).await
        }
        other => Err(VipError::UnknownDriver(other.to_owned())),
    }
}

/// Checks the driver settings without touching the system (at config load).
pub fn check(cfg: &VipSection) -> Result<VipAddr, VipError> {
    let addr: VipAddr = cfg.address.parse()?;
    match cfg.driver.as_str() {
        "linux" => driver::Linux::new(addr, &cfg.interface).map(|_| addr),
        "loopback" => driver::Loopback::new(addr).map(|_| addr),
        "command" => {
            driver::Script::new(cfg.command.clone(), addr, &cfg.interface, TICK).map(|_| addr)
        }
        other => Err(VipError::UnknownDriver(other.to_owned())),
    }
}

/// Asks the other voters, every [`CONFIRM_EVERY`], to confirm this node's leadership; publishes the
/// instant from which the latest quorum pledged its votes (`None` when this node does not lead).
///
/// Not openraft's own "last quorum acknowledgement" from its metrics: a metrics value computed just
/// before the process was frozen is indistinguishable, once read after the freeze, from a fresh one.
/// Here the instant is read from the clock before asking, so a proof can only be older than it looks.
fn confirm_leadership(cluster: Cluster, lease: Duration) -> watch::Receiver<Option<Instant>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CONFIRM_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leadership = cluster.leadership();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                // A node that has just been elected asks at once, not at its next tick: the
                // takeover waits for this proof (up to one tick, 25 ms on average, before).
                changed = leadership.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tx.closed() => return,
            }
            let asked = Instant::now();
            let proof = cluster.lease_start(lease).await;
            tracing::debug!(
                took_us = asked.elapsed().as_micros() as u64,
                age_ms = proof.map(|p| asked.saturating_duration_since(p).as_millis() as u64),
                "lease proof"
            );
            // Keep the newest proof: a slow answer never moves the lease back, a failed one lets it run out.
            tx.send_if_modified(|current| match (proof, *current) {
                (Some(p), Some(c)) if p <= c => false,
                (Some(_), _) => {
                    *current = proof;
                    true
                }
                (None, Some(_)) if !cluster_leads(&cluster) => {
                    *current = None;
                    true
                }
                (None, _) => false,
            });
        }
    });
    rx
}

fn cluster_leads(cluster: &Cluster) -> bool {
    cluster.leadership().borrow().leads
}

/// What the loop holds while it owns the VIP.
struct Held {
    services: Option<SipService>,
    since: Instant,
    fenced_at: Instant,
    /// Gratuitous ARPs sent so far, and when the next is due.
    announced: u32,
    next_announce: Instant,
}

/// When the next gratuitous ARP goes out after `sent` of them: a burst right after the takeover (a
/// neighbour that missed one takes the next), then every `refresh`.
fn announce_after(sent: u32, refresh: Duration) -> Duration {
    match sent {
        1 => Duration::from_millis(500),
        2 => Duration::from_secs(1),
        _ => refresh,
    }
}

impl Owner {
    async fn run<D: VipDriver>(
        self,
        driver: D,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), VipError> {
        let me = self.cluster.node_id();
        // A driver that cannot work (no nft, a wrong interface) is reported loudly and retried:
        // the node still replicates, it just cannot serve phones until fixed.
        let mut reported = false;
        while let Err(e) = driver.prepare().await {
            tracing::error!(node = me, vip = %self.address, driver = driver.name(), error = %e, "vip driver not ready; retrying in 5 s");
            if !reported {
                reported = true;
                self.events.raise(
                    "vip_driver_failed",
                    Severity::Critical,
                    None,
                    format!("node {me} cannot manage the VIP {}: {e}", self.address),
                );
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = stop.changed() => return Ok(()),
            }
        }
        tracing::info!(node = me, vip = %self.address, driver = driver.name(), lease_ms = self.lease.as_millis() as u64, "vip driver ready");
        metrics::gauge!("pbx_vip_owner").set(0.0);
        let mut lease = Lease::new(self.lease);
        let mut raft = self.cluster.leadership();
        let mut proofs = confirm_leadership(self.cluster.clone(), self.lease);
        let mut leader = false;
        let mut held: Option<Held> = None;
        let mut retry_at = Instant::now();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = raft.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    leader = raft.borrow_and_update().leads;
                }
                changed = proofs.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            let now = Instant::now();
            if now < retry_at && !lease.is_held() {
                continue;
            }
            let quorum_ack = *proofs.borrow();
            match lease.tick(now, leader, quorum_ack) {
                Step::Idle => {}
                Step::Acquire { until } => match self.acquire(&driver, now, until).await {
                    Ok(h) => held = Some(h),
                    Err(e) => {
                        tracing::warn!(node = me, vip = %self.address, error = %e, "vip takeover failed; retrying");
                        lease.drop_lease();
                        self.release(&driver, None).await;
                        retry_at = Instant::now() + RETRY;
                    }
                },
                Step::Renew { until } => {
                    self.fence.hold_until(until);
                    if let Some(h) = held.as_mut() {
                        if now.duration_since(h.fenced_at) >= FENCE_REFRESH {
                            h.fenced_at = now;
                            if let Err(e) = driver.renew(until).await {
                                tracing::warn!(node = me, error = %e, "vip fence not refreshed");
                            }
                        }
                        if now >= h.next_announce {
                            h.announced += 1;
                            h.next_announce = now + announce_after(h.announced, self.arp_refresh);
                            // Checked at the last moment: a gratuitous ARP from a node that slept
                            // through its lease would pull the phones away from the real owner.
                            if self.fence.holds()
                                && let Err(e) = driver.announce().await
                            {
                                tracing::warn!(node = me, error = %e, "vip announcement failed");
                            }
                        }
                    }
                }
                Step::Release(loss) => {
                    let held_for = held.as_ref().map(|h| h.since.elapsed());
                    self.release(&driver, held.take()).await;
                    metrics::counter!("pbx_vip_lease_losses_total", "reason" => loss.as_str())
                        .increment(1);
                    tracing::warn!(node = me, vip = %self.address, reason = loss.as_str(), held_ms = held_for.map(|d| d.as_millis() as u64), "vip lease lost; released");
                    self.events.raise(
                        "vip_lease_lost",
                        Severity::Warning,
                        None,
                        format!(
                            "node {me} lost the VIP lease ({}) and released {}",
                            loss.as_str(),
                            self.address
                        ),
                    );
                }
            }
        }
        if lease.is_held() {
            tracing::info!(node = me, vip = %self.address, "releasing the vip before stopping");
        }
        self.release(&driver, held.take()).await;
        Ok(())
    }

    /// Address up, then SIP and media on it with every established call carried on.
    async fn acquire<D: VipDriver>(
        &self,
        driver: &D,
        now: Instant,
        until: Instant,
    ) -> Result<Held, String> {
        let me = self.cluster.node_id();
        self.fence.hold_until(until);
        driver.acquire(until).await.map_err(|e| e.to_string())?;
        let services = (self.start)().await.map_err(|e| e.to_string())?;
        let took = now.elapsed();
        metrics::gauge!("pbx_vip_owner").set(1.0);
        metrics::counter!("pbx_vip_takeovers_total").increment(1);
        metrics::gauge!("pbx_vip_takeover_seconds").set(took.as_secs_f64());
        tracing::info!(node = me, vip = %self.address, takeover_ms = took.as_millis() as u64, "vip acquired; serving phones");
        self.events.raise(
            "vip_acquired",
            Severity::Info,
            None,
            format!(
                "node {me} took over the VIP {} ({} ms from the lease to serving)",
                self.address,
                took.as_millis()
            ),
        );
        let at = Instant::now();
        let mut held = Held {
            services,
            since: at,
            fenced_at: at,
            announced: 0,
            next_announce: at,
        };
        // The first gratuitous ARP at once (if the lease still holds, checked at the last moment as
        // in the loop), not on the next tick: the first requests the new owner sends (a busy lamp's
        // NOTIFY, a carried-on call's BYE) get their answers at its MAC, not the dead owner's.
        if self.fence.holds() {
            held.announced = 1;
            held.next_announce = at + announce_after(1, self.arp_refresh);
            if let Err(e) = driver.announce().await {
                tracing::warn!(node = me, error = %e, "vip announcement failed");
            }
        }
        Ok(held)
    }

    /// Fence first (nothing more is sent as the owner), then the services, then the address.
    async fn release<D: VipDriver>(&self, driver: &D, held: Option<Held>) {
        self.fence.revoke();
        if let Some(mut h) = held {
            drop(h.services.take());
        }
        metrics::gauge!("pbx_vip_owner").set(0.0);
        if let Err(e) = driver.release().await {
            tracing::warn!(node = self.cluster.node_id(), vip = %self.address, error = %e, "vip release failed");
        }
    }
}
