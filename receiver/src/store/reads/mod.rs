//! Every read of the hub store, written once for both backends. Each read
//! builds its statements from the shared SQL pieces (`store/sql.rs`), runs
//! them on the store's [`StorePool`], and assembles the rows into
//! `sextant-model` views; the [`super::HubStore`] read methods call these.
//! Where PostgreSQL and SQLite want different SQL for the same answer
//! (`LATERAL`, `= ANY (ARRAY(…))`, a CTE order SQLite plans better), the
//! read holds both texts in a [`super::pool::PerBackend`] and the reader
//! picks one; nothing else differs.
//!
//! One file per read: `state`, `attention` (a rollout's hosts), `hosts`
//! (the host list), `workloads` (a page of workloads), `summaries`
//! (environment state), `current` (the host view and the drift list),
//! `drift` (drift per target), `dora` (DORA's metrics), `history`, `catalog`, `counts` (the hub's
//! gauges).

mod attention;
mod catalog;
mod counts;
mod current;
mod dora;
mod drift;
mod history;
mod hosts;
mod state;
mod summaries;
mod workloads;

pub(crate) use attention::attention_hosts;
pub(crate) use catalog::catalog;
pub use catalog::{CatalogKind, CatalogRow};
pub(crate) use counts::drift_counts;
pub use current::CurrentCursor;
pub(crate) use current::current;
pub use dora::EnvironmentBound;
pub(crate) use dora::dora_groups;
pub(crate) use drift::drift_summary;
pub use history::HistoryCursor;
pub(crate) use history::history;
pub(crate) use hosts::hosts;
pub(crate) use state::state;
pub(crate) use summaries::summaries;
pub(crate) use workloads::{environment_exists, workload_page};

use super::StoreError;
use super::mark::{CHANGE_MARK_SQL, ChangeMark, ChangeMarkRow};
use super::pool::{Statement, StorePool};

/// See [`super::HubStore::change_mark`].
pub(crate) async fn change_mark(
    reader: StorePool<'_>,
    tenant: &str,
) -> Result<Option<ChangeMark>, StoreError> {
    let row: Option<ChangeMarkRow> = reader
        .fetch_optional(Statement::new(CHANGE_MARK_SQL).text(tenant.to_owned()))
        .await?;
    Ok(row.map(ChangeMark::from))
}
