//! `sextant up`: the hub on an embedded database in the data directory,
//! the orchestrator next to it unless `--no-orchestrator`, and with
//! `--demo` a demo estate sent through the hub's own OTLP receiver and its
//! flow (releases, promotions, jobs, two dry-run agents) built through the
//! orchestrator's API.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};
use sextant_kit::config::{EnvVar, Layers, env_help, file_path, process_env};
use sextant_orchestrator::config::{AGENT_TLS_ENV, AgentTlsFiles, OrchestratorConfig};
use sextant_orchestrator::domain::Span;
use sextant_receiver::auth::Scope;
use sextant_receiver::{Application, HubConfig};
use tokio_util::sync::CancellationToken;

use crate::{banner, demo, orchestrator, stop_on_signal};

/// The variables of `sextant up`'s own settings, beside the hub's
/// (`HubConfig`'s `SEXTANT_…`, named in the flags' help) and the agent
/// listener's TLS files ([`AGENT_TLS_ENV`]).
pub(crate) const ENV: &[EnvVar] = &[
    EnvVar::file("SEXTANT_CONFIG"),
    EnvVar::text("SEXTANT_ORCHESTRATOR_ADDR", "orchestrator_addr"),
    EnvVar::text("SEXTANT_AGENT_LISTEN_ADDR", "agent_addr"),
];

/// Settings of `sextant up`. Each overrides the config file and the
/// `SEXTANT_…` environment variable of the same name.
#[derive(Debug, Args)]
#[command(mut_args = env_help(ENV))]
pub struct UpArgs {
    /// TOML config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// OTLP/gRPC listen address [env: SEXTANT_OTLP_GRPC_ADDR] [default: 127.0.0.1:4317]
    #[arg(long)]
    otlp_grpc_addr: Option<SocketAddr>,
    /// OTLP/HTTP listen address [env: SEXTANT_OTLP_HTTP_ADDR] [default: 127.0.0.1:4318]
    #[arg(long)]
    otlp_http_addr: Option<SocketAddr>,
    /// API listen address [env: SEXTANT_API_ADDR] [default: 127.0.0.1:8080]
    #[arg(long)]
    api_addr: Option<SocketAddr>,
    /// sqlite://… or postgres://… [env: SEXTANT_DATABASE_URL] [default: sqlite://DATA_DIR/hub.db]
    #[arg(long)]
    database_url: Option<String>,
    /// Data directory [env: SEXTANT_DATA_DIR] [default: .sextant]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Certificate chain (PEM) the three hub listeners serve TLS with
    /// [env: SEXTANT_TLS__CERT_FILE] [file: tls.cert_file]
    #[arg(long, value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM) [env: SEXTANT_TLS__KEY_FILE]
    /// [file: tls.key_file]
    #[arg(long, value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// CA (PEM) client certificates must chain to: every client of the hub
    /// then needs one (mTLS) [env: SEXTANT_TLS__CLIENT_CA_FILE] [file:
    /// tls.client_ca_file]
    #[arg(long, value_name = "PEM")]
    tls_client_ca: Option<PathBuf>,
    /// Orchestrator API listen address [default: 127.0.0.1:8081, or port 0
    /// when the API's port is 0]
    #[arg(long)]
    orchestrator_addr: Option<SocketAddr>,
    /// Where agents dial the orchestrator (gRPC) [default: 127.0.0.1:8082,
    /// or port 0 when the API's port is 0]
    #[arg(long)]
    agent_addr: Option<SocketAddr>,
    #[command(flatten)]
    agent_tls: orchestrator::serve::AgentTlsArgs,
    #[command(flatten)]
    orchestrator: UpOrchestratorArgs,
    /// Run the hub alone, without the orchestrator.
    #[arg(long)]
    no_orchestrator: bool,
    /// Seed a realistic demo estate through the hub's own OTLP receiver and
    /// keep its hosts reporting; with the orchestrator, also its flow:
    /// releases, a promotion awaiting approval, a running job, a
    /// rolled-back job and two dry-run agents.
    #[arg(long)]
    demo: bool,
}

/// The orchestrator's own settings, which `sextant up` takes as
/// `sextant orchestrator` does: from its TOML file, its environment
/// variables and these flags (`OrchestratorConfig`'s layers). What the hub
/// beside it decides (its address, token, tokens, rate limit, listener
/// limits, `/metrics` token and data directory) comes from the hub.
#[derive(Debug, Default, Serialize, Args)]
pub struct UpOrchestratorArgs {
    /// The orchestrator's TOML settings, the file `sextant orchestrator
    /// --config` reads [env: SEXTANT_ORCHESTRATOR_CONFIG]
    #[arg(long, value_name = "TOML")]
    #[serde(skip)]
    orchestrator_config: Option<PathBuf>,
    /// A registry (`host:port`) the orchestrator reaches over plain HTTP to
    /// resolve tags. Repeatable, or comma-separated [env:
    /// SEXTANT_INSECURE_REGISTRIES]
    #[arg(
        long = "insecure-registry",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    insecure_registries: Vec<String>,
    /// The orchestrator's name in job leases [env:
    /// SEXTANT_ORCHESTRATOR_REPLICA] [default: orchestrator-<random>]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    replica: Option<String>,
    /// How long a job lease lasts without renewal [env:
    /// SEXTANT_ORCHESTRATOR_LEASE] [default: 15s]
    #[arg(long, value_parser = Span::parse)]
    #[serde(skip_serializing_if = "Option::is_none")]
    lease: Option<Span>,
    /// How often the engine looks for jobs and gates are re-evaluated [env:
    /// SEXTANT_ORCHESTRATOR_POLL] [default: 2s]
    #[arg(long, value_parser = Span::parse)]
    #[serde(skip_serializing_if = "Option::is_none")]
    poll: Option<Span>,
    /// How often agents send heartbeats [env: SEXTANT_AGENT_HEARTBEAT]
    /// [default: 30s]
    #[arg(long, value_parser = Span::parse)]
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_heartbeat: Option<Span>,
    /// Default timeout of a task [env: SEXTANT_TASK_TIMEOUT] [default: 10m]
    #[arg(long, value_parser = Span::parse)]
    #[serde(skip_serializing_if = "Option::is_none")]
    task_timeout: Option<Span>,
    /// Registry credentials for agent tasks, in Docker's config.json format
    /// [env: SEXTANT_REGISTRY_AUTH_FILE]
    #[arg(long, value_name = "CONFIG_JSON")]
    #[serde(skip_serializing_if = "Option::is_none")]
    registry_auth: Option<PathBuf>,
}

impl UpArgs {
    fn config(&self) -> anyhow::Result<HubConfig> {
        let file = file_path(self.config.as_deref(), ENV, process_env);
        let mut config = HubConfig::load_with_flags(file.as_deref(), &self.flags())
            .context("invalid configuration")?;
        if self.demo && config.environments.is_empty() {
            config.environments = demo::ENVIRONMENTS.map(String::from).to_vec();
        }
        Ok(config)
    }

    /// The hub settings given on the command line, under the file's keys:
    /// the last layer of the hub's configuration (kit's `Layers`).
    fn flags(&self) -> HubFlags {
        HubFlags {
            otlp_grpc_addr: self.otlp_grpc_addr,
            otlp_http_addr: self.otlp_http_addr,
            api_addr: self.api_addr,
            database_url: self.database_url.clone(),
            data_dir: self.data_dir.clone(),
            tls: TlsFlags {
                cert_file: self.tls_cert.clone(),
                key_file: self.tls_key.clone(),
                client_ca_file: self.tls_client_ca.clone(),
            },
        }
    }
}

/// The settings of the orchestrator beside the hub: defaults, then the
/// variables of [`ENV`] and [`AGENT_TLS_ENV`], then the flags (the hub's
/// file has no keys for them).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct OrchestratorSettings {
    orchestrator_addr: Option<SocketAddr>,
    agent_addr: Option<SocketAddr>,
    agent_tls: AgentTlsFiles,
    /// The orchestrator's own settings ([`UpOrchestratorArgs`]).
    #[serde(skip)]
    own: OrchestratorConfig,
}

/// The flags of [`OrchestratorSettings`]; a flag left out leaves the
/// variable in force.
#[derive(Serialize)]
struct OrchestratorFlags<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    orchestrator_addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_addr: Option<SocketAddr>,
    agent_tls: &'a orchestrator::serve::AgentTlsArgs,
}

impl UpArgs {
    fn orchestrator(
        &self,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> anyhow::Result<OrchestratorSettings> {
        let flags = OrchestratorFlags {
            orchestrator_addr: self.orchestrator_addr,
            agent_addr: self.agent_addr,
            agent_tls: &self.agent_tls,
        };
        let mut settings: OrchestratorSettings = Layers::new(OrchestratorSettings::default())
            .env_vars(ENV, &env)
            .env_vars(AGENT_TLS_ENV, &env)
            .flags(&flags)
            .load()
            .context("invalid orchestrator settings")?;
        settings.own = OrchestratorConfig::load_in(
            self.orchestrator.orchestrator_config.as_deref(),
            &env,
            &self.orchestrator,
        )
        .context("invalid orchestrator settings")?;
        Ok(settings)
    }
}

/// [`UpArgs::flags`]: a flag left out leaves the file and the
/// environment in force.
#[derive(serde::Serialize)]
struct HubFlags {
    #[serde(skip_serializing_if = "Option::is_none")]
    otlp_grpc_addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    otlp_http_addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    tls: TlsFlags,
}

#[derive(serde::Serialize)]
struct TlsFlags {
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ca_file: Option<PathBuf>,
}

/// Runs `sextant up` until SIGINT or SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let settings = args.orchestrator(process_env)?;
    let mut app = Application::build(&config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone())?);
    if app.is_tls() && !args.no_orchestrator {
        // Its hub client (gates, desired state) speaks plain HTTP to the
        // hub's listeners; it would be refused.
        anyhow::bail!(
            "the orchestrator of `sextant up` cannot reach a hub that serves TLS yet: add \
             --no-orchestrator and run `sextant orchestrator` on its own"
        );
    }
    if app.is_tls() && args.demo {
        anyhow::bail!("--demo sends over plain HTTP: it cannot be combined with TLS");
    }
    let orchestrator = if args.no_orchestrator {
        None
    } else {
        let local = local_orchestrator(&settings, &config, &app)?;
        let database = local.database_url.clone();
        let running = orchestrator::serve::start(local, shutdown.clone())
            .await
            .context(
                "cannot start the orchestrator (use --orchestrator-addr, --agent-addr or \
                 --no-orchestrator)",
            )?;
        // Host pages link the jobs that changed them to this orchestrator.
        app.link_orchestrator(&format!("http://{}", running.addr));
        Some((running, database))
    };
    let beside = orchestrator.as_ref().map(|(running, database)| Beside {
        addr: running.addr,
        agent_addr: running.agent_addr,
        agent_tls: settings.agent_tls.server_tls().is_enabled(),
        database,
    });
    banner(&up_banner(&app, &config, beside));
    if args.demo {
        let flow = demo_flow(
            &args,
            &settings,
            &config,
            orchestrator.as_ref().map(|(r, _)| r),
        );
        tokio::spawn(demo::run(
            app.otlp_http_addr(),
            app.api_addr(),
            ingest_token(&config),
            flow,
            shutdown.child_token(),
        ));
    }

    let hub = app.run_until_stopped(shutdown.clone()).await;
    shutdown.cancel();
    if let Some((running, _)) = orchestrator {
        running.wait().await.context("the orchestrator failed")?;
    }
    hub?;
    tracing::info!("Stopped");
    Ok(())
}

/// Where `--demo` builds its flow: the orchestrator beside the hub, and
/// its agent listener, which the demo's in-process agents dial without TLS.
/// `None` (with the reason logged) when there is no such orchestrator.
fn demo_flow(
    args: &UpArgs,
    settings: &OrchestratorSettings,
    config: &HubConfig,
    orchestrator: Option<&sextant_orchestrator::app::Running>,
) -> Option<demo::flow::FlowConfig> {
    let why = match orchestrator {
        _ if args.no_orchestrator => "--no-orchestrator",
        None => "no orchestrator",
        Some(running) => match running.agent_addr {
            None => "the orchestrator has no agent listener",
            Some(_) if settings.agent_tls.server_tls().is_enabled() => {
                "the agent listener serves TLS, which the demo's agents do not speak"
            }
            Some(agents) => {
                return Some(demo::flow::FlowConfig {
                    api: format!("http://{}", orchestrator::serve::reachable(running.addr)),
                    agents: format!("http://{}", orchestrator::serve::reachable(agents)),
                    data_dir: config.data_dir.clone(),
                });
            }
        },
    };
    tracing::info!(
        reason = why,
        "The demo shows the hub's estate only, without the orchestrator's flow"
    );
    None
}

/// The orchestrator `sextant up` runs beside the hub: its own settings
/// (file, environment, flags: [`UpOrchestratorArgs`]) read as `sextant
/// orchestrator` reads them, with the hub's address, token, tokens,
/// tenants, rate limit, listener limits and `/metrics` token, on the hub's
/// loopback ports' neighbours, its SQLite database in the hub's data
/// directory unless its settings name one.
fn local_orchestrator(
    args: &OrchestratorSettings,
    config: &HubConfig,
    app: &Application,
) -> anyhow::Result<sextant_orchestrator::app::RuntimeConfig> {
    // Tests bind everything to port 0; a fixed port would collide.
    let port = |fixed| {
        if config.api_addr.port() == 0 {
            0
        } else {
            fixed
        }
    };
    let mut own = args.own.clone();
    own.listen = args
        .orchestrator_addr
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], port(8081))));
    own.agent_listen = Some(
        args.agent_addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], port(8082)))),
    );
    own.no_agent_listener = false;
    own.data_dir = config.data_dir.clone();
    own.no_hub = false;
    own.hub_url = format!("http://{}", orchestrator::serve::reachable(app.api_addr()));
    own.hub_otlp_endpoint = format!(
        "http://{}",
        orchestrator::serve::reachable(app.otlp_http_addr())
    );
    own.hub_token = hub_token(config).map(sextant_kit::Secret::new);
    let mut local = orchestrator::serve::runtime_config(&own)?;
    // It runs in this process, whose spans and logs carry `sextant up`'s
    // service.name.
    local.links.service = sextant_exporters::telemetry::service_name("sextant");
    if own.tokens_file.is_none() {
        // The hub's tokens, tenants and scopes guard the orchestrator's
        // API too; without any, both are open (loopback only).
        local.tokens = orchestrator::serve::hub_tokens(&config.tokens);
    }
    // One API budget per tenant for both APIs of `sextant up`: the
    // hub's `[rate_limits.api]` applies to the orchestrator's too.
    local.api_rate_limit = config.rate_limits.api;
    // And the hub's listener limits and /metrics token.
    local.listeners = config.listeners;
    local.metrics_require_token = config.metrics_require_token;
    local.agent_tls = args.agent_tls.server_tls();
    Ok(local)
}

/// The orchestrator running beside the hub, as the banner names it.
struct Beside<'a> {
    addr: SocketAddr,
    agent_addr: Option<SocketAddr>,
    agent_tls: bool,
    database: &'a str,
}

/// What `sextant up` prints once every listener is bound.
fn up_banner(app: &Application, config: &HubConfig, orchestrator: Option<Beside<'_>>) -> String {
    let mut b = String::new();
    banner_line!(b, "Sextant hub is up ({} database)", app.store().backend());
    banner_line!(
        b,
        "  database     {}",
        sextant_kit::database::redact_url(&config.database_url())
    );
    let scheme = if app.is_tls() { "https" } else { "http" };
    banner_line!(b, "  OTLP/gRPC    {scheme}://{}", app.otlp_grpc_addr());
    banner_line!(
        b,
        "  OTLP/HTTP    {scheme}://{}/v1/logs, /v1/metrics, /v1/traces",
        app.otlp_http_addr()
    );
    banner_line!(b, "  UI           {scheme}://{}/", app.api_addr());
    banner_line!(
        b,
        "  API          {scheme}://{}/api/v1/state",
        app.api_addr()
    );
    banner_line!(b, "  API docs     {scheme}://{}/api/docs", app.api_addr());
    banner_line!(
        b,
        "  health       {scheme}://{}/health/ready",
        app.api_addr()
    );
    banner_line!(b, "  metrics      {scheme}://{}/metrics", app.api_addr());
    if let Some(o) = orchestrator {
        banner_line!(
            b,
            "  orchestrator http://{}/api/v1 ({})",
            o.addr,
            o.database
        );
        banner_line!(b, "  orch. docs   http://{}/api/openapi.json", o.addr);
        if let Some(agents) = o.agent_addr {
            let scheme = if o.agent_tls { "https" } else { "http" };
            banner_line!(b, "  agents       {scheme}://{agents} (gRPC)");
        }
    }
    banner_line!(b, "Press Ctrl-C to stop.");
    b
}

/// An ingest-capable token for the demo, when the hub has tokens.
fn ingest_token(config: &HubConfig) -> Option<String> {
    config
        .tokens
        .iter()
        .find(|t| {
            t.scopes
                .iter()
                .any(|s| matches!(s, Scope::Ingest | Scope::Admin))
        })
        .map(|t| t.token.expose().to_owned())
}

/// The hub token the local orchestrator uses to read the hub and send it
/// desired state: an `admin` token, else an `ingest` one (desired state
/// matters most), else a `read` one.
fn hub_token(config: &HubConfig) -> Option<String> {
    [Scope::Admin, Scope::Ingest, Scope::Read]
        .iter()
        .find_map(|scope| config.tokens.iter().find(|t| t.scopes.contains(scope)))
        .map(|t| t.token.expose().to_owned())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use sextant_kit::config::fixed_env;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: UpArgs,
    }

    fn orchestrator(argv: &[&str], env: &[(&str, &str)]) -> OrchestratorSettings {
        Cli::parse_from(std::iter::once("up").chain(argv.iter().copied()))
            .args
            .orchestrator(fixed_env(env))
            .expect("valid")
    }

    #[test]
    fn the_orchestrators_addresses_come_from_flags_then_variables() {
        let env = [
            ("SEXTANT_ORCHESTRATOR_ADDR", "127.0.0.1:9081"),
            ("SEXTANT_AGENT_LISTEN_ADDR", "0.0.0.0:9082"),
            ("SEXTANT_AGENT_TLS_CERT_FILE", "/env/agents.pem"),
        ];
        let s = orchestrator(&[], &env);
        assert_eq!(s.orchestrator_addr, Some("127.0.0.1:9081".parse().unwrap()));
        assert_eq!(s.agent_addr, Some("0.0.0.0:9082".parse().unwrap()));
        assert_eq!(s.agent_tls.cert_file, Some("/env/agents.pem".into()));
        let s = orchestrator(
            &[
                "--orchestrator-addr=127.0.0.1:7081",
                "--agent-tls-cert=/flag/agents.pem",
            ],
            &env,
        );
        assert_eq!(s.orchestrator_addr, Some("127.0.0.1:7081".parse().unwrap()));
        assert_eq!(s.agent_addr, Some("0.0.0.0:9082".parse().unwrap()), "kept");
        assert_eq!(s.agent_tls.cert_file, Some("/flag/agents.pem".into()));
        let s = orchestrator(&[], &[]);
        assert_eq!((s.orchestrator_addr, s.agent_addr), (None, None));

        let bad = [("SEXTANT_ORCHESTRATOR_ADDR", "localhost")];
        let e = Cli::parse_from(["up"]).args.orchestrator(fixed_env(&bad));
        let e = format!("{:#}", e.unwrap_err());
        assert!(e.contains("SEXTANT_ORCHESTRATOR_ADDR"), "{e}");
    }
}
