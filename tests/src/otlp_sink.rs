//! A test OTLP sink: an OpenTelemetry collector stand-in on 127.0.0.1,
//! port 0, over gRPC and over HTTP/protobuf (`/v1/traces`, `/v1/logs`),
//! that keeps every span and log record it is sent (and over which
//! protocol), so a test can check what Sextant's own telemetry exported.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use tokio::sync::oneshot;

/// One exported span.
#[derive(Debug, Clone)]
pub struct SinkSpan {
    /// The resource's `service.name`.
    pub service: String,
    pub name: String,
    /// Lower-case hex, as in `traceparent`.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub attributes: BTreeMap<String, String>,
    /// `grpc` or `http`.
    pub protocol: &'static str,
}

/// One exported log record.
#[derive(Debug, Clone)]
pub struct SinkLog {
    pub service: String,
    pub body: String,
    pub severity: String,
    /// Empty when the record was logged outside any span.
    pub trace_id: String,
    pub span_id: String,
    pub attributes: BTreeMap<String, String>,
    /// `grpc` or `http`.
    pub protocol: &'static str,
}

#[derive(Default)]
struct Received {
    spans: Mutex<Vec<SinkSpan>>,
    logs: Mutex<Vec<SinkLog>>,
}

/// The sink; stops when dropped.
pub struct OtlpSink {
    /// `http://127.0.0.1:PORT`, for `OTEL_EXPORTER_OTLP_ENDPOINT` (gRPC).
    pub endpoint: String,
    /// `http://127.0.0.1:PORT`, for OTLP/HTTP (`/v1/traces`, `/v1/logs`).
    pub http_endpoint: String,
    received: Arc<Received>,
    _stop: oneshot::Sender<()>,
}

impl OtlpSink {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OTLP sink");
        let endpoint = format!("http://{}", listener.local_addr().expect("local addr"));
        let received = Arc::new(Received::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Service(received.clone())))
            .add_service(LogsServiceServer::new(Service(received.clone())))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            );
        tokio::spawn(server);
        let http = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OTLP/HTTP sink");
        let http_endpoint = format!("http://{}", http.local_addr().expect("local addr"));
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(http_traces))
            .route("/v1/logs", axum::routing::post(http_logs))
            .with_state(received.clone());
        tokio::spawn(async move { axum::serve(http, app).await });
        Self {
            endpoint,
            http_endpoint,
            received,
            _stop: stop,
        }
    }

    pub fn spans(&self) -> Vec<SinkSpan> {
        lock(&self.received.spans).clone()
    }

    pub fn logs(&self) -> Vec<SinkLog> {
        lock(&self.received.logs).clone()
    }

    /// Polls until `done` holds for the spans received (exporters batch),
    /// or `limit` passes; returns the spans either way.
    pub async fn wait_spans(
        &self,
        limit: Duration,
        done: impl Fn(&[SinkSpan]) -> bool,
    ) -> Vec<SinkSpan> {
        let done = &done;
        let waited = crate::wait::poll(limit, Duration::from_millis(200), || async move {
            let spans = self.spans();
            if done(&spans) { Ok(spans) } else { Err(spans) }
        })
        .await;
        waited.unwrap_or_else(|spans| spans)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Service(Arc<Received>);

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

fn service(resource: Option<&opentelemetry_proto::tonic::resource::v1::Resource>) -> String {
    resource
        .map(|r| attributes(&r.attributes))
        .and_then(|a| a.get("service.name").cloned())
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn keep_spans(received: &Received, request: ExportTraceServiceRequest, protocol: &'static str) {
    let mut spans = lock(&received.spans);
    for rs in request.resource_spans {
        let service = service(rs.resource.as_ref());
        for ss in rs.scope_spans {
            for s in ss.spans {
                spans.push(SinkSpan {
                    service: service.clone(),
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    attributes: attributes(&s.attributes),
                    protocol,
                });
            }
        }
    }
}

fn keep_logs(received: &Received, request: ExportLogsServiceRequest, protocol: &'static str) {
    let mut logs = lock(&received.logs);
    for rl in request.resource_logs {
        let service = service(rl.resource.as_ref());
        for sl in rl.scope_logs {
            for l in sl.log_records {
                logs.push(SinkLog {
                    service: service.clone(),
                    body: text(l.body.as_ref()),
                    severity: l.severity_text,
                    trace_id: hex(&l.trace_id),
                    span_id: hex(&l.span_id),
                    attributes: attributes(&l.attributes),
                    protocol,
                });
            }
        }
    }
}

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        keep_spans(&self.0, request.into_inner(), "grpc");
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        keep_logs(&self.0, request.into_inner(), "grpc");
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// OTLP/HTTP with protobuf bodies (what the SDKs send by default):
/// decodes `R`, keeps it, answers an empty `A`.
fn http_export<R: prost::Message + Default, A: prost::Message + Default>(
    received: &Received,
    body: &[u8],
    keep: fn(&Received, R, &'static str),
) -> (axum::http::StatusCode, Vec<u8>) {
    match R::decode(body) {
        Ok(request) => {
            keep(received, request, "http");
            (axum::http::StatusCode::OK, A::default().encode_to_vec())
        }
        Err(_) => (axum::http::StatusCode::BAD_REQUEST, Vec::new()),
    }
}

async fn http_traces(
    axum::extract::State(received): axum::extract::State<Arc<Received>>,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, Vec<u8>) {
    http_export::<_, ExportTraceServiceResponse>(&received, &body, keep_spans)
}

async fn http_logs(
    axum::extract::State(received): axum::extract::State<Arc<Received>>,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, Vec<u8>) {
    http_export::<_, ExportLogsServiceResponse>(&received, &body, keep_logs)
}
