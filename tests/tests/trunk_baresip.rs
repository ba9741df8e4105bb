//! An inbound trunk call heard both ways by real softphones: a baresip on 127.0.0.2 plays the
//! provider (a peer trunk's address; it never registers, it sends its INVITE for DID 15550100
//! straight to the PBX, unauthenticated), and the inbound route rings extension 7002, a baresip
//! registered from 127.0.0.1 that answers by itself. Each plays its own sine tone (880 Hz from the
//! provider, 440 Hz from the extension) and records what it decodes from the RTP the PBX relayed:
//! each must hear the *other's* tone, which tells relayed audio from a loop back to the sender.
//! And the other way: a baresip extension dials out through an outbound route (strip) and a peer
//! trunk to the carrier's sipp, which checks the number it was sent and echoes the audio back.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::Path;
use std::time::{Duration, Instant};

use pbx_tests::api::{
    assert_no_media_ports, calls_reach, create, inbound_to_extension, peer_trunk, succeed,
    wait_first_cdr, wait_registered,
};
use pbx_tests::baresip::Baresip;
use pbx_tests::sipp::{self, Sipp, logs};
use pbx_tests::{Lab, LabOptions, free_sip_port};

const SECRET: &str = "Tr7!kq-Vw9zP";
/// The provider's address; the extension uses 127.0.0.1.
const PROVIDER_IP: &str = "127.0.0.2";
const DID: &str = "15550100";
/// The tones: the provider's caller and the extension.
const CALLER_HZ: u32 = 880;
const CALLEE_HZ: u32 = 440;

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
    b.recordings().iter().map(|p| tone(p)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_call_to_a_did_rings_a_baresip_extension_with_audio_both_ways() {
    let (lab, client) = Lab::with_extensions(1, LabOptions::default(), &["7002"], SECRET)
        .await
        .unwrap();
    let pbx = lab.nodes[0].sip_port;
    let provider_port = free_sip_port();
    let trunk = peer_trunk("carrier", PROVIDER_IP, provider_port);
    create(&client, "/api/v1/trunks", trunk).await;
    let route = inbound_to_extension("main", DID, "7002");
    create(&client, "/api/v1/routes/inbound", route).await;
    // The PBX re-reads the addresses trunk calls come from within a second of a routing change.
    let configured = Instant::now();

    let mut callee =
        Baresip::extension("7002", SECRET, pbx, ";answermode=auto", CALLEE_HZ, 30, &[]);
    wait_registered(&client, "7002").await;
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(configured.elapsed())).await;

    // The provider: no registration (regint=0), no credentials; calls the DID at the PBX. Its SIP
    // comes from 127.0.0.2; baresip binds RTP to 0.0.0.0, so its packets to the PBX leave from
    // 127.0.0.1, and its SDP must say so (`net_interface`): the PBX latches only to a source the
    // SDP or the SIP vouches for (a provider whose media server is not its SIP server).
    let mut caller = Baresip::start(
        &format!("{PROVIDER_IP}:{provider_port}"),
        "net_interface 127.0.0.1\n",
        &format!("<sip:15551234@127.0.0.1:{pbx};transport=udp>;regint=0"),
        CALLER_HZ,
        8,
        &[&format!("/dial sip:{DID}@127.0.0.1:{pbx}")],
    );

    // The call comes up, and audio flows for a few seconds.
    assert!(
        calls_reach(&client, 1, Duration::from_secs(15)).await,
        "no call came up:\n{}\n{}\n{}",
        caller.log(),
        callee.log(),
        lab.log_tail(0)
    );
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
    assert!(
        caller.quits_within(Duration::from_secs(15)).await,
        "the provider's baresip did not quit"
    );
    let cdr = wait_first_cdr(&client, 0).await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(cdr["hangup_side"], "caller", "{cdr}");
    assert_eq!(cdr["direction"], "inbound", "{cdr}");
    assert_eq!(cdr["trunk"], "carrier", "{cdr}");
    assert_eq!(cdr["did"], DID, "{cdr}");
    assert_eq!(cdr["route"], "main", "{cdr}");
    assert_eq!(cdr["caller"], "15551234", "{cdr}");
    assert_eq!(cdr["callee"], "7002", "{cdr}");
    callee.stop();

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
    assert_no_media_ports(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baresip_extension_calls_out_through_a_route_and_a_trunk_with_audio_both_ways() {
    let (lab, client) = Lab::with_extensions(1, LabOptions::default(), &["7001"], SECRET)
        .await
        .unwrap();
    let pbx = lab.nodes[0].sip_port;
    let carrier_port = free_sip_port();
    let trunk = peer_trunk("carrier", PROVIDER_IP, carrier_port);
    create(&client, "/api/v1/trunks", trunk).await;
    let route = serde_json::json!({"name": "national", "patterns": ["9NXXXXXX"], "strip": 1,
        "class": "local", "trunks": ["carrier"]});
    create(&client, "/api/v1/routes/outbound", route).await;
    let group = serde_json::json!({"name": "staff", "routes": ["national"]});
    create(&client, "/api/v1/permission-groups", group).await;
    let patch = serde_json::json!({"permission_group": "staff"});
    succeed(
        &client,
        reqwest::Method::PATCH,
        "/api/v1/extensions/7001",
        patch,
    )
    .await;

    // The carrier: answers one call, which must be for 5550100 (95550100 with the 9 stripped), and
    // sends back every RTP packet it gets.
    let dir = tempfile::tempdir().unwrap();
    let mut carrier = Sipp::new("trunk-carrier-uas.xml")
        .listen(PROVIDER_IP, carrier_port)
        .args(["-m", "1", "-rtp_echo"])
        .spawn(dir.path());
    sipp::wait_bound(format!("{PROVIDER_IP}:{carrier_port}").parse().unwrap()).await;

    let mut caller = Baresip::extension(
        "7001",
        SECRET,
        pbx,
        "",
        CALLEE_HZ,
        8,
        &[&format!("/dial sip:95550100@127.0.0.1:{pbx}")],
    );
    assert!(
        calls_reach(&client, 1, Duration::from_secs(15)).await,
        "no call came up:\n{}\n{}\n{}",
        caller.log(),
        logs(dir.path()),
        lab.log_tail(0)
    );
    // baresip hangs up when it quits; the carrier's scenario then ends, having checked the number.
    assert!(
        caller.quits_within(Duration::from_secs(15)).await,
        "baresip did not quit"
    );
    let status = carrier.exited(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "the carrier's call went wrong\n{}\n{}",
        logs(dir.path()),
        lab.log_tail(0)
    );
    let cdr = wait_first_cdr(&client, 0).await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(cdr["direction"], "outbound", "{cdr}");
    assert_eq!(cdr["route"], "national", "{cdr}");
    assert_eq!(cdr["trunk"], "carrier", "{cdr}");
    assert_eq!(cdr["dialled"], "95550100", "{cdr}");
    assert_eq!(cdr["sent"], "5550100", "{cdr}");
    // Its own tone came back from the carrier's echo: audio went out through the trunk and back.
    let heard = heard(&caller);
    let loud: usize = heard.iter().map(|h| h.0).sum();
    assert!(
        loud >= 100,
        "the extension heard {loud} loud blocks: {heard:?}"
    );
    let (_, hz) = heard.iter().max_by_key(|h| h.0).unwrap();
    let want = f64::from(CALLEE_HZ);
    assert!(
        (hz - want).abs() < want * 0.1,
        "heard {hz} Hz, not {want}: {heard:?}"
    );
    assert_no_media_ports(&client).await;
}
