//! The whole flow in process: a hub (its UI under test) and an orchestrator
//! with tokens for three people, both on `backend`, and two agents in dry-run
//! mode on the orchestrator's agent channel. The orchestrator sends desired
//! state to the hub; the agents' dry-run deploys succeed after a delay, or
//! fail for an image containing `bad`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use serde_json::{Value, json};
use sextant_agent::channel::{self, ChannelConfig, Runner};
use sextant_e2e::{Backend, TestDb, wait};
use sextant_kit::Secret;
use sextant_orchestrator::api::TokenConfig as OrchestratorToken;
use sextant_orchestrator::api::auth::Scope as OrchestratorScope;
use sextant_orchestrator::app::{self, Running, RuntimeConfig};
use sextant_orchestrator::executor::ssh::SshExecutor;
use sextant_orchestrator::service::Settings;
use sextant_receiver::auth::TokenConfig as HubToken;
use sextant_receiver::{Application, HubConfig};
use tokio_util::sync::CancellationToken;

/// Requests promotions, approves: `deploy` on the orchestrator, `read` on the hub.
pub const ALICE: &str = "alice-token-0123456789";
pub const BOB: &str = "bob-token-0123456789";
/// Reads everything, changes nothing.
pub const VIEWER: &str = "viewer-token-0123456789";
/// Known to the orchestrator only (`deploy`): signs in to the flow pages.
pub const DEPLOYER: &str = "deployer-token-0123456789";
/// The orchestrator's token for sending desired state to the hub.
const INGEST: &str = "ingest-token-0123456789";
const TENANT: &str = "acme";

pub const GOOD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
pub const NEWER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
/// The dry-run agents fail every image containing `bad`.
pub const BAD: &str = "sha256:badbadbadbadbadbadbadbadbadbadbadbadbadbadbadbadbadbadbadbadbad0";

pub struct Flow {
    /// The hub's API and UI: `http://127.0.0.1:port`.
    pub hub: String,
    /// The hub's OTLP/HTTP receiver.
    hub_otlp: String,
    /// The orchestrator's API.
    pub orchestrator: String,
    pub http: reqwest::Client,
    hub_cancel: CancellationToken,
    hub_task: Option<tokio::task::JoinHandle<Result<(), sextant_receiver::app::AppError>>>,
    orchestrator_run: Option<(Running, CancellationToken)>,
    agents: Vec<CancellationToken>,
    _dbs: (TestDb, TestDb),
    _data: tempfile::TempDir,
}

fn hub_token(token: &str, subject: &str, scopes: &[&str]) -> HubToken {
    HubToken {
        token: Secret::new(token),
        tenant: TENANT.into(),
        subject: Some(subject.into()),
        scopes: scopes
            .iter()
            .map(|s| serde_json::from_value(json!(s)).expect("scope"))
            .collect(),
    }
}

fn orchestrator_token(token: &str, subject: &str, scope: OrchestratorScope) -> OrchestratorToken {
    OrchestratorToken {
        scopes: vec![scope],
        ..OrchestratorToken::admin(token, TENANT, subject)
    }
}

impl Flow {
    /// Everything started; the environments dev → stage → prod (prod needs
    /// one approval, stage rolls back by hand), one target each on agent
    /// `agent-a`, the component `web` of application `shop`, and the
    /// releases `good` and `newer` (`bad` fails its deploys).
    pub async fn start(backend: Backend, task_delay: Duration) -> Self {
        let hub_db = TestDb::new(backend).await;
        let orchestrator_db = TestDb::new(backend).await;
        let data = tempfile::tempdir().expect("data dir");
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let config = HubConfig {
            otlp_grpc_addr: any,
            otlp_http_addr: any,
            api_addr: any,
            database_url: Some(hub_db.url.clone()),
            environments: vec!["dev".into(), "stage".into(), "prod".into()],
            ui_refresh_seconds: 1,
            tokens: vec![
                hub_token(ALICE, "alice", &["read"]),
                hub_token(BOB, "bob", &["read"]),
                hub_token(VIEWER, "viewer", &["read"]),
                hub_token(INGEST, "orchestrator", &["ingest"]),
            ],
            ..HubConfig::default()
        };
        let mut hub_app = Application::build(&config).await.expect("hub builds");
        let hub = format!("http://{}", hub_app.api_addr());
        let hub_otlp = format!("http://{}", hub_app.otlp_http_addr());
        let runtime = RuntimeConfig {
            listeners: Default::default(),
            metrics_require_token: false,
            links: Default::default(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            database_url: orchestrator_db.url.clone(),
            data_dir: data.path().to_owned(),
            hub_api: Some(hub.clone()),
            hub_otlp: Some(hub_otlp.clone()),
            hub_token: Some(INGEST.into()),
            tokens: vec![
                orchestrator_token(ALICE, "alice", OrchestratorScope::Deploy),
                orchestrator_token(BOB, "bob", OrchestratorScope::Deploy),
                orchestrator_token(VIEWER, "viewer", OrchestratorScope::Read),
                orchestrator_token(DEPLOYER, "deployer", OrchestratorScope::Deploy),
            ],
            insecure_registries: Vec::new(),
            agent_listen: Some("127.0.0.1:0".parse().expect("addr")),
            agent_tls: Default::default(),
            agent_heartbeat: Duration::from_secs(1),
            registry_auth: Default::default(),
            api_rate_limit: Default::default(),
            settings: Settings {
                replica: "ui-flow".into(),
                lease: Duration::from_secs(2),
                poll: Duration::from_millis(200),
                task_timeout: Duration::from_secs(60),
                task_attempts: 1,
            },
        };
        let cancel = CancellationToken::new();
        let running = app::start(runtime, Arc::new(SshExecutor::new()), cancel.clone())
            .await
            .expect("orchestrator starts");
        let orchestrator = format!("http://{}", running.addr);
        let agent_endpoint = format!(
            "http://{}",
            running.agent_addr.expect("the agent channel listens")
        );
        hub_app.link_orchestrator(&orchestrator);
        let hub_cancel = CancellationToken::new();
        let hub_task = tokio::spawn(hub_app.run_until_stopped(hub_cancel.clone()));
        let mut flow = Self {
            hub,
            hub_otlp,
            orchestrator,
            http: reqwest::Client::new(),
            hub_cancel,
            hub_task: Some(hub_task),
            orchestrator_run: Some((running, cancel)),
            agents: Vec::new(),
            _dbs: (hub_db, orchestrator_db),
            _data: data,
        };
        for (name, pool) in [("agent-a", "a"), ("agent-b", "b")] {
            flow.start_agent(&agent_endpoint, name, pool, task_delay)
                .await;
        }
        flow.configure().await;
        flow
    }

    async fn start_agent(&mut self, endpoint: &str, name: &str, pool: &str, delay: Duration) {
        let (status, token) = self
            .api("POST", "/api/v1/agents/tokens", ALICE, Some(json!({})))
            .await;
        assert_eq!(status, 201, "{token}");
        let dir = self._data.path().join(name);
        std::fs::create_dir_all(&dir).expect("agent dir");
        let config = ChannelConfig {
            endpoints: vec![endpoint.to_owned()],
            registration_token: token["token"].as_str().map(Secret::new),
            name: name.into(),
            labels: BTreeMap::from([("pool".to_owned(), pool.to_owned())]),
            data_dir: dir,
            max_backoff: Duration::from_millis(500),
            tls: Default::default(),
        };
        let runner = Runner::DryRun {
            delay,
            executed: Arc::new(AtomicU64::new(0)),
            fail_image: Some("bad".into()),
        };
        let cancel = CancellationToken::new();
        tokio::spawn(channel::run(config, runner, cancel.clone()));
        self.agents.push(cancel);
        wait::until(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                let (_, agents) = self.api("GET", "/api/v1/agents", ALICE, None).await;
                let online = agents
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| a["name"] == name && a["status"] == "online");
                if online {
                    Ok(())
                } else {
                    Err(format!("{name} not online: {agents}"))
                }
            },
        )
        .await;
    }

    async fn configure(&self) {
        let target = |name: &str, env: &str| json!({"name": name, "environment": env, "agent": {"selector": {"pool": "a"}}});
        let doc = json!({
            "environments": [
                {"name": "dev"},
                {"name": "stage", "rollback": "manual"},
                {"name": "prod", "production": true, "required_approvals": 1},
            ],
            "components": [{"name": "web", "image": "127.0.0.1:5000/web", "application": "shop"}],
            "targets": [target("dev-1", "dev"), target("stage-1", "stage"), target("prod-1", "prod")],
        });
        let (status, body) = self.api("POST", "/api/v1/apply", ALICE, Some(doc)).await;
        assert_eq!(status, 200, "{body}");
        for (name, digest) in [("good", GOOD), ("newer", NEWER), ("bad", BAD)] {
            let release = json!({"name": name, "components": [{"component": "web", "image": format!("127.0.0.1:5000/web@{digest}")}]});
            let (status, body) = self
                .api("POST", "/api/v1/releases", ALICE, Some(release))
                .await;
            assert_eq!(status, 201, "{body}");
        }
    }

    /// Reports, as a host's agent would over OTLP, that `host` of `target`
    /// in `environment` runs `web` at `digest` with `status`.
    pub async fn report(
        &self,
        host: &str,
        environment: &str,
        target: &str,
        digest: &str,
        status: &str,
    ) {
        let kv = |k: &str, v: &str| json!({"key": k, "value": {"stringValue": v}});
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let record = json!({
            "eventName": "sextant.deployment.observed",
            "timeUnixNano": now.to_string(),
            "attributes": [
                kv("sextant.application", "shop"), kv("sextant.workload", "web"),
                kv("deployment.environment.name", environment), kv("sextant.target", target),
                kv("host.name", host), kv("sextant.revision", digest), kv("deployment.status", status),
            ],
        });
        let body = json!({"resourceLogs": [{"resource": {"attributes": []}, "scopeLogs": [{"logRecords": [record]}]}]});
        let res = self
            .http
            .post(format!("{}/v1/logs", self.hub_otlp))
            .bearer_auth(INGEST)
            .json(&body)
            .send()
            .await
            .expect("the hub takes OTLP");
        assert_eq!(res.status().as_u16(), 200);
    }

    /// Calls the orchestrator's API as `token`: (status, JSON).
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.orchestrator);
        let mut req = match method {
            "GET" => self.http.get(&url),
            _ => self.http.post(&url),
        }
        .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("the orchestrator answers");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Waits until `GET path`'s `state` is one of `states`.
    pub async fn wait_state(&self, path: &str, states: &[&str]) -> Value {
        wait::until(
            Duration::from_secs(90),
            Duration::from_millis(200),
            || async {
                let (_, v) = self.api("GET", path, ALICE, None).await;
                if states.contains(&v["state"].as_str().unwrap_or("")) {
                    Ok(v)
                } else {
                    Err(format!("{path} is not {states:?}: {v:#}"))
                }
            },
        )
        .await
    }

    /// The newest promotion of `release` into `environment`.
    pub async fn promotion_of(&self, release: &str, environment: &str) -> Value {
        let (_, list) = self
            .api("GET", "/api/v1/promotions?limit=1000", ALICE, None)
            .await;
        list.as_array()
            .into_iter()
            .flatten()
            .find(|p| p["release"] == release && p["environment"] == environment)
            .cloned()
            .unwrap_or_else(|| panic!("no promotion of {release} into {environment}: {list}"))
    }

    pub async fn stop(mut self) {
        for a in &self.agents {
            a.cancel();
        }
        if let Some((running, cancel)) = self.orchestrator_run.take() {
            cancel.cancel();
            let _ = running.wait().await;
        }
        self.hub_cancel.cancel();
        if let Some(task) = self.hub_task.take() {
            let _ = task.await;
        }
    }
}
