//! The host list: one page of the hosts that report on the filtered
//! targets, each with its last report, status counts and sources.

use sextant_model::Source;

use crate::store::pool::{PerBackend, Statement, StorePool};
use crate::store::sql::{source_where, target_ids_where};
use crate::store::{HostListRow, ListQuery, StoreError};

/// See [`crate::store::HubStore::hosts`].
pub(crate) async fn hosts(
    reader: StorePool<'_>,
    tenant: &str,
    query: &ListQuery,
) -> Result<Vec<HostListRow>, StoreError> {
    let statement = Statement::new(reader.pick(&HOST_LIST))
        .filter(tenant, &query.filter)
        .text(query.host.clone())
        .text(query.after.clone())
        .int(i64::from(query.limit))
        .source(&query.filter.source);
    // Not kept prepared on PostgreSQL: after five executions it may keep a
    // generic plan, which checks every filter parameter on each of a
    // page's 10,000 rows; planned with the values, the unused filters
    // fold away. Twice as fast at 1M rows (23 against 46 ms), for a parse
    // and plan per request (docs/performance.md).
    let statement = if reader.is_postgres() {
        statement.unprepared()
    } else {
        statement
    };
    Ok(host_list(reader.fetch_all(statement).await?))
}

/// 1 when reconciler row `r` has source `$source`, else 0.
macro_rules! is_source {
    ($source:literal) => {
        concat!(
            "CASE WHEN ",
            $crate::store::sql::source_of!("r"),
            " = '",
            $source,
            "' THEN 1 ELSE 0 END"
        )
    };
}

/// Hosts with their last report, status counts and sources over the
/// filtered targets. After the filter parameters: `$7` host, `$8` after
/// (exclusive), `$9` limit, `$10`, `$11` the source filter (counts and
/// sources are of the rows it keeps). The page is chosen first, walking
/// the tenant's hosts in name order and keeping those with a row that
/// passes the filters (a scalar subquery per host, which PostgreSQL cannot
/// turn into a join over every current row), and only its hosts' rows are
/// counted: the cost follows the page, not the estate. The five source flags follow
/// [`Source::ALL`]. The reconcilers that pass the filter, with their flags,
/// are computed once (`rs`), not once per current row: the per-row form
/// took twice as long as the list without sources on 250,000 rows, this
/// one about 1.5 times.
///
/// The page's CTEs, then the statement that aggregates its hosts' rows.
macro_rules! host_page {
    () => {
        concat!(
            "WITH rs AS MATERIALIZED (SELECT r.id, ",
            is_source!("flux"),
            " AS is_flux, ",
            is_source!("argocd"),
            " AS is_argocd, ",
            is_source!("agent"),
            " AS is_agent, ",
            is_source!("kalypso"),
            " AS is_kalypso, ",
            is_source!("otlp"),
            " AS is_otlp FROM reconcilers r WHERE 1 = 1",
            source_where!("r", "$10", "$11"),
            "), page AS (SELECT h.id, h.name FROM hosts h \
               WHERE h.tenant_id = (SELECT id FROM tenants WHERE name = $1) \
                 AND ($7 IS NULL OR h.name = $7) AND ($8 IS NULL OR h.name > $8) \
                 AND (SELECT 1 FROM observed_deployments o \
                   JOIN rs ON rs.id = o.reconciler_id \
                   JOIN deployment_targets t ON t.id = o.target_id",
            target_ids_where!(),
            " AND o.host_id = h.id LIMIT 1) IS NOT NULL \
               ORDER BY h.name LIMIT $9) "
        )
    };
}

/// The aggregates of a host list row over current rows `o` of reconcilers
/// `rs` and targets `t`.
macro_rules! host_aggregates {
    () => {
        "MAX(o.observed_at) AS last_seen, COUNT(DISTINCT o.workload_id), \
           SUM(CASE WHEN o.status = 'succeeded' THEN 1 ELSE 0 END), \
           SUM(CASE WHEN o.status = 'failed' THEN 1 ELSE 0 END), \
           SUM(CASE WHEN o.status = 'in_progress' THEN 1 ELSE 0 END), \
           CAST(MAX(rs.is_flux) AS BIGINT), CAST(MAX(rs.is_argocd) AS BIGINT), \
           CAST(MAX(rs.is_agent) AS BIGINT), CAST(MAX(rs.is_kalypso) AS BIGINT), \
           CAST(MAX(rs.is_otlp) AS BIGINT)"
    };
}

/// The host list ([`host_page`]'s page, aggregated by a join).
const HOST_LIST_SQL: &str = concat!(
    host_page!(),
    "SELECT page.name, ",
    host_aggregates!(),
    " FROM page \
     JOIN observed_deployments o ON o.host_id = page.id \
     JOIN rs ON rs.id = o.reconciler_id \
     JOIN deployment_targets t ON t.id = o.target_id",
    target_ids_where!(),
    " GROUP BY page.name ORDER BY page.name"
);

/// [`HOST_LIST_SQL`] for PostgreSQL, same rows: each page host's rows are
/// read off the key, host first, and aggregated in turn (a lateral join: as
/// a join, PostgreSQL may hash the page against every current row when it
/// thinks the table small; SQLite has no `LATERAL` and walks the key index
/// anyway), with no lookup per row: a row carries its workload (migration 0009) and
/// the host its tenant, and a target filter, when there is one, is one
/// hashed set of the matching targets. Planned with the parameters each
/// time (see [`hosts`]), the unused filters fold away.
const HOST_LIST_LATERAL_SQL: &str = concat!(
    host_page!(),
    "SELECT page.name, x.* FROM page CROSS JOIN LATERAL (SELECT ",
    host_aggregates!(),
    " FROM observed_deployments o \
     JOIN rs ON rs.id = o.reconciler_id \
     WHERE o.host_id = page.id \
       AND (($2 IS NULL AND $3 IS NULL AND $4 IS NULL AND $5 IS NULL AND $6 IS NULL) \
            OR o.target_id IN (SELECT t.id FROM deployment_targets t",
    target_ids_where!(),
    "))) x WHERE x.last_seen IS NOT NULL ORDER BY page.name"
);

/// [`HOST_LIST_SQL`] for SQLite, [`HOST_LIST_LATERAL_SQL`] for PostgreSQL.
const HOST_LIST: PerBackend = PerBackend {
    sqlite: HOST_LIST_SQL,
    postgres: HOST_LIST_LATERAL_SQL,
};

/// A row of [`HOST_LIST`]: host, last report, workloads, status counts and
/// the five source flags.
type HostListSqlRow = (String, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64);

/// Builds host list rows from [`HOST_LIST_SQL`] results.
fn host_list(rows: Vec<HostListSqlRow>) -> Vec<HostListRow> {
    rows.into_iter()
        .map(
            |(
                host,
                last_seen_at,
                workloads,
                succeeded,
                failed,
                in_progress,
                flux,
                argocd,
                agent,
                kalypso,
                otlp,
            )| HostListRow {
                host,
                last_seen_at,
                workloads,
                succeeded,
                failed,
                in_progress,
                sources: Source::ALL
                    .into_iter()
                    .zip([flux, argocd, agent, kalypso, otlp])
                    .filter(|(_, seen)| *seen != 0)
                    .map(|(source, _)| source)
                    .collect(),
            },
        )
        .collect()
}
