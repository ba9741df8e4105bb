//! Calls hung up by an admin: the API stores a request in the replicated table (through any node),
//! and every node serving phones hands the requests for the calls it carries to those calls. A call's
//! end removes its request.

use std::sync::Arc;
use std::time::Duration;

use storage::web::HangupRequest;

use super::Calls;

/// The table is read at most this often, however fast entries are applied.
const DEBOUNCE: Duration = Duration::from_millis(250);
/// A request handed to a call here is handed over again this long after, if no entry came since
/// (the call's end removes the request; until then, asking again is harmless).
const RETRY: Duration = Duration::from_secs(1);

/// Watches the applied log and hangs up the requested calls this node carries. Runs from the start
/// of the SIP service, after calls taken over with the VIP are carried on: requests stored before then
/// are acted on at once.
pub(crate) async fn run(calls: Arc<Calls>) {
    let mut applied = calls.cluster.reader().watch_applied();
    loop {
        applied.borrow_and_update();
        let handed = hand_over(&calls);
        tokio::time::sleep(DEBOUNCE).await;
        let changed = if handed {
            tokio::time::timeout(RETRY, applied.changed())
                .await
                .unwrap_or(Ok(()))
        } else {
            applied.changed().await
        };
        if changed.is_err() {
            return;
        }
    }
}

/// Hands every stored request to its call when this node carries it; whether any was.
fn hand_over(calls: &Calls) -> bool {
    // Empty but for the few seconds a call takes to end: one read of an empty table per scan.
    let requests = match calls.cluster.reader().list::<HangupRequest>() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "reading hang-up requests failed");
            return false;
        }
    };
    let mut handed = false;
    for r in requests {
        if calls.hang_up(&r.call_id, &r.requested_by) {
            tracing::debug!(call = %r.call_id, by = %r.requested_by, "hang-up request handed to the call");
            handed = true;
        }
    }
    handed
}
