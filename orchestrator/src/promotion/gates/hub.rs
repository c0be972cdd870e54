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

use sextant_kit::hub::{
    Found as _, HistoryQuery, HubClient, HubError, PageRequest, RolloutQuery, RowFilter,
};
use sextant_model::{DeploymentStatus, HistoryEntry, HostsListed, Progress, Rollout, RolloutHost};

use super::{Decision, GateContext, human};
use crate::domain::{ReleaseComponent, Span};

/// How long one hub request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// History page size (the hub's largest).
const HISTORY_PAGE: u32 = 1000;
/// How many pages of history one component may read.
pub const MAX_HISTORY_PAGES: usize = 20;
/// The largest answer read from the hub.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The client the orchestrator reads the hub with (gates, canary analysis):
/// the kit's typed [`HubClient`], with the orchestrator's timeouts and its
/// trace context on every request. The hub derives the tenant from the
/// bearer token (or uses `default` when it has no tokens).
pub fn hub_client(base_url: &str, token: Option<String>) -> Result<HubClient, HubError> {
    HubClient::builder(base_url)
        .token(token.map(sextant_kit::Secret::new))
        .timeout(REQUEST_TIMEOUT)
        .max_body_bytes(MAX_BODY_BYTES)
        .headers(sextant_exporters::telemetry::current_headers)
        .build()
}

/// The error with its causes, `a: b: c`.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
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
                    format!("component {:?}: {}", component.component, error_chain(&e)),
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
    // Every host: the gate walks each one's history.
    let query = RolloutQuery {
        application: Some(application.to_owned()),
        workspace: Some(workspace.to_owned()),
        hosts: Some(HostsListed::All),
        ..RolloutQuery::new(workload, environment)
    };
    let Some(rollout) = hub.rollout(&query).await.found()? else {
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
    let ok = |h: &RolloutHost| {
        h.progress == Progress::Succeeded
            && h.host.revision == digest
            && h.host.status == DeploymentStatus::Succeeded
    };
    let succeeded = rollout.hosts.iter().filter(|h| ok(h)).count();
    if succeeded < total {
        let mut by_state: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for h in rollout.hosts.iter().filter(|h| !ok(h)) {
            let what = match h.progress {
                Progress::Failed => "failed",
                Progress::InProgress => "in progress",
                _ => "on another revision",
            };
            let mut name = format!("{}/{}", h.target, h.host.host);
            if what == "failed"
                && let Some(m) = h.host.message.as_deref().filter(|m| !m.is_empty())
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
    let history = HistoryQuery {
        filter: RowFilter {
            workload: Some(workload.to_owned()),
            environment: Some(environment.to_owned()),
            application: Some(application.to_owned()),
            workspace: Some(workspace.to_owned()),
            ..RowFilter::default()
        },
        ..HistoryQuery::default()
    };
    let since = healthy_since(hub, &history, digest, &rollout, threshold, now).await?;
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
    query: &HistoryQuery,
    digest: &str,
    rollout: &Rollout,
    threshold: i128,
    now: i128,
) -> Result<i128, HubError> {
    let mut targets: BTreeMap<&str, Run> = BTreeMap::new();
    // Keyed by (target, host, reconciler); no reconciler is "".
    let mut hosts: BTreeMap<(String, String, String), Run> = BTreeMap::new();
    for h in &rollout.hosts {
        targets.entry(h.target.as_str()).or_default();
        let reconciler = h.host.reconciler.clone().unwrap_or_default();
        hosts
            .entry((h.target.clone(), h.host.host.clone(), reconciler))
            .or_default();
    }
    let mut page = PageRequest {
        limit: Some(HISTORY_PAGE),
        cursor: None,
    };
    for _ in 0..MAX_HISTORY_PAGES {
        let answer = hub.history(query, &page).await?;
        for entry in &answer.items {
            match entry {
                HistoryEntry::Desired {
                    at,
                    target,
                    revision,
                    ..
                } => {
                    if let Some(run) = targets.get_mut(target.target.as_str()) {
                        run.see(i128::from(at.0), revision == digest, threshold);
                    }
                }
                HistoryEntry::Observed {
                    at,
                    target,
                    host,
                    reconciler,
                    revision,
                    status,
                    ..
                } => {
                    let key = (
                        target.target.clone(),
                        host.clone(),
                        reconciler.clone().unwrap_or_default(),
                    );
                    if let Some(run) = hosts.get_mut(&key) {
                        let healthy = revision == digest && *status == DeploymentStatus::Succeeded;
                        run.see(i128::from(at.0), healthy, threshold);
                    }
                }
            }
        }
        let all_done = targets.values().chain(hosts.values()).all(|r| r.done);
        match answer.next_cursor {
            Some(next) if !all_done => page.cursor = Some(next),
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
