//! `deploy/compose` and Sextant's own image, with the tools and the engine
//! that run here: `docker-compose config` (Debian's docker-compose)
//! validates the stack, `promtool check config` its Prometheus
//! configuration, and the image built by `deploy/docker/build-local.sh`
//! runs a hub container and an agent container on a network of the test's
//! own; the agent watches the Docker engine and reports, over OTLP, to the
//! hub, whose API shows it. Third-party images (PostgreSQL, Grafana, …)
//! cannot be pulled here, so the stack itself is not started.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sextant_e2e::docker::DockerScope;
use sextant_e2e::{sextant_binary, wait, workspace_root};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn compose_file() -> std::path::PathBuf {
    workspace_root().join("deploy/compose/docker-compose.yml")
}

#[test]
fn the_compose_stack_is_valid_and_has_every_service() {
    let file = compose_file();
    run(Command::new("docker-compose")
        .arg("-f")
        .arg(&file)
        .args(["config", "-q"]));
    let services = run(Command::new("docker-compose")
        .arg("-f")
        .arg(&file)
        .args(["config", "--services"]));
    for s in [
        "hub",
        "orchestrator",
        "postgres",
        "collector",
        "prometheus",
        "alertmanager",
        "grafana",
        "tempo",
        "loki",
    ] {
        assert!(
            services.lines().any(|l| l == s),
            "no service {s}: {services}"
        );
    }
    // Every file the stack mounts is in the repository.
    let text = std::fs::read_to_string(&file).unwrap();
    let dir = file.parent().unwrap();
    let mut mounts = 0;
    for line in text.lines() {
        let line = line.trim().trim_start_matches("- ");
        if line.starts_with("./") || line.starts_with("../") {
            let source = line.split(':').next().unwrap();
            assert!(dir.join(source).exists(), "mounted {source} is missing");
            mounts += 1;
        }
    }
    assert!(mounts >= 10, "only {mounts} mounts found");
}

#[test]
fn the_compose_prometheus_config_and_rules_pass_promtool() {
    // The container paths, rewritten to this checkout's files.
    let dir = tempfile::tempdir().unwrap();
    let config =
        std::fs::read_to_string(workspace_root().join("deploy/compose/config/prometheus.yml"))
            .unwrap()
            .replace(
                "/etc/prometheus/rules/sextant.yml",
                &workspace_root()
                    .join("deploy/prometheus/rules/sextant.yml")
                    .display()
                    .to_string(),
            );
    let path = dir.path().join("prometheus.yml");
    std::fs::write(&path, config).unwrap();
    let out = run(Command::new("promtool")
        .args(["check", "config"])
        .arg(&path));
    assert!(
        out.contains("SUCCESS") && out.contains("9 rules found"),
        "{out}"
    );
}

fn docker_port(container: &str, port: &str) -> String {
    run(Command::new("docker").args(["port", container, port]))
        .lines()
        .find(|l| l.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("{container} publishes no {port} on 127.0.0.1"))
        .to_owned()
}

#[tokio::test]
async fn an_agent_container_reports_to_a_hub_container_from_the_local_image() {
    let scope = DockerScope::new();
    let tag = format!("sextant:test-{}", scope.name("image").to_lowercase());
    run(
        Command::new(workspace_root().join("deploy/docker/build-local.sh"))
            .arg(sextant_binary())
            .arg(&tag),
    );
    struct Image(String);
    impl Drop for Image {
        fn drop(&mut self) {
            let _ = Command::new("docker")
                .args(["rmi", "-f", &self.0])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    let _image = Image(tag.clone());

    let labels: Vec<String> = scope
        .labels()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let label_args: Vec<&str> = labels
        .iter()
        .flat_map(|l| ["--label", l.as_str()])
        .collect();
    let network = scope.name("net");
    run(Command::new("docker")
        .args(["network", "create"])
        .args(&label_args)
        .arg(&network));

    // The hub, on embedded SQLite, with the compose stack's hub.toml (its
    // tokens), published on 127.0.0.1 only. It carries Sextant labels, so
    // the agent reports the hub itself as a workload.
    let hub = scope.name("hub");
    let hub_toml = workspace_root().join("deploy/compose/config/hub.toml");
    run(Command::new("docker")
        .args(["run", "-d", "--name", &hub, "--network", &network])
        .args(["--network-alias", "hub"])
        .args(&label_args)
        .args([
            "--label",
            "sextant.application=sextant",
            "--label",
            "sextant.workload=hub",
            "--label",
            "sextant.target=compose",
        ])
        .arg("-v")
        .arg(format!("{}:/etc/sextant/hub.toml:ro", hub_toml.display()))
        .args(["-p", "127.0.0.1::8080"])
        .arg(&tag)
        .args([
            "up",
            "--no-orchestrator",
            "--config=/etc/sextant/hub.toml",
            "--api-addr=0.0.0.0:8080",
            "--otlp-grpc-addr=0.0.0.0:4317",
            "--otlp-http-addr=0.0.0.0:4318",
        ]));
    let api = format!("http://{}", docker_port(&hub, "8080/tcp"));
    let client = reqwest::Client::new();
    let read = |path: String| {
        client
            .get(format!("{api}{path}"))
            .bearer_auth("dev-read-token")
            .send()
    };
    let (read, hub_ref) = (&read, &hub);
    wait::until(
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async move {
            if read("/health/ready".into())
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return Ok(());
            }
            let logs = Command::new("docker")
                .args(["logs", hub_ref])
                .output()
                .unwrap();
            Err(format!(
                "the hub container never got ready:\n{}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            ))
        },
    )
    .await;
    // Tokens are enforced: no token, no data.
    let anonymous = client
        .get(format!("{api}/api/v1/hosts"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // The agent, root for the Docker socket, sending to the hub by name.
    let agent = scope.name("agent");
    run(Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &agent,
            "--network",
            &network,
            "--user",
            "0",
        ])
        .args(&label_args)
        .args(["-v", "/var/run/docker.sock:/var/run/docker.sock"])
        .arg(&tag)
        .args([
            "agent",
            "run",
            "--host-name",
            "compose-agent",
            "--environment",
            "compose",
            "--otlp-endpoint",
            "http://hub:4317",
            "--otlp-protocol",
            "grpc",
            "--otlp-token",
            "dev-ingest-token",
            "--heartbeat",
            "2s",
            "--listen",
            "0.0.0.0:9464",
            "--watch-label",
        ])
        .arg(scope.label_filter()));
    let agent_ref = &agent;
    let view = wait::until(
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async move {
            let view: Value = match read("/api/v1/hosts/compose-agent".into()).await {
                Ok(r) if r.status() == 200 => r.json().await.unwrap_or(Value::Null),
                _ => Value::Null,
            };
            if view.to_string().contains("\"succeeded\"") {
                return Ok(view);
            }
            let logs = Command::new("docker")
                .args(["logs", agent_ref])
                .output()
                .unwrap();
            Err(format!(
                "the hub never showed the agent's report: {view:#}\nagent:\n{}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            ))
        },
    )
    .await;
    let text = view.to_string();
    assert!(
        text.contains("\"hub\"") && text.contains("compose"),
        "the agent reports the hub container: {view:#}"
    );
    scope.cleanup();
    assert!(Path::new(&hub_toml).exists());
}

/// The compose stack's orchestrator tokens are ones `sextant orchestrator`
/// accepts (at least 16 characters each): it starts with them.
#[test]
fn the_compose_orchestrator_starts_with_its_tokens_file() {
    use std::io::{BufRead, BufReader};
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(sextant_binary())
        .args(["orchestrator", "--listen", "127.0.0.1:0", "--agent-listen"])
        .args(["127.0.0.1:0", "--no-hub", "--tokens-file"])
        .arg(workspace_root().join("deploy/compose/config/orchestrator-tokens.yaml"))
        .arg("--data-dir")
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let up = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.starts_with("Press Ctrl-C"));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        up,
        "the orchestrator refused the compose tokens file:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
