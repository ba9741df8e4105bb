//! sipp as both phones: a sipp UAC calls a registered sipp UAS through the 3-node cluster, plays G.711
//! audio from a pcap, the UAS echoes every RTP packet, and the PBX relays both directions.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;

use pbx_tests::api::{assert_no_media_ports, lab_without_pings, wait_first_cdr, wait_registered};
use pbx_tests::sipp::{self, Sipp};

const SECRET: &str = "Tr7!kq-Vw9zP";
/// RTP packets in the pcap sipp ships (`/usr/share/sip-tester/g711a.pcap`).
const PCAP_PACKETS: f64 = 236.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_calls_sipp_through_the_cluster_with_audio_relayed_both_ways() {
    // sipp answers the first challenge only and knows only MD5 (the default offers it first); its
    // out-of-call scenario expects the INVITE, so the PBX's OPTIONS pings are off.
    let (lab, client) = lab_without_pings(3, &["1001", "1002"], SECRET).await;
    let target = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port)).to_string();
    let dir = tempfile::tempdir().unwrap();

    let uas_csv = sipp::credentials(dir.path(), "uas.csv", "1002", SECRET);
    let _uas = Sipp::answering_phone(&target, &uas_csv, 60000)
        .args(["-rtp_echo"])
        .spawn(dir.path());
    // The callee is reachable once its registration is committed.
    wait_registered(&client, "1002").await;

    let uac_csv = sipp::credentials(dir.path(), "uac.csv", "1001", SECRET);
    let relayed_before = client
        .metric(0, "pbx_media_packets_relayed_total{kind=\"rtp\"}")
        .await
        .unwrap();
    Sipp::phone_call(&target, &uac_csv, "1002", "uac-call-pcap.xml")
        .run_ok(dir.path(), &lab, "the sipp call failed")
        .await;

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

    // The CDR, on another node.
    let cdr = wait_first_cdr(&client, 1).await;
    assert_eq!(cdr["caller"], "1001");
    assert_eq!(cdr["callee"], "1002");
    assert_eq!(cdr["disposition"], "answered");
    assert_eq!(cdr["hangup_side"], "caller");
    assert!(cdr["duration_secs"].as_u64().unwrap() >= 4, "{cdr}");
    assert_no_media_ports(&client).await;
    assert_eq!(
        client.get_json(0, "/api/v1/calls").await.unwrap()["count"],
        0
    );
}
