//! The browser harness: headless Chromium opens each node's HTTPS API in a real cluster (its
//! certificate from the lab's own CA) and reads the health JSON off the page; its helpers on a
//! local page.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

use pbx_tests::Lab;
use pbx_tests::browser::Browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_reads_health_from_every_node() -> anyhow::Result<()> {
    let mut lab = Lab::start(3).await?;
    let leader = lab.wait_leader(Duration::from_secs(10)).await?;
    let leader_id = lab.nodes[leader].id;
    for i in 0..lab.nodes.len() {
        lab.wait_node(i, Duration::from_secs(15)).await?;
    }

    let started = Instant::now();
    let browser = Browser::start().await?;
    eprintln!("browser started in {:?}", started.elapsed());

    for (i, node) in lab.nodes.iter().enumerate() {
        browser
            .goto(&format!("{}/api/v1/health", node.api_url()))
            .await?;
        let body = browser
            .wait_for_text("body", "\"node_id\"", Duration::from_secs(10))
            .await?;
        assert!(
            body.contains(&format!("\"node_id\":{}", node.id)),
            "node {}: {body}",
            node.id
        );
        // Chromium shows the JSON as it came, in a <pre>.
        let json = browser.text("pre").await?;
        let health: Value =
            serde_json::from_str(&json).with_context(|| format!("not JSON: {json}"))?;
        assert_eq!(health["node_id"], node.id, "{health}");
        assert_eq!(health["initialized"], true, "{health}");
        assert_eq!(health["leader"], leader_id, "{health}");
        if i == 0 {
            let shot = browser.screenshot("smoke-health").await?;
            let png = std::fs::read(&shot)?;
            assert!(png.starts_with(b"\x89PNG"), "{} is no PNG", shot.display());
        }
    }

    // The page really is the node's: loaded over HTTPS despite the CA the browser does not know.
    let url = browser.url().await?;
    assert!(url.starts_with("https://"), "{url}");
    let protocol = browser.execute("return location.protocol").await?;
    assert_eq!(protocol, "https:");
    assert!(browser.cookies().await?.is_empty(), "the API set no cookie");

    browser.close().await?;
    Ok(())
}

/// The helpers on a page of its own (no lab); then dropping the browser without closing it (a failed
/// test) leaves no chromedriver or Chromium behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helpers_work_and_a_dropped_browser_leaves_no_process() -> anyhow::Result<()> {
    let browser = Browser::start().await?;
    browser
        .goto(
            "data:text/html,<input id=name><button id=go \
             onclick=\"setTimeout(()=>{document.getElementById('out').textContent=\
             'hello '+document.getElementById('name').value},200)\">go</button><p id=out></p>",
        )
        .await?;
    browser.fill("#name", "portal").await?;
    browser.click("#go").await?;
    let out = browser
        .wait_for_text("#out", "hello portal", Duration::from_secs(5))
        .await?;
    assert_eq!(out, "hello portal");
    assert_eq!(browser.text("#out").await?, "hello portal");
    assert_eq!(browser.execute("return 6 * 7").await?, 42);
    let missing = browser
        .wait_for_css("#nowhere", Duration::from_millis(200))
        .await
        .expect_err("no such element");
    assert!(missing.to_string().contains("#nowhere"), "{missing}");
    let profile = browser.profile_dir().to_string_lossy().into_owned();
    assert!(
        !processes_naming(&profile).is_empty(),
        "Chromium runs with its profile in {profile}"
    );

    let dropping = Instant::now();
    drop(browser);
    eprintln!("dropped in {:?}", dropping.elapsed());
    let left = processes_naming(&profile);
    assert!(left.is_empty(), "still running: {left:?}");
    Ok(())
}

/// The command lines of the running processes that mention `text` (zombies have none).
fn processes_naming(text: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(text))
        .collect()
}
