//! The policy webhook gate: an HTTP endpoint of the user's decides.
//!
//! The gate POSTs the promotion as JSON ([`WebhookRequest`]) and expects
//! `200` with `{"decision": "allow"|"deny"|"pending", "reason": "…"}` within
//! the gate's timeout (default 10 s). Anything else — another status, a
//! timeout, a connection error, a body that is not that JSON, an unknown
//! decision — denies, naming what went wrong.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::hub::{error_chain, snippet};
use super::{Decision, GateContext};
use crate::domain::Span;

/// The timeout when the gate names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read from a webhook.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// The longest reason kept from a webhook's answer.
const MAX_REASON_CHARS: usize = 1000;

/// Why a webhook gave no decision; the URL is said once, by the caller.
#[derive(Debug, thiserror::Error)]
enum AskError {
    #[error("invalid URL: {source}")]
    Url {
        #[source]
        source: url::ParseError,
    },
    #[error("invalid URL: scheme {scheme:?} is not http(s)")]
    Scheme { scheme: String },
    #[error("no answer within {}", super::human(*after))]
    Timeout { after: Duration },
    /// The request failed connecting (`source` has no URL).
    #[error("cannot connect: {}", error_chain(source))]
    Connect {
        #[source]
        source: reqwest::Error,
    },
    /// The request failed otherwise (`source` has no URL).
    #[error("{}", error_chain(source))]
    Request {
        #[source]
        source: reqwest::Error,
    },
    #[error("answer larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// Not `200`; `body` is the start of the answer.
    #[error("answered {status}: {body}")]
    Status {
        status: reqwest::StatusCode,
        body: String,
    },
    /// Not the expected JSON; `body` is the start of the answer.
    #[error(
        "answer is not {{\"decision\": \"allow\"|\"deny\"|\"pending\", \"reason\": …}} \
         ({source}): {body}"
    )]
    Malformed {
        #[source]
        source: serde_json::Error,
        body: String,
    },
    #[error("unknown decision {decision:?} (expected allow, deny or pending)")]
    Decision { decision: String },
}

/// What the gate POSTs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRequest {
    pub promotion_id: String,
    pub tenant: String,
    pub release: WebhookRelease,
    /// The environment promoted into.
    pub environment: String,
    /// The environment before it; null for the first.
    pub previous_environment: Option<String>,
    pub requested_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRelease {
    pub name: String,
    pub components: Vec<WebhookComponent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookComponent {
    pub component: String,
    /// `repository@sha256:…`
    pub image: String,
    /// `sha256:…`
    pub digest: String,
}

impl WebhookRequest {
    pub fn new(ctx: &GateContext<'_>) -> Self {
        Self {
            promotion_id: ctx.promotion_id.to_owned(),
            tenant: ctx.tenant.to_owned(),
            release: WebhookRelease {
                name: ctx.release.name.clone(),
                components: ctx
                    .release
                    .components
                    .iter()
                    .map(|c| WebhookComponent {
                        component: c.component.clone(),
                        image: c.image.clone(),
                        digest: c.digest.clone(),
                    })
                    .collect(),
            },
            environment: ctx.environment.name.clone(),
            previous_environment: ctx.previous_environment.map(str::to_owned),
            requested_by: ctx.requested_by.to_owned(),
        }
    }
}

/// What a webhook answers.
#[derive(Debug, Deserialize)]
struct WebhookAnswer {
    decision: String,
    #[serde(default)]
    reason: Option<String>,
}

/// The gate.
pub(super) async fn evaluate(
    name: &str,
    url: &str,
    timeout: Option<Span>,
    ctx: &GateContext<'_>,
) -> (Decision, String) {
    let timeout = timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
    let body = WebhookRequest::new(ctx);
    // The request's own timeout covers connecting and the body; the outer
    // one also bounds anything reqwest does not.
    let call = ask(ctx.http, url, &body, timeout);
    let answer = match tokio::time::timeout(timeout, call).await {
        Ok(answer) => answer,
        Err(_) => Err(AskError::Timeout { after: timeout }),
    };
    match answer {
        Ok((decision, reason)) => {
            let said = match decision {
                Decision::Allow => "allows",
                Decision::Deny => "denies",
                Decision::Pending => "says pending",
            };
            let reason = if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            };
            (decision, format!("webhook {name:?} {said}{reason}"))
        }
        Err(e) => (Decision::Deny, format!("webhook {name:?} at {url}: {e}")),
    }
}

async fn ask(
    http: &reqwest::Client,
    url: &str,
    body: &WebhookRequest,
    timeout: Duration,
) -> Result<(Decision, String), AskError> {
    let url = url::Url::parse(url).map_err(|source| AskError::Url { source })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(AskError::Scheme {
            scheme: url.scheme().to_owned(),
        });
    }
    let sent = http
        .post(url)
        .headers(sextant_exporters::telemetry::current_headers())
        .json(body)
        .timeout(timeout)
        .send()
        .await;
    let mut res = sent.map_err(|e| describe(e, timeout))?;
    let status = res.status();
    let mut bytes = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| describe(e, timeout))? {
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(AskError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    if status != reqwest::StatusCode::OK {
        return Err(AskError::Status {
            status,
            body: snippet(&bytes),
        });
    }
    let answer: WebhookAnswer =
        serde_json::from_slice(&bytes).map_err(|source| AskError::Malformed {
            source,
            body: snippet(&bytes),
        })?;
    let decision = match answer.decision.as_str() {
        "allow" => Decision::Allow,
        "deny" => Decision::Deny,
        "pending" => Decision::Pending,
        other => {
            return Err(AskError::Decision {
                decision: other.to_owned(),
            });
        }
    };
    let mut reason = answer.reason.unwrap_or_default().trim().to_owned();
    if let Some((i, _)) = reason.char_indices().nth(MAX_REASON_CHARS) {
        reason.truncate(i);
        reason.push('…');
    }
    Ok((decision, reason))
}

/// A request error for people; the URL is said once, by the caller.
fn describe(e: reqwest::Error, timeout: Duration) -> AskError {
    let source = e.without_url();
    if source.is_timeout() {
        AskError::Timeout { after: timeout }
    } else if source.is_connect() {
        AskError::Connect { source }
    } else {
        AskError::Request { source }
    }
}
