//! The orchestrator's durable state: SQLite (embedded default) or
//! PostgreSQL, through sqlx, with migrations applied at start.
//!
//! Both backends run the same SQL (`$n` placeholders work on both); the
//! [`on_pool!`] macro expands a body once per backend. State changes are
//! compare-and-set (`WHERE state = $expected`) and write their event in the
//! same transaction, so two replicas cannot both move one promotion, job or
//! task, and history is only ever appended.
//!
//! Leases: a job is driven by the replica holding its lease
//! ([`Store::claim_job`]); on PostgreSQL the candidate row is taken with
//! `FOR UPDATE SKIP LOCKED`, on SQLite the single-statement `UPDATE … WHERE
//! id = (SELECT …)` runs under SQLite's one writer lock, which has the same
//! effect.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sextant_kit::database::Backend;
use sextant_protocol::deploy::ErrorKind;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use utoipa::ToSchema;

use crate::domain::failure::FailureKind;
use crate::domain::task::{LogStream, TaskKind};
use crate::domain::{
    ComponentSpec, EnvironmentSpec, JobKind, JobState, PromotionState, Release, ReleaseComponent,
    ReleaseStatus, Strategy, TargetSpec, TaskState,
};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Open(#[from] sextant_kit::database::DatabaseError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

fn unjson<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(corrupt)
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

/// RFC 3339 of Unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Expands `$body` once per backend with `$pool` bound to the pool.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// The orchestrator store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
}

/// Rows behind the orchestrator's derived metrics ([`Store::metric_rows`]).
#[derive(Debug, Clone, Default)]
pub struct MetricRows {
    pub releases: i64,
    /// (environment, state, promotions)
    pub promotions: Vec<(String, String, i64)>,
    /// Every job.
    pub jobs: Vec<MetricJob>,
    /// (environment, error of the job rolled back, whether one of its tasks
    /// failed its health check): one per rollback job.
    pub rollbacks: Vec<(String, Option<FailureKind>, i64)>,
    /// (environment, execution model, targets)
    pub targets: Vec<(String, String, i64)>,
    /// (environment, requested at, decided at) of promotions that waited
    /// for approval or gates.
    pub approvals: Vec<(String, i64, i64)>,
    /// (name, revoked, has a session, last heartbeat) per agent.
    pub agents: Vec<(String, bool, bool, Option<i64>)>,
    /// (agent name, kind, state, outcome JSON, created at, updated at) of
    /// finished and expired agent tasks.
    pub agent_tasks: Vec<(String, String, String, Option<String>, i64, i64)>,
}

/// What `/metrics` reads of one job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricJob {
    /// `deploy` or `rollback`.
    pub kind: String,
    pub environment: String,
    /// The strategy as stored (JSON).
    pub strategy: String,
    pub state: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms, once the job has ended.
    pub finished_at: Option<i64>,
    /// The `traceparent` of the job's promotion (a rollback job's too),
    /// whose trace id becomes the job's exemplar.
    pub traceparent: Option<String>,
}

/// What applying one configuration object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

/// One change of a promotion, job or task, with its actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StateEvent {
    pub at: String,
    pub actor: String,
    pub from: Option<String>,
    pub to: String,
    pub detail: Option<String>,
}

const PROMOTION_COLUMNS: &str = "p.id, p.release_id, r.name AS release_name, p.environment, \
     p.state, p.requested_by, p.strategy, p.reason, p.job_id, p.created_at, p.updated_at, \
     p.traceparent";

const JOB_COLUMNS: &str = "j.id, j.tenant, j.kind, j.promotion_id, j.parent_job_id, j.release_id, \
     r.name AS release_name, j.environment, j.strategy, j.state, j.attempts, j.max_attempts, \
     j.lease_owner, j.error, j.failure, j.created_by, j.created_at, j.updated_at, j.finished_at, \
     (SELECT p.traceparent FROM promotions p WHERE p.id = j.promotion_id) AS traceparent";

const TASK_COLUMNS: &str = "id, job_id, position, batch, kind, release_id, target, component, image, digest, \
     previous_digest, slot, state, attempts, max_attempts, timeout_ms, exit_code, error, \
     error_type, started_at, finished_at";

macro_rules! promotion_row {
    ($r:expr) => {{
        let r = $r;
        Promotion {
            id: r.try_get("id")?,
            release_id: r.try_get("release_id")?,
            release: r.try_get("release_name")?,
            environment: r.try_get("environment")?,
            state: r.try_get::<String, _>("state")?.parse().map_err(corrupt)?,
            requested_by: r.try_get("requested_by")?,
            strategy: unjson(&r.try_get::<String, _>("strategy")?)?,
            reason: r.try_get("reason")?,
            job_id: r.try_get("job_id")?,
            created_at: rfc3339(r.try_get("created_at")?),
            updated_at: rfc3339(r.try_get("updated_at")?),
            traceparent: r.try_get("traceparent")?,
        }
    }};
}

macro_rules! job_row {
    ($r:expr) => {{
        let r = $r;
        Job {
            id: r.try_get("id")?,
            tenant: r.try_get("tenant")?,
            kind: r.try_get::<String, _>("kind")?.parse().map_err(corrupt)?,
            promotion_id: r.try_get("promotion_id")?,
            parent_job_id: r.try_get("parent_job_id")?,
            release_id: r.try_get("release_id")?,
            release: r.try_get("release_name")?,
            environment: r.try_get("environment")?,
            strategy: unjson(&r.try_get::<String, _>("strategy")?)?,
            state: r.try_get::<String, _>("state")?.parse().map_err(corrupt)?,
            attempts: r.try_get("attempts")?,
            max_attempts: r.try_get("max_attempts")?,
            lease_owner: r.try_get("lease_owner")?,
            error: r.try_get("error")?,
            failure: r
                .try_get::<Option<String>, _>("failure")?
                .map(|f| f.parse())
                .transpose()
                .map_err(corrupt)?,
            created_by: r.try_get("created_by")?,
            created_at: rfc3339(r.try_get("created_at")?),
            updated_at: rfc3339(r.try_get("updated_at")?),
            finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(rfc3339),
            traceparent: r.try_get("traceparent")?,
        }
    }};
}

macro_rules! task_row {
    ($r:expr) => {{
        let r = $r;
        Task {
            id: r.try_get("id")?,
            job_id: r.try_get("job_id")?,
            position: r.try_get("position")?,
            batch: r.try_get("batch")?,
            kind: unjson(&format!("\"{}\"", r.try_get::<String, _>("kind")?))?,
            release_id: r.try_get("release_id")?,
            target: r.try_get("target")?,
            component: r.try_get("component")?,
            image: r.try_get("image")?,
            digest: r.try_get("digest")?,
            previous_digest: r.try_get("previous_digest")?,
            slot: r.try_get("slot")?,
            state: r.try_get::<String, _>("state")?.parse().map_err(corrupt)?,
            attempts: r.try_get("attempts")?,
            max_attempts: r.try_get("max_attempts")?,
            timeout_ms: r.try_get("timeout_ms")?,
            exit_code: r.try_get("exit_code")?,
            error: r.try_get("error")?,
            error_type: match r.try_get::<Option<String>, _>("error_type")? {
                Some(t) => Some(unjson(&format!("\"{t}\""))?),
                None => None,
            },
            started_at: r.try_get::<Option<i64>, _>("started_at")?.map(rfc3339),
            finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(rfc3339),
        }
    }};
}

/// One page of a list. Lists are newest first: `created_at`, then `id`,
/// both descending, so that rows made in the same millisecond still have
/// one order. A page holds at most `limit` rows strictly after the row
/// `before` (the last row of the previous page) in that order; the list
/// methods answer `None` when `before` is not a row of the tenant's list.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    pub before: Option<&'a str>,
    pub limit: i64,
}

impl Page<'static> {
    /// The first `limit` rows.
    pub fn first(limit: i64) -> Self {
        Self {
            before: None,
            limit,
        }
    }
}

/// The rows of a list strictly after the cursor row `(created_at, id)`
/// bound as `$at` and `$at + 1`, on table alias `t`. `created_at <= $at`
/// lets an index on `(…, created_at, id)` start its range at the cursor on
/// both backends; the rest drops the cursor's earlier siblings.
fn after_cursor(t: &str, at: usize) -> String {
    format!(
        " AND {t}.created_at <= ${at} AND ({t}.created_at < ${at} OR {t}.id < ${next})",
        next = at + 1
    )
}

/// A compare-and-set state move and its event, in one transaction: runs
/// `$update` (whose `WHERE` holds the expected state) and, only if it
/// matched a row, appends the event to `$table` (keyed by `$key`). The
/// enclosing function returns `Ok(false)` when the row was not in the
/// expected state, so two replicas never both move one row and history is
/// only ever appended.
macro_rules! move_and_record {
    ($pool:expr, $update:expr, $table:literal($key:literal), $event:expr) => {{
        let event: &EventRow<'_> = &$event;
        let mut tx = $pool.begin().await?;
        if $update.execute(&mut *tx).await?.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(concat!(
            "INSERT INTO ",
            $table,
            " (",
            $key,
            ", at, actor, from_state, to_state, detail) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(event.id)
        .bind(event.at)
        .bind(event.actor)
        .bind(event.from)
        .bind(event.to)
        .bind(event.detail)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }};
}

/// The event of a state move ([`move_and_record!`]).
struct EventRow<'a> {
    id: &'a str,
    at: i64,
    actor: &'a str,
    from: &'static str,
    to: &'static str,
    detail: Option<&'a str>,
}

fn event_row(
    at: i64,
    actor: String,
    from: Option<String>,
    to: String,
    detail: Option<String>,
) -> StateEvent {
    StateEvent {
        at: rfc3339(at),
        actor,
        from,
        to,
        detail,
    }
}

fn enum_text<T: Serialize>(value: &T) -> String {
    json(value).trim_matches('"').to_owned()
}

// The entities, one file each; declared after the row macros above so
// they can use them.
pub mod agents;
mod deployed;
mod jobs;
mod promotions;
mod releases;
mod specs;
mod tasks;
#[cfg(test)]
mod tests;

pub use agents::{AgentInfo, AgentRow, MailItem, MailState, RegisterRefusal};
pub use deployed::{Deployed, DeployedOn, PreviousDeployment};
pub use jobs::{Job, NewJob};
pub use promotions::PromotionFilter;
pub use promotions::{Approval, DecisionRecord, NewPromotion, Promotion};
pub use tasks::{ArtifactInfo, NewTask, Task, TaskLogLine, TaskMove, TaskResultRow};

impl Store {
    /// The `(created_at, id)` of row `id` of the tenant's `table`, the
    /// cursor of a [`Page`]; `None` when there is no such row.
    async fn cursor(
        &self,
        table: &'static str,
        tenant: &str,
        id: &str,
    ) -> Result<Option<(i64, String)>> {
        let sql = format!("SELECT created_at, id FROM {table} WHERE tenant = $1 AND id = $2");
        on_pool!(self, |pool| {
            Ok(
                sqlx::query_as::<_, (i64, String)>(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(tenant)
                    .bind(id)
                    .fetch_optional(pool)
                    .await?,
            )
        })
    }

    /// The cursor of `page` in `table`: `Ok(None)` when it has one that is
    /// not a row of the tenant's, `Ok(Some(None))` when it has none.
    async fn page_cursor(
        &self,
        table: &'static str,
        tenant: &str,
        page: Page<'_>,
    ) -> Result<Option<Option<(i64, String)>>> {
        match page.before {
            None => Ok(Some(None)),
            Some(before) => Ok(self.cursor(table, tenant, before).await?.map(Some)),
        }
    }

    /// The events `move_and_record!` appended for one promotion or job,
    /// read by `sql` (which selects them by `$1`, oldest first).
    async fn state_events(&self, sql: &'static str, id: &str) -> Result<Vec<StateEvent>> {
        on_pool!(self, |pool| {
            let rows =
                sqlx::query_as::<_, (i64, String, Option<String>, String, Option<String>)>(sql)
                    .bind(id)
                    .fetch_all(pool)
                    .await?;
            Ok(rows
                .into_iter()
                .map(|(at, actor, from, to, detail)| event_row(at, actor, from, to, detail))
                .collect())
        })
    }

    /// Opens `url` (`sqlite://PATH` or `postgres://…`) and applies migrations.
    pub async fn open(url: &str) -> Result<Self> {
        match Backend::of(url)? {
            Backend::Sqlite => {
                // WAL with NORMAL syncs at checkpoints, not at every commit
                // (kit::database): tasks are idempotent by run key, so a
                // move lost to a power cut is redone. FULL cost an fsync
                // per commit: 0.6x the throughput of a 1,000-agent job
                // (docs/performance.md).
                let options = sextant_kit::database::sqlite_options(url)?;
                // One connection: SQLite has one writer, and every
                // transaction here writes; queueing in the pool beats
                // SQLITE_BUSY upgrades.
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await?;
                sqlite_migrations().run(&pool).await?;
                Ok(Self {
                    pool: Pool::Sqlite(pool),
                })
            }
            Backend::Postgres => {
                let options = sextant_kit::database::postgres_options(url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await?;
                postgres_migrations().run(&pool).await?;
                Ok(Self {
                    pool: Pool::Postgres(pool),
                })
            }
        }
    }

    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// A trivial query, for readiness.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// What `/metrics` derives its estate-wide series from (every tenant):
    /// see [`crate::metrics`]. Times are Unix milliseconds.
    /// (name, revoked, has a session, last heartbeat) of every agent of
    /// every tenant: what `/health` needs of `metric_rows`, without the
    /// jobs.
    pub async fn agent_liveness(&self) -> Result<Vec<(String, bool, bool, Option<i64>)>> {
        on_pool!(self, |pool| {
            Ok(
                sqlx::query_as::<_, (String, Option<i64>, Option<String>, Option<i64>)>(
                    "SELECT name, revoked_at, session, last_heartbeat FROM agents",
                )
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|(name, revoked, session, heartbeat)| {
                    (name, revoked.is_some(), session.is_some(), heartbeat)
                })
                .collect(),
            )
        })
    }

    pub async fn metric_rows(&self) -> Result<MetricRows> {
        on_pool!(self, |pool| {
            let releases: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM releases")
                .fetch_one(pool)
                .await?;
            let promotions = sqlx::query_as::<_, (String, String, i64)>(
                "SELECT environment, state, COUNT(*) FROM promotions GROUP BY environment, state",
            )
            .fetch_all(pool)
            .await?;
            type JobRow = (
                String,
                String,
                String,
                String,
                i64,
                Option<i64>,
                Option<String>,
            );
            let jobs = sqlx::query_as::<_, JobRow>(
                "SELECT j.kind, j.environment, j.strategy, j.state, j.created_at, j.finished_at, \
                     p.traceparent \
                 FROM jobs j LEFT JOIN promotions p ON p.id = j.promotion_id",
            )
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(
                |(kind, environment, strategy, state, created_at, finished_at, traceparent)| {
                    MetricJob {
                        kind,
                        environment,
                        strategy,
                        state,
                        created_at,
                        finished_at,
                        traceparent,
                    }
                },
            )
            .collect();
            let rollbacks = sqlx::query_as::<_, (String, Option<String>, i64)>(
                "SELECT j.environment, p.failure, CAST(CASE WHEN EXISTS (SELECT 1 FROM tasks t \
                     WHERE t.job_id = p.id AND t.state = 'failed' AND t.error_type = 'health') \
                     THEN 1 ELSE 0 END AS BIGINT) \
                 FROM jobs j JOIN jobs p ON p.id = j.parent_job_id \
                 WHERE j.kind = 'rollback'",
            )
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|(env, failure, health)| {
                let failure = failure.map(|f| f.parse()).transpose().map_err(corrupt)?;
                Ok((env, failure, health))
            })
            .collect::<Result<Vec<_>>>()?;
            let targets = sqlx::query_as::<_, (String, String, i64)>(
                "SELECT environment, execution, COUNT(*) FROM targets \
                 GROUP BY environment, execution",
            )
            .fetch_all(pool)
            .await?;
            let approvals = sqlx::query_as::<_, (String, i64, i64)>(
                "SELECT p.environment, p.created_at, d.decided_at FROM promotions p \
                 JOIN decision_records d ON d.promotion_id = p.id \
                 WHERE EXISTS (SELECT 1 FROM promotion_events e \
                     WHERE e.promotion_id = p.id AND e.to_state = 'awaiting_approval')",
            )
            .fetch_all(pool)
            .await?;
            let agents = self.agent_liveness().await?;
            let agent_tasks =
                sqlx::query_as::<_, (String, String, String, Option<String>, i64, i64)>(
                    "SELECT a.name, t.kind, t.state, t.outcome, t.created_at, t.updated_at \
                     FROM agent_tasks t JOIN agents a ON a.id = t.agent_id \
                     WHERE t.state IN ('finished', 'expired')",
                )
                .fetch_all(pool)
                .await?;
            Ok(MetricRows {
                releases,
                promotions,
                jobs,
                rollbacks,
                targets,
                approvals,
                agents,
                agent_tasks,
            })
        })
    }

    // -- configuration ------------------------------------------------------
}

macro_rules! migrations {
    ($dir:literal: $($version:literal => $name:literal),* $(,)?) => {
        sqlx::migrate::Migrator::with_migrations(vec![$(sqlx::migrate::Migration::new(
            $version,
            std::borrow::Cow::Borrowed($name),
            sqlx::migrate::MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str(include_str!(concat!("../../migrations/", $dir, "/", $name, ".sql"))),
            false,
        )),*])
    };
}

fn sqlite_migrations() -> sqlx::migrate::Migrator {
    migrations!("sqlite": 1 => "0001_orchestrator", 2 => "0002_one_rollback_job", 3 => "0003_agents",
        4 => "0004_promotion_trace", 5 => "0005_job_failure", 6 => "0006_list_pages")
}

fn postgres_migrations() -> sqlx::migrate::Migrator {
    migrations!("postgres": 1 => "0001_orchestrator", 2 => "0002_one_rollback_job", 3 => "0003_agents",
        4 => "0004_promotion_trace", 5 => "0005_job_failure", 6 => "0006_list_pages")
}
