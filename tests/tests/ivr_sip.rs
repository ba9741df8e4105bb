//! An auto attendant answering a call, with sipp phones: 1001 dials menu 700, is answered by the
//! PBX itself, presses 2 as RFC 4733 telephone-events in its media, and reaches extension 1002's
//! phone, which answers; the two talk through the relay until 1001 hangs up.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use pbx_tests::api::{lab_without_pings, send, wait_item, wait_registered};
use pbx_tests::free_sip_port;
use pbx_tests::sipp::{self, Sipp, logs, subdir};

const SECRET: &str = "Tr7!kq-Vw9zP";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_pressing_2_in_the_menu_reaches_extension_1002() {
    let (lab, client) = lab_without_pings(1, &["1001", "1002"], SECRET).await;
    let target = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port)).to_string();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    let menu = json!({
        "name": "Main menu",
        "options": [
            {"digit": "1", "destination": {"type": "extension", "target": "1001"}},
            {"digit": "2", "destination": {"type": "extension", "target": "1002"}}
        ],
        "timeout_secs": 10,
        "attempts": 2
    });
    send(
        &client,
        Method::PUT,
        "/api/v1/ivrs/700",
        menu,
        StatusCode::CREATED,
    )
    .await;

    // 1002's phone registers, then waits for the call the menu hands on (without an offer: it
    // answers with its own, as a transfer's target does).
    let port = free_sip_port();
    let csv_1002 = sipp::credentials(dir, "1002.csv", "1002", SECRET);
    Sipp::new("register-auth.xml")
        .to(&target)
        .args(["-inf", &csv_1002, "-m", "1"])
        .listen("127.0.0.1", port)
        .timeout(Duration::from_secs(15))
        .run_ok(&subdir(dir, "register-1002"), &lab, "1002 did not register")
        .await;
    wait_registered(&client, "1002").await;
    let phone_dir = subdir(dir, "phone-1002");
    let phone = Sipp::new("transfer-uas-target.xml")
        .listen("127.0.0.1", port)
        .args(["-m", "1"])
        .timeout(Duration::from_secs(40));
    let task_dir = phone_dir.clone();
    let phone = tokio::spawn(async move { phone.run(&task_dir).await });
    sipp::wait_bound(SocketAddr::from(([127, 0, 0, 1], port))).await;

    let caller_dir = subdir(dir, "caller-1001");
    let csv_1001 = sipp::credentials(dir, "1001.csv", "1001", SECRET);
    let status = Sipp::phone_call(&target, &csv_1001, "700", "ivr-uac-dtmf.xml")
        .timeout(Duration::from_secs(40))
        .run(&caller_dir)
        .await;
    assert!(
        status.success(),
        "the caller's scenario failed\n{}\n{}\n{}",
        logs(&caller_dir),
        logs(&phone_dir),
        lab.log_tail(0)
    );
    let status = tokio::time::timeout(Duration::from_secs(30), phone)
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "1002's phone did not take the call\n{}",
        logs(&phone_dir)
    );
    let log = lab.log_tail(0);
    assert!(log.contains("auto attendant answered"), "{log}");
    assert!(log.contains("handing the call on"), "{log}");

    // The CDR: 1001's call to the menu's number, answered (by the menu), lasting through the
    // talk with 1002 until 1001 hung up.
    let cdr = wait_item(&client, "/api/v1/cdrs", "cdrs", |c| c["caller"] == "1001").await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(cdr["callee"], "700", "{cdr}");
    assert!(cdr["duration_secs"].as_u64().unwrap() >= 8, "{cdr}");
    assert_eq!(cdr["hangup_side"], "caller", "{cdr}");
}
