//! One task's state machine: queued, dispatched through its executor,
//! running, verified by its health check, finished or retried. Log lines
//! and status events are stored as they arrive.

use std::time::Duration;

use sextant_exporters::telemetry;
use sextant_protocol::deploy::{ErrorKind, TaskOutcome};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::domain::health::with_slot;
use crate::domain::task::LogStream;
use crate::domain::{TargetSpec, TaskState};
use crate::executor::{TaskContext, TaskEvent, TaskRequest};
use crate::jobs::health_check::HealthCheckFailed;
use crate::service::{Orchestrator, OrchestratorError, Result};
use crate::store::{Job, Task, TaskMove, TaskResultRow};

use super::traceparent;

impl Orchestrator {
    /// Drives one task to a terminal state.
    pub(super) async fn run_task(
        &self,
        job: &Job,
        task: Task,
        target: Option<TargetSpec>,
    ) -> Result<()> {
        let Some(target) = target else {
            let why = format!("target {} no longer exists", task.target);
            self.fail_task(&task, &why, ErrorKind::Invalid).await?;
            return Ok(());
        };
        let executor = match self.executor_for(&target) {
            Ok(e) => e,
            Err(why) => {
                self.fail_task(&task, &why.to_string(), ErrorKind::Invalid)
                    .await?;
                return Ok(());
            }
        };
        let mut task = task;
        loop {
            let moved = match task.state {
                TaskState::Pending | TaskState::Retrying => {
                    self.step(&task, self.task_move(&task, TaskState::Queued))
                        .await?
                }
                TaskState::Queued => {
                    if task.attempts == 0 {
                        self.announce(job, &task, &target).await?;
                    }
                    let change = self.task_move(&task, TaskState::Dispatched).new_attempt();
                    self.step(&task, change).await?
                }
                TaskState::Dispatched | TaskState::Running => {
                    let outcome = self.execute(job, &task, &target, executor.as_ref()).await?;
                    task = self.reload_task(&task.id).await?;
                    if task.state == TaskState::Dispatched {
                        task = match self
                            .step(&task, self.task_move(&task, TaskState::Running))
                            .await?
                        {
                            Some(moved) => moved,
                            None => self.reload_task(&task.id).await?,
                        };
                    }
                    if outcome.success {
                        self.step(&task, self.task_move(&task, TaskState::Verifying))
                            .await?
                    } else if outcome.retryable && task.attempts < task.max_attempts {
                        let why = outcome.error.clone().unwrap_or_default();
                        self.log(
                            &task,
                            LogStream::System,
                            format!("attempt {} failed, retrying: {why}", task.attempts),
                        )
                        .await?;
                        let change = self
                            .task_move(&task, TaskState::Retrying)
                            .with_result(row(&outcome));
                        self.step(&task, change).await?
                    } else {
                        self.finish_task(&task, TaskState::Failed, row(&outcome))
                            .await?
                    }
                }
                TaskState::Verifying => {
                    match self.verify(job, &task, &target, executor.as_ref()).await? {
                        Ok(()) => {
                            let passed = TaskResultRow {
                                exit_code: Some(0),
                                error: None,
                                error_type: None,
                            };
                            self.finish_task(&task, TaskState::Succeeded, passed)
                                .await?
                        }
                        Err(why) => {
                            self.fail_task(&task, &why.to_string(), ErrorKind::Health)
                                .await?
                        }
                    }
                }
                TaskState::Succeeded | TaskState::Failed | TaskState::Skipped => return Ok(()),
            };
            task = match moved {
                Some(moved) => moved,
                None => {
                    tracing::debug!(task = %task.id, "Task moved by someone else; reloading");
                    self.reload_task(&task.id).await?
                }
            };
        }
    }

    /// A move of `task` from its current state to `to`, under this
    /// replica's lease.
    pub(super) fn task_move(&self, task: &Task, to: TaskState) -> TaskMove<'_> {
        TaskMove::new(task.state, to, &self.settings.replica, self.settings.lease)
    }

    pub(super) async fn step(&self, task: &Task, change: TaskMove<'_>) -> Result<Option<Task>> {
        Ok(self.store.move_task(&task.id, change).await?)
    }

    pub(super) async fn reload_task(&self, id: &str) -> Result<Task> {
        self.store
            .task(id)
            .await?
            .ok_or_else(|| OrchestratorError::NotFound(format!("no task {id}")))
    }

    pub(super) async fn fail_task(
        &self,
        task: &Task,
        why: &str,
        kind: ErrorKind,
    ) -> Result<Option<Task>> {
        let result = TaskResultRow {
            exit_code: None,
            error: Some(why),
            error_type: Some(kind),
        };
        self.finish_task(task, TaskState::Failed, result).await
    }

    /// Moves a task to a terminal state with its result, and logs why it
    /// failed.
    pub(super) async fn finish_task(
        &self,
        task: &Task,
        to: TaskState,
        result: TaskResultRow<'_>,
    ) -> Result<Option<Task>> {
        let error = result.error;
        let moved = self
            .step(task, self.task_move(task, to).with_result(result))
            .await?;
        if moved.is_some() {
            tracing::info!(task = %task.id, target = %task.target, state = %to, error, "Task finished");
            if let Some(error) = error {
                self.log(task, LogStream::System, format!("{to}: {error}"))
                    .await?;
            }
        }
        Ok(moved)
    }

    pub(super) async fn log(&self, task: &Task, stream: LogStream, line: String) -> Result<()> {
        self.store
            .append_logs(&task.id, task.attempts, &[(stream, line)])
            .await?;
        Ok(())
    }

    /// Runs (or resumes) the task's current attempt through its executor,
    /// storing its log lines as they arrive.
    pub(super) async fn execute(
        &self,
        job: &Job,
        task: &Task,
        target: &TargetSpec,
        executor: &dyn crate::executor::Executor,
    ) -> Result<TaskOutcome> {
        let mut request = self.task_request(job, task, target).await?;
        let span = tracing::info_span!("task.dispatch", task = %task.id, target = %task.target,
            kind = task.kind.as_str(), attempt = request.attempt);
        // The agent's (or the SSH command's) span is a child of this one.
        if let Some(tp) = telemetry::traceparent_of(&span) {
            request.traceparent = Some(tp);
        }
        self.dispatch(task, target, executor, request)
            .instrument(span)
            .await
    }

    pub(super) async fn dispatch(
        &self,
        task: &Task,
        target: &TargetSpec,
        executor: &dyn crate::executor::Executor,
        request: TaskRequest,
    ) -> Result<TaskOutcome> {
        let (tx, rx) = mpsc::channel(256);
        let guard = request.timeout + Duration::from_secs(30);
        let run = async move {
            let outcome =
                tokio::time::timeout(guard, executor.execute(target, &request, &tx)).await;
            drop(tx);
            outcome.unwrap_or_else(|_| {
                TaskOutcome::failed(
                    ErrorKind::Timeout,
                    true,
                    "the executor did not answer in time",
                )
            })
        };
        let (outcome, drained) = tokio::join!(run, self.drain(task, rx));
        drained?;
        Ok(outcome)
    }

    /// The request an executor gets for the task's current attempt.
    pub(super) async fn task_request(
        &self,
        job: &Job,
        task: &Task,
        target: &TargetSpec,
    ) -> Result<TaskRequest> {
        let artifacts = self.store.artifacts(&job.id, &task.target).await?;
        let application = self
            .store
            .components(&job.tenant)
            .await?
            .into_iter()
            .find(|c| c.name == task.component)
            .and_then(|c| c.application)
            .unwrap_or_else(|| "default".into());
        Ok(TaskRequest {
            task_id: task.id.clone(),
            attempt: task.attempts.max(1) as u32,
            kind: task.kind,
            release: self.release_name_of(task, job).await?,
            release_id: task.release_id.clone(),
            component: task.component.clone(),
            image: task.image.clone(),
            digest: task.digest.clone(),
            previous_digest: task.previous_digest.clone(),
            slot: task.slot.clone(),
            artifacts,
            timeout: Duration::from_millis(task.timeout_ms.max(1) as u64),
            traceparent: Some(traceparent(
                &job.id,
                &format!("{}.{}", task.id, task.attempts.max(1)),
            )),
            vars: target.vars.clone(),
            context: TaskContext {
                tenant: job.tenant.clone(),
                job_id: job.id.clone(),
                environment: job.environment.clone(),
                application,
            },
        })
    }

    /// Stores task events as log lines, in small batches; a `running`
    /// status moves the task from dispatched to running.
    pub(super) async fn drain(&self, task: &Task, mut rx: mpsc::Receiver<TaskEvent>) -> Result<()> {
        let mut buffer = Vec::new();
        while let Some(event) = rx.recv().await {
            match event {
                TaskEvent::Log { stream, line } => buffer.push((stream, line)),
                TaskEvent::Status(status) => {
                    if status == "running" {
                        let change = TaskMove::new(
                            TaskState::Dispatched,
                            TaskState::Running,
                            &self.settings.replica,
                            self.settings.lease,
                        );
                        self.store.move_task(&task.id, change).await?;
                    }
                    buffer.push((LogStream::System, format!("status: {status}")));
                }
            }
            if buffer.len() >= 32 || rx.is_empty() {
                self.store
                    .append_logs(&task.id, task.attempts, &buffer)
                    .await?;
                buffer.clear();
            }
        }
        self.store
            .append_logs(&task.id, task.attempts, &buffer)
            .await?;
        Ok(())
    }

    /// Runs the target's health check (with `{slot}` replaced by the task's
    /// slot); no check configured passes.
    pub(super) async fn verify(
        &self,
        job: &Job,
        task: &Task,
        target: &TargetSpec,
        executor: &dyn crate::executor::Executor,
    ) -> Result<std::result::Result<(), HealthCheckFailed>> {
        let Some(check) = &target.health else {
            return Ok(Ok(()));
        };
        let mut request = self.task_request(job, task, target).await?;
        let check = with_slot(check, task.slot.as_deref());
        let probe = check.probe_name();
        let span = tracing::info_span!("health.check", task = %task.id, target = %task.target,
            probe);
        if let Some(tp) = telemetry::traceparent_of(&span) {
            request.traceparent = Some(tp);
        }
        let (tx, rx) = mpsc::channel(64);
        let run = async move {
            let r = crate::jobs::health_check::verify(
                &check, target, &request, executor, &self.http, &tx,
            )
            .await;
            drop(tx);
            r
        };
        let (result, drained) = async { tokio::join!(run, self.drain(task, rx)) }
            .instrument(span.clone())
            .await;
        drained?;
        if let Err(why) = &result {
            tracing::warn!(parent: &span, task = %task.id, target = %task.target, error = %why, "Health check failed");
        }
        Ok(result)
    }
}

pub(super) fn row(outcome: &TaskOutcome) -> TaskResultRow<'_> {
    TaskResultRow {
        exit_code: outcome.exit_code,
        error: outcome.error.as_deref(),
        error_type: outcome.error_type,
    }
}
