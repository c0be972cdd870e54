//! Preparing a job: its artifacts, generated once per target; and, as each
//! task is about to change its target, the desired state told to the hub
//! ([`Orchestrator::announce`]).

use crate::domain::TargetSpec;
use crate::domain::task::TaskKind;
use crate::service::{Orchestrator, OrchestratorError, Result};
use crate::store::{Job, Task, now_ms, rfc3339};

use super::artifacts;
use super::desired::{self, Desired, Origin};

impl Orchestrator {
    /// Generates and stores the artifacts of every target (once; a resumed
    /// job keeps the first ones).
    pub(super) async fn prepare(&self, job: &Job) -> Result<()> {
        let tasks = self.store.tasks(&job.id).await?;
        let targets = self.targets(job).await?;
        let components = self.store.components(&job.tenant).await?;
        let release = self
            .store
            .release(&job.tenant, &job.release_id)
            .await?
            .ok_or_else(|| OrchestratorError::NotFound(format!("no release {}", job.release_id)))?;
        let now = rfc3339(now_ms());
        let names: std::collections::BTreeSet<&str> =
            tasks.iter().map(|t| t.target.as_str()).collect();
        let mut generated = Vec::with_capacity(names.len());
        for name in &names {
            let Some(target) = targets.get(*name) else {
                continue;
            };
            let files = artifacts::generate(&artifacts::Context {
                release: &release,
                components: &components,
                environment: &job.environment,
                target,
                job_id: &job.id,
                generated_at: &now,
            });
            generated.push((*name, files));
        }
        let by_target: Vec<(&str, &[crate::domain::task::Artifact])> = generated
            .iter()
            .map(|(name, files)| (*name, files.as_slice()))
            .collect();
        self.store.put_job_artifacts(&job.id, &by_target).await?;
        Ok(())
    }

    /// Tells the hub, through the outbox, what `task` is about to put on
    /// `target`: only then, so a target the job never reaches (a canary
    /// stopped, a rolling job halted) keeps its desired state. A rollback
    /// task announces the release it restores, by name. A blue-green
    /// switch to the job's own release announces nothing (its deploy task
    /// did); a switch back to an earlier release, a blue-green rollback,
    /// does.
    pub(super) async fn announce(&self, job: &Job, task: &Task, target: &TargetSpec) -> Result<()> {
        let Some(outbox) = &self.outbox else {
            return Ok(());
        };
        if task.kind == TaskKind::Switch && task.release_id == job.release_id {
            return Ok(());
        }
        let components = self.store.components(&job.tenant).await?;
        let Some(component) = components.iter().find(|c| c.name == task.component) else {
            return Ok(());
        };
        let release = self.release_name_of(task, job).await?;
        let at = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
        let (traceparent, approved_by) = self.promotion_origin(job).await?;
        let event = Desired {
            component,
            environment: &job.environment,
            hub_target: target.hub_target(),
            release: &release,
            digest: &task.digest,
            at,
            origin: Origin {
                promotion: job.promotion_id.as_deref(),
                job: Some(&job.id),
                approved_by,
                traceparent: traceparent.as_deref(),
            },
        };
        desired::publish(outbox, &[event]).map_err(|e| OrchestratorError::Invalid(e.to_string()))
    }

    /// The promotion's `traceparent` and who approved it (comma-separated,
    /// in the order they did), for a job's desired state.
    async fn promotion_origin(&self, job: &Job) -> Result<(Option<String>, Option<String>)> {
        let Some(id) = &job.promotion_id else {
            return Ok((None, None));
        };
        let traceparent = self
            .store
            .promotion(&job.tenant, id)
            .await?
            .and_then(|p| p.traceparent);
        let approvers: Vec<String> = self
            .store
            .approvals(id)
            .await?
            .into_iter()
            .filter(|a| a.decision == "approve")
            .map(|a| a.approver)
            .collect();
        Ok((
            traceparent,
            Some(approvers.join(", ")).filter(|a| !a.is_empty()),
        ))
    }
}
