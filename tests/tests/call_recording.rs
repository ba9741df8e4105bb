//! Call recording with real `pbx` processes and scripted phones sending real tones: a call of an
//! extension whose policy is `always` is saved in segments of the audio store, the caller's tone on
//! the left channel and the callee's on the right, on a majority of the nodes; a call of extensions
//! without a policy is not recorded; an extension whose policy is `on_demand` records what lies
//! between two presses of `*1`; a provider's call through an inbound route whose policy is
//! `always` is recorded; and a recording turned on with `*1` goes on, in new segments, after the
//! VIP owner is killed.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use pbx_media::g711::Law;
use pbx_media::rtp::RtpHeader;
use pbx_media::tone::{ToneGenerator, dominant};
use pbx_tests::api::{create, inbound_to_extension, peer_trunk, send};
use pbx_tests::dtmf::press;
use pbx_tests::netns::{self, vip_owner};
use pbx_tests::phone::{Answer, Dialog, Phone};
use pbx_tests::{Lab, LabClient, LabOptions, topology};

const SECRET: &str = "Tr7!kq-Vw9zP";
/// Set in the environment of this test binary when it runs inside the lab's phone namespace.
const INSIDE: &str = "CALL_RECORDING_IN_NETNS";

fn sip(lab: &Lab) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port))
}

async fn phone(lab: &Lab, user: &str) -> Phone {
    let mut p = Phone::new(sip(lab), user, SECRET).await.unwrap();
    assert_eq!(p.register(300).await.unwrap(), 200, "{user} registers");
    p
}

/// Sends `secs` seconds of a `freq` Hz tone in µ-law, 20 ms a packet, from `phone`'s RTP socket.
async fn talk(phone: &Phone, to: SocketAddr, freq: f32, secs: u32) {
    let sock = phone.rtp_socket();
    let mut tone = ToneGenerator::new(freq, 8000, 8000).unwrap();
    let ssrc: u32 = rand_ssrc(freq);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for n in 0..secs * 50 {
        tick.tick().await;
        let mut pcm = [0i16; 160];
        tone.fill(&mut pcm);
        let mut payload = Vec::new();
        Law::Ulaw.encode_into(&pcm, &mut payload);
        let header = RtpHeader {
            marker: n == 0,
            payload_type: 0,
            sequence: n as u16,
            timestamp: n * 160,
            ssrc,
        };
        let mut packet = Vec::new();
        header.write(&payload, &mut packet).unwrap();
        sock.send_to(&packet, to).await.unwrap();
    }
}

fn rand_ssrc(freq: f32) -> u32 {
    0x5eed_0000 ^ freq as u32
}

async fn call(caller: &mut Phone, callee: &mut Phone, number: &str) -> (Dialog, Dialog) {
    let out = caller.dial(number, None).await.unwrap();
    let (answered, placed) = tokio::join!(
        callee.answer(Answer::Accept, Duration::from_secs(5)),
        caller.outcome(&out, Duration::from_secs(5))
    );
    let callee_dialog = answered.unwrap().1.unwrap();
    let caller_dialog = placed.unwrap().expect("the call is answered");
    (caller_dialog, callee_dialog)
}

/// The call id of the `n`th call's CDR (from 1), once node 0 has it.
async fn call_id(client: &LabClient, n: usize) -> String {
    call_id_on(client, 0, n).await
}

async fn call_id_on(client: &LabClient, node: usize, n: usize) -> String {
    for _ in 0..100 {
        let cdrs = client.get_json(node, "/api/v1/cdrs").await.unwrap();
        let mut all: Vec<(u64, String)> = cdrs["cdrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["started_at"].as_u64().unwrap(),
                    c["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        if all.len() >= n {
            all.sort();
            return all[n - 1].1.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} CDRs");
}

/// The recording segments of call `id` on node 0, oldest first, once `n` are listed.
async fn segments(client: &LabClient, id: &str, n: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let files = listed(client, 0, id).await;
        if files.len() >= n || Instant::now() >= deadline {
            return files;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Seconds of stereo audio in `files` (16-bit, 8 kHz, 44-byte headers).
fn seconds_in(files: &[Value]) -> f64 {
    let bytes: u64 = files.iter().map(|f| f["size"].as_u64().unwrap() - 44).sum();
    bytes as f64 / 32_000.0
}

/// The recording segments of call `id` on `node`, oldest first, once they hold at least `secs`
/// seconds and no more are saved for a moment (the last is saved as the call ends).
async fn segments_covering(
    client: &LabClient,
    node: usize,
    id: &str,
    secs: f64,
    within: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let files = listed(client, node, id).await;
        if seconds_in(&files) >= secs || Instant::now() >= deadline {
            tokio::time::sleep(Duration::from_millis(700)).await;
            return listed(client, node, id).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn listed(client: &LabClient, node: usize, id: &str) -> Vec<Value> {
    let listed = client
        .get_json(node, &format!("/api/v1/audio?kind=recording&call_id={id}"))
        .await
        .unwrap();
    let mut files = listed["audio"].as_array().unwrap().clone();
    files.sort_by_key(|f| f["created_at"].as_u64().unwrap());
    files
}

/// Downloads the segments from node `node` and joins their left and right channels.
async fn join(client: &LabClient, node: usize, files: &[Value]) -> (Vec<i16>, Vec<i16>) {
    let (mut left, mut right) = (Vec::new(), Vec::new());
    for f in files {
        let wav = client
            .req(
                node,
                Method::GET,
                &format!("/api/v1/audio/{}/content", f["id"].as_str().unwrap()),
            )
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let (l, r) = channels(&wav);
        left.extend(l);
        right.extend(r);
    }
    (left, right)
}

/// Left and right channels of a stereo 16-bit WAV.
fn channels(wav: &[u8]) -> (Vec<i16>, Vec<i16>) {
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 2, "stereo");
    assert_eq!(
        u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]),
        8000
    );
    let samples: Vec<i16> = wav[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    (
        samples.iter().step_by(2).copied().collect(),
        samples.iter().skip(1).step_by(2).copied().collect(),
    )
}

/// Seconds in which the channel is sounding and `freq` dominates, in 100 ms blocks.
fn seconds_of(channel: &[i16], freq: f32) -> f64 {
    let blocks = channel
        .chunks_exact(800)
        .filter(|b| {
            b.iter().any(|&s| s != 0) && dominant(b, 8000, &[440.0, 660.0, 880.0]) == Some(freq)
        })
        .count();
    blocks as f64 / 10.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_call_holds_each_party_on_its_own_channel_in_saved_segments() {
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 0".into(),
        calls_extra: "recording_segment_secs = 2".into(),
        ..LabOptions::default()
    };
    let (lab, client) = Lab::with_extensions(3, options, &["1001", "1002", "1003"], SECRET)
        .await
        .unwrap();
    let policy = send(
        &lab,
        Method::PUT,
        "/api/v1/extensions/1002/recording",
        json!({"mode": "always"}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(policy["mode"], "always");
    let mut alice = phone(&lab, "1001").await;
    let mut bob = phone(&lab, "1002").await;
    let mut carol = phone(&lab, "1003").await;

    // 1001 calls 1002, whose policy records every call: 5 s of 440 Hz against 660 Hz.
    let (mut a, b) = call(&mut alice, &mut bob, "1002").await;
    tokio::join!(
        talk(&alice, a.media, 440.0, 5),
        talk(&bob, b.media, 660.0, 5)
    );
    assert_eq!(alice.hang_up(&mut a).await.unwrap(), 200);
    let id = call_id(&client, 1).await;
    // Five seconds in two-second segments: three files (the last one short).
    // Two-second segments, the first ending between 1 and 2 s in: three or four files.
    let files = segments_covering(&client, 0, &id, 4.5, Duration::from_secs(15)).await;
    assert!((3..=4).contains(&files.len()), "{files:?}");
    for f in &files {
        assert_eq!(
            f["owner"], "1002",
            "the extension whose policy asked owns it"
        );
        assert!(f["holders"].as_array().unwrap().len() >= 2, "{f}");
        assert!(
            f["retain_until"].as_u64().is_some(),
            "kept for the retention period"
        );
    }
    // The CDR names its segments, oldest first, and the portal's CDR page links them.
    let cdrs = client.get_json(0, "/api/v1/cdrs").await.unwrap();
    let cdr = cdrs["cdrs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.as_str())
        .unwrap()
        .clone();
    let ids: Vec<&str> = files.iter().map(|f| f["id"].as_str().unwrap()).collect();
    let linked: Vec<&str> = cdr["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(linked, ids, "{cdr}");
    let page = client
        .req(0, Method::GET, "/cdrs")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("/api/v1/audio/{}/content", ids[0])),
        "the portal's CDR page links the recording"
    );
    let (left, right) = join(&client, 0, &files).await;
    let total = left.len() as f64 / 8000.0;
    assert!(
        (4.5..=6.5).contains(&total),
        "{total} s recorded of a 5 s call"
    );
    let (caller_440, callee_660) = (seconds_of(&left, 440.0), seconds_of(&right, 660.0));
    assert!(caller_440 >= 4.0, "the caller's tone for {caller_440} s");
    assert!(callee_660 >= 4.0, "the callee's tone for {callee_660} s");
    assert_eq!(
        seconds_of(&left, 660.0),
        0.0,
        "the callee does not leak into the caller's channel"
    );
    assert_eq!(
        seconds_of(&right, 440.0),
        0.0,
        "the caller does not leak into the callee's channel"
    );

    // 1001 calls 1003: neither records, so nothing is saved.
    let (mut a, c) = call(&mut alice, &mut carol, "1003").await;
    tokio::join!(
        talk(&alice, a.media, 440.0, 1),
        talk(&carol, c.media, 880.0, 1)
    );
    assert_eq!(alice.hang_up(&mut a).await.unwrap(), 200);
    let other = call_id(&client, 2).await;
    assert_ne!(other, id);
    assert!(
        segments(&client, &other, 1, Duration::from_secs(3))
            .await
            .is_empty()
    );
    let all = client
        .get_json(0, "/api/v1/audio?kind=recording")
        .await
        .unwrap();
    assert_eq!(all["audio"].as_array().unwrap().len(), files.len());
    let cdrs = client.get_json(0, "/api/v1/cdrs").await.unwrap();
    let unrecorded = cdrs["cdrs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == other.as_str())
        .unwrap()
        .clone();
    assert_eq!(unrecorded["recordings"], json!([]), "{unrecorded}");

    // 1003 records on demand: it calls 1001 and presses *1 two seconds in and again three seconds
    // later; only the part between the presses is recorded.
    send(
        &lab,
        Method::PUT,
        "/api/v1/extensions/1003/recording",
        json!({"mode": "on_demand"}),
        StatusCode::OK,
    )
    .await;
    let (mut c, a) = call(&mut carol, &mut alice, "1001").await;
    let presses = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        press(&carol.rtp_socket(), c.media, "*1").await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        press(&carol.rtp_socket(), c.media, "*1").await.unwrap();
    };
    tokio::join!(
        talk(&carol, c.media, 880.0, 8),
        talk(&alice, a.media, 440.0, 8),
        presses
    );
    assert_eq!(carol.hang_up(&mut c).await.unwrap(), 200);
    let on_demand = call_id(&client, 3).await;
    let files = segments_covering(&client, 0, &on_demand, 2.5, Duration::from_secs(15)).await;
    assert!(!files.is_empty(), "the code started a recording");
    for f in &files {
        assert_eq!(f["owner"], "1003", "who pressed the code owns it");
    }
    let (left, right) = join(&client, 0, &files).await;
    let recorded = left.len() as f64 / 8000.0;
    assert!(
        (2.5..=4.5).contains(&recorded),
        "{recorded} s recorded between presses 3 s apart, of an 8 s call"
    );
    let (caller_880, callee_440) = (seconds_of(&left, 880.0), seconds_of(&right, 440.0));
    assert!(caller_880 >= 2.0, "the caller's tone for {caller_880} s");
    assert!(callee_440 >= 2.0, "the callee's tone for {callee_440} s");

    // A provider's call to a DID whose inbound route records every call: recorded, the files
    // counted against the extension that took it.
    let carrier_ip = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let mut carrier = Phone::bound(carrier_ip.into(), sip(&lab), "5551234", "unused")
        .await
        .unwrap();
    let trunk = peer_trunk("carrier", &carrier_ip.to_string(), carrier.sip_addr.port());
    create(&client, "/api/v1/trunks", trunk).await;
    let route = inbound_to_extension("main", "15550100", "1001");
    create(&client, "/api/v1/routes/inbound", route).await;
    send(
        &lab,
        Method::PUT,
        "/api/v1/routes/inbound/main/recording",
        json!({"mode": "always"}),
        StatusCode::OK,
    )
    .await;
    // Trunks are known by source address once the PBX has re-read their addresses (within a
    // second of a change).
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A provider is not challenged: its INVITE's first final answer is the 200.
    let (placed, answered) = tokio::join!(
        carrier.dial("15550100", None),
        alice.answer(Answer::Accept, Duration::from_secs(5))
    );
    let a = answered.unwrap().1.unwrap();
    let out = placed.unwrap();
    let mut p = carrier
        .outcome(&out, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the provider's call is answered");
    tokio::join!(
        talk(&carrier, p.media, 660.0, 3),
        talk(&alice, a.media, 440.0, 3)
    );
    assert_eq!(carrier.hang_up(&mut p).await.unwrap(), 200);
    let inbound = call_id(&client, 4).await;
    let files = segments_covering(&client, 0, &inbound, 2.5, Duration::from_secs(15)).await;
    let (left, right) = join(&client, 0, &files).await;
    let recorded = left.len() as f64 / 8000.0;
    assert!(
        (2.5..=4.0).contains(&recorded),
        "{recorded} s of a 3 s call"
    );
    assert!(seconds_of(&left, 660.0) >= 2.0, "the provider's caller");
    assert!(seconds_of(&right, 440.0) >= 2.0, "the extension");
    for f in &files {
        assert_eq!(f["owner"], "1001", "{f}");
    }
}

#[test]
fn a_recording_goes_on_in_new_segments_after_the_vip_owner_is_killed() {
    netns::in_namespace_lab(INSIDE, "recording_failover_inside_the_lab");
}

/// The call's length: 12 s of tones from both phones; the owner is killed 5 s in.
const TALK_SECS: u32 = 12;
const KILL_AFTER: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run inside the namespace lab by a_recording_goes_on_in_new_segments_after_the_vip_owner_is_killed"]
async fn recording_failover_inside_the_lab() {
    if !netns::inside(INSIDE) {
        return;
    }
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 0".into(),
        calls_extra: "recording_segment_secs = 2".into(),
        ..LabOptions::default()
    };
    let (mut lab, client, owner) = netns::vip_lab(options, &["1001", "1002"], SECRET).await;
    send(
        &lab,
        Method::PUT,
        "/api/v1/extensions/1002/recording",
        json!({"mode": "on_demand"}),
        StatusCode::OK,
    )
    .await;
    let vip = SocketAddr::new(topology::VIP.into(), topology::SIP_PORT);
    let mut alice = Phone::bound(topology::PHONES_A.into(), vip, "1001", SECRET)
        .await
        .unwrap();
    let mut bob = Phone::bound(topology::PHONES_A.into(), vip, "1002", SECRET)
        .await
        .unwrap();
    assert_eq!(alice.register(300).await.unwrap(), 200);
    assert_eq!(bob.register(300).await.unwrap(), 200);

    // 1002 records on demand: it presses *1 half a second in, and the recording (a replicated
    // state) goes on on the node that carries the call on.
    let (mut a, b) = call(&mut alice, &mut bob, "1002").await;
    let started = Instant::now();
    let press_code = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        press(&bob.rtp_socket(), b.media, "*1").await.unwrap();
    };
    let kill = async {
        tokio::time::sleep(KILL_AFTER).await;
        lab.kill(owner);
        let new_owner = vip_owner(
            &client,
            lab.nodes.len(),
            Some(owner),
            Duration::from_secs(10),
        )
        .await;
        (new_owner, started.elapsed())
    };
    let ((new_owner, killed), (), (), ()) = tokio::join!(
        kill,
        talk(&alice, a.media, 440.0, TALK_SECS),
        talk(&bob, b.media, 660.0, TALK_SECS),
        press_code
    );
    assert_eq!(alice.hang_up(&mut a).await.unwrap(), 200);

    let id = call_id_on(&client, new_owner, 1).await;
    let files = segments_covering(
        &client,
        new_owner,
        &id,
        f64::from(TALK_SECS) - 5.0,
        Duration::from_secs(20),
    )
    .await;
    let (left, right) = join(&client, new_owner, &files).await;
    let recorded = left.len() as f64 / 8000.0;
    let (caller_440, callee_660) = (seconds_of(&left, 440.0), seconds_of(&right, 660.0));
    println!(
        "failover: recording of a {TALK_SECS} s call, owner killed at {:.1} s: {} segments, {recorded:.1} s recorded, caller's tone {caller_440:.1} s, callee's {callee_660:.1} s",
        killed.as_secs_f64(),
        files.len()
    );
    // Lost: the first second (before the code), the segment being filled when the owner died (at
    // most 2 s) and the takeover.
    assert!(
        recorded >= f64::from(TALK_SECS) - 5.0 && recorded <= f64::from(TALK_SECS) + 1.0,
        "{recorded} s recorded\n{}",
        lab.log_tail(new_owner)
    );
    assert!(
        caller_440 >= f64::from(TALK_SECS) - 5.5,
        "caller's tone {caller_440} s"
    );
    assert!(
        callee_660 >= f64::from(TALK_SECS) - 5.5,
        "callee's tone {callee_660} s"
    );
    assert_eq!(seconds_of(&left, 660.0), 0.0);
    assert_eq!(seconds_of(&right, 440.0), 0.0);
    let by_old = files
        .iter()
        .filter(|f| f["holders"][0].as_u64() == Some(lab.nodes[owner].id))
        .count();
    let by_new = files
        .iter()
        .filter(|f| f["holders"][0].as_u64() == Some(lab.nodes[new_owner].id))
        .count();
    assert!(by_old >= 1, "segments saved by the killed owner: {files:?}");
    assert!(by_new >= 2, "segments saved by the new owner: {files:?}");
}
