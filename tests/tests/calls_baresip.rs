//! Two real softphones (baresip) call each other through the cluster and hear each other: each plays a
//! sine tone, and each records what it decodes from the RTP the PBX relayed.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pbx_tests::{Lab, LabClient, LabOptions, free_sip_port};

const SECRET: &str = "Tr7!kq-Vw9zP";

struct Baresip {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A baresip phone for `user` on the PBX at `pbx_port`, playing a tone of `hz`, recording decoded
/// audio into its directory, quitting (and hanging up) after `quit_after` seconds. `extra` goes on the
/// account line; `commands` run at start.
fn baresip(
    user: &str,
    pbx_port: u16,
    hz: u32,
    quit_after: u32,
    extra: &str,
    commands: &[&str],
) -> Baresip {
    let dir = tempfile::tempdir().unwrap();
    let port = free_sip_port();
    std::fs::write(
        dir.path().join("config"),
        format!(
            "module_path /usr/lib/baresip/modules\nsip_listen 127.0.0.1:{port}\nmodule g711.so\nmodule account.so\n\
             module ausine.so\nmodule aufile.so\nmodule sndfile.so\nmodule menu.so\n\
             audio_player aufile,/dev/null\naudio_source ausine,{hz}\nausrc_srate 48000\nausrc_channels 2\nsnd_path {}\nrtp_ports 40000-49999\n",
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("accounts"),
        format!(
            "<sip:{user}@127.0.0.1:{pbx_port};transport=udp>;auth_pass={SECRET};regint=600{extra}\n"
        ),
    )
    .unwrap();
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

/// Samples in a 16-bit PCM WAV recording that are not near silence.
fn loud_samples(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .get(44..)
        .unwrap_or(&[])
        .chunks_exact(2)
        .filter(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs() > 1000)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_baresip_phones_call_each_other_and_hear_each_other() {
    // baresip 1.0 gives up on any 401 that offers SHA-256, even beside MD5: the default offers MD5
    // alone, so it registers out of the box.
    let options = LabOptions::default();
    let (lab, client) = Lab::with_extensions(1, options, &["7001", "7002"], SECRET)
        .await
        .unwrap();
    let pbx = lab.nodes[0].sip_port;
    let mut callee = baresip("7002", pbx, 440, 30, ";answermode=auto", &[]);
    wait_registered(&client, "7002").await;
    let mut caller = baresip("7001", pbx, 880, 8, "", &["/dial 7002"]);

    // The call comes up, and audio flows for a few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let calls = client.get_json(0, "/api/v1/calls").await.unwrap();
        if calls["count"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no call came up:\n{}\n{}",
            std::fs::read_to_string(callee.dir.path().join("log")).unwrap_or_default(),
            lab.log_tail(0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let relayed = client
        .metric(0, "pbx_media_packets_relayed_total{kind=\"rtp\"}")
        .await
        .unwrap();
    assert!(
        relayed >= 150.0,
        "only {relayed} RTP packets relayed in 3 s"
    );

    // The caller quits after its 8 s and hangs up on the way out.
    let deadline = Instant::now() + Duration::from_secs(15);
    while caller.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the caller did not quit");
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
    assert_eq!(cdr["disposition"], "answered");
    assert_eq!(cdr["hangup_side"], "caller");
    let _ = callee.child.kill();
    let _ = callee.child.wait();

    // Each phone decoded the other's tone from the relayed RTP.
    let heard = |b: &Baresip| -> usize {
        recordings(b.dir.path())
            .iter()
            .map(|p| loud_samples(p))
            .sum()
    };
    let (by_caller, by_callee) = (heard(&caller), heard(&callee));
    assert!(
        by_caller > 8000,
        "the caller heard {by_caller} loud samples"
    );
    assert!(
        by_callee > 8000,
        "the callee heard {by_callee} loud samples"
    );
    assert_eq!(
        client
            .metric(0, "pbx_media_port_pairs_in_use")
            .await
            .unwrap(),
        0.0
    );
}
