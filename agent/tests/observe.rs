//! `sextant agent run` as a process, against the real Docker engine and the
//! real hub (`sextant up`): what runs is reported, external changes are
//! reported, and nothing recorded is lost while the hub is down or when the
//! agent is killed with SIGKILL. Each test starts its agent with
//! [`helpers::spawn_agent`].

mod helpers;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use helpers::{AgentSettings, TestAgent, eventually, free_port, sample, spawn_agent};
use serde_json::Value;
use sextant_agent::executor::{Executor, ExecutorConfig, TaskStatus};
use sextant_agent::observe::{Observer, ObserverConfig, Report, ReportKind, Sink};
use sextant_e2e::docker::{self as kit, DockerScope, test_images};
use sextant_e2e::{Backend, Hub, rotel_binary};
use sextant_protocol::deploy::{ContainerSettings, DeploySpec, HealthCheck, Probe, RestartPolicy};

fn spec(scope: &DockerScope, workload: &str, image: &str) -> DeploySpec {
    DeploySpec {
        task_id: format!("{}-{workload}", scope.id()),
        name: scope.name(workload),
        image: image.to_owned(),
        application: "shop".into(),
        workload: workload.into(),
        target: "edge".into(),
        environment: None,
        release: Some("1.0".into()),
        revision: None,
        container: ContainerSettings {
            labels: scope.labels(),
            env: BTreeMap::new(),
            ports: Vec::new(),
            volumes: Vec::new(),
            command: None,
            network: None,
            restart: RestartPolicy::No,
            stop_timeout: Some(Duration::from_secs(1).into()),
            health: HealthCheck {
                probe: Probe::Docker,
                timeout: Some(Duration::from_secs(1).into()),
                interval: Some(Duration::from_millis(300).into()),
                retries: Some(4),
                start_period: None,
            },
        },
        registry_auth: None,
    }
}

async fn deploy(executor: &Executor, spec: DeploySpec) {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let outcome = executor.deploy(&spec, tx).await.expect("task accepted");
    assert_eq!(outcome.status, TaskStatus::Succeeded, "{outcome:?}");
}

async fn get_json(url: &str) -> Option<Value> {
    let res = reqwest::get(url).await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    res.json().await.ok()
}

/// What the hub holds for `workload` on `host`: (revision, status, message).
async fn current(hub: &Hub, host: &str, workload: &str) -> Option<(String, String, String)> {
    let view = get_json(&format!("http://{}/api/v1/hosts/{host}", hub.api)).await?;
    view["deployments"].as_array()?.iter().find_map(|d| {
        (d["workload"] == workload).then(|| {
            (
                d["revision"].as_str().unwrap_or_default().to_owned(),
                d["status"].as_str().unwrap_or_default().to_owned(),
                d["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
    })
}

/// Polls until `check` holds for what the hub reports, or fails after 60 s.
async fn until<F>(
    hub: &Hub,
    host: &str,
    workload: &str,
    what: &str,
    check: F,
) -> (String, String, String)
where
    F: Fn(&(String, String, String)) -> bool,
{
    let what = format!("{workload} on {host} {what}");
    eventually(&what, Duration::from_secs(60), || async {
        match current(hub, host, workload).await {
            Some(row) if check(&row) => ControlFlow::Break(row),
            last => ControlFlow::Continue(last),
        }
    })
    .await
}

/// Observed history of one host, oldest first: (workload, revision, status).
async fn history(hub: &Hub, host: &str) -> Vec<(String, String, String)> {
    let page = get_json(&format!(
        "http://{}/api/v1/history?host={host}&limit=1000",
        hub.api
    ))
    .await
    .expect("history");
    let mut rows: Vec<(String, String, String)> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("workload"), s("revision"), s("status"))
        })
        .collect();
    rows.reverse();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_what_runs_and_external_changes() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let hub = Hub::start(Backend::Sqlite, "").await;
    hub.wait_ready().await;
    let agent = spawn_agent(AgentSettings::new(
        &scope,
        format!("http://{}", hub.grpc),
        "grpc",
    ))
    .await;
    let host = agent.host.clone();

    // The executor keeps its task journal in the agent's data dir, as
    // `sextant agent deploy --data-dir` does: the agent counts its tasks.
    let executor = Executor::connect(ExecutorConfig::new(&agent.data_dir))
        .await
        .expect("Docker");
    deploy(&executor, spec(&scope, "web", &images.v1)).await;
    let digest = kit::digest_of(&images.v1).to_owned();
    until(&hub, &host, "web", "succeeded on v1", |(rev, status, _)| {
        *rev == digest && status == "succeeded"
    })
    .await;

    // Someone stops it by hand.
    let name = scope.name("web");
    kit::stop_container(&name);
    let (_, _, why) = until(
        &hub,
        &host,
        "web",
        "failed after a stop",
        |(_, status, _)| status == "failed",
    )
    .await;
    assert!(why.contains("exit") || why.contains("stopped"), "{why}");

    // Then removes it: reported once, as removed.
    kit::remove_container(&name);
    until(&hub, &host, "web", "removed", |(_, _, why)| {
        why.contains("was removed")
    })
    .await;

    let metrics = agent.metrics().await;
    for name in [
        "sextant_agent_observed_containers",
        "sextant_agent_reports_total",
        "sextant_outbox_records",
        "sextant_outbox_bytes",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"sextant_agent_tasks{kind="deploy",result="succeeded"} 1"#),
        "tasks by result missing from:\n{metrics}"
    );
    assert_eq!(agent.get("/health/ready").await.0, 200);
    agent.shutdown().await;
    scope.cleanup();
}

/// The hub is down while containers start, fail and stop; the agent is
/// killed with SIGKILL in the middle and restarted on the same data dir;
/// then the hub starts. Every change reaches the hub, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_while_the_hub_is_down_or_the_agent_is_killed() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let grpc = free_port();
    let journal = tempfile::tempdir().expect("dir");
    let mut agent = spawn_agent(AgentSettings::new(&scope, format!("http://{grpc}"), "grpc")).await;
    let host = agent.host.clone();
    let executor = Executor::connect(ExecutorConfig::new(journal.path()))
        .await
        .expect("Docker");

    // a and b run; a is stopped by hand.
    for w in ["a", "b"] {
        deploy(&executor, spec(&scope, w, &images.v1)).await;
    }
    let heartbeats = r#"sextant_agent_reports_total{kind="heartbeat",outcome="stored"}"#;
    let before = sample(&agent.metrics().await, heartbeats).unwrap_or(0.0);
    kit::stop_container(&scope.name("a"));
    // Let the agent record it and a few heartbeats (two rounds of a and b),
    // then crash it.
    agent
        .until_metrics("two heartbeats recorded after the stop", |page| {
            sample(page, heartbeats).is_some_and(|n| n >= before + 4.0)
        })
        .await;
    agent.kill().await;

    // While the agent is down b is stopped; c is deployed on v2.
    kit::stop_container(&scope.name("b"));
    deploy(&executor, spec(&scope, "c", &images.v2)).await;
    agent.restart().await;
    // The restarted agent lists a, b and c and records each (it starts with
    // nothing reported), and fails to send them: the hub is still down.
    let changes = r#"sextant_agent_reports_total{kind="state_change",outcome="stored"}"#;
    let failures =
        r#"sextant_outbox_send_failures_total{consumer="endpoint-0",reason="connection"}"#;
    agent
        .until_metrics("the three containers recorded and a failed send", |page| {
            sample(page, changes).is_some_and(|n| n >= 3.0)
                && sample(page, failures).is_some_and(|n| n >= 1.0)
        })
        .await;

    // The hub comes up where the agent has been sending all along.
    let hub = Hub::start_with(
        Backend::Sqlite,
        "",
        &["--otlp-grpc-addr", &grpc.to_string()],
    )
    .await;
    hub.wait_ready().await;
    assert_eq!(hub.grpc, grpc);
    let v1 = kit::digest_of(&images.v1).to_owned();
    let v2 = kit::digest_of(&images.v2).to_owned();
    until(&hub, &host, "c", "succeeded on v2", |(rev, s, _)| {
        *rev == v2 && s == "succeeded"
    })
    .await;
    until(&hub, &host, "b", "failed", |(_, s, _)| s == "failed").await;

    let got = history(&hub, &host).await;
    // Settled states per workload, in order: `in_progress` (created, health
    // starting) comes and goes with the agent's timing and is left out.
    let of = |w: &str| -> Vec<(String, String)> {
        got.iter()
            .filter(|(workload, _, status)| workload == w && status != "in_progress")
            .map(|(_, rev, status)| (rev.clone(), status.clone()))
            .collect()
    };
    let ok = (v1.clone(), "succeeded".to_owned());
    let failed = (v1.clone(), "failed".to_owned());
    // a's success was only ever in the outbox of the killed agent.
    assert_eq!(of("a"), [ok.clone(), failed.clone()], "{got:?}");
    assert_eq!(of("b"), [ok, failed], "{got:?}");
    assert_eq!(of("c"), [(v2, "succeeded".to_owned())], "{got:?}");
    agent.shutdown().await;
    scope.cleanup();
}

/// The `rotel` collector (PyPI) between the agent and the hub: the agent
/// sends OTLP/HTTP protobuf to rotel, rotel relays over OTLP/gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_through_the_rotel_collector() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let hub = Hub::start(Backend::Sqlite, "").await;
    hub.wait_ready().await;
    let (rotel_grpc, rotel_http) = (free_port(), free_port());
    let rotel = Command::new(rotel_binary())
        .arg("start")
        .args(["--otlp-grpc-endpoint", &rotel_grpc.to_string()])
        .args(["--otlp-http-endpoint", &rotel_http.to_string()])
        .args(["--exporter", "otlp", "--otlp-exporter-protocol", "grpc"])
        .args(["--otlp-exporter-endpoint", &format!("http://{}", hub.grpc)])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start rotel");
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _rotel = Kill(rotel);
    let what = format!("rotel listening on {rotel_http}");
    eventually(&what, Duration::from_secs(30), || async {
        match tokio::net::TcpStream::connect(rotel_http).await {
            Ok(_) => ControlFlow::Break(()),
            Err(e) => ControlFlow::Continue(e),
        }
    })
    .await;

    let journal = tempfile::tempdir().expect("dir");
    let agent = spawn_agent(AgentSettings::new(
        &scope,
        format!("http://{rotel_http}"),
        "http/protobuf",
    ))
    .await;
    let host = agent.host.clone();
    let executor = Executor::connect(ExecutorConfig::new(journal.path()))
        .await
        .expect("Docker");
    deploy(&executor, spec(&scope, "web", &images.v2)).await;
    let v2 = kit::digest_of(&images.v2).to_owned();
    until(
        &hub,
        &host,
        "web",
        "succeeded on v2 through rotel",
        |(rev, s, _)| *rev == v2 && s == "succeeded",
    )
    .await;
    agent.shutdown().await;
    scope.cleanup();
}

/// A Unix socket at `path` that forwards every connection to the Docker
/// engine's socket: Docker becomes reachable there while this lives, and
/// unreachable again (connections cut, socket file removed) when dropped.
struct DockerSocketProxy {
    path: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl DockerSocketProxy {
    fn start(path: &Path) -> Self {
        let engine = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
            .unwrap_or_else(|| "/var/run/docker.sock".to_owned());
        let listener = tokio::net::UnixListener::bind(path).expect("bind the proxy socket");
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let engine = engine.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::UnixStream::connect(&engine).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self {
            path: path.to_owned(),
            task,
        }
    }
}

impl Drop for DockerSocketProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts (and so
        // closes) every forwarded connection.
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `/health`'s answer: (HTTP status, the `docker` check's status), after
/// checking the checks it lists and that each has a measured latency.
async fn docker_check(agent: &TestAgent) -> (u16, String) {
    let (status, body) = agent.get("/health").await;
    let body: Value = serde_json::from_str(&body).expect("JSON health report");
    let checks = body["checks"].as_array().expect("checks");
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["docker", "outbox"], "{body}");
    assert!(checks.iter().all(|c| c["latency_ms"].is_number()), "{body}");
    let docker = &checks[0];
    if docker["status"] == "fail" {
        assert!(docker["error"].is_string(), "{body}");
    }
    (
        status,
        docker["status"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Docker is unreachable when the agent starts (its socket does not exist):
/// the agent runs, not ready, and says why. Docker appears at that socket:
/// ready, and the container is observed and sent to an endpoint where
/// nothing listens, which the metrics count as attempts and connection
/// failures. Docker goes away again: not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_the_docker_engine_and_failed_sends_are_counted() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let sockets = tempfile::tempdir().expect("dir");
    let socket = sockets.path().join("docker.sock");
    let closed = free_port();
    let agent = spawn_agent(AgentSettings {
        docker_host: Some(format!("unix://{}", socket.display())),
        ..AgentSettings::new(&scope, format!("http://{closed}"), "grpc")
    })
    .await;

    let (status, why) = agent.get("/health/ready").await;
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("Docker engine"), "{why}");
    assert_eq!(agent.get("/health/live").await.0, 200);
    assert_eq!(docker_check(&agent).await, (503, "fail".to_owned()));

    let labels = BTreeMap::from([
        ("sextant.application".to_owned(), "shop".to_owned()),
        ("sextant.workload".to_owned(), "web".to_owned()),
        ("sextant.target".to_owned(), "edge".to_owned()),
    ]);
    kit::run_unmanaged(&scope, &scope.name("web"), &images.v1, &labels);
    let proxy = DockerSocketProxy::start(&socket);
    assert_eq!(
        agent.until_status("/health/ready", 200).await.trim(),
        "ready"
    );
    assert_eq!(docker_check(&agent).await, (200, "pass".to_owned()));

    let attempts = r#"sextant_outbox_send_attempts_total{consumer="endpoint-0"}"#;
    let failures =
        r#"sextant_outbox_send_failures_total{consumer="endpoint-0",reason="connection"}"#;
    let what = format!("the container observed and failed sends to {closed} counted");
    let page = agent
        .until_metrics(&what, |page| {
            sample(page, "sextant_agent_observed_containers") == Some(1.0)
                && sample(page, attempts).unwrap_or(0.0) >= 2.0
                && sample(page, failures).unwrap_or(0.0) >= 2.0
        })
        .await;
    // Read off one page; the agent keeps sending meanwhile.
    let (sent, failed) = (sample(&page, attempts), sample(&page, failures));
    assert!(failed <= sent, "{page}");

    drop(proxy);
    let why = agent.until_status("/health/ready", 503).await;
    assert!(why.contains("Docker engine"), "{why}");
    assert_eq!(docker_check(&agent).await, (503, "fail".to_owned()));
    agent.shutdown().await;
    scope.cleanup();
}

/// Change reports an observer handed to its sink: (status, message).
#[derive(Clone, Default)]
struct Recorded(std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>);

impl Sink for Recorded {
    type Error = std::convert::Infallible;

    fn report(&self, reports: &[Report]) -> Result<(), Self::Error> {
        let mut seen = self.0.lock().expect("lock");
        for r in reports.iter().filter(|r| r.kind == ReportKind::Change) {
            seen.push((
                r.observation.status.as_str().to_owned(),
                r.observation.message.clone().unwrap_or_default(),
            ));
        }
        Ok(())
    }
}

impl Recorded {
    fn any(&self, check: impl Fn(&(String, String)) -> bool) -> bool {
        self.0.lock().expect("lock").iter().any(check)
    }

    /// Waits until a report passes `check`, or fails after `limit`.
    async fn until(&self, what: &str, limit: Duration, check: impl Fn(&(String, String)) -> bool) {
        eventually(what, limit, || async {
            if self.any(&check) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(self.0.lock().expect("lock").clone())
            }
        })
        .await;
    }
}

/// Removes a local image when dropped.
struct LocalImage(String);

impl Drop for LocalImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

/// The image of a stopped container is deleted: the engine raises no
/// container event, so only the periodic resync sees that the image is now
/// missing. Two observers watch the same container, one resyncing every
/// second and one every hour: the first reports the change, the second
/// (events alone) does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resync_catches_a_change_no_event_reported() {
    let images = test_images().await;
    let scope = DockerScope::new();
    // An image of this test's own (deleting the shared test image would
    // disturb the other tests): v1 committed from a scratch container.
    let base = scope.name("base");
    kit::run_unmanaged(&scope, &base, &images.v1, &BTreeMap::new());
    let image = LocalImage(scope.name("img"));
    let out = Command::new("docker")
        .args(["commit", &base, &image.0])
        .output()
        .expect("docker commit");
    assert!(out.status.success(), "{out:?}");
    kit::remove_container(&base);

    let docker = sextant_agent::executor::connect_docker(None)
        .await
        .expect("Docker");
    let observer = |resync: Duration| {
        let sink = Recorded::default();
        let mut observer = Observer::new(
            docker.clone(),
            "test",
            ObserverConfig {
                heartbeat: Duration::from_secs(3600),
                resync,
                watch_labels: vec![scope.label_filter()],
            },
            sink.clone(),
        );
        let cancel = tokio_util::sync::CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move { observer.run(stop).await });
        (sink, cancel.drop_guard())
    };
    let (resyncing, _stop_fast) = observer(Duration::from_secs(1));
    let (events_only, _stop_slow) = observer(Duration::from_secs(3600));

    let labels = BTreeMap::from([
        ("sextant.application".to_owned(), "shop".to_owned()),
        ("sextant.workload".to_owned(), "web".to_owned()),
        ("sextant.target".to_owned(), "edge".to_owned()),
    ]);
    let web = scope.name("web");
    kit::run_unmanaged(&scope, &web, &image.0, &labels);
    kit::stop_container(&web);
    // Both see the stop through the event stream.
    let stopped = |(status, why): &(String, String)| status == "failed" && !why.contains("missing");
    for sink in [&resyncing, &events_only] {
        sink.until("failed after the stop", Duration::from_secs(30), stopped)
            .await;
    }

    let out = Command::new("docker")
        .args(["rmi", "-f", &image.0])
        .output()
        .expect("docker rmi");
    assert!(out.status.success(), "{out:?}");
    let missing = |(status, why): &(String, String)| {
        status == "failed" && why.contains("is missing") && why.contains(&image.0)
    };
    resyncing
        .until(
            "reported the missing image",
            Duration::from_secs(15),
            missing,
        )
        .await;
    // Give the events-only observer as long again to (wrongly) report it: a
    // wait on the real engine's event stream, so on the real clock.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !events_only.any(missing),
        "the event stream did report it: {:?}",
        events_only.0.lock().expect("lock")
    );
    scope.cleanup();
}
