//! The orchestrator API's answers, as its handlers serialize them. States
//! and kinds stay strings, so a client older than the orchestrator shows a
//! new state by name instead of failing to read the page. Fields a client
//! does not read are left out (serde ignores them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who the API takes the caller for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    pub tenant: String,
    /// The actor recorded in events and approvals.
    pub actor: String,
    /// The caller may change state, not only read (an older orchestrator
    /// does not say: taken as yes, and its API still refuses).
    #[serde(default = "yes")]
    pub can_change: bool,
}

fn yes() -> bool {
    true
}

/// An environment, in promotion order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentSpec {
    pub name: String,
    #[serde(default)]
    pub order: Option<i64>,
    #[serde(default)]
    pub production: bool,
    #[serde(default)]
    pub required_approvals: u32,
    #[serde(default)]
    pub approvers: Vec<String>,
    /// The requester may not approve their own promotion.
    #[serde(default = "yes")]
    pub separation_of_duties: bool,
    /// The gates, as the orchestrator writes them (`{"type": "manual", "name": …}`).
    #[serde(default)]
    pub gates: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentSpec {
    pub name: String,
    pub image: String,
    /// The hub application (none: `default`).
    #[serde(default)]
    pub application: Option<String>,
    #[serde(default)]
    pub workspace: Option<String>,
}

/// A target: where a job deploys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSpec {
    pub name: String,
    pub environment: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One component of a release, pinned by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseComponent {
    pub component: String,
    /// `repository@sha256:…`
    pub image: String,
    pub digest: String,
    #[serde(default)]
    pub tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub id: String,
    pub name: String,
    /// `draft` or `finalized`.
    pub status: String,
    pub components: Vec<ReleaseComponent>,
    pub created_by: String,
    pub created_at: String,
    #[serde(default)]
    pub finalized_at: Option<String>,
}

/// A promotion with the links of its trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionView {
    pub id: String,
    pub release_id: String,
    /// The release's name.
    pub release: String,
    pub environment: String,
    /// `requested`, `awaiting_approval`, `approved`, `rejected`,
    /// `deploying`, `deployed`, `failed`, `rolled_back`, `cancelled`.
    pub state: String,
    pub requested_by: String,
    /// The strategy, as the orchestrator writes it (`{"type": "rolling", …}`).
    #[serde(default)]
    pub strategy: Value,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub job_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub trace_url: Option<String>,
    #[serde(default)]
    pub logs_url: Option<String>,
}

/// A state change, with who made it and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEvent {
    pub at: String,
    pub actor: String,
    #[serde(default)]
    pub from: Option<String>,
    pub to: String,
    #[serde(default)]
    pub detail: Option<String>,
}

/// An approval or a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub approver: String,
    /// `approve` or `reject`.
    pub decision: String,
    #[serde(default)]
    pub comment: Option<String>,
    pub at: String,
}

/// The decision record: each gate's and approval's result, written once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub outcome: String,
    pub record: Value,
    pub decided_at: String,
}

/// A promotion with its trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionDetail {
    #[serde(flatten)]
    pub promotion: PromotionView,
    #[serde(default)]
    pub events: Vec<StateEvent>,
    #[serde(default)]
    pub approvals: Vec<Approval>,
    #[serde(default)]
    pub decision: Option<DecisionRecord>,
}

/// A deployment job with the links of its trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: String,
    /// `deploy` or `rollback`.
    pub kind: String,
    #[serde(default)]
    pub promotion_id: Option<String>,
    #[serde(default)]
    pub parent_job_id: Option<String>,
    pub release_id: String,
    pub release: String,
    pub environment: String,
    #[serde(default)]
    pub strategy: Value,
    /// `pending`, `preparing`, `running`, `completing`, `completed`,
    /// `failed`, `rolling_back`, `rolled_back`, `cancelled`.
    pub state: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub failure: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub trace_url: Option<String>,
    #[serde(default)]
    pub logs_url: Option<String>,
}

/// One task of a job: one component on one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub position: i64,
    /// Strategy batch (rolling batch or canary stage), from 0.
    pub batch: i64,
    pub kind: String,
    pub target: String,
    pub component: String,
    pub image: String,
    pub digest: String,
    #[serde(default)]
    pub previous_digest: Option<String>,
    /// `pending`, `queued`, `dispatched`, `running`, `verifying`,
    /// `succeeded`, `failed`, `retrying`, `skipped`.
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
}

/// A job with its tasks, events and the rollback job made for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: JobView,
    #[serde(default)]
    pub rollback_job_id: Option<String>,
    #[serde(default)]
    pub tasks: Vec<Task>,
    #[serde(default)]
    pub events: Vec<StateEvent>,
}

/// One line of a task's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLogLine {
    /// Increasing: ask for the lines `after` the last one read.
    pub id: i64,
    pub attempt: i64,
    pub at: String,
    /// `stdout`, `stderr` or `system`.
    pub stream: String,
    pub line: String,
}

/// A task in an agent's mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentTask {
    pub run_key: String,
    pub task_id: String,
    pub kind: String,
    /// `queued`, `delivered` or `running`.
    pub state: String,
}

/// An agent: status, version, labels, heartbeat and current tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentView {
    pub id: String,
    pub name: String,
    pub version: String,
    /// `online`, `degraded`, `offline` or `revoked`.
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    pub registered_at: String,
    #[serde(default)]
    pub revoked_at: Option<String>,
    #[serde(default)]
    pub last_heartbeat: Option<String>,
    #[serde(default)]
    pub heartbeat_age_seconds: Option<f64>,
    #[serde(default)]
    pub current_tasks: Vec<CurrentTask>,
}

/// A one-time registration token, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentToken {
    pub token: String,
    pub expires_at: String,
}
