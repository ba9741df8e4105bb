//! A real browser for the web portal's tests: headless Chromium driven over WebDriver by a
//! `chromedriver` this module starts, through [`fantoccini`].
//!
//! Chromium trusts the lab's self-signed cluster CA because the session accepts insecure
//! certificates; it runs without its sandbox (the tests run as root) and with a fresh profile in a
//! temporary directory. chromedriver runs in its own process group, and the whole group (the driver,
//! Chromium and every helper process it forked) is killed when the [`Browser`] is dropped.
//!
//! Debian's `chromium` and `chromium-driver` packages are needed (`./deploy/prereqs.sh --sip-tools`
//! installs them); without them [`Browser::start`] fails and says so.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
pub use fantoccini::cookies::Cookie;
pub use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::free_port;
use crate::process::KillOnDrop;

/// The Chromium that chromedriver launches (Debian's launcher script).
const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian's `chromium-driver` puts chromedriver, for when it is not on `PATH`.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long chromedriver may take to answer after it is spawned.
const DRIVER_START: Duration = Duration::from_secs(20);
/// How often the `wait_for_*` helpers look again.
const POLL: Duration = Duration::from_millis(50);

/// A headless Chromium session. Dropping it kills chromedriver and the browser; [`Browser::close`]
/// ends the session politely first.
pub struct Browser {
    client: Client,
    /// Declared before `profile`: the browser is dead before its profile directory is removed.
    _driver: Driver,
    /// Chromium's `--user-data-dir` and chromedriver's log.
    profile: tempfile::TempDir,
}

/// chromedriver, the leader of its own process group.
struct Driver(KillOnDrop);

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver, Chromium and its zygote, renderer and utility processes;
        // chromedriver itself is reaped here.
        let group = self.0.0.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.0.stop();
        // Dead before the profile directory is removed, within a bound. (Orphans are zombies until
        // init reaps them, which can take seconds: those no longer count.)
        let deadline = Instant::now() + Duration::from_secs(2);
        while live_in_group(group) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether a process of group `group` still runs (is neither a zombie nor dead).
fn live_in_group(group: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp = fields.nth(1).and_then(|f| f.parse::<u32>().ok());
        pgrp == Some(group) && state != "Z" && state != "X"
    })
}

impl Browser {
    /// Starts chromedriver on a free port of 127.0.0.1, waits until it is ready and opens a
    /// headless Chromium session (window 1280x900, which leaves a 1280x757 viewport; insecure
    /// certificates accepted).
    pub async fn start() -> anyhow::Result<Self> {
        let driver_bin = chromedriver()?;
        ensure!(
            Path::new(CHROMIUM).is_file(),
            "{CHROMIUM} not found: install Debian's chromium (./deploy/prereqs.sh --sip-tools)"
        );
        let profile = tempfile::Builder::new().prefix("pbx-browser-").tempdir()?;
        let log_path = profile.path().join("chromedriver.log");
        let log = std::fs::File::create(&log_path)?;
        let port = free_port(false);
        ensure!(port != 0, "no free port for chromedriver");
        let child = Command::new(&driver_bin)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", driver_bin.display()))?;
        let mut driver = Driver(KillOnDrop(child));
        let url = format!("http://127.0.0.1:{port}");
        wait_ready(&mut driver, &url, &log_path).await?;

        let user_data = profile.path().join("chromium");
        let args = vec![
            "--headless=new".to_owned(),
            // Chromium refuses to start as root with its sandbox.
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            // A small /dev/shm (containers) crashes renderers; /tmp always has room.
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!("--user-data-dir={}", user_data.display()),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let Value::Object(capabilities) = capabilities else {
            bail!("capabilities are a JSON object");
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .with_context(|| {
                format!(
                    "chromedriver opened no Chromium session; its log:\n{}",
                    read_log(&log_path)
                )
            })?;
        Ok(Self {
            client,
            _driver: driver,
            profile,
        })
    }

    /// The WebDriver client, for what the helpers here do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Navigates to `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    /// The page's current URL.
    pub async fn url(&self) -> anyhow::Result<String> {
        Ok(self.client.current_url().await?.to_string())
    }

    /// Saves a PNG of the viewport as `<target>/screenshots/<name>.png`; its path.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self
            .client
            .screenshot()
            .await
            .context("taking a screenshot")?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// The first element `selector` (CSS) matches, waiting up to `timeout` for one to appear.
    pub async fn wait_for_css(&self, selector: &str, timeout: Duration) -> anyhow::Result<Element> {
        let deadline = Instant::now() + timeout;
        loop {
            let error = match self.client.find(Locator::Css(selector)).await {
                Ok(element) => return Ok(element),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                bail!(
                    "nothing matched {selector:?} within {timeout:?} on {}: {error}",
                    self.where_now().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Clicks `selector`, whose action loads the page anew (a form that reloads or redirects once
    /// it succeeds), and waits up to `timeout` until the new document has finished loading. Without
    /// the wait the next step can run against the old page while it is being replaced.
    pub async fn click_and_wait_for_load(
        &self,
        selector: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.execute("window.__pbxOldDocument = true; return true")
            .await?;
        self.click(selector).await?;
        let deadline = Instant::now() + timeout;
        loop {
            // A script run while the page is being replaced may fail: that is a "not yet".
            let loaded = self
                .client
                .execute(
                    "return window.__pbxOldDocument !== true && document.readyState === 'complete'",
                    Vec::new(),
                )
                .await;
            if matches!(loaded, Ok(Value::Bool(true))) {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "clicking {selector:?} did not load a new page within {timeout:?} (now on {})",
                self.where_now().await
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The text of the first element `selector` (CSS) matches whose text contains `text`, waiting
    /// up to `timeout` for one.
    pub async fn wait_for_text(
        &self,
        selector: &str,
        text: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            seen.clear();
            if let Ok(elements) = self.client.find_all(Locator::Css(selector)).await {
                for element in elements {
                    // An element replaced since it was found is simply looked at again next time.
                    if let Ok(got) = element.text().await {
                        if got.contains(text) {
                            return Ok(got);
                        }
                        seen.push(got);
                    }
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "no {selector:?} contained {text:?} within {timeout:?} on {}; their text: {seen:?}",
                    self.where_now().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Clears the input `selector` (CSS) matches and types `value` into it.
    pub async fn fill(&self, selector: &str, value: &str) -> anyhow::Result<()> {
        let element = self.find(selector).await?;
        element
            .clear()
            .await
            .with_context(|| format!("clearing {selector:?}"))?;
        element
            .send_keys(value)
            .await
            .with_context(|| format!("typing into {selector:?}"))
    }

    /// Clicks the element `selector` (CSS) matches.
    pub async fn click(&self, selector: &str) -> anyhow::Result<()> {
        self.find(selector)
            .await?
            .click()
            .await
            .with_context(|| format!("clicking {selector:?}"))
    }

    /// The rendered text of the element `selector` (CSS) matches.
    pub async fn text(&self, selector: &str) -> anyhow::Result<String> {
        self.find(selector)
            .await?
            .text()
            .await
            .with_context(|| format!("reading the text of {selector:?}"))
    }

    /// Runs `js` as a function body in the page (`return` gives a value back); what it returned.
    pub async fn execute(&self, js: &str) -> anyhow::Result<Value> {
        self.client
            .execute(js, Vec::new())
            .await
            .context("running a script in the page")
    }

    /// Every cookie the browser holds for the current page, with its attributes (`http_only`,
    /// `secure`, `same_site`, `path`, expiry) as the browser stored them.
    pub async fn cookies(&self) -> anyhow::Result<Vec<Cookie<'static>>> {
        self.client
            .get_all_cookies()
            .await
            .context("reading the cookies")
    }

    /// The cookie `name` of the current page, if the browser holds one.
    pub async fn cookie(&self, name: &str) -> anyhow::Result<Option<Cookie<'static>>> {
        Ok(self.cookies().await?.into_iter().find(|c| c.name() == name))
    }

    /// Ends the session (Chromium quits); chromedriver is killed as the browser is dropped.
    pub async fn close(self) -> anyhow::Result<()> {
        self.client
            .clone()
            .close()
            .await
            .context("ending the browser session")
    }

    /// The temporary directory holding Chromium's profile and chromedriver's log.
    pub fn profile_dir(&self) -> &Path {
        self.profile.path()
    }

    /// The element `selector` (CSS) matches now.
    async fn find(&self, selector: &str) -> anyhow::Result<Element> {
        match self.client.find(Locator::Css(selector)).await {
            Ok(element) => Ok(element),
            Err(e) => bail!("{selector:?} not found on {}: {e}", self.where_now().await),
        }
    }

    /// The current URL, for error messages.
    async fn where_now(&self) -> String {
        self.url()
            .await
            .unwrap_or_else(|e| format!("(unknown page: {e})"))
    }
}

/// chromedriver: on `PATH`, else where Debian puts it.
fn chromedriver() -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromedriver"))
            .find(|p| p.is_file())
    });
    match on_path {
        Some(p) => Ok(p),
        None if Path::new(CHROMEDRIVER).is_file() => Ok(CHROMEDRIVER.into()),
        None => bail!(
            "chromedriver not found on PATH nor at {CHROMEDRIVER}: install Debian's chromium-driver \
             (./deploy/prereqs.sh --sip-tools)"
        ),
    }
}

/// Waits until chromedriver at `url` reports itself ready, failing early if it exits.
async fn wait_ready(driver: &mut Driver, url: &str, log: &Path) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + DRIVER_START;
    loop {
        if let Some(status) = driver.0.exited(Duration::ZERO).await {
            bail!(
                "chromedriver exited ({status}); its log:\n{}",
                read_log(log)
            );
        }
        let ready = match http.get(format!("{url}/status")).send().await {
            Ok(resp) => resp
                .json::<Value>()
                .await
                .is_ok_and(|v| v["value"]["ready"] == true),
            Err(_) => false,
        };
        if ready {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "chromedriver did not answer on {url} within {DRIVER_START:?}; its log:\n{}",
            read_log(log)
        );
        tokio::time::sleep(POLL).await;
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()))
}

/// `<target>/screenshots`: `$CARGO_TARGET_DIR` (relative to the workspace) or the workspace's
/// `target`.
fn screenshot_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().unwrap_or(manifest);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| workspace.join(dir))
        .unwrap_or_else(|| workspace.join("target"));
    target.join("screenshots")
}
