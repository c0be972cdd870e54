//! The Sextant orchestrator: promotes digest-pinned releases through
//! environments with approvals and gates, runs deployment jobs with
//! strategies over SSH or through agents, verifies health and rolls back.
//! See docs/orchestrator.md and, for the layout, docs/architecture.md.
//!
//! Components, one folder each, data flowing one way:
//! - [`api`] and [`ui`]: who is calling, and the HTTP surface over the rest;
//! - [`promotion`]: requests, approvals and gates, and the only code that
//!   moves a promotion's state;
//! - [`jobs`]: the engine that claims jobs under leases and runs their tasks
//!   by strategy, with health checks, canary analysis and rollback;
//! - [`executor`]: how one task runs on one target (SSH, or an agent);
//! - [`agents`]: the agent channel (registration, sessions, the mailbox);
//! - [`store`]: the durable state, one file per entity.

pub mod agents;
pub mod api;
pub mod app;
pub mod apply;
pub mod config;
pub mod domain;
pub mod executor;
pub mod jobs;
pub mod metrics;
pub mod promotion;
pub mod service;
pub mod store;
pub mod tag_resolver;
pub mod ui;
