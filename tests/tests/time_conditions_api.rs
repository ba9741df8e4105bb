//! The time-condition API on a real one-node cluster: a condition created, read back in the shape
//! it was written with (and whether it is open now, in the cluster's zone), replaced and deleted;
//! bad bodies refused naming the field; destinations that must exist and may not be conditions;
//! an inbound route sending calls to a condition, which then cannot be deleted, nor can the ring
//! group the condition sends calls to; every change in the audit log; the routes page listing it;
//! and no access without the routing grant.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use pbx_tests::Lab;
use pbx_tests::api::{PASSWORD, expect_error};
use pbx_tests::api::{call, create, send};

const OFFICE: &str = "/api/v1/time-conditions/office";

/// The condition the test writes: weekdays 09:00–17:30, closed over Christmas.
fn office() -> Value {
    json!({
        "name": "office",
        "hours": [{"days": ["mon", "tue", "wed", "thu", "fri"], "from": "09:00", "to": "17:30"}],
        "holidays": [{"name": "Christmas", "from": "2026-12-24", "to": "2026-12-26"}],
        "open": {"type": "extension", "target": "1001"},
        "closed": {"type": "ring_group", "target": "600"}
    })
}

/// `office()` with the value at `path` (object keys, or array indexes) replaced by `value`.
fn office_with(path: &[&str], value: Value) -> Value {
    let mut body = office();
    let mut at = &mut body;
    for p in path {
        at = match p.parse::<usize>() {
            Ok(i) => &mut at[i],
            Err(_) => &mut at[*p],
        };
    }
    *at = value;
    body
}

/// `body` named `night`.
fn night(mut body: Value) -> Value {
    body["name"] = json!("night");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_conditions_through_the_api() {
    let lab = Lab::start(1).await.unwrap();
    create(
        &lab,
        "/api/v1/extensions",
        json!({"number": "1001", "display_name": "Reception"}),
    )
    .await;
    create(
        &lab,
        "/api/v1/ring-groups",
        json!({"number": "600", "name": "Sales", "members": ["1001"]}),
    )
    .await;

    // ---- Created (201), read back in the shape it was written with.
    let made = send(&lab, Method::PUT, OFFICE, office(), StatusCode::CREATED).await;
    for key in ["name", "hours", "holidays", "open", "closed"] {
        assert_eq!(made[key], office()[key], "{key}: {made}");
    }
    let (status, one) = call(&lab, Method::GET, OFFICE, None).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    for key in ["name", "hours", "holidays", "open", "closed"] {
        assert_eq!(one[key], office()[key], "{key}: {one}");
    }
    assert!(one["open_now"].is_boolean(), "{one}");
    assert_eq!(one["zone"], "UTC", "no zone set: UTC");
    let created_at = one["created_at"].as_u64().unwrap();
    assert!(created_at > 0 && one["updated_at"].as_u64().unwrap() >= created_at);
    let (_, list) = call(&lab, Method::GET, "/api/v1/time-conditions", None).await;
    let names: Vec<&str> = list["time_conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["office"]);

    // ---- Replaced (200): the GET answer written back, with another range and a one-day holiday;
    // always open, so open now whatever the day.
    let mut always = one.clone();
    always["hours"] = json!([
        {"days": ["sat", "sun"], "from": "00:00", "to": "24:00"},
        {"days": ["fri", "mon", "thu", "tue", "wed"], "from": "00:00", "to": "24:00"}
    ]);
    always["holidays"] = json!([{"name": "Never", "from": "2000-01-01"}]);
    let replaced = send(&lab, Method::PUT, OFFICE, always, StatusCode::OK).await;
    assert_eq!(replaced["created_at"], created_at, "a replace keeps it");
    assert_eq!(
        replaced["hours"][1]["days"],
        json!(["mon", "tue", "wed", "thu", "fri"]),
        "days read back Monday first"
    );
    assert_eq!(replaced["hours"][0]["to"], "24:00");
    assert_eq!(
        replaced["holidays"],
        json!([{"name": "Never", "from": "2000-01-01", "to": "2000-01-01"}])
    );
    assert_eq!(replaced["open_now"], true, "{replaced}");
    // Without hours: never open.
    let never = send(
        &lab,
        Method::PUT,
        OFFICE,
        office_with(&["hours"], json!([])),
        StatusCode::OK,
    )
    .await;
    assert_eq!(never["open_now"], false, "{never}");
    // The cluster's zone is the one the hours are read in.
    send(
        &lab,
        Method::PUT,
        "/api/v1/system",
        json!({"time_zone": "Europe/Berlin"}),
        StatusCode::OK,
    )
    .await;
    let (_, berlin) = call(&lab, Method::GET, OFFICE, None).await;
    assert_eq!(berlin["zone"], "Europe/Berlin", "{berlin}");
    send(
        &lab,
        Method::PUT,
        "/api/v1/system",
        json!({"time_zone": "UTC"}),
        StatusCode::OK,
    )
    .await;
    send(&lab, Method::PUT, OFFICE, office(), StatusCode::OK).await;

    // ---- Bad bodies name their field.
    let bad = [
        (
            office_with(&["hours", "0", "days"], json!(["mon", "funday"])),
            "hours[0].days",
        ),
        (
            office_with(&["hours", "0", "days"], json!(["mon", "tue", "mon"])),
            "hours[0].days",
        ),
        (
            office_with(&["hours", "0", "from"], json!("25:00")),
            "hours[0].from",
        ),
        (
            office_with(&["hours", "0", "from"], json!("24:00")),
            "hours[0].from",
        ),
        (
            office_with(&["hours", "0", "to"], json!("09:00")),
            "hours[0].to",
        ),
        (
            office_with(&["hours", "0", "to"], json!("08:30")),
            "hours[0].to",
        ),
        (
            office_with(&["holidays", "0", "from"], json!("2026-02-30")),
            "holidays[0].from",
        ),
        (
            office_with(&["holidays", "0", "to"], json!("2026-12-01")),
            "holidays[0].to",
        ),
        (
            office_with(&["open"], json!({"type": "voicemail", "target": "1001"})),
            "voicemail",
        ),
        (
            office_with(
                &["open"],
                json!({"type": "time_condition", "target": "office"}),
            ),
            "open.type",
        ),
        (
            office_with(
                &["closed"],
                json!({"type": "time_condition", "target": "x"}),
            ),
            "closed.type",
        ),
        (
            office_with(&["closed", "target"], json!("6a")),
            "closed.target",
        ),
        (office_with(&["name"], json!("other")), "name"),
        (office_with(&["colour"], json!("blue")), "colour"),
    ];
    for (body, field) in bad {
        let got = call(&lab, Method::PUT, OFFICE, Some(body.clone())).await;
        expect_error(&got, StatusCode::BAD_REQUEST, &[field]);
    }
    let got = call(
        &lab,
        Method::PUT,
        "/api/v1/time-conditions/bad%20name",
        Some(office()),
    )
    .await;
    expect_error(&got, StatusCode::BAD_REQUEST, &["name"]);
    // Nothing was changed by them.
    let (_, still) = call(&lab, Method::GET, OFFICE, None).await;
    assert_eq!(still["hours"], office()["hours"]);

    // ---- Destinations must exist: the field is named.
    let got = call(
        &lab,
        Method::PUT,
        "/api/v1/time-conditions/night",
        Some(night(office_with(&["open", "target"], json!("1999")))),
    )
    .await;
    expect_error(
        &got,
        StatusCode::NOT_FOUND,
        &["open.target", "extension 1999 does not exist"],
    );
    let got = call(
        &lab,
        Method::PUT,
        "/api/v1/time-conditions/night",
        Some(night(office_with(&["closed", "target"], json!("699")))),
    )
    .await;
    expect_error(
        &got,
        StatusCode::NOT_FOUND,
        &["closed.target", "ring group 699 does not exist"],
    );
    let got = call(&lab, Method::GET, "/api/v1/time-conditions/night", None).await;
    expect_error(
        &got,
        StatusCode::NOT_FOUND,
        &["time condition night does not exist"],
    );

    // ---- An inbound route sends calls to the condition; one naming no condition is refused.
    let (status, trunk) = call(
        &lab,
        Method::POST,
        "/api/v1/trunks",
        Some(json!({"name": "a", "kind": "peer", "host": "198.51.100.10"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{trunk}");
    let route = |name: &str, did: &str, target: &str| {
        json!({
            "name": name,
            "did_kind": "exact",
            "did": did,
            "trunk": "a",
            "destination": {"type": "time_condition", "target": target}
        })
    };
    let made = create(
        &lab,
        "/api/v1/routes/inbound",
        route("main", "+15550100", "office"),
    )
    .await;
    assert_eq!(
        made["destination"],
        json!({"type": "time_condition", "target": "office"})
    );
    let got = call(
        &lab,
        Method::POST,
        "/api/v1/routes/inbound",
        Some(route("other", "+15550101", "nowhere")),
    )
    .await;
    expect_error(
        &got,
        StatusCode::BAD_REQUEST,
        &[
            "destination.target",
            "time condition nowhere does not exist",
        ],
    );
    let got = call(
        &lab,
        Method::POST,
        "/api/v1/routes/inbound",
        Some(route("other", "+15550101", "no/such")),
    )
    .await;
    expect_error(&got, StatusCode::BAD_REQUEST, &["destination.target"]);

    // ---- What is in use cannot be deleted: the referrer is named.
    let got = call(&lab, Method::DELETE, OFFICE, None).await;
    expect_error(
        &got,
        StatusCode::CONFLICT,
        &["inbound route main", "time condition office"],
    );
    let got = call(&lab, Method::DELETE, "/api/v1/ring-groups/600", None).await;
    expect_error(&got, StatusCode::CONFLICT, &["time condition office"]);

    // ---- The routes page lists it.
    let resp = lab
        .anon(0, Method::GET, "/routes")
        .basic_auth("admin", Some(&lab.admin_password))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    for needle in [
        "id=\"time-condition-row-office\"",
        "Mon–Fri 09:00–17:30",
        "time condition <span class=\"mono\">office</span>",
    ] {
        assert!(html.contains(needle), "/routes lacks {needle}");
    }

    // ---- Without the routing grant: 403.
    create(
        &lab,
        "/api/v1/accounts",
        json!({"username": "una", "role": "user", "extension": "1001",
               "password": PASSWORD, "must_change_password": false}),
    )
    .await;
    for (method, path, body) in [
        (Method::GET, "/api/v1/time-conditions", None),
        (Method::GET, OFFICE, None),
        (Method::PUT, OFFICE, Some(office())),
        (Method::DELETE, OFFICE, None),
    ] {
        let mut req = lab
            .anon(0, method.clone(), path)
            .basic_auth("una", Some(PASSWORD));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }

    // ---- Deleted once nothing uses it; then gone.
    let (status, body) = call(&lab, Method::DELETE, "/api/v1/routes/inbound/main", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = call(&lab, Method::DELETE, OFFICE, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let got = call(&lab, Method::GET, OFFICE, None).await;
    expect_error(
        &got,
        StatusCode::NOT_FOUND,
        &["time condition office does not exist"],
    );
    let got = call(&lab, Method::DELETE, OFFICE, None).await;
    expect_error(&got, StatusCode::NOT_FOUND, &["office"]);
    let (status, body) = call(&lab, Method::DELETE, "/api/v1/ring-groups/600", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // ---- Every change is audited, with what changed.
    let (_, audit) = call(&lab, Method::GET, "/api/v1/audit?limit=1000", None).await;
    let entries = audit["entries"].as_array().unwrap();
    let found = |needles: &[&str]| {
        entries.iter().any(|e| {
            let action = e["action"].as_str().unwrap_or_default();
            e["actor"] == "admin" && needles.iter().all(|n| action.contains(n))
        })
    };
    assert!(
        found(&["PUT /api/v1/time-conditions/office", "created"]),
        "{audit}"
    );
    assert!(
        found(&["PUT /api/v1/time-conditions/office", "changed", "hours"]),
        "{audit}"
    );
    assert!(
        found(&["DELETE /api/v1/time-conditions/office", "deleted"]),
        "{audit}"
    );
}
