//! Calls between extensions through the B2BUA: real `pbx` processes, scripted phones over UDP, RTP
//! counted at each phone, and the CDR and active-call API checked after each scenario.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use pbx_tests::phone::{Answer, Phone, send_rtp_from};
use pbx_tests::{Lab, LabClient, LabOptions};

const SECRET: &str = "Tr7!kq-Vw9zP";
const RTP_EVERY: Duration = Duration::from_millis(20);

async fn lab_with(n: u64, options: LabOptions, extensions: &[&str]) -> (Lab, LabClient) {
    let lab = Lab::start_with(n, options).await.unwrap();
    let client = lab.client();
    for number in extensions {
        assert_eq!(
            client.create_extension_with_secret(0, number, SECRET).await.unwrap(),
            StatusCode::CREATED
        );
    }
    for i in 0..lab.nodes.len() {
        client.sync(i).await.unwrap();
    }
    (lab, client)
}

fn sip(lab: &Lab, i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], lab.nodes[i].sip_port))
}

async fn phone(lab: &Lab, user: &str) -> Phone {
    let mut p = Phone::new(sip(lab, 0), user, SECRET).await.unwrap();
    assert_eq!(p.register(300).await.unwrap(), 200, "{user} registers");
    p
}

async fn cdrs(client: &LabClient, i: usize) -> Vec<Value> {
    client.get_json(i, "/api/v1/cdrs").await.unwrap()["cdrs"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until node `i` holds `n` CDRs (they are committed as the call ends).
async fn wait_cdrs(client: &LabClient, i: usize, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let c = cdrs(client, i).await;
        if c.len() >= n {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} CDRs on node {i}: {:?}", cdrs(client, i).await);
}

/// Nothing is left behind: no active-call record on any node and no media port held.
async fn assert_clean(lab: &Lab, client: &LabClient) {
    for _ in 0..100 {
        let ports = client.metric(0, "pbx_media_port_pairs_in_use").await.unwrap();
        let calls = client.get_json(0, "/api/v1/calls").await.unwrap();
        if ports == 0.0 && calls["count"] == 0 {
            for i in 0..lab.nodes.len() {
                client.sync(i).await.unwrap();
                assert_eq!(client.get_json(i, "/api/v1/calls").await.unwrap()["count"], 0);
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "left behind: {} port pairs, calls {}",
        client.metric(0, "pbx_media_port_pairs_in_use").await.unwrap(),
        client.get_json(0, "/api/v1/calls").await.unwrap()
    );
}

async fn wait_rtp(p: &Phone, n: u64) -> u64 {
    for _ in 0..100 {
        if p.rtp_stats.count() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.rtp_stats.count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_relays_audio_both_ways_and_leaves_a_cdr() {
    let (lab, client) = lab_with(3, LabOptions::default(), &["1001", "1002"]).await;
    let mut alice = phone(&lab, "1001").await;
    let mut bob = phone(&lab, "1002").await;

    let out = alice.dial("1002", None).await.unwrap();
    let (answered, placed) = tokio::join!(
        bob.answer(Answer::Accept, Duration::from_secs(5)),
        alice.outcome(&out, Duration::from_secs(5))
    );
    let (invite, bob_dialog) = answered.unwrap();
    let mut bob_dialog = bob_dialog.unwrap();
    let mut alice_dialog = placed.unwrap().expect("the call is answered");

    // The B2BUA's legs are separate dialogs, and media goes through the PBX's ports.
    assert_ne!(invite.header("Call-ID").unwrap(), alice_dialog.call_id);
    assert_eq!(alice_dialog.media.ip(), bob_dialog.media.ip());
    assert_ne!(alice_dialog.media.port(), alice.rtp_addr.port());
    assert_ne!(bob_dialog.media, alice.rtp_addr);
    assert!(!invite.raw.contains(&alice.sip_addr.to_string()), "the caller's address does not leak to the callee");

    // The call is listed on every node while it is up.
    for i in 0..3 {
        client.sync(i).await.unwrap();
        let calls = client.get_json(i, "/api/v1/calls").await.unwrap();
        assert_eq!(calls["count"], 1, "node {i}: {calls}");
        assert_eq!(calls["calls"][0]["caller"], "1001");
        assert_eq!(calls["calls"][0]["callee"], "1002");
    }

    let (a, b) = tokio::join!(
        alice.send_rtp(alice_dialog.media, 50, RTP_EVERY),
        bob.send_rtp(bob_dialog.media, 40, RTP_EVERY)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(wait_rtp(&bob, 50).await, 50, "every packet of the caller reaches the callee");
    assert_eq!(wait_rtp(&alice, 40).await, 40, "every packet of the callee reaches the caller");
    assert_eq!(alice.rtp_stats.sources.lock().unwrap().len(), 1);
    assert!(client
        .metric(0, "pbx_media_packets_relayed_total{kind=\"rtp\"}")
        .await
        .unwrap()
        >= 90.0);

    assert_eq!(alice.hang_up(&mut alice_dialog).await.unwrap(), 200);
    let bye = bob.expect_request("BYE", Duration::from_secs(5)).await.unwrap();
    assert_eq!(bye.header("Call-ID").unwrap(), bob_dialog.call_id);
    let _ = &mut bob_dialog;

    let cdrs = wait_cdrs(&client, 1, 1).await;
    let cdr = &cdrs[0];
    assert_eq!(cdr["caller"], "1001");
    assert_eq!(cdr["callee"], "1002");
    assert_eq!(cdr["disposition"], "answered");
    assert_eq!(cdr["hangup_side"], "caller");
    assert_eq!(cdr["cause"], "bye");
    assert_eq!(cdr["sip_status"], 200);
    assert!(cdr["answered_at"].as_u64().unwrap() >= cdr["started_at"].as_u64().unwrap());
    assert!(cdr["ended_at"].as_u64().unwrap() >= cdr["answered_at"].as_u64().unwrap());
    assert_clean(&lab, &client).await;
}
