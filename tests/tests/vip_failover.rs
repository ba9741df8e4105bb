//! The floating VIP under fault, in network namespaces this test creates and removes
//! (`deploy/lab-netns.sh`): three node hosts, phone hosts, one bridge, 198.18.0.0/24. Each test runs
//! the `chaos failover` scenario from the phones' namespace against real `pbx` processes, and checks
//! its report: what the phones noticed, and the invariants (no call, registration or write lost, never
//! two owners). Needs root, `ip`, `nft` and `arping` (`deploy/prereqs.sh --lab`).
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn lab_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/lab-netns.sh")
}

/// Runs one scenario in a fresh namespace lab (the script removes it afterwards, pass or fail) and
/// returns the report.
fn failover(fault: &str, rounds: u32, calls: u32) -> Value {
    let (rounds, calls) = (rounds.to_string(), calls.to_string());
    lab(&[
        "chaos", "--fault", fault, "--rounds", &rounds, "--calls", &calls,
    ])
}

/// Runs `deploy/lab-netns.sh` with `args` and a report file; checks the lab is gone afterwards.
fn lab(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = Command::new(lab_script())
        .args(args)
        .arg("--report")
        .arg(&report)
        .env("PBX_BIN", pbx_tests::pbx_bin())
        .env("CHAOS_BIN", pbx_tests::chaos_bin())
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains("pbx-"),
        "the lab's namespaces were not removed"
    );
    assert!(out.status.success(), "lab {args:?} failed:\n{text}");
    serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap()
}

fn count(r: &Value, key: &str) -> u64 {
    r[key].as_u64().unwrap_or_else(|| panic!("no {key} in {r}"))
}

/// 20 calls with RTP both ways; kill -9 the VIP owner. Every call keeps media both ways on the new
/// owner and ends with a BYE answered 200 (the callee gets its BYE); every registration is still
/// there; a new call succeeds; no acknowledged write is lost.
#[test]
fn calls_survive_a_kill_of_the_vip_owner() {
    let r = failover("kill-owner", 1, 20);
    assert_eq!(count(&r, "calls_survived"), 20, "{r}");
    assert_eq!(count(&r, "calls_dropped"), 0, "{r}");
    assert_eq!(count(&r, "registrations_missing"), 0, "{r}");
    assert_eq!(count(&r, "lost_writes"), 0, "{r}");
    assert!(count(&r, "acknowledged_writes") > 0, "{r}");
    assert_eq!(r["violations"], serde_json::json!([]), "{r}");
    // The audio came back: the longest silence any phone heard is finite and measured per phone.
    assert_eq!(r["audio_gap_ms"].as_array().unwrap().len(), 40, "{r}");
}

/// The owner cut off from its peers (not from the phones) drops the VIP before another node claims
/// it: at no point do two nodes claim it, nor do two MAC addresses answer ARP for it.
#[test]
fn a_partitioned_owner_releases_before_anyone_takes_over() {
    let r = failover("partition-owner", 1, 2);
    assert_eq!(count(&r, "two_owner_observations"), 0, "{r}");
    assert_eq!(count(&r, "duplicate_vip_observations"), 0, "{r}");
    assert!(count(&r, "arp_probes") > 0, "{r}");
    let released = r["old_owner_released_ms"][0].as_u64().unwrap();
    let taken = r["new_owner_ms"][0].as_u64().unwrap();
    assert!(
        released < taken,
        "old owner released at {released} ms, new owner at {taken} ms: {r}"
    );
    assert_eq!(count(&r, "calls_survived"), 2, "{r}");
    assert_eq!(r["violations"], serde_json::json!([]), "{r}");
}

/// SIGSTOP the owner past its lease, then SIGCONT: another node carries the calls, and the woken
/// node never claims the VIP again; its kernel fence kept it from answering ARP while frozen.
#[test]
fn a_frozen_owner_does_not_reclaim_the_vip_when_it_wakes() {
    let r = failover("stop-owner", 1, 2);
    assert_eq!(r["violations"], serde_json::json!([]), "{r}");
    assert_eq!(count(&r, "duplicate_vip_observations"), 0, "{r}");
    assert_eq!(count(&r, "two_owner_observations"), 0, "{r}");
    assert_eq!(count(&r, "calls_survived"), 2, "{r}");
}

/// Every node restarted in turn (the owner last) with calls up: no call dropped.
#[test]
fn a_rolling_restart_drops_no_call() {
    let r = failover("rolling-restart", 1, 4);
    assert_eq!(count(&r, "calls_survived"), 4, "{r}");
    assert_eq!(count(&r, "registrations_missing"), 0, "{r}");
    assert_eq!(count(&r, "lost_writes"), 0, "{r}");
    assert_eq!(r["violations"], serde_json::json!([]), "{r}");
}

/// Without its kernel fence, only the process's own guards (the in-process fence, and its release
/// closing the sockets) stand between a woken owner and the phones: the owner's nftables fence
/// removed, the owner frozen while 200 SIP requests queue in its UDP socket and on a TCP connection
/// it had accepted; another node takes the VIP, the old owner wakes, and answers none of them.
#[test]
fn a_woken_owner_without_its_kernel_fence_answers_nothing_it_queued() {
    let r = lab(&["fence"]);
    assert_eq!(r["tcp_served_before"], true, "{r}");
    assert_eq!(count(&r, "stale_answers_udp"), 0, "{r}");
    assert_eq!(count(&r, "stale_answers_tcp"), 0, "{r}");
    assert_eq!(r["violations"], serde_json::json!([]), "{r}");
}

/// A register trunk to Kamailio (the provider, on a phone host) across a kill -9 of the VIP owner
/// during an established outbound call: the call keeps audio both ways and ends with a BYE answered
/// 200, the new owner registers the trunk again within 2 s of taking the VIP, and the extension's
/// per-minute toll counter holds (the call that crosses it after the kill is refused with 403).
#[test]
fn a_trunk_call_and_its_registration_survive_a_kill_of_the_vip_owner() {
    let r = lab(&["trunk"]);
    assert_eq!(r["violations"], serde_json::json!([]), "{r}");
    assert_eq!(r["call_survived"], true, "{r}");
    assert_eq!(r["after_kill"], serde_json::json!([200, 403]), "{r}");
    assert!(count(&r, "re_registered_after_claim_ms") <= 2000, "{r}");
}
