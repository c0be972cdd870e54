//! `sextant agent run`: the observer writing into the durable outbox, one
//! sender per OTLP endpoint draining it, and `/metrics`, `/health/live`,
//! `/health/ready` (the Docker engine answers a ping) and `/health`
//! ([`health`]).

mod health;

use sextant_kit::Secret;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;

use axum::response::IntoResponse;
use axum::routing::get;
use bollard::Docker;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use prost::Message;
use sextant_exporters::OutboxMetrics;
use sextant_exporters::outbox::{AppendOutcome, Outbox, OutboxConfig, RecordKind};
use sextant_exporters::sender::{
    self, GrpcConfig, GrpcTransport, HttpConfig, HttpTransport, SenderConfig, TlsConfig,
};
use sextant_model::UnixNanos;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, Protocol};
use crate::executor::Journal;
use crate::observe::{self, Identity, Observer, ObserverConfig, Report, ReportKind, Sink};

/// The agent's own metrics, beside the outbox's.
#[derive(Clone)]
pub struct AgentMetrics {
    pub observed_containers: IntGauge,
    pub reports: IntCounterVec,
    /// Tasks in the journal by kind and result, read at each scrape.
    pub tasks: IntGaugeVec,
}

impl AgentMetrics {
    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let observed_containers = IntGauge::with_opts(Opts::new(
            "sextant_agent_observed_containers",
            "Containers with Sextant labels on this host.",
        ))?;
        let reports = IntCounterVec::new(
            Opts::new(
                "sextant_agent_reports_total",
                "Observations written to the outbox, by kind and outcome.",
            ),
            &["kind", "outcome"],
        )?;
        let tasks = IntGaugeVec::new(
            Opts::new(
                "sextant_agent_tasks",
                "Deploy tasks recorded in this agent's task journal, by kind and result \
                 (running, succeeded, failed, rolled_back; unreadable for a record that \
                 does not parse).",
            ),
            &["kind", "result"],
        )?;
        registry.register(Box::new(observed_containers.clone()))?;
        registry.register(Box::new(reports.clone()))?;
        registry.register(Box::new(tasks.clone()))?;
        Ok(Self {
            observed_containers,
            reports,
            tasks,
        })
    }
}

/// Writes observations to the outbox as one `ResourceLogs` each.
pub struct OutboxSink {
    outbox: Outbox,
    resource: Resource,
    metrics: AgentMetrics,
}

impl OutboxSink {
    pub fn new(outbox: Outbox, identity: &Identity, metrics: AgentMetrics) -> Self {
        Self {
            outbox,
            resource: observe::resource(identity),
            metrics,
        }
    }
}

impl Sink for OutboxSink {
    type Error = sextant_exporters::OutboxError;

    fn observed(&self, containers: usize) {
        self.metrics
            .observed_containers
            .set(i64::try_from(containers).unwrap_or(i64::MAX));
    }

    fn report(&self, reports: &[Report]) -> Result<(), Self::Error> {
        let now = UnixNanos::now();
        let encoded: Vec<(RecordKind, Vec<u8>)> = reports
            .iter()
            .map(|r| {
                let kind = match r.kind {
                    ReportKind::Change => RecordKind::StateChange,
                    ReportKind::Heartbeat => RecordKind::Heartbeat,
                };
                let logs =
                    observe::resource_logs(&self.resource, observe::record(&r.observation, now));
                (kind, logs.encode_to_vec())
            })
            .collect();
        let batch: Vec<(RecordKind, &[u8])> =
            encoded.iter().map(|(k, b)| (*k, b.as_slice())).collect();
        let outcomes = self.outbox.append_batch(&batch)?;
        for ((kind, _), outcome) in batch.iter().zip(outcomes) {
            let result = match outcome {
                AppendOutcome::Stored { .. } => "stored",
                AppendOutcome::Dropped(_) => "dropped",
            };
            self.metrics
                .reports
                .with_label_values(&[kind.as_str(), result])
                .inc();
        }
        Ok(())
    }
}

/// The consumer name of the `i`-th endpoint in the outbox.
fn consumer(i: usize) -> String {
    format!("endpoint-{i}")
}

/// The transport of one endpoint.
enum AnyTransport {
    Grpc(GrpcTransport),
    Http(HttpTransport),
}

/// One transport per endpoint, in order; refuses a bad endpoint or an
/// unusable TLS file (with its path and why).
fn transports(config: &AgentConfig) -> anyhow::Result<Vec<AnyTransport>> {
    let tls = TlsConfig {
        ca_file: config.ca_file.clone(),
        client_cert: config.client_cert.as_ref().map(|(cert, _)| cert.clone()),
        client_key: config.client_cert.as_ref().map(|(_, key)| key.clone()),
    };
    let token = config.token.clone().map(Secret::new);
    config
        .otlp_endpoints
        .iter()
        .map(|endpoint| {
            Ok(match config.protocol {
                Protocol::Grpc => AnyTransport::Grpc(GrpcTransport::new(GrpcConfig {
                    token: token.clone(),
                    gzip: config.gzip,
                    tls: tls.clone(),
                    ..GrpcConfig::new(endpoint.clone())
                })?),
                Protocol::HttpProtobuf => AnyTransport::Http(HttpTransport::new(HttpConfig {
                    token: token.clone(),
                    gzip: config.gzip,
                    tls: tls.clone(),
                    ..HttpConfig::new(endpoint.clone())
                })?),
            })
        })
        .collect()
}

/// A running agent: where its health and metrics listen.
pub struct Agent {
    pub listen: SocketAddr,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Agent {
    /// Opens the outbox, binds the listener and starts every task; they run
    /// until `cancel`.
    pub async fn start(config: AgentConfig, cancel: CancellationToken) -> anyhow::Result<Self> {
        // Endpoints and TLS files first: a bad one is refused before
        // anything else starts.
        let transports = transports(&config)?;
        let registry = Registry::new();
        let outbox_metrics = OutboxMetrics::new();
        outbox_metrics.register(&registry)?;
        let metrics = AgentMetrics::new(&registry)?;
        let refused = sextant_kit::serve::refused_counter();
        registry.register(Box::new(refused.clone()))?;
        let outbox_config = OutboxConfig {
            max_bytes: config.outbox_max_bytes,
            consumers: (0..config.otlp_endpoints.len()).map(consumer).collect(),
            ..OutboxConfig::default()
        };
        let outbox = Outbox::open_with_metrics(
            config.data_dir.join("outbox"),
            outbox_config,
            outbox_metrics,
        )?;
        let listener = TcpListener::bind(config.listen).await?;
        let listen = listener.local_addr()?;
        tracing::info!(
            host = %config.host_name,
            environment = %config.environment,
            endpoints = ?config.otlp_endpoints,
            %listen,
            "Sextant agent started"
        );

        let mut tasks = tokio::task::JoinSet::new();
        for (i, transport) in transports.into_iter().enumerate() {
            let (outbox, cancel) = (outbox.clone(), cancel.clone());
            let name = consumer(i);
            match transport {
                AnyTransport::Grpc(transport) => tasks.spawn(async move {
                    sender::run(outbox, name, transport, SenderConfig::default(), cancel)
                        .await
                        .map_err(anyhow::Error::from)
                }),
                AnyTransport::Http(transport) => tasks.spawn(async move {
                    sender::run(outbox, name, transport, SenderConfig::default(), cancel)
                        .await
                        .map_err(anyhow::Error::from)
                }),
            };
        }

        // The Docker engine may come up after the agent (or be down for a
        // while): the agent serves its health (not ready) and sends what
        // its outbox holds meanwhile; the observer and the orchestrator
        // channel start once Docker has answered.
        let docker = Arc::new(DockerLink::default());
        let identity = Identity {
            host: config.host_name.clone(),
            environment: config.environment.clone(),
            labels: config.labels.clone(),
        };
        let sink = OutboxSink::new(outbox.clone(), &identity, metrics.clone());
        let (link, docker_cancel) = (docker.clone(), cancel.clone());
        let docker_config = config.clone();
        tasks.spawn(async move {
            let Some(docker) = link.connect(&docker_config, &docker_cancel).await else {
                return Ok(());
            };
            let mut observer = Observer::new(
                docker.clone(),
                docker_config.environment.clone(),
                ObserverConfig {
                    heartbeat: docker_config.heartbeat,
                    resync: docker_config.resync,
                    watch_labels: docker_config.watch_labels.clone(),
                },
                sink,
            );
            let observer_cancel = docker_cancel.clone();
            let observe = async move {
                observer.run(observer_cancel).await;
                Ok(())
            };
            if docker_config.orchestrator.is_empty() {
                return observe.await;
            }
            let runner = if docker_config.dry_run {
                crate::channel::Runner::DryRun {
                    delay: Duration::ZERO,
                    executed: Arc::default(),
                }
            } else {
                crate::channel::Runner::Docker(Arc::new(crate::executor::Executor::with_docker(
                    docker,
                    docker_config.data_dir.clone(),
                )?))
            };
            let channel = crate::channel::ChannelConfig {
                endpoints: docker_config.orchestrator.clone(),
                registration_token: docker_config.registration_token.clone(),
                name: docker_config.host_name.clone(),
                labels: docker_config.labels.iter().cloned().collect(),
                data_dir: docker_config.data_dir.clone(),
                max_backoff: Duration::from_secs(30),
                tls: docker_config.orchestrator_tls.clone(),
            };
            let run_channel = crate::channel::run(channel, runner, docker_cancel);
            tokio::try_join!(observe, run_channel).map(|_| ())
        });

        let state = Arc::new(HealthState {
            docker,
            registry,
            outbox,
            journal: Journal::open(&config.data_dir)?,
            tasks: metrics.tasks.clone(),
            health: health::HealthConfig {
                endpoints: config.otlp_endpoints.clone(),
                data_dir: config.data_dir.clone(),
                orchestrator: !config.orchestrator.is_empty(),
            },
        });
        let app = Router::new()
            .route("/metrics", get(metrics_handler))
            .route("/health", get(health::health))
            .route("/health/live", get(|| async { "ok" }))
            .route("/health/ready", get(health::ready))
            .with_state(state);
        let server_cancel = cancel.clone();
        // The health listener has the same limits as every other
        // (docs/security.md); one listener, so all the room it can get.
        let limits = sextant_kit::serve::ListenerLimits::default();
        let limits = sextant_kit::serve::ListenerLimits {
            max_connections: sextant_kit::serve::fit_connections(limits.max_connections, 1),
            ..limits
        };
        let refused = refused.with_label_values(&["health"]);
        tasks.spawn(async move {
            sextant_kit::serve::serve_http(listener, app, limits, refused, server_cancel)
                .await
                .map_err(anyhow::Error::from)
        });

        let task = tokio::spawn(async move {
            let mut first_error = None;
            while let Some(done) = tasks.join_next().await {
                let result = done.map_err(anyhow::Error::from).and_then(|r| r);
                if let Err(e) = result {
                    tracing::error!(error = %e, "agent task failed");
                    cancel.cancel();
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        });
        Ok(Self { listen, task })
    }

    /// Waits until every task has stopped.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }
}

/// The agent's Docker client, once the engine has answered.
#[derive(Default)]
struct DockerLink {
    docker: std::sync::OnceLock<Docker>,
    /// Why the engine could not be reached yet (the last attempt).
    error: std::sync::Mutex<Option<Arc<bollard::errors::Error>>>,
}

impl DockerLink {
    /// Connects and agrees on an API version, retrying with backoff (up to
    /// 5 s apart) until it works; `None` when cancelled first.
    async fn connect(&self, config: &AgentConfig, cancel: &CancellationToken) -> Option<Docker> {
        let mut backoff = Duration::from_millis(200);
        let mut last = String::new();
        loop {
            match crate::executor::connect_docker(config.docker_host.as_deref()).await {
                Ok(docker) => {
                    tracing::info!("connected to the Docker engine");
                    return Some(self.docker.get_or_init(|| docker).clone());
                }
                Err(e) => {
                    // Logged once per distinct error, not at every retry.
                    let text = e.to_string();
                    if text != last {
                        tracing::warn!(error = %text, "Docker engine unreachable; retrying");
                    }
                    *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(e));
                    last = text;
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return None,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

struct HealthState {
    docker: Arc<DockerLink>,
    registry: Registry,
    outbox: Outbox,
    journal: Journal,
    tasks: IntGaugeVec,
    health: health::HealthConfig,
}

impl HealthState {
    /// Sets `sextant_agent_tasks` from the journal. A journal that cannot
    /// be read leaves the last figures and logs why.
    async fn refresh_tasks(&self) {
        let journal = self.journal.clone();
        match tokio::task::spawn_blocking(move || journal.counts()).await {
            Ok(Ok(counts)) => {
                self.tasks.reset();
                for ((kind, result), n) in counts {
                    self.tasks
                        .with_label_values(&[kind.as_str(), result.as_str()])
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot count the task journal"),
            Err(e) => tracing::warn!(error = %e, "counting the task journal stopped"),
        }
    }
}

async fn metrics_handler(State(state): State<Arc<HealthState>>) -> impl IntoResponse {
    state.outbox.refresh_metrics();
    state.refresh_tasks().await;
    sextant_kit::exposition::response(&state.registry.gather())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentArgs;

    fn config(protocol: &str, ca_file: Option<&str>) -> AgentConfig {
        AgentArgs {
            host_name: Some("h1".into()),
            environment: Some("dev".into()),
            otlp_endpoints: vec!["https://hub-a:4317".into(), "http://hub-b:4317".into()],
            otlp_protocol: Some(protocol.into()),
            otlp_ca_file: ca_file.map(Into::into),
            ..AgentArgs::default()
        }
        .resolve()
        .expect("valid")
    }

    #[tokio::test]
    async fn https_endpoints_are_built_and_a_missing_ca_file_is_refused_by_path() {
        for protocol in ["grpc", "http/protobuf"] {
            let built = transports(&config(protocol, None)).expect("TLS is compiled in");
            assert_eq!(built.len(), 2);
            let e = transports(&config(protocol, Some("/nonexistent/ca.pem")))
                .err()
                .expect("refused")
                .to_string();
            assert!(
                e.contains("/nonexistent/ca.pem") && e.contains("cannot read"),
                "{protocol}: {e}"
            );
        }
    }

    /// Docker unreachable (its socket does not exist): `/health` fails with
    /// 503 on the `docker` check and says why; the outbox and the
    /// orchestrator registration are still reported.
    #[tokio::test]
    async fn health_fails_with_503_while_docker_is_unreachable() {
        let dir = tempfile::tempdir().expect("dir");
        let config = AgentArgs {
            host_name: Some("h1".into()),
            environment: Some("dev".into()),
            otlp_endpoints: vec!["http://127.0.0.1:1".into()],
            otlp_protocol: Some("http/protobuf".into()),
            data_dir: Some(dir.path().to_owned()),
            docker_host: Some(format!(
                "unix://{}",
                dir.path().join("no-docker.sock").display()
            )),
            orchestrator: Some("http://127.0.0.1:1".into()),
            listen: Some("127.0.0.1:0".parse().expect("address")),
            ..AgentArgs::default()
        }
        .resolve()
        .expect("valid");
        let cancel = CancellationToken::new();
        let agent = Agent::start(config, cancel.clone()).await.expect("starts");
        let res = reqwest::get(format!("http://{}/health", agent.listen))
            .await
            .expect("GET /health");
        assert_eq!(res.status(), 503);
        let body: serde_json::Value = res.json().await.expect("JSON");
        assert_eq!(body["status"], "fail", "{body}");
        assert_eq!(body["service"], "sextant-agent", "{body}");
        let checks = body["checks"].as_array().expect("checks");
        let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(names, ["docker", "outbox", "orchestrator"], "{body}");
        for check in checks {
            assert!(check["latency_ms"].is_number(), "{body}");
        }
        assert_eq!(checks[0]["status"], "fail", "{body}");
        assert!(
            checks[0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("Docker engine")),
            "{body}"
        );
        assert_eq!(checks[1]["status"], "pass", "{body}");
        assert_eq!(checks[2]["status"], "warn", "{body}");
        // /health/ready keeps its plain answer.
        let res = reqwest::get(format!("http://{}/health/ready", agent.listen))
            .await
            .expect("GET /health/ready");
        assert_eq!(res.status(), 503);
        cancel.cancel();
        agent.wait().await.expect("stops cleanly");
    }
}
