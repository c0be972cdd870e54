-- Host counts per (target, revision, status), kept in step with
-- observed_deployments by triggers in the same transaction, so environment
-- state, compare and history read a few hundred counters instead of
-- counting up to a million current rows (docs/performance.md, "Query
-- latency"). PostgreSQL keeps the same table with statement triggers.
--
-- A counter that drops to zero stays (it is one row per revision a target
-- ever ran, like workload_versions); reads skip it.

CREATE TABLE deployed_counts (
    target_id   INTEGER NOT NULL REFERENCES deployment_targets (id),
    revision    TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    hosts       INTEGER NOT NULL,
    PRIMARY KEY (target_id, revision, status)
) WITHOUT ROWID;

INSERT INTO deployed_counts (target_id, revision, status, hosts)
SELECT target_id, revision, status, COUNT(*)
FROM observed_deployments
GROUP BY target_id, revision, status;

CREATE TRIGGER observed_deployments_counts_insert
AFTER INSERT ON observed_deployments
BEGIN
    INSERT INTO deployed_counts (target_id, revision, status, hosts)
    VALUES (NEW.target_id, NEW.revision, NEW.status, 1)
    ON CONFLICT (target_id, revision, status) DO UPDATE SET hosts = hosts + 1;
END;

-- A heartbeat updates observed_at only, and does not fire this trigger.
CREATE TRIGGER observed_deployments_counts_update
AFTER UPDATE OF target_id, revision, status ON observed_deployments
WHEN OLD.target_id IS NOT NEW.target_id
  OR OLD.revision IS NOT NEW.revision
  OR OLD.status IS NOT NEW.status
BEGIN
    UPDATE deployed_counts SET hosts = hosts - 1
    WHERE target_id = OLD.target_id AND revision = OLD.revision AND status = OLD.status;
    INSERT INTO deployed_counts (target_id, revision, status, hosts)
    VALUES (NEW.target_id, NEW.revision, NEW.status, 1)
    ON CONFLICT (target_id, revision, status) DO UPDATE SET hosts = hosts + 1;
END;

CREATE TRIGGER observed_deployments_counts_delete
AFTER DELETE ON observed_deployments
BEGIN
    UPDATE deployed_counts SET hosts = hosts - 1
    WHERE target_id = OLD.target_id AND revision = OLD.revision AND status = OLD.status;
END;
