//! The orchestrator's domain: environments, targets, components, releases,
//! promotions, jobs and tasks, with the state machines that move them.
//!
//! Configuration types (environments, targets, components) are the same in
//! the declarative YAML file (`sextant apply -f`), the API and the store, so
//! one schema is documented once (docs/orchestrator.md).

pub mod failure;
pub mod strategy;
pub mod task;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A duration written as `30s`, `5m`, `1h30m` or `250ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span(pub Duration);

/// Why a duration does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    #[error("empty duration")]
    Empty,
    #[error("invalid duration {text:?}: expected a number")]
    NoNumber { text: String },
    #[error("invalid duration {text:?}")]
    Number { text: String },
    #[error("invalid duration {text:?}: unknown unit {unit:?} (use ms, s, m, h or d)")]
    Unit { text: String, unit: String },
}

impl Span {
    pub const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }

    pub fn parse(text: &str) -> Result<Self, SpanError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SpanError::Empty);
        }
        let mut total = Duration::ZERO;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(SpanError::NoNumber {
                    text: text.to_owned(),
                });
            }
            let n: u64 = rest[..digits].parse().map_err(|_| SpanError::Number {
                text: text.to_owned(),
            })?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            total += match unit {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n * 60),
                "h" => Duration::from_secs(n * 3600),
                "d" => Duration::from_secs(n * 86_400),
                other => {
                    return Err(SpanError::Unit {
                        text: text.to_owned(),
                        unit: other.to_owned(),
                    });
                }
            };
        }
        Ok(Self(total))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Span::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Span {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("A duration such as `30s`, `5m`, `1h30m` or `250ms`."))
            .examples(["30s"])
            .into()
    }
}

impl ToSchema for Span {}

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

/// A health probe run after a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthProbe<'a> {
    /// GET `url`; healthy on `expect_status` (default: any 2xx).
    Http {
        url: &'a str,
        expect_status: Option<u16>,
    },
    /// A TCP connect to `host:port`.
    Tcp { address: &'a str },
    /// A shell command run on the target (over SSH); healthy on exit 0.
    Command { command: &'a str },
}

/// A health check with retries: exactly one of `http`, `tcp` or `command`.
/// Healthy as soon as one probe passes; failed after `retries` failed probes
/// `interval` apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// GET this URL; healthy on `expect_status` (default: any 2xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<u16>,
    /// Connect to this `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    /// Run this shell command on the target; healthy on exit 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default = "default_probe_timeout")]
    pub timeout: Span,
    #[serde(default = "default_probe_interval")]
    pub interval: Span,
    #[serde(default = "default_probe_retries")]
    pub retries: u32,
}

/// A health check that does not name exactly one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a health check names exactly one of http, tcp or command")]
pub struct ProbeCountError;

impl HealthCheck {
    /// The one probe this check runs.
    pub fn probe(&self) -> Result<HealthProbe<'_>, ProbeCountError> {
        match (&self.http, &self.tcp, &self.command) {
            (Some(url), None, None) => Ok(HealthProbe::Http {
                url,
                expect_status: self.expect_status,
            }),
            (None, Some(address), None) => Ok(HealthProbe::Tcp { address }),
            (None, None, Some(command)) => Ok(HealthProbe::Command { command }),
            _ => Err(ProbeCountError),
        }
    }
}

fn default_probe_timeout() -> Span {
    Span::secs(5)
}
fn default_probe_interval() -> Span {
    Span::secs(2)
}
fn default_probe_retries() -> u32 {
    5
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

/// The container settings an agent target's tasks carry, in the agent's
/// deploy-spec format (docs/agent.md); the image, the `sextant.` labels and
/// the task id come from the task.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerTemplate {
    /// The container name; `{component}` is replaced (default: the
    /// component's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// More container labels (the `sextant.` ones are the agent's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub ports: Vec<sextant_protocol::deploy::PortSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default)]
    #[schema(value_type = String)]
    pub restart: sextant_protocol::deploy::RestartPolicy,
    /// The agent's own check of the new container (docker, http, tcp or
    /// command); on failure the agent restores the previous container.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub health: sextant_protocol::deploy::HealthCheck,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
// State machines
// ---------------------------------------------------------------------------

macro_rules! state_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownState;
            fn from_str(s: &str) -> Result<Self, UnknownState> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownState {
                        kind: stringify!($name),
                        value: other.to_owned(),
                    }),
                }
            }
        }
    };
}

/// A state (or kind) name that is not one of its enum's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownState {
    /// The enum's name, e.g. `PromotionState`.
    pub kind: &'static str,
    pub value: String,
}

state_enum!(
    /// The life of a promotion.
    PromotionState {
        Requested => "requested",
        AwaitingApproval => "awaiting_approval",
        Approved => "approved",
        Rejected => "rejected",
        Deploying => "deploying",
        Deployed => "deployed",
        Failed => "failed",
        RolledBack => "rolled_back",
        Cancelled => "cancelled",
    }
);

impl PromotionState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Rejected | Self::Deployed | Self::Failed | Self::RolledBack | Self::Cancelled
        )
    }

    pub fn can_move_to(self, next: Self) -> bool {
        use PromotionState::*;
        matches!(
            (self, next),
            (
                Requested,
                AwaitingApproval | Approved | Rejected | Cancelled
            ) | (AwaitingApproval, Approved | Rejected | Cancelled)
                | (Approved, Deploying | Cancelled)
                | (Deploying, Deployed | Failed | RolledBack)
                | (Failed, RolledBack)
                | (Deployed, RolledBack)
        )
    }
}

state_enum!(
    /// The life of a deployment job.
    JobState {
        Pending => "pending",
        Preparing => "preparing",
        Running => "running",
        Completing => "completing",
        Completed => "completed",
        Failed => "failed",
        RollingBack => "rolling_back",
        RolledBack => "rolled_back",
        Cancelled => "cancelled",
    }
);

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::RolledBack | Self::Cancelled
        )
    }

    pub fn can_move_to(self, next: Self) -> bool {
        use JobState::*;
        matches!(
            (self, next),
            (Pending, Preparing | Failed | Cancelled)
                | (Preparing, Running | Failed | Cancelled)
                | (Running, Completing | Failed | RollingBack | Cancelled)
                | (Completing, Completed | Failed)
                | (Failed, RollingBack)
                | (Completed, RollingBack)
                | (RollingBack, RolledBack | Failed)
        )
    }
}

state_enum!(
    /// The life of one task: one component on one target.
    TaskState {
        Pending => "pending",
        Queued => "queued",
        Dispatched => "dispatched",
        Running => "running",
        Verifying => "verifying",
        Succeeded => "succeeded",
        Failed => "failed",
        Retrying => "retrying",
        Skipped => "skipped",
    }
);

impl TaskState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Skipped)
    }

    pub fn can_move_to(self, next: Self) -> bool {
        use TaskState::*;
        matches!(
            (self, next),
            (Pending, Queued | Skipped)
                | (Queued, Dispatched | Failed | Skipped)
                | (Dispatched, Running | Failed | Retrying)
                | (Running, Verifying | Succeeded | Failed | Retrying)
                | (Verifying, Succeeded | Failed | Retrying)
                | (Retrying, Queued | Failed)
        )
    }
}

state_enum!(
    /// What a job does.
    JobKind {
        Deploy => "deploy",
        Rollback => "rollback",
    }
);

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
    fn spans_parse_and_print() {
        assert_eq!(Span::parse("1h30m").unwrap().0, Duration::from_secs(5400));
        assert_eq!(Span::parse("250ms").unwrap().0, Duration::from_millis(250));
        assert_eq!(Span::parse("90s").unwrap().to_string(), "90s");
        assert_eq!(Span::parse("2m").unwrap().to_string(), "2m");
        assert!(Span::parse("5 minutes").is_err());
        assert!(Span::parse("m").is_err());
    }

    #[test]
    fn state_machines_refuse_skips() {
        assert!(JobState::Pending.can_move_to(JobState::Preparing));
        assert!(!JobState::Pending.can_move_to(JobState::Completed));
        assert!(TaskState::Verifying.can_move_to(TaskState::Succeeded));
        assert!(!TaskState::Succeeded.can_move_to(TaskState::Running));
        assert!(PromotionState::AwaitingApproval.can_move_to(PromotionState::Approved));
        assert!(!PromotionState::Rejected.can_move_to(PromotionState::Approved));
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), *s);
        }
    }

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
        assert_eq!(health.retries, 3);
        assert!(matches!(health.probe(), Ok(HealthProbe::Http { .. })));
        let bad = yaml.replace("user: deploy", "usr: deploy");
        assert!(serde_norway::from_str::<TargetSpec>(&bad).is_err());
    }
}
