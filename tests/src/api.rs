//! The admin API as the tests use it: a lab set up for scripted phones, requests whose answer must
//! have a given status, polling until an answer is what a test waits for, and the bodies of the
//! trunks and routes most tests configure.

use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::{Lab, LabClient, LabOptions};

/// A lab of `nodes` with extensions `numbers` (SIP secret `secret`), the PBX's OPTIONS pings off:
/// scripted phones (sipp, [`crate::phone::Phone`]) expect only their calls.
pub async fn lab_without_pings(nodes: u64, numbers: &[&str], secret: &str) -> (Lab, LabClient) {
    let options = LabOptions {
        sip_extra: "qualify_interval_secs = 0".into(),
        ..LabOptions::default()
    };
    Lab::with_extensions(nodes, options, numbers, secret)
        .await
        .expect("the lab starts")
}

/// What sends admin requests to node 0: a [`Lab`] or a [`LabClient`].
pub trait Admin {
    /// An admin request to node 0's API.
    fn admin(&self, method: Method, path: &str) -> RequestBuilder;
}

impl Admin for Lab {
    fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.req(0, method, path)
    }
}

impl Admin for LabClient {
    fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.req(0, method, path)
    }
}

/// Admin requests to one node of the lab (the others may be down).
pub struct OnNode<'a>(pub &'a LabClient, pub usize);

impl Admin for OnNode<'_> {
    fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.0.req(self.1, method, path)
    }
}

/// Sends `body` (if any) as admin to node 0; the status and the JSON answer (`null` for an empty
/// one).
pub async fn call(
    api: &impl Admin,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    answer(api.admin(method, path), path, body).await
}

/// The password the tests give the web accounts they create.
pub const PASSWORD: &str = "Quiet-Harbor-42x";

/// Sends `body` (if any) to node 0 as web account `user` (password [`PASSWORD`]); the status and
/// the JSON answer (`null` for an empty one).
pub async fn as_user(
    lab: &Lab,
    user: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = lab.anon(0, method, path).basic_auth(user, Some(PASSWORD));
    answer(req, path, body).await
}

async fn answer(mut req: RequestBuilder, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("the API answers");
    let status = resp.status();
    let text = resp.text().await.expect("the answer is read");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"))
    };
    (status, value)
}

/// Asserts an error answer: `status`, an error code, and a message containing each of `needles`.
pub fn expect_error(got: &(StatusCode, Value), status: StatusCode, needles: &[&str]) {
    assert_eq!(got.0, status, "{}", got.1);
    assert!(got.1["error"].is_string(), "{}", got.1);
    let msg = got.1["message"].as_str().unwrap_or_default();
    for needle in needles {
        assert!(
            msg.contains(needle),
            "message {msg:?} should mention {needle:?}"
        );
    }
}

/// Sends `body` as admin to node 0 and asserts the answer's `status`; the JSON answer.
pub async fn send(
    api: &impl Admin,
    method: Method,
    path: &str,
    body: Value,
    status: StatusCode,
) -> Value {
    let (got, answer) = call(api, method.clone(), path, Some(body)).await;
    assert_eq!(got, status, "{method} {path}: {answer}");
    answer
}

/// `POST path` with `body`, asserting `201 Created`; the JSON answer.
pub async fn create(api: &impl Admin, path: &str, body: Value) -> Value {
    send(api, Method::POST, path, body, StatusCode::CREATED).await
}

/// Sends `body` as admin to node 0 and asserts a success (any 2xx); the JSON answer.
pub async fn succeed(api: &impl Admin, method: Method, path: &str, body: Value) -> Value {
    let (status, answer) = call(api, method.clone(), path, Some(body)).await;
    assert!(status.is_success(), "{method} {path}: {status} {answer}");
    answer
}

/// Polls `GET path` on node `node` until `done` accepts the answer or `within` has passed; the
/// last answer.
pub async fn poll_node(
    client: &LabClient,
    node: usize,
    path: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let v = client.get_json(node, path).await.expect("the GET succeeds");
        if done(&v) || Instant::now() >= deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`poll_node`] on node 0.
pub async fn poll(
    client: &LabClient,
    path: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    poll_node(client, 0, path, within, done).await
}

/// `GET path` once `pred` accepts it, waiting up to 5 s.
pub async fn wait_json(client: &LabClient, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let last = poll(client, path, Duration::from_secs(5), &pred).await;
    assert!(pred(&last), "{path} never became what was wanted: {last}");
    last
}

/// The first item of `GET path`'s `field` array that `pred` accepts, waiting up to 5 s for it.
pub async fn wait_item(
    client: &LabClient,
    path: &str,
    field: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let found = wait_json(client, path, |v| {
        v[field].as_array().is_some_and(|a| a.iter().any(&pred))
    })
    .await;
    found[field]
        .as_array()
        .and_then(|a| a.iter().find(|v| pred(v)))
        .expect("the item found")
        .clone()
}

/// Whether node 0 has `count` calls up within `within`.
pub async fn calls_reach(client: &LabClient, count: u64, within: Duration) -> bool {
    let calls = poll(client, "/api/v1/calls", within, |c| c["count"] == count).await;
    calls["count"] == count
}

/// Waits up to 15 s until node 0 holds a registration of extension `number`.
pub async fn wait_registered(client: &LabClient, number: &str) {
    let path = format!("/api/v1/extensions/{number}/registrations");
    let regs = poll(client, &path, Duration::from_secs(15), |r| {
        r["registrations"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    assert!(
        regs["registrations"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{number} did not register: {regs}"
    );
}

/// The first CDR node `node` holds, waiting up to 10 s for one.
pub async fn wait_first_cdr(client: &LabClient, node: usize) -> Value {
    let cdrs = poll_node(client, node, "/api/v1/cdrs", Duration::from_secs(10), |c| {
        c["cdrs"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    cdrs["cdrs"]
        .as_array()
        .and_then(|a| a.first())
        .unwrap_or_else(|| panic!("no CDR on node {node}: {cdrs}"))
        .clone()
}

/// Asserts that node 0 holds no media port pair: every call released its media.
pub async fn assert_no_media_ports(client: &LabClient) {
    let in_use = client
        .metric(0, "pbx_media_port_pairs_in_use")
        .await
        .expect("the metrics are read");
    assert_eq!(in_use, 0.0, "media port pairs still in use");
}

/// A peer trunk `name` to `host`:`port` over UDP, never pinged.
pub fn peer_trunk(name: &str, host: &str, port: u16) -> Value {
    json!({
        "name": name,
        "kind": "peer",
        "host": host,
        "port": port,
        "transport": "udp",
        "qualify_secs": 0
    })
}

/// An inbound route `name` from DID `did` (exactly) to extension `extension`.
pub fn inbound_to_extension(name: &str, did: &str, extension: &str) -> Value {
    json!({
        "name": name,
        "did_kind": "exact",
        "did": did,
        "destination": {"type": "extension", "target": extension}
    })
}
