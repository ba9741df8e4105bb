//! Two real softphones (baresip) call each other through the cluster and hear each other: each plays a
//! sine tone, and each records what it decodes from the RTP the PBX relayed.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::time::Duration;

use pbx_tests::api::{assert_no_media_ports, calls_reach, wait_first_cdr, wait_registered};
use pbx_tests::baresip::{Baresip, loud_samples};
use pbx_tests::{Lab, LabOptions};

const SECRET: &str = "Tr7!kq-Vw9zP";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_baresip_phones_call_each_other_and_hear_each_other() {
    // baresip 1.0 gives up on any 401 that offers SHA-256, even beside MD5: the default offers MD5
    // alone, so it registers out of the box.
    let options = LabOptions::default();
    let (lab, client) = Lab::with_extensions(1, options, &["7001", "7002"], SECRET)
        .await
        .unwrap();
    let pbx = lab.nodes[0].sip_port;
    let mut callee = Baresip::extension("7002", SECRET, pbx, ";answermode=auto", 440, 30, &[]);
    wait_registered(&client, "7002").await;
    let mut caller = Baresip::extension("7001", SECRET, pbx, "", 880, 8, &["/dial 7002"]);

    // The call comes up, and audio flows for a few seconds.
    assert!(
        calls_reach(&client, 1, Duration::from_secs(15)).await,
        "no call came up:\n{}\n{}",
        callee.log(),
        lab.log_tail(0)
    );
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
    assert!(
        caller.quits_within(Duration::from_secs(15)).await,
        "the caller did not quit"
    );
    let cdr = wait_first_cdr(&client, 0).await;
    assert_eq!(cdr["disposition"], "answered");
    assert_eq!(cdr["hangup_side"], "caller");
    callee.stop();

    // Each phone decoded the other's tone from the relayed RTP.
    let heard = |b: &Baresip| -> usize { b.recordings().iter().map(|p| loud_samples(p)).sum() };
    let (by_caller, by_callee) = (heard(&caller), heard(&callee));
    assert!(
        by_caller > 8000,
        "the caller heard {by_caller} loud samples"
    );
    assert!(
        by_callee > 8000,
        "the callee heard {by_callee} loud samples"
    );
    assert_no_media_ports(&client).await;
}
