//! Every list endpoint pages the same way: `after` is the previous page's `next`, `limit` has a
//! default and a maximum, `next` is absent on the last page, and bad values are a JSON 400 naming the
//! parameter. Paging with small pages returns every item exactly once.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use pbx_tests::phone::Phone;
use pbx_tests::{Lab, LabClient, LabOptions};

const SECRET: &str = "Tr7!kq-Vw9zP";

/// One page of `path` with the query `extra`, as JSON.
async fn page(client: &LabClient, path: &str, extra: &[(&str, &str)]) -> Value {
    client
        .req(0, Method::GET, path)
        .query(extra)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Every item of `path` (in field `field`, named by `id`) in one page of 1000: the reference.
async fn all_at_once(
    client: &LabClient,
    path: &str,
    field: &str,
    id: fn(&Value) -> String,
) -> Vec<String> {
    let one = page(client, path, &[("limit", "1000")]).await;
    assert!(one.get("next").is_none(), "a last page has no next: {one}");
    one[field].as_array().unwrap().iter().map(id).collect()
}

/// Follows `next` through `path` two items at a time; every item's id, in order.
async fn two_at_a_time(
    client: &LabClient,
    path: &str,
    field: &str,
    id: fn(&Value) -> String,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..1000 {
        let mut query = vec![("limit", "2")];
        if let Some(a) = &after {
            query.push(("after", a.as_str()));
        }
        let p = page(client, path, &query).await;
        let items = p[field].as_array().unwrap();
        assert!(items.len() <= 2, "{path}: {p}");
        out.extend(items.iter().map(id));
        match p.get("next") {
            None => return out,
            Some(next) => after = Some(next.as_str().unwrap().to_owned()),
        }
    }
    panic!("{path}: paging does not end");
}

/// Pages of two hold the same items as one big page, in the same order, each once.
async fn pages_hold_everything_once(
    client: &LabClient,
    path: &str,
    field: &str,
    id: fn(&Value) -> String,
    at_least: usize,
) {
    let whole = all_at_once(client, path, field, id).await;
    assert!(whole.len() >= at_least, "{path}: {whole:?}");
    let paged = two_at_a_time(client, path, field, id).await;
    // Paged after the big page: only something newer may have come since, at the end.
    assert_eq!(paged.get(..whole.len()), Some(&whole[..]), "{path}");
    let mut unique = paged.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), paged.len(), "{path}: an item came twice");
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap().to_owned()
}

fn at_seq(v: &Value) -> String {
    format!("{}-{}", v["at"], text(v, "seq"))
}

/// Waits until `path` lists at least `n` items in `field` (audit entries and events are written
/// after the answer).
async fn wait_for(client: &LabClient, path: &str, field: &str, n: usize) {
    for _ in 0..100 {
        let p = page(client, path, &[("limit", "1000")]).await;
        if p[field].as_array().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never listed {n} {field}");
}

/// Unanswerable calls, each leaving a CDR: to a number with no registration, and to no extension.
async fn make_cdrs(lab: &Lab) -> usize {
    let sip = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port));
    let mut phone = Phone::new(sip, "1001", SECRET).await.unwrap();
    assert_eq!(phone.register(300).await.unwrap(), 200);
    let callees = ["1003", "1003", "1999", "1003", "1999"];
    for callee in callees {
        let out = phone.dial(callee, None).await.unwrap();
        let status = phone
            .outcome(&out, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap_err();
        assert!(status == 480 || status == 404, "{callee}: {status}");
    }
    callees.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_pages_return_every_item_of_every_list_once() {
    let numbers = ["1001", "1003", "1005", "1007", "1009"];
    let (lab, client) = Lab::with_extensions(1, LabOptions::default(), &numbers, SECRET)
        .await
        .unwrap();
    // Each rule is an audit entry and a firewall_changed event.
    for net in ["10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16"] {
        let resp = client
            .req(0, Method::POST, "/api/v1/firewall/rules")
            .json(&json!({"action": "allow", "network": net, "services": ["api"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let calls = make_cdrs(&lab).await;
    wait_for(&client, "/api/v1/cdrs", "cdrs", calls).await;
    wait_for(&client, "/api/v1/audit", "entries", numbers.len() + 3).await;
    let rules_changed = "/api/v1/events?kind=firewall_changed";
    wait_for(&client, rules_changed, "events", 3).await;

    let number = |v: &Value| text(v, "number");
    pages_hold_everything_once(&client, "/api/v1/extensions", "items", number, 5).await;
    let cdr_id = |v: &Value| text(v, "id");
    pages_hold_everything_once(&client, "/api/v1/cdrs", "cdrs", cdr_id, calls).await;
    let to_1003 = "/api/v1/cdrs?extension=1003";
    pages_hold_everything_once(&client, to_1003, "cdrs", cdr_id, 3).await;
    pages_hold_everything_once(&client, "/api/v1/audit", "entries", at_seq, 8).await;
    pages_hold_everything_once(&client, "/api/v1/events", "events", at_seq, 3).await;
    pages_hold_everything_once(&client, rules_changed, "events", at_seq, 3).await;

    // The CSV export pages by the same cursor, in a header.
    let mut rows = 0;
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![("format", "csv"), ("limit", "2")];
        if let Some(a) = &after {
            query.push(("after", a.as_str()));
        }
        let resp = client
            .req(0, Method::GET, "/api/v1/cdrs")
            .query(&query)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let next = resp
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().unwrap().to_owned());
        rows += resp.text().await.unwrap().lines().count() - 1;
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(rows, calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cursors_and_limits_get_the_same_clear_error_everywhere() {
    let lab = Lab::start(1).await.unwrap();
    for path in [
        "/api/v1/extensions",
        "/api/v1/cdrs",
        "/api/v1/events",
        "/api/v1/audit",
    ] {
        let first = lab.client().get_json(0, path).await.unwrap();
        assert!(first.get("next").is_none(), "{path}: {first}");
        for (query, needle) in [
            ("limit=0", "limit must be 1 to 1000"),
            ("limit=1001", "limit must be 1 to 1000"),
            ("limit=ten", "limit must be 1 to 1000"),
            ("limit=-1", "limit must be 1 to 1000"),
            ("after=not-a-cursor", "after must be the next cursor"),
            ("after=", "after must be the next cursor"),
            ("limit=1&limit=2", "duplicate field `limit`"),
            ("cursor=x", "unknown field `cursor`"),
        ] {
            let resp = lab
                .req(0, Method::GET, &format!("{path}?{query}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}?{query}");
            let body: Value = resp.json().await.expect("error bodies are JSON");
            assert_eq!(body["error"], "bad_request", "{path}?{query}: {body}");
            let msg = body["message"].as_str().unwrap();
            assert!(
                msg.contains(needle),
                "{path}?{query}: {msg:?} lacks {needle:?}"
            );
        }
        let ok = lab
            .req(0, Method::GET, &format!("{path}?limit=1000"))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK, "{path}");
    }
}
