//! The replicated audio store with three real nodes: an uploaded prompt is on every node's disk with
//! the same SHA-256; a node that was down while a file was saved fetches it when it returns; bad
//! uploads, quotas and unknown ids get clear answers; a prompt spoken from text (espeak-ng) is saved
//! as 8 kHz speech, and bad texts and voices are refused naming the field.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use pbx_tests::api::send;
use pbx_tests::wav::tone as wav;
use pbx_tests::{Lab, LabClient, LabOptions};

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn copy_path(lab: &Lab, i: usize, id: &str) -> PathBuf {
    lab.nodes[i].data_dir.join("audio").join(id)
}

async fn upload(
    client: &LabClient,
    node: usize,
    query: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let resp = client
        .req(node, Method::POST, &format!("/api/v1/audio?{query}"))
        .header("content-type", "audio/wav")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Waits until node `i` has a copy of `id` hashing to `sha`.
async fn wait_copy(lab: &Lab, i: usize, id: &str, sha: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if std::fs::read(copy_path(lab, i, id)).is_ok_and(|b| sha256(&b) == sha) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn holders(v: &Value) -> Vec<u64> {
    v["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_is_saved_on_a_majority_copied_everywhere_and_caught_up_by_a_returning_node() {
    let mut lab = Lab::start(3).await.unwrap();
    lab.wait_leader(Duration::from_secs(10)).await.unwrap();
    let client = lab.client();

    // Saved: answered once a majority holds it; then on every disk with the same checksum.
    let prompt = wav(8000, 1, 16, 2);
    let sha = sha256(&prompt);
    let (status, saved) = upload(&client, 0, "kind=prompt&name=Welcome", prompt.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    let id = saved["id"].as_str().unwrap().to_owned();
    assert_eq!(saved["sha256"], sha);
    assert_eq!(saved["size"], prompt.len());
    assert!(
        holders(&saved).len() >= 2,
        "saved before a majority held it: {saved}"
    );
    for i in 0..3 {
        assert!(
            wait_copy(&lab, i, &id, &sha, Duration::from_secs(15)).await,
            "node {i} has no verified copy\n{}",
            lab.log_tail(i)
        );
    }
    let all = pbx_tests::api::poll_node(
        &client,
        2,
        &format!("/api/v1/audio/{id}"),
        Duration::from_secs(15),
        |v| holders(v).len() == 3,
    )
    .await;
    assert_eq!(
        holders(&all).len(),
        3,
        "every copy confirmed in the index: {all}"
    );
    let listed = client
        .get_json(1, "/api/v1/audio?kind=prompt")
        .await
        .unwrap();
    assert_eq!(listed["audio"][0]["id"], id.as_str());
    assert_eq!(listed["audio"][0]["local"], true);
    let fetched = client
        .req(1, Method::GET, &format!("/api/v1/audio/{id}/content"))
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), &prompt[..]);

    // Node 3 is down while music is saved: two of three suffice; it fetches the file on return.
    lab.stop(2).unwrap();
    let music = wav(16000, 1, 16, 3);
    let music_sha = sha256(&music);
    let (status, saved) = upload(&client, 0, "kind=music_on_hold&name=Jazz", music).await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    let music_id = saved["id"].as_str().unwrap().to_owned();
    assert_eq!(holders(&saved).len(), 2, "{saved}");
    assert!(!copy_path(&lab, 2, &music_id).exists());
    // The save goes on pushing the third copy after answering; restart node 3 only once that push
    // has given up, so that the copy must come from node 3's own catch-up.
    let given_up = async {
        loop {
            let log = std::fs::read_to_string(&lab.nodes[0].log).unwrap_or_default();
            if log.contains("that node fetches it later") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), given_up)
        .await
        .expect("the push to the stopped node gives up");
    lab.restart(2).await.unwrap();
    assert!(
        wait_copy(&lab, 2, &music_id, &music_sha, Duration::from_secs(30)).await,
        "the returning node did not catch up\n{}",
        lab.log_tail(2)
    );
    let caught_up = client.metric(2, "pbx_audio_caught_up_total").await.unwrap();
    assert!(caught_up >= 1.0, "caught up {caught_up}");

    // Bad uploads are refused with the reason, and nothing is stored.
    let before = client.get_json(0, "/api/v1/audio").await.unwrap()["audio"]
        .as_array()
        .unwrap()
        .len();
    for (query, body, why) in [
        ("kind=prompt&name=x", b"not audio at all".to_vec(), "WAV"),
        ("kind=prompt&name=x", wav(8000, 2, 16, 1), "mono"),
        ("kind=prompt&name=x", wav(8000, 1, 8, 1), "16-bit"),
        ("kind=prompt&name=x", wav(11025, 1, 16, 1), "11025"),
        ("kind=prompt&name=x", Vec::new(), ""),
        ("kind=recording&name=x", wav(8000, 1, 16, 1), "kind"),
        ("kind=jingle&name=x", wav(8000, 1, 16, 1), "kind"),
        ("kind=prompt&name=", wav(8000, 1, 16, 1), "name"),
        ("kind=prompt", wav(8000, 1, 16, 1), ""),
    ] {
        let (status, answer) = upload(&client, 0, query, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(why),
            "{query}: {answer}"
        );
    }
    let after = client.get_json(0, "/api/v1/audio").await.unwrap()["audio"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);

    // Over the cluster's quota: refused with 507, saying which quota.
    let quotas = send(
        &lab,
        Method::PUT,
        "/api/v1/audio-quotas",
        json!({"per_owner_bytes": 1000, "total_bytes": 200_000}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(quotas["total_bytes"], 200_000);
    let (status, answer) = upload(&client, 1, "kind=prompt&name=more", wav(8000, 1, 16, 6)).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("cluster's quota"),
        "{answer}"
    );
    let usage = client.get_json(0, "/api/v1/audio-quotas").await.unwrap();
    assert_eq!(usage["files"], 2, "{usage}");
    send(
        &lab,
        Method::PUT,
        "/api/v1/audio-quotas",
        json!({"per_owner_bytes": 2000, "total_bytes": 1000}),
        StatusCode::BAD_REQUEST,
    )
    .await;

    // Deleted: gone from the index at once (each node drops its copy on a later pass).
    let gone = client
        .req(0, Method::DELETE, &format!("/api/v1/audio/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    for path in [
        format!("/api/v1/audio/{id}"),
        format!("/api/v1/audio/{id}/content"),
        "/api/v1/audio/..%2F..%2Fetc%2Fpasswd".to_owned(),
        format!("/api/v1/audio/{}", "f".repeat(32)),
    ] {
        let resp = client.req(1, Method::GET, &path).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let usage = client.get_json(0, "/api/v1/audio-quotas").await.unwrap();
    assert_eq!(usage["files"], 1, "{usage}");

    // A prompt spoken from text (espeak-ng): an 8 kHz WAV of speech, saved like an upload.
    let text = "Thank you for calling. For sales, press one. For support, press two.";
    let spoken = send(
        &lab,
        Method::POST,
        "/api/v1/audio/speech",
        json!({"kind": "prompt", "name": "Main menu", "text": text}),
        StatusCode::CREATED,
    )
    .await;
    assert!(holders(&spoken).len() >= 2, "{spoken}");
    let wav_bytes = client
        .req(
            1,
            Method::GET,
            &format!("/api/v1/audio/{}/content", spoken["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (rate, samples) = mono_pcm(&wav_bytes);
    assert_eq!(rate, 8000);
    let secs = samples.len() as f64 / 8000.0;
    assert!((2.0..=10.0).contains(&secs), "{secs} s of speech");
    let voiced = samples
        .chunks_exact(160)
        .filter(|f| f.iter().map(|s| i64::from(*s).abs()).sum::<i64>() / 160 > 300)
        .count() as f64
        * 0.02;
    assert!(voiced > 1.0, "{voiced} s of it sounding");
    let bad = [
        (json!({"kind": "prompt", "name": "x", "text": ""}), "text"),
        (
            json!({"kind": "prompt", "name": "x", "text": "a\u{7}b"}),
            "text",
        ),
        (
            json!({"kind": "prompt", "name": "x", "text": "a".repeat(1001)}),
            "text",
        ),
        (
            json!({"kind": "prompt", "name": "x", "text": "hi", "voice": "-w"}),
            "voice",
        ),
        (
            json!({"kind": "prompt", "name": "x", "text": "hi", "voice": "zz-none"}),
            "voice",
        ),
        (json!({"kind": "prompt", "name": "", "text": "hi"}), "name"),
        (
            json!({"kind": "recording", "name": "x", "text": "hi"}),
            "kind",
        ),
        (
            json!({"kind": "prompt", "name": "x", "text": "hi", "speed": 3}),
            "speed",
        ),
    ];
    for (body, field) in bad {
        let (status, answer) = pbx_tests::api::call(
            &lab,
            Method::POST,
            "/api/v1/audio/speech",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer.to_string().contains(field), "{body}: {answer}");
    }
    let usage = client.get_json(0, "/api/v1/audio-quotas").await.unwrap();
    assert_eq!(usage["files"], 2, "only the good one stored: {usage}");

    // Last: the server closes a connection whose body it would not read, and the client's pool
    // may not know yet when it sends the next request.
    let (status, _) = upload(
        &client,
        0,
        "kind=prompt&name=big",
        vec![0; 17 * 1024 * 1024],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let usage = lab
        .client()
        .get_json(1, "/api/v1/audio-quotas")
        .await
        .unwrap();
    assert_eq!(usage["files"], 2, "nothing stored: {usage}");
}

/// The rate and samples of a 16-bit mono WAV with the canonical 44-byte header.
fn mono_pcm(wav: &[u8]) -> (u32, Vec<i16>) {
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 1, "mono");
    let rate = u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]);
    let samples = wav[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    (rate, samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_disk_is_full_refuses_audio_with_an_event_and_stores_nothing() {
    // Every node keeps more disk free than any machine has: each refuses every new file.
    let options = LabOptions {
        cluster_extra: "audio_reserve_mib = 1000000000".into(),
        ..LabOptions::default()
    };
    let mut lab = Lab::start_with(3, options).await.unwrap();
    lab.wait_leader(Duration::from_secs(10)).await.unwrap();
    let client = lab.client();
    let (status, answer) =
        upload(&client, 0, "kind=prompt&name=Welcome", wav(8000, 1, 16, 1)).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("full"),
        "{answer}"
    );
    let listed = client.get_json(1, "/api/v1/audio").await.unwrap();
    assert_eq!(listed["audio"].as_array().unwrap().len(), 0, "{listed}");
    for i in 0..3 {
        let dir = lab.nodes[i].data_dir.join("audio");
        let files = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(files, 1, "only the empty tmp/ directory on node {i}");
        assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
    }
    let event = pbx_tests::api::wait_item(&client, "/api/v1/events", "events", |e| {
        e["kind"] == "audio_store_full"
    })
    .await;
    assert_eq!(event["severity"], "critical", "{event}");
}
