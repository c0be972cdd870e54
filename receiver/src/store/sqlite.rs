//! The embedded SQLite store (WAL mode). One writer connection serializes
//! writes, as SQLite allows only one writer; readers use their own pool.

use std::collections::HashMap;

use async_trait::async_trait;
use sextant_model::{
    DeploymentEvent, HistoryEntry, HostDeployment, TargetState, TargetSummary, UnixNanos,
};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};

use super::dims::{DimCache, DimKey, resolve_dim};
use super::mark::{CHANGE_MARK_SQL, ChangeMark, ChangeMarkRow};
use super::plan::{self, ObservedKey, ObservedRow};
use super::read::{self, bind_filter, write_desired, write_late};
use super::{
    CatalogKind, CatalogQuery, CatalogRow, CurrentCursor, CurrentQuery, HistoryCursor,
    HistoryQuery, HostListRow, HubStore, IngestSummary, ListQuery, StateQuery, StoreError,
};

/// The hub store on an embedded SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    pub(crate) dims: DimCache,
    stale_window: super::StaleWindow,
}

impl SqliteStore {
    /// Opens `url` (`sqlite://PATH`), creating the file and its directory,
    /// and applies migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = sextant_kit::database::sqlite_options(url)?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        super::migrate::sqlite().run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            writer,
            reader,
            dims: DimCache::default(),
            stale_window: super::StaleWindow::default(),
        })
    }
}

impl SqliteStore {
    super::reports::report_reads!(reader, super::read::RANGE_LITE);
}

#[async_trait]
impl HubStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn ingest(
        &self,
        tenant: &str,
        events: &[DeploymentEvent],
    ) -> Result<IngestSummary, StoreError> {
        // Dimension ids created inside a transaction that rolls back must not
        // stay cached.
        let result: Result<IngestSummary, StoreError> = async {
        let now = UnixNanos::now().0;
        let mut summary = IngestSummary::default();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;

        let desired = events.iter().filter_map(|e| match e {
            DeploymentEvent::Desired(d) => Some(d),
            DeploymentEvent::Observed(_) => None,
        });
        summary.desired_assignments = write_desired!(self, tx, tenant, desired, now);

        let mut batch: Vec<(ObservedKey, ObservedRow)> = Vec::new();
        // Each target's workload, written on new rows (migration 0008).
        let mut workloads: HashMap<i64, i64> = HashMap::new();
        let mut tenant_id = None;
        for event in events {
            let DeploymentEvent::Observed(o) = event else { continue };
            let ids = super::dims::resolve_placement!(self, &mut *tx, tenant, &o.placement)?;
            workloads.insert(ids.target, ids.workload);
            let host = resolve_dim!(self, &mut *tx, DimKey::Host { tenant: ids.tenant, name: o.host.clone() })?;
            let reconciler = resolve_dim!(
                self,
                &mut *tx,
                DimKey::Reconciler {
                    tenant: ids.tenant,
                    name: o.reconciler.name.clone(),
                    kind: o.reconciler.kind.clone(),
                }
            )?;
            tenant_id = Some(ids.tenant);
            batch.push((
                (host, reconciler, ids.target),
                ObservedRow {
                    revision: o.revision.clone(),
                    status: o.status.as_str(),
                    message: o.message.clone(),
                    job: o.job.clone(),
                    observed_at: o.observed_at.0,
                },
            ));
        }
        if let Some(tenant_id) = tenant_id {
            let mut current = HashMap::new();
            for (key, _) in &batch {
                if current.contains_key(key) {
                    continue;
                }
                let row: Option<(String, String, Option<String>, Option<String>, i64)> = sqlx::query_as(
                    "SELECT revision, status, message, job_id, observed_at FROM observed_deployments \
                     WHERE host_id = $1 AND reconciler_id = $2 AND target_id = $3",
                )
                .bind(key.0)
                .bind(key.1)
                .bind(key.2)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((revision, status, message, job, observed_at)) = row {
                    let status = status_str(&status);
                    current.insert(*key, ObservedRow { revision, status, message, job, observed_at });
                }
            }
            let plan = plan::plan(&current, batch);
            for ((host, reconciler, target), row, changed) in &plan.upserts {
                sqlx::query(
                    "INSERT INTO observed_deployments (tenant_id, host_id, reconciler_id, target_id, \
                       revision, status, message, observed_at, changed_at, job_id, workload_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $10, $12) \
                     ON CONFLICT (host_id, reconciler_id, target_id) DO UPDATE SET \
                       revision = excluded.revision, status = excluded.status, \
                       message = excluded.message, observed_at = excluded.observed_at, \
                       staleness = CASE WHEN excluded.observed_at < $11 \
                                   THEN observed_deployments.staleness ELSE 0 END, \
                       changed_at = CASE WHEN $9 THEN excluded.changed_at \
                                    ELSE observed_deployments.changed_at END, \
                       job_id = CASE WHEN $9 THEN excluded.job_id \
                                ELSE COALESCE(excluded.job_id, observed_deployments.job_id) END \
                     WHERE observed_deployments.observed_at < excluded.observed_at",
                )
                .bind(tenant_id)
                .bind(host)
                .bind(reconciler)
                .bind(target)
                .bind(&row.revision)
                .bind(row.status)
                .bind(&row.message)
                .bind(row.observed_at)
                .bind(changed)
                .bind(&row.job)
                .bind(self.stale_window.before(now))
                .bind(workloads.get(target).copied().unwrap_or_default())
                .execute(&mut *tx)
                .await?;
            }
            for ((host, reconciler, target), row) in &plan.history {
                let done = sqlx::query(read::INSERT_HISTORY_SQL)
                    .bind(tenant_id)
                    .bind(host)
                    .bind(reconciler)
                    .bind(target)
                    .bind(&row.revision)
                    .bind(row.status)
                    .bind(&row.message)
                    .bind(row.observed_at)
                    .bind(now)
                    .bind(&row.job)
                    .execute(&mut *tx)
                    .await?;
                summary.observed_history += done.rows_affected() as usize;
            }
            summary.observed_current = plan.upserts.len();
            summary.observed_late = plan.late.len();
            summary.observed_history += write_late!(tx, tenant_id, &plan.late, now);
        }
        tx.commit().await?;
        Ok(summary)
        }
        .await;
        if result.is_err() {
            self.dims.clear();
        }
        result
    }

    async fn state(
        &self,
        tenant: &str,
        query: &StateQuery,
    ) -> Result<Vec<TargetState>, StoreError> {
        let targets: Vec<read::TargetRow> = read::bind_source!(
            bind_filter!(sqlx::query_as(read::TARGETS_SQL), tenant, query),
            query
        )
        .fetch_all(&self.reader)
        .await?;
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let hosts: Vec<read::HostRow> = read::bind_source!(
            bind_filter!(sqlx::query_as(read::HOSTS_SQL), tenant, query),
            query
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(read::assemble(targets, hosts))
    }

    async fn attention_hosts(
        &self,
        tenant: &str,
        query: &StateQuery,
        limit: u32,
    ) -> Result<Vec<(String, Option<String>, sextant_model::HostView)>, StoreError> {
        let rows: Vec<read::AttentionRow> = bind_filter!(
            sqlx::query_as(read::ATTENTION_HOSTS_SQL[read::RANGE_LITE]),
            tenant,
            query
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        Ok(read::attention_hosts(rows))
    }

    async fn drift_counts(&self, stale_before: i64) -> Result<Vec<super::DriftCounts>, StoreError> {
        let drift: Vec<read::DriftCountRow> = sqlx::query_as(read::DRIFT_COUNTS_SQL)
            .fetch_all(&self.reader)
            .await?;
        let stale: Vec<(String, String, i64)> = sqlx::query_as(read::STALE_COUNTS_SQL)
            .bind(stale_before)
            .fetch_all(&self.reader)
            .await?;
        Ok(super::merge_drift_counts(drift, stale))
    }

    async fn hosts(&self, tenant: &str, query: &ListQuery) -> Result<Vec<HostListRow>, StoreError> {
        let rows: Vec<read::HostListSqlRow> = read::bind_source!(
            bind_filter!(sqlx::query_as(read::HOST_LIST_SQL), tenant, &query.filter)
                .bind(query.host.clone())
                .bind(query.after.clone())
                .bind(i64::from(query.limit)),
            &query.filter
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(read::host_list(rows))
    }

    async fn environment_exists(
        &self,
        tenant: &str,
        environment: &str,
    ) -> Result<bool, StoreError> {
        self.read_environment_exists(tenant, environment).await
    }

    async fn workload_page(
        &self,
        tenant: &str,
        filter: &StateQuery,
        after: Option<&super::WorkloadKey>,
        limit: u32,
    ) -> Result<Vec<(super::WorkloadKey, u64)>, StoreError> {
        self.read_workload_page(tenant, filter, after, limit).await
    }

    async fn summaries(
        &self,
        tenant: &str,
        filter: &StateQuery,
    ) -> Result<Vec<TargetSummary>, StoreError> {
        self.read_summaries(tenant, filter).await
    }

    async fn current(
        &self,
        tenant: &str,
        query: &CurrentQuery,
    ) -> Result<Vec<(HostDeployment, CurrentCursor)>, StoreError> {
        self.read_current(tenant, query).await
    }

    async fn history(
        &self,
        tenant: &str,
        query: &HistoryQuery,
    ) -> Result<Vec<(HistoryEntry, HistoryCursor)>, StoreError> {
        self.read_history(tenant, query).await
    }

    async fn catalog(
        &self,
        tenant: &str,
        kind: CatalogKind,
        query: &CatalogQuery,
    ) -> Result<Vec<CatalogRow>, StoreError> {
        self.read_catalog(tenant, kind, query).await
    }

    async fn change_mark(&self, tenant: &str) -> Result<Option<ChangeMark>, StoreError> {
        let row: Option<ChangeMarkRow> = sqlx::query_as(CHANGE_MARK_SQL)
            .bind(tenant)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(ChangeMark::from))
    }

    fn set_stale_after(&self, window: std::time::Duration) {
        self.stale_window.set(window);
    }

    async fn sweep_stale(&self, stale_before: i64) -> Result<u64, StoreError> {
        sqlx::query(super::drift::SWEEP_UNMARK_SQL)
            .bind(stale_before)
            .execute(&self.writer)
            .await?;
        let mut marked = 0u64;
        loop {
            let done = sqlx::query(super::drift::SQLITE_SWEEP_MARK_SQL)
                .bind(stale_before)
                .bind(super::drift::SWEEP_BATCH)
                .execute(&self.writer)
                .await?;
            marked += done.rows_affected();
            if done.rows_affected() < super::drift::SWEEP_BATCH as u64 {
                return Ok(marked);
            }
        }
    }

    async fn drift_summary(
        &self,
        tenant: &str,
        filter: &StateQuery,
        stale_before: UnixNanos,
    ) -> Result<Vec<super::DriftSummary>, StoreError> {
        self.read_drift_summary(tenant, filter, stale_before).await
    }

    async fn settled_change_mark(&self, tenant: &str) -> Result<Option<ChangeMark>, StoreError> {
        // One writer at a time, and a row's id is max(id) + 1 when it is
        // written: ids commit in order, so every mark is settled.
        self.change_mark(tenant).await
    }
}

/// Maps a stored status back to its static name (the schema's CHECK keeps
/// the set closed).
pub(crate) fn status_str(status: &str) -> &'static str {
    status
        .parse::<sextant_model::DeploymentStatus>()
        .map(|s| s.as_str())
        .unwrap_or("failed")
}
