//! A real `sextant orchestrator` process is SIGKILLed while it verifies a
//! `docker` template deploy (over Debian's sshd, against the real engine,
//! the image pulled by digest from the test kit's registry), then started
//! again on the same database: the new process takes the task over in
//! `verifying` and only checks health again, so the deploy command does not
//! run twice: the container is created once (same id, started once), passes
//! its health check and the promotion ends `deployed`. (orchestrator/tests/
//! kill.rs kills during the command itself, which the executor follows.)

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::process::Process;
use serde_json::{Value, json};
use sextant_e2e::docker::{self as kit, DockerScope, test_images};
use sextant_e2e::sshd::Sshd;
use sextant_e2e::wait;

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

/// `(container id, State.StartedAt)`.
fn created(container: &str) -> Option<(String, String)> {
    let i = kit::inspect(container)?;
    Some((
        i["Id"].as_str()?.to_owned(),
        i["State"]["StartedAt"].as_str()?.to_owned(),
    ))
}

#[tokio::test]
async fn sigkill_while_verifying_a_docker_deploy_does_not_replace_the_container() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let sshd = Sshd::start();
    let data = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", data.path().join("orchestrator.db").display());
    let mut first = Process::start(data.path(), &db, "replica-a", &[]);

    // The health check passes only once `ready` exists and the container
    // serves /health, so the task is held in `verifying` until the test
    // says so: no timing guess decides where the kill lands.
    let ready = data.path().join("ready");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let container = scope.name("web");
    let doc = json!({
        "environments": [{"name": "prod"}],
        "components": [{"name": "web", "image": images.v1.split('@').next().unwrap(), "application": "shop"}],
        "targets": [{
            "name": "docker-1",
            "environment": "prod",
            "ssh": sshd.ssh_json(),
            "deploy": {
                "template": "docker",
                "name": container,
                "args": ["-p", format!("127.0.0.1:{port}:8080"), "--label", scope.label_filter()],
            },
            "health": {
                "command": format!(
                    "test -e {} && busybox wget -q -O /dev/null http://127.0.0.1:{port}/health",
                    ready.display()
                ),
                "retries": 1000, "interval": "200ms", "timeout": "5s",
            },
        }],
    });
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/apply", first.base))
        .body(doc.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let (status, body) = call(
        &first.base,
        "POST",
        "/api/v1/releases",
        Some(json!({"name": "r1", "components": [{"component": "web", "image": images.v1}]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, p) = call(
        &first.base,
        "POST",
        "/api/v1/promotions",
        Some(json!({"release": "r1", "environment": "prod", "strategy": {"type": "all_at_once"}})),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_owned();
    let job_id = || async {
        let (_, p) = call(
            &first.base,
            "GET",
            &format!("/api/v1/promotions/{id}"),
            None,
        )
        .await;
        p["job_id"].as_str().map(str::to_owned)
    };

    // Wait for the task to be verifying: the command has run.
    let job = wait::until(
        Duration::from_secs(90),
        Duration::from_millis(100),
        || async {
            if let Some(job) = job_id().await {
                let (_, j) = call(&first.base, "GET", &format!("/api/v1/jobs/{job}"), None).await;
                if j["tasks"][0]["state"] == "verifying" {
                    return Ok(job);
                }
            }
            Err("the task never verified")
        },
    )
    .await;
    let before = created(&container).expect("the container exists");
    first.kill9();

    let second = Process::start(data.path(), &db, "replica-b", &[]);
    // Let the new process take the job over before the check can pass:
    // its lease (2 s) must have run out and the task been re-executed.
    wait::until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let (_, j) = call(&second.base, "GET", &format!("/api/v1/jobs/{job}"), None).await;
            if j["lease_owner"] == "replica-b" && j["tasks"][0]["state"] == "verifying" {
                return Ok(());
            }
            Err(format!("not taken over: {j:#}"))
        },
    )
    .await;
    std::fs::write(&ready, "").unwrap();

    let p = wait::until(
        Duration::from_secs(90),
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
    let (_, j) = call(&second.base, "GET", &format!("/api/v1/jobs/{job}"), None).await;
    assert_eq!(j["state"], "completed", "{j:#}");
    assert_eq!(j["tasks"][0]["attempts"], 1, "{j:#}");
    assert_eq!(
        created(&container),
        Some(before),
        "the container was created and started once"
    );
    assert_eq!(
        kit::image_of(&container).as_deref(),
        Some(images.v1.as_str())
    );
    assert_eq!(
        kit::get_page(&container, "/")
            .await
            .map(|(_, b)| b.trim().to_owned())
            .as_deref(),
        Some("sextant test web v1")
    );
}
