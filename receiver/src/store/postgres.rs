//! The PostgreSQL store. Observations are written in bulk: one statement
//! locks the current rows of a batch, one upserts the new current rows and
//! one appends history, each binding whole arrays through `unnest`.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use sextant_model::{DeploymentEvent, UnixNanos};
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions};
use sqlx::query::Query;
use sqlx::{Postgres, Transaction};

use super::deployments::{self, derive_target};
use super::dims::{DimCache, DimKey, resolve_dim};
use super::mark::{CHANGE_MARK_SQL, ChangeMark, ChangeMarkRow, MARK_LOCK_CLASS, lock_key};
use super::plan::{ObservedKey, ObservedRow};
use super::pool::StorePool;
use super::write::{
    CurrentRows, ObservedWriter, PlanWrite, desired_events, resolve_observed, stored,
    write_desired, write_late, write_observed,
};
use super::{HubStore, IngestSummary, StoreError};

/// A locked current row: host, reconciler and target ids, revision, status,
/// message, job, observed_at.
type CurrentRow = (
    i64,
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
);

/// How long a request waits for a database connection. With the database
/// gone, sqlx keeps trying to connect until this passes: it is how soon
/// ingest answers 503 with `Retry-After` (docs/security.md).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The hub store on PostgreSQL.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    pub(crate) dims: DimCache,
    stale_window: super::StaleWindow,
    dora_index: super::dora_index::DoraIndex,
}

impl PostgresStore {
    /// Connects to `url` and applies migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, 16).await
    }

    /// [`Self::open`] with a pool of at most `max_connections` (tests that
    /// read one connection's statistics use 1).
    pub(crate) async fn open_with(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        // Session settings for the hub's short queries (docs/performance.md,
        // "Query latency"): plan with the actual parameters every time, since
        // a generic plan cannot see which optional filters (`$n IS NULL OR
        // …`) are set and picks nested loops over every host; and no JIT,
        // whose compilation cost more than the query it was meant to speed up.
        let options = sextant_kit::database::postgres_options(url)?
            .options([("plan_cache_mode", "force_custom_plan"), ("jit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        super::migrate::postgres().run(&pool).await?;
        Ok(Self {
            pool,
            dims: DimCache::default(),
            stale_window: super::StaleWindow::default(),
            dora_index: super::dora_index::DoraIndex::default(),
        })
    }

    /// The pool, for tools (benchmarks) that measure the database directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl HubStore for PostgresStore {
    fn reader(&self) -> StorePool<'_> {
        StorePool::Postgres(&self.pool)
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn ingest(
        &self,
        tenant: &str,
        events: &[DeploymentEvent],
    ) -> Result<IngestSummary, StoreError> {
        let mut attempt = 1;
        loop {
            let result = self.write(tenant, events).await;
            match result {
                Err(e) if attempt < DEADLOCK_ATTEMPTS && is_deadlock(&e) => {
                    tracing::debug!(attempt, "ingest transaction deadlocked; retrying");
                    attempt += 1;
                }
                Err(e) => {
                    self.dims.clear();
                    return Err(e);
                }
                Ok(summary) => return Ok(summary),
            }
        }
    }

    fn set_stale_after(&self, window: std::time::Duration) {
        self.stale_window.set(window);
    }

    async fn sweep_stale(&self, stale_before: i64) -> Result<u64, StoreError> {
        let swept = super::drift::sweep(StorePool::Postgres(&self.pool), stale_before).await?;
        super::dora_index::prune(StorePool::Postgres(&self.pool)).await?;
        Ok(swept)
    }

    fn dora_index(&self) -> &super::dora_index::DoraIndex {
        &self.dora_index
    }

    async fn derive(&self, targets: &[i64]) -> Result<u64, StoreError> {
        Ok(derive(&self.pool, targets).await?)
    }

    async fn settled_change_mark(&self, tenant: &str) -> Result<Option<ChangeMark>, StoreError> {
        let tenant_id = match self.dims.get(&DimKey::Tenant(tenant.to_owned())) {
            Some(id) => Some(id),
            None => {
                sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
                    .bind(tenant)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        let Some(tenant_id) = tenant_id else {
            return Ok(None);
        };
        // Exclusive against the writers' shared lock, without waiting: got,
        // no writer of the tenant holds an id it has not committed, and none
        // can take one until this transaction ends. The mark is read by the
        // next statement, whose snapshot comes after the lock.
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, $2)")
            .bind(MARK_LOCK_CLASS)
            .bind(lock_key(tenant_id))
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            tx.rollback().await?;
            return Ok(None);
        }
        let row: Option<ChangeMarkRow> = sqlx::query_as(CHANGE_MARK_SQL)
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.map(ChangeMark::from))
    }
}

impl PostgresStore {
    /// One ingest transaction: desired assignments, then the batch's
    /// observations, their current rows locked and written in bulk.
    async fn write(
        &self,
        tenant: &str,
        events: &[DeploymentEvent],
    ) -> Result<IngestSummary, StoreError> {
        // Resolve observed dimensions outside the transaction: they are
        // idempotent upserts and are usually cached.
        let batch = resolve_observed!(self, &self.pool, tenant, events);
        let now = UnixNanos::now().0;
        let mut tx = self.pool.begin().await?;
        let mark_locked = if desired_events(events).next().is_some() {
            let id = resolve_dim!(self, &self.pool, DimKey::Tenant(tenant.to_owned()))?;
            hold_mark_lock(&mut tx, id).await?;
            true
        } else {
            false
        };
        let desired_assignments = write_desired!(self, tx, tenant, desired_events(events), now);
        let mut writer = BulkWriter {
            tx: &mut tx,
            mark_locked,
        };
        let stale_before = self.stale_window.before(now);
        let observed = write_observed(&mut writer, batch, stale_before, now).await?;
        tx.commit().await?;
        Ok(IngestSummary {
            desired_assignments,
            ..observed
        })
    }
}

/// Holds the tenant's change-mark lock, shared, until `tx` ends. Taken before
/// the first history or desired row of a transaction (see `store/mark.rs`);
/// shared holders never wait for each other, only, for a moment, for a
/// settled mark being read.
async fn hold_mark_lock(
    tx: &mut Transaction<'_, Postgres>,
    tenant_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1, $2)")
        .bind(MARK_LOCK_CLASS)
        .bind(lock_key(tenant_id))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// How many times one ingest transaction runs before a deadlock is an error.
/// Current rows are locked in key order, but the host counters (migrations
/// 0003 and 0004) are updated by triggers in row order and for inserted rows
/// after them, so two batches can each hold a counter the other needs.
/// PostgreSQL aborts one of them; it runs again from the start.
const DEADLOCK_ATTEMPTS: u32 = 4;

fn is_deadlock(error: &StoreError) -> bool {
    match error {
        StoreError::Database(sqlx::Error::Database(e)) => {
            matches!(e.code().as_deref(), Some("40P01" | "40001"))
        }
        _ => false,
    }
}

/// Columns of a batch of current or history rows, for `unnest`.
#[derive(Default)]
struct Columns {
    host: Vec<i64>,
    reconciler: Vec<i64>,
    target: Vec<i64>,
    revision: Vec<String>,
    status: Vec<&'static str>,
    message: Vec<Option<String>>,
    observed_at: Vec<i64>,
    extra: Vec<i64>,
    job: Vec<Option<String>>,
}

impl Columns {
    fn push(&mut self, (host, reconciler, target): ObservedKey, row: &ObservedRow, extra: i64) {
        self.host.push(host);
        self.reconciler.push(reconciler);
        self.target.push(target);
        self.revision.push(row.revision.clone());
        self.status.push(row.status);
        self.message.push(row.message.clone());
        self.observed_at.push(row.observed_at);
        self.extra.push(extra);
        self.job.push(row.job.clone());
    }

    /// Binds the columns in order: `$2` to `$10` of the bulk statements.
    fn bind<'q>(
        &'q self,
        query: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments> {
        query
            .bind(&self.host)
            .bind(&self.reconciler)
            .bind(&self.target)
            .bind(&self.revision)
            .bind(&self.status)
            .bind(&self.message)
            .bind(&self.observed_at)
            .bind(&self.extra)
            .bind(&self.job)
    }
}

/// PostgreSQL's [`ObservedWriter`]: whole columns bound as arrays through
/// `unnest`, one statement a step.
struct BulkWriter<'a, 'c> {
    tx: &'a mut Transaction<'c, Postgres>,
    /// Whether the tenant's change-mark lock is held (desired rows took it).
    mark_locked: bool,
}

#[async_trait]
impl ObservedWriter for BulkWriter<'_, '_> {
    /// Locks the current rows of the batch's keys, in key order so that
    /// concurrent batches cannot deadlock, and returns them.
    async fn current_rows(
        &mut self,
        batch: &[(ObservedKey, ObservedRow)],
    ) -> Result<CurrentRows, sqlx::Error> {
        let mut keys: Vec<ObservedKey> = batch
            .iter()
            .map(|(k, _)| *k)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        keys.sort_unstable();
        let (h, r, t): (Vec<i64>, Vec<i64>, Vec<i64>) = keys.iter().fold(
            (Vec::new(), Vec::new(), Vec::new()),
            |(mut h, mut r, mut t), k| {
                h.push(k.0);
                r.push(k.1);
                t.push(k.2);
                (h, r, t)
            },
        );
        let rows: Vec<CurrentRow> = sqlx::query_as(
            "SELECT o.host_id, o.reconciler_id, o.target_id, o.revision, o.status, o.message, o.job_id, o.observed_at \
             FROM observed_deployments o \
             JOIN unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS k(h, r, t) \
               ON o.host_id = k.h AND o.reconciler_id = k.r AND o.target_id = k.t \
             ORDER BY o.host_id, o.reconciler_id, o.target_id \
             FOR UPDATE OF o",
        )
        .bind(&h)
        .bind(&r)
        .bind(&t)
        .fetch_all(&mut **self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(h, r, t, revision, status, message, job, observed_at)| {
                (
                    (h, r, t),
                    stored((revision, status, message, job, observed_at)),
                )
            })
            .collect())
    }

    /// History rows follow: the change mark must see them settle.
    async fn before_appends(&mut self, tenant: i64) -> Result<(), sqlx::Error> {
        if !self.mark_locked {
            hold_mark_lock(self.tx, tenant).await?;
            self.mark_locked = true;
        }
        Ok(())
    }

    async fn upsert_current(&mut self, write: &PlanWrite<'_>) -> Result<(), sqlx::Error> {
        let upserts = &write.plan.upserts;
        if upserts.is_empty() {
            return Ok(());
        }
        let mut c = Columns::default();
        let mut workload = Vec::with_capacity(upserts.len());
        for (key, row, changed) in upserts {
            c.push(*key, row, if *changed { row.observed_at } else { 0 });
            workload.push(write.workloads.get(&key.2).copied().unwrap_or_default());
        }
        let upsert = sqlx::query(
            "INSERT INTO observed_deployments (tenant_id, host_id, reconciler_id, target_id, \
               revision, status, message, observed_at, changed_at, job_id, workload_id) \
             SELECT $1, k.* FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::text[], \
               $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::text[], \
               $12::bigint[]) AS k \
             ON CONFLICT (host_id, reconciler_id, target_id) DO UPDATE SET \
               revision = excluded.revision, status = excluded.status, \
               message = excluded.message, observed_at = excluded.observed_at, \
               staleness = CASE WHEN excluded.observed_at < $11 \
                           THEN observed_deployments.staleness ELSE 0 END, \
               changed_at = CASE WHEN excluded.changed_at > 0 THEN excluded.changed_at \
                            ELSE observed_deployments.changed_at END, \
               job_id = CASE WHEN excluded.changed_at > 0 THEN excluded.job_id \
                        ELSE COALESCE(excluded.job_id, observed_deployments.job_id) END \
             WHERE observed_deployments.observed_at < excluded.observed_at",
        )
        .bind(write.tenant);
        c.bind(upsert)
            .bind(write.stale_before)
            .bind(&workload)
            .execute(&mut **self.tx)
            .await?;
        Ok(())
    }

    async fn append_history(&mut self, write: &PlanWrite<'_>) -> Result<usize, sqlx::Error> {
        if write.plan.history.is_empty() {
            return Ok(0);
        }
        let mut c = Columns::default();
        for (key, row) in &write.plan.history {
            c.push(*key, row, write.now);
        }
        let append = sqlx::query(
            "INSERT INTO observed_history (tenant_id, host_id, reconciler_id, target_id, \
               revision, status, message, observed_at, received_at, job_id) \
             SELECT $1, k.* FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::text[], \
               $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::text[]) AS k \
             ON CONFLICT DO NOTHING",
        )
        .bind(write.tenant);
        let done = c.bind(append).execute(&mut **self.tx).await?;
        Ok(done.rows_affected() as usize)
    }

    async fn append_late(&mut self, write: &PlanWrite<'_>) -> Result<usize, sqlx::Error> {
        Ok(write_late!(
            *self.tx,
            write.tenant,
            &write.plan.late,
            write.now
        ))
    }

    /// Records the revisions' sightings, two statements, and lists the
    /// touched targets for the deriver, one: in target order, the order
    /// two batches lock their listings in.
    async fn list_for_deriver(&mut self, write: &PlanWrite<'_>) -> Result<(), sqlx::Error> {
        let sightings = deployments::sightings(write.plan, write.workloads);
        if !sightings.is_empty() {
            let mut workloads = Vec::with_capacity(sightings.len());
            let mut revisions = Vec::with_capacity(sightings.len());
            let mut seen = Vec::with_capacity(sightings.len());
            let mut committed = Vec::with_capacity(sightings.len());
            for ((workload, revision), (at, commit)) in sightings {
                workloads.push(workload);
                revisions.push(revision);
                seen.push(at);
                committed.push(commit);
            }
            let mut moved: Vec<i64> = sqlx::query_scalar(deployments::UPSERT_REVISION_TIMES_SQL)
                .bind(write.tenant)
                .bind(&workloads)
                .bind(&revisions)
                .bind(&seen)
                .bind(&committed)
                .fetch_all(&mut **self.tx)
                .await?;
            // A revision's times moved: the lead times of the other
            // targets of its workload may have too.
            moved.sort_unstable();
            moved.dedup();
            if !moved.is_empty() {
                sqlx::query(
                    "INSERT INTO dora_changes (tenant_id, workload_id, at) \
                     SELECT $1, w, $3 FROM unnest($2::bigint[]) AS w",
                )
                .bind(write.tenant)
                .bind(&moved)
                .bind(UnixNanos::now().0)
                .execute(&mut **self.tx)
                .await?;
            }
        }
        let touched = deployments::touched(write.plan);
        if touched.is_empty() {
            return Ok(());
        }
        let mut targets = Vec::with_capacity(touched.len());
        let (mut at, mut host, mut reconciler) = (Vec::new(), Vec::new(), Vec::new());
        for (target, key) in touched {
            targets.push(target);
            at.push(key.0);
            host.push(key.1);
            reconciler.push(key.2);
        }
        sqlx::query(deployments::PENDING_MANY_SQL)
            .bind(&targets)
            .bind(&at)
            .bind(&host)
            .bind(&reconciler)
            .execute(&mut **self.tx)
            .await?;
        Ok(())
    }
}

/// Derives the listed targets' deployments (`store/deployments/`), a
/// target a transaction, and says how many were listed. Two derivers of
/// one target (another replica, a report) take turns on its advisory lock;
/// ingest never waits on it.
async fn derive(pool: &PgPool, targets: &[i64]) -> Result<u64, sqlx::Error> {
    let mut derived = 0;
    for &target in targets {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(DERIVE_LOCK_CLASS)
            .bind(lock_key(target))
            .execute(&mut *tx)
            .await?;
        if derive_target!(tx, target) {
            derived += 1;
        }
        tx.commit().await?;
    }
    Ok(derived)
}

/// The first key of the advisory lock a deriver holds on a target (the
/// second is [`lock_key`] of the target id; two targets that share one
/// only take turns). ASCII "SXTD".
const DERIVE_LOCK_CLASS: i32 = 0x5358_5444;
