//! History: desired assignments and observed changes, newest first, one
//! page.

use sextant_model::{HistoryEntry, StatusCounts, TargetRef, UnixNanos};

use super::state::OriginColumns;
use crate::store::pool::{Statement, StorePool};
use crate::store::sql::{
    origin_columns, parse_source, source_of, source_where, target_filter, version_of_revision,
};
use crate::store::{HistoryQuery, StoreError};

/// See [`crate::store::HubStore::history`].
pub(crate) async fn history(
    reader: StorePool<'_>,
    tenant: &str,
    query: &HistoryQuery,
) -> Result<Vec<(HistoryEntry, HistoryCursor)>, StoreError> {
    let (at, key) = match query.after {
        Some((a, k)) => (Some(a), Some(k)),
        None => (None, None),
    };
    let rows: Vec<HistoryRow> = reader
        .fetch_all(
            Statement::new(HISTORY_SQL)
                .filter(tenant, &query.filter)
                .text(query.host.clone())
                .int(query.since.map(|t| t.0))
                .int(query.until.map(|t| t.0))
                .int(at)
                .int(key)
                .int(i64::from(query.limit))
                .source(&query.filter.source),
        )
        .await?;
    Ok(entries(rows))
}

/// Desired assignments and observed status changes, newest first. After the
/// filter parameters: `$7` host (observed rows only, when set), `$8` since
/// and `$9` until (inclusive, nanoseconds), `$10`, `$11` cursor (at, key;
/// exclusive, descending), `$12` limit, `$13`, `$14` the source filter
/// (of observed rows; desired assignments are always listed). The key is
/// the row id, negated for desired assignments, so one integer tells both
/// kind and row.
const HISTORY_SQL: &str = concat!(
    "SELECT x.key AS entry_key, x.at AS entry_at, ws.name AS workspace, a.name AS application, \
       w.name AS workload, e.name AS environment, t.name AS target, x.host AS host, \
       x.reconciler AS reconciler, x.source AS source, \
       CASE WHEN x.key > 0 THEN ",
    version_of_revision!("x.revision"),
    " ELSE x.version END AS version, \
       x.revision AS revision, x.status AS status, x.message AS message, \
       CASE WHEN x.key < 0 THEN COALESCE((SELECT c.hosts FROM deployed_counts c \
         WHERE c.target_id = x.target_id AND c.revision = x.revision AND c.status = 'succeeded'), 0) END \
         AS succeeded, \
       CASE WHEN x.key < 0 THEN COALESCE((SELECT c.hosts FROM deployed_counts c \
         WHERE c.target_id = x.target_id AND c.revision = x.revision AND c.status = 'failed'), 0) END \
         AS failed, \
       CASE WHEN x.key < 0 THEN COALESCE((SELECT c.hosts FROM deployed_counts c \
         WHERE c.target_id = x.target_id AND c.revision = x.revision AND c.status = 'in_progress'), 0) END \
         AS in_progress, \
       x.origin_promotion AS origin_promotion, x.origin_job AS origin_job, \
       x.origin_approved_by AS origin_approved_by, x.origin_trace_id AS origin_trace_id, \
       x.origin_span_id AS origin_span_id, x.origin_service AS origin_service \
     FROM ( \
       SELECT -da.id AS key, da.assigned_at AS at, da.target_id AS target_id, \
         CAST(NULL AS TEXT) AS host, CAST(NULL AS TEXT) AS reconciler, \
         CAST(NULL AS TEXT) AS source, dv.version AS version, \
         dv.revision AS revision, CAST(NULL AS TEXT) AS status, CAST(NULL AS TEXT) AS message, ",
    origin_columns!("da"),
    " FROM desired_assignments da JOIN workload_versions dv ON dv.id = da.workload_version_id \
       UNION ALL \
       SELECT oh.id, oh.observed_at, oh.target_id, hh.name, rr.name, ",
    source_of!("rr"),
    ", CAST(NULL AS TEXT), oh.revision, oh.status, oh.message, \
       CAST(NULL AS TEXT), oh.job_id, CAST(NULL AS TEXT), CAST(NULL AS TEXT), CAST(NULL AS TEXT), \
       CAST(NULL AS TEXT) \
       FROM observed_history oh \
       JOIN hosts hh ON hh.id = oh.host_id \
       JOIN reconcilers rr ON rr.id = oh.reconciler_id",
    source_where!("rr", "$13", "$14"),
    " ) x \
     JOIN deployment_targets t ON t.id = x.target_id",
    target_filter!(),
    " AND ($7 IS NULL OR x.host = $7) \
      AND ($8 IS NULL OR x.at >= $8) AND ($9 IS NULL OR x.at <= $9) \
      AND ($10 IS NULL OR (x.at, x.key) < (CAST($10 AS BIGINT), CAST($11 AS BIGINT))) \
     ORDER BY x.at DESC, x.key DESC LIMIT $12"
);

/// One row of [`HISTORY_SQL`], by column name.
#[derive(Debug, sqlx::FromRow)]
struct HistoryRow {
    entry_key: i64,
    entry_at: i64,
    workspace: String,
    application: String,
    workload: String,
    environment: String,
    target: String,
    host: Option<String>,
    reconciler: Option<String>,
    source: Option<String>,
    version: Option<String>,
    revision: String,
    status: Option<String>,
    message: Option<String>,
    succeeded: Option<i64>,
    failed: Option<i64>,
    in_progress: Option<i64>,
    #[sqlx(flatten)]
    origin: OriginColumns,
}

/// Where a page of history ended: (at, key).
pub type HistoryCursor = (i64, i64);

/// Builds history entries; returns them with each row's cursor.
fn entries(rows: Vec<HistoryRow>) -> Vec<(HistoryEntry, HistoryCursor)> {
    let count = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    rows.into_iter()
        .filter_map(
            |HistoryRow {
                 entry_key: key,
                 entry_at: at,
                 workspace,
                 application,
                 workload,
                 environment,
                 target,
                 host,
                 reconciler,
                 source,
                 version,
                 revision,
                 status,
                 message,
                 succeeded,
                 failed,
                 in_progress,
                 origin,
             }| {
                let target = TargetRef {
                    workspace,
                    application,
                    workload,
                    environment,
                    target,
                };
                let cursor = (at, key);
                let entry = if key < 0 {
                    HistoryEntry::Desired {
                        at: UnixNanos(at),
                        target,
                        version: version?,
                        revision,
                        hosts: StatusCounts {
                            succeeded: count(succeeded),
                            failed: count(failed),
                            in_progress: count(in_progress),
                        },
                        origin: origin.view(),
                    }
                } else {
                    HistoryEntry::Observed {
                        at: UnixNanos(at),
                        target,
                        host: host?,
                        reconciler: reconciler.filter(|r| !r.is_empty()),
                        source: parse_source(source.as_deref().unwrap_or_default()),
                        version,
                        revision,
                        status: status?.parse().ok()?,
                        message,
                        job: origin.job(),
                    }
                };
                Some((entry, cursor))
            },
        )
        .collect()
}
