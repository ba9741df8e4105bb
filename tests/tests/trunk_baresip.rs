//! An inbound trunk call heard both ways by real softphones: a baresip on 127.0.0.2 plays the
//! provider (a peer trunk's address; it never registers, it sends its INVITE for DID 15550100
//! straight to the PBX, unauthenticated), and the inbound route rings extension 7002, a baresip
//! registered from 127.0.0.1 that answers by itself. Each plays its own sine tone (880 Hz from the
//! provider, 440 Hz from the extension) and records what it decodes from the RTP the PBX relayed:
//! each must hear the *other's* tone, which tells relayed audio from a loop back to the sender.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pbx_tests::{Lab, LabClient, LabOptions, free_sip_port};
use serde_json::{Value, json};

const SECRET: &str = "Tr7!kq-Vw9zP";
/// The provider's address; the extension uses 127.0.0.1.
const PROVIDER_IP: &str = "127.0.0.2";
const DID: &str = "15550100";
/// The tones: the provider's caller and the extension.
const CALLER_HZ: u32 = 880;
const CALLEE_HZ: u32 = 440;

struct Baresip {
    child: Child,
    dir: tempfile::TempDir,
}

impl Baresip {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A baresip listening for SIP on `listen`, with the one account line `account`, playing a tone of
/// `hz`, recording decoded audio into its directory, quitting (and hanging up) after `quit_after`
/// seconds; `commands` run at start. (As in `calls_baresip.rs`, with the listening address and the
/// whole account line chosen by the caller.)
fn baresip(
    listen: &str,
    config: &str,
    account: &str,
    hz: u32,
    quit_after: u32,
    commands: &[&str],
) -> Baresip {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config"),
        format!(
            "module_path /usr/lib/baresip/modules\nsip_listen {listen}\nmodule g711.so\nmodule account.so\n\
             module ausine.so\nmodule aufile.so\nmodule sndfile.so\nmodule menu.so\n\
             audio_player aufile,/dev/null\naudio_source ausine,{hz}\nausrc_srate 48000\nausrc_channels 2\nsnd_path {}\nrtp_ports 40000-49999\n{config}",
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("accounts"), format!("{account}\n")).unwrap();
    let mut cmd = Command::new("baresip");
    cmd.args([
        "-f",
        dir.path().to_str().unwrap(),
        "-t",
        &quit_after.to_string(),
    ]);
    for c in commands {
        cmd.args(["-e", c]);
    }
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let child = cmd
        .arg("-s")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("baresip is installed");
    Baresip { child, dir }
}

async fn create(client: &LabClient, path: &str, body: Value) {
    let resp = client
        .req(0, reqwest::Method::POST, path)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, reqwest::StatusCode::CREATED, "POST {path}: {text}");
}

async fn wait_registered(client: &LabClient, number: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let r = client.registrations(0, number).await.unwrap();
        if r["registrations"].as_array().is_some_and(|a| !a.is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{number} did not register");
}

/// The decoded-audio recordings sndfile wrote in `dir`.
fn recordings(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .collect()
}

/// What a 16-bit PCM WAV recording holds: how many 20 ms blocks are loud, and the median frequency
/// of those blocks, counted from zero crossings (with hysteresis, so noise near zero does not
/// count) on the first channel.
fn tone(path: &Path) -> (usize, f64) {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() > 44, "{} is empty", path.display());
    let channels = usize::from(u16::from_le_bytes([bytes[22], bytes[23]])).max(1);
    let rate = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]) as usize;
    let samples: Vec<i32> = bytes[44..]
        .chunks_exact(2 * channels)
        .map(|s| i32::from(i16::from_le_bytes([s[0], s[1]])))
        .collect();
    let block = rate / 50;
    let mut freqs: Vec<f64> = samples
        .chunks_exact(block)
        .filter(|b| b.iter().filter(|s| s.abs() > 1000).count() > block / 4)
        .map(|b| {
            let mut above = b[0] > 0;
            let mut crossings = 0usize;
            for &s in b {
                if above && s < -300 {
                    above = false;
                    crossings += 1;
                } else if !above && s > 300 {
                    above = true;
                    crossings += 1;
                }
            }
            crossings as f64 / 2.0 * 50.0
        })
        .collect();
    freqs.sort_by(f64::total_cmp);
    let median = freqs.get(freqs.len() / 2).copied().unwrap_or(0.0);
    (freqs.len(), median)
}

/// The loud blocks and their median frequency over everything `b` recorded.
fn heard(b: &Baresip) -> Vec<(usize, f64)> {
    recordings(b.dir.path()).iter().map(|p| tone(p)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_call_to_a_did_rings_a_baresip_extension_with_audio_both_ways() {
    let (lab, client) = Lab::with_extensions(1, LabOptions::default(), &["7002"], SECRET)
        .await
        .unwrap();
    let pbx = lab.nodes[0].sip_port;
    let provider_port = free_sip_port();
    create(
        &client,
        "/api/v1/trunks",
        json!({
            "name": "carrier",
            "kind": "peer",
            "host": PROVIDER_IP,
            "port": provider_port,
            "transport": "udp",
            "qualify_secs": 0
        }),
    )
    .await;
    create(
        &client,
        "/api/v1/routes/inbound",
        json!({
            "name": "main",
            "did_kind": "exact",
            "did": DID,
            "destination": {"type": "extension", "target": "7002"}
        }),
    )
    .await;
    // The PBX re-reads the addresses trunk calls come from within a second of a routing change.
    let configured = Instant::now();

    let mut callee = baresip(
        &format!("127.0.0.1:{}", free_sip_port()),
        "",
        &format!(
            "<sip:7002@127.0.0.1:{pbx};transport=udp>;auth_pass={SECRET};regint=600;answermode=auto"
        ),
        CALLEE_HZ,
        30,
        &[],
    );
    wait_registered(&client, "7002").await;
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(configured.elapsed())).await;

    // The provider: no registration (regint=0), no credentials; calls the DID at the PBX. Its SIP
    // comes from 127.0.0.2; baresip binds RTP to 0.0.0.0, so its packets to the PBX leave from
    // 127.0.0.1, and its SDP must say so (`net_interface`): the PBX latches only to a source the
    // SDP or the SIP vouches for (a provider whose media server is not its SIP server).
    let mut caller = baresip(
        &format!("{PROVIDER_IP}:{provider_port}"),
        "net_interface 127.0.0.1\n",
        &format!("<sip:15551234@127.0.0.1:{pbx};transport=udp>;regint=0"),
        CALLER_HZ,
        8,
        &[&format!("/dial sip:{DID}@127.0.0.1:{pbx}")],
    );

    // The call comes up, and audio flows for a few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let calls = client.get_json(0, "/api/v1/calls").await.unwrap();
        if calls["count"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no call came up:\n{}\n{}\n{}",
            caller.log(),
            callee.log(),
            lab.log_tail(0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = client
        .metric(0, "pbx_media_packets_relayed_total{kind=\"rtp\"}")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let relayed = client
        .metric(0, "pbx_media_packets_relayed_total{kind=\"rtp\"}")
        .await
        .unwrap()
        - before;
    // 50 packets a second each way.
    assert!(
        relayed >= 200.0,
        "only {relayed} RTP packets relayed in 3 s\n{}\n{}\n{}",
        caller.log(),
        callee.log(),
        lab.log_tail(0)
    );

    // The provider's caller quits after its 8 s and hangs up on the way out.
    let deadline = Instant::now() + Duration::from_secs(15);
    while caller.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the provider's baresip did not quit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut cdr = None;
    for _ in 0..100 {
        let cdrs = client.get_json(0, "/api/v1/cdrs").await.unwrap();
        if let Some(c) = cdrs["cdrs"].as_array().and_then(|c| c.first()) {
            cdr = Some(c.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cdr = cdr.expect("the call ended with a CDR");
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(cdr["hangup_side"], "caller", "{cdr}");
    assert_eq!(cdr["direction"], "inbound", "{cdr}");
    assert_eq!(cdr["trunk"], "carrier", "{cdr}");
    assert_eq!(cdr["did"], DID, "{cdr}");
    assert_eq!(cdr["route"], "main", "{cdr}");
    assert_eq!(cdr["caller"], "15551234", "{cdr}");
    assert_eq!(cdr["callee"], "7002", "{cdr}");
    let _ = callee.child.kill();
    let _ = callee.child.wait();

    // Each side decoded the other's tone, for seconds (a 20 ms block each), from the relayed RTP.
    let (by_caller, by_callee) = (heard(&caller), heard(&callee));
    let check = |who: &str, heard: &[(usize, f64)], want: u32| {
        let loud: usize = heard.iter().map(|h| h.0).sum();
        assert!(loud >= 100, "the {who} heard {loud} loud blocks: {heard:?}");
        let (_, hz) = heard.iter().max_by_key(|h| h.0).unwrap();
        let want = f64::from(want);
        assert!(
            (hz - want).abs() < want * 0.1,
            "the {who} heard {hz} Hz, not {want}: {heard:?}"
        );
    };
    check("provider's caller", &by_caller, CALLEE_HZ);
    check("extension", &by_callee, CALLER_HZ);
    assert_eq!(
        client
            .metric(0, "pbx_media_port_pairs_in_use")
            .await
            .unwrap(),
        0.0
    );
}
