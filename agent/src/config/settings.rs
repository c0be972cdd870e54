//! The settings as the layers give them (the file's keys are the flags'
//! names with `_` for `-`), and the checks that turn them into an
//! [`AgentConfig`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sextant_kit::Secret;

use super::{AgentConfig, ConfigError, Protocol, invalid};

/// Every setting, with its default; the TOML file's form.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct Settings {
    /// Default: the system host name.
    host_name: Option<String>,
    /// Required.
    environment: Option<String>,
    labels: BTreeMap<String, String>,
    watch_labels: Vec<String>,
    /// Required.
    otlp_endpoints: Vec<String>,
    otlp_protocol: String,
    otlp_token: Option<String>,
    otlp_compression: String,
    otlp_ca_file: Option<PathBuf>,
    otlp_client_cert: Option<PathBuf>,
    otlp_client_key: Option<PathBuf>,
    data_dir: PathBuf,
    heartbeat: String,
    resync: String,
    outbox_max_bytes: String,
    docker_host: Option<String>,
    /// Comma-separated.
    orchestrator: Option<String>,
    orchestrator_ca_file: Option<PathBuf>,
    orchestrator_client_cert: Option<PathBuf>,
    orchestrator_client_key: Option<PathBuf>,
    registration_token: Option<String>,
    dry_run: bool,
    listen: SocketAddr,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            host_name: None,
            environment: None,
            labels: BTreeMap::new(),
            watch_labels: Vec::new(),
            otlp_endpoints: Vec::new(),
            otlp_protocol: "grpc".into(),
            otlp_token: None,
            otlp_compression: "gzip".into(),
            otlp_ca_file: None,
            otlp_client_cert: None,
            otlp_client_key: None,
            data_dir: PathBuf::from("sextant-agent-data"),
            heartbeat: "30s".into(),
            resync: "5m".into(),
            outbox_max_bytes: "256MiB".into(),
            docker_host: None,
            orchestrator: None,
            orchestrator_ca_file: None,
            orchestrator_client_cert: None,
            orchestrator_client_key: None,
            registration_token: None,
            dry_run: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

impl Settings {
    /// Checks every value; each refusal names the flag it came from (or
    /// would have).
    pub(super) fn validate(self) -> Result<AgentConfig, ConfigError> {
        let host_name = self
            .host_name
            .or_else(system_host_name)
            .filter(|h| !h.trim().is_empty())
            .ok_or_else(|| invalid("--host-name", "not set and the system host name is unknown"))?;
        let environment = self
            .environment
            .filter(|e| !e.trim().is_empty())
            .ok_or_else(|| invalid("--environment", "required (or SEXTANT_ENVIRONMENT)"))?;
        let otlp_endpoints = list(self.otlp_endpoints);
        if otlp_endpoints.is_empty() {
            return Err(invalid(
                "--otlp-endpoint",
                "required (or OTEL_EXPORTER_OTLP_ENDPOINT)",
            ));
        }
        let client_cert = otlp_client_cert(self.otlp_client_cert, self.otlp_client_key)?;
        let orchestrator_tls = sextant_exporters::sender::TlsConfig {
            ca_file: self.orchestrator_ca_file,
            client_cert: self.orchestrator_client_cert,
            client_key: self.orchestrator_client_key,
        };
        if orchestrator_tls.client_cert.is_some() != orchestrator_tls.client_key.is_some() {
            return Err(invalid(
                "--orchestrator-client-cert",
                "needs --orchestrator-client-key too (and the other way round)",
            ));
        }
        Ok(AgentConfig {
            host_name,
            environment,
            labels: self.labels.into_iter().collect(),
            watch_labels: self.watch_labels,
            otlp_endpoints,
            protocol: protocol(&self.otlp_protocol)?,
            token: self.otlp_token.map(Secret::new),
            gzip: gzip(&self.otlp_compression)?,
            ca_file: self.otlp_ca_file,
            client_cert,
            data_dir: self.data_dir,
            heartbeat: duration("--heartbeat", &self.heartbeat)?,
            resync: duration("--resync", &self.resync)?,
            outbox_max_bytes: bytes("--outbox-max-bytes", &self.outbox_max_bytes)?,
            docker_host: self.docker_host,
            orchestrator: self
                .orchestrator
                .map(|o| list(o.split(',')))
                .unwrap_or_default(),
            orchestrator_tls,
            registration_token: self.registration_token.map(Secret::new),
            dry_run: self.dry_run,
            listen: self.listen,
        })
    }
}

/// The items, trimmed, without empty ones.
fn list<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Vec<String> {
    items
        .into_iter()
        .map(|e| e.as_ref().trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect()
}

fn protocol(text: &str) -> Result<Protocol, ConfigError> {
    match text {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        other => Err(invalid(
            "--otlp-protocol",
            format!("{other:?}: expected grpc or http/protobuf"),
        )),
    }
}

fn gzip(text: &str) -> Result<bool, ConfigError> {
    match text {
        "gzip" => Ok(true),
        "none" | "" => Ok(false),
        other => Err(invalid(
            "--otlp-compression",
            format!("{other:?}: expected gzip or none"),
        )),
    }
}

/// The OTLP client certificate and key: both or neither.
fn otlp_client_cert(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(invalid(
            "--otlp-client-cert",
            "needs --otlp-client-key (or OTEL_EXPORTER_OTLP_CLIENT_KEY) too",
        )),
        (None, Some(_)) => Err(invalid(
            "--otlp-client-key",
            "needs --otlp-client-cert (or OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE) too",
        )),
    }
}

fn system_host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
}

/// A duration as the deploy contract writes them (`500ms`, `30s`, `5m`,
/// `1h30m`, or plain seconds: `HumanDuration`), above zero.
pub fn duration(setting: &'static str, text: &str) -> Result<Duration, ConfigError> {
    let d = sextant_protocol::deploy::HumanDuration::parse(text)
        .map_err(|_| {
            invalid(
                setting,
                format!("{:?} is not a duration like 30s", text.trim()),
            )
        })?
        .0;
    if d.is_zero() {
        return Err(invalid(setting, "must be above zero"));
    }
    Ok(d)
}

/// `1048576`, `512KiB`, `64MiB`, `1GiB`.
pub fn bytes(setting: &'static str, text: &str) -> Result<u64, ConfigError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| invalid(setting, format!("{text:?} is not a size like 64MiB")))?;
    let factor = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => {
            return Err(invalid(
                setting,
                format!("{text:?}: unit must be B, KiB, MiB or GiB"),
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| invalid(setting, format!("{text:?} is too large")))
}
