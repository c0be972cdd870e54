//! The DORA gauges (`docs/insights.md`): every tenant's deployments of the
//! derived `deployments` table (`store/deployments/`) that started in the
//! trailing window, with their lead time's start from `revision_times`
//! (none for a rollback, which delivers no new change), turned into groups
//! by `sextant_model::dora`. A report of the API and the UI comes from the
//! in-memory index instead (`store/dora_index.rs`).

use std::collections::{HashMap, HashSet};

use sextant_model::DoraGroup;
use sextant_model::dora::{self, DeploymentFacts, GroupKey};

use crate::store::StoreError;
use crate::store::pool::{Statement, StorePool};

/// The columns read: integers only, the group's names read once per
/// workload and environment by [`WORKLOAD_NAMES_SQL`] and
/// [`ENVIRONMENT_NAMES_SQL`] (four strings a row cost more than the row).
macro_rules! dora_columns {
    () => {
        "t.workload_id AS workload_id, t.environment_id AS environment_id, \
         d.target_id AS target_id, d.started_at AS started_at, \
         d.first_succeeded_at AS first_succeeded_at, d.failed_at AS failed_at, \
         d.first_failed_at AS failure_reported_at, \
         d.rework AS rework, \
         CASE WHEN d.rollback = 0 THEN COALESCE(rt.committed_at, rt.first_seen_at) END AS lead_start"
    };
}

/// Every tenant's deployments that started in the window (`$1`, `$2`),
/// for the hub's gauges, by tenant, then by target in start order.
const DORA_ALL_SQL: &str = concat!(
    "SELECT tn.name AS tenant, ",
    dora_columns!(),
    " FROM deployments d JOIN deployment_targets t ON t.id = d.target_id \
     JOIN tenants tn ON tn.id = t.tenant_id \
     LEFT JOIN revision_times rt ON rt.workload_id = d.workload_id AND rt.revision = d.revision \
     WHERE d.baseline = 0 AND d.started_at >= $1 AND d.started_at <= $2 \
     ORDER BY tn.name, d.target_id, d.started_at, d.start_host_id, d.start_reconciler_id, \
       d.start_history_id"
);

/// Every workload's names (workspace, application, workload) and every
/// environment's name: what the rows' ids stand for. Catalog-sized.
const WORKLOAD_NAMES_SQL: &str = "SELECT w.id, ws.name, a.name, w.name FROM workloads w \
     JOIN applications a ON a.id = w.application_id \
     JOIN workspaces ws ON ws.id = a.workspace_id";
const ENVIRONMENT_NAMES_SQL: &str = "SELECT id, name FROM environments";

/// One row of [`DORA_ALL_SQL`].
#[derive(Debug, sqlx::FromRow)]
struct DoraRow {
    workload_id: i64,
    environment_id: i64,
    target_id: i64,
    started_at: i64,
    first_succeeded_at: Option<i64>,
    failed_at: Option<i64>,
    failure_reported_at: Option<i64>,
    rework: i64,
    lead_start: Option<i64>,
}

/// One row of [`DORA_ALL_SQL`].
#[derive(Debug, sqlx::FromRow)]
struct TenantRow {
    tenant: String,
    #[sqlx(flatten)]
    row: DoraRow,
}

/// The names of workloads and environments, by id.
#[derive(Default)]
struct Names {
    workloads: HashMap<i64, (String, String, String)>,
    environments: HashMap<i64, String>,
}

impl Names {
    async fn read(reader: StorePool<'_>) -> Result<Self, StoreError> {
        let workloads: Vec<(i64, String, String, String)> =
            reader.fetch_all(Statement::new(WORKLOAD_NAMES_SQL)).await?;
        let environments: Vec<(i64, String)> = reader
            .fetch_all(Statement::new(ENVIRONMENT_NAMES_SQL))
            .await?;
        Ok(Self {
            workloads: workloads
                .into_iter()
                .map(|(id, ws, a, w)| (id, (ws, a, w)))
                .collect(),
            environments: environments.into_iter().collect(),
        })
    }
}

/// Groups and facts of rows, each group numbered as it first appears.
#[derive(Default)]
struct Facts {
    groups: Vec<GroupKey>,
    index: HashMap<(i64, i64), usize>,
    facts: Vec<DeploymentFacts>,
    /// Environments counted together under one name (see
    /// [`EnvironmentBound`]).
    other: Option<(HashSet<i64>, String)>,
}

impl Facts {
    fn push(&mut self, names: &Names, r: DoraRow) {
        let other = self
            .other
            .as_ref()
            .filter(|(past, _)| past.contains(&r.environment_id));
        // Every environment past the bound is one group per workload.
        let ids = (r.workload_id, other.map_or(r.environment_id, |_| -1));
        let group = match self.index.get(&ids) {
            Some(i) => *i,
            None => {
                let (workspace, application, workload) = names
                    .workloads
                    .get(&r.workload_id)
                    .cloned()
                    .unwrap_or_default();
                let environment = match other {
                    Some((_, name)) => name.clone(),
                    None => names
                        .environments
                        .get(&r.environment_id)
                        .cloned()
                        .unwrap_or_default(),
                };
                self.groups
                    .push((workspace, application, workload, environment));
                self.index.insert(ids, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        self.facts.push(DeploymentFacts {
            group,
            target: r.target_id,
            started_at: r.started_at,
            first_succeeded_at: r.first_succeeded_at,
            failed_at: r.failed_at,
            failure_reported_at: r.failure_reported_at,
            rework: r.rework != 0,
            lead_start: r.lead_start,
        });
    }
}

/// See [`crate::store::HubStore::dora_groups`].
pub(crate) async fn dora_groups(
    reader: StorePool<'_>,
    since: i64,
    until: i64,
    bound: &EnvironmentBound<'_>,
) -> Result<Vec<(String, DoraGroup)>, StoreError> {
    let rows: Vec<TenantRow> = reader
        .fetch_all(Statement::new(DORA_ALL_SQL).int(since).int(until))
        .await?;
    let names = Names::read(reader).await?;
    let mut out = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while let Some(first) = rows.next() {
        let tenant = first.tenant;
        let mut tenant_rows = vec![first.row];
        while let Some(next) = rows.next_if(|r| r.tenant == tenant) {
            tenant_rows.push(next.row);
        }
        let mut facts = Facts {
            other: bound.past(&names, &tenant_rows),
            ..Facts::default()
        };
        for r in tenant_rows {
            facts.push(&names, r);
        }
        let report = dora::report(
            since,
            until,
            sextant_model::Bucket::Day,
            &facts.groups,
            &facts.facts,
        );
        out.extend(report.groups.into_iter().map(|g| (tenant.clone(), g)));
    }
    Ok(out)
}

/// At most `max` environments per tenant keep their name on the gauges
/// (the configured ones first, then by name); the deployments of the rest
/// are counted together under `other`, as one environment, so a sender
/// that invents environment names cannot grow the series without bound.
#[derive(Debug, Clone, Copy)]
pub struct EnvironmentBound<'a> {
    pub max: usize,
    pub order: &'a [String],
    pub other: &'a str,
}

impl EnvironmentBound<'_> {
    /// The environment ids of `rows` past the first `max`, with the name
    /// they take.
    fn past(&self, names: &Names, rows: &[DoraRow]) -> Option<(HashSet<i64>, String)> {
        let mut seen: Vec<(i64, &str)> = rows
            .iter()
            .map(|r| r.environment_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .map(|id| {
                let name = names.environments.get(&id).map_or("", String::as_str);
                (id, name)
            })
            .collect();
        if seen.len() <= self.max {
            return None;
        }
        sextant_model::order_environments(&mut seen, |(_, name)| name, self.order);
        let past = seen
            .split_off(self.max)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        Some((past, self.other.to_owned()))
    }
}
