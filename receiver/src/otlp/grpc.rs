//! OTLP/gRPC: LogsService, MetricsService and TraceService.

use http::HeaderValue;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use sextant_kit::serve::{ListenerLimits, ServerTls};

use super::admission::{Admission, AdmissionLayer};
use super::ingest::{IngestError, Ingestor};
use crate::auth::Principal;

/// The three OTLP services over one [`Ingestor`].
#[derive(Clone)]
pub struct OtlpGrpc {
    ingestor: Ingestor,
}

fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("not authenticated"))
}

fn ingest_status(error: IngestError) -> Status {
    Status::unavailable(error.to_string())
}

#[tonic::async_trait]
impl LogsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let principal = principal(&request)?;
        let span = export_span("logs", &request);
        let response = self
            .ingestor
            .logs(&principal, request.into_inner())
            .instrument(span)
            .await
            .map_err(ingest_status)?;
        Ok(Response::new(response))
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let principal = principal(&request)?;
        let span = export_span("metrics", &request);
        let response = self
            .ingestor
            .metrics(&principal, request.into_inner())
            .instrument(span)
            .await
            .map_err(ingest_status)?;
        Ok(Response::new(response))
    }
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        principal(&request)?;
        Ok(Response::new(self.ingestor.traces(request.get_ref())))
    }
}

/// The span of one export: a child of the sender's span when its metadata
/// carries W3C `traceparent` (an agent's or a collector's).
fn export_span<T>(signal: &'static str, request: &Request<T>) -> tracing::Span {
    let span = tracing::info_span!(
        "otlp.export",
        otel.kind = "server",
        signal,
        rpc.system = "grpc"
    );
    sextant_exporters::telemetry::set_parent_from_headers(
        &span,
        &request.metadata().clone().into_headers(),
    );
    span
}

/// Maps tonic's codes for bad requests to the ones OTLP prescribes. tonic
/// answers an oversized message with OUT_OF_RANGE, which OTLP clients retry;
/// OTLP wants RESOURCE_EXHAUSTED without RetryInfo, which they do not. A
/// message that fails to decode comes back as INTERNAL; OTLP wants
/// INVALID_ARGUMENT.
fn otlp_status_codes<B>(mut response: http::Response<B>) -> http::Response<B> {
    let status = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok());
    let mapped = match status {
        Some("11") => Some("8"),
        Some("13") => {
            let message = response
                .headers()
                .get("grpc-message")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let decode_error = message.starts_with("failed%20to%20decode%20Protobuf")
                || message.starts_with("failed to decode Protobuf");
            decode_error.then_some("3")
        }
        _ => None,
    };
    if let Some(code) = mapped {
        response
            .headers_mut()
            .insert("grpc-status", HeaderValue::from_static(code));
    }
    response
}

/// Serves OTLP/gRPC on `listener` until `shutdown` is cancelled: every
/// request admitted first ([`Admission`]: token, rate limit, size, memory
/// budget, gzip), within the listener's limits; over TLS when `tls` is
/// given, where a request's client certificate stands for a token
/// ([`crate::auth::Authenticator::check_request`]).
pub async fn serve(
    listener: TcpListener,
    ingestor: Ingestor,
    admission: Admission,
    limits: ListenerLimits,
    refused: prometheus::IntCounter,
    tls: Option<ServerTls>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let svc = OtlpGrpc { ingestor };
    // Admission has decompressed and size-checked every message already;
    // tonic's own limit stays as a second guard.
    let max = admission.max_request_bytes;
    let logs = LogsServiceServer::new(svc.clone())
        .max_decoding_message_size(max)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    let metrics = MetricsServiceServer::new(svc.clone())
        .max_decoding_message_size(max)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    let traces = TraceServiceServer::new(svc)
        .max_decoding_message_size(max)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    tonic::transport::Server::builder()
        .timeout(limits.request_timeout())
        .layer(tower::util::MapResponseLayer::new(otlp_status_codes))
        .layer(AdmissionLayer(admission))
        .add_service(logs)
        .add_service(metrics)
        .add_service(traces)
        .serve_with_incoming_shutdown(
            sextant_kit::serve::incoming_tls(listener, limits, refused, tls),
            shutdown.cancelled_owned(),
        )
        .await
}
