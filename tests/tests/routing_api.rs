//! The admin API for trunks, outbound and inbound routes, permission groups, toll-fraud suspensions
//! and routing settings, on a real one-node cluster: full round trips, write-only trunk passwords,
//! bad input refused with the field at fault, references checked by the state machine (a route's
//! unknown trunk, a trunk still in use), and admin-only access.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use pbx_tests::Lab;
use pbx_tests::api::call;
use pbx_tests::api::expect_error;

/// Requests without credentials, or with a wrong password, are refused on every path given.
async fn refused_without_admin(lab: &Lab, paths: &[(Method, &str)]) {
    for (method, path) in paths {
        let anon = lab.anon(0, method.clone(), path).send().await.unwrap();
        assert_eq!(anon.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        let wrong = lab
            .anon(0, method.clone(), path)
            .basic_auth("admin", Some("Wrong-Pass-123"))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
}

fn peer_trunk(name: &str) -> Value {
    json!({"name": name, "kind": "peer", "host": "198.51.100.10"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunks_round_trip_with_a_write_only_password() {
    let lab = Lab::start(1).await.unwrap();
    const SECRET: &str = "Prov1der-Secret!";
    let trunk = json!({
        "name": "carrier",
        "kind": "register",
        "host": "sip.carrier.example",
        "port": 5061,
        "transport": "tls",
        "outbound_proxy": "proxy.carrier.example:5060",
        "username": "acct42",
        "password": SECRET,
        "caller_id": "+15550100",
        "dids": ["+15550100", "15550100-15550199"],
        "peer_networks": ["198.51.100.0/24"],
        "max_calls": 10
    });
    let (status, created) = call(&lab, Method::POST, "/api/v1/trunks", Some(trunk.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["password_set"], true);
    assert!(created.get("password").is_none(), "{created}");
    assert_eq!(created["transport"], "tls");
    assert_eq!(created["register_expires"], 600, "the default");
    assert_eq!(created["enabled"], true, "the default");

    // The CLI an operator scripts with: `pbx api` for any endpoint, `pbx trunks` for the states.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(pbx_tests::pbx_bin())
            .args(args)
            .args(["--via", &lab.nodes[0].api_url()])
            .arg("--ca")
            .arg(lab.dir.path().join("ca/ca.pem"))
            .env("PBX_PASSWORD", &lab.admin_password)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.success(),
            text,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, text, err) = cli(&["api", "GET", "/api/v1/trunks/carrier"]);
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(shown["host"], "sip.carrier.example");
    assert!(!text.contains(SECRET), "{text}");
    let (ok, text, err) = cli(&["trunks"]);
    assert!(ok, "{err}");
    let line = text
        .lines()
        .find(|l| l.starts_with("carrier "))
        .unwrap_or_default();
    assert!(
        line.contains("register") && line.contains("sip.carrier.example"),
        "{text}"
    );
    let (ok, _, err) = cli(&["api", "DELETE", "/api/v1/trunks/nosuch"]);
    assert!(!ok && err.contains("404"), "{err}");

    // Never returned, by any read.
    let (_, one) = call(&lab, Method::GET, "/api/v1/trunks/carrier", None).await;
    assert_eq!(one["username"], "acct42");
    assert_eq!(one["password_set"], true);
    let (_, list) = call(&lab, Method::GET, "/api/v1/trunks", None).await;
    assert_eq!(list["trunks"].as_array().unwrap().len(), 1);
    let (_, audit) = call(&lab, Method::GET, "/api/v1/audit", None).await;
    for body in [&created, &one, &list, &audit] {
        assert!(!body.to_string().contains(SECRET), "{body}");
    }

    // What a GET answers, written back as it is, is a valid PUT (read-only fields are ignored).
    let (_, read) = call(&lab, Method::GET, "/api/v1/trunks/carrier", None).await;
    let (status, body) = call(
        &lab,
        Method::PUT,
        "/api/v1/trunks/carrier",
        Some(read.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["created_at"], read["created_at"], "{body}");

    // PUT replaces every field; without a password the stored one stays.
    let mut replaced = trunk.clone();
    replaced.as_object_mut().unwrap().remove("password");
    replaced["host"] = json!("sip2.carrier.example");
    replaced["register_expires"] = json!(3600);
    let (status, updated) = call(
        &lab,
        Method::PUT,
        "/api/v1/trunks/carrier",
        Some(replaced.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["password_set"], true);
    assert_eq!(updated["host"], "sip2.carrier.example");
    assert_eq!(updated["created_at"], created["created_at"]);
    let (_, one) = call(&lab, Method::GET, "/api/v1/trunks/carrier", None).await;
    assert_eq!(one["register_expires"], 3600);
    assert_eq!(one["password_set"], true);
    // A register trunk cannot drop its password; a name in the body must be the URL's.
    replaced["password"] = json!("");
    let got = call(&lab, Method::PUT, "/api/v1/trunks/carrier", Some(replaced)).await;
    expect_error(&got, StatusCode::BAD_REQUEST, &["password"]);
    let got = call(
        &lab,
        Method::PUT,
        "/api/v1/trunks/carrier",
        Some(peer_trunk("other")),
    )
    .await;
    expect_error(&got, StatusCode::BAD_REQUEST, &["name"]);

    // Status before the VIP owner has checked it.
    let (status, st) = call(&lab, Method::GET, "/api/v1/trunks/carrier/status", None).await;
    assert_eq!(status, StatusCode::OK, "{st}");
    assert_eq!(st["name"], "carrier");
    assert!(
        [
            "unknown",
            "registered",
            "reachable",
            "failed",
            "unreachable",
            "unresolved"
        ]
        .contains(&st["state"].as_str().unwrap()),
        "{st}"
    );

    // Bad input names the field.
    let bad = |field: &str, value: Value| {
        let mut t = peer_trunk("bad");
        t[field] = value;
        t
    };
    for (body, needles) in [
        (bad("dids", json!(["15550199-15550100"])), vec!["dids[0]"]),
        (bad("dids", json!(["100-2000"])), vec!["dids[0]"]),
        (
            bad("peer_networks", json!(["198.51.100.0/33"])),
            vec!["peer_networks[0]"],
        ),
        (bad("host", json!("bad host!")), vec!["host"]),
        (bad("port", json!(0)), vec!["port"]),
        (bad("port", json!(70000)), vec!["port"]),
        (bad("qualify_secs", json!(5)), vec!["qualify_secs"]),
        (bad("register_expires", json!(10)), vec!["register_expires"]),
        (bad("transport", json!("sctp")), vec!["transport"]),
        (bad("name", json!("no spaces")), vec!["name"]),
        (
            json!({"name": "reg", "kind": "register", "host": "a.example"}),
            vec!["username"],
        ),
    ] {
        let got = call(&lab, Method::POST, "/api/v1/trunks", Some(body)).await;
        expect_error(&got, StatusCode::BAD_REQUEST, &needles);
    }

    // Duplicates, unknown names.
    let got = call(&lab, Method::POST, "/api/v1/trunks", Some(trunk)).await;
    expect_error(
        &got,
        StatusCode::CONFLICT,
        &["trunk carrier already exists"],
    );
    let got = call(&lab, Method::GET, "/api/v1/trunks/nobody", None).await;
    expect_error(&got, StatusCode::NOT_FOUND, &["nobody"]);
    let got = call(&lab, Method::GET, "/api/v1/trunks/nobody/status", None).await;
    expect_error(&got, StatusCode::NOT_FOUND, &["nobody"]);
    let got = call(
        &lab,
        Method::PUT,
        "/api/v1/trunks/nobody",
        Some(peer_trunk("nobody")),
    )
    .await;
    expect_error(&got, StatusCode::NOT_FOUND, &["nobody"]);

    refused_without_admin(
        &lab,
        &[
            (Method::GET, "/api/v1/trunks"),
            (Method::GET, "/api/v1/trunks/carrier"),
            (Method::DELETE, "/api/v1/trunks/carrier"),
            (Method::GET, "/api/v1/trunks/carrier/status"),
        ],
    )
    .await;

    let (status, _) = call(&lab, Method::DELETE, "/api/v1/trunks/carrier", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let got = call(&lab, Method::DELETE, "/api/v1/trunks/carrier", None).await;
    expect_error(&got, StatusCode::NOT_FOUND, &["carrier"]);
    let (_, list) = call(&lab, Method::GET, "/api/v1/trunks", None).await;
    assert_eq!(list["trunks"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_check_patterns_and_references() {
    let lab = Lab::start(1).await.unwrap();
    for t in ["a", "b"] {
        let (status, body) = call(&lab, Method::POST, "/api/v1/trunks", Some(peer_trunk(t))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let route = |name: &str, position: u32, trunks: Value| {
        json!({
            "name": name,
            "position": position,
            "patterns": ["9NXXXXXX"],
            "strip": 1,
            "class": "local",
            "trunks": trunks
        })
    };

    // Outbound: create, list in (position, name) order, read, replace, refuse bad input.
    for (name, pos) in [("zz-first", 1), ("local", 5), ("another", 5)] {
        let (status, body) = call(
            &lab,
            Method::POST,
            "/api/v1/routes/outbound",
            Some(route(name, pos, json!(["a", "b"]))),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (_, list) = call(&lab, Method::GET, "/api/v1/routes/outbound", None).await;
    let names: Vec<&str> = list["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["zz-first", "another", "local"]);
    let mut intl = route("local", 5, json!(["b"]));
    intl["class"] = json!("international");
    intl["prepend"] = json!("+");
    let (status, updated) = call(
        &lab,
        Method::PUT,
        "/api/v1/routes/outbound/local",
        Some(intl),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let (_, one) = call(&lab, Method::GET, "/api/v1/routes/outbound/local", None).await;
    assert_eq!(one["class"], "international");
    assert_eq!(one["trunks"], json!(["b"]));
    assert_eq!(one["prepend"], "+");

    let mut bad_pattern = route("bad", 0, json!(["a"]));
    bad_pattern["patterns"] = json!(["9N?X"]);
    let got = call(
        &lab,
        Method::POST,
        "/api/v1/routes/outbound",
        Some(bad_pattern),
    )
    .await;
    expect_error(
        &got,
        StatusCode::BAD_REQUEST,
        &["patterns[0]", "position 3"],
    );
    let got = call(
        &lab,
        Method::POST,
        "/api/v1/routes/outbound",
        Some(route("bad", 0, json!(["a", "nowhere"]))),
    )
    .await;
    expect_error(
        &got,
        StatusCode::BAD_REQUEST,
        &["trunks", "trunk nowhere does not exist"],
    );
    let mut bad_class = route("bad", 0, json!(["a"]));
    bad_class["class"] = json!("premium");
    let got = call(
        &lab,
        Method::POST,
        "/api/v1/routes/outbound",
        Some(bad_class),
    )
    .await;
    expect_error(&got, StatusCode::BAD_REQUEST, &["class"]);
    let got = call(
        &lab,
        Method::POST,
        "/api/v1/routes/outbound",
        Some(route("bad", 0, json!([]))),
    )
    .await;
    expect_error(&got, StatusCode::BAD_REQUEST, &["trunks"]);
    let got = call(
        &lab,
        Method::POST,
        "/api/v1/routes/outbound",
        Some(route("local", 0, json!(["a"]))),
    )
    .await;
    expect_error(
        &got,
        StatusCode::CONFLICT,
        &["outbound route local already exists"],
    );
    let got = call(&lab, Method::GET, "/api/v1/routes/outbound/bad", None).await;
    expect_error(&got, StatusCode::NOT_FOUND, &["bad"]);

    // A trunk a route uses cannot go.
    let got = call(&lab, Method::DELETE, "/api/v1/trunks/b", None).await;
    expect_error(
        &got,
        StatusCode::CONFLICT,
        &["trunk b is used by outbound route"],
    );

    // Inbound: needs its extension (and trunk, when it names one).
    let inbound = json!({
        "name": "main",
        "did_kind": "exact",
        "did": "+15550100",
        "trunk": "a",
        "destination": {"type": "extension", "target": "1001"}
    });
    let got = call(
        &lab,
        Method::POST,
        "/api/v1/routes/inbound",
        Some(inbound.clone()),
    )
    .await;
    expect_error(
        &got,
        StatusCode::BAD_REQUEST,
        &["destination.target", "extension 1001 does not exist"],
    );
    assert_eq!(
        lab.create_extension(0, "1001").await.unwrap(),
        StatusCode::CREATED
    );
    let (status, created) = call(
        &lab,
        Method::POST,
        "/api/v1/routes/inbound",
        Some(inbound.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["destination"],
        json!({"type": "extension", "target": "1001"})
    );
    let got = call(&lab, Method::POST, "/api/v1/routes/inbound", Some(inbound)).await;
    expect_error(&got, StatusCode::CONFLICT, &["already exists"]);
    let pattern_route = json!({
        "did_kind": "pattern",
        "did": "1555XXXX",
        "caller_id": "+44.",
        "destination": {"type": "extension", "target": "1001"}
    });
    let (status, body) = call(
        &lab,
        Method::PUT,
        "/api/v1/routes/inbound/main",
        Some(pattern_route.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, one) = call(&lab, Method::GET, "/api/v1/routes/inbound/main", None).await;
    assert_eq!(one["did_kind"], "pattern");
    assert_eq!(one["trunk"], Value::Null);
    assert_eq!(one["caller_id"], "+44.");
    for (field, value, needle) in [
        ("did", json!("15X.5"), "did"),
        ("did_kind", json!("fuzzy"), "did_kind"),
        ("caller_id", json!("abc"), "caller_id"),
        ("trunk", json!("nowhere"), "trunk nowhere does not exist"),
        (
            "destination",
            json!({"type": "voicemail", "target": "1001"}),
            "destination",
        ),
    ] {
        let mut body = pattern_route.clone();
        body["name"] = json!("other");
        // Another DID, so that only the field under test is wrong (not a twin of `main`).
        body["did"] = json!("1666XXXX");
        body[field] = value;
        let got = call(&lab, Method::POST, "/api/v1/routes/inbound", Some(body)).await;
        expect_error(&got, StatusCode::BAD_REQUEST, &[needle]);
    }
    let mut exact_bad = pattern_route.clone();
    exact_bad["name"] = json!("other");
    exact_bad["did_kind"] = json!("exact");
    let got = call(
        &lab,
        Method::POST,
        "/api/v1/routes/inbound",
        Some(exact_bad),
    )
    .await;
    expect_error(&got, StatusCode::BAD_REQUEST, &["did"]);
    // A second route for the same DID and caller-ID condition could never be chosen: refused.
    let mut twin = pattern_route.clone();
    twin["name"] = json!("twin");
    let got = call(&lab, Method::POST, "/api/v1/routes/inbound", Some(twin)).await;
    expect_error(
        &got,
        StatusCode::CONFLICT,
        &["inbound route main already takes DID 1555XXXX"],
    );
    let (_, list) = call(&lab, Method::GET, "/api/v1/routes/inbound", None).await;
    assert_eq!(list["routes"].as_array().unwrap().len(), 1);

    refused_without_admin(
        &lab,
        &[
            (Method::GET, "/api/v1/routes/outbound"),
            (Method::DELETE, "/api/v1/routes/outbound/local"),
            (Method::GET, "/api/v1/routes/inbound"),
            (Method::DELETE, "/api/v1/routes/inbound/main"),
        ],
    )
    .await;

    // Deleting what refers to the trunk frees it.
    for path in [
        "/api/v1/routes/inbound/main",
        "/api/v1/routes/outbound/local",
        "/api/v1/routes/outbound/another",
        "/api/v1/routes/outbound/zz-first",
        "/api/v1/trunks/b",
    ] {
        let (status, body) = call(&lab, Method::DELETE, path, None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{path}: {body}");
    }
    let got = call(&lab, Method::DELETE, "/api/v1/routes/outbound/local", None).await;
    expect_error(&got, StatusCode::NOT_FOUND, &["local"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_toll_fraud_and_settings() {
    let lab = Lab::start(1).await.unwrap();
    let (status, body) = call(&lab, Method::POST, "/api/v1/trunks", Some(peer_trunk("a"))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let route =
        json!({"name": "intl", "patterns": ["00."], "class": "international", "trunks": ["a"]});
    let (status, body) = call(&lab, Method::POST, "/api/v1/routes/outbound", Some(route)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Permission groups.
    let group = json!({
        "name": "staff",
        "routes": ["intl"],
        "international_prefixes": ["+44", "33"],
        "limits": {"per_minute": 5, "per_day": 100, "international_per_day": 10},
        "suspend_on_limit": true
    });
    let (status, created) = call(
        &lab,
        Method::POST,
        "/api/v1/permission-groups",
        Some(group.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["international_prefixes"], json!(["44", "33"]));
    assert_eq!(
        created["limits"],
        json!({"per_minute": 5, "per_hour": 0, "per_day": 100, "simultaneous": 0, "international_per_day": 10})
    );
    let got = call(&lab, Method::POST, "/api/v1/permission-groups", Some(group)).await;
    expect_error(
        &got,
        StatusCode::CONFLICT,
        &["permission group staff already exists"],
    );
    let unknown_route = json!({"name": "guests", "routes": ["intl", "moon"]});
    let got = call(
        &lab,
        Method::POST,
        "/api/v1/permission-groups",
        Some(unknown_route),
    )
    .await;
    expect_error(
        &got,
        StatusCode::BAD_REQUEST,
        &["routes", "outbound route moon does not exist"],
    );
    for (body, needle) in [
        (
            json!({"name": "g", "limits": {"per_hour": 100_001}}),
            "limits.per_hour",
        ),
        (
            json!({"name": "g", "international_prefixes": ["12345"]}),
            "international_prefixes[0]",
        ),
        (json!({"name": "g", "limits": {"per_week": 1}}), "per_week"),
    ] {
        let got = call(&lab, Method::POST, "/api/v1/permission-groups", Some(body)).await;
        expect_error(&got, StatusCode::BAD_REQUEST, &[needle]);
    }
    let got = call(&lab, Method::DELETE, "/api/v1/routes/outbound/intl", None).await;
    expect_error(
        &got,
        StatusCode::CONFLICT,
        &["outbound route intl is used by permission group staff"],
    );
    let (status, updated) = call(
        &lab,
        Method::PUT,
        "/api/v1/permission-groups/staff",
        Some(json!({"routes": [], "limits": {"simultaneous": 2}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let (_, one) = call(&lab, Method::GET, "/api/v1/permission-groups/staff", None).await;
    assert_eq!(one["routes"], json!([]));
    assert_eq!(one["limits"]["simultaneous"], 2);
    assert_eq!(one["limits"]["per_day"], 0);
    assert_eq!(one["suspend_on_limit"], false);
    let (_, list) = call(&lab, Method::GET, "/api/v1/permission-groups", None).await;
    assert_eq!(list["groups"].as_array().unwrap().len(), 1);
    let (status, _) = call(&lab, Method::DELETE, "/api/v1/routes/outbound/intl", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "no group uses it now");
    let (status, _) = call(
        &lab,
        Method::DELETE,
        "/api/v1/permission-groups/staff",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let got = call(&lab, Method::GET, "/api/v1/permission-groups/staff", None).await;
    expect_error(&got, StatusCode::NOT_FOUND, &["staff"]);

    // Toll fraud: no calls yet, so no counters and nothing to clear.
    let (status, counters) = call(&lab, Method::GET, "/api/v1/toll-fraud", None).await;
    assert_eq!(status, StatusCode::OK, "{counters}");
    assert_eq!(counters["counters"], json!([]));
    let got = call(
        &lab,
        Method::DELETE,
        "/api/v1/toll-fraud/suspensions/1001",
        None,
    )
    .await;
    expect_error(&got, StatusCode::NOT_FOUND, &["not suspended"]);
    let got = call(
        &lab,
        Method::DELETE,
        "/api/v1/toll-fraud/suspensions/abc",
        None,
    )
    .await;
    expect_error(&got, StatusCode::BAD_REQUEST, &["digits"]);
    let got = call(&lab, Method::GET, "/api/v1/toll-fraud?limit=0", None).await;
    expect_error(&got, StatusCode::BAD_REQUEST, &["limit"]);

    // Settings: defaults, a round trip, bad input.
    let (_, settings) = call(&lab, Method::GET, "/api/v1/routing/settings", None).await;
    assert_eq!(
        settings,
        json!({"emergency_numbers": ["911", "112"], "reject_anonymous_inbound": false})
    );
    let new = json!({"emergency_numbers": ["999", "112"], "reject_anonymous_inbound": true});
    let (status, body) = call(
        &lab,
        Method::PUT,
        "/api/v1/routing/settings",
        Some(new.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, settings) = call(&lab, Method::GET, "/api/v1/routing/settings", None).await;
    assert_eq!(settings, new);
    let got = call(
        &lab,
        Method::PUT,
        "/api/v1/routing/settings",
        Some(json!({"emergency_numbers": ["9-1-1"], "reject_anonymous_inbound": false})),
    )
    .await;
    expect_error(&got, StatusCode::BAD_REQUEST, &["emergency_numbers[0]"]);
    let (_, settings) = call(&lab, Method::GET, "/api/v1/routing/settings", None).await;
    assert_eq!(settings, new, "a refused change changes nothing");
    let (_, audit) = call(&lab, Method::GET, "/api/v1/audit", None).await;
    assert!(
        audit
            .to_string()
            .contains("routing.reject_anonymous_inbound"),
        "settings changes are audited: {audit}"
    );

    refused_without_admin(
        &lab,
        &[
            (Method::GET, "/api/v1/permission-groups"),
            (Method::DELETE, "/api/v1/permission-groups/staff"),
            (Method::GET, "/api/v1/toll-fraud"),
            (Method::DELETE, "/api/v1/toll-fraud/suspensions/1001"),
            (Method::GET, "/api/v1/routing/settings"),
            (Method::PUT, "/api/v1/routing/settings"),
        ],
    )
    .await;
}
