//! The HTTP series every Sextant service exports (docs/telemetry.md):
//! `sextant_http_requests_total{method,path,status}`,
//! `sextant_http_request_duration_seconds{method,path}` and
//! `sextant_http_requests_in_flight`. `path` is the route template
//! (`/api/v1/promotions/{id}`), never the raw path, so its cardinality is
//! the number of routes. Install [`track`] as a route layer
//! (`Router::route_layer(from_fn_with_state(metrics, track))`): only then
//! is the matched route known.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// The HTTP series of one service process.
pub struct HttpMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
}

impl HttpMetrics {
    /// The metric definitions are static, so building them cannot fail.
    pub fn new() -> Self {
        Self::build().unwrap_or_else(|e| unreachable!("static metric definitions: {e}"))
    }

    fn build() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "sextant_http_requests_total",
                "API requests by method, route template and status.",
            ),
            &["method", "path", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "sextant_http_request_duration_seconds",
                "API request durations by method and route template.",
            ),
            &["method", "path"],
        )?;
        let in_flight = IntGauge::new(
            "sextant_http_requests_in_flight",
            "API requests being served.",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        Ok(Self {
            registry,
            requests,
            duration,
            in_flight,
        })
    }

    /// The series, for a service's `/metrics` encoder.
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware (a route layer, so the route template is known): counts and
/// times each request under its template, never its raw path.
pub async fn track(
    State(metrics): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    metrics.in_flight.inc();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.in_flight.dec();
    metrics
        .duration
        .with_label_values(&[&method, &path])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[&method, &path, response.status().as_str()])
        .inc();
    response
}
