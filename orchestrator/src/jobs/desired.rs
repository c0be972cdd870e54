//! Desired state to the hub: a `sextant.deployment.desired` event for each
//! target a deployment is about to change, appended to the orchestrator's
//! durable outbox and delivered by its sender (docs/otlp-conventions.md).

use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use prost::Message;
use sextant_exporters::OutboxError;
use sextant_exporters::outbox::{AppendOutcome, Outbox, RecordKind};
use sextant_model::otlp::{EventRecord, Reporter};
use sextant_model::{EventKind, UnixNanos, keys};

use crate::domain::ComponentSpec;

/// One desired assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired<'a> {
    pub component: &'a ComponentSpec,
    pub environment: &'a str,
    pub hub_target: &'a str,
    /// The release name (the hub's version).
    pub release: &'a str,
    /// `sha256:…`
    pub digest: &'a str,
    /// Unix nanoseconds of the assignment.
    pub at: u64,
}

/// The event as a `ResourceLogs`.
pub fn resource_logs(d: &Desired<'_>) -> ResourceLogs {
    let at = UnixNanos(i64::try_from(d.at).unwrap_or(i64::MAX));
    let record = EventRecord::new(EventKind::Desired, at)
        .with(
            keys::WORKSPACE,
            d.component
                .workspace
                .as_deref()
                .unwrap_or(keys::DEFAULT_WORKSPACE),
        )
        .with(
            keys::APPLICATION,
            d.component.application.as_deref().unwrap_or("default"),
        )
        .with(keys::WORKLOAD, &d.component.name)
        .with(keys::ENVIRONMENT, d.environment)
        .with(keys::TARGET, d.hub_target)
        .with(keys::VERSION, d.release)
        .with(keys::REVISION, d.digest);
    Reporter::service("sextant-orchestrator", env!("CARGO_PKG_VERSION")).logs(vec![record.into()])
}

/// Why desired state could not be made durable.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot append desired state to the outbox: {source}")]
    Append {
        #[source]
        source: OutboxError,
    },
    #[error("the outbox refused desired state: {outcome:?}")]
    Refused { outcome: AppendOutcome },
    #[error("cannot sync the outbox: {source}")]
    Sync {
        #[source]
        source: OutboxError,
    },
}

/// Appends desired events to the outbox (synced before returning, so a
/// crash right after cannot lose an assignment the engine acted on).
pub fn publish(outbox: &Outbox, events: &[Desired<'_>]) -> Result<(), PublishError> {
    if events.is_empty() {
        return Ok(());
    }
    let encoded: Vec<Vec<u8>> = events
        .iter()
        .map(|d| resource_logs(d).encode_to_vec())
        .collect();
    let batch: Vec<(RecordKind, &[u8])> = encoded
        .iter()
        .map(|b| (RecordKind::StateChange, b.as_slice()))
        .collect();
    let outcomes = outbox
        .append_batch(&batch)
        .map_err(|source| PublishError::Append { source })?;
    if let Some(dropped) = outcomes
        .iter()
        .find(|o| matches!(o, AppendOutcome::Dropped(_)))
    {
        return Err(PublishError::Refused { outcome: *dropped });
    }
    outbox
        .sync()
        .map_err(|source| PublishError::Sync { source })
}
