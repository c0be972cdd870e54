-- The change mark of a tenant (docs/performance.md, "Query latency"): the
-- newest id of the append-only tables that every change to environment
-- state and compare writes — observed_history (a revision, status or message
-- changed; heartbeats write none), desired_assignments (a desired version) —
-- and of deployment_targets (a new target). Each is the last entry of one of
-- these indexes, read backwards: a few buffer reads per request whatever the
-- size of history. SQLite defines the same indexes.
--
-- On 10,000,000 history rows this index takes about 10 s to build (writes
-- to the table wait meanwhile) and about 300 MB.

CREATE INDEX observed_history_tenant_id ON observed_history (tenant_id, id);
CREATE INDEX desired_assignments_tenant_id ON desired_assignments (tenant_id, id);
CREATE INDEX deployment_targets_tenant_id ON deployment_targets (tenant_id, id);
