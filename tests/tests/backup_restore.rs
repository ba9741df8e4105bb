//! Backup and restore with real processes: a three-node cluster with 1,000 extensions, a call's
//! CDR and an audio file is backed up through the API; its nodes are destroyed; a wrong
//! passphrase, a damaged archive and one from a newer pbx are refused with nothing written; the
//! archive restores into three new nodes (new certificates, new data directories), where a phone
//! registers with its old secret, the admin signs in with the old password, and the CDRs and the
//! audio file compare equal.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use pbx_tests::api::{call, expect_error};
use pbx_tests::phone::{Answer, Phone};
use pbx_tests::sshd::Sshd;
use pbx_tests::{Lab, LabClient, LabOptions, pbx_bin};

const SECRET: &str = "Tr7!kq-Vw9zP";
const PASSPHRASE: &str = "granite-otter-harbour-1947";
const EXTENSIONS: u32 = 1_000;

fn sip(lab: &Lab, i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], lab.nodes[i].sip_port))
}

/// Creates extensions 2000… concurrently (one Raft commit each).
async fn create_extensions(client: &LabClient, count: u32) {
    let results: Vec<StatusCode> = futures::stream::iter(0..count)
        .map(|n| async move {
            client
                .create_extension_with_secret(0, &(2000 + n).to_string(), SECRET)
                .await
                .unwrap()
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        results.iter().all(|s| *s == StatusCode::CREATED),
        "{results:?}"
    );
}

/// One answered and hung-up call from 2000 to 2001: a CDR.
async fn make_a_call(lab: &Lab) {
    let mut alice = Phone::new(sip(lab, 0), "2000", SECRET).await.unwrap();
    let mut bob = Phone::new(sip(lab, 0), "2001", SECRET).await.unwrap();
    assert_eq!(alice.register(300).await.unwrap(), 200);
    assert_eq!(bob.register(300).await.unwrap(), 200);
    let out = alice.dial("2001", None).await.unwrap();
    let (answered, placed) = tokio::join!(
        bob.answer(Answer::Accept, Duration::from_secs(5)),
        alice.outcome(&out, Duration::from_secs(5))
    );
    answered.unwrap();
    let mut dialog = placed.unwrap().expect("the call is answered");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(alice.hang_up(&mut dialog).await.unwrap(), 200);
}

async fn cdrs(client: &LabClient, i: usize) -> Value {
    for _ in 0..100 {
        let c = client.get_json(i, "/api/v1/cdrs").await.unwrap();
        if c["cdrs"].as_array().is_some_and(|a| !a.is_empty()) {
            return c["cdrs"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no CDR on node {i}");
}

async fn bytes(client: &LabClient, i: usize, path: &str) -> (StatusCode, Vec<u8>) {
    let resp = client.req(i, Method::GET, path).send().await.unwrap();
    (resp.status(), resp.bytes().await.unwrap().to_vec())
}

/// `pbx cluster restore` of `archive` onto the lab's first node; its exit and what it printed.
fn restore(lab: &Lab, archive: &Path, passphrase: &str) -> (bool, String) {
    let out = std::process::Command::new(pbx_bin())
        .args(["cluster", "restore", "--config"])
        .arg(&lab.nodes[0].config)
        .arg("--from")
        .arg(archive)
        .env("PBX_BACKUP_PASSPHRASE", passphrase)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_a_new_cluster() {
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("cluster.pbxbak");

    // ---- The cluster that will be lost.
    let lab = Lab::start_with(3, LabOptions::default()).await.unwrap();
    let client = lab.client();
    create_extensions(&client, EXTENSIONS).await;
    make_a_call(&lab).await;
    let cdrs_before = cdrs(&client, 0).await;
    let prompt = pbx_tests::wav::tone(8000, 1, 16, 2);
    let resp = client
        .req(0, Method::POST, "/api/v1/audio?kind=prompt&name=welcome")
        .header("content-type", "audio/wav")
        .body(prompt)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let audio_id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, audio_before) = bytes(&client, 0, &format!("/api/v1/audio/{audio_id}/content")).await;

    // No passphrase yet: a backup is refused, saying what to do; a weak passphrase is refused.
    let got = call(
        &pbx_tests::api::OnNode(&client, 1),
        Method::POST,
        "/api/v1/backups",
        None,
    )
    .await;
    expect_error(&got, StatusCode::CONFLICT, &["passphrase"]);
    let got = call(
        &pbx_tests::api::OnNode(&client, 0),
        Method::PUT,
        "/api/v1/backups/settings",
        Some(json!({"passphrase": "password1"})),
    )
    .await;
    expect_error(&got, StatusCode::BAD_REQUEST, &["passphrase"]);
    let got = call(
        &pbx_tests::api::OnNode(&client, 0),
        Method::PUT,
        "/api/v1/backups/settings",
        Some(json!({"passphrase": PASSPHRASE, "keep": 3, "schedule": {"time": "25:00"}})),
    )
    .await;
    expect_error(&got, StatusCode::BAD_REQUEST, &["schedule.time"]);
    // Archives are copied to a real SSH server's directory over SFTP.
    let sshd = Sshd::start().unwrap();
    let sftp = json!({
        "host": "127.0.0.1",
        "port": sshd.port,
        "user": sshd.user,
        "path": sshd.upload_dir.to_str().unwrap(),
        "private_key": sshd.client_key,
        "host_key": sshd.host_key,
    });
    let mut bad_sftp = sftp.clone();
    bad_sftp["host_key"] = json!("not a key");
    let got = call(
        &pbx_tests::api::OnNode(&client, 0),
        Method::PUT,
        "/api/v1/backups/settings",
        Some(json!({"passphrase": PASSPHRASE, "sftp": bad_sftp})),
    )
    .await;
    expect_error(&got, StatusCode::BAD_REQUEST, &["sftp.host_key"]);
    let (status, settings) = call(
        &pbx_tests::api::OnNode(&client, 0),
        Method::PUT,
        "/api/v1/backups/settings",
        Some(json!({"passphrase": PASSPHRASE, "keep": 3,
                    "schedule": {"time": "03:30", "weekday": "sunday"}, "sftp": sftp})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    assert_eq!(settings["passphrase_set"], true);
    assert!(settings.get("passphrase").is_none(), "{settings}");
    assert!(!settings.to_string().contains("PRIVATE KEY"), "{settings}");
    assert_eq!(settings["schedule"]["time"], "03:30");
    assert_eq!(settings["sftp"]["port"], sshd.port);

    // The backup is made by node 2 (index 1), listed by every node.
    let started = std::time::Instant::now();
    let (status, record) = call(
        &pbx_tests::api::OnNode(&client, 1),
        Method::POST,
        "/api/v1/backups",
        None,
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::CREATED, "{record}");
    assert_eq!(record["status"], "ok");
    assert_eq!(record["node_id"], 2);
    assert_eq!(record["audio_files"], 1);
    let id = record["id"].as_str().unwrap().to_owned();
    client.sync(2).await.unwrap();
    let listed = client.get_json(2, "/api/v1/backups").await.unwrap();
    assert_eq!(listed["backups"][0]["id"], id.as_str(), "{listed}");

    // Downloaded from its node, the file is the one the record describes; another node points
    // there.
    let (status, archive_bytes) =
        bytes(&client, 1, &format!("/api/v1/backups/{id}/download")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(archive_bytes.len() as u64, record["size"].as_u64().unwrap());
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&archive_bytes)),
        record["sha256"].as_str().unwrap()
    );
    let no_follow = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(lab.ca_path()).unwrap()).unwrap(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = no_follow
        .get(format!(
            "{}/api/v1/backups/{id}/download",
            lab.nodes[0].api_url()
        ))
        .basic_auth("admin", Some(&lab.admin_password))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.contains(&lab.nodes[1].api_port.to_string()),
        "{location}"
    );
    std::fs::write(&archive, &archive_bytes).unwrap();
    let uploaded = sshd.upload_dir.join(format!("{id}.pbxbak"));
    assert!(
        record["remote"].as_str().unwrap().starts_with("sftp://"),
        "{record}"
    );
    assert_eq!(
        std::fs::read(&uploaded).unwrap(),
        archive_bytes,
        "the uploaded copy is the archive"
    );
    let manual_file = lab.nodes[1]
        .data_dir
        .join("backups")
        .join(format!("{id}.pbxbak"));
    assert!(manual_file.is_file());

    // A schedule whose time has just passed (UTC, the cluster's default zone) is made by the
    // leader within its next look at the clock; keeping one, the manual backup then goes, with its
    // file on node 2.
    let minute = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60
        + 1440
        - 1)
        % 1440;
    let time = format!("{:02}:{:02}", minute / 60, minute % 60);
    let (status, _) = call(
        &pbx_tests::api::OnNode(&client, 0),
        Method::PUT,
        "/api/v1/backups/settings",
        Some(json!({"keep": 1, "schedule": {"time": time}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let scheduled_done = |v: &Value| {
        v["backups"].as_array().is_some_and(|b| {
            b.len() == 1 && b[0]["trigger"] == "scheduled" && b[0]["status"] == "ok"
        })
    };
    let listed = pbx_tests::api::poll(
        &client,
        "/api/v1/backups",
        Duration::from_secs(60),
        scheduled_done,
    )
    .await;
    assert!(scheduled_done(&listed), "{listed}");
    assert!(
        listed["backups"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("scheduled-")
    );
    let events = client
        .get_json(0, "/api/v1/events?kind=backup_ok")
        .await
        .unwrap();
    assert!(events.to_string().contains("backup_ok"), "{events}");
    for _ in 0..300 {
        if !manual_file.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !manual_file.exists(),
        "the manual backup's archive is deleted past retention"
    );
    assert!(!uploaded.exists(), "and so is its uploaded copy");
    let scheduled_id = listed["backups"][0]["id"].as_str().unwrap();
    assert!(
        sshd.upload_dir
            .join(format!("{scheduled_id}.pbxbak"))
            .is_file()
    );

    // A server that does not show the pinned host key gets nothing: the backup is kept locally
    // and the failed upload is said, on the record and as an event.
    let mut wrong_server = sftp.clone();
    let other = Sshd::start().unwrap();
    wrong_server["host_key"] = json!(other.host_key);
    let (status, _) = call(
        &pbx_tests::api::OnNode(&client, 0),
        Method::PUT,
        "/api/v1/backups/settings",
        Some(json!({"sftp": wrong_server, "keep": 3})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) = call(
        &pbx_tests::api::OnNode(&client, 0),
        Method::POST,
        "/api/v1/backups",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{refused}");
    assert_eq!(refused["status"], "ok");
    assert!(refused["remote"].is_null(), "{refused}");
    assert!(
        refused["remote_error"]
            .as_str()
            .unwrap()
            .contains("sftp failed"),
        "{refused}"
    );
    let events = client.get_json(0, "/api/v1/events").await.unwrap();
    assert!(events.to_string().contains("not uploaded"), "{events}");
    let admin_password = lab.admin_password.clone();
    eprintln!(
        "backup of {EXTENSIONS} extensions: {} bytes, made in {took:?}",
        archive_bytes.len()
    );

    // ---- Every node destroyed.
    drop(client);
    drop(lab);

    // ---- Refusals leave the new node's data directory as it was: absent.
    let mut new = Lab::prepared(3, LabOptions::default()).unwrap();
    let (ok, text) = restore(&new, &archive, "granite-otter-harbour-1948");
    assert!(!ok && text.contains("wrong passphrase"), "{text}");
    assert!(!new.nodes[0].data_dir.exists());
    let damaged = work.path().join("damaged.pbxbak");
    let mut bad = archive_bytes.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x40;
    std::fs::write(&damaged, &bad).unwrap();
    let (ok, text) = restore(&new, &damaged, PASSPHRASE);
    assert!(!ok && text.contains("damaged"), "{text}");
    assert!(!new.nodes[0].data_dir.exists());
    let newer = work.path().join("newer.pbxbak");
    let mut future = archive_bytes.clone();
    future[8] = 0xff;
    std::fs::write(&newer, &future).unwrap();
    let (ok, text) = restore(&new, &newer, PASSPHRASE);
    assert!(!ok && text.contains("newer"), "{text}");
    assert!(!new.nodes[0].data_dir.exists());

    // ---- Restored into three new nodes.
    let started = std::time::Instant::now();
    let (ok, text) = restore(&new, &archive, PASSPHRASE);
    assert!(ok, "{text}");
    eprintln!("restore: {:?}\n{text}", started.elapsed());
    assert!(
        text.contains(&format!("({} extensions)", EXTENSIONS)),
        "{text}"
    );
    new.admin_password = admin_password;
    new.form().await.unwrap();
    let client = new.client();
    for i in 0..3 {
        client.sync(i).await.unwrap();
    }
    assert_eq!(
        client.extension_numbers(2).await.unwrap().len(),
        EXTENSIONS as usize,
        "every extension on the third new node"
    );
    assert_eq!(cdrs(&client, 2).await, cdrs_before);
    // The audio file reaches the nodes that joined after the restore.
    let (status, audio_after) =
        bytes(&client, 2, &format!("/api/v1/audio/{audio_id}/content")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(audio_after, audio_before);
    // Phones register with their old secrets; the old cluster's backups are not listed.
    let mut phone = Phone::new(sip(&new, 0), "2999", SECRET).await.unwrap();
    assert_eq!(phone.register(300).await.unwrap(), 200);
    let listed = client.get_json(0, "/api/v1/backups").await.unwrap();
    assert_eq!(listed["backups"].as_array().unwrap().len(), 0, "{listed}");
    assert_eq!(listed["settings"]["passphrase_set"], true);
    // A restore onto a node that holds data is refused.
    let (ok, text) = restore(&new, &archive, PASSPHRASE);
    assert!(!ok && text.contains("already holds data"), "{text}");
}
