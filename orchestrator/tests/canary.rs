//! Canary analysis between stages with the real parts it reads: a
//! Prometheus server (Debian's `prometheus`, from the test kit) scraping an
//! application's error ratio, and the hub's rollout API fed by the targets
//! themselves. A stage that passes lets the canary go on; a breach rolls
//! the job back by itself, before the later stages run anything. The stack
//! is in `common/`.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use common::{Stack, component, digest, image};
use serde_json::{Value, json};
use sextant_e2e::prometheus::Prometheus;

/// An application's `/metrics` whose error ratio the test sets.
async fn app_metrics(ratio: Arc<Mutex<f64>>) -> SocketAddr {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(ratio): State<Arc<Mutex<f64>>>| async move {
                let r = *ratio.lock().unwrap();
                format!(
                    "# HELP app_error_ratio Share of requests that failed.\n\
                     # TYPE app_error_ratio gauge\napp_error_ratio {r}\n"
                )
            }),
        )
        .with_state(ratio);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn deploy_all(stack: &Stack, release: &str, env: &str) {
    let p = stack
        .promote_to_end(release, env, "alice", json!({"type": "all_at_once"}))
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
}

/// The digests each target's deploy command ran, in order.
fn ran(stack: &Stack, target: &str) -> Vec<String> {
    stack
        .runs(target)
        .iter()
        .map(|line| line.rsplit('@').next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn prometheus_threshold_passes_then_a_breach_rolls_the_canary_back() {
    let ratio = Arc::new(Mutex::new(0.01));
    let app = app_metrics(ratio.clone()).await;
    let prometheus = Prometheus::start(&[app]).await;
    prometheus
        .wait_for("max(app_error_ratio)", |v| v < 0.05)
        .await;

    let stack = Stack::start().await;
    let targets: Vec<Value> = (1..=3)
        .map(|i| stack.target(&format!("c-{i}"), "prod", "", None))
        .collect();
    stack
        .apply(json!({"environments": [{"name": "prod"}], "components": component(), "targets": targets}))
        .await;
    let (d1, d2, d3) = (digest('1'), digest('2'), digest('3'));
    for (name, d) in [("r1", &d1), ("r2", &d2), ("r3", &d3)] {
        stack.release(name, d).await;
    }
    deploy_all(&stack, "r1", "prod").await;
    let canary = json!({
        "type": "canary",
        "stages": [33, 100],
        "analysis": {
            "wait": "200ms",
            "prometheus": {"url": prometheus.url(), "query": "max(app_error_ratio)", "max": 0.05},
        },
    });

    // Errors at 1 %: every stage passes.
    let p = stack
        .promote_to_end("r2", "prod", "alice", canary.clone())
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    for t in ["c-1", "c-2", "c-3"] {
        assert_eq!(stack.current(t), image(&d2), "{t}");
    }

    // Errors at 50 %: the first stage's analysis breaches, and the job
    // rolls back by itself; the later stages run nothing.
    *ratio.lock().unwrap() = 0.5;
    prometheus
        .wait_for("max(app_error_ratio)", |v| v >= 0.5)
        .await;
    let p = stack.promote_to_end("r3", "prod", "alice", canary).await;
    assert_eq!(p["state"], "rolled_back", "{p:#}");
    let job = stack.job(p["job_id"].as_str().unwrap()).await;
    let why = job["error"].as_str().unwrap_or("").to_owned();
    assert!(
        why.contains("max(app_error_ratio) = 0.5 is above 0.05"),
        "{job:#}"
    );
    assert_eq!(
        ran(&stack, "c-1"),
        [d1.as_str(), &d2, &d3, &d2],
        "c-1 back on r2"
    );
    for t in ["c-2", "c-3"] {
        assert_eq!(ran(&stack, t), [d1.as_str(), &d2], "{t} never ran r3");
        assert_eq!(stack.current(t), image(&d2));
    }
    assert_eq!(stack.current("c-1"), image(&d2));
}

#[tokio::test]
async fn hub_rollout_analysis_reads_what_the_targets_reported() {
    let hub = sextant_e2e::Hub::start(sextant_e2e::Backend::Sqlite, "").await;
    hub.wait_ready().await;
    let stack = Stack::start_for(&hub).await;
    // Each deploy command reports, as an agent would, over OTLP/HTTP: host
    // `<target>-host` runs the digest, succeeded, or failed when the test
    // has created `fail/<target>@<digest>`.
    let fail_dir = stack.root.path().join("fail");
    std::fs::create_dir_all(&fail_dir).unwrap();
    let report = stack.root.path().join("report.sh");
    std::fs::write(
        &report,
        format!(
            r#"#!/bin/sh
set -e
target="$1"
status=succeeded
if [ -e "{fail}/$target@$SEXTANT_DIGEST" ]; then status=failed; fi
attr() {{ printf '{{"key":"%s","value":{{"stringValue":"%s"}}}}' "$1" "$2"; }}
attrs="$(attr sextant.application shop),$(attr sextant.workload web),$(attr deployment.environment.name prod),$(attr sextant.target "$target"),$(attr host.name "$target-host"),$(attr sextant.revision "$SEXTANT_DIGEST"),$(attr deployment.status "$status")"
body="{{\"resourceLogs\":[{{\"resource\":{{\"attributes\":[]}},\"scopeLogs\":[{{\"logRecords\":[{{\"eventName\":\"sextant.deployment.observed\",\"timeUnixNano\":\"$(date +%s%N)\",\"attributes\":[$attrs]}}]}}]}}]}}"
curl -sf -X POST -H 'content-type: application/json' --data "$body" http://{hub}/v1/logs >/dev/null
"#,
            fail = fail_dir.display(),
            hub = hub.http,
        ),
    )
    .unwrap();
    let targets: Vec<Value> = (1..=3)
        .map(|i| {
            let name = format!("h-{i}");
            let extra = format!("sh {} {name};", report.display());
            stack.target(&name, "prod", &extra, None)
        })
        .collect();
    stack
        .apply(json!({"environments": [{"name": "prod"}], "components": component(), "targets": targets}))
        .await;
    let (d1, d2, d3) = (digest('1'), digest('2'), digest('3'));
    for (name, d) in [("r1", &d1), ("r2", &d2), ("r3", &d3)] {
        stack.release(name, d).await;
    }
    deploy_all(&stack, "r1", "prod").await;
    let canary = json!({
        "type": "canary",
        "stages": [33, 100],
        "analysis": {"wait": "300ms", "hub_rollout": true},
    });

    // Every target reports the new digest succeeded: the canary goes on.
    let p = stack
        .promote_to_end("r2", "prod", "alice", canary.clone())
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    for t in ["h-1", "h-2", "h-3"] {
        assert_eq!(stack.current(t), image(&d2), "{t}");
    }

    // The first stage's host reports r3 failed: the hub says so, and the
    // canary rolls back without touching the other targets.
    std::fs::write(fail_dir.join(format!("h-1@{d3}")), "").unwrap();
    let p = stack.promote_to_end("r3", "prod", "alice", canary).await;
    assert_eq!(p["state"], "rolled_back", "{p:#}");
    let job = stack.job(p["job_id"].as_str().unwrap()).await;
    let why = job["error"].as_str().unwrap_or("").to_owned();
    assert!(
        why.contains("hub rollout of web on h-1") && why.contains("h-1-host is failed"),
        "{job:#}"
    );
    assert_eq!(
        ran(&stack, "h-1"),
        [d1.as_str(), &d2, &d3, &d2],
        "h-1 back on r2"
    );
    for t in ["h-2", "h-3"] {
        assert_eq!(ran(&stack, t), [d1.as_str(), &d2], "{t} never ran r3");
    }
    // The hub saw the rollback too: h-1's host runs r2 again, succeeded.
    let url = format!("http://{}/api/v1/hosts/h-1-host", hub.api);
    let view: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    assert!(view.to_string().contains(&d2), "{view:#}");
}
