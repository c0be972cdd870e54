//! Why the hub could not start, or stopped on its own.

use sextant_kit::rate_limit::InvalidRateLimit;
use sextant_kit::serve::{BindError, LimitsError, TlsError};
use sextant_kit::shutdown::Stopped;

use crate::config::TlsConfigError;
use crate::store::StoreError;

/// A hub that cannot be built, or a component that failed while it ran.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    TlsConfig(#[from] TlsConfigError),
    #[error("tls: {0}")]
    Tls(#[source] TlsError),
    #[error(
        "refusing to listen on non-loopback address {addrs} with no tokens configured: \
         anyone who can reach it could write and read deployment state. \
         Add [[tokens]] to the config file, or bind 127.0.0.1"
    )]
    OpenOnPublicAddress { addrs: String },
    #[error("listeners: {0}")]
    Listeners(#[source] LimitsError),
    #[error(
        "metrics_require_token needs [[tokens]]: add a token with the `metrics` scope \
         for the scraper"
    )]
    MetricsWithoutTokens,
    /// `trace_url_template` or `logs_url_template` does not parse; the
    /// message names the setting.
    #[error("{0}")]
    LinkTemplate(String),
    #[error(
        "max_inflight_request_bytes ({inflight}) must be at least four times max_request_bytes \
         ({max}): one request holds its body, its gzip output and its decoded message; \
         raise it to {minimum} or lower max_request_bytes"
    )]
    InflightBudget {
        inflight: usize,
        max: usize,
        minimum: usize,
    },
    #[error("rate_limits.{surface}: {source}")]
    RateLimit {
        surface: &'static str,
        #[source]
        source: InvalidRateLimit,
    },
    /// `url` is redacted.
    #[error("cannot open the hub database {url}: {source}")]
    Store {
        url: String,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Listen(#[from] BindError),
    #[error("the stale sweep failed: {0}")]
    Sweep(#[source] StoreError),
    #[error("the OTLP/gRPC server failed: {0}")]
    Grpc(#[source] tonic::transport::Error),
    #[error("the {what} server failed: {source}")]
    Http {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A component that panicked.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}
