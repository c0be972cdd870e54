//! The agent's settings, read through the shared layered loader
//! ([`sextant_kit::config::Layers`]): defaults, then an optional TOML file
//! (`--config` or `SEXTANT_AGENT_CONFIG`), then environment variables,
//! then the command line.
//!
//! Precedence: flag > environment variable > file > default. The
//! variables ([`ENV`]) keep their standard names: the OpenTelemetry ones
//! name the OTLP endpoint, protocol, headers, compression and TLS files;
//! the rest are `SEXTANT_…` (and `DOCKER_HOST`). [`args`] has the flags and
//! the variables, [`settings`] the file's keys, the defaults and the checks.

mod args;
mod settings;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::ffi::OsString;

use sextant_kit::Secret;
use sextant_kit::config::{Layers, file_path, process_env};

pub use args::{AgentArgs, ENV};
pub use settings::{bytes, duration};

/// OTLP transport of the endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub host_name: String,
    pub environment: String,
    pub labels: Vec<(String, String)>,
    pub watch_labels: Vec<String>,
    pub otlp_endpoints: Vec<String>,
    pub protocol: Protocol,
    /// Bearer token for the OTLP endpoints (`Debug` shows `***`).
    pub token: Option<Secret>,
    pub gzip: bool,
    /// Extra CA for `https://` endpoints.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for mTLS (both or neither).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub data_dir: PathBuf,
    pub heartbeat: Duration,
    pub resync: Duration,
    pub outbox_max_bytes: u64,
    pub docker_host: Option<String>,
    /// The orchestrator's agent endpoints (empty: no agent channel).
    pub orchestrator: Vec<String>,
    /// TLS of `https://` orchestrator endpoints: CA file, client
    /// certificate and key.
    pub orchestrator_tls: sextant_exporters::sender::TlsConfig,
    /// One-time registration token (`Debug` shows `***`).
    pub registration_token: Option<Secret>,
    pub dry_run: bool,
    pub listen: SocketAddr,
}

/// A setting that cannot be used, with what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read, or a value has the wrong type or an
    /// unknown key (named, with the file it came from).
    #[error(transparent)]
    Load(#[from] sextant_kit::config::ConfigError),
    #[error("{setting}: {problem}")]
    Invalid {
        setting: &'static str,
        problem: String,
    },
}

fn invalid(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        problem: problem.into(),
    }
}

impl AgentArgs {
    /// Merges the file (when `--config` or its variable names one) over the
    /// defaults, the process's environment variables over both and the
    /// flags (`self`) over all, and checks every value.
    pub fn resolve(&self) -> Result<AgentConfig, ConfigError> {
        self.resolve_in(process_env)
    }

    /// [`Self::resolve`] with the variables `env` has (tests pass
    /// [`sextant_kit::config::fixed_env`]).
    pub fn resolve_in(
        &self,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<AgentConfig, ConfigError> {
        let file = file_path(self.config.as_deref(), ENV, &env);
        let settings: settings::Settings = Layers::new(settings::Settings::default())
            .file(file.as_deref())
            .env_vars(ENV, &env)
            .flags(&self.renamed()?)
            .flags(self)
            .load()?;
        settings.validate()
    }
}
