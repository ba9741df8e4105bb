//! The call-feature API on a real one-node cluster: a user sets do-not-disturb and forwarding on
//! their own extension but not on another's; ring groups created, replaced and deleted, with the
//! state machine's refusals worded (a number that is an extension's, a missing member, a group an
//! inbound route still sends calls to); bad bodies refused naming the field; feature codes read by
//! anyone and changed only with the grant and without clashes; pickup groups created, replaced and
//! deleted (members must exist, a deleted extension leaves its groups) and pickup codes that never
//! clash with the feature codes; every change in the audit log; and the portal pages that show them.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use pbx_tests::Lab;
use pbx_tests::api::{PASSWORD, as_user, expect_error};
use pbx_tests::api::{call, create, inbound_to_extension, send};

/// A portal page's HTML as `user` (Basic auth works for pages as for the API).
async fn page(lab: &Lab, user: &str, password: &str, path: &str) -> (StatusCode, String) {
    let resp = lab
        .anon(0, Method::GET, path)
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_features_through_the_api_and_the_portal() {
    let lab = Lab::start(1).await.unwrap();
    for n in ["1001", "1002", "1003"] {
        create(
            &lab,
            "/api/v1/extensions",
            json!({"number": n, "display_name": format!("Ext {n}")}),
        )
        .await;
    }
    create(
        &lab,
        "/api/v1/accounts",
        json!({"username": "una", "role": "user", "extension": "1001",
               "password": PASSWORD, "must_change_password": false}),
    )
    .await;

    // ---- Call handling: the user's own extension, and only that one.
    let before = as_user(
        &lab,
        "una",
        Method::GET,
        "/api/v1/extensions/1001/handling",
        None,
    )
    .await;
    assert_eq!(before.0, StatusCode::OK, "{}", before.1);
    assert_eq!(before.1["dnd"], false);
    assert_eq!(before.1["no_answer_secs"], 20, "the default");
    assert!(before.1["forward_busy"].is_null(), "{}", before.1);
    let mine = as_user(
        &lab,
        "una",
        Method::PUT,
        "/api/v1/extensions/1001/handling",
        Some(
            json!({"dnd": true, "forward_busy": "1002", "forward_no_answer": "+4930123456",
                    "no_answer_secs": 15, "forward_always": ""}),
        ),
    )
    .await;
    assert_eq!(mine.0, StatusCode::OK, "{}", mine.1);
    let (s, got) = as_user(
        &lab,
        "una",
        Method::GET,
        "/api/v1/extensions/1001/handling",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["dnd"], true);
    assert_eq!(got["forward_busy"], "1002");
    assert_eq!(got["forward_no_answer"], "+4930123456");
    assert!(got["forward_always"].is_null(), "empty is unset: {got}");
    assert_eq!(got["no_answer_secs"], 15);
    assert!(got["updated_at"].as_u64().unwrap() > 0);
    // The GET answer written back is a valid body.
    let again = as_user(
        &lab,
        "una",
        Method::PUT,
        "/api/v1/extensions/1001/handling",
        Some(got.clone()),
    )
    .await;
    assert_eq!(again.0, StatusCode::OK, "{}", again.1);
    for method in [Method::GET, Method::PUT] {
        let body = (method == Method::PUT).then(|| json!({"dnd": true}));
        let other = as_user(
            &lab,
            "una",
            method.clone(),
            "/api/v1/extensions/1002/handling",
            body,
        )
        .await;
        assert_eq!(other.0, StatusCode::FORBIDDEN, "{method}: {}", other.1);
    }
    // The admin (grant `extensions`) reads and sets anyone's; the user's change is there.
    let (s, admin_view) = call(&lab, Method::GET, "/api/v1/extensions/1001/handling", None).await;
    assert_eq!((s, &admin_view["dnd"]), (StatusCode::OK, &json!(true)));
    send(
        &lab,
        Method::PUT,
        "/api/v1/extensions/1002/handling",
        json!({"forward_unregistered": "1003"}),
        StatusCode::OK,
    )
    .await;
    expect_error(
        &call(&lab, Method::GET, "/api/v1/extensions/1999/handling", None).await,
        StatusCode::NOT_FOUND,
        &["extension 1999 does not exist"],
    );
    expect_error(
        &call(
            &lab,
            Method::PUT,
            "/api/v1/extensions/1999/handling",
            Some(json!({"dnd": true})),
        )
        .await,
        StatusCode::NOT_FOUND,
        &["1999"],
    );
    // Bad bodies name their field.
    let bad_handling = [
        (json!({"forward_busy": "12a"}), "forward_busy"),
        (json!({"forward_always": "1001"}), "forward_always"),
        (json!({"no_answer_secs": 3}), "no_answer_secs"),
        (json!({"no_answer_secs": "soon"}), "no_answer_secs"),
        (json!({"dnd": "yes"}), "dnd"),
        (json!({"forward_everything": "1002"}), "forward_everything"),
    ];
    for (body, field) in bad_handling {
        let got = as_user(
            &lab,
            "una",
            Method::PUT,
            "/api/v1/extensions/1001/handling",
            Some(body.clone()),
        )
        .await;
        expect_error(&got, StatusCode::BAD_REQUEST, &[field]);
    }

    // ---- Ring groups (grant `extensions`).
    let sales = json!({"number": "600", "name": "Sales", "strategy": "hunt",
                       "members": ["1001", "1002"], "ring_secs": 15});
    let made = create(&lab, "/api/v1/ring-groups", sales.clone()).await;
    assert_eq!(made["strategy"], "hunt");
    assert_eq!(made["members"], json!(["1001", "1002"]));
    assert!(made["no_answer"].is_null());
    expect_error(
        &call(
            &lab,
            Method::POST,
            "/api/v1/ring-groups",
            Some(sales.clone()),
        )
        .await,
        StatusCode::CONFLICT,
        &["ring group 600 already exists"],
    );
    expect_error(
        &call(
            &lab,
            Method::POST,
            "/api/v1/ring-groups",
            Some(json!({"number": "1003", "name": "Clash", "members": ["1001"]})),
        )
        .await,
        StatusCode::CONFLICT,
        &["1003 is an extension's number"],
    );
    expect_error(
        &call(
            &lab,
            Method::POST,
            "/api/v1/ring-groups",
            Some(json!({"number": "601", "name": "Ghosts", "members": ["1001", "1999"]})),
        )
        .await,
        StatusCode::NOT_FOUND,
        &["extension 1999 does not exist"],
    );
    expect_error(
        &call(
            &lab,
            Method::POST,
            "/api/v1/ring-groups",
            Some(json!({"number": "601", "name": "Lost", "members": ["1001"], "no_answer": "699"})),
        )
        .await,
        StatusCode::NOT_FOUND,
        &["no_answer", "699"],
    );
    let bad_groups = [
        (
            json!({"number": "6", "name": "S", "members": ["1001"]}),
            "number",
        ),
        (json!({"name": "S", "members": ["1001"]}), "number"),
        (
            json!({"number": "602", "name": "", "members": ["1001"]}),
            "name",
        ),
        (
            json!({"number": "602", "name": "S", "members": []}),
            "members",
        ),
        (
            json!({"number": "602", "name": "S", "members": ["1001", "1001"]}),
            "members[1]",
        ),
        (
            json!({"number": "602", "name": "S", "members": ["1001"], "strategy": "random"}),
            "strategy",
        ),
        (
            json!({"number": "602", "name": "S", "members": ["1001"], "ring_secs": 500}),
            "ring_secs",
        ),
        (
            json!({"number": "602", "name": "S", "members": ["1001"], "no_answer": "602"}),
            "no_answer",
        ),
    ];
    for (body, field) in bad_groups {
        let got = call(
            &lab,
            Method::POST,
            "/api/v1/ring-groups",
            Some(body.clone()),
        )
        .await;
        expect_error(&got, StatusCode::BAD_REQUEST, &[field]);
    }
    // A second group falls back to the first; the first is replaced.
    create(
        &lab,
        "/api/v1/ring-groups",
        json!({"number": "601", "name": "Support", "members": ["1003"], "no_answer": "600"}),
    )
    .await;
    let replaced = send(
        &lab,
        Method::PUT,
        "/api/v1/ring-groups/600",
        json!({"name": "Sales team", "members": ["1002", "1001", "1003"], "no_answer": "1003"}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(replaced["strategy"], "all", "a replace sets every field");
    assert_eq!(replaced["created_at"], made["created_at"]);
    let (s, one) = call(&lab, Method::GET, "/api/v1/ring-groups/600", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["name"], "Sales team");
    assert_eq!(one["members"], json!(["1002", "1001", "1003"]));
    let (_, list) = call(&lab, Method::GET, "/api/v1/ring-groups", None).await;
    let numbers: Vec<&str> = list["ring_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["number"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["600", "601"]);
    expect_error(
        &call(
            &lab,
            Method::PUT,
            "/api/v1/ring-groups/699",
            Some(json!({"name": "x", "members": ["1001"]})),
        )
        .await,
        StatusCode::NOT_FOUND,
        &["ring group 699 does not exist"],
    );
    expect_error(
        &call(
            &lab,
            Method::PUT,
            "/api/v1/ring-groups/600",
            Some(json!({"number": "605", "name": "x", "members": ["1001"]})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        &["number"],
    );
    // A user may not see or change ring groups.
    let refused = as_user(&lab, "una", Method::GET, "/api/v1/ring-groups", None).await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN);
    let refused = as_user(&lab, "una", Method::DELETE, "/api/v1/ring-groups/601", None).await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN);

    // An inbound route sends calls to 600: it cannot be deleted until the route goes.
    let mut route = inbound_to_extension("main", "+15550100", "1001");
    route["destination"] = json!({"type": "ring_group", "target": "600"});
    create(&lab, "/api/v1/routes/inbound", route).await;
    let mut lost = inbound_to_extension("lost", "+15550199", "1001");
    lost["destination"] = json!({"type": "ring_group", "target": "698"});
    expect_error(
        &call(&lab, Method::POST, "/api/v1/routes/inbound", Some(lost)).await,
        StatusCode::BAD_REQUEST,
        &["destination.target", "698"],
    );
    expect_error(
        &call(&lab, Method::DELETE, "/api/v1/ring-groups/600", None).await,
        StatusCode::CONFLICT,
        &["inbound route main"],
    );
    let (s, _) = call(&lab, Method::DELETE, "/api/v1/routes/inbound/main", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // Group 601 still falls back to 600.
    expect_error(
        &call(&lab, Method::DELETE, "/api/v1/ring-groups/600", None).await,
        StatusCode::CONFLICT,
        &["ring group 601"],
    );
    for n in ["601", "600"] {
        let (s, body) = call(
            &lab,
            Method::DELETE,
            &format!("/api/v1/ring-groups/{n}"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{n}: {body}");
    }
    expect_error(
        &call(&lab, Method::GET, "/api/v1/ring-groups/600", None).await,
        StatusCode::NOT_FOUND,
        &["ring group 600 does not exist"],
    );
    expect_error(
        &call(&lab, Method::DELETE, "/api/v1/ring-groups/600", None).await,
        StatusCode::NOT_FOUND,
        &["600"],
    );

    // ---- Feature codes: anyone reads, the grant changes, a clash is a 400.
    let (s, codes) = as_user(&lab, "una", Method::GET, "/api/v1/feature-codes", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        codes,
        json!({"dnd_on": "*78", "dnd_off": "*79", "forward_on": "*72", "forward_off": "*73"})
    );
    let new_codes =
        json!({"dnd_on": "*90", "dnd_off": "*91", "forward_on": "*92", "forward_off": "*93"});
    let refused = as_user(
        &lab,
        "una",
        Method::PUT,
        "/api/v1/feature-codes",
        Some(new_codes.clone()),
    )
    .await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN);
    let clash =
        json!({"dnd_on": "*78", "dnd_off": "*79", "forward_on": "*72", "forward_off": "*7"});
    expect_error(
        &call(&lab, Method::PUT, "/api/v1/feature-codes", Some(clash)).await,
        StatusCode::BAD_REQUEST,
        &["forward_off", "*7"],
    );
    let shape =
        json!({"dnd_on": "78", "dnd_off": "*79", "forward_on": "*72", "forward_off": "*73"});
    expect_error(
        &call(&lab, Method::PUT, "/api/v1/feature-codes", Some(shape)).await,
        StatusCode::BAD_REQUEST,
        &["dnd_on"],
    );
    expect_error(
        &call(
            &lab,
            Method::PUT,
            "/api/v1/feature-codes",
            Some(json!({"dnd_on": "*78"})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        &["dnd_off"],
    );
    send(
        &lab,
        Method::PUT,
        "/api/v1/feature-codes",
        new_codes.clone(),
        StatusCode::OK,
    )
    .await;
    let (_, codes) = as_user(&lab, "una", Method::GET, "/api/v1/feature-codes", None).await;
    assert_eq!(codes, new_codes);
    // *8 is the default group pickup code: no feature code may start with it.
    expect_error(
        &call(
            &lab,
            Method::PUT,
            "/api/v1/feature-codes",
            Some(
                json!({"dnd_on": "*80", "dnd_off": "*91", "forward_on": "*92", "forward_off": "*93"}),
            ),
        )
        .await,
        StatusCode::CONFLICT,
        &["dnd_on: *80", "group pickup code (*8)"],
    );

    // ---- Pickup codes: anyone reads, the grant changes, never clashing with a feature code.
    let (s, pickup_codes) = as_user(&lab, "una", Method::GET, "/api/v1/pickup-codes", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(pickup_codes, json!({"group": "*8", "directed": "**"}));
    let refused = as_user(
        &lab,
        "una",
        Method::PUT,
        "/api/v1/pickup-codes",
        Some(json!({"group": "#5", "directed": "#6"})),
    )
    .await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN);
    expect_error(
        &call(
            &lab,
            Method::PUT,
            "/api/v1/pickup-codes",
            Some(json!({"group": "*9", "directed": "**"})),
        )
        .await,
        StatusCode::CONFLICT,
        &["group: *9", "feature code dnd_on (*90)"],
    );
    let bad_pickup_codes = [
        (json!({"group": "5", "directed": "**"}), "group"),
        (json!({"group": "*8", "directed": "*8"}), "directed"),
        (json!({"group": "*85", "directed": "*8"}), "directed"),
        (json!({"group": "*8"}), "directed"),
        (
            json!({"group": "*8", "directed": "**", "transfer": "*2"}),
            "transfer",
        ),
    ];
    for (body, field) in bad_pickup_codes {
        let got = call(
            &lab,
            Method::PUT,
            "/api/v1/pickup-codes",
            Some(body.clone()),
        )
        .await;
        expect_error(&got, StatusCode::BAD_REQUEST, &[field]);
    }
    let (_, pickup_codes) = call(&lab, Method::GET, "/api/v1/pickup-codes", None).await;
    assert_eq!(pickup_codes["group"], "*8", "nothing refused was stored");
    send(
        &lab,
        Method::PUT,
        "/api/v1/pickup-codes",
        json!({"group": "#5", "directed": "#6"}),
        StatusCode::OK,
    )
    .await;
    let (_, pickup_codes) = as_user(&lab, "una", Method::GET, "/api/v1/pickup-codes", None).await;
    assert_eq!(pickup_codes, json!({"group": "#5", "directed": "#6"}));
    // The feature codes may now start with *8, but not with the new #5.
    expect_error(
        &call(
            &lab,
            Method::PUT,
            "/api/v1/feature-codes",
            Some(
                json!({"dnd_on": "*90", "dnd_off": "#50", "forward_on": "*92", "forward_off": "*93"}),
            ),
        )
        .await,
        StatusCode::CONFLICT,
        &["dnd_off: #50", "group pickup code (#5)"],
    );

    // ---- Pickup groups (grant `extensions`): PUT creates or replaces, members must exist.
    let (s, front) = call(
        &lab,
        Method::PUT,
        "/api/v1/pickup-groups/Front%20desk",
        Some(json!({"members": ["1001", "1002"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{front}");
    assert_eq!(front["name"], "Front desk");
    assert_eq!(front["members"], json!(["1001", "1002"]));
    let replaced = send(
        &lab,
        Method::PUT,
        "/api/v1/pickup-groups/Front%20desk",
        json!({"members": ["1002", "1003"]}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(replaced["created_at"], front["created_at"]);
    // The GET answer written back is a valid body; an extension may be in several groups.
    let (s, one) = call(
        &lab,
        Method::GET,
        "/api/v1/pickup-groups/Front%20desk",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["members"], json!(["1002", "1003"]));
    send(
        &lab,
        Method::PUT,
        "/api/v1/pickup-groups/Front%20desk",
        one,
        StatusCode::OK,
    )
    .await;
    create(
        &lab,
        "/api/v1/extensions",
        json!({"number": "1004", "display_name": "Ext 1004"}),
    )
    .await;
    send(
        &lab,
        Method::PUT,
        "/api/v1/pickup-groups/back_office",
        json!({"members": ["1001", "1004", "1002"]}),
        StatusCode::CREATED,
    )
    .await;
    expect_error(
        &call(
            &lab,
            Method::PUT,
            "/api/v1/pickup-groups/ghosts",
            Some(json!({"members": ["1001", "1999"]})),
        )
        .await,
        StatusCode::NOT_FOUND,
        &["members", "extension 1999 does not exist"],
    );
    let bad_pickup_groups = [
        ("ghosts", json!({"members": ["1001", "1001"]}), "members[1]"),
        ("ghosts", json!({"members": ["10a1"]}), "members[0]"),
        ("ghosts", json!({"members": "1001"}), "members"),
        ("ghosts", json!({"name": "spirits", "members": []}), "name"),
        (
            "ghosts",
            json!({"members": [], "strategy": "all"}),
            "strategy",
        ),
        ("bad.name", json!({"members": ["1001"]}), "name"),
        ("%20padded", json!({"members": ["1001"]}), "name"),
        (
            "abcdefghijklmnopqrstuvwxyz0123456",
            json!({"members": ["1001"]}),
            "name",
        ),
    ];
    for (name, body, field) in bad_pickup_groups {
        let got = call(
            &lab,
            Method::PUT,
            &format!("/api/v1/pickup-groups/{name}"),
            Some(body.clone()),
        )
        .await;
        expect_error(&got, StatusCode::BAD_REQUEST, &[field]);
    }
    let many: Vec<String> = (0..33).map(|i| format!("{}", 2000 + i)).collect();
    expect_error(
        &call(
            &lab,
            Method::PUT,
            "/api/v1/pickup-groups/ghosts",
            Some(json!({ "members": many })),
        )
        .await,
        StatusCode::BAD_REQUEST,
        &["members", "at most 32"],
    );
    let names = |list: &Value| -> Vec<String> {
        list["pickup_groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, list) = call(&lab, Method::GET, "/api/v1/pickup-groups", None).await;
    assert_eq!(names(&list), ["Front desk", "back_office"]);
    // A deleted extension leaves every group it was in.
    let (s, _) = call(&lab, Method::DELETE, "/api/v1/extensions/1004", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, back) = call(&lab, Method::GET, "/api/v1/pickup-groups/back_office", None).await;
    assert_eq!(back["members"], json!(["1001", "1002"]));
    // A user may not see or change pickup groups.
    for (method, path) in [
        (Method::GET, "/api/v1/pickup-groups"),
        (Method::GET, "/api/v1/pickup-groups/back_office"),
        (Method::DELETE, "/api/v1/pickup-groups/back_office"),
    ] {
        let refused = as_user(&lab, "una", method.clone(), path, None).await;
        assert_eq!(refused.0, StatusCode::FORBIDDEN, "{method} {path}");
    }
    let refused = as_user(
        &lab,
        "una",
        Method::PUT,
        "/api/v1/pickup-groups/mine",
        Some(json!({"members": ["1001"]})),
    )
    .await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN);
    let (s, body) = call(
        &lab,
        Method::DELETE,
        "/api/v1/pickup-groups/back_office",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    for method in [Method::GET, Method::DELETE] {
        expect_error(
            &call(&lab, method, "/api/v1/pickup-groups/back_office", None).await,
            StatusCode::NOT_FOUND,
            &["pickup group back_office does not exist"],
        );
    }
    let (_, list) = call(&lab, Method::GET, "/api/v1/pickup-groups", None).await;
    assert_eq!(names(&list), ["Front desk"]);

    // ---- Every change is audited, with who made it and what changed.
    let (_, audit) = call(&lab, Method::GET, "/api/v1/audit?limit=1000", None).await;
    let entries = audit["entries"].as_array().unwrap();
    let found = |actor: &str, needles: &[&str]| {
        entries.iter().any(|e| {
            let action = e["action"].as_str().unwrap_or_default();
            e["actor"] == actor && needles.iter().all(|n| action.contains(n))
        })
    };
    assert!(
        found(
            "una",
            &["PUT /api/v1/extensions/1001/handling", "dnd: false → true"]
        ),
        "{audit}"
    );
    assert!(
        found("admin", &["POST /api/v1/ring-groups", "created"]),
        "{audit}"
    );
    assert!(
        found("admin", &["DELETE /api/v1/ring-groups/600", "deleted"]),
        "{audit}"
    );
    assert!(
        found(
            "admin",
            &["PUT /api/v1/feature-codes", "dnd_on: \"*78\" → \"*90\""]
        ),
        "{audit}"
    );
    assert!(
        found(
            "admin",
            &["PUT /api/v1/pickup-codes", "group: \"*8\" → \"#5\""]
        ),
        "{audit}"
    );
    assert!(
        found(
            "admin",
            &[
                "PUT /api/v1/pickup-groups/back_office",
                "created",
                "members=[\"1001\",\"1004\",\"1002\"]"
            ]
        ),
        "{audit}"
    );
    assert!(
        found(
            "admin",
            &[
                "PUT /api/v1/pickup-groups/Front%20desk",
                "members: [\"1001\",\"1002\"] → [\"1002\",\"1003\"]"
            ]
        ),
        "{audit}"
    );
    assert!(
        found(
            "admin",
            &["DELETE /api/v1/pickup-groups/back_office", "deleted"]
        ),
        "{audit}"
    );
    assert!(
        !found("admin", &["PUT /api/v1/pickup-groups/ghosts"]),
        "a refused change has no entry"
    );

    // ---- The portal pages.
    create(
        &lab,
        "/api/v1/ring-groups",
        json!({"number": "700", "name": "Front <desk>", "members": ["1002"]}),
    )
    .await;
    let admin_pw = lab.admin_password.clone();
    let (s, html) = page(&lab, "admin", &admin_pw, "/ring-groups").await;
    assert_eq!(s, StatusCode::OK, "{html}");
    for needle in [
        "id=\"ring-groups-table\"",
        "id=\"ring-group-row-700\"",
        "Front &lt;desk&gt;",
        "id=\"ring-group-create\"",
        "id=\"feature-codes-form\"",
        "value=\"*90\"",
        "id=\"nav-ring-groups\"",
        "id=\"pickup-groups-table\"",
        "id=\"pickup-group-row-Front%20desk\"",
        "value=\"1002, 1003\"",
        "id=\"pickup-group-create\"",
        "id=\"pickup-codes-form\"",
        "value=\"#5\"",
    ] {
        assert!(html.contains(needle), "/ring-groups lacks {needle}");
    }
    let (s, html) = page(&lab, "admin", &admin_pw, "/extensions").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("data-api=\"PUT /api/v1/extensions/1001/handling\""));
    assert!(html.contains(">DND<"), "1001's do-not-disturb shows");
    let (s, html) = page(&lab, "admin", &admin_pw, "/routes").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("<option value=\"ring_group\">"));
    let (s, html) = page(&lab, "una", PASSWORD, "/me").await;
    assert_eq!(s, StatusCode::OK);
    for needle in [
        "id=\"me-handling-form\"",
        "id=\"me-dnd-toggle\"",
        "*90",
        "id=\"pickup-group-code\">#5<",
    ] {
        assert!(html.contains(needle), "/me lacks {needle}");
    }
    assert!(
        !html.contains("id=\"nav-ring-groups\""),
        "a user has no ring groups link"
    );
    let (s, _) = page(&lab, "una", PASSWORD, "/ring-groups").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}
