//! The Prometheus text exposition every service's `/metrics` answers with:
//! the one place that encodes metric families and sets the content type.
//!
//! Two formats: the classic text format (`text/plain; version=0.0.4`) and
//! OpenMetrics (`application/openmetrics-text; version=1.0.0`), the only one
//! in which Prometheus reads exemplars. [`Format::negotiate`] picks one from
//! a scrape's `Accept`. OpenMetrics, and the classic format of a service
//! that has exemplars to show, are written by `prometheus-client` from one
//! registry per scrape: series of the `prometheus` crate (the HTTP series
//! shared with the hub, counters kept by a replica) join it through
//! [`Families`], and a histogram with exemplars is a native
//! `prometheus_client` metric registered beside them.

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

/// The exposition formats a `/metrics` answer can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: what any scraper understands.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`, ending in `# EOF`:
    /// what Prometheus asks for first, and the only format it reads
    /// exemplars from.
    OpenMetrics,
}

/// The OpenMetrics media type.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Format {
    /// The format a scrape's `Accept` header prefers: OpenMetrics when it
    /// names `application/openmetrics-text` with a higher quality than any
    /// range the classic format matches (`text/plain`, `text/*`, `*/*`);
    /// the classic format otherwise, also without the header. Prometheus
    /// sends `application/openmetrics-text;version=1.0.0,…,
    /// text/plain;version=0.0.4;q=0.5,*/*;q=0.1`.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics > text {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => content_type(),
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// `registry` in `format`; OpenMetrics ends with `# EOF`. Exemplars are
/// written in OpenMetrics only (the classic format has no place for them).
pub fn encode_registry(
    registry: &prometheus_client::registry::Registry,
    format: Format,
) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, registry)?
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, registry)?,
    }
    Ok(out)
}

/// Families of the `prometheus` crate as a `prometheus_client` collector,
/// so that they are written in either format beside native
/// `prometheus_client` metrics.
///
/// As [`encode`] does, a family without a series or without a name is
/// left out. A counter's name loses its `_total`, which the encoders put
/// back (OpenMetrics names the family without it and the samples with
/// it); a counter named without `_total` gains it, so name counters with
/// it. Summaries and untyped families are left out with an error in the
/// log (no Sextant service has one).
#[derive(Debug)]
pub struct Families(pub Vec<MetricFamily>);

impl prometheus_client::collector::Collector for Families {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus::proto::MetricType as From;
        use prometheus_client::encoding::NoLabelSet;
        use prometheus_client::metrics::MetricType as To;

        for family in &self.0 {
            let name = family.name();
            if name.is_empty() || family.get_metric().is_empty() {
                continue;
            }
            let (name, kind) = match family.get_field_type() {
                From::COUNTER => (name.strip_suffix("_total").unwrap_or(name), To::Counter),
                From::GAUGE => (name, To::Gauge),
                From::HISTOGRAM => (name, To::Histogram),
                From::SUMMARY | From::UNTYPED => {
                    tracing::error!(
                        metric = name,
                        "A summary or untyped family cannot be encoded; left out"
                    );
                    continue;
                }
            };
            let help = family.help().trim_end_matches('.');
            let mut descriptor = encoder.encode_descriptor(name, help, None, kind)?;
            for metric in family.get_metric() {
                let labels: Vec<(&str, &str)> = metric
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                let mut series = descriptor.encode_family(&labels)?;
                match kind {
                    To::Counter => {
                        let v = metric.get_counter().get_value();
                        match whole(v).and_then(|n| u64::try_from(n).ok()) {
                            Some(n) => series.encode_counter::<NoLabelSet, u64, u64>(&n, None)?,
                            None => series.encode_counter::<NoLabelSet, f64, f64>(&v, None)?,
                        }
                    }
                    To::Histogram => {
                        let h = metric.get_histogram();
                        // The encoders take each bucket's own count and
                        // need the `+Inf` bucket listed.
                        let mut buckets = Vec::with_capacity(h.get_bucket().len() + 1);
                        let mut below = 0;
                        for b in h.get_bucket() {
                            let cumulative = b.cumulative_count();
                            buckets.push((b.upper_bound(), cumulative.saturating_sub(below)));
                            below = cumulative;
                        }
                        if buckets.last().is_none_or(|(le, _)| *le != f64::INFINITY) {
                            buckets
                                .push((f64::INFINITY, h.get_sample_count().saturating_sub(below)));
                        }
                        series.encode_histogram::<NoLabelSet>(
                            h.get_sample_sum(),
                            h.get_sample_count(),
                            &buckets,
                            None,
                        )?;
                    }
                    _ => {
                        let v = metric.get_gauge().get_value();
                        match whole(v) {
                            Some(n) => series.encode_gauge(&n)?,
                            None => series.encode_gauge(&v)?,
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// `v` as an integer when it is one (and exactly representable), so that
/// `3` is written `3`, not `3.0`, as the `prometheus` crate writes it.
fn whole(v: f64) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    (v.fract() == 0.0 && v.abs() < EXACT).then_some(v as i64)
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

    #[test]
    fn accept_picks_the_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
        for classic in [
            None,
            Some(""),
            Some("*/*"),
            Some("text/plain;version=0.0.4"),
            Some("text/plain, application/openmetrics-text"),
            Some("application/openmetrics-text;q=0.2, text/plain"),
            Some("application/openmetrics-text;q=0"),
            Some("application/json"),
        ] {
            assert_eq!(
                Format::negotiate(classic),
                Format::Prometheus,
                "{classic:?}"
            );
        }
        assert_eq!(
            Format::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
    }

    /// The `prometheus` crate's families through the bridge, in both
    /// formats: counters, labelled gauges, histograms with their `+Inf`
    /// bucket; empty families left out.
    #[test]
    fn families_bridge_into_both_formats() {
        use prometheus::{HistogramOpts, HistogramVec, IntGaugeVec};

        let counter = IntCounter::new("sextant_test_total", "A test counter.").expect("valid");
        counter.inc_by(3);
        let gauge =
            IntGaugeVec::new(Opts::new("sextant_test_gauge", "A gauge."), &["env"]).expect("valid");
        gauge.with_label_values(&["a\"b"]).set(-2);
        let histogram = HistogramVec::new(
            HistogramOpts::new("sextant_test_seconds", "A histogram.").buckets(vec![1.0, 5.0]),
            &["kind"],
        )
        .expect("valid");
        histogram.with_label_values(&["x"]).observe(0.5);
        histogram.with_label_values(&["x"]).observe(3.0);
        histogram.with_label_values(&["x"]).observe(30.0);
        let empty = IntCounterVec::new(Opts::new("sextant_test_empty_total", "None."), &["s"])
            .expect("valid");
        let mut families = Collector::collect(&counter);
        families.extend(Collector::collect(&gauge));
        families.extend(Collector::collect(&histogram));
        families.extend(Collector::collect(&empty));
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Families(families)));

        let open = encode_registry(&registry, Format::OpenMetrics).expect("encodes");
        let classic = encode_registry(&registry, Format::Prometheus).expect("encodes");
        for (text, lines) in [
            (
                &open,
                [
                    "# TYPE sextant_test counter",
                    "sextant_test_total 3",
                    r#"sextant_test_gauge{env="a\"b"} -2"#,
                    r#"sextant_test_seconds_bucket{le="1.0",kind="x"} 1"#,
                    r#"sextant_test_seconds_bucket{le="5.0",kind="x"} 2"#,
                    r#"sextant_test_seconds_bucket{le="+Inf",kind="x"} 3"#,
                    r#"sextant_test_seconds_count{kind="x"} 3"#,
                    "# EOF",
                ],
            ),
            (
                &classic,
                [
                    "# TYPE sextant_test_total counter",
                    "sextant_test_total 3",
                    r#"sextant_test_gauge{env="a\"b"} -2"#,
                    r#"sextant_test_seconds_bucket{kind="x",le="1"} 1"#,
                    r#"sextant_test_seconds_bucket{kind="x",le="5"} 2"#,
                    r#"sextant_test_seconds_bucket{kind="x",le="+Inf"} 3"#,
                    r#"sextant_test_seconds_count{kind="x"} 3"#,
                    r#"sextant_test_seconds_sum{kind="x"} 33.5"#,
                ],
            ),
        ] {
            for line in lines {
                assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
            }
            assert!(!text.contains("sextant_test_empty"), "{text}");
        }
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
