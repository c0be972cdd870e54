-- Migration 0003's statement-level UPDATE trigger aggregated the old and new
-- versions of every updated row, heartbeats included, on every batch: steady
-- ingest fell from 50,800 to 38,500 records/s (docs/performance.md). About
-- 1 % of observations change revision or status; this row-level trigger
-- runs only for those (its WHEN clause is checked without calling the
-- function), and heartbeats cost nothing again. Inserts keep the
-- statement-level trigger, which aggregates a batch of new rows into one
-- upsert per counter.

DROP TRIGGER observed_deployments_counts_update ON observed_deployments;
DROP FUNCTION deployed_counts_after_update();

CREATE FUNCTION deployed_counts_row_update() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE deployed_counts SET hosts = hosts - 1
    WHERE target_id = OLD.target_id AND revision = OLD.revision AND status = OLD.status;
    INSERT INTO deployed_counts AS c (target_id, revision, status, hosts)
    VALUES (NEW.target_id, NEW.revision, NEW.status, 1)
    ON CONFLICT (target_id, revision, status) DO UPDATE SET hosts = c.hosts + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER observed_deployments_counts_update
    AFTER UPDATE OF target_id, revision, status ON observed_deployments
    FOR EACH ROW
    WHEN (OLD.target_id IS DISTINCT FROM NEW.target_id
          OR OLD.revision IS DISTINCT FROM NEW.revision
          OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION deployed_counts_row_update();
