//! Rows written by earlier versions, read through today's types on both
//! backends.

use sextant_e2e::{Backend, TestDb};
use sextant_protocol::deploy::ErrorKind;

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
