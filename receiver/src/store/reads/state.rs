//! The state read: the filtered targets, each with its desired state and
//! its hosts' current rows.

use std::collections::HashMap;

use sextant_model::{DeploymentStatus, DesiredView, HostView, TargetState, UnixNanos};

use crate::store::pool::{PerBackend, Statement, StorePool};
use crate::store::sql::{
    newest_version_join, parse_source, reported_by_source, source_of, source_where, target_joins,
    target_where, workload_range,
};
use crate::store::{StateQuery, StoreError};

/// See [`crate::store::HubStore::state`]: the targets, then (when there
/// are any) their current rows.
pub(crate) async fn state(
    reader: StorePool<'_>,
    tenant: &str,
    query: &StateQuery,
) -> Result<Vec<TargetState>, StoreError> {
    let targets: Vec<TargetRow> = reader
        .fetch_all(
            Statement::new(TARGETS_SQL)
                .filter(tenant, query)
                .source(&query.source),
        )
        .await?;
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let hosts: Vec<HostRow> = reader
        .fetch_all(
            Statement::new(HOSTS_SQL)
                .filter(tenant, query)
                .source(&query.source),
        )
        .await?;
    Ok(assemble(targets, hosts))
}

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
/// revision and time.
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

/// A row of [`HOSTS_SQL`].
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
                let desired = desired_view(version, revision, at);
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

/// A target's desired state, from its three nullable columns.
pub(crate) fn desired_view(
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
