//! Drains an [`Outbox`] consumer into one OTLP endpoint: batches of
//! records become one `ExportLogsServiceRequest`, several in flight at
//! once; failures are retried with backoff, refusals are counted and
//! dropped, and the consumer's cursor moves in order, only past batches
//! that are settled. One task per endpoint.

mod backoff;
pub mod grpc;
pub mod http;
mod pipeline;
pub mod tls;
pub mod transport;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use backoff::BackoffConfig;
pub use grpc::{GrpcConfig, GrpcTransport, with_tls};
pub use http::{HttpAnswer, HttpConfig, HttpTransport, NoAnswer, RpcStatus};
pub use tls::TlsConfig;
pub use transport::{ExportOutcome, FailureReason, LogsRequest, Transport};

use crate::error::{OutboxError, Result};
use crate::outbox::Outbox;
use pipeline::Pipeline;

/// How a sender batches and retries.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Most outbox records (`ResourceLogs`) in one request. Default 1000.
    pub max_batch_records: usize,
    /// Most payload bytes in one request (a single larger record still
    /// goes alone). Default 4 MiB, under the 64 MiB OTLP recommends.
    pub max_batch_bytes: usize,
    pub backoff: BackoffConfig,
    /// How often gauges (depth, oldest age) are refreshed, busy or idle.
    /// Default 5 s.
    pub idle_refresh: Duration,
    /// Most batches exported at once (pipelining). The cursor still moves
    /// in order, only past batches whose every predecessor is settled.
    /// Default 4; 1 sends one batch at a time, strictly in order.
    pub max_in_flight: usize,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            max_batch_records: 1000,
            max_batch_bytes: 4 << 20,
            backoff: BackoffConfig::default(),
            idle_refresh: Duration::from_secs(5),
            max_in_flight: 4,
        }
    }
}

/// Sends `consumer`'s records through `transport` until `cancel` fires.
///
/// Batches are read in outbox order and up to
/// [`SenderConfig::max_in_flight`] are exported at once; each is retried
/// until it is settled (accepted, or refused and dropped), and the cursor
/// moves only over the longest run of settled batches from the cursor, so
/// it never passes a batch still being sent. Delivery is at-least-once: a
/// crash sends again everything after the cursor (the hub ignores replays).
/// With more than one in flight, requests may reach the peer out of order.
/// Returns an error only for outbox I/O failures or an unknown consumer.
pub async fn run<T: Transport>(
    outbox: Outbox,
    consumer: impl Into<String>,
    transport: T,
    config: SenderConfig,
    cancel: CancellationToken,
) -> Result<()> {
    let consumer: String = consumer.into();
    if !outbox.consumers().contains(&consumer) {
        return Err(OutboxError::UnknownConsumer(consumer));
    }
    let endpoint = transport.endpoint().to_owned();
    tracing::info!(
        consumer,
        endpoint,
        max_in_flight = config.max_in_flight.max(1),
        "Outbox sender started"
    );
    let mut pipeline = Pipeline::new(outbox.clone(), consumer.clone(), transport, config);
    let result = pipeline.run(&cancel).await;
    pipeline.stop();
    outbox.refresh_metrics();
    match &result {
        Ok(()) => tracing::info!(consumer, endpoint, "Outbox sender stopped"),
        Err(error) => tracing::error!(consumer, endpoint, %error, "Outbox sender failed"),
    }
    result
}
