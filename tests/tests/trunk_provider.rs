//! A register trunk to a real provider: Kamailio as the provider's registrar and proxy (it
//! challenges the PBX's REGISTER and INVITEs), found through DNS served by dnsmasq (NAPTR, then SRV
//! with a dead first server, then A), and sipp as the carrier's phones on both sides.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pbx_tests::provider::{Provider, ProviderConfig};
use pbx_tests::{Lab, LabClient, LabOptions, free_port, free_sip_port};
use serde_json::{Value, json};

const SECRET: &str = "Tr7!kq-Vw9zP";
const TRUNK_USER: &str = "pbxtrunk";
const TRUNK_PASSWORD: &str = "Pr0vider-Secret!";
/// The provider's SIP server; the dead one is listed first in SRV; the carrier's phones.
const PROVIDER_IP: &str = "127.0.0.2";
const DEAD_IP: &str = "127.0.0.3";
const CARRIER_IP: &str = "127.0.0.4";

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scenario(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sipp")
        .join(name);
    path.to_str().unwrap().to_owned()
}

fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".log") {
            out.push_str(&format!("== {name}\n"));
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: String = text
                .chars()
                .rev()
                .take(6000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            out.push_str(&tail);
        }
    }
    out
}

/// dnsmasq answering for `provider.lab`: NAPTR to UDP SRV, whose first server never answers.
fn dns(dir: &Path, port: u16, dead_port: u16, provider_port: u16) -> KillOnDrop {
    let log = std::fs::File::create(dir.join("dnsmasq.log")).unwrap();
    let child = Command::new("/usr/sbin/dnsmasq")
        .args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
        ])
        .args([
            "--conf-file=/dev/null",
            "--pid-file=",
            "--user=root",
            "--log-queries",
        ])
        .args(["--listen-address=127.0.0.1", &format!("--port={port}")])
        .arg("--naptr-record=provider.lab,10,10,S,SIP+D2U,,_sip._udp.provider.lab")
        .arg(format!(
            "--srv-host=_sip._udp.provider.lab,dead.provider.lab,{dead_port},10,10"
        ))
        .arg(format!(
            "--srv-host=_sip._udp.provider.lab,sip.provider.lab,{provider_port},20,10"
        ))
        .arg(format!("--host-record=dead.provider.lab,{DEAD_IP}"))
        .arg(format!("--host-record=sip.provider.lab,{PROVIDER_IP}"))
        // The same server under a name its certificate does not carry.
        .arg(format!("--host-record=other.provider.lab,{PROVIDER_IP}"))
        .arg("--log-facility=-")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("dnsmasq is installed (Debian dnsmasq-base)");
    KillOnDrop(child)
}

async fn post(client: &LabClient, path: &str, body: Value) {
    let resp = client
        .req(0, reqwest::Method::POST, path)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert!(
        status.is_success(),
        "POST {path}: {status} {}",
        resp.text().await.unwrap()
    );
}

/// Polls `path` until `done` says yes; the last answer.
async fn wait_for(
    client: &LabClient,
    path: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let v = client.get_json(0, path).await.unwrap();
        if done(&v) || tokio::time::Instant::now() >= deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs sipp to completion; whether it succeeded.
async fn sipp(dir: &Path, args: &[&str]) -> bool {
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new("sipp")
            .args(&args)
            .args([
                "-timeout",
                "40s",
                "-timeout_error",
                "-nostdin",
                "-trace_err",
                "-trace_msg",
            ])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    })
    .await
    .unwrap()
}

/// How the PBX reaches the provider in one case.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// The domain alone: NAPTR, then SRV (whose first server is dead), over UDP.
    Dns,
    /// `sip.provider.lab` with its port, over TCP.
    Tcp,
    /// `sip.provider.lab` with its port, over TLS, the certificate checked against that name and
    /// the site's CA (`[trunks] tls_ca_file`).
    Tls,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_trunk_found_by_dns_carries_calls_out_and_in() {
    provider_case(Reach::Dns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_trunk_over_tcp_carries_calls_out_and_in() {
    provider_case(Reach::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_trunk_over_tls_carries_calls_out_and_in() {
    provider_case(Reach::Tls).await;
}

/// A test CA and a certificate for `sip.provider.lab` signed by it: `(ca, cert, key)`.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Provider Test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "req.pem",
        "-subj",
        "/CN=sip.provider.lab",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:sip.provider.lab\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "req.pem",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

async fn provider_case(reach: Reach) {
    let dir = tempfile::tempdir().unwrap();
    let (dns_port, dead_port) = (free_port(true), free_sip_port());
    // TLS listens on the port above the provider's UDP/TCP port.
    let provider_port = loop {
        let p = free_sip_port();
        if std::net::TcpListener::bind((PROVIDER_IP, p + 1)).is_ok() {
            break p;
        }
    };
    let carrier_uas_port = free_sip_port();
    let _dns = dns(dir.path(), dns_port, dead_port, provider_port);
    let carrier_uas = format!("{CARRIER_IP}:{carrier_uas_port}");
    let (ca, tls) = match reach {
        Reach::Tls => {
            let (ca, cert, key) = certificates(dir.path());
            (Some(ca), Some((cert, key)))
        }
        _ => (None, None),
    };
    let _provider = Provider::start(
        dir.path(),
        &ProviderConfig {
            listen: format!("{PROVIDER_IP}:{provider_port}").parse().unwrap(),
            domain: "provider.lab".into(),
            user: TRUNK_USER.into(),
            password: TRUNK_PASSWORD.into(),
            carrier_ip: CARRIER_IP.parse().unwrap(),
            carrier_uas: carrier_uas.parse().unwrap(),
            tcp: reach == Reach::Tcp,
            tls,
        },
    )
    .unwrap();
    let mut trunks_extra = format!("dns_servers = [\"127.0.0.1:{dns_port}\"]\nfailover_secs = 2");
    if let Some(ca) = &ca {
        trunks_extra.push_str(&format!("\ntls_ca_file = \"{}\"", ca.display()));
    }
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 0".into(),
        trunks_extra,
        ..LabOptions::default()
    };
    let (lab, client) = Lab::with_extensions(1, options, &["1001", "1002"], SECRET)
        .await
        .unwrap();
    let pbx = format!("127.0.0.1:{}", lab.nodes[0].sip_port);

    // The trunk registers, past the dead server, answering the registrar's challenge.
    let mut trunk = json!({
        "name": "provider", "kind": "register", "host": "provider.lab",
        "username": TRUNK_USER, "password": TRUNK_PASSWORD, "realm": "provider.lab",
        "register_expires": 120, "dids": ["15550100"], "caller_id": "15550199",
    });
    let server = match reach {
        Reach::Dns => format!("udp:{PROVIDER_IP}:{provider_port}"),
        Reach::Tcp => {
            trunk["host"] = json!("sip.provider.lab");
            trunk["port"] = json!(provider_port);
            trunk["transport"] = json!("tcp");
            format!("tcp:{PROVIDER_IP}:{provider_port}")
        }
        Reach::Tls => {
            trunk["host"] = json!("sip.provider.lab");
            trunk["port"] = json!(provider_port + 1);
            trunk["transport"] = json!("tls");
            format!("tls:{PROVIDER_IP}:{}", provider_port + 1)
        }
    };
    post(&client, "/api/v1/trunks", trunk).await;
    let status = wait_for(
        &client,
        "/api/v1/trunks/provider/status",
        Duration::from_secs(30),
        |s| s["state"] == "registered",
    )
    .await;
    assert_eq!(
        status["state"],
        "registered",
        "{status}\n{}\n{}",
        logs(dir.path()),
        lab.log_tail(0)
    );
    assert_eq!(status["server"], server, "{status}");
    let events = client.get_json(0, "/api/v1/events").await.unwrap();
    assert!(events.to_string().contains("trunk_up"), "{events}");

    // Out: 1001 dials 9 + the number; the route strips the 9; the provider challenges the INVITE.
    post(
        &client,
        "/api/v1/routes/outbound",
        json!({
            "name": "national", "patterns": ["9NXXXXXX"], "strip": 1, "class": "local",
            "trunks": ["provider"],
        }),
    )
    .await;
    post(&client, "/api/v1/permission-groups", json!({
        "name": "staff", "routes": ["national"], "international_prefixes": [],
        "limits": {"per_minute": 10, "per_hour": 0, "per_day": 0, "simultaneous": 2, "international_per_day": 0},
        "suspend_on_limit": false,
    })).await;
    let resp = client
        .req(0, reqwest::Method::PATCH, "/api/v1/extensions/1001")
        .json(&json!({"permission_group": "staff"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    client.sync(0).await.unwrap();
    let _carrier = KillOnDrop(
        Command::new("sipp")
            .args([
                "-sn",
                "uas",
                "-i",
                CARRIER_IP,
                "-p",
                &carrier_uas_port.to_string(),
            ])
            .args([
                "-mp",
                &free_port(true).to_string(),
                "-nostdin",
                "-trace_err",
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let csv = dir.path().join("1001.csv");
    std::fs::write(
        &csv,
        format!("SEQUENTIAL\n1001;[authentication username=1001 password={SECRET}]\n"),
    )
    .unwrap();
    let (uac, auth_uri, port) = (
        scenario("uac-call.xml"),
        format!("95550100@{pbx}"),
        free_sip_port().to_string(),
    );
    let out_ok = sipp(
        dir.path(),
        &[
            &pbx,
            "-sf",
            &uac,
            "-s",
            "95550100",
            "-auth_uri",
            &auth_uri,
            "-inf",
            csv.to_str().unwrap(),
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            &port,
        ],
    )
    .await;
    assert!(
        out_ok,
        "the outbound call failed\n{}\n{}",
        logs(dir.path()),
        lab.log_tail(0)
    );
    let cdrs = wait_for(&client, "/api/v1/cdrs", Duration::from_secs(5), |c| {
        c["cdrs"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let cdr = &cdrs["cdrs"][0];
    assert_eq!(cdr["caller"], "1001", "{cdrs}");
    assert_eq!(cdr["callee"], "95550100", "{cdrs}");
    assert_eq!(cdr["disposition"], "answered", "{cdrs}");

    // In: the carrier calls the DID through the provider, which sends it to the PBX's registered
    // contact; the inbound route rings 1002.
    post(
        &client,
        "/api/v1/routes/inbound",
        json!({
            "name": "main", "did_kind": "exact", "did": "15550100",
            "destination": {"type": "extension", "target": "1002"},
        }),
    )
    .await;
    let uas_csv = dir.path().join("1002.csv");
    std::fs::write(
        &uas_csv,
        format!("SEQUENTIAL\n1002;[authentication username=1002 password={SECRET}]\n"),
    )
    .unwrap();
    let _callee = KillOnDrop(
        Command::new("sipp")
            .arg(&pbx)
            .args([
                "-sf",
                &scenario("uas-register.xml"),
                "-oocsf",
                &scenario("uas-answer.xml"),
            ])
            .args([
                "-inf",
                uas_csv.to_str().unwrap(),
                "-m",
                "1",
                "-d",
                "2000",
                "-i",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &free_sip_port().to_string(),
                "-mp",
                &free_port(true).to_string(),
            ])
            .args(["-nostdin", "-trace_err"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let regs = wait_for(
        &client,
        "/api/v1/extensions/1002/registrations",
        Duration::from_secs(10),
        |r| r["registrations"].as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    assert!(
        regs["registrations"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{regs}"
    );
    let provider_addr = format!("{PROVIDER_IP}:{provider_port}");
    let carrier_uac = scenario("carrier-uac-proxied.xml");
    let (port, media) = (free_sip_port().to_string(), free_port(true).to_string());
    let in_ok = sipp(
        dir.path(),
        &[
            &provider_addr,
            "-sf",
            &carrier_uac,
            "-s",
            "15550100",
            "-m",
            "1",
            "-d",
            "1000",
            "-i",
            CARRIER_IP,
            "-p",
            &port,
            "-mp",
            &media,
        ],
    )
    .await;
    assert!(
        in_ok,
        "the inbound call failed\n{}\n{}",
        logs(dir.path()),
        lab.log_tail(0)
    );
    let cdrs = wait_for(&client, "/api/v1/cdrs", Duration::from_secs(5), |c| {
        c["cdrs"]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c["callee"] == "1002"))
    })
    .await;
    let inbound = cdrs["cdrs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["callee"] == "1002")
        .cloned();
    let inbound = inbound.unwrap_or_else(|| panic!("no inbound CDR: {cdrs}"));
    assert_eq!(inbound["disposition"], "answered", "{inbound}");
    assert_eq!(inbound["direction"], "inbound", "{inbound}");
    assert_eq!(inbound["did"], "15550100", "{inbound}");
    let outbound = cdrs["cdrs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["callee"] == "95550100")
        .cloned()
        .unwrap_or_else(|| panic!("no outbound CDR: {cdrs}"));
    assert_eq!(outbound["trunk"], "provider", "{outbound}");
    assert_eq!(outbound["sent"], "5550100", "{outbound}");

    if reach == Reach::Dns {
        // Disabled by the admin: the PBX removes its registration at the provider, whose calls to
        // the DID then find no contact.
        let mut off = client.get_json(0, "/api/v1/trunks/provider").await.unwrap();
        off["enabled"] = json!(false);
        let resp = client
            .req(0, reqwest::Method::PUT, "/api/v1/trunks/provider")
            .json(&off)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
        let status = wait_for(
            &client,
            "/api/v1/trunks/provider/status",
            Duration::from_secs(20),
            |s| s["detail"] == "disabled",
        )
        .await;
        assert_eq!(status["state"], "unknown", "{status}");
        let (port, media) = (free_sip_port().to_string(), free_port(true).to_string());
        let refused = sipp(
            dir.path(),
            &[
                &provider_addr,
                "-sf",
                &scenario("trunk-provider-unregistered.xml"),
                "-s",
                "15550100",
                "-m",
                "1",
                "-i",
                CARRIER_IP,
                "-p",
                &port,
                "-mp",
                &media,
            ],
        )
        .await;
        assert!(
            refused,
            "the provider still had a contact\n{}",
            logs(dir.path())
        );
    }

    if reach == Reach::Tls {
        // The same server reached under a name its certificate does not prove: the connection
        // checked for sip.provider.lab is not reused for it, and nothing registers.
        let mut misnamed = json!({
            "name": "misnamed", "kind": "register", "host": "other.provider.lab",
            "port": provider_port + 1, "transport": "tls",
            "username": TRUNK_USER, "password": TRUNK_PASSWORD, "realm": "provider.lab",
        });
        misnamed["register_expires"] = json!(120);
        post(&client, "/api/v1/trunks", misnamed).await;
        let status = wait_for(
            &client,
            "/api/v1/trunks/misnamed/status",
            Duration::from_secs(30),
            |s| s["state"] == "unreachable",
        )
        .await;
        assert_eq!(
            status["state"],
            "unreachable",
            "{status}\n{}",
            lab.log_tail(0)
        );
        assert!(
            lab.log_tail(0)
                .contains("proved another name than the one expected now"),
            "{}",
            lab.log_tail(0)
        );
    }
}
