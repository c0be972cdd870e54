-- Host counts per (target, revision, status), kept in step with
-- observed_deployments by triggers in the same transaction, so environment
-- state, compare and history read a few hundred counters instead of
-- counting up to a million current rows (docs/performance.md, "Query
-- latency"). SQLite keeps the same table with row triggers.
--
-- A counter that drops to zero stays (it is one row per revision a target
-- ever ran, like workload_versions); reads skip it.

CREATE TABLE deployed_counts (
    target_id   BIGINT  NOT NULL REFERENCES deployment_targets (id),
    revision    TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    hosts       BIGINT  NOT NULL,
    PRIMARY KEY (target_id, revision, status)
);

INSERT INTO deployed_counts (target_id, revision, status, hosts)
SELECT target_id, revision, status, COUNT(*)
FROM observed_deployments
GROUP BY target_id, revision, status;

-- Statement-level triggers see a whole ingest batch at once (transition
-- tables), net out heartbeats that changed nothing, and touch each counter
-- once, in key order. A heartbeat-only batch therefore writes no counter and
-- takes no counter lock.
CREATE FUNCTION deployed_counts_after_insert() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deployed_counts AS c (target_id, revision, status, hosts)
    SELECT target_id, revision, status, COUNT(*)
    FROM inserted_rows
    GROUP BY target_id, revision, status
    ORDER BY target_id, revision, status
    ON CONFLICT (target_id, revision, status) DO UPDATE SET hosts = c.hosts + excluded.hosts;
    RETURN NULL;
END
$$;

CREATE FUNCTION deployed_counts_after_update() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deployed_counts AS c (target_id, revision, status, hosts)
    SELECT target_id, revision, status, SUM(delta)
    FROM (
        SELECT target_id, revision, status, 1 AS delta FROM new_rows
        UNION ALL
        SELECT target_id, revision, status, -1 AS delta FROM old_rows
    ) changes
    GROUP BY target_id, revision, status
    HAVING SUM(delta) <> 0
    ORDER BY target_id, revision, status
    ON CONFLICT (target_id, revision, status) DO UPDATE SET hosts = c.hosts + excluded.hosts;
    RETURN NULL;
END
$$;

CREATE FUNCTION deployed_counts_after_delete() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deployed_counts AS c (target_id, revision, status, hosts)
    SELECT target_id, revision, status, -COUNT(*)
    FROM deleted_rows
    GROUP BY target_id, revision, status
    ORDER BY target_id, revision, status
    ON CONFLICT (target_id, revision, status) DO UPDATE SET hosts = c.hosts + excluded.hosts;
    RETURN NULL;
END
$$;

CREATE TRIGGER observed_deployments_counts_insert
    AFTER INSERT ON observed_deployments
    REFERENCING NEW TABLE AS inserted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deployed_counts_after_insert();

CREATE TRIGGER observed_deployments_counts_update
    AFTER UPDATE ON observed_deployments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deployed_counts_after_update();

CREATE TRIGGER observed_deployments_counts_delete
    AFTER DELETE ON observed_deployments
    REFERENCING OLD TABLE AS deleted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deployed_counts_after_delete();
