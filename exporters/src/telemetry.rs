//! Sextant's own telemetry, one setup for every service (docs/telemetry.md):
//!
//! - **Traces** through the opentelemetry SDK and tracing-opentelemetry:
//!   every `tracing` span is an OpenTelemetry span, exported over OTLP
//!   (gRPC, or `http/protobuf` as `OTEL_EXPORTER_OTLP_PROTOCOL` says) when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) or
//!   `OTEL_TRACES_EXPORTER=otlp` says so. The SDK and the exporter read the
//!   other `OTEL_*` variables themselves (service name and resource,
//!   sampler, batch settings, headers, timeout, compression).
//! - **Logs** as lines on stderr, JSON (with `trace_id` and `span_id`) or
//!   text, and over OTLP when `OTEL_LOGS_EXPORTER=otlp` (or a logs endpoint)
//!   is set. Fields named like a secret are redacted in both ([`is_secret`]).
//! - **W3C context** helpers: a span's `traceparent`, and a span parented on
//!   one ([`traceparent_of`], [`set_parent`], [`set_parent_from_headers`]),
//!   for HTTP, gRPC and stored promotions; [`record_span`] records a span
//!   after the fact (an approval's wait).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::SystemTime;

use opentelemetry::Context;
/// Span attributes for [`record_span`].
pub use opentelemetry::KeyValue;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::WithHttpConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

/// The instrumentation scope of Sextant's spans and logs.
const SCOPE: &str = "sextant";

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Builds a signal's OTLP exporter (`SpanExporter`, `LogExporter`: their
/// builders share method names, not a trait) for a protocol.
macro_rules! otlp_exporter {
    ($exporter:ty, $protocol:expr) => {
        match $protocol {
            Protocol::Grpc => <$exporter>::builder().with_tonic().build(),
            Protocol::HttpProtobuf => <$exporter>::builder()
                .with_http()
                .with_http_client(RuntimeHttpClient::new())
                .build(),
        }
    };
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line: for collectors and Loki.
    Json,
    /// `timestamp LEVEL target: message key=value …`: for people.
    Text,
}

impl LogFormat {
    /// `SEXTANT_LOG_FORMAT` (`json` or `text`); without it, text on a
    /// terminal and JSON otherwise (a service under systemd, compose or
    /// Kubernetes).
    pub fn from_env() -> Self {
        match std::env::var("SEXTANT_LOG_FORMAT").as_deref() {
            Ok("json") => Self::Json,
            Ok("text") => Self::Text,
            _ if std::io::IsTerminal::is_terminal(&std::io::stderr()) => Self::Text,
            _ => Self::Json,
        }
    }
}

/// The installed providers; [`Telemetry::shutdown`] flushes what is still
/// batched. Dropping it without a shutdown loses the last batch.
pub struct Telemetry {
    tracer: SdkTracerProvider,
    logger: Option<SdkLoggerProvider>,
}

impl Telemetry {
    /// Installs the global `tracing` subscriber (level from `RUST_LOG`,
    /// default `info`), the OpenTelemetry tracer provider and the W3C
    /// propagator. `service` is `service.name` unless `OTEL_SERVICE_NAME`
    /// or `OTEL_RESOURCE_ATTRIBUTES` names one. Call it inside a Tokio
    /// runtime (the gRPC exporter's channel lives on it). Problems with the
    /// exporter configuration are logged, and the service runs without it.
    pub fn init(service: &str, format: LogFormat) -> Self {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut warnings = Vec::new();
        let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let traces = !disabled
            && selected(
                &env,
                "OTEL_TRACES_EXPORTER",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                &mut warnings,
            );
        let logs = !disabled
            && selected(
                &env,
                "OTEL_LOGS_EXPORTER",
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                &mut warnings,
            );
        let resource = resource(service, &env);
        global_propagator();

        let mut tracer = SdkTracerProvider::builder().with_resource(resource.clone());
        if traces {
            let protocol = protocol(&env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", &mut warnings);
            match otlp_exporter!(opentelemetry_otlp::SpanExporter, protocol) {
                Ok(exporter) => tracer = tracer.with_batch_exporter(exporter),
                Err(e) => warnings.push(format!("cannot export traces over OTLP: {e}")),
            }
        }
        // Without an exporter the provider still makes span contexts, so
        // that `traceparent` reaches agents and SSH commands.
        let tracer = tracer.build();
        opentelemetry::global::set_tracer_provider(tracer.clone());

        let logger = if logs {
            let protocol = protocol(&env, "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", &mut warnings);
            match otlp_exporter!(opentelemetry_otlp::LogExporter, protocol) {
                Ok(exporter) => Some(
                    SdkLoggerProvider::builder()
                        .with_resource(resource)
                        .with_batch_exporter(exporter)
                        .build(),
                ),
                Err(e) => {
                    warnings.push(format!("cannot export logs over OTLP: {e}"));
                    None
                }
            }
        } else {
            None
        };

        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        let lines = LogLayer::new(format, std::io::stderr)
            .with_otlp(logger.as_ref().map(|l| l.logger(SCOPE)));
        let spans = tracing_opentelemetry::layer().with_tracer(tracer.tracer(SCOPE));
        let installed = tracing_subscriber::registry()
            .with(filter)
            .with(spans)
            .with(lines)
            .try_init();
        if let Err(e) = installed {
            eprintln!("telemetry: a tracing subscriber is already installed: {e}");
        }
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        Self { tracer, logger }
    }

    /// Flushes and stops the exporters (blocking: their batch threads send
    /// what is left, up to the exporter timeout).
    pub fn shutdown(self) {
        if let Err(e) = self.tracer.shutdown() {
            eprintln!("telemetry: traces not flushed: {e}");
        }
        if let Some(logger) = self.logger
            && let Err(e) = logger.shutdown()
        {
            eprintln!("telemetry: logs not flushed: {e}");
        }
    }
}

/// Whether a signal's exporter is on: `OTEL_<SIGNAL>_EXPORTER=otlp|none`,
/// and without it, whether an OTLP endpoint is configured (the spec's
/// default endpoint, localhost:4317, would only fill the log with refused
/// connections on a machine without a collector).
fn selected(
    env: &impl Fn(&str) -> Option<String>,
    exporter_var: &str,
    endpoint_var: &str,
    warnings: &mut Vec<String>,
) -> bool {
    match env(exporter_var).as_deref() {
        Some("otlp") => true,
        Some("none") => false,
        Some(other) => {
            warnings.push(format!(
                "{exporter_var}={other} is not supported (use otlp or none); not exporting"
            ));
            false
        }
        None => env(endpoint_var).is_some() || env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some(),
    }
}

/// How a signal is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// `OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`:
/// `grpc` (Sextant's default: the collectors in otel-config/ listen on
/// 4317) or `http/protobuf`. `http/json` is not offered; it falls back to
/// `http/protobuf`, which every OTLP/HTTP receiver accepts too.
fn protocol(
    env: &impl Fn(&str) -> Option<String>,
    signal_var: &str,
    warnings: &mut Vec<String>,
) -> Protocol {
    let (var, value) = match env(signal_var) {
        Some(v) => (signal_var, v),
        None => match env("OTEL_EXPORTER_OTLP_PROTOCOL") {
            Some(v) => ("OTEL_EXPORTER_OTLP_PROTOCOL", v),
            None => return Protocol::Grpc,
        },
    };
    match value.as_str() {
        "grpc" => Protocol::Grpc,
        "http/protobuf" => Protocol::HttpProtobuf,
        "http/json" => {
            warnings.push(format!(
                "{var}=http/json is not supported; exporting http/protobuf instead"
            ));
            Protocol::HttpProtobuf
        }
        other => {
            warnings.push(format!(
                "{var}={other} is not a protocol (grpc, http/protobuf); exporting grpc"
            ));
            Protocol::Grpc
        }
    }
}

/// OTLP/HTTP through the services' own reqwest client. The SDK exports
/// from its own thread, outside the Tokio runtime reqwest needs, so each
/// request runs as a task on the runtime `init` was called in.
#[derive(Debug)]
struct RuntimeHttpClient {
    client: reqwest::Client,
    runtime: Option<tokio::runtime::Handle>,
}

impl RuntimeHttpClient {
    fn new() -> Self {
        Self {
            client: reqwest::Client::new(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for RuntimeHttpClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let Some(runtime) = &self.runtime else {
            return Err("OTLP/HTTP export needs the Tokio runtime telemetry was set up in".into());
        };
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let sent = runtime.spawn(async move {
            let response = client.execute(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            let mut answer = http::Response::new(body);
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok::<_, reqwest::Error>(answer)
        });
        Ok(sent.await??)
    }
}

fn resource(service: &str, env: &impl Fn(&str) -> Option<String>) -> Resource {
    let named = env("OTEL_SERVICE_NAME").is_some()
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
    let mut builder = Resource::builder();
    if !named {
        builder = builder.with_service_name(service.to_owned());
    }
    builder
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

fn global_propagator() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}

// -- W3C context -------------------------------------------------------------

/// The W3C `traceparent` of a span, when it has a valid context (the
/// telemetry is installed and the span enabled).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// The context a `traceparent` names; `None` when it does not parse.
fn context_of(traceparent: &str) -> Option<Context> {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes `span` a child of the span a `traceparent` names (a stored
/// promotion's, a task's). Call it before the span is first entered. A
/// value that does not parse leaves the span where it was; says whether
/// the parent was set.
pub fn set_parent(span: &tracing::Span, traceparent: &str) -> bool {
    context_of(traceparent).is_some_and(|cx| span.set_parent(cx).is_ok())
}

/// Makes `span` a child of the span `traceparent` names (a promotion's),
/// linked to the span it would have had (the request acting on it), so
/// that both traces lead to each other.
pub fn link_and_reparent(span: &tracing::Span, traceparent: &str) -> bool {
    let Some(cx) = context_of(traceparent) else {
        return false;
    };
    let current = tracing::Span::current().context();
    let caller = current.span().span_context().clone();
    if span.set_parent(cx).is_err() {
        return false;
    }
    if caller.is_valid() {
        span.add_link(caller);
    }
    true
}

/// Makes `span` a child of the caller's span when the request carries W3C
/// `traceparent` (and `tracestate`) headers.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) -> bool {
    struct Headers<'a>(&'a http::HeaderMap);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(http::HeaderName::as_str).collect()
        }
    }
    let cx = TraceContextPropagator::new().extract(&Headers(headers));
    cx.span().span_context().is_valid() && span.set_parent(cx).is_ok()
}

/// W3C `traceparent` (and `tracestate`) headers for the current span, for
/// an outgoing request (a gate's webhook, the hub, a health probe); empty
/// outside a traced span.
pub fn current_headers() -> http::HeaderMap {
    let mut carrier = HashMap::new();
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    }
    carrier
        .into_iter()
        .filter_map(|(k, v)| {
            Some((
                http::HeaderName::from_bytes(k.as_bytes()).ok()?,
                http::HeaderValue::from_str(&v).ok()?,
            ))
        })
        .collect()
}

/// Records a span that has already happened (an approval's wait, from the
/// request to the decision) under the span `parent` names. Nothing is
/// recorded when `parent` does not parse.
pub fn record_span(
    name: &'static str,
    parent: &str,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<KeyValue>,
) {
    let Some(cx) = context_of(parent) else {
        return;
    };
    let tracer = opentelemetry::global::tracer(SCOPE);
    let mut span = tracer
        .span_builder(name)
        .with_start_time(start)
        .with_attributes(attributes)
        .start_with_context(&tracer, &cx);
    span.end_with_timestamp(end);
}

// -- log lines ---------------------------------------------------------------

/// Whether a field's value must not be logged: its name mentions a
/// password, token, secret, credentials, an authorization header or a key.
pub fn is_secret(name: &str) -> bool {
    const WORDS: [&str; 9] = [
        "password",
        "passwd",
        "token",
        "secret",
        "credential",
        "authorization",
        "api_key",
        "apikey",
        "private_key",
    ];
    let name = name.to_ascii_lowercase();
    WORDS.iter().any(|w| name.contains(w))
}

/// Collects a span's or an event's fields, secrets redacted.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        let value = if is_secret(name) {
            Value::String(REDACTED.to_owned())
        } else {
            value
        };
        self.0.insert(name.to_owned(), value);
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The cause chain on one line, as the CLI prints errors.
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(s) = source {
            let _ = write!(text, ": {s}");
            source = s.source();
        }
        self.put(field, Value::from(text));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

/// A span's fields, kept in its extensions for the lines logged inside it.
struct SpanFields(Map<String, Value>);

/// Writes each event as one line (JSON or text) and, when OTLP logs are on,
/// emits it as an OpenTelemetry log record carrying the current trace
/// context. Both see the fields after redaction.
pub struct LogLayer<W> {
    format: LogFormat,
    writer: W,
    otlp: Option<SdkLogger>,
}

impl<W> LogLayer<W> {
    pub fn new(format: LogFormat, writer: W) -> Self {
        Self {
            format,
            writer,
            otlp: None,
        }
    }

    /// Emits events as OTLP log records too.
    pub fn with_otlp(mut self, logger: Option<SdkLogger>) -> Self {
        self.otlp = logger;
        self
    }
}

/// Targets whose events never go out over OTLP: the exporter's own stack,
/// which would otherwise log about exporting its logs.
fn exporter_internal(target: &str) -> bool {
    ["opentelemetry", "tonic", "h2", "hyper", "tower"]
        .iter()
        .any(|t| target.starts_with(t))
}

impl<S, W> Layer<S> for LogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Map::new();
        attrs.record(&mut Fields(&mut fields));
        fields.retain(|k, _| !k.starts_with("otel."));
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            values.record(&mut Fields(fields));
            fields.retain(|k, _| !k.starts_with("otel."));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        let mut fields = Map::new();
        event.record(&mut Fields(&mut fields));
        let message = match fields.remove("message") {
            Some(Value::String(m)) => m,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let meta = event.metadata();
        let spans: Vec<Value> = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .map(|span| {
                        let mut object = Map::new();
                        object.insert("name".into(), Value::from(span.name()));
                        if let Some(SpanFields(f)) = span.extensions().get::<SpanFields>() {
                            object.extend(f.clone());
                        }
                        Value::Object(object)
                    })
                    .collect()
            })
            .unwrap_or_default();
        // The OpenTelemetry layer activates a span's context when it is
        // entered, so the current context is the event's span.
        let span_context = Context::map_current(|cx| cx.span().span_context().clone());
        let ids = span_context
            .is_valid()
            .then(|| (span_context.trace_id(), span_context.span_id()));
        let now = SystemTime::now();

        if let Some(logger) = &self.otlp
            && !exporter_internal(meta.target())
        {
            let mut record = logger.create_log_record();
            record.set_timestamp(now);
            record.set_severity_number(severity(*meta.level()));
            record.set_severity_text(meta.level().as_str());
            record.set_target(meta.target().to_owned());
            record.set_body(AnyValue::from(message.clone()));
            if let Some(Value::Object(span)) = spans.last()
                && let Some(Value::String(name)) = span.get("name")
            {
                record.add_attribute("span.name", name.clone());
            }
            for (k, v) in &fields {
                record.add_attribute(k.clone(), any_value(v));
            }
            logger.emit(record);
        }

        let line = match self.format {
            LogFormat::Json => {
                let mut object = Map::new();
                object.insert("timestamp".into(), Value::from(rfc3339(now)));
                object.insert("level".into(), Value::from(meta.level().as_str()));
                object.insert("target".into(), Value::from(meta.target()));
                object.insert("message".into(), Value::from(message));
                if !fields.is_empty() {
                    object.insert("fields".into(), Value::Object(fields));
                }
                if let Some(span) = spans.last() {
                    object.insert("span".into(), span.clone());
                }
                if !spans.is_empty() {
                    object.insert("spans".into(), Value::Array(spans));
                }
                if let Some((trace, span)) = ids {
                    object.insert("trace_id".into(), Value::from(trace.to_string()));
                    object.insert("span_id".into(), Value::from(span.to_string()));
                }
                Value::Object(object).to_string()
            }
            LogFormat::Text => {
                let mut line = format!(
                    "{} {:>5} {}: {message}",
                    rfc3339(now),
                    meta.level().as_str(),
                    meta.target()
                );
                for (k, v) in &fields {
                    match v {
                        Value::String(s) => {
                            let _ = write!(line, " {k}={s}");
                        }
                        other => {
                            let _ = write!(line, " {k}={other}");
                        }
                    }
                }
                if let Some((trace, _)) = ids {
                    let _ = write!(line, " trace_id={trace}");
                }
                line
            }
        };
        let mut writer = self.writer.make_writer();
        let _ = writer.write_all(format!("{line}\n").as_bytes());
    }
}

fn severity(level: tracing::Level) -> Severity {
    match level {
        tracing::Level::ERROR => Severity::Error,
        tracing::Level::WARN => Severity::Warn,
        tracing::Level::INFO => Severity::Info,
        tracing::Level::DEBUG => Severity::Debug,
        tracing::Level::TRACE => Severity::Trace,
    }
}

fn any_value(value: &Value) -> AnyValue {
    match value {
        Value::Bool(b) => AnyValue::from(*b),
        Value::Number(n) => n
            .as_i64()
            .map(AnyValue::from)
            .or_else(|| n.as_f64().map(AnyValue::from))
            .unwrap_or_else(|| AnyValue::from(n.to_string())),
        Value::String(s) => AnyValue::from(s.clone()),
        other => AnyValue::from(other.to_string()),
    }
}

fn rfc3339(at: SystemTime) -> String {
    let at = time::OffsetDateTime::from(at);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

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
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
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
}
