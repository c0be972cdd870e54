//! The agent's settings: command-line flags, each with an environment
//! variable, over an optional TOML file, over defaults.
//!
//! Precedence: flag > environment variable > file > default. The standard
//! OpenTelemetry variables name the OTLP endpoint, protocol, headers,
//! compression and TLS files.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Flags of `sextant agent run`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AgentArgs {
    /// A TOML file with any of the settings below (flag names, `_` for `-`).
    #[arg(long, env = "SEXTANT_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// The name this host reports as (`host.name`). Default: the system host name.
    #[arg(long, env = "SEXTANT_HOST_NAME")]
    pub host_name: Option<String>,
    /// The environment of containers that carry no `sextant.environment` label.
    #[arg(long, env = "SEXTANT_ENVIRONMENT")]
    pub environment: Option<String>,
    /// A label of this agent, `key=value`; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Watch only containers that also carry this label, `key` or
    /// `key=value`; repeatable (all must match).
    #[arg(long = "watch-label", value_name = "KEY[=VALUE]")]
    pub watch_labels: Vec<String>,
    /// OTLP endpoint(s) to report to; repeatable, or comma-separated in the
    /// variable. Each gets its own cursor in the outbox (fan-out).
    #[arg(
        long = "otlp-endpoint",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_delimiter = ','
    )]
    pub otlp_endpoints: Vec<String>,
    /// `grpc` or `http/protobuf`.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL")]
    pub otlp_protocol: Option<String>,
    /// Bearer token for the OTLP endpoints.
    #[arg(long, env = "SEXTANT_OTLP_TOKEN", hide_env_values = true)]
    pub otlp_token: Option<String>,
    /// OTLP headers as `key=value,…`; an `authorization=Bearer …` header
    /// sets the token.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_HEADERS", hide_env_values = true)]
    pub otlp_headers: Option<String>,
    /// `gzip` or `none`.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_COMPRESSION")]
    pub otlp_compression: Option<String>,
    /// PEM file of CA certificates to trust for `https://` endpoints,
    /// besides the public roots.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_CERTIFICATE", value_name = "PEM")]
    pub otlp_ca_file: Option<PathBuf>,
    /// PEM file of the client certificate for mTLS (with `--otlp-client-key`).
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        value_name = "PEM"
    )]
    pub otlp_client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_CLIENT_KEY", value_name = "PEM")]
    pub otlp_client_key: Option<PathBuf>,
    /// Where the outbox and the task journal live.
    #[arg(long, env = "SEXTANT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Interval of re-reports, e.g. `30s`, `1m`.
    #[arg(long, env = "SEXTANT_HEARTBEAT")]
    pub heartbeat: Option<String>,
    /// Interval of full container resyncs, e.g. `5m`.
    #[arg(long, env = "SEXTANT_RESYNC")]
    pub resync: Option<String>,
    /// Most bytes the outbox keeps on disk, e.g. `64MiB`.
    #[arg(long, env = "SEXTANT_OUTBOX_MAX_BYTES")]
    pub outbox_max_bytes: Option<String>,
    /// Docker endpoint (`unix:///var/run/docker.sock`, `tcp://…`).
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// The orchestrator's agent endpoint(s) to dial (`http://host:8082`),
    /// comma-separated; tried in turn. Without it the agent only observes.
    #[arg(long, env = "SEXTANT_ORCHESTRATOR")]
    pub orchestrator: Option<String>,
    /// PEM file of CA certificates to trust for an `https://` orchestrator,
    /// besides the public roots.
    #[arg(long, env = "SEXTANT_ORCHESTRATOR_CA_FILE", value_name = "PEM")]
    pub orchestrator_ca_file: Option<PathBuf>,
    /// PEM file of the client certificate the orchestrator's agent
    /// listener requires under mTLS (with `--orchestrator-client-key`).
    #[arg(long, env = "SEXTANT_ORCHESTRATOR_CLIENT_CERT", value_name = "PEM")]
    pub orchestrator_client_cert: Option<PathBuf>,
    /// PEM file of that certificate's private key.
    #[arg(long, env = "SEXTANT_ORCHESTRATOR_CLIENT_KEY", value_name = "PEM")]
    pub orchestrator_client_key: Option<PathBuf>,
    /// A one-time token from `sextant agents token`, needed only for the
    /// first start (the identity is then kept in the data directory).
    #[arg(long, env = "SEXTANT_REGISTRATION_TOKEN", hide_env_values = true)]
    pub registration_token: Option<String>,
    /// Run orchestrator tasks without touching Docker: every deploy
    /// succeeds (for control-plane tests and benchmarks).
    #[arg(long, env = "SEXTANT_DRY_RUN")]
    pub dry_run: bool,
    /// Address of `/metrics`, `/health/live` and `/health/ready`.
    #[arg(long, env = "SEXTANT_AGENT_LISTEN")]
    pub listen: Option<SocketAddr>,
}

/// The file form of [`AgentArgs`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    host_name: Option<String>,
    environment: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    watch_labels: Vec<String>,
    #[serde(default)]
    otlp_endpoints: Vec<String>,
    otlp_protocol: Option<String>,
    otlp_token: Option<String>,
    otlp_compression: Option<String>,
    otlp_ca_file: Option<PathBuf>,
    otlp_client_cert: Option<PathBuf>,
    otlp_client_key: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    heartbeat: Option<String>,
    resync: Option<String>,
    outbox_max_bytes: Option<String>,
    docker_host: Option<String>,
    orchestrator: Option<String>,
    orchestrator_ca_file: Option<PathBuf>,
    orchestrator_client_cert: Option<PathBuf>,
    orchestrator_client_key: Option<PathBuf>,
    registration_token: Option<String>,
    #[serde(default)]
    dry_run: bool,
    listen: Option<SocketAddr>,
}

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
    pub token: Option<String>,
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
    pub registration_token: Option<String>,
    pub dry_run: bool,
    pub listen: SocketAddr,
}

/// A setting that cannot be used, with what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
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
    /// Merges flags and environment (already in `self`) over the file and
    /// the defaults, and checks every value.
    pub fn resolve(&self) -> Result<AgentConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => AgentFile::default(),
        };
        let host_name = self
            .host_name
            .clone()
            .or(file.host_name)
            .or_else(system_host_name)
            .filter(|h| !h.trim().is_empty())
            .ok_or_else(|| invalid("--host-name", "not set and the system host name is unknown"))?;
        let environment = self
            .environment
            .clone()
            .or(file.environment)
            .filter(|e| !e.trim().is_empty())
            .ok_or_else(|| invalid("--environment", "required (or SEXTANT_ENVIRONMENT)"))?;
        let mut labels = file.labels;
        for label in &self.labels {
            let (k, v) = label
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| invalid("--label", format!("{label:?} is not key=value")))?;
            labels.insert(k.to_owned(), v.to_owned());
        }
        let otlp_endpoints: Vec<String> = if self.otlp_endpoints.is_empty() {
            file.otlp_endpoints
        } else {
            self.otlp_endpoints.clone()
        }
        .into_iter()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
        if otlp_endpoints.is_empty() {
            return Err(invalid(
                "--otlp-endpoint",
                "required (or OTEL_EXPORTER_OTLP_ENDPOINT)",
            ));
        }
        let protocol = match self
            .otlp_protocol
            .clone()
            .or(file.otlp_protocol)
            .as_deref()
            .unwrap_or("grpc")
        {
            "grpc" => Protocol::Grpc,
            "http/protobuf" => Protocol::HttpProtobuf,
            other => {
                return Err(invalid(
                    "--otlp-protocol",
                    format!("{other:?}: expected grpc or http/protobuf"),
                ));
            }
        };
        let header_token = self.otlp_headers.as_deref().and_then(bearer_from_headers);
        let token = self.otlp_token.clone().or(header_token).or(file.otlp_token);
        let gzip = match self
            .otlp_compression
            .clone()
            .or(file.otlp_compression)
            .as_deref()
            .unwrap_or("gzip")
        {
            "gzip" => true,
            "none" | "" => false,
            other => {
                return Err(invalid(
                    "--otlp-compression",
                    format!("{other:?}: expected gzip or none"),
                ));
            }
        };
        let ca_file = self.otlp_ca_file.clone().or(file.otlp_ca_file);
        let client_cert = match (
            self.otlp_client_cert.clone().or(file.otlp_client_cert),
            self.otlp_client_key.clone().or(file.otlp_client_key),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "--otlp-client-cert",
                    "needs --otlp-client-key (or OTEL_EXPORTER_OTLP_CLIENT_KEY) too",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "--otlp-client-key",
                    "needs --otlp-client-cert (or OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE) too",
                ));
            }
        };
        let orchestrator_tls = sextant_exporters::sender::TlsConfig {
            ca_file: self
                .orchestrator_ca_file
                .clone()
                .or(file.orchestrator_ca_file),
            client_cert: self
                .orchestrator_client_cert
                .clone()
                .or(file.orchestrator_client_cert),
            client_key: self
                .orchestrator_client_key
                .clone()
                .or(file.orchestrator_client_key),
        };
        if orchestrator_tls.client_cert.is_some() != orchestrator_tls.client_key.is_some() {
            return Err(invalid(
                "--orchestrator-client-cert",
                "needs --orchestrator-client-key too (and the other way round)",
            ));
        }
        let data_dir = self
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("sextant-agent-data"));
        let heartbeat = duration(
            "--heartbeat",
            self.heartbeat
                .clone()
                .or(file.heartbeat)
                .as_deref()
                .unwrap_or("30s"),
        )?;
        let resync = duration(
            "--resync",
            self.resync
                .clone()
                .or(file.resync)
                .as_deref()
                .unwrap_or("5m"),
        )?;
        let outbox_max_bytes = bytes(
            "--outbox-max-bytes",
            self.outbox_max_bytes
                .clone()
                .or(file.outbox_max_bytes)
                .as_deref()
                .unwrap_or("256MiB"),
        )?;
        Ok(AgentConfig {
            host_name,
            environment,
            labels: labels.into_iter().collect(),
            watch_labels: if self.watch_labels.is_empty() {
                file.watch_labels
            } else {
                self.watch_labels.clone()
            },
            otlp_endpoints,
            protocol,
            token,
            gzip,
            ca_file,
            client_cert,
            data_dir,
            heartbeat,
            resync,
            outbox_max_bytes,
            docker_host: self.docker_host.clone().or(file.docker_host),
            orchestrator: self
                .orchestrator
                .clone()
                .or(file.orchestrator)
                .map(|o| {
                    o.split(',')
                        .map(|e| e.trim().to_owned())
                        .filter(|e| !e.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            orchestrator_tls,
            registration_token: self.registration_token.clone().or(file.registration_token),
            dry_run: self.dry_run || file.dry_run,
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9464))),
        })
    }
}

fn read_file(path: &Path) -> Result<AgentFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

fn system_host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
}

/// The token of an `authorization=Bearer …` entry in OTLP headers.
fn bearer_from_headers(headers: &str) -> Option<String> {
    headers.split(',').find_map(|entry| {
        let (k, v) = entry.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("authorization") {
            return None;
        }
        let v = v.trim().replace("%20", " ");
        v.strip_prefix("Bearer ").map(|t| t.trim().to_owned())
    })
}

/// `500ms`, `30s`, `5m`, `1h`, or plain seconds.
pub fn duration(setting: &'static str, text: &str) -> Result<Duration, ConfigError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| invalid(setting, format!("{text:?} is not a duration like 30s")))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => {
            return Err(invalid(
                setting,
                format!("{text:?}: unit must be ms, s, m or h"),
            ));
        }
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> AgentArgs {
        AgentArgs {
            host_name: Some("h1".into()),
            environment: Some("dev".into()),
            otlp_endpoints: vec!["http://127.0.0.1:4317".into()],
            ..AgentArgs::default()
        }
    }

    #[test]
    fn defaults_and_units() {
        let c = args().resolve().expect("valid");
        assert_eq!(c.heartbeat, Duration::from_secs(30));
        assert_eq!(c.protocol, Protocol::Grpc);
        assert!(c.gzip);
        assert_eq!(c.outbox_max_bytes, 256 << 20);
        assert_eq!(
            duration("x", "500ms").ok(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(duration("x", "2m").ok(), Some(Duration::from_secs(120)));
        assert!(duration("x", "0s").is_err());
        assert!(duration("x", "soon").is_err());
        assert_eq!(bytes("x", "64MiB").ok(), Some(64 << 20));
        assert!(bytes("x", "64MB").is_err());
    }

    #[test]
    fn flags_win_over_the_file_and_bad_values_are_named() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "environment = \"stage\"\nheartbeat = \"10s\"\notlp_protocol = \"http/protobuf\"\n[labels]\nrack = \"r7\"\n",
        )
        .expect("write");
        let mut a = args();
        a.config = Some(path.clone());
        a.labels = vec!["zone=a".into()];
        let c = a.resolve().expect("valid");
        assert_eq!(c.environment, "dev", "the flag wins");
        assert_eq!(
            c.heartbeat,
            Duration::from_secs(10),
            "the file fills the gap"
        );
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
        assert_eq!(
            c.labels,
            [
                ("rack".to_owned(), "r7".to_owned()),
                ("zone".to_owned(), "a".to_owned())
            ]
        );

        let mut bad = args();
        bad.otlp_protocol = Some("http/json".into());
        let e = bad.resolve().expect_err("refused").to_string();
        assert!(
            e.contains("--otlp-protocol") && e.contains("http/json"),
            "{e}"
        );
        let mut none = args();
        none.otlp_endpoints.clear();
        assert!(none.resolve().is_err());
        std::fs::write(&path, "heartbeat = 30\n").expect("write");
        let mut typo = args();
        typo.config = Some(path);
        let e = typo.resolve().expect_err("refused").to_string();
        assert!(e.contains("agent.toml"), "{e}");
    }

    #[test]
    fn the_orchestrator_tls_files_come_from_flags_environment_and_file() {
        use clap::{Args, FromArgMatches};

        let command = AgentArgs::augment_args(clap::Command::new("agent"));
        let matches = command
            .try_get_matches_from([
                "agent",
                "--environment=dev",
                "--host-name=h1",
                "--otlp-endpoint=http://hub:4317",
                "--orchestrator=https://orch:8082",
                "--orchestrator-ca-file=/etc/sextant/ca.pem",
                "--orchestrator-client-cert=/etc/sextant/agent.pem",
                "--orchestrator-client-key=/etc/sextant/agent-key.pem",
            ])
            .expect("parsed");
        let c = AgentArgs::from_arg_matches(&matches)
            .expect("args")
            .resolve()
            .expect("valid");
        assert_eq!(
            c.orchestrator_tls,
            sextant_exporters::sender::TlsConfig {
                ca_file: Some("/etc/sextant/ca.pem".into()),
                client_cert: Some("/etc/sextant/agent.pem".into()),
                client_key: Some("/etc/sextant/agent-key.pem".into()),
            }
        );
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "orchestrator_ca_file = \"/file/ca.pem\"\n").expect("write");
        let mut from_file = args();
        from_file.config = Some(path);
        let c = from_file.resolve().expect("valid");
        assert_eq!(c.orchestrator_tls.ca_file, Some("/file/ca.pem".into()));
        let mut half = args();
        half.orchestrator_client_key = Some("/k.pem".into());
        let e = half.resolve().expect_err("refused").to_string();
        assert!(e.contains("--orchestrator-client-cert"), "{e}");
    }

    #[test]
    fn tls_files_come_from_flags_the_standard_variables_and_the_file() {
        use clap::{Args, FromArgMatches};

        let command = AgentArgs::augment_args(clap::Command::new("agent"));
        let env = |id: &str| {
            command
                .get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_env())
                .and_then(|v| v.to_str())
                .map(str::to_owned)
        };
        assert_eq!(
            env("otlp_ca_file").as_deref(),
            Some("OTEL_EXPORTER_OTLP_CERTIFICATE")
        );
        assert_eq!(
            env("otlp_client_cert").as_deref(),
            Some("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
        );
        assert_eq!(
            env("otlp_client_key").as_deref(),
            Some("OTEL_EXPORTER_OTLP_CLIENT_KEY")
        );

        let matches = command
            .clone()
            .try_get_matches_from([
                "agent",
                "--environment=dev",
                "--host-name=h1",
                "--otlp-endpoint=https://hub:4317",
                "--otlp-ca-file=/etc/sextant/ca.pem",
                "--otlp-client-cert=/etc/sextant/agent.pem",
                "--otlp-client-key=/etc/sextant/agent-key.pem",
            ])
            .expect("parsed");
        let flags = AgentArgs::from_arg_matches(&matches).expect("args");
        let c = flags.resolve().expect("valid");
        assert_eq!(c.ca_file, Some(PathBuf::from("/etc/sextant/ca.pem")));
        assert_eq!(
            c.client_cert,
            Some((
                PathBuf::from("/etc/sextant/agent.pem"),
                PathBuf::from("/etc/sextant/agent-key.pem")
            ))
        );
        assert_eq!(args().resolve().expect("valid").ca_file, None);

        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "otlp_ca_file = \"/file/ca.pem\"\notlp_client_cert = \"/file/c.pem\"\notlp_client_key = \"/file/k.pem\"\n",
        )
        .expect("write");
        let mut from_file = args();
        from_file.config = Some(path.clone());
        let c = from_file.resolve().expect("valid");
        assert_eq!(c.ca_file, Some(PathBuf::from("/file/ca.pem")));
        assert_eq!(
            c.client_cert,
            Some((PathBuf::from("/file/c.pem"), PathBuf::from("/file/k.pem")))
        );
        from_file.otlp_ca_file = Some("/flag/ca.pem".into());
        let c = from_file.resolve().expect("valid");
        assert_eq!(
            c.ca_file,
            Some(PathBuf::from("/flag/ca.pem")),
            "the flag wins"
        );

        let mut half = args();
        half.otlp_client_cert = Some("/c.pem".into());
        let e = half.resolve().expect_err("refused").to_string();
        assert!(
            e.contains("--otlp-client-cert") && e.contains("--otlp-client-key"),
            "{e}"
        );
        let mut half = args();
        half.otlp_client_key = Some("/k.pem".into());
        let e = half.resolve().expect_err("refused").to_string();
        assert!(e.starts_with("--otlp-client-key"), "{e}");
    }

    /// `sextant agent run ARGV` as the CLI parses it, with `env` standing
    /// for the process environment: the same derived flags, variable names
    /// and value parsers. Each argument's `env` is cleared and the value
    /// `env` gives for its variable becomes its default, which clap feeds
    /// through the same path as a variable (used only when the flag is
    /// absent). The process environment is neither read nor changed, so
    /// tests stay independent when run in parallel.
    fn parse_with_env<'a>(
        argv: impl IntoIterator<Item = &'a str>,
        env: &[(&str, &str)],
    ) -> Result<AgentArgs, clap::Error> {
        use clap::{Args, FromArgMatches};

        let mut command = AgentArgs::augment_args(clap::Command::new("agent"));
        let variables: Vec<(clap::Id, String)> = command
            .get_arguments()
            .filter_map(|a| Some((a.get_id().clone(), a.get_env()?.to_str()?.to_owned())))
            .collect();
        for (id, variable) in variables {
            let value = env
                .iter()
                .find(|(k, _)| *k == variable)
                .map(|(_, v)| -> &'static str { Box::leak((*v).to_owned().into_boxed_str()) });
            command = command.mut_arg(id, |arg| {
                let arg = arg.env(None::<&str>);
                match value {
                    Some(v) => arg.default_value(v),
                    None => arg,
                }
            });
        }
        let matches = command.try_get_matches_from(std::iter::once("agent").chain(argv))?;
        AgentArgs::from_arg_matches(&matches)
    }

    #[test]
    fn the_environment_variables_configure_the_agent() {
        let env = [
            ("SEXTANT_HOST_NAME", "edge-7"),
            ("SEXTANT_ENVIRONMENT", "stage"),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://hub-a:4318, http://hub-b:4318",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("SEXTANT_DATA_DIR", "/var/lib/sextant-agent"),
            ("SEXTANT_HEARTBEAT", "5s"),
            ("DOCKER_HOST", "unix:///run/user/1000/docker.sock"),
        ];
        let c = parse_with_env([], &env)
            .expect("parsed")
            .resolve()
            .expect("valid");
        assert_eq!(c.host_name, "edge-7");
        assert_eq!(c.environment, "stage");
        assert_eq!(c.otlp_endpoints, ["http://hub-a:4318", "http://hub-b:4318"]);
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/sextant-agent"));
        assert_eq!(c.heartbeat, Duration::from_secs(5));
        assert_eq!(
            c.docker_host.as_deref(),
            Some("unix:///run/user/1000/docker.sock")
        );
        // Without the variables: the defaults, and the required ones missing.
        let bare = [
            "--host-name=h",
            "--environment=dev",
            "--otlp-endpoint=http://hub:4317",
        ];
        let c = parse_with_env(bare, &[]).unwrap().resolve().unwrap();
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(c.data_dir, PathBuf::from("sextant-agent-data"));
        assert_eq!(c.heartbeat, Duration::from_secs(30));
        assert_eq!(c.docker_host, None);
        let e = parse_with_env([], &env[..1])
            .unwrap()
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("SEXTANT_ENVIRONMENT"), "{e}");
    }

    #[test]
    fn a_flag_beats_its_variable_which_beats_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "host_name = \"h1\"\nenvironment = \"dev\"\notlp_endpoints = [\"http://hub:4317\"]\nheartbeat = \"10s\"\n",
        )
        .expect("write");
        let config = format!("--config={}", path.display());
        let heartbeat = |argv: &[&str], env: &[(&str, &str)]| {
            parse_with_env(argv.iter().copied(), env)
                .expect("parsed")
                .resolve()
                .expect("valid")
                .heartbeat
        };
        let variable = [("SEXTANT_HEARTBEAT", "5s")];
        assert_eq!(
            heartbeat(&[&config, "--heartbeat=2s"], &variable),
            Duration::from_secs(2),
            "the flag wins"
        );
        assert_eq!(
            heartbeat(&[&config], &variable),
            Duration::from_secs(5),
            "then the variable"
        );
        assert_eq!(
            heartbeat(&[&config], &[]),
            Duration::from_secs(10),
            "then the file"
        );
        let file_only = format!("--config={}", dir.path().join("empty.toml").display());
        std::fs::write(dir.path().join("empty.toml"), "").expect("write");
        let bare = [
            "--host-name=h",
            "--environment=dev",
            "--otlp-endpoint=http://hub:4317",
        ];
        assert_eq!(
            heartbeat(&[&file_only, bare[0], bare[1], bare[2]], &[]),
            Duration::from_secs(30),
            "then the default"
        );
    }

    #[test]
    fn a_bad_variable_is_refused_by_the_setting_it_sets() {
        let base = [
            ("SEXTANT_HOST_NAME", "h1"),
            ("SEXTANT_ENVIRONMENT", "dev"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://hub:4317"),
        ];
        let refused = |variable: &'static str, value: &'static str| {
            let mut env = base.to_vec();
            env.push((variable, value));
            parse_with_env([], &env)
                .expect("parsed")
                .resolve()
                .expect_err("refused")
                .to_string()
        };
        let e = refused("SEXTANT_HEARTBEAT", "soon");
        assert!(
            e.starts_with("--heartbeat: ") && e.contains("\"soon\""),
            "{e}"
        );
        let e = refused("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json");
        assert!(
            e.starts_with("--otlp-protocol: ") && e.contains("http/json"),
            "{e}"
        );
        // A value clap itself cannot parse is refused with the flag's name.
        let mut env = base.to_vec();
        env.push(("SEXTANT_AGENT_LISTEN", "localhost"));
        let e = parse_with_env([], &env).expect_err("refused").to_string();
        assert!(e.contains("--listen") && e.contains("localhost"), "{e}");
    }

    #[test]
    fn the_token_comes_from_otlp_headers() {
        assert_eq!(
            bearer_from_headers("x-tenant=a,Authorization=Bearer%20s3cret").as_deref(),
            Some("s3cret")
        );
        assert_eq!(bearer_from_headers("x=y"), None);
    }
}
