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
