//! The conference room API on a real one-node cluster: a room created, listed, read back, replaced
//! and deleted; a weak PIN refused and the PIN never shown; a room's number taken from no extension
//! and given to none; an inbound route sending calls to a room, which then cannot be deleted; an
//! empty room's participants; an unknown participant neither muted nor kicked; the changes audited
//! with the PIN's hash hidden.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use pbx_tests::Lab;
use pbx_tests::api::{call, create, expect_error, send};

const ROOM: &str = "/api/v1/conferences/800";

/// The numbers of the rooms listed.
async fn numbers(lab: &Lab) -> Vec<String> {
    let (status, list) = call(lab, Method::GET, "/api/v1/conferences", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["number"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conference_rooms_through_the_api() {
    let lab = Lab::start(1).await.unwrap();
    create(
        &lab,
        "/api/v1/extensions",
        json!({"number": "1001", "display_name": "Reception"}),
    )
    .await;

    // ---- Created (201) with a PIN, which is never shown.
    let made = send(
        &lab,
        Method::PUT,
        ROOM,
        json!({"name": "Weekly call", "pin": "402913", "max_participants": 20}),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(made["number"], "800", "{made}");
    assert_eq!(made["name"], "Weekly call");
    assert_eq!(made["has_pin"], true);
    assert_eq!(made["max_participants"], 20);
    assert_eq!(made["participants"], 0);
    assert_eq!(made["running_since"], Value::Null);
    assert!(made.get("pin").is_none() && made.get("pin_hash").is_none());
    let (status, one) = call(&lab, Method::GET, ROOM, None).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one, made);
    // Defaults: 10 participants, no PIN.
    let other = send(
        &lab,
        Method::PUT,
        "/api/v1/conferences/801",
        json!({"name": "Board"}),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(other["max_participants"], 10, "{other}");
    assert_eq!(other["has_pin"], false);
    assert_eq!(numbers(&lab).await, ["800", "801"]);

    // ---- Replaced (200): an omitted PIN is kept, `null` removes it; a read answer written back.
    let changed = send(
        &lab,
        Method::PUT,
        ROOM,
        json!({"name": "Monday call"}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(changed["name"], "Monday call", "{changed}");
    assert_eq!(changed["has_pin"], true);
    assert_eq!(changed["max_participants"], 10);
    assert_eq!(changed["created_at"], made["created_at"]);
    let (_, read) = call(&lab, Method::GET, ROOM, None).await;
    send(&lab, Method::PUT, ROOM, read, StatusCode::OK).await;
    let cleared = send(
        &lab,
        Method::PUT,
        "/api/v1/conferences/801",
        json!({"name": "Board", "pin": null}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(cleared["has_pin"], false);

    // ---- Bad bodies are refused naming the field, and change nothing.
    for (body, needle) in [
        (
            json!({"name": "x", "pin": "123456"}),
            "pin: must not be a run",
        ),
        (
            json!({"name": "x", "pin": "111111"}),
            "pin: must not be one digit",
        ),
        (
            json!({"name": "x", "pin": "12"}),
            "pin: must be 6 to 12 digits",
        ),
        (
            json!({"name": "x", "max_participants": 51}),
            "max_participants",
        ),
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "number": "900"}), "number"),
    ] {
        let got = call(&lab, Method::PUT, "/api/v1/conferences/802", Some(body)).await;
        expect_error(&got, StatusCode::BAD_REQUEST, &[needle]);
    }
    let got = call(
        &lab,
        Method::PUT,
        "/api/v1/conferences/402913",
        Some(json!({"name": "x", "pin": "402913"})),
    )
    .await;
    expect_error(
        &got,
        StatusCode::BAD_REQUEST,
        &["pin: must not be the room's number"],
    );
    let got = call(
        &lab,
        Method::PUT,
        "/api/v1/conferences/8x",
        Some(json!({"name": "x"})),
    )
    .await;
    expect_error(&got, StatusCode::BAD_REQUEST, &["number"]);
    assert_eq!(numbers(&lab).await, ["800", "801"]);

    // ---- One number, one thing: not an extension's, and no extension takes a room's.
    let got = call(
        &lab,
        Method::PUT,
        "/api/v1/conferences/1001",
        Some(json!({"name": "Clash"})),
    )
    .await;
    expect_error(
        &got,
        StatusCode::CONFLICT,
        &["1001 is an extension's number"],
    );
    let got = call(
        &lab,
        Method::POST,
        "/api/v1/extensions",
        Some(json!({"number": "800", "display_name": "Clash"})),
    )
    .await;
    expect_error(
        &got,
        StatusCode::CONFLICT,
        &["800 is a conference room's number"],
    );

    // ---- An inbound route sends calls to the room, which then cannot be deleted.
    let route = |target: &str| {
        json!({
            "name": "main",
            "did_kind": "exact",
            "did": "+15550100",
            "destination": {"type": "conference", "target": target}
        })
    };
    let got = call(
        &lab,
        Method::POST,
        "/api/v1/routes/inbound",
        Some(route("899")),
    )
    .await;
    expect_error(&got, StatusCode::BAD_REQUEST, &["destination.target"]);
    let made = create(&lab, "/api/v1/routes/inbound", route("800")).await;
    assert_eq!(
        made["destination"],
        json!({"type": "conference", "target": "800"})
    );
    let got = call(&lab, Method::DELETE, ROOM, None).await;
    expect_error(
        &got,
        StatusCode::CONFLICT,
        &["inbound route main still sends calls to conference room 800"],
    );

    // ---- Participants: none yet; an unknown one is neither muted nor kicked.
    let (status, list) = call(&lab, Method::GET, &format!("{ROOM}/participants"), None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list, json!({"participants": []}));
    let (status, _) = call(
        &lab,
        Method::GET,
        "/api/v1/conferences/899/participants",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let unknown = format!("{ROOM}/participants/0123456789abcdef");
    let got = call(&lab, Method::PUT, &unknown, Some(json!({"muted": true}))).await;
    expect_error(&got, StatusCode::NOT_FOUND, &["0123456789abcdef"]);
    let got = call(&lab, Method::DELETE, &unknown, None).await;
    expect_error(&got, StatusCode::NOT_FOUND, &["0123456789abcdef"]);
    let got = call(
        &lab,
        Method::DELETE,
        &format!("{ROOM}/participants/nope"),
        None,
    )
    .await;
    assert_eq!(got.0, StatusCode::NOT_FOUND, "{}", got.1);

    // ---- Deleted once nothing sends calls to it.
    let (status, body) = call(&lab, Method::DELETE, "/api/v1/routes/inbound/main", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = call(&lab, Method::DELETE, ROOM, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = call(&lab, Method::GET, ROOM, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let got = call(&lab, Method::DELETE, ROOM, None).await;
    expect_error(
        &got,
        StatusCode::NOT_FOUND,
        &["conference room 800 does not exist"],
    );
    assert_eq!(numbers(&lab).await, ["801"]);
    // Its number is free again.
    create(
        &lab,
        "/api/v1/extensions",
        json!({"number": "800", "display_name": "Now an extension"}),
    )
    .await;

    // ---- Every change is audited; the PIN's hash never shows.
    let (_, audit) = call(&lab, Method::GET, "/api/v1/audit?limit=1000", None).await;
    let entries = audit["entries"].as_array().unwrap();
    let found = |needles: &[&str]| {
        entries.iter().any(|e| {
            let action = e["action"].as_str().unwrap_or_default();
            e["actor"] == "admin" && needles.iter().all(|n| action.contains(n))
        })
    };
    assert!(
        found(&["PUT /api/v1/conferences/800", "created"]),
        "{audit}"
    );
    assert!(
        found(&["PUT /api/v1/conferences/800", "changed", "name"]),
        "{audit}"
    );
    assert!(
        found(&["DELETE /api/v1/conferences/800", "deleted"]),
        "{audit}"
    );
    assert!(!audit.to_string().contains("$argon2"), "{audit}");
}
