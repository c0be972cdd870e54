//! The orchestrator's domain: environments, targets, components, releases,
//! promotions, jobs and tasks, with the state machines that move them.
//!
//! Configuration types (environments, targets, components) are the same in
//! the declarative YAML file (`sextant apply -f`), the API and the store, so
//! one schema is documented once (docs/orchestrator.md).

pub mod failure;
pub mod health;
pub mod strategy;
pub mod task;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

mod state;

/// The deploy contract's one duration type (`250ms`, `30s`, `5m`, `1h30m`),
/// under the name the orchestrator's documents and flags use.
pub use sextant_protocol::deploy::{DurationError as SpanError, HumanDuration as Span};
pub use sextant_protocol::deploy::{HealthCheck, Probe, ProbeCommand};
pub use state::{JobKind, JobState, PromotionState, TaskState, UnknownState};

// ---------------------------------------------------------------------------
// Configuration: environments, targets, components
// ---------------------------------------------------------------------------

/// A weekly freeze window in UTC: no promotion into the environment while it
/// is open. `days` empty means every day. A window whose end is before its
/// start runs over midnight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeWindow {
    pub name: String,
    /// Days of the week, `mon` … `sun`; empty is every day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
    /// `HH:MM`, UTC.
    pub start: String,
    /// `HH:MM`, UTC.
    pub end: String,
}

/// One gate a promotion into an environment must pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum GateSpec {
    /// Refuses while one of the environment's freeze windows is open.
    Freeze,
    /// Waits until someone opens it (`sextant gate open`), or refuses when
    /// someone closes it.
    Manual { name: String },
    /// The same release has been healthy in the previous environment for at
    /// least `for`, answered by the hub's rollout API.
    PreviousEnvironmentHealthy {
        #[serde(rename = "for")]
        for_: Span,
    },
    /// An HTTP policy webhook answering `{"decision": "allow"|"deny"|"pending"}`.
    Webhook {
        name: String,
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout: Option<Span>,
    },
}

impl GateSpec {
    /// A stable name for the decision record.
    pub fn name(&self) -> String {
        match self {
            GateSpec::Freeze => "freeze".into(),
            GateSpec::Manual { name } => format!("manual:{name}"),
            GateSpec::PreviousEnvironmentHealthy { .. } => "previous-environment-healthy".into(),
            GateSpec::Webhook { name, .. } => format!("webhook:{name}"),
        }
    }
}

/// An environment, in promotion order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSpec {
    pub name: String,
    /// Position in the promotion order (dev 1, stage 2, prod 3 …). Defaults
    /// to the position in the file.
    #[serde(default)]
    pub order: Option<i64>,
    #[serde(default)]
    pub production: bool,
    /// Approvals needed (N of the `approvers`).
    #[serde(default)]
    pub required_approvals: u32,
    /// Who may approve; empty means anyone but the requester.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// The requester may not approve their own promotion (default true).
    #[serde(default = "yes")]
    pub separation_of_duties: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freeze_windows: Vec<FreezeWindow>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<GateSpec>,
    /// What happens when a deploy job into this environment fails:
    /// `automatic` (the default) rolls the targets it touched back at once;
    /// `manual` leaves the job and its promotion `failed` for an operator
    /// to roll back (`sextant rollback JOB`) or fix forward.
    #[serde(default, skip_serializing_if = "RollbackPolicy::is_automatic")]
    pub rollback: RollbackPolicy,
}

/// An environment's rollback policy on failure (`rollback:` in the YAML).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RollbackPolicy {
    /// A failed deploy job (a task past tolerance, a canary breach) rolls
    /// back by itself.
    #[default]
    Automatic,
    /// A failed deploy job stays `failed`; rollback only on request.
    Manual,
}

impl RollbackPolicy {
    pub fn is_automatic(&self) -> bool {
        *self == RollbackPolicy::Automatic
    }
}

fn yes() -> bool {
    true
}

/// Where an agent target's tasks go: an agent by id, or the one agent whose
/// labels match `selector` (a target is one host, so a selector matching
/// two agents is refused). See docs/agent-channel.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentConnection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// How the agent runs each component's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerTemplate>,
}

sextant_protocol::with_container_settings! {
    /// How an agent target's tasks run each component's container: a name
    /// pattern and, flat beside it, the deploy contract's
    /// [`ContainerSettings`](sextant_protocol::deploy::ContainerSettings)
    /// (labels, env, ports, volumes, command, network, restart,
    /// stop_timeout, health; docs/agent.md). The image, the `sextant.`
    /// labels and the task id come from the task. An unknown key is refused.
    #[derive(Debug, Clone, PartialEq, Default, Serialize, ToSchema)]
    pub struct ContainerTemplate {
        /// The container name; `{component}` is replaced (default: the
        /// component's name).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub name: Option<String>,
    }
}

/// How a target is reached: its execution model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Connection<'a> {
    Agent(&'a AgentConnection),
    Ssh(&'a SshConnection),
}

impl Connection<'_> {
    pub fn execution(&self) -> &'static str {
        match self {
            Connection::Agent(_) => "agent",
            Connection::Ssh(_) => "ssh",
        }
    }
}

/// SSH connection details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SshConnection {
    pub host: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    pub user: String,
    /// A credential reference: `file:/path/to/private_key`.
    pub credential: String,
    /// The pinned host key (`ssh-ed25519 AAAA…`). Without it, the host is
    /// looked up in `known_hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// A known_hosts file (default: the orchestrator's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<String>,
    /// Accept and record an unknown host key on first use.
    #[serde(default)]
    pub trust_on_first_use: bool,
    /// Where artifacts are uploaded (default `.sextant` in the user's home).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<String>,
}

fn default_ssh_port() -> u16 {
    22
}

/// What runs on an SSH target to deploy (and, for blue-green, to switch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "template", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeployTemplate {
    /// `docker compose -f compose-lock.yml up -d` in the artifact directory.
    Compose {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        project: Option<String>,
    },
    /// `docker pull` by digest, then replace the container `name`.
    Docker {
        name: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args: Vec<String>,
    },
    /// A shell command of your own.
    Custom {
        command: String,
        /// Run to switch traffic in a blue-green deployment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        switch: Option<String>,
    },
}

/// A deployment target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub name: String,
    pub environment: String,
    /// Execution model `ssh`: how to reach the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshConnection>,
    /// Execution model `agent`: which agent runs the tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentConnection>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployTemplate>,
    /// The orchestrator's own check once a deploy task has succeeded, in
    /// the deploy contract's shape (`check: http|tcp|command|none`, see
    /// [`health`]); the older flat spelling (`http:`, `tcp:`, `command:`)
    /// is still read.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "health::read"
    )]
    #[schema(value_type = Option<Object>)]
    pub health: Option<HealthCheck>,
    /// Extra variables exported to the deploy command.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// The hub's target name for this target's desired state (default: the
    /// target's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_target: Option<String>,
}

/// A target that does not name exactly one execution model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error("target {target:?} names both ssh and agent; pick one execution model")]
    Both { target: String },
    #[error("target {target:?} names neither ssh nor agent")]
    Neither { target: String },
}

impl TargetSpec {
    /// The target's execution model; exactly one of `ssh` or `agent`.
    pub fn connection(&self) -> Result<Connection<'_>, ConnectionError> {
        match (&self.ssh, &self.agent) {
            (Some(ssh), None) => Ok(Connection::Ssh(ssh)),
            (None, Some(agent)) => Ok(Connection::Agent(agent)),
            (Some(_), Some(_)) => Err(ConnectionError::Both {
                target: self.name.clone(),
            }),
            (None, None) => Err(ConnectionError::Neither {
                target: self.name.clone(),
            }),
        }
    }

    /// The hub's target name.
    pub fn hub_target(&self) -> &str {
        self.hub_target.as_deref().unwrap_or(&self.name)
    }
}

/// A component: one image repository, reported to the hub as a workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    pub name: String,
    /// `registry/repository`, without tag or digest.
    pub image: String,
    /// The hub application (default: `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// The hub workspace (default: `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

// ---------------------------------------------------------------------------
// Releases
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    Draft,
    Finalized,
}

/// One component of a release, pinned by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseComponent {
    pub component: String,
    /// `repository@sha256:…`
    pub image: String,
    pub digest: String,
    /// The tag it was resolved from, if any (kept for the record only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Release {
    pub id: String,
    pub name: String,
    pub status: ReleaseStatus,
    pub components: Vec<ReleaseComponent>,
    pub created_by: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalized_at: Option<String>,
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// How a job rolls over its targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Strategy {
    /// Every target at once, at most `max_parallel` at a time (0: no limit).
    AllAtOnce {
        #[serde(default)]
        max_parallel: u32,
    },
    /// `batch_size` targets at a time; stops when more than `max_unavailable`
    /// targets have failed; waits `pause` between batches.
    Rolling {
        #[serde(default = "one")]
        batch_size: u32,
        #[serde(default)]
        max_unavailable: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pause: Option<Span>,
    },
    /// Stages over the targets (percentages, ascending to 100). Between
    /// stages: health, the hub's rollout status and an optional Prometheus
    /// threshold; a breach rolls back.
    Canary {
        stages: Vec<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        analysis: Option<CanaryAnalysis>,
    },
    /// Start the new version beside the old one, verify, switch, keep the old
    /// one for an instant rollback.
    BlueGreen {},
}

fn one() -> u32 {
    1
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy::AllAtOnce { max_parallel: 0 }
    }
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::AllAtOnce { .. } => "all_at_once",
            Strategy::Rolling { .. } => "rolling",
            Strategy::Canary { .. } => "canary",
            Strategy::BlueGreen {} => "blue_green",
        }
    }
}

/// What a canary checks between stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryAnalysis {
    /// How long to watch each stage before deciding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Span>,
    /// Require the hub to report the stage's hosts as succeeded.
    #[serde(default)]
    pub hub_rollout: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusThreshold>,
}

/// A Prometheus instant query whose value must stay at or below `max`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusThreshold {
    /// Base URL, e.g. `http://127.0.0.1:9090`.
    pub url: String,
    pub query: String,
    pub max: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_from_yaml() {
        let yaml = r#"
name: web-1
environment: dev
ssh:
  host: 127.0.0.1
  port: 2222
  user: deploy
  credential: file:/keys/id_ed25519
  host_key: ssh-ed25519 AAAA
deploy:
  template: custom
  command: ./deploy.sh
health:
  http: http://127.0.0.1:8080/health
  retries: 3
"#;
        let t: TargetSpec = serde_norway::from_str(yaml).unwrap();
        let Ok(Connection::Ssh(ssh)) = t.connection() else {
            panic!("not ssh")
        };
        assert_eq!(ssh.port, 2222);
        let health = t.health.as_ref().unwrap();
        assert_eq!(health.retries, Some(3));
        assert!(matches!(health.probe, Probe::Http { .. }));
        let bad = yaml.replace("user: deploy", "usr: deploy");
        assert!(serde_norway::from_str::<TargetSpec>(&bad).is_err());
    }

    /// An agent target's container template is the deploy contract's
    /// settings beside a name pattern, read as YAML writes them; a
    /// misspelt key is refused by name.
    #[test]
    fn container_templates_read_flat_and_refuse_unknown_keys() {
        let yaml = r#"
name: edge-1
environment: dev
agent:
  id: a-1
  container:
    name: "{component}-live"
    env: {PORT: 8080}
    stop_timeout: 5s
    health: {check: http, url: "http://{ip}:{port:8080}/"}
"#;
        let t: TargetSpec = serde_norway::from_str(yaml).unwrap();
        let template = t.agent.unwrap().container.unwrap();
        assert_eq!(template.name.as_deref(), Some("{component}-live"));
        assert_eq!(template.container.env["PORT"], "8080");
        assert_eq!(template.container.health.probe_name(), "http");
        let err =
            serde_norway::from_str::<TargetSpec>(&yaml.replace("stop_timeout", "stop_timout"))
                .unwrap_err();
        assert!(err.to_string().contains("stop_timout"), "{err}");
    }

    /// A target's `health:` takes the deploy contract's shape, as the
    /// agent's container health does.
    #[test]
    fn target_health_takes_the_check_shape() {
        let yaml = r#"
name: web-1
environment: dev
ssh: {host: 127.0.0.1, user: deploy, credential: file:/k}
health:
  check: http
  url: http://127.0.0.1:8080/health
  expect_status: 204
  retries: 3
"#;
        let t: TargetSpec = serde_norway::from_str(yaml).unwrap();
        assert!(t.health.is_some());
    }
}
