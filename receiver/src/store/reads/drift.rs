//! Reads of the drift set (`store/drift.rs`): the drift list's page of
//! drifting rows, and drift per target.

use crate::store::pool::{PerBackend, Statement, StorePool};
use crate::store::{DriftSummary, StateQuery, StoreError};
use sextant_model::UnixNanos;

/// See [`crate::store::HubStore::drift_summary`].
pub(crate) async fn drift_summary(
    reader: StorePool<'_>,
    tenant: &str,
    filter: &StateQuery,
    stale_before: UnixNanos,
) -> Result<Vec<DriftSummary>, StoreError> {
    let range = filter.workloads.as_ref();
    let rows: Vec<DriftSummaryRow> = if filter.source.is_empty() {
        let sql = match range {
            None => DRIFT_SUMMARY_SQL,
            Some(_) => reader.pick(&DRIFT_SUMMARY_RANGE_SQL),
        };
        let statement = Statement::new(sql)
            .filter(tenant, filter)
            .int(stale_before.0)
            .range(range);
        reader.fetch_all(statement).await?
    } else {
        // The tenant's drifting rows are read either way
        // (docs/performance.md); a page keeps its workloads.
        let statement = Statement::new(DRIFT_SUMMARY_BY_SOURCE_SQL)
            .filter(tenant, filter)
            .int(stale_before.0)
            .source(&filter.source);
        let rows: Vec<DriftSummaryRow> = reader.fetch_all(statement).await?;
        rows.into_iter()
            .filter(|(ws, a, w, ..)| {
                range.is_none_or(|r| r.contains(&(ws.clone(), a.clone(), w.clone())))
            })
            .collect()
    };
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Filters `drift_rows d` by the target filter parameters (`$1` tenant,
/// `$2` workspace, `$3` application, `$4` workload, `$5` environment, `$6`
/// target). The environment is resolved to its id once (an uncorrelated
/// subquery), workload and target names are columns of the row: whichever
/// is given, PostgreSQL reads the rows off the index that starts with it,
/// in list order.
macro_rules! drift_filters {
    () => {
        " AND ($5 IS NULL OR d.environment_id = (SELECT e.id FROM environments e \
             WHERE e.tenant_id = (SELECT id FROM tenants WHERE name = $1) AND e.name = $5)) \
          AND ($4 IS NULL OR d.workload_name = $4) AND ($6 IS NULL OR d.target_name = $6) \
          AND (($2 IS NULL AND $3 IS NULL) OR d.workload_id IN (SELECT w.id FROM workloads w \
               JOIN applications a ON a.id = w.application_id \
               JOIN workspaces ws ON ws.id = a.workspace_id \
              WHERE w.tenant_id = (SELECT id FROM tenants WHERE name = $1) \
                AND ($2 IS NULL OR ws.name = $2) AND ($3 IS NULL OR a.name = $3)))"
    };
}

/// The tenant's current rows that crossed the stale threshold `$8` since
/// the last sweep (`staleness = 0`, observed before it): one range of the
/// stale index, computed first (`MATERIALIZED`) so the plan never walks
/// other rows to find them, whatever the statistics say. Empty in a steady
/// estate.
macro_rules! crossed {
    ($threshold:literal) => {
        concat!(
            "crossed AS MATERIALIZED (SELECT o.host_id, o.reconciler_id, o.target_id, \
               o.revision, o.status \
             FROM observed_deployments o \
             WHERE o.staleness = 0 AND o.observed_at < ",
            $threshold,
            " AND o.tenant_id = (SELECT id FROM tenants WHERE name = $1))"
        )
    };
}

/// One page of the drift list, in (host, target id, reconciler) order.
/// Parameters: the filter (`$1`..`$6`), `$7` host, `$8` stale-before time
/// (Unix nanoseconds), `$9`..`$11` cursor (host name, target id, reconciler
/// name; exclusive), `$12` limit, `$13`, `$14` the source filter. Columns
/// of a [`super::current::CurrentRow`].
///
/// The page's keys come from two ordered reads of at most `$12` rows each:
/// `drift_rows` (rows off their desired state, or marked stale), off the
/// index of the filter, and the rows that crossed the stale threshold since
/// the last sweep. Only the page's rows are then joined to their names and
/// desired state. The cost follows the page, the filter's drifting rows
/// skipped to reach it, and the rows the sweep has not reached yet; never
/// the rows in sync. (`h.id = o.host_id + 0` keeps the host out of the
/// key's equivalence class: joined through it, PostgreSQL read the current
/// rows of the page's hosts by host alone and filtered the rest.) A row
/// marked stale under a lower threshold than `$8`
/// (the threshold was raised since the sweep) is listed here with no
/// reason, and left out by the caller until the next sweep unmarks it.
pub(crate) const DRIFT_SQL: &str = concat!(
    "WITH ",
    crossed!("$8"),
    ", k AS (SELECT * FROM (SELECT d.host_id, d.reconciler_id, d.target_id, \
         d.host_name, d.reconciler_name \
       FROM drift_rows d \
       JOIN reconcilers r ON r.id = d.reconciler_id \
       WHERE d.tenant_id = (SELECT id FROM tenants WHERE name = $1)",
    drift_filters!(),
    " AND ($7 IS NULL OR d.host_name = $7) \
      AND ($9 IS NULL OR (d.host_name, d.target_id, d.reconciler_name) \
           > (CAST($9 AS TEXT), CAST($10 AS BIGINT), CAST($11 AS TEXT)))",
    crate::store::sql::source_where!("r", "$13", "$14"),
    " ORDER BY d.host_name, d.target_id, d.reconciler_name LIMIT $12) marked \
     UNION \
     SELECT * FROM (SELECT c.host_id, c.reconciler_id, c.target_id, h.name, r.name \
       FROM crossed c \
       JOIN hosts h ON h.id = c.host_id \
       JOIN reconcilers r ON r.id = c.reconciler_id \
       JOIN deployment_targets t ON t.id = c.target_id",
    crate::store::sql::target_joins!(),
    crate::store::sql::target_where!(),
    " AND LOWER(r.type) <> 'argocd' AND ($7 IS NULL OR h.name = $7) \
      AND ($9 IS NULL OR (h.name, c.target_id, r.name) \
           > (CAST($9 AS TEXT), CAST($10 AS BIGINT), CAST($11 AS TEXT)))",
    crate::store::sql::source_where!("r", "$13", "$14"),
    " ORDER BY h.name, c.target_id, r.name LIMIT $12) crossed_page) ",
    crate::store::sql::current_columns!(),
    " FROM k \
      JOIN observed_deployments o ON o.host_id = k.host_id \
        AND o.reconciler_id = k.reconciler_id AND o.target_id = k.target_id \
      JOIN hosts h ON h.id = o.host_id + 0 \
      JOIN reconcilers r ON r.id = k.reconciler_id \
      JOIN deployment_targets t ON t.id = k.target_id \
      JOIN workloads w ON w.id = t.workload_id \
      JOIN applications a ON a.id = w.application_id \
      JOIN workspaces ws ON ws.id = a.workspace_id \
      JOIN environments e ON e.id = t.environment_id \
      LEFT JOIN workload_versions v ON v.id = t.desired_version_id",
    crate::store::sql::latest_assignment_join!(),
    " ORDER BY k.host_name, k.target_id, k.reconciler_name LIMIT $12"
);

/// Drift counts per target of the filtered ones (`$1`..`$6`): drifting
/// rows, of them failed, of them stale. The maintained counters, plus the
/// rows that crossed the stale threshold `$7` since the last sweep (stale;
/// drifting too, unless already counted as off their desired state).
/// Columns: workspace, application, workload, environment, rows, failed,
/// stale. Without a source filter.
macro_rules! drift_summary_sql {
    ($counters:expr, $targets:expr) => {
        concat!(
            "WITH ",
            crossed!("$7"),
            ", x AS (SELECT c.target_id, \
           SUM(CASE WHEN t.desired_revision IS NULL OR c.revision <> t.desired_revision \
                    OR c.status = 'failed' THEN 0 ELSE 1 END) AS rows, COUNT(*) AS stale \
         FROM crossed c \
         JOIN reconcilers r ON r.id = c.reconciler_id \
         JOIN deployment_targets t ON t.id = c.target_id \
        WHERE LOWER(r.type) <> 'argocd' \
        GROUP BY c.target_id), \
     u AS (SELECT target_id, rows, failed, stale FROM drift_counts \
           WHERE tenant_id = (SELECT id FROM tenants WHERE name = $1) AND rows > 0",
            $counters,
            " UNION ALL SELECT target_id, 0, 0, 0 FROM x), \
     c AS (SELECT target_id, SUM(rows) AS rows, SUM(failed) AS failed, SUM(stale) AS stale \
           FROM u GROUP BY target_id) \
     SELECT ws.name, a.name, w.name, e.name, \
       CAST(c.rows + COALESCE(x.rows, 0) AS BIGINT), CAST(c.failed AS BIGINT), \
       CAST(c.stale + COALESCE(x.stale, 0) AS BIGINT) \
     FROM c LEFT JOIN x ON x.target_id = c.target_id \
     JOIN deployment_targets t ON t.id = c.target_id",
            crate::store::sql::target_joins!(),
            crate::store::sql::target_where!(),
            " AND c.rows + COALESCE(x.rows, 0) > 0",
            $targets
        )
    };
}
const DRIFT_SUMMARY_SQL: &str = drift_summary_sql!("", "");

/// [`DRIFT_SUMMARY_SQL`] of the workloads in a range (`$8`..`$13`): the
/// counters of the page's targets only.
const DRIFT_SUMMARY_RANGE_SQL: PerBackend = PerBackend {
    sqlite: drift_summary_sql!(
        concat!(
            " AND target_id IN (SELECT t.id FROM deployment_targets t WHERE 1 = 1",
            crate::store::sql::workload_range!(lite, "t", "$8", "$9", "$10", "$11", "$12", "$13"),
            ")"
        ),
        crate::store::sql::workload_range!(lite, "t", "$8", "$9", "$10", "$11", "$12", "$13")
    ),
    postgres: drift_summary_sql!(
        concat!(
            " AND target_id = ANY (ARRAY(SELECT t.id FROM deployment_targets t WHERE 1 = 1",
            crate::store::sql::workload_range!(pg, "t", "$8", "$9", "$10", "$11", "$12", "$13"),
            "))"
        ),
        crate::store::sql::workload_range!(pg, "t", "$8", "$9", "$10", "$11", "$12", "$13")
    ),
};

/// One row of [`DRIFT_SUMMARY_SQL`].
type DriftSummaryRow = (String, String, String, String, i64, i64, i64);

/// [`DRIFT_SUMMARY_SQL`] counted from `drift_rows` for a source filter
/// (`$8`, `$9`), which the counters do not know: a read of the tenant's
/// drifting rows, not of its current rows. `$7` as there.
const DRIFT_SUMMARY_BY_SOURCE_SQL: &str = concat!(
    "SELECT ws.name, a.name, w.name, e.name, CAST(COUNT(*) AS BIGINT), \
       CAST(SUM(CASE WHEN o.status = 'failed' THEN 1 ELSE 0 END) AS BIGINT), \
       CAST(SUM(CASE WHEN o.observed_at < $7 AND LOWER(r.type) <> 'argocd' THEN 1 ELSE 0 END) \
         AS BIGINT) \
     FROM (SELECT d.host_id, d.reconciler_id, d.target_id FROM drift_rows d \
           WHERE d.tenant_id = (SELECT id FROM tenants WHERE name = $1) \
           UNION \
           SELECT o.host_id, o.reconciler_id, o.target_id FROM observed_deployments o \
           WHERE o.staleness = 0 AND o.observed_at < $7 \
             AND o.tenant_id = (SELECT id FROM tenants WHERE name = $1)) k \
     JOIN observed_deployments o ON o.host_id = k.host_id \
       AND o.reconciler_id = k.reconciler_id AND o.target_id = k.target_id \
     JOIN reconcilers r ON r.id = o.reconciler_id \
     JOIN deployment_targets t ON t.id = o.target_id",
    crate::store::sql::target_joins!(),
    crate::store::sql::target_where!(),
    " AND (t.desired_revision IS NULL OR o.revision <> t.desired_revision \
           OR o.status = 'failed' \
           OR (o.observed_at < $7 AND LOWER(r.type) <> 'argocd'))",
    crate::store::sql::source_where!("r", "$8", "$9"),
    " GROUP BY ws.name, a.name, w.name, e.name"
);

impl From<DriftSummaryRow> for DriftSummary {
    fn from(
        (workspace, application, workload, environment, rows, failed, stale): DriftSummaryRow,
    ) -> Self {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Self {
            workspace,
            application,
            workload,
            environment,
            rows: count(rows),
            failed: count(failed),
            stale: count(stale),
        }
    }
}
