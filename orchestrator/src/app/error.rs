//! Why an orchestrator replica could not start, or stopped on its own.

use sextant_exporters::OutboxError;
use sextant_kit::hub::HubError;
use sextant_kit::rate_limit::InvalidRateLimit;
use sextant_kit::serve::{BindError, LimitsError, TlsError};
use sextant_kit::shutdown::Stopped;

use crate::store::StoreError;

/// A replica that cannot be built, or a component that failed while it
/// ran.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid API rate limit: {0}")]
    RateLimit(#[source] InvalidRateLimit),
    #[error("invalid listener limits: {0}")]
    Listeners(#[source] LimitsError),
    #[error("a token for /metrics needs tokens: configure some with the `metrics` scope")]
    MetricsWithoutTokens,
    #[error("invalid TLS settings of the agent listener: {0}")]
    AgentTls(#[source] TlsError),
    #[error("cannot open the orchestrator database: {0}")]
    Store(#[source] StoreError),
    #[error("cannot open the orchestrator's outbox: {0}")]
    Outbox(#[source] OutboxError),
    #[error("invalid hub OTLP endpoint: {0}")]
    HubOtlp(#[source] OutboxError),
    #[error("invalid hub API URL: {0}")]
    HubApi(#[source] HubError),
    #[error(transparent)]
    Listen(#[from] BindError),
    #[error("the API server failed: {0}")]
    ApiServer(#[source] std::io::Error),
    #[error("the agent channel server failed: {0}")]
    AgentServer(#[source] tonic::transport::Error),
    #[error("the outbox sender to the hub failed: {0}")]
    Sender(#[source] OutboxError),
    /// A component that panicked.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}
