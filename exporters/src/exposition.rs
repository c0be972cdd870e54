//! The Prometheus text exposition every service's `/metrics` answers with:
//! the one place that encodes metric families and sets the content type.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, TextEncoder};

/// `text/plain; version=0.0.4`, what Prometheus scrapes.
pub fn content_type() -> &'static str {
    prometheus::TEXT_FORMAT
}

/// The families in the text format; `Err` when one is malformed (a
/// family without metrics or with a bad name).
pub fn encode(families: &[MetricFamily]) -> Result<String, String> {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(families, &mut out)
        .map_err(|e| format!("cannot encode the metrics: {e}"))?;
    String::from_utf8(out).map_err(|e| format!("cannot encode the metrics: {e}"))
}

/// A `/metrics` answer: 200 with the exposition, or 500 saying why the
/// families could not be encoded.
pub fn response(families: &[MetricFamily]) -> Response {
    match encode(families) {
        Ok(body) => ([(header::CONTENT_TYPE, content_type())], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "Cannot serve /metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, e).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{IntCounter, Registry};

    use super::*;

    #[tokio::test]
    async fn families_become_the_text_format() {
        let registry = Registry::new();
        let counter = IntCounter::new("sextant_test_total", "A test counter.").expect("valid");
        registry.register(Box::new(counter.clone())).expect("once");
        counter.inc_by(3);
        let response = response(&registry.gather());
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/plain; version=0.0.4"
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let text = String::from_utf8(body.to_vec()).expect("utf-8");
        assert!(text.contains("# TYPE sextant_test_total counter"), "{text}");
        assert!(text.contains("sextant_test_total 3"), "{text}");
    }
}
