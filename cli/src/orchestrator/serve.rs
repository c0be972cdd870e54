//! `sextant orchestrator`: one orchestrator replica until SIGINT or
//! SIGTERM. `sextant up` starts one in-process through [`start`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use sextant_orchestrator::api::TokenConfig;
use sextant_orchestrator::executor::ssh::SshExecutor;
use sextant_orchestrator::model::Span;
use sextant_orchestrator::runtime::{self, RateLimitConfig, Running, RuntimeConfig};
use sextant_orchestrator::service::Settings;
use tokio_util::sync::CancellationToken;

/// Settings of `sextant orchestrator`; each flag also reads the
/// environment variable it names.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// API listen address.
    #[arg(
        long,
        env = "SEXTANT_ORCHESTRATOR_ADDR",
        default_value = "127.0.0.1:8081"
    )]
    pub listen: SocketAddr,
    /// sqlite://… or postgres://… [default: sqlite://DATA_DIR/orchestrator.db]
    #[arg(
        long,
        env = "SEXTANT_ORCHESTRATOR_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Data directory (the SQLite database and the outbox of desired state).
    #[arg(long, env = "SEXTANT_DATA_DIR", default_value = ".sextant")]
    pub data_dir: PathBuf,
    /// The hub's API, for gates and canary analysis.
    #[arg(long, env = "SEXTANT_HUB_URL", default_value = "http://127.0.0.1:8080")]
    pub hub_url: String,
    /// The hub's OTLP/HTTP endpoint, where desired state goes.
    #[arg(
        long,
        env = "SEXTANT_HUB_OTLP_ENDPOINT",
        default_value = "http://127.0.0.1:4318"
    )]
    pub hub_otlp_endpoint: String,
    /// Bearer token for the hub (scopes `read` and `ingest`, or `admin`).
    #[arg(long, env = "SEXTANT_HUB_TOKEN", hide_env_values = true)]
    pub hub_token: Option<String>,
    /// Run without a hub (the hub flags are ignored): no desired state is
    /// sent, and hub gates deny.
    #[arg(long)]
    pub no_hub: bool,
    /// A registry (`host:port`) reached over plain HTTP to resolve tags.
    /// Repeatable.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST:PORT",
        env = "SEXTANT_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// A YAML list of API tokens (`- {token, tenant, subject}`); the
    /// subject is the actor. Without tokens only loopback addresses are
    /// allowed, and the actor is the `X-Sextant-Actor` header.
    #[arg(long, env = "SEXTANT_ORCHESTRATOR_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// This replica's name in job leases [default: orchestrator-<random>].
    #[arg(long, env = "SEXTANT_ORCHESTRATOR_REPLICA")]
    pub replica: Option<String>,
    /// How long a job lease lasts without renewal.
    #[arg(long, env = "SEXTANT_ORCHESTRATOR_LEASE", value_parser = Span::parse, default_value = "15s")]
    pub lease: Span,
    /// How often the engine looks for jobs and gates are re-evaluated.
    #[arg(long, env = "SEXTANT_ORCHESTRATOR_POLL", value_parser = Span::parse, default_value = "2s")]
    pub poll: Span,
    /// Where agents dial in (gRPC, docs/agent-channel.md) [default:
    /// 127.0.0.1:8082, or port 0 when --listen's port is 0]
    #[arg(long, env = "SEXTANT_AGENT_LISTEN_ADDR")]
    pub agent_listen: Option<SocketAddr>,
    /// Accept no agent streams on this replica (it still queues tasks that
    /// other replicas deliver).
    #[arg(long)]
    pub no_agent_listener: bool,
    /// How often agents send heartbeats; online means at most two missed.
    #[arg(long, env = "SEXTANT_AGENT_HEARTBEAT", value_parser = Span::parse, default_value = "30s")]
    pub agent_heartbeat: Span,
    /// Default timeout of a task (an agent task's deadline).
    #[arg(long, env = "SEXTANT_TASK_TIMEOUT", value_parser = Span::parse, default_value = "10m")]
    pub task_timeout: Span,
    /// Registry credentials for agent tasks, in Docker's config.json format
    /// (`{"auths": {"HOST": {"auth": "base64(user:password)"}}}`): each task
    /// carries its image registry's credentials on delivery; they are never
    /// stored in the database.
    #[arg(long, env = "SEXTANT_REGISTRY_AUTH_FILE", value_name = "CONFIG_JSON")]
    pub registry_auth: Option<PathBuf>,
    /// Requests per second each tenant may make to the API (fractions
    /// allowed); over it the API answers 429 with Retry-After. 0: unlimited.
    #[arg(
        long,
        env = "SEXTANT_ORCHESTRATOR_API_RATE_LIMIT",
        value_name = "PER_SECOND",
        default_value_t = 0.0,
        value_parser = rate_per_second
    )]
    pub api_rate_limit: f64,
    /// Requests a tenant may make at once before --api-rate-limit applies;
    /// 0: the rate rounded up.
    #[arg(
        long,
        env = "SEXTANT_ORCHESTRATOR_API_RATE_BURST",
        value_name = "REQUESTS",
        default_value_t = 0
    )]
    pub api_rate_burst: u32,
}

/// A rate limit's requests per second: a finite number of at least 0.
fn rate_per_second(value: &str) -> Result<f64, String> {
    let rate: f64 = value.parse().map_err(|e| format!("{e}"))?;
    RateLimitConfig::new(rate, 0)
        .validate()
        .map(|()| rate)
        .map_err(|e| e.to_string())
}

impl ServeArgs {
    fn config(&self) -> anyhow::Result<RuntimeConfig> {
        let tokens = match &self.tokens_file {
            Some(path) => read_tokens(path)?,
            None => Vec::new(),
        };
        let mut settings = Settings::default();
        if let Some(r) = &self.replica {
            settings.replica = r.clone();
        }
        if self.lease.0.is_zero() || self.poll.0.is_zero() {
            bail!("--lease and --poll must be longer than zero");
        }
        settings.lease = self.lease.0;
        settings.poll = self.poll.0;
        if self.agent_heartbeat.0.is_zero() || self.task_timeout.0.is_zero() {
            bail!("--agent-heartbeat and --task-timeout must be longer than zero");
        }
        settings.task_timeout = self.task_timeout.0;
        let (hub_api, hub_otlp) = if self.no_hub {
            (None, None)
        } else {
            (
                Some(self.hub_url.trim_end_matches('/').to_owned()),
                Some(self.hub_otlp_endpoint.clone()),
            )
        };
        Ok(RuntimeConfig {
            listen: self.listen,
            database_url: self
                .database_url
                .clone()
                .unwrap_or_else(|| sqlite_url(&self.data_dir)),
            data_dir: self.data_dir.clone(),
            hub_api,
            hub_otlp,
            hub_token: self.hub_token.clone(),
            tokens,
            insecure_registries: self.insecure_registries.clone(),
            agent_listen: (!self.no_agent_listener).then(|| {
                self.agent_listen.unwrap_or_else(|| {
                    // Tests bind everything to port 0; a fixed port would collide.
                    let port = if self.listen.port() == 0 { 0 } else { 8082 };
                    SocketAddr::new(self.listen.ip(), port)
                })
            }),
            agent_heartbeat: self.agent_heartbeat.0,
            registry_auth: match &self.registry_auth {
                Some(path) => sextant_orchestrator::agents::registry::RegistryAuths::load(path)
                    .map_err(|e| anyhow::anyhow!("--registry-auth: {e}"))?,
                None => Default::default(),
            },
            api_rate_limit: RateLimitConfig::new(self.api_rate_limit, self.api_rate_burst),
            settings,
        })
    }
}

fn read_tokens(path: &Path) -> anyhow::Result<Vec<TokenConfig>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the tokens file {}", path.display()))?;
    let tokens: Vec<TokenConfig> = serde_norway::from_str(&text)
        .with_context(|| format!("invalid tokens file {}", path.display()))?;
    if let Some(t) = tokens.iter().find(|t| t.token.trim().len() < 16) {
        bail!(
            "token of {} in {} is shorter than 16 characters",
            t.subject,
            path.display()
        );
    }
    Ok(tokens)
}

/// `sqlite://DATA_DIR/orchestrator.db`.
pub fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("orchestrator.db").display())
}

/// The runtime configuration of the orchestrator `sextant up` starts next
/// to the hub.
pub fn local_config(
    listen: SocketAddr,
    agent_listen: SocketAddr,
    data_dir: &Path,
    hub_api: SocketAddr,
    hub_otlp: SocketAddr,
    hub_token: Option<String>,
) -> RuntimeConfig {
    RuntimeConfig {
        listen,
        database_url: sqlite_url(data_dir),
        data_dir: data_dir.to_path_buf(),
        hub_api: Some(format!("http://{}", reachable(hub_api))),
        hub_otlp: Some(format!("http://{}", reachable(hub_otlp))),
        hub_token,
        tokens: Vec::new(),
        insecure_registries: Vec::new(),
        agent_listen: Some(agent_listen),
        agent_heartbeat: std::time::Duration::from_secs(30),
        registry_auth: Default::default(),
        api_rate_limit: Default::default(),
        settings: Settings::default(),
    }
}

/// A listener bound to 0.0.0.0 or :: is reached over loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// Starts a replica that runs SSH targets' tasks with russh; refuses a
/// non-loopback address without tokens, as the hub does.
pub async fn start(config: RuntimeConfig, cancel: CancellationToken) -> anyhow::Result<Running> {
    if config.tokens.is_empty() && !config.listen.ip().is_loopback() {
        bail!(
            "refusing to listen on non-loopback address {} with no tokens: without tokens \
             anyone can act as anyone (X-Sextant-Actor); pass --tokens-file",
            config.listen
        );
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    runtime::start(config, Arc::new(SshExecutor::new()), cancel).await
}

/// `sextant orchestrator`.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let cancel = CancellationToken::new();
    tokio::spawn(crate::stop_on_signal(cancel.clone())?);
    let database = sextant_receiver::app::redact_url(&config.database_url);
    let hub = config.hub_api.clone();
    let hub_otlp = config.hub_otlp.clone();
    let replica = config.settings.replica.clone();
    let running = start(config, cancel).await?;
    let addr = running.addr;
    let mut b = String::new();
    crate::banner_line!(
        b,
        "Sextant orchestrator is up ({} database)",
        running.orchestrator.store.backend()
    );
    crate::banner_line!(b, "  database     {database}");
    crate::banner_line!(b, "  API          http://{addr}/api/v1");
    crate::banner_line!(b, "  API docs     http://{addr}/api/openapi.json");
    crate::banner_line!(b, "  health       http://{addr}/health/ready");
    if let Some(agents) = running.agent_addr {
        crate::banner_line!(b, "  agents       http://{agents} (gRPC)");
    }
    match (hub, hub_otlp) {
        (Some(api), Some(otlp)) => {
            crate::banner_line!(b, "  hub          {api} (desired state to {otlp})")
        }
        _ => crate::banner_line!(b, "  hub          none (--no-hub)"),
    }
    crate::banner_line!(b, "  replica      {replica}");
    crate::banner_line!(b, "Press Ctrl-C to stop.");
    crate::banner(&b);
    running.wait().await?;
    tracing::info!("Stopped");
    Ok(())
}
