use std::path::Path;

use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message as _;
use sextant_e2e::otlp_sink::OtlpSink;
use sextant_exporters::outbox::RecordKind;

use super::*;
use crate::config::AgentArgs;

fn config(protocol: &str, ca_file: Option<&str>) -> AgentConfig {
    AgentArgs {
        host_name: Some("h1".into()),
        environment: Some("dev".into()),
        otlp_endpoints: vec!["https://hub-a:4317".into(), "http://hub-b:4317".into()],
        otlp_protocol: Some(protocol.into()),
        otlp_ca_file: ca_file.map(Into::into),
        ..AgentArgs::default()
    }
    .resolve_in(|_| None)
    .expect("valid")
}

/// An agent on port 0 in `dir` that reports to `endpoint` over gRPC (not
/// compressed: the test sink takes plain requests only), with no Docker
/// engine (its socket does not exist) and no orchestrator.
fn without_docker(dir: &Path, endpoint: &str) -> AgentConfig {
    AgentArgs {
        host_name: Some("h1".into()),
        environment: Some("dev".into()),
        otlp_endpoints: vec![endpoint.to_owned()],
        otlp_compression: Some("none".into()),
        data_dir: Some(dir.to_owned()),
        docker_host: Some(format!("unix://{}", dir.join("no-docker.sock").display())),
        listen: Some("127.0.0.1:0".parse().expect("address")),
        ..AgentArgs::default()
    }
    .resolve_in(|_| None)
    .expect("valid")
}

/// One log record whose body is `body`, as the outbox keeps a report.
fn report(body: &str) -> Vec<u8> {
    ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord {
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(body.to_owned())),
                }),
                ..LogRecord::default()
            }],
            ..ScopeLogs::default()
        }],
        ..ResourceLogs::default()
    }
    .encode_to_vec()
}

fn pending(outbox: &Outbox) -> u64 {
    outbox.stats().consumers.iter().map(|c| c.pending).sum()
}

#[tokio::test]
async fn https_endpoints_are_built_and_a_missing_ca_file_is_refused_by_path() {
    for protocol in ["grpc", "http/protobuf"] {
        let built = transports(&config(protocol, None)).expect("TLS is compiled in");
        assert_eq!(built.len(), 2);
        let e = transports(&config(protocol, Some("/nonexistent/ca.pem")))
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("/nonexistent/ca.pem") && e.contains("cannot read"),
            "{protocol}: {e}"
        );
    }
}

/// Docker unreachable (its socket does not exist): `/health` fails with
/// 503 on the `docker` check and says why; the outbox and the
/// orchestrator registration are still reported.
#[tokio::test]
async fn health_fails_with_503_while_docker_is_unreachable() {
    let dir = tempfile::tempdir().expect("dir");
    let config = AgentConfig {
        orchestrator: vec!["http://127.0.0.1:1".into()],
        protocol: Protocol::HttpProtobuf,
        ..without_docker(dir.path(), "http://127.0.0.1:1")
    };
    let app = Application::build(config).await.expect("builds");
    let addr = app.addr();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let res = reqwest::get(format!("http://{addr}/health"))
        .await
        .expect("GET /health");
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.expect("JSON");
    assert_eq!(body["status"], "fail", "{body}");
    assert_eq!(body["service"], "sextant-agent", "{body}");
    let checks = body["checks"].as_array().expect("checks");
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["docker", "outbox", "orchestrator"], "{body}");
    for check in checks {
        assert!(check["latency_ms"].is_number(), "{body}");
    }
    assert_eq!(checks[0]["status"], "fail", "{body}");
    assert!(
        checks[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("Docker engine")),
        "{body}"
    );
    assert_eq!(checks[1]["status"], "pass", "{body}");
    assert_eq!(checks[2]["status"], "warn", "{body}");
    // /health/ready keeps its plain answer.
    let res = reqwest::get(format!("http://{addr}/health/ready"))
        .await
        .expect("GET /health/ready");
    assert_eq!(res.status(), 503);
    shutdown.cancel();
    running.await.expect("joined").expect("stops cleanly");
}

/// A report appended just before the stop reaches the hub before
/// `run_until_stopped` returns: the senders stop last, once the outbox is
/// delivered. (Stopped together with the rest, the sender would drop the
/// request it had just started.)
#[tokio::test]
async fn a_report_appended_just_before_the_stop_is_delivered_before_it_returns() {
    let hub = OtlpSink::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let app = Application::build(without_docker(dir.path(), &hub.endpoint))
        .await
        .expect("builds");
    let outbox = app.outbox().clone();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    outbox
        .append(RecordKind::StateChange, &report("the last report"))
        .expect("appended");
    shutdown.cancel();
    running.await.expect("joined").expect("stops cleanly");
    let bodies: Vec<String> = hub.logs().into_iter().map(|l| l.body).collect();
    assert_eq!(bodies, ["the last report"]);
    assert_eq!(pending(&outbox), 0);
}

/// A hub that takes the connection and never answers: the last stage gives
/// up at its deadline, and the report stays in the outbox for the next
/// start. On paused time, so the deadline passes at once.
#[tokio::test(start_paused = true)]
async fn a_hub_that_never_answers_holds_the_stop_no_longer_than_the_deadline() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", silent.local_addr().expect("addr"));
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            held.push(connection);
        }
    });
    let dir = tempfile::tempdir().expect("dir");
    let app = Application::build(without_docker(dir.path(), &endpoint))
        .await
        .expect("builds");
    let outbox = app.outbox().clone();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    outbox
        .append(RecordKind::StateChange, &report("never answered"))
        .expect("appended");
    let stopping = tokio::time::Instant::now();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("returns although the flush never completes")
        .expect("joined")
        .expect("stops cleanly");
    let took = stopping.elapsed();
    assert!(
        took >= STAGE_DEADLINE && took < 2 * STAGE_DEADLINE,
        "{took:?}"
    );
    assert_eq!(pending(&outbox), 1, "kept for the next start");
}
