//! Sextant's own telemetry over OTLP/HTTP (issue 7): a real `sextant up`
//! told by the standard variables to export over `http/protobuf`, with a
//! service name of the operator's, sends its request spans (parented on
//! the caller's `traceparent`) and its logs to a test collector's
//! `/v1/traces` and `/v1/logs`. The gRPC path, and one trace per
//! promotion, are tested in orchestrator/tests/agents_docker.rs.

use std::time::Duration;

use sextant_e2e::otlp_sink::OtlpSink;
use sextant_e2e::{Backend, Hub, wait};

#[tokio::test]
async fn the_hub_exports_spans_and_logs_over_otlp_http_as_the_otel_variables_say() {
    let sink = OtlpSink::start().await;
    let hub = Hub::start_env(
        Backend::Sqlite,
        "",
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.http_endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_LOGS_EXPORTER", "otlp"),
            ("OTEL_SERVICE_NAME", "hub-under-test"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=ci"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    hub.wait_ready().await;

    let trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    let caller = "10f067aa0ba902b8";
    let res = reqwest::Client::new()
        .get(format!("http://{}/api/v1/environments", hub.api))
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .send()
        .await
        .expect("the API answers");
    assert_eq!(res.status(), 200);

    let spans = sink
        .wait_spans(Duration::from_secs(30), |spans| {
            spans.iter().any(|s| s.parent_span_id == caller)
        })
        .await;
    let request = spans
        .iter()
        .find(|s| s.parent_span_id == caller)
        .unwrap_or_else(|| panic!("no span under the caller's: {spans:#?}"));
    assert_eq!(request.name, "GET /api/v1/environments");
    assert_eq!(request.trace_id, trace);
    assert_eq!(request.protocol, "http", "exported over OTLP/HTTP");
    assert_eq!(request.service, "hub-under-test", "OTEL_SERVICE_NAME wins");
    assert_eq!(request.attributes["http.route"], "/api/v1/environments");
    assert_eq!(request.attributes["http.response.status_code"], "200");
    // Health probes and scrapes make no spans.
    assert!(
        spans
            .iter()
            .all(|s| !s.name.contains("/health") && !s.name.contains("/metrics")),
        "{spans:#?}"
    );

    // Logs too, over HTTP, with the same resource.
    let log = wait::until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let logs = sink.logs();
            logs.iter()
                .find(|l| l.body.contains("No tokens configured"))
                .cloned()
                .ok_or_else(|| format!("no log records: {logs:#?}"))
        },
    )
    .await;
    assert_eq!(log.protocol, "http");
    assert_eq!(log.service, "hub-under-test");
}
