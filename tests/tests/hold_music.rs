//! Music on hold with sipp phones through a 3-node cluster: 1001 calls 1002, puts it on hold
//! (re-INVITE `a=sendonly`) and takes it back 3 s later (`a=sendrecv`). 1002's SDP points its RTP at
//! a socket of the test, which plays the phone's speaker: while held it gets the PBX's tune as RTP
//! in A-law (the codec 1002 accepts), one SSRC, consecutive sequence numbers and 20 ms timestamps,
//! loud once decoded; once resumed, nothing more. Then the same with `hold_music = false`: nothing.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pbx_tests::api::{calls_reach, wait_registered};
use pbx_tests::sipp::{self, Sipp, logs};
use pbx_tests::{Lab, LabClient, LabOptions, free_port, free_sip_port};

const SECRET: &str = "Tr7!kq-Vw9zP";
const MUSIC: &str = "pbx_media_hold_music_packets_total";

/// G.711 A-law to linear (ITU-T G.711), to hear what the phone would.
fn alaw(byte: u8) -> i16 {
    let b = byte ^ 0x55;
    let exponent = (b >> 4) & 0x07;
    let mantissa = i32::from(b & 0x0F);
    let magnitude = match exponent {
        0 => (mantissa << 4) + 8,
        e => ((mantissa << 4) + 0x108) << (e - 1),
    };
    if b & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

/// 1001 holds and resumes a call to 1002: the RTP packets 1002's address received, and the music
/// packets node 0 counted.
async fn hold_and_resume(lab: &Lab, client: &LabClient, dir: &Path) -> (Vec<Vec<u8>>, f64) {
    let target = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port)).to_string();
    let (uas_dir, uac_dir) = (sipp::subdir(dir, "1002"), sipp::subdir(dir, "1001"));
    let csv = |d: &Path, n: &str| sipp::credentials(d, "phone.csv", n, SECRET);
    let port = free_sip_port();
    Sipp::new("register-auth.xml")
        .to(&target)
        .args(["-inf", &csv(&uas_dir, "1002"), "-m", "1"])
        .listen("127.0.0.1", port)
        .run_ok(&uas_dir, lab, "1002 did not register")
        .await;
    wait_registered(client, "1002").await;

    let speaker = tokio::net::UdpSocket::bind(("127.0.0.1", free_port(true)))
        .await
        .unwrap();
    let rtp_port = speaker.local_addr().unwrap().port().to_string();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let listening = {
        let heard = Arc::clone(&heard);
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, _)) = speaker.recv_from(&mut buf).await {
                heard.lock().unwrap().push(buf[..n].to_vec());
            }
        })
    };
    let held = Sipp::new("hold-uas.xml")
        .listen("127.0.0.1", port)
        .args(["-m", "1", "-key", "rtp_port", &rtp_port]);
    let task_dir = uas_dir.clone();
    let held = tokio::spawn(async move { held.run(&task_dir).await });
    sipp::wait_bound(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let music = client.metric(0, MUSIC).await.unwrap_or(0.0);
    Sipp::phone_call(&target, &csv(&uac_dir, "1001"), "1002", "hold-uac.xml")
        .run_ok(&uac_dir, lab, "1001's hold and resume failed")
        .await;
    let status = tokio::time::timeout(Duration::from_secs(20), held)
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "1002's side\n{}", logs(&uas_dir));
    assert!(calls_reach(client, 0, Duration::from_secs(10)).await);
    // Anything still in flight arrives; then nothing more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let count = heard.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    listening.abort();
    let packets = std::mem::take(&mut *heard.lock().unwrap());
    assert_eq!(packets.len(), count, "RTP after the call ended");
    let sent = client.metric(0, MUSIC).await.unwrap_or(0.0) - music;
    (packets, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_held_phone_hears_music_until_it_is_taken_back() {
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 0".into(),
        ..LabOptions::default()
    };
    let (lab, client) = Lab::with_extensions(3, options, &["1001", "1002"], SECRET)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (packets, sent) = hold_and_resume(&lab, &client, dir.path()).await;
    // 3 s on hold is about 150 packets of 20 ms; at least a second's worth.
    assert!(
        packets.len() >= 50,
        "{} RTP packets heard, {sent} music packets sent\n{}",
        packets.len(),
        lab.log_tail(0)
    );
    assert_eq!(
        packets.len() as f64,
        sent,
        "every packet heard is the music"
    );
    let field = |p: &[u8], at: usize| u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]]);
    for pair in packets.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!(
            (a.len(), a[0], a[1]),
            (12 + 160, 0x80, 8),
            "RTP v2, A-law, 20 ms"
        );
        let seq = |p: &[u8]| u16::from_be_bytes([p[2], p[3]]);
        assert_eq!(
            seq(b),
            seq(a).wrapping_add(1),
            "consecutive sequence numbers"
        );
        assert_eq!(
            field(b, 4).wrapping_sub(field(a, 4)),
            160,
            "20 ms of timestamp"
        );
        assert_eq!(field(a, 8), field(b, 8), "one SSRC");
    }
    let loud = packets
        .iter()
        .flat_map(|p| p[12..].iter())
        .filter(|&&b| alaw(b).unsigned_abs() > 1000)
        .count();
    assert!(loud > 8000, "{loud} loud samples in what 1002 heard");
    assert!(lab.log_tail(0).contains("music on hold"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_hold_music_the_held_phone_hears_nothing() {
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 0".into(),
        calls_extra: "hold_music = false".into(),
        ..LabOptions::default()
    };
    let (lab, client) = Lab::with_extensions(3, options, &["1001", "1002"], SECRET)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (packets, sent) = hold_and_resume(&lab, &client, dir.path()).await;
    assert!(packets.is_empty(), "{} packets", packets.len());
    assert_eq!(sent, 0.0);
}

/// A mono 8 kHz WAV of `secs` seconds of `freq` Hz.
fn tone_wav(freq: f32, secs: usize) -> Vec<u8> {
    use pbx_media::wav::{Channels, WavWriter};
    let mut pcm = vec![0i16; 8000 * secs];
    pbx_media::tone::ToneGenerator::new(freq, 6000, 8000)
        .unwrap()
        .fill(&mut pcm);
    let mut out = std::io::Cursor::new(Vec::new());
    let mut wav = WavWriter::new(&mut out, Channels::Mono).unwrap();
    wav.write_mono(&pcm).unwrap();
    wav.finish().unwrap();
    out.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_music_is_what_the_held_phone_hears() {
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 0".into(),
        ..LabOptions::default()
    };
    let (lab, client) = Lab::with_extensions(3, options, &["1001", "1002"], SECRET)
        .await
        .unwrap();
    let resp = client
        .req(
            1,
            reqwest::Method::POST,
            "/api/v1/audio?kind=music_on_hold&name=Tone",
        )
        .header("content-type", "audio/wav")
        .body(tone_wav(440.0, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
    // Node 0 (where the phones are) picks the new music up within its refresh.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !lab.log_tail(0).contains("music on hold: uploaded music") {
        assert!(std::time::Instant::now() < deadline, "{}", lab.log_tail(0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let (packets, _) = hold_and_resume(&lab, &client, dir.path()).await;
    assert!(packets.len() >= 50, "{} packets", packets.len());
    let heard: Vec<i16> = packets
        .iter()
        .flat_map(|p| p[12..].iter().map(|&b| alaw(b)))
        .collect();
    let tone = pbx_media::tone::dominant(&heard, 8000, &[261.63, 329.63, 392.0, 440.0, 523.25]);
    assert_eq!(
        tone,
        Some(440.0),
        "the uploaded tone, not the built-in tune"
    );
}
