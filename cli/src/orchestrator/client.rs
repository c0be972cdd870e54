//! A small client of the orchestrator's REST API: the caller's identity on
//! every request, and `{"error": {"code", "message"}}` turned into an
//! [`ApiError`] with an exit code.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::Value;

use super::{ClientArgs, Output};

/// An error answered by the orchestrator's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The API's stable code: `invalid`, `not_found`, `conflict`,
    /// `forbidden`, `unauthenticated`, `internal`.
    pub code: String,
    pub message: String,
}

impl ApiError {
    /// The process exit code for this error: 2 invalid input, 3 forbidden
    /// or unauthenticated, 4 not found, 5 conflict, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self.code.as_str() {
            "invalid" => 2,
            "forbidden" | "unauthenticated" => 3,
            "not_found" => 4,
            "conflict" => 5,
            _ => 1,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}

/// What a request carries.
pub enum Body {
    None,
    Json(Value),
    /// YAML text (the apply document).
    Yaml(String),
}

/// The orchestrator's API, as one caller.
pub struct Client {
    base: String,
    token: Option<String>,
    actor: Option<String>,
    pub output: Output,
    http: reqwest::Client,
}

impl Client {
    pub fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        let base = args.orchestrator.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            bail!("--orchestrator must be an http:// URL, got {base:?}");
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            base,
            token: args.token.clone(),
            actor: args.actor.clone().filter(|a| !a.trim().is_empty()),
            output: args.output,
            http,
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(Method::GET, path, Body::None).await
    }

    pub async fn post(&self, path: &str, body: Body) -> anyhow::Result<Value> {
        self.send(Method::POST, path, body).await
    }

    /// Sends one request and returns the JSON answer, or the API's error as
    /// an [`ApiError`].
    pub async fn send(&self, method: Method, path: &str, body: Body) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(a) = &self.actor {
            req = req.header("x-sextant-actor", a);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Yaml(text) => req.header("content-type", "application/yaml").body(text),
        };
        let res = req.send().await.with_context(|| {
            format!(
                "cannot reach the orchestrator at {url} (set --orchestrator or \
                 SEXTANT_ORCHESTRATOR_URL; is `sextant up` or `sextant orchestrator` running?)"
            )
        })?;
        let status = res.status();
        let text = res
            .text()
            .await
            .with_context(|| format!("cannot read the answer from {url}"))?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return body
                .with_context(|| format!("{url} answered {status} without JSON: {text:.200}"));
        }
        let error = body.as_ref().map(|b| &b["error"]);
        match error.and_then(|e| Some((e["code"].as_str()?, e["message"].as_str()?))) {
            Some((code, message)) => Err(ApiError {
                code: code.to_owned(),
                message: message.to_owned(),
            }
            .into()),
            None => bail!("{url} answered {status}: {text:.200}"),
        }
    }
}

/// A string field of a JSON value, or "".
pub fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// `2026-11-23T16:40:01.5Z` → `2026-11-23 16:40:01`.
pub fn short_time(v: &Value) -> String {
    let t = s(v);
    if t.len() >= 19 && t.as_bytes()[10] == b'T' {
        format!("{} {}", &t[..10], &t[11..19])
    } else {
        t.to_owned()
    }
}

/// `sha256:0123456789abcdef…` → `sha256:0123456789ab`.
pub fn short_digest(d: &str) -> String {
    match d.strip_prefix("sha256:") {
        Some(hex) => format!("sha256:{}", &hex[..12.min(hex.len())]),
        None => d.to_owned(),
    }
}

pub fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.set_header(header.to_vec());
    t
}
