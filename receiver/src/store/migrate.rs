//! Schema migrations, embedded in the binary and applied at start.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

macro_rules! migrations {
    ($dir:literal: $($version:literal => $name:literal),* $(,)?) => {
        vec![$(Migration::new(
            $version,
            Cow::Borrowed($name),
            MigrationType::Simple,
            include_str!(concat!("../../migrations/", $dir, "/", $name, ".sql")).into_sql_str(),
            false,
        )),*]
    };
}

/// Migrations of the SQLite schema.
pub(crate) fn sqlite() -> Migrator {
    Migrator::with_migrations(migrations!("sqlite":
        1 => "0001_hub_model",
        2 => "0002_query_indexes",
        3 => "0003_deployed_counts",
        4 => "0004_change_mark",
        5 => "0005_observed_job",
        6 => "0006_reporter_counts",
        7 => "0007_drift_set",
        8 => "0008_observed_workload",
        9 => "0009_desired_origin",
        10 => "0010_deployments",
        11 => "0011_dora_changes",
        12 => "0012_deployments_deferred",
    ))
}

/// Migrations of the PostgreSQL schema.
pub(crate) fn postgres() -> Migrator {
    Migrator::with_migrations(migrations!("postgres":
        1 => "0001_hub_model",
        2 => "0002_query_indexes",
        3 => "0003_deployed_counts",
        4 => "0004_deployed_counts_row_update",
        5 => "0005_change_mark",
        6 => "0006_observed_job",
        7 => "0007_reporter_counts",
        8 => "0008_drift_set",
        9 => "0009_observed_workload",
        10 => "0010_desired_origin",
        11 => "0011_deployments",
        12 => "0012_dora_changes",
        13 => "0013_deployments_deferred",
    ))
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqlitePoolOptions;

    use super::*;

    /// Migration 0003 counts the current rows a hub already holds, then
    /// keeps counting.
    #[tokio::test]
    async fn deployed_counts_start_from_existing_rows() {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("in-memory SQLite");
        let all = sqlite();
        let before = Migrator::with_migrations(all.iter().take(2).cloned().collect());
        before.run(&pool).await.expect("migrations 1 and 2");
        sqlx::raw_sql(
            "INSERT INTO tenants (id, name, created_at) VALUES (1, 'default', 0);
             INSERT INTO workspaces (id, tenant_id, name) VALUES (1, 1, 'w');
             INSERT INTO applications (id, tenant_id, workspace_id, name) VALUES (1, 1, 1, 'a');
             INSERT INTO workloads (id, tenant_id, application_id, name) VALUES (1, 1, 1, 'k');
             INSERT INTO environments (id, tenant_id, name) VALUES (1, 1, 'stage');
             INSERT INTO deployment_targets (id, tenant_id, workload_id, environment_id, name)
                 VALUES (1, 1, 1, 1, 'eu');
             INSERT INTO reconcilers (id, tenant_id, name, type) VALUES (1, 1, '', '');
             INSERT INTO hosts (id, tenant_id, name) VALUES (1, 1, 'h1'), (2, 1, 'h2'), (3, 1, 'h3');
             INSERT INTO observed_deployments (tenant_id, host_id, reconciler_id, target_id,
                 revision, status, observed_at, changed_at)
             VALUES (1, 1, 1, 1, 'r1', 'succeeded', 1, 1),
                    (1, 2, 1, 1, 'r1', 'succeeded', 1, 1),
                    (1, 3, 1, 1, 'r2', 'failed', 1, 1);",
        )
        .execute(&pool)
        .await
        .expect("rows before 0003");
        all.run(&pool).await.expect("migration 3");
        let counts = |pool| async move {
            sqlx::query_as::<_, (String, String, i64)>(
                "SELECT revision, status, hosts FROM deployed_counts ORDER BY revision, status",
            )
            .fetch_all(pool)
            .await
            .expect("counters")
        };
        assert_eq!(
            counts(&pool).await,
            [
                ("r1".into(), "succeeded".into(), 2),
                ("r2".into(), "failed".into(), 1)
            ]
        );
        sqlx::raw_sql(
            "UPDATE observed_deployments SET revision = 'r2', status = 'in_progress' WHERE host_id = 1;
             UPDATE observed_deployments SET observed_at = 2 WHERE host_id = 2;
             DELETE FROM observed_deployments WHERE host_id = 3;",
        )
        .execute(&pool)
        .await
        .expect("changes");
        assert_eq!(
            counts(&pool).await,
            [
                ("r1".into(), "succeeded".into(), 1),
                ("r2".into(), "failed".into(), 0),
                ("r2".into(), "in_progress".into(), 1)
            ]
        );
    }

    /// Migration 0006 counts the hosts per (target, reconciler) a hub
    /// already holds, then keeps counting new and deleted rows; status
    /// changes and heartbeats leave the counters alone.
    #[tokio::test]
    async fn reporter_counts_start_from_existing_rows() {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("in-memory SQLite");
        let all = sqlite();
        let before = Migrator::with_migrations(all.iter().take(5).cloned().collect());
        before.run(&pool).await.expect("migrations 1 to 5");
        sqlx::raw_sql(
            "INSERT INTO tenants (id, name, created_at) VALUES (1, 'default', 0);
             INSERT INTO workspaces (id, tenant_id, name) VALUES (1, 1, 'w');
             INSERT INTO applications (id, tenant_id, workspace_id, name) VALUES (1, 1, 1, 'a');
             INSERT INTO workloads (id, tenant_id, application_id, name) VALUES (1, 1, 1, 'k');
             INSERT INTO environments (id, tenant_id, name) VALUES (1, 1, 'stage');
             INSERT INTO deployment_targets (id, tenant_id, workload_id, environment_id, name)
                 VALUES (1, 1, 1, 1, 'eu');
             INSERT INTO reconcilers (id, tenant_id, name, type)
                 VALUES (1, 1, '', ''), (2, 1, 'flux-system', 'flux');
             INSERT INTO hosts (id, tenant_id, name) VALUES (1, 1, 'h1'), (2, 1, 'h2'), (3, 1, 'h3');
             INSERT INTO observed_deployments (tenant_id, host_id, reconciler_id, target_id,
                 revision, status, observed_at, changed_at)
             VALUES (1, 1, 1, 1, 'r1', 'succeeded', 1, 1),
                    (1, 2, 1, 1, 'r1', 'succeeded', 1, 1),
                    (1, 3, 2, 1, 'r2', 'failed', 1, 1);",
        )
        .execute(&pool)
        .await
        .expect("rows before 0006");
        all.run(&pool).await.expect("migration 6");
        let counts = |pool| async move {
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT reconciler_id, hosts FROM reporter_counts ORDER BY reconciler_id",
            )
            .fetch_all(pool)
            .await
            .expect("counters")
        };
        assert_eq!(counts(&pool).await, [(1, 2), (2, 1)]);
        sqlx::raw_sql(
            "UPDATE observed_deployments SET revision = 'r2', status = 'in_progress' WHERE host_id = 1;
             UPDATE observed_deployments SET observed_at = 2 WHERE host_id = 2;
             DELETE FROM observed_deployments WHERE host_id = 3;
             INSERT INTO observed_deployments (tenant_id, host_id, reconciler_id, target_id,
                 revision, status, observed_at, changed_at)
             VALUES (1, 3, 1, 1, 'r2', 'succeeded', 3, 3);",
        )
        .execute(&pool)
        .await
        .expect("changes");
        assert_eq!(counts(&pool).await, [(1, 3), (2, 0)]);
    }

    /// Migration 0008 (PostgreSQL) / 0007 (SQLite) puts each target's
    /// latest desired state on the target and collects the drifting rows a
    /// hub already holds, with their counts; then triggers keep both. The
    /// next one gives every row its target's workload.
    async fn drift_set_starts_from_existing_rows(backend: sextant_e2e::Backend) {
        let db = sextant_e2e::TestDb::new(backend).await;
        let (all, before) = match backend {
            sextant_e2e::Backend::Sqlite => (sqlite(), 6),
            sextant_e2e::Backend::Postgres => (postgres(), 7),
        };
        let rows = "INSERT INTO tenants (name, created_at) VALUES ('default', 0);
             INSERT INTO workspaces (tenant_id, name) VALUES (1, 'w');
             INSERT INTO applications (tenant_id, workspace_id, name) VALUES (1, 1, 'a');
             INSERT INTO workloads (tenant_id, application_id, name) VALUES (1, 1, 'k');
             INSERT INTO environments (tenant_id, name) VALUES (1, 'stage');
             INSERT INTO deployment_targets (tenant_id, workload_id, environment_id, name)
                 VALUES (1, 1, 1, 'eu'), (1, 1, 1, 'us');
             INSERT INTO workload_versions (tenant_id, workload_id, version, revision, first_seen_at)
                 VALUES (1, 1, 'v1', 'r1', 0), (1, 1, 'v2', 'r2', 0);
             INSERT INTO desired_assignments (tenant_id, target_id, workload_version_id,
                 assigned_at, received_at)
                 VALUES (1, 1, 2, 10, 10), (1, 1, 1, 20, 20);
             INSERT INTO reconcilers (tenant_id, name, type) VALUES (1, '', '');
             INSERT INTO hosts (tenant_id, name) VALUES (1, 'h1'), (1, 'h2'), (1, 'h3'), (1, 'h4');
             INSERT INTO observed_deployments (tenant_id, host_id, reconciler_id, target_id,
                 revision, status, observed_at, changed_at)
             VALUES (1, 1, 1, 1, 'r1', 'succeeded', 1, 1),
                    (1, 2, 1, 1, 'r2', 'succeeded', 1, 1),
                    (1, 3, 1, 1, 'r1', 'failed', 1, 1),
                    (1, 4, 1, 2, 'r1', 'succeeded', 1, 1);";
        let changes = "INSERT INTO desired_assignments (tenant_id, target_id, workload_version_id,
                 assigned_at, received_at) VALUES (1, 2, 1, 30, 30), (1, 1, 2, 5, 5);
             UPDATE observed_deployments SET status = 'succeeded' WHERE host_id = 3;";
        let drifting = "SELECT h.name FROM drift_rows d JOIN hosts h ON h.id = d.host_id
             ORDER BY h.name";
        let desired = "SELECT desired_revision FROM deployment_targets ORDER BY id";
        let counted =
            "SELECT CAST(SUM(rows) AS BIGINT), CAST(SUM(failed) AS BIGINT) FROM drift_counts";
        macro_rules! check {
            ($pool:expr) => {{
                let pool = $pool;
                Migrator::with_migrations(all.iter().take(before).cloned().collect())
                    .run(&pool)
                    .await
                    .expect("migrations before");
                sqlx::raw_sql(rows)
                    .execute(&pool)
                    .await
                    .expect("rows before");
                all.run(&pool).await.expect("the drift set's migration");
                // The later migration copies each row's workload from its
                // target (0009 on PostgreSQL, 0008 on SQLite).
                let carried: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM observed_deployments o \
                     JOIN deployment_targets t ON t.id = o.target_id \
                     WHERE o.workload_id = t.workload_id",
                )
                .fetch_one(&pool)
                .await
                .expect("workloads");
                assert_eq!(carried, 4, "{backend:?}");
                let names: Vec<String> = sqlx::query_scalar(drifting)
                    .fetch_all(&pool)
                    .await
                    .expect("drift rows");
                // h2 on another revision, h3 failed, h4 on a target with
                // no desired state.
                assert_eq!(names, ["h2", "h3", "h4"], "{backend:?}");
                let revisions: Vec<Option<String>> = sqlx::query_scalar(desired)
                    .fetch_all(&pool)
                    .await
                    .expect("desired");
                assert_eq!(revisions, [Some("r1".to_owned()), None], "{backend:?}");
                let counts: (i64, i64) = sqlx::query_as(counted)
                    .fetch_one(&pool)
                    .await
                    .expect("counts");
                assert_eq!(counts, (3, 1), "{backend:?}");
                // An older assignment changes nothing; us gets r1; h3 recovers.
                sqlx::raw_sql(changes)
                    .execute(&pool)
                    .await
                    .expect("changes");
                let names: Vec<String> = sqlx::query_scalar(drifting)
                    .fetch_all(&pool)
                    .await
                    .expect("drift rows");
                assert_eq!(names, ["h2"], "{backend:?}");
                let revisions: Vec<Option<String>> = sqlx::query_scalar(desired)
                    .fetch_all(&pool)
                    .await
                    .expect("desired");
                assert_eq!(
                    revisions,
                    [Some("r1".to_owned()), Some("r1".to_owned())],
                    "{backend:?}"
                );
                let counts: (i64, i64) = sqlx::query_as(counted)
                    .fetch_one(&pool)
                    .await
                    .expect("counts");
                assert_eq!(counts, (1, 0), "{backend:?}");
            }};
        }
        match backend {
            sextant_e2e::Backend::Sqlite => {
                let options =
                    <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&db.url)
                        .expect("SQLite URL")
                        .create_if_missing(true);
                check!(
                    sqlx::SqlitePool::connect_with(options)
                        .await
                        .expect("SQLite")
                )
            }
            sextant_e2e::Backend::Postgres => {
                check!(sqlx::PgPool::connect(&db.url).await.expect("PostgreSQL"))
            }
        }
    }

    #[tokio::test]
    async fn drift_set_starts_from_existing_rows_on_sqlite() {
        drift_set_starts_from_existing_rows(sextant_e2e::Backend::Sqlite).await;
    }

    #[tokio::test]
    async fn drift_set_starts_from_existing_rows_on_postgres() {
        drift_set_starts_from_existing_rows(sextant_e2e::Backend::Postgres).await;
    }
}
