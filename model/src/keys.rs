//! Attribute keys and event names of the deployment-state conventions
//! (`docs/otlp-conventions.md`). Semantic-convention names are used where they
//! exist; project keys live under `sextant.`.

/// Event name of a desired-state assignment.
pub const EVENT_DESIRED: &str = "sextant.deployment.desired";
/// Event name (and gauge metric name) of an observed deployment.
pub const EVENT_OBSERVED: &str = "sextant.deployment.observed";
/// Deprecated semconv attribute that older SDKs use for the event name.
pub const EVENT_NAME: &str = "event.name";

pub const WORKSPACE: &str = "sextant.workspace";
pub const APPLICATION: &str = "sextant.application";
pub const WORKLOAD: &str = "sextant.workload";
pub const TARGET: &str = "sextant.target";
pub const REVISION: &str = "sextant.revision";
pub const BUILD_ID: &str = "sextant.build.id";
pub const RECONCILER_NAME: &str = "sextant.reconciler.name";
pub const RECONCILER_TYPE: &str = "sextant.reconciler.type";
pub const STATUS_MESSAGE: &str = "sextant.status.message";
/// The orchestrator job that made an observed deployment (the hub links
/// the host to it).
pub const JOB_ID: &str = "sextant.job.id";
/// The orchestrator promotion that set a desired assignment.
pub const PROMOTION_ID: &str = "sextant.promotion.id";
/// Who approved a desired assignment (comma-separated when several did).
pub const APPROVER: &str = "sextant.approver";

/// Semconv `deployment.environment.name` (stable).
pub const ENVIRONMENT: &str = "deployment.environment.name";
/// Semconv `deployment.status` (development; `in_progress` is a custom value).
pub const STATUS: &str = "deployment.status";
/// Semconv `service.name` (stable): the reporting service, on the resource.
pub const SERVICE_NAME: &str = "service.name";
/// Semconv `service.version` (stable).
pub const VERSION: &str = "service.version";
/// Semconv `vcs.ref.head.revision`: the build commit.
pub const BUILD_COMMIT: &str = "vcs.ref.head.revision";
/// When the build commit was made (RFC 3339), on a desired or an observed
/// event: where DORA's change lead time starts (`docs/insights.md`).
pub const COMMIT_TIME: &str = "sextant.commit.time";
/// Semconv `vcs.repository.url.full`.
pub const REPOSITORY_URL: &str = "vcs.repository.url.full";
/// Semconv `host.name`.
pub const HOST_NAME: &str = "host.name";
/// Semconv `k8s.cluster.name`, the host identity when `host.name` is absent.
pub const K8S_CLUSTER_NAME: &str = "k8s.cluster.name";

/// Workspace used when an event names none.
pub const DEFAULT_WORKSPACE: &str = "default";
