//! The subscriber's lines, redaction and the W3C context helpers.

use std::sync::{Arc, Mutex};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::Value;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;

use super::context::global_propagator;
use super::*;

/// Lines written by the layer under test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }
}

/// A subscriber like `init`'s, with an exporter-less tracer provider
/// and the lines captured; the guard keeps it current.
fn subscriber(format: LogFormat) -> (Captured, tracing::subscriber::DefaultGuard) {
    global_propagator();
    let captured = Captured::default();
    let provider = SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer(SCOPE)))
        .with(LogLayer::new(format, captured.clone()));
    (captured, tracing::subscriber::set_default(subscriber))
}

#[test]
fn json_lines_carry_the_trace_and_redact_secrets() {
    let (captured, _guard) = subscriber(LogFormat::Json);
    let span = tracing::info_span!("task.dispatch", task = "t1", api_token = "s3cr3t");
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    assert!(set_parent(&span, parent));
    let traceparent = span.in_scope(|| {
        tracing::info!(
            password = "hunter2",
            Authorization = "Bearer abc",
            db_credentials = ?("u", "p"),
            client_secret = "x",
            attempt = 2,
            "Task sent"
        );
        traceparent_of(&tracing::Span::current()).expect("a valid context")
    });
    tracing::warn!("outside any span");

    let lines = captured.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["message"], "Task sent");
    assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    for secret in [
        "password",
        "Authorization",
        "db_credentials",
        "client_secret",
    ] {
        assert_eq!(line["fields"][secret], REDACTED, "{secret} in {line}");
    }
    assert_eq!(line["fields"]["attempt"], 2);
    assert_eq!(line["span"]["name"], "task.dispatch");
    assert_eq!(line["span"]["task"], "t1");
    assert_eq!(line["span"]["api_token"], REDACTED);
    let text = line.to_string();
    for value in ["hunter2", "Bearer abc", "s3cr3t", "\"p\""] {
        assert!(!text.contains(value), "{value} leaked: {text}");
    }
    // The line's ids are the span's: the parent's trace, a new span id.
    assert_eq!(line["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    let span_id = line["span_id"].as_str().expect("span_id");
    assert_eq!(span_id.len(), 16);
    assert_ne!(span_id, "b7ad6b7169203331");
    assert_eq!(
        traceparent,
        format!("00-0af7651916cd43dd8448eb211c80319c-{span_id}-01")
    );
    assert!(lines[1].get("trace_id").is_none(), "{}", lines[1]);
    assert_eq!(lines[1]["level"], "WARN");
}

#[test]
fn text_lines_redact_too() {
    global_propagator();
    let captured = Captured::default();
    let subscriber =
        tracing_subscriber::registry().with(LogLayer::new(LogFormat::Text, captured.clone()));
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(token = "abc123", host = "h1", "Agent registered");
    });
    let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    assert!(text.contains("INFO sextant_exporters::telemetry::tests: Agent registered"));
    assert!(
        text.contains("token=[REDACTED]") && text.contains("host=h1"),
        "{text}"
    );
    assert!(!text.contains("abc123"), "{text}");
}

#[test]
fn a_bad_traceparent_is_ignored() {
    let (_captured, _guard) = subscriber(LogFormat::Json);
    let span = tracing::info_span!("promotion");
    assert!(!set_parent(&span, "00-not-a-trace-01"));
    assert!(!set_parent(&span, ""));
    // Still a span of its own trace.
    assert!(traceparent_of(&span).is_some());
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "traceparent",
        http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    let child = tracing::info_span!("http.request");
    assert!(set_parent_from_headers(&child, &headers));
    let tp = traceparent_of(&child).expect("valid");
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
}

#[test]
fn outgoing_requests_carry_the_current_span() {
    let (_captured, _guard) = subscriber(LogFormat::Json);
    assert!(current_headers().is_empty(), "no span, no headers");
    let span = tracing::info_span!("gate.webhook");
    let headers = span.in_scope(current_headers);
    let sent = headers["traceparent"].to_str().expect("ascii");
    assert_eq!(Some(sent.to_owned()), traceparent_of(&span));
}

#[test]
fn secret_names() {
    for name in [
        "password",
        "db_password",
        "token",
        "registration_token",
        "secret",
        "credentials",
        "authorization",
        "x_api_key",
    ] {
        assert!(is_secret(name), "{name}");
    }
    for name in ["task", "host", "digest", "attempt", "environment"] {
        assert!(!is_secret(name), "{name}");
    }
}
