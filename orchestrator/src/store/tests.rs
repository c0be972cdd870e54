//! Rows written by earlier versions, read through today's types on both
//! backends.

use sextant_e2e::{Backend, TestDb};
use sextant_protocol::deploy::ErrorKind;
use sqlx::sqlite::SqliteConnectOptions;
use std::str::FromStr as _;

use super::*;

/// A release and a failed job, as raw rows of the first schema.
const RELEASE_AND_JOB: &str = "
    INSERT INTO releases (id, tenant, name, status, created_by, created_at)
        VALUES ('r1', 't', 'v1', 'finalized', 'alice', 0);
    INSERT INTO jobs (id, tenant, kind, release_id, environment, strategy, state,
        max_attempts, created_by, created_at, updated_at)
        VALUES ('j1', 't', 'deploy', 'r1', 'dev', '{\"type\":\"all_at_once\"}', 'failed',
        3, 'alice', 0, 0);";

/// One failed task per error type the orchestrator wrote before it took
/// the deploy contract's `ErrorKind` (its own `ErrorType`), one with a
/// name no version wrote, and one with none.
const OLD_TASK_RESULTS: [Option<&str>; 8] = [
    Some("connection"),
    Some("host_key"),
    Some("command"),
    Some("timeout"),
    Some("health"),
    Some("invalid"),
    Some("quota"),
    None,
];

/// Task rows keep their error type as text: every name the old type
/// wrote reads back as the same kind, and a name this build does not know
/// reads as `unknown` rather than failing the read.
async fn task_results_of_the_old_shape_read_back(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = Store::open(&db.url).await.expect("store");
    on_pool!(store, |pool| {
        sqlx::raw_sql(RELEASE_AND_JOB)
            .execute(pool)
            .await
            .expect("release and job");
        for (position, error_type) in OLD_TASK_RESULTS.iter().enumerate() {
            sqlx::query(
                "INSERT INTO tasks (id, job_id, position, batch, kind, release_id, target, \
                     component, image, digest, state, max_attempts, timeout_ms, error, \
                     error_type, updated_at) \
                 VALUES ($1, 'j1', $2, 0, 'deploy', 'r1', 'a', 'web', 'web@sha256:1', \
                     'sha256:1', 'failed', 1, 1000, 'it broke', $3, 0)",
            )
            .bind(format!("j1-{position}"))
            .bind(position as i64)
            .bind(*error_type)
            .execute(pool)
            .await
            .expect("task");
        }
    });
    let kinds: Vec<Option<ErrorKind>> = store
        .tasks("j1")
        .await
        .expect("tasks read")
        .into_iter()
        .map(|t| t.error_type)
        .collect();
    use ErrorKind::*;
    assert_eq!(
        kinds,
        [
            Some(Connection),
            Some(HostKey),
            Some(Command),
            Some(Timeout),
            Some(Health),
            Some(Invalid),
            Some(Unknown),
            None
        ],
        "{backend:?}"
    );
}

#[tokio::test]
async fn task_results_of_the_old_shape_read_back_on_sqlite() {
    task_results_of_the_old_shape_read_back(Backend::Sqlite).await;
}

#[tokio::test]
async fn task_results_of_the_old_shape_read_back_on_postgres() {
    task_results_of_the_old_shape_read_back(Backend::Postgres).await;
}

/// Jobs as the engine wrote them before migration 0005 (no `failure`
/// column): its message for each way a job ended, and the kind 0005 gives
/// each.
const JOBS_BEFORE_0005: [(&str, &str, Option<&str>, Option<FailureKind>); 8] = [
    (
        "canary",
        "rolled_back",
        Some("canary stage 2 breached: errors = 5 is above 1"),
        Some(FailureKind::CanaryAnalysis),
    ),
    (
        "nothing",
        "failed",
        Some("nothing to roll back to"),
        Some(FailureKind::RollbackFailed),
    ),
    (
        "child",
        "failed",
        Some("rollback job j2 ended failed"),
        Some(FailureKind::RollbackFailed),
    ),
    (
        "gave-up",
        "failed",
        Some("gave up after 5 attempts to drive the job"),
        Some(FailureKind::GaveUp),
    ),
    (
        "tasks",
        "rolled_back",
        Some("2 of 3 tasks failed (tolerance 0)"),
        Some(FailureKind::TasksFailed),
    ),
    ("manual", "rolled_back", Some("rollback requested"), None),
    ("done", "completed", None, None),
    // A message that only looks like a canary breach further in.
    (
        "worded",
        "failed",
        Some("task t1: canary stage 1 breached: no"),
        Some(FailureKind::TasksFailed),
    ),
];

/// Migration 0005 adds `jobs.failure` and gives the jobs that ended
/// before it the kind their message shows: rows written with the schema
/// before it read back with the right `FailureKind` once it ran.
async fn job_failures_are_backfilled(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (all, before) = match backend {
        Backend::Sqlite => (sqlite_migrations(), 4),
        Backend::Postgres => (postgres_migrations(), 4),
    };
    let earlier =
        sqlx::migrate::Migrator::with_migrations(all.iter().take(before).cloned().collect());
    macro_rules! before_0005 {
        ($pool:expr) => {{
            let pool = $pool;
            earlier.run(&pool).await.expect("migrations before 0005");
            sqlx::raw_sql(RELEASE_AND_JOB)
                .execute(&pool)
                .await
                .expect("release");
            for (id, state, error, _) in JOBS_BEFORE_0005 {
                sqlx::query(
                    "INSERT INTO jobs (id, tenant, kind, release_id, environment, strategy, \
                         state, max_attempts, error, created_by, created_at, updated_at) \
                     VALUES ($1, 't', 'deploy', 'r1', 'dev', '{\"type\":\"all_at_once\"}', $2, \
                         3, $3, 'alice', 0, 0)",
                )
                .bind(id)
                .bind(state)
                .bind(error)
                .execute(&pool)
                .await
                .expect("job");
            }
            pool.close().await;
        }};
    }
    match backend {
        Backend::Sqlite => {
            let options = SqliteConnectOptions::from_str(&db.url)
                .expect("SQLite URL")
                .create_if_missing(true);
            before_0005!(SqlitePool::connect_with(options).await.expect("SQLite"))
        }
        Backend::Postgres => before_0005!(PgPool::connect(&db.url).await.expect("PostgreSQL")),
    }
    // Opening the store runs 0005.
    let store = Store::open(&db.url).await.expect("store");
    for (id, _, error, kind) in JOBS_BEFORE_0005 {
        let job = store.job(None, id).await.expect("job read").expect("job");
        assert_eq!(job.error.as_deref(), error, "{backend:?}");
        assert_eq!(job.failure, kind, "{backend:?}: {id}");
    }
}

#[tokio::test]
async fn job_failures_are_backfilled_on_sqlite() {
    job_failures_are_backfilled(Backend::Sqlite).await;
}

#[tokio::test]
async fn job_failures_are_backfilled_on_postgres() {
    job_failures_are_backfilled(Backend::Postgres).await;
}
