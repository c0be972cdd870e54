//! The typed client of the hub's read API (`/api/v1/…`).
//!
//! [`HubClient`] has one method per endpoint the CLI and the orchestrator
//! read, each taking a query type of [`query`] and answering the
//! `sextant-model` type the hub serializes, so a client and the hub agree
//! by construction. Lists answer one [`sextant_model::Page`]; the `all_…`
//! methods follow `next_cursor` to the end.
//!
//! ```no_run
//! # async fn f() -> Result<(), sextant_kit::hub::HubError> {
//! use sextant_kit::hub::{Found, HubClient, RolloutQuery};
//!
//! let hub = HubClient::new("http://127.0.0.1:8080", None)?;
//! let query = RolloutQuery::new("checkout", "prod");
//! match hub.rollout(&query).await.found()? {
//!     Some(rollout) => println!("{}/{} hosts", rollout.succeeded, rollout.total_hosts),
//!     None => println!("no such workload in prod"),
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod error;
pub mod query;

pub use client::{HubClient, HubClientBuilder};
pub use error::{Found, HubError};
pub use query::{
    CompareQuery, DoraQuery, DriftQuery, HistoryQuery, HostsQuery, PageRequest, RolloutQuery,
    RowFilter, SourceFilter, StateFilter,
};
