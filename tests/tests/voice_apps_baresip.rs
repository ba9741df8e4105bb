//! The voice applications with real softphones (baresip), each playing a sine tone as its
//! microphone and recording what it decodes:
//!
//! - voicemail: 1001 (440 Hz) calls 1002, whose phone rings and is not answered; the mailbox
//!   greets, beeps, and 1001 speaks for 6 s then hangs up. The message, fetched through the API,
//!   holds 440 Hz for about the time spoken; a majority of the nodes hold the same bytes; its
//!   owner gets it by e-mail with the WAV attached, and 1002's phone, subscribed to its mailbox
//!   (baresip's `mwi` module), is told a message waits;
//! - a conference room with a PIN, which the phones type as RFC 4733 telephone-events (baresip's
//!   `sndcode` command, through its TCP control interface): 1001 (440 Hz), 1002 (660 Hz) and 1003
//!   (880 Hz) each hear the other two and not themselves;
//! - call recording: 1001 (440 Hz, recording policy `always`) calls 1002 (660 Hz); the recording the
//!   CDR names holds both tones.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest as _;

use pbx_tests::api::{poll, send, wait_first_cdr, wait_registered};
use pbx_tests::baresip::{Baresip, control};
use pbx_tests::smtp::{mailbox_smtp, wait_mail};
use pbx_tests::wav::{self, Pcm};
use pbx_tests::{Lab, LabClient, LabOptions, free_port, free_sip_port};

const SECRET: &str = "Tr7!kq-Vw9zP";
/// The share of a frame's energy at which a tone counts as heard: about 1 for a tone alone, 0.5
/// for each of two equal ones.
const HEARD: f32 = 0.2;

/// A phone that the test drives through baresip's TCP control interface, and that watches its
/// mailbox when its account says `;mwi=yes`.
///
/// Only such a phone loads baresip's `mwi` module: in baresip 1.0 that module subscribes for every
/// registered account whatever it says, and can fall into re-subscribing forever (one conference
/// phone of a CI run sent 18,430 SUBSCRIBEs without its main loop ever reading an answer or a
/// `ctrl_tcp` command).
struct Controlled {
    phone: Baresip,
    ctrl: u16,
}

impl Controlled {
    /// Extension `user`'s baresip, registering at 127.0.0.1:`pbx`, playing `hz`, quitting after
    /// `quit_after` seconds; `extra` ends its account line.
    fn start(user: &str, pbx: u16, extra: &str, hz: u32, quit_after: u32) -> Self {
        let ctrl = free_port(false);
        let mwi = if extra.contains("mwi=yes") {
            "module mwi.so\n"
        } else {
            ""
        };
        let phone = Baresip::start(
            &format!("127.0.0.1:{}", free_sip_port()),
            &format!("{mwi}module ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{ctrl}\n"),
            &format!(
                "<sip:{user}@127.0.0.1:{pbx};transport=udp>;auth_pass={SECRET};regint=600{extra}"
            ),
            hz,
            quit_after,
            &[],
        );
        Self { phone, ctrl }
    }

    /// Runs menu command `command` with `params`, asserting baresip took it.
    async fn command(&self, command: &str, params: &str) {
        let answer = control(self.ctrl, command, params).await;
        assert!(
            answer.contains("\"ok\":true"),
            "{command} {params}: {answer}\n{}",
            self.phone.log()
        );
    }

    /// Dials `number` and waits until the call is answered.
    async fn dial(&self, number: &str) {
        self.command("dial", number).await;
        assert!(
            self.phone
                .logged("Call established", Duration::from_secs(20))
                .await,
            "{number} did not answer:\n{}",
            self.phone.log()
        );
    }

    /// Presses `keys` in the call, each an RFC 4733 event of its own (baresip loses all but the
    /// first of several digits given at once).
    async fn press(&self, keys: &str) {
        for key in keys.chars() {
            self.command("sndcode", &key.to_string()).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// What `phone` decoded so far (all its recordings, one after the other), as 16-bit PCM.
fn heard(phone: &Baresip) -> Pcm {
    let mut files = phone.recordings();
    files.sort();
    let mut all: Option<Pcm> = None;
    for f in files {
        let Some(pcm) = std::fs::read(&f).ok().and_then(|b| wav::read(&b)) else {
            continue;
        };
        match &mut all {
            Some(a) => a.channels[0].extend(&pcm.channels[0]),
            None => all = Some(pcm),
        }
    }
    all.unwrap_or(Pcm {
        rate: 8000,
        channels: vec![Vec::new()],
    })
}

/// Whether `phone` has heard `freq` alone for `secs` seconds in a row (words may hold a frame or
/// two that look like it), waiting up to `within`.
async fn hears_tone(phone: &Baresip, freq: f32, secs: f64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let (mut run, mut longest) = (0usize, 0usize);
        for s in heard(phone).shares(0, &[freq]) {
            run = if s[0] >= 0.5 { run + 1 } else { 0 };
            longest = longest.max(run);
        }
        if longest as f64 * 0.02 >= secs {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The WAV of audio file `id`, through node 0's API.
async fn audio(client: &LabClient, id: &str) -> Vec<u8> {
    let resp = client
        .req(0, Method::GET, &format!("/api/v1/audio/{id}/content"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "audio {id}");
    resp.bytes().await.unwrap().to_vec()
}

/// How many of the lab's nodes hold audio file `id` with the SHA-256 `sha`.
fn holders(lab: &Lab, id: &str, sha: &[u8]) -> usize {
    lab.nodes
        .iter()
        .filter(|n| {
            std::fs::read(n.data_dir.join("audio").join(id))
                .is_ok_and(|b| sha2::Sha256::digest(&b).as_slice() == sha)
        })
        .count()
}

/// The file of content type `content_type` attached to the e-mail `mail` (base64), decoded.
fn attachment(mail: &str, content_type: &str) -> Option<Vec<u8>> {
    let mail = mail.replace("\r\n", "\n");
    let part = &mail[mail.find(&format!("Content-Type: {content_type}"))?..];
    // The part's headers end at the first empty line; its body at the next boundary.
    let body = &part[part.find("\n\n")? + 2..];
    let body = &body[..body.find("\n--").unwrap_or(body.len())];
    let clean: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baresip_caller_leaves_a_message_that_is_stored_replicated_mailed_and_signalled() {
    let dir = tempfile::tempdir().unwrap();
    let smtp_port = free_port(false);
    let maildir = dir.path().join("mail");
    let _smtp = mailbox_smtp(smtp_port, &maildir);
    let options = LabOptions {
        // Raft's 50 ms heartbeats miss on a loaded two-core machine, and a leader that flaps
        // fails the API's linearizable reads (503): this test is about voicemail, not failover.
        cluster_extra: "heartbeat_ms = 200\nelection_min_ms = 1000\nelection_max_ms = 1500".into(),
        events_extra: format!(
            "smtp_server = \"127.0.0.1:{smtp_port}\"\nmail_from = \"pbx@lab.test\""
        ),
        ..LabOptions::default()
    };
    let (lab, client) = Lab::with_extensions(3, options, &["1001", "1002"], SECRET)
        .await
        .unwrap();
    let pbx = lab.nodes[0].sip_port;
    // 1002's mailbox takes the calls its phone leaves ringing for 5 s.
    let mailbox = json!({"email": "bob@lab.test", "pin": "739154", "ring_secs": 5});
    send(
        &client,
        Method::PUT,
        "/api/v1/extensions/1002/voicemail",
        mailbox,
        StatusCode::CREATED,
    )
    .await;

    // 1002's phone watches its mailbox (RFC 3842) and answers nothing. Each baresip is started
    // once the one before has bound its ports (it registered), so that no two pick the same.
    let bob = Controlled::start("1002", pbx, ";mwi=yes", 300, 120).phone;
    wait_registered(&client, "1002").await;
    assert!(
        bob.logged("Messages-Waiting: no", Duration::from_secs(15))
            .await,
        "1002's phone is told its mailbox is empty:\n{}",
        bob.log()
    );
    let alice = Controlled::start("1001", pbx, "", 440, 120);
    wait_registered(&client, "1001").await;

    // 1001 calls 1002, whose phone rings unanswered; the mailbox answers, greets, and beeps.
    alice.dial("1002").await;
    assert!(
        bob.logged("Incoming call from", Duration::from_secs(10))
            .await,
        "1002's phone did not ring:\n{}",
        bob.log()
    );
    assert!(
        hears_tone(&alice.phone, 1000.0, 0.3, Duration::from_secs(30)).await,
        "1001 never heard the beep:\n{}",
        lab.log_tail(0)
    );
    // 1001 speaks (its 440 Hz tone) for 6 s, then hangs up.
    tokio::time::sleep(Duration::from_secs(6)).await;
    alice.command("hangup", "").await;

    // The message, unheard, from 1001, left because nobody answered.
    let one = |v: &Value| v["total"] == 1;
    let path = "/api/v1/extensions/1002/voicemail/messages";
    let listed = poll(&client, path, Duration::from_secs(20), one).await;
    assert!(
        one(&listed),
        "no message: {listed}\n{}\n{}",
        alice.phone.log(),
        lab.log_tail(0)
    );
    let message = &listed["messages"][0];
    assert_eq!(message["caller"], "1001", "{message}");
    assert_eq!(message["heard"], false, "{message}");
    assert_eq!(message["because"], "no_answer", "{message}");
    let id = message["audio_id"].as_str().unwrap().to_owned();

    // Its WAV holds 1001's tone for about the 6 s it spoke.
    let wav = audio(&client, &id).await;
    let pcm = wav::read(&wav).expect("the message is a 16-bit PCM WAV");
    let spoken = pcm.seconds_of(0, 440.0, 0.5);
    assert!(
        spoken >= 4.5,
        "440 Hz for {spoken} s of the 6 s spoken: {message}"
    );

    // A majority of the nodes hold the same bytes.
    let sha = sha2::Sha256::digest(&wav);
    let deadline = Instant::now() + Duration::from_secs(15);
    while holders(&lab, &id, &sha) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let held = holders(&lab, &id, &sha);
    assert!(held >= 2, "{held} nodes hold the message");

    // The owner's e-mail, with the message attached.
    let mail = wait_mail(&maildir, "To: bob@lab.test", Duration::from_secs(20))
        .await
        .expect("a mail for bob");
    assert!(mail.contains("New voicemail for 1002 from"), "{mail}");
    let attached = attachment(&mail, "audio/wav").expect("a WAV attached");
    assert!(
        sha2::Sha256::digest(&attached) == sha,
        "the attached WAV ({} bytes) is the message ({} bytes)",
        attached.len(),
        wav.len()
    );

    // 1002's phone is told: a message waits.
    assert!(
        bob.logged("Messages-Waiting: yes", Duration::from_secs(20))
            .await,
        "1002's phone was not told of the message:\n{}",
        bob.log()
    );
    assert!(bob.log().contains("Voice-Message: 1/0"), "{}", bob.log());
}

/// A phone in the room: its tone and the phone.
struct Member {
    hz: f32,
    phone: Controlled,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_baresip_phones_in_a_room_each_hear_the_other_two_and_not_themselves() {
    const PIN: &str = "482915";
    let (lab, client) =
        Lab::with_extensions(1, LabOptions::default(), &["1001", "1002", "1003"], SECRET)
            .await
            .unwrap();
    let pbx = lab.nodes[0].sip_port;
    send(
        &client,
        Method::PUT,
        "/api/v1/conferences/800",
        json!({"name": "Weekly", "pin": PIN, "max_participants": 5}),
        StatusCode::CREATED,
    )
    .await;

    // Each phone registers, calls the room and types the PIN over its prompt.
    let mut members = Vec::new();
    for (user, hz) in [("1001", 440), ("1002", 660), ("1003", 880)] {
        let phone = Controlled::start(user, pbx, "", hz, 120);
        wait_registered(&client, user).await;
        phone.dial("800").await;
        phone.press(&format!("{PIN}#")).await;
        members.push(Member {
            hz: hz as f32,
            phone,
        });
    }
    let in_room = |v: &Value| v["participants"].as_array().is_some_and(|a| a.len() == 3);
    let listed = poll(
        &client,
        "/api/v1/conferences/800/participants",
        Duration::from_secs(15),
        in_room,
    )
    .await;
    assert!(
        in_room(&listed),
        "the three are not in the room: {listed}\n{}",
        lab.log_tail(0)
    );

    // They talk at once for a while, then hang up.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for m in &members {
        m.phone.command("hangup", "").await;
    }
    for m in &members {
        assert!(
            m.phone
                .phone
                .logged("terminated", Duration::from_secs(10))
                .await,
            "{}",
            m.phone.phone.log()
        );
    }

    // Each heard the other two at once, and not itself.
    let tones: Vec<f32> = members.iter().map(|m| m.hz).collect();
    for (i, m) in members.iter().enumerate() {
        let pcm = heard(&m.phone.phone);
        let shares = pcm.shares(0, &tones);
        let both = shares
            .iter()
            .filter(|s| (0..3).filter(|&j| j != i).all(|j| s[j] >= HEARD))
            .count() as f64
            * 0.02;
        let own = shares.iter().filter(|s| s[i] >= HEARD).count() as f64 * 0.02;
        assert!(
            both >= 3.0,
            "the {} Hz phone heard the other two together for {both} s, of {} s of sound in {:?} \
             (each at least half the sound: {:?} s)\n{}\n{}",
            m.hz,
            pcm.sounding_seconds(0),
            m.phone.phone.recordings(),
            tones
                .iter()
                .map(|&f| pcm.seconds_of(0, f, 0.5))
                .collect::<Vec<_>>(),
            m.phone.phone.log(),
            lab.log_tail(0)
        );
        assert!(
            own <= 0.5,
            "the {} Hz phone heard itself for {own} s (the others for {both} s)",
            m.hz
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_call_between_two_baresip_phones_holds_both_tones() {
    let (lab, client) = Lab::with_extensions(1, LabOptions::default(), &["1001", "1002"], SECRET)
        .await
        .unwrap();
    let pbx = lab.nodes[0].sip_port;
    let policy = send(
        &client,
        Method::PUT,
        "/api/v1/extensions/1001/recording",
        json!({"mode": "always"}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(policy["mode"], "always");

    // 1002 answers at once; 1001 calls it and hangs up as it quits, after 12 s.
    let mut bob = Baresip::extension("1002", SECRET, pbx, ";answermode=auto", 660, 60, &[]);
    wait_registered(&client, "1002").await;
    let mut alice = Baresip::extension("1001", SECRET, pbx, "", 440, 12, &["/dial 1002"]);
    assert!(
        alice.quits_within(Duration::from_secs(30)).await,
        "1001 did not quit"
    );
    let cdr = wait_first_cdr(&client, 0).await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    bob.stop();

    // The CDR names the recording; its segments, joined, hold both tones once the last is saved
    // (as the call ends).
    let deadline = Instant::now() + Duration::from_secs(15);
    let (caller, callee, cdr) = loop {
        let (caller, callee, cdr) = recorded_tones(&client).await;
        if (caller >= 6.0 && callee >= 6.0) || Instant::now() >= deadline {
            break (caller, callee, cdr);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        cdr["recordings"].as_array().is_some_and(|r| !r.is_empty()),
        "the CDR names no recording: {cdr}"
    );
    assert!(
        caller >= 6.0,
        "1001's 440 Hz for {caller} s of a call of about 12 s: {cdr}"
    );
    assert!(
        callee >= 6.0,
        "1002's 660 Hz for {callee} s of a call of about 12 s: {cdr}"
    );
}

/// Seconds of 440 Hz and of 660 Hz (each in the channel that holds it most) in the recordings
/// the first CDR names, joined in order, fetched through the API; and the CDR.
async fn recorded_tones(client: &LabClient) -> (f64, f64, Value) {
    let cdrs = client.get_json(0, "/api/v1/cdrs").await.unwrap();
    let cdr = cdrs["cdrs"][0].clone();
    let mut recording = Pcm {
        rate: 8000,
        channels: Vec::new(),
    };
    for id in cdr["recordings"].as_array().into_iter().flatten() {
        let wav = audio(client, id.as_str().unwrap()).await;
        let pcm = wav::read(&wav).expect("a 16-bit PCM WAV");
        recording.rate = pcm.rate;
        let n = pcm.channels.len().max(recording.channels.len());
        recording.channels.resize(n, Vec::new());
        for (all, c) in recording.channels.iter_mut().zip(pcm.channels) {
            all.extend(c);
        }
    }
    let seconds = |freq: f32| -> f64 {
        (0..recording.channels.len())
            .map(|c| recording.seconds_of(c, freq, 0.5))
            .fold(0.0, f64::max)
    };
    (seconds(440.0), seconds(660.0), cdr)
}
