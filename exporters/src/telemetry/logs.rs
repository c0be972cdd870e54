//! Log lines on stderr (JSON or text) and OTLP log records, with the
//! fields of secrets redacted.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::SystemTime;

use opentelemetry::Context;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::logs::SdkLogger;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

use super::{LogFormat, REDACTED};

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
