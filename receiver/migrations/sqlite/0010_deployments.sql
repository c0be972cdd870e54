-- DORA's delivery metrics (docs/insights.md) read two tables kept at
-- ingest, in the transaction that writes observed history.

-- When each revision of a workload was first seen anywhere (a desired
-- assignment or an observed report, any environment) and, when a sender
-- said so, when its commit was made (`sextant.commit.time`; the earliest
-- one given). Change lead time starts at the commit time, else at the
-- first sighting. Both only ever move earlier.
CREATE TABLE revision_times (
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id),
    workload_id   INTEGER NOT NULL REFERENCES workloads (id),
    revision      TEXT   NOT NULL,
    first_seen_at INTEGER NOT NULL,
    committed_at  INTEGER,
    PRIMARY KEY (workload_id, revision)
);

-- The deployments of each target, derived from its observed history
-- (store/deployments.rs): a row per revision the target moved to, in the
-- order of history's key (observed_at, host_id, reconciler_id, id). The
-- first revision a target ever reported is its baseline, not a deployment.
-- A report that arrives out of order rebuilds the target's rows from the
-- deployment it falls in onward, so the table always equals an in-order
-- replay of history.
CREATE TABLE deployments (
    tenant_id           INTEGER NOT NULL REFERENCES tenants (id),
    target_id           INTEGER NOT NULL REFERENCES deployment_targets (id),
    workload_id         INTEGER NOT NULL,
    environment_id      INTEGER NOT NULL,
    started_at          INTEGER NOT NULL,
    start_host_id       INTEGER NOT NULL,
    start_reconciler_id INTEGER NOT NULL,
    start_history_id    INTEGER NOT NULL,
    revision            TEXT   NOT NULL,
    baseline            INTEGER NOT NULL,
    rollback            INTEGER NOT NULL,
    rework              INTEGER NOT NULL,
    first_succeeded_at  INTEGER,
    first_failed_at     INTEGER,
    failed_at           INTEGER,
    ended_at            INTEGER,
    PRIMARY KEY (target_id, started_at, start_host_id, start_reconciler_id, start_history_id)
);
CREATE INDEX deployments_tenant_time ON deployments (tenant_id, started_at);
CREATE INDEX deployments_workload_time ON deployments (workload_id, started_at);
CREATE INDEX deployments_revision ON deployments (target_id, revision);

-- What an upgraded hub already holds: first sightings from its history
-- now, and its targets' deployments rebuilt at the first start
-- (`deployments_backfill` lists the targets still to do).
INSERT INTO revision_times (tenant_id, workload_id, revision, first_seen_at)
SELECT t.tenant_id, t.workload_id, x.revision, MIN(x.at)
FROM (
    SELECT target_id, revision, observed_at AS at FROM observed_history
    UNION ALL
    SELECT da.target_id, v.revision, da.assigned_at
    FROM desired_assignments da JOIN workload_versions v ON v.id = da.workload_version_id
) x
JOIN deployment_targets t ON t.id = x.target_id
GROUP BY t.tenant_id, t.workload_id, x.revision;

CREATE TABLE deployments_backfill (
    target_id INTEGER PRIMARY KEY
);
INSERT INTO deployments_backfill (target_id) SELECT DISTINCT target_id FROM observed_history;
