//! The reads that plan a page of workloads (compare, the UI matrix): the
//! workloads in name order with their target counts, and whether an
//! environment exists.

use crate::store::pool::{Statement, StorePool};
use crate::store::{StateQuery, StoreError, WorkloadKey};

/// See [`crate::store::HubStore::environment_exists`].
pub(crate) async fn environment_exists(
    reader: StorePool<'_>,
    tenant: &str,
    environment: &str,
) -> Result<bool, StoreError> {
    let found: Option<(i64,)> = reader
        .fetch_optional(
            Statement::new(ENVIRONMENT_EXISTS_SQL)
                .text(tenant.to_owned())
                .text(environment.to_owned()),
        )
        .await?;
    Ok(found.is_some())
}

/// See [`crate::store::HubStore::workload_page`].
pub(crate) async fn workload_page(
    reader: StorePool<'_>,
    tenant: &str,
    filter: &StateQuery,
    after: Option<&WorkloadKey>,
    limit: u32,
) -> Result<Vec<(WorkloadKey, u64)>, StoreError> {
    let (a1, a2, a3) = match after {
        Some((a, b, c)) => (Some(a.clone()), Some(b.clone()), Some(c.clone())),
        None => (None, None, None),
    };
    let rows: Vec<(String, String, String, i64)> = reader
        .fetch_all(
            Statement::new(WORKLOAD_PAGE_SQL)
                .text(tenant.to_owned())
                .text(filter.workspace.clone())
                .text(filter.application.clone())
                .text(filter.workload.clone())
                .text(a1)
                .text(a2)
                .text(a3)
                .int(i64::from(limit))
                .text(filter.environment.clone()),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|(ws, a, w, n)| ((ws, a, w), u64::try_from(n).unwrap_or(0)))
        .collect())
}

/// A target of environment `$2` of tenant `$1`, if there is one.
const ENVIRONMENT_EXISTS_SQL: &str = "SELECT t.id FROM deployment_targets t \
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
const WORKLOAD_PAGE_SQL: &str = concat!(
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
