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
    /// What set it: the promotion, the job, who approved, the trace.
    pub origin: Origin<'a>,
}

/// What set a desired assignment, as the hub shows it on drift, host and
/// history rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin<'a> {
    pub promotion: Option<&'a str>,
    pub job: Option<&'a str>,
    /// Who approved (comma-separated when several did).
    pub approved_by: Option<String>,
    /// The promotion's W3C `traceparent`: its trace and span ids go in the
    /// log record's own fields.
    pub traceparent: Option<&'a str>,
}

/// The trace and span ids of a W3C `traceparent`
/// (`00-<32 hex>-<16 hex>-<2 hex>`); `None` when it is not one.
pub fn trace_context(traceparent: &str) -> Option<([u8; 16], [u8; 8])> {
    let mut parts = traceparent.split('-');
    let (_version, trace, span) = (parts.next()?, parts.next()?, parts.next()?);
    let trace: [u8; 16] = hex::decode(trace).ok()?.try_into().ok()?;
    let span: [u8; 8] = hex::decode(span).ok()?.try_into().ok()?;
    (trace != [0; 16] && span != [0; 8]).then_some((trace, span))
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
        .with(keys::REVISION, d.digest)
        .with_some(keys::PROMOTION_ID, d.origin.promotion)
        .with_some(keys::JOB_ID, d.origin.job)
        .with_some(keys::APPROVER, d.origin.approved_by.as_deref());
    let record = match d.origin.traceparent.and_then(trace_context) {
        Some((trace, span)) => record.traced(trace, span),
        None => record,
    };
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

#[cfg(test)]
mod tests {
    use super::trace_context;

    #[test]
    fn a_traceparent_gives_its_trace_and_span_ids() {
        let (trace, span) =
            trace_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex::encode(trace), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(span), "00f067aa0ba902b7");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736",
            "00-4bf92f35-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-zzf067aa0ba902b7-01",
        ] {
            assert_eq!(trace_context(bad), None, "{bad:?}");
        }
    }
}
