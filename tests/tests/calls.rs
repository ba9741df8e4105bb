//! Calls between extensions through the B2BUA: real `pbx` processes, scripted phones over UDP, RTP
//! counted at each phone, and the CDR and active-call API checked after each scenario.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use pbx_tests::api::assert_no_media_ports;
use pbx_tests::phone::{Answer, Outgoing, Phone, send_rtp_from};
use pbx_tests::{Lab, LabClient, LabOptions};

const SECRET: &str = "Tr7!kq-Vw9zP";
const RTP_EVERY: Duration = Duration::from_millis(20);

async fn lab_with(n: u64, options: LabOptions, extensions: &[&str]) -> (Lab, LabClient) {
    Lab::with_extensions(n, options, extensions, SECRET)
        .await
        .unwrap()
}

/// The final failure status of a dialled call that is expected to fail.
async fn refused(caller: &mut Phone, out: &Outgoing) -> u16 {
    caller
        .outcome(out, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap_err()
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
    panic!(
        "fewer than {n} CDRs on node {i}: {:?}",
        cdrs(client, i).await
    );
}

/// Nothing is left behind: no active-call record on any node and no media port held.
async fn assert_clean(lab: &Lab, client: &LabClient) {
    for _ in 0..100 {
        let ports = client
            .metric(0, "pbx_media_port_pairs_in_use")
            .await
            .unwrap();
        let calls = client.get_json(0, "/api/v1/calls").await.unwrap();
        if ports == 0.0 && calls["count"] == 0 {
            for i in 0..lab.nodes.len() {
                client.sync(i).await.unwrap();
                assert_eq!(
                    client.get_json(i, "/api/v1/calls").await.unwrap()["count"],
                    0
                );
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "left behind: {} port pairs, calls {}",
        client
            .metric(0, "pbx_media_port_pairs_in_use")
            .await
            .unwrap(),
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
    assert!(
        !invite.raw.contains(&alice.sip_addr.to_string()),
        "the caller's address does not leak to the callee"
    );

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
    assert_eq!(
        wait_rtp(&bob, 50).await,
        50,
        "every packet of the caller reaches the callee"
    );
    assert_eq!(
        wait_rtp(&alice, 40).await,
        40,
        "every packet of the callee reaches the caller"
    );
    assert_eq!(alice.rtp_stats.sources.lock().unwrap().len(), 1);
    assert!(
        client
            .metric(0, "pbx_media_packets_relayed_total{kind=\"rtp\"}")
            .await
            .unwrap()
            >= 90.0
    );

    assert_eq!(alice.hang_up(&mut alice_dialog).await.unwrap(), 200);
    let bye = bob
        .expect_request("BYE", Duration::from_secs(5))
        .await
        .unwrap();
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

/// An INVITE without SDP (a delayed offer, as many trunks send): the callee offers in its 200, the
/// caller answers in its ACK, and audio flows both ways through the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_offer_is_answered_in_the_ack_and_audio_flows() {
    let (lab, client) = lab_with(1, LabOptions::default(), &["1001", "1002"]).await;
    let mut alice = phone(&lab, "1001").await;
    let mut bob = phone(&lab, "1002").await;

    let out = alice.dial("1002", Some("")).await.unwrap();
    let (answered, placed) = tokio::join!(
        bob.answer(Answer::Accept, Duration::from_secs(5)),
        alice.outcome(&out, Duration::from_secs(5))
    );
    let (invite, bob_dialog) = answered.unwrap();
    let bob_dialog = bob_dialog.expect("bob's ACK carried the answer");
    let mut alice_dialog = placed.unwrap().expect("the call is answered");
    assert!(invite.body().is_empty(), "no offer reached the callee");
    // Both phones send to the PBX's ports, never to each other.
    assert_eq!(alice_dialog.media.ip(), bob_dialog.media.ip());
    assert_ne!(alice_dialog.media, bob.rtp_addr);
    assert_ne!(bob_dialog.media, alice.rtp_addr);

    let (a, b) = tokio::join!(
        alice.send_rtp(alice_dialog.media, 30, RTP_EVERY),
        bob.send_rtp(bob_dialog.media, 30, RTP_EVERY)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(wait_rtp(&bob, 30).await, 30);
    assert_eq!(wait_rtp(&alice, 30).await, 30);

    assert_eq!(alice.hang_up(&mut alice_dialog).await.unwrap(), 200);
    bob.expect_request("BYE", Duration::from_secs(5))
        .await
        .unwrap();
    let cdrs = wait_cdrs(&client, 0, 1).await;
    assert_eq!(cdrs[0]["disposition"], "answered");
    assert_clean(&lab, &client).await;
}

/// A callee that rings reliably (RFC 3262: `Require: 100rel`) gets its PRACK from the PBX; the caller
/// hears it ring as usual, and the call is answered and ends normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_ringing_reliably_is_pracked_and_the_call_goes_on() {
    let (lab, client) = lab_with(1, LabOptions::default(), &["1001", "1002"]).await;
    let mut alice = phone(&lab, "1001").await;
    let mut bob = phone(&lab, "1002").await;

    let out = alice.dial("1002", None).await.unwrap();
    let (answered, placed) = tokio::join!(
        bob.answer(Answer::Reliable, Duration::from_secs(5)),
        alice.outcome(&out, Duration::from_secs(8))
    );
    let (invite, bob_dialog) = answered.expect("the PBX PRACKed the reliable 180");
    assert!(
        invite
            .header("Supported")
            .unwrap_or_default()
            .contains("100rel")
    );
    let _ = bob_dialog.unwrap();
    let mut alice_dialog = placed.unwrap().expect("the call is answered");
    assert_eq!(alice.hang_up(&mut alice_dialog).await.unwrap(), 200);
    bob.expect_request("BYE", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(wait_cdrs(&client, 0, 1).await[0]["disposition"], "answered");
    assert_clean(&lab, &client).await;
}

/// Dials and lets the callee answer; returns both dialogs.
async fn connect(
    caller: &mut Phone,
    callee: &mut Phone,
    number: &str,
) -> (pbx_tests::phone::Dialog, pbx_tests::phone::Dialog) {
    let out = caller.dial(number, None).await.unwrap();
    let (answered, placed) = tokio::join!(
        callee.answer(Answer::Accept, Duration::from_secs(5)),
        caller.outcome(&out, Duration::from_secs(5))
    );
    (
        placed.unwrap().expect("answered"),
        answered.unwrap().1.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_forks_to_every_device_and_the_first_answer_wins() {
    let (lab, client) = lab_with(1, LabOptions::default(), &["1001", "1002"]).await;
    let mut alice = phone(&lab, "1001").await;
    let mut desk = phone(&lab, "1002").await;
    let mut mobile = phone(&lab, "1002").await;

    let out = alice.dial("1002", None).await.unwrap();
    let (desk_rings, mobile_answers) = tokio::join!(
        desk.answer(Answer::RingOnly, Duration::from_secs(5)),
        mobile.answer(Answer::Accept, Duration::from_secs(5)),
    );
    let (desk_invite, _) = desk_rings.unwrap();
    let (_, mobile_dialog) = mobile_answers.unwrap();
    let mut mobile_dialog = mobile_dialog.unwrap();
    let mut alice_dialog = alice
        .outcome(&out, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();

    // The device that lost is cancelled.
    let cancel = desk
        .expect_request("CANCEL", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(cancel.header("Call-ID"), desk_invite.header("Call-ID"));
    desk.respond(&desk_invite, 487, "Request Terminated", "desk")
        .await
        .unwrap();

    mobile
        .send_rtp(mobile_dialog.media, 10, RTP_EVERY)
        .await
        .unwrap();
    assert_eq!(wait_rtp(&alice, 10).await, 10);
    assert_eq!(desk.rtp_stats.count(), 0);

    // BYE from the callee ends the call on the caller's side.
    assert_eq!(mobile.hang_up(&mut mobile_dialog).await.unwrap(), 200);
    alice
        .expect_request("BYE", Duration::from_secs(5))
        .await
        .unwrap();
    let _ = &mut alice_dialog;
    let cdr = &wait_cdrs(&client, 0, 1).await[0];
    assert_eq!(cdr["disposition"], "answered");
    assert_eq!(cdr["hangup_side"], "callee");
    assert_clean(&lab, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_calls_end_with_the_right_answer_and_cdr() {
    let options = LabOptions {
        calls_extra: "ring_timeout_secs = 2".into(),
        ..LabOptions::default()
    };
    let (lab, client) = lab_with(1, options, &["1001", "1002", "1003"]).await;
    let mut alice = phone(&lab, "1001").await;
    let mut bob = phone(&lab, "1002").await;

    // The caller cancels while it rings.
    let out = alice.dial("1002", None).await.unwrap();
    let (invite, _) = bob
        .answer(Answer::RingOnly, Duration::from_secs(5))
        .await
        .unwrap();
    alice.cancel(&out).await.unwrap();
    assert_eq!(refused(&mut alice, &out).await, 487);
    bob.expect_request("CANCEL", Duration::from_secs(5))
        .await
        .unwrap();
    bob.respond(&invite, 487, "Request Terminated", "b1")
        .await
        .unwrap();
    assert_eq!(
        wait_cdrs(&client, 0, 1).await[0]["disposition"],
        "cancelled"
    );

    // Busy.
    let out = alice.dial("1002", None).await.unwrap();
    bob.answer(Answer::Busy, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(refused(&mut alice, &out).await, 486);

    // No answer within the ring time: 480, and the ringing phone is cancelled.
    let out = alice.dial("1002", None).await.unwrap();
    let (invite, _) = bob
        .answer(Answer::RingOnly, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(refused(&mut alice, &out).await, 480);
    bob.expect_request("CANCEL", Duration::from_secs(5))
        .await
        .unwrap();
    bob.respond(&invite, 487, "Request Terminated", "b2")
        .await
        .unwrap();

    // A callee with no registration: 480.
    let out = alice.dial("1003", None).await.unwrap();
    assert_eq!(refused(&mut alice, &out).await, 480);

    // A number that is no extension: 404, but only once authenticated.
    let out = alice.dial("1999", None).await.unwrap();
    assert_eq!(refused(&mut alice, &out).await, 404);

    let cdrs = wait_cdrs(&client, 0, 5).await;
    // Oldest first. Two attempts can start in the same millisecond (the last two follow each other
    // within one here): their order is then undefined, every other pair must be in call order.
    let expected = ["cancelled", "busy", "no_answer", "unavailable", "not_found"];
    let listed: Vec<(u64, usize)> = cdrs
        .iter()
        .map(|c| {
            let d = c["disposition"].as_str().unwrap();
            let started = c["started_at"].as_u64().unwrap();
            (started, expected.iter().position(|e| *e == d).unwrap())
        })
        .collect();
    for (i, a) in listed.iter().enumerate() {
        for b in &listed[i + 1..] {
            assert!(a.0 <= b.0, "CDRs not oldest first: {cdrs:?}");
            assert!(a.0 == b.0 || a.1 < b.1, "CDRs out of call order: {cdrs:?}");
        }
    }
    let mut dispositions: Vec<usize> = listed.iter().map(|l| l.1).collect();
    dispositions.sort_unstable();
    assert_eq!(dispositions, [0, 1, 2, 3, 4]);
    assert_eq!(cdrs[1]["sip_status"], 486);
    assert_eq!(cdrs[2]["hangup_side"], "pbx");
    assert!(
        cdrs.iter()
            .all(|c| c["answered_at"].is_null() && c["duration_secs"] == 0)
    );

    // Filters: by disposition and by extension, and as CSV.
    let busy = client
        .get_json(0, "/api/v1/cdrs?disposition=busy")
        .await
        .unwrap();
    assert_eq!(busy["cdrs"].as_array().unwrap().len(), 1);
    let to_1003 = client
        .get_json(0, "/api/v1/cdrs?extension=1003")
        .await
        .unwrap();
    assert_eq!(to_1003["cdrs"].as_array().unwrap().len(), 1);
    let csv = client
        .req(0, Method::GET, "/api/v1/cdrs?format=csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 6, "{csv}");
    assert!(csv.lines().nth(2).unwrap().contains(",busy,"));
    assert_clean(&lab, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_and_resume_pass_through_with_media_rewritten() {
    let (lab, client) = lab_with(1, LabOptions::default(), &["1001", "1002"]).await;
    let mut alice = phone(&lab, "1001").await;
    let mut bob = phone(&lab, "1002").await;
    let (mut a, b) = connect(&mut alice, &mut bob, "1002").await;

    // Hold: the callee sees the caller's sendonly offer, on the PBX's address.
    let (answer, reinvite) = tokio::join!(
        alice.reinvite(&mut a, "sendonly"),
        bob.expect_request("INVITE", Duration::from_secs(5))
    );
    let reinvite = reinvite.unwrap();
    assert!(reinvite.body().contains("a=sendonly"), "{}", reinvite.raw);
    assert_eq!(
        reinvite.sdp_media().unwrap(),
        b.media,
        "same PBX port as before"
    );
    assert_eq!(reinvite.header("Call-ID").unwrap(), b.call_id);
    let answer = answer.unwrap();
    assert_eq!(answer.status(), Some(200));
    assert_eq!(answer.sdp_media().unwrap(), a.media);

    // Resume, and audio flows again.
    let (answer, reinvite) = tokio::join!(
        alice.reinvite(&mut a, "sendrecv"),
        bob.expect_request("INVITE", Duration::from_secs(5))
    );
    assert_eq!(answer.unwrap().status(), Some(200));
    assert!(reinvite.unwrap().body().contains("a=sendrecv"));
    // Bob may have heard a packet or two of music on hold in between: count Alice's own.
    alice.send_rtp(a.media, 10, RTP_EVERY).await.unwrap();
    for _ in 0..100 {
        if bob.rtp_stats.stamped() >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        bob.rtp_stats.stamped(),
        10,
        "every packet of Alice's after resume"
    );

    // SIP INFO (DTMF) reaches the other phone in its own dialog, and its answer comes back.
    let dtmf = "Signal=5\r\nDuration=160\r\n";
    let (answer, info) = tokio::join!(
        alice.request(&mut a, "INFO", "application/dtmf-relay", dtmf),
        bob.expect_request("INFO", Duration::from_secs(5))
    );
    let info = info.unwrap();
    assert_eq!(info.body(), dtmf);
    assert_eq!(info.header("Call-ID").unwrap(), b.call_id);
    assert_eq!(answer.unwrap().status(), Some(200));

    assert_eq!(alice.hang_up(&mut a).await.unwrap(), 200);
    bob.expect_request("BYE", Duration::from_secs(5))
        .await
        .unwrap();
    assert_clean(&lab, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_from_a_foreign_source_is_neither_relayed_nor_able_to_take_the_stream() {
    let (lab, client) = lab_with(1, LabOptions::default(), &["1001", "1002"]).await;
    let mut alice = phone(&lab, "1001").await;
    let mut bob = phone(&lab, "1002").await;
    let (mut a, b) = connect(&mut alice, &mut bob, "1002").await;

    alice.send_rtp(a.media, 5, RTP_EVERY).await.unwrap();
    assert_eq!(wait_rtp(&bob, 5).await, 5);
    // An intruder elsewhere (another loopback address) sprays the caller-facing port, which is
    // latched, and the callee-facing one, which is not yet.
    let intruder = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    send_rtp_from(&intruder, a.media, 20, Duration::from_millis(2))
        .await
        .unwrap();
    send_rtp_from(&intruder, b.media, 20, Duration::from_millis(2))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        bob.rtp_stats.count(),
        5,
        "nothing from the intruder reaches the callee"
    );
    assert_eq!(alice.rtp_stats.count(), 0, "nor the caller");
    // The real phones still own their streams.
    alice.send_rtp(a.media, 5, RTP_EVERY).await.unwrap();
    bob.send_rtp(b.media, 5, RTP_EVERY).await.unwrap();
    assert_eq!(wait_rtp(&bob, 10).await, 10);
    assert_eq!(wait_rtp(&alice, 5).await, 5);
    assert!(
        client
            .metric(
                0,
                "pbx_media_packets_dropped_total{reason=\"foreign_source\"}"
            )
            .await
            .unwrap()
            >= 20.0
    );
    assert_eq!(alice.hang_up(&mut a).await.unwrap(), 200);
    assert_clean(&lab, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pbx_hangs_up_calls_that_run_too_long_or_go_silent() {
    let options = LabOptions {
        calls_extra: "max_call_secs = 2".into(),
        ..LabOptions::default()
    };
    let (lab, client) = lab_with(1, options, &["1001", "1002"]).await;
    let mut alice = phone(&lab, "1001").await;
    let mut bob = phone(&lab, "1002").await;
    let (a, _b) = connect(&mut alice, &mut bob, "1002").await;
    let (x, y) = tokio::join!(
        alice.expect_request("BYE", Duration::from_secs(6)),
        bob.expect_request("BYE", Duration::from_secs(6))
    );
    assert_eq!(x.unwrap().header("Call-ID").unwrap(), a.call_id);
    y.unwrap();
    let cdr = &wait_cdrs(&client, 0, 1).await[0];
    assert_eq!(cdr["cause"], "max-duration");
    assert_eq!(cdr["hangup_side"], "pbx");
    assert_clean(&lab, &client).await;
    drop(lab);

    let options = LabOptions {
        media_extra: "media_timeout_secs = 2".into(),
        ..LabOptions::default()
    };
    let (lab, client) = lab_with(1, options, &["1001", "1002"]).await;
    let mut alice = phone(&lab, "1001").await;
    let mut bob = phone(&lab, "1002").await;
    let (a, _b) = connect(&mut alice, &mut bob, "1002").await;
    // Audio for a while, then silence.
    alice.send_rtp(a.media, 50, RTP_EVERY).await.unwrap();
    let (x, y) = tokio::join!(
        alice.expect_request("BYE", Duration::from_secs(8)),
        bob.expect_request("BYE", Duration::from_secs(8))
    );
    x.unwrap();
    y.unwrap();
    let cdr = &wait_cdrs(&client, 0, 1).await[0];
    assert_eq!(cdr["cause"], "media-timeout");
    assert_clean(&lab, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_offers_limits_and_an_exhausted_port_range_are_refused_cleanly() {
    let options = LabOptions {
        // Four port pairs: two calls with one audio stream each.
        media_ports_per_node: 8,
        calls_extra: "max_calls_per_extension = 3".into(),
        ..LabOptions::default()
    };
    let (lab, client) = lab_with(1, options, &["1001", "1002", "1003"]).await;
    let mut alice = phone(&lab, "1001").await;
    let mut bob = phone(&lab, "1002").await;

    for (body, status) in [
        ("this is not sdp", 400),
        (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 pbx.example.com\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
            488,
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n",
            488,
        ),
        (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
            400,
        ),
        // SDES-SRTP keys over plain UDP would be readable by anyone on the path.
        (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0\r\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n",
            488,
        ),
    ] {
        let out = alice.dial("1002", Some(body)).await.unwrap();
        let got = alice.outcome(&out, Duration::from_secs(5)).await.unwrap();
        assert_eq!(got.unwrap_err(), status, "offer {body:?}");
    }
    assert_no_media_ports(&client).await;

    // Two calls fill the range; the third gets 503.
    let (mut c1, _) = connect(&mut alice, &mut bob, "1002").await;
    let (mut c2, _) = connect(&mut alice, &mut bob, "1002").await;
    let out = alice.dial("1002", None).await.unwrap();
    assert_eq!(refused(&mut alice, &out).await, 503);
    assert_eq!(alice.hang_up(&mut c1).await.unwrap(), 200);
    assert_eq!(alice.hang_up(&mut c2).await.unwrap(), 200);
    assert_clean(&lab, &client).await;
    assert_eq!(
        client
            .get_json(0, "/api/v1/cdrs?disposition=failed")
            .await
            .unwrap()["cdrs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_at_its_call_limit_is_busy() {
    let options = LabOptions {
        calls_extra: "max_calls_per_extension = 1".into(),
        ..LabOptions::default()
    };
    let (lab, client) = lab_with(1, options, &["1001", "1002", "1003"]).await;
    let mut alice = phone(&lab, "1001").await;
    let mut bob = phone(&lab, "1002").await;
    let mut carol = phone(&lab, "1003").await;
    let (mut a, _) = connect(&mut alice, &mut bob, "1002").await;
    let out = carol.dial("1002", None).await.unwrap();
    assert_eq!(refused(&mut carol, &out).await, 486);
    assert_eq!(alice.hang_up(&mut a).await.unwrap(), 200);
    assert_clean(&lab, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_restarts_hangs_up_the_calls_it_lost_from_their_records() {
    let (mut lab, client) = lab_with(1, LabOptions::default(), &["1001", "1002"]).await;
    let mut alice = phone(&lab, "1001").await;
    let mut bob = phone(&lab, "1002").await;
    let (a, b) = connect(&mut alice, &mut bob, "1002").await;
    lab.kill(0);
    lab.restart(0).await.unwrap();
    // Both phones are told the call is over, in their own dialogs.
    let (x, y) = tokio::join!(
        alice.expect_request("BYE", Duration::from_secs(10)),
        bob.expect_request("BYE", Duration::from_secs(10))
    );
    assert_eq!(x.unwrap().header("Call-ID").unwrap(), a.call_id);
    assert_eq!(y.unwrap().header("Call-ID").unwrap(), b.call_id);
    let cdr = &wait_cdrs(&client, 0, 1).await[0];
    assert_eq!(cdr["cause"], "node-restart");
    assert_eq!(cdr["disposition"], "answered");
    assert_clean(&lab, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_media_reaches_the_caller_before_the_answer() {
    let (lab, client) = lab_with(1, LabOptions::default(), &["1001", "1002"]).await;
    let mut alice = phone(&lab, "1001").await;
    let mut bob = phone(&lab, "1002").await;
    let out = alice.dial("1002", None).await.unwrap();
    let (invite, _) = bob
        .answer(Answer::Progress, Duration::from_secs(5))
        .await
        .unwrap();
    // An announcement from the callee's side while the call is not answered.
    bob.send_rtp(invite.sdp_media().unwrap(), 10, RTP_EVERY)
        .await
        .unwrap();
    assert_eq!(
        wait_rtp(&alice, 10).await,
        10,
        "early media relayed to the caller"
    );
    bob.respond(&invite, 486, "Busy Here", "b").await.unwrap();
    assert_eq!(refused(&mut alice, &out).await, 486);
    assert_clean(&lab, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_asking_for_privacy_is_anonymous_or_refused_by_policy() {
    let (lab, client) = lab_with(1, LabOptions::default(), &["1001", "1002"]).await;
    let mut alice = phone(&lab, "1001").await;
    let mut bob = phone(&lab, "1002").await;
    alice.invite_headers = "Privacy: id\r\n".into();
    let out = alice.dial("1002", None).await.unwrap();
    let (answered, placed) = tokio::join!(
        bob.answer(Answer::Accept, Duration::from_secs(5)),
        alice.outcome(&out, Duration::from_secs(5))
    );
    let (invite, _) = answered.unwrap();
    let from = invite.header("From").unwrap();
    assert!(from.contains("sip:anonymous@anonymous.invalid"), "{from}");
    assert!(
        !invite.raw.contains("1001"),
        "the caller's number leaks: {}",
        invite.raw
    );
    let mut d = placed.unwrap().unwrap();
    assert_eq!(alice.hang_up(&mut d).await.unwrap(), 200);
    assert_clean(&lab, &client).await;
    drop(lab);

    let options = LabOptions {
        calls_extra: "reject_anonymous = true".into(),
        ..LabOptions::default()
    };
    let (lab, client) = lab_with(1, options, &["1001", "1002"]).await;
    let mut alice = phone(&lab, "1001").await;
    let _bob = phone(&lab, "1002").await;
    alice.invite_headers = "Privacy: id\r\n".into();
    let out = alice.dial("1002", None).await.unwrap();
    assert_eq!(refused(&mut alice, &out).await, 433);
    assert_clean(&lab, &client).await;
}

/// An admin hangs up a call through a node that does not carry it: both phones hear BYE in their own
/// dialogs, the call is gone from every node, and its CDR names the PBX. A call that is not up is
/// not found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_hangs_up_a_call_through_another_node() {
    let (lab, client) = lab_with(3, LabOptions::default(), &["1001", "1002"]).await;
    let mut alice = phone(&lab, "1001").await;
    let mut bob = phone(&lab, "1002").await;
    let (a, b) = connect(&mut alice, &mut bob, "1002").await;

    // The phones are on node 0, which carries the call; the request goes to node 2.
    client.sync(2).await.unwrap();
    let calls = client.get_json(2, "/api/v1/calls").await.unwrap();
    assert_eq!(calls["count"], 1, "{calls}");
    assert_eq!(calls["calls"][0]["node_id"], lab.nodes[0].id);
    let id = calls["calls"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/calls/{id}");
    let (resp, x, y) = tokio::join!(
        client.req(2, Method::DELETE, &path).send(),
        alice.expect_request("BYE", Duration::from_secs(5)),
        bob.expect_request("BYE", Duration::from_secs(5))
    );
    let resp = resp.unwrap();
    let status = resp.status();
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "{}",
        resp.text().await.unwrap()
    );
    assert_eq!(x.unwrap().header("Call-ID").unwrap(), a.call_id);
    assert_eq!(y.unwrap().header("Call-ID").unwrap(), b.call_id);

    // 204: the call is over on the node that answered.
    assert_eq!(
        client.get_json(2, "/api/v1/calls").await.unwrap()["count"],
        0
    );
    let cdrs = wait_cdrs(&client, 2, 1).await;
    let cdr = &cdrs[0];
    assert_eq!(cdr["id"], id.as_str());
    assert_eq!(cdr["disposition"], "answered");
    assert_eq!(cdr["hangup_side"], "pbx");
    assert_eq!(cdr["cause"], "hung-up-by-admin");
    assert_clean(&lab, &client).await;

    // Over, or never up: 404.
    for gone in [id.as_str(), "no-such-call"] {
        let resp = client
            .req(1, Method::DELETE, &format!("/api/v1/calls/{gone}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["message"],
            format!("call {gone} is not in progress"),
            "{body}"
        );
    }
}
