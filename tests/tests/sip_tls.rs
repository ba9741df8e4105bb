//! A phone registers over SIP/TLS: the node presents its certificate (signed by the cluster CA) and the
//! binding records the TLS transport.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

use pbx_tests::Lab;
use pbx_tests::sip_probe::{Challenge, SipResponse};

const SECRET: &str = "Tr7!kq-Vw9zP";

async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> SipResponse {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            return SipResponse::parse(&text).expect("a SIP response");
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("an answer within 5 s")
            .expect("a readable stream");
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn register(local: &str, server: &str, cseq: u32, auth: &str) -> String {
    format!(
        "REGISTER sip:{server};transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKtls{cseq};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:9001@{server}>;tag=tls1\r\nTo: <sip:9001@{server}>\r\nCall-ID: tls-call\r\n\
         CSeq: {cseq} REGISTER\r\nContact: <sip:9001@{local};transport=tls>\r\n{auth}User-Agent: tls-phone\r\nContent-Length: 0\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_registers_over_tls() {
    let lab = Lab::start(1).await.unwrap();
    assert_eq!(
        lab.client()
            .create_extension_with_secret(0, "9001", SECRET)
            .await
            .unwrap(),
        StatusCode::CREATED
    );

    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(lab.ca_path()).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let port = lab.nodes[0].sip_tls_port;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let local = tcp.local_addr().unwrap().to_string();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("the node's certificate verifies against the cluster CA");
    let server = format!("127.0.0.1:{port}");

    tls.write_all(register(&local, &server, 1, "").as_bytes())
        .await
        .unwrap();
    let first = read_response(&mut tls).await;
    assert_eq!(first.status, 401);
    let challenge = Challenge::parse(&first.headers("WWW-Authenticate")[0]).unwrap();
    let auth = challenge.answer(
        "9001",
        SECRET,
        "REGISTER",
        &format!("sip:{server};transport=tls"),
        1,
        "c0ffee01",
    );
    tls.write_all(register(&local, &server, 2, &format!("Authorization: {auth}\r\n")).as_bytes())
        .await
        .unwrap();
    let ok = read_response(&mut tls).await;
    assert_eq!(ok.status, 200, "{}", ok.raw);

    let regs = lab.client().registrations(0, "9001").await.unwrap();
    assert_eq!(regs["registrations"][0]["transport"], "tls", "{regs}");
    assert_eq!(regs["registrations"][0]["source"], local);
}
