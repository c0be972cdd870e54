//! The embedded SQLite store (WAL mode). One writer connection serializes
//! writes, as SQLite allows only one writer; readers use their own pool.

use async_trait::async_trait;
use sextant_model::{DeploymentEvent, UnixNanos};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqlitePool, SqlitePoolOptions};
use sqlx::{Sqlite, Transaction};

use super::deployments::{self, derive_target, record_sightings};
use super::dims::DimCache;
use super::mark::ChangeMark;
use super::plan::{ObservedKey, ObservedRow};
use super::pool::StorePool;
use super::write::{
    CurrentRows, INSERT_HISTORY_SQL, ObservedWriter, PlanWrite, StoredRow, desired_events,
    resolve_observed, stored, write_desired, write_late, write_observed,
};
use super::{HubStore, IngestSummary, StoreError};

/// The hub store on an embedded SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    pub(crate) dims: DimCache,
    stale_window: super::StaleWindow,
    dora_index: super::dora_index::DoraIndex,
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
            dora_index: super::dora_index::DoraIndex::default(),
        })
    }

    /// One ingest transaction (`BEGIN IMMEDIATE`: the one writer):
    /// desired assignments, then the batch's observations, row by row.
    async fn write(
        &self,
        tenant: &str,
        events: &[DeploymentEvent],
    ) -> Result<IngestSummary, StoreError> {
        let now = UnixNanos::now().0;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let desired_assignments = write_desired!(self, tx, tenant, desired_events(events), now);
        let batch = resolve_observed!(self, &mut *tx, tenant, events);
        let observed = write_observed(&mut tx, batch, self.stale_window.before(now), now).await?;
        tx.commit().await?;
        Ok(IngestSummary {
            desired_assignments,
            ..observed
        })
    }
}

#[async_trait]
impl HubStore for SqliteStore {
    /// Readers first, then the one writer: as the last connection closes,
    /// SQLite checkpoints the WAL into the database file.
    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    async fn ingest(
        &self,
        tenant: &str,
        events: &[DeploymentEvent],
    ) -> Result<IngestSummary, StoreError> {
        let result = self.write(tenant, events).await;
        // Dimension ids created inside a transaction that rolls back must not
        // stay cached.
        if result.is_err() {
            self.dims.clear();
        }
        result
    }

    fn reader(&self) -> StorePool<'_> {
        StorePool::Sqlite(&self.reader)
    }

    async fn settled_change_mark(&self, tenant: &str) -> Result<Option<ChangeMark>, StoreError> {
        // One writer at a time, and a row's id is max(id) + 1 when it is
        // written: ids commit in order, so every mark is settled.
        self.change_mark(tenant).await
    }

    fn set_stale_after(&self, window: std::time::Duration) {
        self.stale_window.set(window);
    }

    async fn sweep_stale(&self, stale_before: i64) -> Result<u64, StoreError> {
        let swept = super::drift::sweep(StorePool::Sqlite(&self.writer), stale_before).await?;
        super::dora_index::prune(StorePool::Sqlite(&self.writer)).await?;
        Ok(swept)
    }

    fn dora_index(&self) -> &super::dora_index::DoraIndex {
        &self.dora_index
    }

    async fn derive(&self, targets: &[i64]) -> Result<u64, StoreError> {
        Ok(derive(&self.writer, targets).await?)
    }
}

/// Derives the listed targets' deployments (`store/deployments/`), a
/// target a transaction on the one writer, and says how many were listed.
async fn derive(writer: &SqlitePool, targets: &[i64]) -> Result<u64, sqlx::Error> {
    let mut derived = 0;
    for &target in targets {
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        if derive_target!(tx, target) {
            derived += 1;
        }
        tx.commit().await?;
    }
    Ok(derived)
}

/// SQLite's [`ObservedWriter`]: a statement a row, on the one writer.
#[async_trait]
impl ObservedWriter for Transaction<'_, Sqlite> {
    async fn current_rows(
        &mut self,
        batch: &[(ObservedKey, ObservedRow)],
    ) -> Result<CurrentRows, sqlx::Error> {
        let mut current = CurrentRows::new();
        for (key, _) in batch {
            if current.contains_key(key) {
                continue;
            }
            let row: Option<StoredRow> = sqlx::query_as(
                "SELECT revision, status, message, job_id, observed_at \
                     FROM observed_deployments \
                     WHERE host_id = $1 AND reconciler_id = $2 AND target_id = $3",
            )
            .bind(key.0)
            .bind(key.1)
            .bind(key.2)
            .fetch_optional(&mut **self)
            .await?;
            if let Some(row) = row {
                current.insert(*key, stored(row));
            }
        }
        Ok(current)
    }

    async fn upsert_current(&mut self, write: &PlanWrite<'_>) -> Result<(), sqlx::Error> {
        for (key, row, changed) in &write.plan.upserts {
            let upsert = sqlx::query(
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
            );
            bind_row(upsert, write.tenant, *key, row)
                .bind(changed)
                .bind(&row.job)
                .bind(write.stale_before)
                .bind(write.workloads.get(&key.2).copied().unwrap_or_default())
                .execute(&mut **self)
                .await?;
        }
        Ok(())
    }

    async fn append_history(&mut self, write: &PlanWrite<'_>) -> Result<usize, sqlx::Error> {
        let mut inserted = 0;
        for (key, row) in &write.plan.history {
            let done = bind_row(sqlx::query(INSERT_HISTORY_SQL), write.tenant, *key, row)
                .bind(write.now)
                .bind(&row.job)
                .execute(&mut **self)
                .await?;
            inserted += done.rows_affected() as usize;
        }
        Ok(inserted)
    }

    async fn append_late(&mut self, write: &PlanWrite<'_>) -> Result<usize, sqlx::Error> {
        Ok(write_late!(
            *self,
            write.tenant,
            &write.plan.late,
            write.now
        ))
    }

    /// Records the revisions' sightings and lists the touched targets for
    /// the deriver, a statement each.
    async fn list_for_deriver(&mut self, write: &PlanWrite<'_>) -> Result<(), sqlx::Error> {
        record_sightings!(
            *self,
            write.tenant,
            deployments::sightings(write.plan, write.workloads)
        );
        for (target, key) in deployments::touched(write.plan) {
            sqlx::query(deployments::PENDING_SQL)
                .bind(target)
                .bind(key.0)
                .bind(key.1)
                .bind(key.2)
                .execute(&mut **self)
                .await?;
        }
        Ok(())
    }
}

/// Binds the parameters every observed row's statement starts with:
/// tenant, host, reconciler, target, revision, status, message,
/// observed_at.
fn bind_row<'q>(
    query: Query<'q, Sqlite, SqliteArguments>,
    tenant: i64,
    (host, reconciler, target): ObservedKey,
    row: &'q ObservedRow,
) -> Query<'q, Sqlite, SqliteArguments> {
    query
        .bind(tenant)
        .bind(host)
        .bind(reconciler)
        .bind(target)
        .bind(&row.revision)
        .bind(row.status)
        .bind(&row.message)
        .bind(row.observed_at)
}
