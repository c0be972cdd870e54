//! The job engine: claims jobs under leases, moves them through their
//! state machine, runs their tasks by strategy through the executors,
//! verifies health, and rolls back on failure. See docs/orchestrator.md.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use sextant_exporters::telemetry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::artifacts;
use crate::desired::{self, Desired};
use crate::executor::{
    ErrorType, LogStream, TaskContext, TaskEvent, TaskKind, TaskOutcome, TaskRequest,
};
use crate::model::{
    CanaryAnalysis, HealthCheck, HealthProbe, JobKind, JobState, PromotionState, RollbackPolicy,
    Strategy, TargetSpec, TaskState,
};
use crate::service::{Orchestrator, OrchestratorError, Result};
use crate::store::{DeployedOn, Job, NewJob, NewTask, Task, TaskResultRow, now_ms, rfc3339};

/// Why a job's tasks stopped: the message recorded on the job.
type Failure = String;

impl Orchestrator {
    /// Runs the promotion loop and the job engine until `cancel` fires.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let driving: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut drivers = tokio::task::JoinSet::new();
        tracing::info!(replica = %self.settings.replica, "Orchestrator engine started");
        loop {
            if let Err(e) = self.evaluate_waiting().await {
                tracing::warn!(error = %e, "Promotion loop failed; retrying");
            }
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
            let why = format!(
                "gave up after {} attempts to drive the job",
                job.max_attempts
            );
            self.fail_job(&job, &why).await?;
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
                    Err(why) => self.fail_job(&job, &why).await?,
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
        if !self
            .store
            .move_job(&job.id, job.state, to, "sextant", detail)
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

    /// Generates and stores the artifacts of every target (once; a resumed
    /// job keeps the first ones), then tells the hub what is about to run.
    async fn prepare(&self, job: &Job) -> Result<()> {
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
        let by_target: Vec<(&str, &[crate::executor::Artifact])> = generated
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
            desired::publish(outbox, &events).map_err(OrchestratorError::Invalid)?;
        }
        Ok(())
    }

    /// Runs the job's batches in order. `Ok(Err(why))` when the strategy
    /// says stop (failures past tolerance, a canary breach).
    async fn run_batches(&self, job: &Job) -> Result<std::result::Result<(), Failure>> {
        let targets = self.targets(job).await?;
        let tasks = self.store.tasks(&job.id).await?;
        let last = tasks.iter().map(|t| t.batch).max().unwrap_or(0);
        let tolerated = crate::strategy::tolerated_failures(&job.strategy);
        let parallel = match crate::strategy::parallelism(&job.strategy) {
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
                            return Ok(Err(format!(
                                "canary stage {} breached: {breach}",
                                batch + 1
                            )));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Ok(()))
    }

    /// Drives one task to a terminal state.
    async fn run_task(&self, job: &Job, task: Task, target: Option<TargetSpec>) -> Result<()> {
        let owner = &self.settings.replica;
        let lease = self.settings.lease;
        let Some(target) = target else {
            let why = format!("target {} no longer exists", task.target);
            self.finish_task(
                &task,
                TaskState::Failed,
                None,
                Some(&why),
                Some(ErrorType::Invalid),
            )
            .await?;
            return Ok(());
        };
        let executor = match self.executor_for(&target) {
            Ok(e) => e,
            Err(why) => {
                self.finish_task(
                    &task,
                    TaskState::Failed,
                    None,
                    Some(&why),
                    Some(ErrorType::Invalid),
                )
                .await?;
                return Ok(());
            }
        };
        let mut task = task;
        loop {
            let moved = match task.state {
                TaskState::Pending => {
                    self.store
                        .move_task(
                            &task.id,
                            task.state,
                            TaskState::Queued,
                            owner,
                            lease,
                            false,
                            None,
                        )
                        .await?
                }
                TaskState::Retrying => {
                    self.store
                        .move_task(
                            &task.id,
                            task.state,
                            TaskState::Queued,
                            owner,
                            lease,
                            false,
                            None,
                        )
                        .await?
                }
                TaskState::Queued => {
                    self.store
                        .move_task(
                            &task.id,
                            task.state,
                            TaskState::Dispatched,
                            owner,
                            lease,
                            true,
                            None,
                        )
                        .await?
                }
                TaskState::Dispatched | TaskState::Running => {
                    let outcome = self.execute(job, &task, &target, executor.as_ref()).await?;
                    task = self.reload_task(&task.id).await?;
                    if task.state == TaskState::Dispatched {
                        task = match self
                            .store
                            .move_task(
                                &task.id,
                                task.state,
                                TaskState::Running,
                                owner,
                                lease,
                                false,
                                None,
                            )
                            .await?
                        {
                            Some(moved) => moved,
                            None => self.reload_task(&task.id).await?,
                        };
                    }
                    if outcome.success {
                        self.store
                            .move_task(
                                &task.id,
                                task.state,
                                TaskState::Verifying,
                                owner,
                                lease,
                                false,
                                None,
                            )
                            .await?
                    } else if outcome.retryable && task.attempts < task.max_attempts {
                        let why = outcome.error.clone().unwrap_or_default();
                        self.log(
                            &task,
                            LogStream::System,
                            format!("attempt {} failed, retrying: {why}", task.attempts),
                        )
                        .await?;
                        self.store
                            .move_task(
                                &task.id,
                                task.state,
                                TaskState::Retrying,
                                owner,
                                lease,
                                false,
                                Some(row(&outcome)),
                            )
                            .await?
                    } else {
                        self.finish_task(
                            &task,
                            TaskState::Failed,
                            outcome.exit_code,
                            outcome.error.as_deref(),
                            outcome.error_type,
                        )
                        .await?
                    }
                }
                TaskState::Verifying => {
                    let result = self.verify(job, &task, &target, executor.as_ref()).await?;
                    match result {
                        Ok(()) => {
                            self.finish_task(&task, TaskState::Succeeded, Some(0), None, None)
                                .await?
                        }
                        Err(why) => {
                            self.finish_task(
                                &task,
                                TaskState::Failed,
                                None,
                                Some(&why),
                                Some(ErrorType::Health),
                            )
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

    async fn reload_task(&self, id: &str) -> Result<Task> {
        self.store
            .task(id)
            .await?
            .ok_or_else(|| OrchestratorError::NotFound(format!("no task {id}")))
    }

    async fn finish_task(
        &self,
        task: &Task,
        to: TaskState,
        exit_code: Option<i32>,
        error: Option<&str>,
        error_type: Option<ErrorType>,
    ) -> Result<Option<Task>> {
        let result = TaskResultRow {
            exit_code,
            error,
            error_type,
        };
        let moved = self
            .store
            .move_task(
                &task.id,
                task.state,
                to,
                &self.settings.replica,
                self.settings.lease,
                false,
                Some(result),
            )
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

    async fn log(&self, task: &Task, stream: LogStream, line: String) -> Result<()> {
        self.store
            .append_logs(&task.id, task.attempts, &[(stream, line)])
            .await?;
        Ok(())
    }

    /// Runs (or resumes) the task's current attempt through its executor,
    /// storing its log lines as they arrive.
    async fn execute(
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

    async fn dispatch(
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
                    ErrorType::Timeout,
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
    async fn task_request(
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
            release: release_name_of(task, job).to_owned(),
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
    async fn drain(&self, task: &Task, mut rx: mpsc::Receiver<TaskEvent>) -> Result<()> {
        let mut buffer = Vec::new();
        while let Some(event) = rx.recv().await {
            match event {
                TaskEvent::Log { stream, line } => buffer.push((stream, line)),
                TaskEvent::Status(status) => {
                    if status == "running" {
                        self.store
                            .move_task(
                                &task.id,
                                TaskState::Dispatched,
                                TaskState::Running,
                                &self.settings.replica,
                                self.settings.lease,
                                false,
                                None,
                            )
                            .await?;
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
    async fn verify(
        &self,
        job: &Job,
        task: &Task,
        target: &TargetSpec,
        executor: &dyn crate::executor::Executor,
    ) -> Result<std::result::Result<(), String>> {
        let Some(check) = &target.health else {
            return Ok(Ok(()));
        };
        let mut request = self.task_request(job, task, target).await?;
        let check = with_slot(check, task.slot.as_deref());
        let probe = match check.probe() {
            Ok(HealthProbe::Http { .. }) => "http",
            Ok(HealthProbe::Tcp { .. }) => "tcp",
            Ok(HealthProbe::Command { .. }) => "command",
            Err(_) => "invalid",
        };
        let span = tracing::info_span!("health.check", task = %task.id, target = %task.target,
            probe);
        if let Some(tp) = telemetry::traceparent_of(&span) {
            request.traceparent = Some(tp);
        }
        let (tx, rx) = mpsc::channel(64);
        let run = async move {
            let r =
                crate::health::verify(&check, target, &request, executor, &self.http, &tx).await;
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

    /// Between canary stages: waits, then checks the hub's rollout for the
    /// stage's targets and the Prometheus threshold. Missing input is a
    /// breach.
    async fn analyse_canary(
        &self,
        job: &Job,
        targets: &BTreeMap<String, TargetSpec>,
        stage: &[&Task],
        analysis: &CanaryAnalysis,
    ) -> std::result::Result<(), String> {
        if let Some(wait) = analysis.wait {
            tokio::time::sleep(wait.0).await;
        }
        if let Some(t) = stage.iter().find(|t| t.state != TaskState::Succeeded) {
            return Err(format!("task on {} is {}", t.target, t.state));
        }
        if analysis.hub_rollout {
            let hub = self
                .hub
                .as_ref()
                .ok_or("hub_rollout is set but no hub is configured")?;
            let components = self
                .store
                .components(&job.tenant)
                .await
                .map_err(|e| e.to_string())?;
            let mut checked = HashSet::new();
            for t in stage {
                let hub_target = targets
                    .get(&t.target)
                    .map(|s| s.hub_target().to_owned())
                    .unwrap_or_else(|| t.target.clone());
                if !checked.insert((hub_target.clone(), t.component.clone())) {
                    continue;
                }
                let application = components
                    .iter()
                    .find(|c| c.name == t.component)
                    .and_then(|c| c.application.clone())
                    .unwrap_or_else(|| "default".into());
                let rollout: Option<serde_json::Value> = hub
                    .get(
                        "/api/v1/rollout",
                        &[
                            ("workload", &t.component),
                            ("environment", &job.environment),
                            ("target", &hub_target),
                            ("application", &application),
                            ("hosts", "all"),
                        ],
                    )
                    .await
                    .map_err(|e| format!("hub rollout: {e}"))?;
                let rollout = rollout.ok_or_else(|| {
                    format!("the hub knows no {} in {}", t.component, job.environment)
                })?;
                check_rollout(&rollout, &t.digest).map_err(|why| {
                    format!("hub rollout of {} on {hub_target}: {why}", t.component)
                })?;
            }
        }
        if let Some(p) = &analysis.prometheus {
            let value = prometheus_value(&self.http, &p.url, &p.query).await?;
            if value > p.max {
                return Err(format!("{} = {value} is above {}", p.query, p.max));
            }
        }
        Ok(())
    }

    /// Fails a job: a deploy job whose tasks changed anything rolls back,
    /// unless its environment's rollback policy is `manual`; otherwise it
    /// (and its promotion) fail.
    async fn fail_job(&self, job: &Job, why: &str) -> Result<()> {
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
                self.move_job(job, JobState::RollingBack, Some(why)).await?;
                return Ok(());
            }
            let why = format!(
                "{why} (rollback policy of {} is manual: roll back with `sextant rollback {}`)",
                job.environment, job.id
            );
            self.move_job(job, JobState::Failed, Some(&why)).await?;
            self.move_promotion_of(job, PromotionState::Failed, &why)
                .await?;
            return Ok(());
        }
        self.move_job(job, JobState::Failed, Some(why)).await?;
        if job.kind == JobKind::Deploy {
            self.move_promotion_of(job, PromotionState::Failed, why)
                .await?;
        }
        Ok(())
    }

    async fn move_promotion_of(&self, job: &Job, to: PromotionState, detail: &str) -> Result<()> {
        if let Some(p) = &job.promotion_id
            && let Some(promotion) = self.store.promotion(&job.tenant, p).await?
            && promotion.state.can_move_to(to)
        {
            self.store
                .move_promotion(p, promotion.state, to, "sextant", Some(detail), None)
                .await?;
        }
        Ok(())
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
                self.move_promotion_of(
                    job,
                    PromotionState::Deployed,
                    &format!("job {} completed", job.id),
                )
                .await?
            }
            JobKind::Rollback => {}
        }
        Ok(())
    }

    /// A job in `rolling_back`: starts (once) its rollback job, waits for
    /// it, and ends `rolled_back` or `failed`.
    async fn roll_back(&self, job: &Job) -> Result<()> {
        let child = match self.rollback_child(job).await? {
            Some(child) => child,
            None => {
                let tasks = self.store.tasks(&job.id).await?;
                let new = self.rollback_plan(job, &tasks).await?;
                if new.tasks.is_empty() {
                    self.move_job(job, JobState::Failed, Some("nothing to roll back to"))
                        .await?;
                    self.move_promotion_of(job, PromotionState::Failed, "nothing to roll back to")
                        .await?;
                    return Ok(());
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
                    self.move_promotion_of(
                        job,
                        PromotionState::RolledBack,
                        &format!("rolled back by job {child}"),
                    )
                    .await?;
                    return Ok(());
                }
                s if s.is_terminal() => {
                    let why = format!("rollback job {child} ended {s}");
                    self.move_job(job, JobState::Failed, Some(&why)).await?;
                    self.move_promotion_of(job, PromotionState::Failed, &why)
                        .await?;
                    return Ok(());
                }
                _ => tokio::time::sleep(self.settings.poll.min(Duration::from_secs(1))).await,
            }
        }
    }

    async fn rollback_child(&self, job: &Job) -> Result<Option<String>> {
        Ok(self.store.rollback_job_of(&job.id).await?)
    }

    /// The rollback job of `job`: the affected (target, component) pairs
    /// go back to what ran before. A failed job has not recorded anything
    /// yet, so "before" is the current `deployed` row; a completed job
    /// (rollback on request) goes to the row's previous deployment.
    async fn rollback_plan(&self, job: &Job, tasks: &[Task]) -> Result<NewJob> {
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn row(outcome: &TaskOutcome) -> TaskResultRow<'_> {
    TaskResultRow {
        exit_code: outcome.exit_code,
        error: outcome.error.as_deref(),
        error_type: outcome.error_type,
    }
}

/// The release name a task carries to its target: the job's release for
/// its own tasks; for rollback tasks the id of the release restored (the
/// engine has no name at hand, and the id is unique).
fn release_name_of<'a>(task: &'a Task, job: &'a Job) -> &'a str {
    if task.release_id == job.release_id {
        &job.release
    } else {
        &task.release_id
    }
}

/// The (target, component) pairs a job may have changed: every task that
/// got past queued. Blue-green deploys into the idle slot change nothing
/// live; only its switches count.
fn affected(job: &Job, tasks: &[Task]) -> Vec<(String, String)> {
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

fn describe_failures(failed: &[&Task]) -> String {
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
    format!("{} task(s) failed: {}", failed.len(), parts.join("; "))
}

fn with_slot(check: &HealthCheck, slot: Option<&str>) -> HealthCheck {
    let slot = slot.unwrap_or("");
    let sub = |s: &Option<String>| s.as_ref().map(|v| v.replace("{slot}", slot));
    HealthCheck {
        http: sub(&check.http),
        tcp: sub(&check.tcp),
        command: sub(&check.command),
        ..check.clone()
    }
}

/// Checks a hub rollout answer: at least one host on `digest`, every host
/// on it succeeded.
fn check_rollout(rollout: &serde_json::Value, digest: &str) -> std::result::Result<(), String> {
    let hosts = rollout["hosts"]
        .as_array()
        .ok_or("the hub's answer has no hosts")?;
    let mut on_digest = 0;
    let mut bad = Vec::new();
    for h in hosts {
        let name = h["host"].as_str().unwrap_or("?");
        let revision = h["revision"].as_str().unwrap_or("");
        let status = h["status"].as_str().unwrap_or("");
        if revision != digest {
            bad.push(format!("{name} runs {revision}"));
        } else if status != "succeeded" {
            bad.push(format!("{name} is {status}"));
        } else {
            on_digest += 1;
        }
    }
    if !bad.is_empty() {
        return Err(bad.join(", "));
    }
    if on_digest == 0 {
        return Err("no host reports the new digest yet".into());
    }
    Ok(())
}

/// The value of a Prometheus instant query (the first sample of a vector,
/// or a scalar).
async fn prometheus_value(
    http: &reqwest::Client,
    base: &str,
    query: &str,
) -> std::result::Result<f64, String> {
    let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
    let body: serde_json::Value = http
        .get(&url)
        .headers(telemetry::current_headers())
        .query(&[("query", query)])
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("prometheus {url}: {e}"))?
        .error_for_status()
        .map_err(|e| format!("prometheus {url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("prometheus {url}: {e}"))?;
    let data = &body["data"];
    let value = match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .and_then(|r| r.first())
            .map(|s| &s["value"][1]),
        Some("scalar") => Some(&data["result"][1]),
        _ => None,
    };
    value
        .and_then(|v| v.as_str())
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| format!("prometheus query {query:?} returned no sample"))
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
