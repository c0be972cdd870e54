//! What a task reports while it runs ([`TaskEvent`]) and when it ends
//! ([`TaskOutcome`]).

use serde::{Deserialize, Serialize};

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// The new container(s) run and are healthy.
    Succeeded,
    /// Nothing was deployed, or a rollback was impossible or failed too.
    Failed,
    /// The new container failed; the previous one runs again and is healthy.
    RolledBack,
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
        })
    }
}

/// The container a deploy replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousContainer {
    pub id: String,
    /// The image reference it was created from.
    pub image: String,
    /// Its `sextant.revision` label, or its image id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Its `sextant.task` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
}

/// The result of one service of a compose-lock apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceOutcome {
    pub service: String,
    pub container: String,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousContainer>,
    pub message: String,
}

/// The recorded result of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOutcome {
    pub task_id: String,
    pub status: TaskStatus,
    /// The digest now running from this task (none unless it succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_digest: Option<String>,
    /// The container running now for this task's name: the new one on
    /// success, the restored one after a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// What ran before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousContainer>,
    /// What happened, for people: on failure, why.
    pub message: String,
    /// The failed container's last log lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
    /// Compose-lock only: each service in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceOutcome>,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    pub finished_at: u64,
    /// True when this outcome was read back from the journal for a repeated
    /// task id and nothing was done; never stored.
    #[serde(default, skip_serializing)]
    pub replayed: bool,
}

/// A step of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Accepted,
    Pulling,
    Creating,
    StoppingOld,
    Starting,
    Verifying,
    Healthy,
    Unhealthy,
    RollingBack,
    Cleanup,
    Finished,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

/// Streamed while a task runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TaskEvent {
    /// A step began or ended.
    Status {
        task_id: String,
        /// The container the step is about.
        container: String,
        phase: Phase,
        message: String,
    },
    /// A line the container printed.
    Log {
        task_id: String,
        container: String,
        line: String,
    },
    /// The task ended.
    Finished { outcome: Box<TaskOutcome> },
}
