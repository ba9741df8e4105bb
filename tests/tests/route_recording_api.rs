//! The recording policy of trunks and routes through the API, on a real three-node cluster: a trunk
//! or route is not recorded until an admin says so; a policy is set, read back (on another node
//! too) and audited; only `never` and `always` are modes of a trunk or route; a missing one is a
//! 404; a body that is not JSON is a 400; an account without the `routing` grant may neither read
//! nor set a policy; and a deleted trunk or route takes its policy with it.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use pbx_tests::Lab;
use pbx_tests::api::{
    PASSWORD, as_user, call, create, expect_error, inbound_to_extension, peer_trunk, poll_node,
    send,
};

const TRUNK: &str = "/api/v1/trunks/carrier/recording";
const OUTBOUND: &str = "/api/v1/routes/outbound/local/recording";
const INBOUND: &str = "/api/v1/routes/inbound/main/recording";

/// Trunk `carrier`, outbound route `local` through it, inbound route `main` to extension 1001.
async fn routing(lab: &Lab) {
    create(
        lab,
        "/api/v1/extensions",
        json!({"number": "1001", "display_name": "Reception"}),
    )
    .await;
    routing_again(lab).await;
}

/// Whether an audit entry of the admin has an action containing each of `needles`.
async fn audited(lab: &Lab, needles: &[&str]) -> bool {
    let (_, audit) = call(lab, Method::GET, "/api/v1/audit?limit=1000", None).await;
    audit["entries"].as_array().unwrap().iter().any(|e| {
        let action = e["action"].as_str().unwrap_or_default();
        e["actor"] == "admin" && needles.iter().all(|n| action.contains(n))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_and_route_recording_policies_through_the_api() {
    let lab = Lab::start(3).await.unwrap();
    routing(&lab).await;

    // ---- Never recorded until an admin says so.
    for path in [TRUNK, OUTBOUND, INBOUND] {
        let (s, got) = call(&lab, Method::GET, path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {got}");
        assert_eq!(got, json!({"mode": "never"}), "{path}");
    }

    // ---- Set, answered with what was stored, read back, and audited from `never`.
    let mut set = Vec::new();
    for path in [TRUNK, OUTBOUND, INBOUND] {
        let put = send(
            &lab,
            Method::PUT,
            path,
            json!({"mode": "always"}),
            StatusCode::OK,
        )
        .await;
        assert_eq!(put["mode"], "always", "{path}: {put}");
        assert!(put["updated_at"].as_u64().unwrap() > 0, "{path}: {put}");
        let (s, got) = call(&lab, Method::GET, path, None).await;
        assert_eq!(s, StatusCode::OK, "{got}");
        assert_eq!(got, put, "{path}");
        assert!(
            audited(
                &lab,
                &[&format!("PUT {path}"), "mode: \"never\" → \"always\""]
            )
            .await,
            "{path}: no audit entry"
        );
        set.push((path, put));
    }
    // The GET answer written back is a valid body.
    let (_, got) = call(&lab, Method::GET, TRUNK, None).await;
    send(&lab, Method::PUT, TRUNK, got, StatusCode::OK).await;

    // ---- Replicated: another node reads the same policies.
    let client = lab.client();
    for (path, put) in &set {
        let got = poll_node(&client, 2, path, Duration::from_secs(5), |v| {
            v["mode"] == "always"
        })
        .await;
        assert_eq!(got["mode"], put["mode"], "{path} on node 2: {got}");
    }

    // ---- Only `never` and `always`: other modes are refused naming the allowed ones.
    for mode in ["on_demand", "sometimes", "Always"] {
        let got = call(&lab, Method::PUT, OUTBOUND, Some(json!({ "mode": mode }))).await;
        expect_error(&got, StatusCode::BAD_REQUEST, &["mode", "never, always"]);
        assert!(!got.1["message"].as_str().unwrap().contains("on_demand"));
    }
    for (body, field) in [
        (json!({}), "mode"),
        (json!({"mode": 1}), "mode"),
        (json!({"mode": "always", "record": true}), "record"),
    ] {
        expect_error(
            &call(&lab, Method::PUT, INBOUND, Some(body)).await,
            StatusCode::BAD_REQUEST,
            &[field],
        );
    }
    // A body that is not JSON.
    let resp = lab
        .req(0, Method::PUT, TRUNK)
        .header("content-type", "application/json")
        .body("{\"mode\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("malformed"),
        "{body}"
    );
    let (_, got) = call(&lab, Method::GET, OUTBOUND, None).await;
    assert_eq!(got["mode"], "always", "a refused change changes nothing");

    // ---- A missing trunk or route, or a name none can have.
    for (path, what) in [
        (
            "/api/v1/trunks/nosuch/recording",
            "trunk nosuch does not exist",
        ),
        (
            "/api/v1/routes/outbound/nosuch/recording",
            "outbound route nosuch does not exist",
        ),
        (
            "/api/v1/routes/inbound/nosuch/recording",
            "inbound route nosuch does not exist",
        ),
    ] {
        expect_error(
            &call(&lab, Method::GET, path, None).await,
            StatusCode::NOT_FOUND,
            &[what],
        );
        expect_error(
            &call(&lab, Method::PUT, path, Some(json!({"mode": "always"}))).await,
            StatusCode::NOT_FOUND,
            &[what],
        );
    }
    expect_error(
        &call(&lab, Method::GET, "/api/v1/trunks/a.b/recording", None).await,
        StatusCode::BAD_REQUEST,
        &["name"],
    );

    // ---- Without the `routing` grant: neither read nor set.
    create(
        &lab,
        "/api/v1/accounts",
        json!({"username": "opal", "role": "operator",
               "password": PASSWORD, "must_change_password": false}),
    )
    .await;
    for method in [Method::GET, Method::PUT] {
        let body = (method == Method::PUT).then(|| json!({"mode": "never"}));
        let got = as_user(&lab, "opal", method.clone(), TRUNK, body).await;
        assert_eq!(got.0, StatusCode::FORBIDDEN, "{method}: {}", got.1);
    }

    // ---- Set back to never.
    let put = send(
        &lab,
        Method::PUT,
        OUTBOUND,
        json!({"mode": "never"}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(put["mode"], "never");
    assert!(
        audited(
            &lab,
            &[&format!("PUT {OUTBOUND}"), "mode: \"always\" → \"never\""]
        )
        .await
    );

    // ---- A deleted trunk or route takes its policy with it; a new one with the name is
    // unrecorded.
    send(
        &lab,
        Method::PUT,
        OUTBOUND,
        json!({"mode": "always"}),
        StatusCode::OK,
    )
    .await;
    for path in [
        "/api/v1/routes/outbound/local",
        "/api/v1/routes/inbound/main",
        "/api/v1/trunks/carrier",
    ] {
        let (s, got) = call(&lab, Method::DELETE, path, None).await;
        assert!(s.is_success(), "{path}: {s} {got}");
        expect_error(
            &call(&lab, Method::GET, &format!("{path}/recording"), None).await,
            StatusCode::NOT_FOUND,
            &["does not exist"],
        );
    }
    routing_again(&lab).await;
    for path in [TRUNK, OUTBOUND, INBOUND] {
        let (s, got) = call(&lab, Method::GET, path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {got}");
        assert_eq!(
            got,
            json!({"mode": "never"}),
            "{path}: the policy went with it"
        );
        let got = poll_node(&client, 1, path, Duration::from_secs(5), |v| {
            v["mode"] == "never"
        })
        .await;
        assert_eq!(got, json!({"mode": "never"}), "{path} on node 1");
    }
}

/// Trunk, outbound and inbound route of [`routing`]: the extension is there.
async fn routing_again(lab: &Lab) {
    create(
        lab,
        "/api/v1/trunks",
        peer_trunk("carrier", "127.0.0.1", 5099),
    )
    .await;
    create(
        lab,
        "/api/v1/routes/outbound",
        json!({"name": "local", "patterns": ["9."], "strip": 1, "class": "local", "trunks": ["carrier"]}),
    )
    .await;
    create(
        lab,
        "/api/v1/routes/inbound",
        inbound_to_extension("main", "+15550100", "1001"),
    )
    .await;
}
