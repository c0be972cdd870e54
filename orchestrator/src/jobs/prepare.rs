//! Preparing a job: its artifacts, generated once per target, and the
//! desired state told to the hub before anything changes.

use std::collections::HashSet;

use crate::service::{Orchestrator, OrchestratorError, Result};
use crate::store::{Job, now_ms, rfc3339};

use super::desired::{self, Desired};
use super::{artifacts, release_name_of};

impl Orchestrator {
    /// Generates and stores the artifacts of every target (once; a resumed
    /// job keeps the first ones), then tells the hub what is about to run.
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
        if let Some(outbox) = &self.outbox {
            let mut events = Vec::new();
            let at = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
            let mut seen = HashSet::new();
            for t in &tasks {
                let (Some(target), Some(component)) = (
                    targets.get(&t.target),
                    components.iter().find(|c| c.name == t.component),
                ) else {
                    continue;
                };
                if !seen.insert((target.hub_target().to_owned(), t.component.clone())) {
                    continue;
                }
                events.push(Desired {
                    component,
                    environment: &job.environment,
                    hub_target: target.hub_target(),
                    release: release_name_of(t, job),
                    digest: &t.digest,
                    at,
                });
            }
            desired::publish(outbox, &events)
                .map_err(|e| OrchestratorError::Invalid(e.to_string()))?;
        }
        Ok(())
    }
}
