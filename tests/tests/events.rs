//! The event center: a brute-forcing source is banned, and the events (failed logins, the ban) are
//! stored, listed with filters, posted to an HTTPS webhook with a valid HMAC signature and mailed
//! through a real SMTP server (aiosmtpd).
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use pbx_tests::smtp::mailbox_smtp;
use pbx_tests::{Lab, LabOptions, free_port};

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed")
        .success();
    assert!(ok, "openssl {args:?}");
}

/// A private CA and a certificate for 127.0.0.1 signed by it, for the webhook receiver.
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=events test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "hook.key",
            "-out",
            "hook.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "hook.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "hook.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

async fn wait_for<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_is_stored_posted_signed_and_mailed() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let (hook_port, smtp_port) = (free_port(false), free_port(false));
    let hooks = dir.path().join("hooks.jsonl");
    let receiver = concat!(env!("CARGO_MANIFEST_DIR"), "/events/receiver.py");
    let _hook = KillOnDrop(
        Command::new("/usr/bin/python3")
            .args([receiver, &hook_port.to_string()])
            .arg(dir.path().join("hook.pem"))
            .arg(dir.path().join("hook.key"))
            .arg(&hooks)
            .spawn()
            .unwrap(),
    );
    let maildir = dir.path().join("mail");
    let _smtp = mailbox_smtp(smtp_port, &maildir);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let options = LabOptions {
        events_extra: format!(
            "smtp_server = \"127.0.0.1:{smtp_port}\"\nmail_from = \"pbx@lab.test\"\nextra_ca_file = \"{}\"",
            dir.path().join("ca.pem").display()
        ),
        ..LabOptions::default()
    };
    let lab = Lab::start_with(3, options).await.unwrap();
    let client = lab.client();
    let resp = client
        .req(0, reqwest::Method::POST, "/api/v1/notifications/recipients")
        .json(&json!({"channel": "webhook", "address": format!("https://127.0.0.1:{hook_port}/pbx"), "kinds": ["source_banned", "login_failed"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let webhook: Value = resp.json().await.unwrap();
    let secret = webhook["secret"].as_str().unwrap().to_owned();
    let resp = client
        .req(1, reqwest::Method::POST, "/api/v1/notifications/recipients")
        .json(&json!({"channel": "email", "address": "ops@lab.test", "kinds": ["source_banned"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    // Bad recipients are refused with a reason; the secret is never listed again.
    for bad in [
        json!({"channel": "webhook", "address": "http://127.0.0.1/plain"}),
        json!({"channel": "email", "address": "ops@lab.test>\r\nRCPT TO:<x@y"}),
        json!({"channel": "sms", "address": "+100"}),
    ] {
        let r = client
            .req(0, reqwest::Method::POST, "/api/v1/notifications/recipients")
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let listed = client
        .get_json(2, "/api/v1/notifications/recipients")
        .await
        .unwrap();
    assert_eq!(listed["recipients"].as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&secret));

    // Someone guesses the admin password from 127.0.0.13.
    guess_admin_password(&lab, 1, "127.0.0.13").await;

    // Stored and listed (on another node), filtered by kind.
    let mut banned = Vec::new();
    for _ in 0..50 {
        let page = client
            .get_json(0, "/api/v1/events?kind=source_banned")
            .await
            .unwrap();
        banned = page["events"].as_array().unwrap().clone();
        if !banned.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(banned.len(), 1, "{banned:?}");
    assert_eq!(banned[0]["source"], "127.0.0.13");
    assert_eq!(banned[0]["severity"], "warning");
    let failed = client
        .get_json(2, "/api/v1/events?kind=login_failed")
        .await
        .unwrap();
    assert!(failed["events"].as_array().unwrap().len() >= 5);
    let r = client
        .req(0, reqwest::Method::GET, "/api/v1/events?severity=loud")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Posted to the webhook, signed with the recipient's secret over timestamp and body.
    let posts = wait_for(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&hooks).ok()?;
        let posts: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        posts
            .iter()
            .any(|p| p["headers"]["x-pbx-event"] == "source_banned")
            .then_some(posts)
    })
    .await
    .expect("the ban reached the webhook");
    for post in &posts {
        let headers = &post["headers"];
        let body = post["body"].as_str().unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&hex::decode(&secret).unwrap()).unwrap();
        mac.update(headers["x-pbx-timestamp"].as_str().unwrap().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            headers["x-pbx-signature"],
            expected.as_str(),
            "bad signature on {post}"
        );
        let event: Value = serde_json::from_str(body).unwrap();
        assert_eq!(event["kind"], headers["x-pbx-event"]);
    }

    // Mailed through the SMTP server.
    let mail = wait_for(Duration::from_secs(10), || {
        let new = std::fs::read_dir(maildir.join("new")).ok()?;
        new.flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .find(|m| m.contains("source_banned"))
    })
    .await
    .expect("the ban was mailed");
    assert!(mail.contains("To: ops@lab.test"), "{mail}");
    assert!(
        mail.contains("Subject: [pbx] Warning: source_banned"),
        "{mail}"
    );
    assert!(mail.contains("Date: "), "{mail}");
    assert!(mail.contains("Message-ID: <"), "{mail}");
    assert!(mail.contains("127.0.0.13"), "{mail}");
}

/// An aiosmtpd relay that refuses MAIL before STARTTLS and AUTH, with a certificate from the test's
/// private CA; mail goes to a Maildir.
const TLS_RELAY: &str = r#"
import sys, ssl, time
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword
port, cert, key, maildir = sys.argv[1:5]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
def auth(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == b"pbx" and data.password == b"relay pass"
    return AuthResult(success=ok)
c = Controller(Mailbox(maildir), hostname="127.0.0.1", port=int(port), tls_context=ctx,
               require_starttls=True, authenticator=auth, auth_required=True, auth_require_tls=True)
c.start()
while True:
    time.sleep(3600)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_is_mailed_over_starttls_with_auth() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let smtp_port = free_port(false);
    let maildir = dir.path().join("mail");
    let _smtp = KillOnDrop(
        Command::new("/usr/bin/python3")
            .args(["-c", TLS_RELAY, &smtp_port.to_string()])
            .arg(dir.path().join("hook.pem"))
            .arg(dir.path().join("hook.key"))
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd is installed (Debian python3-aiosmtpd)"),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let options = LabOptions {
        events_extra: format!(
            "smtp_server = \"127.0.0.1:{smtp_port}\"\nmail_from = \"pbx@lab.test\"\n\
             starttls = \"required\"\nusername = \"pbx\"\npassword = \"relay pass\"\n\
             smtp_extra_ca_file = \"{}\"",
            dir.path().join("ca.pem").display()
        ),
        ..LabOptions::default()
    };
    let lab = Lab::start_with(1, options).await.unwrap();
    let client = lab.client();
    let resp = client
        .req(0, reqwest::Method::POST, "/api/v1/notifications/recipients")
        .json(&json!({"channel": "email", "address": "ops@lab.test", "kinds": ["source_banned"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);

    guess_admin_password(&lab, 0, "127.0.0.14").await;

    // Only a session that did STARTTLS (against the private CA) and AUTH gets a message in.
    let mail = wait_for(Duration::from_secs(15), || {
        let new = std::fs::read_dir(maildir.join("new")).ok()?;
        new.flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .find(|m| m.contains("source_banned"))
    })
    .await
    .expect("the ban was mailed over STARTTLS with AUTH");
    assert!(mail.contains("To: ops@lab.test"), "{mail}");
    assert!(mail.contains("127.0.0.14"), "{mail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_node_and_its_return_are_events() {
    let mut lab = Lab::start_with(3, LabOptions::default()).await.unwrap();
    let client = lab.client();
    let leader = lab.wait_leader(Duration::from_secs(10)).await.unwrap();
    let victim = (leader + 1) % 3;
    let victim_id = lab.nodes[victim].id;
    lab.kill(victim);
    let kinds = |page: &Value| -> Vec<(String, String)> {
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["kind"].as_str().unwrap().to_owned(),
                    e["message"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let mut lost = false;
    for _ in 0..150 {
        let page = client
            .get_json(leader, "/api/v1/events?kind=node_lost")
            .await
            .unwrap();
        if kinds(&page)
            .iter()
            .any(|(_, m)| m.contains(&format!("node {victim_id} ")))
        {
            lost = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(lost, "no node_lost event for node {victim_id}");
    lab.restart(victim).await.unwrap();
    let mut back = false;
    for _ in 0..150 {
        let page = client
            .get_json(leader, "/api/v1/events?severity=info")
            .await
            .unwrap();
        if kinds(&page)
            .iter()
            .any(|(k, m)| k == "node_recovered" && m.contains(&format!("node {victim_id} ")))
        {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "no node_recovered event for node {victim_id}");
}

/// Six wrong admin passwords from `from` to node `i`: enough for a ban.
async fn guess_admin_password(lab: &Lab, i: usize, from: &str) {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(lab.ca_path()).unwrap()).unwrap();
    let attacker = reqwest::Client::builder()
        .add_root_certificate(ca)
        .local_address(from.parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("{}/api/v1/session", lab.nodes[i].api_url());
    for _ in 0..6 {
        let _ = attacker
            .post(&url)
            .json(&json!({"username": "admin", "password": "Not-the-password-1"}))
            .send()
            .await;
    }
}

/// "Send the portal login by e-mail": the extension's user gets a portal account and a mail with the
/// portal address, the login and a temporary password, which signs in and must be changed first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_user_gets_a_portal_login_by_mail() {
    let dir = tempfile::tempdir().unwrap();
    let smtp_port = free_port(false);
    let maildir = dir.path().join("mail");
    let _smtp = mailbox_smtp(smtp_port, &maildir);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let options = LabOptions {
        events_extra: format!(
            "smtp_server = \"127.0.0.1:{smtp_port}\"\nmail_from = \"pbx@lab.test\""
        ),
        ..LabOptions::default()
    };
    let lab = Lab::start_with(1, options).await.unwrap();
    let client = lab.client();
    let r = client
        .req(0, reqwest::Method::POST, "/api/v1/extensions")
        .json(&json!({"number": "1042", "display_name": "Dana Scully"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = client
        .req(0, reqwest::Method::POST, "/api/v1/extensions/1042/welcome")
        .json(&json!({"email": "not an address"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = client
        .req(0, reqwest::Method::POST, "/api/v1/extensions/1042/welcome")
        .json(&json!({"email": "dana@lab.test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());

    let mail = wait_for(Duration::from_secs(10), || {
        let new = std::fs::read_dir(maildir.join("new")).ok()?;
        new.flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .find(|m| m.contains("To: dana@lab.test"))
    })
    .await
    .expect("the login was mailed");
    assert!(mail.contains("Hello Dana Scully"), "{mail}");
    assert!(mail.contains("Portal: https://127.0.0.1:"), "{mail}");
    assert!(mail.contains("User name: 1042"), "{mail}");
    let password = mail
        .lines()
        .find_map(|l| l.strip_prefix("Temporary password: "))
        .expect("a temporary password")
        .trim()
        .to_owned();
    // It signs in, as extension 1042's user, who must choose their own password first.
    let r = client
        .anon(0, reqwest::Method::POST, "/api/v1/session")
        .json(&json!({"username": "1042", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let session: Value = r.json().await.unwrap();
    assert_eq!(session["role"], "user");
    assert_eq!(session["extension"], "1042");
    assert_eq!(session["must_change_password"], true);
}
