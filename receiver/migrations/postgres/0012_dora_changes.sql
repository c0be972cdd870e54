-- The change feed of the hubs' in-memory DORA index (store/dora_index.rs):
-- a row for each target whose deployments a transaction rebuilt, and for
-- each workload whose revision times it moved. A hub refreshing its index
-- rereads the targets named by rows of transactions that were still
-- running, or not yet begun, at its previous refresh: `xid` at or after
-- that refresh's snapshot xmin. Rows older than a day are pruned.
CREATE TABLE dora_changes (
    tenant_id   BIGINT NOT NULL,
    target_id   BIGINT,
    workload_id BIGINT,
    at          BIGINT NOT NULL,
    xid         xid8   NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX dora_changes_xid ON dora_changes (tenant_id, xid);
CREATE INDEX dora_changes_at ON dora_changes (at);

-- How far each target's deployments were replayed: the key of the last
-- history row the replay read. Reports that all come after it (in order,
-- the usual case) resume the replay from the target's last deployment
-- instead of replaying from the start of the deployment they fall in
-- (store/deployments/).
CREATE TABLE deployment_replays (
    target_id     BIGINT PRIMARY KEY REFERENCES deployment_targets (id),
    observed_at   BIGINT NOT NULL,
    host_id       BIGINT NOT NULL,
    reconciler_id BIGINT NOT NULL,
    history_id    BIGINT NOT NULL
);
