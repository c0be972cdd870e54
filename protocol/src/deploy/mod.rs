//! The deploy contract between the orchestrator and its agents: what to
//! deploy (a container spec or a compose-lock, pinned by digest, with its
//! ports, restart policy, health check and registry credentials), the
//! labels an agent puts on the containers it manages, and how a task ended.
//!
//! The orchestrator builds these values and sends them as JSON inside the
//! channel's `Task` messages (see docs/agent-channel.md); the agent parses,
//! validates and runs them (docs/agent.md). Keeping them here, beside the
//! protobuf types, lets both sides share one definition without the
//! orchestrator depending on the agent. No I/O.

mod compose;
mod container;
mod duration;
mod error;
mod health;
pub mod labels;
mod outcome;
mod spec;

pub use compose::{ComposeLock, ServiceSpec};
pub use container::ContainerSettings;
pub use duration::HumanDuration;
pub use error::{DurationError, ProbeCommandError, RestartPolicyError, SpecError};
pub use health::{HealthCheck, HealthTiming, Probe, ProbeCommand};
pub use outcome::{ErrorKind, TaskOutcome};
pub use spec::{DeploySpec, ImageRef, PortSpec, RegistryAuth, RestartPolicy};
