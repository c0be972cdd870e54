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
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use utoipa::ToSchema;

use crate::executor::{ErrorType, LogStream, TaskKind};
use crate::model::{
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
    #[error("unsupported database URL {0:?}: expected sqlite://… or postgres://…")]
    UnsupportedUrl(String),
    #[error("cannot create the database directory {path}: {source}")]
    Directory {
        path: String,
        #[source]
        source: std::io::Error,
    },
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

pub mod agents;
pub use agents::{AgentInfo, AgentRow, MailItem, MailState, RegisterRefusal};

/// What a job deployed on one target ([`Store::set_deployed_all`]).
#[derive(Debug, Clone, Copy)]
pub struct DeployedOn<'a> {
    pub target: &'a str,
    pub component: &'a str,
    pub release_id: &'a str,
    pub image: &'a str,
    pub digest: &'a str,
    pub slot: Option<&'a str>,
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
    /// (kind, environment, strategy JSON, state, created_at, finished_at)
    pub jobs: Vec<(String, String, String, String, i64, Option<i64>)>,
    /// (environment, error of the job rolled back, whether one of its tasks
    /// failed its health check): one per rollback job.
    pub rollbacks: Vec<(String, Option<String>, i64)>,
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

/// What applying one configuration object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

/// A promotion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Promotion {
    pub id: String,
    pub release_id: String,
    pub release: String,
    pub environment: String,
    pub state: PromotionState,
    pub requested_by: String,
    pub strategy: Strategy,
    pub reason: Option<String>,
    pub job_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The W3C `traceparent` of the promotion's span: its trace holds the
    /// approval wait, the gates, the deployment and every task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
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

/// An approval or a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Approval {
    pub approver: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub comment: Option<String>,
    pub at: String,
}

/// A deployment job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    pub promotion_id: Option<String>,
    pub parent_job_id: Option<String>,
    pub release_id: String,
    pub release: String,
    pub environment: String,
    pub strategy: Strategy,
    pub state: JobState,
    pub attempts: i64,
    pub max_attempts: i64,
    pub lease_owner: Option<String>,
    pub error: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
    #[serde(skip)]
    pub tenant: String,
}

/// One task of a job: one component on one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    pub id: String,
    pub job_id: String,
    pub position: i64,
    /// Strategy batch (rolling batch or canary stage), from 0.
    pub batch: i64,
    pub kind: TaskKind,
    /// The release whose digest this task deploys.
    pub release_id: String,
    pub target: String,
    pub component: String,
    pub image: String,
    pub digest: String,
    pub previous_digest: Option<String>,
    pub slot: Option<String>,
    pub state: TaskState,
    pub attempts: i64,
    pub max_attempts: i64,
    pub timeout_ms: i64,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    pub error_type: Option<ErrorType>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// A task to create with its job.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub batch: i64,
    pub kind: TaskKind,
    pub release_id: String,
    pub target: String,
    pub component: String,
    pub image: String,
    pub digest: String,
    pub previous_digest: Option<String>,
    pub slot: Option<String>,
    pub max_attempts: i64,
    pub timeout_ms: i64,
}

/// A promotion to create, in `requested`.
#[derive(Debug, Clone, Copy)]
pub struct NewPromotion<'a> {
    pub tenant: &'a str,
    pub release_id: &'a str,
    pub environment: &'a str,
    pub requested_by: &'a str,
    pub strategy: &'a Strategy,
    pub reason: Option<&'a str>,
    /// The W3C `traceparent` of the span requesting it.
    pub traceparent: Option<&'a str>,
}

/// A job to create.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub tenant: String,
    pub kind: JobKind,
    pub promotion_id: Option<String>,
    pub parent_job_id: Option<String>,
    pub release_id: String,
    pub environment: String,
    pub strategy: Strategy,
    pub max_attempts: i64,
    pub created_by: String,
    pub tasks: Vec<NewTask>,
}

/// One line of a task's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskLogLine {
    pub id: i64,
    pub attempt: i64,
    pub at: String,
    pub stream: LogStream,
    pub line: String,
}

/// A stored artifact (content omitted from listings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArtifactInfo {
    pub target: String,
    pub name: String,
    pub sha256: String,
    pub size: i64,
    pub created_at: String,
}

/// What last succeeded on a (target, component).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Deployed {
    pub target: String,
    pub component: String,
    pub release_id: String,
    pub image: String,
    pub digest: String,
    pub slot: Option<String>,
    pub job_id: String,
    pub deployed_at: String,
    /// What ran before, if anything.
    pub previous: Option<PreviousDeployment>,
}

/// The deployment before the current one on a (target, component).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreviousDeployment {
    pub release_id: String,
    pub image: String,
    pub digest: String,
    pub slot: Option<String>,
}

/// A decision record: each gate's and approval's result, written once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DecisionRecord {
    pub promotion_id: String,
    pub outcome: String,
    pub record: serde_json::Value,
    pub decided_at: String,
}

const PROMOTION_COLUMNS: &str = "p.id, p.release_id, r.name AS release_name, p.environment, \
     p.state, p.requested_by, p.strategy, p.reason, p.job_id, p.created_at, p.updated_at, \
     p.traceparent";

const JOB_COLUMNS: &str = "j.id, j.tenant, j.kind, j.promotion_id, j.parent_job_id, j.release_id, \
     r.name AS release_name, j.environment, j.strategy, j.state, j.attempts, j.max_attempts, \
     j.lease_owner, j.error, j.created_by, j.created_at, j.updated_at, j.finished_at";

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
            created_by: r.try_get("created_by")?,
            created_at: rfc3339(r.try_get("created_at")?),
            updated_at: rfc3339(r.try_get("updated_at")?),
            finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(rfc3339),
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

impl Store {
    /// Opens `url` (`sqlite://PATH` or `postgres://…`) and applies migrations.
    pub async fn open(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // With WAL, NORMAL syncs at checkpoints, not at every
                // commit: a crash of the process loses nothing, a power
                // loss at most the last transactions, never consistency
                // (tasks are idempotent by run key, so a lost move is
                // redone). FULL cost an fsync per commit: 0.6x the
                // throughput of a 1,000-agent job (docs/performance.md).
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            if let Some(dir) = Path::new(options.get_filename()).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            // One connection: SQLite has one writer, and every transaction
            // here writes; queueing in the pool beats SQLITE_BUSY upgrades.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await?;
            sqlite_migrations().run(&pool).await?;
            Ok(Self {
                pool: Pool::Sqlite(pool),
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            postgres_migrations().run(&pool).await?;
            Ok(Self {
                pool: Pool::Postgres(pool),
            })
        } else {
            Err(StoreError::UnsupportedUrl(url.to_owned()))
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
            let jobs = sqlx::query_as::<_, (String, String, String, String, i64, Option<i64>)>(
                "SELECT kind, environment, strategy, state, created_at, finished_at FROM jobs",
            )
            .fetch_all(pool)
            .await?;
            let rollbacks = sqlx::query_as::<_, (String, Option<String>, i64)>(
                "SELECT j.environment, p.error, CAST(CASE WHEN EXISTS (SELECT 1 FROM tasks t \
                     WHERE t.job_id = p.id AND t.state = 'failed' AND t.error_type = 'health') \
                     THEN 1 ELSE 0 END AS BIGINT) \
                 FROM jobs j JOIN jobs p ON p.id = j.parent_job_id \
                 WHERE j.kind = 'rollback'",
            )
            .fetch_all(pool)
            .await?;
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

    /// Creates or updates environment `spec` at `position`.
    pub async fn put_environment(
        &self,
        tenant: &str,
        spec: &EnvironmentSpec,
        position: i64,
    ) -> Result<Change> {
        let text = json(spec);
        self.put_config(
            "environments",
            tenant,
            &spec.name,
            &text,
            &[("position", position.to_string())],
        )
        .await
    }

    /// Creates or updates target `spec`.
    pub async fn put_target(&self, tenant: &str, spec: &TargetSpec) -> Result<Change> {
        let execution = spec
            .connection()
            .map_err(StoreError::Corrupt)?
            .execution()
            .to_owned();
        let text = json(spec);
        self.put_config(
            "targets",
            tenant,
            &spec.name,
            &text,
            &[
                ("environment", spec.environment.clone()),
                ("execution", execution),
            ],
        )
        .await
    }

    /// Creates or updates component `spec`.
    pub async fn put_component(&self, tenant: &str, spec: &ComponentSpec) -> Result<Change> {
        let text = json(spec);
        self.put_config("components", tenant, &spec.name, &text, &[])
            .await
    }

    async fn put_config(
        &self,
        table: &str,
        tenant: &str,
        name: &str,
        spec: &str,
        extra: &[(&str, String)],
    ) -> Result<Change> {
        let select = format!(
            "SELECT spec{} FROM {table} WHERE tenant = $1 AND name = $2",
            extra
                .iter()
                .map(|(c, _)| format!(", CAST({c} AS TEXT) AS {c}"))
                .collect::<String>()
        );
        let columns: String = extra.iter().map(|(c, _)| format!(", {c}")).collect();
        let placeholders: String = (0..extra.len()).map(|i| format!(", ${}", i + 5)).collect();
        let updates: String = extra
            .iter()
            .enumerate()
            .map(|(i, (c, _))| format!(", {c} = ${}", i + 5))
            .collect();
        let insert = format!(
            "INSERT INTO {table} (tenant, name, spec, updated_at{columns}) \
             VALUES ($1, $2, $3, $4{placeholders}) \
             ON CONFLICT (tenant, name) DO UPDATE SET spec = $3, updated_at = $4{updates}"
        );
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let old = sqlx::query(sqlx::AssertSqlSafe(select.clone()))
                .bind(tenant)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            let change = match old {
                None => Change::Created,
                Some(row) => {
                    let same_spec = row.try_get::<String, _>("spec")? == spec;
                    let mut same_extra = true;
                    for (column, value) in extra {
                        same_extra &= row.try_get::<String, _>(*column)? == *value;
                    }
                    if same_spec && same_extra {
                        Change::Unchanged
                    } else {
                        Change::Updated
                    }
                }
            };
            if change != Change::Unchanged {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
                    .bind(tenant)
                    .bind(name)
                    .bind(spec)
                    .bind(now_ms());
                for (column, value) in extra {
                    q = if *column == "position" {
                        q.bind(value.parse::<i64>().unwrap_or_default())
                    } else {
                        q.bind(value.clone())
                    };
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(change)
        })
    }

    /// Environments in promotion order.
    pub async fn environments(&self, tenant: &str) -> Result<Vec<EnvironmentSpec>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT spec FROM environments WHERE tenant = $1 ORDER BY position, name",
            )
            .bind(tenant)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| unjson(&r.try_get::<String, _>("spec")?))
                .collect()
        })
    }

    /// Targets, optionally of one environment, by name.
    pub async fn targets(
        &self,
        tenant: &str,
        environment: Option<&str>,
    ) -> Result<Vec<TargetSpec>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT spec FROM targets WHERE tenant = $1 AND ($2 IS NULL OR environment = $2) \
                 ORDER BY name",
            )
            .bind(tenant)
            .bind(environment)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| unjson(&r.try_get::<String, _>("spec")?))
                .collect()
        })
    }

    pub async fn target(&self, tenant: &str, name: &str) -> Result<Option<TargetSpec>> {
        on_pool!(self, |pool| {
            let row = sqlx::query("SELECT spec FROM targets WHERE tenant = $1 AND name = $2")
                .bind(tenant)
                .bind(name)
                .fetch_optional(pool)
                .await?;
            row.map(|r| unjson(&r.try_get::<String, _>("spec")?))
                .transpose()
        })
    }

    pub async fn components(&self, tenant: &str) -> Result<Vec<ComponentSpec>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query("SELECT spec FROM components WHERE tenant = $1 ORDER BY name")
                .bind(tenant)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| unjson(&r.try_get::<String, _>("spec")?))
                .collect()
        })
    }

    // -- releases -----------------------------------------------------------

    /// Creates a release; `None` if the name is taken.
    pub async fn create_release(
        &self,
        tenant: &str,
        name: &str,
        components: &[ReleaseComponent],
        created_by: &str,
        finalize: bool,
    ) -> Result<Option<Release>> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO releases (id, tenant, name, status, created_by, created_at) \
                 VALUES ($1, $2, $3, 'draft', $4, $5) ON CONFLICT (tenant, name) DO NOTHING",
            )
            .bind(&id)
            .bind(tenant)
            .bind(name)
            .bind(created_by)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Ok(None);
            }
            for c in components {
                sqlx::query(
                    "INSERT INTO release_components (release_id, component, image, digest, tag) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&id)
                .bind(&c.component)
                .bind(&c.image)
                .bind(&c.digest)
                .bind(&c.tag)
                .execute(&mut *tx)
                .await?;
            }
            if finalize {
                sqlx::query(
                    "UPDATE releases SET status = 'finalized', finalized_at = $2 WHERE id = $1",
                )
                .bind(&id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })?;
        self.release(tenant, &id).await
    }

    /// Finalizes a draft release; `false` if it was not a draft.
    pub async fn finalize_release(&self, tenant: &str, id: &str) -> Result<bool> {
        on_pool!(self, |pool| {
            let n = sqlx::query(
                "UPDATE releases SET status = 'finalized', finalized_at = $3 \
                 WHERE tenant = $1 AND id = $2 AND status = 'draft'",
            )
            .bind(tenant)
            .bind(id)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
    }

    /// A release by id or by name.
    pub async fn release(&self, tenant: &str, id_or_name: &str) -> Result<Option<Release>> {
        on_pool!(self, |pool| {
            let Some(r) = sqlx::query(
                "SELECT id, name, status, created_by, created_at, finalized_at FROM releases \
                 WHERE tenant = $1 AND (id = $2 OR name = $2)",
            )
            .bind(tenant)
            .bind(id_or_name)
            .fetch_optional(pool)
            .await?
            else {
                return Ok(None);
            };
            let id: String = r.try_get("id")?;
            let rows = sqlx::query(
                "SELECT component, image, digest, tag FROM release_components \
                 WHERE release_id = $1 ORDER BY component",
            )
            .bind(&id)
            .fetch_all(pool)
            .await?;
            let mut components = Vec::with_capacity(rows.len());
            for c in rows {
                components.push(ReleaseComponent {
                    component: c.try_get("component")?,
                    image: c.try_get("image")?,
                    digest: c.try_get("digest")?,
                    tag: c.try_get("tag")?,
                });
            }
            let status = match r.try_get::<String, _>("status")?.as_str() {
                "finalized" => ReleaseStatus::Finalized,
                _ => ReleaseStatus::Draft,
            };
            Ok(Some(Release {
                id,
                name: r.try_get("name")?,
                status,
                components,
                created_by: r.try_get("created_by")?,
                created_at: rfc3339(r.try_get("created_at")?),
                finalized_at: r.try_get::<Option<i64>, _>("finalized_at")?.map(rfc3339),
            }))
        })
    }

    /// Releases, newest first.
    pub async fn releases(&self, tenant: &str, limit: i64) -> Result<Vec<Release>> {
        let ids: Vec<String> = on_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT id FROM releases WHERE tenant = $1 ORDER BY created_at DESC, id LIMIT $2",
            )
            .bind(tenant)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.release(tenant, &id).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    // -- promotions ---------------------------------------------------------

    pub async fn create_promotion(&self, new: &NewPromotion<'_>) -> Result<Promotion> {
        let NewPromotion {
            tenant,
            release_id,
            environment,
            requested_by,
            strategy,
            reason,
            traceparent,
        } = *new;
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO promotions (id, tenant, release_id, environment, state, requested_by, \
                     strategy, reason, created_at, updated_at, traceparent) \
                 VALUES ($1, $2, $3, $4, 'requested', $5, $6, $7, $8, $8, $9)",
            )
            .bind(&id)
            .bind(tenant)
            .bind(release_id)
            .bind(environment)
            .bind(requested_by)
            .bind(json(strategy))
            .bind(reason)
            .bind(now)
            .bind(traceparent)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO promotion_events (promotion_id, at, actor, from_state, to_state, detail) \
                 VALUES ($1, $2, $3, NULL, 'requested', $4)",
            )
            .bind(&id)
            .bind(now)
            .bind(requested_by)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })?;
        self.promotion(tenant, &id)
            .await?
            .ok_or_else(|| corrupt("promotion vanished"))
    }

    pub async fn promotion(&self, tenant: &str, id: &str) -> Result<Option<Promotion>> {
        let sql = format!(
            "SELECT {PROMOTION_COLUMNS} FROM promotions p JOIN releases r ON r.id = p.release_id \
             WHERE p.tenant = $1 AND p.id = $2"
        );
        on_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant)
                .bind(id)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok(Some(promotion_row!(&r))),
                None => Ok(None),
            }
        })
    }

    /// Promotions, newest first, optionally in the given states.
    pub async fn promotions(
        &self,
        tenant: &str,
        states: &[PromotionState],
        limit: i64,
    ) -> Result<Vec<Promotion>> {
        let filter = if states.is_empty() {
            String::new()
        } else {
            format!(
                " AND p.state IN ({})",
                states
                    .iter()
                    .map(|s| format!("'{}'", s.as_str()))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        let sql = format!(
            "SELECT {PROMOTION_COLUMNS} FROM promotions p JOIN releases r ON r.id = p.release_id \
             WHERE p.tenant = $1{filter} ORDER BY p.created_at DESC, p.id LIMIT $2"
        );
        on_pool!(self, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(promotion_row!(r));
            }
            Ok(out)
        })
    }

    /// Tenants with promotions in `states` (for the gate loop).
    pub async fn promotions_in(&self, states: &[PromotionState]) -> Result<Vec<(String, String)>> {
        let list = states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT tenant, id FROM promotions WHERE state IN ({list}) ORDER BY created_at, id"
        );
        on_pool!(self, |pool| {
            Ok(
                sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql.clone()))
                    .fetch_all(pool)
                    .await?,
            )
        })
    }

    /// Moves a promotion from `from` to `to` (compare-and-set) and records
    /// the event; `false` if it was not in `from`.
    pub async fn move_promotion(
        &self,
        id: &str,
        from: PromotionState,
        to: PromotionState,
        actor: &str,
        detail: Option<&str>,
        job_id: Option<&str>,
    ) -> Result<bool> {
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "UPDATE promotions SET state = $3, updated_at = $4, job_id = COALESCE($5, job_id) \
                 WHERE id = $1 AND state = $2",
            )
            .bind(id)
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(now)
            .bind(job_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO promotion_events (promotion_id, at, actor, from_state, to_state, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(now)
            .bind(actor)
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(detail)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    pub async fn promotion_events(&self, id: &str) -> Result<Vec<StateEvent>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query_as::<_, (i64, String, Option<String>, String, Option<String>)>(
                "SELECT at, actor, from_state, to_state, detail FROM promotion_events \
                 WHERE promotion_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(at, actor, from, to, detail)| event_row(at, actor, from, to, detail))
                .collect())
        })
    }

    /// Records an approval; `false` if this approver already decided.
    pub async fn add_approval(
        &self,
        promotion_id: &str,
        approver: &str,
        approve: bool,
        comment: Option<&str>,
    ) -> Result<bool> {
        on_pool!(self, |pool| {
            let n = sqlx::query(
                "INSERT INTO approvals (promotion_id, approver, decision, comment, at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (promotion_id, approver) DO NOTHING",
            )
            .bind(promotion_id)
            .bind(approver)
            .bind(if approve { "approve" } else { "reject" })
            .bind(comment)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
    }

    pub async fn approvals(&self, promotion_id: &str) -> Result<Vec<Approval>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query_as::<_, (String, String, Option<String>, i64)>(
                "SELECT approver, decision, comment, at FROM approvals \
                 WHERE promotion_id = $1 ORDER BY id",
            )
            .bind(promotion_id)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(approver, decision, comment, at)| Approval {
                    approver,
                    decision,
                    comment,
                    at: rfc3339(at),
                })
                .collect())
        })
    }

    /// Opens or closes a manual gate of a promotion.
    pub async fn set_manual_gate(
        &self,
        promotion_id: &str,
        gate: &str,
        open: bool,
        actor: &str,
        comment: Option<&str>,
    ) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO manual_gates (promotion_id, gate, open, actor, comment, at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (promotion_id, gate) \
                 DO UPDATE SET open = $3, actor = $4, comment = $5, at = $6",
            )
            .bind(promotion_id)
            .bind(gate)
            .bind(i64::from(open))
            .bind(actor)
            .bind(comment)
            .bind(now_ms())
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Manual gates of a promotion: name → (open, actor, at, comment).
    pub async fn manual_gates(
        &self,
        promotion_id: &str,
    ) -> Result<BTreeMap<String, (bool, String, String, Option<String>)>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query_as::<_, (String, i64, String, i64, Option<String>)>(
                "SELECT gate, open, actor, at, comment FROM manual_gates WHERE promotion_id = $1",
            )
            .bind(promotion_id)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(gate, open, actor, at, comment)| {
                    (gate, (open != 0, actor, rfc3339(at), comment))
                })
                .collect())
        })
    }

    /// Writes the decision record once; later calls keep the first.
    pub async fn write_decision(
        &self,
        promotion_id: &str,
        outcome: &str,
        record: &serde_json::Value,
    ) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO decision_records (promotion_id, outcome, record, decided_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (promotion_id) DO NOTHING",
            )
            .bind(promotion_id)
            .bind(outcome)
            .bind(record.to_string())
            .bind(now_ms())
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    pub async fn decision(&self, promotion_id: &str) -> Result<Option<DecisionRecord>> {
        on_pool!(self, |pool| {
            let row = sqlx::query_as::<_, (String, String, i64)>(
                "SELECT outcome, record, decided_at FROM decision_records WHERE promotion_id = $1",
            )
            .bind(promotion_id)
            .fetch_optional(pool)
            .await?;
            row.map(|(outcome, record, at)| {
                Ok(DecisionRecord {
                    promotion_id: promotion_id.to_owned(),
                    outcome,
                    record: unjson(&record)?,
                    decided_at: rfc3339(at),
                })
            })
            .transpose()
        })
    }

    // -- jobs and tasks -----------------------------------------------------

    /// Creates a job with its tasks, in `pending`. A deploy job of a
    /// promotion moves the promotion from `approved` to `deploying` in the
    /// same transaction; `None` if the promotion was no longer approved
    /// (another replica started it).
    pub async fn create_job(&self, job: &NewJob) -> Result<Option<String>> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            if let (JobKind::Deploy, Some(promotion)) = (job.kind, &job.promotion_id) {
                let n = sqlx::query(
                    "UPDATE promotions SET state = 'deploying', job_id = $2, updated_at = $3 \
                     WHERE id = $1 AND state = 'approved'",
                )
                .bind(promotion)
                .bind(&id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    return Ok(None);
                }
                sqlx::query(
                    "INSERT INTO promotion_events (promotion_id, at, actor, from_state, to_state, detail) \
                     VALUES ($1, $2, 'sextant', 'approved', 'deploying', $3)",
                )
                .bind(promotion)
                .bind(now)
                .bind(format!("job {id}"))
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO jobs (id, tenant, kind, promotion_id, parent_job_id, release_id, \
                     environment, strategy, state, max_attempts, created_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $11, $11)",
            )
            .bind(&id)
            .bind(&job.tenant)
            .bind(job.kind.as_str())
            .bind(&job.promotion_id)
            .bind(&job.parent_job_id)
            .bind(&job.release_id)
            .bind(&job.environment)
            .bind(json(&job.strategy))
            .bind(job.max_attempts)
            .bind(&job.created_by)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO job_events (job_id, at, actor, from_state, to_state) \
                 VALUES ($1, $2, $3, NULL, 'pending')",
            )
            .bind(&id)
            .bind(now)
            .bind(&job.created_by)
            .execute(&mut *tx)
            .await?;
            for (position, t) in job.tasks.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO tasks (id, job_id, position, batch, kind, target, component, \
                         image, digest, previous_digest, slot, state, max_attempts, timeout_ms, \
                         updated_at, release_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12, $13, $14, $15)",
                )
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(&id)
                .bind(position as i64)
                .bind(t.batch)
                .bind(t.kind.as_str())
                .bind(&t.target)
                .bind(&t.component)
                .bind(&t.image)
                .bind(&t.digest)
                .bind(&t.previous_digest)
                .bind(&t.slot)
                .bind(t.max_attempts)
                .bind(t.timeout_ms)
                .bind(now)
                .bind(&t.release_id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(Some(id))
        })
    }

    pub async fn job(&self, tenant: Option<&str>, id: &str) -> Result<Option<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs j JOIN releases r ON r.id = j.release_id \
             WHERE ($1 IS NULL OR j.tenant = $1) AND j.id = $2"
        );
        on_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant)
                .bind(id)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok(Some(job_row!(&r))),
                None => Ok(None),
            }
        })
    }

    /// Jobs, newest first.
    pub async fn jobs(&self, tenant: &str, active_only: bool, limit: i64) -> Result<Vec<Job>> {
        let filter = if active_only {
            " AND j.state NOT IN ('completed', 'failed', 'rolled_back', 'cancelled')"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs j JOIN releases r ON r.id = j.release_id \
             WHERE j.tenant = $1{filter} ORDER BY j.created_at DESC, j.id LIMIT $2"
        );
        on_pool!(self, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(job_row!(r));
            }
            Ok(out)
        })
    }

    /// Takes the lease of one unfinished job whose lease expired (or that
    /// `owner` already holds but is not driving), for `lease`.
    pub async fn claim_job(
        &self,
        owner: &str,
        lease: Duration,
        skip: &[String],
    ) -> Result<Option<String>> {
        let now = now_ms();
        let until = now + lease.as_millis() as i64;
        // The jobs this replica drives already, as bound parameters.
        let skip_list = if skip.is_empty() {
            String::new()
        } else {
            format!(
                " AND id NOT IN ({})",
                (0..skip.len())
                    .map(|i| format!("${}", i + 4))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        let active = "state IN ('pending', 'preparing', 'running', 'completing', 'rolling_back')";
        on_pool!(self, |pool| {
            let lock = if matches!(self.pool, Pool::Postgres(_)) {
                " FOR UPDATE SKIP LOCKED"
            } else {
                ""
            };
            // Each claim is an attempt at driving the job, counted in the
            // same statement: a replica that dies right after claiming has
            // still used one.
            let sql = format!(
                "UPDATE jobs SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
                 WHERE id = ( \
                     SELECT id FROM jobs WHERE {active} \
                       AND (lease_until < $3 OR lease_owner = $1){skip_list} \
                     ORDER BY created_at, id LIMIT 1{lock}) \
                 RETURNING id"
            );
            let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(owner)
                .bind(until)
                .bind(now);
            for id in skip {
                query = query.bind(id);
            }
            Ok(query.fetch_optional(pool).await?)
        })
    }

    /// Extends `owner`'s lease on a job; `false` if it lost it.
    pub async fn renew_job_lease(&self, id: &str, owner: &str, lease: Duration) -> Result<bool> {
        let until = now_ms() + lease.as_millis() as i64;
        on_pool!(self, |pool| {
            let n =
                sqlx::query("UPDATE jobs SET lease_until = $3 WHERE id = $1 AND lease_owner = $2")
                    .bind(id)
                    .bind(owner)
                    .bind(until)
                    .execute(pool)
                    .await?
                    .rows_affected();
            Ok(n == 1)
        })
    }

    /// Gives up a lease (the job may be claimed again at once).
    pub async fn release_job_lease(&self, id: &str, owner: &str) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE jobs SET lease_owner = NULL, lease_until = 0 \
                 WHERE id = $1 AND lease_owner = $2",
            )
            .bind(id)
            .bind(owner)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Moves a job (compare-and-set) and records the event.
    pub async fn move_job(
        &self,
        id: &str,
        from: JobState,
        to: JobState,
        actor: &str,
        detail: Option<&str>,
    ) -> Result<bool> {
        let now = now_ms();
        let finished = to.is_terminal().then_some(now);
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "UPDATE jobs SET state = $3, updated_at = $4, finished_at = COALESCE($5, finished_at), \
                     error = CASE WHEN $3 IN ('failed', 'rolling_back') THEN COALESCE($6, error) ELSE error END \
                 WHERE id = $1 AND state = $2",
            )
            .bind(id)
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(now)
            .bind(finished)
            .bind(detail)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO job_events (job_id, at, actor, from_state, to_state, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(now)
            .bind(actor)
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(detail)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    pub async fn job_events(&self, id: &str) -> Result<Vec<StateEvent>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query_as::<_, (i64, String, Option<String>, String, Option<String>)>(
                "SELECT at, actor, from_state, to_state, detail FROM job_events \
                 WHERE job_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(at, actor, from, to, detail)| event_row(at, actor, from, to, detail))
                .collect())
        })
    }

    /// The rollback job created for `job_id`, if any (there is at most one).
    pub async fn rollback_job_of(&self, job_id: &str) -> Result<Option<String>> {
        on_pool!(self, |pool| {
            Ok(sqlx::query_scalar::<_, String>(
                "SELECT id FROM jobs WHERE parent_job_id = $1 AND kind = 'rollback'",
            )
            .bind(job_id)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// The tasks of a job, in position order.
    pub async fn tasks(&self, job_id: &str) -> Result<Vec<Task>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE job_id = $1 ORDER BY position");
        on_pool!(self, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(job_id)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(task_row!(r));
            }
            Ok(out)
        })
    }

    pub async fn task(&self, id: &str) -> Result<Option<Task>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        on_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok(Some(task_row!(&r))),
                None => Ok(None),
            }
        })
    }

    /// Moves a task (compare-and-set on its state). `attempt` set bumps the
    /// attempt count; the lease is taken by `owner` for `lease`. Returns
    /// the task as the move left it, or `None` if it was not in `from`
    /// (the statement returns the row, so the caller need not read it
    /// again).
    #[allow(clippy::too_many_arguments)]
    pub async fn move_task(
        &self,
        id: &str,
        from: TaskState,
        to: TaskState,
        owner: &str,
        lease: Duration,
        new_attempt: bool,
        result: Option<TaskResultRow<'_>>,
    ) -> Result<Option<Task>> {
        let now = now_ms();
        let until = now + lease.as_millis() as i64;
        let finished = to.is_terminal().then_some(now);
        let started = matches!(to, TaskState::Dispatched).then_some(now);
        let (exit_code, error, error_type) = match &result {
            Some(r) => (r.exit_code, r.error, r.error_type.map(|t| enum_text(&t))),
            None => (None, None, None),
        };
        let sql = format!(
            "UPDATE tasks SET state = $3, updated_at = $4, lease_owner = $5, lease_until = $6, \
                 attempts = attempts + $7, started_at = COALESCE($8, started_at), \
                 finished_at = $9, \
                 exit_code = CASE WHEN $10 THEN $11 ELSE exit_code END, \
                 error = CASE WHEN $10 THEN $12 ELSE error END, \
                 error_type = CASE WHEN $10 THEN $13 ELSE error_type END \
             WHERE id = $1 AND state = $2 RETURNING {TASK_COLUMNS}"
        );
        on_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .bind(from.as_str())
                .bind(to.as_str())
                .bind(now)
                .bind(owner)
                .bind(until)
                .bind(i64::from(new_attempt))
                .bind(started)
                .bind(finished)
                .bind(result.is_some())
                .bind(exit_code.map(i64::from))
                .bind(error)
                .bind(error_type)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok(Some(task_row!(&r))),
                None => Ok(None),
            }
        })
    }

    /// Appends log lines of a task attempt.
    pub async fn append_logs(
        &self,
        task_id: &str,
        attempt: i64,
        lines: &[(LogStream, String)],
    ) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for (stream, line) in lines {
                sqlx::query(
                    "INSERT INTO task_logs (task_id, attempt, at, stream, line) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(task_id)
                .bind(attempt)
                .bind(now)
                .bind(enum_text(stream))
                .bind(line)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Log lines of a task after line `after`.
    pub async fn task_logs(
        &self,
        task_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<TaskLogLine>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query_as::<_, (i64, i64, i64, String, String)>(
                "SELECT id, attempt, at, stream, line FROM task_logs \
                 WHERE task_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(task_id)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.into_iter()
                .map(|(id, attempt, at, stream, line)| {
                    Ok(TaskLogLine {
                        id,
                        attempt,
                        at: rfc3339(at),
                        stream: unjson(&format!("\"{stream}\""))?,
                        line,
                    })
                })
                .collect()
        })
    }

    // -- artifacts and deployed state ------------------------------------------

    /// Stores artifacts of a job once: existing ones are kept as they are.
    /// The artifacts of many targets of a job go in one transaction
    /// (a job to 1,000 targets is one commit, not 1,000).
    pub async fn put_job_artifacts(
        &self,
        job_id: &str,
        targets: &[(&str, &[crate::executor::Artifact])],
    ) -> Result<()> {
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for (target, artifacts) in targets {
                for a in *artifacts {
                    sqlx::query(
                        "INSERT INTO artifacts (job_id, target, name, sha256, content, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id, target, name) DO NOTHING",
                    )
                    .bind(job_id)
                    .bind(*target)
                    .bind(&a.name)
                    .bind(&a.sha256)
                    .bind(&a.content)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The artifacts of a job for one target.
    pub async fn artifacts(
        &self,
        job_id: &str,
        target: &str,
    ) -> Result<Vec<crate::executor::Artifact>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query_as::<_, (String, Vec<u8>, String)>(
                "SELECT name, content, sha256 FROM artifacts \
                 WHERE job_id = $1 AND target = $2 ORDER BY name",
            )
            .bind(job_id)
            .bind(target)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(name, content, sha256)| crate::executor::Artifact {
                    name,
                    content,
                    sha256,
                })
                .collect())
        })
    }

    /// Artifact listing of a job.
    pub async fn artifact_infos(&self, job_id: &str) -> Result<Vec<ArtifactInfo>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query_as::<_, (String, String, String, i64, i64)>(
                "SELECT target, name, sha256, CAST(length(content) AS BIGINT), created_at \
                 FROM artifacts WHERE job_id = $1 ORDER BY target, name",
            )
            .bind(job_id)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(target, name, sha256, size, at)| ArtifactInfo {
                    target,
                    name,
                    sha256,
                    size,
                    created_at: rfc3339(at),
                })
                .collect())
        })
    }

    /// Records what a job deployed on each of its targets, in one
    /// transaction.
    pub async fn set_deployed_all(
        &self,
        tenant: &str,
        job_id: &str,
        deployed: &[DeployedOn<'_>],
    ) -> Result<()> {
        let now = now_ms();
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for d in deployed {
                sqlx::query(
                    "INSERT INTO deployed (tenant, target, component, release_id, image, digest, slot, \
                         job_id, deployed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (tenant, target, component) DO UPDATE SET \
                         previous_release_id = CASE WHEN deployed.digest = $6 \
                             THEN deployed.previous_release_id ELSE deployed.release_id END, \
                         previous_image = CASE WHEN deployed.digest = $6 \
                             THEN deployed.previous_image ELSE deployed.image END, \
                         previous_digest = CASE WHEN deployed.digest = $6 \
                             THEN deployed.previous_digest ELSE deployed.digest END, \
                         previous_slot = CASE WHEN deployed.digest = $6 \
                             THEN deployed.previous_slot ELSE deployed.slot END, \
                         release_id = $4, image = $5, digest = $6, slot = $7, job_id = $8, \
                         deployed_at = $9",
                )
                .bind(tenant)
                .bind(d.target)
                .bind(d.component)
                .bind(d.release_id)
                .bind(d.image)
                .bind(d.digest)
                .bind(d.slot)
                .bind(job_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// What runs on each (target, component) of the tenant, by target.
    pub async fn deployed(&self, tenant: &str, target: Option<&str>) -> Result<Vec<Deployed>> {
        on_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT target, component, release_id, image, digest, slot, job_id, deployed_at, \
                     previous_release_id, previous_image, previous_digest, previous_slot \
                 FROM deployed WHERE tenant = $1 AND ($2 IS NULL OR target = $2) \
                 ORDER BY target, component",
            )
            .bind(tenant)
            .bind(target)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(Deployed {
                    target: r.try_get("target")?,
                    component: r.try_get("component")?,
                    release_id: r.try_get("release_id")?,
                    image: r.try_get("image")?,
                    digest: r.try_get("digest")?,
                    slot: r.try_get("slot")?,
                    job_id: r.try_get("job_id")?,
                    deployed_at: rfc3339(r.try_get("deployed_at")?),
                    previous: match r.try_get::<Option<String>, _>("previous_digest")? {
                        Some(digest) => Some(PreviousDeployment {
                            release_id: r
                                .try_get::<Option<String>, _>("previous_release_id")?
                                .unwrap_or_default(),
                            image: r
                                .try_get::<Option<String>, _>("previous_image")?
                                .unwrap_or_default(),
                            digest,
                            slot: r.try_get("previous_slot")?,
                        }),
                        None => None,
                    },
                });
            }
            Ok(out)
        })
    }
}

/// The result columns a terminal task move writes.
#[derive(Debug, Clone, Copy)]
pub struct TaskResultRow<'a> {
    pub exit_code: Option<i32>,
    pub error: Option<&'a str>,
    pub error_type: Option<ErrorType>,
}

macro_rules! migrations {
    ($dir:literal: $($version:literal => $name:literal),* $(,)?) => {
        sqlx::migrate::Migrator::with_migrations(vec![$(sqlx::migrate::Migration::new(
            $version,
            std::borrow::Cow::Borrowed($name),
            sqlx::migrate::MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str(include_str!(concat!("../migrations/", $dir, "/", $name, ".sql"))),
            false,
        )),*])
    };
}

fn sqlite_migrations() -> sqlx::migrate::Migrator {
    migrations!("sqlite": 1 => "0001_orchestrator", 2 => "0002_one_rollback_job", 3 => "0003_agents",
        4 => "0004_promotion_trace")
}

fn postgres_migrations() -> sqlx::migrate::Migrator {
    migrations!("postgres": 1 => "0001_orchestrator", 2 => "0002_one_rollback_job", 3 => "0003_agents",
        4 => "0004_promotion_trace")
}
