//! The HTTP series every Sextant service exports (docs/telemetry.md):
//! `sextant_http_requests_total{method,path,status}`,
//! `sextant_http_request_duration_seconds{method,path}` and
//! `sextant_http_requests_in_flight`. `path` is the route template
//! (`/api/v1/promotions/{id}`), never the raw path, so its cardinality is
//! the number of routes. Install [`track`] as a route layer
//! (`Router::route_layer(from_fn_with_state(metrics, track))`): only then
//! is the matched route known.
//!
//! The same middleware opens the request's server span (`METHOD /route`,
//! a child of the caller's span when it sent W3C `traceparent`), except
//! for scrapes and health probes, which would bury the traces that matter.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use tracing::Instrument as _;

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
    let span = if path == "/metrics" || path.starts_with("/health") {
        tracing::Span::none()
    } else {
        let span = tracing::info_span!("http.request", otel.name = %format!("{method} {path}"),
            otel.kind = "server", http.request.method = %method, http.route = %path,
            http.response.status_code = tracing::field::Empty);
        crate::trace::set_parent_from_headers(&span, request.headers());
        span
    };
    metrics.in_flight.inc();
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
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
