//! Add a fourth node and remove one while writes continue.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};

use pbx_tests::Lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_and_remove_members_under_write_load() {
    let mut lab = Lab::start(3).await.unwrap();
    let leader = lab.wait_leader(Duration::from_secs(10)).await.unwrap();
    let client = lab.client();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, stop) = (client.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let number = format!("6{n:04}");
                if client.create_extension(leader, &number).await.ok() == Some(StatusCode::CREATED)
                {
                    acked.push(number);
                }
                n += 1;
            }
            acked
        })
    };

    // Node 4 joins while writes flow.
    let i4 = lab.prepare_node(4).unwrap();
    lab.spawn(i4).unwrap();
    lab.join(i4).unwrap();

    // Remove a follower (not the leader, to keep the writer's target up).
    let removed = (0..3).find(|&i| i != leader).unwrap();
    let removed_id = lab.nodes[removed].id;
    let resp = lab
        .req(
            leader,
            Method::DELETE,
            &format!("/api/v1/cluster/members/{removed_id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.unwrap();
    assert!(!acked.is_empty());
    lab.kill(removed);

    let status: serde_json::Value = lab
        .client()
        .get_json(leader, "/api/v1/cluster/status")
        .await
        .unwrap();
    let mut ids: Vec<u64> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["node_id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    let mut expected: Vec<u64> = lab
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|&id| id != removed_id)
        .collect();
    expected.sort_unstable();
    assert_eq!(ids, expected, "{status}");

    // The new node has every acknowledged write.
    let have = lab.extension_numbers(i4).await.unwrap();
    let missing: Vec<&String> = acked.iter().filter(|n| !have.contains(n)).collect();
    assert!(missing.is_empty(), "node 4 misses {missing:?}");

    // Removing the same node again is refused or a no-op, never a crash; the cluster still writes.
    let again = lab
        .req(
            leader,
            Method::DELETE,
            &format!("/api/v1/cluster/members/{removed_id}"),
        )
        .send()
        .await
        .unwrap();
    assert!(
        again.status().is_client_error() || again.status().is_success(),
        "{}",
        again.status()
    );
    assert_eq!(
        lab.create_extension(i4, "69999").await.unwrap(),
        StatusCode::CREATED
    );
}
