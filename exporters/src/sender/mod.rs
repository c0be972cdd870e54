//! Drains an [`Outbox`] consumer into one OTLP endpoint: batches of
//! records become one `ExportLogsServiceRequest`; failures are retried with
//! backoff, refusals are counted and dropped, and the consumer's cursor
//! moves only past batches that are settled. One task per endpoint.

mod backoff;
pub mod grpc;
pub mod http;
pub mod tls;
pub mod transport;

use std::fmt;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use backoff::Backoff;
pub use backoff::BackoffConfig;
pub use grpc::{GrpcConfig, GrpcTransport};
pub use http::{HttpConfig, HttpTransport};
pub use tls::TlsConfig;
pub use transport::{ExportOutcome, FailureReason, LogsRequest, Transport};

use crate::error::{OutboxError, Result};
use crate::metrics::DropReason;
use crate::outbox::Outbox;

/// A bearer token that never reaches a log line or `Debug` output.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How a sender batches and retries.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Most outbox records (`ResourceLogs`) in one request. Default 1000.
    pub max_batch_records: usize,
    /// Most payload bytes in one request (a single larger record still
    /// goes alone). Default 4 MiB, under the 64 MiB OTLP recommends.
    pub max_batch_bytes: usize,
    pub backoff: BackoffConfig,
    /// How often gauges (depth, oldest age) are refreshed while idle.
    /// Default 5 s.
    pub idle_refresh: Duration,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            max_batch_records: 1000,
            max_batch_bytes: 4 << 20,
            backoff: BackoffConfig::default(),
            idle_refresh: Duration::from_secs(5),
        }
    }
}

/// Sends `consumer`'s records through `transport` until `cancel` fires.
///
/// Order is the outbox's: a batch is retried until it is settled
/// (accepted, or refused and dropped) before the next one is read.
/// Delivery is at-least-once: a crash between an accepted request and the
/// cursor write sends that batch again (the hub ignores replays).
/// Returns an error only for outbox I/O failures or an unknown consumer.
pub async fn run<T: Transport>(
    outbox: Outbox,
    consumer: impl Into<String>,
    transport: T,
    config: SenderConfig,
    cancel: CancellationToken,
) -> Result<()> {
    let consumer: String = consumer.into();
    let consumer = consumer.as_str();
    if !outbox.consumers().iter().any(|c| c == consumer) {
        return Err(OutboxError::UnknownConsumer(consumer.to_owned()));
    }
    let metrics = outbox.metrics().clone();
    let attempts = metrics.attempts.with_label_values(&[consumer]);
    let delivered = metrics.delivered.with_label_values(&[consumer]);
    let mut backoff = Backoff::new(config.backoff);
    let max_records = config.max_batch_records.max(1);
    // Lowered while a peer refuses batches as too large.
    let mut limit = max_records;
    let endpoint = transport.endpoint().to_owned();
    tracing::info!(consumer, endpoint, "Outbox sender started");
    loop {
        let appended = outbox.appended();
        tokio::pin!(appended);
        appended.as_mut().enable();
        let batch = outbox.read_batch(consumer, limit, config.max_batch_bytes)?;
        if batch.is_empty() {
            // Records skipped as corrupt may still have moved the cursor.
            outbox.ack(consumer, &batch)?;
            outbox.refresh_metrics();
            tokio::select! {
                () = cancel.cancelled() => break,
                () = &mut appended => {}
                () = tokio::time::sleep(config.idle_refresh) => {}
            }
            continue;
        }
        let request = LogsRequest {
            body: batch.encode_logs_request(),
            records: batch.len(),
        };
        let n = batch.len() as u64;
        attempts.inc();
        let outcome = tokio::select! {
            () = cancel.cancelled() => break,
            outcome = transport.export(request) => outcome,
        };
        match outcome {
            ExportOutcome::Accepted { rejected, message } => {
                if rejected > 0 || message.is_some() {
                    tracing::warn!(
                        consumer,
                        endpoint,
                        rejected,
                        message = message.as_deref().unwrap_or(""),
                        "Export partially rejected; rejected records are dropped"
                    );
                    metrics.drop_records(consumer, DropReason::Rejected, rejected);
                }
                delivered.inc_by(n);
                outbox.ack(consumer, &batch)?;
                backoff.reset();
                limit = (limit * 2).min(max_records);
            }
            ExportOutcome::Retry {
                reason,
                retry_after,
                detail,
            } => {
                metrics
                    .failures
                    .with_label_values(&[consumer, reason.as_str()])
                    .inc();
                let delay = backoff.next(retry_after);
                tracing::warn!(
                    consumer,
                    endpoint,
                    reason = reason.as_str(),
                    error = detail,
                    retry_in_ms = delay.as_millis() as u64,
                    records = n,
                    "Export failed; will retry"
                );
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
            }
            ExportOutcome::Refused {
                reason: FailureReason::TooLarge,
                detail,
            } if n > 1 => {
                metrics
                    .failures
                    .with_label_values(&[consumer, FailureReason::TooLarge.as_str()])
                    .inc();
                limit = (batch.len() / 2).max(1);
                tracing::warn!(
                    consumer,
                    endpoint,
                    error = detail,
                    records = n,
                    next = limit,
                    "Export refused as too large; splitting the batch"
                );
            }
            ExportOutcome::Refused { reason, detail } => {
                metrics
                    .failures
                    .with_label_values(&[consumer, reason.as_str()])
                    .inc();
                let drop = match reason {
                    FailureReason::BadRequest => DropReason::BadRequest,
                    FailureReason::TooLarge => DropReason::TooLarge,
                    _ => DropReason::Refused,
                };
                metrics.drop_records(consumer, drop, n);
                tracing::error!(
                    consumer,
                    endpoint,
                    reason = reason.as_str(),
                    error = detail,
                    records = n,
                    first_seq = batch.records.first().map_or(0, |r| r.seq),
                    "Export refused; batch dropped"
                );
                outbox.ack(consumer, &batch)?;
                backoff.reset();
            }
        }
    }
    outbox.refresh_metrics();
    tracing::info!(consumer, endpoint, "Outbox sender stopped");
    Ok(())
}
