//! A restarted node rejoins from its own disk; a node that missed more than the snapshot threshold
//! catches up by snapshot.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::time::Duration;

use reqwest::StatusCode;

use pbx_tests::{Lab, LabOptions};

/// Snapshots node `i` has received from a leader and installed, from its `/metrics`.
async fn snapshots_installed(lab: &Lab, i: usize) -> u64 {
    let n = lab
        .client()
        .metric(i, "pbx_raft_snapshots_installed_total")
        .await;
    n.expect("GET /metrics") as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_catches_up_by_log_and_by_snapshot() {
    let mut lab = Lab::start_with(
        3,
        LabOptions {
            snapshot_after_logs: 50,
            keep_logs_after_snapshot: 10,
            ..LabOptions::default()
        },
    )
    .await
    .unwrap();
    let leader = lab.wait_leader(Duration::from_secs(10)).await.unwrap();
    let victim = (leader + 1) % 3;
    let writer = (leader + 2) % 3;

    // A short absence: the node catches up from the leader's log after a clean restart.
    lab.stop(victim).unwrap();
    for n in 0..10 {
        assert_eq!(
            lab.create_extension(writer, &format!("40{n:02}"))
                .await
                .unwrap(),
            StatusCode::CREATED
        );
    }
    lab.restart(victim).await.unwrap();
    assert_eq!(lab.extension_numbers(victim).await.unwrap().len(), 10);
    assert_eq!(
        snapshots_installed(&lab, victim).await,
        0,
        "ten entries behind needs no snapshot"
    );

    // A long absence: far more entries than the snapshot threshold, so the leader purges its log and
    // must send a snapshot. SIGKILL this time: the node restarts from whatever its disk held.
    lab.kill(victim);
    let client = lab.client();
    let mut tasks = Vec::new();
    for t in 0..4 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..75 {
                let status = client
                    .create_extension(writer, &format!("5{t}{n:03}"))
                    .await
                    .unwrap();
                assert_eq!(status, StatusCode::CREATED);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    lab.restart(victim).await.unwrap();
    let numbers = lab.extension_numbers(victim).await.unwrap();
    assert_eq!(numbers.len(), 310, "{}", lab.log_tail(victim));
    assert!(
        snapshots_installed(&lab, victim).await > 0,
        "victim caught up without a snapshot"
    );
}
