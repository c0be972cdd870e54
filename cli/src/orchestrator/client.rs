//! A small client of the orchestrator's REST API: the caller's identity on
//! every request, and `{"error": {"code", "message"}}` turned into an
//! [`ApiError`] with an exit code.

use std::fmt;

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

pub use sextant_kit::orchestrator::Body;
use sextant_kit::orchestrator::{OrchestratorClient, OrchestratorError};

/// The orchestrator's API, as one caller, with the CLI's output format.
pub struct Client {
    api: OrchestratorClient,
    pub output: Output,
}

impl Client {
    pub fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        let api = OrchestratorClient::new(&args.orchestrator)
            .map_err(|_| {
                anyhow::anyhow!(
                    "--orchestrator must be an http:// URL, got {:?}",
                    args.orchestrator
                )
            })?
            .with_token(args.token.clone().map(sextant_kit::Secret::new))
            .with_actor(args.actor.clone());
        Ok(Self {
            api,
            output: args.output,
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
        match self.api.send(method, path, body).await {
            Ok(v) => Ok(v),
            Err(OrchestratorError::Api { code, message, .. }) => {
                Err(ApiError { code, message }.into())
            }
            Err(OrchestratorError::Transport { url, source }) => Err(anyhow::anyhow!(
                "cannot reach the orchestrator at {url} (set --orchestrator or \
                 SEXTANT_ORCHESTRATOR_URL; is `sextant up` or `sextant orchestrator` running?): {source}"
            )),
            Err(e) => Err(e.into()),
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
