//! SIP trunks end to end, with sipp as the provider, on loopback: the phones (sipp as extensions) are
//! on 127.0.0.1, the provider on 127.0.0.2, so the PBX tells them apart by source address.
//!
//! Outbound: extension 1001 dials 95550100; the route strips the 9 and the provider (a sipp UAS on a
//! peer trunk) must see an INVITE for 5550100, and answers. The extension's permission group allows
//! two calls a minute: the third is refused with 403, raises `toll_fraud_suspected` and leaves a
//! `denied` CDR. Inbound: the provider calls DID 15550100 without authentication and the inbound
//! route rings extension 1002 (a registered sipp UAS), which answers.
//!
//! The refusals (second test): a route the caller's group does not list, an international call to a
//! country outside the group's list, an anonymous caller on a trunk that refuses them, an INVITE to
//! a DID from an address that is no trunk's; and an emergency number, which goes out regardless.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use pbx_tests::{Lab, LabClient, LabOptions, free_port, free_sip_port};

const SECRET: &str = "Tr7!kq-Vw9zP";
/// The provider's address; the phones use 127.0.0.1.
const PROVIDER_IP: &str = "127.0.0.2";

fn scenario(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sipp")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

/// What sipp wrote to its logs in `dir`.
fn sipp_logs(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".log") {
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

/// Sends `body` (if any) as admin to node 0; the status and the JSON answer.
async fn call(
    client: &LabClient,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = client.req(0, method, path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"))
    };
    (status, value)
}

async fn create(client: &LabClient, path: &str, body: Value) {
    let (status, answer) = call(client, Method::POST, path, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "POST {path}: {answer}");
}

/// Runs a sipp client to completion in `dir`; its exit status.
async fn run_sipp(dir: &Path, args: Vec<String>) -> ExitStatus {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        Command::new("sipp")
            .args(&args)
            .args(["-timeout", "30s", "-timeout_error", "-nostdin"])
            .args(["-trace_err", "-trace_msg", "-trace_logs"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("sipp is installed (Debian sip-tester)")
    })
    .await
    .unwrap()
}

/// A sipp UAC as extension 1001 (credentials from `csv`) dialling `number` with `scenario_file`.
fn phone_call(target: &str, csv: &str, number: &str, scenario_file: &str) -> Vec<String> {
    [
        target,
        "-sf",
        &scenario(scenario_file),
        "-s",
        number,
        // sipp's digest uri is `sip:host:port` unless told the Request-URI.
        "-auth_uri",
        &format!("{number}@{target}"),
        "-inf",
        csv,
        "-m",
        "1",
        "-i",
        "127.0.0.1",
        "-p",
        &free_sip_port().to_string(),
        "-mp",
        &free_port(true).to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Waits until `addr` is bound (a bind of our own fails), i.e. sipp listens there.
async fn wait_bound(addr: SocketAddr) {
    for _ in 0..100 {
        if UdpSocket::bind(addr).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sipp never bound {addr}");
}

/// `GET path` once `pred` accepts it, waiting up to 5 s.
async fn wait_json(client: &LabClient, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        last = client.get_json(0, path).await.unwrap();
        if pred(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never became what was wanted: {last}");
}

/// The first item of `GET path`'s `field` array that `pred` accepts, waiting up to 5 s for it.
async fn wait_item(
    client: &LabClient,
    path: &str,
    field: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let found = wait_json(client, path, |v| {
        v[field].as_array().is_some_and(|a| a.iter().any(&pred))
    })
    .await;
    found[field]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| pred(v))
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_provider_carries_outbound_and_inbound_calls_with_toll_limits() {
    // sipp phones expect only their calls, so the PBX's OPTIONS pings are off.
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 0".into(),
        ..LabOptions::default()
    };
    let (lab, client) = Lab::with_extensions(1, options, &["1001", "1002"], SECRET)
        .await
        .unwrap();
    let target = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port)).to_string();
    let carrier_port = free_sip_port();

    // The configuration, as an admin makes it.
    create(
        &client,
        "/api/v1/trunks",
        json!({
            "name": "carrier",
            "kind": "peer",
            "host": PROVIDER_IP,
            "port": carrier_port,
            "transport": "udp",
            "qualify_secs": 0
        }),
    )
    .await;
    create(
        &client,
        "/api/v1/routes/outbound",
        json!({
            "name": "national",
            "patterns": ["9NXXXXXX"],
            "strip": 1,
            "class": "local",
            "trunks": ["carrier"]
        }),
    )
    .await;
    create(
        &client,
        "/api/v1/permission-groups",
        json!({"name": "staff", "routes": ["national"], "limits": {"per_minute": 2}}),
    )
    .await;
    let (status, ext) = call(
        &client,
        Method::PATCH,
        "/api/v1/extensions/1001",
        Some(json!({"permission_group": "staff"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ext}");
    assert_eq!(ext["permission_group"], "staff");
    create(
        &client,
        "/api/v1/routes/inbound",
        json!({
            "name": "main",
            "did_kind": "exact",
            "did": "15550100",
            "destination": {"type": "extension", "target": "1002"}
        }),
    )
    .await;

    // The PBX re-reads the addresses trunk calls come from within a second of a routing change.
    let configured = Instant::now();

    let dir = tempfile::tempdir().unwrap();
    let carrier_dir = dir.path().join("carrier");
    std::fs::create_dir(&carrier_dir).unwrap();
    let csv = |name: &str, user: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!("SEQUENTIAL\n{user};[authentication username={user} password={SECRET}]\n"),
        )
        .unwrap();
        path.to_str().unwrap().to_owned()
    };

    // The provider: answers two calls, each of which must be for 5550100, then exits.
    let carrier_addr: SocketAddr = format!("{PROVIDER_IP}:{carrier_port}").parse().unwrap();
    let mut carrier = KillOnDrop(
        Command::new("sipp")
            .args(["-sf", &scenario("trunk-carrier-uas.xml")])
            .args(["-i", PROVIDER_IP, "-p", &carrier_port.to_string()])
            .args(["-mp", &free_port(true).to_string()])
            .args([
                "-m",
                "2",
                "-nostdin",
                "-trace_err",
                "-trace_msg",
                "-trace_logs",
            ])
            .current_dir(&carrier_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp is installed (Debian sip-tester)"),
    );
    wait_bound(carrier_addr).await;

    // The limit counts calls per calendar minute: the three calls must fall in one.
    let second = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if second > 30 {
        tokio::time::sleep(Duration::from_secs(61 - second)).await;
    }

    let uac_csv = csv("uac.csv", "1001");
    for n in 1..=2 {
        let status = run_sipp(
            dir.path(),
            phone_call(&target, &uac_csv, "95550100", "uac-call.xml"),
        )
        .await;
        assert!(
            status.success(),
            "outbound call {n} failed\n{}\n{}\n{}",
            sipp_logs(dir.path()),
            sipp_logs(&carrier_dir),
            lab.log_tail(0)
        );
    }
    // The provider saw both calls, for the stripped number, and ended both cleanly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let carrier_status = loop {
        if let Some(s) = carrier.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the carrier sipp did not finish its two calls\n{}",
            sipp_logs(&carrier_dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        carrier_status.success(),
        "the carrier's calls failed\n{}\n{}",
        sipp_logs(&carrier_dir),
        lab.log_tail(0)
    );

    // The third call this minute crosses the group's limit.
    let status = run_sipp(
        dir.path(),
        phone_call(&target, &uac_csv, "95550100", "uac-call-refused.xml"),
    )
    .await;
    assert!(
        status.success(),
        "the third call was not refused with 403\n{}\n{}",
        sipp_logs(dir.path()),
        lab.log_tail(0)
    );
    let event = wait_item(
        &client,
        "/api/v1/events?kind=toll_fraud_suspected",
        "events",
        |_| true,
    )
    .await;
    let message = event["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("1001") && message.contains("per_minute"),
        "{event}"
    );
    let denied = wait_item(&client, "/api/v1/cdrs", "cdrs", |c| {
        c["disposition"] == "denied"
    })
    .await;
    assert_eq!(denied["caller"], "1001", "{denied}");
    assert_eq!(denied["sip_status"], 403, "{denied}");
    let answered = |c: &Value| c["caller"] == "1001" && c["disposition"] == "answered";
    let cdrs = wait_json(&client, "/api/v1/cdrs", |v| {
        v["cdrs"]
            .as_array()
            .is_some_and(|a| a.iter().filter(|c| answered(c)).count() == 2)
    })
    .await;
    for cdr in cdrs["cdrs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| answered(c))
    {
        assert_eq!(cdr["callee"], "95550100", "{cdr}");
        assert_eq!(cdr["hangup_side"], "caller", "{cdr}");
    }

    // Inbound: 1002 registers from 127.0.0.1; the provider calls its DID from 127.0.0.2.
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
            .args(["-mp", &free_port(true).to_string()])
            .args(["-nostdin", "-trace_err", "-trace_msg"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp is installed (Debian sip-tester)"),
    );
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
    assert!(registered, "the sipp UAS 1002 registered");

    tokio::time::sleep(Duration::from_secs(2).saturating_sub(configured.elapsed())).await;
    let provider_dir = dir.path().join("provider");
    std::fs::create_dir(&provider_dir).unwrap();
    let args = [
        target.as_str(),
        "-sf",
        &scenario("trunk-provider-uac.xml"),
        "-s",
        "15550100",
        "-m",
        "1",
        "-i",
        PROVIDER_IP,
        "-p",
        &free_sip_port().to_string(),
        "-mp",
        &free_port(true).to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    let status = run_sipp(&provider_dir, args).await;
    assert!(
        status.success(),
        "the inbound trunk call failed\n{}\n{}\n{}",
        sipp_logs(&provider_dir),
        sipp_logs(dir.path()),
        lab.log_tail(0)
    );
    let inbound = wait_item(&client, "/api/v1/cdrs", "cdrs", |c| c["callee"] == "1002").await;
    assert_eq!(inbound["caller"], "15551234", "{inbound}");
    assert_eq!(inbound["disposition"], "answered", "{inbound}");
    wait_json(&client, "/api/v1/calls", |v| v["count"] == 0).await;
}

/// What sipp exchanged (its `-trace_msg` files) in `dir`.
fn sipp_messages(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with("_messages.log") {
            out.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    out
}

/// A fresh directory `name` under `parent`, so each sipp run's logs are its own.
fn subdir(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).unwrap();
    dir
}

/// A sipp UAC on `ip` calling DID `did` at `target` with `scenario_file`, without credentials.
fn provider_call(target: &str, ip: &str, did: &str, scenario_file: &str) -> Vec<String> {
    [
        target,
        "-sf",
        &scenario(scenario_file),
        "-s",
        did,
        "-m",
        "1",
        "-i",
        ip,
        "-p",
        &free_sip_port().to_string(),
        "-mp",
        &free_port(true).to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Runs sipp with `args` in a fresh directory `name` under `parent` and asserts it succeeded (its
/// scenario got the answers it expects); the SIP messages it exchanged.
async fn sipp_ok(lab: &Lab, parent: &Path, name: &str, args: Vec<String>, what: &str) -> String {
    let dir = subdir(parent, name);
    let status = run_sipp(&dir, args).await;
    assert!(
        status.success(),
        "{what}\n{}\n{}",
        sipp_logs(&dir),
        lab.log_tail(0)
    );
    sipp_messages(&dir)
}

/// The CDRs whose `field` is `value`, as of now.
async fn cdrs_where(client: &LabClient, field: &str, value: &str) -> Vec<Value> {
    let all = client.get_json(0, "/api/v1/cdrs").await.unwrap();
    all["cdrs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c[field] == value)
        .cloned()
        .collect()
}

/// The refusals of the trunk feature, each as the caller sees it (the SIP answer), as the CDRs
/// record it and as the events report it: (a) a route the extension's group does not list → 403
/// `outbound_denied`; (b) an international route to a country outside the group's prefixes → 403,
/// and to one inside → out to the carrier; (c) an anonymous call from the provider → 433
/// `anonymous_call_refused` unless the trunk allows anonymous calls (and then refused again by
/// the site-wide `reject_anonymous_inbound`); (d) the same INVITE from an address that is no
/// trunk's → 407 like any stranger, no CDR; (e) an emergency number → out to the carrier through
/// a route the extension may not use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_trunk_refusals_denied_routes_countries_anonymous_spoofed_and_emergency() {
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 0".into(),
        ..LabOptions::default()
    };
    let (lab, client) = Lab::with_extensions(1, options, &["1001", "1002"], SECRET)
        .await
        .unwrap();
    let target = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port)).to_string();
    let carrier_port = free_sip_port();
    let trunk = |allow_anonymous: bool| {
        json!({
            "name": "carrier",
            "kind": "peer",
            "host": PROVIDER_IP,
            "port": carrier_port,
            "transport": "udp",
            "qualify_secs": 0,
            "allow_anonymous": allow_anonymous
        })
    };
    create(&client, "/api/v1/trunks", trunk(false)).await;
    for route in [
        json!({"name": "national", "patterns": ["9NXXXXXX"], "strip": 1, "class": "local",
               "trunks": ["carrier"]}),
        json!({"name": "intl", "patterns": ["011."], "strip": 3, "class": "international",
               "trunks": ["carrier"]}),
        json!({"name": "emergency", "patterns": ["911"], "class": "local",
               "trunks": ["carrier"]}),
    ] {
        create(&client, "/api/v1/routes/outbound", route).await;
    }
    // 1001 may call abroad (the UK only), once a day; not nationally, not the emergency route.
    create(
        &client,
        "/api/v1/permission-groups",
        json!({"name": "abroad", "routes": ["intl"], "international_prefixes": ["44"],
               "limits": {"per_day": 1}}),
    )
    .await;
    let (status, ext) = call(
        &client,
        Method::PATCH,
        "/api/v1/extensions/1001",
        Some(json!({"permission_group": "abroad"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ext}");
    create(
        &client,
        "/api/v1/routes/inbound",
        json!({
            "name": "main",
            "did_kind": "exact",
            "did": "15550100",
            "destination": {"type": "extension", "target": "1002"}
        }),
    )
    .await;
    let configured = Instant::now();

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
    let uac_csv = csv("uac.csv", "1001");

    // The provider answers two calls, whatever the number, and logs the numbers it was sent.
    let carrier_dir = subdir(dir.path(), "carrier");
    let carrier_addr: SocketAddr = format!("{PROVIDER_IP}:{carrier_port}").parse().unwrap();
    let mut carrier = KillOnDrop(
        Command::new("sipp")
            .args(["-sf", &scenario("trunk-carrier-uas-any.xml")])
            .args(["-i", PROVIDER_IP, "-p", &carrier_port.to_string()])
            .args(["-mp", &free_port(true).to_string()])
            .args(["-m", "2", "-nostdin"])
            .args(["-trace_err", "-trace_msg", "-trace_logs"])
            .current_dir(&carrier_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp is installed (Debian sip-tester)"),
    );
    wait_bound(carrier_addr).await;

    // (a) A route the group does not list: 403, a denied CDR naming the route, an event.
    let messages = sipp_ok(
        &lab,
        dir.path(),
        "denied-route",
        phone_call(&target, &uac_csv, "95550100", "uac-call-refused.xml"),
        "a call on a route 1001 may not use was not refused with 403",
    )
    .await;
    assert!(
        messages.contains("SIP/2.0 403 Route Not Permitted"),
        "{messages}"
    );
    let denied = wait_item(&client, "/api/v1/cdrs", "cdrs", |c| {
        c["dialled"] == "95550100"
    })
    .await;
    assert_eq!(denied["disposition"], "denied", "{denied}");
    assert_eq!(denied["sip_status"], 403, "{denied}");
    assert_eq!(denied["direction"], "outbound", "{denied}");
    assert_eq!(denied["route"], "national", "{denied}");
    assert_eq!(denied["trunk"], "", "{denied}");
    assert_eq!(denied["caller"], "1001", "{denied}");
    let event = wait_item(
        &client,
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
        message.contains("1001") && message.contains("'national' not permitted"),
        "{event}"
    );

    // (b) The international route, to France (33): not among the group's countries.
    let messages = sipp_ok(
        &lab,
        dir.path(),
        "denied-country",
        phone_call(&target, &uac_csv, "011331234567", "uac-call-refused.xml"),
        "a call to a country 1001 may not call was not refused with 403",
    )
    .await;
    assert!(
        messages.contains("SIP/2.0 403 Route Not Permitted"),
        "{messages}"
    );
    let denied = wait_item(&client, "/api/v1/cdrs", "cdrs", |c| {
        c["dialled"] == "011331234567"
    })
    .await;
    assert_eq!(denied["disposition"], "denied", "{denied}");
    assert_eq!(denied["sip_status"], 403, "{denied}");
    assert_eq!(denied["direction"], "outbound", "{denied}");
    assert_eq!(denied["route"], "intl", "{denied}");
    assert_eq!(denied["trunk"], "", "{denied}");
    let event = wait_item(
        &client,
        "/api/v1/events?kind=outbound_denied",
        "events",
        |e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("011331234567"))
        },
    )
    .await;
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .contains("country code of 331... not allowed"),
        "{event}"
    );

    // ... and to the UK (44): out to the carrier, the 011 stripped.
    sipp_ok(
        &lab,
        dir.path(),
        "allowed-country",
        phone_call(&target, &uac_csv, "011442079460000", "uac-call.xml"),
        "a call to an allowed country did not go out",
    )
    .await;
    let out = wait_item(&client, "/api/v1/cdrs", "cdrs", |c| {
        c["dialled"] == "011442079460000"
    })
    .await;
    assert_eq!(out["disposition"], "answered", "{out}");
    assert_eq!(out["direction"], "outbound", "{out}");
    assert_eq!(out["route"], "intl", "{out}");
    assert_eq!(out["trunk"], "carrier", "{out}");
    assert_eq!(out["sent"], "442079460000", "{out}");

    // That call used up 1001's day.
    let day = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 86_400
    };
    let today = day();
    let counted = || async {
        let counters = client.get_json(0, "/api/v1/toll-fraud").await.unwrap();
        counters["counters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["key"] == "ext:1001")
            .unwrap_or_else(|| panic!("no counter for 1001: {counters}"))
            .clone()
    };
    let before = counted().await;
    // (e) An emergency number on a route 1001 may not use, with its daily limit used up: it goes
    // out all the same, and is not counted.
    sipp_ok(
        &lab,
        dir.path(),
        "emergency",
        phone_call(&target, &uac_csv, "911", "uac-call.xml"),
        "the emergency call did not go out",
    )
    .await;
    let out = wait_item(&client, "/api/v1/cdrs", "cdrs", |c| c["dialled"] == "911").await;
    assert_eq!(out["disposition"], "answered", "{out}");
    assert_eq!(out["direction"], "outbound", "{out}");
    assert_eq!(out["route"], "emergency", "{out}");
    assert_eq!(out["trunk"], "carrier", "{out}");
    assert_eq!(out["sent"], "911", "{out}");
    let after = counted().await;
    // (Unless the UTC day turned in between, when the counts start again.)
    if day() == today {
        assert_eq!(before["day"], 1, "{before}");
        assert_eq!(after["day"], 1, "the emergency call was counted: {after}");
    }
    // The carrier got exactly these two calls, for the numbers as sent, and ended both cleanly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let carrier_status = loop {
        if let Some(s) = carrier.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the carrier sipp did not finish its two calls\n{}",
            sipp_logs(&carrier_dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let carrier_logs = sipp_logs(&carrier_dir);
    assert!(
        carrier_status.success(),
        "the carrier's calls failed\n{carrier_logs}\n{}",
        lab.log_tail(0)
    );
    let international = carrier_logs
        .find("trunk INVITE for 442079460000")
        .unwrap_or_else(|| panic!("{carrier_logs}"));
    let emergency = carrier_logs
        .find("trunk INVITE for 911")
        .unwrap_or_else(|| panic!("{carrier_logs}"));
    assert!(international < emergency, "{carrier_logs}");
    // Neither refused call reached the carrier, and no limit was counted for the emergency call.
    assert_eq!(
        carrier_logs.matches("trunk INVITE for").count(),
        2,
        "{carrier_logs}"
    );

    // Inbound: 1002 (a sipp UAS) answers what the DID's route sends it.
    let uas_csv = csv("uas.csv", "1002");
    let uas_dir = subdir(dir.path(), "uas");
    let _uas = KillOnDrop(
        Command::new("sipp")
            .arg(&target)
            .args(["-sf", &scenario("uas-register.xml")])
            .args(["-oocsf", &scenario("uas-answer.xml")])
            .args(["-inf", &uas_csv, "-m", "1", "-d", "60000"])
            .args(["-i", "127.0.0.1", "-p", &free_sip_port().to_string()])
            .args(["-mp", &free_port(true).to_string()])
            .args(["-nostdin", "-trace_err", "-trace_msg"])
            .current_dir(&uas_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp is installed (Debian sip-tester)"),
    );
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
    assert!(registered, "the sipp UAS 1002 registered");
    // The PBX knows the provider's address within a second of the trunk's creation.
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(configured.elapsed())).await;

    // (c) An anonymous call from the provider: the trunk does not allow them.
    let messages = sipp_ok(
        &lab,
        dir.path(),
        "anonymous-refused",
        provider_call(
            &target,
            PROVIDER_IP,
            "15550100",
            "trunk-provider-anonymous-refused.xml",
        ),
        "the anonymous call was not refused with 433",
    )
    .await;
    assert!(
        messages.contains("SIP/2.0 433 Anonymity Disallowed"),
        "{messages}"
    );
    let refused = wait_item(&client, "/api/v1/cdrs", "cdrs", |c| {
        c["direction"] == "inbound"
    })
    .await;
    assert_eq!(refused["sip_status"], 433, "{refused}");
    assert_eq!(refused["disposition"], "failed", "{refused}");
    assert_eq!(refused["caller"], "anonymous", "{refused}");
    assert_eq!(refused["trunk"], "carrier", "{refused}");
    assert_eq!(refused["dialled"], "15550100", "{refused}");
    assert_eq!(refused["route"], "", "{refused}");
    let event = wait_item(
        &client,
        "/api/v1/events?kind=anonymous_call_refused",
        "events",
        |_| true,
    )
    .await;
    assert!(
        event["message"].as_str().unwrap().contains("carrier"),
        "{event}"
    );

    // (d) The same DID from an address that is no trunk's: challenged, never routed, no CDR.
    sipp_ok(
        &lab,
        dir.path(),
        "spoofed",
        provider_call(
            &target,
            "127.0.0.5",
            "15550100",
            "trunk-spoofed-challenged.xml",
        ),
        "an INVITE to a DID from outside the trunk was not challenged with 407",
    )
    .await;

    // The trunk now allows anonymous callers (a PUT without the password keeps it): the same call
    // rings 1002, which answers.
    let (status, updated) = call(
        &client,
        Method::PUT,
        "/api/v1/trunks/carrier",
        Some(trunk(true)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["allow_anonymous"], true, "{updated}");
    wait_json(&client, "/api/v1/trunks/carrier", |t| {
        t["allow_anonymous"] == true
    })
    .await;
    sipp_ok(
        &lab,
        dir.path(),
        "anonymous-allowed",
        provider_call(
            &target,
            PROVIDER_IP,
            "15550100",
            "trunk-provider-anonymous.xml",
        ),
        "the anonymous call was not answered once the trunk allows it",
    )
    .await;
    let answered = wait_item(&client, "/api/v1/cdrs", "cdrs", |c| {
        c["direction"] == "inbound" && c["disposition"] == "answered"
    })
    .await;
    assert_eq!(answered["caller"], "anonymous", "{answered}");
    assert_eq!(answered["callee"], "1002", "{answered}");
    assert_eq!(answered["trunk"], "carrier", "{answered}");
    assert_eq!(answered["did"], "15550100", "{answered}");
    assert_eq!(answered["route"], "main", "{answered}");

    // The site-wide setting refuses it again, whatever the trunk says.
    let (status, settings) = call(
        &client,
        Method::PUT,
        "/api/v1/routing/settings",
        Some(json!({"emergency_numbers": ["911", "112"], "reject_anonymous_inbound": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    sipp_ok(
        &lab,
        dir.path(),
        "anonymous-site-refused",
        provider_call(
            &target,
            PROVIDER_IP,
            "15550100",
            "trunk-provider-anonymous-refused.xml",
        ),
        "reject_anonymous_inbound did not refuse the anonymous call with 433",
    )
    .await;
    wait_json(&client, "/api/v1/cdrs", |v| {
        v["cdrs"]
            .as_array()
            .is_some_and(|a| a.iter().filter(|c| c["sip_status"] == 433).count() == 2)
    })
    .await;

    // Of the inbound calls, only the three from the provider left CDRs: the spoofed one none.
    let inbound = cdrs_where(&client, "direction", "inbound").await;
    assert_eq!(inbound.len(), 3, "{inbound:?}");
    assert!(
        cdrs_where(&client, "caller", "15551234").await.is_empty(),
        "the spoofed INVITE left a CDR"
    );
    wait_json(&client, "/api/v1/calls", |v| v["count"] == 0).await;
}
