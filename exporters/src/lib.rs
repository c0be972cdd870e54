//! Sextant's exporters: the durable OTLP outbox and its sender.
//!
//! An agent appends every report to an [`Outbox`] (on disk, before anything
//! is sent); one [`sender::run`] task per endpoint drains it into OTLP
//! logs requests over HTTP or gRPC, with retries and backoff. See
//! `docs/outbox.md`.

pub mod error;
pub mod metrics;
pub mod outbox;
pub mod sender;
pub mod telemetry;

pub use error::{OutboxError, Result};
pub use metrics::{DropReason, OutboxMetrics};
pub use outbox::{
    AppendOutcome, Batch, ConsumerStats, FsyncPolicy, Outbox, OutboxConfig, OutboxStats, Record,
    RecordKind,
};
