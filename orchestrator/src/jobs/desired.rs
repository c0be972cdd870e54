//! Desired state to the hub: a `sextant.deployment.desired` event for each
//! target a deployment is about to change, appended to the orchestrator's
//! durable outbox and delivered by its sender (docs/otlp-conventions.md).

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sextant_exporters::OutboxError;
use sextant_exporters::outbox::{AppendOutcome, Outbox, RecordKind};
use sextant_model::keys;

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

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// The event as a `ResourceLogs`.
pub fn resource_logs(d: &Desired<'_>) -> ResourceLogs {
    let record = LogRecord {
        time_unix_nano: d.at,
        observed_time_unix_nano: d.at,
        event_name: keys::EVENT_DESIRED.to_owned(),
        attributes: vec![
            kv(
                keys::WORKSPACE,
                d.component
                    .workspace
                    .as_deref()
                    .unwrap_or(keys::DEFAULT_WORKSPACE),
            ),
            kv(
                keys::APPLICATION,
                d.component.application.as_deref().unwrap_or("default"),
            ),
            kv(keys::WORKLOAD, &d.component.name),
            kv(keys::ENVIRONMENT, d.environment),
            kv(keys::TARGET, d.hub_target),
            kv(keys::VERSION, d.release),
            kv(keys::REVISION, d.digest),
        ],
        ..Default::default()
    };
    ResourceLogs {
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", "sextant-orchestrator"),
                kv("service.version", env!("CARGO_PKG_VERSION")),
            ],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: "sextant-orchestrator".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            log_records: vec![record],
            ..Default::default()
        }],
        ..Default::default()
    }
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
