//! Observations as OTLP log records, following `docs/otlp-conventions.md`:
//! the agent's identity on the resource, the placement, revision and status
//! on the record, event name `sextant.deployment.observed`.

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use sextant_model::{UnixNanos, keys};

use super::status::Observation;

/// The reconciler name and type the agent reports as. The type is the
/// hub's source `agent`; releases before it sent `docker`, which the hub
/// also reads as `agent`.
pub const RECONCILER_NAME: &str = "sextant-agent";
pub const RECONCILER_TYPE: &str = "agent";
/// Prefix of the agent's own labels on the resource.
pub const LABEL_PREFIX: &str = "sextant.agent.label.";

/// Who reports: the host, its environment and its labels.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub host: String,
    pub environment: String,
    pub labels: Vec<(String, String)>,
}

fn kv(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// The resource every record of this agent carries.
pub fn resource(identity: &Identity) -> Resource {
    let mut attributes = vec![
        kv("service.name", RECONCILER_NAME),
        kv("service.version", env!("CARGO_PKG_VERSION")),
        kv(keys::HOST_NAME, &identity.host),
        kv(keys::RECONCILER_NAME, RECONCILER_NAME),
        kv(keys::RECONCILER_TYPE, RECONCILER_TYPE),
    ];
    attributes.extend(
        identity
            .labels
            .iter()
            .map(|(k, v)| kv(format!("{LABEL_PREFIX}{k}"), v)),
    );
    Resource {
        attributes,
        ..Default::default()
    }
}

/// One observation as a log record at time `at`.
pub fn record(observation: &Observation, at: UnixNanos) -> LogRecord {
    let p = &observation.placement;
    let mut attributes = vec![
        kv(keys::APPLICATION, &p.application),
        kv(keys::WORKLOAD, &p.workload),
        kv(keys::ENVIRONMENT, &p.environment),
        kv(keys::TARGET, &p.target),
        kv(keys::REVISION, &observation.revision),
        kv(keys::STATUS, observation.status.as_str()),
        kv("container.id", &observation.container),
        kv("container.name", &observation.name),
    ];
    if let Some(w) = &p.workspace {
        attributes.push(kv(keys::WORKSPACE, w));
    }
    if let Some(m) = &observation.message {
        attributes.push(kv(keys::STATUS_MESSAGE, m));
    }
    if let Some(r) = &observation.release {
        attributes.push(kv(keys::VERSION, r));
    }
    if let Some(j) = &observation.job {
        attributes.push(kv(keys::JOB_ID, j));
    }
    let time = u64::try_from(at.0).unwrap_or(0);
    LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: time,
        event_name: keys::EVENT_OBSERVED.to_owned(),
        attributes,
        ..Default::default()
    }
}

/// A whole `ResourceLogs` of one record: what one outbox record holds.
pub fn resource_logs(resource: &Resource, record: LogRecord) -> ResourceLogs {
    ResourceLogs {
        resource: Some(resource.clone()),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: RECONCILER_NAME.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                ..Default::default()
            }),
            log_records: vec![record],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use sextant_model::{AttributeSource, DeploymentStatus, ObservedDeployment};

    use super::super::status::Placement;
    use super::*;

    /// Attributes merged as the hub merges them: the record wins.
    struct Merged(HashMap<String, String>);

    impl AttributeSource for Merged {
        fn text(&self, key: &str) -> Result<Option<String>, sextant_model::NotAString> {
            Ok(self.0.get(key).cloned())
        }
    }

    fn strings(attrs: &[KeyValue]) -> impl Iterator<Item = (String, String)> + '_ {
        attrs
            .iter()
            .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some((kv.key.clone(), s.clone())),
                _ => None,
            })
    }

    /// The hub's own parser reads what the agent writes.
    #[test]
    fn the_hub_parses_an_observation() {
        let o = Observation {
            container: "c1".into(),
            name: "web".into(),
            placement: Placement {
                workspace: None,
                application: "shop".into(),
                workload: "web".into(),
                environment: "dev".into(),
                target: "eu".into(),
            },
            revision: "sha256:aaa".into(),
            release: Some("1.2.0".into()),
            status: DeploymentStatus::Failed,
            message: Some("exited with code 3".into()),
            job: Some("job-1".into()),
        };
        let identity = Identity {
            host: "h1".into(),
            environment: "dev".into(),
            labels: vec![("rack".into(), "r7".into())],
        };
        let logs = resource_logs(&resource(&identity), record(&o, UnixNanos(42)));
        let resource = logs.resource.as_ref().expect("resource");
        let record = &logs.scope_logs[0].log_records[0];
        assert_eq!(record.event_name, keys::EVENT_OBSERVED);
        let mut merged: HashMap<String, String> = strings(&resource.attributes).collect();
        merged.extend(strings(&record.attributes));
        assert_eq!(
            merged.get("sextant.agent.label.rack").map(String::as_str),
            Some("r7")
        );
        let parsed = ObservedDeployment::from_attributes(&Merged(merged), None, UnixNanos(42))
            .expect("valid");
        assert_eq!(parsed.host, "h1");
        assert_eq!(parsed.revision, "sha256:aaa");
        assert_eq!(parsed.status, DeploymentStatus::Failed);
        assert_eq!(parsed.message.as_deref(), Some("exited with code 3"));
        assert_eq!(parsed.reconciler.name, RECONCILER_NAME);
        assert_eq!(parsed.reconciler.kind, "agent");
        assert_eq!(parsed.placement.target, "eu");
        assert_eq!(parsed.job.as_deref(), Some("job-1"));
    }
}
