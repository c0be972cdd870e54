//! The test stack shared by the orchestrator's end-to-end tests (its
//! `spawn_app`): one orchestrator replica (the real runtime, in process, on
//! a database of its own: SQLite, or PostgreSQL with [`Stack::start_on`])
//! with SSH targets on a real OpenSSH server (Debian's sshd on 127.0.0.1,
//! from the test kit, started the first time a test asks for a target),
//! driven through its REST API.
//!
//! Each target's deploy command records what it did under the test's
//! directory: `<target>/current` (the image), `<target>/runs` (one line per
//! run), and for blue-green `<target>/<slot>` plus the `live` symlink.

#![allow(dead_code, clippy::unwrap_used)]

pub mod process;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use sextant_e2e::sshd::Sshd;
use sextant_e2e::{Backend, TestDb, wait};
use sextant_orchestrator::app::{self, Running, RuntimeConfig};
use sextant_orchestrator::executor::ssh::SshExecutor;
use sextant_orchestrator::service::Settings;
use tokio_util::sync::CancellationToken;

/// How long a promotion or a job may take to reach the state a test waits
/// for.
const EVENTUALLY: Duration = Duration::from_secs(90);

pub fn digest(n: char) -> String {
    format!("sha256:{}", n.to_string().repeat(64))
}

pub struct Stack {
    /// Started by [`Stack::sshd`] when a test first needs it.
    sshd: OnceLock<Sshd>,
    pub root: tempfile::TempDir,
    pub data: tempfile::TempDir,
    /// The orchestrator's database, dropped with the stack.
    pub db: TestDb,
    pub running: Option<(Running, CancellationToken)>,
    pub base: String,
    pub http: reqwest::Client,
    /// The hub's API and OTLP/HTTP base URLs, when the stack has a hub.
    pub hub: Option<(String, String)>,
    /// Registries (`host:port`) reached over plain HTTP to resolve tags.
    pub insecure_registries: Vec<String>,
    /// Trace and log link templates of the replicas (none by default).
    pub links: sextant_kit::links::TraceLinks,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with_hub(None).await
    }

    /// A stack whose orchestrator stores its state on `backend`.
    pub async fn start_on(backend: Backend) -> Self {
        Self::start_inner(None, Vec::new(), backend, Default::default()).await
    }

    /// The OpenSSH server the stack's targets live on.
    pub fn sshd(&self) -> &Sshd {
        self.sshd.get_or_init(Sshd::start)
    }

    /// What sshd logged so far, empty if no test asked for it (a failure
    /// message should not start it).
    pub fn sshd_log(&self) -> String {
        self.sshd.get().map(Sshd::log).unwrap_or_default()
    }

    /// A stack whose orchestrator reads `hub`'s API (gates, canary
    /// analysis) and sends it desired state.
    pub async fn start_for(hub: &sextant_e2e::Hub) -> Self {
        Self::start_with_hub(Some((
            format!("http://{}", hub.api),
            format!("http://{}", hub.http),
        )))
        .await
    }

    /// A stack that resolves tags against `registry` (`host:port`) over
    /// plain HTTP.
    pub async fn start_trusting(registry: &str) -> Self {
        Self::start_inner(
            None,
            vec![registry.to_owned()],
            Backend::Sqlite,
            Default::default(),
        )
        .await
    }

    pub async fn start_with_hub(hub: Option<(String, String)>) -> Self {
        Self::start_inner(hub, Vec::new(), Backend::Sqlite, Default::default()).await
    }

    /// A stack whose replicas show trace and log links made by `links`.
    pub async fn start_linked(links: sextant_kit::links::TraceLinks) -> Self {
        Self::start_inner(None, Vec::new(), Backend::Sqlite, links).await
    }

    async fn start_inner(
        hub: Option<(String, String)>,
        insecure_registries: Vec<String>,
        backend: Backend,
        links: sextant_kit::links::TraceLinks,
    ) -> Self {
        let root = tempfile::tempdir().expect("root");
        let data = tempfile::tempdir().expect("data");
        let db = TestDb::new(backend).await;
        let mut stack = Self {
            sshd: OnceLock::new(),
            root,
            data,
            db,
            running: None,
            base: String::new(),
            http: reqwest::Client::new(),
            hub,
            insecure_registries,
            links,
        };
        stack.start_replica("replica-a").await;
        stack
    }

    pub async fn start_replica(&mut self, replica: &str) {
        let config = RuntimeConfig {
            listeners: Default::default(),
            metrics_require_token: false,
            links: self.links.clone(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            database_url: self.db.url.clone(),
            data_dir: self.data.path().to_owned(),
            hub_api: self.hub.as_ref().map(|h| h.0.clone()),
            hub_otlp: self.hub.as_ref().map(|h| h.1.clone()),
            hub_token: None,
            tokens: Vec::new(),
            insecure_registries: self.insecure_registries.clone(),
            agent_listen: None,
            agent_tls: Default::default(),
            agent_heartbeat: Duration::from_secs(30),
            registry_auth: Default::default(),
            api_rate_limit: Default::default(),
            settings: Settings {
                replica: replica.into(),
                lease: Duration::from_secs(2),
                poll: Duration::from_millis(200),
                task_timeout: Duration::from_secs(60),
                task_attempts: 2,
            },
        };
        let cancel = CancellationToken::new();
        let running = app::start(config, Arc::new(SshExecutor::new()), cancel.clone())
            .await
            .expect("orchestrator starts");
        self.base = format!("http://{}", running.addr);
        self.running = Some((running, cancel));
    }

    /// Stops the replica as a crash would: its futures are dropped, its
    /// leases are left to expire.
    pub async fn crash(&mut self) {
        if let Some((running, cancel)) = self.running.take() {
            cancel.cancel();
            let _ = running.wait().await;
        }
    }

    pub fn dir(&self, target: &str) -> PathBuf {
        self.root.path().join(target)
    }

    /// An SSH target whose deploy command records its run; `health` is a
    /// shell test run over SSH.
    pub fn target(
        &self,
        name: &str,
        environment: &str,
        extra: &str,
        health: Option<&str>,
    ) -> Value {
        let dir = self.dir(name);
        let command = format!(
            "mkdir -p {d} && echo \"$SEXTANT_TASK_ID $SEXTANT_IMAGE\" >> {d}/runs && {extra} \
             echo \"$SEXTANT_IMAGE\" > {d}/current",
            d = dir.display()
        );
        let mut t = json!({
            "name": name,
            "environment": environment,
            "ssh": self.sshd().ssh_json(),
            "deploy": {"template": "custom", "command": command},
        });
        if let Some(h) = health {
            t["health"] =
                json!({"command": h, "retries": 2, "interval": "200ms", "timeout": "10s"});
        }
        t
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        actor: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.http.get(&url),
            _ => self.http.post(&url),
        }
        .header("x-sextant-actor", actor);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("API answers");
        let status = res.status().as_u16();
        let body = res.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn apply(&self, doc: Value) {
        let (status, body) = self
            .http
            .post(format!("{}/api/v1/apply", self.base))
            .body(serde_json::to_string(&doc).expect("json"))
            .send()
            .await
            .map(|r| (r.status().as_u16(), r))
            .expect("apply");
        assert_eq!(status, 200, "{:?}", body.text().await);
    }

    pub async fn release(&self, name: &str, d: &str) {
        let (status, body) = self
            .call(
                "POST",
                "/api/v1/releases",
                "ci",
                Some(json!({"name": name, "components": [{"component": "web", "image": format!("127.0.0.1:5000/web@{d}")}]})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    pub async fn promote(&self, release: &str, env: &str, actor: &str, strategy: Value) -> Value {
        let (status, body) = self
            .call(
                "POST",
                "/api/v1/promotions",
                actor,
                Some(json!({"release": release, "environment": env, "strategy": strategy})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// Promotes and waits until the promotion has ended: deployed, rejected,
    /// failed, rolled back or cancelled.
    pub async fn promote_to_end(
        &self,
        release: &str,
        env: &str,
        actor: &str,
        strategy: Value,
    ) -> Value {
        let p = self.promote(release, env, actor, strategy).await;
        self.wait_promotion(
            p["id"].as_str().unwrap(),
            &["deployed", "rejected", "failed", "rolled_back", "cancelled"],
        )
        .await
    }

    /// Waits until the promotion reaches a state in `states`.
    pub async fn wait_promotion(&self, id: &str, states: &[&str]) -> Value {
        let url = &format!("/api/v1/promotions/{id}");
        wait::until(EVENTUALLY, Duration::from_millis(200), || async move {
            let (_, p) = self.call("GET", url, "t", None).await;
            if states.contains(&p["state"].as_str().unwrap_or("")) {
                return Ok(p);
            }
            Err(format!("promotion stuck: {p:#}\n{}", self.sshd_log()))
        })
        .await
    }

    pub async fn job(&self, id: &str) -> Value {
        self.call("GET", &format!("/api/v1/jobs/{id}"), "t", None)
            .await
            .1
    }

    /// Runs the `sextant` binary (build it first: `cargo build --bin
    /// sextant`) against this stack's orchestrator as `actor`. Async, so
    /// the orchestrator in this runtime keeps answering meanwhile.
    pub async fn cli(&self, actor: &str, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(sextant_e2e::sextant_binary())
            .args(args)
            .args(["--orchestrator", &self.base, "--as", actor])
            .env_remove("SEXTANT_CONFIG")
            .env_remove("SEXTANT_TOKEN")
            .env_remove("SEXTANT_ACTOR")
            .env_remove("SEXTANT_ORCHESTRATOR_URL")
            .output()
            .await
            .expect("run sextant")
    }

    /// Waits until the job reaches a state in `states`.
    pub async fn wait_job(&self, id: &str, states: &[&str]) -> Value {
        wait::until(EVENTUALLY, Duration::from_millis(200), || async {
            let job = self.job(id).await;
            if states.contains(&job["state"].as_str().unwrap_or("")) {
                return Ok(job);
            }
            Err(format!("job stuck: {job:#}\n{}", self.sshd_log()))
        })
        .await
    }

    pub fn current(&self, target: &str) -> String {
        std::fs::read_to_string(self.dir(target).join("current"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    pub fn runs(&self, target: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir(target).join("runs"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

pub fn image(d: &str) -> String {
    format!("127.0.0.1:5000/web@{d}")
}

pub fn component() -> Value {
    json!([{"name": "web", "image": "127.0.0.1:5000/web", "application": "shop"}])
}
