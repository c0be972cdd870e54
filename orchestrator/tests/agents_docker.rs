//! Promotions through agents onto the real Docker engine, all real
//! processes: a hub (`sextant up --no-orchestrator`), an orchestrator
//! (`sextant orchestrator`) and two agents (`sextant agent run`) that
//! register with one-time tokens from `sextant agents token`, dial the
//! orchestrator's agent port, run containers pulled by digest from the test
//! kit's registry, and report what runs to the hub over OTLP.
//!
//! - dev → stage → prod onto both agents, then a canary of an image whose
//!   health check fails: the agent rolls the canary back by itself, the
//!   promotion ends `rolled_back`, and the second prod target never sees
//!   the broken image;
//! - an agent SIGKILLed while its task verifies health, then started again:
//!   the task is reported as interrupted, not run a second time, and the
//!   orchestrator's next attempt (a new run key) deploys;
//! - an agent in a network namespace of its own (veth, 10.213.0.0/16)
//!   dials the orchestrator's agent port on the veth address; its link is
//!   cut mid-task and restored: the task runs once;
//! - two orchestrator processes on one PostgreSQL database: the one holding
//!   a rolling job's lease is SIGKILLed mid-task, the other finishes the
//!   job and every task runs once.
//!
//! The agents run on this host and share its Docker engine, so each agent
//! watches only the containers labelled for it (`--watch-label`).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::process::Process;
use serde_json::{Value, json};
use sextant_e2e::docker::{self as kit, DockerScope, TestImages, test_images};
use sextant_e2e::wait;
use sextant_e2e::{Backend, Hub, TestDb};

/// The label that tells the two agents' containers apart.
const AGENT_LABEL: &str = "sextant.test.agent";

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

/// A `sextant agent run` process; SIGKILLed when dropped.
struct AgentProcess {
    child: Child,
    /// Its health and metrics address, once its stderr has named it.
    listen: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl AgentProcess {
    /// Starts an agent named `name` that dials `endpoint`, with
    /// `token` (first start only), reporting to the hub's OTLP/gRPC
    /// address, watching only containers labelled `AGENT_LABEL=name`.
    fn start(name: &str, data: &Path, endpoint: &str, token: Option<&str>, hub: &Hub) -> Self {
        Self::start_in(
            None,
            name,
            data,
            endpoint,
            token,
            &format!("http://{}", hub.grpc),
            &[],
        )
    }

    /// Like [`AgentProcess::start`], inside network namespace `netns`
    /// when given (`ip netns exec`), reporting to `otlp`.
    fn start_in(
        netns: Option<&str>,
        name: &str,
        data: &Path,
        endpoint: &str,
        token: Option<&str>,
        otlp: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns])
                    .arg(sextant_e2e::sextant_binary());
                c
            }
            None => Command::new(sextant_e2e::sextant_binary()),
        };
        cmd.args(["agent", "run", "--host-name", name])
            .arg("--data-dir")
            .arg(data)
            .args(["--orchestrator", endpoint])
            .args(["--otlp-endpoint", otlp])
            .args(["--label", &format!("agent={name}")])
            .args(["--watch-label", &format!("{AGENT_LABEL}={name}")])
            .args(["--listen", "127.0.0.1:0", "--heartbeat", "1s"])
            // The default for unlabelled containers; the ones it deploys
            // carry their own environment label.
            .args(["--environment", "prod"])
            .env_remove("SEXTANT_AGENT_CONFIG")
            .env_remove("SEXTANT_REGISTRATION_TOKEN")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(t) = token {
            cmd.args(["--registration-token", t]);
        }
        let mut child = cmd.spawn().expect("start sextant agent run");
        // Pass its stderr on, and note the address it serves metrics on.
        let stderr = child.stderr.take().expect("stderr");
        let listen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let noted = listen.clone();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some((_, addr)) = line.split_once("health and metrics on http://") {
                    *noted.lock().unwrap() = Some(addr.trim().to_owned());
                }
                eprintln!("{line}");
            }
        });
        Self { child, listen }
    }

    /// The agent's health and metrics address.
    async fn listen(&self) -> std::net::SocketAddr {
        wait::until(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                if let Some(addr) = self.listen.lock().unwrap().clone() {
                    return Ok(addr.parse().expect("a socket address"));
                }
                Err("the agent never named its address")
            },
        )
        .await
    }

    fn kill9(&mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The orchestrator, the hub and the agents of one test.
struct Stack {
    hub: Hub,
    orchestrator: Process,
    _data: tempfile::TempDir,
}

impl Stack {
    async fn start() -> Self {
        Self::start_env(&[]).await
    }

    /// Like [`Stack::start`], with `env` set for the hub and the
    /// orchestrator.
    async fn start_env(env: &[(&str, &str)]) -> Self {
        let hub = Hub::start_env(Backend::Sqlite, "", &[], env).await;
        hub.wait_ready().await;
        let data = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", data.path().join("orchestrator.db").display());
        let hub_url = format!("http://{}", hub.api);
        let hub_otlp = format!("http://{}", hub.http);
        let orchestrator = Process::start_env(
            data.path(),
            &db,
            "replica-a",
            &[
                "--hub-url",
                &hub_url,
                "--hub-otlp-endpoint",
                &hub_otlp,
                "--agent-heartbeat",
                "1s",
                "--task-timeout",
                "90s",
            ],
            env,
        );
        Self {
            hub,
            orchestrator,
            _data: data,
        }
    }

    fn base(&self) -> &str {
        &self.orchestrator.base
    }

    fn endpoint(&self) -> String {
        self.orchestrator
            .agents
            .clone()
            .expect("the orchestrator printed its agent address")
    }

    /// A one-time registration token from `sextant agents token`.
    fn token(&self) -> String {
        let out = self
            .orchestrator
            .sextant("alice", &["agents", "token", "--ttl", "10m"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(token.starts_with("sxr_"), "{token:?}");
        token
    }

    /// `sextant agents list --output json`.
    fn agents(&self) -> Vec<Value> {
        let out = self
            .orchestrator
            .sextant("alice", &["agents", "list", "--output", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("agents list --json")
    }

    async fn wait_online(&self, names: &[&str]) {
        wait::until(
            Duration::from_secs(60),
            Duration::from_millis(200),
            || async {
                let agents = self.agents();
                if names.iter().all(|n| {
                    agents
                        .iter()
                        .any(|a| a["name"] == *n && a["status"] == "online")
                }) {
                    return Ok(());
                }
                Err(format!("agents not online: {agents:#?}"))
            },
        )
        .await;
    }

    async fn apply(&self, doc: Value) {
        let (status, body) = call(self.base(), "POST", "/api/v1/apply", Some(doc)).await;
        assert_eq!(status, 200, "{body}");
    }

    async fn release(&self, name: &str, image: &str) {
        let (status, body) = call(
            self.base(),
            "POST",
            "/api/v1/releases",
            Some(json!({"name": name, "components": [{"component": "web", "image": image}]})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }

    async fn promote(&self, release: &str, env: &str, strategy: Value) -> String {
        let (status, body) = call(
            self.base(),
            "POST",
            "/api/v1/promotions",
            Some(json!({"release": release, "environment": env, "strategy": strategy})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    async fn wait_promotion(&self, id: &str, limit: Duration) -> Value {
        wait::until(limit, Duration::from_millis(200), || async {
            let (_, p) = call(
                self.base(),
                "GET",
                &format!("/api/v1/promotions/{id}"),
                None,
            )
            .await;
            if ["deployed", "failed", "rolled_back", "rejected", "cancelled"]
                .contains(&p["state"].as_str().unwrap_or(""))
            {
                return Ok(p);
            }
            Err(format!("promotion stuck: {p:#}"))
        })
        .await
    }

    async fn job(&self, id: &str) -> Value {
        call(self.base(), "GET", &format!("/api/v1/jobs/{id}"), None)
            .await
            .1
    }

    async fn logs(&self, job: &str, task: &str) -> String {
        call(
            self.base(),
            "GET",
            &format!("/api/v1/jobs/{job}/tasks/{task}/logs"),
            None,
        )
        .await
        .1
        .to_string()
    }
}

/// An agent target: the agent by selector, its container named and
/// labelled for the test scope and the agent, healthy when the image's
/// Docker HEALTHCHECK passes.
fn target(scope: &DockerScope, env: &str, agent: &str, health: Value) -> Value {
    let mut labels = scope.labels();
    labels.insert(AGENT_LABEL.into(), agent.into());
    json!({
        "name": format!("{env}-{agent}"),
        "environment": env,
        "agent": {
            "selector": {"agent": agent},
            "container": {
                "name": scope.name(&format!("{env}-{agent}-{{component}}")),
                "labels": labels,
                "health": health,
            },
        },
    })
}

/// A health check that passes only once `/www/ready` exists in the
/// container ([`let_pass`] writes it): the test decides when a task may
/// finish.
fn held_health() -> Value {
    json!({
        "check": "command",
        "argv": ["/bin/busybox", "test", "-e", "/www/ready"],
        "interval": "300ms",
        "start_period": "120s",
        "retries": 1,
    })
}

fn docker_health() -> Value {
    json!({"check": "docker", "interval": "500ms", "retries": 3, "timeout": "2s"})
}

fn components(images: &TestImages) -> Value {
    json!([{"name": "web", "image": images.v1.split('@').next().unwrap(), "application": "shop"}])
}

/// What the hub's host page API says `host` runs: (environment, revision,
/// status, job) per deployment.
async fn hub_host(hub: &Hub, host: &str) -> Vec<(String, String, String, String)> {
    let url = format!("http://{}/api/v1/hosts/{host}", hub.api);
    let body: Value = match reqwest::get(&url).await {
        Ok(r) if r.status() == 200 => r.json().await.unwrap_or(Value::Null),
        _ => return Vec::new(),
    };
    body["deployments"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|d| {
                    (
                        d["environment"].as_str().unwrap_or_default().to_owned(),
                        d["revision"].as_str().unwrap_or_default().to_owned(),
                        d["status"].as_str().unwrap_or_default().to_owned(),
                        d["job"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn promotions_deploy_real_containers_through_two_agents_and_a_failed_canary_rolls_back() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let stack = Stack::start().await;
    let (a, b) = (scope.name("host-a"), scope.name("host-b"));
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let _agent_a = AgentProcess::start(
        &a,
        dirs[0].path(),
        &stack.endpoint(),
        Some(&stack.token()),
        &stack.hub,
    );
    let _agent_b = AgentProcess::start(
        &b,
        dirs[1].path(),
        &stack.endpoint(),
        Some(&stack.token()),
        &stack.hub,
    );
    stack.wait_online(&[&a, &b]).await;
    let listed = stack.agents();
    assert!(
        listed
            .iter()
            .all(|x| x["version"] == env!("CARGO_PKG_VERSION")
                && x["capabilities"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("docker"))),
        "{listed:#?}"
    );

    let mut targets = Vec::new();
    for env in ["dev", "stage", "prod"] {
        for agent in [&a, &b] {
            targets.push(target(&scope, env, agent, docker_health()));
        }
    }
    stack
        .apply(json!({
            "environments": [{"name": "dev"}, {"name": "stage"}, {"name": "prod"}],
            "components": components(images),
            "targets": targets,
        }))
        .await;
    stack.release("1.0.0", &images.v1).await;
    stack.release("2.0.0-broken", &images.broken).await;
    let v1 = kit::digest_of(&images.v1).to_owned();

    // dev → stage → prod, each onto both agents.
    let mut jobs = std::collections::BTreeMap::new();
    for env in ["dev", "stage", "prod"] {
        let p = stack
            .promote(
                "1.0.0",
                env,
                json!({"type": "all_at_once", "max_parallel": 2}),
            )
            .await;
        let p = stack.wait_promotion(&p, Duration::from_secs(120)).await;
        assert_eq!(p["state"], "deployed", "{env}: {p:#}");
        let job = stack.job(p["job_id"].as_str().unwrap()).await;
        jobs.insert(env, job["id"].as_str().unwrap().to_owned());
        for agent in [&a, &b] {
            let container = scope.name(&format!("{env}-{agent}-web"));
            assert!(kit::is_running(&container), "{container} runs");
            assert_eq!(
                kit::image_of(&container).as_deref(),
                Some(images.v1.as_str())
            );
            let labels = kit::labels(&container);
            assert_eq!(
                labels.get("sextant.job"),
                job["id"].as_str().map(str::to_owned).as_ref()
            );
            assert_eq!(
                labels.get("sextant.environment").map(String::as_str),
                Some(env)
            );
            assert_eq!(labels.get(AGENT_LABEL), Some(agent));
        }
        // The task's log names the agent that ran it.
        let task = &job["tasks"][0];
        let logs = stack
            .logs(job["id"].as_str().unwrap(), task["id"].as_str().unwrap())
            .await;
        assert!(logs.contains("agent sx-"), "{logs}");
    }

    // The agents report what runs to the hub: each host runs the v1 digest,
    // succeeded, in all three environments, each deployed by that
    // environment's job (the hub's host page links it).
    let deadline = Instant::now() + Duration::from_secs(60);
    for host in [&a, &b] {
        let within = deadline.saturating_duration_since(Instant::now());
        wait::until(within, Duration::from_millis(300), || async {
            let mut seen = hub_host(&stack.hub, host).await;
            seen.sort();
            let want: Vec<(String, String, String, String)> = ["dev", "prod", "stage"]
                .iter()
                .map(|e| {
                    (
                        (*e).to_owned(),
                        v1.clone(),
                        "succeeded".to_owned(),
                        jobs[e].clone(),
                    )
                })
                .collect();
            if seen == want {
                return Ok(());
            }
            Err(format!("hub for {host}: {seen:?}"))
        })
        .await;
    }

    // The job page links each agent target to the hub's page of its host,
    // and those pages answer.
    let page = reqwest::get(format!("{}/jobs/{}", stack.base(), jobs["prod"]))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for host in [&a, &b] {
        let link = format!("http://{}/hosts/{host}", stack.hub.api);
        assert!(page.contains(&format!("href=\"{link}\"")), "{page}");
        let hub_page = reqwest::get(&link).await.unwrap();
        assert_eq!(hub_page.status(), 200);
        let hub_page = hub_page.text().await.unwrap();
        assert!(
            hub_page.contains(&jobs["prod"][..12]),
            "the hub's host page names the job: {hub_page}"
        );
    }

    // A canary of an image whose health check fails: 50 % is prod-a alone;
    // its agent rolls it back and the job stops; prod-b keeps v1.
    let prod_b_id = kit::container_id(&scope.name(&format!("prod-{b}-web"))).unwrap();
    let p = stack
        .promote(
            "2.0.0-broken",
            "prod",
            json!({"type": "canary", "stages": [50, 100]}),
        )
        .await;
    let p = stack.wait_promotion(&p, Duration::from_secs(120)).await;
    assert_eq!(p["state"], "rolled_back", "{p:#}");
    let job = stack.job(p["job_id"].as_str().unwrap()).await;
    let tasks = job["tasks"].as_array().unwrap();
    let failed: Vec<&Value> = tasks.iter().filter(|t| t["state"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{job:#}");
    assert_eq!(failed[0]["error_type"], "health", "{job:#}");
    let canary_target = failed[0]["target"].as_str().unwrap().to_owned();
    let error = failed[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("agent sx-"),
        "the error names the agent: {error}"
    );
    for agent in [&a, &b] {
        let container = scope.name(&format!("prod-{agent}-web"));
        assert!(kit::is_running(&container), "{container} runs");
        assert_eq!(
            kit::image_of(&container).as_deref(),
            Some(images.v1.as_str()),
            "{container} runs v1 again (canary {canary_target})"
        );
    }
    let untouched = if canary_target.ends_with(b.as_str()) {
        scope.name(&format!("prod-{a}-web"))
    } else {
        scope.name(&format!("prod-{b}-web"))
    };
    if untouched == scope.name(&format!("prod-{b}-web")) {
        assert_eq!(
            kit::container_id(&untouched),
            Some(prod_b_id),
            "prod-b never replaced"
        );
    }

    // Issue 20 §1 on real agents: the stopped canary leaves no false drift.
    // Both prod hosts end in sync on 1.0.0 by name. The host the job never
    // reached was never told 2.0.0-broken: its only prod assignment is the
    // first prod job's.
    let untouched_host = if canary_target.ends_with(b.as_str()) {
        &a
    } else {
        &b
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut untouched_target = String::new();
    for host in [&a, &b] {
        let within = deadline.saturating_duration_since(Instant::now());
        let prod = wait::until(within, Duration::from_millis(300), || async {
            let url = format!("http://{}/api/v1/hosts/{host}", stack.hub.api);
            let body: Value = reqwest::get(&url)
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            let prod = body["deployments"]
                .as_array()
                .and_then(|d| d.iter().find(|d| d["environment"] == "prod"))
                .cloned()
                .unwrap_or(Value::Null);
            let settled = prod["desired"]["version"] == "1.0.0"
                && prod["desired"]["revision"] == v1.as_str()
                && prod["revision"] == v1.as_str()
                && prod["status"] == "succeeded"
                && prod["in_sync"] == true
                && prod["drift"].as_array().is_some_and(|d| d.is_empty());
            if settled {
                Ok(prod)
            } else {
                Err(format!("{host}'s prod row: {prod:#}"))
            }
        })
        .await;
        if host == untouched_host {
            untouched_target = prod["target"].as_str().unwrap().to_owned();
        }
    }
    let url = format!(
        "http://{}/api/v1/history?workload=web&environment=prod&target={untouched_target}&limit=100",
        stack.hub.api
    );
    let history: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    let desired: Vec<(String, String)> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "desired")
        .map(|e| {
            (
                e["version"].as_str().unwrap_or("?").to_owned(),
                e["origin"]["job"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        desired,
        [("1.0.0".to_owned(), jobs["prod"].clone())],
        "the canary never reached {untouched_host}: {history:#}"
    );
}

#[tokio::test]
async fn an_agent_killed_mid_task_reports_it_and_never_runs_it_twice() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let stack = Stack::start().await;
    let a = scope.name("host-k");
    let dir = tempfile::tempdir().unwrap();
    let mut agent = AgentProcess::start(
        &a,
        dir.path(),
        &stack.endpoint(),
        Some(&stack.token()),
        &stack.hub,
    );
    stack.wait_online(&[&a]).await;

    // Healthy only once /www/ready exists in the container, which the test
    // writes: the task is held in its health check until then.
    let health = held_health();
    stack
        .apply(json!({
            "environments": [{"name": "prod"}],
            "components": components(images),
            "targets": [target(&scope, "prod", &a, health)],
        }))
        .await;
    stack.release("1.0.0", &images.v1).await;
    let container = scope.name(&format!("prod-{a}-web"));
    let p = stack
        .promote("1.0.0", "prod", json!({"type": "all_at_once"}))
        .await;

    // Wait until the agent runs the task and its container is up, then
    // SIGKILL the agent.
    let first_key = wait::until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let agents = stack.agents();
            let running = agents[0]["current_tasks"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["state"] == "running"))
                .map(|t| t["run_key"].as_str().unwrap().to_owned());
            if let Some(key) = running
                && kit::is_running(&container)
            {
                return Ok(key);
            }
            Err(format!("the task never ran: {agents:#?}"))
        },
    )
    .await;
    let first_container = kit::container_id(&container).unwrap();
    agent.kill9();

    // Started again (no token: it has its identity). The orchestrator
    // delivers the same run key again; the agent's journal knows it was
    // interrupted, so it reports that rather than running it again.
    let _agent = AgentProcess::start(&a, dir.path(), &stack.endpoint(), None, &stack.hub);
    let p = wait::until(
        Duration::from_secs(90),
        Duration::from_millis(200),
        || async {
            // Let whatever container now runs pass its health check.
            if kit::is_running(&container) {
                let_pass(&container);
            }
            let (_, p) = call(
                stack.base(),
                "GET",
                &format!("/api/v1/promotions/{p}"),
                None,
            )
            .await;
            if ["deployed", "failed", "rolled_back"].contains(&p["state"].as_str().unwrap_or("")) {
                return Ok(p);
            }
            Err(format!("promotion stuck: {p:#}"))
        },
    )
    .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    let job = stack.job(p["job_id"].as_str().unwrap()).await;
    let task = &job["tasks"][0];
    assert_eq!(
        task["attempts"], 2,
        "the interrupted attempt was reported, then retried: {job:#}"
    );
    let logs = stack
        .logs(job["id"].as_str().unwrap(), task["id"].as_str().unwrap())
        .await;
    assert!(
        logs.contains("was interrupted") && logs.contains("not resumed"),
        "attempt 1 is reported interrupted: {logs}"
    );
    // The container now is attempt 2's, and attempt 1's run key ran once:
    // its journal record is finished with the interrupted outcome.
    let labels = kit::labels(&container);
    let second_key = labels.get("sextant.task").cloned().unwrap_or_default();
    assert_ne!(second_key, first_key, "{labels:?}");
    assert!(second_key.ends_with(".2"), "{labels:?}");
    let record: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("tasks").join(format!("{first_key}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["state"], "finished", "{record:#}");
    assert!(
        record["outcome"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("interrupted"),
        "{record:#}"
    );
    let _ = first_container;
}

/// A network namespace joined to this host by a veth pair on a /30 of
/// 10.213.0.0/16: the host side is `host_ip`, the namespace side
/// `ns_ip`. `cut` and `restore` take the host side down and up. Removed
/// on drop.
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn create(scope: &DockerScope) -> Self {
        let tag = &scope.id()[..8];
        let n = u32::from_str_radix(tag, 16).unwrap();
        let (a, b) = ((n >> 8) & 0xff, (n & 0x3f) * 4);
        let name = format!("sx-{tag}");
        let host_if = format!("sxh{tag}");
        let ns_if = format!("sxn{tag}");
        let host_ip = format!("10.213.{a}.{}", b + 1);
        let ns_ip = format!("10.213.{a}.{}", b + 2);
        ip(&["netns", "add", &name]);
        let ns = Self {
            name: name.clone(),
            host_if: host_if.clone(),
            host_ip: host_ip.clone(),
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "netns",
            "exec",
            &name,
            "ip",
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            &ns_if,
        ]);
        ip(&["netns", "exec", &name, "ip", "link", "set", &ns_if, "up"]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        ns
    }

    fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]);
    }

    fn restore(&self) {
        ip(&["link", "set", &self.host_if, "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// An agent in a network namespace of its own dials the orchestrator over
/// a veth link, not loopback; its link is cut while the task verifies
/// health and restored after the task finished: the orchestrator sees the
/// agent degraded, then the result arrives over the healed stream, and the
/// task ran once (one attempt, the container never replaced).
#[tokio::test]
async fn an_agent_in_its_own_network_namespace_survives_its_link_being_cut() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let netns = Netns::create(&scope);
    let data = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", data.path().join("orchestrator.db").display());
    let listen = format!("{}:0", netns.host_ip);
    let orchestrator = Process::start(
        data.path(),
        &db,
        "replica-a",
        &[
            "--agent-listen",
            &listen,
            "--agent-heartbeat",
            "1s",
            "--task-timeout",
            "90s",
        ],
    );
    let endpoint = orchestrator.agents.clone().unwrap();
    assert!(endpoint.contains(&netns.host_ip), "{endpoint}");
    let stack = Stack {
        hub: Hub::start(Backend::Sqlite, "").await,
        orchestrator,
        _data: data,
    };
    let name = scope.name("host-ns");
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens for OTLP on the far side: the agent's outbox keeps
    // its reports; this test is about the orchestrator channel.
    let otlp = format!("http://{}:9", netns.host_ip);
    let _agent = AgentProcess::start_in(
        Some(&netns.name),
        &name,
        dir.path(),
        &endpoint,
        Some(&stack.token()),
        &otlp,
        &[],
    );
    stack.wait_online(&[&name]).await;

    let health = held_health();
    stack
        .apply(json!({
            "environments": [{"name": "prod"}],
            "components": components(images),
            "targets": [target(&scope, "prod", &name, health)],
        }))
        .await;
    stack.release("1.0.0", &images.v1).await;
    let container = scope.name(&format!("prod-{name}-web"));
    let p = stack
        .promote("1.0.0", "prod", json!({"type": "all_at_once"}))
        .await;
    wait::until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let agents = stack.agents();
            let running = agents[0]["current_tasks"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["state"] == "running"));
            if running && kit::is_running(&container) {
                return Ok(());
            }
            Err(format!("the task never ran: {agents:#?}"))
        },
    )
    .await;
    let before = kit::container_id(&container).unwrap();

    // Cut the link: heartbeats stop arriving, so the agent is no longer
    // online.
    netns.cut();
    wait::until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let status = stack.agents()[0]["status"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            if status == "degraded" || status == "offline" {
                return Ok(());
            }
            Err(format!("still {status} with its link cut"))
        },
    )
    .await;
    // The task finishes while the link is down (Docker is local to the
    // agent); then the link comes back.
    let ok = Command::new("docker")
        .args(["exec", &container, "/bin/busybox", "touch", "/www/ready"])
        .status()
        .unwrap();
    assert!(ok.success());
    // Real time: the agent, another process, finishes the task meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    netns.restore();

    let p = stack.wait_promotion(&p, Duration::from_secs(120)).await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    let job = stack.job(p["job_id"].as_str().unwrap()).await;
    assert_eq!(job["tasks"][0]["attempts"], 1, "{job:#}");
    assert_eq!(
        kit::container_id(&container),
        Some(before),
        "the container was created once"
    );
    stack.wait_online(&[&name]).await;
}

/// A compose target through an agent: the agent receives the job's
/// artifacts (the compose-lock among them, checked against their sha256)
/// and applies the compose-lock service by service: the project's
/// container runs the release's digest on the project network.
#[tokio::test]
async fn a_compose_target_gets_its_compose_lock_through_the_agent() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let stack = Stack::start().await;
    let name = scope.name("host-c");
    let dir = tempfile::tempdir().unwrap();
    let _agent = AgentProcess::start(
        &name,
        dir.path(),
        &stack.endpoint(),
        Some(&stack.token()),
        &stack.hub,
    );
    stack.wait_online(&[&name]).await;
    let project = scope.name("shop");
    let mut t = target(&scope, "prod", &name, docker_health());
    t["deploy"] = json!({"template": "compose", "project": project});
    stack
        .apply(json!({
            "environments": [{"name": "prod"}],
            "components": components(images),
            "targets": [t],
        }))
        .await;
    stack.release("1.0.0", &images.v1).await;
    let p = stack
        .promote("1.0.0", "prod", json!({"type": "all_at_once"}))
        .await;
    let p = stack.wait_promotion(&p, Duration::from_secs(120)).await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    let container = format!("{project}-web");
    assert!(kit::is_running(&container), "{container} runs");
    assert_eq!(
        kit::image_of(&container).as_deref(),
        Some(images.v1.as_str())
    );
    let labels = kit::labels(&container);
    assert_eq!(
        labels.get("sextant.compose.project"),
        Some(&project),
        "{labels:?}"
    );
    let network = kit::inspect(&container).unwrap()["HostConfig"]["NetworkMode"].clone();
    assert_eq!(network, json!(format!("{project}_default")));

    // The job's artifacts reached the agent, the compose-lock among them.
    let job = stack.job(p["job_id"].as_str().unwrap()).await;
    let run_key = format!("{}.1", job["tasks"][0]["id"].as_str().unwrap());
    let artifacts = dir.path().join("artifacts").join(&run_key);
    let lock = std::fs::read_to_string(artifacts.join("compose-lock.yml"))
        .unwrap_or_else(|e| panic!("{}: {e}", artifacts.display()));
    assert!(lock.contains(kit::digest_of(&images.v1)), "{lock}");
    assert!(artifacts.join("release.json").exists());
}

/// Lets the task whose container is `container` pass its health check
/// (the `/www/ready` file the command check waits for).
fn let_pass(container: &str) {
    let _ = Command::new("docker")
        .args(["exec", container, "/bin/busybox", "touch", "/www/ready"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Watches the `create` events of `scope`'s containers from now on. A
/// stream, not `docker events --since` afterwards: the engine keeps only
/// its last few hundred events, and the health checks' exec events of
/// concurrent tests push older ones out.
struct CreateWatch(Child);

impl CreateWatch {
    fn start(scope: &DockerScope) -> Self {
        let child = Command::new("docker")
            .args([
                "events",
                "--filter",
                "type=container",
                "--filter",
                "event=create",
            ])
            .args(["--filter", &format!("label={}", scope.label_filter())])
            .args(["--format", "{{.Actor.Attributes.name}}"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker events");
        // Let it subscribe before anything is created.
        std::thread::sleep(Duration::from_millis(500));
        Self(child)
    }

    /// The names created so far, one entry per `create` event.
    fn stop(mut self) -> Vec<String> {
        use std::io::Read;
        // Events are delivered asynchronously; give the last one a moment.
        std::thread::sleep(Duration::from_secs(1));
        let _ = self.0.kill();
        let mut out = String::new();
        let _ = self
            .0
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out);
        let _ = self.0.wait();
        out.lines().map(str::to_owned).collect()
    }
}

impl Drop for CreateWatch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two `sextant orchestrator` processes on one fresh PostgreSQL database
/// and three agents, each given both agent endpoints. A rolling job (batch
/// 1) whose tasks wait in their health check until the test lets them
/// pass. The second target's agent is started once the job's lease has an
/// owner and dials that replica first. Once the first task succeeded and
/// the second runs on its agent, the replica holding the job's lease (and
/// that agent's stream) is SIGKILLed: its agents reconnect to the other
/// replica, which claims the job when the lease expires (job `attempts`
/// 2), waits for the same run key and finishes the job. Every task ran
/// once: attempt 1, one journal record per agent, each container created
/// once.
#[tokio::test]
async fn killing_one_of_two_orchestrator_processes_mid_rolling_job_lets_the_other_finish_it() {
    let images = test_images().await;
    let scope = DockerScope::new();
    let creates = CreateWatch::start(&scope);
    let db = TestDb::new(Backend::Postgres).await;
    let (data_a, data_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let flags = ["--agent-heartbeat", "1s", "--task-timeout", "90s"];
    let a = Process::start(data_a.path(), &db.url, "replica-a", &flags);
    let mut other = Process::start(data_b.path(), &db.url, "replica-b", &flags);
    let endpoints = [a.agents.clone().unwrap(), other.agents.clone().unwrap()];
    let mut names = ["replica-a", "replica-b"];
    let mut stack = Stack {
        hub: Hub::start(Backend::Sqlite, "").await,
        orchestrator: a,
        _data: data_a,
    };

    let hosts: Vec<String> = (0..3).map(|i| scope.name(&format!("host-r{i}"))).collect();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let start_agent = |i: usize, endpoints: &[String]| {
        AgentProcess::start(
            &hosts[i],
            dirs[i].path(),
            &endpoints.join(","),
            Some(&stack.token()),
            &stack.hub,
        )
    };
    // The agents of the first and last targets: one dials a first, one b.
    let mut agents = vec![
        start_agent(0, &endpoints),
        start_agent(2, &[endpoints[1].clone(), endpoints[0].clone()]),
    ];
    stack.wait_online(&[&hosts[0], &hosts[2]]).await;
    let listed = stack.agents();
    for replica in names {
        assert!(
            listed.iter().any(|x| x["replica"] == replica),
            "both replicas hold streams: {listed:#?}"
        );
    }

    // Healthy only once /www/ready exists in the container: the test
    // decides when each task may finish.
    let health = held_health();
    stack
        .apply(json!({
            "environments": [{"name": "prod"}],
            "components": components(images),
            "targets": hosts.iter().map(|h| target(&scope, "prod", h, health.clone())).collect::<Vec<_>>(),
        }))
        .await;
    stack.release("1.0.0", &images.v1).await;
    let p = stack
        .promote(
            "1.0.0",
            "prod",
            json!({"type": "rolling", "batch_size": 1, "pause": "1s"}),
        )
        .await;
    let container_of =
        |task: &Value| scope.name(&format!("{}-web", task["target"].as_str().unwrap()));
    // The task of `hosts[i]`'s target, in batch `i` (targets go by name).
    let task_of = |job: &Value, i: usize| {
        let target = format!("prod-{}", hosts[i]);
        let t = job["tasks"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["target"] == target.as_str()))
            .cloned()
            .unwrap_or(Value::Null);
        if !t.is_null() {
            assert_eq!(t["batch"], i, "{job:#}");
        }
        t
    };

    // The first task runs, held in its health check; the job's lease has
    // an owner.
    let (job_id, owner) = wait::until(
        Duration::from_secs(90),
        Duration::from_millis(100),
        || async {
            let (_, promotion) = call(
                stack.base(),
                "GET",
                &format!("/api/v1/promotions/{p}"),
                None,
            )
            .await;
            if let Some(job_id) = promotion["job_id"].as_str() {
                let job = stack.job(job_id).await;
                let first = task_of(&job, 0);
                if let Some(owner) = job["lease_owner"].as_str()
                    && first["state"] == "running"
                    && kit::is_running(&container_of(&first))
                {
                    return Ok((job_id.to_owned(), owner.to_owned()));
                }
            }
            Err(format!("the first task never ran: {promotion:#}"))
        },
    )
    .await;
    assert!(names.contains(&owner.as_str()), "{owner}");
    // The second target's agent dials the lease owner first, so the task
    // in flight when the owner is killed is on the killed replica's stream.
    let (owner_at, other_at) = if owner == names[0] {
        (&endpoints[0], &endpoints[1])
    } else {
        (&endpoints[1], &endpoints[0])
    };
    agents.push(start_agent(1, &[owner_at.clone(), other_at.clone()]));
    stack.wait_online(&[&hosts[1]]).await;
    let listed = stack.agents();
    let second = listed.iter().find(|x| x["name"] == hosts[1]).unwrap();
    assert_eq!(second["replica"], owner.as_str(), "{listed:#?}");

    // Let the first task pass; then wait for the second to run on its
    // agent, its container up and held in its health check.
    wait::until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let job = stack.job(&job_id).await;
            let first = task_of(&job, 0);
            if first["state"] == "succeeded" {
                return Ok(());
            }
            let_pass(&container_of(&first));
            Err(format!("the first task never finished: {job:#}"))
        },
    )
    .await;
    let held = wait::until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let job = stack.job(&job_id).await;
            let second = task_of(&job, 1);
            if second["state"] == "running" && kit::is_running(&container_of(&second)) {
                assert_eq!(job["state"], "running", "{job:#}");
                assert_eq!(job["attempts"], 1, "{job:#}");
                assert_eq!(job["lease_owner"], owner.as_str(), "{job:#}");
                return Ok(second);
            }
            Err(format!("the second task never ran: {job:#}"))
        },
    )
    .await;
    let held_container = container_of(&held);
    let held_id = kit::container_id(&held_container).unwrap();

    // SIGKILL the replica holding the job's lease; `stack` keeps talking
    // to the survivor.
    if owner == names[0] {
        std::mem::swap(&mut stack.orchestrator, &mut other);
        names.swap(0, 1);
    }
    let (survivor, dead) = (names[0], names[1]);
    other.kill9();

    // The survivor claims the job once the lease has expired, while the
    // held task still waits in its health check on the agent. (The claim
    // and the attempt count are two statements: wait for both.)
    wait::until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let job = stack.job(&job_id).await;
            if job["lease_owner"] == survivor && job["attempts"] == 2 {
                let t = job["tasks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|t| t["id"] == held["id"])
                    .unwrap();
                assert_ne!(t["state"], "succeeded", "the held task waits: {job:#}");
                return Ok(());
            }
            Err(format!("{dead}'s lease never moved: {job:#}"))
        },
    )
    .await;

    // Let every task pass until the promotion ends.
    let p = wait::until(
        Duration::from_secs(120),
        Duration::from_millis(200),
        || async {
            let job = stack.job(&job_id).await;
            for t in job["tasks"].as_array().unwrap() {
                if t["state"] == "running" || t["state"] == "dispatched" {
                    let_pass(&container_of(t));
                }
            }
            let (_, p) = call(
                stack.base(),
                "GET",
                &format!("/api/v1/promotions/{p}"),
                None,
            )
            .await;
            if ["deployed", "failed", "rolled_back", "cancelled"]
                .contains(&p["state"].as_str().unwrap_or(""))
            {
                return Ok(p);
            }
            Err(format!("promotion stuck: {p:#}\n{job:#}"))
        },
    )
    .await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    let job = stack.job(&job_id).await;
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["attempts"], 2, "one lease per replica: {job:#}");
    let tasks = job["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 3, "{job:#}");
    for t in tasks {
        assert_eq!(
            (t["state"].as_str(), t["attempts"].as_i64()),
            (Some("succeeded"), Some(1)),
            "{job:#}"
        );
    }

    // Each task ran once. The held container was never replaced; each
    // agent's journal holds one run key, attempt 1, finished; and Docker
    // created each container once.
    assert_eq!(kit::container_id(&held_container), Some(held_id));
    for (host, dir) in hosts.iter().zip(&dirs) {
        let t = tasks
            .iter()
            .find(|t| t["target"] == format!("prod-{host}"))
            .unwrap();
        let container = container_of(t);
        let run_key = format!("{}.1", t["id"].as_str().unwrap());
        assert_eq!(
            kit::labels(&container).get("sextant.task"),
            Some(&run_key),
            "{container}"
        );
        assert_eq!(
            kit::image_of(&container).as_deref(),
            Some(images.v1.as_str())
        );
        let journal: Vec<String> = std::fs::read_dir(dir.path().join("tasks"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        assert_eq!(journal, [format!("{run_key}.json")], "{host}");
        let record: Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("tasks").join(format!("{run_key}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(record["state"], "finished", "{host}: {record:#}");
    }
    let mut created = creates.stop();
    created.sort();
    let mut want: Vec<String> = tasks.iter().map(container_of).collect();
    want.sort();
    assert_eq!(created, want, "each container created once");

    // The agents of the dead replica moved to the survivor.
    wait::until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let listed = stack.agents();
            if listed.len() == 3
                && listed
                    .iter()
                    .all(|x| x["replica"] == survivor && x["status"] == "online")
            {
                return Ok(());
            }
            Err(format!("{listed:#?}"))
        },
    )
    .await;
    drop(agents);
}

/// Sextant's own traces (issue 7): one promotion, requested by a CD
/// pipeline that sends `traceparent`, held for an approval, then deployed
/// by an agent onto Docker, is one trace across the orchestrator and the
/// agent, exported over OTLP/gRPC to a test collector: the pipeline's span
/// → `POST /api/v1/promotions` → `promotion` → `approval.wait`,
/// `gate.evaluate`, `deployment.execute` → `task.dispatch` →
/// `agent.execute` (the agent process) → `health.check`. Logs go out over
/// OTLP too, carrying the trace. Then a real Prometheus scrapes the hub,
/// the orchestrator and the agent.
#[tokio::test]
async fn one_promotion_is_one_trace_across_the_orchestrator_and_the_agent_and_prometheus_scrapes_all_three()
 {
    let images = test_images().await;
    let scope = DockerScope::new();
    let sink = sextant_e2e::otlp_sink::OtlpSink::start().await;
    let otel: &[(&str, &str)] = &[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint),
        ("OTEL_LOGS_EXPORTER", "otlp"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "100"),
    ];
    let stack = Stack::start_env(otel).await;
    let host = scope.name("host-traced");
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start_in(
        None,
        &host,
        dir.path(),
        &stack.endpoint(),
        Some(&stack.token()),
        &format!("http://{}", stack.hub.grpc),
        otel,
    );
    stack.wait_online(&[&host]).await;
    stack
        .apply(json!({
            "environments": [{"name": "prod", "required_approvals": 1}],
            "components": components(images),
            "targets": [target(&scope, "prod", &host, docker_health())],
        }))
        .await;
    stack.release("1.0.0", &images.v1).await;

    // The CD pipeline's span, as its traceparent header.
    let pipeline_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let pipeline_span = "00f067aa0ba902b7";
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{}/api/v1/promotions", stack.base()))
        .header("x-sextant-actor", "alice")
        .header(
            "traceparent",
            format!("00-{pipeline_trace}-{pipeline_span}-01"),
        )
        .json(&json!({"release": "1.0.0", "environment": "prod",
            "strategy": {"type": "all_at_once"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let promotion: Value = res.json().await.unwrap();
    assert_eq!(promotion["state"], "awaiting_approval", "{promotion:#}");
    let traceparent = promotion["traceparent"].as_str().unwrap().to_owned();
    assert!(
        traceparent.starts_with(&format!("00-{pipeline_trace}-")),
        "the promotion joins the pipeline's trace: {traceparent}"
    );
    let id = promotion["id"].as_str().unwrap();
    // Real time: the orchestrator, another process, works on the promotion meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = client
        .post(format!("{}/api/v1/promotions/{id}/approve", stack.base()))
        .header("x-sextant-actor", "bob")
        .json(&json!({"comment": "ship it"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let p = stack.wait_promotion(id, Duration::from_secs(120)).await;
    assert_eq!(p["state"], "deployed", "{p:#}");

    let chain = [
        "promotion",
        "approval.wait",
        "gate.evaluate",
        "deployment.execute",
        "task.dispatch",
        "agent.execute",
        "health.check",
    ];
    let spans = sink
        .wait_spans(Duration::from_secs(30), |spans| {
            chain.iter().all(|name| {
                spans
                    .iter()
                    .any(|s| s.name == *name && s.trace_id == pipeline_trace)
            })
        })
        .await;
    let trace: Vec<_> = spans
        .iter()
        .filter(|s| s.trace_id == pipeline_trace)
        .collect();
    let one = |name: &str, service: &str| {
        let found: Vec<_> = trace
            .iter()
            .filter(|s| s.name == name && s.service == service)
            .collect();
        assert!(
            !found.is_empty(),
            "no {name} span from {service} in the trace; spans: {:#?}",
            spans
                .iter()
                .map(|s| (&s.service, &s.name, &s.trace_id))
                .collect::<Vec<_>>()
        );
        (*found[0]).clone()
    };
    let orchestrator = "sextant-orchestrator";
    let request = one("POST /api/v1/promotions", orchestrator);
    assert_eq!(request.parent_span_id, pipeline_span);
    assert_eq!(request.attributes["http.route"], "/api/v1/promotions");
    let root = one("promotion", orchestrator);
    assert_eq!(root.parent_span_id, request.span_id);
    assert_eq!(
        traceparent,
        format!("00-{pipeline_trace}-{}-01", root.span_id)
    );
    let wait = one("approval.wait", orchestrator);
    assert_eq!(wait.parent_span_id, root.span_id);
    assert_eq!(wait.attributes["sextant.promotion.outcome"], "approved");
    assert_eq!(wait.attributes["sextant.actor"], "sextant");
    let gates: Vec<_> = trace.iter().filter(|s| s.name == "gate.evaluate").collect();
    assert!(gates.iter().all(|g| g.parent_span_id == root.span_id));
    let outcomes: Vec<&str> = gates
        .iter()
        .map(|g| g.attributes["sextant.promotion.outcome"].as_str())
        .collect();
    assert!(
        outcomes.contains(&"awaiting_approval") && outcomes.contains(&"approved"),
        "{outcomes:?}"
    );
    let deployment = one("deployment.execute", orchestrator);
    assert_eq!(deployment.parent_span_id, root.span_id);
    let dispatch = one("task.dispatch", orchestrator);
    assert_eq!(dispatch.parent_span_id, deployment.span_id);
    // Across the process boundary: the agent's span is the dispatch's child.
    let execute = one("agent.execute", "sextant-agent");
    assert_eq!(execute.parent_span_id, dispatch.span_id);
    let health = one("health.check", "sextant-agent");
    assert_eq!(health.parent_span_id, execute.span_id);
    assert_eq!(health.attributes["probe"], "docker HEALTHCHECK");

    // The approval, another request, is recorded in the promotion's trace.
    let approve = one("promotion.approve", orchestrator);
    assert_eq!(approve.parent_span_id, root.span_id);
    assert_eq!(approve.attributes["actor"], "bob");

    // The desired state the job sent the hub carries the promotion's trace
    // context in the record's own fields, and what set it.
    let url = format!("http://{}/api/v1/history?environment=prod", stack.hub.api);
    let origin = wait::until(
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            let history: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
            history["items"]
                .as_array()
                .and_then(|items| items.iter().find(|e| e["kind"] == "desired"))
                .map(|e| e["origin"].clone())
                .ok_or(format!("no desired entry yet: {history}"))
        },
    )
    .await;
    assert_eq!(origin["trace_id"], pipeline_trace, "{origin}");
    assert_eq!(origin["span_id"], root.span_id.as_str(), "{origin}");
    assert_eq!(origin["promotion"], id, "{origin}");
    assert_eq!(origin["approved_by"], "bob", "{origin}");

    // Logs over OTLP carry the trace and the span they were logged in: the
    // orchestrator's job moves, the approval and the agent's task.
    wait::until(
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            let logs = sink.logs();
            let logged = |service: &str, body: &str, span: &str| {
                logs.iter().any(|l| {
                    l.service == service
                        && l.body == body
                        && l.trace_id == pipeline_trace
                        && l.span_id == span
                })
            };
            if logged(orchestrator, "Job moved", &deployment.span_id)
                && logged(orchestrator, "Approval recorded", &approve.span_id)
                && logged("sextant-agent", "Task started", &execute.span_id)
                && logged("sextant-agent", "Task succeeded", &execute.span_id)
            {
                return Ok(());
            }
            Err(format!(
                "logs without the trace: {:#?}",
                logs.iter()
                    .map(|l| (&l.service, &l.body, &l.trace_id))
                    .collect::<Vec<_>>()
            ))
        },
    )
    .await;

    // Over gRPC too: an OTLP export carrying `traceparent` metadata (a
    // collector's or an agent's span) is handled in a child span by the hub.
    let mut client = opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::connect(
        format!("http://{}", stack.hub.grpc),
    )
    .await
    .unwrap();
    let mut export = tonic::Request::new(
        opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest::default(),
    );
    let sender_span = "1122334455667788";
    export.metadata_mut().insert(
        "traceparent",
        format!("00-{pipeline_trace}-{sender_span}-01")
            .parse()
            .unwrap(),
    );
    client.export(export).await.unwrap();
    let spans = sink
        .wait_spans(Duration::from_secs(20), |spans| {
            spans.iter().any(|s| s.parent_span_id == sender_span)
        })
        .await;
    let ingest = spans
        .iter()
        .find(|s| s.parent_span_id == sender_span)
        .expect("the hub's export span is the sender's child");
    assert_eq!(
        (ingest.name.as_str(), ingest.service.as_str()),
        ("otlp.export", "sextant")
    );
    assert_eq!(ingest.trace_id, pipeline_trace);
    assert_eq!(ingest.attributes["signal"], "logs");

    // A real Prometheus scrapes all three services, and each shows its own
    // series: the hub its ingest, the orchestrator the deployment, the run
    // and the agent's task, the agent the task in its journal.
    let orchestrator_addr: std::net::SocketAddr =
        stack.base().trim_start_matches("http://").parse().unwrap();
    let agent_addr = agent.listen().await;
    let prometheus =
        sextant_e2e::prometheus::Prometheus::start(&[stack.hub.api, orchestrator_addr, agent_addr])
            .await;
    for query in [
        r#"sum(sextant_receiver_records_total{outcome="accepted"})"#,
        r#"max(sextant_deployments_total{env="prod",strategy="all_at_once",status="succeeded"})"#,
        r#"sum(sextant_workflow_runs_total{status="completed"})"#,
        r#"max(sextant_approval_duration_seconds_count{env="prod"})"#,
        r#"max(sextant_agent_tasks_total{type="deploy",status="succeeded"})"#,
        r#"max(sextant_agents_connected)"#,
        r#"sum(sextant_agent_tasks{kind="deploy",result="succeeded"})"#,
    ] {
        prometheus.wait_for(query, |v| v >= 1.0).await;
    }
    let up = prometheus.value("count(up == 1)").await;
    assert_eq!(up, Some(3.0), "hub, orchestrator and agent are up");
}
