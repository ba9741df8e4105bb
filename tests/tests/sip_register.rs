//! Phones register through the cluster: sipp over UDP and TCP with digest authentication, every binding
//! visible through every node's API; refresh, unregister, expiry limits; and the same answers for known
//! and unknown users.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;

use pbx_tests::sip_probe::{Challenge, SipProbe, register, register_with_auth};
use pbx_tests::{Lab, LabOptions};

const SECRET: &str = "Tr7!kq-Vw9zP";

fn sipp_scenario() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sipp/register-auth.xml")
}

/// Runs sipp registering `users` against `target` over `transport` (`u1` or `t1`); true when every
/// registration got its 200.
fn sipp_register(
    dir: &std::path::Path,
    target: SocketAddr,
    transport: &str,
    users: &[String],
) -> bool {
    let csv = dir.join(format!("users-{transport}.csv"));
    let mut text = String::from("SEQUENTIAL\n");
    for u in users {
        text.push_str(&format!(
            "{u};[authentication username={u} password={SECRET}]\n"
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let status = Command::new("sipp")
        .arg(target.to_string())
        .args([
            "-sf",
            sipp_scenario().to_str().unwrap(),
            "-inf",
            csv.to_str().unwrap(),
        ])
        .args([
            "-t",
            transport,
            "-i",
            "127.0.0.1",
            "-p",
            &pbx_tests::free_sip_port().to_string(),
        ])
        .args(["-m", &users.len().to_string(), "-l", "10", "-r", "200"])
        .args([
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("sipp is installed (Debian sip-tester)");
    status.success()
}

fn sip_addr(lab: &Lab, i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], lab.nodes[i].sip_port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_registers_over_udp_and_tcp_and_every_node_sees_the_bindings() {
    // sipp answers the first challenge only and knows only MD5: the default configuration must do.
    let lab = Lab::start(3).await.unwrap();
    let client = lab.client();
    let users: Vec<String> = (0..40).map(|n| format!("{}", 3000 + n)).collect();
    for u in &users {
        assert_eq!(
            client
                .create_extension_with_secret(0, u, SECRET)
                .await
                .unwrap(),
            StatusCode::CREATED
        );
    }
    // The nodes sipp talks to must have applied the extensions created through node 0.
    client.sync(0).await.unwrap();
    client.sync(1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert!(
        sipp_register(dir.path(), sip_addr(&lab, 0), "u1", &users[..20]),
        "sipp UDP registrations failed"
    );
    assert!(
        sipp_register(dir.path(), sip_addr(&lab, 1), "t1", &users[20..]),
        "sipp TCP registrations failed"
    );

    for i in 0..3 {
        for (n, u) in users.iter().enumerate() {
            let r = client.registrations(i, u).await.unwrap();
            assert_ne!(r["status"], "unregistered", "node {i}, extension {u}: {r}");
            let reg = &r["registrations"][0];
            assert_eq!(reg["transport"], if n < 20 { "udp" } else { "tcp" });
            assert_eq!(reg["user_agent"], "sipp");
            assert!(reg["source"].as_str().unwrap().starts_with("127.0.0.1:"));
            assert_eq!(reg["node_id"], lab.nodes[if n < 20 { 0 } else { 1 }].id);
            assert!(reg["expires_in"].as_u64().unwrap() > 3500);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_unregister_limits_and_wildcard() {
    let lab = Lab::start(1).await.unwrap();
    let client = lab.client();
    assert_eq!(
        client
            .create_extension_with_secret(0, "4001", SECRET)
            .await
            .unwrap(),
        StatusCode::CREATED
    );
    let probe = SipProbe::new(sip_addr(&lab, 0)).await.unwrap();
    let contact = format!("<sip:4001@{}>", probe.local);

    // Register, then the 200 lists the binding with its granted time.
    let ok = register_with_auth(&probe, "4001", SECRET, &contact, Some(600), "call-a", 1)
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.raw);
    let listed = ok.headers("Contact");
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].contains(";expires=600") || listed[0].contains(";expires=599"),
        "{listed:?}"
    );

    // Too brief: 423 with Min-Expires.
    let brief = register_with_auth(&probe, "4001", SECRET, &contact, Some(10), "call-b", 1)
        .await
        .unwrap();
    assert_eq!(brief.status, 423);
    assert_eq!(brief.reason, "Interval Too Brief");
    assert_eq!(brief.header("Min-Expires").as_deref(), Some("60"));

    // A second contact, then too many (limit 10).
    let second = "<sip:4001@127.0.0.1:5999>".to_owned();
    assert_eq!(
        register_with_auth(&probe, "4001", SECRET, &second, None, "call-c", 1)
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        client.registrations(0, "4001").await.unwrap()["registrations"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let many: Vec<String> = (0..10)
        .map(|i| format!("<sip:4001@127.0.0.1:{}>", 6000 + i))
        .collect();
    let too_many = register_with_auth(&probe, "4001", SECRET, &many.join(", "), None, "call-d", 1)
        .await
        .unwrap();
    assert_eq!(too_many.status, 403, "{}", too_many.raw);
    assert_eq!(
        client.registrations(0, "4001").await.unwrap()["registrations"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Unregister one contact.
    let gone = register_with_auth(&probe, "4001", SECRET, &contact, Some(0), "call-a", 10)
        .await
        .unwrap();
    assert_eq!(gone.status, 200);
    let regs = client.registrations(0, "4001").await.unwrap();
    assert_eq!(regs["registrations"].as_array().unwrap().len(), 1, "{regs}");

    // `Contact: *` needs Expires: 0, then removes everything.
    let bad_star = register_with_auth(&probe, "4001", SECRET, "*", Some(60), "call-e", 1)
        .await
        .unwrap();
    assert_eq!(bad_star.status, 400);
    let star = register_with_auth(&probe, "4001", SECRET, "*", Some(0), "call-e", 3)
        .await
        .unwrap();
    assert_eq!(star.status, 200);
    assert_eq!(
        client.registrations(0, "4001").await.unwrap()["status"],
        "unregistered"
    );
}

/// The parts of a challenge an attacker could compare.
fn challenge_shape(c: &Challenge) -> (String, String, Option<String>, Option<String>, bool) {
    (
        c.realm.clone(),
        c.algorithm.clone(),
        c.qop.clone(),
        c.opaque.clone(),
        c.stale,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_and_unknown_users_get_identical_answers() {
    // Both algorithms, in RFC 8760's order, so both are exercised.
    let options = LabOptions {
        sip_extra: "digest_algorithms = [\"SHA-256\", \"MD5\"]".into(),
        ..LabOptions::default()
    };
    let lab = Lab::start_with(1, options).await.unwrap();
    let client = lab.client();
    assert_eq!(
        client
            .create_extension_with_secret(0, "5001", SECRET)
            .await
            .unwrap(),
        StatusCode::CREATED
    );
    let probe = SipProbe::new(sip_addr(&lab, 0)).await.unwrap();
    let contact = format!("<sip:x@{}>", probe.local);

    let mut shapes = Vec::new();
    for (user, password) in [
        ("5001", "Wrong-Pass-99"),
        ("5999", "Wrong-Pass-99"),
        ("5999", SECRET),
    ] {
        let first = probe
            .send(
                &register(&probe, user, &format!("c-{user}"), 1, &contact, None, ""),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(first.status, 401);
        let challenges: Vec<Challenge> = first
            .headers("WWW-Authenticate")
            .iter()
            .map(|v| Challenge::parse(v).unwrap())
            .collect();
        assert_eq!(challenges.len(), 2);
        assert_eq!(
            challenges[0].algorithm, "SHA-256",
            "offered in the configured order"
        );
        assert_eq!(challenges[1].algorithm, "MD5");
        let uri = format!("sip:{}", probe.server);
        let auth = challenges[0].answer(user, password, "REGISTER", &uri, 1, "abcdef01");
        let text = register(
            &probe,
            user,
            &format!("c-{user}"),
            2,
            &contact,
            None,
            &format!("Authorization: {auth}\r\n"),
        );
        let second = probe.send(&text, Duration::from_secs(5)).await.unwrap();
        let again: Vec<Challenge> = second
            .headers("WWW-Authenticate")
            .iter()
            .map(|v| Challenge::parse(v).unwrap())
            .collect();
        shapes.push((
            first.status,
            challenges.iter().map(challenge_shape).collect::<Vec<_>>(),
            second.status,
            second.reason.clone(),
            again.iter().map(challenge_shape).collect::<Vec<_>>(),
        ));
    }
    assert_eq!(shapes[0], shapes[1], "wrong password vs unknown user");
    assert_eq!(
        shapes[1], shapes[2],
        "unknown user with a plausible password"
    );
    assert_eq!(shapes[0].2, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_tampered_and_forged_credentials_are_refused() {
    let lab = Lab::start(1).await.unwrap();
    let client = lab.client();
    assert_eq!(
        client
            .create_extension_with_secret(0, "5101", SECRET)
            .await
            .unwrap(),
        StatusCode::CREATED
    );
    let probe = SipProbe::new(sip_addr(&lab, 0)).await.unwrap();
    let contact = format!("<sip:5101@{}>", probe.local);
    let uri = format!("sip:{}", probe.server);
    let first = probe
        .send(
            &register(&probe, "5101", "c1", 1, &contact, None, ""),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    // The default offers MD5 alone.
    assert_eq!(first.headers("WWW-Authenticate").len(), 1);
    let challenge = Challenge::parse(&first.headers("WWW-Authenticate")[0]).unwrap();
    assert_eq!(challenge.algorithm, "MD5");
    let good = challenge.answer("5101", SECRET, "REGISTER", &uri, 1, "0a0b0c0d");
    let with = |auth: &str, cseq: u32| {
        register(
            &probe,
            "5101",
            "c1",
            cseq,
            &contact,
            None,
            &format!("Authorization: {auth}\r\n"),
        )
    };
    assert_eq!(
        probe
            .send(&with(&good, 2), Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        200,
        "MD5 works too"
    );
    // The same nonce count again (a captured request replayed in a new transaction): refused.
    assert_eq!(
        probe
            .send(&with(&good, 3), Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        401
    );
    // A higher nonce count with the right password is fine.
    let next = challenge.answer("5101", SECRET, "REGISTER", &uri, 2, "0a0b0c0d");
    assert_eq!(
        probe
            .send(&with(&next, 4), Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        200
    );
    // Tampered response, forged nonce, wrong realm.
    let tampered = challenge
        .answer("5101", SECRET, "REGISTER", &uri, 3, "0a0b0c0d")
        .replace("response=\"", "response=\"0");
    assert_eq!(
        probe
            .send(&with(&tampered, 5), Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        401
    );
    let mut forged = challenge.clone();
    forged.nonce = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
    let forged = forged.answer("5101", SECRET, "REGISTER", &uri, 1, "0a0b0c0d");
    assert_eq!(
        probe
            .send(&with(&forged, 6), Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        401
    );
    // Authenticating as one extension to register another: forbidden, regardless of whether it exists.
    let other = challenge.answer("5101", SECRET, "REGISTER", &uri, 9, "0a0b0c0d");
    let text = register(
        &probe,
        "5102",
        "c9",
        1,
        &contact,
        None,
        &format!("Authorization: {other}\r\n"),
    );
    assert_eq!(
        probe
            .send(&text, Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        403
    );
    let regs = client.registrations(0, "5101").await.unwrap();
    assert_eq!(regs["registrations"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_bindings_leave_the_cluster() {
    let options = LabOptions {
        sip_extra: "min_expires = 1".into(),
        ..LabOptions::default()
    };
    let mut lab = Lab::start_with(3, options).await.unwrap();
    let client = lab.client();
    assert_eq!(
        client
            .create_extension_with_secret(0, "4101", SECRET)
            .await
            .unwrap(),
        StatusCode::CREATED
    );
    client.sync(1).await.unwrap();
    let probe = SipProbe::new(sip_addr(&lab, 1)).await.unwrap();
    let contact = format!("<sip:4101@{}>", probe.local);
    let ok = register_with_auth(&probe, "4101", SECRET, &contact, Some(2), "short", 1)
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    assert_ne!(
        client.registrations(2, "4101").await.unwrap()["status"],
        "unregistered"
    );

    // The leader's sweep removes the row itself, not just hides it: its expiry counter moves.
    let leader = lab.wait_leader(Duration::from_secs(10)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let expired = client
            .metric(leader, "pbx_registrations_expired_total")
            .await
            .unwrap();
        if expired >= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no sweep removed the binding"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for i in 0..3 {
        assert_eq!(
            client.registrations(i, "4101").await.unwrap()["status"],
            "unregistered"
        );
        let all = client.get_json(i, "/api/v1/registrations").await.unwrap();
        assert_eq!(all["total"], 0, "node {i}: {all}");
    }
}
