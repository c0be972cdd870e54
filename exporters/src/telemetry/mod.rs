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
//!
//! The parts: `export.rs` the OTLP exporters' protocol, HTTP client and
//! resource; `context.rs` the W3C context helpers; `logs.rs` the log lines
//! and OTLP log records with secrets redacted.

mod context;
mod export;
mod logs;
#[cfg(test)]
mod tests;

use opentelemetry::logs::LoggerProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithHttpConfig as _;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Span attributes for [`record_span`].
pub use opentelemetry::KeyValue;

use context::global_propagator;
pub use context::{current_headers, link_and_reparent, record_span, set_parent, traceparent_of};
use export::{Protocol, RuntimeHttpClient, protocol, resource, selected};
pub use logs::{LogLayer, is_secret};
pub use sextant_kit::trace::set_parent_from_headers;

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

/// The `service.name` [`Telemetry::init`] gives the resource for the role
/// `service`: the role's, unless `OTEL_SERVICE_NAME` or
/// `OTEL_RESOURCE_ATTRIBUTES` names another (for links to the service's
/// traces and logs, `sextant_kit::links`).
pub fn service_name(service: &str) -> String {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    resource(service, &env)
        .get(&opentelemetry::Key::new("service.name"))
        .map_or_else(|| service.to_owned(), |v| v.to_string())
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
