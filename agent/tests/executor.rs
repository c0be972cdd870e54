//! The Docker executor against the real Docker engine and a real registry on
//! 127.0.0.1 (the shared kit, `sextant_e2e::docker`): every image is pulled
//! by digest. Each test has its own [`DockerScope`], so containers are
//! removed afterwards and tests run in parallel without colliding.

use std::collections::BTreeMap;
use std::time::Duration;

use sextant_agent::executor::{
    ExecuteError, Executor, ExecutorConfig, Phase, RecordState, TaskEvent, TaskKind, TaskOutcome,
    TaskRecord, TaskStatus,
};
use sextant_e2e::docker::{self as kit, DockerScope, test_images};
use sextant_protocol::deploy::{
    ComposeLock, ContainerSettings, DeploySpec, HealthCheck, PortSpec, Probe, ProbeCommand,
    RestartPolicy, ServiceSpec, SpecError, labels,
};
use tokio::sync::mpsc;

const FAST: Duration = Duration::from_millis(300);

fn health(probe: Probe) -> HealthCheck {
    HealthCheck {
        probe,
        timeout: Some(Duration::from_secs(1).into()),
        interval: Some(FAST.into()),
        retries: Some(4),
        start_period: None,
    }
}

fn http_health() -> HealthCheck {
    health(Probe::Http {
        url: "http://127.0.0.1:{port:8080}/health".into(),
        expect_status: Some(200),
    })
}

fn docker_health() -> HealthCheck {
    // Docker runs the image's check every 300 ms here instead of every 1 s.
    health(Probe::Docker)
}

fn published() -> Vec<PortSpec> {
    vec![PortSpec {
        container_port: 8080,
        host_port: None,
        host_ip: Some("127.0.0.1".into()),
        protocol: "tcp".into(),
    }]
}

fn spec(scope: &DockerScope, name: &str, image: &str, task: &str) -> DeploySpec {
    DeploySpec {
        task_id: format!("{}-{task}", scope.id()),
        name: scope.name(name),
        image: image.to_owned(),
        application: "shop".into(),
        workload: name.into(),
        target: "test-host".into(),
        environment: Some("test".into()),
        release: Some(task.into()),
        revision: None,
        container: ContainerSettings {
            labels: scope.labels(),
            env: BTreeMap::from([("GREETING".into(), "hello".into())]),
            ports: published(),
            volumes: Vec::new(),
            command: None,
            network: None,
            restart: RestartPolicy::UnlessStopped,
            stop_timeout: Some(Duration::from_secs(1).into()),
            health: http_health(),
        },
        registry_auth: None,
    }
}

async fn executor(dir: &tempfile::TempDir) -> Executor {
    Executor::connect(ExecutorConfig::new(dir.path()))
        .await
        .expect("connect to Docker")
}

/// Deploys and returns the outcome with every event streamed meanwhile.
async fn deploy(ex: &Executor, spec: &DeploySpec) -> (TaskOutcome, Vec<TaskEvent>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let outcome = ex.deploy(spec, tx).await.expect("task accepted");
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (outcome, events)
}

fn phases(events: &[TaskEvent]) -> Vec<Phase> {
    events
        .iter()
        .filter_map(|e| match e {
            TaskEvent::Status { phase, .. } => Some(*phase),
            _ => None,
        })
        .collect()
}

fn assert_status(outcome: &TaskOutcome, status: TaskStatus) {
    assert_eq!(outcome.status, status, "unexpected outcome: {outcome:#?}");
}

#[tokio::test]
async fn deploy_pulls_by_digest_with_labels_and_is_healthy() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let dir = kit::data_dir();
    let ex = executor(&dir).await;
    let s = spec(&scope, "web", &images.v1, "v1");

    let (outcome, events) = deploy(&ex, &s).await;

    assert_status(&outcome, TaskStatus::Succeeded);
    assert_eq!(
        outcome.deployed_digest.as_deref(),
        Some(kit::digest_of(&images.v1))
    );
    assert!(outcome.previous.is_none());
    let id = outcome.container_id.clone().unwrap();
    assert_eq!(kit::container_id(&s.name), Some(id));
    assert!(kit::is_running(&s.name));
    assert_eq!(kit::image_of(&s.name).as_deref(), Some(images.v1.as_str()));
    assert!(
        kit::image_present(&images.v1),
        "the image was pulled by digest"
    );
    let l = kit::labels(&s.name);
    assert_eq!(l[labels::APPLICATION], "shop");
    assert_eq!(l[labels::WORKLOAD], "web");
    assert_eq!(l[labels::TARGET], "test-host");
    assert_eq!(l[labels::ENVIRONMENT], "test");
    assert_eq!(l[labels::RELEASE], "v1");
    assert_eq!(l[labels::REVISION], kit::digest_of(&images.v1));
    assert_eq!(l[labels::TASK], s.task_id);
    assert_eq!(l[kit::TEST_LABEL], scope.id());
    let env = kit::inspect(&s.name).unwrap()["Config"]["Env"].clone();
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hello")
    );
    let policy = kit::inspect(&s.name).unwrap()["HostConfig"]["RestartPolicy"]["Name"].clone();
    assert_eq!(policy, "unless-stopped");
    let (status, page) = kit::get_page(&s.name, "/").await.unwrap();
    assert_eq!((status, page.trim()), (200, "sextant test web v1"));
    // Docker's own HEALTHCHECK agrees.
    kit::wait_healthy(&s.name, Duration::from_secs(10)).await;

    let p = phases(&events);
    for phase in [
        Phase::Accepted,
        Phase::Pulling,
        Phase::Creating,
        Phase::Starting,
        Phase::Verifying,
        Phase::Healthy,
        Phase::Finished,
    ] {
        assert!(p.contains(&phase), "no {phase} event in {p:?}");
    }
    assert!(matches!(events.last(), Some(TaskEvent::Finished { .. })));
    // The journal holds the finished record, without credentials.
    let rec = ex.journal().read(&s.task_id).unwrap().unwrap();
    assert_eq!(rec.state, RecordState::Finished);
    assert_eq!(rec.outcome.unwrap().status, TaskStatus::Succeeded);
}

#[tokio::test]
async fn upgrade_replaces_the_old_container() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let dir = kit::data_dir();
    let ex = executor(&dir).await;
    let first = deploy(&ex, &spec(&scope, "web", &images.v1, "v1")).await.0;
    assert_status(&first, TaskStatus::Succeeded);
    let old_id = first.container_id.unwrap();

    let s2 = spec(&scope, "web", &images.v2, "v2");
    let (outcome, events) = deploy(&ex, &s2).await;

    assert_status(&outcome, TaskStatus::Succeeded);
    let new_id = outcome.container_id.clone().unwrap();
    assert_ne!(new_id, old_id);
    assert_eq!(outcome.previous.as_ref().unwrap().id, old_id);
    assert_eq!(outcome.previous.as_ref().unwrap().image, images.v1);
    assert!(kit::inspect(&old_id).is_none(), "old container removed");
    assert_eq!(
        scope.containers(),
        vec![s2.name.clone()],
        "nothing left aside"
    );
    assert_eq!(kit::container_id(&s2.name), Some(new_id));
    assert_eq!(
        kit::labels(&s2.name)[labels::REVISION],
        kit::digest_of(&images.v2)
    );
    let (_, page) = kit::get_page(&s2.name, "/").await.unwrap();
    assert_eq!(page.trim(), "sextant test web v2");
    assert!(phases(&events).contains(&Phase::StoppingOld));
    assert!(phases(&events).contains(&Phase::Cleanup));
}

#[tokio::test]
async fn failed_docker_health_check_rolls_back_to_the_previous_version() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let dir = kit::data_dir();
    let ex = executor(&dir).await;
    let mut good = spec(&scope, "web", &images.v2, "v2");
    good.container.health = docker_health();
    let v2 = deploy(&ex, &good).await.0;
    assert_status(&v2, TaskStatus::Succeeded);
    let v2_id = v2.container_id.unwrap();

    let mut bad = spec(&scope, "web", &images.broken, "broken");
    bad.container.health = docker_health();
    let (outcome, events) = deploy(&ex, &bad).await;

    assert_status(&outcome, TaskStatus::RolledBack);
    assert!(
        outcome.message.contains("unhealthy") && outcome.message.contains("rolled back"),
        "the outcome says why: {}",
        outcome.message
    );
    assert_eq!(outcome.container_id.as_deref(), Some(v2_id.as_str()));
    assert_eq!(outcome.previous.as_ref().unwrap().id, v2_id);
    assert!(outcome.deployed_digest.is_none());
    // v2 runs again under its name, healthy; the broken one is gone.
    assert_eq!(kit::container_id(&bad.name), Some(v2_id.clone()));
    assert!(kit::is_running(&bad.name));
    kit::wait_healthy(&bad.name, Duration::from_secs(10)).await;
    assert_eq!(scope.containers(), vec![bad.name.clone()]);
    let (_, page) = kit::get_page(&bad.name, "/").await.unwrap();
    assert_eq!(page.trim(), "sextant test web v2");
    let p = phases(&events);
    assert!(
        p.contains(&Phase::Unhealthy) && p.contains(&Phase::RollingBack),
        "{p:?}"
    );
    // The container's output was streamed live while it was verified (busybox
    // httpd -v logs each health probe), before the verdict.
    let verdict = events
        .iter()
        .position(|e| {
            matches!(
                e,
                TaskEvent::Status {
                    phase: Phase::Unhealthy,
                    ..
                }
            )
        })
        .unwrap();
    assert!(
        events[..verdict]
            .iter()
            .any(|e| matches!(e, TaskEvent::Log { line, .. } if line.contains("response:404"))),
        "no log line streamed during verification: {events:#?}"
    );
    assert!(
        !outcome.logs.is_empty(),
        "the failed container's logs are kept"
    );
}

#[tokio::test]
async fn http_tcp_and_command_checks() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let dir = kit::data_dir();
    let ex = executor(&dir).await;

    let mut tcp = spec(&scope, "web", &images.v1, "tcp");
    tcp.container.health = health(Probe::Tcp {
        address: "127.0.0.1:{port:8080}".into(),
    });
    assert_status(&deploy(&ex, &tcp).await.0, TaskStatus::Succeeded);

    let mut cmd = spec(&scope, "web", &images.v2, "cmd");
    cmd.container.health = health(Probe::Command(ProbeCommand::Argv(
        [
            "/bin/busybox",
            "wget",
            "-q",
            "-O",
            "/dev/null",
            "http://127.0.0.1:8080/health",
        ]
        .map(String::from)
        .to_vec(),
    )));
    let v2 = deploy(&ex, &cmd).await.0;
    assert_status(&v2, TaskStatus::Succeeded);

    // The http check fails on broken's 404 and says so.
    let bad = spec(&scope, "web", &images.broken, "http");
    let outcome = deploy(&ex, &bad).await.0;
    assert_status(&outcome, TaskStatus::RolledBack);
    assert!(outcome.message.contains("404"), "{}", outcome.message);
    assert!(
        outcome.message.contains("4 consecutive"),
        "{}",
        outcome.message
    );
    // The restored v2 was verified with its own (command) check again.
    assert_eq!(outcome.container_id, v2.container_id);
    assert!(kit::is_running(&bad.name));

    // A tcp check against a port nothing listens on fails.
    let mut closed = spec(&scope, "other", &images.v1, "closed");
    closed.container.health = health(Probe::Tcp {
        address: "127.0.0.1:1".into(),
    });
    closed.container.health.retries = Some(2);
    let outcome = deploy(&ex, &closed).await.0;
    assert_status(&outcome, TaskStatus::Failed);
    assert!(
        outcome.message.contains("TCP connect"),
        "{}",
        outcome.message
    );
    assert!(
        outcome.message.contains("no previous container"),
        "{}",
        outcome.message
    );
    assert!(kit::inspect(&closed.name).is_none());
}

#[tokio::test]
async fn repeating_a_finished_task_deploys_nothing() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let dir = kit::data_dir();
    let ex = executor(&dir).await;
    let s = spec(&scope, "web", &images.v1, "once");
    let first = deploy(&ex, &s).await.0;
    assert_status(&first, TaskStatus::Succeeded);
    let id = kit::container_id(&s.name).unwrap();

    // Same executor, then a fresh one on the same data dir (an agent restart).
    for ex in [&ex, &executor(&dir).await] {
        let (again, events) = deploy(ex, &s).await;
        assert!(again.replayed);
        assert_eq!(
            TaskOutcome {
                replayed: false,
                ..again.clone()
            },
            first
        );
        assert!(!phases(&events).contains(&Phase::Pulling), "{events:?}");
        assert_eq!(
            kit::container_id(&s.name),
            Some(id.clone()),
            "container untouched"
        );
    }
    // A repeat is found by task id alone, whatever the spec says now.
    let mut changed = s.clone();
    changed.image = images.v2.clone();
    assert!(deploy(&ex, &changed).await.0.replayed);
    assert_eq!(kit::container_id(&s.name), Some(id));
    assert_eq!(scope.containers().len(), 1);
    // A repeated rolled-back task reports its rollback again.
    let bad = spec(&scope, "web", &images.broken, "bad");
    assert_status(&deploy(&ex, &bad).await.0, TaskStatus::RolledBack);
    let again = deploy(&ex, &bad).await.0;
    assert!(again.replayed);
    assert_status(&again, TaskStatus::RolledBack);
}

#[tokio::test]
async fn tags_are_refused_before_anything_happens() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let dir = kit::data_dir();
    let ex = executor(&dir).await;
    let tagged = format!("{}/sextant-test/web:v1", images.registry);
    let s = spec(&scope, "web", &tagged, "tag");
    let (tx, _rx) = mpsc::unbounded_channel();
    let err = ex.deploy(&s, tx).await.unwrap_err();
    assert!(
        matches!(&err, ExecuteError::Spec(SpecError::NotPinned { image }) if *image == tagged),
        "{err}"
    );
    assert!(err.to_string().contains("not pinned by digest"), "{err}");
    assert!(
        ex.journal().read(&s.task_id).unwrap().is_none(),
        "no record"
    );
    assert!(scope.containers().is_empty());
}

#[tokio::test]
async fn a_pull_that_fails_changes_nothing() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let dir = kit::data_dir();
    let ex = executor(&dir).await;
    let v1 = deploy(&ex, &spec(&scope, "web", &images.v1, "v1")).await.0;
    let missing = format!(
        "{}/sextant-test/missing@sha256:{}",
        images.registry,
        "0".repeat(64)
    );
    let (outcome, _) = deploy(&ex, &spec(&scope, "web", &missing, "missing")).await;
    assert_status(&outcome, TaskStatus::Failed);
    assert!(outcome.message.contains("pull"), "{}", outcome.message);
    assert_eq!(kit::container_id(&scope.name("web")), v1.container_id);
    assert!(kit::is_running(&scope.name("web")));
}

#[tokio::test]
async fn upgrade_over_a_container_someone_stopped_or_removed() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let dir = kit::data_dir();
    let ex = executor(&dir).await;
    let name = scope.name("web");
    assert_status(
        &deploy(&ex, &spec(&scope, "web", &images.v1, "v1")).await.0,
        TaskStatus::Succeeded,
    );

    kit::stop_container(&name);
    assert!(!kit::is_running(&name));
    let v2 = deploy(&ex, &spec(&scope, "web", &images.v2, "v2")).await.0;
    assert_status(&v2, TaskStatus::Succeeded);
    assert!(kit::is_running(&name));

    kit::remove_container(&name);
    assert!(kit::inspect(&name).is_none());
    let again = deploy(&ex, &spec(&scope, "web", &images.v1, "v1-again"))
        .await
        .0;
    assert_status(&again, TaskStatus::Succeeded);
    assert!(again.previous.is_none());
    assert_eq!(scope.containers(), vec![name]);
}

#[tokio::test]
async fn an_interrupted_task_is_reported_and_the_old_container_restored() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let dir = kit::data_dir();
    let ex = executor(&dir).await;
    let v1 = spec(&scope, "web", &images.v1, "v1");
    let v1_id = deploy(&ex, &v1).await.0.container_id.unwrap();

    // A crash mid-deploy: the old container renamed aside and stopped, the
    // new one never started, the task recorded as running.
    kit::stop_container(&v1.name);
    std::process::Command::new("docker")
        .args(["rename", &v1.name, &format!("{}.sextant-prev", v1.name)])
        .status()
        .unwrap();
    let crashed = spec(&scope, "web", &images.v2, "crashed");
    ex.journal()
        .write(&TaskRecord {
            task_id: crashed.task_id.clone(),
            kind: TaskKind::Deploy,
            state: RecordState::Running,
            started_at: 1,
            spec: serde_json::to_value(&crashed).unwrap(),
            outcome: None,
        })
        .unwrap();

    let (outcome, events) = deploy(&executor(&dir).await, &crashed).await;

    assert_status(&outcome, TaskStatus::Failed);
    assert!(
        outcome.message.contains("interrupted"),
        "{}",
        outcome.message
    );
    assert!(outcome.message.contains("restored"), "{}", outcome.message);
    assert!(!phases(&events).contains(&Phase::Pulling));
    assert_eq!(kit::container_id(&v1.name), Some(v1_id));
    assert!(kit::is_running(&v1.name));
    assert_eq!(kit::image_of(&v1.name).as_deref(), Some(images.v1.as_str()));
    // Now finished: a repeat replays the failure.
    assert!(deploy(&ex, &crashed).await.0.replayed);
}

#[tokio::test]
async fn concurrent_duplicate_is_refused() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let dir = kit::data_dir();
    let ex = executor(&dir).await;
    let s = spec(&scope, "web", &images.v1, "dup");
    let (tx, _rx) = mpsc::unbounded_channel();
    let (a, b) = tokio::join!(ex.deploy(&s, tx.clone()), ex.deploy(&s, tx));
    let refused = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Err(ExecuteError::AlreadyRunning { .. })))
        .count();
    assert_eq!(refused, 1, "{a:?} / {b:?}");
    assert_eq!(scope.containers().len(), 1);
}

fn service(name: &str, image: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        workload: None,
        image: image.into(),
        revision: None,
        container: ContainerSettings {
            ports: published(),
            stop_timeout: Some(Duration::from_secs(1).into()),
            health: http_health(),
            ..ContainerSettings::default()
        },
        registry_auth: None,
    }
}

fn lock(scope: &DockerScope, task: &str, services: Vec<ServiceSpec>) -> ComposeLock {
    ComposeLock {
        task_id: format!("{}-{task}", scope.id()),
        project: scope.name("shop"),
        application: "shop".into(),
        target: "test-host".into(),
        environment: None,
        release: Some(task.into()),
        labels: scope.labels(),
        registry_auth: None,
        services,
    }
}

#[tokio::test]
async fn compose_lock_applies_services_and_rolls_back_the_first_when_the_second_fails() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let dir = kit::data_dir();
    let ex = executor(&dir).await;
    let first = lock(
        &scope,
        "r1",
        vec![service("api", &images.v1), service("web", &images.v1)],
    );
    let (tx, _rx) = mpsc::unbounded_channel();
    let outcome = ex.apply_compose(&first, tx).await.unwrap();
    assert_status(&outcome, TaskStatus::Succeeded);
    assert_eq!(outcome.services.len(), 2);
    let api = format!("{}-api", first.project);
    let web = format!("{}-web", first.project);
    let api_v1 = kit::container_id(&api).unwrap();
    let web_v1 = kit::container_id(&web).unwrap();
    assert_eq!(kit::labels(&api)[labels::COMPOSE_SERVICE], "api");
    assert_eq!(kit::labels(&web)[labels::WORKLOAD], "web");
    // Both joined the project network, under their service names.
    let net = &kit::inspect(&web).unwrap()["NetworkSettings"]["Networks"][first.network()];
    assert!(
        net["Aliases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "web"),
        "{net}"
    );

    let second = lock(
        &scope,
        "r2",
        vec![service("api", &images.v2), service("web", &images.broken)],
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let outcome = ex.apply_compose(&second, tx).await.unwrap();
    assert_status(&outcome, TaskStatus::RolledBack);
    assert!(
        outcome.message.contains("service web failed"),
        "{}",
        outcome.message
    );
    let statuses: Vec<_> = outcome
        .services
        .iter()
        .map(|s| (s.service.as_str(), s.status))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("api", TaskStatus::RolledBack),
            ("web", TaskStatus::RolledBack)
        ]
    );
    // Both run their v1 containers again.
    assert_eq!(kit::container_id(&api), Some(api_v1));
    assert_eq!(kit::container_id(&web), Some(web_v1));
    assert!(kit::is_running(&api) && kit::is_running(&web));
    let (_, page) = kit::get_page(&api, "/").await.unwrap();
    assert_eq!(page.trim(), "sextant test web v1");
    assert_eq!(scope.containers(), vec![api.clone(), web.clone()]);
    let mut saw_api_rollback = false;
    while let Ok(e) = rx.try_recv() {
        if let TaskEvent::Status {
            container,
            phase: Phase::RollingBack,
            ..
        } = e
        {
            saw_api_rollback |= container == api;
        }
    }
    assert!(saw_api_rollback);
    // A tag anywhere in the lock refuses the whole lock.
    let tagged = lock(
        &scope,
        "r3",
        vec![
            service("api", &images.v2),
            service("web", &format!("{}/sextant-test/web:v2", images.registry)),
        ],
    );
    let (tx, _rx) = mpsc::unbounded_channel();
    assert!(matches!(
        ex.apply_compose(&tagged, tx).await,
        Err(ExecuteError::Spec(SpecError::NotPinned { .. }))
    ));
    assert_eq!(kit::image_of(&api).as_deref(), Some(images.v1.as_str()));
}

#[tokio::test]
async fn a_container_left_aside_by_a_crash_is_the_rollback_target_of_the_next_task() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let dir = kit::data_dir();
    let ex = executor(&dir).await;
    let v1 = spec(&scope, "web", &images.v1, "v1");
    let v1_id = deploy(&ex, &v1).await.0.container_id.unwrap();
    // Crash mid-deploy: v1 aside and stopped, nothing under the name.
    kit::stop_container(&v1.name);
    std::process::Command::new("docker")
        .args(["rename", &v1.name, &format!("{}.sextant-prev", v1.name)])
        .status()
        .unwrap();

    let bad = spec(&scope, "web", &images.broken, "next");
    let outcome = deploy(&ex, &bad).await.0;

    assert_status(&outcome, TaskStatus::RolledBack);
    assert_eq!(
        outcome.previous.as_ref().map(|p| p.id.as_str()),
        Some(v1_id.as_str())
    );
    assert!(
        outcome.message.contains("healthy again"),
        "{}",
        outcome.message
    );
    assert_eq!(kit::container_id(&v1.name), Some(v1_id));
    assert!(kit::is_running(&v1.name));
    assert_eq!(scope.containers(), vec![v1.name.clone()]);
}

/// `docker exec CONTAINER /bin/busybox ARGS…`: (exit success, stdout).
fn exec(container: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("docker")
        .args(["exec", container, "/bin/busybox"])
        .args(args)
        .output()
        .expect("docker exec");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

/// Removes a named Docker volume when dropped (after the scope's containers).
struct NamedVolume(String);

impl Drop for NamedVolume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["volume", "rm", "-f", &self.0])
            .output();
    }
}

#[tokio::test]
async fn volumes_and_binds_are_mounted_and_survive_an_upgrade() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let dir = kit::data_dir();
    let ex = executor(&dir).await;
    // A host folder bound read-only, and a named volume.
    let host = tempfile::tempdir().expect("dir");
    std::fs::write(
        host.path().join("marker"),
        format!("bound {}\n", scope.id()),
    )
    .expect("write");
    let volume = NamedVolume(scope.name("cache"));
    let volumes = vec![
        format!("{}:/config:ro", host.path().display()),
        format!("{}:/cache", volume.0),
    ];
    // The health check passes only when the container sees the bound file.
    let sees_marker = health(Probe::Command(ProbeCommand::Argv(vec![
        "/bin/busybox".into(),
        "grep".into(),
        "-q".into(),
        format!("bound {}", scope.id()),
        "/config/marker".into(),
    ])));
    let mut s = spec(&scope, "web", &images.v1, "v1");
    s.container.volumes = volumes.clone();
    s.container.health = sees_marker.clone();

    let (outcome, _) = deploy(&ex, &s).await;

    assert_status(&outcome, TaskStatus::Succeeded);
    let info = kit::inspect(&s.name).unwrap();
    let binds = info["HostConfig"]["Binds"].as_array().unwrap().clone();
    assert_eq!(binds, volumes, "the binds as written in the spec");
    let mounts = info["Mounts"].as_array().unwrap();
    let mount = |target: &str| {
        mounts
            .iter()
            .find(|m| m["Destination"] == target)
            .unwrap_or_else(|| panic!("no mount on {target}: {mounts:#?}"))
    };
    let config = mount("/config");
    assert_eq!(config["Type"], "bind");
    assert_eq!(config["Source"], host.path().display().to_string());
    assert_eq!(config["RW"], false);
    let cache = mount("/cache");
    assert_eq!(cache["Type"], "volume");
    assert_eq!(cache["Name"], volume.0.as_str());
    assert_eq!(cache["RW"], true);
    assert_eq!(
        exec(&s.name, &["cat", "/config/marker"]),
        (true, format!("bound {}", scope.id()))
    );
    // Read-only as asked; the volume is writable.
    assert!(!exec(&s.name, &["touch", "/config/new"]).0);
    assert!(!host.path().join("new").exists());
    assert!(exec(&s.name, &["sh", "-c", "echo kept > /cache/state"]).0);

    // The upgraded container gets the same mounts and the volume's data.
    let mut s2 = spec(&scope, "web", &images.v2, "v2");
    s2.container.volumes = volumes.clone();
    s2.container.health = sees_marker.clone();
    let upgraded = deploy(&ex, &s2).await.0;
    assert_status(&upgraded, TaskStatus::Succeeded);
    assert_ne!(upgraded.container_id, outcome.container_id);
    assert_eq!(
        exec(&s2.name, &["cat", "/cache/state"]),
        (true, "kept".to_owned())
    );

    // Without the bind the same check fails: the mount is what made it pass.
    let mut unbound = spec(&scope, "other", &images.v1, "unbound");
    unbound.container.health = sees_marker;
    unbound.container.health.retries = Some(2);
    let outcome = deploy(&ex, &unbound).await.0;
    assert_status(&outcome, TaskStatus::Failed);
    scope.cleanup();
}
