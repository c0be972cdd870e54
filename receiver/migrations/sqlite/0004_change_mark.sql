-- The change mark of a tenant (docs/performance.md, "Query latency"): the
-- newest id of the append-only tables that every change to environment
-- state and compare writes — observed_history (a revision, status or message
-- changed; heartbeats write none), desired_assignments (a desired version) —
-- and of deployment_targets (a new target). Each is the last entry of one of
-- these indexes. PostgreSQL defines the same indexes.

CREATE INDEX observed_history_tenant_id ON observed_history (tenant_id, id);
CREATE INDEX desired_assignments_tenant_id ON desired_assignments (tenant_id, id);
CREATE INDEX deployment_targets_tenant_id ON deployment_targets (tenant_id, id);
