//! [`AgentExecutor`]: the job engine's executor for targets of execution
//! model `agent`. It turns a task into the agent's deploy spec or
//! compose-lock, puts it in the agent's mailbox under its run key, and waits
//! for the result, whichever replica holds the agent's stream.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prost::Message as _;
use sextant_protocol::deploy::{
    ComposeLock, ContainerSettings, DeploySpec, ErrorKind, ServiceSpec, SpecError, TaskOutcome,
};
use sextant_protocol::v1::{self as pb, task::Payload};
use tokio::sync::mpsc;

use crate::agents::server::StoredResult;
use crate::agents::{AgentChannel, AgentStatus};
use crate::domain::task::{LogStream, TaskKind};
use crate::domain::{ContainerTemplate, DeployTemplate, TargetSpec};
use crate::executor::{CheckError, Executor, TaskEvent, TaskRequest};
use crate::store::agents::MailStatus;
use crate::store::{AgentRow, MailItem, MailState, now_ms};

/// How often a task waiting for an agent whose stream this replica holds
/// reads the mailbox when nothing woke it.
const LOCAL_POLL: Duration = Duration::from_secs(5);

/// Label naming the job that created a container (the hub links it).
pub const JOB_LABEL: &str = sextant_protocol::deploy::labels::JOB;

/// Why a task cannot be turned into what an agent runs.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "target {target}: agents do not switch blue-green slots; deploy to agent targets with \
         all-at-once, rolling or canary"
    )]
    Switch { target: String },
    #[error(
        "target {target}: agent targets take deploy template docker (the default) or compose; \
         custom commands run over SSH"
    )]
    Custom { target: String },
    /// The deploy spec or compose-lock the task makes is not one an agent
    /// accepts.
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
}

/// Runs tasks through agents.
#[derive(Debug, Clone)]
pub struct AgentExecutor {
    channel: Arc<AgentChannel>,
}

impl AgentExecutor {
    pub fn new(channel: Arc<AgentChannel>) -> Self {
        Self { channel }
    }

    /// The agent a target names: by id, or the one agent its selector
    /// matches.
    async fn resolve(&self, tenant: &str, target: &TargetSpec) -> Result<AgentRow, TaskOutcome> {
        let invalid = |why: String| TaskOutcome::failed(ErrorKind::Invalid, false, why);
        let Some(conn) = &target.agent else {
            return Err(invalid(format!("target {} has no agent", target.name)));
        };
        let store = &self.channel.store;
        let unreachable = |e: crate::store::StoreError| {
            TaskOutcome::failed(ErrorKind::Connection, true, e.to_string())
        };
        let agent = if let Some(id) = &conn.id {
            store
                .agent(id)
                .await
                .map_err(unreachable)?
                .filter(|a| a.tenant == tenant)
                .ok_or_else(|| {
                    invalid(format!(
                        "target {}: no agent {id} is registered",
                        target.name
                    ))
                })?
        } else {
            let mut matching: Vec<AgentRow> = store
                .agents_matching(tenant, &conn.selector)
                .await
                .map_err(unreachable)?
                .into_iter()
                .filter(|a| a.revoked_at.is_none())
                .collect();
            match matching.len() {
                1 => matching.remove(0),
                0 => {
                    return Err(invalid(format!(
                        "target {}: no registered agent has the labels {:?}",
                        target.name, conn.selector
                    )));
                }
                _ => {
                    let names: Vec<_> = matching.iter().map(|a| a.name.as_str()).collect();
                    return Err(invalid(format!(
                        "target {}: selector {:?} matches {} agents ({}); a target is one host, \
                         so name an agent id or narrow the selector",
                        target.name,
                        conn.selector,
                        names.len(),
                        names.join(", ")
                    )));
                }
            }
        };
        if agent.revoked_at.is_some() {
            return Err(invalid(format!(
                "target {}: agent {} ({}) was revoked",
                target.name, agent.name, agent.id
            )));
        }
        Ok(agent)
    }

    /// The protobuf task for `request` on `target`.
    fn build(&self, target: &TargetSpec, request: &TaskRequest) -> Result<pb::Task, BuildError> {
        let run_key = request.run_key();
        let template = target
            .agent
            .as_ref()
            .and_then(|a| a.container.clone())
            .unwrap_or_default();
        let mut labels = template.container.labels.clone();
        if !request.context.job_id.is_empty() {
            labels.insert(JOB_LABEL.to_owned(), request.context.job_id.clone());
        }
        let (kind, payload) = match (&request.kind, &target.deploy) {
            (TaskKind::Switch, _) => {
                return Err(BuildError::Switch {
                    target: target.name.clone(),
                });
            }
            (_, Some(DeployTemplate::Custom { .. })) => {
                return Err(BuildError::Custom {
                    target: target.name.clone(),
                });
            }
            (_, Some(DeployTemplate::Compose { project })) => {
                let lock = ComposeLock {
                    task_id: run_key.clone(),
                    project: project.clone().unwrap_or_else(|| target.name.clone()),
                    application: request.context.application.clone(),
                    target: target.hub_target().to_owned(),
                    environment: Some(request.context.environment.clone()),
                    release: Some(request.release.clone()),
                    labels,
                    registry_auth: None,
                    services: vec![service(&template, request)],
                };
                lock.service_specs()?;
                let json = serde_json::to_string(&lock)?;
                ("compose", Payload::ComposeJson(json))
            }
            (kind, _) => {
                let spec = DeploySpec {
                    task_id: run_key.clone(),
                    name: container_name(target, &request.component),
                    image: request.image.clone(),
                    application: request.context.application.clone(),
                    workload: request.component.clone(),
                    target: target.hub_target().to_owned(),
                    environment: Some(request.context.environment.clone()),
                    release: Some(request.release.clone()),
                    revision: None,
                    container: ContainerSettings {
                        labels,
                        ..template.container.clone()
                    },
                    registry_auth: None,
                };
                spec.validate()?;
                let json = serde_json::to_string(&spec)?;
                let kind = if *kind == TaskKind::Rollback {
                    "rollback"
                } else {
                    "deploy"
                };
                (kind, Payload::DeployJson(json))
            }
        };
        Ok(pb::Task {
            run_key,
            kind: kind.to_owned(),
            deadline_unix_ms: now_ms() + request.timeout.as_millis() as i64,
            traceparent: request.traceparent.clone().unwrap_or_default(),
            payload: Some(payload),
            registry_auth: None,
            previous_digest: request.previous_digest.clone().unwrap_or_default(),
            artifacts: request
                .artifacts
                .iter()
                .map(|a| pb::Artifact {
                    name: a.name.clone(),
                    content: a.content.clone(),
                    sha256: a.sha256.clone(),
                })
                .collect(),
        })
    }

    /// Queues `task` for `agent` (unless its run key is queued already)
    /// and waits for its result or its deadline.
    async fn run(
        &self,
        agent: &AgentRow,
        task: pb::Task,
        task_id: &str,
        attempt: i64,
        events: Option<&mpsc::Sender<TaskEvent>>,
    ) -> TaskOutcome {
        let run_key = task.run_key.clone();
        let item = MailItem {
            run_key: run_key.clone(),
            task_id: task_id.to_owned(),
            attempt,
            tenant: agent.tenant.clone(),
            agent_id: agent.id.clone(),
            kind: task.kind.clone(),
            payload: task.encode_to_vec(),
            deadline: task.deadline_unix_ms,
            state: MailState::Queued,
            session: None,
            deliveries: 0,
            outcome: None,
            created_at: 0,
        };
        let note = |line: String| async move {
            if let Some(events) = events {
                let _ = events
                    .send(TaskEvent::Log {
                        stream: LogStream::System,
                        line,
                    })
                    .await;
            }
        };
        let waiter = self.channel.waiter(&run_key);
        let store = &self.channel.store;
        match store.enqueue_agent_task(&item).await {
            Ok(true) => {
                let status = AgentStatus::of(agent, now_ms(), self.channel.heartbeat);
                note(format!(
                    "queued {run_key} for agent {} ({}, {})",
                    agent.name,
                    agent.id,
                    status.as_str()
                ))
                .await;
            }
            Ok(false) => {
                note(format!(
                    "{run_key} is in agent {}'s mailbox already; waiting for its result, not sending it again",
                    agent.name
                ))
                .await;
            }
            Err(e) => {
                self.channel.forget(&run_key);
                return TaskOutcome::failed(ErrorKind::Connection, true, format!("mailbox: {e}"));
            }
        }
        self.channel.wake_dispatch();
        let outcome = self.wait(agent, &run_key, &waiter, events, note).await;
        self.channel.forget(&run_key);
        outcome
    }

    async fn wait<F, Fut>(
        &self,
        agent: &AgentRow,
        run_key: &str,
        waiter: &tokio::sync::Notify,
        events: Option<&mpsc::Sender<TaskEvent>>,
        note: F,
    ) -> TaskOutcome
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let store = &self.channel.store;
        let mut seen = MailState::Queued;
        loop {
            let row = match store.agent_task_status(run_key).await {
                Ok(Some(row)) => row,
                Ok(None) => {
                    return TaskOutcome::failed(
                        ErrorKind::Connection,
                        true,
                        format!("{run_key} vanished from the mailbox"),
                    );
                }
                Err(e) => {
                    tracing::warn!(run_key, error = %e, "Cannot read the agent mailbox; retrying");
                    tokio::time::sleep(self.channel.poll).await;
                    continue;
                }
            };
            if row.state != seen {
                match row.state {
                    MailState::Delivered => {
                        note(format!(
                            "delivered to agent {} (delivery {})",
                            agent.name, row.deliveries
                        ))
                        .await;
                    }
                    MailState::Running => {
                        if let Some(events) = events {
                            let _ = events.send(TaskEvent::Status("running".into())).await;
                        }
                    }
                    _ => {}
                }
                seen = row.state;
            }
            match row.state {
                MailState::Finished => return outcome_of(&row),
                MailState::Expired => {
                    return TaskOutcome::failed(
                        ErrorKind::Timeout,
                        false,
                        format!("{run_key} expired before agent {} finished it", agent.name),
                    );
                }
                _ => {}
            }
            let left = row.deadline - now_ms();
            if left <= 0 {
                if matches!(store.expire_agent_task(run_key).await, Ok(true)) {
                    return self.expired(agent, &row).await;
                }
                continue;
            }
            // While this replica holds the agent's stream, it makes every
            // change of the row itself (delivery, running, the result) and
            // wakes this waiter each time; reading the mailbox on a timer
            // is then only a safety net (the agent may have moved to
            // another replica). Polling every `poll` for each of hundreds
            // of open tasks was a large share of a big job's database work.
            let every = if self.channel.holds_stream(&agent.id) {
                self.channel.poll.max(LOCAL_POLL)
            } else {
                self.channel.poll
            };
            let pause = every.min(Duration::from_millis(left.max(1) as u64));
            tokio::select! {
                () = waiter.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// The failure of a task whose deadline passed.
    async fn expired(&self, agent: &AgentRow, row: &MailStatus) -> TaskOutcome {
        let now = now_ms();
        let fresh = self.channel.store.agent(&agent.id).await.ok().flatten();
        let agent = fresh.as_ref().unwrap_or(agent);
        let status = AgentStatus::of(agent, now, self.channel.heartbeat);
        let seen = agent.last_heartbeat.map_or_else(
            || "never connected".to_owned(),
            |t| format!("last heartbeat {}s ago", (now - t) / 1000),
        );
        if row.state == MailState::Queued {
            TaskOutcome::failed(
                ErrorKind::Connection,
                false,
                format!(
                    "agent {} ({}) is {} ({seen}): task {} was not delivered before its deadline",
                    agent.name,
                    agent.id,
                    status.as_str(),
                    row.run_key
                ),
            )
        } else {
            TaskOutcome::failed(
                ErrorKind::Timeout,
                false,
                format!(
                    "agent {} ({}, {}) took task {} but sent no result before its deadline",
                    agent.name,
                    agent.id,
                    status.as_str(),
                    row.run_key
                ),
            )
        }
    }
}

/// The container a task for `component` on `target` runs as (and a
/// health check runs in): the container template's name, else a docker
/// deploy template's, with `{component}` replaced; for a compose target the
/// agent's `PROJECT-SERVICE`; else the component's name.
fn container_name(target: &TargetSpec, component: &str) -> String {
    let template = target.agent.as_ref().and_then(|a| a.container.as_ref());
    let pattern = match (&target.deploy, template.and_then(|t| t.name.clone())) {
        (Some(DeployTemplate::Compose { project }), _) => {
            let project = project.clone().unwrap_or_else(|| target.name.clone());
            return format!("{project}-{component}");
        }
        (_, Some(name)) => Some(name),
        (Some(DeployTemplate::Docker { name, .. }), None) => Some(name.clone()),
        _ => None,
    };
    pattern.map_or_else(
        || component.to_owned(),
        |p| p.replace("{component}", component),
    )
}

/// One compose-lock service for the task's component: the template's
/// settings but its labels (the lock carries them for every container) and
/// its network (a service joins the project's).
fn service(template: &ContainerTemplate, request: &TaskRequest) -> ServiceSpec {
    ServiceSpec {
        name: request.component.clone(),
        workload: Some(request.component.clone()),
        image: request.image.clone(),
        revision: None,
        container: ContainerSettings {
            labels: Default::default(),
            network: None,
            ..template.container.clone()
        },
        registry_auth: None,
    }
}

/// The engine's outcome of a finished mailbox row: the agent's outcome as
/// it sent it, marked resumed when the row was delivered more than once,
/// with the agent's name before its error. A kind this build does not know
/// counts as `command`.
fn outcome_of(row: &MailStatus) -> TaskOutcome {
    let resumed = row.deliveries > 1;
    let Some(stored) = row
        .outcome
        .as_deref()
        .and_then(|o| serde_json::from_str::<StoredResult>(o).ok())
    else {
        return TaskOutcome {
            resumed,
            ..TaskOutcome::failed(
                ErrorKind::Command,
                false,
                "the agent's result could not be read",
            )
        };
    };
    let (reported, agent) = (stored.outcome, stored.agent);
    let resumed = reported.resumed || resumed;
    if reported.success {
        return TaskOutcome {
            deployed_digest: reported.deployed_digest,
            logs: reported.logs,
            resumed,
            ..TaskOutcome::succeeded()
        };
    }
    let kind = match reported.error_type {
        None | Some(ErrorKind::Unknown) => ErrorKind::Command,
        Some(kind) => kind,
    };
    let error = format!("agent {agent}: {}", reported.error.unwrap_or_default());
    TaskOutcome {
        logs: reported.logs,
        resumed,
        ..TaskOutcome::failed(kind, reported.retryable, error)
    }
}

#[async_trait]
impl Executor for AgentExecutor {
    async fn execute(
        &self,
        target: &TargetSpec,
        request: &TaskRequest,
        events: &mpsc::Sender<TaskEvent>,
    ) -> TaskOutcome {
        let agent = match self.resolve(&request.context.tenant, target).await {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        let task = match self.build(target, request) {
            Ok(t) => t,
            Err(why) => return TaskOutcome::failed(ErrorKind::Invalid, false, why.to_string()),
        };
        self.run(
            &agent,
            task,
            &request.task_id,
            i64::from(request.attempt),
            Some(events),
        )
        .await
    }

    async fn check_command(
        &self,
        target: &TargetSpec,
        request: &TaskRequest,
        command: &str,
        timeout: Duration,
    ) -> Result<(), CheckError> {
        let agent = self
            .resolve(&request.context.tenant, target)
            .await
            .map_err(|o| CheckError::Agent(o.error.unwrap_or_default()))?;
        let container = container_name(target, &request.component);
        let run_key = format!(
            "{}.check-{}",
            request.run_key(),
            uuid::Uuid::new_v4().simple()
        );
        let task = pb::Task {
            run_key: run_key.clone(),
            kind: "check".into(),
            deadline_unix_ms: now_ms() + timeout.as_millis() as i64,
            traceparent: request.traceparent.clone().unwrap_or_default(),
            payload: Some(Payload::Check(pb::HealthCheckTask {
                container,
                command: command.to_owned(),
                timeout_ms: timeout.as_millis() as u32,
            })),
            registry_auth: None,
            previous_digest: String::new(),
            artifacts: Vec::new(),
        };
        let outcome = self.run(&agent, task, "", 0, None).await;
        if outcome.success {
            Ok(())
        } else {
            Err(CheckError::Failed(
                outcome.error.unwrap_or_else(|| "check failed".into()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::container_name;
    use crate::domain::TargetSpec;

    fn target(extra: serde_json::Value) -> TargetSpec {
        let mut t = serde_json::json!({"name": "t1", "environment": "prod", "agent": {"id": "a"}});
        for (k, v) in extra.as_object().unwrap() {
            if k == "container" {
                t["agent"]["container"] = v.clone();
            } else {
                t[k] = v.clone();
            }
        }
        serde_json::from_value(t).unwrap()
    }

    #[test]
    fn health_checks_run_in_the_container_the_deploy_named() {
        assert_eq!(container_name(&target(serde_json::json!({})), "web"), "web");
        assert_eq!(
            container_name(
                &target(serde_json::json!({"container": {"name": "shop-{component}"}})),
                "web"
            ),
            "shop-web"
        );
        assert_eq!(
            container_name(
                &target(
                    serde_json::json!({"deploy": {"template": "docker", "name": "{component}-live"}})
                ),
                "web"
            ),
            "web-live"
        );
        assert_eq!(
            container_name(
                &target(serde_json::json!({"deploy": {"template": "compose"}})),
                "web"
            ),
            "t1-web"
        );
    }

    /// The mailbox row an agent's result makes, read back as the engine's
    /// outcome: rows written before the deploy contract's `TaskOutcome`
    /// (every key present) read as they did, and a row that is not an
    /// outcome is a clear failure.
    #[test]
    fn a_stored_result_reads_back_as_the_engines_outcome() {
        use super::outcome_of;
        use crate::store::agents::{MailState, MailStatus};
        use sextant_protocol::deploy::ErrorKind;
        let row = |outcome: &str, deliveries| MailStatus {
            run_key: "t.1".into(),
            task_id: "t".into(),
            attempt: 1,
            agent_id: "a".into(),
            deadline: 0,
            state: MailState::Finished,
            deliveries,
            outcome: Some(outcome.into()),
        };
        let old = r#"{"success":false,"error":"unhealthy","error_type":"health","retryable":false,"deployed_digest":"","logs":["a","b"],"replayed":false,"agent":"host-a"}"#;
        let o = outcome_of(&row(old, 1));
        assert!(!o.success);
        assert_eq!(o.error.as_deref(), Some("agent host-a: unhealthy"));
        assert_eq!(o.error_type, Some(ErrorKind::Health));
        assert_eq!(o.logs, ["a", "b"]);
        assert_eq!(o.exit_code, None);
        assert!(!o.resumed);
        let newer = r#"{"success":false,"error":"?","error_type":"quantum","retryable":true,"deployed_digest":"","logs":[],"replayed":false,"agent":"host-a"}"#;
        let o = outcome_of(&row(newer, 2));
        assert_eq!(o.error_type, Some(ErrorKind::Command), "an unknown kind");
        assert!(o.retryable && o.resumed);
        let ok = r#"{"success":true,"error":"","error_type":"","retryable":false,"deployed_digest":"sha256:1","logs":["up"],"replayed":true,"agent":"host-a"}"#;
        let o = outcome_of(&row(ok, 1));
        assert!(o.success && o.resumed);
        assert_eq!(o.deployed_digest.as_deref(), Some("sha256:1"));
        assert_eq!(o.logs, ["up"]);
        assert_eq!(o.exit_code, Some(0));
        let o = outcome_of(&row("not json", 1));
        assert!(!o.success);
        assert_eq!(
            o.error.as_deref(),
            Some("the agent's result could not be read")
        );
    }
}
