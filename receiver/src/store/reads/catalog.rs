//! The catalog: environments, applications, workloads or targets with
//! their counts, in key order, one page.

use crate::store::pool::{Statement, StorePool};
use crate::store::sql::{target_filter, target_joins, target_where};
use crate::store::{CatalogQuery, StoreError};

/// See [`crate::store::HubStore::catalog`].
pub(crate) async fn catalog(
    reader: StorePool<'_>,
    tenant: &str,
    kind: CatalogKind,
    query: &CatalogQuery,
) -> Result<Vec<CatalogRow>, StoreError> {
    let filtered = |sql: &'static str| {
        Statement::new(sql)
            .filter(tenant, &query.filter)
            .text(query.host.clone())
    };
    // A page starts after the key's names (as many as the kind has) and
    // holds at most `limit` rows; environments are listed whole.
    let page = |sql: &'static str| {
        (0..kind.key_len())
            .fold(filtered(sql), |statement, i| {
                statement.text(query.after.as_ref().and_then(|a| a.get(i).cloned()))
            })
            .int(i64::from(query.limit))
    };
    let row = |names: Vec<String>, counts: Vec<i64>| CatalogRow { names, counts };
    Ok(match kind {
        CatalogKind::Environments => reader
            .fetch_all::<(String, i64, i64)>(filtered(ENVIRONMENT_LIST_SQL))
            .await?
            .into_iter()
            .map(|(e, t, h)| row(vec![e], vec![t, h]))
            .collect(),
        CatalogKind::Applications => reader
            .fetch_all::<(String, String, i64)>(page(APPLICATION_LIST_SQL))
            .await?
            .into_iter()
            .map(|(ws, a, n)| row(vec![ws, a], vec![n]))
            .collect(),
        CatalogKind::Workloads => reader
            .fetch_all::<(String, String, String, i64, i64)>(page(WORKLOAD_LIST_SQL))
            .await?
            .into_iter()
            .map(|(ws, a, w, e, t)| row(vec![ws, a, w], vec![e, t]))
            .collect(),
        CatalogKind::Targets => reader
            .fetch_all::<(String, String, String, String, String, i64)>(page(TARGET_LIST_SQL))
            .await?
            .into_iter()
            .map(|(ws, a, w, e, t, h)| row(vec![ws, a, w, e, t], vec![h]))
            .collect(),
    })
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
const ENVIRONMENT_LIST_SQL: &str = concat!(
    "SELECT e.name, COUNT(DISTINCT t.id), COUNT(DISTINCT o.host_id) \
     FROM deployment_targets t",
    target_joins!(),
    " LEFT JOIN observed_deployments o ON o.target_id = t.id",
    target_where!(),
    reported_by_host!(),
    " GROUP BY e.id, e.name"
);

/// Applications with workload counts; `$8`, `$9` cursor, `$10` limit.
const APPLICATION_LIST_SQL: &str = concat!(
    "SELECT ws.name, a.name, COUNT(DISTINCT w.id)",
    catalog_base!(),
    " AND ($8 IS NULL OR (ws.name, a.name) > (CAST($8 AS TEXT), CAST($9 AS TEXT))) \
     GROUP BY ws.name, a.name ORDER BY ws.name, a.name LIMIT $10"
);

/// Workloads with environment and target counts; `$8`..`$10` cursor,
/// `$11` limit.
const WORKLOAD_LIST_SQL: &str = concat!(
    "SELECT ws.name, a.name, w.name, COUNT(DISTINCT e.id), COUNT(*)",
    catalog_base!(),
    " AND ($8 IS NULL OR (ws.name, a.name, w.name) > \
          (CAST($8 AS TEXT), CAST($9 AS TEXT), CAST($10 AS TEXT))) \
     GROUP BY ws.name, a.name, w.name ORDER BY ws.name, a.name, w.name LIMIT $11"
);

/// Targets with host counts; `$8`..`$12` cursor, `$13` limit.
const TARGET_LIST_SQL: &str = concat!(
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
