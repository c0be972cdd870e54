//! SQL of the hub's reports, shared by both backends (same `$n`
//! placeholders, `CAST` and row values work in SQLite and PostgreSQL), and
//! the assembly of their rows into `sextant-model` reports.

use std::collections::HashMap;

use sextant_model::report::SourceHosts;
use sextant_model::{
    DeployedGroup, DeploymentStatus, DesiredView, HistoryEntry, HostDeployment, StatusCounts,
    TargetRef, TargetSummary, UnixNanos,
};

use super::read::{
    TargetRow, parse_source, source_of, source_where, target_filter, target_joins, target_where,
    workload_range,
};

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

/// Host counts of the filtered targets per (target, revision, status), from
/// the counters that migration 0003's triggers keep in step with current
/// rows: a few rows per target whatever the number of hosts.
macro_rules! deployed_sql {
    ($extra:expr) => {
        deployed_sql!(
            " JOIN deployed_counts c ON c.target_id = t.id AND c.hosts > 0",
            $extra
        )
    };
    ($counts:expr, $extra:expr) => {
        deployed_sql!(version_of_revision!("c.revision"), $counts, $extra)
    };
    ($version:expr, $counts:expr, $extra:expr) => {
        concat!(
            "SELECT t.id, c.revision, c.status, c.hosts, ",
            $version,
            " FROM deployment_targets t",
            target_joins!(),
            $counts,
            target_where!(),
            $extra
        )
    };
}

/// [`version_of_revision`] of each counter `c` as a lateral join `v`, so
/// PostgreSQL memoizes it by (workload, revision): a page's 2,000 counters
/// name about 100 of them (1M rows, 100×25), and a subquery runs once per
/// counter (a third less time for the page's counters in `psql`).
macro_rules! lateral_version {
    () => {
        concat!(
            " LEFT JOIN LATERAL ",
            version_of_revision!("c.revision"),
            " v ON TRUE"
        )
    };
}
pub(crate) const DEPLOYED_SQL: &str = deployed_sql!("");

/// PostgreSQL reads a page's counters target by target: `LATERAL` with
/// `OFFSET 0` (which keeps it from being flattened into a join) is a
/// nested loop over the page's targets. Planned as a join, the page's
/// size unknown (an array built at run time), it hashed the page's
/// targets against every counter of the estate (a sequential scan of
/// 176,741 rows at 1M current rows: 40 ms a page).
macro_rules! lateral_counts {
    ($table:literal, $columns:literal) => {
        concat!(
            " CROSS JOIN LATERAL (SELECT ",
            $columns,
            " FROM ",
            $table,
            " c WHERE c.target_id = t.id AND c.hosts > 0 OFFSET 0) c"
        )
    };
}

/// [`DEPLOYED_SQL`] of the workloads in a range (`$7`..`$12`).
pub(crate) const DEPLOYED_RANGE_SQL: [&str; 2] = [
    deployed_sql!(workload_range!(
        lite, "t", "$7", "$8", "$9", "$10", "$11", "$12"
    )),
    deployed_sql!(
        "v.version",
        concat!(
            lateral_counts!("deployed_counts", "c.revision, c.status, c.hosts"),
            lateral_version!()
        ),
        workload_range!(pg, "t", "$7", "$8", "$9", "$10", "$11", "$12")
    ),
];

/// [`DEPLOYED_SQL`]'s groups counted from the current rows that pass a
/// source filter (`$7`, `$8`): the host counters do not know reconcilers,
/// so a filtered report counts the rows it keeps.
macro_rules! deployed_by_source_sql {
    ($extra:expr) => {
        concat!(
            "SELECT t.id, o.revision, o.status, COUNT(*), ",
            version_of_revision!("o.revision"),
            " FROM deployment_targets t",
            target_joins!(),
            " JOIN observed_deployments o ON o.target_id = t.id \
              JOIN reconcilers r ON r.id = o.reconciler_id",
            target_where!(),
            source_where!("r", "$7", "$8"),
            $extra,
            " GROUP BY t.id, t.workload_id, o.revision, o.status"
        )
    };
}
pub(crate) const DEPLOYED_BY_SOURCE_SQL: &str = deployed_by_source_sql!("");

/// [`DEPLOYED_BY_SOURCE_SQL`] of the workloads in a range (`$9`..`$14`).
pub(crate) const DEPLOYED_BY_SOURCE_RANGE_SQL: [&str; 2] = [
    deployed_by_source_sql!(workload_range!(
        lite, "t", "$9", "$10", "$11", "$12", "$13", "$14"
    )),
    deployed_by_source_sql!(workload_range!(
        pg, "t", "$9", "$10", "$11", "$12", "$13", "$14"
    )),
];

pub(crate) type DeployedRow = (i64, String, String, i64, Option<String>);

/// Hosts of the filtered targets per reconciler name and source, from the
/// counters migration 0006/0007's triggers keep per (target, reconciler):
/// a few rows per target, whatever the number of hosts. Reconcilers of one
/// name whose types map to one source (`agent` and the older `docker`)
/// count together; `$7`, `$8` the source filter.
macro_rules! sources_sql {
    ($extra:expr) => {
        sources_sql!(
            " JOIN reporter_counts c ON c.target_id = t.id AND c.hosts > 0",
            $extra
        )
    };
    ($counts:expr, $extra:expr) => {
        concat!(
            "SELECT t.id, r.name, ",
            source_of!("r"),
            ", CAST(SUM(c.hosts) AS BIGINT) FROM deployment_targets t",
            target_joins!(),
            $counts,
            " JOIN reconcilers r ON r.id = c.reconciler_id",
            target_where!(),
            source_where!("r", "$7", "$8"),
            $extra,
            " GROUP BY t.id, r.name, ",
            source_of!("r")
        )
    };
}
pub(crate) const SOURCES_SQL: &str = sources_sql!("");

/// [`SOURCES_SQL`] of the workloads in a range (`$9`..`$14`), the counters
/// read as in [`DEPLOYED_RANGE_SQL`].
pub(crate) const SOURCES_RANGE_SQL: [&str; 2] = [
    sources_sql!(workload_range!(
        lite, "t", "$9", "$10", "$11", "$12", "$13", "$14"
    )),
    sources_sql!(
        lateral_counts!("reporter_counts", "c.reconciler_id, c.hosts"),
        workload_range!(pg, "t", "$9", "$10", "$11", "$12", "$13", "$14")
    ),
];

/// A target of environment `$2` of tenant `$1`, if there is one.
pub(crate) const ENVIRONMENT_EXISTS_SQL: &str = "SELECT t.id FROM deployment_targets t \
    WHERE t.environment_id = (SELECT e.id FROM environments e \
      JOIN tenants tn ON tn.id = e.tenant_id WHERE tn.name = $1 AND e.name = $2) LIMIT 1";

/// Target `t` is in environment `$9` of tenant `$1`, or `$9` is NULL.
macro_rules! in_environment {
    () => {
        " AND ($9 IS NULL OR t.environment_id = (SELECT e.id FROM environments e \
           WHERE e.tenant_id = (SELECT id FROM tenants WHERE name = $1) AND e.name = $9))"
    };
}

/// The filtered workloads (`$2`..`$4`) after (`$5`, `$6`, `$7`) (NULL: from
/// the first) in name order, at most `$8`, each with its number of targets;
/// with an environment `$9`, only the workloads with a target there, and
/// only those targets counted. The tenant's workloads are sorted, the
/// targets of the page's only are counted.
pub(crate) const WORKLOAD_PAGE_SQL: &str = concat!(
    "SELECT ws.name, a.name, w.name, \
       (SELECT COUNT(*) FROM deployment_targets t WHERE t.workload_id = w.id",
    in_environment!(),
    ") FROM workloads w \
     JOIN applications a ON a.id = w.application_id \
     JOIN workspaces ws ON ws.id = a.workspace_id \
    WHERE w.tenant_id = (SELECT id FROM tenants WHERE name = $1) \
      AND ($2 IS NULL OR ws.name = $2) AND ($3 IS NULL OR a.name = $3) \
      AND ($4 IS NULL OR w.name = $4) \
      AND (CAST($5 AS TEXT) IS NULL OR (ws.name, a.name, w.name) > \
           (CAST($5 AS TEXT), CAST($6 AS TEXT), CAST($7 AS TEXT))) \
      AND ($9 IS NULL OR EXISTS (SELECT 1 FROM deployment_targets t \
           WHERE t.workload_id = w.id",
    in_environment!(),
    ")) ORDER BY ws.name, a.name, w.name LIMIT $8"
);

pub(crate) type SourceRow = (i64, String, String, i64);

/// Builds environment-state summaries from the targets, their groups and
/// their reporters.
pub(crate) fn summaries(
    targets: Vec<TargetRow>,
    groups: Vec<DeployedRow>,
    sources: Vec<SourceRow>,
) -> Vec<TargetSummary> {
    let mut reporters: HashMap<i64, Vec<SourceHosts>> = HashMap::new();
    for (target, reconciler, source, hosts) in sources {
        reporters.entry(target).or_default().push(SourceHosts {
            reconciler: Some(reconciler).filter(|r| !r.is_empty()),
            source: parse_source(&source),
            hosts: u64::try_from(hosts).unwrap_or(0),
        });
    }
    let mut by_target: HashMap<i64, Vec<DeployedGroup>> = HashMap::new();
    for (target, revision, status, hosts, version) in groups {
        let Ok(status) = status.parse::<DeploymentStatus>() else {
            continue;
        };
        by_target.entry(target).or_default().push(DeployedGroup {
            version,
            revision,
            status,
            hosts: u64::try_from(hosts).unwrap_or(0),
            desired: false,
        });
    }
    targets
        .into_iter()
        .map(
            |(id, workspace, application, workload, environment, target, version, revision, at)| {
                let desired = desired_view(version, revision, at);
                TargetSummary::new(
                    TargetRef {
                        workspace,
                        application,
                        workload,
                        environment,
                        target,
                    },
                    desired,
                    by_target.remove(&id).unwrap_or_default(),
                )
                .with_sources(reporters.remove(&id).unwrap_or_default())
            },
        )
        .collect()
}

fn desired_view(
    version: Option<String>,
    revision: Option<String>,
    at: Option<i64>,
) -> Option<DesiredView> {
    match (version, revision, at) {
        (Some(version), Some(revision), Some(at)) => Some(DesiredView {
            version,
            revision,
            at: UnixNanos(at),
        }),
        _ => None,
    }
}

/// The columns of a [`CurrentRow`], from current row `o` of host `h`,
/// reconciler `r` and target `t` (with its [`target_joins`]), and `v`,
/// the version of `t`'s desired revision.
macro_rules! current_columns {
    () => {
        concat!(
            "SELECT h.name AS host, r.name AS reconciler, ",
            $crate::store::read::source_of!("r"),
            " AS source, ws.name AS workspace, \
               a.name AS application, w.name AS workload, e.name AS environment, \
               t.name AS target, v.version AS version, t.desired_revision AS desired_revision, \
               t.desired_at AS assigned_at, o.revision AS revision, o.status AS status, \
               o.message AS message, o.observed_at AS observed_at, o.job_id AS job, ",
            $crate::store::reports::version_of_revision!("o.revision"),
            " AS observed_version, t.id AS target_id"
        )
    };
}
pub(crate) use {current_columns, version_of_revision};

/// Current rows with their target's latest desired assignment, host first
/// (a host's rows are one index range of `observed_deployments`). After the
/// filter parameters: `$7` host, `$8`..`$10` cursor (host name, target id,
/// reconciler name; exclusive), `$11` limit, `$12`, `$13` the source
/// filter. The drift list reads [`super::drift::DRIFT_SQL`] instead.
pub(crate) const CURRENT_SQL: &str = concat!(
    current_columns!(),
    " FROM hosts h JOIN tenants tn ON tn.id = h.tenant_id \
      JOIN observed_deployments o ON o.host_id = h.id \
      JOIN deployment_targets t ON t.id = o.target_id \
      JOIN workloads w ON w.id = t.workload_id \
      JOIN applications a ON a.id = w.application_id \
      JOIN workspaces ws ON ws.id = a.workspace_id \
      JOIN environments e ON e.id = t.environment_id \
      JOIN reconcilers r ON r.id = o.reconciler_id \
      LEFT JOIN workload_versions v ON v.id = t.desired_version_id",
    target_where!(),
    " AND ($7 IS NULL OR h.name = $7) \
      AND ($8 IS NULL OR (h.name, t.id, r.name) > (CAST($8 AS TEXT), CAST($9 AS BIGINT), CAST($10 AS TEXT)))",
    source_where!("r", "$12", "$13"),
    " ORDER BY h.name, t.id, r.name LIMIT $11"
);

/// One row of [`CURRENT_SQL`], by column name.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CurrentRow {
    host: String,
    reconciler: String,
    source: String,
    workspace: String,
    application: String,
    workload: String,
    environment: String,
    target: String,
    version: Option<String>,
    desired_revision: Option<String>,
    assigned_at: Option<i64>,
    revision: String,
    status: String,
    message: Option<String>,
    observed_at: i64,
    job: Option<String>,
    observed_version: Option<String>,
    target_id: i64,
}

/// Where a page of current rows ended: (host, target id, reconciler name).
pub type CurrentCursor = (String, i64, String);

/// Builds measured host deployments; returns them with each row's cursor.
pub(crate) fn host_deployments(
    rows: Vec<CurrentRow>,
    stale_before: UnixNanos,
) -> Vec<(HostDeployment, CurrentCursor)> {
    rows.into_iter()
        .filter_map(
            |CurrentRow {
                 host,
                 reconciler,
                 source,
                 workspace,
                 application,
                 workload,
                 environment,
                 target,
                 version,
                 desired_revision,
                 assigned_at,
                 revision,
                 status,
                 message,
                 observed_at,
                 job,
                 observed_version,
                 target_id,
             }| {
                let status = status.parse::<DeploymentStatus>().ok()?;
                let cursor = (host.clone(), target_id, reconciler.clone());
                let deployment = HostDeployment {
                    host,
                    reconciler: Some(reconciler).filter(|r| !r.is_empty()),
                    source: parse_source(&source),
                    at: TargetRef {
                        workspace,
                        application,
                        workload,
                        environment,
                        target,
                    },
                    desired: desired_view(version, desired_revision, assigned_at),
                    version: observed_version,
                    revision,
                    status,
                    message,
                    job,
                    observed_at: UnixNanos(observed_at),
                    in_sync: false,
                    drift: Vec::new(),
                }
                .measured(stale_before);
                Some((deployment, cursor))
            },
        )
        .collect()
}

/// Desired assignments and observed status changes, newest first. After the
/// filter parameters: `$7` host (observed rows only, when set), `$8` since
/// and `$9` until (inclusive, nanoseconds), `$10`, `$11` cursor (at, key;
/// exclusive, descending), `$12` limit, `$13`, `$14` the source filter
/// (of observed rows; desired assignments are always listed). The key is
/// the row id, negated for desired assignments, so one integer tells both
/// kind and row.
pub(crate) const HISTORY_SQL: &str = concat!(
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
         AS in_progress \
     FROM ( \
       SELECT -da.id AS key, da.assigned_at AS at, da.target_id AS target_id, \
         CAST(NULL AS TEXT) AS host, CAST(NULL AS TEXT) AS reconciler, \
         CAST(NULL AS TEXT) AS source, dv.version AS version, \
         dv.revision AS revision, CAST(NULL AS TEXT) AS status, CAST(NULL AS TEXT) AS message \
       FROM desired_assignments da JOIN workload_versions dv ON dv.id = da.workload_version_id \
       UNION ALL \
       SELECT oh.id, oh.observed_at, oh.target_id, hh.name, rr.name, ",
    source_of!("rr"),
    ", CAST(NULL AS TEXT), oh.revision, oh.status, oh.message \
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
pub(crate) struct HistoryRow {
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
}

/// Where a page of history ended: (at, key).
pub type HistoryCursor = (i64, i64);

/// Builds history entries; returns them with each row's cursor.
pub(crate) fn history(rows: Vec<HistoryRow>) -> Vec<(HistoryEntry, HistoryCursor)> {
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
                    }
                };
                Some((entry, cursor))
            },
        )
        .collect()
}

/// With `$7`, only the targets host `$7` reports on.
macro_rules! reported_by_host {
    () => {
        " AND ($7 IS NULL OR EXISTS (SELECT 1 FROM observed_deployments o2 \
           JOIN hosts h2 ON h2.id = o2.host_id \
           WHERE o2.target_id = t.id AND h2.name = $7))"
    };
}

/// The filtered targets (and, with `$7`, only those `$7` reports on).
macro_rules! catalog_base {
    () => {
        concat!(
            " FROM deployment_targets t",
            target_filter!(),
            reported_by_host!()
        )
    };
}

/// Environments with target and host counts (ordered by the caller); both
/// count only the targets that match the filters, and the hosts that
/// report on them.
pub(crate) const ENVIRONMENT_LIST_SQL: &str = concat!(
    "SELECT e.name, COUNT(DISTINCT t.id), COUNT(DISTINCT o.host_id) \
     FROM deployment_targets t",
    target_joins!(),
    " LEFT JOIN observed_deployments o ON o.target_id = t.id",
    target_where!(),
    reported_by_host!(),
    " GROUP BY e.id, e.name"
);

/// Applications with workload counts; `$8`, `$9` cursor, `$10` limit.
pub(crate) const APPLICATION_LIST_SQL: &str = concat!(
    "SELECT ws.name, a.name, COUNT(DISTINCT w.id)",
    catalog_base!(),
    " AND ($8 IS NULL OR (ws.name, a.name) > (CAST($8 AS TEXT), CAST($9 AS TEXT))) \
     GROUP BY ws.name, a.name ORDER BY ws.name, a.name LIMIT $10"
);

/// Workloads with environment and target counts; `$8`..`$10` cursor,
/// `$11` limit.
pub(crate) const WORKLOAD_LIST_SQL: &str = concat!(
    "SELECT ws.name, a.name, w.name, COUNT(DISTINCT e.id), COUNT(*)",
    catalog_base!(),
    " AND ($8 IS NULL OR (ws.name, a.name, w.name) > \
          (CAST($8 AS TEXT), CAST($9 AS TEXT), CAST($10 AS TEXT))) \
     GROUP BY ws.name, a.name, w.name ORDER BY ws.name, a.name, w.name LIMIT $11"
);

/// Targets with host counts; `$8`..`$12` cursor, `$13` limit.
pub(crate) const TARGET_LIST_SQL: &str = concat!(
    "SELECT ws.name, a.name, w.name, e.name, t.name, \
       (SELECT COUNT(*) FROM observed_deployments o WHERE o.target_id = t.id)",
    catalog_base!(),
    " AND ($8 IS NULL OR (ws.name, a.name, w.name, e.name, t.name) > \
          (CAST($8 AS TEXT), CAST($9 AS TEXT), CAST($10 AS TEXT), CAST($11 AS TEXT), CAST($12 AS TEXT))) \
     ORDER BY ws.name, a.name, w.name, e.name, t.name LIMIT $13"
);

/// What a catalog listing lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogKind {
    Environments,
    Applications,
    Workloads,
    Targets,
}

impl CatalogKind {
    /// How many names make a row's key (and its cursor).
    pub fn key_len(self) -> usize {
        match self {
            Self::Environments => 1,
            Self::Applications => 2,
            Self::Workloads => 3,
            Self::Targets => 5,
        }
    }
}

/// A catalog row: its names (the key, outermost first) and its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogRow {
    pub names: Vec<String>,
    pub counts: Vec<i64>,
}

/// Inherent report reads of a store whose pool field is `$pool`, reading
/// targets with [`read::TARGETS_SQL`] and the host counts of
/// [`DEPLOYED_SQL`]; the `HubStore` impls delegate to them.
///
/// [`read::TARGETS_SQL`]: super::read::TARGETS_SQL
macro_rules! report_reads {
    ($pool:ident, $range:expr) => {
        pub(crate) async fn read_summaries(
            &self,
            tenant: &str,
            filter: &$crate::store::StateQuery,
        ) -> Result<Vec<sextant_model::TargetSummary>, $crate::store::StoreError> {
            use $crate::store::read::{self, bind_filter, bind_opt_range, bind_source};
            use $crate::store::reports;
            let range = filter.workloads.as_ref();
            // Each statement has a twin for a page of workloads (its range
            // bound last) and, for the host counts, one for a source filter.
            let pick = |all: &'static str, page: [&'static str; 2]| match range {
                None => all,
                Some(_) => page[$range],
            };
            let targets = bind_opt_range!(
                bind_source!(
                    bind_filter!(
                        sqlx::query_as(pick(read::TARGETS_SQL, read::TARGETS_RANGE_SQL)),
                        tenant,
                        filter
                    ),
                    filter
                ),
                range
            )
            .fetch_all(&self.$pool);
            let groups = {
                let sql = if filter.source.is_empty() {
                    pick(reports::DEPLOYED_SQL, reports::DEPLOYED_RANGE_SQL)
                } else {
                    pick(
                        reports::DEPLOYED_BY_SOURCE_SQL,
                        reports::DEPLOYED_BY_SOURCE_RANGE_SQL,
                    )
                };
                let q = bind_filter!(sqlx::query_as(sql), tenant, filter);
                let q = if filter.source.is_empty() {
                    q
                } else {
                    bind_source!(q, filter)
                };
                bind_opt_range!(q, range).fetch_all(&self.$pool)
            };
            let sources = bind_opt_range!(
                bind_source!(
                    bind_filter!(
                        sqlx::query_as(pick(reports::SOURCES_SQL, reports::SOURCES_RANGE_SQL)),
                        tenant,
                        filter
                    ),
                    filter
                ),
                range
            )
            .fetch_all(&self.$pool);
            // On PostgreSQL the three reads run at once, each on its own
            // pooled connection; SQLite's reads compete for the same cores
            // as the hub (run at once, a rollout took twice as long).
            let (targets, groups, sources): (
                Vec<read::TargetRow>,
                Vec<reports::DeployedRow>,
                Vec<reports::SourceRow>,
            ) = if $range == read::RANGE_PG {
                futures::try_join!(targets, groups, sources)?
            } else {
                (targets.await?, groups.await?, sources.await?)
            };
            Ok(reports::summaries(targets, groups, sources))
        }

        pub(crate) async fn read_environment_exists(
            &self,
            tenant: &str,
            environment: &str,
        ) -> Result<bool, $crate::store::StoreError> {
            let found: Option<i64> =
                sqlx::query_scalar($crate::store::reports::ENVIRONMENT_EXISTS_SQL)
                    .bind(tenant.to_owned())
                    .bind(environment.to_owned())
                    .fetch_optional(&self.$pool)
                    .await?;
            Ok(found.is_some())
        }

        pub(crate) async fn read_workload_page(
            &self,
            tenant: &str,
            filter: &$crate::store::StateQuery,
            after: Option<&$crate::store::WorkloadKey>,
            limit: u32,
        ) -> Result<Vec<($crate::store::WorkloadKey, u64)>, $crate::store::StoreError> {
            use $crate::store::reports;
            let (a1, a2, a3) = match after {
                Some((a, b, c)) => (Some(a.clone()), Some(b.clone()), Some(c.clone())),
                None => (None, None, None),
            };
            let rows: Vec<(String, String, String, i64)> =
                sqlx::query_as(reports::WORKLOAD_PAGE_SQL)
                    .bind(tenant.to_owned())
                    .bind(filter.workspace.clone())
                    .bind(filter.application.clone())
                    .bind(filter.workload.clone())
                    .bind(a1)
                    .bind(a2)
                    .bind(a3)
                    .bind(i64::from(limit))
                    .bind(filter.environment.clone())
                    .fetch_all(&self.$pool)
                    .await?;
            Ok(rows
                .into_iter()
                .map(|(ws, a, w, n)| ((ws, a, w), u64::try_from(n).unwrap_or(0)))
                .collect())
        }

        pub(crate) async fn read_current(
            &self,
            tenant: &str,
            query: &$crate::store::CurrentQuery,
        ) -> Result<
            Vec<(sextant_model::HostDeployment, $crate::store::CurrentCursor)>,
            $crate::store::StoreError,
        > {
            use $crate::store::read::{bind_filter, bind_source};
            use $crate::store::reports;
            let (host, target, reconciler) = match &query.after {
                Some((h, t, r)) => (Some(h.clone()), Some(*t), Some(r.clone())),
                None => (None, None, None),
            };
            let rows: Vec<reports::CurrentRow> = if query.drift_only {
                bind_source!(
                    bind_filter!(
                        sqlx::query_as($crate::store::drift::DRIFT_SQL),
                        tenant,
                        &query.filter
                    )
                    .bind(query.host.clone())
                    .bind(query.stale_before.0)
                    .bind(host)
                    .bind(target)
                    .bind(reconciler)
                    .bind(i64::from(query.limit)),
                    &query.filter
                )
                .fetch_all(&self.$pool)
                .await?
            } else {
                bind_source!(
                    bind_filter!(sqlx::query_as(reports::CURRENT_SQL), tenant, &query.filter)
                        .bind(query.host.clone())
                        .bind(host)
                        .bind(target)
                        .bind(reconciler)
                        .bind(i64::from(query.limit)),
                    &query.filter
                )
                .fetch_all(&self.$pool)
                .await?
            };
            let rows = reports::host_deployments(rows, query.stale_before);
            // A row marked stale under a lower threshold than this read's
            // no longer drifts; the next sweep unmarks it (store/drift.rs).
            Ok(if query.drift_only {
                rows.into_iter()
                    .filter(|(d, _)| !d.drift.is_empty())
                    .collect()
            } else {
                rows
            })
        }

        pub(crate) async fn read_drift_summary(
            &self,
            tenant: &str,
            filter: &$crate::store::StateQuery,
            stale_before: sextant_model::UnixNanos,
        ) -> Result<Vec<$crate::store::DriftSummary>, $crate::store::StoreError> {
            use $crate::store::drift;
            use $crate::store::read::{bind_filter, bind_opt_range, bind_source};
            let range = filter.workloads.as_ref();
            let rows: Vec<drift::DriftSummaryRow> = if filter.source.is_empty() {
                let sql = match range {
                    None => drift::DRIFT_SUMMARY_SQL,
                    Some(_) => drift::DRIFT_SUMMARY_RANGE_SQL[$range],
                };
                bind_opt_range!(
                    bind_filter!(sqlx::query_as(sql), tenant, filter).bind(stale_before.0),
                    range
                )
                .fetch_all(&self.$pool)
                .await?
            } else {
                // The tenant's drifting rows are read either way
                // (docs/performance.md); a page keeps its workloads.
                let rows: Vec<drift::DriftSummaryRow> = bind_source!(
                    bind_filter!(
                        sqlx::query_as(drift::DRIFT_SUMMARY_BY_SOURCE_SQL),
                        tenant,
                        filter
                    )
                    .bind(stale_before.0),
                    filter
                )
                .fetch_all(&self.$pool)
                .await?;
                rows.into_iter()
                    .filter(|(ws, a, w, ..)| {
                        range.is_none_or(|r| r.contains(&(ws.clone(), a.clone(), w.clone())))
                    })
                    .collect()
            };
            Ok(rows.into_iter().map(Into::into).collect())
        }

        pub(crate) async fn read_history(
            &self,
            tenant: &str,
            query: &$crate::store::HistoryQuery,
        ) -> Result<
            Vec<(sextant_model::HistoryEntry, $crate::store::HistoryCursor)>,
            $crate::store::StoreError,
        > {
            use $crate::store::read::{bind_filter, bind_source};
            use $crate::store::reports;
            let (at, key) = match query.after {
                Some((a, k)) => (Some(a), Some(k)),
                None => (None, None),
            };
            let rows: Vec<reports::HistoryRow> = bind_source!(
                bind_filter!(sqlx::query_as(reports::HISTORY_SQL), tenant, &query.filter)
                    .bind(query.host.clone())
                    .bind(query.since.map(|t| t.0))
                    .bind(query.until.map(|t| t.0))
                    .bind(at)
                    .bind(key)
                    .bind(i64::from(query.limit)),
                &query.filter
            )
            .fetch_all(&self.$pool)
            .await?;
            Ok(reports::history(rows))
        }

        pub(crate) async fn read_catalog(
            &self,
            tenant: &str,
            kind: $crate::store::CatalogKind,
            query: &$crate::store::CatalogQuery,
        ) -> Result<Vec<$crate::store::CatalogRow>, $crate::store::StoreError> {
            use $crate::store::read::bind_filter;
            use $crate::store::reports::{self, CatalogKind, CatalogRow};
            let after = |i: usize| query.after.as_ref().and_then(|a| a.get(i).cloned());
            let limit = i64::from(query.limit);
            let f = &query.filter;
            let row = |names: Vec<String>, counts: Vec<i64>| CatalogRow { names, counts };
            Ok(match kind {
                CatalogKind::Environments => {
                    let rows: Vec<(String, i64, i64)> =
                        bind_filter!(sqlx::query_as(reports::ENVIRONMENT_LIST_SQL), tenant, f)
                            .bind(query.host.clone())
                            .fetch_all(&self.$pool)
                            .await?;
                    rows.into_iter()
                        .map(|(e, t, h)| row(vec![e], vec![t, h]))
                        .collect()
                }
                CatalogKind::Applications => {
                    let rows: Vec<(String, String, i64)> =
                        bind_filter!(sqlx::query_as(reports::APPLICATION_LIST_SQL), tenant, f)
                            .bind(query.host.clone())
                            .bind(after(0))
                            .bind(after(1))
                            .bind(limit)
                            .fetch_all(&self.$pool)
                            .await?;
                    rows.into_iter()
                        .map(|(ws, a, n)| row(vec![ws, a], vec![n]))
                        .collect()
                }
                CatalogKind::Workloads => {
                    let rows: Vec<(String, String, String, i64, i64)> =
                        bind_filter!(sqlx::query_as(reports::WORKLOAD_LIST_SQL), tenant, f)
                            .bind(query.host.clone())
                            .bind(after(0))
                            .bind(after(1))
                            .bind(after(2))
                            .bind(limit)
                            .fetch_all(&self.$pool)
                            .await?;
                    rows.into_iter()
                        .map(|(ws, a, w, e, t)| row(vec![ws, a, w], vec![e, t]))
                        .collect()
                }
                CatalogKind::Targets => {
                    let rows: Vec<(String, String, String, String, String, i64)> =
                        bind_filter!(sqlx::query_as(reports::TARGET_LIST_SQL), tenant, f)
                            .bind(query.host.clone())
                            .bind(after(0))
                            .bind(after(1))
                            .bind(after(2))
                            .bind(after(3))
                            .bind(after(4))
                            .bind(limit)
                            .fetch_all(&self.$pool)
                            .await?;
                    rows.into_iter()
                        .map(|(ws, a, w, e, t, h)| row(vec![ws, a, w, e, t], vec![h]))
                        .collect()
                }
            })
        }
    };
}
pub(crate) use report_reads;
