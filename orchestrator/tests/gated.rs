//! Gates inside whole promotions, through the orchestrator's REST API onto
//! SSH targets (the stack in `common/`): a freeze window refuses a
//! promotion, a policy webhook keeps one waiting and then denies it, and
//! the hub gate holds a promotion into stage until the hub has seen the
//! release healthy in dev for long enough; a manual gate is opened and
//! closed through the API and `sextant gate`; promotions awaiting approval
//! are rejected (`POST …/reject`, `sextant reject`) and cancelled (`POST
//! …/cancel`, `sextant promotions cancel`), each event naming its actor.
//! In each case the decision record names the gate and why, and no target
//! runs anything it should not. The CLI parts run the `sextant` binary
//! (`cargo build --bin sextant` first).

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sextant_e2e::wait;

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
    wait::until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            if policy.seen.lock().unwrap().len() >= 2 {
                return Ok(());
            }
            Err("the policy was asked only once")
        },
    )
    .await;
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
    // Real time: the orchestrator re-asks the hub over HTTP; the state must hold.
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

/// The promotion's last event.
fn last_event(p: &Value) -> &Value {
    p["events"].as_array().unwrap().last().unwrap()
}

fn out_text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn a_manual_gate_is_opened_or_closed_through_the_api_and_the_cli() {
    let stack = Stack::start().await;
    stack
        .apply(json!({
            "environments": [{"name": "prod", "gates": [{"type": "manual", "name": "release-manager"}]}],
            "components": component(),
            "targets": [stack.target("prod-1", "prod", "", None)],
        }))
        .await;
    let (d1, d2) = (digest('1'), digest('2'));
    stack.release("r1", &d1).await;
    stack.release("r2", &d2).await;

    // Waits for someone to open the gate, and says so.
    let p = stack
        .promote("r1", "prod", "alice", json!({"type": "all_at_once"}))
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    let p = stack.wait_promotion(&id, &["awaiting_approval"]).await;
    let detail = last_event(&p)["detail"].as_str().unwrap_or("").to_owned();
    assert!(
        detail.contains("manual:release-manager") && detail.contains("waiting for someone to open"),
        "{p:#}"
    );
    // Real time: the orchestrator (wall clock, database) would have acted within it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, p) = stack
        .call("GET", &format!("/api/v1/promotions/{id}"), "t", None)
        .await;
    assert_eq!(p["state"], "awaiting_approval", "still waiting: {p:#}");
    assert!(
        stack.runs("prod-1").is_empty(),
        "nothing deployed while closed"
    );
    // A gate the environment does not have is not found; a bad action is invalid.
    let (status, body) = stack
        .call(
            "POST",
            &format!("/api/v1/promotions/{id}/gates/nobody"),
            "rm",
            Some(json!({"action": "open"})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = stack
        .call(
            "POST",
            &format!("/api/v1/promotions/{id}/gates/release-manager"),
            "rm",
            Some(json!({"action": "maybe"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // Opened through the API: it proceeds and deploys.
    let (status, body) = stack
        .call(
            "POST",
            &format!("/api/v1/promotions/{id}/gates/release-manager"),
            "rm",
            Some(json!({"action": "open", "comment": "go"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let p = stack
        .wait_promotion(&id, &["deployed", "failed", "rolled_back", "rejected"])
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    let result = gate(&p, "manual:release-manager");
    assert_eq!(result["decision"], "allow", "{result}");
    assert!(
        result["reason"]
            .as_str()
            .unwrap()
            .starts_with("opened by rm at "),
        "{result}"
    );
    assert!(result["reason"].as_str().unwrap().ends_with(": go"));
    assert_eq!(stack.current("prod-1"), image(&d1));

    // Opened through `sextant gate open`: r2 proceeds too.
    let p = stack
        .promote("r2", "prod", "alice", json!({"type": "all_at_once"}))
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    stack.wait_promotion(&id, &["awaiting_approval"]).await;
    let out = stack
        .cli("carol", &["gate", "open", &id, "release-manager"])
        .await;
    assert!(out.status.success(), "{}", out_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("gate release-manager of promotion {id} opened")),
        "{}",
        out_text(&out)
    );
    let p = stack
        .wait_promotion(&id, &["deployed", "failed", "rolled_back", "rejected"])
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    assert!(
        gate(&p, "manual:release-manager")["reason"]
            .as_str()
            .unwrap()
            .starts_with("opened by carol"),
        "{p:#}"
    );
    assert_eq!(stack.current("prod-1"), image(&d2));
    let ran = stack.runs("prod-1").len();
    assert_eq!(ran, 2, "{:?}", stack.runs("prod-1"));

    // Closed through `sextant gate close`: refused, and carol is the actor.
    let p = stack
        .promote("r1", "prod", "alice", json!({"type": "all_at_once"}))
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    stack.wait_promotion(&id, &["awaiting_approval"]).await;
    let out = stack
        .cli(
            "carol",
            &[
                "gate",
                "close",
                &id,
                "release-manager",
                "--comment",
                "not today",
            ],
        )
        .await;
    assert!(out.status.success(), "{}", out_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!(
            "gate release-manager of promotion {id} closed\nstate     rejected"
        )),
        "{}",
        out_text(&out)
    );
    let (_, p) = stack
        .call("GET", &format!("/api/v1/promotions/{id}"), "t", None)
        .await;
    assert_eq!(p["state"], "rejected", "{p:#}");
    let result = gate(&p, "manual:release-manager");
    assert_eq!(result["decision"], "deny", "{result}");
    assert!(
        result["reason"]
            .as_str()
            .unwrap()
            .contains("closed by carol"),
        "{result}"
    );
    assert!(result["reason"].as_str().unwrap().ends_with(": not today"));
    assert_eq!(last_event(&p)["actor"], "carol", "{p:#}");
    assert_eq!(p["job_id"], Value::Null);
    // A decided promotion's gate cannot be changed any more.
    let out = stack
        .cli("carol", &["gate", "open", &id, "release-manager"])
        .await;
    assert_eq!(out.status.code(), Some(5), "{}", out_text(&out));

    // Closed through the API: refused as well.
    let p = stack
        .promote("r1", "prod", "alice", json!({"type": "all_at_once"}))
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    let (status, p) = stack
        .call(
            "POST",
            &format!("/api/v1/promotions/{id}/gates/release-manager"),
            "dave",
            Some(json!({"action": "close"})),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["state"], "rejected", "{p:#}");
    assert_eq!(last_event(&p)["actor"], "dave", "{p:#}");
    assert_eq!(gate(&p, "manual:release-manager")["decision"], "deny");

    // Neither refused promotion ran anything.
    // Real time: the orchestrator (wall clock, database) would have acted within it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        stack.runs("prod-1").len(),
        ran,
        "{:?}",
        stack.runs("prod-1")
    );
    assert_eq!(stack.current("prod-1"), image(&d2));
}

/// alice promotes r1 into prod, which waits for an approval.
async fn awaiting(stack: &Stack) -> String {
    let p = stack
        .promote("r1", "prod", "alice", json!({"type": "all_at_once"}))
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    let p = stack.wait_promotion(&id, &["awaiting_approval"]).await;
    assert_eq!(p["events"][0]["actor"], "alice", "the requester: {p:#}");
    assert_eq!(p["events"][0]["to"], "requested");
    id
}

#[tokio::test]
async fn reject_and_cancel_through_the_api_and_the_cli_record_the_actor() {
    let stack = Stack::start().await;
    stack
        .apply(json!({
            "environments": [{"name": "prod", "required_approvals": 1}],
            "components": component(),
            "targets": [stack.target("prod-1", "prod", "", None)],
        }))
        .await;
    stack.release("r1", &digest('1')).await;

    // Rejected through the API by bob.
    let id = awaiting(&stack).await;
    let (status, p) = stack
        .call(
            "POST",
            &format!("/api/v1/promotions/{id}/reject"),
            "bob",
            Some(json!({"comment": "wrong build"})),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["state"], "rejected", "{p:#}");
    assert_eq!(
        trail(&p),
        ["requested", "awaiting_approval", "rejected"],
        "{p:#}"
    );
    let e = last_event(&p);
    assert_eq!(e["actor"], "bob", "{p:#}");
    assert_eq!(e["from"], "awaiting_approval");
    assert_eq!(e["detail"], "rejected by bob");
    assert!(e["at"].as_str().is_some_and(|a| a.len() >= 20), "{e}");
    assert_eq!(p["approvals"][0]["approver"], "bob", "{p:#}");
    assert_eq!(p["approvals"][0]["decision"], "reject");
    assert_eq!(p["approvals"][0]["comment"], "wrong build");
    assert_eq!(p["decision"]["outcome"], "rejected", "{p:#}");
    // Decided: neither another reject nor a cancel moves it.
    let (status, _) = stack
        .call(
            "POST",
            &format!("/api/v1/promotions/{id}/reject"),
            "carol",
            None,
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = stack
        .call(
            "POST",
            &format!("/api/v1/promotions/{id}/cancel"),
            "alice",
            None,
        )
        .await;
    assert_eq!(status, 409);

    // Rejected through `sextant reject` by carol.
    let id = awaiting(&stack).await;
    let out = stack
        .cli("carol", &["reject", &id, "--comment", "not now"])
        .await;
    assert!(out.status.success(), "{}", out_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("promotion {id} rejected (0 approvals)")),
        "{}",
        out_text(&out)
    );
    let (_, p) = stack
        .call("GET", &format!("/api/v1/promotions/{id}"), "t", None)
        .await;
    assert_eq!(p["state"], "rejected", "{p:#}");
    assert_eq!(last_event(&p)["actor"], "carol", "{p:#}");
    assert_eq!(p["approvals"][0]["comment"], "not now");

    // Cancelled through the API by alice.
    let id = awaiting(&stack).await;
    let (status, p) = stack
        .call(
            "POST",
            &format!("/api/v1/promotions/{id}/cancel"),
            "alice",
            None,
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["state"], "cancelled", "{p:#}");
    assert_eq!(
        trail(&p),
        ["requested", "awaiting_approval", "cancelled"],
        "{p:#}"
    );
    assert_eq!(last_event(&p)["actor"], "alice", "{p:#}");
    // A cancelled promotion takes no approval.
    let (status, _) = stack
        .call(
            "POST",
            &format!("/api/v1/promotions/{id}/approve"),
            "bob",
            None,
        )
        .await;
    assert_eq!(status, 409);

    // Cancelled through `sextant promotions cancel` by dave.
    let id = awaiting(&stack).await;
    let out = stack.cli("dave", &["promotions", "cancel", &id]).await;
    assert!(out.status.success(), "{}", out_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("promotion {id} cancelled")),
        "{}",
        out_text(&out)
    );
    let (_, p) = stack
        .call("GET", &format!("/api/v1/promotions/{id}"), "t", None)
        .await;
    assert_eq!(p["state"], "cancelled", "{p:#}");
    assert_eq!(last_event(&p)["actor"], "dave", "{p:#}");
    let again = stack.cli("dave", &["promotions", "cancel", &id]).await;
    assert_eq!(again.status.code(), Some(5), "{}", out_text(&again));

    // The promotions' waiting was recorded by the orchestrator itself.
    assert_eq!(p["events"][1]["actor"], "sextant", "{p:#}");
    // Real time: the orchestrator (wall clock, database) would have acted within it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(stack.runs("prod-1").is_empty(), "nothing deployed");
}
