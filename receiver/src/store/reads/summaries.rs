//! Environment state: per filtered target, its desired version and its
//! hosts grouped by (revision, status), with who reported them. Read from
//! the host counters, so a target costs a few rows whatever its hosts.

use std::collections::HashMap;

use sextant_model::report::SourceHosts;
use sextant_model::{DeployedGroup, DeploymentStatus, TargetRef, TargetSummary};

use super::state::{TARGETS_RANGE_SQL, TARGETS_SQL, TargetRow};
use crate::store::pool::{PerBackend, Statement, StorePool};
use crate::store::sql::{
    parse_source, source_of, source_where, target_joins, target_where, version_of_revision,
    workload_range,
};
use crate::store::{StateQuery, StoreError};

/// See [`crate::store::HubStore::summaries`]: the targets, their host
/// counts and their reporters, three reads.
pub(crate) async fn summaries(
    reader: StorePool<'_>,
    tenant: &str,
    filter: &StateQuery,
) -> Result<Vec<TargetSummary>, StoreError> {
    let range = filter.workloads.as_ref();
    // Each statement has a twin for a page of workloads (its range bound
    // last) and, for the host counts, one for a source filter.
    let pick = |all: &'static str, page: &PerBackend| match range {
        None => all,
        Some(_) => reader.pick(page),
    };
    let targets = reader.fetch_all::<TargetRow>(
        Statement::new(pick(TARGETS_SQL, &TARGETS_RANGE_SQL))
            .filter(tenant, filter)
            .source(&filter.source)
            .range(range),
    );
    let counted = if filter.source.is_empty() {
        Statement::new(pick(DEPLOYED_SQL, &DEPLOYED_RANGE_SQL)).filter(tenant, filter)
    } else {
        Statement::new(pick(DEPLOYED_BY_SOURCE_SQL, &DEPLOYED_BY_SOURCE_RANGE_SQL))
            .filter(tenant, filter)
            .source(&filter.source)
    };
    let groups = reader.fetch_all::<DeployedRow>(counted.range(range));
    let sources = reader.fetch_all::<SourceRow>(
        Statement::new(pick(SOURCES_SQL, &SOURCES_RANGE_SQL))
            .filter(tenant, filter)
            .source(&filter.source)
            .range(range),
    );
    // On PostgreSQL the three reads run at once, each on its own pooled
    // connection; SQLite's reads compete for the same cores as the hub
    // (run at once, a rollout took twice as long).
    let (targets, groups, sources) = if reader.is_postgres() {
        futures::try_join!(targets, groups, sources)?
    } else {
        (targets.await?, groups.await?, sources.await?)
    };
    Ok(assemble(targets, groups, sources))
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
const DEPLOYED_SQL: &str = deployed_sql!("");

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
const DEPLOYED_RANGE_SQL: PerBackend = PerBackend {
    sqlite: deployed_sql!(workload_range!(
        lite, "t", "$7", "$8", "$9", "$10", "$11", "$12"
    )),
    postgres: deployed_sql!(
        "v.version",
        concat!(
            lateral_counts!("deployed_counts", "c.revision, c.status, c.hosts"),
            lateral_version!()
        ),
        workload_range!(pg, "t", "$7", "$8", "$9", "$10", "$11", "$12")
    ),
};

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
const DEPLOYED_BY_SOURCE_SQL: &str = deployed_by_source_sql!("");

/// [`DEPLOYED_BY_SOURCE_SQL`] of the workloads in a range (`$9`..`$14`).
const DEPLOYED_BY_SOURCE_RANGE_SQL: PerBackend = PerBackend {
    sqlite: deployed_by_source_sql!(workload_range!(
        lite, "t", "$9", "$10", "$11", "$12", "$13", "$14"
    )),
    postgres: deployed_by_source_sql!(workload_range!(
        pg, "t", "$9", "$10", "$11", "$12", "$13", "$14"
    )),
};

/// A row of [`DEPLOYED_SQL`]: target id, revision, status, hosts, version.
type DeployedRow = (i64, String, String, i64, Option<String>);

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
const SOURCES_SQL: &str = sources_sql!("");

/// [`SOURCES_SQL`] of the workloads in a range (`$9`..`$14`), the counters
/// read as in [`DEPLOYED_RANGE_SQL`].
const SOURCES_RANGE_SQL: PerBackend = PerBackend {
    sqlite: sources_sql!(workload_range!(
        lite, "t", "$9", "$10", "$11", "$12", "$13", "$14"
    )),
    postgres: sources_sql!(
        lateral_counts!("reporter_counts", "c.reconciler_id, c.hosts"),
        workload_range!(pg, "t", "$9", "$10", "$11", "$12", "$13", "$14")
    ),
};

/// A row of [`SOURCES_SQL`]: target id, reconciler, source, hosts.
type SourceRow = (i64, String, String, i64);

/// Builds environment-state summaries from the targets, their groups and
/// their reporters.
fn assemble(
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
        .map(|mut row| {
            let desired = row.desired();
            TargetSummary::new(
                TargetRef {
                    workspace: row.workspace,
                    application: row.application,
                    workload: row.workload,
                    environment: row.environment,
                    target: row.target,
                },
                desired,
                by_target.remove(&row.id).unwrap_or_default(),
            )
            .with_sources(reporters.remove(&row.id).unwrap_or_default())
        })
        .collect()
}
