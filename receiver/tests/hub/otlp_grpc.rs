//! OTLP/gRPC through tonic's generated client, plus raw frames for bad input.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use serde_json::json;
use tonic::Code;
use tonic::codec::CompressionEncoding;

use crate::helpers::{
    Backend, TestApp, kv, logs, observed, on_both_backends, spawn_app, spawn_app_with, token,
};

const AT: (&str, &str, &str, &str) = ("shop", "checkout", "stage", "eu");

fn logs_request(value: serde_json::Value) -> ExportLogsServiceRequest {
    serde_json::from_value(value).expect("valid request")
}

async fn client(app: &TestApp) -> LogsServiceClient<tonic::transport::Channel> {
    LogsServiceClient::connect(format!("http://{}", app.grpc))
        .await
        .expect("connect")
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

async fn partial_success_keeps_the_rest_of_the_batch(b: Backend) {
    let app = spawn_app(b).await;
    let mut c = client(&app)
        .await
        .send_compressed(CompressionEncoding::Gzip);
    let mut missing = observed("h2", AT, "sha256:aa", "succeeded", 1);
    missing["attributes"]
        .as_array_mut()
        .expect("attrs")
        .retain(|kv| kv["key"] != "sextant.target");
    let answer = c
        .export(logs_request(logs(vec![
            observed("h1", AT, "sha256:aa", "succeeded", 1),
            missing,
        ])))
        .await
        .expect("OK status")
        .into_inner();
    let partial = answer.partial_success.expect("partial success");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("`sextant.target`"),
        "{}",
        partial.error_message
    );
    let (_, state) = app.get("/api/v1/state", None).await;
    assert_eq!(state[0]["hosts"][0]["host"], "h1");

    let mut metrics = MetricsServiceClient::connect(format!("http://{}", app.grpc))
        .await
        .expect("connect");
    let request: ExportMetricsServiceRequest = serde_json::from_value(json!({"resourceMetrics": [{
        "resource": {"attributes": [kv("host.name", "g1")]},
        "scopeMetrics": [{"metrics": [{"name": "sextant.deployment.observed", "gauge": {"dataPoints": [{
            "asDouble": 1.0, "timeUnixNano": "9", "attributes": [
                kv("sextant.application", "shop"), kv("sextant.workload", "checkout"),
                kv("deployment.environment.name", "stage"), kv("sextant.target", "eu"),
                kv("sextant.revision", "sha256:aa"), kv("deployment.status", "in_progress")]}]}}]}]}]}))
    .expect("metrics request");
    let answer = metrics.export(request).await.expect("OK").into_inner();
    assert_eq!(answer.partial_success, None);
    let (_, state) = app.get("/api/v1/state", None).await;
    assert_eq!(state[0]["hosts"].as_array().map(Vec::len), Some(2));

    let mut traces = TraceServiceClient::connect(format!("http://{}", app.grpc))
        .await
        .expect("connect");
    traces
        .export(ExportTraceServiceRequest::default())
        .await
        .expect("traces accepted");
    app.stop().await;
}

async fn tokens_are_checked_on_grpc(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.tokens = vec![
            token("ingest-a", "a", &["ingest"]),
            token("read-a", "a", &["read"]),
        ];
    })
    .await;
    let request = || logs_request(logs(vec![observed("h1", AT, "sha256:aa", "succeeded", 1)]));
    let mut c = client(&app).await;
    let err = c.export(request()).await.expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = c
        .export(with_token(request(), "nope"))
        .await
        .expect_err("unknown token");
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = c
        .export(with_token(request(), "read-a"))
        .await
        .expect_err("no ingest scope");
    assert_eq!(err.code(), Code::PermissionDenied);
    c.export(with_token(request(), "ingest-a"))
        .await
        .expect("ingest token works");
    let (_, state) = app.get("/api/v1/state", Some("read-a")).await;
    assert_eq!(state[0]["hosts"][0]["host"], "h1");
    app.stop().await;
}

/// Sends one raw gRPC frame and returns the `grpc-status` header.
async fn raw_grpc(app: &TestApp, frame: Vec<u8>) -> String {
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let res = client
        .post(format!(
            "http://{}/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            app.grpc
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(frame)
        .send()
        .await
        .expect("gRPC request");
    res.headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("missing")
        .to_owned()
}

async fn malformed_and_oversize_messages_get_clear_codes(b: Backend) {
    let app = spawn_app_with(b, |c| c.max_request_bytes = 4096).await;
    // A frame whose protobuf is garbage: INVALID_ARGUMENT (3).
    let garbage = [0xff, 0xff, 0xff, 0xff, 0x0f];
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(garbage.len() as u32).to_be_bytes());
    frame.extend_from_slice(&garbage);
    assert_eq!(raw_grpc(&app, frame).await, "3");

    // Over the limit: RESOURCE_EXHAUSTED (not OUT_OF_RANGE, which clients retry).
    let records = (0..200)
        .map(|i| observed(&format!("host-{i}"), AT, "sha256:aa", "succeeded", 1))
        .collect();
    let err = client(&app)
        .await
        .export(logs_request(logs(records)))
        .await
        .expect_err("too large");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");

    // Compressed under the limit, decompressed over it: RESOURCE_EXHAUSTED too.
    let records = (0..200)
        .map(|i| observed(&format!("host-{i}"), AT, "sha256:aa", "succeeded", 1))
        .collect();
    let err = client(&app)
        .await
        .send_compressed(CompressionEncoding::Gzip)
        .export(logs_request(logs(records)))
        .await
        .expect_err("too large once decompressed");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");

    // Still serving.
    client(&app)
        .await
        .export(logs_request(logs(vec![observed(
            "h1",
            AT,
            "sha256:aa",
            "succeeded",
            1,
        )])))
        .await
        .expect("small request works");
    app.stop().await;
}

on_both_backends!(
    partial_success_keeps_the_rest_of_the_batch,
    tokens_are_checked_on_grpc,
    malformed_and_oversize_messages_get_clear_codes,
);
