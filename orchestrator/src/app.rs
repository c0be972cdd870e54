//! Running the orchestrator: the store, the outbox and its sender to the
//! hub, the API listener and the engine, until cancelled.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use sextant_exporters::outbox::{Outbox, OutboxConfig};
pub use sextant_exporters::rate_limit::RateLimitConfig;
use sextant_exporters::rate_limit::TenantLimiter;
use sextant_exporters::sender::{self, HttpConfig, HttpTransport, Secret, SenderConfig};
pub use sextant_exporters::serve::{ListenerLimits, ServerTlsConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agents::{AgentChannel, AgentGrpc};
use crate::api::{self, ApiState, TokenConfig};
use crate::executor::Executor;
use crate::promotion::gates::HubClient;
use crate::service::{Orchestrator, Settings};
use crate::store::Store;

/// How to run one orchestrator replica.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub listen: SocketAddr,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// The outbox lives in `DATA_DIR/orchestrator-outbox`.
    pub data_dir: PathBuf,
    /// The hub's API (`http://127.0.0.1:8080`), for gates and canaries.
    pub hub_api: Option<String>,
    /// The hub's OTLP/HTTP endpoint (`http://127.0.0.1:4318`), for desired
    /// state.
    pub hub_otlp: Option<String>,
    pub hub_token: Option<String>,
    pub tokens: Vec<TokenConfig>,
    /// Registries (`host:port`) reached over plain HTTP to resolve tags.
    pub insecure_registries: Vec<String>,
    /// Where agents dial in (gRPC); `None` runs no agent channel on this
    /// replica (it still queues tasks other replicas deliver).
    pub agent_listen: Option<SocketAddr>,
    /// TLS of the agent listener: a certificate and key make it speak
    /// TLS; a client CA makes every agent present a certificate that CA
    /// signed (mTLS), on top of its registration token or secret.
    pub agent_tls: ServerTlsConfig,
    /// How often agents send heartbeats.
    pub agent_heartbeat: std::time::Duration,
    /// Registry credentials for agent tasks, added as each task is
    /// delivered (`--registry-auth`).
    pub registry_auth: crate::agents::credentials::RegistryAuths,
    /// Per-tenant limit of the API's requests; unlimited by default.
    pub api_rate_limit: RateLimitConfig,
    /// Timeouts and connection cap of the API and agent listeners
    /// (docs/security.md, "Listeners"). The agent channel's streams live
    /// long: its request deadline does not apply to them.
    pub listeners: ListenerLimits,
    /// `/metrics` answers only a token with the `metrics` or `admin` scope.
    pub metrics_require_token: bool,
    pub settings: Settings,
}

/// A running orchestrator.
pub struct Running {
    pub addr: SocketAddr,
    /// The agent channel's gRPC address, if it listens.
    pub agent_addr: Option<SocketAddr>,
    pub orchestrator: Arc<Orchestrator>,
    cancel: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Stops everything and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.handle.await.context("orchestrator task panicked")?
    }

    /// Waits until `cancel` fires (or a part fails).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.handle.await.context("orchestrator task panicked")?
    }
}

/// Starts a replica; `ssh` runs SSH targets' tasks.
pub async fn start(
    config: RuntimeConfig,
    ssh: Arc<dyn Executor>,
    cancel: CancellationToken,
) -> anyhow::Result<Running> {
    let rate_limit = TenantLimiter::new(config.api_rate_limit).context("invalid API rate limit")?;
    config
        .listeners
        .validate()
        .context("invalid listener limits")?;
    if config.metrics_require_token && config.tokens.is_empty() {
        anyhow::bail!("a token for /metrics needs tokens: configure some with the `metrics` scope");
    }
    // Two listeners share the process's open files.
    let listeners = ListenerLimits {
        max_connections: sextant_exporters::serve::fit_connections(
            config.listeners.max_connections,
            2,
        ),
        ..config.listeners
    };
    let agent_tls = config
        .agent_tls
        .load()
        .context("invalid TLS settings of the agent listener")?;
    let store = Store::open(&config.database_url)
        .await
        .with_context(|| "cannot open the orchestrator database")?;
    let mut tasks = tokio::task::JoinSet::new();
    let outbox = match &config.hub_otlp {
        Some(endpoint) => {
            let outbox = Outbox::open(
                config.data_dir.join("orchestrator-outbox"),
                OutboxConfig::default(),
            )
            .context("cannot open the orchestrator's outbox")?;
            let transport = HttpTransport::new(HttpConfig {
                token: config.hub_token.clone().map(Secret::new),
                ..HttpConfig::new(endpoint.clone())
            })
            .context("invalid hub OTLP endpoint")?;
            let (o, c) = (outbox.clone(), cancel.clone());
            tasks.spawn(async move {
                sender::run(o, "default", transport, SenderConfig::default(), c)
                    .await
                    .map_err(anyhow::Error::from)
            });
            Some(outbox)
        }
        None => None,
    };
    let hub = config
        .hub_api
        .as_ref()
        .map(|url| HubClient::new(url.clone(), config.hub_token.clone()));
    let mut channel = AgentChannel::new(
        store.clone(),
        config.settings.replica.clone(),
        config.agent_heartbeat,
        cancel.clone(),
    );
    channel.registry_auth = config.registry_auth.clone();
    let channel = Arc::new(channel);
    let orchestrator = Arc::new(
        Orchestrator::new(store, config.settings.clone(), hub, outbox, ssh)
            .with_agent_channel(channel.clone()),
    );
    let agent_addr = match config.agent_listen {
        Some(listen) => {
            let listener = TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen for agents on {listen}"))?;
            let addr = listener.local_addr()?;
            let service = AgentGrpc::new(channel.clone()).service();
            let c = cancel.clone();
            let refused = orchestrator
                .replica_metrics
                .listener_refused
                .with_label_values(&["agents"]);
            tasks.spawn(async move {
                // Keepalive pings every 20 s keep a live agent's connection
                // busy, so only a dead or silent one meets the idle timeout.
                tonic::transport::Server::builder()
                    .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
                    .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
                    .add_service(service)
                    .serve_with_incoming_shutdown(
                        sextant_exporters::serve::incoming_tls(
                            listener, listeners, refused, agent_tls,
                        ),
                        async move { c.cancelled().await },
                    )
                    .await
                    .context("agent channel server failed")
            });
            Some(addr)
        }
        None => None,
    };
    let (ch, c) = (channel.clone(), cancel.clone());
    tasks.spawn(async move {
        crate::agents::server::dispatch(ch, c).await;
        Ok(())
    });
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let app = api::router(
        ApiState::new(
            orchestrator.clone(),
            &config.tokens,
            config.insecure_registries.clone(),
        )
        .with_rate_limit(rate_limit)
        .with_metrics_token(config.metrics_require_token),
        crate::ui::router(),
    );
    let c = cancel.clone();
    let refused = orchestrator
        .replica_metrics
        .listener_refused
        .with_label_values(&["api"]);
    tasks.spawn(async move {
        sextant_exporters::serve::serve_http(listener, app, listeners, refused, c)
            .await
            .context("API server failed")
    });
    let (o, c) = (orchestrator.clone(), cancel.clone());
    tasks.spawn(async move {
        o.run(c).await;
        Ok(())
    });
    let (o, c) = (orchestrator.clone(), cancel.clone());
    tasks.spawn(async move {
        o.run_promotions(c).await;
        Ok(())
    });
    tracing::info!(%addr, agents = ?agent_addr, backend = orchestrator.store.backend(), replica = %config.settings.replica,
        "Sextant orchestrator started");
    let c = cancel.clone();
    let handle = tokio::spawn(async move {
        let mut result = Ok(());
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(e)) | Err(e) = done.map_err(anyhow::Error::from) {
                result = Err(e);
                c.cancel();
            }
        }
        result
    });
    Ok(Running {
        addr,
        agent_addr,
        orchestrator,
        cancel,
        handle,
    })
}
