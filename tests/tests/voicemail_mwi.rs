//! Message waiting (RFC 3842 `message-summary`) with sipp as the phones: an extension SUBSCRIBEs to
//! its own mailbox through the digest challenge and is told at once that no message waits (it has
//! no mailbox yet: a phone configured for message waiting subscribes anyway), in a
//! simple-message-summary document naming its account; other Raft entries do not make the PBX tell
//! it again; a phone asking for another extension's mailbox gets `403`, the same whether that
//! extension exists or not; across a kill of the VIP owner (in the namespace lab) the new owner
//! tells the subscription the counts again, with a CSeq above the old owner's. The NOTIFYs are read
//! from the watcher's SIP message trace.
//!
//! Messages arriving (a second NOTIFY, `Messages-Waiting: yes`) are for the voicemail engine's
//! tests: `mwi-subscribe-wait.xml` waits for that NOTIFY and logs its counts.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use pbx_tests::api::{lab_without_pings, send};
use pbx_tests::netns::{self, on_phone_host, vip_owner};
use pbx_tests::sipp::{self, Sipp, TraceMsg as Msg, trace};
use pbx_tests::{Lab, topology};
use reqwest::{Method, StatusCode};
use serde_json::json;

const SECRET: &str = "Tr7!kq-Vw9zP";

/// The responses sipp received to its request with CSeq number `cseq`.
fn answers(msgs: &[Msg], cseq: u32) -> Vec<&Msg> {
    msgs.iter()
        .filter(|m| m.received && m.first_line().starts_with("SIP/2.0 ") && m.cseq().0 == cseq)
        .collect()
}

/// Every NOTIFY the watcher received, retransmissions once (same CSeq and Via), in order.
fn notifies(msgs: &[Msg]) -> Vec<&Msg> {
    let mut out: Vec<&Msg> = Vec::new();
    for m in msgs
        .iter()
        .filter(|m| m.received && m.first_line().starts_with("NOTIFY "))
    {
        let seen = out
            .iter()
            .any(|n| n.cseq() == m.cseq() && n.header("Via") == m.header("Via"));
        if !seen {
            out.push(m);
        }
    }
    out
}

/// The body lines of a NOTIFY, checked for what every message-summary NOTIFY carries.
fn summary_lines(m: &Msg) -> Vec<String> {
    assert_eq!(m.cseq().1, "NOTIFY", "{}", m.text);
    assert_eq!(m.header("Event"), Some("message-summary"), "{}", m.text);
    assert_eq!(
        m.header("Content-Type"),
        Some("application/simple-message-summary"),
        "{}",
        m.text
    );
    m.body().lines().map(|l| l.trim().to_owned()).collect()
}

/// The realm of the digest challenge sipp received to its first SUBSCRIBE.
fn challenge_realm(msgs: &[Msg]) -> String {
    let challenge = answers(msgs, 1)
        .into_iter()
        .find(|m| m.first_line().starts_with("SIP/2.0 401"))
        .unwrap_or_else(|| panic!("no digest challenge: {msgs:?}"));
    let auth = challenge.header("WWW-Authenticate").unwrap_or_default();
    auth.split_once("realm=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(realm, _)| realm.to_owned())
        .unwrap_or_else(|| panic!("no realm: {}", challenge.text))
}

/// sipp subscribing as `watcher` to `mailbox`'s message summary with `scenario`, from 127.0.0.1, in
/// a fresh subdirectory `name` of `dir` (to be run).
fn subscriber(
    lab: &Lab,
    dir: &Path,
    name: &str,
    scenario: &str,
    (watcher, mailbox): (&str, &str),
) -> (Sipp, std::path::PathBuf) {
    let target = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port)).to_string();
    let run = sipp::subdir(dir, name);
    let csv = sipp::credentials(&run, "phone.csv", watcher, SECRET);
    let sipp = Sipp::new(scenario)
        .to(&target)
        .args(["-s", mailbox])
        .args(["-auth_uri", &format!("{mailbox}@{target}")])
        .args(["-inf", &csv, "-m", "1"])
        .on("127.0.0.1");
    (sipp, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_is_told_its_own_mailbox_has_no_messages() {
    let (lab, _client) = lab_without_pings(1, &["1001", "1002"], SECRET).await;
    let dir = tempfile::tempdir().unwrap();
    let (sipp, run) = subscriber(
        &lab,
        dir.path(),
        "own",
        "mwi-subscribe.xml",
        ("1002", "1002"),
    );
    sipp.timeout(Duration::from_secs(20))
        .run_ok(&run, &lab, "1002's message-summary subscription failed")
        .await;
    let msgs = trace(&run);
    let realm = challenge_realm(&msgs);

    let ok = answers(&msgs, 2)
        .into_iter()
        .find(|m| m.first_line().starts_with("SIP/2.0 200"))
        .unwrap_or_else(|| panic!("the SUBSCRIBE was not accepted: {msgs:?}"));
    assert_eq!(ok.header("Expires"), Some("600"), "{}", ok.text);
    assert!(
        ok.header("To").is_some_and(|t| t.contains(";tag=")),
        "{}",
        ok.text
    );

    let all = notifies(&msgs);
    let [first, last] = all[..] else {
        panic!("one NOTIFY with the counts, one ending it: {all:?}");
    };
    assert!(
        (first.secs() - ok.secs()).abs() < 1.0,
        "the counts did not go out at once: {all:?}"
    );
    let state = first.header("Subscription-State").unwrap_or_default();
    let left: u32 = state
        .strip_prefix("active;expires=")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not active with a duration: {}", first.text));
    assert!((590..=600).contains(&left), "{}", first.text);
    assert_eq!(
        summary_lines(first),
        [
            "Messages-Waiting: no".to_owned(),
            format!("Message-Account: sip:1002@{realm}"),
            "Voice-Message: 0/0 (0/0)".to_owned(),
        ],
        "{}",
        first.text
    );
    assert!(
        first.header("Content-Length").is_some_and(|l| l != "0"),
        "{}",
        first.text
    );

    // Unsubscribed: 200 with Expires 0, and a final NOTIFY with the counts.
    let ended = answers(&msgs, 4)
        .into_iter()
        .find(|m| m.first_line().starts_with("SIP/2.0 200"))
        .unwrap_or_else(|| panic!("the unsubscribe was not answered 200: {msgs:?}"));
    assert_eq!(ended.header("Expires"), Some("0"), "{}", ended.text);
    assert_eq!(
        last.header("Subscription-State"),
        Some("terminated;reason=timeout"),
        "{}",
        last.text
    );
    assert!(last.cseq().0 > first.cseq().0, "{all:?}");
    assert_eq!(
        summary_lines(last)[0],
        "Messages-Waiting: no",
        "{}",
        last.text
    );
    let logged = sipp::logs(&run);
    assert!(
        logged.contains("first NOTIFY: Messages-Waiting: no, Voice-Message: 0/0"),
        "{logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_that_do_not_change_are_not_told_again() {
    let (lab, client) = lab_without_pings(1, &["1001", "1002"], SECRET).await;
    let dir = tempfile::tempdir().unwrap();
    // Waits for a second NOTIFY that must not come: the counts stay 0/0.
    let (sipp, run) = subscriber(
        &lab,
        dir.path(),
        "wait",
        "mwi-subscribe-wait.xml",
        ("1002", "1002"),
    );
    let mut watching = sipp.args(["-timeout", "20s", "-timeout_error"]).spawn(&run);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while notifies(&trace(&run)).is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        notifies(&trace(&run)).len(),
        1,
        "the counts at once\n{}",
        sipp::logs(&run)
    );
    // Other replicated changes (each pass after a Raft entry reads the mailbox again), about
    // 1002 itself and another extension; then time for any NOTIFY they would cause.
    for (number, dnd) in [("1002", true), ("1001", true), ("1002", false)] {
        send(
            &client,
            Method::PUT,
            &format!("/api/v1/extensions/{number}/handling"),
            json!({"dnd": dnd}),
            StatusCode::OK,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = watching.exited(Duration::ZERO).await;
    assert!(
        status.is_none(),
        "the watcher ended: it saw a second NOTIFY ({status:?})\n{}",
        sipp::logs(&run)
    );
    let msgs = trace(&run);
    let all = notifies(&msgs);
    assert_eq!(all.len(), 1, "one NOTIFY only: {all:?}");
    assert_eq!(
        summary_lines(all[0])[2],
        "Voice-Message: 0/0 (0/0)",
        "{}",
        all[0].text
    );
    let logged = sipp::logs(&run);
    assert!(
        logged.contains("first NOTIFY: Messages-Waiting: no, Voice-Message: 0/0")
            && !logged.contains("second NOTIFY"),
        "{logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_extensions_mailbox_is_forbidden_whether_or_not_it_exists() {
    let (lab, _client) = lab_without_pings(1, &["1001", "1002"], SECRET).await;
    let dir = tempfile::tempdir().unwrap();
    let mut refusals = Vec::new();
    for (name, mailbox) in [("other", "1002"), ("unknown", "1999")] {
        let (sipp, run) = subscriber(
            &lab,
            dir.path(),
            name,
            "mwi-subscribe-refused.xml",
            ("1001", mailbox),
        );
        let text = sipp
            .timeout(Duration::from_secs(10))
            .run_ok(&run, &lab, &format!("{name}: not refused 403"))
            .await;
        let msgs = trace(&run);
        let refused = answers(&msgs, 2)
            .into_iter()
            .rfind(|m| !m.first_line().starts_with("SIP/2.0 1"))
            .unwrap_or_else(|| panic!("{name}: no answer\n{text}"));
        assert!(
            refused.first_line().starts_with("SIP/2.0 403"),
            "{}",
            refused.text
        );
        assert!(
            !msgs
                .iter()
                .any(|m| m.received && m.first_line().starts_with("NOTIFY ")),
            "{name}: told something\n{text}"
        );
        refusals.push(refused.first_line().to_owned());
    }
    assert_eq!(
        refusals[0], refusals[1],
        "nothing tells an existing mailbox from a missing one"
    );
}

// --- Failover, in the namespace lab --------------------------------------------------------------

/// Set in the environment of this test binary when it runs inside the lab's phone namespace.
const INSIDE: &str = "VOICEMAIL_MWI_IN_NETNS";

/// A phone subscribed to its mailbox through the VIP; the owner is killed: the new owner tells it
/// the counts at once, with a CSeq above the old owner's, and takes its unsubscribe.
#[test]
fn the_new_vip_owner_goes_on_telling_the_counts() {
    netns::in_namespace_lab(INSIDE, "failover_inside_the_lab");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run inside the namespace lab by the_new_vip_owner_goes_on_telling_the_counts"]
async fn failover_inside_the_lab() {
    if !netns::inside(INSIDE) {
        return;
    }
    let (mut lab, client, owner) = netns::vip_lab_without_pings(&["1001", "1002"], SECRET).await;
    let vip = SocketAddr::new(topology::VIP.into(), topology::SIP_PORT).to_string();
    let dir = tempfile::tempdir().unwrap();
    let run = sipp::subdir(dir.path(), "1002");
    let csv = sipp::credentials(&run, "phone.csv", "1002", SECRET);
    // It ends once it has a second NOTIFY: the new owner's.
    let watcher = Sipp::new("mwi-subscribe-wait.xml")
        .to(&vip)
        .args(["-s", "1002"])
        .args(["-auth_uri", &format!("1002@{vip}")])
        .args(["-inf", &csv, "-m", "1"])
        .args(["-timeout", "60s", "-timeout_error"]);
    let mut watching = on_phone_host(watcher, 1).spawn(&run);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while notifies(&trace(&run)).is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Whatever the owner sends on its own goes out before it dies (nothing: the counts stand).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = notifies(&trace(&run)).len();
    assert_eq!(before, 1, "the counts, once\n{}", sipp::logs(&run));

    let killed_at = std::time::Instant::now();
    lab.kill(owner);
    let new_owner = vip_owner(
        &client,
        lab.nodes.len(),
        Some(owner),
        Duration::from_secs(20),
    )
    .await;
    let status = watching.exited(Duration::from_secs(30)).await;
    let told = killed_at.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "no second NOTIFY from the new owner ({status:?})\n{}\n{}",
        sipp::logs(&run),
        lab.log_tail(new_owner)
    );
    let msgs = trace(&run);
    let all = notifies(&msgs);
    let [first, again, last] = all[..] else {
        panic!("the counts, the new owner's, the final one: {all:?}");
    };
    assert!(
        again.cseq().0 > first.cseq().0.max(100_000) && last.cseq().0 > again.cseq().0,
        "the new owner counts on from the old owner's CSeq, with headroom: {all:?}"
    );
    assert!(
        again
            .header("Subscription-State")
            .is_some_and(|s| s.starts_with("active;expires=")),
        "{}",
        again.text
    );
    assert_eq!(
        summary_lines(again)[0],
        "Messages-Waiting: no",
        "{}",
        again.text
    );
    assert_eq!(
        summary_lines(again)[2],
        "Voice-Message: 0/0 (0/0)",
        "{}",
        again.text
    );
    assert_eq!(
        last.header("Subscription-State"),
        Some("terminated;reason=timeout"),
        "{}",
        last.text
    );
    let logged = sipp::logs(&run);
    assert!(
        logged.contains("second NOTIFY: Messages-Waiting: no, Voice-Message: 0/0"),
        "{logged}"
    );
    eprintln!(
        "failover: VIP owners {owner} then {new_owner}; the new owner's NOTIFY (CSeq {}) within \
         {told:?} of the kill",
        again.cseq().0
    );
}
