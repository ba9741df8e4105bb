//! Three real nodes: a leader is elected, and writes made on the leader or through a follower are visible
//! on every node.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use reqwest::{Method, StatusCode};

use pbx_tests::Lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_leader_and_follower_reach_every_node() {
    let mut lab = Lab::start(3).await.unwrap();
    let leader = lab
        .wait_leader(std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let follower = (leader + 1) % 3;

    assert_eq!(
        lab.create_extension(leader, "1001").await.unwrap(),
        StatusCode::CREATED
    );
    assert_eq!(
        lab.create_extension(follower, "1002").await.unwrap(),
        StatusCode::CREATED,
        "{}",
        lab.log_tail(follower)
    );

    for i in 0..3 {
        let numbers = lab.extension_numbers(i).await.unwrap();
        assert_eq!(
            numbers,
            vec!["1001", "1002"],
            "node {} sees {numbers:?}",
            lab.nodes[i].id
        );
    }

    // The cluster reports three voters, one leader, and every node's applied index.
    let status: serde_json::Value = lab
        .client()
        .get_json(follower, "/api/v1/cluster/status")
        .await
        .unwrap();
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{status}");
    assert_eq!(
        status["leader"].as_u64(),
        Some(lab.nodes[leader].id),
        "{status}"
    );
    assert!(members.iter().all(|m| m["voter"] == true), "{status}");

    // The members table names all three.
    let listed = lab
        .client()
        .get_json(0, "/api/v1/cluster/members")
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_secret_is_shown_once_and_never_stored_in_clear() {
    let lab = Lab::start(1).await.unwrap();
    let body = serde_json::json!({ "number": "2001", "display_name": "Front desk" });
    let created: serde_json::Value = lab
        .req(0, Method::POST, "/api/v1/extensions")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["generated_secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 16);

    let fetched: serde_json::Value = lab
        .client()
        .get_json(0, "/api/v1/extensions/2001")
        .await
        .unwrap();
    assert!(fetched.get("generated_secret").is_none());
    assert_eq!(fetched["display_name"], "Front desk");

    // Nothing on disk holds the secret in clear.
    let mut found = false;
    for entry in walk(&lab.nodes[0].data_dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
            found = true;
        }
    }
    assert!(!found, "plaintext SIP secret found in the data directory");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p))
            } else {
                out.push(p)
            }
        }
    }
    out
}
