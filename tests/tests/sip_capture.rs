//! SIP capture on a real two-node cluster: an admin enables capture for extension 1001; 1001 and
//! 1002 register with digest authentication through node 1; the pcap downloaded from node 0 (which
//! asks node 1 over the cluster RPC) holds 1001's REGISTERs and 401s, none of 1002's, and the
//! digest `response` masked; the download is in the audit log; a non-admin is refused; and once
//! disabled, nothing more is captured.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use pbx_tests::Lab;
use pbx_tests::api::{PASSWORD, as_user, call, create, lab_without_pings, send};
use pbx_tests::sip_probe::{Challenge, SipProbe, SipResponse, register};

const SECRET: &str = "Tr7!kq-Vw9zP";
/// Targets reach every node within a second of being committed (each node rebuilds its own).
const TARGETS_SETTLE: Duration = Duration::from_millis(1_500);

/// REGISTER, 401, REGISTER with credentials; the final answer and the clear digest `response`.
async fn register_digest(probe: &SipProbe, user: &str, call_id: &str) -> (SipResponse, String) {
    let contact = format!("<sip:{user}@{}>", probe.local);
    let first = probe
        .send(
            &register(probe, user, call_id, 1, &contact, Some(300), ""),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(first.status, 401, "{}", first.raw);
    let challenge = Challenge::parse(&first.header("WWW-Authenticate").unwrap()).unwrap();
    let auth = challenge.answer(
        user,
        SECRET,
        "REGISTER",
        &format!("sip:{}", probe.server),
        1,
        "0a1b2c3d",
    );
    let response = auth
        .split("response=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    assert!(response.len() >= 32, "{auth}");
    let text = register(
        probe,
        user,
        call_id,
        2,
        &contact,
        Some(300),
        &format!("Authorization: {auth}\r\n"),
    );
    let ok = probe.send(&text, Duration::from_secs(5)).await.unwrap();
    assert_eq!(ok.status, 200, "{}", ok.raw);
    (ok, response)
}

/// The payloads of a classic pcap file of raw IPv4/UDP packets, checking every header on the way.
fn pcap_payloads(file: &[u8]) -> Vec<Vec<u8>> {
    let u32le = |b: &[u8]| u32::from_le_bytes(b[..4].try_into().unwrap());
    let be16 = |b: &[u8]| usize::from(u16::from_be_bytes([b[0], b[1]]));
    assert!(file.len() >= 24, "{} bytes", file.len());
    assert_eq!(u32le(&file[0..4]), 0xa1b2_c3d4, "classic pcap magic");
    assert_eq!(&file[4..8], &[2, 0, 4, 0], "version 2.4");
    assert_eq!(u32le(&file[20..24]), 101, "LINKTYPE_RAW");
    let mut rest = &file[24..];
    let mut payloads = Vec::new();
    while !rest.is_empty() {
        let incl = u32le(&rest[8..12]) as usize;
        let packet = &rest[16..16 + incl];
        assert_eq!(packet[0], 0x45, "IPv4 without options");
        assert_eq!(be16(&packet[2..4]), packet.len(), "IP total length");
        assert_eq!(packet[9], 17, "UDP");
        let udp = &packet[20..];
        assert_eq!(be16(&udp[4..6]), udp.len(), "UDP length");
        payloads.push(udp[8..].to_vec());
        rest = &rest[16 + incl..];
    }
    payloads
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn download(lab: &Lab, query: &str) -> Vec<Vec<u8>> {
    let resp = lab
        .req(0, Method::GET, &format!("/api/v1/capture.pcap{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let headers = resp.headers().clone();
    assert_eq!(
        headers["content-type"].to_str().unwrap(),
        "application/vnd.tcpdump.pcap"
    );
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"sip-capture-")
            && disposition.ends_with(".pcap\""),
        "{disposition}"
    );
    pcap_payloads(&resp.bytes().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_enabled_for_one_extension_downloads_as_a_masked_pcap() {
    // No OPTIONS pings: the messages captured are the test's own.
    let (lab, client) = lab_without_pings(2, &["1001", "1002"], SECRET).await;

    // ---- Off by default; an admin enables it for 1001 only.
    let (s, targets) = call(&lab, Method::GET, "/api/v1/capture/targets", None).await;
    assert_eq!((s, targets), (StatusCode::OK, json!([])));
    let put = send(
        &lab,
        Method::PUT,
        "/api/v1/capture/targets/ext/1001",
        json!({"minutes": 10}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (&put["kind"], &put["name"]),
        (&json!("ext"), &json!("1001"))
    );
    assert_eq!(put["active"], true);
    let ten_minutes = put["expires_at"].as_u64().unwrap() - put["enabled_at"].as_u64().unwrap();
    assert_eq!(ten_minutes, 600_000);
    let (_, targets) = call(&lab, Method::GET, "/api/v1/capture/targets", None).await;
    assert_eq!(targets.as_array().unwrap().len(), 1, "{targets}");
    // A target that is no extension, a capture longer than a day: refused.
    let (s, _) = call(
        &lab,
        Method::PUT,
        "/api/v1/capture/targets/ext/1999",
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(
        &lab,
        Method::PUT,
        "/api/v1/capture/targets/ext/1002",
        Some(json!({"minutes": 1441})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // ---- A non-admin may neither download nor change targets.
    create(
        &lab,
        "/api/v1/accounts",
        json!({"username": "una", "role": "user", "extension": "1001",
               "password": PASSWORD, "must_change_password": false}),
    )
    .await;
    for (method, path, body) in [
        (Method::GET, "/api/v1/capture.pcap", None),
        (Method::GET, "/api/v1/capture", None),
        (Method::GET, "/api/v1/capture/targets", None),
        (
            Method::PUT,
            "/api/v1/capture/targets/ext/1002",
            Some(json!({})),
        ),
    ] {
        let got = as_user(&lab, "una", method.clone(), path, body).await;
        assert_eq!(got.0, StatusCode::FORBIDDEN, "{method} {path}: {}", got.1);
    }

    // ---- Both register through node 1; node 0 answers the query, asking node 1.
    client.sync(1).await.unwrap();
    tokio::time::sleep(TARGETS_SETTLE).await;
    let sip1 = SocketAddr::from(([127, 0, 0, 1], lab.nodes[1].sip_port));
    let probe = SipProbe::new(sip1).await.unwrap();
    let (_, secret1001) = register_digest(&probe, "1001", "capture-1001").await;
    let probe2 = SipProbe::new(sip1).await.unwrap();
    let (_, secret1002) = register_digest(&probe2, "1002", "capture-1002").await;

    let payloads = download(&lab, "").await;
    let texts: Vec<String> = payloads
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let registers = texts
        .iter()
        .filter(|t| t.starts_with("REGISTER ") && t.contains("Call-ID: capture-1001"))
        .count();
    let challenges = texts
        .iter()
        .filter(|t| t.starts_with("SIP/2.0 401") && t.contains("capture-1001"))
        .count();
    let oks = texts
        .iter()
        .filter(|t| t.starts_with("SIP/2.0 200") && t.contains("capture-1001"))
        .count();
    assert_eq!((registers, challenges, oks), (2, 1, 1), "{texts:#?}");
    assert!(
        texts.iter().all(|t| !t.contains("1002@")),
        "1002's messages were captured: {texts:#?}"
    );
    for p in &payloads {
        assert!(
            !contains(p, &secret1001),
            "the digest response is in the pcap"
        );
        assert!(!contains(p, &secret1002));
        assert!(!contains(p, SECRET));
    }
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Authorization: Digest") && t.contains("response=\"********\"")),
        "{texts:#?}"
    );

    // ---- The JSON summaries: the same messages, from node 1, every member answering.
    let (s, found) = call(
        &lab,
        Method::GET,
        "/api/v1/capture?extension=1001&call_id=capture-1001&limit=100",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{found}");
    let messages = found["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4, "{found}");
    assert!(
        messages
            .iter()
            .all(|m| m["node"] == lab.nodes[1].id && m["call_id"] == "capture-1001"),
        "{found}"
    );
    assert_eq!(messages[0]["direction"], "in");
    assert!(
        messages[1]["first_line"]
            .as_str()
            .unwrap()
            .starts_with("SIP/2.0 401"),
        "{found}"
    );
    let nodes = found["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{found}");
    assert!(nodes.iter().all(|n| n.get("error").is_none()), "{found}");
    let (s, none) = call(&lab, Method::GET, "/api/v1/capture?call_id=nope", None).await;
    assert_eq!((s, &none["messages"]), (StatusCode::OK, &json!([])));
    let (s, _) = call(&lab, Method::GET, "/api/v1/capture?limit=0", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // ---- The download is in the audit log.
    let (_, audit) = call(&lab, Method::GET, "/api/v1/audit?limit=1000", None).await;
    let entries = audit["entries"].as_array().unwrap();
    let downloads: Vec<&Value> = entries
        .iter()
        .filter(|e| {
            e["actor"] == "admin"
                && e["action"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("GET /api/v1/capture.pcap: downloaded")
        })
        .collect();
    assert_eq!(downloads.len(), 1, "{audit}");
    assert!(
        entries.iter().any(|e| e["action"]
            .as_str()
            .unwrap_or_default()
            .contains("PUT /api/v1/capture/targets/ext/1001")),
        "{audit}"
    );

    // ---- Disabled: nothing more is captured.
    let (s, _) = call(
        &lab,
        Method::DELETE,
        "/api/v1/capture/targets/ext/1001",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    client.sync(1).await.unwrap();
    tokio::time::sleep(TARGETS_SETTLE).await;
    register_digest(&probe, "1001", "capture-after").await;
    let after = download(&lab, "?extension=1001").await;
    assert!(after.len() >= 4, "what was captured before stays");
    assert!(after.iter().all(|p| !contains(p, "capture-after")));
    assert!(download(&lab, "?call_id=capture-after").await.is_empty());
}
