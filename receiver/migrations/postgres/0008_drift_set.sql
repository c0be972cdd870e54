-- Issue 18: reads whose cost follows the answer, not the estate
-- (docs/performance.md, "Bounded reads").
--
-- 1. Each target keeps its latest desired assignment (the newest by
--    assigned_at, then id), so reads join it instead of searching
--    desired_assignments per target.
-- 2. `staleness` marks current rows the stale sweep found past the stale
--    threshold: 0 not (yet) past it, 1 stale, 2 past it but from a source
--    that is never stale (Argo CD notifies only on change). Every write of a
--    row sets it back to 0. Indexed with observed_at, so the sweep and the
--    reads find the rows that crossed the threshold since the last sweep
--    without a scan.
-- 3. `drift_rows` holds the current rows that drift (no desired state,
--    another revision than desired, failed, or marked stale), with the
--    names they are listed and filtered by, kept by triggers in the writing
--    transaction. A drift page reads its own rows off one of its indexes.
-- 4. `drift_counts` counts them per target, for the UI's counts and the
--    hub's gauges.

ALTER TABLE deployment_targets
    ADD COLUMN desired_assignment_id BIGINT,
    ADD COLUMN desired_version_id    BIGINT,
    ADD COLUMN desired_revision      TEXT,
    ADD COLUMN desired_at            BIGINT;

UPDATE deployment_targets t
SET desired_assignment_id = l.id, desired_version_id = l.workload_version_id,
    desired_revision = l.revision, desired_at = l.assigned_at
FROM (
    SELECT DISTINCT ON (d.target_id) d.target_id, d.id, d.workload_version_id, v.revision,
           d.assigned_at
    FROM desired_assignments d JOIN workload_versions v ON v.id = d.workload_version_id
    ORDER BY d.target_id, d.assigned_at DESC, d.id DESC
) l
WHERE l.target_id = t.id;

ALTER TABLE observed_deployments
    ADD COLUMN staleness SMALLINT NOT NULL DEFAULT 0 CHECK (staleness IN (0, 1, 2));
CREATE INDEX observed_deployments_staleness ON observed_deployments (staleness, observed_at);

CREATE TABLE drift_rows (
    tenant_id       BIGINT  NOT NULL,
    host_id         BIGINT  NOT NULL,
    reconciler_id   BIGINT  NOT NULL,
    target_id       BIGINT  NOT NULL,
    host_name       TEXT    NOT NULL,
    reconciler_name TEXT    NOT NULL,
    environment_id  BIGINT  NOT NULL,
    workload_id     BIGINT  NOT NULL,
    target_name     TEXT    NOT NULL,
    workload_name   TEXT    NOT NULL,
    -- No desired state, another revision than desired, or failed.
    off_desired     BOOLEAN NOT NULL,
    failed          BOOLEAN NOT NULL,
    -- Marked stale by the sweep.
    stale           BOOLEAN NOT NULL,
    PRIMARY KEY (host_id, reconciler_id, target_id)
);
CREATE INDEX drift_rows_by_host ON drift_rows (tenant_id, host_name, target_id, reconciler_name);
CREATE INDEX drift_rows_by_environment
    ON drift_rows (environment_id, host_name, target_id, reconciler_name);
CREATE INDEX drift_rows_by_workload
    ON drift_rows (tenant_id, workload_name, host_name, target_id, reconciler_name);
CREATE INDEX drift_rows_by_target_name
    ON drift_rows (tenant_id, target_name, host_name, target_id, reconciler_name);
CREATE INDEX drift_rows_by_target ON drift_rows (target_id, host_name, reconciler_name);

CREATE TABLE drift_counts (
    target_id BIGINT NOT NULL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    -- Drifting rows, of them failed, of them marked stale.
    rows      BIGINT NOT NULL,
    failed    BIGINT NOT NULL,
    stale     BIGINT NOT NULL
);

-- Whether a current row on revision `revision` with `status` drifts from
-- its target's desired revision `desired` (NULL: none).
CREATE FUNCTION drift_off_desired(desired TEXT, revision TEXT, status TEXT) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE AS $$
    SELECT desired IS NULL OR revision <> desired OR status = 'failed'
$$;

INSERT INTO drift_rows (tenant_id, host_id, reconciler_id, target_id, host_name,
                        reconciler_name, environment_id, workload_id, target_name, workload_name, off_desired, failed, stale)
SELECT o.tenant_id, o.host_id, o.reconciler_id, o.target_id, h.name, r.name, t.environment_id,
       t.workload_id, t.name, w.name, true, o.status = 'failed', false
FROM observed_deployments o
JOIN deployment_targets t ON t.id = o.target_id
JOIN workloads w ON w.id = t.workload_id
JOIN hosts h ON h.id = o.host_id
JOIN reconcilers r ON r.id = o.reconciler_id
WHERE drift_off_desired(t.desired_revision, o.revision, o.status);

INSERT INTO drift_counts (target_id, tenant_id, rows, failed, stale)
SELECT d.target_id, MIN(d.tenant_id), COUNT(*), COUNT(*) FILTER (WHERE d.failed),
       COUNT(*) FILTER (WHERE d.stale)
FROM drift_rows d
GROUP BY d.target_id;

-- drift_counts follow drift_rows.
CREATE FUNCTION drift_counts_apply() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO drift_counts AS c (target_id, tenant_id, rows, failed, stale)
        SELECT target_id, MIN(tenant_id), COUNT(*), COUNT(*) FILTER (WHERE failed),
               COUNT(*) FILTER (WHERE stale)
        FROM drift_new GROUP BY target_id ORDER BY target_id
        ON CONFLICT (target_id) DO UPDATE SET rows = c.rows + excluded.rows,
            failed = c.failed + excluded.failed, stale = c.stale + excluded.stale;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO drift_counts AS c (target_id, tenant_id, rows, failed, stale)
        SELECT target_id, MIN(tenant_id), -COUNT(*), -COUNT(*) FILTER (WHERE failed),
               -COUNT(*) FILTER (WHERE stale)
        FROM drift_old GROUP BY target_id ORDER BY target_id
        ON CONFLICT (target_id) DO UPDATE SET rows = c.rows + excluded.rows,
            failed = c.failed + excluded.failed, stale = c.stale + excluded.stale;
    ELSE
        INSERT INTO drift_counts AS c (target_id, tenant_id, rows, failed, stale)
        SELECT target_id, MIN(tenant_id), 0, SUM(df), SUM(ds)
        FROM (
            SELECT target_id, tenant_id, failed::int AS df, stale::int AS ds FROM drift_new
            UNION ALL
            SELECT target_id, tenant_id, -failed::int, -stale::int FROM drift_old
        ) changes
        GROUP BY target_id
        HAVING SUM(df) <> 0 OR SUM(ds) <> 0
        ORDER BY target_id
        ON CONFLICT (target_id) DO UPDATE SET
            failed = c.failed + excluded.failed, stale = c.stale + excluded.stale;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER drift_rows_counts_insert AFTER INSERT ON drift_rows
    REFERENCING NEW TABLE AS drift_new
    FOR EACH STATEMENT EXECUTE FUNCTION drift_counts_apply();
CREATE TRIGGER drift_rows_counts_delete AFTER DELETE ON drift_rows
    REFERENCING OLD TABLE AS drift_old
    FOR EACH STATEMENT EXECUTE FUNCTION drift_counts_apply();
CREATE TRIGGER drift_rows_counts_update AFTER UPDATE ON drift_rows
    REFERENCING OLD TABLE AS drift_old NEW TABLE AS drift_new
    FOR EACH STATEMENT EXECUTE FUNCTION drift_counts_apply();

-- New current rows that drift join drift_rows. Their targets are read
-- FOR SHARE: a desired change of the same target, committed meanwhile,
-- waits for this transaction, then measures its rows again (and sees
-- these); one committed before is what this reads.
CREATE FUNCTION drift_rows_after_insert() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO drift_rows (tenant_id, host_id, reconciler_id, target_id, host_name,
                            reconciler_name, environment_id, workload_id, target_name, workload_name, off_desired, failed,
                            stale)
    SELECT n.tenant_id, n.host_id, n.reconciler_id, n.target_id, h.name, r.name,
           t.environment_id, t.workload_id, t.name, (SELECT w.name FROM workloads w WHERE w.id = t.workload_id),
           drift_off_desired(t.desired_revision, n.revision, n.status), n.status = 'failed',
           n.staleness = 1
    FROM observed_new n
    JOIN (SELECT t.* FROM deployment_targets t
          WHERE t.id IN (SELECT target_id FROM observed_new)
          ORDER BY t.id FOR SHARE) t ON t.id = n.target_id
    JOIN hosts h ON h.id = n.host_id
    JOIN reconcilers r ON r.id = n.reconciler_id
    WHERE drift_off_desired(t.desired_revision, n.revision, n.status) OR n.staleness = 1
    ORDER BY n.host_id, n.reconciler_id, n.target_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER observed_deployments_drift_insert AFTER INSERT ON observed_deployments
    REFERENCING NEW TABLE AS observed_new
    FOR EACH STATEMENT EXECUTE FUNCTION drift_rows_after_insert();

-- A current row whose revision or status changed, or that is no longer
-- marked stale, is measured again. Heartbeats change none of them and do
-- not fire this. The sweep marks rows stale in bulk and moves their
-- drift_rows itself (`SWEEP_MARK_SQL` in receiver/src/store/stale.rs).
CREATE FUNCTION drift_rows_after_update() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
    t deployment_targets%ROWTYPE;
BEGIN
    SELECT * INTO t FROM deployment_targets WHERE id = NEW.target_id FOR SHARE;
    IF drift_off_desired(t.desired_revision, NEW.revision, NEW.status) OR NEW.staleness = 1 THEN
        INSERT INTO drift_rows AS d (tenant_id, host_id, reconciler_id, target_id, host_name,
                                     reconciler_name, environment_id, workload_id, target_name, workload_name, off_desired,
                                     failed, stale)
        SELECT NEW.tenant_id, NEW.host_id, NEW.reconciler_id, NEW.target_id, h.name, r.name,
               t.environment_id, t.workload_id, t.name, (SELECT w.name FROM workloads w WHERE w.id = t.workload_id),
               drift_off_desired(t.desired_revision, NEW.revision, NEW.status),
               NEW.status = 'failed', NEW.staleness = 1
        FROM hosts h, reconcilers r
        WHERE h.id = NEW.host_id AND r.id = NEW.reconciler_id
        ON CONFLICT (host_id, reconciler_id, target_id) DO UPDATE SET
            off_desired = excluded.off_desired, failed = excluded.failed, stale = excluded.stale
        WHERE (d.off_desired, d.failed, d.stale)
              IS DISTINCT FROM (excluded.off_desired, excluded.failed, excluded.stale);
    ELSE
        DELETE FROM drift_rows
        WHERE host_id = NEW.host_id AND reconciler_id = NEW.reconciler_id
          AND target_id = NEW.target_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER observed_deployments_drift_update
    AFTER UPDATE OF revision, status, staleness ON observed_deployments
    FOR EACH ROW
    WHEN (OLD.revision IS DISTINCT FROM NEW.revision
          OR OLD.status IS DISTINCT FROM NEW.status
          OR (OLD.staleness = 1 AND NEW.staleness <> 1))
    EXECUTE FUNCTION drift_rows_after_update();

CREATE FUNCTION drift_rows_after_delete() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM drift_rows d USING observed_old o
    WHERE d.host_id = o.host_id AND d.reconciler_id = o.reconciler_id
      AND d.target_id = o.target_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER observed_deployments_drift_delete AFTER DELETE ON observed_deployments
    REFERENCING OLD TABLE AS observed_old
    FOR EACH STATEMENT EXECUTE FUNCTION drift_rows_after_delete();

-- A target's latest desired assignment follows new assignments.
CREATE FUNCTION desired_latest_after_insert() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE deployment_targets t
    SET desired_assignment_id = l.id, desired_version_id = l.workload_version_id,
        desired_revision = l.revision, desired_at = l.assigned_at
    FROM (
        SELECT DISTINCT ON (a.target_id) a.target_id, a.id, a.workload_version_id, v.revision,
               a.assigned_at
        FROM assignments_new a JOIN workload_versions v ON v.id = a.workload_version_id
        ORDER BY a.target_id, a.assigned_at DESC, a.id DESC
    ) l
    WHERE l.target_id = t.id
      AND (t.desired_at IS NULL OR (l.assigned_at, l.id) > (t.desired_at, t.desired_assignment_id));
    RETURN NULL;
END
$$;

CREATE TRIGGER desired_assignments_latest AFTER INSERT ON desired_assignments
    REFERENCING NEW TABLE AS assignments_new
    FOR EACH STATEMENT EXECUTE FUNCTION desired_latest_after_insert();

-- A target whose desired revision changed measures its current rows again:
-- as many as it has hosts.
CREATE FUNCTION drift_rows_after_desired() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM drift_rows d USING observed_deployments o
    WHERE d.target_id = NEW.id
      AND o.host_id = d.host_id AND o.reconciler_id = d.reconciler_id AND o.target_id = d.target_id
      AND o.staleness <> 1 AND NOT drift_off_desired(NEW.desired_revision, o.revision, o.status);
    INSERT INTO drift_rows AS d (tenant_id, host_id, reconciler_id, target_id, host_name,
                                 reconciler_name, environment_id, workload_id, target_name, workload_name, off_desired, failed,
                                 stale)
    SELECT o.tenant_id, o.host_id, o.reconciler_id, o.target_id, h.name, r.name,
           NEW.environment_id, NEW.workload_id, NEW.name, (SELECT w.name FROM workloads w WHERE w.id = NEW.workload_id),
           drift_off_desired(NEW.desired_revision, o.revision, o.status), o.status = 'failed',
           o.staleness = 1
    FROM observed_deployments o
    JOIN hosts h ON h.id = o.host_id
    JOIN reconcilers r ON r.id = o.reconciler_id
    WHERE o.target_id = NEW.id
      AND (drift_off_desired(NEW.desired_revision, o.revision, o.status) OR o.staleness = 1)
    ORDER BY o.host_id, o.reconciler_id, o.target_id
    ON CONFLICT (host_id, reconciler_id, target_id) DO UPDATE SET
        off_desired = excluded.off_desired
    WHERE d.off_desired IS DISTINCT FROM excluded.off_desired;
    RETURN NULL;
END
$$;

CREATE TRIGGER deployment_targets_drift
    AFTER UPDATE OF desired_revision ON deployment_targets
    FOR EACH ROW
    WHEN (OLD.desired_revision IS DISTINCT FROM NEW.desired_revision)
    EXECUTE FUNCTION drift_rows_after_desired();
