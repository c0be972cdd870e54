//! The flags of `sextant agent run`, the environment variables of the
//! same settings ([`ENV`]), and what the flags give to the last layer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;
use sextant_kit::config::{EnvVar, env_help};

use super::{ConfigError, invalid};

/// The environment variables of the agent's settings, read at the
/// environment layer (over the file, under the flags) and named in
/// `--help`. The OpenTelemetry ones keep their standard names; the bearer
/// token of `OTEL_EXPORTER_OTLP_HEADERS` counts as a token, under
/// `SEXTANT_OTLP_TOKEN`'s.
pub const ENV: &[EnvVar] = &[
    EnvVar::file("SEXTANT_AGENT_CONFIG"),
    EnvVar::text("SEXTANT_HOST_NAME", "host_name"),
    EnvVar::text("SEXTANT_ENVIRONMENT", "environment"),
    EnvVar::list("OTEL_EXPORTER_OTLP_ENDPOINT", "otlp_endpoints"),
    EnvVar::text("OTEL_EXPORTER_OTLP_PROTOCOL", "otlp_protocol"),
    EnvVar::mapped(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "otlp_token",
        bearer_from_headers,
    )
    .flag("otlp_headers"),
    EnvVar::text("SEXTANT_OTLP_TOKEN", "otlp_token"),
    EnvVar::text("OTEL_EXPORTER_OTLP_COMPRESSION", "otlp_compression"),
    EnvVar::text("OTEL_EXPORTER_OTLP_CERTIFICATE", "otlp_ca_file"),
    EnvVar::text("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "otlp_client_cert"),
    EnvVar::text("OTEL_EXPORTER_OTLP_CLIENT_KEY", "otlp_client_key"),
    EnvVar::text("SEXTANT_DATA_DIR", "data_dir"),
    EnvVar::text("SEXTANT_HEARTBEAT", "heartbeat"),
    EnvVar::text("SEXTANT_RESYNC", "resync"),
    EnvVar::text("SEXTANT_OUTBOX_MAX_BYTES", "outbox_max_bytes"),
    EnvVar::text("DOCKER_HOST", "docker_host"),
    EnvVar::text("SEXTANT_ORCHESTRATOR", "orchestrator"),
    EnvVar::text("SEXTANT_ORCHESTRATOR_CA_FILE", "orchestrator_ca_file"),
    EnvVar::text(
        "SEXTANT_ORCHESTRATOR_CLIENT_CERT",
        "orchestrator_client_cert",
    ),
    EnvVar::text("SEXTANT_ORCHESTRATOR_CLIENT_KEY", "orchestrator_client_key"),
    EnvVar::text("SEXTANT_REGISTRATION_TOKEN", "registration_token"),
    EnvVar::parsed("SEXTANT_DRY_RUN", "dry_run"),
    EnvVar::text("SEXTANT_AGENT_LISTEN", "listen"),
];

/// Flags of `sextant agent run`. Serialized, they are the last layer of
/// the settings: a flag that was not given is left out, so the
/// variable's or the file's value stays in force.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
#[command(mut_args = env_help(ENV))]
pub struct AgentArgs {
    /// A TOML file with any of the settings below (flag names, `_` for `-`).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// The name this host reports as (`host.name`). Default: the system host name.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    /// The environment of containers that carry no `sextant.environment` label.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// A label of this agent, `key=value`; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    #[serde(skip)]
    pub labels: Vec<String>,
    /// Watch only containers that also carry this label, `key` or
    /// `key=value`; repeatable (all must match).
    #[arg(long = "watch-label", value_name = "KEY[=VALUE]")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub watch_labels: Vec<String>,
    /// OTLP endpoint(s) to report to; repeatable, or comma-separated in the
    /// variable. Each gets its own cursor in the outbox (fan-out).
    #[arg(long = "otlp-endpoint", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub otlp_endpoints: Vec<String>,
    /// `grpc` or `http/protobuf`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_protocol: Option<String>,
    /// Bearer token for the OTLP endpoints.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_token: Option<String>,
    /// OTLP headers as `key=value,…`; an `authorization=Bearer …` header
    /// sets the token.
    #[arg(long)]
    #[serde(skip)]
    pub otlp_headers: Option<String>,
    /// `gzip` or `none`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_compression: Option<String>,
    /// PEM file of CA certificates to trust for `https://` endpoints,
    /// besides the public roots.
    #[arg(long, value_name = "PEM")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_ca_file: Option<PathBuf>,
    /// PEM file of the client certificate for mTLS (with `--otlp-client-key`).
    #[arg(long, value_name = "PEM")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long, value_name = "PEM")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_client_key: Option<PathBuf>,
    /// Where the outbox and the task journal live.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Interval of re-reports, e.g. `30s`, `1m`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<String>,
    /// Interval of full container resyncs, e.g. `5m`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resync: Option<String>,
    /// Most bytes the outbox keeps on disk, e.g. `64MiB`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox_max_bytes: Option<String>,
    /// Docker endpoint (`unix:///var/run/docker.sock`, `tcp://…`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_host: Option<String>,
    /// The orchestrator's agent endpoint(s) to dial (`http://host:8082`),
    /// comma-separated; tried in turn. Without it the agent only observes.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<String>,
    /// PEM file of CA certificates to trust for an `https://` orchestrator,
    /// besides the public roots.
    #[arg(long, value_name = "PEM")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orchestrator_ca_file: Option<PathBuf>,
    /// PEM file of the client certificate the orchestrator's agent
    /// listener requires under mTLS (with `--orchestrator-client-key`).
    #[arg(long, value_name = "PEM")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orchestrator_client_cert: Option<PathBuf>,
    /// PEM file of that certificate's private key.
    #[arg(long, value_name = "PEM")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orchestrator_client_key: Option<PathBuf>,
    /// A one-time token from `sextant agents token`, needed only for the
    /// first start (the identity is then kept in the data directory).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_token: Option<String>,
    /// Run orchestrator tasks without touching Docker: every deploy
    /// succeeds (for control-plane tests and benchmarks).
    #[arg(long)]
    #[serde(skip_serializing_if = "sextant_kit::config::is_false")]
    pub dry_run: bool,
    /// Address of `/metrics`, `/health/live` and `/health/ready`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

/// What flags give under another setting's name: `--label` as the
/// `labels` table (merged into the file's), and the token of an
/// `authorization=Bearer …` entry in `--otlp-headers` (over the file's
/// token, under `--otlp-token`).
#[derive(Debug, Serialize)]
pub(super) struct Renamed {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    otlp_token: Option<String>,
}

impl AgentArgs {
    /// The `--label` and `--otlp-headers` layer; refuses a label that is
    /// not `key=value`.
    pub(super) fn renamed(&self) -> Result<Renamed, ConfigError> {
        let mut labels = BTreeMap::new();
        for label in &self.labels {
            let (k, v) = label
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| invalid("--label", format!("{label:?} is not key=value")))?;
            labels.insert(k.to_owned(), v.to_owned());
        }
        Ok(Renamed {
            labels,
            otlp_token: self.otlp_headers.as_deref().and_then(bearer_from_headers),
        })
    }
}

/// The token of an `authorization=Bearer …` entry in OTLP headers.
pub(super) fn bearer_from_headers(headers: &str) -> Option<String> {
    headers.split(',').find_map(|entry| {
        let (k, v) = entry.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("authorization") {
            return None;
        }
        let v = v.trim().replace("%20", " ");
        v.strip_prefix("Bearer ").map(|t| t.trim().to_owned())
    })
}
