//! Promotions and deployment jobs end to end, through the orchestrator's
//! REST API, onto SSH targets on a real OpenSSH server (Debian's sshd on
//! 127.0.0.1, from the test kit): dev → stage → prod with approvals and a
//! refused self-approval, a canary whose health check fails and rolls back
//! by itself, a rolling job that stops at its first failure, a blue-green
//! switch, and an orchestrator stopped mid-job whose successor resumes it
//! without running any task twice; tcp health checks passing, failing and
//! rolling back; `sextant rollback JOB` of a completed job; an
//! environment's rollback policy (automatic, manual); all-at-once's
//! `max_parallel`; and the OpenAPI document. The stack is in `common/`;
//! the CLI parts run the `sextant` binary (`cargo build --bin sextant`
//! first).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Stack, component, digest, image};
use serde_json::{Value, json};
use sextant_e2e::Backend;
use sextant_e2e::wait;

async fn dev_stage_prod_with_approvals(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    // Without tokens the actor is the X-Sextant-Actor header.
    let (status, me) = stack.call("GET", "/api/v1/whoami", "alice", None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me,
        json!({"tenant": "default", "actor": "alice", "can_change": true})
    );
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
    let stickers = walk(&stack.sshd().work_dir(), "release.json");
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
    // The job's failure is typed, not only words.
    assert_eq!(job["failure"], "tasks_failed", "{job:#}");
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
    let hub = sextant_e2e::Hub::start(sextant_e2e::Backend::Sqlite, "").await;
    hub.wait_ready().await;
    let stack = Stack::start_for(&hub).await;
    let dir = stack.dir("bg-1");
    let d = dir.display();
    let target = json!({
        "name": "bg-1",
        "environment": "prod",
        "ssh": stack.sshd().ssh_json(),
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
    let job = wait::until(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let job = stack.job(&job_id).await;
            if job["state"] == "rolled_back" {
                return Ok(job);
            }
            Err(format!("rollback stuck: {job:#}"))
        },
    )
    .await;
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
    // The hub was told each release as it went live, the switch back
    // included (by the release's name).
    wait::until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let desired = desired_versions(&stack, &hub, "prod", "bg-1").await;
            if desired == ["r1", "r2", "r1"] {
                return Ok(());
            }
            Err(format!(
                "the hub's desired assignments of bg-1: {desired:?}"
            ))
        },
    )
    .await;
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
    wait::until(
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async {
            if !stack.runs("k-2").is_empty() {
                return Ok(());
            }
            Err("k-2 never started")
        },
    )
    .await;
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
    wait::until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
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
                return Ok(());
            }
            Err(format!("the hub never showed the desired state: {state:#}"))
        },
    )
    .await;
}

/// Issue 20: desired state is exactly what was applied. A rolling job
/// stops at r-2's failure and rolls back; r-3, which it never reached,
/// keeps r1 as its desired state, and the rollback tells the hub r1 by
/// name (not the release's id) for the targets it touched.
#[tokio::test]
async fn desired_state_is_what_was_applied() {
    let hub = sextant_e2e::Hub::start(sextant_e2e::Backend::Sqlite, "").await;
    hub.wait_ready().await;
    let stack = Stack::start_for(&hub).await;
    let (d1, d2) = (digest('1'), digest('2'));
    let r2_fail =
        format!("if [ \"$SEXTANT_DIGEST\" = \"{d2}\" ]; then echo broken >&2; exit 3; fi;");
    let releases = stack.dir("r-1").join("releases");
    let record_release = format!("echo \"$SEXTANT_RELEASE\" >> {};", releases.display());
    stack
        .apply(json!({
            "environments": [{"name": "rolling"}],
            "components": component(),
            "targets": [
                stack.target("r-1", "rolling", &record_release, None),
                stack.target("r-2", "rolling", &r2_fail, None),
                stack.target("r-3", "rolling", "", None),
            ],
        }))
        .await;
    stack.release("r1", &d1).await;
    stack.release("r2", &d2).await;
    let p = stack
        .promote_to_end("r1", "rolling", "alice", json!({"type": "all_at_once"}))
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    let p = stack
        .promote_to_end(
            "r2",
            "rolling",
            "alice",
            json!({"type": "rolling", "batch_size": 1, "max_unavailable": 0}),
        )
        .await;
    assert_eq!(p["state"], "rolled_back", "{p:#}");

    let assignments = |target: &'static str| desired_versions(&stack, &hub, "rolling", target);
    // Once the rollback's assignment to r-2 has arrived, every earlier
    // one has: the outbox delivers in order.
    wait::until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            match assignments("r-2").await {
                v if v.len() >= 3 => Ok(()),
                v => Err(format!("r-2's assignments so far: {v:?}")),
            }
        },
    )
    .await;
    assert_eq!(assignments("r-1").await, ["r1", "r2", "r1"]);
    assert_eq!(assignments("r-2").await, ["r1", "r2", "r1"]);
    assert_eq!(
        assignments("r-3").await,
        ["r1"],
        "the job never reached r-3"
    );
    // The deploy command got the release's name, the rollback's included.
    let told = std::fs::read_to_string(&releases).expect("releases");
    assert_eq!(told.lines().collect::<Vec<_>>(), ["r1", "r2", "r1"]);
}

/// The desired state an approved promotion sends names what set it: the
/// hub's history carries the promotion, the job and the approver.
#[tokio::test]
async fn desired_state_names_its_promotion_job_and_approver() {
    let hub = sextant_e2e::Hub::start(sextant_e2e::Backend::Sqlite, "").await;
    hub.wait_ready().await;
    let stack = Stack::start_for(&hub).await;
    stack
        .apply(json!({
            "environments": [{"name": "gated", "required_approvals": 1}],
            "components": component(),
            "targets": [stack.target("g-1", "gated", "", None)],
        }))
        .await;
    stack.release("r1", &digest('1')).await;
    let p = stack
        .promote("r1", "gated", "alice", json!({"type": "all_at_once"}))
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    let (status, body) = stack
        .call(
            "POST",
            &format!("/api/v1/promotions/{id}/approve"),
            "bob",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let p = stack.wait_promotion(&id, &["deployed", "failed"]).await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    let job = p["job_id"]
        .as_str()
        .expect("the promotion's job")
        .to_owned();

    let url = format!(
        "http://{}/api/v1/history?workload=web&environment=gated&target=g-1",
        hub.api
    );
    let origin = wait::until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let history: Value = stack
                .http
                .get(&url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            history["items"]
                .as_array()
                .and_then(|items| items.iter().find(|e| e["kind"] == "desired"))
                .map(|e| e["origin"].clone())
                .ok_or(format!("no desired entry yet: {history}"))
        },
    )
    .await;
    assert_eq!(origin["promotion"], id.as_str(), "{origin}");
    assert_eq!(origin["job"], job.as_str(), "{origin}");
    assert_eq!(origin["approved_by"], "bob", "{origin}");
    // This in-process orchestrator has no tracer, so its promotion has no
    // trace of its own and the event none either (agents_docker.rs's
    // traced promotion checks the trace id on the hub).
    assert_eq!(p["traceparent"], Value::Null, "{p:#}");
    assert_eq!(origin.get("trace_id"), None, "{origin}");
}

/// The versions of the desired assignments the hub recorded for `web` on
/// `target` in `environment`, oldest first.
async fn desired_versions(
    stack: &Stack,
    hub: &sextant_e2e::Hub,
    environment: &str,
    target: &str,
) -> Vec<String> {
    let url = format!(
        "http://{}/api/v1/history?workload=web&environment={environment}&target={target}&limit=100",
        hub.api
    );
    let history: Value = stack
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut versions: Vec<String> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "desired")
        .map(|e| e["version"].as_str().unwrap_or("?").to_owned())
        .collect();
    versions.reverse();
    versions
}

fn out_text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The lines of a task's log.
async fn task_log(stack: &Stack, job: &str, task: &str) -> Vec<String> {
    let (status, logs) = stack
        .call(
            "GET",
            &format!("/api/v1/jobs/{job}/tasks/{task}/logs"),
            "t",
            None,
        )
        .await;
    assert_eq!(status, 200, "{logs}");
    logs.as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn a_tcp_health_check_passes_on_a_listening_port_and_fails_on_a_closed_one() {
    let stack = Stack::start().await;
    // A port the test listens on (the kernel completes the handshake), and
    // one nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().to_string();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut up = stack.target("up-1", "up", "", None);
    up["health"] = json!({"tcp": open, "retries": 3, "interval": "100ms", "timeout": "2s"});
    let mut down = stack.target("down-1", "down", "", None);
    down["health"] = json!({"tcp": closed, "retries": 3, "interval": "100ms", "timeout": "2s"});
    stack
        .apply(json!({
            "environments": [{"name": "up"}, {"name": "down"}],
            "components": component(),
            "targets": [up, down],
        }))
        .await;
    let d1 = digest('1');
    stack.release("r1", &d1).await;

    // Listening: healthy, deployed, and the log says how it was checked.
    let p = stack
        .promote_to_end("r1", "up", "alice", json!({"type": "all_at_once"}))
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    let job = stack.job(p["job_id"].as_str().unwrap()).await;
    let task = &job["tasks"][0];
    assert_eq!(task["state"], "succeeded", "{job:#}");
    let log = task_log(
        &stack,
        job["id"].as_str().unwrap(),
        task["id"].as_str().unwrap(),
    )
    .await;
    assert!(
        log.iter()
            .any(|l| l == &format!("health check passed (connected to {open})")),
        "{log:#?}"
    );

    // Closed: every probe fails, the task fails as a health failure naming
    // the address, and the job and its promotion fail (down-1 ran nothing
    // before, so there is nothing to roll back to).
    let p = stack
        .promote_to_end("r1", "down", "alice", json!({"type": "all_at_once"}))
        .await;
    assert_eq!(p["state"], "failed", "{p:#}");
    let job = stack.job(p["job_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    let task = &job["tasks"][0];
    assert_eq!(task["state"], "failed", "{job:#}");
    assert_eq!(task["error_type"], "health", "{job:#}");
    let error = task["error"].as_str().unwrap();
    assert!(
        error.starts_with("health check failed 3 time(s)")
            && error.contains(&format!("connect {closed}")),
        "{error}"
    );
    let log = task_log(
        &stack,
        job["id"].as_str().unwrap(),
        task["id"].as_str().unwrap(),
    )
    .await;
    for n in 1..=3 {
        assert!(
            log.iter()
                .any(|l| l.starts_with(&format!("health check {n}/3 failed: connect {closed}"))),
            "{log:#?}"
        );
    }
    // The deploy command did run: it is the check that failed the task.
    assert_eq!(stack.runs("down-1").len(), 1);
    drop(listener);
}

#[tokio::test]
async fn a_tcp_health_failure_rolls_back_to_the_previous_release() {
    let stack = Stack::start().await;
    // The target's "service" is the test's listener: it listens while r1
    // runs, is closed before r2 is promoted (r2's check fails), and listens
    // on the same port again once r2's task has failed, so the rollback to
    // r1 passes its check.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut t = stack.target("svc-1", "prod", "", None);
    t["health"] =
        json!({"tcp": addr.to_string(), "retries": 3, "interval": "100ms", "timeout": "2s"});
    stack
        .apply(
            json!({"environments": [{"name": "prod"}], "components": component(), "targets": [t]}),
        )
        .await;
    let (d1, d2) = (digest('1'), digest('2'));
    stack.release("r1", &d1).await;
    stack.release("r2", &d2).await;
    let p = stack
        .promote_to_end("r1", "prod", "alice", json!({"type": "all_at_once"}))
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");

    drop(listener);
    let p = stack
        .promote("r2", "prod", "alice", json!({"type": "all_at_once"}))
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    // Once r2's task failed its check, r1 comes back: listen again.
    let relisten = wait::until(
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async {
            let (_, p) = stack
                .call("GET", &format!("/api/v1/promotions/{id}"), "t", None)
                .await;
            if let Some(job) = p["job_id"].as_str() {
                let job = stack.job(job).await;
                if job["tasks"][0]["state"] == "failed" {
                    return Ok(std::net::TcpListener::bind(addr).unwrap());
                }
            }
            Err(format!("r2 never failed: {p:#}"))
        },
    )
    .await;
    let p = stack
        .wait_promotion(&id, &["deployed", "failed", "rolled_back"])
        .await;
    assert_eq!(p["state"], "rolled_back", "{p:#}");
    let job = stack.job(p["job_id"].as_str().unwrap()).await;
    assert_eq!(job["tasks"][0]["error_type"], "health", "{job:#}");
    assert!(
        job["tasks"][0]["error"]
            .as_str()
            .unwrap()
            .contains(&format!("connect {addr}")),
        "{job:#}"
    );
    let child = stack.job(job["rollback_job_id"].as_str().unwrap()).await;
    assert_eq!(child["state"], "completed", "{child:#}");
    assert_eq!(child["tasks"][0]["digest"], d1.as_str(), "{child:#}");
    assert_eq!(stack.current("svc-1"), image(&d1));
    drop(relisten);
}

async fn sextant_rollback_redeploys_the_previous_digest_of_a_completed_job(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    stack
        .apply(json!({"environments": [{"name": "dev"}], "components": component(),
            "targets": [stack.target("dev-1", "dev", "", None), stack.target("dev-2", "dev", "", None)]}))
        .await;
    let (d1, d2) = (digest('1'), digest('2'));
    stack.release("r1", &d1).await;
    stack.release("r2", &d2).await;
    for r in ["r1", "r2"] {
        let p = stack
            .promote_to_end(r, "dev", "alice", json!({"type": "all_at_once"}))
            .await;
        assert_eq!(p["state"], "deployed", "{p:#}");
    }
    let (_, jobs) = stack.call("GET", "/api/v1/jobs?limit=1", "t", None).await;
    let job_id = jobs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(jobs[0]["release"], "r2", "{jobs:#}");
    assert_eq!(stack.current("dev-1"), image(&d2));

    let out = stack.cli("ops", &["rollback", &job_id]).await;
    assert!(out.status.success(), "{}", out_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "job {job_id} is rolling_back: its targets go back to what ran before r2 in dev"
        )),
        "{}",
        out_text(&out)
    );
    assert!(
        stdout.contains(&format!("sextant deployments watch {job_id}")),
        "{stdout}"
    );
    let job = stack.wait_job(&job_id, &["rolled_back", "failed"]).await;
    assert_eq!(job["state"], "rolled_back", "{job:#}");
    let rolling_back = job["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["to"] == "rolling_back")
        .unwrap_or_else(|| panic!("no rolling_back event: {job:#}"));
    assert_eq!(rolling_back["actor"], "ops", "{job:#}");
    assert_eq!(rolling_back["from"], "completed", "{job:#}");
    // Asked for, not failed: no failure kind, and the metrics count the
    // rollback as a request (its error reads "rollback requested").
    assert_eq!(job.get("failure"), None, "{job:#}");
    let metrics = reqwest::get(format!("{}/metrics", stack.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"sextant_rollbacks_total{env="dev",reason="request"} 1"#),
        "{metrics}"
    );

    // A rollback job of its own, linked to the original, deploying r1's
    // digest on both targets.
    let child_id = job["rollback_job_id"]
        .as_str()
        .expect("rollback job linked");
    let child = stack.job(child_id).await;
    assert_eq!(child["kind"], "rollback", "{child:#}");
    assert_eq!(child["parent_job_id"], job_id.as_str(), "{child:#}");
    assert_eq!(child["state"], "completed", "{child:#}");
    let tasks = child["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{child:#}");
    for t in tasks {
        assert_eq!(t["kind"], "rollback", "{child:#}");
        assert_eq!(t["digest"], d1.as_str(), "{child:#}");
        assert_eq!(t["state"], "succeeded", "{child:#}");
    }
    for t in ["dev-1", "dev-2"] {
        assert_eq!(stack.current(t), image(&d1), "{t}");
        let runs = stack.runs(t);
        assert_eq!(runs.len(), 3, "r1, r2, r1 again: {runs:?}");
        assert!(runs[2].ends_with(&image(&d1)), "{runs:?}");
    }
    let (_, deployed) = stack
        .call("GET", "/api/v1/deployed?target=dev-1", "t", None)
        .await;
    assert_eq!(deployed[0]["digest"], d1.as_str(), "{deployed:#}");
    // The promotion of the rolled back job says so.
    let (_, p) = stack
        .call(
            "GET",
            &format!(
                "/api/v1/promotions/{}",
                job["promotion_id"].as_str().unwrap()
            ),
            "t",
            None,
        )
        .await;
    assert_eq!(p["state"], "rolled_back", "{p:#}");
    // Once only: the CLI reports the conflict (exit 5).
    let again = stack.cli("ops", &["rollback", &job_id]).await;
    assert_eq!(again.status.code(), Some(5), "{}", out_text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("(conflict)"),
        "{}",
        out_text(&again)
    );
    // A rollback job itself is not rolled back.
    let child_again = stack.cli("ops", &["rollback", child_id]).await;
    assert_eq!(
        child_again.status.code(),
        Some(5),
        "{}",
        out_text(&child_again)
    );
}

#[tokio::test]
async fn the_openapi_document_covers_releases_promotions_approvals_jobs_tasks_and_logs() {
    let stack = Stack::start().await;
    let res = stack
        .http
        .get(format!("{}/api/openapi.json", stack.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let doc: Value = res.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "Sextant orchestrator API");
    let paths = doc["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/api/v1/releases", "post"),
        ("/api/v1/releases", "get"),
        ("/api/v1/releases/{release}", "get"),
        ("/api/v1/releases/{release}/finalize", "post"),
        ("/api/v1/promotions", "post"),
        ("/api/v1/promotions", "get"),
        ("/api/v1/promotions/{id}", "get"),
        ("/api/v1/promotions/{id}/approve", "post"),
        ("/api/v1/promotions/{id}/reject", "post"),
        ("/api/v1/promotions/{id}/cancel", "post"),
        ("/api/v1/promotions/{id}/gates/{gate}", "post"),
        ("/api/v1/jobs", "get"),
        ("/api/v1/jobs/{id}", "get"),
        ("/api/v1/jobs/{id}/tasks/{task}/logs", "get"),
        ("/api/v1/jobs/{id}/rollback", "post"),
        ("/api/v1/apply", "post"),
    ] {
        let op = &paths
            .get(path)
            .unwrap_or_else(|| panic!("no {path} in {:?}", paths.keys()))[method];
        assert!(op.is_object(), "no {method} {path}: {:#}", paths[path]);
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} documents no response"
        );
    }
    // Every documented route answers (none is a 404 "no such route").
    let (status, _) = stack.call("GET", "/api/v1/jobs", "t", None).await;
    assert_eq!(status, 200);
    // The schemas the API returns are in the document.
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for schema in [
        "Release",
        "PromotionDetail",
        "JobDetail",
        "Task",
        "TaskLogLine",
        "Approval",
    ] {
        assert!(
            schemas.contains_key(schema),
            "no schema {schema}: {:?}",
            schemas.keys()
        );
    }
    // The logs route says what it returns.
    let logs = &paths["/api/v1/jobs/{id}/tasks/{task}/logs"]["get"]["responses"]["200"];
    assert!(logs.to_string().contains("TaskLogLine"), "{logs:#}");
}

#[tokio::test]
async fn the_rollback_policy_of_an_environment_is_automatic_or_manual() {
    let stack = Stack::start().await;
    let d2 = digest('2');
    // Each target's health check fails while it runs r2.
    let broken = |t: &str| format!("! grep -q {} {}/current", &d2[7..], stack.dir(t).display());
    let doc = json!({
        "environments": [
            {"name": "auto"},
            {"name": "hands-on", "rollback": "manual"},
        ],
        "components": component(),
        "targets": [
            stack.target("a-1", "auto", "", Some(&broken("a-1"))),
            stack.target("m-1", "hands-on", "", Some(&broken("m-1"))),
        ],
    });
    // Applied as a file through `sextant apply -f` (JSON is YAML).
    let file = stack.root.path().join("sextant.yaml");
    std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let out = stack
        .cli("ops", &["apply", "-f", file.to_str().unwrap()])
        .await;
    assert!(out.status.success(), "{}", out_text(&out));
    let (_, envs) = stack.call("GET", "/api/v1/environments", "t", None).await;
    let policy = |name: &str| {
        envs.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["rollback"].clone())
            .unwrap()
    };
    assert_eq!(policy("hands-on"), "manual", "{envs:#}");
    assert_eq!(
        policy("auto"),
        Value::Null,
        "the default is not written: {envs:#}"
    );
    // Applying again changes nothing; an unknown policy is refused.
    let again = stack
        .cli("ops", &["apply", "-f", file.to_str().unwrap()])
        .await;
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("0 created, 0 updated, 5 unchanged"),
        "{}",
        out_text(&again)
    );
    let bad = stack
        .call(
            "POST",
            "/api/v1/apply",
            "ops",
            Some(json!({"environments": [{"name": "qa", "rollback": "sometimes"}]})),
        )
        .await;
    assert_eq!(bad.0, 400, "{}", bad.1);
    assert!(
        bad.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sometimes"),
        "{}",
        bad.1
    );

    let d1 = digest('1');
    stack.release("r1", &d1).await;
    stack.release("r2", &d2).await;
    for env in ["auto", "hands-on"] {
        let p = stack
            .promote_to_end("r1", env, "alice", json!({"type": "all_at_once"}))
            .await;
        assert_eq!(p["state"], "deployed", "{p:#}");
    }

    // automatic (the default): r2 fails its check and is rolled back.
    let p = stack
        .promote_to_end("r2", "auto", "alice", json!({"type": "all_at_once"}))
        .await;
    assert_eq!(p["state"], "rolled_back", "{p:#}");
    let job = stack.job(p["job_id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "rolled_back", "{job:#}");
    assert!(job["rollback_job_id"].is_string(), "{job:#}");
    assert_eq!(stack.current("a-1"), image(&d1));

    // manual: the job and the promotion stay failed, r2 stays on the
    // target, and no rollback job is made.
    let p = stack
        .promote_to_end("r2", "hands-on", "alice", json!({"type": "all_at_once"}))
        .await;
    assert_eq!(p["state"], "failed", "{p:#}");
    let job_id = p["job_id"].as_str().unwrap().to_owned();
    let job = stack.job(&job_id).await;
    assert_eq!(job["state"], "failed", "{job:#}");
    assert_eq!(job["tasks"][0]["error_type"], "health", "{job:#}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("m-1")
            && error.contains("rollback policy of hands-on is manual")
            && error.contains(&format!("sextant rollback {job_id}")),
        "{error}"
    );
    let last = p["events"].as_array().unwrap().last().unwrap();
    assert!(
        last["detail"]
            .as_str()
            .unwrap()
            .contains("rollback policy of hands-on is manual"),
        "{p:#}"
    );
    // Real time: an automatic rollback (wall clock, database) would have begun within it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let job = stack.job(&job_id).await;
    assert_eq!(job["state"], "failed", "still failed: {job:#}");
    assert_eq!(job["rollback_job_id"], Value::Null, "{job:#}");
    let (_, jobs) = stack.call("GET", "/api/v1/jobs", "t", None).await;
    assert!(
        !jobs
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["parent_job_id"] == job_id.as_str()),
        "{jobs:#}"
    );
    assert_eq!(stack.current("m-1"), image(&d2), "left as it failed");
    assert_eq!(stack.runs("m-1").len(), 2);

    // The operator rolls it back by hand: back to r1.
    let out = stack.cli("ops", &["rollback", &job_id]).await;
    assert!(out.status.success(), "{}", out_text(&out));
    let job = stack.wait_job(&job_id, &["rolled_back"]).await;
    let child = stack.job(job["rollback_job_id"].as_str().unwrap()).await;
    assert_eq!(child["parent_job_id"], job_id.as_str(), "{child:#}");
    assert_eq!(child["state"], "completed", "{child:#}");
    assert_eq!(child["tasks"][0]["digest"], d1.as_str(), "{child:#}");
    assert_eq!(stack.current("m-1"), image(&d1));
    let (_, p) = stack
        .call(
            "GET",
            &format!("/api/v1/promotions/{}", p["id"].as_str().unwrap()),
            "t",
            None,
        )
        .await;
    assert_eq!(p["state"], "rolled_back", "{p:#}");
}

/// The most deploy commands that ran at the same time, from the
/// `start NANOS` / `end NANOS` lines they appended to `timeline`.
fn most_at_once(timeline: &Path) -> usize {
    let text = std::fs::read_to_string(timeline).unwrap_or_default();
    let mut moments: Vec<(u128, i32)> = text
        .lines()
        .filter_map(|l| {
            let (what, at) = l.split_once(' ')?;
            let at: u128 = at.trim().parse().ok()?;
            // An end before a start at the same instant.
            Some((at, if what == "start" { 1 } else { -1 }))
        })
        .collect();
    moments.sort();
    let (mut now, mut most) = (0, 0);
    for (_, delta) in moments {
        now += delta;
        most = most.max(now);
    }
    most as usize
}

#[tokio::test]
async fn all_at_once_runs_at_most_max_parallel_tasks_at_a_time() {
    let stack = Stack::start().await;
    let timeline = stack.root.path().join("timeline");
    let t = timeline.display();
    let record =
        format!("echo start $(date +%s%N) >> {t}; sleep 1.5; echo end $(date +%s%N) >> {t};");
    let targets: Vec<Value> = (1..=4)
        .map(|i| stack.target(&format!("p-{i}"), "prod", &record, None))
        .collect();
    stack
        .apply(json!({"environments": [{"name": "prod"}], "components": component(), "targets": targets}))
        .await;
    let (d1, d2) = (digest('1'), digest('2'));
    stack.release("r1", &d1).await;
    stack.release("r2", &d2).await;

    // max_parallel 2: four tasks, never more than two at once (and two do
    // run together).
    let p = stack
        .promote_to_end(
            "r1",
            "prod",
            "alice",
            json!({"type": "all_at_once", "max_parallel": 2}),
        )
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    let text = std::fs::read_to_string(&timeline).unwrap();
    assert_eq!(text.lines().count(), 8, "{text}");
    assert_eq!(most_at_once(&timeline), 2, "{text}");

    // No limit (0): all four start together.
    std::fs::remove_file(&timeline).unwrap();
    let p = stack
        .promote_to_end(
            "r2",
            "prod",
            "alice",
            json!({"type": "all_at_once", "max_parallel": 0}),
        )
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    let text = std::fs::read_to_string(&timeline).unwrap();
    assert!(most_at_once(&timeline) > 2, "{text}");
    for i in 1..=4 {
        assert_eq!(stack.current(&format!("p-{i}")), image(&d2));
    }
}

#[tokio::test]
async fn dev_stage_prod_with_approvals_on_sqlite() {
    dev_stage_prod_with_approvals(Backend::Sqlite).await;
}

#[tokio::test]
async fn dev_stage_prod_with_approvals_on_postgres() {
    dev_stage_prod_with_approvals(Backend::Postgres).await;
}

#[tokio::test]
async fn sextant_rollback_redeploys_the_previous_digest_of_a_completed_job_on_sqlite() {
    sextant_rollback_redeploys_the_previous_digest_of_a_completed_job(Backend::Sqlite).await;
}

#[tokio::test]
async fn sextant_rollback_redeploys_the_previous_digest_of_a_completed_job_on_postgres() {
    sextant_rollback_redeploys_the_previous_digest_of_a_completed_job(Backend::Postgres).await;
}
