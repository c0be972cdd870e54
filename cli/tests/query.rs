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
    let on_target = json(&hub, &["status", "--env", "stage", "--target", "eu"]).await;
    assert_eq!(on_target, status, "every target is eu");
    let elsewhere = json(&hub, &["status", "--env", "stage", "--target", "us"]).await;
    assert_eq!(elsewhere.as_array().map(Vec::len), Some(0), "{elsewhere}");
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
    // Not on a terminal: no progress bar.
    assert!(
        !stderr(&out).contains("hosts succeeded  "),
        "{}",
        stderr(&out)
    );

    // On a terminal (a pseudo-terminal from util-linux `script`), the
    // same wait draws a progress bar: elapsed time, hosts succeeded out of
    // reporting, and why it is still waiting.
    let mut cmd = sextant(&hub);
    cmd.args(["-qec"])
        .arg(format!(
            "{BIN} rollout --workload checkout --env prod --version 2.0 --wait --timeout 2s --interval 200ms"
        ))
        .arg("/dev/null");
    let mut script = Command::new("script");
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    script.args(cmd.get_args()).stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || script.output().expect("run script"))
        .await
        .expect("join");
    let tty = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{tty}{}", stderr(&out));
    assert!(
        tty.contains("[00:00:0") && tty.contains("1/1 hosts succeeded") && tty.contains("not 2.0"),
        "{tty}"
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
    // Real time: the gate is another process, polling every 200 ms.
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

/// `sextant compare dev stage prod`: checkout is ahead in dev, cart is
/// the same in all three.
async fn compare_takes_three_environments(backend: Backend) {
    let hub = seeded(backend).await;
    desired(&hub, "checkout", "dev", "1.3", R3).await;
    observed(&hub, "d1", "checkout", "dev", R3, "succeeded", None).await;
    for env in ["dev", "stage", "prod"] {
        desired(&hub, "cart", env, "7.0", R1).await;
    }

    let c = json(&hub, &["compare", "dev", "stage", "prod"]).await;
    assert_eq!(
        c["environments"],
        serde_json::json!(["dev", "stage", "prod"])
    );
    let rows = c["workloads"].as_array().expect("workloads");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["workload"].as_str()).collect();
    assert_eq!(names, ["cart", "checkout"], "{c}");
    assert_eq!(rows[0]["differs"], false, "{c}");
    assert_eq!(rows[1]["differs"], true, "{c}");
    for (env, desired, running) in [
        ("dev", "1.3", "1.3"),
        ("stage", "1.2", "1.2"),
        ("prod", "1.1", "1.1"),
    ] {
        let cell = &rows[1]["environments"][env];
        assert_eq!(
            (&cell["desired_versions"], &cell["deployed_versions"]),
            (&serde_json::json!([desired]), &serde_json::json!([running])),
            "{env}: {cell}"
        );
        assert_eq!(rows[0]["environments"][env]["desired_versions"][0], "7.0");
    }

    let table = ok(&hub, &["compare", "dev", "stage", "prod"]).await;
    let header = table
        .lines()
        .find(|l| l.contains("APPLICATION"))
        .expect("header");
    let (dev, stage, prod) = (
        header.find("dev").expect("dev"),
        header.find("stage").expect("stage"),
        header.find("prod").expect("prod"),
    );
    assert!(dev < stage && stage < prod, "{header}");
    for needle in [
        "desired 1.3",
        "running 1.3",
        "desired 1.2",
        "desired 1.1",
        "desired 7.0",
    ] {
        assert!(table.contains(needle), "{needle} not in\n{table}");
    }
    let cart = table
        .lines()
        .find(|l| l.contains("cart"))
        .expect("cart row");
    let checkout = table
        .lines()
        .find(|l| l.contains("checkout"))
        .expect("checkout row");
    assert!(cart.contains(" no "), "{cart}");
    assert!(checkout.contains(" yes "), "{checkout}");

    let only = json(&hub, &["compare", "dev", "stage", "prod", "--differences"]).await;
    let names: Vec<&str> = only["workloads"]
        .as_array()
        .expect("workloads")
        .iter()
        .filter_map(|r| r["workload"].as_str())
        .collect();
    assert_eq!(names, ["checkout"]);
}

/// `history`, `drift` and `hosts` narrow by `--target` and
/// `--application`; `history --until` ends the time range.
async fn read_commands_narrow_by_target_application_and_time(backend: Backend) {
    let hub = seeded(backend).await;
    for (application, target, version, revision, host, running) in [
        ("shop", "us", "1.1", R1, "u1", R2),
        ("blog", "eu", "9.0", R3, "b1", R1),
    ] {
        let at = [
            "--application",
            application,
            "--workload",
            "checkout",
            "--environment",
            "prod",
            "--target",
            target,
        ];
        let mut d = vec!["report", "desired"];
        d.extend(at);
        d.extend(["--version", version, "--revision", revision]);
        ok(&hub, &d).await;
        let mut o = vec!["report", "observed", "--host", host];
        o.extend(at);
        o.extend(["--revision", running, "--status", "succeeded"]);
        ok(&hub, &o).await;
    }
    let list = |v: &Value, field: &str| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|e| e[field].as_str().unwrap_or("?").to_owned())
            .collect()
    };

    let all = json(&hub, &["history", "--workload", "checkout"]).await;
    assert_eq!(all.as_array().map(Vec::len), Some(9), "{all}");
    let us = json(
        &hub,
        &["history", "--workload", "checkout", "--target", "us"],
    )
    .await;
    assert_eq!(list(&us, "target"), ["us", "us"], "{us}");
    assert_eq!(list(&us, "kind"), ["observed", "desired"]);
    let blog = json(
        &hub,
        &["history", "--workload", "checkout", "--application", "blog"],
    )
    .await;
    assert_eq!(list(&blog, "application"), ["blog", "blog"], "{blog}");

    // --until is inclusive: up to stage's promotion, nothing observed after.
    let stage = json(
        &hub,
        &["history", "--workload", "checkout", "--env", "stage"],
    )
    .await;
    assert_eq!(list(&stage, "kind"), ["observed", "observed", "desired"]);
    let promoted = stage[2]["at"].as_str().expect("at");
    let until = json(
        &hub,
        &[
            "history",
            "--workload",
            "checkout",
            "--env",
            "stage",
            "--until",
            promoted,
        ],
    )
    .await;
    assert_eq!(list(&until, "kind"), ["desired"], "{until}");
    let observed_at = stage[1]["at"].as_str().expect("at");
    let window = json(
        &hub,
        &[
            "history",
            "--workload",
            "checkout",
            "--env",
            "stage",
            "--since",
            promoted,
            "--until",
            observed_at,
        ],
    )
    .await;
    assert_eq!(list(&window, "kind"), ["observed", "desired"], "{window}");
    assert_eq!(window[0]["host"], "s1");

    assert_eq!(
        list(&json(&hub, &["drift"]).await, "host"),
        ["b1", "s2", "u1"]
    );
    assert_eq!(
        list(&json(&hub, &["drift", "--target", "us"]).await, "host"),
        ["u1"]
    );
    assert_eq!(
        list(
            &json(&hub, &["drift", "--application", "blog"]).await,
            "host"
        ),
        ["b1"]
    );
    assert_eq!(
        list(&json(&hub, &["hosts", "--target", "us"]).await, "host"),
        ["u1"]
    );
    assert_eq!(
        list(
            &json(&hub, &["hosts", "--application", "blog"]).await,
            "host"
        ),
        ["b1"]
    );
    assert_eq!(
        list(&json(&hub, &["hosts", "--target", "eu"]).await, "host"),
        ["b1", "p1", "s1", "s2"]
    );
}

const TOKENS: &str = r#"
[[tokens]]
token = "q-ingest"
tenant = "acme"
scopes = ["ingest"]

[[tokens]]
token = "q-read"
tenant = "acme"
scopes = ["read"]
"#;

/// Runs `sextant ARGS` with `SEXTANT_TOKEN` set to `token`.
async fn run_with_env_token(hub: &Hub, token: &str, args: &[&str]) -> Output {
    let mut cmd = sextant(hub);
    cmd.env("SEXTANT_TOKEN", token).args(args);
    tokio::task::spawn_blocking(move || cmd.output().expect("run sextant"))
        .await
        .expect("join")
}

/// A hub with tokens: the read commands take the read token from `--token`
/// or `SEXTANT_TOKEN`; without one, or with a wrong one, each fails with
/// the hub's reason and exit code 1.
async fn read_commands_send_the_token(backend: Backend) {
    let hub = Hub::start(backend, TOKENS).await;
    hub.wait_ready().await;
    let report = |workload: &'static str, env: &'static str| {
        vec![
            "--application",
            "shop",
            "--workload",
            workload,
            "--environment",
            env,
            "--target",
            "eu",
        ]
    };
    let mut seeds: Vec<Vec<&str>> = Vec::new();
    for (env, version, revision) in [("stage", "1.2", R2), ("prod", "1.1", R1)] {
        let mut a = vec!["report", "desired"];
        a.extend(report("checkout", env));
        a.extend(["--version", version, "--revision", revision]);
        seeds.push(a);
    }
    for (host, env, revision, status) in [
        ("s1", "stage", R2, "succeeded"),
        ("s2", "stage", R2, "failed"),
        ("p1", "prod", R1, "succeeded"),
    ] {
        let mut a = vec!["report", "observed", "--host", host];
        a.extend(report("checkout", env));
        a.extend(["--revision", revision, "--status", status]);
        seeds.push(a);
    }
    for args in &seeds {
        let out = run_with_env_token(&hub, "q-ingest", args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }

    // --token.
    let status = json(&hub, &["status", "--env", "stage", "--token", "q-read"]).await;
    assert_eq!(
        (&status[0]["in_sync_hosts"], &status[0]["total_hosts"]),
        (&1.into(), &2.into()),
        "{status}"
    );
    let drift = json(&hub, &["drift", "--token", "q-read"]).await;
    assert_eq!(drift[0]["host"], "s2", "{drift}");
    let hosts = json(&hub, &["hosts", "--token", "q-read"]).await;
    assert_eq!(hosts.as_array().map(Vec::len), Some(3), "{hosts}");
    let out = run(
        &hub,
        &[
            "rollout",
            "--workload",
            "checkout",
            "--env",
            "prod",
            "--token",
            "q-read",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("done: 1 hosts succeeded"));

    // SEXTANT_TOKEN.
    let out = run_with_env_token(&hub, "q-read", &["compare", "stage", "prod", "-o", "json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let compare: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(compare["workloads"][0]["differs"], true, "{compare}");
    let out = run_with_env_token(
        &hub,
        "q-read",
        &[
            "history",
            "--workload",
            "checkout",
            "--env",
            "prod",
            "-o",
            "json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let history: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");
    let out = run_with_env_token(&hub, "q-read", &["status"]).await;
    assert!(
        out.status.success() && stdout(&out).contains("1.1 succeeded ×1"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    // No token, a wrong one, one without the read scope: the error exit
    // code (1; `rollout` 4, apart from its "a host failed") and the hub's
    // reason, never the token.
    let commands: [&[&str]; 6] = [
        &["status"],
        &["compare", "stage", "prod"],
        &["drift"],
        &["history", "--workload", "checkout"],
        &["hosts"],
        &["rollout", "--workload", "checkout", "--env", "prod"],
    ];
    for command in commands {
        let code = if command[0] == "rollout" { 4 } else { 1 };
        let out = run(&hub, command).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{command:?}: {err}");
        assert!(
            err.contains("401 Unauthorized (unauthenticated): missing bearer token")
                && !err.contains("panicked"),
            "{command:?}: {err}"
        );
        assert!(stdout(&out).is_empty(), "{command:?}: {}", stdout(&out));

        let mut wrong = command.to_vec();
        wrong.extend(["--token", "not-the-token"]);
        let out = run(&hub, &wrong).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{command:?}: {err}");
        assert!(
            err.contains("401 Unauthorized (unauthenticated): unknown bearer token")
                && !err.contains("not-the-token"),
            "{command:?}: {err}"
        );

        let out = run_with_env_token(&hub, "q-ingest", command).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{command:?}: {err}");
        assert!(
            err.contains("403 Forbidden (forbidden): token lacks the `read` scope"),
            "{command:?}: {err}"
        );
    }
}

/// `field` of every element of a JSON array.
fn list_of(v: &Value, field: &str) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|e| e[field].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// `host` reports workload checkout in prod on `target` as reconciler
/// `name` of type `kind` (no reconciler when `None`).
async fn observed_by(
    hub: &Hub,
    host: &str,
    target: &str,
    revision: &str,
    status: &str,
    reconciler: Option<(&str, &str)>,
) {
    let mut args = vec![
        "report",
        "observed",
        "--host",
        host,
        "--application",
        "shop",
        "--workload",
        "checkout",
        "--environment",
        "prod",
        "--target",
        target,
        "--revision",
        revision,
        "--status",
        status,
    ];
    if let Some((name, kind)) = reconciler {
        args.extend(["--reconciler-name", name, "--reconciler-type", kind]);
    }
    ok(hub, &args).await;
}

/// A Flux cluster, an Argo CD cluster, an agent host and a bare report in
/// prod: `drift`, `hosts` and `status` show each row's source and narrow
/// by `--source` and `--reconciler`.
async fn read_commands_show_and_filter_sources(backend: Backend) {
    let hub = Hub::start(backend, "").await;
    hub.wait_ready().await;
    for target in ["cluster-a", "cluster-b", "docker"] {
        ok(
            &hub,
            &[
                "report",
                "desired",
                "--application",
                "shop",
                "--workload",
                "checkout",
                "--environment",
                "prod",
                "--target",
                target,
                "--version",
                "1.2",
                "--revision",
                R2,
            ],
        )
        .await;
    }
    observed_by(
        &hub,
        "cluster-a",
        "cluster-a",
        R1,
        "succeeded",
        Some(("flux-system", "flux")),
    )
    .await;
    observed_by(
        &hub,
        "cluster-b",
        "cluster-b",
        R1,
        "succeeded",
        Some(("argocd-prod", "argocd")),
    )
    .await;
    observed_by(
        &hub,
        "docker-1",
        "docker",
        R2,
        "failed",
        Some(("sextant-agent", "agent")),
    )
    .await;
    observed_by(&hub, "manual-1", "docker", R1, "succeeded", None).await;

    // JSON carries the source; --source narrows, repeated or comma-separated.
    let drift = json(&hub, &["drift"]).await;
    let rows: Vec<(&str, &str)> = drift
        .as_array()
        .expect("rows")
        .iter()
        .map(|d| {
            (
                d["host"].as_str().unwrap_or(""),
                d["source"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("cluster-a", "flux"),
            ("cluster-b", "argocd"),
            ("docker-1", "agent"),
            ("manual-1", "otlp")
        ],
        "{drift:#}"
    );
    assert_eq!(
        list_of(&json(&hub, &["drift", "--source", "flux"]).await, "host"),
        ["cluster-a"]
    );
    assert_eq!(
        list_of(
            &json(&hub, &["drift", "--source", "agent,otlp"]).await,
            "host"
        ),
        ["docker-1", "manual-1"]
    );
    assert_eq!(
        list_of(
            &json(&hub, &["drift", "--source", "flux", "--source", "argocd"]).await,
            "host"
        ),
        ["cluster-a", "cluster-b"]
    );
    assert_eq!(
        list_of(
            &json(&hub, &["drift", "--reconciler", "argocd-prod"]).await,
            "host"
        ),
        ["cluster-b"]
    );
    assert!(list_of(&json(&hub, &["drift", "--source", "kalypso"]).await, "host").is_empty());

    // The table's SOURCE column: the source and the reconciler's name.
    let table = ok(&hub, &["drift", "--source", "argocd"]).await;
    assert!(table.contains("SOURCE"), "{table}");
    assert!(table.contains("argocd argocd-prod"), "{table}");
    assert!(!table.contains("cluster-a"), "{table}");

    // hosts: the sources of each host, and the filter.
    let hosts = json(&hub, &["hosts", "--source", "agent"]).await;
    assert_eq!(list_of(&hosts, "host"), ["docker-1"]);
    assert_eq!(hosts[0]["sources"], serde_json::json!(["agent"]));
    let table = ok(&hub, &["hosts"]).await;
    let line = table
        .lines()
        .find(|l| l.contains("cluster-b"))
        .expect("cluster-b row");
    assert!(
        table.contains("SOURCE") && line.contains("argocd"),
        "{table}"
    );

    // status: one row per target with who reports it.
    let status = json(&hub, &["status", "--env", "prod", "--source", "flux"]).await;
    assert_eq!(list_of(&status, "target"), ["cluster-a"], "{status:#}");
    assert_eq!(status[0]["sources"][0]["source"], "flux");
    assert_eq!(status[0]["sources"][0]["reconciler"], "flux-system");
    let table = ok(&hub, &["status", "--env", "prod"]).await;
    assert!(table.contains("SOURCE"), "{table}");
    for shown in [
        "flux flux-system ×1",
        "argocd argocd-prod ×1",
        "agent sextant-agent ×1",
        "otlp ×1",
    ] {
        assert!(table.contains(shown), "{shown} missing: {table}");
    }

    // An unknown source is refused before the hub is asked.
    let out = run(&hub, &["drift", "--source", "helm"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("flux") && stderr(&out).contains("kalypso"),
        "{}",
        stderr(&out)
    );
}

macro_rules! both {
    ($($name:ident),*) => {
        mod sqlite { $(#[tokio::test] async fn $name() { super::$name(super::Backend::Sqlite).await })* }
        mod postgres { $(#[tokio::test] async fn $name() { super::$name(super::Backend::Postgres).await })* }
    };
}
both!(
    read_commands_show_the_estate,
    rollout_gates_a_pipeline,
    read_commands_send_the_token,
    compare_takes_three_environments,
    read_commands_narrow_by_target_application_and_time,
    read_commands_show_and_filter_sources
);

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
    // The rollout gate says "could not ask" apart from "a host failed" (1).
    let out = Command::new(BIN)
        .args(["rollout", "--workload", "w", "--env", "prod", "--hub"])
        .arg(format!("http://127.0.0.1:{port}"))
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot reach the hub"),
        "{}",
        stderr(&out)
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
