-- Indexes for the read API at estate scale (10,000 hosts × 100 workloads);
-- docs/performance.md ("Query latency") has the EXPLAIN plans behind each.
-- PostgreSQL defines the same indexes.

-- Drift pages walk hosts in name order and the host view finds a host by
-- name; the unique (tenant_id, name) index serves neither.
CREATE INDEX hosts_name ON hosts (name);

-- Environment state counts current rows per (target, revision, status):
-- this index hands them over already grouped, without the heap once pages
-- are all-visible. It replaces the index on target_id alone, its prefix.
CREATE INDEX observed_deployments_target_revision
    ON observed_deployments (target_id, revision, status);
DROP INDEX observed_deployments_target;

-- The latest desired assignment of a target (assigned_at DESC, id DESC,
-- LIMIT 1) is the first entry of this index read backwards: no sort.
CREATE INDEX desired_assignments_latest ON desired_assignments (target_id, assigned_at, id);

-- The version a revision was published as (the newest id wins): likewise.
CREATE INDEX workload_versions_revision_id ON workload_versions (workload_id, revision, id);
DROP INDEX workload_versions_revision;
