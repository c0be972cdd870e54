//! Running the orchestrator, in the hub's shape: [`Application::build`]
//! opens the store and the outbox and binds the listeners (so a test or the
//! banner can read their addresses), [`Application::run_until_stopped`]
//! runs every component on a child of one cancellation token, and stops
//! them in order when it fires: the listeners stop accepting first, then
//! the job engine, the promotion loop and the dispatcher finish what they
//! hold, then the outbox's sender delivers what the outbox holds before it
//! stops; every stage has a deadline (orchestrator/tests/shutdown.rs), and
//! the stages are the kit's [`Stage`]s, as in the hub and the agent.
//! [`start`] does both for callers that want a handle.

mod error;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use sextant_exporters::outbox::{Outbox, OutboxConfig};
use sextant_exporters::sender::{self, HttpConfig, HttpTransport, SenderConfig};
use sextant_kit::Secret;
pub use sextant_kit::rate_limit::RateLimitConfig;
use sextant_kit::rate_limit::TenantLimiter;
pub use sextant_kit::serve::{ListenerLimits, ServerTlsConfig};
use sextant_kit::shutdown::{Stage, Stopped};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agents::{AgentChannel, AgentGrpc};
use crate::api::{self, ApiState, TokenConfig};
use crate::executor::Executor;
use crate::service::{Orchestrator, Settings};
use crate::store::Store;
use axum::Router;
use sextant_kit::serve::{ServerTls, bind};

pub use error::AppError;

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
    /// Trace and log links for every trace id the job page and the JSON
    /// show (`trace_url_template`, `logs_url_template`); none by default.
    pub links: sextant_kit::links::TraceLinks,
    pub settings: Settings,
}

/// The outbox consumer the sender to the hub reads as.
const SENDER_CONSUMER: &str = "default";

/// How long each stage of shutdown may take before the next one starts.
const STAGE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// One orchestrator replica, built and ready to run.
pub struct Application {
    orchestrator: Arc<Orchestrator>,
    channel: Arc<AgentChannel>,
    api: TcpListener,
    addr: SocketAddr,
    router: Router,
    agents: Option<(TcpListener, Option<ServerTls>)>,
    agent_addr: Option<SocketAddr>,
    /// The outbox's sender to the hub's OTLP/HTTP endpoint.
    sender: Option<(Outbox, HttpTransport)>,
    listeners: ListenerLimits,
    replica: String,
}

impl Application {
    /// Checks `config`, opens the store and the outbox, and binds the API
    /// (and agent) listeners; nothing runs yet. `ssh` runs SSH targets'
    /// tasks.
    pub async fn build(config: RuntimeConfig, ssh: Arc<dyn Executor>) -> Result<Self, AppError> {
        let rate_limit = TenantLimiter::new(config.api_rate_limit).map_err(AppError::RateLimit)?;
        config.listeners.validate().map_err(AppError::Listeners)?;
        if config.metrics_require_token && config.tokens.is_empty() {
            return Err(AppError::MetricsWithoutTokens);
        }
        // Two listeners share the process's open files.
        let listeners = ListenerLimits {
            max_connections: sextant_kit::serve::fit_connections(
                config.listeners.max_connections,
                2,
            ),
            ..config.listeners
        };
        let agent_tls = config.agent_tls.load().map_err(AppError::AgentTls)?;
        let store = Store::open(&config.database_url)
            .await
            .map_err(AppError::Store)?;
        let sender = match &config.hub_otlp {
            Some(endpoint) => {
                let outbox = Outbox::open(
                    config.data_dir.join("orchestrator-outbox"),
                    OutboxConfig::default(),
                )
                .map_err(AppError::Outbox)?;
                let transport = HttpTransport::new(HttpConfig {
                    token: config.hub_token.clone().map(Secret::new),
                    ..HttpConfig::new(endpoint.clone())
                })
                .map_err(AppError::HubOtlp)?;
                Some((outbox, transport))
            }
            None => None,
        };
        let hub = config
            .hub_api
            .as_deref()
            .map(|url| crate::promotion::gates::hub::hub_client(url, config.hub_token.clone()))
            .transpose()
            .map_err(AppError::HubApi)?;
        // The channel's own tasks (session streams) follow the engine's
        // token, cancelled in `run_until_stopped`.
        let mut channel = AgentChannel::new(
            store.clone(),
            config.settings.replica.clone(),
            config.agent_heartbeat,
            CancellationToken::new(),
        );
        channel.registry_auth = config.registry_auth.clone();
        let channel = Arc::new(channel);
        let outbox = sender.as_ref().map(|(o, _)| o.clone());
        let orchestrator = Arc::new(
            Orchestrator::new(store, config.settings.clone(), hub, outbox, ssh)
                .with_agent_channel(channel.clone()),
        );
        let (agents, agent_addr) = match config.agent_listen {
            Some(listen) => {
                let (listener, addr) = bind(listen, "agents").await?;
                (Some((listener, agent_tls)), Some(addr))
            }
            None => (None, None),
        };
        let (api, addr) = bind(config.listen, "the API").await?;
        let router = api::router(
            ApiState::new(
                orchestrator.clone(),
                &config.tokens,
                config.insecure_registries.clone(),
            )
            .with_rate_limit(rate_limit)
            .with_metrics_token(config.metrics_require_token)
            .with_links(config.links.clone()),
            crate::ui::router(),
        );
        Ok(Self {
            orchestrator,
            channel,
            api,
            addr,
            router,
            agents,
            agent_addr,
            sender,
            listeners,
            replica: config.settings.replica,
        })
    }

    /// The API's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The agent channel's gRPC address, if it listens.
    pub fn agent_addr(&self) -> Option<SocketAddr> {
        self.agent_addr
    }

    /// The replica's shared state.
    pub fn orchestrator(&self) -> Arc<Orchestrator> {
        self.orchestrator.clone()
    }

    /// Runs every component until `shutdown` fires or one of them fails,
    /// then stops them in order (see the module docs).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let o = &self.orchestrator;
        let refused = |listener: &str| {
            o.replica_metrics
                .listener_refused
                .with_label_values(&[listener])
        };
        let mut serving = Stage::new("listeners");
        if let Some((listener, tls)) = self.agents {
            let service = AgentGrpc::new(self.channel.clone()).service();
            let (limits, refused, c) = (self.listeners, refused("agents"), serving.child_token());
            serving.spawn(async move {
                // Keepalive pings every 20 s keep a live agent's connection
                // busy, so only a dead or silent one meets the idle timeout.
                tonic::transport::Server::builder()
                    .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
                    .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
                    .add_service(service)
                    .serve_with_incoming_shutdown(
                        sextant_kit::serve::incoming_tls(listener, limits, refused, tls),
                        async move { c.cancelled().await },
                    )
                    .await
                    .map_err(AppError::AgentServer)
            });
        }
        let (limits, refused_api, c) = (self.listeners, refused("api"), serving.child_token());
        let (api, router) = (self.api, self.router);
        serving.spawn(async move {
            sextant_kit::serve::serve_http(api, router, limits, refused_api, c)
                .await
                .map_err(AppError::ApiServer)
        });
        let mut working = Stage::new("job engine");
        let (ch, c) = (self.channel.clone(), working.child_token());
        working.spawn(async move {
            crate::agents::server::dispatch(ch, c).await;
            Ok(())
        });
        let (eng, c) = (o.clone(), working.child_token());
        working.spawn(async move {
            eng.run(c).await;
            Ok(())
        });
        let (promo, c) = (o.clone(), working.child_token());
        working.spawn(async move {
            promo.run_promotions(c).await;
            Ok(())
        });
        let session_token = self.channel.shutdown_token();
        let mut sending = Stage::new("outbox sender");
        let outbox = self.sender.as_ref().map(|(outbox, _)| outbox.clone());
        if let Some((outbox, transport)) = self.sender {
            let c = sending.child_token();
            sending.spawn(async move {
                sender::run(
                    outbox,
                    SENDER_CONSUMER,
                    transport,
                    SenderConfig::default(),
                    c,
                )
                .await
                .map_err(AppError::Sender)
            });
        }
        tracing::info!(addr = %self.addr, agents = ?self.agent_addr, backend = o.store.backend(),
            replica = %self.replica, "Sextant orchestrator started");
        // Until asked to stop, or until a component ends.
        let mut result = tokio::select! {
            () = shutdown.cancelled() => Ok(()),
            ended = serving.ended() => ended,
            ended = working.ended() => ended,
            ended = sending.ended() => ended,
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "Orchestrator component failed; stopping");
        }
        // 1. Stop accepting requests and agent streams; the open sessions
        // end too, or the gRPC server's graceful shutdown would wait for
        // agents.
        session_token.cancel();
        serving.stop(STAGE_DEADLINE, &mut result).await;
        // 2. The engine, the promotion loop and the dispatcher finish what
        // they hold; leases left behind expire.
        working.stop(STAGE_DEADLINE, &mut result).await;
        // 3. The sender delivers what the outbox holds (the engine's last
        // desired state included), then stops; what it could not send
        // stays on disk for the next start.
        if let Some(outbox) = &outbox
            && !sending.is_empty()
        {
            delivered(outbox).await;
        }
        sending.stop(STAGE_DEADLINE, &mut result).await;
        shutdown.cancel();
        result
    }
}

/// Waits up to [`STAGE_DEADLINE`] until the sender has delivered every
/// record the outbox holds (the sender stops the moment it is cancelled,
/// cutting off the requests it has in flight).
async fn delivered(outbox: &Outbox) {
    let pending = || {
        outbox
            .stats()
            .consumers
            .iter()
            .find(|c| c.name == SENDER_CONSUMER)
            .map_or(0, |c| c.pending)
    };
    let all = async {
        while pending() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(STAGE_DEADLINE, all).await.is_err() {
        tracing::warn!(pending = pending(), deadline = ?STAGE_DEADLINE,
            "The outbox was not delivered before the deadline; the rest is sent at the next start");
    }
}

/// A running orchestrator: [`Application::run_until_stopped`] on a task of
/// its own.
pub struct Running {
    pub addr: SocketAddr,
    /// The agent channel's gRPC address, if it listens.
    pub agent_addr: Option<SocketAddr>,
    pub orchestrator: Arc<Orchestrator>,
    cancel: CancellationToken,
    handle: JoinHandle<Result<(), AppError>>,
}

impl Running {
    /// Stops everything and waits for it.
    pub async fn stop(self) -> Result<(), AppError> {
        self.cancel.cancel();
        self.wait().await
    }

    /// Waits until `cancel` fires (or a part fails).
    pub async fn wait(self) -> Result<(), AppError> {
        self.handle
            .await
            .map_err(|e| Stopped::new("orchestrator", e))?
    }
}

/// Builds a replica and runs it until `cancel` fires; `ssh` runs SSH
/// targets' tasks.
pub async fn start(
    config: RuntimeConfig,
    ssh: Arc<dyn Executor>,
    cancel: CancellationToken,
) -> Result<Running, AppError> {
    let app = Application::build(config, ssh).await?;
    let (addr, agent_addr, orchestrator) = (app.addr(), app.agent_addr(), app.orchestrator());
    let handle = tokio::spawn(app.run_until_stopped(cancel.clone()));
    Ok(Running {
        addr,
        agent_addr,
        orchestrator,
        cancel,
        handle,
    })
}
