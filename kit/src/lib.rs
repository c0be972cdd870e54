//! What Sextant's services and clients share, so that each piece is
//! written once:
//!
//! - the service half: [`config`] (one layered loader: defaults, file,
//!   environment, flags), [`serve`] (listeners with timeouts, a connection
//!   cap, TLS and client certificates), [`health`], [`rate_limit`],
//!   [`http_metrics`] and Prometheus [`exposition`] (classic and
//!   OpenMetrics, with exemplars), [`trace`] (a request's W3C trace
//!   context), [`links`] (trace and log links from URL templates), [`api_error`] (one error body, store
//!   errors as 503 with no detail), [`database`] (URLs redacted for
//!   logs) and [`shutdown`] (stages stopped in order, each under a
//!   deadline);
//! - the client half: the typed client of the hub's read API
//!   ([`hub::HubClient`]), used by the CLI and the orchestrator, and the
//!   client of the orchestrator's API ([`orchestrator::OrchestratorClient`]),
//!   used by the CLI and the hub's UI;
//! - one [`Secret`] type that never prints its value.
//!
//! This crate depends on `sextant-model` for the hub's contract and on no
//! service crate: the hub, the orchestrator and the agent all use it.

pub mod api_error;
pub mod config;
pub mod database;
pub mod exposition;
pub mod health;
pub mod http_metrics;
pub mod hub;
pub mod links;
pub mod orchestrator;
pub mod rate_limit;
pub mod secret;
pub mod serve;
pub mod shutdown;
pub mod trace;

pub use secret::Secret;
