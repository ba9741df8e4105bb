//! The voicemail API on a real one-node cluster: a mailbox is created, read back (a PIN shows only
//! as `has_pin`, never its hash), replaced and deleted; weak PINs, bad e-mails and out-of-range
//! times are refused naming the field and the rule; an unknown extension is a 404. An extension's
//! own user reads and changes their mailbox (not its limits), uploads a greeting and points the
//! mailbox at it, and hears it; another user can do none of it. An empty mailbox lists no
//! messages, and an unknown message is a 404. A name greeting is set, kept by a PUT that leaves it
//! out, refused when it is not the extension's greeting, removed with `null`, and goes with the
//! mailbox.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use pbx_tests::Lab;
use pbx_tests::api::{PASSWORD, as_user, call, create, expect_error, send};

const PATH: &str = "/api/v1/extensions/1001/voicemail";
const MESSAGES: &str = "/api/v1/extensions/1001/voicemail/messages";

/// A WAV file: 16-bit PCM mono at 8 kHz, `secs` seconds of a 440 Hz tone.
fn wav(secs: u32) -> Vec<u8> {
    let rate = 8000u32;
    let data_len = rate * secs * 2;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for n in 0..rate * secs {
        let t = f64::from(n) / f64::from(rate);
        let s = (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Uploads `body` to `POST /api/v1/audio?{query}`, as admin (`user` `None`) or as web account `user`.
async fn upload(lab: &Lab, user: Option<&str>, query: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let path = format!("/api/v1/audio?{query}");
    let req = match user {
        None => lab.req(0, Method::POST, &path),
        Some(u) => lab
            .anon(0, Method::POST, &path)
            .basic_auth(u, Some(PASSWORD)),
    };
    let resp = req
        .header("content-type", "audio/wav")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Asserts that no answer shows a PIN's hash.
fn no_hash(v: &Value) {
    let text = v.to_string();
    assert!(
        !text.contains("pin_hash") && !text.contains("argon2"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voicemail_through_the_api() {
    let lab = Lab::start(1).await.unwrap();
    for n in ["1001", "1002"] {
        create(
            &lab,
            "/api/v1/extensions",
            json!({"number": n, "display_name": format!("Ext {n}")}),
        )
        .await;
    }

    // ---- No mailbox until one is created.
    expect_error(
        &call(&lab, Method::GET, PATH, None).await,
        StatusCode::NOT_FOUND,
        &["extension 1001 has no mailbox"],
    );
    expect_error(
        &call(&lab, Method::GET, MESSAGES, None).await,
        StatusCode::NOT_FOUND,
        &["has no mailbox"],
    );

    // ---- Created (201) with the defaults for what is not given; the PIN only as `has_pin`.
    let created = send(
        &lab,
        Method::PUT,
        PATH,
        json!({"pin": "402913", "email": "una@example.com", "ring_secs": 30}),
        StatusCode::CREATED,
    )
    .await;
    no_hash(&created);
    assert_eq!(created["extension"], "1001");
    assert_eq!(created["has_pin"], true);
    assert_eq!(created["enabled"], true);
    assert_eq!(created["email"], "una@example.com");
    assert_eq!(created["ring_secs"], 30);
    assert_eq!(created["max_message_secs"], 180);
    assert_eq!(created["max_messages"], 100);
    assert_eq!(created["greeting_unavailable"], Value::Null);
    assert_eq!(
        (&created["messages_total"], &created["messages_new"]),
        (&json!(0), &json!(0))
    );
    let (s, got) = call(&lab, Method::GET, PATH, None).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got, created);

    // ---- Replaced (200): every field but the PIN takes the body's or the default.
    let replaced = send(
        &lab,
        Method::PUT,
        PATH,
        json!({"ring_secs": 25, "enabled": false}),
        StatusCode::OK,
    )
    .await;
    no_hash(&replaced);
    assert_eq!(replaced["has_pin"], true, "an omitted PIN is kept");
    assert_eq!(replaced["email"], Value::Null);
    assert_eq!(
        (&replaced["ring_secs"], &replaced["enabled"]),
        (&json!(25), &json!(false))
    );
    assert_eq!(replaced["created_at"], created["created_at"]);
    // The GET answer written back is a valid body and keeps everything.
    let mut back = send(&lab, Method::PUT, PATH, replaced.clone(), StatusCode::OK).await;
    back["updated_at"] = replaced["updated_at"].clone();
    assert_eq!(back, replaced);
    // `null` removes the PIN; a new one sets it again.
    let got = send(
        &lab,
        Method::PUT,
        PATH,
        json!({"pin": null}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["has_pin"], false);
    let got = send(
        &lab,
        Method::PUT,
        PATH,
        json!({"pin": "8675309", "email": "una@example.com"}),
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["has_pin"], true);

    // ---- Weak PINs are refused with the rule they break.
    for (pin, rule) in [
        ("12345", "6 to 12 digits"),
        ("1234567890123", "6 to 12 digits"),
        ("12345a", "6 to 12 digits"),
        ("777777", "one digit repeated"),
        ("123456", "run of digits"),
        ("987654", "run of digits"),
        ("121212", "block of 2 or 3 digits repeated"),
        ("123123", "block of 2 or 3 digits repeated"),
    ] {
        expect_error(
            &call(&lab, Method::PUT, PATH, Some(json!({"pin": pin}))).await,
            StatusCode::BAD_REQUEST,
            &["pin: ", rule],
        );
    }
    // The extension's own number, on an extension whose number is long enough to be a PIN.
    create(
        &lab,
        "/api/v1/extensions",
        json!({"number": "402913", "display_name": "Long number"}),
    )
    .await;
    expect_error(
        &call(
            &lab,
            Method::PUT,
            "/api/v1/extensions/402913/voicemail",
            Some(json!({"pin": "402913"})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        &["pin: ", "extension's number"],
    );

    // ---- Other bad fields are refused naming the field; nothing changes.
    for (body, field, why) in [
        (
            json!({"email": "not an address"}),
            "email: ",
            "e-mail address",
        ),
        (
            json!({"email": "a@b@example.com"}),
            "email: ",
            "e-mail address",
        ),
        (
            json!({"email": format!("{}@example.com", "a".repeat(250))}),
            "email: ",
            "254",
        ),
        (json!({"ring_secs": 4}), "ring_secs: ", "5 to 120"),
        (json!({"ring_secs": 121}), "ring_secs: ", "5 to 120"),
        (json!({"ring_secs": "20"}), "ring_secs", "invalid type"),
        (
            json!({"max_message_secs": 5}),
            "max_message_secs: ",
            "10 to 600",
        ),
        (json!({"max_messages": 1001}), "max_messages: ", "1 to 1000"),
        (
            json!({"greeting_busy": "hello.wav"}),
            "greeting_busy: ",
            "audio file's id",
        ),
        (
            json!({"greeting_busy": "f".repeat(32)}),
            "greeting_busy: ",
            "does not exist",
        ),
        (json!({"extension": "1002"}), "extension: ", "differs"),
        (
            json!({"pin_hash": "$argon2id$x"}),
            "pin_hash",
            "unknown field",
        ),
    ] {
        expect_error(
            &call(&lab, Method::PUT, PATH, Some(body.clone())).await,
            StatusCode::BAD_REQUEST,
            &[field, why],
        );
    }
    let (_, got) = call(&lab, Method::GET, PATH, None).await;
    assert_eq!(
        (&got["ring_secs"], &got["has_pin"]),
        (&json!(20), &json!(true)),
        "{got}"
    );

    // ---- An unknown extension, a number no extension can have.
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let body = (method == Method::PUT).then(|| json!({}));
        expect_error(
            &call(&lab, method, "/api/v1/extensions/1999/voicemail", body).await,
            StatusCode::NOT_FOUND,
            &["extension 1999 does not exist"],
        );
    }
    expect_error(
        &call(&lab, Method::GET, "/api/v1/extensions/1x/voicemail", None).await,
        StatusCode::BAD_REQUEST,
        &["number"],
    );

    // ---- The extension's own user reads and changes their mailbox; another user cannot.
    for (user, ext) in [("una", "1001"), ("bob", "1002")] {
        create(
            &lab,
            "/api/v1/accounts",
            json!({"username": user, "role": "user", "extension": ext,
                   "password": PASSWORD, "must_change_password": false}),
        )
        .await;
    }
    let (s, mine) = as_user(&lab, "una", Method::GET, PATH, None).await;
    assert_eq!(s, StatusCode::OK, "{mine}");
    no_hash(&mine);
    let (s, mine) = as_user(
        &lab,
        "una",
        Method::PUT,
        PATH,
        Some(json!({"pin": "813572", "ring_secs": 40, "email": "una@example.com"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{mine}");
    assert_eq!(
        (&mine["ring_secs"], &mine["has_pin"]),
        (&json!(40), &json!(true))
    );
    expect_error(
        &as_user(
            &lab,
            "una",
            Method::PUT,
            PATH,
            Some(json!({"pin": "111111"})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        &["pin: ", "one digit repeated"],
    );
    // The limits are the administrator's.
    expect_error(
        &as_user(
            &lab,
            "una",
            Method::PUT,
            PATH,
            Some(json!({"max_messages": 1000})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        &["max_messages: ", "administrator"],
    );
    // Nor may the user delete the mailbox, or create one for an extension that has none.
    let (s, _) = as_user(&lab, "una", Method::DELETE, PATH, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = as_user(
        &lab,
        "bob",
        Method::PUT,
        "/api/v1/extensions/1002/voicemail",
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Another extension's user: nothing of 1001's.
    for (method, path, body) in [
        (Method::GET, PATH, None),
        (Method::PUT, PATH, Some(json!({"ring_secs": 60}))),
        (Method::DELETE, PATH, None),
        (Method::GET, MESSAGES, None),
    ] {
        let got = as_user(&lab, "bob", method.clone(), path, body).await;
        assert_eq!(got.0, StatusCode::FORBIDDEN, "{method} {path}: {}", got.1);
    }
    let (_, got) = call(&lab, Method::GET, PATH, None).await;
    assert_eq!(got["ring_secs"], 40, "the refused change changed nothing");

    // ---- A greeting: uploaded by the own user, counted as 1001's, the mailbox pointed at it.
    let greeting_wav = wav(1);
    let (s, greeting) = upload(
        &lab,
        Some("una"),
        "kind=greeting&owner=1001&name=Out%20of%20office",
        greeting_wav.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{greeting}");
    assert_eq!(
        (&greeting["kind"], &greeting["owner"]),
        (&json!("greeting"), &json!("1001"))
    );
    let greeting_id = greeting["id"].as_str().unwrap().to_owned();
    let (s, answer) = upload(&lab, Some("bob"), "kind=greeting&owner=1001&name=x", wav(1)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{answer}");
    for (query, why) in [
        ("kind=greeting&name=x", "owner"),
        ("kind=greeting&owner=1999&name=x", "1999"),
        ("kind=greeting&owner=abc&name=x", "owner"),
        ("kind=prompt&owner=1001&name=x", "owner"),
        ("kind=voicemail&owner=1001&name=x", "kind"),
    ] {
        let (s, answer) = upload(&lab, None, query, wav(1)).await;
        assert!(s.is_client_error(), "{query}: {s} {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(why),
            "{query}: {answer}"
        );
    }
    let (s, answer) = upload(
        &lab,
        Some("una"),
        "kind=greeting&owner=1001&name=x",
        b"no".to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{answer}");
    let (s, answer) = upload(&lab, Some("una"), "kind=prompt&name=x", wav(1)).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "a user uploads no prompt: {answer}"
    );

    let mut edited = mine.clone();
    edited["greeting_unavailable"] = json!(greeting_id);
    let (s, mine) = as_user(&lab, "una", Method::PUT, PATH, Some(edited)).await;
    assert_eq!(s, StatusCode::OK, "{mine}");
    assert_eq!(mine["greeting_unavailable"], greeting_id.as_str());
    assert_eq!(mine["has_pin"], true);
    let (_, got) = call(&lab, Method::GET, PATH, None).await;
    assert_eq!(got["greeting_unavailable"], greeting_id.as_str());
    // The user hears it; another user does not even see it.
    let resp = lab
        .anon(
            0,
            Method::GET,
            &format!("/api/v1/audio/{greeting_id}/content"),
        )
        .basic_auth("una", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &greeting_wav[..]);
    let (s, _) = as_user(
        &lab,
        "bob",
        Method::GET,
        &format!("/api/v1/audio/{greeting_id}/content"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Another extension's mailbox cannot play it.
    let (s, _) = call(
        &lab,
        Method::PUT,
        "/api/v1/extensions/1002/voicemail",
        Some(json!({"greeting_busy": greeting_id})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // While the mailbox plays it, it cannot be deleted.
    expect_error(
        &call(
            &lab,
            Method::DELETE,
            &format!("/api/v1/audio/{greeting_id}"),
            None,
        )
        .await,
        StatusCode::CONFLICT,
        &["greeting_unavailable", "1001"],
    );
    // A greeting counts against its extension's quota.
    send(
        &lab,
        Method::PUT,
        "/api/v1/audio-quotas",
        json!({"per_owner_bytes": greeting_wav.len() + 1000, "total_bytes": 1_000_000_000u64}),
        StatusCode::OK,
    )
    .await;
    let (s, answer) = upload(
        &lab,
        Some("una"),
        "kind=greeting&owner=1001&name=more",
        wav(1),
    )
    .await;
    assert_eq!(s, StatusCode::INSUFFICIENT_STORAGE, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("owner"),
        "{answer}"
    );
    send(
        &lab,
        Method::PUT,
        "/api/v1/audio-quotas",
        json!({"per_owner_bytes": 256u64 << 20, "total_bytes": 16u64 << 30}),
        StatusCode::OK,
    )
    .await;

    // ---- No messages yet; an unknown message is a 404 to mark or delete.
    let (s, list) = call(&lab, Method::GET, MESSAGES, None).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list, json!({"messages": [], "total": 0, "new": 0}));
    let (s, list) = as_user(&lab, "una", Method::GET, MESSAGES, None).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 0);
    let unknown = format!("{MESSAGES}/{}", "e".repeat(32));
    expect_error(
        &call(&lab, Method::PUT, &unknown, Some(json!({"heard": true}))).await,
        StatusCode::NOT_FOUND,
        &["voicemail message", "1001"],
    );
    expect_error(
        &as_user(&lab, "una", Method::DELETE, &unknown, None).await,
        StatusCode::NOT_FOUND,
        &["voicemail message"],
    );
    expect_error(
        &call(&lab, Method::DELETE, &format!("{MESSAGES}/not-an-id"), None).await,
        StatusCode::NOT_FOUND,
        &["voicemail message"],
    );
    expect_error(
        &call(&lab, Method::PUT, &unknown, Some(json!({}))).await,
        StatusCode::BAD_REQUEST,
        &["heard"],
    );
    let (s, _) = as_user(
        &lab,
        "bob",
        Method::PUT,
        &unknown,
        Some(json!({"heard": true})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // ---- Changes are audited; the PIN only as changed.
    let (_, audit) = call(&lab, Method::GET, "/api/v1/audit?limit=1000", None).await;
    let entries = audit["entries"].as_array().unwrap();
    let mailbox_changes: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .filter(|a| a.starts_with("PUT /api/v1/extensions/1001/voicemail"))
        .collect();
    assert!(
        mailbox_changes
            .iter()
            .any(|a| a.contains("created") && a.contains("pin_hash (secret) created")),
        "{mailbox_changes:?}"
    );
    assert!(
        mailbox_changes
            .iter()
            .any(|a| a.contains("ring_secs: 20 → 40") && a.contains("pin_hash (secret) changed")),
        "{mailbox_changes:?}"
    );
    assert!(!audit.to_string().contains("argon2"), "{audit}");
    assert!(
        entries.iter().any(|e| e["actor"] == "una"
            && e["action"]
                .as_str()
                .unwrap()
                .starts_with("POST /api/v1/audio")),
        "{audit}"
    );

    // ---- Deleted with its messages; then gone, and the greeting may go too.
    let (s, got) = call(&lab, Method::DELETE, PATH, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{got}");
    expect_error(
        &call(&lab, Method::GET, PATH, None).await,
        StatusCode::NOT_FOUND,
        &["has no mailbox"],
    );
    expect_error(
        &call(&lab, Method::DELETE, PATH, None).await,
        StatusCode::NOT_FOUND,
        &["has no mailbox"],
    );
    // The greetings the mailbox played went with it.
    let (s, got) = call(
        &lab,
        Method::GET,
        &format!("/api/v1/audio/{greeting_id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_greeting_is_set_kept_and_removed_beside_the_mailbox() {
    let lab = Lab::start(1).await.unwrap();
    for n in ["1001", "1002"] {
        create(
            &lab,
            "/api/v1/extensions",
            json!({"number": n, "display_name": format!("Ext {n}")}),
        )
        .await;
    }
    let upload_greeting = |owner: &'static str| {
        let lab = &lab;
        async move {
            let (s, file) = upload(
                lab,
                None,
                &format!("kind=greeting&owner={owner}&name=name"),
                wav(1),
            )
            .await;
            assert_eq!(s, StatusCode::CREATED, "{file}");
            file["id"].as_str().unwrap().to_owned()
        }
    };
    let name = upload_greeting("1001").await;
    let others = upload_greeting("1002").await;

    // Created with a name; the answer and a read show it.
    let created = send(
        &lab,
        Method::PUT,
        PATH,
        json!({"pin": "402913", "greeting_name": name}),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["greeting_name"], name.as_str(), "{created}");
    let (_, got) = call(&lab, Method::GET, PATH, None).await;
    assert_eq!(got["greeting_name"], name.as_str(), "{got}");

    // A PUT without the field (a form written before names existed) keeps it.
    let (s, got) = call(&lab, Method::PUT, PATH, Some(json!({"ring_secs": 40}))).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(
        (&got["greeting_name"], &got["ring_secs"]),
        (&json!(name), &json!(40))
    );

    // Another extension's greeting, a file that does not exist, a malformed id: 400 naming the
    // field, and nothing of the mailbox changed.
    for (bad, why) in [
        (json!(others), "not a greeting of extension 1001"),
        (json!("e".repeat(32)), "does not exist"),
        (json!("name.wav"), "32 lowercase hex digits"),
    ] {
        expect_error(
            &call(
                &lab,
                Method::PUT,
                PATH,
                Some(json!({"ring_secs": 60, "greeting_name": bad})),
            )
            .await,
            StatusCode::BAD_REQUEST,
            &["greeting_name: ", why],
        );
    }
    let (_, got) = call(&lab, Method::GET, PATH, None).await;
    assert_eq!(
        (&got["greeting_name"], &got["ring_secs"]),
        (&json!(name), &json!(40)),
        "refused changes changed nothing"
    );

    // While the mailbox plays it, it cannot be deleted.
    expect_error(
        &call(&lab, Method::DELETE, &format!("/api/v1/audio/{name}"), None).await,
        StatusCode::CONFLICT,
        &["greeting_name", "1001"],
    );

    // `null` removes it; then the file may go.
    let (s, got) = call(
        &lab,
        Method::PUT,
        PATH,
        Some(json!({"ring_secs": 40, "greeting_name": null})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["greeting_name"], Value::Null);
    let (s, got) = call(&lab, Method::DELETE, &format!("/api/v1/audio/{name}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{got}");

    // The extension's own user sets a new one; it is audited.
    let again = upload_greeting("1001").await;
    create(
        &lab,
        "/api/v1/accounts",
        json!({"username": "una", "role": "user", "extension": "1001",
               "password": PASSWORD, "must_change_password": false}),
    )
    .await;
    let (s, got) = as_user(
        &lab,
        "una",
        Method::PUT,
        PATH,
        Some(json!({"ring_secs": 40, "greeting_name": again})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["greeting_name"], again.as_str());
    let (_, audit) = call(&lab, Method::GET, "/api/v1/audit?limit=1000", None).await;
    assert!(
        audit
            .to_string()
            .contains(&format!("name greeting of mailbox 1001 set to {again}")),
        "{audit}"
    );

    // The mailbox deleted: its name and the name's file go with it; a new mailbox has none.
    let (s, _) = call(&lab, Method::DELETE, PATH, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(&lab, Method::GET, &format!("/api/v1/audio/{again}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let created = send(&lab, Method::PUT, PATH, json!({}), StatusCode::CREATED).await;
    assert_eq!(created["greeting_name"], Value::Null, "{created}");
}
