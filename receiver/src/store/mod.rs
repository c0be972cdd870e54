//! The hub store: one trait, a SQLite implementation (the embedded default,
//! WAL mode) and a PostgreSQL implementation, both through sqlx with
//! migrations applied at start.
//!
//! Every read is written once, in [`reads`], from the SQL pieces of [`sql`],
//! and runs on the store's [`StorePool`]: the trait's read methods are provided
//! here, and a backend supplies only its pool. The backends share the
//! dimension upserts of [`dims`], the write statements of [`write`] and the
//! merge rules of [`plan`]; they differ in how a batch of observations is
//! written (row by row inside one SQLite transaction, array-bound bulk
//! statements on PostgreSQL), in the stale sweep and the settled change
//! mark, and in their DDL.

mod deployments;
mod dims;
mod dora_index;
pub(crate) mod drift;
mod mark;
mod migrate;
pub mod plan;
mod pool;
mod postgres;
mod reads;
mod sql;
mod sqlite;
mod write;

use std::sync::Arc;

use async_trait::async_trait;
use sextant_model::{
    DeploymentEvent, HistoryEntry, HostDeployment, TargetState, TargetSummary, UnixNanos,
};

pub use mark::ChangeMark;
pub use pool::StorePool;
pub use postgres::PostgresStore;
pub use reads::{CatalogKind, CatalogRow, CurrentCursor, EnvironmentBound, HistoryCursor};
use sextant_kit::database::Backend;
pub use sqlite::SqliteStore;

/// Errors of the hub store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("schema migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Open(#[from] sextant_kit::database::DatabaseError),
}

impl StoreError {
    /// The database refused the data itself (PostgreSQL's class 22, "data
    /// exception": a NUL in text, a number out of range, …), not because
    /// it is unavailable. Trying again cannot help: the request is bad.
    pub fn is_data_error(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => {
                e.code().is_some_and(|code| code.starts_with("22"))
            }
            _ => false,
        }
    }
}

/// Filters of a state read. `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateQuery {
    pub workspace: Option<String>,
    pub application: Option<String>,
    pub workload: Option<String>,
    pub environment: Option<String>,
    pub target: Option<String>,
    /// Who reported: applied by the reads of current rows (state,
    /// environment state, current, hosts), ignored by the catalog lists,
    /// compare and history.
    pub source: SourceFilter,
    /// Only the targets of these workloads: applied by `summaries` and
    /// `drift_summary` (a page of compare or of the UI matrix), ignored by
    /// the other reads.
    pub workloads: Option<WorkloadRange>,
}

/// A workload's names: workspace, application, workload.
pub type WorkloadKey = (String, String, String);

/// The workloads after `after` (from the first when `None`) up to and
/// including `last`, in (workspace, application, workload) name order: one
/// page of [`HubStore::workload_page`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct WorkloadRange {
    pub after: Option<WorkloadKey>,
    pub last: WorkloadKey,
}

impl WorkloadRange {
    /// Whether workload `key` is in the range.
    pub fn contains(&self, key: &WorkloadKey) -> bool {
        self.after.as_ref().is_none_or(|after| key > after) && key <= &self.last
    }
}

/// Most targets a page of workloads holds (compare, the UI matrix), unless
/// its first workload alone has more: a page's cost follows this, not the
/// estate (docs/performance.md, "Bounded reads").
pub const PAGE_TARGETS: u64 = 500;

/// Workloads the first statement reads while planning a page; each later
/// one reads twice as many as the one before (narrow workloads: a page of
/// 100 workloads of 5 targets took 7 statements in turn at 16 each, 3
/// now).
const PAGE_BATCH: usize = 16;

/// Plans one page of the filtered workloads (workspace, application and
/// workload filters) after `after`: at most `limit` whole workloads and at
/// most `max_targets` targets ([`PAGE_TARGETS`]), at least one workload. Returns the page's
/// range (`None`: no workload left) and the key to continue after, when
/// workloads remain.
pub async fn plan_workload_page(
    store: &dyn HubStore,
    tenant: &str,
    filter: &StateQuery,
    after: Option<WorkloadKey>,
    limit: u32,
    max_targets: u64,
) -> Result<(Option<WorkloadRange>, Option<WorkloadKey>), StoreError> {
    // Workloads come in growing batches, each with its target count, until
    // the page is full: a page of one wide workload counts a few workloads'
    // targets, not `limit` workloads'.
    let want = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let (mut found, mut from) = (Vec::new(), after.clone());
    let (mut taken, mut targets, mut full) = (0usize, 0u64, false);
    let mut next_batch = PAGE_BATCH;
    while !full && found.len() < want {
        let batch = u32::try_from((want - found.len()).min(next_batch)).unwrap_or(1);
        next_batch = next_batch.saturating_mul(2);
        let rows = store
            .workload_page(tenant, filter, from.as_ref(), batch)
            .await?;
        let last_batch = rows.len() < batch as usize;
        from = rows.last().map(|(k, _)| k.clone());
        for (key, n) in rows {
            if !full {
                if taken + 1 == want || (taken > 0 && targets + n > max_targets) {
                    full = true;
                } else {
                    taken += 1;
                    targets += n;
                }
            }
            found.push((key, n));
        }
        if last_batch {
            break;
        }
    }
    let Some((last, _)) = taken.checked_sub(1).and_then(|i| found.get(i)) else {
        return Ok((None, None));
    };
    let next = (taken < found.len()).then(|| last.clone());
    Ok((
        Some(WorkloadRange {
            after,
            last: last.clone(),
        }),
        next,
    ))
}

/// Only rows whose reconciler is of one of `sources` (empty: any) and, when
/// set, named `reconciler`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct SourceFilter {
    pub sources: Vec<sextant_model::Source>,
    pub reconciler: Option<String>,
}

impl SourceFilter {
    /// Filters nothing.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.reconciler.is_none()
    }

    /// The sources as the SQL takes them, `,flux,agent,` (each name between
    /// commas), or NULL for any.
    pub(crate) fn sources_param(&self) -> Option<String> {
        if self.sources.is_empty() {
            return None;
        }
        let mut names: Vec<&str> = self.sources.iter().map(|s| s.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        Some(format!(",{},", names.join(",")))
    }
}

/// Filters and page of a list read. Rows come in name order, starting after
/// `after` (keyset pagination); at most `limit` of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub filter: StateQuery,
    pub host: Option<String>,
    pub after: Option<String>,
    pub limit: u32,
}

/// A read of current rows measured against desired state (host view, drift).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentQuery {
    pub filter: StateQuery,
    pub host: Option<String>,
    /// Only rows that drift (wrong revision, failed, no desired state, stale).
    pub drift_only: bool,
    /// Rows observed before this are stale.
    pub stale_before: UnixNanos,
    /// Start after this row (keyset pagination).
    pub after: Option<CurrentCursor>,
    pub limit: u32,
}

/// A catalog listing: filters, the key of the row to start after, a limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogQuery {
    pub filter: StateQuery,
    /// Only what this host reports on.
    pub host: Option<String>,
    pub after: Option<Vec<String>>,
    pub limit: u32,
}

/// A read of history, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    pub filter: StateQuery,
    /// Observed changes of this host only.
    pub host: Option<String>,
    pub since: Option<UnixNanos>,
    pub until: Option<UnixNanos>,
    /// Start after this entry (keyset pagination).
    pub after: Option<HistoryCursor>,
    pub limit: u32,
}

/// A read of DORA's metrics: the target filter (workspace, application,
/// workload, environment, target) and the source filter of `filter`, over
/// the deployments that started in `[since, until]`, cut into `bucket`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoraQuery {
    pub filter: StateQuery,
    pub since: UnixNanos,
    pub until: UnixNanos,
    pub bucket: sextant_model::Bucket,
}

/// A host's row in a host listing, before the API decides staleness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostListRow {
    pub host: String,
    pub last_seen_at: i64,
    pub workloads: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub in_progress: i64,
    /// The sources of its rows, in the order of `Source::ALL`.
    pub sources: Vec<sextant_model::Source>,
}

/// What an ingest call wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestSummary {
    /// Desired assignments that were new (replays are not counted).
    pub desired_assignments: usize,
    /// Current-state rows created or moved forward.
    pub observed_current: usize,
    /// History rows inserted (status changes).
    pub observed_history: usize,
    /// Observations older than current state (kept in history only).
    pub observed_late: usize,
}

/// Drifting and stale hosts of one (tenant, environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftCounts {
    pub tenant: String,
    pub environment: String,
    /// (host, target) rows on a target with no desired state.
    pub no_desired: i64,
    /// Rows on another revision than the target's desired one.
    pub wrong_revision: i64,
    /// Rows failed on the desired revision.
    pub failed: i64,
    /// Hosts whose newest report in the environment is too old.
    pub stale_hosts: i64,
}

/// The hub's storage. Every call is scoped to one tenant.
#[async_trait]
pub trait HubStore: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str {
        self.reader().backend()
    }

    /// The pool the reads run on. Every read is written once (`reads/`),
    /// as the provided methods below; a backend brings its writes.
    fn reader(&self) -> StorePool<'_>;

    /// Answers when the database answers.
    async fn ping(&self) -> Result<(), StoreError> {
        self.reader().ping().await
    }

    /// Closes the store's connections, waiting for the ones in use to come
    /// back: the last stage of the hub's shutdown. Every call after it
    /// fails.
    async fn close(&self);

    /// Writes a batch of validated events for `tenant`. Idempotent: replaying
    /// a batch changes nothing.
    async fn ingest(
        &self,
        tenant: &str,
        events: &[DeploymentEvent],
    ) -> Result<IngestSummary, StoreError>;

    /// Current state per (application, workload, environment, target).
    async fn state(
        &self,
        tenant: &str,
        query: &StateQuery,
    ) -> Result<Vec<TargetState>, StoreError> {
        reads::state(self.reader(), tenant, query).await
    }

    /// The filtered targets' hosts that need attention in a rollout (see
    /// [`sextant_model::Rollout`]), at most `limit`, each with its target
    /// and the target's desired revision.
    async fn attention_hosts(
        &self,
        tenant: &str,
        query: &StateQuery,
        limit: u32,
    ) -> Result<Vec<(String, Option<String>, sextant_model::HostView)>, StoreError> {
        reads::attention_hosts(self.reader(), tenant, query, limit).await
    }

    /// Drift and staleness per (tenant, environment), for the hub's gauges:
    /// see [`DriftCounts`].
    async fn drift_counts(&self, stale_before: i64) -> Result<Vec<DriftCounts>, StoreError> {
        reads::drift_counts(self.reader(), stale_before).await
    }

    /// Hosts that report for the filtered targets, by name, one page.
    async fn hosts(&self, tenant: &str, query: &ListQuery) -> Result<Vec<HostListRow>, StoreError> {
        reads::hosts(self.reader(), tenant, query).await
    }

    /// The filtered workloads (workspace, application, workload and
    /// environment filters only) in name order after `after`, at most
    /// `limit`, each with its number of targets (in the environment when one
    /// is named, leaving out the workloads with none there; else in every
    /// environment): the tenant's workloads, not its targets or rows, are
    /// read. See [`plan_workload_page`].
    async fn workload_page(
        &self,
        tenant: &str,
        filter: &StateQuery,
        after: Option<&WorkloadKey>,
        limit: u32,
    ) -> Result<Vec<(WorkloadKey, u64)>, StoreError> {
        reads::workload_page(self.reader(), tenant, filter, after, limit).await
    }

    /// Whether `environment` has a target in the tenant: one index read.
    async fn environment_exists(
        &self,
        tenant: &str,
        environment: &str,
    ) -> Result<bool, StoreError> {
        reads::environment_exists(self.reader(), tenant, environment).await
    }

    /// Environment state: per filtered target, the desired version and the
    /// deployed versions grouped by (revision, status) with host counts.
    async fn summaries(
        &self,
        tenant: &str,
        filter: &StateQuery,
    ) -> Result<Vec<TargetSummary>, StoreError> {
        reads::summaries(self.reader(), tenant, filter).await
    }

    /// Current rows measured against desired state, in (host, target,
    /// reconciler) order, one page.
    async fn current(
        &self,
        tenant: &str,
        query: &CurrentQuery,
    ) -> Result<Vec<(HostDeployment, CurrentCursor)>, StoreError> {
        reads::current(self.reader(), tenant, query).await
    }

    /// Environments, applications, workloads or targets with their counts,
    /// in key order, one page (environments: all of them, unordered).
    async fn catalog(
        &self,
        tenant: &str,
        kind: CatalogKind,
        query: &CatalogQuery,
    ) -> Result<Vec<CatalogRow>, StoreError> {
        reads::catalog(self.reader(), tenant, kind, query).await
    }

    /// Desired assignments and observed changes, newest first, one page.
    async fn history(
        &self,
        tenant: &str,
        query: &HistoryQuery,
    ) -> Result<Vec<(HistoryEntry, HistoryCursor)>, StoreError> {
        reads::history(self.reader(), tenant, query).await
    }

    /// DORA's five metrics over the filtered deployments of a window
    /// (`docs/insights.md`): totals, a series of buckets and a group per
    /// (workspace, application, workload, environment). Derives the
    /// tenant's targets that ingest listed first, so the report counts
    /// every report committed before it began; reads the derived
    /// `deployments` table (through the index), not history.
    async fn dora(
        &self,
        tenant: &str,
        query: &DoraQuery,
    ) -> Result<sextant_model::DoraReport, StoreError> {
        self.derive_listed(Some(tenant)).await?;
        let report = self
            .dora_index()
            .report(self.reader(), tenant, query)
            .await?;
        // A tenant that never sent anything has no deployments.
        let mut report = report.unwrap_or_else(|| {
            sextant_model::dora::report(query.since.0, query.until.0, query.bucket, &[], &[])
        });
        report.rebuilding_targets = self.rebuild_pending(Some(tenant)).await?;
        Ok(report)
    }

    /// This hub's in-memory DORA index (`store/dora_index.rs`).
    fn dora_index(&self) -> &dora_index::DoraIndex;

    /// Derives the deployments of up to 64 listed targets
    /// (`deployments_backfill`: those ingest listed first, then an
    /// upgrade's) and says how many: 0 once none are left. The hub runs it
    /// in the background (`app/`), so neither ingest nor an upgrade with a
    /// long history waits for it.
    async fn derive_step(&self) -> Result<u64, StoreError> {
        let targets: Vec<(i64,)> = self
            .reader()
            .fetch_all(pool::Statement::new(deployments::STEP_SQL))
            .await?;
        self.derive(&targets.into_iter().map(|(t,)| t).collect::<Vec<_>>())
            .await
    }

    /// Derives every target ingest has listed by now (of `tenant`, or of
    /// every tenant) and says how many; an upgrade's are left to
    /// [`HubStore::derive_step`].
    async fn derive_listed(&self, tenant: Option<&str>) -> Result<u64, StoreError> {
        let targets: Vec<(i64,)> = self
            .reader()
            .fetch_all(
                pool::Statement::new(deployments::LISTED_SQL).text(tenant.map(str::to_owned)),
            )
            .await?;
        self.derive(&targets.into_iter().map(|(t,)| t).collect::<Vec<_>>())
            .await
    }

    /// Derives `targets`' listed deployments, a target a transaction on
    /// the backend's writer (`store/deployments/`), and says how many were
    /// still listed.
    async fn derive(&self, targets: &[i64]) -> Result<u64, StoreError>;

    /// How many targets (of `tenant`, or of every tenant) an upgrade left
    /// to rebuild from their whole history; until then a DORA report
    /// leaves their deployments out.
    async fn rebuild_pending(&self, tenant: Option<&str>) -> Result<u64, StoreError> {
        let (n,): (i64,) = self
            .reader()
            .fetch_one(
                pool::Statement::new(
                    "SELECT COUNT(*) FROM deployments_backfill b \
                     JOIN deployment_targets t ON t.id = b.target_id \
                     JOIN tenants tn ON tn.id = t.tenant_id \
                     WHERE b.observed_at IS NULL \
                       AND (CAST($1 AS TEXT) IS NULL OR tn.name = $1)",
                )
                .text(tenant.map(str::to_owned)),
            )
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// How many targets ingest listed that the deriver has still to do.
    async fn derive_pending(&self) -> Result<u64, StoreError> {
        let (n,): (i64,) = self
            .reader()
            .fetch_one(pool::Statement::new(
                "SELECT COUNT(*) FROM deployments_backfill WHERE observed_at IS NOT NULL",
            ))
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// DORA's metrics of every tenant's groups over `[since, until]`
    /// (Unix nanoseconds), for the hub's gauges, with each tenant's
    /// environments past `bound` counted as one. Derives every listed
    /// target first.
    async fn dora_groups(
        &self,
        since: i64,
        until: i64,
        bound: &EnvironmentBound<'_>,
    ) -> Result<Vec<(String, sextant_model::DoraGroup)>, StoreError> {
        self.derive_listed(None).await?;
        reads::dora_groups(self.reader(), since, until, bound).await
    }

    /// The tenant's change mark as committed now (`None`: no such tenant).
    /// It moves with every committed desired version, revision or status
    /// change and new target, whichever hub wrote it; heartbeats leave it
    /// alone. A few index reads.
    async fn change_mark(&self, tenant: &str) -> Result<Option<ChangeMark>, StoreError> {
        reads::change_mark(self.reader(), tenant).await
    }

    /// The change mark, if it is settled: no write of the tenant is between
    /// taking an id and committing, so no commit can later land below it
    /// (see [`ChangeMark`]'s module). `None` while such writes are in flight
    /// or for no such tenant; a report read after a settled mark is at
    /// least as new as the mark, and may be cached under it.
    async fn settled_change_mark(&self, tenant: &str) -> Result<Option<ChangeMark>, StoreError>;

    /// Marks the current rows last observed before `stale_before` (Unix
    /// nanoseconds) as past the stale threshold, and clears the mark of rows
    /// observed since; returns how many rows it marked. The drift list and
    /// counts read the marks (docs/performance.md, "Bounded reads"); reads
    /// stay exact between sweeps, a sweep only keeps them cheap.
    async fn sweep_stale(&self, stale_before: i64) -> Result<u64, StoreError>;

    /// The stale threshold (`stale_after_seconds`). A write keeps a row's
    /// stale mark while its new observation is still older than this
    /// (a backlog replayed after an outage), so ingest and the sweep do
    /// not mark and unmark the same rows in turn. Unset, every write
    /// clears the mark.
    fn set_stale_after(&self, window: std::time::Duration);

    /// Drift per filtered target: drifting rows, of them failed, of them
    /// stale (observed before `stale_before`), from the maintained counters
    /// (a read of the drifting rows with a source filter).
    async fn drift_summary(
        &self,
        tenant: &str,
        filter: &StateQuery,
        stale_before: UnixNanos,
    ) -> Result<Vec<DriftSummary>, StoreError> {
        reads::drift_summary(self.reader(), tenant, filter, stale_before).await
    }
}

/// The stale threshold a store's writes compare with (see
/// [`HubStore::set_stale_after`]): nanoseconds, 0 while unset.
#[derive(Debug, Default)]
pub(crate) struct StaleWindow(std::sync::atomic::AtomicI64);

impl StaleWindow {
    pub(crate) fn set(&self, window: std::time::Duration) {
        let nanos = i64::try_from(window.as_nanos()).unwrap_or(i64::MAX);
        self.0.store(nanos, std::sync::atomic::Ordering::Relaxed);
    }

    /// Observations before this are past the threshold as of `now`;
    /// `i64::MIN` (none) while unset.
    pub(crate) fn before(&self, now: i64) -> i64 {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => i64::MIN,
            window => now.saturating_sub(window),
        }
    }
}

/// Drift of one target ([`HubStore::drift_summary`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftSummary {
    pub workspace: String,
    pub application: String,
    pub workload: String,
    pub environment: String,
    pub rows: u64,
    pub failed: u64,
    pub stale: u64,
}

/// Opens (creating if needed) and migrates the store named by `url`.
pub async fn open(url: &str) -> Result<Arc<dyn HubStore>, StoreError> {
    Ok(match Backend::of(url)? {
        Backend::Sqlite => Arc::new(SqliteStore::open(url).await?),
        Backend::Postgres => Arc::new(PostgresStore::open(url).await?),
    })
}
