//! A real `sextant orchestrator` process is killed with SIGKILL in the
//! middle of a rolling job over SSH (Debian's sshd on 127.0.0.1, from the
//! test kit), then started again on the same database: the job resumes and
//! ends deployed, and no target's deploy command ran twice. On SQLite and
//! on PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::process::Process;
use serde_json::{Value, json};
use sextant_e2e::sshd::Sshd;
use sextant_e2e::wait;
use sextant_e2e::{Backend, TestDb};

async fn call(base: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{base}{path}");
    let mut req = match method {
        "GET" => client.get(&url),
        _ => client.post(&url),
    }
    .header("x-sextant-actor", "alice");
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("API answers");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn runs(root: &Path, target: &str) -> Vec<String> {
    std::fs::read_to_string(root.join(target).join("runs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn killed_mid_job_resumes_without_running_a_task_twice(backend: Backend) {
    let sshd = Sshd::start();
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let db = TestDb::new(backend).await;
    let mut first = Process::start(data.path(), &db.url, "replica-a", &[]);

    let targets: Vec<Value> = (1..=3)
        .map(|i| {
            let d = root.path().join(format!("k-{i}"));
            json!({
                "name": format!("k-{i}"),
                "environment": "prod",
                "ssh": sshd.ssh_json(),
                "deploy": {"template": "custom", "command": format!(
                    "mkdir -p {d} && echo \"$SEXTANT_TASK_ID $SEXTANT_IMAGE\" >> {d}/runs && sleep 3 && echo \"$SEXTANT_IMAGE\" > {d}/current",
                    d = d.display()
                )},
            })
        })
        .collect();
    let doc = json!({
        "environments": [{"name": "prod"}],
        "components": [{"name": "web", "image": "127.0.0.1:5000/web", "application": "shop"}],
        "targets": targets,
    });
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/apply", first.base))
        .body(doc.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let digest = format!("sha256:{}", "7".repeat(64));
    let image = format!("127.0.0.1:5000/web@{digest}");
    let (status, body) = call(
        &first.base,
        "POST",
        "/api/v1/releases",
        Some(json!({"name": "r1", "components": [{"component": "web", "image": image}]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, p) = call(
        &first.base,
        "POST",
        "/api/v1/promotions",
        Some(json!({"release": "r1", "environment": "prod", "strategy": {"type": "rolling", "batch_size": 1}})),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_owned();

    // k-2's command has started: SIGKILL the orchestrator.
    wait::until(
        Duration::from_secs(90),
        Duration::from_millis(50),
        || async {
            if !runs(root.path(), "k-2").is_empty() {
                return Ok(());
            }
            Err("k-2 never started")
        },
    )
    .await;
    first.kill9();
    assert!(runs(root.path(), "k-3").is_empty(), "k-3 had not started");

    // A new process on the same database takes the job over once the
    // lease has run out, follows k-2's run and deploys k-3.
    let second = Process::start(data.path(), &db.url, "replica-b", &[]);
    let p = wait::until(
        Duration::from_secs(120),
        Duration::from_millis(200),
        || async {
            let (_, p) = call(
                &second.base,
                "GET",
                &format!("/api/v1/promotions/{id}"),
                None,
            )
            .await;
            if ["deployed", "failed", "rolled_back"].contains(&p["state"].as_str().unwrap_or("")) {
                return Ok(p);
            }
            Err(format!("stuck: {p:#}\n{}", sshd.log()))
        },
    )
    .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    for t in ["k-1", "k-2", "k-3"] {
        assert_eq!(
            runs(root.path(), t).len(),
            1,
            "{t} ran once: {:?}",
            runs(root.path(), t)
        );
        assert_eq!(
            std::fs::read_to_string(root.path().join(t).join("current"))
                .unwrap()
                .trim(),
            image
        );
    }
    let (_, job) = call(
        &second.base,
        "GET",
        &format!("/api/v1/jobs/{}", p["job_id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["lease_owner"], Value::Null, "{job:#}");
    // The job was driven twice (once per process); every task ran in its
    // first attempt: k-2's run was followed, not started again.
    assert_eq!(job["attempts"], 2, "{job:#}");
    for t in job["tasks"].as_array().unwrap() {
        assert_eq!(t["attempts"], 1, "{t:#}");
        assert_eq!(t["state"], "succeeded", "{t:#}");
    }
}

#[tokio::test]
async fn sigkill_mid_job_on_sqlite() {
    killed_mid_job_resumes_without_running_a_task_twice(Backend::Sqlite).await;
}

#[tokio::test]
async fn sigkill_mid_job_on_postgres() {
    killed_mid_job_resumes_without_running_a_task_twice(Backend::Postgres).await;
}
