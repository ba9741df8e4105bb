//! The IVR API on a real one-node cluster: a menu created with a prompt as its greeting, read back
//! in the shape it was written with, replaced and deleted; the defaults of an omitted field; bad
//! bodies refused naming the field, with nothing stored; a greeting that is no prompt, and
//! destinations that do not exist, refused; an IVR's number taken from no extension or ring group
//! and given to neither; inbound routes and time conditions sending calls to an IVR, which then
//! cannot be deleted, nor can the ring group or condition it sends calls to; every change in the
//! audit log; the routes page listing it; and no access without the routing grant.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use pbx_tests::Lab;
use pbx_tests::api::{PASSWORD, expect_error};
use pbx_tests::api::{call, create, send};

const MAIN: &str = "/api/v1/ivrs/500";

/// A WAV file: 16-bit PCM mono at 8 kHz, `secs` seconds of silence.
fn wav(secs: u32) -> Vec<u8> {
    let data_len = 8000 * 2 * secs;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16_000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.resize(44 + data_len as usize, 0);
    out
}

/// Uploads a WAV file as `kind` named `name`; its id.
async fn upload(lab: &Lab, kind: &str, name: &str) -> String {
    let resp = lab
        .req(
            0,
            Method::POST,
            &format!("/api/v1/audio?kind={kind}&name={name}"),
        )
        .header("content-type", "audio/wav")
        .body(wav(1))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// The main menu: the prompt as greeting, 1 for reception, 2 for sales, 3 for the office hours,
/// `*` back to the menu, and the operator when no key is pressed.
fn menu(greeting: &str) -> Value {
    json!({
        "number": "500",
        "name": "Main menu",
        "greeting": greeting,
        "options": [
            {"digit": "1", "destination": {"type": "extension", "target": "1001"}},
            {"digit": "2", "destination": {"type": "ring_group", "target": "600"}},
            {"digit": "3", "destination": {"type": "time_condition", "target": "office"}},
            {"digit": "*", "destination": {"type": "ivr", "target": "500"}}
        ],
        "direct_dial": true,
        "timeout_secs": 7,
        "attempts": 2,
        "fallback": {"type": "extension", "target": "1002"}
    })
}

/// `body` with the value at `path` (object keys, or array indexes) replaced by `value`.
fn with(mut body: Value, path: &[&str], value: Value) -> Value {
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

const FIELDS: [&str; 8] = [
    "number",
    "name",
    "greeting",
    "options",
    "direct_dial",
    "timeout_secs",
    "attempts",
    "fallback",
];

/// The numbers of the IVRs listed.
async fn numbers(lab: &Lab) -> Vec<String> {
    let (status, list) = call(lab, Method::GET, "/api/v1/ivrs", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["ivrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["number"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivrs_through_the_api() {
    let lab = Lab::start(1).await.unwrap();
    for (number, name) in [("1001", "Reception"), ("1002", "Operator")] {
        create(
            &lab,
            "/api/v1/extensions",
            json!({"number": number, "display_name": name}),
        )
        .await;
    }
    create(
        &lab,
        "/api/v1/ring-groups",
        json!({"number": "600", "name": "Sales", "members": ["1001"]}),
    )
    .await;
    send(
        &lab,
        Method::PUT,
        "/api/v1/time-conditions/office",
        json!({
            "hours": [{"days": ["mon"], "from": "09:00", "to": "17:00"}],
            "open": {"type": "extension", "target": "1001"},
            "closed": {"type": "extension", "target": "1002"}
        }),
        StatusCode::CREATED,
    )
    .await;
    let prompt = upload(&lab, "prompt", "Welcome").await;
    let music = upload(&lab, "music_on_hold", "Tune").await;

    // ---- Created (201), read back in the shape it was written with.
    let made = send(&lab, Method::PUT, MAIN, menu(&prompt), StatusCode::CREATED).await;
    for key in FIELDS {
        assert_eq!(made[key], menu(&prompt)[key], "{key}: {made}");
    }
    let (status, one) = call(&lab, Method::GET, MAIN, None).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    for key in FIELDS {
        assert_eq!(one[key], menu(&prompt)[key], "{key}: {one}");
    }
    let created_at = one["created_at"].as_u64().unwrap();
    assert!(created_at > 0 && one["updated_at"].as_u64().unwrap() >= created_at);
    // Omitted fields take their defaults.
    let night = send(
        &lab,
        Method::PUT,
        "/api/v1/ivrs/501",
        json!({"name": "Night"}),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(night["greeting"], Value::Null, "{night}");
    assert_eq!(night["options"], json!([]));
    assert_eq!(night["direct_dial"], false);
    assert_eq!(night["timeout_secs"], 5);
    assert_eq!(night["attempts"], 3);
    assert_eq!(night["fallback"], Value::Null, "no fallback: hang up");
    assert_eq!(numbers(&lab).await, ["500", "501"]);

    // ---- Replaced (200): the GET answer written back, with a key less and more attempts.
    let mut fewer = one.clone();
    fewer["options"].as_array_mut().unwrap().remove(2);
    fewer["attempts"] = json!(5);
    let replaced = send(&lab, Method::PUT, MAIN, fewer.clone(), StatusCode::OK).await;
    assert_eq!(replaced["created_at"], created_at, "a replace keeps it");
    assert_eq!(replaced["options"], fewer["options"]);
    assert_eq!(replaced["attempts"], 5);
    send(&lab, Method::PUT, MAIN, menu(&prompt), StatusCode::OK).await;

    // ---- Bad bodies name their field, and change nothing.
    let options = |n: usize| -> Value {
        (0..n)
            .map(|i| json!({"digit": (i % 10).to_string(), "destination": {"type": "extension", "target": "1001"}}))
            .collect()
    };
    let m = || menu(&prompt);
    let bad = [
        (with(m(), &["name"], json!("")), "name"),
        (with(m(), &["name"], json!("x".repeat(65))), "name"),
        (with(m(), &["name"], json!("Main\u{1b}menu")), "name"),
        (with(m(), &["greeting"], json!("welcome.wav")), "greeting"),
        (with(m(), &["options"], options(13)), "options"),
        (
            with(m(), &["options", "1", "digit"], json!("a")),
            "options[1].digit",
        ),
        (
            with(m(), &["options", "1", "digit"], json!("12")),
            "options[1].digit",
        ),
        (
            with(m(), &["options", "1", "digit"], json!("1")),
            "options[1].digit",
        ),
        (
            with(m(), &["options", "0", "destination", "target"], json!("1x")),
            "options[0].destination.target",
        ),
        (
            with(
                m(),
                &["options", "3", "destination", "target"],
                json!("50a"),
            ),
            "options[3].destination.target",
        ),
        (
            with(
                m(),
                &["options", "0", "destination", "type"],
                json!("voicemail"),
            ),
            "voicemail",
        ),
        (with(m(), &["timeout_secs"], json!(0)), "timeout_secs"),
        (with(m(), &["timeout_secs"], json!(61)), "timeout_secs"),
        (with(m(), &["timeout_secs"], json!(-1)), "timeout_secs"),
        (with(m(), &["attempts"], json!(0)), "attempts"),
        (with(m(), &["attempts"], json!(6)), "attempts"),
        (
            with(
                m(),
                &["fallback"],
                json!({"type": "ring_group", "target": "6"}),
            ),
            "fallback.target",
        ),
        (with(m(), &["direct_dial"], json!("yes")), "direct_dial"),
        (with(m(), &["number"], json!("502")), "number"),
        (with(m(), &["colour"], json!("blue")), "colour"),
    ];
    for (body, field) in bad {
        let got = call(&lab, Method::PUT, MAIN, Some(body.clone())).await;
        expect_error(&got, StatusCode::BAD_REQUEST, &[field]);
    }
    for path in [
        "/api/v1/ivrs/5a5",
        &format!("/api/v1/ivrs/{}", "5".repeat(33)),
    ] {
        let got = call(&lab, Method::PUT, path, Some(json!({"name": "X"}))).await;
        expect_error(&got, StatusCode::BAD_REQUEST, &["number"]);
    }
    // A greeting that is no prompt, or no file; destinations that do not exist.
    let got = call(
        &lab,
        Method::PUT,
        MAIN,
        Some(with(m(), &["greeting"], json!(music))),
    )
    .await;
    expect_error(
        &got,
        StatusCode::BAD_REQUEST,
        &["greeting", "music on hold, not a prompt"],
    );
    let nowhere = "0123456789abcdef0123456789abcdef";
    let got = call(
        &lab,
        Method::PUT,
        MAIN,
        Some(with(m(), &["greeting"], json!(nowhere))),
    )
    .await;
    expect_error(
        &got,
        StatusCode::NOT_FOUND,
        &["greeting", &format!("audio file {nowhere} does not exist")],
    );
    let got = call(
        &lab,
        Method::PUT,
        MAIN,
        Some(with(
            m(),
            &["options", "1", "destination"],
            json!({"type": "ring_group", "target": "699"}),
        )),
    )
    .await;
    expect_error(
        &got,
        StatusCode::NOT_FOUND,
        &[
            "options[1].destination.target",
            "ring group 699 does not exist (key 2)",
        ],
    );
    let got = call(
        &lab,
        Method::PUT,
        MAIN,
        Some(with(
            m(),
            &["fallback"],
            json!({"type": "ivr", "target": "777"}),
        )),
    )
    .await;
    expect_error(
        &got,
        StatusCode::NOT_FOUND,
        &["fallback.target", "IVR 777 does not exist"],
    );
    let got = call(
        &lab,
        Method::PUT,
        "/api/v1/ivrs/502",
        Some(with(
            with(m(), &["number"], json!("502")),
            &["options", "0", "destination", "target"],
            json!("1999"),
        )),
    )
    .await;
    expect_error(
        &got,
        StatusCode::NOT_FOUND,
        &[
            "options[0].destination.target",
            "extension 1999 does not exist",
        ],
    );
    // Nothing was stored or changed by them.
    let got = call(&lab, Method::GET, "/api/v1/ivrs/502", None).await;
    expect_error(&got, StatusCode::NOT_FOUND, &["IVR 502 does not exist"]);
    assert_eq!(numbers(&lab).await, ["500", "501"]);
    let (_, still) = call(&lab, Method::GET, MAIN, None).await;
    for key in FIELDS {
        assert_eq!(still[key], menu(&prompt)[key], "{key}: {still}");
    }

    // ---- One number, one thing to call: both ways.
    let got = call(
        &lab,
        Method::PUT,
        "/api/v1/ivrs/1001",
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
        Method::PUT,
        "/api/v1/ivrs/600",
        Some(json!({"name": "Clash"})),
    )
    .await;
    expect_error(
        &got,
        StatusCode::CONFLICT,
        &["600 is a ring group's number"],
    );
    let got = call(
        &lab,
        Method::POST,
        "/api/v1/extensions",
        Some(json!({"number": "500", "display_name": "Clash"})),
    )
    .await;
    expect_error(&got, StatusCode::CONFLICT, &["500 is an IVR's number"]);
    let got = call(
        &lab,
        Method::POST,
        "/api/v1/ring-groups",
        Some(json!({"number": "500", "name": "Clash", "members": ["1001"]})),
    )
    .await;
    expect_error(&got, StatusCode::CONFLICT, &["500 is an IVR's number"]);
    assert_eq!(numbers(&lab).await, ["500", "501"]);
    let got = call(&lab, Method::GET, "/api/v1/extensions/500", None).await;
    assert_eq!(got.0, StatusCode::NOT_FOUND, "{}", got.1);

    // ---- An inbound route and a time condition send calls to the IVR; one naming no IVR is
    // refused.
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
            "destination": {"type": "ivr", "target": target}
        })
    };
    let made = create(
        &lab,
        "/api/v1/routes/inbound",
        route("main", "+15550100", "500"),
    )
    .await;
    assert_eq!(made["destination"], json!({"type": "ivr", "target": "500"}));
    let got = call(
        &lab,
        Method::POST,
        "/api/v1/routes/inbound",
        Some(route("other", "+15550101", "777")),
    )
    .await;
    expect_error(
        &got,
        StatusCode::BAD_REQUEST,
        &["destination.target", "IVR 777 does not exist"],
    );
    let got = call(
        &lab,
        Method::POST,
        "/api/v1/routes/inbound",
        Some(route("other", "+15550101", "5x")),
    )
    .await;
    expect_error(&got, StatusCode::BAD_REQUEST, &["destination.target"]);
    let after_hours = json!({
        "hours": [{"days": ["mon"], "from": "09:00", "to": "17:00"}],
        "open": {"type": "extension", "target": "1001"},
        "closed": {"type": "ivr", "target": "500"}
    });
    let made = send(
        &lab,
        Method::PUT,
        "/api/v1/time-conditions/after-hours",
        after_hours.clone(),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(made["closed"], json!({"type": "ivr", "target": "500"}));
    let got = call(
        &lab,
        Method::PUT,
        "/api/v1/time-conditions/after-hours",
        Some(with(after_hours, &["closed", "target"], json!("777"))),
    )
    .await;
    expect_error(
        &got,
        StatusCode::NOT_FOUND,
        &["closed.target", "IVR 777 does not exist"],
    );
    // IVR 501 sends key 0 back to the main menu.
    send(
        &lab,
        Method::PUT,
        "/api/v1/ivrs/501",
        json!({"name": "Night", "options": [
            {"digit": "0", "destination": {"type": "ivr", "target": "500"}}
        ]}),
        StatusCode::OK,
    )
    .await;

    // ---- What is in use cannot be deleted: the referrer is named, one after the other.
    let got = call(&lab, Method::DELETE, MAIN, None).await;
    expect_error(
        &got,
        StatusCode::CONFLICT,
        &["inbound route main still sends calls to IVR 500"],
    );
    let (status, body) = call(&lab, Method::DELETE, "/api/v1/routes/inbound/main", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let got = call(&lab, Method::DELETE, MAIN, None).await;
    expect_error(
        &got,
        StatusCode::CONFLICT,
        &["time condition after-hours still sends calls to IVR 500"],
    );
    let (status, body) = call(
        &lab,
        Method::DELETE,
        "/api/v1/time-conditions/after-hours",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let got = call(&lab, Method::DELETE, MAIN, None).await;
    expect_error(
        &got,
        StatusCode::CONFLICT,
        &["IVR 501 still sends calls to IVR 500"],
    );
    // Nor what the IVR sends calls to.
    let got = call(&lab, Method::DELETE, "/api/v1/ring-groups/600", None).await;
    expect_error(
        &got,
        StatusCode::CONFLICT,
        &["IVR 500 still sends calls to ring group 600"],
    );
    let got = call(&lab, Method::DELETE, "/api/v1/time-conditions/office", None).await;
    expect_error(
        &got,
        StatusCode::CONFLICT,
        &["IVR 500 still sends calls to time condition office"],
    );

    // ---- The routes page lists it.
    let resp = lab
        .anon(0, Method::GET, "/routes?ivr=500")
        .basic_auth("admin", Some(&lab.admin_password))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    for needle in [
        "id=\"ivr-row-500\"",
        "id=\"ivr-row-501\"",
        "<td>Welcome</td>",
        "IVR <span class=\"mono\">500</span>",
        "Change IVR 500",
        "id=\"ivr-form\" data-api=\"PUT /api/v1/ivrs/{number}\"",
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
        (Method::GET, "/api/v1/ivrs", None),
        (Method::GET, MAIN, None),
        (Method::PUT, MAIN, Some(menu(&prompt))),
        (Method::DELETE, MAIN, None),
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

    // ---- Deleted once nothing sends calls to it (its own key back to the menu does not count);
    // then gone, and what it sent calls to may go too.
    let (status, body) = call(&lab, Method::DELETE, "/api/v1/ivrs/501", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = call(&lab, Method::DELETE, MAIN, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let got = call(&lab, Method::GET, MAIN, None).await;
    expect_error(&got, StatusCode::NOT_FOUND, &["IVR 500 does not exist"]);
    let got = call(&lab, Method::DELETE, MAIN, None).await;
    expect_error(&got, StatusCode::NOT_FOUND, &["IVR 500 does not exist"]);
    assert!(numbers(&lab).await.is_empty());
    let (status, body) = call(&lab, Method::DELETE, "/api/v1/time-conditions/office", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = call(&lab, Method::DELETE, "/api/v1/ring-groups/600", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // Its number is free again.
    create(
        &lab,
        "/api/v1/extensions",
        json!({"number": "500", "display_name": "Now a phone"}),
    )
    .await;

    // ---- Every change is audited, with what changed.
    let (_, audit) = call(&lab, Method::GET, "/api/v1/audit?limit=1000", None).await;
    let entries = audit["entries"].as_array().unwrap();
    let found = |needles: &[&str]| {
        entries.iter().any(|e| {
            let action = e["action"].as_str().unwrap_or_default();
            e["actor"] == "admin" && needles.iter().all(|n| action.contains(n))
        })
    };
    assert!(found(&["PUT /api/v1/ivrs/500", "created"]), "{audit}");
    assert!(
        found(&["PUT /api/v1/ivrs/500", "changed", "attempts"]),
        "{audit}"
    );
    assert!(found(&["DELETE /api/v1/ivrs/500", "deleted"]), "{audit}");
}
