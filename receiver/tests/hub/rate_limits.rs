//! Per-tenant rate limits: the read API answers 429 with `Retry-After`,
//! OTLP/HTTP 429 with `Retry-After` and a `google.rpc.Status` carrying
//! `RetryInfo`, OTLP/gRPC `RESOURCE_EXHAUSTED` with `RetryInfo`; and a
//! tenant over its limit never limits another.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use prost::Message;
use serde_json::Value;
use sextant_kit::rate_limit::RateLimitConfig;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::helpers::{Backend, TestApp, logs, observed, on_both_backends, spawn_app_with, token};

const AT: (&str, &str, &str, &str) = ("shop", "checkout", "stage", "eu");

/// One request per 1000 s after a burst of `burst`: within a test, the
/// request after the burst is always refused.
fn tight(burst: u32) -> RateLimitConfig {
    RateLimitConfig::new(0.001, burst)
}

/// The `Retry-After` of a response, in seconds.
fn retry_after(res: &reqwest::Response) -> u64 {
    res.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric Retry-After in {:?}", res.headers()))
}

async fn get(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .get(format!("http://{}{path}", app.api))
        .bearer_auth(token)
        .send()
        .await
        .expect("API request")
}

/// `sextant_rate_limited_total{surface}` from `/metrics`.
async fn refused(app: &TestApp, surface: &str) -> u64 {
    let (_, text) = app.get("/metrics", None).await;
    let text = text.as_str().expect("text").to_owned();
    let prefix = format!("sextant_rate_limited_total{{surface=\"{surface}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

async fn api_limit_is_per_tenant(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.tokens = vec![
            token("read-a", "a", &["read"]),
            token("read-b", "b", &["read"]),
        ];
        c.rate_limits.api = tight(2);
    })
    .await;
    for _ in 0..2 {
        assert_eq!(get(&app, "/api/v1/state", "read-a").await.status(), 200);
    }
    let res = get(&app, "/api/v1/hosts", "read-a").await;
    assert_eq!(res.status(), 429);
    let wait = retry_after(&res);
    assert!((1..=1000).contains(&wait), "Retry-After {wait}");
    let body: Value = res.json().await.expect("JSON error");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("\"a\"") && message.contains("retry in"),
        "{message}"
    );

    // Tenant b has its own budget, untouched by a's.
    for _ in 0..2 {
        assert_eq!(get(&app, "/api/v1/state", "read-b").await.status(), 200);
    }
    assert_eq!(get(&app, "/api/v1/state", "read-b").await.status(), 429);
    // Health and metrics are not limited, and count the refusals.
    assert_eq!(get(&app, "/health", "read-a").await.status(), 200);
    assert_eq!(refused(&app, "api").await, 2);
    assert_eq!(refused(&app, "ingest").await, 0);
    app.stop().await;
}

fn request(host: &str) -> ExportLogsServiceRequest {
    serde_json::from_value(logs(vec![observed(host, AT, "sha256:aa", "succeeded", 1)]))
        .expect("request")
}

async fn post(app: &TestApp, content_type: &str, body: Vec<u8>, token: &str) -> reqwest::Response {
    app.client
        .post(format!("http://{}/v1/logs", app.http))
        .header("content-type", content_type)
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .expect("OTLP/HTTP request")
}

async fn otlp_http_over_the_limit_gets_429_with_retry_after(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.tokens = vec![
            token("ingest-a", "a", &["ingest"]),
            token("ingest-b", "b", &["ingest"]),
            token("read-a", "a", &["read"]),
        ];
        c.rate_limits.ingest = tight(1);
    })
    .await;
    let protobuf = "application/x-protobuf";
    let res = post(&app, protobuf, request("h1").encode_to_vec(), "ingest-a").await;
    assert_eq!(res.status(), 200);

    // Over the limit: 429, Retry-After, and a google.rpc.Status in the
    // request's encoding with RESOURCE_EXHAUSTED and a RetryInfo.
    let res = post(&app, protobuf, request("h2").encode_to_vec(), "ingest-a").await;
    assert_eq!(res.status(), 429);
    let wait = retry_after(&res);
    assert!((1..=1000).contains(&wait), "Retry-After {wait}");
    assert_eq!(res.headers()["content-type"], protobuf);
    let status = tonic_types::Status::decode(res.bytes().await.expect("body"))
        .expect("a google.rpc.Status body");
    assert_eq!(status.code, Code::ResourceExhausted as i32);
    assert!(status.message.contains("rate limit"), "{}", status.message);
    let detail = status.details.first().expect("a RetryInfo detail");
    assert_eq!(detail.type_url, tonic_types::RetryInfo::TYPE_URL);
    let info = tonic_types::pb::RetryInfo::decode(detail.value.as_slice()).expect("RetryInfo");
    let delay = info.retry_delay.expect("retry delay");
    assert_eq!(u64::try_from(delay.seconds).ok(), Some(wait));

    let json = serde_json::to_vec(&logs(vec![observed("h3", AT, "sha256:aa", "succeeded", 1)]))
        .expect("json");
    let res = post(&app, "application/json", json, "ingest-a").await;
    assert_eq!(res.status(), 429);
    retry_after(&res);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: Value = res.json().await.expect("JSON status");
    assert_eq!(body["code"], Code::ResourceExhausted as i32, "{body}");
    assert_eq!(
        body["details"][0]["@type"],
        tonic_types::RetryInfo::TYPE_URL,
        "{body}"
    );

    // Tenant b is not limited by a, and a's refused records were not stored.
    let res = post(&app, protobuf, request("h4").encode_to_vec(), "ingest-b").await;
    assert_eq!(res.status(), 200);
    let (_, state) = app.get("/api/v1/state", Some("read-a")).await;
    let hosts: Vec<&str> = state[0]["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter_map(|h| h["host"].as_str())
        .collect();
    assert_eq!(hosts, ["h1"], "{state}");
    assert_eq!(refused(&app, "ingest").await, 2);
    app.stop().await;
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

async fn otlp_grpc_over_the_limit_gets_resource_exhausted_with_retry_info(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.tokens = vec![
            token("ingest-a", "a", &["ingest"]),
            token("ingest-b", "b", &["ingest"]),
        ];
        c.rate_limits.ingest = tight(1);
    })
    .await;
    let mut client = LogsServiceClient::connect(format!("http://{}", app.grpc))
        .await
        .expect("connect");
    client
        .export(with_token(request("h1"), "ingest-a"))
        .await
        .expect("within the limit");
    let err = client
        .export(with_token(request("h2"), "ingest-a"))
        .await
        .expect_err("over the limit");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let delay = err
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo with a delay, so OTLP clients retry");
    assert!(
        (1..=1000).contains(&delay.as_secs()) && delay.subsec_nanos() == 0,
        "{delay:?}"
    );
    // HTTP and gRPC share one ingest budget per tenant.
    let res = post(
        &app,
        "application/x-protobuf",
        request("h3").encode_to_vec(),
        "ingest-a",
    )
    .await;
    assert_eq!(res.status(), 429);
    client
        .export(with_token(request("h4"), "ingest-b"))
        .await
        .expect("another tenant is not limited");
    app.stop().await;
}

on_both_backends!(
    api_limit_is_per_tenant,
    otlp_http_over_the_limit_gets_429_with_retry_after,
    otlp_grpc_over_the_limit_gets_resource_exhausted_with_retry_info,
);
