//! The calls and CDR endpoints: empty answers on a fresh cluster, credentials required, the CSV export's
//! headers, and bad query input refused with a 400 and a clear JSON message. Rows come from real calls
//! (the API has no way to write a CDR): the call tests cover their contents, and the routing test here
//! makes an internal, an outbound, a refused outbound and an inbound call, a scripted phone on
//! 127.0.0.2 playing the provider, to check the routing columns and their filters.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use pbx_tests::api::{create, inbound_to_extension, lab_without_pings, peer_trunk, send};
use pbx_tests::phone::{Answer, Phone};
use pbx_tests::{Lab, LabClient};

const SECRET: &str = "Tr7!kq-Vw9zP";
/// The provider's address; the phones use 127.0.0.1, so the PBX tells them apart by source.
const PROVIDER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

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
    let cdrs = client
        .get_json(
            0,
            "/api/v1/cdrs?direction=outbound&trunk=carrier&disposition=denied",
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
         cause,sip_status,node_id,direction,trunk,did,route,dialled,sent\r\n"
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
    let long_trunk = format!("trunk={}", "t".repeat(33));
    let cases: [(&str, &str); 22] = [
        ("from=yesterday", "from must be an rfc 3339 time"),
        ("from=2026-02-30T00:00:00Z", "from must be"),
        ("to=2026-11-28", "to must be"),
        (
            "from=2026-11-28T11:00:00Z&to=2026-11-28T10:00:00Z",
            "from must not be later than to",
        ),
        ("disposition=hung_up", "disposition must be one of"),
        (
            "direction=sideways",
            "direction must be one of internal, inbound, outbound",
        ),
        ("direction=Inbound", "direction must be one of"),
        ("direction=", "direction must be one of"),
        ("trunk=", "trunk: 1 to 32 letters"),
        ("trunk=my%20trunk", "trunk: 1 to 32 letters"),
        (&long_trunk, "trunk"),
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

/// The CDRs of `GET /api/v1/cdrs?{query}`, and the answer's `next`.
async fn cdrs(client: &LabClient, query: &str) -> (Vec<Value>, Option<String>) {
    let page = client
        .get_json(0, &format!("/api/v1/cdrs?{query}"))
        .await
        .unwrap();
    let rows = page["cdrs"].as_array().unwrap().clone();
    (rows, page["next"].as_str().map(str::to_owned))
}

/// The ids of `GET /api/v1/cdrs?{query}` (one page).
async fn ids(client: &LabClient, query: &str) -> Vec<String> {
    let (rows, _) = cdrs(client, query).await;
    rows.iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until node 0 holds `n` CDRs (they are committed as each call ends).
async fn wait_cdrs(client: &LabClient, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let (rows, _) = cdrs(client, "").await;
        if rows.len() >= n {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} CDRs: {:?}", cdrs(client, "").await.0);
}

async fn phone(lab: &Lab, user: &str) -> Phone {
    let sip = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port));
    let mut p = Phone::new(sip, user, SECRET).await.unwrap();
    assert_eq!(p.register(300).await.unwrap(), 200, "{user} registers");
    p
}

/// `number` dialled by `from` and refused (by the PBX, or busy by `by`): the final status.
async fn refused_call(from: &mut Phone, number: &str, by: Option<&mut Phone>) -> u16 {
    let wait = Duration::from_secs(5);
    // A provider's call is not challenged: its first final answer is the callee's.
    let place = async {
        let out = from.dial(number, None).await?;
        from.outcome(&out, wait).await
    };
    let outcome = match by {
        Some(callee) => {
            let (answered, outcome) = tokio::join!(callee.answer(Answer::Busy, wait), place);
            answered.unwrap_or_else(|e| panic!("{number} did not ring: {e}; {outcome:?}"));
            outcome
        }
        None => place.await,
    };
    outcome.unwrap().expect_err("the call is refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdrs_show_direction_trunk_and_numbers_and_filter_on_them() {
    let (lab, client) = lab_without_pings(1, &["1001", "1002"], SECRET).await;
    let pbx = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port));
    // The provider: a phone on its own address, calling from a number.
    let mut carrier = Phone::bound(IpAddr::V4(PROVIDER_IP), pbx, "5551234", "unused")
        .await
        .unwrap();

    let trunk = peer_trunk("carrier", &PROVIDER_IP.to_string(), carrier.sip_addr.port());
    create(&client, "/api/v1/trunks", trunk).await;
    for (name, pattern) in [("national", "9NXXXXXX"), ("premium", "8NXXXXXX")] {
        create(
            &client,
            "/api/v1/routes/outbound",
            json!({
                "name": name,
                "patterns": [pattern],
                "strip": 1,
                "class": "local",
                "trunks": ["carrier"]
            }),
        )
        .await;
    }
    // 1001 may use the national route only: a premium number is refused (a `denied` CDR).
    create(
        &client,
        "/api/v1/permission-groups",
        json!({"name": "staff", "routes": ["national"]}),
    )
    .await;
    send(
        &client,
        Method::PATCH,
        "/api/v1/extensions/1001",
        json!({"permission_group": "staff"}),
        StatusCode::OK,
    )
    .await;
    let route = inbound_to_extension("main", "15550100", "1002");
    create(&client, "/api/v1/routes/inbound", route).await;
    client.sync(0).await.unwrap();
    let configured = tokio::time::Instant::now();

    let mut alice = phone(&lab, "1001").await;
    let mut bob = phone(&lab, "1002").await;
    // 1. Internal: 1001 calls 1002, who is busy.
    assert_eq!(refused_call(&mut alice, "1002", Some(&mut bob)).await, 486);
    wait_cdrs(&client, 1).await;
    // 2. Outbound: the provider is asked for the number without the 9, and is busy.
    assert_eq!(
        refused_call(&mut alice, "95550100", Some(&mut carrier)).await,
        486
    );
    wait_cdrs(&client, 2).await;
    // 3. Outbound, not permitted: refused by the PBX.
    assert_eq!(refused_call(&mut alice, "85550100", None).await, 403);
    wait_cdrs(&client, 3).await;
    // 4. Inbound: the provider calls the DID, which rings 1002, who is busy.
    // Trunks are known by source address once the PBX has re-read their addresses, which it does
    // within a second of a change.
    tokio::time::sleep_until(configured + Duration::from_secs(2)).await;
    assert_eq!(
        refused_call(&mut carrier, "15550100", Some(&mut bob)).await,
        486
    );
    let all = wait_cdrs(&client, 4).await;
    assert_eq!(all.len(), 4, "{all:?}");
    let (internal, out, denied, inbound) = (&all[0], &all[1], &all[2], &all[3]);

    let routing = |c: &Value| {
        ["direction", "trunk", "did", "route", "dialled", "sent"].map(|f| {
            c[f].as_str()
                .unwrap_or_else(|| panic!("{f} is a string: {c}"))
                .to_owned()
        })
    };
    assert_eq!(internal["callee"], "1002", "{internal}");
    assert_eq!(routing(internal), ["internal", "", "", "", "", ""]);
    assert_eq!(out["disposition"], "busy", "{out}");
    assert_eq!(
        routing(out),
        ["outbound", "carrier", "", "national", "95550100", "5550100"]
    );
    assert_eq!(denied["disposition"], "denied", "{denied}");
    assert_eq!(denied["sip_status"], 403, "{denied}");
    assert_eq!(
        routing(denied),
        ["outbound", "", "", "premium", "85550100", ""]
    );
    assert_eq!(inbound["callee"], "1002", "{inbound}");
    assert_eq!(inbound["caller"], "5551234", "{inbound}");
    assert_eq!(
        routing(inbound),
        ["inbound", "carrier", "15550100", "main", "15550100", ""]
    );
    let id = |c: &Value| c["id"].as_str().unwrap().to_owned();
    let ids_of = (id(internal), id(out), id(denied), id(inbound));
    let (internal, out, denied, inbound) = (
        ids_of.0.as_str(),
        ids_of.1.as_str(),
        ids_of.2.as_str(),
        ids_of.3.as_str(),
    );

    // The filters, alone and with each other.
    assert_eq!(ids(&client, "direction=internal").await, [internal]);
    assert_eq!(ids(&client, "direction=outbound").await, [out, denied]);
    assert_eq!(ids(&client, "direction=inbound").await, [inbound]);
    assert_eq!(ids(&client, "trunk=carrier").await, [out, inbound]);
    assert!(ids(&client, "trunk=other").await.is_empty());
    assert_eq!(ids(&client, "disposition=denied").await, [denied]);
    assert_eq!(
        ids(&client, "direction=outbound&disposition=busy").await,
        [out]
    );
    assert_eq!(
        ids(&client, "trunk=carrier&extension=1002").await,
        [inbound]
    );
    assert_eq!(
        ids(&client, "direction=internal&extension=1001").await,
        [internal]
    );
    assert!(
        ids(&client, "direction=inbound&extension=1001")
            .await
            .is_empty()
    );

    // Paging with a filter: a page of one, then the next, which is the last.
    let (first, next) = cdrs(&client, "direction=outbound&limit=1").await;
    assert_eq!(id(&first[0]), out);
    let next = next.expect("a full page has a cursor");
    let (second, last) = cdrs(&client, &format!("direction=outbound&limit=1&after={next}")).await;
    assert_eq!(second.len(), 1);
    assert_eq!(id(&second[0]), denied);
    assert_eq!(last, None, "no more outbound calls");

    // The CSV export carries the same columns, and the same filters.
    let resp = client
        .req(0, Method::GET, "/api/v1/cdrs?format=csv&trunk=carrier")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines.len(), 4, "header, two rows, end: {text:?}");
    assert!(
        lines[0].ends_with(",node_id,direction,trunk,did,route,dialled,sent"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!("{out},1001,95550100,")),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].ends_with(",outbound,carrier,,national,95550100,5550100"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].ends_with(",inbound,carrier,15550100,main,15550100,"),
        "{}",
        lines[2]
    );
}
