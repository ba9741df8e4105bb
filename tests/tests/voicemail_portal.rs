//! Voicemail in the portal, in a real browser (headless Chromium over WebDriver) against a one-node
//! cluster: the admin creates an extension's mailbox from the extensions page (limits and a PIN);
//! the extension's user, on their own page, changes the e-mail and ring time, is told why a weak
//! PIN is refused and sets a good one, and uploads a greeting the mailbox then plays when busy —
//! every other setting kept as it was.
//!
//! The pages are saved as `target/screenshots/voicemail-<page>.png`.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use reqwest::Method;
use serde_json::{Value, json};

use pbx_tests::Lab;
use pbx_tests::api::{PASSWORD, call, create};
use pbx_tests::browser::Browser;

/// How long a page or a change may take to show.
const WAIT: Duration = Duration::from_secs(10);
const MAILBOX: &str = "/api/v1/extensions/1001/voicemail";

/// A WAV file: 16-bit PCM mono at 8 kHz, one second of a 440 Hz tone.
fn wav() -> Vec<u8> {
    let rate = 8000u32;
    let data_len = rate * 2;
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
    for n in 0..rate {
        let t = f64::from(n) / f64::from(rate);
        let s = (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

async fn shot(b: &Browser, page: &str) -> anyhow::Result<()> {
    let path = b.screenshot(&format!("voicemail-{page}")).await?;
    eprintln!("screenshot: {}", path.display());
    Ok(())
}

/// The mailbox as the admin reads it, once `done` accepts it (waiting up to [`WAIT`]).
async fn mailbox_when(lab: &Lab, done: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, got) = call(lab, Method::GET, MAILBOX, None).await;
        if done(&got) {
            return Ok(got);
        }
        ensure!(
            Instant::now() < deadline,
            "the mailbox never became what was wanted: {got}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs in through the sign-in page, going on to `target`.
async fn sign_in(
    b: &Browser,
    base: &str,
    target: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<()> {
    b.goto(&format!("{base}/login?next={target}")).await?;
    b.wait_for_css("#login-form", WAIT).await?;
    b.fill("#login-username", user).await?;
    b.fill("#login-password", password).await?;
    b.click("#login-submit").await?;
    let deadline = Instant::now() + WAIT;
    loop {
        let url = b.url().await?;
        if !url.contains("/login") {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "still signing in as {user}: {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voicemail_in_the_admin_and_user_pages() -> anyhow::Result<()> {
    let lab = Lab::start(1).await?;
    let base = lab.nodes[0].api_url();
    create(
        &lab,
        "/api/v1/extensions",
        json!({"number": "1001", "display_name": "Una"}),
    )
    .await;
    create(
        &lab,
        "/api/v1/accounts",
        json!({"username": "una", "role": "user", "extension": "1001",
               "password": PASSWORD, "must_change_password": false}),
    )
    .await;
    let b = Browser::start().await?;

    // ---- The admin creates the mailbox from the extensions page, with limits and a PIN.
    sign_in(&b, &base, "/extensions", "admin", &lab.admin_password).await?;
    b.wait_for_css("#ext-row-1001", WAIT).await?;
    b.click("#ext-row-1001 .ext-voicemail-open").await?;
    let form = "#ext-row-1001 .ext-voicemail";
    b.wait_for_text(form, "No mailbox yet", WAIT).await?;
    b.fill(&format!("{form} input[name=max_messages]"), "50")
        .await?;
    b.fill(&format!("{form} input[name=pin]"), "402913").await?;
    shot(&b, "admin-form").await?;
    b.click_and_wait_for_load(&format!("{form} button[type=submit]"), WAIT)
        .await?;
    let m = mailbox_when(&lab, |m| m["has_pin"] == true).await?;
    assert_eq!(
        (&m["max_messages"], &m["ring_secs"]),
        (&json!(50), &json!(20)),
        "{m}"
    );
    b.click("#logout").await?;
    let deadline = Instant::now() + WAIT;
    while !b.url().await?.contains("/login") {
        ensure!(
            Instant::now() < deadline,
            "signing out did not end at /login"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // ---- The user's own page: no messages yet, the settings as stored.
    sign_in(&b, &base, "/me", "una", PASSWORD).await?;
    b.wait_for_css("#me-voicemail", WAIT).await?;
    b.wait_for_text("#voicemail-table", "No messages.", WAIT)
        .await?;
    ensure!(b.text("#voicemail-has-pin").await?.contains("set"));
    b.execute("document.querySelector('#me-voicemail').scrollIntoView(); return true")
        .await?;
    shot(&b, "me").await?;

    // Settings: the e-mail and ring time change, the admin's limits and the PIN stay.
    b.fill("#voicemail-email", "una@example.com").await?;
    b.fill("#voicemail-ring", "45").await?;
    b.click_and_wait_for_load("#voicemail-settings-submit", WAIT)
        .await?;
    let m = mailbox_when(&lab, |m| m["ring_secs"] == 45).await?;
    assert_eq!(m["email"], "una@example.com");
    assert_eq!(
        (&m["max_messages"], &m["has_pin"]),
        (&json!(50), &json!(true)),
        "{m}"
    );

    // A weak PIN is refused beside its field; a repeat that differs is pointed out; a good one is set.
    b.wait_for_css("#voicemail-pin-new", WAIT).await?;
    b.fill("#voicemail-pin-new", "123456").await?;
    b.fill("#voicemail-pin-repeat", "123456").await?;
    b.click("#voicemail-pin-submit").await?;
    b.wait_for_text("#voicemail-pin .field-error", "run of digits", WAIT)
        .await?;
    b.fill("#voicemail-pin-new", "813572").await?;
    b.fill("#voicemail-pin-repeat", "813570").await?;
    b.click("#voicemail-pin-submit").await?;
    b.wait_for_text("#voicemail-pin .field-error", "does not match", WAIT)
        .await?;
    let before = mailbox_when(&lab, |_| true).await?;
    b.fill("#voicemail-pin-repeat", "813572").await?;
    b.click_and_wait_for_load("#voicemail-pin-submit", WAIT)
        .await?;
    let m = mailbox_when(&lab, |m| m["updated_at"] != before["updated_at"]).await?;
    assert_eq!(
        (&m["ring_secs"], &m["email"]),
        (&json!(45), &json!("una@example.com")),
        "{m}"
    );

    // A greeting for when busy: uploaded, then the mailbox plays it.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("busy.wav");
    std::fs::write(&file, wav())?;
    b.wait_for_css("#voicemail-greeting-file", WAIT).await?;
    b.client()
        .execute(
            "document.querySelector('#voicemail-greeting-use').value = 'greeting_busy'; return true",
            Vec::new(),
        )
        .await?;
    b.wait_for_css("#voicemail-greeting-file", WAIT)
        .await?
        .send_keys(file.to_str().context("a UTF-8 path")?)
        .await?;
    b.click_and_wait_for_load("#voicemail-greeting-submit", WAIT)
        .await?;
    let m = mailbox_when(&lab, |m| m["greeting_busy"].is_string()).await?;
    let id = m["greeting_busy"].as_str().unwrap().to_owned();
    assert_eq!(m["greeting_unavailable"], Value::Null);
    assert_eq!(
        (&m["ring_secs"], &m["max_messages"]),
        (&json!(45), &json!(50)),
        "{m}"
    );
    let (_, file) = call(&lab, Method::GET, &format!("/api/v1/audio/{id}"), None).await;
    assert_eq!(
        (&file["kind"], &file["owner"], &file["name"]),
        (&json!("greeting"), &json!("1001"), &json!("busy"))
    );
    b.wait_for_css(
        &format!("#voicemail-greeting_busy audio[src='/api/v1/audio/{id}/content']"),
        WAIT,
    )
    .await?;
    b.execute("document.querySelector('#voicemail-greetings').scrollIntoView(); return true")
        .await?;
    shot(&b, "me-greeting").await?;

    // Back to a beep.
    b.click("#voicemail-greeting_busy .voicemail-greeting-remove")
        .await?;
    let m = mailbox_when(&lab, |m| m["greeting_busy"].is_null()).await?;
    assert_eq!(m["has_pin"], true);
    b.close().await?;
    Ok(())
}
