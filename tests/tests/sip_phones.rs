//! A real softphone (baresip) registers through the cluster, and registrations survive the loss of the
//! Raft leader.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use pbx_tests::sip_probe::{SipProbe, register_with_auth};
use pbx_tests::{Lab, LabOptions, free_sip_port};

const SECRET: &str = "Tr7!kq-Vw9zP";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_registers_as_a_phone() {
    // baresip 1.0 gives up on any 401 that offers SHA-256, even beside MD5: the default offers MD5
    // alone, so it registers out of the box.
    let options = LabOptions::default();
    let lab = Lab::start_with(3, options).await.unwrap();
    let client = lab.client();
    assert_eq!(
        client
            .create_extension_with_secret(0, "7001", SECRET)
            .await
            .unwrap(),
        StatusCode::CREATED
    );

    client.sync(1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_sip_port();
    let target = lab.nodes[1].sip_port;
    std::fs::write(
        dir.path().join("config"),
        format!(
            "module_path /usr/lib/baresip/modules\nsip_listen 127.0.0.1:{port}\nmodule g711.so\nmodule account.so\n\
             audio_player aufile,/dev/null\naudio_source aufile,/dev/null\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("accounts"),
        format!("<sip:7001@127.0.0.1:{target};transport=udp>;auth_pass={SECRET};regint=600\n"),
    )
    .unwrap();
    let mut phone = Command::new("baresip")
        .args(["-f", dir.path().to_str().unwrap(), "-t", "20"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("baresip is installed");

    let deadline = Instant::now() + Duration::from_secs(15);
    let registered = loop {
        let r = client.registrations(2, "7001").await.unwrap();
        if r["status"] != "unregistered" {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "baresip did not register: {r}\n{}",
            lab.log_tail(1)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let reg = &registered["registrations"][0];
    assert!(
        reg["user_agent"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("baresip"),
        "{reg}"
    );
    assert_eq!(reg["transport"], "udp");
    assert_eq!(reg["source"], format!("127.0.0.1:{port}"));
    let _ = phone.kill();
    let _ = phone.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_survive_killing_the_leader() {
    let mut lab = Lab::start(3).await.unwrap();
    let leader = lab.wait_leader(Duration::from_secs(10)).await.unwrap();
    let client = lab.client();
    let phones: Vec<String> = (0..20).map(|n| format!("{}", 7100 + n)).collect();
    for p in &phones {
        assert_eq!(
            client
                .create_extension_with_secret(0, p, SECRET)
                .await
                .unwrap(),
            StatusCode::CREATED
        );
    }
    for i in 0..3 {
        client.sync(i).await.unwrap();
    }
    // Phones register through every node, the leader included.
    for (n, p) in phones.iter().enumerate() {
        let node = n % 3;
        let probe = SipProbe::new(SocketAddr::from(([127, 0, 0, 1], lab.nodes[node].sip_port)))
            .await
            .unwrap();
        let resp = register_with_auth(
            &probe,
            p,
            SECRET,
            &format!("<sip:{p}@{}>", probe.local),
            None,
            &format!("kill-{p}"),
            1,
        )
        .await
        .unwrap();
        assert_eq!(resp.status, 200, "{p} via node {node}");
    }
    lab.kill(leader);
    let new_leader = lab.wait_leader(Duration::from_secs(10)).await.unwrap();
    assert_ne!(new_leader, leader);
    let client = lab.client();
    for i in (0..3).filter(|&i| i != leader) {
        for p in &phones {
            let r = client.registrations(i, p).await.unwrap();
            assert_ne!(r["status"], "unregistered", "node {i} lost {p}'s binding");
        }
    }
    // A phone can still register after the failover.
    let survivor = (leader + 1) % 3;
    let probe = SipProbe::new(SocketAddr::from((
        [127, 0, 0, 1],
        lab.nodes[survivor].sip_port,
    )))
    .await
    .unwrap();
    let resp = register_with_auth(
        &probe,
        "7100",
        SECRET,
        &format!("<sip:7100@{}>", probe.local),
        None,
        "after",
        1,
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
}
