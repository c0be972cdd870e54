//! `sextant report` as a process against a real `sextant up`: events from
//! flags and from Kalypso YAML reach the read API; bad input is refused
//! before sending; a wrong token and an unreachable hub fail clearly. Each
//! hub scenario runs on SQLite and on PostgreSQL.

use std::process::{Output, Stdio};

use serde_json::Value;
use sextant_e2e::{Backend, Hub};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sextant");
const REV_A: &str = "sha256:89f10a86c53a0674f7c21fa7d2dab8208f118c3836ef6a163b071c98cdc99c37";
const REV_B: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

const TOKENS: &str = r#"
[[tokens]]
token = "s3cr3t-ingest"
tenant = "acme"
scopes = ["ingest"]

[[tokens]]
token = "s3cr3t-read"
tenant = "acme"
scopes = ["read"]
"#;

/// Runs `sextant report ARGS` against `endpoint`, with `stdin` piped in.
async fn report_with(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .arg("report")
        .args(args)
        .args(["--otlp-endpoint", endpoint])
        .env_remove("SEXTANT_OTLP_ENDPOINT")
        .env_remove("SEXTANT_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run sextant report");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.expect("write stdin");
    }
    drop(input);
    tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("sextant report finishes")
        .expect("sextant report output")
}

async fn report(hub: &Hub, args: &[&str]) -> Output {
    report_with(&format!("http://{}", hub.http), args, None).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn assert_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "sextant report failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[track_caller]
fn assert_failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "sextant report should have failed:\n{}",
        text(&out.stdout)
    );
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// `GET /api/v1/state?environment=…`, with an optional read token.
async fn state(hub: &Hub, environment: &str, token: Option<&str>) -> Vec<Value> {
    let mut request = reqwest::Client::new().get(format!(
        "http://{}/api/v1/state?environment={environment}",
        hub.api
    ));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("GET /api/v1/state");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("state JSON");
    body.as_array().expect("a list of targets").clone()
}

fn host<'a>(target: &'a Value, name: &str) -> &'a Value {
    target["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|h| h["host"] == name))
        .unwrap_or_else(|| panic!("no host {name} in {target:#}"))
}

const PLACEMENT: [&str; 8] = [
    "--application",
    "shop",
    "--workload",
    "checkout",
    "--environment",
    "stage",
    "--target",
    "eu-west",
];

async fn flags_land_in_the_state(backend: Backend) {
    let hub = Hub::start(backend, "").await;
    hub.wait_ready().await;

    let mut desired = vec!["desired"];
    desired.extend(PLACEMENT);
    desired.extend([
        "--version",
        "1.4.2",
        "--revision",
        REV_A,
        "--build-commit",
        "4f1c2e9b7d0a3c5e8f6b1d2a9c7e0f3b5d8a1c4e",
        "--build-id",
        "1187",
        "--repository",
        "https://git.example.com/shop/checkout",
        "--time",
        "2026-11-20T10:00:00Z",
    ]);
    let out = assert_ok(&report(&hub, &desired).await);
    assert_eq!(out, "sent desired shop/checkout 1.4.2 → stage/eu-west\n");

    let mut web1 = vec!["observed", "--host", "web-1"];
    web1.extend(PLACEMENT);
    web1.extend([
        "--revision",
        REV_A,
        "--status",
        "succeeded",
        "--reconciler-name",
        "flux-system",
        "--reconciler-type",
        "flux",
        "--message",
        "rollout complete",
    ]);
    let out = assert_ok(&report(&hub, &web1).await);
    assert!(
        out.starts_with("sent observed shop/checkout sha256:89f10a86c53a… succeeded on web-1"),
        "{out}"
    );

    let mut web2 = vec!["--output", "json", "observed", "--host", "web-2"];
    web2.extend(PLACEMENT);
    web2.extend(["--revision", REV_B, "--status", "in_progress"]);
    let out = assert_ok(&report(&hub, &web2).await);
    let sent: Value = serde_json::from_str(&out).expect("JSON output");
    assert_eq!(
        (&sent["sent"], &sent["accepted"], &sent["rejected"]),
        (&Value::from(1), &Value::from(1), &Value::from(0)),
        "{sent:#}"
    );
    let event = &sent["events"][0];
    assert_eq!(event["event"], "sextant.deployment.observed");
    assert_eq!(event["resource"]["host.name"], "web-2");
    assert_eq!(event["attributes"]["deployment.status"], "in_progress");
    assert!(event["attributes"].get("host.name").is_none(), "{event:#}");

    let targets = state(&hub, "stage", None).await;
    assert_eq!(targets.len(), 1, "{targets:#?}");
    let target = &targets[0];
    assert_eq!(target["workspace"], "default");
    assert_eq!(target["target"], "eu-west");
    assert_eq!(target["desired"]["version"], "1.4.2");
    assert_eq!(target["desired"]["revision"], REV_A);
    assert_eq!(target["desired"]["at"], "2026-11-20T10:00:00Z");
    let w1 = host(target, "web-1");
    assert_eq!(w1["in_sync"], true, "{w1:#}");
    assert_eq!(w1["version"], "1.4.2");
    assert_eq!(w1["reconciler"], "flux-system");
    assert_eq!(w1["message"], "rollout complete");
    let w2 = host(target, "web-2");
    assert_eq!(w2["in_sync"], false, "{w2:#}");
    assert_eq!(w2["status"], "in_progress");
    assert_eq!(w2["revision"], REV_B);
}

const KALYPSO: &str = r#"
apiVersion: hub.kalypso.io/v1alpha1
kind: DeploymentDescriptor
metadata:
  name: hello-world-functional-test-0-0-1
  creationTimestamp: "2026-11-20T09:00:00Z"
spec:
  workload:
    name: hello-world
    source:
      repo: https://git.example.com/kaizentm/hello-world
      branch: main
      path: .
    application:
      name: greeting-service
      workspace:
        name: kaizentm
  deploymentTarget:
    name: functional-test
    environment: dev
    manifests:
      repo: https://git.example.com/kaizentm/hello-world-gitops
      branch: dev
      path: functional-test
  workloadVersion:
    version: 0.0.1
    build: build-1
    commit: ca9ee9d0ff9ec52b998fdcf64e128c84ddd0e661
    buildTime: "2026-11-19T23:25:05Z"
status:
  gitOpsCommitId: dev@sha1:4f1c2e9b7d0a3c5e8f6b1d2a9c7e0f3b5d8a1c4e
---
apiVersion: hub.kalypso.io/v1alpha1
kind: Reconciler
metadata:
  name: aks-dev-1-hello-world
spec:
  hostName: aks-dev-1
  reconcilerName: hello-world-functional-test
  reconcilerType: flux
  manifestsStorageType: git
  manifestsEndpoint: https://git.example.com/kaizentm/hello-world-gitops/dev/functional-test
  deployment:
    gitOpsCommitId: sha1:4f1c2e9b7d0a3c5e8f6b1d2a9c7e0f3b5d8a1c4e
    status: success
    statusMessage: Applied revision dev@sha1:4f1c2e9b
---
apiVersion: hub.kalypso.io/v1alpha1
kind: Reconciler
metadata:
  name: aks-dev-2-hello-world
spec:
  hostName: aks-dev-2
  reconcilerName: hello-world-functional-test
  reconcilerType: flux
  manifestsEndpoint: https://git.example.com/kaizentm/hello-world-gitops/dev/functional-test
  deployment:
    gitOpsCommitId: sha1:0000000000000000000000000000000000000000
    status: failure
    statusMessage: kustomize build failed
"#;

async fn kalypso_yaml_lands_as_desired_and_observed(backend: Backend) {
    let hub = Hub::start(backend, "").await;
    hub.wait_ready().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("kalypso.yaml");
    std::fs::write(&file, KALYPSO).expect("write YAML");

    let out = assert_ok(&report(&hub, &["-f", &file.display().to_string()]).await);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "sent desired greeting-service/hello-world 0.0.1 → dev/functional-test",
            "sent observed greeting-service/hello-world sha1:4f1c2e9b7d0a3c… succeeded on aks-dev-1 → dev/functional-test",
            "sent observed greeting-service/hello-world sha1:00000000000000… failed on aks-dev-2 → dev/functional-test",
        ],
        "{out}"
    );

    let targets = state(&hub, "dev", None).await;
    assert_eq!(targets.len(), 1, "{targets:#?}");
    let target = &targets[0];
    assert_eq!(target["workspace"], "kaizentm");
    assert_eq!(target["application"], "greeting-service");
    assert_eq!(target["workload"], "hello-world");
    assert_eq!(target["target"], "functional-test");
    assert_eq!(target["desired"]["version"], "0.0.1");
    assert_eq!(
        target["desired"]["revision"],
        "sha1:4f1c2e9b7d0a3c5e8f6b1d2a9c7e0f3b5d8a1c4e"
    );
    assert_eq!(target["desired"]["at"], "2026-11-20T09:00:00Z");
    let ok = host(target, "aks-dev-1");
    assert_eq!(ok["in_sync"], true, "{ok:#}");
    assert_eq!(ok["reconciler"], "hello-world-functional-test");
    assert_eq!(ok["source"], "kalypso", "what came through Kalypso");
    assert_eq!(ok["message"], "Applied revision dev@sha1:4f1c2e9b");
    let failed = host(target, "aks-dev-2");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["in_sync"], false);

    // The same YAML on standard input is a replay: accepted, nothing new.
    let out = report_with(&format!("http://{}", hub.http), &["-f", "-"], Some(KALYPSO)).await;
    assert_ok(&out);
    assert_eq!(hub.db.count("desired_assignments").await, 1);
}

async fn bad_input_is_refused_before_sending(backend: Backend) {
    let hub = Hub::start(backend, "").await;
    hub.wait_ready().await;

    let mut bad_status = vec!["observed", "--host", "web-1"];
    bad_status.extend(PLACEMENT);
    bad_status.extend(["--revision", REV_A, "--status", "done"]);
    let err = assert_failed(&report(&hub, &bad_status).await);
    assert!(
        err.contains("invalid value 'done' for '--status <STATUS>'")
            && err.contains("succeeded, failed, in_progress"),
        "{err}"
    );

    let mut empty = vec!["desired", "--version", "1", "--revision", REV_A];
    empty.extend(PLACEMENT);
    empty[6] = ""; // --application ""
    let err = assert_failed(&report(&hub, &empty).await);
    assert!(
        err.contains("--application is required and must not be empty"),
        "{err}"
    );

    let yaml = KALYPSO.replace("status: failure", "status: broken");
    let out = report_with(&format!("http://{}", hub.http), &["-f", "-"], Some(&yaml)).await;
    let err = assert_failed(&out);
    assert!(
        err.contains("(Reconciler aks-dev-2-hello-world): spec.deployment.status \"broken\""),
        "{err}"
    );

    // Nothing reached the hub, not even the valid documents of the file.
    assert!(state(&hub, "stage", None).await.is_empty());
    assert!(state(&hub, "dev", None).await.is_empty());
    assert_eq!(hub.db.count("desired_assignments").await, 0);
}

async fn a_wrong_token_is_refused_by_the_hub(backend: Backend) {
    let hub = Hub::start(backend, TOKENS).await;
    hub.wait_ready().await;
    let mut args = vec!["desired", "--version", "1.4.2", "--revision", REV_A];
    args.extend(PLACEMENT);

    let mut wrong = args.clone();
    wrong.extend(["--token", "not-the-token"]);
    let err = assert_failed(&report(&hub, &wrong).await);
    assert!(
        err.contains("HTTP 401 Unauthorized (unauthenticated): unknown bearer token"),
        "{err}"
    );
    assert!(!err.contains("not-the-token"), "the token leaked: {err}");
    let err = assert_failed(&report(&hub, &args).await);
    assert!(
        err.contains("401") && err.contains("missing bearer token"),
        "{err}"
    );
    let mut read_only = args.clone();
    read_only.extend(["--token", "s3cr3t-read"]);
    let err = assert_failed(&report(&hub, &read_only).await);
    assert!(
        err.contains("HTTP 403 Forbidden (permission_denied)"),
        "{err}"
    );
    assert!(state(&hub, "stage", Some("s3cr3t-read")).await.is_empty());

    let mut right = args.clone();
    right.extend(["--token", "s3cr3t-ingest"]);
    assert_ok(&report(&hub, &right).await);
    let targets = state(&hub, "stage", Some("s3cr3t-read")).await;
    assert_eq!(targets.len(), 1, "{targets:#?}");
}

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    super::$scenario(sextant_e2e::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    super::$scenario(sextant_e2e::Backend::Postgres).await;
                }
            )*
        }
    };
}

on_both_backends!(
    flags_land_in_the_state,
    kalypso_yaml_lands_as_desired_and_observed,
    bad_input_is_refused_before_sending,
    a_wrong_token_is_refused_by_the_hub,
    the_kalypso_doc_examples_work,
);

#[tokio::test]
async fn an_unreachable_hub_is_a_clear_error() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut args = vec!["desired", "--version", "1.4.2", "--revision", REV_A];
    args.extend(PLACEMENT);
    let started = std::time::Instant::now();
    let err = assert_failed(&report_with(&endpoint, &args, None).await);
    assert!(
        err.contains(&format!(
            "cannot connect to the hub's OTLP/HTTP endpoint {endpoint}/v1/logs"
        )) && err.contains("SEXTANT_OTLP_ENDPOINT"),
        "{err}"
    );
    assert!(
        started.elapsed().as_secs() < 5,
        "took {:?}",
        started.elapsed()
    );

    let err = assert_failed(&report_with("not a url", &args, None).await);
    assert!(err.contains("invalid OTLP endpoint \"not a url\""), "{err}");
}

/// Serves one canned HTTP answer on 127.0.0.1:0, after reading the request.
async fn fake_hub(status: &'static str, body: Vec<u8>) -> String {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = socket.read(&mut chunk).await.expect("read");
            request.extend_from_slice(&chunk[..n]);
            let head_end = request.windows(4).position(|w| w == b"\r\n\r\n");
            let complete = head_end.is_some_and(|end| {
                let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                request.len() >= end + 4 + length
            });
            if n == 0 || complete {
                break;
            }
        }
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        socket.write_all(head.as_bytes()).await.expect("write");
        socket.write_all(&body).await.expect("write");
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_partial_success_from_the_hub_is_an_error() {
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceResponse,
    };
    use prost::Message;
    let answer = ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess {
            rejected_log_records: 1,
            error_message: "sextant.deployment.desired is missing required attribute `x`".into(),
        }),
    };
    let endpoint = fake_hub("200 OK", answer.encode_to_vec()).await;
    let mut args = vec![
        "--output",
        "json",
        "desired",
        "--version",
        "1",
        "--revision",
        REV_A,
    ];
    args.extend(PLACEMENT);
    let out = report_with(&endpoint, &args, None).await;
    let err = assert_failed(&out);
    assert!(
        err.contains(
            "the hub rejected 1 of 1 event: sextant.deployment.desired is missing required attribute `x`"
        ),
        "{err}"
    );
    let sent: Value = serde_json::from_str(&text(&out.stdout)).expect("JSON output");
    assert_eq!(
        (&sent["accepted"], &sent["rejected"]),
        (&Value::from(0), &Value::from(1))
    );

    let endpoint = fake_hub("200 OK", b"not protobuf at all".to_vec()).await;
    let err = assert_failed(&report_with(&endpoint, &args, None).await);
    assert!(err.contains("is not an OTLP logs response"), "{err}");
}

/// The fenced blocks of `lang` in `docs/kalypso.md`, in order.
fn doc_blocks(lang: &str) -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/kalypso.md");
    let doc = std::fs::read_to_string(path).expect("read docs/kalypso.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match current.as_mut() {
            Some(block) if line == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None if line == format!("```{lang}") => current = Some(String::new()),
            None => {}
        }
    }
    blocks
}

/// Runs a documented shell snippet with `sextant` on the PATH, pointed at `hub`.
async fn run_doc_snippet(hub: &Hub, snippet: &str, dir: &std::path::Path) -> Output {
    let bin_dir = std::path::Path::new(BIN).parent().expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("sh")
        .args(["-ec", snippet])
        .current_dir(dir)
        .env("PATH", path)
        .env("SEXTANT_OTLP_ENDPOINT", format!("http://{}", hub.http))
        .env_remove("SEXTANT_TOKEN")
        .output()
        .await
        .expect("run the documented command")
}

async fn the_kalypso_doc_examples_work(backend: Backend) {
    let hub = Hub::start(backend, "").await;
    hub.wait_ready().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = doc_blocks("yaml");
    assert_eq!(yaml.len(), 2, "a descriptor and a reconciler example");
    assert!(yaml[0].contains("kind: DeploymentDescriptor") && yaml[1].contains("kind: Reconciler"));
    std::fs::write(dir.path().join("descriptor.yaml"), &yaml[0]).expect("write");
    std::fs::write(dir.path().join("reconciler.yaml"), &yaml[1]).expect("write");

    let sh = doc_blocks("sh");
    let both = sh
        .iter()
        .find(|b| b.starts_with("sextant report -f descriptor.yaml -f reconciler.yaml"))
        .expect("the example that sends both kinds");
    let command = both.lines().next().expect("command line");
    let expected: Vec<&str> = both.lines().filter_map(|l| l.strip_prefix("# ")).collect();
    let out = assert_ok(&run_doc_snippet(&hub, command, dir.path()).await);
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);

    // The flag forms send the same events: the desired one is a replay.
    let flags: Vec<&String> = sh
        .iter()
        .filter(|b| {
            b.starts_with("sextant report desired") || b.starts_with("sextant report observed")
        })
        .collect();
    assert_eq!(flags.len(), 2, "{sh:#?}");
    for snippet in flags {
        assert_ok(&run_doc_snippet(&hub, snippet, dir.path()).await);
    }
    assert_eq!(hub.db.count("desired_assignments").await, 1);

    let targets = state(&hub, "dev", None).await;
    assert_eq!(targets.len(), 1, "{targets:#?}");
    assert_eq!(targets[0]["workspace"], "kaizentm");
    assert_eq!(targets[0]["desired"]["version"], "0.0.2");
    let h = host(&targets[0], "aks-dev-1");
    assert_eq!(h["in_sync"], true, "{h:#}");
    assert_eq!(h["reconciler"], "hello-world-functional-test");
    // The flag form names the same reconciler as the YAML: one row, source
    // kalypso.
    assert_eq!(h["source"], "kalypso", "{h:#}");
    let rows = targets[0]["hosts"].as_array().expect("hosts");
    assert_eq!(
        rows.iter().filter(|r| r["host"] == "aks-dev-1").count(),
        1,
        "{rows:#?}"
    );
}
