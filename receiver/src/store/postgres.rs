//! The PostgreSQL store. Observations are written in bulk: one statement
//! locks the current rows of a batch, one upserts the new current rows and
//! one appends history, each binding whole arrays through `unnest`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use sextant_model::{
    DeploymentEvent, HistoryEntry, HostDeployment, TargetState, TargetSummary, UnixNanos,
};
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::dims::{DimCache, DimKey, resolve_dim, resolve_placement};
use super::mark::{CHANGE_MARK_SQL, ChangeMark, ChangeMarkRow, MARK_LOCK_CLASS, lock_key};
use super::plan::{self, ObservedKey, ObservedRow};
use super::read::{self, bind_filter, write_desired, write_late};
use super::sqlite::status_str;
use super::{
    CatalogKind, CatalogQuery, CatalogRow, CurrentCursor, CurrentQuery, HistoryCursor,
    HistoryQuery, HostListRow, HubStore, IngestSummary, ListQuery, StateQuery, StoreError,
};

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
        })
    }

    /// The pool, for tools (benchmarks) that measure the database directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl PostgresStore {
    super::reports::report_reads!(pool, super::read::RANGE_PG);
}

#[async_trait]
impl HubStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
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

    async fn state(
        &self,
        tenant: &str,
        query: &StateQuery,
    ) -> Result<Vec<TargetState>, StoreError> {
        let targets: Vec<read::TargetRow> = read::bind_source!(
            bind_filter!(sqlx::query_as(read::TARGETS_SQL), tenant, query),
            query
        )
        .fetch_all(&self.pool)
        .await?;
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let hosts: Vec<read::HostRow> = read::bind_source!(
            bind_filter!(sqlx::query_as(read::HOSTS_SQL), tenant, query),
            query
        )
        .fetch_all(&self.pool)
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
            sqlx::query_as(read::ATTENTION_HOSTS_SQL[read::RANGE_PG]),
            tenant,
            query
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(read::attention_hosts(rows))
    }

    async fn drift_counts(&self, stale_before: i64) -> Result<Vec<super::DriftCounts>, StoreError> {
        let drift: Vec<read::DriftCountRow> = sqlx::query_as(read::DRIFT_COUNTS_SQL)
            .fetch_all(&self.pool)
            .await?;
        let stale: Vec<(String, String, i64)> = sqlx::query_as(read::STALE_COUNTS_SQL)
            .bind(stale_before)
            .fetch_all(&self.pool)
            .await?;
        Ok(super::merge_drift_counts(drift, stale))
    }

    async fn hosts(&self, tenant: &str, query: &ListQuery) -> Result<Vec<HostListRow>, StoreError> {
        // Not kept prepared: after five executions PostgreSQL may keep a
        // generic plan, which checks every filter parameter on each of a
        // page's 10,000 rows; planned with the values, the unused filters
        // fold away. Twice as fast at 1M rows (23 against 46 ms), for a
        // parse and plan per request (docs/performance.md).
        let rows: Vec<read::HostListSqlRow> = read::bind_source!(
            bind_filter!(
                sqlx::query_as(read::HOST_LIST_LATERAL_SQL).persistent(false),
                tenant,
                &query.filter
            )
            .bind(query.host.clone())
            .bind(query.after.clone())
            .bind(i64::from(query.limit)),
            &query.filter
        )
        .fetch_all(&self.pool)
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
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(ChangeMark::from))
    }

    fn set_stale_after(&self, window: std::time::Duration) {
        self.stale_window.set(window);
    }

    async fn sweep_stale(&self, stale_before: i64) -> Result<u64, StoreError> {
        sqlx::query(super::drift::SWEEP_UNMARK_SQL)
            .bind(stale_before)
            .execute(&self.pool)
            .await?;
        let mut marked = 0u64;
        loop {
            let (rows, _joined): (i64, i64) = sqlx::query_as(super::drift::PG_SWEEP_MARK_SQL)
                .bind(stale_before)
                .bind(super::drift::SWEEP_BATCH)
                .fetch_one(&self.pool)
                .await?;
            marked += u64::try_from(rows).unwrap_or(0);
            if rows < super::drift::SWEEP_BATCH {
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

/// Holds the tenant's change-mark lock, shared, until `tx` ends. Taken before
/// the first history or desired row of a transaction (see `store/mark.rs`);
/// shared holders never wait for each other, only, for a moment, for a
/// settled mark being read.
async fn hold_mark_lock(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
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
}

impl PostgresStore {
    async fn write(
        &self,
        tenant: &str,
        events: &[DeploymentEvent],
    ) -> Result<IngestSummary, StoreError> {
        let now = UnixNanos::now().0;
        let mut summary = IngestSummary::default();

        // Resolve observed dimensions outside the transaction: they are
        // idempotent upserts and are usually cached.
        let mut batch: Vec<(ObservedKey, ObservedRow)> = Vec::new();
        // Each target's workload, written on new rows (migration 0009).
        let mut workloads: HashMap<i64, i64> = HashMap::new();
        let mut tenant_id = None;
        for event in events {
            let DeploymentEvent::Observed(o) = event else {
                continue;
            };
            let ids = resolve_placement!(self, &self.pool, tenant, &o.placement)?;
            workloads.insert(ids.target, ids.workload);
            let host = resolve_dim!(
                self,
                &self.pool,
                DimKey::Host {
                    tenant: ids.tenant,
                    name: o.host.clone()
                }
            )?;
            let reconciler = resolve_dim!(
                self,
                &self.pool,
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

        let mut tx = self.pool.begin().await?;
        let mut mark_locked = false;
        if events
            .iter()
            .any(|e| matches!(e, DeploymentEvent::Desired(_)))
        {
            let id = resolve_dim!(self, &self.pool, DimKey::Tenant(tenant.to_owned()))?;
            hold_mark_lock(&mut tx, id).await?;
            mark_locked = true;
        }
        let desired = events.iter().filter_map(|e| match e {
            DeploymentEvent::Desired(d) => Some(d),
            DeploymentEvent::Observed(_) => None,
        });
        summary.desired_assignments = write_desired!(self, tx, tenant, desired, now);

        if let Some(tenant_id) = tenant_id {
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
            // Lock in key order so concurrent batches cannot deadlock.
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
            .fetch_all(&mut *tx)
            .await?;
            let current: HashMap<ObservedKey, ObservedRow> = rows
                .into_iter()
                .map(|(h, r, t, revision, status, message, job, observed_at)| {
                    let status = status_str(&status);
                    (
                        (h, r, t),
                        ObservedRow {
                            revision,
                            status,
                            message,
                            job,
                            observed_at,
                        },
                    )
                })
                .collect();

            let plan = plan::plan(&current, batch);
            // History rows follow: the change mark must see them settle.
            let appends = !plan.history.is_empty() || !plan.late.is_empty();
            if appends && !mark_locked {
                hold_mark_lock(&mut tx, tenant_id).await?;
            }
            if !plan.upserts.is_empty() {
                let mut c = Columns::default();
                let mut workload = Vec::with_capacity(plan.upserts.len());
                for (key, row, changed) in &plan.upserts {
                    c.push(*key, row, if *changed { row.observed_at } else { 0 });
                    workload.push(workloads.get(&key.2).copied().unwrap_or_default());
                }
                sqlx::query(
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
                .bind(tenant_id)
                .bind(&c.host)
                .bind(&c.reconciler)
                .bind(&c.target)
                .bind(&c.revision)
                .bind(&c.status)
                .bind(&c.message)
                .bind(&c.observed_at)
                .bind(&c.extra)
                .bind(&c.job)
                .bind(self.stale_window.before(now))
                .bind(&workload)
                .execute(&mut *tx)
                .await?;
            }
            if !plan.history.is_empty() {
                let mut c = Columns::default();
                for (key, row) in &plan.history {
                    c.push(*key, row, now);
                }
                let done = sqlx::query(
                    "INSERT INTO observed_history (tenant_id, host_id, reconciler_id, target_id, \
                       revision, status, message, observed_at, received_at, job_id) \
                     SELECT $1, k.* FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::text[], \
                       $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::text[]) AS k \
                     ON CONFLICT DO NOTHING",
                )
                .bind(tenant_id)
                .bind(&c.host)
                .bind(&c.reconciler)
                .bind(&c.target)
                .bind(&c.revision)
                .bind(&c.status)
                .bind(&c.message)
                .bind(&c.observed_at)
                .bind(&c.extra)
                .bind(&c.job)
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
}
