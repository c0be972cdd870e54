//! The answers `sextant_kit::orchestrator` reads (the client of the CLI and
//! of the hub's UI) stay in step with what the API writes: every field the
//! client's types read must be in the real answer, not filled in by a serde
//! default because a field was renamed or dropped. Checked on a real
//! promotion into an environment with an approval and a manual gate,
//! deployed by its job onto an SSH target, and on an agent as the API
//! shows it. The stack is in `common/`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sextant_kit::orchestrator as kit;

use common::{Stack, component, digest};

/// Every field of `T` read from `raw` is in `raw`, at any depth (arrays by
/// their first element); fields left null or empty are skipped (the API
/// leaves them out when empty, and the client's default is the same).
fn covered(kit: &Value, raw: &Value, path: &str) {
    match (kit, raw) {
        (Value::Object(k), Value::Object(r)) => {
            for (key, v) in k {
                let empty = match v {
                    Value::Null => true,
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.is_empty(),
                    _ => false,
                };
                if empty {
                    continue;
                }
                let at = format!("{path}.{key}");
                let Some(r) = r.get(key) else {
                    panic!("the client reads {at}, which the API does not write: {raw:#}");
                };
                covered(v, r, &at);
            }
        }
        (Value::Array(k), Value::Array(r)) => {
            if let (Some(k), Some(r)) = (k.first(), r.first()) {
                covered(k, r, &format!("{path}[0]"));
            }
        }
        _ => {}
    }
}

fn reads<T: DeserializeOwned + Serialize>(raw: &Value, name: &str) -> T {
    let parsed: T = serde_json::from_value(raw.clone())
        .unwrap_or_else(|e| panic!("the client cannot read {name}: {e}\n{raw:#}"));
    covered(&serde_json::to_value(&parsed).unwrap(), raw, name);
    parsed
}

#[tokio::test]
async fn the_clients_types_read_what_the_api_writes() {
    let stack = Stack::start().await;
    stack
        .apply(json!({
            "environments": [{"name": "prod", "required_approvals": 1, "approvers": ["bob"],
                "gates": [{"type": "manual", "name": "signoff"}]}],
            "components": component(),
            "targets": [stack.target("prod-1", "prod", "", Some("true"))],
        }))
        .await;
    stack.release("r1", &digest('1')).await;
    let p = stack
        .promote(
            "r1",
            "prod",
            "alice",
            json!({"type": "rolling", "batch_size": 1}),
        )
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    stack.wait_promotion(&id, &["awaiting_approval"]).await;
    let gate = format!("/api/v1/promotions/{id}/gates/signoff");
    let (status, body) = stack
        .call("POST", &gate, "carol", Some(json!({"action": "open"})))
        .await;
    assert_eq!(status, 200, "{body}");
    let approve = format!("/api/v1/promotions/{id}/approve");
    let (status, body) = stack
        .call("POST", &approve, "bob", Some(json!({"comment": "ok"})))
        .await;
    assert_eq!(status, 200, "{body}");
    let detail = stack.wait_promotion(&id, &["deployed"]).await;

    let get = |path: String| {
        let stack = &stack;
        async move {
            let (status, v) = stack.call("GET", &path, "alice", None).await;
            assert_eq!(status, 200, "{path}: {v}");
            v
        }
    };
    let who: kit::WhoAmI = reads(&get("/api/v1/whoami".into()).await, "whoami");
    assert_eq!((who.actor.as_str(), who.can_change), ("alice", true));
    let envs: Vec<kit::EnvironmentSpec> =
        reads(&get("/api/v1/environments".into()).await, "environments");
    assert_eq!(
        (envs[0].required_approvals, envs[0].approvers.clone()),
        (1, vec!["bob".to_owned()])
    );
    assert_eq!(envs[0].gates[0]["name"], "signoff");
    let _: Vec<kit::ComponentSpec> = reads(&get("/api/v1/components".into()).await, "components");
    let _: Vec<kit::TargetSpec> = reads(
        &get("/api/v1/targets?environment=prod".into()).await,
        "targets",
    );
    let releases: Vec<kit::Release> = reads(&get("/api/v1/releases".into()).await, "releases");
    let _: kit::Release = reads(
        &get(format!("/api/v1/releases/{}", releases[0].id)).await,
        "release",
    );
    let _: Vec<kit::PromotionView> = reads(&get("/api/v1/promotions".into()).await, "promotions");
    let d: kit::PromotionDetail = reads(&detail, "promotion");
    assert_eq!(d.approvals[0].approver, "bob");
    assert!(d.decision.is_some() && !d.events.is_empty(), "{detail:#}");
    let job_id = d.promotion.job_id.clone().unwrap();
    let _: Vec<kit::JobView> = reads(&get("/api/v1/jobs".into()).await, "jobs");
    let job: kit::JobDetail = reads(&get(format!("/api/v1/jobs/{job_id}")).await, "job");
    let task = &job.tasks[0];
    assert_eq!(
        (task.target.as_str(), task.state.as_str()),
        ("prod-1", "succeeded")
    );
    let logs: Vec<kit::TaskLogLine> = reads(
        &get(format!("/api/v1/jobs/{job_id}/tasks/{}/logs", task.id)).await,
        "logs",
    );
    assert!(!logs.is_empty());

    // An agent, as the API writes it (this stack runs no agent channel).
    let agent = sextant_orchestrator::agents::AgentView {
        id: "a1".into(),
        name: "agent-1".into(),
        version: "1.0.0".into(),
        status: sextant_orchestrator::agents::AgentStatus::Online,
        labels: BTreeMap::from([("site".into(), "lab".into())]),
        capabilities: vec!["docker".into()],
        registered_at: "2026-12-07T10:00:00Z".into(),
        revoked_at: Some("2026-12-07T11:00:00Z".into()),
        last_heartbeat: Some("2026-12-07T10:59:00Z".into()),
        heartbeat_age_seconds: Some(3.0),
        replica: Some("r".into()),
        current_tasks: vec![sextant_orchestrator::agents::CurrentTask {
            run_key: "k".into(),
            task_id: "t".into(),
            kind: "deploy".into(),
            state: "running".into(),
        }],
    };
    let _: kit::AgentView = reads(&serde_json::to_value(&agent).unwrap(), "agent");
}
