//! The previous-environment-healthy gate: the same release has been healthy
//! in the previous environment for at least `for`, answered by the hub.
//!
//! For each component of the release the gate reads the hub's rollout of
//! the component (its hub workload, application and workspace) in the
//! previous environment (`GET /api/v1/rollout`), and then the history of
//! that rollout (`GET /api/v1/history`) to learn since when it has held.
//!
//! # Healthy
//!
//! A component is healthy in the previous environment when
//! - every target of the workload there desires the release's digest (the
//!   rollout's agreed `desired.revision`), and
//! - at least one host reports, and every host reports that digest with
//!   status `succeeded`.
//!
//! # Healthy for T
//!
//! The gate measures how long the condition has held *without a break*:
//! - for each target, the start of its latest run of desired assignments
//!   naming the digest (re-sending the same assignment does not restart the
//!   clock; an assignment of another revision in between does);
//! - for each host (per target and reconciler), the start of its latest run
//!   of history entries that report the digest as `succeeded` (the hub keeps
//!   status changes, not heartbeats, so a message change keeps the run going
//!   and a failure or another revision restarts it).
//!
//! The release has been healthy since the *latest* of those starts over all
//! targets, hosts and components, and the gate allows once `now - since >=
//! for`. A host that joined later therefore restarts the clock for the
//! whole release, which errs on the side of waiting. History is read newest
//! first and only as far back as needed (at most [`MAX_HISTORY_PAGES`]
//! pages); if it runs out before a run's start is found, the oldest entry
//! read stands in for it, which again can only make the gate wait longer.
//!
//! # Decisions
//!
//! - no previous environment: allow (the first environment has nothing to
//!   wait for);
//! - no hub configured, a component without a spec, a release without
//!   components, an unreachable hub, an error status or an unreadable answer:
//!   deny, with the error;
//! - the component is not in the previous environment (404), desires another
//!   revision, has no hosts, or has hosts in progress, failed or on another
//!   revision: pending, naming them. The previous environment may yet be
//!   rolled forward (or back) to this release, so these are "not yet", not
//!   "never";
//! - healthy, but for less than `for`: pending ("healthy for 40s of 5m").

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Decision, GateContext, human};
use crate::domain::{ReleaseComponent, Span};

/// How long one hub request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// History page size (the hub's largest).
const HISTORY_PAGE: u32 = 1000;
/// How many pages of history one component may read.
pub const MAX_HISTORY_PAGES: usize = 20;
/// The largest answer read from the hub.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A client of the hub's read API. The hub derives the tenant from the
/// bearer token (or uses `default` when it has no tokens).
#[derive(Clone)]
pub struct HubClient {
    base_url: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// Why a hub request failed.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("invalid hub URL {url:?}: {error}")]
    Url { url: String, error: url::ParseError },
    #[error("hub at {url} unreachable: {error}")]
    Unreachable { url: String, error: String },
    #[error("hub answered {status} to {url}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("unexpected answer from the hub to {url}: {error}")]
    Malformed { url: String, error: String },
}

impl HubClient {
    /// A client of the hub's API at `base_url` (`http://127.0.0.1:8080`),
    /// with a bearer token holding the `read` scope when the hub has tokens.
    pub fn new(base_url: impl Into<String>, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self::with_client(base_url, token, http)
    }

    /// Like [`HubClient::new`], with a client of the caller's.
    pub fn with_client(
        base_url: impl Into<String>,
        token: Option<String>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()),
            http,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// GETs `path` with `query`; `Ok(None)` on 404 `not_found`.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Option<T>, HubError> {
        let raw = format!("{}{path}", self.base_url);
        let mut url = url::Url::parse(&raw).map_err(|error| HubError::Url {
            url: raw.clone(),
            error,
        })?;
        url.query_pairs_mut().extend_pairs(query);
        let shown = url.to_string();
        let mut req = self
            .http
            .get(url)
            .timeout(REQUEST_TIMEOUT)
            .headers(sextant_exporters::telemetry::current_headers());
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let unreachable = |e: reqwest::Error| HubError::Unreachable {
            url: shown.clone(),
            error: error_chain(&e.without_url()),
        };
        let mut res = req.send().await.map_err(unreachable)?;
        let status = res.status();
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(HubError::Malformed {
                    url: shown,
                    error: format!("answer larger than {MAX_BODY_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| HubError::Malformed {
                    url: shown,
                    error: e.to_string(),
                });
        }
        // The hub's errors are `{"error": {"code", "message"}}`.
        #[derive(Deserialize)]
        struct ErrorBody {
            error: ErrorDetail,
        }
        #[derive(Deserialize)]
        struct ErrorDetail {
            code: String,
            message: String,
        }
        let detail = serde_json::from_slice::<ErrorBody>(&body).ok();
        if status == reqwest::StatusCode::NOT_FOUND
            && detail.as_ref().is_some_and(|d| d.error.code == "not_found")
        {
            return Ok(None);
        }
        let message = match detail {
            Some(d) => format!("{}: {}", d.error.code, d.error.message),
            None => snippet(&body),
        };
        Err(HubError::Status {
            url: shown,
            status: status.as_u16(),
            message,
        })
    }
}

/// The error with its causes, `a: b: c`.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// The start of a body, for an error message.
pub(super) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None if text.is_empty() => "(empty body)".into(),
        None => text.to_owned(),
    }
}

// What the gate reads of the hub's answers (sextant_model::view and
// report); unknown fields are ignored so the hub may add some.

#[derive(Debug, Deserialize)]
struct RolloutBody {
    desired: Option<DesiredBody>,
    hosts: Vec<RolloutHostBody>,
}

#[derive(Debug, Deserialize)]
struct DesiredBody {
    version: String,
    revision: String,
}

#[derive(Debug, Deserialize)]
struct RolloutHostBody {
    target: String,
    host: String,
    reconciler: Option<String>,
    revision: String,
    status: String,
    message: Option<String>,
    /// `succeeded`, `failed`, `in_progress` or `pending` (another revision).
    progress: String,
}

#[derive(Debug, Deserialize)]
struct PageBody<T> {
    items: Vec<T>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum HistoryBody {
    Desired {
        at: String,
        target: String,
        revision: String,
    },
    Observed {
        at: String,
        target: String,
        host: String,
        reconciler: Option<String>,
        revision: String,
        status: String,
    },
    /// A kind this gate does not know; skipped.
    #[serde(other)]
    Other,
}

/// One component's answer.
enum Health {
    /// Healthy since this instant (Unix nanoseconds).
    Since { since: i128, hosts: usize },
    /// Not healthy (yet); why.
    Waiting(String),
}

/// The gate.
pub(super) async fn evaluate(for_: Span, ctx: &GateContext<'_>) -> (Decision, String) {
    let Some(previous) = ctx.previous_environment else {
        return (
            Decision::Allow,
            "first environment: there is no previous environment to wait for".into(),
        );
    };
    let Some(hub) = ctx.hub else {
        return (
            Decision::Deny,
            format!("no hub is configured to tell whether the release is healthy in {previous:?}"),
        );
    };
    if ctx.release.components.is_empty() {
        return (
            Decision::Deny,
            format!("release {:?} has no components", ctx.release.name),
        );
    }
    let now = ctx.now.unix_timestamp_nanos();
    let threshold = now.saturating_sub(for_.0.as_nanos().try_into().unwrap_or(i128::MAX));
    let checks = ctx
        .release
        .components
        .iter()
        .map(|c| component(hub, c, previous, (threshold, now), ctx));
    let answers = futures::future::join_all(checks).await;

    let mut waiting = Vec::new();
    let mut since = i128::MIN;
    let mut healthy = Vec::new();
    for (component, answer) in ctx.release.components.iter().zip(answers) {
        match answer {
            Err(e) => {
                return (
                    Decision::Deny,
                    format!("component {:?}: {e}", component.component),
                );
            }
            Ok(Health::Waiting(why)) => waiting.push(format!("{}: {why}", component.component)),
            Ok(Health::Since { since: s, hosts }) => {
                since = since.max(s);
                healthy.push(format!("{} {hosts}/{hosts} hosts", component.component));
            }
        }
    }
    if !waiting.is_empty() {
        return (
            Decision::Pending,
            format!("not healthy in {previous:?}: {}", waiting.join("; ")),
        );
    }
    // A `since` ahead of `now` (clocks apart) counts as no time at all.
    let elapsed = now.saturating_sub(since).max(0);
    let elapsed = Duration::from_nanos(u64::try_from(elapsed).unwrap_or(u64::MAX));
    let summary = healthy.join(", ");
    if elapsed >= for_.0 {
        (
            Decision::Allow,
            format!(
                "healthy in {previous:?} for at least {} (required: {}): {summary}",
                human(elapsed),
                human(for_.0)
            ),
        )
    } else {
        (
            Decision::Pending,
            format!(
                "healthy in {previous:?} for {} of {}: {summary}",
                human(elapsed),
                human(for_.0)
            ),
        )
    }
}

/// Why one component's health could not be told.
#[derive(Debug, thiserror::Error)]
enum ComponentError {
    #[error("the release names this component, but it has no spec")]
    NoSpec,
    #[error(transparent)]
    Hub(#[from] HubError),
}

/// Whether one component is healthy in `environment`, and since when.
async fn component(
    hub: &HubClient,
    release: &ReleaseComponent,
    environment: &str,
    (threshold, now): (i128, i128),
    ctx: &GateContext<'_>,
) -> Result<Health, ComponentError> {
    let Some(spec) = ctx.components.iter().find(|c| c.name == release.component) else {
        return Err(ComponentError::NoSpec);
    };
    let workload = spec.name.as_str();
    let application = spec.application.as_deref().unwrap_or("default");
    let workspace = spec.workspace.as_deref().unwrap_or("default");
    let filter = [
        ("workload", workload),
        ("environment", environment),
        ("application", application),
        ("workspace", workspace),
    ];
    // Every host: the gate walks each one's history.
    let mut rollout_query = filter.to_vec();
    rollout_query.push(("hosts", "all"));
    let Some(rollout) = hub
        .get::<RolloutBody>("/api/v1/rollout", &rollout_query)
        .await?
    else {
        return Ok(Health::Waiting(format!(
            "the hub knows no workload {workload:?} of application {application:?} there"
        )));
    };
    let digest = release.digest.as_str();
    match &rollout.desired {
        None => {
            return Ok(Health::Waiting(
                "its targets desire no single revision (none assigned, or they disagree)".into(),
            ));
        }
        Some(d) if d.revision != digest => {
            return Ok(Health::Waiting(format!(
                "it desires {} ({}), not this release's {}",
                d.revision, d.version, digest
            )));
        }
        Some(_) => {}
    }
    if rollout.hosts.is_empty() {
        return Ok(Health::Waiting("no host reports it yet".into()));
    }
    let total = rollout.hosts.len();
    let ok = |h: &RolloutHostBody| {
        h.progress == "succeeded" && h.revision == digest && h.status == "succeeded"
    };
    let succeeded = rollout.hosts.iter().filter(|h| ok(h)).count();
    if succeeded < total {
        let mut by_state: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for h in rollout.hosts.iter().filter(|h| !ok(h)) {
            let what = match h.progress.as_str() {
                "failed" => "failed",
                "in_progress" => "in progress",
                _ => "on another revision",
            };
            let mut name = format!("{}/{}", h.target, h.host);
            if what == "failed"
                && let Some(m) = h.message.as_deref().filter(|m| !m.is_empty())
            {
                name.push_str(&format!(" ({m})"));
            }
            by_state.entry(what).or_default().push(name);
        }
        let detail = by_state
            .iter()
            .map(|(what, hosts)| format!("{what}: {}", hosts.join(", ")))
            .collect::<Vec<_>>()
            .join("; ");
        return Ok(Health::Waiting(format!(
            "{succeeded}/{total} hosts succeeded ({detail})"
        )));
    }
    let since = healthy_since(hub, &filter, digest, &rollout, threshold, now).await?;
    Ok(Health::Since {
        since,
        hosts: total,
    })
}

/// Where the walk back through history stands for one target or host.
#[derive(Default)]
struct Run {
    /// The oldest entry of the current run seen so far (Unix nanoseconds).
    start: Option<i128>,
    /// The run's start is found, or it reaches back past the threshold.
    done: bool,
}

impl Run {
    fn see(&mut self, at: i128, healthy: bool, threshold: i128) {
        if self.done {
            return;
        }
        if healthy {
            self.start = Some(at);
            self.done = at <= threshold;
        } else {
            self.done = true;
        }
    }
}

/// Since when every target has desired the digest and every host has
/// reported it succeeded (see the module docs).
async fn healthy_since(
    hub: &HubClient,
    filter: &[(&str, &str)],
    digest: &str,
    rollout: &RolloutBody,
    threshold: i128,
    now: i128,
) -> Result<i128, HubError> {
    let mut targets: BTreeMap<&str, Run> = BTreeMap::new();
    // Keyed by (target, host, reconciler); no reconciler is "".
    let mut hosts: BTreeMap<(String, String, String), Run> = BTreeMap::new();
    for h in &rollout.hosts {
        targets.entry(h.target.as_str()).or_default();
        let reconciler = h.reconciler.clone().unwrap_or_default();
        hosts
            .entry((h.target.clone(), h.host.clone(), reconciler))
            .or_default();
    }
    let limit = HISTORY_PAGE.to_string();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_HISTORY_PAGES {
        let mut query: Vec<(&str, &str)> = filter.to_vec();
        query.push(("limit", &limit));
        if let Some(c) = &cursor {
            query.push(("cursor", c));
        }
        let page = hub
            .get::<PageBody<HistoryBody>>("/api/v1/history", &query)
            .await?
            .ok_or_else(|| HubError::Malformed {
                url: format!("{}/api/v1/history", hub.base_url),
                error: "not found".into(),
            })?;
        for entry in &page.items {
            match entry {
                HistoryBody::Desired {
                    at,
                    target,
                    revision,
                } => {
                    if let Some(run) = targets.get_mut(target.as_str()) {
                        run.see(nanos(at, hub)?, revision == digest, threshold);
                    }
                }
                HistoryBody::Observed {
                    at,
                    target,
                    host,
                    reconciler,
                    revision,
                    status,
                } => {
                    let key = (
                        target.clone(),
                        host.clone(),
                        reconciler.clone().unwrap_or_default(),
                    );
                    if let Some(run) = hosts.get_mut(&key) {
                        let healthy = revision == digest && status == "succeeded";
                        run.see(nanos(at, hub)?, healthy, threshold);
                    }
                }
                HistoryBody::Other => {}
            }
        }
        let all_done = targets.values().chain(hosts.values()).all(|r| r.done);
        match page.next_cursor {
            Some(next) if !all_done => cursor = Some(next),
            _ => break,
        }
    }
    // A run with no entry at all (history changed under us) counts as
    // starting now, so the gate waits rather than allows on a guess.
    Ok(targets
        .values()
        .chain(hosts.values())
        .map(|r| r.start.unwrap_or(now))
        .max()
        .unwrap_or(now))
}

/// An RFC 3339 time of the hub, in Unix nanoseconds.
fn nanos(at: &str, hub: &HubClient) -> Result<i128, HubError> {
    OffsetDateTime::parse(at, &Rfc3339)
        .map(|t| t.unix_timestamp_nanos())
        .map_err(|e| HubError::Malformed {
            url: format!("{}/api/v1/history", hub.base_url),
            error: format!("time {at:?}: {e}"),
        })
}
