//! What a transport answers, classified per the OTLP specification.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

/// Why a send attempt failed (`reason` label of
/// `sextant_outbox_send_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// No connection, or it broke (refused, reset, DNS, TLS).
    Connection,
    /// No answer in time (client timeout, `DEADLINE_EXCEEDED`).
    Timeout,
    /// HTTP 429, or `RESOURCE_EXHAUSTED` with `RetryInfo`.
    Throttled,
    /// HTTP 502/503/504, or `UNAVAILABLE`.
    Unavailable,
    /// Another retryable gRPC code: `CANCELLED`, `ABORTED`, `OUT_OF_RANGE`,
    /// `DATA_LOSS`.
    RetryableStatus,
    /// HTTP 401/403, `UNAUTHENTICATED`, `PERMISSION_DENIED`: retried (the
    /// data is kept until the credentials are fixed, within the size cap).
    Unauthorized,
    /// HTTP 400 or `INVALID_ARGUMENT`: the batch is dropped.
    BadRequest,
    /// HTTP 413 or `RESOURCE_EXHAUSTED` without `RetryInfo`: the batch is
    /// split, a single record dropped.
    TooLarge,
    /// Any other non-retryable answer: the batch is dropped.
    Refused,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::Timeout => "timeout",
            Self::Throttled => "throttled",
            Self::Unavailable => "unavailable",
            Self::RetryableStatus => "retryable_status",
            Self::Unauthorized => "unauthorized",
            Self::BadRequest => "bad_request",
            Self::TooLarge => "too_large",
            Self::Refused => "refused",
        }
    }
}

/// The classified result of one export request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportOutcome {
    /// Accepted (HTTP 200 / OK). `rejected` log records were refused in
    /// `partial_success`; they are not retried.
    Accepted {
        rejected: u64,
        message: Option<String>,
    },
    /// Try again later; `retry_after` is the peer's own delay
    /// (`Retry-After`, `RetryInfo`) when it gave one.
    Retry {
        reason: FailureReason,
        retry_after: Option<Duration>,
        detail: String,
    },
    /// Never accepted as it is: drop (or split, for [`FailureReason::TooLarge`]).
    Refused {
        reason: FailureReason,
        detail: String,
    },
}

/// An encoded `ExportLogsServiceRequest`.
#[derive(Debug, Clone)]
pub struct LogsRequest {
    /// Its protobuf encoding.
    pub body: Bytes,
    /// Outbox records (encoded `ResourceLogs`) in it.
    pub records: usize,
}

/// A way to deliver OTLP logs requests to one endpoint.
pub trait Transport: Send + Sync + 'static {
    /// The endpoint, for logs.
    fn endpoint(&self) -> &str;

    /// Sends one request and classifies the answer. Never panics; every
    /// failure is an [`ExportOutcome`].
    fn export(&self, request: LogsRequest) -> impl Future<Output = ExportOutcome> + Send;
}

/// Decodes an `ExportLogsServiceResponse` body into `Accepted`.
pub(crate) fn accepted(
    response: &opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse,
) -> ExportOutcome {
    match &response.partial_success {
        Some(p) if p.rejected_log_records > 0 || !p.error_message.is_empty() => {
            ExportOutcome::Accepted {
                rejected: u64::try_from(p.rejected_log_records).unwrap_or(0),
                message: (!p.error_message.is_empty()).then(|| p.error_message.clone()),
            }
        }
        _ => ExportOutcome::Accepted {
            rejected: 0,
            message: None,
        },
    }
}
