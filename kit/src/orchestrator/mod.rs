//! The client of the orchestrator's REST API (`/api/v1/…`), used by the
//! CLI's orchestrator commands and by the hub's UI.
//!
//! [`OrchestratorClient`] sends the caller's bearer token (or, against an
//! orchestrator without tokens, the `X-Sextant-Actor` header) and turns the
//! API's error body (`{"error": {"code", "message"}}`) into
//! [`OrchestratorError::Api`], so a caller can show the API's own words.
//! [`types`] holds the answers the hub's UI reads, as the orchestrator
//! serializes them; its own crate checks that they stay in step
//! (`orchestrator/tests/client_contract.rs`).

mod client;
pub mod types;

pub use client::{Body, OrchestratorClient, OrchestratorError, PageQuery};
pub use types::*;
