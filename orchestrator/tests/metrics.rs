//! Sextant's own metrics, scraped by a real Prometheus (Debian's, from the
//! test kit): the orchestrator's and the hub's `/metrics` after a
//! promotion, queried back through PromQL. The stack is in `common/`.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::{Stack, component, digest};
use serde_json::json;
use sextant_e2e::prometheus::Prometheus;

#[tokio::test]
async fn prometheus_scrapes_the_orchestrator_and_the_hub() {
    let hub = sextant_e2e::Hub::start(sextant_e2e::Backend::Sqlite, "").await;
    hub.wait_ready().await;
    let stack = Stack::start_for(&hub).await;
    stack
        .apply(json!({
            "environments": [{"name": "dev"}, {"name": "prod", "required_approvals": 1}],
            "components": component(),
            "targets": [stack.target("dev-1", "dev", "", None), stack.target("prod-1", "prod", "", None)],
        }))
        .await;
    stack.release("r1", &digest('1')).await;
    let p = stack
        .promote_to_end(
            "r1",
            "dev",
            "alice",
            json!({"type": "rolling", "batch_size": 1}),
        )
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    // One promotion left waiting for its approval.
    let waiting = stack
        .promote("r1", "prod", "alice", json!({"type": "all_at_once"}))
        .await;
    stack
        .wait_promotion(waiting["id"].as_str().unwrap(), &["awaiting_approval"])
        .await;

    let orchestrator: SocketAddr = stack.base.trim_start_matches("http://").parse().unwrap();
    let prometheus = Prometheus::start(&[orchestrator, hub.api]).await;
    for query in [
        r#"max(sextant_deployments_total{env="dev",strategy="rolling",status="succeeded"})"#,
        r#"max(sextant_promotions_total{env="dev",status="deployed"})"#,
        r#"max(sextant_approval_pending_count{env="prod"})"#,
        r#"max(sextant_releases_total)"#,
        // This replica drove the dev job to its end.
        r#"sum(sextant_workflow_runs_total{status="completed"})"#,
        r#"sum(sextant_targets_total{type="ssh"})"#,
        r#"max(sextant_deployment_duration_seconds_count{env="dev"})"#,
        // HTTP series carry the route template, never a raw id.
        r#"sum(sextant_http_requests_total{path="/api/v1/promotions/{id}",method="GET",status="200"})"#,
        // The hub's own series: the desired state the orchestrator sent was
        // ingested.
        r#"sum(sextant_receiver_records_total{outcome="accepted"})"#,
    ] {
        prometheus.wait_for(query, |v| v >= 1.0).await;
    }
    assert_eq!(
        prometheus
            .value(r#"count(sextant_http_requests_total{path=~".*[0-9a-f]{8}-[0-9a-f]{4}.*"})"#)
            .await,
        None,
        "a raw id reached the path label"
    );
}

/// Spans get trace contexts, as under `sextant orchestrator` (its
/// `Telemetry::init`), without exporting anything or printing logs.
fn trace_contexts() {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
    // Once per test binary; a second call finds it installed.
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
}

/// One real promotion, requested by a pipeline that sends `traceparent`:
/// its trace id is the exemplar of the deployment duration histogram in a
/// real Prometheus with exemplar storage (scraped in OpenMetrics), and
/// its trace and log links, made from the configured templates, are in
/// the job's and the promotion's JSON and on their pages.
#[tokio::test]
async fn a_promotions_trace_id_is_an_exemplar_and_a_link() {
    trace_contexts();
    let links = sextant_kit::links::TraceLinks::from_settings(
        (
            "trace_url_template",
            "http://grafana.test/explore?trace={trace_id}&service={service}",
        ),
        (
            "logs_url_template",
            "http://grafana.test/logs?q={trace_id}&from={from}&to={to}",
        ),
        "sextant-orchestrator",
    )
    .unwrap();
    let stack = Stack::start_linked(links).await;
    stack
        .apply(json!({
            "environments": [{"name": "dev"}],
            "components": component(),
            "targets": [stack.target("dev-1", "dev", "", None)],
        }))
        .await;
    stack.release("r1", &digest('1')).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = stack
        .http
        .post(format!("{}/api/v1/promotions", stack.base))
        .header("x-sextant-actor", "alice")
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&json!({"release": "r1", "environment": "dev",
            "strategy": {"type": "all_at_once"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let promotion: serde_json::Value = res.json().await.unwrap();
    let id = promotion["id"].as_str().unwrap().to_owned();
    assert!(
        promotion["traceparent"]
            .as_str()
            .is_some_and(|t| t.starts_with(&format!("00-{trace}-"))),
        "{promotion:#}"
    );
    let promotion = stack.wait_promotion(&id, &["deployed"]).await;
    let job_id = promotion["job_id"].as_str().unwrap().to_owned();

    // The links: exact for a template without a window, and the window
    // (the job's creation and end, 5 minutes wider each side) in the other.
    let trace_url =
        format!("http://grafana.test/explore?trace={trace}&service=sextant-orchestrator");
    let job = stack.job(&job_id).await;
    assert_eq!(job["trace_url"], trace_url.as_str(), "{job:#}");
    let ms = |field: &str| {
        let t = time::OffsetDateTime::parse(
            job[field].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        (t.unix_timestamp_nanos() / 1_000_000) as i64
    };
    assert_eq!(
        job["logs_url"],
        format!(
            "http://grafana.test/logs?q={trace}&from={}&to={}",
            ms("created_at") - 300_000,
            ms("finished_at") + 300_000
        )
        .as_str(),
        "{job:#}"
    );
    assert_eq!(promotion["trace_url"], trace_url.as_str(), "{promotion:#}");
    for list in ["/api/v1/jobs", "/api/v1/promotions"] {
        let body: serde_json::Value = stack
            .http
            .get(format!("{}{list}", stack.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body[0]["trace_url"], trace_url.as_str(), "{list}: {body:#}");
    }
    // Both pages link the trace and its logs (`&` is `&amp;` in HTML).
    let href = format!(r#"href="{}""#, trace_url.replace('&', "&amp;"));
    for page in [format!("/jobs/{job_id}"), format!("/promotions/{id}")] {
        let html = stack
            .http
            .get(format!("{}{page}", stack.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains(&href), "{page}: {href} missing:\n{html}");
        assert!(html.contains(">logs</a>"), "{page}:\n{html}");
    }

    // Prometheus with exemplar storage reads the trace id off the
    // duration histogram.
    let orchestrator: SocketAddr = stack.base.trim_start_matches("http://").parse().unwrap();
    let prometheus = Prometheus::start_with_exemplars(&[orchestrator]).await;
    let query = r#"sextant_deployment_duration_seconds_bucket{env="dev"}"#;
    let p = &prometheus;
    let found = sextant_e2e::wait::until(
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(500),
        || async move {
            let series = p.exemplars(query).await;
            let ids: Vec<String> = series
                .iter()
                .flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default())
                .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_owned))
                .collect();
            if ids.iter().any(|t| t == trace) {
                Ok(series)
            } else {
                Err(format!(
                    "no exemplar with trace_id {trace} yet: {series:#?}\n{}",
                    p.log()
                ))
            }
        },
    )
    .await;
    assert!(
        found
            .iter()
            .all(|s| s["seriesLabels"]["__name__"] == "sextant_deployment_duration_seconds_bucket"),
        "{found:#?}"
    );
    drop(prometheus);
}

/// A fresh orchestrator, before any job has ended, serves `/metrics` at
/// once: 200 in the text format Prometheus scrapes, with this replica's
/// job counter already at 0 for every final state, and a body promtool
/// parses (when Debian's prometheus package is installed; only the lint
/// findings of the contract's names in `KNOWN_LINT` are tolerated).
#[tokio::test]
async fn a_fresh_orchestrator_serves_its_metrics_at_once() {
    use std::sync::Arc;
    use std::time::Duration;

    use sextant_orchestrator::app::{self, RuntimeConfig};
    use sextant_orchestrator::executor::ssh::SshExecutor;
    use sextant_orchestrator::service::Settings;
    use tokio_util::sync::CancellationToken;

    let data = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        listeners: Default::default(),
        metrics_require_token: false,
        links: Default::default(),
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", data.path().join("orchestrator.db").display()),
        data_dir: data.path().to_owned(),
        hub_api: None,
        hub_otlp: None,
        hub_token: None,
        tokens: Vec::new(),
        insecure_registries: Vec::new(),
        agent_listen: None,
        agent_tls: Default::default(),
        agent_heartbeat: Duration::from_secs(30),
        registry_auth: Default::default(),
        api_rate_limit: Default::default(),
        settings: Settings::default(),
    };
    let cancel = CancellationToken::new();
    let running = app::start(config, Arc::new(SshExecutor::new()), cancel.clone())
        .await
        .unwrap();
    let res = reqwest::get(format!("http://{}/metrics", running.addr))
        .await
        .unwrap();
    let status = res.status();
    let ctype = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = res.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(ctype, "text/plain; version=0.0.4");
    for status in ["completed", "failed", "rolled_back", "cancelled"] {
        let line = format!("sextant_workflow_runs_total{{status=\"{status}\"}} 0");
        assert!(body.lines().any(|l| l == line), "{line} missing:\n{body}");
    }
    promtool_accepts(&body);
    // What Prometheus asks for: OpenMetrics, ending in `# EOF`.
    let res = reqwest::Client::new()
        .get(format!("http://{}/metrics", running.addr))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let open = res.text().await.unwrap();
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(
        open.lines()
            .any(|l| l == r#"sextant_workflow_runs_total{status="completed"} 0"#),
        "{open}"
    );
    cancel.cancel();
    running.wait().await.unwrap();
}

/// Lint findings promtool reports on names that are part of the metric
/// contract (docs/telemetry.md, the alert rules and dashboards read
/// them); renaming them is a change of that contract, not of this test.
const KNOWN_LINT: &[&str] = &[
    r#"sextant_approval_pending_count non-histogram and non-summary metrics should not have "_count" suffix"#,
    r#"sextant_targets_total non-counter metrics should not have "_total" suffix"#,
];

/// `promtool check metrics` parses `body` (exit 1 is a parse error; exit 3
/// lists lint findings, of which only [`KNOWN_LINT`] are tolerated).
fn promtool_accepts(body: &str) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool is not installed; the exposition is not linted");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let unknown: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty() && !KNOWN_LINT.contains(&l.trim()))
        .collect();
    assert!(
        matches!(out.status.code(), Some(0 | 3)) && unknown.is_empty(),
        "promtool check metrics ({}):\n{report}\n{body}",
        out.status
    );
}
