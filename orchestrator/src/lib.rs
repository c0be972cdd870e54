//! The Sextant orchestrator: promotes digest-pinned releases through
//! environments with approvals and gates, runs deployment jobs with
//! strategies over SSH (and agents, issue 6), verifies health and rolls back.
//! See docs/orchestrator.md.

pub mod agents;
pub mod api;
pub mod artifacts;
pub mod auth;
pub mod config;
pub mod desired;
pub mod engine;
pub mod executor;
pub mod gates;
pub mod health;
pub mod metrics;
pub mod model;
pub mod promotion;
pub mod registry;
pub mod runtime;
pub mod service;
pub mod service_health;
pub mod store;
pub mod strategy;
pub mod ui;
