//! The rollout's attention list: the hosts of the filtered targets that
//! need attention, at most a page of them.

use sextant_model::HostView;

use super::state::{HostColumns, host_columns};

use crate::store::pool::{PerBackend, Statement, StorePool};
use crate::store::sql::{newest_version_join, target_filter};
use crate::store::{StateQuery, StoreError};

/// See [`crate::store::HubStore::attention_hosts`].
pub(crate) async fn attention_hosts(
    reader: StorePool<'_>,
    tenant: &str,
    query: &StateQuery,
    limit: u32,
) -> Result<Vec<(String, Option<String>, HostView)>, StoreError> {
    let rows: Vec<AttentionRow> = reader
        .fetch_all(
            Statement::new(reader.pick(&ATTENTION_HOSTS_SQL))
                .filter(tenant, query)
                .int(i64::from(limit)),
        )
        .await?;
    Ok(host_views(rows))
}

/// The current rows of the filtered targets that need attention in a
/// rollout: not `succeeded` on their target's latest desired revision.
/// Failed (on the desired revision) first, then in progress, then on
/// another revision; by host and reconciler; at most `$7` rows. Each row
/// carries its target's name and desired revision (kept on the target).
///
/// It picks the page before it reads the page's rows, from what is kept
/// small: the rows failed or in progress on the desired revision come off
/// the (target, revision, status) index of current rows, one equality
/// each (given `status IN (…)`, PostgreSQL read every row on the desired
/// revision and filtered them); the rows on
/// another revision (or with no desired state) from the drift set (its
/// `off_desired` rows by target, which carry the host and reconciler names
/// the order needs); a row failed on the desired revision is in both and
/// takes the first class (grouped by row, not joined, so that the cost
/// stays linear when both are large). A healthy
/// workload reads nothing per host; one whose every host needs attention
/// reads its narrow drift rows and sorts them, then joins messages and
/// versions for the page alone (docs/performance.md, "Bounded reads").
/// Looking each failed drift row up in the current table instead cost a
/// random read per row. CTEs rather than `LATERAL` so that one statement
/// serves both backends; `MATERIALIZED` (PostgreSQL 12+, SQLite 3.35+)
/// keeps each step where it is written.
macro_rules! attention_pg {
    () => {
        concat!(
            "WITH td AS MATERIALIZED (SELECT t.id AS target_id, t.desired_revision AS desired \
       FROM deployment_targets t",
            target_filter!(),
            "), od AS MATERIALIZED ( \
       SELECT 0 AS cls, o.host_id, o.reconciler_id, o.target_id \
         FROM td JOIN observed_deployments o ON o.target_id = td.target_id \
          AND o.revision = td.desired AND o.status = 'failed' \
       UNION ALL \
       SELECT 1, o.host_id, o.reconciler_id, o.target_id \
         FROM td JOIN observed_deployments o ON o.target_id = td.target_id \
          AND o.revision = td.desired AND o.status = 'in_progress'), \
     cand AS MATERIALIZED ( \
       SELECT od.cls, h.name AS host_name, r.name AS reconciler_name, \
              od.host_id, od.reconciler_id, od.target_id \
         FROM od JOIN hosts h ON h.id = od.host_id \
         JOIN reconcilers r ON r.id = od.reconciler_id \
       UNION ALL \
       SELECT 2, d.host_name, d.reconciler_name, d.host_id, d.reconciler_id, d.target_id \
         FROM td JOIN drift_rows d ON d.target_id = td.target_id \
        WHERE d.off_desired), \
     pg AS MATERIALIZED (SELECT MIN(cls) AS k, host_name, reconciler_name, \
              host_id, reconciler_id, target_id \
         FROM cand GROUP BY host_id, reconciler_id, target_id, host_name, reconciler_name \
        ORDER BY k, host_name, reconciler_name LIMIT $7) \
     SELECT t.name AS target, t.desired_revision AS desired, ",
            host_columns!("pg.host_name", "pg.reconciler_name"),
            " FROM pg JOIN observed_deployments o ON o.host_id = pg.host_id \
         AND o.reconciler_id = pg.reconciler_id AND o.target_id = pg.target_id \
       JOIN deployment_targets t ON t.id = pg.target_id \
       JOIN reconcilers r ON r.id = pg.reconciler_id",
            newest_version_join!("o.revision"),
            " ORDER BY pg.k, pg.host_name, pg.reconciler_name"
        )
    };
}

/// SQLite's statement: the targets' current rows in index order, each with
/// its target's desired state kept on the target, sorted into the classes.
/// SQLite (never analyzed by the hub) ran the statement above four times
/// slower than this one (76 against 18 ms p50 at 200,000 rows,
/// docs/performance.md); its cost follows the workload's hosts in the
/// environment.
macro_rules! attention_lite {
    () => {
        concat!(
    "WITH td AS MATERIALIZED (SELECT t.id AS target_id, t.desired_revision AS desired \
       FROM deployment_targets t",
    target_filter!(),
    ") SELECT t.name AS target, td.desired AS desired, ",
    host_columns!("h.name", "r.name"),
    " FROM td JOIN deployment_targets t ON t.id = td.target_id \
       JOIN observed_deployments o ON o.target_id = td.target_id \
       JOIN hosts h ON h.id = o.host_id \
       JOIN reconcilers r ON r.id = o.reconciler_id",
    newest_version_join!("o.revision"),
    " WHERE NOT (o.status = 'succeeded' AND td.desired IS NOT NULL AND o.revision = td.desired) \
      ORDER BY CASE WHEN td.desired IS NULL OR o.revision <> td.desired THEN 2 \
                    WHEN o.status = 'failed' THEN 0 ELSE 1 END, h.name, r.name \
      LIMIT $7"
)
    };
}

/// [`attention_lite`] for SQLite, [`attention_pg`] for PostgreSQL.
const ATTENTION_HOSTS_SQL: PerBackend = PerBackend {
    sqlite: attention_lite!(),
    postgres: attention_pg!(),
};

/// A row of [`ATTENTION_HOSTS_SQL`], by column name: the target, its
/// desired revision, the host's row.
#[derive(Debug, sqlx::FromRow)]
struct AttentionRow {
    target: String,
    desired: Option<String>,
    #[sqlx(flatten)]
    host: HostColumns,
}

/// Builds (target, desired revision, host) from [`ATTENTION_HOSTS_SQL`]
/// rows; a row whose status does not parse is skipped.
fn host_views(rows: Vec<AttentionRow>) -> Vec<(String, Option<String>, HostView)> {
    rows.into_iter()
        .filter_map(|row| Some((row.target, row.desired, row.host.view()?)))
        .collect()
}
