//! The settings of `sextant orchestrator`, read the way the hub and the
//! agent read theirs (`sextant_kit::config::Layers`): defaults, then a
//! TOML file (`--config` or `SEXTANT_ORCHESTRATOR_CONFIG`), then the
//! environment variables of [`ENV`] and [`AGENT_TLS_ENV`], then the
//! command line: a variable overrides the file, and a flag overrides it.
//!
//! The file's keys are the flags' long names with `_` for `-`:
//!
//! ```toml
//! listen = "0.0.0.0:8081"
//! database_url = "postgres://sextant@db/orchestrator"
//! hub_url = "http://hub:8080"
//! lease = "30s"
//! insecure_registries = ["registry.local:5000"]
//!
//! [agent_tls]
//! cert_file = "/etc/sextant/agents.pem"
//! key_file = "/etc/sextant/agents.key"
//! ```

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sextant_kit::Secret;
use sextant_kit::config::{ConfigError, EnvVar, Layers, file_path, process_env};

use crate::domain::Span;

/// The environment variables of the settings, each named after its flag
/// in `--help`; durations are read as `--lease` reads them (`30s`, `1m`,
/// plain seconds), the insecure registries as a comma-separated list.
pub const ENV: &[EnvVar] = &[
    EnvVar::file("SEXTANT_ORCHESTRATOR_CONFIG"),
    EnvVar::text("SEXTANT_ORCHESTRATOR_ADDR", "listen"),
    EnvVar::text("SEXTANT_ORCHESTRATOR_DATABASE_URL", "database_url"),
    EnvVar::text("SEXTANT_DATA_DIR", "data_dir"),
    EnvVar::text("SEXTANT_HUB_URL", "hub_url"),
    EnvVar::text("SEXTANT_HUB_OTLP_ENDPOINT", "hub_otlp_endpoint"),
    EnvVar::text("SEXTANT_HUB_TOKEN", "hub_token"),
    EnvVar::list("SEXTANT_INSECURE_REGISTRIES", "insecure_registries"),
    EnvVar::text("SEXTANT_ORCHESTRATOR_TOKENS_FILE", "tokens_file"),
    EnvVar::text("SEXTANT_ORCHESTRATOR_REPLICA", "replica"),
    EnvVar::text("SEXTANT_ORCHESTRATOR_LEASE", "lease"),
    EnvVar::text("SEXTANT_ORCHESTRATOR_POLL", "poll"),
    EnvVar::text("SEXTANT_AGENT_LISTEN_ADDR", "agent_listen"),
    EnvVar::text("SEXTANT_AGENT_HEARTBEAT", "agent_heartbeat"),
    EnvVar::text("SEXTANT_TASK_TIMEOUT", "task_timeout"),
    EnvVar::text("SEXTANT_REGISTRY_AUTH_FILE", "registry_auth"),
    EnvVar::parsed("SEXTANT_ORCHESTRATOR_API_RATE_LIMIT", "api_rate_limit"),
    EnvVar::parsed("SEXTANT_ORCHESTRATOR_API_RATE_BURST", "api_rate_burst"),
    EnvVar::parsed(
        "SEXTANT_ORCHESTRATOR_METRICS_REQUIRE_TOKEN",
        "metrics_require_token",
    ),
    EnvVar::text("SEXTANT_TRACE_URL_TEMPLATE", "trace_url_template"),
    EnvVar::text("SEXTANT_LOGS_URL_TEMPLATE", "logs_url_template"),
];

/// The variables of the agent listener's TLS files (`[agent_tls]`), which
/// `sextant up` reads too.
pub const AGENT_TLS_ENV: &[EnvVar] = &[
    EnvVar::text("SEXTANT_AGENT_TLS_CERT_FILE", "agent_tls.cert_file").flag("agent_tls_cert"),
    EnvVar::text("SEXTANT_AGENT_TLS_KEY_FILE", "agent_tls.key_file").flag("agent_tls_key"),
    EnvVar::text(
        "SEXTANT_AGENT_TLS_CLIENT_CA_FILE",
        "agent_tls.client_ca_file",
    )
    .flag("agent_tls_client_ca"),
];

/// Everything `sextant orchestrator` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrchestratorConfig {
    /// API listen address.
    pub listen: SocketAddr,
    /// `sqlite://…` or `postgres://…`; `sqlite://DATA_DIR/orchestrator.db`
    /// when unset.
    pub database_url: Option<String>,
    /// The SQLite database and the outbox of desired state.
    pub data_dir: PathBuf,
    /// The hub's API, for gates and canary analysis.
    pub hub_url: String,
    /// The hub's OTLP/HTTP endpoint, where desired state goes.
    pub hub_otlp_endpoint: String,
    /// Bearer token for the hub.
    #[serde(skip_serializing)]
    pub hub_token: Option<Secret>,
    /// Run without a hub: no desired state is sent, and hub gates deny.
    pub no_hub: bool,
    /// Registries (`host:port`) reached over plain HTTP to resolve tags.
    pub insecure_registries: Vec<String>,
    /// A YAML list of API tokens.
    pub tokens_file: Option<PathBuf>,
    /// This replica's name in job leases.
    pub replica: Option<String>,
    /// How long a job lease lasts without renewal.
    pub lease: Span,
    /// How often the engine looks for jobs and gates are re-evaluated.
    pub poll: Span,
    /// Where agents dial in; 127.0.0.1:8082 (or port 0 when `listen`'s
    /// port is 0) when unset.
    pub agent_listen: Option<SocketAddr>,
    /// Accept no agent streams on this replica.
    pub no_agent_listener: bool,
    /// TLS of the agent listener.
    pub agent_tls: AgentTlsFiles,
    /// How often agents send heartbeats.
    pub agent_heartbeat: Span,
    /// Default timeout of a task.
    pub task_timeout: Span,
    /// Registry credentials for agent tasks (Docker's config.json).
    pub registry_auth: Option<PathBuf>,
    /// Requests per second each tenant may make to the API; 0: unlimited.
    pub api_rate_limit: f64,
    /// Requests a tenant may make at once; 0: the rate rounded up.
    pub api_rate_burst: u32,
    /// `/metrics` answers only a token with the `metrics` or `admin` scope.
    pub metrics_require_token: bool,
    /// The link of a trace id on the job page and in the JSON, with
    /// `{trace_id}`, `{service}`, `{from}`, `{to}` (`sextant_kit::links`);
    /// empty: no trace links. Default: Tempo in the Grafana of deploy/.
    pub trace_url_template: String,
    /// The link of a trace's log lines, with the same placeholders; empty:
    /// no log links. Default: Loki in the Grafana of deploy/.
    pub logs_url_template: String,
}

/// The agent listener's certificate, key and client CA (PEM files).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentTlsFiles {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
}

impl AgentTlsFiles {
    /// The listener's TLS settings.
    pub fn server_tls(&self) -> crate::app::ServerTlsConfig {
        crate::app::ServerTlsConfig {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            client_ca_file: self.client_ca_file.clone(),
        }
    }
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            database_url: None,
            data_dir: PathBuf::from(".sextant"),
            hub_url: "http://127.0.0.1:8080".into(),
            hub_otlp_endpoint: "http://127.0.0.1:4318".into(),
            hub_token: None,
            no_hub: false,
            insecure_registries: Vec::new(),
            tokens_file: None,
            replica: None,
            lease: Span(std::time::Duration::from_secs(15)),
            poll: Span(std::time::Duration::from_secs(2)),
            agent_listen: None,
            no_agent_listener: false,
            agent_tls: AgentTlsFiles::default(),
            agent_heartbeat: Span(std::time::Duration::from_secs(30)),
            task_timeout: Span(std::time::Duration::from_secs(600)),
            registry_auth: None,
            api_rate_limit: 0.0,
            api_rate_burst: 0,
            metrics_require_token: false,
            trace_url_template: sextant_kit::links::grafana::tempo_trace(
                sextant_kit::links::grafana::BASE,
            ),
            logs_url_template: sextant_kit::links::grafana::loki_logs(
                sextant_kit::links::grafana::BASE,
            ),
        }
    }
}

impl OrchestratorConfig {
    /// Defaults, then `file` (else the one `SEXTANT_ORCHESTRATOR_CONFIG`
    /// names, if any), then the process's environment variables, then
    /// `flags`: the settings the command line gave, serialized under the
    /// file's keys with the unset ones left out.
    pub fn load(file: Option<&Path>, flags: &impl Serialize) -> Result<Self, ConfigError> {
        Self::load_in(file, process_env, flags)
    }

    /// [`Self::load`] with the variables `env` has (tests pass
    /// [`sextant_kit::config::fixed_env`]).
    pub fn load_in(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<OsString>,
        flags: &impl Serialize,
    ) -> Result<Self, ConfigError> {
        let file = file_path(file, ENV, &env);
        Layers::new(Self::default())
            .file(file.as_deref())
            .env_vars(ENV, &env)
            .env_vars(AGENT_TLS_ENV, &env)
            .flags(flags)
            .load()
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use sextant_kit::config::fixed_env;

    use super::*;

    /// No environment variables at all, whatever the process has.
    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    #[derive(Default, Serialize)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        lease: Option<Span>,
        #[serde(skip_serializing_if = "Option::is_none")]
        hub_token: Option<String>,
    }

    #[test]
    fn the_file_over_the_defaults_and_the_flags_over_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "orchestrator.toml",
                r#"
                listen = "0.0.0.0:9081"
                lease = "1m"
                poll = 5
                hub_token = "from-the-file"
                insecure_registries = ["registry.local:5000"]
                [agent_tls]
                cert_file = "agents.pem"
                "#,
            )?;
            let file = Some(Path::new("orchestrator.toml"));
            let c = OrchestratorConfig::load_in(file, no_env, &Flags::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(c.listen, SocketAddr::from(([0, 0, 0, 0], 9081)));
            assert_eq!(c.lease.0, Duration::from_secs(60));
            assert_eq!(c.poll.0, Duration::from_secs(5));
            assert_eq!(c.agent_heartbeat.0, Duration::from_secs(30), "a default");
            assert_eq!(c.insecure_registries, ["registry.local:5000"]);
            assert_eq!(c.agent_tls.cert_file, Some(PathBuf::from("agents.pem")));
            assert_eq!(
                c.hub_token.as_ref().map(Secret::expose),
                Some("from-the-file")
            );

            let flags = Flags {
                lease: Some(Span(Duration::from_secs(7))),
                hub_token: Some("from-a-flag".into()),
            };
            let c = OrchestratorConfig::load_in(file, no_env, &flags).map_err(|e| e.to_string())?;
            assert_eq!(c.lease.0, Duration::from_secs(7));
            assert_eq!(
                c.hub_token.as_ref().map(Secret::expose),
                Some("from-a-flag")
            );
            assert_eq!(c.listen, SocketAddr::from(([0, 0, 0, 0], 9081)), "kept");
            Ok(())
        });
    }

    #[test]
    fn no_file_is_the_defaults() {
        let c =
            OrchestratorConfig::load_in(None, no_env, &BTreeMap::<String, String>::new()).unwrap();
        assert_eq!(c, OrchestratorConfig::default());
    }

    #[test]
    fn a_wrong_key_or_value_is_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "leese = \"1m\"")?;
            let err = OrchestratorConfig::load_in(
                Some(Path::new("typo.toml")),
                no_env,
                &Flags::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("leese"), "{err}");
            jail.create_file("bad.toml", "lease = \"soon\"")?;
            let err =
                OrchestratorConfig::load_in(Some(Path::new("bad.toml")), no_env, &Flags::default())
                    .unwrap_err()
                    .to_string();
            assert!(err.contains("lease") && err.contains("bad.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn each_variable_sets_its_setting_as_its_flag_did() {
        let env = [
            ("SEXTANT_ORCHESTRATOR_ADDR", "0.0.0.0:9081"),
            ("SEXTANT_ORCHESTRATOR_LEASE", "30s"),
            ("SEXTANT_ORCHESTRATOR_POLL", "5"),
            ("SEXTANT_INSECURE_REGISTRIES", "a:5000,b:5000"),
            ("SEXTANT_ORCHESTRATOR_METRICS_REQUIRE_TOKEN", "true"),
            ("SEXTANT_ORCHESTRATOR_API_RATE_LIMIT", "0.5"),
            ("SEXTANT_ORCHESTRATOR_API_RATE_BURST", "10"),
            ("SEXTANT_HUB_TOKEN", "12345"),
            ("SEXTANT_ORCHESTRATOR_REPLICA", "7"),
            ("SEXTANT_AGENT_TLS_CERT_FILE", "/etc/agents.pem"),
            ("SEXTANT_TRACE_URL_TEMPLATE", "http://t/{trace_id}"),
            ("SEXTANT_LOGS_URL_TEMPLATE", "http://l/{trace_id}"),
        ];
        let c = OrchestratorConfig::load_in(None, fixed_env(&env), &Flags::default()).unwrap();
        assert_eq!(c.listen, SocketAddr::from(([0, 0, 0, 0], 9081)));
        assert_eq!(c.lease.0, Duration::from_secs(30), "a duration");
        assert_eq!(c.poll.0, Duration::from_secs(5), "plain seconds");
        assert_eq!(c.insecure_registries, ["a:5000", "b:5000"], "a list");
        assert!(c.metrics_require_token, "a switch");
        assert!((c.api_rate_limit - 0.5).abs() < f64::EPSILON, "a number");
        assert_eq!(c.api_rate_burst, 10);
        assert_eq!(c.hub_token.as_ref().map(Secret::expose), Some("12345"));
        assert_eq!(c.replica.as_deref(), Some("7"), "text stays text");
        assert_eq!(c.trace_url_template, "http://t/{trace_id}");
        assert_eq!(c.logs_url_template, "http://l/{trace_id}");
        assert_eq!(
            c.agent_tls.cert_file,
            Some(PathBuf::from("/etc/agents.pem"))
        );
    }

    #[test]
    fn a_flag_beats_its_variable_which_beats_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("o.toml", "lease = \"1m\"\npoll = \"9s\"\n")?;
            let file = Some(Path::new("o.toml"));
            let env = [
                ("SEXTANT_ORCHESTRATOR_LEASE", "30s"),
                ("SEXTANT_ORCHESTRATOR_POLL", "3s"),
            ];
            let flags = Flags {
                lease: Some(Span(Duration::from_secs(7))),
                hub_token: None,
            };
            let c = OrchestratorConfig::load_in(file, fixed_env(&env), &flags)
                .map_err(|e| e.to_string())?;
            assert_eq!(c.lease.0, Duration::from_secs(7), "the flag");
            assert_eq!(
                c.poll.0,
                Duration::from_secs(3),
                "the variable over the file"
            );
            let c = OrchestratorConfig::load_in(file, no_env, &flags).map_err(|e| e.to_string())?;
            assert_eq!(c.poll.0, Duration::from_secs(9), "the file");

            jail.create_file("env.toml", "replica = \"from-env-file\"\n")?;
            let env = [("SEXTANT_ORCHESTRATOR_CONFIG", "env.toml")];
            let c = OrchestratorConfig::load_in(None, fixed_env(&env), &Flags::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(c.replica.as_deref(), Some("from-env-file"));
            let c = OrchestratorConfig::load_in(file, fixed_env(&env), &Flags::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(c.replica, None, "--config over the variable");
            Ok(())
        });
    }

    #[test]
    fn a_bad_variable_is_named_and_the_token_never_shown() {
        let secret = "s3cret-0123456789abcdef";
        for (name, value) in [
            ("SEXTANT_ORCHESTRATOR_LEASE", "soon"),
            ("SEXTANT_ORCHESTRATOR_API_RATE_BURST", "many"),
            ("SEXTANT_ORCHESTRATOR_METRICS_REQUIRE_TOKEN", "1"),
            ("SEXTANT_ORCHESTRATOR_ADDR", "localhost"),
        ] {
            let env = [("SEXTANT_HUB_TOKEN", secret), (name, value)];
            let err =
                OrchestratorConfig::load_in(None, fixed_env(&env), &Flags::default()).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(name), "{text}");
            assert!(!format!("{text} {err:?}").contains(secret), "{err:?}");
        }
    }
}
