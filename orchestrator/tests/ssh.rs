//! The SSH executor against a real OpenSSH server (Debian's sshd in inetd
//! mode on 127.0.0.1, from the e2e test kit) with generated keys: deploys
//! that start a real service, host key refusals, trust on first use,
//! failures, timeouts and the never-twice contract across a dropped
//! orchestrator.
//!
//! `TEST_LOG=1` prints the executor's tracing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use sextant_e2e::sshd::{Sshd, kill_process, process_alive};
use sextant_e2e::wait;
use sextant_orchestrator::domain::task::{Artifact, LogStream, TaskKind};
use sextant_orchestrator::domain::{DeployTemplate, SshConnection, TargetSpec};
use sextant_orchestrator::executor::ssh::SshExecutor;
use sextant_orchestrator::executor::{Executor, TaskEvent, TaskRequest};
use sextant_protocol::deploy::{ErrorKind, TaskOutcome};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const PREVIOUS: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn init_tracing() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("sextant_orchestrator=debug,info")
            .with_test_writer()
            .try_init();
    }
}

fn connection(sshd: &Sshd) -> SshConnection {
    serde_json::from_value(sshd.ssh_json()).expect("the kit's JSON is an SshConnection")
}

fn target(ssh: SshConnection, command: &str) -> TargetSpec {
    TargetSpec {
        name: "web-1".into(),
        environment: "dev".into(),
        ssh: Some(ssh),
        agent: None,
        labels: BTreeMap::new(),
        deploy: Some(DeployTemplate::Custom {
            command: command.into(),
            switch: None,
        }),
        health: None,
        vars: BTreeMap::new(),
        hub_target: None,
    }
}

fn artifact(name: &str, content: &str) -> Artifact {
    Artifact {
        name: name.into(),
        content: content.as_bytes().to_vec(),
        sha256: hex::encode(Sha256::digest(content.as_bytes())),
    }
}

fn request(task_id: &str) -> TaskRequest {
    TaskRequest {
        task_id: task_id.into(),
        attempt: 1,
        kind: TaskKind::Deploy,
        release: "2024.06.1".into(),
        release_id: "release-id".into(),
        component: "web".into(),
        image: format!("registry.example/shop/web@{DIGEST}"),
        digest: DIGEST.into(),
        previous_digest: Some(PREVIOUS.into()),
        slot: None,
        artifacts: vec![],
        timeout: Duration::from_secs(60),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        vars: BTreeMap::new(),
        context: Default::default(),
    }
}

/// Executes and collects every event.
async fn run(
    executor: &SshExecutor,
    target: &TargetSpec,
    request: &TaskRequest,
) -> (TaskOutcome, Vec<TaskEvent>) {
    let (tx, mut rx) = mpsc::channel(1024);
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let outcome = executor.execute(target, request, &tx).await;
    drop(tx);
    (outcome, collector.await.expect("collector"))
}

fn logs(events: &[TaskEvent], stream: LogStream) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            TaskEvent::Log { stream: s, line } if *s == stream => Some(line.clone()),
            _ => None,
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Kills the processes whose pids a test's services wrote, when dropped.
struct Services(Vec<std::path::PathBuf>);

impl Drop for Services {
    fn drop(&mut self) {
        for file in &self.0 {
            if let Ok(pid) = std::fs::read_to_string(file)
                && let Ok(pid) = pid.trim().parse::<u32>()
            {
                kill_process(pid);
            }
        }
    }
}

#[tokio::test]
async fn deploy_starts_a_service_with_artifacts_and_environment() {
    init_tracing();
    let sshd = Sshd::start();
    let www = sshd.dir().join("www");
    let port = free_port();
    let _services = Services(vec![www.join("http.pid")]);
    let command = r#"set -e
mkdir -p "$WWW"
cd "$WWW"
printf '<h1>%s</h1>\n' "$SEXTANT_IMAGE" > index.html
cp "$SEXTANT_ARTIFACT_DIR/release.json" release.json
env | grep -E '^(SEXTANT_|TRACEPARENT=|GREETING=)' | sort > env.txt
pwd -P > cwd.txt
echo "deploying $SEXTANT_COMPONENT"
echo "a warning on stderr" >&2
nohup python3 -m http.server --bind 127.0.0.1 "$PORT" > http.log 2>&1 < /dev/null &
echo $! > http.pid
echo "started the service"
"#;
    let mut target = target(connection(&sshd), command);
    target.vars.insert("PORT".into(), port.to_string());
    target.vars.insert("WWW".into(), www.display().to_string());
    target
        .vars
        .insert("GREETING".into(), "it's \"quoted\" $HOME `x`".into());
    let mut req = request("deploy-1");
    let manifest = r#"{"release":"2024.06.1","components":{"web":"sha256:1111"}}"#;
    let lock = "services:\n  web:\n    image: registry.example/shop/web@sha256:1111\n";
    req.artifacts = vec![
        artifact("release.json", manifest),
        artifact("compose-lock.yml", lock),
    ];

    let started = Instant::now();
    let (outcome, events) = run(&SshExecutor::new(), &target, &req).await;
    assert!(outcome.success, "{outcome:?}\nsshd log:\n{}", sshd.log());
    assert_eq!(outcome.exit_code, Some(0));
    assert!(!outcome.resumed);
    assert_eq!(outcome.deployed_digest.as_deref(), Some(DIGEST));
    assert_eq!(
        outcome.stdout, "deploying web\nstarted the service\n",
        "{outcome:?}"
    );
    assert_eq!(outcome.stderr, "a warning on stderr\n");
    assert!(started.elapsed() < Duration::from_secs(30));

    // Log lines were streamed as they came, on their own streams.
    assert_eq!(
        logs(&events, LogStream::Stdout),
        ["deploying web", "started the service"]
    );
    assert_eq!(logs(&events, LogStream::Stderr), ["a warning on stderr"]);
    assert!(events.contains(&TaskEvent::Status("running".into())));

    // The artifacts arrived whole, in the run directory.
    let run_dir = sshd.work_dir().join("runs/deploy-1.1");
    assert_eq!(
        std::fs::read_to_string(run_dir.join("release.json")).expect("release.json"),
        manifest
    );
    assert_eq!(
        std::fs::read_to_string(run_dir.join("compose-lock.yml")).expect("lock"),
        lock
    );
    assert_eq!(
        std::fs::read_to_string(www.join("release.json")).expect("copied"),
        manifest
    );

    // The command saw the variables, quoted as given, in the login directory.
    let env = std::fs::read_to_string(www.join("env.txt")).expect("env.txt");
    let expect = [
        "SEXTANT_RELEASE=2024.06.1".to_string(),
        "SEXTANT_COMPONENT=web".into(),
        format!("SEXTANT_IMAGE=registry.example/shop/web@{DIGEST}"),
        format!("SEXTANT_DIGEST={DIGEST}"),
        format!("SEXTANT_PREVIOUS_DIGEST={PREVIOUS}"),
        format!(
            "SEXTANT_ARTIFACT_DIR={}",
            std::fs::canonicalize(&run_dir).expect("run dir").display()
        ),
        "SEXTANT_TASK_ID=deploy-1".into(),
        "SEXTANT_TASK_KIND=deploy".into(),
        "SEXTANT_SLOT=".into(),
        "TRACEPARENT=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        "GREETING=it's \"quoted\" $HOME `x`".into(),
    ];
    for line in &expect {
        assert!(
            env.lines().any(|l| l == line),
            "{line:?} missing from\n{env}"
        );
    }

    // The service runs, detached from the SSH session, and serves the new image.
    let url = format!("http://127.0.0.1:{port}/");
    let body = wait::until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            if let Ok(res) = reqwest::get(&url).await
                && res.status().is_success()
            {
                return Ok(res.text().await.expect("body"));
            }
            Err(format!("the deployed service never answered on {url}"))
        },
    )
    .await;
    assert!(
        body.contains(&format!("registry.example/shop/web@{DIGEST}")),
        "{body}"
    );
}

#[tokio::test]
async fn wrong_pinned_host_key_is_refused_before_anything_runs() {
    init_tracing();
    let sshd = Sshd::start();
    let marker = sshd.dir().join("marker");
    let command = format!("touch '{}'", marker.display());
    let mut ssh = connection(&sshd);
    let wrong = sshd.other_host_key_line();
    ssh.host_key = Some(wrong.clone());
    let (outcome, _) = run(
        &SshExecutor::new(),
        &target(ssh, &command),
        &request("hk-1"),
    )
    .await;
    assert_eq!(outcome.error_type, Some(ErrorKind::HostKey), "{outcome:?}");
    assert!(!outcome.retryable);
    assert!(!outcome.success);
    let error = outcome.error.unwrap_or_default();
    assert!(
        error.contains(&format!("[127.0.0.1]:{}", sshd.port())),
        "{error}"
    );
    assert!(error.contains("mismatch"), "{error}");
    assert!(error.matches("SHA256:").count() >= 2, "{error}");
    assert!(
        !marker.exists(),
        "the command ran despite the wrong host key"
    );
    assert!(
        !sshd.work_dir().exists(),
        "the executor wrote to the target"
    );

    // The right key runs it.
    let (outcome, _) = run(
        &SshExecutor::new(),
        &target(connection(&sshd), &command),
        &request("hk-1"),
    )
    .await;
    assert!(outcome.success, "{outcome:?}");
    assert!(marker.exists());
}

#[tokio::test]
async fn unknown_hosts_are_refused_unless_trusted_on_first_use() {
    init_tracing();
    let sshd = Sshd::start();
    let known_hosts = sshd.dir().join("client/known_hosts");
    let marker = sshd.dir().join("marker");
    let command = format!("echo run >> '{}'", marker.display());
    let mut ssh = connection(&sshd);
    ssh.host_key = None;
    ssh.known_hosts = Some(known_hosts.display().to_string());

    // Unknown, no TOFU: refused, nothing recorded, nothing ran.
    let (outcome, _) = run(
        &SshExecutor::new(),
        &target(ssh.clone(), &command),
        &request("u-1"),
    )
    .await;
    assert_eq!(outcome.error_type, Some(ErrorKind::HostKey), "{outcome:?}");
    assert!(!outcome.retryable);
    assert!(
        outcome.error.as_deref().unwrap_or("").contains("unknown"),
        "{outcome:?}"
    );
    assert!(!known_hosts.exists());
    assert!(!marker.exists());

    // TOFU: accepted and recorded.
    let mut tofu = ssh.clone();
    tofu.trust_on_first_use = true;
    let (outcome, _) = run(
        &SshExecutor::new(),
        &target(tofu.clone(), &command),
        &request("u-2"),
    )
    .await;
    assert!(outcome.success, "{outcome:?}");
    let recorded = std::fs::read_to_string(&known_hosts).expect("known_hosts written");
    assert_eq!(recorded, format!("{}\n", sshd.known_hosts_line()));

    // From now on the recorded key is used, without TOFU.
    let (outcome, _) = run(
        &SshExecutor::new(),
        &target(ssh.clone(), &command),
        &request("u-3"),
    )
    .await;
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(lines(&marker), 2);
    // Nothing more was appended.
    assert_eq!(
        std::fs::read_to_string(&known_hosts).expect("known_hosts"),
        recorded
    );

    // A different recorded key is a mismatch, which TOFU does not override.
    std::fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{} {}\n",
            sshd.port(),
            sshd.other_host_key_line()
        ),
    )
    .expect("write known_hosts");
    let (outcome, _) = run(
        &SshExecutor::new(),
        &target(tofu, &command),
        &request("u-4"),
    )
    .await;
    assert_eq!(outcome.error_type, Some(ErrorKind::HostKey), "{outcome:?}");
    assert!(
        outcome.error.as_deref().unwrap_or("").contains("line 1"),
        "{outcome:?}"
    );
    assert_eq!(lines(&marker), 2);
}

#[tokio::test]
async fn failing_command_reports_its_exit_code_and_stderr_tail() {
    init_tracing();
    let sshd = Sshd::start();
    let command = "echo preparing; for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo \"noise $i\" >&2; done; \
                   echo 'cannot pull the image' >&2; exit 3";
    let (outcome, events) = run(
        &SshExecutor::new(),
        &target(connection(&sshd), command),
        &request("fail-1"),
    )
    .await;
    assert!(!outcome.success);
    assert_eq!(outcome.error_type, Some(ErrorKind::Command), "{outcome:?}");
    assert!(!outcome.retryable);
    assert_eq!(outcome.exit_code, Some(3));
    let error = outcome.error.as_deref().unwrap_or("");
    assert!(error.contains("exited with 3"), "{error}");
    assert!(error.contains("cannot pull the image"), "{error}");
    assert!(!error.contains("noise 1\n"), "only the tail: {error}");
    assert_eq!(outcome.stdout, "preparing\n");
    assert!(outcome.stderr.ends_with("cannot pull the image\n"));
    assert_eq!(logs(&events, LogStream::Stderr).len(), 13);
}

#[tokio::test]
async fn timeout_kills_the_command() {
    init_tracing();
    let sshd = Sshd::start();
    let pid_file = sshd.dir().join("sleep.pid");
    let _services = Services(vec![pid_file.clone()]);
    let command = format!(
        "echo begun; sleep 300 & echo $! > '{}'; wait",
        pid_file.display()
    );
    let mut req = request("slow-1");
    req.timeout = Duration::from_secs(2);
    let started = Instant::now();
    let (outcome, _) = run(
        &SshExecutor::new(),
        &target(connection(&sshd), &command),
        &req,
    )
    .await;
    assert_eq!(outcome.error_type, Some(ErrorKind::Timeout), "{outcome:?}");
    assert!(outcome.retryable);
    assert!(!outcome.success);
    assert_eq!(outcome.stdout, "begun\n");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    wait::until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            if !process_alive(pid) {
                return Ok(());
            }
            Err(format!("the command's child {pid} survived the timeout"))
        },
    )
    .await;

    // Executing the same request again reports the same timeout, runs nothing.
    let (again, _) = run(
        &SshExecutor::new(),
        &target(connection(&sshd), &command),
        &req,
    )
    .await;
    assert_eq!(again.error_type, Some(ErrorKind::Timeout), "{again:?}");
    assert!(again.resumed);
}

#[tokio::test]
async fn a_task_never_runs_twice() {
    init_tracing();
    let sshd = Sshd::start();
    let counter = sshd.dir().join("counter");
    let command = format!(
        "echo run >> '{}'; echo first; sleep 2; echo second",
        counter.display()
    );
    let target = target(connection(&sshd), &command);
    let req = request("once-1");

    // The orchestrator dies mid-task: the execute future is dropped.
    let task = {
        let (target, req) = (target.clone(), req.clone());
        tokio::spawn(async move {
            let (tx, _rx) = mpsc::channel(1024);
            SshExecutor::new().execute(&target, &req, &tx).await
        })
    };
    wait::until(
        Duration::from_secs(20),
        Duration::from_millis(20),
        || async {
            if lines(&counter) != 0 {
                return Ok(());
            }
            Err("the command never started")
        },
    )
    .await;
    task.abort();
    assert!(task.await.is_err_and(|e| e.is_cancelled()));

    // Restarted, it executes the same request: it resumes, it does not rerun.
    let (outcome, events) = run(&SshExecutor::new(), &target, &req).await;
    assert!(outcome.success, "{outcome:?}");
    assert!(outcome.resumed);
    assert_eq!(outcome.stdout, "first\nsecond\n");
    assert_eq!(logs(&events, LogStream::Stdout), ["first", "second"]);
    assert_eq!(lines(&counter), 1);

    // Once finished, the recorded result comes back at once.
    let started = Instant::now();
    let (outcome, _) = run(&SshExecutor::new(), &target, &req).await;
    assert!(outcome.success && outcome.resumed, "{outcome:?}");
    assert_eq!(outcome.stdout, "first\nsecond\n");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(lines(&counter), 1);

    // A new attempt is a new run.
    let mut retry = req.clone();
    retry.attempt = 2;
    let (outcome, _) = run(&SshExecutor::new(), &target, &retry).await;
    assert!(outcome.success && !outcome.resumed, "{outcome:?}");
    assert_eq!(lines(&counter), 2);

    // Two executors racing on one key start it once.
    let mut raced = req.clone();
    raced.attempt = 3;
    let executor = SshExecutor::new();
    let ((a, _), (b, _)) = tokio::join!(
        run(&executor, &target, &raced),
        run(&executor, &target, &raced)
    );
    assert!(a.success && b.success, "{a:?}\n{b:?}");
    assert!(
        a.resumed != b.resumed,
        "exactly one started it: {a:?}\n{b:?}"
    );
    assert_eq!(lines(&counter), 3);
}

#[tokio::test]
async fn connection_and_configuration_failures() {
    init_tracing();
    let sshd = Sshd::start();
    let executor = SshExecutor::new().with_connect_timeout(Duration::from_secs(5));

    // Nobody listens: a retryable connection failure.
    let mut ssh = connection(&sshd);
    ssh.port = free_port();
    let (outcome, _) = run(&executor, &target(ssh, "true"), &request("c-1")).await;
    assert_eq!(
        outcome.error_type,
        Some(ErrorKind::Connection),
        "{outcome:?}"
    );
    assert!(outcome.retryable);

    // A peer that accepts TCP but never speaks SSH: the connect timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut ssh = connection(&sshd);
    ssh.port = silent.local_addr().expect("addr").port();
    let quick = SshExecutor::new().with_connect_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let (outcome, _) = run(&quick, &target(ssh, "true"), &request("c-0")).await;
    assert_eq!(
        outcome.error_type,
        Some(ErrorKind::Connection),
        "{outcome:?}"
    );
    assert!(outcome.retryable);
    assert!(
        outcome.error.as_deref().unwrap_or("").contains("timed out"),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(silent);

    // A key the server does not know: not retryable.
    let stranger = sshd.dir().join("stranger");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let mut ssh = connection(&sshd);
    ssh.credential = format!("file:{}", stranger.display());
    let (outcome, _) = run(&executor, &target(ssh, "true"), &request("c-2")).await;
    assert_eq!(
        outcome.error_type,
        Some(ErrorKind::Connection),
        "{outcome:?}"
    );
    assert!(!outcome.retryable);
    assert!(
        outcome
            .error
            .as_deref()
            .unwrap_or("")
            .contains("refused the key"),
        "{outcome:?}"
    );

    // Credentials that cannot be used, templates that cannot run.
    for (credential, expect) in [
        ("vault:secret/ssh".to_string(), "scheme \"vault\""),
        (
            format!("file:{}", sshd.dir().join("missing").display()),
            "cannot read",
        ),
    ] {
        let mut ssh = connection(&sshd);
        ssh.credential = credential;
        let (outcome, _) = run(&executor, &target(ssh, "true"), &request("c-3")).await;
        assert_eq!(outcome.error_type, Some(ErrorKind::Invalid), "{outcome:?}");
        assert!(
            outcome.error.as_deref().unwrap_or("").contains(expect),
            "{outcome:?}"
        );
    }
    let mut no_template = target(connection(&sshd), "true");
    no_template.deploy = None;
    let (outcome, _) = run(&executor, &no_template, &request("c-4")).await;
    assert_eq!(outcome.error_type, Some(ErrorKind::Invalid), "{outcome:?}");
    let mut switch = request("c-5");
    switch.kind = TaskKind::Switch;
    let (outcome, _) = run(&executor, &target(connection(&sshd), "true"), &switch).await;
    assert_eq!(outcome.error_type, Some(ErrorKind::Invalid), "{outcome:?}");
    let mut bad = request("c-6");
    bad.artifacts = vec![Artifact {
        sha256: "00".into(),
        ..artifact("x.txt", "x")
    }];
    let (outcome, _) = run(&executor, &target(connection(&sshd), "true"), &bad).await;
    assert_eq!(outcome.error_type, Some(ErrorKind::Invalid), "{outcome:?}");
    let unsafe_key = request("../escape");
    let (outcome, _) = run(&executor, &target(connection(&sshd), "true"), &unsafe_key).await;
    assert_eq!(outcome.error_type, Some(ErrorKind::Invalid), "{outcome:?}");
}

#[tokio::test]
async fn blue_green_switch_runs_the_switch_command() {
    init_tracing();
    let sshd = Sshd::start();
    let active = sshd.dir().join("active");
    let mut target = target(connection(&sshd), "true");
    target.deploy = Some(DeployTemplate::Custom {
        command: "true".into(),
        switch: Some(format!(
            "printf %s \"$SEXTANT_SLOT\" > '{}'",
            active.display()
        )),
    });
    let mut req = request("switch-1");
    req.kind = TaskKind::Switch;
    req.slot = Some("green".into());
    let (outcome, _) = run(&SshExecutor::new(), &target, &req).await;
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(std::fs::read_to_string(&active).expect("active"), "green");
}

#[tokio::test]
async fn health_check_commands() {
    init_tracing();
    let sshd = Sshd::start();
    let executor = SshExecutor::new();
    let target = target(connection(&sshd), "true");
    let short = Duration::from_secs(5);
    executor
        .check_command(&target, &request("check"), "test -d /", short)
        .await
        .expect("a passing check");
    let err = executor
        .check_command(
            &target,
            &request("check"),
            "echo 'not ready yet'; exit 7",
            short,
        )
        .await
        .expect_err("a failing check")
        .to_string();
    assert!(err.contains('7') && err.contains("not ready yet"), "{err}");
    let started = Instant::now();
    let err = executor
        .check_command(
            &target,
            &request("check"),
            "sleep 60",
            Duration::from_secs(1),
        )
        .await
        .expect_err("a hung check")
        .to_string();
    assert!(err.contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut wrong = target.clone();
    if let Some(ssh) = wrong.ssh.as_mut() {
        ssh.host_key = Some(sshd.other_host_key_line());
    }
    let err = executor
        .check_command(&wrong, &request("check"), "true", short)
        .await
        .expect_err("a wrong host key")
        .to_string();
    assert!(err.contains("mismatch"), "{err}");
}

#[tokio::test]
async fn a_dropped_connection_is_reconnected_and_the_run_followed_to_its_end() {
    init_tracing();
    let sshd = Sshd::start();
    let counter = sshd.dir().join("counter");
    let command = format!(
        "echo run >> '{}'; echo first; sleep 3; echo second",
        counter.display()
    );
    let target = target(connection(&sshd), &command);
    let req = request("net-1");
    let executor = SshExecutor::new();
    let running = run(&executor, &target, &req);
    let cut = async {
        wait::until(
            Duration::from_secs(20),
            Duration::from_millis(20),
            || async {
                if lines(&counter) != 0 {
                    return Ok(());
                }
                Err("the command never started")
            },
        )
        .await;
        // Real time: the command runs under sshd, another process.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = sshd.connections();
        sshd.drop_connections();
        before
    };
    let ((outcome, events), before) = tokio::join!(running, cut);
    assert!(outcome.success, "{outcome:?}");
    assert!(!outcome.resumed);
    assert!(
        sshd.connections() > before,
        "the executor never reconnected"
    );
    assert_eq!(outcome.stdout, "first\nsecond\n");
    // Each line once: following picks up at the byte it had reached.
    assert_eq!(logs(&events, LogStream::Stdout), ["first", "second"]);
    assert_eq!(lines(&counter), 1);
}

#[tokio::test]
async fn a_run_killed_on_the_target_is_reported_lost_not_rerun() {
    init_tracing();
    let sshd = Sshd::start();
    let counter = sshd.dir().join("counter");
    let command = format!("echo run >> '{}'; sleep 60", counter.display());
    let target = target(connection(&sshd), &command);
    let req = request("lost-1");
    let task_dir = sshd.work_dir().join("runs/lost-1.1/.task");
    let task = {
        let (target, req) = (target.clone(), req.clone());
        tokio::spawn(async move {
            let (tx, _rx) = mpsc::channel(1024);
            SshExecutor::new().execute(&target, &req, &tx).await
        })
    };
    wait::until(
        Duration::from_secs(20),
        Duration::from_millis(20),
        || async {
            if lines(&counter) != 0 {
                return Ok(());
            }
            Err("the command never started")
        },
    )
    .await;
    task.abort();
    let _ = task.await;
    // The target loses the run (say, an OOM kill of everything): the wrapper
    // and the command's process group die without recording an exit code.
    let read_pid = |name: &str| -> u32 {
        std::fs::read_to_string(task_dir.join(name))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid")
    };
    let (wrapper, group) = (read_pid("wrapper_pid"), read_pid("pid"));
    for target in [wrapper.to_string(), format!("-{group}")] {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &target])
            .status();
    }
    wait::until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            if !process_alive(wrapper) {
                return Ok(());
            }
            Err("the wrapper survived SIGKILL")
        },
    )
    .await;

    let started = Instant::now();
    let (outcome, _) = run(&SshExecutor::new(), &target, &req).await;
    assert_eq!(outcome.error_type, Some(ErrorKind::Command), "{outcome:?}");
    assert!(outcome.resumed);
    assert!(
        outcome
            .error
            .as_deref()
            .unwrap_or("")
            .contains("without recording an exit code"),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(lines(&counter), 1);
}

#[tokio::test]
async fn rsa_client_keys_authenticate() {
    init_tracing();
    let sshd = Sshd::start();
    let key = sshd.dir().join("client_rsa");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    let authorized = sshd.dir().join("authorized_keys");
    let mut keys = std::fs::read_to_string(&authorized).expect("authorized_keys");
    keys.push_str(&public);
    std::fs::write(&authorized, keys).expect("authorize the RSA key");
    let mut ssh = connection(&sshd);
    ssh.credential = format!("file:{}", key.display());
    let (outcome, _) = run(
        &SshExecutor::new(),
        &target(ssh, "echo rsa"),
        &request("rsa-1"),
    )
    .await;
    assert!(outcome.success, "{outcome:?}\n{}", sshd.log());
    assert_eq!(outcome.stdout, "rsa\n");
}
