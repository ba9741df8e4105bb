//! Tests that kill the VIP owner run inside the namespace lab (`deploy/lab-netns.sh`): the test
//! binary starts itself again in the phones' namespace, where the VIP is reachable and the nodes
//! run in namespaces of their own.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::sipp::Sipp;
use crate::topology;
use crate::{Lab, LabClient, LabOptions};

fn lab_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/lab-netns.sh")
}

fn pbx_namespaces() -> bool {
    let out = Command::new("ip").args(["netns", "list"]).output();
    out.is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.starts_with("pbx-"))
    })
}

/// Removes the namespace lab when dropped, pass or fail.
struct LabDown;

impl Drop for LabDown {
    fn drop(&mut self) {
        let _ = Command::new(lab_script()).arg("down").status();
    }
}

/// Builds the namespace lab (`deploy/lab-netns.sh up 3`), runs the ignored test `inner` of the
/// calling test binary in the phones' namespace (within 150 s) with `inside` set in its environment,
/// and removes the lab. Lines of its output starting `failover:` are printed. Needs root, `ip`,
/// `nft` and `arping`.
pub fn in_namespace_lab(inside: &str, inner: &str) {
    // Another binary's lab is left to finish first, for a while.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pbx_namespaces() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let _down = LabDown;
    let _ = Command::new(lab_script()).arg("down").status();
    let up = Command::new(lab_script())
        .args(["up", "3"])
        .output()
        .expect("the lab script runs");
    assert!(
        up.status.success(),
        "the namespace lab did not come up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let out = Command::new("timeout")
        .args(["150", "ip", "netns", "exec", "pbx-ph1"])
        .arg(std::env::current_exe().expect("the test binary's path"))
        .args(["--exact", inner, "--ignored", "--nocapture"])
        .env(inside, "1")
        .env("PBX_BIN", crate::pbx_bin())
        .output()
        .expect("the test binary runs in the namespace");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{inner} failed:\n{text}"
    );
    for line in text.lines().filter(|l| l.starts_with("failover:")) {
        eprintln!("{line}");
    }
}

/// Whether this test binary runs inside the namespace lab (the variable `inside` set by
/// [`in_namespace_lab`]); says it is skipped when not.
pub fn inside(inside: &str) -> bool {
    let here = std::env::var_os(inside).is_some();
    if !here {
        eprintln!("not inside the namespace lab: skipped");
    }
    here
}

/// [`vip_lab`] with the OPTIONS pings to phones off (the tests' phones do not answer them).
pub async fn vip_lab_without_pings(numbers: &[&str], secret: &str) -> (Lab, LabClient, usize) {
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 0".into(),
        ..LabOptions::default()
    };
    vip_lab(options, numbers, secret).await
}

/// A 3-node lab in the namespaces (`options` with `netns` set) with extensions `numbers`, a
/// signed-in client whose requests give up after 1.5 s (a killed node must not stall a test), and
/// the node that owns the VIP.
pub async fn vip_lab(
    options: LabOptions,
    numbers: &[&str],
    secret: &str,
) -> (Lab, LabClient, usize) {
    let options = LabOptions {
        netns: true,
        ..options
    };
    let (lab, client) = Lab::with_extensions(3, options, numbers, secret)
        .await
        .expect("the lab starts");
    let client = client
        .with_session()
        .await
        .expect("a session")
        .with_timeout(Duration::from_millis(1500));
    let owner = vip_owner(&client, lab.nodes.len(), None, Duration::from_secs(20)).await;
    (lab, client, owner)
}

/// The node that alone claims the VIP (not `not`), waiting up to `within`.
pub async fn vip_owner(
    client: &LabClient,
    nodes: usize,
    not: Option<usize>,
    within: Duration,
) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let mut owners = Vec::new();
        for i in (0..nodes).filter(|&i| Some(i) != not) {
            if let Ok(h) = client.health(i).await
                && h["vip_owner"] == true
            {
                owners.push(i);
            }
        }
        if let [owner] = owners[..] {
            return owner;
        }
        assert!(Instant::now() < deadline, "no single VIP owner: {owners:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Phone `k` on the lab's phone host: fixed ports, for the lab's namespace is this test's alone
/// (the lab's free-port checks look at 127.0.0.1 only).
pub fn on_phone_host(sipp: Sipp, k: u16) -> Sipp {
    let (sip, media) = (5062 + k, 40_000 + 10 * k);
    sipp.args(["-i", &topology::PHONES_A.to_string()]).args([
        "-p",
        &sip.to_string(),
        "-mp",
        &media.to_string(),
    ])
}
