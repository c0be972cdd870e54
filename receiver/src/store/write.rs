//! What both backends' writes share: the statements that record desired
//! assignments and late observations, and the resolution of a batch's
//! observed events to the keys and rows the merge plan ([`super::plan`])
//! takes. How current rows are locked, upserted and appended to history
//! is each backend's own (row by row on SQLite, in bulk on PostgreSQL).

use std::collections::HashMap;

use async_trait::async_trait;
use sextant_model::{DeploymentEvent, DesiredDeployment, ObservedDeployment};

use super::IngestSummary;
use super::plan::{self, ObservedKey, ObservedRow, Plan};

/// The desired events of a batch.
pub(crate) fn desired_events(
    events: &[DeploymentEvent],
) -> impl Iterator<Item = &DesiredDeployment> {
    events.iter().filter_map(|e| match e {
        DeploymentEvent::Desired(d) => Some(d),
        DeploymentEvent::Observed(_) => None,
    })
}

/// The observed events of a batch, resolved to ids ([`resolve_observed`]).
#[derive(Debug, Default)]
pub(crate) struct ObservedBatch {
    /// Each observation's key and content, in batch order.
    pub rows: Vec<(ObservedKey, ObservedRow)>,
    /// Each target's workload, written on new current rows.
    pub workloads: HashMap<i64, i64>,
    /// The tenant's id, when the batch holds an observation.
    pub tenant: Option<i64>,
}

impl ObservedBatch {
    /// Adds observation `o`, resolved to `key`, of a target of `workload`
    /// in tenant `tenant`.
    pub(crate) fn push(
        &mut self,
        tenant: i64,
        workload: i64,
        key: ObservedKey,
        o: &ObservedDeployment,
    ) {
        self.tenant = Some(tenant);
        self.workloads.insert(key.2, workload);
        self.rows.push((
            key,
            ObservedRow {
                revision: o.revision.clone(),
                status: o.status.as_str(),
                message: o.message.clone(),
                job: o.job.clone(),
                commit_time: o.commit_time.map(|t| t.0),
                observed_at: o.observed_at.0,
            },
        ));
    }
}

/// Resolves the observed events of `$events` (placement, host, reconciler)
/// to ids through `$store`'s dimension cache, creating missing rows on
/// `$exec`: an [`ObservedBatch`].
macro_rules! resolve_observed {
    ($store:expr, $exec:expr, $tenant:expr, $events:expr) => {{
        use $crate::store::dims::{DimKey, resolve_dim, resolve_placement};
        let mut batch = $crate::store::write::ObservedBatch::default();
        for event in $events {
            let sextant_model::DeploymentEvent::Observed(o) = event else {
                continue;
            };
            let ids = resolve_placement!($store, $exec, $tenant, &o.placement)?;
            let host = resolve_dim!(
                $store,
                $exec,
                DimKey::Host {
                    tenant: ids.tenant,
                    name: o.host.clone()
                }
            )?;
            let reconciler = resolve_dim!(
                $store,
                $exec,
                DimKey::Reconciler {
                    tenant: ids.tenant,
                    name: o.reconciler.name.clone(),
                    kind: o.reconciler.kind.clone(),
                }
            )?;
            batch.push(ids.tenant, ids.workload, (host, reconciler, ids.target), o);
        }
        batch
    }};
}
pub(crate) use resolve_observed;

/// The current rows of a batch's keys.
pub(crate) type CurrentRows = HashMap<ObservedKey, ObservedRow>;

/// What the steps of [`ObservedWriter`] write: a tenant's merge plan.
pub(crate) struct PlanWrite<'a> {
    pub tenant: i64,
    pub plan: &'a Plan,
    /// Each target's workload, for new current rows.
    pub workloads: &'a HashMap<i64, i64>,
    /// A row keeps its stale mark while its observation is older than this.
    pub stale_before: i64,
    pub now: i64,
}

/// The steps of writing a batch's observations whose SQL is each
/// backend's own, inside its ingest transaction ([`write_observed`] runs
/// them in order).
#[async_trait]
pub(crate) trait ObservedWriter: Send {
    /// The current rows of the batch's keys (locked, where the backend
    /// locks them).
    async fn current_rows(
        &mut self,
        batch: &[(ObservedKey, ObservedRow)],
    ) -> Result<CurrentRows, sqlx::Error>;

    /// Called before the plan's history or late rows are appended.
    async fn before_appends(&mut self, _tenant: i64) -> Result<(), sqlx::Error> {
        Ok(())
    }

    /// Writes the plan's new current rows.
    async fn upsert_current(&mut self, write: &PlanWrite<'_>) -> Result<(), sqlx::Error>;

    /// Appends the plan's history rows; returns how many were new.
    async fn append_history(&mut self, write: &PlanWrite<'_>) -> Result<usize, sqlx::Error>;

    /// Places the plan's late observations in history ([`write_late`]);
    /// returns how many rows were inserted.
    async fn append_late(&mut self, write: &PlanWrite<'_>) -> Result<usize, sqlx::Error>;

    /// Records the revisions the plan's history and late rows saw
    /// (`revision_times`) and lists the touched targets whose deployments
    /// the deriver is to rebuild (`store/deployments/`), once history
    /// holds the plan's rows.
    async fn list_for_deriver(&mut self, write: &PlanWrite<'_>) -> Result<(), sqlx::Error>;
}

/// Writes a batch's resolved observations through `writer`: reads the
/// current rows of its keys, plans the batch against them ([`plan::plan`])
/// and writes the plan's current, history and late rows. Returns what it
/// wrote.
pub(crate) async fn write_observed<W: ObservedWriter>(
    writer: &mut W,
    batch: ObservedBatch,
    stale_before: i64,
    now: i64,
) -> Result<IngestSummary, sqlx::Error> {
    let Some(tenant) = batch.tenant else {
        return Ok(IngestSummary::default());
    };
    let current = writer.current_rows(&batch.rows).await?;
    let plan = plan::plan(&current, batch.rows);
    if !plan.history.is_empty() || !plan.late.is_empty() {
        writer.before_appends(tenant).await?;
    }
    let write = PlanWrite {
        tenant,
        plan: &plan,
        workloads: &batch.workloads,
        stale_before,
        now,
    };
    writer.upsert_current(&write).await?;
    let history = writer.append_history(&write).await?;
    let late = writer.append_late(&write).await?;
    if !plan.history.is_empty() || !plan.late.is_empty() {
        writer.list_for_deriver(&write).await?;
    }
    Ok(IngestSummary {
        desired_assignments: 0,
        observed_current: plan.upserts.len(),
        observed_history: history + late,
        observed_late: plan.late.len(),
    })
}

/// A current row as a backend reads it back: revision, status, message,
/// job, observed_at.
pub(crate) type StoredRow = (String, String, Option<String>, Option<String>, i64);

/// The observation a stored current row holds. The status maps back to
/// its static name (the schema's CHECK keeps the set closed).
pub(crate) fn stored((revision, status, message, job, observed_at): StoredRow) -> ObservedRow {
    ObservedRow {
        revision,
        status: status
            .parse::<sextant_model::DeploymentStatus>()
            .map(|s| s.as_str())
            .unwrap_or("failed"),
        message,
        job,
        commit_time: None,
        observed_at,
    }
}

/// Records a workload version (or finds it) and returns its id.
/// `$1` tenant, `$2` workload, `$3` version, `$4` revision, `$5` build commit,
/// `$6` build id, `$7` repository, `$8` now.
pub(crate) const UPSERT_VERSION_SQL: &str = "INSERT INTO workload_versions \
     (tenant_id, workload_id, version, revision, build_commit, build_id, repository_url, first_seen_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (workload_id, version, revision) DO UPDATE SET \
       build_commit = COALESCE(excluded.build_commit, workload_versions.build_commit), \
       build_id = COALESCE(excluded.build_id, workload_versions.build_id), \
       repository_url = COALESCE(excluded.repository_url, workload_versions.repository_url) \
     RETURNING id";

/// Appends a desired assignment; a replay is a no-op.
pub(crate) const INSERT_ASSIGNMENT_SQL: &str = "INSERT INTO desired_assignments \
     (tenant_id, target_id, workload_version_id, assigned_at, received_at, \
      promotion_id, job_id, approved_by, trace_id, span_id, service) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING";

/// The history row just before a late observation.
pub(crate) const PREVIOUS_HISTORY_SQL: &str = "SELECT revision, status, message, observed_at \
     FROM observed_history WHERE host_id = $1 AND reconciler_id = $2 AND target_id = $3 \
     AND observed_at <= $4 ORDER BY observed_at DESC, id DESC LIMIT 1";

/// Appends one history row; a replay is a no-op.
pub(crate) const INSERT_HISTORY_SQL: &str = "INSERT INTO observed_history \
     (tenant_id, host_id, reconciler_id, target_id, revision, status, message, observed_at, received_at, job_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING";

/// Writes the desired events of a batch inside `$tx`. Returns how many
/// assignments were new.
macro_rules! write_desired {
    ($store:expr, $tx:expr, $tenant:expr, $events:expr, $now:expr) => {{
        let mut written = 0usize;
        for d in $events {
            let ids =
                $crate::store::dims::resolve_placement!($store, &mut *$tx, $tenant, &d.placement)?;
            let version_id: i64 = sqlx::query_scalar($crate::store::write::UPSERT_VERSION_SQL)
                .bind(ids.tenant)
                .bind(ids.workload)
                .bind(d.version.clone())
                .bind(d.revision.clone())
                .bind(d.build_commit.clone())
                .bind(d.build_id.clone())
                .bind(d.repository_url.clone())
                .bind($now)
                .fetch_one(&mut *$tx)
                .await?;
            let done = sqlx::query($crate::store::write::INSERT_ASSIGNMENT_SQL)
                .bind(ids.tenant)
                .bind(ids.target)
                .bind(version_id)
                .bind(d.at.0)
                .bind($now)
                .bind(d.origin.promotion.clone())
                .bind(d.origin.job.clone())
                .bind(d.origin.approved_by.clone())
                .bind(d.origin.trace_id.clone())
                .bind(d.origin.span_id.clone())
                .bind(d.origin.service.clone())
                .execute(&mut *$tx)
                .await?;
            written += done.rows_affected() as usize;
            let moved = sqlx::query($crate::store::deployments::UPSERT_REVISION_TIME_SQL)
                .bind(ids.tenant)
                .bind(ids.workload)
                .bind(d.revision.clone())
                .bind(d.at.0)
                .bind(d.commit_time.map(|t| t.0))
                .execute(&mut *$tx)
                .await?;
            if moved.rows_affected() > 0 {
                sqlx::query($crate::store::deployments::CHANGED_WORKLOAD_SQL)
                    .bind(ids.tenant)
                    .bind(ids.workload)
                    .bind($now)
                    .execute(&mut *$tx)
                    .await?;
            }
        }
        written
    }};
}
pub(crate) use write_desired;

/// Places late observations in history where they are a change relative to
/// the history row before them. Returns how many rows were inserted.
macro_rules! write_late {
    ($tx:expr, $tenant_id:expr, $late:expr, $now:expr) => {{
        let mut inserted = 0usize;
        for ((host, reconciler, target), row) in $late {
            let previous: Option<(String, String, Option<String>, i64)> =
                sqlx::query_as($crate::store::write::PREVIOUS_HISTORY_SQL)
                    .bind(host)
                    .bind(reconciler)
                    .bind(target)
                    .bind(row.observed_at)
                    .fetch_optional(&mut *$tx)
                    .await?;
            let is_change = previous.is_none_or(|(revision, status, message, _)| {
                revision != row.revision || status != row.status || message != row.message
            });
            if is_change {
                let done = sqlx::query($crate::store::write::INSERT_HISTORY_SQL)
                    .bind($tenant_id)
                    .bind(host)
                    .bind(reconciler)
                    .bind(target)
                    .bind(row.revision.clone())
                    .bind(row.status)
                    .bind(row.message.clone())
                    .bind(row.observed_at)
                    .bind($now)
                    .bind(row.job.clone())
                    .execute(&mut *$tx)
                    .await?;
                inserted += done.rows_affected() as usize;
            }
        }
        inserted
    }};
}
pub(crate) use write_late;
