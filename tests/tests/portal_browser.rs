//! The web portal in a real browser (headless Chromium over WebDriver) against real clusters: what a
//! user notices. A new admin's first sign-in (forced password change, setup wizard, extensions whose
//! SIP secret is shown once and registers a phone), the live monitor following registrations and a
//! call without a reload, hanging the call up from the page, its CDR and CSV export; displayed input
//! that stays text, the API's validation message beside its field, each role's pages and the API's
//! refusals (grants, CSRF), the session cookie's attributes and signing out; and a session that works
//! through every node and through the VIP after its owner is killed. The same admin adds a desk
//! phone (its token shown once) and makes a backup from their pages.
//!
//! Every page visited is saved as `target/screenshots/portal-<page>.png`.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use fantoccini::Locator;
use fantoccini::wd::TimeoutConfiguration;
use reqwest::Method;
use serde_json::{Value, json};

use pbx_tests::api::{Admin as _, create, poll_node, wait_registered};
use pbx_tests::browser::Browser;
use pbx_tests::phone::{Answer, Dialog, Phone};
use pbx_tests::{Lab, LabOptions, topology};

/// How long a page or an update may take to show.
const WAIT: Duration = Duration::from_secs(10);
/// A password the policy accepts, for accounts the tests sign in with.
const PASSWORD: &str = "Quiet-Harbor-42x";
/// The SIP secret of extensions created through the API.
const SECRET: &str = "Tr7!kq-Vw9zP";
/// What a display name tries to inject.
const SCRIPT_NAME: &str = "<script>alert(1)</script>";

// ---- Helpers ---------------------------------------------------------------------------------

/// Saves the page as `portal-<page>`.
async fn shot(b: &Browser, page: &str) -> anyhow::Result<()> {
    let path = b.screenshot(&format!("portal-{page}")).await?;
    eprintln!("screenshot: {}", path.display());
    Ok(())
}

/// Runs `js` with `args` (`arguments[0]`, …); what it returned (a promise is waited for).
async fn js(b: &Browser, js: &str, args: Vec<Value>) -> anyhow::Result<Value> {
    b.client()
        .execute(js, args)
        .await
        .with_context(|| format!("running {:?}", js.trim().lines().next().unwrap_or_default()))
}

/// The rendered text of every element `selector` matches, in document order.
async fn texts(b: &Browser, selector: &str) -> anyhow::Result<Vec<String>> {
    let v = js(
        b,
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText.trim())",
        vec![json!(selector)],
    )
    .await?;
    Ok(serde_json::from_value(v)?)
}

/// The texts of `selector` once `done` accepts them, waiting up to `within` (the page may reload
/// or be re-rendered by the live stream meanwhile).
async fn wait_texts(
    b: &Browser,
    selector: &str,
    within: Duration,
    done: impl Fn(&[String]) -> bool,
) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + within;
    loop {
        let got = texts(b, selector).await;
        if let Ok(t) = &got
            && done(t)
        {
            return got;
        }
        if Instant::now() >= deadline {
            bail!(
                "{selector:?} never became what was wanted within {within:?} on {}: {got:?}",
                b.url().await.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The page's URL once `done` accepts it.
async fn wait_url(
    b: &Browser,
    within: Duration,
    done: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + within;
    loop {
        let url = b.url().await.unwrap_or_default();
        if done(&url) {
            return Ok(url);
        }
        ensure!(
            Instant::now() < deadline,
            "the page stayed at {url} for {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The path and query of `url` (`https://host:port/a?b` → `/a?b`).
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

/// Waits until the element `selector` matches is shown (its `hidden` attribute gone); its text.
async fn wait_shown(b: &Browser, selector: &str) -> anyhow::Result<String> {
    let shown = format!("{selector}:not([hidden])");
    b.wait_for_css(&shown, WAIT).await?;
    b.text(selector).await
}

/// The `value` of the input `selector` matches, as the page holds it now.
async fn value(b: &Browser, selector: &str) -> anyhow::Result<String> {
    let v = js(
        b,
        "return document.querySelector(arguments[0]).value",
        vec![json!(selector)],
    )
    .await?;
    Ok(v.as_str().unwrap_or_default().to_owned())
}

/// Clicks `selector`, again if the element was replaced under the click (the live monitor
/// re-renders its tables every second).
async fn click_fresh(b: &Browser, selector: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let err = match b.wait_for_css(selector, WAIT).await?.click().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        ensure!(Instant::now() < deadline, "clicking {selector:?}: {err}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of the browser's open alert or confirm dialog, waiting up to `within` for one.
async fn wait_dialog(b: &Browser, within: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + within;
    loop {
        match b.client().get_alert_text().await {
            Ok(text) => return Ok(text),
            Err(e) if Instant::now() >= deadline => bail!("no dialog opened: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// What a `fetch` made by the page answered.
#[derive(Debug)]
struct Fetched {
    status: u16,
    content_type: String,
    text: String,
}

impl Fetched {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

/// `fetch(path)` from the page, with the page's cookie (`credentials: same-origin`), a JSON `body`
/// if any, and the page's CSRF token (its `<meta name="csrf-token">`) when `csrf`.
async fn fetch(
    b: &Browser,
    method: &str,
    path: &str,
    body: Option<Value>,
    csrf: bool,
) -> anyhow::Result<Fetched> {
    let script = r#"
        const [method, url, body, csrf] = arguments;
        // As the portal's own script says who it is: a 401 then carries no Basic challenge, which
        // would open the browser's password dialog and leave the fetch waiting on it.
        const headers = { Accept: 'application/json', 'X-Requested-With': 'pbx-portal' };
        if (body !== null) headers['Content-Type'] = 'application/json';
        if (csrf) headers['X-CSRF-Token'] = document.querySelector('meta[name="csrf-token"]').content;
        const init = { method, headers, credentials: 'same-origin' };
        if (body !== null) init.body = JSON.stringify(body);
        return fetch(url, init).then(async (r) => ({
            status: r.status,
            type: r.headers.get('content-type') || '',
            text: await r.text(),
        }));
    "#;
    let body = body.unwrap_or(Value::Null);
    let v = js(
        b,
        script,
        vec![json!(method), json!(path), body, json!(csrf)],
    )
    .await
    .with_context(|| format!("fetch {method} {path}"))?;
    Ok(Fetched {
        status: u16::try_from(v["status"].as_u64().context("no status")?)?,
        content_type: v["type"].as_str().unwrap_or_default().to_owned(),
        text: v["text"].as_str().unwrap_or_default().to_owned(),
    })
}

/// Opens `base` + `target` signed out, which lands on the sign-in page; signs in as `user`. Returns
/// once the browser has left the sign-in page.
async fn sign_in(
    b: &Browser,
    base: &str,
    target: &str,
    user: &str,
    password: &str,
    page: &str,
) -> anyhow::Result<()> {
    // A navigation that failed (the address just changed hands, a node is starting) leaves the
    // browser on an error page at the same URL: go again, for a while, before giving up.
    let deadline = Instant::now() + 2 * WAIT;
    let url = loop {
        b.goto(&format!("{base}{target}")).await?;
        match wait_url(b, Duration::from_secs(3), |u| {
            path_of(u).starts_with("/login")
        })
        .await
        {
            Ok(url) => break url,
            Err(e) if Instant::now() >= deadline => {
                let _ = shot(b, &format!("{page}-failed")).await;
                return Err(e);
            }
            Err(e) => eprintln!("navigating again to {base}{target}: {e}"),
        }
    };
    b.wait_for_css("#login-form", WAIT).await?;
    let login_path = path_of(&url).to_owned();
    shot(b, page).await?;
    b.fill("#login-username", user).await?;
    b.fill("#login-password", password).await?;
    b.click("#login-submit").await?;
    wait_url(b, WAIT, |u| !path_of(u).starts_with("/login"))
        .await
        .with_context(|| format!("signing in as {user} at {login_path}"))?;
    Ok(())
}

/// Signs out with the header's button; the browser is back on the sign-in page, without the cookie.
async fn sign_out(b: &Browser) -> anyhow::Result<()> {
    b.click("#logout").await?;
    wait_url(b, WAIT, |u| path_of(u).starts_with("/login")).await?;
    ensure!(
        b.cookie("pbx_session").await?.is_none(),
        "signing out removed the cookie"
    );
    Ok(())
}

/// Marks the current document; [`still_same_document`] says whether it was never reloaded since.
async fn mark_document(b: &Browser) -> anyhow::Result<()> {
    js(b, "window.__pbxNotReloaded = true; return true", Vec::new()).await?;
    Ok(())
}

async fn still_same_document(b: &Browser) -> anyhow::Result<bool> {
    Ok(js(b, "return window.__pbxNotReloaded === true", Vec::new()).await? == json!(true))
}

/// The rows (their texts) that hold every one of `needles`.
fn rows_with<'a>(rows: &'a [String], needles: &[&str]) -> Vec<&'a String> {
    rows.iter()
        .filter(|r| needles.iter().all(|n| r.contains(n)))
        .collect()
}

/// A registered scripted phone for `user` on node `i`'s SIP port (loopback lab).
async fn phone(lab: &Lab, i: usize, user: &str, secret: &str) -> anyhow::Result<Phone> {
    let server = SocketAddr::from(([127, 0, 0, 1], lab.nodes[i].sip_port));
    let mut p = Phone::new(server, user, secret).await?;
    let status = p.register(300).await?;
    ensure!(status == 200, "{user} registers: {status}");
    Ok(p)
}

/// `caller` dials `number` and `callee` answers: both phones' dialogs.
async fn connect(
    caller: &mut Phone,
    callee: &mut Phone,
    number: &str,
) -> anyhow::Result<(Dialog, Dialog)> {
    let out = caller.dial(number, None).await?;
    let (answered, placed) = tokio::join!(
        callee.answer(Answer::Accept, Duration::from_secs(5)),
        caller.outcome(&out, Duration::from_secs(5))
    );
    let placed = placed?.map_err(|status| anyhow::anyhow!("the call failed: {status}"))?;
    let answered = answered?.1.context("the callee answered")?;
    Ok((placed, answered))
}

/// `caller` dials `number`, which is refused; the final status.
async fn refused_call(caller: &mut Phone, number: &str) -> anyhow::Result<u16> {
    let out = caller.dial(number, None).await?;
    match caller.outcome(&out, Duration::from_secs(5)).await? {
        Ok(_) => bail!("a call to {number} was answered"),
        Err(status) => Ok(status),
    }
}

/// The CDRs node `i` holds once there are `n`, waiting up to 10 s.
async fn wait_cdrs(lab: &Lab, i: usize, n: usize) -> Vec<Value> {
    let client = lab.client();
    let v = poll_node(&client, i, "/api/v1/cdrs", Duration::from_secs(10), |v| {
        v["cdrs"].as_array().is_some_and(|a| a.len() >= n)
    })
    .await;
    let cdrs = v["cdrs"].as_array().cloned().unwrap_or_default();
    assert!(cdrs.len() >= n, "fewer than {n} CDRs on node {i}: {v}");
    cdrs
}

// ---- 1. A new admin, from the first sign-in to hanging up a call -----------------------------

/// A new admin account with a generated password signs in on the login page, is sent to change it
/// (a repeat that does not match is pointed out first), and runs the setup wizard: time zone, the
/// network check, two extensions whose SIP secret is shown once, finish. The secrets register two
/// phones, and the dashboard shows them idle without a reload; a call between them appears, is hung
/// up with its button (after the browser's confirmation), both phones get a BYE and the row goes.
/// The call's CDR (ended by the PBX) is on `/cdrs`, the extension filter works, and the export link
/// gives the same selection as CSV.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_first_sign_in_setup_extensions_monitor_and_hang_up() -> anyhow::Result<()> {
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 0".into(),
        ..LabOptions::default()
    };
    let lab = Lab::start_with(3, options).await?;
    let client = lab.client();
    // The browser uses node 2 (index 1); the phones register on node 1 (index 0), which carries the
    // call: what the page shows and does goes through the cluster.
    let web = 1;
    let base = lab.nodes[web].api_url();
    lab.wait_node(web, WAIT).await?;

    // A new admin, its password generated and to be changed at the first sign-in.
    let account = create(
        &lab,
        "/api/v1/accounts",
        json!({"username": "ada", "role": "admin", "email": "ada@example.com"}),
    )
    .await;
    assert_eq!(account["must_change_password"], true, "{account}");
    let generated = account["password"]
        .as_str()
        .context("a generated password in the answer")?
        .to_owned();

    let b = Browser::start().await?;
    let started = Instant::now();

    // The portal's address, signed out: the sign-in page, which goes on to the password change.
    sign_in(&b, &base, "/", "ada", &generated, "login").await?;
    wait_url(&b, WAIT, |u| path_of(u) == "/account/password").await?;
    let banner = wait_shown(&b, "#password-required").await?;
    assert!(banner.contains("must choose a new password"), "{banner}");
    // Nothing else opens until it is changed.
    b.goto(&format!("{base}/extensions")).await?;
    wait_url(&b, WAIT, |u| path_of(u) == "/account/password").await?;
    b.wait_for_css("#password-form", WAIT).await?;
    shot(&b, "password").await?;

    let new_password = "Copper-Lantern-93q";
    b.fill("#pw-current", &generated).await?;
    b.fill("#pw-new", new_password).await?;
    b.fill("#pw-repeat", "Copper-Lantern-93x").await?;
    b.click("#pw-submit").await?;
    let mismatch = wait_shown(&b, ".field-error[data-for=repeat_password]").await?;
    assert_eq!(mismatch, "does not match");
    assert_eq!(
        path_of(&b.url().await?),
        "/account/password",
        "nothing was sent"
    );
    shot(&b, "password-mismatch").await?;
    b.fill("#pw-repeat", new_password).await?;
    b.click("#pw-submit").await?;

    // Changed: the admin is taken to the setup wizard (it is not finished yet).
    wait_url(&b, WAIT, |u| path_of(u).starts_with("/setup")).await?;
    b.wait_for_css("#setup-step[data-step='1']", WAIT).await?;
    let password_row = b.text("#setup-password").await?;
    assert!(password_row.contains("set"), "{password_row}");
    shot(&b, "setup-1-password").await?;
    // The old password no longer opens anything.
    let old = lab
        .anon(web, Method::GET, "/api/v1/account")
        .basic_auth("ada", Some(&generated))
        .send()
        .await?;
    assert_eq!(old.status(), 401, "the generated password still works");

    // 2: realm and time zone.
    b.click("#setup-next").await?;
    b.wait_for_css("#setup-step[data-step='2']", WAIT).await?;
    assert_eq!(
        value(&b, "#setup-tz").await?,
        "UTC",
        "the default time zone"
    );
    shot(&b, "setup-2-system").await?;
    b.fill("#setup-tz", "Europe/Berlin").await?;
    b.click("#setup-system-submit").await?;
    b.wait_for_css("#setup-step[data-step='3']", WAIT).await?;
    let system = client.get_json(web, "/api/v1/system").await?;
    assert_eq!(system["time_zone"], "Europe/Berlin", "{system}");

    // 3: the VIP and the network check (this lab has no VIP: the check says so).
    let vip = b.text("#setup-vip").await?;
    assert_eq!(vip, "not configured");
    b.click("#network-check").await?;
    let flash = wait_shown(&b, "#flash").await?;
    assert!(flash.starts_with("Network checked"), "{flash}");
    let nodes = wait_texts(&b, "#network-table tbody tr", WAIT, |rows| rows.len() == 3).await?;
    for (row, node) in nodes.iter().zip(&lab.nodes) {
        assert!(row.starts_with(&node.id.to_string()), "{row}");
        assert!(
            row.contains("healthy") && !row.contains("unhealthy"),
            "{row}"
        );
        assert!(
            row.contains(&format!("127.0.0.1:{}", node.api_port)),
            "{row}"
        );
    }
    let problems = texts(&b, "#network-problems li").await?;
    assert!(
        problems.iter().any(|p| p.contains("no VIP is configured")),
        "{problems:?}"
    );
    shot(&b, "setup-3-network").await?;

    // 4: two extensions; each SIP secret is shown once.
    b.click("#setup-next").await?;
    b.wait_for_css("#setup-step[data-step='4']", WAIT).await?;
    assert_eq!(b.text("#setup-ext-count").await?, "0");
    shot(&b, "setup-4-extensions").await?;
    let mut secrets = Vec::new();
    for (i, (number, name)) in [("1001", "Alice Desk"), ("1002", "Bob Desk")]
        .into_iter()
        .enumerate()
    {
        b.fill("#ext-number", number).await?;
        b.fill("#ext-display-name", name).await?;
        b.click("#ext-create-submit").await?;
        wait_shown(&b, "#shown-once").await?;
        let label = b.text("#shown-once-label").await?;
        assert!(label.contains(number), "{label}");
        let secret = b.text("#shown-once-value").await?;
        assert!(secret.len() >= 12, "a generated secret: {secret:?}");
        if i == 0 {
            shot(&b, "setup-4-secret-shown-once").await?;
        }
        secrets.push(secret);
        // Done: the step again, the panel gone, one more extension counted.
        b.click("#shown-once-done").await?;
        b.wait_for_text("#setup-ext-count", &(i + 1).to_string(), WAIT)
            .await?;
        b.wait_for_css("#shown-once[hidden]", WAIT).await?;
    }
    assert_ne!(secrets[0], secrets[1]);
    // Not readable again anywhere.
    let ext = client.get_json(web, "/api/v1/extensions/1001").await?;
    assert!(
        !ext.to_string().contains(&secrets[0]),
        "the secret is stored readable: {ext}"
    );

    // 5: finish; the dashboard opens, and is what `/` shows from now on.
    b.click("#setup-next").await?;
    b.wait_for_css("#setup-step[data-step='5']", WAIT).await?;
    shot(&b, "setup-5-finish").await?;
    b.click("#setup-finish").await?;
    wait_url(&b, WAIT, |u| path_of(u) == "/").await?;
    b.wait_for_css("#monitor", WAIT).await?;
    b.wait_for_text("#live-status", "live", WAIT).await?;
    assert_eq!(
        b.text("#serving-node").await?,
        lab.nodes[web].id.to_string()
    );
    assert_eq!(b.text("#ext-total").await?, "2");
    let states = wait_texts(&b, "#states-table tbody tr", WAIT, |r| r.len() == 2).await?;
    assert_eq!(
        rows_with(&states, &["1001", "Alice Desk", "unavailable"]).len(),
        1,
        "{states:?}"
    );
    assert_eq!(
        rows_with(&states, &["1002", "Bob Desk", "unavailable"]).len(),
        1,
        "{states:?}"
    );
    shot(&b, "dashboard").await?;

    // Phones register with the secrets the page showed; the page follows without a reload.
    mark_document(&b).await?;
    client.sync(0).await?;
    let mut alice = phone(&lab, 0, "1001", &secrets[0]).await?;
    let mut bob = phone(&lab, 0, "1002", &secrets[1]).await?;
    let states = wait_texts(&b, "#states-table tbody tr", WAIT, |r| {
        rows_with(r, &["1001", "idle"]).len() == 1 && rows_with(r, &["1002", "idle"]).len() == 1
    })
    .await?;
    assert_eq!(states.len(), 2, "{states:?}");
    b.wait_for_text("#ext-registered", "2", WAIT).await?;
    assert!(still_same_document(&b).await?, "the page was reloaded");
    shot(&b, "dashboard-registered").await?;

    // A call appears, with a hang-up button, without a reload.
    let (a_dialog, b_dialog) = connect(&mut alice, &mut bob, "1002").await?;
    let calls = wait_texts(&b, "#calls-table tbody tr[data-call]", WAIT, |r| {
        r.len() == 1
    })
    .await?;
    assert!(
        calls[0].starts_with("1001") && calls[0].contains("1002"),
        "{calls:?}"
    );
    assert!(calls[0].contains("Hang up"), "{calls:?}");
    wait_texts(&b, "#states-table tbody tr", WAIT, |r| {
        rows_with(r, &["in call"]).len() == 2
    })
    .await?;
    b.wait_for_text("#calls-count", "1", WAIT).await?;
    assert!(still_same_document(&b).await?, "the page was reloaded");
    let call_id = js(
        &b,
        "return document.querySelector('#calls-table tr[data-call]').dataset.call",
        Vec::new(),
    )
    .await?
    .as_str()
    .context("the row's call id")?
    .to_owned();
    let api_calls = client.get_json(0, "/api/v1/calls").await?;
    assert_eq!(api_calls["calls"][0]["id"], call_id.as_str(), "{api_calls}");
    shot(&b, "dashboard-call").await?;

    // Hang up: the browser asks first; accepted, both phones get a BYE and the row goes.
    click_fresh(&b, "#calls-table tr[data-call] .hangup").await?;
    let question = wait_dialog(&b, WAIT).await?;
    assert_eq!(question, "Hang up the call 1001 → 1002?");
    b.client().accept_alert().await?;
    let (bye_a, bye_b) = tokio::join!(
        alice.expect_request("BYE", Duration::from_secs(5)),
        bob.expect_request("BYE", Duration::from_secs(5))
    );
    assert_eq!(
        bye_a?.header("Call-ID").as_deref(),
        Some(a_dialog.call_id.as_str())
    );
    assert_eq!(
        bye_b?.header("Call-ID").as_deref(),
        Some(b_dialog.call_id.as_str())
    );
    let left = wait_texts(&b, "#calls-table tbody tr", WAIT, |r| {
        r.len() == 1 && r[0] == "No calls in progress."
    })
    .await?;
    assert_eq!(left.len(), 1);
    assert!(
        b.client()
            .find(Locator::Css("#flash:not([hidden])"))
            .await
            .is_err(),
        "an error was shown: {:?}",
        b.text("#flash").await
    );
    wait_texts(&b, "#states-table tbody tr", WAIT, |r| {
        rows_with(r, &["idle"]).len() == 2
    })
    .await?;
    shot(&b, "dashboard-hung-up").await?;

    // A second, refused call, so that the CDR filter has something to leave out.
    create(
        &lab,
        "/api/v1/extensions",
        json!({"number": "1003", "display_name": "Nobody"}),
    )
    .await;
    client.sync(0).await?;
    assert_eq!(refused_call(&mut alice, "1003").await?, 480);
    let cdrs = wait_cdrs(&lab, web, 2).await;
    assert_eq!(cdrs.len(), 2, "{cdrs:?}");
    let refused_id = cdrs
        .iter()
        .find(|c| c["callee"] == "1003")
        .and_then(|c| c["id"].as_str())
        .context("the refused call's CDR")?
        .to_owned();

    // The call records: both calls; the hung-up one ended by the PBX.
    b.click("#nav-cdrs").await?;
    wait_url(&b, WAIT, |u| path_of(u) == "/cdrs").await?;
    let rows = wait_texts(&b, "#cdr-table tbody tr[data-cdr]", WAIT, |r| r.len() == 2).await?;
    let hung = texts(&b, &format!("#cdr-table tr[data-cdr='{call_id}']")).await?;
    assert_eq!(hung.len(), 1, "the hung-up call's row: {rows:?}");
    for expected in [
        "1001",
        "1002",
        "internal",
        "answered",
        "pbx",
        "hung-up-by-admin",
    ] {
        assert!(hung[0].contains(expected), "{expected}: {:?}", hung[0]);
    }
    let refused = texts(&b, &format!("#cdr-table tr[data-cdr='{refused_id}']")).await?;
    assert!(
        refused.len() == 1 && refused[0].contains("unavailable"),
        "{refused:?}"
    );
    shot(&b, "cdrs").await?;

    // Filtered by extension 1002: only the call it was in.
    b.fill("#cdr-extension", "1002").await?;
    b.click("#cdr-apply").await?;
    wait_url(&b, WAIT, |u| path_of(u).contains("extension=1002")).await?;
    let rows = wait_texts(&b, "#cdr-table tbody tr", WAIT, |r| r.len() == 1).await?;
    assert!(
        b.client()
            .find(Locator::Css(&format!(
                "#cdr-table tr[data-cdr='{call_id}']"
            )))
            .await
            .is_ok(),
        "{rows:?}"
    );
    assert_eq!(value(&b, "#cdr-extension").await?, "1002");
    shot(&b, "cdrs-filtered").await?;

    // The export link: the same selection as CSV, fetched by the page with its cookie.
    let href = b
        .client()
        .find(Locator::Css("#cdr-export"))
        .await?
        .attr("href")
        .await?
        .context("the export link's address")?;
    assert!(
        href.starts_with("/api/v1/cdrs?")
            && href.contains("format=csv")
            && href.contains("extension=1002"),
        "{href}"
    );
    let csv = fetch(&b, "GET", &href, None, false).await?;
    assert_eq!(csv.status, 200, "{csv:?}");
    assert!(csv.content_type.starts_with("text/csv"), "{csv:?}");
    let lines: Vec<&str> = csv.text.lines().collect();
    assert!(lines[0].starts_with("id,caller,callee,"), "{lines:?}");
    assert_eq!(lines.len(), 2, "the header and one call: {lines:?}");
    assert!(
        lines[1].starts_with(&format!("{call_id},1001,1002,")),
        "{lines:?}"
    );
    assert!(
        lines[1].contains(",answered,pbx,hung-up-by-admin,"),
        "{lines:?}"
    );
    assert!(!csv.text.contains(&refused_id), "{lines:?}");

    // And by 1003: only the refused call.
    b.fill("#cdr-extension", "1003").await?;
    b.click("#cdr-apply").await?;
    wait_url(&b, WAIT, |u| path_of(u).contains("extension=1003")).await?;
    let rows = wait_texts(&b, "#cdr-table tbody tr[data-cdr]", WAIT, |r| r.len() == 1).await?;
    assert!(
        rows[0].contains("1003") && rows[0].contains("unavailable"),
        "{rows:?}"
    );
    shot(&b, "cdrs-filtered-refused").await?;

    // A desk phone added on /devices: its token and URLs are shown once, work, and are not in the
    // list after.
    b.click("#nav-devices").await?;
    wait_url(&b, WAIT, |u| path_of(u) == "/devices").await?;
    b.fill("#device-mac", "00:15:65:AA:BB:01").await?;
    b.fill("#device-model", "T54W").await?;
    b.fill("#device-extension", "1003").await?;
    b.click("#device-submit").await?;
    wait_shown(&b, "#shown-once").await?;
    assert!(b.text("#shown-once-label").await?.contains("001565aabb01"));
    let token = b.text("#shown-once-value").await?;
    assert_eq!(token.len(), 43, "a provisioning token: {token:?}");
    let urls = b.text("#shown-once-extra").await?;
    let file = format!("/provision/{token}/001565aabb01.cfg");
    assert!(urls.contains(&file), "{urls}");
    shot(&b, "devices-token-shown-once").await?;
    b.click("#shown-once-done").await?;
    let rows = wait_texts(&b, "#devices-table tbody tr[data-device]", WAIT, |r| {
        r.len() == 1
    })
    .await?;
    assert!(
        rows[0].contains("00:15:65:aa:bb:01") && rows[0].contains("1003"),
        "{rows:?}"
    );
    let page = js(&b, "return document.documentElement.outerHTML", Vec::new()).await?;
    assert!(
        !page.to_string().contains(&token),
        "the token is on the page again"
    );
    let cfg = lab.anon(web, Method::GET, &file).send().await?;
    assert_eq!(
        cfg.status(),
        200,
        "the token shown fetches the phone's file"
    );
    shot(&b, "devices").await?;

    // A backup made on /backups: the passphrase set in its form, "Back up now", and it is listed.
    b.click("#nav-backups").await?;
    wait_url(&b, WAIT, |u| path_of(u) == "/backups").await?;
    b.wait_for_css("#backup-no-passphrase", WAIT).await?;
    let passphrase = "Amber-Keystone-Meadow-58";
    b.fill("#backup-passphrase", passphrase).await?;
    b.fill("#backup-passphrase-repeat", passphrase).await?;
    b.click("#backup-settings-submit").await?;
    wait_texts(&b, "#backup-passphrase-state", WAIT, |t| {
        t == ["Passphrase: set"]
    })
    .await?;
    b.click("#backup-create").await?;
    let rows = wait_texts(&b, "#backups-table tbody tr[data-backup]", 6 * WAIT, |r| {
        r.len() == 1
    })
    .await?;
    let serving = lab.nodes[web].id.to_string();
    assert!(
        rows[0].contains("manual")
            && rows[0].contains("ok")
            && !rows[0].contains("failed")
            && rows[0].contains(&serving),
        "{rows:?}"
    );
    let download = b
        .client()
        .find(Locator::Css("#backups-table .backup-download"))
        .await?
        .attr("href")
        .await?
        .context("the download link")?;
    assert!(download.ends_with("/download"), "{download}");
    let page = js(&b, "return document.documentElement.outerHTML", Vec::new()).await?;
    assert!(
        !page.to_string().contains(passphrase),
        "the passphrase is on the page"
    );
    shot(&b, "backups").await?;

    eprintln!("browser part took {:?}", started.elapsed());
    b.close().await?;
    Ok(())
}

// ---- 2. Roles, bad input and sessions -------------------------------------------------------

/// A display name that is markup shows as text (no script runs, no dialog opens), in the table and
/// in the live monitor; a number the API refuses shows its message under the field. A user sees only
/// their own calls (`/me`, `/cdrs`) and the API refuses them another extension's; an operator has no
/// extension form and the API refuses the change it would send, and a change without the CSRF header
/// is refused as such. The session cookie is HttpOnly, Secure and SameSite=Strict, and signing out
/// ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_users_and_bad_input_in_the_browser() -> anyhow::Result<()> {
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 0".into(),
        ..LabOptions::default()
    };
    let (lab, client) = Lab::with_extensions(1, options, &["1001", "1002", "1009"], SECRET).await?;
    let base = lab.nodes[0].api_url();
    for (name, role, extension) in [("olga", "operator", None), ("pat", "user", Some("1001"))] {
        create(
            &lab,
            "/api/v1/accounts",
            json!({"username": name, "role": role, "extension": extension,
                   "password": PASSWORD, "must_change_password": false}),
        )
        .await;
    }
    // Two calls: 1001 → 1002 answered and hung up by 1001; 1002 → 1009 (no phone) refused.
    let mut alice = phone(&lab, 0, "1001", SECRET).await?;
    let mut bob = phone(&lab, 0, "1002", SECRET).await?;
    wait_registered(&client, "1002").await;
    let (mut a_dialog, _) = connect(&mut alice, &mut bob, "1002").await?;
    assert_eq!(alice.hang_up(&mut a_dialog).await?, 200);
    assert_eq!(refused_call(&mut bob, "1009").await?, 480);
    let cdrs = wait_cdrs(&lab, 0, 2).await;
    let own_id = cdrs
        .iter()
        .find(|c| c["caller"] == "1001")
        .and_then(|c| c["id"].as_str())
        .context("1001's call")?
        .to_owned();
    let other_id = cdrs
        .iter()
        .find(|c| c["callee"] == "1009")
        .and_then(|c| c["id"].as_str())
        .context("1002's refused call")?
        .to_owned();

    let b = Browser::start().await?;
    let started = Instant::now();

    // The admin, on the extensions page.
    sign_in(
        &b,
        &base,
        "/extensions",
        "admin",
        &lab.admin_password,
        "login-admin",
    )
    .await?;
    wait_url(&b, WAIT, |u| path_of(u) == "/extensions").await?;
    b.wait_for_css("#ext-create", WAIT).await?;

    // The session cookie: out of the page's scripts' reach, HTTPS only, never sent cross-site.
    let cookie = b
        .cookie("pbx_session")
        .await?
        .context("the session cookie")?;
    assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
    assert_eq!(cookie.secure(), Some(true), "{cookie:?}");
    assert_eq!(
        cookie.same_site().map(|s| s.to_string()).as_deref(),
        Some("Strict"),
        "{cookie:?}"
    );
    assert_eq!(cookie.path(), Some("/"), "{cookie:?}");
    let visible = js(&b, "return document.cookie", Vec::new()).await?;
    assert!(
        !visible.as_str().unwrap_or_default().contains("pbx_session"),
        "{visible}"
    );

    // A display name that is markup.
    b.fill("#ext-number", "1003").await?;
    b.fill("#ext-display-name", SCRIPT_NAME).await?;
    b.click("#ext-create-submit").await?;
    wait_shown(&b, "#shown-once").await?;
    let secret = b.text("#shown-once-value").await?;
    assert!(secret.len() >= 12, "a generated secret: {secret:?}");
    b.click("#shown-once-done").await?;
    b.wait_for_css("#ext-row-1003", WAIT).await?;
    assert_eq!(b.text("#ext-row-1003 .ext-name").await?, SCRIPT_NAME);
    assert_eq!(b.text("#ext-count").await?, "4");
    let injected = js(
        &b,
        "return document.querySelectorAll('#ext-table script, #ext-table [onerror]').length",
        Vec::new(),
    )
    .await?;
    assert_eq!(
        injected,
        json!(0),
        "markup from the display name was parsed"
    );
    assert!(
        b.client().get_alert_text().await.is_err(),
        "a dialog is open"
    );
    shot(&b, "extensions-markup-name").await?;
    // The live monitor renders it as text too (its script builds the rows).
    b.goto(&format!("{base}/?setup=later&q=1003")).await?;
    b.wait_for_text("#live-status", "live", WAIT).await?;
    let states = wait_texts(&b, "#states-table tbody tr", WAIT, |r| {
        rows_with(r, &["1003", SCRIPT_NAME]).len() == 1
    })
    .await?;
    assert_eq!(states.len(), 1, "{states:?}");
    assert!(
        b.client().get_alert_text().await.is_err(),
        "a dialog is open"
    );
    shot(&b, "dashboard-markup-name").await?;

    // A number the API refuses: its message, under the field.
    b.goto(&format!("{base}/extensions")).await?;
    b.wait_for_css("#ext-create", WAIT).await?;
    b.fill("#ext-number", "12ab").await?;
    b.fill("#ext-display-name", "Bad Number").await?;
    b.click("#ext-create-submit").await?;
    let error = wait_shown(&b, "#ext-create .field-error[data-for=number]").await?;
    assert_eq!(error, "number must be 2 to 15 digits");
    let invalid = b
        .client()
        .find(Locator::Css("#ext-number"))
        .await?
        .attr("aria-invalid")
        .await?;
    assert_eq!(invalid.as_deref(), Some("true"));
    assert!(
        b.client()
            .find(Locator::Css(
                "#ext-create .field-error[data-for=display_name]:not([hidden])"
            ))
            .await
            .is_err(),
        "the error is under the number only"
    );
    assert_eq!(
        client.get_json(0, "/api/v1/extensions/12ab").await.ok(),
        None,
        "nothing was created"
    );
    shot(&b, "extensions-bad-number").await?;

    // A change without the CSRF header: refused as such, though the admin may make it.
    let no_csrf = fetch(
        &b,
        "POST",
        "/api/v1/extensions",
        Some(json!({"number": "1004", "display_name": "No CSRF"})),
        false,
    )
    .await?;
    assert_eq!(no_csrf.status, 403, "{no_csrf:?}");
    assert_eq!(no_csrf.json()["error"], "csrf", "{no_csrf:?}");
    sign_out(&b).await?;
    // Signed out: pages send the browser to sign in, and come back after.
    b.goto(&format!("{base}/extensions")).await?;
    let url = wait_url(&b, WAIT, |u| path_of(u).starts_with("/login")).await?;
    assert_eq!(path_of(&url), "/login?next=%2Fextensions");
    let gone = fetch(&b, "GET", "/api/v1/session", None, false).await?;
    assert_eq!(gone.status, 401, "{gone:?}");
    shot(&b, "signed-out").await?;

    // The user: their own account and calls only.
    sign_in(&b, &base, "/", "pat", PASSWORD, "login-user").await?;
    wait_url(&b, WAIT, |u| path_of(u) == "/me").await?;
    b.wait_for_css("#me-account", WAIT).await?;
    assert_eq!(b.text("#me-username").await?, "pat");
    assert_eq!(b.text("#me-role").await?, "user");
    assert_eq!(b.text("#me-extension").await?, "1001");
    let mine = texts(&b, "#me-calls #cdr-table tbody tr[data-cdr]").await?;
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert!(
        mine[0].contains("1001") && mine[0].contains("answered"),
        "{mine:?}"
    );
    let nav = texts(&b, "#nav a.nav-link").await?;
    assert_eq!(
        nav,
        ["Call records", "Audio", "Phonebook", "My account"],
        "the user's navigation"
    );
    shot(&b, "me-user").await?;
    b.click("#nav-cdrs").await?;
    wait_url(&b, WAIT, |u| path_of(u) == "/cdrs").await?;
    b.wait_for_css("#cdr-table", WAIT).await?;
    assert_eq!(value(&b, "#cdr-extension").await?, "1001");
    let fixed = b
        .client()
        .find(Locator::Css("#cdr-extension"))
        .await?
        .attr("disabled")
        .await?;
    assert!(fixed.is_some(), "the user's extension can be changed");
    let rows = texts(&b, "#cdr-table tbody tr").await?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        b.client()
            .find(Locator::Css(&format!("tr[data-cdr='{own_id}']")))
            .await
            .is_ok(),
        "{rows:?}"
    );
    assert!(
        b.client()
            .find(Locator::Css(&format!("tr[data-cdr='{other_id}']")))
            .await
            .is_err(),
        "another extension's call shows: {rows:?}"
    );
    shot(&b, "cdrs-user").await?;
    // Another extension through the API, from the page: nothing there for this account.
    let other = fetch(&b, "GET", "/api/v1/cdrs?extension=1002", None, false).await?;
    assert_eq!(other.status, 404, "{other:?}");
    let own = fetch(&b, "GET", "/api/v1/cdrs?extension=1001", None, false).await?;
    assert_eq!(own.status, 200, "{own:?}");
    let own_cdrs = own.json()["cdrs"].as_array().cloned().unwrap_or_default();
    assert_eq!(own_cdrs.len(), 1, "{own:?}");
    // The monitor is not theirs: the page refuses with the portal's error page.
    b.goto(&format!("{base}/extensions")).await?;
    let title = b.wait_for_text("#error-title", "403", WAIT).await?;
    assert!(title.contains("Not allowed"), "{title}");
    shot(&b, "forbidden-user").await?;
    b.goto(&format!("{base}/me")).await?;
    b.wait_for_css("#me-account", WAIT).await?;
    sign_out(&b).await?;

    // The operator: extensions to look at, not to change.
    sign_in(&b, &base, "/extensions", "olga", PASSWORD, "login-operator").await?;
    wait_url(&b, WAIT, |u| path_of(u) == "/extensions").await?;
    b.wait_for_css("#ext-table", WAIT).await?;
    assert_eq!(b.text("#ext-row-1003 .ext-name").await?, SCRIPT_NAME);
    let forms = js(
        &b,
        "return document.querySelectorAll('#ext-create, #ext-import, .ext-delete, .ext-edit').length",
        Vec::new(),
    )
    .await?;
    assert_eq!(forms, json!(0), "the operator is offered changes");
    shot(&b, "extensions-operator").await?;
    let body = json!({"number": "1005", "display_name": "By Operator"});
    let refused = fetch(&b, "POST", "/api/v1/extensions", Some(body.clone()), true).await?;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(refused.json()["error"], "forbidden", "{refused:?}");
    let no_csrf = fetch(&b, "POST", "/api/v1/extensions", Some(body), false).await?;
    assert_eq!(no_csrf.status, 403, "{no_csrf:?}");
    assert_eq!(no_csrf.json()["error"], "csrf", "{no_csrf:?}");
    let numbers = lab.extension_numbers(0).await?;
    assert_eq!(
        numbers,
        ["1001", "1002", "1003", "1009"],
        "nothing was created"
    );
    sign_out(&b).await?;
    b.goto(&format!("{base}/extensions")).await?;
    let url = wait_url(&b, WAIT, |u| path_of(u).starts_with("/login")).await?;
    assert_eq!(path_of(&url), "/login?next=%2Fextensions");
    b.wait_for_css("#login-form", WAIT).await?;
    shot(&b, "signed-out-operator").await?;

    eprintln!("browser part took {:?}", started.elapsed());
    b.close().await?;
    Ok(())
}

// ---- 3. One session, every node, and the VIP across its owner's death --------------------------

/// Set in the copy of this test that runs inside the lab's phone namespace.
const INNER: &str = "PBX_PORTAL_NETNS_INNER";
const VIP_TEST: &str = "the_session_works_through_a_follower_and_the_vip_after_the_owner_dies";

fn lab_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/lab-netns.sh")
}

/// Removes the namespace lab when dropped (pass or fail).
struct NetnsLab;

impl NetnsLab {
    fn up() -> Self {
        // A lab left by a killed run is removed first, as `lab-netns.sh chaos` does.
        let _ = Command::new(lab_script()).arg("down").status();
        let out = Command::new(lab_script())
            .args(["up", "3"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "lab-netns.sh up: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Self
    }
}

impl Drop for NetnsLab {
    fn drop(&mut self) {
        let _ = Command::new(lab_script()).arg("down").status();
    }
}

/// In the namespace lab of `deploy/lab-netns.sh` (three node hosts, the VIP 198.18.0.100 moving
/// between them; needs root, `ip`, `nft`, `arping`, like `vip_failover`), with the API listening on
/// every address of its host so that the VIP owner serves it too: the admin signs in through the
/// VIP, opens the dashboard and the extensions; the same session cookie opens them through a
/// follower's own address; the VIP owner is killed (-9), and the pages load through the VIP again
/// within seconds, served by the new owner, without signing in again.
///
/// The browser and the lab run in the phones' namespace: the test runs itself there (`ip netns exec
/// pbx-ph1`), the way `vip_failover` runs the chaos tool.
#[test]
fn the_session_works_through_a_follower_and_the_vip_after_the_owner_dies() {
    if std::env::var_os(INNER).is_some() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(session_across_nodes_and_vip()).unwrap();
        return;
    }
    let lab = NetnsLab::up();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", "pbx-ph1"])
        .arg(&exe)
        .args(["--exact", VIP_TEST, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .output()
        .unwrap();
    drop(lab);
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains("pbx-"),
        "the lab's namespaces were not removed"
    );
    assert!(out.status.success(), "the test in pbx-ph1 failed");
    assert!(text.contains("1 passed"), "the test did not run in pbx-ph1");
}

/// Whether something accepts TCP connections on `addr` (within a second).
async fn listening(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// The index of the node whose health says it owns the VIP, waiting up to `within` for exactly one
/// among the running ones (`skip` excluded).
async fn wait_vip_owner(lab: &Lab, skip: Option<usize>, within: Duration) -> anyhow::Result<usize> {
    let deadline = Instant::now() + within;
    loop {
        let mut owners = Vec::new();
        for i in (0..lab.nodes.len()).filter(|i| Some(*i) != skip) {
            if let Ok(h) = lab.health(i).await
                && h["vip_owner"] == true
            {
                owners.push(i);
            }
        }
        if let [one] = owners[..] {
            return Ok(one);
        }
        ensure!(
            Instant::now() < deadline,
            "no single VIP owner within {within:?}: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens `url` until the page is the dashboard (the monitor), within `within`; how long it took.
async fn wait_dashboard(b: &Browser, url: &str, within: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let deadline = started + within;
    loop {
        // From a blank page, so that nothing of an earlier one is found; a node that is gone shows
        // the browser's own error page, or the navigation times out.
        b.goto("about:blank").await?;
        let _ = b.goto(url).await;
        let here = b.url().await.unwrap_or_default();
        ensure!(!path_of(&here).starts_with("/login"), "signed out: {here}");
        if b.client().find(Locator::Css("#monitor")).await.is_ok() {
            return Ok(started.elapsed());
        }
        ensure!(
            Instant::now() < deadline,
            "{url} showed no dashboard within {within:?} (at {here})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn session_across_nodes_and_vip() -> anyhow::Result<()> {
    let options = LabOptions {
        netns: true,
        ..LabOptions::default()
    };
    let mut lab = Lab::start_with(3, options).await?;
    let vip_api = SocketAddr::new(IpAddr::V4(topology::VIP), lab.nodes[0].api_port);
    let owner = wait_vip_owner(&lab, None, Duration::from_secs(15)).await?;
    // The lab configures the API as deploy/pbx.toml.example does: on every address of the node's
    // host, so the VIP owner serves the portal on the VIP too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listening(vip_api).await {
        ensure!(Instant::now() < deadline, "nothing listens on {vip_api}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let follower = (0..lab.nodes.len()).find(|&i| i != owner).unwrap();
    for i in 0..lab.nodes.len() {
        lab.wait_node(i, WAIT).await?;
    }
    // The wizard is done (what the first test does in the browser).
    let (status, body) = {
        let resp = lab
            .admin(Method::PUT, "/api/v1/system")
            .json(&json!({"setup_done": true}))
            .send()
            .await?;
        (resp.status(), resp.text().await?)
    };
    ensure!(status.is_success(), "finishing setup: {status} {body}");
    let owner_id = lab.nodes[owner].id;
    let vip = format!("https://{vip_api}");
    let follower_url = lab.nodes[follower].api_url();

    let b = Browser::start().await?;
    // A node that died must not hold a navigation for the default five minutes.
    b.client()
        .update_timeouts(TimeoutConfiguration::new(
            None,
            Some(Duration::from_secs(5)),
            None,
        ))
        .await?;

    // Through the VIP: the owner serves the portal.
    sign_in(&b, &vip, "/", "admin", &lab.admin_password, "vip-login").await?;
    wait_url(&b, WAIT, |u| path_of(u) == "/").await?;
    b.wait_for_css("#monitor", WAIT).await?;
    b.wait_for_text("#live-status", "live", WAIT).await?;
    assert_eq!(b.text("#serving-node").await?, owner_id.to_string());
    assert_eq!(b.text("#vip-address").await?, topology::VIP_CIDR);
    assert_eq!(b.text("#vip-owner").await?, format!("node {owner_id}"));
    shot(&b, "vip-dashboard").await?;
    b.goto(&format!("{vip}/extensions")).await?;
    b.wait_for_css("#ext-table", WAIT).await?;
    assert_eq!(b.text("#user-name").await?, "admin");
    shot(&b, "vip-extensions").await?;
    let cookie = b
        .cookie("pbx_session")
        .await?
        .context("the session cookie")?;

    // The same cookie through a follower's own address (cookies are per host: the browser is given
    // it there): the session is the cluster's, not the node's.
    b.goto(&format!("{follower_url}/login")).await?;
    b.wait_for_css("#login-form", WAIT).await?;
    shot(&b, "follower-login").await?;
    let mut copy = cookie.clone();
    copy.set_domain(lab.nodes[follower].host.to_string());
    b.client().add_cookie(copy).await?;
    b.goto(&format!("{follower_url}/")).await?;
    wait_url(&b, WAIT, |u| path_of(u) == "/").await?;
    b.wait_for_css("#monitor", WAIT).await?;
    assert_eq!(
        b.text("#serving-node").await?,
        lab.nodes[follower].id.to_string()
    );
    assert_eq!(b.text("#user-name").await?, "admin");
    shot(&b, "follower-dashboard").await?;
    b.goto(&format!("{follower_url}/extensions")).await?;
    b.wait_for_css("#ext-table", WAIT).await?;
    shot(&b, "follower-extensions").await?;

    // The VIP owner dies; the pages load through the VIP again, from the new owner, still signed in.
    b.goto(&format!("{vip}/")).await?;
    b.wait_for_css("#monitor", WAIT).await?;
    let killed = Instant::now();
    lab.kill(owner);
    let took = wait_dashboard(&b, &format!("{vip}/"), Duration::from_secs(10)).await?;
    eprintln!(
        "dashboard through the VIP again {took:?} after the kill ({:?} with the kill itself)",
        killed.elapsed()
    );
    mark_document(&b).await?;
    let new_owner = wait_vip_owner(&lab, Some(owner), WAIT).await?;
    let new_id = lab.nodes[new_owner].id;
    assert_eq!(b.text("#serving-node").await?, new_id.to_string());
    assert_eq!(b.text("#user-name").await?, "admin");
    b.wait_for_text("#vip-owner", &format!("node {new_id}"), WAIT)
        .await?;
    // The killed node shows as unhealthy (the live stream follows the cluster).
    let dead = lab.nodes[owner].id.to_string();
    wait_texts(&b, "#nodes-table tbody tr", WAIT, |rows| {
        rows.iter()
            .any(|r| r.starts_with(dead.as_str()) && r.contains("unhealthy"))
    })
    .await?;
    assert!(still_same_document(&b).await?, "the page was reloaded");
    shot(&b, "vip-dashboard-after-kill").await?;
    b.goto(&format!("{vip}/extensions")).await?;
    b.wait_for_css("#ext-table", WAIT).await?;
    assert_eq!(path_of(&b.url().await?), "/extensions");
    shot(&b, "vip-extensions-after-kill").await?;

    b.close().await?;
    Ok(())
}
