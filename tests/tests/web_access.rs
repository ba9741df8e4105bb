//! Web accounts, roles and sessions through the real API: each built-in role and a custom one
//! allowed and refused what its grants say (enforced in the API, not only hidden in the portal);
//! portal sessions by cookie with CSRF, a forced first password change, working through every node
//! and signed out everywhere at once; a TOTP second factor that a code is accepted for once; and
//! the account rules that keep an admin in the cluster.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::time::Duration;

use hmac::{Hmac, Mac as _};
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha1::Sha1;

use pbx_tests::Lab;
use pbx_tests::api::{call, create, send};

const PASSWORD: &str = "Quiet-Harbor-42x";

async fn status_as(lab: &Lab, user: &str, method: Method, path: &str, body: Option<Value>) -> u16 {
    let mut req = lab.anon(0, method, path).basic_auth(user, Some(PASSWORD));
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap().status().as_u16()
}

/// A web account with the test password, not asked to change it (Basic auth scripts).
async fn account(lab: &Lab, username: &str, role: &str, extension: Option<&str>) {
    create(
        lab,
        "/api/v1/accounts",
        json!({"username": username, "role": role, "extension": extension,
               "password": PASSWORD, "must_change_password": false}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_is_allowed_and_refused_what_its_grants_say() {
    let lab = Lab::start(1).await.unwrap();
    for n in ["1001", "1002"] {
        create(
            &lab,
            "/api/v1/extensions",
            json!({"number": n, "display_name": format!("Ext {n}")}),
        )
        .await;
    }
    account(&lab, "olga", "operator", None).await;
    account(&lab, "1001", "user", Some("1001")).await;
    create(
        &lab,
        "/api/v1/roles",
        json!({"name": "helpdesk", "description": "adds phones",
               "grants": {"extensions": true, "routing": false, "security": false, "monitor": false,
                          "hang_up": false, "cdrs": "none", "recordings": "none"}}),
    )
    .await;
    account(&lab, "hank", "helpdesk", None).await;

    let new_ext = || Some(json!({"number": "1999", "display_name": "New"}));
    let get = Method::GET;
    // (user, method, path, body, expected)
    let cases: Vec<(&str, Method, &str, Option<Value>, u16)> = vec![
        ("olga", get.clone(), "/api/v1/calls", None, 200),
        ("olga", get.clone(), "/api/v1/cdrs", None, 200),
        ("olga", get.clone(), "/api/v1/cluster/status", None, 200),
        ("olga", get.clone(), "/api/v1/registrations", None, 200),
        ("olga", Method::POST, "/api/v1/extensions", new_ext(), 403),
        ("olga", get.clone(), "/api/v1/trunks", None, 403),
        ("olga", get.clone(), "/api/v1/firewall/rules", None, 403),
        ("olga", get.clone(), "/api/v1/accounts", None, 403),
        (
            "olga",
            Method::DELETE,
            "/api/v1/cluster/members/2",
            None,
            403,
        ),
        ("1001", get.clone(), "/api/v1/cdrs", None, 200),
        (
            "1001",
            get.clone(),
            "/api/v1/cdrs?extension=1001",
            None,
            200,
        ),
        (
            "1001",
            get.clone(),
            "/api/v1/cdrs?extension=1002",
            None,
            404,
        ),
        ("1001", get.clone(), "/api/v1/calls", None, 403),
        ("1001", get.clone(), "/api/v1/extensions", None, 403),
        ("1001", get.clone(), "/api/v1/account", None, 200),
        ("1001", get.clone(), "/api/v1/live", None, 403),
        ("hank", Method::POST, "/api/v1/extensions", new_ext(), 201),
        ("hank", get.clone(), "/api/v1/cdrs", None, 403),
        ("hank", get.clone(), "/api/v1/trunks", None, 403),
        ("hank", get.clone(), "/api/v1/roles", None, 403),
        (
            "hank",
            Method::POST,
            "/api/v1/accounts",
            Some(json!({"username": "x", "role": "admin"})),
            403,
        ),
    ];
    for (user, method, path, body, expected) in cases {
        let got = status_as(&lab, user, method.clone(), path, body).await;
        assert_eq!(got, expected, "{user} {method} {path}");
    }

    // The account rules are the state machine's: the last enabled admin stays.
    let (s, body) = call(
        &lab,
        Method::PATCH,
        "/api/v1/accounts/admin",
        Some(json!({"role": "operator"})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("last enabled admin")
    );
    let (s, _) = call(&lab, Method::DELETE, "/api/v1/accounts/admin", None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    // A role in use cannot go; an unknown role or extension is the field's fault.
    let (s, _) = call(&lab, Method::DELETE, "/api/v1/roles/helpdesk", None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, body) = call(
        &lab,
        Method::POST,
        "/api/v1/accounts",
        Some(json!({"username": "z", "role": "nosuch"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().starts_with("role:"),
        "{body}"
    );
    let (s, body) = call(
        &lab,
        Method::POST,
        "/api/v1/accounts",
        Some(json!({"username": "z", "role": "user", "extension": "4444"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    // A weak chosen password is refused with the policy's reason; a generated one is shown once.
    let (s, body) = call(
        &lab,
        Method::POST,
        "/api/v1/accounts",
        Some(json!({"username": "weak", "role": "user", "password": "password1"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().starts_with("password:"),
        "{body}"
    );
    let made = create(
        &lab,
        "/api/v1/accounts",
        json!({"username": "gen", "role": "operator"}),
    )
    .await;
    assert!(made["password"].as_str().unwrap().len() >= 10);
    assert_eq!(made["must_change_password"], true);
    let again = send(
        &lab,
        Method::GET,
        "/api/v1/accounts/gen",
        Value::Null,
        StatusCode::OK,
    )
    .await;
    assert!(again.get("password").is_none(), "shown once: {again}");

    // A disabled account signs in nowhere.
    send(
        &lab,
        Method::PATCH,
        "/api/v1/accounts/olga",
        json!({"disabled": true}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        status_as(&lab, "olga", Method::GET, "/api/v1/calls", None).await,
        401
    );
}

/// The `pbx_session` cookie a sign-in set, and its attributes.
fn session_cookie(resp: &reqwest::Response) -> (String, String) {
    let set = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("pbx_session="))
        .expect("a session cookie");
    let value = set.split(';').next().unwrap().to_owned();
    (value, set)
}

async fn sign_in(lab: &Lab, node: usize, user: &str, password: &str) -> (String, Value) {
    let resp = lab
        .anon(node, Method::POST, "/api/v1/session")
        .json(&json!({"username": user, "password": password, "cookie": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (cookie, attrs) = session_cookie(&resp);
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(attrs.contains(attr), "{attrs}");
    }
    let body: Value = resp.json().await.unwrap();
    assert!(
        body.get("token").is_none(),
        "the cookie session's token stays out of scripts' reach"
    );
    (cookie, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_sessions_need_csrf_a_first_password_change_and_end_everywhere() {
    let lab = Lab::start(3).await.unwrap();
    let made = create(
        &lab,
        "/api/v1/accounts",
        json!({"username": "ann", "role": "admin"}),
    )
    .await;
    let first = made["password"].as_str().unwrap().to_owned();

    let (cookie, body) = sign_in(&lab, 0, "ann", &first).await;
    assert_eq!(body["must_change_password"], true);
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let with = |node: usize, method: Method, path: &str| {
        lab.anon(node, method, path).header(COOKIE, cookie.clone())
    };
    // Nothing but the password change until it is done.
    let r = with(0, Method::GET, "/api/v1/extensions")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "password_change_required"
    );
    let change = json!({"current_password": first, "new_password": PASSWORD});
    // A state-changing request without (or with a wrong) CSRF token is refused.
    let r = with(0, Method::POST, "/api/v1/account/password")
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "csrf");
    let r = with(0, Method::POST, "/api/v1/account/password")
        .header("x-csrf-token", "0".repeat(32))
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = with(0, Method::POST, "/api/v1/account/password")
        .header("x-csrf-token", &csrf)
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());

    // The same session works through the other nodes, reads and writes.
    for node in [1, 2] {
        let r = with(node, Method::GET, "/api/v1/extensions")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "node {node}");
    }
    let r = with(2, Method::POST, "/api/v1/extensions")
        .header("x-csrf-token", &csrf)
        .json(&json!({"number": "2001", "display_name": "<script>alert(1)</script>"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // Every answer forbids framing and inline scripts.
    let r = with(1, Method::GET, "/api/v1/session")
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");

    // Signing out through node 1 ends the session on every node.
    let r = with(1, Method::DELETE, "/api/v1/session")
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for node in [0, 2] {
        let mut status = 0;
        for _ in 0..40 {
            status = with(node, Method::GET, "/api/v1/extensions")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            if status == 401 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            status, 401,
            "node {node} still accepts a signed-out session"
        );
    }
    // A forged or tampered cookie opens nothing.
    let forged = format!("{}0", cookie);
    let r = lab
        .anon(0, Method::GET, "/api/v1/extensions")
        .header(COOKIE, forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

fn totp_now(secret_b32: &str) -> (String, u64) {
    let mut bits = 0u32;
    let mut buf = 0u64;
    let mut key = Vec::new();
    for c in secret_b32.bytes() {
        let v = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
            .iter()
            .position(|&a| a == c)
            .unwrap() as u64;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            key.push((buf >> bits) as u8);
        }
    }
    let step = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 30;
    let mut mac = <Hmac<Sha1>>::new_from_slice(&key).unwrap();
    mac.update(&step.to_be_bytes());
    let d = mac.finalize().into_bytes();
    let o = usize::from(d[19] & 0x0f);
    let v = u32::from_be_bytes([d[o] & 0x7f, d[o + 1], d[o + 2], d[o + 3]]) % 1_000_000;
    (format!("{v:06}"), step)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_totp_code_is_needed_after_enrolment_and_counts_once() {
    let lab = Lab::start(1).await.unwrap();
    account(&lab, "tess", "admin", None).await;
    let login = |code: Option<String>| {
        let mut body = json!({"username": "tess", "password": PASSWORD});
        if let Some(c) = code {
            body["totp_code"] = json!(c);
        }
        lab.anon(0, Method::POST, "/api/v1/session")
            .json(&body)
            .send()
    };
    let token = login(None).await.unwrap().json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = |m: Method, p: &str| lab.anon(0, m, p).bearer_auth(&token);
    // Policy requires a second factor of admins: until tess has one, her session may only enrol.
    send(
        &lab,
        Method::PUT,
        "/api/v1/web/policy",
        json!({"require_admin_totp": true, "idle_minutes": 30}),
        StatusCode::OK,
    )
    .await;
    let r = auth(Method::GET, "/api/v1/extensions")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "totp_enrolment_required"
    );
    let enrol: Value = auth(Method::POST, "/api/v1/account/totp")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = enrol["secret"].as_str().unwrap().to_owned();
    assert!(
        enrol["uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    let r = auth(Method::POST, "/api/v1/account/totp/confirm")
        .json(&json!({"code": "000000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "a wrong code does not enrol"
    );
    let (code, _) = totp_now(&secret);
    let r = auth(Method::POST, "/api/v1/account/totp/confirm")
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = auth(Method::GET, "/api/v1/extensions")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "enrolled: the session is no longer restricted"
    );

    // Now the password alone is not enough, and Basic auth (no code to give) is refused.
    let r = login(None).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "totp_required");
    assert_eq!(
        status_as(&lab, "tess", Method::GET, "/api/v1/calls", None).await,
        401
    );
    // The enrolment code was accepted for its step: wait for the next step to get a fresh code.
    let (_, enrolled_step) = totp_now(&secret);
    let mut fresh = totp_now(&secret);
    while fresh.1 == enrolled_step {
        tokio::time::sleep(Duration::from_millis(500)).await;
        fresh = totp_now(&secret);
    }
    let r = login(Some("123456".into())).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "a wrong code");
    let r = login(Some(fresh.0.clone())).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = login(Some(fresh.0.clone())).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the same code twice");

    // An admin resets a lost second factor; the password alone works again.
    send(
        &lab,
        Method::PATCH,
        "/api/v1/accounts/tess",
        json!({"reset_totp": true}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(login(None).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_import_from_csv_with_a_report_per_bad_row() {
    let lab = Lab::start(1).await.unwrap();
    // The realm can change only before extensions exist.
    send(
        &lab,
        Method::PUT,
        "/api/v1/system",
        json!({"realm": "acme.example", "time_zone": "Europe/Paris"}),
        StatusCode::OK,
    )
    .await;
    let csv = "number,display_name,permission_group\n\
               3001,Ann,internal\n\
               30x2,Bob,internal\n\
               3003,Cy,internal\n\
               3001,Dup,internal\n";
    let r = lab
        .req(0, Method::POST, "/api/v1/extensions/import")
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["created"], 2, "{report}");
    let lines: Vec<u64> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 5], "{report}");
    assert!(report["extensions"][0]["generated_secret"].is_string());
    // Importing again: every row is now a taken number, reported, nothing created.
    let r = lab
        .req(0, Method::POST, "/api/v1/extensions/import")
        .header("content-type", "text/csv")
        .body("number,display_name\n3003,Again\n")
        .send()
        .await
        .unwrap();
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["created"], 0);
    assert!(
        report["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{report}"
    );
    let (s, body) = call(
        &lab,
        Method::PUT,
        "/api/v1/system",
        Some(json!({"realm": "other.example"})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let sys = send(
        &lab,
        Method::GET,
        "/api/v1/system",
        Value::Null,
        StatusCode::OK,
    )
    .await;
    assert_eq!(sys["realm"], "acme.example");
    assert_eq!(sys["time_zone"], "Europe/Paris");
}
