-- Each current row carries its target's workload, as on PostgreSQL
-- (migration 0009 there): the host list counts a host's workloads from the
-- host's own rows. A target's workload never changes; ingest writes it with
-- each new row. SQLite adds a NOT NULL column only with a default; every
-- row the hub writes sets it.
ALTER TABLE observed_deployments ADD COLUMN workload_id INTEGER NOT NULL DEFAULT 0;

-- No trigger watches this column: the update below fires none.
UPDATE observed_deployments SET workload_id =
    (SELECT t.workload_id FROM deployment_targets t WHERE t.id = observed_deployments.target_id);
