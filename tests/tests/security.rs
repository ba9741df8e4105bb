//! Secure by default, cluster-wide: a password-guessing tool and a flood get their source banned on
//! every node while other phones keep working; firewall rules and lifted bans take effect on every
//! node; web logins lock out the source, never the account; every change is in the audit log.
//! Attackers and other hosts are other loopback addresses (127.0.0.x); 127.0.0.1 is the lab's trusted
//! admin address.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use pbx_tests::phone::Phone;
use pbx_tests::{Lab, LabClient, LabOptions};

const SECRET: &str = "Tr7!kq-Vw9zP";

fn sip(lab: &Lab, i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], lab.nodes[i].sip_port))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

static PROBES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Whether node `i` answers a REGISTER (without credentials, so it is no failed attempt) from
/// `from` at all: a banned or blocked source gets silence.
async fn answered(lab: &Lab, i: usize, from: &str) -> bool {
    let sock = tokio::net::UdpSocket::bind((ip(from), 0)).await.unwrap();
    let local = sock.local_addr().unwrap();
    let target = sip(lab, i);
    let msg = format!(
        "REGISTER sip:{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKp{n}\r\nMax-Forwards: 70\r\n\
         From: <sip:1001@{target}>;tag=p{n}\r\nTo: <sip:1001@{target}>\r\nCall-ID: probe-{n}\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:1001@{local}>\r\nContent-Length: 0\r\n\r\n",
        n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    sock.send_to(msg.as_bytes(), target).await.unwrap();
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(Duration::from_millis(700), sock.recv_from(&mut buf))
        .await
        .is_ok()
}

/// Waits until node `i` lists `addr` as actively banned.
async fn wait_banned(client: &LabClient, i: usize, addr: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let bans = client.get_json(i, "/api/v1/bans").await.unwrap();
        if let Some(b) = bans["bans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["ip"] == addr && b["active"] == true)
        {
            return b.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{addr} not banned on node {i}: {bans}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svcrack_is_banned_on_every_node_after_the_threshold() {
    // svcrack answers the first challenge, in MD5 (the default offers it first).
    let options = LabOptions::default();
    let (lab, client) = Lab::with_extensions(3, options, &["1001"], SECRET)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let words = dir.path().join("words.txt");
    let list: Vec<String> = (0..40).map(|i| format!("Guess{i}-pass!")).collect();
    std::fs::write(&words, list.join("\n")).unwrap();
    let port = lab.nodes[0].sip_port.to_string();
    let status = tokio::task::spawn_blocking(move || {
        // svcrack itself, from 127.0.0.2 (its own `-b` is ignored: see the wrapper).
        let wrapper = concat!(env!("CARGO_MANIFEST_DIR"), "/sipvicious/svcrack_bound.py");
        Command::new("timeout")
            .args(["60", "/usr/bin/python3", wrapper, "127.0.0.2"])
            .args([
                "-u",
                "1001",
                "-d",
                words.to_str().unwrap(),
                "-x",
                "127.0.0.2",
            ])
            .arg(format!("udp://127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("svcrack is installed (Debian sipvicious)")
    })
    .await
    .unwrap();
    let _ = status;
    // Banned through node 0, enforced by nodes 1 and 2, which never saw the attack.
    let ban = wait_banned(&client, 0, "127.0.0.2", Duration::from_secs(5)).await;
    assert_eq!(ban["reason"], "auth-failures");
    for i in [1, 2] {
        client.sync(i).await.unwrap();
        wait_banned(&client, i, "127.0.0.2", Duration::from_secs(2)).await;
        assert!(
            !answered(&lab, i, "127.0.0.2").await,
            "node {i} still answers the attacker"
        );
    }
    // Everyone else is still served, and the account is not locked: its phone registers.
    let mut phone = Phone::bound(ip("127.0.0.3"), sip(&lab, 1), "1001", SECRET)
        .await
        .unwrap();
    assert_eq!(phone.register(300).await.unwrap(), 200);
    assert!(
        client
            .metric(0, "pbx_security_bans_total{reason=\"auth-failures\"}")
            .await
            .unwrap()
            >= 1.0
    );

    // An admin lifts the ban on one node; every node lets the source in again.
    let resp = client
        .req(2, reqwest::Method::DELETE, "/api/v1/bans/127.0.0.2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    for i in 0..3 {
        client.sync(i).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        while !answered(&lab, i, "127.0.0.2").await {
            assert!(Instant::now() < deadline, "node {i} still drops 127.0.0.2");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sipp_invite_flood_is_banned_while_other_phones_keep_working() {
    let (lab, client) = Lab::with_extensions(1, LabOptions::default(), &["1001", "1002"], SECRET)
        .await
        .unwrap();
    // sipp from 127.0.0.4 starts 500 calls a second (INVITE floods), far over 40 packets per 2 s.
    let target = sip(&lab, 0);
    let flood = tokio::task::spawn_blocking(move || {
        Command::new("sipp")
            .arg(target.to_string())
            .args(["-sn", "uac", "-s", "1002", "-i", "127.0.0.4", "-p", "25099"])
            .args(["-r", "500", "-m", "1000", "-timeout", "8s", "-nostdin"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("sipp is installed (Debian sip-tester)")
    });
    // Meanwhile two phones on their own addresses register and call each other.
    let mut alice = Phone::bound(ip("127.0.0.5"), target, "1001", SECRET)
        .await
        .unwrap();
    let mut bob = Phone::bound(ip("127.0.0.6"), target, "1002", SECRET)
        .await
        .unwrap();
    assert_eq!(alice.register(300).await.unwrap(), 200);
    assert_eq!(bob.register(300).await.unwrap(), 200);
    flood.await.unwrap();
    let ban = wait_banned(&client, 0, "127.0.0.4", Duration::from_secs(3)).await;
    assert_eq!(ban["reason"], "sip-flood");
    let out = alice.dial("1002", None).await.unwrap();
    let (answered, placed) = tokio::join!(
        bob.answer(pbx_tests::phone::Answer::Accept, Duration::from_secs(5)),
        alice.outcome(&out, Duration::from_secs(5))
    );
    answered.unwrap();
    let mut d = placed
        .unwrap()
        .expect("the call goes through during the flood");
    assert_eq!(alice.hang_up(&mut d).await.unwrap(), 200);
    assert!(
        client
            .metric(0, "pbx_security_dropped_total{service=\"sip\",why=\"ban\"}")
            .await
            .unwrap()
            > 100.0,
        "the flood's packets are dropped at the gate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_rules_take_effect_on_every_node_and_changes_are_audited() {
    let (lab, client) = Lab::with_extensions(3, LabOptions::default(), &["1001"], SECRET)
        .await
        .unwrap();
    for i in 0..3 {
        client.sync(i).await.unwrap();
        assert!(answered(&lab, i, "127.0.0.7").await);
    }
    let resp = client
        .req(1, reqwest::Method::POST, "/api/v1/firewall/rules")
        .json(&json!({"action": "block", "network": "127.0.0.0/29", "services": ["sip"], "comment": "lab block"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let rule: Value = resp.json().await.unwrap();
    assert_eq!(rule["network"], "127.0.0.0/29");
    for i in 0..3 {
        client.sync(i).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !answered(&lab, i, "127.0.0.7").await,
            "node {i} ignores the rule"
        );
        assert!(
            answered(&lab, i, "127.0.0.9").await,
            "node {i} blocks outside the rule"
        );
    }
    // A rule for one transport leaves the others alone.
    let resp = client
        .req(0, reqwest::Method::POST, "/api/v1/firewall/rules")
        .json(&json!({"action": "block", "network": "127.0.0.16/30", "transports": ["tcp", "tls"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    client.sync(0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        answered(&lab, 0, "127.0.0.17").await,
        "UDP is not in the rule"
    );
    // Bad rules are refused with a reason.
    for bad in [
        json!({"action": "block", "network": "127.0.0.0/33"}),
        json!({"action": "deny", "network": "127.0.0.0/8"}),
        json!({"action": "block", "network": "example.com"}),
        json!({"action": "block", "network": "10.0.0.0/8", "services": ["ftp"]}),
        json!({"action": "block", "network": "10.0.0.0/8", "transports": ["sctp"]}),
    ] {
        let resp = client
            .req(0, reqwest::Method::POST, "/api/v1/firewall/rules")
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    // Blocking by default without an allow rule for the API would lock the admin out: refused.
    let resp = client
        .req(0, reqwest::Method::PUT, "/api/v1/firewall/policy")
        .json(&json!({"default": "block"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);

    let id = rule["id"].as_str().unwrap();
    let resp = client
        .req(
            2,
            reqwest::Method::DELETE,
            &format!("/api/v1/firewall/rules/{id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    for i in 0..3 {
        client.sync(i).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            answered(&lab, i, "127.0.0.7").await,
            "node {i} still blocks"
        );
    }

    // Who changed what, when, from where.
    let mut entries = Vec::new();
    for _ in 0..50 {
        entries = client.get_json(0, "/api/v1/audit").await.unwrap()["entries"]
            .as_array()
            .unwrap()
            .clone();
        if entries.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    // Each entry says what changed, with the values, and never a secret.
    let created = actions
        .iter()
        .find(|a| a.starts_with("POST /api/v1/extensions: created "))
        .unwrap_or_else(|| panic!("{actions:?}"));
    assert!(
        created.contains("credentials (secret) created"),
        "{created}"
    );
    assert!(!created.contains("ha1"), "{created}");
    assert!(
        actions
            .iter()
            .any(|a| a.starts_with("POST /api/v1/firewall/rules: created ")
                && a.contains("network=\"127.0.0.0/29\"")),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| a.starts_with("DELETE /api/v1/firewall/rules/") && a.contains(": deleted ")),
        "{actions:?}"
    );
    assert!(
        entries
            .iter()
            .all(|e| e["actor"] == "admin" && e["source"] == "127.0.0.1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_login_guessing_locks_out_the_source_not_the_account() {
    let lab = Lab::start_with(1, LabOptions::default()).await.unwrap();
    let url = format!("{}/api/v1/session", lab.nodes[0].api_url());
    let ca = reqwest::Certificate::from_pem(&std::fs::read(lab.ca_path()).unwrap()).unwrap();
    let from = |addr: &str| {
        reqwest::Client::builder()
            .add_root_certificate(ca.clone())
            .local_address(ip(addr))
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let password = lab.admin_password.clone();
    let attacker = from("127.0.0.10");
    for _ in 0..5 {
        let r = attacker
            .post(&url)
            .json(&json!({"username": "admin", "password": "Wrong-guess-123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let _ = attacker
        .post(&url)
        .json(&json!({"username": "admin", "password": "Wrong-guess-123"}))
        .send()
        .await;
    // Now even the right password from that source is refused…
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = from("127.0.0.10")
        .post(&url)
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await;
    assert!(r.is_err() || r.unwrap().status() == StatusCode::FORBIDDEN);
    // …while the real admin elsewhere logs in.
    let r = from("127.0.0.11")
        .post(&url)
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_thousands_of_addresses_stays_within_bounded_memory() {
    let options = LabOptions {
        security_extra: "max_tracked_sources = 1000".into(),
        ..LabOptions::default()
    };
    let (lab, client) = Lab::with_extensions(1, options, &["1001"], SECRET)
        .await
        .unwrap();
    let target = sip(&lab, 0);
    let rss = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap()
    };
    let pid = lab.nodes[0].pid().unwrap();
    let before = rss(pid);
    // 5,000 sources (127.1.x.y, all on the loopback interface), paced so the socket buffer keeps up.
    for n in 0..5_000u32 {
        let addr = std::net::Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250 + 1) as u8);
        let sock = std::net::UdpSocket::bind((addr, 0)).unwrap();
        let msg = format!(
            "OPTIONS sip:{target} SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bKm{n}\r\nMax-Forwards: 70\r\n\
             From: <sip:x@{addr}>;tag=m{n}\r\nTo: <sip:{target}>\r\nCall-ID: many-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = sock.send_to(msg.as_bytes(), target);
        if n % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The table stopped at its bound: the rest went uncounted, not into memory.
    let untracked = client
        .metric(0, "pbx_security_untracked_total")
        .await
        .unwrap();
    let received = client
        .metric(0, "pbx_sip_messages_received_total{transport=\"udp\"}")
        .await
        .unwrap();
    assert!(
        untracked > 0.0,
        "untracked {untracked}, received {received}"
    );
    let grown = rss(pid).saturating_sub(before);
    assert!(grown < 64 * 1024, "the node grew by {grown} KiB");
    // And it still serves a phone elsewhere.
    let mut phone = Phone::bound(ip("127.0.0.20"), target, "1001", SECRET)
        .await
        .unwrap();
    assert_eq!(phone.register(300).await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_block_rule_keeps_a_source_out_of_the_relay() {
    let (lab, client) = Lab::with_extensions(1, LabOptions::default(), &["1001", "1002"], SECRET)
        .await
        .unwrap();
    let resp = client
        .req(0, reqwest::Method::POST, "/api/v1/firewall/rules")
        .json(&json!({"action": "block", "network": "127.0.0.21/32", "services": ["media"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    client.sync(0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let target = sip(&lab, 0);
    // Signalling from 127.0.0.21 is fine (the rule is for media only); its RTP is not.
    let mut alice = Phone::bound(ip("127.0.0.21"), target, "1001", SECRET)
        .await
        .unwrap();
    let mut bob = Phone::bound(ip("127.0.0.22"), target, "1002", SECRET)
        .await
        .unwrap();
    assert_eq!(alice.register(300).await.unwrap(), 200);
    assert_eq!(bob.register(300).await.unwrap(), 200);
    let out = alice.dial("1002", None).await.unwrap();
    let (answered, placed) = tokio::join!(
        bob.answer(pbx_tests::phone::Answer::Accept, Duration::from_secs(5)),
        alice.outcome(&out, Duration::from_secs(5))
    );
    let bob_dialog = answered.unwrap().1.unwrap();
    let mut alice_dialog = placed.unwrap().unwrap();
    alice
        .send_rtp(alice_dialog.media, 10, Duration::from_millis(20))
        .await
        .unwrap();
    bob.send_rtp(bob_dialog.media, 10, Duration::from_millis(20))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        bob.rtp_stats.count(),
        0,
        "media from the blocked source was relayed"
    );
    assert_eq!(alice.rtp_stats.count(), 10, "media to it still flows");
    assert_eq!(alice.hang_up(&mut alice_dialog).await.unwrap(), 200);
}

/// A trunk's provider sends far more than one phone: its address is never taken for a flood, while
/// the same burst from any other address is banned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_providers_busy_signalling_is_not_banned_as_a_flood() {
    let (lab, client) = Lab::with_extensions(1, LabOptions::default(), &["1001"], SECRET)
        .await
        .unwrap();
    let trunk = serde_json::json!({"name": "carrier", "kind": "peer", "host": "127.0.0.7",
        "port": 5060, "transport": "udp", "qualify_secs": 0});
    let resp = client
        .req(0, reqwest::Method::POST, "/api/v1/trunks")
        .json(&trunk)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    // The trunks' addresses are refreshed within a second of a change.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let burst = |from: &'static str| {
        let target = sip(&lab, 0);
        async move {
            let sock = tokio::net::UdpSocket::bind((ip(from), 0)).await.unwrap();
            let local = sock.local_addr().unwrap();
            for n in 0..300 {
                let msg = format!(
                    "OPTIONS sip:{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKb{n}\r\n\
                     Max-Forwards: 70\r\nFrom: <sip:carrier@{local}>;tag=b{n}\r\nTo: <sip:{target}>\r\n\
                     Call-ID: burst-{from}-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                );
                sock.send_to(msg.as_bytes(), target).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    burst("127.0.0.7").await;
    burst("127.0.0.8").await;
    wait_banned(&client, 0, "127.0.0.8", Duration::from_secs(3)).await;
    let bans = client.get_json(0, "/api/v1/bans").await.unwrap();
    assert!(
        !bans["bans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["ip"] == "127.0.0.7"),
        "the provider was banned: {bans}"
    );
    assert!(
        answered(&lab, 0, "127.0.0.7").await,
        "the provider is still answered"
    );
    assert!(
        !answered(&lab, 0, "127.0.0.8").await,
        "the other burst's source is cut off"
    );
}
