//! Promotions and deployment jobs end to end, through the orchestrator's
//! REST API, onto SSH targets on a real OpenSSH server (Debian's sshd on
//! 127.0.0.1, from the test kit): dev → stage → prod with approvals and a
//! refused self-approval, a canary whose health check fails and rolls back
//! by itself, a rolling job that stops at its first failure, a blue-green
//! switch, and an orchestrator stopped mid-job whose successor resumes it
//! without running any task twice. The stack is in `common/`.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Stack, component, digest, image};
use serde_json::{Value, json};

#[tokio::test]
async fn dev_stage_prod_with_approvals() {
    let stack = Stack::start().await;
    // Without tokens the actor is the X-Sextant-Actor header.
    let (status, me) = stack.call("GET", "/api/v1/whoami", "alice", None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me, json!({"tenant": "default", "actor": "alice"}));
    stack
        .apply(json!({
            "environments": [
                {"name": "dev"},
                {"name": "stage", "required_approvals": 1},
                {"name": "prod", "production": true, "required_approvals": 2,
                 "approvers": ["bob", "carol", "alice"]},
            ],
            "components": component(),
            "targets": [
                stack.target("dev-1", "dev", "", None),
                stack.target("stage-1", "stage", "", None),
                stack.target("prod-1", "prod", "", None),
                stack.target("prod-2", "prod", "", None),
            ],
        }))
        .await;
    let d1 = digest('1');
    stack.release("r1", &d1).await;

    // dev needs nobody.
    let p = stack
        .promote_to_end("r1", "dev", "alice", json!({"type": "all_at_once"}))
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    assert_eq!(stack.current("dev-1"), image(&d1));

    // stage: one approval, not the requester's.
    let p = stack
        .promote("r1", "stage", "alice", json!({"type": "all_at_once"}))
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    assert_eq!(p["state"], "awaiting_approval", "{p:#}");
    let (status, body) = stack
        .call(
            "POST",
            &format!("/api/v1/promotions/{id}/approve"),
            "alice",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("separation of duties")
    );
    assert_eq!(stack.current("stage-1"), "", "nothing deployed yet");
    let (status, body) = stack
        .call(
            "POST",
            &format!("/api/v1/promotions/{id}/approve"),
            "bob",
            Some(json!({"comment": "lgtm"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let p = stack
        .wait_promotion(&id, &["deployed", "failed", "rolled_back"])
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    assert_eq!(stack.current("stage-1"), image(&d1));
    assert_eq!(p["decision"]["outcome"], "approved");
    assert_eq!(p["decision"]["record"]["approvals"][0]["approver"], "bob");

    // prod: two of bob, carol and alice; someone outside the list is refused.
    let p = stack
        .promote(
            "r1",
            "prod",
            "alice",
            json!({"type": "rolling", "batch_size": 1}),
        )
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    let (status, _) = stack
        .call(
            "POST",
            &format!("/api/v1/promotions/{id}/approve"),
            "mallory",
            None,
        )
        .await;
    assert_eq!(status, 403);
    stack
        .call(
            "POST",
            &format!("/api/v1/promotions/{id}/approve"),
            "bob",
            None,
        )
        .await;
    let (_, p) = stack
        .call("GET", &format!("/api/v1/promotions/{id}"), "t", None)
        .await;
    assert_eq!(
        p["state"], "awaiting_approval",
        "one of two approvals: {p:#}"
    );
    stack
        .call(
            "POST",
            &format!("/api/v1/promotions/{id}/approve"),
            "carol",
            None,
        )
        .await;
    let p = stack
        .wait_promotion(&id, &["deployed", "failed", "rolled_back"])
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    for t in ["prod-1", "prod-2"] {
        assert_eq!(stack.current(t), image(&d1));
        assert_eq!(stack.runs(t).len(), 1, "{t} ran once");
    }
    let trail: Vec<&str> = p["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        trail,
        [
            "requested",
            "awaiting_approval",
            "approved",
            "deploying",
            "deployed"
        ]
    );
    let job = stack.job(p["job_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "completed");
    let artifacts: Vec<&str> = job["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(
        artifacts.contains(&"compose-lock.yml") && artifacts.contains(&"release.json"),
        "{artifacts:?}"
    );
    // The version sticker reached the target's run directory.
    let stickers = walk(&stack.sshd.work_dir(), "release.json");
    assert!(!stickers.is_empty(), "release.json uploaded");
}

fn walk(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p, name));
            } else if p.file_name().is_some_and(|n| n == name) {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn canary_breach_rolls_back_and_rolling_stops_at_failure() {
    let stack = Stack::start().await;
    let (d1, d2) = (digest('1'), digest('2'));
    // c-2's health check fails while it runs r2.
    let c2_health = format!(
        "! grep -q {} {}/current",
        &d2[7..],
        stack.dir("c-2").display()
    );
    // r-2's deploy fails on r2.
    let r2_fail =
        format!("if [ \"$SEXTANT_DIGEST\" = \"{d2}\" ]; then echo broken >&2; exit 3; fi;");
    stack
        .apply(json!({
            "environments": [{"name": "canary"}, {"name": "rolling"}],
            "components": component(),
            "targets": [
                stack.target("c-1", "canary", "", None),
                stack.target("c-2", "canary", "", Some(&c2_health)),
                stack.target("c-3", "canary", "", None),
                stack.target("r-1", "rolling", "", None),
                stack.target("r-2", "rolling", &r2_fail, None),
                stack.target("r-3", "rolling", "", None),
            ],
        }))
        .await;
    stack.release("r1", &d1).await;
    stack.release("r2", &d2).await;
    for env in ["canary", "rolling"] {
        let p = stack
            .promote_to_end(
                "r1",
                env,
                "alice",
                json!({"type": "all_at_once", "max_parallel": 2}),
            )
            .await;
        assert_eq!(p["state"], "deployed", "{p:#}");
    }

    // Canary 34% → 67% → 100%: c-1, then c-2 fails its health check.
    let p = stack
        .promote_to_end(
            "r2",
            "canary",
            "alice",
            json!({"type": "canary", "stages": [34, 67, 100], "analysis": {"wait": "100ms"}}),
        )
        .await;
    assert_eq!(p["state"], "rolled_back", "{p:#}");
    let job = stack.job(p["job_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "rolled_back");
    assert!(
        job["error"].as_str().unwrap().contains("c-2"),
        "names the target: {job:#}"
    );
    let failed: Vec<&Value> = job["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["target"], "c-2");
    assert_eq!(failed[0]["error_type"], "health");
    // Rolled back to r1 where r2 had gone; c-3 never saw r2.
    assert_eq!(stack.current("c-1"), image(&d1));
    assert_eq!(stack.current("c-2"), image(&d1));
    assert_eq!(stack.current("c-3"), image(&d1));
    assert!(
        !stack.runs("c-3").iter().any(|r| r.contains(&d2)),
        "{:?}",
        stack.runs("c-3")
    );
    let (_, jobs) = stack.call("GET", "/api/v1/jobs", "t", None).await;
    let rollback = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "rollback" && j["parent_job_id"] == job["id"])
        .expect("a rollback job linked to the failed job");
    assert_eq!(rollback["state"], "completed");

    // Rolling, one at a time, no failure tolerated: r-3 is never touched.
    let p = stack
        .promote_to_end(
            "r2",
            "rolling",
            "alice",
            json!({"type": "rolling", "batch_size": 1, "max_unavailable": 0}),
        )
        .await;
    assert_eq!(p["state"], "rolled_back", "{p:#}");
    let job = stack.job(p["job_id"].as_str().unwrap()).await;
    let r2_task = job["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "r-2")
        .unwrap();
    assert_eq!(r2_task["state"], "failed");
    assert_eq!(r2_task["exit_code"], 3);
    let logs = stack
        .call(
            "GET",
            &format!(
                "/api/v1/jobs/{}/tasks/{}/logs",
                job["id"].as_str().unwrap(),
                r2_task["id"].as_str().unwrap()
            ),
            "t",
            None,
        )
        .await
        .1;
    assert!(
        logs.as_array()
            .unwrap()
            .iter()
            .any(|l| l["line"].as_str().unwrap_or("").contains("broken")),
        "the task's stderr is in its log: {logs:#}"
    );
    assert_eq!(stack.current("r-1"), image(&d1), "rolled back");
    assert_eq!(stack.runs("r-3").len(), 1, "r-3 only ran r1");
}

#[tokio::test]
async fn blue_green_switches_and_keeps_the_old_slot() {
    let stack = Stack::start().await;
    let dir = stack.dir("bg-1");
    let d = dir.display();
    let target = json!({
        "name": "bg-1",
        "environment": "prod",
        "ssh": stack.sshd.ssh_json(),
        "deploy": {
            "template": "custom",
            "command": format!("mkdir -p {d}/$SEXTANT_SLOT && echo \"$SEXTANT_IMAGE\" > {d}/$SEXTANT_SLOT/image"),
            "switch": format!("ln -sfn {d}/$SEXTANT_SLOT {d}/live.new && mv -T {d}/live.new {d}/live"),
        },
        "health": {"command": format!("test -s {d}/{{slot}}/image"), "retries": 3, "interval": "100ms"},
    });
    stack
        .apply(json!({"environments": [{"name": "prod"}], "components": component(), "targets": [target]}))
        .await;
    let (d1, d2) = (digest('1'), digest('2'));
    stack.release("r1", &d1).await;
    stack.release("r2", &d2).await;
    for (release, slot, d) in [("r1", "blue", &d1), ("r2", "green", &d2)] {
        let p = stack
            .promote_to_end(release, "prod", "alice", json!({"type": "blue_green"}))
            .await;
        assert_eq!(p["state"], "deployed", "{p:#}");
        let live = std::fs::read_link(dir.join("live")).expect("live symlink");
        assert_eq!(live, dir.join(slot), "{release} is live in {slot}");
        assert_eq!(
            std::fs::read_to_string(dir.join(slot).join("image"))
                .unwrap()
                .trim(),
            image(d)
        );
    }
    // The old slot is still there for an instant rollback.
    assert_eq!(
        std::fs::read_to_string(dir.join("blue").join("image"))
            .unwrap()
            .trim(),
        image(&d1)
    );
    let (_, deployed) = stack
        .call("GET", "/api/v1/deployed?target=bg-1", "t", None)
        .await;
    assert_eq!(deployed[0]["slot"], "green");
    assert_eq!(deployed[0]["previous"]["slot"], "blue");

    // Rollback on request: one switch back to blue.
    let (_, jobs) = stack.call("GET", "/api/v1/jobs?limit=1", "t", None).await;
    let job_id = jobs[0]["id"].as_str().unwrap().to_owned();
    let (status, body) = stack
        .call(
            "POST",
            &format!("/api/v1/jobs/{job_id}/rollback"),
            "alice",
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["state"], "rolling_back", "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let job = stack.job(&job_id).await;
        if job["state"] == "rolled_back" {
            break job;
        }
        assert!(Instant::now() < deadline, "rollback stuck: {job:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        std::fs::read_link(dir.join("live")).unwrap(),
        dir.join("blue")
    );
    // The rollback is a job of its own, linked both ways.
    let child = job["rollback_job_id"]
        .as_str()
        .expect("rollback job linked");
    let child = stack.job(child).await;
    assert_eq!(child["kind"], "rollback", "{child:#}");
    assert_eq!(child["parent_job_id"], job_id.as_str());
    assert_eq!(child["state"], "completed");
    assert_eq!(child["tasks"][0]["kind"], "switch", "{child:#}");
    assert_eq!(child["rollback_job_id"], Value::Null);
    // A job rolls back once: asking again is a conflict.
    let (status, body) = stack
        .call(
            "POST",
            &format!("/api/v1/jobs/{job_id}/rollback"),
            "alice",
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test]
async fn a_stopped_orchestrator_is_resumed_without_running_a_task_twice() {
    let mut stack = Stack::start().await;
    let targets: Vec<Value> = (1..=3)
        .map(|i| stack.target(&format!("k-{i}"), "prod", "sleep 2;", None))
        .collect();
    stack
        .apply(json!({"environments": [{"name": "prod"}], "components": component(), "targets": targets}))
        .await;
    let d1 = digest('1');
    stack.release("r1", &d1).await;
    let p = stack
        .promote(
            "r1",
            "prod",
            "alice",
            json!({"type": "rolling", "batch_size": 1}),
        )
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    // Wait until the second target's command has started, then stop.
    let deadline = Instant::now() + Duration::from_secs(60);
    while stack.runs("k-2").is_empty() {
        assert!(Instant::now() < deadline, "k-2 never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.crash().await;
    assert_eq!(stack.current("k-3"), "", "k-3 had not started");
    // Another replica takes over once the lease expires.
    stack.start_replica("replica-b").await;
    let p = stack
        .wait_promotion(&id, &["deployed", "failed", "rolled_back"])
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    for t in ["k-1", "k-2", "k-3"] {
        assert_eq!(
            stack.runs(t).len(),
            1,
            "{t} ran exactly once: {:?}",
            stack.runs(t)
        );
        assert_eq!(stack.current(t), image(&d1));
    }
    let job = stack.job(p["job_id"].as_str().unwrap()).await;
    let owners: Vec<&str> = job["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(owners.last(), Some(&"completed"));
    assert!(
        job["attempts"].as_i64().unwrap() >= 2,
        "driven twice: {job:#}"
    );
}

#[tokio::test]
async fn desired_state_reaches_the_hub() {
    let hub = sextant_e2e::Hub::start(sextant_e2e::Backend::Sqlite, "").await;
    hub.wait_ready().await;
    let stack = Stack::start_for(&hub).await;
    let mut target = stack.target("dev-1", "dev", "", None);
    target["hub_target"] = json!("eu-1");
    stack
        .apply(json!({"environments": [{"name": "dev"}], "components": component(), "targets": [target]}))
        .await;
    let d1 = digest('1');
    stack.release("2026.11.23", &d1).await;
    let p = stack
        .promote_to_end("2026.11.23", "dev", "alice", json!({"type": "all_at_once"}))
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    // The outbox's sender delivers the desired event; the hub shows it.
    let url = format!(
        "http://{}/api/v1/state?environment=dev&workload=web",
        hub.api
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state: Value = stack
            .http
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null);
        let found = state.to_string();
        if found.contains("2026.11.23")
            && found.contains(&d1)
            && found.contains("eu-1")
            && found.contains("shop")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hub never showed the desired state: {state:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
