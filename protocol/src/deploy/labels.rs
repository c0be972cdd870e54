//! Label names on the containers an agent manages. The agent's executor
//! writes them; its observer reads them back to tell what runs on the host;
//! the orchestrator sets [`JOB`] through a spec's own labels.

/// The application (required).
pub const APPLICATION: &str = "sextant.application";
/// The workload (required).
pub const WORKLOAD: &str = "sextant.workload";
/// The deployment target (required).
pub const TARGET: &str = "sextant.target";
/// The environment (optional).
pub const ENVIRONMENT: &str = "sextant.environment";
/// The release, a version people read (optional).
pub const RELEASE: &str = "sextant.release";
/// What the observer reports as the revision: the image digest `sha256:…`
/// unless the spec names another.
pub const REVISION: &str = "sextant.revision";
/// The id of the task that created the container; it leads to the task's
/// journal record (and so to its health check, for rollback).
pub const TASK: &str = "sextant.task";
/// The orchestrator job that deployed the container (set by the
/// orchestrator through the spec's labels; reported as `sextant.job.id`).
pub const JOB: &str = "sextant.job";
/// The compose-lock project a container belongs to.
pub const COMPOSE_PROJECT: &str = "sextant.compose.project";
/// The compose-lock service a container runs.
pub const COMPOSE_SERVICE: &str = "sextant.compose.service";

/// Every label the executor owns; a spec's own `labels` may not set these.
pub const RESERVED: [&str; 9] = [
    APPLICATION,
    WORKLOAD,
    TARGET,
    ENVIRONMENT,
    RELEASE,
    REVISION,
    TASK,
    COMPOSE_PROJECT,
    COMPOSE_SERVICE,
];
