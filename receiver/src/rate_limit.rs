//! The hub's per-tenant rate limits: one [`SurfaceLimiter`] for the read
//! API and one for OTLP ingest (HTTP and gRPC share it), each counting its
//! refusals in `sextant_rate_limited_total{surface}`. The limiter itself is
//! `sextant_kit::rate_limit`; how a refusal is answered is up to each
//! transport.

use prometheus::IntCounter;
use sextant_kit::rate_limit::{InvalidRateLimit, RateLimitConfig, RateLimited, TenantLimiter};

use crate::metrics::HubMetrics;

/// A [`TenantLimiter`] with the surface it guards and its refusal counter.
#[derive(Clone, Debug)]
pub struct SurfaceLimiter {
    limiter: TenantLimiter,
    surface: &'static str,
    refused: IntCounter,
}

impl SurfaceLimiter {
    /// `surface` is [`crate::metrics::API`] or [`crate::metrics::INGEST`].
    pub fn new(
        config: RateLimitConfig,
        surface: &'static str,
        metrics: &HubMetrics,
    ) -> Result<Self, InvalidRateLimit> {
        Ok(Self {
            limiter: TenantLimiter::new(config)?,
            surface,
            refused: metrics.rate_limited.with_label_values(&[surface]),
        })
    }

    /// Takes one request from `tenant`'s budget; a refusal is counted.
    pub fn check(&self, tenant: &str) -> Result<(), RateLimited> {
        self.limiter.check(tenant).inspect_err(|limited| {
            self.refused.inc();
            // Debug only: a client hammering the hub must not flood the log;
            // the counter is what alerts read.
            tracing::debug!(
                tenant,
                surface = self.surface,
                retry_after = limited.retry_after_secs(),
                "Rate limited"
            );
        })
    }

    /// `5/s, burst 10` or `unlimited`, for error messages.
    pub fn describe(&self) -> String {
        self.limiter.config().describe()
    }
}

/// The `google.rpc.Status` of an OTLP request over its tenant's limit:
/// `RESOURCE_EXHAUSTED` with a `RetryInfo` detail, which OTLP clients
/// retry after the delay (without `RetryInfo` they would drop the data).
/// The gRPC transport answers it as is; OTLP/HTTP sends its encoded form
/// ([`tonic::Status::details`]) as the 429 body.
pub fn ingest_status(tenant: &str, limit: &str, limited: RateLimited) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt as _};
    tonic::Status::with_error_details(
        tonic::Code::ResourceExhausted,
        format!(
            "tenant {tenant:?} is over its ingest rate limit ({limit}); retry in {} s",
            limited.retry_after_secs()
        ),
        ErrorDetails::with_retry_info(Some(limited.retry_delay())),
    )
}
