//! A register trunk to a real provider: Kamailio as the provider's registrar and proxy (it
//! challenges the PBX's REGISTER and INVITEs), found through DNS served by dnsmasq (NAPTR, then SRV
//! with a dead first server, then A), and sipp as the carrier's phones on both sides.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pbx_tests::api::{
    create, inbound_to_extension, poll, succeed, wait_item, wait_json, wait_registered,
};
use pbx_tests::process::KillOnDrop;
use pbx_tests::provider::{Provider, ProviderConfig};
use pbx_tests::sipp::{self, Sipp};
use pbx_tests::{Lab, LabClient, LabOptions, free_port, free_sip_port};
use reqwest::Method;
use serde_json::{Value, json};

const SECRET: &str = "Tr7!kq-Vw9zP";
const TRUNK_USER: &str = "pbxtrunk";
const TRUNK_PASSWORD: &str = "Pr0vider-Secret!";
/// The provider's SIP server; the dead one is listed first in SRV; the carrier's phones.
const PROVIDER_IP: &str = "127.0.0.2";
const DEAD_IP: &str = "127.0.0.3";
const CARRIER_IP: &str = "127.0.0.4";
/// sipp runs to completion within this; the provider's proxy adds its round trips.
const SIPP_TIMEOUT: Duration = Duration::from_secs(40);

/// The end of every log in `dir`: Kamailio's, dnsmasq's, sipp's.
fn logs(dir: &Path) -> String {
    sipp::log_tails(dir, 6000)
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

/// Runs `sipp` in `dir` to completion and asserts that it succeeded, with `what` went wrong
/// otherwise.
async fn sipp_ok(lab: &Lab, dir: &Path, sipp: Sipp, what: &str) {
    let status = sipp.timeout(SIPP_TIMEOUT).run(dir).await;
    assert!(
        status.success(),
        "{what}\n{}\n{}",
        logs(dir),
        lab.log_tail(0)
    );
}

/// Waits up to 30 s for trunk `name`'s state to become `state`, and asserts it did (with the logs
/// in `dir` and node 0's); its status.
async fn wait_trunk_state(
    lab: &Lab,
    client: &LabClient,
    dir: &Path,
    name: &str,
    state: &str,
) -> Value {
    let path = format!("/api/v1/trunks/{name}/status");
    let within = Duration::from_secs(30);
    let status = poll(client, &path, within, |s| s["state"] == state).await;
    assert_eq!(
        status["state"],
        state,
        "{status}\n{}\n{}",
        logs(dir),
        lab.log_tail(0)
    );
    status
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
    // A new P-256 key, unencrypted, into the file named next.
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
    ];
    run(&[
        &["req", "-x509"],
        &new_key[..],
        &["ca-key.pem", "-out", "ca.pem", "-days", "2"],
        &["-subj", "/CN=Provider Test CA"],
    ]
    .concat());
    run(&[
        &["req"],
        &new_key[..],
        &[
            "key.pem",
            "-out",
            "req.pem",
            "-subj",
            "/CN=sip.provider.lab",
        ],
    ]
    .concat());
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
    create(&client, "/api/v1/trunks", trunk).await;
    let status = wait_trunk_state(&lab, &client, dir.path(), "provider", "registered").await;
    assert_eq!(status["server"], server, "{status}");
    let events = client.get_json(0, "/api/v1/events").await.unwrap();
    assert!(events.to_string().contains("trunk_up"), "{events}");

    // Out: 1001 dials 9 + the number; the route strips the 9; the provider challenges the INVITE.
    create(
        &client,
        "/api/v1/routes/outbound",
        json!({
            "name": "national", "patterns": ["9NXXXXXX"], "strip": 1, "class": "local",
            "trunks": ["provider"],
        }),
    )
    .await;
    create(&client, "/api/v1/permission-groups", json!({
        "name": "staff", "routes": ["national"], "international_prefixes": [],
        "limits": {"per_minute": 10, "per_hour": 0, "per_day": 0, "simultaneous": 2, "international_per_day": 0},
        "suspend_on_limit": false,
    })).await;
    let staff = json!({"permission_group": "staff"});
    succeed(&client, Method::PATCH, "/api/v1/extensions/1001", staff).await;
    client.sync(0).await.unwrap();
    let _carrier = Sipp::builtin("uas")
        .listen(CARRIER_IP, carrier_uas_port)
        .spawn(dir.path());
    let csv = sipp::credentials(dir.path(), "1001.csv", "1001", SECRET);
    let out = Sipp::phone_call(&pbx, &csv, "95550100", "uac-call.xml");
    sipp_ok(&lab, dir.path(), out, "the outbound call failed").await;
    let cdrs = wait_json(&client, "/api/v1/cdrs", |c| {
        c["cdrs"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let cdr = &cdrs["cdrs"][0];
    assert_eq!(cdr["caller"], "1001", "{cdrs}");
    assert_eq!(cdr["callee"], "95550100", "{cdrs}");
    assert_eq!(cdr["disposition"], "answered", "{cdrs}");

    // In: the carrier calls the DID through the provider, which sends it to the PBX's registered
    // contact; the inbound route rings 1002.
    let route = inbound_to_extension("main", "15550100", "1002");
    create(&client, "/api/v1/routes/inbound", route).await;
    let uas_csv = sipp::credentials(dir.path(), "1002.csv", "1002", SECRET);
    let _callee = Sipp::answering_phone(&pbx, &uas_csv, 2000).spawn(dir.path());
    wait_registered(&client, "1002").await;
    let provider_addr = format!("{PROVIDER_IP}:{provider_port}");
    let call_in = |name: &str| Sipp::provider_call(&provider_addr, CARRIER_IP, "15550100", name);
    let inbound = call_in("carrier-uac-proxied.xml").args(["-d", "1000"]);
    sipp_ok(&lab, dir.path(), inbound, "the inbound call failed").await;
    let inbound = wait_item(&client, "/api/v1/cdrs", "cdrs", |c| c["callee"] == "1002").await;
    assert_eq!(inbound["disposition"], "answered", "{inbound}");
    assert_eq!(inbound["direction"], "inbound", "{inbound}");
    assert_eq!(inbound["did"], "15550100", "{inbound}");
    let outbound = wait_item(&client, "/api/v1/cdrs", "cdrs", |c| {
        c["callee"] == "95550100"
    })
    .await;
    assert_eq!(outbound["trunk"], "provider", "{outbound}");
    assert_eq!(outbound["sent"], "5550100", "{outbound}");

    if reach == Reach::Dns {
        // Disabled by the admin: the PBX removes its registration at the provider, whose calls to
        // the DID then find no contact.
        let mut off = client.get_json(0, "/api/v1/trunks/provider").await.unwrap();
        off["enabled"] = json!(false);
        succeed(&client, Method::PUT, "/api/v1/trunks/provider", off).await;
        let status = poll(
            &client,
            "/api/v1/trunks/provider/status",
            Duration::from_secs(20),
            |s| s["detail"] == "disabled",
        )
        .await;
        assert_eq!(status["state"], "unknown", "{status}");
        let refused = call_in("trunk-provider-unregistered.xml");
        sipp_ok(
            &lab,
            dir.path(),
            refused,
            "the provider still had a contact",
        )
        .await;
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
        create(&client, "/api/v1/trunks", misnamed).await;
        wait_trunk_state(&lab, &client, dir.path(), "misnamed", "unreachable").await;
        assert!(
            lab.log_tail(0)
                .contains("proved another name than the one expected now"),
            "{}",
            lab.log_tail(0)
        );
    }
}
