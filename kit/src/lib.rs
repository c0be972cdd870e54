//! What Sextant's services and clients share. For now that is the typed
//! client of the hub's read API ([`hub::HubClient`]), used by the CLI and
//! meant for the orchestrator; the pieces every service repeats move here
//! next.
//!
//! This crate depends on `sextant-model` for the hub's contract and on no
//! service crate: the hub, the orchestrator and the agent may all use it.

pub mod hub;
pub mod secret;

pub use secret::Secret;
