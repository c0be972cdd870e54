//! Failing a job and rolling it back: automatically when its
//! environment says so, or on request; the rollback job restores what ran
//! before on every (target, component) the job touched.

use std::time::Duration;

use super::JobEnd;
use super::failure::JobFailure;
use crate::domain::task::TaskKind;
use crate::domain::{JobKind, JobState, RollbackPolicy, Strategy, TaskState};
use crate::service::{Orchestrator, OrchestratorError, Result};
use crate::store::{Job, NewJob, NewTask, Task};

impl Orchestrator {
    /// Fails a job: a deploy job whose tasks changed anything rolls back,
    /// unless its environment's rollback policy is `manual`; otherwise it
    /// (and its promotion) fail.
    pub(super) async fn fail_job(&self, job: &Job, failure: &JobFailure) -> Result<()> {
        let kind = Some(failure.kind());
        let why = failure.to_string();
        let tasks = self.store.tasks(&job.id).await?;
        let touched = affected(job, &tasks);
        if job.kind == JobKind::Deploy && !touched.is_empty() {
            let policy = self
                .store
                .environments(&job.tenant)
                .await?
                .into_iter()
                .find(|e| e.name == job.environment)
                .map(|e| e.rollback)
                .unwrap_or_default();
            if policy == RollbackPolicy::Automatic {
                self.move_job_failing(job, JobState::RollingBack, Some(&why), kind)
                    .await?;
                return Ok(());
            }
            let why = format!(
                "{why} (rollback policy of {} is manual: roll back with `sextant rollback {}`)",
                job.environment, job.id
            );
            self.move_job_failing(job, JobState::Failed, Some(&why), kind)
                .await?;
            self.job_ended(job, JobEnd::Failed, &why).await?;
            return Ok(());
        }
        self.move_job_failing(job, JobState::Failed, Some(&why), kind)
            .await?;
        self.job_ended(job, JobEnd::Failed, &why).await?;
        Ok(())
    }

    /// A job in `rolling_back`: starts (once) its rollback job, waits for
    /// it, and ends `rolled_back` or `failed`.
    pub(super) async fn roll_back(&self, job: &Job) -> Result<()> {
        let child = match self.rollback_child(job).await? {
            Some(child) => child,
            None => {
                let tasks = self.store.tasks(&job.id).await?;
                let new = self.rollback_plan(job, &tasks).await?;
                if new.tasks.is_empty() {
                    return self
                        .rollback_failed(job, JobFailure::NothingToRollBack)
                        .await;
                }
                let id = self.store.create_job(&new).await?.unwrap_or_default();
                tracing::info!(job = %job.id, rollback = %id, "Rollback job created");
                self.wake.notify_one();
                id
            }
        };
        loop {
            let c = self.load_job(&child).await?;
            match c.state {
                JobState::Completed => {
                    self.move_job(
                        job,
                        JobState::RolledBack,
                        Some(&format!("rollback job {child} completed")),
                    )
                    .await?;
                    self.job_ended(
                        job,
                        JobEnd::RolledBack,
                        &format!("rolled back by job {child}"),
                    )
                    .await?;
                    return Ok(());
                }
                state if state.is_terminal() => {
                    let failure = JobFailure::RollbackEnded { child, state };
                    return self.rollback_failed(job, failure).await;
                }
                _ => tokio::time::sleep(self.settings.poll.min(Duration::from_secs(1))).await,
            }
        }
    }

    /// A job whose rollback could not run or did not complete: it and its
    /// promotion fail.
    async fn rollback_failed(&self, job: &Job, failure: JobFailure) -> Result<()> {
        let why = failure.to_string();
        self.move_job_failing(job, JobState::Failed, Some(&why), Some(failure.kind()))
            .await?;
        self.job_ended(job, JobEnd::Failed, &why).await
    }

    pub(super) async fn rollback_child(&self, job: &Job) -> Result<Option<String>> {
        Ok(self.store.rollback_job_of(&job.id).await?)
    }

    /// The rollback job of `job`: the affected (target, component) pairs
    /// go back to what ran before. A failed job has not recorded anything
    /// yet, so "before" is the current `deployed` row; a completed job
    /// (rollback on request) goes to the row's previous deployment.
    pub(super) async fn rollback_plan(&self, job: &Job, tasks: &[Task]) -> Result<NewJob> {
        let deployed = self.store.deployed(&job.tenant, None).await?;
        let completed = job.state == JobState::RollingBack
            && self
                .store
                .job_events(&job.id)
                .await?
                .iter()
                .any(|e| e.to == JobState::Completed.as_str());
        let blue_green = matches!(job.strategy, Strategy::BlueGreen {});
        let touched = affected(job, tasks);
        let mut new_tasks = Vec::new();
        for (target, component) in touched {
            let Some(d) = deployed
                .iter()
                .find(|d| d.target == target && d.component == component)
            else {
                continue;
            };
            let (release_id, image, digest, slot) = if completed {
                let Some(p) = &d.previous else { continue };
                (
                    p.release_id.clone(),
                    p.image.clone(),
                    p.digest.clone(),
                    p.slot.clone(),
                )
            } else {
                (
                    d.release_id.clone(),
                    d.image.clone(),
                    d.digest.clone(),
                    d.slot.clone(),
                )
            };
            let failed_digest = tasks
                .iter()
                .find(|t| t.target == target && t.component == component)
                .map(|t| t.digest.clone());
            new_tasks.push(NewTask {
                batch: 0,
                kind: if blue_green && slot.is_some() {
                    TaskKind::Switch
                } else {
                    TaskKind::Rollback
                },
                release_id,
                target,
                component,
                image,
                digest,
                previous_digest: failed_digest,
                slot,
                max_attempts: self.settings.task_attempts,
                timeout_ms: self.settings.task_timeout.as_millis() as i64,
            });
        }
        Ok(NewJob {
            tenant: job.tenant.clone(),
            kind: JobKind::Rollback,
            promotion_id: job.promotion_id.clone(),
            parent_job_id: Some(job.id.clone()),
            release_id: job.release_id.clone(),
            environment: job.environment.clone(),
            strategy: Strategy::AllAtOnce { max_parallel: 0 },
            max_attempts: 5,
            created_by: "sextant".into(),
            tasks: new_tasks,
        })
    }

    /// Rolls back a job on request: a completed or failed deploy job goes
    /// `rolling_back`, and the engine does the rest.
    pub async fn request_rollback(&self, tenant: &str, actor: &str, id: &str) -> Result<Job> {
        let job = self
            .store
            .job(Some(tenant), id)
            .await?
            .ok_or_else(|| OrchestratorError::NotFound(format!("no job {id:?}")))?;
        if job.kind != JobKind::Deploy || !job.state.can_move_to(JobState::RollingBack) {
            return Err(OrchestratorError::Conflict(format!(
                "job {id} is a {} job in state {}; only a completed or failed deploy job can be rolled back",
                job.kind, job.state
            )));
        }
        if !self
            .store
            .move_job(
                id,
                job.state,
                JobState::RollingBack,
                actor,
                Some("rollback requested"),
                None,
            )
            .await?
        {
            return Err(OrchestratorError::Conflict(format!(
                "job {id} changed; try again"
            )));
        }
        self.wake.notify_one();
        self.load_job(id).await
    }
}

/// The (target, component) pairs a job may have changed: every task that
/// got past queued. Blue-green deploys into the idle slot change nothing
/// live; only its switches count.
pub(super) fn affected(job: &Job, tasks: &[Task]) -> Vec<(String, String)> {
    let blue_green = matches!(job.strategy, Strategy::BlueGreen {});
    let mut out: Vec<(String, String)> = Vec::new();
    for t in tasks {
        if matches!(
            t.state,
            TaskState::Pending | TaskState::Queued | TaskState::Skipped
        ) {
            continue;
        }
        if blue_green && t.kind == TaskKind::Deploy {
            continue;
        }
        let key = (t.target.clone(), t.component.clone());
        if !out.contains(&key) {
            out.push(key);
        }
    }
    out
}
