//! Password age: once a day the leader raises one event listing the SIP secrets and web passwords
//! older than the rotation period, so an admin is reminded without being flooded.

use std::sync::Arc;
use std::time::Duration;

use cluster::Cluster;
use storage::model::{Extension, Severity, UnixMillis};
use storage::web::WebAccount;

use crate::events::Events;
use crate::time::now_millis;

const CHECK_EVERY: Duration = Duration::from_secs(24 * 3600);
/// Names listed in the event at most; the count covers the rest.
const LISTED: usize = 20;

/// Accounts (`ext:1001`, `user:admin`) whose secret was last set before `now - max_age`.
pub(crate) fn due(
    extensions: &[Extension],
    users: &[WebAccount],
    now: UnixMillis,
    max_age: Duration,
) -> Vec<String> {
    let before = now.saturating_sub(max_age.as_millis() as u64);
    extensions
        .iter()
        .filter(|e| e.enabled && e.credentials.changed_at < before)
        .map(|e| format!("ext:{}", e.number))
        .chain(
            users
                .iter()
                .filter(|u| !u.disabled && u.password_changed_at < before)
                .map(|u| format!("user:{}", u.username)),
        )
        .collect()
}

pub(crate) async fn run(cluster: Cluster, events: Arc<Events>, max_age: Duration) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Give the cluster a moment to elect after start before deciding who reminds.
        tokio::time::sleep(Duration::from_secs(10)).await;
        if cluster.current_leader() != Some(cluster.node_id()) {
            continue;
        }
        let reader = cluster.reader();
        let (Ok(extensions), Ok(users)) =
            (reader.list::<Extension>(), crate::accounts::list(reader))
        else {
            continue;
        };
        let due = due(&extensions, &users, now_millis(), max_age);
        if due.is_empty() {
            continue;
        }
        let days = max_age.as_secs() / 86_400;
        let shown: Vec<&str> = due.iter().take(LISTED).map(String::as_str).collect();
        let more = due.len().saturating_sub(LISTED);
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        events.raise(
            "password_rotation_due",
            Severity::Info,
            None,
            format!(
                "{} passwords are older than {days} days: {}{tail}",
                due.len(),
                shown.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use storage::model::{Role, SipCredentials, UserAccount};

    use super::*;

    #[test]
    fn only_old_secrets_of_live_accounts_are_due() {
        let day = 86_400_000;
        let ext = |n: &str, changed_at, enabled| Extension {
            number: n.into(),
            display_name: n.into(),
            credentials: SipCredentials {
                username: n.into(),
                realm: "pbx".into(),
                ha1_md5: String::new(),
                ha1_sha256: String::new(),
                changed_at,
            },
            permission_group: "internal".into(),
            enabled,
            created_at: 0,
            updated_at: 0,
        };
        let user = |n: &str, changed_at| {
            WebAccount::from_legacy(UserAccount {
                username: n.into(),
                password_hash: String::new(),
                role: Role::Admin,
                extension: None,
                password_changed_at: changed_at,
                created_at: 0,
            })
        };
        let now = 200 * day;
        let due = due(
            &[
                ext("1001", 100 * day, true),
                ext("1002", 150 * day, true),
                ext("1003", 0, false),
            ],
            &[user("admin", 10 * day), user("ops", 199 * day)],
            now,
            Duration::from_secs(90 * 86_400),
        );
        assert_eq!(due, ["ext:1001", "user:admin"]);
    }
}
