//! The job engine: claims jobs under leases, moves them through their
//! state machine, runs their tasks by strategy through the executors,
//! verifies health, and rolls back on failure. See docs/orchestrator.md.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use sextant_exporters::telemetry;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::domain::failure::FailureKind;
use crate::domain::task::TaskKind;
use crate::domain::{JobKind, JobState, Strategy, TargetSpec, TaskState};
use crate::service::{Orchestrator, OrchestratorError, Result};
use crate::store::{DeployedOn, Job, Task};
use failure::JobFailure;

pub mod artifacts;
mod batches;
mod canary;
pub mod desired;
pub mod failure;
pub mod health_check;
mod prepare;
mod rollback;

mod task;

/// How a deployment job ended: what the engine reports to the job's
/// promotion, which reacts (`Orchestrator::job_ended` in
/// [`crate::promotion`]). The engine never moves a promotion itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEnd {
    /// Every task succeeded and the deployment is recorded.
    Deployed,
    /// It failed, with no rollback (or the rollback failed).
    Failed,
    /// It failed and its rollback job restored what ran before.
    RolledBack,
}

impl Orchestrator {
    /// Runs the job engine until `cancel` fires: claims jobs under leases
    /// and drives each to a terminal state.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let driving: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut drivers = tokio::task::JoinSet::new();
        tracing::info!(replica = %self.settings.replica, "Orchestrator engine started");
        loop {
            loop {
                let skip: Vec<String> = lock(&driving).iter().cloned().collect();
                let claimed = self
                    .store
                    .claim_job(&self.settings.replica, self.settings.lease, &skip)
                    .await;
                let id = match claimed {
                    Ok(Some(id)) => id,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "Cannot claim jobs");
                        break;
                    }
                };
                lock(&driving).insert(id.clone());
                let (this, driving, cancel) = (self.clone(), driving.clone(), cancel.clone());
                drivers.spawn(async move {
                    this.drive_leased(&id, cancel).await;
                    lock(&driving).remove(&id);
                });
            }
            while drivers.try_join_next().is_some() {}
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(self.settings.poll) => {}
                () = self.wake.notified() => {}
            }
        }
        drivers.shutdown().await;
    }

    /// Drives one job while renewing its lease; stops if the lease is lost.
    async fn drive_leased(&self, id: &str, cancel: CancellationToken) {
        let lost = CancellationToken::new();
        let renew = {
            let lost = lost.clone();
            async move {
                let every = self.settings.lease / 3;
                loop {
                    tokio::time::sleep(every).await;
                    match self
                        .store
                        .renew_job_lease(id, &self.settings.replica, self.settings.lease)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(job = id, "Lost the job's lease; stopping");
                            lost.cancel();
                            return;
                        }
                        Err(e) => tracing::warn!(job = id, error = %e, "Cannot renew lease"),
                    }
                }
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = lost.cancelled() => return,
            () = renew => return,
            r = self.drive(id) => {
                if let Err(e) = r {
                    tracing::warn!(job = id, error = %e, "Job driver failed; another pass will resume it");
                    // Keep the lease until it expires: a hot loop on a
                    // broken job helps nobody.
                    return;
                }
            }
        }
        if let Err(e) = self
            .store
            .release_job_lease(id, &self.settings.replica)
            .await
        {
            tracing::warn!(job = id, error = %e, "Cannot release lease");
        }
    }

    /// Moves a job forward until it is finished.
    pub(crate) async fn drive(&self, id: &str) -> Result<()> {
        // `claim_job` counted this attempt.
        let job = self.load_job(id).await?;
        if job.attempts > job.max_attempts && !job.state.is_terminal() {
            let failure = JobFailure::GaveUp {
                attempts: job.max_attempts,
            };
            self.fail_job(&job, &failure).await?;
            return Ok(());
        }
        let span = tracing::info_span!("deployment.execute", job = id, kind = %job.kind,
            environment = %job.environment, release = %job.release, strategy = job.strategy.name(),
            attempt = job.attempts);
        // A child of the promotion's span, on whichever replica drives it.
        if let Some(parent) = self.promotion_trace(&job).await? {
            telemetry::set_parent(&span, &parent);
        }
        self.drive_job(job).instrument(span).await
    }

    /// The promotion's `traceparent` of a job (a rollback job's through its
    /// promotion too).
    async fn promotion_trace(&self, job: &Job) -> Result<Option<String>> {
        let Some(promotion) = &job.promotion_id else {
            return Ok(None);
        };
        Ok(self
            .store
            .promotion(&job.tenant, promotion)
            .await?
            .and_then(|p| p.traceparent))
    }

    async fn drive_job(&self, mut job: Job) -> Result<()> {
        let id = job.id.clone();
        let id = id.as_str();
        let was_running = !job.state.is_terminal();
        loop {
            match job.state {
                JobState::Pending => {
                    self.move_job(&job, JobState::Preparing, None).await?;
                }
                JobState::Preparing => {
                    self.prepare(&job).await?;
                    self.move_job(&job, JobState::Running, None).await?;
                }
                JobState::Running => match self.run_batches(&job).await? {
                    Ok(()) => self.move_job(&job, JobState::Completing, None).await?,
                    Err(failure) => self.fail_job(&job, &failure).await?,
                },
                JobState::Completing => self.complete(&job).await?,
                JobState::RollingBack => self.roll_back(&job).await?,
                JobState::Completed
                | JobState::Failed
                | JobState::RolledBack
                | JobState::Cancelled => {
                    if was_running {
                        self.replica_metrics.workflow_run(job.state.as_str());
                    }
                    return Ok(());
                }
            }
            job = self.load_job(id).await?;
        }
    }

    async fn load_job(&self, id: &str) -> Result<Job> {
        self.store
            .job(None, id)
            .await?
            .ok_or_else(|| OrchestratorError::NotFound(format!("no job {id}")))
    }

    async fn move_job(&self, job: &Job, to: JobState, detail: Option<&str>) -> Result<()> {
        self.move_job_failing(job, to, detail, None).await
    }

    /// Moves a job to `failed` or `rolling_back` with its failure's message
    /// and kind.
    async fn move_job_failing(
        &self,
        job: &Job,
        to: JobState,
        detail: Option<&str>,
        failure: Option<FailureKind>,
    ) -> Result<()> {
        if !self
            .store
            .move_job(&job.id, job.state, to, "sextant", detail, failure)
            .await?
        {
            return Err(OrchestratorError::Conflict(format!(
                "job {} moved under us (expected {})",
                job.id, job.state
            )));
        }
        tracing::info!(job = %job.id, from = %job.state, to = %to, detail, "Job moved");
        Ok(())
    }

    async fn targets(&self, job: &Job) -> Result<BTreeMap<String, TargetSpec>> {
        Ok(self
            .store
            .targets(&job.tenant, None)
            .await?
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect())
    }

    /// Records what now runs on every target, and finishes the job.
    async fn complete(&self, job: &Job) -> Result<()> {
        let tasks = self.store.tasks(&job.id).await?;
        let blue_green = matches!(job.strategy, Strategy::BlueGreen {});
        // Blue-green: the live slot changes at the switch.
        let deployed: Vec<DeployedOn<'_>> = tasks
            .iter()
            .filter(|t| t.state == TaskState::Succeeded)
            .filter(|t| !(blue_green && t.kind == TaskKind::Deploy))
            .map(|t| DeployedOn {
                target: &t.target,
                component: &t.component,
                release_id: &t.release_id,
                image: &t.image,
                digest: &t.digest,
                slot: t.slot.as_deref(),
            })
            .collect();
        self.store
            .set_deployed_all(&job.tenant, &job.id, &deployed)
            .await?;
        self.move_job(job, JobState::Completed, None).await?;
        match job.kind {
            JobKind::Deploy => {
                self.job_ended(job, JobEnd::Deployed, &format!("job {} completed", job.id))
                    .await?
            }
            JobKind::Rollback => {}
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Orchestrator {
    /// The name of the release a task puts on its target: the job's for
    /// its own tasks; for a rollback task, the release it restores (its id
    /// only if that release is gone). `SEXTANT_RELEASE` and the hub's
    /// desired version are this name.
    async fn release_name_of(&self, task: &Task, job: &Job) -> Result<String> {
        if task.release_id == job.release_id {
            return Ok(job.release.clone());
        }
        Ok(self
            .store
            .release(&job.tenant, &task.release_id)
            .await?
            .map_or_else(|| task.release_id.clone(), |r| r.name))
    }
}

/// The W3C `traceparent` a task carries to its executor: the job is the
/// trace (its UUID's 128 bits) and each run key a span (64 bits of its
/// sha256), so an agent's spans and logs for every task of a job share one
/// trace id. Sampled.
pub fn traceparent(job_id: &str, run_key: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let trace = uuid::Uuid::parse_str(job_id).map_or_else(
        |_| hex::encode(&Sha256::digest(job_id.as_bytes())[..16]),
        |u| u.simple().to_string(),
    );
    let span = hex::encode(&Sha256::digest(run_key.as_bytes())[..8]);
    format!("00-{trace}-{span}-01")
}

#[cfg(test)]
mod traceparent_tests {
    use super::traceparent;

    #[test]
    fn a_job_is_one_trace_and_each_run_key_a_span() {
        let job = "6f1c2d3e-4b5a-4c6d-8e7f-90a1b2c3d4e5";
        let one = traceparent(job, "t1.1");
        let two = traceparent(job, "t1.2");
        assert_eq!(one.len(), 55, "{one}");
        let parts: Vec<&str> = one.split('-').collect();
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], "6f1c2d3e4b5a4c6d8e7f90a1b2c3d4e5");
        assert_eq!(parts[3], "01");
        assert_eq!(&two[..36], &one[..36], "same trace");
        assert_ne!(two, one, "another span");
        assert_eq!(traceparent("not-a-uuid", "k").len(), 55);
    }
}
