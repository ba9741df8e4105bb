//! The calls and CDR endpoints: empty answers on a fresh cluster, credentials required, the CSV export's
//! headers, and bad query input refused with a 400 and a clear JSON message. (Rows come from real calls,
//! which the call tests cover.)
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use pbx_tests::Lab;

async fn expect_error(resp: reqwest::Response, status: StatusCode, needle: &str) {
    assert_eq!(resp.status(), status);
    let body: Value = resp.json().await.expect("error bodies are JSON");
    assert!(body["error"].is_string(), "{body}");
    let msg = body["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.to_lowercase().contains(needle),
        "message {msg:?} should mention {needle:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_cluster_has_no_calls_and_no_cdrs() {
    let lab = Lab::start(1).await.unwrap();
    let client = lab.client();

    let calls = client.get_json(0, "/api/v1/calls").await.unwrap();
    assert_eq!(calls, json!({"calls": [], "count": 0}));
    let cdrs = client.get_json(0, "/api/v1/cdrs").await.unwrap();
    assert_eq!(cdrs, json!({"cdrs": []}));
    let cdrs = client
        .get_json(
            0,
            "/api/v1/cdrs?from=2026-11-28T10:00:00Z&to=1795863600000&extension=1001\
             &disposition=answered&limit=1000&format=json",
        )
        .await
        .unwrap();
    assert_eq!(cdrs, json!({"cdrs": []}));

    expect_error(
        lab.req(0, Method::GET, "/api/v1/calls/no-such-call")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "does not exist",
    )
    .await;

    let csv = lab
        .req(0, Method::GET, "/api/v1/cdrs?format=csv")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    let headers = csv.headers().clone();
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"cdrs.csv\""
    );
    assert!(headers.get("x-next-cursor").is_none());
    assert_eq!(
        csv.text().await.unwrap(),
        "id,caller,callee,started_at,answered_at,ended_at,duration_secs,disposition,hangup_side,\
         cause,sip_status,node_id\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_cdrs_need_an_admin() {
    let lab = Lab::start(1).await.unwrap();
    for path in [
        "/api/v1/calls",
        "/api/v1/calls/c1",
        "/api/v1/cdrs",
        "/api/v1/cdrs?format=csv",
        // Credentials are checked before the query: no hints about parameters to strangers.
        "/api/v1/cdrs?bogus=1",
    ] {
        expect_error(
            lab.anon(0, Method::GET, path).send().await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "authentication",
        )
        .await;
        let wrong = lab
            .anon(0, Method::GET, path)
            .basic_auth("admin", Some("Wrong-Pass-123"));
        expect_error(
            wrong.send().await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "authentication",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cdr_queries_get_clear_errors() {
    let lab = Lab::start(1).await.unwrap();
    let long_cursor = format!("after={}", "1".repeat(3000));
    let cases: [(&str, &str); 16] = [
        ("from=yesterday", "from must be an rfc 3339 time"),
        ("from=2026-02-30T00:00:00Z", "from must be"),
        ("to=2026-11-28", "to must be"),
        (
            "from=2026-11-28T11:00:00Z&to=2026-11-28T10:00:00Z",
            "from must not be later than to",
        ),
        ("disposition=hung_up", "disposition must be one of"),
        ("bogus=1", "unknown field `bogus`"),
        ("limit=5000", "limit must be 1 to 1000"),
        ("limit=0", "limit must be 1 to 1000"),
        ("limit=ten", "limit"),
        ("format=csv&limit=100001", "limit must be 1 to 100000"),
        ("format=xml", "format must be json or csv"),
        ("extension=10a1", "extension must be 1 to 32 digits"),
        ("extension=", "extension"),
        ("after=not-a-cursor", "after must be"),
        ("limit=10&limit=20", "duplicate field"),
        (&long_cursor, "query string longer than 2048 bytes"),
    ];
    for (query, needle) in cases {
        let resp = lab
            .req(0, Method::GET, &format!("/api/v1/cdrs?{query}"))
            .send()
            .await
            .unwrap();
        expect_error(resp, StatusCode::BAD_REQUEST, needle).await;
    }
    // The node still answers.
    let cdrs = lab.client().get_json(0, "/api/v1/cdrs").await.unwrap();
    assert_eq!(cdrs["cdrs"], json!([]));
}
