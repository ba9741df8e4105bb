//! Bad input to the admin API and to the Raft port: a 4xx with a clear JSON message, no state change,
//! and the node keeps serving.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use pbx_tests::Lab;

async fn expect_error(resp: reqwest::Response, status: StatusCode, needle: &str) {
    assert_eq!(resp.status(), status);
    let body: Value = resp.json().await.expect("error bodies are JSON");
    let msg = body["message"].as_str().unwrap_or_default().to_owned();
    assert!(body["error"].is_string(), "{body}");
    assert!(
        msg.to_lowercase().contains(needle),
        "message {msg:?} should mention {needle:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let lab = Lab::start(1).await.unwrap();
    assert_eq!(
        lab.create_extension(0, "1001").await.unwrap(),
        StatusCode::CREATED
    );
    let post = |body: String| {
        lab.req(0, Method::POST, "/api/v1/extensions")
            .header("content-type", "application/json")
            .body(body)
    };

    expect_error(
        post("{\"number\": \"1002\",".into()).send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "malformed",
    )
    .await;
    expect_error(
        post(json!({"number": 1002, "display_name": "x"}).to_string())
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "number",
    )
    .await;
    expect_error(
        post(json!({"display_name": "x"}).to_string())
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "number",
    )
    .await;
    expect_error(
        post(json!({"number": "1002", "display_name": "x", "admin": true}).to_string())
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "admin",
    )
    .await;
    expect_error(
        post(json!({"number": "12ab", "display_name": "x"}).to_string())
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "digits",
    )
    .await;
    expect_error(
        post(json!({"number": "1003", "display_name": "x", "secret": "password1"}).to_string())
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "secret",
    )
    .await;
    let huge = json!({"number": "1004", "display_name": "x".repeat(100_000)}).to_string();
    expect_error(
        post(huge).send().await.unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "larger",
    )
    .await;
    let no_type = lab
        .req(0, Method::POST, "/api/v1/extensions")
        .body(json!({"number": "1005", "display_name": "x"}).to_string());
    expect_error(
        no_type.send().await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "content-type",
    )
    .await;

    // Duplicate and unknown.
    expect_error(
        post(json!({"number": "1001", "display_name": "again"}).to_string())
            .send()
            .await
            .unwrap(),
        StatusCode::CONFLICT,
        "already exists",
    )
    .await;
    expect_error(
        lab.req(0, Method::GET, "/api/v1/extensions/9999")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "does not exist",
    )
    .await;
    expect_error(
        lab.req(0, Method::DELETE, "/api/v1/extensions/9999")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "does not exist",
    )
    .await;
    expect_error(
        lab.req(0, Method::PATCH, "/api/v1/extensions/9999")
            .json(&json!({"enabled": false}))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "does not exist",
    )
    .await;
    expect_error(
        lab.req(0, Method::GET, "/api/v1/extensions?limit=0")
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "limit",
    )
    .await;
    expect_error(
        lab.req(0, Method::GET, "/api/v1/nowhere")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "endpoint",
    )
    .await;

    // No credentials, wrong password, unknown user: all the same 401.
    expect_error(
        lab.anon(0, Method::GET, "/api/v1/extensions")
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "authentication",
    )
    .await;
    let wrong = lab
        .anon(0, Method::GET, "/api/v1/extensions")
        .basic_auth("admin", Some("Wrong-Pass-123"));
    expect_error(
        wrong.send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "authentication",
    )
    .await;
    let unknown = lab
        .anon(0, Method::GET, "/api/v1/extensions")
        .basic_auth("mallory", Some("Wrong-Pass-123"));
    expect_error(
        unknown.send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "authentication",
    )
    .await;
    let forged = lab
        .anon(0, Method::GET, "/api/v1/extensions")
        .bearer_auth("YWRtaW4.99999999999999.00");
    expect_error(
        forged.send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "authentication",
    )
    .await;

    // State is exactly what the one good request made.
    assert_eq!(lab.extension_numbers(0).await.unwrap(), vec!["1001"]);
    let ext: Value = lab
        .client()
        .get_json(0, "/api/v1/extensions/1001")
        .await
        .unwrap();
    assert_eq!(ext["display_name"], "Ext 1001");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_token_works_on_every_node() {
    let lab = Lab::start(3).await.unwrap();
    let session: Value = lab
        .anon(1, Method::POST, "/api/v1/session")
        .json(&json!({"username": "admin", "password": lab.admin_password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["token"].as_str().unwrap();
    for i in 0..3 {
        let r = lab
            .anon(i, Method::GET, "/api/v1/extensions")
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let bad = lab
        .anon(0, Method::POST, "/api/v1/session")
        .json(&json!({"username": "admin", "password": "nope"}));
    assert_eq!(bad.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_raft_port_does_not_stop_the_node() {
    let lab = Lab::start(3).await.unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = format!("127.0.0.1:{}", lab.nodes[0].raft_port);
    // Random datagrams, a truncated QUIC-looking long header, and an oversized datagram.
    let mut junk = vec![0xc3u8, 0, 0, 0, 1, 8];
    junk.extend_from_slice(&[0xAB; 30]);
    for payload in [
        vec![0u8; 1],
        b"INVITE sip:1001@x SIP/2.0\r\n\r\n".to_vec(),
        junk,
        vec![0xFF; 1400],
    ] {
        for _ in 0..50 {
            sock.send_to(&payload, &target).await.unwrap();
        }
    }
    // A real QUIC client that trusts the cluster CA but has no client certificate is refused.
    let roots = {
        let mut store = rustls::RootCertStore::empty();
        let pem = std::fs::read(lab.ca_path()).unwrap();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            store.add(cert.unwrap()).unwrap();
        }
        store
    };
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"pbx-raft/1".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(quic)));
    let addr = target.parse().unwrap();
    let attempt = async {
        let conn = endpoint.connect(addr, "node-1.pbx.cluster")?.await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&[0, 0, 0, 4, 1, 2, 3, 4]).await?;
        send.finish()?;
        let got = recv.read_to_end(1 << 20).await?;
        anyhow::Ok(got)
    };
    let result = tokio::time::timeout(Duration::from_secs(5), attempt).await;
    assert!(
        !matches!(result, Ok(Ok(_))),
        "a client without a certificate got an answer: {result:?}"
    );

    assert_eq!(
        lab.create_extension(0, "7001").await.unwrap(),
        StatusCode::CREATED
    );
    for i in 0..3 {
        assert_eq!(lab.extension_numbers(i).await.unwrap(), vec!["7001"]);
    }
}
