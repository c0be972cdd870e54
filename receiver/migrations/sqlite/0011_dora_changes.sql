-- The change feed of the hub's in-memory DORA index (store/dora_index.rs):
-- a row for each target whose deployments a transaction rebuilt, and for
-- each workload whose revision times it moved. SQLite's one writer commits
-- in id order, so a refresh rereads the targets named by rows after the
-- last id it saw (AUTOINCREMENT: a pruned id is never handed out again).
-- Rows older than a day are pruned.
CREATE TABLE dora_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL,
    target_id   INTEGER,
    workload_id INTEGER,
    at          INTEGER NOT NULL
);
CREATE INDEX dora_changes_tenant ON dora_changes (tenant_id, id);
CREATE INDEX dora_changes_at ON dora_changes (at);
