//! The agent channel in process: real orchestrator replicas (gRPC and REST
//! on 127.0.0.1 port 0, SQLite or PostgreSQL) and real agent channel clients
//! from `sextant-agent` in dry-run mode (no Docker), so the protocol's rules
//! are checked without containers: registration tokens, revocation,
//! selectors, the offline deadline, a stream cut mid-task, and a replica
//! killed during a rolling job. The Docker side is `agents_docker.rs`.
//! The API's `/health` (database and agents) and its per-tenant rate
//! limit are checked here too, on the same replicas.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sextant_agent::channel::{self, ChannelConfig, Runner};
use sextant_e2e::pki::{CertFiles, Pki};
use sextant_e2e::wait;
use sextant_e2e::{Backend, TestDb};
use sextant_exporters::sender::TlsConfig;
use sextant_kit::serve::ServerTlsConfig;
use sextant_orchestrator::app::{self, RateLimitConfig, Running, RuntimeConfig};
use sextant_orchestrator::executor::ssh::SshExecutor;
use sextant_orchestrator::service::Settings;
use tokio_util::sync::CancellationToken;

const DIGEST_1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const DIGEST_2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// Logs to the test's output when RUST_LOG is set.
fn trace() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

struct Replica {
    running: Option<Running>,
    cancel: CancellationToken,
    base: String,
    agents: String,
}

impl Replica {
    async fn start(db: &str, data: &Path, name: &str, task_timeout: Duration) -> Self {
        Self::start_with(db, data, name, task_timeout, |_| {}).await
    }

    async fn start_with(
        db: &str,
        data: &Path,
        name: &str,
        task_timeout: Duration,
        configure: impl FnOnce(&mut RuntimeConfig),
    ) -> Self {
        trace();
        let mut config = RuntimeConfig {
            listeners: Default::default(),
            metrics_require_token: false,
            links: Default::default(),
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: db.to_owned(),
            data_dir: data.to_owned(),
            hub_api: None,
            hub_otlp: None,
            hub_token: None,
            tokens: Vec::new(),
            insecure_registries: Vec::new(),
            agent_listen: Some("127.0.0.1:0".parse().unwrap()),
            agent_tls: Default::default(),
            agent_heartbeat: Duration::from_secs(1),
            registry_auth: Default::default(),
            api_rate_limit: Default::default(),
            settings: Settings {
                replica: name.into(),
                lease: Duration::from_secs(2),
                poll: Duration::from_millis(200),
                task_timeout,
                task_attempts: 1,
            },
        };
        configure(&mut config);
        let cancel = CancellationToken::new();
        let running = app::start(config, Arc::new(SshExecutor::new()), cancel.clone())
            .await
            .expect("orchestrator starts");
        Self {
            base: format!("http://{}", running.addr),
            agents: format!("http://{}", running.agent_addr.unwrap()),
            running: Some(running),
            cancel,
        }
    }

    /// Stops the replica as a crash would: its listeners close, its leases
    /// are left to expire.
    async fn crash(&mut self) {
        self.cancel.cancel();
        if let Some(r) = self.running.take() {
            let _ = r.wait().await;
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let http = reqwest::Client::new();
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => http.get(&url),
            _ => http.post(&url),
        }
        .header("x-sextant-actor", "ops");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("API answers");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn token(&self) -> String {
        let (status, body) = self
            .call("POST", "/api/v1/agents/tokens", Some(json!({})))
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    async fn agents(&self) -> Vec<Value> {
        let (status, body) = self.call("GET", "/api/v1/agents", None).await;
        assert_eq!(status, 200, "{body}");
        body.as_array().cloned().unwrap()
    }

    async fn wait_agents_online(&self, names: &[&str]) {
        wait::until(
            Duration::from_secs(20),
            Duration::from_millis(100),
            || async {
                let agents = self.agents().await;
                let online = names.iter().all(|n| {
                    agents
                        .iter()
                        .any(|a| a["name"] == *n && a["status"] == "online")
                });
                if online {
                    return Ok(());
                }
                Err(format!("agents not online: {agents:#?}"))
            },
        )
        .await;
    }

    /// Applies the configuration with `targets` and creates releases r1
    /// and r2.
    async fn setup(&self, targets: Value) {
        self.apply(targets).await;
        for (name, d) in [("r1", DIGEST_1), ("r2", DIGEST_2)] {
            let (status, body) = self
                .call(
                    "POST",
                    "/api/v1/releases",
                    Some(json!({"name": name, "components": [{"component": "web", "image": format!("127.0.0.1:5000/web@{d}")}]})),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
    }

    async fn apply(&self, targets: Value) {
        let doc = json!({
            "environments": [{"name": "prod"}],
            "components": [{"name": "web", "image": "127.0.0.1:5000/web", "application": "shop"}],
            "targets": targets,
        });
        let (status, body) = self.call("POST", "/api/v1/apply", Some(doc)).await;
        assert_eq!(status, 200, "{body}");
    }

    async fn promote(&self, release: &str, strategy: Value) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/api/v1/promotions",
                Some(json!({"release": release, "environment": "prod", "strategy": strategy})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    async fn promotion(&self, id: &str) -> Value {
        self.call("GET", &format!("/api/v1/promotions/{id}"), None)
            .await
            .1
    }

    async fn wait_promotion(&self, id: &str, limit: Duration) -> Value {
        wait::until(limit, Duration::from_millis(100), || async {
            let p = self.promotion(id).await;
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
        self.call("GET", &format!("/api/v1/jobs/{id}"), None)
            .await
            .1
    }
}

/// An agent channel client in dry-run mode.
struct Agent {
    cancel: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), channel::ChannelError>>,
    executed: Arc<AtomicU64>,
}

impl Agent {
    fn start(
        endpoints: Vec<String>,
        token: Option<String>,
        name: &str,
        labels: &[(&str, &str)],
        data_dir: &Path,
        delay: Duration,
    ) -> Self {
        Self::start_tls(
            endpoints,
            token,
            name,
            labels,
            data_dir,
            delay,
            Default::default(),
        )
    }

    fn start_tls(
        endpoints: Vec<String>,
        token: Option<String>,
        name: &str,
        labels: &[(&str, &str)],
        data_dir: &Path,
        delay: Duration,
        tls: TlsConfig,
    ) -> Self {
        let executed = Arc::new(AtomicU64::new(0));
        let config = ChannelConfig {
            endpoints,
            registration_token: token.map(sextant_kit::Secret::new),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            data_dir: data_dir.to_owned(),
            max_backoff: Duration::from_millis(500),
            tls,
        };
        let runner = Runner::DryRun {
            delay,
            executed: executed.clone(),
            fail_image: None,
        };
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(channel::run(config, runner, cancel.clone()));
        Self {
            cancel,
            handle,
            executed,
        }
    }

    fn executed(&self) -> u64 {
        self.executed.load(Ordering::SeqCst)
    }

    async fn stop(self) -> Result<(), channel::ChannelError> {
        self.cancel.cancel();
        self.handle.await.unwrap()
    }
}

fn agent_target(name: &str, connection: Value) -> Value {
    json!({"name": name, "environment": "prod", "agent": connection})
}

#[tokio::test]
async fn registration_is_single_use_and_a_revoked_agent_is_refused() {
    let db = TestDb::new(Backend::Sqlite).await;
    let data = tempfile::tempdir().unwrap();
    let replica = Replica::start(&db.url, data.path(), "a", Duration::from_secs(30)).await;
    let token = replica.token().await;

    let dir_a = tempfile::tempdir().unwrap();
    let a = Agent::start(
        vec![replica.agents.clone()],
        Some(token.clone()),
        "host-a",
        &[("site", "lab")],
        dir_a.path(),
        Duration::ZERO,
    );
    replica.wait_agents_online(&["host-a"]).await;
    let identity = channel::Identity::load(dir_a.path()).unwrap().unwrap();
    assert!(identity.credential.starts_with("sxa_"), "{identity:?}");

    // The same token again: refused, and the agent says why.
    let dir_b = tempfile::tempdir().unwrap();
    let b = Agent::start(
        vec![replica.agents.clone()],
        Some(token.clone()),
        "host-b",
        &[],
        dir_b.path(),
        Duration::ZERO,
    );
    let err = tokio::time::timeout(Duration::from_secs(10), b.handle)
        .await
        .expect("a used token ends the agent")
        .unwrap()
        .unwrap_err();
    assert!(format!("{err:#}").contains("used already"), "{err:#}");

    // An unknown token, and no token and no identity.
    let dir_c = tempfile::tempdir().unwrap();
    let c = Agent::start(
        vec![replica.agents.clone()],
        Some("sxr_nonsense".into()),
        "host-c",
        &[],
        dir_c.path(),
        Duration::ZERO,
    );
    let err = c.handle.await.unwrap().unwrap_err();
    assert!(
        format!("{err:#}").contains("unknown registration token"),
        "{err:#}"
    );
    let d = Agent::start(
        vec![replica.agents.clone()],
        None,
        "host-d",
        &[],
        dir_c.path(),
        Duration::ZERO,
    );
    let err = d.handle.await.unwrap().unwrap_err();
    assert!(
        format!("{err:#}").contains("no registration token"),
        "{err:#}"
    );

    // An expired token.
    let (status, body) = replica
        .call(
            "POST",
            "/api/v1/agents/tokens",
            Some(json!({"ttl_seconds": 1})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // Real time: the token's expiry is checked against the wall clock.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let e = Agent::start(
        vec![replica.agents.clone()],
        Some(body["token"].as_str().unwrap().into()),
        "host-e",
        &[],
        dir_c.path(),
        Duration::ZERO,
    );
    let err = e.handle.await.unwrap().unwrap_err();
    assert!(format!("{err:#}").contains("expired"), "{err:#}");
    let (status, body) = replica
        .call(
            "POST",
            "/api/v1/agents/tokens",
            Some(json!({"ttl_seconds": 0})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid")),
        "{body}"
    );

    // The listing: one agent, online, with its labels and version.
    let agents = replica.agents().await;
    assert_eq!(agents.len(), 1, "{agents:#?}");
    assert_eq!(agents[0]["labels"]["site"], "lab");
    assert_eq!(agents[0]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        agents[0]["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("docker"))
    );

    // Revoked: the stream closes and the agent is refused for good.
    let (status, body) = replica
        .call("POST", "/api/v1/agents/host-a/revoke", None)
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("revoked")),
        "{body}"
    );
    let err = tokio::time::timeout(Duration::from_secs(20), a.handle)
        .await
        .expect("a revoked agent stops")
        .unwrap()
        .unwrap_err();
    assert!(format!("{err:#}").contains("revoked"), "{err:#}");
}

/// The agent listener over mTLS, with certificates made here: an agent
/// with a certificate of the CA registers over https and comes online; one
/// without a certificate, one with a certificate of another CA and one
/// dialling plain text never get through, though they hold the same
/// (single-use) registration token and keep retrying.
#[tokio::test]
async fn agents_connect_over_mtls_and_others_are_refused_at_the_handshake() {
    let pki = Pki::new();
    let db = TestDb::new(Backend::Sqlite).await;
    let data = tempfile::tempdir().unwrap();
    let replica = Replica::start_with(&db.url, data.path(), "a", Duration::from_secs(30), |c| {
        c.agent_tls = ServerTlsConfig {
            cert_file: Some(pki.server.cert.clone()),
            key_file: Some(pki.server.key.clone()),
            client_ca_file: Some(pki.ca_file.clone()),
        };
    })
    .await;
    let port = replica.agents.rsplit(':').next().unwrap();
    let https = format!("https://localhost:{port}");
    let token = replica.token().await;
    let tls = |cert: Option<&CertFiles>| TlsConfig {
        ca_file: Some(pki.ca_file.clone()),
        client_cert: cert.map(|c| c.cert.clone()),
        client_key: cert.map(|c| c.key.clone()),
    };
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let stranger = pki.stranger("host-stranger");
    let refused = [
        Agent::start_tls(
            vec![https.clone()],
            Some(token.clone()),
            "host-no-cert",
            &[],
            dirs[0].path(),
            Duration::ZERO,
            tls(None),
        ),
        Agent::start_tls(
            vec![https.clone()],
            Some(token.clone()),
            "host-stranger",
            &[],
            dirs[1].path(),
            Duration::ZERO,
            tls(Some(&stranger)),
        ),
        Agent::start(
            vec![replica.agents.clone()],
            Some(token.clone()),
            "host-plain",
            &[],
            dirs[2].path(),
            Duration::ZERO,
        ),
    ];
    // Time for a few attempts each (backoff at most 0.5 s here).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(replica.agents().await.is_empty());
    let cert = pki.client("host-tls");
    let agent = Agent::start_tls(
        vec![https.clone()],
        Some(token),
        "host-tls",
        &[],
        dirs[3].path(),
        Duration::ZERO,
        tls(Some(&cert)),
    );
    replica.wait_agents_online(&["host-tls"]).await;
    let agents = replica.agents().await;
    assert_eq!(agents.len(), 1, "{agents:#?}");
    for other in refused {
        assert!(!other.handle.is_finished(), "still retrying");
        let err = other.stop().await.expect_err("never registered");
        assert!(
            format!("{err:#}").contains("stopped before registering"),
            "{err:#}"
        );
    }
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_promotion_runs_on_agents_by_id_and_by_selector() {
    let db = TestDb::new(Backend::Sqlite).await;
    let data = tempfile::tempdir().unwrap();
    let replica = Replica::start(&db.url, data.path(), "a", Duration::from_secs(30)).await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = Agent::start(
        vec![replica.agents.clone()],
        Some(replica.token().await),
        "host-a",
        &[("role", "web"), ("zone", "a")],
        dirs[0].path(),
        Duration::from_millis(50),
    );
    let b = Agent::start(
        vec![replica.agents.clone()],
        Some(replica.token().await),
        "host-b",
        &[("role", "web"), ("zone", "b")],
        dirs[1].path(),
        Duration::from_millis(50),
    );
    replica.wait_agents_online(&["host-a", "host-b"]).await;
    let id_a = replica.agents().await[0]["id"].as_str().unwrap().to_owned();
    replica
        .setup(json!([
            agent_target("t-a", json!({"id": id_a})),
            agent_target("t-b", json!({"selector": {"zone": "b"}})),
        ]))
        .await;
    let p = replica
        .promote("r1", json!({"type": "all_at_once", "max_parallel": 100}))
        .await;
    let p = replica.wait_promotion(&p, Duration::from_secs(30)).await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    assert_eq!((a.executed(), b.executed()), (1, 1));
    let job = replica.job(p["job_id"].as_str().unwrap()).await;
    let tasks = job["tasks"].as_array().unwrap();
    assert!(tasks.iter().all(|t| t["state"] == "succeeded"), "{job:#}");

    // The task's log says which agent took it.
    let task = tasks.iter().find(|t| t["target"] == "t-b").unwrap();
    let (_, logs) = replica
        .call(
            "GET",
            &format!(
                "/api/v1/jobs/{}/tasks/{}/logs",
                p["job_id"].as_str().unwrap(),
                task["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    let text = logs.to_string();
    assert!(text.contains("agent host-b"), "{logs:#}");

    // /metrics counts the agents and their tasks from the database.
    let metrics = reqwest::get(format!("{}/metrics", replica.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "sextant_agents_connected 2",
        "sextant_agents_registered 2",
        r#"sextant_agent_tasks_total{agent="host-a",status="succeeded",type="deploy"} 1"#,
        r#"sextant_agent_tasks_total{agent="host-b",status="succeeded",type="deploy"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // A selector matching both agents is refused by name.
    replica
        .apply(json!([agent_target(
            "t-a",
            json!({"selector": {"role": "web"}})
        )]))
        .await;
    let p = replica.promote("r2", json!({"type": "all_at_once"})).await;
    let p = replica.wait_promotion(&p, Duration::from_secs(30)).await;
    assert_ne!(p["state"], "deployed", "{p:#}");
    let job = replica.job(p["job_id"].as_str().unwrap()).await;
    let failed = job["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "t-a")
        .unwrap();
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("matches 2 agents") && error.contains("host-a") && error.contains("host-b"),
        "{job:#}"
    );
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn a_task_for_an_offline_agent_fails_at_its_deadline() {
    let db = TestDb::new(Backend::Sqlite).await;
    let data = tempfile::tempdir().unwrap();
    let replica = Replica::start(&db.url, data.path(), "a", Duration::from_secs(3)).await;
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::start(
        vec![replica.agents.clone()],
        Some(replica.token().await),
        "host-a",
        &[("zone", "a")],
        dir.path(),
        Duration::ZERO,
    );
    replica.wait_agents_online(&["host-a"]).await;
    a.stop().await.unwrap();
    replica
        .setup(json!([agent_target(
            "t-a",
            json!({"selector": {"zone": "a"}})
        )]))
        .await;
    let started = Instant::now();
    let p = replica.promote("r1", json!({"type": "all_at_once"})).await;
    let p = replica.wait_promotion(&p, Duration::from_secs(30)).await;
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "it waited for the deadline"
    );
    assert_eq!(p["state"], "failed", "{p:#}");
    let job = replica.job(p["job_id"].as_str().unwrap()).await;
    let task = &job["tasks"][0];
    let error = task["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("host-a")
            && error.contains("offline")
            && error.contains("not delivered before its deadline"),
        "{job:#}"
    );
    assert_eq!(task["error_type"], "connection");

    // It stays undelivered: the agent coming back later does not run it.
    let a = Agent::start(
        vec![replica.agents.clone()],
        None,
        "host-a",
        &[("zone", "a")],
        dir.path(),
        Duration::ZERO,
    );
    replica.wait_agents_online(&["host-a"]).await;
    // Real time: a wrongly dispatched task would reach the agent over its real stream within it.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(a.executed(), 0);
    a.stop().await.unwrap();
}

#[tokio::test]
async fn a_task_survives_its_stream_dropping_and_runs_once() {
    // Two replicas on one SQLite file; the agent dials replica a first.
    let db = TestDb::new(Backend::Sqlite).await;
    let data = tempfile::tempdir().unwrap();
    let mut a = Replica::start(&db.url, data.path(), "a", Duration::from_secs(60)).await;
    let b = Replica::start(&db.url, data.path(), "b", Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        vec![a.agents.clone(), b.agents.clone()],
        Some(a.token().await),
        "host-a",
        &[("zone", "a")],
        dir.path(),
        Duration::from_secs(3),
    );
    a.wait_agents_online(&["host-a"]).await;
    assert_eq!(b.agents().await[0]["replica"], "a");
    b.setup(json!([agent_target(
        "t-a",
        json!({"selector": {"zone": "a"}})
    )]))
    .await;
    let p = b.promote("r1", json!({"type": "all_at_once"})).await;

    // Wait until the agent runs it, then drop the stream by killing the
    // replica that holds it.
    wait::until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            if agent.executed() != 0 {
                return Ok(());
            }
            Err("the agent never got the task")
        },
    )
    .await;
    a.crash().await;

    // The agent reconnects to b, which delivers the run key again; the agent
    // does not start it twice, and its result arrives over the new stream.
    let p = b.wait_promotion(&p, Duration::from_secs(60)).await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    assert_eq!(agent.executed(), 1, "the task ran once");
    let agents = b.agents().await;
    assert_eq!(agents[0]["replica"], "b", "{agents:#?}");
    let job = b.job(p["job_id"].as_str().unwrap()).await;
    assert_eq!(job["tasks"][0]["attempts"], 1, "{job:#}");
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn replicas_on_postgres_share_agents_and_one_finishes_the_others_rolling_job() {
    let db = TestDb::new(Backend::Postgres).await;
    let data = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut replicas = [
        Replica::start(&db.url, data[0].path(), "a", Duration::from_secs(60)).await,
        Replica::start(&db.url, data[1].path(), "b", Duration::from_secs(60)).await,
    ];
    let endpoints: Vec<String> = replicas.iter().map(|r| r.agents.clone()).collect();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut agents = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        // Half dial a first, half b first.
        let mut e = endpoints.clone();
        e.rotate_left(i % 2);
        agents.push(Agent::start(
            e,
            Some(replicas[0].token().await),
            &format!("host-{i}"),
            &[("n", &i.to_string())],
            dir.path(),
            Duration::from_millis(700),
        ));
    }
    replicas[0]
        .wait_agents_online(&["host-0", "host-1", "host-2", "host-3"])
        .await;
    let targets: Vec<Value> = (0..4)
        .map(|i| agent_target(&format!("t-{i}"), json!({"selector": {"n": i.to_string()}})))
        .collect();
    replicas[0].setup(Value::Array(targets)).await;
    let p = replicas[0]
        .promote(
            "r1",
            json!({"type": "rolling", "batch_size": 1, "pause": "300ms"}),
        )
        .await;

    // Kill whichever replica holds the job's lease once the first task has
    // run.
    let (job_id, owner) = wait::until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let promotion = replicas[0].promotion(&p).await;
            if let Some(job) = promotion["job_id"].as_str() {
                let j = replicas[0].job(job).await;
                let done = j["tasks"].as_array().map_or(0, |t| {
                    t.iter().filter(|t| t["state"] == "succeeded").count()
                });
                if done >= 1 && j["lease_owner"].is_string() && j["state"] == "running" {
                    return Ok((
                        job.to_owned(),
                        j["lease_owner"].as_str().unwrap().to_owned(),
                    ));
                }
            }
            Err("the job never started")
        },
    )
    .await;
    let (dead, alive) = if owner == "a" { (0, 1) } else { (1, 0) };
    replicas[dead].crash().await;
    let survivor = &replicas[alive];
    let p = survivor.wait_promotion(&p, Duration::from_secs(90)).await;
    assert_eq!(p["state"], "deployed", "{p:#}");
    let job = survivor.job(&job_id).await;
    // Completed (so its lease is released), after a second lease: the
    // survivor's.
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(job["attempts"], 2, "{job:#}");
    for (i, agent) in agents.iter().enumerate() {
        assert_eq!(agent.executed(), 1, "host-{i} ran its task once");
    }
    for t in job["tasks"].as_array().unwrap() {
        assert_eq!(
            (t["state"].as_str(), t["attempts"].as_i64()),
            (Some("succeeded"), Some(1)),
            "{job:#}"
        );
    }
    // Every agent ends up on the survivor.
    wait::until(
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            let listed = survivor.agents().await;
            if listed
                .iter()
                .all(|a| a["replica"] == survivor_name(alive) && a["status"] == "online")
            {
                return Ok(());
            }
            Err(format!("{listed:#?}"))
        },
    )
    .await;
    for agent in agents {
        agent.stop().await.unwrap();
    }
}

fn survivor_name(i: usize) -> &'static str {
    ["a", "b"][i]
}

/// A task carries its registry's credentials on the wire only: a raw
/// protocol client (registered with a token, holding a Session) receives
/// them with the task, while the mailbox row in the database has none.
#[tokio::test]
async fn registry_credentials_ride_with_the_delivery_and_are_never_stored() {
    use sextant_protocol::AgentServiceClient;
    use sextant_protocol::v1::{
        AgentMessage, Hello, RegisterRequest, agent_message, server_message,
    };

    trace();
    let db = TestDb::new(Backend::Sqlite).await;
    let data = tempfile::tempdir().unwrap();
    let mut replica =
        Replica::start_with(&db.url, data.path(), "a", Duration::from_secs(30), |c| {
            c.registry_auth = sextant_orchestrator::agents::credentials::RegistryAuths::parse(
            r#"{"auths": {"127.0.0.1:5000": {"username": "puller", "password": "pull-s3cret"}}}"#,
        )
        .unwrap();
        })
        .await;
    let token = replica.token().await;
    let mut client = AgentServiceClient::connect(replica.agents.clone())
        .await
        .unwrap();
    let identity = client
        .register(RegisterRequest {
            token,
            name: "raw".into(),
            version: "test".into(),
            capabilities: vec!["docker".into()],
            labels: [("zone".to_owned(), "r".to_owned())].into(),
        })
        .await
        .unwrap()
        .into_inner();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(AgentMessage {
        body: Some(agent_message::Body::Hello(Hello {
            version: "test".into(),
            labels: [("zone".to_owned(), "r".to_owned())].into(),
            ..Hello::default()
        })),
    })
    .unwrap();
    let mut request = tonic::Request::new(tokio_stream::wrappers::UnboundedReceiverStream::new(rx));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", identity.credential).parse().unwrap(),
    );
    let mut inbound = client.session(request).await.unwrap().into_inner();
    replica
        .setup(json!([agent_target(
            "t-r",
            json!({"selector": {"zone": "r"}})
        )]))
        .await;
    replica.promote("r1", json!({"type": "all_at_once"})).await;
    let task = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match inbound.message().await.unwrap().unwrap().body {
                Some(server_message::Body::Task(t)) => return t,
                _ => continue,
            }
        }
    })
    .await
    .expect("a task arrives");
    let auth = task.registry_auth.expect("credentials ride with the task");
    assert_eq!(
        (
            auth.username.as_str(),
            auth.password.as_str(),
            auth.server_address.as_str()
        ),
        ("puller", "pull-s3cret", "127.0.0.1:5000")
    );
    assert!(task.traceparent.starts_with("00-"), "{}", task.traceparent);
    let stored: Vec<(String,)> = sqlx::query_as("SELECT payload FROM agent_tasks")
        .fetch_all(&sqlx::SqlitePool::connect(&db.url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(
        !stored[0].0.contains(&hex::encode("pull-s3cret")) && !stored[0].0.contains("pull-s3cret"),
        "the mailbox never holds the secret"
    );
    drop(tx);
    replica.crash().await;
}

/// `GET /health` of a replica: (HTTP status, body), after checking the
/// report's shape: the two checks, each with a measured latency.
async fn health(replica: &Replica) -> (u16, Value) {
    let (status, body) = replica.call("GET", "/health", None).await;
    assert_eq!(body["service"], "sextant-orchestrator", "{body}");
    assert!(body["version"].is_string(), "{body}");
    let checks = body["checks"].as_array().expect("checks");
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["database", "agents"], "{body}");
    for check in checks {
        assert!(check["latency_ms"].is_number(), "{body}");
    }
    (status, body)
}

/// The agents check: passes with no agents, passes with one connected,
/// warns (still 200) once every registered agent is gone; the database
/// check fails with 503 when the database goes away.
async fn health_checks_the_database_and_counts_agents(backend: Backend) {
    let mut db = TestDb::new(backend).await;
    let data = tempfile::tempdir().unwrap();
    let replica = Replica::start(&db.url, data.path(), "a", Duration::from_secs(30)).await;
    let (status, body) = health(&replica).await;
    assert_eq!((status, &body["status"]), (200, &json!("pass")), "{body}");
    assert_eq!(body["checks"][0]["status"], "pass", "{body}");
    let agents = &body["checks"][1];
    assert_eq!(agents["status"], "pass", "{body}");
    assert_eq!(agents["detail"], "no agents registered", "{body}");
    assert_eq!(agents["observed"]["registered"], 0, "{body}");

    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        vec![replica.agents.clone()],
        Some(replica.token().await),
        "host-a",
        &[],
        dir.path(),
        Duration::ZERO,
    );
    replica.wait_agents_online(&["host-a"]).await;
    let (status, body) = health(&replica).await;
    assert_eq!((status, &body["status"]), (200, &json!("pass")), "{body}");
    let agents = &body["checks"][1]["observed"];
    assert_eq!(
        (&agents["registered"], &agents["connected"]),
        (&json!(1), &json!(1)),
        "{body}"
    );
    assert_eq!(agents["streams_on_this_replica"], 1, "{body}");

    // The only agent goes away: registered, none connected, a warning.
    agent.stop().await.unwrap();
    let body = wait::until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let (status, body) = health(&replica).await;
            if body["checks"][1]["status"] == "warn" {
                assert_eq!((status, &body["status"]), (200, &json!("warn")), "{body}");
                return Ok(body);
            }
            Err(format!("no warning: {body:#}"))
        },
    )
    .await;
    assert_eq!(body["checks"][1]["observed"]["connected"], 0, "{body}");
    assert!(
        body["checks"][1]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("none connected")),
        "{body}"
    );

    if backend == Backend::Postgres {
        db.drop_now().await;
        let (status, body) = health(&replica).await;
        assert_eq!((status, &body["status"]), (503, &json!("fail")), "{body}");
        assert_eq!(body["checks"][0]["status"], "fail", "{body}");
        assert!(body["checks"][0]["error"].is_string(), "{body}");
        // /health/ready keeps its own answer.
        let res = reqwest::get(format!("{}/health/ready", replica.base))
            .await
            .unwrap();
        assert_eq!(res.status(), 503);
    }
}

#[tokio::test]
async fn health_checks_the_database_and_counts_agents_on_sqlite() {
    health_checks_the_database_and_counts_agents(Backend::Sqlite).await;
}

#[tokio::test]
async fn health_checks_the_database_and_counts_agents_on_postgres() {
    health_checks_the_database_and_counts_agents(Backend::Postgres).await;
}

/// Each tenant has its own API budget: one over it gets 429 with
/// Retry-After; another tenant, `/health` and an unknown token are not
/// affected by it.
#[tokio::test]
async fn the_api_rate_limit_is_per_tenant() {
    let db = TestDb::new(Backend::Sqlite).await;
    let data = tempfile::tempdir().unwrap();
    let token = |token: &str, tenant: &str| {
        sextant_orchestrator::api::TokenConfig::admin(token, tenant, format!("{tenant}-ops"))
    };
    let replica = Replica::start_with(&db.url, data.path(), "a", Duration::from_secs(30), |c| {
        c.tokens = vec![
            token("token-of-tenant-a", "a"),
            token("token-of-tenant-b", "b"),
        ];
        // A burst of 2, then one request per 1000 s.
        c.api_rate_limit = RateLimitConfig::new(0.001, 2);
    })
    .await;
    let http = reqwest::Client::new();
    let get = |path: &str, token: &str| {
        http.get(format!("{}{path}", replica.base))
            .bearer_auth(token)
            .send()
    };
    for _ in 0..2 {
        let res = get("/api/v1/environments", "token-of-tenant-a")
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let res = get("/api/v1/whoami", "token-of-tenant-a").await.unwrap();
    assert_eq!(res.status(), 429);
    let wait: u64 = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a numeric Retry-After");
    assert!((1..=1000).contains(&wait), "Retry-After {wait}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"a\"")),
        "{body}"
    );

    let res = get("/api/v1/environments", "token-of-tenant-b")
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "tenant b is not limited by a");
    let res = get("/api/v1/environments", "not-a-token").await.unwrap();
    assert_eq!(res.status(), 401);
    let res = get("/health", "token-of-tenant-a").await.unwrap();
    assert_eq!(res.status(), 200);
}
