//! The drift set: reads of the current rows that drift, and the stale
//! sweep that keeps them cheap (docs/performance.md, "Bounded reads").
//!
//! A current row drifts when its target has no desired state, it runs
//! another revision than desired, it failed, or it is stale (observed before
//! the stale threshold, from a source that reports on a schedule). The first
//! three are kept in `drift_rows` by triggers (migration 0008 on
//! PostgreSQL, 0007 on SQLite) in the transaction that writes the row or the
//! desired state. Staleness moves with the clock, not with writes: the sweep
//! marks rows that crossed the threshold (`staleness`), and moves them into
//! `drift_rows`. Between sweeps a read adds the rows that crossed since the
//! last one, found on the `(staleness, observed_at)` index, so answers are
//! exact whenever the sweep last ran; the sweep only bounds how many such
//! rows a read meets.
//!
//! The reads of the set are in `reads/drift.rs`; this module holds the
//! sweep, which runs on a store's write pool.

use super::StoreError;
use super::pool::{PerBackend, Statement, StorePool};

/// Marks the current rows observed before `stale_before` as past the stale
/// threshold, in batches, after clearing the marks of rows observed since
/// (see [`super::HubStore::sweep_stale`]); returns how many rows it marked.
pub(crate) async fn sweep(pool: StorePool<'_>, stale_before: i64) -> Result<u64, StoreError> {
    pool.execute(Statement::new(SWEEP_UNMARK_SQL).int(stale_before))
        .await?;
    let mut marked = 0u64;
    loop {
        let mark = Statement::new(pool.pick(&SWEEP_MARK_SQL))
            .int(stale_before)
            .int(SWEEP_BATCH);
        // PostgreSQL's statement returns its counts; SQLite's is an UPDATE.
        let rows = if pool.is_postgres() {
            let (rows, _joined): (i64, i64) = pool.fetch_one(mark).await?;
            u64::try_from(rows).unwrap_or(0)
        } else {
            pool.execute(mark).await?
        };
        marked += rows;
        if rows < SWEEP_BATCH.unsigned_abs() {
            return Ok(marked);
        }
    }
}

/// Rows per sweep statement: a sweep is many short transactions, so ingest
/// never waits long behind one.
const SWEEP_BATCH: i64 = 5_000;

/// PostgreSQL: marks up to `$2` rows observed before `$1` and not yet
/// marked: stale (1), or past the threshold but never stale (2, Argo CD);
/// rows a writer holds are skipped (it is refreshing them). The rows marked
/// stale join `drift_rows` in the same statement (the row trigger leaves
/// marking to this; see migration 0008). Returns the rows marked.
const PG_SWEEP_MARK_SQL: &str = "WITH c AS ( \
       SELECT o.host_id, o.reconciler_id, o.target_id FROM observed_deployments o \
        WHERE o.staleness = 0 AND o.observed_at < $1 \
        ORDER BY o.observed_at LIMIT $2 FOR UPDATE SKIP LOCKED), \
     marked AS ( \
       UPDATE observed_deployments o \
          SET staleness = CASE WHEN LOWER(r.type) = 'argocd' THEN 2 ELSE 1 END \
         FROM c, reconcilers r \
        WHERE o.host_id = c.host_id AND o.reconciler_id = c.reconciler_id \
          AND o.target_id = c.target_id AND r.id = o.reconciler_id \
        RETURNING o.tenant_id, o.host_id, o.reconciler_id, o.target_id, o.revision, o.status, \
          o.staleness, r.name AS reconciler_name), \
     joined AS ( \
       INSERT INTO drift_rows AS d (tenant_id, host_id, reconciler_id, target_id, host_name, \
           reconciler_name, environment_id, workload_id, target_name, workload_name, off_desired, failed, stale) \
       SELECT m.tenant_id, m.host_id, m.reconciler_id, m.target_id, h.name, m.reconciler_name, \
           t.environment_id, t.workload_id, t.name, (SELECT w.name FROM workloads w WHERE w.id = t.workload_id), \
           drift_off_desired(t.desired_revision, m.revision, m.status), m.status = 'failed', true \
         FROM marked m JOIN deployment_targets t ON t.id = m.target_id \
         JOIN hosts h ON h.id = m.host_id \
        WHERE m.staleness = 1 \
        ORDER BY m.host_id, m.reconciler_id, m.target_id \
       ON CONFLICT (host_id, reconciler_id, target_id) DO UPDATE SET stale = true \
       RETURNING 1) \
     SELECT (SELECT COUNT(*) FROM marked), (SELECT COUNT(*) FROM joined)";

/// SQLite: [`PG_SWEEP_MARK_SQL`]'s marks; SQLite's row trigger moves the
/// rows into `drift_rows`.
const SQLITE_SWEEP_MARK_SQL: &str = "UPDATE observed_deployments \
     SET staleness = CASE WHEN (SELECT LOWER(r.type) FROM reconcilers r \
                                WHERE r.id = observed_deployments.reconciler_id) = 'argocd' \
                          THEN 2 ELSE 1 END \
     WHERE staleness = 0 AND observed_at < $1 \
       AND (host_id, reconciler_id, target_id) IN ( \
         SELECT host_id, reconciler_id, target_id FROM observed_deployments \
          WHERE staleness = 0 AND observed_at < $1 ORDER BY observed_at LIMIT $2)";

/// [`SQLITE_SWEEP_MARK_SQL`], [`PG_SWEEP_MARK_SQL`].
const SWEEP_MARK_SQL: PerBackend = PerBackend {
    sqlite: SQLITE_SWEEP_MARK_SQL,
    postgres: PG_SWEEP_MARK_SQL,
};

/// Clears the marks of rows observed at or after `$1`: only after the
/// stale threshold was raised, since every write clears its row's mark.
/// The row trigger takes rows no longer stale out of `drift_rows`.
const SWEEP_UNMARK_SQL: &str =
    "UPDATE observed_deployments SET staleness = 0 WHERE staleness IN (1, 2) AND observed_at >= $1";

#[cfg(test)]
mod tests;
