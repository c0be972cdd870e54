//! `sextant apply -f` and `sextant release create` by tag, run as the real
//! binary against a real `sextant orchestrator --insecure-registry`
//! process, resolving against the test kit's docker-registry on 127.0.0.1
//! (FROM-scratch busybox images pushed by Docker): the release is pinned
//! to the digest Docker reports, stays pinned when the tag moves, an
//! unknown tag is a clear error naming it, and a registry that is not
//! listed is asked over HTTPS and refused clearly.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Output};

use common::process::Process;
use serde_json::Value;
use sextant_e2e::docker::{self as kit, DockerScope, test_images};

fn docker(args: &[&str]) {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Points `repository:tag` in the registry at the image `pinned`.
fn push_tag(pinned: &str, repository: &str, tag: &str) {
    let tagged = format!("{repository}:{tag}");
    docker(&["pull", "-q", pinned]);
    docker(&["tag", pinned, &tagged]);
    docker(&["push", "-q", &tagged]);
    // Only the tag: the pinned image may be in use by another test.
    let _ = Command::new("docker").args(["rmi", &tagged]).output();
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// A fresh orchestrator process (SQLite in its own data directory) with
/// `web` (image `repository`) applied through `sextant apply -f`.
fn orchestrator(data: &tempfile::TempDir, repository: &str, extra: &[&str]) -> Process {
    let db = format!("sqlite://{}", data.path().join("orchestrator.db").display());
    let process = Process::start(data.path(), &db, "replica-a", extra);
    let file = data.path().join("sextant.yaml");
    std::fs::write(
        &file,
        format!(
            "environments:\n  - name: dev\ncomponents:\n  - name: web\n    image: {repository}\n    application: shop\n"
        ),
    )
    .unwrap();
    let out = process.sextant("ops", &["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 created"), "{stdout}");
    process
}

#[tokio::test]
async fn release_create_pins_a_tag_through_the_cli() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let repo = images.v1.split('@').next().unwrap();
    let tag = format!("cli-{}", scope.id());
    push_tag(&images.v1, repo, &tag);

    let data = tempfile::tempdir().unwrap();
    let orch = orchestrator(&data, repo, &["--insecure-registry", &images.registry]);
    let create = |name: &str, image: &str| {
        orch.sextant(
            "ci",
            &[
                "release",
                "create",
                name,
                "--component",
                &format!("web={image}"),
                "-o",
                "json",
            ],
        )
    };

    let r1 = json(&create("r1", &format!("{repo}:{tag}")));
    let c = &r1["components"][0];
    assert_eq!(c["image"], images.v1.as_str(), "{r1:#}");
    assert_eq!(c["digest"], kit::digest_of(&images.v1), "{r1:#}");
    assert_eq!(c["tag"], tag.as_str(), "{r1:#}");
    assert_eq!(r1["status"], "finalized", "{r1:#}");

    // The tag moves to v2: r1 keeps v1; a new release (`:TAG`, the
    // component's repository implied) gets v2.
    push_tag(&images.v2, repo, &tag);
    let shown = json(&orch.sextant("ci", &["release", "show", "r1", "-o", "json"]));
    assert_eq!(shown["components"], r1["components"], "{shown:#}");
    let r2 = json(&create("r2", &format!(":{tag}")));
    assert_eq!(r2["components"][0]["image"], images.v2.as_str(), "{r2:#}");

    // An unknown tag: exit 2 (invalid), the message names the tag, and no
    // release is made.
    let out = create("r3", &format!("{repo}:no-such-tag"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-tag"), "{}", text(&out));
    let out = orch.sextant("ci", &["release", "show", "r3"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
}

#[tokio::test]
async fn a_registry_not_listed_as_insecure_is_asked_over_https() {
    let images = test_images().await;
    let repo = images.v1.split('@').next().unwrap();
    let data = tempfile::tempdir().unwrap();
    let orch = orchestrator(&data, repo, &[]);
    let out = orch.sextant(
        "ci",
        &["release", "create", "r1", "--component", "web=:latest"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("https://{}/v2/", images.registry)),
        "{}",
        text(&out)
    );
    assert!(stderr.contains("--insecure-registry"), "{}", text(&out));
}
