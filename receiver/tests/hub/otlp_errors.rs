//! Bad input over OTLP/HTTP: a clear error, no panic, nothing lost.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;
use serde_json::{Value, json};

use crate::helpers::{Backend, logs, observed, on_both_backends, spawn_app, spawn_app_with};

const AT: (&str, &str, &str, &str) = ("shop", "checkout", "stage", "eu");

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

async fn post(
    app: &crate::helpers::TestApp,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("http://{}/v1/logs", app.http))
        .header("content-type", content_type)
        .body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    req.send().await.expect("request")
}

async fn a_bad_record_is_rejected_alone(b: Backend) {
    let app = spawn_app(b).await;
    let mut bad = observed("h2", AT, "sha256:aa", "done", 100);
    bad["attributes"]
        .as_array_mut()
        .expect("attrs")
        .push(json!({"key": "x", "value": {}}));
    let body = logs(vec![
        observed("h1", AT, "sha256:aa", "succeeded", 100),
        bad,
        json!({"body": {"stringValue": "GET /healthz 200"}}),
    ]);
    let res = app.post_json("logs", &body, None).await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.expect("json");
    assert_eq!(answer["partialSuccess"]["rejectedLogRecords"], 1);
    let message = answer["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("logRecords[1]") && message.contains("deployment.status"),
        "{message}"
    );
    let (_, state) = app.get("/api/v1/state", None).await;
    assert_eq!(
        state[0]["hosts"].as_array().map(Vec::len),
        Some(1),
        "the rest of the batch is kept"
    );
    app.stop().await;
}

async fn protobuf_and_gzip_are_accepted_and_answered_in_kind(b: Backend) {
    let app = spawn_app(b).await;
    let request: ExportLogsServiceRequest = serde_json::from_value(logs(vec![observed(
        "h1",
        AT,
        "sha256:aa",
        "succeeded",
        100,
    )]))
    .expect("request");
    let res = post(
        &app,
        "application/x-protobuf",
        Some("gzip"),
        gzip(&request.encode_to_vec()),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-protobuf");
    let answer = ExportLogsServiceResponse::decode(res.bytes().await.expect("body"))
        .expect("protobuf response");
    assert_eq!(answer.partial_success, None);
    let json = serde_json::to_vec(&logs(vec![observed(
        "h2",
        AT,
        "sha256:aa",
        "succeeded",
        100,
    )]))
    .expect("json");
    let res = post(
        &app,
        "application/json; charset=utf-8",
        Some("gzip"),
        gzip(&json),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let (_, state) = app.get("/api/v1/state", None).await;
    assert_eq!(state[0]["hosts"].as_array().map(Vec::len), Some(2));
    app.stop().await;
}

async fn malformed_payloads_get_400_with_a_message(b: Backend) {
    let app = spawn_app(b).await;
    let res = post(
        &app,
        "application/x-protobuf",
        None,
        vec![0xff, 0xff, 0xff, 0xff, 0x0f],
    )
    .await;
    assert_eq!(res.status(), 400);
    let status =
        tonic_types::Status::decode(res.bytes().await.expect("body")).expect("google.rpc.Status");
    assert_eq!(status.code, tonic::Code::InvalidArgument as i32);
    assert!(
        status.message.contains("invalid protobuf"),
        "{}",
        status.message
    );

    let res = post(
        &app,
        "application/json",
        None,
        b"{\"resourceLogs\": [".to_vec(),
    )
    .await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json error");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid OTLP/JSON"),
        "{body}"
    );

    let res = post(
        &app,
        "application/json",
        None,
        b"{\"resourceLogs\": 7}".to_vec(),
    )
    .await;
    assert_eq!(res.status(), 400);

    let res = post(
        &app,
        "application/json",
        Some("gzip"),
        b"not gzip at all".to_vec(),
    )
    .await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json error");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("gzip"),
        "{body}"
    );

    // A request that decodes as empty succeeds (OTLP: an empty request is OK).
    let res = post(&app, "application/json", None, b"{}".to_vec()).await;
    assert_eq!(res.status(), 200);
    app.stop().await;
}

async fn wrong_content_type_gets_415(b: Backend) {
    let app = spawn_app(b).await;
    for (content_type, encoding) in [
        ("text/plain", None),
        ("application/xml", None),
        ("application/json", Some("br")),
    ] {
        let res = post(&app, content_type, encoding, b"{}".to_vec()).await;
        assert_eq!(res.status(), 415, "{content_type} {encoding:?}");
    }
    let res = app
        .client
        .post(format!("http://{}/v1/logs", app.http))
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 415, "no content type");
    app.stop().await;
}

async fn oversize_bodies_and_gzip_bombs_get_413(b: Backend) {
    let app = spawn_app_with(b, |c| c.max_request_bytes = 64 * 1024).await;
    let res = post(&app, "application/json", None, vec![b' '; 64 * 1024 + 1]).await;
    assert_eq!(res.status(), 413);
    // 16 MiB of zeros compress to ~16 KiB: under the limit on the wire, far
    // over it once decompressed.
    let bomb = gzip(&vec![0u8; 16 * 1024 * 1024]);
    assert!(bomb.len() < 64 * 1024);
    let res = post(&app, "application/x-protobuf", Some("gzip"), bomb).await;
    assert_eq!(res.status(), 413);
    let status =
        tonic_types::Status::decode(res.bytes().await.expect("body")).expect("google.rpc.Status");
    assert_eq!(status.code, tonic::Code::ResourceExhausted as i32);
    // The hub still works.
    app.send_logs(&logs(vec![observed("h1", AT, "sha256:aa", "succeeded", 1)]))
        .await;
    app.stop().await;
}

async fn traces_are_accepted_and_counted(b: Backend) {
    let app = spawn_app(b).await;
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "a", "kind": 1,
         "startTimeUnixNano": "1", "endTimeUnixNano": "2"},
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b175", "name": "b",
         "startTimeUnixNano": "1", "endTimeUnixNano": 2}
    ]}]}]});
    let res = app.post_json("traces", &body, None).await;
    assert_eq!(res.status(), 200);
    let (_, metrics) = app.get("/metrics", None).await;
    let text = metrics.as_str().unwrap_or_default();
    assert!(
        text.contains(
            r#"sextant_receiver_records_total{outcome="ignored",reason="span",signal="traces"} 2"#
        ),
        "{text}"
    );
    app.stop().await;
}

async fn metrics_count_accepted_rejected_and_ignored(b: Backend) {
    let app = spawn_app(b).await;
    let body = logs(vec![
        observed("h1", AT, "sha256:aa", "succeeded", 100),
        observed("h2", AT, "sha256:aa", "bogus", 100),
        json!({"body": {"stringValue": "plain log"}}),
        json!({"eventName": "some.other.event"}),
    ]);
    assert_eq!(app.post_json("logs", &body, None).await.status(), 200);
    let (_, metrics) = app.get("/metrics", None).await;
    let text = metrics.as_str().unwrap_or_default();
    for line in [
        r#"sextant_receiver_records_total{outcome="accepted",reason="deployment_event",signal="logs"} 1"#,
        r#"sextant_receiver_records_total{outcome="rejected",reason="invalid_attribute",signal="logs"} 1"#,
        r#"sextant_receiver_records_total{outcome="ignored",reason="not_deployment_event",signal="logs"} 2"#,
        r#"sextant_receiver_batch_records_count{signal="logs"} 1"#,
        r#"sextant_receiver_ingest_duration_seconds_count{signal="logs"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    app.stop().await;
}

on_both_backends!(
    a_bad_record_is_rejected_alone,
    protobuf_and_gzip_are_accepted_and_answered_in_kind,
    malformed_payloads_get_400_with_a_message,
    wrong_content_type_gets_415,
    oversize_bodies_and_gzip_bombs_get_413,
    traces_are_accepted_and_counted,
    metrics_count_accepted_rejected_and_ignored,
);
