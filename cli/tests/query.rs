//! The read commands (`status`, `compare`, `drift`, `history`, `hosts`,
//! `rollout`) against a real `sextant up`, fed with `sextant report`, on
//! SQLite and PostgreSQL.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use sextant_e2e::{Backend, Hub};

const BIN: &str = env!("CARGO_BIN_EXE_sextant");
const R1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const R2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const R3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

fn sextant(hub: &Hub) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("SEXTANT_HUB_URL", format!("http://{}", hub.api))
        .env("SEXTANT_OTLP_ENDPOINT", format!("http://{}", hub.http))
        .env_remove("SEXTANT_TOKEN")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::null());
    cmd
}

async fn run(hub: &Hub, args: &[&str]) -> Output {
    let mut cmd = sextant(hub);
    cmd.args(args);
    tokio::task::spawn_blocking(move || cmd.output().expect("run sextant"))
        .await
        .expect("join")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn ok(hub: &Hub, args: &[&str]) -> String {
    let out = run(hub, args).await;
    assert!(
        out.status.success(),
        "sextant {args:?} failed ({}): {}",
        out.status,
        stderr(&out)
    );
    stdout(&out)
}

async fn json(hub: &Hub, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let text = ok(hub, &all).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {text}"))
}

async fn desired(hub: &Hub, workload: &str, env: &str, version: &str, revision: &str) {
    ok(
        hub,
        &[
            "report",
            "desired",
            "--application",
            "shop",
            "--workload",
            workload,
            "--environment",
            env,
            "--target",
            "eu",
            "--version",
            version,
            "--revision",
            revision,
        ],
    )
    .await;
}

async fn observed(
    hub: &Hub,
    host: &str,
    workload: &str,
    env: &str,
    revision: &str,
    status: &str,
    message: Option<&str>,
) {
    let mut args = vec![
        "report",
        "observed",
        "--host",
        host,
        "--application",
        "shop",
        "--workload",
        workload,
        "--environment",
        env,
        "--target",
        "eu",
        "--revision",
        revision,
        "--status",
        status,
    ];
    if let Some(m) = message {
        args.extend(["--message", m]);
    }
    ok(hub, &args).await;
}

/// stage runs checkout 1.2 on s1 and failed on s2; prod runs 1.1 on p1.
async fn seeded(backend: Backend) -> Hub {
    let hub = Hub::start(backend, "").await;
    hub.wait_ready().await;
    desired(&hub, "checkout", "stage", "1.2", R2).await;
    desired(&hub, "checkout", "prod", "1.1", R1).await;
    observed(&hub, "s1", "checkout", "stage", R2, "succeeded", None).await;
    observed(
        &hub,
        "s2",
        "checkout",
        "stage",
        R2,
        "failed",
        Some("image pull backoff"),
    )
    .await;
    observed(&hub, "p1", "checkout", "prod", R1, "succeeded", None).await;
    hub
}

async fn read_commands_show_the_estate(backend: Backend) {
    let hub = seeded(backend).await;

    let status = json(&hub, &["status", "--env", "stage"]).await;
    assert_eq!(status.as_array().map(Vec::len), Some(1), "{status}");
    assert_eq!(
        (&status[0]["in_sync_hosts"], &status[0]["total_hosts"]),
        (&1.into(), &2.into())
    );
    let table = ok(&hub, &["status"]).await;
    for needle in [
        "ENVIRONMENT",
        "stage",
        "prod",
        "1.2",
        "1/2",
        "1.1 succeeded ×1",
    ] {
        assert!(table.contains(needle), "{needle} not in\n{table}");
    }

    let compare = json(&hub, &["compare", "stage", "prod"]).await;
    assert_eq!(compare["workloads"][0]["differs"], true, "{compare}");
    let table = ok(&hub, &["compare", "stage", "prod"]).await;
    assert!(
        table.contains("desired 1.2") && table.contains("desired 1.1") && table.contains("yes"),
        "{table}"
    );
    let out = run(&hub, &["compare", "stage"]).await;
    assert!(!out.status.success(), "one environment is not a comparison");

    let drift = json(&hub, &["drift"]).await;
    assert_eq!(drift.as_array().map(Vec::len), Some(1), "{drift}");
    assert_eq!(
        (&drift[0]["host"], &drift[0]["drift"][0]),
        (&"s2".into(), &"failed".into())
    );
    let table = ok(&hub, &["drift", "--env", "prod"]).await;
    assert!(table.contains("No drift"), "{table}");

    let history = json(
        &hub,
        &[
            "history",
            "--workload",
            "checkout",
            "--env",
            "stage",
            "--since",
            "1h",
        ],
    )
    .await;
    let kinds: Vec<&str> = history
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(kinds, ["observed", "observed", "desired"]);
    let table = ok(&hub, &["history", "--workload", "checkout"]).await;
    assert!(
        table.contains("promoted") && table.contains("1 ok / 0 in progress / 1 failed"),
        "{table}"
    );

    let hosts = json(&hub, &["hosts"]).await;
    let names: Vec<&str> = hosts
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| h["host"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(names, ["p1", "s1", "s2"]);
    assert!(ok(&hub, &["hosts", "--env", "prod"]).await.contains("p1"));
}

async fn rollout_gates_a_pipeline(backend: Backend) {
    let hub = seeded(backend).await;

    // A failed host fails the gate and is named, with its message.
    let out = run(
        &hub,
        &["rollout", "--workload", "checkout", "--env", "stage"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("failed on s2 (eu): image pull backoff"),
        "{}",
        stderr(&out)
    );

    // Done.
    let out = run(
        &hub,
        &[
            "rollout",
            "--workload",
            "checkout",
            "--env",
            "prod",
            "--version",
            "1.1",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("done: 1 hosts succeeded"),
        "{}",
        stdout(&out)
    );

    // Waiting for a version that never comes times out.
    let out = run(
        &hub,
        &[
            "rollout",
            "--workload",
            "checkout",
            "--env",
            "prod",
            "--version",
            "2.0",
            "--wait",
            "--timeout",
            "1s",
            "--interval",
            "200ms",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("timed out") && stderr(&out).contains("not 2.0"),
        "{}",
        stderr(&out)
    );

    // Not done yet, without --wait.
    desired(&hub, "cart", "prod", "3.0", R3).await;
    observed(&hub, "p1", "cart", "prod", R3, "in_progress", None).await;
    let out = run(&hub, &["rollout", "--workload", "cart", "--env", "prod"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("0/1 hosts succeeded"),
        "{}",
        stderr(&out)
    );

    // --wait returns as soon as the rollout completes.
    let mut cmd = sextant(&hub);
    cmd.args([
        "rollout",
        "--workload",
        "cart",
        "--env",
        "prod",
        "--wait",
        "--timeout",
        "30s",
        "--interval",
        "200ms",
    ]);
    let waiter = tokio::task::spawn_blocking(move || cmd.output().expect("run sextant"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !waiter.is_finished(),
        "the gate must wait while p1 is in progress"
    );
    observed(&hub, "p1", "cart", "prod", R3, "succeeded", None).await;
    let out = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("the gate returns")
        .expect("join");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("rollout of cart in prod to 3.0 is done"),
        "{}",
        stdout(&out)
    );

    // JSON carries the verdict for scripts.
    let mut cmd = sextant(&hub);
    cmd.args([
        "rollout",
        "--workload",
        "checkout",
        "--env",
        "stage",
        "--output",
        "json",
    ]);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run"))
        .await
        .expect("join");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!((out.status.code(), &v["exit_code"]), (Some(1), &1.into()));
    assert_eq!(v["rollout"]["failed"], 1);
}

macro_rules! both {
    ($($name:ident),*) => {
        mod sqlite { $(#[tokio::test] async fn $name() { super::$name(super::Backend::Sqlite).await })* }
        mod postgres { $(#[tokio::test] async fn $name() { super::$name(super::Backend::Postgres).await })* }
    };
}
both!(read_commands_show_the_estate, rollout_gates_a_pipeline);

#[test]
fn an_unreachable_hub_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let out = Command::new(BIN)
        .args(["status", "--hub", &format!("http://127.0.0.1:{port}")])
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach the hub at http://127.0.0.1:") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn completions_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .expect("run");
        assert!(out.status.success());
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("rollout") && script.contains("sextant"),
            "{shell}"
        );
    }
}
