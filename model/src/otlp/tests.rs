//! What the encoder writes, the hub reads: events encoded to protobuf
//! bytes, decoded, and read record over resource through [`Merged`] into
//! the same events.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::event::{
    DeploymentEvent, DeploymentStatus, DesiredDeployment, EventError, ObservedDeployment,
    Placement, Reconciler,
};

/// Reads every deployment event of `request` as the hub's extractor does.
fn read(request: &ExportLogsServiceRequest) -> Vec<Result<DeploymentEvent, EventError>> {
    let mut events = Vec::new();
    for logs in &request.resource_logs {
        let resource = logs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        for record in logs.scope_logs.iter().flat_map(|s| &s.log_records) {
            let attrs = Merged {
                record: &record.attributes,
                resource,
            };
            let at = UnixNanos::from_otlp(record.time_unix_nano).expect("a time");
            events.push(match EventKind::from_event_name(&record.event_name) {
                Some(EventKind::Desired) => {
                    DesiredDeployment::from_attributes(&attrs, at).map(DeploymentEvent::Desired)
                }
                Some(EventKind::Observed) => {
                    let body = string_value(record.body.as_ref());
                    ObservedDeployment::from_attributes(&attrs, body, at)
                        .map(DeploymentEvent::Observed)
                }
                None => panic!("not a deployment event: {:?}", record.event_name),
            });
        }
    }
    events
}

/// `batches` as bytes on the wire and back.
fn over_the_wire(batches: Vec<ResourceLogs>) -> ExportLogsServiceRequest {
    let bytes = ExportLogsServiceRequest {
        resource_logs: batches,
    }
    .encode_to_vec();
    ExportLogsServiceRequest::decode(bytes.as_slice()).expect("decodes")
}

fn placed(record: EventRecord, p: &Placement, workspace_given: bool) -> EventRecord {
    record
        .with_some(
            keys::WORKSPACE,
            workspace_given.then(|| p.workspace.clone()),
        )
        .with(keys::APPLICATION, &p.application)
        .with(keys::WORKLOAD, &p.workload)
        .with(keys::ENVIRONMENT, &p.environment)
        .with(keys::TARGET, &p.target)
}

fn desired_record(d: &DesiredDeployment, workspace_given: bool) -> LogRecord {
    placed(
        EventRecord::new(EventKind::Desired, d.at),
        &d.placement,
        workspace_given,
    )
    .with(keys::VERSION, &d.version)
    .with(keys::REVISION, &d.revision)
    .with_some(keys::BUILD_COMMIT, d.build_commit.as_deref())
    .with_some(keys::BUILD_ID, d.build_id.as_deref())
    .with_some(keys::REPOSITORY_URL, d.repository_url.as_deref())
    .into()
}

/// The observation's record; its host and reconciler go on the resource.
fn observed_record(o: &ObservedDeployment, workspace_given: bool) -> LogRecord {
    placed(
        EventRecord::new(EventKind::Observed, o.observed_at).observed_at(UnixNanos(1)),
        &o.placement,
        workspace_given,
    )
    .with(keys::REVISION, &o.revision)
    .with(keys::STATUS, o.status.as_str())
    .with_some(keys::STATUS_MESSAGE, o.message.as_deref())
    .with_some(keys::JOB_ID, o.job.as_deref())
    .into()
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._:-]{0,20}"
}

fn placement() -> impl Strategy<Value = (Placement, bool)> {
    (proptest::option::of(name()), name(), name(), name(), name()).prop_map(
        |(workspace, application, workload, environment, target)| {
            let given = workspace.is_some();
            let workspace = workspace.unwrap_or_else(|| keys::DEFAULT_WORKSPACE.to_owned());
            let p = Placement {
                workspace,
                application,
                workload,
                environment,
                target,
            };
            (p, given)
        },
    )
}

fn at() -> impl Strategy<Value = UnixNanos> {
    (1..i64::MAX).prop_map(UnixNanos)
}

fn desired() -> impl Strategy<Value = (DesiredDeployment, bool)> {
    (
        placement(),
        name(),
        name(),
        proptest::option::of(name()),
        proptest::option::of(name()),
        proptest::option::of(name()),
        at(),
    )
        .prop_map(
            |((placement, given), version, revision, commit, build, repository, at)| {
                let d = DesiredDeployment {
                    placement,
                    version,
                    revision,
                    build_commit: commit,
                    build_id: build,
                    repository_url: repository,
                    origin: Default::default(),
                    commit_time: None,
                    at,
                };
                (d, given)
            },
        )
}

fn observed() -> impl Strategy<Value = (ObservedDeployment, bool)> {
    let status = proptest::sample::select(vec![
        DeploymentStatus::Succeeded,
        DeploymentStatus::Failed,
        DeploymentStatus::InProgress,
    ]);
    (
        placement(),
        name(),
        (name(), proptest::option::of(name())),
        name(),
        status,
        proptest::option::of("\\PC{0,40}"),
        proptest::option::of(name()),
        at(),
    )
        .prop_map(
            |((placement, given), host, (reconciler, kind), revision, status, message, job, at)| {
                let o = ObservedDeployment {
                    placement,
                    host,
                    reconciler: Reconciler {
                        name: reconciler,
                        kind: kind.unwrap_or_default(),
                    },
                    revision,
                    status,
                    // An empty message is left out: none arrives.
                    message: message.filter(|m| !m.is_empty()),
                    job,
                    commit_time: None,
                    observed_at: at,
                };
                (o, given)
            },
        )
}

proptest! {
    /// Desired events from a service (whose own `service.version` is on
    /// the resource) and observations from reporters that name themselves
    /// on the resource read back as they were sent.
    #[test]
    fn events_read_back_as_sent(
        desired in proptest::collection::vec(desired(), 0..4),
        observed in proptest::collection::vec(observed(), 0..4),
    ) {
        let orchestrator = Reporter::service("sextant-orchestrator", "9.9.9");
        let mut batches = vec![orchestrator.logs(
            desired.iter().map(|(d, given)| desired_record(d, *given)).collect(),
        )];
        for (o, given) in &observed {
            let reporter = Reporter::service("sextant-agent", "9.9.9")
                .with(keys::HOST_NAME, &o.host)
                .with(keys::RECONCILER_NAME, &o.reconciler.name)
                .with(keys::RECONCILER_TYPE, &o.reconciler.kind);
            batches.push(reporter.logs(vec![observed_record(o, *given)]));
        }
        let expected: Vec<DeploymentEvent> = desired
            .into_iter()
            .map(|(d, _)| DeploymentEvent::Desired(d))
            .chain(observed.into_iter().map(|(o, _)| DeploymentEvent::Observed(o)))
            .collect();
        let read: Result<Vec<DeploymentEvent>, EventError> =
            read(&over_the_wire(batches)).into_iter().collect();
        prop_assert_eq!(read, Ok(expected));
    }
}

#[test]
fn a_relayed_desired_event_names_its_own_version() {
    let p = Placement {
        workspace: keys::DEFAULT_WORKSPACE.into(),
        application: "shop".into(),
        workload: "checkout".into(),
        environment: "stage".into(),
        target: "eu".into(),
    };
    let record = || -> LogRecord {
        placed(
            EventRecord::new(EventKind::Desired, UnixNanos(5)),
            &p,
            false,
        )
        .with(keys::VERSION, "")
        .with(keys::REVISION, "sha256:aa")
        .into()
    };
    let relayed = over_the_wire(vec![
        Reporter::relay("sextant-cli", "0.3.0").logs(vec![record()]),
    ]);
    assert_eq!(
        read(&relayed),
        [Err(EventError::Missing {
            event: keys::EVENT_DESIRED,
            key: keys::VERSION
        })]
    );
    // What `relay` prevents: the sender's version read as the workload's.
    let own = over_the_wire(vec![
        Reporter::service("sextant-cli", "0.3.0").logs(vec![record()]),
    ]);
    match read(&own).as_slice() {
        [Ok(DeploymentEvent::Desired(d))] => assert_eq!(d.version, "0.3.0"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_reporter_is_on_the_resource_and_the_scope() {
    let reporter = Reporter::service("sextant-agent", "1.2.3")
        .with(keys::HOST_NAME, "h1")
        .with(keys::K8S_CLUSTER_NAME, "")
        .with("sextant.agent.label.rack", "r7");
    let logs = reporter.logs(vec![
        EventRecord::new(EventKind::Observed, UnixNanos(-3))
            .with(keys::STATUS_MESSAGE, "")
            .with(keys::TARGET, "eu")
            .into(),
    ]);
    let keys_of = |attrs: &[KeyValue]| attrs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();
    let resource = logs.resource.expect("a resource");
    assert_eq!(
        keys_of(&resource.attributes),
        [
            "service.name",
            "service.version",
            "host.name",
            "sextant.agent.label.rack"
        ]
    );
    let relayed = Reporter::relay("sextant-cli", "1.2.3").with(keys::HOST_NAME, "h1");
    assert_eq!(
        relayed.attributes().collect::<Vec<_>>(),
        [("service.name", "sextant-cli"), ("host.name", "h1")]
    );
    let [scope_logs] = logs.scope_logs.as_slice() else {
        panic!("one scope");
    };
    let scope = scope_logs.scope.as_ref().expect("a scope");
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("sextant-agent", "1.2.3")
    );
    let [record] = scope_logs.log_records.as_slice() else {
        panic!("one record");
    };
    assert_eq!(record.event_name, keys::EVENT_OBSERVED);
    assert_eq!(
        (record.time_unix_nano, record.observed_time_unix_nano),
        (0, 0)
    );
    assert_eq!(keys_of(&record.attributes), ["sextant.target"]);
}
