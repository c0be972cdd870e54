//! The orchestrator's `/metrics` (the classic text format, or OpenMetrics
//! with exemplars when the scraper asks for it; the names are the contract
//! in docs/telemetry.md).
//!
//! Two kinds of series:
//! - **HTTP**, counted by this replica as it serves (shared with the hub:
//!   `sextant_kit::http_metrics`).
//! - **Estate-wide**, derived at each scrape from the database, which
//!   keeps every promotion and job as history: releases, promotions and
//!   deployments by outcome, deployment and approval durations, rollbacks,
//!   active deployments, pending approvals, targets, agents (registered,
//!   connected, heartbeat age) and their tasks. They only grow (rows
//!   are never deleted), so the totals are true counters, and they survive
//!   restarts and fail-over. Every replica reports the same values: in
//!   PromQL aggregate them with `max`, not `sum`, across replicas.
//!
//! `sextant_deployment_duration_seconds` carries exemplars: each bucket
//! the trace id (`trace_id`) of the newest job that ended in it, from its
//! promotion's `traceparent`, stamped with the job's end. It is a native
//! `prometheus_client` histogram, since the `prometheus` crate has no
//! exemplars; the other series are the `prometheus` crate's and join it in
//! one `prometheus_client` registry per scrape (`sextant_kit::exposition`),
//! which writes either format.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use sextant_kit::exposition::{Families, Format};
use sextant_kit::http_metrics::HttpMetrics;

use crate::agents::server::StoredResult;
use crate::domain::JobState;
use crate::domain::failure::FailureKind;
use crate::store::{MetricJob, MetricRows, Store};

/// Buckets for deployment and approval durations: 10 s to 1 day.
const SLOW_BUCKETS: &[f64] = &[
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
];

/// What this replica counts itself, unlike the estate-wide series: the
/// jobs it drove to an end. Sum it across replicas.
pub struct ReplicaMetrics {
    workflow_runs: IntCounterVec,
    /// Connections refused at a listener's cap, by listener (`api`,
    /// `agents`).
    pub listener_refused: IntCounterVec,
}

impl ReplicaMetrics {
    pub fn new() -> Self {
        let workflow_runs = IntCounterVec::new(
            Opts::new(
                "sextant_workflow_runs_total",
                "Jobs (deployments and rollbacks) this replica drove to an end, by final \
                 state: completed, failed, rolled_back, cancelled.",
            ),
            &["status"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        // Every final state at 0 from the start: a counter that appears only
        // at its first increment makes `rate()` and `increase()` miss that
        // increment, and an alert on failures has no series to read until
        // the first failure.
        for state in JobState::ALL.iter().filter(|s| s.is_terminal()) {
            workflow_runs.with_label_values(&[state.as_str()]);
        }
        let listener_refused = sextant_kit::serve::refused_counter();
        for listener in ["api", "agents"] {
            listener_refused.with_label_values(&[listener]);
        }
        Self {
            workflow_runs,
            listener_refused,
        }
    }

    /// Counts a job this replica moved to its final state `status`.
    pub fn workflow_run(&self, status: &str) {
        self.workflow_runs.with_label_values(&[status]).inc();
    }

    fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = prometheus::core::Collector::collect(&self.workflow_runs);
        families.extend(prometheus::core::Collector::collect(&self.listener_refused));
        families
    }
}

impl Default for ReplicaMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Why `/metrics` could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot build the estate's series: {0}")]
    Registry(#[from] prometheus::Error),
    #[error("cannot encode the metrics")]
    Encode(#[from] std::fmt::Error),
}

/// The `/metrics` body in `format`: the HTTP series, this replica's and
/// the estate-wide ones. `heartbeat` is the agents' heartbeat interval (an
/// agent is connected while its last heartbeat is at most two intervals
/// old).
pub async fn render(
    http: &HttpMetrics,
    replica: &ReplicaMetrics,
    store: &Store,
    heartbeat: Duration,
    format: Format,
) -> Result<String, RenderError> {
    let rows = store.metric_rows().await?;
    let estate = estate(&rows, crate::store::now_ms(), heartbeat)?;
    let mut families = http.gather();
    families.extend(replica.gather());
    Ok(encode(families, estate, format)?)
}

/// `families` and the estate's series in `format`.
fn encode(
    mut families: Vec<prometheus::proto::MetricFamily>,
    estate: Estate,
    format: Format,
) -> Result<String, std::fmt::Error> {
    families.extend(estate.registry.gather());
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(Families(families)));
    // `prometheus_client` adds the help's final period.
    registry.register(
        DURATION,
        "Deployment jobs from creation to their end, by environment and strategy; \
         exemplars: the trace id of the newest job in each bucket",
        estate.durations,
    );
    sextant_kit::exposition::encode_registry(&registry, format)
}

const DURATION: &str = "sextant_deployment_duration_seconds";

/// The exemplar's labels: `trace_id`, the name the Grafana datasource's
/// `exemplarTraceIdDestinations` reads (deploy/grafana/provisioning).
type TraceLabel = Vec<(&'static str, String)>;

/// `sextant_deployment_duration_seconds` by `env` and `strategy`.
type Durations = Family<
    Vec<(&'static str, String)>,
    HistogramWithExemplars<TraceLabel>,
    fn() -> HistogramWithExemplars<TraceLabel>,
>;

fn duration_histogram() -> HistogramWithExemplars<TraceLabel> {
    HistogramWithExemplars::new(SLOW_BUCKETS.iter().copied())
}

/// The estate-wide series: the `prometheus` crate's, and the durations.
struct Estate {
    registry: Registry,
    durations: Durations,
}

/// A job's strategy name from its stored JSON (`{"type": "rolling", …}`).
fn strategy_name(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// Why a job was rolled back, from the kind of its failure: a canary
/// breach; a failed health check (a task's error type); any other failure;
/// or none at all, a rollback someone asked for.
fn rollback_reason(failure: Option<FailureKind>, health_failed: bool) -> &'static str {
    match failure {
        None => "request",
        Some(FailureKind::CanaryAnalysis) => "canary_analysis",
        Some(_) if health_failed => "health",
        Some(_) => "failure",
    }
}

/// The outcome label of a finished deploy job, or `None` while it runs.
fn deployment_status(state: &str) -> Option<&'static str> {
    match state {
        "completed" => Some("succeeded"),
        "failed" => Some("failed"),
        "rolled_back" => Some("rolled_back"),
        _ => None,
    }
}

const FINAL_PROMOTION_STATES: &[&str] =
    &["deployed", "rejected", "failed", "rolled_back", "cancelled"];

fn seconds(from_ms: i64, to_ms: i64) -> f64 {
    (to_ms - from_ms).max(0) as f64 / 1000.0
}

/// The result label of a finished agent task: `succeeded`, `failed`, or
/// `expired` (its deadline passed first).
fn agent_task_status(state: &str, outcome: Option<&str>) -> &'static str {
    if state == "expired" {
        return "expired";
    }
    // The mailbox keeps the deploy contract's outcome; `success` is
    // required, so a row without it counts as failed.
    let success = outcome
        .and_then(|o| serde_json::from_str::<StoredResult>(o).ok())
        .is_some_and(|r| r.outcome.success);
    if success { "succeeded" } else { "failed" }
}

/// Whether an agent counts as connected: a stream is open and its last
/// heartbeat (Unix ms) is at most two intervals old. `/metrics` and
/// `/health` count alike.
pub fn is_connected(
    session: bool,
    last_heartbeat: Option<i64>,
    now_ms: i64,
    heartbeat: std::time::Duration,
) -> bool {
    let fresh = 2 * heartbeat.as_millis() as i64;
    session && last_heartbeat.is_some_and(|t| now_ms - t <= fresh)
}

/// Builds the estate-wide series from the database's rows.
fn estate(rows: &MetricRows, now_ms: i64, heartbeat: Duration) -> prometheus::Result<Estate> {
    let r = Registry::new();
    promotion_series(&r, rows)?;
    deployment_series(&r, rows)?;
    agent_series(&r, rows, now_ms, heartbeat)?;
    Ok(Estate {
        registry: r,
        durations: durations(&rows.jobs),
    })
}

/// The durations of ended deploy jobs, oldest end first, so that each
/// bucket's exemplar is the newest job in it that has a trace.
fn durations(jobs: &[MetricJob]) -> Durations {
    let durations = Durations::new_with_constructor(duration_histogram);
    let mut ended: Vec<(&MetricJob, i64)> = jobs
        .iter()
        .filter(|j| j.kind == "deploy" && deployment_status(&j.state).is_some())
        .filter_map(|j| j.finished_at.map(|f| (j, f)))
        .collect();
    ended.sort_by_key(|(_, finished)| *finished);
    for (job, finished) in ended {
        let trace = job
            .traceparent
            .as_deref()
            .and_then(sextant_kit::links::trace_id_of)
            .map(|id| vec![("trace_id", id.to_owned())]);
        let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(finished).unwrap_or(0));
        durations
            .get_or_create(&vec![
                ("env", job.environment.clone()),
                ("strategy", strategy_name(&job.strategy)),
            ])
            .observe(seconds(job.created_at, finished), trace, Some(at));
    }
    durations
}

/// Releases, promotions, and the approvals they waited for.
fn promotion_series(r: &Registry, rows: &MetricRows) -> prometheus::Result<()> {
    let releases = IntCounterVec::new(
        Opts::new("sextant_releases_total", "Releases created."),
        &[],
    )?;
    releases
        .with_label_values(&[] as &[&str])
        .inc_by(u64::try_from(rows.releases).unwrap_or(0));
    let promotions = IntCounterVec::new(
        Opts::new(
            "sextant_promotions_total",
            "Promotions that reached a final state, by environment and state.",
        ),
        &["env", "status"],
    )?;
    for (env, state, n) in &rows.promotions {
        if FINAL_PROMOTION_STATES.contains(&state.as_str()) {
            promotions
                .with_label_values(&[env, state])
                .inc_by(u64::try_from(*n).unwrap_or(0));
        }
    }
    let approval_pending = IntGaugeVec::new(
        Opts::new(
            "sextant_approval_pending_count",
            "Promotions awaiting approval or gates, by environment.",
        ),
        &["env"],
    )?;
    // Gauges read 0, rather than vanish, in an environment with nothing
    // waiting or running now: an absent series is "unknown" to PromQL.
    for (env, state, n) in &rows.promotions {
        let pending = approval_pending.with_label_values(&[env]);
        if state == "awaiting_approval" {
            pending.set(*n);
        }
    }
    let approval_duration = HistogramVec::new(
        HistogramOpts::new(
            "sextant_approval_duration_seconds",
            "Promotions that waited for approval or gates, from request to decision.",
        )
        .buckets(SLOW_BUCKETS.to_vec()),
        &["env"],
    )?;
    for (env, requested, decided) in &rows.approvals {
        approval_duration
            .with_label_values(&[env])
            .observe(seconds(*requested, *decided));
    }
    r.register(Box::new(releases))?;
    r.register(Box::new(promotions))?;
    r.register(Box::new(approval_pending))?;
    r.register(Box::new(approval_duration))?;
    Ok(())
}

/// Deployment jobs by outcome, their durations, rollbacks and targets.
fn deployment_series(r: &Registry, rows: &MetricRows) -> prometheus::Result<()> {
    let deployments = IntCounterVec::new(
        Opts::new(
            "sextant_deployments_total",
            "Deployment jobs ended, by environment, strategy and outcome.",
        ),
        &["env", "strategy", "status"],
    )?;
    let active = IntGaugeVec::new(
        Opts::new(
            "sextant_deployments_active",
            "Deployment jobs not ended yet, by environment.",
        ),
        &["env"],
    )?;
    let mut running: BTreeMap<&str, i64> = BTreeMap::new();
    for job in &rows.jobs {
        if job.kind != "deploy" {
            continue;
        }
        let env = job.environment.as_str();
        active.with_label_values(&[env]);
        match deployment_status(&job.state) {
            Some(status) => {
                let strategy = strategy_name(&job.strategy);
                deployments
                    .with_label_values(&[env, &strategy, status])
                    .inc();
            }
            None => *running.entry(env).or_default() += 1,
        }
    }
    for (env, n) in running {
        active.with_label_values(&[env]).set(n);
    }
    let rollbacks = IntCounterVec::new(
        Opts::new(
            "sextant_rollbacks_total",
            "Rollback jobs, by environment and reason: `canary_analysis` (a canary \
             stage breached its analysis), `health` (a health check failed), `failure` \
             (the job failed otherwise) or `request` (someone asked).",
        ),
        &["env", "reason"],
    )?;
    for (env, failure, health) in &rows.rollbacks {
        rollbacks
            .with_label_values(&[env, rollback_reason(*failure, *health != 0)])
            .inc();
    }
    let targets = IntGaugeVec::new(
        Opts::new(
            "sextant_targets_total",
            "Targets by environment and execution model (`ssh`, `agent`).",
        ),
        &["env", "type"],
    )?;
    for (env, execution, n) in &rows.targets {
        targets.with_label_values(&[env, execution]).set(*n);
    }
    r.register(Box::new(deployments))?;
    r.register(Box::new(active))?;
    r.register(Box::new(rollbacks))?;
    r.register(Box::new(targets))?;
    Ok(())
}

/// Agents (registered, connected, heartbeat age) and their tasks.
fn agent_series(
    r: &Registry,
    rows: &MetricRows,
    now_ms: i64,
    heartbeat: std::time::Duration,
) -> prometheus::Result<()> {
    let connected = prometheus::IntGauge::new(
        "sextant_agents_connected",
        "Agents with an open stream and a heartbeat at most two intervals old.",
    )?;
    let registered = prometheus::IntGauge::new(
        "sextant_agents_registered",
        "Agents registered and not revoked.",
    )?;
    let age = prometheus::GaugeVec::new(
        Opts::new(
            "sextant_agent_heartbeat_age_seconds",
            "Seconds since each registered agent's last heartbeat.",
        ),
        &["agent"],
    )?;
    for (name, revoked, session, last) in &rows.agents {
        if !revoked {
            registered.inc();
            if let Some(t) = last {
                age.with_label_values(&[name]).set(seconds(*t, now_ms));
            }
            if is_connected(*session, *last, now_ms, heartbeat) {
                connected.inc();
            }
        }
    }
    let agent_tasks = IntCounterVec::new(
        Opts::new(
            "sextant_agent_tasks_total",
            "Tasks sent to agents that ended, by agent name, kind (`deploy`, `rollback`, \
             `compose`, `check`) and result (`succeeded`, `failed`, `expired`).",
        ),
        &["agent", "type", "status"],
    )?;
    let agent_duration = HistogramVec::new(
        HistogramOpts::new(
            "sextant_agent_task_duration_seconds",
            "From queueing an agent task to its result or expiry.",
        )
        .buckets(vec![
            0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
        ]),
        &["type"],
    )?;
    for (agent, kind, state, outcome, created, updated) in &rows.agent_tasks {
        let status = agent_task_status(state, outcome.as_deref());
        agent_tasks.with_label_values(&[agent, kind, status]).inc();
        agent_duration
            .with_label_values(&[kind])
            .observe(seconds(*created, *updated));
    }
    r.register(Box::new(connected))?;
    r.register(Box::new(registered))?;
    r.register(Box::new(age))?;
    r.register(Box::new(agent_tasks))?;
    r.register(Box::new(agent_duration))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estate_series_from_rows() {
        let rows = MetricRows {
            releases: 3,
            promotions: vec![
                ("prod".into(), "deployed".into(), 2),
                ("prod".into(), "awaiting_approval".into(), 4),
                ("dev".into(), "rolled_back".into(), 1),
            ],
            jobs: vec![
                job("deploy", "prod", "rolling", "completed", Some(90_000), None),
                job("deploy", "prod", "rolling", "running", None, None),
                job("deploy", "dev", "canary", "rolled_back", Some(5_000), None),
                job("rollback", "dev", "all_at_once", "completed", Some(1), None),
            ],
            rollbacks: vec![
                ("dev".into(), Some(FailureKind::TasksFailed), 0),
                ("dev".into(), Some(FailureKind::TasksFailed), 1),
                ("dev".into(), Some(FailureKind::CanaryAnalysis), 1),
                ("prod".into(), None, 0),
            ],
            targets: vec![("prod".into(), "ssh".into(), 3)],
            approvals: vec![("prod".into(), 0, 7_200_000)],
            agents: vec![
                ("a".into(), false, true, Some(99_000)),
                ("b".into(), false, true, Some(10_000)),
                ("c".into(), false, false, None),
                ("d".into(), true, false, None),
            ],
            agent_tasks: vec![
                (
                    "a".into(),
                    "deploy".into(),
                    "finished".into(),
                    Some(r#"{"success":true}"#.into()),
                    0,
                    2_000,
                ),
                (
                    "a".into(),
                    "deploy".into(),
                    "finished".into(),
                    Some(r#"{"success":false}"#.into()),
                    0,
                    2_000,
                ),
                (
                    "b".into(),
                    "check".into(),
                    "expired".into(),
                    None,
                    0,
                    30_000,
                ),
            ],
        };
        let text = estate_text(&rows, Format::Prometheus);
        for line in [
            "sextant_releases_total 3",
            r#"sextant_promotions_total{env="prod",status="deployed"} 2"#,
            r#"sextant_promotions_total{env="dev",status="rolled_back"} 1"#,
            r#"sextant_approval_pending_count{env="prod"} 4"#,
            r#"sextant_deployments_total{env="prod",status="succeeded",strategy="rolling"} 1"#,
            r#"sextant_deployments_total{env="dev",status="rolled_back",strategy="canary"} 1"#,
            r#"sextant_deployments_active{env="prod"} 1"#,
            r#"sextant_deployments_active{env="dev"} 0"#,
            r#"sextant_approval_pending_count{env="dev"} 0"#,
            r#"sextant_deployment_duration_seconds_bucket{env="prod",strategy="rolling",le="120"} 1"#,
            r#"sextant_deployment_duration_seconds_bucket{env="prod",strategy="rolling",le="60"} 0"#,
            r#"sextant_rollbacks_total{env="dev",reason="failure"} 1"#,
            r#"sextant_rollbacks_total{env="dev",reason="health"} 1"#,
            r#"sextant_rollbacks_total{env="dev",reason="canary_analysis"} 1"#,
            r#"sextant_rollbacks_total{env="prod",reason="request"} 1"#,
            r#"sextant_approval_duration_seconds_sum{env="prod"} 7200.0"#,
            r#"sextant_targets_total{env="prod",type="ssh"} 3"#,
            "sextant_agents_connected 1",
            "sextant_agents_registered 3",
            r#"sextant_agent_heartbeat_age_seconds{agent="b"} 90"#,
            r#"sextant_agent_tasks_total{agent="a",status="succeeded",type="deploy"} 1"#,
            r#"sextant_agent_tasks_total{agent="a",status="failed",type="deploy"} 1"#,
            r#"sextant_agent_tasks_total{agent="b",status="expired",type="check"} 1"#,
            r#"sextant_agent_task_duration_seconds_bucket{type="deploy",le="5"} 2"#,
            r#"sextant_agent_task_duration_seconds_bucket{type="check",le="10"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        // Promotions still waiting are not "total" outcomes.
        assert!(!text.contains(r#"status="awaiting_approval""#));
    }

    fn job(
        kind: &str,
        env: &str,
        strategy: &str,
        state: &str,
        finished_at: Option<i64>,
        traceparent: Option<&str>,
    ) -> MetricJob {
        MetricJob {
            kind: kind.into(),
            environment: env.into(),
            strategy: format!(r#"{{"type":"{strategy}"}}"#),
            state: state.into(),
            created_at: 0,
            finished_at,
            traceparent: traceparent.map(str::to_owned),
        }
    }

    fn estate_text(rows: &MetricRows, format: Format) -> String {
        let estate = estate(rows, 100_000, Duration::from_secs(30)).unwrap();
        encode(ReplicaMetrics::new().gather(), estate, format).unwrap()
    }

    /// OpenMetrics: each duration bucket carries the trace id of the
    /// newest job that ended in it, stamped with its end; counters are
    /// named without `_total` in their family; the body ends in `# EOF`.
    /// The classic format has the same series without exemplars.
    #[test]
    fn openmetrics_durations_carry_the_jobs_trace_ids() {
        let old = "4bf92f3577b34da6a3ce929d0e0e4736";
        let new = "0af7651916cd43dd8448eb211c80319c";
        let rows = MetricRows {
            jobs: vec![
                // Both end in the 10 s bucket; the newer one is its exemplar.
                job(
                    "deploy",
                    "prod",
                    "rolling",
                    "completed",
                    Some(9_000),
                    Some(&format!("00-{new}-00f067aa0ba902b7-01")),
                ),
                job(
                    "deploy",
                    "prod",
                    "rolling",
                    "completed",
                    Some(8_000),
                    Some(&format!("00-{old}-00f067aa0ba902b7-01")),
                ),
                // No trace: counted, no exemplar.
                job("deploy", "prod", "rolling", "failed", Some(100_000), None),
                job("deploy", "prod", "rolling", "running", None, None),
            ],
            ..MetricRows::default()
        };
        let text = estate_text(&rows, Format::OpenMetrics);
        assert!(text.ends_with("# EOF\n"), "{text}");
        for line in [
            "# TYPE sextant_deployment_duration_seconds histogram",
            &format!(
                r#"sextant_deployment_duration_seconds_bucket{{le="10.0",env="prod",strategy="rolling"}} 2 # {{trace_id="{new}"}} 9.0 9.0"#
            ),
            r#"sextant_deployment_duration_seconds_bucket{le="120.0",env="prod",strategy="rolling"} 3"#,
            r#"sextant_deployment_duration_seconds_count{env="prod",strategy="rolling"} 3"#,
            "# TYPE sextant_workflow_runs counter",
            r#"sextant_workflow_runs_total{status="completed"} 0"#,
            r#"sextant_deployments_total{env="prod",status="succeeded",strategy="rolling"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(!text.contains(old), "{text}");

        let classic = estate_text(&rows, Format::Prometheus);
        for line in [
            "# TYPE sextant_workflow_runs_total counter",
            r#"sextant_deployment_duration_seconds_bucket{env="prod",strategy="rolling",le="10"} 2"#,
            r#"sextant_deployment_duration_seconds_bucket{env="prod",strategy="rolling",le="+Inf"} 3"#,
        ] {
            assert!(
                classic.lines().any(|l| l == line),
                "{line} missing:\n{classic}"
            );
        }
        assert!(!classic.contains("trace_id") && !classic.contains("# EOF"));
    }

    #[test]
    fn workflow_runs_start_at_zero_for_every_final_state() {
        let replica = ReplicaMetrics::new();
        replica.workflow_run("failed");
        let text = sextant_kit::exposition::encode(&replica.gather()).unwrap();
        for line in [
            r#"sextant_workflow_runs_total{status="completed"} 0"#,
            r#"sextant_workflow_runs_total{status="failed"} 1"#,
            r#"sextant_workflow_runs_total{status="rolled_back"} 0"#,
            r#"sextant_workflow_runs_total{status="cancelled"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
