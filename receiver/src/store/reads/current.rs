//! Current rows measured against desired state, one page in (host,
//! target, reconciler) order: the host view, and with `drift_only` the
//! drift list (whose keys come from the drift set, `reads/drift.rs`).

use sextant_model::{DeploymentStatus, HostDeployment, TargetRef, UnixNanos};

use super::drift::DRIFT_SQL;
use super::state::{OriginColumns, desired_view};
use crate::store::pool::{Statement, StorePool};
use crate::store::sql::{
    current_columns, latest_assignment_join, parse_source, source_where, target_where,
};
use crate::store::{CurrentQuery, StoreError};

/// See [`crate::store::HubStore::current`].
pub(crate) async fn current(
    reader: StorePool<'_>,
    tenant: &str,
    query: &CurrentQuery,
) -> Result<Vec<(HostDeployment, CurrentCursor)>, StoreError> {
    let (host, target, reconciler) = match &query.after {
        Some((h, t, r)) => (Some(h.clone()), Some(*t), Some(r.clone())),
        None => (None, None, None),
    };
    let statement = if query.drift_only {
        Statement::new(DRIFT_SQL)
            .filter(tenant, &query.filter)
            .text(query.host.clone())
            .int(query.stale_before.0)
    } else {
        Statement::new(CURRENT_SQL)
            .filter(tenant, &query.filter)
            .text(query.host.clone())
    };
    let statement = statement
        .text(host)
        .int(target)
        .text(reconciler)
        .int(i64::from(query.limit))
        .source(&query.filter.source);
    let rows = host_deployments(reader.fetch_all(statement).await?, query.stale_before);
    // A row marked stale under a lower threshold than this read's no
    // longer drifts; the next sweep unmarks it (store/drift.rs).
    Ok(if query.drift_only {
        rows.into_iter()
            .filter(|(d, _)| !d.drift.is_empty())
            .collect()
    } else {
        rows
    })
}

/// Current rows with their target's latest desired assignment, host first
/// (a host's rows are one index range of `observed_deployments`). After the
/// filter parameters: `$7` host, `$8`..`$10` cursor (host name, target id,
/// reconciler name; exclusive), `$11` limit, `$12`, `$13` the source
/// filter. The drift list reads [`super::drift::DRIFT_SQL`] instead.
const CURRENT_SQL: &str = concat!(
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
    latest_assignment_join!(),
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
    #[sqlx(flatten)]
    origin: OriginColumns,
}

/// Where a page of current rows ended: (host, target id, reconciler name).
pub type CurrentCursor = (String, i64, String);

/// Builds measured host deployments; returns them with each row's cursor.
fn host_deployments(
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
                 origin,
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
                    desired: desired_view(version, desired_revision, assigned_at, origin),
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
