//! The call-recording policy API on a real one-node cluster: an extension is not recorded until an
//! admin says so; a policy is set, read back and audited; an unknown mode is refused listing the
//! modes; a missing extension is a 404; an account without the `extensions` grant may neither read
//! nor set a policy; and a deleted extension takes its policy with it.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use reqwest::{Method, StatusCode};
use serde_json::json;

use pbx_tests::Lab;
use pbx_tests::api::{PASSWORD, as_user, expect_error};
use pbx_tests::api::{call, create, send};

const PATH: &str = "/api/v1/extensions/1001/recording";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_policy_through_the_api() {
    let lab = Lab::start(1).await.unwrap();
    for n in ["1001", "1002"] {
        create(
            &lab,
            "/api/v1/extensions",
            json!({"number": n, "display_name": format!("Ext {n}")}),
        )
        .await;
    }

    // ---- Never recorded until an admin says so.
    let (s, got) = call(&lab, Method::GET, PATH, None).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got, json!({"extension": "1001", "mode": "never"}));

    // ---- Set, answered with what was stored, and read back.
    let put = send(
        &lab,
        Method::PUT,
        PATH,
        json!({"mode": "always"}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (&put["extension"], &put["mode"]),
        (&json!("1001"), &json!("always"))
    );
    assert!(put["updated_at"].as_u64().unwrap() > 0, "{put}");
    let (s, got) = call(&lab, Method::GET, PATH, None).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got, put);
    // The GET answer written back is a valid body.
    send(&lab, Method::PUT, PATH, got, StatusCode::OK).await;
    let (_, other) = call(&lab, Method::GET, "/api/v1/extensions/1002/recording", None).await;
    assert_eq!(other["mode"], "never", "one extension's policy is its own");

    // ---- Bad bodies are refused naming the field; an unknown mode lists the modes.
    expect_error(
        &call(&lab, Method::PUT, PATH, Some(json!({"mode": "sometimes"}))).await,
        StatusCode::BAD_REQUEST,
        &["mode", "never", "always", "on_demand"],
    );
    let bad = [
        (json!({}), "mode"),
        (json!({"mode": 1}), "mode"),
        (json!({"mode": "always", "extension": "1002"}), "extension"),
        (json!({"mode": "always", "record": true}), "record"),
    ];
    for (body, field) in bad {
        expect_error(
            &call(&lab, Method::PUT, PATH, Some(body)).await,
            StatusCode::BAD_REQUEST,
            &[field],
        );
    }
    let (_, got) = call(&lab, Method::GET, PATH, None).await;
    assert_eq!(got["mode"], "always", "a refused change changes nothing");

    // ---- A missing extension, or a number no extension can have.
    expect_error(
        &call(&lab, Method::GET, "/api/v1/extensions/1999/recording", None).await,
        StatusCode::NOT_FOUND,
        &["extension 1999 does not exist"],
    );
    expect_error(
        &call(
            &lab,
            Method::PUT,
            "/api/v1/extensions/1999/recording",
            Some(json!({"mode": "always"})),
        )
        .await,
        StatusCode::NOT_FOUND,
        &["1999"],
    );
    expect_error(
        &call(&lab, Method::GET, "/api/v1/extensions/1x/recording", None).await,
        StatusCode::BAD_REQUEST,
        &["number"],
    );

    // ---- Without the `extensions` grant: not even the account's own extension.
    create(
        &lab,
        "/api/v1/accounts",
        json!({"username": "una", "role": "user", "extension": "1001",
               "password": PASSWORD, "must_change_password": false}),
    )
    .await;
    for method in [Method::GET, Method::PUT] {
        let body = (method == Method::PUT).then(|| json!({"mode": "never"}));
        let got = as_user(&lab, "una", method.clone(), PATH, body).await;
        assert_eq!(got.0, StatusCode::FORBIDDEN, "{method}: {}", got.1);
    }

    // ---- The change is audited, from `never`.
    let (_, audit) = call(&lab, Method::GET, "/api/v1/audit?limit=1000", None).await;
    let entries = audit["entries"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| {
            let action = e["action"].as_str().unwrap_or_default();
            e["actor"] == "admin"
                && action.contains("PUT /api/v1/extensions/1001/recording")
                && action.contains("mode: \"never\" → \"always\"")
        }),
        "{audit}"
    );

    // ---- A deleted extension takes its policy with it; a new one with the number is unrecorded.
    send(
        &lab,
        Method::PUT,
        "/api/v1/extensions/1002/recording",
        json!({"mode": "always"}),
        StatusCode::OK,
    )
    .await;
    let (s, _) = call(&lab, Method::DELETE, "/api/v1/extensions/1002", None).await;
    assert!(s.is_success(), "{s}");
    expect_error(
        &call(&lab, Method::GET, "/api/v1/extensions/1002/recording", None).await,
        StatusCode::NOT_FOUND,
        &["extension 1002 does not exist"],
    );
    create(
        &lab,
        "/api/v1/extensions",
        json!({"number": "1002", "display_name": "Ext 1002 again"}),
    )
    .await;
    let (_, got) = call(&lab, Method::GET, "/api/v1/extensions/1002/recording", None).await;
    assert_eq!(got, json!({"extension": "1002", "mode": "never"}));
}
