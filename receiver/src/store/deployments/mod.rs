//! The derived tables DORA's metrics read (docs/insights.md). Ingest
//! keeps `revision_times` in the transaction that writes observed history
//! and lists each touched target in `deployments_backfill` with the key of
//! its earliest new row ([`PENDING_SQL`]); the hub's deriver (`app/`, and a
//! DORA report for its own tenant first) rebuilds the listed targets'
//! `deployments`, a target a transaction ([`derive_target`]).
//!
//! `deployments`: per target, a row per revision the target moved to. A
//! target's history is replayed in the order of its key (observed_at,
//! host_id, reconciler_id, id); a *move* is a host reporting another
//! revision than its own report before. A move to revision R starts a
//! deployment when R is not the target's current revision and either R
//! was never deployed on the target or the host came from the current
//! revision (a rollback); a laggard host catching up on an older
//! deployment starts none, nor does a host's first report. The first
//! revision a target reports is its *baseline*, kept but not counted.
//!
//! Rebuild rule: new history rows of a target, in order or not, rebuild
//! its rows from the last deployment that started before the earliest of
//! them (that deployment's start cannot change; its facts can) onward, from
//! `observed_history`; so the table, once derived, always equals an
//! in-order replay.
//!
//! `revision_times`: per (workload, revision), the first sighting and the
//! earliest commit time given; both only move earlier.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::plan::Plan;

/// A history row's place in a target's replay: observed_at, host id,
/// reconciler id, history id.
pub(crate) type Key = (i64, i64, i64, i64);

/// One row of the `deployments` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Deployment {
    /// The key of the history row that started it.
    pub key: Key,
    pub revision: String,
    /// The target's first revision: kept, not counted.
    pub baseline: bool,
    /// Its revision was deployed on the target before.
    pub rollback: bool,
    /// The deployment before it failed (the baseline excepted).
    pub rework: bool,
    pub first_succeeded_at: Option<i64>,
    pub first_failed_at: Option<i64>,
    /// Its first failed report, or the start of the rollback after it.
    pub failed_at: Option<i64>,
    /// When the next deployment started.
    pub ended_at: Option<i64>,
}

/// A history row of the replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryRow {
    pub key: Key,
    pub revision: String,
    pub status: String,
}

/// Replays `rows` (sorted by key) of one target. `from` is the deployment
/// the replay starts in (its start row is the first of `rows`; its
/// recomputed facts come back first), `hosts` each host's revision before
/// the first row, `deployed` the revisions deployed on the target up to
/// and including `from`. Without `from`, `rows` are the target's whole
/// history and `hosts` is empty.
///
/// With `resume`, `from` is the target's last deployment as stored, with
/// the facts of every row up to the last one replayed, and `rows` come
/// after that row: its first reports are kept and the replay goes on from
/// where the last one stopped (`hosts` then needs only the hosts of
/// `rows`).
pub(crate) fn replay(
    from: Option<Deployment>,
    mut hosts: HashMap<(i64, i64), String>,
    deployed: &HashSet<String>,
    rows: &[HistoryRow],
    resume: bool,
) -> Vec<Deployment> {
    let mut out: Vec<Deployment> = Vec::new();
    let kept_rework = from.as_ref().map(|d| d.rework);
    if let Some(d) = from {
        out.push(if resume {
            Deployment {
                failed_at: None,
                ..d
            }
        } else {
            Deployment {
                first_succeeded_at: None,
                first_failed_at: None,
                failed_at: None,
                ended_at: None,
                ..d
            }
        });
    }
    let new = |row: &HistoryRow, baseline: bool, rollback: bool| Deployment {
        key: row.key,
        revision: row.revision.clone(),
        baseline,
        rollback,
        rework: false,
        first_succeeded_at: None,
        first_failed_at: None,
        failed_at: None,
        ended_at: None,
    };
    for row in rows {
        let before = hosts.insert((row.key.1, row.key.2), row.revision.clone());
        let seen =
            deployed.contains(&row.revision) || out.iter().any(|d| d.revision == row.revision);
        match out.last_mut() {
            None => out.push(new(row, true, false)),
            Some(current) if current.revision != row.revision => {
                let moved = before.as_deref().is_some_and(|b| b != row.revision);
                let from_current = before.as_deref() == Some(current.revision.as_str());
                if moved && (!seen || from_current) {
                    current.ended_at = Some(row.key.0);
                    out.push(new(row, false, seen));
                }
            }
            Some(_) => {}
        }
        if let Some(current) = out.last_mut()
            && current.revision == row.revision
        {
            match row.status.as_str() {
                "succeeded" => {
                    current.first_succeeded_at.get_or_insert(row.key.0);
                }
                "failed" => {
                    current.first_failed_at.get_or_insert(row.key.0);
                }
                _ => {}
            }
        }
    }
    for i in 0..out.len() {
        let undone_at = out.get(i + 1).filter(|n| n.rollback).map(|n| n.key.0);
        let d = &mut out[i];
        d.failed_at = match (d.first_failed_at, undone_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if i > 0 {
            let previous = &out[i - 1];
            let rework = !previous.baseline && previous.failed_at.is_some();
            out[i].rework = rework;
        } else if let Some(rework) = kept_rework {
            out[i].rework = rework;
        }
    }
    out
}

/// The targets a plan's history and late rows touch, each with the
/// earliest (observed_at, host, reconciler) among them: where its rebuild
/// starts. In target order, the order a backend locks them in.
pub(crate) fn touched(plan: &Plan) -> BTreeMap<i64, Key> {
    let mut out: BTreeMap<i64, Key> = BTreeMap::new();
    for ((host, reconciler, target), row) in plan.history.iter().chain(&plan.late) {
        let key = (row.observed_at, *host, *reconciler, i64::MIN);
        out.entry(*target)
            .and_modify(|k| *k = (*k).min(key))
            .or_insert(key);
    }
    out
}

/// The (workload, revision) sightings of a plan's history and late rows:
/// the earliest time and commit time of each.
pub(crate) fn sightings(
    plan: &Plan,
    workloads: &HashMap<i64, i64>,
) -> BTreeMap<(i64, String), (i64, Option<i64>)> {
    let mut out: BTreeMap<(i64, String), (i64, Option<i64>)> = BTreeMap::new();
    for ((_, _, target), row) in plan.history.iter().chain(&plan.late) {
        let Some(workload) = workloads.get(target) else {
            continue;
        };
        let entry = out
            .entry((*workload, row.revision.clone()))
            .or_insert((row.observed_at, row.commit_time));
        entry.0 = entry.0.min(row.observed_at);
        entry.1 = match (entry.1, row.commit_time) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    out
}

/// What a revision's sighting does to its row of `revision_times`: each
/// time only moves earlier; a sighting that changes nothing writes
/// nothing.
macro_rules! revision_time_conflict {
    () => {
        " ON CONFLICT (workload_id, revision) DO UPDATE SET \
           first_seen_at = CASE WHEN excluded.first_seen_at < revision_times.first_seen_at \
             THEN excluded.first_seen_at ELSE revision_times.first_seen_at END, \
           committed_at = CASE WHEN excluded.committed_at IS NOT NULL AND (revision_times.committed_at IS NULL \
             OR excluded.committed_at < revision_times.committed_at) \
             THEN excluded.committed_at ELSE revision_times.committed_at END \
         WHERE excluded.first_seen_at < revision_times.first_seen_at \
            OR (excluded.committed_at IS NOT NULL AND (revision_times.committed_at IS NULL \
                OR excluded.committed_at < revision_times.committed_at))"
    };
}

/// Records a revision's sighting: `$1` tenant, `$2` workload, `$3`
/// revision, `$4` seen at, `$5` commit time (or NULL).
pub(crate) const UPSERT_REVISION_TIME_SQL: &str = concat!(
    "INSERT INTO revision_times \
     (tenant_id, workload_id, revision, first_seen_at, committed_at) VALUES ($1, $2, $3, $4, $5)",
    revision_time_conflict!()
);

/// [`UPSERT_REVISION_TIME_SQL`] for many sightings at once (PostgreSQL):
/// `$1` tenant, then arrays of workloads, revisions, times and commit
/// times (one sighting per (workload, revision)). Returns the workload of
/// each row it wrote.
pub(crate) const UPSERT_REVISION_TIMES_SQL: &str = concat!(
    "INSERT INTO revision_times \
     (tenant_id, workload_id, revision, first_seen_at, committed_at) \
     SELECT $1, s.* FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) AS s",
    revision_time_conflict!(),
    " RETURNING workload_id"
);

/// What listing a touched target does to its row of
/// `deployments_backfill`: the key moves to the earlier of the two (a row
/// without a key, the whole history, stays so), and `seq` moves on.
macro_rules! pending_conflict {
    () => {
        " ON CONFLICT (target_id) DO UPDATE SET seq = deployments_backfill.seq + 1, \
           observed_at = CASE WHEN deployments_backfill.observed_at IS NOT NULL AND \
             (excluded.observed_at, excluded.host_id, excluded.reconciler_id) \
             < (deployments_backfill.observed_at, deployments_backfill.host_id, \
                deployments_backfill.reconciler_id) \
             THEN excluded.observed_at ELSE deployments_backfill.observed_at END, \
           host_id = CASE WHEN deployments_backfill.observed_at IS NOT NULL AND \
             (excluded.observed_at, excluded.host_id, excluded.reconciler_id) \
             < (deployments_backfill.observed_at, deployments_backfill.host_id, \
                deployments_backfill.reconciler_id) \
             THEN excluded.host_id ELSE deployments_backfill.host_id END, \
           reconciler_id = CASE WHEN deployments_backfill.observed_at IS NOT NULL AND \
             (excluded.observed_at, excluded.host_id, excluded.reconciler_id) \
             < (deployments_backfill.observed_at, deployments_backfill.host_id, \
                deployments_backfill.reconciler_id) \
             THEN excluded.reconciler_id ELSE deployments_backfill.reconciler_id END"
    };
}

/// Lists target `$1` for the deriver, from key (`$2`, `$3`, `$4`) on: the
/// earliest (observed_at, host, reconciler) of the batch's new rows.
pub(crate) const PENDING_SQL: &str = concat!(
    "INSERT INTO deployments_backfill (target_id, observed_at, host_id, reconciler_id) \
     VALUES ($1, $2, $3, $4)",
    pending_conflict!()
);

/// [`PENDING_SQL`] for many targets at once (PostgreSQL): arrays of
/// targets (in id order, the order two batches lock them in) and keys.
pub(crate) const PENDING_MANY_SQL: &str = concat!(
    "INSERT INTO deployments_backfill (target_id, observed_at, host_id, reconciler_id) \
     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[])",
    pending_conflict!()
);

/// Target `$1`'s listing: the key its rebuild starts from (none: the
/// whole history) and its `seq`.
pub(crate) const TAKE_SQL: &str = "SELECT observed_at, host_id, reconciler_id, seq \
     FROM deployments_backfill WHERE target_id = $1";

/// Removes target `$1`'s listing if it is still at `seq` `$2`.
pub(crate) const DONE_SQL: &str =
    "DELETE FROM deployments_backfill WHERE target_id = $1 AND seq = $2";

/// Up to 64 listed targets for a step of the deriver: up to 48 that
/// ingest listed and 16 an upgrade did, so that neither waits for the
/// other to run out.
pub(crate) const STEP_SQL: &str = "SELECT target_id FROM (SELECT target_id \
       FROM deployments_backfill WHERE observed_at IS NOT NULL ORDER BY target_id LIMIT 48) n \
     UNION ALL SELECT target_id FROM (SELECT target_id \
       FROM deployments_backfill WHERE observed_at IS NULL ORDER BY target_id LIMIT 16) w";

/// The targets ingest listed, of tenant `$1` (NULL: of every tenant).
pub(crate) const LISTED_SQL: &str = "SELECT b.target_id FROM deployments_backfill b \
     JOIN deployment_targets t ON t.id = b.target_id \
     JOIN tenants tn ON tn.id = t.tenant_id \
     WHERE b.observed_at IS NOT NULL AND (CAST($1 AS TEXT) IS NULL OR tn.name = $1) \
     ORDER BY b.target_id";

/// A target's workload and environment.
pub(crate) const TARGET_SQL: &str =
    "SELECT tenant_id, workload_id, environment_id FROM deployment_targets WHERE id = $1";

/// The columns of a deployment row read back, in [`StoredDeployment`]'s
/// order.
macro_rules! deployment_columns {
    () => {
        "started_at, start_host_id, start_reconciler_id, start_history_id, revision, \
         baseline, rollback, rework"
    };
}

/// The last deployment of target `$1` that started before key (`$2`..`$5`).
pub(crate) const FROM_SQL: &str = concat!(
    "SELECT ",
    deployment_columns!(),
    " FROM deployments WHERE target_id = $1 \
       AND (started_at, start_host_id, start_reconciler_id, start_history_id) \
         < (CAST($2 AS BIGINT), CAST($3 AS BIGINT), CAST($4 AS BIGINT), CAST($5 AS BIGINT)) \
     ORDER BY started_at DESC, start_host_id DESC, start_reconciler_id DESC, start_history_id DESC \
     LIMIT 1"
);

/// A deployment as [`FROM_SQL`] reads it.
pub(crate) type StoredDeployment = (i64, i64, i64, i64, String, i64, i64, i64);

/// History rows as the statements read them.
pub(crate) fn history_rows(rows: Vec<(i64, i64, i64, i64, String, String)>) -> Vec<HistoryRow> {
    rows.into_iter()
        .map(|(at, host, reconciler, id, revision, status)| HistoryRow {
            key: (at, host, reconciler, id),
            revision,
            status,
        })
        .collect()
}

/// The deployment a stored row starts the replay with.
pub(crate) fn from_stored(
    (at, host, reconciler, id, revision, baseline, rollback, rework): StoredDeployment,
) -> Deployment {
    Deployment {
        key: (at, host, reconciler, id),
        revision,
        baseline: baseline != 0,
        rollback: rollback != 0,
        rework: rework != 0,
        first_succeeded_at: None,
        first_failed_at: None,
        failed_at: None,
        ended_at: None,
    }
}

/// Each host's revision of target `$1` before key (`$2`..`$5`): its last
/// history row before it, one index probe a host.
pub(crate) const HOSTS_SQL: &str = "SELECT o.host_id, o.reconciler_id, \
       (SELECT h.revision FROM observed_history h \
         WHERE h.host_id = o.host_id AND h.reconciler_id = o.reconciler_id \
           AND h.target_id = o.target_id AND h.observed_at <= $2 \
           AND (h.observed_at, h.host_id, h.reconciler_id, h.id) \
             < (CAST($2 AS BIGINT), CAST($3 AS BIGINT), CAST($4 AS BIGINT), CAST($5 AS BIGINT)) \
         ORDER BY h.observed_at DESC, h.id DESC LIMIT 1) AS revision \
     FROM observed_deployments o WHERE o.target_id = $1";

/// Whether revision `$2` was deployed on target `$1` up to key
/// (`$3`..`$6`), inclusive.
pub(crate) const DEPLOYED_SQL: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM deployments \
     WHERE target_id = $1 AND revision = $2 \
       AND (started_at, start_host_id, start_reconciler_id, start_history_id) \
         <= (CAST($3 AS BIGINT), CAST($4 AS BIGINT), CAST($5 AS BIGINT), CAST($6 AS BIGINT)) \
     LIMIT 1) x";

/// Target `$1`'s history from `$2` (observed_at) on, in replay order.
pub(crate) const ROWS_SQL: &str = "SELECT observed_at, host_id, reconciler_id, id, revision, status \
     FROM observed_history WHERE target_id = $1 AND observed_at >= $2 \
     ORDER BY observed_at, host_id, reconciler_id, id";

/// Target `$1`'s history after key (`$2`..`$5`), in replay order.
pub(crate) const ROWS_AFTER_SQL: &str = "SELECT observed_at, host_id, reconciler_id, id, revision, \
       status FROM observed_history WHERE target_id = $1 AND observed_at >= $2 \
       AND (observed_at, host_id, reconciler_id, id) \
         > (CAST($2 AS BIGINT), CAST($3 AS BIGINT), CAST($4 AS BIGINT), CAST($5 AS BIGINT)) \
     ORDER BY observed_at, host_id, reconciler_id, id";

/// Host `$2` (reconciler `$3`)'s revision of target `$1` at key
/// (`$4`..`$7`): its last history row up to it, inclusive.
pub(crate) const HOST_REVISION_SQL: &str = "SELECT revision FROM observed_history \
     WHERE target_id = $1 AND host_id = $2 AND reconciler_id = $3 AND observed_at <= $4 \
       AND (observed_at, host_id, reconciler_id, id) \
         <= (CAST($4 AS BIGINT), CAST($5 AS BIGINT), CAST($6 AS BIGINT), CAST($7 AS BIGINT)) \
     ORDER BY observed_at DESC, id DESC LIMIT 1";

/// Up to this many moving hosts, a resumed replay reads each one's
/// revision with [`HOST_REVISION_SQL`]; past it, every host of the target
/// with [`HOSTS_SQL`] in one statement.
pub(crate) const FEW_MOVERS: usize = 4;

/// Target `$1`'s last deployment, with its facts.
pub(crate) const LAST_SQL: &str = concat!(
    "SELECT ",
    deployment_columns!(),
    ", first_succeeded_at, first_failed_at, failed_at, ended_at FROM deployments \
     WHERE target_id = $1 \
     ORDER BY started_at DESC, start_host_id DESC, start_reconciler_id DESC, start_history_id DESC \
     LIMIT 1"
);

/// A deployment as [`LAST_SQL`] reads it.
pub(crate) type StoredWithFacts = (
    i64,
    i64,
    i64,
    i64,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// The deployment a resumed replay starts with: as stored, facts and all.
pub(crate) fn from_stored_with_facts(
    (
        at,
        host,
        reconciler,
        id,
        revision,
        baseline,
        rollback,
        rework,
        succeeded,
        failed_first,
        failed,
        ended,
    ): StoredWithFacts,
) -> Deployment {
    Deployment {
        first_succeeded_at: succeeded,
        first_failed_at: failed_first,
        failed_at: failed,
        ended_at: ended,
        ..from_stored((
            at, host, reconciler, id, revision, baseline, rollback, rework,
        ))
    }
}

/// The key of the last history row target `$1`'s deployments were replayed
/// to (`deployment_replays`).
pub(crate) const WATERMARK_SQL: &str = "SELECT observed_at, host_id, reconciler_id, history_id \
     FROM deployment_replays WHERE target_id = $1";

/// Records that target `$1`'s deployments are replayed to key (`$2`..`$5`).
pub(crate) const UPSERT_WATERMARK_SQL: &str = "INSERT INTO deployment_replays \
       (target_id, observed_at, host_id, reconciler_id, history_id) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (target_id) DO UPDATE SET observed_at = excluded.observed_at, \
       host_id = excluded.host_id, reconciler_id = excluded.reconciler_id, \
       history_id = excluded.history_id";

/// Deletes target `$1`'s deployments from key (`$2`..`$5`) on.
pub(crate) const DELETE_SQL: &str = "DELETE FROM deployments WHERE target_id = $1 \
       AND (started_at, start_host_id, start_reconciler_id, start_history_id) \
         >= (CAST($2 AS BIGINT), CAST($3 AS BIGINT), CAST($4 AS BIGINT), CAST($5 AS BIGINT))";

/// Writes one deployment.
pub(crate) const INSERT_SQL: &str = "INSERT INTO deployments (tenant_id, target_id, workload_id, \
       environment_id, started_at, start_host_id, start_reconciler_id, start_history_id, revision, \
       baseline, rollback, rework, first_succeeded_at, first_failed_at, failed_at, ended_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

/// Rebuilds target `$target`'s deployments from `$from` (a [`Key`]) on,
/// inside transaction `$tx` (see the module's rebuild rule), and appends
/// the target to the DORA index's change feed. The caller holds whatever
/// lock keeps two writers of one target apart.
macro_rules! rebuild_deployments {
    ($tx:expr, $target:expr, $from:expr) => {{
        use $crate::store::deployments as d;
        let target: i64 = $target;
        let from: d::Key = $from;
        let (tenant, workload, environment): (i64, i64, i64) = sqlx::query_as(d::TARGET_SQL)
            .bind(target)
            .fetch_one(&mut *$tx)
            .await?;
        // Rows that all come after the last row replayed (reports arriving
        // in order, the usual case) resume the replay from the last
        // deployment; anything else replays from the deployment the
        // earliest new row falls in.
        let watermark: Option<d::Key> = sqlx::query_as(d::WATERMARK_SQL)
            .bind(target)
            .fetch_optional(&mut *$tx)
            .await?;
        let last: Option<d::StoredWithFacts> = match watermark {
            Some(w) if from > w => {
                sqlx::query_as(d::LAST_SQL)
                    .bind(target)
                    .fetch_optional(&mut *$tx)
                    .await?
            }
            _ => None,
        };
        let resume = last.is_some();
        let (start, hosts, rows) = match (last, watermark) {
            (Some(last), Some(w)) => {
                let start = d::from_stored_with_facts(last);
                let rows: Vec<(i64, i64, i64, i64, String, String)> =
                    sqlx::query_as(d::ROWS_AFTER_SQL)
                        .bind(target)
                        .bind(w.0)
                        .bind(w.1)
                        .bind(w.2)
                        .bind(w.3)
                        .fetch_all(&mut *$tx)
                        .await?;
                let rows = d::history_rows(rows);
                // Each moving host's revision up to the watermark,
                // inclusive: a statement a host when few move, else one
                // statement for every host of the target (before the key
                // just after the watermark), an index probe each.
                let movers: std::collections::BTreeSet<(i64, i64)> =
                    rows.iter().map(|r| (r.key.1, r.key.2)).collect();
                let mut hosts = std::collections::HashMap::new();
                if movers.len() <= d::FEW_MOVERS {
                    for (host, reconciler) in movers {
                        let revision: Option<String> = sqlx::query_scalar(d::HOST_REVISION_SQL)
                            .bind(target)
                            .bind(host)
                            .bind(reconciler)
                            .bind(w.0)
                            .bind(w.1)
                            .bind(w.2)
                            .bind(w.3)
                            .fetch_optional(&mut *$tx)
                            .await?;
                        if let Some(revision) = revision {
                            hosts.insert((host, reconciler), revision);
                        }
                    }
                } else {
                    let known: Vec<(i64, i64, Option<String>)> = sqlx::query_as(d::HOSTS_SQL)
                        .bind(target)
                        .bind(w.0)
                        .bind(w.1)
                        .bind(w.2)
                        .bind(w.3.saturating_add(1))
                        .fetch_all(&mut *$tx)
                        .await?;
                    for (host, reconciler, revision) in known {
                        if let Some(revision) = revision
                            && movers.contains(&(host, reconciler))
                        {
                            hosts.insert((host, reconciler), revision);
                        }
                    }
                }
                (Some(start), hosts, rows)
            }
            _ => {
                let start: Option<d::StoredDeployment> = sqlx::query_as(d::FROM_SQL)
                    .bind(target)
                    .bind(from.0)
                    .bind(from.1)
                    .bind(from.2)
                    .bind(from.3)
                    .fetch_optional(&mut *$tx)
                    .await?;
                let start = start.map(d::from_stored);
                let start_key = start
                    .as_ref()
                    .map_or((i64::MIN, i64::MIN, i64::MIN, i64::MIN), |s| s.key);
                let mut hosts = std::collections::HashMap::new();
                if start.is_some() {
                    let rows: Vec<(i64, i64, Option<String>)> = sqlx::query_as(d::HOSTS_SQL)
                        .bind(target)
                        .bind(start_key.0)
                        .bind(start_key.1)
                        .bind(start_key.2)
                        .bind(start_key.3)
                        .fetch_all(&mut *$tx)
                        .await?;
                    for (host, reconciler, revision) in rows {
                        if let Some(revision) = revision {
                            hosts.insert((host, reconciler), revision);
                        }
                    }
                }
                let rows: Vec<(i64, i64, i64, i64, String, String)> = sqlx::query_as(d::ROWS_SQL)
                    .bind(target)
                    .bind(start_key.0)
                    .fetch_all(&mut *$tx)
                    .await?;
                let rows: Vec<d::HistoryRow> = d::history_rows(rows)
                    .into_iter()
                    .filter(|r| r.key >= start_key)
                    .collect();
                (start, hosts, rows)
            }
        };
        let start_key = start
            .as_ref()
            .map_or((i64::MIN, i64::MIN, i64::MIN, i64::MIN), |s| s.key);
        let mut deployed = std::collections::HashSet::new();
        if start.is_some() {
            let revisions: std::collections::BTreeSet<&str> =
                rows.iter().map(|r| r.revision.as_str()).collect();
            for revision in revisions {
                let n: i64 = sqlx::query_scalar(d::DEPLOYED_SQL)
                    .bind(target)
                    .bind(revision)
                    .bind(start_key.0)
                    .bind(start_key.1)
                    .bind(start_key.2)
                    .bind(start_key.3)
                    .fetch_one(&mut *$tx)
                    .await?;
                if n > 0 {
                    deployed.insert(revision.to_owned());
                }
            }
        }
        let replayed_to = rows.last().map(|r| r.key);
        let rebuilt = d::replay(start, hosts, &deployed, &rows, resume);
        sqlx::query(d::DELETE_SQL)
            .bind(target)
            .bind(start_key.0)
            .bind(start_key.1)
            .bind(start_key.2)
            .bind(start_key.3)
            .execute(&mut *$tx)
            .await?;
        for x in &rebuilt {
            sqlx::query(d::INSERT_SQL)
                .bind(tenant)
                .bind(target)
                .bind(workload)
                .bind(environment)
                .bind(x.key.0)
                .bind(x.key.1)
                .bind(x.key.2)
                .bind(x.key.3)
                .bind(&x.revision)
                .bind(i64::from(x.baseline))
                .bind(i64::from(x.rollback))
                .bind(i64::from(x.rework))
                .bind(x.first_succeeded_at)
                .bind(x.first_failed_at)
                .bind(x.failed_at)
                .bind(x.ended_at)
                .execute(&mut *$tx)
                .await?;
        }
        if let Some(key) = replayed_to {
            sqlx::query(d::UPSERT_WATERMARK_SQL)
                .bind(target)
                .bind(key.0)
                .bind(key.1)
                .bind(key.2)
                .bind(key.3)
                .execute(&mut *$tx)
                .await?;
        }
        sqlx::query(d::CHANGED_TARGET_SQL)
            .bind(tenant)
            .bind(target)
            .bind(sextant_model::UnixNanos::now().0)
            .execute(&mut *$tx)
            .await?;
    }};
}
pub(crate) use rebuild_deployments;

/// The key a rebuild of a target's whole history starts from.
pub(crate) const WHOLE: Key = (i64::MIN, i64::MIN, i64::MIN, i64::MIN);

/// Derives listed target `$target`'s deployments inside transaction `$tx`:
/// rebuilds them from its listing's key (the whole history without one),
/// then removes the listing unless a batch listed the target again
/// meanwhile (its new rows may be past what this rebuild read). Says
/// whether the target was listed. The caller keeps two derivers of one
/// target apart.
macro_rules! derive_target {
    ($tx:expr, $target:expr) => {{
        use $crate::store::deployments as d;
        let target: i64 = $target;
        let listed: Option<(Option<i64>, Option<i64>, Option<i64>, i64)> =
            sqlx::query_as(d::TAKE_SQL)
                .bind(target)
                .fetch_optional(&mut *$tx)
                .await?;
        match listed {
            None => false,
            Some((at, host, reconciler, seq)) => {
                let from = match (at, host, reconciler) {
                    (Some(at), Some(host), Some(reconciler)) => (at, host, reconciler, i64::MIN),
                    _ => d::WHOLE,
                };
                $crate::store::deployments::rebuild_deployments!($tx, target, from);
                sqlx::query(d::DONE_SQL)
                    .bind(target)
                    .bind(seq)
                    .execute(&mut *$tx)
                    .await?;
                true
            }
        }
    }};
}
pub(crate) use derive_target;

/// The DORA index's change feed (`store/dora_index.rs`): target `$2` of
/// tenant `$1` had its deployments rebuilt, at `$3`.
pub(crate) const CHANGED_TARGET_SQL: &str =
    "INSERT INTO dora_changes (tenant_id, target_id, at) VALUES ($1, $2, $3)";

/// The change feed: workload `$2` of tenant `$1` had a revision's times
/// written, at `$3`; every target of it is reread.
pub(crate) const CHANGED_WORKLOAD_SQL: &str =
    "INSERT INTO dora_changes (tenant_id, workload_id, at) VALUES ($1, $2, $3)";

/// Records the revisions' sightings `$sightings` (from [`sightings`]) of
/// tenant `$tenant` inside `$tx`.
macro_rules! record_sightings {
    ($tx:expr, $tenant:expr, $sightings:expr) => {{
        let mut moved = std::collections::BTreeSet::new();
        for ((workload, revision), (at, committed)) in $sightings {
            let done = sqlx::query($crate::store::deployments::UPSERT_REVISION_TIME_SQL)
                .bind($tenant)
                .bind(workload)
                .bind(revision)
                .bind(at)
                .bind(committed)
                .execute(&mut *$tx)
                .await?;
            if done.rows_affected() > 0 {
                moved.insert(workload);
            }
        }
        // A revision's times moved: the lead times of the other targets of
        // its workload may have too (a new revision has no deployment yet
        // elsewhere, but telling one from the other costs more than it
        // saves).
        for workload in moved {
            sqlx::query($crate::store::deployments::CHANGED_WORKLOAD_SQL)
                .bind($tenant)
                .bind(workload)
                .bind(sextant_model::UnixNanos::now().0)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}
pub(crate) use record_sightings;

#[cfg(test)]
mod tests;
