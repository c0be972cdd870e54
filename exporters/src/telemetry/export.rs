//! The OTLP exporters: whether each signal is exported, over which
//! protocol, through which HTTP client, with which resource.

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

/// Whether a signal's exporter is on: `OTEL_<SIGNAL>_EXPORTER=otlp|none`,
/// and without it, whether an OTLP endpoint is configured (the spec's
/// default endpoint, localhost:4317, would only fill the log with refused
/// connections on a machine without a collector).
pub(super) fn selected(
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
pub(super) enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// `OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`:
/// `grpc` (Sextant's default: the collectors in otel-config/ listen on
/// 4317) or `http/protobuf`. `http/json` is not offered; it falls back to
/// `http/protobuf`, which every OTLP/HTTP receiver accepts too.
pub(super) fn protocol(
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
pub(super) struct RuntimeHttpClient {
    client: reqwest::Client,
    runtime: Option<tokio::runtime::Handle>,
}

impl RuntimeHttpClient {
    pub(super) fn new() -> Self {
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

pub(super) fn resource(service: &str, env: &impl Fn(&str) -> Option<String>) -> Resource {
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
