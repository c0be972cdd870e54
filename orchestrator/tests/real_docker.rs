//! The orchestrator against the real Docker engine and a real registry
//! (Debian's docker-registry on 127.0.0.1, from the test kit, holding
//! FROM-scratch busybox images): a release made from a tag is pinned to
//! the digest the registry has then, and stays pinned when the tag moves;
//! the `docker` deploy template, run over SSH (Debian's sshd), pulls by
//! digest, replaces the container, passes its http health check, and a
//! release whose health check fails rolls back to the running one. The
//! stack is in `common/`.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::Stack;
use serde_json::{Value, json};
use sextant_e2e::docker::{self as kit, DockerScope, test_images};
use sextant_e2e::wait;

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Points `repository:tag` in the registry at the image `pinned`.
fn push_tag(pinned: &str, repository: &str, tag: &str) {
    let tagged = format!("{repository}:{tag}");
    docker(&["pull", "-q", pinned]);
    docker(&["tag", pinned, &tagged]);
    docker(&["push", "-q", &tagged]);
    // Best effort: another test may run a container of the same image.
    let _ = Command::new("docker")
        .args(["rmi", &tagged, pinned])
        .output();
}

fn repository(pinned: &str) -> &str {
    pinned.split('@').next().unwrap()
}

async fn create_release(stack: &Stack, name: &str, image: &str) -> (u16, Value) {
    stack
        .call(
            "POST",
            "/api/v1/releases",
            "ci",
            Some(json!({"name": name, "components": [{"component": "web", "image": image}]})),
        )
        .await
}

#[tokio::test]
async fn a_tag_is_resolved_once_against_the_registry() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let repo = repository(&images.v1);
    let tag = format!("moving-{}", scope.id());
    push_tag(&images.v1, repo, &tag);

    let stack = Stack::start_trusting(&images.registry).await;
    stack
        .apply(json!({
            "environments": [{"name": "dev"}],
            "components": [{"name": "web", "image": repo, "application": "shop"}],
        }))
        .await;
    let (status, r1) = create_release(&stack, "by-tag-1", &format!("{repo}:{tag}")).await;
    assert_eq!(status, 201, "{r1}");
    let text = r1.to_string();
    assert!(text.contains(&images.v1), "pinned to v1's digest: {r1:#}");

    // The tag moves to v2: the release keeps v1; a new release gets v2.
    push_tag(&images.v2, repo, &tag);
    let (_, again) = stack
        .call("GET", "/api/v1/releases/by-tag-1", "ci", None)
        .await;
    assert!(again.to_string().contains(&images.v1), "{again:#}");
    assert!(
        !again.to_string().contains(kit::digest_of(&images.v2)),
        "{again:#}"
    );
    let (status, r2) = create_release(&stack, "by-tag-2", &format!("{repo}:{tag}")).await;
    assert_eq!(status, 201, "{r2}");
    assert!(r2.to_string().contains(&images.v2), "{r2:#}");

    // A tag the registry does not have is a clear error naming it.
    let (status, err) = create_release(&stack, "by-tag-3", &format!("{repo}:no-such-tag")).await;
    assert!((400..500).contains(&status), "{status} {err}");
    assert!(err.to_string().contains("no-such-tag"), "{err}");
}

#[tokio::test]
async fn the_docker_template_deploys_by_digest_and_rolls_back_a_failed_health_check() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let stack = Stack::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let container = scope.name("web");
    let label = scope.label_filter();
    let mut target = json!({
        "name": "docker-1",
        "environment": "prod",
        "ssh": stack.sshd().ssh_json(),
        "deploy": {
            "template": "docker",
            "name": container,
            "args": ["-p", format!("127.0.0.1:{port}:8080"), "--label", label],
        },
        "health": {
            "http": format!("http://127.0.0.1:{port}/health"),
            "retries": 20, "interval": "500ms", "timeout": "5s",
        },
    });
    target["vars"] = json!({});
    stack
        .apply(json!({
            "environments": [{"name": "prod"}],
            "components": [{"name": "web", "image": repository(&images.v1), "application": "shop"}],
            "targets": [target],
        }))
        .await;
    for (name, image) in [
        ("r1", &images.v1),
        ("r2", &images.v2),
        ("r3", &images.broken),
    ] {
        let (status, body) = create_release(&stack, name, image).await;
        assert_eq!(status, 201, "{body}");
    }
    let page = async || {
        kit::get_page(&container, "/")
            .await
            .map(|(_, body)| body.trim().to_owned())
    };

    let p = stack
        .promote_to_end("r1", "prod", "alice", json!({"type": "all_at_once"}))
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    assert_eq!(
        kit::image_of(&container).as_deref(),
        Some(images.v1.as_str())
    );
    assert_eq!(page().await.as_deref(), Some("sextant test web v1"));
    // Labelled as an agent labels its containers, the job included.
    let labels = kit::labels(&container);
    assert_eq!(
        labels.get("sextant.job"),
        p["job_id"].as_str().map(str::to_owned).as_ref()
    );
    assert_eq!(
        labels.get("sextant.release").map(String::as_str),
        Some("r1")
    );
    assert_eq!(
        labels.get("sextant.workload").map(String::as_str),
        Some("web")
    );
    assert_eq!(
        labels.get("sextant.application").map(String::as_str),
        Some("shop")
    );

    let p = stack
        .promote_to_end("r2", "prod", "alice", json!({"type": "all_at_once"}))
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    assert_eq!(
        kit::image_of(&container).as_deref(),
        Some(images.v2.as_str())
    );
    assert_eq!(page().await.as_deref(), Some("sextant test web v2"));

    // r3's image has no /health: the check fails and the job rolls back
    // to r2, which runs again.
    let p = stack
        .promote_to_end("r3", "prod", "alice", json!({"type": "all_at_once"}))
        .await;
    assert_eq!(p["state"], "rolled_back", "{p:#}");
    let job = stack.job(p["job_id"].as_str().unwrap()).await;
    let why = job["error"].as_str().unwrap_or("").to_owned();
    assert!(why.contains("health"), "{job:#}");
    assert_eq!(
        kit::image_of(&container).as_deref(),
        Some(images.v2.as_str())
    );
    assert!(kit::is_running(&container));
    // The rollback's container names r2 by name, and the rollback job.
    let labels = kit::labels(&container);
    assert_eq!(
        labels.get("sextant.release").map(String::as_str),
        Some("r2")
    );
    assert_eq!(
        labels.get("sextant.job"),
        job["rollback_job_id"].as_str().map(str::to_owned).as_ref(),
        "{job:#}"
    );
    wait::until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            if page().await.as_deref() == Some("sextant test web v2") {
                return Ok(());
            }
            Err("v2 does not serve again")
        },
    )
    .await;
    scope.cleanup();
}

/// Removes a compose project's containers and network.
fn compose_down(project: &str) {
    let filter = format!("label=com.docker.compose.project={project}");
    let ids = docker(&["ps", "-aq", "--filter", &filter]);
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids.split_whitespace());
        let _ = Command::new("docker").args(&args).output();
    }
    let _ = Command::new("docker")
        .args(["network", "rm", &format!("{project}_default")])
        .output();
}

#[tokio::test]
async fn the_compose_template_applies_the_compose_lock_over_ssh() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let project = format!("sx{}", scope.id());
    struct Down(String);
    impl Drop for Down {
        fn drop(&mut self) {
            compose_down(&self.0);
        }
    }
    let _down = Down(project.clone());
    let stack = Stack::start().await;
    let running = format!(
        "docker ps -q --filter label=com.docker.compose.project={project} \
         --filter status=running | grep -q ."
    );
    stack
        .apply(json!({
            "environments": [{"name": "prod"}],
            "components": [{"name": "web", "image": repository(&images.v1), "application": "shop"}],
            "targets": [{
                "name": "compose-1",
                "environment": "prod",
                "ssh": stack.sshd().ssh_json(),
                "deploy": {"template": "compose", "project": project},
                "health": {"command": running, "retries": 20, "interval": "500ms", "timeout": "5s"},
            }],
        }))
        .await;
    for (name, image) in [("r1", &images.v1), ("r2", &images.v2)] {
        let (status, body) = create_release(&stack, name, image).await;
        assert_eq!(status, 201, "{body}");
    }
    let service = |release: &str| -> (String, Value) {
        let filter = format!("label=com.docker.compose.project={project}");
        let id = docker(&["ps", "-q", "--filter", &filter]);
        assert_eq!(id.lines().count(), 1, "one service container: {id}");
        let labels = kit::labels(&id);
        assert_eq!(
            labels.get("sextant.release").map(String::as_str),
            Some(release)
        );
        assert!(labels.contains_key("sextant.job"), "{labels:?}");
        (
            kit::image_of(&id).unwrap(),
            json!(labels.get("sextant.revision")),
        )
    };
    let p = stack
        .promote_to_end("r1", "prod", "alice", json!({"type": "all_at_once"}))
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    let (image, revision) = service("r1");
    assert_eq!(image, images.v1);
    assert_eq!(revision, json!(kit::digest_of(&images.v1)));

    let p = stack
        .promote_to_end("r2", "prod", "alice", json!({"type": "all_at_once"}))
        .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    let (image, _) = service("r2");
    assert_eq!(image, images.v2);
}
