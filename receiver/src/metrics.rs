//! The hub's Prometheus metrics. The text encoder lives here and nowhere else.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
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
    /// When the drift gauges were last read from the store.
    pub drift_read_at: std::sync::Arc<tokio::sync::Mutex<Option<std::time::Instant>>>,
}

impl HubMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let records = IntCounterVec::new(
            Opts::new(
                "sextant_receiver_records_total",
                "OTLP records received, by signal, outcome (accepted, rejected, ignored) and reason.",
            ),
            &["signal", "outcome", "reason"],
        )
        .expect("valid metric");
        let ingest_seconds = HistogramVec::new(
            HistogramOpts::new(
                "sextant_receiver_ingest_duration_seconds",
                "Time to validate and store one OTLP request, in seconds.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["signal"],
        )
        .expect("valid metric");
        let batch_records = HistogramVec::new(
            HistogramOpts::new(
                "sextant_receiver_batch_records",
                "Records per OTLP request.",
            )
            .buckets(prometheus::exponential_buckets(1.0, 4.0, 9).expect("valid buckets")),
            &["signal"],
        )
        .expect("valid metric");
        let report_cache = IntCounterVec::new(
            Opts::new(
                "sextant_api_report_cache_requests_total",
                "Environment-state and compare requests, by how the report cache served them \
                 (hit, miss, uncached).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let drift_hosts = IntGaugeVec::new(
            Opts::new(
                "sextant_hub_drift_hosts",
                "Current (host, target) rows that differ from desired state, by tenant, \
                 environment and reason (no_desired, wrong_revision, failed).",
            ),
            &["tenant", "env", "reason"],
        )
        .expect("valid metric");
        let stale_hosts = IntGaugeVec::new(
            Opts::new(
                "sextant_hub_stale_hosts",
                "Hosts with no report for longer than the stale threshold, by tenant and \
                 environment.",
            ),
            &["tenant", "env"],
        )
        .expect("valid metric");
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "sextant_rate_limited_total",
                "Requests refused by a per-tenant rate limit, by surface (api: the read API; \
                 ingest: OTLP over HTTP and gRPC).",
            ),
            &["surface"],
        )
        .expect("valid metric");
        let requests_refused = IntCounterVec::new(
            Opts::new(
                "sextant_receiver_requests_refused_total",
                "OTLP requests refused before decoding, by reason (too_large: over the request \
                 size limit, or decoding into more than the whole memory budget; memory_budget: over the budget of requests in flight, retryable; \
                 invalid_gzip; read_error).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for reason in ["too_large", "memory_budget", "invalid_gzip", "read_error"] {
            requests_refused.with_label_values(&[reason]);
        }
        let inflight_request_bytes = IntGauge::new(
            "sextant_receiver_inflight_request_bytes",
            "Bytes of the memory budget held by OTLP requests in flight (bodies, their gzip \
             output and the decoded estimate).",
        )
        .expect("valid metric");
        let listener_refused = sextant_kit::serve::refused_counter();
        for listener in ["otlp_grpc", "otlp_http", "api"] {
            listener_refused.with_label_values(&[listener]);
        }
        let stale_marked = IntCounter::new(
            "sextant_hub_stale_marked_total",
            "Current rows the stale sweep marked past the stale threshold (docs/performance.md, \
             \"Bounded reads\").",
        )
        .expect("valid metric");
        let stale_sweep_errors = IntCounter::new(
            "sextant_hub_stale_sweep_errors_total",
            "Stale sweeps that failed; each is tried again at the next period.",
        )
        .expect("valid metric");
        for surface in [API, INGEST] {
            // Both series exist from the start, so a rate() sees the first refusal.
            rate_limited.with_label_values(&[surface]);
        }
        for c in [
            Box::new(drift_hosts.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(stale_hosts.clone()),
            Box::new(records.clone()),
            Box::new(ingest_seconds.clone()),
            Box::new(batch_records.clone()),
            Box::new(report_cache.clone()),
            Box::new(rate_limited.clone()),
            Box::new(requests_refused.clone()),
            Box::new(inflight_request_bytes.clone()),
            Box::new(listener_refused.clone()),
            Box::new(stale_marked.clone()),
            Box::new(stale_sweep_errors.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Self {
            registry,
            records,
            ingest_seconds,
            batch_records,
            report_cache,
            http: std::sync::Arc::default(),
            drift_hosts,
            stale_hosts,
            rate_limited,
            requests_refused,
            inflight_request_bytes,
            listener_refused,
            stale_marked,
            stale_sweep_errors,
            drift_read_at: std::sync::Arc::default(),
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

impl Default for HubMetrics {
    fn default() -> Self {
        Self::new()
    }
}
