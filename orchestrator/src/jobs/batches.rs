//! Running a job's batches in order, as its strategy says: how many tasks
//! at once, how many failures it tolerates, and what happens between
//! batches (a pause, a canary analysis).

use futures::StreamExt;

use super::failure::JobFailure;
use crate::domain::{Strategy, TaskState};
use crate::service::{Orchestrator, Result};
use crate::store::{Job, Task};

impl Orchestrator {
    /// Runs the job's batches in order. `Ok(Err(failure))` when the
    /// strategy says stop (failures past tolerance, a canary breach).
    pub(super) async fn run_batches(
        &self,
        job: &Job,
    ) -> Result<std::result::Result<(), JobFailure>> {
        let targets = self.targets(job).await?;
        let tasks = self.store.tasks(&job.id).await?;
        let last = tasks.iter().map(|t| t.batch).max().unwrap_or(0);
        let tolerated = crate::domain::strategy::tolerated_failures(&job.strategy);
        let parallel = match crate::domain::strategy::parallelism(&job.strategy) {
            0 => usize::MAX,
            n => n,
        };
        for batch in 0..=last {
            let todo: Vec<Task> = self
                .store
                .tasks(&job.id)
                .await?
                .into_iter()
                .filter(|t| t.batch == batch && !t.state.is_terminal())
                .collect();
            let had_work = !todo.is_empty();
            let results: Vec<Result<()>> = futures::stream::iter(todo)
                .map(|task| {
                    let target = targets.get(&task.target).cloned();
                    async move { self.run_task(job, task, target).await }
                })
                .buffer_unordered(parallel)
                .collect()
                .await;
            for r in results {
                r?;
            }
            let all = self.store.tasks(&job.id).await?;
            let failed: Vec<&Task> = all
                .iter()
                .filter(|t| t.batch <= batch && t.state == TaskState::Failed)
                .collect();
            if failed.len() > tolerated {
                return Ok(Err(describe_failures(&failed)));
            }
            if batch < last && had_work {
                match &job.strategy {
                    Strategy::Rolling {
                        pause: Some(pause), ..
                    } => tokio::time::sleep(pause.0).await,
                    Strategy::Canary {
                        analysis: Some(analysis),
                        ..
                    } => {
                        let stage: Vec<&Task> = all.iter().filter(|t| t.batch == batch).collect();
                        if let Err(breach) =
                            self.analyse_canary(job, &targets, &stage, analysis).await
                        {
                            return Ok(Err(JobFailure::CanaryBreach {
                                stage: batch + 1,
                                breach,
                            }));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Ok(()))
    }
}

pub(super) fn describe_failures(failed: &[&Task]) -> JobFailure {
    let parts: Vec<String> = failed
        .iter()
        .map(|t| {
            format!(
                "{} ({}): {}",
                t.target,
                t.component,
                t.error.as_deref().unwrap_or("failed")
            )
        })
        .collect();
    JobFailure::TasksFailed {
        count: failed.len(),
        detail: parts.join("; "),
    }
}
