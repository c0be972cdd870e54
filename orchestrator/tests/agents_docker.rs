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
//!   cut mid-task and restored: the task runs once.
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
use sextant_e2e::{Backend, Hub};

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
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(t) = token {
            cmd.args(["--registration-token", t]);
        }
        Self {
            child: cmd.spawn().expect("start sextant agent run"),
        }
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
        let hub = Hub::start(Backend::Sqlite, "").await;
        hub.wait_ready().await;
        let data = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", data.path().join("orchestrator.db").display());
        let hub_url = format!("http://{}", hub.api);
        let hub_otlp = format!("http://{}", hub.http);
        let orchestrator = Process::start(
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
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let agents = self.agents();
            if names.iter().all(|n| {
                agents
                    .iter()
                    .any(|a| a["name"] == *n && a["status"] == "online")
            }) {
                return;
            }
            assert!(Instant::now() < deadline, "agents not online: {agents:#?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
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
        let deadline = Instant::now() + limit;
        loop {
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
                return p;
            }
            assert!(Instant::now() < deadline, "promotion stuck: {p:#}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
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
        loop {
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
                break;
            }
            assert!(Instant::now() < deadline, "hub for {host}: {seen:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
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
    let health = json!({
        "check": "command",
        "argv": ["/bin/busybox", "test", "-e", "/www/ready"],
        "interval": "300ms",
        "start_period": "120s",
        "retries": 1,
    });
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
    let deadline = Instant::now() + Duration::from_secs(60);
    let first_key = loop {
        let agents = stack.agents();
        let running = agents[0]["current_tasks"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["state"] == "running"))
            .map(|t| t["run_key"].as_str().unwrap().to_owned());
        if let Some(key) = running
            && kit::is_running(&container)
        {
            break key;
        }
        assert!(Instant::now() < deadline, "the task never ran: {agents:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let first_container = kit::container_id(&container).unwrap();
    agent.kill9();

    // Started again (no token: it has its identity). The orchestrator
    // delivers the same run key again; the agent's journal knows it was
    // interrupted, so it reports that rather than running it again.
    let _agent = AgentProcess::start(&a, dir.path(), &stack.endpoint(), None, &stack.hub);
    let deadline = Instant::now() + Duration::from_secs(90);
    let p = loop {
        // Let whatever container now runs pass its health check.
        if kit::is_running(&container) {
            let _ = Command::new("docker")
                .args(["exec", &container, "/bin/busybox", "touch", "/www/ready"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let (_, p) = call(
            stack.base(),
            "GET",
            &format!("/api/v1/promotions/{p}"),
            None,
        )
        .await;
        if ["deployed", "failed", "rolled_back"].contains(&p["state"].as_str().unwrap_or("")) {
            break p;
        }
        assert!(Instant::now() < deadline, "promotion stuck: {p:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
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
    );
    stack.wait_online(&[&name]).await;

    let health = json!({
        "check": "command",
        "argv": ["/bin/busybox", "test", "-e", "/www/ready"],
        "interval": "300ms",
        "start_period": "120s",
        "retries": 1,
    });
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
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let agents = stack.agents();
        let running = agents[0]["current_tasks"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["state"] == "running"));
        if running && kit::is_running(&container) {
            break;
        }
        assert!(Instant::now() < deadline, "the task never ran: {agents:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = kit::container_id(&container).unwrap();

    // Cut the link: heartbeats stop arriving, so the agent is no longer
    // online.
    netns.cut();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = stack.agents()[0]["status"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if status == "degraded" || status == "offline" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} with its link cut"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The task finishes while the link is down (Docker is local to the
    // agent); then the link comes back.
    let ok = Command::new("docker")
        .args(["exec", &container, "/bin/busybox", "touch", "/www/ready"])
        .status()
        .unwrap();
    assert!(ok.success());
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
