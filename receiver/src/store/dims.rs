//! Dimension rows (tenant, workspace, application, …) resolved to ids.
//!
//! Dimension rows are never deleted, so their ids are cached for the life of
//! the store; a miss inserts the row (or finds it) with one upsert, which is
//! safe under concurrent writers and several hub replicas.

use std::collections::HashMap;
use std::sync::Mutex;

/// One dimension row, named within its parent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum DimKey {
    Tenant(String),
    Workspace {
        tenant: i64,
        name: String,
    },
    Application {
        tenant: i64,
        workspace: i64,
        name: String,
    },
    Workload {
        tenant: i64,
        application: i64,
        name: String,
    },
    Environment {
        tenant: i64,
        name: String,
    },
    Target {
        tenant: i64,
        workload: i64,
        environment: i64,
        name: String,
    },
    Host {
        tenant: i64,
        name: String,
    },
    Reconciler {
        tenant: i64,
        name: String,
        kind: String,
    },
}

/// A value bound to a dimension upsert.
pub(crate) enum Bind<'a> {
    Int(i64),
    Text(&'a str),
}

impl DimKey {
    /// The upsert that returns the row's id whether it was new or not.
    pub(crate) fn upsert_sql(&self) -> &'static str {
        match self {
            DimKey::Tenant(_) => {
                "INSERT INTO tenants (name, created_at) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id"
            }
            DimKey::Workspace { .. } => {
                "INSERT INTO workspaces (tenant_id, name) VALUES ($1, $2) \
                 ON CONFLICT (tenant_id, name) DO UPDATE SET name = excluded.name RETURNING id"
            }
            DimKey::Application { .. } => {
                "INSERT INTO applications (tenant_id, workspace_id, name) VALUES ($1, $2, $3) \
                 ON CONFLICT (workspace_id, name) DO UPDATE SET name = excluded.name RETURNING id"
            }
            DimKey::Workload { .. } => {
                "INSERT INTO workloads (tenant_id, application_id, name) VALUES ($1, $2, $3) \
                 ON CONFLICT (application_id, name) DO UPDATE SET name = excluded.name RETURNING id"
            }
            DimKey::Environment { .. } => {
                "INSERT INTO environments (tenant_id, name) VALUES ($1, $2) \
                 ON CONFLICT (tenant_id, name) DO UPDATE SET name = excluded.name RETURNING id"
            }
            DimKey::Target { .. } => {
                "INSERT INTO deployment_targets (tenant_id, workload_id, environment_id, name) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (workload_id, environment_id, name) \
                 DO UPDATE SET name = excluded.name RETURNING id"
            }
            DimKey::Host { .. } => {
                "INSERT INTO hosts (tenant_id, name) VALUES ($1, $2) \
                 ON CONFLICT (tenant_id, name) DO UPDATE SET name = excluded.name RETURNING id"
            }
            DimKey::Reconciler { .. } => {
                "INSERT INTO reconcilers (tenant_id, name, type) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id, name, type) DO UPDATE SET name = excluded.name RETURNING id"
            }
        }
    }
}

/// Reconciler types that name one reconciler: Sextant's agent reports type
/// `agent`; its releases before sent `docker`. A hub that holds rows from
/// older agents must not split a host's rows when the agent is upgraded.
const AGENT_TYPES: [&str; 2] = ["agent", "docker"];

impl DimKey {
    /// For a reconciler of an agent type, the statement that picks the one
    /// id its name's agent types share — the oldest row of either type,
    /// which the upsert made sure exists — with `$1` tenant, `$2` name.
    pub(crate) fn alias_sql(&self) -> Option<&'static str> {
        match self {
            DimKey::Reconciler { kind, .. } if AGENT_TYPES.contains(&kind.as_str()) => Some(
                "SELECT MIN(id) FROM reconcilers \
                 WHERE tenant_id = $1 AND name = $2 AND type IN ('agent', 'docker')",
            ),
            _ => None,
        }
    }

    /// The values of [`Self::alias_sql`]'s parameters.
    pub(crate) fn alias_binds(&self) -> Option<(i64, &str)> {
        match self {
            DimKey::Reconciler { tenant, name, .. } => Some((*tenant, name)),
            _ => None,
        }
    }

    pub(crate) fn binds(&self, now: i64) -> Vec<Bind<'_>> {
        use Bind::{Int, Text};
        match self {
            DimKey::Tenant(name) => vec![Text(name), Int(now)],
            DimKey::Workspace { tenant, name }
            | DimKey::Environment { tenant, name }
            | DimKey::Host { tenant, name } => vec![Int(*tenant), Text(name)],
            DimKey::Application {
                tenant,
                workspace: parent,
                name,
            }
            | DimKey::Workload {
                tenant,
                application: parent,
                name,
            } => {
                vec![Int(*tenant), Int(*parent), Text(name)]
            }
            DimKey::Target {
                tenant,
                workload,
                environment,
                name,
            } => vec![Int(*tenant), Int(*workload), Int(*environment), Text(name)],
            DimKey::Reconciler { tenant, name, kind } => vec![Int(*tenant), Text(name), Text(kind)],
        }
    }
}

/// Ids of dimension rows already seen.
#[derive(Debug, Default)]
pub(crate) struct DimCache(Mutex<HashMap<DimKey, i64>>);

impl DimCache {
    pub(crate) fn get(&self, key: &DimKey) -> Option<i64> {
        self.0.lock().ok()?.get(key).copied()
    }

    /// Forgets every id; called when a transaction that may have created
    /// rows rolls back, so no id of a row that was never committed survives.
    pub(crate) fn clear(&self) {
        if let Ok(mut map) = self.0.lock() {
            map.clear();
        }
    }

    pub(crate) fn put(&self, key: DimKey, id: i64) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(key, id);
        }
    }
}

/// Ids a deployment event resolves to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TargetIds {
    pub tenant: i64,
    pub workload: i64,
    pub target: i64,
}

/// Resolves ids through the cache, calling `upsert` on a miss. Expands to an
/// async block so each backend uses it with its own executor.
macro_rules! resolve_dim {
    ($store:expr, $exec:expr, $key:expr) => {{
        let key: $crate::store::dims::DimKey = $key;
        match $store.dims.get(&key) {
            Some(id) => Ok::<i64, sqlx::Error>(id),
            None => {
                let mut q = sqlx::query_scalar::<_, i64>(key.upsert_sql());
                for bind in key.binds(sextant_model::UnixNanos::now().0) {
                    q = match bind {
                        $crate::store::dims::Bind::Int(v) => q.bind(v),
                        $crate::store::dims::Bind::Text(v) => q.bind(v.to_owned()),
                    };
                }
                let mut id = q.fetch_one($exec).await?;
                if let (Some(sql), Some((tenant, name))) = (key.alias_sql(), key.alias_binds()) {
                    id = sqlx::query_scalar::<_, Option<i64>>(sql)
                        .bind(tenant)
                        .bind(name.to_owned())
                        .fetch_one($exec)
                        .await?
                        .unwrap_or(id);
                }
                $store.dims.put(key, id);
                Ok(id)
            }
        }
    }};
}
pub(crate) use resolve_dim;

/// Resolves the ids of a placement, creating missing rows.
macro_rules! resolve_placement {
    ($store:expr, $exec:expr, $tenant:expr, $p:expr) => {{
        use $crate::store::dims::{DimKey, resolve_dim};
        let tenant_name: &str = $tenant;
        let p: &sextant_model::Placement = $p;
        async {
            let tenant = resolve_dim!($store, $exec, DimKey::Tenant(tenant_name.to_owned()))?;
            let workspace = resolve_dim!(
                $store,
                $exec,
                DimKey::Workspace {
                    tenant,
                    name: p.workspace.clone()
                }
            )?;
            let application = resolve_dim!(
                $store,
                $exec,
                DimKey::Application {
                    tenant,
                    workspace,
                    name: p.application.clone()
                }
            )?;
            let workload = resolve_dim!(
                $store,
                $exec,
                DimKey::Workload {
                    tenant,
                    application,
                    name: p.workload.clone()
                }
            )?;
            let environment = resolve_dim!(
                $store,
                $exec,
                DimKey::Environment {
                    tenant,
                    name: p.environment.clone()
                }
            )?;
            let target = resolve_dim!(
                $store,
                $exec,
                DimKey::Target {
                    tenant,
                    workload,
                    environment,
                    name: p.target.clone()
                }
            )?;
            Ok::<_, sqlx::Error>($crate::store::dims::TargetIds {
                tenant,
                workload,
                target,
            })
        }
        .await
    }};
}
pub(crate) use resolve_placement;
