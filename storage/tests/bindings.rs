//! Registration bindings through the real state machine: batches, `Contact: *` removal inside one batch,
//! guarded expiry, and prefix reads that keep one extension's bindings apart from another's.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use common::{append_and_apply, fresh, normal};
use pbx_storage::model::Binding;
use pbx_storage::{BindingOp, Command};

fn binding(aor: &str, contact: &str, expires_at: u64) -> Binding {
    Binding {
        aor: aor.into(),
        contact: contact.into(),
        expires_at,
        q: Some(500),
        call_id: "call-1".into(),
        cseq: 7,
        source: "198.18.0.20:5062".into(),
        transport: "tcp".into(),
        user_agent: "Yealink T46U".into(),
        node_id: 2,
        registered_at: 1,
        instance: Some("<urn:uuid:00000000-0000-1000-8000-000000000001>".into()),
        reachable: None,
    }
}

fn contacts(store: &common::Store, aor: &str) -> Vec<String> {
    store
        .reader
        .scan_prefix::<Binding>(&Binding::aor_prefix(aor))
        .unwrap()
        .into_iter()
        .map(|b| b.contact)
        .collect()
}

#[tokio::test]
async fn batches_apply_in_order_and_prefix_reads_stay_per_extension() {
    let (_dir, mut store) = fresh();
    let first = Command::UpdateBindings(vec![
        BindingOp::Put(binding("1001", "sip:1001@198.18.0.20:5062", 100)),
        BindingOp::Put(binding("1001", "sip:1001@198.18.0.21:5060", 100)),
        BindingOp::Put(binding("10011", "sip:10011@198.18.0.22:5060", 100)),
    ]);
    // In one entry: a new binding, then `Contact: *` for the same extension, then another new one.
    let second = Command::UpdateBindings(vec![
        BindingOp::Put(binding("1001", "sip:1001@198.18.0.23:5060", 100)),
        BindingOp::RemoveAll { aor: "1001".into() },
        BindingOp::Put(binding("1001", "sip:1001@198.18.0.24:5060", 900)),
    ]);
    append_and_apply(&mut store, vec![normal(1, 1, first)]).await;
    assert_eq!(contacts(&store, "1001").len(), 2);
    assert_eq!(contacts(&store, "10011"), ["sip:10011@198.18.0.22:5060"]);

    append_and_apply(&mut store, vec![normal(1, 2, second)]).await;
    assert_eq!(contacts(&store, "1001"), ["sip:1001@198.18.0.24:5060"]);
    assert_eq!(
        contacts(&store, "10011").len(),
        1,
        "another extension's bindings are untouched"
    );

    // The sweep at t=500 expires 10011's binding but not the one refreshed to 900.
    let sweep = Command::UpdateBindings(vec![
        BindingOp::Expire {
            aor: "10011".into(),
            contact: "sip:10011@198.18.0.22:5060".into(),
            now: 500,
        },
        BindingOp::Expire {
            aor: "1001".into(),
            contact: "sip:1001@198.18.0.24:5060".into(),
            now: 500,
        },
    ]);
    append_and_apply(&mut store, vec![normal(1, 3, sweep)]).await;
    assert!(contacts(&store, "10011").is_empty());
    let kept = store
        .reader
        .get::<Binding>(&Binding::key_for("1001", "sip:1001@198.18.0.24:5060"))
        .unwrap()
        .unwrap();
    assert_eq!(kept.expires_at, 900);
    assert_eq!(kept.user_agent, "Yealink T46U");
}
