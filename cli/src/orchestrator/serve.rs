//! `sextant orchestrator`: one orchestrator replica until SIGINT or
//! SIGTERM. `sextant up` starts one in-process through [`start`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use sextant_kit::config::env_help;
use sextant_kit::links::TraceLinks;
use sextant_orchestrator::api::TokenConfig;
use sextant_orchestrator::api::auth::{Access, Scope, derived_subject};
use sextant_orchestrator::app::{self, RateLimitConfig, Running, RuntimeConfig};
use sextant_orchestrator::config::{AGENT_TLS_ENV, ENV, OrchestratorConfig};
use sextant_orchestrator::domain::Span;
use sextant_orchestrator::executor::ssh::SshExecutor;
use sextant_orchestrator::service::Settings;
use tokio_util::sync::CancellationToken;

/// Settings of `sextant orchestrator`: defaults, then the `--config` file,
/// then the environment variables `--help` names
/// ([`sextant_orchestrator::config::ENV`]), then these flags.
#[derive(Debug, Serialize, Args)]
#[command(mut_args = env_help(ENV))]
pub struct ServeArgs {
    /// A TOML file of settings, keyed by the flags' long names with `_`
    /// for `-` (docs/orchestrator.md); flags and variables override it.
    #[arg(long, value_name = "TOML")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// API listen address [default: 127.0.0.1:8081]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// sqlite://… or postgres://… [default: sqlite://DATA_DIR/orchestrator.db]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Data directory (the SQLite database and the outbox of desired
    /// state) [default: .sextant]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// The hub's API, for gates and canary analysis [default:
    /// http://127.0.0.1:8080]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_url: Option<String>,
    /// The hub's OTLP/HTTP endpoint, where desired state goes [default:
    /// http://127.0.0.1:4318]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_otlp_endpoint: Option<String>,
    /// Bearer token for the hub (scopes `read` and `ingest`, or `admin`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_token: Option<String>,
    /// Run without a hub (the hub flags are ignored): no desired state is
    /// sent, and hub gates deny.
    #[arg(long)]
    #[serde(skip_serializing_if = "sextant_kit::config::is_false")]
    pub no_hub: bool,
    /// A registry (`host:port`) reached over plain HTTP to resolve tags.
    /// Repeatable, or comma-separated.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub insecure_registries: Vec<String>,
    /// A YAML list of API tokens (`- {token, tenant, subject, scopes}`);
    /// the subject is the actor. Scopes: `read` reads, `deploy` or `admin`
    /// also change state, `ingest` grants nothing here; without `scopes` a
    /// token is `admin`. Without tokens only loopback addresses are
    /// allowed, and the actor is the `X-Sextant-Actor` header.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_file: Option<PathBuf>,
    /// This replica's name in job leases [default: orchestrator-<random>].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// How long a job lease lasts without renewal [default: 15s]
    #[arg(long, value_parser = Span::parse)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<Span>,
    /// How often the engine looks for jobs and gates are re-evaluated
    /// [default: 2s]
    #[arg(long, value_parser = Span::parse)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll: Option<Span>,
    /// Where agents dial in (gRPC, docs/agent-channel.md) [default:
    /// 127.0.0.1:8082, or port 0 when --listen's port is 0]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_listen: Option<SocketAddr>,
    /// Accept no agent streams on this replica (it still queues tasks that
    /// other replicas deliver).
    #[arg(long)]
    #[serde(skip_serializing_if = "sextant_kit::config::is_false")]
    pub no_agent_listener: bool,
    #[command(flatten)]
    #[serde(rename = "agent_tls")]
    pub agent_tls: AgentTlsArgs,
    /// How often agents send heartbeats; online means at most two missed
    /// [default: 30s]
    #[arg(long, value_parser = Span::parse)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_heartbeat: Option<Span>,
    /// Default timeout of a task (an agent task's deadline) [default: 10m]
    #[arg(long, value_parser = Span::parse)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_timeout: Option<Span>,
    /// Registry credentials for agent tasks, in Docker's config.json format
    /// (`{"auths": {"HOST": {"auth": "base64(user:password)"}}}`): each task
    /// carries its image registry's credentials on delivery; they are never
    /// stored in the database.
    #[arg(long, value_name = "CONFIG_JSON")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_auth: Option<PathBuf>,
    /// Requests per second each tenant may make to the API (fractions
    /// allowed); over it the API answers 429 with Retry-After. 0: unlimited.
    #[arg(long, value_name = "PER_SECOND", value_parser = rate_per_second)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_rate_limit: Option<f64>,
    /// Requests a tenant may make at once before --api-rate-limit applies;
    /// 0: the rate rounded up.
    #[arg(long, value_name = "REQUESTS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_rate_burst: Option<u32>,
    /// `/metrics` answers only a token with the `metrics` (or `admin`)
    /// scope; needs --tokens-file.
    #[arg(long)]
    #[serde(skip_serializing_if = "sextant_kit::config::is_false")]
    pub metrics_require_token: bool,
    /// Link of a trace id on the job page and in the JSON: a URL with
    /// {trace_id}, {service}, {from} and {to}; "" for none [default:
    /// Tempo in Grafana at http://127.0.0.1:3000, as in deploy/]
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_url_template: Option<String>,
    /// Link of a trace's log lines, with the same placeholders; "" for
    /// none [default: Loki in Grafana at http://127.0.0.1:3000]
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs_url_template: Option<String>,
}

/// TLS of the agent listener, for `sextant orchestrator` and `sextant up`
/// (serialized under the file's `[agent_tls]` keys; their variables are
/// [`AGENT_TLS_ENV`]).
#[derive(Debug, Clone, Default, Serialize, Args)]
#[command(mut_args = env_help(AGENT_TLS_ENV))]
pub struct AgentTlsArgs {
    /// Certificate chain (PEM) the agent listener serves TLS with; agents
    /// then dial `https://`.
    #[arg(long, value_name = "PEM")]
    #[serde(rename = "cert_file", skip_serializing_if = "Option::is_none")]
    pub agent_tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "PEM")]
    #[serde(rename = "key_file", skip_serializing_if = "Option::is_none")]
    pub agent_tls_key: Option<PathBuf>,
    /// CA (PEM) that agents' client certificates must chain to: an agent
    /// without one is refused at the handshake (mTLS).
    #[arg(long, value_name = "PEM")]
    #[serde(rename = "client_ca_file", skip_serializing_if = "Option::is_none")]
    pub agent_tls_client_ca: Option<PathBuf>,
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
        let file = OrchestratorConfig::load(self.config.as_deref(), self)
            .context("invalid configuration")?;
        runtime_config(&file)
    }
}

/// The runtime configuration the settings describe, their files read.
pub(crate) fn runtime_config(c: &OrchestratorConfig) -> anyhow::Result<RuntimeConfig> {
    let tokens = match &c.tokens_file {
        Some(path) => read_tokens(path)?,
        None => Vec::new(),
    };
    let mut settings = Settings::default();
    if let Some(r) = &c.replica {
        settings.replica = r.clone();
    }
    if c.lease.0.is_zero() || c.poll.0.is_zero() {
        bail!("--lease and --poll must be longer than zero");
    }
    settings.lease = c.lease.0;
    settings.poll = c.poll.0;
    if c.agent_heartbeat.0.is_zero() || c.task_timeout.0.is_zero() {
        bail!("--agent-heartbeat and --task-timeout must be longer than zero");
    }
    settings.task_timeout = c.task_timeout.0;
    let (hub_api, hub_otlp) = if c.no_hub {
        (None, None)
    } else {
        (
            Some(c.hub_url.trim_end_matches('/').to_owned()),
            Some(c.hub_otlp_endpoint.clone()),
        )
    };
    let api_rate_limit = RateLimitConfig::new(c.api_rate_limit, c.api_rate_burst);
    api_rate_limit
        .validate()
        .context("api_rate_limit and api_rate_burst")?;
    Ok(RuntimeConfig {
        listen: c.listen,
        database_url: c
            .database_url
            .clone()
            .unwrap_or_else(|| sqlite_url(&c.data_dir)),
        data_dir: c.data_dir.clone(),
        hub_api,
        hub_otlp,
        hub_token: c.hub_token.as_ref().map(|t| t.expose().to_owned()),
        tokens,
        insecure_registries: c.insecure_registries.clone(),
        agent_listen: (!c.no_agent_listener).then(|| {
            c.agent_listen.unwrap_or_else(|| {
                // Tests bind everything to port 0; a fixed port would collide.
                let port = if c.listen.port() == 0 { 0 } else { 8082 };
                SocketAddr::new(c.listen.ip(), port)
            })
        }),
        agent_tls: c.agent_tls.server_tls(),
        agent_heartbeat: c.agent_heartbeat.0,
        registry_auth: match &c.registry_auth {
            Some(path) => sextant_orchestrator::agents::credentials::RegistryAuths::load(path)
                .map_err(|e| anyhow::anyhow!("--registry-auth: {e}"))?,
            None => Default::default(),
        },
        api_rate_limit,
        listeners: Default::default(),
        metrics_require_token: c.metrics_require_token,
        links: TraceLinks::from_settings(
            ("trace_url_template", &c.trace_url_template),
            ("logs_url_template", &c.logs_url_template),
            &sextant_exporters::telemetry::service_name("sextant-orchestrator"),
        )
        .map_err(anyhow::Error::msg)?,
        settings,
    })
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
    // The subject is the actor of approvals: a blank one would approve as
    // nobody.
    if let Some(t) = tokens.iter().find(|t| t.subject.trim().is_empty()) {
        bail!(
            "a token of tenant {} in {} has no subject",
            t.tenant,
            path.display()
        );
    }
    Ok(tokens)
}

/// `sqlite://DATA_DIR/orchestrator.db`.
pub fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("orchestrator.db").display())
}

/// The hub's `[[tokens]]` as the orchestrator of `sextant up` takes them:
/// the same tokens, tenants and scopes, so one token works on both APIs.
/// The actor is the entry's `subject`, or a name derived from the token's
/// hash when it has none (never the token itself).
pub fn hub_tokens(tokens: &[sextant_receiver::auth::TokenConfig]) -> Vec<TokenConfig> {
    tokens
        .iter()
        .map(|t| TokenConfig {
            token: t.token.expose().to_owned(),
            tenant: t.tenant.clone(),
            subject: t
                .subject
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map_or_else(|| derived_subject(t.token.expose()), str::to_owned),
            scopes: t.scopes.iter().copied().map(scope).collect(),
        })
        .collect()
}

/// A hub scope as the orchestrator spells it. A match rather than a
/// conversion by name, so a scope added to the hub does not compile until
/// it is given a meaning here.
fn scope(hub: sextant_receiver::auth::Scope) -> Scope {
    use sextant_receiver::auth::Scope as Hub;
    match hub {
        Hub::Ingest => Scope::Ingest,
        Hub::Read => Scope::Read,
        Hub::Metrics => Scope::Metrics,
        Hub::Deploy => Scope::Deploy,
        Hub::Admin => Scope::Admin,
    }
}

/// A listener bound to 0.0.0.0 or :: is reached over loopback.
pub(crate) fn reachable(addr: SocketAddr) -> SocketAddr {
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
    if !config.tokens.is_empty() && !config.tokens.iter().any(|t| t.allows(Access::Change)) {
        tracing::warn!(
            "No token has the deploy or admin scope: the orchestrator's API is read-only"
        );
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    Ok(app::start(config, Arc::new(SshExecutor::new()), cancel).await?)
}

/// `sextant orchestrator`.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let cancel = CancellationToken::new();
    tokio::spawn(crate::stop_on_signal(cancel.clone())?);
    let database = sextant_kit::database::redact_url(&config.database_url);
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

#[cfg(test)]
mod tests {
    use sextant_kit::Secret;
    use sextant_receiver::auth::Scope as HubScope;
    use sextant_receiver::auth::TokenConfig as HubToken;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn runtime(argv: &[&str]) -> anyhow::Result<RuntimeConfig> {
        use clap::Parser as _;
        let cli = Cli::try_parse_from(std::iter::once("orchestrator").chain(argv.iter().copied()))?;
        cli.args.config()
    }

    #[test]
    fn settings_come_from_defaults_then_the_file_then_the_flags() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("orchestrator.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9081\"\nlease = \"1m\"\nno_hub = true\n\
             insecure_registries = [\"registry.local:5000\"]\n\
             [agent_tls]\ncert_file = \"agents.pem\"\n",
        )
        .expect("write");
        let path = file.to_str().expect("utf-8");

        let c = runtime(&[]).expect("defaults");
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 8081)));
        assert_eq!(c.settings.lease, std::time::Duration::from_secs(15));
        assert_eq!(c.hub_api.as_deref(), Some("http://127.0.0.1:8080"));

        let c = runtime(&["--config", path]).expect("file");
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 9081)));
        assert_eq!(c.settings.lease, std::time::Duration::from_secs(60));
        assert_eq!(
            c.settings.poll,
            std::time::Duration::from_secs(2),
            "a default"
        );
        assert_eq!(c.hub_api, None, "no_hub from the file");
        assert_eq!(c.insecure_registries, ["registry.local:5000"]);
        assert_eq!(c.agent_tls.cert_file, Some(PathBuf::from("agents.pem")));
        assert_eq!(
            c.agent_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 8082)))
        );

        let c = runtime(&["--config", path, "--lease", "5s", "--listen", "127.0.0.1:0"])
            .expect("flags");
        assert_eq!(c.settings.lease, std::time::Duration::from_secs(5));
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(c.agent_listen, Some(SocketAddr::from(([127, 0, 0, 1], 0))));
        assert_eq!(c.insecure_registries, ["registry.local:5000"], "kept");

        std::fs::write(&file, "lease = \"0s\"\n").expect("write");
        let err = runtime(&["--config", path]).unwrap_err().to_string();
        assert!(err.contains("longer than zero"), "{err}");
        std::fs::write(&file, "leese = \"1m\"\n").expect("write");
        let err = format!("{:#}", runtime(&["--config", path]).unwrap_err());
        assert!(err.contains("leese"), "{err}");
    }

    /// The trace and log links: Grafana's Explore in deploy/'s stack by
    /// default, a flag's template, "" for none, and a misspelt placeholder
    /// stops the start naming the setting.
    #[test]
    fn link_templates_default_to_the_deploy_grafana_and_a_bad_one_stops_the_start() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let tp = format!("00-{trace}-00f067aa0ba902b7-01");
        let c = runtime(&[]).expect("defaults");
        let links = c.links.of(Some(&tp), 0, 0);
        let url = links.trace_url.expect("a trace link");
        assert!(
            url.starts_with("http://127.0.0.1:3000/explore?panes=") && url.contains(trace),
            "{url}"
        );
        assert!(links.logs_url.is_some_and(|u| u.contains(trace)));

        let c = runtime(&[
            "--trace-url-template",
            "",
            "--logs-url-template",
            "https://logs.example/?t={trace_id}",
        ])
        .expect("flags");
        let links = c.links.of(Some(&tp), 0, 0);
        assert_eq!(links.trace_url, None);
        assert_eq!(
            links.logs_url,
            Some(format!("https://logs.example/?t={trace}"))
        );

        let err = format!(
            "{:#}",
            runtime(&["--trace-url-template", "http://g/{traceid}"]).unwrap_err()
        );
        assert!(
            err.contains("trace_url_template") && err.contains("{traceid}"),
            "{err}"
        );
    }

    #[test]
    fn hub_tokens_keep_tenant_and_scopes_and_always_name_a_subject() {
        let hub = |token: &str, subject: Option<&str>, scopes: &[HubScope]| HubToken {
            token: Secret::new(token),
            tenant: "acme".into(),
            subject: subject.map(str::to_owned),
            scopes: scopes.to_vec(),
        };
        let tokens = hub_tokens(&[
            hub("deploy-token-0123456789", Some("ci"), &[HubScope::Deploy]),
            hub("abc", None, &[HubScope::Ingest, HubScope::Read]),
            hub("blank-subject-0123456789", Some(" "), &[HubScope::Admin]),
        ]);
        assert_eq!(tokens[0].subject, "ci");
        assert_eq!(tokens[0].scopes, [Scope::Deploy]);
        assert_eq!(tokens[1].subject, "token-ba7816bf");
        assert_eq!(tokens[1].scopes, [Scope::Ingest, Scope::Read]);
        assert_eq!(tokens[1].tenant, "acme");
        assert!(tokens[2].subject.starts_with("token-"));
        assert!(tokens[2].allows(Access::Change) && !tokens[1].allows(Access::Change));
    }
}
