//! The in-memory DORA index: each tenant's deployments (the facts
//! `sextant_model::dora` counts, baselines left out) kept in the hub, so
//! that a report walks the targets in scope in memory instead of reading
//! every deployment of its window from the database (docs/insights.md,
//! "Cost of a report").
//!
//! A tenant's index is loaded at its first report and refreshed before each
//! one from the change feed `dora_changes`, which ingest appends to in the
//! transaction that writes the change: a row per target whose deployments it
//! rebuilt, and a row per workload whose revision times it wrote (a lead
//! time starts at its revision's time, which another target's report can
//! move). A refresh rereads the targets those rows name, in one snapshot:
//!
//! - PostgreSQL hands out transaction ids in the order transactions begin,
//!   not the order they commit. A refresh runs in a repeatable-read
//!   transaction and keeps its snapshot's xmin, the oldest transaction
//!   still running when it began: every older one has ended, so the next
//!   refresh rereads the rows of transactions from that xmin on, which
//!   holds every row this snapshot could not see.
//! - SQLite's one writer commits in id order: the next refresh reads the
//!   rows after the last id this one saw.
//!
//! So a report sees every change committed before it began, from any hub
//! on the same database. Feed rows older than a day are pruned by the
//! stale sweep; an index loads afresh twelve hours after its last load, so
//! that it never depends on feed rows older than that.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use sextant_model::DoraReport;
use sextant_model::dora::{self, DeploymentFacts, GroupKey};
use sqlx::{PgPool, SqlitePool};
use tokio::sync::Mutex;

use super::pool::{Statement, StorePool};
use super::sql::{reported_by_source, target_joins, target_where};
use super::{DoraQuery, StateQuery, StoreError};

/// How long the change feed keeps its rows, in nanoseconds.
pub(crate) const FEED_KEEPS: i64 = 24 * 3600 * 1_000_000_000;

/// An index older than this loads afresh: the feed rows it would need may
/// have been pruned.
const RELOAD_AFTER: Duration = Duration::from_secs(12 * 3600);

/// Every tenant's index in this hub.
#[derive(Debug, Default)]
pub struct DoraIndex {
    tenants: StdMutex<HashMap<String, Arc<Mutex<TenantIndex>>>>,
}

#[derive(Debug, Default)]
struct TenantIndex {
    /// Where the next refresh reads the feed from; `None` until loaded.
    cursor: Option<Cursor>,
    loaded_at: Option<Instant>,
    targets: HashMap<i64, Target>,
    /// Workload and environment ids, by group.
    group_of: HashMap<(i64, i64), usize>,
    groups: Vec<GroupKey>,
}

#[derive(Debug)]
struct Target {
    name: String,
    group: usize,
    /// Its deployments in start order.
    facts: Vec<DeploymentFacts>,
}

#[derive(Debug, Clone)]
enum Cursor {
    /// PostgreSQL: the previous snapshot's xmin (an `xid8` as text).
    Xid(String),
    /// SQLite: the last feed row id seen.
    Id(i64),
}

/// A target as the refresh reads it: id, workload, environment, name.
type TargetRow = (i64, i64, i64, String);

/// A deployment as the refresh reads it.
type FactRow = (
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
    Option<i64>,
);

/// The facts' columns, in [`FactRow`]'s order.
macro_rules! fact_columns {
    () => {
        "SELECT d.target_id, d.started_at, d.first_succeeded_at, d.failed_at, \
           d.first_failed_at, d.rework, \
           CASE WHEN d.rollback = 0 THEN COALESCE(rt.committed_at, rt.first_seen_at) END \
         FROM deployments d \
         LEFT JOIN revision_times rt ON rt.workload_id = d.workload_id AND rt.revision = d.revision \
         WHERE d.tenant_id = $1 AND d.baseline = 0"
    };
}

/// Every target of tenant `$1`.
const ALL_TARGETS_SQL: &str =
    "SELECT id, workload_id, environment_id, name FROM deployment_targets WHERE tenant_id = $1";
/// Every deployment of tenant `$1`.
const ALL_FACTS_SQL: &str = concat!(
    fact_columns!(),
    " ORDER BY d.target_id, d.started_at, d.start_host_id, d.start_reconciler_id, d.start_history_id"
);

/// The ids of the targets the feed names since cursor `$2` (the condition
/// on a feed row `c`), directly or by workload: a union of two index
/// lookups, small when little changed.
macro_rules! changed {
    ($after:expr) => {
        concat!(
            "SELECT c.target_id AS id FROM dora_changes c \
               WHERE c.tenant_id = $1 AND c.target_id IS NOT NULL AND ",
            $after,
            " \
             UNION SELECT t.id FROM dora_changes c \
               JOIN deployment_targets t ON t.workload_id = c.workload_id \
               WHERE c.tenant_id = $1 AND c.workload_id IS NOT NULL AND ",
            $after
        )
    };
}

/// The facts of the targets in `changed` (a CTE of their ids).
macro_rules! changed_facts {
    () => {
        "SELECT d.target_id, d.started_at, d.first_succeeded_at, d.failed_at, \
           d.first_failed_at, d.rework, \
           CASE WHEN d.rollback = 0 THEN COALESCE(rt.committed_at, rt.first_seen_at) END \
         FROM changed JOIN deployments d ON d.target_id = changed.id \
         LEFT JOIN revision_times rt ON rt.workload_id = d.workload_id AND rt.revision = d.revision \
         WHERE d.baseline = 0 \
         ORDER BY d.target_id, d.started_at, d.start_host_id, d.start_reconciler_id, d.start_history_id"
    };
}

/// The targets in `changed`.
macro_rules! changed_targets {
    () => {
        "SELECT t.id, t.workload_id, t.environment_id, t.name \
         FROM changed JOIN deployment_targets t ON t.id = changed.id"
    };
}

// PostgreSQL reads the feed rows of transactions from xmin `$2` on;
// SQLite the rows after id `$2`.
const PG_CHANGED_TARGETS_SQL: &str = concat!(
    "WITH changed AS (",
    changed!("c.xid >= CAST(CAST($2 AS TEXT) AS xid8)"),
    ") ",
    changed_targets!()
);
const PG_CHANGED_FACTS_SQL: &str = concat!(
    "WITH changed AS (",
    changed!("c.xid >= CAST(CAST($2 AS TEXT) AS xid8)"),
    ") ",
    changed_facts!()
);
const SQLITE_CHANGED_TARGETS_SQL: &str = concat!(
    "WITH changed AS (",
    changed!("c.id > $2"),
    ") ",
    changed_targets!()
);
const SQLITE_CHANGED_FACTS_SQL: &str = concat!(
    "WITH changed AS (",
    changed!("c.id > $2"),
    ") ",
    changed_facts!()
);

/// Tenant `$1`'s id.
const TENANT_SQL: &str = "SELECT id FROM tenants WHERE name = $1";

/// The names of a workload (workspace, application, workload) and of an
/// environment, by id, for tenant `$1`.
const WORKLOAD_NAMES_SQL: &str = "SELECT w.id, ws.name, a.name, w.name FROM workloads w \
     JOIN applications a ON a.id = w.application_id \
     JOIN workspaces ws ON ws.id = a.workspace_id WHERE w.tenant_id = $1";
const ENVIRONMENT_NAMES_SQL: &str = "SELECT id, name FROM environments WHERE tenant_id = $1";

/// The targets a current row of the filter's sources reports (`$1`–`$8`
/// as the reads' target and source filters).
const SOURCE_TARGETS_SQL: &str = concat!(
    "SELECT t.id FROM deployment_targets t",
    target_joins!(),
    target_where!(),
    reported_by_source!()
);

/// What one refresh read, in one snapshot.
struct Read {
    cursor: Cursor,
    /// `true`: everything, replacing the index.
    whole: bool,
    targets: Vec<TargetRow>,
    /// Each target's facts in start order (the group set when applied).
    facts: Vec<(i64, Vec<DeploymentFacts>)>,
    workloads: Vec<(i64, String, String, String)>,
    environments: Vec<(i64, String)>,
}

impl DoraIndex {
    /// DORA's report of `query` for `tenant`, from the index, refreshed
    /// first. `None` for a tenant that does not exist.
    pub(crate) async fn report(
        &self,
        reader: StorePool<'_>,
        tenant: &str,
        query: &DoraQuery,
    ) -> Result<Option<DoraReport>, StoreError> {
        let Some((tenant_id,)): Option<(i64,)> = reader
            .fetch_optional(Statement::new(TENANT_SQL).text(tenant.to_owned()))
            .await?
        else {
            return Ok(None);
        };
        let only: Option<HashSet<i64>> = if query.filter.source.is_empty() {
            None
        } else {
            let ids: Vec<(i64,)> = reader
                .fetch_all(
                    Statement::new(SOURCE_TARGETS_SQL)
                        .filter(tenant, &query.filter)
                        .source(&query.filter.source),
                )
                .await?;
            Some(ids.into_iter().map(|(id,)| id).collect())
        };
        let index = {
            let mut tenants = self.tenants.lock().expect("DORA index lock");
            tenants.entry(tenant.to_owned()).or_default().clone()
        };
        let mut index = index.lock().await;
        let stale = index.loaded_at.is_none_or(|at| at.elapsed() > RELOAD_AFTER);
        let cursor = if stale { None } else { index.cursor.clone() };
        let read = match reader {
            StorePool::Postgres(pool) => read_postgres(pool, tenant_id, cursor).await?,
            StorePool::Sqlite(pool) => read_sqlite(pool, tenant_id, cursor).await?,
        };
        index.apply(read);
        Ok(Some(index.report(query, only.as_ref())))
    }
}

/// Streams a facts query's rows (by target, in start order) straight into
/// each target's facts: a load of millions of deployments never holds them
/// twice.
macro_rules! facts_by_target {
    ($query:expr, $tx:expr) => {{
        use futures::TryStreamExt as _;
        let mut out: Vec<(i64, Vec<DeploymentFacts>)> = Vec::new();
        let mut rows = $query.fetch(&mut *$tx);
        while let Some(row) = rows.try_next().await? {
            push_fact(&mut out, row);
        }
        out
    }};
}

/// Adds a row to its target's facts (rows come by target).
fn push_fact(
    out: &mut Vec<(i64, Vec<DeploymentFacts>)>,
    (target, started_at, succeeded, failed, failure_reported, rework, lead_start): FactRow,
) {
    let fact = DeploymentFacts {
        group: 0,
        target,
        started_at,
        first_succeeded_at: succeeded,
        failed_at: failed,
        failure_reported_at: failure_reported,
        rework: rework != 0,
        lead_start,
    };
    match out.last_mut() {
        Some((t, facts)) if *t == target => facts.push(fact),
        _ => out.push((target, vec![fact])),
    }
}

/// Reads, in transaction `$tx`, what a refresh needs: every target and
/// deployment of tenant `$tenant` when `$after` is `None`, else those the
/// feed names after it (`$targets_sql`, `$facts_sql`), and the names.
macro_rules! read_snapshot {
    ($tx:expr, $tenant:expr, $after:expr, $targets_sql:expr, $facts_sql:expr) => {{
        let (targets, facts) = match $after {
            None => (
                sqlx::query_as(ALL_TARGETS_SQL)
                    .bind($tenant)
                    .fetch_all(&mut *$tx)
                    .await?,
                facts_by_target!(sqlx::query_as(ALL_FACTS_SQL).bind($tenant), $tx),
            ),
            Some(after) => (
                sqlx::query_as($targets_sql)
                    .bind($tenant)
                    .bind(after)
                    .fetch_all(&mut *$tx)
                    .await?,
                facts_by_target!(sqlx::query_as($facts_sql).bind($tenant).bind(after), $tx),
            ),
        };
        let workloads = sqlx::query_as(WORKLOAD_NAMES_SQL)
            .bind($tenant)
            .fetch_all(&mut *$tx)
            .await?;
        let environments = sqlx::query_as(ENVIRONMENT_NAMES_SQL)
            .bind($tenant)
            .fetch_all(&mut *$tx)
            .await?;
        (targets, facts, workloads, environments)
    }};
}

async fn read_postgres(
    pool: &PgPool,
    tenant: i64,
    cursor: Option<Cursor>,
) -> Result<Read, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    // The snapshot is taken by this first statement.
    let xmin: String =
        sqlx::query_scalar("SELECT CAST(pg_snapshot_xmin(pg_current_snapshot()) AS TEXT)")
            .fetch_one(&mut *tx)
            .await?;
    let after = match cursor {
        Some(Cursor::Xid(x)) => Some(x),
        _ => None,
    };
    let (targets, facts, workloads, environments) = read_snapshot!(
        tx,
        tenant,
        after.as_ref(),
        PG_CHANGED_TARGETS_SQL,
        PG_CHANGED_FACTS_SQL
    );
    tx.commit().await?;
    Ok(Read {
        cursor: Cursor::Xid(xmin),
        whole: after.is_none(),
        targets,
        facts,
        workloads,
        environments,
    })
}

async fn read_sqlite(
    pool: &SqlitePool,
    tenant: i64,
    cursor: Option<Cursor>,
) -> Result<Read, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM dora_changes")
        .fetch_one(&mut *tx)
        .await?;
    let after = match cursor {
        Some(Cursor::Id(id)) => Some(id),
        _ => None,
    };
    let (targets, facts, workloads, environments) = read_snapshot!(
        tx,
        tenant,
        after,
        SQLITE_CHANGED_TARGETS_SQL,
        SQLITE_CHANGED_FACTS_SQL
    );
    tx.commit().await?;
    Ok(Read {
        cursor: Cursor::Id(last),
        whole: after.is_none(),
        targets,
        facts,
        workloads,
        environments,
    })
}

impl TenantIndex {
    /// Replaces the targets `read` holds (or everything, for a whole load).
    fn apply(&mut self, read: Read) {
        if read.whole {
            *self = Self::default();
            self.loaded_at = Some(Instant::now());
        }
        let workloads: HashMap<i64, (String, String, String)> = read
            .workloads
            .into_iter()
            .map(|(id, ws, a, w)| (id, (ws, a, w)))
            .collect();
        let environments: HashMap<i64, String> = read.environments.into_iter().collect();
        for (id, workload, environment, name) in read.targets {
            let group = match self.group_of.get(&(workload, environment)) {
                Some(g) => *g,
                None => {
                    let (ws, a, w) = workloads.get(&workload).cloned().unwrap_or_default();
                    let e = environments.get(&environment).cloned().unwrap_or_default();
                    self.groups.push((ws, a, w, e));
                    self.group_of
                        .insert((workload, environment), self.groups.len() - 1);
                    self.groups.len() - 1
                }
            };
            // A target named by the feed is read again whole.
            self.targets.insert(
                id,
                Target {
                    name,
                    group,
                    facts: Vec::new(),
                },
            );
        }
        for (target, mut facts) in read.facts {
            let Some(t) = self.targets.get_mut(&target) else {
                continue;
            };
            for f in &mut facts {
                f.group = t.group;
            }
            facts.shrink_to_fit();
            t.facts = facts;
        }
        self.cursor = Some(read.cursor);
    }

    /// The report of `query` over the targets it names (and, with a source
    /// filter, among `only`).
    fn report(&self, query: &DoraQuery, only: Option<&HashSet<i64>>) -> DoraReport {
        let (since, until) = (query.since.0, query.until.0);
        let runs = self
            .targets
            .iter()
            .filter(|(id, t)| {
                only.is_none_or(|o| o.contains(id))
                    && in_scope(&query.filter, &self.groups[t.group], &t.name)
            })
            .map(|(_, t)| {
                let from = t.facts.partition_point(|f| f.started_at < since);
                let to = t.facts.partition_point(|f| f.started_at <= until);
                &t.facts[from..to.max(from)]
            })
            .filter(|run| !run.is_empty());
        dora::report_runs(since, until, query.bucket, &self.groups, runs)
    }
}

/// Whether a target of group `names` called `target` passes the filter's
/// names.
fn in_scope(f: &StateQuery, (ws, a, w, e): &GroupKey, target: &str) -> bool {
    let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|x| x == have);
    is(&f.workspace, ws)
        && is(&f.application, a)
        && is(&f.workload, w)
        && is(&f.environment, e)
        && is(&f.target, target)
}

/// Prunes the change feed's rows older than [`FEED_KEEPS`]; the stale
/// sweep calls it on the writer.
pub(crate) async fn prune(writer: StorePool<'_>) -> Result<u64, StoreError> {
    let before = sextant_model::UnixNanos::now().0 - FEED_KEEPS;
    writer
        .execute(Statement::new("DELETE FROM dora_changes WHERE at < $1").int(before))
        .await
}
