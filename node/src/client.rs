//! A small HTTPS client for the admin API, used by `pbx cluster …`, `pbx api`, `pbx trunks` and the
//! demo.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    user: String,
    password: String,
}

impl AdminClient {
    /// `base` is `https://host:port`; `ca_pem` is the cluster CA that signed the node certificates.
    pub fn new(base: &str, ca_pem: &Path, user: &str, password: &str) -> anyhow::Result<Self> {
        let pem = std::fs::read(ca_pem).with_context(|| format!("reading {}", ca_pem.display()))?;
        let ca = reqwest::Certificate::from_pem(&pem).context("parsing the cluster CA")?;
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(120))
            .build()
            .context("building the HTTPS client")?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let resp = self
            .http
            .delete(self.url(path))
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await?;
        check(resp).await.map(drop)
    }

    /// Any method on any path, with an optional JSON body; the JSON answer (`null` for none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .context("calling the API")?;
        let bytes = check(resp)
            .await?
            .bytes()
            .await
            .context("reading the API answer")?;
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).context("the API answer is not JSON")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = req
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .context("calling the API")?;
        check(resp)
            .await?
            .json()
            .await
            .context("reading the API answer")
    }
}

async fn check(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let msg = body
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or("no details");
    anyhow::bail!("API answered {status}: {msg}")
}
