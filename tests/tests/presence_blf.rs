//! Busy lamps (RFC 4235 `dialog` events) with sipp as the phones: a watcher SUBSCRIBEs to an
//! extension through the digest challenge and its lamp follows a call to it, idle, ringing, in the
//! call, idle again, until it unsubscribes; the SUBSCRIBEs the PBX refuses get the RFC 6665 answers,
//! and wrong credentials count towards a ban; across a kill of the VIP owner (in the namespace lab)
//! the new owner goes on notifying the same subscription, with CSeqs and versions above the old
//! owner's. The states are read from the watcher's SIP message trace.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use pbx_tests::api::{lab_without_pings, wait_registered};
use pbx_tests::netns::{self, on_phone_host, vip_owner};
use pbx_tests::process::KillOnDrop;
use pbx_tests::sipp::{self, Sipp, TraceMsg as Msg, trace};
use pbx_tests::{Lab, LabClient, LabOptions, topology};

const SECRET: &str = "Tr7!kq-Vw9zP";
/// How long the callee's phone rings before it answers (`blf-uas-ring-answer.xml`).
const RING: Duration = Duration::from_secs(2);
/// How long the caller holds the answered call.
const HOLD_MS: &str = "3000";
/// The longest a watcher runs.
const WATCH_FOR: Duration = Duration::from_secs(60);

/// One line per message of `msgs`: when, its direction, first line, CSeq, and for a NOTIFY its
/// subscription state and dialog state; for failure messages.
fn summary(msgs: &[Msg]) -> String {
    let mut out = String::new();
    for m in msgs {
        let dialog = m
            .body()
            .split_once("<state>")
            .and_then(|(_, rest)| rest.split_once('<'))
            .map_or("", |(state, _)| state);
        out.push_str(&format!(
            "{} {} {} | {} | {} {}\n",
            m.at,
            if m.received { "<-" } else { "->" },
            m.first_line(),
            m.header("CSeq").unwrap_or_default(),
            m.header("Subscription-State").unwrap_or_default(),
            dialog,
        ));
    }
    out
}

/// The responses sipp received to its request with CSeq number `cseq`.
fn answers(msgs: &[Msg], cseq: u32) -> Vec<&Msg> {
    msgs.iter()
        .filter(|m| m.received && m.first_line().starts_with("SIP/2.0 ") && m.cseq().0 == cseq)
        .collect()
}

/// What a busy lamp shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lamp {
    /// No `<dialog>`.
    Idle,
    Early,
    Confirmed,
}

/// A NOTIFY the watcher received.
#[derive(Debug)]
struct Notify {
    cseq: u32,
    /// Its Via: a retransmission has the same, another NOTIFY with the same CSeq another branch.
    via: String,
    version: u32,
    lamp: Lamp,
    /// `Subscription-State`.
    state: String,
    /// When it came, in seconds of the day.
    secs: f64,
}

/// Every NOTIFY the watcher received (retransmissions once: same CSeq and Via), in order,
/// checked for what every dialog-package NOTIFY carries.
fn notifies(msgs: &[Msg], watched: &str) -> Vec<Notify> {
    let mut out: Vec<Notify> = Vec::new();
    for m in msgs
        .iter()
        .filter(|m| m.received && m.first_line().starts_with("NOTIFY "))
    {
        let (cseq, method) = m.cseq();
        assert_eq!(method, "NOTIFY", "{}", m.text);
        let via = m.header("Via").unwrap_or_default().to_owned();
        if out.iter().any(|n| n.cseq == cseq && n.via == via) {
            continue;
        }
        assert_eq!(m.header("Event"), Some("dialog"), "{}", m.text);
        assert_eq!(
            m.header("Content-Type"),
            Some("application/dialog-info+xml"),
            "{}",
            m.text
        );
        let body = m.body();
        assert!(body.contains("state=\"full\""), "{}", m.text);
        assert!(
            body.contains(&format!("entity=\"sip:{watched}@")),
            "{}",
            m.text
        );
        let version = body
            .split_once("<dialog-info ")
            .and_then(|(_, rest)| rest.split_once(" version=\""))
            .and_then(|(_, rest)| rest.split('"').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no version: {}", m.text));
        let lamp = if body.contains("<state>early</state>") {
            Lamp::Early
        } else if body.contains("<state>confirmed</state>") {
            Lamp::Confirmed
        } else {
            assert!(!body.contains("<dialog "), "{}", m.text);
            Lamp::Idle
        };
        out.push(Notify {
            cseq,
            via,
            version,
            lamp,
            state: m.header("Subscription-State").unwrap_or("").to_owned(),
            secs: m.secs(),
        });
    }
    out
}

/// Waits up to `within` until the trace in `dir` holds `count` NOTIFYs; how many it holds.
async fn wait_notifies(dir: &Path, watched: &str, count: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let n = notifies(&trace(dir), watched).len();
        if n >= count || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts the life of one subscription as the watcher saw it: the challenge and the 200 with its
/// duration, the first NOTIFY within a second of it, NOTIFYs with strictly increasing CSeq and
/// version, the active ones showing `lamps`
/// (consecutive repeats of one state counted once), and the unsubscribe answered 200 with a
/// final NOTIFY `terminated;reason=timeout`. The NOTIFYs.
fn assert_subscription(msgs: &[Msg], watched: &str, lamps: &[Lamp], log: &str) -> Vec<Notify> {
    let challenge = answers(msgs, 1);
    assert!(
        challenge
            .iter()
            .any(|m| m.first_line().starts_with("SIP/2.0 401")
                && m.header("WWW-Authenticate")
                    .is_some_and(|v| v.starts_with("Digest "))),
        "no digest challenge\n{log}"
    );
    let accepted = answers(msgs, 2);
    let ok = accepted
        .iter()
        .find(|m| m.first_line().starts_with("SIP/2.0 200"))
        .unwrap_or_else(|| panic!("the SUBSCRIBE was not accepted\n{log}"));
    assert_eq!(ok.header("Expires"), Some("600"), "{}", ok.text);
    assert!(
        ok.header("To").is_some_and(|t| t.contains(";tag=")),
        "{}",
        ok.text
    );

    let all = notifies(msgs, watched);
    let first = all.first().unwrap_or_else(|| panic!("no NOTIFY\n{log}"));
    assert!(
        first.secs - ok.secs() < 1.0,
        "the state did not go out at once:\n{}",
        summary(msgs)
    );
    for pair in all.windows(2) {
        assert!(
            pair[1].cseq > pair[0].cseq && pair[1].version > pair[0].version,
            "CSeq and version must increase:\n{}",
            summary(msgs)
        );
    }
    let (last, active) = all
        .split_last()
        .unwrap_or_else(|| panic!("no NOTIFY\n{log}"));
    assert_eq!(
        last.state, "terminated;reason=timeout",
        "the last NOTIFY ends the subscription: {all:?}"
    );
    for n in active {
        let left: u32 = n
            .state
            .strip_prefix("active;expires=")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not active with a duration: {all:?}"));
        assert!((500..=600).contains(&left), "{all:?}");
    }
    let mut shown: Vec<Lamp> = active.iter().map(|n| n.lamp).collect();
    shown.dedup();
    assert_eq!(shown, lamps, "the lamp's states:\n{}", summary(msgs));
    if active.len() != lamps.len() {
        eprintln!("note: a state was notified twice in a row: {all:?}");
    }

    let ended = answers(msgs, 4);
    let ok = ended
        .iter()
        .find(|m| m.first_line().starts_with("SIP/2.0 200"))
        .unwrap_or_else(|| panic!("the unsubscribe was not answered 200\n{log}"));
    assert_eq!(ok.header("Expires"), Some("0"), "{}", ok.text);
    all
}

/// The callee: registers at `target`, then rings [`RING`] and answers one call (to be bound).
fn callee(target: &str, csv: &str) -> Sipp {
    Sipp::new("uas-register.xml")
        .to(target)
        .args(["-oocsf", &sipp::scenario("blf-uas-ring-answer.xml")])
        .args(["-inf", csv, "-m", "1", "-d", "120000"])
}

/// The watcher: subscribes to `watched`'s busy lamp until it has been busy and idle again, then
/// unsubscribes (to be bound).
fn watcher(target: &str, csv: &str, watched: &str) -> Sipp {
    Sipp::new("blf-watch.xml")
        .to(target)
        .args(["-s", watched])
        .args(["-auth_uri", &format!("{watched}@{target}")])
        .args(["-inf", csv, "-m", "1"])
}

/// The caller: calls `number`, holds the answered call [`HOLD_MS`], hangs up (to be bound).
fn caller(target: &str, csv: &str, number: &str) -> Sipp {
    Sipp::new("blf-uac-call.xml")
        .to(target)
        .args(["-s", number])
        .args(["-auth_uri", &format!("{number}@{target}")])
        .args(["-inf", csv, "-m", "1", "-d", HOLD_MS])
}

/// Starts `sipp` in `dir`, to end by itself within [`WATCH_FOR`] (killed when dropped).
fn start(sipp: Sipp, dir: &Path) -> KillOnDrop {
    let limit = format!("{}s", WATCH_FOR.as_secs());
    sipp.args(["-timeout", &limit, "-timeout_error"]).spawn(dir)
}

/// Waits for the watcher to end once the lamp is idle again; asserts it went as written.
async fn finished(watcher: &mut KillOnDrop, dir: &Path, lab: &Lab, node: usize) -> String {
    let status = watcher.exited(WATCH_FOR).await;
    let log = format!("{}\n{}", sipp::logs(dir), lab.log_tail(node));
    assert!(
        status.is_some_and(|s| s.success()),
        "the watcher failed ({status:?})\n{log}"
    );
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_busy_lamp_follows_a_call_from_ringing_to_hangup() {
    let started = Instant::now();
    let (lab, client) = lab_without_pings(3, &["1001", "1002", "1003"], SECRET).await;
    let target = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port)).to_string();
    let dir = tempfile::tempdir().unwrap();
    let (uas_dir, watch_dir, uac_dir) = (
        sipp::subdir(dir.path(), "1002"),
        sipp::subdir(dir.path(), "1003"),
        sipp::subdir(dir.path(), "1001"),
    );
    let csv = |d: &Path, n: &str| sipp::credentials(d, "phone.csv", n, SECRET);

    let _uas = callee(&target, &csv(&uas_dir, "1002"))
        .on("127.0.0.1")
        .spawn(&uas_dir);
    wait_registered(&client, "1002").await;
    let mut watching = start(
        watcher(&target, &csv(&watch_dir, "1003"), "1002").on("127.0.0.1"),
        &watch_dir,
    );
    // The lamp's first state comes at once: idle, 1002 registered and in no call.
    let first = wait_notifies(&watch_dir, "1002", 1, Duration::from_secs(5)).await;
    assert!(first >= 1, "no NOTIFY\n{}", sipp::logs(&watch_dir));
    let lit = Instant::now();

    caller(&target, &csv(&uac_dir, "1001"), "1002")
        .on("127.0.0.1")
        .run_ok(&uac_dir, &lab, "1001's call to 1002 failed")
        .await;
    let call_took = lit.elapsed();
    let log = finished(&mut watching, &watch_dir, &lab, 0).await;

    let msgs = trace(&watch_dir);
    let all = assert_subscription(
        &msgs,
        "1002",
        &[Lamp::Idle, Lamp::Early, Lamp::Confirmed, Lamp::Idle],
        &log,
    );
    assert_eq!(all.last().unwrap().lamp, Lamp::Idle);
    // The lamp follows the call as it goes: it rang [`RING`], was held 3 s.
    let at = |lamp: Lamp| all.iter().find(|n| n.lamp == lamp).unwrap().secs;
    let (rang, held) = (
        at(Lamp::Confirmed) - at(Lamp::Early),
        all[all.len() - 2].secs - at(Lamp::Confirmed),
    );
    assert!(
        rang >= RING.as_secs_f64() - 0.3 && rang < RING.as_secs_f64() + 1.5,
        "early for {rang} s, the phone rang {RING:?}\n{}",
        summary(&msgs)
    );
    assert!(
        (2.7..4.5).contains(&held),
        "confirmed for {held} s, the call was held 3 s\n{}",
        summary(&msgs)
    );
    assert!(call_took >= RING, "the call took {call_took:?}");
    // Node 0 counts the NOTIFYs its passes send (the final one aside).
    let sent = client
        .metric(0, "pbx_presence_notifies_total")
        .await
        .unwrap();
    assert!(sent >= 4.0, "{sent} NOTIFYs counted");
    eprintln!(
        "busy lamp: {} NOTIFYs, CSeqs {:?}, in {:?}",
        all.len(),
        all.iter().map(|n| n.cseq).collect::<Vec<_>>(),
        started.elapsed()
    );
}

/// Runs `blf-subscribe-refused.xml` as 1003 from 127.0.0.1 in a fresh subdirectory `name` of `dir`:
/// a SUBSCRIBE to `watched` with `event` and `expires` (`to_tag`: `;tag=…` for one inside a
/// dialog), authenticated; the PBX's final answer.
async fn refused(
    lab: &Lab,
    dir: &Path,
    name: &str,
    watched: &str,
    (event, expires, to_tag): (&str, &str, &str),
) -> Msg {
    let target = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port)).to_string();
    let run = sipp::subdir(dir, name);
    let csv = sipp::credentials(&run, "phone.csv", "1003", SECRET);
    let msgs_text = Sipp::new("blf-subscribe-refused.xml")
        .to(&target)
        .args(["-s", watched])
        .args(["-auth_uri", &format!("{watched}@{target}")])
        .args(["-key", "event", event, "-key", "expires", expires])
        .args(["-key", "to_tag", to_tag])
        .args(["-inf", &csv, "-m", "1"])
        .timeout(Duration::from_secs(10))
        .on("127.0.0.1")
        .run_ok(&run, lab, &format!("{name}: not refused as expected"))
        .await;
    let mut msgs = trace(&run);
    let last = msgs
        .iter()
        .rposition(|m| m.received && m.cseq() == (2, "SUBSCRIBE"))
        .unwrap_or_else(|| panic!("{name}: no answer\n{msgs_text}"));
    msgs.swap_remove(last)
}

/// Waits up to `within` until node 0 lists `ip` as actively banned; the ban.
async fn wait_banned(client: &LabClient, ip: &str, within: Duration) -> Option<serde_json::Value> {
    let deadline = Instant::now() + within;
    loop {
        let bans = client.get_json(0, "/api/v1/bans").await.unwrap();
        let ban = bans["bans"]
            .as_array()
            .and_then(|a| a.iter().find(|b| b["ip"] == ip && b["active"] == true))
            .cloned();
        if ban.is_some() || Instant::now() >= deadline {
            return ban;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_subscribes_get_the_rfc_6665_answers_and_bad_digests_count() {
    let (lab, client) = lab_without_pings(1, &["1002", "1003"], SECRET).await;
    let dir = tempfile::tempdir().unwrap();

    // A package the PBX does not serve: 489, with the ones it does.
    let bad_event = refused(&lab, dir.path(), "489", "1002", ("conference", "600", "")).await;
    assert!(
        bad_event.first_line().starts_with("SIP/2.0 489"),
        "{}",
        bad_event.text
    );
    let allowed = bad_event.header("Allow-Events").unwrap_or_default();
    assert!(
        allowed == "dialog, presence, message-summary",
        "{}",
        bad_event.text
    );
    // Too short: 423 with the shortest it takes.
    let brief = refused(&lab, dir.path(), "423", "1002", ("dialog", "10", "")).await;
    assert!(
        brief.first_line().starts_with("SIP/2.0 423"),
        "{}",
        brief.text
    );
    assert_eq!(brief.header("Min-Expires"), Some("60"), "{}", brief.text);
    // No such extension, asked by an authenticated phone: 404.
    let unknown = refused(&lab, dir.path(), "404", "1999", ("dialog", "600", "")).await;
    assert!(
        unknown.first_line().starts_with("SIP/2.0 404"),
        "{}",
        unknown.text
    );
    // A refresh of a subscription the PBX does not hold: 481.
    let gone = refused(
        &lab,
        dir.path(),
        "481",
        "1002",
        ("dialog", "600", ";tag=gone"),
    )
    .await;
    assert!(
        gone.first_line().starts_with("SIP/2.0 481"),
        "{}",
        gone.text
    );

    // Without credentials: a digest challenge. With wrong ones: another, and each wrong digest is
    // a failure the defence counts; from an untrusted address the sixth bans the source.
    let target = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port)).to_string();
    let failures = "pbx_sip_auth_failures_total{reason=\"bad_credentials\"}";
    let before = client.metric(0, failures).await.unwrap();
    let guess = |name: &str, attempts: &str| {
        let run = sipp::subdir(dir.path(), name);
        let csv = sipp::credentials(&run, "phone.csv", "1003", "Not-the-Secret-1");
        let sipp = Sipp::new("blf-subscribe-unauthorized.xml")
            .to(&target)
            .args(["-s", "1002"])
            .args(["-auth_uri", &format!("1002@{target}")])
            .args(["-inf", &csv, "-m", attempts, "-l", "1"])
            .timeout(Duration::from_secs(10))
            .on("127.0.0.9");
        (sipp, run)
    };
    let (five, five_dir) = guess("guesses", "5");
    let msgs = five
        .run_ok(
            &five_dir,
            &lab,
            "wrong credentials were not challenged again",
        )
        .await;
    assert_eq!(
        msgs.matches("SIP/2.0 401").count(),
        10,
        "each attempt challenged twice\n{msgs}"
    );
    let counted = client.metric(0, failures).await.unwrap() - before;
    assert_eq!(counted, 5.0, "wrong digests counted");
    assert!(
        wait_banned(&client, "127.0.0.9", Duration::ZERO)
            .await
            .is_none(),
        "banned before the threshold"
    );
    let (sixth, sixth_dir) = guess("sixth", "1");
    // The source may get no answer to this one: it is banned as the failure is counted.
    let _ = sixth.timeout(Duration::from_secs(3)).run(&sixth_dir).await;
    let ban = wait_banned(&client, "127.0.0.9", Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("127.0.0.9 not banned\n{}", lab.log_tail(0)));
    assert_eq!(ban["reason"], "auth-failures", "{ban}");
}

// --- Failover, in the namespace lab --------------------------------------------------------------

/// Set in the environment of this test binary when it runs inside the lab's phone namespace.
const INSIDE: &str = "PRESENCE_BLF_IN_NETNS";

/// A watcher subscribed through the VIP; the owner is killed, restarted, and the second owner
/// killed before any refresh of the subscription: each new owner sends the current state at once and
/// every change after it, with CSeqs and versions above every earlier owner's.
#[test]
fn each_new_vip_owner_goes_on_notifying_with_higher_cseqs() {
    netns::in_namespace_lab(INSIDE, "second_failover_inside_the_lab");
}

/// Kills the VIP owner `owner`; the node that takes over, once the watcher's trace in `dir` holds
/// a NOTIFY more than `seen` (the new owner's current state, sent at once), and how long both took.
async fn take_over(
    lab: &mut Lab,
    client: &LabClient,
    owner: usize,
    dir: &Path,
    seen: usize,
) -> (usize, Duration, Duration) {
    let killed_at = Instant::now();
    lab.kill(owner);
    let new_owner = vip_owner(
        client,
        lab.nodes.len(),
        Some(owner),
        Duration::from_secs(20),
    )
    .await;
    let claimed = killed_at.elapsed();
    let got = wait_notifies(dir, "1002", seen + 1, Duration::from_secs(10)).await;
    assert!(
        got > seen,
        "the new owner (node {new_owner}) sent nothing\n{}\n{}",
        sipp::logs(dir),
        lab.log_tail(new_owner)
    );
    (new_owner, claimed, killed_at.elapsed())
}

/// A watcher subscribed through the VIP; the owner is killed, restarted, and the new owner killed
/// too; then a call to the watched extension. Every owner after the first
/// sends the current state at once, and the call's states after it, all with CSeqs and versions
/// above every earlier NOTIFY's.
async fn failover() {
    // One lab, two takeovers: the first is checked on the way.
    if std::env::var_os(INSIDE).is_none() {
        eprintln!("not inside the namespace lab: skipped");
        return;
    }
    let started = Instant::now();
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 0".into(),
        ..LabOptions::default()
    };
    let (mut lab, client, first_owner) =
        netns::vip_lab(options, &["1001", "1002", "1003"], SECRET).await;
    let lab_up = started.elapsed();
    let vip = SocketAddr::new(topology::VIP.into(), topology::SIP_PORT).to_string();
    let dir = tempfile::tempdir().unwrap();
    let (uas_dir, watch_dir, uac_dir) = (
        sipp::subdir(dir.path(), "1002"),
        sipp::subdir(dir.path(), "1003"),
        sipp::subdir(dir.path(), "1001"),
    );
    let csv = |d: &Path, n: &str| sipp::credentials(d, "phone.csv", n, SECRET);

    let _uas = on_phone_host(callee(&vip, &csv(&uas_dir, "1002")), 0).spawn(&uas_dir);
    wait_registered(&client, "1002").await;
    let mut watching = start(
        on_phone_host(watcher(&vip, &csv(&watch_dir, "1003"), "1002"), 1),
        &watch_dir,
    );
    let first = wait_notifies(&watch_dir, "1002", 1, Duration::from_secs(5)).await;
    assert!(first >= 1, "no NOTIFY\n{}", sipp::logs(&watch_dir));
    // Whatever the owner sends on its own goes out before it dies.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = notifies(&trace(&watch_dir), "1002");

    let (mut owner, claimed, renotified) =
        take_over(&mut lab, &client, first_owner, &watch_dir, before.len()).await;
    let mut owners = vec![first_owner, owner];
    lab.restart(first_owner).await.unwrap();
    client.sync(first_owner).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let seen = notifies(&trace(&watch_dir), "1002").len();
    owner = take_over(&mut lab, &client, owner, &watch_dir, seen)
        .await
        .0;
    owners.push(owner);

    on_phone_host(caller(&vip, &csv(&uac_dir, "1001"), "1002"), 2)
        .run_ok(
            &uac_dir,
            &lab,
            "1001's call to 1002 after the failover failed",
        )
        .await;
    let log = finished(&mut watching, &watch_dir, &lab, owner).await;

    let msgs = trace(&watch_dir);
    // Idle before the kill and after it (each new owner's first NOTIFY), then the call.
    let all = assert_subscription(
        &msgs,
        "1002",
        &[Lamp::Idle, Lamp::Early, Lamp::Confirmed, Lamp::Idle],
        &log,
    );
    let (old, new) = all.split_at(before.len());
    assert!(!old.is_empty() && new.len() >= 5, "{}", summary(&msgs));
    assert_eq!(
        new[0].lamp,
        Lamp::Idle,
        "the state at the takeover: {all:?}"
    );
    let (old_cseq, old_version) = (
        old.iter().map(|n| n.cseq).max().unwrap(),
        old.iter().map(|n| n.version).max().unwrap(),
    );
    assert!(
        new.iter()
            .all(|n| n.cseq > old_cseq && n.version > old_version),
        "the new owner's NOTIFYs must count on from the old owner's: {all:?}"
    );
    let retransmitted = msgs
        .iter()
        .filter(|m| m.received && m.first_line().starts_with("NOTIFY "))
        .count()
        - all.len();
    eprintln!(
        "failover: lab up in {lab_up:?}; VIP owners {owners:?}, the first takeover in {claimed:?}, \
         its first NOTIFY {renotified:?} after the kill; NOTIFYs (CSeq, version, lamp): {:?}, \
         {retransmitted} retransmitted; {:?} in all",
        all.iter()
            .map(|n| (n.cseq, n.version, n.lamp))
            .collect::<Vec<_>>(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run inside the namespace lab by each_new_vip_owner_goes_on_notifying_with_higher_cseqs"]
async fn second_failover_inside_the_lab() {
    failover().await;
}
