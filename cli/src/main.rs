//! `sextant`: the command-line entry point. Thin: the work lives in the
//! library crates.

mod agent;
mod demo;
mod orchestrator;

/// Appends one formatted line to a banner string.
macro_rules! banner_line {
    ($b:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($b, $($arg)*);
    }};
}
pub(crate) use banner_line;
mod query;
mod report;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sextant_exporters::telemetry::{LogFormat, Telemetry};
use sextant_receiver::auth::Scope;
use sextant_receiver::{Application, HubConfig};
use tokio_util::sync::CancellationToken;

/// jemalloc, not glibc's malloc: after a burst of large OTLP requests glibc
/// keeps the freed memory in its per-thread arenas and the process stays
/// near its peak; jemalloc gives it back within seconds
/// (docs/performance.md, "Under hostile load").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Sextant: which version of every workload runs on every host in every
/// environment.
#[derive(Debug, Parser)]
#[command(name = "sextant", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// A read command with the hub it asks.
#[derive(Debug, Args)]
struct Read<T: Args> {
    #[command(flatten)]
    hub: query::HubArgs,
    #[command(flatten)]
    args: T,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the local stack: the hub (OTLP receiver and read API) on an
    /// embedded SQLite database in the data directory, and the orchestrator
    /// next to it.
    Up(UpArgs),
    /// Run one orchestrator replica: promotions, approvals, gates and
    /// deployment jobs, with its REST API.
    Orchestrator(Box<orchestrator::serve::ServeArgs>),
    #[command(flatten)]
    Deploy(orchestrator::ClientCommand),
    /// Send one deployment event to the hub over OTLP (or Kalypso YAML with -f).
    Report(Box<report::ReportArgs>),
    /// What runs where: per target, the desired version and the deployed
    /// versions with host counts.
    Status(Read<query::StatusArgs>),
    /// Compare environments side by side: `sextant compare stage prod`.
    Compare(Read<query::CompareArgs>),
    /// Hosts whose state differs from what was promoted, and why.
    Drift(Read<query::DriftArgs>),
    /// Promotions and observed status changes of a workload, newest first.
    History(Read<query::HistoryArgs>),
    /// Hosts with their last report and status counts.
    Hosts(Read<query::HostsArgs>),
    /// Whether a rollout is done; with --wait, wait for it (a CD gate).
    /// Exit codes: 0 done, 1 a host failed, 2 timeout, 3 not done yet.
    Rollout(Read<query::RolloutArgs>),
    /// The host agent: `sextant agent deploy --spec FILE` runs one deployment
    /// through the local Docker engine.
    Agent {
        #[command(subcommand)]
        command: agent::AgentCommand,
    },
    /// Print shell completions: `sextant completions bash > /etc/bash_completion.d/sextant`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Settings of `sextant up`. Each overrides the config file and the
/// `SEXTANT_…` environment variable of the same name.
#[derive(Debug, Args)]
struct UpArgs {
    /// TOML config file.
    #[arg(long, env = "SEXTANT_CONFIG")]
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
    #[arg(long, env = "SEXTANT_ORCHESTRATOR_ADDR")]
    orchestrator_addr: Option<SocketAddr>,
    /// Where agents dial the orchestrator (gRPC) [default: 127.0.0.1:8082,
    /// or port 0 when the API's port is 0]
    #[arg(long, env = "SEXTANT_AGENT_LISTEN_ADDR")]
    agent_addr: Option<SocketAddr>,
    #[command(flatten)]
    agent_tls: orchestrator::serve::AgentTlsArgs,
    /// Run the hub alone, without the orchestrator.
    #[arg(long)]
    no_orchestrator: bool,
    /// Seed a realistic demo estate through the hub's own OTLP receiver and
    /// keep its hosts reporting.
    #[arg(long)]
    demo: bool,
}

impl UpArgs {
    fn config(&self) -> anyhow::Result<HubConfig> {
        let mut config =
            HubConfig::load(self.config.as_deref()).context("invalid configuration")?;
        if let Some(a) = self.otlp_grpc_addr {
            config.otlp_grpc_addr = a;
        }
        if let Some(a) = self.otlp_http_addr {
            config.otlp_http_addr = a;
        }
        if let Some(a) = self.api_addr {
            config.api_addr = a;
        }
        if let Some(u) = &self.database_url {
            config.database_url = Some(u.clone());
        }
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
        if let Some(f) = &self.tls_cert {
            config.tls.cert_file = Some(f.clone());
        }
        if let Some(f) = &self.tls_key {
            config.tls.key_file = Some(f.clone());
        }
        if let Some(f) = &self.tls_client_ca {
            config.tls.client_ca_file = Some(f.clone());
        }
        if self.demo && config.environments.is_empty() {
            config.environments = demo::ENVIRONMENTS.map(String::from).to_vec();
        }
        Ok(config)
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // Traces and logs (docs/telemetry.md): `service.name` by role, unless
    // OTEL_SERVICE_NAME says otherwise.
    let service = match &cli.command {
        Command::Up(_) => "sextant",
        Command::Orchestrator(_) => "sextant-orchestrator",
        Command::Agent { .. } => "sextant-agent",
        _ => "sextant-cli",
    };
    let telemetry = Telemetry::init(service, LogFormat::from_env());
    if matches!(
        cli.command,
        Command::Up(_) | Command::Orchestrator(_) | Command::Agent { .. }
    ) {
        // Servers hold a descriptor per connection: take what the system
        // allows, and size the connection caps to it (docs/security.md).
        let limit = sextant_kit::serve::raise_open_files_limit();
        tracing::debug!(open_files_limit = ?limit, "Open files limit");
    }
    let code = match run(cli.command).await {
        Ok(code) => code,
        Err(error) => {
            // The cause chain on one line; no backtrace for people.
            eprintln!("Error: {error:#}");
            1
        }
    };
    // `exit` runs no destructors: flush the last spans and logs first.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    std::process::exit(code)
}

/// Runs a command; returns the process exit code.
async fn run(command: Command) -> anyhow::Result<i32> {
    let done = |r: anyhow::Result<()>| r.map(|()| 0);
    match command {
        Command::Up(args) => done(up(args).await),
        Command::Orchestrator(args) => done(orchestrator::serve::run(*args).await),
        Command::Deploy(command) => orchestrator::run(command).await,
        Command::Report(args) => done(report::run(*args).await),
        Command::Status(r) => done(query::status(&r.hub, &r.args).await),
        Command::Compare(r) => done(query::compare(&r.hub, &r.args).await),
        Command::Drift(r) => done(query::drift(&r.hub, &r.args).await),
        Command::History(r) => done(query::history(&r.hub, &r.args).await),
        Command::Hosts(r) => done(query::hosts(&r.hub, &r.args).await),
        // A CD gate must tell "a host failed" (1) from "the hub could not
        // be asked" (unreachable, refused token, bad answer): the latter is
        // 4, not the general error code 1.
        Command::Rollout(r) => Ok(query::rollout(&r.hub, &r.args)
            .await
            .unwrap_or_else(|error| {
                eprintln!("Error: {error:#}");
                query::ROLLOUT_UNANSWERED
            })),
        Command::Agent { command } => agent::run(command).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "sextant",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let config = args.config()?;
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
    let local_agent_tls = args.agent_tls.config().is_enabled();
    let orchestrator = if args.no_orchestrator {
        None
    } else {
        let listen = args.orchestrator_addr.unwrap_or_else(|| {
            // Tests bind everything to port 0; a fixed port would collide.
            let port = if config.api_addr.port() == 0 { 0 } else { 8081 };
            SocketAddr::from(([127, 0, 0, 1], port))
        });
        let agent_listen = args.agent_addr.unwrap_or_else(|| {
            let port = if config.api_addr.port() == 0 { 0 } else { 8082 };
            SocketAddr::from(([127, 0, 0, 1], port))
        });
        let mut local = orchestrator::serve::local_config(
            listen,
            agent_listen,
            &config.data_dir,
            app.api_addr(),
            app.otlp_http_addr(),
            hub_token(&config),
            // The hub's tokens, tenants and scopes guard the orchestrator's
            // API too; without any, both are open (loopback only).
            orchestrator::serve::hub_tokens(&config.tokens),
        );
        // One API budget per tenant for both APIs of `sextant up`: the
        // hub's `[rate_limits.api]` applies to the orchestrator's too.
        local.api_rate_limit = config.rate_limits.api;
        // And the hub's listener limits and /metrics token.
        local.listeners = config.listeners;
        local.metrics_require_token = config.metrics_require_token;
        local.agent_tls = args.agent_tls.config();
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
    let mut b = String::new();
    banner_line!(b, "Sextant hub is up ({} database)", app.store().backend());
    banner_line!(
        b,
        "  database     {}",
        sextant_receiver::app::redact_url(&config.database_url())
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
    if let Some((running, database)) = &orchestrator {
        banner_line!(
            b,
            "  orchestrator http://{}/api/v1 ({database})",
            running.addr
        );
        banner_line!(b, "  orch. docs   http://{}/api/openapi.json", running.addr);
        if let Some(agents) = running.agent_addr {
            let scheme = if local_agent_tls { "https" } else { "http" };
            banner_line!(b, "  agents       {scheme}://{agents} (gRPC)");
        }
    }
    banner_line!(b, "Press Ctrl-C to stop.");
    banner(&b);
    if args.demo {
        // An ingest-capable token, when the hub has tokens.
        let token = config
            .tokens
            .iter()
            .find(|t| {
                t.scopes
                    .iter()
                    .any(|s| matches!(s, Scope::Ingest | Scope::Admin))
            })
            .map(|t| t.token.expose().to_owned());
        tokio::spawn(demo::run(app.otlp_http_addr(), app.api_addr(), token));
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

/// The hub token the local orchestrator uses to read the hub and send it
/// desired state: an `admin` token, else an `ingest` one (desired state
/// matters most), else a `read` one.
fn hub_token(config: &HubConfig) -> Option<String> {
    [Scope::Admin, Scope::Ingest, Scope::Read]
        .iter()
        .find_map(|scope| config.tokens.iter().find(|t| t.scopes.contains(scope)))
        .map(|t| t.token.expose().to_owned())
}

/// Cancels `shutdown` on SIGINT or SIGTERM. The handlers are registered
/// before this returns, so a signal sent right after the banner is printed
/// is not missed (it would otherwise kill the process).
fn stop_on_signal(shutdown: CancellationToken) -> anyhow::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    let (mut int, mut term) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
        )
    };
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Shutting down");
        shutdown.cancel();
    })
}

/// Prints a long-running command's banner. A server must not die because
/// whoever started it closed its stdout (a broken pipe would make
/// `println!` panic), so a failed write is ignored.
pub(crate) fn banner(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        tracing::debug!(error = %e, "cannot print the banner");
    }
}
