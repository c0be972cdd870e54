//! The Docker executor: deploys a container spec or a compose-lock pinned by
//! digest, verifies health, rolls back on failure, and records every task in
//! a journal so a repeated task id deploys nothing again. The steps are in
//! `docs/agent.md`.

mod docker;
mod error;
mod event;
mod health;
mod journal;
mod plan;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bollard::Docker;

pub use error::{ExecuteError, PlaceholderError, ProbeError};
pub use event::{Phase, PreviousContainer, ServiceOutcome, TaskEvent, TaskOutcome, TaskStatus};
pub use journal::{Journal, RecordState, TaskKind, TaskRecord};
use sextant_protocol::deploy::{ComposeLock, DeploySpec};

use docker::{Failure, Switched};
use journal::{Begin, now};
use plan::Plan;

/// Where the executor sends [`TaskEvent`]s. Sends never block; a dropped
/// receiver is fine.
pub type EventSender = tokio::sync::mpsc::UnboundedSender<TaskEvent>;

/// How to reach Docker and where to keep the journal.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// The journal lives in `data_dir/tasks/`.
    pub data_dir: PathBuf,
    /// `unix:///…`, `tcp://…` or `http://…`; `None` reads `DOCKER_HOST`, else
    /// the local socket.
    pub docker_host: Option<String>,
}

impl ExecutorConfig {
    /// Docker from `DOCKER_HOST` or the local socket; the journal in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            docker_host: None,
        }
    }
}

/// Executes deployment tasks against one Docker engine.
#[derive(Debug)]
pub struct Executor {
    docker: Docker,
    journal: Journal,
    running: Arc<Mutex<HashSet<String>>>,
}

/// Connects to `docker_host`, else `DOCKER_HOST`, else the local socket, and
/// agrees on an API version: bollard asks for a newer one than many engines
/// speak. Shared by the executor and the observer.
pub async fn connect_docker(docker_host: Option<&str>) -> Result<Docker, bollard::errors::Error> {
    let docker = match docker_host {
        Some(host) => Docker::connect_with_host(host),
        None => Docker::connect_with_defaults(),
    }?;
    docker.negotiate_version().await
}

impl Executor {
    /// Connects to Docker, agrees on an API version with it, and opens the
    /// journal.
    pub async fn connect(config: ExecutorConfig) -> Result<Self, ExecuteError> {
        let endpoint = config
            .docker_host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
        let connect_err = |source| ExecuteError::Connect {
            endpoint: endpoint.clone(),
            source,
        };
        let docker = connect_docker(config.docker_host.as_deref())
            .await
            .map_err(connect_err)?;
        Self::with_docker(docker, config.data_dir)
    }

    /// An executor over an existing Docker client.
    pub fn with_docker(docker: Docker, data_dir: PathBuf) -> Result<Self, ExecuteError> {
        Ok(Self {
            docker,
            journal: Journal::open(&data_dir)?,
            running: Arc::default(),
        })
    }

    /// The Docker client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The task journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Runs `argv` inside `container` (`docker exec`): `Ok` on exit 0, else
    /// why not. The orchestrator's command health checks use it.
    pub async fn run_check(
        &self,
        container: &str,
        argv: &[String],
        timeout: std::time::Duration,
    ) -> Result<(), ProbeError> {
        health::probe_command(&self.docker, container, argv, timeout).await
    }

    /// Deploys one container. `Err` means the task was refused before
    /// anything ran; every result after that is a recorded [`TaskOutcome`].
    pub async fn deploy(
        &self,
        spec: &DeploySpec,
        events: EventSender,
    ) -> Result<TaskOutcome, ExecuteError> {
        let image = spec.validate()?;
        let record = self.new_record(&spec.task_id, TaskKind::Deploy, spec);
        let plan = Plan::single(spec, image);
        let names = vec![spec.name.clone()];
        self.run_task(record, names, &events, async {
            let started_at = now();
            let ctx = self.ctx(&spec.task_id, &events);
            match ctx.switch(&plan).await {
                Ok(switched) => {
                    let message = ctx.commit(&switched).await;
                    TaskOutcome {
                        task_id: spec.task_id.clone(),
                        status: TaskStatus::Succeeded,
                        deployed_digest: Some(plan.image.digest.clone()),
                        container_id: Some(switched.new_id.clone()),
                        previous: switched.previous.as_ref().map(|a| a.info.clone()),
                        message,
                        logs: Vec::new(),
                        services: Vec::new(),
                        started_at,
                        finished_at: now(),
                        replayed: false,
                    }
                }
                Err(f) => f.into_outcome(&spec.task_id, started_at),
            }
        })
        .await
    }

    /// Applies a compose-lock service by service; if one fails, it and the
    /// services already changed are rolled back, newest first.
    pub async fn apply_compose(
        &self,
        lock: &ComposeLock,
        events: EventSender,
    ) -> Result<TaskOutcome, ExecuteError> {
        let specs = lock.service_specs()?;
        let plans: Vec<Plan> = specs
            .iter()
            .zip(&lock.services)
            .map(|(spec, svc)| Plan::service(spec, &lock.project, &svc.name))
            .collect::<Result<_, _>>()?;
        let record = self.new_record(&lock.task_id, TaskKind::Compose, lock);
        let names = specs.iter().map(|s| s.name.clone()).collect();
        self.run_task(record, names, &events, async {
            let started_at = now();
            let ctx = self.ctx(&lock.task_id, &events);
            self.compose_inner(&ctx, lock, &plans, started_at).await
        })
        .await
    }

    async fn compose_inner(
        &self,
        ctx: &docker::Ctx<'_>,
        lock: &ComposeLock,
        plans: &[Plan],
        started_at: u64,
    ) -> TaskOutcome {
        let mut outcome = TaskOutcome {
            task_id: lock.task_id.clone(),
            status: TaskStatus::Succeeded,
            deployed_digest: None,
            container_id: None,
            previous: None,
            message: String::new(),
            logs: Vec::new(),
            services: Vec::new(),
            started_at,
            finished_at: 0,
            replayed: false,
        };
        if let Err(e) = ctx.ensure_network(&lock.network(), &lock.labels).await {
            outcome.status = TaskStatus::Failed;
            outcome.message = e.to_string();
            outcome.finished_at = now();
            return outcome;
        }
        let mut done: Vec<(&Plan, Switched)> = Vec::new();
        let mut failure: Option<(&Plan, Failure)> = None;
        for plan in plans {
            match ctx.switch(plan).await {
                Ok(s) => done.push((plan, s)),
                Err(f) => {
                    failure = Some((plan, f));
                    break;
                }
            }
        }
        match failure {
            None => commit_services(ctx, lock, &done, &mut outcome).await,
            Some((failed, f)) => {
                let untouched = plans.len() - done.len() - 1;
                roll_back_services(ctx, &done, failed, f, untouched, &mut outcome).await;
            }
        }
        outcome.finished_at = now();
        outcome
    }

    fn ctx<'a>(&'a self, task_id: &'a str, events: &'a EventSender) -> docker::Ctx<'a> {
        docker::Ctx {
            docker: &self.docker,
            journal: &self.journal,
            task_id,
            events,
        }
    }

    fn new_record(
        &self,
        task_id: &str,
        kind: TaskKind,
        spec: &impl serde::Serialize,
    ) -> TaskRecord {
        TaskRecord {
            task_id: task_id.to_owned(),
            kind,
            state: RecordState::Running,
            started_at: now(),
            spec: serde_json::to_value(spec).unwrap_or(serde_json::Value::Null),
            outcome: None,
        }
    }

    /// The journal around a task: refuse duplicates, replay finished tasks,
    /// report interrupted ones, record the outcome.
    async fn run_task(
        &self,
        mut record: TaskRecord,
        names: Vec<String>,
        events: &EventSender,
        work: impl Future<Output = TaskOutcome>,
    ) -> Result<TaskOutcome, ExecuteError> {
        let task_id = record.task_id.clone();
        let _guard = RunningGuard::take(&self.running, &task_id)?;
        let outcome = match self.journal.begin(&record)? {
            Begin::Exists(existing) => match (existing.state, existing.outcome) {
                (RecordState::Finished, Some(mut outcome)) if existing.kind == record.kind => {
                    outcome.replayed = true;
                    let _ = events.send(TaskEvent::Status {
                        task_id: task_id.clone(),
                        container: names.join(","),
                        phase: Phase::Finished,
                        message: format!(
                            "task {task_id} already finished ({}); nothing done",
                            outcome.status
                        ),
                    });
                    let _ = events.send(TaskEvent::Finished {
                        outcome: Box::new(outcome.clone()),
                    });
                    return Ok(outcome);
                }
                _ if existing.kind != record.kind => {
                    return Err(ExecuteError::KindMismatch {
                        task_id,
                        recorded: existing.kind.name(),
                        requested: record.kind.name(),
                    });
                }
                _ => {
                    let ctx = self.ctx(&task_id, events);
                    let recovered = ctx.recover_interrupted(&names).await;
                    record.started_at = existing.started_at;
                    TaskOutcome {
                        task_id: task_id.clone(),
                        status: TaskStatus::Failed,
                        deployed_digest: None,
                        container_id: None,
                        previous: None,
                        message: format!(
                            "task {task_id} was interrupted: the agent stopped while it ran \
                             (started at {}); it is not resumed. {recovered} Resubmit it under a \
                             new task id.",
                            existing.started_at
                        ),
                        logs: Vec::new(),
                        services: Vec::new(),
                        started_at: existing.started_at,
                        finished_at: now(),
                        replayed: false,
                    }
                }
            },
            Begin::Started => {
                let _ = events.send(TaskEvent::Status {
                    task_id: task_id.clone(),
                    container: names.join(","),
                    phase: Phase::Accepted,
                    message: format!("task {task_id} accepted"),
                });
                work.await
            }
        };
        record.state = RecordState::Finished;
        record.outcome = Some(outcome.clone());
        self.journal.write(&record)?;
        let _ = events.send(TaskEvent::Status {
            task_id: task_id.clone(),
            container: names.join(","),
            phase: Phase::Finished,
            message: format!("{}: {}", outcome.status, outcome.message),
        });
        let _ = events.send(TaskEvent::Finished {
            outcome: Box::new(outcome.clone()),
        });
        Ok(outcome)
    }
}

/// Every service of a compose-lock switched and healthy: the old
/// containers go.
async fn commit_services(
    ctx: &docker::Ctx<'_>,
    lock: &ComposeLock,
    done: &[(&Plan, Switched)],
    outcome: &mut TaskOutcome,
) {
    for (plan, s) in done {
        let message = ctx.commit(s).await;
        outcome.services.push(ServiceOutcome {
            service: plan.service.clone().unwrap_or_default(),
            container: plan.spec.name.clone(),
            status: TaskStatus::Succeeded,
            container_id: Some(s.new_id.clone()),
            deployed_digest: Some(plan.image.digest.clone()),
            previous: s.previous.as_ref().map(|a| a.info.clone()),
            message,
        });
    }
    outcome.message = format!(
        "deployed {} services of project {}, all healthy",
        done.len(),
        lock.project
    );
}

/// Service `failed` of a compose-lock failed (and was rolled back by its
/// switch): the services switched before it are rolled back, newest
/// first; `untouched` later ones were not attempted.
async fn roll_back_services(
    ctx: &docker::Ctx<'_>,
    done: &[(&Plan, Switched)],
    failed: &Plan,
    f: Failure,
    untouched: usize,
    outcome: &mut TaskOutcome,
) {
    let failed_service = failed.service.clone().unwrap_or_default();
    let mut all_restored = f.status == TaskStatus::RolledBack || f.previous.is_none();
    let mut rolled = Vec::new();
    for (plan, s) in done.iter().rev() {
        let (status, message, id) = match ctx.rollback(plan, s).await {
            Ok(r) => (TaskStatus::RolledBack, r.message, r.container_id),
            Err(e) => {
                all_restored = false;
                (TaskStatus::Failed, e.to_string(), None)
            }
        };
        rolled.push(ServiceOutcome {
            service: plan.service.clone().unwrap_or_default(),
            container: plan.spec.name.clone(),
            status,
            container_id: id,
            deployed_digest: None,
            previous: s.previous.as_ref().map(|a| a.info.clone()),
            message,
        });
    }
    rolled.reverse();
    outcome.services = rolled;
    outcome.services.push(ServiceOutcome {
        service: failed_service.clone(),
        container: failed.spec.name.clone(),
        status: f.status,
        container_id: f.container_id.clone(),
        deployed_digest: None,
        previous: f.previous.clone(),
        message: f.message.clone(),
    });
    outcome.logs = f.logs;
    outcome.status = if all_restored {
        TaskStatus::RolledBack
    } else {
        TaskStatus::Failed
    };
    outcome.message = format!(
        "service {failed_service} failed: {}; {} earlier service(s) {}{}",
        f.message,
        done.len(),
        if all_restored {
            "rolled back and healthy"
        } else {
            "NOT all restored, see services"
        },
        if untouched > 0 {
            format!("; {untouched} later service(s) not attempted")
        } else {
            String::new()
        }
    );
}

/// Marks a task id as running in this process until dropped.
struct RunningGuard {
    set: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl RunningGuard {
    fn take(set: &Arc<Mutex<HashSet<String>>>, id: &str) -> Result<Self, ExecuteError> {
        let mut running = set.lock().unwrap_or_else(|e| e.into_inner());
        if !running.insert(id.to_owned()) {
            return Err(ExecuteError::AlreadyRunning {
                task_id: id.to_owned(),
            });
        }
        Ok(Self {
            set: Arc::clone(set),
            id: id.to_owned(),
        })
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}
