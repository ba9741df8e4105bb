//! A time condition choosing where a provider's call goes, with sipp as the provider and as both
//! phones: the main number's inbound route sends calls to condition `office`; while the office is
//! open (every day, all day) the call rings 1002; once today is made a holiday it rings 1001.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use pbx_tests::api::{create, lab_without_pings, peer_trunk, send, wait_item, wait_registered};
use pbx_tests::free_sip_port;
use pbx_tests::sipp::{self, Sipp, logs, subdir};

const SECRET: &str = "Tr7!kq-Vw9zP";
const PROVIDER_IP: &str = "127.0.0.2";

/// `office`, open every day all day, with `holidays`; open → 1002, closed → 1001.
fn office(holidays: Value) -> Value {
    json!({
        "hours": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "from": "00:00", "to": "24:00"}],
        "holidays": holidays,
        "open": {"type": "extension", "target": "1002"},
        "closed": {"type": "extension", "target": "1001"}
    })
}

/// `YYYY-MM-DD` of the UTC day `offset` days from today.
fn utc_day(offset: i64) -> String {
    let day = jiff::SignedDuration::from_hours(24 * offset);
    jiff::Timestamp::now()
        .checked_add(day)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_condition_sends_the_main_number_to_its_open_or_closed_destination() {
    let (lab, client) = lab_without_pings(1, &["1001", "1002"], SECRET).await;
    let target = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port)).to_string();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    create(
        &client,
        "/api/v1/trunks",
        peer_trunk("carrier", PROVIDER_IP, free_sip_port()),
    )
    .await;
    let cond = send(
        &client,
        Method::PUT,
        "/api/v1/time-conditions/office",
        office(json!([])),
        reqwest::StatusCode::CREATED,
    )
    .await;
    assert_eq!(cond["open_now"], true, "{cond}");
    let main = json!({
        "name": "main",
        "did_kind": "exact",
        "did": "15550100",
        "destination": {"type": "time_condition", "target": "office"}
    });
    create(&client, "/api/v1/routes/inbound", main).await;
    // The PBX re-reads the addresses trunk calls come from within a second of a routing change.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let phone = |n: &str| {
        let csv = sipp::credentials(dir, &format!("{n}.csv"), n, SECRET);
        Sipp::answering_phone(&target, &csv, 60_000).spawn(&subdir(dir, n))
    };
    let _p1002 = phone("1002");
    wait_registered(&client, "1002").await;
    let _p1001 = phone("1001");
    wait_registered(&client, "1001").await;

    let call = |name: &str| {
        let d = subdir(dir, name);
        let sipp = Sipp::provider_call(&target, PROVIDER_IP, "15550100", "trunk-provider-uac.xml");
        async move {
            let status = sipp.run(&d).await;
            assert!(status.success(), "the provider's call failed\n{}", logs(&d));
        }
    };

    // Open: the call rings 1002.
    call("open").await;
    let open = wait_item(&client, "/api/v1/cdrs", "cdrs", |c| c["callee"] == "1002").await;
    assert_eq!(open["disposition"], "answered", "{open}");

    // Today (and the days either side, whatever the clock's zone) a holiday: closed, 1001.
    let holiday = json!([{"name": "Closed today", "from": utc_day(-1), "to": utc_day(1)}]);
    let cond = send(
        &client,
        Method::PUT,
        "/api/v1/time-conditions/office",
        office(holiday),
        reqwest::StatusCode::OK,
    )
    .await;
    assert_eq!(cond["open_now"], false, "{cond}");
    call("closed").await;
    let closed = wait_item(&client, "/api/v1/cdrs", "cdrs", |c| c["callee"] == "1001").await;
    assert_eq!(closed["disposition"], "answered", "{closed}");
    assert_eq!(closed["route"], "main", "{closed}");
    assert!(
        lab.log_tail(0).contains("time condition"),
        "the choice is logged"
    );
}
