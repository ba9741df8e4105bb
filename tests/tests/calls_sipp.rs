//! sipp as both phones: a sipp UAC calls a registered sipp UAS through the 3-node cluster, plays G.711
//! audio from a pcap, the UAS echoes every RTP packet, and the PBX relays both directions.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use pbx_tests::{Lab, LabOptions, free_port, free_sip_port};

const SECRET: &str = "Tr7!kq-Vw9zP";
/// RTP packets in the pcap sipp ships (`/usr/share/sip-tester/g711a.pcap`).
const PCAP_PACKETS: f64 = 236.0;

fn scenario(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sipp")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

/// What sipp wrote to its error logs.
fn sipp_errors(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with("_errors.log") || name.ends_with("_messages.log") {
            out.push_str(&format!("== {name}\n"));
            out.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    out
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_calls_sipp_through_the_cluster_with_audio_relayed_both_ways() {
    // sipp answers the first challenge only and knows only MD5 (the default offers it first); its
    // out-of-call scenario expects the INVITE, so the PBX's OPTIONS pings are off.
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 0".into(),
        ..LabOptions::default()
    };
    let (lab, client) = Lab::with_extensions(3, options, &["1001", "1002"], SECRET)
        .await
        .unwrap();
    let target = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port)).to_string();
    let dir = tempfile::tempdir().unwrap();
    let csv = |name: &str, user: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!("SEQUENTIAL\n{user};[authentication username={user} password={SECRET}]\n"),
        )
        .unwrap();
        path.to_str().unwrap().to_owned()
    };

    let uas_csv = csv("uas.csv", "1002");
    let _uas = KillOnDrop(
        Command::new("sipp")
            .arg(&target)
            .args(["-sf", &scenario("uas-register.xml")])
            .args(["-oocsf", &scenario("uas-answer.xml")])
            .args([
                "-inf",
                &uas_csv,
                "-m",
                "1",
                "-d",
                "60000",
                "-i",
                "127.0.0.1",
            ])
            .args(["-p", &free_sip_port().to_string()])
            .args(["-mp", &free_port(true).to_string(), "-rtp_echo"])
            .args(["-nostdin", "-trace_err", "-trace_msg"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("sipp is installed (Debian sip-tester)"),
    );
    // The callee is reachable once its registration is committed.
    let mut registered = false;
    for _ in 0..100 {
        let regs = client.registrations(0, "1002").await.unwrap();
        if regs["registrations"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            registered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(registered, "the sipp UAS registered");

    let uac_csv = csv("uac.csv", "1001");
    let workdir = dir.path().to_owned();
    let relayed_before = client
        .metric(0, "pbx_media_packets_relayed_total{kind=\"rtp\"}")
        .await
        .unwrap();
    let status = tokio::task::spawn_blocking(move || {
        Command::new("sipp")
            .arg(&target)
            .args(["-sf", &scenario("uac-call-pcap.xml"), "-s", "1002"])
            // sipp's digest uri is `sip:host:port` unless told the Request-URI.
            .args(["-auth_uri", &format!("1002@{target}")])
            .args(["-inf", &uac_csv, "-m", "1", "-i", "127.0.0.1"])
            .args(["-p", &free_sip_port().to_string()])
            .args(["-mp", &free_port(true).to_string()])
            .args([
                "-timeout",
                "30s",
                "-timeout_error",
                "-nostdin",
                "-trace_err",
                "-trace_msg",
            ])
            .current_dir(&workdir)
            .stdout(Stdio::null())
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        status.success(),
        "the sipp call failed: {}\n{}",
        sipp_errors(dir.path()),
        lab.log_tail(0)
    );

    let relayed = client
        .metric(0, "pbx_media_packets_relayed_total{kind=\"rtp\"}")
        .await
        .unwrap()
        - relayed_before;
    // Every packet of the pcap to the callee, and its echo back to the caller.
    let mut dropped = String::new();
    for reason in ["foreign_source", "no_destination", "send_failed"] {
        let name = format!("pbx_media_packets_dropped_total{{reason=\"{reason}\"}}");
        dropped.push_str(&format!(
            " {reason}={}",
            client.metric(0, &name).await.unwrap()
        ));
    }
    assert!(
        relayed >= 2.0 * PCAP_PACKETS * 0.95,
        "relayed {relayed} RTP packets, expected about {}; dropped:{dropped}",
        2.0 * PCAP_PACKETS
    );

    let mut cdr = None;
    for _ in 0..100 {
        let cdrs = client.get_json(1, "/api/v1/cdrs").await.unwrap();
        if let Some(c) = cdrs["cdrs"].as_array().and_then(|c| c.first()) {
            cdr = Some(c.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cdr = cdr.expect("a CDR on another node");
    assert_eq!(cdr["caller"], "1001");
    assert_eq!(cdr["callee"], "1002");
    assert_eq!(cdr["disposition"], "answered");
    assert_eq!(cdr["hangup_side"], "caller");
    assert!(cdr["duration_secs"].as_u64().unwrap() >= 4, "{cdr}");
    assert_eq!(
        client
            .metric(0, "pbx_media_port_pairs_in_use")
            .await
            .unwrap(),
        0.0
    );
    assert_eq!(
        client.get_json(0, "/api/v1/calls").await.unwrap()["count"],
        0
    );
}
