//! The orchestrator service: its store, executors, hub client and outbox,
//! shared by the API, the promotion loop and the job engine.

use std::sync::Arc;
use std::time::Duration;

use sextant_exporters::outbox::Outbox;
use tokio::sync::Notify;

use crate::domain::TargetSpec;
use crate::executor::Executor;
use crate::store::{Store, StoreError};
use sextant_kit::hub::HubClient;

/// Why an operation was refused; the API maps each kind to one status and
/// a stable code.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

pub type Result<T> = std::result::Result<T, OrchestratorError>;

/// Why no executor can run a target's tasks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutorError {
    #[error(transparent)]
    Connection(#[from] crate::domain::ConnectionError),
    #[error(
        "target {target:?} uses execution model agent, which this orchestrator has no channel for yet"
    )]
    NoAgentChannel { target: String },
}

/// How the service runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This replica's name in leases.
    pub replica: String,
    /// How long a job lease lasts without renewal.
    pub lease: Duration,
    /// How often the engine looks for jobs and the promotion loop
    /// re-evaluates gates.
    pub poll: Duration,
    /// Default task timeout.
    pub task_timeout: Duration,
    /// Default attempts per task (a retry only follows a retryable error).
    pub task_attempts: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            replica: format!("orchestrator-{}", uuid::Uuid::new_v4().simple()),
            lease: Duration::from_secs(15),
            poll: Duration::from_secs(2),
            task_timeout: Duration::from_secs(600),
            task_attempts: 2,
        }
    }
}

/// Shared state of one orchestrator replica.
pub struct Orchestrator {
    pub store: Store,
    pub settings: Settings,
    pub hub: Option<HubClient>,
    pub outbox: Option<Outbox>,
    pub http: reqwest::Client,
    ssh: Arc<dyn Executor>,
    agent: Option<Arc<dyn Executor>>,
    /// The agent channel of this replica (agents, tokens, the mailbox).
    pub agents: Option<Arc<crate::agents::AgentChannel>>,
    /// Wakes the engine loop early. `notify_one` keeps the wake-up as a
    /// permit when the loop is busy claiming, so none is lost.
    pub wake: Notify,
    /// Series this replica counts itself (`sextant_workflow_runs_total`).
    pub replica_metrics: crate::metrics::ReplicaMetrics,
}

impl std::fmt::Debug for Orchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orchestrator")
            .field("backend", &self.store.backend())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Orchestrator {
    /// `ssh` runs the tasks of SSH targets (normally
    /// [`crate::executor::ssh::SshExecutor`]).
    pub fn new(
        store: Store,
        settings: Settings,
        hub: Option<HubClient>,
        outbox: Option<Outbox>,
        ssh: Arc<dyn Executor>,
    ) -> Self {
        Self {
            store,
            settings,
            hub,
            outbox,
            http: reqwest::Client::new(),
            ssh,
            agent: None,
            agents: None,
            wake: Notify::new(),
            replica_metrics: crate::metrics::ReplicaMetrics::new(),
        }
    }

    /// Sets the executor for agent targets.
    pub fn with_agent_executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.agent = Some(executor);
        self
    }

    /// Runs agent targets through `channel` (docs/agent-channel.md).
    pub fn with_agent_channel(mut self, channel: Arc<crate::agents::AgentChannel>) -> Self {
        self.agent = Some(Arc::new(crate::executor::agent::AgentExecutor::new(
            channel.clone(),
        )));
        self.agents = Some(channel);
        self
    }

    /// The executor for a target's execution model.
    pub fn executor_for(
        &self,
        target: &TargetSpec,
    ) -> std::result::Result<Arc<dyn Executor>, ExecutorError> {
        match target.connection()? {
            crate::domain::Connection::Ssh(_) => Ok(self.ssh.clone()),
            crate::domain::Connection::Agent(_) => {
                self.agent
                    .clone()
                    .ok_or_else(|| ExecutorError::NoAgentChannel {
                        target: target.name.clone(),
                    })
            }
        }
    }
}
