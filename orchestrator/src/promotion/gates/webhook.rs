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
        Err(_) => Err(format!("no answer within {}", super::human(timeout))),
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
) -> Result<(Decision, String), String> {
    let url = url::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "invalid URL: scheme {:?} is not http(s)",
            url.scheme()
        ));
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
            return Err(format!("answer larger than {MAX_BODY_BYTES} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    if status != reqwest::StatusCode::OK {
        return Err(format!("answered {status}: {}", snippet(&bytes)));
    }
    let answer: WebhookAnswer = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "answer is not {{\"decision\": \"allow\"|\"deny\"|\"pending\", \"reason\": …}} ({e}): {}",
            snippet(&bytes)
        )
    })?;
    let decision = match answer.decision.as_str() {
        "allow" => Decision::Allow,
        "deny" => Decision::Deny,
        "pending" => Decision::Pending,
        other => {
            return Err(format!(
                "unknown decision {other:?} (expected allow, deny or pending)"
            ));
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
fn describe(e: reqwest::Error, timeout: Duration) -> String {
    let e = e.without_url();
    if e.is_timeout() {
        format!("no answer within {}", super::human(timeout))
    } else if e.is_connect() {
        format!("cannot connect: {}", error_chain(&e))
    } else {
        error_chain(&e)
    }
}
