//! An auto attendant answering a call, with sipp phones: 1001 dials menu 700, is answered by the
//! PBX itself, presses 2 as RFC 4733 telephone-events in its media, and reaches extension 1002's
//! phone, which answers; the two talk through the relay until 1001 hangs up. In the namespace lab,
//! the VIP owner is killed while a caller listens to the menu: the new owner's agent takes the
//! call over and plays the menu again, and pressing 2 still reaches 1002.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use pbx_media::g711::Law;
use pbx_media::rtp::RtpPacket;
use pbx_tests::api::{lab_without_pings, poll_node, send, wait_item, wait_registered};
use pbx_tests::dtmf::press;
use pbx_tests::netns::{self, vip_owner};
use pbx_tests::phone::{Answer, Phone};
use pbx_tests::sipp::{self, Sipp, logs, subdir};
use pbx_tests::{free_sip_port, topology};
use tokio::net::UdpSocket;

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

/// Set in the environment of this test binary when it runs inside the lab's phone namespace.
const INSIDE: &str = "IVR_SIP_IN_NETNS";

#[test]
fn a_caller_in_the_menu_hears_it_again_after_the_vip_owner_is_killed() {
    netns::in_namespace_lab(INSIDE, "ivr_failover_inside_the_lab");
}

/// How many 20 ms frames that are not silence arrive on `sock` within `within`.
async fn sounding_frames(sock: &UdpSocket, within: Duration) -> usize {
    let mut frames = 0;
    let mut buf = [0u8; 1500];
    let end = Instant::now() + within;
    while let Ok(Ok(n)) = tokio::time::timeout(
        end.saturating_duration_since(Instant::now()),
        sock.recv(&mut buf),
    )
    .await
    {
        let mut pcm = Vec::new();
        if let Ok(p) = RtpPacket::parse(&buf[..n])
            && p.header.payload_type == 0
        {
            Law::Ulaw.decode_into(p.payload, &mut pcm);
        }
        if pcm.iter().any(|s| s.unsigned_abs() > 500) {
            frames += 1;
        }
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run inside the namespace lab by a_caller_in_the_menu_hears_it_again_after_the_vip_owner_is_killed"]
async fn ivr_failover_inside_the_lab() {
    if !netns::inside(INSIDE) {
        return;
    }
    let (mut lab, client, owner) = netns::vip_lab_without_pings(&["1001", "1002"], SECRET).await;
    let menu = json!({
        "name": "Main menu",
        "options": [{"digit": "2", "destination": {"type": "extension", "target": "1002"}}],
        "timeout_secs": 10,
        "attempts": 3
    });
    send(
        &lab,
        Method::PUT,
        "/api/v1/ivrs/700",
        menu,
        StatusCode::CREATED,
    )
    .await;
    let vip = SocketAddr::new(topology::VIP.into(), topology::SIP_PORT);
    let phones = IpAddr::V4(topology::PHONES_A);
    let mut bob = Phone::bound(phones, vip, "1002", SECRET).await.unwrap();
    assert_eq!(bob.register(300).await.unwrap(), 200);
    let mut alice = Phone::bound(phones, vip, "1001", SECRET).await.unwrap();
    // 1001 listens on a socket of the test's own (the phone's reads its own in the background).
    let sock = UdpSocket::bind(SocketAddr::new(phones, 0)).await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let offer = format!(
        "v=0\r\no=t 1 1 IN IP4 {phones}\r\ns=call\r\nc=IN IP4 {phones}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
    );
    let out = alice.dial("700", Some(&offer)).await.unwrap();
    let dialog = alice
        .outcome(&out, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the menu answers");
    assert!(
        sounding_frames(&sock, Duration::from_millis(1500)).await > 10,
        "the greeting plays"
    );

    // The owner dies while the caller listens to the menu.
    lab.kill(owner);
    let new_owner = vip_owner(
        &client,
        lab.nodes.len(),
        Some(owner),
        Duration::from_secs(10),
    )
    .await;
    // The new owner's agent has the call: the menu starts again, the call stays up.
    let again = sounding_frames(&sock, Duration::from_secs(4)).await;
    assert!(
        again > 10,
        "the menu plays again after the failover ({again} frames)\n{}",
        lab.log_tail(new_owner)
    );
    press(&sock, dialog.media, "2").await.unwrap();
    // The choice is carried out: 1002's phone is called and answers; 1001 is re-INVITEd to it.
    let (answered, reinvited) = tokio::join!(
        bob.answer(Answer::Accept, Duration::from_secs(10)),
        alice.expect_request("INVITE", Duration::from_secs(10))
    );
    assert!(
        answered.is_ok_and(|(_, d)| d.is_some()),
        "1002 takes the call handed on\n{}",
        lab.log_tail(new_owner)
    );
    assert!(reinvited.is_ok(), "1001 is connected to 1002");
    let cdr = poll_node(
        &client,
        new_owner,
        "/api/v1/calls",
        Duration::from_secs(5),
        |v| v.to_string().contains("1002"),
    )
    .await;
    assert!(cdr.to_string().contains("1002"), "{cdr}");
}
