//! The Prometheus text exposition every service's `/metrics` answers with:
//! the one place that encodes metric families and sets the content type.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::TextEncoder;
use prometheus::proto::MetricFamily;

/// `text/plain; version=0.0.4`, what Prometheus scrapes.
pub fn content_type() -> &'static str {
    prometheus::TEXT_FORMAT
}

/// The families in the text format.
///
/// A family without a single series is left out: `prometheus`'s encoder
/// refuses the whole exposition for one such family ("MetricFamily has no
/// metrics"), which a labelled vector collected before its first
/// `with_label_values` is, and a scrape must never fail because a counter
/// has not counted yet. `Registry::gather` leaves such families out the
/// same way. A family without a name cannot be written at all; it is left
/// out with an error in the log rather than taking every other series
/// down. `Err` remains for a failure of the encoder itself.
/// The text encoder failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the metrics: {0}")]
pub struct EncodeError(#[from] prometheus::Error);

pub fn encode(families: &[MetricFamily]) -> Result<String, EncodeError> {
    let encoder = TextEncoder::new();
    let mut out = String::new();
    for family in families {
        if family.name().is_empty() {
            tracing::error!(
                help = family.help(),
                "A metric family has no name; left out"
            );
            continue;
        }
        if family.get_metric().is_empty() {
            continue;
        }
        encoder.encode_utf8(std::slice::from_ref(family), &mut out)?;
    }
    Ok(out)
}

/// A `/metrics` answer: 200 with the exposition, or 500 saying why the
/// families could not be encoded.
pub fn response(families: &[MetricFamily]) -> Response {
    match encode(families) {
        Ok(body) => ([(header::CONTENT_TYPE, content_type())], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "Cannot serve /metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::core::Collector;
    use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

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

    /// A labelled family none of whose series exists yet (collected
    /// straight from its vector, as `Registry::gather` would not) is left
    /// out; the rest of the exposition is served.
    #[tokio::test]
    async fn a_labelled_family_without_series_leaves_the_rest_served() {
        let empty = IntCounterVec::new(
            Opts::new("sextant_test_empty_total", "No series yet."),
            &["status"],
        )
        .expect("valid");
        let counter = IntCounter::new("sextant_test_total", "A test counter.").expect("valid");
        counter.inc();
        let mut families = Collector::collect(&empty);
        families.extend(Collector::collect(&counter));
        assert!(families[0].get_metric().is_empty());

        let response = response(&families);
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let text = String::from_utf8(body.to_vec()).expect("utf-8");
        assert!(text.contains("sextant_test_total 1"), "{text}");
        assert!(!text.contains("sextant_test_empty_total"), "{text}");
        assert_eq!(
            encode(&Collector::collect(&empty)).ok(),
            Some(String::new())
        );
    }
}
