//! Registered contacts are qualified with OPTIONS: a phone that answers shows as reachable, one that
//! stays silent as unreachable, on every node.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::net::UdpSocket;

use pbx_tests::sip_probe::{SipProbe, register_with_auth};
use pbx_tests::{Lab, LabOptions};

const SECRET: &str = "Tr7!kq-Vw9zP";

/// Answers every OPTIONS that reaches `sock` with a 200, as a phone does.
async fn answer_options(sock: UdpSocket) {
    let mut buf = vec![0u8; 65_536];
    while let Ok((n, from)) = sock.recv_from(&mut buf).await {
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("OPTIONS ") {
            continue;
        }
        let keep: Vec<&str> = text
            .lines()
            .filter(|l| {
                ["via:", "from:", "to:", "call-id:", "cseq:"]
                    .iter()
                    .any(|h| l.to_ascii_lowercase().starts_with(h))
            })
            .collect();
        let reply = format!(
            "SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n",
            keep.join("\r\n")
        );
        let _ = sock.send_to(reply.as_bytes(), from).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_phones_are_reachable_and_silent_ones_are_not() {
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 1".into(),
        ..LabOptions::default()
    };
    let lab = Lab::start_with(3, options).await.unwrap();
    let client = lab.client();
    for n in ["8001", "8002"] {
        assert_eq!(
            client
                .create_extension_with_secret(0, n, SECRET)
                .await
                .unwrap(),
            StatusCode::CREATED
        );
    }
    client.sync(0).await.unwrap();
    let server = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port));

    // 8001's phone registers, then keeps answering OPTIONS on the same socket.
    let alive = SipProbe::new(server).await.unwrap();
    let resp = register_with_auth(
        &alive,
        "8001",
        SECRET,
        &format!("<sip:8001@{}>", alive.local),
        None,
        "q1",
        1,
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
    let responder = tokio::spawn(answer_options(alive.into_socket()));

    // 8002's phone registers and then never answers.
    let silent = SipProbe::new(server).await.unwrap();
    let resp = register_with_auth(
        &silent,
        "8002",
        SECRET,
        &format!("<sip:8002@{}>", silent.local),
        None,
        "q2",
        1,
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = client.registrations(2, "8001").await.unwrap();
        let b = client.registrations(2, "8002").await.unwrap();
        if a["status"] == "reachable" && b["status"] == "unreachable" {
            assert_eq!(a["registrations"][0]["reachable"], true);
            assert_eq!(b["registrations"][0]["reachable"], false);
            break;
        }
        assert!(Instant::now() < deadline, "8001: {a}\n8002: {b}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    responder.abort();
    drop(silent);
}
