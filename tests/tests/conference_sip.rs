//! A conference room with real `pbx` processes and three scripted phones sending real tones:
//! 1001 (440 Hz), 1002 (660 Hz) and 1003 (880 Hz) dial room 800, enter its PIN, and talk at
//! once. Each hears the other two and not itself. The API lists the three participants; a
//! moderator mutes 1003 (the others stop hearing 880 Hz) and removes 1002 (its call is ended).
//! In the namespace lab, the VIP owner is killed with the three in the room: the new owner's
//! application agent takes their calls over and rebuilds the mix, 1003 still muted.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::UdpSocket;

use pbx_media::g711::Law;
use pbx_media::rtp::{RtpHeader, RtpPacket};
use pbx_media::tone::{ToneGenerator, goertzel};
use pbx_tests::api::{OnNode, lab_without_pings, poll_node, send, wait_json};
use pbx_tests::dtmf::press;
use pbx_tests::netns::{self, vip_owner};
use pbx_tests::phone::{Dialog, Phone};
use pbx_tests::topology;

const SECRET: &str = "Tr7!kq-Vw9zP";
const PIN: &str = "482915";

/// A media socket of the test's own on `ip` and the SDP offer naming it (µ-law,
/// telephone-events).
async fn media(ip: IpAddr) -> (Arc<UdpSocket>, String) {
    let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let sdp = format!(
        "v=0\r\no=t 1 1 IN IP4 {ip}\r\ns=call\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
    );
    (Arc::new(sock), sdp)
}

/// Sends a `freq` Hz tone for `secs` seconds from `sock` to `to`, while collecting what arrives
/// on `sock`; the audio heard.
async fn talk_and_listen(sock: Arc<UdpSocket>, to: SocketAddr, freq: f32, secs: u32) -> Vec<i16> {
    let sender = {
        let sock = Arc::clone(&sock);
        tokio::spawn(async move {
            let mut tone = ToneGenerator::new(freq, 6000, 8000).unwrap();
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
                    ssrc: freq as u32,
                };
                let mut packet = Vec::new();
                header.write(&payload, &mut packet).unwrap();
                let _ = sock.send_to(&packet, to).await;
            }
        })
    };
    let heard = listen(&sock, Duration::from_secs(u64::from(secs))).await;
    sender.await.unwrap();
    heard
}

/// Everything heard on `sock` for `within`, as 8 kHz samples.
async fn listen(sock: &UdpSocket, within: Duration) -> Vec<i16> {
    let mut heard = Vec::new();
    let mut buf = [0u8; 1500];
    let end = Instant::now() + within;
    while let Ok(Ok(n)) = tokio::time::timeout(
        end.saturating_duration_since(Instant::now()),
        sock.recv(&mut buf),
    )
    .await
    {
        if let Ok(p) = RtpPacket::parse(&buf[..n])
            && p.header.payload_type == 0
        {
            Law::Ulaw.decode_into(p.payload, &mut heard);
        }
    }
    heard
}

/// The share of each frequency's power in what was heard, frame by frame (the last second).
fn powers(heard: &[i16]) -> [f32; 3] {
    let tail = &heard[heard.len().saturating_sub(8000)..];
    let mut out = [0.0f32; 3];
    for frame in tail.chunks_exact(160) {
        for (i, f) in [440.0, 660.0, 880.0].into_iter().enumerate() {
            out[i] += goertzel(frame, f, 8000);
        }
    }
    out
}

fn hears(p: &[f32; 3], f: usize) -> bool {
    let loudest = p.iter().copied().fold(0.0f32, f32::max);
    loudest > 0.0 && p[f] > 0.2 * loudest
}

struct Member {
    phone: Phone,
    dialog: Dialog,
    sock: Arc<UdpSocket>,
}

/// `user`'s phone, on `ip`, calls room 800 at `server` and enters the PIN.
async fn join(server: SocketAddr, ip: IpAddr, user: &str) -> Member {
    let mut phone = Phone::bound(ip, server, user, SECRET).await.unwrap();
    let (sock, offer) = media(ip).await;
    let out = phone.dial("800", Some(&offer)).await.unwrap();
    let dialog = phone
        .outcome(&out, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the room answers");
    // The PIN is asked for (in words, or two beeps on a host without espeak-ng); it is typed over
    // the prompt, which need not be heard out.
    listen(&sock, Duration::from_millis(700)).await;
    press(&sock, dialog.media, &format!("{PIN}#"))
        .await
        .unwrap();
    Member {
        phone,
        dialog,
        sock,
    }
}

async fn participants(client: &pbx_tests::LabClient, n: usize) -> Vec<Value> {
    let all = wait_json(client, "/api/v1/conferences/800/participants", |v| {
        v["participants"].as_array().is_some_and(|a| a.len() == n)
    })
    .await;
    all["participants"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_phones_in_a_room_each_hear_the_other_two_and_not_themselves() {
    let (lab, client) = lab_without_pings(1, &["1001", "1002", "1003"], SECRET).await;
    send(
        &client,
        Method::PUT,
        "/api/v1/conferences/800",
        json!({"name": "Weekly", "pin": PIN, "max_participants": 5}),
        StatusCode::CREATED,
    )
    .await;
    let sip = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port));
    let here = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut a = join(sip, here, "1001").await;
    let b = join(sip, here, "1002").await;
    let c = join(sip, here, "1003").await;
    let listed = participants(&client, 3).await;
    let mut callers: Vec<&str> = listed
        .iter()
        .map(|p| p["caller"].as_str().unwrap())
        .collect();
    callers.sort_unstable();
    assert_eq!(callers, ["1001", "1002", "1003"]);

    let (ha, hb, hc) = tokio::join!(
        talk_and_listen(Arc::clone(&a.sock), a.dialog.media, 440.0, 3),
        talk_and_listen(Arc::clone(&b.sock), b.dialog.media, 660.0, 3),
        talk_and_listen(Arc::clone(&c.sock), c.dialog.media, 880.0, 3),
    );
    let (pa, pb, pc) = (powers(&ha), powers(&hb), powers(&hc));
    assert!(
        hears(&pa, 1) && hears(&pa, 2) && !hears(&pa, 0),
        "1001 (440): {pa:?}"
    );
    assert!(
        hears(&pb, 0) && hears(&pb, 2) && !hears(&pb, 1),
        "1002 (660): {pb:?}"
    );
    assert!(
        hears(&pc, 0) && hears(&pc, 1) && !hears(&pc, 2),
        "1003 (880): {pc:?}"
    );

    // A moderator mutes 1003: 1001 hears 660 Hz only.
    let id_of = |caller: &str| {
        listed.iter().find(|p| p["caller"] == caller).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    send(
        &client,
        Method::PUT,
        &format!("/api/v1/conferences/800/participants/{}", id_of("1003")),
        json!({"muted": true}),
        StatusCode::NO_CONTENT,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ha, _, _) = tokio::join!(
        talk_and_listen(Arc::clone(&a.sock), a.dialog.media, 440.0, 2),
        talk_and_listen(Arc::clone(&b.sock), b.dialog.media, 660.0, 2),
        talk_and_listen(Arc::clone(&c.sock), c.dialog.media, 880.0, 2),
    );
    let pa = powers(&ha);
    assert!(
        hears(&pa, 1) && !hears(&pa, 2),
        "1001 with 1003 muted: {pa:?}"
    );

    // A moderator removes 1002: its call is ended.
    let mut b = b;
    let kicked = client
        .req(
            0,
            Method::DELETE,
            &format!("/api/v1/conferences/800/participants/{}", id_of("1002")),
        )
        .send()
        .await
        .unwrap();
    assert!(kicked.status().is_success(), "{}", kicked.status());
    assert!(
        b.phone
            .expect_request("BYE", Duration::from_secs(5))
            .await
            .is_ok(),
        "the removed participant is hung up"
    );
    participants(&client, 2).await;
    // 1001 hangs up; only 1003 is left.
    assert_eq!(a.phone.hang_up(&mut a.dialog).await.unwrap(), 200);
    participants(&client, 1).await;
    drop(c);
}

/// Set in the environment of this test binary when it runs inside the lab's phone namespace.
const INSIDE: &str = "CONFERENCE_SIP_IN_NETNS";

#[test]
fn a_room_goes_on_after_the_vip_owner_is_killed() {
    netns::in_namespace_lab(INSIDE, "conference_failover_inside_the_lab");
}

/// Whether each of the three members (440, 660, 880 Hz) hears the other two and not itself.
fn each_hears_the_others(heard: [&[i16]; 3]) -> Result<(), String> {
    for (me, h) in heard.into_iter().enumerate() {
        let p = powers(h);
        let others = (0..3).filter(|&o| o != me).all(|o| hears(&p, o));
        if !others || hears(&p, me) {
            return Err(format!("member {me} heard {p:?}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run inside the namespace lab by a_room_goes_on_after_the_vip_owner_is_killed"]
async fn conference_failover_inside_the_lab() {
    if !netns::inside(INSIDE) {
        return;
    }
    let (mut lab, client, owner) =
        netns::vip_lab_without_pings(&["1001", "1002", "1003"], SECRET).await;
    send(
        &lab,
        Method::PUT,
        "/api/v1/conferences/800",
        json!({"name": "Weekly", "pin": PIN, "max_participants": 5}),
        StatusCode::CREATED,
    )
    .await;
    let vip = SocketAddr::new(topology::VIP.into(), topology::SIP_PORT);
    let phones = IpAddr::V4(topology::PHONES_A);
    let mut a = join(vip, phones, "1001").await;
    let b = join(vip, phones, "1002").await;
    let c = join(vip, phones, "1003").await;
    let talk = |freq: f32, m: &Member, secs: u32| {
        talk_and_listen(Arc::clone(&m.sock), m.dialog.media, freq, secs)
    };
    let (ha, hb, hc) = tokio::join!(talk(440.0, &a, 2), talk(660.0, &b, 2), talk(880.0, &c, 2));
    each_hears_the_others([&ha, &hb, &hc]).expect("before the failover");

    // A moderator mutes 1003 before the failover: still muted after it.
    let listed = poll_node(
        &client,
        owner,
        "/api/v1/conferences/800/participants",
        Duration::from_secs(5),
        |v| v["participants"].as_array().is_some_and(|p| p.len() == 3),
    )
    .await;
    let muted_id = listed["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["caller"] == "1003")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    send(
        &lab,
        Method::PUT,
        &format!("/api/v1/conferences/800/participants/{muted_id}"),
        json!({"muted": true}),
        StatusCode::NO_CONTENT,
    )
    .await;

    // The owner dies while all three talk; the new owner's agent rebuilds the room.
    let started = Instant::now();
    lab.kill(owner);
    let new_owner = vip_owner(
        &client,
        lab.nodes.len(),
        Some(owner),
        Duration::from_secs(10),
    )
    .await;
    let took_over = started.elapsed();
    let listed = poll_node(
        &client,
        new_owner,
        "/api/v1/conferences/800/participants",
        Duration::from_secs(10),
        |v| {
            v["participants"].as_array().is_some_and(|p| {
                p.len() == 3 && p.iter().all(|m| m["node_id"] == lab.nodes[new_owner].id)
            })
        },
    )
    .await;
    let rebuilt = started.elapsed();
    let members = listed["participants"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{listed}\n{}", lab.log_tail(new_owner));
    let (ha, hb, hc) = tokio::join!(talk(440.0, &a, 3), talk(660.0, &b, 3), talk(880.0, &c, 3));
    let (pa, pb) = (powers(&ha), powers(&hb));
    println!(
        "failover: VIP on node {new_owner} after {:.2} s, room rebuilt (3 members on it) after {:.2} s; 1001 hears {pa:?}, 1002 hears {pb:?}",
        took_over.as_secs_f64(),
        rebuilt.as_secs_f64()
    );
    assert!(
        hears(&pa, 1) && !hears(&pa, 2) && !hears(&pa, 0),
        "1001 after the failover, 1003 still muted: {pa:?}\n{}",
        lab.log_tail(new_owner)
    );
    assert!(hears(&pb, 0) && !hears(&pb, 2), "1002: {pb:?}");
    assert!(
        !hears(&powers(&hc), 2),
        "1003 does not hear itself: {:?}",
        powers(&hc)
    );

    // Unmuted on the new owner: everyone hears everyone else again.
    send(
        &OnNode(&client, new_owner),
        Method::PUT,
        &format!("/api/v1/conferences/800/participants/{muted_id}"),
        json!({"muted": false}),
        StatusCode::NO_CONTENT,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ha, hb, hc) = tokio::join!(talk(440.0, &a, 2), talk(660.0, &b, 2), talk(880.0, &c, 2));
    each_hears_the_others([&ha, &hb, &hc]).expect("after the failover");

    // 1001 hangs up through the new owner; the room keeps the other two.
    assert_eq!(a.phone.hang_up(&mut a.dialog).await.unwrap(), 200);
    poll_node(
        &client,
        new_owner,
        "/api/v1/conferences/800/participants",
        Duration::from_secs(5),
        |v| v["participants"].as_array().is_some_and(|p| p.len() == 2),
    )
    .await;
    drop((b, c));
}
