//! Malformed SIP gets a `400` with a reason (or is dropped when it cannot be answered), unusual but valid
//! forms are understood, and the node keeps serving throughout.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use pbx_tests::Lab;
use pbx_tests::sip_probe::{SipProbe, SipResponse, register_with_auth};

const SECRET: &str = "Tr7!kq-Vw9zP";

fn options(probe: &SipProbe, extra: &str) -> String {
    format!(
        "OPTIONS sip:{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{b:x}\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{local}>;tag=1\r\nTo: <sip:{srv}>\r\nCall-ID: {b:x}\r\nCSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n",
        srv = probe.server,
        local = probe.local,
        b = rand_u64()
    )
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_answered_or_dropped_and_the_node_keeps_serving() {
    let lab = Lab::start(1).await.unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], lab.nodes[0].sip_port));
    let probe = SipProbe::new(addr).await.unwrap();
    let wait = Duration::from_millis(700);

    // Answerable but wrong: missing mandatory headers, a CSeq for another method, a short body.
    let valid = options(&probe, "");
    let cases = [
        valid.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"),
        valid.replace("Content-Length: 0", "Content-Length: 50"),
        valid.replace("CSeq: 1 OPTIONS", "CSeq: banana OPTIONS"),
    ];
    for (i, bad) in cases.iter().enumerate() {
        let answer = probe.send_raw(bad.as_bytes(), wait).await;
        let resp = SipResponse::parse(answer.as_deref().unwrap_or(""))
            .unwrap_or_else(|_| panic!("case {i}: no answer"));
        assert_eq!(resp.status, 400, "case {i}: {}", resp.raw);
        assert!(
            !resp.reason.is_empty() && resp.reason != "Bad Request",
            "case {i}: the reason says what is wrong: {}",
            resp.reason
        );
    }
    // Unanswerable: garbage, truncation, NUL bytes, an oversized datagram. Dropped, no crash.
    let truncated = valid[..valid.len() / 2].to_owned();
    // Without a Call-ID no valid response can be built.
    let no_call_id = valid.replace("Call-ID", "X-Call-ID");
    let mut with_nul = valid.clone().into_bytes();
    with_nul[10] = 0;
    let oversized = format!("{}{}", valid.trim_end(), "X".repeat(70_000));
    for bad in [
        b"\x16\x03\x01garbage".to_vec(),
        truncated.into_bytes(),
        no_call_id.into_bytes(),
        with_nul,
        oversized.into_bytes(),
        vec![0xFF; 1400],
    ] {
        let answer = probe.send_raw(&bad, Duration::from_millis(300)).await;
        if let Some(a) = answer {
            assert!(
                a.starts_with("SIP/2.0 4"),
                "only a 4xx may answer garbage: {a}"
            );
        }
    }

    // Valid but unusual: compact headers, folded lines, odd spacing, LF-only line ends.
    let compact = format!(
        "OPTIONS sip:{srv} SIP/2.0\r\nv: SIP/2.0/UDP {local};branch=z9hG4bKc1\r\nMax-Forwards: 70\r\nf: <sip:p@{local}>;tag=1\r\nt: <sip:{srv}>\r\ni: compact-1\r\nCSeq   :   1 OPTIONS\r\nSubject: a\r\n  folded\r\nl: 0\r\n\r\n",
        srv = probe.server,
        local = probe.local
    );
    let resp = probe.send(&compact, Duration::from_secs(3)).await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.raw);
    let lf_only = options(&probe, "").replace("\r\n", "\n");
    let resp = probe.send(&lf_only, Duration::from_secs(3)).await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.raw);

    // TCP: a missing Content-Length closes the connection; the listener stays up.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        options(&probe, "")
            .replace("Content-Length: 0\r\n", "")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || text.starts_with("SIP/2.0 400"), "{text}");

    // And after all that, a phone still registers.
    assert_eq!(
        lab.client()
            .create_extension_with_secret(0, "6001", SECRET)
            .await
            .unwrap(),
        StatusCode::CREATED
    );
    let fresh = SipProbe::new(addr).await.unwrap();
    let ok = register_with_auth(
        &fresh,
        "6001",
        SECRET,
        &format!("<sip:6001@{}>", fresh.local),
        None,
        "m1",
        1,
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200);
}
