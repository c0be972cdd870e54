//! Hub configuration: defaults, then a TOML file, then `SEXTANT_…`
//! environment variables; the CLI applies its flags last.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sextant_kit::config::{ConfigError, Layers};

use sextant_kit::rate_limit::RateLimitConfig;
use sextant_kit::serve::ListenerLimits;
use sextant_kit::serve::ServerTlsConfig;

use crate::auth::{ClientCertConfig, TokenConfig};
use crate::reconcilers::ReconcilersConfig;

/// Default OTLP request limit, checked after decompression (the OTLP spec
/// recommends accepting up to 64 MiB).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// Default memory budget of the OTLP requests in flight: 512 MiB, eight
/// times the default request limit (docs/performance.md, "Under hostile
/// load": the hub's peak stays under 1 GiB).
pub const DEFAULT_MAX_INFLIGHT_REQUEST_BYTES: usize = 512 * 1024 * 1024;

/// Default clock-skew window for event times: five minutes.
pub const DEFAULT_MAX_FUTURE_SKEW_SECONDS: u64 = 300;

/// Environment variables read into [`HubConfig`], without their `SEXTANT_`
/// prefix.
const ENV_KEYS: &[&str] = &[
    "otlp_grpc_addr",
    "otlp_http_addr",
    "api_addr",
    "database_url",
    "data_dir",
    "max_request_bytes",
    "max_inflight_request_bytes",
    "listeners.header_timeout_seconds",
    "listeners.request_timeout_seconds",
    "listeners.idle_timeout_seconds",
    "listeners.max_connections",
    "tls.cert_file",
    "tls.key_file",
    "tls.client_ca_file",
    "stale_after_seconds",
    "max_future_skew_seconds",
    "ui_refresh_seconds",
    "orchestrator_url",
    "trace_url_template",
    "logs_url_template",
    "metrics_require_token",
    "metrics_max_environments",
    "rate_limits.api.per_second",
    "rate_limits.api.burst",
    "rate_limits.ingest.per_second",
    "rate_limits.ingest.burst",
];

/// Configuration of the hub (`sextant up`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// OTLP/gRPC listen address (`SEXTANT_OTLP_GRPC_ADDR`).
    pub otlp_grpc_addr: SocketAddr,
    /// OTLP/HTTP listen address (`SEXTANT_OTLP_HTTP_ADDR`).
    pub otlp_http_addr: SocketAddr,
    /// Read API listen address (`SEXTANT_API_ADDR`).
    pub api_addr: SocketAddr,
    /// `sqlite://…` or `postgres://…` (`SEXTANT_DATABASE_URL`); defaults to
    /// `hub.db` in the data directory.
    pub database_url: Option<String>,
    /// Where the embedded database lives (`SEXTANT_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Largest accepted OTLP request in bytes, after decompression.
    pub max_request_bytes: usize,
    /// Memory budget of the OTLP requests in flight on both transports, in
    /// bytes (`SEXTANT_MAX_INFLIGHT_REQUEST_BYTES`; default 512 MiB): their
    /// bodies, gzip output and decoded messages (docs/security.md,
    /// "Memory"). A request that finds no room is answered 429 with
    /// `Retry-After` (gRPC: `RESOURCE_EXHAUSTED` with `RetryInfo`); one that
    /// would decode into more than all of it, 413. At least four times
    /// `max_request_bytes`.
    pub max_inflight_request_bytes: usize,
    /// Timeouts and the connection cap of each of the three listeners
    /// (`[listeners]`; `SEXTANT_LISTENERS__HEADER_TIMEOUT_SECONDS` and so on).
    pub listeners: ListenerLimits,
    /// A host with no report for this long is stale
    /// (`SEXTANT_STALE_AFTER_SECONDS`; default 90, three 30 s heartbeats).
    pub stale_after_seconds: u64,
    /// How far ahead of the hub's clock an event time may be, in seconds
    /// (`SEXTANT_MAX_FUTURE_SKEW_SECONDS`; default 300): a record dated
    /// later is rejected with the reason, so that no report can stay
    /// current state forever.
    pub max_future_skew_seconds: u64,
    /// The order environments are shown in (`dev`, `qa`, `stage`, `prod`,
    /// or whatever a team uses). Unlisted environments follow, alphabetically.
    pub environments: Vec<String>,
    /// How often UI pages refresh themselves, in seconds; 0 turns it off.
    pub ui_refresh_seconds: u64,
    /// Static bearer tokens. With none (and no `client_certs`), the hub
    /// only listens on loopback and everything belongs to tenant `default`.
    pub tokens: Vec<TokenConfig>,
    /// TLS of all three listeners (`[tls]`: `cert_file`, `key_file`,
    /// `client_ca_file`; `SEXTANT_TLS__CERT_FILE` and so on; `sextant up
    /// --tls-cert`, `--tls-key`, `--tls-client-ca`). With `client_ca_file`
    /// every client must present a certificate that CA signed (mTLS).
    pub tls: ServerTlsConfig,
    /// Client certificates that authenticate OTLP requests without a token,
    /// each mapped to a tenant and scopes (`[[client_certs]]`); needs
    /// `tls.client_ca_file`.
    pub client_certs: Vec<ClientCertConfig>,
    /// The orchestrator's base URL (`SEXTANT_ORCHESTRATOR_URL`), for links
    /// from a host's deployments to the job that made them. `sextant up`
    /// sets it to its own orchestrator.
    pub orchestrator_url: Option<String>,
    /// The trace viewer's URL of a trace id (`SEXTANT_TRACE_URL_TEMPLATE`),
    /// with `{trace_id}`, `{service}`, `{from}`, `{to}` (Unix ms); the
    /// default opens it in the Grafana (Tempo) of deploy/compose. Empty:
    /// no trace links.
    pub trace_url_template: String,
    /// The log viewer's URL of a trace's logs (`SEXTANT_LOGS_URL_TEMPLATE`),
    /// the same placeholders; the default opens Loki in that Grafana.
    /// Empty: no log links.
    pub logs_url_template: String,
    /// Per-tenant rate limits of the API and of OTLP ingest; unlimited by
    /// default.
    pub rate_limits: RateLimits,
    /// `/metrics` answers only a token with the `metrics` (or `admin`)
    /// scope (`SEXTANT_METRICS_REQUIRE_TOKEN`; off by default, and only
    /// possible with `[[tokens]]`). Its series name tenants and
    /// environments.
    pub metrics_require_token: bool,
    /// Environments per tenant that get series of their own on `/metrics`
    /// (`SEXTANT_METRICS_MAX_ENVIRONMENTS`; default 100): the configured
    /// ones first, then by name; the rest add up under `env="_other"`.
    pub metrics_max_environments: usize,
    /// Flux and Argo CD (`[reconcilers]`, docs/reconcilers.md): defaults
    /// per cluster (`[[reconcilers.clusters]]`) and the keys of Flux
    /// `generic-hmac` Providers (`[[reconcilers.hmac_keys]]`).
    pub reconcilers: ReconcilersConfig,
}

/// Per-tenant request rates (`[rate_limits.api]`, `[rate_limits.ingest]`;
/// `SEXTANT_RATE_LIMITS__API__PER_SECOND` and so on). Each tenant has its
/// own budget; a request over it gets 429 with `Retry-After`, or
/// `RESOURCE_EXHAUSTED` with `RetryInfo` over gRPC.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// The read API (`/api/v1/…`); the UI, health and metrics are not
    /// limited.
    pub api: RateLimitConfig,
    /// OTLP ingest, HTTP and gRPC together.
    pub ingest: RateLimitConfig,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            otlp_grpc_addr: SocketAddr::from(([127, 0, 0, 1], 4317)),
            otlp_http_addr: SocketAddr::from(([127, 0, 0, 1], 4318)),
            api_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: None,
            data_dir: PathBuf::from(".sextant"),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_inflight_request_bytes: DEFAULT_MAX_INFLIGHT_REQUEST_BYTES,
            listeners: ListenerLimits::default(),
            stale_after_seconds: 90,
            max_future_skew_seconds: DEFAULT_MAX_FUTURE_SKEW_SECONDS,
            environments: Vec::new(),
            ui_refresh_seconds: 15,
            tokens: Vec::new(),
            tls: ServerTlsConfig::default(),
            client_certs: Vec::new(),
            orchestrator_url: None,
            trace_url_template: sextant_kit::links::grafana::tempo_trace(
                sextant_kit::links::grafana::BASE,
            ),
            logs_url_template: sextant_kit::links::grafana::loki_logs(
                sextant_kit::links::grafana::BASE,
            ),
            rate_limits: RateLimits::default(),
            metrics_require_token: false,
            metrics_max_environments: 100,
            reconcilers: ReconcilersConfig::default(),
        }
    }
}

impl HubConfig {
    /// Defaults, then `file` (if any), then `SEXTANT_…` environment
    /// variables (`__` nests: `SEXTANT_RATE_LIMITS__API__BURST`).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_flags(file, &BTreeMap::<String, String>::new())
    }

    /// [`Self::load`], then the command line's `flags` over everything
    /// (serialized with the keys of the file; unset flags left out).
    pub fn load_with_flags(
        file: Option<&Path>,
        flags: &impl serde::Serialize,
    ) -> Result<Self, ConfigError> {
        Layers::new(HubConfig::default())
            .file(file)
            .env("SEXTANT_", ENV_KEYS)
            .flags(flags)
            .load()
    }

    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("hub.db").display()))
    }

    /// Checks `[tls]` against `[[client_certs]]`: a certificate can only
    /// be mapped where the listeners ask for one.
    pub fn check_tls(&self) -> Result<(), TlsConfigError> {
        if !self.client_certs.is_empty() && self.tls.client_ca_file.is_none() {
            return Err(TlsConfigError::ClientCertsWithoutCa);
        }
        Ok(())
    }

    /// The addresses the hub listens on that are not loopback.
    pub fn public_addrs(&self) -> Vec<SocketAddr> {
        [self.otlp_grpc_addr, self.otlp_http_addr, self.api_addr]
            .into_iter()
            .filter(|a| !a.ip().is_loopback())
            .collect()
    }
}

/// `[tls]` and `[[client_certs]]` that do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsConfigError {
    #[error(
        "[[client_certs]] needs tls.client_ca_file (and tls.cert_file, tls.key_file): \
         without it no client presents a certificate"
    )]
    ClientCertsWithoutCa,
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;
    use crate::auth::Scope;
    use sextant_kit::serve::CertName;

    #[test]
    fn file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "hub.toml",
                r#"
                api_addr = "127.0.0.1:9000"
                data_dir = "/tmp/x"
                [[tokens]]
                token = "t1"
                tenant = "acme"
                scopes = ["ingest", "read"]

                [[tokens]]
                token = "t2"
                tenant = "acme"
                subject = "release-pipeline"
                scopes = ["deploy"]
                "#,
            )?;
            jail.set_env("SEXTANT_API_ADDR", "127.0.0.1:9100");
            jail.set_env("SEXTANT_UNRELATED", "ignored");
            let c = HubConfig::load(Some(Path::new("hub.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.api_addr, SocketAddr::from(([127, 0, 0, 1], 9100)));
            assert_eq!(c.database_url(), "sqlite:///tmp/x/hub.db");
            assert_eq!(c.tokens[0].tenant, "acme");
            assert_eq!(c.tokens[0].subject, None);
            assert_eq!(c.tokens[1].subject.as_deref(), Some("release-pipeline"));
            assert_eq!(c.tokens[1].scopes, [Scope::Deploy]);
            assert_eq!(format!("{:?}", c.tokens[0].token), "Secret(***)");
            Ok(())
        });
    }

    #[test]
    fn rate_limits_are_off_by_default_and_nest_in_file_and_environment() {
        figment::Jail::expect_with(|jail| {
            assert!(HubConfig::default().rate_limits.api.is_unlimited());
            assert!(HubConfig::default().rate_limits.ingest.is_unlimited());
            jail.create_file(
                "hub.toml",
                r#"
                [rate_limits.api]
                per_second = 5
                burst = 10
                "#,
            )?;
            jail.set_env("SEXTANT_RATE_LIMITS__INGEST__PER_SECOND", "0.5");
            jail.set_env("SEXTANT_RATE_LIMITS__API__BURST", "20");
            let c = HubConfig::load(Some(Path::new("hub.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.rate_limits.api, RateLimitConfig::new(5.0, 20));
            assert_eq!(c.rate_limits.ingest, RateLimitConfig::new(0.5, 0));
            Ok(())
        });
    }

    #[test]
    fn tls_and_client_certs_from_file_and_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "hub.toml",
                r#"
                [tls]
                cert_file = "/etc/sextant/hub.pem"
                key_file = "/etc/sextant/hub-key.pem"

                [[client_certs]]
                subject = "CN=edge-gateway-1"
                tenant = "acme"
                scopes = ["ingest"]

                [[client_certs]]
                subject = "URI:spiffe://example.com/gw"
                tenant = "globex"
                scopes = ["ingest", "read"]
                "#,
            )?;
            jail.set_env("SEXTANT_TLS__CLIENT_CA_FILE", "/etc/sextant/ca.pem");
            let c = HubConfig::load(Some(Path::new("hub.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(
                c.tls.cert_file.as_deref(),
                Some(Path::new("/etc/sextant/hub.pem"))
            );
            assert_eq!(
                c.tls.client_ca_file.as_deref(),
                Some(Path::new("/etc/sextant/ca.pem"))
            );
            assert_eq!(
                c.client_certs[0].subject,
                CertName::CommonName("edge-gateway-1".into())
            );
            assert_eq!(
                c.client_certs[1].subject,
                CertName::Uri("spiffe://example.com/gw".into())
            );
            assert!(c.check_tls().is_ok());
            jail.create_file(
                "bad.toml",
                "[[client_certs]]\nsubject = \"edge\"\ntenant = \"a\"\nscopes = []\n",
            )?;
            let err = HubConfig::load(Some(Path::new("bad.toml"))).expect_err("not a name");
            assert!(err.to_string().contains("CN="), "{err}");
            Ok(())
        });
        let mut c = HubConfig::default();
        c.client_certs.push(ClientCertConfig {
            subject: CertName::CommonName("gw".into()),
            tenant: "acme".into(),
            scopes: vec![Scope::Ingest],
        });
        assert!(c.check_tls().is_err(), "client certs without a client CA");
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("hub.toml", "api_adr = \"127.0.0.1:1\"")?;
            let err = HubConfig::load(Some(Path::new("hub.toml")))
                .expect_err("a misspelt key is an error");
            assert!(err.to_string().contains("api_adr"), "{err}");
            Ok(())
        });
    }
}
