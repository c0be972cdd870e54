//! The settings of `sextant orchestrator`, read the way the hub and the
//! agent read theirs (`sextant_kit::config::Layers`): defaults, then a
//! TOML file (`--config`), then the command line. Each flag also reads the
//! environment variable it names (clap), so a variable counts as a flag:
//! it overrides the file, and a flag overrides it.
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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sextant_kit::Secret;
use sextant_kit::config::{ConfigError, Layers};

use crate::domain::Span;

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
}

/// The agent listener's certificate, key and client CA (PEM files).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentTlsFiles {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
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
        }
    }
}

impl OrchestratorConfig {
    /// Defaults, then `file` (if any), then `flags`: the settings the
    /// command line (or its environment variables) gave, serialized under
    /// the file's keys with the unset ones left out.
    pub fn load(file: Option<&Path>, flags: &impl Serialize) -> Result<Self, ConfigError> {
        Layers::new(Self::default()).file(file).flags(flags).load()
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

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
            let c = OrchestratorConfig::load(file, &Flags::default()).map_err(|e| e.to_string())?;
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
            let c = OrchestratorConfig::load(file, &flags).map_err(|e| e.to_string())?;
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
        let c = OrchestratorConfig::load(None, &BTreeMap::<String, String>::new()).unwrap();
        assert_eq!(c, OrchestratorConfig::default());
    }

    #[test]
    fn a_wrong_key_or_value_is_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "leese = \"1m\"")?;
            let err = OrchestratorConfig::load(Some(Path::new("typo.toml")), &Flags::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("leese"), "{err}");
            jail.create_file("bad.toml", "lease = \"soon\"")?;
            let err = OrchestratorConfig::load(Some(Path::new("bad.toml")), &Flags::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("lease") && err.contains("bad.toml"), "{err}");
            Ok(())
        });
    }
}
