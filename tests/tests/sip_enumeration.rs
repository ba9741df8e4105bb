//! sipvicious `svwar` scans a range that holds real extensions with REGISTER, INVITE and OPTIONS: it
//! must not single out any of them.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::process::Command;

use reqwest::StatusCode;

use pbx_tests::Lab;

const REAL: [&str; 3] = ["5005", "5010", "5017"];

/// Extensions svwar reports, from its result table (`| 5005 | reqauth |`).
fn svwar(method: &str, port: u16) -> Vec<String> {
    let out = Command::new("timeout")
        .args([
            "120",
            "svwar",
            "-e5000-5020",
            "-m",
            method,
            "-p",
            &port.to_string(),
            "--force",
            "127.0.0.1",
        ])
        .output()
        .expect("svwar is installed (Debian sipvicious)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("found nothing") || text.contains("Extension"),
        "svwar did not run: {text}"
    );
    text.lines()
        .filter_map(|l| l.strip_prefix('|'))
        .filter_map(|l| l.split('|').next())
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty() && c != "Extension")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svwar_finds_none_of_the_real_extensions() {
    let lab = Lab::start(1).await.unwrap();
    for n in REAL {
        assert_eq!(
            lab.create_extension(0, n).await.unwrap(),
            StatusCode::CREATED
        );
    }
    let port = lab.nodes[0].sip_port;
    for method in ["REGISTER", "INVITE", "OPTIONS"] {
        let found = svwar(method, port);
        let exposed: Vec<&String> = found
            .iter()
            .filter(|f| REAL.contains(&f.as_str()))
            .collect();
        assert!(
            exposed.is_empty(),
            "svwar -m {method} singled out real extensions {exposed:?} (all: {found:?})"
        );
    }
    // The node still serves after the scans.
    assert_eq!(
        lab.create_extension(0, "5030").await.unwrap(),
        StatusCode::CREATED
    );
}
