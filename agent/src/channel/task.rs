//! What a stream delivers: a task is run at most once per run key (a
//! delivery while it runs starts nothing; a finished one answers with its
//! result), its updates and result go to whichever stream is open, and the
//! executor's record becomes the deploy contract's outcome in one place,
//! [`outcome_of`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sextant_protocol::deploy::{self, ComposeLock, DeploySpec, ErrorKind, RegistryAuth};
use sextant_protocol::v1::{
    self as pb, AgentMessage, LogLine, TaskResult, TaskUpdate, agent_message, task::Payload,
};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::Runner;
use crate::executor::{self, Executor, RecordState, TaskEvent, TaskStatus};

/// The tasks this agent runs now, counted so that its shutdown can let
/// them finish before it stops. Cheap to clone; clones share the count.
#[derive(Debug, Clone)]
pub struct InFlight(Arc<tokio::sync::watch::Sender<usize>>);

impl Default for InFlight {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::channel(0).0))
    }
}

impl InFlight {
    /// How many tasks run now.
    pub fn count(&self) -> usize {
        *self.0.borrow()
    }

    /// Resolves once no task runs.
    pub async fn finished(&self) {
        let mut count = self.0.subscribe();
        // The sender lives in `self`: the wait cannot fail.
        let _ = count.wait_for(|n| *n == 0).await;
    }

    /// Counts one more task until the guard is dropped (the task ended,
    /// or panicked).
    fn start(&self) -> InFlightGuard {
        self.0.send_modify(|n| *n += 1);
        InFlightGuard(self.clone())
    }
}

struct InFlightGuard(InFlight);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// What the agent's tasks share with its streams.
pub(super) struct Shared {
    pub(super) runner: Runner,
    pub(super) data_dir: PathBuf,
    /// Run keys being run now.
    pub(super) running: Mutex<HashSet<String>>,
    /// Results not yet acknowledged, by run key.
    pub(super) unacked: Mutex<BTreeMap<String, TaskResult>>,
    /// Dry-run outcomes (the Docker runner has its journal).
    pub(super) dry_done: Mutex<HashMap<String, deploy::TaskOutcome>>,
    /// Updates and results for whichever stream is open.
    pub(super) out: mpsc::UnboundedSender<AgentMessage>,
    pub(super) in_flight: InFlight,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
/// Takes a delivered task: runs it unless it runs already or has a result.
pub(super) fn accept(shared: &Arc<Shared>, task: pb::Task) {
    let run_key = task.run_key.clone();
    if lock(&shared.running).contains(&run_key) {
        tracing::info!(%run_key, "Task delivered again while it runs; not starting it twice");
        return;
    }
    let kept = lock(&shared.unacked).get(&run_key).cloned();
    if let Some(result) = kept {
        let _ = shared.out.send(AgentMessage {
            body: Some(agent_message::Body::Result(result)),
        });
        return;
    }
    lock(&shared.running).insert(run_key.clone());
    let shared = shared.clone();
    let counted = shared.in_flight.start();
    tokio::spawn(async move {
        let _counted = counted;
        let result = execute(&shared, task).await.into_result(run_key.clone());
        lock(&shared.unacked).insert(run_key.clone(), result.clone());
        lock(&shared.running).remove(&run_key);
        let _ = shared.out.send(AgentMessage {
            body: Some(agent_message::Body::Result(result)),
        });
    });
}

fn update(shared: &Shared, run_key: &str, status: &str, logs: Vec<LogLine>) {
    let _ = shared.out.send(AgentMessage {
        body: Some(agent_message::Body::Update(TaskUpdate {
            run_key: run_key.to_owned(),
            status: status.to_owned(),
            logs,
        })),
    });
}

fn system(line: String) -> LogLine {
    LogLine {
        stream: "system".into(),
        line,
    }
}

/// Runs a task; its outcome is what the agent sends as the `TaskResult`.
async fn execute(shared: &Arc<Shared>, task: pb::Task) -> deploy::TaskOutcome {
    let run_key = task.run_key.clone();
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    if task.deadline_unix_ms > 0 && now_ms as i64 > task.deadline_unix_ms {
        return deploy::TaskOutcome::failed(
            ErrorKind::Timeout,
            false,
            format!("task {run_key} arrived after its deadline; not started"),
        );
    }
    // A child of the orchestrator's task.dispatch (or health.check) span.
    let span = tracing::info_span!("agent.execute", run_key = %run_key, kind = %task.kind);
    sextant_exporters::telemetry::set_parent(&span, &task.traceparent);
    async move {
        tracing::info!(run_key = %run_key, kind = %task.kind, "Task started");
        let outcome = run_task(shared, task).await;
        if outcome.success {
            tracing::info!(run_key = %run_key,
                digest = %outcome.deployed_digest.as_deref().unwrap_or_default(), "Task succeeded");
        } else {
            tracing::warn!(run_key = %run_key,
                error_type = %outcome.error_type.map_or("", ErrorKind::as_str),
                error = %outcome.error.as_deref().unwrap_or_default(), "Task failed");
        }
        outcome
    }
    .instrument(span)
    .await
}

async fn run_task(shared: &Arc<Shared>, task: pb::Task) -> deploy::TaskOutcome {
    let run_key = task.run_key.clone();
    update(shared, &run_key, "running", vec![]);
    if let Err(e) = write_artifacts(&shared.data_dir, &run_key, &task.artifacts) {
        return invalid(&e);
    }
    let auth = task.registry_auth.as_ref().map(|a| RegistryAuth {
        username: a.username.clone(),
        password: a.password.clone(),
        server_address: (!a.server_address.is_empty()).then(|| a.server_address.clone()),
    });
    let Some(payload) = task.payload else {
        return invalid(&PayloadError::Missing);
    };
    match (&shared.runner, payload) {
        (
            Runner::DryRun {
                delay,
                executed,
                fail_image,
            },
            payload,
        ) => {
            dry_run(
                shared,
                run_key,
                *delay,
                executed,
                fail_image.as_deref(),
                &payload,
            )
            .await
        }
        (Runner::Docker(executor), Payload::Check(check)) => {
            // The orchestrator sends one shell string, as a `command:` probe.
            let argv = deploy::ProbeCommand::Shell(check.command.clone()).argv();
            let timeout = Duration::from_millis(u64::from(check.timeout_ms.max(100)));
            match executor.run_check(&check.container, &argv, timeout).await {
                Ok(()) => deploy::TaskOutcome::succeeded(),
                Err(e) => deploy::TaskOutcome::failed(ErrorKind::Health, false, e.to_string()),
            }
        }
        (Runner::Docker(executor), payload) => {
            run_docker(shared, executor, &run_key, payload, auth).await
        }
    }
}

/// A task that could not be run as it came.
fn invalid(why: &dyn std::fmt::Display) -> deploy::TaskOutcome {
    deploy::TaskOutcome::failed(ErrorKind::Invalid, false, why.to_string())
}

/// Dry-run: succeeds after `delay` (once per run key; again, it answers
/// with the outcome it gave), deploying the spec's digest if it has one;
/// fails a deploy of an image that contains `fail_image`.
async fn dry_run(
    shared: &Shared,
    run_key: String,
    delay: Duration,
    executed: &AtomicU64,
    fail_image: Option<&str>,
    payload: &Payload,
) -> deploy::TaskOutcome {
    let done = lock(&shared.dry_done).get(&run_key).cloned();
    if let Some(mut outcome) = done {
        outcome.resumed = true;
        return outcome;
    }
    executed.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(delay).await;
    let outcome = dry_run_outcome(payload, fail_image);
    lock(&shared.dry_done).insert(run_key, outcome.clone());
    outcome
}

/// What a dry run of `payload` answers ([`Runner::DryRun`]).
fn dry_run_outcome(payload: &Payload, fail_image: Option<&str>) -> deploy::TaskOutcome {
    let image = match payload {
        Payload::DeployJson(json) => serde_json::from_str::<DeploySpec>(json)
            .ok()
            .map(|s| s.image),
        _ => None,
    };
    if let (Some(image), Some(fail)) = (&image, fail_image)
        && image.contains(fail)
    {
        return deploy::TaskOutcome::failed(
            ErrorKind::Health,
            false,
            format!("dry run: {image} never became healthy (it matches the dry run's fail_image)"),
        );
    }
    deploy::TaskOutcome {
        deployed_digest: image.and_then(|i| i.rsplit_once('@').map(|(_, d)| d.to_owned())),
        ..deploy::TaskOutcome::succeeded()
    }
}

/// Why a payload is not a task the Docker executor can run.
#[derive(Debug, thiserror::Error)]
enum PayloadError {
    #[error("the task has no payload")]
    Missing,
    #[error("bad deploy spec: {0}")]
    Spec(#[source] serde_json::Error),
    #[error("the spec's task id is not its run key")]
    SpecKey,
    #[error("bad compose-lock: {0}")]
    Lock(#[source] serde_json::Error),
    #[error("the compose-lock's task id is not its run key")]
    LockKey,
    #[error("misrouted check task")]
    Check,
}

/// What the Docker executor is given.
enum DockerTask {
    Deploy(Box<DeploySpec>),
    Compose(Box<ComposeLock>),
}

impl DockerTask {
    /// The spec or compose-lock of `payload`, which must be `run_key`'s,
    /// with the task's registry credentials.
    fn parse(
        payload: Payload,
        run_key: &str,
        auth: Option<RegistryAuth>,
    ) -> Result<Self, PayloadError> {
        match payload {
            Payload::DeployJson(json) => {
                let mut spec: DeploySpec =
                    serde_json::from_str(&json).map_err(PayloadError::Spec)?;
                if spec.task_id != run_key {
                    return Err(PayloadError::SpecKey);
                }
                spec.registry_auth = auth;
                Ok(Self::Deploy(Box::new(spec)))
            }
            Payload::ComposeJson(json) => {
                let mut lock: ComposeLock =
                    serde_json::from_str(&json).map_err(PayloadError::Lock)?;
                if lock.task_id != run_key {
                    return Err(PayloadError::LockKey);
                }
                lock.registry_auth = auth;
                Ok(Self::Compose(Box::new(lock)))
            }
            Payload::Check(_) => Err(PayloadError::Check),
        }
    }
}

/// Deploys a spec or a compose-lock through the executor, passing its
/// events on as updates.
async fn run_docker(
    shared: &Arc<Shared>,
    executor: &Executor,
    run_key: &str,
    payload: Payload,
    auth: Option<RegistryAuth>,
) -> deploy::TaskOutcome {
    let interrupted = matches!(
        executor.journal().read(run_key),
        Ok(Some(r)) if r.state == RecordState::Running
    );
    let (events, rx) = mpsc::unbounded_channel::<TaskEvent>();
    let forward = tokio::spawn(forward_events(shared.clone(), run_key.to_owned(), rx));
    let outcome = match DockerTask::parse(payload, run_key, auth) {
        Ok(DockerTask::Deploy(spec)) => executor.deploy(&spec, events).await,
        Ok(DockerTask::Compose(lock)) => executor.apply_compose(&lock, events).await,
        Err(why) => {
            drop(events);
            let _ = forward.await;
            return invalid(&why);
        }
    };
    let _ = forward.await;
    match outcome {
        Ok(record) => outcome_of(record, interrupted),
        Err(e) => invalid(&e),
    }
}

/// Sends the executor's status and log events as updates of `run_key`,
/// until the executor drops its sender.
async fn forward_events(
    shared: Arc<Shared>,
    run_key: String,
    mut rx: mpsc::UnboundedReceiver<TaskEvent>,
) {
    while let Some(event) = rx.recv().await {
        match event {
            TaskEvent::Status {
                container,
                phase,
                message,
                ..
            } => update(
                &shared,
                &run_key,
                &phase.to_string(),
                vec![system(format!("{container}: {message}"))],
            ),
            TaskEvent::Log {
                container, line, ..
            } => update(
                &shared,
                &run_key,
                "",
                vec![LogLine {
                    stream: "stdout".into(),
                    line: format!("{container}: {line}"),
                }],
            ),
            TaskEvent::Finished { .. } => {}
        }
    }
}
/// The deploy contract's outcome of what the Docker executor recorded: the
/// one place the agent's record becomes what it reports. `interrupted`:
/// the journal found the run key running when the task started.
fn outcome_of(record: executor::TaskOutcome, interrupted: bool) -> deploy::TaskOutcome {
    let json = serde_json::to_string(&record).ok();
    let mut outcome = if record.status == TaskStatus::Succeeded {
        deploy::TaskOutcome::succeeded()
    } else {
        let (kind, retryable) = match record.status {
            TaskStatus::RolledBack => (ErrorKind::Health, false),
            // The agent stopped while it ran: nothing runs it again under
            // this key; a new attempt (a new key) may.
            _ if interrupted => (ErrorKind::Connection, true),
            _ => (ErrorKind::Command, false),
        };
        deploy::TaskOutcome::failed(kind, retryable, record.message)
    };
    outcome.deployed_digest = record.deployed_digest;
    outcome.logs = record.logs;
    outcome.resumed = record.replayed;
    outcome.record = json;
    outcome
}

/// Why a task's artifacts could not be written.
#[derive(Debug, thiserror::Error)]
enum ArtifactError {
    #[error("cannot create {}: {source}", .dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid artifact name {name:?}")]
    InvalidName { name: String },
    #[error("artifact {name} does not match its sha256 ({actual} ≠ {expected})")]
    Checksum {
        name: String,
        actual: String,
        expected: String,
    },
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes the task's artifacts to `DATA_DIR/artifacts/RUN_KEY/`, checking
/// each sha256.
fn write_artifacts(
    data_dir: &Path,
    run_key: &str,
    artifacts: &[pb::Artifact],
) -> Result<(), ArtifactError> {
    use sha2::Digest as _;
    if artifacts.is_empty() {
        return Ok(());
    }
    let dir = data_dir.join("artifacts").join(run_key);
    if let Err(source) = std::fs::create_dir_all(&dir) {
        return Err(ArtifactError::CreateDir { dir, source });
    }
    for a in artifacts {
        if a.name.is_empty() || a.name.contains('/') || a.name.starts_with('.') {
            return Err(ArtifactError::InvalidName {
                name: a.name.clone(),
            });
        }
        let sum = hex::encode(sha2::Sha256::digest(&a.content));
        if sum != a.sha256 {
            return Err(ArtifactError::Checksum {
                name: a.name.clone(),
                actual: sum,
                expected: a.sha256.clone(),
            });
        }
        let path = dir.join(&a.name);
        if let Err(source) = std::fs::write(&path, &a.content) {
            return Err(ArtifactError::Write { path, source });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dry run deploys what it is given, except an image that matches
    /// its `fail_image`: that fails its health, for good.
    #[test]
    fn a_dry_run_fails_the_images_it_is_told_to() {
        let spec = |image: &str| {
            serde_json::json!({"task_id": "t-1", "name": "web", "image": image,
                "application": "shop", "workload": "web", "target": "dev"})
        };
        let good = "registry.demo/web@sha256:1111";
        let bad = "registry.demo/web@sha256:2222";
        let payload = |image: &str| Payload::DeployJson(spec(image).to_string());
        // The spec must parse for the test to mean anything.
        if let Err(e) = serde_json::from_value::<DeploySpec>(spec(good)) {
            panic!("{e}");
        }
        let ok = dry_run_outcome(&payload(good), Some("sha256:2222"));
        assert!(ok.success, "{ok:?}");
        assert_eq!(ok.deployed_digest.as_deref(), Some("sha256:1111"));
        let failed = dry_run_outcome(&payload(bad), Some("sha256:2222"));
        assert!(!failed.success, "{failed:?}");
        assert_eq!(failed.error_type, Some(ErrorKind::Health), "{failed:?}");
        assert!(!failed.retryable, "{failed:?}");
        assert!(
            failed.error.as_deref().is_some_and(|e| e.contains(bad)),
            "{failed:?}"
        );
        // Without a pattern, everything succeeds.
        assert!(dry_run_outcome(&payload(bad), None).success);
    }

    fn record(status: TaskStatus) -> executor::TaskOutcome {
        executor::TaskOutcome {
            task_id: "t-1.1".into(),
            status,
            deployed_digest: (status == TaskStatus::Succeeded).then(|| "sha256:1".into()),
            container_id: Some("c1".into()),
            previous: None,
            message: "what happened".into(),
            logs: vec!["last".into()],
            services: Vec::new(),
            started_at: 1,
            finished_at: 2,
            replayed: false,
        }
    }

    /// The `TaskResult` fields the agent sent before it reported a
    /// [`deploy::TaskOutcome`].
    #[test]
    fn an_executor_record_becomes_the_result_it_was() {
        let success = outcome_of(
            executor::TaskOutcome {
                replayed: true,
                ..record(TaskStatus::Succeeded)
            },
            false,
        )
        .into_result("t-1.1");
        assert!(success.success && success.replayed);
        assert_eq!(success.deployed_digest, "sha256:1");
        assert_eq!(
            (success.error.as_str(), success.error_type.as_str()),
            ("", "")
        );
        assert_eq!(success.logs, ["last"]);
        let record_json: serde_json::Value = serde_json::from_str(&success.outcome_json).unwrap();
        assert_eq!(record_json["container_id"], "c1");

        for (status, interrupted, kind, retryable) in [
            (TaskStatus::RolledBack, false, "health", false),
            (TaskStatus::RolledBack, true, "health", false),
            (TaskStatus::Failed, true, "connection", true),
            (TaskStatus::Failed, false, "command", false),
        ] {
            let failed = outcome_of(record(status), interrupted).into_result("t-1.1");
            assert!(!failed.success);
            assert_eq!(failed.error, "what happened");
            assert_eq!(
                failed.error_type, kind,
                "{status} interrupted={interrupted}"
            );
            assert_eq!(failed.retryable, retryable);
            assert_eq!(failed.deployed_digest, "");
            assert!(!failed.outcome_json.is_empty());
        }
    }
}
