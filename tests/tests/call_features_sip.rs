//! Call features end to end with real SIP peers: sipp as the phones (and as the provider behind a
//! peer trunk) through a 3-node cluster, the features configured through the admin API and by
//! feature codes the phones dial. One lab carries every case, one after the other:
//!
//! 1. **Ring group, hunt.** Group 600 hunts 1002, 1003, 1004: 1002's phone answers 486 Busy Here,
//!    1003 has no phone registered, 1004's phone answers. 1001 calls 600 and is answered within
//!    seconds (neither skipped member holds the call for its 10 s); 1004 was sent the INVITE only
//!    after 1002's phone answered busy, and the CDR (read on another node) says callee 600,
//!    answered.
//! 2. **Do not disturb by feature code.** 1004's phone dials `*78` (digest-challenged like any
//!    call) and gets `480 Do Not Disturb On`; the API shows `dnd` on and the audit names the
//!    extension; 1001 calling 1004 now gets 486 (a `busy` CDR) without 1004's phone ringing.
//!    `*721003` sets and `*73` clears forwarding, `*79` ends do-not-disturb (each a 480 naming the
//!    new state), `*99` is no feature (404), `*72` without a number is incomplete (484); after
//!    that 1004 rings and answers again. Feature codes leave no CDR.
//! 3. **Forward on no answer.** 1002 forwards to 1004 after 5 s without an answer; 1002's phone
//!    now only rings (180) and takes the CANCEL (200, then 487). 1001 calls 1002 and is answered by
//!    1004 about 5 s later; the CDR says callee 1002, answered, and when.
//! 4. **Forward to an outside number, refused, then permitted.** A peer trunk to a sipp provider on
//!    127.0.0.2 and an outbound route `national` (9NXXXXXX, strip 1). 1002 forwards every call to
//!    95550100 but its permission group lists no route: 1001's call to 1002 gets
//!    `403 Route Not Permitted`, a `denied` CDR whose cause names the route, and an
//!    `outbound_denied` event naming 1002 (the forwarder's permissions apply). With the
//!    route put in 1002's group, the same call goes out on the trunk as 5550100 (the provider's
//!    scenario fails on any other number) and is answered, the CDR naming the trunk. The same with a
//!    forward on no answer: 1002's phone rings 5 s first, then the refusal (`403`) or the trunk.
//! 5. **Pickup.** 1002 and 1003 share the pickup group `sales`. With nothing ringing, 1003's `*8`
//!    gets `480 No Call To Pick Up`. Then 1002's phone only rings for 1001's call: 1004, in no
//!    group with 1002, dials `**1002` and gets the same 480; 1003 dials `*8` with its own G.711
//!    offer and is answered 200 with an SDP answer on the PBX's ports, 1002's phone is cancelled
//!    (487), 1001 hears 200 with an answer made from 1003's offer, 1003's audio reaches 1001 and
//!    is echoed back, and the CDR says 1001 to 1002, answered.
//! 6. **A call from the trunk, transferred.** The carrier (sipp on 127.0.0.2, the trunk of case 4)
//!    calls DID 5550199, routed to 1002; 1002's phone answers and refers the call to 1004 (blind).
//!    The carrier's caller is re-INVITEd with 1004's offer over the trunk and its audio reaches 1004;
//!    the call is then between the carrier's number and 1004, and the CDR is the inbound call to
//!    1002 through the trunk.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use pbx_tests::api::{
    calls_reach, create, inbound_to_extension, lab_without_pings, peer_trunk, poll, poll_node,
    send, wait_item, wait_json, wait_registered,
};
use pbx_tests::process::KillOnDrop;
use pbx_tests::sipp::{self, Sipp, logs, messages, subdir};
use pbx_tests::{Lab, LabClient, free_sip_port};

const SECRET: &str = "Tr7!kq-Vw9zP";
/// The provider's address; the phones use 127.0.0.1.
const PROVIDER_IP: &str = "127.0.0.2";
/// How long a phone's sipp stays registered (it is killed when its case is done).
const PHONE_HOLD_MS: &str = "300000";
/// 1002's forward on no answer.
const NO_ANSWER_SECS: u64 = 5;

/// The lab, the phones' credentials and a directory for sipp's logs.
struct Site {
    lab: Lab,
    client: LabClient,
    /// Node 0's SIP address, which every phone uses.
    target: String,
    dir: TempDir,
    /// Injection files with each extension's credentials.
    csv: Vec<(&'static str, String)>,
    /// 1002's phone always uses this port, so that a phone started for another case replaces
    /// the binding of the one before (same contact) instead of adding one.
    port_1002: u16,
}

impl Site {
    async fn start() -> Self {
        // sipp phones expect only their calls, so the PBX's OPTIONS pings are off.
        let numbers = ["1001", "1002", "1003", "1004"];
        let (lab, client) = lab_without_pings(3, &numbers, SECRET).await;
        let target = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port)).to_string();
        let dir = tempfile::tempdir().unwrap();
        let csv = numbers
            .iter()
            .map(|n| {
                let file = sipp::credentials(dir.path(), &format!("{n}.csv"), n, SECRET);
                (*n, file)
            })
            .collect();
        Self {
            lab,
            client,
            target,
            dir,
            csv,
            port_1002: free_sip_port(),
        }
    }

    fn csv(&self, number: &str) -> &str {
        &self.csv.iter().find(|(n, _)| *n == number).unwrap().1
    }

    /// A fresh directory for one sipp's logs.
    fn subdir(&self, name: &str) -> PathBuf {
        subdir(self.dir.path(), name)
    }

    /// `number`'s phone, registered from 127.0.0.1 (`port`, or a free one), answering every call it
    /// is sent with scenario `ooc`; logging in a fresh directory `name`, which is returned.
    fn phone(
        &self,
        name: &str,
        number: &str,
        ooc: &str,
        port: Option<u16>,
    ) -> (KillOnDrop, PathBuf) {
        let dir = self.subdir(name);
        let sipp = Sipp::new("uas-register.xml")
            .to(&self.target)
            .args(["-oocsf", &sipp::scenario(ooc)])
            .args(["-inf", self.csv(number), "-m", "1", "-d", PHONE_HOLD_MS]);
        let sipp = match port {
            Some(port) => sipp.listen("127.0.0.1", port),
            None => sipp.on("127.0.0.1"),
        };
        (sipp.spawn(&dir), dir)
    }

    /// `caller`'s phone dialling `number` once with scenario `name`, in a fresh directory `run`;
    /// asserts that sipp's scenario went as written, with `what` went wrong otherwise. The SIP
    /// messages it exchanged, and how long it took.
    async fn dial(
        &self,
        run: &str,
        caller: &str,
        number: &str,
        name: &str,
        what: &str,
    ) -> (String, Duration) {
        let dir = self.subdir(run);
        let started = Instant::now();
        let call = Sipp::phone_call(&self.target, self.csv(caller), number, name);
        let status = call.run(&dir).await;
        let took = started.elapsed();
        assert!(
            status.success(),
            "{what}\n{}\n{}\n{}",
            logs(&dir),
            self.phone_logs(),
            self.lab.log_tail(0)
        );
        (messages(&dir), took)
    }

    /// Every phone's logs, for a failure message.
    fn phone_logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("phone-") {
                out.push_str(&format!(
                    "=== {name}\n{}",
                    sipp::log_tails(&entry.path(), 3000)
                ));
            }
        }
        out
    }

    /// Extension `number`'s handling, as `PUT` replaces it.
    async fn set_handling(&self, number: &str, handling: Value) -> Value {
        let path = format!("/api/v1/extensions/{number}/handling");
        send(&self.client, Method::PUT, &path, handling, StatusCode::OK).await
    }

    async fn handling(&self, number: &str) -> Value {
        let path = format!("/api/v1/extensions/{number}/handling");
        self.client.get_json(0, &path).await.unwrap()
    }

    /// The first CDR `pred` accepts, waiting for it.
    async fn cdr(&self, pred: impl Fn(&Value) -> bool) -> Value {
        wait_item(&self.client, "/api/v1/cdrs", "cdrs", pred).await
    }

    /// The CDRs as of now.
    async fn cdrs(&self) -> Vec<Value> {
        let all = self.client.get_json(0, "/api/v1/cdrs").await.unwrap();
        all["cdrs"].as_array().unwrap().clone()
    }

    /// Waits until node 0 carries no call: the one before is over on every side.
    async fn idle(&self) {
        assert!(
            calls_reach(&self.client, 0, Duration::from_secs(10)).await,
            "a call is still up\n{}",
            self.lab.log_tail(0)
        );
    }
}

/// How many INVITEs a UAS in `dir` was sent for `number` (its message trace).
fn invites_for(dir: &Path, number: &str) -> usize {
    messages(dir)
        .lines()
        .filter(|l| l.starts_with(&format!("INVITE sip:{number}@")))
        .count()
}

/// When each message of sipp's message trace `trace` whose first line starts with `start` was
/// sent or received (sipp's `YYYY-MM-DD HH:MM:SS.micros`, which sorts as time does).
fn times_of(trace: &str, start: &str) -> Vec<String> {
    let mut times = Vec::new();
    let mut at: Option<&str> = None;
    for line in trace.lines() {
        if let Some(rest) = line.strip_prefix("-----") {
            at = Some(rest.trim_start_matches('-').trim());
        } else if line.trim().is_empty() || line.starts_with("UDP message") {
            continue;
        } else if let Some(t) = at.take()
            && line.starts_with(start)
        {
            times.push(t.to_owned());
        }
    }
    times
}

/// Waits until `dir`'s message trace holds `count` INVITEs for `number`.
async fn wait_invites(dir: &Path, number: &str, count: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = invites_for(dir, number);
        if n >= count || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The latest `expires_at` of `number`'s registrations on node 0 (0 for none).
async fn latest_expiry(client: &LabClient, number: &str) -> u64 {
    let path = format!("/api/v1/extensions/{number}/registrations");
    let regs = client.get_json(0, &path).await.unwrap();
    regs["registrations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["expires_at"].as_u64())
        .max()
        .unwrap_or(0)
}

/// Waits until `number` registered again (a binding expiring later than `before`) with a single
/// binding: a phone started on the port of the one before replaced its contact.
async fn wait_reregistered(client: &LabClient, number: &str, before: u64) {
    let path = format!("/api/v1/extensions/{number}/registrations");
    let regs = poll(client, &path, Duration::from_secs(15), |r| {
        r["registrations"].as_array().is_some_and(|a| {
            a.iter()
                .any(|b| b["expires_at"].as_u64().is_some_and(|e| e > before))
        })
    })
    .await;
    let bindings = regs["registrations"].as_array().unwrap();
    assert!(
        bindings
            .iter()
            .any(|b| b["expires_at"].as_u64().is_some_and(|e| e > before)),
        "{number} did not register again: {regs}"
    );
    assert_eq!(bindings.len(), 1, "{regs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_groups_dnd_codes_and_forwards_with_sipp_phones() {
    let site = Site::start().await;
    let client = &site.client;

    // 1004 answers every call it is sent, for the whole test.
    let (_phone_1004, dir_1004) = site.phone("phone-1004", "1004", "uas-answer.xml", None);
    wait_registered(client, "1004").await;

    ring_group_hunt(&site, &dir_1004).await;
    dnd_by_feature_codes(&site, &dir_1004).await;
    forward_on_no_answer(&site, &dir_1004).await;
    outside_forward(&site).await;
    pickup(&site).await;
    trunk_call_transfer(&site).await;

    // Every call released its media, none is left.
    site.idle().await;
    let in_use = client
        .metric(0, "pbx_media_port_pairs_in_use")
        .await
        .unwrap();
    assert_eq!(in_use, 0.0, "media port pairs still in use");
}

/// Case 1: hunt group 600 (1002 busy, 1003 without a phone, 1004 answers).
async fn ring_group_hunt(site: &Site, dir_1004: &Path) {
    let client = &site.client;
    let (_busy, busy_dir) = site.phone(
        "phone-1002-busy",
        "1002",
        "uas-busy.xml",
        Some(site.port_1002),
    );
    wait_registered(client, "1002").await;
    let group = json!({
        "number": "600", "name": "Support", "strategy": "hunt",
        "members": ["1002", "1003", "1004"], "ring_secs": 10,
    });
    let created = create(client, "/api/v1/ring-groups", group).await;
    assert_eq!(created["strategy"], "hunt", "{created}");
    client.sync(0).await.unwrap();

    let before_1004 = invites_for(dir_1004, "1004");
    let (trace, took) = site
        .dial(
            "hunt-call",
            "1001",
            "600",
            "uac-call.xml",
            "the call to hunt group 600 was not answered",
        )
        .await;
    assert!(trace.contains("SIP/2.0 200 OK"), "{trace}");
    // Neither the busy member nor the one without a phone held the call for its ring time.
    assert!(
        took < Duration::from_secs(5),
        "the hunt took {took:?}; each member rings 10 s"
    );

    // 1002 was tried first, and said busy; 1004 took the call after that.
    let busy_text = logs(&busy_dir);
    assert!(
        busy_text.contains("busy INVITE for 1002"),
        "1002's phone never saw the INVITE\n{busy_text}"
    );
    assert!(
        messages(&busy_dir).contains("SIP/2.0 486 Busy Here"),
        "{busy_text}"
    );
    assert_eq!(
        wait_invites(dir_1004, "1004", before_1004 + 1).await,
        before_1004 + 1,
        "1004's phone should have been sent the call once\n{}",
        messages(dir_1004)
    );
    let busy_at = times_of(&messages(&busy_dir), "SIP/2.0 486 ");
    let rung_at = times_of(&messages(dir_1004), "INVITE sip:1004@");
    assert!(
        busy_at.len() == 1 && rung_at.len() == 1 && busy_at[0] <= rung_at[0],
        "1004 should ring once 1002 said busy: 486 at {busy_at:?}, 1004's INVITE at {rung_at:?}"
    );

    // The CDR, as another node has it.
    let cdrs = poll_node(client, 2, "/api/v1/cdrs", Duration::from_secs(10), |c| {
        c["cdrs"]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c["callee"] == "600"))
    })
    .await;
    let cdr = cdrs["cdrs"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["callee"] == "600"))
        .unwrap_or_else(|| panic!("no CDR for the call to 600 on node 2: {cdrs}"));
    assert_eq!(cdr["caller"], "1001", "{cdr}");
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(cdr["sip_status"], 200, "{cdr}");
    assert_eq!(cdr["hangup_side"], "caller", "{cdr}");
    site.idle().await;
}

/// Case 2: `*78`, `*72…`, `*73`, `*79` and two bad codes from 1004's phone.
async fn dnd_by_feature_codes(site: &Site, dir_1004: &Path) {
    let client = &site.client;
    let code = |run: &'static str, dialled: &'static str| async move {
        let what = format!("{dialled} was not answered as a feature code");
        let (trace, _) = site
            .dial(run, "1004", dialled, "uac-call-failed.xml", &what)
            .await;
        trace
    };

    let trace = code("dnd-on", "*78").await;
    assert!(trace.contains("SIP/2.0 480 Do Not Disturb On"), "{trace}");
    let handling = site.handling("1004").await;
    assert_eq!(handling["dnd"], true, "{handling}");
    let audit = wait_item(client, "/api/v1/audit", "entries", |e| {
        e["action"] == "feature code *78: Do Not Disturb On"
    })
    .await;
    assert_eq!(audit["actor"], "extension 1004", "{audit}");

    // 1001 calling 1004 is told busy; 1004's phone is not rung.
    let before_1004 = invites_for(dir_1004, "1004");
    let (trace, _) = site
        .dial(
            "dnd-call",
            "1001",
            "1004",
            "uac-call-failed.xml",
            "the call to 1004 on do-not-disturb was not answered busy",
        )
        .await;
    assert!(trace.contains("SIP/2.0 486 Busy Here"), "{trace}");
    let busy = site
        .cdr(|c| c["callee"] == "1004" && c["disposition"] == "busy")
        .await;
    assert_eq!(busy["caller"], "1001", "{busy}");
    assert_eq!(busy["sip_status"], 486, "{busy}");
    assert_eq!(invites_for(dir_1004, "1004"), before_1004, "1004 was rung");

    // Forwarding on and off by code; then do-not-disturb off.
    let trace = code("forward-on", "*721003").await;
    assert!(trace.contains("SIP/2.0 480 Forwarding To 1003"), "{trace}");
    let handling = site.handling("1004").await;
    assert_eq!(handling["forward_always"], "1003", "{handling}");
    assert_eq!(handling["dnd"], true, "the other settings stay: {handling}");
    let trace = code("forward-off", "*73").await;
    assert!(trace.contains("SIP/2.0 480 Forwarding Off"), "{trace}");
    let trace = code("dnd-off", "*79").await;
    assert!(trace.contains("SIP/2.0 480 Do Not Disturb Off"), "{trace}");
    let handling = site.handling("1004").await;
    assert_eq!(handling["dnd"], false, "{handling}");
    assert_eq!(handling["forward_always"], Value::Null, "{handling}");

    // Codes that cannot be applied change nothing.
    let trace = code("no-such-code", "*99").await;
    assert!(trace.contains("SIP/2.0 404 "), "{trace}");
    let trace = code("no-number", "*72").await;
    assert!(trace.contains("SIP/2.0 484 "), "{trace}");
    assert_eq!(site.handling("1004").await, handling);

    // 1004 rings again, and answers.
    site.dial(
        "after-dnd-call",
        "1001",
        "1004",
        "uac-call.xml",
        "1004 did not answer once do-not-disturb was off",
    )
    .await;
    assert_eq!(
        wait_invites(dir_1004, "1004", before_1004 + 1).await,
        before_1004 + 1
    );
    let answered = site
        .cdr(|c| c["callee"] == "1004" && c["disposition"] == "answered")
        .await;
    assert_eq!(answered["caller"], "1001", "{answered}");
    // Feature codes are no calls: no CDR names one.
    assert!(
        !site
            .cdrs()
            .await
            .iter()
            .any(|c| c["callee"].as_str().is_some_and(|n| n.starts_with('*'))),
        "{:?}",
        site.cdrs().await
    );
    site.idle().await;
}

/// Case 3: 1002 rings without answering and forwards to 1004 after 5 s.
async fn forward_on_no_answer(site: &Site, dir_1004: &Path) {
    let client = &site.client;
    let handling = site
        .set_handling(
            "1002",
            json!({"forward_no_answer": "1004", "no_answer_secs": NO_ANSWER_SECS}),
        )
        .await;
    assert_eq!(handling["forward_no_answer"], "1004", "{handling}");
    // 1002's phone now only rings: another sipp on the same contact.
    let before = latest_expiry(client, "1002").await;
    let (_ringing, ring_dir) = site.phone(
        "phone-1002-ringing",
        "1002",
        "uas-ring-no-answer.xml",
        Some(site.port_1002),
    );
    wait_reregistered(client, "1002", before).await;
    client.sync(0).await.unwrap();

    let before_1004 = invites_for(dir_1004, "1004");
    let (trace, took) = site
        .dial(
            "no-answer-call",
            "1001",
            "1002",
            "uac-call.xml",
            "the call to 1002 was not answered by 1004",
        )
        .await;
    assert!(trace.contains("SIP/2.0 200 OK"), "{trace}");
    assert!(
        took >= Duration::from_secs(NO_ANSWER_SECS - 1),
        "answered after {took:?}, before 1002 rang {NO_ANSWER_SECS} s"
    );

    // 1002 rang, was cancelled; 1004 answered.
    let ring_text = logs(&ring_dir);
    assert!(
        ring_text.contains("ringing INVITE for 1002") && ring_text.contains("cancelled"),
        "1002's phone was not rung and then cancelled\n{ring_text}"
    );
    assert!(
        messages(&ring_dir).contains("SIP/2.0 487 Request Terminated"),
        "{ring_text}"
    );
    assert_eq!(
        wait_invites(dir_1004, "1004", before_1004 + 1).await,
        before_1004 + 1,
        "1004's phone should have been sent the call once\n{}",
        messages(dir_1004)
    );
    let cdr = site
        .cdr(|c| c["callee"] == "1002" && c["disposition"] == "answered")
        .await;
    assert_eq!(cdr["caller"], "1001", "{cdr}");
    let rang_ms = cdr["answered_at"].as_u64().unwrap() - cdr["started_at"].as_u64().unwrap();
    assert!(
        (NO_ANSWER_SECS * 1000..NO_ANSWER_SECS * 1000 + 5000).contains(&rang_ms),
        "answered {rang_ms} ms after the call started: {cdr}"
    );
    site.idle().await;
}

/// Case 4: 1002 forwards every call to 95550100, first without the route in its group.
async fn outside_forward(site: &Site) {
    let client = &site.client;
    let carrier_port = free_sip_port();
    create(
        client,
        "/api/v1/trunks",
        peer_trunk("carrier", PROVIDER_IP, carrier_port),
    )
    .await;
    create(
        client,
        "/api/v1/routes/outbound",
        json!({"name": "national", "patterns": ["9NXXXXXX"], "strip": 1, "class": "local",
               "trunks": ["carrier"]}),
    )
    .await;
    create(
        client,
        "/api/v1/permission-groups",
        json!({"name": "forwarders", "routes": []}),
    )
    .await;
    let ext = send(
        client,
        Method::PATCH,
        "/api/v1/extensions/1002",
        json!({"permission_group": "forwarders"}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(ext["permission_group"], "forwarders", "{ext}");
    site.set_handling("1002", json!({"forward_always": "95550100"}))
        .await;
    client.sync(0).await.unwrap();

    // Refused: 1002's group may not use the route.
    let (trace, _) = site
        .dial(
            "outside-refused",
            "1001",
            "1002",
            "uac-call-refused.xml",
            "the forward to an outside number 1002 may not call was not refused with 403",
        )
        .await;
    assert!(trace.contains("SIP/2.0 403 Route Not Permitted"), "{trace}");
    let denied = site
        .cdr(|c| c["callee"] == "1002" && c["disposition"] == "denied")
        .await;
    assert_eq!(denied["caller"], "1001", "{denied}");
    assert_eq!(denied["sip_status"], 403, "{denied}");
    assert_eq!(
        denied["cause"], "route 'national' not permitted",
        "{denied}"
    );
    let event = wait_item(
        client,
        "/api/v1/events?kind=outbound_denied",
        "events",
        |e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("95550100"))
        },
    )
    .await;
    let message = event["message"].as_str().unwrap();
    assert!(
        message.contains("extension 1002") && message.contains("'national' not permitted"),
        "the forwarder's permissions apply, not the caller's: {event}"
    );

    // Permitted: out on the trunk as 5550100, and answered by the provider.
    let carrier_dir = site.subdir("carrier");
    let mut carrier = Sipp::new("trunk-carrier-uas.xml")
        .listen(PROVIDER_IP, carrier_port)
        .args(["-m", "1"])
        .spawn(&carrier_dir);
    sipp::wait_bound(format!("{PROVIDER_IP}:{carrier_port}").parse().unwrap()).await;
    send(
        client,
        Method::PUT,
        "/api/v1/permission-groups/forwarders",
        json!({"routes": ["national"]}),
        StatusCode::OK,
    )
    .await;
    client.sync(0).await.unwrap();
    site.dial(
        "outside-permitted",
        "1001",
        "1002",
        "uac-call.xml",
        "the forward to an outside number was not answered by the provider",
    )
    .await;
    let status = carrier.exited(Duration::from_secs(10)).await;
    let carrier_logs = logs(&carrier_dir);
    let status = status
        .unwrap_or_else(|| panic!("the provider's sipp did not end its call\n{carrier_logs}"));
    assert!(
        status.success(),
        "the provider's call failed\n{carrier_logs}"
    );
    assert!(
        carrier_logs.contains("trunk INVITE: INVITE sip:5550100@"),
        "{carrier_logs}"
    );
    let out = site
        .cdr(|c| c["callee"] == "1002" && c["disposition"] == "answered" && c["trunk"] != "")
        .await;
    assert_eq!(out["caller"], "1001", "{out}");
    assert_eq!(out["trunk"], "carrier", "{out}");
    assert_eq!(out["route"], "national", "{out}");
    assert_eq!(out["sent"], "5550100", "{out}");
    assert_eq!(out["direction"], "outbound", "{out}");
    wait_json(client, "/api/v1/calls", |v| v["count"] == 0).await;
    outside_forward_on_no_answer(site, carrier_port).await;
}

/// Case 4, on no answer: 1002's phone rings for 5 s, then the outside forward is routed (as 1002's
/// call): refused without the route in 1002's group, out on the trunk with it.
async fn outside_forward_on_no_answer(site: &Site, carrier_port: u16) {
    let client = &site.client;
    let permit = |routes: Value| {
        send(
            client,
            Method::PUT,
            "/api/v1/permission-groups/forwarders",
            json!({ "routes": routes }),
            StatusCode::OK,
        )
    };
    permit(json!([])).await;
    site.set_handling(
        "1002",
        json!({"forward_no_answer": "95550100", "no_answer_secs": NO_ANSWER_SECS}),
    )
    .await;
    let before = latest_expiry(client, "1002").await;
    let (_ringing, ring_dir) = site.phone(
        "phone-1002-outside",
        "1002",
        "uas-ring-no-answer.xml",
        Some(site.port_1002),
    );
    wait_reregistered(client, "1002", before).await;
    client.sync(0).await.unwrap();

    let (trace, took) = site
        .dial(
            "no-answer-outside-refused",
            "1001",
            "1002",
            "uac-call-refused.xml",
            "the no-answer forward to an outside number 1002 may not call was not refused",
        )
        .await;
    assert!(trace.contains("SIP/2.0 403 Route Not Permitted"), "{trace}");
    assert!(
        took >= Duration::from_secs(NO_ANSWER_SECS - 1),
        "refused after {took:?}: before 1002 rang its {NO_ANSWER_SECS} s"
    );
    assert_eq!(invites_for(&ring_dir, "1002"), 1, "1002 rang first");

    let carrier_dir = site.subdir("carrier-no-answer");
    let mut carrier = Sipp::new("trunk-carrier-uas.xml")
        .listen(PROVIDER_IP, carrier_port)
        .args(["-m", "1"])
        .spawn(&carrier_dir);
    sipp::wait_bound(format!("{PROVIDER_IP}:{carrier_port}").parse().unwrap()).await;
    permit(json!(["national"])).await;
    client.sync(0).await.unwrap();
    let (_, took) = site
        .dial(
            "no-answer-outside-permitted",
            "1001",
            "1002",
            "uac-call.xml",
            "the no-answer forward to an outside number was not answered by the provider",
        )
        .await;
    assert!(
        took >= Duration::from_secs(NO_ANSWER_SECS - 1),
        "answered after {took:?}: before 1002 rang its {NO_ANSWER_SECS} s"
    );
    let status = carrier.exited(Duration::from_secs(10)).await;
    let carrier_logs = logs(&carrier_dir);
    assert!(
        status.is_some_and(|s| s.success()),
        "the provider's call failed\n{carrier_logs}"
    );
    assert!(
        carrier_logs.contains("trunk INVITE: INVITE sip:5550100@"),
        "{carrier_logs}"
    );
    assert_eq!(invites_for(&ring_dir, "1002"), 2, "1002 rang first");
    wait_json(client, "/api/v1/calls", |v| v["count"] == 0).await;
}

/// Case 5: 1003 picks up 1001's call ringing 1002.
async fn pickup(site: &Site) {
    const RELAYED: &str = "pbx_media_packets_relayed_total{kind=\"rtp\"}";
    let client = &site.client;
    let group = send(
        client,
        Method::PUT,
        "/api/v1/pickup-groups/sales",
        json!({"members": ["1002", "1003"]}),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(group["members"], json!(["1002", "1003"]), "{group}");
    // The forwards of the cases before are cleared.
    site.set_handling("1002", json!({})).await;
    client.sync(0).await.unwrap();

    let (trace, _) = site
        .dial(
            "pickup-nothing",
            "1003",
            "*8",
            "uac-call-failed.xml",
            "*8 with nothing ringing was not refused",
        )
        .await;
    assert!(trace.contains("SIP/2.0 480 No Call To Pick Up"), "{trace}");

    let before = latest_expiry(client, "1002").await;
    let (_ringing, ring_dir) = site.phone(
        "phone-1002-pickup",
        "1002",
        "uas-ring-no-answer.xml",
        Some(site.port_1002),
    );
    wait_reregistered(client, "1002", before).await;
    let relayed = client.metric(0, RELAYED).await.unwrap();
    let invites = invites_for(&ring_dir, "1002");
    let caller_dir = site.subdir("pickup-caller");
    let caller = Sipp::phone_call(
        &site.target,
        site.csv("1001"),
        "1002",
        "pickup-uac-caller.xml",
    )
    .args(["-rtp_echo"]);
    let task_dir = caller_dir.clone();
    let caller = tokio::spawn(async move { caller.run(&task_dir).await });
    assert_eq!(
        wait_invites(&ring_dir, "1002", invites + 1).await,
        invites + 1,
        "1002's phone was not rung\n{}",
        logs(&ring_dir)
    );

    let (trace, _) = site
        .dial(
            "pickup-outsider",
            "1004",
            "**1002",
            "uac-call-failed.xml",
            "a pickup from outside the group was not refused",
        )
        .await;
    assert!(trace.contains("SIP/2.0 480 No Call To Pick Up"), "{trace}");

    let (trace, _) = site
        .dial(
            "pickup-1003",
            "1003",
            "*8",
            "pickup-uac-picker.xml",
            "1003 could not pick up 1001's call",
        )
        .await;
    assert!(trace.contains("SIP/2.0 200 OK"), "{trace}");
    let status = tokio::time::timeout(Duration::from_secs(30), caller)
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "1001's picked-up call\n{}\n{}",
        logs(&caller_dir),
        site.lab.log_tail(0)
    );
    let ring_text = logs(&ring_dir);
    assert!(ring_text.contains("cancelled"), "{ring_text}");
    assert!(
        messages(&ring_dir).contains("SIP/2.0 487 Request Terminated"),
        "{ring_text}"
    );
    // 1003's audio reached 1001, whose echo came back.
    let relayed = client.metric(0, RELAYED).await.unwrap() - relayed;
    let mut dropped = Vec::new();
    for reason in ["foreign_source", "no_destination", "send_failed"] {
        let name = format!("pbx_media_packets_dropped_total{{reason=\"{reason}\"}}");
        dropped.push((reason, client.metric(0, &name).await.unwrap_or(0.0)));
    }
    assert!(
        relayed >= 2.0 * 236.0 * 0.95,
        "relayed {relayed} RTP packets, expected about {}; dropped so far: {dropped:?}\n{}",
        2 * 236,
        sipp::log_tails(&caller_dir, 3000)
    );
    let cdr = site
        .cdr(|c| c["callee"] == "1002" && c["caller"] == "1001" && c["cause"] == "bye")
        .await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    site.idle().await;
}

/// Case 6: the carrier's caller, answered by 1002, is transferred to 1004.
async fn trunk_call_transfer(site: &Site) {
    const RELAYED: &str = "pbx_media_packets_relayed_total{kind=\"rtp\"}";
    let client = &site.client;
    create(
        client,
        "/api/v1/routes/inbound",
        inbound_to_extension("to-1002", "5550199", "1002"),
    )
    .await;
    client.sync(0).await.unwrap();
    let before = latest_expiry(client, "1002").await;
    let dir = site.subdir("phone-1002-refer");
    let referrer = Sipp::new("uas-register.xml")
        .to(&site.target)
        .args(["-oocsf", &sipp::scenario("transfer-uas-refer.xml")])
        .args(["-key", "refer_to", "1004"])
        .args(["-inf", site.csv("1002"), "-m", "1", "-d", PHONE_HOLD_MS])
        .listen("127.0.0.1", site.port_1002);
    let _referrer = referrer.spawn(&dir);
    wait_reregistered(client, "1002", before).await;
    let relayed = client.metric(0, RELAYED).await.unwrap();

    let caller_dir = site.subdir("trunk-caller");
    let caller = Sipp::provider_call(
        &site.target,
        PROVIDER_IP,
        "5550199",
        "trunk-provider-transfer-stays.xml",
    );
    let status = caller.run(&caller_dir).await;
    assert!(
        status.success(),
        "the carrier's call through the transfer\n{}\n{}\n{}",
        logs(&caller_dir),
        logs(&dir),
        site.lab.log_tail(0)
    );
    let msgs = messages(&dir);
    assert!(msgs.contains("SIP/2.0 202"), "{msgs}");
    // The final NOTIFY tells 1002 the transfer worked.
    assert!(msgs.contains("terminated;reason=noresource"), "{msgs}");
    let relayed = client.metric(0, RELAYED).await.unwrap() - relayed;
    assert!(
        relayed >= 236.0 * 0.95,
        "relayed {relayed} RTP packets from the carrier's caller to 1004, expected about 236"
    );
    let cdr = site
        .cdr(|c| c["callee"] == "1002" && c["caller"] == "15551234")
        .await;
    assert_eq!(cdr["disposition"], "answered", "{cdr}");
    assert_eq!(cdr["direction"], "inbound", "{cdr}");
    assert_eq!(cdr["trunk"], "carrier", "{cdr}");
    site.idle().await;
}
