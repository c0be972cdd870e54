//! The hub's Prometheus metrics. The text encoder lives here and nowhere else.

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Signal label values.
pub const LOGS: &str = "logs";
pub const METRICS: &str = "metrics";
pub const TRACES: &str = "traces";
/// Flux notification-controller events (`POST /v1/reconcilers/flux`).
pub const FLUX_EVENTS: &str = "flux_events";
/// Argo CD Notifications (`POST /v1/reconcilers/argocd`).
pub const ARGOCD: &str = "argocd";

/// Rate-limit surface label values.
pub const API: &str = "api";
pub const INGEST: &str = "ingest";

/// Metrics of the receiver and the ingest path.
#[derive(Clone)]
pub struct HubMetrics {
    registry: Registry,
    /// Records by signal, outcome (`accepted`, `rejected`, `ignored`) and reason.
    pub records: IntCounterVec,
    /// Time to validate and store one request, by signal.
    pub ingest_seconds: HistogramVec,
    /// Records per request, by signal.
    pub batch_records: HistogramVec,
    /// Environment-state and compare requests by how the report cache
    /// served them (`hit`, `miss`, `uncached`).
    pub report_cache: IntCounterVec,
    /// The API's HTTP series (shared with the orchestrator).
    pub http: std::sync::Arc<sextant_kit::http_metrics::HttpMetrics>,
    /// Drifting (host, target) rows by tenant, environment and reason.
    pub drift_hosts: IntGaugeVec,
    /// Stale hosts by tenant and environment.
    pub stale_hosts: IntGaugeVec,
    /// Requests refused by a per-tenant rate limit, by surface (`api`,
    /// `ingest`).
    pub rate_limited: IntCounterVec,
    /// OTLP requests refused before decoding, by reason (`too_large`,
    /// `memory_budget`, `invalid_gzip`, `read_error`).
    pub requests_refused: IntCounterVec,
    /// Bytes of the memory budget held by OTLP requests in flight.
    pub inflight_request_bytes: IntGauge,
    /// Connections refused at a listener's cap, by listener (`otlp_grpc`,
    /// `otlp_http`, `api`).
    pub listener_refused: IntCounterVec,
    /// Current rows the stale sweep marked past the stale threshold.
    pub stale_marked: IntCounter,
    /// Stale sweeps that failed (tried again at the next period).
    pub stale_sweep_errors: IntCounter,
    /// Targets an upgrade left whose deployments are still to be rebuilt.
    pub rebuild_pending: IntGauge,
    /// Targets ingest listed whose deployments are still to be derived.
    pub derive_pending: IntGauge,
    /// When the drift gauges were last read from the store.
    pub drift_read_at: std::sync::Arc<tokio::sync::Mutex<Option<std::time::Instant>>>,
    /// DORA's metrics over the trailing 30 days (docs/insights.md), by
    /// tenant, workspace, application, workload and environment.
    pub dora: DoraGauges,
    /// When the DORA gauges were last read from the store.
    pub dora_read_at: std::sync::Arc<tokio::sync::Mutex<Option<std::time::Instant>>>,
}

/// The DORA gauges: one series per (tenant, workspace, application,
/// workload, environment) with a deployment in the trailing 30 days; a
/// figure nothing measured (no lead time known, no failure recovered) has
/// no series.
#[derive(Clone)]
pub struct DoraGauges {
    pub deployments: GaugeVec,
    pub lead_time_seconds: GaugeVec,
    pub change_fail_rate: GaugeVec,
    pub recovery_time_seconds: GaugeVec,
    pub rework_rate: GaugeVec,
}

/// The DORA gauges' labels.
pub const DORA_LABELS: [&str; 5] = [
    "tenant",
    "workspace",
    "application",
    "workload",
    "environment",
];

impl DoraGauges {
    fn new() -> Self {
        let gauge = |name: &str, help: &str| {
            GaugeVec::new(Opts::new(name, help), &DORA_LABELS).expect("valid metric")
        };
        Self {
            deployments: gauge(
                "sextant_dora_deployments",
                "Deployments that started in the trailing 30 days (DORA's deployment frequency \
                 is this over 30).",
            ),
            lead_time_seconds: gauge(
                "sextant_dora_lead_time_seconds",
                "DORA change lead time over the trailing 30 days: the median, in seconds, from \
                 the commit time (else the revision's first sighting) to the first succeeded report.",
            ),
            change_fail_rate: gauge(
                "sextant_dora_change_fail_rate",
                "DORA change fail rate over the trailing 30 days: failed deployments / \
                 deployments (0-1).",
            ),
            recovery_time_seconds: gauge(
                "sextant_dora_recovery_time_seconds",
                "DORA failed deployment recovery time over the trailing 30 days: the median, in \
                 seconds, over the recovered failures.",
            ),
            rework_rate: gauge(
                "sextant_dora_rework_rate",
                "DORA deployment rework rate over the trailing 30 days: deployments after a failed \
                 one / deployments (0-1).",
            ),
        }
    }

    fn all(&self) -> [&GaugeVec; 5] {
        [
            &self.deployments,
            &self.lead_time_seconds,
            &self.change_fail_rate,
            &self.recovery_time_seconds,
            &self.rework_rate,
        ]
    }

    /// Replaces every series with `groups`' figures.
    pub fn set(&self, groups: &[(String, sextant_model::DoraGroup)]) {
        for g in self.all() {
            g.reset();
        }
        for (tenant, g) in groups {
            let labels = [
                tenant.as_str(),
                g.workspace.as_str(),
                g.application.as_str(),
                g.workload.as_str(),
                g.environment.as_str(),
            ];
            let m = &g.metrics;
            self.deployments
                .with_label_values(&labels)
                .set(m.deployments as f64);
            for (gauge, value) in [
                (&self.lead_time_seconds, m.lead_time_seconds),
                (&self.change_fail_rate, m.change_fail_rate),
                (&self.recovery_time_seconds, m.recovery_time_seconds),
                (&self.rework_rate, m.rework_rate),
            ] {
                if let Some(v) = value {
                    gauge.with_label_values(&labels).set(v);
                }
            }
        }
    }
}

impl HubMetrics {
    pub fn new() -> Self {
        let metrics = Self {
            registry: Registry::new(),
            records: counter_vec(
                "sextant_receiver_records_total",
                "OTLP records received, by signal, outcome (accepted, rejected, ignored) and reason.",
                &["signal", "outcome", "reason"],
            ),
            ingest_seconds: histogram_vec(
                HistogramOpts::new(
                    "sextant_receiver_ingest_duration_seconds",
                    "Time to validate and store one OTLP request, in seconds.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
            ),
            batch_records: histogram_vec(
                HistogramOpts::new(
                    "sextant_receiver_batch_records",
                    "Records per OTLP request.",
                )
                .buckets(prometheus::exponential_buckets(1.0, 4.0, 9).expect("valid buckets")),
            ),
            report_cache: counter_vec(
                "sextant_api_report_cache_requests_total",
                "Environment-state and compare requests, by how the report cache served them \
                 (hit, miss, uncached).",
                &["result"],
            ),
            http: std::sync::Arc::default(),
            drift_hosts: gauge_vec(
                "sextant_hub_drift_hosts",
                "Current (host, target) rows that differ from desired state, by tenant, \
                 environment and reason (no_desired, wrong_revision, failed).",
                &["tenant", "env", "reason"],
            ),
            stale_hosts: gauge_vec(
                "sextant_hub_stale_hosts",
                "Hosts with no report for longer than the stale threshold, by tenant and \
                 environment.",
                &["tenant", "env"],
            ),
            rate_limited: counter_vec(
                "sextant_rate_limited_total",
                "Requests refused by a per-tenant rate limit, by surface (api: the read API; \
                 ingest: OTLP over HTTP and gRPC).",
                &["surface"],
            ),
            requests_refused: counter_vec(
                "sextant_receiver_requests_refused_total",
                "OTLP requests refused before decoding, by reason (too_large: over the request \
                 size limit, or decoding into more than the whole memory budget; memory_budget: over the budget of requests in flight, retryable; \
                 invalid_gzip; read_error).",
                &["reason"],
            ),
            inflight_request_bytes: IntGauge::new(
                "sextant_receiver_inflight_request_bytes",
                "Bytes of the memory budget held by OTLP requests in flight (bodies, their gzip \
                 output and the decoded estimate).",
            )
            .expect("valid metric"),
            listener_refused: sextant_kit::serve::refused_counter(),
            stale_marked: IntCounter::new(
                "sextant_hub_stale_marked_total",
                "Current rows the stale sweep marked past the stale threshold (docs/performance.md, \
                 \"Bounded reads\").",
            )
            .expect("valid metric"),
            rebuild_pending: IntGauge::new(
                "sextant_hub_deployments_rebuild_pending",
                "Targets whose deployments an upgraded hub is still rebuilding from history (docs/insights.md)",
            )
            .expect("valid metric"),
            derive_pending: IntGauge::new(
                "sextant_hub_deployments_derive_pending",
                "Targets with new history whose deployments the hub has still to derive (docs/insights.md)",
            )
            .expect("valid metric"),
            stale_sweep_errors: IntCounter::new(
                "sextant_hub_stale_sweep_errors_total",
                "Stale sweeps that failed; each is tried again at the next period.",
            )
            .expect("valid metric"),
            drift_read_at: std::sync::Arc::default(),
            dora: DoraGauges::new(),
            dora_read_at: std::sync::Arc::default(),
        };
        metrics.start_series();
        metrics.register();
        metrics
    }

    /// Creates the series of every known label value, so that a rate()
    /// sees the first event.
    fn start_series(&self) {
        for reason in ["too_large", "memory_budget", "invalid_gzip", "read_error"] {
            self.requests_refused.with_label_values(&[reason]);
        }
        for listener in ["otlp_grpc", "otlp_http", "api"] {
            self.listener_refused.with_label_values(&[listener]);
        }
        for surface in [API, INGEST] {
            self.rate_limited.with_label_values(&[surface]);
        }
    }

    /// Registers the hub's series (the HTTP series have their own registry).
    fn register(&self) {
        for c in [
            Box::new(self.drift_hosts.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(self.stale_hosts.clone()),
            Box::new(self.records.clone()),
            Box::new(self.ingest_seconds.clone()),
            Box::new(self.batch_records.clone()),
            Box::new(self.report_cache.clone()),
            Box::new(self.rate_limited.clone()),
            Box::new(self.requests_refused.clone()),
            Box::new(self.inflight_request_bytes.clone()),
            Box::new(self.listener_refused.clone()),
            Box::new(self.stale_marked.clone()),
            Box::new(self.stale_sweep_errors.clone()),
            Box::new(self.rebuild_pending.clone()),
            Box::new(self.derive_pending.clone()),
            Box::new(self.dora.deployments.clone()),
            Box::new(self.dora.lead_time_seconds.clone()),
            Box::new(self.dora.change_fail_rate.clone()),
            Box::new(self.dora.recovery_time_seconds.clone()),
            Box::new(self.dora.rework_rate.clone()),
        ] {
            self.registry.register(c).expect("metric registered once");
        }
    }

    /// Adds `n` records with this outcome.
    pub fn count(&self, signal: &str, outcome: &str, reason: &str, n: u64) {
        if n > 0 {
            self.records
                .with_label_values(&[signal, outcome, reason])
                .inc_by(n);
        }
    }

    /// Counts an OTLP request refused before decoding.
    pub fn body_refused(&self, error: &crate::otlp::body::BodyError) {
        use crate::otlp::body::BodyError;
        let reason = match error {
            BodyError::TooLarge { .. } | BodyError::DecodesTooLarge { .. } => "too_large",
            BodyError::OverBudget { .. } => "memory_budget",
            BodyError::Gzip(_) => "invalid_gzip",
            BodyError::Read(_) => "read_error",
        };
        self.requests_refused.with_label_values(&[reason]).inc();
    }

    /// The hub's series and its HTTP series, for `/metrics`.
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.registry.gather();
        families.extend(self.http.gather());
        families
    }
}

/// A counter with labels.
fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

/// A gauge with labels.
fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
}

/// A histogram by signal.
fn histogram_vec(opts: HistogramOpts) -> HistogramVec {
    HistogramVec::new(opts, &["signal"]).expect("valid metric")
}

impl Default for HubMetrics {
    fn default() -> Self {
        Self::new()
    }
}
