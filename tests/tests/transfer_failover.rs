//! An attended transfer across a kill of the VIP owner, in the namespace lab: 1001 calls 1002, 1004
//! calls 1001 (the consultation), and with both calls up the VIP owner is killed. The new owner
//! carries both calls on from their records; 1001's REFER with `Replaces`, sent after the
//! takeover, joins 1004 to 1002 as it would have before: 1001 hears `200 OK` and is hung up on both
//! calls, 1004 plays audio that 1002 echoes (relayed by the new owner), and the consultation's CDR
//! says `transferred`.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use pbx_tests::api::{poll_node, wait_registered};
use pbx_tests::netns::{self, on_phone_host, vip_owner};
use pbx_tests::process::KillOnDrop;
use pbx_tests::sipp::{self, Sipp, trace};
use pbx_tests::{Lab, LabOptions, topology};

const SECRET: &str = "Tr7!kq-Vw9zP";
/// Set in the environment of this test binary when it runs inside the lab's phone namespace.
const INSIDE: &str = "TRANSFER_FAILOVER_IN_NETNS";
/// How long after the consultation's answer the transferor refers: the kill and the takeover fit
/// in it.
const REFER_AFTER_MS: &str = "8000";
/// The longest any phone's sipp runs.
const PHONE_LIMIT: &str = "60s";
const RELAYED: &str = "pbx_media_packets_relayed_total{kind=\"rtp\"}";

#[test]
fn an_attended_transfer_completes_after_the_vip_owner_is_killed_mid_consultation() {
    netns::in_namespace_lab(INSIDE, "attended_transfer_inside_the_lab");
}

/// Waits for the phone's sipp to end within its limit; asserts that its scenario went as written.
async fn finished(phone: &mut KillOnDrop, dir: &Path, lab: &Lab, node: usize, what: &str) {
    let status = phone.exited(Duration::from_secs(60)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{what} ({status:?})\n{}\n{}",
        sipp::logs(dir),
        lab.log_tail(node)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run inside the namespace lab by an_attended_transfer_completes_after_the_vip_owner_is_killed_mid_consultation"]
async fn attended_transfer_inside_the_lab() {
    if std::env::var_os(INSIDE).is_none() {
        eprintln!("not inside the namespace lab: skipped");
        return;
    }
    let started = Instant::now();
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 0".into(),
        ..LabOptions::default()
    };
    let (mut lab, client, owner) = netns::vip_lab(options, &["1001", "1002", "1004"], SECRET).await;
    let vip = SocketAddr::new(topology::VIP.into(), topology::SIP_PORT).to_string();
    let dir = tempfile::tempdir().unwrap();
    let (held_dir, transferor_dir, consulted_dir, register_dir) = (
        sipp::subdir(dir.path(), "1002"),
        sipp::subdir(dir.path(), "1001"),
        sipp::subdir(dir.path(), "1004"),
        sipp::subdir(dir.path(), "register-1001"),
    );
    let csv = |d: &Path, n: &str| sipp::credentials(d, "phone.csv", n, SECRET);
    let limit = ["-timeout", PHONE_LIMIT, "-timeout_error"];

    // 1002 registers and answers the transferor's call (echoing what it hears); it stays up.
    let held = Sipp::new("uas-register.xml")
        .to(&vip)
        .args([
            "-oocsf",
            &sipp::scenario("attended-uas-held.xml"),
            "-rtp_echo",
        ])
        .args(["-inf", &csv(&held_dir, "1002"), "-m", "1", "-d", "120000"]);
    let _held = on_phone_host(held, 0).spawn(&held_dir);
    wait_registered(&client, "1002").await;
    // 1001 registers from the address its two calls use, to be called for the consultation.
    let transferor_csv = csv(&transferor_dir, "1001");
    on_phone_host(
        Sipp::new("register-auth.xml")
            .to(&vip)
            .args(["-inf", &transferor_csv, "-m", "1"]),
        1,
    )
    .run_ok(&register_dir, &lab, "1001 did not register")
    .await;
    wait_registered(&client, "1001").await;

    let transferor = Sipp::new("attended-uac-transferor.xml")
        .to(&vip)
        .args(["-s", "1002", "-auth_uri", &format!("1002@{vip}")])
        .args(["-inf", &transferor_csv, "-m", "1"])
        .args(["-oocsf", &sipp::scenario("attended-uas-consult.xml")])
        .args(["-key", "consulted", "1004", "-d", REFER_AFTER_MS])
        .args(limit);
    let mut transferor = on_phone_host(transferor, 1).spawn(&transferor_dir);
    let calls_up = |n: u64| move |c: &serde_json::Value| c["count"].as_u64() == Some(n);
    let one = poll_node(
        &client,
        owner,
        "/api/v1/calls",
        Duration::from_secs(10),
        calls_up(1),
    )
    .await;
    assert_eq!(one["count"], 1, "1001's call to 1002: {one}");
    let consulted = Sipp::new("attended-uac-consulted.xml")
        .to(&vip)
        .args(["-s", "1001", "-auth_uri", &format!("1001@{vip}")])
        .args(["-inf", &csv(&consulted_dir, "1004"), "-m", "1"])
        .args(limit);
    let mut consulted = on_phone_host(consulted, 2).spawn(&consulted_dir);
    let two = poll_node(
        &client,
        owner,
        "/api/v1/calls",
        Duration::from_secs(10),
        calls_up(2),
    )
    .await;
    assert_eq!(two["count"], 2, "the consultation: {two}");

    // Both calls up: the owner dies before the REFER.
    let killed_at = Instant::now();
    lab.kill(owner);
    let new_owner = vip_owner(
        &client,
        lab.nodes.len(),
        Some(owner),
        Duration::from_secs(20),
    )
    .await;
    let took_over = killed_at.elapsed();
    let relayed = client.metric(new_owner, RELAYED).await.unwrap_or(0.0);

    finished(
        &mut transferor,
        &transferor_dir,
        &lab,
        new_owner,
        "1001's attended transfer after the takeover",
    )
    .await;
    let refer_at = killed_at.elapsed();
    finished(
        &mut consulted,
        &consulted_dir,
        &lab,
        new_owner,
        "1004 did not take the transferred call",
    )
    .await;

    // The transferor: REFER accepted, told 200 OK, hung up on both calls.
    let msgs = trace(&transferor_dir);
    let frags: Vec<String> = msgs
        .iter()
        .filter(|m| m.received && m.first_line().starts_with("NOTIFY "))
        .map(|m| m.body().trim().to_owned())
        .collect();
    assert!(
        frags.iter().any(|f| f == "SIP/2.0 200 OK"),
        "no final sipfrag: {frags:?}"
    );
    let mut bye_calls: Vec<&str> = msgs
        .iter()
        .filter(|m| m.received && m.first_line().starts_with("BYE "))
        .filter_map(|m| m.header("Call-ID"))
        .collect();
    bye_calls.sort_unstable();
    bye_calls.dedup();
    assert_eq!(bye_calls.len(), 2, "a BYE on each call");
    // How long the transfer took on the new owner: the REFER sent, the final NOTIFY received.
    let refer_sent = msgs
        .iter()
        .find(|m| !m.received && m.first_line().starts_with("REFER "))
        .map(sipp::TraceMsg::secs)
        .unwrap();
    let told = msgs
        .iter()
        .find(|m| {
            m.received && m.first_line().starts_with("NOTIFY ") && m.body().contains("200 OK")
        })
        .map(sipp::TraceMsg::secs)
        .unwrap();
    let transfer_ms = ((told - refer_sent) * 1000.0).round();
    // The held party: re-INVITEd with 1004's offer by the new owner, then hung up by 1004.
    let held_msgs = trace(&held_dir);
    let invites = held_msgs
        .iter()
        .filter(|m| m.received && m.first_line().starts_with("INVITE "))
        .filter_map(|m| m.header("CSeq"))
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(invites.len(), 2, "{}", sipp::logs(&held_dir));
    let relayed = client.metric(new_owner, RELAYED).await.unwrap() - relayed;
    assert!(
        relayed >= 2.0 * 236.0 * 0.95,
        "the new owner relayed {relayed} RTP packets after the transfer, expected about {}",
        2 * 236
    );
    let cdrs = poll_node(
        &client,
        new_owner,
        "/api/v1/cdrs",
        Duration::from_secs(10),
        |c| {
            c["cdrs"]
                .as_array()
                .is_some_and(|a| a.iter().any(|c| c["cause"] == "transferred"))
        },
    )
    .await;
    let consultation = cdrs["cdrs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cause"] == "transferred")
        .unwrap_or_else(|| panic!("no CDR of the consultation: {cdrs}"));
    assert_eq!(consultation["caller"], "1004", "{consultation}");
    assert_eq!(consultation["callee"], "1001", "{consultation}");
    eprintln!(
        "failover: VIP owner {owner} killed, node {new_owner} took over in {took_over:?}; the \
         REFER (sent {REFER_AFTER_MS} ms after the consultation was answered) took {transfer_ms} ms \
         from sent to the final NOTIFY; the transferor was done {refer_at:?} after the kill; \
         {relayed} RTP packets relayed after; {:?} in all",
        started.elapsed()
    );
}
