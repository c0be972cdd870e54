-- Each current row carries its target's workload, so the host list counts
-- a host's workloads from the host's own rows instead of looking up the
-- target of every row: at 1M rows those lookups were two thirds of the
-- first page's time (docs/performance.md, "Bounded reads"). A target's
-- workload is part of its key and never changes, so the copy never goes
-- out of date; ingest writes it with each new row. No foreign key: the
-- row's target already holds one to the workload.
ALTER TABLE observed_deployments ADD COLUMN workload_id BIGINT;

-- No trigger watches this column: the update below fires none.
UPDATE observed_deployments o SET workload_id = t.workload_id
FROM deployment_targets t WHERE t.id = o.target_id;

ALTER TABLE observed_deployments ALTER COLUMN workload_id SET NOT NULL;
