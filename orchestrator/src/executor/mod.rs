//! Executors run a task on a target: over SSH (`ssh`), or through an
//! agent's channel (`crate::agents`).
//!
//! The contract is the one an agent's task stream carries, so the two
//! executors are interchangeable for the job engine:
//! - a [`TaskRequest`] names its idempotency key (`task_id` and `attempt`),
//!   a deadline, the digest-pinned image, the previous digest for rollback,
//!   the artifacts and the W3C `traceparent`;
//! - while it runs, [`TaskEvent`]s stream status and log lines back;
//! - it ends in one [`TaskOutcome`] (the deploy contract's, which an agent
//!   reports too): success, or an error with its `ErrorKind` and whether
//!   a retry may help; the SSH executor adds the command's exit code and
//!   output, an agent its container's last log lines.
//!
//! **Never twice.** Executing a request whose key already ran on the target
//! returns the recorded outcome (or waits for the run still in progress)
//! instead of running it again. This is what makes an orchestrator restart
//! mid-task safe: the engine re-executes every task it finds dispatched, and
//! the executor resumes it.

pub mod agent;
pub mod ssh;

pub use agent::AgentExecutor;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::domain::TargetSpec;
use sextant_protocol::deploy::TaskOutcome;

use crate::domain::task::{Artifact, LogStream, TaskKind};

/// One task for one target.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    /// The idempotency key, with `attempt`: the same key never runs twice.
    pub task_id: String,
    /// 1 for the first attempt; a retry is a new attempt and runs again.
    pub attempt: u32,
    pub kind: TaskKind,
    /// Release name (`SEXTANT_RELEASE`).
    pub release: String,
    /// The release's id (`SEXTANT_RELEASE_ID`).
    pub release_id: String,
    pub component: String,
    /// `repository@sha256:…`
    pub image: String,
    /// `sha256:…`
    pub digest: String,
    /// The digest running before this task (for rollback), if known.
    pub previous_digest: Option<String>,
    /// Blue-green slot (`blue` or `green`) this task deploys or switches to.
    pub slot: Option<String>,
    pub artifacts: Vec<Artifact>,
    /// How long the task may take, from its start.
    pub timeout: Duration,
    /// W3C trace context of the dispatching span.
    pub traceparent: Option<String>,
    /// Extra variables for the command (the target's `vars`).
    pub vars: BTreeMap<String, String>,
    /// Where the task comes from.
    pub context: TaskContext,
}

/// The job a task belongs to: what an agent labels its containers with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskContext {
    pub tenant: String,
    pub job_id: String,
    pub environment: String,
    /// The hub application of the component.
    pub application: String,
}

impl TaskRequest {
    /// The key under which the target records this run.
    pub fn run_key(&self) -> String {
        format!("{}.{}", self.task_id, self.attempt)
    }
}

/// Something a task reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEvent {
    /// The task moved on (e.g. `running` once the command started).
    Status(String),
    Log {
        stream: LogStream,
        line: String,
    },
}

/// Why a health-check command did not pass, for either executor.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// An SSH check on a target without an `ssh` connection.
    #[error("target {target:?} has no ssh connection")]
    NoSsh { target: String },
    /// The SSH connection could not be set up or made.
    #[error(transparent)]
    Connect(#[from] ssh::ConnectError),
    /// The SSH session failed while the check ran.
    #[error("the check failed over SSH: {source}")]
    Ssh {
        #[source]
        source: russh::Error,
    },
    /// The check outlived its timeout; `tail` is `: <last lines>` of its
    /// output, or empty.
    #[error("the check timed out after {}{tail}", ssh::human(*after))]
    TimedOut { after: Duration, tail: String },
    /// The check exited non-zero; `tail` as for `TimedOut`.
    #[error("the check exited with {code}{tail}")]
    Exited { code: u32, tail: String },
    /// The target's agent cannot take the check (unknown, revoked …).
    #[error("{0}")]
    Agent(String),
    /// The agent ran the check and reported it failed.
    #[error("{0}")]
    Failed(String),
}

/// Runs tasks on targets of one execution model.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Runs `request` on `target`, or resumes it if its run key already ran
    /// there (see the module docs). Streams progress into `events` (a closed
    /// receiver is not an error).
    async fn execute(
        &self,
        target: &TargetSpec,
        request: &TaskRequest,
        events: &mpsc::Sender<TaskEvent>,
    ) -> TaskOutcome;

    /// Runs a health-check command on `target` after `request` ran there;
    /// `Ok` on exit 0, else why not.
    async fn check_command(
        &self,
        target: &TargetSpec,
        request: &TaskRequest,
        command: &str,
        timeout: Duration,
    ) -> Result<(), CheckError>;
}
