//! The event center: security and operational events are kept (replicated, with a retention limit)
//! and sent to the recipients who asked for them, by signed HTTPS webhook or by e-mail. The node that
//! sees an event is the one that sends it, so each recipient hears of it once.

mod smtp;

pub(crate) use smtp::Attached;

pub(crate) use smtp::valid_address;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use cluster::Cluster;
use storage::Command;
use storage::model::{Channel, Event, Recipient, Severity};

use crate::config::EventsSection;
use crate::time::now_millis;

/// Attempts per delivery, with a doubling pause between them.
const ATTEMPTS: u32 = 3;
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("reading {path}: {source}")]
    Ca {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tls(String),
    #[error("{0}")]
    Smtp(String),
}

/// Raises events; cheap to share.
pub struct Events {
    cluster: Cluster,
    http: reqwest::Client,
    smtp: Option<smtp::Relay>,
}

impl Events {
    pub fn start(cfg: &EventsSection, cluster: Cluster) -> Result<Arc<Self>, EventsError> {
        let mut http = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &cfg.extra_ca_file {
            let pem = std::fs::read(path).map_err(|source| EventsError::Ca {
                path: path.display().to_string(),
                source,
            })?;
            let ca = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| EventsError::Tls(format!("{}: {e}", path.display())))?;
            http = http.add_root_certificate(ca);
        }
        let http = http.build().map_err(|e| EventsError::Tls(e.to_string()))?;
        let smtp = smtp::Relay::from_config(cfg)?;
        let this = Arc::new(Self {
            cluster: cluster.clone(),
            http,
            smtp,
        });
        if cfg.retention_days > 0 {
            let keep = Duration::from_secs(cfg.retention_days.saturating_mul(86_400));
            let prune_events = |before| Command::PruneEvents { before };
            tokio::spawn(prune_every_hour(cluster.clone(), keep, prune_events));
        }
        tokio::spawn(watch_members(cluster, Arc::clone(&this)));
        Ok(this)
    }

    /// Whether e-mail can be sent (an SMTP relay is configured).
    pub(crate) fn can_mail(&self) -> bool {
        self.smtp.is_some()
    }

    /// Sends one e-mail through the event center's relay now; `None` when no relay is configured.
    pub(crate) async fn send_mail(
        &self,
        to: &str,
        subject: &str,
        body: &str,
    ) -> Option<Result<(), smtp::SmtpError>> {
        let relay = self.smtp.as_ref()?;
        Some(relay.send(to, subject, body).await)
    }

    /// As [`Events::send_mail`], with a file attached.
    pub(crate) async fn send_mail_with(
        &self,
        to: &str,
        subject: &str,
        body: &str,
        file: &Attached<'_>,
    ) -> Option<Result<(), smtp::SmtpError>> {
        let relay = self.smtp.as_ref()?;
        Some(relay.send_with(to, subject, body, file).await)
    }

    /// Records an event and notifies its recipients, in the background.
    pub fn raise(
        self: &Arc<Self>,
        kind: &'static str,
        severity: Severity,
        source: Option<IpAddr>,
        message: String,
    ) {
        let event = Event {
            at: now_millis(),
            seq: format!("{:08x}", rand::random::<u32>()),
            kind: kind.to_owned(),
            severity,
            node_id: self.cluster.node_id(),
            source: source.map(|s| s.to_string()),
            message,
        };
        metrics::counter!("pbx_events_total", "kind" => kind).increment(1);
        let this = Arc::clone(self);
        tokio::spawn(async move { this.publish(event).await });
    }

    async fn publish(&self, event: Event) {
        if let Err(e) = self
            .cluster
            .propose(Command::RecordEvent(event.clone()))
            .await
        {
            tracing::warn!(error = %e, kind = %event.kind, "event not stored");
        }
        let recipients = match self.cluster.reader().list::<Recipient>() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading event recipients failed");
                return;
            }
        };
        let wanted = recipients
            .into_iter()
            .filter(|r| r.kinds.is_empty() || r.kinds.contains(&event.kind));
        for r in wanted {
            let mut pause = Duration::from_millis(500);
            for attempt in 1..=ATTEMPTS {
                let result = match r.channel {
                    Channel::Webhook => self.post(&r, &event).await,
                    Channel::Email => self.mail(&r, &event).await,
                };
                match result {
                    Ok(()) => {
                        metrics::counter!("pbx_event_deliveries_total", "result" => "ok")
                            .increment(1);
                        break;
                    }
                    Err(e) if attempt == ATTEMPTS => {
                        metrics::counter!("pbx_event_deliveries_total", "result" => "failed")
                            .increment(1);
                        tracing::warn!(recipient = %r.id, address = %r.address, error = %e, kind = %event.kind, "event not delivered");
                    }
                    Err(_) => {
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                    }
                }
            }
        }
    }

    async fn post(&self, r: &Recipient, event: &Event) -> Result<(), String> {
        let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
        let timestamp = event.at.to_string();
        let signature = sign(&r.secret, &timestamp, &body);
        let resp = self
            .http
            .post(&r.address)
            .header("content-type", "application/json")
            .header("x-pbx-event", &event.kind)
            .header("x-pbx-timestamp", &timestamp)
            .header("x-pbx-signature", format!("sha256={signature}"))
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("receiver answered {}", resp.status()))
        }
    }

    async fn mail(&self, r: &Recipient, event: &Event) -> Result<(), String> {
        let relay = self
            .smtp
            .as_ref()
            .ok_or("no [events] smtp_server configured")?;
        let subject = format!("[pbx] {:?}: {}", event.severity, event.kind);
        let body = format!(
            "{}\r\n\r\nkind: {}\r\nseverity: {:?}\r\nnode: {}\r\nsource: {}\r\nat (unix ms): {}\r\n",
            event.message,
            event.kind,
            event.severity,
            event.node_id,
            event.source.as_deref().unwrap_or("-"),
            event.at
        );
        relay
            .send(&r.address, &subject, &body)
            .await
            .map_err(|e| e.to_string())
    }
}

/// `hex(HMAC-SHA256(key, timestamp + "." + body))`: the receiver recomputes it with the secret it was
/// given and rejects a replayed timestamp.
pub fn sign(secret_hex: &str, timestamp: &str, body: &[u8]) -> String {
    let key = hex::decode(secret_hex).unwrap_or_else(|_| secret_hex.as_bytes().to_vec());
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// How often the leader looks at its followers, and how many looks in a row a silent one gets before
/// it is reported lost.
const MEMBER_CHECK: Duration = Duration::from_secs(2);
const LOST_AFTER: u32 = 3;

/// The leader reports a member it has not heard from (`node_lost`) and its return (`node_recovered`).
async fn watch_members(cluster: Cluster, events: Arc<Events>) {
    let mut silent: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(MEMBER_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if cluster.current_leader() != Some(cluster.node_id()) {
            silent.clear();
            continue;
        }
        let status = cluster.status().await;
        for m in status
            .members
            .iter()
            .filter(|m| m.node_id != cluster.node_id())
        {
            let count = silent.entry(m.node_id).or_default();
            if m.healthy {
                if *count >= LOST_AFTER {
                    events.raise(
                        "node_recovered",
                        Severity::Info,
                        None,
                        format!("node {} is back in the cluster", m.node_id),
                    );
                }
                *count = 0;
            } else {
                *count += 1;
                if *count == LOST_AFTER {
                    events.raise(
                        "node_lost",
                        Severity::Critical,
                        None,
                        format!(
                            "node {} ({}) has not answered the leader for {} s",
                            m.node_id,
                            m.raft_addr,
                            (MEMBER_CHECK * LOST_AFTER).as_secs()
                        ),
                    );
                }
            }
        }
    }
}

/// The leader drops what is older than `keep` with the command `prune` makes (events, audit entries).
pub(crate) async fn prune_every_hour(
    cluster: Cluster,
    keep: Duration,
    prune: fn(storage::model::UnixMillis) -> Command,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if cluster.current_leader() != Some(cluster.node_id()) {
            continue;
        }
        let before = now_millis().saturating_sub(keep.as_millis() as u64);
        if let Err(e) = cluster.propose(prune(before)).await {
            tracing::debug!(error = %e, "pruning failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_the_timestamp_and_the_body() {
        let a = sign("00ff", "1", b"{}");
        assert_eq!(a.len(), 64);
        assert_ne!(a, sign("00ff", "2", b"{}"));
        assert_ne!(a, sign("00ff", "1", b"{ }"));
        assert_ne!(a, sign("00fe", "1", b"{}"));
    }
}
