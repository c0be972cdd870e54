//! The Sextant agent. Today: the Docker executor, a library that deploys a
//! container spec or a compose-lock pinned by digest, verifies health, rolls
//! back on failure and records every task (see `docs/agent.md`).

pub mod app;
pub mod channel;
pub mod config;
pub mod executor;
pub mod observe;

pub use executor::{
    EventSender, ExecuteError, Executor, ExecutorConfig, TaskEvent, TaskOutcome, TaskStatus,
};
