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
