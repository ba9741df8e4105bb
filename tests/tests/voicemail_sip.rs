//! Voicemail with real `pbx` processes, a scripted phone sending a real tone, and a real SMTP
//! server (aiosmtpd): 1001 calls 1002, whose phone is not registered, reaches 1002's mailbox, hears
//! the spoken default greeting ("The person at extension 1 0 0 2 is not available…") and the beep,
//! speaks 440 Hz for 4 s and hangs up. The message is in the mailbox, unheard; its WAV holds the
//! tone for about the time spoken; a majority of the nodes hold the same bytes; the mailbox's owner
//! gets it by e-mail with the WAV attached, and 1002's phone, subscribed to its mailbox's
//! `message-summary`, is told a message waits. Then 1002 dials `*97`: the menu asks for the PIN in
//! words, a wrong PIN is told so, the right one hears the count, then the message itself (the
//! 440 Hz tone); `7` deletes it, the menu says goodbye and hangs up, and the mailbox is empty.
//! 1002 dials `*97` again and records its name (`5`, `3`, after the beep 660 Hz for 2 s, `#`): the
//! mailbox's default greeting then plays the name (660 Hz) in place of the number.
//!
//! On a host without espeak-ng the PBX speaks in tones (two beeps for the PIN, the three rising
//! tones for a wrong one, a beep per new message); the test expects whichever the host gives.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::Digest as _;

use pbx_media::g711::Law;
use pbx_media::rtp::{RtpHeader, RtpPacket};
use pbx_media::tone::{ToneGenerator, dominant};
use pbx_tests::api::{send, wait_json};
use pbx_tests::dtmf::press;
use pbx_tests::phone::Phone;
use pbx_tests::sipp::{self, Sipp};
use pbx_tests::smtp::mailbox_smtp;
use pbx_tests::{Lab, LabOptions, free_port};

const SECRET: &str = "Tr7!kq-Vw9zP";
/// What the phones may hear: the message's tone, the name's, the menu's beeps, the invalid-choice
/// tones.
const CANDIDATES: [f32; 9] = [
    440.0, 600.0, 660.0, 800.0, 950.0, 1000.0, 1400.0, 1800.0, 900.0,
];

/// A 20 ms frame as heard.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Frame {
    Quiet,
    /// Mostly one of [`CANDIDATES`].
    Tone(f32),
    /// Loud, and no one tone: speech.
    Other,
}

/// Frames of `freq` in `heard`.
fn frames_of(heard: &[Frame], freq: f32) -> usize {
    heard.iter().filter(|f| **f == Frame::Tone(freq)).count()
}

/// Loud frames that are no tone (words) in `heard`.
fn spoken(heard: &[Frame]) -> usize {
    heard.iter().filter(|f| **f == Frame::Other).count()
}

/// The frames before `freq` first sounds for 100 ms (a word may have a frame or two that looks
/// like a tone).
fn before(heard: &[Frame], freq: f32) -> &[Frame] {
    let first = heard
        .windows(5)
        .position(|w| w.iter().all(|f| *f == Frame::Tone(freq)))
        .unwrap_or(heard.len());
    &heard[..first]
}

/// Whether `freq` sounded for at least `frames` frames and has stopped.
fn sounded(heard: &[Frame], freq: f32, frames: usize) -> bool {
    frames_of(heard, freq) >= frames && heard.iter().rev().take(3).all(|f| *f != Frame::Tone(freq))
}

/// Whether this host can speak (espeak-ng installed): the PBX then speaks its prompts.
fn speaks() -> bool {
    Command::new("espeak-ng")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A media socket of the test's own (the scripted phone's RTP socket has a reader of its own) and
/// the SDP offer naming it: G.711 µ-law and telephone-events.
async fn media() -> (UdpSocket, String) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let sdp = format!(
        "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=call\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
    );
    (sock, sdp)
}

/// Sends `secs` seconds of a `freq` Hz tone in µ-law, 20 ms a packet, from `sock`.
async fn talk(sock: &UdpSocket, to: SocketAddr, freq: f32, secs: u32) {
    let mut tone = ToneGenerator::new(freq, 8000, 8000).unwrap();
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
            ssrc: 0x5eed_01b8,
        };
        let mut packet = Vec::new();
        header.write(&payload, &mut packet).unwrap();
        sock.send_to(&packet, to).await.unwrap();
    }
}

/// Listens on `sock` for `within`: the 20 ms frames heard.
async fn listen(sock: &UdpSocket, within: Duration) -> Vec<Frame> {
    listen_until(sock, within, |_| false).await
}

/// Listens on `sock` until `done` says so of what was heard, or for `within` at most.
async fn listen_until(
    sock: &UdpSocket,
    within: Duration,
    done: impl Fn(&[Frame]) -> bool,
) -> Vec<Frame> {
    let mut heard = Vec::new();
    let mut buf = [0u8; 1500];
    let end = Instant::now() + within;
    while let Ok(Ok(n)) = tokio::time::timeout(
        end.saturating_duration_since(Instant::now()),
        sock.recv(&mut buf),
    )
    .await
    {
        let Ok(p) = RtpPacket::parse(&buf[..n]) else {
            continue;
        };
        let mut pcm = Vec::new();
        Law::Ulaw.decode_into(p.payload, &mut pcm);
        let frame = if !pcm.iter().any(|s| s.unsigned_abs() > 500) {
            Frame::Quiet
        } else {
            dominant(&pcm, 8000, &CANDIDATES).map_or(Frame::Other, Frame::Tone)
        };
        heard.push(frame);
        if done(&heard) {
            break;
        }
    }
    heard
}

/// Seconds of `freq` in mono 8 kHz 16-bit `wav`, by 20 ms frames.
fn seconds_of(wav: &[u8], freq: f32) -> f64 {
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 1, "mono");
    let samples: Vec<i16> = wav[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let frames = samples
        .chunks(160)
        .filter(|b| {
            b.iter().any(|s| s.unsigned_abs() > 500)
                && dominant(b, 8000, &[440.0, 660.0, 1000.0]) == Some(freq)
        })
        .count();
    frames as f64 * 0.02
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_leaves_a_message_that_is_stored_replicated_and_mailed() {
    let dir = tempfile::tempdir().unwrap();
    let smtp_port = free_port(false);
    let maildir = dir.path().join("mail");
    let _smtp = mailbox_smtp(smtp_port, &maildir);
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 0".into(),
        events_extra: format!(
            "smtp_server = \"127.0.0.1:{smtp_port}\"\nmail_from = \"pbx@lab.test\""
        ),
        ..LabOptions::default()
    };
    let (lab, client) = Lab::with_extensions(3, options, &["1001", "1002"], SECRET)
        .await
        .unwrap();
    let mailbox = json!({"email": "bob@lab.test", "pin": "739154", "max_message_secs": 60});
    send(
        &client,
        Method::PUT,
        "/api/v1/extensions/1002/voicemail",
        mailbox,
        StatusCode::CREATED,
    )
    .await;

    // 1002's phone watches its mailbox (it subscribes, it does not register).
    let sip = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port));
    let target = sip.to_string();
    let watch_dir = sipp::subdir(dir.path(), "mwi-1002");
    let csv = sipp::credentials(&watch_dir, "phone.csv", "1002", SECRET);
    let watcher = Sipp::new("mwi-subscribe-wait.xml")
        .to(&target)
        .args(["-s", "1002", "-auth_uri", &format!("1002@{target}")])
        .args(["-inf", &csv, "-m", "1", "-timeout", "40s", "-timeout_error"])
        .on("127.0.0.1")
        .timeout(Duration::from_secs(45));
    let task_dir = watch_dir.clone();
    let watching = tokio::spawn(async move { watcher.run(&task_dir).await });
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1002 has no phone registered: the call goes straight to the mailbox, which answers.
    let mut alice = Phone::new(sip, "1001", SECRET).await.unwrap();
    assert_eq!(alice.register(300).await.unwrap(), 200);
    let (alice_media, offer) = media().await;
    let out = alice.dial("1002", Some(&offer)).await.unwrap();
    let mut dialog = alice
        .outcome(&out, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the mailbox answers");
    // No greeting set: the default one, spoken (or nothing without espeak-ng), then the beep.
    let speaking = speaks();
    let heard = listen_until(&alice_media, Duration::from_secs(15), |h| {
        sounded(h, 1000.0, 10)
    })
    .await;
    assert!(
        frames_of(&heard, 1000.0) >= 10,
        "the beep, 400 ms: {heard:?}"
    );
    let greeting = before(&heard, 1000.0);
    if speaking {
        assert!(
            spoken(greeting) >= 150,
            "\"The person at extension 1 0 0 2 is not available…\": {greeting:?}"
        );
    } else {
        assert!(greeting.len() <= 10, "the beep at once: {heard:?}");
    }
    talk(&alice_media, dialog.media, 440.0, 4).await;
    assert_eq!(alice.hang_up(&mut dialog).await.unwrap(), 200);

    // The message, unheard, from 1001, about 4 s long.
    let listed = wait_json(&client, "/api/v1/extensions/1002/voicemail/messages", |v| {
        v["total"] == 1
    })
    .await;
    let message = &listed["messages"][0];
    assert_eq!(listed["new"], 1, "{listed}");
    assert_eq!(message["caller"], "1001", "{message}");
    assert_eq!(message["heard"], false, "{message}");
    assert_eq!(message["because"], "unavailable", "{message}");
    let ms = message["duration_ms"].as_u64().unwrap();
    assert!((3500..=5500).contains(&ms), "{message}");
    let id = message["audio_id"].as_str().unwrap().to_owned();

    // Its WAV holds the tone for about the time spoken.
    let wav = client
        .req(0, Method::GET, &format!("/api/v1/audio/{id}/content"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let tone = seconds_of(&wav, 440.0);
    assert!(tone >= 3.5, "440 Hz for {tone} s of {ms} ms");

    // A majority of the nodes hold the same bytes.
    let sha = hex::encode(sha2::Sha256::digest(&wav));
    let held = (0..3)
        .filter(|&i| {
            std::fs::read(lab.nodes[i].data_dir.join("audio").join(&id))
                .is_ok_and(|b| hex::encode(sha2::Sha256::digest(&b)) == sha)
        })
        .count();
    assert!(held >= 2, "{held} nodes hold the message");

    // The owner's e-mail, with the WAV attached.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mail = loop {
        let found = std::fs::read_dir(maildir.join("new")).ok().and_then(|new| {
            new.flatten()
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .find(|m| m.contains("To: bob@lab.test"))
        });
        if let Some(m) = found {
            break m;
        }
        assert!(Instant::now() < deadline, "no mail for bob");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(mail.contains("New voicemail for 1002 from"), "{mail}");
    assert!(mail.contains("Content-Type: audio/wav"), "{mail}");
    assert!(mail.contains("voicemail-1002-"), "{mail}");

    // 1002's phone was told: one new message.
    let status = tokio::time::timeout(Duration::from_secs(45), watching)
        .await
        .unwrap()
        .unwrap();
    let logs = sipp::logs(&watch_dir);
    assert!(status.success(), "the MWI watcher\n{logs}");
    assert!(
        logs.contains("Messages-Waiting: yes") && logs.contains("Voice-Message: 1/0"),
        "{logs}"
    );

    // 1002 listens from its phone.
    let mut bob = Phone::new(sip, "1002", SECRET).await.unwrap();
    let (bob_media, offer) = media().await;
    let out = bob.dial("*97", Some(&offer)).await.unwrap();
    let mut menu = bob
        .outcome(&out, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the voicemail menu answers");
    // The PIN is asked for (digits typed over the prompt count).
    let asked = listen(&bob_media, Duration::from_millis(800)).await;
    if speaking {
        assert!(
            spoken(&asked) >= 15,
            "\"Please enter your pin…\": {asked:?}"
        );
    } else {
        assert!(
            frames_of(&asked, 800.0) >= 8,
            "two beeps ask for the PIN: {asked:?}"
        );
    }
    press(&bob_media, menu.media, "111111#").await.unwrap();
    let wrong = listen(&bob_media, Duration::from_millis(1800)).await;
    if speaking {
        assert!(spoken(&wrong) >= 25, "\"Incorrect pin.\": {wrong:?}");
    } else {
        assert!(
            frames_of(&wrong, 950.0) >= 8 && frames_of(&wrong, 1800.0) >= 8,
            "a wrong PIN: the three rising tones: {wrong:?}"
        );
    }
    press(&bob_media, menu.media, "739154#").await.unwrap();
    // The count, then the message, to its end.
    let heard = listen_until(&bob_media, Duration::from_secs(12), |h| {
        sounded(h, 440.0, 150)
    })
    .await;
    let intro = before(&heard, 440.0);
    if speaking {
        assert!(
            spoken(intro) >= 40,
            "\"You have one new message.\": {intro:?}"
        );
    } else {
        assert!(
            frames_of(intro, 600.0) >= 5,
            "one beep: one new message: {heard:?}"
        );
    }
    let message = frames_of(&heard, 440.0) as f64 * 0.02;
    assert!(message >= 3.0, "the message plays: 440 Hz for {message} s");
    // 7 (over the options said after the message): deleted; no more messages: goodbye, and the
    // PBX hangs up.
    press(&bob_media, menu.media, "7").await.unwrap();
    let bye = bob.expect_request("BYE", Duration::from_secs(5)).await;
    assert!(bye.is_ok(), "the menu hangs up after the last message");
    let _ = &mut menu;
    let after = wait_json(&client, "/api/v1/extensions/1002/voicemail/messages", |v| {
        v["total"] == 0
    })
    .await;
    assert_eq!(after["new"], 0, "{after}");
    assert!(lab.log_tail(0).contains("voicemail menu: wrong PIN"));

    // 1002 records its name from the phone: `5` (greetings), `3` (the name), after the beep
    // 660 Hz for 2 s, then `#`.
    let (bob_media, offer) = media().await;
    let out = bob.dial("*97", Some(&offer)).await.unwrap();
    let menu = bob
        .outcome(&out, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the voicemail menu answers");
    press(&bob_media, menu.media, "739154#").await.unwrap();
    // "You have no messages. To change your greetings, press 5." (or, in tones, a pause for it).
    listen(&bob_media, Duration::from_millis(1500)).await;
    press(&bob_media, menu.media, "5").await.unwrap();
    listen(&bob_media, Duration::from_millis(500)).await;
    press(&bob_media, menu.media, "3").await.unwrap();
    let heard = listen_until(&bob_media, Duration::from_secs(10), |h| {
        sounded(h, 1000.0, 15)
    })
    .await;
    if speaking {
        let announced = before(&heard, 1000.0);
        assert!(
            spoken(announced) >= 40,
            "\"Record after the tone…\": {announced:?}"
        );
    }
    assert!(
        frames_of(&heard, 1000.0) >= 15,
        "the record beep: {heard:?}"
    );
    talk(&bob_media, menu.media, 660.0, 2).await;
    press(&bob_media, menu.media, "#").await.unwrap();
    let bye = bob.expect_request("BYE", Duration::from_secs(15)).await;
    assert!(bye.is_ok(), "saved, goodbye, and the menu hangs up");
    let named = wait_json(&client, "/api/v1/extensions/1002/voicemail", |v| {
        v["greeting_name"].is_string()
    })
    .await;
    let name_id = named["greeting_name"].as_str().unwrap().to_owned();
    let wav = client
        .req(0, Method::GET, &format!("/api/v1/audio/{name_id}/content"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let said = seconds_of(&wav, 660.0);
    assert!(said >= 1.5, "the name: 660 Hz for {said} s");

    // The default greeting now plays the name in place of the number.
    let (alice_media, offer) = media().await;
    let out = alice.dial("1002", Some(&offer)).await.unwrap();
    let mut dialog = alice
        .outcome(&out, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the mailbox answers");
    let heard = listen_until(&alice_media, Duration::from_secs(20), |h| {
        sounded(h, 1000.0, 10)
    })
    .await;
    let greeting = before(&heard, 1000.0);
    let name = frames_of(greeting, 660.0) as f64 * 0.02;
    assert!(
        name >= 1.5,
        "the name (660 Hz) before the beep, {name} s: {greeting:?}"
    );
    if speaking {
        assert!(
            spoken(greeting) >= 100,
            "the words around the name: {greeting:?}"
        );
    }
    assert_eq!(alice.hang_up(&mut dialog).await.unwrap(), 200);
}
