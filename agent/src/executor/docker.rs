//! The Docker steps of a deploy: pull, set the old container aside, create,
//! stop the old, start and verify the new, then commit (remove the old) or
//! roll back (restore the old and verify it again).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerInspectResponse, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::StreamExt;
use sextant_protocol::deploy::{HealthCheck, Probe, labels};
use tracing::Instrument as _;

use super::EventSender;
use super::error::StepError;
use super::event::{Phase, PreviousContainer, TaskEvent, TaskOutcome, TaskStatus};
use super::health;
use super::journal::{Journal, TaskKind, now};
use super::plan::{Plan, create_body};

/// How many of a failed container's last log lines go into the outcome.
const LOG_TAIL: usize = 50;

/// The name an old container is kept under while its successor is verified.
pub(crate) fn aside_name(name: &str) -> String {
    format!("{name}.sextant-prev")
}

/// The old container, kept aside (renamed, stopped) until the new is healthy.
#[derive(Debug)]
pub(crate) struct Aside {
    pub id: String,
    pub info: PreviousContainer,
    /// How to verify it when it is restored.
    pub health: HealthCheck,
    pub was_running: bool,
}

/// A container switched to its new version, not yet committed.
#[derive(Debug)]
pub(crate) struct Switched {
    /// The container name.
    pub name: String,
    pub new_id: String,
    pub previous: Option<Aside>,
}

/// A switch that did not succeed, after its own rollback.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: TaskStatus,
    pub message: String,
    pub logs: Vec<String>,
    pub previous: Option<PreviousContainer>,
    /// The container running under the name now, if any.
    pub container_id: Option<String>,
}

impl Failure {
    fn nothing_changed(why: impl std::fmt::Display, previous: Option<&Aside>) -> Self {
        Self {
            status: TaskStatus::Failed,
            message: why.to_string(),
            logs: Vec::new(),
            previous: previous.map(|a| a.info.clone()),
            container_id: previous.map(|a| a.id.clone()),
        }
    }

    pub fn into_outcome(self, task_id: &str, started_at: u64) -> TaskOutcome {
        TaskOutcome {
            task_id: task_id.to_owned(),
            status: self.status,
            deployed_digest: None,
            container_id: self.container_id,
            previous: self.previous,
            message: self.message,
            logs: self.logs,
            services: Vec::new(),
            started_at,
            finished_at: now(),
            replayed: false,
        }
    }
}

/// A restored container.
pub(crate) struct Restored {
    pub container_id: Option<String>,
    pub message: String,
}

/// The Docker client and the reporting of one task.
pub(crate) struct Ctx<'a> {
    pub docker: &'a Docker,
    pub journal: &'a Journal,
    pub task_id: &'a str,
    pub events: &'a EventSender,
}

fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl Ctx<'_> {
    fn status(&self, container: &str, phase: Phase, message: impl Into<String>) {
        let message = message.into();
        tracing::debug!(task = self.task_id, container, %phase, detail = %message, "Task step");
        let _ = self.events.send(TaskEvent::Status {
            task_id: self.task_id.to_owned(),
            container: container.to_owned(),
            phase,
            message,
        });
    }

    fn log(&self, container: &str, line: &str) {
        let _ = self.events.send(TaskEvent::Log {
            task_id: self.task_id.to_owned(),
            container: container.to_owned(),
            line: line.to_owned(),
        });
    }

    async fn inspect(&self, name: &str) -> Result<Option<ContainerInspectResponse>, StepError> {
        match self.docker.inspect_container(name, None).await {
            Ok(i) => Ok(Some(i)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(source) => Err(StepError::Inspect {
                name: name.to_owned(),
                source,
            }),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), StepError> {
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(source) => Err(StepError::Remove {
                id: id.to_owned(),
                source,
            }),
        }
    }

    async fn rename(&self, id: &str, to: &str) -> Result<(), StepError> {
        let opts = RenameContainerOptionsBuilder::new().name(to).build();
        self.docker
            .rename_container(id, opts)
            .await
            .map_err(|source| StepError::Rename {
                id: id.to_owned(),
                to: to.to_owned(),
                source,
            })
    }

    async fn pull(&self, plan: &Plan) -> Result<(), StepError> {
        let name = &plan.spec.name;
        self.status(name, Phase::Pulling, format!("pulling {}", plan.image));
        let opts = CreateImageOptionsBuilder::new()
            .from_image(&plan.image.repository)
            .tag(&plan.image.digest)
            .build();
        let creds = plan.spec.registry_auth.as_ref().map(|a| DockerCredentials {
            username: Some(a.username.clone()),
            password: Some(a.password.clone()),
            serveraddress: a.server_address.clone(),
            ..Default::default()
        });
        let mut stream = self.docker.create_image(Some(opts), None, creds);
        while let Some(item) = stream.next().await {
            item.map_err(|source| StepError::Pull {
                image: plan.image.to_string(),
                source,
            })?;
        }
        Ok(())
    }

    /// Pulls, sets the old container aside, creates, starts and verifies the
    /// new one. On failure the old one is back (if there was one) and the
    /// failed container removed.
    pub async fn switch(&self, plan: &Plan) -> Result<Switched, Failure> {
        let name = plan.spec.name.as_str();
        self.pull(plan)
            .await
            .map_err(|m| Failure::nothing_changed(m, None))?;
        self.settle_leftover(name).await?;
        let previous = self.set_aside(name).await?;
        let new_id = self.create(plan, previous.as_ref()).await?;
        if let Some(prev) = previous.as_ref().filter(|p| p.was_running) {
            self.stop_previous(plan, &new_id, prev).await?;
        }
        match self.start_and_verify(plan, &new_id).await {
            Ok(()) => {
                self.status(name, Phase::Healthy, format!("{name} is healthy"));
                Ok(Switched {
                    name: name.to_owned(),
                    new_id,
                    previous,
                })
            }
            Err(reason) => {
                self.status(name, Phase::Unhealthy, reason.to_string());
                let logs = self.tail_logs(&new_id).await;
                for line in &logs {
                    self.log(name, line);
                }
                Err(self.undo(plan, &new_id, previous, reason, logs).await)
            }
        }
    }

    /// A container left aside by an earlier, interrupted task: if nothing
    /// runs under `name` it is the last good version, so it is put back (and
    /// becomes the previous container); otherwise it is stale and removed.
    async fn settle_leftover(&self, name: &str) -> Result<(), Failure> {
        let unchanged = |m: StepError| Failure::nothing_changed(m, None);
        let aside = aside_name(name);
        let Some(left) = self.inspect(&aside).await.map_err(unchanged)? else {
            return Ok(());
        };
        let id = left.id.unwrap_or_else(|| aside.clone());
        if self.inspect(name).await.map_err(unchanged)?.is_some() {
            self.status(
                name,
                Phase::Cleanup,
                format!("removing stale {aside} ({id})"),
            );
            return self.remove(&id).await.map_err(unchanged);
        }
        self.status(
            name,
            Phase::Cleanup,
            format!("restoring leftover {aside} ({id})"),
        );
        self.rename(&id, name).await.map_err(unchanged)?;
        // It ran before the crash stopped it for its successor.
        self.docker
            .start_container(&id, None)
            .await
            .map_err(|source| unchanged(StepError::StartLeftover { id, source }))
    }

    /// Renames the container running under `name`, if any, to its aside
    /// name; it is the previous container.
    async fn set_aside(&self, name: &str) -> Result<Option<Aside>, Failure> {
        let unchanged = |m: StepError| Failure::nothing_changed(m, None);
        let Some(old) = self.inspect(name).await.map_err(unchanged)? else {
            return Ok(None);
        };
        let prev = self.describe_previous(old);
        self.rename(&prev.id, &aside_name(name))
            .await
            .map_err(unchanged)?;
        Ok(Some(prev))
    }

    /// Creates the new container; if Docker refuses, the previous one gets
    /// its name back.
    async fn create(&self, plan: &Plan, previous: Option<&Aside>) -> Result<String, Failure> {
        let name = plan.spec.name.as_str();
        self.status(
            name,
            Phase::Creating,
            format!("creating {name} from {}", plan.image),
        );
        let opts = CreateContainerOptionsBuilder::new().name(name).build();
        match self
            .docker
            .create_container(Some(opts), create_body(plan))
            .await
        {
            Ok(r) => Ok(r.id),
            Err(source) => {
                let e = StepError::Create {
                    name: name.to_owned(),
                    source,
                };
                let mut message = e.to_string();
                if let Some(prev) = previous
                    && let Err(m) = self.rename(&prev.id, name).await
                {
                    message.push_str(&format!("; {m}"));
                }
                Err(Failure::nothing_changed(message, previous))
            }
        }
    }

    /// Stops the previous container; if it will not stop, the new one is
    /// removed and the previous one gets its name back.
    async fn stop_previous(&self, plan: &Plan, new_id: &str, prev: &Aside) -> Result<(), Failure> {
        let name = plan.spec.name.as_str();
        self.status(
            name,
            Phase::StoppingOld,
            format!("stopping previous {}", prev.id),
        );
        let t = plan
            .spec
            .container
            .stop_timeout
            .map_or(10, |d| i32::try_from(d.0.as_secs()).unwrap_or(i32::MAX));
        let opts = StopContainerOptionsBuilder::new().t(t).build();
        let Err(source) = self.docker.stop_container(&prev.id, Some(opts)).await else {
            return Ok(());
        };
        let e = StepError::StopPrevious {
            id: prev.id.clone(),
            source,
        };
        let mut message = e.to_string();
        if let Err(m) = self.remove(new_id).await {
            message.push_str(&format!("; {m}"));
        }
        if let Err(m) = self.rename(&prev.id, name).await {
            message.push_str(&format!("; {m}"));
        }
        Err(Failure::nothing_changed(message, Some(prev)))
    }

    /// Starts the new container and verifies its health, passing on what
    /// it logs meanwhile.
    async fn start_and_verify(&self, plan: &Plan, new_id: &str) -> Result<(), StepError> {
        let name = plan.spec.name.as_str();
        self.status(name, Phase::Starting, format!("starting {name} ({new_id})"));
        self.docker
            .start_container(new_id, None)
            .await
            .map_err(|source| StepError::Start {
                name: name.to_owned(),
                source,
            })?;
        self.status(
            name,
            Phase::Verifying,
            format!(
                "verifying health ({})",
                probe_name(&plan.spec.container.health)
            ),
        );
        let emitted = Arc::new(AtomicUsize::new(0));
        let follower = self.follow_logs(new_id, name, Arc::clone(&emitted));
        let span = tracing::info_span!("health.check", container = %name,
            probe = probe_name(&plan.spec.container.health));
        let verified = health::verify(self.docker, new_id, &plan.spec.container.health)
            .instrument(span.clone())
            .await;
        if let Err(why) = &verified {
            tracing::warn!(parent: &span, container = %name, error = %why, "Health check failed");
        }
        self.catch_up_logs(new_id, &emitted).await;
        follower.abort();
        verified.map_err(StepError::from)
    }

    /// Lets the log follower catch up with what the container printed so
    /// far (a server logs a request just after answering it), for up to a
    /// second.
    async fn catch_up_logs(&self, id: &str, emitted: &AtomicUsize) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let printed = self.read_logs(id, "all").await.len();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while emitted.load(Ordering::Relaxed) < printed && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// After a failed verification: remove the new container and restore
    /// the previous one.
    async fn undo(
        &self,
        plan: &Plan,
        new_id: &str,
        previous: Option<Aside>,
        reason: StepError,
        logs: Vec<String>,
    ) -> Failure {
        let name = &plan.spec.name;
        let info = previous.as_ref().map(|a| a.info.clone());
        let (status, message, container_id) = match self.restore(name, new_id, previous).await {
            Ok(r) if r.container_id.is_some() => (
                TaskStatus::RolledBack,
                format!("{reason}; {}", r.message),
                r.container_id,
            ),
            Ok(r) => (TaskStatus::Failed, format!("{reason}; {}", r.message), None),
            Err(e) => (
                TaskStatus::Failed,
                format!("{reason}; rollback failed: {e}"),
                None,
            ),
        };
        Failure {
            status,
            message,
            logs,
            previous: info,
            container_id,
        }
    }

    /// Removes `new_id` and puts `previous` back under `name`, started and
    /// verified if it ran before. `Ok` with no container id: there was
    /// nothing to restore.
    async fn restore(
        &self,
        name: &str,
        new_id: &str,
        previous: Option<Aside>,
    ) -> Result<Restored, StepError> {
        self.status(name, Phase::RollingBack, format!("removing {new_id}"));
        self.remove(new_id).await?;
        let Some(prev) = previous else {
            return Ok(Restored {
                container_id: None,
                message: "no previous container to roll back to; the failed container was removed"
                    .into(),
            });
        };
        self.status(
            name,
            Phase::RollingBack,
            format!("restoring previous {} ({})", prev.id, prev.info.image),
        );
        self.rename(&prev.id, name).await?;
        if !prev.was_running {
            return Ok(Restored {
                container_id: Some(prev.id.clone()),
                message: format!(
                    "rolled back to previous container {} (left stopped, as it was)",
                    prev.id
                ),
            });
        }
        self.docker
            .start_container(&prev.id, None)
            .await
            .map_err(|source| StepError::StartPrevious {
                id: prev.id.clone(),
                source,
            })?;
        health::verify(self.docker, &prev.id, &prev.health)
            .await
            .map_err(|source| StepError::PreviousUnhealthy {
                id: prev.id.clone(),
                source,
            })?;
        self.status(
            name,
            Phase::Healthy,
            format!("previous {} is healthy again", prev.id),
        );
        Ok(Restored {
            container_id: Some(prev.id.clone()),
            message: format!(
                "rolled back to previous container {} ({}), healthy again",
                prev.id, prev.info.image
            ),
        })
    }

    /// Rolls back a switched container (compose: an earlier service).
    pub async fn rollback(&self, plan: &Plan, s: &Switched) -> Result<Restored, StepError> {
        let previous = s.previous.as_ref().map(|a| Aside {
            id: a.id.clone(),
            info: a.info.clone(),
            health: a.health.clone(),
            was_running: a.was_running,
        });
        match self.restore(&plan.spec.name, &s.new_id, previous).await {
            Ok(r) if r.container_id.is_some() => Ok(r),
            Ok(r) => Ok(Restored {
                container_id: None,
                message: format!("removed; it was new ({})", r.message),
            }),
            Err(e) => Err(e),
        }
    }

    /// Removes the old container after success; returns the message.
    pub async fn commit(&self, s: &Switched) -> String {
        match &s.previous {
            None => "deployed and healthy (no previous container)".into(),
            Some(prev) => {
                self.status(
                    &s.name,
                    Phase::Cleanup,
                    format!("removing previous {}", prev.id),
                );
                match self.remove(&prev.id).await {
                    Ok(()) => format!(
                        "deployed and healthy; previous container {} ({}) removed",
                        prev.id, prev.info.image
                    ),
                    Err(e) => format!("deployed and healthy; {e}"),
                }
            }
        }
    }

    fn describe_previous(&self, old: ContainerInspectResponse) -> Aside {
        let id = old.id.clone().unwrap_or_default();
        let config = old.config.as_ref();
        let labels = config.and_then(|c| c.labels.clone()).unwrap_or_default();
        let task_id = labels.get(labels::TASK).cloned();
        let recorded = task_id
            .as_deref()
            .and_then(|t| self.recorded_health(t, labels.get(labels::COMPOSE_SERVICE)));
        let has_docker_check = config
            .and_then(|c| c.healthcheck.as_ref())
            .and_then(|h| h.test.as_ref())
            .is_some_and(|t| t.first().is_some_and(|f| f != "NONE"));
        let health = recorded.unwrap_or_else(|| HealthCheck {
            probe: if has_docker_check {
                Probe::Docker
            } else {
                Probe::None
            },
            ..HealthCheck::default()
        });
        Aside {
            info: PreviousContainer {
                id: id.clone(),
                image: config
                    .and_then(|c| c.image.clone())
                    .or(old.image.clone())
                    .unwrap_or_default(),
                revision: labels.get(labels::REVISION).cloned().or(old.image.clone()),
                task_id,
            },
            was_running: old.state.and_then(|s| s.running).unwrap_or(false),
            id,
            health,
        }
    }

    /// The health check recorded for the task that made a container.
    fn recorded_health(&self, task_id: &str, service: Option<&String>) -> Option<HealthCheck> {
        let from = |v: &serde_json::Value| serde_json::from_value(v.get("health")?.clone()).ok();
        if let Ok(Some(rec)) = self.journal.read(task_id)
            && rec.kind == TaskKind::Deploy
        {
            return from(&rec.spec);
        }
        // A compose service's task id is COMPOSE_TASK.SERVICE.
        let (compose_task, _) = task_id.rsplit_once('.')?;
        let rec = self.journal.read(compose_task).ok()??;
        let service = service?;
        rec.spec
            .get("services")?
            .as_array()?
            .iter()
            .find(|s| s.get("name").and_then(|n| n.as_str()) == Some(service))
            .and_then(from)
    }

    fn follow_logs(
        &self,
        id: &str,
        name: &str,
        emitted: Arc<AtomicUsize>,
    ) -> tokio::task::JoinHandle<()> {
        let docker = self.docker.clone();
        let events = self.events.clone();
        let (id, name, task_id) = (id.to_owned(), name.to_owned(), self.task_id.to_owned());
        tokio::spawn(async move {
            let opts = LogsOptionsBuilder::new()
                .follow(true)
                .stdout(true)
                .stderr(true)
                .tail("all")
                .build();
            let mut stream = docker.logs(&id, Some(opts));
            while let Some(Ok(chunk)) = stream.next().await {
                for line in chunk.to_string().lines() {
                    let _ = events.send(TaskEvent::Log {
                        task_id: task_id.clone(),
                        container: name.clone(),
                        line: line.to_owned(),
                    });
                    emitted.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    }

    async fn tail_logs(&self, id: &str) -> Vec<String> {
        let mut lines = self.read_logs(id, &LOG_TAIL.to_string()).await;
        let skip = lines.len().saturating_sub(LOG_TAIL);
        lines.split_off(skip)
    }

    /// The container's output so far (`tail`: a count or `all`), as lines.
    async fn read_logs(&self, id: &str, tail: &str) -> Vec<String> {
        let opts = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(tail)
            .build();
        let mut lines = Vec::new();
        let mut stream = self.docker.logs(id, Some(opts));
        while let Some(Ok(chunk)) = stream.next().await {
            lines.extend(chunk.to_string().lines().map(str::to_owned));
        }
        lines
    }

    /// Creates the compose project's network when it is missing.
    pub async fn ensure_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), StepError> {
        match self.docker.inspect_network(name, None).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(source) => {
                return Err(StepError::InspectNetwork {
                    name: name.to_owned(),
                    source,
                });
            }
        }
        self.status(name, Phase::Creating, format!("creating network {name}"));
        let req = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".into()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        self.docker
            .create_network(req)
            .await
            .map(|_| ())
            .map_err(|source| StepError::CreateNetwork {
                name: name.to_owned(),
                source,
            })
    }

    /// For a task found `running` in the journal: put back any container
    /// still set aside whose successor is missing or stopped.
    pub async fn recover_interrupted(&self, names: &[String]) -> String {
        let mut notes = Vec::new();
        for name in names {
            let aside = aside_name(name);
            let Ok(Some(old)) = self.inspect(&aside).await else {
                continue;
            };
            let old_id = old.id.unwrap_or_else(|| aside.clone());
            let current = self.inspect(name).await.ok().flatten();
            let current_running = current
                .as_ref()
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.running)
                .unwrap_or(false);
            if current_running {
                notes.push(format!(
                    "{name} is running and the previous container is still aside as {aside} \
                     ({old_id}); both were left as found."
                ));
                continue;
            }
            let step = async || -> Result<(), StepError> {
                if let Some(id) = current.as_ref().and_then(|c| c.id.clone()) {
                    self.remove(&id).await?;
                }
                self.rename(&old_id, name).await?;
                self.docker
                    .start_container(&old_id, None)
                    .await
                    .map_err(|source| StepError::StartAside {
                        id: old_id.clone(),
                        source,
                    })
            };
            match step().await {
                Ok(()) => notes.push(format!(
                    "The previous container {old_id} was restored as {name} and started."
                )),
                Err(e) => notes.push(format!("Restoring {aside} as {name} failed: {e}.")),
            }
        }
        if notes.is_empty() {
            "No container was left aside.".into()
        } else {
            notes.join(" ")
        }
    }
}

fn probe_name(h: &HealthCheck) -> &'static str {
    match h.probe {
        Probe::None => "running",
        Probe::Docker => "docker HEALTHCHECK",
        Probe::Http { .. } => "http",
        Probe::Tcp { .. } => "tcp",
        Probe::Command { .. } => "command",
    }
}
