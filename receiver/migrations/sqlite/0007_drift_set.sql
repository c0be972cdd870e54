-- Issue 18: reads whose cost follows the answer, not the estate. The same
-- tables and meaning as PostgreSQL's migration 0008 (read it for the why);
-- SQLite has one writer at a time, and row triggers only.

ALTER TABLE deployment_targets ADD COLUMN desired_assignment_id INTEGER;
ALTER TABLE deployment_targets ADD COLUMN desired_version_id INTEGER;
ALTER TABLE deployment_targets ADD COLUMN desired_revision TEXT;
ALTER TABLE deployment_targets ADD COLUMN desired_at INTEGER;

UPDATE deployment_targets
SET (desired_assignment_id, desired_version_id, desired_revision, desired_at) = (
    SELECT d.id, d.workload_version_id, v.revision, d.assigned_at
    FROM desired_assignments d JOIN workload_versions v ON v.id = d.workload_version_id
    WHERE d.target_id = deployment_targets.id
    ORDER BY d.assigned_at DESC, d.id DESC LIMIT 1);

ALTER TABLE observed_deployments
    ADD COLUMN staleness INTEGER NOT NULL DEFAULT 0 CHECK (staleness IN (0, 1, 2));
CREATE INDEX observed_deployments_staleness ON observed_deployments (staleness, observed_at);

CREATE TABLE drift_rows (
    tenant_id       INTEGER NOT NULL,
    host_id         INTEGER NOT NULL,
    reconciler_id   INTEGER NOT NULL,
    target_id       INTEGER NOT NULL,
    host_name       TEXT    NOT NULL,
    reconciler_name TEXT    NOT NULL,
    environment_id  INTEGER NOT NULL,
    workload_id     INTEGER NOT NULL,
    target_name     TEXT    NOT NULL,
    workload_name   TEXT    NOT NULL,
    off_desired     INTEGER NOT NULL,
    failed          INTEGER NOT NULL,
    stale           INTEGER NOT NULL,
    PRIMARY KEY (host_id, reconciler_id, target_id)
) WITHOUT ROWID;
CREATE INDEX drift_rows_by_host ON drift_rows (tenant_id, host_name, target_id, reconciler_name);
CREATE INDEX drift_rows_by_environment
    ON drift_rows (environment_id, host_name, target_id, reconciler_name);
CREATE INDEX drift_rows_by_workload
    ON drift_rows (tenant_id, workload_name, host_name, target_id, reconciler_name);
CREATE INDEX drift_rows_by_target_name
    ON drift_rows (tenant_id, target_name, host_name, target_id, reconciler_name);
CREATE INDEX drift_rows_by_target ON drift_rows (target_id, host_name, reconciler_name);

CREATE TABLE drift_counts (
    target_id INTEGER NOT NULL PRIMARY KEY,
    tenant_id INTEGER NOT NULL,
    rows      INTEGER NOT NULL,
    failed    INTEGER NOT NULL,
    stale     INTEGER NOT NULL
);

INSERT INTO drift_rows (tenant_id, host_id, reconciler_id, target_id, host_name,
                        reconciler_name, environment_id, workload_id, target_name, workload_name, off_desired, failed, stale)
SELECT o.tenant_id, o.host_id, o.reconciler_id, o.target_id, h.name, r.name, t.environment_id,
       t.workload_id, t.name, w.name, 1, o.status = 'failed', 0
FROM observed_deployments o
JOIN deployment_targets t ON t.id = o.target_id
JOIN workloads w ON w.id = t.workload_id
JOIN hosts h ON h.id = o.host_id
JOIN reconcilers r ON r.id = o.reconciler_id
WHERE t.desired_revision IS NULL OR o.revision <> t.desired_revision OR o.status = 'failed';

INSERT INTO drift_counts (target_id, tenant_id, rows, failed, stale)
SELECT target_id, MIN(tenant_id), COUNT(*), SUM(failed), SUM(stale)
FROM drift_rows GROUP BY target_id;

CREATE TRIGGER drift_rows_counts_insert AFTER INSERT ON drift_rows
BEGIN
    INSERT INTO drift_counts (target_id, tenant_id, rows, failed, stale)
    VALUES (NEW.target_id, NEW.tenant_id, 1, NEW.failed, NEW.stale)
    ON CONFLICT (target_id) DO UPDATE SET rows = rows + 1, failed = failed + excluded.failed,
        stale = stale + excluded.stale;
END;

CREATE TRIGGER drift_rows_counts_delete AFTER DELETE ON drift_rows
BEGIN
    UPDATE drift_counts SET rows = rows - 1, failed = failed - OLD.failed,
        stale = stale - OLD.stale
    WHERE target_id = OLD.target_id;
END;

CREATE TRIGGER drift_rows_counts_update AFTER UPDATE OF failed, stale ON drift_rows
WHEN OLD.failed IS NOT NEW.failed OR OLD.stale IS NOT NEW.stale
BEGIN
    UPDATE drift_counts SET failed = failed - OLD.failed + NEW.failed,
        stale = stale - OLD.stale + NEW.stale
    WHERE target_id = NEW.target_id;
END;

CREATE TRIGGER observed_deployments_drift_insert AFTER INSERT ON observed_deployments
BEGIN
    INSERT INTO drift_rows (tenant_id, host_id, reconciler_id, target_id, host_name,
                            reconciler_name, environment_id, workload_id, target_name, workload_name, off_desired, failed,
                            stale)
    SELECT NEW.tenant_id, NEW.host_id, NEW.reconciler_id, NEW.target_id, h.name, r.name,
           t.environment_id, t.workload_id, t.name, (SELECT w.name FROM workloads w WHERE w.id = t.workload_id),
           t.desired_revision IS NULL OR NEW.revision <> t.desired_revision
             OR NEW.status = 'failed',
           NEW.status = 'failed', NEW.staleness = 1
    FROM deployment_targets t, hosts h, reconcilers r
    WHERE t.id = NEW.target_id AND h.id = NEW.host_id AND r.id = NEW.reconciler_id
      AND (t.desired_revision IS NULL OR NEW.revision <> t.desired_revision
           OR NEW.status = 'failed' OR NEW.staleness = 1);
END;

CREATE TRIGGER observed_deployments_drift_update
AFTER UPDATE OF revision, status, staleness ON observed_deployments
WHEN OLD.revision IS NOT NEW.revision OR OLD.status IS NOT NEW.status
  OR OLD.staleness IS NOT NEW.staleness
BEGIN
    DELETE FROM drift_rows
    WHERE host_id = NEW.host_id AND reconciler_id = NEW.reconciler_id
      AND target_id = NEW.target_id
      AND NOT EXISTS (SELECT 1 FROM deployment_targets t WHERE t.id = NEW.target_id
          AND (t.desired_revision IS NULL OR NEW.revision <> t.desired_revision
               OR NEW.status = 'failed' OR NEW.staleness = 1));
    INSERT INTO drift_rows (tenant_id, host_id, reconciler_id, target_id, host_name,
                            reconciler_name, environment_id, workload_id, target_name, workload_name, off_desired, failed,
                            stale)
    SELECT NEW.tenant_id, NEW.host_id, NEW.reconciler_id, NEW.target_id, h.name, r.name,
           t.environment_id, t.workload_id, t.name, (SELECT w.name FROM workloads w WHERE w.id = t.workload_id),
           t.desired_revision IS NULL OR NEW.revision <> t.desired_revision
             OR NEW.status = 'failed',
           NEW.status = 'failed', NEW.staleness = 1
    FROM deployment_targets t, hosts h, reconcilers r
    WHERE t.id = NEW.target_id AND h.id = NEW.host_id AND r.id = NEW.reconciler_id
      AND (t.desired_revision IS NULL OR NEW.revision <> t.desired_revision
           OR NEW.status = 'failed' OR NEW.staleness = 1)
    ON CONFLICT (host_id, reconciler_id, target_id) DO UPDATE SET
        off_desired = excluded.off_desired, failed = excluded.failed, stale = excluded.stale;
END;

CREATE TRIGGER observed_deployments_drift_delete AFTER DELETE ON observed_deployments
BEGIN
    DELETE FROM drift_rows
    WHERE host_id = OLD.host_id AND reconciler_id = OLD.reconciler_id
      AND target_id = OLD.target_id;
END;

CREATE TRIGGER desired_assignments_latest AFTER INSERT ON desired_assignments
BEGIN
    UPDATE deployment_targets
    SET desired_assignment_id = NEW.id, desired_version_id = NEW.workload_version_id,
        desired_revision = (SELECT revision FROM workload_versions
                            WHERE id = NEW.workload_version_id),
        desired_at = NEW.assigned_at
    WHERE id = NEW.target_id
      AND (desired_at IS NULL OR desired_at < NEW.assigned_at
           OR (desired_at = NEW.assigned_at AND desired_assignment_id < NEW.id));
END;

CREATE TRIGGER deployment_targets_drift AFTER UPDATE OF desired_revision ON deployment_targets
WHEN OLD.desired_revision IS NOT NEW.desired_revision
BEGIN
    DELETE FROM drift_rows
    WHERE target_id = NEW.id AND stale = 0
      AND EXISTS (SELECT 1 FROM observed_deployments o
          WHERE o.host_id = drift_rows.host_id AND o.reconciler_id = drift_rows.reconciler_id
            AND o.target_id = drift_rows.target_id
            AND NOT (NEW.desired_revision IS NULL OR o.revision <> NEW.desired_revision
                     OR o.status = 'failed'));
    INSERT INTO drift_rows (tenant_id, host_id, reconciler_id, target_id, host_name,
                            reconciler_name, environment_id, workload_id, target_name, workload_name, off_desired, failed,
                            stale)
    SELECT o.tenant_id, o.host_id, o.reconciler_id, o.target_id, h.name, r.name,
           NEW.environment_id, NEW.workload_id, NEW.name, (SELECT w.name FROM workloads w WHERE w.id = NEW.workload_id),
           NEW.desired_revision IS NULL OR o.revision <> NEW.desired_revision
             OR o.status = 'failed',
           o.status = 'failed', o.staleness = 1
    FROM observed_deployments o
    JOIN hosts h ON h.id = o.host_id
    JOIN reconcilers r ON r.id = o.reconciler_id
    WHERE o.target_id = NEW.id
      AND (NEW.desired_revision IS NULL OR o.revision <> NEW.desired_revision
           OR o.status = 'failed' OR o.staleness = 1)
    ON CONFLICT (host_id, reconciler_id, target_id) DO UPDATE SET
        off_desired = excluded.off_desired;
END;
