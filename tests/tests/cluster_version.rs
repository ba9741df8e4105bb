//! The cluster protocol during an upgrade, with real processes: a node held back to protocol 1
//! (`[cluster] max_protocol = 1`, as an old build speaks) negotiates protocol 1 with the others;
//! `cluster status` shows it; a change only protocol 2 can carry (backup settings) is refused
//! with a message naming that node, while older kinds of change go on; a `versions_mixed` event is
//! raised; once the node runs protocol 2 again the change is taken.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use pbx_tests::api::{OnNode, call, expect_error, poll};
use pbx_tests::{Lab, LabOptions};

const PASSPHRASE: &str = "granite-otter-harbour-1947";

fn set_max_protocol(lab: &Lab, i: usize, max: Option<u32>) {
    let path = &lab.nodes[i].config;
    let text = std::fs::read_to_string(path).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with("max_protocol"))
        .map(|l| format!("{l}\n"))
        .collect();
    let text = match max {
        Some(m) => kept.replacen(
            "[cluster]\n",
            &format!("[cluster]\nmax_protocol = {m}\n"),
            1,
        ),
        None => kept,
    };
    std::fs::write(path, text).unwrap();
}

/// Waits until restarted node `i` has caught up far enough to know the admin's password (a node
/// restarted right after the lab formed may not have applied its change yet).
async fn wait_caught_up(client: &pbx_tests::LabClient, i: usize) {
    for _ in 0..200 {
        let resp = client
            .req(i, Method::GET, "/api/v1/extensions?limit=1")
            .send()
            .await;
        if resp.is_ok_and(|r| r.status() == StatusCode::OK) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("node {i} never served the admin after its restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_the_older_protocol_holds_back_the_changes_it_could_not_read() {
    let mut lab = Lab::start_with(3, LabOptions::default()).await.unwrap();
    let client = lab.client();
    let status_shows = |node: u64, protocol: u32| {
        move |v: &Value| {
            v["versions"][node.to_string()]
                .as_str()
                .is_some_and(|s| s.ends_with(&format!("(protocol {protocol})")))
        }
    };
    let status = poll(
        &client,
        "/api/v1/cluster/status",
        Duration::from_secs(10),
        status_shows(3, 2),
    )
    .await;
    assert!(status_shows(3, 2)(&status), "{status}");

    // Node 3 restarts held back to protocol 1.
    lab.stop(2).unwrap();
    set_max_protocol(&lab, 2, Some(1));
    lab.restart(2).await.unwrap();
    wait_caught_up(&client, 2).await;
    let status = poll(
        &client,
        "/api/v1/cluster/status",
        Duration::from_secs(20),
        status_shows(3, 1),
    )
    .await;
    assert!(status_shows(3, 1)(&status), "{status}");

    // A protocol-2 change is refused, through any node, naming the node to upgrade.
    for node in [0, 2] {
        let got = call(
            &OnNode(&client, node),
            Method::PUT,
            "/api/v1/backups/settings",
            Some(json!({"passphrase": PASSPHRASE})),
        )
        .await;
        expect_error(
            &got,
            StatusCode::CONFLICT,
            &["node 3", "protocol 2", "upgrad"],
        );
    }
    // Protocol-1 changes go on, and reach the held-back node.
    let created = client
        .create_extension_with_secret(0, "1001", "Tr7!kq-Vw9zP")
        .await
        .unwrap();
    assert_eq!(created, StatusCode::CREATED);
    client.sync(2).await.unwrap();
    assert!(
        client
            .extension_numbers(2)
            .await
            .unwrap()
            .contains(&"1001".to_owned())
    );
    let mixed = poll(&client, "/api/v1/events", Duration::from_secs(30), |v| {
        v.to_string().contains("versions_mixed")
    })
    .await;
    assert!(mixed.to_string().contains("protocol 1"), "{mixed}");

    // The node is upgraded (runs protocol 2 again): the change is taken.
    lab.stop(2).unwrap();
    set_max_protocol(&lab, 2, None);
    lab.restart(2).await.unwrap();
    wait_caught_up(&client, 2).await;
    let status = poll(
        &client,
        "/api/v1/cluster/status",
        Duration::from_secs(20),
        status_shows(3, 2),
    )
    .await;
    assert!(status_shows(3, 2)(&status), "{status}");
    let (status, body) = call(
        &OnNode(&client, 0),
        Method::PUT,
        "/api/v1/backups/settings",
        Some(json!({"passphrase": PASSPHRASE})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A protocol this build does not speak is refused at start, saying which it speaks.
    lab.stop(2).unwrap();
    set_max_protocol(&lab, 2, Some(9));
    let out = std::process::Command::new(pbx_tests::pbx_bin())
        .args(["run", "--config"])
        .arg(&lab.nodes[2].config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("max_protocol 9"), "{text}");
}
