//! Gates inside whole promotions, through the orchestrator's REST API onto
//! SSH targets (the stack in `common/`): a freeze window refuses a
//! promotion, a policy webhook keeps one waiting and then denies it, and
//! the hub gate holds a promotion into stage until the hub has seen the
//! release healthy in dev for long enough. In each case the decision record
//! names the gate and why, and no target runs anything it should not.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use common::{Stack, component, digest, image};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// The gate results of a promotion's decision record, by gate name.
fn gate<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["decision"]["record"]["gates"]
        .as_array()
        .and_then(|gates| gates.iter().find(|g| g["gate"] == name))
        .unwrap_or_else(|| panic!("no gate {name} in the decision record: {p:#}"))
}

/// The promotion's event trail: the states it moved to.
fn trail(p: &Value) -> Vec<String> {
    p["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_freeze_window_refuses_the_promotion() {
    let stack = Stack::start().await;
    // A window that lasts all day, every day (start == end): always open.
    stack
        .apply(json!({
            "environments": [{
                "name": "prod",
                "freeze_windows": [{"name": "year-end", "start": "00:00", "end": "00:00"}],
                "gates": [{"type": "freeze"}],
            }],
            "components": component(),
            "targets": [stack.target("prod-1", "prod", "", None)],
        }))
        .await;
    stack.release("r1", &digest('1')).await;
    let p = stack
        .promote_to_end("r1", "prod", "alice", json!({"type": "all_at_once"}))
        .await;
    assert_eq!(p["state"], "rejected", "{p:#}");
    assert_eq!(p["decision"]["outcome"], "rejected", "{p:#}");
    let freeze = gate(&p, "freeze");
    assert_eq!(freeze["decision"], "deny");
    assert!(
        freeze["reason"]
            .as_str()
            .unwrap()
            .contains("freeze window \"year-end\" is open until"),
        "{freeze}"
    );
    assert!(trail(&p).ends_with(&["rejected".to_owned()]), "{p:#}");
    assert_eq!(p["job_id"], Value::Null, "no job for a refused promotion");
    assert!(stack.runs("prod-1").is_empty(), "nothing deployed");
}

/// A policy endpoint whose answer the test changes; it records every body.
#[derive(Clone, Default)]
struct Policy {
    answer: Arc<Mutex<Value>>,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Policy {
    async fn serve(&self) -> SocketAddr {
        let app = Router::new()
            .route(
                "/policy",
                post(
                    |State(policy): State<Policy>, axum::Json(body): axum::Json<Value>| async move {
                        policy.seen.lock().unwrap().push(body);
                        let answer = policy.answer.lock().unwrap().clone();
                        axum::Json(answer)
                    },
                ),
            )
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn answer(&self, answer: Value) {
        *self.answer.lock().unwrap() = answer;
    }
}

#[tokio::test]
async fn a_policy_webhook_keeps_the_promotion_waiting_then_denies_it() {
    let stack = Stack::start().await;
    let policy = Policy::default();
    policy.answer(json!({"decision": "pending", "reason": "image scan running"}));
    let addr = policy.serve().await;
    stack
        .apply(json!({
            "environments": [{
                "name": "prod",
                "gates": [{"type": "webhook", "name": "policy", "url": format!("http://{addr}/policy")}],
            }],
            "components": component(),
            "targets": [stack.target("prod-1", "prod", "", None)],
        }))
        .await;
    let d1 = digest('1');
    stack.release("r1", &d1).await;
    let p = stack
        .promote("r1", "prod", "alice", json!({"type": "all_at_once"}))
        .await;
    let id = p["id"].as_str().unwrap().to_owned();

    // Pending: the promotion waits and says for what.
    let p = stack.wait_promotion(&id, &["awaiting_approval"]).await;
    let waiting = p["events"].as_array().unwrap().last().unwrap();
    let detail = waiting["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("webhook:policy") && detail.contains("pending: image scan running"),
        "{p:#}"
    );
    // The engine asks again while it waits.
    let deadline = Instant::now() + Duration::from_secs(30);
    while policy.seen.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "the policy was asked only once");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stack.runs("prod-1").is_empty(),
        "nothing deployed while pending"
    );

    // Deny: rejected, with the policy's reason in the decision record.
    policy.answer(json!({"decision": "deny", "reason": "CVE-2026-0001 open"}));
    let p = stack.wait_promotion(&id, &["rejected", "deployed"]).await;
    assert_eq!(p["state"], "rejected", "{p:#}");
    let result = gate(&p, "webhook:policy");
    assert_eq!(result["decision"], "deny", "{result}");
    assert!(
        result["reason"]
            .as_str()
            .unwrap()
            .contains("CVE-2026-0001 open"),
        "{result}"
    );
    assert_eq!(
        trail(&p),
        ["requested", "awaiting_approval", "rejected"],
        "{p:#}"
    );
    assert!(stack.runs("prod-1").is_empty(), "nothing deployed");

    // The policy saw what it decides on: the release's digest and where it
    // goes.
    let asked = policy.seen.lock().unwrap().last().cloned().unwrap();
    let text = asked.to_string();
    assert!(
        text.contains(&d1) && text.contains("prod") && text.contains("alice"),
        "{asked:#}"
    );
}

fn kv(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// An agent's report from a dev host: the component runs `revision`.
async fn report_observed(hub_http: &str, host: &str, revision: &str, status: &str) {
    let now = OffsetDateTime::now_utc().unix_timestamp_nanos();
    let record = json!({
        "eventName": "sextant.deployment.observed",
        "timeUnixNano": now.to_string(),
        "attributes": [
            kv("sextant.application", "shop"),
            kv("sextant.workload", "web"),
            kv("deployment.environment.name", "dev"),
            kv("sextant.target", "eu-1"),
            kv("host.name", host),
            kv("sextant.revision", revision),
            kv("deployment.status", status),
        ],
    });
    let body = json!({"resourceLogs": [{"resource": {"attributes": []}, "scopeLogs": [{"logRecords": [record]}]}]});
    let res = reqwest::Client::new()
        .post(format!("{hub_http}/v1/logs"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert!(answer["partialSuccess"].is_null(), "rejected: {answer}");
}

/// The time of the promotion's move to `state`.
fn moved_at(p: &Value, state: &str) -> OffsetDateTime {
    let at = p["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["to"] == state)
        .and_then(|e| e["at"].as_str())
        .unwrap_or_else(|| panic!("never moved to {state}: {p:#}"));
    OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap()
}

#[tokio::test]
async fn the_hub_gate_waits_until_the_release_is_healthy_in_the_previous_environment() {
    let hub = sextant_e2e::Hub::start(sextant_e2e::Backend::Sqlite, "").await;
    hub.wait_ready().await;
    let hub_http = format!("http://{}", hub.http);
    let stack =
        Stack::start_with_hub(Some((format!("http://{}", hub.api), hub_http.clone()))).await;
    let mut dev = stack.target("dev-1", "dev", "", None);
    dev["hub_target"] = json!("eu-1");
    stack
        .apply(json!({
            "environments": [
                {"name": "dev"},
                {"name": "stage", "gates": [{"type": "previous_environment_healthy", "for": "4s"}]},
            ],
            "components": component(),
            "targets": [dev, stack.target("stage-1", "stage", "", None)],
        }))
        .await;
    let d1 = digest('1');
    stack.release("r1", &d1).await;

    // Into dev: deployed; the desired state goes to the hub.
    let p = stack
        .promote_to_end("r1", "dev", "alice", json!({"type": "all_at_once"}))
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    assert_eq!(stack.current("dev-1"), image(&d1));

    // Into stage: no dev host has reported the release yet, so it waits.
    let p = stack
        .promote("r1", "stage", "alice", json!({"type": "all_at_once"}))
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    let p = stack.wait_promotion(&id, &["awaiting_approval"]).await;
    let detail = p["events"].as_array().unwrap().last().unwrap()["detail"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        detail.contains("previous-environment-healthy"),
        "waits for the hub gate: {p:#}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, p) = stack
        .call("GET", &format!("/api/v1/promotions/{id}"), "t", None)
        .await;
    assert_eq!(p["state"], "awaiting_approval", "{p:#}");
    assert!(stack.runs("stage-1").is_empty(), "stage waits");

    // A dev host reports the release running and healthy. The gate then
    // still waits until it has held for 4 s.
    let reported = OffsetDateTime::now_utc();
    report_observed(&hub_http, "dev-host-1", &d1, "succeeded").await;
    let p = stack.wait_promotion(&id, &["deployed", "failed"]).await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    let approved = moved_at(&p, "approved");
    assert!(
        approved - reported >= time::Duration::seconds(4),
        "approved {approved} only {} after the report at {reported}",
        approved - reported
    );
    let result = gate(&p, "previous-environment-healthy");
    assert_eq!(result["decision"], "allow", "{p:#}");
    assert_eq!(stack.current("stage-1"), image(&d1));
    assert_eq!(
        trail(&p),
        [
            "requested",
            "awaiting_approval",
            "approved",
            "deploying",
            "deployed"
        ]
    );
}
