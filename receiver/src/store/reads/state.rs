//! The state read: the filtered targets, each with its desired state and
//! its hosts' current rows.

use std::collections::HashMap;

use sextant_model::{
    DeploymentStatus, DesiredOrigin, DesiredView, HostView, TargetState, UnixNanos,
};

use crate::store::pool::{PerBackend, Statement, StorePool};
use crate::store::sql::{
    latest_assignment_join, newest_version_join, origin_columns, parse_source, reported_by_source,
    source_where, target_joins, target_where, workload_range,
};
use crate::store::{StateQuery, StoreError};

/// The columns of a host's current row, named as [`HostColumns`] reads
/// them: host `$host`, reconciler `$reconciler` (row `r`), the source,
/// current row `o`'s revision, status, message and time, and `vv`, the
/// version of its revision ([`newest_version_join`]).
macro_rules! host_columns {
    ($host:literal, $reconciler:literal) => {
        concat!(
            $host,
            " AS host, ",
            $reconciler,
            " AS reconciler, ",
            $crate::store::sql::source_of!("r"),
            " AS source, o.revision AS revision, o.status AS status, o.message AS message, \
               o.observed_at AS observed_at, vv.version AS version"
        )
    };
}
pub(crate) use host_columns;

/// See [`crate::store::HubStore::state`]: the targets, then (when there
/// are any) their current rows.
pub(crate) async fn state(
    reader: StorePool<'_>,
    tenant: &str,
    query: &StateQuery,
) -> Result<Vec<TargetState>, StoreError> {
    // Both statements take the target filter, then the source filter.
    let filtered = |sql| {
        Statement::new(sql)
            .filter(tenant, query)
            .source(&query.source)
    };
    let targets: Vec<TargetRow> = reader.fetch_all(filtered(TARGETS_SQL)).await?;
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let hosts: Vec<HostRow> = reader.fetch_all(filtered(HOSTS_SQL)).await?;
    Ok(assemble(targets, hosts))
}

/// Targets with their latest desired assignment (kept on the target by
/// migration 0008/0007's trigger); with a source filter (`$7`, `$8`), only
/// those it leaves a current row of; `$extra` more conditions.
macro_rules! targets_sql {
    ($extra:expr) => {
        concat!(
            "SELECT t.id AS id, ws.name AS workspace, a.name AS application, w.name AS workload, \
               e.name AS environment, t.name AS target, v.version AS version, \
               t.desired_revision AS revision, t.desired_at AS at, ",
            origin_columns!("da"),
            " FROM deployment_targets t",
            target_joins!(),
            " LEFT JOIN workload_versions v ON v.id = t.desired_version_id",
            latest_assignment_join!(),
            target_where!(),
            reported_by_source!(),
            $extra,
            " ORDER BY ws.name, a.name, w.name, e.name, t.name"
        )
    };
}

/// [`targets_sql`] of every filtered target.
pub(crate) const TARGETS_SQL: &str = targets_sql!("");

/// [`TARGETS_SQL`] of the workloads in a range (`$9`..`$14`).
pub(crate) const TARGETS_RANGE_SQL: PerBackend = PerBackend {
    sqlite: targets_sql!(workload_range!(
        lite, "t", "$9", "$10", "$11", "$12", "$13", "$14"
    )),
    postgres: targets_sql!(workload_range!(
        pg, "t", "$9", "$10", "$11", "$12", "$13", "$14"
    )),
};

/// A row of [`TARGETS_SQL`]: target id, its names, its desired version,
/// revision, time and origin.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TargetRow {
    pub(crate) id: i64,
    pub(crate) workspace: String,
    pub(crate) application: String,
    pub(crate) workload: String,
    pub(crate) environment: String,
    pub(crate) target: String,
    version: Option<String>,
    revision: Option<String>,
    at: Option<i64>,
    #[sqlx(flatten)]
    origin: OriginColumns,
}

impl TargetRow {
    /// The target's desired state.
    pub(crate) fn desired(&mut self) -> Option<DesiredView> {
        desired_view(
            self.version.take(),
            self.revision.take(),
            self.at,
            std::mem::take(&mut self.origin),
        )
    }
}

/// Current observed rows of the filtered targets, with the version a desired
/// event named for their revision; `$7`, `$8` the source filter.
pub(crate) const HOSTS_SQL: &str = concat!(
    "SELECT o.target_id AS target_id, ",
    host_columns!("h.name", "r.name"),
    " FROM deployment_targets t",
    target_joins!(),
    " JOIN observed_deployments o ON o.target_id = t.id \
      JOIN hosts h ON h.id = o.host_id \
      JOIN reconcilers r ON r.id = o.reconciler_id",
    newest_version_join!("o.revision"),
    target_where!(),
    source_where!("r", "$7", "$8"),
    " ORDER BY h.name, r.name"
);

/// A row of [`HOSTS_SQL`], by column name.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct HostRow {
    target_id: i64,
    #[sqlx(flatten)]
    host: HostColumns,
}

/// Builds the state view from the two reads.
pub(crate) fn assemble(targets: Vec<TargetRow>, hosts: Vec<HostRow>) -> Vec<TargetState> {
    let mut index = HashMap::with_capacity(targets.len());
    let mut states: Vec<TargetState> = targets
        .into_iter()
        .enumerate()
        .map(|(i, mut row)| {
            index.insert(row.id, i);
            let desired = row.desired();
            TargetState {
                workspace: row.workspace,
                application: row.application,
                workload: row.workload,
                environment: row.environment,
                target: row.target,
                desired,
                hosts: Vec::new(),
            }
        })
        .collect();
    for HostRow { target_id, host } in hosts {
        let Some(&i) = index.get(&target_id) else {
            continue;
        };
        let Some(view) = host.view() else {
            continue;
        };
        let state = &mut states[i];
        state.hosts.push(view.with_sync(state.desired.as_ref()));
    }
    states
}

/// A host's current row as [`host_columns`] selects it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct HostColumns {
    host: String,
    reconciler: String,
    source: String,
    revision: String,
    status: String,
    message: Option<String>,
    observed_at: i64,
    version: Option<String>,
}

impl HostColumns {
    /// The host view of the row (not yet measured against desired state);
    /// `None` when its status does not parse.
    pub(crate) fn view(self) -> Option<HostView> {
        Some(HostView {
            host: self.host,
            reconciler: Some(self.reconciler).filter(|r| !r.is_empty()),
            source: parse_source(&self.source),
            revision: self.revision,
            version: self.version,
            status: self.status.parse::<DeploymentStatus>().ok()?,
            message: self.message,
            observed_at: UnixNanos(self.observed_at),
            in_sync: false,
        })
    }
}

/// A target's desired state, from its three nullable columns and the
/// origin of its latest assignment.
pub(crate) fn desired_view(
    version: Option<String>,
    revision: Option<String>,
    at: Option<i64>,
    origin: OriginColumns,
) -> Option<DesiredView> {
    match (version, revision, at) {
        (Some(version), Some(revision), Some(at)) => Some(DesiredView {
            version,
            revision,
            at: UnixNanos(at),
            origin: origin.view(),
        }),
        _ => None,
    }
}

/// A desired assignment's origin as [`crate::store::sql::origin_columns`]
/// selects it.
#[derive(Debug, Default, sqlx::FromRow)]
pub(crate) struct OriginColumns {
    origin_promotion: Option<String>,
    origin_job: Option<String>,
    origin_approved_by: Option<String>,
    origin_trace_id: Option<String>,
    origin_span_id: Option<String>,
    origin_service: Option<String>,
}

impl OriginColumns {
    /// The job alone (an observed change's, in history).
    pub(crate) fn job(self) -> Option<String> {
        self.origin_job
    }

    /// The origin, when the assignment's sender said anything of it.
    pub(crate) fn view(self) -> Option<DesiredOrigin> {
        DesiredOrigin {
            promotion: self.origin_promotion,
            job: self.origin_job,
            approved_by: self.origin_approved_by,
            trace_id: self.origin_trace_id,
            span_id: self.origin_span_id,
            service: self.origin_service,
            ..DesiredOrigin::default()
        }
        .known()
    }
}
