//! [`OrchestratorClient`]: one caller's requests to the orchestrator's API.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::types::{
    AgentToken, AgentView, ComponentSpec, EnvironmentSpec, JobDetail, JobView, PromotionDetail,
    PromotionView, Release, TargetSpec, TaskLogLine, WhoAmI,
};
use crate::Secret;

/// How long a request may take.
const TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request to the orchestrator failed.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// The address is not an `http://` or `https://` URL.
    #[error("the orchestrator's address must be an http:// or https:// URL, got {0:?}")]
    Url(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    /// No answer: unreachable, a broken connection, or a timeout.
    #[error("cannot reach the orchestrator at {url}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The API refused, in its own words: `code` is one of `invalid`,
    /// `not_found`, `conflict`, `forbidden`, `unauthenticated`, `internal`
    /// (or another the API documents).
    #[error("{message} ({code})")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// An error status without the API's error body (a proxy, a wrong
    /// address).
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
    /// A success status with a body that is not the documented JSON.
    #[error("{url} answered {status} with a body that cannot be read: {source}")]
    Decode {
        url: String,
        status: StatusCode,
        #[source]
        source: serde_json::Error,
    },
}

impl OrchestratorError {
    /// The API's error code, when it answered one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, when the orchestrator answered one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. }
            | Self::Status { status, .. }
            | Self::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What a request carries.
pub enum Body {
    None,
    Json(Value),
    /// YAML text (the apply document).
    Yaml(String),
}

/// The orchestrator's API, as one caller. Cheap to clone; clones share
/// the connection pool, so [`with_token`](Self::with_token) per request
/// costs nothing.
#[derive(Clone)]
pub struct OrchestratorClient {
    /// Without a trailing slash.
    base: String,
    token: Option<Secret>,
    actor: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for OrchestratorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestratorClient")
            .field("base", &self.base)
            .field("token", &self.token)
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

/// A path segment, percent-encoded (all but RFC 3986's unreserved).
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `?k=v&…` from the pairs that have a value.
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            out.append_pair(k, v);
        }
    }
    let q = out.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

/// One page of a list: at most `limit` rows older than the row `before`.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    pub limit: Option<u32>,
    pub before: Option<String>,
}

impl OrchestratorClient {
    /// A client of the orchestrator at `base` (`http://host:port`).
    pub fn new(base: &str) -> Result<Self, OrchestratorError> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(OrchestratorError::Url(base));
        }
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(OrchestratorError::Client)?;
        Ok(Self {
            base,
            token: None,
            actor: None,
            http,
        })
    }

    /// The same client acting with `token` (an empty token counts as none).
    #[must_use]
    pub fn with_token(&self, token: Option<Secret>) -> Self {
        Self {
            token: token.filter(|t| !t.expose().is_empty()),
            ..self.clone()
        }
    }

    /// The same client naming `actor` in `X-Sextant-Actor` (read only by an
    /// orchestrator without tokens).
    #[must_use]
    pub fn with_actor(&self, actor: Option<String>) -> Self {
        Self {
            actor: actor.filter(|a| !a.trim().is_empty()),
            ..self.clone()
        }
    }

    /// The orchestrator's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request and returns the JSON answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<Value, OrchestratorError> {
        self.request(method, path, body).await
    }

    /// Sends one request and reads the answer as `T`.
    pub async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<T, OrchestratorError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        if let Some(a) = &self.actor {
            req = req.header("x-sextant-actor", a);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Yaml(text) => req.header("content-type", "application/yaml").body(text),
        };
        let transport = |source| OrchestratorError::Transport {
            url: url.clone(),
            source,
        };
        let res = req.send().await.map_err(transport)?;
        let status = res.status();
        let bytes = res.bytes().await.map_err(transport)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|source| OrchestratorError::Decode {
                url,
                status,
                source,
            });
        }
        #[derive(serde::Deserialize)]
        struct Wrapper {
            error: Detail,
        }
        #[derive(serde::Deserialize)]
        struct Detail {
            code: String,
            message: String,
        }
        match serde_json::from_slice::<Wrapper>(&bytes) {
            Ok(w) => Err(OrchestratorError::Api {
                status,
                code: w.error.code,
                message: w.error.message,
            }),
            Err(_) => Err(OrchestratorError::Status {
                url,
                status,
                body: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            }),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, OrchestratorError> {
        self.request(Method::GET, path, Body::None).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: impl Serialize,
    ) -> Result<T, OrchestratorError> {
        let body = serde_json::to_value(body).unwrap_or(Value::Null);
        self.request(Method::POST, path, Body::Json(body)).await
    }

    /// Who the API takes this caller for.
    pub async fn whoami(&self) -> Result<WhoAmI, OrchestratorError> {
        self.get("/api/v1/whoami").await
    }

    /// The environments, in promotion order.
    pub async fn environments(&self) -> Result<Vec<EnvironmentSpec>, OrchestratorError> {
        self.get("/api/v1/environments").await
    }

    /// The targets of `environment`.
    pub async fn targets(&self, environment: &str) -> Result<Vec<TargetSpec>, OrchestratorError> {
        self.get(&format!(
            "/api/v1/targets{}",
            query(&[("environment", Some(environment.to_owned()))])
        ))
        .await
    }

    pub async fn components(&self) -> Result<Vec<ComponentSpec>, OrchestratorError> {
        self.get("/api/v1/components").await
    }

    /// Releases, newest first.
    pub async fn releases(&self, page: &PageQuery) -> Result<Vec<Release>, OrchestratorError> {
        self.get(&format!(
            "/api/v1/releases{}",
            query(&[
                ("limit", page.limit.map(|l| l.to_string())),
                ("before", page.before.clone()),
            ])
        ))
        .await
    }

    /// A release by id or name.
    pub async fn release(&self, release: &str) -> Result<Release, OrchestratorError> {
        self.get(&format!("/api/v1/releases/{}", seg(release)))
            .await
    }

    /// Promotions, newest first: in any of `states` (none: all), into
    /// `environment`, of `release` (id or name).
    pub async fn promotions(
        &self,
        states: &[&str],
        environment: Option<&str>,
        release: Option<&str>,
        page: &PageQuery,
    ) -> Result<Vec<PromotionView>, OrchestratorError> {
        self.get(&format!(
            "/api/v1/promotions{}",
            query(&[
                ("state", (!states.is_empty()).then(|| states.join(","))),
                ("environment", environment.map(str::to_owned)),
                ("release", release.map(str::to_owned)),
                ("limit", page.limit.map(|l| l.to_string())),
                ("before", page.before.clone()),
            ])
        ))
        .await
    }

    pub async fn promotion(&self, id: &str) -> Result<PromotionDetail, OrchestratorError> {
        self.get(&format!("/api/v1/promotions/{}", seg(id))).await
    }

    /// Requests a promotion of `release` (id or name) into `environment`.
    pub async fn promote(
        &self,
        release: &str,
        environment: &str,
        reason: Option<&str>,
    ) -> Result<PromotionDetail, OrchestratorError> {
        self.post(
            "/api/v1/promotions",
            serde_json::json!({ "release": release, "environment": environment, "reason": reason }),
        )
        .await
    }

    /// Approves (`approve`) or rejects a promotion as this caller.
    pub async fn decide(
        &self,
        id: &str,
        approve: bool,
        comment: Option<&str>,
    ) -> Result<PromotionDetail, OrchestratorError> {
        let verb = if approve { "approve" } else { "reject" };
        self.post(
            &format!("/api/v1/promotions/{}/{verb}", seg(id)),
            serde_json::json!({ "comment": comment }),
        )
        .await
    }

    pub async fn cancel(&self, id: &str) -> Result<PromotionDetail, OrchestratorError> {
        self.post(
            &format!("/api/v1/promotions/{}/cancel", seg(id)),
            serde_json::json!({}),
        )
        .await
    }

    /// Opens or closes a promotion's manual gate.
    pub async fn gate(
        &self,
        id: &str,
        gate: &str,
        open: bool,
        comment: Option<&str>,
    ) -> Result<PromotionDetail, OrchestratorError> {
        self.post(
            &format!("/api/v1/promotions/{}/gates/{}", seg(id), seg(gate)),
            serde_json::json!({ "action": if open { "open" } else { "close" }, "comment": comment }),
        )
        .await
    }

    /// Jobs, newest first (`active`: unfinished only).
    pub async fn jobs(
        &self,
        active: bool,
        page: &PageQuery,
    ) -> Result<Vec<JobView>, OrchestratorError> {
        self.get(&format!(
            "/api/v1/jobs{}",
            query(&[
                ("active", active.then(|| "true".to_owned())),
                ("limit", page.limit.map(|l| l.to_string())),
                ("before", page.before.clone()),
            ])
        ))
        .await
    }

    pub async fn job(&self, id: &str) -> Result<JobDetail, OrchestratorError> {
        self.get(&format!("/api/v1/jobs/{}", seg(id))).await
    }

    /// A task's log lines after line `after`.
    pub async fn task_logs(
        &self,
        job: &str,
        task: &str,
        after: i64,
    ) -> Result<Vec<TaskLogLine>, OrchestratorError> {
        self.get(&format!(
            "/api/v1/jobs/{}/tasks/{}/logs?after={after}",
            seg(job),
            seg(task)
        ))
        .await
    }

    /// Asks for a job's rollback.
    pub async fn rollback(&self, job: &str) -> Result<JobDetail, OrchestratorError> {
        self.post(
            &format!("/api/v1/jobs/{}/rollback", seg(job)),
            serde_json::json!({}),
        )
        .await
    }

    pub async fn agents(&self) -> Result<Vec<AgentView>, OrchestratorError> {
        self.get("/api/v1/agents").await
    }

    /// Revokes an agent (id or name).
    pub async fn revoke_agent(&self, agent: &str) -> Result<AgentView, OrchestratorError> {
        self.post(
            &format!("/api/v1/agents/{}/revoke", seg(agent)),
            serde_json::json!({}),
        )
        .await
    }

    /// A one-time registration token for a new agent.
    pub async fn create_agent_token(
        &self,
        ttl_seconds: Option<u64>,
    ) -> Result<AgentToken, OrchestratorError> {
        self.post(
            "/api/v1/agents/tokens",
            serde_json::json!({ "ttl_seconds": ttl_seconds }),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_encode_and_skip_missing_values() {
        assert_eq!(query(&[("a", None)]), "");
        assert_eq!(
            query(&[
                ("state", Some("a,b".into())),
                ("x", None),
                ("release", Some("r 1&".into()))
            ]),
            "?state=a%2Cb&release=r+1%26"
        );
        assert_eq!(seg("a/b c~"), "a%2Fb%20c~");
    }

    #[test]
    fn only_http_addresses() {
        assert!(OrchestratorClient::new("ftp://x").is_err());
        let c = OrchestratorClient::new("http://127.0.0.1:8081/").unwrap();
        assert_eq!(c.base(), "http://127.0.0.1:8081");
        assert!(c.with_token(Some(Secret::new(""))).token.is_none());
    }
}
