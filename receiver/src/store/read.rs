//! SQL shared by both backends (they accept the same `$n` placeholders and
//! `ON CONFLICT` upserts), and the assembly of read results.

use std::collections::HashMap;

use sextant_model::Source;
use sextant_model::{DeploymentStatus, DesiredView, HostView, TargetState, UnixNanos};

/// Joins and filters shared by the state reads. Parameters: `$1` tenant,
/// `$2` workspace, `$3` application, `$4` workload, `$5` environment,
/// `$6` target (NULL matches everything).
macro_rules! target_filter {
    () => {
        concat!(
            $crate::store::read::target_joins!(),
            $crate::store::read::target_where!()
        )
    };
}

/// The joins of [`target_filter`] alone, for queries that name them right
/// after `deployment_targets t`. PostgreSQL searches join orders among the
/// first 8 joined tables only (`join_collapse_limit`) and joins the rest in
/// written order; written first, the names that filter targets (an
/// environment, a workload) are applied before current rows are fetched.
macro_rules! target_joins {
    () => {
        " JOIN tenants tn ON tn.id = t.tenant_id \
          JOIN workloads w ON w.id = t.workload_id \
          JOIN applications a ON a.id = w.application_id \
          JOIN workspaces ws ON ws.id = a.workspace_id \
          JOIN environments e ON e.id = t.environment_id"
    };
}

/// The `WHERE` clause of [`target_filter`].
macro_rules! target_where {
    () => {
        " WHERE tn.name = $1 \
            AND ($2 IS NULL OR ws.name = $2) AND ($3 IS NULL OR a.name = $3) \
            AND ($4 IS NULL OR w.name = $4) AND ($5 IS NULL OR e.name = $5) \
            AND ($6 IS NULL OR t.name = $6)"
    };
}

pub(crate) use {target_filter, target_joins, target_where};

/// The filter of [`target_where`] on target row `t` alone, without
/// joining its names: the environment resolved to its id once, the
/// workspace, application and workload to the ids of the workloads they
/// name, each an uncorrelated subquery. For reads that meet many current
/// rows per answer (a page of hosts), where five joins per row cost more
/// than the rows. Starts with ` WHERE`.
macro_rules! target_ids_where {
    () => {
        " WHERE t.tenant_id = (SELECT id FROM tenants WHERE name = $1) \
            AND ($5 IS NULL OR t.environment_id = (SELECT e.id FROM environments e \
                 WHERE e.tenant_id = (SELECT id FROM tenants WHERE name = $1) AND e.name = $5)) \
            AND ($6 IS NULL OR t.name = $6) \
            AND (($2 IS NULL AND $3 IS NULL AND $4 IS NULL) OR t.workload_id IN ( \
                 SELECT w.id FROM workloads w \
                 JOIN applications a ON a.id = w.application_id \
                 JOIN workspaces ws ON ws.id = a.workspace_id \
                 WHERE w.tenant_id = (SELECT id FROM tenants WHERE name = $1) \
                   AND ($2 IS NULL OR ws.name = $2) \
                   AND ($3 IS NULL OR a.name = $3) AND ($4 IS NULL OR w.name = $4)))"
    };
}

/// The source of reconciler row `$r` (a [`sextant_model::Source`]
/// name): its type, lowercased, when that is `flux`, `argocd`, `agent` or
/// `kalypso`; `agent` for `docker`, the type older Sextant agents sent;
/// `otlp` for anything else, `''` (no reconciler named) included. Stored
/// rows keep the type they were reported with, so changing this mapping
/// needs no migration and splits no host's rows.
macro_rules! source_of {
    ($r:literal) => {
        concat!(
            "(CASE LOWER(",
            $r,
            ".type) WHEN 'flux' THEN 'flux' WHEN 'argocd' THEN 'argocd' \
               WHEN 'agent' THEN 'agent' WHEN 'docker' THEN 'agent' \
               WHEN 'kalypso' THEN 'kalypso' ELSE 'otlp' END)"
        )
    };
}

/// Keeps the rows of reconciler row `$r` whose source is in `$sources`
/// (`,flux,agent,`; NULL for any) and, when `$name` is not NULL, whose
/// name is `$name`. See [`super::SourceFilter`].
macro_rules! source_where {
    ($r:literal, $sources:literal, $name:literal) => {
        concat!(
            " AND (CAST(",
            $sources,
            " AS TEXT) IS NULL OR CAST(",
            $sources,
            " AS TEXT) LIKE ('%,' || ",
            $crate::store::read::source_of!($r),
            " || ',%')) AND (CAST(",
            $name,
            " AS TEXT) IS NULL OR ",
            $r,
            ".name = CAST(",
            $name,
            " AS TEXT))"
        )
    };
}

/// With a source filter in `$7` and `$8`, only the targets with a current
/// row that passes it (read off the per-reconciler host counters); without,
/// every target.
macro_rules! reported_by_source {
    () => {
        concat!(
            " AND ((CAST($7 AS TEXT) IS NULL AND CAST($8 AS TEXT) IS NULL) \
               OR EXISTS (SELECT 1 FROM reporter_counts rc \
                 JOIN reconcilers rs ON rs.id = rc.reconciler_id \
                 WHERE rc.target_id = t.id AND rc.hosts > 0",
            $crate::store::read::source_where!("rs", "$7", "$8"),
            "))"
        )
    };
}

pub(crate) use {source_of, source_where};

/// Binds a [`super::SourceFilter`]: the sources, then the reconciler name.
macro_rules! bind_source {
    ($q:expr, $f:expr) => {
        $q.bind($f.source.sources_param())
            .bind($f.source.reconciler.clone())
    };
}
pub(crate) use bind_source;

/// Parses a source the SQL computed with [`source_of`].
pub(crate) fn parse_source(source: &str) -> Source {
    source.parse().unwrap_or(Source::Otlp)
}

/// Left-joins `vv`, the version a desired event named for revision
/// `$revision` of `t`'s workload (the newest such row), or NULLs. The same
/// answer as a correlated `ORDER BY id DESC LIMIT 1` subquery, which
/// PostgreSQL runs once per row; a join it can hash once per statement.
macro_rules! newest_version_join {
    ($revision:literal) => {
        concat!(
            " LEFT JOIN workload_versions vv ON vv.workload_id = t.workload_id \
                AND vv.revision = ",
            $revision,
            " AND NOT EXISTS (SELECT 1 FROM workload_versions newer \
                WHERE newer.workload_id = vv.workload_id AND newer.revision = vv.revision \
                  AND newer.id > vv.id)"
        )
    };
}

/// Keeps the targets `$t` of the workloads in a [`super::WorkloadRange`]:
/// after (`$a1`, `$a2`, `$a3`) (all NULL: from the first) up to and
/// including (`$l1`, `$l2`, `$l3`), in name order. The range's workloads
/// are found among the tenant's workloads (`$1`), their targets by
/// workload id: a page reads its own targets only. `lite` writes
/// `IN (subquery)`, which SQLite probes the index with; `pg` writes
/// `= ANY (ARRAY(subquery))`, an index condition PostgreSQL evaluates once
/// (given `IN`, its generic plans hash-joined every target of the tenant).
macro_rules! workload_range {
    (lite, $t:literal, $($p:literal),+) => {
        concat!(" AND ", $t, ".workload_id IN (", $crate::store::read::range_workloads!($($p),+), ")")
    };
    (pg, $t:literal, $($p:literal),+) => {
        concat!(
            " AND ",
            $t,
            ".workload_id = ANY (ARRAY(",
            $crate::store::read::range_workloads!($($p),+),
            "))"
        )
    };
}

/// The ids of the workloads of [`workload_range`].
macro_rules! range_workloads {
    ($a1:literal, $a2:literal, $a3:literal, $l1:literal, $l2:literal, $l3:literal) => {
        concat!(
            "SELECT rw.id FROM workloads rw \
               JOIN applications ra ON ra.id = rw.application_id \
               JOIN workspaces rws ON rws.id = ra.workspace_id \
              WHERE rw.tenant_id = (SELECT id FROM tenants WHERE name = $1) \
                AND (CAST(",
            $a1,
            " AS TEXT) IS NULL OR (rws.name, ra.name, rw.name) > (CAST(",
            $a1,
            " AS TEXT), CAST(",
            $a2,
            " AS TEXT), CAST(",
            $a3,
            " AS TEXT))) AND (rws.name, ra.name, rw.name) <= (CAST(",
            $l1,
            " AS TEXT), CAST(",
            $l2,
            " AS TEXT), CAST(",
            $l3,
            " AS TEXT))"
        )
    };
}
pub(crate) use range_workloads;
pub(crate) use workload_range;

/// Binds a [`super::WorkloadRange`] for [`workload_range`]: the key to
/// start after (or NULLs), then the last key.
macro_rules! bind_range {
    ($q:expr, $r:expr) => {{
        let (a1, a2, a3) = match &$r.after {
            Some((a, b, c)) => (Some(a.clone()), Some(b.clone()), Some(c.clone())),
            None => (None, None, None),
        };
        $q.bind(a1)
            .bind(a2)
            .bind(a3)
            .bind($r.last.0.clone())
            .bind($r.last.1.clone())
            .bind($r.last.2.clone())
    }};
}
pub(crate) use bind_range;

/// Binds a page's range ([`bind_range`]) when there is one.
macro_rules! bind_opt_range {
    ($q:expr, $r:expr) => {{
        let q = $q;
        match $r {
            Some(r) => $crate::store::read::bind_range!(q, r),
            None => q,
        }
    }};
}
pub(crate) use bind_opt_range;

/// Targets with their latest desired assignment (kept on the target by
/// migration 0008/0007's trigger); with a source filter (`$7`, `$8`), only
/// those it leaves a current row of; `$extra` more conditions.
macro_rules! targets_sql {
    ($extra:expr) => {
        concat!(
            "SELECT t.id, ws.name, a.name, w.name, e.name, t.name, v.version, t.desired_revision, \
               t.desired_at \
             FROM deployment_targets t",
            target_joins!(),
            " LEFT JOIN workload_versions v ON v.id = t.desired_version_id",
            target_where!(),
            reported_by_source!(),
            $extra,
            " ORDER BY ws.name, a.name, w.name, e.name, t.name"
        )
    };
}

/// [`targets_sql`] of every filtered target.
pub(crate) const TARGETS_SQL: &str = targets_sql!("");

/// [`TARGETS_SQL`] of the workloads in a range (`$9`..`$14`): for SQLite,
/// for PostgreSQL ([`RANGE_LITE`], [`RANGE_PG`]).
pub(crate) const TARGETS_RANGE_SQL: [&str; 2] = [
    targets_sql!(workload_range!(
        lite, "t", "$9", "$10", "$11", "$12", "$13", "$14"
    )),
    targets_sql!(workload_range!(
        pg, "t", "$9", "$10", "$11", "$12", "$13", "$14"
    )),
];

/// Which of a per-backend pair of statements (`*_RANGE_SQL`,
/// [`ATTENTION_HOSTS_SQL`]) a backend runs.
pub(crate) const RANGE_LITE: usize = 0;
pub(crate) const RANGE_PG: usize = 1;

pub(crate) type TargetRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
);

/// Current observed rows of the filtered targets, with the version a desired
/// event named for their revision; `$7`, `$8` the source filter.
pub(crate) const HOSTS_SQL: &str = concat!(
    "SELECT o.target_id, h.name, r.name, ",
    source_of!("r"),
    ", o.revision, o.status, o.message, o.observed_at, vv.version \
     FROM deployment_targets t",
    target_joins!(),
    " JOIN observed_deployments o ON o.target_id = t.id \
      JOIN hosts h ON h.id = o.host_id \
      JOIN reconcilers r ON r.id = o.reconciler_id",
    newest_version_join!("o.revision"),
    target_where!(),
    source_where!("r", "$7", "$8"),
    " ORDER BY h.name, r.name"
);

pub(crate) type HostRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<String>,
);

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
     SELECT t.name, t.desired_revision, pg.host_name, pg.reconciler_name, ",
            source_of!("r"),
            ", o.revision, o.status, o.message, o.observed_at, vv.version \
       FROM pg JOIN observed_deployments o ON o.host_id = pg.host_id \
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
    ") SELECT t.name, td.desired, h.name, r.name, ",
    source_of!("r"),
    ", o.revision, o.status, o.message, o.observed_at, vv.version \
       FROM td JOIN deployment_targets t ON t.id = td.target_id \
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

/// [`attention_lite`] for SQLite, [`attention_pg`] for PostgreSQL
/// ([`RANGE_LITE`], [`RANGE_PG`]).
pub(crate) const ATTENTION_HOSTS_SQL: [&str; 2] = [attention_lite!(), attention_pg!()];

pub(crate) type AttentionRow = (
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<String>,
);

/// Builds (target, desired revision, host) from [`ATTENTION_HOSTS_SQL`]
/// rows; a row whose status does not parse is skipped.
pub(crate) fn attention_hosts(rows: Vec<AttentionRow>) -> Vec<(String, Option<String>, HostView)> {
    rows.into_iter()
        .filter_map(
            |(
                target,
                desired,
                host,
                reconciler,
                source,
                revision,
                status,
                message,
                observed_at,
                version,
            )| {
                let status = status.parse::<DeploymentStatus>().ok()?;
                Some((
                    target,
                    desired,
                    HostView {
                        host,
                        reconciler: Some(reconciler).filter(|r| !r.is_empty()),
                        source: parse_source(&source),
                        revision,
                        version,
                        status,
                        message,
                        observed_at: UnixNanos(observed_at),
                        in_sync: false,
                    },
                ))
            },
        )
        .collect()
}

/// Drifting hosts per (tenant, environment), from the host counters and
/// each target's desired revision: on a target with no desired state; on
/// another revision than the desired one; failed on the desired one. A few
/// rows per target. Feeds `sextant_hub_drift_hosts`.
pub(crate) const DRIFT_COUNTS_SQL: &str = "SELECT tn.name, e.name, \
       CAST(SUM(CASE WHEN t.desired_revision IS NULL THEN c.hosts ELSE 0 END) AS BIGINT), \
       CAST(SUM(CASE WHEN t.desired_revision IS NOT NULL AND c.revision <> t.desired_revision \
                THEN c.hosts ELSE 0 END) AS BIGINT), \
       CAST(SUM(CASE WHEN t.desired_revision IS NOT NULL AND c.revision = t.desired_revision \
                AND c.status = 'failed' THEN c.hosts ELSE 0 END) AS BIGINT) \
     FROM deployment_targets t \
     JOIN deployed_counts c ON c.target_id = t.id AND c.hosts > 0 \
     JOIN environments e ON e.id = t.environment_id \
     JOIN tenants tn ON tn.id = t.tenant_id \
     GROUP BY tn.name, e.name";

pub(crate) type DriftCountRow = (String, String, i64, i64, i64);

/// Hosts per (tenant, environment) whose newest report there is older than
/// `$1` (Unix nanoseconds), from sources that report on a schedule (Argo
/// CD's rows are never stale: `Source::reports_periodically`). The
/// candidates are the rows observed before `$1`, found on the stale index
/// (migration 0008/0007) rather than by reading every current row; each
/// candidate host is then checked for a newer row in the environment.
/// Feeds `sextant_hub_stale_hosts` (the metrics handler caches it).
pub(crate) const STALE_COUNTS_SQL: &str = "SELECT tn.name, e.name, COUNT(*) FROM ( \
       SELECT DISTINCT t.tenant_id, t.environment_id, o.host_id \
         FROM observed_deployments o JOIN deployment_targets t ON t.id = o.target_id \
         JOIN reconcilers r ON r.id = o.reconciler_id \
        WHERE o.staleness IN (0, 1) AND o.observed_at < $1 AND LOWER(r.type) <> 'argocd') x \
     JOIN environments e ON e.id = x.environment_id \
     JOIN tenants tn ON tn.id = x.tenant_id \
     WHERE NOT EXISTS (SELECT 1 FROM observed_deployments o2 \
         JOIN deployment_targets t2 ON t2.id = o2.target_id \
         JOIN reconcilers r2 ON r2.id = o2.reconciler_id \
        WHERE o2.host_id = x.host_id AND t2.environment_id = x.environment_id \
          AND o2.observed_at >= $1 AND LOWER(r2.type) <> 'argocd') \
     GROUP BY tn.name, e.name";

/// 1 when reconciler row `r` has source `$source`, else 0.
macro_rules! is_source {
    ($source:literal) => {
        concat!(
            "CASE WHEN ",
            $crate::store::read::source_of!("r"),
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
pub(crate) const HOST_LIST_SQL: &str = concat!(
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
/// time (see `PostgresStore::hosts`), the unused filters fold away.
pub(crate) const HOST_LIST_LATERAL_SQL: &str = concat!(
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

pub(crate) type HostListSqlRow = (String, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64);

/// Builds host list rows from [`HOST_LIST_SQL`] results.
pub(crate) fn host_list(rows: Vec<HostListSqlRow>) -> Vec<super::HostListRow> {
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
            )| super::HostListRow {
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

/// Binds the filter parameters of [`TARGETS_SQL`] and [`HOSTS_SQL`].
macro_rules! bind_filter {
    ($q:expr, $tenant:expr, $f:expr) => {
        $q.bind($tenant.to_owned())
            .bind($f.workspace.clone())
            .bind($f.application.clone())
            .bind($f.workload.clone())
            .bind($f.environment.clone())
            .bind($f.target.clone())
    };
}
pub(crate) use bind_filter;

/// Builds the state view from the two reads.
pub(crate) fn assemble(targets: Vec<TargetRow>, hosts: Vec<HostRow>) -> Vec<TargetState> {
    let mut index = HashMap::with_capacity(targets.len());
    let mut states: Vec<TargetState> = targets
        .into_iter()
        .enumerate()
        .map(
            |(
                i,
                (id, workspace, application, workload, environment, target, version, revision, at),
            )| {
                index.insert(id, i);
                let desired = match (version, revision, at) {
                    (Some(version), Some(revision), Some(at)) => Some(DesiredView {
                        version,
                        revision,
                        at: UnixNanos(at),
                    }),
                    _ => None,
                };
                TargetState {
                    workspace,
                    application,
                    workload,
                    environment,
                    target,
                    desired,
                    hosts: Vec::new(),
                }
            },
        )
        .collect();
    for (target_id, host, reconciler, source, revision, status, message, observed_at, version) in
        hosts
    {
        let Some(&i) = index.get(&target_id) else {
            continue;
        };
        let Ok(status) = status.parse::<DeploymentStatus>() else {
            continue;
        };
        let state = &mut states[i];
        let view = HostView {
            host,
            reconciler: Some(reconciler).filter(|r| !r.is_empty()),
            source: parse_source(&source),
            revision,
            version,
            status,
            message,
            observed_at: UnixNanos(observed_at),
            in_sync: false,
        }
        .with_sync(state.desired.as_ref());
        state.hosts.push(view);
    }
    states
}

/// Records a workload version (or finds it) and returns its id.
/// `$1` tenant, `$2` workload, `$3` version, `$4` revision, `$5` build commit,
/// `$6` build id, `$7` repository, `$8` now.
pub(crate) const UPSERT_VERSION_SQL: &str = "INSERT INTO workload_versions \
     (tenant_id, workload_id, version, revision, build_commit, build_id, repository_url, first_seen_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (workload_id, version, revision) DO UPDATE SET \
       build_commit = COALESCE(excluded.build_commit, workload_versions.build_commit), \
       build_id = COALESCE(excluded.build_id, workload_versions.build_id), \
       repository_url = COALESCE(excluded.repository_url, workload_versions.repository_url) \
     RETURNING id";

/// Appends a desired assignment; a replay is a no-op.
pub(crate) const INSERT_ASSIGNMENT_SQL: &str = "INSERT INTO desired_assignments \
     (tenant_id, target_id, workload_version_id, assigned_at, received_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";

/// The history row just before a late observation.
pub(crate) const PREVIOUS_HISTORY_SQL: &str = "SELECT revision, status, message, observed_at \
     FROM observed_history WHERE host_id = $1 AND reconciler_id = $2 AND target_id = $3 \
     AND observed_at <= $4 ORDER BY observed_at DESC, id DESC LIMIT 1";

/// Appends one history row; a replay is a no-op.
pub(crate) const INSERT_HISTORY_SQL: &str = "INSERT INTO observed_history \
     (tenant_id, host_id, reconciler_id, target_id, revision, status, message, observed_at, received_at, job_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING";

/// Writes the desired events of a batch inside `$tx`. Returns how many
/// assignments were new.
macro_rules! write_desired {
    ($store:expr, $tx:expr, $tenant:expr, $events:expr, $now:expr) => {{
        let mut written = 0usize;
        for d in $events {
            let ids =
                $crate::store::dims::resolve_placement!($store, &mut *$tx, $tenant, &d.placement)?;
            let version_id: i64 = sqlx::query_scalar($crate::store::read::UPSERT_VERSION_SQL)
                .bind(ids.tenant)
                .bind(ids.workload)
                .bind(d.version.clone())
                .bind(d.revision.clone())
                .bind(d.build_commit.clone())
                .bind(d.build_id.clone())
                .bind(d.repository_url.clone())
                .bind($now)
                .fetch_one(&mut *$tx)
                .await?;
            let done = sqlx::query($crate::store::read::INSERT_ASSIGNMENT_SQL)
                .bind(ids.tenant)
                .bind(ids.target)
                .bind(version_id)
                .bind(d.at.0)
                .bind($now)
                .execute(&mut *$tx)
                .await?;
            written += done.rows_affected() as usize;
        }
        written
    }};
}
pub(crate) use write_desired;

/// Places late observations in history where they are a change relative to
/// the history row before them. Returns how many rows were inserted.
macro_rules! write_late {
    ($tx:expr, $tenant_id:expr, $late:expr, $now:expr) => {{
        let mut inserted = 0usize;
        for ((host, reconciler, target), row) in $late {
            let previous: Option<(String, String, Option<String>, i64)> =
                sqlx::query_as($crate::store::read::PREVIOUS_HISTORY_SQL)
                    .bind(host)
                    .bind(reconciler)
                    .bind(target)
                    .bind(row.observed_at)
                    .fetch_optional(&mut *$tx)
                    .await?;
            let is_change = previous.is_none_or(|(revision, status, message, _)| {
                revision != row.revision || status != row.status || message != row.message
            });
            if is_change {
                let done = sqlx::query($crate::store::read::INSERT_HISTORY_SQL)
                    .bind($tenant_id)
                    .bind(host)
                    .bind(reconciler)
                    .bind(target)
                    .bind(row.revision.clone())
                    .bind(row.status)
                    .bind(row.message.clone())
                    .bind(row.observed_at)
                    .bind($now)
                    .bind(row.job.clone())
                    .execute(&mut *$tx)
                    .await?;
                inserted += done.rows_affected() as usize;
            }
        }
        inserted
    }};
}
pub(crate) use write_late;
