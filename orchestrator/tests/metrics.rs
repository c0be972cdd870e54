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
