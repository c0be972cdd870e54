//! The Sextant agent (docs/agent.md): it observes the containers with
//! Sextant labels on one Docker engine and reports them over OTLP through a
//! durable outbox, and it executes deployments, from `sextant agent deploy`
//! or from the tasks an orchestrator sends.
//!
//! - [`app`]: `sextant agent run`, an [`app::Application`] built from an
//!   [`config::AgentConfig`] and run until its token fires, then stopped in
//!   order (new work, the tasks in hand, the outbox) under a deadline.
//! - [`config`]: the flags, their variables and the TOML file, merged by
//!   the shared layered loader and checked.
//! - [`observe`]: Docker events and a periodic resync, reported per
//!   placement.
//! - [`channel`]: the agent's side of the orchestrator channel
//!   (docs/agent-channel.md).
//! - [`executor`]: deploys a container spec or a compose-lock pinned by
//!   digest, verifies health, rolls back on failure and journals every task.

pub mod app;
pub mod channel;
pub mod config;
pub mod executor;
pub mod observe;

pub use executor::{
    EventSender, ExecuteError, Executor, ExecutorConfig, TaskEvent, TaskOutcome, TaskStatus,
};
