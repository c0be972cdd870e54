//! The hub's gauges: drifting and stale hosts per (tenant, environment),
//! over every tenant.

use std::collections::BTreeMap;

use crate::store::pool::{Statement, StorePool};
use crate::store::{DriftCounts, StoreError};

/// See [`crate::store::HubStore::drift_counts`].
pub(crate) async fn drift_counts(
    reader: StorePool<'_>,
    stale_before: i64,
) -> Result<Vec<DriftCounts>, StoreError> {
    let drift: Vec<DriftCountRow> = reader.fetch_all(Statement::new(DRIFT_COUNTS_SQL)).await?;
    let stale: Vec<(String, String, i64)> = reader
        .fetch_all(Statement::new(STALE_COUNTS_SQL).int(stale_before))
        .await?;
    Ok(merge(drift, stale))
}

/// Drifting hosts per (tenant, environment), from the host counters and
/// each target's desired revision: on a target with no desired state; on
/// another revision than the desired one; failed on the desired one. A few
/// rows per target. Feeds `sextant_hub_drift_hosts`.
const DRIFT_COUNTS_SQL: &str = "SELECT tn.name, e.name, \
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

/// A row of [`DRIFT_COUNTS_SQL`].
type DriftCountRow = (String, String, i64, i64, i64);

/// Hosts per (tenant, environment) whose newest report there is older than
/// `$1` (Unix nanoseconds), from sources that report on a schedule (Argo
/// CD's rows are never stale: `Source::reports_periodically`). The
/// candidates are the rows observed before `$1`, found on the stale index
/// (migration 0008/0007) rather than by reading every current row; each
/// candidate host is then checked for a newer row in the environment.
/// Feeds `sextant_hub_stale_hosts` (the metrics handler caches it).
const STALE_COUNTS_SQL: &str = "SELECT tn.name, e.name, COUNT(*) FROM ( \
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

/// Merges the two count queries into [`DriftCounts`] rows.
fn merge(drift: Vec<DriftCountRow>, stale: Vec<(String, String, i64)>) -> Vec<DriftCounts> {
    let mut by_env: BTreeMap<(String, String), DriftCounts> = BTreeMap::new();
    for (tenant, environment, no_desired, wrong_revision, failed) in drift {
        let e = by_env
            .entry((tenant.clone(), environment.clone()))
            .or_insert(DriftCounts {
                tenant,
                environment,
                ..DriftCounts::default()
            });
        e.no_desired = no_desired;
        e.wrong_revision = wrong_revision;
        e.failed = failed;
    }
    for (tenant, environment, hosts) in stale {
        by_env
            .entry((tenant.clone(), environment.clone()))
            .or_insert(DriftCounts {
                tenant,
                environment,
                ..DriftCounts::default()
            })
            .stale_hosts = hosts;
    }
    by_env.into_values().collect()
}
