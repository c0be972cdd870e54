//! Observations as OTLP log records, following `docs/otlp-conventions.md`:
//! the agent's identity on the resource, the placement, revision and status
//! on the record, event name `sextant.deployment.observed`.

use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use sextant_model::otlp::{EventRecord, Reporter};
use sextant_model::{EventKind, UnixNanos, keys};

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

/// The agent as a reporter: the service, the host, the reconciler and the
/// agent's labels.
fn reporter(identity: &Identity) -> Reporter {
    let reporter = Reporter::service(RECONCILER_NAME, env!("CARGO_PKG_VERSION"))
        .with(keys::HOST_NAME, &identity.host)
        .with(keys::RECONCILER_NAME, RECONCILER_NAME)
        .with(keys::RECONCILER_TYPE, RECONCILER_TYPE);
    identity.labels.iter().fold(reporter, |r, (k, v)| {
        r.with(format!("{LABEL_PREFIX}{k}"), v)
    })
}

/// The resource every record of this agent carries.
pub fn resource(identity: &Identity) -> Resource {
    reporter(identity).resource()
}

/// One observation as a log record at time `at`.
pub fn record(observation: &Observation, at: UnixNanos) -> LogRecord {
    let p = &observation.placement;
    EventRecord::new(EventKind::Observed, at)
        .with(keys::APPLICATION, &p.application)
        .with(keys::WORKLOAD, &p.workload)
        .with(keys::ENVIRONMENT, &p.environment)
        .with(keys::TARGET, &p.target)
        .with(keys::REVISION, &observation.revision)
        .with(keys::STATUS, observation.status.as_str())
        .with("container.id", &observation.container)
        .with("container.name", &observation.name)
        .with_some(keys::WORKSPACE, p.workspace.as_deref())
        .with_some(keys::STATUS_MESSAGE, observation.message.as_deref())
        .with_some(keys::VERSION, observation.release.as_deref())
        .with_some(keys::JOB_ID, observation.job.as_deref())
        .into()
}

/// A whole `ResourceLogs` of one record: what one outbox record holds.
pub fn resource_logs(resource: &Resource, record: LogRecord) -> ResourceLogs {
    let scope = Reporter::service(RECONCILER_NAME, env!("CARGO_PKG_VERSION")).scope();
    sextant_model::otlp::resource_logs(resource.clone(), scope, vec![record])
}

#[cfg(test)]
mod tests {
    use sextant_model::otlp::{Merged, string_value};
    use sextant_model::{DeploymentStatus, ObservedDeployment};

    use super::super::status::Placement;
    use super::*;

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
        let merged = Merged {
            record: &record.attributes,
            resource: &resource.attributes,
        };
        assert_eq!(
            string_value(merged.get("sextant.agent.label.rack")),
            Some("r7")
        );
        let parsed =
            ObservedDeployment::from_attributes(&merged, None, UnixNanos(42)).expect("valid");
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
