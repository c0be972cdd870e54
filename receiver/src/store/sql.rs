//! SQL pieces every read is built from, the same text on both backends
//! (they accept the same `$n` placeholders, `CAST` and row values): the
//! target filter, the source of a reconciler, the newest version of a
//! revision and a page's range of workloads. Each read (`reads/`) puts its
//! statements together from these with `concat!`, so a statement is one
//! `&'static str` known at compile time.

use sextant_model::Source;

/// Joins and filters shared by the state reads. Parameters: `$1` tenant,
/// `$2` workspace, `$3` application, `$4` workload, `$5` environment,
/// `$6` target (NULL matches everything).
macro_rules! target_filter {
    () => {
        concat!(
            $crate::store::sql::target_joins!(),
            $crate::store::sql::target_where!()
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
            $crate::store::sql::source_of!($r),
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
            $crate::store::sql::source_where!("rs", "$7", "$8"),
            "))"
        )
    };
}

pub(crate) use {reported_by_source, source_of, source_where, target_ids_where};

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
        concat!(" AND ", $t, ".workload_id IN (", $crate::store::sql::range_workloads!($($p),+), ")")
    };
    (pg, $t:literal, $($p:literal),+) => {
        concat!(
            " AND ",
            $t,
            ".workload_id = ANY (ARRAY(",
            $crate::store::sql::range_workloads!($($p),+),
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
pub(crate) use {newest_version_join, range_workloads, workload_range};

/// The version a desired event named for `o.revision` of `t`'s workload.
macro_rules! version_of_revision {
    ($revision:literal) => {
        concat!(
            "(SELECT vv.version FROM workload_versions vv \
              WHERE vv.workload_id = t.workload_id AND vv.revision = ",
            $revision,
            " ORDER BY vv.id DESC LIMIT 1)"
        )
    };
}
pub(crate) use version_of_revision;

/// The columns of a current row (`reads/current.rs`'s `CurrentRow`),
/// from current row `o` of host `h`, reconciler `r` and target `t` (with
/// its [`target_joins`]), and `v`, the version of `t`'s desired revision.
/// The current read and the drift list both select them.
macro_rules! current_columns {
    () => {
        concat!(
            "SELECT h.name AS host, r.name AS reconciler, ",
            $crate::store::sql::source_of!("r"),
            " AS source, ws.name AS workspace, \
               a.name AS application, w.name AS workload, e.name AS environment, \
               t.name AS target, v.version AS version, t.desired_revision AS desired_revision, \
               t.desired_at AS assigned_at, o.revision AS revision, o.status AS status, \
               o.message AS message, o.observed_at AS observed_at, o.job_id AS job, ",
            $crate::store::sql::version_of_revision!("o.revision"),
            " AS observed_version, t.id AS target_id, ",
            $crate::store::sql::origin_columns!("da")
        )
    };
}
pub(crate) use current_columns;

/// The origin of desired assignment `$da` (promotion, job, approver,
/// trace), as [`super::reads::OriginColumns`] reads them.
macro_rules! origin_columns {
    ($da:literal) => {
        concat!(
            $da,
            ".promotion_id AS origin_promotion, ",
            $da,
            ".job_id AS origin_job, ",
            $da,
            ".approved_by AS origin_approved_by, ",
            $da,
            ".trace_id AS origin_trace_id, ",
            $da,
            ".span_id AS origin_span_id, ",
            $da,
            ".service AS origin_service"
        )
    };
}
pub(crate) use origin_columns;

/// Joins `da`, target `t`'s latest desired assignment, for
/// [`origin_columns`].
macro_rules! latest_assignment_join {
    () => {
        " LEFT JOIN desired_assignments da ON da.id = t.desired_assignment_id"
    };
}
pub(crate) use latest_assignment_join;
