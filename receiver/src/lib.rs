//! The Sextant hub: the OTLP receiver, the hub store and the read API.
//!
//! Data flows one way: OTLP arrives at [`otlp`], is validated into
//! `sextant_model` events, and is written by [`store`]; [`api`] and [`ui`]
//! read it, side by side over the state and parameters of [`read`], and
//! [`routes`] puts the two on the API listener.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod metrics;
pub mod otlp;
pub mod rate_limit;
pub mod read;
pub mod reconcilers;
pub mod routes;
pub mod store;
pub mod ui;

pub use app::Application;
pub use config::HubConfig;
